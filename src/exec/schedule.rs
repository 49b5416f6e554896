//! The compiled engine's schedules: how the JIT's per-population kernels, the encoders and the
//! projections (GEMM, event-driven accumulation, the other connectivities) are put together
//! over a batch, forwards and backwards.
//!
//! A feed-forward network (every projection reads a population declared before its target, or
//! an input) runs population by population over all steps, so that each projection is one GEMM
//! or one event-driven pass over every step's rows, forwards and backwards. A network with
//! feedback, or a run with a per-step hook, runs step by step. Inputs constant over time are
//! projected once per batch ([`hoist`]) and their weight gradient is one GEMM per batch.

use std::borrow::Cow;
use std::ops::Range;

use crate::data::uniform_prefix;
use crate::exec::jit::Compiled;
use crate::exec::kernels::bits::Bits;
use crate::exec::kernels::connectivity::{project, project_backward};
use crate::exec::kernels::conv::{self, Product, Spikes};
use crate::exec::kernels::events::{self, Rows, give_back};
use crate::exec::kernels::gemm::{dense, dense_input_grad, dense_input_grad_at, dense_weight_grad, gemm_columns};
use crate::exec::kernels::normalize::{l2_normalize_rows, l2_normalize_rows_backward};
use crate::exec::pool::{overwritten, spare, zeroed};
use crate::exec::real::Real;
use crate::exec::state::{
    At, Grads, Hoisted, HoistedRows, PER_SAMPLE, Params, ParamsAccess, ReadoutGrads, SampleRef, StepHook, Stepping, Summary, Trace,
    initial_values,
};
use crate::ir::{self, Connectivity, Module, PopId, Source};

/// The random keys of a sample's encoder call in step `t`: the step's and the sample's (see
/// [`crate::exec::state::RandKey`]).
fn sample_keys(seed: u64, id: u64, t: usize) -> (u64, u64) {
    (uniform_prefix(seed, id, t as u64), uniform_prefix(seed, id, PER_SAMPLE))
}

/// Writes every input's encoder output for the trace rows `rows` (steps `offset + row`); an
/// input that does not change over time is encoded once and copied. Rest steps are silent.
fn encode_rows<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
    trace: &mut Trace<F>,
    rows: Range<usize>,
) {
    let offset = trace.offset;
    for (i, input) in module.inputs.iter().enumerate() {
        let n = trace.input_sizes[i];
        let r = trace.batch * n;
        let constant = input.is_constant_over_time();
        for row in rows.clone() {
            let t = offset + row;
            let values = &mut trace.inputs[i][..(row + 1) * r];
            if t >= module.steps {
                values[row * r..].fill(F::zero());
                continue;
            }
            if constant && row > rows.start {
                let (done, rest) = values.split_at_mut(row * r);
                rest.copy_from_slice(&done[rows.start * r..(rows.start + 1) * r]);
                continue;
            }
            for (b, sample) in samples.iter().enumerate() {
                let out = &mut values[row * r + b * n..row * r + (b + 1) * n];
                compiled.encode(module, i, sample.features, t, sample_keys(seed, sample.id, t), net, out);
            }
        }
    }
}

/// Encoder `i`'s output at step 0 for a batch (inputs constant over time).
fn encode_once<F: Real>(compiled: &Compiled<F>, module: &Module, i: usize, samples: &[SampleRef], seed: u64, net: &[F]) -> Vec<F> {
    let n: usize = module.inputs[i].shape.iter().product();
    let mut out = vec![F::zero(); samples.len() * n];
    for (b, sample) in samples.iter().enumerate() {
        compiled.encode(module, i, sample.features, 0, sample_keys(seed, sample.id, 0), net, &mut out[b * n..(b + 1) * n]);
    }
    out
}

/// The fraction of nonzero entries of `x`.
fn density<F: Real>(x: &Rows<F>) -> f64 {
    x.active() as f64 / x.len().max(1) as f64
}

