//! Engine-independent state: the parameters a model learns ([`Params`]), what a run keeps of
//! every step ([`Trace`]), the samples of a batch ([`SampleRef`]) and the keys of random draws.
//! Every engine reads and writes these; none of them owns them.

use std::any::Any;
use std::cell::RefCell;
use std::ops::Range;

use crate::data::{lowbias32, random_bits, uniform, uniform_prefix};
use crate::exec::kernels::bits::Bits;
use crate::exec::real::Real;
use crate::ir::{self, Connectivity, ExprId, Init, Module, Population, VarKind};

/// The values a model learns or is given: weights per projection and per-neuron parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Params<F> {
    /// Row-major, laid out as [`ir::Projection::weight_shape`].
    pub weights: Vec<Vec<F>>,
    /// For each population and variable: per-neuron values of parameters that are variables
    /// (trainable or per-neuron) and of persistent states (carried from sample to sample);
    /// empty for other states.
    pub neuron_params: Vec<Vec<Vec<F>>>,
}

/// Gradients of the learnable values, laid out like [`Params`].
pub type Grads<F> = Params<F>;

impl<F: Real> Params<F> {
    /// Zeros of the same layout.
    pub fn zeros_like(&self) -> Params<F> {
        self.zeros_except(|_| false)
    }

    /// Zeros of the same layout, with the weights of projections for which `skip` holds left
    /// empty (their gradient is added elsewhere).
    pub fn zeros_except(&self, skip: impl Fn(usize) -> bool) -> Params<F> {
        Params {
            weights: self.weights.iter().enumerate().map(|(i, w)| if skip(i) { Vec::new() } else { vec![F::zero(); w.len()] }).collect(),
            neuron_params: self.neuron_params.iter().map(|p| p.iter().map(|v| vec![F::zero(); v.len()]).collect()).collect(),
        }
    }

    /// `self += other`; a vector left empty in `other` counts as zeros.
    pub fn add(&mut self, other: &Params<F>) {
        for (a, b) in self.weights.iter_mut().zip(&other.weights) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += *y;
            }
        }
        for (pa, pb) in self.neuron_params.iter_mut().zip(&other.neuron_params) {
            for (a, b) in pa.iter_mut().zip(pb) {
                for (x, y) in a.iter_mut().zip(b) {
                    *x += *y;
                }
            }
        }
    }

    /// Every value times `factor` (in parallel chunks: element-wise, so the same for any
    /// thread count).
    pub fn scale(&mut self, factor: F) {
        use rayon::prelude::*;
        self.weights.iter_mut().for_each(|w| w.par_chunks_mut(1 << 14).for_each(|c| c.iter_mut().for_each(|g| *g *= factor)));
        self.neuron_params.iter_mut().flatten().flatten().for_each(|g| *g *= factor);
    }

    /// Sets every value to zero, keeping the allocations.
    pub fn clear(&mut self) {
        use rayon::prelude::*;
        self.weights.iter_mut().for_each(|w| w.par_chunks_mut(1 << 14).for_each(|c| c.fill(F::zero())));
        self.neuron_params.iter_mut().flatten().for_each(|v| v.fill(F::zero()));
    }

    /// The same values in another precision.
    pub fn convert<G: Real>(&self) -> Params<G> {
        Params {
            weights: self.weights.iter().map(|w| w.iter().map(|x| G::of(x.into_f64())).collect()).collect(),
            neuron_params: self
                .neuron_params
                .iter()
                .map(|p| p.iter().map(|v| v.iter().map(|x| G::of(x.into_f64())).collect()).collect())
                .collect(),
        }
    }

    /// Whether any value is NaN or infinite.
    pub fn has_non_finite(&self) -> bool {
        use rayon::prelude::*;
        self.weights.iter().any(|w| w.par_chunks(1 << 14).any(|c| c.iter().any(|x| !x.is_finite())))
            || self.neuron_params.iter().flatten().flatten().any(|x| !x.is_finite())
    }
}

