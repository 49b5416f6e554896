//! Nothing the train block says is parsed and dropped: every field of the IR's train part is
//! named here (an exhaustive destructuring, so a new field breaks this test until it is
//! covered) and changing it changes what a run does. Also the train block's hooks at work:
//! `every sample` actions, `retry when`, `clamp` and `record`.

mod common;

use snnc::data::Dataset;
use snnc::exec::engine::EngineKind;
use snnc::exec::state::Params;
use snnc::ir::Module;
use snnc::ir::train::{HookAction, Train};
use snnc::train::hooks::RecordText;
use snnc::train::{EpochMetrics, Observer, RunConfig, train_module};

/// The quick start's network with a network parameter that scales the input, so that hook
/// actions on it change the run.
const MODEL: &str = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    steps = 6\n    param gain = 1\n    input xy[5] = repeat(sample * gain)\n    population hidden[40] = Leaky(beta = 0.9, threshold = 1.0)\n    population out[3] = LI(beta = 0.9)\n    connect xy -> hidden.i : dense(init = uniform(-0.5, 0.9))\n    connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))\n}\ntrain {\n    data = yin_yang(train = 64, test = 32, seed = 42)\n    method = bptt(surrogate = fast_sigmoid(slope = 10))\n    loss ce = cross_entropy(max_t(out.v), label)\n    predict = argmax(max_t(out.v))\n    optimizer = adam(lr = 5e-3)\n    batch = 16\n    epochs = 1\n}\n";

/// Collects what a run reports.
#[derive(Default)]
struct Collect {
    records: RecordText,
    epochs: Vec<EpochMetrics>,
}

impl Observer<f64> for Collect {
    fn records(&mut self, records: &RecordText) {
        self.records.spikes.push_str(&records.spikes);
        self.records.variables.push_str(&records.variables);
    }

    fn epoch(&mut self, metrics: &EpochMetrics, _snapshot: &snnc::train::Snapshot<f64>) -> Result<(), String> {
        self.epochs.push(metrics.clone());
        Ok(())
    }
}

fn base() -> Module {
    common::module(MODEL)
}

fn data(module: &Module) -> Dataset {
    snnc::cli::driver::load_data(module.train.as_ref().expect("train"), None).expect("yin-yang is generated")
}

/// Trains one epoch on the JIT and returns the weights and what was reported.
fn run(module: Module) -> (Params<f64>, Collect) {
    let dataset = data(&module);
    let module = common::valid(module);
    let mut collect = Collect::default();
    let config = RunConfig { seed: 1, engine: EngineKind::Jit, ..Default::default() };
    let (params, _) = train_module::<f64>(&module, &dataset, &config, None, &mut collect).unwrap_or_else(|e| panic!("{e}"));
    (params, collect)
}

fn changed(what: &str, edit: impl FnOnce(&mut Train), reference: &Params<f64>) {
    let mut module = base();
    edit(module.train.as_mut().expect("train"));
    let (params, _) = run(module);
    assert_ne!(&params, reference, "changing `{what}` changed nothing: the runtime does not read it");
}

