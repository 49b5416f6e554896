//! Fuzz target: any text through parse, check and fmt must not panic.
//! Run outside CI: `cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run check`. Keep every crash as
//! a fixture in tests/fixtures/fuzz/ (tests/fuzz_regressions.rs replays them).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let checked = snnc::cli::driver::check_text("fuzz.snn", text, None);
        for diagnostic in &checked.diagnostics {
            let _ = diagnostic.render(80);
        }
        let _ = snnc::front::fmt::format_source(text);
    }
});
