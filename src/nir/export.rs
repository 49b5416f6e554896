//! A lowered module and its weights to a NIR graph.
//!
//! Forward Euler at the step `dt` is the discrete reading of every NIR neuron (docs/language.md,
//! "NIR"). Neurons are recognised by their updates, whatever their names: [`classify`] evaluates
//! the update of each neuron in exact rational arithmetic at probe points, checks that it is
//! affine in the state and the input, and reads NIR's parameters off the coefficients, so that a
//! neuron `snnc import` wrote out (`NirLIF(tau = 0.02 s, ...)`) exports to the same numbers to the
//! bit. With `a`, `c`, `b` the coefficients of `v`, the input and 1:
//! - one state, `v = a v + c i + b`: an `LI` with `tau = dt / (1 - a)`, `r = c / (1 - a)`,
//!   `v_leak = b / (1 - a)` (stdlib `LI(beta)`: `tau = dt / (1 - beta)`, `r = tau / dt`), or an
//!   `I` when `a = 1` (`r = c / dt`); with `spike when v > threshold` and `on spike { v =
//!   v_reset }` a `LIF` (stdlib `LeakyZero`), or an `IF` when `a = 1`; spiking without a reset
//!   with `a = 0` (the state is this step's input) a `Threshold` at `(threshold - b) / c`;
//! - a current first and the membrane after it, `syn = a_s syn + c_s i + b_s` then `v = a_v v +
//!   k syn + b_v` with the new current: a `CubaLI`, or with the spike and reset a `CubaLIF`
//!   (`tau_syn = dt / (1 - a_s)`, `w_in = c_s / (1 - a_s)`, `tau_mem = dt / (1 - a_v)`, `r = k /
//!   (1 - a_v)`, `v_leak = b_v / (1 - a_v)`; snnTorch's `Synaptic` with a reset to 0 is one);
//! - `Leaky(beta, threshold)` (snnTorch's subtractive reset, applied with the next step) is an
//!   `LI` named after the population, a `Threshold` `<pop>__spike` reading it and a `Scale` of
//!   `-threshold` `<pop>__reset` feeding the spikes back into it: a loop that NIR's readers
//!   take as the previous step's spikes, which is when the reset acts.
//!
//! A constant input that `v_leak` cannot hold (an `I`'s, `IF`'s, `CubaLI`'s or `CubaLIF`'s `b /
//! c`) is the bias of the one `Affine` (or `Conv2d`, per channel) that feeds the node. Continuous
//! dynamics (`dv/dt`: the stdlib `CubaLIF`, integrated exactly with impulse inputs), input jumps
//! and refractory periods are not NIR's Euler reading and are refused.
//!
//! Connections: `dense` is `Linear` (weights `[post, pre]`), `conv2d` is `Conv2d` and `conv1d`
//! `Conv1d` (zero bias), `sum_pool2d` and `avg_pool2d` their pools, `one_to_one` a `Scale` (an edge straight to the
//! neurons when every weight is 1); a delay (or `feedback`, one step) is a `Delay` before the
//! map; every population that feeds nothing (or, if all do, the last) gets an `Output`. Each
//! node is named after what it comes from; the source text of an input's encoder and of a
//! connection travel in the node's metadata (`snnc_encoder`, `snnc_connect`), and the network's
//! name, `dt` and `steps` in the graph's, so that `snnc import` rebuilds the same model.
//! Anything else is refused with `snn::nir::unsupported`.

use std::collections::BTreeMap;

use num_rational::BigRational;
use num_traits::{One, Signed, ToPrimitive, Zero};

use super::{Array, Graph, NirError, Node, UNSUPPORTED, Value};
use crate::exec::state::Params;
use crate::ir::{
    BinaryOp, Connectivity, ExprId, Global, Module, Node as IrNode, PoolKind, Population, PortId, Source, UnaryOp, VarId, VarKind,
};

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

/// The neuron nodes export writes.
pub const NEURON_NODES: [&str; 7] = ["LIF", "LI", "CubaLIF", "CubaLI", "IF", "I", "Threshold"];

