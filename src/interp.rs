//! The reference interpreter of the IR, in f64: the oracle every other back end is compared
//! with. It is written for clarity, not speed: each expression is evaluated by walking the
//! arena, neuron by neuron.
//!
//! It follows the step semantics in the module doc of [`crate::ir`] exactly. Random draws come
//! from [`crate::data::uniform`] keyed by (seed, sample, step, node and neuron), so results do
//! not depend on batch composition or thread count.

use crate::data::uniform;
use crate::ir::{
    self, BinaryOp, Connectivity, EncoderKind, ExprId, Exprs, Global, Init, Module, Node, PopId, Population, Source, UnaryOp, VarId,
    VarKind, eval_func,
};

/// The values a model learns or is given: weights per projection and per-neuron parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    /// Row-major, laid out as [`ir::Projection::weight_shape`].
    pub weights: Vec<Vec<f64>>,
    /// For each population and variable: per-neuron values of parameters that are variables
    /// (trainable or per-neuron); empty for states.
    pub neuron_params: Vec<Vec<Vec<f64>>>,
}

/// Draws the initial parameters. Weight `k` of projection `p` uses draw (seed, p, k).
pub fn init_params(module: &Module, seed: u64) -> Params {
    let weights = module
        .projections
        .iter()
        .enumerate()
        .map(|(p, proj)| {
            let count: usize = proj.weight_shape.iter().product();
            let (fan_in, fan_out) = fans(module, proj);
            (0..count).map(|k| draw(&proj.init, seed, 1 + p as u64, k as u64, fan_in, fan_out)).collect()
        })
        .collect();
    let neuron_params = module
        .populations
        .iter()
        .enumerate()
        .map(|(p, pop)| {
            pop.vars
                .iter()
                .enumerate()
                .map(|(v, var)| match &var.kind {
                    VarKind::Param { value, per_neuron, .. } => {
                        let n = if *per_neuron { pop.size() } else { 1 };
                        let stream = 1_000_000 + (p as u64) * 1000 + v as u64;
                        (0..n).map(|k| draw(value, seed, stream, k as u64, 1, 1)).collect()
                    }
                    VarKind::State { .. } => Vec::new(),
                })
                .collect()
        })
        .collect();
    Params { weights, neuron_params }
}

fn fans(module: &Module, proj: &ir::Projection) -> (usize, usize) {
    match &proj.connectivity {
        Connectivity::Dense | Connectivity::AllToAllButSelf => (module.source_size(&proj.source), module.population(proj.target).size()),
        Connectivity::OneToOne => (1, 1),
        Connectivity::Conv2d { kernel, .. } | Connectivity::ConvTranspose2d { kernel, .. } => {
            let [out_c, in_c, ..] = proj.weight_shape[..] else { return (1, 1) };
            (in_c * kernel * kernel, out_c * kernel * kernel)
        }
    }
}

fn draw(init: &Init, seed: u64, stream: u64, index: u64, fan_in: usize, fan_out: usize) -> f64 {
    let u = |k: u64| uniform(seed, stream, index, k);
    let normal = || (-2.0 * u(1).max(f64::MIN_POSITIVE).ln()).sqrt() * (2.0 * std::f64::consts::PI * u(2)).cos();
    match init {
        Init::Const(value) => *value,
        Init::Uniform { low, high } => low + (high - low) * u(0),
        Init::Normal { mean, std } => mean + std * normal(),
        Init::KaimingNormal => normal() * (2.0 / fan_in as f64).sqrt(),
        Init::XavierUniform => {
            let a = (6.0 / (fan_in + fan_out) as f64).sqrt();
            -a + 2.0 * a * u(0)
        }
    }
}

thread_local! {
    static SPARE_TRACES: std::cell::RefCell<Vec<Trace>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// What a run keeps of every step, stored flat per population so that the rows of all steps
/// are contiguous (one GEMM can read or write a projection over every step at once).
///
/// The rows of step `t` for a population of `n` neurons are `[t * batch * n, (t + 1) * batch * n)`,
/// sample `b`'s part of a row is `[b * n, (b + 1) * n)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace {
    pub steps: usize,
    pub batch: usize,
    /// Neurons per population.
    pub sizes: Vec<usize>,
    /// `spikes[pop]`, one bit per neuron, one row per step.
    pub spikes: Vec<crate::bits::Bits>,
    /// `states[pop][var]` with `steps + 1` rows: row 0 holds the state before the first step,
    /// row `t + 1` the state after step `t` (parameters hold their values).
    pub states: Vec<Vec<Vec<f64>>>,
    /// What the backward pass needs besides states: `ports[pop][port]`, one row per step.
    pub ports: Vec<Vec<Vec<f64>>>,
    /// Refractory counters before each step, `refractory[pop]`, one row per step.
    pub refractory: Vec<Vec<u32>>,
    /// Encoder outputs, `inputs[input]`, one row per step.
    pub inputs: Vec<Vec<f64>>,
    pub input_sizes: Vec<usize>,
}

