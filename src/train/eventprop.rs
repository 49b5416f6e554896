//! EventProp (Wunderlich & Pehle 2021; seeds/002) through the learning-method seam: every
//! sample runs with exact spike times ([`crate::exec::exact`]), the train block's loss terms
//! are evaluated on first-spike times and spike penalties, their adjoints with respect to
//! those times ([`loss::sweep`]) become the event terms of the spikes, and the adjoint pass
//! gives the weights' gradients. Samples of a batch run in parallel; their gradients are
//! summed in sample order, so results do not depend on the thread count.

use rayon::prelude::*;

use crate::exec::exact::{ExactNet, Run};
use crate::exec::real::Real;
use crate::exec::state::{Grads, Params};
use crate::ir::Module;
use crate::ir::train::{Readout, TExprId, TNode};
use crate::train::loss::{self, Kept, LossError, SampleInputs, Value};
use crate::train::method::{BatchOutcome, Example, LearningMethod, MethodState, NonFinite, RunError, Session};
use crate::train::metrics::{Evaluation, TEST_ID_OFFSET};
use crate::train::optim::Optimizer;

/// EventProp: exact gradients from the neurons' own equations.
#[derive(Default)]
pub struct EventProp<F> {
    optimizer: Option<Optimizer<F>>,
    /// The network's linear systems for the network parameters' values they were built with.
    exact: Option<(Vec<f64>, ExactNet)>,
}

/// A sample's run as the train block's expressions read it.
pub struct Exact<'a> {
    pub module: &'a Module,
    pub run: &'a Run,
    pub duration: f64,
}

impl Kept for Exact<'_> {
    fn steps(&self) -> usize {
        self.module.steps
    }

    fn readout(&self, module: &Module, _b: usize, readout: Readout, _net: &[f64]) -> Result<Value, LossError> {
        let per_neuron = |data: Vec<f64>| Ok(Value { per_step: false, width: data.len(), data });
        match readout {
            Readout::FirstSpike(p) => {
                per_neuron(self.run.populations[p.0 as usize].first_times(module.population(p).size(), self.duration))
            }
            Readout::SpikePenalty(p) => per_neuron(penalties(self.run, module, p.0 as usize)),
            Readout::Count(p) => {
                let mut counts = vec![0.0; module.population(p).size()];
                for k in &self.run.populations[p.0 as usize].neurons {
                    counts[*k as usize] += 1.0;
                }
                per_neuron(counts)
            }
            Readout::Spikes(_) => Err(LossError::NotKept { readout: "spikes" }),
            Readout::State(p, v) => {
                let (p, n) = (p.0 as usize, module.population(p).size());
                let dim = module.populations[p].vars.len();
                let data = self.run.state(p, v.0 as usize, dim).ok_or(LossError::NotKept { readout: "a state variable" })?;
                Ok(Value { per_step: true, width: n, data })
            }
            Readout::Observable(..) => Err(LossError::NotKept { readout: "an observable" }),
        }
    }
}

/// Each neuron's first spike and later spikes, as indices into population `p`'s spikes.
fn per_neuron_spikes(run: &Run, module: &Module, p: usize) -> Vec<Vec<usize>> {
    let mut spikes = vec![Vec::new(); module.populations[p].size()];
    for (k, m) in run.populations[p].neurons.iter().enumerate() {
        spikes[*m as usize].push(k);
    }
    spikes
}

/// seeds/002's spike penalty per neuron: `Σ 1 / (t_p - t_1)` over every spike after the first.
fn penalties(run: &Run, module: &Module, p: usize) -> Vec<f64> {
    let times = &run.populations[p].times;
    per_neuron_spikes(run, module, p)
        .iter()
        .map(|ks| match ks.split_first() {
            Some((first, rest)) => rest.iter().map(|k| 1.0 / (times[*k] - times[*first]).max(1e-12)).sum(),
            None => 0.0,
        })
        .collect()
}

/// Which populations' states the train block's expressions read: those runs sample them at
/// every grid time.
fn sampled_states(module: &Module, exprs: &crate::ir::train::TExprs) -> Vec<bool> {
    let mut sample = vec![false; module.populations.len()];
    for (node, _) in &exprs.nodes {
        if let TNode::Readout(Readout::State(p, _)) = node {
            sample[p.0 as usize] = true;
        }
    }
    sample
}

