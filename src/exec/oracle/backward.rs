//! The oracle's BPTT: for every step in reverse, population in reverse and neuron, the step is
//! re-run on a [`Tape`] from the stored state (recomputation instead of storing every
//! intermediate) and swept backwards; port adjoints become weight gradients and presynaptic
//! spike gradients through the connectivity's adjoint. Independent of the step graph and its
//! derived adjoint that the JIT compiles.

use crate::exec::kernels::connectivity::project_backward;
use crate::exec::kernels::normalize::l2_normalize_rows_backward;
use crate::exec::oracle::source_values;
use crate::exec::oracle::tape::{Leaves, Op, Tape, record, surrogate_grad};
use crate::exec::real::Real;
use crate::exec::state::{Grads, Params, ReadoutGrads, SampleRef, Trace, neuron_rng, rand_draw};
use crate::ir::train::Surrogate;
use crate::ir::{self, BinaryOp, Module, PopId, Population, Source, VarKind};

/// One neuron's step recorded on a tape: the leaves of its state and ports, and the tape
/// entries of its state after the step and of its spike.
pub struct StepTape {
    pub var_leaves: Vec<usize>,
    pub port_leaves: Vec<usize>,
    pub vars_after: Vec<usize>,
    pub spike: usize,
}

/// What one neuron's step reads besides its state and ports.
pub struct NeuronStep<'a, F> {
    pub module: &'a Module,
    pub pop: &'a Population,
    pub counter: u32,
    pub rng: crate::exec::state::RandKey,
    pub time: F,
    pub net: &'a [F],
    pub surrogate: &'a Surrogate,
}

/// Records one neuron's step exactly as [`crate::exec::oracle`] computes it.
pub fn record_step<F: Real>(tape: &mut Tape<F>, step: &NeuronStep<F>, vars: &[F], ports: &[F]) -> StepTape {
    let (module, pop) = (step.module, step.pop);
    let (time, dt, net) = (step.time, F::of(module.dt), step.net);
    tape.clear();
    let var_leaves: Vec<usize> = vars.iter().map(|v| tape.leaf(*v)).collect();
    let port_leaves: Vec<usize> = ports.iter().map(|p| tape.leaf(*p)).collect();
    let zero = tape.constant(F::zero());
    let rng = step.rng;
    let rand = move |id| rand_draw(rng, id);
    let mut current = var_leaves.clone();
    let mut memo = Vec::new();
    let mut apply = |tape: &mut Tape<F>, updates: &[ir::Update], current: &mut Vec<usize>, spiked: usize| {
        for update in updates {
            memo.clear();
            let leaves = Leaves { vars: current, ports: &port_leaves, spiked, time, dt, rand: &rand, net };
            let value = record(tape, &pop.exprs, update.value, &leaves, &mut memo);
            current[update.var.0 as usize] = value;
        }
    };
    for jump in &pop.input_jumps {
        if jump.additive || ports[jump.port.0 as usize] != F::zero() {
            apply(tape, &jump.updates, &mut current, zero);
        }
    }
    let snapshot = current.clone();
    let mut memo = Vec::new();
    for (update, _) in &pop.dynamics {
        let leaves = Leaves { vars: &snapshot, ports: &port_leaves, spiked: zero, time, dt, rand: &rand, net };
        current[update.var.0 as usize] = record(tape, &pop.exprs, update.value, &leaves, &mut memo);
    }
    apply(tape, &pop.updates, &mut current, zero);
    let mut spike = zero;
    if step.counter > 0 {
        for var in pop.held_while_refractory() {
            current[var.0 as usize] = var_leaves[var.0 as usize];
        }
    } else if let Some(threshold) = &pop.threshold {
        let mut memo = Vec::new();
        let leaves = Leaves { vars: &current, ports: &port_leaves, spiked: zero, time, dt, rand: &rand, net };
        let lhs = record(tape, &pop.exprs, threshold.lhs, &leaves, &mut memo);
        let rhs = record(tape, &pop.exprs, threshold.rhs, &leaves, &mut memo);
        let (l, r) = (tape.value(lhs), tape.value(rhs));
        let x = tape.push(Op::Sub(lhs, rhs), l - r);
        let fired = if threshold.op == BinaryOp::Ge { l >= r } else { l > r };
        spike = tape.push(Op::Spike(x, surrogate_grad(step.surrogate, l - r)), if fired { F::one() } else { F::zero() });
        if fired {
            // The reset is applied through a select whose condition is detached.
            let condition = tape.constant(F::one());
            let before = current.clone();
            let mut reset = current.clone();
            apply(tape, &pop.on_spike, &mut reset, spike);
            for update in &pop.on_spike {
                let v = update.var.0 as usize;
                let value = tape.value(reset[v]);
                current[v] = tape.push(Op::Select(condition, reset[v], before[v]), value);
            }
        }
    }
    apply(tape, &pop.after_spike, &mut current, spike);
    StepTape { var_leaves, port_leaves, vars_after: current, spike }
}

