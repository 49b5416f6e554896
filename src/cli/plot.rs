//! `snnc plot`: figures a person can look at, from a run's `--out` folder. From the metrics
//! (metrics.json): the loss terms, the accuracy and the spikes per neuron of every layer per
//! epoch. From the files of the train block's `record` statement: a spike raster per recorded
//! population, the membrane traces of its most active neurons with the threshold drawn, and a
//! histogram of its neurons' firing rates. Each figure is written as PNG and SVG into
//! `<out>/plots/`.
//!
//! Charts are described first ([`Chart`]), from the files' text, and drawn second by
//! `plotters` onto either back end; text is drawn with a bundled font (DejaVu Sans, under the
//! Bitstream Vera licence in assets/fonts/), so no system font is needed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

/// The codes of what `snnc plot` reports (docs/errors.md, "plot").
const NO_RUN: &str = "snn::plot::no_run";
const MALFORMED: &str = "snn::plot::malformed";
const UNREADABLE: &str = "snn::plot::unreadable";

/// A file of the run that is not as `snnc run` writes it.
fn malformed(what: String) -> String {
    format!("{MALFORMED}: {what}\n  help: the file was not written by `snnc run`, or was cut short or edited; run the model again")
}

fn unreadable(path: &Path, error: &std::io::Error) -> String {
    format!("{UNREADABLE}: cannot read {}: {error}\n  help: check that the file is readable (permissions, the disk)", path.display())
}

/// The largest step or neuron index a record row may hold.
const MAX_INDEX: usize = 1 << 24;

/// Pixels of every figure.
pub const SIZE: (u32, u32) = (800, 500);

/// The font every figure's text uses, registered with `plotters` on first use.
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn register_font() -> Result<(), String> {
    static REGISTERED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_ok());
    if ok { Ok(()) } else { Err("the bundled font could not be read".to_string()) }
}

/// One line of a line chart.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Drawn dashed (test-set values beside training ones).
    pub dashed: bool,
}

/// What a figure shows, independent of the back end that draws it.
#[derive(Clone, Debug, PartialEq)]
pub enum Chart {
    /// Lines over a shared x axis, with horizontal reference lines (a threshold).
    Lines { title: String, x_label: String, y_label: String, series: Vec<Series>, hlines: Vec<(String, f64)> },
    /// Spikes as (step, neuron) marks.
    Raster { title: String, x_label: String, steps: usize, neurons: usize, spikes: Vec<(usize, usize)> },
    /// Counts of values in equal bins.
    Histogram { title: String, x_label: String, values: Vec<f64>, bins: usize },
}

/// A chart and the file name (without extension) it is written under.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub name: String,
    pub chart: Chart,
}

