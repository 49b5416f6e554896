//! Forward Propagation Through Time (Kag & Saligrama 2021; seeds/000 after Yin, Corradi &
//! Bohte 2023) through the learning-method seam. A sample's steps are cut into `K` windows
//! (`updates`); the batch runs forward one window at a time
//! ([`crate::exec::engine::Engine::begin`], [`crate::exec::engine::Engine::advance`]), and after
//! each window:
//!
//! 1. the train block's loss terms are taken over that window ([`loss::Windowed`]: per-step
//!    readouts cover its steps, `window` and `windows` say which), and the gradient `g_p` of
//!    their batch mean comes from BPTT over the window only (the adjoint starts at zero after
//!    its last step and stops at its first: the state at its start is detached), or over
//!    blocks of `truncate` steps each swept alone (the state detached between them too; with
//!    1, every step: what the authors' code does);
//! 2. the regulariser, in the form of the authors' code (the FPTT implementation seeds/000
//!    builds on, Yin, Corradi & Bohte 2023): `(rho - 1) W·λ + alpha / 2 ||W - W̄||²`, which adds
//!    `(rho - 1) λ + alpha (W - W̄)` to the gradient (Kag & Saligrama's `rho` is `beta`, the
//!    seeds/000 code's 0), `λ` standing for Kag & Saligrama's
//!    `g_prev / 2` term as a running sum (its scale is the parameters' steps, not the raw
//!    gradient's, which an Adam-type optimiser does not follow);
//! 3. the phase's optimiser takes one step;
//! 4. `λ = λ - alpha (W - W̄)`, then the running mean `W̄ = (1 - beta) W̄ + beta W -
//!    (beta / alpha) λ`.
//!
//! After each epoch the parameters are set to their running mean, as the authors' code does.
//! With `alpha = 0` there is no regulariser (`λ` stays 0) and the mean is the plain average
//! `(1 - beta) W̄ + beta W`; with one window and `alpha = 0` a batch is a BPTT step.
//! Every trainable weight and neuron parameter takes part; fixed ones never move.
//! Shards of [`FPTT_SHARD`] samples run in parallel and their gradients are summed in shard
//! order.

use std::ops::Range;

use rayon::prelude::*;

use crate::exec::engine::{Shard, Stepping, Sweep};
use crate::exec::real::Real;
use crate::exec::state::{Grads, Params, ReadoutGrads, SampleRef};
use crate::ir::Module;
use crate::ir::train::Method;
use crate::train::hooks;
use crate::train::loss::{self, SampleInputs, Windowed};
use crate::train::method::{BatchOutcome, Example, LearningMethod, MethodState, NonFinite, RunError, Session};
use crate::train::optim::{Optimizer, step_unit};

/// Samples per FPTT shard: fixed, so that gradients are summed in the same order whatever the
/// thread count, and twice BPTT's [`crate::train::bptt::SHARD`]: a shard's trace holds one
/// window, not the sample, so a larger shard costs little memory, while it gives every GEMM
/// of a step twice the rows and halves the gradient buffers zeroed and summed per window
/// (the authors' one-step truncation sweeps one step per window, so those buffers weigh more
/// than in BPTT). Measured in docs/results.md.
pub const FPTT_SHARD: usize = 64;

/// FPTT with the phase's optimiser.
#[derive(Default)]
pub struct Fptt<F> {
    optimizer: Option<Optimizer<F>>,
    /// The running mean `W̄` of every parameter.
    mean: Option<Params<F>>,
    /// The running correction `λ`.
    correction: Option<Params<F>>,
}

/// The steps of window `p` of `k` over `steps` steps: as equal as integers allow.
pub fn window(p: usize, k: usize, steps: usize) -> Range<usize> {
    p * steps / k..(p + 1) * steps / k
}

/// The blocks of at most `truncate` steps that BPTT runs over alone inside a window's `rows`,
/// in time order, the last ending with the window (`None`: the window is one block).
pub fn blocks(rows: Range<usize>, truncate: Option<usize>) -> Vec<Range<usize>> {
    let n = truncate.unwrap_or(rows.len()).max(1);
    let mut blocks = Vec::new();
    let mut end = rows.end;
    while end > rows.start {
        let start = end.saturating_sub(n).max(rows.start);
        blocks.push(start..end);
        end = start;
    }
    blocks.reverse();
    blocks
}

/// Calls `f(value, mean, gradient, correction, unit)` for every trainable value, element by
/// element: `unit` is the declared unit a neuron parameter is optimised in (1 for weights and
/// dimensionless values; [`crate::train::optim`]), in which the regulariser is measured.
fn each_trainable<F: Real>(
    module: &Module,
    params: &mut Params<F>,
    mean: &mut Params<F>,
    grads: &mut Grads<F>,
    correction: &mut Params<F>,
    f: &mut impl FnMut(&mut F, &mut F, &mut F, &mut F, F),
) {
    for (index, proj) in module.projections.iter().enumerate() {
        if !proj.trainable {
            continue;
        }
        let values = params.weights[index].iter_mut().zip(&mut mean.weights[index]);
        for ((w, m), (g, q)) in values.zip(grads.weights[index].iter_mut().zip(&mut correction.weights[index])) {
            f(w, m, g, q, F::one());
        }
    }
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, var) in pop.vars.iter().enumerate() {
            let Some(unit) = step_unit(&var.kind).map(F::of) else { continue };
            let values = params.neuron_params[p][v].iter_mut().zip(&mut mean.neuron_params[p][v]);
            for ((w, m), (g, q)) in values.zip(grads.neuron_params[p][v].iter_mut().zip(&mut correction.neuron_params[p][v])) {
                f(w, m, g, q, unit);
            }
        }
    }
}