/// `y += x W` over `rows` rows of one projection: a GEMM, event-driven accumulation for
/// sparse spikes, or the connectivity's own loop.
fn project_rows<F: Real>(module: &Module, proj: &ir::Projection, w: &[F], x: Rows<F>, y: &mut [F], rows: usize) {
    if rows == 0 {
        return;
    }
    let (n_pre, n_post) = (x.len() / rows, y.len() / rows);
    if proj.connectivity == Connectivity::Dense && module.source_is_binary(proj) && x.sparse_for(n_post) {
        events::accumulate(x, w, y, n_pre, n_post);
        return;
    }
    if matches!(proj.connectivity, Connectivity::OneToOne | Connectivity::AllToAllButSelf) && module.source_is_binary(proj) {
        events::accumulate_sparse_connectivity(x, w, y, n_pre, n_post, proj.connectivity == Connectivity::OneToOne);
        return;
    }
    let (in_shape, out_shape) = (module.source_shape(&proj.source), &module.population(proj.target).shape);
    if let Some((geo, transposed)) = conv::Geometry::of(&proj.connectivity, in_shape, out_shape) {
        let density = if module.source_is_binary(proj) { density(&x) } else { 1.0 };
        let (product, spikes) = if transposed { (Product::Adjoint, Spikes::Output) } else { (Product::Forward, Spikes::Input) };
        if density < conv::event_crossover(product, geo.run(product, spikes)) {
            // Spikes are read from their bits where the trace keeps them so.
            if transposed {
                conv::adjoint_events(&geo, w, &x, y, rows);
            } else {
                conv::forward_events(&geo, w, &x, y, rows);
            }
            return;
        }
        let values = x.values();
        if transposed {
            conv::adjoint(&geo, w, &values, y, rows, false);
        } else {
            conv::forward(&geo, w, &values, y, rows, false);
        }
        give_back(values);
        return;
    }
    let values = x.values();
    if proj.connectivity == Connectivity::Dense {
        dense(rows, n_pre, n_post, &values, w, y);
    } else {
        for (xr, yr) in values.chunks_exact(n_pre).zip(y.chunks_exact_mut(n_post)) {
            project(&proj.connectivity, w, xr, yr, in_shape, out_shape);
        }
    }
    give_back(values);
}

/// Whether projection `proj` reads an input that is constant over the active steps, without
/// delay: its product is computed once per batch and its weight gradient accumulated once.
pub fn is_hoisted(module: &Module, proj: &ir::Projection) -> bool {
    matches!(&proj.source, Source::Input(id) if module.inputs[id.0 as usize].is_constant_over_time()) && proj.delay_steps == 0
}

