//! The training loop: phases, epochs, data order, learning-rate schedules, metrics and
//! records; the learning method plugs in per batch ([`crate::train::method`]) and the engine
//! is built once per run ([`crate::exec::engine::build`]).

use crate::data::{Dataset, Stream, augment_image};
use crate::exec::engine::{self, Ctx, Engine, EngineKind};
use crate::exec::real::Real;
use crate::exec::state::{Params, SampleRef, init_params};
use crate::ir::train::Data;
use crate::ir::validate::Valid;
use crate::train::hooks::RecordText;
use crate::train::method::{Example, MethodState, NonFinite, RunError, Session, method_for};
use crate::train::metrics::{self, Evaluation};
use crate::train::optim::learning_rate;
use std::borrow::Cow;

/// Per-epoch metrics.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct EpochMetrics {
    pub phase: String,
    pub epoch: usize,
    pub lr: f64,
    pub losses: Vec<(String, f64)>,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    /// Mean spikes per neuron per sample, per population, on the test set.
    pub spikes_per_neuron: Vec<(String, f64)>,
    /// seeds/004's activity measures (AFR, INP, ANR, RAE) per population on the test set,
    /// where the method measures them.
    #[serde(default)]
    pub activity: Vec<(String, crate::train::metrics::Activity)>,
    /// Each loss term's mean over the test samples (empty where the method does not measure
    /// it).
    #[serde(default)]
    pub test_losses: Vec<(String, f64)>,
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

/// What to run: limits, seed and engine.
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    pub epochs: Option<usize>,
    pub limit_train: Option<usize>,
    pub limit_test: Option<usize>,
    pub seed: u64,
    pub engine: EngineKind,
}

/// Everything a run needs to continue after an epoch: the parameters, the method's state, the
/// epochs done (counted over all phases) and the network parameters' values. Data order and
/// random draws are keyed by epoch and sample, so a resumed run ends with the weights of an
/// uninterrupted one.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot<F> {
    pub params: Params<F>,
    pub method: MethodState<F>,
    pub epochs_done: usize,
    pub net: Vec<f64>,
}

/// What the loop reports while it runs; the CLI writes files and progress from it.
pub trait Observer<F> {
    /// After every batch: samples done in this epoch, of `total`, and the running mean loss.
    fn batch(&mut self, _done: usize, _total: usize, _running_loss: f64) {}
    /// Records of the samples just trained, in sample order.
    fn records(&mut self, _records: &RecordText) {}
    /// After every epoch, with what a run needs to continue from its end. An error (the
    /// checkpoint could not be written) stops the run with [`RunError::Output`].
    fn epoch(&mut self, _metrics: &EpochMetrics, _snapshot: &Snapshot<F>) -> Result<(), String> {
        Ok(())
    }
    /// After every epoch, before [`Observer::epoch`], when the train block asks for a
    /// `reconstruction`.
    fn showcase(&mut self, _showcase: &crate::train::metrics::Showcase) -> Result<(), String> {
        Ok(())
    }
}

/// An observer that ignores everything.
pub struct Quiet;

impl<F> Observer<F> for Quiet {}

/// The random seed a run uses: the configuration's, mixed with the train block's.
pub fn run_seed(module: &Valid, config: &RunConfig) -> u64 {
    config.seed ^ module.train.as_ref().map_or(0, |t| t.seed)
}

