//! `snnc plot` and `snnc run --plot`: every figure a run with `record` statements gets is
//! written as PNG and SVG, each PNG decodes to the figure's size and is not blank; the charts
//! hold what the metrics and record files say (the first presentation of the shown sample,
//! rates over every presentation, the threshold of the recorded membrane); bad folders and
//! malformed files are reported, not panicked on.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use snnc::cli::plot::{Chart, RecordMeta, RecordedPopulation, SIZE, metrics_figures, record_figures};

fn snnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(common::root()).output().expect("snnc runs")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("snnc-plot-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch folder");
    dir
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The quick-start model for three short epochs, recording the hidden layer's spikes and
/// membrane and the readout's membrane.
fn recorded_model(dir: &Path) -> PathBuf {
    let model = std::fs::read_to_string(common::root().join("models/yin_yang.snn")).expect("quick start");
    let model = model.replace("    epochs = 12", "    epochs = 3\n    record hidden, hidden.v, out.v to \"rec.csv\"");
    assert!(model.contains("record hidden"));
    let path = dir.join("recorded.snn");
    std::fs::write(&path, model).expect("model written");
    path
}

/// Decodes a PNG: width, height and RGB(A) pixels.
fn decode(path: &Path) -> (u32, u32, Vec<[u8; 3]>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).expect("PNG exists")));
    let mut reader = decoder.read_info().expect("a PNG header");
    let mut buffer = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buffer).expect("PNG data");
    let channels = info.color_type.samples();
    let pixels = buffer[..info.buffer_size()].chunks(channels).map(|c| [c[0], c[1 % channels], c[2 % channels]]).collect();
    (info.width, info.height, pixels)
}

/// The readout's membrane is recorded, its spikes are not: no raster for it.
const FIGURES: [&str; 7] = ["loss", "accuracy", "spikes", "rec_raster_hidden", "rec_rates_hidden", "rec_trace_hidden_v", "rec_trace_out_v"];

