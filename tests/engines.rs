//! The compiled engine against the oracle on the same model and seed: in f64 spike rasters
//! identical and states within 1e-9, in f32 rasters identical and states within a few ulps;
//! gradients likewise; the derived backward kernels against the oracle's tape step by step;
//! whole training steps; determinism across thread counts on a model large enough to run in
//! parallel; the event-driven path.

mod common;

use common::{assert_weights_close, build, examples, features, gradients, gradients_match, load, model_names, valid};
use snnc::exec::engine::{Ctx, Engine, EngineKind, ParamsAccess, Shard};
use snnc::exec::real::Real;
use snnc::exec::state::{Params, SampleRef, Trace, init_params, net_params};
use snnc::ir::validate::Valid;

/// Values equal within `ulps` units in the last place of the larger magnitude (or of 1).
fn close<F: Real>(a: F, b: F, ulps: f64) -> bool {
    let scale = a.abs().max(b.abs()).max(F::one()).into_f64();
    (a - b).abs().into_f64() <= ulps * F::epsilon().into_f64() * scale
}

/// Spike rasters, refractory counters and encoder outputs equal, states within `ulps`.
fn assert_same_run<F: Real>(name: &str, reference: &Trace<F>, other: &Trace<F>, ulps: f64) {
    assert_eq!(reference.spikes, other.spikes, "{name}: spike rasters");
    assert_eq!(reference.refractory, other.refractory, "{name}: refractory counters");
    assert_eq!(reference.inputs, other.inputs, "{name}: encoder outputs");
    for (p, (px, py)) in reference.states.iter().zip(&other.states).enumerate() {
        for (v, (vx, vy)) in px.iter().zip(py).enumerate() {
            for (k, (a, b)) in vx.iter().zip(vy).enumerate() {
                let (t, i) = (k / reference.row(p), k % reference.row(p));
                assert!(close(*a, *b, ulps), "{name}: state row {t} pop {p} var {v} element {i}: {a} vs {b}");
            }
        }
    }
}

/// A shipped model with few steps, so that the oracle runs the conv models quickly.
fn short(name: &str, steps: usize) -> Valid {
    let mut m = load(name);
    m.steps = m.steps.min(if m.populations.iter().any(|p| p.size() > 2000) { 2 } else { steps });
    m.rest_steps = m.rest_steps.min(2);
    valid(m)
}

fn forward<F: Real>(engine: &dyn Engine<F>, m: &Valid, params: &Params<F>, samples: &[SampleRef]) -> Trace<F> {
    let net = net_params::<F>(m);
    let ctx = Ctx { module: m, seed: 5, net: &net };
    engine.forward(&ctx, ParamsAccess::Shared(params), Shard { samples, hoisted: None }, None)
}

/// Three samples through the oracle and the compiled engine in f64 (the same run, as
/// [`assert_same_run`] says), then the gradients of both precisions; returns the oracle's
/// trace.
fn agrees_with_the_oracle(name: &str, m: &Valid) -> Trace<f64> {
    let n: usize = m.inputs[0].shape.iter().product();
    let (a, b, c) = (features(n, 1), features(n, 2), features(n, 3));
    let samples = [SampleRef { id: 4, features: &a }, SampleRef { id: 9, features: &b }, SampleRef { id: 2, features: &c }];
    let params = init_params::<f64>(m, 3);
    let reference = forward(build::<f64>(EngineKind::Oracle, m).as_ref(), m, &params, &samples);
    let jit = forward(build::<f64>(EngineKind::Jit, m).as_ref(), m, &params, &samples);
    assert_same_run(name, &reference, &jit, 1e-9 / f64::EPSILON);
    gradients_match::<f64>(name, m, 1.0, 1e-9);
    gradients_match::<f32>(name, m, 1.0, 1e-4);
    reference
}

fn forward_matches_on_every_model<F: Real>(ulps: f64) {
    for name in model_names() {
        let m = short(&name, 8);
        let n: usize = m.inputs[0].shape.iter().product();
        let (a, b, c) = (features(n, 3), features(n, 4), features(n, 5));
        // Three samples: odd populations give odd rows, so the kernels' one-lane tail runs too.
        let samples = [SampleRef { id: 4, features: &a }, SampleRef { id: 9, features: &b }, SampleRef { id: 2, features: &c }];
        let params = init_params::<F>(&m, 3);
        let reference = forward(build::<F>(EngineKind::Oracle, &m).as_ref(), &m, &params, &samples);
        let jit = forward(build::<F>(EngineKind::Jit, &m).as_ref(), &m, &params, &samples);
        assert_same_run(&format!("{name} in {}", F::NAME), &reference, &jit, ulps);
    }
}

#[test]
fn jit_forward_matches_the_f64_oracle_on_every_model() {
    forward_matches_on_every_model::<f64>(1e-9 / f64::EPSILON);
}

#[test]
fn jit_forward_matches_the_f32_oracle_on_every_model() {
    // Projections sum hundreds of terms in another order (a GEMM against the oracle's loop),
    // and the differences carry over steps; the neuron kernels alone are exact (next test).
    forward_matches_on_every_model::<f32>(64.0);
}

/// The compiled neuron step against the oracle's, from the same state, ports and counters:
/// bit-identical in f32 on every population of every shipped model and every step.
#[test]
fn jit_neuron_steps_are_bit_identical_to_the_f32_oracle() {
    for name in model_names() {
        let m = short(&name, 8);
        let n: usize = m.inputs[0].shape.iter().product();
        let (a, b, c) = (features(n, 3), features(n, 4), features(n, 5));
        let samples = [SampleRef { id: 4, features: &a }, SampleRef { id: 9, features: &b }, SampleRef { id: 2, features: &c }];
        let params = init_params::<f32>(&m, 3);
        let net = net_params::<f32>(&m);
        let reference = forward(build::<f32>(EngineKind::Oracle, &m).as_ref(), &m, &params, &samples);
        let compiled = snnc::exec::engine::compile_module::<f32>(&m).unwrap_or_else(|e| panic!("{name}: {e}"));
        for p in 0..m.populations.len() {
            for t in 0..reference.steps {
                let mut trace = reference.clone();
                let mut counters = trace.counters_at(t, p).to_vec();
                compiled.step(&m, p, t, &mut trace, &mut counters, &net);
                assert_eq!(trace.spikes[p], reference.spikes[p], "{name}: spikes of population {p} at step {t}");
                for (v, (x, y)) in trace.states[p].iter().zip(&reference.states[p]).enumerate() {
                    assert!(x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits()), "{name}: population {p} variable {v} after step {t}");
                }
                if t + 1 < reference.steps {
                    assert_eq!(counters, reference.counters_at(t + 1, p), "{name}: refractory counters of population {p} after step {t}");
                }
            }
        }
    }
}

