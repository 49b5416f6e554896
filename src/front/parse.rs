//! Parsing: text to [`crate::front::ast`], through the pest grammar in `grammar/snn.pest`.
//!
//! Parsing never panics. A syntax error becomes a `snn::syntax::*` diagnostic that names what
//! was expected in words; after an error the parser re-synchronises at the next top-level item,
//! so one typo does not hide the problems in the rest of the file.

use std::sync::LazyLock;

use pest::Parser;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op, PrattParser};

use crate::front::ast::*;
use crate::front::diag::{Diagnostic, Diagnostics};
use crate::front::syntax::{for_each_brace, scan, syntax_diagnostic};

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/snn.pest"]
pub(crate) struct SnnParser;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(Op::infix(Rule::or_op, Assoc::Left))
        .op(Op::infix(Rule::and_op, Assoc::Left))
        .op(Op::infix(Rule::ge, Assoc::Left)
            | Op::infix(Rule::le, Assoc::Left)
            | Op::infix(Rule::eq, Assoc::Left)
            | Op::infix(Rule::ne, Assoc::Left)
            | Op::infix(Rule::gt, Assoc::Left)
            | Op::infix(Rule::lt, Assoc::Left))
        .op(Op::infix(Rule::add, Assoc::Left) | Op::infix(Rule::sub, Assoc::Left))
        .op(Op::infix(Rule::mul, Assoc::Left) | Op::infix(Rule::div, Assoc::Left))
        .op(Op::prefix(Rule::neg) | Op::prefix(Rule::not))
        .op(Op::infix(Rule::pow, Assoc::Right))
        .op(Op::postfix(Rule::index))
});

/// Parses one file. Returns the items that parsed (all of them when there is no syntax error)
/// and the syntax diagnostics.
pub fn parse(text: &str) -> (File, Diagnostics) {
    pest::set_error_detail(true);
    let mut diagnostics = Diagnostics::default();
    // Parsing, lowering and formatting recurse on nesting: deeper text than this is reported
    // before anything recurses, rather than overflowing the stack.
    if let Some(opening) = scan(text, MAX_NESTING).too_deep {
        diagnostics.push(
            Diagnostic::error(
                "snn::syntax::too_deep",
                format!("brackets nest more than {MAX_NESTING} deep here"),
                Span::new(opening, opening + 1),
                format!("level {}", MAX_NESTING + 1),
            )
            .with_help("name the inner parts with `let` or split the expression"),
        );
        return (File { items: Vec::new(), broken: Vec::new() }, diagnostics);
    }
    match SnnParser::parse(Rule::file, text) {
        Ok(mut pairs) => {
            let file_pair = pairs.next().expect("the file rule always produces one pair");
            check_numbers(&file_pair, &mut diagnostics);
            let items = file_pair.into_inner().filter(significant).filter(|p| p.as_rule() == Rule::item).map(build_item).collect();
            (File { items, broken: Vec::new() }, diagnostics)
        }
        Err(error) => {
            diagnostics.push(syntax_diagnostic(text, &error, 0));
            let (items, broken) = recover_items(text, &mut diagnostics);
            (File { items, broken }, diagnostics)
        }
    }
}

/// How deep `(`, `[` and `{` may nest.
pub const MAX_NESTING: usize = 256;

/// Every number literal must be a finite f64: `1e999` would become infinity and `1e-999` zero
/// without a word.
fn check_numbers(file: &Pair<Rule>, diagnostics: &mut Diagnostics) {
    for pair in file.clone().into_inner().flatten().filter(|p| p.as_rule() == Rule::number) {
        let text = pair.as_str();
        let value: f64 = text.parse().unwrap_or(f64::NAN);
        // A zero whose digits are not all zero: an exponent below the smallest float.
        let mantissa = text.split(['e', 'E']).next().unwrap_or("");
        let underflow = value == 0.0 && mantissa.chars().any(|c| matches!(c, '1'..='9'));
        if !value.is_finite() || underflow {
            let shown =
                if text.chars().count() > 24 { format!("{}...", text.chars().take(24).collect::<String>()) } else { text.to_string() };
            diagnostics.push(
                Diagnostic::error(
                    "snn::syntax::number_out_of_range",
                    format!("`{shown}` is outside the range of numbers snnc computes with"),
                    span_of(&pair),
                    if value.is_finite() { "rounds to zero" } else { "too large" },
                )
                .with_help("numbers are 64-bit floats: between about 1e-308 and 1e308 in magnitude, or 0"),
            );
        }
    }
}

