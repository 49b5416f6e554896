//! The `snnc` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use snnc::cli::driver::{RunOptions, check_path, render_all};
use snnc::exec::engine::EngineKind;
use snnc::exec::real::{Precision, Real};
use snnc::train::Observer;
use snnc::train::hooks::RecordText;

/// Writes to standard output; a closed pipe (`snnc emit ir model.snn | head`) ends the program
/// quietly instead of panicking as `println!` would.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(error) = write!(std::io::stdout().lock(), $($arg)*) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
            eprintln!("error: cannot write to standard output: {error}");
            std::process::exit(1);
        }
    }};
}

macro_rules! outln {
    ($($arg:tt)*) => {{
        out!($($arg)*);
        out!("\n");
    }};
}

#[derive(Parser)]
#[command(name = "snnc", version, about = "A declarative language for spiking neural networks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Human,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Stage {
    Ast,
    Ir,
    /// The derived backward step of every population (`bptt` models).
    Grad,
    Clif,
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    Jit,
    Interp,
    Cuda,
}

#[derive(Clone, Copy, ValueEnum)]
enum PrecisionArg {
    F32,
    F64,
}

impl Backend {
    fn engine(self) -> Result<EngineKind, String> {
        match self {
            Backend::Jit => Ok(EngineKind::Jit),
            Backend::Interp => Ok(EngineKind::Oracle),
            Backend::Cuda => Err("the CUDA engine is not built yet; use `--backend jit` or `--backend interp`".to_string()),
        }
    }
}

impl PrecisionArg {
    fn precision(self) -> Precision {
        match self {
            PrecisionArg::F32 => Precision::F32,
            PrecisionArg::F64 => Precision::F64,
        }
    }
}

/// The float type of a run: `--precision` when given, else the train block's `precision`,
/// else f32. The file is checked here to read it (diagnostics are printed by the run itself).
fn run_precision(flag: Option<PrecisionArg>, file: &std::path::Path) -> Precision {
    if let Some(flag) = flag {
        return flag.precision();
    }
    let asked = snnc::cli::driver::check_path(file)
        .ok()
        .and_then(|checked| checked.outcome.module)
        .and_then(|module| module.train.as_ref().and_then(|t| t.precision));
    match asked {
        Some(snnc::ir::train::FloatType::F64) => Precision::F64,
        _ => Precision::F32,
    }
}

