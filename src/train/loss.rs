//! Training expressions (loss terms, predictions, retry conditions) evaluated on one sample's
//! trace, with their gradients with respect to spikes, states and weights.

use std::fmt;

use crate::exec::oracle::{Columns, eval_columns};
use crate::exec::real::Real;
use crate::exec::state::{Params, ReadoutGrads, Summary, Trace};
use crate::ir::train::{Readout, TExprId, TExprs, TFunc, TNode};
use crate::ir::{BinaryOp, Module, UnaryOp, eval_binary};

/// A value of a training expression for one sample: `data[t * width + i]` when per step.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    pub per_step: bool,
    pub width: usize,
    pub data: Vec<f64>,
}

impl Value {
    fn scalar(value: f64) -> Value {
        Value { per_step: false, width: 1, data: vec![value] }
    }

    fn steps(&self) -> usize {
        self.data.len() / self.width.max(1)
    }

    /// Element (t, i) with broadcasting over time and width.
    fn at(&self, t: usize, i: usize) -> f64 {
        let t = if self.per_step { t } else { 0 };
        let i = if self.width == 1 { 0 } else { i };
        self.data[t * self.width + i]
    }
}

/// A training expression that cannot be evaluated or differentiated here.
#[derive(Debug, Clone, PartialEq)]
pub enum LossError {
    /// A readout that belongs to a learning method whose runtime is not built.
    Readout { readout: &'static str, method: &'static str },
    /// The derivative of an observable could not be derived.
    Observable { name: String, error: crate::ir::grad::GradError },
    /// An observable that reads an input port: its gradient needs the port's adjoint.
    ObservableReadsInput { name: String },
    /// A readout of a pass that kept only spike counts and final states.
    NotKept { readout: &'static str },
}

impl fmt::Display for LossError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LossError::Readout { readout, method } => {
                write!(f, "`{readout}` is computed by the `{method}` runtime, which is not built yet")
            }
            LossError::Observable { name, error } => write!(f, "observable `{name}`: {error}"),
            LossError::ObservableReadsInput { name } => write!(f, "observable `{name}` reads an input; its gradient is not built yet"),
            LossError::NotKept { readout } => write!(f, "`{readout}` needs every step, and this pass kept spike counts only"),
        }
    }
}

impl std::error::Error for LossError {}

/// What a sample gives a training expression besides the trace.
#[derive(Clone, Copy, Debug)]
pub struct SampleInputs<'a> {
    pub label: usize,
    pub features: &'a [f32],
    /// The network parameters' current values.
    pub net: &'a [f64],
}