/// The charts of a run's metrics.json (an array of one object per epoch): the loss terms
/// (training, and test dashed where measured), the accuracies, and the spikes per neuron per
/// sample of every population. Fields a method does not write are skipped, and so is a chart
/// with nothing to show.
pub fn metrics_figures(json: &str) -> Result<Vec<Figure>, String> {
    let history: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| malformed(format!("metrics.json: {e}")))?;
    let x = |i: usize| (i + 1) as f64;
    // A list of [name, value] pairs per epoch, gathered into one series per name.
    let pairs = |field: &str| -> Vec<Series> {
        let mut by_name: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        for (i, epoch) in history.iter().enumerate() {
            for pair in epoch.get(field).and_then(|v| v.as_array()).into_iter().flatten() {
                let (Some(name), Some(value)) = (pair.get(0).and_then(|n| n.as_str()), pair.get(1).and_then(|v| v.as_f64())) else {
                    continue;
                };
                if !value.is_finite() {
                    continue;
                }
                if !by_name.contains_key(name) {
                    order.push(name.to_string());
                }
                by_name.entry(name.to_string()).or_default().push((x(i), value));
            }
        }
        order.into_iter().map(|name| Series { points: by_name.remove(&name).unwrap_or_default(), name, dashed: false }).collect()
    };
    let scalar = |field: &str, name: &str, scale: f64, dashed: bool| -> Series {
        let points = history
            .iter()
            .enumerate()
            .filter_map(|(i, epoch)| epoch.get(field).and_then(|v| v.as_f64()).filter(|v| v.is_finite()).map(|v| (x(i), scale * v)))
            .collect();
        Series { name: name.to_string(), points, dashed }
    };
    let mut losses = pairs("losses");
    for mut test in pairs("test_losses") {
        test.name = format!("{} (test)", test.name);
        test.dashed = true;
        losses.push(test);
    }
    let lines = |name: &str, title: &str, y_label: &str, series: Vec<Series>| -> Option<Figure> {
        let series: Vec<Series> = series.into_iter().filter(|s| !s.points.is_empty()).collect();
        (!series.is_empty()).then(|| Figure {
            name: name.to_string(),
            chart: Chart::Lines {
                title: title.to_string(),
                x_label: "epoch".to_string(),
                y_label: y_label.to_string(),
                series,
                hlines: Vec::new(),
            },
        })
    };
    let accuracy = vec![scalar("train_accuracy", "train", 100.0, false), scalar("test_accuracy", "test", 100.0, true)];
    Ok([
        lines("loss", "Loss terms per epoch", "loss", losses),
        lines("accuracy", "Accuracy per epoch", "accuracy (%)", accuracy),
        lines("spikes", "Spikes per neuron per test sample", "spikes per neuron", pairs("spikes_per_neuron")),
    ]
    .into_iter()
    .flatten()
    .collect())
}

/// What a run writes beside its record files (`<stem>.json`): the step, the steps per sample,
/// and per population its size and, where its spike condition compares a state with
/// parameters alone, that state and the threshold per neuron (one value when all agree).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordMeta {
    pub dt: f64,
    pub steps: usize,
    /// Presentations recorded so far (0 where unknown: then counted from the spike rows).
    #[serde(default)]
    pub samples: usize,
    pub populations: Vec<RecordedPopulation>,
}

#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RecordedPopulation {
    pub name: String,
    pub size: usize,
    /// Whether its spikes are recorded (a population silent in every sample still gets its
    /// empty raster).
    pub spikes: bool,
    /// The state the spike condition tests, where its threshold is known.
    pub threshold_var: Option<String>,
    pub threshold: Vec<f64>,
}

impl RecordMeta {
    fn population(&self, name: &str) -> Option<&RecordedPopulation> {
        self.populations.iter().find(|p| p.name == name)
    }
}

/// How many neurons' traces a membrane figure shows.
const TRACES: usize = 4;