#[test]
fn jit_gradients_match_the_oracle() {
    for name in ["yin_yang.snn", "lab_lif_mnist.snn", "snntorch_tutorial5.snn"] {
        let m = short(name, 12);
        gradients_match::<f64>(name, &m, 1.0, 1e-9);
        gradients_match::<f32>(name, &m, 1.0, 1e-4);
    }
}

#[test]
fn recurrent_networks_run_step_by_step_and_match_the_oracle() {
    let text = std::fs::read_to_string(common::root().join("models/yin_yang.snn")).expect("model");
    let text = text.replace(
        "    connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))\n",
        "    connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))\n    connect hidden -> hidden.i : dense(init = uniform(-0.2, 0.2)) feedback\n    connect out.v -> hidden.i : dense(init = uniform(-0.3, 0.3)) feedback\n",
    );
    let m = valid(common::module(&text));
    assert!(!m.is_feed_forward(), "the feedback edges make it recurrent");
    let n: usize = m.inputs[0].shape.iter().product();
    let (a, b) = (features(n, 1), features(n, 2));
    let samples = [SampleRef { id: 4, features: &a }, SampleRef { id: 9, features: &b }];
    let params = init_params::<f64>(&m, 3);
    let reference = forward(build::<f64>(EngineKind::Oracle, &m).as_ref(), &m, &params, &samples);
    let jit = forward(build::<f64>(EngineKind::Jit, &m).as_ref(), &m, &params, &samples);
    assert_same_run("recurrent", &reference, &jit, 1e-9 / f64::EPSILON);
    gradients_match::<f64>("recurrent", &m, 1.0, 1e-9);
}

/// Connections carrying states (forwards, delayed, and fed back through `l2_normalize`, as
/// seeds/000's readout drives layer 3) on a spiking network: the compiled engine's traces and
/// gradients against the oracle, the feed-forward schedule included. The readout is driven
/// from the input too, so that its norm is never 0 (where normalising has the slope 1e12 in
/// both engines, as in PyTorch, and f32 differences would be scaled up by as much).
#[test]
fn state_carrying_connections_match_the_oracle() {
    let text = std::fs::read_to_string(common::root().join("models/yin_yang.snn")).expect("model");
    let feed_forward = text.replace(
        "    connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))\n",
        "    connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))\n    connect hidden.v -> out.i : dense(init = uniform(-0.3, 0.3)) delay 2 ms\n",
    );
    let recurrent = feed_forward.replace(
        "delay 2 ms\n",
        "delay 2 ms\n    connect l2_normalize(out.v) -> hidden.i : dense(init = uniform(-0.5, 0.5)) feedback\n    connect xy -> out.i : dense(init = uniform(-0.5, 0.5))\n",
    );
    for (name, text, feed_forward) in [("forward state", &feed_forward, true), ("normalised feedback state", &recurrent, false)] {
        let m = valid(common::module(text));
        assert_eq!(m.is_feed_forward(), feed_forward, "{name}");
        assert!(m.projections.iter().any(|p| matches!(p.source, snnc::ir::Source::State(_))), "{name}: a state source");
        agrees_with_the_oracle(name, &m);
    }
}

/// Convolutions and transposed convolutions with stride, padding, dilation and groups, and
/// sum, average and max pooling, from
/// spikes (sparse enough for the event-driven products, and dense) and from a membrane:
/// the compiled engine (im2col and GEMM, or events) against the oracle's loops, forward and
/// gradients, with three samples.
#[test]
fn convolutions_match_the_oracle() {
    let net = |threshold: f64, surrogate: &str, neuron: &str| {
        let membrane = if neuron == "BoundedLIF" { "u" } else { "v" };
        format!(
            "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {{\n    dt = 1 ms\n    steps = 6\n    input x[5] = repeat(sample)\n    \
             population p[2, 7, 6] = {neuron}(threshold = {threshold})\n    population c[4, 4, 3] = {neuron}(threshold = {threshold})\n    population d[3, 8, 7] = {neuron}(threshold = {threshold})\n    \
             population e[2, 8, 7] = {neuron}(threshold = 0.3)\n    population s[2, 3, 2] = {neuron}(threshold = 0.5)\n    \
             population out[3] = LI(beta = 0.9)\n    \
             connect x -> p.i : dense(init = uniform(-0.5, 1.5))\n    \
             connect p -> c.i : conv2d(kernel = 3, stride = 2, padding = 1, groups = 2, init = uniform(-0.5, 1.5))\n    \
             connect p.{membrane} -> c.i : conv2d(kernel = 3, stride = 2, padding = 1, groups = 2, init = uniform(-0.3, 0.3))\n    \
             connect c -> d.i : conv_transpose2d(kernel = 3, dilation = 2, init = uniform(-0.5, 1.5))\n    \
             connect d -> e.i : conv2d(kernel = 3, padding = 1, init = uniform(-0.5, 1.5))\n    \
             connect e -> out.i : dense(init = uniform(-0.5, 0.5))\n    \
             connect p -> s.i : max_pool2d(kernel = 3, stride = 2)\n    connect p.{membrane} -> s.i : avg_pool2d(kernel = 3, stride = 2, weight = 0.5)\n    \
             connect p -> s.i : sum_pool2d(kernel = 3, stride = 3, padding = 1, weight = 0.2) delay 1 ms\n    \
             connect s -> out.i : dense(init = uniform(-0.5, 0.5))\n}}\n\
             train {{\n    data = yin_yang()\n    method = bptt(surrogate = {surrogate})\n    loss ce = cross_entropy(sum_t(out.v), label)\n    \
             predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}}\n"
        )
    };
    // With `straight_through_above` the spike adjoint is read only where a neuron fired
    // (`spike_gated`), so the compiled engine gathers input gradients at spikes alone; the
    // oracle computes them everywhere.
    // Leaky fires on v > threshold, where `x >= 0` passes a gradient at x = 0 without a spike:
    // not gated; BoundedLIF fires on u >= threshold; LI never fires.
    let cases = [
        ("sparse spikes", 1.2, "fast_sigmoid()", "Leaky", 0),
        ("dense spikes", 0.05, "fast_sigmoid()", "Leaky", 0),
        ("straight-through, not gated", 1.2, "straight_through_above()", "Leaky", 0),
        ("sparse spikes, gated", 1.2, "straight_through_above()", "BoundedLIF", 5),
        ("dense spikes, gated", 0.05, "straight_through_above()", "BoundedLIF", 5),
    ];
    for (name, threshold, surrogate, neuron, gated) in cases {
        let m = valid(common::module(&net(threshold, surrogate, neuron)));
        let s = m.train.as_ref().and_then(|t| t.method.surrogate()).expect("a surrogate");
        assert_eq!(m.populations.iter().filter(|p| snnc::ir::grad::spike_gated(p, s)).count(), gated, "{name}: gated populations");
        let reference = agrees_with_the_oracle(name, &m);
        let rate = |p: usize| reference.spikes[p].count(0..reference.spikes[p].len()) as f64 / reference.spikes[p].len() as f64;
        assert!((1..4).all(|p| rate(p) > 0.0), "{name}: the convolutional layers fire ({}, {}, {})", rate(1), rate(2), rate(3));
    }
}

