//! FPTT (`method = fptt`): one window of one update with no regulariser is a BPTT step; with
//! two windows, the update follows the FPTT equations (the authors' code's form) from each
//! window's gradient (checked against finite differences of the window's loss, its start state
//! held), on both engines; the epoch ends at the running mean; and the window index reaches the
//! loss.

mod common;

use std::ops::Range;
use std::sync::Mutex;

use snnc::exec::engine::{Ctx, Engine, EngineError, EngineKind, HoistedSums, ParamsAccess, Shard, StepHook, Stepping, Sweep};
use snnc::exec::state::{Grads, Hoisted, Params, ReadoutGrads, SampleRef, Trace, init_params};
use snnc::train::loss::{self, SampleInputs, Windowed};
use snnc::train::method::{Example, Session, method_for};

/// A small network whose loss reads a leaky readout: with no spike in the gradient's path,
/// BPTT's gradient is the loss's exact derivative, which finite differences can check.
fn model(method: &str, steps: usize, hidden: bool) -> String {
    let layers = if hidden {
        "    population h[4] = Leaky(beta = 0.9, threshold = 1.0)\n    population out[3] = LI(beta = 0.8)\n    \
         connect x -> h.i : dense(init = uniform(0, 0.6))\n    connect h -> out.i : dense(init = uniform(-0.5, 0.5))\n    \
         connect x -> out.i : dense(init = uniform(-0.5, 0.5))\n"
    } else {
        "    population out[3] = LI(beta = 0.8)\n    connect x -> out.i : dense(init = uniform(-0.5, 0.5))\n"
    };
    format!(
        "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {{\n    steps = {steps}\n    \
         input x[5] = repeat(sample)\n{layers}}}\n\
         train {{\n    data = yin_yang()\n    method = {method}\n    \
         loss nll = (window + 1) / windows * nll(log_softmax(last_t(out.v)), label)\n    loss level = 0.1 * mean(mean_t(out.v))\n    \
         predict = argmax(last_t(out.v))\n    optimizer = sgd(lr = 0.1)\n    batch = 3\n}}\n"
    )
}

const FEATURES: [[f32; 5]; 3] = [[0.3, 0.8, 0.7, 0.2, 1.0], [0.9, 0.1, 0.1, 0.9, 1.0], [0.5, 0.45, 0.5, 0.55, 1.0]];
const LABELS: [usize; 3] = [0, 2, 1];

fn batch() -> Vec<Example<'static>> {
    FEATURES
        .iter()
        .zip(LABELS)
        .enumerate()
        .map(|(i, (f, l))| Example { sample: SampleRef { id: i as u64, features: f }, label: l })
        .collect()
}

/// Trains one batch with `text`'s method and returns the parameters after it.
fn one_batch(text: &str, params: &Params<f64>) -> Params<f64> {
    one_batch_on(EngineKind::Jit, text, params)
}

fn one_batch_on(kind: EngineKind, text: &str, params: &Params<f64>) -> Params<f64> {
    one_batch_then(kind, text, params, false)
}

/// [`one_batch_on`], and when `end` the epoch's end after it (FPTT's reset to the mean).
fn one_batch_then(kind: EngineKind, text: &str, params: &Params<f64>, end: bool) -> Params<f64> {
    one_batch_of(kind, text, params, end, &batch())
}

/// [`one_batch_then`] on the given examples.
fn one_batch_of(kind: EngineKind, text: &str, params: &Params<f64>, end: bool, examples: &[Example]) -> Params<f64> {
    let module = common::valid(common::module(text));
    let train = module.train.as_ref().expect("train block");
    let engine = common::build::<f64>(kind, &module);
    let session = Session { module: &module, train, phase: &train.phases[0], engine: engine.as_ref(), seed: 1, recording: false };
    let mut method = method_for::<f64>(&train.method).expect("the method is built");
    let mut params = params.clone();
    method.begin_phase(&params);
    let mut net = module.net_values();
    method.train_batch(&session, &mut params, &mut net, examples, 0.1).expect("trains");
    if end {
        method.end_epoch(&module, &mut params);
    }
    params
}

