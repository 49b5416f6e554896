//! NIR, the Neuromorphic Intermediate Representation (neuromorphs/NIR 1.0): a graph of
//! continuous-time nodes (neurons, linear maps, convolutions, pools) that snnc exports to and
//! imports from.
//!
//! - [`Graph`]: the graph as the file holds it, nodes with typed parameters and edges;
//! - [`hdf5`]: the on-disk layout, bytes to a graph and back (pure: no file is touched here);
//! - [`export`]: a lowered module with its weights to a graph;
//! - [`import`]: a graph to `.snn` text and the tensors of a checkpoint.
//!
//! NIR stores no step: both directions take `dt`, and the mapping of time constants to the
//! discrete updates is forward Euler (docs/language.md, "NIR").

pub mod export;
pub mod hdf5;
pub mod import;

use std::collections::BTreeMap;
use std::fmt;

/// A numeric parameter: its shape (empty for a scalar) and values in row-major order.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

impl Array {
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Array {
        Array { shape, data }
    }

    pub fn scalar(value: f64) -> Array {
        Array { shape: Vec::new(), data: vec![value] }
    }

    /// `value` in every element of an array of `shape`.
    pub fn full(shape: &[usize], value: f64) -> Array {
        Array { shape: shape.to_vec(), data: vec![value; shape.iter().product()] }
    }

    /// The value every element holds, if they all hold the same one.
    pub fn uniform(&self) -> Option<f64> {
        let first = *self.data.first()?;
        self.data.iter().all(|v| *v == first || (v.is_nan() && first.is_nan())).then_some(first)
    }
}

/// A parameter of a node: numbers or text.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Array(Array),
    Text(String),
}

/// One node: its NIR type (`LIF`, `Affine`, ...), its parameters by name, its metadata (free
/// key-value pairs; snnc keeps the source text of encoders and connections there) and, for a
/// `NIRGraph` node, the subgraph.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Node {
    pub kind: String,
    pub params: BTreeMap<String, Value>,
    pub metadata: BTreeMap<String, Value>,
    pub graph: Option<Box<Graph>>,
}

impl Node {
    pub fn new(kind: &str) -> Node {
        Node { kind: kind.to_string(), ..Node::default() }
    }

    pub fn with(mut self, name: &str, array: Array) -> Node {
        self.params.insert(name.to_string(), Value::Array(array));
        self
    }

    pub fn array(&self, name: &str) -> Option<&Array> {
        match self.params.get(name) {
            Some(Value::Array(array)) => Some(array),
            _ => None,
        }
    }

    pub fn meta_text(&self, name: &str) -> Option<&str> {
        match self.metadata.get(name) {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }
}

/// A graph: named nodes and the edges between them, `(source, target)`, in file order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Graph {
    pub nodes: BTreeMap<String, Node>,
    pub edges: Vec<(String, String)>,
    pub metadata: BTreeMap<String, Value>,
}

impl Graph {
    pub fn meta_number(&self, name: &str) -> Option<f64> {
        match self.metadata.get(name) {
            Some(Value::Array(array)) => array.data.first().copied(),
            _ => None,
        }
    }

    pub fn meta_text(&self, name: &str) -> Option<&str> {
        match self.metadata.get(name) {
            Some(Value::Text(text)) => Some(text),
            _ => None,
        }
    }
}

/// The node types of NIR 1.0.
pub const NODE_TYPES: [&str; 20] = [
    "NIRGraph",
    "Input",
    "Output",
    "Affine",
    "Linear",
    "Scale",
    "Conv1d",
    "Conv2d",
    "SumPool2d",
    "AvgPool2d",
    "Flatten",
    "Delay",
    "Threshold",
    "I",
    "IF",
    "LI",
    "LIF",
    "CubaLI",
    "CubaLIF",
    "Identity",
];

/// A coded error of NIR export or import (`snn::nir::*`): these come from a NIR file or a
/// model that NIR cannot express, not from a span of `.snn` text, so they carry no label.
#[derive(Clone, Debug, PartialEq)]
pub struct NirError {
    pub code: &'static str,
    pub message: String,
    pub help: String,
}

impl NirError {
    pub fn new(code: &'static str, message: impl Into<String>, help: impl Into<String>) -> NirError {
        NirError { code, message: message.into(), help: help.into() }
    }
}

impl fmt::Display for NirError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}\n  help: {}", self.code, self.message, self.help)
    }
}

impl std::error::Error for NirError {}

/// The file is not HDF5 at all.
pub const NOT_HDF5: &str = "snn::nir::not_hdf5";
/// HDF5, but not laid out as a NIR graph (no `node` group, no `type`, unreadable edges).
pub const BAD_LAYOUT: &str = "snn::nir::bad_layout";
/// A node type that NIR 1.0 does not define.
pub const UNKNOWN_NODE: &str = "snn::nir::unknown_node";
/// An edge naming a node the graph does not have.
pub const DANGLING_EDGE: &str = "snn::nir::dangling_edge";
/// Shapes that do not fit: parameters of one node, or a node and the nodes around it.
pub const SHAPE_MISMATCH: &str = "snn::nir::shape_mismatch";
/// A node without a parameter its type requires.
pub const MISSING_PARAM: &str = "snn::nir::missing_param";
/// Something valid in NIR (import) or in snnc (export) that the other side cannot express.
pub const UNSUPPORTED: &str = "snn::nir::unsupported";
/// Import without a step: the file names none and `--dt` was not given.
pub const NO_DT: &str = "snn::nir::no_dt";

/// Every `snn::nir::` code, for docs/errors.md and the tests.
pub const CODES: [&str; 8] = [NOT_HDF5, BAD_LAYOUT, UNKNOWN_NODE, DANGLING_EDGE, SHAPE_MISMATCH, MISSING_PARAM, UNSUPPORTED, NO_DT];

/// Shortest decimal text of `value` that reads back as the same f64 after rounding it to 15
/// significant digits: `1 - dt / tau` computed from a `tau` written as `dt / (1 - beta)` comes
/// back as `beta` in the last bit or two, and `0.95` reads better than `0.9500000000000001`.
pub fn round_15(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    format!("{value:.14e}").parse().unwrap_or(value)
}