/// Kernels, strides, padding and dilation that differ between rows and columns, 1-d
/// convolutions, transposed convolutions and pools on `[channels, length]` shapes, and a
/// rectangular pooling window: the compiled engine against the oracle, forward and gradients,
/// from sparse spikes (the event-driven products), dense spikes and membranes.
#[test]
fn rectangular_and_one_dimensional_convolutions_match_the_oracle() {
    let net = |threshold: f64| {
        format!(
            "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {{\n    dt = 1 ms\n    steps = 6\n    input x[5] = repeat(sample)\n    \
             population p[2, 6, 9] = Leaky(threshold = {threshold})\n    population c[3, 6, 4] = Leaky(threshold = {threshold})\n    \
             population d[2, 6, 8] = Leaky(threshold = {threshold})\n    population r[2, 3, 3] = Leaky(threshold = 0.5)\n    \
             population l[2, 12] = Leaky(threshold = {threshold})\n    population m[3, 6] = Leaky(threshold = {threshold})\n    \
             population n[2, 12] = Leaky(threshold = {threshold})\n    population q[2, 6] = Leaky(threshold = 0.5)\n    \
             population out[3] = LI(beta = 0.9)\n    \
             connect x -> p.i : dense(init = uniform(-0.5, 1.5))\n    connect x -> l.i : dense(init = uniform(-0.5, 1.5))\n    \
             connect p -> c.i : conv2d(kernel = [3, 4], stride = [1, 2], padding = 1, init = uniform(-0.5, 1.5))\n    \
             connect p.v -> c.i : conv2d(kernel = [2, 3], stride = [1, 2], padding = [1, 0], dilation = [2, 1], init = uniform(-0.3, 0.3))\n    \
             connect c -> d.i : conv_transpose2d(kernel = [3, 4], stride = [1, 2], padding = 1, init = uniform(-0.5, 1.5))\n    \
             connect p -> r.i : avg_pool2d(kernel = [2, 3])\n    \
             connect l -> m.i : conv1d(kernel = 3, stride = 2, padding = 1, init = uniform(-0.5, 1.5))\n    \
             connect m -> n.i : conv_transpose1d(kernel = 3, stride = 2, padding = 1, output_padding = 1, init = uniform(-0.5, 1.5))\n    \
             connect l.v -> q.i : max_pool1d(kernel = 2)\n    connect l -> q.i : sum_pool1d(kernel = 3, stride = 2, padding = 1, weight = 0.5)\n    \
             connect d -> out.i : dense(init = uniform(-0.5, 0.5))\n    connect r -> out.i : dense(init = uniform(-0.5, 0.5))\n    \
             connect n -> out.i : dense(init = uniform(-0.5, 0.5))\n    connect q -> out.i : dense(init = uniform(-0.5, 0.5))\n}}\n\
             train {{\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(sum_t(out.v), label)\n    \
             predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}}\n"
        )
    };
    for (name, threshold) in [("sparse spikes", 1.2), ("dense spikes", 0.05)] {
        let m = valid(common::module(&net(threshold)));
        let shape = |pop: &str| m.populations.iter().find(|p| p.name == pop).map(|p| p.shape.clone());
        assert_eq!(shape("c"), Some(vec![3, 6, 4]));
        let reference = agrees_with_the_oracle(name, &m);
        let rate = |p: usize| reference.spikes[p].count(0..reference.spikes[p].len()) as f64 / reference.spikes[p].len() as f64;
        assert!([1, 2, 5, 6].iter().all(|p| rate(*p) > 0.0), "{name}: the convolutional layers fire");
    }
}

