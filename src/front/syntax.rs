//! Syntax errors in words: a pest error rewritten as a `snn::syntax::*` diagnostic that names
//! what was expected ("a `,` or `)`", not rule names), with the span moved to where the
//! mistake is (the end of the previous token for a missing separator).

use crate::front::ast::Span;
use crate::front::diag::Diagnostic;
use crate::front::parse::Rule;

pub(super) fn syntax_diagnostic(text: &str, error: &pest::error::Error<Rule>, base: usize) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let rule_position = match error.location {
        InputLocation::Pos(pos) => pos,
        InputLocation::Span((start, _)) => start,
    };
    // An invisible control character (a NUL pasted into a name) is named, not the word it cuts:
    // one where the parser stopped (one in a comment earlier in the file is harmless).
    let reached = rule_position.max(error.parse_attempts().map_or(0, |a| a.max_position));
    if let Some((at, c)) = text
        .char_indices()
        .skip_while(|(at, _)| *at + 1 < rule_position)
        .take_while(|(at, _)| *at <= reached + 1)
        .find(|(_, c)| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Diagnostic::error(
            "snn::syntax::control_character",
            format!("an invisible control character U+{:04X} in the text", c as u32),
            Span::new(base + at, base + at + c.len_utf8()),
            "here",
        )
        .with_help("delete it (it may have come with pasted text)");
    }
    // A comment or string that never ends is the mistake: report its opening, not the end of
    // the file or line where the parser gave up.
    if let Some((opener, kind)) = scan(text, usize::MAX).unterminated
        && opener <= rule_position.max(error.parse_attempts().map_or(0, |a| a.max_position))
    {
        let (code, message, help) = match kind {
            Unterminated::Comment => ("snn::syntax::unterminated_comment", "this comment is never closed", "close it with `*/`"),
            Unterminated::String => {
                ("snn::syntax::unterminated_string", "this string is never closed", "close it with `\"` on the same line")
            }
        };
        return Diagnostic::error(
            code,
            message,
            Span::new(base + opener, base + opener + if kind == Unterminated::Comment { 2 } else { 1 }),
            "opened here",
        )
        .with_help(help);
    }
    // Literal tokens are tracked further than rules; report at the furthest point reached.
    let attempts = error.parse_attempts();
    let furthest = attempts.as_ref().map_or(rule_position, |a| a.max_position.max(rule_position));
    // A failure inside a word (`msec` read as `ms` + `ec`) is reported at the word's start; a
    // failure at a symbol (a stray `)`) stays on the symbol.
    let inside_word = text[furthest.min(text.len())..].chars().next().is_some_and(|c| c.is_alphanumeric() || c == '_');
    let word_start = if !inside_word {
        furthest
    } else {
        text[..furthest.min(text.len())]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
            .last()
            .map_or(furthest, |(i, _)| i)
    };
    // `record h h.v`: the second path is read as the start of a new statement; the mistake is
    // the missing `,` between the two.
    let record_gap = record_gap(text, word_start);
    let position = record_gap.unwrap_or(word_start);
    let mut expected: Vec<String> = Vec::new();
    let mut add = |word: String| {
        // A rule named by its tokens (`=`, `+=`, `-=` or `*=`) adds them one by one.
        for word in composite_tokens(&word).unwrap_or_else(|| vec![word]) {
            if !expected.contains(&word) {
                expected.push(word);
            }
        }
    };
    if record_gap.is_some() {
        add("`,`".to_string());
        add("`to`".to_string());
    }
    if let Some(attempts) = &attempts
        && attempts.max_position == position
        && record_gap.is_none()
    {
        for token in attempts.expected_tokens() {
            if let Some(word) = token_words(&token) {
                add(word);
            }
        }
    }
    if position == rule_position
        && record_gap.is_none()
        && let ErrorVariant::ParsingError { positives, .. } = &error.variant
    {
        for rule in positives {
            if let Some(word) = rule_words(*rule) {
                add(word);
            }
        }
    }
    // Assignment operators in their usual order, first; the tokens a word such as "an item
    // (`import`, ...)" lists already are not listed again.
    const ASSIGN: [&str; 4] = ["`=`", "`+=`", "`-=`", "`*=`"];
    if ASSIGN.iter().all(|op| expected.iter().any(|w| w == op)) {
        expected.retain(|w| !ASSIGN.contains(&w.as_str()));
        expected.splice(0..0, ASSIGN.iter().map(|op| op.to_string()));
    }
    let listing: Vec<String> = expected.iter().filter(|w| w.contains('(') && w.matches('`').count() > 2).cloned().collect();
    expected.retain(|w| listing.contains(w) || !listing.iter().any(|l| w.starts_with('`') && l.contains(w.as_str())));
    let expected = summarise(expected);
    let found = found_at(text, position);
    let (span, label) = match found.as_str() {
        // At the end of the last line, where the snippet can show it (a label after the last
        // character of the text is not drawn).
        "end of file" => {
            let end = text.trim_end().len();
            let span = match text[..end].chars().next_back() {
                Some(last) if end == text.len() => Span::new(base + end - last.len_utf8(), base + end),
                _ => Span::new(base + end, base + end),
            };
            (span, "the file ends here".to_string())
        }
        _ => {
            let len = found_len(text, position);
            let invisible = text[position.min(text.len())..].chars().next().and_then(invisible_name).is_some();
            (Span::new(base + position, base + position + len), if invisible { found.clone() } else { format!("unexpected {found}") })
        }
    };
    let expected_text = join_words(&expected);
    // A closing bracket with no opening one before it is the mistake itself.
    let closing = text[position.min(text.len())..].chars().next().filter(|c| matches!(c, ')' | ']' | '}'));
    if let Some(close) = closing {
        let open = match close {
            ')' => '(',
            ']' => '[',
            _ => '{',
        };
        let before = &text[..position];
        if before.matches(open).count() <= before.matches(close).count() {
            return Diagnostic::error(
                "snn::syntax::unmatched_bracket",
                format!("`{close}` closes nothing"),
                span,
                format!("no `{open}` before it is open"),
            )
            .with_help(format!("remove it, or add the `{open}` it should close"));
        }
    }
    let mut diagnostic = if found == "end of file" {
        Diagnostic::error("snn::syntax::unexpected_eof", format!("unexpected end of file, expected {expected_text}"), span, label)
            .with_help(if text.matches('{').count() > text.matches('}').count() {
                "a block may be missing its closing `}`"
            } else {
                "the file ends in the middle of a statement: complete it or remove it"
            })
    } else if let Some(name) = text[position.min(text.len())..].chars().next().and_then(invisible_name) {
        let fix = if name.contains("space") && !name.contains("zero-width") { "replace it with a plain space" } else { "delete it" };
        Diagnostic::error("snn::syntax::unexpected_token", format!("expected {expected_text}, found {found}"), span, label)
            .with_help(format!("{fix} (it may have come with pasted text)"))
    } else if expected.is_empty() {
        Diagnostic::error("snn::syntax::unexpected_token", format!("unexpected {found}"), span, label)
            .with_help("check the statement against the language reference in docs/language.md")
    } else {
        Diagnostic::error("snn::syntax::unexpected_token", format!("expected {expected_text}, found {found}"), span, label)
            .with_help(format!("write {expected_text} here"))
    };
    // `spike when` or `on post` read as an assignment inside a block: that block's `}` is missing.
    if let Some(opener) = unclosed_before_statement(text, position) {
        let line = text[..opener].matches('\n').count() + 1;
        diagnostic = diagnostic
            .with_label(Span::new(base + opener, base + opener + 1), "this block is still open")
            .with_help(format!("the `{{` on line {line} may be missing its `}}`: close the block before this statement"));
    }
    // A missing `=` or operator is reported at the next token; point also at the previous one.
    let previous_end = text[..position].trim_end().len();
    let invisible = text[position.min(text.len())..].chars().next().and_then(invisible_name).is_some();
    if previous_end < position && found != "end of file" && !invisible && text[previous_end..position].contains('\n') {
        diagnostic = diagnostic.with_label(Span::new(base + previous_end, base + previous_end), "the statement before ends here");
    }
    diagnostic
}

