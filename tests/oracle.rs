//! The oracle (the reference interpreter) against closed-form solutions and the step
//! semantics.

mod common;

use common::module;
use snnc::exec::engine::ParamsAccess;
use snnc::exec::kernels::connectivity::{project, project_backward};
use snnc::exec::state::{Params, SampleRef, Trace, init_params, net_params};
use snnc::ir::{Connectivity, Conv, Module};

fn run(module: &Module, params: &Params<f64>, samples: &[SampleRef], seed: u64, net: &[f64]) -> Trace<f64> {
    let net = if net.is_empty() { net_params(module) } else { net.to_vec() };
    snnc::exec::oracle::run(module, ParamsAccess::Shared(params), samples, seed, &net, None)
}

fn run_one(module: &Module, features: &[f32]) -> Trace<f64> {
    let params = init_params(module, 1);
    run(module, &params, &[SampleRef { id: 0, features }], 1, &[])
}

/// snnTorch's `Leaky` (seeds/003): mem[t] = beta mem[t-1] + x[t] - s[t-1] threshold,
/// s[t] = H(mem[t] - threshold), written out by hand.
#[test]
fn leaky_follows_snntorch_with_the_previous_steps_reset() {
    let m = module(
        "import std::neurons\nimport std::encoders\nnetwork N {\n    steps = 12\n    input x[1] = repeat(sample)\n    population p[1] = Leaky(beta = 0.8, threshold = 1.0)\n    connect x -> p.i : dense(weight = 1)\n}\n",
    );
    let trace = run_one(&m, &[0.45]);
    let (mut mem, mut spike, beta, input) = (0.0f64, 0.0f64, 0.8, 0.45f32 as f64);
    let mut spikes = 0;
    for t in 0..12 {
        mem = beta * mem + input - spike * 1.0;
        spike = f64::from(u8::from(mem > 1.0));
        spikes += spike as usize;
        assert_eq!(trace.spikes_at::<f64>(t, 0)[0], spike, "step {t}");
        assert!((trace.state_after(t, 0, 0)[0] - mem).abs() < 1e-12, "step {t}: {} vs {mem}", trace.state_after(t, 0, 0)[0]);
    }
    assert!(spikes >= 2, "the neuron spikes and is reset at least once");
}

/// CubaLIF after one input spike of weight w at t = 0 (tau_m dv/dt = -v + R i, tau_s di/dt = -i,
/// R = 1 ohm): i(t) = w e^{-t/tau_s}, v(t) = w R / (tau_m - tau_s) * tau_s (e^{-t/tau_m} - e^{-t/tau_s}).
fn cuba_v(t: f64, w: f64) -> f64 {
    let (tau_m, tau_s) = (0.020, 0.005);
    w / (tau_m - tau_s) * tau_s * ((-t / tau_m).exp() - (-t / tau_s).exp())
}

#[test]
fn cuba_lif_is_integrated_exactly_for_any_dt() {
    for dt in ["0.1 ms", "1 ms"] {
        let m = module(&format!(
            "import std::neurons\nimport std::encoders\nnetwork N {{\n    dt = {dt}\n    duration = 20 ms\n    input x[1] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population p[1] = CubaLIF(v_th = 100 V)\n    connect x -> p.syn : dense(weight = 2 A)\n}}\n"
        ));
        // Feature 1 spikes at t_min = 0: the jump lands in step 0, then the step integrates dt.
        let trace = run_one(&m, &[1.0]);
        for t in 0..trace.steps {
            let time = (t + 1) as f64 * m.dt;
            let v = trace.state_after(t, 0, 0)[0];
            assert!((v - cuba_v(time, 2.0)).abs() < 1e-9, "dt {dt}, step {t}: {v} vs {}", cuba_v(time, 2.0));
        }
    }
}