/// How a population's neuron goes to NIR, recognised by its update (whatever its name).
#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// snnTorch's subtractive reset, `v <- beta v + i - reset threshold` with `reset` the
    /// previous step's spike: an `LI`, a `Threshold` and a `Scale` around it.
    Leaky { beta: Array, threshold: Array },
    /// One NIR neuron node (`LIF`, `LI`, `CubaLIF`, `CubaLI`, `IF`, `I`, `Threshold`) with its
    /// parameters, one value per neuron; `bias` is a constant added to the input of every
    /// step, which NIR has as the bias of the `Affine` or `Conv2d` that feeds the node (`LIF`
    /// and `LI` take it into `v_leak`, `Threshold` into its threshold).
    Node { node: &'static str, params: Vec<(&'static str, Array)>, bias: Option<Array> },
}

impl Kind {
    /// Whether the node outputs spikes (else its membrane, as a NIR `LI`, `CubaLI` or `I`).
    fn spikes(&self) -> bool {
        matches!(self, Kind::Leaky { .. } | Kind::Node { node: "LIF" | "CubaLIF" | "IF" | "Threshold", .. })
    }
}

/// Exact numbers: an update is read as NIR parameters without rounding, so that a neuron
/// `snnc import` wrote out (`tau = 0.02 s`) exports to the same `tau` to the bit.
type Q = BigRational;

fn q(value: f64) -> Option<Q> {
    Q::from_float(value)
}

/// The value of expression `id` of `pop` in exact arithmetic, with the states (by variable)
/// and the input port given and parameters taking neuron `k`'s values; functions (`exp`) are
/// evaluated in f64 on their arguments. `None` where it is not a finite number.
fn exact(pop: &Population, params: &[Vec<f64>], k: usize, id: ExprId, state: &dyn Fn(VarId) -> Q, port: &Q, dt: &Q) -> Option<Q> {
    let eval = |e: ExprId| exact(pop, params, k, e, state, port, dt);
    let truth = |c: bool| if c { Q::one() } else { Q::zero() };
    match pop.exprs.get(id) {
        IrNode::Const(value) => q(*value),
        IrNode::Var(var) => match &pop.vars[var.0 as usize].kind {
            VarKind::Param { .. } => {
                let values = &params[var.0 as usize];
                q(*values.get(k).or(values.first())?)
            }
            VarKind::State { .. } => Some(state(*var)),
        },
        IrNode::Port(_) => Some(port.clone()),
        IrNode::Global(Global::Dt) => Some(dt.clone()),
        IrNode::Global(_) => None,
        IrNode::Unary(op, a) => {
            let a = eval(*a)?;
            Some(match op {
                UnaryOp::Neg => -a,
                UnaryOp::Not => truth(a.is_zero()),
            })
        }
        IrNode::Binary(op, a, b) => {
            let (a, b) = (eval(*a)?, eval(*b)?);
            Some(match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div if b.is_zero() => return None,
                BinaryOp::Div => a / b,
                BinaryOp::Gt => truth(a > b),
                BinaryOp::Ge => truth(a >= b),
                BinaryOp::Lt => truth(a < b),
                BinaryOp::Le => truth(a <= b),
                BinaryOp::Eq => truth(a == b),
                BinaryOp::Ne => truth(a != b),
                BinaryOp::And => truth(!a.is_zero() && !b.is_zero()),
                BinaryOp::Or => truth(!a.is_zero() || !b.is_zero()),
                BinaryOp::Pow => q(crate::ir::eval_binary(*op, a.to_f64()?, b.to_f64()?)?)?,
            })
        }
        IrNode::Call(func, args) => {
            let values: Vec<f64> = args.iter().map(|a| eval(*a)?.to_f64()).collect::<Option<_>>()?;
            q(crate::ir::eval_func(*func, &values)?)
        }
    }
}

/// Points the affine checks probe, off the axes and with large and negative values (a clamp
/// such as `max(v, -threshold)` shows there).
const PROBES: [f64; 7] = [2.0, -3.5, 0.75, 11.0, -17.25, 0.125, -1.0];

/// `f` as `offset + sum coefficient_j x_j` over `n` variables, exactly, if it is affine: its
/// value at 0 and the unit vectors, checked at points off the axes.
fn affine(n: usize, f: &dyn Fn(&[Q]) -> Option<Q>) -> Option<(Q, Vec<Q>)> {
    let origin = vec![Q::zero(); n];
    let offset = f(&origin)?;
    let mut coefficients = Vec::with_capacity(n);
    for j in 0..n {
        let mut unit = origin.clone();
        unit[j] = Q::one();
        coefficients.push(f(&unit)? - &offset);
    }
    for m in 0..4 {
        let point: Vec<Q> = (0..n).map(|j| q(PROBES[(3 * m + j) % PROBES.len()]).unwrap_or_default()).collect();
        let expected = point.iter().zip(&coefficients).fold(offset.clone(), |sum, (x, c)| sum + x * c);
        if f(&point)? != expected {
            return None;
        }
    }
    Some((offset, coefficients))
}

