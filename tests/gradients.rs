//! Gradients of the reference back end against central finite differences in f64 on smooth
//! sub-problems (no spikes, so the loss is differentiable), the surrogate chain on a spiking
//! neuron, surrogate tails, determinism and a short training run.

mod common;

use snnc::data::yin_yang;
use snnc::exec::engine::EngineKind;
use snnc::exec::state::{Grads, Params, SampleRef, init_params};
use snnc::ir::validate::Valid;
use snnc::train::method::Example;
use snnc::train::{RunConfig, train_module};

fn module(text: &str) -> Valid {
    common::valid(common::module(text))
}

/// Loss terms and gradient of one sample on the f64 oracle.
fn sample_gradients(m: &Valid, params: &Params<f64>, features: &[f32], id: u64, label: usize, seed: u64) -> (Vec<f64>, Grads<f64>) {
    let engine = common::build::<f64>(EngineKind::Oracle, m);
    let (outcome, grads) = common::gradients(m, engine.as_ref(), params, &[Example { sample: SampleRef { id, features }, label }], seed);
    (outcome.terms, grads)
}

fn loss_of(m: &Valid, params: &Params<f64>, features: &[f32], label: usize) -> f64 {
    sample_gradients(m, params, features, 3, label, 11).0.iter().sum()
}

