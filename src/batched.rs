//! The batched back end: the same semantics as [`crate::interp`], with every IR node evaluated
//! over whole batch rows at once and dense projections through a GEMM (the `gemm` crate). BPTT
//! re-records each population step on an array tape from the stored state and sweeps it
//! backwards; weight gradients are GEMMs of presynaptic spikes with port adjoints.
//!
//! This is the runtime the JIT kernels plug into: the per-population elementwise work is the
//! part a compiled kernel replaces; GEMM, the time loop and the BPTT bookkeeping stay.

use std::ops::Range;
use std::rc::Rc;

use crate::bits::Bits;
use crate::interp::{Params, SampleRef, Trace, initial_values, neuron_rng, rand_draw, refractory_steps};
use crate::ir::{self, BinaryOp, Connectivity, EncoderKind, ExprId, Exprs, Func, Global, Module, Node, PopId, Population, Source, UnaryOp};
use crate::ir_train::Surrogate;
use crate::loss::ReadoutGrads;

#[derive(Clone, Debug)]
enum AOp {
    Leaf,
    Constant,
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
    Select(usize, usize, usize),
    Gauss(usize, usize, usize),
    /// spike = H(x), with per-element surrogate derivatives.
    Spike(usize, Rc<Vec<f64>>),
}

#[derive(Default)]
struct ArrayTape {
    ops: Vec<AOp>,
    values: Vec<Rc<Vec<f64>>>,
    len: usize,
}

impl ArrayTape {
    fn new(len: usize) -> ArrayTape {
        ArrayTape { len, ..ArrayTape::default() }
    }

    fn push(&mut self, op: AOp, value: Vec<f64>) -> usize {
        self.ops.push(op);
        self.values.push(Rc::new(value));
        self.ops.len() - 1
    }

    fn leaf(&mut self, value: Vec<f64>) -> usize {
        self.push(AOp::Leaf, value)
    }

    fn constant(&mut self, value: f64) -> usize {
        let len = self.len;
        self.push(AOp::Constant, vec![value; len])
    }

    fn v(&self, i: usize) -> &[f64] {
        &self.values[i]
    }

    fn map1(&mut self, a: usize, op: AOp, f: impl Fn(f64) -> f64) -> usize {
        let value = self.v(a).iter().map(|x| f(*x)).collect();
        self.push(op, value)
    }

    fn map2(&mut self, a: usize, b: usize, op: AOp, f: impl Fn(f64, f64) -> f64) -> usize {
        let value = self.v(a).iter().zip(self.v(b)).map(|(x, y)| f(*x, *y)).collect();
        self.push(op, value)
    }

    fn backward(&self, grads: &mut [Vec<f64>]) {
        for index in (0..self.ops.len()).rev() {
            if grads[index].is_empty() {
                continue;
            }
            let g = std::mem::take(&mut grads[index]);
            let out = &self.values[index];
            let mut add = |target: usize, f: &dyn Fn(usize) -> f64| {
                let slot = &mut grads[target];
                if slot.is_empty() {
                    slot.resize(self.len, 0.0);
                }
                for k in 0..self.len {
                    if g[k] != 0.0 {
                        slot[k] += g[k] * f(k);
                    }
                }
            };
            let v = |i: usize| &self.values[i];
            match &self.ops[index] {
                AOp::Leaf | AOp::Constant => {
                    grads[index] = g;
                    continue;
                }
                AOp::Neg(a) => add(*a, &|_| -1.0),
                AOp::Add(a, b) => {
                    add(*a, &|_| 1.0);
                    add(*b, &|_| 1.0);
                }
                AOp::Sub(a, b) => {
                    add(*a, &|_| 1.0);
                    add(*b, &|_| -1.0);
                }
                AOp::Mul(a, b) => {
                    let (va, vb) = (v(*a).clone(), v(*b).clone());
                    add(*a, &|k| vb[k]);
                    add(*b, &|k| va[k]);
                }
                AOp::Div(a, b) => {
                    let (va, vb) = (v(*a).clone(), v(*b).clone());
                    add(*a, &|k| 1.0 / vb[k]);
                    add(*b, &|k| -va[k] / (vb[k] * vb[k]));
                }
                AOp::Pow(a, b) => {
                    let (va, vb) = (v(*a).clone(), v(*b).clone());
                    add(*a, &|k| if vb[k] == 0.0 { 0.0 } else { vb[k] * va[k].powf(vb[k] - 1.0) });
                    add(*b, &|k| if va[k] > 0.0 { out[k] * va[k].ln() } else { 0.0 });
                }
                AOp::Exp(a) => add(*a, &|k| out[k]),
                AOp::Log(a) => {
                    let va = v(*a).clone();
                    add(*a, &|k| 1.0 / va[k]);
                }
                AOp::Sqrt(a) => add(*a, &|k| 0.5 / out[k]),
                AOp::Abs(a) => {
                    let va = v(*a).clone();
                    add(*a, &|k| if va[k] == 0.0 { 0.0 } else { va[k].signum() });
                }
                AOp::Sigmoid(a) => add(*a, &|k| out[k] * (1.0 - out[k])),
                AOp::Tanh(a) => add(*a, &|k| 1.0 - out[k] * out[k]),
                AOp::Sin(a) => {
                    let va = v(*a).clone();
                    add(*a, &|k| va[k].cos());
                }
                AOp::Cos(a) => {
                    let va = v(*a).clone();
                    add(*a, &|k| -va[k].sin());
                }
                AOp::Min(a, b) | AOp::Max(a, b) => {
                    let (va, vb) = (v(*a).clone(), v(*b).clone());
                    let is_min = matches!(self.ops[index], AOp::Min(..));
                    let first = move |k: usize| if is_min { va[k] <= vb[k] } else { va[k] >= vb[k] };
                    add(*a, &|k| f64::from(u8::from(first(k))));
                    add(*b, &|k| f64::from(u8::from(!first(k))));
                }
                AOp::Select(c, a, b) => {
                    let vc = v(*c).clone();
                    add(*a, &|k| f64::from(u8::from(vc[k] != 0.0)));
                    add(*b, &|k| f64::from(u8::from(vc[k] == 0.0)));
                }
                AOp::Gauss(x, mu, sigma) => {
                    let (vx, vm, vs) = (v(*x).clone(), v(*mu).clone(), v(*sigma).clone());
                    let dx = |k: usize| -(vx[k] - vm[k]) / (vs[k] * vs[k]) * out[k];
                    add(*x, &dx);
                    add(*mu, &|k| -dx(k));
                    add(*sigma, &|k| {
                        let d = vx[k] - vm[k];
                        out[k] * (d * d / vs[k].powi(3) - 1.0 / vs[k])
                    });
                }
                AOp::Spike(x, surrogate) => add(*x, &|k| surrogate[k]),
            }
        }
    }
}