fn not_expressible(pop: &Population, why: &str) -> NirError {
    unsupported(
        format!("population `{}`: neuron `{}` has no NIR node ({why})", pop.name, pop.neuron),
        "NIR export takes neurons whose `update` is NIR's equations under forward Euler: one state `v = a * v + c * i + b` \
         (LI, I when a = 1), with `spike when v > threshold` and `on spike { v = v_reset }` (LIF, IF when a = 1, e.g. \
         LeakyZero) or without a reset and a = 0 (Threshold); a current first, `syn = a * syn + c * i + b` then \
         `v = a' * v + k * syn + b'`, with or without the spike and reset (CubaLIF, CubaLI; snnTorch's Synaptic); and \
         Leaky's subtractive reset. Continuous dynamics (`dv/dt`, e.g. std's CubaLIF, integrated exactly with impulse \
         inputs), input jumps (`on syn`) and refractory periods are not NIR's Euler reading",
    )
}

/// One neuron's NIR node: its type, parameter values and constant input.
type OneNeuron = (&'static str, Vec<(&'static str, f64)>, f64);

/// The f64 nearest an exact value.
fn f(value: &Q) -> f64 {
    value.to_f64().unwrap_or(f64::NAN)
}

/// Recognises population `p`'s neuron and reads its NIR parameters, neuron by neuron.
pub fn classify(module: &Module, params: &Params<f64>, p: usize) -> Result<Kind, NirError> {
    let pop = &module.populations[p];
    let values = &params.neuron_params[p];
    if !pop.dynamics.is_empty() || !pop.input_jumps.is_empty() || pop.refractory.is_some() {
        return Err(not_expressible(pop, "it has continuous dynamics, input jumps or a refractory period"));
    }
    if pop.ports.len() != 1 {
        return Err(not_expressible(pop, "NIR neurons have one input"));
    }
    let states: Vec<VarId> =
        (0..pop.vars.len()).filter(|v| matches!(pop.vars[*v].kind, VarKind::State { .. })).map(|v| VarId(v as u32)).collect();
    let dt = q(module.dt).filter(|dt| dt.is_positive()).ok_or_else(|| not_expressible(pop, "dt is not a step"))?;
    // The neurons whose parameters are the same give the same node: each set of values once.
    let per_neuron: Vec<usize> = (0..values.len()).filter(|v| values[*v].len() > 1).collect();
    let mut seen: BTreeMap<Vec<u64>, OneNeuron> = BTreeMap::new();
    let leaky = matches!(pop.after_spike.as_slice(), [u] if matches!(pop.exprs.get(u.value), IrNode::Global(Global::Spiked)));
    let mut neurons: Vec<OneNeuron> = Vec::with_capacity(pop.size());
    for k in 0..pop.size() {
        let key: Vec<u64> = per_neuron.iter().map(|v| values[*v].get(k).copied().unwrap_or(f64::NAN).to_bits()).collect();
        if let Some(one) = seen.get(&key) {
            neurons.push(one.clone());
            continue;
        }
        let one = if leaky { one_leaky(pop, values, k, &states, &dt)? } else { one_neuron(pop, values, k, &states, &dt)? };
        seen.insert(key, one.clone());
        neurons.push(one);
    }
    let node = neurons.first().map_or("LI", |n| n.0);
    if let Some(other) = neurons.iter().find(|n| n.0 != node) {
        return Err(not_expressible(pop, &format!("some of its neurons are NIR `{node}`s, others `{}`s", other.0)));
    }
    let shape = pop.shape.clone();
    let column = |i: usize| Array::new(shape.clone(), neurons.iter().map(|n| n.1[i].1).collect());
    if leaky {
        return Ok(Kind::Leaky { beta: column(0), threshold: column(1) });
    }
    let params = neurons.first().map_or(Vec::new(), |n| n.1.iter().enumerate().map(|(i, (name, _))| (*name, column(i))).collect());
    let bias = neurons.iter().any(|n| n.2 != 0.0).then(|| Array::new(shape.clone(), neurons.iter().map(|n| n.2).collect()));
    Ok(Kind::Node { node, params, bias })
}