#[test]
fn one_window_without_regulariser_is_a_bptt_step() {
    for hidden in [false, true] {
        let fptt = model("fptt(surrogate = fast_sigmoid(), updates = 1, alpha = 0, beta = 0.5)", 8, hidden);
        let bptt = model("bptt(surrogate = fast_sigmoid())", 8, hidden);
        let params = init_params::<f64>(&common::valid(common::module(&fptt)), 3);
        let (a, b) = (one_batch(&fptt, &params), one_batch(&bptt, &params));
        let moved = common::assert_weights_close("fptt against bptt", &a, &b, 1e-12);
        assert!(moved > 0);
        assert_ne!(a.weights, params.weights, "the step changed the weights");
    }
}

/// The loss of window `p` (of `k`) of every example, summed, when windows before `p` run with
/// `before` and window `p` with `params`: what FPTT differentiates, its start state held.
fn window_loss(module: &snnc::ir::validate::Valid, before: &Params<f64>, params: &Params<f64>, p: usize, k: usize) -> f64 {
    let train = module.train.as_ref().expect("train block");
    let engine = common::build::<f64>(EngineKind::Jit, module);
    let net_f: Vec<f64> = module.net_values();
    let ctx = snnc::exec::engine::Ctx { module, seed: 1, net: &net_f };
    let samples: Vec<SampleRef> = batch().iter().map(|e| e.sample).collect();
    let steps = snnc::train::fptt::window(p, k, module.steps);
    let mut stepping = engine.begin(&ctx, before, &samples, module.steps + module.rest_steps);
    engine.advance(&ctx, before, &samples, &mut stepping, steps.start);
    engine.advance(&ctx, params, &samples, &mut stepping, steps.end);
    let view = Windowed { trace: &stepping.trace, steps, index: p, count: k };
    let roots: Vec<_> = train.phases[0].losses.iter().map(|t| t.value).collect();
    let mut total = 0.0;
    for (b, example) in batch().iter().enumerate() {
        let inputs = SampleInputs { label: example.label, features: example.sample.features, net: &net_f };
        let values = loss::evaluate(module, &train.exprs, &view, b, params, inputs, &roots).expect("evaluates");
        total += roots.iter().map(|r| values[r.0 as usize].data[0]).sum::<f64>();
    }
    total / batch().len() as f64
}

/// The gradient of [`window_loss`] with respect to every weight, by central differences.
fn window_gradient(module: &snnc::ir::validate::Valid, before: &Params<f64>, at: &Params<f64>, p: usize, k: usize) -> Params<f64> {
    let mut grads = at.zeros_like();
    for (index, w) in at.weights.iter().enumerate() {
        for j in 0..w.len() {
            let h = 1e-6;
            let moved = |d: f64| {
                let mut q = at.clone();
                q.weights[index][j] += d;
                // A weight moved in window p is the same weight in the windows before only when
                // they ran with it: here they ran with `before`, held.
                window_loss(module, before, &q, p, k)
            };
            grads.weights[index][j] = (moved(h) - moved(-h)) / (2.0 * h);
        }
    }
    grads
}

#[test]
fn two_windows_follow_the_fptt_update_from_each_window_s_gradient() {
    // The correction leans by `rho - 1`: Kag & Saligrama's `rho = beta` by default, the
    // seeds/000 code's 0 when the file says so.
    two_windows_follow_the_fptt_update("", 0.5);
    two_windows_follow_the_fptt_update(", rho = 0", 0.0);
}

