//! A lowered module and its weights to a NIR graph.
//!
//! Forward Euler at the step `dt` is the discrete reading of every NIR neuron (docs/language.md,
//! "NIR"), so a discrete decay `beta` is the time constant `tau = dt / (1 - beta)` with the
//! resistance `r = tau / dt` (the input enters undecayed, with weight 1), as snnTorch writes it:
//! - `LeakyZero(beta, threshold)` (reset to 0) is a `LIF` with `v_leak = 0`, `v_reset = 0`;
//! - `LI(beta)` is an `LI`;
//! - `Leaky(beta, threshold)` (snnTorch's subtractive reset, applied with the next step) is an
//!   `LI` named after the population, a `Threshold` `<pop>__spike` reading it and a `Scale` of
//!   `-threshold` `<pop>__reset` feeding the spikes back into it: a loop that NIR's readers
//!   take as the previous step's spikes, which is when the reset acts.
//!
//! Connections: `dense` is `Linear` (weights `[post, pre]`), `conv2d` is `Conv2d` and `conv1d`
//! `Conv1d` (zero bias),
//! `sum_pool2d` and `avg_pool2d` their pools; a delay (or `feedback`, one step) is a `Delay`
//! before the map; every population that feeds nothing (or, if all do, the last) gets an
//! `Output`. Each node is named after what it comes from; the source text of an input's encoder
//! and of a connection travel in the node's metadata (`snnc_encoder`, `snnc_connect`), and the
//! network's name, `dt` and `steps` in the graph's, so that `snnc import` rebuilds the same model.
//! Anything else is refused with `snn::nir::unsupported`.

use super::{Array, Graph, NirError, Node, UNSUPPORTED, Value};
use crate::exec::state::Params;
use crate::ir::{Connectivity, ExprId, Global, Module, Node as IrNode, PoolKind, Population, Source, VarKind};

/// Source text of what NIR does not carry, by IR index: each input's encoder call
/// (`bernoulli(image)`) and each connection's specification (`dense(init = uniform(-1, 1))`).
#[derive(Clone, Debug, Default)]
pub struct Hints {
    pub encoders: Vec<Option<String>>,
    pub connections: Vec<Option<String>>,
}

fn unsupported(message: impl Into<String>, help: impl Into<String>) -> NirError {
    NirError::new(UNSUPPORTED, message, help)
}

/// The discrete neurons NIR expresses, recognised by their updates (whatever their names):
/// `v <- beta v + i` (`LI`), plus a spike when `v > threshold` and `v <- 0` (`LeakyZero`), or
/// plus `- reset threshold` with `reset` the previous step's spike (`Leaky`).
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Leaky { beta: Array, threshold: Array },
    LeakyZero { beta: Array, threshold: Array },
    LI { beta: Array },
}

/// The value of expression `id` of `pop` with states and ports given; parameters take neuron
/// `k`'s values.
fn eval(pop: &Population, params: &[Vec<f64>], k: usize, id: ExprId, state: &dyn Fn(&str) -> f64, port: f64, dt: f64) -> f64 {
    match pop.exprs.get(id) {
        IrNode::Const(value) => *value,
        IrNode::Var(var) => match &pop.vars[var.0 as usize].kind {
            VarKind::Param { .. } => {
                let values = &params[var.0 as usize];
                values.get(k).or(values.first()).copied().unwrap_or(f64::NAN)
            }
            VarKind::State { .. } => state(&pop.vars[var.0 as usize].name),
        },
        IrNode::Port(_) => port,
        IrNode::Global(Global::Dt) => dt,
        IrNode::Global(_) => f64::NAN,
        IrNode::Unary(op, a) => {
            let a = eval(pop, params, k, *a, state, port, dt);
            match op {
                crate::ir::UnaryOp::Neg => -a,
                crate::ir::UnaryOp::Not => f64::from(u8::from(a == 0.0)),
            }
        }
        IrNode::Binary(op, a, b) => {
            let (a, b) = (eval(pop, params, k, *a, state, port, dt), eval(pop, params, k, *b, state, port, dt));
            crate::ir::eval_binary(*op, a, b).unwrap_or(f64::NAN)
        }
        IrNode::Call(func, args) => {
            let values: Vec<f64> = args.iter().map(|a| eval(pop, params, k, *a, state, port, dt)).collect();
            crate::ir::eval_func(*func, &values).unwrap_or(f64::NAN)
        }
    }
}

