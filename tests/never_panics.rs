//! The front end never panics: mutated copies of every shipped model go through `check` and
//! `fmt`. (The cargo-fuzz target in fuzz/ explores further, outside CI.)

use proptest::prelude::*;

fn shipped_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for dir in ["models", "stdlib"] {
        let mut paths: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + dir)
            .expect("folder")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "snn"))
            .collect();
        paths.sort();
        texts.extend(paths.iter().map(|p| std::fs::read_to_string(p).expect("readable")));
    }
    texts
}

/// Tokens that make mutations interesting: the language's punctuation, keywords and units.
const TOKENS: [&str; 24] = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "=",
    "+=",
    "->",
    ":",
    ".",
    ",",
    "mV",
    "ms",
    "/",
    "*",
    "^",
    "-",
    "spike when",
    "on",
    "dv/dt",
    "1e999",
    "\"",
    "///",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    Duplicate { at: usize, len: usize },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), 1usize..80).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn boundary(text: &str, at: usize) -> usize {
    let mut at = at % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::Delete { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, (start + len).min(text.len()));
            format!("{}{}", &text[..start], &text[end.max(start)..])
        }
        Mutation::Insert { at, token } => {
            let at = boundary(text, *at);
            format!("{}{}{}", &text[..at], TOKENS[*token], &text[at..])
        }
        Mutation::Duplicate { at, len } => {
            let start = boundary(text, *at);
            let end = boundary(text, (start + len).min(text.len())).max(start);
            format!("{}{}{}", &text[..end], &text[start..end], &text[end..])
        }
        Mutation::Truncate { at } => text[..boundary(text, *at)].to_string(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn check_and_fmt_never_panic(file in any::<prop::sample::Index>(), mutations in prop::collection::vec(mutation(), 1..4)) {
        let texts = shipped_texts();
        let mut text = texts[file.index(texts.len())].clone();
        for m in &mutations {
            text = apply(&text, m);
        }
        let checked = snnc::cli::driver::check_text("mutated.snn", &text, None);
        for diagnostic in &checked.diagnostics {
            // Rendering must not panic either, and spans stay inside the text.
            prop_assert!(diagnostic.primary.span.end <= text.len() + 1);
            let _ = diagnostic.render(80);
        }
        if let Ok(formatted) = snnc::front::fmt::format_source(&text) {
            let again = snnc::front::fmt::format_source(&formatted);
            prop_assert!(again.is_ok(), "formatted output parses");
            prop_assert_eq!(again.unwrap(), formatted, "fmt is idempotent on mutated input");
        }
    }
}

/// A shipped model re-encoded (UTF-16 either way, Latin-1, a byte-order mark) or with random
/// bytes spliced in: checking it gives coded diagnostics or none, never a panic, and every
/// diagnostic renders.
fn encoding() -> impl Strategy<Value = (u8, Vec<u8>, usize)> {
    (0u8..5, prop::collection::vec(any::<u8>(), 0..12), any::<usize>())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_give_coded_diagnostics(file in any::<prop::sample::Index>(), (kind, noise, at) in encoding()) {
        let texts = shipped_texts();
        let text = &texts[file.index(texts.len())];
        let bytes: Vec<u8> = match kind {
            0 => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            1 => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            2 => text.chars().map(|c| if (c as u32) < 256 { c as u8 } else { b'?' }).collect(),
            3 => [&[0xEF, 0xBB, 0xBF][..], text.as_bytes()].concat(),
            _ => {
                let mut bytes = text.as_bytes().to_vec();
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, noise);
                bytes
            }
        };
        let checked = snnc::cli::driver::check_bytes("bytes.snn", &bytes, None);
        for diagnostic in &checked.diagnostics {
            prop_assert!(diagnostic.code.starts_with("snn::"));
            let _ = diagnostic.render(80);
        }
    }
}

/// A reader that stops early (`snnc emit ast model.snn | head`) closes the pipe while snnc is
/// still writing: snnc ends quietly with success instead of panicking.
#[test]
fn a_closed_output_pipe_is_not_a_panic() {
    use std::io::Read;
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/sae_sparse.snn");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_snnc"))
        .args(["emit", "ast", model])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("snnc starts");
    // The syntax tree is about 250 KB, more than a pipe holds: snnc is blocked writing when the
    // pipe closes.
    let mut first = [0u8; 64];
    child.stdout.as_mut().expect("piped").read_exact(&mut first).expect("snnc writes");
    drop(child.stdout.take());
    let output = child.wait_with_output().expect("snnc ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(output.status.success(), "{:?}: {stderr}", output.status);
}

