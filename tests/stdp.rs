//! STDP: the plasticity kernel against hand-computed trace sequences (Diehl & Cook's triplet
//! rule and the power-law rule, both from stdlib), persistent states carried from sample to
//! sample and held in evaluation, the retry loop, labelling and voting on constructed
//! responses, and a 100-neuron Diehl & Cook network that learns MNIST above chance.

mod common;

use snnc::exec::engine::{Ctx, EngineKind, ParamsAccess, Shard};
use snnc::exec::plasticity::{Plasticity, Side};
use snnc::exec::state::{SampleRef, init_params};
use snnc::ir::validate::Valid;
use snnc::train::method::{Example, Session, method_for};
use snnc::train::stdp::{ResponseTable, carry_persistent_states, vote};

/// A Yin-Yang network (5 inputs) with one plastic projection through `synapse`.
fn network(synapse: &str, extra_train: &str) -> Valid {
    let text = format!(
        "import std::neurons\nimport std::encoders\nimport std::synapses\n\
         network Net {{\n    dt = 0.5 ms\n    steps = 200\n    rest = 10 ms\n    param intensity = 2\n\
         input x[5] = poisson(rate = sample * intensity * 200 Hz)\n    population exc[2] = DiehlCookExc\n\
         connect x -> exc.exc : dense(init = 0.5) via {synapse}\n}}\n\
         train {{\n    data = yin_yang(train = 20, test = 10, seed = 1)\n    method = stdp\n\
         predict = assigned_class(count(exc))\n    batch = 1\n    epochs = 1\n{extra_train}}}\n"
    );
    common::valid(common::module(&text))
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * (1.0 + b.abs())
}

/// Diehl & Cook's rule: pre trace set to 1 on a presynaptic spike, post1 and post2 on a
/// postsynaptic one; depression by post1 on a presynaptic spike, potentiation by pre x post2
/// (its value before this spike) on a postsynaptic one; clipped to [0, w_max].
#[test]
fn the_triplet_rule_follows_a_hand_computed_trace_sequence() {
    let module = network("DiehlCookStdp(nu_pre = 0.1, nu_post = 0.2, w_max = 1.0)", "");
    let mut plasticity = Plasticity::<f64>::new(&module).expect("dense plastic projection");
    // States (w), then traces pre, post1, post2.
    assert_eq!(plasticity.sides(0).expect("projection 0"), [Side::Weight, Side::Pre, Side::Post, Side::Post]);
    let (d20, d40) = ((-0.5f64 / 20.0).exp(), (-0.5f64 / 40.0).exp());
    let mut w = vec![0.5; 5 * 2];
    w[2] = 0.99; // synapse (1, 0)
    // step: (presynaptic spikes, postsynaptic spikes)
    let steps: [(&[usize], &[usize]); 7] = [(&[0], &[]), (&[], &[]), (&[], &[0]), (&[1], &[]), (&[], &[0]), (&[], &[]), (&[0], &[])];
    for (pre, post) in steps {
        plasticity.step_projection(0, &mut w, pre, post);
    }
    // Step 2: the first postsynaptic spike finds post2 = 0: no potentiation yet.
    // Step 4: post2 = d40^2 (set at step 2), pre[0] = d20^4, pre[1] = d20 (set at step 3).
    let w00 = 0.5 + 0.2 * d20.powi(4) * d40.powi(2);
    // Step 6: presynaptic spike of 0, post1[0] = d20^2 (set at step 4), post1[1] = 0.
    let w00 = w00 - 0.1 * d20.powi(2);
    assert!(close(w[0], w00), "w(0,0) = {}, expected {w00}", w[0]);
    assert!(close(w[1], 0.5), "w(0,1) unchanged: {}", w[1]);
    // Synapse (1, 0): 0.99 + 0.2 * d20 * d40^2 > 1: clipped at w_max.
    assert_eq!(w[2], 1.0, "clipped at w_max");
    let pre = plasticity.trace(0, "pre").expect("pre trace");
    assert!(close(pre[0], 1.0) && close(pre[1], d20.powi(3)), "{pre:?}");
    let post1 = plasticity.trace(0, "post1").expect("post1");
    assert!(close(post1[0], d20.powi(2)) && post1[1] == 0.0, "{post1:?}");
    let post2 = plasticity.trace(0, "post2").expect("post2");
    assert!(close(post2[0], d40.powi(2)), "{post2:?}");
}