/// A convolution and a transposed convolution from sparse spikes of 16 channels, trained with
/// a surrogate that is zero below the threshold: the spikes' adjoints are read at spikes alone,
/// so the compiled engine gathers them there and sums the weight gradients in the same pass
/// (`conv::grads_at_spikes`). Forward and gradients against the oracle.
#[test]
fn gradients_gathered_at_sparse_spikes_match_the_oracle() {
    use snnc::exec::kernels::conv::{Product, event_crossover};
    let text = "import std::neurons\nimport std::encoders\n\
                surrogate above() {\n    grad = select(x > 0, 1, 0)\n}\n\
                network N {\n    dt = 1 ms\n    steps = 8\n    input x[5] = repeat(sample)\n    \
                population p[16, 5, 5] = Leaky(threshold = 2)\n    population c[16, 3, 3] = Leaky(threshold = 1.5)\n    \
                population d[16, 5, 5] = Leaky(threshold = 1.5)\n    population out[3] = LI(beta = 0.9)\n    \
                connect x -> p.i : dense(init = uniform(-0.5, 0.6))\n    \
                connect p -> c.i : conv2d(kernel = 3, init = uniform(-0.2, 0.25))\n    \
                connect c -> d.i : conv_transpose2d(kernel = 3, init = uniform(-0.2, 0.6))\n    \
                connect d -> out.i : dense(init = uniform(-0.5, 0.5))\n}\n\
                train {\n    data = yin_yang()\n    method = bptt(surrogate = above())\n    loss ce = cross_entropy(sum_t(out.v), label)\n    \
                predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let m = valid(common::module(text));
    let reference = agrees_with_the_oracle("gathered at spikes", &m);
    let rate = |p: usize| reference.spikes[p].count(0..reference.spikes[p].len()) as f64 / reference.spikes[p].len() as f64;
    // The sources of both convolutions fire, below the density where their gradients run
    // event-driven (runs of 16 channels).
    for p in [0, 1] {
        assert!(rate(p) > 0.0 && rate(p) < event_crossover(Product::WeightGrad, 16), "population {p}: rate {}", rate(p));
    }
    // Both convolutions' weights get a gradient (not only the readout's).
    let inputs: Vec<Vec<f32>> = (0..3).map(|s| features(5, s)).collect();
    let (_, grads) =
        gradients(&m, build::<f64>(EngineKind::Jit, &m).as_ref(), &init_params::<f64>(&m, 8), &examples(&inputs, &[0, 1, 2]), 2);
    for proj in [1, 2] {
        assert!(grads.weights[proj].iter().any(|g| *g != 0.0), "projection {proj} has a gradient");
    }
}

/// `rand_per_sample()` is drawn once per sample and element: the same at every step, different
/// between samples and elements, the same in the compiled encoder as in the oracle's; an
/// encoder that reads it (and not `rand()`) is constant over time.
#[test]
fn per_sample_draws_hold_over_steps() {
    let text = "import std::neurons\nimport std::surrogates\nencoder noisy(x, noise = 0.5) {\n    current = (1 - noise) * x + noise * rand_per_sample()\n}\n\
                encoder flicker(x) {\n    spike when rand() < 0.5 * (x + rand_per_sample())\n}\n\
                network N {\n    dt = 1 ms\n    steps = 5\n    input x[5] = noisy(sample)\n    input y[5] = flicker(sample)\n    \
                population a[4] = Leaky(beta = 0.8, threshold = 0.6)\n    connect x -> a.i : dense(init = uniform(0, 1))\n    \
                connect y -> a.i : dense(init = uniform(0, 1))\n}\n\
                train {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss l = sum(count(a))\n    \
                predict = argmax(count(a))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let m = valid(common::module(text));
    assert!(m.inputs[0].is_constant_over_time() && !m.inputs[1].is_constant_over_time());
    let (a, b) = (features(5, 1), features(5, 2));
    let samples = [SampleRef { id: 4, features: &a }, SampleRef { id: 9, features: &b }];
    let params = init_params::<f64>(&m, 3);
    let reference = forward(build::<f64>(EngineKind::Oracle, &m).as_ref(), &m, &params, &samples);
    let jit = forward(build::<f64>(EngineKind::Jit, &m).as_ref(), &m, &params, &samples);
    assert_same_run("per-sample draws", &reference, &jit, 1e-9 / f64::EPSILON);
    let row = |t: usize| reference.input_at(t, 0).to_vec();
    assert!((1..5).all(|t| row(t) == row(0)), "the noisy input is the same at every step");
    // Element k of sample b: 0.5 x + 0.5 u(b, k); the draws differ between samples and elements.
    let draws: Vec<f64> = row(0).iter().zip(a.iter().chain(&b)).map(|(v, x)| 2.0 * v - f64::from(*x)).collect();
    assert!(draws.iter().all(|u| (0.0..1.0).contains(u)), "{draws:?}");
    let mut distinct = draws.clone();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    assert_eq!(distinct.len(), 10, "every sample and element draws its own value: {draws:?}");
}

/// Trainable per-neuron time constants (seeds/000's two-compartment ALIF): the kernels compute
/// their propagators once per neuron and call, and read them back per element, which must
/// change nothing: forward and gradients (weights and time constants) against the oracle,
/// with 7 neurons (a one-lane tail per sample) and three samples.
#[test]
fn hoisted_parameter_propagators_match_the_oracle() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 0.5 ms\n    steps = 9\n    \
                input x[5] = repeat(sample)\n    population h[7] = TwoCompartmentALIF\n    population out[3] = LeakyIntegrator\n    \
                connect x -> h.soma.ff : dense(init = uniform(-0.6, 0.6))\n    connect h -> out.i : dense(init = uniform(-1, 1))\n    \
                connect l2_normalize(out.u) -> h.apical.fb : dense(init = uniform(-1, 1)) feedback\n}\n\
                train {\n    data = yin_yang()\n    method = bptt(surrogate = gaussian_mixture(sigma = 0.5, width_ratio = 6, height = 0.15, scale = 0.5))\n    \
                loss nll = nll(log_softmax(last_t(out.u)), label)\n    loss e = 0.1 * mean_t(mean(h.energy))\n    \
                predict = argmax(last_t(out.u))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let m = valid(common::module(text));
    let compiled = snnc::exec::engine::compile_module::<f32>(&m).expect("compiles");
    // exp(-dt / tau) for tau_m, tau_a and tau_adp, and 1 - exp(-dt / tau_adp).
    let (forward_rows, backward_rows) = compiled.hoisted(0);
    assert!(forward_rows >= 3 && backward_rows >= 3, "hoisted: {forward_rows} forward, {backward_rows} backward");
    let reference = agrees_with_the_oracle("hoisted", &m);
    let (fired, elements) = (reference.spikes[0].count(0..reference.spikes[0].len()), reference.spikes[0].len());
    assert!(fired > elements / 10 && fired < elements * 9 / 10, "the two-compartment layer fires in {fired} of {elements}");
}