/// Draws the initial parameters. Weight `k` of projection `p` uses draw (seed, p, k).
pub fn init_params<F: Real>(module: &Module, seed: u64) -> Params<F> {
    let weights = module
        .projections
        .iter()
        .enumerate()
        .map(|(p, proj)| {
            let count: usize = proj.weight_shape.iter().product();
            let (fan_in, fan_out) = fans(module, proj);
            (0..count).map(|k| F::of(draw(&proj.init, seed, 1 + p as u64, k as u64, fan_in, fan_out))).collect()
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
                        (0..n).map(|k| F::of(draw(value, seed, stream, k as u64, 1, 1))).collect()
                    }
                    // Persistent states are carried with the parameters (and saved in checkpoints),
                    // drawn from their initial value once.
                    VarKind::State { init, persistent: true, .. } => {
                        let stream = 3_000_000 + (p as u64) * 1000 + v as u64;
                        (0..pop.size()).map(|k| F::of(draw(init, seed, stream, k as u64, 1, 1))).collect()
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
        Connectivity::OneToOne | Connectivity::Pool2d(_) => (1, 1),
        // PyTorch's fans: the weight's second dimension (input channels per group for a
        // convolution, output channels per group for a transposed one) times the taps, and the
        // first.
        Connectivity::Conv2d(conv) | Connectivity::ConvTranspose2d(conv) => {
            let [first, second, ..] = proj.weight_shape[..] else { return (1, 1) };
            let taps = conv.taps();
            (second * taps, first * taps)
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
    /// Spare traces of either precision, for [`Trace::reuse`].
    static SPARE_TRACES: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// What a run keeps of every step, stored flat per population so that the rows of all steps
/// are contiguous (one GEMM can read or write a projection over every step at once).
///
/// The rows of step `t` for a population of `n` neurons are `[t * batch * n, (t + 1) * batch * n)`,
/// sample `b`'s part of a row is `[b * n, (b + 1) * n)`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Trace<F> {
    /// Rows of steps held: the steps `offset..offset + steps` (all of a sample's unless a
    /// pass keeps a window of them, FPTT).
    pub steps: usize,
    /// The step of row 0: what time, random draws and the active/rest split are computed
    /// from. 0 for a trace of the whole sample.
    pub offset: usize,
    pub batch: usize,
    /// Neurons per population.
    pub sizes: Vec<usize>,
    /// `spikes[pop]`, one bit per neuron, one row per step.
    pub spikes: Vec<Bits>,
    /// `states[pop][var]` with `steps + 1` rows: row 0 holds the state before the first step,
    /// row `t + 1` the state after step `t` (parameters hold their values).
    pub states: Vec<Vec<Vec<F>>>,
    /// What the backward pass needs besides states: `ports[pop][port]`, one row per step.
    pub ports: Vec<Vec<Vec<F>>>,
    /// Refractory counters before each step, `refractory[pop]`, one row per step; all zero for
    /// a population without a refractory period (engines need not write them).
    pub refractory: Vec<Vec<u32>>,
    /// Which populations have a refractory period (a reused trace must agree, so that the
    /// counters of the others are still zero).
    pub has_refractory: Vec<bool>,
    /// Encoder outputs, `inputs[input]`, one row per step.
    pub inputs: Vec<Vec<F>>,
    pub input_sizes: Vec<usize>,
}

impl<F: Real> Trace<F> {
    /// A zeroed trace for `batch` samples over the module's `steps + rest_steps` steps.
    pub fn new(module: &Module, batch: usize) -> Trace<F> {
        Trace::with_steps(module, batch, module.steps + module.rest_steps)
    }

    fn with_steps(module: &Module, batch: usize, steps: usize) -> Trace<F> {
        let sizes: Vec<usize> = module.populations.iter().map(Population::size).collect();
        let input_sizes: Vec<usize> = module.inputs.iter().map(|i| i.shape.iter().product()).collect();
        Trace {
            steps,
            offset: 0,
            batch,
            spikes: sizes.iter().map(|n| Bits::zeros(steps * batch * n)).collect(),
            states: module
                .populations
                .iter()
                .zip(&sizes)
                .map(|(pop, n)| vec![vec![F::zero(); (steps + 1) * batch * n]; pop.vars.len()])
                .collect(),
            ports: module
                .populations
                .iter()
                .zip(&sizes)
                .map(|(pop, n)| vec![vec![F::zero(); steps * batch * n]; pop.ports.len()])
                .collect(),
            refractory: sizes.iter().map(|n| vec![0; steps * batch * n]).collect(),
            has_refractory: module.populations.iter().map(|pop| pop.refractory.is_some()).collect(),
            inputs: input_sizes.iter().map(|n| vec![F::zero(); steps * batch * n]).collect(),
            sizes,
            input_sizes,
        }
    }

    /// The trace of a streaming pass over one sample: `rows` rows of spikes, ports and inputs
    /// (the last `rows` steps, step `t` in row `t % rows`) and `rows + 1` rows of states.
    pub fn window(module: &Module, rows: usize) -> Trace<F> {
        Trace::with_steps(module, 1, rows)
    }

    /// A trace for a batch on a pooled back end: a spare trace of the same shape left by
    /// [`Trace::recycle`] on this thread is reused (its ports zeroed, everything else is
    /// overwritten by a run), which saves allocating and faulting in tens of megabytes per
    /// shard.
    pub fn reuse(module: &Module, batch: usize) -> Trace<F> {
        Trace::reuse_rows(module, batch, module.steps + module.rest_steps)
    }

    /// [`Trace::reuse`] for a trace of `rows` steps (from step 0 until moved).
    pub fn reuse_rows(module: &Module, batch: usize, rows: usize) -> Trace<F> {
        let spare = SPARE_TRACES.with(|pool| pool.borrow_mut().pop());
        match spare.map(|any| any.downcast::<Trace<F>>()) {
            Some(Ok(mut trace)) if trace.fits(module, batch, rows) => {
                trace.ports.iter_mut().flatten().for_each(|port| port.fill(F::zero()));
                trace.offset = 0;
                *trace
            }
            _ => Trace::with_steps(module, batch, rows),
        }
    }

    /// Hands the trace's buffers back to this thread's pool for [`Trace::reuse`].
    pub fn recycle(self) {
        SPARE_TRACES.with(|pool| {
            let mut pool = pool.borrow_mut();
            if pool.len() < 2 {
                pool.push(Box::new(self));
            }
        });
    }

    fn fits(&self, module: &Module, batch: usize, rows: usize) -> bool {
        self.batch == batch
            && self.steps == rows
            && self.sizes.len() == module.populations.len()
            && self.input_sizes.len() == module.inputs.len()
            && module.populations.iter().enumerate().all(|(p, pop)| {
                self.sizes[p] == pop.size()
                    && self.states[p].len() == pop.vars.len()
                    && self.ports[p].len() == pop.ports.len()
                    && self.has_refractory[p] == pop.refractory.is_some()
            })
            && module.inputs.iter().zip(&self.input_sizes).all(|(input, n)| input.shape.iter().product::<usize>() == *n)
    }

    /// Elements in one step's row of population `p`.
    pub fn row(&self, p: usize) -> usize {
        self.batch * self.sizes[p]
    }

    /// Spikes of population `p` in step `t`, as 0.0 or 1.0.
    pub fn spikes_at<G: Real>(&self, t: usize, p: usize) -> Vec<G> {
        let r = self.row(p);
        self.spikes[p].expand(t * r..(t + 1) * r)
    }

    /// Spikes of sample `b` of population `p` in step `t`, as 0.0 or 1.0.
    pub fn sample_spikes<G: Real>(&self, t: usize, p: usize, b: usize) -> Vec<G> {
        let (r, n) = (self.row(p), self.sizes[p]);
        self.spikes[p].expand(t * r + b * n..t * r + (b + 1) * n)
    }

    /// Writes the spikes of population `p` in step `t`.
    pub fn store_spikes(&mut self, t: usize, p: usize, values: &[F]) {
        let r = self.row(p);
        assert_eq!(values.len(), r, "one value per neuron of the batch");
        self.spikes[p].store(t * r, values);
    }

    /// Variable `v` of population `p` after step `t`.
    pub fn state_after(&self, t: usize, p: usize, v: usize) -> &[F] {
        self.state_before(t + 1, p, v)
    }

    /// Variable `v` of population `p` before step `t`.
    pub fn state_before(&self, t: usize, p: usize, v: usize) -> &[F] {
        let r = self.row(p);
        &self.states[p][v][t * r..(t + 1) * r]
    }

    pub fn port_at(&self, t: usize, p: usize, port: usize) -> &[F] {
        let r = self.row(p);
        &self.ports[p][port][t * r..(t + 1) * r]
    }

    pub fn counters_at(&self, t: usize, p: usize) -> &[u32] {
        let r = self.row(p);
        &self.refractory[p][t * r..(t + 1) * r]
    }

    pub fn input_at(&self, t: usize, i: usize) -> &[F] {
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

/// What a streaming pass keeps of one sample ([`crate::exec::engine::Engine::stream`]): spike
/// counts and the final state, memory in the network's size rather than in its steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Summary<F> {
    /// The steps the sample ran.
    pub steps: usize,
    /// Spikes per neuron over the sample, `counts[pop]`.
    pub counts: Vec<Vec<u32>>,
    /// The states after the last step, `last[pop][var]`.
    pub last: Vec<Vec<Vec<F>>>,
}

impl<F: Real> Summary<F> {
    /// The summary of sample `b` of a full trace.
    pub fn of(trace: &Trace<F>, b: usize) -> Summary<F> {
        let mut counts: Vec<Vec<u32>> = trace.sizes.iter().map(|n| vec![0; *n]).collect();
        for (p, count) in counts.iter_mut().enumerate() {
            let (n, r) = (trace.sizes[p], trace.row(p));
            for t in 0..trace.steps {
                trace.spikes[p].for_each_set(t * r + b * n..t * r + (b + 1) * n, |i| count[i] += 1);
            }
        }
        let last = (0..trace.sizes.len())
            .map(|p| {
                let n = trace.sizes[p];
                (0..trace.states[p].len()).map(|v| trace.state_before(trace.steps, p, v)[b * n..(b + 1) * n].to_vec()).collect()
            })
            .collect();
        Summary { steps: trace.steps, counts, last }
    }

    /// Total spikes of population `p`.
    pub fn spike_count(&self, p: usize) -> f64 {
        self.counts[p].iter().map(|c| f64::from(*c)).sum()
    }
}

/// A batch's forward pass run a window of steps at a time (`Engine::begin`,
/// `Engine::advance`): the trace so far and where it stopped.
pub struct Stepping<F> {
    pub trace: Trace<F>,
    /// Steps run so far.
    pub done: usize,
    /// Each population's refractory counters after the last step run.
    pub counters: Vec<Vec<u32>>,
    /// Per projection, its time-constant input projected once (only `forward` fills it).
    pub hoisted: Vec<Option<Vec<F>>>,
}

impl<F: Real> Stepping<F> {
    /// A batch's forward pass at its initial states, no step run, its trace holding the first
    /// `rows` steps ([`Stepping::slide`] moves it on): where every engine's pass starts.
    pub fn begin(module: &Module, params: &Params<F>, samples: &[SampleRef], seed: u64, rows: usize) -> Stepping<F> {
        let batch = samples.len();
        let mut trace = Trace::reuse_rows(module, batch, rows);
        for (p, pop) in module.populations.iter().enumerate() {
            let r = trace.row(p);
            for (v, values) in initial_values(pop, p, params, batch, seed, samples).iter().enumerate() {
                trace.states[p][v][..r].copy_from_slice(values);
            }
        }
        let counters = (0..module.populations.len()).map(|p| vec![0; trace.row(p)]).collect();
        Stepping { trace, done: 0, counters, hoisted: vec![None; module.projections.len()] }
    }

    /// Moves the pass on to a trace of the steps `done - h..done + len` (`h` = `history`, or
    /// all steps run when fewer): the next window of a pass that keeps one window at a time
    /// (FPTT), with the `history` steps before it that delayed connections read. The state
    /// before step `done`, the counters and those steps' spikes, ports, inputs and states come
    /// along; the rest of the old trace goes back to the pool. Memory is the window's, not
    /// the sample's.
    pub fn slide(&mut self, module: &Module, len: usize, history: usize) {
        let old = &self.trace;
        let h = history.min(self.done - old.offset);
        let first = self.done - h - old.offset;
        let mut trace = Trace::reuse_rows(module, old.batch, h + len);
        trace.offset = self.done - h;
        for p in 0..old.sizes.len() {
            let r = old.row(p);
            for (to, from) in trace.states[p].iter_mut().zip(&old.states[p]) {
                to[..(h + 1) * r].copy_from_slice(&from[first * r..(first + h + 1) * r]);
            }
            for (to, from) in trace.ports[p].iter_mut().zip(&old.ports[p]) {
                to[..h * r].copy_from_slice(&from[first * r..(first + h) * r]);
            }
            trace.refractory[p][..h * r].copy_from_slice(&old.refractory[p][first * r..(first + h) * r]);
            for row in 0..h {
                let spikes: Vec<F> = old.spikes[p].expand((first + row) * r..(first + row + 1) * r);
                trace.store_spikes(row, p, &spikes);
            }
        }
        for (i, (to, from)) in trace.inputs.iter_mut().zip(&old.inputs).enumerate() {
            let r = old.batch * old.input_sizes[i];
            to[..h * r].copy_from_slice(&from[first * r..(first + h) * r]);
        }
        std::mem::replace(&mut self.trace, trace).recycle();
    }

    /// Writes the neuron parameters of `params` into the state before the next step, which the
    /// steps carry on: a pass whose parameters change between windows (FPTT's optimiser steps)
    /// runs each window with the values it has then, as it does with the weights.
    pub fn set_params(&mut self, module: &Module, params: &Params<F>) {
        let row = self.done - self.trace.offset;
        for (p, pop) in module.populations.iter().enumerate() {
            let (n, r) = (pop.size(), self.trace.row(p));
            for (v, var) in pop.vars.iter().enumerate() {
                if !matches!(var.kind, VarKind::Param { .. }) {
                    continue;
                }
                let values = &params.neuron_params[p][v];
                let slot = &mut self.trace.states[p][v][row * r..(row + 1) * r];
                for (k, x) in slot.iter_mut().enumerate() {
                    *x = if values.len() == 1 { values[0] } else { values[k % n] };
                }
            }
        }
    }

    /// The trace rows of the absolute steps `steps`.
    pub fn rows(&self, steps: std::ops::Range<usize>) -> std::ops::Range<usize> {
        steps.start - self.trace.offset..steps.end - self.trace.offset
    }
}

/// One sample's identity for the random streams: its index in the data set.
#[derive(Clone, Copy, Debug)]
pub struct SampleRef<'a> {
    pub id: u64,
    pub features: &'a [f32],
}

pub fn initial_values<F: Real>(
    pop: &Population,
    p: usize,
    params: &Params<F>,
    batch: usize,
    seed: u64,
    samples: &[SampleRef],
) -> Vec<Vec<F>> {
    let n = pop.size();
    pop.vars
        .iter()
        .enumerate()
        .map(|(v, var)| match &var.kind {
            VarKind::Param { .. } => {
                let values = &params.neuron_params[p][v];
                (0..batch * n).map(|k| if values.len() == 1 { values[0] } else { values[k % n] }).collect()
            }
            // A persistent state starts where the previous sample left it: its values are kept
            // with the parameters.
            VarKind::State { persistent: true, .. } if params.neuron_params[p][v].len() == n => {
                let values = &params.neuron_params[p][v];
                (0..batch * n).map(|k| values[k % n]).collect()
            }
            VarKind::State { init, .. } => (0..batch * n)
                .map(|k| {
                    let stream = 2_000_000 + samples[k / n].id * 64 + v as u64;
                    F::of(draw(init, seed ^ 0xA5A5, stream, ((p as u64) << 32) | (k % n) as u64, 1, 1))
                })
                .collect(),
        })
        .collect()
}

/// The key of one element's `rand()` draws in one step. A draw of expression node `id` is
/// `unit(lowbias32(base ^ element))` with `base` the low 32 bits of
/// `splitmix64(prefix ^ (stream << 16) ^ id)` ([`rand_base`]): one 64-bit mix per node, stream
/// and step, and a 32-bit mix per element, which vector lanes compute four at a time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RandKey {
    /// `uniform_prefix(seed, sample, step)`.
    pub prefix: u64,
    /// `uniform_prefix(seed, sample, PER_SAMPLE)`: the prefix of `rand_per_sample()`.
    pub sample_prefix: u64,
    /// The input or population.
    pub stream: u64,
    /// The input element or neuron.
    pub element: u32,
}

/// The step that keys `rand_per_sample()` draws: none that a run reaches.
pub const PER_SAMPLE: u64 = u64::MAX;

/// The key of a neuron's random draws in one step.
pub fn neuron_rng(seed: u64, sample: u64, step: usize, pop: usize, neuron: usize) -> RandKey {
    let seed = seed ^ 0x5EED;
    RandKey {
        prefix: uniform_prefix(seed, sample, step as u64),
        sample_prefix: uniform_prefix(seed, sample, PER_SAMPLE),
        stream: pop as u64,
        element: neuron as u32,
    }
}

/// The key of an encoder's draws for element `i` of input `index` in one step.
pub fn input_rng(seed: u64, sample: u64, step: usize, index: usize, i: usize) -> RandKey {
    RandKey {
        prefix: uniform_prefix(seed, sample, step as u64),
        sample_prefix: uniform_prefix(seed, sample, PER_SAMPLE),
        stream: index as u64,
        element: i as u32,
    }
}

/// The 32-bit base of node `id`'s draws in one stream and step (see [`RandKey`]).
pub fn rand_base(prefix: u64, stream: u64, id: ExprId) -> u32 {
    random_bits(prefix, (stream << 16) ^ u64::from(id.0)) as u32
}

/// A `rand()` draw of expression node `id` for `key`.
pub fn rand_draw<F: Real>(key: RandKey, id: ExprId) -> F {
    F::unit(lowbias32(rand_base(key.prefix, key.stream, id) ^ key.element))
}

/// The initial network parameters of a module.
pub fn net_params<F: Real>(module: &Module) -> Vec<F> {
    module.params.iter().map(|(_, v)| F::of(*v)).collect()
}

/// Gradients of the loss with respect to what the network produced for a batch, in the row
/// layout of [`Trace`]. A vector stays empty (all zeros) until a loss term or a projection's
/// adjoint writes into it, so that populations the loss does not read cost nothing; then only
/// the rows written hold values (a `last_t` readout's one row is all that is zeroed and read).
#[derive(Clone, Debug, Default)]
pub struct ReadoutGrads<F: Real> {
    pub steps: usize,
    pub batch: usize,
    pub sizes: Vec<usize>,
    /// `spikes[pop]`, one row per step.
    spikes: Vec<Held<F>>,
    /// `states[pop][var]`, row `t` for the state after step `t`.
    states: Vec<Vec<Held<F>>>,
    /// `weights[projection][k]`; a projection's vector is allocated only when a loss term reads
    /// its weights (`weight_l2`).
    pub weights: Vec<Vec<F>>,
}

/// One adjoint's rows: a buffer of all steps' rows of which `rows` hold values; the others
/// are zero, never written and never read.
#[derive(Clone, Debug, Default)]
struct Held<F> {
    values: Vec<F>,
    rows: Range<usize>,
}

impl<F: Real> Held<F> {
    /// Rows `rows` (of `row` elements in a buffer of `len`), zeroed where they held nothing.
    fn rows_mut(&mut self, rows: Range<usize>, row: usize, len: usize) -> &mut [F] {
        if self.values.is_empty() {
            // Every element of the held rows is zeroed below before it is read.
            self.values = crate::exec::pool::overwritten(len);
        }
        if self.rows.is_empty() {
            self.rows = rows.start..rows.start;
        }
        let (start, end) = (rows.start.min(self.rows.start), rows.end.max(self.rows.end));
        self.values[start * row..self.rows.start * row].fill(F::zero());
        self.values[self.rows.end * row..end * row].fill(F::zero());
        self.rows = start..end;
        &mut self.values[rows.start * row..rows.end * row]
    }

    fn row(&self, t: usize, row: usize) -> Option<&[F]> {
        self.rows.contains(&t).then(|| &self.values[t * row..(t + 1) * row])
    }
}

/// The adjoint rows go back to this thread's pool: the next batch takes them from there
/// instead of faulting in fresh pages.
impl<F: Real> Drop for ReadoutGrads<F> {
    fn drop(&mut self) {
        let held = std::mem::take(&mut self.spikes).into_iter().chain(std::mem::take(&mut self.states).into_iter().flatten());
        crate::exec::pool::spare(held.map(|held| held.values).filter(|values| values.capacity() > 0));
    }
}

impl<F: Real> ReadoutGrads<F> {
    pub fn zeros(module: &Module, steps: usize, batch: usize) -> ReadoutGrads<F> {
        ReadoutGrads {
            steps,
            batch,
            sizes: module.populations.iter().map(|p| p.size()).collect(),
            spikes: (0..module.populations.len()).map(|_| Held::default()).collect(),
            states: module.populations.iter().map(|p| (0..p.vars.len()).map(|_| Held::default()).collect()).collect(),
            weights: module.projections.iter().map(|_| Vec::new()).collect(),
        }
    }

    fn row(&self, p: usize) -> usize {
        self.batch * self.sizes[p]
    }

    /// The spike gradient of population `p` over all steps.
    pub fn spikes_mut(&mut self, p: usize) -> &mut [F] {
        self.spike_rows_mut(p, 0..self.steps)
    }

    /// The spike gradient of population `p` in the steps `rows` (zeros where nothing was
    /// written yet).
    pub fn spike_rows_mut(&mut self, p: usize, rows: Range<usize>) -> &mut [F] {
        let (row, steps) = (self.row(p), self.steps);
        self.spikes[p].rows_mut(rows, row, steps * row)
    }

    /// The gradient of population `p`'s state `v` over all steps.
    pub fn states_mut(&mut self, p: usize, v: usize) -> &mut [F] {
        self.state_rows_mut(p, v, 0..self.steps)
    }

    /// The gradient of population `p`'s state `v` in the steps `rows`.
    pub fn state_rows_mut(&mut self, p: usize, v: usize, rows: Range<usize>) -> &mut [F] {
        let (row, steps) = (self.row(p), self.steps);
        self.states[p][v].rows_mut(rows, row, steps * row)
    }

    /// Row `t` of population `p`'s spike gradient, `None` when it is all zeros.
    pub fn spikes_at(&self, t: usize, p: usize) -> Option<&[F]> {
        self.spikes[p].row(t, self.row(p))
    }

    pub fn state_at(&self, t: usize, p: usize, v: usize) -> Option<&[F]> {
        self.states[p][v].row(t, self.row(p))
    }

    /// Whether any spike or state adjoint holds rows among `rows`: a sweep that starts from a
    /// zero state adjoint over steps where none is held computes zeros.
    pub fn holds_any(&self, rows: Range<usize>) -> bool {
        let overlaps = |held: &Held<F>| held.rows.start < rows.end && rows.start < held.rows.end;
        self.spikes.iter().any(overlaps) || self.states.iter().flatten().any(overlaps)
    }

    /// Sets the steps `rows` of every adjoint back to what `from` holds there (zeros where it
    /// holds nothing): what was added to them since `from` was taken is dropped. A backward
    /// pass that detaches the state between blocks of steps restores each block's rows before
    /// its sweep, so that only the loss's own adjoints reach it.
    pub fn restore_rows(&mut self, from: &ReadoutGrads<F>, rows: Range<usize>) {
        fn restore<F: Real>(to: &mut Held<F>, from: &Held<F>, rows: &Range<usize>, row: usize, len: usize) {
            let (start, end) = (rows.start.max(to.rows.start), rows.end.min(to.rows.end));
            if start >= end {
                return;
            }
            let values = to.rows_mut(start..end, row, len);
            for (k, t) in (start..end).enumerate() {
                let dst = &mut values[k * row..(k + 1) * row];
                match from.row(t, row) {
                    Some(src) => dst.copy_from_slice(src),
                    None => dst.fill(F::zero()),
                }
            }
        }
        for p in 0..self.spikes.len() {
            let (row, len) = (self.row(p), self.steps * self.row(p));
            restore(&mut self.spikes[p], &from.spikes[p], &rows, row, len);
            for (to, from) in self.states[p].iter_mut().zip(&from.states[p]) {
                restore(to, from, &rows, row, len);
            }
        }
    }
}

/// Products of inputs that do not change over time, for a whole batch: per hoisted projection
/// the encoded input `x` and `y = x W` (one row per sample). An engine computes them before
/// the batch is split into shards, so that the GEMM, and in the backward pass the weight
/// gradient, run once over all rows instead of once per shard; an engine that does not hoist
/// leaves every entry empty.
#[derive(Clone, Debug, Default)]
pub struct Hoisted<F> {
    pub x: Vec<Option<Vec<F>>>,
    pub y: Vec<Option<Vec<F>>>,
    /// Column blocks the batch-level GEMMs were split into (see
    /// [`crate::exec::kernels::gemm::COLUMN_BLOCK`]).
    pub column_blocks: usize,
}

impl<F> Hoisted<F> {
    /// Nothing hoisted.
    pub fn none(module: &Module) -> Hoisted<F> {
        let count = module.projections.len();
        Hoisted { x: (0..count).map(|_| None).collect(), y: (0..count).map(|_| None).collect(), column_blocks: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.y.iter().all(Option::is_none)
    }
}

/// A shard's part of a [`Hoisted`]: the rows from sample `from`.
#[derive(Clone, Copy, Debug)]
pub struct HoistedRows<'a, F> {
    pub hoisted: &'a Hoisted<F>,
    pub from: usize,
}

/// How a forward pass may touch the parameters: shared by parallel shards, or mutable for a
/// hook that changes weights inside the forward loop (plasticity).
pub enum ParamsAccess<'a, F> {
    Shared(&'a Params<F>),
    Mutable(&'a mut Params<F>),
}

impl<F> ParamsAccess<'_, F> {
    pub fn get(&self) -> &Params<F> {
        match self {
            ParamsAccess::Shared(params) => params,
            ParamsAccess::Mutable(params) => params,
        }
    }

    pub fn get_mut(&mut self) -> Option<&mut Params<F>> {
        match self {
            ParamsAccess::Shared(_) => None,
            ParamsAccess::Mutable(params) => Some(params),
        }
    }
}

/// Where a step's values are in the trace a hook is given: `step` is the step itself, `row`
/// its row in the trace (the step in a full trace; in a streaming pass, whose trace is a
/// window of the last few steps, the step's row in that window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    pub step: usize,
    pub row: usize,
}

impl At {
    /// Step `t` of a full trace.
    pub fn full(t: usize) -> At {
        At { step: t, row: t }
    }
}

/// Called by an engine after every population's step when a forward pass runs step by step.
pub trait StepHook<F> {
    /// Population `p` has done step `at.step`: its state after the step is row `at.row + 1` of
    /// the trace and its spikes row `at.row`. The hook may read them (records), overwrite them
    /// (clamps: later populations and steps see the new values) and, when the forward pass was
    /// given the parameters mutably, change the parameters.
    fn after_population(&mut self, at: At, p: usize, trace: &mut Trace<F>, params: Option<&mut Params<F>>);

    /// Step `at.step` is about to run: the state before it is row `at.row` of the trace, which
    /// the hook may overwrite (a clamped state), before any population reads it.
    fn before_step(&mut self, _at: At, _trace: &mut Trace<F>) {}
}

/// Several hooks after one another, in order.
pub struct Chain<'a, F>(pub Vec<&'a mut dyn StepHook<F>>);

