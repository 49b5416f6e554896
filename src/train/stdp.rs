//! Spike-timing-dependent plasticity through the learning-method seam (seeds/001, Diehl &
//! Cook 2015): samples run one after another, each starting where the previous one ended
//! (`persistent` states are carried with the parameters), while the plastic synapses'
//! `on pre` / `on post` updates ([`crate::exec::plasticity`]) change the weights after every
//! step. `every sample` actions run before each sample; `retry when ... max N` shows a sample
//! again after its actions. There is no loss and no optimiser.
//!
//! Evaluation is the paper's: with learning and `frozen in eval` states held, a labelling pass
//! over training samples assigns each neuron the class it responds to most on average, then
//! each test sample is predicted as the class whose assigned neurons respond most on average
//! (`predict = assigned_class(count(exc))`).

use crate::data::{Dataset, Split};
use crate::exec::engine::{self, Engine, ParamsAccess, Shard};
use crate::exec::plasticity::{Plasticity, PlasticityError};
use crate::exec::real::Real;
use crate::exec::state::{Chain, Params, SampleRef, StepHook, Summary, Trace};
use crate::ir::train::{TExprId, TFunc, TNode, Train};
use crate::ir::validate::Valid;
use crate::ir::{Module, VarKind};
use crate::train::hooks::{self, RecordText};
use crate::train::loss::{self, Kept, SampleInputs};
use crate::train::method::{BatchOutcome, Example, LearningMethod, MethodState, NonFinite, RunError, Session};
use crate::train::metrics::{Evaluation, TEST_ID_OFFSET};

/// Training samples the labelling pass shows at most (the authors assign labels from the
/// responses to 10,000 training samples).
pub const LABEL_SAMPLES: usize = 10_000;

/// STDP: the synapses' own rules, applied as the network runs.
#[derive(Default)]
pub struct Stdp<F> {
    plasticity: Option<Plasticity<F>>,
    /// The training accuracy as the authors' script reports it: each training sample's
    /// response voted with the labels assigned from the responses to the samples before it,
    /// reassigned every [`RUNNING_ASSIGNMENT`] samples. A sample before the first assignment
    /// counts as wrong.
    running: ResponseTable,
    assignment: Vec<Option<usize>>,
    seen: usize,
}

/// Training samples between two running label assignments.
pub const RUNNING_ASSIGNMENT: usize = 1_000;

impl<F: Real> LearningMethod<F> for Stdp<F> {
    fn name(&self) -> &'static str {
        "stdp"
    }

    fn begin_phase(&mut self, _params: &Params<F>) {}

    /// The synapses' traces are not saved: a resumed run starts them at zero, as after a long
    /// rest (they decay within a few tens of milliseconds).
    fn state(&self) -> MethodState<F> {
        MethodState::default()
    }

    fn restore(&mut self, _state: MethodState<F>) {}

    fn train_batch(
        &mut self,
        session: &Session<F>,
        params: &mut Params<F>,
        net: &mut [f64],
        batch: &[Example],
        _lr: f64,
    ) -> Result<BatchOutcome, RunError> {
        let (module, train) = (session.module, session.train);
        if self.plasticity.is_none() {
            self.plasticity = Some(session.engine.plasticity(module).map_err(RunError::Plasticity)?);
        }
        if self.running.classes() == 0 {
            self.running = ResponseTable::new(session.train.data.classes());
        }
        let plasticity = self.plasticity.as_mut().expect("made above");
        let mut outcome = BatchOutcome { terms: vec![0.0; session.phase.losses.len()], ..BatchOutcome::default() };
        let streams = streams(train);
        for example in batch {
            hooks::apply_actions(module, &train.before_sample, params, net);
            let records = session.recording.then_some(&mut outcome.records);
            let run = Run { engine: session.engine, module, train, seed: session.seed, streams };
            let presented = run.present(params, net, example, Some(plasticity), records)?;
            if let Some(response) = assigned_class_response(train) {
                let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
                let values = loss::evaluate(module, &train.exprs, presented.kept(), 0, params, inputs, &[response])?;
                let response = &values[response.0 as usize].data;
                let classes = self.running.classes();
                outcome.correct += usize::from(vote(&self.assignment, response, classes) == Some(example.label));
                self.running.add(example.label, response);
                self.seen += 1;
                if self.seen.is_multiple_of(RUNNING_ASSIGNMENT) {
                    self.assignment = self.running.assign();
                    self.running = ResponseTable::new(classes);
                }
            }
            presented.recycle();
        }
        Ok(outcome)
    }

    fn evaluate(
        &mut self,
        session: &Session<F>,
        params: &Params<F>,
        net: &[f64],
        data: &Dataset,
        n_label: usize,
        n_test: usize,
    ) -> Option<Result<Evaluation, RunError>> {
        let response = assigned_class_response(session.train)?;
        Some(evaluate_by_assignment(session, params, net, data, response, n_label.min(LABEL_SAMPLES), n_test))
    }
}