/// Sums every projection into population `p`'s ports for the trace rows in `range`. Sources
/// must be written for the rows read: in a feed-forward schedule every earlier population is
/// complete; a window's trace keeps the rows before it that delayed connections read.
fn deliver<F: Real>(
    module: &Module,
    params: &Params<F>,
    p: usize,
    range: Range<usize>,
    trace: &mut Trace<F>,
    hoisted: &mut [Option<Vec<F>>],
) {
    let batch = trace.batch;
    let r_post = trace.row(p);
    let trace_offset = trace.offset;
    let Trace { ports, spikes, inputs, states, .. } = trace;
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let r_pre = batch * module.source_size(&proj.source);
        let w = &params.weights[index];
        let out = &mut ports[p][proj.port.0 as usize];
        if let Source::State(s) = &proj.source {
            // Step `t` reads the state row `t + 1 - delay`: one slice for the whole range.
            let Some((t0, rows)) = state_rows(module, proj, range.clone()) else { continue };
            let x = carried(&states[s.pop.0 as usize][s.var.0 as usize][rows.start * r_pre..rows.end * r_pre], s, module);
            project_rows(module, proj, w, Rows::Values(&x), &mut out[t0 * r_post..range.end * r_post], (range.end - t0) * batch);
            give_back(x);
            continue;
        }
        let source = |from: usize, to: usize| match &proj.source {
            Source::Input(id) => Rows::Values(&inputs[id.0 as usize][from..to]),
            Source::Population(q) => Rows::Bits(&spikes[q.0 as usize], from..to),
            Source::State(_) => unreachable!("handled above"),
        };
        if is_hoisted(module, proj) {
            let cached = hoisted[index].get_or_insert_with(|| {
                let mut y = vec![F::zero(); r_post];
                project_rows(module, proj, w, source(0, r_pre), &mut y, batch);
                y
            });
            for t in range.start..range.end.min(module.steps.saturating_sub(trace_offset)) {
                for (o, c) in out[t * r_post..(t + 1) * r_post].iter_mut().zip(cached.iter()) {
                    *o += *c;
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

/// The steps of `range` at which state-carrying projection `proj` has a value, from the first
/// (`t0`), and the trace rows of states they read (step `t` reads row `t + 1 - delay`).
fn state_rows(module: &Module, proj: &ir::Projection, range: Range<usize>) -> Option<(usize, Range<usize>)> {
    let delay = module.source_delay(proj);
    let t0 = range.start.max(delay.saturating_sub(1));
    (t0 < range.end).then(|| (t0, t0 + 1 - delay..range.end + 1 - delay))
}

/// The rows of a state a connection carries: the trace's own, or normalised into a pooled
/// buffer when the connection says so (hand it back with [`give_back`]).
fn carried<'a, F: Real>(rows: &'a [F], source: &ir::StateSource, module: &Module) -> Cow<'a, [F]> {
    if !source.l2_normalize {
        return Cow::Borrowed(rows);
    }
    let mut x = overwritten(rows.len());
    x.copy_from_slice(rows);
    l2_normalize_rows(&mut x, module.population(source.pop).size());
    Cow::Owned(x)
}

/// Encodes every time-constant input of the batch and projects it: one GEMM per hoisted dense
/// projection over all the batch's rows.
pub fn hoist<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    params: &Params<F>,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
) -> Hoisted<F> {
    let batch = samples.len();
    let mut hoisted = Hoisted::none(module);
    for (index, proj) in module.projections.iter().enumerate() {
        let Source::Input(id) = &proj.source else { continue };
        if !is_hoisted(module, proj) || proj.connectivity != Connectivity::Dense || module.steps == 0 {
            continue;
        }
        let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
        let x = encode_once(compiled, module, id.0 as usize, samples, seed, net);
        let mut y = vec![F::zero(); batch * n_post];
        hoisted.column_blocks += gemm_columns(batch, n_pre, n_post, &x, n_pre as isize, 1, &params.weights[index], &mut y);
        hoisted.x[index] = Some(x);
        hoisted.y[index] = Some(y);
    }
    hoisted
}

/// Adds the weight gradients of the hoisted projections: `dW += X^T G` over the whole batch,
/// with `G` the shards' summed port adjoints (see [`backward`]) stacked in shard order.
pub fn hoisted_weight_grads<F: Real>(module: &Module, hoisted: &Hoisted<F>, shards: &[Vec<Option<Vec<F>>>], grads: &mut Grads<F>) {
    for (index, x) in hoisted.x.iter().enumerate() {
        let Some(x) = x else { continue };
        let proj = &module.projections[index];
        if !proj.trainable {
            continue;
        }
        let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
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

/// Forward pass over a batch into a [`Trace`]. A feed-forward network without a hook runs
/// population by population over all steps; otherwise step by step, with `hook` after every
/// population's step.
#[allow(clippy::too_many_arguments)]
pub fn run<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    params: ParamsAccess<F>,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
    pre: Option<HoistedRows<F>>,
    hook: Option<&mut dyn StepHook<F>>,
) -> Trace<F> {
    let mut stepping = Stepping::begin(module, params.get(), samples, seed, module.steps + module.rest_steps);
    if let Some(pre) = pre {
        let batch = samples.len();
        for (index, y) in pre.hoisted.y.iter().enumerate() {
            if let Some(y) = y {
                let n_post = module.population(module.projections[index].target).size();
                stepping.hoisted[index] = Some(y[pre.from * n_post..(pre.from + batch) * n_post].to_vec());
            }
        }
    }
    let steps = stepping.trace.steps;
    advance(compiled, module, params, &mut stepping, steps, samples, seed, net, hook);
    stepping.trace
}

/// Runs `stepping` on to step `until` with `params`, encoding the inputs of the steps it runs:
/// in a feed-forward network without a hook population by population over those steps,
/// otherwise step by step. Steps are absolute; the trace holds them from its `offset`.
#[allow(clippy::too_many_arguments)]
pub fn advance<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    mut params: ParamsAccess<F>,
    stepping: &mut Stepping<F>,
    until: usize,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
    mut hook: Option<&mut dyn StepHook<F>>,
) {
    let Stepping { trace, done, counters, hoisted } = stepping;
    let offset = trace.offset;
    // Trace rows, from the first step not run to `until` (at most the trace's last).
    let range = *done - offset..until.clamp(*done, offset + trace.steps) - offset;
    encode_rows(compiled, module, samples, seed, net, trace, range.clone());
    let forward = |trace: &mut Trace<F>, p: usize, row: usize, counters: &mut [u32]| {
        // Populations without a refractory period keep their counters at 0: nothing to store.
        if module.populations[p].refractory.is_some() {
            let r = trace.row(p);
            trace.refractory[p][row * r..(row + 1) * r].copy_from_slice(counters);
        }
        compiled.step_at(module, p, At { step: offset + row, row }, trace, counters, net);
    };
    if module.is_feed_forward() && hook.is_none() {
        for (p, counters) in counters.iter_mut().enumerate() {
            deliver(module, params.get(), p, range.clone(), trace, hoisted);
            for t in range.clone() {
                forward(trace, p, t, counters);
            }
        }
    } else {
        for t in range.clone() {
            let at = At { step: offset + t, row: t };
            if let Some(hook) = hook.as_deref_mut() {
                hook.before_step(at, trace);
            }
            for (p, counters) in counters.iter_mut().enumerate() {
                deliver(module, params.get(), p, t..t + 1, trace, hoisted);
                forward(trace, p, t, counters);
                if let Some(hook) = hook.as_deref_mut() {
                    hook.after_population(at, p, trace, params.get_mut());
                }
            }
        }
    }
    *done = offset + range.end;
}

/// Rows of the window a streaming pass keeps: the current step and as many before it as the
/// longest delay reaches back.
pub fn window_rows(module: &Module) -> usize {
    module.longest_delay() + 1
}

/// A forward pass over one sample that keeps only a window of the last steps (see
/// [`window_rows`]): memory in the network's size, not in its steps. What it keeps is the
/// [`Summary`]; `hook` sees every step as it happens, as in [`run`].
#[allow(clippy::too_many_arguments)]
pub fn stream<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    mut params: ParamsAccess<F>,
    sample: SampleRef,
    seed: u64,
    net: &[F],
    mut hook: Option<&mut dyn StepHook<F>>,
) -> Summary<F> {
    let rows = window_rows(module);
    let mut trace = Trace::window(module, rows);
    let samples = [sample];
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, values) in initial_values(pop, p, params.get(), 1, seed, &samples).iter().enumerate() {
            trace.states[p][v][..values.len()].copy_from_slice(values);
        }
    }
    let steps = module.steps + module.rest_steps;
    let mut counters: Vec<Vec<u32>> = trace.sizes.iter().map(|n| vec![0; *n]).collect();
    let mut counts: Vec<Vec<u32>> = trace.sizes.iter().map(|n| vec![0; *n]).collect();
    let mut hoisted: Vec<Option<Vec<F>>> = vec![None; module.projections.len()];
    // Encoder outputs that do not change over time, encoded once.
    let mut constant: Vec<Option<Vec<F>>> = vec![None; module.inputs.len()];
    for t in 0..steps {
        let row = t % rows;
        for (i, input) in module.inputs.iter().enumerate() {
            let n = trace.input_sizes[i];
            let out = &mut trace.inputs[i][row * n..(row + 1) * n];
            if t >= module.steps {
                out.fill(F::zero());
            } else if input.is_constant_over_time() {
                let values = constant[i].get_or_insert_with(|| {
                    let mut values = vec![F::zero(); n];
                    compiled.encode(module, i, sample.features, 0, sample_keys(seed, sample.id, 0), net, &mut values);
                    values
                });
                out.copy_from_slice(values);
            } else {
                compiled.encode(module, i, sample.features, t, sample_keys(seed, sample.id, t), net, out);
            }
        }
        let at = At { step: t, row };
        if let Some(hook) = hook.as_deref_mut() {
            hook.before_step(at, &mut trace);
        }
        for p in 0..module.populations.len() {
            deliver_row(module, params.get(), p, at, rows, &mut trace, &mut hoisted);
            compiled.step_at(module, p, at, &mut trace, &mut counters[p], net);
            let r = trace.row(p);
            let count = &mut counts[p];
            trace.spikes[p].for_each_set(row * r..(row + 1) * r, |i| count[i] += 1);
            if let Some(hook) = hook.as_deref_mut() {
                hook.after_population(at, p, &mut trace, params.get_mut());
            }
        }
        // The state after the window's last row is the state before its first.
        if row + 1 == rows {
            for (p, states) in trace.states.iter_mut().enumerate() {
                let r = trace.sizes[p];
                for values in states.iter_mut() {
                    values.copy_within(rows * r..(rows + 1) * r, 0);
                }
            }
        }
    }
    // Row `rows` keeps the state after the window's last row after it is copied to row 0.
    let last_row = if steps == 0 { 0 } else { (steps - 1) % rows + 1 };
    let last = trace
        .states
        .iter()
        .enumerate()
        .map(|(p, states)| {
            let r = trace.sizes[p];
            states.iter().map(|values| values[last_row * r..(last_row + 1) * r].to_vec()).collect()
        })
        .collect();
    Summary { steps, counts, last }
}