fn two_windows_follow_the_fptt_update(rho_setting: &str, rho: f64) {
    let (alpha, beta, lr) = (0.2, 0.5, 0.1);
    let text = model(&format!("fptt(surrogate = fast_sigmoid(), updates = 2, alpha = {alpha}, beta = {beta}{rho_setting})"), 10, false);
    let module = common::valid(common::module(&text));
    let w0 = init_params::<f64>(&module, 5);
    let flat = |p: &Params<f64>| p.weights.concat();
    let unflat = |v: &[f64]| {
        let mut out = w0.clone();
        let mut at = 0;
        for w in out.weights.iter_mut() {
            let n = w.len();
            w.copy_from_slice(&v[at..at + n]);
            at += n;
        }
        out
    };
    let axpy = |a: f64, x: &[f64], y: &[f64]| x.iter().zip(y).map(|(x, y)| a * x + y).collect::<Vec<f64>>();
    // Window 1 (steps 0-4) at W0, W̄ = W0 and λ = 0: a plain step; then λ and W̄ move.
    let g1 = flat(&window_gradient(&module, &w0, &w0, 0, 2));
    let x0 = flat(&w0);
    let x1 = axpy(-lr, &g1, &x0);
    let mut lambda: Vec<f64> = x1.iter().zip(&x0).map(|(w, m)| -alpha * (w - m)).collect();
    let mut mean: Vec<f64> = (0..x0.len()).map(|k| (1.0 - beta) * x0[k] + beta * x1[k] - beta / alpha * lambda[k]).collect();
    // Window 2 (steps 5-9) at W1, its start state from window 1 run at W0: the gradient plus
    // (rho - 1) λ + alpha (W1 - W̄1).
    let g2 = flat(&window_gradient(&module, &w0, &unflat(&x1), 1, 2));
    let total: Vec<f64> = (0..x0.len()).map(|k| g2[k] + (rho - 1.0) * lambda[k] + alpha * (x1[k] - mean[k])).collect();
    let x2 = axpy(-lr, &total, &x1);
    for k in 0..x0.len() {
        lambda[k] -= alpha * (x2[k] - mean[k]);
        mean[k] = (1.0 - beta) * mean[k] + beta * x2[k] - beta / alpha * lambda[k];
    }
    let (expected, mean2) = (unflat(&x2), unflat(&mean));
    let actual = one_batch(&text, &w0);
    let moved = common::assert_weights_close("FPTT after two windows", &expected, &actual, 1e-6);
    // The reference interpreter runs the windows the same way.
    common::assert_weights_close("FPTT on the oracle", &actual, &one_batch_on(EngineKind::Oracle, &text, &w0), 1e-12);
    assert_eq!(moved, expected.weights.iter().map(Vec::len).sum::<usize>());
    // At the epoch's end the weights become the running mean.
    let reset = one_batch_then(EngineKind::Jit, &text, &w0, true);
    common::assert_weights_close("FPTT's weights after the epoch", &mean2, &reset, 1e-6);
    // Not the same as one BPTT step over the whole sample.
    let whole = one_batch(&model("bptt(surrogate = fast_sigmoid())", 10, false), &w0);
    assert!(whole.weights[0].iter().zip(&actual.weights[0]).any(|(a, b)| (a - b).abs() > 1e-4));
}

/// A batch larger than a shard runs in several shards whose gradients are summed, each shard's
/// buffer cleared between windows: the three examples repeated over three shards (the last one
/// short) give the batch mean of the three, window after window, as the three alone do.
#[test]
fn a_batch_over_several_shards_steps_as_its_mean_gradient() {
    let text = model("fptt(surrogate = fast_sigmoid(), updates = 2, alpha = 0.2, beta = 0.5)", 10, true);
    let module = common::valid(common::module(&text));
    let w0 = init_params::<f64>(&module, 5);
    let shard = snnc::train::fptt::FPTT_SHARD;
    let copies = (2 * shard) / 3 + 3;
    let repeated: Vec<Example> =
        (0..copies * 3).map(|i| Example { sample: SampleRef { id: i as u64, features: &FEATURES[i % 3] }, label: LABELS[i % 3] }).collect();
    assert!(repeated.len() > 2 * shard && !repeated.len().is_multiple_of(shard));
    for kind in [EngineKind::Jit, EngineKind::Oracle] {
        let alone = one_batch_of(kind, &text, &w0, true, &batch());
        let sharded = one_batch_of(kind, &text, &w0, true, &repeated);
        let moved = common::assert_weights_close("three examples over three shards", &alone, &sharded, 1e-12);
        assert!(moved > 0);
    }
}

