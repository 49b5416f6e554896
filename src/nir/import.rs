//! A NIR graph to `.snn` text and the weights of a checkpoint.
//!
//! Every NIR neuron is read under forward Euler at the step `dt` (docs/language.md, "NIR"),
//! its input held over the step: `LIF` is `v <- v + dt / tau (v_leak - v + r i)`, then a spike
//! when `v > v_threshold` and `v <- v_reset`. A neuron is written as the stdlib one where that
//! is the same update (a `LIF` with `v_leak = 0`, `v_reset = 0` and `r = tau / dt` is
//! `LeakyZero(beta = 1 - dt / tau)`; an `LI` so is `LI`; an `LI` whose `Threshold` feeds a
//! `Scale` of `-threshold` back into it, with one `tau` and threshold and no bias, is
//! snnTorch's `Leaky`), and written out in the file otherwise (`NirLIF`, `NirLI`,
//! `NirCubaLIF`, `NirCubaLI`, `NirIF`, `NirI`, `NirThreshold`; one written for the population,
//! `NirLIF_<pop>`, with `per_neuron` parameters when values differ per neuron). Every one of
//! them exports back to its node ([`super::export`]). Any other `Threshold` is a population of
//! `NirThreshold`, memoryless: its state `v` is the step's input, and it spikes where `v >
//! threshold` (NIR's `H(x - threshold)` of the same step).
//!
//! Linear maps become connections: `Affine` and `Linear` are `dense`, `Conv2d` `conv2d` and
//! `Conv1d` `conv1d` (any kernel shape; padding as numbers, `valid` or `same`), the
//! pools `sum_pool2d` and `avg_pool2d`, `Scale` `one_to_one`; `Flatten` passes values on, and a
//! `Delay` adds its whole steps to the connections through it (`delay`). A map whose output
//! feeds anything but neurons (another map, an `Output`) feeds a relay population whose state
//! `v` is its input (`LI(beta = 0)`, or `NirRelay` with an `Affine`'s bias) that the next
//! connection reads. Connections have no bias: an `Affine`'s or a convolution's bias is in the
//! `v_leak` of the `LIF` or `LI` it feeds (`v_leak + r bias`), lowers a `Threshold`'s
//! threshold, and is a `bias` parameter, added to the input, of the other neurons and relays. A loop without a `Delay` reads the previous step
//! (`feedback`). An `Input` is an input whose encoder is the one in its metadata
//! (`snnc_encoder`, written by `snnc export`) or `repeat(sample)`, a current of the sample's
//! value every step. Nested graphs are inlined first (`flatten`). Weights are not
//! initialisers: they come back as tensors, one per connection, for a checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use super::{
    Array, DANGLING_EDGE, Graph, MISSING_PARAM, NO_DT, NODE_TYPES, NirError, Node, SHAPE_MISMATCH, UNKNOWN_NODE, UNSUPPORTED, round_15,
};
use crate::ir::fmt_f64;

/// The result of an import.
#[derive(Clone, Debug, PartialEq)]
pub struct Imported {
    /// The `.snn` file.
    pub text: String,
    /// Per connection, in the order the file writes them: its weights in snnc's layout (dense
    /// `[pre, post]`, conv `[out, in / groups, kh, kw]` or `[out, in / groups, k]`), or `None` for a
    /// fixed one (a pool).
    pub weights: Vec<Option<Vec<f64>>>,
    /// The step the graph was read at, seconds.
    pub dt: f64,
    /// Parameters that differ from neuron to neuron: population, parameter, values (in the
    /// population's order), for the checkpoint.
    pub neuron_values: Vec<(String, String, Vec<f64>)>,
}

fn unsupported(message: impl Into<String>, help: impl Into<String>) -> NirError {
    NirError::new(UNSUPPORTED, message, help)
}

fn shape_mismatch(message: impl Into<String>) -> NirError {
    NirError::new(SHAPE_MISMATCH, message, "the graph's shapes must agree along every edge, as `nir`'s type check requires")
}

/// The most neurons a node may have (an input of 10^12 would be an allocation, not a model).
const MAX_NEURONS: usize = 100_000_000;

const NEURONS: [&str; 6] = ["LIF", "LI", "CubaLIF", "CubaLI", "IF", "I"];
const MAPS: [&str; 7] = ["Affine", "Linear", "Conv1d", "Conv2d", "SumPool2d", "AvgPool2d", "Scale"];
/// Nodes that pass values on: a `Delay` adds its steps to the connections through it.
const PASS: [&str; 3] = ["Flatten", "Identity", "Delay"];

/// The parameters each neuron type needs (`v_reset` defaults to 0 and `w_in` to 1, as `nir`
/// reads them).
fn neuron_params(kind: &str) -> &'static [&'static str] {
    match kind {
        "LIF" => &["tau", "r", "v_leak", "v_threshold", "v_reset"],
        "LI" => &["tau", "r", "v_leak"],
        "CubaLIF" => &["tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"],
        "CubaLI" => &["tau_syn", "tau_mem", "r", "v_leak", "w_in"],
        "IF" => &["r", "v_threshold", "v_reset"],
        "Threshold" => &["threshold"],
        _ => &["r"],
    }
}

/// A parameter a node must have.
fn need<'a>(name: &str, node: &'a Node, param: &str) -> Result<&'a Array, NirError> {
    node.array(param).ok_or_else(|| {
        NirError::new(
            MISSING_PARAM,
            format!("node `{name}` ({}) has no numeric parameter `{param}`", node.kind),
            format!("a NIR `{}` needs `{param}`", node.kind),
        )
    })
}

/// A whole number from a parameter that may be a scalar or a pair of equal values.
/// A size setting of a convolution or pool, per axis (rows, columns): one number for both
/// axes or one per axis; `axes` 1 for a `Conv1d`, whose one number is the columns' (with one
/// row: the row's entry is `row`).
fn sizes(name: &str, node: &Node, param: &str, default: Option<[usize; 2]>, axes: usize, row: usize) -> Result<[usize; 2], NirError> {
    let Some(array) = node.array(param) else {
        return default.ok_or_else(|| need(name, node, param).err().unwrap_or_else(|| shape_mismatch(format!("`{name}`: no `{param}`"))));
    };
    let whole = |v: f64| {
        if v >= 0.0 && v.fract() == 0.0 && v < 1e9 {
            Ok(v as usize)
        } else {
            Err(shape_mismatch(format!("node `{name}`: `{param}` = {v} is not a whole number")))
        }
    };
    match (&array.data[..], axes) {
        (&[v], 1) => Ok([row, whole(v)?]),
        (&[v], _) => Ok([whole(v)?; 2]),
        (&[a, b], 2) => Ok([whole(a)?, whole(b)?]),
        _ => Err(shape_mismatch(format!(
            "node `{name}` ({}): `{param}` = {:?} is not one number {}",
            node.kind,
            array.data,
            if axes == 1 { "" } else { "or two" }
        ))),
    }
}

/// A size option as the file writes it: one number where the axes agree (or for a 1-d
/// connection, the columns'), `[rows, columns]` otherwise.
fn sizes_text(hw: [usize; 2], one_d: bool) -> String {
    match hw {
        [_, b] if one_d => b.to_string(),
        [a, b] if a == b => a.to_string(),
        [a, b] => format!("[{a}, {b}]"),
    }
}

