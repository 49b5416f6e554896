//! A small reverse-mode tape over IR expressions, for the oracle's gradients.
//!
//! One neuron's step is re-run on a tape from its stored state (recomputation instead of
//! storing every intermediate), then swept backwards. The threshold is a [`Op::Spike`] node
//! whose derivative is the model's surrogate; the conditional reset is a [`Op::Select`] whose
//! condition is detached, as in snnTorch.

use crate::exec::real::Real;
use crate::ir::{self, BinaryOp, ExprId, Exprs, Func, Global, Node, UnaryOp};

#[derive(Clone, Copy, Debug)]
pub enum Op<F> {
    Leaf,
    Neg(usize),
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Div(usize, usize),
    Pow(usize, usize),
    Exp(usize),
    Log(usize),
    Sqrt(usize),
    Abs(usize),
    Sigmoid(usize),
    Tanh(usize),
    Sin(usize),
    Cos(usize),
    Min(usize, usize),
    Max(usize, usize),
    /// select(condition, a, b): the condition gets no gradient.
    Select(usize, usize, usize),
    Gauss(usize, usize, usize),
    /// A value without gradient (comparisons, heaviside, random draws).
    Constant,
    /// spike = H(x); d spike / dx = surrogate(x) (stored at record time).
    Spike(usize, F),
}

pub struct Tape<F> {
    pub ops: Vec<Op<F>>,
    pub values: Vec<F>,
}

impl<F> Default for Tape<F> {
    fn default() -> Tape<F> {
        Tape { ops: Vec::new(), values: Vec::new() }
    }
}

impl<F: Real> Tape<F> {
    pub fn clear(&mut self) {
        self.ops.clear();
        self.values.clear();
    }

    pub fn push(&mut self, op: Op<F>, value: F) -> usize {
        self.ops.push(op);
        self.values.push(value);
        self.ops.len() - 1
    }

    pub fn leaf(&mut self, value: F) -> usize {
        self.push(Op::Leaf, value)
    }

    pub fn constant(&mut self, value: F) -> usize {
        self.push(Op::Constant, value)
    }

    pub fn value(&self, index: usize) -> F {
        self.values[index]
    }

    /// Propagates `grads` (one slot per tape entry, seeded by the caller) to every entry.
    pub fn backward(&self, grads: &mut [F]) {
        for index in (0..self.ops.len()).rev() {
            let g = grads[index];
            if g == F::zero() {
                continue;
            }
            let v = |i: usize| self.values[i];
            let out = self.values[index];
            match self.ops[index] {
                Op::Leaf | Op::Constant => {}
                Op::Neg(a) => grads[a] -= g,
                Op::Add(a, b) => {
                    grads[a] += g;
                    grads[b] += g;
                }
                Op::Sub(a, b) => {
                    grads[a] += g;
                    grads[b] -= g;
                }
                Op::Mul(a, b) => {
                    grads[a] += g * v(b);
                    grads[b] += g * v(a);
                }
                Op::Div(a, b) => {
                    grads[a] += g / v(b);
                    grads[b] -= g * v(a) / (v(b) * v(b));
                }
                Op::Pow(a, b) => {
                    let (x, y) = (v(a), v(b));
                    grads[a] += g * if y == F::zero() { F::zero() } else { y * x.powf(y - F::one()) };
                    if x > F::zero() {
                        grads[b] += g * out * x.ln();
                    }
                }
                Op::Exp(a) => grads[a] += g * out,
                Op::Log(a) => grads[a] += g / v(a),
                Op::Sqrt(a) => grads[a] += g * F::of(0.5) / out,
                Op::Abs(a) => grads[a] += if v(a) == F::zero() { F::zero() } else { g * v(a).signum() },
                Op::Sigmoid(a) => grads[a] += g * out * (F::one() - out),
                Op::Tanh(a) => grads[a] += g * (F::one() - out * out),
                Op::Sin(a) => grads[a] += g * v(a).cos(),
                Op::Cos(a) => grads[a] -= g * v(a).sin(),
                Op::Min(a, b) => {
                    if v(a) <= v(b) {
                        grads[a] += g
                    } else {
                        grads[b] += g
                    }
                }
                Op::Max(a, b) => {
                    if v(a) >= v(b) {
                        grads[a] += g
                    } else {
                        grads[b] += g
                    }
                }
                Op::Select(c, a, b) => {
                    if v(c) != F::zero() {
                        grads[a] += g
                    } else {
                        grads[b] += g
                    }
                }
                Op::Gauss(x, mu, sigma) => {
                    let (d, s) = (v(x) - v(mu), v(sigma));
                    let dx = -d / (s * s) * out;
                    grads[x] += g * dx;
                    grads[mu] -= g * dx;
                    grads[sigma] += g * out * (d * d / (s * s * s) - F::one() / s);
                }
                Op::Spike(x, surrogate) => grads[x] += g * surrogate,
            }
        }
    }
}