/// Whether the train block reads nothing of a presentation but spike counts (the response, the
/// retry condition): then samples run as streaming passes, whose memory does not grow with the
/// steps, rather than into full traces.
pub fn streams(train: &Train) -> bool {
    let roots: Vec<TExprId> = assigned_class_response(train).into_iter().chain(train.retry.as_ref().map(|r| r.condition)).collect();
    loss::counts_suffice(&train.exprs, &roots)
}

/// What a presentation kept.
enum Presented<F> {
    Streamed(Summary<F>),
    Traced(Trace<F>),
}

impl<F: Real> Presented<F> {
    fn kept(&self) -> &dyn Kept {
        match self {
            Presented::Streamed(summary) => summary,
            Presented::Traced(trace) => trace,
        }
    }

    /// Variable `v` of population `p` after the last step.
    fn last_state(&self, p: usize, v: usize) -> &[F] {
        match self {
            Presented::Streamed(summary) => &summary.last[p][v],
            Presented::Traced(trace) => trace.state_after(trace.steps - 1, p, v),
        }
    }

    fn spike_count(&self, p: usize) -> f64 {
        match self {
            Presented::Streamed(summary) => summary.spike_count(p),
            Presented::Traced(trace) => trace.spike_count(p, 0),
        }
    }

    fn recycle(self) {
        if let Presented::Traced(trace) = self {
            trace.recycle();
        }
    }
}

/// What presenting an example needs besides the parameters.
struct Run<'a, F> {
    engine: &'a dyn Engine<F>,
    module: &'a Valid,
    train: &'a Train,
    seed: u64,
    /// Whether presentations stream ([`streams`]).
    streams: bool,
}

impl<F: Real> Run<'_, F> {
    /// Shows one example as the train block says: again, after the `retry` actions, while the
    /// retry condition holds (at most `max` more times). With `plasticity`, the weights learn
    /// as it runs; without, they are held. Persistent states carry over from each
    /// presentation to the next. Returns what the last presentation kept, whose `record`
    /// statements are appended to `records` when given.
    fn present(
        &self,
        params: &mut Params<F>,
        net: &mut [f64],
        example: &Example,
        mut plasticity: Option<&mut Plasticity<F>>,
        mut records: Option<&mut RecordText>,
    ) -> Result<Presented<F>, RunError> {
        let (module, train) = (self.module, self.train);
        let mut attempt = 0;
        loop {
            let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
            let ctx = engine::Ctx { module, seed: self.seed, net: &net_f };
            let mut recorded = RecordText::default();
            let presented = if self.streams {
                let mut recorder = records.is_some().then(|| hooks::Recorder {
                    module,
                    records: &train.records,
                    id: example.sample.id,
                    out: &mut recorded,
                });
                let learning = plasticity.is_some();
                let mut hooks: Vec<&mut dyn StepHook<F>> = Vec::new();
                if let Some(plasticity) = plasticity.as_deref_mut() {
                    hooks.push(plasticity);
                }
                if let Some(recorder) = recorder.as_mut() {
                    hooks.push(recorder);
                }
                let mut chain = Chain(hooks);
                let hook: Option<&mut dyn StepHook<F>> = if chain.0.is_empty() { None } else { Some(&mut chain) };
                let access = if learning { ParamsAccess::Mutable(params) } else { ParamsAccess::Shared(params) };
                Presented::Streamed(self.engine.stream(&ctx, access, example.sample, hook))
            } else {
                let samples = [example.sample];
                let shard = Shard { samples: &samples, hoisted: None };
                let trace = match plasticity.as_deref_mut() {
                    Some(hook) => self.engine.forward(&ctx, ParamsAccess::Mutable(params), shard, Some(hook)),
                    None => self.engine.forward(&ctx, ParamsAccess::Shared(params), shard, None),
                };
                if records.is_some() {
                    hooks::record_trace(module, &train.records, &trace, &[example.sample.id], &mut recorded);
                }
                Presented::Traced(trace)
            };
            if let Some(what) = first_non_finite(module, &presented, example.sample.id) {
                return Err(RunError::NonFinite { what, epoch: 0, batch: 0 });
            }
            carry_states(module, |p, v| presented.last_state(p, v), params);
            let last = match &train.retry {
                None => true,
                Some(retry) => {
                    let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
                    attempt >= retry.max || !hooks::retry_holds(module, train, retry.condition, presented.kept(), params, inputs)?
                }
            };
            if last {
                if let Some(out) = records.as_deref_mut() {
                    out.append(&recorded);
                }
                return Ok(presented);
            }
            presented.recycle();
            if let Some(retry) = &train.retry {
                hooks::apply_actions(module, &retry.actions, params, net);
            }
            attempt += 1;
        }
    }
}

