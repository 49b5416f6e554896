//! The generative check of seeds/000 (`snnc generate`): with no input, hold what the train
//! block's `clamp` statements say for each class in turn (the readout's membrane, as the
//! authors' `clamped_generate` does), run, and decode what every spiking layer does.
//!
//! Decoding follows the seed's figure 6: for each layer a linear decoder (ridge regression
//! with a bias, fitted on test samples run normally) maps the layer's firing rates to the input
//! image; applied to the rates the clamped network produces, it shows the image the layer
//! "imagines" for the class. The seed's figure 5 compares clamped and normal representations
//! per layer: here the correlation of each class's clamped rates with every class's mean
//! normal rates (a diagonal that stands out is class structure).

use std::borrow::Cow;

use crate::data::Dataset;
use crate::exec::engine::{self, Ctx, EngineKind, ParamsAccess, Shard, StepHook};
use crate::exec::real::Real;
use crate::exec::state::{Params, SampleRef, Trace};
use crate::ir::validate::{Valid, validate};
use crate::ir::{EncoderKind, Module, Node};
use crate::train::RunError;
use crate::train::hooks::Clamps;

/// How to run the check.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    /// Test samples the decoders are fitted on.
    pub decoder_samples: usize,
    /// The ridge penalty, relative to the mean diagonal of the rates' Gram matrix.
    pub ridge: f64,
    pub engine: EngineKind,
    /// The seed of the random draws; `None`: the train block's.
    pub seed: Option<u64>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig { decoder_samples: 2000, ridge: 1e-2, engine: EngineKind::Jit, seed: None }
    }
}

/// What the check found, per class and per spiking layer.
#[derive(Clone, Debug)]
pub struct Generated {
    /// The spiking populations decoded, in network order.
    pub layers: Vec<String>,
    /// Pixels of an image (the input's size).
    pub pixels: usize,
    /// Mean test image of each class, from the decoders' samples.
    pub class_means: Vec<Vec<f64>>,
    /// `decoded[class][layer]`: the decoder's image of the clamped rates.
    pub decoded: Vec<Vec<Vec<f64>>>,
    /// `clamped_rate[class][layer]`: mean spikes per neuron per step while clamped.
    pub clamped_rate: Vec<Vec<f64>>,
    /// `similarity[layer][i][j]`: correlation of class `i`'s clamped rates with class `j`'s
    /// mean normal rates.
    pub similarity: Vec<Vec<Vec<f64>>>,
    /// Per layer, the fraction of pixel variance its decoder explains on its samples.
    pub decoder_r2: Vec<f64>,
}

impl Generated {
    /// Per layer, the mean of the similarity matrix's diagonal minus the mean of the rest.
    pub fn class_structure(&self) -> Vec<f64> {
        self.similarity
            .iter()
            .map(|m| {
                let k = m.len();
                let (mut diag, mut off) = (0.0, 0.0);
                for (i, row) in m.iter().enumerate() {
                    for (j, v) in row.iter().enumerate() {
                        if i == j {
                            diag += v;
                        } else {
                            off += v;
                        }
                    }
                }
                if k < 2 { diag } else { diag / k as f64 - off / (k * (k - 1)) as f64 }
            })
            .collect()
    }
}

/// The module with every input silent: each encoder delivers a current of 0.
pub fn silent(module: &Module) -> Module {
    let mut silent = module.clone();
    for input in &mut silent.inputs {
        input.value = input.exprs.push(Node::Const(0.0));
        input.kind = EncoderKind::Current;
    }
    silent
}