/// Compares every weight and trainable parameter gradient with central differences.
fn check_against_finite_differences(m: &Valid, features: &[f32], label: usize) {
    let params = init_params::<f64>(m, 5);
    let analytic = sample_gradients(m, &params, features, 3, label, 11).1;
    let h = 1e-6;
    let mut checked = 0;
    for p in 0..params.weights.len() {
        if !m.projections[p].trainable {
            continue;
        }
        for k in 0..params.weights[p].len() {
            let (mut plus, mut minus) = (params.clone(), params.clone());
            plus.weights[p][k] += h;
            minus.weights[p][k] -= h;
            let numeric = (loss_of(m, &plus, features, label) - loss_of(m, &minus, features, label)) / (2.0 * h);
            let a = analytic.weights[p][k];
            assert!((a - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()), "weight {p}/{k}: analytic {a}, numeric {numeric}");
            checked += 1;
        }
    }
    for p in 0..params.neuron_params.len() {
        for v in 0..params.neuron_params[p].len() {
            let trainable = matches!(m.populations[p].vars[v].kind, snnc::ir::VarKind::Param { trainable: true, .. });
            for k in 0..params.neuron_params[p][v].len() {
                if !trainable {
                    continue;
                }
                let step = h * params.neuron_params[p][v][k].abs().max(1e-3);
                let (mut plus, mut minus) = (params.clone(), params.clone());
                plus.neuron_params[p][v][k] += step;
                minus.neuron_params[p][v][k] -= step;
                let numeric = (loss_of(m, &plus, features, label) - loss_of(m, &minus, features, label)) / (2.0 * step);
                let a = analytic.neuron_params[p][v][k];
                assert!((a - numeric).abs() <= 1e-5 * (1.0 + numeric.abs()), "param {p}/{v}/{k}: analytic {a}, numeric {numeric}");
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
}

/// The hidden layer stays far below threshold and the triangle surrogate is exactly zero there,
/// so the surrogate gradient equals the true gradient of this smooth loss.
#[test]
fn subthreshold_leaky_network_with_cross_entropy_and_mse() {
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    steps = 6\n    input x[5] = repeat(sample)\n    population h[4] = Leaky(beta = 0.7, threshold = 1000)\n    population out[3] = LI(beta = 0.8)\n    connect x -> h.i : dense(init = uniform(-1, 1))\n    connect h -> out.i : dense(init = uniform(-1, 1))\n    connect x -> out.i : dense(init = uniform(-1, 1))\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = triangle())\n    loss ce = cross_entropy(sum_t(out.v) / steps, label)\n    loss mse = 0.5 * mse(mean_t(out.v), one_hot(label, on = 1, off = -1))\n    loss cum = 0.1 * sum(square(last_t(cumulative(out.v, 0.9))))\n    loss l2 = 0.01 * weight_l2(x, out)\n    predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    check_against_finite_differences(&m, &[0.3, -0.6, 0.9, 0.2, 1.0], 2);
}

/// Connections that carry a state rather than spikes (seeds/000's layer-3 top-down input is
/// the normalised readout): forwards from an earlier population, with a delay, and as
/// feedback through `l2_normalize`, all in the gradient.
#[test]
fn state_carrying_connections_with_and_without_normalisation() {
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    steps = 7\n    input x[5] = repeat(sample)\n    population h[4] = Leaky(beta = 0.7, threshold = 1000)\n    population out[3] = LI(beta = 0.8)\n    connect x -> h.i : dense(init = uniform(-1, 1))\n    connect h.v -> out.i : dense(init = uniform(-1, 1))\n    connect h.v -> out.i : dense(init = uniform(-1, 1)) delay 2 ms\n    connect l2_normalize(out.v) -> h.i : dense(init = uniform(-1, 1)) feedback\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = triangle())\n    loss ce = cross_entropy(sum_t(out.v) / steps, label)\n    loss h = 0.1 * sum(square(last_t(h.v)))\n    predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    assert!(m.projections.iter().any(|p| matches!(p.source, snnc::ir::Source::State(s) if s.l2_normalize)));
    check_against_finite_differences(&m, &[0.3, -0.6, 0.9, 0.2, 1.0], 2);
}

/// Convolutions with stride, padding, dilation and groups, a transposed convolution with
/// dilation, and sum, average and max pooling, carrying membranes (no spikes, so that the loss is
/// smooth): every trainable weight's gradient against central differences (the pooling's flow
/// through to the weights before it).
#[test]
fn convolutions_and_transposed_convolutions() {
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    steps = 4\n    input x[5] = repeat(sample)\n    \
         population a[2, 5, 4] = Leaky(beta = 0.6, threshold = 1000)\n    population h[4, 3, 2] = Leaky(beta = 0.7, threshold = 1000)\n    population d[2, 5, 4] = LI(beta = 0.8)\n    population q[2, 2, 2] = LI(beta = 0.8)\n    population out[3] = LI(beta = 0.9)\n    \
         connect x -> a.i : dense(init = uniform(-1, 1))\n    \
         connect a.v -> h.i : conv2d(kernel = 3, stride = 2, padding = 1, groups = 2, init = uniform(-1, 1))\n    \
         connect h.v -> d.i : conv_transpose2d(kernel = 3, stride = 1, padding = 1, dilation = 2, init = uniform(-1, 1))\n    \
         connect d.v -> out.i : dense(init = uniform(-0.3, 0.3))\n    \
         connect a.v -> q.i : avg_pool2d(kernel = 2, stride = 2)\n    connect a.v -> q.i : max_pool2d(kernel = 2, weight = 0.5)\n    \
         connect a.v -> q.i : sum_pool2d(kernel = 3, stride = 3, padding = 1, weight = 0.2)\n    \
         connect q.v -> out.i : dense(init = uniform(-0.3, 0.3))\n}\n\
         train {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(sum_t(out.v), label)\n    \
         loss sq = 0.01 * sum(square(last_t(d.v)))\n    predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    check_against_finite_differences(&m, &[0.8, -0.5, 0.2, 0.5, 1.0], 2);
}

/// Kernels, strides, padding and dilation that differ between rows and columns, and 1-d
/// convolutions, transposed convolutions and pools, carrying membranes: every trainable
/// weight's gradient against central differences.
#[test]
fn rectangular_and_one_dimensional_convolutions() {
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    steps = 4\n    input x[5] = repeat(sample)\n    \
         population a[2, 5, 7] = Leaky(beta = 0.6, threshold = 1000)\n    population h[3, 5, 2] = Leaky(beta = 0.7, threshold = 1000)\n    \
         population d[2, 5, 4] = LI(beta = 0.8)\n    population l[2, 9] = Leaky(beta = 0.6, threshold = 1000)\n    \
         population m[3, 4] = Leaky(beta = 0.7, threshold = 1000)\n    population n[2, 8] = LI(beta = 0.8)\n    population q[2, 4] = LI(beta = 0.8)\n    \
         population out[3] = LI(beta = 0.9)\n    \
         connect x -> a.i : dense(init = uniform(-1, 1))\n    connect x -> l.i : dense(init = uniform(-1, 1))\n    \
         connect a.v -> h.i : conv2d(kernel = [3, 2], stride = [1, 3], padding = [1, 0], dilation = [1, 2], init = uniform(-1, 1))\n    \
         connect h.v -> d.i : conv_transpose2d(kernel = [3, 2], stride = [1, 2], padding = [1, 0], init = uniform(-1, 1))\n    \
         connect l.v -> m.i : conv1d(kernel = 4, stride = 2, padding = 1, init = uniform(-1, 1))\n    \
         connect m.v -> n.i : conv_transpose1d(kernel = 4, stride = 2, padding = 1, init = uniform(-1, 1))\n    \
         connect l.v -> q.i : avg_pool1d(kernel = 2)\n    connect l.v -> q.i : max_pool1d(kernel = 3, stride = 2, weight = 0.5)\n    \
         connect d.v -> out.i : dense(init = uniform(-0.3, 0.3))\n    connect n.v -> out.i : dense(init = uniform(-0.3, 0.3))\n    \
         connect q.v -> out.i : dense(init = uniform(-0.3, 0.3))\n}\n\
         train {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(sum_t(out.v), label)\n    \
         loss sq = 0.01 * sum(square(last_t(d.v)))\n    predict = argmax(sum_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    check_against_finite_differences(&m, &[0.8, -0.5, 0.2, 0.5, 1.0], 2);
}

#[test]
fn trainable_per_neuron_time_constants() {
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    steps = 8\n    input x[5] = repeat(sample)\n    population out[3] = LeakyIntegrator\n    connect x -> out.i : dense(init = uniform(-1, 1))\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss nll = nll(log_softmax(last_t(out.u)), label)\n    predict = argmax(last_t(out.u))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    check_against_finite_differences(&m, &[0.8, -0.5, 0.2, 0.5, 1.0], 1);
}

/// A loss on neuron observables (the multi-compartment energy term of seeds/000 is one): their
/// derivatives come from the gradient pass as IR; trainable time constants included.
#[test]
fn losses_on_observables() {
    let m = module(
        "import std::encoders\nimport std::surrogates\nneuron Obs {\n    param tau: ms trainable per_neuron = normal(5 ms, 0.5 ms)\n    state u = 0\n    state w = 0.1\n    input i\n    update {\n        u = exp(-dt / tau) * u + i\n        w = 0.5 * w + 0.1 * u\n    }\n    observable energy = abs(u - w) + sigmoid(u) * w\n    observable sq = u * u\n}\nnetwork N {\n    steps = 6\n    input x[5] = repeat(sample)\n    population out[3] = Obs\n    connect x -> out.i : dense(init = uniform(-1, 1))\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss e = mean_t(mean(out.energy))\n    loss ce = cross_entropy(last_t(out.sq), label)\n    predict = argmax(last_t(out.u))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    check_against_finite_differences(&m, &[0.8, -0.5, 0.2, 0.5, 1.0], 1);
}

#[test]
fn continuous_cuba_lif_below_threshold() {
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 1 ms\n    duration = 10 ms\n    input x[5] = repeat(sample)\n    population out[3] = CubaLIF(v_th = 1000 V)\n    connect x -> out.syn : dense(init = uniform(0 A, 1 A))\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid())\n    loss ce = cross_entropy(max_t(out.v) / 1 V * 100, label)\n    predict = argmax(max_t(out.v))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    check_against_finite_differences(&m, &[0.8, 0.4, 0.2, 0.6, 1.0], 0);
}

#[test]
fn a_spike_contributes_its_surrogate_times_the_input() {
    // One step, beta 0: v = w x, s = H(v - 1), loss = count = s; d loss / d w = sg(w x - 1) x.
    let m = module(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    steps = 1\n    input x[5] = repeat(sample)\n    population out[1] = Leaky(beta = 0, threshold = 1)\n    connect x -> out.i : dense(init = uniform(1.5, 1.5))\n}\ntrain {\n    data = yin_yang()\n    method = bptt(surrogate = fast_sigmoid(slope = 4))\n    loss spikes = sum(count(out))\n    optimizer = adam(lr = 1e-3)\n}\n",
    );
    let params = init_params::<f64>(&m, 1);
    // Only the first input is non-zero, so only its weight carries the spike's gradient.
    let x = 0.8f32;
    let (terms, grads) = sample_gradients(&m, &params, &[x, 0.0, 0.0, 0.0, 0.0], 0, 0, 1);
    let v = 1.5 * f64::from(x);
    assert_eq!(terms[0], 1.0, "the neuron spikes");
    let expected = 1.0 / (1.0 + 4.0 * (v - 1.0).abs()).powi(2) * f64::from(x);
    let g = grads.weights[0][0];
    assert!((g - expected).abs() < 1e-12, "{g} vs {expected}");
}

#[test]
fn every_stdlib_surrogate_is_finite_in_its_tails_and_matches_its_formula() {
    let checked = snnc::cli::driver::check_text("s.snn", "import std::surrogates\n", None);
    let program = &checked.outcome.program;
    let mut sink_diags = snnc::front::diag::Diagnostics::default();
    let mut sink = snnc::lower::Sink { diagnostics: &mut sink_diags, file: program.file(0), main: program.file(0), enabled: true };
    type Formula = (&'static str, fn(f64) -> f64);
    let formulas: [Formula; 5] = [
        ("fast_sigmoid", |x| 1.0 / (1.0 + 25.0 * x.abs()).powi(2)),
        ("atan", |x| 1.0 / (1.0 + (std::f64::consts::PI * x).powi(2))),
        ("sigmoid", |x| {
            let s = 1.0 / (1.0 + (-5.0 * x).exp());
            5.0 * s * (1.0 - s)
        }),
        ("straight_through", |_| 1.0),
        ("triangle", |x| (1.0 - x.abs()).max(0.0)),
    ];
    for (name, def) in &program.surrogates {
        let surrogate = snnc::lower::surrogate::lower_surrogate(&def.def, &Default::default(), &mut sink);
        // Infinite differences come from gated spike conditions (`spike when v > th and
        // gate`: the threshold is +infinity while the gate is shut).
        for x in [f64::NEG_INFINITY, -1e6, -1e3, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 1e3, 1e6, f64::INFINITY] {
            let g: f64 = snnc::exec::oracle::tape::surrogate_grad(&surrogate, x);
            let g32: f32 = snnc::exec::oracle::tape::surrogate_grad(&surrogate, x as f32);
            assert!(g32.is_finite(), "{name}({x}) in f32 = {g32}");
            assert!(g.is_finite(), "{name}({x}) = {g}");
            if let Some((_, formula)) = formulas.iter().find(|(n, _)| n == name) {
                assert!((g - formula(x)).abs() < 1e-12, "{name}({x}): {g} vs {}", formula(x));
            }
        }
    }
    assert!(program.surrogates.contains_key("gaussian_mixture"));
}

fn quick_yin_yang() -> Valid {
    let mut m = common::load("yin_yang.snn");
    m.train.as_mut().unwrap().batch = 16;
    common::valid(m)
}

#[test]
fn same_seed_same_weights_for_any_thread_count() {
    let m = quick_yin_yang();
    let data = yin_yang(64, 16, 42);
    let config = RunConfig { epochs: Some(1), limit_train: Some(64), limit_test: Some(16), seed: 1, engine: EngineKind::Oracle };
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        pool.install(|| train_module::<f64>(&m, &data, &config, None, &mut snnc::train::Quiet).unwrap().0)
    };
    let one = run(1);
    assert_eq!(one, run(2));
    assert_eq!(one, run(1));
}

#[test]
fn a_short_yin_yang_run_lowers_the_loss() {
    let m = quick_yin_yang();
    let data = yin_yang(480, 120, 42);
    let config = RunConfig { epochs: Some(3), limit_train: None, limit_test: None, seed: 2, engine: EngineKind::Oracle };
    let (_, history) = train_module::<f64>(&m, &data, &config, None, &mut snnc::train::Quiet).unwrap();
    let first = history[0].losses[0].1;
    let last = history[2].losses[0].1;
    assert!(last < 0.9 * first, "loss fell from {first} to {last}");
    assert!(history[2].train_accuracy > 0.45, "{:?}", history[2]);
}
