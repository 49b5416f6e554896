//! Surrogate-gradient BPTT through the learning-method seam: a batch is split into shards of
//! [`SHARD`] samples that run forward and backward on rayon threads; the shards' gradients are
//! summed in shard order (so a fixed seed gives the same weights for any thread count) and one
//! optimiser step follows. Train blocks whose per-sample actions cannot be batched (`retry`,
//! adding to a parameter) run their samples one after another instead, with the same
//! gradient and one optimiser step per batch.

use rayon::prelude::*;

use crate::exec::engine::{ParamsAccess, Shard, Sweep};
use crate::exec::real::Real;
use crate::exec::state::{Grads, HoistedRows, Params, ReadoutGrads, SampleRef, Trace};
use crate::train::hooks::{self, RecordText};
use crate::train::loss::{self, SampleInputs};
use crate::train::method::{BatchOutcome, Example, LearningMethod, MethodState, NonFinite, RunError, Session};
use crate::train::optim::Optimizer;

/// Samples per shard: fixed, so that gradients are summed in the same order whatever the
/// number of threads.
pub const SHARD: usize = 32;

/// BPTT with the phase's optimiser.
#[derive(Default)]
pub struct Bptt<F> {
    optimizer: Option<Optimizer<F>>,
    /// The batch gradient, kept between batches so that its pages are not faulted in anew.
    grads: Option<Grads<F>>,
}

/// What one shard produced.
struct ShardResult<F> {
    terms: Vec<f64>,
    correct: usize,
    grads: Grads<F>,
    hoisted_sums: Vec<Option<Vec<F>>>,
    records: RecordText,
}

impl<F: Real> LearningMethod<F> for Bptt<F> {
    fn name(&self) -> &'static str {
        "bptt"
    }

    fn begin_phase(&mut self, params: &Params<F>) {
        self.optimizer = Some(Optimizer::new(params));
    }

    fn state(&self) -> MethodState<F> {
        Optimizer::saved(self.optimizer.as_ref())
    }

    fn restore(&mut self, state: MethodState<F>) {
        if let Some(optimizer) = Optimizer::from_saved(state) {
            self.optimizer = Some(optimizer);
        }
    }

    fn train_batch(
        &mut self,
        session: &Session<F>,
        params: &mut Params<F>,
        net: &mut [f64],
        batch: &[Example],
        lr: f64,
    ) -> Result<BatchOutcome, RunError> {
        let mut total = self.grads.take().unwrap_or_else(|| params.zeros_like());
        let outcome = batch_gradients_into(session, params, net, batch, &mut total)?;
        if total.has_non_finite() {
            return Err(RunError::NonFinite { what: NonFinite::Gradient, epoch: 0, batch: 0 });
        }
        let optimizer = self.optimizer.get_or_insert_with(|| Optimizer::new(params));
        optimizer.update(session.module, params, &total, &session.phase.optimizer, lr, session.train.clip_grad_norm);
        self.grads = Some(total);
        Ok(outcome)
    }
}

/// Loss terms and the mean gradient of a batch, without the optimiser step: what
/// [`Bptt::train_batch`] computes before it updates the parameters (and what tests compare
/// across engines). `params` and `net` change only by the train block's `every sample`
/// actions.
pub fn batch_gradients<F: Real>(
    session: &Session<F>,
    params: &mut Params<F>,
    net: &mut [f64],
    batch: &[Example],
) -> Result<(BatchOutcome, Grads<F>), RunError> {
    let mut total = params.zeros_like();
    let outcome = batch_gradients_into(session, params, net, batch, &mut total)?;
    Ok((outcome, total))
}

/// [`batch_gradients`] into a gradient buffer of the parameters' layout, which it clears.
fn batch_gradients_into<F: Real>(
    session: &Session<F>,
    params: &mut Params<F>,
    net: &mut [f64],
    batch: &[Example],
    total: &mut Grads<F>,
) -> Result<BatchOutcome, RunError> {
    let (module, train) = (session.module, session.train);
    let mut outcome = BatchOutcome { terms: vec![0.0; session.phase.losses.len()], ..BatchOutcome::default() };
    total.clear();
    let add = |result: ShardResult<F>, total: &mut Grads<F>, outcome: &mut BatchOutcome| {
        total.add(&result.grads);
        for (sum, term) in outcome.terms.iter_mut().zip(&result.terms) {
            *sum += term;
        }
        outcome.correct += result.correct;
        outcome.records.append(&result.records);
    };
    if hooks::needs_sequential(train) {
        for example in batch {
            hooks::apply_actions(module, &train.before_sample, params, net);
            let (trace, net_used) = present_with_retry(session, params, net, example)?;
            let result = shard_from_trace(session, params, &net_used, &[*example], trace, None)?;
            add(result, total, &mut outcome);
        }
    } else {
        hooks::apply_actions(module, &train.before_sample, params, net);
        let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
        let ctx = session.ctx(&net_f);
        let samples: Vec<SampleRef> = batch.iter().map(|e| e.sample).collect();
        let hoisted = session.engine.prepare(&ctx, params, &samples);
        let shared: &Params<F> = params;
        let results: Vec<Result<ShardResult<F>, RunError>> = batch
            .par_chunks(SHARD)
            .enumerate()
            .map(|(s, examples)| {
                let samples = &samples[s * SHARD..s * SHARD + examples.len()];
                let shard = Shard { samples, hoisted: Some(HoistedRows { hoisted: &hoisted, from: s * SHARD }) };
                let trace = session.engine.forward(&ctx, ParamsAccess::Shared(shared), shard, None);
                shard_from_trace(session, shared, net, examples, trace, Some(shard))
            })
            .collect();
        let mut sums = Vec::with_capacity(results.len());
        for result in results {
            let mut result = result?;
            sums.push(std::mem::take(&mut result.hoisted_sums));
            add(result, total, &mut outcome);
        }
        session.engine.finish_batch(&ctx, &hoisted, &sums, total);
    }
    total.scale(F::of(1.0 / batch.len().max(1) as f64));
    Ok(outcome)
}

