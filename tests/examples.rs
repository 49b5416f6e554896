//! The examples of `examples/` run as their headers say and show what they claim: every `.snn`
//! example checks without warnings, is formatted and says how to run it; the STDP pair's
//! weight moves as pair-based STDP predicts for its spike timing, to the value the rule
//! gives; the recurrent network, the custom neuron and the rate-coded MNIST classifier learn
//! well above chance, through the parts they exist to show; the library facade that
//! `examples/library.rs` uses agrees with the command line's evaluation and reports errors
//! with their diagnostics.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn snnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_snnc")).args(args).current_dir(common::root()).output().expect("snnc runs")
}

fn text(output: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("snnc-examples-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Runs `snnc run examples/<file>` with `args` into a fresh folder and returns the folder.
fn run(file: &str, name: &str, args: &[&str]) -> PathBuf {
    let out = scratch(name);
    let out_text = out.to_string_lossy().into_owned();
    let path = format!("examples/{file}");
    let mut all = vec!["run", path.as_str(), "--out", out_text.as_str()];
    all.extend_from_slice(args);
    let output = snnc(&all);
    assert!(output.status.success(), "snnc {}:\n{}", all.join(" "), text(&output));
    out
}

fn last_test_accuracy(out: &Path) -> f64 {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).expect("metrics.json")).expect("JSON");
    json.as_array().expect("epochs").last().expect("an epoch")["test_accuracy"].as_f64().expect("a number")
}

/// A tensor of a run's checkpoint, as f64.
fn tensor(out: &Path, name: &str) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(out.join("checkpoint.safetensors")).expect("a checkpoint");
    let tensors = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let view = tensors.tensor(name).unwrap_or_else(|_| panic!("no tensor `{name}` in {:?}", tensors.names()));
    assert_eq!(view.dtype(), safetensors::Dtype::F32);
    let values = view.data().chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect();
    (view.shape().to_vec(), values)
}

fn example_files() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(common::root().join("examples"))
        .expect("examples/")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snn"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_example_checks_cleanly_is_formatted_and_says_how_to_run_it() {
    let files = example_files();
    assert!(files.len() >= 4, "examples/ holds the four models of its README: {files:?}");
    let readme = std::fs::read_to_string(common::root().join("examples/README.md")).expect("examples/README.md");
    assert!(readme.contains("cargo run --release --example library"), "the README says how to run the library example");
    for file in &files {
        let path = format!("examples/{file}");
        let check = snnc(&["check", &path]);
        assert!(check.status.success(), "{path}:\n{}", text(&check));
        assert!(text(&check).contains("0 error(s), 0 warning(s)"), "{path} checks without warnings:\n{}", text(&check));
        let fmt = snnc(&["fmt", "--check", &path]);
        assert!(fmt.status.success(), "{path} is not formatted (`snnc fmt {path}`):\n{}", text(&fmt));
        let source = std::fs::read_to_string(common::root().join(&path)).expect("readable");
        assert!(source.starts_with("// "), "{path} starts with a header comment");
        let header: String = source.lines().take_while(|l| l.starts_with("//")).collect::<Vec<_>>().join("\n");
        assert!(header.contains(&format!("snnc run {path}")), "{path}'s header says how to run it:\n{header}");
        assert!(header.contains("Shows:"), "{path}'s header says what it shows:\n{header}");
        assert!(readme.contains(&format!("snnc run {path}")), "examples/README.md lists {path} with its command");
    }
}

/// The weight pair-based STDP with all-to-all trace pairing gives after `samples` identical
/// samples of `period` steps, `pre` firing at step `t_pre` and `post` at `t_post` of each:
/// a presynaptic spike takes `a_minus` times the postsynaptic trace, a postsynaptic one adds
/// `a_plus` times the presynaptic trace; traces jump by 1 and decay by exp(-dt / tau) per
/// step, across samples too.
fn pair_stdp_weight(samples: usize, period: usize, t_pre: usize, t_post: usize) -> f64 {
    let (a_plus, a_minus, tau_steps, w_max) = (0.01, 0.012, 20.0, 1.0);
    let decay = |steps: usize| (-(steps as f64) / tau_steps).exp();
    let (mut w, mut x_pre, mut x_post) = (0.5f64, 0.0f64, 0.0f64);
    let mut last = 0usize;
    let mut events: Vec<(usize, bool)> = Vec::new();
    for k in 0..samples {
        events.push((k * period + t_pre, true));
        events.push((k * period + t_post, false));
    }
    events.sort();
    for (t, is_pre) in events {
        x_pre *= decay(t - last);
        x_post *= decay(t - last);
        last = t;
        if is_pre {
            x_pre += 1.0;
            w = (w - a_minus * x_post).clamp(0.0, w_max);
        } else {
            x_post += 1.0;
            w = (w + a_plus * x_pre).clamp(0.0, w_max);
        }
    }
    w
}

