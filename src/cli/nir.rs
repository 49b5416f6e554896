//! `snnc export --nir` and `snnc import`: the files around [`crate::nir`].

use std::path::{Path, PathBuf};

use crate::exec::state::{Params, init_params};
use crate::nir::{self, NirError};

/// Renders a checked model's errors, or returns its module.
fn lowered(file: &Path) -> Result<(crate::ir::Module, super::driver::Checked), String> {
    let mut checked = super::driver::check_path(file)?;
    if checked.has_errors() {
        return Err(format!("{} does not check:\n{}", file.display(), super::driver::render_all(&checked.diagnostics, 100)));
    }
    let module = checked.outcome.module.take().ok_or_else(|| format!("{} has no network to export", file.display()))?;
    Ok((module, checked))
}

/// The text after the first `separator` in `span` of `text`, trimmed: an input's encoder
/// call after its `=`, a connection's specification after its `:`.
fn after(text: &str, span: crate::front::ast::Span, separator: char) -> Option<String> {
    // The declaration without the doc comments its span may start with.
    let declared: String =
        text.get(span.start..span.end)?.lines().filter(|line| !line.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let (_, rest) = declared.split_once(separator)?;
    let rest = rest.trim();
    (!rest.is_empty() && !rest.contains('\n')).then(|| rest.to_string())
}

/// The parameters a model exports with: a checkpoint's, or the model's initial values drawn
/// with its train block's seed (0 without one).
fn export_params(module: &crate::ir::Module, checkpoint: Option<&Path>) -> Result<Params<f64>, String> {
    let seed = module.train.as_ref().map_or(0, |t| t.seed);
    let mut params = init_params::<f64>(module, seed);
    if let Some(path) = checkpoint {
        super::driver::load_checkpoint(path, module, &mut params)?;
    }
    Ok(params)
}

/// The graph of a model file: what `snnc export --nir` writes.
pub fn export_graph(file: &Path, checkpoint: Option<&Path>, dt: Option<f64>) -> Result<nir::Graph, String> {
    let (module, checked) = lowered(file)?;
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let map = &checked.outcome.source_map;
    let hints = nir::export::Hints {
        encoders: map.inputs.iter().map(|span| after(&text, *span, '=')).collect(),
        connections: map.projections.iter().map(|span| after(&text, *span, ':')).collect(),
    };
    let params = export_params(&module, checkpoint)?;
    nir::export::export(&module, &params, dt.unwrap_or(module.dt), &hints).map_err(|e| e.to_string())
}

/// `snnc export --nir OUT FILE`: writes the graph, returns what to print.
pub fn export(file: &Path, out: &Path, checkpoint: Option<&Path>, dt: Option<f64>) -> Result<String, String> {
    let graph = export_graph(file, checkpoint, dt)?;
    let bytes = nir::hdf5::write(&graph).map_err(|e| e.to_string())?;
    super::driver::write_atomically(out, &bytes).map_err(|error| super::driver::write_failure(out, &error))?;
    Ok(format!("wrote {} ({} nodes, {} edges)", out.display(), graph.nodes.len(), graph.edges.len()))
}

/// Reads a NIR file into its graph.
pub fn read_graph(path: &Path) -> Result<nir::Graph, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    nir::hdf5::read(&bytes).map_err(|e: NirError| format!("{}: {e}", path.display()))
}

/// What `snnc import` made of a NIR file: the model's text, and its checkpoint when it has
/// weights.
pub struct ImportedFiles {
    pub text: String,
    /// The parameters of the model with the graph's weights in place.
    pub module: crate::ir::Module,
    pub params: Params<f64>,
}

/// Imports a NIR file: the `.snn` text, checked, and its parameters with the graph's weights.
pub fn import_file(path: &Path, dt: Option<f64>) -> Result<ImportedFiles, String> {
    let graph = read_graph(path)?;
    let imported = nir::import::import(&graph, dt).map_err(|e| format!("{}: {e}", path.display()))?;
    let checked = super::driver::check_text("imported.snn", &imported.text, None);
    if checked.has_errors() {
        return Err(format!(
            "snn::internal::nir_import: the model imported from {} does not check (a bug in snnc):\n{}\n{}",
            path.display(),
            super::driver::render_all(&checked.diagnostics, 100),
            imported.text
        ));
    }
    let module = checked.outcome.module.ok_or("the imported model has no network")?;
    let mut params = init_params::<f64>(&module, 0);
    for (index, weights) in imported.weights.iter().enumerate() {
        let Some(weights) = weights else { continue };
        let slot = params.weights.get_mut(index).ok_or("the imported model has fewer connections than the graph")?;
        if slot.len() != weights.len() {
            return Err(format!(
                "snn::internal::nir_import: connection {index} holds {} weights, the graph gives {}",
                slot.len(),
                weights.len()
            ));
        }
        slot.clone_from(weights);
    }
    for (population, param, values) in &imported.neuron_values {
        let p = module.populations.iter().position(|pop| pop.name == *population);
        let v = p.and_then(|p| module.populations[p].var_by_name(param));
        let slot = p.zip(v).and_then(|(p, v)| params.neuron_params.get_mut(p)?.get_mut(v.0 as usize));
        match slot {
            Some(slot) if slot.len() == values.len() => slot.clone_from(values),
            _ => return Err(format!("snn::internal::nir_import: `{population}.{param}` does not take {} values", values.len())),
        }
    }
    Ok(ImportedFiles { text: imported.text, module, params })
}

/// `snnc import FILE [--out DIR]`: with `--out`, writes `<name>.snn` and
/// `checkpoint.safetensors` there and returns what to print; without, returns the model text.
pub fn import(path: &Path, dt: Option<f64>, out: Option<&Path>) -> Result<(String, Option<String>), String> {
    let files = import_file(path, dt)?;
    let Some(dir) = out else {
        if files.params.weights.iter().any(|w| !w.is_empty()) {
            eprintln!("note: the graph's weights are not in the model's text; `--out DIR` writes them as DIR/checkpoint.safetensors");
        }
        return Ok((files.text, None));
    };
    let stem = path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let model: PathBuf = dir.join(format!("{stem}.snn"));
    super::driver::write_atomically(&model, files.text.as_bytes()).map_err(|error| super::driver::write_failure(&model, &error))?;
    let checkpoint = dir.join("checkpoint.safetensors");
    super::driver::save_checkpoint(&checkpoint, &files.module, &files.params, &model.display().to_string())?;
    Ok((String::new(), Some(format!("wrote {} and {}", model.display(), checkpoint.display()))))
}