/// The charts of one `record` statement's files: `spikes` (`sample,step,population,neuron`
/// rows) and `variables` (`sample,step,population,neuron,<pop.var>...` rows). The raster and
/// the traces show one sample (`sample`, else the first recorded); the firing-rate histogram
/// counts every recorded sample. `stem` prefixes the figures' names.
pub fn record_figures(stem: &str, spikes: &str, variables: &str, meta: &RecordMeta, sample: Option<u64>) -> Result<Vec<Figure>, String> {
    let spike_rows = parse_rows(spikes, 4, &format!("{stem}.csv"))?;
    let (var_columns, var_rows) = parse_variable_rows(variables, &format!("{stem}.variables.csv"))?;
    let shown = sample.or_else(|| spike_rows.first().map(|r| r.sample)).or_else(|| var_rows.first().map(|r| r.sample));
    let time_label = if meta.dt > 0.0 { format!("step (dt = {})", seconds_text(meta.dt)) } else { "step".to_string() };
    let mut figures = Vec::new();

    // Populations with recorded spikes, in order of appearance.
    let mut populations: Vec<String> = Vec::new();
    for row in &spike_rows {
        if !populations.contains(&row.population) {
            populations.push(row.population.clone());
        }
    }
    for pop in &meta.populations {
        if !populations.contains(&pop.name) && pop.spikes {
            populations.push(pop.name.clone());
        }
    }
    for pop in &populations {
        let rows: Vec<&Row> = spike_rows.iter().filter(|r| &r.population == pop).collect();
        if let Some(recorded) = meta.population(pop).filter(|p| p.size > 0)
            && let Some(row) = rows.iter().find(|r| r.neuron >= recorded.size)
        {
            return Err(malformed(format!("{stem}.csv: neuron {} of `{pop}` is outside its {} neurons", row.neuron, recorded.size)));
        }
        let size = meta.population(pop).map_or(0, |p| p.size).max(rows.iter().map(|r| r.neuron + 1).max().unwrap_or(0));
        let steps = meta.steps.max(rows.iter().map(|r| r.step + 1).max().unwrap_or(0));
        if let Some(shown) = shown {
            let marks: Vec<(usize, usize)> =
                first_presentation(rows.iter().copied(), shown, |r| (r.sample, r.step)).map(|r| (r.step, r.neuron)).collect();
            figures.push(Figure {
                name: format!("{stem}_raster_{pop}"),
                chart: Chart::Raster {
                    title: format!("{pop}: spikes of sample {shown}"),
                    x_label: time_label.clone(),
                    steps: steps.max(1),
                    neurons: size.max(1),
                    spikes: marks,
                },
            });
        }
        // Spikes per neuron per sample over every recorded sample, as a rate per second
        // where the step is known.
        let presentations = if meta.samples > 0 { meta.samples } else { presentations(spike_rows.iter().map(|r| (r.sample, r.step))) };
        let recorded_samples = presentations.max(1) as f64;
        let mut counts = vec![0.0; size];
        for row in &rows {
            counts[row.neuron] += 1.0;
        }
        let duration = if meta.dt > 0.0 && steps > 0 { Some(meta.dt * steps as f64) } else { None };
        let values: Vec<f64> = counts.iter().map(|c| c / recorded_samples / duration.unwrap_or(1.0)).collect();
        let x_label = if duration.is_some() { "firing rate (Hz)" } else { "spikes per sample" };
        figures.push(Figure {
            name: format!("{stem}_rates_{pop}"),
            chart: Chart::Histogram {
                title: format!("{pop}: firing rates of {size} neurons over {presentations} samples"),
                x_label: x_label.to_string(),
                values,
                bins: 20,
            },
        });
    }

    // Membrane traces: per recorded variable, the neurons that spike most in the shown sample
    // (the first ones where none spikes), with the threshold where the variable is the one
    // the spike condition tests.
    let Some(shown) = shown else { return Ok(figures) };
    for (column, label) in var_columns.iter().enumerate() {
        let Some((pop, var)) = label.split_once('.') else { continue };
        let mut active: BTreeMap<usize, usize> = BTreeMap::new();
        for row in first_presentation(spike_rows.iter(), shown, |r| (r.sample, r.step)).filter(|r| r.population == pop) {
            *active.entry(row.neuron).or_default() += 1;
        }
        let mut traces: BTreeMap<usize, Vec<(f64, f64)>> = BTreeMap::new();
        for row in first_presentation(var_rows.iter(), shown, |r| (r.sample, r.step)).filter(|r| r.population == pop) {
            if let Some(value) = row.values.get(column).copied().flatten() {
                traces.entry(row.neuron).or_default().push((row.step as f64, value));
            }
        }
        if traces.is_empty() {
            continue;
        }
        let mut neurons: Vec<usize> = traces.keys().copied().collect();
        neurons.sort_by_key(|n| (std::cmp::Reverse(active.get(n).copied().unwrap_or(0)), *n));
        neurons.truncate(TRACES);
        neurons.sort_unstable();
        let series = neurons
            .iter()
            .map(|n| Series { name: format!("neuron {n}"), points: traces.remove(n).unwrap_or_default(), dashed: false })
            .collect();
        let mut hlines = Vec::new();
        if let Some(recorded) = meta.population(pop)
            && recorded.threshold_var.as_deref() == Some(var)
        {
            let mut thresholds: Vec<f64> =
                neurons.iter().filter_map(|n| recorded.threshold.get(*n).or(recorded.threshold.first())).copied().collect();
            thresholds.dedup();
            for value in thresholds {
                hlines.push(("threshold".to_string(), value));
            }
        }
        figures.push(Figure {
            name: format!("{stem}_trace_{pop}_{var}"),
            chart: Chart::Lines {
                title: format!("{pop}.{var} of sample {shown}"),
                x_label: time_label.clone(),
                y_label: label.clone(),
                series,
                hlines,
            },
        });
    }
    Ok(figures)
}