/// After a syntax error, parse each top-level item on its own so that later items are still
/// checked. Items start at a line that begins with an item keyword or a doc comment. Each chunk
/// is parsed with the text before it blanked out, so spans stay file offsets. Items that do not
/// parse are returned by keyword and name.
fn recover_items(text: &str, diagnostics: &mut Diagnostics) -> (Vec<Item>, Vec<Broken>) {
    let starts = item_starts(text);
    let mut items = Vec::new();
    let mut broken = Vec::new();
    for (index, &start) in starts.iter().enumerate() {
        let end = starts.get(index + 1).copied().unwrap_or(text.len());
        let padded = format!("{}{}", " ".repeat(start), &text[start..end]);
        match SnnParser::parse(Rule::recover_item, &padded) {
            Ok(mut pairs) => {
                let pair = pairs.next().expect("the recover_item rule produces one pair");
                let parsed_to = pair.as_span().end();
                let item_pair = pair.into_inner().filter(significant).find(|p| p.as_rule() == Rule::item);
                if let (Some(item_pair), true) = (item_pair, padded[parsed_to..].trim().is_empty()) {
                    check_numbers(&item_pair, diagnostics);
                    items.push(build_item(item_pair));
                } else {
                    broken.extend(broken_item(&text[start..end]));
                }
            }
            Err(error) => {
                broken.extend(broken_item(&text[start..end]));
                let furthest = match error.location {
                    pest::error::InputLocation::Pos(pos) => pos,
                    pest::error::InputLocation::Span((pos, _)) => pos,
                }
                .max(error.parse_attempts().map_or(0, |a| a.max_position));
                // The item ends with a `{` still open: the parser gave up at the item's end (the
                // whole-file parse at the next item's keyword). That `{` is the mistake.
                if significant_len(&padded) <= furthest
                    && scan(&padded, usize::MAX).unterminated.is_none()
                    && let Some(diagnostic) = unclosed_block(text, start, end, index + 1 < starts.len())
                {
                    let next_line_end = text[end..].find('\n').map_or(text.len(), |i| end + i);
                    let item_end = start + significant_len(&text[start..end]);
                    diagnostics.items.retain(|d| !(item_end..=next_line_end).contains(&d.primary.span.start));
                    diagnostics.push(diagnostic);
                    continue;
                }
                let diagnostic = syntax_diagnostic(&padded, &error, 0);
                // The whole-file parse already reported the first error.
                let duplicate = diagnostics.items.iter().any(|d| d.primary.span == diagnostic.primary.span);
                if !duplicate {
                    diagnostics.push(diagnostic);
                }
            }
        }
    }
    (items, broken)
}

/// The `{` an item chunk (`text[start..end]`) leaves open, as `snn::syntax::unclosed_block`;
/// `None` when every `{` is closed. Of several open ones, the block whose `}` is indented
/// unlike its `{` (the `}` of an outer block taken as its own) is named, else the innermost.
fn unclosed_block(text: &str, start: usize, end: usize, item_follows: bool) -> Option<Diagnostic> {
    let indent = |at: usize| {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..].len() - text[line_start..].trim_start_matches([' ', '\t']).len()
    };
    let first_on_line = |at: usize| {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..at].trim().is_empty()
    };
    let mut open: Vec<usize> = Vec::new();
    let mut misclosed: Option<(usize, usize)> = None;
    for_each_brace(text, start..end, |at, brace| {
        if brace == b'{' {
            open.push(at);
        } else if let Some(opener) = open.pop()
            && misclosed.is_none()
            && first_on_line(at)
            && indent(at) != indent(opener)
        {
            misclosed = Some((opener, at));
        }
    });
    let innermost = *open.last()?;
    let opener = misclosed.map_or(innermost, |(opener, _)| opener);
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let head = |at: usize| {
        let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
        text[line_start..at].trim().to_string()
    };
    let name = head(opener);
    let message = if name.is_empty() {
        format!("the `{{` on line {} is never closed", line_of(opener))
    } else {
        format!("the `{{` of `{name}` is never closed")
    };
    let mut diagnostic = Diagnostic::error("snn::syntax::unclosed_block", message, Span::new(opener, opener + 1), "never closed");
    diagnostic = if item_follows {
        let keyword = text[end..].split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or("");
        let keyword_end = end + keyword.len().max(1).min(text.len() - end);
        diagnostic.with_label(Span::new(end, keyword_end), "the next item starts here")
    } else {
        let last = start + significant_len(&text[start..end]);
        diagnostic.with_label(Span::new(last, last), "the file ends here")
    };
    let help = match misclosed {
        Some((_, closer)) => {
            let outer = open.first().map_or(String::new(), |&o| head(o));
            format!(
                "add its `}}`: the `}}` on line {} closes it instead{}",
                line_of(closer),
                if outer.is_empty() { String::new() } else { format!(", and `{outer}` stays open") }
            )
        }
        _ if item_follows => "add the `}` that closes it before the next item".to_string(),
        _ => "add the `}` that closes it at the end of the file".to_string(),
    };
    Some(diagnostic.with_help(help))
}

