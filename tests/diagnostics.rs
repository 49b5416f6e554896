//! Diagnostics: every malformed fixture in tests/fixtures/errors reports the code its header
//! names, with one insta snapshot per fixture holding the source and the rendered message
//! (unicode, no colour, 80 columns). Every code the compiler can emit has a fixture.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use snnc::cli::driver::{check_bytes, check_text, render_all};

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/errors")
}

/// Every fixture: its name, the code its header names, and its bytes (a fixture may be
/// deliberately not UTF-8).
fn fixtures() -> Vec<(String, String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures folder exists") {
        let path = entry.expect("readable entry").path();
        if path.extension().is_none_or(|e| e != "snn") {
            continue;
        }
        let bytes = std::fs::read(&path).expect("readable fixture");
        // A UTF-16 fixture (either byte order, with or without its byte-order mark) keeps its
        // header readable.
        let wide = |bytes: &[u8], little: bool| {
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| if little { u16::from_le_bytes([c[0], c[1]]) } else { u16::from_be_bytes([c[0], c[1]]) })
                .collect();
            String::from_utf16_lossy(&units)
        };
        let text = if let Some(rest) = bytes.strip_prefix(&[0xFF, 0xFE]) {
            wide(rest, true)
        } else if let Some(rest) = bytes.strip_prefix(&[0xFE, 0xFF]) {
            wide(rest, false)
        } else if bytes.starts_with(b"/\0/\0") {
            wide(&bytes, true)
        } else if bytes.starts_with(b"\0/\0/") {
            wide(&bytes, false)
        } else {
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let code = text
            .trim_start_matches('\u{FEFF}')
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// expect: "))
            .unwrap_or_else(|| panic!("{} has no `// expect: CODE` header", path.display()))
            .trim()
            .to_string();
        let name = path.file_stem().expect("file name").to_string_lossy().into_owned();
        out.push((name, code, bytes));
    }
    out.sort();
    out
}

#[test]
fn every_fixture_reports_its_code_and_matches_its_snapshot() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 40, "at least 40 malformed models, found {}", fixtures.len());
    let mut failures = Vec::new();
    for (name, code, bytes) in &fixtures {
        // A relative base keeps paths in messages the same on every machine (tests run in the
        // package root).
        let checked = check_bytes(&format!("errors/{name}.snn"), bytes, Some(Path::new("tests/fixtures/errors")));
        let text = String::from_utf8_lossy(bytes);
        let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
        if !codes.contains(&code.as_str()) {
            failures.push(format!("{name}: expected {code}, got {codes:?}"));
            continue;
        }
        let is_lint = code.starts_with("snn::lint::");
        if !is_lint && !checked.has_errors() {
            failures.push(format!("{name}: {code} must be an error"));
        }
        let rendered = render_all(&checked.diagnostics, 80);
        insta::with_settings!({ snapshot_path => "snapshots/errors", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!(name.as_str(), format!("{text}\n----- diagnostics -----\n{rendered}"));
        });
    }
    assert!(failures.is_empty(), "fixtures that did not report their code:\n{}", failures.join("\n"));
}

/// A fixture named `follow_on_*` has one mistake whose uses would, without poisoning of the
/// failed name, report false errors: it must report its one diagnostic and nothing else.
#[test]
fn a_failed_definition_reports_no_follow_on_errors() {
    let mut checked_any = 0;
    for (name, code, bytes) in fixtures().iter().filter(|(name, ..)| name.starts_with("follow_on_")) {
        let checked = check_bytes(&format!("errors/{name}.snn"), bytes, Some(Path::new("tests/fixtures/errors")));
        let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
        assert_eq!(codes, [code.as_str()], "{name}");
        checked_any += 1;
    }
    assert!(checked_any >= 6, "the follow-on fixtures are there, found {checked_any}");
}

/// The codes the compiler can emit, read from its sources.
fn codes_in_sources() -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).expect("readable src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable source");
            for (index, _) in text.match_indices("\"snn::") {
                let rest = &text[index + 1..];
                let end = rest.find('"').expect("closed string");
                codes.insert(rest[..end].to_string());
            }
        }
    }
    codes
}