struct Leaves<'a> {
    vars: &'a [usize],
    ports: &'a [usize],
    spiked: usize,
    time: f64,
    dt: f64,
    net_params: &'a [f64],
    data: Option<usize>,
    /// The surrogate's argument, when recording a surrogate.
    surrogate_x: Option<usize>,
    rand: &'a dyn Fn(ExprId) -> Vec<f64>,
}

fn record(tape: &mut ArrayTape, exprs: &Exprs, id: ExprId, leaves: &Leaves, memo: &mut Vec<Option<usize>>) -> usize {
    if memo.len() < exprs.nodes.len() {
        memo.resize(exprs.nodes.len(), None);
    }
    if let Some(index) = memo[id.0 as usize] {
        return index;
    }
    let index = match exprs.get(id) {
        Node::Const(value) => tape.constant(*value),
        Node::Var(var) => leaves.vars[var.0 as usize],
        Node::Port(port) => leaves.ports[port.0 as usize],
        Node::Global(global) => match global {
            Global::Spiked => leaves.spiked,
            Global::Dt => tape.constant(leaves.dt),
            Global::Time => tape.constant(leaves.time),
            Global::Rand => {
                let values = (leaves.rand)(id);
                tape.push(AOp::Constant, values)
            }
            Global::NetParam(i) => tape.constant(leaves.net_params[*i as usize]),
            Global::Data => leaves.data.unwrap_or_else(|| tape.constant(f64::NAN)),
            Global::SurrogateX => leaves.surrogate_x.unwrap_or_else(|| tape.constant(f64::NAN)),
            Global::Refractory | Global::AdjointAfter(_) | Global::AdjointSpike => tape.constant(f64::NAN),
        },
        Node::Unary(op, a) => {
            let a = record(tape, exprs, *a, leaves, memo);
            match op {
                UnaryOp::Neg => tape.map1(a, AOp::Neg(a), |x| -x),
                UnaryOp::Not => tape.map1(a, AOp::Constant, |x| f64::from(u8::from(x == 0.0))),
            }
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (record(tape, exprs, *a, leaves, memo), record(tape, exprs, *b, leaves, memo));
            let f = |x: f64, y: f64| ir::eval_binary(*op, x, y).unwrap_or(f64::NAN);
            let aop = match op {
                BinaryOp::Add => AOp::Add(a, b),
                BinaryOp::Sub => AOp::Sub(a, b),
                BinaryOp::Mul => AOp::Mul(a, b),
                BinaryOp::Div => AOp::Div(a, b),
                BinaryOp::Pow => AOp::Pow(a, b),
                BinaryOp::Or | BinaryOp::And | BinaryOp::Ge | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt => {
                    AOp::Constant
                }
            };
            tape.map2(a, b, aop, f)
        }
        Node::Call(func, args) => {
            let args: Vec<usize> = args.iter().map(|a| record(tape, exprs, *a, leaves, memo)).collect();
            let value: Vec<f64> = (0..tape.len)
                .map(|k| {
                    let xs: Vec<f64> = args.iter().map(|a| tape.v(*a)[k]).collect();
                    ir::eval_func(*func, &xs).unwrap_or(f64::NAN)
                })
                .collect();
            let op = match func {
                Func::Exp => AOp::Exp(args[0]),
                Func::Log => AOp::Log(args[0]),
                Func::Sqrt => AOp::Sqrt(args[0]),
                Func::Abs => AOp::Abs(args[0]),
                Func::Sigmoid => AOp::Sigmoid(args[0]),
                Func::Tanh => AOp::Tanh(args[0]),
                Func::Sin => AOp::Sin(args[0]),
                Func::Cos => AOp::Cos(args[0]),
                Func::Min => AOp::Min(args[0], args[1]),
                Func::Max => AOp::Max(args[0], args[1]),
                Func::Clip => {
                    let low = tape.map2(args[0], args[1], AOp::Max(args[0], args[1]), f64::max);
                    AOp::Min(low, args[2])
                }
                Func::Select => AOp::Select(args[0], args[1], args[2]),
                Func::Gauss => AOp::Gauss(args[0], args[1], args[2]),
                Func::Heaviside => AOp::Constant,
            };
            tape.push(op, value)
        }
    };
    memo[id.0 as usize] = Some(index);
    index
}

struct StepRecord {
    var_leaves: Vec<usize>,
    port_leaves: Vec<usize>,
    vars_after: Vec<usize>,
    spike: usize,
    fired: Vec<bool>,
}

/// The per-step context of one population over a batch.
struct PopStep<'a> {
    module: &'a Module,
    pop: &'a Population,
    p: usize,
    step: usize,
    seed: u64,
    samples: &'a [SampleRef<'a>],
    net: &'a [f64],
    surrogate: Option<&'a Surrogate>,
}