/// The keyword and name of an item that failed to parse, read from its first words (after its
/// doc comments): `neuron Foo {` gives ("neuron", Some("Foo")).
fn broken_item(chunk: &str) -> Option<Broken> {
    let code = chunk.lines().map(str::trim_start).find(|line| !line.is_empty() && !line.starts_with("//"))?;
    let mut words = code.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| !w.is_empty());
    let keyword = words.next()?.to_string();
    let name = words.next().filter(|w| w.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')).map(str::to_string);
    Some(Broken { keyword, name })
}

fn item_starts(text: &str) -> Vec<usize> {
    const ITEM_WORDS: [&str; 7] = ["import", "neuron", "synapse", "surrogate", "encoder", "network", "train"];
    let mut starts = Vec::new();
    let mut offset = 0;
    let mut in_docs = false;
    for line in text.split_inclusive('\n') {
        let starts_item = ITEM_WORDS
            .iter()
            .any(|word| line.starts_with(word) && !line[word.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_'));
        let is_doc = line.starts_with("///");
        if (starts_item || is_doc) && !in_docs {
            starts.push(offset);
        }
        // Blank lines between a doc comment and its item keep the doc attached.
        if !line.trim().is_empty() {
            in_docs = is_doc;
        }
        offset += line.len();
    }
    starts
}

// ---------------------------------------------------------------- building the AST

/// Keyword pairs carry no information beyond their position; builders skip them.
fn significant(pair: &Pair<Rule>) -> bool {
    !matches!(
        pair.as_rule(),
        Rule::kw_after
            | Rule::kw_require
            | Rule::kw_else
            | Rule::kw_at
            | Rule::kw_clamp
            | Rule::kw_compartment
            | Rule::kw_connect
            | Rule::kw_current
            | Rule::kw_delay
            | Rule::kw_deliver
            | Rule::kw_delivers
            | Rule::kw_encoder
            | Rule::kw_every
            | Rule::kw_grad
            | Rule::kw_import
            | Rule::kw_input
            | Rule::kw_let
            | Rule::kw_loss
            | Rule::kw_max
            | Rule::kw_network
            | Rule::kw_neuron
            | Rule::kw_observable
            | Rule::kw_on
            | Rule::kw_param
            | Rule::kw_phase
            | Rule::kw_population
            | Rule::kw_record
            | Rule::kw_refractory
            | Rule::kw_retry
            | Rule::kw_spike
            | Rule::kw_state
            | Rule::kw_surrogate
            | Rule::kw_synapse
            | Rule::kw_to
            | Rule::kw_trace
            | Rule::kw_train
            | Rule::kw_update
            | Rule::kw_via
            | Rule::kw_when
            | Rule::named_eq
    )
}

/// The pair's span without trailing whitespace and comments, which pest includes when a rule
/// ends in an optional repetition.
fn span_of(pair: &Pair<Rule>) -> Span {
    let span = pair.as_span();
    let text = pair.as_str();
    Span::new(span.start(), span.start() + significant_len(text))
}

fn significant_len(text: &str) -> usize {
    let mut end = text.trim_end().len();
    loop {
        let trimmed = &text[..end];
        let line_start = trimmed.rfind('\n').map_or(0, |i| i + 1);
        let line = &trimmed[line_start..];
        let cut = if trimmed.ends_with("*/") { trimmed.rfind("/*") } else { comment_start(line).map(|i| line_start + i) };
        match cut {
            Some(cut) if cut < end => end = text[..cut].trim_end().len(),
            _ => return end,
        }
    }
}

/// Start of a `//` comment in one line, outside string literals.
fn comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
    }
    None
}

fn ident(pair: Pair<Rule>) -> Ident {
    Ident { name: pair.as_str().to_string(), span: span_of(&pair) }
}

fn docs<'i>(pairs: &mut std::iter::Peekable<impl Iterator<Item = Pair<'i, Rule>>>) -> Vec<String> {
    let mut docs = Vec::new();
    while let Some(pair) = pairs.peek() {
        if pair.as_rule() != Rule::doc {
            break;
        }
        let pair = pairs.next().expect("peeked");
        let text = pair.into_inner().find(significant).map_or("", |p| p.as_str());
        docs.push(text.strip_prefix(' ').unwrap_or(text).trim_end().to_string());
    }
    docs
}

