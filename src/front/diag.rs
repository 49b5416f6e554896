//! Diagnostics: every problem the compiler finds is a [`Diagnostic`] with a stable code
//! (`snn::<area>::<name>`), a primary span and label, secondary labels and a help line.
//!
//! Stages never stop at the first problem: they push into a [`Diagnostics`] collection and go
//! on. Rendering (miette, fixed width, no colour for snapshots; JSON for editors) happens at the
//! edge, in the driver.

use std::fmt;
use std::sync::Arc;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, SourceCode};
use serde::Serialize;

use crate::front::ast::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Label {
    pub span: Span,
    pub text: String,
}

/// One problem in one source file.
#[derive(Clone, Debug)]
pub struct Diagnostic {
    pub severity: Severity,
    pub code: &'static str,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub help: Option<String>,
    /// The file the spans point into; filled in by the driver.
    pub source: Option<Arc<SourceFile>>,
}

/// A named source text, shared by all diagnostics of one file.
#[derive(Debug)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// Longest name or quoted text shown whole in a message.
const SHOWN: usize = 80;

/// Longest source line shown whole in a snippet; longer lines are cut around the labels.
const LONG_LINE: usize = 120;

/// Bytes kept on each side of a label's start and end in a line that is cut.
const CONTEXT: usize = 30;