impl PopStep<'_> {
    fn rand(&self, id: ExprId) -> Vec<f64> {
        let n = self.pop.size();
        (0..self.samples.len() * n)
            .map(|k| rand_draw(neuron_rng(self.seed, self.samples[k / n].id, self.step, self.p, k % n), id))
            .collect()
    }

    /// Records the step exactly as [`crate::interp`] computes it, for every neuron of the batch.
    fn record(&self, tape: &mut ArrayTape, before: &[&[f64]], ports: &[&[f64]], counters: &[u32]) -> StepRecord {
        let (pop, dt) = (self.pop, self.module.dt);
        let time = self.step as f64 * dt;
        let var_leaves: Vec<usize> = before.iter().map(|v| tape.leaf(v.to_vec())).collect();
        let port_leaves: Vec<usize> = ports.iter().map(|v| tape.leaf(v.to_vec())).collect();
        let zero = tape.constant(0.0);
        let rand = |id| self.rand(id);
        let mut current = var_leaves.clone();
        let apply = |tape: &mut ArrayTape, updates: &[ir::Update], current: &mut Vec<usize>, spiked: usize| {
            for update in updates {
                let mut memo = Vec::new();
                let leaves = Leaves {
                    vars: current,
                    ports: &port_leaves,
                    spiked,
                    time,
                    dt,
                    net_params: self.net,
                    data: None,
                    surrogate_x: None,
                    rand: &rand,
                };
                current[update.var.0 as usize] = record(tape, &pop.exprs, update.value, &leaves, &mut memo);
            }
        };
        for jump in &pop.input_jumps {
            let mask: Vec<f64> = ports[jump.port.0 as usize].iter().map(|x| f64::from(u8::from(*x != 0.0))).collect();
            let mask = tape.push(AOp::Constant, mask);
            let mut jumped = current.clone();
            apply(tape, &jump.updates, &mut jumped, zero);
            for update in &jump.updates {
                let v = update.var.0 as usize;
                current[v] = select(tape, mask, jumped[v], current[v]);
            }
        }
        let snapshot = current.clone();
        let mut memo = Vec::new();
        for (update, _) in &pop.dynamics {
            let leaves = Leaves {
                vars: &snapshot,
                ports: &port_leaves,
                spiked: zero,
                time,
                dt,
                net_params: self.net,
                data: None,
                surrogate_x: None,
                rand: &rand,
            };
            current[update.var.0 as usize] = record(tape, &pop.exprs, update.value, &leaves, &mut memo);
        }
        apply(tape, &pop.updates, &mut current, zero);
        let refractory: Vec<bool> = counters.iter().map(|c| *c > 0).collect();
        let mut fired = vec![false; tape.len];
        let mut spike = zero;
        if let (Some(threshold), true) = (&pop.threshold, refractory.iter().any(|r| !r)) {
            let mut memo = Vec::new();
            let leaves = Leaves {
                vars: &current,
                ports: &port_leaves,
                spiked: zero,
                time,
                dt,
                net_params: self.net,
                data: None,
                surrogate_x: None,
                rand: &rand,
            };
            let lhs = record(tape, &pop.exprs, threshold.lhs, &leaves, &mut memo);
            let rhs = record(tape, &pop.exprs, threshold.rhs, &leaves, &mut memo);
            let x = tape.map2(lhs, rhs, AOp::Sub(lhs, rhs), |a, b| a - b);
            let (l, r) = (tape.v(lhs).to_vec(), tape.v(rhs).to_vec());
            for k in 0..tape.len {
                fired[k] = !refractory[k] && if threshold.op == BinaryOp::Ge { l[k] >= r[k] } else { l[k] > r[k] };
            }
            let mut surrogate = match self.surrogate {
                Some(s) => surrogate_over(s, tape.v(x)),
                None => vec![0.0; tape.len],
            };
            for (g, refractory) in surrogate.iter_mut().zip(&refractory) {
                if *refractory {
                    *g = 0.0;
                }
            }
            spike = tape.push(AOp::Spike(x, Rc::new(surrogate)), fired.iter().map(|f| f64::from(u8::from(*f))).collect());
            if fired.iter().any(|f| *f) {
                let condition = tape.push(AOp::Constant, fired.iter().map(|f| f64::from(u8::from(*f))).collect());
                let mut reset = current.clone();
                apply(tape, &pop.on_spike, &mut reset, spike);
                for update in &pop.on_spike {
                    let v = update.var.0 as usize;
                    current[v] = select(tape, condition, reset[v], current[v]);
                }
            }
        }
        if refractory.iter().any(|r| *r) {
            let held = tape.push(AOp::Constant, refractory.iter().map(|r| f64::from(u8::from(*r))).collect());
            for update in &pop.on_spike {
                let v = update.var.0 as usize;
                current[v] = select(tape, held, var_leaves[v], current[v]);
            }
        }
        apply(tape, &pop.after_spike, &mut current, spike);
        StepRecord { var_leaves, port_leaves, vars_after: current, spike, fired }
    }
}

/// A surrogate's gradient at every element of `x`, evaluated over the whole array at once.
fn surrogate_over(surrogate: &Surrogate, x: &[f64]) -> Vec<f64> {
    let mut tape = ArrayTape::new(x.len());
    let leaf = tape.leaf(x.to_vec());
    let nothing = |_: ExprId| Vec::new();
    let leaves = Leaves {
        vars: &[],
        ports: &[],
        spiked: leaf,
        time: 0.0,
        dt: 0.0,
        net_params: &[],
        data: None,
        surrogate_x: Some(leaf),
        rand: &nothing,
    };
    let value = record(&mut tape, &surrogate.exprs, surrogate.grad, &leaves, &mut Vec::new());
    tape.v(value).to_vec()
}

fn select(tape: &mut ArrayTape, condition: usize, a: usize, b: usize) -> usize {
    let values: Vec<f64> = (0..tape.len).map(|k| if tape.v(condition)[k] != 0.0 { tape.v(a)[k] } else { tape.v(b)[k] }).collect();
    tape.push(AOp::Select(condition, a, b), values)
}

/// One input's encoder output for step `step` over the batch.
pub(crate) fn encode(
    module: &Module,
    input: &ir::Input,
    index: usize,
    samples: &[SampleRef],
    step: usize,
    seed: u64,
    net: &[f64],
) -> Vec<f64> {
    let n: usize = input.shape.iter().product();
    let len = samples.len() * n;
    if step >= module.steps {
        return vec![0.0; len];
    }
    let mut tape = ArrayTape::new(len);
    let mut data = Vec::with_capacity(len);
    for sample in samples {
        let features = &sample.features[..n.min(sample.features.len())];
        data.extend(features.iter().map(|x| f64::from(*x)));
        data.resize(data.len() + n - features.len(), 0.0);
    }
    let data = tape.leaf(data);
    // The random stream of a row depends on (seed, sample, step) only: mix that prefix once.
    let rand = |id: ExprId| -> Vec<f64> {
        let mut values = Vec::with_capacity(len);
        for sample in samples {
            let prefix = crate::data::uniform_prefix(seed, sample.id, step as u64);
            values.extend((0..n as u64).map(|i| crate::data::uniform_from(prefix, (((index as u64) << 24 | i) << 16) ^ u64::from(id.0))));
        }
        values
    };
    let leaves = Leaves {
        vars: &[],
        ports: &[],
        spiked: data,
        time: step as f64 * module.dt,
        dt: module.dt,
        net_params: net,
        data: Some(data),
        surrogate_x: None,
        rand: &rand,
    };
    let value = record(&mut tape, &input.exprs, input.value, &leaves, &mut Vec::new());
    let value = tape.v(value).to_vec();
    match input.kind {
        EncoderKind::Current => value,
        EncoderKind::SpikeWhen => value.iter().map(|v| f64::from(u8::from(*v != 0.0))).collect(),
        EncoderKind::SpikeAt => value.iter().map(|v| f64::from(u8::from((v / module.dt).floor() as i64 == step as i64))).collect(),
    }
}

