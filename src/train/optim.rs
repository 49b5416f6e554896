//! Optimisers (Adam, Adamax, SGD with momentum, weight decay, gradient-norm clipping) and
//! learning-rate schedules, element-wise over [`Params`].

use rayon::prelude::*;

use crate::exec::real::Real;
use crate::exec::state::{Grads, Params};
use crate::ir::train::{LrSchedule, OptimizerKind};
use crate::ir::{Module, VarKind};
use crate::train::method::MethodState;

/// Elements per parallel chunk: fixed, so that results do not depend on the thread count.
pub const CHUNK: usize = 1 << 14;

/// The learning rate of `epoch` (0-based within its phase) under `schedule`.
pub fn learning_rate(schedule: &LrSchedule, base: f64, epoch: usize) -> f64 {
    match schedule {
        LrSchedule::Constant => base,
        LrSchedule::Step { every, gamma } => base * gamma.powi((epoch / (*every).max(1)) as i32),
        LrSchedule::Exponential { gamma } => base * gamma.powi(epoch as i32),
    }
}

/// The unit a trainable neuron parameter is optimised in (its declared unit's scale: 1e-3
/// for ms), `None` for anything else: its value and gradient are taken in that unit by the
/// optimiser step, by clipping and by FPTT's regulariser.
pub fn step_unit(kind: &VarKind) -> Option<f64> {
    let VarKind::Param { trainable: true, scale, .. } = *kind else { return None };
    Some(if scale > 0.0 && scale.is_finite() { scale } else { 1.0 })
}

/// Adam, Adamax or SGD state for every learnable value.
pub struct Optimizer<F> {
    m: Grads<F>,
    v: Grads<F>,
    step: i32,
}

impl<F: Real> Optimizer<F> {
    pub fn new(params: &Params<F>) -> Optimizer<F> {
        Optimizer { m: params.zeros_like(), v: params.zeros_like(), step: 0 }
    }

    /// The moments and the step count, to resume from (see [`crate::train::method::MethodState`]).
    pub fn state(&self) -> (Grads<F>, Grads<F>, i64) {
        (self.m.clone(), self.v.clone(), i64::from(self.step))
    }

    /// The optimiser's moments and step as a learning method's saved state (`m`, `v`, the
    /// step as the counter); an empty state before the first step.
    pub fn saved(optimizer: Option<&Optimizer<F>>) -> MethodState<F> {
        match optimizer {
            Some(optimizer) => {
                let (m, v, step) = optimizer.state();
                MethodState { tensors: vec![("m".to_string(), m), ("v".to_string(), v)], counter: step }
            }
            None => MethodState::default(),
        }
    }

    /// The optimiser [`Optimizer::saved`] wrote, when the state holds one.
    pub fn from_saved(state: MethodState<F>) -> Option<Optimizer<F>> {
        let mut tensors = state.tensors.into_iter();
        match (tensors.next(), tensors.next()) {
            (Some((_, m)), Some((_, v))) => Some(Optimizer::restore(m, v, state.counter)),
            _ => None,
        }
    }

    pub fn restore(m: Grads<F>, v: Grads<F>, step: i64) -> Optimizer<F> {
        Optimizer { m, v, step: step as i32 }
    }

    /// Chunks the weight update of the last step was split into (for tests of determinism).
    pub fn chunks(params: &Params<F>) -> usize {
        params.weights.iter().map(|w| w.len().div_ceil(CHUNK)).sum()
    }