/// How a trained model runs in `eval` and `generate`.
#[derive(clap::Args)]
struct EngineArgs {
    #[arg(long, value_enum, default_value = "jit")]
    backend: Backend,
    /// Float type (default: the train block's `precision`, else f32).
    #[arg(long, value_enum)]
    precision: Option<PrecisionArg>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Parse, resolve and check models; exit 1 on any error.
    Check {
        files: Vec<PathBuf>,
        #[arg(long, value_enum, default_value = "human")]
        format: Format,
        /// Print how long checking took.
        #[arg(long)]
        time: bool,
    },
    /// Print what the compiler made of a model at one stage.
    Emit {
        #[arg(value_enum)]
        stage: Stage,
        file: PathBuf,
    },
    /// Compile and train a model as its train block says.
    Run {
        file: PathBuf,
        /// Epochs per phase, instead of the file's.
        #[arg(long)]
        epochs: Option<usize>,
        /// Override a setting: steps, batch, epochs, lr, seed or a network parameter.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        /// Where metrics.csv, metrics.json and checkpoints go.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The MNIST folder, instead of the model's.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Engine: `jit` (Cranelift kernels, GEMM and event-driven projections) or `interp` (the
        /// scalar reference interpreter). CUDA is not built yet.
        #[arg(long, value_enum, default_value = "jit")]
        backend: Backend,
        /// Float type of parameters, states and kernels (default: the train block's `precision`,
        /// else f32).
        #[arg(long, value_enum)]
        precision: Option<PrecisionArg>,
        /// Train on the first N training samples only.
        #[arg(long)]
        limit_train: Option<usize>,
        /// Evaluate on the first N test samples only.
        #[arg(long)]
        limit_test: Option<usize>,
        /// Continue the run whose checkpoint is in DIR (its weights, optimiser state, epoch and
        /// network parameters); the run's output goes to DIR unless `--out` says otherwise.
        #[arg(long, value_name = "DIR")]
        resume: Option<PathBuf>,
        /// Draw the run's figures (as `snnc plot`) into `<out>/plots/` after every epoch.
        #[arg(long)]
        plot: bool,
    },
    /// Figures of a run, from its `--out` folder, as PNG and SVG in `<DIR>/plots/`: loss
    /// terms, accuracy and spikes per neuron per epoch (metrics.json), and from the files of
    /// `record` statements a spike raster, membrane traces with the threshold drawn and a
    /// firing-rate histogram per recorded population.
    Plot {
        dir: PathBuf,
        /// The recorded sample the rasters and traces show (default: the first recorded).
        #[arg(long)]
        sample: Option<u64>,
    },
    /// Evaluate a trained model from a checkpoint.
    Eval {
        file: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long)]
        limit_test: Option<usize>,
        /// Training samples a labelling pass may show (STDP's `assigned_class`; at most 10,000).
        #[arg(long)]
        limit_train: Option<usize>,
        /// Override a setting, as for `run`.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// The generative check (seeds/000): with no input and what the train block's `clamp`
    /// statements hold for each class in turn, decode every spiking layer's activity into an
    /// image. Writes generate.png (a row per class: the class's mean test image, then one
    /// decoded image per layer) and generate.csv.
    Generate {
        file: PathBuf,
        #[arg(long)]
        checkpoint: PathBuf,
        /// Where generate.png and generate.csv go (default: the checkpoint file's folder).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        data: Option<PathBuf>,
        /// Test samples the linear decoders are fitted on.
        #[arg(long, default_value_t = 2000)]
        samples: usize,
        /// Override a setting, as for `run` (e.g. `--set steps=100` to clamp for longer).
        #[arg(long = "set", value_name = "NAME=VALUE")]
        sets: Vec<String>,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Format models canonically, in place.
    Fmt {
        files: Vec<PathBuf>,
        /// Do not write; exit 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
        /// Print the formatted text instead of writing it.
        #[arg(long)]
        stdout: bool,
    },
    /// Write a model as a NIR graph (HDF5; docs/language.md, "NIR").
    Export {
        file: PathBuf,
        /// The NIR file to write.
        #[arg(long, value_name = "FILE")]
        nir: PathBuf,
        /// Trained weights (default: the model's initial values, drawn with its seed).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// The step, in seconds, that time constants are written for (default: the model's).
        #[arg(long)]
        dt: Option<f64>,
    },
    /// Read a NIR graph as a model: its text on standard output, or with `--out DIR` the
    /// model and its weights (checkpoint.safetensors) in DIR.
    Import {
        file: PathBuf,
        /// The step, in seconds, that the graph's time constants are read at (default: the
        /// one `snnc export` wrote into the graph; NIR itself stores none).
        #[arg(long)]
        dt: Option<f64>,
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

/// Stack of the thread that runs a command: parsing, lowering and formatting recurse on the
/// nesting of expressions (a chain of 100,000 `+` is 100,000 levels deep), so they get a large
/// stack, of which only the touched pages are ever committed. Brackets are limited to 256
/// levels by the parser itself.
const STACK_BYTES: usize = 1 << 30;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match std::thread::Builder::new().name("snnc".into()).stack_size(STACK_BYTES).spawn(move || command(cli)) {
        Ok(handle) => handle.join().unwrap_or(ExitCode::FAILURE),
        Err(error) => {
            eprintln!("error: cannot start: {error}");
            ExitCode::FAILURE
        }
    }
}

fn command(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Check { files, format, time } => check(&files, format, time),
        Command::Emit { stage, file } => emit(stage, &file),
        Command::Fmt { files, check, stdout } => fmt(&files, check, stdout),
        Command::Plot { dir, sample } => report(snnc::cli::plot::plot_run(&dir, sample).map(|written| {
            outln!("{} figures in {}", written.len() / 2, dir.join("plots").display());
        })),
        Command::Run { file, epochs, sets, out, data, threads, backend, precision, limit_train, limit_test, resume, plot } => {
            let options = (|| -> Result<RunOptions, String> {
                start_threads(threads)?;
                Ok(RunOptions {
                    engine: backend.engine()?,
                    precision: run_precision(precision, &file),
                    epochs,
                    sets: parse_sets(&sets)?,
                    out: out.or_else(|| resume.clone()),
                    data_dir: data,
                    limit_train,
                    limit_test,
                    seed: 0,
                    progress: true,
                    resume,
                    plot,
                })
            })();
            report(options.and_then(|options| match options.precision {
                Precision::F32 => run::<f32>(&file, &options),
                Precision::F64 => run::<f64>(&file, &options),
            }))
        }
        Command::Generate { file, checkpoint, out, data, samples, sets, engine: EngineArgs { backend, precision, threads } } => {
            let run = (|| -> Result<(), String> {
                start_threads(threads)?;
                let engine = backend.engine()?;
                let sets = parse_sets(&sets)?;
                let out = out.unwrap_or_else(|| checkpoint.parent().map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf));
                let config = snnc::train::generate::GenerateConfig { decoder_samples: samples, engine, ..Default::default() };
                match run_precision(precision, &file) {
                    Precision::F32 => generate::<f32>(&file, &checkpoint, data.as_deref(), &sets, &out, &config),
                    Precision::F64 => generate::<f64>(&file, &checkpoint, data.as_deref(), &sets, &out, &config),
                }
            })();
            report(run)
        }
        Command::Eval { file, checkpoint, data, limit_test, limit_train, sets, engine: EngineArgs { backend, precision, threads } } => {
            let options = (|| -> Result<RunOptions, String> {
                start_threads(threads)?;
                Ok(RunOptions {
                    engine: backend.engine()?,
                    precision: run_precision(precision, &file),
                    epochs: None,
                    sets: parse_sets(&sets)?,
                    out: None,
                    data_dir: data,
                    limit_train,
                    limit_test,
                    seed: 0,
                    progress: false,
                    resume: None,
                    plot: false,
                })
            })();
            report(options.and_then(|options| match options.precision {
                Precision::F32 => eval::<f32>(&file, &checkpoint, &options),
                Precision::F64 => eval::<f64>(&file, &checkpoint, &options),
            }))
        }
        Command::Export { file, nir, checkpoint, dt } => {
            report(snnc::cli::nir::export(&file, &nir, checkpoint.as_deref(), dt).map(|done| {
                outln!("{done}");
            }))
        }
        Command::Import { file, dt, out } => report(snnc::cli::nir::import(&file, dt, out.as_deref()).map(|(text, done)| {
            out!("{text}");
            if let Some(done) = done {
                outln!("{done}");
            }
        })),
    }
}

