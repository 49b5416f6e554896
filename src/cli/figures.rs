//! Images a run writes beside its metrics: the learned input weights of every neuron of a
//! plastic connection from a square input (MNIST's 28 x 28), as a grid of receptive fields,
//! and the values of persistent states (Diehl & Cook's adaptive thresholds) as CSV.

use std::path::Path;

use crate::exec::real::Real;
use crate::exec::state::Params;
use crate::ir::{Module, Source, VarKind};

/// A grayscale image, row-major, one byte per pixel.
pub struct Gray {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Gray {
    /// PNG bytes of the image.
    pub fn png(&self) -> Result<Vec<u8>, String> {
        let mut bytes = Vec::new();
        let mut encoder = png::Encoder::new(&mut bytes, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Grayscale);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(|e| e.to_string())?;
        writer.write_image_data(&self.pixels).map_err(|e| e.to_string())?;
        writer.finish().map_err(|e| e.to_string())?;
        Ok(bytes)
    }
}

/// The receptive fields of a dense `n_pre x n_post` weight matrix whose `n_pre` inputs form a
/// `side x side` image: one tile per postsynaptic neuron (its weight column), tiles in a square
/// grid with a one-pixel border, each scaled from 0 to the largest weight of the matrix (white:
/// strong). None when the input is not square.
pub fn receptive_fields(weights: &[f64], n_pre: usize, n_post: usize) -> Option<Gray> {
    let side = (n_pre as f64).sqrt().round() as usize;
    if side * side != n_pre || n_post == 0 || weights.len() != n_pre * n_post {
        return None;
    }
    let columns = (n_post as f64).sqrt().ceil() as usize;
    let rows = n_post.div_ceil(columns);
    let tile = side + 1;
    let (width, height) = (columns * tile + 1, rows * tile + 1);
    let max = weights.iter().copied().fold(0.0f64, f64::max);
    let scale = if max > 0.0 { 255.0 / max } else { 0.0 };
    let mut pixels = vec![64u8; width * height];
    for j in 0..n_post {
        let (gx, gy) = ((j % columns) * tile + 1, (j / columns) * tile + 1);
        for i in 0..n_pre {
            let (x, y) = (gx + i % side, gy + i / side);
            pixels[y * width + x] = (weights[i * n_post + j].max(0.0) * scale).round().min(255.0) as u8;
        }
    }
    Some(Gray { width, height, pixels })
}

/// Writes `receptive_fields_<input>_<population>.png` for every plastic connection from a
/// square input, and `persistent_states.csv` (`population,variable,neuron,value`) when the model
/// has persistent states. Returns the paths written.
pub fn write_learned<F: Real>(out: &Path, module: &Module, params: &Params<F>) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.synapse.is_none() || !matches!(proj.source, Source::Input(_)) {
            continue;
        }
        let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
        let weights: Vec<f64> = params.weights[index].iter().map(|w| w.into_f64()).collect();
        let Some(image) = receptive_fields(&weights, n_pre, n_post) else { continue };
        let name = format!("receptive_fields_{}_{}.png", module.source_name(&proj.source), module.population(proj.target).name);
        let path = out.join(&name);
        crate::cli::driver::write_atomically(&path, &image.png()?).map_err(|e| crate::cli::driver::write_failure(&path, &e))?;
        written.push(name);
    }
    let mut csv = String::from("population,variable,neuron,value\n");
    let mut any = false;
    for (p, pop) in module.populations.iter().enumerate() {
        for (v, var) in pop.vars.iter().enumerate() {
            if matches!(var.kind, VarKind::State { persistent: true, .. }) {
                any = true;
                for (k, value) in params.neuron_params[p][v].iter().enumerate() {
                    csv.push_str(&format!("{},{},{k},{}\n", pop.name, var.name, value.into_f64()));
                }
            }
        }
    }
    if any {
        let path = out.join("persistent_states.csv");
        crate::cli::driver::write_atomically(&path, csv.as_bytes()).map_err(|e| crate::cli::driver::write_failure(&path, &e))?;
        written.push("persistent_states.csv".to_string());
    }
    Ok(written)
}