/// The streaming pass (a window of rows, as STDP and `snnc eval` run) reads carried states
/// where the full trace has them: with a delay from an earlier population, and fed back.
#[test]
fn a_streaming_pass_carries_states_as_the_full_trace_does() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    steps = 30\n    \
                input x[5] = repeat(sample)\n    \
                population a[6] = Leaky(beta = 0.8, threshold = 0.6)\n    population b[4] = LI(beta = 0.9)\n    \
                connect x -> a.i : dense(init = uniform(0.1, 0.9))\n    \
                connect a.v -> b.i : dense(init = uniform(-0.4, 0.8)) delay 2 ms\n    \
                connect l2_normalize(b.v) -> a.i : dense(init = uniform(-0.3, 0.3)) feedback\n    \
                connect b.v -> b.i : dense(init = uniform(-0.1, 0.1)) feedback\n}\n\
                train {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss l = sum(count(a))\n    \
                predict = argmax(count(a))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let m = valid(common::module(text));
    assert_eq!(snnc::exec::schedule::window_rows(&m), 3, "the longest delay is 2 steps");
    let params = init_params::<f64>(&m, 3);
    let features = common::features(5, 1);
    let sample = SampleRef { id: 7, features: &features };
    let jit = build::<f64>(EngineKind::Jit, &m);
    let ctx = Ctx { module: &m, seed: 11, net: &[] };
    let full = jit.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &[sample], hoisted: None }, None);
    let expected = snnc::exec::state::Summary::of(&full, 0);
    let streamed = jit.stream(&ctx, ParamsAccess::Shared(&params), sample, None);
    assert!(expected.counts[0].iter().sum::<u32>() > 0, "the spiking layer spikes");
    assert_eq!(streamed.counts, expected.counts, "spike counts");
    for (p, (x, y)) in expected.last.iter().zip(&streamed.last).enumerate() {
        for (v, (a, b)) in x.iter().zip(y).enumerate() {
            assert!(a.iter().zip(b).all(|(a, b)| close(*a, *b, 1e-9 / f64::EPSILON)), "final state {p}/{v}: {a:?} vs {b:?}");
        }
    }
}

#[test]
fn delays_from_inputs_and_populations_shift_what_arrives() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    steps = 8\n    input x[5] = repeat(sample)\n    population a[5] = Leaky(beta = 0.5, threshold = 0.5)\n    population b[5] = Leaky(beta = 0.5, threshold = 100)\n    connect x -> a.i : one_to_one(weight = 1) delay 3 ms\n    connect a -> b.i : one_to_one(weight = 1) delay 2 ms\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss l = sum(count(b))\n    predict = argmax(count(b))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let m = valid(common::module(text));
    let features = [1.0f32, 0.0, 0.0, 0.0, 0.0];
    let samples = [SampleRef { id: 0, features: &features }];
    let params = init_params::<f64>(&m, 1);
    for kind in [EngineKind::Oracle, EngineKind::Jit] {
        let trace = forward(build::<f64>(kind, &m).as_ref(), &m, &params, &samples);
        // The input reaches `a` at step 3; `a` spikes there, and `b` hears it 2 steps later.
        for t in 0..3 {
            assert_eq!(trace.state_after(t, 0, 0)[0], 0.0, "{kind:?}: nothing before the delay, step {t}");
        }
        assert_eq!(trace.spikes_at::<f64>(3, 0)[0], 1.0, "{kind:?}: `a` fires when the input arrives");
        assert_eq!(trace.state_after(4, 1, 0)[0], 0.0, "{kind:?}: `b` hears nothing yet at step 4");
        assert_eq!(trace.state_after(5, 1, 0)[0], 1.0, "{kind:?}: `b` hears the spike of step 3 at step 5");
    }
}

/// The JIT's backward kernels are compiled from the derived IR (snnc::ir::grad); on every
/// population of every shipped model, one step's adjoint equals the oracle's tape, from
/// arbitrary adjoints after the step.
#[test]
fn derived_backward_steps_match_the_tape_on_every_population() {
    use snnc::exec::oracle::backward::{NeuronStep, record_step};
    use snnc::exec::oracle::tape::Tape;
    let surrogate = load("yin_yang.snn").train.expect("train").method.surrogate().expect("bptt").clone();
    let mut checked = 0;
    for name in model_names() {
        let mut m = load(&name);
        m.steps = m.steps.min(if m.populations.iter().any(|p| p.size() > 2000) { 2 } else { 4 });
        m.rest_steps = 0;
        let mut train = load("yin_yang.snn").train.expect("train");
        train.method = snnc::ir::train::Method::Bptt { surrogate: surrogate.clone() };
        m.train = Some(train);
        let m = valid(m);
        let compiled = match snnc::exec::engine::compile_module::<f64>(&m) {
            Ok(compiled) => compiled,
            // Neurons that draw random numbers are not compiled (the forward test says so).
            Err(snnc::exec::engine::EngineError::Gradient { .. }) => continue,
            Err(error) => panic!("{name}: {error}"),
        };
        let n: usize = m.inputs[0].shape.iter().product();
        let (a, b, c) = (features(n, 3), features(n, 4), features(n, 5));
        let samples = [SampleRef { id: 4, features: &a }, SampleRef { id: 9, features: &b }, SampleRef { id: 2, features: &c }];
        let params = init_params::<f64>(&m, 3);
        let net = net_params::<f64>(&m);
        let trace = forward(build::<f64>(EngineKind::Oracle, &m).as_ref(), &m, &params, &samples);
        let t = trace.steps - 1;
        for (p, pop) in m.populations.iter().enumerate() {
            let r = trace.row(p);
            let d_after: Vec<Vec<f64>> =
                (0..pop.vars.len()).map(|v| (0..r).map(|k| ((k * 7 + v * 3) % 11) as f64 / 5.0 - 1.0).collect()).collect();
            let d_spike: Vec<f64> = (0..r).map(|k| ((k * 5) % 13) as f64 / 6.0 - 1.0).collect();
            let (jit_before, jit_ports) =
                snnc::exec::schedule::step_adjoint(&compiled, &m, &params, &trace, &net, p, t, &d_after, &d_spike);
            let mut tape = Tape::default();
            for k in 0..r {
                let before: Vec<f64> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v)[k]).collect();
                let ports: Vec<f64> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q)[k]).collect();
                let step = NeuronStep {
                    module: &m,
                    pop,
                    counter: trace.counters_at(t, p)[k],
                    rng: snnc::exec::state::neuron_rng(5, samples[k / pop.size()].id, t, p, k % pop.size()),
                    time: t as f64 * m.dt,
                    net: &net,
                    surrogate: &surrogate,
                };
                let recorded = record_step(&mut tape, &step, &before, &ports);
                let mut grads = vec![0.0; tape.ops.len()];
                for (v, slot) in recorded.vars_after.iter().enumerate() {
                    grads[*slot] += d_after[v][k];
                }
                grads[recorded.spike] += d_spike[k];
                tape.backward(&mut grads);
                for (what, leaves, jit) in [("state", &recorded.var_leaves, &jit_before), ("port", &recorded.port_leaves, &jit_ports)] {
                    for (i, leaf) in leaves.iter().enumerate() {
                        let (a, b) = (grads[*leaf], jit[i][k]);
                        assert!(
                            (a - b).abs() <= 1e-9 * (1.0 + a.abs()),
                            "{name} {}: d {what} {i} element {k}: tape {a} vs jit {b}",
                            pop.name
                        );
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "{checked} populations compared");
}

