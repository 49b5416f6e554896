//! The batched back end: the same semantics as [`crate::interp`], with every IR node evaluated
//! over whole batch rows at once and dense projections through a GEMM (matrixmultiply). BPTT
//! re-records each population step on an array tape from the stored state and sweeps it
//! backwards; weight gradients are GEMMs of presynaptic spikes with port adjoints.
//!
//! This is the runtime the JIT kernels plug into: the per-population elementwise work is the
//! part a compiled kernel replaces; GEMM, the time loop and the BPTT bookkeeping stay.

use std::rc::Rc;

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
    fn record(&self, tape: &mut ArrayTape, before: &[Vec<f64>], ports: &[Vec<f64>], counters: &[u32]) -> StepRecord {
        let (pop, dt) = (self.pop, self.module.dt);
        let time = self.step as f64 * dt;
        let var_leaves: Vec<usize> = before.iter().map(|v| tape.leaf(v.clone())).collect();
        let port_leaves: Vec<usize> = ports.iter().map(|v| tape.leaf(v.clone())).collect();
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
    let data: Vec<f64> = (0..len).map(|k| f64::from(samples[k / n].features.get(k % n).copied().unwrap_or(0.0))).collect();
    let data = tape.leaf(data);
    let rand = |id: ExprId| -> Vec<f64> {
        (0..len).map(|k| rand_draw((seed, samples[k / n].id, step as u64, ((index as u64) << 24) | (k % n) as u64), id)).collect()
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

/// `y[b, j] += sum_i x[b, i] w[i, j]` for the whole batch.
fn dense(batch: usize, n_pre: usize, n_post: usize, x: &[f64], w: &[f64], y: &mut [f64]) {
    // SAFETY: the slices have the stated row-major shapes: x is batch x n_pre, w is
    // n_pre x n_post, y is batch x n_post.
    unsafe {
        matrixmultiply::dgemm(
            batch,
            n_pre,
            n_post,
            1.0,
            x.as_ptr(),
            n_pre as isize,
            1,
            w.as_ptr(),
            n_post as isize,
            1,
            1.0,
            y.as_mut_ptr(),
            n_post as isize,
            1,
        );
    }
}

fn source_of<'t>(
    proj: &ir::Projection,
    p: usize,
    t: usize,
    inputs: &'t [Vec<f64>],
    this_step: &'t [Vec<f64>],
    spikes: &'t [Vec<Vec<f64>>],
) -> Option<&'t [f64]> {
    match &proj.source {
        Source::Input(id) => Some(&inputs[id.0 as usize]),
        Source::Population(id) => {
            let q = id.0 as usize;
            if proj.delay_steps == 0 && q < p {
                Some(&this_step[q])
            } else {
                let delay = proj.delay_steps.max(1);
                t.checked_sub(delay).map(|ts| spikes[ts][q].as_slice())
            }
        }
    }
}