/// The rows of the first presentation of sample `shown`, from rows in file order: they end at
/// the first row of another sample, or where the step falls back (the sample shown again).
fn first_presentation<'a, T: 'a>(
    rows: impl Iterator<Item = &'a T>,
    shown: u64,
    key: impl Fn(&T) -> (u64, usize) + Copy,
) -> impl Iterator<Item = &'a T> {
    let mut started = false;
    let mut last_step = 0;
    rows.skip_while(move |row| key(row).0 != shown).take_while(move |row| {
        let (sample, step) = key(row);
        let same = sample == shown && (!started || step >= last_step);
        started = true;
        last_step = step;
        same
    })
}

/// Presentations in rows of `(sample, step)` in file order: a new one starts where the sample
/// changes or the step falls back.
fn presentations(rows: impl Iterator<Item = (u64, usize)>) -> usize {
    let mut count = 0;
    let mut last: Option<(u64, usize)> = None;
    for (sample, step) in rows {
        if last.is_none_or(|(s, t)| s != sample || step < t) {
            count += 1;
        }
        last = Some((sample, step));
    }
    count
}

fn seconds_text(dt: f64) -> String {
    if dt >= 1e-3 { format!("{} ms", dt * 1e3) } else { format!("{} us", dt * 1e6) }
}

struct Row {
    sample: u64,
    step: usize,
    population: String,
    neuron: usize,
}

struct VarRow {
    sample: u64,
    step: usize,
    population: String,
    neuron: usize,
    /// One entry per variable column; empty cells (another population's variables) are None.
    values: Vec<Option<f64>>,
}

fn parse_rows(text: &str, columns: usize, file: &str) -> Result<Vec<Row>, String> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate().skip(1) {
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let bad =
            || malformed(format!("{file}, line {}: expected {columns} columns `sample,step,population,neuron`, found `{line}`", i + 1));
        if cells.len() != columns {
            return Err(bad());
        }
        let row = Row {
            sample: cells[0].parse().map_err(|_| bad())?,
            step: cells[1].parse().map_err(|_| bad())?,
            population: cells[2].to_string(),
            neuron: cells[3].parse().map_err(|_| bad())?,
        };
        if row.step > MAX_INDEX || row.neuron > MAX_INDEX {
            return Err(bad());
        }
        rows.push(row);
    }
    Ok(rows)
}

fn parse_variable_rows(text: &str, file: &str) -> Result<(Vec<String>, Vec<VarRow>), String> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else { return Ok((Vec::new(), Vec::new())) };
    let columns: Vec<String> = header.split(',').skip(4).map(str::to_string).collect();
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        let bad =
            || malformed(format!("{file}, line {}: expected {} columns as its header says, found `{line}`", i + 2, columns.len() + 4));
        if cells.len() != columns.len() + 4 {
            return Err(bad());
        }
        let values = cells[4..]
            .iter()
            .map(|c| if c.is_empty() { Ok(None) } else { c.parse::<f64>().map(Some) })
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        let row = VarRow {
            sample: cells[0].parse().map_err(|_| bad())?,
            step: cells[1].parse().map_err(|_| bad())?,
            population: cells[2].to_string(),
            neuron: cells[3].parse().map_err(|_| bad())?,
            values,
        };
        if row.step > MAX_INDEX || row.neuron > MAX_INDEX {
            return Err(bad());
        }
        rows.push(row);
    }
    Ok((columns, rows))
}

