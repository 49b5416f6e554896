//! Evaluation through any engine (test accuracy, spikes per neuron per layer) and the operation counts of seeds/003 (synaptic operations, SNN and
//! ANN FLOPs).

use rayon::prelude::*;
use std::borrow::Cow;

use crate::data::Split;
use crate::exec::engine::{At, Ctx, Engine, ParamsAccess, Shard, StepHook};
use crate::exec::kernels::bits::for_each_nonzero;
use crate::exec::real::Real;
use crate::exec::state::{Params, SampleRef, Trace};
use crate::ir::train::Train;
use crate::ir::{Connectivity, Module, Source};
use crate::train::loss::{self, LossError, SampleInputs};

/// Samples per evaluation shard (no gradients to hold, so larger shards pay).
const EVAL_SHARD: usize = 64;

/// Bytes of trace one evaluation shard may hold: long samples (Diehl & Cook's 1,000 steps of
/// 784 inputs) get smaller shards, so that evaluation does not need gigabytes.
const EVAL_SHARD_BYTES: usize = 64 << 20;

/// Samples per evaluation shard for this module: [`EVAL_SHARD`], fewer when a sample's trace
/// (states, ports and inputs over every step) is large.
fn eval_shard<F: Real>(module: &crate::ir::Module) -> usize {
    let per_step: usize = module.populations.iter().map(|p| p.size() * (p.vars.len() + p.ports.len())).sum::<usize>()
        + module.inputs.iter().map(|i| i.shape.iter().product::<usize>()).sum::<usize>();
    let per_sample = (module.steps + module.rest_steps + 1) * per_step * F::BYTES;
    (EVAL_SHARD_BYTES / per_sample.max(1)).clamp(1, EVAL_SHARD)
}

/// Test samples are keyed apart from training samples in the random streams.
pub const TEST_ID_OFFSET: u64 = 1_000_000_000;

/// What an evaluation pass measured.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    /// Mean spikes per neuron per sample, per population.
    pub spikes_per_neuron: Vec<f64>,
}