/// `truncate = 1` detaches the state before every step: with the loss read at the window's
/// last step, the gradient is that step's alone, the loss differentiated with the state before
/// the step held (central differences), not BPTT through the window; on both engines.
#[test]
fn a_window_truncated_to_one_step_differentiates_its_last_step_alone() {
    let steps = 6;
    let text = |method: &str| {
        let full = model(method, steps, false);
        // The nll term alone: it reads the window's last step.
        full.lines().filter(|l| !l.contains("loss level")).collect::<Vec<_>>().join("\n")
    };
    let truncated = text("fptt(surrogate = fast_sigmoid(), updates = 1, alpha = 0, beta = 0.5, truncate = 1)");
    let module = common::valid(common::module(&truncated));
    let w0 = init_params::<f64>(&module, 5);
    // Window `steps - 1` of `steps` one-step windows: the last step with its start state held;
    // its nll weight (window + 1) / windows is 1, as the single window's.
    let g = window_gradient(&module, &w0, &w0, steps - 1, steps);
    let mut expected = w0.clone();
    for (w, g) in expected.weights.iter_mut().zip(&g.weights) {
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g);
    }
    let actual = one_batch(&truncated, &w0);
    let moved = common::assert_weights_close("FPTT truncated to one step", &expected, &actual, 1e-6);
    assert_eq!(moved, expected.weights.iter().map(Vec::len).sum::<usize>());
    common::assert_weights_close("truncated on the oracle", &actual, &one_batch_on(EngineKind::Oracle, &truncated, &w0), 1e-12);
    // The whole window's BPTT differs: the leaky readout carries earlier steps' inputs.
    let whole = one_batch(&text("fptt(surrogate = fast_sigmoid(), updates = 1, alpha = 0, beta = 0.5)"), &w0);
    assert!(whole.weights[0].iter().zip(&actual.weights[0]).any(|(a, b)| (a - b).abs() > 1e-4));
    // A block as long as the window is the window.
    let long = one_batch(&text("fptt(surrogate = fast_sigmoid(), updates = 1, alpha = 0, beta = 0.5, truncate = 50)"), &w0);
    common::assert_weights_close("truncate beyond the window", &whole, &long, 1e-12);
}

/// Blocks of `truncate` steps tile a window from its end.
#[test]
fn truncated_blocks_tile_the_window_from_its_end() {
    use snnc::train::fptt::blocks;
    assert_eq!(blocks(3..10, None), vec![3..10]);
    assert_eq!(blocks(3..10, Some(1)), (3..10).map(|t| t..t + 1).collect::<Vec<_>>());
    assert_eq!(blocks(3..10, Some(3)), vec![3..4, 4..7, 7..10]);
    assert_eq!(blocks(3..10, Some(20)), vec![3..10]);
}