/// Where the leaves of an expression come from when it is recorded on a tape.
pub struct Leaves<'a, F> {
    /// Tape index of each variable.
    pub vars: &'a [usize],
    /// Tape index of each port.
    pub ports: &'a [usize],
    /// Tape index of the `spiked` value.
    pub spiked: usize,
    pub time: F,
    pub dt: F,
    pub rand: &'a dyn Fn(ExprId) -> F,
    pub net: &'a [F],
}

/// Records expression `id` of `exprs` on the tape; `memo` caches nodes within one phase.
pub fn record<F: Real>(tape: &mut Tape<F>, exprs: &Exprs, id: ExprId, leaves: &Leaves<F>, memo: &mut Vec<Option<usize>>) -> usize {
    if memo.len() < exprs.nodes.len() {
        memo.resize(exprs.nodes.len(), None);
    }
    if let Some(index) = memo[id.0 as usize] {
        return index;
    }
    let index = match exprs.get(id) {
        Node::Const(value) => tape.constant(F::of(*value)),
        Node::Var(var) => leaves.vars[var.0 as usize],
        Node::Port(port) => leaves.ports[port.0 as usize],
        Node::Global(global) => match global {
            Global::Spiked => leaves.spiked,
            Global::Dt => tape.constant(leaves.dt),
            Global::Time => tape.constant(leaves.time),
            Global::Rand | Global::SampleRand => tape.constant((leaves.rand)(id)),
            Global::NetParam(i) => tape.constant(leaves.net[*i as usize]),
            Global::Data | Global::SurrogateX | Global::Refractory | Global::AdjointAfter(_) | Global::AdjointSpike => {
                tape.constant(F::nan())
            }
        },
        Node::Unary(op, a) => {
            let a = record(tape, exprs, *a, leaves, memo);
            match op {
                UnaryOp::Neg => tape.push(Op::Neg(a), -tape.value(a)),
                UnaryOp::Not => tape.constant(if tape.value(a) == F::zero() { F::one() } else { F::zero() }),
            }
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (record(tape, exprs, *a, leaves, memo), record(tape, exprs, *b, leaves, memo));
            let (x, y) = (tape.value(a), tape.value(b));
            let value = ir::eval_binary(*op, x, y).unwrap_or(F::nan());
            match op {
                BinaryOp::Add => tape.push(Op::Add(a, b), value),
                BinaryOp::Sub => tape.push(Op::Sub(a, b), value),
                BinaryOp::Mul => tape.push(Op::Mul(a, b), value),
                BinaryOp::Div => tape.push(Op::Div(a, b), value),
                BinaryOp::Pow => tape.push(Op::Pow(a, b), value),
                BinaryOp::Or | BinaryOp::And | BinaryOp::Ge | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt => {
                    tape.constant(value)
                }
            }
        }
        Node::Call(func, args) => {
            let args: Vec<usize> = args.iter().map(|a| record(tape, exprs, *a, leaves, memo)).collect();
            let values: Vec<F> = args.iter().map(|a| tape.value(*a)).collect();
            let value = ir::eval_func(*func, &values).unwrap_or(F::nan());
            let op = match func {
                Func::Exp => Op::Exp(args[0]),
                Func::Log => Op::Log(args[0]),
                Func::Sqrt => Op::Sqrt(args[0]),
                Func::Abs => Op::Abs(args[0]),
                Func::Sigmoid => Op::Sigmoid(args[0]),
                Func::Tanh => Op::Tanh(args[0]),
                Func::Sin => Op::Sin(args[0]),
                Func::Cos => Op::Cos(args[0]),
                Func::Min => Op::Min(args[0], args[1]),
                Func::Max => Op::Max(args[0], args[1]),
                // clip(x, lo, hi) = min(max(x, lo), hi)
                Func::Clip => {
                    let low = tape.push(Op::Max(args[0], args[1]), values[0].max(values[1]));
                    Op::Min(low, args[2])
                }
                Func::Select => Op::Select(args[0], args[1], args[2]),
                Func::Gauss => Op::Gauss(args[0], args[1], args[2]),
                // Comparisons and detached values carry no gradient.
                Func::Heaviside | Func::Detach => Op::Constant,
            };
            tape.push(op, value)
        }
    };
    memo[id.0 as usize] = Some(index);
    index
}

