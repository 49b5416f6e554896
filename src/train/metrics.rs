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
    /// The activity measures of seeds/004 per population (empty where a method does not
    /// measure them).
    pub activity: Vec<Activity>,
    /// The mean of each loss term asked for over the test samples (an auto-encoder's
    /// reconstruction error), in the order asked.
    pub test_losses: Vec<f64>,
}

/// The activity measures of seeds/004 for one population over an evaluation pass. A neuron's
/// firing rate is its spikes per step, averaged over the samples; it is active when it fired
/// on any sample.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Activity {
    /// AFR: the mean firing rate of the active neurons (0 when none is).
    pub afr: f64,
    /// INP: the share of neurons that never fired.
    pub inp: f64,
    /// ANR: the share that fired, 1 - INP.
    pub anr: f64,
    /// RAE: the neurons active in a sample, averaged over the samples, over the neurons active
    /// in any.
    pub rae: f64,
}

/// Spike counts of one population over evaluation samples, from which [`Activity`] follows.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ActivityCounts {
    /// Spikes per neuron, summed over the samples and steps.
    pub totals: Vec<u64>,
    /// Neurons that fired in a sample, summed over the samples.
    pub active_in_samples: u64,
    pub samples: usize,
}

impl ActivityCounts {
    pub fn new(neurons: usize) -> ActivityCounts {
        ActivityCounts { totals: vec![0; neurons], active_in_samples: 0, samples: 0 }
    }

    /// Adds the samples of `trace` for population `p` (`steps` steps each).
    pub fn add_trace<F: Real>(&mut self, trace: &Trace<F>, p: usize, steps: usize) {
        let n = self.totals.len();
        let mut sample = vec![0u64; n];
        for b in 0..trace.batch {
            sample.fill(0);
            for t in 0..steps.min(trace.steps) {
                let start = (t * trace.batch + b) * n;
                trace.spikes[p].for_each_set(start..start + n, |j| sample[j] += 1);
            }
            for (total, count) in self.totals.iter_mut().zip(&sample) {
                *total += count;
            }
            self.active_in_samples += sample.iter().filter(|c| **c > 0).count() as u64;
        }
        self.samples += trace.batch;
    }

    pub fn merge(&mut self, other: &ActivityCounts) {
        for (a, b) in self.totals.iter_mut().zip(&other.totals) {
            *a += b;
        }
        self.active_in_samples += other.active_in_samples;
        self.samples += other.samples;
    }

    /// The measures for samples of `steps` steps.
    pub fn activity(&self, steps: usize) -> Activity {
        let n = self.totals.len().max(1) as f64;
        let active: Vec<u64> = self.totals.iter().copied().filter(|c| *c > 0).collect();
        let per_neuron = (self.samples.max(1) * steps.max(1)) as f64;
        let afr = if active.is_empty() { 0.0 } else { active.iter().map(|c| *c as f64 / per_neuron).sum::<f64>() / active.len() as f64 };
        let anr = active.len() as f64 / n;
        let rae = if active.is_empty() { 0.0 } else { self.active_in_samples as f64 / self.samples.max(1) as f64 / active.len() as f64 };
        Activity { afr, inp: 1.0 - anr, anr, rae }
    }
}

/// Test accuracy, spikes per neuron, activity and the mean of each of `terms` on the first `n`
/// samples of `split`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate<F: Real>(
    engine: &dyn Engine<F>,
    ctx: &Ctx<F>,
    train: &Train,
    terms: &[crate::ir::train::LossTerm],
    params: &Params<F>,
    split: &Split,
    n: usize,
    net: &[f64],
) -> Result<Evaluation, LossError> {
    let module = ctx.module;
    let indices: Vec<usize> = (0..n).collect();
    let roots: Vec<_> = terms.iter().map(|t| t.value).chain(train.predict).collect();
    // Per shard: correct predictions, spike counts per population, loss term sums.
    type ShardEvaluation = (usize, Vec<ActivityCounts>, Vec<f64>);
    let shards: Vec<Result<ShardEvaluation, LossError>> = indices
        .par_chunks(eval_shard::<F>(module))
        .map(|shard| {
            let features: Vec<Cow<[f32]>> = shard.iter().map(|&i| split.sample(i)).collect();
            let samples: Vec<SampleRef> =
                shard.iter().zip(&features).map(|(&i, f)| SampleRef { id: TEST_ID_OFFSET + i as u64, features: f }).collect();
            let trace = engine.forward(ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, None);
            let mut correct = 0;
            let mut sums = vec![0.0; terms.len()];
            if !roots.is_empty() {
                for (b, &i) in shard.iter().enumerate() {
                    let inputs = SampleInputs { label: usize::from(split.labels[i]), features: samples[b].features, net };
                    let values = loss::evaluate(module, &train.exprs, &trace, b, params, inputs, &roots)?;
                    for (sum, term) in sums.iter_mut().zip(terms) {
                        *sum += values[term.value.0 as usize].data[0];
                    }
                    if let Some(root) = train.predict {
                        correct += usize::from(values[root.0 as usize].data[0] as usize == usize::from(split.labels[i]));
                    }
                }
            }
            let counts = module
                .populations
                .iter()
                .enumerate()
                .map(|(p, pop)| {
                    let mut counts = ActivityCounts::new(pop.size());
                    counts.add_trace(&trace, p, trace.steps);
                    counts
                })
                .collect();
            trace.recycle();
            Ok((correct, counts, sums))
        })
        .collect();
    let mut correct = 0;
    let mut test_losses = vec![0.0; terms.len()];
    let mut counts: Vec<ActivityCounts> = module.populations.iter().map(|p| ActivityCounts::new(p.size())).collect();
    for shard in shards {
        let (c, shard_counts, sums) = shard?;
        correct += c;
        for (total, sum) in test_losses.iter_mut().zip(sums) {
            *total += sum / n.max(1) as f64;
        }
        for (total, x) in counts.iter_mut().zip(&shard_counts) {
            total.merge(x);
        }
    }
    let spikes = counts.iter().map(|c| c.totals.iter().sum::<u64>() as f64 / (n.max(1) * c.totals.len().max(1)) as f64).collect();
    let steps = module.steps + module.rest_steps;
    let activity = counts.iter().map(|c| c.activity(steps)).collect();
    Ok(Evaluation { accuracy: correct as f64 / n.max(1) as f64, spikes_per_neuron: spikes, activity, test_losses })
}