/// Trains a module as its train block says, from freshly drawn parameters or from a snapshot
/// of an earlier run (`resume`), and reports metrics after every epoch.
pub fn train_module<F: Real>(
    module: &Valid,
    data: &Dataset,
    config: &RunConfig,
    resume: Option<Snapshot<F>>,
    observer: &mut dyn Observer<F>,
) -> Result<(Params<F>, Vec<EpochMetrics>), RunError> {
    let train = module.train.as_ref().ok_or(RunError::NoTrainBlock)?;
    let seed = run_seed(module, config);
    let (mut params, mut method_state, epochs_done, net) = match resume {
        Some(snapshot) => (snapshot.params, Some(snapshot.method), snapshot.epochs_done, Some(snapshot.net)),
        None => (init_params(module, seed), None, 0, None),
    };
    let mut method = method_for::<F>(&train.method)?;
    let engine = engine::build::<F>(config.engine, module)?;
    let frozen = frozen_engine::<F>(config.engine, module)?;
    let n_train = config.limit_train.map_or(data.train.len(), |l| l.min(data.train.len()));
    let n_test = config.limit_test.map_or(data.test.len(), |l| l.min(data.test.len()));
    let mut net: Vec<f64> = net.unwrap_or_else(|| module.net_values());
    let mut history = Vec::new();
    let mut global_epoch = 0;
    for phase in &train.phases {
        method.begin_phase(&params);
        let session = Session { module, train, phase, engine: engine.as_ref(), seed, recording: !train.records.is_empty() };
        let epochs = config.epochs.unwrap_or(phase.epochs);
        for epoch in 0..epochs {
            if global_epoch < epochs_done {
                // Done before the run was resumed.
                global_epoch += 1;
                continue;
            }
            if let Some(state) = method_state.take() {
                method.restore(state);
            }
            let started = std::time::Instant::now();
            let lr = learning_rate(&train.schedule, phase.optimizer.lr, epoch);
            let mut order: Vec<usize> = (0..n_train).collect();
            Stream::new(seed.wrapping_add(1 + global_epoch as u64)).shuffle(&mut order);
            let mut term_sums = vec![0.0; phase.losses.len()];
            let mut correct = 0usize;
            for (batch_index, chunk) in order.chunks(train.batch.max(1)).enumerate() {
                // Augmented copies of the batch's images (MNIST shift and rotation), drawn anew
                // every epoch.
                let features: Vec<Cow<[f32]>> = match &train.data {
                    Data::Mnist { augment_shift, augment_rotate_deg, .. }
                    | Data::FashionMnist { augment_shift, augment_rotate_deg, .. }
                        if *augment_shift != 0.0 || *augment_rotate_deg != 0.0 =>
                    {
                        let side = (data.train.n_features as f64).sqrt() as usize;
                        let key = |i: usize| seed ^ ((global_epoch as u64) << 40) ^ i as u64;
                        chunk
                            .iter()
                            .map(|&i| Cow::Owned(augment_image(&data.train.sample(i), side, *augment_shift, *augment_rotate_deg, key(i))))
                            .collect()
                    }
                    _ => chunk.iter().map(|&i| data.train.sample(i)).collect(),
                };
                let batch: Vec<Example> = chunk
                    .iter()
                    .enumerate()
                    .map(|(k, &i)| Example {
                        sample: SampleRef { id: i as u64, features: &features[k] },
                        label: usize::from(data.train.labels[i]),
                    })
                    .collect();
                let outcome = method.train_batch(&session, &mut params, &mut net, &batch, lr).map_err(|e| match e {
                    RunError::NonFinite { what, .. } => RunError::NonFinite { what, epoch: global_epoch + 1, batch: batch_index + 1 },
                    other => other,
                })?;
                if params.has_non_finite() {
                    return Err(RunError::NonFinite { what: NonFinite::Parameter, epoch: global_epoch + 1, batch: batch_index + 1 });
                }
                for (sum, term) in term_sums.iter_mut().zip(&outcome.terms) {
                    *sum += term;
                }
                correct += outcome.correct;
                if session.recording {
                    observer.records(&outcome.records);
                }
                let done = ((batch_index + 1) * train.batch.max(1)).min(n_train);
                observer.batch(done, n_train, term_sums.iter().sum::<f64>() / done.max(1) as f64);
            }
            method.end_epoch(module, &mut params);
            let train_seconds = started.elapsed().as_secs_f64();
            let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
            let ctx = Ctx { module, seed, net: &net_f };
            let Evaluation { accuracy, spikes_per_neuron, activity, test_losses } =
                match method.evaluate(&session, &params, &net, data, n_train, n_test) {
                    Some(evaluation) => evaluation?,
                    None => match &frozen {
                        Some((held, held_engine)) => {
                            let held_ctx = Ctx { module: held, seed, net: &net_f };
                            metrics::evaluate(held_engine.as_ref(), &held_ctx, train, &phase.losses, &params, &data.test, n_test, &net)?
                        }
                        None => metrics::evaluate(engine.as_ref(), &ctx, train, &phase.losses, &params, &data.test, n_test, &net)?,
                    },
                };
            if let Some(show) = metrics::showcase(engine.as_ref(), &ctx, train, &params, &data.test, &net) {
                observer.showcase(&show?).map_err(RunError::Output)?;
            }
            let (synaptic_ops, snn_flops, ann_flops) =
                metrics::operation_counts(engine.as_ref(), &ctx, &params, &data.test, n_test.min(256));
            let epoch_metrics = EpochMetrics {
                phase: phase.name.clone(),
                epoch: global_epoch + 1,
                lr,
                losses: phase.losses.iter().zip(&term_sums).map(|(t, s)| (t.name.clone(), s / n_train.max(1) as f64)).collect(),
                train_accuracy: correct as f64 / n_train.max(1) as f64,
                test_accuracy: accuracy,
                spikes_per_neuron: module.populations.iter().zip(spikes_per_neuron).map(|(p, s)| (p.name.clone(), s)).collect(),
                activity: module.populations.iter().zip(activity).map(|(p, a)| (p.name.clone(), a)).collect(),
                test_losses: phase.losses.iter().zip(test_losses).map(|(t, v)| (t.name.clone(), v)).collect(),
                synaptic_ops,
                snn_flops,
                ann_flops,
                seconds: started.elapsed().as_secs_f64(),
                train_samples_per_second: n_train as f64 / train_seconds.max(1e-9),
            };
            let snapshot = Snapshot { params: params.clone(), method: method.state(), epochs_done: global_epoch + 1, net: net.clone() };
            observer.epoch(&epoch_metrics, &snapshot).map_err(RunError::Output)?;
            history.push(epoch_metrics);
            global_epoch += 1;
        }
    }
    Ok((params, history))
}