/// Evaluates every node of `exprs` for sample `b` of `trace`.
#[allow(clippy::too_many_arguments)]
/// Only the nodes that `roots` depend on are computed; the others stay empty.
pub fn evaluate<F: Real>(
    module: &Module,
    exprs: &TExprs,
    trace: &(impl Kept + ?Sized),
    b: usize,
    params: &Params<F>,
    inputs: SampleInputs,
    roots: &[TExprId],
) -> Result<Vec<Value>, LossError> {
    let (label, sample) = (inputs.label, inputs.features);
    let steps = trace.steps();
    let needed = needed(exprs, roots);
    let last_only = read_at_last_step_only(exprs, &needed, roots);
    let mut values: Vec<Value> = Vec::with_capacity(exprs.nodes.len());
    for (index, (node, ty)) in exprs.nodes.iter().enumerate() {
        if !needed[index] {
            values.push(Value { per_step: false, width: 0, data: Vec::new() });
            continue;
        }
        let value = match node {
            TNode::Const(v) => Value::scalar(*v),
            TNode::Label => Value::scalar(label as f64),
            TNode::Sample => Value { per_step: false, width: sample.len(), data: sample.iter().map(|x| f64::from(*x)).collect() },
            TNode::Readout(readout) if last_only[index] && matches!(readout, Readout::State(..) | Readout::Spikes(_)) => {
                match trace.readout_last(module, b, *readout, inputs.net) {
                    Some(value) => value?,
                    None => trace.readout(module, b, *readout, inputs.net)?,
                }
            }
            TNode::Readout(readout) => trace.readout(module, b, *readout, inputs.net)?,
            TNode::Steps => Value::scalar(trace.active_steps(module) as f64),
            TNode::Window => Value::scalar(trace.window().0 as f64),
            TNode::Windows => Value::scalar(trace.window().1 as f64),
            TNode::NetParam(index) => Value::scalar(inputs.net[*index as usize]),
            TNode::WeightL2(proj) => Value::scalar(params.weights[proj.0 as usize].iter().map(|w| w.into_f64() * w.into_f64()).sum()),
            TNode::Unary(op, a) => {
                let a = &values[a.0 as usize];
                let data = a.data.iter().map(|x| if *op == UnaryOp::Neg { -x } else { f64::from(u8::from(*x == 0.0)) }).collect();
                Value { data, ..a.clone() }
            }
            TNode::Binary(op, a, b) => {
                let (a, b) = (&values[a.0 as usize], &values[b.0 as usize]);
                let per_step = a.per_step || b.per_step;
                let width = a.width.max(b.width);
                let t_count = if per_step { steps } else { 1 };
                let mut data = Vec::with_capacity(t_count * width);
                for t in 0..t_count {
                    for i in 0..width {
                        data.push(eval_binary(*op, a.at(t, i), b.at(t, i)).unwrap_or(f64::NAN));
                    }
                }
                Value { per_step, width, data }
            }
            TNode::Call(func, args) => call(*func, &args.iter().map(|a| &values[a.0 as usize]).collect::<Vec<_>>(), steps, ty.width)?,
        };
        values.push(value);
    }
    Ok(values)
}

/// Which nodes `roots` depend on (arena order is evaluation order, so one backward pass).
/// The needed nodes that only `last_t` reads (and that are no root).
fn read_at_last_step_only(exprs: &TExprs, needed: &[bool], roots: &[TExprId]) -> Vec<bool> {
    let mut only = vec![true; exprs.nodes.len()];
    for root in roots {
        only[root.0 as usize] = false;
    }
    for (index, (node, _)) in exprs.nodes.iter().enumerate() {
        if !needed[index] {
            continue;
        }
        match node {
            TNode::Call(TFunc::LastT, _) => {}
            TNode::Unary(_, a) => only[a.0 as usize] = false,
            TNode::Binary(_, a, b) => {
                only[a.0 as usize] = false;
                only[b.0 as usize] = false;
            }
            TNode::Call(_, args) => args.iter().for_each(|a| only[a.0 as usize] = false),
            _ => {}
        }
    }
    only
}

fn needed(exprs: &TExprs, roots: &[TExprId]) -> Vec<bool> {
    let mut needed = vec![false; exprs.nodes.len()];
    for root in roots {
        needed[root.0 as usize] = true;
    }
    for index in (0..exprs.nodes.len()).rev() {
        if !needed[index] {
            continue;
        }
        match &exprs.nodes[index].0 {
            TNode::Unary(_, a) => needed[a.0 as usize] = true,
            TNode::Binary(_, a, b) => {
                needed[a.0 as usize] = true;
                needed[b.0 as usize] = true;
            }
            TNode::Call(_, args) => args.iter().for_each(|a| needed[a.0 as usize] = true),
            TNode::Const(_)
            | TNode::Label
            | TNode::Sample
            | TNode::Steps
            | TNode::Window
            | TNode::Windows
            | TNode::NetParam(_)
            | TNode::Readout(_)
            | TNode::WeightL2(_) => {}
        }
    }
    needed
}

/// What a forward pass kept that the train block's expressions read: a full [`Trace`], or a
/// streaming pass's [`Summary`], which answers spike counts only.
pub trait Kept {
    /// The steps a per-step readout covers.
    fn steps(&self) -> usize;
    /// The active steps `rate(p)` divides by: the sample's, or a window's.
    fn active_steps(&self, module: &Module) -> usize {
        module.steps
    }
    /// Which window of how many the readouts cover (`window`, `windows`): (0, 1) for a sample.
    fn window(&self) -> (usize, usize) {
        (0, 1)
    }
    /// The value of `readout` for sample `b`.
    fn readout(&self, module: &Module, b: usize, readout: Readout, net: &[f64]) -> Result<Value, LossError>;