    /// One step of the optimiser on every trainable value.
    pub fn update(
        &mut self,
        module: &Module,
        params: &mut Params<F>,
        grads: &Grads<F>,
        config: &crate::ir::train::Optimizer,
        lr: f64,
        clip: Option<f64>,
    ) {
        self.step += 1;
        let mut scale = 1.0;
        if let Some(max_norm) = clip {
            // The norm of the gradient the optimiser steps along: a neuron parameter's in its
            // declared unit (a time constant in ms has a gradient per ms, not per second).
            let weights: f64 = grads.weights.iter().flatten().map(|g| g.into_f64() * g.into_f64()).sum();
            let mut neurons = 0.0;
            for (p, pop) in module.populations.iter().enumerate() {
                for (v, var) in pop.vars.iter().enumerate() {
                    let Some(unit) = step_unit(&var.kind) else { continue };
                    neurons += grads.neuron_params[p][v].iter().map(|g| (g.into_f64() * unit).powi(2)).sum::<f64>();
                }
            }
            let norm = (weights + neurons).sqrt();
            if norm > max_norm {
                scale = max_norm / norm;
            }
        }
        let of = F::of;
        let (b1, b2, eps) = (of(config.beta1), of(config.beta2), of(config.eps));
        let (lr, scale, decay, momentum) = (of(lr), of(scale), of(config.weight_decay), of(config.momentum));
        // Bias corrections of this step, in f64 and then rounded once.
        let (c1, c2) = (of(1.0 - config.beta1.powi(self.step)), of(1.0 - config.beta2.powi(self.step)));
        let kind = config.kind;
        let rule = Rule { kind, lr, scale, decay, momentum, b1, b2, eps, c1, c2 };
        for (index, proj) in module.projections.iter().enumerate() {
            if !proj.trainable {
                continue;
            }
            params.weights[index]
                .par_chunks_mut(CHUNK)
                .zip(grads.weights[index].par_chunks(CHUNK))
                .zip(self.m.weights[index].par_chunks_mut(CHUNK))
                .zip(self.v.weights[index].par_chunks_mut(CHUNK))
                .for_each(|(((p, g), m), v)| rule.apply(p, g, m, v));
        }
        for (p, pop) in module.populations.iter().enumerate() {
            for (v, var) in pop.vars.iter().enumerate() {
                let Some(unit) = step_unit(&var.kind) else { continue };
                let (values, grads) = (&mut params.neuron_params[p][v], &grads.neuron_params[p][v]);
                let (m, v) = (&mut self.m.neuron_params[p][v], &mut self.v.neuron_params[p][v]);
                if unit == 1.0 {
                    rule.apply(values, grads, m, v);
                    continue;
                }
                // Optimised in the declared unit: the value over the unit, the gradient times it.
                let u = of(unit);
                let mut in_unit: Vec<F> = values.iter().map(|x| *x / u).collect();
                let scaled: Vec<F> = grads.iter().map(|g| *g * u).collect();
                rule.apply(&mut in_unit, &scaled, m, v);
                for (x, y) in values.iter_mut().zip(in_unit) {
                    *x = y * u;
                }
            }
        }
    }
}

/// One optimiser step's constants: the update rule applied element-wise.
#[derive(Clone, Copy)]
struct Rule<F> {
    kind: OptimizerKind,
    lr: F,
    /// The clipping factor of the gradient.
    scale: F,
    decay: F,
    momentum: F,
    b1: F,
    b2: F,
    eps: F,
    /// Adam's bias corrections of this step.
    c1: F,
    c2: F,
}

impl<F: Real> Rule<F> {
    /// Updates `p` (with moments `m`, `v`) from gradients `g`, the kind matched once per
    /// chunk so that each loop is a straight line the compiler vectorises.
    fn apply(&self, p: &mut [F], g: &[F], m: &mut [F], v: &mut [F]) {
        let Rule { kind, lr, scale, decay, momentum, b1, b2, eps, c1, c2 } = *self;
        let one = F::one();
        let elements = p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut());
        match kind {
            OptimizerKind::Sgd => {
                for (((p, g), m), _) in elements {
                    let g = *g * scale + decay * *p;
                    *m = momentum * *m + g;
                    *p -= lr * *m;
                }
            }
            OptimizerKind::Adam => {
                for (((p, g), m), v) in elements {
                    let g = *g * scale + decay * *p;
                    *m = b1 * *m + (one - b1) * g;
                    *v = b2 * *v + (one - b2) * g * g;
                    *p -= lr * (*m / c1) / ((*v / c2).sqrt() + eps);
                }
            }
            OptimizerKind::Adamax => {
                for (((p, g), m), v) in elements {
                    let g = *g * scale + decay * *p;
                    *m = b1 * *m + (one - b1) * g;
                    *v = (b2 * *v).max(g.abs());
                    *p -= lr / c1 * *m / (*v + eps);
                }
            }
        }
    }
}