fn start_threads(threads: Option<usize>) -> Result<(), String> {
    if let Some(threads) = threads {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().map_err(|_| format!("cannot start {threads} threads"))?;
    }
    Ok(())
}

fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, String> {
    sets.iter()
        .map(|set| match set.split_once('=') {
            Some((k, v)) => Ok((k.trim().to_string(), v.trim().to_string())),
            None => Err(format!("--set {set}: write NAME=VALUE")),
        })
        .collect()
}

fn report(result: Result<(), String>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Checks a file and returns its module, printing diagnostics.
fn compile(file: &std::path::Path) -> Result<snnc::ir::Module, String> {
    let checked = check_path(file)?;
    if !checked.diagnostics.is_empty() {
        eprint!("{}", render_all(&checked.diagnostics, terminal_width()));
    }
    if checked.has_errors() {
        return Err(format!("{} has errors", file.display()));
    }
    checked.outcome.module.ok_or_else(|| format!("{} defines no network", file.display()))
}

/// What `snnc run` shows and writes while the loop runs: the progress bar, the per-epoch table,
/// a checkpoint after every epoch (atomically) and the records.
struct Console<'a> {
    bar: indicatif::ProgressBar,
    header_printed: bool,
    epoch: usize,
    out: &'a std::path::Path,
    module: &'a snnc::ir::Module,
    model: String,
    history: Vec<snnc::train::EpochMetrics>,
    records: Option<(std::fs::File, std::fs::File)>,
    failure: Option<String>,
    /// Draw the figures after every epoch (`--plot`).
    plot: bool,
    /// Presentations recorded so far.
    recorded_samples: usize,
    /// Progress as plain lines when stderr is not a terminal (the bar only draws on one).
    plain: Option<PlainProgress>,
}