/// Sums every projection into population `p`'s ports for step `at` of a streaming pass whose
/// trace keeps `rows` rows.
fn deliver_row<F: Real>(
    module: &Module,
    params: &Params<F>,
    p: usize,
    at: At,
    rows: usize,
    trace: &mut Trace<F>,
    hoisted: &mut [Option<Vec<F>>],
) {
    let r_post = trace.row(p);
    let Trace { ports, spikes, inputs, states, .. } = trace;
    for port in ports[p].iter_mut() {
        port[at.row * r_post..(at.row + 1) * r_post].fill(F::zero());
    }
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let r_pre = module.source_size(&proj.source);
        let w = &params.weights[index];
        let out = &mut ports[p][proj.port.0 as usize][at.row * r_post..(at.row + 1) * r_post];
        if is_hoisted(module, proj) {
            if at.step >= module.steps {
                continue;
            }
            let Source::Input(id) = &proj.source else { continue };
            let cached = hoisted[index].get_or_insert_with(|| {
                let mut y = vec![F::zero(); r_post];
                project_rows(module, proj, w, Rows::Values(&inputs[id.0 as usize][at.row * r_pre..(at.row + 1) * r_pre]), &mut y, 1);
                y
            });
            for (o, c) in out.iter_mut().zip(cached.iter()) {
                *o += *c;
            }
            continue;
        }
        let delay = module.source_delay(proj);
        if let Source::State(s) = &proj.source {
            // The state after step `step - delay`: this step's (written by the source before
            // the target steps) without delay, else where the window keeps it, row 0 holding
            // the state after a window's last row.
            let Some(after) = (at.step + 1).checked_sub(delay) else { continue };
            let index = if delay == 0 { at.row + 1 } else { after % rows };
            let x = carried(&states[s.pop.0 as usize][s.var.0 as usize][index * r_pre..(index + 1) * r_pre], s, module);
            project_rows(module, proj, w, Rows::Values(&x), out, 1);
            give_back(x);
            continue;
        }
        let Some(from) = at.step.checked_sub(delay) else { continue };
        let source_row = from % rows;
        let x = match &proj.source {
            Source::Input(id) => Rows::Values(&inputs[id.0 as usize][source_row * r_pre..(source_row + 1) * r_pre]),
            Source::Population(q) => Rows::Bits(&spikes[q.0 as usize], source_row * r_pre..(source_row + 1) * r_pre),
            Source::State(_) => unreachable!("handled above"),
        };
        project_rows(module, proj, w, x, out, 1);
    }
}