/// The one value of a parameter every neuron shares.
fn uniform(name: &str, node: &Node, param: &str) -> Result<f64, NirError> {
    let array = match (node.array(param), param) {
        (Some(array), _) => array,
        (None, "v_reset") => return Ok(0.0),
        (None, "w_in") => return Ok(1.0),
        (None, _) => return Err(need(name, node, param).err().unwrap_or_else(|| shape_mismatch(name.to_string()))),
    };
    let value = array.uniform().ok_or_else(|| {
        unsupported(
            format!("node `{name}` ({}): `{param}` differs from neuron to neuron", node.kind),
            "snnc imports neurons whose parameters are the same for the whole node",
        )
    })?;
    if !value.is_finite() {
        return Err(unsupported(format!("node `{name}`: `{param}` = {value}"), "parameters must be finite numbers"));
    }
    Ok(value)
}

/// An identifier for a node name: letters, digits and `_`, not starting with a digit.
fn ident(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "n_");
    }
    const RESERVED: [&str; 24] = [
        "neuron",
        "synapse",
        "network",
        "train",
        "import",
        "param",
        "state",
        "input",
        "population",
        "connect",
        "update",
        "spike",
        "when",
        "on",
        "after",
        "let",
        "refractory",
        "compartment",
        "observable",
        "encoder",
        "surrogate",
        "dt",
        "t",
        "pi",
    ];
    if RESERVED.contains(&out.as_str()) {
        out.push('_');
    }
    out
}

/// What a node outputs, as a connection reads it.
#[derive(Clone, Debug, PartialEq)]
enum Src {
    /// An input's values.
    Input(String),
    /// A population's spikes.
    Spikes(String),
    /// A population's state `v`.
    State(String),
}

impl Src {
    fn text(&self) -> String {
        match self {
            Src::Input(name) | Src::Spikes(name) => name.clone(),
            Src::State(name) => format!("{name}.v"),
        }
    }

    fn population(&self) -> Option<&str> {
        match self {
            Src::Input(_) => None,
            Src::Spikes(name) | Src::State(name) => Some(name),
        }
    }
}

/// A connection to write.
struct Connection {
    source: Src,
    target: String,
    spec: String,
    weights: Option<Vec<f64>>,
    /// Steps of delay (`Delay` nodes on the way).
    delay: usize,
}

/// A population to write.
struct Pop {
    name: String,
    shape: Vec<usize>,
    neuron: String,
    /// The first position among the edges where its node appears: the declaration order.
    first: usize,
}

struct Reader<'a> {
    graph: &'a Graph,
    dt: f64,
    preds: BTreeMap<&'a str, Vec<&'a str>>,
    succs: BTreeMap<&'a str, Vec<&'a str>>,
    /// Leaky patterns: the `LI` node by its `Threshold` and its `Scale`.
    leaky_by_part: BTreeMap<&'a str, &'a str>,
    leaky: BTreeMap<&'a str, (&'a str, &'a str)>,
    idents: BTreeMap<&'a str, String>,
    /// The output shape of every node whose shape is known.
    shapes: BTreeMap<&'a str, Vec<usize>>,
    /// Each `Delay` node's delay in whole steps.
    delays: BTreeMap<&'a str, usize>,
}

impl<'a> Reader<'a> {
    fn node(&self, name: &str) -> &'a Node {
        &self.graph.nodes[name]
    }

    fn preds(&self, name: &str) -> &[&'a str] {
        self.preds.get(name).map_or(&[], Vec::as_slice)
    }

    fn succs(&self, name: &str) -> &[&'a str] {
        self.succs.get(name).map_or(&[], Vec::as_slice)
    }

    fn id(&self, name: &str) -> String {
        self.idents.get(name).cloned().unwrap_or_else(|| ident(name))
    }

    fn is_map(&self, name: &str) -> bool {
        MAPS.contains(&self.node(name).kind.as_str()) && !self.leaky_by_part.contains_key(name)
    }

    fn is_neuron(&self, name: &str) -> bool {
        let kind = self.node(name).kind.as_str();
        NEURONS.contains(&kind) || kind == "Threshold" && !self.leaky_by_part.contains_key(name)
    }

    /// Whether a map's output feeds something other than neurons (through `Flatten`s), so
    /// that it needs a relay population.
    fn needs_relay(&self, name: &str, depth: usize) -> bool {
        self.succs(name).iter().any(|s| {
            let kind = self.node(s).kind.as_str();
            if PASS.contains(&kind) && depth < 64 { self.needs_relay(s, depth + 1) } else { !self.is_neuron(s) }
        })
    }

    /// The neurons a map's output reaches through pass-through nodes, with the steps of delay
    /// on the way.
    fn neuron_targets(&self, name: &str, depth: usize, delay: usize, out: &mut Vec<(&'a str, usize)>) {
        for s in self.succs(name).to_vec() {
            let kind = self.node(s).kind.as_str();
            if PASS.contains(&kind) && depth < 64 {
                self.neuron_targets(s, depth + 1, delay + self.delays.get(s).copied().unwrap_or(0), out);
            } else if self.is_neuron(s) && !out.contains(&(s, delay)) {
                out.push((s, delay));
            }
        }
    }

    /// Whether an `Affine` or `Conv2d` with a bias feeds node `name` (through pass-through
    /// nodes).
    fn biased(&self, name: &str, depth: usize) -> bool {
        self.preds(name).iter().any(|p| {
            let node = self.node(p);
            match node.kind.as_str() {
                "Affine" | "Conv2d" => node.array("bias").is_some_and(|b| b.data.iter().any(|v| *v != 0.0)),
                kind => PASS.contains(&kind) && depth < 64 && self.biased(p, depth + 1),
            }
        })
    }

    /// What node `name` outputs, as connections read it (a pass-through node: what its inputs
    /// output).
    fn sources(&self, name: &str, depth: usize) -> Result<Vec<(Src, usize)>, NirError> {
        if depth > 64 {
            return Err(unsupported(format!("node `{name}`: a loop of pass-through nodes"), "remove the loop"));
        }
        let node = self.node(name);
        let id = self.id(name);
        Ok(match node.kind.as_str() {
            "Input" => vec![(Src::Input(id), 0)],
            "LIF" | "IF" | "CubaLIF" => vec![(Src::Spikes(id), 0)],
            "LI" | "CubaLI" | "I" => vec![(Src::State(id), 0)],
            "Threshold" => match self.leaky_by_part.get(name) {
                Some(li) => vec![(Src::Spikes(self.id(li)), 0)],
                None => vec![(Src::Spikes(id), 0)],
            },
            kind if PASS.contains(&kind) => {
                let own = self.delays.get(name).copied().unwrap_or(0);
                let mut out = Vec::new();
                for p in self.preds(name).to_vec() {
                    out.extend(self.sources(p, depth + 1)?.into_iter().map(|(src, d)| (src, d + own)));
                }
                out
            }
            // A map with a relay is read from it; one that feeds neurons directly (through
            // pass-through nodes) makes those connections itself.
            _ if self.is_map(name) && self.needs_relay(name, 0) => vec![(Src::State(id), 0)],
            _ if self.is_map(name) => Vec::new(),
            kind => {
                return Err(unsupported(
                    format!("node `{name}` ({kind}) feeds a connection"),
                    "snnc imports feed-forward graphs of maps and neurons",
                ));
            }
        })
    }
}

