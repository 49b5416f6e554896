//! Training and evaluation on the reference back end: surrogate-gradient BPTT.
//!
//! For each sample the interpreter runs forward and keeps states, ports and refractory
//! counters per step; the backward pass then walks time in reverse and, for every neuron and
//! step, re-runs the step on a [`Tape`] from the stored state and sweeps it backwards. Weight
//! gradients come from the port adjoints. Samples of a batch run on rayon threads; their
//! gradients are summed in sample order, so a fixed seed gives the same weights for any thread
//! count.

use rayon::prelude::*;

use crate::data::{Split, Stream};
use crate::interp::{self, Params, SampleRef, Trace, init_params, neuron_rng};
use crate::ir::{BinaryOp, Module, PopId, Population, Source, VarKind};
use crate::ir_train::{LrSchedule, Method, OptimizerKind, Phase, Surrogate, Train};
use crate::loss::{self, ReadoutGrads, Unsupported};
use crate::tape::{Leaves, Op, Tape, record, surrogate_grad};

/// Gradients of the learnable values, laid out like [`Params`].
pub type Grads = Params;

fn zeros_like(params: &Params) -> Grads {
    zeros_except(params, |_| false)
}

/// Zero gradients, with the weights of projections for which `skip` holds left empty.
fn zeros_except(params: &Params, skip: impl Fn(usize) -> bool) -> Grads {
    Params {
        weights: params.weights.iter().enumerate().map(|(index, w)| if skip(index) { Vec::new() } else { vec![0.0; w.len()] }).collect(),
        neuron_params: params.neuron_params.iter().map(|p| p.iter().map(|v| vec![0.0; v.len()]).collect()).collect(),
    }
}