/// The power-law rule of stdlib runs from its text too: `x_pre += 1` on a presynaptic spike,
/// `w += eta (x_pre - x_tar) (w_max - w)^mu` on a postsynaptic one.
#[test]
fn the_power_law_rule_runs_from_the_language() {
    let module = network("PowerLawStdp(eta = 0.05, x_tar = 0.4, w_max = 1.0, mu = 0.2)", "");
    let mut plasticity = Plasticity::<f64>::new(&module).expect("plastic projection");
    let d20 = (-0.5f64 / 20.0).exp();
    let mut w = vec![0.5; 10];
    plasticity.step_projection(0, &mut w, &[0, 0], &[]);
    plasticity.step_projection(0, &mut w, &[], &[1]);
    // Two spikes of neuron 0 in one step add 2; one step of decay before the postsynaptic one.
    let x0 = 2.0 * d20;
    let expected_01 = 0.5 + 0.05 * (x0 - 0.4) * 0.5f64.powf(0.2);
    let expected_11 = 0.5 + 0.05 * (0.0 - 0.4) * 0.5f64.powf(0.2);
    assert!(close(w[1], expected_01), "{} vs {expected_01}", w[1]);
    assert!(close(w[3], expected_11), "{} vs {expected_11}", w[3]);
    assert_eq!(w[0], 0.5, "column 0 had no postsynaptic spike");
}

/// Persistent states start each sample where the previous one ended; `frozen in eval` states
/// are held by the evaluation module while the others still move.
#[test]
fn persistent_states_carry_over_and_frozen_ones_hold_in_evaluation() {
    let module = network("DiehlCookStdp", "");
    let engine = common::build::<f64>(EngineKind::Jit, &module);
    let mut params = init_params::<f64>(&module, 3);
    let features = vec![1.0f32; 5];
    let samples = [SampleRef { id: 1, features: &features }];
    let net = [2.0];
    let ctx = Ctx { module: &module, seed: 3, net: &net };
    let first = engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
    let (exc, v, theta) = (0, 0, 3);
    assert_eq!(module.populations[exc].vars[theta].name, "theta");
    assert!(first.spike_count(exc, 0) > 0.0, "the input drives spikes");
    carry_persistent_states(&module, &first, &mut params);
    let second = engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
    assert_eq!(second.state_before(0, exc, v), first.state_after(first.steps - 1, exc, v), "v carries over");
    assert_eq!(second.state_before(0, exc, theta), first.state_after(first.steps - 1, exc, theta), "theta carries over");
    assert!(first.state_after(first.steps - 1, exc, theta).iter().any(|t| *t > 0.02), "theta grew with the spikes");
    // Evaluation: theta held at the trained values, v still integrates.
    let frozen = common::valid(module.for_evaluation());
    let eval_engine = common::build::<f64>(EngineKind::Jit, &frozen);
    let ctx = Ctx { module: &frozen, seed: 3, net: &net };
    let trace = eval_engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
    assert!(trace.spike_count(exc, 0) > 0.0);
    for t in 0..trace.steps {
        assert_eq!(trace.state_after(t, exc, theta), second.state_before(0, exc, theta), "theta held at step {t}");
    }
    assert_ne!(trace.state_after(5, exc, v), trace.state_before(0, exc, v), "v moves");
}