impl<F> StepHook<F> for Chain<'_, F> {
    fn after_population(&mut self, at: At, p: usize, trace: &mut Trace<F>, mut params: Option<&mut Params<F>>) {
        for hook in &mut self.0 {
            hook.after_population(at, p, trace, params.as_deref_mut());
        }
    }

    fn before_step(&mut self, at: At, trace: &mut Trace<F>) {
        for hook in &mut self.0 {
            hook.before_step(at, trace);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held rows start at zero whatever the pooled buffer held, keep what was written when
    /// the range grows on either side, and read as absent outside the range.
    #[test]
    fn held_rows_are_zeroed_kept_and_bounded() {
        let (row, steps) = (3, 6);
        // A spare buffer of garbage is what the pool hands out next.
        crate::exec::pool::spare([vec![f64::NAN; row * steps]]);
        let mut held = Held::<f64>::default();
        assert!(held.row(0, row).is_none());
        held.rows_mut(3..4, row, row * steps).fill(2.0);
        assert_eq!(held.row(3, row), Some(&[2.0; 3][..]));
        assert!(held.row(2, row).is_none() && held.row(4, row).is_none());
        // Grow on both sides: the new rows are zeros, row 3 keeps its values.
        let grown = held.rows_mut(1..6, row, row * steps);
        assert_eq!(grown.len(), 5 * row);
        assert_eq!(&grown[..2 * row], &[0.0; 6][..]);
        assert_eq!(&grown[2 * row..3 * row], &[2.0; 3][..]);
        assert_eq!(&grown[3 * row..], &[0.0; 6][..]);
        assert!(held.row(0, row).is_none());
        assert_eq!(held.row(5, row), Some(&[0.0; 3][..]));
        // Asking again for rows already held changes nothing.
        held.rows_mut(3..4, row, row * steps)[0] += 1.0;
        assert_eq!(held.row(3, row), Some(&[3.0, 2.0, 2.0][..]));
    }

    /// Restoring a block of rows brings back the snapshot's values there (zeros where the
    /// snapshot held nothing) and leaves every other row as it was.
    #[test]
    fn restored_rows_drop_what_was_added_since() {
        let mut readout = ReadoutGrads::<f64> {
            steps: 4,
            batch: 1,
            sizes: vec![2],
            spikes: vec![Held::default()],
            states: vec![vec![Held::default()]],
            weights: Vec::new(),
        };
        readout.spike_rows_mut(0, 3..4).copy_from_slice(&[1.0, 2.0]);
        let snapshot = readout.clone();
        // A later block's sweep adds to rows 2 and 3 and to a state row.
        readout.spike_rows_mut(0, 2..4).iter_mut().for_each(|x| *x += 10.0);
        readout.state_rows_mut(0, 0, 2..3).fill(5.0);
        readout.restore_rows(&snapshot, 2..3);
        assert_eq!(readout.spikes_at(2, 0), Some(&[0.0, 0.0][..]));
        assert_eq!(readout.state_at(2, 0, 0), Some(&[0.0, 0.0][..]));
        // Row 3 is outside the restored block: it keeps what was added.
        assert_eq!(readout.spikes_at(3, 0), Some(&[11.0, 12.0][..]));
        readout.restore_rows(&snapshot, 3..4);
        assert_eq!(readout.spikes_at(3, 0), Some(&[1.0, 2.0][..]));
        assert!(readout.spikes_at(1, 0).is_none());
        assert!(readout.holds_any(3..4) && readout.holds_any(0..3) && !readout.holds_any(0..2));
        assert!(!snapshot.holds_any(0..3));
    }
}