fn neuron_shape(name: &str, node: &Node) -> Result<Vec<usize>, NirError> {
    let params = neuron_params(&node.kind);
    let first = need(name, node, params[0])?;
    for param in params {
        if let Some(array) = node.array(param)
            && array.data.len() != first.data.len()
            && array.data.len() != 1
        {
            return Err(shape_mismatch(format!(
                "node `{name}` ({}): `{param}` has the shape {:?}, `{}` {:?}",
                node.kind, array.shape, params[0], first.shape
            )));
        }
    }
    if first.data.is_empty() || first.data.len() > MAX_NEURONS {
        return Err(shape_mismatch(format!("node `{name}` ({}) has {} neurons", node.kind, first.data.len())));
    }
    Ok(if first.shape.is_empty() { vec![1] } else { first.shape.clone() })
}

/// A padding given as text (`nir` and PyTorch accept `"valid"` and `"same"`): `valid` is
/// none, `same` the half of the kernel's extent on each side, where that is whole and the
/// stride is 1 (PyTorch's rule).
fn text_padding(name: &str, text: &str, kernel: [usize; 2], dilation: [usize; 2], stride: [usize; 2]) -> Result<[usize; 2], NirError> {
    let extent = |a: usize| dilation[a] * (kernel[a] - 1);
    match text {
        "valid" => Ok([0; 2]),
        "same" if stride == [1; 2] && extent(0) % 2 == 0 && extent(1) % 2 == 0 => Ok([extent(0) / 2, extent(1) / 2]),
        _ => Err(unsupported(
            format!("node `{name}`: padding `{text}`"),
            "snnc pads both sides alike: give the padding as numbers, `valid`, or `same` with stride 1 and an odd kernel extent",
        )),
    }
}

/// The output of a convolution or pool along one axis.
fn conv_out(size: usize, kernel: usize, stride: usize, padding: usize, dilation: usize) -> Option<usize> {
    let span = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = size.checked_add(2 * padding)?;
    if stride == 0 || padded < span {
        return None;
    }
    Some((padded - span) / stride + 1)
}

/// Nested graphs (a `NIRGraph` node, as snnTorch writes a recurrent layer) inlined: node `n`
/// of subgraph `g` becomes `g.n`, the subgraph's `Input` and `Output` nodes pass values on, and
/// an edge to or from `g` itself goes to its one `Input` or from its one `Output`.
fn flatten(graph: &Graph, depth: usize) -> Result<Graph, NirError> {
    if depth > 16 {
        return Err(unsupported("graphs nest more than 16 deep", "flatten the graph before importing it"));
    }
    let mut out = Graph { metadata: graph.metadata.clone(), ..Graph::default() };
    let (mut entry, mut exit) = (BTreeMap::new(), BTreeMap::new());
    for (name, node) in &graph.nodes {
        let Some(sub) = node.graph.as_ref().filter(|_| node.kind == "NIRGraph") else {
            if out.nodes.insert(name.clone(), node.clone()).is_some() {
                return Err(unsupported(format!("two nodes are named `{name}` once nested graphs are inlined"), "rename one of them"));
            }
            continue;
        };
        let inner = flatten(sub, depth + 1)?;
        let ends = |kind: &str| -> Vec<String> {
            inner.nodes.iter().filter(|(_, n)| n.kind == kind).map(|(k, _)| format!("{name}.{k}")).collect()
        };
        if let [input] = ends("Input").as_slice() {
            entry.insert(name.clone(), input.clone());
        }
        if let [output] = ends("Output").as_slice() {
            exit.insert(name.clone(), output.clone());
        }
        for (child, mut node) in inner.nodes {
            if node.kind == "Input" || node.kind == "Output" {
                node.kind = "Identity".to_string();
            }
            let full = format!("{name}.{child}");
            if out.nodes.insert(full.clone(), node).is_some() {
                return Err(unsupported(format!("two nodes are named `{full}` once nested graphs are inlined"), "rename one of them"));
            }
        }
        out.edges.extend(inner.edges.into_iter().map(|(a, b)| (format!("{name}.{a}"), format!("{name}.{b}"))));
    }
    for (a, b) in &graph.edges {
        let a = exit.get(a).cloned().unwrap_or_else(|| a.clone());
        let b = entry.get(b).cloned().unwrap_or_else(|| b.clone());
        out.edges.push((a, b));
    }
    Ok(out)
}

