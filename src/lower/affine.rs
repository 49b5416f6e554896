//! Affine analysis of dynamics: whether a right-hand side is linear in the states (so that
//! it integrates exactly) and its coefficients.

use crate::front::ast::{BinaryOp, UnaryOp};
use crate::ir::{ExprId, Exprs, Node, PortId, VarId};

pub(crate) fn reads_port(exprs: &Exprs, id: ExprId, port: PortId) -> bool {
    match exprs.get(id) {
        Node::Port(p) => *p == port,
        Node::Const(_) | Node::Var(_) | Node::Global(_) => false,
        Node::Unary(_, a) => reads_port(exprs, *a, port),
        Node::Binary(_, a, b) => reads_port(exprs, *a, port) || reads_port(exprs, *b, port),
        Node::Call(_, args) => args.iter().any(|a| reads_port(exprs, *a, port)),
    }
}

/// `sum_i terms_i.1 * terms_i.0 + constant`, with coefficients free of the states.
pub(crate) struct Affine {
    pub(crate) terms: Vec<(VarId, ExprId)>,
    pub(crate) constant: ExprId,
}

impl Affine {
    pub(crate) fn coeff(&self, var: VarId) -> Option<ExprId> {
        self.terms.iter().find(|(v, _)| *v == var).map(|(_, c)| *c)
    }
}

/// The affine form of `id` in the variables `states`, or `None` when it is not affine.
pub(crate) fn affine(exprs: &mut Exprs, id: ExprId, states: &[VarId]) -> Option<Affine> {
    let is_state = |v: VarId| states.contains(&v);
    if !exprs.reads(id, &is_state) {
        return Some(Affine { terms: Vec::new(), constant: id });
    }
    let node = exprs.get(id).clone();
    match node {
        Node::Var(var) => {
            let one = exprs.push(Node::Const(1.0));
            let zero = exprs.push(Node::Const(0.0));
            Some(Affine { terms: vec![(var, one)], constant: zero })
        }
        Node::Unary(UnaryOp::Neg, a) => {
            let form = affine(exprs, a, states)?;
            Some(scale(exprs, form, None, true))
        }
        Node::Binary(op @ (BinaryOp::Add | BinaryOp::Sub), a, b) => {
            let left = affine(exprs, a, states)?;
            let mut right = affine(exprs, b, states)?;
            if op == BinaryOp::Sub {
                right = scale(exprs, right, None, true);
            }
            let mut terms = left.terms;
            for (var, coeff) in right.terms {
                match terms.iter_mut().find(|(v, _)| *v == var) {
                    Some((_, existing)) => *existing = exprs.push(Node::Binary(BinaryOp::Add, *existing, coeff)),
                    None => terms.push((var, coeff)),
                }
            }
            let constant = exprs.push(Node::Binary(BinaryOp::Add, left.constant, right.constant));
            Some(Affine { terms, constant })
        }
        Node::Binary(BinaryOp::Mul, a, b) => {
            if !exprs.reads(a, &is_state) {
                let form = affine(exprs, b, states)?;
                Some(scale(exprs, form, Some((a, BinaryOp::Mul)), false))
            } else if !exprs.reads(b, &is_state) {
                let form = affine(exprs, a, states)?;
                Some(scale(exprs, form, Some((b, BinaryOp::Mul)), false))
            } else {
                None
            }
        }
        Node::Binary(BinaryOp::Div, a, b) if !exprs.reads(b, &is_state) => {
            let form = affine(exprs, a, states)?;
            Some(scale(exprs, form, Some((b, BinaryOp::Div)), false))
        }
        _ => None,
    }
}

pub(crate) fn scale(exprs: &mut Exprs, form: Affine, by: Option<(ExprId, BinaryOp)>, negate: bool) -> Affine {
    let apply = |exprs: &mut Exprs, id: ExprId| -> ExprId {
        let id = match by {
            Some((factor, op)) => exprs.push(Node::Binary(op, id, factor)),
            None => id,
        };
        if negate { exprs.push(Node::Unary(UnaryOp::Neg, id)) } else { id }
    };
    let terms = form.terms.iter().map(|(v, c)| (*v, apply(exprs, *c))).collect();
    let constant = apply(exprs, form.constant);
    Affine { terms, constant }
}