#[test]
fn every_field_of_the_train_block_changes_the_run() {
    let (reference, collect) = run(base());
    let module = base();
    // Every field, by name: adding one to the IR breaks this line until it is covered below.
    let Train {
        data,
        method,
        exprs,
        phases,
        predict,
        reconstruction,
        batch,
        schedule,
        clip_grad_norm,
        seed,
        precision,
        before_sample,
        retry,
        records,
        record_to,
        clamps,
    } = module.train.clone().expect("train");
    // `precision` chooses the float type of the run, which the command line reads
    // (tests/cli.rs: a_train_block_can_ask_for_f64); `reconstruction` what a run shows after
    // every epoch (tests/autoencoder.rs: a_run_shows_reconstructions_rasters_and_activity).
    let _ = (
        data,
        method,
        exprs,
        phases,
        predict,
        reconstruction,
        batch,
        schedule,
        clip_grad_norm,
        seed,
        precision,
        before_sample,
        retry,
        records,
        record_to,
        clamps,
    );

    // data: another seed of the generator is another data set.
    let mut other = base();
    let snnc::ir::train::Data::YinYang { seed, .. } = &mut other.train.as_mut().expect("train").data else { unreachable!() };
    *seed += 1;
    assert_ne!(data_of(&other), data_of(&base()), "`data` is read by the driver");
    // method: the surrogate's slope.
    let slope_two = common::module(&MODEL.replace("slope = 10", "slope = 2")).train.expect("train").method;
    changed("method", |t| t.method = slope_two, &reference);
    // exprs: a constant of the loss graph (a new node scaling the loss term).
    changed(
        "exprs",
        |t| {
            let ty = snnc::ir::train::TType { width: 1, per_step: false };
            let two = t.exprs.push(snnc::ir::train::TNode::Const(3.0), ty);
            let term = t.phases[0].losses[0].value;
            let scaled = t.exprs.push(snnc::ir::train::TNode::Binary(snnc::ir::BinaryOp::Mul, two, term), ty);
            t.phases[0].losses[0].value = scaled;
        },
        &reference,
    );
    changed("phases", |t| t.phases[0].optimizer.lr = 1e-2, &reference);
    changed("batch", |t| t.batch = 8, &reference);
    // The schedule scales the rate from the second epoch on.
    let two_epochs = |t: &mut Train| t.phases[0].epochs = 2;
    let mut module = base();
    two_epochs(module.train.as_mut().expect("train"));
    let (constant, _) = run(module);
    changed(
        "schedule",
        |t| {
            two_epochs(t);
            t.schedule = snnc::ir::train::LrSchedule::Exponential { gamma: 0.1 }
        },
        &constant,
    );
    changed("clip_grad_norm", |t| t.clip_grad_norm = Some(1e-3), &reference);
    changed("seed", |t| t.seed = 99, &reference);
    changed("before_sample", |t| t.before_sample = vec![HookAction::SetParam { param: 0, value: 3.0 }], &reference);
    changed(
        "retry",
        |t| {
            // Retry while the hidden layer is silent, raising the input gain.
            t.retry = Some(snnc::ir::train::Retry {
                condition: count_below(t, 1e9),
                max: 2,
                actions: vec![HookAction::AddToParam { param: 0, by: 1.0 }],
            })
        },
        &reference,
    );
    // predict: the reported training accuracy follows it.
    let mut module = base();
    let train = module.train.as_mut().expect("train");
    let zero = train.exprs.push(snnc::ir::train::TNode::Const(0.0), snnc::ir::train::TType { width: 1, per_step: false });
    train.predict = Some(zero);
    let (_, always_zero) = run(module);
    assert_ne!(always_zero.epochs[0].train_accuracy, collect.epochs[0].train_accuracy, "`predict` is read");
    // records and record_to: what is written, and where (the CLI names the file).
    assert!(collect.records.spikes.is_empty(), "nothing recorded by default");
    let mut module = base();
    let hidden = module.populations.iter().position(|p| p.name == "hidden").expect("hidden");
    let train = module.train.as_mut().expect("train");
    train.records = vec![(snnc::ir::PopId(hidden as u32), None), (snnc::ir::PopId(hidden as u32), Some(snnc::ir::VarId(0)))];
    train.record_to = Some("hidden.csv".to_string());
    let (_, recorded) = run(module);
    assert!(recorded.records.spikes.lines().count() > 10, "spikes are recorded");
    assert_eq!(recorded.records.variables.lines().count(), 64 * 6 * 40, "one row per sample, step and neuron");
    // clamps: what the generative check holds (the layer fires at every step), and nothing
    // else (training and its evaluation are those of the model without them).
    let mut module = base();
    let hidden_id = snnc::ir::PopId(hidden as u32);
    let train = module.train.as_mut().expect("train");
    let on = train.exprs.push(snnc::ir::train::TNode::Const(1.0), snnc::ir::train::TType { width: 1, per_step: false });
    train.clamps = vec![snnc::ir::train::Clamp { pop: hidden_id, var: None, value: on }];
    let dataset = snnc::cli::driver::load_data(module.train.as_ref().expect("train"), None).expect("generated");
    let (clamped_params, clamped) = run(module.clone());
    assert_eq!(clamped_params, reference, "clamps do not change training");
    assert_eq!(clamped.epochs[0].spikes_per_neuron, collect.epochs[0].spikes_per_neuron, "nor evaluation");
    let config = snnc::train::generate::GenerateConfig { decoder_samples: 32, ..Default::default() };
    let generated = snnc::train::generate::generate(&common::valid(module), &dataset, &reference, &config).expect("generates");
    assert_eq!(generated.layers, ["hidden"]);
    assert!(generated.clamped_rate.iter().all(|c| c[0] == 1.0), "the clamped layer fires at every step: {:?}", generated.clamped_rate);
    assert_ne!(collect.epochs[0].spikes_per_neuron[hidden].1, 6.0);
}

/// `sum(count(hidden)) < limit` as a retry condition.
fn count_below(train: &mut Train, limit: f64) -> snnc::ir::train::TExprId {
    use snnc::ir::train::{Readout, TFunc, TNode, TType};
    let scalar = TType { width: 1, per_step: false };
    let count = train.exprs.push(TNode::Readout(Readout::Count(snnc::ir::PopId(0))), TType { width: 40, per_step: false });
    let sum = train.exprs.push(TNode::Call(TFunc::Sum, vec![count]), scalar);
    let limit = train.exprs.push(TNode::Const(limit), scalar);
    train.exprs.push(TNode::Binary(snnc::ir::BinaryOp::Lt, sum, limit), scalar)
}