/// Shortens every `quoted` part of a message longer than [`SHOWN`] characters (a 100,000-character
/// name need not be printed whole; the span still points at all of it).
fn elide(text: String) -> String {
    if text.len() <= SHOWN {
        return text;
    }
    let mut out = String::with_capacity(text.len().min(4 * SHOWN));
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let quoted = i % 2 == 1;
        let count = part.chars().count();
        if quoted && count > SHOWN {
            out.extend(part.chars().take(SHOWN - 8));
            out.push_str(&format!("... ({count} characters)"));
        } else {
            out.push_str(part);
        }
    }
    out
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            code,
            message: elide(message.into()),
            primary: Label { span, text: elide(label.into()) },
            secondary: Vec::new(),
            help: None,
            source: None,
        }
    }

    pub fn warning(code: &'static str, message: impl Into<String>, span: Span, label: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, message, span, label) }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(elide(help.into()));
        self
    }

    pub fn with_label(mut self, span: Span, text: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label { span, text: text.into() });
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Renders with miette's graphical handler: unicode, no colour, fixed width, so the output
    /// is the same on every terminal and in snapshots.
    pub fn render(&self, width: usize) -> String {
        let handler = GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor()).with_width(width);
        let mut out = String::new();
        let shown = self.with_long_lines_elided();
        let shown = shown.as_ref().unwrap_or(self);
        let visible = shown.with_controls_shown();
        handler.render_report(&mut out, visible.as_ref().unwrap_or(shown)).expect("rendering into a String cannot fail");
        out
    }

    /// For display only: a copy whose source shows control characters (other than newline,
    /// carriage return and tab) as their visible symbols, `␀` for NUL, `␛` for ESC, `␡` for
    /// DEL, so that a terminal never receives them raw; spans are moved to match.
    fn with_controls_shown(&self) -> Option<Diagnostic> {
        let source = self.source.as_ref()?;
        let text = &source.text;
        let hidden = |c: char| c.is_control() && !matches!(c, '\n' | '\r' | '\t');
        if !text.chars().any(hidden) {
            return None;
        }
        let mut shown = String::with_capacity(text.len() + 16);
        // (offset in the text, bytes added before it) at each replaced character.
        let mut moves: Vec<(usize, usize)> = Vec::new();
        for (at, c) in text.char_indices() {
            if hidden(c) {
                let symbol = match c as u32 {
                    code @ 0..=0x1F => char::from_u32(0x2400 + code).unwrap_or('\u{FFFD}'),
                    0x7F => '\u{2421}',
                    _ => '\u{FFFD}',
                };
                shown.push(symbol);
                let added = moves.last().map_or(0, |m| m.1) + symbol.len_utf8() - c.len_utf8();
                moves.push((at + 1, added));
            } else {
                shown.push(c);
            }
        }
        let map = |offset: usize| offset + moves.iter().take_while(|(at, _)| *at <= offset).last().map_or(0, |m| m.1);
        let remap = |label: &Label| Label { span: Span::new(map(label.span.start), map(label.span.end)), text: label.text.clone() };
        let mut copy = self.clone();
        copy.primary = remap(&self.primary);
        copy.secondary = self.secondary.iter().map(remap).collect();
        copy.source = Some(Arc::new(SourceFile { name: source.name.clone(), text: shown }));
        Some(copy)
    }

    /// For display only: when a source line is longer than [`LONG_LINE`] characters, a copy
    /// whose source keeps of that line only the parts around the labels' ends (and its start),
    /// with `…` for each cut, and whose spans point into the shortened text. JSON output keeps
    /// the real spans.
    fn with_long_lines_elided(&self) -> Option<Diagnostic> {
        let source = self.source.as_ref()?;
        let text = &source.text;
        if !text.split('\n').any(|line| line.len() > LONG_LINE) {
            return None;
        }
        let labels = std::iter::once(&self.primary).chain(&self.secondary);
        let ends: Vec<usize> = labels.flat_map(|l| [l.span.start, l.span.end]).collect();
        // Byte ranges of the text to keep, in order.
        let mut keep: Vec<(usize, usize)> = Vec::new();
        let mut line_start = 0;
        for line in text.split_inclusive('\n') {
            let line_end = line_start + line.len();
            if line.len() <= LONG_LINE {
                keep.push((line_start, line_end));
            } else {
                let floor = |at: usize| (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
                let ceil = |at: usize| (at..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
                let mut windows: Vec<(usize, usize)> = vec![(line_start, ceil((line_start + CONTEXT).min(line_end)))];
                for &at in ends.iter().filter(|&&at| at >= line_start && at <= line_end) {
                    windows.push((floor(at.saturating_sub(CONTEXT).max(line_start)), ceil((at + CONTEXT).min(line_end))));
                }
                // The line's end (its newline) is kept so that lines stay lines.
                let newline = if line.ends_with('\n') { line_end - 1 } else { line_end };
                windows.push((newline, line_end));
                windows.sort_unstable();
                for (start, end) in windows {
                    match keep.last_mut() {
                        Some(last) if start <= last.1 => last.1 = last.1.max(end),
                        _ => keep.push((start, end)),
                    }
                }
            }
            line_start = line_end;
        }
        // Build the shortened text; a cut becomes `…`. `map` takes an offset of the real text
        // to the shortened one (an offset inside a cut goes to the `…`).
        const CUT: &str = "…";
        let mut shown = String::new();
        let mut pieces: Vec<(usize, usize, usize)> = Vec::new(); // (start, end, position in shown)
        let mut previous_end = 0;
        for (start, end) in keep {
            if start > previous_end {
                shown.push_str(CUT);
            }
            pieces.push((start, end, shown.len()));
            shown.push_str(&text[start..end]);
            previous_end = end;
        }
        let map = |offset: usize| -> usize {
            match pieces.iter().find(|(start, end, _)| offset >= *start && offset <= *end) {
                Some((start, _, at)) => at + (offset - start),
                None => pieces.iter().find(|(start, ..)| *start > offset).map_or(shown.len(), |(_, _, at)| at - CUT.len()),
            }
        };
        // Where a cut comes before a label on its line, the column the header and the snippet
        // suggest is not the real one: the label says it.
        let remap = |label: &Label| {
            let start = map(label.span.start);
            let line_start = text[..label.span.start.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
            let moved = map(line_start) + (label.span.start - line_start) != start;
            let column = text[line_start..label.span.start.min(text.len())].chars().count() + 1;
            let text = if moved { format!("{} (column {column})", label.text) } else { label.text.clone() };
            Label { span: Span::new(start, map(label.span.end)), text }
        };
        let mut copy = self.clone();
        copy.primary = remap(&self.primary);
        copy.secondary = self.secondary.iter().map(remap).collect();
        copy.source = Some(Arc::new(SourceFile { name: source.name.clone(), text: shown }));
        Some(copy)
    }

    /// 1-based line and column of a byte offset in this diagnostic's source.
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let Some(source) = &self.source else { return (0, 0) };
        let before = &source.text[..offset.min(source.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |tail| tail.chars().count()) + 1;
        (line, column)
    }

    pub fn to_json(&self) -> serde_json::Value {
        let (line, column) = self.line_col(self.primary.span.start);
        let labels: Vec<serde_json::Value> = self
            .secondary
            .iter()
            .map(|label| {
                let (line, column) = self.line_col(label.span.start);
                serde_json::json!({
                    "start": label.span.start, "end": label.span.end,
                    "line": line, "column": column, "label": label.text,
                })
            })
            .collect();
        serde_json::json!({
            "file": self.source.as_ref().map(|source| source.name.clone()),
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "start": self.primary.span.start,
            "end": self.primary.span.end,
            "line": line,
            "column": column,
            "label": self.primary.text,
            "related": labels,
            "help": self.help,
        })
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Diagnostic {}

impl miette::Diagnostic for Diagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|help| Box::new(help) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.source.as_ref().map(|source| &**source as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let primary = LabeledSpan::new_primary_with_span(Some(self.primary.text.clone()), self.primary.span);
        let secondary = self.secondary.iter().map(|label| LabeledSpan::new_with_span(Some(label.text.clone()), label.span));
        Some(Box::new(std::iter::once(primary).chain(secondary)))
    }
}

impl SourceCode for SourceFile {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let contents = self.text.read_span(span, context_lines_before, context_lines_after)?;
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            contents.data(),
            *contents.span(),
            contents.line(),
            contents.column(),
            contents.line_count(),
        )))
    }
}

