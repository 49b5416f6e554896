//! Helpers shared by the integration tests: shipped models, synthetic inputs, engines and
//! sessions.

#![allow(dead_code)]

use snnc::exec::engine::{self, Engine, EngineKind};
use snnc::exec::real::Real;
use snnc::exec::state::{Grads, Params, SampleRef, init_params};
use snnc::ir::Module;
use snnc::ir::validate::{Valid, validate};
use snnc::train::bptt::batch_gradients;
use snnc::train::method::{BatchOutcome, Example, Session};

pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// A shipped model, lowered.
pub fn load(name: &str) -> Module {
    let path = root().join("models").join(name);
    snnc::cli::driver::check_path(&path).expect("readable").outcome.module.expect("lowers")
}

/// A model from text, lowered; panics with the rendered diagnostics if it does not check.
pub fn module(text: &str) -> Module {
    let checked = snnc::cli::driver::check_text("test.snn", text, None);
    assert!(!checked.has_errors(), "{}", snnc::cli::driver::render_all(&checked.diagnostics, 100));
    checked.outcome.module.expect("lowers")
}

pub fn valid(module: Module) -> Valid {
    validate(module).expect("valid")
}

/// The names of the files in `models/`, sorted.
pub fn model_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("models"))
        .expect("models")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Deterministic features in [0, 1].
pub fn features(n: usize, salt: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * 7 + salt * 13) % 11) as f32 / 10.0).collect()
}

pub fn build<F: Real>(kind: EngineKind, module: &Valid) -> Box<dyn Engine<F>> {
    engine::build::<F>(kind, module).unwrap_or_else(|e| panic!("{e}"))
}

/// Loss terms and the mean gradient of `examples` on `engine` with the first phase's losses.
pub fn gradients<F: Real>(
    module: &Valid,
    engine: &dyn Engine<F>,
    params: &Params<F>,
    examples: &[Example],
    seed: u64,
) -> (BatchOutcome, Grads<F>) {
    let train = module.train.as_ref().expect("a train block");
    let session = Session { module, train, phase: &train.phases[0], engine, seed, recording: false };
    let mut params = params.clone();
    let mut net = module.net_values();
    batch_gradients(&session, &mut params, &mut net, examples).unwrap_or_else(|e| panic!("{e}"))
}

/// Examples with the given features and labels, identified by their position.
pub fn examples<'a>(inputs: &'a [Vec<f32>], labels: &[usize]) -> Vec<Example<'a>> {
    inputs
        .iter()
        .zip(labels)
        .enumerate()
        .map(|(i, (f, l))| Example { sample: SampleRef { id: i as u64, features: f }, label: *l })
        .collect()
}

/// Weight gradients close within `tolerance` relative; returns how many are nonzero.
pub fn assert_weights_close<F: Real>(what: &str, expected: &Params<F>, actual: &Params<F>, tolerance: f64) -> usize {
    let mut nonzero = 0;
    for (p, (a, b)) in expected.weights.iter().zip(&actual.weights).enumerate() {
        assert_eq!(a.len(), b.len(), "{what}: projection {p}");
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            let (x, y) = (x.into_f64(), y.into_f64());
            assert!((x - y).abs() <= tolerance * (1.0 + x.abs()), "{what}: weight {p}/{k}: {x} vs {y}");
            nonzero += usize::from(x != 0.0);
        }
    }
    for (p, (a, b)) in expected.neuron_params.iter().zip(&actual.neuron_params).enumerate() {
        for (v, (a, b)) in a.iter().zip(b).enumerate() {
            assert_eq!(a.len(), b.len(), "{what}: neuron parameter {p}/{v}");
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                let (x, y) = (x.into_f64(), y.into_f64());
                assert!((x - y).abs() <= tolerance * (1.0 + x.abs()), "{what}: neuron parameter {p}/{v}/{k}: {x} vs {y}");
            }
        }
    }
    nonzero
}

/// The oracle's and the JIT's gradients (weights and neuron parameters) of three examples (features scaled by `scale`) agree
/// within `tolerance`, and are not trivially zero.
pub fn gradients_match<F: Real>(name: &str, m: &Valid, scale: f32, tolerance: f64) {
    let n: usize = m.inputs[0].shape.iter().product();
    let inputs: Vec<Vec<f32>> = (0..3).map(|s| features(n, s).iter().map(|x| x * scale).collect()).collect();
    let batch = examples(&inputs, &[0, 1, 2]);
    let params = init_params::<F>(m, 8);
    let (oracle_outcome, oracle) = gradients(m, build::<F>(EngineKind::Oracle, m).as_ref(), &params, &batch, 2);
    let (jit_outcome, jit) = gradients(m, build::<F>(EngineKind::Jit, m).as_ref(), &params, &batch, 2);
    let nonzero = assert_weights_close(&format!("{name} in {}", F::NAME), &oracle, &jit, tolerance);
    assert!(nonzero > 0, "{name}: the gradient is not trivially zero");
    for (a, b) in oracle_outcome.terms.iter().zip(&jit_outcome.terms) {
        assert!((a - b).abs() <= tolerance * (1.0 + a.abs()), "{name}: loss {a} vs {b}");
    }
}
