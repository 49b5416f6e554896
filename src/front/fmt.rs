//! `snnc fmt`: canonical formatting of `.snn` files.
//!
//! The formatter prints the AST: four-space indentation, one statement per line, one blank
//! line between items, at most one blank line kept between statements, the user's
//! parentheses and number spellings kept. Comments are not in the AST; they are collected
//! from the text and re-emitted before the statement they precede, or at the end of the line
//! they ended. `parse(fmt(x))` equals `parse(x)` up to spans, and `fmt` is idempotent.

use std::fmt::Write;

use crate::front::ast::*;
use crate::front::diag::Diagnostics;
use crate::front::parse::parse;

pub fn format_source(text: &str) -> Result<String, Diagnostics> {
    let (file, diagnostics) = parse(text);
    if diagnostics.has_errors() {
        return Err(diagnostics);
    }
    let mut printer =
        Printer { out: String::new(), source: text, comments: collect_comments(text), next_comment: 0, indent: 0, last_end: 0 };
    printer.file(&file);
    Ok(printer.out)
}

struct Comment {
    start: usize,
    text: String,
}

/// Line and block comments (not `///` doc comments, which are part of the AST).
fn collect_comments(text: &str) -> Vec<Comment> {
    let bytes = text.as_bytes();
    let mut comments = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += 1;
                }
                i += 1;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                let is_doc = bytes.get(i + 2) == Some(&b'/') && bytes.get(i + 3) != Some(&b'/');
                if !is_doc {
                    comments.push(Comment { start: i, text: text[i..end].trim_end().to_string() });
                }
                i = end;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let end = text[i + 2..].find("*/").map_or(text.len(), |n| i + 2 + n + 2);
                comments.push(Comment { start: i, text: text[i..end].to_string() });
                i = end;
            }
            _ => i += 1,
        }
    }
    comments
}

struct Printer<'s> {
    out: String,
    source: &'s str,
    comments: Vec<Comment>,
    next_comment: usize,
    indent: usize,
    /// Source offset where the last printed statement ended.
    last_end: usize,
}