/// `retry when ... max N` shows a sample again after its actions: with a condition that always
/// holds, intensity is raised N times after `every sample` set it.
#[test]
fn the_retry_loop_raises_intensity_up_to_its_maximum() {
    let module =
        network("DiehlCookStdp", "    every sample { intensity = 2 }\n    retry when sum(count(exc)) < 100000 max 3 { intensity += 1 }\n");
    let train = module.train.as_ref().expect("train block");
    let engine = common::build::<f32>(EngineKind::Jit, &module);
    let session = Session { module: &module, train, phase: &train.phases[0], engine: engine.as_ref(), seed: 1, recording: false };
    let mut method = method_for::<f32>(&train.method).expect("stdp is built");
    let mut params = init_params::<f32>(&module, 1);
    let before = params.weights[0].clone();
    let features = vec![1.0f32; 5];
    let examples = [Example { sample: SampleRef { id: 0, features: &features }, label: 0 }];
    let mut net = vec![7.0];
    method.train_batch(&session, &mut params, &mut net, &examples, 0.0).expect("trains");
    assert_eq!(net, [5.0], "set to 2, then raised three times");
    assert_ne!(params.weights[0], before, "the weights learned");
}

/// Labelling: each neuron takes the class of its highest mean response (none if it never
/// responds); voting: the class whose neurons respond most on average.
#[test]
fn labelling_and_voting_on_a_constructed_response_table() {
    let mut table = ResponseTable::new(3);
    // Neuron 0 answers class 2, neuron 1 class 0 (mean 3 over two samples beats 2.5), neuron 2
    // never, neuron 3 class 1.
    table.add(0, &[0.0, 4.0, 0.0, 0.0]);
    table.add(0, &[1.0, 2.0, 0.0, 0.0]);
    table.add(1, &[0.0, 2.5, 0.0, 5.0]);
    table.add(2, &[6.0, 0.0, 0.0, 1.0]);
    assert_eq!(table.assign(), [Some(2), Some(0), None, Some(1)]);
    let assignment = table.assign();
    assert_eq!(vote(&assignment, &[0.0, 9.0, 50.0, 1.0], 3), Some(0), "neuron 2 has no class and does not vote");
    assert_eq!(vote(&assignment, &[3.0, 1.0, 0.0, 2.0], 3), Some(2));
    assert_eq!(vote(&assignment, &[0.0, 0.0, 0.0, 0.0], 3), Some(0), "ties go to the lower class");
    assert_eq!(vote(&[None, None], &[1.0, 1.0], 3), None);
}

/// Diehl & Cook with 100 neurons, from its file, on 300 MNIST training samples: the labelled
/// test accuracy is clearly above chance (10%).
#[test]
fn a_100_neuron_diehl_cook_network_learns_mnist_above_chance() {
    let Some(dir) = std::env::var_os("SNNC_MNIST_DIR") else {
        panic!("set SNNC_MNIST_DIR to the MNIST folder (.ci/run sets it to ../shared/data/mnist)");
    };
    let module = common::valid(common::load("diehl_cook_100.snn"));
    let train = module.train.as_ref().expect("train block");
    let data = snnc::cli::driver::load_data(train, Some(std::path::Path::new(&dir))).expect("MNIST");
    let config =
        snnc::train::RunConfig { epochs: Some(1), limit_train: Some(300), limit_test: Some(200), seed: 0, engine: EngineKind::Jit };
    let (params, history) = snnc::train::train_module::<f32>(&module, &data, &config, None, &mut snnc::train::Quiet).expect("trains");
    let accuracy = history.last().expect("an epoch").test_accuracy;
    assert!(accuracy > 0.3, "labelled test accuracy {accuracy}");
    // theta is carried with the parameters and grew where neurons fired.
    let theta = &params.neuron_params[0][3];
    assert!(theta.iter().any(|t| *t > 0.0201), "theta learned");
}