/// Writes every input's encoder output for every step into the trace; an input that does not
/// change over time is encoded once and copied. Rest steps stay silent.
fn encode_all(module: &Module, samples: &[SampleRef], seed: u64, net: &[f64], trace: &mut Trace) {
    for (i, input) in module.inputs.iter().enumerate() {
        let r = trace.batch * trace.input_sizes[i];
        let constant = input.is_constant_over_time();
        for t in 0..module.steps.min(trace.steps) {
            if constant && t > 0 {
                let (done, rest) = trace.inputs[i].split_at_mut(t * r);
                rest[..r].copy_from_slice(&done[..r]);
            } else {
                let values = encode(module, input, i, samples, t, seed, net);
                trace.inputs[i][t * r..(t + 1) * r].copy_from_slice(&values);
            }
        }
    }
}

/// `c[m x n] += a[m x k] b[k x n]` with every operand given by (row stride, column stride),
/// through the `gemm` crate on this thread (1.6-1.75x matrixmultiply on the runtime's shapes:
/// `cargo bench --bench gemm`).
///
/// # Safety
/// The pointers must address matrices of the stated shapes and strides, and `c` must not
/// overlap `a` or `b`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_add(
    m: usize,
    k: usize,
    n: usize,
    a: *const f64,
    rsa: isize,
    csa: isize,
    b: *const f64,
    rsb: isize,
    csb: isize,
    c: *mut f64,
    rsc: isize,
    csc: isize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // SAFETY: forwarded from the caller; `gemm` takes column strides before row strides and
    // computes c = 1 * c + 1 * a b.
    unsafe { gemm::gemm(m, n, k, c, csc, rsc, true, a, csa, rsa, b, csb, rsb, 1.0, 1.0, false, false, false, gemm::Parallelism::None) }
}

/// `y[b, j] += sum_i x[b, i] w[i, j]` for `rows` rows.
pub fn dense(rows: usize, n_pre: usize, n_post: usize, x: &[f64], w: &[f64], y: &mut [f64]) {
    assert!(x.len() >= rows * n_pre && w.len() >= n_pre * n_post && y.len() >= rows * n_post, "GEMM operands have the stated shapes");
    // SAFETY: shapes checked above (x is rows x n_pre, w is n_pre x n_post, y is rows x
    // n_post, all row-major); y is a separate slice.
    unsafe {
        gemm_add(rows, n_pre, n_post, x.as_ptr(), n_pre as isize, 1, w.as_ptr(), n_post as isize, 1, y.as_mut_ptr(), n_post as isize, 1)
    }
}

/// Below this fraction of active inputs, adding one weight row per spike beats a GEMM into
/// `n_post` outputs. Measured with `cargo bench --bench events` (docs/results.md): walking set
/// bits of stored spikes is cheaper than scanning encoder values for nonzeros, and the GEMM is
/// least efficient on narrow outputs.
pub fn event_crossover(n_post: usize, bits: bool) -> f64 {
    match (n_post >= 64, bits) {
        (false, false) => 0.15,
        (false, true) => 0.28,
        (true, false) => 0.30,
        (true, true) => 0.40,
    }
}

/// Event-driven `y += x W` for 0/1 rows of `x`: one weight row added per spike.
pub fn accumulate_events(x: &[f64], w: &[f64], y: &mut [f64], n_pre: usize, n_post: usize) {
    accumulate_row_events(Rows::Values(x), w, y, n_pre, n_post);
}

/// Event-driven `dW += x^T g` for 0/1 rows of `x`: one gradient row added per spike.
pub fn accumulate_event_grads(x: &[f64], g: &[f64], dw: &mut [f64], n_pre: usize, n_post: usize) {
    accumulate_row_event_grads(Rows::Values(x), g, dw, n_pre, n_post);
}

/// The presynaptic rows of a projection: encoder values, or a range of stored spike bits.
#[derive(Clone)]
pub enum Rows<'a> {
    Values(&'a [f64]),
    Bits(&'a Bits, Range<usize>),
}

impl Rows<'_> {
    fn len(&self) -> usize {
        match self {
            Rows::Values(x) => x.len(),
            Rows::Bits(_, range) => range.len(),
        }
    }

    /// Nonzero entries.
    fn active(&self) -> usize {
        match self {
            Rows::Values(x) => x.iter().filter(|v| **v != 0.0).count(),
            Rows::Bits(bits, range) => bits.count(range.clone()),
        }
    }

    /// The rows as values; spike bits are expanded into a pooled buffer (give it back with
    /// [`spare`]).
    fn values(&self) -> std::borrow::Cow<'_, [f64]> {
        match self {
            Rows::Values(x) => std::borrow::Cow::Borrowed(x),
            Rows::Bits(bits, range) => {
                let mut buffer = overwritten(range.len());
                bits.expand_into(range.start, &mut buffer);
                std::borrow::Cow::Owned(buffer)
            }
        }
    }

    /// Calls `f(row, i)` for every nonzero entry, with `n_pre` entries per row.
    fn for_each_event(&self, n_pre: usize, mut f: impl FnMut(usize, usize)) {
        match self {
            Rows::Values(x) => {
                for (k, value) in x.iter().enumerate() {
                    if *value != 0.0 {
                        f(k / n_pre, k % n_pre);
                    }
                }
            }
            Rows::Bits(bits, range) => bits.for_each_set(range.clone(), |k| f(k / n_pre, k % n_pre)),
        }
    }

    /// Whether these 0/1 rows are sparse enough for event-driven accumulation into `n_post`
    /// outputs.
    fn sparse_for(&self, n_post: usize) -> bool {
        (self.active() as f64) < event_crossover(n_post, matches!(self, Rows::Bits(..))) * self.len() as f64
    }
}

fn give_back(values: std::borrow::Cow<'_, [f64]>) {
    if let std::borrow::Cow::Owned(buffer) = values {
        spare([buffer]);
    }
}

/// Event-driven `y += x W` over spike rows: one weight row added per spike.
pub fn accumulate_row_events(x: Rows, w: &[f64], y: &mut [f64], n_pre: usize, n_post: usize) {
    x.for_each_event(n_pre, |r, i| {
        for (a, b) in y[r * n_post..(r + 1) * n_post].iter_mut().zip(&w[i * n_post..(i + 1) * n_post]) {
            *a += b;
        }
    });
}

/// Event-driven `dW += x^T g` over spike rows: one gradient row added per spike.
pub fn accumulate_row_event_grads(x: Rows, g: &[f64], dw: &mut [f64], n_pre: usize, n_post: usize) {
    x.for_each_event(n_pre, |r, i| {
        for (a, b) in dw[i * n_post..(i + 1) * n_post].iter_mut().zip(&g[r * n_post..(r + 1) * n_post]) {
            *a += b;
        }
    });
}

