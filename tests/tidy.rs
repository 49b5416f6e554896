//! Tidy checks on the code base itself: every source file starts with a module doc, no test is
//! ignored, and the pure core does not touch files, clocks or threads.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources(dir: &str) -> Vec<(PathBuf, String)> {
    let mut files = Vec::new();
    rust_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("readable");
            (p, text)
        })
        .collect()
}

#[test]
fn every_source_file_has_a_module_doc() {
    for (path, text) in sources("src").into_iter().chain(sources("tests")) {
        assert!(text.starts_with("//!"), "{} must start with a `//!` module doc", path.display());
    }
}

#[test]
fn no_test_is_ignored() {
    for (path, text) in sources("src").into_iter().chain(sources("tests")) {
        let marker = ["#[", "ignore]"].concat();
        assert!(!text.contains(&marker), "{} ignores a test", path.display());
    }
}

#[test]
fn the_compiler_core_does_no_io() {
    for dir in ["src/front", "src/lower", "src/ir"] {
        for (path, text) in sources(dir) {
            if path.ends_with("front/fmt.rs") || path.ends_with("lower/program.rs") {
                // `snnc fmt` writes its result atomically, and the program loader reads the
                // files a model imports; the rest of the front end is pure.
                continue;
            }
            for forbidden in ["std::fs", "std::thread", "Instant::now", "std::env"] {
                assert!(!text.contains(forbidden), "{} uses {forbidden}; IO belongs in the driver", path.display());
            }
        }
    }
}

/// Each stage imports only the stages below it (DESIGN.md §3): front <- ir <- lower; ir <-
/// exec <- train <- cli. An engine never reads the syntax tree or the checker, and no stage
/// reaches up into the one that drives it.
#[test]
fn no_stage_imports_a_stage_above_it() {
    let rules: [(&str, &[&str]); 5] = [
        ("src/front", &["crate::ir", "crate::lower", "crate::exec", "crate::train", "crate::cli"]),
        ("src/ir", &["crate::lower", "crate::exec", "crate::train", "crate::cli", "crate::front::parse", "crate::front::diag"]),
        ("src/lower", &["crate::exec", "crate::train", "crate::cli"]),
        ("src/exec", &["crate::train", "crate::cli", "crate::lower", "crate::front"]),
        ("src/train", &["crate::cli", "crate::lower", "crate::front"]),
    ];
    for (dir, forbidden) in rules {
        for (path, text) in sources(dir) {
            let code: Vec<&str> = text.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
            for import in forbidden {
                assert!(!code.iter().any(|line| line.contains(import)), "{} refers to {import}, a stage above it", path.display());
            }
        }
    }
}

/// Inside `exec`, only the engine module knows the engines: the oracle, the JIT, the
/// schedules and the kernels never import it (no cycle through the seam).
#[test]
fn exec_modules_do_not_import_the_engine_seam() {
    for (path, text) in sources("src/exec") {
        if path.ends_with("exec/engine.rs") || path.ends_with("exec/mod.rs") {
            continue;
        }
        let code: Vec<&str> = text.lines().filter(|line| !line.trim_start().starts_with("//")).collect();
        assert!(!code.iter().any(|line| line.contains("exec::engine")), "{} imports the engine seam", path.display());
    }
}

/// Engines are picked once: outside the engine module, nothing matches on which engine runs.
#[test]
fn only_the_engine_module_matches_on_the_engine_kind() {
    for (path, text) in sources("src") {
        if path.ends_with("exec/engine.rs") || path.ends_with("cli/main.rs") {
            continue;
        }
        assert!(
            !text.contains("EngineKind::Jit =>") && !text.contains("EngineKind::Oracle =>"),
            "{} matches on the engine",
            path.display()
        );
    }
}
