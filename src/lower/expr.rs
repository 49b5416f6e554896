//! Unit-checked lowering of expressions into an [`Exprs`] arena.
//!
//! Every lowered expression comes back with its unit, or `None` when a problem inside it was
//! already reported (so one mistake does not cascade into many messages).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use crate::front::ast::{self, BinaryOp, ExprKind, Span, UnaryOp};
use crate::front::diag::{Diagnostic, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::{ExprId, Exprs, Func, Global, Node, PortId, VarId};
use crate::lower::Sink;

#[derive(Clone, Debug)]
pub enum Binding {
    Var(VarId),
    Port(PortId),
    Expr(ExprId),
    Global(Global),
    Const(f64),
}

/// The names visible to an expression, with their units.
#[derive(Default)]
pub struct Env {
    pub names: BTreeMap<String, (Binding, Unit)>,
    /// `rand()` is available (encoders).
    pub allow_rand: bool,
    pub used: RefCell<BTreeSet<String>>,
}

impl Env {
    pub fn bind(&mut self, name: &str, binding: Binding, unit: Unit) {
        self.names.insert(name.to_string(), (binding, unit));
    }

    pub fn with_builtins(dt_available: bool) -> Env {
        let mut env = Env::default();
        env.bind("pi", Binding::Const(std::f64::consts::PI), Unit::none());
        if dt_available {
            env.bind("dt", Binding::Global(Global::Dt), Unit::time_ms());
            env.bind("t", Binding::Global(Global::Time), Unit::time_ms());
        }
        env
    }
}

pub fn func_by_name(name: &str) -> Option<Func> {
    Func::ALL.into_iter().find(|f| f.name() == name)
}

pub struct Lowerer<'s, 'a> {
    pub sink: &'s mut Sink<'a>,
    pub exprs: &'s mut Exprs,
}

impl Lowerer<'_, '_> {
    pub fn error(&mut self, diagnostic: Diagnostic) {
        self.sink.push(diagnostic);
    }

    pub fn constant(&mut self, value: f64) -> ExprId {
        self.exprs.push(Node::Const(value))
    }

    pub fn lower(&mut self, env: &Env, expr: &ast::Expr) -> (ExprId, Option<Unit>) {
        match &expr.kind {
            ExprKind::Quantity { value, unit, .. } => {
                let unit = unit.as_ref().map_or_else(Unit::none, units::eval);
                (self.constant(value * unit.factor()), Some(unit))
            }
            ExprKind::Bool(value) => (self.constant(f64::from(u8::from(*value))), Some(Unit::none())),
            ExprKind::Str(_) => {
                self.error(
                    Diagnostic::error("snn::types::unexpected_string", "a string is not a number", expr.span, "string here")
                        .with_help("strings are only used for paths, such as `data = mnist(dir = \"data/mnist\")`"),
                );
                (self.constant(0.0), None)
            }
            ExprKind::Path(segments) => self.lower_path(env, segments, expr.span),
            ExprKind::Paren(inner) => self.lower(env, inner),
            ExprKind::Unary { op, operand } => {
                let (value, unit) = self.lower(env, operand);
                match op {
                    UnaryOp::Neg => (self.exprs.push(Node::Unary(UnaryOp::Neg, value)), unit),
                    UnaryOp::Not => {
                        self.expect_dimensionless(&unit, operand.span, "the operand of `not`");
                        (self.exprs.push(Node::Unary(UnaryOp::Not, value)), Some(Unit::none()))
                    }
                }
            }
            ExprKind::Binary { op, lhs, rhs } => self.lower_binary(env, *op, lhs, rhs),
            ExprKind::Call { func, args } => self.lower_call(env, func, args, expr.span),
            ExprKind::Index { .. } | ExprKind::List(_) => {
                self.error(
                    Diagnostic::error(
                        "snn::types::unsupported_expression",
                        "indexing and lists are not available in neuron, synapse and encoder expressions",
                        expr.span,
                        "not allowed here",
                    )
                    .with_help("each expression describes one neuron or synapse; write it for a single element"),
                );
                (self.constant(0.0), None)
            }
        }
    }

    fn lower_path(&mut self, env: &Env, segments: &[ast::Ident], span: Span) -> (ExprId, Option<Unit>) {
        let name: Vec<&str> = segments.iter().map(|s| s.name.as_str()).collect();
        let name = name.join(".");
        if let Some((binding, unit)) = env.names.get(&name) {
            env.used.borrow_mut().insert(name.clone());
            let node = match binding {
                Binding::Var(var) => Node::Var(*var),
                Binding::Port(port) => Node::Port(*port),
                Binding::Expr(id) => return (*id, Some(unit.clone())),
                Binding::Global(global) => Node::Global(*global),
                Binding::Const(value) => Node::Const(*value),
            };
            return (self.exprs.push(node), Some(unit.clone()));
        }
        let help = suggestion_help(
            &name,
            env.names.keys().map(String::as_str),
            "declare it with `param`, `state`, `input` or `let` before using it".to_string(),
        );
        self.error(
            Diagnostic::error("snn::names::unknown", format!("unknown name `{name}`"), span, "not found in this scope").with_help(help),
        );
        (self.constant(0.0), None)
    }

    fn lower_binary(&mut self, env: &Env, op: BinaryOp, lhs: &ast::Expr, rhs: &ast::Expr) -> (ExprId, Option<Unit>) {
        let (a, unit_a) = self.lower(env, lhs);
        if op == BinaryOp::Pow {
            return self.lower_pow(env, a, unit_a, lhs, rhs);
        }
        let (b, unit_b) = self.lower(env, rhs);
        let node = self.exprs.push(Node::Binary(op, a, b));
        let unit = match op {
            BinaryOp::Add | BinaryOp::Sub => self.expect_same(&unit_a, &unit_b, lhs.span, rhs.span, op.symbol()),
            BinaryOp::Ge | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt => {
                self.expect_same(&unit_a, &unit_b, lhs.span, rhs.span, op.symbol()).map(|_| Unit::none())
            }
            BinaryOp::And | BinaryOp::Or => {
                self.expect_dimensionless(&unit_a, lhs.span, "a logical operand");
                self.expect_dimensionless(&unit_b, rhs.span, "a logical operand");
                Some(Unit::none())
            }
            BinaryOp::Mul => unit_a.zip(unit_b).map(|(a, b)| a.mul(&b)),
            BinaryOp::Div => unit_a.zip(unit_b).map(|(a, b)| a.div(&b)),
            BinaryOp::Pow => unreachable!("handled above"),
        };
        (node, unit)
    }

    fn lower_pow(&mut self, env: &Env, base: ExprId, unit_base: Option<Unit>, lhs: &ast::Expr, rhs: &ast::Expr) -> (ExprId, Option<Unit>) {
        let (exponent, unit_exponent) = self.lower(env, rhs);
        self.expect_dimensionless(&unit_exponent, rhs.span, "an exponent");
        let node = self.exprs.push(Node::Binary(BinaryOp::Pow, base, exponent));
        let Some(unit_base) = unit_base else { return (node, None) };
        if unit_base.is_none() {
            return (node, Some(Unit::none()));
        }
        match self.exprs.constant(exponent) {
            Some(power) if power == power.trunc() && power.abs() <= 8.0 => (node, Some(unit_base.powi(power as i32))),
            _ => {
                self.error(
                    Diagnostic::error(
                        "snn::units::non_integer_power",
                        format!("a quantity in {unit_base} can only be raised to a constant integer power"),
                        rhs.span,
                        "not a constant integer",
                    )
                    .with_label(lhs.span, format!("this has unit {unit_base}"))
                    .with_help("divide the base by a reference value to make it dimensionless first"),
                );
                (node, None)
            }
        }
    }

    fn lower_call(&mut self, env: &Env, func: &ast::Ident, args: &[ast::Arg], span: Span) -> (ExprId, Option<Unit>) {
        if matches!(func.name.as_str(), "rand" | "rand_per_sample") && env.allow_rand {
            self.expect_arity(func, args.len(), 0, span);
            let global = if func.name == "rand" { Global::Rand } else { Global::SampleRand };
            return (self.exprs.push(Node::Global(global)), Some(Unit::none()));
        }
        let Some(function) = func_by_name(&func.name) else {
            let mut names: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
            if env.allow_rand {
                names.extend(["rand", "rand_per_sample"]);
            }
            let fallback = format!("available functions: {}", names.join(", "));
            let help = suggestion_help(&func.name, names.iter().copied(), fallback);
            let message = if matches!(func.name.as_str(), "uniform" | "normal" | "kaiming_normal" | "xavier_uniform") {
                format!("`{}` is an initialiser and only starts a `param` or `state`", func.name)
            } else {
                format!("unknown function `{}`", func.name)
            };
            self.error(Diagnostic::error("snn::names::unknown_function", message, func.span, "not a function here").with_help(help));
            for arg in args {
                self.lower(env, &arg.value);
            }
            return (self.constant(0.0), None);
        };
        for arg in args {
            if let Some(name) = &arg.name {
                self.error(
                    Diagnostic::error(
                        "snn::call::named_argument",
                        format!("`{}` takes positional arguments only", function.name()),
                        name.span,
                        "named argument",
                    )
                    .with_help(format!("drop `{} =`", name.name)),
                );
            }
        }
        let lowered: Vec<(ExprId, Option<Unit>, Span)> = args
            .iter()
            .map(|arg| {
                let (id, unit) = self.lower(env, &arg.value);
                (id, unit, arg.value.span)
            })
            .collect();
        if !self.expect_arity(func, args.len(), function.arity(), span) {
            return (self.constant(0.0), None);
        }
        let ids: Vec<ExprId> = lowered.iter().map(|(id, _, _)| *id).collect();
        let node = self.exprs.push(Node::Call(function, ids));
        let unit = |i: usize| lowered[i].1.clone();
        let span_of = |i: usize| lowered[i].2;
        let unit = match function {
            Func::Exp | Func::Log | Func::Sigmoid | Func::Tanh | Func::Sin | Func::Cos | Func::Heaviside => {
                if let Some(found) = unit(0)
                    && !found.is_none()
                {
                    self.error(
                        Diagnostic::error(
                            "snn::units::function_argument",
                            format!("`{}` takes a dimensionless argument, found {found}", function.name()),
                            span_of(0),
                            format!("this has unit {found}"),
                        )
                        .with_help("divide by a quantity of the same unit, e.g. `exp(-dt / tau)`"),
                    );
                }
                if function == Func::Heaviside { Some(Unit::none()) } else { unit(0).map(|_| Unit::none()) }
            }
            Func::Sqrt => unit(0).and_then(|found| {
                if found.dim.0.iter().all(|e| e % 2 == 0) {
                    let mut half = found.clone();
                    half.dim = crate::front::units::Dim(found.dim.0.map(|e| e / 2));
                    half.scale = found.scale / 2;
                    half.text = format!("sqrt({})", found.text);
                    Some(half)
                } else {
                    self.error(
                        Diagnostic::error(
                            "snn::units::function_argument",
                            format!("`sqrt` of a quantity in {found} has no unit"),
                            span_of(0),
                            format!("this has unit {found}"),
                        )
                        .with_help("take the square root of a squared unit or of a dimensionless value"),
                    );
                    None
                }
            }),
            Func::Abs | Func::Detach => unit(0),
            Func::Min | Func::Max => self.expect_same(&unit(0), &unit(1), span_of(0), span_of(1), function.name()),
            Func::Clip => {
                let low = self.expect_same(&unit(0), &unit(1), span_of(0), span_of(1), "clip");
                low.and_then(|_| self.expect_same(&unit(0), &unit(2), span_of(0), span_of(2), "clip"))
            }
            Func::Select => {
                self.expect_dimensionless(&unit(0), span_of(0), "the condition of `select`");
                self.expect_same(&unit(1), &unit(2), span_of(1), span_of(2), "select")
            }
            Func::Gauss => {
                let same = self.expect_same(&unit(0), &unit(1), span_of(0), span_of(1), "gauss");
                let same = same.and_then(|_| self.expect_same(&unit(0), &unit(2), span_of(0), span_of(2), "gauss"));
                same.map(|u| Unit::none().div(&u))
            }
        };
        (node, unit)
    }

    pub fn expect_arity(&mut self, func: &ast::Ident, found: usize, expected: usize, span: Span) -> bool {
        if found == expected {
            return true;
        }
        let plural = if expected == 1 { "" } else { "s" };
        self.error(
            Diagnostic::error(
                "snn::call::arity",
                format!("`{}` takes {expected} argument{plural}, found {found}", func.name),
                span,
                format!("{found} given"),
            )
            .with_help(format!("call it as `{}` with {expected} argument{plural}", func.name)),
        );
        false
    }

    /// Both sides must have the same dimension; reports and returns `None` when they differ.
    pub fn expect_same(&mut self, a: &Option<Unit>, b: &Option<Unit>, span_a: Span, span_b: Span, operation: &str) -> Option<Unit> {
        let (a, b) = (a.as_ref()?, b.as_ref()?);
        if a == b {
            return Some(a.clone());
        }
        self.error(
            Diagnostic::error(
                "snn::units::mismatch",
                format!("units of `{operation}` do not match: {a} and {b}"),
                span_b,
                format!("this has unit {b}"),
            )
            .with_label(span_a, format!("this has unit {a}"))
            .with_help(format!("both sides of `{operation}` need the same unit; convert one side, e.g. multiply by a quantity in {a}/{b}")),
        );
        None
    }

    pub fn expect_dimensionless(&mut self, unit: &Option<Unit>, span: Span, what: &str) {
        if let Some(unit) = unit
            && !unit.is_none()
        {
            self.error(
                Diagnostic::error(
                    "snn::units::expected_dimensionless",
                    format!("{what} must be dimensionless, found {unit}"),
                    span,
                    format!("this has unit {unit}"),
                )
                .with_help("divide by a reference quantity of the same unit"),
            );
        }
    }

    /// Checks that an expression has the expected unit, with a message naming `what`.
    pub fn expect_unit(&mut self, found: &Option<Unit>, expected: &Unit, span: Span, code: &'static str, what: &str) -> bool {
        let Some(found) = found else { return false };
        if found == expected {
            return true;
        }
        self.error(
            Diagnostic::error(code, format!("{what}: expected {expected}, found {found}"), span, format!("this has unit {found}"))
                .with_help(unit_help(expected, found)),
        );
        false
    }
}

/// A help line for a unit mismatch that suggests the usual fix.
pub fn unit_help(expected: &Unit, found: &Unit) -> String {
    let ratio = expected.div(found);
    if ratio.is_time() {
        format!("multiply by a time (e.g. `* dt`) to turn {found} into {expected}")
    } else if ratio.dim == crate::front::units::Dim::TIME.inv() {
        format!("divide by a time constant (e.g. `/ tau`) to turn {found} into {expected}")
    } else if found.is_none() {
        format!("write the value with a unit, e.g. `1 {expected}`")
    } else {
        format!("the expression must have unit {expected}")
    }
}
