//! snnc as a library: compile a model from a string, train it for a few batches, then read its
//! accuracy, one sample's spike trains and membrane potentials, and its weights back; then
//! run a model without a train block (an Izhikevich neuron written inline) forward only.
//!
//! Run: `cargo run --release --example library` (about a second; nothing is downloaded, the
//! Yin-Yang data set is generated).

use snnc::api::{Model, TrainOptions};

/// A small surrogate-gradient classifier on the Yin-Yang data set (as models/yin_yang.snn,
/// smaller), written inline.
const MODEL: &str = r#"
import std::neurons
import std::encoders
import std::surrogates

network Library {
    steps = 10
    input xy[5] = repeat(sample)
    population hidden[40] = Leaky(beta = 0.9, threshold = 1.0)
    population out[3] = LI(beta = 0.9)
    connect xy -> hidden.i : dense(init = uniform(-0.5, 0.5))
    connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))
}

train {
    data = yin_yang(train = 5000, test = 1000, seed = 42)
    method = bptt(surrogate = fast_sigmoid(slope = 10))
    loss ce = cross_entropy(max_t(out.v), label)
    predict = argmax(max_t(out.v))
    optimizer = adam(lr = 5e-3)
    batch = 32
    epochs = 1
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A model that does not check comes back with snnc's diagnostics (code, spans, help).
    let broken = MODEL.replace("LI(beta = 0.9)", "LI(beta = 0.9 ms)");
    match Model::compile(&broken) {
        Err(error) => {
            let codes: Vec<&str> = error.diagnostics().iter().map(|d| d.code).collect();
            println!("a broken model is refused with {codes:?}:\n{error}");
        }
        Ok(_) => return Err("a parameter of the wrong unit was accepted".into()),
    }

    let mut model = Model::compile(MODEL)?;
    println!("connections: {}", model.connections().join(", "));
    let data = model.dataset()?;
    let before = model.evaluate(&data, Some(500))?.accuracy;
    let initial = model.weights("hidden", "out")?;

    // A few batches: one epoch over the first 640 training samples (20 batches of 32), twice.
    let options = TrainOptions { epochs: Some(1), limit_train: Some(640), limit_test: Some(500) };
    for _ in 0..2 {
        let metrics = model.train(&data, &options)?;
        for m in metrics {
            println!(
                "epoch {}: loss {:.4}, train accuracy {:.1}%, test accuracy {:.1}%",
                m.epoch,
                m.losses[0].1,
                100.0 * m.train_accuracy,
                100.0 * m.test_accuracy
            );
        }
    }
    let after = model.evaluate(&data, Some(500))?.accuracy;
    println!("test accuracy on 500 samples: {:.1}% before training, {:.1}% after", 100.0 * before, 100.0 * after);

    // One test sample forward: the hidden layer's spike raster and the readout's membranes.
    let features = data.test.sample(0);
    let run = model.simulate(&features)?;
    let hidden = run.population("hidden").ok_or("no population `hidden`")?;
    println!("sample 0 ({:?}, label {}): {} steps of {} ms", &features[..2], data.test.labels[0], run.steps, run.dt * 1e3);
    for (neuron, count) in hidden.counts().iter().enumerate().filter(|(_, c)| **c > 0).take(8) {
        println!("  hidden[{neuron}] fired {count} times, at steps {:?}", hidden.spike_steps(neuron));
    }
    let out = run.population("out").ok_or("no population `out`")?;
    let v = out.state("v").ok_or("no state `v`")?;
    let peak: Vec<f32> = (0..out.size).map(|k| v.iter().map(|row| row[k]).fold(f32::MIN, f32::max)).collect();
    let predicted = peak.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(k, _)| k);
    println!("  out.v peaks {peak:?}: predicted class {predicted}");

    // The weights back: how far training moved them.
    let trained = model.weights("hidden", "out")?;
    let moved = initial.values.iter().zip(&trained.values).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    println!(
        "weights {} -> {}.{} {:?}: w[0][0] {:.4} -> {:.4}, largest change {moved:.4}",
        trained.source,
        trained.target,
        trained.port,
        trained.shape,
        initial.dense(0, 0).unwrap_or(f32::NAN),
        trained.dense(0, 0).unwrap_or(f32::NAN)
    );
    if after <= before || moved == 0.0 {
        return Err("training did not improve the model".into());
    }
    izhikevich()
}

/// An Izhikevich neuron (2003), written inline: non-linear dynamics (integrated by forward
/// Euler, which the checker says with the warning `snn::lint::euler`), units throughout.
const IZHIKEVICH: &str = r#"
import std::encoders

neuron Izhikevich {
    param a: 1/ms = 0.02 / 1 ms
    param b: 1/ms = 0.2 / 1 ms
    param c: mV = -65 mV
    param d: mV = 8 mV
    state v: mV = -65 mV
    state u: mV/ms = -13 mV / 1 ms
    input i: mV/ms
    dv/dt = 0.04 / (1 mV * 1 ms) * v * v + 5 / 1 ms * v + 140 mV / 1 ms - u + i
    du/dt = a * (b * v - u)
    spike when v >= 30 mV
    on spike {
        v = c
        u += d / 1 ms
    }
}

network Izh {
    dt = 0.25 ms
    steps = 1200
    input drive[1] = repeat(sample)
    population cell[1] = Izhikevich
    connect drive -> cell.i : one_to_one(weight = 10 mV/ms)
}
"#;

/// A model without a train block only runs forward: the Izhikevich neuron under a constant
/// current fires as a regular-spiking cortical neuron, its intervals lengthening as `u` adapts.
fn izhikevich() -> Result<(), Box<dyn std::error::Error>> {
    let model = Model::compile(IZHIKEVICH)?;
    let codes: Vec<&str> = model.warnings().iter().map(|d| d.code).collect();
    println!("Izhikevich neuron: warnings {codes:?}");
    let run = model.simulate(&[1.0])?;
    let cell = run.population("cell").ok_or("no population `cell`")?;
    let times: Vec<f64> = cell.spike_steps(0).iter().map(|t| *t as f64 * run.dt * 1e3).collect();
    let intervals: Vec<f64> = times.windows(2).map(|w| w[1] - w[0]).collect();
    println!("  spikes at {times:.1?} ms; intervals {intervals:.1?} ms");
    if times.len() < 3 || intervals.first() >= intervals.last() {
        return Err("the regular-spiking neuron should fire repeatedly, its intervals lengthening".into());
    }
    Ok(())
}
