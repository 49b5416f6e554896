//! The driver: reads files, runs the front end, renders diagnostics. Only this module and
//! `main.rs` touch the file system for the front end.

use std::path::Path;

use crate::diag::Diagnostic;
use crate::lower::{Outcome, compile};

/// The result of checking one file on disk.
pub struct Checked {
    pub outcome: Outcome,
    pub diagnostics: Vec<Diagnostic>,
}

impl Checked {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(Diagnostic::is_error)
    }
}

pub fn check_path(path: &Path) -> Result<Checked, String> {
    let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    Ok(check_text(&path.display().to_string(), &text, path.parent()))
}

pub fn check_text(name: &str, text: &str, base_dir: Option<&Path>) -> Checked {
    let mut outcome = compile(name, text, base_dir);
    let diagnostics = std::mem::take(&mut outcome.diagnostics).sorted();
    Checked { outcome, diagnostics }
}

/// Renders diagnostics for a terminal (or a snapshot: no colour, fixed width).
pub fn render_all(diagnostics: &[Diagnostic], width: usize) -> String {
    diagnostics.iter().map(|d| d.render(width)).collect::<Vec<_>>().join("\n")
}