impl Printer<'_> {
    fn pad(&self) -> String {
        "    ".repeat(self.indent)
    }

    fn line(&mut self, text: &str) {
        let pad = self.pad();
        let _ = writeln!(self.out, "{pad}{text}");
    }

    /// Emits the comments that start before `position`.
    fn comments_before(&mut self, position: usize) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.start >= position {
                break;
            }
            let (start, text) = (comment.start, comment.text.clone());
            let same_line = self.last_end > 0 && !self.source[self.last_end.min(start)..start].contains('\n') && self.out.ends_with('\n');
            if same_line {
                self.out.pop();
                let _ = writeln!(self.out, " {text}");
            } else {
                if self.blank_between(self.last_end, start)
                    && !self.out.is_empty()
                    && !self.out.ends_with("{\n")
                    && !self.out.ends_with("\n\n")
                {
                    self.out.push('\n');
                }
                for line in text.lines() {
                    self.line(line.trim());
                }
            }
            self.last_end = start + text.len();
            self.next_comment += 1;
        }
    }

    fn blank_between(&self, from: usize, to: usize) -> bool {
        if from >= to {
            return false;
        }
        let between = &self.source[from..to];
        between.lines().skip(1).any(|l| l.trim().is_empty()) && between.matches('\n').count() >= 2
    }

    /// Starts a statement: its comments, a kept blank line, its docs.
    fn begin(&mut self, span: Span, docs: &[String]) {
        let keep_blank = self.blank_between(self.last_end, span.start);
        self.comments_before(span.start);
        if keep_blank && !self.out.is_empty() && !self.out.ends_with("{\n") && !self.out.ends_with("\n\n") {
            self.out.push('\n');
        }
        for doc in docs {
            if doc.is_empty() { self.line("///") } else { self.line(&format!("/// {doc}")) }
        }
    }

    fn end(&mut self, span: Span) {
        self.last_end = span.end;
        // Comments inside the statement's span move after it.
        self.comments_before_inside(span);
    }

    fn comments_before_inside(&mut self, span: Span) {
        while let Some(comment) = self.comments.get(self.next_comment) {
            if comment.start >= span.end {
                break;
            }
            let text = comment.text.clone();
            if self.out.ends_with('\n') {
                self.out.pop();
            }
            let _ = writeln!(self.out, " {text}");
            self.next_comment += 1;
        }
    }

    fn file(&mut self, file: &File) {
        for (index, item) in file.items.iter().enumerate() {
            self.comments_before(item.span.start);
            let after_comment = self.next_comment > 0 && index == 0 && self.blank_between(self.last_end, item.span.start);
            let both_imports =
                index > 0 && matches!(item.kind, ItemKind::Import(_)) && matches!(file.items[index - 1].kind, ItemKind::Import(_));
            if (index > 0 && !both_imports || after_comment) && !self.out.ends_with("\n\n") {
                self.out.push('\n');
            }
            for doc in &item.docs {
                if doc.is_empty() { self.line("///") } else { self.line(&format!("/// {doc}")) }
            }
            self.item(item);
            self.last_end = item.span.end;
        }
        let rest = self.source.len();
        self.comments_before(rest + 1);
        while self.out.ends_with("\n\n") {
            self.out.pop();
        }
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Import(import) => {
                let target = if import.quoted { format!("\"{}\"", import.target) } else { import.target.clone() };
                self.line(&format!("import {target}"));
            }
            ItemKind::Neuron(neuron) => {
                self.open(&format!("neuron {}", neuron.name));
                self.neuron_body(&neuron.body);
                self.close(item.span);
            }
            ItemKind::Synapse(synapse) => {
                self.open(&format!("synapse {}", synapse.name));
                for stmt in &synapse.body {
                    self.synapse_stmt(stmt);
                }
                self.close(item.span);
            }
            ItemKind::Surrogate(surrogate) => {
                self.open(&format!("surrogate {}({})", surrogate.name, param_heads(&surrogate.params)));
                for let_ in &surrogate.lets {
                    self.begin(let_.span, &[]);
                    self.line(&format!("let {} = {}", let_.name, expr(&let_.value)));
                    self.end(let_.span);
                }
                self.begin(surrogate.grad.span, &[]);
                self.line(&format!("grad = {}", expr(&surrogate.grad)));
                self.end(surrogate.grad.span);
                self.close(item.span);
            }
            ItemKind::Encoder(encoder) => {
                self.open(&format!("encoder {}({})", encoder.name, param_heads(&encoder.params)));
                // Lets and requirements in the order written.
                let mut stmts: Vec<(Span, String)> =
                    encoder.lets.iter().map(|l| (l.span, format!("let {} = {}", l.name, expr(&l.value)))).collect();
                stmts.extend(encoder.requires.iter().map(|r| {
                    let reason = r.reason.as_ref().map_or_else(String::new, |why| format!(" else \"{why}\""));
                    (r.span, format!("require {}{reason}", expr(&r.condition)))
                }));
                stmts.sort_by_key(|(span, _)| span.start);
                for (span, text) in stmts {
                    self.begin(span, &[]);
                    self.line(&text);
                    self.end(span);
                }
                self.begin(encoder.body_span, &[]);
                let body = match &encoder.body {
                    EncoderBody::SpikeWhen(e) => format!("spike when {}", expr(e)),
                    EncoderBody::SpikeAt(e) => format!("spike at {}", expr(e)),
                    EncoderBody::Current(e) => format!("current = {}", expr(e)),
                };
                self.line(&body);
                self.end(encoder.body_span);
                self.close(item.span);
            }
            ItemKind::Network(network) => {
                self.open(&format!("network {}", network.name));
                for stmt in &network.body {
                    self.network_stmt(stmt);
                }
                self.close(item.span);
            }
            ItemKind::Train(train) => {
                let header = match &train.name {
                    Some(name) => format!("train {name}"),
                    None => "train".to_string(),
                };
                self.open(&header);
                for stmt in &train.body {
                    self.train_stmt(stmt);
                }
                self.close(item.span);
            }
        }
    }

    fn open(&mut self, header: &str) {
        self.line(&format!("{header} {{"));
        self.indent += 1;
    }

    fn close(&mut self, span: Span) {
        self.comments_before(span.end.saturating_sub(1));
        self.indent -= 1;
        self.line("}");
        self.last_end = span.end;
    }

    fn block(&mut self, header: &str, block: &Block) {
        // A block of one short statement without comments stays on one line.
        let has_comment = self.comments.get(self.next_comment).is_some_and(|c| c.start < block.span.end);
        if let ([stmt], false) = (block.stmts.as_slice(), has_comment) {
            let line = format!("{header} {{ {} }}", stmt_text(stmt));
            if line.len() + 4 * self.indent <= 100 {
                self.line(&line);
                self.last_end = block.span.end;
                return;
            }
        }
        self.open(header);
        for stmt in &block.stmts {
            let span = stmt.span();
            self.begin(span, &[]);
            let text = stmt_text(stmt);
            self.line(&text);
            self.end(span);
        }
        self.close(block.span);
    }

    fn neuron_body(&mut self, body: &[NeuronStmt]) {
        for stmt in body {
            self.neuron_stmt(stmt);
        }
    }

    fn neuron_stmt(&mut self, stmt: &NeuronStmt) {
        match stmt {
            NeuronStmt::Param(param) => self.param(param),
            NeuronStmt::State(state) => {
                self.begin(state.span, &state.docs);
                let mut text = format!("state {}", state.name);
                if let Some(unit) = &state.unit {
                    let _ = write!(text, ": {}", unit_text(unit));
                }
                if let Some(init) = &state.init {
                    let _ = write!(text, " = {}", expr(init));
                }
                if state.persistent {
                    text.push_str(" persistent");
                }
                if state.frozen_in_eval {
                    text.push_str(" frozen in eval");
                }
                self.line(&text);
                self.end(state.span);
            }
            NeuronStmt::Input(port) => {
                self.begin(port.span, &port.docs);
                let mut text = format!("input {}", port.name);
                if let Some(unit) = &port.unit {
                    let _ = write!(text, ": {}", unit_text(unit));
                }
                self.line(&text);
                self.end(port.span);
            }
            NeuronStmt::Let(let_) => {
                self.begin(let_.span, &[]);
                self.line(&format!("let {} = {}", let_.name, expr(&let_.value)));
                self.end(let_.span);
            }
            NeuronStmt::Ode(ode) => {
                self.begin(ode.span, &[]);
                self.line(&format!("d{}/dt = {}", ode.var, expr(&ode.rhs)));
                self.end(ode.span);
            }
            NeuronStmt::Update(block) => {
                self.begin(block.span, &[]);
                self.block("update", block);
            }
            NeuronStmt::UpdateAfterSpike(block) => {
                self.begin(block.span, &[]);
                self.block("update after spike", block);
            }
            NeuronStmt::SpikeWhen { condition, span } => {
                self.begin(*span, &[]);
                self.line(&format!("spike when {}", expr(condition)));
                self.end(*span);
            }
            NeuronStmt::On(on) => {
                self.begin(on.span, &[]);
                self.block(&format!("on {}", on.event), &on.body);
            }
            NeuronStmt::Refractory { period, span } => {
                self.begin(*span, &[]);
                self.line(&format!("refractory = {}", expr(period)));
                self.end(*span);
            }
            NeuronStmt::Compartment(compartment) => {
                self.begin(compartment.span, &[]);
                self.open(&format!("compartment {}", compartment.name));
                self.neuron_body(&compartment.body);
                self.close(compartment.span);
            }
            NeuronStmt::Observable { name, value, span } => {
                self.begin(*span, &[]);
                self.line(&format!("observable {name} = {}", expr(value)));
                self.end(*span);
            }
        }
    }

    fn param(&mut self, param: &Param) {
        self.begin(param.span, &param.docs);
        let mut text = format!("param {}", param.name);
        let modifiers: Vec<&str> = param
            .modifiers
            .iter()
            .map(|(m, _)| match m {
                Modifier::Trainable => "trainable",
                Modifier::PerNeuron => "per_neuron",
            })
            .collect();
        match (&param.unit, modifiers.is_empty()) {
            (Some(unit), true) => {
                let _ = write!(text, ": {}", unit_text(unit));
            }
            (Some(unit), false) => {
                let _ = write!(text, ": {} {}", unit_text(unit), modifiers.join(" "));
            }
            (None, false) => {
                let _ = write!(text, ": {}", modifiers.join(" "));
            }
            (None, true) => {}
        }
        if let Some(default) = &param.default {
            let _ = write!(text, " = {}", expr(default));
        }
        self.line(&text);
        self.end(param.span);
    }

    fn synapse_stmt(&mut self, stmt: &SynapseStmt) {
        match stmt {
            SynapseStmt::Param(param) => self.param(param),
            SynapseStmt::State(state) => self.neuron_stmt(&NeuronStmt::State(state.clone())),
            SynapseStmt::Trace { name, key, value, span } => {
                self.begin(*span, &[]);
                self.line(&format!("trace {name}: {key} = {}", expr(value)));
                self.end(*span);
            }
            SynapseStmt::Delivers { delivery, span } => {
                self.begin(*span, &[]);
                let what = match delivery {
                    Delivery::Current => "current",
                    Delivery::Conductance => "conductance",
                };
                self.line(&format!("delivers {what}"));
                self.end(*span);
            }
            SynapseStmt::On(on) => {
                self.begin(on.span, &[]);
                self.block(&format!("on {}", on.event), &on.body);
            }
        }
    }

    fn network_stmt(&mut self, stmt: &NetworkStmt) {
        match stmt {
            NetworkStmt::Param(param) => self.param(param),
            NetworkStmt::Input(input) => {
                self.begin(input.span, &input.docs);
                self.line(&format!("input {}{} = {}", input.name, shape(&input.shape), expr(&input.encoder)));
                self.end(input.span);
            }
            NetworkStmt::Population(population) => {
                self.begin(population.span, &population.docs);
                self.line(&format!("population {}{} = {}", population.name, shape(&population.shape), call_or_name(&population.neuron)));
                self.end(population.span);
            }
            NetworkStmt::Connect(connect) => {
                self.begin(connect.span, &connect.docs);
                let mut source = connect.source.to_string();
                if let Some(var) = &connect.source_var {
                    let _ = write!(source, ".{var}");
                }
                if let Some(transform) = &connect.source_transform {
                    source = format!("{transform}({source})");
                }
                let mut text = format!("connect {source} -> {} : {}", path(&connect.target), call_or_name(&connect.kind));
                for flag in &connect.flags {
                    match flag {
                        ConnFlag::Fixed(_) => text.push_str(" fixed"),
                        ConnFlag::Trainable(_) => text.push_str(" trainable"),
                        ConnFlag::Feedback(_) => text.push_str(" feedback"),
                        ConnFlag::Delay(e) => {
                            let _ = write!(text, " delay {}", expr(e));
                        }
                        ConnFlag::Via(call) => {
                            let _ = write!(text, " via {}", call_or_name(call));
                        }
                    }
                }
                self.line(&text);
                self.end(connect.span);
            }
            NetworkStmt::Setting(setting) => self.setting(setting),
        }
    }

    fn setting(&mut self, setting: &Setting) {
        self.begin(setting.span, &[]);
        self.line(&format!("{} = {}", setting.key, expr(&setting.value)));
        self.end(setting.span);
    }

    fn train_stmt(&mut self, stmt: &TrainStmt) {
        match stmt {
            TrainStmt::Setting(setting) => self.setting(setting),
            TrainStmt::Loss(loss) => {
                self.begin(loss.span, &[]);
                match &loss.name {
                    Some(name) => self.line(&format!("loss {name} = {}", expr(&loss.value))),
                    None => self.line(&format!("loss = {}", expr(&loss.value))),
                }
                self.end(loss.span);
            }
            TrainStmt::Phase { name, body, span } => {
                self.begin(*span, &[]);
                self.open(&format!("phase {name}"));
                for stmt in body {
                    self.train_stmt(stmt);
                }
                self.close(*span);
            }
            TrainStmt::Hook { event, body, span } => {
                self.begin(*span, &[]);
                self.block(&format!("every {event}"), body);
            }
            TrainStmt::Retry { condition, max, body, span } => {
                self.begin(*span, &[]);
                let mut header = format!("retry when {}", expr(condition));
                if let Some(max) = max {
                    let _ = write!(header, " max {}", expr(max));
                }
                self.block(&header, body);
            }
            TrainStmt::Record { paths, to, span } => {
                self.begin(*span, &[]);
                let list: Vec<String> = paths.iter().map(|p| path(p)).collect();
                let mut text = format!("record {}", list.join(", "));
                if let Some(to) = to {
                    let _ = write!(text, " to \"{to}\"");
                }
                self.line(&text);
                self.end(*span);
            }
            TrainStmt::Clamp { path: target, value, span } => {
                self.begin(*span, &[]);
                self.line(&format!("clamp {} = {}", path(target), expr(value)));
                self.end(*span);
            }
        }
    }
}