/// What one sample gives: its loss terms, whether its prediction was right, and its weight
/// gradients.
struct SampleResult {
    terms: Vec<f64>,
    correct: bool,
    grads: Vec<Vec<f64>>,
    spikes: Vec<f64>,
}

impl<F: Real> EventProp<F> {
    fn exact(&mut self, module: &Module, net: &[f64]) -> Result<&ExactNet, RunError> {
        if self.exact.as_ref().is_none_or(|(values, _)| values != net) {
            let built = ExactNet::new(module, net).map_err(|e| RunError::Exact(e.to_string()))?;
            self.exact = Some((net.to_vec(), built));
        }
        Ok(&self.exact.as_ref().expect("built above").1)
    }
}

/// Runs `example` and, when `terms` name loss terms, its EventProp gradients.
#[allow(clippy::too_many_arguments)]
fn sample(
    module: &Module,
    exprs: &crate::ir::train::TExprs,
    exact: &ExactNet,
    params: &Params<f64>,
    net: &[f64],
    example: &Example,
    terms: &[TExprId],
    predict: Option<TExprId>,
) -> Result<SampleResult, RunError> {
    let run = exact.forward_sampling(module, params, example.sample.features, &sampled_states(module, exprs));
    let kept = Exact { module, run: &run, duration: exact.duration };
    let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
    let roots: Vec<TExprId> = terms.iter().copied().chain(predict).collect();
    let values = loss::evaluate(module, exprs, &kept, 0, params, inputs, &roots)?;
    let mut dl_dt: Vec<Vec<f64>> = run.populations.iter().map(|s| vec![0.0; s.len()]).collect();
    let mut dl_dx: Vec<Vec<f64>> = run.sampled.iter().map(|s| vec![0.0; s.len()]).collect();
    let mut term_values = Vec::with_capacity(terms.len());
    for root in terms {
        term_values.push(values[root.0 as usize].data[0]);
        loss::sweep(exprs, &values, *root, 1.0, &mut |node, g, _| {
            let TNode::Readout(readout) = node else { return Ok(()) };
            match readout {
                Readout::FirstSpike(p) => {
                    let p = p.0 as usize;
                    for (j, ks) in per_neuron_spikes(&run, module, p).iter().enumerate() {
                        if let Some(first) = ks.first() {
                            dl_dt[p][*first] += g[j];
                        }
                    }
                }
                Readout::SpikePenalty(p) => {
                    let p = p.0 as usize;
                    let times = &run.populations[p].times;
                    for (j, ks) in per_neuron_spikes(&run, module, p).iter().enumerate() {
                        let Some((first, rest)) = ks.split_first() else { continue };
                        for k in rest {
                            let gap = (times[*k] - times[*first]).max(1e-12);
                            let d = g[j] / (gap * gap);
                            dl_dt[p][*k] -= d;
                            dl_dt[p][*first] += d;
                        }
                    }
                }
                // A count does not move with the spike times: no gradient.
                Readout::Count(_) => {}
                Readout::State(p, v) => {
                    let (p, v) = (p.0 as usize, v.0 as usize);
                    let dim = module.populations[p].vars.len();
                    for (slot, g) in dl_dx[p].chunks_exact_mut(dim).zip(g) {
                        slot[v] += g;
                    }
                }
                Readout::Spikes(_) | Readout::Observable(..) => {
                    return Err(LossError::NotKept { readout: "a per-step readout" });
                }
            }
            Ok(())
        })?;
    }
    let grads = if terms.is_empty() { Vec::new() } else { exact.backward_with_states(module, params, &run, &dl_dt, &dl_dx) };
    let correct = predict.is_some_and(|root| values[root.0 as usize].data[0] as usize == example.label);
    let spikes = run.populations.iter().map(|s| s.len() as f64).collect();
    Ok(SampleResult { terms: term_values, correct, grads, spikes })
}