/// Whole training steps (batch-level hoisting, shards, reduction, optimiser) give the same
/// weights on the oracle and the JIT.
#[test]
fn training_steps_agree_across_engines() {
    let mut m = load("yin_yang.snn");
    let train = m.train.as_mut().expect("train");
    train.phases[0].optimizer.kind = snnc::ir::train::OptimizerKind::Sgd;
    train.phases[0].optimizer.lr = 0.5;
    let m = valid(m);
    let data = snnc::data::yin_yang(80, 8, 7);
    let run = |engine| {
        let config = snnc::train::RunConfig { epochs: Some(1), seed: 3, engine, ..Default::default() };
        snnc::train::train_module::<f64>(&m, &data, &config, None, &mut snnc::train::Quiet).expect("trains").0
    };
    let reference = run(EngineKind::Oracle);
    let initial = init_params::<f64>(&m, 3 ^ m.train.as_ref().expect("train").seed);
    assert_ne!(reference.weights, initial.weights, "training moved the weights");
    assert_weights_close("jit", &reference, &run(EngineKind::Jit), 1e-9);
}

/// An MNIST-sized network (784-300-10, repeat encoding) whose batch of 96 is three shards, whose
/// hoisted input GEMM has three column blocks and whose optimiser step has many chunks: the
/// weights after training are bit-identical on 1, 2 and 3 threads.
#[test]
fn jit_training_is_deterministic_across_thread_counts() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork Wide {\n    steps = 5\n    input pixels[784] = repeat(image)\n    population hidden[300] = Leaky(beta = 0.9, threshold = 1.0)\n    population out[10] = Leaky(beta = 0.9, threshold = 1.0)\n    connect pixels -> hidden.i : dense(init = uniform(-0.05, 0.1))\n    connect hidden -> out.i : dense(init = uniform(-0.1, 0.2))\n}\ntrain {\n    data = mnist(dir = \"unused\")\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(count(out), label)\n    predict = argmax(count(out))\n    optimizer = adam(lr = 1e-3)\n    batch = 96\n    epochs = 1\n}\n";
    let m = valid(common::module(text));
    let n = 192;
    let pixels: Vec<f32> = (0..n * 784).map(|k| (snnc::data::splitmix64(k as u64) % 256) as f32 / 255.0).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let split = |features: Vec<f32>, labels: Vec<u8>| snnc::data::Split::floats(784, features, labels);
    let data = snnc::data::Dataset {
        train: split(pixels.clone(), labels.clone()),
        test: split(pixels[..16 * 784].to_vec(), labels[..16].to_vec()),
        classes: 10,
    };
    // The parallel structure the test relies on.
    let params = init_params::<f32>(&m, 1);
    let batch = m.train.as_ref().expect("train").batch;
    assert!(batch / snnc::train::bptt::SHARD >= 2, "several shards per batch");
    assert!(snnc::train::optim::Optimizer::chunks(&params) >= 4, "several optimiser chunks");
    let engine = build::<f32>(EngineKind::Jit, &m);
    let net = net_params::<f32>(&m);
    let features: Vec<_> = (0..96).map(|i| data.train.sample(i)).collect();
    let samples: Vec<SampleRef> = features.iter().enumerate().map(|(i, f)| SampleRef { id: i as u64, features: f }).collect();
    let hoisted = engine.prepare(&Ctx { module: &m, seed: 1, net: &net }, &params, &samples);
    assert!(hoisted.column_blocks >= 3, "{} column blocks", hoisted.column_blocks);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("pool");
        let config =
            snnc::train::RunConfig { epochs: Some(1), seed: 1, engine: EngineKind::Jit, limit_test: Some(16), ..Default::default() };
        pool.install(|| snnc::train::train_module::<f32>(&m, &data, &config, None, &mut snnc::train::Quiet).expect("trains").0)
    };
    let one = run(1);
    assert_ne!(one, params, "training moved the weights");
    assert_eq!(one, run(2), "2 threads");
    assert_eq!(one, run(3), "3 threads");
}

