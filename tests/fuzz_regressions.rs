//! Replays every input the fuzzer ever crashed on (tests/fixtures/fuzz/*), plus inputs that
//! once broke the parser, through check and fmt.

#[test]
fn fuzz_crashes_stay_fixed() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fuzz");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).expect("fixtures folder") {
        let path = entry.expect("entry").path();
        let bytes = std::fs::read(&path).expect("readable");
        let text = String::from_utf8_lossy(&bytes);
        let checked = snnc::cli::driver::check_text("fuzz.snn", &text, None);
        for diagnostic in &checked.diagnostics {
            let _ = diagnostic.render(80);
        }
        let _ = snnc::front::fmt::format_source(&text);
        count += 1;
    }
    assert!(count > 0, "the regression corpus is not empty");
}
