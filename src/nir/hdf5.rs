//! The NIR 1.0 file layout through `hdf5-pure`, on bytes: a scalar string dataset `version` at
//! the root and a group `node`, the top graph. Every node is a group with a scalar string
//! dataset `type` and one dataset per parameter; a graph node (`type = "NIRGraph"`) has a group
//! `nodes` with one group per node and `edges`, an N x 2 array of variable-length strings
//! (source, target). A `metadata` group holds free key-value pairs. There are no attributes.

use hdf5_pure::{DType, File, FileBuilder};

use super::{Array, BAD_LAYOUT, Graph, NOT_HDF5, NirError, Node, Value};

/// The NIR version snnc writes (the layout of the Python `nir` package 1.0).
pub const VERSION: &str = "1.0.8";

fn layout(message: impl Into<String>) -> NirError {
    NirError::new(BAD_LAYOUT, message, "the file must be a NIR graph as `nir.write` (Python `nir` 1.0) writes it")
}

/// Reads a NIR file's bytes into its top graph.
pub fn read(bytes: &[u8]) -> Result<Graph, NirError> {
    if !hdf5_pure::is_hdf5_bytes(bytes) {
        let shown: String = bytes.iter().take(8).map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(" ");
        return Err(NirError::new(
            NOT_HDF5,
            format!("not an HDF5 file: it does not start with the HDF5 signature (first bytes: {shown})"),
            "NIR graphs are HDF5 files (`nir.write` in Python, `snnc export --nir`); check the path",
        ));
    }
    let file = File::from_bytes(bytes.to_vec()).map_err(|e| {
        NirError::new(NOT_HDF5, format!("the HDF5 file does not parse: {e}"), "the file may be truncated or damaged; write it again")
    })?;
    let root = file.root();
    let node = root.group("node").map_err(|_| layout("the file has no group `node` (the top graph)"))?;
    match read_node(&node, "node", 0)? {
        Node { graph: Some(graph), .. } => Ok(*graph),
        other => Err(layout(format!("the top node `node` is a `{}`, not a `NIRGraph`", other.kind))),
    }
}

/// The NIR version a file states, if it has a readable `version`.
pub fn version(bytes: &[u8]) -> Option<String> {
    let file = File::from_bytes(bytes.to_vec()).ok()?;
    let ds = file.dataset("version").ok()?;
    ds.read_string().ok()?.into_iter().next()
}

fn read_value(ds: &hdf5_pure::Dataset, path: &str) -> Result<Value, NirError> {
    let unreadable = |e: hdf5_pure::Error| layout(format!("dataset `{path}` cannot be read: {e}"));
    let dtype = ds.dtype().map_err(unreadable)?;
    match dtype {
        DType::String | DType::VariableLengthString => {
            let strings = ds.read_string().map_err(unreadable)?;
            Ok(Value::Text(strings.into_iter().next().unwrap_or_default()))
        }
        DType::F32 | DType::F64 | DType::I8 | DType::I16 | DType::I32 | DType::I64 | DType::U8 | DType::U16 | DType::U32 | DType::U64 => {
            let shape: Vec<usize> = ds.shape().map_err(unreadable)?.into_iter().map(|d| d as usize).collect();
            let data = ds.read_f64().map_err(unreadable)?;
            if data.len() != shape.iter().product::<usize>() {
                return Err(layout(format!("dataset `{path}` holds {} values for the shape {shape:?}", data.len())));
            }
            Ok(Value::Array(Array { shape, data }))
        }
        other => Err(layout(format!("dataset `{path}` has the type {other}, neither numbers nor a string"))),
    }
}

fn read_map(group: &hdf5_pure::Group, path: &str, depth: usize) -> Result<std::collections::BTreeMap<String, Value>, NirError> {
    let mut map = std::collections::BTreeMap::new();
    let listing = |e: hdf5_pure::Error| layout(format!("group `{path}` cannot be listed: {e}"));
    for name in group.datasets().map_err(listing)? {
        let ds = group.dataset(&name).map_err(|e| layout(format!("`{path}/{name}` cannot be opened: {e}")))?;
        map.insert(name.clone(), read_value(&ds, &format!("{path}/{name}"))?);
    }
    // Nested metadata dictionaries are flattened to `outer.inner`.
    if depth < 8 {
        for name in group.groups().map_err(listing)? {
            let sub = group.group(&name).map_err(|e| layout(format!("`{path}/{name}` cannot be opened: {e}")))?;
            for (key, value) in read_map(&sub, &format!("{path}/{name}"), depth + 1)? {
                map.insert(format!("{name}.{key}"), value);
            }
        }
    }
    Ok(map)
}