/// Imports `graph` at the step `dt` (seconds; the graph's `snnc_dt` when `None`).
pub fn import(graph: &Graph, dt: Option<f64>) -> Result<Imported, NirError> {
    let flat = flatten(graph, 0)?;
    let graph = &flat;
    let dt = match dt.or_else(|| graph.meta_number("snnc_dt")) {
        Some(dt) if dt > 0.0 && dt.is_finite() => dt,
        Some(dt) => return Err(NirError::new(NO_DT, format!("dt = {dt} s is not a step"), "give --dt a positive number of seconds")),
        None => {
            return Err(NirError::new(
                NO_DT,
                "the graph does not say its step: NIR graphs are continuous-time and store no dt",
                "give the step the time constants are read at, e.g. `--dt 1e-3` (snnTorch's exporter writes tau = dt / (1 - beta) with dt = 1e-4)",
            ));
        }
    };
    for (name, node) in &graph.nodes {
        if !NODE_TYPES.contains(&node.kind.as_str()) {
            return Err(NirError::new(
                UNKNOWN_NODE,
                format!("node `{name}` has the type `{}`, which NIR 1.0 does not define", node.kind),
                format!("NIR 1.0 node types: {}", NODE_TYPES.join(", ")),
            ));
        }
    }
    for (from, to) in &graph.edges {
        for end in [from, to] {
            if !graph.nodes.contains_key(end) {
                let known: Vec<&str> = graph.nodes.keys().map(String::as_str).collect();
                let hint = crate::front::diag::did_you_mean(end, known.iter().copied())
                    .map_or(String::new(), |s| format!(" (did you mean `{s}`?)"));
                return Err(NirError::new(
                    DANGLING_EDGE,
                    format!("the edge `{from}` -> `{to}` names `{end}`, which is not a node of the graph{hint}"),
                    "every edge must join two nodes of its graph; fix or drop the edge",
                ));
            }
        }
    }
    for (name, node) in &graph.nodes {
        for (param, value) in &node.params {
            if let super::Value::Array(array) = value {
                let count = array.shape.iter().try_fold(1usize, |n, d| n.checked_mul(*d));
                if count != Some(array.data.len()) {
                    return Err(shape_mismatch(format!(
                        "node `{name}`: `{param}` holds {} values for the shape {:?}",
                        array.data.len(),
                        array.shape
                    )));
                }
            }
        }
        if node.kind == "NIRGraph" {
            return Err(unsupported(format!("node `{name}` is a `NIRGraph` without nodes"), "give the subgraph its nodes and edges"));
        }
    }
    let mut reader = Reader {
        graph,
        dt,
        preds: BTreeMap::new(),
        succs: BTreeMap::new(),
        leaky_by_part: BTreeMap::new(),
        leaky: BTreeMap::new(),
        idents: BTreeMap::new(),
        shapes: BTreeMap::new(),
        delays: BTreeMap::new(),
    };
    for (name, node) in &graph.nodes {
        if node.kind == "Delay" {
            let delay = uniform(name, node, "delay")?;
            let steps = (delay / dt).round();
            if !((0.0..1e6).contains(&steps) && same(steps * dt, delay) || delay == 0.0) {
                return Err(unsupported(
                    format!("node `{name}` (Delay): {delay} s is not a whole number of steps of dt = {dt} s"),
                    "snnc delays connections by whole steps; import at a dt that divides the delay",
                ));
            }
            reader.delays.insert(name.as_str(), steps as usize);
        }
    }
    let mut first_seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (from, to)) in graph.edges.iter().enumerate() {
        reader.preds.entry(to.as_str()).or_default().push(from.as_str());
        reader.succs.entry(from.as_str()).or_default().push(to.as_str());
        first_seen.entry(from.as_str()).or_insert(2 * i);
        first_seen.entry(to.as_str()).or_insert(2 * i + 1);
    }
    // Identifiers: distinct, readable.
    let mut taken = BTreeSet::new();
    for name in graph.nodes.keys() {
        let mut id = ident(name);
        while !taken.insert(id.clone()) {
            id.push('_');
        }
        reader.idents.insert(name.as_str(), id);
    }
    // Leaky loops: LI -> Threshold -> Scale -> the same LI.
    for (name, node) in &graph.nodes {
        if node.kind != "Threshold" {
            continue;
        }
        let preds = reader.preds(name).to_vec();
        let [li] = preds.as_slice() else { continue };
        if graph.nodes[*li].kind != "LI" {
            continue;
        }
        let scale = reader
            .succs(name)
            .iter()
            .copied()
            .find(|s| graph.nodes[*s].kind == "Scale" && reader.preds(s) == [name.as_str()] && reader.succs(s) == [*li]);
        let leaky = |scale: &&str| snntorch_leaky(&graph.nodes[*li], node, &graph.nodes[*scale], dt) && !reader.biased(li, 0);
        if let Some(scale) = scale.filter(leaky) {
            reader.leaky_by_part.insert(name.as_str(), li);
            reader.leaky_by_part.insert(scale, li);
            reader.leaky.insert(li, (name.as_str(), scale));
        }
    }
    // Shapes of inputs and neurons, then of maps in edge order.
    for (name, node) in &graph.nodes {
        match node.kind.as_str() {
            "Input" => {
                let shape = need(name, node, "shape")?;
                let dims: Vec<usize> = shape.data.iter().map(|d| *d as usize).collect();
                let too_large = dims.iter().try_fold(1usize, |n, d| n.checked_mul(*d)).is_none_or(|n| n > MAX_NEURONS);
                if dims.is_empty() || too_large || shape.data.iter().any(|d| !(*d >= 1.0 && d.fract() == 0.0)) {
                    return Err(shape_mismatch(format!("input `{name}` has the shape {:?}", shape.data)));
                }
                reader.shapes.insert(name, dims);
            }
            _ if reader.is_neuron(name) => {
                let shape = neuron_shape(name, node)?;
                reader.shapes.insert(name, shape);
            }
            _ => {}
        }
    }
    let mut populations: Vec<Pop> = Vec::new();
    let mut connections: Vec<Connection> = Vec::new();
    let mut needs_std = false;
    let mut definitions: BTreeMap<String, String> = BTreeMap::new();
    let mut neuron_values: Vec<(String, String, Vec<f64>)> = Vec::new();
    // Biases of `Affine`, `Conv1d` and `Conv2d` nodes, summed per population they feed (by node name).
    let mut biases: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    // Maps, in the order their nodes first appear among the edges.
    let mut maps: Vec<&str> = graph.nodes.keys().map(String::as_str).filter(|n| reader.is_map(n)).collect();
    maps.sort_by_key(|n| first_seen.get(n).copied().unwrap_or(usize::MAX));
    for name in maps {
        let node = reader.node(name);
        let mut sources = Vec::new();
        let mut source_shapes = Vec::new();
        for p in reader.preds(name).to_vec() {
            for source in reader.sources(p, 0)? {
                let shape = value_shape(&reader, p)?;
                sources.push(source);
                source_shapes.push(shape);
            }
        }
        if sources.is_empty() {
            return Err(unsupported(format!("node `{name}` ({}) has no input", node.kind), "connect the node to an Input or a neuron"));
        }
        let mut targets = Vec::new();
        let relay = reader.needs_relay(name, 0);
        if !relay {
            reader.neuron_targets(name, 0, 0, &mut targets);
        }
        let mut first_source = true;
        for ((src, src_delay), in_shape) in sources.iter().zip(&source_shapes) {
            let in_size: usize = in_shape.iter().product();
            let (spec, weights, out_shape, bias) = map_connection(&reader, name, node, in_shape, in_size)?;
            reader.shapes.insert(name, out_shape.clone());
            let out_size: usize = out_shape.iter().product();
            if let Some(bias) = bias.filter(|_| first_source) {
                let fed: Vec<&str> = if relay { vec![name] } else { targets.iter().map(|(t, _)| *t).collect() };
                for target in fed {
                    let sum = biases.entry(target).or_insert_with(|| vec![0.0; out_size]);
                    if sum.len() == bias.len() {
                        sum.iter_mut().zip(&bias).for_each(|(s, b)| *s += b);
                    }
                }
            }
            first_source = false;
            let target_names: Vec<(String, Vec<usize>, usize)> = if relay {
                vec![(reader.id(name), out_shape.clone(), 0)]
            } else {
                targets.iter().map(|(t, d)| (reader.id(t), reader.shapes[t].clone(), *d)).collect()
            };
            for (target, target_shape, target_delay) in target_names {
                if target_shape.iter().product::<usize>() != out_size {
                    return Err(shape_mismatch(format!(
                        "node `{name}` ({}) outputs {out_size} values ({out_shape:?}) into `{target}`, which has {} ({target_shape:?})",
                        node.kind,
                        target_shape.iter().product::<usize>()
                    )));
                }
                let spec = match node.meta_text("snnc_connect") {
                    Some(text) if safe_spec(text, &spec) => text.to_string(),
                    _ => spec.clone(),
                };
                let delay = src_delay + target_delay;
                connections.push(Connection { source: src.clone(), target, spec, weights: weights.clone(), delay });
            }
        }
        if relay {
            let shape = reader.shapes[name].clone();
            let out = neuron_out(&reader, name, node, shape.iter().product(), biases.get(name).map(Vec::as_slice))?;
            populations.push(Pop { name: reader.id(name), shape, neuron: out.call.clone(), first: first_seen[name] });
            take(out, &reader.id(name), &mut definitions, &mut neuron_values, &mut needs_std);
        }
    }
    // Conv and pool targets take the 3-d shape of what feeds them when the sizes agree.
    for (name, node) in &graph.nodes {
        if !reader.is_neuron(name) {
            continue;
        }
        let shape = reader.shapes[name.as_str()].clone();
        let fed_3d = reader
            .preds(name)
            .iter()
            .filter(|p| reader.is_map(p))
            .filter_map(|p| reader.shapes.get(p))
            .find(|s| s.len() == 3 && s.iter().product::<usize>() == shape.iter().product::<usize>())
            .cloned();
        let shape = fed_3d.unwrap_or(shape);
        // Direct edges from inputs, neurons and pass-through nodes: one to one, weight 1.
        for p in reader.preds(name).to_vec() {
            if reader.is_map(p) || reader.leaky_by_part.contains_key(p) && reader.leaky.get(name.as_str()).is_some_and(|(_, s)| *s == p) {
                continue;
            }
            if graph.nodes[p].kind == "Output" {
                continue;
            }
            for (src, delay) in reader.sources(p, 0)? {
                let in_size: usize = value_shape(&reader, p)?.iter().product();
                if in_size != shape.iter().product::<usize>() {
                    return Err(shape_mismatch(format!(
                        "the edge `{p}` -> `{name}` joins {in_size} values to {} neurons",
                        shape.iter().product::<usize>()
                    )));
                }
                connections.push(Connection {
                    source: src,
                    target: reader.id(name),
                    spec: "one_to_one(weight = 1)".to_string(),
                    weights: None,
                    delay,
                });
            }
        }
        let out = neuron_out(&reader, name, node, shape.iter().product(), biases.get(name.as_str()).map(Vec::as_slice))?;
        let first = first_seen.get(name.as_str()).copied().unwrap_or(usize::MAX);
        populations.push(Pop { name: reader.id(name), shape, neuron: out.call.clone(), first });
        take(out, &reader.id(name), &mut definitions, &mut neuron_values, &mut needs_std);
    }
    for (name, node) in &graph.nodes {
        if node.kind == "Output" && reader.succs(name).is_empty() {
            for p in reader.preds(name).to_vec() {
                reader.sources(p, 0)?;
            }
        }
    }
    let order = declaration_order(&populations, &connections);
    let position: BTreeMap<&str, usize> = order.iter().enumerate().map(|(at, p)| (populations[*p].name.as_str(), at)).collect();
    // Inputs in the order they first appear.
    let mut inputs: Vec<&str> = graph.nodes.iter().filter(|(_, n)| n.kind == "Input").map(|(k, _)| k.as_str()).collect();
    inputs.sort_by_key(|n| first_seen.get(n).copied().unwrap_or(usize::MAX));
    if inputs.is_empty() {
        return Err(unsupported("the graph has no `Input` node", "an snnc network needs an input"));
    }
    if populations.is_empty() {
        return Err(unsupported("the graph has no neurons", "snnc imports graphs with at least one neuron node"));
    }

    let network = graph.meta_text("snnc_network").filter(|n| ident(n) == *n).unwrap_or("Imported");
    let steps = graph.meta_number("snnc_steps").filter(|s| *s >= 1.0 && s.fract() == 0.0).unwrap_or(100.0);
    let mut text = String::new();
    let _ = writeln!(text, "// Imported from NIR by `snnc import` at dt = {} s: every neuron under forward Euler", fmt_f64(dt));
    let _ = writeln!(text, "// (docs/language.md, \"NIR\"); the weights are in the checkpoint written beside this file.");
    if needs_std {
        let _ = writeln!(text, "import std::neurons");
    }
    let _ = writeln!(text, "import std::encoders\n");
    for definition in definitions.values() {
        text.push_str(definition);
        text.push('\n');
    }
    let _ = writeln!(text, "network {network} {{");
    let _ = writeln!(text, "    dt = {} s", fmt_f64(dt));
    let _ = writeln!(text, "    steps = {}", steps as usize);
    for name in &inputs {
        let node = reader.node(name);
        let shape = &reader.shapes[name];
        let encoder = node.meta_text("snnc_encoder").filter(|t| safe_encoder(t)).unwrap_or("repeat(sample)");
        let _ = writeln!(text, "    input {}[{}] = {encoder}", reader.id(name), join(shape));
    }
    for &p in &order {
        let pop = &populations[p];
        let _ = writeln!(text, "    population {}[{}] = {}", pop.name, join(&pop.shape), pop.neuron);
    }
    let mut weights = Vec::new();
    for connection in &connections {
        let delay = if connection.delay > 0 {
            format!(" delay {} s", fmt_f64(connection.delay as f64 * dt))
        } else if needs_feedback(connection, &position) {
            " feedback".to_string()
        } else {
            String::new()
        };
        let _ = writeln!(text, "    connect {} -> {} : {}{delay}", connection.source.text(), connection.target, connection.spec);
        weights.push(connection.weights.clone());
    }
    text.push_str("}\n");
    Ok(Imported { text, weights, dt, neuron_values })
}