fn data_of(module: &Module) -> Vec<f32> {
    let split = data(module).train;
    (0..split.len()).flat_map(|i| split.sample(i).into_owned()).collect()
}

#[test]
fn every_sample_normalisation_holds_the_column_sums() {
    let text = MODEL.replace("    epochs = 1\n", "    epochs = 1\n    every sample { normalize(weights(xy, hidden), total = 2) }\n");
    let (params, _) = run(common::module(&text));
    // The last batch normalised before its update: the columns are near 2, not at the
    // initial sums (five weights from uniform(-0.5, 0.9): about 1 on average, spread by about 0.9).
    for j in 0..40 {
        let column: f64 = (0..5).map(|i| params.weights[0][i * 40 + j]).sum();
        assert!((column - 2.0).abs() < 0.5, "column {j} sums to {column}");
    }
}

#[test]
fn retry_shows_a_silent_sample_again_with_more_gain() {
    // With gain 0 nothing reaches the network; the retry raises the gain until the hidden
    // layer fires (or 5 tries).
    let text = MODEL.replace("    param gain = 1\n", "    param gain = 0\n").replace(
        "    epochs = 1\n",
        "    epochs = 1\n    every sample { gain = 0 }\n    retry when sum(count(hidden)) < 1 max 5 { gain += 1 }\n",
    );
    let (_, collect) = run(common::module(&text));
    let silent = common::module(&MODEL.replace("    param gain = 1\n", "    param gain = 0\n"));
    let (_, without) = run(silent);
    let silent_loss = without.epochs[0].losses[0].1;
    assert!((silent_loss - 3.0f64.ln()).abs() < 1e-12, "gain 0: every output is 0 and the loss is ln 3, found {silent_loss}");
    let retried = collect.epochs[0].losses[0].1;
    assert!((retried - silent_loss).abs() > 1e-3, "the retries trained on samples with gain > 0: loss {retried}");
}