/// Test accuracy and spikes per neuron on the first `n` samples of `split`.
pub fn evaluate<F: Real>(
    engine: &dyn Engine<F>,
    ctx: &Ctx<F>,
    train: &Train,
    params: &Params<F>,
    split: &Split,
    n: usize,
    net: &[f64],
) -> Result<Evaluation, LossError> {
    let module = ctx.module;
    let indices: Vec<usize> = (0..n).collect();
    let shards: Vec<Result<(usize, Vec<f64>), LossError>> = indices
        .par_chunks(eval_shard::<F>(module))
        .map(|shard| {
            let features: Vec<Cow<[f32]>> = shard.iter().map(|&i| split.sample(i)).collect();
            let samples: Vec<SampleRef> =
                shard.iter().zip(&features).map(|(&i, f)| SampleRef { id: TEST_ID_OFFSET + i as u64, features: f }).collect();
            let trace = engine.forward(ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, None);
            let mut correct = 0;
            if let Some(root) = train.predict {
                for (b, &i) in shard.iter().enumerate() {
                    let inputs = SampleInputs { label: usize::from(split.labels[i]), features: samples[b].features, net };
                    let values = loss::evaluate(module, &train.exprs, &trace, b, params, inputs, &[root])?;
                    correct += usize::from(values[root.0 as usize].data[0] as usize == usize::from(split.labels[i]));
                }
            }
            let spikes = spike_totals(module.populations.len(), &trace);
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
    Ok(Evaluation { accuracy: correct as f64 / n.max(1) as f64, spikes_per_neuron: spikes })
}

/// Spikes per population summed over a trace's samples and steps.
fn spike_totals<F: Real>(populations: usize, trace: &Trace<F>) -> Vec<f64> {
    (0..populations).map(|p| trace.spikes[p].count(0..trace.spikes[p].len()) as f64).collect()
}

/// Synaptic operations, SNN FLOPs and ANN FLOPs per sample, averaged over the first `n`
/// samples of `split` (see [`crate::train::EpochMetrics`]). Each sample runs as a streaming
/// pass ([`Engine::stream`]) whose hook counts the active sources of every step, so memory
/// does not grow with the steps; samples run in parallel and their counts add up in order.
pub fn operation_counts<F: Real>(engine: &dyn Engine<F>, ctx: &Ctx<F>, params: &Params<F>, split: &Split, n: usize) -> (f64, f64, f64) {
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let module = ctx.module;
    let per_sample: Vec<Vec<f64>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let features = split.sample(i);
            let sample = SampleRef { id: TEST_ID_OFFSET + i as u64, features: &features };
            let mut counter = ActiveSources::new(module);
            engine.stream(ctx, ParamsAccess::Shared(params), sample, Some(&mut counter));
            counter.active
        })
        .collect();
    let mut totals = (0.0, 0.0, 0.0);
    for (index, proj) in module.projections.iter().enumerate() {
        let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
        let fan_out = match proj.connectivity {
            // A spike reaches every output channel of its group at every tap.
            Connectivity::Conv2d(conv) => proj.weight_shape[0] / conv.groups * conv.kernel * conv.kernel,
            Connectivity::ConvTranspose2d(conv) => proj.weight_shape[1] * conv.kernel * conv.kernel,
            Connectivity::OneToOne => 1,
            Connectivity::AllToAllButSelf => n_post.saturating_sub(1),
            Connectivity::Dense => n_post,
        } as f64;
        let (m, big_n) = (n_pre as f64, n_post as f64);
        // The steps whose source activity arrives within the run.
        let arriving = (module.steps + module.rest_steps).saturating_sub(module.source_delay(proj)) as f64;
        for active in &per_sample {
            totals.0 += active[index] * fan_out;
            if proj.connectivity == Connectivity::Dense {
                // Per step (2 m rate - 1) N + 2 N with rate = active / m, summed over the steps.
                totals.1 += 2.0 * active[index] * big_n + arriving * big_n;
                totals.2 += (2.0 * m - 1.0) * big_n + 2.0 * big_n;
            }
        }
    }
    (totals.0 / n as f64, totals.1 / n as f64, totals.2 / n as f64)
}

/// Counts, per projection, the active elements of its source over the steps whose activity
/// arrives within the run (a delay of `d` steps leaves the last `d` steps' activity unread).
struct ActiveSources<'a> {
    module: &'a Module,
    active: Vec<f64>,
}

impl<'a> ActiveSources<'a> {
    fn new(module: &'a Module) -> ActiveSources<'a> {
        ActiveSources { module, active: vec![0.0; module.projections.len()] }
    }
}

impl<F: Real> StepHook<F> for ActiveSources<'_> {
    fn after_population(&mut self, at: At, p: usize, trace: &mut Trace<F>, _params: Option<&mut Params<F>>) {
        let module = self.module;
        let steps = module.steps + module.rest_steps;
        for (index, proj) in module.projections.iter().enumerate() {
            if at.step + module.source_delay(proj) >= steps {
                continue;
            }
            let n = module.source_size(&proj.source);
            let count = match &proj.source {
                // Inputs are counted once per step, with the first population.
                Source::Input(id) if p == 0 => {
                    let mut count = 0;
                    for_each_nonzero(trace.input_at(at.row, id.0 as usize), |_| count += 1);
                    count
                }
                Source::Population(q) if q.0 as usize == p => trace.spikes[p].count(at.row * n..(at.row + 1) * n),
                // A carried state transmits every nonzero value, after its population's step.
                Source::State(s) if s.pop.0 as usize == p => {
                    let mut count = 0;
                    for_each_nonzero(&trace.state_after(at.row, p, s.var.0 as usize)[..n], |_| count += 1);
                    count
                }
                _ => continue,
            };
            self.active[index] += count as f64;
        }
    }
}