/// A figure drawn as SVG text and as PNG bytes.
pub struct Drawn {
    pub svg: String,
    pub png: Vec<u8>,
}

/// Draws a chart with both back ends.
pub fn draw(chart: &Chart) -> Result<Drawn, String> {
    register_font()?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw_on(chart, &root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let (width, height) = SIZE;
    let mut rgb = vec![0u8; (width * height * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        draw_on(chart, &root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(Drawn { svg, png: encode_png(&rgb, width, height)? })
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>, String> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
    writer.write_image_data(rgb).map_err(|e| e.to_string())?;
    writer.finish().map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The colour of the `i`th series.
fn color(i: usize) -> RGBColor {
    const PALETTE: [RGBColor; 8] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
    ];
    PALETTE[i % PALETTE.len()]
}

/// A tick label: whole numbers without decimals, others with at most four significant
/// digits after the point and no trailing zeros.
fn tick(value: &f64) -> String {
    if value.fract() == 0.0 {
        return format!("{value:.0}");
    }
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A range around `values` with a margin, never empty.
fn span(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = if hi > lo { 0.05 * (hi - lo) } else { 0.5 * lo.abs().max(1.0) };
    (lo - pad, hi + pad)
}

/// The axes of a chart: ranges, labels, at most `x_ticks` ticks along x, and a light grid.
struct Axes<'a> {
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
    x_label: &'a str,
    y_label: &'a str,
    x_ticks: usize,
    grid: bool,
}

type Frame<'a, DB> = ChartContext<'a, DB, Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>>;

/// A titled chart area with its axes drawn, every chart's frame.
fn frame<'a, DB: DrawingBackend>(root: &'a DrawingArea<DB, Shift>, title: &str, axes: Axes) -> Result<Frame<'a, DB>, String> {
    let mut plot = ChartBuilder::on(root)
        .caption(title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(axes.x, axes.y)
        .map_err(|e| e.to_string())?;
    let mut mesh = plot.configure_mesh();
    mesh.x_desc(axes.x_label)
        .y_desc(axes.y_label)
        .x_labels(axes.x_ticks)
        .x_label_formatter(&tick)
        .y_label_formatter(&tick)
        .label_style((FAMILY, 14));
    if axes.grid {
        mesh.light_line_style(RGBColor(235, 235, 235));
    } else {
        mesh.disable_mesh();
    }
    mesh.draw().map_err(|e| e.to_string())?;
    Ok(plot)
}

fn draw_on<DB: DrawingBackend>(chart: &Chart, root: &DrawingArea<DB, Shift>) -> Result<(), String> {
    let fail = |e: &dyn std::fmt::Display| e.to_string();
    root.fill(&WHITE).map_err(|e| fail(&e))?;
    match chart {
        Chart::Lines { title, x_label, y_label, series, hlines } => {
            let (x0, x1) = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
            let (y0, y1) = span(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).chain(hlines.iter().map(|h| h.1)));
            // Whole-number x values (epochs, steps) get one tick each where they are few.
            let xs: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
            let whole = xs.iter().all(|x| x.fract() == 0.0);
            let distinct = xs.iter().map(|x| *x as i64).collect::<std::collections::BTreeSet<_>>().len();
            let axes = Axes { x: x0..x1, y: y0..y1, x_label, y_label, x_ticks: if whole { distinct.clamp(2, 10) } else { 10 }, grid: true };
            let mut plot = frame(root, title, axes)?;
            for (i, s) in series.iter().enumerate() {
                let style = color(i).stroke_width(2);
                let legend = move |(x, y): (i32, i32)| PathElement::new(vec![(x, y), (x + 20, y)], color(i).stroke_width(2));
                if s.dashed {
                    plot.draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, style))
                        .map_err(|e| fail(&e))?
                        .label(s.name.as_str())
                        .legend(legend);
                } else {
                    plot.draw_series(LineSeries::new(s.points.iter().copied(), style))
                        .map_err(|e| fail(&e))?
                        .label(s.name.as_str())
                        .legend(legend);
                }
                if s.points.len() <= 60 {
                    plot.draw_series(s.points.iter().map(|p| Circle::new(*p, 3, color(i).filled()))).map_err(|e| fail(&e))?;
                }
            }
            for (name, value) in hlines {
                let style = BLACK.stroke_width(1);
                plot.draw_series(DashedLineSeries::new([(x0, *value), (x1, *value)], 6, 4, style))
                    .map_err(|e| fail(&e))?
                    .label(format!("{name} {}", tick(value)))
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
            }
            plot.configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(RGBColor(160, 160, 160))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| fail(&e))?;
        }
        Chart::Raster { title, x_label, steps, neurons, spikes } => {
            let axes = Axes { x: 0.0..*steps as f64, y: 0.0..*neurons as f64, x_label, y_label: "neuron", x_ticks: 10, grid: false };
            let mut plot = frame(root, title, axes)?;
            // A mark fills its step and neuron, at least two pixels in each direction.
            let (width, height) = plot.plotting_area().dim_in_pixel();
            let dx = (2.0 * *steps as f64 / width.max(1) as f64).max(1.0);
            let dy = (2.0 * *neurons as f64 / height.max(1) as f64).max(1.0);
            plot.draw_series(spikes.iter().map(|&(t, n)| {
                let (x, y) = (t as f64, n as f64);
                Rectangle::new([(x, y), (x + dx, y + dy)], BLACK.filled())
            }))
            .map_err(|e| fail(&e))?;
        }
        Chart::Histogram { title, x_label, values, bins } => {
            let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(*v), hi.max(*v)));
            let (lo, hi) = if lo.is_finite() && hi > lo {
                (lo, hi)
            } else if lo.is_finite() {
                (lo - 0.5, lo + 0.5)
            } else {
                (0.0, 1.0)
            };
            let bins = (*bins).max(1);
            let width = (hi - lo) / bins as f64;
            let mut counts = vec![0usize; bins];
            for v in values.iter().filter(|v| v.is_finite()) {
                counts[(((v - lo) / width) as usize).min(bins - 1)] += 1;
            }
            let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.08;
            let axes = Axes { x: lo..hi, y: 0.0..top, x_label, y_label: "neurons", x_ticks: 10, grid: true };
            let mut plot = frame(root, title, axes)?;
            plot.draw_series(counts.iter().enumerate().map(|(b, c)| {
                let x = lo + b as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, *c as f64)], color(0).filled())
            }))
            .map_err(|e| fail(&e))?;
        }
    }
    Ok(())
}