/// Plain progress lines for a run whose stderr goes to a file or a pipe: one every
/// `every` (`SNNC_PROGRESS_EVERY` seconds, 60 by default), with the epoch's rate so far.
struct PlainProgress {
    every: std::time::Duration,
    /// When the epoch's first batch was reported, and the samples it had done: the rate counts
    /// the samples since, over the time since (the first batch's own time is not seen).
    epoch_start: std::time::Instant,
    first_done: usize,
    last: std::time::Instant,
}

impl PlainProgress {
    fn for_stderr() -> Option<PlainProgress> {
        use std::io::IsTerminal as _;
        if std::io::stderr().is_terminal() {
            return None;
        }
        let seconds = std::env::var("SNNC_PROGRESS_EVERY").ok().and_then(|s| s.parse::<f64>().ok()).filter(|s| s.is_finite() && *s >= 0.0);
        let now = std::time::Instant::now();
        Some(PlainProgress {
            every: std::time::Duration::from_secs_f64(seconds.unwrap_or(60.0)),
            epoch_start: now,
            first_done: 0,
            last: now,
        })
    }
}

impl<F: Real> Observer<F> for Console<'_> {
    fn batch(&mut self, done: usize, total: usize, running: f64) {
        // A new epoch starts when the count of samples done falls back.
        if self.epoch == 0 || done <= self.bar.position() as usize || self.bar.length() != Some(total as u64) {
            self.epoch += 1;
            self.bar.reset();
            self.bar.set_length(total as u64);
            self.bar.set_prefix(format!("epoch {}", self.epoch));
            if let Some(plain) = &mut self.plain {
                plain.epoch_start = std::time::Instant::now();
                plain.first_done = done;
            }
        }
        self.bar.set_position(done as u64);
        self.bar.set_message(format!("{running:.4}"));
        if let Some(plain) = &mut self.plain
            && plain.last.elapsed() >= plain.every
            && done > plain.first_done
        {
            plain.last = std::time::Instant::now();
            let rate = (done - plain.first_done) as f64 / plain.epoch_start.elapsed().as_secs_f64().max(1e-9);
            let has_loss = self.module.train.as_ref().is_some_and(|t| t.phases.iter().any(|p| !p.losses.is_empty()));
            let loss = if has_loss { format!(", running loss {running:.4}") } else { String::new() };
            eprintln!("epoch {}: {done}/{total} training samples, {rate:.0} samples/s{loss}", self.epoch);
        }
    }

    fn records(&mut self, records: &RecordText) {
        use std::io::Write as _;
        self.recorded_samples += records.samples;
        if let Some((spikes, variables)) = &mut self.records {
            let written = spikes.write_all(records.spikes.as_bytes()).and_then(|()| variables.write_all(records.variables.as_bytes()));
            if let Err(error) = written {
                let path = self.out.join(self.module.train.as_ref().and_then(|t| t.record_to.clone()).unwrap_or_default());
                self.failure.get_or_insert(snnc::cli::driver::write_failure(&path, &error));
            }
        }
    }

    fn showcase(&mut self, showcase: &snnc::train::metrics::Showcase) -> Result<(), String> {
        snnc::cli::figures::write_showcase(self.out, showcase).map(|_| ())
    }

    fn epoch(&mut self, metrics: &snnc::train::EpochMetrics, snapshot: &snnc::train::Snapshot<F>) -> Result<(), String> {
        self.bar.finish_and_clear();
        print_epoch(metrics, &mut self.header_printed);
        self.history.push(metrics.clone());
        // After every epoch, so that a run stopped later keeps what it learned; each write
        // replaces the previous file atomically, the checkpoint first, so that metrics never
        // run ahead of it. A failed write stops the run.
        snnc::cli::driver::save_snapshot(&self.out.join("checkpoint.safetensors"), self.module, snapshot, &self.model)?;
        write_metrics(self.out, &self.history)?;
        snnc::cli::figures::write_learned(self.out, self.module, &snapshot.params)?;
        if let Some(stem) = record_stem(self.module) {
            // What `snnc plot` needs beside the records: the step and the thresholds now.
            let meta = snnc::cli::plot::RecordMeta {
                samples: self.recorded_samples,
                ..snnc::cli::plot::record_meta(self.module, &snapshot.params)
            };
            let path = self.out.join(format!("{stem}.json"));
            let json = serde_json::to_string_pretty(&meta).map_err(|e| e.to_string())?;
            snnc::cli::driver::write_atomically(&path, json.as_bytes()).map_err(|e| snnc::cli::driver::write_failure(&path, &e))?;
        }
        if self.plot {
            snnc::cli::plot::plot_run(self.out, None)?;
        }
        match self.failure.take() {
            Some(failure) => Err(failure),
            None => Ok(()),
        }
    }
}

