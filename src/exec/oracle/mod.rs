//! The reference interpreter of the IR: the oracle the compiled engine is compared with. It is
//! written for clarity, not speed: each expression is evaluated by walking the arena, neuron
//! by neuron, in the precision it is instantiated with (`f32` to compare with the JIT exactly,
//! `f64` for finite differences and statistics).
//!
//! It follows the step semantics in the module doc of [`crate::ir`] exactly, independently of
//! the flattened step graph that the JIT compiles ([`crate::ir::grad`]). Random draws are keyed
//! by (seed, sample, step, node and neuron), so results do not depend on batch composition or
//! thread count. Its gradients come from [`tape`] in [`backward`].

pub mod backward;
pub mod tape;

use crate::exec::kernels::connectivity::project;
use crate::exec::kernels::normalize::l2_normalize_rows;
use crate::exec::real::Real;
use crate::exec::state::{At, Params, ParamsAccess, RandKey, SampleRef, StepHook, Stepping, Trace, input_rng, neuron_rng, rand_draw};
use crate::ir::{self, BinaryOp, EncoderKind, ExprId, Exprs, Global, Module, Node, PopId, Source, UnaryOp, VarId, eval_func};

/// Per-neuron context while evaluating expressions.
pub(crate) struct Ctx<'a, F> {
    pub vars: &'a [F],
    pub ports: &'a [F],
    pub spiked: F,
    pub time: F,
    pub data: F,
    pub net: &'a [F],
    pub dt: F,
    /// The key of `rand()`.
    pub rng: RandKey,
}

/// Expression `id` of a population at one neuron's variables and ports (observables; no spike
/// flag, data or random draws).
pub fn eval_at<F: Real>(exprs: &Exprs, id: ExprId, vars: &[F], ports: &[F], time: F, net: &[F], dt: f64) -> F {
    let ctx = Ctx { vars, ports, spiked: F::zero(), time, data: F::zero(), net, dt: F::of(dt), rng: RandKey::default() };
    eval(exprs, id, &ctx)
}

/// Columns of values an expression reads, one entry per element: what [`eval_columns`]
/// evaluates over. A variable or port the expression does not read may be left empty.
pub struct Columns<'a> {
    pub vars: &'a [Vec<f64>],
    pub ports: &'a [Vec<f64>],
    /// The time of each element.
    pub times: &'a [f64],
    pub net: &'a [f64],
    pub dt: f64,
}

/// `id` evaluated element by element over `columns` (many neurons and steps at once): the
/// operations of `eval`, walking the expression once instead of once per element, with the
/// leaves [`eval_at`] gives (no spike, no data, the draw of the default key).
pub fn eval_columns(exprs: &Exprs, id: ExprId, columns: &Columns) -> Vec<f64> {
    let len = columns.times.len();
    match exprs.get(id) {
        Node::Const(value) => vec![*value; len],
        Node::Var(var) => columns.vars[var.0 as usize].clone(),
        Node::Port(port) => columns.ports[port.0 as usize].clone(),
        Node::Global(global) => match global {
            Global::Dt => vec![columns.dt; len],
            Global::Time => columns.times.to_vec(),
            Global::NetParam(index) => vec![columns.net[*index as usize]; len],
            Global::Spiked | Global::Data => vec![0.0; len],
            Global::Rand | Global::SampleRand => vec![rand_draw::<f64>(RandKey::default(), id); len],
            Global::SurrogateX | Global::Refractory | Global::AdjointAfter(_) | Global::AdjointSpike => vec![f64::NAN; len],
        },
        Node::Unary(op, a) => {
            let mut a = eval_columns(exprs, *a, columns);
            for x in &mut a {
                *x = match op {
                    UnaryOp::Neg => -*x,
                    UnaryOp::Not => truth(*x == 0.0),
                };
            }
            a
        }
        Node::Binary(op, a, b) => {
            let mut a = eval_columns(exprs, *a, columns);
            let b = eval_columns(exprs, *b, columns);
            for (x, y) in a.iter_mut().zip(&b) {
                *x = ir::eval_binary(*op, *x, *y).unwrap_or(f64::NAN);
            }
            a
        }
        Node::Call(func, args) => {
            let args: Vec<Vec<f64>> = args.iter().map(|a| eval_columns(exprs, *a, columns)).collect();
            let mut values = vec![0.0; args.len()];
            (0..len)
                .map(|k| {
                    values.iter_mut().zip(&args).for_each(|(v, a)| *v = a[k]);
                    eval_func(*func, &values).unwrap_or(f64::NAN)
                })
                .collect()
        }
    }
}