/// `y += x W` over `rows` rows of one projection: a GEMM, event-driven accumulation for
/// sparse spikes, or the connectivity's own loop.
fn project_rows(module: &Module, proj: &ir::Projection, w: &[f64], x: Rows, y: &mut [f64], rows: usize) {
    if rows == 0 {
        return;
    }
    let (n_pre, n_post) = (x.len() / rows, y.len() / rows);
    if proj.connectivity == Connectivity::Dense && module.source_is_binary(proj) && x.sparse_for(n_post) {
        accumulate_row_events(x, w, y, n_pre, n_post);
        return;
    }
    let values = x.values();
    if proj.connectivity == Connectivity::Dense {
        dense(rows, n_pre, n_post, &values, w, y);
    } else {
        let (in_shape, out_shape) = (module.source_shape(&proj.source), &module.population(proj.target).shape);
        for (xr, yr) in values.chunks_exact(n_pre).zip(y.chunks_exact_mut(n_post)) {
            crate::interp::project(&proj.connectivity, w, xr, yr, in_shape, out_shape);
        }
    }
    give_back(values);
}

/// Whether projection `proj` reads an input that is constant over the active steps: its
/// product is computed once per batch and its weight gradient accumulated once.
fn is_hoisted(module: &Module, proj: &ir::Projection) -> bool {
    matches!(&proj.source, Source::Input(id) if module.inputs[id.0 as usize].is_constant_over_time())
}

/// Sums every projection into population `p`'s ports for the steps in `range`. Sources must be
/// written for the steps read: in a feed-forward schedule every earlier population is complete.
fn deliver(module: &Module, params: &Params, p: usize, range: Range<usize>, trace: &mut Trace, hoisted: &mut [Option<Vec<f64>>]) {
    let batch = trace.batch;
    let r_post = trace.row(p);
    let Trace { ports, spikes, inputs, .. } = trace;
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let r_pre = batch * module.source_size(&proj.source);
        let source = |from: usize, to: usize| match &proj.source {
            Source::Input(id) => Rows::Values(&inputs[id.0 as usize][from..to]),
            Source::Population(q) => Rows::Bits(&spikes[q.0 as usize], from..to),
        };
        let w = &params.weights[index];
        let out = &mut ports[p][proj.port.0 as usize];
        if is_hoisted(module, proj) {
            let cached = hoisted[index].get_or_insert_with(|| {
                let mut y = vec![0.0; r_post];
                project_rows(module, proj, w, source(0, r_pre), &mut y, batch);
                y
            });
            for t in range.start..range.end.min(module.steps) {
                for (o, c) in out[t * r_post..(t + 1) * r_post].iter_mut().zip(cached.iter()) {
                    *o += c;
                }
            }
            continue;
        }
        let delay = module.source_delay(proj);
        let t0 = range.start.max(delay);
        if t0 >= range.end {
            continue;
        }
        let x = source((t0 - delay) * r_pre, (range.end - delay) * r_pre);
        project_rows(module, proj, w, x, &mut out[t0 * r_post..range.end * r_post], (range.end - t0) * batch);
    }
}

/// Products of inputs that do not change over time, for a whole batch: per hoisted projection
/// the encoded input `x` and `y = x W` (one row per sample). Computed before the batch is
/// split into shards, so that the GEMM, and in the backward pass the weight gradient, run once
/// over all rows instead of once per shard (the largest GEMMs of a repeat-encoded network).
#[derive(Default)]
pub struct Hoisted {
    pub x: Vec<Option<Vec<f64>>>,
    pub y: Vec<Option<Vec<f64>>>,
}

/// A shard's part of a [`Hoisted`]: the rows from sample `from`.
#[derive(Clone, Copy)]
pub struct HoistedRows<'a> {
    pub hoisted: &'a Hoisted,
    pub from: usize,
}

/// Columns per parallel block of the batch-level GEMMs (fixed, so that results do not depend
/// on the number of threads).
const COLUMN_BLOCK: usize = 128;

/// Raw pointers moved into rayon tasks that write disjoint columns.
#[derive(Clone, Copy)]
struct SendPtr(*mut f64);
// SAFETY: each task writes only its own column block of the output.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

/// `c[m x n] += a[m x k] b[k x n]` with `a` given by strides, `b` and `c` row-major, split into
/// column blocks computed in parallel.
#[allow(clippy::too_many_arguments)]
fn gemm_columns(m: usize, k: usize, n: usize, a: &[f64], rsa: isize, csa: isize, b: &[f64], c: &mut [f64]) {
    use rayon::prelude::*;
    assert!(b.len() >= k * n && c.len() >= m * n, "GEMM operands have the stated shapes");
    let c_ptr = SendPtr(c.as_mut_ptr());
    (0..n.div_ceil(COLUMN_BLOCK)).into_par_iter().for_each(|block| {
        let j0 = block * COLUMN_BLOCK;
        let width = COLUMN_BLOCK.min(n - j0);
        let c_ptr = c_ptr;
        // SAFETY: shapes checked above; every block writes the columns [j0, j0 + width) of c
        // only, so the blocks never overlap.
        unsafe {
            gemm_add(m, k, width, a.as_ptr(), rsa, csa, b.as_ptr().add(j0), n as isize, 1, c_ptr.0.add(j0), n as isize, 1);
        }
    });
}

/// Encodes every time-constant input of the batch and projects it: one GEMM per hoisted dense
/// projection over all the batch's rows.
pub fn hoist(module: &Module, params: &Params, samples: &[SampleRef], seed: u64, net: &[f64]) -> Hoisted {
    let batch = samples.len();
    let mut hoisted = Hoisted { x: vec![None; module.projections.len()], y: vec![None; module.projections.len()] };
    for (index, proj) in module.projections.iter().enumerate() {
        let Source::Input(id) = &proj.source else { continue };
        if !is_hoisted(module, proj) || proj.connectivity != Connectivity::Dense || module.steps == 0 {
            continue;
        }
        let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
        let x = encode(module, &module.inputs[id.0 as usize], id.0 as usize, samples, 0, seed, net);
        let mut y = vec![0.0; batch * n_post];
        gemm_columns(batch, n_pre, n_post, &x, n_pre as isize, 1, &params.weights[index], &mut y);
        hoisted.x[index] = Some(x);
        hoisted.y[index] = Some(y);
    }
    hoisted
}