/// Keeps what a population's neuron adds to the file: its definition and per-neuron values.
fn take(
    out: NeuronOut,
    population: &str,
    definitions: &mut BTreeMap<String, String>,
    values: &mut Vec<(String, String, Vec<f64>)>,
    std: &mut bool,
) {
    *std |= out.std;
    if let Some((name, text)) = out.definition {
        definitions.insert(name, text);
    }
    for (param, data) in out.values {
        values.push((population.to_string(), param, data));
    }
}

fn join(shape: &[usize]) -> String {
    shape.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// Whether the metadata's text for a connection is a plain specification of the same kind as
/// the one the node gives (`dense(init = uniform(-1, 1))`), safe to write into the file.
fn safe_spec(text: &str, derived: &str) -> bool {
    let kind = derived.split('(').next().unwrap_or(derived);
    let head = text.split(['(', ' ']).next().unwrap_or(text);
    head == kind && !text.contains(['\n', '\r', '{', '}', ';', '/']) && !["via", "feedback", "delay"].iter().any(|w| text.contains(w))
}

/// Whether the metadata's encoder text is one call, safe to write into the file.
fn safe_encoder(text: &str) -> bool {
    let head = text.split('(').next().unwrap_or("");
    !head.is_empty()
        && head.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && text.ends_with(')')
        && !text.contains(['\n', '\r', '{', '}', ';', '/'])
}

/// The shape of what node `name` outputs.
fn value_shape(reader: &Reader, name: &str) -> Result<Vec<usize>, NirError> {
    if let Some(shape) = reader.shapes.get(name) {
        return Ok(shape.clone());
    }
    let node = reader.node(name);
    if let Some(li) = reader.leaky_by_part.get(name) {
        return value_shape(reader, li);
    }
    if PASS.contains(&node.kind.as_str()) {
        let preds = reader.preds(name);
        if let Some(p) = preds.first() {
            let shape = value_shape(reader, p)?;
            if node.kind == "Flatten" {
                return Ok(vec![shape.iter().product()]);
            }
            return Ok(shape);
        }
    }
    Err(unsupported(
        format!("node `{name}` ({}): its shape is not known where a connection reads it", node.kind),
        "order the graph's maps from input to output",
    ))
}

/// A map as a connection: its specification, weights in snnc's layout (`None`: fixed), output
/// shape and bias (one value per output, `None` for none).
type MapConnection = (String, Option<Vec<f64>>, Vec<usize>, Option<Vec<f64>>);

/// A map node as a connection: its specification, weights in snnc's layout and output shape.
fn map_connection(reader: &Reader, name: &str, node: &Node, in_shape: &[usize], in_size: usize) -> Result<MapConnection, NirError> {
    match node.kind.as_str() {
        "Affine" | "Linear" => {
            let weight = need(name, node, "weight")?;
            if weight.shape.len() != 2 {
                return Err(shape_mismatch(format!("node `{name}`: `weight` has the shape {:?}, not [out, in]", weight.shape)));
            }
            let (out, inn) = (weight.shape[0], weight.shape[1]);
            if inn != in_size {
                return Err(shape_mismatch(format!(
                    "node `{name}` ({}) takes {inn} inputs (`weight` {:?}) but receives {in_size}",
                    node.kind, weight.shape
                )));
            }
            let mut bias_out = None;
            if node.kind == "Affine" {
                let bias = need(name, node, "bias")?;
                if bias.data.iter().any(|b| *b != 0.0) {
                    bias_out = Some(if bias.data.len() == 1 { vec![bias.data[0]; out] } else { bias.data.clone() });
                }
                if bias.data.len() != out && bias.data.len() != 1 {
                    return Err(shape_mismatch(format!("node `{name}`: `bias` has {} values for {out} outputs", bias.data.len())));
                }
            }
            let mut w = vec![0.0; inn * out];
            for j in 0..out {
                for i in 0..inn {
                    w[i * out + j] = weight.data[j * inn + i];
                }
            }
            Ok(("dense".to_string(), Some(w), vec![out], bias_out))
        }
        "Conv1d" | "Conv2d" => {
            let one_d = node.kind == "Conv1d";
            let kind = &node.kind;
            let weight = need(name, node, "weight")?;
            let rank = if one_d { 3 } else { 4 };
            if weight.shape.len() != rank {
                return Err(shape_mismatch(format!(
                    "node `{name}` ({kind}): `weight` has the shape {:?}, not [out, in, {}]",
                    weight.shape,
                    if one_d { "k" } else { "kh, kw" }
                )));
            }
            let kernel = if one_d { [1, weight.shape[2]] } else { [weight.shape[2], weight.shape[3]] };
            let axes = if one_d { 1 } else { 2 };
            let stride = sizes(name, node, "stride", Some([1; 2]), axes, 1)?.map(|v| v.max(1));
            let dilation = sizes(name, node, "dilation", Some([1; 2]), axes, 1)?.map(|v| v.max(1));
            let padding = match node.params.get("padding") {
                Some(super::Value::Text(text)) => text_padding(name, text, kernel, dilation, stride)?,
                _ => sizes(name, node, "padding", Some([0; 2]), axes, 0)?,
            };
            let groups = sizes(name, node, "groups", Some([1; 2]), 1, 1)?[1].max(1);
            let spatial = &in_shape[in_shape.len().min(1)..];
            let fits_rank = spatial.len() == axes;
            if !fits_rank || in_shape[0] != weight.shape[1] * groups || weight.shape[0] % groups != 0 {
                return Err(shape_mismatch(format!(
                    "node `{name}` ({kind}) takes [{} channels, {}] (`weight` {:?}, groups {groups}) but receives {in_shape:?}",
                    weight.shape[1] * groups,
                    if one_d { "length" } else { "height, width" },
                    weight.shape
                )));
            }
            let (in_h, in_w) = if one_d { (1, in_shape[1]) } else { (in_shape[1], in_shape[2]) };
            let (h, w) = match (
                conv_out(in_h, kernel[0], stride[0], padding[0], dilation[0]),
                conv_out(in_w, kernel[1], stride[1], padding[1], dilation[1]),
            ) {
                (Some(h), Some(w)) if h > 0 && w > 0 => (h, w),
                _ => {
                    return Err(shape_mismatch(format!(
                        "node `{name}` ({kind}): a {} x {} kernel does not fit the input {in_shape:?}",
                        kernel[0], kernel[1]
                    )));
                }
            };
            let text = |hw| sizes_text(hw, one_d);
            let mut spec = format!(
                "conv{}d(kernel = {}, stride = {}, padding = {}",
                if one_d { 1 } else { 2 },
                text(kernel),
                text(stride),
                text(padding)
            );
            if dilation != [1; 2] {
                let _ = write!(spec, ", dilation = {}", text(dilation));
            }
            if groups != 1 {
                let _ = write!(spec, ", groups = {groups}");
            }
            spec.push(')');
            // A bias per output channel, one value per output neuron.
            let bias = match node.array("bias") {
                Some(bias) if bias.data.iter().any(|b| *b != 0.0) => {
                    if bias.data.len() != weight.shape[0] {
                        return Err(shape_mismatch(format!(
                            "node `{name}` ({kind}): `bias` has {} values for {} channels",
                            bias.data.len(),
                            weight.shape[0]
                        )));
                    }
                    Some(bias.data.iter().flat_map(|b| std::iter::repeat_n(*b, h * w)).collect())
                }
                _ => None,
            };
            let out_shape = if one_d { vec![weight.shape[0], w] } else { vec![weight.shape[0], h, w] };
            Ok((spec, Some(weight.data.clone()), out_shape, bias))
        }
        "SumPool2d" | "AvgPool2d" => {
            let kernel = sizes(name, node, "kernel_size", None, 2, 1)?;
            let stride = sizes(name, node, "stride", Some(kernel), 2, 1)?;
            let padding = sizes(name, node, "padding", Some([0; 2]), 2, 0)?;
            if in_shape.len() != 3 {
                return Err(shape_mismatch(format!(
                    "node `{name}` ({}) takes [channels, height, width] but receives {in_shape:?}",
                    node.kind
                )));
            }
            if stride.contains(&0) {
                return Err(shape_mismatch(format!("node `{name}` ({}): a stride of 0", node.kind)));
            }
            let (h, w) = match (
                conv_out(in_shape[1], kernel[0], stride[0], padding[0], 1),
                conv_out(in_shape[2], kernel[1], stride[1], padding[1], 1),
            ) {
                (Some(h), Some(w)) if h > 0 && w > 0 => (h, w),
                _ => {
                    return Err(shape_mismatch(format!(
                        "node `{name}` ({}): a {} x {} window does not fit {in_shape:?}",
                        node.kind, kernel[0], kernel[1]
                    )));
                }
            };
            let kind = if node.kind == "SumPool2d" { "sum_pool2d" } else { "avg_pool2d" };
            let text = |hw| sizes_text(hw, false);
            Ok((
                format!("{kind}(kernel = {}, stride = {}, padding = {})", text(kernel), text(stride), text(padding)),
                None,
                vec![in_shape[0], h, w],
                None,
            ))
        }
        _ => {
            let scale = need(name, node, "scale")?;
            if scale.data.len() != in_size {
                return Err(shape_mismatch(format!("node `{name}` (Scale) has {} factors for {in_size} inputs", scale.data.len())));
            }
            let _ = reader;
            Ok(("one_to_one".to_string(), Some(scale.data.clone()), in_shape.to_vec(), None))
        }
    }
}

/// Whether `a` is `b` up to rounding (relative 1e-9).
fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs())
}