/// One shard's forward state and its gradient buffer, both kept across the windows of a batch.
struct ShardRun<F> {
    stepping: Stepping<F>,
    grads: Grads<F>,
}

impl<F: Real> Fptt<F> {
    /// Loss terms of window `steps` (number `p` of `k`) for one shard whose forward pass has
    /// run through the window; its gradient is written into `grads` (cleared first).
    #[allow(clippy::too_many_arguments)]
    fn window_gradients(
        session: &Session<F>,
        params: &Params<F>,
        net: &[f64],
        stepping: &Stepping<F>,
        examples: &[Example],
        samples: &[SampleRef],
        steps: Range<usize>,
        (p, k): (usize, usize),
        truncate: Option<usize>,
        grads: &mut Grads<F>,
    ) -> Result<Vec<f64>, RunError> {
        let (module, train, phase) = (session.module, session.train, session.phase);
        let trace = &stepping.trace;
        let mut readout = ReadoutGrads::zeros(module, trace.steps, examples.len());
        let roots: Vec<_> = phase.losses.iter().map(|t| t.value).collect();
        let mut terms = vec![0.0; roots.len()];
        let view = Windowed { trace, steps: steps.clone(), index: p, count: k };
        for (b, example) in examples.iter().enumerate() {
            let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
            let values = loss::evaluate(module, &train.exprs, &view, b, params, inputs, &roots)?;
            for (slot, (term, root)) in terms.iter_mut().zip(phase.losses.iter().zip(&roots)) {
                let value = values[root.0 as usize].data[0];
                if !value.is_finite() {
                    return Err(RunError::NonFinite {
                        what: NonFinite::Loss { term: term.name.clone(), sample: example.sample.id },
                        epoch: 0,
                        batch: 0,
                    });
                }
                *slot += value;
                loss::backward(module, trace, &train.exprs, &values, *root, 1.0, params, &mut readout, b, net, steps.clone())?;
            }
        }
        grads.clear();
        for (g, r) in grads.weights.iter_mut().zip(&readout.weights) {
            for (x, y) in g.iter_mut().zip(r) {
                *x += *y;
            }
        }
        let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
        let ctx = session.ctx(&net_f);
        let blocks = blocks(steps, truncate);
        // Between blocks the state is detached: each block's rows start from the loss's own
        // adjoints, without what the later block's sweep sent back into them.
        let loss_only = (blocks.len() > 1).then(|| readout.clone());
        for block in blocks.into_iter().rev() {
            // A block with no adjoint of the loss's own starts from a detached (zero) state and
            // computes zeros: skip it. What later blocks' sweeps sent back into its rows is
            // dropped by the detachment, so only the loss's rows count.
            if let Some(loss_only) = &loss_only {
                if !loss_only.holds_any(block.clone()) {
                    continue;
                }
                readout.restore_rows(loss_only, block.clone());
            } else if !readout.holds_any(block.clone()) {
                continue;
            }
            let shard = Shard { samples, hoisted: None };
            session.engine.backward(&ctx, params, Sweep { shard, trace, window: block }, &mut readout, grads)?;
        }
        Ok(terms)
    }
}