fn not_expressible(pop: &Population, why: &str) -> NirError {
    unsupported(
        format!("population `{}`: neuron `{}` has no NIR node ({why})", pop.name, pop.neuron),
        "NIR export takes neurons whose step is `v = beta * v + i` (std::neurons' LI), with a spike when `v > threshold` and a reset to 0 (LeakyZero) or a subtractive reset on the next step (Leaky); CubaLIF is integrated exactly with impulse inputs, which NIR's Euler reading does not match",
    )
}

/// Recognises population `p`'s neuron and reads its decay and threshold per neuron.
pub fn classify(module: &Module, params: &Params<f64>, p: usize) -> Result<Kind, NirError> {
    let pop = &module.populations[p];
    let values = &params.neuron_params[p];
    let states: Vec<&str> = pop.vars.iter().filter(|v| matches!(v.kind, VarKind::State { .. })).map(|v| v.name.as_str()).collect();
    if !pop.dynamics.is_empty() || !pop.input_jumps.is_empty() || pop.refractory.is_some() || pop.ports.len() != 1 || pop.updates.len() != 1
    {
        return Err(not_expressible(pop, "its step is not one update of `v`"));
    }
    let v = pop.var_by_name("v").ok_or_else(|| not_expressible(pop, "no state `v`"))?;
    let update = &pop.updates[0];
    if update.var != v {
        return Err(not_expressible(pop, "its update is not of `v`"));
    }
    let leaky = states == ["v", "reset"] || states == ["reset", "v"];
    if !(states == ["v"] || leaky) {
        return Err(not_expressible(pop, "its states are not `v` (and `reset`)"));
    }
    let dt = module.dt;
    let size = pop.size();
    let (mut beta, mut threshold) = (Vec::with_capacity(size), Vec::with_capacity(size));
    for k in 0..size {
        let f = |vv: f64, i: f64, reset: f64| eval(pop, values, k, update.value, &|name| if name == "v" { vv } else { reset }, i, dt);
        let b = f(1.0, 0.0, 0.0);
        let c = if leaky { -f(0.0, 0.0, 1.0) } else { 0.0 };
        // Affine in (v, i, reset) with the input undecayed: checked at points off the axes.
        let linear = [(0.0, 0.0, 0.0), (2.0, 3.0, 1.0), (-0.7, 1.3, 0.0), (0.25, -4.0, 1.0)].iter().all(|&(vv, i, r)| {
            let expected = b * vv + i - c * r;
            (f(vv, i, r) - expected).abs() <= 1e-12 * (1.0 + expected.abs())
        });
        if !linear || !b.is_finite() {
            return Err(not_expressible(pop, "its update is not `v = beta * v + i`"));
        }
        beta.push(b);
        if let Some(test) = &pop.threshold {
            if !matches!(pop.exprs.get(test.lhs), IrNode::Var(var) if *var == v) || test.op != crate::ir::BinaryOp::Gt {
                return Err(not_expressible(pop, "its spike test is not `v > threshold`"));
            }
            threshold.push(eval(pop, values, k, test.rhs, &|_| f64::NAN, f64::NAN, dt));
        }
        if leaky && (threshold.last().copied() != Some(c) || c == 0.0) {
            return Err(not_expressible(pop, "its reset does not subtract the threshold"));
        }
    }
    let shape = pop.shape.clone();
    let array = |data: Vec<f64>| Array::new(shape.clone(), data);
    match (&pop.threshold, leaky) {
        (None, false) if pop.on_spike.is_empty() && pop.after_spike.is_empty() => Ok(Kind::LI { beta: array(beta) }),
        (Some(_), true) => {
            let reset = pop.var_by_name("reset").ok_or_else(|| not_expressible(pop, "no `reset`"))?;
            let ok = pop.on_spike.is_empty()
                && matches!(pop.after_spike.as_slice(), [u] if u.var == reset && matches!(pop.exprs.get(u.value), IrNode::Global(Global::Spiked)));
            if !ok {
                return Err(not_expressible(pop, "its reset is not the previous step's spike"));
            }
            Ok(Kind::Leaky { beta: array(beta), threshold: array(threshold) })
        }
        (Some(_), false) => {
            let ok = pop.after_spike.is_empty()
                && matches!(pop.on_spike.as_slice(), [u] if u.var == v && pop.exprs.constant(u.value) == Some(0.0));
            if !ok {
                return Err(not_expressible(pop, "its spike does not reset `v` to 0"));
            }
            Ok(Kind::LeakyZero { beta: array(beta), threshold: array(threshold) })
        }
        _ => Err(not_expressible(pop, "it spikes without a test or resets without spiking")),
    }
}