/// A neuron as the file writes it.
struct NeuronOut {
    /// `Leaky(beta = 0.9, threshold = 1)`, `NirLIF(tau = 0.02 s, ...)`, `NirLIF_lif`.
    call: String,
    /// Whether it comes from `std::neurons`.
    std: bool,
    /// A neuron written out in the file: its name and text.
    definition: Option<(String, String)>,
    /// Per-neuron parameter values for the checkpoint.
    values: Vec<(String, Vec<f64>)>,
}

/// A written-out neuron's documentation, parameters (with whether they are times in seconds),
/// name and body. `bias` is a constant added to the input (an `Affine`'s bias).
type WrittenOut = (&'static str, &'static [(&'static str, bool)], &'static str, &'static str);

fn written_out(kind: &str) -> WrittenOut {
    match kind {
        "LIF" => (
            "/// NIR LIF: tau dv/dt = (v_leak - v) + r i under forward Euler (an Affine's bias is in\n/// v_leak); a spike when v > v_threshold, then v = v_reset.\n",
            &[("tau", true), ("r", false), ("v_leak", false), ("v_threshold", false), ("v_reset", false)],
            "NirLIF",
            "    state v = 0\n    input i\n    update { v = v + dt / tau * (v_leak - v + r * i) }\n    spike when v > v_threshold\n    on spike { v = v_reset }\n",
        ),
        "LI" => (
            "/// NIR LI: tau dv/dt = (v_leak - v) + r i under forward Euler (an Affine's bias is in\n/// v_leak).\n",
            &[("tau", true), ("r", false), ("v_leak", false)],
            "NirLI",
            "    state v = 0\n    input i\n    update { v = v + dt / tau * (v_leak - v + r * i) }\n",
        ),
        "Threshold" => (
            "/// NIR Threshold: a spike in every step where the step's input exceeds the threshold,\n/// H(i - threshold), without memory: v is the step's input (an Affine's bias is in the\n/// threshold).\n",
            &[("threshold", false)],
            "NirThreshold",
            "    state v = 0\n    input i\n    update { v = i }\n    spike when v > threshold\n",
        ),
        "CubaLIF" => (
            "/// NIR CubaLIF: tau_syn dI/dt = -I + w_in (s + bias), tau_mem dv/dt = (v_leak - v) + r I under\n/// forward Euler, the current first (v takes the step's new current); a spike when\n/// v > v_threshold, then v = v_reset.\n",
            &[
                ("tau_syn", true),
                ("tau_mem", true),
                ("r", false),
                ("v_leak", false),
                ("v_threshold", false),
                ("v_reset", false),
                ("w_in", false),
                ("bias", false),
            ],
            "NirCubaLIF",
            "    state syn = 0\n    state v = 0\n    input i\n    update {\n        syn = syn + dt / tau_syn * (w_in * (i + bias) - syn)\n        v = v + dt / tau_mem * (v_leak - v + r * syn)\n    }\n    spike when v > v_threshold\n    on spike { v = v_reset }\n",
        ),
        "CubaLI" => (
            "/// NIR CubaLI: tau_syn dI/dt = -I + w_in (s + bias), tau_mem dv/dt = (v_leak - v) + r I under\n/// forward Euler, the current first.\n",
            &[("tau_syn", true), ("tau_mem", true), ("r", false), ("v_leak", false), ("w_in", false), ("bias", false)],
            "NirCubaLI",
            "    state syn = 0\n    state v = 0\n    input i\n    update {\n        syn = syn + dt / tau_syn * (w_in * (i + bias) - syn)\n        v = v + dt / tau_mem * (v_leak - v + r * syn)\n    }\n",
        ),
        "IF" => (
            "/// NIR IF: dv/dt = r (i + bias), r per second, under forward Euler; a spike when\n/// v > v_threshold, then v = v_reset.\n",
            &[("r", false), ("v_threshold", false), ("v_reset", false), ("bias", false)],
            "NirIF",
            "    state v = 0\n    input i\n    update { v = v + dt / 1 s * r * (i + bias) }\n    spike when v > v_threshold\n    on spike { v = v_reset }\n",
        ),
        "I" => (
            "/// NIR I: dv/dt = r (i + bias), r per second, under forward Euler.\n",
            &[("r", false), ("bias", false)],
            "NirI",
            "    state v = 0\n    input i\n    update { v = v + dt / 1 s * r * (i + bias) }\n",
        ),
        _ => (
            "/// A NIR map's output that feeds no neuron directly: its state `v` is its input (plus an\n/// `Affine`'s bias).\n",
            &[("bias", false)],
            "NirRelay",
            "    state v = 0\n    input i\n    update { v = i + bias }\n",
        ),
    }
}

/// A value with its unit, as the file writes it.
fn with_unit(value: f64, seconds: bool) -> String {
    if seconds { format!("{} s", fmt_f64(value)) } else { fmt_f64(value) }
}

/// The population of NIR node `name` (a neuron, or a map's relay when `node` is not a
/// neuron), with `bias` added to its input.
fn neuron_out(reader: &Reader, name: &str, node: &Node, size: usize, bias: Option<&[f64]>) -> Result<NeuronOut, NirError> {
    let dt = reader.dt;
    let kind = if reader.is_neuron(name) { node.kind.as_str() } else { "Relay" };
    let no_bias = bias.is_none_or(|b| b.iter().all(|v| *v == 0.0));
    let num = fmt_f64;
    let std = |call: String| Ok(NeuronOut { call, std: true, definition: None, values: Vec::new() });
    // A relay without a bias is `LI(beta = 0)`: `v = i`, which exports as a NIR `LI` with
    // `tau = dt` and imports back as itself.
    if kind == "Relay" && no_bias {
        return std("LI(beta = 0)".to_string());
    }
    if kind == "LI" && reader.leaky.contains_key(name) {
        let u = |param: &str| uniform(name, node, param);
        let (threshold_node, scale_node) = reader.leaky[name];
        let (tau, r, v_leak) = (u("tau")?, u("r")?, u("v_leak")?);
        let threshold = uniform(threshold_node, reader.node(threshold_node), "threshold")?;
        let scale = uniform(scale_node, reader.node(scale_node), "scale")?;
        if tau <= 0.0 || v_leak != 0.0 || !same(r * dt / tau, 1.0) || !same(scale, -threshold) || !no_bias {
            return Err(unsupported(
                format!(
                    "node `{name}`: an LI -> Threshold -> Scale loop that is not snnTorch's Leaky (tau = {tau}, v_leak = {v_leak}, r dt / tau = {}, scale = {scale}, threshold = {threshold}{})",
                    r * dt / tau,
                    if no_bias { "" } else { ", a bias" }
                ),
                "snnc reads such a loop as std's Leaky, which takes no constant input: give the Affine that feeds the LI a zero bias (or a Linear)",
            ));
        }
        return std(format!("Leaky(beta = {}, threshold = {})", num(round_15(1.0 - dt / tau)), num(threshold)));
    }
    let (doc, params, base, body) = written_out(kind);
    // Every parameter as one value per neuron.
    let mut arrays: Vec<(&str, bool, Vec<f64>)> = Vec::new();
    for &(param, seconds) in params {
        let data: Vec<f64> = match (param, node.array(param)) {
            ("bias", _) => bias.map_or_else(|| vec![0.0; size], <[f64]>::to_vec),
            (_, Some(array)) if array.data.len() == size => array.data.clone(),
            (_, Some(array)) if array.data.len() == 1 => vec![array.data[0]; size],
            (_, Some(array)) => {
                return Err(shape_mismatch(format!(
                    "node `{name}` ({}): `{param}` has {} values for {size} neurons",
                    node.kind,
                    array.data.len()
                )));
            }
            ("v_reset", None) => vec![0.0; size],
            ("w_in", None) => vec![1.0; size],
            (_, None) => return Err(need(name, node, param).err().unwrap_or_else(|| shape_mismatch(name.to_string()))),
        };
        if let Some(bad) = data.iter().find(|v| !v.is_finite() || seconds && **v <= 0.0) {
            return Err(unsupported(
                format!("node `{name}` ({}): `{param}` = {bad}", node.kind),
                "parameters must be finite numbers, time constants positive",
            ));
        }
        arrays.push((param, seconds, data));
    }
    // An `LIF`'s or `LI`'s constant input is a leak towards `v_leak + r bias`, a `Threshold`'s a
    // lower threshold: the neuron has no `bias` then, and exports back to the same node.
    let folds = matches!(kind, "LIF" | "LI" | "Threshold");
    if let Some(bias) = bias.filter(|_| folds) {
        let r: Vec<f64> = arrays.iter().find(|(p, _, _)| *p == "r").map(|(_, _, d)| d.clone()).unwrap_or_default();
        for (param, _, data) in &mut arrays {
            match *param {
                "threshold" => data.iter_mut().zip(bias).for_each(|(t, b)| *t -= b),
                "v_leak" => data.iter_mut().zip(bias).zip(&r).for_each(|((v, b), r)| *v += r * b),
                _ => {}
            }
        }
    }
    let no_bias = no_bias || folds;
    let all_uniform = arrays.iter().all(|(_, _, data)| data.iter().all(|v| *v == data[0]));
    let value = |param: &str| arrays.iter().find(|(p, _, _)| *p == param).map_or(0.0, |(_, _, data)| data[0]);
    if all_uniform && no_bias {
        match kind {
            "LIF" if value("v_leak") == 0.0 && value("v_reset") == 0.0 && same(value("r") * dt / value("tau"), 1.0) => {
                return std(format!(
                    "LeakyZero(beta = {}, threshold = {})",
                    num(round_15(1.0 - dt / value("tau"))),
                    num(value("v_threshold"))
                ));
            }
            "LI" if value("v_leak") == 0.0 && same(value("r") * dt / value("tau"), 1.0) => {
                return std(format!("LI(beta = {})", num(round_15(1.0 - dt / value("tau")))));
            }
            _ => {}
        }
    }
    let declare = |per_neuron: &dyn Fn(&str) -> bool, defaults: &dyn Fn(&str) -> f64| -> String {
        let mut text = String::new();
        for &(param, seconds) in params {
            let kind = match (seconds, per_neuron(param)) {
                (true, true) => ": s per_neuron",
                (true, false) => ": s",
                (false, true) => ": per_neuron",
                (false, false) => "",
            };
            let _ = writeln!(text, "    param {param}{kind} = {}", with_unit(defaults(param), seconds));
        }
        text
    };
    if all_uniform {
        // One definition for every population of the kind; the values as arguments.
        let defaults = |param: &str| match param {
            "tau" | "tau_mem" => 0.01,
            "tau_syn" => 0.005,
            "r" | "v_threshold" | "w_in" | "threshold" => 1.0,
            _ => 0.0,
        };
        let text = format!("{doc}neuron {base} {{\n{}{body}}}\n", declare(&|_| false, &defaults));
        let args: Vec<String> = arrays
            .iter()
            .filter(|(param, _, data)| *param != "bias" || data[0] != 0.0)
            .map(|(param, seconds, data)| format!("{param} = {}", with_unit(data[0], *seconds)))
            .collect();
        let call = if args.is_empty() { base.to_string() } else { format!("{base}({})", args.join(", ")) };
        return Ok(NeuronOut { call, std: false, definition: Some((base.to_string(), text)), values: Vec::new() });
    }
    // Values that differ from neuron to neuron: a definition for this population, those
    // parameters per neuron, their values in the checkpoint.
    let own = format!("{base}_{}", reader.id(name));
    let varies = |param: &str| arrays.iter().any(|(p, _, data)| *p == param && data.iter().any(|v| *v != data[0]));
    let text = format!(
        "{doc}/// Written for `{}`: the parameters marked per_neuron take their values from the checkpoint.\nneuron {own} {{\n{}{body}}}\n",
        reader.id(name),
        declare(&varies, &value)
    );
    let values = arrays.iter().filter(|(p, _, _)| varies(p)).map(|(p, _, data)| (p.to_string(), data.clone())).collect();
    Ok(NeuronOut { call: own.clone(), std: false, definition: Some((own, text)), values })
}

/// Whether an `LI` -> `Threshold` -> `Scale` -> the `LI` loop is snnTorch's `Leaky`: one
/// `tau` and threshold for the node, `v_leak = 0`, `r = tau / dt` and a scale of
/// `-threshold`. Any other such loop is imported as its nodes are (`feedback` closes it).
fn snntorch_leaky(li: &Node, threshold: &Node, scale: &Node, dt: f64) -> bool {
    let value = |node: &Node, param: &str| node.array(param).and_then(Array::uniform).filter(|v| v.is_finite());
    let (Some(tau), Some(r), Some(v_leak), Some(threshold), Some(scale)) =
        (value(li, "tau"), value(li, "r"), value(li, "v_leak"), value(threshold, "threshold"), value(scale, "scale"))
    else {
        return false;
    };
    tau > 0.0 && v_leak == 0.0 && same(r * dt / tau, 1.0) && same(scale, -threshold)
}

/// Populations in an order where every connection reads one declared before its target:
/// among those ready, the one whose node appears first among the edges. A loop without a
/// `Delay` is broken at the population of the loop that appears first; the connections that
/// then read a population not declared before their target (and a population's connection to
/// itself) read the previous step, snnc's `feedback`, which is what recurrent NIR graphs mean.
fn declaration_order(populations: &[Pop], connections: &[Connection]) -> Vec<usize> {
    let index: BTreeMap<&str, usize> = populations.iter().enumerate().map(|(i, p)| (p.name.as_str(), i)).collect();
    let mut deps: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); populations.len()];
    for c in connections {
        if c.delay > 0 {
            continue;
        }
        if let (Some(src), Some(dst)) = (c.source.population().and_then(|s| index.get(s)), index.get(c.target.as_str()))
            && src != dst
        {
            deps[*dst].insert(*src);
        }
    }
    let mut order = Vec::new();
    let mut done = vec![false; populations.len()];
    while order.len() < populations.len() {
        let pending = || (0..populations.len()).filter(|i| !done[*i]);
        let ready = pending().filter(|i| deps[*i].iter().all(|d| done[*d])).min_by_key(|i| (populations[*i].first, *i));
        // Nothing ready: a loop; it starts at its first-appearing population.
        if let Some(i) = ready.or_else(|| pending().min_by_key(|i| (populations[*i].first, *i))) {
            done[i] = true;
            order.push(i);
        }
    }
    order
}

/// Whether connection `c` reads a population not declared before its target (itself
/// included) without a delay: it needs `feedback`.
fn needs_feedback(c: &Connection, position: &BTreeMap<&str, usize>) -> bool {
    let source = c.source.population().and_then(|s| position.get(s));
    let target = position.get(c.target.as_str());
    c.delay == 0 && matches!((source, target), (Some(s), Some(t)) if s >= t)
}