impl Trace {
    /// A zeroed trace for `batch` samples over the module's `steps + rest_steps` steps.
    pub fn new(module: &Module, batch: usize) -> Trace {
        let steps = module.steps + module.rest_steps;
        let sizes: Vec<usize> = module.populations.iter().map(Population::size).collect();
        let input_sizes: Vec<usize> = module.inputs.iter().map(|i| i.shape.iter().product()).collect();
        Trace {
            steps,
            batch,
            spikes: sizes.iter().map(|n| crate::bits::Bits::zeros(steps * batch * n)).collect(),
            states: module
                .populations
                .iter()
                .zip(&sizes)
                .map(|(pop, n)| vec![vec![0.0; (steps + 1) * batch * n]; pop.vars.len()])
                .collect(),
            ports: module.populations.iter().zip(&sizes).map(|(pop, n)| vec![vec![0.0; steps * batch * n]; pop.ports.len()]).collect(),
            refractory: sizes.iter().map(|n| vec![0; steps * batch * n]).collect(),
            inputs: input_sizes.iter().map(|n| vec![0.0; steps * batch * n]).collect(),
            sizes,
            input_sizes,
        }
    }

    /// A trace for a batch on a pooled back end: a spare trace of the same shape left by
    /// [`Trace::recycle`] on this thread is reused (its ports zeroed, everything else is
    /// overwritten by a run), which saves allocating and faulting in tens of megabytes per
    /// shard.
    pub fn reuse(module: &Module, batch: usize) -> Trace {
        let spare = SPARE_TRACES.with(|pool| pool.borrow_mut().pop());
        match spare {
            Some(mut trace) if trace.fits(module, batch) => {
                trace.ports.iter_mut().flatten().for_each(|port| port.fill(0.0));
                trace
            }
            _ => Trace::new(module, batch),
        }
    }

    /// Hands the trace's buffers back to this thread's pool for [`Trace::reuse`].
    pub fn recycle(self) {
        SPARE_TRACES.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < 2 {
                pool.push(self);
            }
        });
    }

    fn fits(&self, module: &Module, batch: usize) -> bool {
        self.batch == batch
            && self.steps == module.steps + module.rest_steps
            && self.sizes.len() == module.populations.len()
            && self.input_sizes.len() == module.inputs.len()
            && module.populations.iter().enumerate().all(|(p, pop)| {
                self.sizes[p] == pop.size() && self.states[p].len() == pop.vars.len() && self.ports[p].len() == pop.ports.len()
            })
            && module.inputs.iter().zip(&self.input_sizes).all(|(input, n)| input.shape.iter().product::<usize>() == *n)
    }

    /// Elements in one step's row of population `p`.
    pub fn row(&self, p: usize) -> usize {
        self.batch * self.sizes[p]
    }

    /// Spikes of population `p` in step `t`, as 0.0 or 1.0.
    pub fn spikes_at(&self, t: usize, p: usize) -> Vec<f64> {
        let r = self.row(p);
        self.spikes[p].expand(t * r..(t + 1) * r)
    }

    /// Spikes of sample `b` of population `p` in step `t`, as 0.0 or 1.0.
    pub fn sample_spikes(&self, t: usize, p: usize, b: usize) -> Vec<f64> {
        let (r, n) = (self.row(p), self.sizes[p]);
        self.spikes[p].expand(t * r + b * n..t * r + (b + 1) * n)
    }

    /// Writes the spikes of population `p` in step `t`.
    pub fn store_spikes(&mut self, t: usize, p: usize, values: &[f64]) {
        let r = self.row(p);
        assert_eq!(values.len(), r, "one value per neuron of the batch");
        self.spikes[p].store(t * r, values);
    }

    /// Variable `v` of population `p` after step `t`.
    pub fn state_after(&self, t: usize, p: usize, v: usize) -> &[f64] {
        self.state_before(t + 1, p, v)
    }

    /// Variable `v` of population `p` before step `t`.
    pub fn state_before(&self, t: usize, p: usize, v: usize) -> &[f64] {
        let r = self.row(p);
        &self.states[p][v][t * r..(t + 1) * r]
    }

    pub fn port_at(&self, t: usize, p: usize, port: usize) -> &[f64] {
        let r = self.row(p);
        &self.ports[p][port][t * r..(t + 1) * r]
    }

    pub fn counters_at(&self, t: usize, p: usize) -> &[u32] {
        let r = self.row(p);
        &self.refractory[p][t * r..(t + 1) * r]
    }

    pub fn input_at(&self, t: usize, i: usize) -> &[f64] {
        let r = self.batch * self.input_sizes[i];
        &self.inputs[i][t * r..(t + 1) * r]
    }

    /// Total spikes of population `p` for sample `b`.
    pub fn spike_count(&self, p: usize, b: usize) -> f64 {
        let n = self.sizes[p];
        let r = self.row(p);
        (0..self.steps).map(|t| self.spikes[p].count(t * r + b * n..t * r + (b + 1) * n) as f64).sum()
    }
}

