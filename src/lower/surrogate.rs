//! Surrogate-gradient and encoder definitions.

use std::collections::BTreeMap;

use crate::front::ast;
use crate::front::units::Unit;
use crate::ir::{self, ExprId, Exprs, Global, Init, VarId};
use crate::lower::Sink;
use crate::lower::expr::{Binding, Env, Lowerer};
use crate::lower::neuron::{declared_unit, lower_init};

pub fn lower_surrogate(surrogate: &ast::Surrogate, overrides: &BTreeMap<String, f64>, sink: &mut Sink) -> crate::ir::train::Surrogate {
    let mut env = Env::with_builtins(false);
    let mut params = Vec::new();
    let mut exprs = Exprs::default();
    for head in &surrogate.params {
        let value = match (overrides.get(&head.name.name), &head.default) {
            (Some(value), _) => *value,
            (None, Some(default)) => {
                let (init, _) = lower_init(default, &Env::with_builtins(false), sink);
                match init {
                    Init::Const(value) => value,
                    _ => 0.0,
                }
            }
            (None, None) => 0.0,
        };
        params.push((head.name.name.clone(), value));
        env.bind(&head.name.name, Binding::Const(value), Unit::none());
    }
    env.bind("x", Binding::Global(Global::SurrogateX), Unit::none());
    let mut lowerer = Lowerer { sink, exprs: &mut exprs };
    for let_ in &surrogate.lets {
        let (id, unit) = lowerer.lower(&env, &let_.value);
        env.bind(&let_.name.name, Binding::Expr(id), unit.unwrap_or_else(Unit::none));
    }
    let (grad, unit) = lowerer.lower(&env, &surrogate.grad);
    lowerer.expect_dimensionless(&unit, surrogate.grad.span, "a surrogate gradient");
    crate::ir::train::Surrogate { name: surrogate.name.name.clone(), params, exprs, grad }
}

pub(crate) fn check_encoder(encoder: &ast::Encoder, sink: &mut Sink) {
    let mut env = Env::with_builtins(true);
    env.allow_rand = true;
    let mut exprs = Exprs::default();
    for (index, head) in encoder.params.iter().enumerate() {
        let unit = declared_unit(&head.unit);
        if let Some(default) = &head.default {
            let mut lowerer = Lowerer { sink, exprs: &mut exprs };
            let (_, found) = lowerer.lower(&Env::with_builtins(false), default);
            lowerer.expect_unit(&found, &unit, default.span, "snn::units::mismatch", &format!("default of `{}`", head.name.name));
        }
        env.bind(&head.name.name, Binding::Var(VarId(index as u32)), unit);
    }
    lower_encoder_body(encoder, &mut env, &mut exprs, sink);
}

/// An encoder's body lowered: what it produces, its value, and its requirements' conditions
/// (split at `and`, so that the one that fails can be named), in the order written.
pub struct EncoderBody<'a> {
    pub kind: ir::EncoderKind,
    pub value: ExprId,
    pub requires: Vec<(&'a ast::Require, &'a ast::Expr, ExprId)>,
}

/// Lowers an encoder's body with its parameters already bound in `env`.
pub fn lower_encoder_body<'a>(encoder: &'a ast::Encoder, env: &mut Env, exprs: &mut Exprs, sink: &mut Sink) -> EncoderBody<'a> {
    let mut lowerer = Lowerer { sink, exprs };
    for let_ in &encoder.lets {
        let (id, unit) = lowerer.lower(env, &let_.value);
        env.bind(&let_.name.name, Binding::Expr(id), unit.unwrap_or_else(Unit::none));
    }
    let (kind, value) = match &encoder.body {
        ast::EncoderBody::SpikeWhen(condition) => {
            let (id, unit) = lowerer.lower(env, condition);
            lowerer.expect_dimensionless(&unit, condition.span, "an encoder's spike condition");
            (ir::EncoderKind::SpikeWhen, id)
        }
        ast::EncoderBody::SpikeAt(time) => {
            let (id, unit) = lowerer.lower(env, time);
            lowerer.expect_unit(&unit, &Unit::time_ms(), time.span, "snn::units::mismatch", "a spike time");
            (ir::EncoderKind::SpikeAt, id)
        }
        ast::EncoderBody::Current(value) => {
            let (id, _) = lowerer.lower(env, value);
            (ir::EncoderKind::Current, id)
        }
    };
    // After the body, so that the body's nodes (and so its random streams, keyed by node) do not
    // depend on the requirements.
    let mut requires = Vec::new();
    for require in &encoder.requires {
        let mut conjuncts = vec![&require.condition];
        while let Some(index) = conjuncts.iter().position(|c| matches!(c.kind, ast::ExprKind::Binary { op: ast::BinaryOp::And, .. })) {
            let ast::ExprKind::Binary { lhs, rhs, .. } = &conjuncts[index].kind else { unreachable!("matched above") };
            conjuncts.splice(index..=index, [lhs.as_ref(), rhs.as_ref()]);
        }
        for conjunct in conjuncts {
            let (id, unit) = lowerer.lower(env, conjunct);
            lowerer.expect_dimensionless(&unit, conjunct.span, "a requirement");
            requires.push((require, conjunct, id));
        }
    }
    EncoderBody { kind, value, requires }
}