    /// A per-step readout over the last step only, for an expression that reads nothing else of
    /// it (`last_t(c1.u)` of a large population need not copy every step); `None` where the
    /// source keeps no such view (then [`Kept::readout`] serves). Its rows are the window's
    /// last, as every readout's rows are the window's trailing steps.
    fn readout_last(&self, _module: &Module, _b: usize, _readout: Readout, _net: &[f64]) -> Option<Result<Value, LossError>> {
        None
    }
}

impl<F: Real> Kept for Trace<F> {
    fn steps(&self) -> usize {
        self.steps
    }

    fn readout(&self, module: &Module, b: usize, readout: Readout, net: &[f64]) -> Result<Value, LossError> {
        readout_value(module, self, b, readout, net, 0..self.steps)
    }

    fn readout_last(&self, module: &Module, b: usize, readout: Readout, net: &[f64]) -> Option<Result<Value, LossError>> {
        Some(readout_value(module, self, b, readout, net, self.steps.saturating_sub(1)..self.steps))
    }
}

/// A trace as a loss taken over one window of its steps reads it: per-step readouts cover the
/// window's steps, `count` and `rate` its spikes, `window` and `windows` say which (FPTT).
pub struct Windowed<'a, F> {
    pub trace: &'a Trace<F>,
    pub steps: std::ops::Range<usize>,
    /// The window's index and how many there are.
    pub index: usize,
    pub count: usize,
}

impl<F: Real> Kept for Windowed<'_, F> {
    fn steps(&self) -> usize {
        self.steps.len()
    }

    fn active_steps(&self, _module: &Module) -> usize {
        self.steps.len()
    }

    fn window(&self) -> (usize, usize) {
        (self.index, self.count)
    }

    fn readout(&self, module: &Module, b: usize, readout: Readout, net: &[f64]) -> Result<Value, LossError> {
        readout_value(module, self.trace, b, readout, net, self.steps.clone())
    }

    fn readout_last(&self, module: &Module, b: usize, readout: Readout, net: &[f64]) -> Option<Result<Value, LossError>> {
        let end = self.steps.end;
        Some(readout_value(module, self.trace, b, readout, net, end.saturating_sub(1).max(self.steps.start)..end))
    }
}

impl<F: Real> Kept for Summary<F> {
    fn steps(&self) -> usize {
        self.steps
    }

    fn readout(&self, _module: &Module, _b: usize, readout: Readout, _net: &[f64]) -> Result<Value, LossError> {
        match readout {
            Readout::Count(p) => {
                let data: Vec<f64> = self.counts[p.0 as usize].iter().map(|c| f64::from(*c)).collect();
                Ok(Value { per_step: false, width: data.len(), data })
            }
            other => Err(LossError::NotKept { readout: readout_name(other) }),
        }
    }
}

fn readout_name(readout: Readout) -> &'static str {
    match readout {
        Readout::Spikes(_) => "spikes",
        Readout::Count(_) => "count",
        Readout::FirstSpike(_) => "first_spike",
        Readout::State(..) => "a state variable",
        Readout::Observable(..) => "an observable",
        Readout::SpikePenalty(_) => "spike_penalty",
    }
}

/// Whether `roots` read nothing of a run but spike counts: then a streaming pass, which keeps
/// no trace, is enough to evaluate them.
pub fn counts_suffice(exprs: &TExprs, roots: &[TExprId]) -> bool {
    let needed = needed(exprs, roots);
    exprs
        .nodes
        .iter()
        .zip(&needed)
        .all(|((node, _), needed)| !needed || !matches!(node, TNode::Readout(r) if !matches!(r, Readout::Count(_))))
}