/// Keeps every persistent state's values at the end of a (batch 1) trace with the parameters,
/// where the next sample starts from.
pub fn carry_persistent_states<F: Real>(module: &Module, trace: &Trace<F>, params: &mut Params<F>) {
    carry_states(module, |p, v| trace.state_after(trace.steps - 1, p, v), params);
}

/// Copies every persistent state from `last(population, variable)` into the parameters.
fn carry_states<'a, F: Real>(module: &Module, last: impl Fn(usize, usize) -> &'a [F], params: &mut Params<F>) {
    for (p, pop) in module.populations.iter().enumerate() {
        let n = pop.size();
        for (v, var) in pop.vars.iter().enumerate() {
            if matches!(var.kind, VarKind::State { persistent: true, .. }) {
                params.neuron_params[p][v].copy_from_slice(&last(p, v)[..n]);
            }
        }
    }
}

/// The first NaN or infinite state of a presentation. A NaN stays NaN (no comparison with it
/// holds, so no spike resets it), so the last step is checked first; a full trace is then
/// scanned for the step, a streaming pass names the sample only.
fn first_non_finite<F: Real>(module: &Module, presented: &Presented<F>, sample: u64) -> Option<NonFinite> {
    let finite_at_end = (0..module.populations.len())
        .all(|p| (0..module.populations[p].vars.len()).all(|v| presented.last_state(p, v).iter().all(|x| x.is_finite())));
    if finite_at_end {
        return None;
    }
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, var) in pop.vars.iter().enumerate() {
            let step = match presented {
                Presented::Traced(trace) => (0..trace.steps).find(|t| trace.state_after(*t, p, v).iter().any(|x| !x.is_finite())).map(Some),
                Presented::Streamed(summary) => (!summary.last[p][v].iter().all(|x| x.is_finite())).then_some(None),
            };
            if let Some(step) = step {
                return Some(NonFinite::State { population: pop.name.clone(), variable: var.name.clone(), step, sample });
            }
        }
    }
    None
}

/// The response a train block's `predict = assigned_class(RESPONSE)` assigns classes by.
pub fn assigned_class_response(train: &Train) -> Option<TExprId> {
    let root = train.predict?;
    match &train.exprs.nodes[root.0 as usize].0 {
        TNode::Call(TFunc::AssignedClass, args) => args.first().copied(),
        _ => None,
    }
}

/// What a pass does with each sample: its label, its response and its trace.
type PerSample<'a, F> = dyn FnMut(usize, &[f64], &Presented<F>) + 'a;