/// Runs the generative check of `module` with `params` (see the module doc).
pub fn generate<F: Real>(module: &Valid, data: &Dataset, params: &Params<F>, config: &GenerateConfig) -> Result<Generated, RunError> {
    let train = module.train.as_ref().ok_or(RunError::NoTrainBlock)?;
    if config.decoder_samples == 0 || data.test.is_empty() {
        return Err(RunError::Output("the decoders need test samples: give --samples of at least 1".into()));
    }
    if matches!(data.test.features, crate::data::Features::Events(_)) {
        return Err(RunError::Output("the generative check decodes images, and an event data set (N-MNIST) has none".into()));
    }
    if train.clamps.is_empty() {
        return Err(RunError::Output("the train block clamps nothing: add e.g. `clamp out.u = one_hot(label, on = 1, off = -1)`".into()));
    }
    let evaluated = if module.has_frozen_states() { module.for_evaluation() } else { (**module).clone() };
    let normal = validate(evaluated.clone()).map_err(|e| RunError::Output(e.to_string()))?;
    let quiet = validate(silent(&evaluated)).map_err(|e| RunError::Output(e.to_string()))?;
    let layers: Vec<usize> = (0..normal.populations.len()).filter(|&p| normal.populations[p].threshold.is_some()).collect();
    let net = module.net_values();
    let net_f: Vec<F> = net.iter().map(|x| F::of(*x)).collect();
    let seed = config.seed.unwrap_or(train.seed);
    let classes = data.classes;
    let pixels = data.test.n_features;

    // Rates of the normal network on test samples, and the images they came from.
    let n = config.decoder_samples.min(data.test.len());
    let engine = engine::build::<F>(config.engine, &normal)?;
    let ctx = Ctx { module: &normal, seed, net: &net_f };
    let mut rates: Vec<Vec<Vec<f64>>> = vec![Vec::with_capacity(n); layers.len()];
    let mut images = Vec::with_capacity(n);
    let mut labels = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let features: Vec<Cow<[f32]>> = chunk.iter().map(|&i| data.test.sample(i)).collect();
        let samples: Vec<SampleRef> = chunk
            .iter()
            .zip(&features)
            .map(|(&i, f)| SampleRef { id: crate::train::metrics::TEST_ID_OFFSET + i as u64, features: f })
            .collect();
        let trace = engine.forward(&ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, None);
        for (l, &p) in layers.iter().enumerate() {
            rates[l].extend((0..samples.len()).map(|b| sample_rates(&trace, p, b)));
        }
        trace.recycle();
        images.extend(features.iter().map(|f| f.iter().map(|x| f64::from(*x)).collect::<Vec<f64>>()));
        labels.extend(chunk.iter().map(|&i| usize::from(data.test.labels[i])));
    }
    let decoders: Vec<Decoder> = rates.iter().map(|x| Decoder::fit(x, &images, config.ridge)).collect();

    // The clamped network: one sample per class, `label` = the class.
    let zeros = vec![0.0f32; pixels];
    let labelled: Vec<(usize, &[f32])> = (0..classes).map(|c| (c, zeros.as_slice())).collect();
    let mut clamps = Clamps::of(&quiet, train, params, &labelled, &net)?;
    let engine = engine::build::<F>(config.engine, &quiet)?;
    let ctx = Ctx { module: &quiet, seed, net: &net_f };
    let samples: Vec<SampleRef> = (0..classes).map(|c| SampleRef { id: c as u64, features: &zeros }).collect();
    let hook: &mut dyn StepHook<F> = &mut clamps;
    let trace = engine.forward(&ctx, ParamsAccess::Shared(params), Shard { samples: &samples, hoisted: None }, Some(hook));
    let clamped: Vec<Vec<Vec<f64>>> = (0..classes).map(|c| layers.iter().map(|&p| sample_rates(&trace, p, c)).collect()).collect();
    trace.recycle();

    let decoded = clamped.iter().map(|per_layer| per_layer.iter().zip(&decoders).map(|(r, d)| d.apply(r)).collect()).collect();
    let clamped_rate = clamped.iter().map(|per_layer| per_layer.iter().map(|r| mean(r)).collect()).collect();
    let image_means = class_means(&images, &labels, classes, pixels);
    let similarity = (0..layers.len())
        .map(|l| {
            let normal_means = class_means(&rates[l], &labels, classes, rates[l].first().map_or(0, Vec::len));
            (0..classes).map(|i| (0..classes).map(|j| correlation(&clamped[i][l], &normal_means[j])).collect()).collect()
        })
        .collect();
    Ok(Generated {
        layers: layers.iter().map(|&p| normal.populations[p].name.clone()).collect(),
        pixels,
        class_means: image_means,
        decoded,
        clamped_rate,
        similarity,
        decoder_r2: decoders.iter().map(|d| d.r2).collect(),
    })
}