#[test]
fn a_run_with_plot_writes_every_figure_and_none_is_blank() {
    let dir = scratch("run");
    let model = recorded_model(&dir);
    let out = dir.join("out");
    let run =
        snnc(&["run", model.to_str().unwrap(), "--limit-train", "64", "--limit-test", "100", "--out", out.to_str().unwrap(), "--plot"]);
    assert!(run.status.success(), "{}", text(&run));
    let plots = out.join("plots");
    for name in FIGURES {
        let png = plots.join(format!("{name}.png"));
        let (width, height, pixels) = decode(&png);
        assert_eq!((width, height), SIZE, "{name}");
        let white = pixels.iter().filter(|p| **p == [255, 255, 255]).count();
        let inked = pixels.len() - white;
        assert!(inked * 100 > pixels.len(), "{name}.png is blank: {inked} of {} pixels drawn", pixels.len());
        let mut colours: Vec<[u8; 3]> = pixels.clone();
        colours.sort_unstable();
        colours.dedup();
        assert!(colours.len() > 8, "{name}.png has {} colours: no text or lines", colours.len());
        let svg = std::fs::read_to_string(plots.join(format!("{name}.svg"))).expect("SVG beside the PNG");
        assert!(svg.starts_with("<svg") && svg.contains("<text") && svg.trim_end().ends_with("</svg>"), "{name}.svg");
    }
    assert!(!plots.join("rec_raster_out.png").exists(), "the readout's spikes are not recorded");

    // The record metadata: the hidden layer's threshold and every presentation (64 samples,
    // three epochs).
    let meta: RecordMeta = serde_json::from_str(&std::fs::read_to_string(out.join("rec.json")).expect("rec.json")).expect("JSON");
    assert_eq!(meta.samples, 3 * 64);
    assert_eq!((meta.dt, meta.steps), (1e-3, 10));
    let hidden = &meta.populations[0];
    assert_eq!((hidden.name.as_str(), hidden.spikes, hidden.threshold_var.as_deref()), ("hidden", true, Some("v")));
    assert_eq!(hidden.threshold, [1.0]);
    assert_eq!(meta.populations[1].threshold_var, None, "a leaky readout has no threshold");

    // `snnc plot` redraws the same figures from the folder alone.
    std::fs::remove_dir_all(&plots).expect("plots removed");
    let plot = snnc(&["plot", out.to_str().unwrap()]);
    assert!(plot.status.success(), "{}", text(&plot));
    assert!(text(&plot).contains("7 figures"), "{}", text(&plot));
    for name in FIGURES {
        assert!(plots.join(format!("{name}.png")).exists(), "{name}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plot_reports_a_folder_without_a_run_and_malformed_records() {
    let dir = scratch("bad");
    let empty = snnc(&["plot", dir.to_str().unwrap()]);
    assert!(!empty.status.success());
    assert!(text(&empty).contains("snn::plot::no_run") && text(&empty).contains("has no metrics.json"), "{}", text(&empty));

    std::fs::write(dir.join("metrics.json"), "[{\"epoch\": 1, \"test_accuracy\": 0.5}]").expect("written");
    std::fs::write(dir.join("r.csv"), "sample,step,population,neuron\n0,1,hidden\n").expect("written");
    std::fs::write(dir.join("r.variables.csv"), "sample,step,population,neuron,hidden.v\n").expect("written");
    let bad = snnc(&["plot", dir.to_str().unwrap()]);
    assert!(!bad.status.success());
    assert!(text(&bad).contains("snn::plot::malformed") && text(&bad).contains("r.csv, line 2"), "{}", text(&bad));
    assert!(!text(&bad).contains("panicked"), "{}", text(&bad));

    // A neuron index past the population's size, or past any population's, is reported.
    std::fs::write(dir.join("r.json"), r#"{"dt": 0.001, "steps": 10, "populations": [{"name": "hidden", "size": 4, "spikes": true, "threshold_var": null, "threshold": []}]}"#).expect("written");
    for neuron in ["4", "18446744073709551615", "10000000000000"] {
        std::fs::write(dir.join("r.csv"), format!("sample,step,population,neuron\n0,1,hidden,{neuron}\n")).expect("written");
        let bad = snnc(&["plot", dir.to_str().unwrap()]);
        assert!(!bad.status.success() && text(&bad).contains("snn::plot::malformed"), "{neuron}: {}", text(&bad));
        assert!(!text(&bad).contains("panicked"), "{}", text(&bad));
    }
    std::fs::remove_file(dir.join("r.json")).expect("removed");
    std::fs::write(dir.join("r.csv"), "sample,step,population,neuron\n0,18446744073709551615,hidden,0\n").expect("written");
    let bad = snnc(&["plot", dir.to_str().unwrap()]);
    assert!(!bad.status.success() && text(&bad).contains("snn::plot::malformed"), "{}", text(&bad));

    std::fs::write(dir.join("metrics.json"), "not json").expect("written");
    let bad = snnc(&["plot", dir.to_str().unwrap()]);
    assert!(!bad.status.success() && text(&bad).contains("snn::plot::malformed: metrics.json"), "{}", text(&bad));

    // A metrics.json that cannot be read (a folder in its place).
    std::fs::remove_file(dir.join("metrics.json")).expect("removed");
    std::fs::create_dir(dir.join("metrics.json")).expect("a folder");
    let bad = snnc(&["plot", dir.to_str().unwrap()]);
    assert!(!bad.status.success() && text(&bad).contains("snn::plot::unreadable"), "{}", text(&bad));
    let _ = std::fs::remove_dir_all(&dir);
}

fn lines(chart: &Chart) -> (&Vec<snnc::cli::plot::Series>, &Vec<(String, f64)>) {
    match chart {
        Chart::Lines { series, hlines, .. } => (series, hlines),
        other => panic!("not a line chart: {other:?}"),
    }
}

#[test]
fn metric_charts_hold_the_values_of_every_epoch() {
    let json = r#"[
        {"epoch": 1, "losses": [["ce", 1.5], ["rate", 0.25]], "test_losses": [["ce", 1.75]],
         "train_accuracy": 0.5, "test_accuracy": 0.25, "spikes_per_neuron": [["hidden", 2.0], ["out", 0.5]]},
        {"epoch": 2, "losses": [["ce", 1.0], ["rate", 0.125]], "test_losses": [["ce", 1.25]],
         "train_accuracy": 0.75, "test_accuracy": null, "spikes_per_neuron": [["hidden", 3.0], ["out", 1.0]]}
    ]"#;
    let figures = metrics_figures(json).expect("valid metrics");
    let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["loss", "accuracy", "spikes"]);
    let (loss, _) = lines(&figures[0].chart);
    type Line<'a> = (&'a str, bool, Vec<(f64, f64)>);
    let summary: Vec<Line> = loss.iter().map(|s| (s.name.as_str(), s.dashed, s.points.clone())).collect();
    assert_eq!(
        summary,
        [
            ("ce", false, vec![(1.0, 1.5), (2.0, 1.0)]),
            ("rate", false, vec![(1.0, 0.25), (2.0, 0.125)]),
            ("ce (test)", true, vec![(1.0, 1.75), (2.0, 1.25)]),
        ]
    );
    let (accuracy, _) = lines(&figures[1].chart);
    assert_eq!(accuracy[0].points, [(1.0, 50.0), (2.0, 75.0)]);
    // A missing value (NaN is written as null) leaves a gap, not a zero.
    assert_eq!(accuracy[1].points, [(1.0, 25.0)]);
    let (spikes, _) = lines(&figures[2].chart);
    assert_eq!(spikes[1].name, "out");
    assert_eq!(spikes[1].points, [(1.0, 0.5), (2.0, 1.0)]);

    // A method without losses or accuracies (STDP before labelling) gets what it has.
    let figures = metrics_figures(r#"[{"epoch": 1, "spikes_per_neuron": [["exc", 4.0]]}]"#).expect("valid");
    assert_eq!(figures.len(), 1);
    assert!(metrics_figures("{").is_err());
}

#[test]
fn record_charts_show_the_first_presentation_and_rates_over_all() {
    // Sample 7 twice (a retry: the step falls back), then sample 9; neurons of a population
    // of 4 with threshold 1.5 on `v`.
    let spikes = "sample,step,population,neuron\n7,0,h,1\n7,2,h,1\n7,2,h,3\n7,0,h,0\n9,1,h,2\n";
    let mut variables = String::from("sample,step,population,neuron,h.v\n");
    for (sample, offset) in [(7, 0.0), (7, 10.0), (9, 20.0)] {
        for step in 0..3 {
            for neuron in 0..4 {
                variables.push_str(&format!("{sample},{step},h,{neuron},{}\n", offset + step as f64 + 0.1 * neuron as f64));
            }
        }
    }
    let meta = RecordMeta {
        dt: 1e-3,
        steps: 3,
        samples: 3,
        populations: vec![RecordedPopulation {
            name: "h".into(),
            size: 4,
            spikes: true,
            threshold_var: Some("v".into()),
            threshold: vec![1.5],
        }],
    };
    let figures = record_figures("r", spikes, &variables, &meta, None).expect("valid records");
    let names: Vec<&str> = figures.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["r_raster_h", "r_rates_h", "r_trace_h_v"]);
    match &figures[0].chart {
        Chart::Raster { steps, neurons, spikes, .. } => {
            assert_eq!((*steps, *neurons), (3, 4));
            assert_eq!(spikes, &[(0, 1), (2, 1), (2, 3)], "the first presentation of sample 7 only");
        }
        other => panic!("{other:?}"),
    }
    match &figures[1].chart {
        Chart::Histogram { values, .. } => {
            // Spikes per neuron over 3 presentations of 3 ms each, in Hz.
            let per_second = 1.0 / (3.0 * 3e-3);
            let expected = [1.0, 2.0, 1.0, 1.0].map(|c| c * per_second);
            for (got, want) in values.iter().zip(expected) {
                assert!((got - want).abs() < 1e-9, "{values:?}");
            }
        }
        other => panic!("{other:?}"),
    }
    let (traces, hlines) = lines(&figures[2].chart);
    // The most active neuron of the shown presentation first in choice, all four shown in
    // index order (four traces at most).
    let shown: Vec<&str> = traces.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(shown, ["neuron 0", "neuron 1", "neuron 2", "neuron 3"]);
    assert_eq!(traces[1].points, [(0.0, 0.1), (1.0, 1.1), (2.0, 2.1)], "sample 7's first presentation");
    assert_eq!(hlines, &[("threshold".to_string(), 1.5)]);

    // Another sample on request.
    let figures = record_figures("r", spikes, &variables, &meta, Some(9)).expect("valid records");
    let (traces, _) = lines(&figures[2].chart);
    assert_eq!(traces[0].points[0], (0.0, 20.0));
    match &figures[0].chart {
        Chart::Raster { spikes, .. } => assert_eq!(spikes, &[(1, 2)]),
        other => panic!("{other:?}"),
    }

    // Malformed rows name the file and line.
    let error = record_figures("r", "sample,step,population,neuron\n1,x,h,0\n", "", &meta, None).expect_err("an error");
    assert!(error.contains("r.csv, line 2"), "{error}");
    let error = record_figures("r", "", "sample,step,population,neuron,h.v\n1,0,h,0\n", &meta, None).expect_err("an error");
    assert!(error.contains("r.variables.csv, line 2"), "{error}");
}