/// Evaluates a surrogate's gradient at `x`.
pub fn surrogate_grad<F: Real>(surrogate: &crate::ir::train::Surrogate, x: F) -> F {
    eval_with_x(&surrogate.exprs, surrogate.grad, x)
}

fn eval_with_x<F: Real>(exprs: &Exprs, id: ExprId, x: F) -> F {
    match exprs.get(id) {
        Node::Const(value) => F::of(*value),
        Node::Global(Global::SurrogateX) => x,
        Node::Global(_) | Node::Var(_) | Node::Port(_) => F::nan(),
        Node::Unary(op, a) => {
            let a = eval_with_x(exprs, *a, x);
            match op {
                UnaryOp::Neg => -a,
                UnaryOp::Not => {
                    if a == F::zero() {
                        F::one()
                    } else {
                        F::zero()
                    }
                }
            }
        }
        Node::Binary(op, a, b) => ir::eval_binary(*op, eval_with_x(exprs, *a, x), eval_with_x(exprs, *b, x)).unwrap_or(F::nan()),
        Node::Call(func, args) => {
            let values: Vec<F> = args.iter().map(|a| eval_with_x(exprs, *a, x)).collect();
            ir::eval_func(*func, &values).unwrap_or(F::nan())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tape_gradients_match_finite_differences() {
        // f(a, b) = exp(a * b) / (1 + b^2) + max(a, 0.3)
        let f = |a: f64, b: f64| (a * b).exp() / (1.0 + b * b) + a.max(0.3);
        let (a0, b0) = (0.7, -0.4);
        let mut tape = Tape::<f64>::default();
        let a = tape.leaf(a0);
        let b = tape.leaf(b0);
        let ab = tape.push(Op::Mul(a, b), a0 * b0);
        let e = tape.push(Op::Exp(ab), (a0 * b0).exp());
        let one = tape.constant(1.0);
        let two = tape.constant(2.0);
        let b2 = tape.push(Op::Pow(b, two), b0 * b0);
        let den = tape.push(Op::Add(one, b2), 1.0 + b0 * b0);
        let q = tape.push(Op::Div(e, den), (a0 * b0).exp() / (1.0 + b0 * b0));
        let c = tape.constant(0.3);
        let m = tape.push(Op::Max(a, c), a0.max(0.3));
        let out = tape.push(Op::Add(q, m), f(a0, b0));
        let mut grads = vec![0.0; tape.ops.len()];
        grads[out] = 1.0;
        tape.backward(&mut grads);
        let h = 1e-6;
        let da = (f(a0 + h, b0) - f(a0 - h, b0)) / (2.0 * h);
        let db = (f(a0, b0 + h) - f(a0, b0 - h)) / (2.0 * h);
        assert!((grads[a] - da).abs() < 1e-8, "{} vs {da}", grads[a]);
        assert!((grads[b] - db).abs() < 1e-8, "{} vs {db}", grads[b]);
    }
}