/// The per-batch context of the backward pass.
struct Backward<'a, F> {
    module: &'a Module,
    params: &'a Params<F>,
    trace: &'a Trace<F>,
    compiled: &'a Compiled<F>,
    net: &'a [F],
}

impl<F: Real> Backward<'_, F> {
    /// The adjoint of population `p`'s step `t`: `carry` goes in as d(state after) (without
    /// the readout's part, added here) and comes out as d(state before); the port adjoints are
    /// written to `d_ports`.
    fn step(
        &self,
        p: usize,
        t: usize,
        readout: &ReadoutGrads<F>,
        carry: &mut Vec<Vec<F>>,
        scratch: &mut Vec<Vec<F>>,
        d_ports: &mut [&mut [F]],
    ) {
        let r = self.trace.row(p);
        for (v, g) in carry.iter_mut().enumerate() {
            if let Some(readout) = readout.state_at(t, p, v) {
                for (a, b) in g.iter_mut().zip(readout) {
                    *a += *b;
                }
            }
        }
        // A population whose spikes no loss or projection reads gets zeros.
        let zeros = readout.spikes_at(t, p).is_none().then(|| zeroed(r));
        let d_spike = readout.spikes_at(t, p).or(zeros.as_deref()).expect("a spike gradient or zeros");
        self.compiled.step_adjoint(self.module, p, t, self.trace, carry, d_spike, scratch, d_ports, self.net);
        std::mem::swap(carry, scratch);
        spare(zeros);
    }

    /// Port adjoints of population `p` over the steps in `range` (`g_ports` holds their rows)
    /// to weight gradients and to the spike gradients of source populations.
    fn projections(
        &self,
        p: usize,
        range: Range<usize>,
        g_ports: &[Vec<F>],
        readout: &mut ReadoutGrads<F>,
        grads: &mut Grads<F>,
        hoisted: &mut [Option<Vec<F>>],
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
                let sum = hoisted[index].get_or_insert_with(|| vec![F::zero(); r_post]);
                for t in range.start..range.end.min(module.steps.saturating_sub(trace.offset)) {
                    let row = t - range.start;
                    for (s, x) in sum.iter_mut().zip(&g[row * r_post..(row + 1) * r_post]) {
                        *s += *x;
                    }
                }
                continue;
            }
            let dw = if proj.trainable { Some(grads.weights[index].as_mut_slice()) } else { None };
            let r_pre = batch * module.source_size(&proj.source);
            if let Source::State(s) = &proj.source {
                let Some((t0, states)) = state_rows(module, proj, range.clone()) else { continue };
                let (rows, n_pre) = ((range.end - t0) * batch, module.source_size(&proj.source));
                let g = &g[(t0 - range.start) * r_post..(range.end - range.start) * r_post];
                let (q, v) = (s.pop.0 as usize, s.var.0 as usize);
                let raw = &trace.states[q][v][states.start * r_pre..states.end * r_pre];
                let x = carried(raw, s, module);
                let mut dx = zeroed(x.len());
                project_grad(
                    module,
                    index,
                    &self.params.weights[index],
                    Rows::Values(&x),
                    g,
                    rows,
                    dw,
                    Some(InputGrad { dx: &mut dx, at: None }),
                );
                give_back(x);
                // Trace row `k` of states is the readout's row `k - 1`; the initial state
                // (row 0) has no gradient to take.
                let first = states.start.max(1);
                let skip = (first - states.start) * r_pre;
                let to = readout.state_rows_mut(q, v, first - 1..states.end - 1);
                if s.l2_normalize {
                    l2_normalize_rows_backward(&raw[skip..], &dx[skip..], n_pre, to);
                } else {
                    to.iter_mut().zip(&dx[skip..]).for_each(|(a, b)| *a += *b);
                }
                spare([dx]);
                continue;
            }
            let delay = module.source_delay(proj);
            let t0 = range.start.max(delay);
            if t0 >= range.end {
                continue;
            }
            let rows = (range.end - t0) * batch;
            let g = &g[(t0 - range.start) * r_post..(range.end - range.start) * r_post];
            let (from, to) = ((t0 - delay) * r_pre, (range.end - delay) * r_pre);
            match &proj.source {
                Source::Input(id) => {
                    let x = Rows::Values(&trace.inputs[id.0 as usize][from..to]);
                    project_grad(module, index, &self.params.weights[index], x, g, rows, dw, None);
                }
                Source::Population(q) => {
                    let spikes = &trace.spikes[q.0 as usize];
                    let x = Rows::Bits(spikes, from..to);
                    // Where the source's backward step reads its spike adjoint only at spikes,
                    // the input gradient is computed there alone.
                    let gated = module
                        .train
                        .as_ref()
                        .and_then(|t| t.method.surrogate())
                        .is_some_and(|s| crate::ir::grad::spike_gated(module.population(*q), s));
                    let dx = readout.spike_rows_mut(q.0 as usize, t0 - delay..range.end - delay);
                    let at = gated.then_some((spikes, from));
                    project_grad(module, index, &self.params.weights[index], x, g, rows, dw, Some(InputGrad { dx, at }));
                }
                Source::State(_) => unreachable!("handled above"),
            }
        }
    }
}