/// Per-neuron context while evaluating expressions.
struct Ctx<'a> {
    vars: &'a [f64],
    ports: &'a [f64],
    spiked: f64,
    time: f64,
    data: f64,
    net_params: &'a [f64],
    /// (seed, sample, step, neuron) for `rand()`.
    rng: (u64, u64, u64, u64),
}

/// Expression `id` of a population at one neuron's variables and ports (observables and their
/// derived gradients; no spike flag, data or random draws).
pub fn eval_at(exprs: &Exprs, id: ExprId, vars: &[f64], ports: &[f64], time: f64, net_params: &[f64], dt: f64) -> f64 {
    let ctx = Ctx { vars, ports, spiked: 0.0, time, data: 0.0, net_params, rng: (0, 0, 0, 0) };
    eval(exprs, id, &ctx, dt)
}

fn eval(exprs: &Exprs, id: ExprId, ctx: &Ctx, dt: f64) -> f64 {
    match exprs.get(id) {
        Node::Const(value) => *value,
        Node::Var(var) => ctx.vars[var.0 as usize],
        Node::Port(port) => ctx.ports[port.0 as usize],
        Node::Global(global) => match global {
            Global::Dt => dt,
            Global::Time => ctx.time,
            Global::Spiked => ctx.spiked,
            Global::Rand => rand_draw(ctx.rng, id),
            Global::Data => ctx.data,
            Global::NetParam(index) => ctx.net_params[*index as usize],
            // Leaves of derived backward steps (crate::grad) and of surrogates: not neuron state.
            Global::SurrogateX | Global::Refractory | Global::AdjointAfter(_) | Global::AdjointSpike => f64::NAN,
        },
        Node::Unary(op, a) => {
            let a = eval(exprs, *a, ctx, dt);
            match op {
                UnaryOp::Neg => -a,
                UnaryOp::Not => f64::from(u8::from(a == 0.0)),
            }
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (eval(exprs, *a, ctx, dt), eval(exprs, *b, ctx, dt));
            ir::eval_binary(*op, a, b).unwrap_or(f64::NAN)
        }
        Node::Call(func, args) => {
            let values: Vec<f64> = args.iter().map(|a| eval(exprs, *a, ctx, dt)).collect();
            eval_func(*func, &values).unwrap_or(f64::NAN)
        }
    }
}

/// One sample's identity for the random streams: its index in the data set.
#[derive(Clone, Copy, Debug)]
pub struct SampleRef<'a> {
    pub id: u64,
    pub features: &'a [f32],
}

/// The mutable state of a batch between steps.
struct Run<'m> {
    module: &'m Module,
    params: &'m Params,
    batch: usize,
    /// `values[pop][var][b * n + i]`.
    values: Vec<Vec<Vec<f64>>>,
    refractory: Vec<Vec<u32>>,
    /// Spike history per population, most recent last; long enough for the largest delay.
    history: Vec<Vec<Vec<f64>>>,
}

impl Run<'_> {
    fn spikes_at(&self, pop: usize, delay: usize) -> Option<&Vec<f64>> {
        let history = &self.history[pop];
        history.len().checked_sub(1 + delay).map(|i| &history[i])
    }
}