/// The state a spike test reads (`v > threshold`) and the threshold of neuron `k`.
fn spike_test(pop: &Population, values: &[Vec<f64>], k: usize, membrane: VarId, dt: &Q) -> Result<Option<Q>, NirError> {
    let Some(test) = &pop.threshold else { return Ok(None) };
    if !matches!(pop.exprs.get(test.lhs), IrNode::Var(var) if *var == membrane) || test.op != BinaryOp::Gt {
        let name = &pop.vars[membrane.0 as usize].name;
        return Err(not_expressible(
            pop,
            &format!("its spike test is not `{name} > threshold` (NIR's neurons spike where v > v_threshold)"),
        ));
    }
    let zero = Q::zero();
    let is_state = |v: VarId| matches!(pop.vars[v.0 as usize].kind, VarKind::State { .. });
    if pop.exprs.reads(test.rhs, &is_state) || pop.ports.iter().enumerate().any(|(i, _)| pop.exprs.reads_port(test.rhs, PortId(i as u32))) {
        return Err(not_expressible(pop, "its threshold reads a state or the input"));
    }
    exact(pop, values, k, test.rhs, &|_| zero.clone(), &zero, dt)
        .map(Some)
        .ok_or_else(|| not_expressible(pop, "its threshold is not a number"))
}

/// snnTorch's Leaky: `v <- beta v + i - reset threshold`, `reset` the previous step's spike.
fn one_leaky(pop: &Population, values: &[Vec<f64>], k: usize, states: &[VarId], dt: &Q) -> Result<OneNeuron, NirError> {
    let reset = pop.after_spike[0].var;
    let [update] = pop.updates.as_slice() else {
        return Err(not_expressible(pop, "a neuron with a reset state has one update"));
    };
    let v = update.var;
    if states.len() != 2 || v == reset || !states.contains(&v) || !pop.on_spike.is_empty() {
        return Err(not_expressible(pop, "its reset is not the previous step's spike subtracted from one state"));
    }
    let step = |x: &[Q]| exact(pop, values, k, update.value, &|var| if var == v { x[0].clone() } else { x[2].clone() }, &x[1], dt);
    let Some((offset, c)) = affine(3, &step) else {
        return Err(not_expressible(pop, "its update is not affine in its state, input and reset"));
    };
    let threshold = spike_test(pop, values, k, v, dt)?.ok_or_else(|| not_expressible(pop, "it resets without a spike test"))?;
    if !offset.is_zero() || !c[1].is_one() || c[2] != -threshold.clone() || threshold.is_zero() || c[0] >= Q::one() {
        return Err(not_expressible(pop, "its update is not `v = beta * v + i - reset * threshold` with beta < 1"));
    }
    Ok(("LI", vec![("beta", f(&c[0])), ("threshold", f(&threshold))], 0.0))
}

/// `1 - a`, which must be positive: NIR's time constant is `dt / (1 - a)`.
fn leak(pop: &Population, a: &Q, what: &str) -> Result<Q, NirError> {
    let gap = Q::one() - a;
    if !gap.is_positive() {
        return Err(not_expressible(pop, &format!("{what} decays by {} per step, which has no NIR time constant (it needs < 1)", f(a))));
    }
    Ok(gap)
}

/// `on spike { v = v_reset }` with `v_reset` reading no state: neuron `k`'s `v_reset`.
fn reset_value(pop: &Population, values: &[Vec<f64>], k: usize, membrane: VarId, dt: &Q) -> Result<Option<Q>, NirError> {
    match pop.on_spike.as_slice() {
        [] => Ok(None),
        [u] if u.var == membrane && !pop.exprs.reads(u.value, &|v| matches!(pop.vars[v.0 as usize].kind, VarKind::State { .. })) => {
            let zero = Q::zero();
            exact(pop, values, k, u.value, &|_| zero.clone(), &zero, dt)
                .map(Some)
                .ok_or_else(|| not_expressible(pop, "its reset is not a number"))
        }
        _ => Err(not_expressible(pop, "its spike does more than set `v` to a value (NIR's v <- v_reset)")),
    }
}