/// Spikes per neuron per step of sample `b` of population `p`.
fn sample_rates<F: Real>(trace: &Trace<F>, p: usize, b: usize) -> Vec<f64> {
    let n = trace.sizes[p];
    let r = trace.row(p);
    let mut counts = vec![0.0; n];
    for t in 0..trace.steps {
        trace.spikes[p].for_each_set(t * r + b * n..t * r + (b + 1) * n, |i| counts[i] += 1.0);
    }
    let steps = trace.steps.max(1) as f64;
    counts.iter_mut().for_each(|c| *c /= steps);
    counts
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { x.iter().sum::<f64>() / x.len() as f64 }
}

/// Pearson correlation; 0 when either side is constant.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (ma, mb) = (mean(a), mean(b));
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += (x - ma) * (y - mb);
        aa += (x - ma) * (x - ma);
        bb += (y - mb) * (y - mb);
    }
    if aa <= 0.0 || bb <= 0.0 { 0.0 } else { ab / (aa * bb).sqrt() }
}

/// The mean of the rows of each class.
fn class_means(rows: &[Vec<f64>], labels: &[usize], classes: usize, width: usize) -> Vec<Vec<f64>> {
    let mut sums = vec![vec![0.0; width]; classes];
    let mut counts = vec![0usize; classes];
    for (row, &label) in rows.iter().zip(labels) {
        if label < classes {
            counts[label] += 1;
            sums[label].iter_mut().zip(row).for_each(|(s, x)| *s += x);
        }
    }
    for (sum, count) in sums.iter_mut().zip(counts) {
        sum.iter_mut().for_each(|s| *s /= count.max(1) as f64);
    }
    sums
}

/// A linear map with a bias from rates to pixels: `y = [x, 1] W`.
#[derive(Clone, Debug)]
pub struct Decoder {
    /// `(inputs + 1) x outputs`, row-major; the last row is the bias.
    pub weights: Vec<f64>,
    pub inputs: usize,
    pub outputs: usize,
    /// The fraction of the targets' variance explained on the fitting samples.
    pub r2: f64,
}

impl Decoder {
    /// Ridge regression of `targets` on `inputs` (one row per sample) with a bias that is not
    /// penalised: `W = (XᵀX + λI)⁻¹ XᵀY`, λ = `ridge` times the mean diagonal of `XᵀX`.
    pub fn fit(inputs: &[Vec<f64>], targets: &[Vec<f64>], ridge: f64) -> Decoder {
        let n = inputs.first().map_or(0, Vec::len);
        let outputs = targets.first().map_or(0, Vec::len);
        let d = n + 1;
        let mut gram = vec![0.0; d * d];
        let mut cross = vec![0.0; d * outputs];
        let mut row = vec![0.0; d];
        for (x, y) in inputs.iter().zip(targets) {
            row[..n].copy_from_slice(x);
            row[n] = 1.0;
            for (i, &xi) in row.iter().enumerate() {
                if xi == 0.0 {
                    continue;
                }
                gram[i * d..(i + 1) * d].iter_mut().zip(&row).for_each(|(g, xj)| *g += xi * xj);
                cross[i * outputs..(i + 1) * outputs].iter_mut().zip(y).for_each(|(c, yj)| *c += xi * yj);
            }
        }
        let scale = (0..n).map(|i| gram[i * d + i]).sum::<f64>() / n.max(1) as f64;
        let lambda = ridge * if scale > 0.0 { scale } else { 1.0 };
        for i in 0..d {
            gram[i * d + i] += if i < n { lambda } else { 1e-12 };
        }
        let weights = solve_spd(&mut gram, d, &cross, outputs);
        let mut decoder = Decoder { weights, inputs: n, outputs, r2: 0.0 };
        let means: Vec<f64> = (0..outputs).map(|j| targets.iter().map(|y| y[j]).sum::<f64>() / targets.len().max(1) as f64).collect();
        let (mut residual, mut total) = (0.0, 0.0);
        for (x, y) in inputs.iter().zip(targets) {
            for ((p, t), m) in decoder.apply(x).iter().zip(y).zip(&means) {
                residual += (p - t) * (p - t);
                total += (t - m) * (t - m);
            }
        }
        decoder.r2 = if total > 0.0 { 1.0 - residual / total } else { 0.0 };
        decoder
    }

    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut y = self.weights[self.inputs * self.outputs..].to_vec();
        for (i, xi) in x.iter().enumerate().take(self.inputs) {
            if *xi != 0.0 {
                y.iter_mut().zip(&self.weights[i * self.outputs..(i + 1) * self.outputs]).for_each(|(a, w)| *a += xi * w);
            }
        }
        y
    }
}