fn print_epoch(metrics: &snnc::train::EpochMetrics, header_printed: &mut bool) {
    if !*header_printed {
        let terms: Vec<String> = metrics.losses.iter().map(|(n, _)| format!("{n:>10}")).collect();
        outln!(
            "{:>5} {:>8} {} {:>9} {:>9} {:>10} {:>8}",
            "epoch",
            "phase",
            terms.join(" "),
            "train acc",
            "test acc",
            "samples/s",
            "seconds"
        );
        *header_printed = true;
    }
    let terms: Vec<String> = metrics.losses.iter().map(|(_, v)| format!("{v:>10.4}")).collect();
    outln!(
        "{:>5} {:>8} {} {:>8.2}% {:>8.2}% {:>10.0} {:>8.1}",
        metrics.epoch,
        metrics.phase,
        terms.join(" "),
        100.0 * metrics.train_accuracy,
        100.0 * metrics.test_accuracy,
        metrics.train_samples_per_second,
        metrics.seconds
    );
    let spikes: Vec<String> = metrics.spikes_per_neuron.iter().map(|(n, s)| format!("{n} {s:.3}")).collect();
    outln!("      spikes per neuron per sample: {}", spikes.join(", "));
    if !metrics.test_losses.is_empty() {
        let losses: Vec<String> = metrics.test_losses.iter().map(|(n, v)| format!("{n} {v:.4}")).collect();
        outln!("      test losses: {}", losses.join(", "));
    }
    if !metrics.activity.is_empty() {
        let activity: Vec<String> =
            metrics.activity.iter().map(|(n, a)| format!("{n} {:.3}/{:.2}/{:.2}/{:.2}", a.afr, a.inp, a.anr, a.rae)).collect();
        outln!("      activity, AFR/INP/ANR/RAE: {}", activity.join(", "));
    }
    outln!(
        "      per test sample: {:.0} synaptic operations; FLOPs of the dense layers: SNN {:.0} vs ANN {:.0} ({:+.0}%)",
        metrics.synaptic_ops,
        metrics.snn_flops,
        metrics.ann_flops,
        100.0 * (metrics.snn_flops / metrics.ann_flops.max(1.0) - 1.0)
    );
}

/// The name of a train block's record files without their extension: `<stem>.csv` holds the
/// spikes, `<stem>.variables.csv` the states and `<stem>.json` what `snnc plot` needs.
fn record_stem(module: &snnc::ir::Module) -> Option<String> {
    let train = module.train.as_ref().filter(|t| !t.records.is_empty())?;
    let name = train.record_to.clone().unwrap_or_else(|| "records.csv".to_string());
    let path = std::path::Path::new(&name);
    Some(path.file_stem().map_or_else(|| "records".to_string(), |s| s.to_string_lossy().into_owned()))
}

/// Opens the two record files of a train block (spikes, and variables beside them).
fn open_records(out: &std::path::Path, module: &snnc::ir::Module) -> Result<Option<(std::fs::File, std::fs::File)>, String> {
    use std::io::Write as _;
    let Some(train) = &module.train else { return Ok(None) };
    if train.records.is_empty() {
        return Ok(None);
    }
    let name = train.record_to.clone().unwrap_or_else(|| "records.csv".to_string());
    let spikes_path = out.join(&name);
    let stem = record_stem(module).unwrap_or_else(|| "records".to_string());
    let variables_path = out.join(format!("{stem}.variables.csv"));
    let (spike_header, variable_header) = snnc::train::hooks::record_headers(module, &train.records);
    let open = |path: &std::path::Path, header: &str| -> Result<std::fs::File, String> {
        let failed = |error: std::io::Error| snnc::cli::driver::write_failure(path, &error);
        let mut file = std::fs::File::create(path).map_err(failed)?;
        file.write_all(header.as_bytes()).map_err(failed)?;
        Ok(file)
    };
    Ok(Some((open(&spikes_path, &spike_header)?, open(&variables_path, &variable_header)?)))
}