fn build_item(pair: Pair<Rule>) -> Item {
    let span = span_of(&pair);
    let mut inner = pair.into_inner().filter(significant).peekable();
    let docs = docs(&mut inner);
    let body = inner.next().expect("an item has a body");
    let kind = match body.as_rule() {
        Rule::import => ItemKind::Import(build_import(body)),
        Rule::neuron => {
            let mut parts = body.into_inner().filter(significant);
            let name = ident(parts.next().expect("neuron name"));
            ItemKind::Neuron(Neuron { name, body: parts.map(build_neuron_stmt).collect() })
        }
        Rule::synapse => {
            let mut parts = body.into_inner().filter(significant);
            let name = ident(parts.next().expect("synapse name"));
            ItemKind::Synapse(Synapse { name, body: parts.map(build_synapse_stmt).collect() })
        }
        Rule::surrogate => ItemKind::Surrogate(build_surrogate(body)),
        Rule::encoder => ItemKind::Encoder(build_encoder(body)),
        Rule::network => {
            let mut parts = body.into_inner().filter(significant);
            let name = ident(parts.next().expect("network name"));
            ItemKind::Network(Network { name, body: parts.map(build_network_stmt).collect() })
        }
        Rule::train => {
            let mut parts = body.into_inner().filter(significant).peekable();
            let name = match parts.peek().map(Pair::as_rule) {
                Some(Rule::ident) => Some(ident(parts.next().expect("peeked"))),
                _ => None,
            };
            ItemKind::Train(Train { name, body: parts.map(build_train_stmt).collect() })
        }
        rule => unreachable!("grammar: unexpected item {rule:?}"),
    };
    Item { docs, kind, span }
}

fn build_import(pair: Pair<Rule>) -> Import {
    let span = span_of(&pair);
    let target = pair.into_inner().find(significant).expect("import target");
    match target.as_rule() {
        Rule::string => Import { target: string_value(target), quoted: true, span },
        _ => Import { target: target.as_str().to_string(), quoted: false, span },
    }
}

fn string_value(pair: Pair<Rule>) -> String {
    pair.into_inner().find(significant).map_or(String::new(), |p| p.as_str().to_string())
}

fn build_unit(pair: Pair<Rule>) -> UnitExpr {
    let span = span_of(&pair);
    let mut factors = Vec::new();
    let mut sign: i32 = 1;
    for part in pair.into_inner().filter(significant) {
        match part.as_rule() {
            Rule::unit_op => sign = if part.as_str() == "/" { -1 } else { 1 },
            Rule::unit_atom => {
                let atom_span = span_of(&part);
                let mut atom = part.into_inner().filter(significant);
                let name = atom.next().expect("unit name").as_str().to_string();
                let power: i32 = atom.next().map_or(1, |p| p.as_str().parse().unwrap_or(i32::MAX));
                factors.push(UnitFactor { name, power: sign.saturating_mul(power), span: atom_span });
            }
            rule => unreachable!("grammar: unexpected unit part {rule:?}"),
        }
    }
    UnitExpr { factors, span }
}

fn build_param_heads(pair: Pair<Rule>) -> Vec<ParamHead> {
    pair.into_inner()
        .filter(significant)
        .map(|head| {
            let mut parts = head.into_inner().filter(significant);
            let name = ident(parts.next().expect("parameter name"));
            let mut unit = None;
            let mut default = None;
            for part in parts {
                match part.as_rule() {
                    Rule::unit_expr => unit = Some(build_unit(part)),
                    Rule::expr => default = Some(build_expr(part)),
                    rule => unreachable!("grammar: unexpected parameter part {rule:?}"),
                }
            }
            ParamHead { name, unit, default }
        })
        .collect()
}

fn build_param(pair: Pair<Rule>) -> Param {
    let span = span_of(&pair);
    let mut parts = pair.into_inner().filter(significant).peekable();
    let docs = docs(&mut parts);
    let name = ident(parts.next().expect("param name"));
    let mut param = Param { docs, name, unit: None, modifiers: Vec::new(), default: None, span };
    for part in parts {
        match part.as_rule() {
            Rule::param_type => {
                for piece in part.into_inner().filter(significant) {
                    match piece.as_rule() {
                        Rule::unit_expr => param.unit = Some(build_unit(piece)),
                        Rule::modifier => {
                            let modifier = if piece.as_str() == "trainable" { Modifier::Trainable } else { Modifier::PerNeuron };
                            param.modifiers.push((modifier, span_of(&piece)));
                        }
                        rule => unreachable!("grammar: unexpected param type part {rule:?}"),
                    }
                }
            }
            Rule::expr => param.default = Some(build_expr(part)),
            rule => unreachable!("grammar: unexpected param part {rule:?}"),
        }
    }
    param
}