/// BPTT over the steps in `window` of a batch (the adjoint starts at zero after its last step
/// and stops at its first): `readout` holds d loss / d (spikes, states) in the trace's row layout;
/// the weight and parameter gradients are added to `grads`. Returns, per projection from a
/// time-constant input, its port adjoints summed over the active steps; their weight gradient
/// is added here unless the batch-level products `batch` hold the projection (then
/// [`hoisted_weight_grads`] adds it for the whole batch). A feed-forward network is swept population by population (last first), each over
/// all steps in reverse, so that every projection's gradients are one GEMM over all steps;
/// otherwise step by step.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    params: &Params<F>,
    trace: &Trace<F>,
    window: Range<usize>,
    readout: &mut ReadoutGrads<F>,
    grads: &mut Grads<F>,
    net: &[F],
    batch: Option<&Hoisted<F>>,
) -> Vec<Option<Vec<F>>> {
    let (first, steps) = (window.start, window.len());
    let ctx = Backward { module, params, trace, compiled, net };
    let buffers = |p: usize, count: usize| -> Vec<Vec<F>> { (0..count).map(|_| zeroed(trace.row(p))).collect() };
    let mut carry: Vec<Vec<Vec<F>>> = module.populations.iter().enumerate().map(|(p, pop)| buffers(p, pop.vars.len())).collect();
    let mut scratch: Vec<Vec<Vec<F>>> = module.populations.iter().enumerate().map(|(p, pop)| buffers(p, pop.vars.len())).collect();
    // Port adjoints of hoisted projections, summed over the active steps: their weight
    // gradient is one GEMM per batch instead of one per step.
    let mut hoisted: Vec<Option<Vec<F>>> = vec![None; module.projections.len()];
    if module.is_feed_forward() {
        for (p, pop) in module.populations.iter().enumerate().rev() {
            let r = trace.row(p);
            // Every step's adjoint writes all of its row.
            let mut g_ports: Vec<Vec<F>> = (0..pop.ports.len()).map(|_| overwritten(steps * r)).collect();
            for t in window.clone().rev() {
                let row = t - first;
                let mut rows: Vec<&mut [F]> = g_ports.iter_mut().map(|g| &mut g[row * r..(row + 1) * r]).collect();
                ctx.step(p, t, readout, &mut carry[p], &mut scratch[p], &mut rows);
            }
            ctx.projections(p, window.clone(), &g_ports, readout, grads, &mut hoisted);
            spare(g_ports);
        }
    } else {
        for t in window.clone().rev() {
            for (p, pop) in module.populations.iter().enumerate().rev() {
                let mut g_ports = vec![vec![F::zero(); trace.row(p)]; pop.ports.len()];
                let mut rows: Vec<&mut [F]> = g_ports.iter_mut().map(Vec::as_mut_slice).collect();
                ctx.step(p, t, readout, &mut carry[p], &mut scratch[p], &mut rows);
                ctx.projections(p, t..t + 1, &g_ports, readout, grads, &mut hoisted);
            }
        }
    }
    for (index, sum) in hoisted.iter().enumerate() {
        let (Some(g), proj) = (sum, &module.projections[index]) else { continue };
        let Source::Input(id) = &proj.source else { continue };
        if !proj.trainable || batch.is_some_and(|b| b.y[index].is_some()) {
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
                    grads.neuron_params[p][v][if per_neuron { k % n } else { 0 }] += *g;
                }
            }
        }
    }
    spare(carry.into_iter().chain(scratch).flatten());
    hoisted
}