fn readout_value<F: Real>(
    module: &Module,
    trace: &Trace<F>,
    b: usize,
    readout: Readout,
    net: &[f64],
    steps: std::ops::Range<usize>,
) -> Result<Value, LossError> {
    Ok(match readout {
        Readout::Spikes(p) => {
            let n = module.population(p).size();
            let p = p.0 as usize;
            Value { per_step: true, width: n, data: steps.flat_map(|t| trace.sample_spikes::<f64>(t, p, b)).collect() }
        }
        Readout::Count(p) => {
            let (n, p) = (module.population(p).size(), p.0 as usize);
            let r = trace.row(p);
            let mut data = vec![0.0; n];
            for t in steps {
                trace.spikes[p].for_each_set(t * r + b * n..t * r + (b + 1) * n, |i| data[i] += 1.0);
            }
            Value { per_step: false, width: n, data }
        }
        Readout::State(p, v) => {
            let n = module.population(p).size();
            Value {
                per_step: true,
                width: n,
                data: steps
                    .flat_map(|t| trace.state_after(t, p.0 as usize, v.0 as usize)[b * n..(b + 1) * n].iter().map(|x| x.into_f64()))
                    .collect(),
            }
        }
        Readout::Observable(p, o) => {
            let pop = module.population(p);
            let (n, id) = (pop.size(), pop.observables[o as usize].1);
            let (vars, ports, times) = gather(module, trace, p.0 as usize, b, steps, &pop.exprs, &[id]);
            let columns = Columns { vars: &vars, ports: &ports, times: &times, net, dt: module.dt };
            Value { per_step: true, width: n, data: eval_columns(&pop.exprs, id, &columns) }
        }
        Readout::FirstSpike(_) => return Err(LossError::Readout { readout: "first_spike", method: "eventprop" }),
        Readout::SpikePenalty(_) => return Err(LossError::Readout { readout: "spike_penalty", method: "eventprop" }),
    })
}

/// Population `p`'s variables after each step of `steps` and its ports during it, for sample
/// `b`, as columns (step-major, then neuron) with each element's time: what the expressions
/// `roots` read, the rest left empty.
fn gather<F: Real>(
    module: &Module,
    trace: &Trace<F>,
    p: usize,
    b: usize,
    steps: std::ops::Range<usize>,
    exprs: &crate::ir::Exprs,
    roots: &[crate::ir::ExprId],
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>, Vec<f64>) {
    let pop = &module.populations[p];
    let n = pop.size();
    let reads_var = |v: usize| roots.iter().any(|id| exprs.reads(*id, &|var| var.0 as usize == v));
    let reads_port = |q: usize| roots.iter().any(|id| exprs.reads_port(*id, crate::ir::PortId(q as u32)));
    let vars = (0..pop.vars.len())
        .map(|v| match reads_var(v) {
            true => steps.clone().flat_map(|t| trace.state_after(t, p, v)[b * n..(b + 1) * n].iter().map(|x| x.into_f64())).collect(),
            false => Vec::new(),
        })
        .collect();
    let ports = (0..pop.ports.len())
        .map(|q| match reads_port(q) {
            true => steps.clone().flat_map(|t| trace.port_at(t, p, q)[b * n..(b + 1) * n].iter().map(|x| x.into_f64())).collect(),
            false => Vec::new(),
        })
        .collect();
    let times = steps.flat_map(|t| std::iter::repeat_n((trace.offset + t) as f64 * module.dt, n)).collect();
    (vars, ports, times)
}