impl Hoisted {
    /// Adds the weight gradients of the hoisted projections: `dW += X^T G` over the whole batch,
    /// with `G` the shards' summed port adjoints (see [`backward`]) stacked in shard order.
    pub fn weight_grads(&self, module: &Module, shards: &[Vec<Option<Vec<f64>>>], grads: &mut Params) {
        for (index, x) in self.x.iter().enumerate() {
            let Some(x) = x else { continue };
            if !module.projections[index].trainable {
                continue;
            }
            let (n_pre, n_post) =
                (module.source_size(&module.projections[index].source), module.population(module.projections[index].target).size());
            let rows = x.len() / n_pre;
            let mut g = Vec::with_capacity(rows * n_post);
            for shard in shards {
                if let Some(sum) = &shard[index] {
                    g.extend_from_slice(sum);
                }
            }
            if g.len() != rows * n_post {
                continue;
            }
            gemm_columns(n_pre, rows, n_post, x, 1, n_pre as isize, &g, &mut grads.weights[index]);
        }
    }
}

/// How a population's forward step is computed over a batch: recorded on the array tape, or
/// by the JIT's kernel.
#[derive(Clone, Copy)]
pub enum Kernels<'a> {
    Tape,
    Jit(&'a crate::jit::Compiled),
}

impl<'a> Kernels<'a> {
    /// The JIT's kernels when compiled, else the array tape.
    pub fn of(compiled: Option<&'a crate::jit::Compiled>) -> Kernels<'a> {
        compiled.map_or(Kernels::Tape, Kernels::Jit)
    }
}

/// Forward pass over a batch into a [`Trace`]. A feed-forward network runs population by
/// population over all steps (each projection one GEMM over every step's rows); a network
/// with feedback runs step by step.
pub fn run(module: &Module, params: &Params, samples: &[SampleRef], seed: u64, net: &[f64], kernels: Kernels) -> Trace {
    run_with(module, params, samples, seed, net, kernels, None)
}

/// [`run`] with the products of time-constant inputs taken from a batch-level [`Hoisted`].
#[allow(clippy::too_many_arguments)]
pub fn run_with(
    module: &Module,
    params: &Params,
    samples: &[SampleRef],
    seed: u64,
    net: &[f64],
    kernels: Kernels,
    pre: Option<HoistedRows>,
) -> Trace {
    let batch = samples.len();
    let mut trace = Trace::reuse(module, batch);
    for (p, pop) in module.populations.iter().enumerate() {
        let r = trace.row(p);
        for (v, values) in initial_values(pop, p, params, batch, seed, samples).iter().enumerate() {
            trace.states[p][v][..r].copy_from_slice(values);
        }
    }
    encode_all(module, samples, seed, net, &mut trace);
    let steps = trace.steps;
    let mut hoisted: Vec<Option<Vec<f64>>> = vec![None; module.projections.len()];
    if let Some(pre) = pre {
        for (index, y) in pre.hoisted.y.iter().enumerate() {
            if let Some(y) = y {
                let n_post = module.population(module.projections[index].target).size();
                hoisted[index] = Some(y[pre.from * n_post..(pre.from + batch) * n_post].to_vec());
            }
        }
    }
    let mut counters: Vec<Vec<u32>> = (0..module.populations.len()).map(|p| vec![0; trace.row(p)]).collect();
    let forward = |trace: &mut Trace, p: usize, t: usize, counters: &mut [u32]| {
        let pop = &module.populations[p];
        let r = trace.row(p);
        trace.refractory[p][t * r..(t + 1) * r].copy_from_slice(counters);
        match kernels {
            Kernels::Jit(compiled) => compiled.step(module, p, t, trace, counters, net),
            Kernels::Tape => {
                let ctx = PopStep { module, pop, p, step: t, seed, samples, net, surrogate: None };
                let before: Vec<&[f64]> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v)).collect();
                let ports: Vec<&[f64]> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q)).collect();
                let mut tape = ArrayTape::new(r);
                let record = ctx.record(&mut tape, &before, &ports, counters);
                for (v, index) in record.vars_after.iter().enumerate() {
                    trace.states[p][v][(t + 1) * r..(t + 2) * r].copy_from_slice(tape.v(*index));
                }
                trace.store_spikes(t, p, tape.v(record.spike));
                let period = refractory_steps(module, pop, net);
                for (counter, fired) in counters.iter_mut().zip(&record.fired) {
                    if *counter > 0 {
                        *counter -= 1;
                    } else if *fired {
                        *counter = period;
                    }
                }
            }
        }
    };
    if module.is_feed_forward() {
        for p in 0..module.populations.len() {
            deliver(module, params, p, 0..steps, &mut trace, &mut hoisted);
            for t in 0..steps {
                forward(&mut trace, p, t, &mut counters[p]);
            }
        }
    } else {
        for t in 0..steps {
            for p in 0..module.populations.len() {
                deliver(module, params, p, t..t + 1, &mut trace, &mut hoisted);
                forward(&mut trace, p, t, &mut counters[p]);
            }
        }
    }
    trace
}

/// How a population step's adjoint is computed: re-recorded on the array tape, or by the
/// JIT's backward kernel.
#[derive(Clone, Copy)]
pub enum Adjoint<'a> {
    Tape(&'a Surrogate),
    Jit(&'a crate::jit::Compiled),
}

thread_local! {
    static SPARE_BUFFERS: std::cell::RefCell<Vec<Vec<f64>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// One of this thread's spare allocations that holds at least `len` elements.
fn take_spare(len: usize) -> Option<Vec<f64>> {
    SPARE_BUFFERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        let best = pool.iter().position(|b| b.capacity() >= len)?;
        Some(pool.swap_remove(best))
    })
}

/// A zeroed buffer of `len` elements, reusing one of this thread's spare allocations.
pub(crate) fn zeroed(len: usize) -> Vec<f64> {
    let mut buffer = take_spare(len).unwrap_or_default();
    buffer.clear();
    buffer.resize(len, 0.0);
    buffer
}

/// A buffer of `len` elements for a caller that overwrites every element: a spare allocation
/// keeps whatever it held.
pub(crate) fn overwritten(len: usize) -> Vec<f64> {
    let mut buffer = take_spare(len).unwrap_or_default();
    buffer.resize(len, 0.0);
    buffer
}

/// Returns buffers from [`zeroed`] and [`overwritten`] to this thread's pool.
pub(crate) fn spare(buffers: impl IntoIterator<Item = Vec<f64>>) {
    SPARE_BUFFERS.with(|pool| {
        let mut pool = pool.borrow_mut();
        for buffer in buffers {
            if pool.len() < 16 {
                pool.push(buffer);
            }
        }
    });
}