impl<F: Real> LearningMethod<F> for Fptt<F> {
    fn name(&self) -> &'static str {
        "fptt"
    }

    fn begin_phase(&mut self, params: &Params<F>) {
        self.optimizer = Some(Optimizer::new(params));
        self.mean = Some(params.clone());
        self.correction = Some(params.zeros_like());
    }

    fn state(&self) -> MethodState<F> {
        let mut state = Optimizer::saved(self.optimizer.as_ref());
        if let Some(mean) = &self.mean {
            state.tensors.push(("fptt_mean".to_string(), mean.clone()));
        }
        if let Some(correction) = &self.correction {
            state.tensors.push(("fptt_correction".to_string(), correction.clone()));
        }
        state
    }

    fn restore(&mut self, mut state: MethodState<F>) {
        let mut take = |name: &str| state.tensors.iter().position(|(n, _)| n == name).map(|i| state.tensors.remove(i).1);
        let (mean, correction) = (take("fptt_mean"), take("fptt_correction"));
        if mean.is_some() {
            self.mean = mean;
        }
        if correction.is_some() {
            self.correction = correction;
        }
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
        let (module, train) = (session.module, session.train);
        let Method::Fptt { updates, alpha, beta, rho, truncate, .. } = train.method else {
            unreachable!("the fptt method runs fptt train blocks");
        };
        if hooks::needs_sequential(train) {
            return Err(RunError::Unsupported("`retry` and `+=` actions in `every sample` are not run by `fptt` yet".to_string()));
        }
        hooks::apply_actions(module, &train.before_sample, params, net);
        let k = updates.clamp(1, module.steps.max(1));
        let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
        let ctx = session.ctx(&net_f);
        let samples: Vec<SampleRef> = batch.iter().map(|e| e.sample).collect();
        let shards: Vec<(&[Example], &[SampleRef])> = batch.chunks(FPTT_SHARD).zip(samples.chunks(FPTT_SHARD)).collect();
        // Each shard's trace holds one window, and the steps before it that delayed
        // connections read: memory in the window's length, not the sample's.
        let history = module.longest_delay();
        let first = window(0, k, module.steps).len();
        let mut runs: Vec<ShardRun<F>> = shards
            .par_iter()
            .map(|(_, s)| ShardRun { stepping: session.engine.begin(&ctx, params, s, first), grads: params.zeros_like() })
            .collect();
        let mut outcome = BatchOutcome { terms: vec![0.0; session.phase.losses.len()], ..BatchOutcome::default() };
        let mean = self.mean.get_or_insert_with(|| params.clone());
        let correction = self.correction.get_or_insert_with(|| params.zeros_like());
        let optimizer = self.optimizer.get_or_insert_with(|| Optimizer::new(params));
        let scale = F::of(1.0 / batch.len().max(1) as f64);
        for p in 0..k {
            let steps = window(p, k, module.steps);
            let shared: &Params<F> = params;
            let results: Vec<Result<Vec<f64>, RunError>> = runs
                .par_iter_mut()
                .zip(&shards)
                .map(|(run, (examples, samples))| {
                    let stepping = &mut run.stepping;
                    if p > 0 {
                        stepping.slide(module, steps.len(), history);
                    }
                    session.engine.advance(&ctx, shared, samples, stepping, steps.end);
                    let rows = stepping.rows(steps.clone());
                    Self::window_gradients(session, shared, net, stepping, examples, samples, rows, (p, k), truncate, &mut run.grads)
                })
                .collect();
            for result in results {
                for (sum, term) in outcome.terms.iter_mut().zip(&result?) {
                    *sum += term;
                }
            }
            // Summed in shard order into the first shard's buffer.
            let Some((first_run, rest)) = runs.split_first_mut() else { break };
            let total = &mut first_run.grads;
            for run in rest.iter() {
                total.add(&run.grads);
            }
            total.scale(scale);
            if total.has_non_finite() {
                return Err(RunError::NonFinite { what: NonFinite::Gradient, epoch: 0, batch: 0 });
            }
            // The regulariser's gradient: (rho - 1) λ + alpha (W - W̄), in the unit the
            // optimiser steps a value in: for a value held in SI units but stepped in its
            // declared unit u, that gradient in u over u, and λ and W - W̄ in u are their SI
            // values over u: 1 / u² in all.
            let (a, b, keep) = (F::of(alpha), F::of(beta), F::of(1.0 - beta));
            if alpha > 0.0 {
                let lean = F::of(rho - 1.0);
                each_trainable(module, params, mean, total, correction, &mut |w, m, g, l, u| {
                    *g += (lean * *l + a * (*w - *m)) / (u * u);
                });
            }
            optimizer.update(module, params, total, &session.phase.optimizer, lr, train.clip_grad_norm);
            // λ, then the running mean.
            let pull = if alpha > 0.0 { F::of(beta / alpha) } else { F::zero() };
            each_trainable(module, params, mean, total, correction, &mut |w, m, _, l, _| {
                *l -= a * (*w - *m);
                *m = keep * *m + b * *w - pull * *l;
            });
        }
        // The training prediction, from the last window (what the trace keeps; with one window
        // the whole sample). The test pass predicts from whole samples.
        if let Some(root) = train.predict {
            let last = window(k - 1, k, module.steps);
            for (run, (examples, _)) in runs.iter().zip(&shards) {
                let view = Windowed { trace: &run.stepping.trace, steps: run.stepping.rows(last.clone()), index: k - 1, count: k };
                for (b, example) in examples.iter().enumerate() {
                    let inputs = SampleInputs { label: example.label, features: example.sample.features, net };
                    let values = loss::evaluate(module, &train.exprs, &view, b, params, inputs, &[root])?;
                    outcome.correct += usize::from(values[root.0 as usize].data[0] as usize == example.label);
                }
            }
        }
        for run in runs.drain(..) {
            run.stepping.trace.recycle();
        }
        Ok(outcome)
    }

    fn end_epoch(&mut self, module: &Module, params: &mut Params<F>) {
        // The authors' reset: every trainable value to its running mean.
        if let Some(mean) = self.mean.as_mut() {
            let mut unused = params.zeros_like();
            let mut zeros = params.zeros_like();
            each_trainable(module, params, mean, &mut unused, &mut zeros, &mut |w, m, _, _, _| *w = *m);
        }
    }
}
