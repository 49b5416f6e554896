//! What the train block asks for around each sample, for every learning method: `every
//! sample` actions (weight normalisation, network parameters), `retry when ... max N`, `clamp`
//! (a population's spikes held at given values while evaluating) and `record` (spikes and
//! variables written as CSV while training).

use std::fmt::Write as _;

use crate::exec::engine::StepHook;
use crate::exec::real::Real;
use crate::exec::state::{At, Params, Trace};
use crate::ir::train::{HookAction, TExprId, Train};
use crate::ir::{Module, PopId, VarId};
use crate::train::loss::{self, LossError, SampleInputs};

/// Whether the train block's per-sample actions must run sample by sample: a retry, or an
/// action that is not idempotent (adding to a parameter). Otherwise they can run once per
/// batch: every sample of a batch sees the same weights, and setting a parameter or
/// normalising weights twice changes nothing.
pub fn needs_sequential(train: &Train) -> bool {
    train.retry.is_some() || train.before_sample.iter().any(|a| matches!(a, HookAction::AddToParam { .. }))
}

/// Applies hook actions to the weights and the network parameters' values.
pub fn apply_actions<F: Real>(module: &Module, actions: &[HookAction], params: &mut Params<F>, net: &mut [f64]) {
    for action in actions {
        match action {
            HookAction::NormalizeColumns { projection, total } => {
                let index = projection.0 as usize;
                let n_post = module.population(module.projections[index].target).size();
                normalize_columns(&mut params.weights[index], n_post, *total);
            }
            HookAction::AddToParam { param, by } => net[*param as usize] += by,
            HookAction::SetParam { param, value } => net[*param as usize] = *value,
        }
    }
}

/// Scales every column of an `n_pre x n_post` weight matrix to sum to `total` (columns that sum
/// to zero stay as they are).
pub fn normalize_columns<F: Real>(weights: &mut [F], n_post: usize, total: f64) {
    if n_post == 0 {
        return;
    }
    let mut sums = vec![0.0f64; n_post];
    for row in weights.chunks_exact(n_post) {
        for (s, w) in sums.iter_mut().zip(row) {
            *s += w.into_f64();
        }
    }
    let factors: Vec<F> = sums.iter().map(|s| if *s == 0.0 { F::one() } else { F::of(total / s) }).collect();
    for row in weights.chunks_exact_mut(n_post) {
        for (w, f) in row.iter_mut().zip(&factors) {
            *w *= *f;
        }
    }
}

/// Whether the retry condition holds for sample `b` of `trace`.
pub fn retry_holds<F: Real>(
    module: &Module,
    train: &Train,
    condition: TExprId,
    trace: &(impl loss::Kept + ?Sized),
    params: &Params<F>,
    inputs: SampleInputs,
) -> Result<bool, LossError> {
    let values = loss::evaluate(module, &train.exprs, trace, 0, params, inputs, &[condition])?;
    Ok(values[condition.0 as usize].data[0] != 0.0)
}

/// Holds what the train block clamps at the values of its expressions while a batch runs
/// step by step: a population's spikes after its step, a state before every step.
pub struct Clamps {
    /// Per clamp: its values for every sample of the batch, one row.
    pub rows: Vec<(ClampTarget, Vec<f64>)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClampTarget {
    Spikes(PopId),
    State(PopId, VarId),
}

impl Clamps {
    /// The clamp values of a batch from the train block's clamp expressions, which read the
    /// label (and constants) only.
    pub fn of<F: Real>(
        module: &Module,
        train: &Train,
        params: &Params<F>,
        samples: &[(usize, &[f32])],
        net: &[f64],
    ) -> Result<Clamps, LossError> {
        let mut rows = Vec::new();
        let empty: Trace<F> = Trace::new(module, 1);
        for clamp in &train.clamps {
            let n = module.population(clamp.pop).size();
            let mut row = Vec::with_capacity(samples.len() * n);
            for (label, features) in samples {
                let inputs = SampleInputs { label: *label, features, net };
                let values = loss::evaluate(module, &train.exprs, &empty, 0, params, inputs, &[clamp.value])?;
                let value = &values[clamp.value.0 as usize];
                row.extend((0..n).map(|i| value.data[if value.width == 1 { 0 } else { i }]));
            }
            let target = match clamp.var {
                Some(var) => ClampTarget::State(clamp.pop, var),
                None => ClampTarget::Spikes(clamp.pop),
            };
            rows.push((target, row));
        }
        Ok(Clamps { rows })
    }
}

impl<F: Real> StepHook<F> for Clamps {
    fn after_population(&mut self, at: At, p: usize, trace: &mut Trace<F>, _params: Option<&mut Params<F>>) {
        for (target, row) in &self.rows {
            if *target == ClampTarget::Spikes(PopId(p as u32)) {
                let spikes: Vec<F> = row.iter().map(|v| if *v != 0.0 { F::one() } else { F::zero() }).collect();
                trace.store_spikes(at.row, p, &spikes);
            }
        }
    }

