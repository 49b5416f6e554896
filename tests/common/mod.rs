//! Helpers shared by the integration tests: shipped models, synthetic inputs, engines and
//! sessions.

#![allow(dead_code)]

use snnc::exec::engine::{self, Engine, EngineKind};
use snnc::exec::real::Real;
use snnc::exec::state::{Grads, Params, SampleRef};
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