/// Inputs 100,000 levels deep (brackets, operator chains, prefix operators) end with exit 0 or
/// 1 and, for brackets, the coded diagnostic at the opening bracket: never a stack overflow, in
/// `check`, `fmt` and `emit`.
#[test]
fn deep_nesting_is_a_diagnostic_not_a_crash() {
    let depth = 100_000;
    let cases = [
        ("brackets", format!("network N {{\n    steps = {}1{}\n}}\n", "(".repeat(depth), ")".repeat(depth))),
        ("calls", format!("network N {{\n    steps = {}1{}\n}}\n", "abs(".repeat(depth), ")".repeat(depth))),
        ("sum", format!("network N {{\n    steps = 1{}\n}}\n", " + 1".repeat(depth))),
        ("negations", format!("network N {{\n    steps = {}1\n}}\n", "- ".repeat(depth))),
        ("powers", format!("network N {{\n    steps = 1{}\n}}\n", " ^ 1".repeat(depth))),
    ];
    let dir = std::env::temp_dir().join(format!("snnc-deep-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    for (name, text) in cases {
        let path = dir.join(format!("{name}.snn"));
        std::fs::write(&path, &text).expect("written");
        for args in [vec!["check"], vec!["fmt", "--stdout"], vec!["emit", "ir"]] {
            let output = std::process::Command::new(env!("CARGO_BIN_EXE_snnc")).args(&args).arg(&path).output().expect("snnc runs");
            let code = output.status.code();
            assert!(matches!(code, Some(0 | 1)), "{name} {args:?}: exit {code:?}");
            if name == "brackets" && args[0] == "check" {
                assert!(String::from_utf8_lossy(&output.stderr).contains("snn::syntax::too_deep"), "{name}: the nesting limit is reported");
            }
        }
    }
    std::fs::remove_dir_all(dir).ok();
}

/// Numbers at the edges of what a user might type, put in place of a number of a shipped model.
const EXTREMES: [&str; 16] = [
    "0",
    "0.0",
    "-1",
    "1e308",
    "1e309",
    "1e-320",
    "1e-400",
    "4294967296",
    "18446744073709551616",
    "99999999999999999999999",
    "0.5",
    "1e-12",
    "2147483648",
    "1000000000",
    "3.5",
    "-0",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Any number of a shipped model replaced by an extreme: `check` gives coded diagnostics or
    /// a module that passes the IR validator, never a panic.
    #[test]
    fn numeric_extremes_are_diagnostics_or_valid_modules(file in any::<prop::sample::Index>(), which in any::<prop::sample::Index>(), extreme in 0..EXTREMES.len()) {
        let texts = shipped_texts();
        let text = &texts[file.index(texts.len())];
        // Number literals: digits not preceded by a name character.
        let bytes = text.as_bytes();
        let starts: Vec<usize> = (0..bytes.len())
            .filter(|&i| bytes[i].is_ascii_digit() && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b'.')))
            .collect();
        prop_assume!(!starts.is_empty());
        let start = starts[which.index(starts.len())];
        let end = (start..bytes.len()).find(|&i| !(bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_')).unwrap_or(bytes.len());
        // Keep an exponent's sign with its number (`1e-3`).
        let end = if end < bytes.len() && matches!(bytes[end], b'-' | b'+') && bytes[end - 1].eq_ignore_ascii_case(&b'e') {
            (end + 1..bytes.len()).find(|&i| !bytes[i].is_ascii_digit()).unwrap_or(bytes.len())
        } else {
            end
        };
        let mutated = format!("{}{}{}", &text[..start], EXTREMES[extreme], &text[end..]);
        let checked = snnc::cli::driver::check_text("extreme.snn", &mutated, Some(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/models"))));
        for diagnostic in &checked.diagnostics {
            prop_assert!(diagnostic.code.starts_with("snn::"));
            let _ = diagnostic.render(80);
        }
        prop_assert!(!checked.diagnostics.iter().any(|d| d.code.starts_with("snn::internal::")), "an internal error on {}", EXTREMES[extreme]);
    }
}