/// `total += other`; a vector left empty in `other` counts as zeros.
fn add_grads(total: &mut Grads, other: &Grads) {
    for (a, b) in total.weights.iter_mut().zip(&other.weights) {
        for (x, y) in a.iter_mut().zip(b) {
            *x += y;
        }
    }
    for (pa, pb) in total.neuron_params.iter_mut().zip(&other.neuron_params) {
        for (a, b) in pa.iter_mut().zip(pb) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// One neuron's step recorded on a tape: the leaves of its state and ports, and the tape
/// entries of its state after the step and of its spike.
struct StepTape {
    var_leaves: Vec<usize>,
    port_leaves: Vec<usize>,
    vars_after: Vec<usize>,
    spike: usize,
}

/// Records one neuron's step exactly as [`interp`] computes it.
#[allow(clippy::too_many_arguments)]
fn record_step(
    tape: &mut Tape,
    module: &Module,
    pop: &Population,
    vars: &[f64],
    ports: &[f64],
    counter: u32,
    rng: (u64, u64, u64, u64),
    time: f64,
    net_params: &[f64],
    surrogate: &Surrogate,
) -> StepTape {
    tape.clear();
    let var_leaves: Vec<usize> = vars.iter().map(|v| tape.leaf(*v)).collect();
    let port_leaves: Vec<usize> = ports.iter().map(|p| tape.leaf(*p)).collect();
    let zero = tape.constant(0.0);
    let rand = move |id| interp::rand_draw(rng, id);
    let mut current = var_leaves.clone();
    let mut memo = Vec::new();
    let mut apply = |tape: &mut Tape, updates: &[crate::ir::Update], current: &mut Vec<usize>, spiked: usize| {
        for update in updates {
            memo.clear();
            let leaves = Leaves { vars: current, ports: &port_leaves, spiked, time, dt: module.dt, rand: &rand, net_params };
            let value = record(tape, &pop.exprs, update.value, &leaves, &mut memo);
            current[update.var.0 as usize] = value;
        }
    };
    for jump in &pop.input_jumps {
        if ports[jump.port.0 as usize] != 0.0 {
            apply(tape, &jump.updates, &mut current, zero);
        }
    }
    let snapshot = current.clone();
    let mut memo = Vec::new();
    for (update, _) in &pop.dynamics {
        let leaves = Leaves { vars: &snapshot, ports: &port_leaves, spiked: zero, time, dt: module.dt, rand: &rand, net_params };
        current[update.var.0 as usize] = record(tape, &pop.exprs, update.value, &leaves, &mut memo);
    }
    apply(tape, &pop.updates, &mut current, zero);
    let mut spike = zero;
    if counter > 0 {
        for update in &pop.on_spike {
            current[update.var.0 as usize] = var_leaves[update.var.0 as usize];
        }
    } else if let Some(threshold) = &pop.threshold {
        let mut memo = Vec::new();
        let leaves = Leaves { vars: &current, ports: &port_leaves, spiked: zero, time, dt: module.dt, rand: &rand, net_params };
        let lhs = record(tape, &pop.exprs, threshold.lhs, &leaves, &mut memo);
        let rhs = record(tape, &pop.exprs, threshold.rhs, &leaves, &mut memo);
        let (l, r) = (tape.value(lhs), tape.value(rhs));
        let x = tape.push(Op::Sub(lhs, rhs), l - r);
        let fired = if threshold.op == BinaryOp::Ge { l >= r } else { l > r };
        spike = tape.push(Op::Spike(x, surrogate_grad(surrogate, l - r)), f64::from(u8::from(fired)));
        if fired {
            // The reset is applied through a select whose condition is detached.
            let condition = tape.constant(1.0);
            let before = current.clone();
            let mut reset = current.clone();
            apply(tape, &pop.on_spike, &mut reset, spike);
            for update in &pop.on_spike {
                let v = update.var.0 as usize;
                let value = tape.value(reset[v]);
                current[v] = tape.push(Op::Select(condition, reset[v], before[v]), value);
            }
        }
    }
    apply(tape, &pop.after_spike, &mut current, spike);
    StepTape { var_leaves, port_leaves, vars_after: current, spike }
}

/// The loss terms' values and the gradients for one sample.
pub struct SampleResult {
    pub terms: Vec<f64>,
    pub prediction: Option<usize>,
    /// The gradient; on the batched back end a shard's gradient travels with its first sample
    /// and the others carry `None`.
    pub grads: Option<Grads>,
    /// With batch-level hoisting: the shard's summed port adjoints of time-constant inputs
    /// (see [`crate::batched::Hoisted::weight_grads`]), on its first sample.
    pub hoisted_grads: Vec<Option<Vec<f64>>>,
    pub spikes_per_pop: Vec<f64>,
}

/// Forward only: predicted class and spike counts per population.
pub fn predict(
    module: &Module,
    train: &Train,
    params: &Params,
    sample: SampleRef,
    label: usize,
    seed: u64,
) -> Result<(Option<usize>, Vec<f64>), Unsupported> {
    let trace = interp::run(module, params, &[sample], seed, &interp::net_params(module));
    let prediction = match train.predict {
        Some(root) => {
            let values = loss::evaluate(module, &train.exprs, &trace, 0, params, label, sample.features)?;
            Some(values[root.0 as usize].data[0] as usize)
        }
        None => None,
    };
    Ok((prediction, spike_counts(module, &trace, 0)))
}

/// Spikes per population of sample `b`.
fn spike_counts(module: &Module, trace: &Trace, b: usize) -> Vec<f64> {
    (0..module.populations.len()).map(|p| trace.spike_count(p, b)).collect()
}

/// Forward and backward for one sample with the given phase's loss terms.
pub fn sample_gradients(
    module: &Module,
    train: &Train,
    phase: &Phase,
    params: &Params,
    sample: SampleRef,
    label: usize,
    seed: u64,
) -> Result<SampleResult, Unsupported> {
    let surrogate = bptt_surrogate(train)?;
    let net = interp::net_params(module);
    let trace = interp::run(module, params, &[sample], seed, &net);
    let values = loss::evaluate(module, &train.exprs, &trace, 0, params, label, sample.features)?;
    let mut readout = ReadoutGrads::zeros(module, trace.steps, 1);
    let mut terms = Vec::with_capacity(phase.losses.len());
    for term in &phase.losses {
        terms.push(values[term.value.0 as usize].data[0]);
        loss::backward(module, &trace, &train.exprs, &values, term.value, 1.0, params, &mut readout, 0)?;
    }
    let prediction = train.predict.map(|root| values[root.0 as usize].data[0] as usize);
    let mut grads = zeros_like(params);
    for (g, r) in grads.weights.iter_mut().zip(&readout.weights) {
        for (x, y) in g.iter_mut().zip(r) {
            *x += y;
        }
    }
    backward_through_time(module, params, &trace, &mut readout, &mut grads, surrogate, seed, sample.id, &net);
    Ok(SampleResult { terms, prediction, grads: Some(grads), hoisted_grads: Vec::new(), spikes_per_pop: spike_counts(module, &trace, 0) })
}

/// The surrogate of a `bptt` train block; the other methods' runtimes are not built yet.
fn bptt_surrogate(train: &Train) -> Result<&Surrogate, Unsupported> {
    match &train.method {
        Method::Bptt { surrogate } => Ok(surrogate),
        other => {
            Err(Unsupported(format!("training supports `method = bptt` so far; the `{}` runtime is not built yet", method_name(other))))
        }
    }
}

fn method_name(method: &Method) -> &'static str {
    match method {
        Method::Bptt { .. } => "bptt",
        Method::EventProp => "eventprop",
        Method::Fptt { .. } => "fptt",
        Method::Stdp => "stdp",
    }
}

#[allow(clippy::too_many_arguments)]
fn backward_through_time(
    module: &Module,
    params: &Params,
    trace: &Trace,
    readout: &mut ReadoutGrads,
    grads: &mut Grads,
    surrogate: &Surrogate,
    seed: u64,
    sample_id: u64,
    net: &[f64],
) {
    let steps = trace.steps;
    // d loss / d state after step t, carried backwards; starts from the readout gradients.
    let mut carry: Vec<Vec<Vec<f64>>> = module.populations.iter().map(|p| vec![vec![0.0; p.size()]; p.vars.len()]).collect();
    let mut tape = Tape::default();
    let mut tape_grads = Vec::new();
    for t in (0..steps).rev() {
        for (p, pop) in module.populations.iter().enumerate().rev() {
            let n = pop.size();
            let mut port_grads = vec![vec![0.0; n]; pop.ports.len()];
            for i in 0..n {
                let before: Vec<f64> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v)[i]).collect();
                let ports: Vec<f64> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q)[i]).collect();
                let counter = trace.counters_at(t, p)[i];
                let rng = neuron_rng(seed, sample_id, t, p, i);
                let step = record_step(&mut tape, module, pop, &before, &ports, counter, rng, t as f64 * module.dt, net, surrogate);
                tape_grads.clear();
                tape_grads.resize(tape.ops.len(), 0.0);
                let mut any = false;
                for v in 0..pop.vars.len() {
                    let g = carry[p][v][i] + readout.state_at(t, p, v).map_or(0.0, |g| g[i]);
                    if g != 0.0 {
                        tape_grads[step.vars_after[v]] += g;
                        any = true;
                    }
                }
                let g_spike = readout.spikes_at(t, p).map_or(0.0, |g| g[i]);
                if g_spike != 0.0 {
                    tape_grads[step.spike] += g_spike;
                    any = true;
                }
                if !any {
                    for v in 0..pop.vars.len() {
                        carry[p][v][i] = 0.0;
                    }
                    continue;
                }
                tape.backward(&mut tape_grads);
                for v in 0..pop.vars.len() {
                    carry[p][v][i] = tape_grads[step.var_leaves[v]];
                }
                for (q, leaf) in step.port_leaves.iter().enumerate() {
                    port_grads[q][i] = tape_grads[*leaf];
                }
            }
            // Ports to weights and to presynaptic spikes.
            for (index, proj) in module.projections.iter().enumerate() {
                if proj.target != PopId(p as u32) {
                    continue;
                }
                let g_port = &port_grads[proj.port.0 as usize];
                let (source, source_spike_step): (Vec<f64>, Option<(usize, usize)>) = match &proj.source {
                    Source::Input(id) => (trace.input_at(t, id.0 as usize).to_vec(), None),
                    Source::Population(id) => {
                        let q = id.0 as usize;
                        match t.checked_sub(module.source_delay(proj)) {
                            Some(ts) => (trace.spikes_at(ts, q), Some((ts, q))),
                            None => continue,
                        }
                    }
                };
                let source = source.as_slice();
                let n_pre = source.len();
                let mut g_source = vec![0.0; n_pre];
                project_backward(
                    &proj.connectivity,
                    &params.weights[index],
                    source,
                    g_port,
                    &mut grads.weights[index],
                    &mut g_source,
                    module.source_shape(&proj.source),
                    &pop.shape,
                );
                if !proj.trainable {
                    grads.weights[index].iter_mut().for_each(|g| *g = 0.0);
                }
                if let Some((ts, q)) = source_spike_step {
                    let n_pre = g_source.len();
                    for (slot, g) in readout.spikes_mut(q)[ts * n_pre..(ts + 1) * n_pre].iter_mut().zip(&g_source) {
                        *slot += g;
                    }
                }
            }
        }
    }
    // Parameters carried through time: their gradient is what reaches the start.
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, var) in pop.vars.iter().enumerate() {
            if let VarKind::Param { trainable: true, per_neuron, .. } = var.kind {
                let slot = &mut grads.neuron_params[p][v];
                for i in 0..pop.size() {
                    slot[if per_neuron { i } else { 0 }] += carry[p][v][i];
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

/// The adjoint of [`interp::project`]: `dW += x (x) g`, `dx += W g`.
#[allow(clippy::too_many_arguments)]
pub fn project_backward(
    connectivity: &crate::ir::Connectivity,
    w: &[f64],
    x: &[f64],
    g: &[f64],
    dw: &mut [f64],
    dx: &mut [f64],
    in_shape: &[usize],
    out_shape: &[usize],
) {
    use crate::ir::Connectivity;
    let n_post = g.len();
    match connectivity {
        Connectivity::Dense | Connectivity::AllToAllButSelf => {
            let skip_self = matches!(connectivity, Connectivity::AllToAllButSelf);
            for (i, xi) in x.iter().enumerate() {
                let mut sum = 0.0;
                for j in 0..n_post {
                    if skip_self && i == j {
                        continue;
                    }
                    dw[i * n_post + j] += xi * g[j];
                    sum += w[i * n_post + j] * g[j];
                }
                dx[i] += sum;
            }
        }
        Connectivity::OneToOne => {
            for i in 0..x.len().min(n_post) {
                dw[i] += x[i] * g[i];
                dx[i] += w[i] * g[i];
            }
        }
        Connectivity::Conv2d { kernel, stride, padding } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, st, pad) = (*kernel, *stride, *padding as isize);
            for oc in 0..out_c {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let go = g[(oc * oh + oy) * ow + ox];
                        if go == 0.0 {
                            continue;
                        }
                        for ic in 0..in_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let iy = (oy * st + ky) as isize - pad;
                                    let ix = (ox * st + kx) as isize - pad;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        let xi = (ic * h + iy as usize) * wd + ix as usize;
                                        let wi = ((oc * in_c + ic) * k + ky) * k + kx;
                                        dw[wi] += go * x[xi];
                                        dx[xi] += go * w[wi];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        Connectivity::ConvTranspose2d { kernel, stride, padding, .. } => {
            let (Some([in_c, h, wd]), Some([out_c, oh, ow])) = (chw(in_shape), chw(out_shape)) else { return };
            let (k, st, pad) = (*kernel, *stride, *padding as isize);
            for ic in 0..in_c {
                for iy in 0..h {
                    for ix in 0..wd {
                        let xi = (ic * h + iy) * wd + ix;
                        for oc in 0..out_c {
                            for ky in 0..k {
                                for kx in 0..k {
                                    let oy = (iy * st + ky) as isize - pad;
                                    let ox = (ix * st + kx) as isize - pad;
                                    if oy >= 0 && ox >= 0 && (oy as usize) < oh && (ox as usize) < ow {
                                        let go = g[(oc * oh + oy as usize) * ow + ox as usize];
                                        let wi = ((oc * in_c + ic) * k + ky) * k + kx;
                                        dw[wi] += go * x[xi];
                                        dx[xi] += go * w[wi];
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

// ---------------------------------------------------------------- optimisation

/// Adam, Adamax or SGD state for every learnable value.
pub struct Optimizer {
    m: Grads,
    v: Grads,
    step: i32,
}

impl Optimizer {
    pub fn new(params: &Params) -> Optimizer {
        Optimizer { m: zeros_like(params), v: zeros_like(params), step: 0 }
    }

    pub fn update(
        &mut self,
        module: &Module,
        params: &mut Params,
        grads: &Grads,
        config: &crate::ir_train::Optimizer,
        lr: f64,
        clip: Option<f64>,
    ) {
        self.step += 1;
        let mut scale = 1.0;
        if let Some(max_norm) = clip {
            let norm: f64 =
                grads.weights.iter().flatten().chain(grads.neuron_params.iter().flatten().flatten()).map(|g| g * g).sum::<f64>().sqrt();
            if norm > max_norm {
                scale = max_norm / norm;
            }
        }
        let (b1, b2, eps) = (config.beta1, config.beta2, config.eps);
        // Bias corrections of this step.
        let (c1, c2) = (1.0 - b1.powi(self.step), 1.0 - b2.powi(self.step));
        let apply = |p: &mut f64, g: f64, m: &mut f64, v: &mut f64| {
            let g = g * scale + config.weight_decay * *p;
            match config.kind {
                OptimizerKind::Sgd => {
                    *m = config.momentum * *m + g;
                    *p -= lr * *m;
                }
                OptimizerKind::Adam => {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = b2 * *v + (1.0 - b2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
                OptimizerKind::Adamax => {
                    *m = b1 * *m + (1.0 - b1) * g;
                    *v = (b2 * *v).max(g.abs());
                    *p -= lr / c1 * *m / (*v + eps);
                }
            }
        };
        // Element-wise, so chunks on rayon threads give the same result for any thread count.
        const CHUNK: usize = 1 << 14;
        for (index, proj) in module.projections.iter().enumerate() {
            if !proj.trainable {
                continue;
            }
            params.weights[index]
                .par_chunks_mut(CHUNK)
                .zip(grads.weights[index].par_chunks(CHUNK))
                .zip(self.m.weights[index].par_chunks_mut(CHUNK))
                .zip(self.v.weights[index].par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| {
                    for k in 0..p.len() {
                        apply(&mut p[k], g[k], &mut m[k], &mut v[k]);
                    }
                });
        }
        for (p, pop) in module.populations.iter().enumerate() {
            for (v, var) in pop.vars.iter().enumerate() {
                if matches!(var.kind, VarKind::Param { trainable: true, .. }) {
                    for k in 0..params.neuron_params[p][v].len() {
                        apply(
                            &mut params.neuron_params[p][v][k],
                            grads.neuron_params[p][v][k],
                            &mut self.m.neuron_params[p][v][k],
                            &mut self.v.neuron_params[p][v][k],
                        );
                    }
                }
            }
        }
    }
}

/// Per-epoch metrics.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EpochMetrics {
    pub phase: String,
    pub epoch: usize,
    pub lr: f64,
    pub losses: Vec<(String, f64)>,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    /// Mean spikes per neuron per sample, per population, on the test set.
    pub spikes_per_neuron: Vec<(String, f64)>,
    /// Synaptic operations per test sample: every non-zero presynaptic value times its fan-out.
    pub synaptic_ops: f64,
    /// seeds/003 §4.3 on the dense layers, per test sample: the SNN's FLOPs summed over steps,
    /// `(2 M F - 1) N + 2 N` with F the step's input firing rate, and the equivalent ANN's
    /// `(2 M - 1) N + 2 N`.
    pub snn_flops: f64,
    pub ann_flops: f64,
    pub seconds: f64,
    pub train_samples_per_second: f64,
}

/// Which implementation runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// The scalar reference interpreter, one neuron at a time.
    Interp,
    /// Whole batch rows per IR node, GEMM for dense projections.
    Batched,
    /// The batched runtime with Cranelift-compiled forward and backward kernels per population.
    Jit,
}

/// What to run: limits and threads.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub epochs: Option<usize>,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub seed: u64,
    pub backend: Backend,
}

/// Samples per shard of the batched back end: fixed, so that gradients are summed in the same
/// order whatever the number of threads.
pub const SHARD: usize = 32;

/// Samples per shard when evaluating (no gradients to hold, so larger shards pay).
const EVAL_SHARD: usize = 64;

/// Forward and backward for a shard of samples on the batched back end.
pub fn shard_gradients(
    module: &Module,
    train: &Train,
    phase: &Phase,
    params: &Params,
    samples: &[SampleRef],
    labels: &[usize],
    seed: u64,
) -> Result<Vec<SampleResult>, Unsupported> {
    shard_gradients_with(None, module, train, phase, params, samples, labels, seed, None)
}

/// [`shard_gradients`] with the JIT's kernels when `compiled` is given.
#[allow(clippy::too_many_arguments)]
pub fn shard_gradients_with(
    compiled: Option<&crate::jit::Compiled>,
    module: &Module,
    train: &Train,
    phase: &Phase,
    params: &Params,
    samples: &[SampleRef],
    labels: &[usize],
    seed: u64,
    hoisted: Option<crate::batched::HoistedRows>,
) -> Result<Vec<SampleResult>, Unsupported> {
    let surrogate = bptt_surrogate(train)?;
    let net = interp::net_params(module);
    let kernels = crate::batched::Kernels::of(compiled);
    let trace = crate::batched::run_with(module, params, samples, seed, &net, kernels, hoisted);
    let batch = samples.len();
    let mut readout = ReadoutGrads::zeros(module, trace.steps, batch);
    let mut results = Vec::with_capacity(batch);
    for (b, sample) in samples.iter().enumerate() {
        let values = loss::evaluate(module, &train.exprs, &trace, b, params, labels[b], sample.features)?;
        let mut terms = Vec::with_capacity(phase.losses.len());
        for term in &phase.losses {
            terms.push(values[term.value.0 as usize].data[0]);
            loss::backward(module, &trace, &train.exprs, &values, term.value, 1.0, params, &mut readout, b)?;
        }
        results.push(SampleResult {
            terms,
            prediction: train.predict.map(|root| values[root.0 as usize].data[0] as usize),
            grads: None,
            hoisted_grads: Vec::new(),
            spikes_per_pop: spike_counts(module, &trace, b),
        });
    }
    // Projections hoisted at batch level get their weight gradient once for the whole batch:
    // no shard-sized buffer for them.
    let deferred = |index: usize| hoisted.is_some_and(|pre| pre.hoisted.y[index].is_some());
    let mut grads = zeros_except(params, deferred);
    for (g, r) in grads.weights.iter_mut().zip(&readout.weights) {
        if g.len() < r.len() {
            g.resize(r.len(), 0.0);
        }
        for (x, y) in g.iter_mut().zip(r) {
            *x += y;
        }
    }
    let adjoint = match compiled {
        Some(compiled) if compiled.has_backward() => crate::batched::Adjoint::Jit(compiled),
        _ => crate::batched::Adjoint::Tape(surrogate),
    };
    let hoisted_grads =
        crate::batched::backward(module, params, &trace, &mut readout, &mut grads, adjoint, samples, seed, &net, hoisted.is_some());
    // The shard's gradient travels with its first sample; the others carry zeros.
    if let Some(first) = results.first_mut() {
        first.grads = Some(grads);
        first.hoisted_grads = hoisted_grads;
    }
    trace.recycle();
    Ok(results)
}

/// Trains a module as its train block says and reports metrics after every epoch.
pub fn train_module(
    module: &Module,
    data: &crate::data::Dataset,
    config: &RunConfig,
    mut on_epoch: impl FnMut(&EpochMetrics),
    mut on_batch: impl FnMut(usize, usize, f64),
) -> Result<(Params, Vec<EpochMetrics>), Unsupported> {
    let train = module.train.as_ref().ok_or_else(|| Unsupported("the model has no train block".to_string()))?;
    let seed = config.seed ^ train.seed;
    let mut params = init_params(module, seed);
    let n_train = config.limit_train.map_or(data.train.len(), |l| l.min(data.train.len()));
    let n_test = config.limit_test.map_or(data.test.len(), |l| l.min(data.test.len()));
    let compiled = match config.backend {
        Backend::Jit => Some(crate::jit::compile(module).map_err(Unsupported)?),
        Backend::Interp | Backend::Batched => None,
    };
    let net = interp::net_params(module);
    let mut history = Vec::new();
    let mut global_epoch = 0;
    for phase in &train.phases {
        let mut optimizer = Optimizer::new(&params);
        let epochs = config.epochs.unwrap_or(phase.epochs);
        for epoch in 0..epochs {
            let started = std::time::Instant::now();
            let lr = match train.schedule {
                LrSchedule::Constant => phase.optimizer.lr,
                LrSchedule::Step { every, gamma } => phase.optimizer.lr * gamma.powi((epoch / every.max(1)) as i32),
                LrSchedule::Exponential { gamma } => phase.optimizer.lr * gamma.powi(epoch as i32),
            };
            let mut order: Vec<usize> = (0..n_train).collect();
            Stream::new(seed.wrapping_add(1 + global_epoch as u64)).shuffle(&mut order);
            let mut term_sums = vec![0.0; phase.losses.len()];
            let mut correct = 0usize;
            let mut hoisted = crate::batched::Hoisted::default();
            for (batch_index, chunk) in order.chunks(train.batch.max(1)).enumerate() {
                let results: Vec<Result<SampleResult, Unsupported>> = match config.backend {
                    Backend::Interp => chunk
                        .par_iter()
                        .map(|&i| {
                            sample_gradients(
                                module,
                                train,
                                phase,
                                &params,
                                SampleRef { id: i as u64, features: data.train.sample(i) },
                                usize::from(data.train.labels[i]),
                                seed,
                            )
                        })
                        .collect(),
                    Backend::Batched | Backend::Jit => {
                        let samples: Vec<SampleRef> =
                            chunk.iter().map(|&i| SampleRef { id: i as u64, features: data.train.sample(i) }).collect();
                        hoisted = crate::batched::hoist(module, &params, &samples, seed, &net);
                        let hoisted = &hoisted;
                        chunk
                            .par_chunks(SHARD)
                            .enumerate()
                            .map(|(s, shard)| {
                                let labels: Vec<usize> = shard.iter().map(|&i| usize::from(data.train.labels[i])).collect();
                                let rows = crate::batched::HoistedRows { hoisted, from: s * SHARD };
                                let samples = &samples[s * SHARD..s * SHARD + shard.len()];
                                shard_gradients_with(compiled.as_ref(), module, train, phase, &params, samples, &labels, seed, Some(rows))
                            })
                            .collect::<Vec<_>>()
                            .into_iter()
                            .flat_map(|r| match r {
                                Ok(results) => results.into_iter().map(Ok).collect::<Vec<_>>(),
                                Err(e) => vec![Err(e)],
                            })
                            .collect()
                    }
                };
                let mut total = zeros_like(&params);
                let mut hoisted_grads = Vec::new();
                for (result, &i) in results.into_iter().zip(chunk) {
                    let mut result = result?;
                    if let Some(grads) = &result.grads {
                        add_grads(&mut total, grads);
                    }
                    if !result.hoisted_grads.is_empty() {
                        hoisted_grads.push(std::mem::take(&mut result.hoisted_grads));
                    }
                    for (sum, term) in term_sums.iter_mut().zip(&result.terms) {
                        *sum += term;
                    }
                    correct += usize::from(result.prediction == Some(usize::from(data.train.labels[i])));
                }
                hoisted.weight_grads(module, &hoisted_grads, &mut total);
                let scale = 1.0 / chunk.len() as f64;
                total.weights.iter_mut().flatten().for_each(|g| *g *= scale);
                total.neuron_params.iter_mut().flatten().flatten().for_each(|g| *g *= scale);
                optimizer.update(module, &mut params, &total, &phase.optimizer, lr, train.clip_grad_norm);
                let running = term_sums.iter().sum::<f64>() / ((batch_index + 1) * train.batch.max(1)).min(n_train) as f64;
                on_batch(((batch_index + 1) * train.batch.max(1)).min(n_train), n_train, running);
            }
            let train_seconds = started.elapsed().as_secs_f64();
            let (test_accuracy, spikes) = evaluate_with(config.backend, module, train, &params, &data.test, n_test, seed)?;
            let (synaptic_ops, snn_flops, ann_flops) = operation_counts(module, &params, &data.test, n_test.min(256), seed);
            let metrics = EpochMetrics {
                phase: phase.name.clone(),
                epoch: global_epoch + 1,
                lr,
                losses: phase.losses.iter().zip(&term_sums).map(|(t, s)| (t.name.clone(), s / n_train.max(1) as f64)).collect(),
                train_accuracy: correct as f64 / n_train.max(1) as f64,
                test_accuracy,
                spikes_per_neuron: module.populations.iter().zip(spikes).map(|(p, s)| (p.name.clone(), s)).collect(),
                synaptic_ops,
                snn_flops,
                ann_flops,
                seconds: started.elapsed().as_secs_f64(),
                train_samples_per_second: n_train as f64 / train_seconds.max(1e-9),
            };
            on_epoch(&metrics);
            history.push(metrics);
            global_epoch += 1;
        }
    }
    Ok((params, history))
}

/// Synaptic operations, SNN FLOPs and ANN FLOPs per sample, averaged over the first `n`
/// samples of `split` (see [`EpochMetrics`]).
pub fn operation_counts(module: &Module, params: &Params, split: &Split, n: usize, seed: u64) -> (f64, f64, f64) {
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let net = interp::net_params(module);
    let samples: Vec<SampleRef> = (0..n).map(|i| SampleRef { id: 1_000_000_000 + i as u64, features: split.sample(i) }).collect();
    let mut totals = (0.0, 0.0, 0.0);
    for shard in samples.chunks(SHARD) {
        let trace = crate::batched::run(module, params, shard, seed, &net, crate::batched::Kernels::Tape);
        for (index, proj) in module.projections.iter().enumerate() {
            let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
            let fan_out = match proj.connectivity {
                crate::ir::Connectivity::Conv2d { kernel, .. } | crate::ir::Connectivity::ConvTranspose2d { kernel, .. } => {
                    proj.weight_shape[0] * kernel * kernel
                }
                _ => params.weights[index].len() / n_pre.max(1),
            } as f64;
            let dense = proj.connectivity == crate::ir::Connectivity::Dense;
            let (m, big_n) = (n_pre as f64, n_post as f64);
            for t in 0..trace.steps {
                let values: Vec<f64> = match &proj.source {
                    Source::Input(id) => trace.input_at(t, id.0 as usize).to_vec(),
                    Source::Population(id) => match t.checked_sub(module.source_delay(proj)) {
                        Some(ts) => trace.spikes_at(ts, id.0 as usize),
                        None => continue,
                    },
                };
                for b in 0..shard.len() {
                    let active = values[b * n_pre..(b + 1) * n_pre].iter().filter(|v| **v != 0.0).count() as f64;
                    totals.0 += active * fan_out;
                    if dense {
                        let rate = active / m;
                        totals.1 += (2.0 * m * rate - 1.0) * big_n + 2.0 * big_n;
                    }
                }
            }
            if dense {
                totals.2 += ((2.0 * m - 1.0) * big_n + 2.0 * big_n) * shard.len() as f64;
            }
        }
    }
    (totals.0 / n as f64, totals.1 / n as f64, totals.2 / n as f64)
}

/// Test accuracy and spikes per neuron per sample on the chosen back end.
pub fn evaluate_with(
    backend: Backend,
    module: &Module,
    train: &Train,
    params: &Params,
    split: &Split,
    n: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>), Unsupported> {
    if backend == Backend::Interp {
        return evaluate(module, train, params, split, n, seed);
    }
    let indices: Vec<usize> = (0..n).collect();
    let net = interp::net_params(module);
    let compiled = match backend {
        Backend::Jit => Some(crate::jit::compile(module).map_err(Unsupported)?),
        Backend::Interp | Backend::Batched => None,
    };
    let kernels = crate::batched::Kernels::of(compiled.as_ref());
    let shards: Vec<Result<(usize, Vec<f64>), Unsupported>> = indices
        .par_chunks(EVAL_SHARD)
        .map(|shard| {
            let samples: Vec<SampleRef> =
                shard.iter().map(|&i| SampleRef { id: 1_000_000_000 + i as u64, features: split.sample(i) }).collect();
            let trace = crate::batched::run(module, params, &samples, seed, &net, kernels);
            let mut correct = 0;
            let mut spikes = vec![0.0; module.populations.len()];
            for (b, &i) in shard.iter().enumerate() {
                if let Some(root) = train.predict {
                    let values =
                        loss::evaluate(module, &train.exprs, &trace, b, params, usize::from(split.labels[i]), samples[b].features)?;
                    correct += usize::from(values[root.0 as usize].data[0] as usize == usize::from(split.labels[i]));
                }
                for (s, c) in spikes.iter_mut().zip(spike_counts(module, &trace, b)) {
                    *s += c;
                }
            }
            trace.recycle();
            Ok((correct, spikes))
        })
        .collect();
    let mut correct = 0;
    let mut spikes = vec![0.0; module.populations.len()];
    for shard in shards {
        let (c, s) = shard?;
        correct += c;
        for (total, x) in spikes.iter_mut().zip(s) {
            *total += x;
        }
    }
    for (s, pop) in spikes.iter_mut().zip(&module.populations) {
        *s /= (n.max(1) * pop.size()) as f64;
    }
    Ok((correct as f64 / n.max(1) as f64, spikes))
}

/// Test accuracy and mean spikes per neuron per sample for each population.
pub fn evaluate(
    module: &Module,
    train: &Train,
    params: &Params,
    split: &Split,
    n: usize,
    seed: u64,
) -> Result<(f64, Vec<f64>), Unsupported> {
    let results: Vec<Result<(Option<usize>, Vec<f64>), Unsupported>> = (0..n)
        .into_par_iter()
        .map(|i| {
            predict(
                module,
                train,
                params,
                SampleRef { id: 1_000_000_000 + i as u64, features: split.sample(i) },
                usize::from(split.labels[i]),
                seed,
            )
        })
        .collect();
    let mut correct = 0;
    let mut spikes = vec![0.0; module.populations.len()];
    for (i, result) in results.into_iter().enumerate() {
        let (prediction, counts) = result?;
        correct += usize::from(prediction == Some(usize::from(split.labels[i])));
        for (s, c) in spikes.iter_mut().zip(counts) {
            *s += c;
        }
    }
    for (s, pop) in spikes.iter_mut().zip(&module.populations) {
        *s /= (n.max(1) * pop.size()) as f64;
    }
    Ok((correct as f64 / n.max(1) as f64, spikes))
}