/// The per-batch context of the backward pass.
struct Backward<'a> {
    module: &'a Module,
    params: &'a Params,
    trace: &'a Trace,
    adjoint: Adjoint<'a>,
    samples: &'a [SampleRef<'a>],
    seed: u64,
    net: &'a [f64],
}

impl Backward<'_> {
    /// The adjoint of population `p`'s step `t`: `carry` goes in as d(state after) (without
    /// the readout's part, added here) and comes out as d(state before); the port adjoints are
    /// written to `d_ports`.
    fn step(
        &self,
        p: usize,
        t: usize,
        readout: &ReadoutGrads,
        carry: &mut Vec<Vec<f64>>,
        scratch: &mut Vec<Vec<f64>>,
        d_ports: &mut [&mut [f64]],
    ) {
        let (module, trace) = (self.module, self.trace);
        let pop = &module.populations[p];
        let r = trace.row(p);
        for (v, g) in carry.iter_mut().enumerate() {
            if let Some(readout) = readout.state_at(t, p, v) {
                for (a, b) in g.iter_mut().zip(readout) {
                    *a += b;
                }
            }
        }
        // A population whose spikes no loss or projection reads gets zeros.
        let zeros = readout.spikes_at(t, p).is_none().then(|| zeroed(r));
        let d_spike = readout.spikes_at(t, p).or(zeros.as_deref()).expect("a spike gradient or zeros");
        match self.adjoint {
            Adjoint::Jit(compiled) => {
                compiled.step_adjoint(module, p, t, trace, carry, d_spike, scratch, d_ports, self.net);
                std::mem::swap(carry, scratch);
            }
            Adjoint::Tape(surrogate) => {
                let ctx =
                    PopStep { module, pop, p, step: t, seed: self.seed, samples: self.samples, net: self.net, surrogate: Some(surrogate) };
                let before: Vec<&[f64]> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v)).collect();
                let ports: Vec<&[f64]> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q)).collect();
                let mut tape = ArrayTape::new(r);
                let record = ctx.record(&mut tape, &before, &ports, trace.counters_at(t, p));
                let mut tape_grads: Vec<Vec<f64>> = vec![Vec::new(); tape.ops.len()];
                let mut seed_grad = |slot: usize, g: &[f64]| {
                    let target = &mut tape_grads[slot];
                    if target.is_empty() {
                        target.resize(r, 0.0);
                    }
                    for (a, b) in target.iter_mut().zip(g) {
                        *a += b;
                    }
                };
                for (v, g) in carry.iter().enumerate() {
                    seed_grad(record.vars_after[v], g);
                }
                seed_grad(record.spike, d_spike);
                tape.backward(&mut tape_grads);
                for (v, leaf) in record.var_leaves.iter().enumerate() {
                    let g = std::mem::take(&mut tape_grads[*leaf]);
                    if g.is_empty() {
                        carry[v].iter_mut().for_each(|x| *x = 0.0);
                    } else {
                        carry[v] = g;
                    }
                }
                for (q, leaf) in record.port_leaves.iter().enumerate() {
                    let g = &tape_grads[*leaf];
                    if g.is_empty() {
                        d_ports[q].iter_mut().for_each(|x| *x = 0.0);
                    } else {
                        d_ports[q].copy_from_slice(g);
                    }
                }
            }
        }
        spare(zeros);
    }

    /// Port adjoints of population `p` over the steps in `range` (`g_ports` holds their rows)
    /// to weight gradients and to the spike gradients of source populations.
    fn projections(
        &self,
        p: usize,
        range: Range<usize>,
        g_ports: &[Vec<f64>],
        readout: &mut ReadoutGrads,
        grads: &mut Params,
        hoisted: &mut [Option<Vec<f64>>],
    ) {
        let (module, trace) = (self.module, self.trace);
        let batch = trace.batch;
        let r_post = trace.row(p);
        for (index, proj) in module.projections.iter().enumerate() {
            if proj.target != PopId(p as u32) {
                continue;
            }
            let g = &g_ports[proj.port.0 as usize];
            if is_hoisted(module, proj) {
                let sum = hoisted[index].get_or_insert_with(|| vec![0.0; r_post]);
                for t in range.start..range.end.min(module.steps) {
                    let row = t - range.start;
                    for (s, x) in sum.iter_mut().zip(&g[row * r_post..(row + 1) * r_post]) {
                        *s += x;
                    }
                }
                continue;
            }
            let delay = module.source_delay(proj);
            let t0 = range.start.max(delay);
            if t0 >= range.end {
                continue;
            }
            let r_pre = batch * module.source_size(&proj.source);
            let rows = (range.end - t0) * batch;
            let g = &g[(t0 - range.start) * r_post..(range.end - range.start) * r_post];
            let (from, to) = ((t0 - delay) * r_pre, (range.end - delay) * r_pre);
            let dw = if proj.trainable { Some(grads.weights[index].as_mut_slice()) } else { None };
            match &proj.source {
                Source::Input(id) => {
                    let x = Rows::Values(&trace.inputs[id.0 as usize][from..to]);
                    project_grad(module, index, &self.params.weights[index], x, g, rows, dw, None);
                }
                Source::Population(q) => {
                    let x = Rows::Bits(&trace.spikes[q.0 as usize], from..to);
                    let dx = &mut readout.spikes_mut(q.0 as usize)[from..to];
                    project_grad(module, index, &self.params.weights[index], x, g, rows, dw, Some(dx));
                }
            }
        }
    }
}