#[test]
fn operation_counts_follow_the_lab_reports_formulas() {
    let m = valid(load("lab_lif_mnist_repeat.snn"));
    let params = init_params::<f64>(&m, 1);
    // Half the pixels on: with repeat encoding the input rate is exactly 0.5 at every step.
    let pixels: Vec<f32> = (0..784).map(|i| if i % 2 == 0 { 0.6 } else { 0.0 }).collect();
    let split = snnc::data::Split::floats(784, pixels.clone(), vec![3]);
    let engine = build::<f64>(EngineKind::Oracle, &m);
    let net = net_params::<f64>(&m);
    let ctx = Ctx { module: &m, seed: 1, net: &net };
    let (synops, snn, ann) = snnc::train::metrics::operation_counts(engine.as_ref(), &ctx, &params, &split, 1);
    // seeds/003: 784-10-10 ANN = (2*784 - 1)*10 + 2*10 + (2*10 - 1)*10 + 2*10 = 15,900.
    assert_eq!(ann, 15_900.0);
    // The first layer's SNN FLOPs per step: (2 * 784 * 0.5 - 1) * 10 + 20 = 7,850.
    let samples = [SampleRef { id: snnc::train::metrics::TEST_ID_OFFSET, features: &pixels }];
    let trace = engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
    let hidden_active: f64 = trace.spike_count(0, 0);
    let second: f64 = (0..trace.steps).map(|t| (2.0 * trace.spikes_at::<f64>(t, 0).iter().sum::<f64>() - 1.0) * 10.0 + 20.0).sum();
    assert!((snn - (50.0 * 7_850.0 + second)).abs() < 1e-6, "{snn}");
    assert!((synops - (50.0 * 392.0 * 10.0 + hidden_active * 10.0)).abs() < 1e-6, "{synops}");
}

/// A connection carrying a state transmits each of its nonzero values at every step: its
/// synaptic operations are those values times the fan-out, as an input's are.
#[test]
fn operation_counts_include_carried_states() {
    let m = valid(common::module(
        "import std::neurons\nimport std::encoders\nnetwork N {\n    steps = 6\n    input x[5] = repeat(sample)\n    \
         population h[4] = Leaky(beta = 0.9, threshold = 1000)\n    population out[3] = LI(beta = 0.9)\n    \
         connect x -> h.i : dense(init = uniform(0.1, 0.5))\n    connect h.v -> out.i : dense(init = uniform(-0.5, 0.5))\n}\n",
    ));
    let params = init_params::<f64>(&m, 1);
    let features = vec![0.5f32, 0.0, 0.25, 1.0, 0.0];
    let split = snnc::data::Split::floats(5, features.clone(), vec![0]);
    let engine = build::<f64>(EngineKind::Jit, &m);
    let net = net_params::<f64>(&m);
    let ctx = Ctx { module: &m, seed: 1, net: &net };
    let (synops, _, _) = snnc::train::metrics::operation_counts(engine.as_ref(), &ctx, &params, &split, 1);
    let samples = [SampleRef { id: snnc::train::metrics::TEST_ID_OFFSET, features: &features }];
    let trace = engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
    let v = m.populations[0].var_by_name("v").expect("h.v").0 as usize;
    let carried: usize = (0..trace.steps).map(|t| trace.state_after(t, 0, v).iter().filter(|x| **x != 0.0).count()).sum();
    assert_eq!(carried, 6 * 4, "h.v is nonzero from the first step on");
    assert_eq!(synops, (6 * 3 * 4 + carried * 3) as f64, "inputs: 3 nonzero of 5 into 4; h.v: into 3");
}

/// The f32 oracle agrees with the f64 oracle statistically: gradient cosine above 0.999 on the
/// shipped surrogate-gradient models.
#[test]
fn f32_and_f64_gradients_point_the_same_way() {
    for name in ["yin_yang.snn", "lab_lif_mnist.snn", "snntorch_tutorial5.snn", "lab_lif_mnist_ce.snn"] {
        let m = short(name, 12);
        let n: usize = m.inputs[0].shape.iter().product();
        let inputs: Vec<Vec<f32>> = (0..4).map(|s| features(n, s + 1)).collect();
        let batch = examples(&inputs, &[0, 1, 2, 1]);
        let params64 = init_params::<f64>(&m, 8);
        let params32: Params<f32> = params64.convert();
        let (_, g64) = gradients(&m, build::<f64>(EngineKind::Oracle, &m).as_ref(), &params64, &batch, 2);
        let (_, g32) = gradients(&m, build::<f32>(EngineKind::Oracle, &m).as_ref(), &params32, &batch, 2);
        let (mut dot, mut a2, mut b2) = (0.0, 0.0, 0.0);
        for (x, y) in g64.weights.iter().flatten().zip(g32.weights.iter().flatten()) {
            let y = f64::from(*y);
            dot += x * y;
            a2 += x * x;
            b2 += y * y;
        }
        let cosine = dot / (a2.sqrt() * b2.sqrt());
        assert!(cosine > 0.999, "{name}: cosine {cosine}");
    }
}

/// The f32 run agrees with the f64 run statistically: the quick start ends within half a point
/// of test accuracy in either precision (the criterion for f32 training).
#[test]
fn the_quick_start_reaches_the_same_accuracy_in_f32_and_f64() {
    let m = valid(load("yin_yang.snn"));
    let data = snnc::cli::driver::load_data(m.train.as_ref().expect("train"), None).expect("generated");
    let config = snnc::train::RunConfig { engine: EngineKind::Jit, ..Default::default() };
    let f32_run = snnc::train::train_module::<f32>(&m, &data, &config, None, &mut snnc::train::Quiet).expect("trains").1;
    let f64_run = snnc::train::train_module::<f64>(&m, &data, &config, None, &mut snnc::train::Quiet).expect("trains").1;
    let (a, b) = (f32_run.last().expect("epochs").test_accuracy, f64_run.last().expect("epochs").test_accuracy);
    assert!(a >= 0.95 && b >= 0.95, "f32 {a}, f64 {b}");
    assert!((a - b).abs() <= 0.005 + 1e-12, "f32 {a} against f64 {b}");
}