/// One sample's loss terms (the phase's `terms`, in order) and the weight gradients of their
/// sum, exactly as a training step computes them: the readouts' adjoints with respect to the
/// spike times, then the adjoint pass.
#[allow(clippy::too_many_arguments)]
pub fn sample_gradients(
    module: &Module,
    exprs: &crate::ir::train::TExprs,
    exact: &ExactNet,
    params: &Params<f64>,
    net: &[f64],
    features: &[f32],
    label: usize,
    terms: &[TExprId],
) -> Result<(Vec<f64>, Vec<Vec<f64>>), RunError> {
    let example = Example { sample: crate::exec::state::SampleRef { id: 0, features }, label };
    let result = sample(module, exprs, exact, params, net, &example, terms, None)?;
    Ok((result.terms, result.grads))
}

impl<F: Real> LearningMethod<F> for EventProp<F> {
    fn name(&self) -> &'static str {
        "eventprop"
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
        let (module, train, phase) = (session.module, session.train, session.phase);
        crate::train::hooks::apply_actions(module, &train.before_sample, params, net);
        let exact = self.exact(module, net)?;
        let p64: Params<f64> = params.convert();
        let terms: Vec<TExprId> = phase.losses.iter().map(|t| t.value).collect();
        let results: Vec<Result<SampleResult, RunError>> =
            batch.par_iter().map(|example| sample(module, &train.exprs, exact, &p64, net, example, &terms, train.predict)).collect();
        let mut outcome = BatchOutcome { terms: vec![0.0; terms.len()], ..BatchOutcome::default() };
        let mut total: Vec<Vec<f64>> = p64.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        for (result, example) in results.into_iter().zip(batch) {
            let result = result?;
            for (k, (sum, value)) in outcome.terms.iter_mut().zip(&result.terms).enumerate() {
                if !value.is_finite() {
                    let what = NonFinite::Loss { term: phase.losses[k].name.clone(), sample: example.sample.id };
                    return Err(RunError::NonFinite { what, epoch: 0, batch: 0 });
                }
                *sum += value;
            }
            outcome.correct += usize::from(result.correct);
            for (t, g) in total.iter_mut().zip(&result.grads) {
                for (a, b) in t.iter_mut().zip(g) {
                    *a += b;
                }
            }
        }
        let scale = 1.0 / batch.len().max(1) as f64;
        let mut grads: Grads<F> = params.zeros_like();
        for (g, t) in grads.weights.iter_mut().zip(&total) {
            for (a, b) in g.iter_mut().zip(t) {
                *a = F::of(b * scale);
            }
        }
        if grads.has_non_finite() {
            return Err(RunError::NonFinite { what: NonFinite::Gradient, epoch: 0, batch: 0 });
        }
        let optimizer = self.optimizer.get_or_insert_with(|| Optimizer::new(params));
        optimizer.update(module, params, &grads, &phase.optimizer, lr, train.clip_grad_norm);
        Ok(outcome)
    }

    fn evaluate(
        &mut self,
        session: &Session<F>,
        params: &Params<F>,
        net: &[f64],
        data: &crate::data::Dataset,
        _n_label: usize,
        n_test: usize,
    ) -> Option<Result<Evaluation, RunError>> {
        let (module, train) = (session.module, session.train);
        let exact = match self.exact(module, net) {
            Ok(exact) => exact,
            Err(error) => return Some(Err(error)),
        };
        let p64: Params<f64> = params.convert();
        let n = n_test.min(data.test.len());
        let results: Vec<Result<SampleResult, RunError>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let features = data.test.sample(i);
                let example = Example {
                    sample: crate::exec::state::SampleRef { id: TEST_ID_OFFSET + i as u64, features: &features },
                    label: usize::from(data.test.labels[i]),
                };
                sample(module, &train.exprs, exact, &p64, net, &example, &[], train.predict)
            })
            .collect();
        let mut correct = 0;
        let mut spikes = vec![0.0; module.populations.len()];
        for result in results {
            match result {
                Ok(result) => {
                    correct += usize::from(result.correct);
                    for (s, r) in spikes.iter_mut().zip(&result.spikes) {
                        *s += r;
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
        for (s, pop) in spikes.iter_mut().zip(&module.populations) {
            *s /= (n.max(1) * pop.size()) as f64;
        }
        Some(Ok(Evaluation {
            accuracy: correct as f64 / n.max(1) as f64,
            spikes_per_neuron: spikes,
            activity: Vec::new(),
            test_losses: Vec::new(),
        }))
    }
}