/// Runs a batch through `steps + rest_steps` steps and returns the trace.
pub fn run(module: &Module, params: &Params, samples: &[SampleRef], seed: u64, net_params: &[f64]) -> Trace {
    let batch = samples.len();
    let mut state = Run {
        module,
        params,
        batch,
        values: module.populations.iter().enumerate().map(|(p, pop)| initial_values(pop, p, params, batch, seed, samples)).collect(),
        refractory: module.populations.iter().map(|pop| vec![0; pop.size() * batch]).collect(),
        history: module.populations.iter().map(|_| Vec::new()).collect(),
    };
    let max_delay = module.projections.iter().map(|p| p.delay_steps).max().unwrap_or(0);
    let mut trace = Trace::new(module, batch);
    for (p, values) in state.values.iter().enumerate() {
        let r = trace.row(p);
        for (v, value) in values.iter().enumerate() {
            trace.states[p][v][..r].copy_from_slice(value);
        }
    }
    for step in 0..module.steps + module.rest_steps {
        let resting = step >= module.steps;
        let inputs: Vec<Vec<f64>> =
            module.inputs.iter().enumerate().map(|(i, input)| encode(module, input, i, samples, step, seed, net_params, resting)).collect();
        let mut step_spikes = Vec::with_capacity(module.populations.len());
        for p in 0..module.populations.len() {
            let r = trace.row(p);
            trace.refractory[p][step * r..(step + 1) * r].copy_from_slice(&state.refractory[p]);
            let ports = deliver(&state, &inputs, p, &step_spikes);
            let spikes = step_population(&mut state, p, &ports, step, seed, samples, net_params);
            trace.store_spikes(step, p, &spikes);
            for (port, values) in ports.iter().enumerate() {
                trace.ports[p][port][step * r..(step + 1) * r].copy_from_slice(values);
            }
            for (v, values) in state.values[p].iter().enumerate() {
                trace.states[p][v][(step + 1) * r..(step + 2) * r].copy_from_slice(values);
            }
            step_spikes.push(spikes);
        }
        for (i, input) in inputs.iter().enumerate() {
            let r = input.len();
            trace.inputs[i][step * r..(step + 1) * r].copy_from_slice(input);
        }
        for (p, spikes) in step_spikes.into_iter().enumerate() {
            state.history[p].push(spikes);
            if state.history[p].len() > max_delay + 1 {
                state.history[p].remove(0);
            }
        }
    }
    trace
}

