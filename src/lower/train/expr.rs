//! Training expressions: loss terms, predictions and hook conditions over readouts, with their
//! units, widths and timing checked.

use crate::front::ast::{self, BinaryOp, ExprKind, Span};
use crate::front::diag::{Diagnostic, suggestion_help};
use crate::front::units::Unit;
use crate::ir::PopId;
use crate::ir::train::*;

use super::{TrainLowerer, Typed, const_number, named_args};

const TRAIN_FUNCTIONS: [&str; 27] = [
    "assigned_class",
    "count",
    "rate",
    "first_spike",
    "spikes",
    "spike_penalty",
    "weight_l2",
    "mse",
    "cross_entropy",
    "nll",
    "log_softmax",
    "softmax",
    "one_hot",
    "pick",
    "sum",
    "mean",
    "abs",
    "exp",
    "log",
    "argmax",
    "argmin",
    "sum_t",
    "mean_t",
    "max_t",
    "last_t",
    "cumulative",
    "square",
];

impl TrainLowerer<'_, '_, '_> {
    pub(super) fn population(&mut self, ident: &ast::Ident) -> Option<PopId> {
        match self.module.populations.iter().position(|p| p.name == ident.name) {
            Some(index) => Some(PopId(index as u32)),
            None => {
                let help = suggestion_help(
                    &ident.name,
                    self.module.populations.iter().map(|p| p.name.as_str()),
                    "name a population of the network".to_string(),
                );
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown_population",
                        format!("unknown population `{}`", ident.name),
                        ident.span,
                        "not a population",
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    pub(super) fn lower_losses(&mut self, losses: &[&ast::LossStmt]) -> Vec<LossTerm> {
        let mut terms = Vec::new();
        for loss in losses {
            let name = loss.name.as_ref().map_or_else(|| "loss".to_string(), |n| n.name.clone());
            if let Some(value) = self.lower_scalar(&loss.value, "a loss term") {
                terms.push(LossTerm { name, value });
            }
        }
        terms
    }

    /// Lowers an expression that must be one dimensionless number per sample.
    pub(super) fn lower_scalar(&mut self, expr: &ast::Expr, what: &str) -> Option<TExprId> {
        let typed = self.lower(expr)?;
        let ty = self.exprs.ty(typed.id);
        if ty.per_step || ty.width != 1 {
            let shape = if ty.per_step { format!("{} values per step", ty.width) } else { format!("{} values per sample", ty.width) };
            self.sink.push(
                Diagnostic::error(
                    "snn::loss::not_scalar",
                    format!("{what} must be one number per sample, found {shape}"),
                    expr.span,
                    shape,
                )
                .with_help(
                    "reduce it with `sum(...)` or `mean(...)` over neurons and `sum_t(...)`, `mean_t(...)` or `max_t(...)` over time",
                ),
            );
            return None;
        }
        if let Some(unit) = &typed.unit
            && !unit.is_none()
        {
            self.sink.push(
                Diagnostic::error(
                    "snn::units::loss",
                    format!("{what} must be dimensionless, found {unit}"),
                    expr.span,
                    format!("this has unit {unit}"),
                )
                .with_help("divide by a reference quantity, e.g. `first_spike(out) / 0.5 ms`"),
            );
        }
        Some(typed.id)
    }

    pub(super) fn lower_predict(&mut self, expr: &ast::Expr) -> Option<TExprId> {
        let typed = self.lower(expr)?;
        let ty = self.exprs.ty(typed.id);
        if ty.per_step || ty.width != 1 {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_predict",
                    "`predict` must give one class per sample",
                    expr.span,
                    "not one value per sample",
                )
                .with_help("use `argmax(count(out))` or `argmin(first_spike(out))`"),
            );
            return None;
        }
        Some(typed.id)
    }

    /// `reconstruction = ...`: one value per feature of a sample, once per sample.
    pub(super) fn lower_reconstruction(&mut self, expr: &ast::Expr) -> Option<TExprId> {
        let typed = self.lower(expr)?;
        let ty = self.exprs.ty(typed.id);
        if ty.per_step || ty.width != self.features {
            let found = if ty.per_step { "a value per step".to_string() } else { format!("{} values per sample", ty.width) };
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_reconstruction",
                    format!("`reconstruction` must give one value per feature of a sample ({}), found {found}", self.features),
                    expr.span,
                    found.clone(),
                )
                .with_help("read a population the size of the input once per sample, e.g. `max_t(out.cumulative) / 0.2`"),
            );
            return None;
        }
        Some(typed.id)
    }

    pub(super) fn push(&mut self, node: TNode, width: usize, per_step: bool, unit: Option<Unit>) -> Option<Typed> {
        let id = self.exprs.push(node, TType { width, per_step });
        Some(Typed { id, unit })
    }

    pub(super) fn lower(&mut self, expr: &ast::Expr) -> Option<Typed> {
        match &expr.kind {
            ExprKind::Quantity { .. } => {
                let (value, unit) = const_number(expr)?;
                self.push(TNode::Const(value), 1, false, unit)
            }
            ExprKind::Bool(b) => self.push(TNode::Const(f64::from(u8::from(*b))), 1, false, Some(Unit::none())),
            ExprKind::Paren(inner) => self.lower(inner),
            ExprKind::Path(segments) => self.lower_path(segments, expr.span),
            ExprKind::Unary { op, operand } => {
                let a = self.lower(operand)?;
                let ty = self.exprs.ty(a.id);
                self.push(TNode::Unary(*op, a.id), ty.width, ty.per_step, a.unit)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.lower(lhs);
                let b = self.lower(rhs);
                let (a, b) = (a?, b?);
                let (ta, tb) = (self.exprs.ty(a.id), self.exprs.ty(b.id));
                if ta.width != tb.width && ta.width != 1 && tb.width != 1 {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::shapes::mismatch",
                            format!("`{}` combines {} values with {} values", op.symbol(), ta.width, tb.width),
                            expr.span,
                            format!("{} vs {}", ta.width, tb.width),
                        )
                        .with_label(lhs.span, format!("{} values", ta.width))
                        .with_label(rhs.span, format!("{} values", tb.width))
                        .with_help("both sides need the same number of values, or one of them a single value"),
                    );
                    return None;
                }
                let unit = match op {
                    BinaryOp::Mul => a.unit.zip(b.unit).map(|(x, y)| x.mul(&y)),
                    BinaryOp::Div => a.unit.zip(b.unit).map(|(x, y)| x.div(&y)),
                    BinaryOp::Pow => a.unit.clone().map(|u| if u.is_none() { u } else { u.powi(2) }),
                    _ => {
                        if let (Some(x), Some(y)) = (&a.unit, &b.unit)
                            && x != y
                        {
                            self.sink.push(
                                Diagnostic::error(
                                    "snn::units::mismatch",
                                    format!("units of `{}` do not match: {x} and {y}", op.symbol()),
                                    rhs.span,
                                    format!("this has unit {y}"),
                                )
                                .with_label(lhs.span, format!("this has unit {x}"))
                                .with_help("both sides need the same unit"),
                            );
                        }
                        if op.is_comparison() { Some(Unit::none()) } else { a.unit }
                    }
                };
                self.push(TNode::Binary(*op, a.id, b.id), ta.width.max(tb.width), ta.per_step || tb.per_step, unit)
            }
            ExprKind::Call { func, args } => self.lower_call(func, args, expr.span),
            ExprKind::Index { base, index } => {
                let _ = (base, index);
                self.sink.push(
                    Diagnostic::error(
                        "snn::types::unsupported_expression",
                        "indexing is not available in loss terms",
                        expr.span,
                        "indexing",
                    )
                    .with_help("use `pick(values, label)` to select the target's entry"),
                );
                None
            }
            ExprKind::Str(_) | ExprKind::List(_) => {
                self.sink.push(
                    Diagnostic::error("snn::types::unsupported_expression", "this is not a number", expr.span, "not a number")
                        .with_help("loss terms are built from readouts, label and numbers"),
                );
                None
            }
        }
    }

    pub(super) fn lower_path(&mut self, segments: &[ast::Ident], span: Span) -> Option<Typed> {
        let first = &segments[0];
        if segments.len() == 1 {
            match first.name.as_str() {
                "label" => {
                    self.reads_label = true;
                    return self.push(TNode::Label, 1, false, Some(Unit::none()));
                }
                "image" | "sample" if self.events => {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::train::event_data",
                            format!("`{}` reads the sample as an image, but N-MNIST gives events", first.name),
                            span,
                            "no image to read",
                        )
                        .with_help("loss terms, `predict` and `reconstruction` read `label` and the network's readouts here"),
                    );
                    return None;
                }
                "image" | "sample" => return self.push(TNode::Sample, self.features, false, Some(Unit::none())),
                "steps" => return self.push(TNode::Steps, 1, false, Some(Unit::none())),
                "window" => return self.push(TNode::Window, 1, false, Some(Unit::none())),
                "windows" => return self.push(TNode::Windows, 1, false, Some(Unit::none())),
                "dt" => return self.push(TNode::Const(self.module.dt), 1, false, Some(Unit::time_ms())),
                _ => {}
            }
            if let Some(index) = self.module.params.iter().position(|(n, _)| *n == first.name) {
                return self.push(TNode::NetParam(index as u32), 1, false, Some(Unit::none()));
            }
            let is_pop = self.module.populations.iter().any(|p| p.name == first.name);
            let help = if is_pop {
                format!("a population is read through a readout: `count({0})`, `rate({0})`, `first_spike({0})` or `{0}.v`", first.name)
            } else {
                suggestion_help(
                    &first.name,
                    ["label", "image", "sample", "steps", "window", "windows", "dt"]
                        .into_iter()
                        .chain(self.module.params.iter().map(|(n, _)| n.as_str())),
                    "loss terms read `label`, `steps`, network parameters and readouts of populations".to_string(),
                )
            };
            self.sink.push(
                Diagnostic::error("snn::names::unknown", format!("unknown name `{}`", first.name), span, "not found here").with_help(help),
            );
            return None;
        }
        let pop_id = self.population(first)?;
        let pop = self.module.population(pop_id);
        let name: Vec<&str> = segments[1..].iter().map(|s| s.name.as_str()).collect();
        let name = name.join(".");
        if let Some(var) = pop.var_by_name(&name) {
            return self.push(TNode::Readout(Readout::State(pop_id, var)), pop.size(), true, None);
        }
        if let Some(index) = pop.observables.iter().position(|(n, _)| *n == name) {
            if self.method == Some("eventprop") {
                // The exact-time runtime samples state variables at the grid times, not
                // observables (expressions of them).
                self.sink.push(
                    Diagnostic::error(
                        "snn::method::eventprop_readout",
                        format!("the `eventprop` runtime does not read observables such as `{}.{name}` yet", pop.name),
                        span,
                        "an observable",
                    )
                    .with_help("read the state variables it is made of, e.g. `out.v`, or spike times with `first_spike(...)`"),
                );
            }
            return self.push(TNode::Readout(Readout::Observable(pop_id, index as u32)), pop.size(), true, None);
        }
        let candidates: Vec<&str> =
            pop.vars.iter().map(|v| v.name.as_str()).chain(pop.observables.iter().map(|(n, _)| n.as_str())).collect();
        let help = suggestion_help(&name, candidates.iter().copied(), format!("`{}` has {}", pop.name, candidates.join(", ")));
        self.sink.push(
            Diagnostic::error(
                "snn::names::unknown",
                format!("`{}` has no state or observable `{name}`", pop.name),
                segments[1].span,
                "not found",
            )
            .with_help(help),
        );
        None
    }

    pub(super) fn lower_call(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Option<Typed> {
        let name = func.name.as_str();
        let readout = |this: &mut Self, make: fn(PopId) -> Readout, per_step: bool, unit: Unit| -> Option<Typed> {
            if args.len() != 1 {
                this.arity(func, args.len(), 1, span);
                return None;
            }
            let Some(ident) = args[0].value.as_name() else {
                this.sink.push(
                    Diagnostic::error(
                        "snn::train::bad_readout",
                        format!("`{name}` reads a population"),
                        args[0].value.span,
                        "not a population name",
                    )
                    .with_help(format!("write `{name}(out)`")),
                );
                return None;
            };
            let pop = this.population(ident)?;
            let width = this.module.population(pop).size();
            if this.module.population(pop).threshold.is_none() {
                this.sink.push(
                    Diagnostic::error(
                        "snn::train::no_spikes",
                        format!("`{}` never spikes, so `{name}` has nothing to read", ident.name),
                        ident.span,
                        "non-spiking population",
                    )
                    .with_help(format!("read its state instead, e.g. `{}.v`", ident.name)),
                );
            }
            this.push(TNode::Readout(make(pop)), width, per_step, Some(unit))
        };
        match name {
            "count" => return readout(self, Readout::Count, false, Unit::none()),
            "spikes" if self.method == Some("eventprop") => {
                // EventProp's losses depend on spike times; a spike train per step has no
                // derivative with respect to them.
                self.sink.push(
                    Diagnostic::error(
                        "snn::method::eventprop_readout",
                        "`spikes` is a spike train per step, which `eventprop` cannot differentiate".to_string(),
                        span,
                        "a per-step spike train",
                    )
                    .with_help(
                        "read spike times with `first_spike(...)` or `spike_penalty(...)`, `count(...)`, or a state such as `out.v`",
                    ),
                );
                return readout(self, Readout::Spikes, true, Unit::none());
            }
            "spikes" => return readout(self, Readout::Spikes, true, Unit::none()),
            "first_spike" | "spike_penalty" if matches!(self.method, Some("bptt" | "fptt")) => {
                // Spike times are exact only under EventProp; a surrogate gradient has no
                // derivative of them. Reported, then lowered on, so that the rest of the
                // expression is still checked.
                self.sink.push(
                    Diagnostic::error(
                        "snn::method::readout_needs_eventprop",
                        format!("`{name}` reads exact spike times, which `{}` does not compute", self.method.unwrap_or("bptt")),
                        span,
                        "an EventProp readout",
                    )
                    .with_help("train with `method = eventprop`, or read `count(...)` or a state instead"),
                );
                let (make, unit): (fn(PopId) -> Readout, Unit) =
                    if name == "first_spike" { (Readout::FirstSpike, Unit::time_ms()) } else { (Readout::SpikePenalty, Unit::hz()) };
                return readout(self, make, false, unit);
            }
            "first_spike" => return readout(self, Readout::FirstSpike, false, Unit::time_ms()),
            "spike_penalty" => return readout(self, Readout::SpikePenalty, false, Unit::hz()),
            "rate" => {
                let count = readout(self, Readout::Count, false, Unit::none())?;
                let width = self.exprs.ty(count.id).width;
                let steps = self.exprs.push(TNode::Steps, TType { width: 1, per_step: false });
                return self.push(TNode::Binary(BinaryOp::Div, count.id, steps), width, false, Some(Unit::none()));
            }
            "weight_l2" => {
                let projection = (if args.len() == 2 {
                    let call = ast::Expr {
                        kind: ExprKind::Call { func: ast::Ident { name: "weights".into(), span: func.span }, args: args.to_vec() },
                        span,
                    };
                    self.weights_ref(&call)
                } else {
                    self.arity(func, args.len(), 2, span);
                    None
                })?;
                return self.push(TNode::WeightL2(projection), 1, false, Some(Unit::none()));
            }
            "one_hot" => {
                let named = named_args(args);
                let on = named.get("on").and_then(|e| const_number(e)).map_or(1.0, |v| v.0);
                let off = named.get("off").and_then(|e| const_number(e)).map_or(0.0, |v| v.0);
                let label = args.iter().find(|a| a.name.is_none()).map(|a| &a.value);
                let Some(label) = label else {
                    self.arity(func, 0, 1, span);
                    return None;
                };
                let label = self.lower(label)?;
                let on = self.exprs.push(TNode::Const(on), TType { width: 1, per_step: false });
                let off = self.exprs.push(TNode::Const(off), TType { width: 1, per_step: false });
                return self.push(TNode::Call(TFunc::OneHot, vec![label.id, on, off]), self.classes, false, Some(Unit::none()));
            }
            _ => {}
        }
        let func_kind = match name {
            "mse" => TFunc::Mse,
            "cross_entropy" => TFunc::CrossEntropy,
            "nll" => TFunc::Nll,
            "log_softmax" => TFunc::LogSoftmax,
            "softmax" => TFunc::Softmax,
            "pick" => TFunc::Pick,
            "sum" => TFunc::Sum,
            "mean" => TFunc::Mean,
            "abs" => TFunc::Abs,
            "exp" => TFunc::Exp,
            "log" => TFunc::Log,
            "argmax" => TFunc::Argmax,
            "argmin" => TFunc::Argmin,
            "sum_t" => TFunc::SumT,
            "mean_t" => TFunc::MeanT,
            "max_t" => TFunc::MaxT,
            "last_t" => TFunc::LastT,
            "cumulative" => TFunc::Cumulative,
            "assigned_class" => TFunc::AssignedClass,
            "square" => {
                if args.len() != 1 {
                    self.arity(func, args.len(), 1, span);
                    return None;
                }
                let a = self.lower(&args[0].value)?;
                let ty = self.exprs.ty(a.id);
                return self.push(TNode::Binary(BinaryOp::Mul, a.id, a.id), ty.width, ty.per_step, a.unit.map(|u| u.powi(2)));
            }
            other => {
                let help = suggestion_help(other, TRAIN_FUNCTIONS, format!("loss functions and readouts: {}", TRAIN_FUNCTIONS.join(", ")));
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown_function",
                        format!("unknown function `{other}`"),
                        func.span,
                        "not a function here",
                    )
                    .with_help(help),
                );
                return None;
            }
        };
        let arity = match func_kind {
            TFunc::Mse | TFunc::CrossEntropy | TFunc::Nll | TFunc::Pick | TFunc::Cumulative => 2,
            _ => 1,
        };
        let positional: Vec<&ast::Arg> = args.iter().filter(|a| a.name.is_none()).collect();
        if positional.len() != arity {
            self.arity(func, positional.len(), arity, span);
            return None;
        }
        let lowered: Vec<Option<Typed>> = positional.iter().map(|a| self.lower(&a.value)).collect();
        let lowered: Vec<Typed> = lowered.into_iter().collect::<Option<_>>()?;
        let ty0 = self.exprs.ty(lowered[0].id);
        let ids: Vec<TExprId> = lowered.iter().map(|t| t.id).collect();
        let unit0 = lowered[0].unit.clone();
        let none = Some(Unit::none());
        let (width, per_step, unit) = match func_kind {
            TFunc::Mse => {
                let ty1 = self.exprs.ty(lowered[1].id);
                if ty0.width != ty1.width && ty1.width != 1 {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::shapes::mismatch",
                            format!("`mse` compares {} values with {} values", ty0.width, ty1.width),
                            span,
                            "sizes differ",
                        )
                        .with_label(positional[0].value.span, format!("{} values", ty0.width))
                        .with_label(positional[1].value.span, format!("{} values", ty1.width))
                        .with_help("the prediction and the target need the same number of values"),
                    );
                }
                (1, ty0.per_step || ty1.per_step, unit0.map(|u| u.powi(2)))
            }
            TFunc::CrossEntropy | TFunc::Nll => {
                if ty0.width != self.classes {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::shapes::classes",
                            format!("`{name}` needs one value per class ({}), found {}", self.classes, ty0.width),
                            positional[0].value.span,
                            format!("{} values", ty0.width),
                        )
                        .with_help(format!("read an output population with {} neurons", self.classes)),
                    );
                }
                (1, ty0.per_step, none)
            }
            TFunc::Pick => (1, ty0.per_step, unit0),
            TFunc::LogSoftmax | TFunc::Softmax | TFunc::Abs => {
                (ty0.width, ty0.per_step, if func_kind == TFunc::Abs { unit0 } else { none })
            }
            TFunc::Exp | TFunc::Log => {
                if let Some(unit) = &unit0
                    && !unit.is_none()
                {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::units::function_argument",
                            format!("`{name}` takes a dimensionless argument, found {unit}"),
                            positional[0].value.span,
                            format!("this has unit {unit}"),
                        )
                        .with_help("divide by a reference quantity, e.g. `exp(first_spike(out) / 6.4 ms)`"),
                    );
                }
                (ty0.width, ty0.per_step, none)
            }
            TFunc::Sum | TFunc::Mean => (1, ty0.per_step, unit0),
            TFunc::Argmax | TFunc::Argmin | TFunc::AssignedClass => (1, ty0.per_step, none),
            TFunc::SumT | TFunc::MeanT | TFunc::MaxT | TFunc::LastT | TFunc::Cumulative => {
                if !ty0.per_step {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::train::not_per_step",
                            format!("`{name}` reduces over time, but its argument is already one value per sample"),
                            positional[0].value.span,
                            "not a per-step value",
                        )
                        .with_help("time reductions take per-step readouts such as `out.v` or `spikes(out)`"),
                    );
                    return None;
                }
                (ty0.width, func_kind == TFunc::Cumulative, unit0)
            }
            TFunc::OneHot => unreachable!("handled above"),
        };
        self.push(TNode::Call(func_kind, ids), width, per_step, unit)
    }

    pub(super) fn arity(&mut self, func: &ast::Ident, found: usize, expected: usize, span: Span) {
        let plural = if expected == 1 { "" } else { "s" };
        self.sink.push(
            Diagnostic::error(
                "snn::call::arity",
                format!("`{}` takes {expected} argument{plural}, found {found}", func.name),
                span,
                format!("{found} given"),
            )
            .with_help(format!("call it with {expected} argument{plural}")),
        );
    }
}