/// FPTT keeps one window of a sample at a time ([`Stepping::slide`]): on a network with
/// feedback, delays, a carried state, an input redrawn every step and a neuron that reads
/// the time, every window's rows
/// equal the whole trace's and its backward pass gives the whole trace's gradient over the
/// same steps, on both engines; the trace holds the window and the steps before it that the
/// longest delay reads, not the sample.
#[test]
fn a_pass_that_keeps_one_window_runs_and_differentiates_as_the_whole_trace() {
    use snnc::exec::state::ReadoutGrads;
    // The readout's input weighs more at later steps: time must be the step's, not the row's.
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\n\
        neuron Clocked {\n    state v = 0\n    input i\n    update { v = 0.8 * v + i * (1 + 0.05 * t / dt) }\n}\n\
        network N {\n    dt = 1 ms\n    steps = 12\n    \
        input x[5] = dropout(sample, p = 0.3)\n    population h[6] = Leaky(beta = 0.8, threshold = 0.4)\n    population out[3] = Clocked\n    \
        connect x -> h.i : dense(init = uniform(0, 0.6))\n    connect h -> out.i : dense(init = uniform(-0.5, 0.5))\n    \
        connect h -> h.i : dense(init = uniform(-0.3, 0.3)) feedback\n    connect l2_normalize(out.v) -> h.i : dense(init = uniform(-0.4, 0.4)) feedback\n    \
        connect h -> out.i : dense(init = uniform(-0.5, 0.5)) delay 3 ms\n    connect x -> out.i : dense(init = uniform(-0.5, 0.5)) delay 2 ms\n}\n\
        train {\n    data = yin_yang()\n    method = fptt(surrogate = fast_sigmoid(), updates = 4)\n    loss l = mean(last_t(out.v))\n    \
        predict = argmax(last_t(out.v))\n    optimizer = sgd(lr = 0.1)\n}\n";
    let module = common::valid(common::module(text));
    let history = snnc::exec::schedule::window_rows(&module) - 1;
    assert_eq!(history, 3, "the longest delay");
    let params = init_params::<f64>(&module, 4);
    let net = module.net_values();
    let ctx = Ctx { module: &module, seed: 9, net: &net };
    let samples: Vec<SampleRef> = batch().iter().map(|e| e.sample).collect();
    let (k, steps) = (4, module.steps);
    // d loss / d out.v = 1 at every step of a window, d loss / d h's spikes = 0.5.
    let seed_grads = |readout: &mut ReadoutGrads<f64>, rows: std::ops::Range<usize>| {
        let (n_out, n_h) = (3 * samples.len(), 6 * samples.len());
        readout.states_mut(1, 0)[rows.start * n_out..rows.end * n_out].fill(1.0);
        readout.spikes_mut(0)[rows.start * n_h..rows.end * n_h].fill(0.5);
    };
    for kind in [EngineKind::Oracle, EngineKind::Jit] {
        let engine = common::build::<f64>(kind, &module);
        let mut whole = engine.begin(&ctx, &params, &samples, steps + module.rest_steps);
        engine.advance(&ctx, &params, &samples, &mut whole, steps);
        let mut slid = engine.begin(&ctx, &params, &samples, snnc::train::fptt::window(0, k, steps).len());
        for p in 0..k {
            let window = snnc::train::fptt::window(p, k, steps);
            if p > 0 {
                slid.slide(&module, window.len(), history);
            }
            engine.advance(&ctx, &params, &samples, &mut slid, window.end);
            assert!(slid.trace.steps <= window.len() + history, "{kind:?}: the trace holds a window and its history");
            let rows = slid.rows(window.clone());
            for t in window.clone() {
                let row = t - slid.trace.offset;
                for p in 0..2 {
                    assert_eq!(slid.trace.spikes_at::<f64>(row, p), whole.trace.spikes_at::<f64>(t, p), "{kind:?}: spikes at {t}");
                    for v in 0..module.populations[p].vars.len() {
                        assert_eq!(slid.trace.state_after(row, p, v), whole.trace.state_after(t, p, v), "{kind:?}: state at {t}");
                    }
                }
            }
            let grads_of = |trace: &snnc::exec::state::Trace<f64>, rows: std::ops::Range<usize>| {
                let mut readout = ReadoutGrads::zeros(&module, trace.steps, samples.len());
                seed_grads(&mut readout, rows.clone());
                let mut grads = params.zeros_like();
                let sweep = Sweep { shard: Shard { samples: &samples, hoisted: None }, trace, window: rows };
                engine.backward(&ctx, &params, sweep, &mut readout, &mut grads).expect("backward");
                grads
            };
            let (a, b) = (grads_of(&whole.trace, window.clone()), grads_of(&slid.trace, rows));
            let nonzero = common::assert_weights_close(&format!("{kind:?} window {p}"), &a, &b, 1e-12);
            assert!(nonzero > 0);
        }
        let _ = ParamsAccess::Shared(&params);
    }
}