/// The plasticity runs the same on either engine: two samples of STDP training from the same
/// seed end with the same weights and theta on the oracle and the JIT (f64).
#[test]
fn stdp_learns_the_same_on_the_oracle_and_the_jit() {
    let module = network("DiehlCookStdp(nu_pre = 0.01, nu_post = 0.05)", "    every sample { normalize(weights(x, exc), total = 2) }\n");
    let train = module.train.as_ref().expect("train block");
    let features: Vec<Vec<f32>> = (0..2).map(|s| common::features(5, s)).collect();
    let examples: Vec<Example> =
        features.iter().enumerate().map(|(i, f)| Example { sample: SampleRef { id: i as u64, features: f }, label: 0 }).collect();
    let learn = |kind: EngineKind| {
        let engine = common::build::<f64>(kind, &module);
        let session = Session { module: &module, train, phase: &train.phases[0], engine: engine.as_ref(), seed: 5, recording: false };
        let mut method = method_for::<f64>(&train.method).expect("stdp is built");
        let mut params = init_params::<f64>(&module, 5);
        let mut net = vec![2.0];
        method.train_batch(&session, &mut params, &mut net, &examples, 0.0).expect("trains");
        params
    };
    let (oracle, jit) = (learn(EngineKind::Oracle), learn(EngineKind::Jit));
    assert_ne!(jit.weights[0], init_params::<f64>(&module, 5).weights[0], "the weights learned");
    let changed = common::assert_weights_close("stdp", &oracle, &jit, 1e-9);
    assert!(changed > 0);
    for (a, b) in oracle.neuron_params[0][3].iter().zip(&jit.neuron_params[0][3]) {
        assert!((a - b).abs() < 1e-12, "theta {a} vs {b}");
    }
}

/// The receptive-field grid: one 28 x 28 tile per neuron with a border, scaled to the largest
/// weight; the PNG decodes to that size and is not blank.
#[test]
fn receptive_fields_are_written_as_a_grid_of_tiles() {
    let (n_pre, n_post) = (784, 5);
    // Neuron j's weight of pixel i: 1 on row j of the image, else 0.
    let weights: Vec<f64> = (0..n_pre * n_post).map(|k| if (k / n_post) / 28 == k % n_post { 1.0 } else { 0.0 }).collect();
    let image = snnc::cli::figures::receptive_fields(&weights, n_pre, n_post).expect("a square input");
    // Five tiles in a 3 x 2 grid, 29 pixels a tile plus the outer border.
    assert_eq!((image.width, image.height), (3 * 29 + 1, 2 * 29 + 1));
    let bytes = image.png().expect("encodes");
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut pixels).expect("one frame");
    assert_eq!((info.width, info.height), (88, 59));
    assert_eq!(pixels[..info.buffer_size()], image.pixels[..]);
    // Neuron 2's tile (column 2, row 0) is white on its image row 2 and black elsewhere.
    let at = |x: usize, y: usize| image.pixels[y * image.width + x];
    assert_eq!(at(2 * 29 + 1 + 5, 1 + 2), 255);
    assert_eq!(at(2 * 29 + 1 + 5, 1 + 3), 0);
    assert_eq!(at(0, 0), 64, "border");
    assert!(snnc::cli::figures::receptive_fields(&weights[..10], 10, 1).is_none(), "10 inputs are not a square");
}

/// A decay slower than f32 resolves per step (Diehl & Cook's theta: tau 1e7 ms at dt 0.5 ms,
/// a factor 1 - 5e-8) keeps its rate in f32: the compiler carries what each step's rounding
/// loses in a hidden state. Over 100,000 steps theta follows the exact exponential (without
/// the compensation it is off by 0.4%).
#[test]
fn a_slow_decay_keeps_its_rate_in_f32() {
    let text = "import std::encoders\n\
        neuron Slow {\n    state theta: mV = 20 mV\n    input i\n    dtheta/dt = -theta / (1e7 ms)\n    on i { theta += i * 1 mV }\n}\n\
        network Net {\n    dt = 0.5 ms\n    steps = 100000\n    input x[5] = repeat(sample)\n    population p[4] = Slow\n    connect x -> p.i : dense(init = 0)\n}\n";
    let module = common::valid(common::module(text));
    assert!(module.populations[0].vars.iter().any(|v| v.name == "theta__residual"), "the compiler added the residual");
    let engine = common::build::<f32>(EngineKind::Jit, &module);
    let params = init_params::<f32>(&module, 1);
    let features = vec![0.5f32; 5];
    let samples = [SampleRef { id: 0, features: &features }];
    let ctx = Ctx { module: &module, seed: 1, net: &[] };
    let trace = engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
    let exact = 0.02 * (-(100_000.0 * 0.5) / 1e7f64).exp();
    let theta = f64::from(trace.state_after(trace.steps - 1, 0, 0)[0]);
    assert!((theta - exact).abs() / exact < 1e-5, "theta {theta} vs exact {exact}: relative error {}", (theta - exact).abs() / exact);
}

