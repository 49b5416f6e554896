//! Evaluation through any engine (test accuracy, spikes per neuron per layer, with the train
//! block's clamps held) and the operation counts of seeds/003 (synaptic operations, SNN and
//! ANN FLOPs).

use rayon::prelude::*;

use crate::data::Split;
use crate::exec::engine::{Ctx, Engine, ParamsAccess, Shard, StepHook};
use crate::exec::real::Real;
use crate::exec::state::{Params, SampleRef, Trace};
use crate::ir::train::Train;
use crate::ir::{Connectivity, Source};
use crate::train::hooks::Clamps;
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
            let samples: Vec<SampleRef> =
                shard.iter().map(|&i| SampleRef { id: TEST_ID_OFFSET + i as u64, features: split.sample(i) }).collect();
            let trace = if train.clamps.is_empty() {
                engine.forward(ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, None)
            } else {
                let labelled: Vec<(usize, &[f32])> = shard.iter().map(|&i| (usize::from(split.labels[i]), split.sample(i))).collect();
                let mut clamps = Clamps::of(module, train, params, &labelled, net)?;
                let hook: &mut dyn StepHook<F> = &mut clamps;
                engine.forward(ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, Some(hook))
            };
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
/// samples of `split` (see [`crate::train::EpochMetrics`]).
pub fn operation_counts<F: Real>(engine: &dyn Engine<F>, ctx: &Ctx<F>, params: &Params<F>, split: &Split, n: usize) -> (f64, f64, f64) {
    if n == 0 {
        return (0.0, 0.0, 0.0);
    }
    let module = ctx.module;
    let samples: Vec<SampleRef> = (0..n).map(|i| SampleRef { id: TEST_ID_OFFSET + i as u64, features: split.sample(i) }).collect();
    let mut totals = (0.0, 0.0, 0.0);
    for shard in samples.chunks(eval_shard::<F>(module)) {
        let trace = engine.forward(ctx, ParamsAccess::Shared(params), Shard { samples: shard, hoisted: None }, None);
        for (index, proj) in module.projections.iter().enumerate() {
            let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
            let fan_out = match proj.connectivity {
                Connectivity::Conv2d { kernel, .. } | Connectivity::ConvTranspose2d { kernel, .. } => {
                    proj.weight_shape[0] * kernel * kernel
                }
                _ => params.weights[index].len() / n_pre.max(1),
            } as f64;
            let dense = proj.connectivity == Connectivity::Dense;
            let (m, big_n) = (n_pre as f64, n_post as f64);
            for t in 0..trace.steps {
                let Some(ts) = t.checked_sub(module.source_delay(proj)) else { continue };
                for b in 0..shard.len() {
                    let active = match &proj.source {
                        Source::Input(id) => {
                            trace.input_at(ts, id.0 as usize)[b * n_pre..(b + 1) * n_pre].iter().filter(|v| **v != F::zero()).count() as f64
                        }
                        Source::Population(id) => {
                            let r = trace.row(id.0 as usize);
                            trace.spikes[id.0 as usize].count(ts * r + b * n_pre..ts * r + (b + 1) * n_pre) as f64
                        }
                    };
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
        trace.recycle();
    }
    (totals.0 / n as f64, totals.1 / n as f64, totals.2 / n as f64)
}
