//! Loop-invariant subexpressions of a step graph. A population's parameters (`param` variables,
//! trainable or per neuron) hold one value per neuron through a whole pass: every sample of a
//! batch and every step of a window reads the same values (they change only between passes,
//! by an optimiser step). A subexpression that reads nothing but parameters, constants, `dt`
//! and network parameters, such as the propagator `exp(-dt / tau_m)` of a trainable time
//! constant, therefore has one value per neuron; a kernel computes it once per neuron and
//! call instead of once per element, and reads it back in its element loop.

use crate::ir::{BinaryOp, ExprId, Exprs, Func, Global, Node, Population, VarKind};

/// The maximal subexpressions reachable from `roots` that read only parameters, constants,
/// `dt` and network parameters, and that cost more than reading one value back (they contain
/// a division, a square root or a transcendental function). In increasing id order; no
/// returned node contains another.
pub fn invariants(pop: &Population, exprs: &Exprs, roots: &[ExprId]) -> Vec<ExprId> {
    let n = exprs.nodes.len();
    // Node ids are topological (a node's arguments are pushed before it), so one pass in id
    // order classifies every node from its arguments.
    let mut invariant = vec![false; n];
    let mut costly = vec![false; n];
    for (i, node) in exprs.nodes.iter().enumerate() {
        let args = |ids: &[ExprId]| ids.iter().map(|a| a.0 as usize).collect::<Vec<_>>();
        let (leaf, children, expensive) = match node {
            Node::Const(_) => (true, Vec::new(), false),
            Node::Var(v) => (matches!(pop.vars[v.0 as usize].kind, VarKind::Param { .. }), Vec::new(), false),
            Node::Port(_) => (false, Vec::new(), false),
            Node::Global(global) => (matches!(global, Global::Dt | Global::NetParam(_)), Vec::new(), false),
            Node::Unary(_, a) => (true, args(&[*a]), false),
            Node::Binary(op, a, b) => {
                let square = *op == BinaryOp::Pow && exprs.constant(*b) == Some(2.0);
                (true, args(&[*a, *b]), matches!(op, BinaryOp::Div) || (*op == BinaryOp::Pow && !square))
            }
            Node::Call(func, call_args) => (
                true,
                args(call_args),
                !matches!(func, Func::Abs | Func::Min | Func::Max | Func::Clip | Func::Select | Func::Detach | Func::Heaviside),
            ),
        };
        invariant[i] = leaf && children.iter().all(|c| invariant[*c]);
        costly[i] = invariant[i] && (expensive || children.iter().any(|c| costly[*c]));
    }
    let mut hoisted = vec![false; n];
    let mut seen = vec![false; n];
    let mut stack: Vec<usize> = roots.iter().map(|r| r.0 as usize).collect();
    while let Some(i) = stack.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        if costly[i] {
            hoisted[i] = true;
            continue;
        }
        match exprs.get(ExprId(i as u32)) {
            Node::Unary(_, a) => stack.push(a.0 as usize),
            Node::Binary(_, a, b) => stack.extend([a.0 as usize, b.0 as usize]),
            Node::Call(_, args) => stack.extend(args.iter().map(|a| a.0 as usize)),
            _ => {}
        }
    }
    (0..n).filter(|i| hoisted[*i]).map(|i| ExprId(i as u32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{Init, UnaryOp, Var, VarId};

    fn population(vars: Vec<Var>) -> Population {
        Population {
            name: "p".into(),
            shape: vec![1],
            neuron: "N".into(),
            vars,
            ports: Vec::new(),
            exprs: Exprs::default(),
            input_jumps: Vec::new(),
            dynamics: Vec::new(),
            odes: Vec::new(),
            updates: Vec::new(),
            threshold: None,
            on_spike: Vec::new(),
            after_spike: Vec::new(),
            refractory: None,
            observables: Vec::new(),
        }
    }

    #[test]
    fn a_propagator_of_a_parameter_is_hoisted_and_state_reads_are_not() {
        let pop = population(vec![
            Var { name: "v".into(), kind: VarKind::State { init: Init::Const(0.0), persistent: false, frozen_in_eval: false } },
            Var { name: "tau".into(), kind: VarKind::Param { value: Init::Const(0.02), trainable: true, per_neuron: true, scale: 1e-3 } },
        ]);
        let mut e = Exprs::default();
        let (v, tau, dt) = (e.push(Node::Var(VarId(0))), e.push(Node::Var(VarId(1))), e.push(Node::Global(Global::Dt)));
        let minus_dt = e.push(Node::Unary(UnaryOp::Neg, dt));
        let ratio = e.push(Node::Binary(BinaryOp::Div, minus_dt, tau));
        let decay = e.push(Node::Call(Func::Exp, vec![ratio]));
        let after = e.push(Node::Binary(BinaryOp::Mul, decay, v));
        // exp(v / tau) reads the state: not invariant, but v / tau is not either.
        let state_ratio = e.push(Node::Binary(BinaryOp::Div, v, tau));
        let growth = e.push(Node::Call(Func::Exp, vec![state_ratio]));
        // tau * 2: invariant but cheaper than a load; -dt alone likewise.
        let two = e.push(Node::Const(2.0));
        let cheap = e.push(Node::Binary(BinaryOp::Mul, tau, two));
        let sum = e.push(Node::Binary(BinaryOp::Add, growth, cheap));
        assert_eq!(invariants(&pop, &e, &[after, sum, minus_dt]), vec![decay]);
        assert!(invariants(&pop, &e, &[growth]).is_empty());
    }
}
