//! The generative check of seeds/000 (`snnc generate`): a clamped state held before every step
//! on both engines, the check end to end on MNIST (decoders, similarity, the image grid), and
//! the energy models' files clamp their readout.

mod common;

use snnc::exec::engine::{Ctx, EngineKind, ParamsAccess, Shard};
use snnc::exec::state::{SampleRef, init_params, net_params};
use snnc::train::hooks::Clamps;

/// A layer driven by its input and by the normalised readout of the step before; the
/// readout's membrane is clamped to the class.
const MODEL: &str = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    steps = 12\n    \
    input x[784] = repeat(image)\n    population hidden[30] = Leaky(beta = 0.9, threshold = 0.5)\n    population out[10] = LI(beta = 0.9)\n    \
    connect x -> hidden.i : dense(init = uniform(-0.02, 0.06))\n    connect hidden -> out.i : dense(init = uniform(-0.3, 0.3))\n    \
    connect l2_normalize(out.v) -> hidden.i : dense(init = uniform(-1.5, 1.5)) feedback\n}\ntrain {\n    \
    data = mnist(dir = env(\"SNNC_MNIST_DIR\", \"data/mnist\"))\n    method = bptt(surrogate = fast_sigmoid())\n    \
    loss ce = cross_entropy(last_t(out.v), label)\n    predict = argmax(last_t(out.v))\n    optimizer = adam(lr = 1e-3)\n    \
    clamp out.v = one_hot(label, on = 1, off = -1)\n}\n";

/// The clamp writes the state before every step (the authors overwrite the readout's
/// membrane before each forward step): both engines agree, the clamped rows hold the class,
/// and the feedback it drives makes the classes differ.
#[test]
fn a_clamped_state_is_held_before_every_step_on_both_engines() {
    let module = common::valid(common::module(MODEL));
    let train = module.train.as_ref().expect("train");
    let silent = common::valid(snnc::train::generate::silent(&module));
    let params = init_params::<f64>(&silent, 3);
    let net = net_params::<f64>(&silent);
    let zeros = vec![0.0f32; 784];
    let labelled: Vec<(usize, &[f32])> = (0..10).map(|c| (c, zeros.as_slice())).collect();
    let samples: Vec<SampleRef> = (0..10).map(|c| SampleRef { id: c, features: &zeros }).collect();
    let run = |kind: EngineKind| {
        let engine = common::build::<f64>(kind, &silent);
        let mut clamps = Clamps::of(&silent, train, &params, &labelled, &[]).expect("clamp values");
        let ctx = Ctx { module: &silent, seed: 1, net: &net };
        engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, Some(&mut clamps))
    };
    let (oracle, jit) = (run(EngineKind::Oracle), run(EngineKind::Jit));
    assert_eq!(oracle.spikes, jit.spikes, "spike rasters");
    for (x, y) in oracle.states.iter().flatten().flatten().zip(jit.states.iter().flatten().flatten()) {
        assert!((x - y).abs() <= 1e-9 * (1.0 + x.abs()), "{x} vs {y}");
    }
    let out = 1;
    for t in 0..oracle.steps {
        let row = oracle.state_before(t, out, 0);
        for c in 0..10 {
            for k in 0..10 {
                assert_eq!(row[c * 10 + k], if k == c { 1.0 } else { -1.0 }, "step {t} class {c} neuron {k}");
            }
        }
    }
    let counts: Vec<usize> = (0..10)
        .map(|c| (0..oracle.steps).map(|t| oracle.sample_spikes::<f64>(t, 0, c).iter().filter(|s| **s > 0.0).count()).sum())
        .collect();
    assert!(counts.iter().any(|c| *c != counts[0]), "the clamped class drives the layer: {counts:?}");
}

/// `snnc generate`'s work on MNIST: decoders fitted on test samples explain some of the
/// images, every class gets a decoded image per layer, and the grid is 10 rows of a mean
/// image and a decoded one, 2 pixels per value.
#[test]
fn the_generative_check_decodes_every_layer_for_every_class() {
    let Some(dir) = std::env::var_os("SNNC_MNIST_DIR") else {
        panic!("set SNNC_MNIST_DIR to the MNIST folder (.ci/run sets it to ../shared/data/mnist)");
    };
    let module = common::valid(common::module(MODEL));
    let data = snnc::cli::driver::load_data(module.train.as_ref().expect("train"), Some(std::path::Path::new(&dir))).expect("MNIST");
    let params = init_params::<f32>(&module, 3);
    let config = snnc::train::generate::GenerateConfig { decoder_samples: 300, ..Default::default() };
    let generated = snnc::train::generate::generate(&module, &data, &params, &config).expect("generates");
    assert_eq!(generated.layers, ["hidden"]);
    assert_eq!((generated.decoded.len(), generated.decoded[0].len(), generated.decoded[0][0].len()), (10, 1, 784));
    assert!(generated.decoder_r2[0] > 0.05 && generated.decoder_r2[0] <= 1.0, "R² {}", generated.decoder_r2[0]);
    assert_eq!(generated.similarity[0].len(), 10);
    let folder = std::env::temp_dir().join(format!("snnc_generate_{}", std::process::id()));
    let written = snnc::cli::figures::write_generated(&folder, &generated).expect("writes");
    assert_eq!(written, ["generate.png", "generate.csv"]);
    let bytes = std::fs::read(folder.join("generate.png")).expect("the image");
    let mut reader = png::Decoder::new(std::io::Cursor::new(bytes)).read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("one frame");
    // Two columns (the class mean, layer `hidden`) and ten rows of 28 * 2 + 2 pixels.
    assert_eq!((info.width, info.height), (2 * 58 + 2, 10 * 58 + 2));
    let distinct: std::collections::BTreeSet<u8> = pixels[..info.buffer_size()].iter().copied().collect();
    assert!(distinct.len() > 20, "not blank: {} grey levels", distinct.len());
    let csv = std::fs::read_to_string(folder.join("generate.csv")).expect("the table");
    assert_eq!(csv.lines().count(), 1 + 10);
    std::fs::remove_dir_all(&folder).ok();
}

/// Every energy model clamps its readout for the check, as the authors' `clamped_generate`.
#[test]
fn the_energy_models_clamp_their_readout() {
    for name in common::model_names().iter().filter(|n| n.starts_with("energy_")) {
        let module = common::load(name);
        let train = module.train.as_ref().expect("train");
        assert_eq!(train.clamps.len(), 1, "{name}");
        let out = module.populations.iter().position(|p| p.name == "out").expect("out");
        assert_eq!(train.clamps[0].pop.0 as usize, out, "{name}");
        assert!(train.clamps[0].var.is_some(), "{name}: the readout's membrane");
    }
}