/// The adjoint of population `p`'s step `t` alone, from d(state after) and d(spike) to
/// (d(state before), d(ports)): what [`backward`] computes at every step, exposed so that the
/// derived kernels can be compared with the oracle's tape step by step.
#[allow(clippy::too_many_arguments)]
pub fn step_adjoint<F: Real>(
    compiled: &Compiled<F>,
    module: &Module,
    params: &Params<F>,
    trace: &Trace<F>,
    net: &[F],
    p: usize,
    t: usize,
    d_after: &[Vec<F>],
    d_spike: &[F],
) -> (Vec<Vec<F>>, Vec<Vec<F>>) {
    let ctx = Backward { module, params, trace, compiled, net };
    let r = trace.row(p);
    let mut readout = ReadoutGrads::zeros(module, trace.steps, trace.batch);
    readout.spikes_mut(p)[t * r..(t + 1) * r].copy_from_slice(d_spike);
    let mut carry = d_after.to_vec();
    let mut scratch = vec![vec![F::zero(); r]; carry.len()];
    let mut d_ports = vec![vec![F::zero(); r]; module.populations[p].ports.len()];
    let mut rows: Vec<&mut [F]> = d_ports.iter_mut().map(Vec::as_mut_slice).collect();
    ctx.step(p, t, &readout, &mut carry, &mut scratch, &mut rows);
    (carry, d_ports)
}

/// Where an input gradient goes, and the elements it is needed at: those set in the bits from
/// the offset (the source's spikes, [`crate::ir::grad::spike_gated`]), or all.
struct InputGrad<'a, F> {
    dx: &'a mut [F],
    at: Option<(&'a Bits, usize)>,
}