fn build_state(pair: Pair<Rule>) -> State {
    let span = span_of(&pair);
    let mut parts = pair.into_inner().filter(significant).peekable();
    let docs = docs(&mut parts);
    let name = ident(parts.next().expect("state name"));
    let mut state = State { docs, name, unit: None, init: None, persistent: false, frozen_in_eval: false, span };
    for part in parts {
        match part.as_rule() {
            Rule::unit_expr => state.unit = Some(build_unit(part)),
            Rule::expr => state.init = Some(build_expr(part)),
            Rule::state_flag => match part.into_inner().next().map(|flag| flag.as_rule()) {
                Some(Rule::persistent) => state.persistent = true,
                _ => state.frozen_in_eval = true,
            },
            rule => unreachable!("grammar: unexpected state part {rule:?}"),
        }
    }
    state
}

fn build_port(pair: Pair<Rule>) -> Port {
    let span = span_of(&pair);
    let mut parts = pair.into_inner().filter(significant).peekable();
    let docs = docs(&mut parts);
    let name = ident(parts.next().expect("input name"));
    let unit = parts.next().map(build_unit);
    Port { docs, name, unit, span }
}

fn build_let(pair: Pair<Rule>) -> Let {
    let span = span_of(&pair);
    let mut parts = pair.into_inner().filter(significant);
    let name = ident(parts.next().expect("let name"));
    let value = build_expr(parts.next().expect("let value"));
    Let { name, value, span }
}

fn build_block(pair: Pair<Rule>) -> Block {
    let span = span_of(&pair);
    let stmts = pair
        .into_inner()
        .filter(significant)
        .map(|stmt| {
            let stmt_span = span_of(&stmt);
            match stmt.as_rule() {
                Rule::assign => {
                    let mut parts = stmt.into_inner().filter(significant);
                    let target = parts.next().expect("assign target").into_inner().filter(significant).map(ident).collect();
                    let op = match parts.next().expect("assign op").as_str() {
                        "+=" => AssignOp::Add,
                        "-=" => AssignOp::Sub,
                        "*=" => AssignOp::Mul,
                        _ => AssignOp::Set,
                    };
                    let value = build_expr(parts.next().expect("assign value"));
                    Stmt::Assign { target, op, value, span: stmt_span }
                }
                Rule::let_stmt => Stmt::Let(build_let(stmt)),
                Rule::deliver_stmt => {
                    Stmt::Deliver { value: build_expr(stmt.into_inner().find(significant).expect("deliver value")), span: stmt_span }
                }
                Rule::call_stmt => {
                    Stmt::Call { call: build_expr_primary(stmt.into_inner().find(significant).expect("call")), span: stmt_span }
                }
                rule => unreachable!("grammar: unexpected block statement {rule:?}"),
            }
        })
        .collect();
    Block { stmts, span }
}

fn build_on(pair: Pair<Rule>) -> OnBlock {
    let span = span_of(&pair);
    let mut parts = pair.into_inner().filter(significant);
    let event = ident(parts.next().expect("event name"));
    let body = build_block(parts.next().expect("event block"));
    OnBlock { event, body, span }
}

fn build_neuron_stmt(pair: Pair<Rule>) -> NeuronStmt {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::param_stmt => NeuronStmt::Param(build_param(pair)),
        Rule::state_stmt => NeuronStmt::State(build_state(pair)),
        Rule::input_stmt => NeuronStmt::Input(build_port(pair)),
        Rule::let_stmt => NeuronStmt::Let(build_let(pair)),
        Rule::ode_stmt => {
            let mut parts = pair.into_inner().filter(significant);
            let var = ident(parts.next().expect("ode lhs").into_inner().find(significant).expect("ode variable"));
            let rhs = build_expr(parts.next().expect("ode rhs"));
            NeuronStmt::Ode(Ode { var, rhs, span })
        }
        Rule::update_block => NeuronStmt::Update(build_block(pair.into_inner().find(significant).expect("update block"))),
        Rule::update_after => NeuronStmt::UpdateAfterSpike(build_block(pair.into_inner().find(significant).expect("update block"))),
        Rule::spike_when => NeuronStmt::SpikeWhen { condition: build_expr(pair.into_inner().find(significant).expect("condition")), span },
        Rule::on_block => NeuronStmt::On(build_on(pair)),
        Rule::refractory_stmt => NeuronStmt::Refractory { period: build_expr(pair.into_inner().find(significant).expect("period")), span },
        Rule::compartment => {
            let mut parts = pair.into_inner().filter(significant);
            let name = ident(parts.next().expect("compartment name"));
            NeuronStmt::Compartment(Compartment { name, body: parts.map(build_neuron_stmt).collect(), span })
        }
        Rule::observable_stmt => {
            let mut parts = pair.into_inner().filter(significant);
            let name = ident(parts.next().expect("observable name"));
            NeuronStmt::Observable { name, value: build_expr(parts.next().expect("observable value")), span }
        }
        rule => unreachable!("grammar: unexpected neuron statement {rule:?}"),
    }
}