/// A gradient over a window of steps (the adjoint starts at zero after the window and stops at
/// its first step, the state there detached), as a method that learns every K steps takes it:
/// the oracle and the JIT agree, and the window over the whole run is BPTT.
#[test]
fn windowed_backward_passes_agree_across_engines() {
    use snnc::exec::state::ReadoutGrads;
    use snnc::train::loss::{self, SampleInputs};
    let m = short("yin_yang.snn", 12);
    let train = m.train.as_ref().expect("train");
    let n: usize = m.inputs[0].shape.iter().product();
    let inputs: Vec<Vec<f32>> = (0..3).map(|s| features(n, s + 2)).collect();
    let samples: Vec<SampleRef> = inputs.iter().enumerate().map(|(i, f)| SampleRef { id: i as u64, features: f }).collect();
    let params = init_params::<f64>(&m, 4);
    let net = net_params::<f64>(&m);
    let ctx = Ctx { module: &m, seed: 5, net: &net };
    let grads_over = |kind: EngineKind, window: std::ops::Range<usize>| {
        let engine = build::<f64>(kind, &m);
        let shard = Shard { samples: &samples, hoisted: None };
        let trace = engine.forward(&ctx, ParamsAccess::Shared(&params), shard, None);
        let mut readout = ReadoutGrads::zeros(&m, trace.steps, samples.len());
        let term = train.phases[0].losses[0].value;
        for (b, sample) in samples.iter().enumerate() {
            let inputs = SampleInputs { label: b % 3, features: sample.features, net: &m.net_values() };
            let values = loss::evaluate(&m, &train.exprs, &trace, b, &params, inputs, &[term]).expect("evaluates");
            loss::backward(&m, &trace, &train.exprs, &values, term, 1.0, &params, &mut readout, b, &m.net_values(), 0..trace.steps)
                .expect("derives");
        }
        let mut grads = params.zeros_like();
        let sweep = snnc::exec::engine::Sweep { shard, trace: &trace, window };
        engine.backward(&ctx, &params, sweep, &mut readout, &mut grads).expect("backward");
        grads
    };
    let window = 4..10;
    let oracle = grads_over(EngineKind::Oracle, window.clone());
    let nonzero = assert_weights_close("window 4..10", &oracle, &grads_over(EngineKind::Jit, window), 1e-9);
    assert!(nonzero > 0, "a window's gradient is not trivially zero");
    let full = grads_over(EngineKind::Oracle, 0..m.steps);
    assert_ne!(full.weights, oracle.weights, "a window is not the whole run");
}

/// A fixed one-to-one or all-to-all-but-self connection of one constant weight stores it
/// once; it delivers exactly what the same connection with a weight per pair delivers, on
/// both engines, forwards and through the input gradient.
#[test]
fn a_shared_weight_delivers_what_a_weight_per_pair_does() {
    let text = |flag: &str| {
        format!(
            "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {{\n    dt = 1 ms\n    steps = 30\n    \
             input x[5] = poisson(rate = sample * 400 Hz)\n    population a[6] = Leaky(beta = 0.8, threshold = 0.5)\n    \
             population b[6] = Leaky(beta = 0.9, threshold = 0.6)\n    connect x -> a.i : dense(init = uniform(0.2, 0.9))\n    \
             connect a -> b.i : one_to_one(weight = 0.7){flag}\n    connect b -> a.i : all_to_all_but_self(weight = -0.3){flag} feedback\n}}\n\
             train {{\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss l = sum(count(b))\n    \
             predict = argmax(count(b))\n    optimizer = adam(lr = 1e-3)\n}}\n"
        )
    };
    let (shared, per_pair) = (valid(common::module(&text(""))), valid(common::module(&text(" trainable"))));
    assert!(shared.projections[1].shares_one_weight() && shared.projections[2].shares_one_weight());
    assert_eq!((shared.projections[1].weight_shape.clone(), shared.projections[2].weight_shape.clone()), (vec![1], vec![1]));
    assert_eq!((per_pair.projections[1].weight_shape.clone(), per_pair.projections[2].weight_shape.clone()), (vec![6], vec![6, 6]));
    let inputs: Vec<Vec<f32>> = (0..3).map(|s| features(5, s)).collect();
    let samples: Vec<SampleRef> = inputs.iter().enumerate().map(|(i, f)| SampleRef { id: i as u64, features: f }).collect();
    for kind in [EngineKind::Oracle, EngineKind::Jit] {
        let (p_shared, p_pair) = (init_params::<f64>(&shared, 2), init_params::<f64>(&per_pair, 2));
        assert_eq!(p_shared.weights[0], p_pair.weights[0], "the same input weights");
        let a = forward(build::<f64>(kind, &shared).as_ref(), &shared, &p_shared, &samples);
        let b = forward(build::<f64>(kind, &per_pair).as_ref(), &per_pair, &p_pair, &samples);
        assert!(a.spike_count(1, 0) > 0.0 && a.spike_count(0, 1) > 0.0, "{kind:?}: both layers spike");
        assert_eq!(a.spikes, b.spikes, "{kind:?}: the same spikes");
        assert_eq!(a.states, b.states, "{kind:?}: the same states");
    }
    // The input weights' gradients flow back through the shared weights as through the pairs.
    let batch = examples(&inputs, &[0, 1, 2]);
    let grads = |m: &Valid| gradients(m, build::<f64>(EngineKind::Jit, m).as_ref(), &init_params::<f64>(m, 2), &batch, 2).1;
    let (g_shared, g_pair) = (grads(&shared), grads(&per_pair));
    assert!(g_shared.weights[0].iter().any(|g| *g != 0.0), "a gradient reaches the input weights");
    assert_eq!(g_shared.weights[0], g_pair.weights[0], "input weight gradients");
    gradients_match::<f64>("shared weights", &shared, 1.0, 1e-9);
}

/// Diehl & Cook at 6,400 neurons keeps 5 M input weights and nothing of the lateral
/// inhibition but one number per connection.
#[test]
fn the_largest_diehl_cook_network_stores_its_input_weights_and_little_else() {
    let module = valid(load("diehl_cook_6400.snn"));
    let params = init_params::<f32>(&module, 0);
    let weights: usize = params.weights.iter().map(Vec::len).sum();
    assert_eq!(weights, 784 * 6400 + 2, "input weights, then one shared weight each for excitation and inhibition");
}