/// Calls `f(offset, b'{' or b'}')` for every brace of `text[range]` outside comments and
/// strings, in order: the one brace walk that both the unclosed-block report and the
/// statement-after-an-open-block hint use.
pub(super) fn for_each_brace(text: &str, range: std::ops::Range<usize>, mut f: impl FnMut(usize, u8)) {
    let (bytes, end) = (text.as_bytes(), range.end.min(text.len()));
    let mut i = range.start;
    while i < end {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < end && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < end && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'"' => {
                i += 1;
                while i < end && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            brace @ (b'{' | b'}') => f(i, brace),
            _ => {}
        }
        i += 1;
    }
}

/// When the failure follows a statement keyword alone at the start of its line (`spike`, `on`)
/// and a nested block opened on an earlier line is still open: that block's `{`.
fn unclosed_before_statement(text: &str, position: usize) -> Option<usize> {
    const STATEMENTS: [&str; 11] =
        ["spike", "on", "state", "param", "update", "refractory", "trace", "delivers", "observable", "compartment", "input"];
    let position = position.min(text.len());
    let line_start = text[..position].rfind('\n').map_or(0, |i| i + 1);
    if !STATEMENTS.contains(&text[line_start..position].trim()) {
        return None;
    }
    let mut open: Vec<usize> = Vec::new();
    for_each_brace(text, 0..line_start, |at, brace| {
        if brace == b'{' {
            open.push(at);
        } else {
            open.pop();
        }
    });
    // The item's own `{` is open around every statement: only a block inside it counts.
    if open.len() >= 2 { open.last().copied() } else { None }
}