/// BPTT over the steps in `window` of a batch: `readout` holds d loss / d (spikes, states) in
/// the trace's row layout; the weight and parameter gradients are added to `grads`.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Real>(
    module: &Module,
    params: &Params<F>,
    trace: &Trace<F>,
    window: std::ops::Range<usize>,
    readout: &mut ReadoutGrads<F>,
    grads: &mut Grads<F>,
    surrogate: &Surrogate,
    samples: &[SampleRef],
    seed: u64,
    net: &[F],
) {
    let batch = trace.batch;
    // d loss / d state after step t, carried backwards.
    let mut carry: Vec<Vec<Vec<F>>> = module.populations.iter().map(|p| vec![vec![F::zero(); p.size() * batch]; p.vars.len()]).collect();
    let mut tape = Tape::default();
    let mut tape_grads = Vec::new();
    for t in window.rev() {
        for (p, pop) in module.populations.iter().enumerate().rev() {
            let (n, r) = (pop.size(), trace.row(p));
            let mut port_grads = vec![vec![F::zero(); r]; pop.ports.len()];
            for k in 0..r {
                let before: Vec<F> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v)[k]).collect();
                let ports: Vec<F> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q)[k]).collect();
                let neuron = NeuronStep {
                    module,
                    pop,
                    counter: trace.counters_at(t, p)[k],
                    rng: neuron_rng(seed, samples[k / n].id, trace.offset + t, p, k % n),
                    time: F::of((trace.offset + t) as f64 * module.dt),
                    net,
                    surrogate,
                };
                let step = record_step(&mut tape, &neuron, &before, &ports);
                tape_grads.clear();
                tape_grads.resize(tape.ops.len(), F::zero());
                let mut any = false;
                for v in 0..pop.vars.len() {
                    let g = carry[p][v][k] + readout.state_at(t, p, v).map_or(F::zero(), |g| g[k]);
                    if g != F::zero() {
                        tape_grads[step.vars_after[v]] += g;
                        any = true;
                    }
                }
                let g_spike = readout.spikes_at(t, p).map_or(F::zero(), |g| g[k]);
                if g_spike != F::zero() {
                    tape_grads[step.spike] += g_spike;
                    any = true;
                }
                if !any {
                    carry[p].iter_mut().for_each(|values| values[k] = F::zero());
                    continue;
                }
                tape.backward(&mut tape_grads);
                for v in 0..pop.vars.len() {
                    carry[p][v][k] = tape_grads[step.var_leaves[v]];
                }
                for (q, leaf) in step.port_leaves.iter().enumerate() {
                    port_grads[q][k] = tape_grads[*leaf];
                }
            }
            project_adjoints(module, params, trace, p, t, &port_grads, readout, grads);
        }
    }
    // Parameters carried through time: their gradient is what reaches the start.
    for (p, pop) in module.populations.iter().enumerate() {
        let n = pop.size();
        for (v, var) in pop.vars.iter().enumerate() {
            if let VarKind::Param { trainable: true, per_neuron, .. } = var.kind {
                let slot = &mut grads.neuron_params[p][v];
                for (k, g) in carry[p][v].iter().enumerate() {
                    slot[if per_neuron { k % n } else { 0 }] += *g;
                }
            }
        }
    }
}

/// Port adjoints of population `p` at step `t` to weight gradients (trainable projections)
/// and to the spike gradients of source populations, sample by sample.
#[allow(clippy::too_many_arguments)]
fn project_adjoints<F: Real>(
    module: &Module,
    params: &Params<F>,
    trace: &Trace<F>,
    p: usize,
    t: usize,
    port_grads: &[Vec<F>],
    readout: &mut ReadoutGrads<F>,
    grads: &mut Grads<F>,
) {
    let pop = &module.populations[p];
    let (batch, n_post) = (trace.batch, pop.size());
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target != PopId(p as u32) {
            continue;
        }
        let Some(source) = source_values(module, proj, trace, t) else { continue };
        let n_pre = module.source_size(&proj.source);
        let mut dw = vec![F::zero(); params.weights[index].len()];
        let mut dx = vec![F::zero(); batch * n_pre];
        for b in 0..batch {
            project_backward(
                &proj.connectivity,
                &params.weights[index],
                &source[b * n_pre..(b + 1) * n_pre],
                &port_grads[proj.port.0 as usize][b * n_post..(b + 1) * n_post],
                &mut dw,
                &mut dx[b * n_pre..(b + 1) * n_pre],
                module.source_shape(&proj.source),
                &pop.shape,
            );
        }
        if proj.trainable {
            for (g, d) in grads.weights[index].iter_mut().zip(&dw) {
                *g += *d;
            }
        }
        let row = batch * n_pre;
        match &proj.source {
            Source::Population(q) => {
                let ts = t - module.source_delay(proj);
                for (slot, g) in readout.spikes_mut(q.0 as usize)[ts * row..(ts + 1) * row].iter_mut().zip(&dx) {
                    *slot += *g;
                }
            }
            // The state after step `s` is the readout's row `s`; the initial state (trace row
            // 0) has no gradient to go to.
            Source::State(s) => {
                let Some(ts) = module.state_source_row(proj, t).and_then(|row| row.checked_sub(1)) else { continue };
                let mut d_state = vec![F::zero(); row];
                if s.l2_normalize {
                    let raw = trace.state_after(ts, s.pop.0 as usize, s.var.0 as usize);
                    l2_normalize_rows_backward(raw, &dx, n_pre, &mut d_state);
                } else {
                    d_state.copy_from_slice(&dx);
                }
                for (slot, g) in readout.states_mut(s.pop.0 as usize, s.var.0 as usize)[ts * row..(ts + 1) * row].iter_mut().zip(&d_state) {
                    *slot += *g;
                }
            }
            Source::Input(_) => {}
        }
    }
}