/// The oracle's one expression evaluator.
pub(crate) fn eval<F: Real>(exprs: &Exprs, id: ExprId, ctx: &Ctx<F>) -> F {
    match exprs.get(id) {
        Node::Const(value) => F::of(*value),
        Node::Var(var) => ctx.vars[var.0 as usize],
        Node::Port(port) => ctx.ports[port.0 as usize],
        Node::Global(global) => match global {
            Global::Dt => ctx.dt,
            Global::Time => ctx.time,
            Global::Spiked => ctx.spiked,
            Global::Rand => rand_draw(ctx.rng, id),
            Global::SampleRand => rand_draw(RandKey { prefix: ctx.rng.sample_prefix, ..ctx.rng }, id),
            Global::Data => ctx.data,
            Global::NetParam(index) => ctx.net[*index as usize],
            // Leaves of derived backward steps (crate::ir::grad) and of surrogates: not neuron state.
            Global::SurrogateX | Global::Refractory | Global::AdjointAfter(_) | Global::AdjointSpike => F::nan(),
        },
        Node::Unary(op, a) => {
            let a = eval(exprs, *a, ctx);
            match op {
                UnaryOp::Neg => -a,
                UnaryOp::Not => truth(a == F::zero()),
            }
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (eval(exprs, *a, ctx), eval(exprs, *b, ctx));
            ir::eval_binary(*op, a, b).unwrap_or(F::nan())
        }
        Node::Call(func, args) => {
            let values: Vec<F> = args.iter().map(|a| eval(exprs, *a, ctx)).collect();
            eval_func(*func, &values).unwrap_or(F::nan())
        }
    }
}

fn truth<F: Real>(condition: bool) -> F {
    if condition { F::one() } else { F::zero() }
}

/// Runs a batch through `steps + rest_steps` steps and returns the trace. `hook` runs after
/// every population's step and may read or overwrite what it wrote (records, clamps) and,
/// when the parameters are given mutably, change them.
pub fn run<F: Real>(
    module: &Module,
    params: ParamsAccess<F>,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
    hook: Option<&mut dyn StepHook<F>>,
) -> Trace<F> {
    let mut stepping = Stepping::begin(module, params.get(), samples, seed, module.steps + module.rest_steps);
    let steps = stepping.trace.steps;
    advance(module, params, samples, seed, net, &mut stepping, steps, hook);
    stepping.trace
}

/// Runs `stepping` on to step `until`, step by step (steps are absolute; the trace holds them
/// from its `offset`).
#[allow(clippy::too_many_arguments)]
pub fn advance<F: Real>(
    module: &Module,
    mut params: ParamsAccess<F>,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
    stepping: &mut Stepping<F>,
    until: usize,
    mut hook: Option<&mut dyn StepHook<F>>,
) {
    let Stepping { trace, done, counters, .. } = stepping;
    let offset = trace.offset;
    let end = until.min(offset + trace.steps);
    for step in *done..end {
        let at = At { step, row: step - offset };
        for (i, input) in module.inputs.iter().enumerate() {
            let values = encode(module, input, i, samples, step, seed, net);
            let r = values.len();
            trace.inputs[i][at.row * r..(at.row + 1) * r].copy_from_slice(&values);
        }
        if let Some(hook) = hook.as_deref_mut() {
            hook.before_step(at, trace);
        }
        for (p, counters) in counters.iter_mut().enumerate() {
            let r = trace.row(p);
            trace.refractory[p][at.row * r..(at.row + 1) * r].copy_from_slice(counters);
            let ports = deliver(module, params.get(), trace, p, at.row);
            for (port, values) in ports.iter().enumerate() {
                trace.ports[p][port][at.row * r..(at.row + 1) * r].copy_from_slice(values);
            }
            step_population(module, trace, counters, p, at, seed, samples, net);
            if let Some(hook) = hook.as_deref_mut() {
                hook.after_population(at, p, trace, params.get_mut());
            }
        }
    }
    *done = (*done).max(end);
}