/// Forward pass over a batch; the trace has the same layout as [`crate::interp::run`]'s.
pub fn run(module: &Module, params: &Params, samples: &[SampleRef], seed: u64, net: &[f64]) -> Trace {
    let batch = samples.len();
    // Projections of inputs that do not change over time, computed once per batch.
    let mut hoisted: Vec<Option<Vec<f64>>> = vec![None; module.projections.len()];
    let mut values: Vec<Vec<Vec<f64>>> =
        module.populations.iter().enumerate().map(|(p, pop)| initial_values(pop, p, params, batch, seed, samples)).collect();
    let mut counters: Vec<Vec<u32>> = module.populations.iter().map(|pop| vec![0; pop.size() * batch]).collect();
    let refractory: Vec<u32> = module.populations.iter().map(|pop| refractory_steps(module, pop, net)).collect();
    let mut trace = Trace { initial: values.clone(), ..Trace::default() };
    for step in 0..module.steps + module.rest_steps {
        let inputs: Vec<Vec<f64>> =
            module.inputs.iter().enumerate().map(|(i, input)| encode(module, input, i, samples, step, seed, net)).collect();
        trace.refractory.push(counters.clone());
        let mut step_spikes: Vec<Vec<f64>> = Vec::new();
        let mut step_ports = Vec::new();
        for (p, pop) in module.populations.iter().enumerate() {
            let ports = deliver(module, params, p, step, &inputs, &step_spikes, &trace.spikes, batch, &mut hoisted);
            let ctx = PopStep { module, pop, p, step, seed, samples, net, surrogate: None };
            let mut tape = ArrayTape::new(batch * pop.size());
            let record = ctx.record(&mut tape, &values[p], &ports, &counters[p]);
            for (v, index) in record.vars_after.iter().enumerate() {
                values[p][v] = tape.v(*index).to_vec();
            }
            for (k, counter) in counters[p].iter_mut().enumerate() {
                if *counter > 0 {
                    *counter -= 1;
                } else if record.fired[k] {
                    *counter = refractory[p];
                }
            }
            step_spikes.push(tape.v(record.spike).to_vec());
            step_ports.push(ports);
        }
        trace.states.push(values.clone());
        trace.spikes.push(step_spikes);
        trace.ports.push(step_ports);
        trace.inputs.push(inputs);
    }
    trace
}

/// Whether projection `proj` reads an input that is constant over the active steps.
fn is_hoisted(module: &Module, proj: &ir::Projection, t: usize) -> bool {
    t < module.steps && matches!(&proj.source, Source::Input(id) if module.inputs[id.0 as usize].is_constant_over_time())
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn deliver(
    module: &Module,
    params: &Params,
    p: usize,
    t: usize,
    inputs: &[Vec<f64>],
    this_step: &[Vec<f64>],
    spikes: &[Vec<Vec<f64>>],
    batch: usize,
    hoisted: &mut [Option<Vec<f64>>],
) -> Vec<Vec<f64>> {
    let pop = &module.populations[p];
    let n_post = pop.size();
    let mut ports = vec![vec![0.0; batch * n_post]; pop.ports.len()];
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let Some(source) = source_of(proj, p, t, inputs, this_step, spikes) else { continue };
        let n_pre = module.source_size(&proj.source);
        let out = &mut ports[proj.port.0 as usize];
        if is_hoisted(module, proj, t) {
            let cached = hoisted[index].get_or_insert_with(|| {
                let mut y = vec![0.0; batch * n_post];
                project_batch(module, proj, &params.weights[index], source, &mut y, batch, n_pre, n_post, &pop.shape);
                y
            });
            for (o, c) in out.iter_mut().zip(cached.iter()) {
                *o += c;
            }
            continue;
        }
        project_batch(module, proj, &params.weights[index], source, out, batch, n_pre, n_post, &pop.shape);
    }
    ports
}

#[allow(clippy::too_many_arguments)]
fn project_batch(
    module: &Module,
    proj: &ir::Projection,
    w: &[f64],
    source: &[f64],
    out: &mut [f64],
    batch: usize,
    n_pre: usize,
    n_post: usize,
    out_shape: &[usize],
) {
    {
        if proj.connectivity == Connectivity::Dense {
            dense(batch, n_pre, n_post, source, w, out);
        } else {
            let in_shape = module.source_shape(&proj.source);
            for b in 0..batch {
                crate::interp::project(
                    &proj.connectivity,
                    w,
                    &source[b * n_pre..(b + 1) * n_pre],
                    &mut out[b * n_post..(b + 1) * n_post],
                    in_shape,
                    out_shape,
                );
            }
        }
    }
}