/// Solves `A X = B` for a symmetric positive-definite `d x d` matrix `A` (overwritten by its
/// Cholesky factor) and `d x m` right-hand sides.
fn solve_spd(a: &mut [f64], d: usize, b: &[f64], m: usize) -> Vec<f64> {
    for j in 0..d {
        let mut diag = a[j * d + j];
        for k in 0..j {
            diag -= a[j * d + k] * a[j * d + k];
        }
        let diag = diag.max(1e-300).sqrt();
        a[j * d + j] = diag;
        for i in j + 1..d {
            let mut v = a[i * d + j];
            for k in 0..j {
                v -= a[i * d + k] * a[j * d + k];
            }
            a[i * d + j] = v / diag;
        }
    }
    let mut x = b.to_vec();
    // L Y = B, then Lᵀ X = Y, column block by column block.
    for i in 0..d {
        for k in 0..i {
            let l = a[i * d + k];
            if l != 0.0 {
                let (done, rest) = x.split_at_mut(i * m);
                rest[..m].iter_mut().zip(&done[k * m..(k + 1) * m]).for_each(|(xi, xk)| *xi -= l * xk);
            }
        }
        let diag = a[i * d + i];
        x[i * m..(i + 1) * m].iter_mut().for_each(|v| *v /= diag);
    }
    for i in (0..d).rev() {
        for k in i + 1..d {
            let l = a[k * d + i];
            if l != 0.0 {
                let (head, tail) = x.split_at_mut(k * m);
                head[i * m..(i + 1) * m].iter_mut().zip(&tail[..m]).for_each(|(xi, xk)| *xi -= l * xk);
            }
        }
        let diag = a[i * d + i];
        x[i * m..(i + 1) * m].iter_mut().for_each(|v| *v /= diag);
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_linear_map_is_recovered_and_explains_everything() {
        // y = [2 x0 - x1 + 0.5, x1 + 3 x2] on 40 samples.
        let inputs: Vec<Vec<f64>> = (0..40).map(|s| (0..3).map(|i| (((s * 7 + i * 13) % 11) as f64) / 10.0).collect()).collect();
        let targets: Vec<Vec<f64>> = inputs.iter().map(|x| vec![2.0 * x[0] - x[1] + 0.5, x[1] + 3.0 * x[2]]).collect();
        let decoder = Decoder::fit(&inputs, &targets, 1e-10);
        for (x, y) in inputs.iter().zip(&targets) {
            let p = decoder.apply(x);
            assert!((p[0] - y[0]).abs() < 1e-6 && (p[1] - y[1]).abs() < 1e-6, "{p:?} vs {y:?}");
        }
        assert!(decoder.r2 > 0.999_999);
    }

    #[test]
    fn correlation_of_related_and_constant_vectors() {
        assert!((correlation(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0]) - 1.0).abs() < 1e-12);
        assert!((correlation(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        assert_eq!(correlation(&[1.0, 1.0], &[1.0, 2.0]), 0.0);
    }
}