/// Runs one example forward as the train block says: again with the `retry` actions applied
/// while the retry condition holds, at most `max` more times. Returns the last trace and the
/// network parameters it ran with.
fn present_with_retry<F: Real>(
    session: &Session<F>,
    params: &mut Params<F>,
    net: &mut [f64],
    example: &Example,
) -> Result<(Trace<F>, Vec<f64>), RunError> {
    let (module, train) = (session.module, session.train);
    let mut attempt = 0;
    loop {
        let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
        let ctx = session.ctx(&net_f);
        let samples = [example.sample];
        let trace = session.engine.forward(&ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, None);
        let Some(retry) = &train.retry else { return Ok((trace, net.to_vec())) };
        let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
        if attempt >= retry.max || !hooks::retry_holds(module, train, retry.condition, &trace, params, inputs)? {
            return Ok((trace, net.to_vec()));
        }
        trace.recycle();
        // The retry's actions change what the next presentation sees: network parameters and
        // weights (a normalisation) alike.
        hooks::apply_actions(module, &retry.actions, params, net);
        attempt += 1;
    }
}

/// The first state, in step order, that is NaN or infinite in a shard's trace.
fn first_non_finite<F: Real>(module: &crate::ir::Module, trace: &Trace<F>, examples: &[Example]) -> Option<NonFinite> {
    for t in 0..trace.steps {
        for (p, pop) in module.populations.iter().enumerate() {
            let n = pop.size();
            for (v, var) in pop.vars.iter().enumerate() {
                if let Some(k) = trace.state_after(t, p, v).iter().position(|x| !x.is_finite()) {
                    let sample = examples.get(k / n.max(1)).map_or(0, |e| e.sample.id);
                    return Some(NonFinite::State { population: pop.name.clone(), variable: var.name.clone(), step: Some(t), sample });
                }
            }
        }
    }
    None
}

/// Loss terms, predictions and gradients of a shard from its trace.
fn shard_from_trace<F: Real>(
    session: &Session<F>,
    params: &Params<F>,
    net: &[f64],
    examples: &[Example],
    trace: Trace<F>,
    shard: Option<Shard<F>>,
) -> Result<ShardResult<F>, RunError> {
    let (module, train, phase) = (session.module, session.train, session.phase);
    let mut readout = ReadoutGrads::zeros(module, trace.steps, examples.len());
    let mut terms = vec![0.0; phase.losses.len()];
    let mut correct = 0;
    let mut roots: Vec<_> = phase.losses.iter().map(|t| t.value).collect();
    roots.extend(train.predict);
    for (b, example) in examples.iter().enumerate() {
        let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
        let values = loss::evaluate(module, &train.exprs, &trace, b, params, inputs, &roots)?;
        for (k, term) in phase.losses.iter().enumerate() {
            let value = values[term.value.0 as usize].data[0];
            if !value.is_finite() {
                // Name the first state that went wrong, or else the term.
                let what = first_non_finite(module, &trace, examples)
                    .unwrap_or(NonFinite::Loss { term: term.name.clone(), sample: example.sample.id });
                trace.recycle();
                return Err(RunError::NonFinite { what, epoch: 0, batch: 0 });
            }
            terms[k] += value;
            loss::backward(module, &trace, &train.exprs, &values, term.value, 1.0, params, &mut readout, b, net, 0..trace.steps)?;
        }
        if let Some(root) = train.predict {
            correct += usize::from(values[root.0 as usize].data[0] as usize == example.label);
        }
    }
    // Projections hoisted at batch level get their weight gradient once for the whole batch:
    // no shard-sized buffer for them.
    let deferred = |index: usize| shard.and_then(|s| s.hoisted).is_some_and(|rows| rows.hoisted.y[index].is_some());
    let mut grads = params.zeros_except(deferred);
    for (g, r) in grads.weights.iter_mut().zip(&readout.weights) {
        if g.len() < r.len() {
            g.resize(r.len(), F::zero());
        }
        for (x, y) in g.iter_mut().zip(r) {
            *x += *y;
        }
    }
    let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
    let samples: Vec<SampleRef> = examples.iter().map(|e| e.sample).collect();
    let shard = shard.unwrap_or(Shard { samples: &samples, hoisted: None });
    let hoisted_sums = session.engine.backward(
        &session.ctx(&net_f),
        params,
        Sweep { shard, trace: &trace, window: 0..trace.steps },
        &mut readout,
        &mut grads,
    )?;
    let mut records = RecordText::default();
    if session.recording {
        let ids: Vec<u64> = examples.iter().map(|e| e.sample.id).collect();
        hooks::record_trace(module, &train.records, &trace, &ids, &mut records);
    }
    trace.recycle();
    Ok(ShardResult { terms, correct, grads, hoisted_sums, records })
}