/// BPTT over a batch: `readout` holds d loss / d (spikes, states) per step in batch layout;
/// the weight and parameter gradients are added to `grads`.
#[allow(clippy::too_many_arguments)]
/// How a population step's adjoint is computed: re-recorded on the array tape, or by the
/// JIT's backward kernel.
#[derive(Clone, Copy)]
pub enum Adjoint<'a> {
    Tape(&'a Surrogate),
    Jit(&'a crate::jit::Compiled),
}

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
) {
    let batch = samples.len();
    let steps = trace.spikes.len();
    let mut carry: Vec<Vec<Vec<f64>>> = module.populations.iter().map(|p| vec![vec![0.0; p.size() * batch]; p.vars.len()]).collect();
    // Port adjoints of hoisted projections, summed over the active steps: their weight
    // gradient is one GEMM per batch instead of one per step.
    let mut hoisted_grads: Vec<Option<Vec<f64>>> = vec![None; module.projections.len()];
    for t in (0..steps).rev() {
        for (p, pop) in module.populations.iter().enumerate().rev() {
            let len = pop.size() * batch;
            let before = if t == 0 { &trace.initial[p] } else { &trace.states[t - 1][p] };
            let d_after: Vec<Vec<f64>> =
                (0..pop.vars.len()).map(|v| carry[p][v].iter().zip(&readout.states[t][p][v]).map(|(a, b)| a + b).collect()).collect();
            let (d_before, port_grads) = match adjoint {
                Adjoint::Tape(surrogate) => {
                    let ctx = PopStep { module, pop, p, step: t, seed, samples, net, surrogate: Some(surrogate) };
                    let mut tape = ArrayTape::new(len);
                    let record = ctx.record(&mut tape, before, &trace.ports[t][p], &trace.refractory[t][p]);
                    let mut tape_grads: Vec<Vec<f64>> = vec![Vec::new(); tape.ops.len()];
                    let mut seed_grad = |slot: usize, g: &[f64]| {
                        let target = &mut tape_grads[slot];
                        if target.is_empty() {
                            target.resize(len, 0.0);
                        }
                        for (a, b) in target.iter_mut().zip(g) {
                            *a += b;
                        }
                    };
                    for v in 0..pop.vars.len() {
                        seed_grad(record.vars_after[v], &d_after[v]);
                    }
                    seed_grad(record.spike, &readout.spikes[t][p]);
                    tape.backward(&mut tape_grads);
                    let d_before: Vec<Vec<f64>> = record
                        .var_leaves
                        .iter()
                        .map(|l| {
                            let g = std::mem::take(&mut tape_grads[*l]);
                            if g.is_empty() { vec![0.0; len] } else { g }
                        })
                        .collect();
                    let ports: Vec<Vec<f64>> = record.port_leaves.iter().map(|l| std::mem::take(&mut tape_grads[*l])).collect();
                    (d_before, ports)
                }
                Adjoint::Jit(compiled) => compiled.step_adjoint(
                    module,
                    p,
                    t,
                    before,
                    &trace.ports[t][p],
                    &trace.refractory[t][p],
                    &d_after,
                    &readout.spikes[t][p],
                    net,
                ),
            };
            carry[p] = d_before;
            for (index, proj) in module.projections.iter().enumerate() {
                if proj.target != PopId(p as u32) {
                    continue;
                }
                let g = &port_grads[proj.port.0 as usize];
                if g.is_empty() {
                    continue;
                }
                if is_hoisted(module, proj, t) {
                    let sum = hoisted_grads[index].get_or_insert_with(|| vec![0.0; g.len()]);
                    for (s, x) in sum.iter_mut().zip(g) {
                        *s += x;
                    }
                    continue;
                }
                let (source, spike_step): (&[f64], Option<(usize, usize)>) = match &proj.source {
                    Source::Input(id) => (&trace.inputs[t][id.0 as usize], None),
                    Source::Population(id) => {
                        let q = id.0 as usize;
                        let delay = if proj.delay_steps == 0 && q < p { 0 } else { proj.delay_steps.max(1) };
                        match t.checked_sub(delay) {
                            Some(ts) => (&trace.spikes[ts][q], Some((ts, q))),
                            None => continue,
                        }
                    }
                };
                let n_pre = module.source_size(&proj.source);
                let mut g_source = vec![0.0; batch * n_pre];
                let dw = if proj.trainable { Some(grads.weights[index].as_mut_slice()) } else { None };
                let dx = if spike_step.is_some() { Some(g_source.as_mut_slice()) } else { None };
                project_grad(module, index, &params.weights[index], source, g, batch, dw, dx);
                if let Some((ts, q)) = spike_step {
                    for (slot, value) in readout.spikes[ts][q].iter_mut().zip(&g_source) {
                        *slot += value;
                    }
                }
            }
        }
    }
    for (index, sum) in hoisted_grads.iter().enumerate() {
        let (Some(g), proj) = (sum, &module.projections[index]) else { continue };
        let Source::Input(id) = &proj.source else { continue };
        if !proj.trainable {
            continue;
        }
        // The input is the same at every active step; take it from step 0.
        let source = &trace.inputs[0][id.0 as usize];
        project_grad(module, index, &params.weights[index], source, g, batch, Some(grads.weights[index].as_mut_slice()), None);
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
}

/// The adjoint of one projection over a batch: `dW += X^T G` and `dX = G W^T`, each only when
/// asked for. Dense projections are GEMMs; others go sample by sample.
#[allow(clippy::too_many_arguments)]
fn project_grad(
    module: &Module,
    index: usize,
    w: &[f64],
    x: &[f64],
    g: &[f64],
    batch: usize,
    dw: Option<&mut [f64]>,
    dx: Option<&mut [f64]>,
) {
    let proj = &module.projections[index];
    let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
    if proj.connectivity == Connectivity::Dense {
        // SAFETY: row-major shapes: X is batch x n_pre, G batch x n_post, W and dW n_pre x
        // n_post, dX batch x n_pre.
        unsafe {
            if let Some(dw) = dw {
                let (a, b, c) = (x.as_ptr(), g.as_ptr(), dw.as_mut_ptr());
                matrixmultiply::dgemm(n_pre, batch, n_post, 1.0, a, 1, n_pre as isize, b, n_post as isize, 1, 1.0, c, n_post as isize, 1);
            }
            if let Some(dx) = dx {
                let (a, b, c) = (g.as_ptr(), w.as_ptr(), dx.as_mut_ptr());
                matrixmultiply::dgemm(batch, n_post, n_pre, 1.0, a, n_post as isize, 1, b, 1, n_post as isize, 1.0, c, n_pre as isize, 1);
            }
        }
        return;
    }
    let (in_shape, out_shape) = (module.source_shape(&proj.source), &module.population(proj.target).shape);
    let mut scratch_w = if dw.is_none() { vec![0.0; w.len()] } else { Vec::new() };
    let mut scratch_x = if dx.is_none() { vec![0.0; x.len()] } else { Vec::new() };
    let dw = dw.unwrap_or(&mut scratch_w);
    let dx = dx.unwrap_or(&mut scratch_x);
    for b in 0..batch {
        let (xs, gs) = (&x[b * n_pre..(b + 1) * n_pre], &g[b * n_post..(b + 1) * n_post]);
        crate::runtime::project_backward(&proj.connectivity, w, xs, gs, dw, &mut dx[b * n_pre..(b + 1) * n_pre], in_shape, out_shape);
    }
}

/// One sample's slice of a batch trace (spikes and states), for the loss graph.
pub fn sample_trace(module: &Module, trace: &Trace, b: usize) -> Trace {
    let sizes: Vec<usize> = module.populations.iter().map(Population::size).collect();
    Trace {
        spikes: trace
            .spikes
            .iter()
            .map(|s| s.iter().enumerate().map(|(p, x)| x[b * sizes[p]..(b + 1) * sizes[p]].to_vec()).collect())
            .collect(),
        states: trace
            .states
            .iter()
            .map(|s| {
                s.iter().enumerate().map(|(p, vars)| vars.iter().map(|x| x[b * sizes[p]..(b + 1) * sizes[p]].to_vec()).collect()).collect()
            })
            .collect(),
        ..Trace::default()
    }
}