fn softmax_row(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn call(func: TFunc, args: &[&Value], steps: usize, width: usize) -> Result<Value, LossError> {
    let a = args[0];
    let t_count = if a.per_step { steps } else { 1 };
    let row = |t: usize| &a.data[t * a.width..(t + 1) * a.width];
    let per_row = |f: &dyn Fn(&[f64], usize) -> Vec<f64>, out_width: usize| -> Value {
        let data = (0..t_count).flat_map(|t| f(row(t), t)).collect();
        Value { per_step: a.per_step, width: out_width, data }
    };
    let label = |t: usize| args.get(1).map_or(0, |b| b.at(t, 0) as usize);
    Ok(match func {
        TFunc::Mse => {
            let b = args[1];
            let per_step = a.per_step || b.per_step;
            let t_count = if per_step { steps } else { 1 };
            let data =
                (0..t_count).map(|t| (0..a.width).map(|i| (a.at(t, i) - b.at(t, i)).powi(2)).sum::<f64>() / a.width as f64).collect();
            Value { per_step, width: 1, data }
        }
        TFunc::CrossEntropy => per_row(&|r, t| vec![-(softmax_row(r)[label(t).min(r.len() - 1)].max(1e-300)).ln()], 1),
        TFunc::Nll => per_row(&|r, t| vec![-r[label(t).min(r.len() - 1)]], 1),
        TFunc::LogSoftmax => per_row(&|r, _| softmax_row(r).iter().map(|p| p.max(1e-300).ln()).collect(), a.width),
        TFunc::Softmax => per_row(&|r, _| softmax_row(r), a.width),
        TFunc::OneHot => {
            let (on, off) = (args[1].data[0], args[2].data[0]);
            let label = a.data[0] as usize;
            Value { per_step: false, width, data: (0..width).map(|i| if i == label { on } else { off }).collect() }
        }
        TFunc::Pick => per_row(&|r, t| vec![r[label(t).min(r.len() - 1)]], 1),
        TFunc::Sum => per_row(&|r, _| vec![r.iter().sum()], 1),
        TFunc::Mean => per_row(&|r, _| vec![r.iter().sum::<f64>() / r.len() as f64], 1),
        TFunc::Abs => Value { data: a.data.iter().map(|x| x.abs()).collect(), ..a.clone() },
        TFunc::Exp => Value { data: a.data.iter().map(|x| x.exp()).collect(), ..a.clone() },
        TFunc::Log => Value { data: a.data.iter().map(|x| x.ln()).collect(), ..a.clone() },
        TFunc::Argmax | TFunc::Argmin => per_row(
            &|r, _| {
                let better = |x: f64, y: f64| if func == TFunc::Argmax { x > y } else { x < y };
                let mut best = 0;
                for (i, x) in r.iter().enumerate() {
                    if better(*x, r[best]) {
                        best = i;
                    }
                }
                vec![best as f64]
            },
            1,
        ),
        TFunc::SumT | TFunc::MeanT | TFunc::MaxT | TFunc::LastT => {
            let n = a.steps();
            let data = (0..a.width)
                .map(|i| {
                    let column = (0..n).map(|t| a.data[t * a.width + i]);
                    match func {
                        TFunc::SumT => column.sum(),
                        TFunc::MeanT => column.sum::<f64>() / n as f64,
                        TFunc::MaxT => column.fold(f64::NEG_INFINITY, f64::max),
                        _ => a.data[(n - 1) * a.width + i],
                    }
                })
                .collect();
            Value { per_step: false, width: a.width, data }
        }
        TFunc::Cumulative => {
            let decay = args[1].data[0];
            let mut data = vec![0.0; a.data.len()];
            for t in 0..a.steps() {
                for i in 0..a.width {
                    let previous = if t == 0 { 0.0 } else { data[(t - 1) * a.width + i] };
                    data[t * a.width + i] = decay * previous + a.data[t * a.width + i];
                }
            }
            Value { data, ..a.clone() }
        }
        TFunc::AssignedClass => return Err(LossError::Readout { readout: "assigned_class", method: "stdp" }),
    })
}

/// Adds d (scale * root) / d (spikes, states, weights) of sample `b` to `grads`, for a loss
/// taken over the steps `window` (all of them, or one FPTT window: [`Windowed`]): the
/// readouts' adjoints go to those steps.
#[allow(clippy::too_many_arguments)]
pub fn backward<F: Real>(
    module: &Module,
    trace: &Trace<F>,
    exprs: &TExprs,
    values: &[Value],
    root: TExprId,
    scale: f64,
    params: &Params<F>,
    grads: &mut ReadoutGrads<F>,
    b: usize,
    net: &[f64],
    window: std::ops::Range<usize>,
) -> Result<(), LossError> {
    let (first, steps) = (window.start, window.len());
    sweep(exprs, values, root, scale, &mut |node, g, out| {
        match node {
            TNode::Readout(readout) => match readout {
                // A per-step readout's rows are the window's trailing steps: all of them, or the
                // last alone when only `last_t` reads it.
                Readout::Spikes(p) | Readout::Count(p) => {
                    let n = out.width;
                    let row = grads.batch * n;
                    let per_step = matches!(readout, Readout::Spikes(_));
                    let rows = if per_step { g.len() / n.max(1) } else { steps };
                    let slot = grads.spike_rows_mut(p.0 as usize, first + steps - rows..first + steps);
                    for t in steps - rows..steps {
                        let from = if per_step { (t + rows - steps) * n } else { 0 };
                        let at = (t + rows - steps) * row + b * n;
                        add_into(&mut slot[at..at + n], &g[from..from + n]);
                    }
                }
                Readout::State(p, v) => {
                    let n = out.width;
                    let row = grads.batch * n;
                    let rows = g.len() / n.max(1);
                    let slot = grads.state_rows_mut(p.0 as usize, v.0 as usize, first + steps - rows..first + steps);
                    for t in steps - rows..steps {
                        let at = (t + rows - steps) * row + b * n;
                        let from = (t + rows - steps) * n;
                        add_into(&mut slot[at..at + n], &g[from..from + n]);
                    }
                }
                Readout::Observable(p, o) => {
                    // The observable's derivatives come from the gradient pass, as IR.
                    let pop = module.population(*p);
                    let (n, id) = (pop.size(), pop.observables[*o as usize].1);
                    let name = pop.observables[*o as usize].0.clone();
                    let derived =
                        crate::ir::grad::derive_expr(pop, id).map_err(|error| LossError::Observable { name: name.clone(), error })?;
                    if derived.d_ports.iter().any(|d| derived.exprs.constant(*d) != Some(0.0)) {
                        return Err(LossError::ObservableReadsInput { name });
                    }
                    let row = grads.batch * n;
                    let slopes: Vec<(usize, crate::ir::ExprId)> =
                        derived.d_vars.iter().copied().enumerate().filter(|(_, d)| derived.exprs.constant(*d) != Some(0.0)).collect();
                    let roots: Vec<crate::ir::ExprId> = slopes.iter().map(|(_, d)| *d).collect();
                    let (vars, ports, times) = gather(module, trace, p.0 as usize, b, first..first + steps, &derived.exprs, &roots);
                    let columns = Columns { vars: &vars, ports: &ports, times: &times, net, dt: module.dt };
                    for (v, d) in slopes {
                        let slope = eval_columns(&derived.exprs, d, &columns);
                        let slot = grads.state_rows_mut(p.0 as usize, v, first..first + steps);
                        for t in 0..steps {
                            let at = t * row + b * n;
                            for i in 0..n {
                                let g = g[t * n + i];
                                if g != 0.0 {
                                    slot[at + i] += F::of(g * slope[t * n + i]);
                                }
                            }
                        }
                    }
                }
                Readout::FirstSpike(_) => return Err(LossError::Readout { readout: "first_spike", method: "eventprop" }),
                Readout::SpikePenalty(_) => return Err(LossError::Readout { readout: "spike_penalty", method: "eventprop" }),
            },
            TNode::WeightL2(proj) => {
                let target = &mut grads.weights[proj.0 as usize];
                if target.is_empty() {
                    target.resize(params.weights[proj.0 as usize].len(), F::zero());
                }
                for (slot, w) in target.iter_mut().zip(&params.weights[proj.0 as usize]) {
                    *slot += F::of(2.0 * w.into_f64() * g[0]);
                }
            }
            _ => {}
        }
        Ok(())
    })
}

/// What [`sweep`] hands a leaf's adjoint to: the node, its adjoint and its value.
pub type Leaf<'a> = dyn FnMut(&TNode, &[f64], &Value) -> Result<(), LossError> + 'a;

/// The reverse sweep of a training expression from `root` (seeded with `scale`): every node's
/// adjoint from its uses, handing the adjoints of the leaves that touch a run (readouts, the
/// weights' L2) to `leaf` with the node's value. The runtimes differ in what a readout's
/// adjoint becomes: BPTT adds it to the trace's spike and state gradients, EventProp turns a
/// first-spike time's adjoint into the jump of the adjoint at that spike.
pub fn sweep(exprs: &TExprs, values: &[Value], root: TExprId, scale: f64, leaf: &mut Leaf) -> Result<(), LossError> {
    // Adjoints are allocated when a use first reaches them: a readout of every step of a large
    // population that the loss reads at one step costs no sweep-sized buffer of zeros.
    let mut adj: Vec<Option<Vec<f64>>> = vec![None; values.len()];
    slot(&mut adj, values, root)[0] = scale;
    for index in (0..=root.0 as usize).rev() {
        let Some(g) = adj[index].take() else { continue };
        if g.iter().all(|g| *g == 0.0) {
            continue;
        }
        let out = &values[index];
        match &exprs.nodes[index].0 {
            TNode::Const(_) | TNode::Label | TNode::Sample | TNode::Steps | TNode::Window | TNode::Windows | TNode::NetParam(_) => {}
            node @ (TNode::Readout(_) | TNode::WeightL2(_)) => leaf(node, &g, out)?,
            TNode::Unary(op, a) => {
                if *op == UnaryOp::Neg {
                    for (slot, gi) in slot(&mut adj, values, *a).iter_mut().zip(&g) {
                        *slot -= gi;
                    }
                }
            }
            TNode::Binary(op, a, b) => {
                let (va, vb) = (&values[a.0 as usize], &values[b.0 as usize]);
                let t_count = if out.per_step { out.steps() } else { 1 };
                let (mut ga, mut gb) = (vec![0.0; va.data.len()], vec![0.0; vb.data.len()]);
                for t in 0..t_count {
                    for i in 0..out.width {
                        let go = g[t * out.width + i];
                        if go == 0.0 {
                            continue;
                        }
                        let (x, y) = (va.at(t, i), vb.at(t, i));
                        let (dx, dy) = match op {
                            BinaryOp::Add => (1.0, 1.0),
                            BinaryOp::Sub => (1.0, -1.0),
                            BinaryOp::Mul => (y, x),
                            BinaryOp::Div => (1.0 / y, -x / (y * y)),
                            BinaryOp::Pow => (y * x.powf(y - 1.0), if x > 0.0 { x.powf(y) * x.ln() } else { 0.0 }),
                            _ => (0.0, 0.0),
                        };
                        let ia = (if va.per_step { t } else { 0 }) * va.width + if va.width == 1 { 0 } else { i };
                        let ib = (if vb.per_step { t } else { 0 }) * vb.width + if vb.width == 1 { 0 } else { i };
                        ga[ia] += go * dx;
                        gb[ib] += go * dy;
                    }
                }
                add_into(slot(&mut adj, values, *a), &ga);
                add_into(slot(&mut adj, values, *b), &gb);
            }
            TNode::Call(func, args) => {
                let a = args[0];
                let va = &values[a.0 as usize];
                let label = |t: usize| args.get(1).map_or(0, |b| values[b.0 as usize].at(t, 0) as usize);
                let ga = slot(&mut adj, values, a);
                let t_count = if va.per_step { va.steps() } else { 1 };
                match func {
                    TFunc::Mse => {
                        let vb = &values[args[1].0 as usize];
                        for (t, g) in g.iter().enumerate().take(if out.per_step { out.steps() } else { 1 }) {
                            for i in 0..va.width {
                                let ia = (if va.per_step { t } else { 0 }) * va.width + i;
                                ga[ia] += g * 2.0 * (va.at(t, i) - vb.at(t, i)) / va.width as f64;
                            }
                        }
                    }
                    TFunc::CrossEntropy => {
                        for t in 0..t_count {
                            let row = &va.data[t * va.width..(t + 1) * va.width];
                            let p = softmax_row(row);
                            for i in 0..va.width {
                                ga[t * va.width + i] += g[t] * (p[i] - f64::from(u8::from(i == label(t))));
                            }
                        }
                    }
                    TFunc::Nll => {
                        for t in 0..t_count {
                            ga[t * va.width + label(t).min(va.width - 1)] -= g[t];
                        }
                    }
                    TFunc::Pick => {
                        for t in 0..t_count {
                            ga[t * va.width + label(t).min(va.width - 1)] += g[t];
                        }
                    }
                    TFunc::LogSoftmax => {
                        for t in 0..t_count {
                            let p = softmax_row(&va.data[t * va.width..(t + 1) * va.width]);
                            let total: f64 = g[t * va.width..(t + 1) * va.width].iter().sum();
                            for i in 0..va.width {
                                ga[t * va.width + i] += g[t * va.width + i] - p[i] * total;
                            }
                        }
                    }
                    TFunc::Softmax => {
                        for t in 0..t_count {
                            let p = &out.data[t * va.width..(t + 1) * va.width];
                            let dot: f64 = (0..va.width).map(|i| g[t * va.width + i] * p[i]).sum();
                            for i in 0..va.width {
                                ga[t * va.width + i] += p[i] * (g[t * va.width + i] - dot);
                            }
                        }
                    }
                    TFunc::Sum | TFunc::Mean => {
                        let scale = if *func == TFunc::Mean { 1.0 / va.width as f64 } else { 1.0 };
                        for t in 0..t_count {
                            for i in 0..va.width {
                                ga[t * va.width + i] += g[t] * scale;
                            }
                        }
                    }
                    TFunc::Abs | TFunc::Exp | TFunc::Log => {
                        for k in 0..va.data.len() {
                            let x = va.data[k];
                            ga[k] += g[k]
                                * match func {
                                    TFunc::Abs => x.signum(),
                                    TFunc::Exp => out.data[k],
                                    _ => 1.0 / x,
                                };
                        }
                    }
                    TFunc::SumT | TFunc::MeanT | TFunc::MaxT | TFunc::LastT => {
                        let n = va.steps();
                        for i in 0..va.width {
                            match func {
                                TFunc::SumT | TFunc::MeanT => {
                                    let scale = if *func == TFunc::MeanT { 1.0 / n as f64 } else { 1.0 };
                                    for t in 0..n {
                                        ga[t * va.width + i] += g[i] * scale;
                                    }
                                }
                                TFunc::MaxT => {
                                    let best =
                                        (0..n).max_by(|x, y| va.data[x * va.width + i].total_cmp(&va.data[y * va.width + i])).unwrap_or(0);
                                    ga[best * va.width + i] += g[i];
                                }
                                _ => ga[(n - 1) * va.width + i] += g[i],
                            }
                        }
                    }
                    TFunc::Cumulative => {
                        let decay = values[args[1].0 as usize].data[0];
                        let mut carry = vec![0.0; va.width];
                        for t in (0..va.steps()).rev() {
                            for i in 0..va.width {
                                carry[i] = carry[i] * decay + g[t * va.width + i];
                                ga[t * va.width + i] += carry[i];
                            }
                        }
                    }
                    TFunc::OneHot | TFunc::Argmax | TFunc::Argmin | TFunc::AssignedClass => {}
                }
            }
        }
    }
    Ok(())
}

/// Node `id`'s adjoint, zeros of its value's size until something is added.
fn slot<'a>(adj: &'a mut [Option<Vec<f64>>], values: &[Value], id: TExprId) -> &'a mut Vec<f64> {
    adj[id.0 as usize].get_or_insert_with(|| vec![0.0; values[id.0 as usize].data.len()])
}

fn add_into<F: Real>(target: &mut [F], source: &[f64]) {
    for (t, s) in target.iter_mut().zip(source) {
        *t += F::of(*s);
    }
}