fn run<F: Real>(file: &std::path::Path, options: &RunOptions) -> Result<(), String> {
    let module = snnc::cli::driver::prepare(compile(file)?, &options.sets)?;
    let data = snnc::cli::driver::load_data_for(&module, options.data_dir.as_deref())?;
    let stem = file.file_stem().map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let out = options.out.clone().unwrap_or_else(|| PathBuf::from("out").join(&stem));
    snnc::cli::driver::check_out_dir(&out)?;
    let config = snnc::train::RunConfig {
        epochs: options.epochs,
        limit_train: options.limit_train,
        limit_test: options.limit_test,
        seed: options.seed,
        engine: options.engine,
    };
    outln!(
        "{}: {} populations, {} steps, {} training / {} test samples, {} threads, {:?} engine in {}",
        module.network,
        module.populations.len(),
        module.steps,
        options.limit_train.map_or(data.train.len(), |l| l.min(data.train.len())),
        options.limit_test.map_or(data.test.len(), |l| l.min(data.test.len())),
        rayon::current_num_threads(),
        options.engine,
        F::NAME
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} loss {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut console = Console {
        bar,
        header_printed: false,
        epoch: 0,
        out: &out,
        module: &module,
        model: file.display().to_string(),
        history: Vec::new(),
        records: open_records(&out, &module)?,
        failure: None,
        plot: options.plot,
        recorded_samples: 0,
        plain: PlainProgress::for_stderr(),
    };
    let resume = match &options.resume {
        Some(dir) => {
            let snapshot = snnc::cli::driver::load_snapshot::<F>(&dir.join("checkpoint.safetensors"), &module)?;
            outln!("resuming after epoch {} from {}", snapshot.epochs_done, dir.display());
            console.epoch = snapshot.epochs_done;
            // The earlier epochs' rows stay in metrics.csv and metrics.json.
            if let Ok(json) = std::fs::read_to_string(dir.join("metrics.json")) {
                let earlier: Vec<snnc::train::EpochMetrics> =
                    serde_json::from_str(&json).map_err(|e| format!("{}: {e}", dir.join("metrics.json").display()))?;
                console.history = earlier.into_iter().take(snapshot.epochs_done).collect();
            }
            Some(snapshot)
        }
        None => None,
    };
    snnc::train::train_module::<F>(&module, &data, &config, resume, &mut console).map_err(|e| e.to_string())?;
    if let Some(failure) = console.failure {
        return Err(failure);
    }
    outln!("wrote {0}/metrics.csv, {0}/metrics.json and {0}/checkpoint.safetensors", out.display());
    Ok(())
}

fn write_metrics(out: &std::path::Path, history: &[snnc::train::EpochMetrics]) -> Result<(), String> {
    let mut csv = String::from("epoch,phase,lr,");
    if let Some(first) = history.first() {
        for (name, _) in &first.losses {
            csv.push_str(&format!("loss_{name},"));
        }
        for (name, _) in &first.spikes_per_neuron {
            csv.push_str(&format!("spikes_{name},"));
        }
        for (name, _) in &first.test_losses {
            csv.push_str(&format!("test_loss_{name},"));
        }
        for (name, _) in &first.activity {
            csv.push_str(&format!("afr_{name},inp_{name},anr_{name},rae_{name},"));
        }
    }
    csv.push_str("train_accuracy,test_accuracy,synaptic_ops,snn_flops,ann_flops,train_samples_per_second,seconds\n");
    for m in history {
        csv.push_str(&format!("{},{},{},", m.epoch, m.phase, m.lr));
        for (_, v) in &m.losses {
            csv.push_str(&format!("{v},"));
        }
        for (_, v) in &m.spikes_per_neuron {
            csv.push_str(&format!("{v},"));
        }
        for (_, v) in &m.test_losses {
            csv.push_str(&format!("{v},"));
        }
        for (_, a) in &m.activity {
            csv.push_str(&format!("{},{},{},{},", a.afr, a.inp, a.anr, a.rae));
        }
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            m.train_accuracy, m.test_accuracy, m.synaptic_ops, m.snn_flops, m.ann_flops, m.train_samples_per_second, m.seconds
        ));
    }
    let json = serde_json::to_string_pretty(history).map_err(|e| e.to_string())?;
    for (name, bytes) in [("metrics.csv", csv.into_bytes()), ("metrics.json", json.into_bytes())] {
        snnc::cli::driver::write_atomically(&out.join(name), &bytes)
            .map_err(|error| snnc::cli::driver::write_failure(&out.join(name), &error))?;
    }
    Ok(())
}