/// The labelling pass then the test pass, with learning and `frozen in eval` states held.
fn evaluate_by_assignment<F: Real>(
    session: &Session<F>,
    params: &Params<F>,
    net: &[f64],
    data: &Dataset,
    response: TExprId,
    n_label: usize,
    n_test: usize,
) -> Result<Evaluation, RunError> {
    let (module, train) = (session.module, session.train);
    // The module with its `frozen in eval` states held, or the module itself.
    let held = crate::train::run::frozen_engine::<F>(session.engine.kind(), module)?;
    let (frozen, engine): (&Valid, &dyn Engine<F>) = match &held {
        Some((held_module, held_engine)) => (held_module, held_engine.as_ref()),
        None => (module, session.engine),
    };
    // Evaluation runs on from the trained state, on copies: it changes nothing of the run.
    let mut params = params.clone();
    let mut net = net.to_vec();
    let classes = data.classes.max(1);
    let run = Run { engine, module: frozen, train, seed: session.seed, streams: streams(train) };
    let mut pass = |split: &Split, n: usize, id_offset: u64, per_sample: &mut PerSample<F>| -> Result<(), RunError> {
        for i in 0..n {
            let features = split.sample(i);
            let example =
                Example { sample: SampleRef { id: id_offset + i as u64, features: &features }, label: usize::from(split.labels[i]) };
            hooks::apply_actions(module, &train.before_sample, &mut params, &mut net);
            let presented = run.present(&mut params, &mut net, &example, None, None)?;
            let inputs = SampleInputs { label: example.label, features: example.sample.features, net: &net };
            let values = loss::evaluate(frozen, &train.exprs, presented.kept(), 0, &params, inputs, &[response])?;
            per_sample(example.label, &values[response.0 as usize].data, &presented);
            presented.recycle();
        }
        Ok(())
    };
    let mut table = ResponseTable::new(classes);
    pass(&data.train, n_label.min(data.train.len()), 0, &mut |label, response, _| table.add(label, response))?;
    let assignment = table.assign();
    let mut correct = 0;
    let mut spikes = vec![0.0; module.populations.len()];
    pass(&data.test, n_test.min(data.test.len()), TEST_ID_OFFSET, &mut |label, response, presented| {
        correct += usize::from(vote(&assignment, response, classes) == Some(label));
        for (p, total) in spikes.iter_mut().enumerate() {
            *total += presented.spike_count(p);
        }
    })?;
    for (s, pop) in spikes.iter_mut().zip(&module.populations) {
        *s /= (n_test.max(1) * pop.size()) as f64;
    }
    Ok(Evaluation {
        accuracy: correct as f64 / n_test.max(1) as f64,
        spikes_per_neuron: spikes,
        activity: Vec::new(),
        test_losses: Vec::new(),
    })
}

/// Summed responses per class and neuron over a labelling pass, with the number of samples of
/// each class.
#[derive(Clone, Debug, Default)]
pub struct ResponseTable {
    sums: Vec<Vec<f64>>,
    counts: Vec<usize>,
}

impl ResponseTable {
    pub fn new(classes: usize) -> ResponseTable {
        ResponseTable { sums: vec![Vec::new(); classes], counts: vec![0; classes] }
    }

    pub fn classes(&self) -> usize {
        self.sums.len()
    }

    /// Adds one sample's response (one value per neuron) to its class.
    pub fn add(&mut self, label: usize, response: &[f64]) {
        if label >= self.sums.len() {
            return;
        }
        let sums = &mut self.sums[label];
        if sums.len() < response.len() {
            sums.resize(response.len(), 0.0);
        }
        for (s, r) in sums.iter_mut().zip(response) {
            *s += r;
        }
        self.counts[label] += 1;
    }

    /// Each neuron's class: the one with the highest mean response; None for a neuron that
    /// never responded (it does not vote), as in the authors' code. Ties go to the lower class.
    pub fn assign(&self) -> Vec<Option<usize>> {
        let neurons = self.sums.iter().map(Vec::len).max().unwrap_or(0);
        (0..neurons)
            .map(|k| {
                let mut best: Option<(usize, f64)> = None;
                for (class, sums) in self.sums.iter().enumerate() {
                    if self.counts[class] == 0 {
                        continue;
                    }
                    let mean = sums.get(k).copied().unwrap_or(0.0) / self.counts[class] as f64;
                    if mean > best.map_or(0.0, |(_, m)| m) {
                        best = Some((class, mean));
                    }
                }
                best.map(|(class, _)| class)
            })
            .collect()
    }
}

/// The class whose assigned neurons respond most on average to `response`; None when no neuron
/// is assigned. Ties go to the lower class.
pub fn vote(assignment: &[Option<usize>], response: &[f64], classes: usize) -> Option<usize> {
    let mut sums = vec![0.0; classes];
    let mut counts = vec![0usize; classes];
    for (class, r) in assignment.iter().zip(response) {
        if let Some(c) = class.filter(|c| *c < classes) {
            sums[c] += r;
            counts[c] += 1;
        }
    }
    let mut best: Option<(usize, f64)> = None;
    for c in 0..classes {
        if counts[c] == 0 {
            continue;
        }
        let mean = sums[c] / counts[c] as f64;
        if best.is_none_or(|(_, m)| mean > m) {
            best = Some((c, mean));
        }
    }
    best.map(|(c, _)| c)
}

impl From<PlasticityError> for RunError {
    fn from(error: PlasticityError) -> RunError {
        RunError::Plasticity(error)
    }
}
