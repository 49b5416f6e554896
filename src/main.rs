//! The `snnc` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use snnc::driver::{check_path, render_all};

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
    /// Compile and train a model as its train block says (reference back end).
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
        /// Back end: `jit` (Cranelift kernels per population, GEMM), `batched` (whole batch rows
        /// per IR node, GEMM) or `interp` (the scalar reference interpreter). CUDA is not built
        /// yet.
        #[arg(long, default_value = "jit")]
        backend: String,
        /// Train on the first N training samples only.
        #[arg(long)]
        limit_train: Option<usize>,
        /// Evaluate on the first N test samples only.
        #[arg(long)]
        limit_test: Option<usize>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { files, format, time } => check(&files, format, time),
        Command::Emit { stage, file } => emit(stage, &file),
        Command::Fmt { files, check, stdout } => fmt(&files, check, stdout),
        Command::Run { file, epochs, sets, out, data, threads, backend, limit_train, limit_test } => {
            let backend = match backend.as_str() {
                "interp" => snnc::runtime::Backend::Interp,
                "batched" => snnc::runtime::Backend::Batched,
                "jit" => snnc::runtime::Backend::Jit,
                "cuda" => {
                    eprintln!(
                        "error: backend `{backend}` is not built yet; use `--backend jit`, `--backend batched` or `--backend interp`"
                    );
                    return ExitCode::FAILURE;
                }
                other => {
                    eprintln!("error: unknown backend `{other}`; choose `jit`, `batched` or `interp`");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(threads) = threads {
                if rayon::ThreadPoolBuilder::new().num_threads(threads).build_global().is_err() {
                    eprintln!("error: cannot start {threads} threads");
                    return ExitCode::FAILURE;
                }
            }
            let mut parsed = Vec::new();
            for set in sets {
                match set.split_once('=') {
                    Some((k, v)) => parsed.push((k.trim().to_string(), v.trim().to_string())),
                    None => {
                        eprintln!("error: --set {set}: write NAME=VALUE");
                        return ExitCode::FAILURE;
                    }
                }
            }
            let options = snnc::driver::RunOptions {
                epochs,
                sets: parsed,
                out,
                data_dir: data,
                limit_train,
                limit_test,
                seed: 0,
                progress: true,
                backend,
            };
            report(run(&file, &options))
        }
        Command::Eval { file, checkpoint, data, limit_test } => report(eval(&file, &checkpoint, data.as_deref(), limit_test)),
    }
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
fn compile(file: &PathBuf) -> Result<snnc::ir::Module, String> {
    let checked = check_path(file)?;
    if !checked.diagnostics.is_empty() {
        eprint!("{}", render_all(&checked.diagnostics, terminal_width()));
    }
    if checked.has_errors() {
        return Err(format!("{} has errors", file.display()));
    }
    checked.outcome.module.ok_or_else(|| format!("{} defines no network", file.display()))
}

fn run(file: &PathBuf, options: &snnc::driver::RunOptions) -> Result<(), String> {
    let mut module = compile(file)?;
    snnc::driver::apply_sets(&mut module, &options.sets)?;
    let train = module.train.as_ref().ok_or("the model has no train block")?;
    if let snnc::ir_train::Data::Mnist { augment_shift, augment_rotate_deg, .. } = &train.data {
        if *augment_shift != 0.0 || *augment_rotate_deg != 0.0 {
            eprintln!(
                "warning: data augmentation (shift {augment_shift}, rotate {augment_rotate_deg}) is not applied yet; training uses the images as they are"
            );
        }
    }
    let data = snnc::driver::load_data(train, options.data_dir.as_deref())?;
    let stem = file.file_stem().map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
    let out = options.out.clone().unwrap_or_else(|| PathBuf::from("out").join(&stem));
    let config = snnc::runtime::RunConfig {
        epochs: options.epochs,
        limit_train: options.limit_train,
        limit_test: options.limit_test,
        seed: options.seed,
        backend: options.backend,
    };
    outln!(
        "{}: {} populations, {} steps, {} training / {} test samples, {} threads, {:?} back end",
        module.network,
        module.populations.len(),
        module.steps,
        options.limit_train.map_or(data.train.len(), |l| l.min(data.train.len())),
        options.limit_test.map_or(data.test.len(), |l| l.min(data.test.len())),
        rayon::current_num_threads(),
        options.backend
    );
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {per_sec} loss {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let mut header_printed = false;
    let mut epoch = 0;
    let (params, history) = snnc::runtime::train_module(
        &module,
        &data,
        &config,
        |metrics| {
            bar.finish_and_clear();
            if !header_printed {
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
                header_printed = true;
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
            outln!(
                "      per test sample: {:.0} synaptic operations; FLOPs of the dense layers: SNN {:.0} vs ANN {:.0} ({:+.0}%)",
                metrics.synaptic_ops,
                metrics.snn_flops,
                metrics.ann_flops,
                100.0 * (metrics.snn_flops / metrics.ann_flops.max(1.0) - 1.0)
            );
        },
        |done, total, running| {
            if done <= 1 || bar.length() != Some(total as u64) {
                epoch += 1;
                bar.reset();
                bar.set_length(total as u64);
                bar.set_prefix(format!("epoch {epoch}"));
            }
            bar.set_position(done as u64);
            bar.set_message(format!("{running:.4}"));
        },
    )
    .map_err(|e| e.to_string())?;
    write_metrics(&out, &history)?;
    snnc::driver::save_checkpoint(&out.join("checkpoint.safetensors"), &module, &params, &file.display().to_string())?;
    outln!("wrote {0}/metrics.csv, {0}/metrics.json and {0}/checkpoint.safetensors", out.display());
    Ok(())
}

fn write_metrics(out: &std::path::Path, history: &[snnc::runtime::EpochMetrics]) -> Result<(), String> {
    let mut csv = String::from("epoch,phase,lr,");
    if let Some(first) = history.first() {
        for (name, _) in &first.losses {
            csv.push_str(&format!("loss_{name},"));
        }
        for (name, _) in &first.spikes_per_neuron {
            csv.push_str(&format!("spikes_{name},"));
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
        csv.push_str(&format!(
            "{},{},{},{},{},{},{}\n",
            m.train_accuracy, m.test_accuracy, m.synaptic_ops, m.snn_flops, m.ann_flops, m.train_samples_per_second, m.seconds
        ));
    }
    let json = serde_json::to_string_pretty(history).map_err(|e| e.to_string())?;
    for (name, bytes) in [("metrics.csv", csv.into_bytes()), ("metrics.json", json.into_bytes())] {
        snnc::driver::write_atomically(&out.join(name), &bytes).map_err(|e| format!("cannot write {}: {e}", out.join(name).display()))?;
    }
    Ok(())
}

fn eval(file: &PathBuf, checkpoint: &std::path::Path, data_dir: Option<&std::path::Path>, limit_test: Option<usize>) -> Result<(), String> {
    let module = compile(file)?;
    let train = module.train.as_ref().ok_or("the model has no train block")?;
    let data = snnc::driver::load_data(train, data_dir)?;
    let mut params = snnc::interp::init_params(&module, train.seed);
    snnc::driver::load_checkpoint(checkpoint, &module, &mut params)?;
    let n = limit_test.map_or(data.test.len(), |l| l.min(data.test.len()));
    let (accuracy, spikes) =
        snnc::runtime::evaluate_with(snnc::runtime::Backend::Batched, &module, train, &params, &data.test, n, train.seed)
            .map_err(|e| e.to_string())?;
    outln!("test accuracy {:.2}% on {n} samples", 100.0 * accuracy);
    for (pop, s) in module.populations.iter().zip(spikes) {
        outln!("  {}: {s:.3} spikes per neuron per sample", pop.name);
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

fn emit(stage: Stage, file: &PathBuf) -> ExitCode {
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
            (Some(module), Some(train)) => {
                let snnc::ir_train::Method::Bptt { surrogate } = &train.method else {
                    eprintln!("error: only `method = bptt` derives a backward step");
                    return ExitCode::FAILURE;
                };
                for pop in &module.populations {
                    match snnc::grad::derive(pop, surrogate) {
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
        Stage::Clif => match &checked.outcome.module {
            Some(module) => match snnc::jit::compile(module) {
                Ok(compiled) => {
                    for (pop, clif) in module.populations.iter().zip(&compiled.clif) {
                        outln!("; population {} ({}): forward step", pop.name, pop.neuron);
                        outln!("{clif}");
                    }
                }
                Err(message) => {
                    eprintln!("error: {message}");
                    return ExitCode::FAILURE;
                }
            },
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
        let formatted = match snnc::fmt::format_source(&text) {
            Ok(formatted) => formatted,
            Err(diagnostics) => {
                let source = std::sync::Arc::new(snnc::diag::SourceFile { name: file.display().to_string(), text: text.clone() });
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
        } else if formatted != text {
            if let Err(error) = snnc::fmt::write_atomically(file, &formatted) {
                eprintln!("error: cannot write {}: {error}", file.display());
                status = ExitCode::FAILURE;
            }
        }
    }
    status
}