fn build_synapse_stmt(pair: Pair<Rule>) -> SynapseStmt {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::param_stmt => SynapseStmt::Param(build_param(pair)),
        Rule::state_stmt => SynapseStmt::State(build_state(pair)),
        Rule::trace_stmt => {
            let mut parts = pair.into_inner().filter(significant);
            let name = ident(parts.next().expect("trace name"));
            let key = ident(parts.next().expect("trace key"));
            let value = build_expr(parts.next().expect("trace value"));
            SynapseStmt::Trace { name, key, value, span }
        }
        Rule::delivers_stmt => {
            let delivery = match pair.into_inner().find(significant).expect("delivery").as_str() {
                "conductance" => Delivery::Conductance,
                _ => Delivery::Current,
            };
            SynapseStmt::Delivers { delivery, span }
        }
        Rule::on_block => SynapseStmt::On(build_on(pair)),
        rule => unreachable!("grammar: unexpected synapse statement {rule:?}"),
    }
}

fn build_surrogate(pair: Pair<Rule>) -> Surrogate {
    let mut parts = pair.into_inner().filter(significant);
    let name = ident(parts.next().expect("surrogate name"));
    let mut surrogate = Surrogate { name, params: Vec::new(), lets: Vec::new(), grad: placeholder_expr() };
    for part in parts {
        match part.as_rule() {
            Rule::params_decl => surrogate.params = build_param_heads(part),
            Rule::let_stmt => surrogate.lets.push(build_let(part)),
            Rule::grad_stmt => surrogate.grad = build_expr(part.into_inner().find(significant).expect("grad value")),
            rule => unreachable!("grammar: unexpected surrogate part {rule:?}"),
        }
    }
    surrogate
}

fn build_encoder(pair: Pair<Rule>) -> Encoder {
    let mut parts = pair.into_inner().filter(significant);
    let name = ident(parts.next().expect("encoder name"));
    let params = build_param_heads(parts.next().expect("encoder parameters"));
    let mut lets = Vec::new();
    let mut requires = Vec::new();
    let mut body = EncoderBody::Current(placeholder_expr());
    let mut body_span = Span::default();
    for part in parts {
        let span = span_of(&part);
        match part.as_rule() {
            Rule::let_stmt => lets.push(build_let(part)),
            Rule::require_stmt => {
                let mut inner = part.into_inner().filter(significant);
                let condition = build_expr(inner.next().expect("requirement"));
                let reason = inner.next().map(string_value);
                requires.push(Require { condition, reason, span });
            }
            Rule::spike_when => {
                body = EncoderBody::SpikeWhen(build_expr(part.into_inner().find(significant).expect("condition")));
                body_span = span;
            }
            Rule::spike_at => {
                body = EncoderBody::SpikeAt(build_expr(part.into_inner().find(significant).expect("time")));
                body_span = span;
            }
            Rule::current_stmt => {
                body = EncoderBody::Current(build_expr(part.into_inner().find(significant).expect("current")));
                body_span = span;
            }
            rule => unreachable!("grammar: unexpected encoder part {rule:?}"),
        }
    }
    Encoder { name, params, lets, requires, body, body_span }
}

fn placeholder_expr() -> Expr {
    Expr { kind: ExprKind::Quantity { value: 0.0, text: "0".into(), unit: None }, span: Span::default() }
}

fn build_shape(pair: Pair<Rule>) -> Shape {
    let span = span_of(&pair);
    let dims = pair.into_inner().filter(significant).map(|p| p.as_str().parse().unwrap_or(usize::MAX)).collect();
    Shape { dims, span }
}