/// The tokens of a rule's words that only list tokens: "`=`, `+=`, `-=` or `*=`".
fn composite_tokens(word: &str) -> Option<Vec<String>> {
    let parts: Vec<&str> = word.split([',', ' ']).filter(|p| !p.is_empty() && *p != "or").collect();
    let all_tokens = parts.len() > 1 && parts.iter().all(|p| p.len() > 2 && p.starts_with('`') && p.ends_with('`'));
    all_tokens.then(|| parts.iter().map(|p| p.to_string()).collect())
}

/// In `record a b.c`, where `a` is followed by another path with no `,`: the offset of that
/// second path.
fn record_gap(text: &str, position: usize) -> Option<usize> {
    let line_start = text[..position.min(text.len())].rfind('\n').map_or(0, |i| i + 1);
    let line = &text[line_start..];
    let indent = line.len() - line.trim_start().len();
    let rest = line.trim_start().strip_prefix("record")?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let bytes = text.as_bytes();
    let mut at = line_start + indent + "record".len();
    let skip_blank = |mut at: usize| {
        while at < bytes.len() && matches!(bytes[at], b' ' | b'\t') {
            at += 1;
        }
        at
    };
    loop {
        at = skip_blank(at);
        let path_start = at;
        while at < bytes.len() && (bytes[at].is_ascii_alphanumeric() || matches!(bytes[at], b'_' | b'.')) {
            at += 1;
        }
        if at == path_start {
            return None;
        }
        at = skip_blank(at);
        if bytes.get(at) == Some(&b',') {
            at += 1;
            continue;
        }
        break;
    }
    let next_is_path = bytes.get(at).is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_');
    let is_to = text[at..].starts_with("to") && !text[at + 2..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
    (next_is_path && !is_to && at <= position).then_some(at)
}

/// Collapses long token lists: the tokens that can start an expression become "an
/// expression", binary operators "an operator".
pub(super) fn summarise(expected: Vec<String>) -> Vec<String> {
    const EXPRESSION_START: [&str; 12] =
        ["`!`", "`(`", "`-`", "`[`", "`true`", "`false`", "`not`", "`\"`", "a number", "a name", "a string", "an expression"];
    const OPERATORS: [&str; 17] = [
        "`!=`",
        "`&&`",
        "`||`",
        "`*`",
        "`+`",
        "`-`",
        "`/`",
        "`^`",
        "`<`",
        "`<=`",
        "`==`",
        "`>`",
        "`>=`",
        "`and`",
        "`or`",
        "an operator",
        "`[`",
    ];
    const NOISE: [&str; 6] = ["`.`", "`_`", "`;`", "`,`", "`d`", "`/dt`"];
    // Inside an argument list a missing `,` is the likeliest mistake: keep it, first.
    let in_arguments = expected.iter().any(|w| w == "`)`") && expected.iter().any(|w| w == "`,`");
    // Unit names the parser tried after a number are one choice: "a unit".
    let is_unit =
        |w: &str| w.strip_prefix('`').and_then(|w| w.strip_suffix('`')).is_some_and(|name| crate::front::units::named(name).is_some());
    let expected: Vec<String> = expected.into_iter().map(|w| if is_unit(&w) { "a unit".to_string() } else { w }).collect();
    let expected = if in_arguments {
        std::iter::once("`,`".to_string()).chain(expected.into_iter().filter(|w| w != "`,`")).collect()
    } else {
        expected
    };
    let starts = expected.iter().filter(|w| EXPRESSION_START.contains(&w.as_str())).count();
    let operators = expected.iter().filter(|w| OPERATORS.contains(&w.as_str())).count();
    let mut out = Vec::new();
    for word in expected {
        let word = if starts >= 3 && EXPRESSION_START.contains(&word.as_str()) {
            "an expression".to_string()
        } else if operators >= 3 && OPERATORS.contains(&word.as_str()) {
            "an operator".to_string()
        } else {
            word
        };
        if NOISE.contains(&word.as_str()) && !(in_arguments && word == "`,`") && out.len() + 1 > 1 {
            continue;
        }
        if !out.contains(&word) {
            out.push(word);
        }
    }
    out
}

/// Literal tokens from pest's parse attempts, in words; whitespace, comments and character
/// ranges are left out. pest does not export its token type, so this reads its display form:
/// a literal as written, a range as `a..z`, built-in rules as `BUILTIN_RULE`.
pub(super) fn token_words(token: &impl std::fmt::Display) -> Option<String> {
    let token = token.to_string();
    match token.as_str() {
        "//" | "/*" | "///" | "////" | " " | "\t" | "\r" | "\n" | "" | "\"" | "BUILTIN_RULE" => None,
        "0..9" | "1..9" => Some("a number".to_string()),
        "a..z" | "A..Z" => Some("a name".to_string()),
        range if range.chars().count() == 4 && range.chars().nth(1) == Some('.') && range.chars().nth(2) == Some('.') => None,
        literal => Some(format!("`{literal}`")),
    }
}

pub(super) fn rule_words(rule: Rule) -> Option<String> {
    let name = format!("{rule:?}");
    if let Some(word) = name.strip_prefix("kw_") {
        return Some(format!("`{word}`"));
    }
    Some(
        match rule {
            Rule::item | Rule::file => "an item (`import`, `neuron`, `synapse`, `surrogate`, `encoder`, `network` or `train`)",
            Rule::ident | Rule::field | Rule::path | Rule::module_path => "a name",
            Rule::number | Rule::quantity | Rule::int => "a number",
            Rule::string | Rule::string_inner => "a string",
            Rule::expr | Rule::primary | Rule::paren | Rule::call | Rule::list | Rule::boolean => "an expression",
            Rule::unit_expr | Rule::unit_atom | Rule::unit_name | Rule::inline_unit | Rule::unit_one => "a unit",
            Rule::unit_power => "an integer power",
            Rule::add
            | Rule::sub
            | Rule::mul
            | Rule::div
            | Rule::pow
            | Rule::or_op
            | Rule::and_op
            | Rule::ge
            | Rule::le
            | Rule::eq
            | Rule::ne
            | Rule::gt
            | Rule::lt => "an operator",
            Rule::neuron_stmt
            | Rule::param_stmt
            | Rule::state_stmt
            | Rule::input_stmt
            | Rule::ode_stmt
            | Rule::ode_lhs
            | Rule::update_block
            | Rule::update_after
            | Rule::spike_when
            | Rule::on_block
            | Rule::refractory_stmt
            | Rule::compartment
            | Rule::observable_stmt => "a neuron statement",
            Rule::synapse_stmt | Rule::trace_stmt | Rule::delivers_stmt => "a synapse statement",
            Rule::network_stmt | Rule::input_layer | Rule::population | Rule::connect | Rule::setting => "a network statement",
            Rule::train_stmt | Rule::loss_stmt | Rule::phase | Rule::hook | Rule::retry | Rule::record | Rule::clamp => "a train statement",
            Rule::block | Rule::block_stmt | Rule::assign | Rule::deliver_stmt | Rule::call_stmt | Rule::let_stmt => "a statement",
            Rule::assign_op => "`=`, `+=`, `-=` or `*=`",
            Rule::shape => "a shape such as `[784]`",
            Rule::delivery => "`current` or `conductance`",
            Rule::modifier | Rule::param_type => "a unit or `trainable`/`per_neuron`",
            Rule::EOI => "end of file",
            Rule::doc | Rule::doc_text => "a doc comment",
            _ => return None,
        }
        .to_string(),
    )
}

pub(super) fn join_words(words: &[String]) -> String {
    match words {
        [] => "something else".to_string(),
        [one] => one.clone(),
        [init @ .., last] => {
            let shown: Vec<&str> = init.iter().take(7).map(String::as_str).collect();
            format!("{} or {last}", shown.join(", "))
        }
    }
}

pub(super) fn found_at(text: &str, position: usize) -> String {
    let rest = &text[position.min(text.len())..];
    let Some(first) = rest.chars().next() else { return "end of file".to_string() };
    if first.is_alphanumeric() || first == '_' {
        let word: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '.').collect();
        if first.is_ascii_digit() { format!("number `{word}`") } else { format!("`{word}`") }
    } else if first == '\n' {
        "end of line".to_string()
    } else if let Some(name) = invisible_name(first) {
        format!("{name} U+{:04X}", first as u32)
    } else {
        format!("`{first}`")
    }
}