/// What a run shows after an epoch when its train block asks for a `reconstruction`: the
/// first test samples beside their reconstructions, and every population's spike raster for
/// the first of them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Showcase {
    pub inputs: Vec<Vec<f64>>,
    pub reconstructions: Vec<Vec<f64>>,
    /// Per population: its name, its size, and for each step the neurons that fired.
    pub rasters: Vec<(String, usize, Vec<Vec<usize>>)>,
}

/// Test samples a showcase shows.
pub const SHOWCASE_SAMPLES: usize = 8;

/// The showcase of the first [`SHOWCASE_SAMPLES`] samples of `split`, `None` when the train
/// block has no `reconstruction`.
pub fn showcase<F: Real>(
    engine: &dyn Engine<F>,
    ctx: &Ctx<F>,
    train: &Train,
    params: &Params<F>,
    split: &Split,
    net: &[f64],
) -> Option<Result<Showcase, LossError>> {
    let root = train.reconstruction?;
    let module = ctx.module;
    let n = SHOWCASE_SAMPLES.min(split.len());
    let features: Vec<Cow<[f32]>> = (0..n).map(|i| split.sample(i)).collect();
    let samples: Vec<SampleRef> =
        features.iter().enumerate().map(|(i, f)| SampleRef { id: TEST_ID_OFFSET + i as u64, features: f }).collect();
    let trace = engine.forward(ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, None);
    let mut show = Showcase::default();
    for (b, sample) in samples.iter().enumerate() {
        let inputs = SampleInputs { label: usize::from(split.labels[b]), features: sample.features, net };
        let values = match loss::evaluate(module, &train.exprs, &trace, b, params, inputs, &[root]) {
            Ok(values) => values,
            Err(error) => {
                trace.recycle();
                return Some(Err(error));
            }
        };
        show.inputs.push(sample.features.iter().map(|x| f64::from(*x)).collect());
        show.reconstructions.push(values[root.0 as usize].data.clone());
    }
    for (p, pop) in module.populations.iter().enumerate() {
        let size = pop.size();
        let steps = (0..trace.steps.min(module.steps + module.rest_steps))
            .map(|t| {
                let mut fired = Vec::new();
                let start = t * trace.row(p);
                trace.spikes[p].for_each_set(start..start + size, |j| fired.push(j));
                fired
            })
            .collect();
        show.rasters.push((pop.name.clone(), size, steps));
    }
    trace.recycle();
    Some(Ok(show))
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
            Connectivity::Conv2d(conv) => proj.weight_shape[0] / conv.groups * conv.taps(),
            Connectivity::ConvTranspose2d(conv) => proj.weight_shape[1] * conv.taps(),
            // A spike reaches the windows that hold it: about kernel / stride per axis.
            Connectivity::Pool2d(pool) => pool.kernel[0].div_ceil(pool.stride[0]) * pool.kernel[1].div_ceil(pool.stride[1]),
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

#[cfg(test)]
mod activity_tests {
    use super::*;
    use crate::exec::kernels::bits::Bits;

    /// seeds/004's definitions on a spike table written by hand: 4 neurons, 2 samples of 10
    /// steps. Neuron 0 fires 5 times in each sample (rate 0.5), neuron 1 twice in the first
    /// only (rate 2 / 20 = 0.1), neurons 2 and 3 never: INP 0.5, ANR 0.5, AFR (0.5 + 0.1) / 2,
    /// RAE (2 + 1) / 2 active per sample over 2 active neurons.
    #[test]
    fn afr_inp_anr_and_rae_follow_the_paper() {
        let (n, batch, steps) = (4, 2, 10);
        let mut table = vec![0.0f32; steps * batch * n];
        let mut fire = |t: usize, b: usize, j: usize| table[(t * batch + b) * n + j] = 1.0;
        for t in [0, 2, 4, 6, 8] {
            fire(t, 0, 0);
            fire(t + 1, 1, 0);
        }
        fire(3, 0, 1);
        fire(7, 0, 1);
        let mut spikes = Bits::zeros(table.len());
        spikes.store(0, &table);
        let trace = Trace::<f32> { steps, batch, sizes: vec![n], spikes: vec![spikes], ..Default::default() };
        let mut counts = ActivityCounts::new(n);
        counts.add_trace(&trace, 0, steps);
        assert_eq!(counts.totals, vec![10, 2, 0, 0]);
        let a = counts.activity(steps);
        assert_eq!((a.inp, a.anr), (0.5, 0.5));
        assert!((a.afr - 0.3).abs() < 1e-12, "{}", a.afr);
        assert!((a.rae - 0.75).abs() < 1e-12, "{}", a.rae);
        // Merging shards adds their samples: the same table twice changes no rate.
        let mut twice = counts.clone();
        twice.merge(&counts);
        assert_eq!(twice.activity(steps), a);
        // A silent population: everything inactive, no rate.
        assert_eq!(ActivityCounts::new(3).activity(steps), Activity { afr: 0.0, inp: 1.0, anr: 0.0, rae: 0.0 });
    }
}