/// MNIST's shift and rotation augmentation (seeds/002) is applied to the training images.
#[test]
fn mnist_augmentation_changes_what_is_trained_on() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork M {\n    steps = 4\n    input pixels[784] = repeat(image)\n    population out[10] = Leaky(beta = 0.9, threshold = 1.0)\n    connect pixels -> out.i : dense(init = uniform(-0.05, 0.1))\n}\ntrain {\n    data = mnist(dir = \"unused\", shift = SHIFT, rotate = ROTATE)\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(count(out), label)\n    predict = argmax(count(out))\n    optimizer = adam(lr = 1e-2)\n    batch = 8\n    epochs = 1\n}\n";
    let n = 16;
    let images: Vec<f32> = (0..n * 784).map(|k| if (k % 784) / 28 % 7 < 3 && k % 28 > 10 { 1.0 } else { 0.0 }).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let split = |features: Vec<f32>, labels: Vec<u8>| snnc::data::Split::floats(784, features, labels);
    let data = Dataset { train: split(images.clone(), labels.clone()), test: split(images, labels), classes: 10 };
    let train = |shift: &str, rotate: &str| {
        let module = common::valid(common::module(&text.replace("SHIFT", shift).replace("ROTATE", rotate)));
        let config = RunConfig { seed: 1, engine: EngineKind::Jit, ..Default::default() };
        train_module::<f64>(&module, &data, &config, None, &mut snnc::train::Quiet).expect("trains").0
    };
    let plain = train("0", "0");
    assert_ne!(plain, train("0.1", "0"), "shift");
    assert_ne!(plain, train("0", "20"), "rotation");
}

/// A state that overflows stops the run with an error naming the population, the variable, the
/// step and the sample where it happened first.
#[test]
fn a_non_finite_state_stops_the_run_and_is_named() {
    let text = "import std::encoders\nimport std::surrogates\nneuron Explode {\n    state v = 0\n    input i\n    update { v = 1e30 * v + i }\n    spike when v > 1e40\n}\nnetwork N {\n    steps = 6\n    input xy[5] = repeat(sample)\n    population out[3] = Explode\n    connect xy -> out.i : dense(init = uniform(0.5, 1))\n}\ntrain {\n    data = yin_yang(train = 64, test = 32, seed = 42)\n    method = bptt(surrogate = fast_sigmoid())\n    loss l = mse(mean_t(out.v), one_hot(label, on = 1, off = 0))\n    predict = argmax(count(out))\n    optimizer = adam(lr = 1e-3)\n    batch = 16\n}\n";
    let module = common::module(text);
    let dataset = data(&module);
    let module = common::valid(module);
    let config = RunConfig { seed: 1, engine: EngineKind::Jit, ..Default::default() };
    let error = train_module::<f32>(&module, &dataset, &config, None, &mut snnc::train::Quiet).expect_err("the state overflows");
    let message = error.to_string();
    // v is about 1 after step 0, 1e30 after step 1 and beyond f32 after step 2.
    assert!(message.contains("`out.v` at step 2 of sample") && message.contains("epoch 1, batch 1"), "{message}");
}

/// Keeps the snapshot taken after a given epoch.
struct KeepSnapshot {
    after: usize,
    kept: Option<snnc::train::Snapshot<f32>>,
}

impl Observer<f32> for KeepSnapshot {
    fn epoch(&mut self, metrics: &EpochMetrics, snapshot: &snnc::train::Snapshot<f32>) -> Result<(), String> {
        if metrics.epoch == self.after {
            self.kept = Some(snapshot.clone());
        }
        Ok(())
    }
}

/// A run resumed from the checkpoint written after epoch 2 (through the file, weights,
/// optimiser moments, epoch and network parameters) ends with exactly the weights of a run that
/// was never interrupted, with an `every sample` action and a decaying learning rate.
#[test]
fn a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one() {
    let text =
        MODEL.replace("    epochs = 1\n", "    epochs = 4\n    schedule = exponential(gamma = 0.7)\n    every sample { gain = 1.5 }\n");
    let module = common::module(&text);
    let dataset = data(&module);
    let module = common::valid(module);
    let config = RunConfig { seed: 1, engine: EngineKind::Jit, ..Default::default() };
    let mut keep = KeepSnapshot { after: 2, kept: None };
    let (uninterrupted, _) = train_module::<f32>(&module, &dataset, &config, None, &mut keep).expect("trains");
    let dir = std::env::temp_dir().join(format!("snnc-resume-{}", std::process::id()));
    let path = dir.join("checkpoint.safetensors");
    snnc::cli::driver::save_snapshot(&path, &module, keep.kept.as_ref().expect("a snapshot after epoch 2"), "resume").expect("saves");
    let snapshot = snnc::cli::driver::load_snapshot::<f32>(&path, &module).expect("loads");
    assert_eq!(&snapshot, keep.kept.as_ref().expect("kept"), "the snapshot round-trips through the file");
    let (resumed, history) = train_module::<f32>(&module, &dataset, &config, Some(snapshot), &mut snnc::train::Quiet).expect("resumes");
    assert_eq!(history.len(), 2, "epochs 3 and 4 only");
    assert_eq!(resumed, uninterrupted);
    std::fs::remove_dir_all(dir).ok();
}

/// Gradient-norm clipping measures the gradient the optimiser steps along: a time constant
/// declared in ms by its gradient per ms, not per second (a thousand times larger), which
/// would shrink every other gradient with it.
#[test]
fn clipping_measures_neuron_parameters_in_their_declared_unit() {
    let text = "import std::encoders\nimport std::surrogates\nneuron Tau {\n    param tau: ms trainable per_neuron = 5 ms\n    state u = 0\n    input i\n    update { u = exp(-dt / tau) * u + i }\n}\nnetwork N {\n    steps = 4\n    input x[5] = repeat(sample)\n    population out[3] = Tau\n    connect x -> out.i : dense(init = uniform(-1, 1))\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(last_t(out.u), label)\n    predict = argmax(last_t(out.u))\n    optimizer = sgd(lr = 1)\n    clip = 1\n}\n";
    let module = common::valid(common::module(text));
    let params = snnc::exec::state::init_params::<f64>(&module, 1);
    let (pop, var) = module.populations[0].vars.iter().position(|v| v.name == "tau").map(|v| (0, v)).expect("tau");
    let mut grads = params.zeros_like();
    grads.weights[0][0] = 3.0;
    // 4 per ms, as a gradient per second.
    grads.neuron_params[pop][var][0] = 4000.0;
    let train = module.train.as_ref().expect("train");
    let mut optimizer = snnc::train::optim::Optimizer::new(&params);
    let mut stepped = params.clone();
    optimizer.update(&module, &mut stepped, &grads, &train.phases[0].optimizer, 1.0, train.clip_grad_norm);
    // The norm is |(3, 4)| = 5: both are scaled by 1/5.
    assert!((params.weights[0][0] - stepped.weights[0][0] - 0.6).abs() < 1e-12, "the weight moves by 3 / 5");
    let tau_moved_ms = (params.neuron_params[pop][var][0] - stepped.neuron_params[pop][var][0]) * 1e3;
    assert!((tau_moved_ms - 0.8).abs() < 1e-9, "tau moves by 4 / 5 ms, moved {tau_moved_ms} ms");
}