/// `tau = dt / (1 - beta)`, element by element; a `beta` of 1 or more has no time constant.
fn tau_of(beta: &Array, dt: f64, pop: &Population) -> Result<Array, NirError> {
    let mut data = Vec::with_capacity(beta.data.len());
    for b in &beta.data {
        if b.is_nan() || *b >= 1.0 {
            return Err(unsupported(
                format!("population `{}`: beta = {b} has no time constant (NIR's tau = dt / (1 - beta) needs beta < 1)", pop.name),
                "a decay of 1 or more does not leak; NIR's `I` or `IF` is not written for it",
            ));
        }
        data.push(dt / (1.0 - b));
    }
    Ok(Array::new(beta.shape.clone(), data))
}

/// What a projection reads in the graph: the node whose output it is.
fn source_node(module: &Module, kinds: &[Kind], source: &Source) -> Result<String, NirError> {
    match source {
        Source::Input(id) => Ok(module.inputs[id.0 as usize].name.clone()),
        Source::Population(id) => {
            let pop = module.population(*id);
            Ok(if matches!(kinds[id.0 as usize], Kind::Leaky { .. }) { format!("{}__spike", pop.name) } else { pop.name.clone() })
        }
        Source::State(s) => {
            let pop = module.population(s.pop);
            let var = &pop.vars[s.var.0 as usize].name;
            // A non-spiking NIR neuron's output is its state; Leaky's `LI` node outputs `v`.
            let state_output = matches!(kinds[s.pop.0 as usize], Kind::LI { .. } | Kind::Leaky { .. }) && var == "v";
            if s.l2_normalize || !state_output {
                return Err(unsupported(
                    format!("the connection from `{}` carries a state NIR has no output for", module.source_label(source)),
                    "NIR nodes output spikes, or the membrane of a non-spiking neuron (`LI`'s `v`)",
                ));
            }
            Ok(pop.name.clone())
        }
    }
}

fn add(graph: &mut Graph, name: String, node: Node) -> Result<(), NirError> {
    if graph.nodes.insert(name.clone(), node).is_some() {
        return Err(unsupported(format!("two nodes would be named `{name}`"), "rename the population or input"));
    }
    Ok(())
}