/// Every method's evaluation holds `frozen in eval` states: the generic evaluation pass (BPTT's)
/// runs the module with them held too, not only STDP's labelling and test passes.
#[test]
fn evaluation_holds_frozen_states_for_every_method() {
    let plain = network("DiehlCookStdp", "");
    let held = snnc::train::run::frozen_engine::<f32>(EngineKind::Jit, &plain).expect("builds").expect("theta is frozen in eval");
    let theta = held.0.populations[0].var_by_name("theta").expect("theta");
    assert!(held.0.populations[0].dynamics.iter().all(|(u, _)| u.var != theta), "theta's decay is dropped");
    assert!(held.0.populations[0].on_spike.iter().all(|u| u.var != theta), "theta's jump is dropped");
    let yin_yang = common::valid(common::load("yin_yang.snn"));
    assert!(snnc::train::run::frozen_engine::<f32>(EngineKind::Jit, &yin_yang).expect("builds").is_none());
}

/// A rule with a variable of each side: a per-synapse eligibility `e` written on both sides,
/// a presynaptic and a postsynaptic trace, and a weight update that reads all of them.
const ELIGIBILITY: &str = "synapse Eligibility {\n    param a = 0.01\n    state w\n    state e = 0\n    \
    trace x: tau = 10 ms\n    trace y: tau = 15 ms\n    delivers current\n    on pre {\n        deliver w\n        x = 1\n        \
    e = e + y\n        w = clip(w - a * y + 0.001 * e, 0, 1)\n    }\n    on post {\n        y += 0.5\n        e = e - x\n        \
    w = clip(w + 2 * a * x * exp(-w), 0, 1)\n    }\n}\n";

/// The updates compiled by the JIT change weights and traces bit for bit as the register
/// programs do, for rows (presynaptic spikes), columns (postsynaptic spikes) and per-synapse
/// variables, in both precisions.
#[test]
fn compiled_updates_match_the_interpreted_ones_bit_for_bit() {
    fn compare<F: snnc::exec::real::Real + std::fmt::Debug>(module: &Valid, names: &[&str]) {
        let mut interpreted = Plasticity::<F>::new(module).expect("interpreted");
        let mut compiled = Plasticity::<F>::compiled(module).expect("compiled");
        assert!(!compiled.clif().is_empty(), "kernels were compiled");
        let (n_pre, n_post) = (5, 2);
        let mut w_interpreted: Vec<F> = (0..n_pre * n_post).map(|k| F::of(0.05 + 0.09 * k as f64)).collect();
        let mut w_compiled = w_interpreted.clone();
        // A fixed pseudo-random sequence of spikes on both sides, some steps with both.
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        for _ in 0..300 {
            let pre: Vec<usize> = (0..n_pre).filter(|_| next() % 4 == 0).collect();
            let post: Vec<usize> = (0..n_post).filter(|_| next() % 5 == 0).collect();
            interpreted.step_projection(0, &mut w_interpreted, &pre, &post);
            compiled.step_projection(0, &mut w_compiled, &pre, &post);
        }
        assert_eq!(w_interpreted, w_compiled, "weights");
        assert_ne!(w_compiled, (0..n_pre * n_post).map(|k| F::of(0.05 + 0.09 * k as f64)).collect::<Vec<F>>(), "learned");
        for name in names {
            assert_eq!(interpreted.trace(0, name), compiled.trace(0, name), "trace {name}");
        }
    }
    let with_eligibility = |synapse: &str| {
        let text = format!(
            "import std::neurons\nimport std::encoders\nimport std::synapses\n{ELIGIBILITY}\
             network Net {{\n    dt = 0.5 ms\n    steps = 20\n    input x[5] = poisson(rate = sample * 200 Hz)\n    \
             population exc[2] = Leaky(beta = 0.9, threshold = 1)\n    connect x -> exc.i : dense(init = 0.5) via {synapse}\n}}\n\
             train {{\n    data = yin_yang(train = 20, test = 10, seed = 1)\n    method = stdp\n    \
             predict = assigned_class(count(exc))\n    batch = 1\n}}\n"
        );
        common::valid(common::module(&text))
    };
    for (module, names) in [
        (network("DiehlCookStdp(nu_pre = 0.05, nu_post = 0.1)", ""), vec!["pre", "post1", "post2"]),
        (network("PowerLawStdp(eta = 0.05, x_tar = 0.4, w_max = 1.0, mu = 0.2)", ""), vec!["x_pre"]),
        (with_eligibility("Eligibility(a = 0.02)"), vec!["x", "y"]),
    ] {
        compare::<f32>(&module, &names);
        compare::<f64>(&module, &names);
    }
    let eligibility = with_eligibility("Eligibility");
    let sides = Plasticity::<f32>::new(&eligibility).expect("sides").sides(0).expect("projection 0").to_vec();
    assert_eq!(sides, [Side::Weight, Side::Synapse, Side::Pre, Side::Post], "w, e per synapse, x pre, y post");
}

