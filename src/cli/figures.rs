//! Images a run writes beside its metrics: the learned input weights of every neuron of a
//! plastic connection from a square input (MNIST's 28 x 28), as a grid of receptive fields,
//! the values of persistent states (Diehl & Cook's adaptive thresholds) as CSV, the
//! generative check's decoded images (`snnc generate`), and an auto-encoder's reconstructions
//! with every layer's spike raster.

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

/// Square images in a grid, `cells[row][column]`, each scaled from its own minimum (black) to
/// its maximum (white), `zoom` pixels per value, with a two-pixel border. None when an image is
/// not square.
pub fn image_grid(cells: &[Vec<Vec<f64>>], zoom: usize) -> Option<Gray> {
    let rows = cells.len();
    let columns = cells.iter().map(Vec::len).max().unwrap_or(0);
    let n = cells.first()?.first()?.len();
    let side = (n as f64).sqrt().round() as usize;
    if side * side != n || side == 0 || zoom == 0 || cells.iter().flatten().any(|c| c.len() != n) {
        return None;
    }
    let tile = side * zoom + 2;
    let (width, height) = (columns * tile + 2, rows * tile + 2);
    let mut pixels = vec![96u8; width * height];
    for (r, row) in cells.iter().enumerate() {
        for (c, image) in row.iter().enumerate() {
            let lo = image.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = image.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let scale = if hi > lo { 255.0 / (hi - lo) } else { 0.0 };
            for (i, v) in image.iter().enumerate() {
                let value = ((v - lo) * scale).round().clamp(0.0, 255.0) as u8;
                let (x0, y0) = (c * tile + 2 + (i % side) * zoom, r * tile + 2 + (i / side) * zoom);
                for dy in 0..zoom {
                    let start = (y0 + dy) * width + x0;
                    pixels[start..start + zoom].fill(value);
                }
            }
        }
    }
    Some(Gray { width, height, pixels })
}

/// Writes `generate.png` (a row per class: the class's mean test image, then the image decoded
/// from each layer while the class is clamped) when the input is a square image, and
/// `generate.csv` (`layer,class,clamped_rate,decoder_r2,similarity_0..`: the correlation of the
/// class's clamped rates with each class's mean normal rates). Returns the names written.
pub fn write_generated(out: &Path, generated: &crate::train::generate::Generated) -> Result<Vec<String>, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut written = Vec::new();
    let cells: Vec<Vec<Vec<f64>>> = generated
        .class_means
        .iter()
        .zip(&generated.decoded)
        .map(|(mean, layers)| std::iter::once(mean.clone()).chain(layers.iter().cloned()).collect())
        .collect();
    if let Some(image) = image_grid(&cells, 2) {
        let path = out.join("generate.png");
        crate::cli::driver::write_atomically(&path, &image.png()?).map_err(|e| crate::cli::driver::write_failure(&path, &e))?;
        written.push("generate.png".to_string());
    }
    let classes = generated.decoded.len();
    let mut csv = String::from("layer,class,clamped_rate,decoder_r2");
    for j in 0..classes {
        csv.push_str(&format!(",similarity_{j}"));
    }
    csv.push('\n');
    for (l, layer) in generated.layers.iter().enumerate() {
        for c in 0..classes {
            csv.push_str(&format!("{layer},{c},{},{}", generated.clamped_rate[c][l], generated.decoder_r2[l]));
            for s in &generated.similarity[l][c] {
                csv.push_str(&format!(",{s}"));
            }
            csv.push('\n');
        }
    }
    let path = out.join("generate.csv");
    crate::cli::driver::write_atomically(&path, csv.as_bytes()).map_err(|e| crate::cli::driver::write_failure(&path, &e))?;
    written.push("generate.csv".to_string());
    Ok(written)
}

/// A spike raster: one column per step, one row per neuron, white where it fired.
pub fn raster(steps: &[Vec<usize>], neurons: usize) -> Option<Gray> {
    if steps.is_empty() || neurons == 0 {
        return None;
    }
    let (width, height) = (steps.len(), neurons);
    let mut pixels = vec![0u8; width * height];
    for (t, fired) in steps.iter().enumerate() {
        for &j in fired.iter().filter(|j| **j < neurons) {
            pixels[j * width + t] = 255;
        }
    }
    Some(Gray { width, height, pixels })
}

/// Writes `reconstructions.png` (the test images in the first row, their reconstructions in
/// the second, each scaled to its own range) and `raster_<population>.png` for the first
/// image. Returns the names written.
pub fn write_showcase(out: &Path, showcase: &crate::train::metrics::Showcase) -> Result<Vec<String>, String> {
    let mut written = Vec::new();
    let mut write = |name: String, image: Gray| -> Result<(), String> {
        let path = out.join(&name);
        crate::cli::driver::write_atomically(&path, &image.png()?).map_err(|e| crate::cli::driver::write_failure(&path, &e))?;
        written.push(name);
        Ok(())
    };
    if let Some(grid) = image_grid(&[showcase.inputs.clone(), showcase.reconstructions.clone()], 3) {
        write("reconstructions.png".to_string(), grid)?;
    }
    for (name, neurons, steps) in &showcase.rasters {
        if let Some(image) = raster(steps, *neurons) {
            write(format!("raster_{name}.png"), image)?;
        }
    }
    Ok(written)
}