/// Evaluates trained parameters on the test split with the engine `kind`.
pub fn evaluate_module<F: Real>(module: &Valid, data: &Dataset, params: &Params<F>, config: &RunConfig) -> Result<Evaluation, RunError> {
    let train = module.train.as_ref().ok_or(RunError::NoTrainBlock)?;
    let engine = engine::build::<F>(config.engine, module)?;
    let n_train = config.limit_train.map_or(data.train.len(), |l| l.min(data.train.len()));
    let n_test = config.limit_test.map_or(data.test.len(), |l| l.min(data.test.len()));
    let net = module.net_values();
    let seed = run_seed(module, config);
    let mut method = method_for::<F>(&train.method)?;
    let session = Session { module, train, phase: &train.phases[0], engine: engine.as_ref(), seed, recording: false };
    if let Some(evaluation) = method.evaluate(&session, params, &net, data, n_train, n_test) {
        return evaluation;
    }
    let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
    if let Some((held, held_engine)) = frozen_engine::<F>(config.engine, module)? {
        let ctx = Ctx { module: &held, seed, net: &net_f };
        return Ok(metrics::evaluate(held_engine.as_ref(), &ctx, train, &[], params, &data.test, n_test, &net)?);
    }
    let ctx = Ctx { module, seed, net: &net_f };
    Ok(metrics::evaluate(engine.as_ref(), &ctx, train, &[], params, &data.test, n_test, &net)?)
}

/// A module with its `frozen in eval` states held, and the engine built for it.
pub type Held<F> = (Valid, Box<dyn Engine<F>>);

/// The module as evaluation runs it, with its engine, when it has states `frozen in eval`
/// (held at their values while evaluating); None when evaluation runs the module itself.
pub fn frozen_engine<F: Real>(kind: EngineKind, module: &Valid) -> Result<Option<Held<F>>, RunError> {
    if !module.has_frozen_states() {
        return Ok(None);
    }
    let held = crate::ir::validate::validate(module.for_evaluation()).map_err(|e| RunError::Output(e.to_string()))?;
    let engine = engine::build::<F>(kind, &held)?;
    Ok(Some((held, engine)))
}