/// Every figure of the run in `out`: from metrics.json and from every record file pair
/// (`<stem>.csv` beside `<stem>.variables.csv`, with `<stem>.json` where the run wrote it).
pub fn figures_of_run(out: &Path, sample: Option<u64>) -> Result<Vec<Figure>, String> {
    let read = |path: &Path| std::fs::read_to_string(path).map_err(|e| unreadable(path, &e));
    let metrics = out.join("metrics.json");
    if !metrics.exists() {
        return Err(format!(
            "{NO_RUN}: {} has no metrics.json\n  help: give the `--out` folder of a `snnc run` (by default `out/<model>`)",
            out.display()
        ));
    }
    let mut figures = metrics_figures(&read(&metrics)?)?;
    let mut stems: Vec<String> = std::fs::read_dir(out)
        .map_err(|e| unreadable(out, &e))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.strip_suffix(".variables.csv").map(str::to_string))
        .collect();
    stems.sort();
    for stem in stems {
        let spikes = out.join(format!("{stem}.csv"));
        let spikes = if spikes.exists() { read(&spikes)? } else { String::new() };
        let variables = read(&out.join(format!("{stem}.variables.csv")))?;
        let meta_path = out.join(format!("{stem}.json"));
        let meta = if meta_path.exists() {
            serde_json::from_str(&read(&meta_path)?).map_err(|e| malformed(format!("{}: {e}", meta_path.display())))?
        } else {
            RecordMeta::default()
        };
        figures.extend(record_figures(&stem, &spikes, &variables, &meta, sample)?);
    }
    Ok(figures)
}