/// A window runs with the neuron parameters it is given, as with the weights: FPTT's optimiser
/// steps a trainable time constant between windows, and the next window decays with the new
/// one (the trace's parameter rows were set once per batch before).
#[test]
fn each_window_runs_with_the_neuron_parameters_it_is_given() {
    let text = "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {\n    dt = 0.5 ms\n    steps = 10\n    \
        input x[5] = repeat(sample)\n    population out[3] = LeakyIntegrator\n    connect x -> out.i : dense(init = uniform(-0.5, 0.5))\n}\n\
        train {\n    data = yin_yang()\n    method = fptt(surrogate = fast_sigmoid(), updates = 2)\n    loss l = mean(last_t(out.u))\n    \
        predict = argmax(last_t(out.u))\n    optimizer = sgd(lr = 0.1)\n}\n";
    let module = common::valid(common::module(text));
    let before = init_params::<f64>(&module, 4);
    let mut after = before.clone();
    after.neuron_params[0][0].iter_mut().for_each(|tau| *tau *= 2.0);
    let net = module.net_values();
    let ctx = Ctx { module: &module, seed: 9, net: &net };
    let samples: Vec<SampleRef> = batch().iter().map(|e| e.sample).collect();
    for kind in [EngineKind::Oracle, EngineKind::Jit] {
        let engine = common::build::<f64>(kind, &module);
        let mut stepping = engine.begin(&ctx, &before, &samples, 5);
        engine.advance(&ctx, &before, &samples, &mut stepping, 5);
        stepping.slide(&module, 5, 0);
        engine.advance(&ctx, &after, &samples, &mut stepping, 10);
        let trace = &stepping.trace;
        for row in 0..5 {
            let (tau, u_before, u_after, i) =
                (trace.state_before(row, 0, 0), trace.state_before(row, 0, 1), trace.state_after(row, 0, 1), trace.port_at(row, 0, 0));
            for k in 0..tau.len() {
                assert_eq!(tau[k], after.neuron_params[0][0][k % 3], "{kind:?}: the window's time constant");
                let expected = (-0.5e-3 / tau[k]).exp() * (u_before[k] + i[k]);
                assert!((u_after[k] - expected).abs() < 1e-12, "{kind:?}: decays with it");
            }
        }
    }
}

/// A time constant declared in ms is optimised in ms: FPTT's regulariser, its running mean,
/// clipping and the optimiser step move it exactly as they move the same number declared
/// without a unit (and read as that many ms), over windows where the regulariser is active.
#[test]
fn a_time_constant_in_ms_trains_as_the_same_number_without_a_unit() {
    let text = |param: &str, decay: &str| {
        format!(
            "import std::encoders\nimport std::surrogates\nneuron T {{\n    param tau{param} trainable per_neuron = 5{}\n    state u = 0\n    \
             input i\n    update {{ u = exp(-dt / {decay}) * u + i }}\n}}\nnetwork N {{\n    steps = 9\n    input x[5] = repeat(sample)\n    \
             population out[3] = T\n    connect x -> out.i : dense(init = uniform(-1, 1))\n}}\ntrain {{\n    data = yin_yang()\n    \
             method = fptt(surrogate = fast_sigmoid(), updates = 3, alpha = 0.2, beta = 0.5, rho = 0)\n    \
             loss nll = nll(log_softmax(last_t(out.u)), label)\n    predict = argmax(last_t(out.u))\n    optimizer = adam(lr = 0.5)\n    \
             clip = 1\n}}\n",
            if param.contains("ms") { " ms" } else { "" }
        )
    };
    let (in_ms, plain) = (text(": ms", "tau"), text(": 1", "(tau * 1 ms)"));
    let module = common::valid(common::module(&in_ms));
    let var = module.populations[0].vars.iter().position(|v| v.name == "tau").expect("tau");
    let params = init_params::<f64>(&module, 3);
    let mut plain_params = params.clone();
    plain_params.neuron_params[0][var].iter_mut().for_each(|t| *t *= 1e3);
    let (a, b) = (one_batch_then(EngineKind::Jit, &in_ms, &params, true), one_batch_then(EngineKind::Jit, &plain, &plain_params, true));
    assert!(a.weights.concat().iter().zip(b.weights.concat()).all(|(x, y)| (x - y).abs() < 1e-9), "the weights agree");
    assert_ne!(a.weights, params.weights, "the weights moved");
    let (ta, tb) = (&a.neuron_params[0][var], &b.neuron_params[0][var]);
    assert!(ta.iter().zip(tb).all(|(x, y)| (x * 1e3 - y).abs() < 1e-9), "tau in s x 1000 {ta:?} against {tb:?}");
    assert!(tb.iter().all(|t| (t - 5.0).abs() > 1e-3), "tau moved: {tb:?}");
}