/// A streaming pass keeps what a full trace ends with: the same spike counts and final states
/// on the JIT as the oracle's full trace, with delays longer than one step (a window of
/// several rows) from an input and from a population.
#[test]
fn a_streaming_pass_ends_where_the_full_trace_does() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    steps = 40\n    rest = 7 ms\n    \
                input x[5] = poisson(rate = sample * 300 Hz)\n    \
                population a[6] = Leaky(beta = 0.8, threshold = 0.6)\n    population b[4] = Leaky(beta = 0.9, threshold = 0.7)\n    \
                connect x -> a.i : dense(init = uniform(0.1, 0.9)) delay 3 ms\n    \
                connect a -> b.i : dense(init = uniform(0.2, 0.8)) delay 2 ms\n    \
                connect b -> a.i : dense(init = uniform(-0.3, 0.1)) feedback\n}\n\
                train {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss l = sum(count(b))\n    \
                predict = argmax(count(b))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let module = common::valid(common::module(text));
    assert_eq!(snnc::exec::schedule::window_rows(&module), 4, "the longest delay is 3 steps");
    let params = init_params::<f32>(&module, 3);
    let features = common::features(5, 1);
    let sample = SampleRef { id: 7, features: &features };
    let (oracle, jit) = (common::build::<f32>(EngineKind::Oracle, &module), common::build::<f32>(EngineKind::Jit, &module));
    let ctx = Ctx { module: &module, seed: 11, net: &[] };
    let full = oracle.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &[sample], hoisted: None }, None);
    let expected = snnc::exec::state::Summary::of(&full, 0);
    let streamed = jit.stream(&ctx, ParamsAccess::Shared(&params), sample, None);
    assert_eq!(streamed.steps, 47);
    assert!(expected.counts.iter().all(|c| c.iter().sum::<u32>() > 0), "both layers spike: {:?}", expected.counts);
    assert_eq!(streamed.counts, expected.counts, "spike counts");
    assert_eq!(streamed.last, expected.last, "final states");
    // `record` statements written step by step from the window, as from the full trace.
    let records = [(snnc::ir::PopId(1), None), (snnc::ir::PopId(0), Some(snnc::ir::VarId(0))), (snnc::ir::PopId(0), None)];
    let mut from_trace = snnc::train::hooks::RecordText::default();
    snnc::train::hooks::record_trace(&module, &records, &full, &[sample.id], &mut from_trace);
    let mut from_stream = snnc::train::hooks::RecordText::default();
    let mut recorder = snnc::train::hooks::Recorder { module: &module, records: &records, id: sample.id, out: &mut from_stream };
    jit.stream(&ctx, ParamsAccess::Shared(&params), sample, Some(&mut recorder));
    assert!(from_trace.spikes.lines().count() > 5 && from_trace.variables.lines().count() == 47 * 6);
    assert_eq!(from_stream.spikes, from_trace.spikes, "spike records");
    assert_eq!(from_stream.variables, from_trace.variables, "variable records");
}