/// The problems one stage found, in the order found; [`Diagnostics::sorted`] orders them by
/// position for display.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn push(&mut self, diagnostic: Diagnostic) {
        self.items.push(diagnostic);
    }

    pub fn extend(&mut self, other: Diagnostics) {
        self.items.extend(other.items);
    }

    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }

    pub fn error_count(&self) -> usize {
        self.items.iter().filter(|d| d.is_error()).count()
    }

    /// Attaches the source file to every diagnostic that has none yet.
    pub fn attach(&mut self, source: &Arc<SourceFile>) {
        for diagnostic in &mut self.items {
            if diagnostic.source.is_none() {
                diagnostic.source = Some(source.clone());
            }
        }
    }

    pub fn sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| {
            let file = |d: &Diagnostic| d.source.as_ref().map(|s| s.name.clone());
            (file(a), a.primary.span.start, a.severity, a.code).cmp(&(file(b), b.primary.span.start, b.severity, b.code))
        });
        self.items.dedup_by(|a, b| a.code == b.code && a.primary.span == b.primary.span && a.message == b.message);
        self.items
    }
}

/// The closest candidate by edit distance, for "did you mean" help lines.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).max(1) + 1;
    candidates
        .into_iter()
        .map(|candidate| (edit_distance(name, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, candidate)| (*distance, *candidate))
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance over chars, with case differences counted as half a change so that
/// `leaky` finds `Leaky`.
fn edit_distance(a: &str, b: &str) -> usize {
    if a.eq_ignore_ascii_case(b) {
        return if a == b { 0 } else { 1 };
    }
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(!ca.eq_ignore_ascii_case(cb));
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Adds "did you mean" to a help line when a close candidate exists.
pub fn suggestion_help<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>, fallback: String) -> String {
    match did_you_mean(name, candidates) {
        Some(candidate) => format!("did you mean `{candidate}`?"),
        None => fallback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_finds_close_names_only() {
        assert_eq!(did_you_mean("Leky", ["Leaky", "CubaLIF"]), Some("Leaky"));
        assert_eq!(did_you_mean("leaky", ["Leaky", "CubaLIF"]), Some("Leaky"));
        assert_eq!(did_you_mean("zzzzzz", ["Leaky", "CubaLIF"]), None);
    }
}
