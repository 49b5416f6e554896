//! Training expressions (loss terms, predictions, retry conditions) evaluated on one sample's
//! trace, with their gradients with respect to spikes, states and weights.

use std::fmt;

use crate::interp::{Params, Trace};
use crate::ir::{BinaryOp, Module, UnaryOp, eval_binary};
use crate::ir_train::{Readout, TExprId, TExprs, TFunc, TNode};

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

#[derive(Debug, Clone, PartialEq)]
pub struct Unsupported(pub String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

/// Gradients of the loss with respect to what the network produced for a batch, in the row
/// layout of [`Trace`]. A vector stays empty (all zeros) until a loss term or a projection's
/// adjoint writes into it, so that populations the loss does not read cost nothing.
#[derive(Clone, Debug, Default)]
pub struct ReadoutGrads {
    pub steps: usize,
    pub batch: usize,
    pub sizes: Vec<usize>,
    /// `spikes[pop]`, one row per step.
    pub spikes: Vec<Vec<f64>>,
    /// `states[pop][var]`, row `t` for the state after step `t`.
    pub states: Vec<Vec<Vec<f64>>>,
    /// `weights[projection][k]`; a projection's vector is allocated only when a loss term reads
    /// its weights (`weight_l2`).
    pub weights: Vec<Vec<f64>>,
}

impl ReadoutGrads {
    pub fn zeros(module: &Module, steps: usize, batch: usize) -> ReadoutGrads {
        ReadoutGrads {
            steps,
            batch,
            sizes: module.populations.iter().map(|p| p.size()).collect(),
            spikes: vec![Vec::new(); module.populations.len()],
            states: module.populations.iter().map(|p| vec![Vec::new(); p.vars.len()]).collect(),
            weights: module.projections.iter().map(|_| Vec::new()).collect(),
        }
    }

    fn len(&self, p: usize) -> usize {
        self.steps * self.batch * self.sizes[p]
    }

    /// The spike gradient of population `p` over all steps, allocated on first use.
    pub fn spikes_mut(&mut self, p: usize) -> &mut [f64] {
        let len = self.len(p);
        let slot = &mut self.spikes[p];
        if slot.is_empty() {
            slot.resize(len, 0.0);
        }
        slot
    }

    pub fn states_mut(&mut self, p: usize, v: usize) -> &mut [f64] {
        let len = self.len(p);
        let slot = &mut self.states[p][v];
        if slot.is_empty() {
            slot.resize(len, 0.0);
        }
        slot
    }

    /// Row `t` of population `p`'s spike gradient, `None` when it is all zeros.
    pub fn spikes_at(&self, t: usize, p: usize) -> Option<&[f64]> {
        let r = self.batch * self.sizes[p];
        let slot = &self.spikes[p];
        (!slot.is_empty()).then(|| &slot[t * r..(t + 1) * r])
    }

    pub fn state_at(&self, t: usize, p: usize, v: usize) -> Option<&[f64]> {
        let r = self.batch * self.sizes[p];
        let slot = &self.states[p][v];
        (!slot.is_empty()).then(|| &slot[t * r..(t + 1) * r])
    }
}

/// Evaluates every node of `exprs` for sample `b` of `trace`.
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    module: &Module,
    exprs: &TExprs,
    trace: &Trace,
    b: usize,
    params: &Params,
    label: usize,
    sample: &[f32],
) -> Result<Vec<Value>, Unsupported> {
    let steps = trace.steps;
    let mut values: Vec<Value> = Vec::with_capacity(exprs.nodes.len());
    for (node, ty) in &exprs.nodes {
        let value = match node {
            TNode::Const(v) => Value::scalar(*v),
            TNode::Label => Value::scalar(label as f64),
            TNode::Sample => Value { per_step: false, width: sample.len(), data: sample.iter().map(|x| f64::from(*x)).collect() },
            TNode::Readout(readout) => readout_value(module, trace, b, *readout)?,
            TNode::WeightL2(proj) => Value::scalar(params.weights[proj.0 as usize].iter().map(|w| w * w).sum()),
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

fn readout_value(module: &Module, trace: &Trace, b: usize, readout: Readout) -> Result<Value, Unsupported> {
    let steps = trace.steps;
    Ok(match readout {
        Readout::Spikes(p) => {
            let n = module.population(p).size();
            let p = p.0 as usize;
            Value { per_step: true, width: n, data: (0..steps).flat_map(|t| trace.sample_spikes(t, p, b)).collect() }
        }
        Readout::Count(p) => {
            let n = module.population(p).size();
            let mut data = vec![0.0; n];
            for t in 0..steps {
                for (slot, x) in data.iter_mut().zip(&trace.sample_spikes(t, p.0 as usize, b)) {
                    *slot += x;
                }
            }
            Value { per_step: false, width: n, data }
        }
        Readout::State(p, v) => {
            let n = module.population(p).size();
            Value {
                per_step: true,
                width: n,
                data: (0..steps).flat_map(|t| trace.state_after(t, p.0 as usize, v.0 as usize)[b * n..(b + 1) * n].to_vec()).collect(),
            }
        }
        Readout::Observable(p, o) => {
            let pop = module.population(p);
            let (n, id) = (pop.size(), pop.observables[o as usize].1);
            let net = crate::interp::net_params(module);
            let mut data = Vec::with_capacity(steps * n);
            for t in 0..steps {
                for i in 0..n {
                    let (vars, ports) = neuron_at(trace, p.0 as usize, t, b * n + i);
                    data.push(crate::interp::eval_at(&pop.exprs, id, &vars, &ports, t as f64 * module.dt, &net, module.dt));
                }
            }
            Value { per_step: true, width: n, data }
        }
        Readout::FirstSpike(_) | Readout::SpikePenalty(_) => {
            return Err(Unsupported(format!("the reference back end does not compute {readout:?} yet (it belongs to EventProp)")));
        }
    })
}

/// One neuron's variables after step `t` and its ports during the step.
fn neuron_at(trace: &Trace, p: usize, t: usize, k: usize) -> (Vec<f64>, Vec<f64>) {
    let vars = (0..trace.states[p].len()).map(|v| trace.state_after(t, p, v)[k]).collect();
    let ports = (0..trace.ports[p].len()).map(|q| trace.port_at(t, p, q)[k]).collect();
    (vars, ports)
}

fn softmax_row(row: &[f64]) -> Vec<f64> {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

fn call(func: TFunc, args: &[&Value], steps: usize, width: usize) -> Result<Value, Unsupported> {
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
        TFunc::AssignedClass => return Err(Unsupported("label assignment runs with the STDP runtime, which is not built yet".to_string())),
    })
}

/// Backpropagates d(root)/d(...) into `grads`, scaled by `scale`.
#[allow(clippy::too_many_arguments)]
/// Adds d (scale * root) / d (spikes, states, weights) of sample `b` to `grads`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    module: &Module,
    trace: &Trace,
    exprs: &TExprs,
    values: &[Value],
    root: TExprId,
    scale: f64,
    params: &Params,
    grads: &mut ReadoutGrads,
    b: usize,
) -> Result<(), Unsupported> {
    let mut adj: Vec<Vec<f64>> = values.iter().map(|v| vec![0.0; v.data.len()]).collect();
    adj[root.0 as usize][0] = scale;
    let steps = grads.steps;
    for index in (0..=root.0 as usize).rev() {
        if adj[index].iter().all(|g| *g == 0.0) {
            continue;
        }
        let g = std::mem::take(&mut adj[index]);
        let out = &values[index];
        match &exprs.nodes[index].0 {
            TNode::Const(_) | TNode::Label | TNode::Sample => {}
            TNode::Readout(readout) => match readout {
                Readout::Spikes(p) | Readout::Count(p) => {
                    let n = out.width;
                    let row = grads.batch * n;
                    let per_step = matches!(readout, Readout::Spikes(_));
                    let slot = grads.spikes_mut(p.0 as usize);
                    for t in 0..steps {
                        let from = if per_step { t * n } else { 0 };
                        add_into(&mut slot[t * row + b * n..t * row + (b + 1) * n], &g[from..from + n]);
                    }
                }
                Readout::State(p, v) => {
                    let n = out.width;
                    let row = grads.batch * n;
                    let slot = grads.states_mut(p.0 as usize, v.0 as usize);
                    for t in 0..steps {
                        add_into(&mut slot[t * row + b * n..t * row + (b + 1) * n], &g[t * n..(t + 1) * n]);
                    }
                }
                Readout::Observable(p, o) => {
                    // The observable's derivatives come from the gradient pass, as IR.
                    let pop = module.population(*p);
                    let (n, id) = (pop.size(), pop.observables[*o as usize].1);
                    let derived = crate::grad::derive_expr(pop, id).map_err(Unsupported)?;
                    if derived.d_ports.iter().any(|d| derived.exprs.constant(*d) != Some(0.0)) {
                        return Err(Unsupported(format!(
                            "observable `{}` reads an input; its gradient is not built yet",
                            pop.observables[*o as usize].0
                        )));
                    }
                    let net = crate::interp::net_params(module);
                    let row = grads.batch * n;
                    for t in 0..steps {
                        for i in 0..n {
                            let g = g[t * n + i];
                            if g == 0.0 {
                                continue;
                            }
                            let (vars, ports) = neuron_at(trace, p.0 as usize, t, b * n + i);
                            for (v, d) in derived.d_vars.iter().enumerate() {
                                if derived.exprs.constant(*d) == Some(0.0) {
                                    continue;
                                }
                                let slope =
                                    crate::interp::eval_at(&derived.exprs, *d, &vars, &ports, t as f64 * module.dt, &net, module.dt);
                                grads.states_mut(p.0 as usize, v)[t * row + b * n + i] += g * slope;
                            }
                        }
                    }
                }
                Readout::FirstSpike(_) | Readout::SpikePenalty(_) => {
                    return Err(Unsupported(format!(
                        "no gradient for {readout:?} in the reference back end yet (it belongs to EventProp)"
                    )));
                }
            },
            TNode::WeightL2(proj) => {
                let target = &mut grads.weights[proj.0 as usize];
                if target.is_empty() {
                    target.resize(params.weights[proj.0 as usize].len(), 0.0);
                }
                for (slot, w) in target.iter_mut().zip(&params.weights[proj.0 as usize]) {
                    *slot += 2.0 * w * g[0];
                }
            }
            TNode::Unary(op, a) => {
                if *op == UnaryOp::Neg {
                    for (slot, gi) in adj[a.0 as usize].iter_mut().zip(&g) {
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
                add_into(&mut adj[a.0 as usize], &ga);
                add_into(&mut adj[b.0 as usize], &gb);
            }
            TNode::Call(func, args) => {
                let a = args[0];
                let va = &values[a.0 as usize];
                let label = |t: usize| args.get(1).map_or(0, |b| values[b.0 as usize].at(t, 0) as usize);
                let mut ga = vec![0.0; va.data.len()];
                let t_count = if va.per_step { va.steps() } else { 1 };
                match func {
                    TFunc::Mse => {
                        let vb = &values[args[1].0 as usize];
                        for t in 0..if out.per_step { out.steps() } else { 1 } {
                            for i in 0..va.width {
                                let ia = (if va.per_step { t } else { 0 }) * va.width + i;
                                ga[ia] += g[t] * 2.0 * (va.at(t, i) - vb.at(t, i)) / va.width as f64;
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
                add_into(&mut adj[a.0 as usize], &ga);
            }
        }
    }
    Ok(())
}

fn add_into(target: &mut [f64], source: &[f64]) {
    for (t, s) in target.iter_mut().zip(source) {
        *t += s;
    }
}