    fn before_step(&mut self, at: At, trace: &mut Trace<F>) {
        for (target, row) in &self.rows {
            if let ClampTarget::State(pop, var) = *target {
                let r = trace.row(pop.0 as usize);
                let values = &mut trace.states[pop.0 as usize][var.0 as usize][at.row * r..(at.row + 1) * r];
                values.iter_mut().zip(row).for_each(|(x, v)| *x = F::of(*v));
            }
        }
    }
}

/// CSV text of a train block's `record` statements for one trace: spikes as
/// `sample,step,population,neuron` rows (one per spike) and recorded variables as
/// `sample,step,population,neuron,<variable>...` rows, one per neuron and step.
#[derive(Debug, Default)]
pub struct RecordText {
    pub spikes: String,
    pub variables: String,
    /// Presentations recorded (a sample shown again by `retry`, or in a later epoch, counts
    /// again): what a firing rate over the records divides by, since a silent presentation
    /// writes no spike row.
    pub samples: usize,
}

impl RecordText {
    /// Appends the records of later presentations.
    pub fn append(&mut self, later: &RecordText) {
        self.spikes.push_str(&later.spikes);
        self.variables.push_str(&later.variables);
        self.samples += later.samples;
    }
}

/// The header lines of the two record files.
pub fn record_headers(module: &Module, records: &[(PopId, Option<VarId>)]) -> (String, String) {
    let mut columns = Vec::new();
    for (pop, var) in records {
        if let Some(v) = var {
            let population = module.population(*pop);
            columns.push(format!("{}.{}", population.name, population.vars[v.0 as usize].name));
        }
    }
    ("sample,step,population,neuron\n".to_string(), format!("sample,step,population,neuron,{}\n", columns.join(",")))
}

/// Appends the records of every sample of `trace` (`ids` the samples' identities).
pub fn record_trace<F: Real>(module: &Module, records: &[(PopId, Option<VarId>)], trace: &Trace<F>, ids: &[u64], out: &mut RecordText) {
    out.samples += ids.len();
    for (b, id) in ids.iter().enumerate() {
        for t in 0..trace.steps {
            record_step(module, records, trace, At::full(t), b, *id, out);
        }
    }
}

/// Appends the records of step `at` of sample `b` (identity `id`) of `trace`.
fn record_step<F: Real>(
    module: &Module,
    records: &[(PopId, Option<VarId>)],
    trace: &Trace<F>,
    at: At,
    b: usize,
    id: u64,
    out: &mut RecordText,
) {
    let (t, row) = (at.step, at.row);
    for (pop, _) in records.iter().filter(|(_, v)| v.is_none()) {
        let (p, n) = (pop.0 as usize, trace.sizes[pop.0 as usize]);
        let r = trace.row(p);
        trace.spikes[p].for_each_set(row * r + b * n..row * r + (b + 1) * n, |i| {
            let _ = writeln!(out.spikes, "{id},{t},{},{i}", module.population(*pop).name);
        });
    }
    // Each population with recorded variables once, in the order of its first record.
    let mut populations: Vec<PopId> = Vec::new();
    for (pop, var) in records {
        if var.is_some() && !populations.contains(pop) {
            populations.push(*pop);
        }
    }
    for pop in &populations {
        let (p, n) = (pop.0 as usize, trace.sizes[pop.0 as usize]);
        for i in 0..n {
            let _ = write!(out.variables, "{id},{t},{},{i}", module.population(*pop).name);
            for (q, v) in records.iter().filter_map(|(q, v)| v.map(|v| (*q, v))) {
                if q == *pop {
                    let _ = write!(out.variables, ",{}", trace.state_after(row, p, v.0 as usize)[b * n + i]);
                } else {
                    out.variables.push(',');
                }
            }
            out.variables.push('\n');
        }
    }
}

/// Writes a train block's `record` statements as a sample runs step by step (for a streaming
/// pass, which keeps no trace to record from afterwards): once every population has stepped.
pub struct Recorder<'a> {
    pub module: &'a Module,
    pub records: &'a [(PopId, Option<VarId>)],
    pub id: u64,
    pub out: &'a mut RecordText,
}

impl<F: Real> StepHook<F> for Recorder<'_> {
    fn after_population(&mut self, at: At, p: usize, trace: &mut Trace<F>, _params: Option<&mut Params<F>>) {
        if p + 1 == self.module.populations.len() {
            if at.step == 0 {
                self.out.samples += 1;
            }
            record_step(self.module, self.records, trace, at, 0, self.id, self.out);
        }
    }
}