#[test]
fn refractory_neurons_hold_their_reset_and_do_not_spike() {
    let m = module(
        "import std::encoders\nneuron R {\n    state v = 0\n    input i\n    update { v = v + i }\n    spike when v > 0.5\n    on spike { v = 0 }\n    refractory = 3 ms\n}\nnetwork N {\n    steps = 12\n    input x[1] = repeat(sample)\n    population p[1] = R\n    connect x -> p.i : dense(weight = 1)\n}\n",
    );
    let trace = run_one(&m, &[1.0]);
    let spikes: Vec<f64> = (0..trace.steps).map(|t| trace.spikes_at::<f64>(t, 0)[0]).collect();
    assert_eq!(spikes, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(trace.state_after(2, 0, 0)[0], 0.0, "held at its reset value while refractory");
}

#[test]
fn feedback_edges_read_the_previous_step() {
    let m = module(
        "import std::neurons\nimport std::encoders\nnetwork N {\n    steps = 4\n    input x[1] = repeat(sample)\n    population a[1] = LeakyZero(beta = 0, threshold = 0.5)\n    population b[1] = LeakyZero(beta = 0, threshold = 0.5)\n    connect x -> a.i : dense(weight = 1)\n    connect a -> b.i : dense(weight = 1)\n    connect b -> a.i : dense(weight = -10) feedback\n}\n",
    );
    let trace = run_one(&m, &[1.0]);
    let a: Vec<f64> = (0..trace.steps).map(|t| trace.spikes_at::<f64>(t, 0)[0]).collect();
    let b: Vec<f64> = (0..trace.steps).map(|t| trace.spikes_at::<f64>(t, 1)[0]).collect();
    // a spikes at 0, b in the same step (feed-forward), inhibition reaches a at step 1.
    assert_eq!(a, [1.0, 0.0, 1.0, 0.0]);
    assert_eq!(b, [1.0, 0.0, 1.0, 0.0]);
}

#[test]
fn encoders_are_seeded_per_sample_not_per_batch() {
    let m = module(
        "import std::neurons\nimport std::encoders\nnetwork N {\n    steps = 200\n    input x[3] = bernoulli(sample)\n    population p[1] = Leaky\n    connect x -> p.i : dense\n}\n",
    );
    let params = init_params(&m, 3);
    let a = [0.2f32, 0.5, 0.9];
    let b = [0.9f32, 0.1, 0.4];
    let alone = run(&m, &params, &[SampleRef { id: 7, features: &b }], 3, &[]);
    let together = run(&m, &params, &[SampleRef { id: 1, features: &a }, SampleRef { id: 7, features: &b }], 3, &[]);
    // The input spikes of sample 7 are the same alone and in a batch: its membrane trace,
    // which integrates them, is identical.
    let drive = |trace: &Trace<f64>, k: usize| (0..trace.steps).map(|t| trace.state_after(t, 0, 0)[k]).collect::<Vec<f64>>();
    assert_eq!(drive(&alone, 0), drive(&together, 1));
    // Bernoulli rates are close to p.
    let m2 = module(
        "import std::neurons\nimport std::encoders\nnetwork N {\n    steps = 4000\n    input x[3] = bernoulli(sample)\n    population p[3] = LeakyZero(beta = 0, threshold = 0.5)\n    connect x -> p.i : one_to_one(weight = 1)\n}\n",
    );
    let trace = run(&m2, &init_params(&m2, 1), &[SampleRef { id: 0, features: &a }], 9, &[]);
    let mut rate = [0.0; 3];
    for i in 0..3 {
        rate[i] = (0..trace.steps).map(|t| trace.spikes_at::<f64>(t, 0)[i]).sum::<f64>() / 4000.0;
        assert!((rate[i] - f64::from(a[i])).abs() < 0.03, "rate {} vs p {}", rate[i], a[i]);
    }
}

#[test]
fn transposed_convolution_is_the_adjoint_of_convolution() {
    let (in_c, out_c, k, h) = (2, 3, 3, 5);
    let oh = h - k + 1;
    let w: Vec<f64> = (0..out_c * in_c * k * k).map(|i| ((i * 7919) % 13) as f64 - 6.0).collect();
    // The transposed convolution maps out_c -> in_c with the same weights: PyTorch's layout,
    // [its input channels][its output channels][k][k], is the convolution's [out_c][in_c][k][k].
    let x: Vec<f64> = (0..in_c * h * h).map(|i| ((i * 31) % 7) as f64 - 3.0).collect();
    let y: Vec<f64> = (0..out_c * oh * oh).map(|i| ((i * 17) % 5) as f64 - 2.0).collect();
    let mut conv_x = vec![0.0; y.len()];
    let conv = Conv::square(k, 1, 0, 1, 1);
    project(&Connectivity::Conv2d(conv), &w, &x, &mut conv_x, &[in_c, h, h], &[out_c, oh, oh]);
    let mut convt_y = vec![0.0; x.len()];
    project(&Connectivity::ConvTranspose2d(conv), &w, &y, &mut convt_y, &[out_c, oh, oh], &[in_c, h, h]);
    let lhs: f64 = conv_x.iter().zip(&y).map(|(a, b)| a * b).sum();
    let rhs: f64 = x.iter().zip(&convt_y).map(|(a, b)| a * b).sum();
    assert_eq!(lhs, rhs);
    assert!(lhs != 0.0);
}

#[test]
fn every_shipped_model_runs_a_step_on_the_interpreter() {
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/models")).expect("models") {
        let path = entry.expect("entry").path();
        let checked = snnc::cli::driver::check_path(&path).expect("readable");
        let mut m = checked.outcome.module.expect("lowers");
        m.steps = 2;
        m.rest_steps = 0;
        let n: usize = m.inputs[0].shape.iter().product();
        let features: Vec<f32> = (0..n).map(|i| (i % 7) as f32 / 7.0).collect();
        let trace = run_one(&m, &features);
        assert_eq!(trace.steps, 2, "{}", path.display());
        for pop in &trace.states {
            for var in pop {
                assert!(var.iter().all(|v| v.is_finite()), "{}: finite states", path.display());
            }
        }
    }
}