/// Every other neuron NIR has: one state (`LIF`, `LI`, `IF`, `I`, `Threshold`) or a current
/// before the membrane (`CubaLIF`, `CubaLI`).
fn one_neuron(pop: &Population, values: &[Vec<f64>], k: usize, states: &[VarId], dt: &Q) -> Result<OneNeuron, NirError> {
    if !pop.after_spike.is_empty() {
        return Err(not_expressible(pop, "its `update after spike` is not a subtractive reset"));
    }
    let updated: Vec<VarId> = pop.updates.iter().map(|u| u.var).collect();
    let mut sorted = updated.clone();
    sorted.sort_unstable_by_key(|v| v.0);
    sorted.dedup();
    if sorted.len() != updated.len() || sorted != states {
        return Err(not_expressible(pop, "its update does not set each state once"));
    }
    match pop.updates.as_slice() {
        [update] => {
            let v = update.var;
            let step = |x: &[Q]| exact(pop, values, k, update.value, &|_| x[0].clone(), &x[1], dt);
            let (b, c) = affine(2, &step).ok_or_else(|| not_expressible(pop, "its update is not `v = a * v + c * i + b`"))?;
            let (a, c) = (&c[0], &c[1]);
            let threshold = spike_test(pop, values, k, v, dt)?;
            let reset = reset_value(pop, values, k, v, dt)?;
            // The constant input NIR writes as a bias: `b = c * bias`.
            let bias = |what: &str| -> Result<f64, NirError> {
                match (b.is_zero(), c.is_zero()) {
                    (true, _) => Ok(0.0),
                    (false, true) => Err(not_expressible(pop, &format!("it adds a constant but no input, which a NIR `{what}` cannot"))),
                    (false, false) => Ok(f(&(&b / c))),
                }
            };
            match (threshold, reset) {
                (None, Some(_)) => Err(not_expressible(pop, "it resets without a spike test")),
                (None, None) if a.is_one() => Ok(("I", vec![("r", f(&(c / dt)))], bias("I")?)),
                (None, None) => {
                    let gap = leak(pop, a, "its state")?;
                    Ok(("LI", vec![("tau", f(&(dt / &gap))), ("r", f(&(c / &gap))), ("v_leak", f(&(&b / &gap)))], 0.0))
                }
                (Some(threshold), None) => {
                    // Memoryless: v is this step's input, H(c i + b - threshold).
                    if !a.is_zero() || !c.is_positive() {
                        return Err(not_expressible(
                            pop,
                            "it spikes without a reset, which NIR has only for a state that is its input (a Threshold: `v = i`)",
                        ));
                    }
                    Ok(("Threshold", vec![("threshold", f(&((threshold - &b) / c)))], 0.0))
                }
                (Some(threshold), Some(reset)) if a.is_one() => {
                    Ok(("IF", vec![("r", f(&(c / dt))), ("v_threshold", f(&threshold)), ("v_reset", f(&reset))], bias("IF")?))
                }
                (Some(threshold), Some(reset)) => {
                    let gap = leak(pop, a, "its state")?;
                    let params = vec![
                        ("tau", f(&(dt / &gap))),
                        ("r", f(&(c / &gap))),
                        ("v_leak", f(&(&b / &gap))),
                        ("v_threshold", f(&threshold)),
                        ("v_reset", f(&reset)),
                    ];
                    Ok(("LIF", params, 0.0))
                }
            }
        }
        [current, membrane] => {
            let (s, v) = (current.var, membrane.var);
            // The current: `syn = a_s syn + c_s i + b_s`, reading no membrane.
            let step = |x: &[Q]| exact(pop, values, k, current.value, &|var| if var == s { x[0].clone() } else { x[2].clone() }, &x[1], dt);
            let (b_s, cs) = affine(3, &step)
                .filter(|(_, c)| c[2].is_zero())
                .ok_or_else(|| not_expressible(pop, "its first update is not a current `syn = a * syn + c * i + b`"))?;
            // The membrane takes the step's new current: `v = a_v v + k syn + b_v`, no input.
            let step =
                |x: &[Q]| exact(pop, values, k, membrane.value, &|var| if var == v { x[0].clone() } else { x[1].clone() }, &x[2], dt);
            let (b_v, cv) = affine(3, &step)
                .filter(|(_, c)| c[2].is_zero())
                .ok_or_else(|| not_expressible(pop, "its second update is not `v = a * v + k * syn + b`, the current's input only"))?;
            let (gap_s, gap_v) = (leak(pop, &cs[0], "its current")?, leak(pop, &cv[0], "its membrane")?);
            let c_s = &cs[1];
            let bias = match (b_s.is_zero(), c_s.is_zero()) {
                (true, _) => 0.0,
                (false, true) => return Err(not_expressible(pop, "its current has a constant but no input, which NIR cannot write")),
                (false, false) => f(&(&b_s / c_s)),
            };
            let mut params = vec![
                ("tau_syn", f(&(dt / &gap_s))),
                ("tau_mem", f(&(dt / &gap_v))),
                ("r", f(&(&cv[1] / &gap_v))),
                ("v_leak", f(&(&b_v / &gap_v))),
                ("w_in", f(&(c_s / &gap_s))),
            ];
            match (spike_test(pop, values, k, v, dt)?, reset_value(pop, values, k, v, dt)?) {
                (None, None) => Ok(("CubaLI", params, bias)),
                (Some(threshold), Some(reset)) => {
                    params.push(("v_threshold", f(&threshold)));
                    params.push(("v_reset", f(&reset)));
                    Ok(("CubaLIF", params, bias))
                }
                (Some(_), None) => Err(not_expressible(pop, "it spikes without resetting `v`")),
                (None, Some(_)) => Err(not_expressible(pop, "it resets without a spike test")),
            }
        }
        _ => Err(not_expressible(pop, "NIR's neurons update one state, or a current and then the membrane")),
    }
}