/// Exports `module` with the weights and neuron parameters `params` at the step `dt`.
pub fn export(module: &Module, params: &Params<f64>, dt: f64, hints: &Hints) -> Result<Graph, NirError> {
    if !(dt > 0.0 && dt.is_finite()) {
        return Err(unsupported(format!("dt = {dt} s is not a step"), "give --dt a positive number of seconds"));
    }
    let mut graph = Graph::default();
    graph.metadata.insert("snnc_network".into(), Value::Text(module.network.clone()));
    graph.metadata.insert("snnc_dt".into(), Value::Array(Array::scalar(dt)));
    graph.metadata.insert("snnc_steps".into(), Value::Array(Array::scalar(module.steps as f64)));
    for (i, input) in module.inputs.iter().enumerate() {
        let shape: Vec<f64> = input.shape.iter().map(|d| *d as f64).collect();
        let mut node = Node::new("Input").with("shape", Array::new(vec![shape.len()], shape));
        if let Some(Some(text)) = hints.encoders.get(i) {
            node.metadata.insert("snnc_encoder".into(), Value::Text(text.clone()));
        }
        add(&mut graph, input.name.clone(), node)?;
    }
    let kinds: Vec<Kind> = (0..module.populations.len()).map(|p| classify(module, params, p)).collect::<Result<_, _>>()?;
    for (pop, kind) in module.populations.iter().zip(&kinds) {
        let zeros = Array::full(&pop.shape, 0.0);
        let li = |beta: &Array| -> Result<Node, NirError> {
            let tau = tau_of(beta, dt, pop)?;
            let r = Array::new(tau.shape.clone(), tau.data.iter().map(|t| t / dt).collect());
            Ok(Node::new("LI").with("tau", tau).with("r", r).with("v_leak", zeros.clone()))
        };
        match kind {
            Kind::LeakyZero { beta, threshold } => {
                let mut node = li(beta)?;
                node.kind = "LIF".to_string();
                let node = node.with("v_threshold", threshold.clone()).with("v_reset", zeros.clone());
                add(&mut graph, pop.name.clone(), node)?;
            }
            Kind::LI { beta } => add(&mut graph, pop.name.clone(), li(beta)?)?,
            Kind::Leaky { beta, threshold } => {
                let minus = Array::new(threshold.shape.clone(), threshold.data.iter().map(|t| -t).collect());
                add(&mut graph, pop.name.clone(), li(beta)?)?;
                let spike = format!("{}__spike", pop.name);
                let reset = format!("{}__reset", pop.name);
                add(&mut graph, spike.clone(), Node::new("Threshold").with("threshold", threshold.clone()))?;
                add(&mut graph, reset.clone(), Node::new("Scale").with("scale", minus))?;
                graph.edges.push((pop.name.clone(), spike.clone()));
                graph.edges.push((spike, reset.clone()));
                graph.edges.push((reset, pop.name.clone()));
            }
        }
    }
    if module.rest_steps > 0 {
        return Err(unsupported("the network rests between samples (`rest`), which NIR cannot say", "remove `rest` to export"));
    }
    let mut feeds = vec![false; module.populations.len()];
    for (index, proj) in module.projections.iter().enumerate() {
        let source = source_node(module, &kinds, &proj.source)?;
        if let Some(q) = Module::source_population(&proj.source) {
            feeds[q.0 as usize] = true;
        }
        let target = module.population(proj.target);
        let label = format!("{} -> {}", module.source_label(&proj.source), target.name);
        if proj.synapse.is_some() {
            return Err(unsupported(
                format!("connection {label} is plastic (`via`)"),
                "NIR has no learning rules; export the trained weights without `via`",
            ));
        }
        let delay = module.source_delay(proj);
        let weights = &params.weights[index];
        let source_shape = module.source_shape(&proj.source).to_vec();
        let node = match proj.connectivity {
            Connectivity::Dense => {
                let (pre, post) = (module.source_size(&proj.source), target.size());
                let mut w = vec![0.0; pre * post];
                for i in 0..pre {
                    for j in 0..post {
                        w[j * pre + i] = weights[i * post + j];
                    }
                }
                Node::new("Linear").with("weight", Array::new(vec![post, pre], w))
            }
            Connectivity::Conv2d(conv) => {
                let out_channels = proj.weight_shape[0];
                let spatial: Vec<f64> = source_shape.iter().skip(1).map(|d| *d as f64).collect();
                // A 1-d convolution (`[channels, length]`) is a `Conv1d` of scalar settings, the
                // length's.
                let (kind, sizes): (&str, fn([usize; 2]) -> Array) = if source_shape.len() == 2 {
                    ("Conv1d", |v| Array::scalar(v[1] as f64))
                } else {
                    ("Conv2d", |v| Array::new(vec![2], vec![v[0] as f64, v[1] as f64]))
                };
                let input_shape = if kind == "Conv1d" { Array::scalar(spatial[0]) } else { Array::new(vec![spatial.len()], spatial) };
                Node::new(kind)
                    .with("weight", Array::new(proj.weight_shape.clone(), weights.clone()))
                    .with("stride", sizes(conv.stride))
                    .with("padding", sizes(conv.padding))
                    .with("dilation", sizes(conv.dilation))
                    .with("groups", Array::scalar(conv.groups as f64))
                    .with("bias", Array::full(&[out_channels], 0.0))
                    .with("input_shape", input_shape)
            }
            Connectivity::Pool2d(pool) if pool.kind != PoolKind::Max && source_shape.len() == 3 && weights.iter().all(|w| *w == 1.0) => {
                let pair = |v: [usize; 2]| Array::new(vec![2], vec![v[0] as f64, v[1] as f64]);
                let kind = if pool.kind == PoolKind::Sum { "SumPool2d" } else { "AvgPool2d" };
                Node::new(kind).with("kernel_size", pair(pool.kernel)).with("stride", pair(pool.stride)).with("padding", pair(pool.padding))
            }
            _ => {
                return Err(unsupported(
                    format!("connection {label} is {:?}, which has no NIR node", proj.connectivity),
                    "NIR export takes dense, conv1d, conv2d, sum_pool2d and avg_pool2d (weight 1)",
                ));
            }
        };
        let mut node = node;
        if let Some(Some(text)) = hints.connections.get(index) {
            node.metadata.insert("snnc_connect".into(), Value::Text(text.clone()));
        }
        if target.ports.len() != 1 {
            return Err(unsupported(format!("population `{}` has several input ports", target.name), "NIR neurons have one input"));
        }
        let name = format!("{}__{}__{index}", module.source_name(&proj.source), target.name);
        add(&mut graph, name.clone(), node)?;
        if delay > 0 {
            // NIR's `Delay`: y(t) = x(t - delay), `delay` steps of dt for each source value.
            let delayed = format!("{name}__delay");
            add(&mut graph, delayed.clone(), Node::new("Delay").with("delay", Array::full(&source_shape, delay as f64 * dt)))?;
            graph.edges.push((source, delayed.clone()));
            graph.edges.push((delayed, name.clone()));
        } else {
            graph.edges.push((source, name.clone()));
        }
        graph.edges.push((name, target.name.clone()));
    }
    let mut outputs: Vec<usize> = (0..module.populations.len()).filter(|p| !feeds[*p]).collect();
    // A network whose every population feeds another (a loop) still needs an exit: NIR's type
    // check starts from the graph's leaves. The last population is the output then.
    if outputs.is_empty() && !module.populations.is_empty() {
        outputs.push(module.populations.len() - 1);
    }
    for p in outputs {
        let pop = &module.populations[p];
        let name = if graph.nodes.contains_key("output") || module.populations.len() > 1 && p + 1 != module.populations.len() {
            format!("{}__output", pop.name)
        } else {
            "output".to_string()
        };
        let shape: Vec<f64> = pop.shape.iter().map(|d| *d as f64).collect();
        add(&mut graph, name.clone(), Node::new("Output").with("shape", Array::new(vec![shape.len()], shape)))?;
        let source = if matches!(kinds[p], Kind::Leaky { .. }) { format!("{}__spike", pop.name) } else { pop.name.clone() };
        graph.edges.push((source, name));
    }
    Ok(graph)
}