/// BPTT over a batch: `readout` holds d loss / d (spikes, states) in the trace's row layout;
/// the weight and parameter gradients are added to `grads`. Returns, per projection from a
/// time-constant input, its port adjoints summed over the active steps; their weight gradient
/// is added here unless `defer_hoisted` (a batch-level [`Hoisted`] adds it for all shards). A feed-forward network is swept
/// population by population (last first), each over all steps in reverse, so that every
/// projection's gradients are one GEMM over all steps; otherwise step by step.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    module: &Module,
    params: &Params,
    trace: &Trace,
    readout: &mut ReadoutGrads,
    grads: &mut Params,
    adjoint: Adjoint,
    samples: &[SampleRef],
    seed: u64,
    net: &[f64],
    defer_hoisted: bool,
) -> Vec<Option<Vec<f64>>> {
    let steps = trace.steps;
    let ctx = Backward { module, params, trace, adjoint, samples, seed, net };
    let buffers = |p: usize, count: usize| -> Vec<Vec<f64>> { (0..count).map(|_| zeroed(trace.row(p))).collect() };
    let mut carry: Vec<Vec<Vec<f64>>> = module.populations.iter().enumerate().map(|(p, pop)| buffers(p, pop.vars.len())).collect();
    let mut scratch: Vec<Vec<Vec<f64>>> = module.populations.iter().enumerate().map(|(p, pop)| buffers(p, pop.vars.len())).collect();
    // Port adjoints of hoisted projections, summed over the active steps: their weight
    // gradient is one GEMM per batch instead of one per step.
    let mut hoisted: Vec<Option<Vec<f64>>> = vec![None; module.projections.len()];
    if module.is_feed_forward() {
        for (p, pop) in module.populations.iter().enumerate().rev() {
            let r = trace.row(p);
            // Every step's adjoint writes all of its row.
            let mut g_ports: Vec<Vec<f64>> = (0..pop.ports.len()).map(|_| overwritten(steps * r)).collect();
            for t in (0..steps).rev() {
                let mut rows: Vec<&mut [f64]> = g_ports.iter_mut().map(|g| &mut g[t * r..(t + 1) * r]).collect();
                ctx.step(p, t, readout, &mut carry[p], &mut scratch[p], &mut rows);
            }
            ctx.projections(p, 0..steps, &g_ports, readout, grads, &mut hoisted);
            spare(g_ports);
        }
    } else {
        for t in (0..steps).rev() {
            for (p, pop) in module.populations.iter().enumerate().rev() {
                let mut g_ports = vec![vec![0.0; trace.row(p)]; pop.ports.len()];
                let mut rows: Vec<&mut [f64]> = g_ports.iter_mut().map(Vec::as_mut_slice).collect();
                ctx.step(p, t, readout, &mut carry[p], &mut scratch[p], &mut rows);
                ctx.projections(p, t..t + 1, &g_ports, readout, grads, &mut hoisted);
            }
        }
    }
    for (index, sum) in hoisted.iter().enumerate() {
        let (Some(g), proj) = (sum, &module.projections[index]) else { continue };
        let Source::Input(id) = &proj.source else { continue };
        if !proj.trainable || defer_hoisted {
            continue;
        }
        // The input is the same at every active step; take it from step 0.
        let x = Rows::Values(trace.input_at(0, id.0 as usize));
        project_grad(module, index, &params.weights[index], x, g, trace.batch, Some(grads.weights[index].as_mut_slice()), None);
    }
    for (p, pop) in module.populations.iter().enumerate() {
        let n = pop.size();
        for (v, var) in pop.vars.iter().enumerate() {
            if let ir::VarKind::Param { trainable: true, per_neuron, .. } = var.kind {
                for (k, g) in carry[p][v].iter().enumerate() {
                    grads.neuron_params[p][v][if per_neuron { k % n } else { 0 }] += g;
                }
            }
        }
    }
    spare(carry.into_iter().chain(scratch).flatten());
    hoisted
}

/// The adjoint of population `p`'s step `t` alone, from d(state after) and d(spike) to
/// (d(state before), d(ports)): what [`backward`] computes at every step, exposed so that the
/// tape and the JIT's derived kernels can be compared step by step.
#[allow(clippy::too_many_arguments)]
pub fn step_adjoint(
    module: &Module,
    params: &Params,
    trace: &Trace,
    adjoint: Adjoint,
    samples: &[SampleRef],
    seed: u64,
    net: &[f64],
    p: usize,
    t: usize,
    d_after: &[Vec<f64>],
    d_spike: &[f64],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let ctx = Backward { module, params, trace, adjoint, samples, seed, net };
    let r = trace.row(p);
    let mut readout = ReadoutGrads::zeros(module, trace.steps, trace.batch);
    readout.spikes_mut(p)[t * r..(t + 1) * r].copy_from_slice(d_spike);
    let mut carry = d_after.to_vec();
    let mut scratch = vec![vec![0.0; r]; carry.len()];
    let mut d_ports = vec![vec![0.0; r]; module.populations[p].ports.len()];
    let mut rows: Vec<&mut [f64]> = d_ports.iter_mut().map(Vec::as_mut_slice).collect();
    ctx.step(p, t, &readout, &mut carry, &mut scratch, &mut rows);
    (carry, d_ports)
}

/// The adjoint of one projection over `rows` rows: `dW += X^T G` and `dX += G W^T`, each only
/// when asked for. Dense projections are GEMMs (the weight gradient event-driven for sparse
/// spikes); others go row by row.
#[allow(clippy::too_many_arguments)]
fn project_grad(module: &Module, index: usize, w: &[f64], x: Rows, g: &[f64], rows: usize, dw: Option<&mut [f64]>, dx: Option<&mut [f64]>) {
    if rows == 0 {
        return;
    }
    let proj = &module.projections[index];
    let (n_pre, n_post) = (x.len() / rows, g.len() / rows);
    if proj.connectivity == Connectivity::Dense {
        if let Some(dx) = dx {
            // SAFETY: row-major shapes: G is rows x n_post, W n_pre x n_post, dX rows x n_pre.
            unsafe {
                let (a, b, c) = (g.as_ptr(), w.as_ptr(), dx.as_mut_ptr());
                gemm_add(rows, n_post, n_pre, a, n_post as isize, 1, b, 1, n_post as isize, c, n_pre as isize, 1);
            }
        }
        let Some(dw) = dw else { return };
        if module.source_is_binary(proj) && x.sparse_for(n_post) {
            accumulate_row_event_grads(x, g, dw, n_pre, n_post);
            return;
        }
        let values = x.values();
        // SAFETY: row-major shapes: X is rows x n_pre, G rows x n_post, dW n_pre x n_post.
        unsafe {
            let (a, b, c) = (values.as_ptr(), g.as_ptr(), dw.as_mut_ptr());
            gemm_add(n_pre, rows, n_post, a, 1, n_pre as isize, b, n_post as isize, 1, c, n_post as isize, 1);
        }
        give_back(values);
        return;
    }
    let values = x.values();
    let (in_shape, out_shape) = (module.source_shape(&proj.source), &module.population(proj.target).shape);
    let mut scratch_w = if dw.is_none() { vec![0.0; w.len()] } else { Vec::new() };
    let mut scratch_x = if dx.is_none() { vec![0.0; values.len()] } else { Vec::new() };
    let dw = dw.unwrap_or(&mut scratch_w);
    let dx = dx.unwrap_or(&mut scratch_x);
    for (r, (xs, gs)) in values.chunks_exact(n_pre).zip(g.chunks_exact(n_post)).enumerate() {
        crate::runtime::project_backward(&proj.connectivity, w, xs, gs, dw, &mut dx[r * n_pre..(r + 1) * n_pre], in_shape, out_shape);
    }
    give_back(values);
}
