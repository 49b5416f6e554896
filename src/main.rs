//! The `snnc` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};

use snnc::driver::{check_path, render_all};

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
    }
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
        Format::Json => println!("{}", serde_json::to_string_pretty(&json).expect("JSON values serialise")),
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
                println!("{ast:#?}");
            }
        }
        Stage::Ir => match &checked.outcome.module {
            Some(module) => print!("{module}"),
            None if !checked.has_errors() => eprintln!("{} defines no network; there is no IR to show", file.display()),
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
            print!("{formatted}");
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