/// Encoder `index`'s output for every sample of the batch in one step; silent during rest.
fn encode<F: Real>(module: &Module, input: &ir::Input, index: usize, samples: &[SampleRef], step: usize, seed: u64, net: &[F]) -> Vec<F> {
    let n: usize = input.shape.iter().product();
    let mut out = vec![F::zero(); samples.len() * n];
    if step >= module.steps {
        return out;
    }
    let dt = F::of(module.dt);
    // An input that reads `events` reads this step's block of the sample's features.
    let offset = if input.per_step { step * n } else { 0 };
    for (b, sample) in samples.iter().enumerate() {
        for i in 0..n {
            let ctx = Ctx {
                vars: &[],
                ports: &[],
                spiked: F::zero(),
                time: F::of(step as f64 * module.dt),
                data: F::of(f64::from(sample.features.get(offset + i).copied().unwrap_or(0.0))),
                net,
                dt,
                rng: input_rng(seed, sample.id, step, index, i),
            };
            let value = eval(&input.exprs, input.value, &ctx);
            out[b * n + i] = match input.kind {
                EncoderKind::Current => value,
                EncoderKind::SpikeWhen => truth(value != F::zero()),
                // One spike in the step whose interval [t, t + dt) holds the spike time.
                EncoderKind::SpikeAt => truth((value / dt).floor() == F::of(step as f64)),
            };
        }
    }
    out
}

/// Sums every projection into population `p`'s ports at trace row `step`: `ports[port][b * n + j]`.
/// Sources come from the trace: this step's for earlier populations without delay, `delay`
/// steps back otherwise (feedback edges at least one).
fn deliver<F: Real>(module: &Module, params: &Params<F>, trace: &Trace<F>, p: usize, step: usize) -> Vec<Vec<F>> {
    let pop = &module.populations[p];
    let (batch, n_post) = (trace.batch, pop.size());
    let mut ports = vec![vec![F::zero(); batch * n_post]; pop.ports.len()];
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let Some(source) = source_values(module, proj, trace, step) else { continue };
        let n_pre = module.source_size(&proj.source);
        let out = &mut ports[proj.port.0 as usize];
        for b in 0..batch {
            let x = &source[b * n_pre..(b + 1) * n_pre];
            let y = &mut out[b * n_post..(b + 1) * n_post];
            project(&proj.connectivity, &params.weights[index], x, y, module.source_shape(&proj.source), &pop.shape);
        }
    }
    ports
}

/// What projection `proj` carries at `step`, `batch x n_pre`: an input's value or spikes
/// `delay` steps back, or a state after the source's step `step - delay` (normalised if the
/// connection says so). `None` before the source has a value.
pub(crate) fn source_values<F: Real>(module: &Module, proj: &ir::Projection, trace: &Trace<F>, step: usize) -> Option<Vec<F>> {
    if let Source::State(s) = &proj.source {
        let row = module.state_source_row(proj, step)?;
        let mut values = trace.state_before(row, s.pop.0 as usize, s.var.0 as usize).to_vec();
        if s.l2_normalize {
            l2_normalize_rows(&mut values, module.population(s.pop).size());
        }
        return Some(values);
    }
    let source_step = step.checked_sub(module.source_delay(proj))?;
    Some(match &proj.source {
        Source::Input(id) => trace.input_at(source_step, id.0 as usize).to_vec(),
        Source::Population(id) => trace.spikes_at(source_step, id.0 as usize),
        Source::State(_) => unreachable!("handled above"),
    })
}

