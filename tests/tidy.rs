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
    let core = [
        "src/ast.rs",
        "src/parse.rs",
        "src/units.rs",
        "src/ir.rs",
        "src/ir_train.rs",
        "src/lower/expr.rs",
        "src/lower/neuron.rs",
        "src/lower/network.rs",
        "src/lower/train.rs",
    ];
    for file in core {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).expect("readable");
        for forbidden in ["std::fs", "std::thread", "Instant::now", "std::env"] {
            assert!(!text.contains(forbidden), "{file} uses {forbidden}; IO belongs in the driver");
        }
    }
}