#[test]
fn stdp_pair_strengthens_for_pre_before_post_and_weakens_for_the_reverse() {
    // Pre at 10 ms, post at 15 ms: potentiation.
    let out = run("stdp_pair.snn", "stdp-causal", &[]);
    let spikes = std::fs::read_to_string(out.join("spikes.csv")).expect("the recorded spikes");
    let rows: Vec<&str> = spikes.lines().skip(1).collect();
    assert_eq!(rows.len(), 2 * 40, "one spike of each neuron per training sample");
    for row in &rows {
        let fields: Vec<&str> = row.split(',').collect();
        let expected_step = if fields[2] == "pre" { "10" } else { "15" };
        assert_eq!(fields[1], expected_step, "{row}");
    }
    let (shape, w) = tensor(&out, "proj2.pre->post");
    assert_eq!(shape, [1, 1]);
    let expected = pair_stdp_weight(40, 50, 10, 15);
    assert!(expected > 0.75, "the rule itself strengthens this pairing: {expected}");
    assert!((w[0] - expected).abs() < 1e-4, "pre before post: weight {} where the rule gives {expected}", w[0]);
    std::fs::remove_dir_all(out).ok();

    // Post at 10 ms, pre at 15 ms: depression.
    let out = run("stdp_pair.snn", "stdp-acausal", &["--set", "t_pre=15", "--set", "t_post=10"]);
    let (_, w) = tensor(&out, "proj2.pre->post");
    let expected = pair_stdp_weight(40, 50, 15, 10);
    assert!(expected < 0.25, "the rule itself weakens this pairing: {expected}");
    assert!((w[0] - expected).abs() < 1e-4, "post before pre: weight {} where the rule gives {expected}", w[0]);
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn recurrent_network_learns_through_its_loop() {
    let out = run("recurrent.snn", "recurrent", &[]);
    let accuracy = last_test_accuracy(&out);
    assert!(accuracy >= 0.9, "the recurrent network reaches 90% on Yin-Yang (chance 33%): {accuracy}");
    // The loop's weights were trained: drawn in [-0.05, 0.05], they leave that range.
    let (shape, w) = tensor(&out, "proj1.hidden->hidden");
    assert_eq!(shape, [120, 120]);
    let largest = w.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(largest > 0.1, "the recurrent weights trained: largest |w| {largest}");
    std::fs::remove_dir_all(out).ok();
}

#[test]
fn custom_neuron_learns_and_its_time_constants_train() {
    let out = run("custom_neuron.snn", "custom", &[]);
    let accuracy = last_test_accuracy(&out);
    assert!(accuracy >= 0.9, "the adaptive LIF network reaches 90% on Yin-Yang (chance 33%): {accuracy}");
    let (shape, tau) = tensor(&out, "hidden.tau_m");
    assert_eq!(shape, [120], "one membrane time constant per neuron");
    let moved = tau.iter().filter(|t| (**t - 0.020).abs() > 1e-5).count();
    assert!(moved > 60, "most neurons' tau_m (20 ms, stored in seconds) moved: {moved} of 120");
    std::fs::remove_dir_all(out).ok();
}

/// The adaptive LIF of `custom_neuron.snn` does what its equations say, read back through the
/// library: in a step where a neuron spikes, `v` is reset to 0 and the adaptation `a` is its
/// decayed value plus 1; in other steps `a` decays by exp(-dt / tau_a) exactly.
#[test]
fn custom_neuron_resets_and_adapts_as_written() {
    let model = snnc::api::Model::open(&common::root().join("examples/custom_neuron.snn")).expect("compiles");
    let data = model.dataset().expect("Yin-Yang is generated");
    let decay = (-1.0f64 / 200.0).exp();
    let mut spikes_seen = 0;
    for i in 0..20 {
        let run = model.simulate(&data.test.sample(i)).expect("runs");
        let hidden = run.population("hidden").expect("hidden");
        let (v, a) = (hidden.state("v").expect("v"), hidden.state("a").expect("a"));
        for t in 0..run.steps {
            for n in 0..hidden.size {
                let a_before = if t == 0 { 0.0 } else { f64::from(a[t - 1][n]) };
                let fired = hidden.spikes[t].contains(&n);
                let expected = a_before * decay + if fired { 1.0 } else { 0.0 };
                assert!((f64::from(a[t][n]) - expected).abs() < 1e-5, "sample {i}, step {t}, neuron {n}: a {} where {expected}", a[t][n]);
                if fired {
                    assert_eq!(v[t][n], 0.0, "sample {i}, step {t}, neuron {n}: v is reset");
                    spikes_seen += 1;
                }
            }
        }
    }
    assert!(spikes_seen > 100, "the untrained layer fires: {spikes_seen} spikes");
}

#[test]
fn rate_classifier_learns_mnist_from_a_few_thousand_samples() {
    let Some(dir) = std::env::var_os("SNNC_MNIST_DIR") else {
        panic!("set SNNC_MNIST_DIR to the MNIST folder (.ci/run sets it to ../shared/data/mnist)");
    };
    let dir = dir.to_string_lossy().into_owned();
    let out = run("rate_classifier.snn", "rate", &["--data", &dir, "--limit-train", "2000", "--limit-test", "1000"]);
    let accuracy = last_test_accuracy(&out);
    assert!(accuracy >= 0.6, "2,000 samples of one epoch give well above chance (10%): {accuracy}");
    std::fs::remove_dir_all(out).ok();
}

/// The library facade of `examples/library.rs` (which .ci/run runs): `simulate` runs a sample
/// as evaluation does, so predicting from its readout gives `evaluate`'s accuracy; training
/// moves the weights `weights` reads; bad input comes back as errors with diagnostics.
#[test]
fn library_facade_agrees_with_evaluation_and_reports_errors() {
    use snnc::api::{Error, Model, TrainOptions};
    let text = std::fs::read_to_string(common::root().join("models/yin_yang.snn")).expect("the quick-start model");
    let mut model = Model::compile(&text).expect("the quick start compiles");
    let data = model.dataset().expect("Yin-Yang is generated");
    let before = model.weights("xy", "hidden").expect("a connection").values;
    let metrics = model.train(&data, &TrainOptions { epochs: Some(2), limit_train: Some(1000), limit_test: Some(200) }).expect("trains");
    assert_eq!(metrics.iter().map(|m| m.epoch).collect::<Vec<_>>(), [1, 2]);
    let again = model.train(&data, &TrainOptions { epochs: Some(1), limit_train: Some(1000), limit_test: Some(200) }).expect("trains on");
    assert_eq!(again[0].epoch, 3, "epochs are numbered on across calls");
    let weights = model.weights("xy", "hidden").expect("a connection");
    assert_eq!(weights.shape, [5, 120]);
    assert_ne!(weights.values, before, "training moved the weights");

    let n = 200;
    let evaluation = model.evaluate(&data, Some(n)).expect("evaluates");
    assert!(evaluation.accuracy > 0.6, "three short epochs learn: {}", evaluation.accuracy);
    let mut correct = 0;
    for i in 0..n {
        let run = model.simulate(&data.test.sample(i)).expect("runs");
        assert_eq!(run.steps, 10);
        let v = run.population("out").and_then(|out| out.state("v")).expect("out.v");
        let peaks: Vec<f32> = (0..3).map(|k| v.iter().map(|row| row[k]).fold(f32::MIN, f32::max)).collect();
        let predicted = (0..3).fold(0, |best, k| if peaks[k] > peaks[best] { k } else { best });
        correct += usize::from(predicted == usize::from(data.test.labels[i]));
        if i == 0 {
            let hidden = run.population("hidden").expect("hidden");
            assert_eq!(hidden.spikes.len(), 10);
            let total: usize = hidden.counts().iter().sum();
            assert_eq!(total, hidden.spikes.iter().map(Vec::len).sum::<usize>());
            assert!(total > 0, "the hidden layer fires");
        }
    }
    let accuracy = correct as f64 / n as f64;
    assert!((accuracy - evaluation.accuracy).abs() < 1e-9, "simulate's readout gives {accuracy}, evaluate {}", evaluation.accuracy);

    // Errors: the checker's diagnostics, unknown names, samples of the wrong size.
    let broken = text.replace("LI(beta = 0.9)", "LI(beta = 0.9 ms)");
    match Model::compile(&broken) {
        Err(error @ Error::Check(_)) => {
            assert!(error.diagnostics().iter().any(|d| d.code == "snn::units::parameter_override"), "{error}");
            assert!(error.to_string().contains("parameter `beta` of `LI`"), "{error}");
        }
        Err(other) => panic!("expected the checker's diagnostics, got {other}"),
        Ok(_) => panic!("a parameter of the wrong unit was accepted"),
    }
    let unknown = model.weights("xy", "out").expect_err("no such connection");
    assert!(unknown.to_string().contains("xy -> hidden.i"), "the error lists the connections: {unknown}");
    assert!(matches!(model.simulate(&[0.5; 3]), Err(Error::SampleSize { expected: 5, got: 3 })));
    assert!(matches!(Model::compile("import std::neurons\n"), Err(Error::NoNetwork)));
}