fn eval<F: Real>(file: &std::path::Path, checkpoint: &std::path::Path, options: &RunOptions) -> Result<(), String> {
    let module = snnc::cli::driver::prepare(compile(file)?, &options.sets)?;
    let train = module.train.as_ref().ok_or("the model has no train block")?;
    let data = snnc::cli::driver::load_data_for(&module, options.data_dir.as_deref())?;
    let mut params = snnc::exec::state::init_params::<F>(&module, train.seed);
    snnc::cli::driver::load_checkpoint(checkpoint, &module, &mut params)?;
    let config = snnc::train::RunConfig {
        limit_test: options.limit_test,
        limit_train: options.limit_train,
        seed: options.seed,
        engine: options.engine,
        ..Default::default()
    };
    let evaluation = snnc::train::evaluate_module(&module, &data, &params, &config).map_err(|e| e.to_string())?;
    let n = options.limit_test.map_or(data.test.len(), |l| l.min(data.test.len()));
    outln!("test accuracy {:.2}% on {n} samples ({:?} engine in {})", 100.0 * evaluation.accuracy, options.engine, F::NAME);
    for (p, (pop, s)) in module.populations.iter().zip(&evaluation.spikes_per_neuron).enumerate() {
        match evaluation.activity.get(p) {
            Some(a) => outln!(
                "  {}: {s:.3} spikes per neuron per sample; AFR {:.3}, INP {:.2}, ANR {:.2}, RAE {:.2}",
                pop.name,
                a.afr,
                a.inp,
                a.anr,
                a.rae
            ),
            None => outln!("  {}: {s:.3} spikes per neuron per sample", pop.name),
        }
    }
    Ok(())
}

fn generate<F: Real>(
    file: &std::path::Path,
    checkpoint: &std::path::Path,
    data_dir: Option<&std::path::Path>,
    sets: &[(String, String)],
    out: &std::path::Path,
    config: &snnc::train::generate::GenerateConfig,
) -> Result<(), String> {
    let module = snnc::cli::driver::prepare(compile(file)?, sets)?;
    let train = module.train.as_ref().ok_or("the model has no train block")?;
    let data = snnc::cli::driver::load_data_for(&module, data_dir)?;
    let mut params = snnc::exec::state::init_params::<F>(&module, train.seed);
    snnc::cli::driver::load_checkpoint(checkpoint, &module, &mut params)?;
    let generated = snnc::train::generate::generate(&module, &data, &params, config).map_err(|e| e.to_string())?;
    let written = snnc::cli::figures::write_generated(out, &generated)?;
    let structure = generated.class_structure();
    for (l, layer) in generated.layers.iter().enumerate() {
        let rate: f64 = generated.clamped_rate.iter().map(|c| c[l]).sum::<f64>() / generated.clamped_rate.len().max(1) as f64;
        outln!(
            "{layer}: decoder R² {:.3}, clamped rate {rate:.4} spikes/step, class structure {:+.3} (clamped-vs-normal correlation, diagonal minus off-diagonal)",
            generated.decoder_r2[l],
            structure[l]
        );
    }
    for name in written {
        outln!("wrote {}", out.join(name).display());
    }
    Ok(())
}

fn terminal_width() -> usize {
    std::env::var("COLUMNS").ok().and_then(|c| c.parse().ok()).unwrap_or(100)
}