/// Advances population `p` by step `at.step` for the whole batch: reads the state row `at.row`
/// and the ports of the trace, writes the state row `at.row + 1` and the spikes.
#[allow(clippy::too_many_arguments)]
fn step_population<F: Real>(
    module: &Module,
    trace: &mut Trace<F>,
    counters: &mut [u32],
    p: usize,
    at: At,
    seed: u64,
    samples: &[SampleRef],
    net: &[F],
) {
    let (step, row) = (at.step, at.row);
    let pop = &module.populations[p];
    let n = pop.size();
    let r = trace.row(p);
    let dt = F::of(module.dt);
    let time = F::of(step as f64 * module.dt);
    let mut spikes = vec![F::zero(); r];
    let refractory_steps = refractory_steps(module, pop, net);
    let held: Vec<VarId> = pop.held_while_refractory();
    let mut after: Vec<Vec<F>> = vec![vec![F::zero(); r]; pop.vars.len()];
    for k in 0..r {
        let before: Vec<F> = (0..pop.vars.len()).map(|v| trace.state_before(row, p, v)[k]).collect();
        let ports: Vec<F> = (0..pop.ports.len()).map(|q| trace.port_at(row, p, q)[k]).collect();
        let neuron = Neuron { ports: &ports, time, net, dt, rng: neuron_rng(seed, samples[k / n].id, step, p, k % n) };
        let mut vars = before.clone();
        let apply = |updates: &[ir::Update], vars: &mut Vec<F>, spiked: F| {
            for update in updates {
                let value = eval(&pop.exprs, update.value, &neuron.ctx(vars, spiked));
                vars[update.var.0 as usize] = value;
            }
        };
        // (3a) input jumps: a jump applies when its port received input this step; an additive
        // one (`x += c * input`) every step, since adding zero changes nothing.
        for jump in &pop.input_jumps {
            if jump.additive || ports[jump.port.0 as usize] != F::zero() {
                apply(&jump.updates, &mut vars, F::zero());
            }
        }
        // (3b) continuous dynamics, all right-hand sides on the state before integration.
        let snapshot = vars.clone();
        for (update, _) in &pop.dynamics {
            vars[update.var.0 as usize] = eval(&pop.exprs, update.value, &neuron.ctx(&snapshot, F::zero()));
        }
        // (3c) per-step updates, in order.
        apply(&pop.updates, &mut vars, F::zero());
        // (3d) threshold, unless refractory; variables reset on a spike are held meanwhile.
        let counter = &mut counters[k];
        let mut spiked = F::zero();
        if *counter > 0 {
            *counter -= 1;
            for var in &held {
                vars[var.0 as usize] = before[var.0 as usize];
            }
        } else if let Some(threshold) = &pop.threshold {
            let c = neuron.ctx(&vars, F::zero());
            let (lhs, rhs) = (eval(&pop.exprs, threshold.lhs, &c), eval(&pop.exprs, threshold.rhs, &c));
            let fired = if threshold.op == BinaryOp::Ge { lhs >= rhs } else { lhs > rhs };
            if fired {
                spiked = F::one();
                apply(&pop.on_spike, &mut vars, F::one());
                *counter = refractory_steps;
            }
        }
        // (3e) updates after the spike test.
        apply(&pop.after_spike, &mut vars, spiked);
        spikes[k] = spiked;
        for (v, value) in vars.iter().enumerate() {
            after[v][k] = *value;
        }
    }
    for (v, values) in after.iter().enumerate() {
        trace.states[p][v][(row + 1) * r..(row + 2) * r].copy_from_slice(values);
    }
    trace.store_spikes(row, p, &spikes);
}

/// What one neuron's expressions read in one step besides its variables.
struct Neuron<'a, F> {
    ports: &'a [F],
    time: F,
    net: &'a [F],
    dt: F,
    rng: RandKey,
}

impl<F: Real> Neuron<'_, F> {
    fn ctx<'v>(&'v self, vars: &'v [F], spiked: F) -> Ctx<'v, F> {
        Ctx { vars, ports: self.ports, spiked, time: self.time, data: F::zero(), net: self.net, dt: self.dt, rng: self.rng }
    }
}

/// A population's refractory period in whole steps, for the network parameters `net`.
fn refractory_steps<F: Real>(module: &Module, pop: &ir::Population, net: &[F]) -> u32 {
    let net: Vec<f64> = net.iter().map(|x| x.into_f64()).collect();
    module.refractory_steps(pop, &net)
}