fn read_node(group: &hdf5_pure::Group, path: &str, depth: usize) -> Result<Node, NirError> {
    if depth > 16 {
        return Err(layout(format!("`{path}`: graphs nest more than 16 deep")));
    }
    let listing = |e: hdf5_pure::Error| layout(format!("group `{path}` cannot be listed: {e}"));
    let datasets = group.datasets().map_err(listing)?;
    let groups = group.groups().map_err(listing)?;
    if !datasets.iter().any(|d| d == "type") {
        return Err(layout(format!("node `{path}` has no dataset `type`")));
    }
    let mut node = Node::default();
    for name in &datasets {
        let ds = group.dataset(name).map_err(|e| layout(format!("`{path}/{name}` cannot be opened: {e}")))?;
        let value = read_value(&ds, &format!("{path}/{name}"))?;
        match (name.as_str(), value) {
            ("type", Value::Text(kind)) => node.kind = kind,
            ("type", Value::Array(_)) => return Err(layout(format!("`{path}/type` is not a string"))),
            (_, value) => {
                node.params.insert(name.clone(), value);
            }
        }
    }
    if groups.iter().any(|g| g == "metadata") {
        let meta = group.group("metadata").map_err(|e| layout(format!("`{path}/metadata` cannot be opened: {e}")))?;
        node.metadata = read_map(&meta, &format!("{path}/metadata"), 0)?;
    }
    if node.kind == "NIRGraph" {
        let nodes_group = group.group("nodes").map_err(|_| layout(format!("graph `{path}` has no group `nodes`")))?;
        let mut graph = Graph { metadata: std::mem::take(&mut node.metadata), ..Graph::default() };
        for name in nodes_group.groups().map_err(listing)? {
            let sub = nodes_group.group(&name).map_err(|e| layout(format!("`{path}/nodes/{name}` cannot be opened: {e}")))?;
            let child = read_node(&sub, &format!("{path}/nodes/{name}"), depth + 1)?;
            graph.nodes.insert(name, child);
        }
        node.params.remove("edges");
        if datasets.iter().any(|d| d == "edges") {
            let ds = group.dataset("edges").map_err(|e| layout(format!("`{path}/edges` cannot be opened: {e}")))?;
            let shape = ds.shape().map_err(|e| layout(format!("`{path}/edges`: {e}")))?;
            let strings = ds.read_string().map_err(|e| layout(format!("`{path}/edges` is not an array of strings: {e}")))?;
            if !(shape.len() == 2 && shape[1] == 2 || strings.is_empty()) || strings.len() % 2 != 0 {
                return Err(layout(format!("`{path}/edges` has the shape {shape:?}, not N x 2")));
            }
            graph.edges = strings.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect();
        }
        node.graph = Some(Box::new(graph));
    }
    Ok(node)
}

fn write_text(builder: &mut hdf5_pure::DatasetBuilder, text: &str) {
    builder.with_vlen_strings(&[text]).with_shape(&[]);
}

/// Whether a parameter of a node type is written as integers (int64), as `nir` writes it.
pub fn integer_param(kind: &str, name: &str) -> bool {
    matches!(
        (kind, name),
        ("Input" | "Output", "shape")
            | ("Conv1d" | "Conv2d", "stride" | "padding" | "dilation" | "groups" | "input_shape")
            | ("SumPool2d" | "AvgPool2d", "kernel_size" | "stride" | "padding")
            | ("Flatten", "start_dim" | "end_dim" | "input_type")
    ) || name.starts_with("snnc_steps")
}

fn write_params(group: &mut hdf5_pure::GroupBuilder, kind: &str, params: &std::collections::BTreeMap<String, Value>) {
    for (name, value) in params {
        let builder = group.create_dataset(name);
        match value {
            Value::Array(array) if integer_param(kind, name) => {
                let ints: Vec<i64> = array.data.iter().map(|v| *v as i64).collect();
                let shape: Vec<u64> = array.shape.iter().map(|d| *d as u64).collect();
                builder.with_i64_data(&ints).with_shape(&shape);
            }
            Value::Array(array) => {
                let shape: Vec<u64> = array.shape.iter().map(|d| *d as u64).collect();
                builder.with_f64_data(&array.data).with_shape(&shape);
            }
            Value::Text(text) => write_text(builder, text),
        }
    }
}

fn write_node(mut group: hdf5_pure::GroupBuilder, node: &Node) -> hdf5_pure::FinishedGroup {
    group.create_dataset("type").with_vlen_strings(&[node.kind.as_str()]).with_shape(&[]);
    write_params(&mut group, &node.kind, &node.params);
    let metadata = node.graph.as_ref().map_or(&node.metadata, |g| &g.metadata);
    if !metadata.is_empty() {
        let mut meta = group.create_group("metadata");
        write_params(&mut meta, "metadata", metadata);
        group.add_group(meta.finish());
    }
    if let Some(graph) = &node.graph {
        let mut nodes = group.create_group("nodes");
        for (child_name, child) in &graph.nodes {
            let child_group = nodes.create_group(child_name);
            nodes.add_group(write_node(child_group, child));
        }
        group.add_group(nodes.finish());
        let flat: Vec<&str> = graph.edges.iter().flat_map(|(a, b)| [a.as_str(), b.as_str()]).collect();
        group.create_dataset("edges").with_vlen_strings(&flat).with_shape(&[graph.edges.len() as u64, 2]);
    }
    group.finish()
}

/// Writes a graph as a NIR file's bytes.
pub fn write(graph: &Graph) -> Result<Vec<u8>, NirError> {
    let mut builder = FileBuilder::new();
    builder.create_dataset("version").with_vlen_strings(&[VERSION]).with_shape(&[]);
    let top = Node { kind: "NIRGraph".to_string(), graph: Some(Box::new(graph.clone())), ..Node::default() };
    let group = builder.create_group("node");
    builder.add_group(write_node(group, &top));
    builder.finish().map_err(|e| {
        NirError::new(super::UNSUPPORTED, format!("the graph cannot be written as HDF5: {e}"), "report this: it is a bug in snnc")
    })
}