/// The adjoint of a linear map built column by column from unit probes of the forward map: the
/// slow but obviously right reference for the convolution backward loops.
#[test]
fn convolution_adjoints_match_unit_probes_of_the_forward_map() {
    let strided = Conv::square(3, 2, 1, 1, 1);
    let grouped = Conv::square(2, 1, 1, 2, 2);
    // Rows and columns apart: a 2 x 3 kernel, stride [1, 2], padding [1, 0], dilation [2, 1].
    let rect = Conv { kernel: [2, 3], stride: [1, 2], padding: [1, 0], dilation: [2, 1], groups: 1, output_padding: [0; 2] };
    // A 1-d convolution: kernel 4, stride 2, padding 1, on [channels, length] shapes.
    let line = Conv { kernel: [1, 4], stride: [1, 2], padding: [0, 1], dilation: [1, 1], groups: 1, output_padding: [0; 2] };
    let cases: [(Connectivity, &[usize], &[usize], usize); 8] = [
        (Connectivity::Conv2d(strided), &[2, 7, 7], &[3, 4, 4], 3 * 2 * 9),
        (Connectivity::ConvTranspose2d(strided), &[3, 4, 4], &[2, 7, 7], 3 * 2 * 9),
        (Connectivity::Conv2d(grouped), &[2, 7, 7], &[4, 7, 7], 4 * 4),
        (Connectivity::ConvTranspose2d(grouped), &[4, 7, 7], &[2, 7, 7], 4 * 4),
        (Connectivity::Conv2d(rect), &[2, 5, 8], &[3, 5, 3], 3 * 2 * 6),
        (Connectivity::ConvTranspose2d(rect), &[3, 5, 3], &[2, 5, 8], 3 * 2 * 6),
        (Connectivity::Conv2d(line), &[2, 9], &[3, 4], 3 * 2 * 4),
        (Connectivity::ConvTranspose2d(line), &[3, 4], &[2, 9], 3 * 2 * 4),
    ];
    for (connectivity, in_shape, out_shape, n_w) in cases {
        let (n_in, n_out): (usize, usize) = (in_shape.iter().product(), out_shape.iter().product());
        let w: Vec<f64> = (0..n_w).map(|i| ((i * 37) % 11) as f64 / 5.0 - 1.0).collect();
        let x: Vec<f64> = (0..n_in).map(|i| ((i * 13) % 7) as f64 / 3.0 - 1.0).collect();
        let g: Vec<f64> = (0..n_out).map(|i| ((i * 29) % 5) as f64 / 2.0 - 1.0).collect();
        let (mut dw, mut dx) = (vec![0.0; n_w], vec![0.0; n_in]);
        project_backward(&connectivity, &w, &x, &g, &mut dw, &mut dx, in_shape, out_shape);
        let probe = |weights: &[f64], input: &[f64]| {
            let mut y = vec![0.0; n_out];
            project(&connectivity, weights, input, &mut y, in_shape, out_shape);
            y.iter().zip(&g).map(|(a, b)| a * b).sum::<f64>()
        };
        for k in 0..n_w {
            let mut unit = vec![0.0; n_w];
            unit[k] = 1.0;
            assert!((dw[k] - probe(&unit, &x)).abs() < 1e-12, "{connectivity:?} dW[{k}]");
        }
        for i in 0..n_in {
            let mut unit = vec![0.0; n_in];
            unit[i] = 1.0;
            assert!((dx[i] - probe(&w, &unit)).abs() < 1e-12, "{connectivity:?} dX[{i}]");
        }
    }
}