fn build_call_or_name(pair: Pair<Rule>) -> CallOrName {
    let span = span_of(&pair);
    let inner = pair.into_inner().find(significant).expect("call or name");
    match inner.as_rule() {
        Rule::ident => CallOrName { name: ident(inner), args: None, span },
        Rule::call => {
            let mut parts = inner.into_inner().filter(significant);
            let name = ident(parts.next().expect("callee"));
            CallOrName { name, args: Some(parts.map(build_arg).collect()), span }
        }
        rule => unreachable!("grammar: unexpected call_or_name {rule:?}"),
    }
}

fn build_setting(pair: Pair<Rule>) -> Setting {
    let span = span_of(&pair);
    let mut parts = pair.into_inner().filter(significant);
    let key = ident(parts.next().expect("setting key"));
    let value = build_expr(parts.next().expect("setting value"));
    Setting { key, value, span }
}

fn build_network_stmt(pair: Pair<Rule>) -> NetworkStmt {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::param_stmt => NetworkStmt::Param(build_param(pair)),
        Rule::input_layer => {
            let mut parts = pair.into_inner().filter(significant).peekable();
            let docs = docs(&mut parts);
            let name = ident(parts.next().expect("input name"));
            let shape = build_shape(parts.next().expect("input shape"));
            let encoder = build_expr(parts.next().expect("encoder"));
            NetworkStmt::Input(InputLayer { docs, name, shape, encoder, span })
        }
        Rule::population => {
            let mut parts = pair.into_inner().filter(significant).peekable();
            let docs = docs(&mut parts);
            let name = ident(parts.next().expect("population name"));
            let shape = build_shape(parts.next().expect("population shape"));
            let neuron = build_call_or_name(parts.next().expect("population neuron"));
            NetworkStmt::Population(Population { docs, name, shape, neuron, span })
        }
        Rule::connect => {
            let mut parts = pair.into_inner().filter(significant).peekable();
            let docs = docs(&mut parts);
            let mut source_parts: Vec<Pair<Rule>> = parts.next().expect("connection source").into_inner().filter(significant).collect();
            let path = source_parts.pop().expect("source path");
            let source_transform = source_parts.pop().map(ident);
            let mut path = path.into_inner().filter(significant).map(ident);
            let source = path.next().expect("source name");
            // A compartment's variable is itself dotted: `l3.apical.a` names `apical.a`.
            let source_var = path.reduce(|a, b| Ident { name: format!("{}.{}", a.name, b.name), span: a.span.join(b.span) });
            let target = parts.next().expect("connection target").into_inner().filter(significant).map(ident).collect();
            let kind = build_call_or_name(parts.next().expect("connection kind"));
            let flags = parts
                .map(|flag| {
                    let flag_span = span_of(&flag);
                    match flag.as_rule() {
                        Rule::flag_fixed => ConnFlag::Fixed(flag_span),
                        Rule::flag_trainable => ConnFlag::Trainable(flag_span),
                        Rule::flag_feedback => ConnFlag::Feedback(flag_span),
                        Rule::flag_delay => ConnFlag::Delay(build_expr(flag.into_inner().find(significant).expect("delay"))),
                        Rule::flag_via => ConnFlag::Via(build_call_or_name(flag.into_inner().find(significant).expect("synapse"))),
                        rule => unreachable!("grammar: unexpected connection flag {rule:?}"),
                    }
                })
                .collect();
            NetworkStmt::Connect(Connect { docs, source, source_var, source_transform, target, kind, flags, span })
        }
        Rule::setting => NetworkStmt::Setting(build_setting(pair)),
        rule => unreachable!("grammar: unexpected network statement {rule:?}"),
    }
}