#[test]
fn every_diagnostic_code_has_a_fixture() {
    let covered: BTreeSet<String> = fixtures().into_iter().map(|(_, code, _)| code).collect();
    // `snn::internal::*` reports a compiler bug (a lowered module the validator rejects): no
    // input should produce one, so none can have a fixture. `snn::io::*` reports a failed write
    // of a run's output, tested by tests/cli.rs. `snn::data::*` reports a data set's missing,
    // damaged or unreadable files when a run loads them, tested by tests/data.rs. `snn::nir::*`
    // reports a NIR file or a model NIR cannot express (`snnc export`, `snnc import`), tested
    // by tests/nir.rs. `snn::plot::*` reports a run folder `snnc plot` cannot read, tested by
    // tests/plot.rs.
    let missing: Vec<String> = codes_in_sources()
        .difference(&covered)
        .filter(|code| {
            !["snn::internal::", "snn::io::", "snn::data::", "snn::nir::", "snn::plot::"].iter().any(|prefix| code.starts_with(prefix))
        })
        .cloned()
        .collect();
    assert!(missing.is_empty(), "codes without a fixture in tests/fixtures/errors: {missing:?}");
}

#[test]
fn diagnostics_are_sorted_by_position_and_analysis_keeps_going() {
    let text = "neuron A {\n    state v = 0\n    update { v = x + y }\n    spike when v\n}\n";
    let checked = check_text("many.snn", text, None);
    let starts: Vec<usize> = checked.diagnostics.iter().map(|d| d.primary.span.start).collect();
    assert_eq!(checked.diagnostics.len(), 3, "two unknown names and a bad spike condition: {:?}", checked.diagnostics);
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "sorted: {starts:?}");
}

#[test]
fn a_syntax_error_does_not_hide_problems_in_later_items() {
    let text = "neuron A {\n    state v = = 0\n}\n\nneuron B {\n    state v = 0\n    update { v = w }\n}\n";
    let checked = check_text("recover.snn", text, None);
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["snn::syntax::unexpected_token", "snn::names::unknown"]);
}

#[test]
fn syntax_errors_name_what_was_expected_in_words() {
    let checked = check_text("s.snn", "network N {\n    steps 10\n}\n", None);
    let message = &checked.diagnostics[0].message;
    assert!(message.contains("`=`"), "{message}");
    assert!(!message.contains("Rule") && !message.contains("kw_") && !message.contains("EOI"), "{message}");
}

#[test]
fn json_diagnostics_carry_code_position_and_help() {
    let checked = check_text("j.snn", "neuron A {\n    state v = 0\n    update { v = thresold }\n}\n", None);
    let json = checked.diagnostics[0].to_json();
    assert_eq!(json["code"], "snn::names::unknown");
    assert_eq!(json["line"], 3);
    assert_eq!(json["column"], 18);
    assert_eq!(json["severity"], "error");
    assert!(json["help"].is_string());
}

#[test]
fn a_byte_order_mark_is_skipped() {
    let model = "import std::neurons\nimport std::encoders\nnetwork N {\n    steps = 10\n    input x[5] = repeat(sample)\n    population p[5] = Leaky(beta = 0.9)\n    connect x -> p.i : one_to_one(weight = 1)\n}\n";
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(model.as_bytes());
    let checked = check_bytes("bom.snn", &bytes, None);
    assert!(checked.diagnostics.is_empty(), "{}", render_all(&checked.diagnostics, 80));
    assert!(checked.outcome.module.is_some());
}

/// docs/errors.md explains every code with an example (regenerate it with
/// `python3 tests/fixtures/errors_doc.py > docs/errors.md`).
#[test]
fn every_code_is_explained_in_docs_errors_md() {
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/errors.md")).expect("docs/errors.md");
    let missing: Vec<String> = codes_in_sources()
        .into_iter()
        .filter(|code| !code.starts_with("snn::internal::") && !doc.contains(&format!("### `{code}`")))
        .collect();
    assert!(missing.is_empty(), "codes missing from docs/errors.md: {missing:?}");
}

/// A source line of 100,000 characters is cut around the labels in the rendered snippet (the
/// label names the real column); the name in the message is elided; JSON keeps the real span.
#[test]
fn long_lines_and_names_are_elided_in_messages_but_not_in_json() {
    let name = "x".repeat(100_000);
    let text = format!(
        "import std::neurons\nnetwork N {{\n    dt = 1 ms\n    steps = 5\n    population {name}[3] = Leakyy {}\n}}\n",
        "// ".repeat(10)
    );
    let checked = check_text("long.snn", &text, None);
    let codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
    assert_eq!(codes, ["snn::names::unknown_neuron"]);
    let rendered = render_all(&checked.diagnostics, 80);
    assert!(rendered.len() < 2_000, "rendered {} bytes", rendered.len());
    assert!(rendered.contains("Leakyy") && rendered.contains('…'), "{rendered}");
    let column = 4 + "population ".len() + name.len() + "[3] = ".len() + 1;
    assert!(rendered.contains(&format!("(column {column})")), "{rendered}");
    let json = checked.diagnostics[0].to_json();
    let start = text.find("Leakyy").expect("the neuron's name");
    assert_eq!(json["start"], start);
    assert_eq!(json["column"], column);
}