/// Draws every figure of the run in `out` into `<out>/plots/` as PNG and SVG (each written
/// atomically); returns the paths written.
pub fn plot_run(out: &Path, sample: Option<u64>) -> Result<Vec<PathBuf>, String> {
    let figures = figures_of_run(out, sample)?;
    let dir = out.join("plots");
    std::fs::create_dir_all(&dir).map_err(|e| crate::cli::driver::write_failure(&dir, &e))?;
    let mut written = Vec::new();
    for figure in &figures {
        let drawn = draw(&figure.chart).map_err(|e| format!("figure {}: {e}", figure.name))?;
        for (extension, bytes) in [("png", drawn.png.as_slice()), ("svg", drawn.svg.as_bytes())] {
            let path = dir.join(format!("{}.{extension}", figure.name));
            crate::cli::driver::write_atomically(&path, bytes).map_err(|e| crate::cli::driver::write_failure(&path, &e))?;
            written.push(path);
        }
    }
    Ok(written)
}

/// The [`RecordMeta`] of a train block's `record` statements at parameters `params`: the
/// threshold of a population whose spike condition is `state > expr` with `expr` reading
/// parameters, constants and network parameters alone (an adaptive threshold, which reads a
/// state, is not drawn).
pub fn record_meta<F: crate::exec::real::Real>(module: &crate::ir::Module, params: &crate::exec::state::Params<F>) -> RecordMeta {
    use crate::ir::{Node, VarKind};
    let Some(train) = &module.train else { return RecordMeta::default() };
    let net = crate::exec::state::net_params::<f64>(module);
    let mut populations: Vec<RecordedPopulation> = Vec::new();
    for (pop, var) in &train.records {
        let p = pop.0 as usize;
        let population = module.population(*pop);
        if let Some(recorded) = populations.iter_mut().find(|r| r.name == population.name) {
            recorded.spikes |= var.is_none();
            continue;
        }
        let n = population.size();
        let mut threshold_var = None;
        let mut threshold = Vec::new();
        if let Some(test) = &population.threshold
            && let Node::Var(tested) = population.exprs.get(test.lhs)
        {
            let values: Vec<f64> = (0..n)
                .map(|i| {
                    let vars: Vec<f64> = population
                        .vars
                        .iter()
                        .enumerate()
                        .map(|(v, var)| match var.kind {
                            VarKind::Param { .. } => {
                                let values = &params.neuron_params[p][v];
                                values.get(i).or(values.first()).map_or(f64::NAN, |x| x.into_f64())
                            }
                            _ => f64::NAN,
                        })
                        .collect();
                    crate::exec::oracle::eval_at(&population.exprs, test.rhs, &vars, &[], 0.0, &net, module.dt)
                })
                .collect();
            if values.iter().all(|v| v.is_finite()) {
                threshold_var = Some(population.vars[tested.0 as usize].name.clone());
                threshold = if values.windows(2).all(|w| w[0] == w[1]) { values[..1.min(n)].to_vec() } else { values };
            }
        }
        populations.push(RecordedPopulation { name: population.name.clone(), size: n, spikes: var.is_none(), threshold_var, threshold });
    }
    RecordMeta { dt: module.dt, steps: module.steps + module.rest_steps, samples: 0, populations }
}