fn build_train_stmt(pair: Pair<Rule>) -> TrainStmt {
    let span = span_of(&pair);
    match pair.as_rule() {
        Rule::setting => TrainStmt::Setting(build_setting(pair)),
        Rule::loss_stmt => {
            let mut parts = pair.into_inner().filter(significant).peekable();
            let name = match parts.peek().map(Pair::as_rule) {
                Some(Rule::ident) => Some(ident(parts.next().expect("peeked"))),
                _ => None,
            };
            TrainStmt::Loss(LossStmt { name, value: build_expr(parts.next().expect("loss value")), span })
        }
        Rule::phase => {
            let mut parts = pair.into_inner().filter(significant);
            let name = ident(parts.next().expect("phase name"));
            TrainStmt::Phase { name, body: parts.map(build_train_stmt).collect(), span }
        }
        Rule::hook => {
            let mut parts = pair.into_inner().filter(significant);
            let event = ident(parts.next().expect("hook event"));
            TrainStmt::Hook { event, body: build_block(parts.next().expect("hook block")), span }
        }
        Rule::retry => {
            let mut parts: Vec<Pair<Rule>> = pair.into_inner().filter(significant).collect();
            let body = build_block(parts.pop().expect("retry block"));
            let mut parts = parts.into_iter();
            let condition = build_expr(parts.next().expect("retry condition"));
            let max = parts.next().map(build_expr);
            TrainStmt::Retry { condition, max, body, span }
        }
        Rule::record => {
            let mut paths = Vec::new();
            let mut to = None;
            for part in pair.into_inner().filter(significant) {
                match part.as_rule() {
                    Rule::path => paths.push(part.into_inner().filter(significant).map(ident).collect()),
                    Rule::string => to = Some(string_value(part)),
                    rule => unreachable!("grammar: unexpected record part {rule:?}"),
                }
            }
            TrainStmt::Record { paths, to, span }
        }
        Rule::clamp => {
            let mut parts = pair.into_inner().filter(significant);
            let path = parts.next().expect("clamp target").into_inner().filter(significant).map(ident).collect();
            TrainStmt::Clamp { path, value: build_expr(parts.next().expect("clamp value")), span }
        }
        rule => unreachable!("grammar: unexpected train statement {rule:?}"),
    }
}

fn build_arg(pair: Pair<Rule>) -> Arg {
    let mut parts: Vec<Pair<Rule>> = pair.into_inner().filter(significant).collect();
    let value = build_expr(parts.pop().expect("argument value"));
    let name = parts.pop().map(ident);
    Arg { name, value }
}

fn build_expr(pair: Pair<Rule>) -> Expr {
    PRATT
        .map_primary(build_expr_primary)
        .map_prefix(|op, operand| {
            let span = span_of(&op).join(operand.span);
            let op = if op.as_rule() == Rule::neg { UnaryOp::Neg } else { UnaryOp::Not };
            Expr { kind: ExprKind::Unary { op, operand: Box::new(operand) }, span }
        })
        .map_postfix(|base, op| {
            let span = base.span.join(span_of(&op));
            let index = build_expr(op.into_inner().find(significant).expect("index expression"));
            Expr { kind: ExprKind::Index { base: Box::new(base), index: Box::new(index) }, span }
        })
        .map_infix(|lhs, op, rhs| {
            let op = match op.as_rule() {
                Rule::or_op => BinaryOp::Or,
                Rule::and_op => BinaryOp::And,
                Rule::ge => BinaryOp::Ge,
                Rule::le => BinaryOp::Le,
                Rule::eq => BinaryOp::Eq,
                Rule::ne => BinaryOp::Ne,
                Rule::gt => BinaryOp::Gt,
                Rule::lt => BinaryOp::Lt,
                Rule::add => BinaryOp::Add,
                Rule::sub => BinaryOp::Sub,
                Rule::mul => BinaryOp::Mul,
                Rule::div => BinaryOp::Div,
                Rule::pow => BinaryOp::Pow,
                rule => unreachable!("grammar: unexpected infix {rule:?}"),
            };
            let span = lhs.span.join(rhs.span);
            Expr { kind: ExprKind::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }, span }
        })
        .parse(pair.into_inner())
}

fn build_expr_primary(pair: Pair<Rule>) -> Expr {
    let span = span_of(&pair);
    let kind = match pair.as_rule() {
        Rule::quantity => {
            let mut parts = pair.into_inner().filter(significant);
            let number = parts.next().expect("quantity number");
            let text = number.as_str().to_string();
            let value = text.parse().unwrap_or(f64::NAN);
            ExprKind::Quantity { value, text, unit: parts.next().map(build_unit) }
        }
        Rule::boolean => ExprKind::Bool(pair.as_str() == "true"),
        Rule::string => ExprKind::Str(string_value(pair)),
        Rule::path => ExprKind::Path(pair.into_inner().filter(significant).map(ident).collect()),
        Rule::call => {
            let mut parts = pair.into_inner().filter(significant);
            let func = ident(parts.next().expect("callee"));
            ExprKind::Call { func, args: parts.map(build_arg).collect() }
        }
        Rule::list => ExprKind::List(pair.into_inner().filter(significant).map(build_expr).collect()),
        Rule::paren => ExprKind::Paren(Box::new(build_expr(pair.into_inner().find(significant).expect("parenthesised")))),
        Rule::expr => return build_expr(pair),
        rule => unreachable!("grammar: unexpected primary {rule:?}"),
    };
    Expr { kind, span }
}