/// A character that cannot be seen, or looks like a space, in words: it is named by code
/// point rather than printed between backticks.
pub(crate) fn invisible_name(c: char) -> Option<&'static str> {
    Some(match c {
        '\u{A0}' | '\u{202F}' => "a no-break space",
        '\u{200B}' => "a zero-width space",
        '\u{200C}' => "a zero-width non-joiner",
        '\u{200D}' => "a zero-width joiner",
        '\u{2060}' => "a word joiner",
        '\u{FEFF}' => "a zero-width no-break space (byte-order mark)",
        '\u{AD}' => "a soft hyphen",
        '\u{2000}'..='\u{200A}' | '\u{3000}' | '\u{1680}' | '\u{205F}' => "a Unicode space",
        '\u{2028}' | '\u{2029}' => "a Unicode line separator",
        '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' => "an invisible direction mark",
        c if c.is_control() && !matches!(c, '\n' | '\r' | '\t') => "a control character",
        _ => return None,
    })
}

pub(super) fn found_len(text: &str, position: usize) -> usize {
    let rest = &text[position.min(text.len())..];
    let Some(first) = rest.chars().next() else { return 0 };
    if first.is_alphanumeric() || first == '_' {
        rest.char_indices().find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '.')).map_or(rest.len(), |(i, _)| i)
    } else {
        first.len_utf8()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unterminated {
    Comment,
    String,
}

/// What one pass over the text, outside comments and strings, finds before any parsing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Scan {
    /// The first opening bracket nested deeper than `max_depth`.
    pub too_deep: Option<usize>,
    /// The opening of the first block comment that never closes, or of the first string that
    /// does not close on its line.
    pub unterminated: Option<(usize, Unterminated)>,
}

/// Scans the text once, without recursion: bracket depth, comments and strings.
pub(super) fn scan(text: &str, max_depth: usize) -> Scan {
    let bytes = text.as_bytes();
    let mut out = Scan::default();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let opener = i;
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                if i + 1 >= bytes.len() {
                    out.unterminated.get_or_insert((opener, Unterminated::Comment));
                }
                i += 1;
            }
            b'"' => {
                let opener = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
                if i >= bytes.len() || bytes[i] == b'\n' {
                    out.unterminated.get_or_insert((opener, Unterminated::String));
                }
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > max_depth && out.too_deep.is_none() {
                    out.too_deep = Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    out
}