/// An engine that runs another and records the windows its backward passes sweep.
struct Counting<'a> {
    inner: &'a dyn Engine<f64>,
    swept: Mutex<Vec<Range<usize>>>,
}

impl Engine<f64> for Counting<'_> {
    fn kind(&self) -> EngineKind {
        self.inner.kind()
    }
    fn prepare(&self, ctx: &Ctx<f64>, params: &Params<f64>, samples: &[SampleRef]) -> Hoisted<f64> {
        self.inner.prepare(ctx, params, samples)
    }
    fn forward(&self, ctx: &Ctx<f64>, params: ParamsAccess<f64>, shard: Shard<f64>, hook: Option<&mut dyn StepHook<f64>>) -> Trace<f64> {
        self.inner.forward(ctx, params, shard, hook)
    }
    fn begin(&self, ctx: &Ctx<f64>, params: &Params<f64>, samples: &[SampleRef], rows: usize) -> Stepping<f64> {
        self.inner.begin(ctx, params, samples, rows)
    }
    fn advance(&self, ctx: &Ctx<f64>, params: &Params<f64>, samples: &[SampleRef], stepping: &mut Stepping<f64>, until: usize) {
        self.inner.advance(ctx, params, samples, stepping, until);
    }
    fn backward(
        &self,
        ctx: &Ctx<f64>,
        params: &Params<f64>,
        sweep: Sweep<f64>,
        readout: &mut ReadoutGrads<f64>,
        grads: &mut Grads<f64>,
    ) -> Result<HoistedSums<f64>, EngineError> {
        self.swept.lock().expect("not poisoned").push(sweep.window.clone());
        self.inner.backward(ctx, params, sweep, readout, grads)
    }
    fn finish_batch(&self, ctx: &Ctx<f64>, hoisted: &Hoisted<f64>, sums: &[HoistedSums<f64>], grads: &mut Grads<f64>) {
        self.inner.finish_batch(ctx, hoisted, sums, grads);
    }
}

/// With `truncate = 1` and the loss read at each window's last step, that step alone is swept:
/// the earlier one-step blocks start from a detached state with no loss in them, whatever the
/// last block's sweep sent back into their rows (the hidden layer's spikes). Sweeping them
/// adds zeros at the cost of the whole window's BPTT.
#[test]
fn a_truncated_window_sweeps_only_the_blocks_its_loss_reads() {
    let text = model("fptt(surrogate = fast_sigmoid(), updates = 2, alpha = 0.1, beta = 0.5, truncate = 1)", 6, true);
    // The nll term alone, and a recurrent connection: its adjoint reaches the step before.
    let text: String = text
        .lines()
        .filter(|l| !l.contains("loss level"))
        .map(|l| {
            if l.contains("connect x -> h.i") {
                format!("{l}\n    connect h -> h.i : dense(init = uniform(0, 0.3)) feedback")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let module = common::valid(common::module(&text));
    let train = module.train.as_ref().expect("train block");
    for kind in [EngineKind::Jit, EngineKind::Oracle] {
        let inner = common::build::<f64>(kind, &module);
        let engine = Counting { inner: inner.as_ref(), swept: Mutex::default() };
        let session = Session { module: &module, train, phase: &train.phases[0], engine: &engine, seed: 1, recording: false };
        let mut method = method_for::<f64>(&train.method).expect("the method is built");
        let mut params = init_params::<f64>(&module, 5);
        method.begin_phase(&params);
        let mut net = module.net_values();
        method.train_batch(&session, &mut params, &mut net, &batch(), 0.1).expect("trains");
        let swept = engine.swept.into_inner().expect("not poisoned");
        // One shard and two windows of three steps: one one-step sweep per window.
        assert_eq!(swept.len(), 2, "{kind:?}: {swept:?}");
        assert!(swept.iter().all(|w| w.len() == 1), "{kind:?}: {swept:?}");
    }
}