/// `tau = dt / (1 - beta)`, element by element (`beta < 1`: [`classify`] checks it).
fn tau_of(beta: &Array, dt: f64) -> Array {
    Array::new(beta.shape.clone(), beta.data.iter().map(|b| dt / (1.0 - b)).collect())
}

/// What a projection reads in the graph: the node whose output it is.
fn source_node(module: &Module, kinds: &[Kind], source: &Source) -> Result<String, NirError> {
    match source {
        Source::Input(id) => Ok(module.inputs[id.0 as usize].name.clone()),
        Source::Population(id) => {
            let pop = module.population(*id);
            match &kinds[id.0 as usize] {
                Kind::Leaky { .. } => Ok(format!("{}__spike", pop.name)),
                kind if kind.spikes() => Ok(pop.name.clone()),
                _ => Err(unsupported(
                    format!("the connection from `{}` carries the spikes of a neuron that NIR reads as non-spiking", pop.name),
                    "a NIR `LI`, `CubaLI` or `I` outputs its membrane: connect from `.v`",
                )),
            }
        }
        Source::State(s) => {
            let pop = module.population(s.pop);
            // A non-spiking NIR neuron's output is its membrane (the state it updates last);
            // Leaky's `LI` node outputs `v`.
            let membrane = pop.updates.last().map(|u| u.var);
            let state_output =
                (matches!(kinds[s.pop.0 as usize], Kind::Leaky { .. }) || !kinds[s.pop.0 as usize].spikes()) && membrane == Some(s.var);
            if s.l2_normalize || !state_output {
                return Err(unsupported(
                    format!("the connection from `{}` carries a state NIR has no output for", module.source_label(source)),
                    "NIR nodes output spikes, or the membrane of a non-spiking neuron (an `LI`'s, `CubaLI`'s or `I`'s `v`, or a Leaky's)",
                ));
            }
            Ok(pop.name.clone())
        }
    }
}

