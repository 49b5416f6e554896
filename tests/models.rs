//! The shipped models and the standard library: they check cleanly, format canonically,
//! round-trip through `fmt`, and their IR matches the golden dumps.

use std::path::PathBuf;
use std::process::Command;

use snnc::cli::driver::{check_path, render_all};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn snn_files(dir: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("folder exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "snn"))
        .collect();
    files.sort();
    files
}

fn shipped() -> Vec<PathBuf> {
    let mut files = snn_files("models");
    files.extend(snn_files("stdlib"));
    files
}

#[test]
fn every_shipped_file_checks_without_errors() {
    let files = shipped();
    assert!(files.len() >= 20, "models for every research system and variant: {}", files.len());
    for file in files {
        let checked = check_path(&file).expect("readable");
        assert!(!checked.has_errors(), "{}:\n{}", file.display(), render_all(&checked.diagnostics, 100));
        if file.starts_with(root().join("models")) {
            assert!(checked.outcome.module.is_some(), "{} lowers to a module", file.display());
            let module = checked.outcome.module.as_ref().expect("checked above");
            assert!(module.train.is_some(), "{} has a train block", file.display());
        }
    }
}

#[test]
fn every_model_names_its_source_and_target_in_a_header_comment() {
    for file in snn_files("models") {
        let text = std::fs::read_to_string(&file).expect("readable");
        let header: String = text.lines().take_while(|l| l.starts_with("//")).collect::<Vec<_>>().join("\n");
        assert!(
            header.contains("seeds/") || header.contains("REFERENCE.md") || header.contains("Kriener") || header.contains("Variant of"),
            "{}: name the source",
            file.display()
        );
        assert!(header.contains("Target") || header.contains("Variant of"), "{}: state the target", file.display());
    }
}

#[test]
fn the_cli_check_exits_zero_on_shipped_files_and_one_on_a_malformed_one() {
    let binary = env!("CARGO_BIN_EXE_snnc");
    let status = Command::new(binary).arg("check").args(shipped()).output().expect("runs");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let bad = root().join("tests/fixtures/errors/units_ode.snn");
    let output = Command::new(binary).args(["check", "--format", "json"]).arg(&bad).output().expect("runs");
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert!(json.as_array().expect("a list").iter().any(|d| d["code"] == "snn::units::ode"));
}

/// The AST's debug text with every span removed, for comparisons up to positions.
fn without_spans(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(index) = rest.find("Span {") {
        out.push_str(&rest[..index]);
        let end = rest[index..].find('}').expect("span closes");
        rest = &rest[index + end + 1..];
    }
    out.push_str(rest);
    out
}

fn parse_debug(text: &str) -> String {
    let (file, diagnostics) = snnc::front::parse::parse(text);
    assert!(!diagnostics.has_errors());
    without_spans(&format!("{file:#?}"))
}

#[test]
fn fmt_round_trips_and_is_idempotent_on_every_shipped_file() {
    for file in shipped() {
        let text = std::fs::read_to_string(&file).expect("readable");
        let formatted = snnc::front::fmt::format_source(&text).expect("formats");
        assert_eq!(parse_debug(&formatted), parse_debug(&text), "{}: parse(fmt(x)) == parse(x)", file.display());
        let twice = snnc::front::fmt::format_source(&formatted).expect("formats");
        assert_eq!(twice, formatted, "{}: fmt is idempotent", file.display());
        assert_eq!(formatted, text, "{}: shipped files are canonically formatted (run `snnc fmt`)", file.display());
    }
}

#[test]
fn fmt_keeps_comments_and_normalises_layout() {
    let text = "// header\nneuron A { param beta = 0.9 // decay\n  state v = 0; input i\n\n\n  update { v = beta*v+i } }\n";
    let formatted = snnc::front::fmt::format_source(text).expect("formats");
    assert_eq!(
        formatted,
        "// header\nneuron A {\n    param beta = 0.9 // decay\n    state v = 0\n    input i\n\n    update { v = beta * v + i }\n}\n"
    );
}

#[test]
fn golden_ir_dumps() {
    for name in
        ["yin_yang", "lab_lif_mnist", "snntorch_tutorial5", "eventprop_yin_yang_2phase", "energy_optimised", "sae_dense", "diehl_cook_100"]
    {
        let path = root().join(format!("models/{name}.snn"));
        let checked = check_path(&path).expect("readable");
        let module = checked.outcome.module.expect("lowers");
        insta::with_settings!({ snapshot_path => "snapshots/ir", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, module.to_string());
        });
    }
}

#[test]
fn golden_clif_dumps() {
    for name in ["lab_lif_mnist", "eventprop_yin_yang_2phase", "diehl_cook_100"] {
        let path = root().join(format!("models/{name}.snn"));
        let module = check_path(&path).expect("readable").outcome.module.expect("lowers");
        let module = snnc::ir::validate::validate(module).expect("valid");
        let compiled = snnc::exec::engine::compile_module::<f32>(&module).expect("compiles");
        let text: Vec<String> = compiled.clif.iter().map(|(name, clif)| format!("; {name}\n{clif}")).collect();
        insta::with_settings!({ snapshot_path => "snapshots/clif", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, text.join("\n"));
        });
    }
}

/// The derived backward steps (`snnc emit grad`): the gradient pass's output, reviewed as text.
#[test]
fn golden_derived_gradients() {
    for name in ["yin_yang", "snntorch_tutorial5", "lab_lif_mnist"] {
        let path = root().join(format!("models/{name}.snn"));
        let module = check_path(&path).expect("readable").outcome.module.expect("lowers");
        let Some(surrogate) = module.train.as_ref().and_then(|t| t.method.surrogate()) else { panic!("{name} trains with bptt") };
        let text: Vec<String> = module
            .populations
            .iter()
            .map(|pop| format!("population {}\n{}", pop.name, snnc::ir::grad::derive(pop, surrogate).expect("derives").text(pop)))
            .collect();
        insta::with_settings!({ snapshot_path => "snapshots/grad", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name, text.join("\n"));
        });
    }
}