/// The column evaluator (observables in loss terms, many neurons and steps at once) computes
/// what the oracle's scalar evaluator does, element by element, on an observable that uses
/// unary, binary, comparison and call nodes, states, a parameter, a port, time and dt.
#[test]
fn column_evaluation_matches_the_scalar_evaluator() {
    let m = module(
        "import std::neurons\nimport std::encoders\nneuron N {\n    param g = 0.7\n    state a = 0\n    state s = 0\n    input i\n    update { a = a + i\n        s = 0.5 * s + i }\n    observable o = abs(a - s) + exp(-s) * max(a, g) - (s > 0.2) + sigmoid(i) * t / dt - clip(a, -0.1, 0.1) / 3\n}\nnetwork Net {\n    steps = 4\n    input x[1] = repeat(sample)\n    population p[1] = N(g = 0.4)\n    connect x -> p.i : dense(weight = 1)\n}\n",
    );
    let pop = &m.populations[0];
    let (_, id) = pop.observables[0];
    let net = net_params::<f64>(&m);
    let values: Vec<f64> = (0..40).map(|k| ((k * 37 % 23) as f64 - 11.0) / 7.0).collect();
    let vars: Vec<Vec<f64>> = (0..pop.vars.len()).map(|v| values.iter().map(|x| x * (v as f64 + 1.0)).collect()).collect();
    let ports = vec![values.iter().map(|x| 0.3 - x).collect::<Vec<f64>>()];
    let times: Vec<f64> = (0..values.len()).map(|k| k as f64 * 1e-3).collect();
    let columns = snnc::exec::oracle::Columns { vars: &vars, ports: &ports, times: &times, net: &net, dt: m.dt };
    let column = snnc::exec::oracle::eval_columns(&pop.exprs, id, &columns);
    for k in 0..values.len() {
        let at: Vec<f64> = vars.iter().map(|v| v[k]).collect();
        let scalar = snnc::exec::oracle::eval_at(&pop.exprs, id, &at, &[ports[0][k]], times[k], &net, m.dt);
        assert!(scalar.is_finite());
        assert_eq!(column[k].to_bits(), scalar.to_bits(), "element {k}: {} vs {scalar}", column[k]);
    }
}