fn check(files: &[PathBuf], format: Format, time: bool) -> ExitCode {
    let started = Instant::now();
    let mut failed = false;
    let mut json = Vec::new();
    let mut errors = 0;
    let mut warnings = 0;
    for file in files {
        let checked = match check_path(file) {
            Ok(checked) => checked,
            Err(message) => {
                eprintln!("error: {message}");
                failed = true;
                continue;
            }
        };
        failed |= checked.has_errors();
        errors += checked.diagnostics.iter().filter(|d| d.is_error()).count();
        warnings += checked.diagnostics.iter().filter(|d| !d.is_error()).count();
        match format {
            Format::Human => {
                if !checked.diagnostics.is_empty() {
                    eprint!("{}", render_all(&checked.diagnostics, terminal_width()));
                }
            }
            Format::Json => json.extend(checked.diagnostics.iter().map(|d| d.to_json())),
        }
    }
    match format {
        Format::Json => outln!("{}", serde_json::to_string_pretty(&json).expect("JSON values serialise")),
        Format::Human => {
            let verdict = if failed { "failed" } else { "ok" };
            eprintln!("checked {} file(s): {errors} error(s), {warnings} warning(s): {verdict}", files.len());
        }
    }
    if time {
        eprintln!("checking took {:.1} ms", started.elapsed().as_secs_f64() * 1e3);
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn emit(stage: Stage, file: &std::path::Path) -> ExitCode {
    let checked = match check_path(file) {
        Ok(checked) => checked,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    match stage {
        Stage::Ast => {
            if let Some(ast) = checked.outcome.program.asts.first() {
                outln!("{ast:#?}");
            }
        }
        Stage::Ir => match &checked.outcome.module {
            Some(module) => out!("{module}"),
            None if !checked.has_errors() => eprintln!("{} defines no network; there is no IR to show", file.display()),
            None => {}
        },
        Stage::Grad => match (&checked.outcome.module, checked.outcome.module.as_ref().and_then(|m| m.train.as_ref())) {
            (Some(module), Some(train)) if train.method == snnc::ir::train::Method::EventProp => {
                for pop in &module.populations {
                    match snnc::ir::eventprop::derive(pop) {
                        Ok(adjoint) => {
                            outln!("population {} ({}): EventProp adjoint\n{}", pop.name, pop.neuron, adjoint.text(pop))
                        }
                        Err(message) => {
                            eprintln!("error: population `{}`: {message}", pop.name);
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            (Some(module), Some(train)) => {
                let Some(surrogate) = train.method.surrogate() else {
                    eprintln!("error: the `{}` method derives no surrogate-gradient backward step", train.method.name());
                    return ExitCode::FAILURE;
                };
                for pop in &module.populations {
                    match snnc::ir::grad::derive(pop, surrogate) {
                        Ok(graph) => outln!("population {} ({}): step and its adjoint\n{}", pop.name, pop.neuron, graph.text(pop)),
                        Err(message) => {
                            eprintln!("error: population `{}`: {message}", pop.name);
                            return ExitCode::FAILURE;
                        }
                    }
                }
            }
            (Some(_), None) => eprintln!("{} has no train block; there is no gradient to derive", file.display()),
            (None, _) => {}
        },
        Stage::Clif => match checked.outcome.module.clone().map(snnc::ir::validate::validate) {
            Some(Ok(module)) => match snnc::exec::engine::compile_module::<f32>(&module) {
                Ok(compiled) => {
                    for (name, clif) in &compiled.clif {
                        outln!("; {name}");
                        outln!("{clif}");
                    }
                }
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::FAILURE;
                }
            },
            Some(Err(error)) => {
                eprintln!("error: the model is not valid after lowering: {error}");
                return ExitCode::FAILURE;
            }
            None if !checked.has_errors() => eprintln!("{} defines no network; there is no code to show", file.display()),
            None => {}
        },
    }
    if !checked.diagnostics.is_empty() {
        eprint!("{}", render_all(&checked.diagnostics, terminal_width()));
    }
    if checked.has_errors() { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}

fn fmt(files: &[PathBuf], check_only: bool, stdout: bool) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                eprintln!("error: cannot read {}: {error}", file.display());
                status = ExitCode::FAILURE;
                continue;
            }
        };
        let formatted = match snnc::front::fmt::format_source(&text) {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                let source = std::sync::Arc::new(snnc::front::diag::SourceFile { name: file.display().to_string(), text: text.clone() });
                let mut diagnostics = diagnostics;
                diagnostics.attach(&source);
                eprint!("{}", render_all(&diagnostics.sorted(), terminal_width()));
                status = ExitCode::FAILURE;
                continue;
            }
        };
        if stdout {
            out!("{formatted}");
        } else if check_only {
            if formatted != text {
                eprintln!("{} is not formatted", file.display());
                status = ExitCode::FAILURE;
            }
        } else if formatted != text
            && let Err(error) = snnc::cli::driver::write_atomically(file, formatted.as_bytes())
        {
            eprintln!("error: {}", snnc::cli::driver::write_failure(file, &error));
            status = ExitCode::FAILURE;
        }
    }
    status
}