pub fn initial_values(pop: &Population, p: usize, params: &Params, batch: usize, seed: u64, samples: &[SampleRef]) -> Vec<Vec<f64>> {
    let n = pop.size();
    pop.vars
        .iter()
        .enumerate()
        .map(|(v, var)| match &var.kind {
            VarKind::Param { .. } => {
                let values = &params.neuron_params[p][v];
                (0..batch * n).map(|k| if values.len() == 1 { values[0] } else { values[k % n] }).collect()
            }
            VarKind::State { init } => (0..batch * n)
                .map(|k| {
                    let stream = 2_000_000 + samples[k / n].id * 64 + v as u64;
                    draw(init, seed ^ 0xA5A5, stream, ((p as u64) << 32) | (k % n) as u64, 1, 1)
                })
                .collect(),
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn encode(
    module: &Module,
    input: &ir::Input,
    index: usize,
    samples: &[SampleRef],
    step: usize,
    seed: u64,
    net_params: &[f64],
    resting: bool,
) -> Vec<f64> {
    let n: usize = input.shape.iter().product();
    let mut out = vec![0.0; samples.len() * n];
    if resting {
        return out;
    }
    for (b, sample) in samples.iter().enumerate() {
        for i in 0..n {
            let ctx = Ctx {
                vars: &[],
                ports: &[],
                spiked: 0.0,
                time: step as f64 * module.dt,
                data: f64::from(sample.features.get(i).copied().unwrap_or(0.0)),
                net_params,
                rng: (seed, sample.id, step as u64, ((index as u64) << 24) | i as u64),
            };
            let value = eval(&input.exprs, input.value, &ctx, module.dt);
            out[b * n + i] = match input.kind {
                EncoderKind::Current => value,
                EncoderKind::SpikeWhen => f64::from(u8::from(value != 0.0)),
                // One spike in the step whose interval [t, t + dt) holds the spike time.
                EncoderKind::SpikeAt => f64::from(u8::from((value / module.dt).floor() as i64 == step as i64)),
            };
        }
    }
    out
}

/// Sums every projection into population `p`'s ports: `ports[port][b * n + j]`.
fn deliver(state: &Run, inputs: &[Vec<f64>], p: usize, this_step: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let module = state.module;
    let pop = &module.populations[p];
    let n_post = pop.size();
    let mut ports = vec![vec![0.0; state.batch * n_post]; pop.ports.len()];
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let empty = Vec::new();
        let source: &Vec<f64> = match &proj.source {
            Source::Input(id) => &inputs[id.0 as usize],
            Source::Population(id) => {
                let q = id.0 as usize;
                if proj.delay_steps == 0 && q < p {
                    &this_step[q]
                } else {
                    // Feedback and delayed edges read spikes from `delay` steps back.
                    state.spikes_at(q, proj.delay_steps.max(1) - 1).unwrap_or(&empty)
                }
            }
        };
        if source.is_empty() {
            continue;
        }
        let n_pre = module.source_size(&proj.source);
        let weights = &state.params.weights[index];
        let out = &mut ports[proj.port.0 as usize];
        for b in 0..state.batch {
            let x = &source[b * n_pre..(b + 1) * n_pre];
            let y = &mut out[b * n_post..(b + 1) * n_post];
            project(&proj.connectivity, weights, x, y, module.source_shape(&proj.source), &pop.shape);
        }
    }
    ports
}

/// `y += x W` for one sample.
pub fn project(connectivity: &Connectivity, w: &[f64], x: &[f64], y: &mut [f64], in_shape: &[usize], out_shape: &[usize]) {
    let (n_pre, n_post) = (x.len(), y.len());
    match connectivity {
        Connectivity::Dense => {
            for (i, xi) in x.iter().enumerate() {
                if *xi != 0.0 {
                    for (j, yj) in y.iter_mut().enumerate() {
                        *yj += xi * w[i * n_post + j];
                    }
                }
            }
        }
        Connectivity::OneToOne => {
            for i in 0..n_pre.min(n_post) {
                y[i] += x[i] * w[i];
            }
        }
        Connectivity::AllToAllButSelf => {
            for (i, xi) in x.iter().enumerate() {
                for (j, yj) in y.iter_mut().enumerate() {
                    if i != j {
                        *yj += xi * w[i * n_post + j];
                    }
                }
            }
        }
        Connectivity::Conv2d { kernel, stride, padding } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, s, pad) = (*kernel, *stride, *padding as isize);
            for oc in 0..out_c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut sum = 0.0;
                        for ic in 0..in_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * s + ky) as isize - pad;
                                    let ix = (ox * s + kx) as isize - pad;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        sum += x[(ic * h + iy as usize) * wd + ix as usize] * w[((oc * in_c + ic) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                        y[(oc * oh + oy) * ow + ox] += sum;
                    }
                }
            }
        }
        Connectivity::ConvTranspose2d { kernel, stride, padding, .. } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, s, pad) = (*kernel, *stride, *padding as isize);
            for ic in 0..in_c {
                for iy in 0..h {
                    for ix in 0..wd {
                        let xv = x[(ic * h + iy) * wd + ix];
                        if xv == 0.0 {
                            continue;
                        }
                        for oc in 0..out_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let oy = (iy * s + ky) as isize - pad;
                                    let ox = (ix * s + kx) as isize - pad;
                                    if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                        y[(oc * oh + oy as usize) * ow + ox as usize] += xv * w[((oc * in_c + ic) * k + ky) * k + kx];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn chw(shape: &[usize]) -> Option<[usize; 3]> {
    match shape {
        [c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

/// Advances population `p` by one step for the whole batch; returns its spikes.
fn step_population(
    state: &mut Run,
    p: usize,
    ports: &[Vec<f64>],
    step: usize,
    seed: u64,
    samples: &[SampleRef],
    net_params: &[f64],
) -> Vec<f64> {
    let module = state.module;
    let pop = &module.populations[p];
    let n = pop.size();
    let dt = module.dt;
    let n_vars = pop.vars.len();
    let mut spikes = vec![0.0; state.batch * n];
    let refractory_steps = refractory_steps(module, pop, net_params);
    let held: Vec<VarId> = pop.on_spike.iter().map(|u| u.var).collect();
    let mut vars = vec![0.0; n_vars];
    let mut port_values = vec![0.0; pop.ports.len()];
    for k in 0..state.batch * n {
        for (v, slot) in vars.iter_mut().enumerate() {
            *slot = state.values[p][v][k];
        }
        for (port, slot) in port_values.iter_mut().enumerate() {
            *slot = ports[port][k];
        }
        let sample = samples[k / n].id;
        let time = step as f64 * dt;
        let rng = neuron_rng(seed, sample, step, p, k % n);
        let before = vars.clone();
        // (3a) input jumps: a jump applies when its port received input this step.
        for jump in &pop.input_jumps {
            if port_values[jump.port.0 as usize] != 0.0 {
                apply_sequential(&pop.exprs, &jump.updates, &mut vars, &port_values, 0.0, time, net_params, rng, dt);
            }
        }
        // (3b) continuous dynamics, all right-hand sides on the state before integration.
        let snapshot = vars.clone();
        for (update, _) in &pop.dynamics {
            let c = Ctx { vars: &snapshot, ports: &port_values, spiked: 0.0, time, data: 0.0, net_params, rng };
            vars[update.var.0 as usize] = eval(&pop.exprs, update.value, &c, dt);
        }
        // (3c) per-step updates, in order.
        apply_sequential(&pop.exprs, &pop.updates, &mut vars, &port_values, 0.0, time, net_params, rng, dt);
        // (3d) threshold, unless refractory; variables reset on a spike are held meanwhile.
        let counter = &mut state.refractory[p][k];
        let mut spiked = 0.0;
        if *counter > 0 {
            *counter -= 1;
            for var in &held {
                vars[var.0 as usize] = before[var.0 as usize];
            }
        } else if let Some(threshold) = &pop.threshold {
            let c = Ctx { vars: &vars, ports: &port_values, spiked: 0.0, time, data: 0.0, net_params, rng };
            let (lhs, rhs) = (eval(&pop.exprs, threshold.lhs, &c, dt), eval(&pop.exprs, threshold.rhs, &c, dt));
            let fired = if threshold.op == BinaryOp::Ge { lhs >= rhs } else { lhs > rhs };
            if fired {
                spiked = 1.0;
                apply_sequential(&pop.exprs, &pop.on_spike, &mut vars, &port_values, 1.0, time, net_params, rng, dt);
                *counter = refractory_steps;
            }
        }
        // (3e) updates after the spike test.
        apply_sequential(&pop.exprs, &pop.after_spike, &mut vars, &port_values, spiked, time, net_params, rng, dt);
        spikes[k] = spiked;
        for (v, value) in vars.iter().enumerate() {
            state.values[p][v][k] = *value;
        }
    }
    spikes
}

#[allow(clippy::too_many_arguments)]
fn apply_sequential(
    exprs: &Exprs,
    updates: &[ir::Update],
    vars: &mut [f64],
    ports: &[f64],
    spiked: f64,
    time: f64,
    net_params: &[f64],
    rng: (u64, u64, u64, u64),
    dt: f64,
) {
    for update in updates {
        let c = Ctx { vars, ports, spiked, time, data: 0.0, net_params, rng };
        let value = eval(exprs, update.value, &c, dt);
        vars[update.var.0 as usize] = value;
    }
}

/// The key of a neuron's random draws in one step.
pub fn neuron_rng(seed: u64, sample: u64, step: usize, pop: usize, neuron: usize) -> (u64, u64, u64, u64) {
    (seed ^ 0x5EED, sample, step as u64, ((pop as u64) << 24) | neuron as u64)
}

/// A `rand()` draw of expression node `id` for the key of [`neuron_rng`].
pub fn rand_draw(rng: (u64, u64, u64, u64), id: ExprId) -> f64 {
    let (seed, sample, step, neuron) = rng;
    uniform(seed, sample, step, (neuron << 16) ^ u64::from(id.0))
}

/// A population's refractory period in whole steps.
pub fn refractory_steps(module: &Module, pop: &Population, net_params: &[f64]) -> u32 {
    pop.refractory.map_or(0, |id| {
        let ctx = Ctx { vars: &[], ports: &[], spiked: 0.0, time: 0.0, data: 0.0, net_params, rng: (0, 0, 0, 0) };
        (eval(&pop.exprs, id, &ctx, module.dt) / module.dt).round().max(0.0) as u32
    })
}

/// The initial network parameters of a module.
pub fn net_params(module: &Module) -> Vec<f64> {
    module.params.iter().map(|(_, v)| *v).collect()
}