/// The adjoint of one projection over `rows` rows: `dW += X^T G` and `dX += G W^T`, each only
/// when asked for. Dense projections are GEMMs (the weight gradient event-driven for sparse
/// spikes), convolutions [`conv`]'s products; an input gradient needed at spikes alone is
/// gathered there (dense and convolutions); others go row by row.
#[allow(clippy::too_many_arguments)]
fn project_grad<F: Real>(
    module: &Module,
    index: usize,
    w: &[F],
    x: Rows<F>,
    g: &[F],
    rows: usize,
    dw: Option<&mut [F]>,
    input: Option<InputGrad<F>>,
) {
    if rows == 0 {
        return;
    }
    let proj = &module.projections[index];
    let (n_pre, n_post) = (x.len() / rows, g.len() / rows);
    if proj.connectivity == Connectivity::Dense {
        match input {
            Some(InputGrad { dx, at: Some((bits, start)) }) => dense_input_grad_at(rows, n_pre, n_post, g, w, dx, bits, start),
            Some(InputGrad { dx, at: None }) => dense_input_grad(rows, n_pre, n_post, g, w, dx),
            None => {}
        }
        let Some(dw) = dw else { return };
        if module.source_is_binary(proj) && x.sparse_for(n_post) {
            events::accumulate_grads(x, g, dw, n_pre, n_post);
            return;
        }
        let values = x.values();
        dense_weight_grad(rows, n_pre, n_post, &values, g, dw);
        give_back(values);
        return;
    }
    let (in_shape, out_shape) = (module.source_shape(&proj.source), &module.population(proj.target).shape);
    if let Some((geo, transposed)) = conv::Geometry::of(&proj.connectivity, in_shape, out_shape) {
        // A transposed convolution runs the convolution from its target to its source
        // backwards: its presynaptic values are that convolution's output side.
        let side = if transposed { Spikes::Output } else { Spikes::Input };
        let sparse =
            module.source_is_binary(proj) && density(&x) < conv::event_crossover(Product::WeightGrad, geo.run(Product::WeightGrad, side));
        // Both gradients at the same spikes: one pass.
        let same_spikes = matches!((&x, &input), (Rows::Bits(bits, range), Some(InputGrad { at: Some((at, start)), .. }))
            if std::ptr::eq(*bits, *at) && range.start == *start);
        if sparse && same_spikes && dw.is_some() {
            let (Rows::Bits(bits, range), Some(InputGrad { dx, .. }), Some(dw)) = (&x, input, dw) else { unreachable!("matched above") };
            conv::grads_at_spikes(&geo, w, bits, range.start, side, g, dx, dw, rows);
            return;
        }
        match (transposed, input) {
            (true, Some(InputGrad { dx, at: Some((bits, start)) })) => conv::forward_at(&geo, w, g, dx, rows, bits, start),
            (true, Some(InputGrad { dx, at: None })) => conv::forward(&geo, w, g, dx, rows, false),
            (false, Some(InputGrad { dx, at: Some((bits, start)) })) => conv::adjoint_at(&geo, w, g, dx, rows, bits, start),
            (false, Some(InputGrad { dx, at: None })) => conv::adjoint(&geo, w, g, dx, rows, false),
            (_, None) => {}
        }
        let Some(dw) = dw else { return };
        if sparse {
            // Spikes are read from their bits where the trace keeps them so.
            conv::weight_grad_events(&geo, &x, side, g, dw, rows);
            return;
        }
        let values = x.values();
        if transposed {
            conv::weight_grad(&geo, g, &values, dw, rows, None);
        } else {
            conv::weight_grad(&geo, &values, g, dw, rows, None);
        }
        give_back(values);
        return;
    }
    let values = x.values();
    let mut scratch_w = if dw.is_none() { vec![F::zero(); w.len()] } else { Vec::new() };
    let mut scratch_x = if input.is_none() { vec![F::zero(); values.len()] } else { Vec::new() };
    let dw = dw.unwrap_or(&mut scratch_w);
    let dx = input.map_or(&mut scratch_x[..], |input| input.dx);
    for (r, (xs, gs)) in values.chunks_exact(n_pre).zip(g.chunks_exact(n_post)).enumerate() {
        project_backward(&proj.connectivity, w, xs, gs, dw, &mut dx[r * n_pre..(r + 1) * n_pre], in_shape, out_shape);
    }
    give_back(values);
}