/// A map with the constant input of the neurons it feeds as its bias: a `Linear` becomes an
/// `Affine`; a `Conv2d` takes one value per output channel.
fn with_bias(node: Node, bias: &Array, incoming: usize, kind: &str, label: &str) -> Result<Node, NirError> {
    let refuse = |why: &str| {
        unsupported(
            format!("connection {label}: its target adds a constant to its input, and {why}"),
            format!("NIR writes a `{kind}`'s constant input as the bias of the one Affine or convolution that feeds it"),
        )
    };
    if incoming != 1 {
        return Err(refuse("several connections feed it"));
    }
    match node.kind.as_str() {
        "Linear" => {
            let mut node = node.with("bias", Array::new(vec![bias.data.len()], bias.data.clone()));
            node.kind = "Affine".to_string();
            Ok(node)
        }
        "Conv1d" | "Conv2d" => {
            let channels = node.array("bias").map_or(0, |b| b.data.len());
            let per_channel = bias.data.len() / channels.max(1);
            let chunks: Vec<&[f64]> = bias.data.chunks(per_channel.max(1)).collect();
            if channels == 0 || chunks.len() != channels || chunks.iter().any(|c| c.iter().any(|b| *b != c[0])) {
                return Err(refuse("it differs within a channel, which a convolution's bias cannot say"));
            }
            Ok(node.with("bias", Array::new(vec![channels], chunks.iter().map(|c| c[0]).collect())))
        }
        _ => Err(refuse("a Scale or pool has no bias")),
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
        match kind {
            Kind::Node { node, params, .. } => {
                let mut out = Node::new(node);
                for (name, array) in params {
                    out = out.with(name, array.clone());
                }
                add(&mut graph, pop.name.clone(), out)?;
            }
            Kind::Leaky { beta, threshold } => {
                let tau = tau_of(beta, dt);
                let r = Array::new(tau.shape.clone(), tau.data.iter().map(|t| t / dt).collect());
                let li = Node::new("LI").with("tau", tau).with("r", r).with("v_leak", Array::full(&pop.shape, 0.0));
                let minus = Array::new(threshold.shape.clone(), threshold.data.iter().map(|t| -t).collect());
                add(&mut graph, pop.name.clone(), li)?;
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
    let mut incoming = vec![0usize; module.populations.len()];
    for proj in &module.projections {
        incoming[proj.target.0 as usize] += 1;
    }
    for ((pop, kind), count) in module.populations.iter().zip(&kinds).zip(&incoming) {
        if let Kind::Node { node, bias: Some(_), .. } = kind
            && *count == 0
        {
            return Err(unsupported(
                format!("population `{}` adds a constant to its input but has no connection to carry it", pop.name),
                format!("NIR writes a `{node}`'s constant input as the bias of the Affine or Conv2d that feeds it"),
            ));
        }
    }
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
            // Weight 1 everywhere: an edge straight to the neurons (`snnc import` reads it back
            // as `one_to_one(weight = 1)`); other weights: a `Scale`.
            Connectivity::OneToOne
                if weights.iter().all(|w| *w == 1.0) && !matches!(&kinds[proj.target.0 as usize], Kind::Node { bias: Some(_), .. }) =>
            {
                Node::new("Identity")
            }
            Connectivity::OneToOne => Node::new("Scale").with("scale", Array::new(source_shape.clone(), weights.clone())),
            Connectivity::Pool2d(pool) if pool.kind != PoolKind::Max && source_shape.len() == 3 && weights.iter().all(|w| *w == 1.0) => {
                let pair = |v: [usize; 2]| Array::new(vec![2], vec![v[0] as f64, v[1] as f64]);
                let kind = if pool.kind == PoolKind::Sum { "SumPool2d" } else { "AvgPool2d" };
                Node::new(kind).with("kernel_size", pair(pool.kernel)).with("stride", pair(pool.stride)).with("padding", pair(pool.padding))
            }
            _ => {
                return Err(unsupported(
                    format!("connection {label} is {:?}, which has no NIR node", proj.connectivity),
                    "NIR export takes dense, one_to_one, conv1d, conv2d, sum_pool2d and avg_pool2d (weight 1)",
                ));
            }
        };
        let mut node = node;
        if let Kind::Node { node: kind, bias: Some(bias), .. } = &kinds[proj.target.0 as usize] {
            node = with_bias(node, bias, incoming[proj.target.0 as usize], kind, &label)?;
        }
        if let Some(Some(text)) = hints.connections.get(index) {
            node.metadata.insert("snnc_connect".into(), Value::Text(text.clone()));
        }
        if target.ports.len() != 1 {
            return Err(unsupported(format!("population `{}` has several input ports", target.name), "NIR neurons have one input"));
        }
        let direct = node.kind == "Identity";
        let name = if direct { target.name.clone() } else { format!("{}__{}__{index}", module.source_name(&proj.source), target.name) };
        if !direct {
            add(&mut graph, name.clone(), node)?;
        }
        if delay > 0 {
            // NIR's `Delay`: y(t) = x(t - delay), `delay` steps of dt for each source value.
            let delayed = format!("{}__{}__{index}__delay", module.source_name(&proj.source), target.name);
            add(&mut graph, delayed.clone(), Node::new("Delay").with("delay", Array::full(&source_shape, delay as f64 * dt)))?;
            graph.edges.push((source, delayed.clone()));
            graph.edges.push((delayed, name.clone()));
        } else {
            graph.edges.push((source, name.clone()));
        }
        if !direct {
            graph.edges.push((name, target.name.clone()));
        }
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