fn stmt_text(stmt: &Stmt) -> String {
    match stmt {
        Stmt::Assign { target, op, value, .. } => format!("{} {} {}", path(target), op.symbol(), expr(value)),
        Stmt::Let(let_) => format!("let {} = {}", let_.name, expr(&let_.value)),
        Stmt::Deliver { value, .. } => format!("deliver {}", expr(value)),
        Stmt::Call { call, .. } => expr(call),
    }
}

fn param_heads(params: &[ParamHead]) -> String {
    params
        .iter()
        .map(|p| {
            let mut text = p.name.name.clone();
            if let Some(unit) = &p.unit {
                let _ = write!(text, ": {}", unit_text(unit));
            }
            if let Some(default) = &p.default {
                let _ = write!(text, " = {}", expr(default));
            }
            text
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn shape(shape: &Shape) -> String {
    format!("[{}]", shape.dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

fn path(segments: &[Ident]) -> String {
    segments.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(".")
}

fn call_or_name(call: &CallOrName) -> String {
    match &call.args {
        Some(args) => format!("{}({})", call.name, args_text(args)),
        None => call.name.name.clone(),
    }
}

fn args_text(args: &[Arg]) -> String {
    args.iter()
        .map(|a| match &a.name {
            Some(name) => format!("{name} = {}", expr(&a.value)),
            None => expr(&a.value),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn unit_text(unit: &UnitExpr) -> String {
    let mut text = String::new();
    for (index, factor) in unit.factors.iter().enumerate() {
        let power = factor.power.abs();
        match (index, factor.power < 0) {
            (0, true) => text.push_str("1/"),
            (0, false) => {}
            (_, true) => text.push('/'),
            (_, false) => text.push('*'),
        }
        text.push_str(&factor.name);
        if power != 1 {
            let _ = write!(text, "^{power}");
        }
    }
    text
}

/// Prints an expression. Source parentheses are kept as `Paren` nodes, so printing operands
/// without adding any reproduces the same tree.
pub fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Quantity { text, unit, .. } => match unit {
            Some(unit) => format!("{text} {}", unit_text(unit)),
            None => text.clone(),
        },
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(s) => format!("\"{s}\""),
        ExprKind::Path(segments) => path(segments),
        ExprKind::Call { func, args } => format!("{func}({})", args_text(args)),
        ExprKind::Unary { op, operand } => match op {
            UnaryOp::Neg => format!("-{}", expr(operand)),
            UnaryOp::Not => format!("not {}", expr(operand)),
        },
        ExprKind::Binary { op, lhs, rhs } => format!("{} {} {}", expr(lhs), op.symbol(), expr(rhs)),
        ExprKind::Index { base, index } => format!("{}[{}]", expr(base), expr(index)),
        ExprKind::List(items) => format!("[{}]", items.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Paren(inner) => format!("({})", expr(inner)),
    }
}
