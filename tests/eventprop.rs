//! The EventProp adjoint derived from a neuron's own equations (snnc::ir::eventprop): for
//! CubaLIF it is seeds/002's equations (4), (5) and (8); for a neuron written here (leak
//! reversal, two synaptic currents, one of them subtracted) every part agrees with the same
//! formulas evaluated from finite-difference Jacobians of the neuron's right-hand side; and
//! what EventProp cannot differentiate is refused with a reason.

mod common;

use snnc::exec::exact::{ExactNet, Run, Spikes};
use snnc::ir::eventprop::{EventAdjoint, EventPropError, derive};
use snnc::ir::{ExprId, Exprs, Global, Node, Population, UnaryOp, eval_binary, eval_func};

/// Evaluates `id` with the state `x` (x⁻), the adjoint `lambda` (λ⁺) and the event term `e`.
fn eval(exprs: &Exprs, id: ExprId, x: &[f64], lambda: &[f64], e: f64) -> f64 {
    let at = |id: &ExprId| eval(exprs, *id, x, lambda, e);
    match exprs.get(id) {
        Node::Const(c) => *c,
        Node::Var(v) => x[v.0 as usize],
        Node::Global(Global::AdjointAfter(v)) => lambda[*v as usize],
        Node::Global(Global::AdjointSpike) => e,
        Node::Unary(UnaryOp::Neg, a) => -at(a),
        Node::Binary(op, a, b) => eval_binary(*op, at(a), at(b)).expect("a binary value"),
        Node::Call(func, args) => eval_func(*func, &args.iter().map(at).collect::<Vec<_>>()).expect("a call value"),
        other => panic!("unexpected leaf {other:?}"),
    }
}

fn network(neuron: &str, population: &str, extra: &str) -> snnc::ir::Module {
    let text = format!(
        "import std::neurons\nimport std::encoders\n{neuron}\nnetwork N {{\n    dt = 0.1 ms\n    duration = 30 ms\n    \
         input x[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[3] = {population}\n    {extra}\n}}\n\
         train {{\n    data = yin_yang()\n    method = eventprop\n    predict = argmin(first_spike(h))\n    \
         loss ce = cross_entropy(-first_spike(h) / 0.5 ms, label)\n    optimizer = adam(lr = 1e-3)\n}}\n"
    );
    common::module(&text)
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * (1.0 + a.abs().max(b.abs()))
}

#[test]
fn cubalif_gives_the_equations_of_seeds_002() {
    let module = network("", "CubaLIF", "connect x -> h.syn : dense(init = uniform(1 A, 3 A))");
    let pop = &module.populations[0];
    let adjoint = derive(pop).expect("CubaLIF has an EventProp adjoint");
    let (tau_m, tau_s, r, theta) = (0.02, 0.005, 1.0, 1.0);
    // The paper's adjoints are ours scaled: λ_V = λ_v / τ_m, λ_I = λ_i / τ_s (from eq. 4).
    for (i, lv, li, e) in [(1.7, 0.3, -1.1, 0.25), (3.2, -2.0, 0.7, -4.0), (1.05, 0.0, 5.0, 1.0)] {
        let x = [theta, i];
        let lambda = [lv, li];
        let value = |id| eval(&adjoint.exprs, id, &x, &lambda, e);
        let (pv, pi) = (lv / tau_m, li / tau_s);
        // (4): τ_m λ_V' = λ_V and τ_s λ_I' = λ_I - R λ_V; with the scaling, τ_m λ_V' = λ_v' and
        // τ_s λ_I' = λ_i'.
        assert!(close(value(adjoint.adjoint_rhs[0]), pv), "λ_V'");
        assert!(close(value(adjoint.adjoint_rhs[1]), pi - r * pv), "λ_I'");
        // (5): λ_V⁻ = [λ_V⁺ R I + ∂L/∂t_k + Σ (R λ_V⁺ - λ_I⁺)_m W_mn] / (R I - θ), with our event
        // term E standing for the last two; λ_I⁻ = λ_I⁺.
        let paper_v = (pv * r * i + e) / (r * i - theta);
        assert!(close(value(adjoint.jump[0]) / tau_m, paper_v), "λ_V⁻: {} vs {paper_v}", value(adjoint.jump[0]) / tau_m);
        assert!(close(value(adjoint.jump[1]), li), "λ_I⁻");
        // The transmitted term per unit weight is (R λ_V⁺ - λ_I⁺) of the receiver.
        assert!(close(value(adjoint.transmit[0]), r * pv - pi), "transmission");
        // (8): ∂L/∂W = -τ_s Σ λ_I at presynaptic spikes.
        assert!(close(value(adjoint.weight_grad[0]), -tau_s * pi), "weight gradient");
    }
}

/// A neuron that is not in stdlib: a leak towards e_l, an excitatory and an inhibitory
/// current (the inhibitory input subtracted), reset to v_reset.
const TWO_CURRENTS: &str = "neuron TwoCurrents {\n    param tau_m: ms = 15 ms\n    param tau_e: ms = 4 ms\n    param tau_i: ms = 9 ms\n    \
    param e_l: V = 0.2 V\n    param r: ohm = 2 ohm\n    state v: V = 0.2 V\n    state ie: A = 0 A\n    state ii: A = 0 A\n    \
    input exc: A\n    input inh: A\n    dv/dt = (e_l - v + r * (ie - 0.5 * ii)) / tau_m\n    die/dt = -ie / tau_e\n    \
    dii/dt = -ii / tau_i\n    on exc { ie += exc }\n    on inh { ii -= 2 * inh }\n    spike when v >= 1 V\n    on spike { v = 0.1 V }\n}\n";

/// f, the reset and g of TwoCurrents, written out by hand.
fn f(x: &[f64]) -> [f64; 3] {
    [(0.2 - x[0] + 2.0 * (x[1] - 0.5 * x[2])) / 0.015, -x[1] / 0.004, -x[2] / 0.009]
}

#[test]
#[allow(clippy::needless_range_loop)] // a Jacobian reads best with its indices
fn a_neuron_written_by_the_user_gets_the_general_jump_conditions() {
    let module = network(
        TWO_CURRENTS,
        "TwoCurrents",
        "connect x -> h.exc : dense(init = uniform(1 A, 3 A))\n    connect x -> h.inh : dense(init = uniform(0 A, 1 A))",
    );
    let pop: &Population = &module.populations[0];
    let adjoint: EventAdjoint = derive(pop).expect("linear dynamics, additive jumps");
    let x = [1.0, 2.3, 0.4];
    let lambda = [0.7, -1.3, 2.1];
    let e = 0.6;
    let value = |id| eval(&adjoint.exprs, id, &x, &lambda, e);
    // A from central differences of f.
    let h = 1e-6;
    let mut a = [[0.0; 3]; 3];
    for j in 0..3 {
        let (mut up, mut down) = (x, x);
        up[j] += h;
        down[j] -= h;
        for i in 0..3 {
            a[i][j] = (f(&up)[i] - f(&down)[i]) / (2.0 * h);
        }
    }
    for i in 0..3 {
        for j in 0..3 {
            assert!((value(adjoint.matrix[i][j]) - a[i][j]).abs() < 1e-4 * (1.0 + a[i][j].abs()), "A[{i}][{j}]");
        }
        assert!(close(value(adjoint.rhs[i]), f(&x)[i]), "f[{i}]");
        let at_lambda: f64 = (0..3).map(|k| a[k][i] * lambda[k]).sum();
        assert!((value(adjoint.adjoint_rhs[i]) + at_lambda).abs() < 1e-4 * (1.0 + at_lambda.abs()), "λ'[{i}]");
    }
    // The jump from its definition: R = diag(0, 1, 1), ∇g = (1, 0, 0), x⁺ = (0.1, ie, ii).
    let x_plus = [0.1, x[1], x[2]];
    let rt_lambda = [0.0, lambda[1], lambda[2]];
    let dot = |p: &[f64], q: &[f64]| p.iter().zip(q).map(|(a, b)| a * b).sum::<f64>();
    let rate = f(&x)[0];
    assert!(close(value(adjoint.crossing_rate), rate));
    let scale = (dot(&lambda, &f(&x_plus)) - dot(&rt_lambda, &f(&x)) + e) / rate;
    let expected = [rt_lambda[0] + scale, rt_lambda[1], rt_lambda[2]];
    for v in 0..3 {
        assert!(close(value(adjoint.jump[v]), expected[v]), "λ⁻[{v}]: {} vs {}", value(adjoint.jump[v]), expected[v]);
    }
    // Inputs: exc adds to ie (c = e_ie), inh subtracts twice from ii (c = -2 e_ii).
    let (c_exc, c_inh) = ([0.0, 1.0, 0.0], [0.0, 0.0, -2.0]);
    for (q, c) in [(0, c_exc), (1, c_inh)] {
        let a_c: Vec<f64> = (0..3).map(|i| dot(&a[i], &c)).collect();
        let transmit = dot(&lambda, &a_c);
        assert!((value(adjoint.transmit[q]) - transmit).abs() < 1e-4 * (1.0 + transmit.abs()), "transmit {q}");
        assert!(close(value(adjoint.weight_grad[q]), -dot(&lambda, &c)), "weight gradient {q}");
    }
}

#[test]
fn what_eventprop_cannot_differentiate_is_refused_with_a_reason() {
    let quadratic = "neuron Quadratic {\n    state v = 0\n    input syn\n    dv/dt = (v * v - v) / (10 ms)\n    on syn { v += syn }\n    \
                     spike when v >= 1\n    on spike { v = 0 }\n}\n";
    let module = common::module(&format!(
        "import std::encoders\n{quadratic}network N {{\n    dt = 0.1 ms\n    duration = 30 ms\n    input x[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    \
         population h[3] = Quadratic\n    connect x -> h.syn : dense(init = uniform(0, 1))\n}}\n"
    ));
    assert_eq!(derive(&module.populations[0]), Err(EventPropError::Nonlinear { var: "v".to_string() }));
    let lif = common::module(
        "import std::neurons\nimport std::encoders\nnetwork N {\n    dt = 0.5 ms\n    duration = 350 ms\n    \
         input x[5] = poisson(rate = sample * 20 Hz)\n    population e[4] = DiehlCookExc\n    connect x -> e.exc : dense(init = 0.1)\n}\n",
    );
    assert!(derive(&lif.populations[0]).is_err(), "a refractory, conductance-based neuron has no EventProp adjoint");
}

/// A 5-6-3 CubaLIF network with exact spike times: its first-spike cross-entropy loss, and the
/// loss's derivative with respect to every spike (nonzero at the output's first spikes).
fn first_spike_loss(net: &ExactNet, run: &Run, module: &snnc::ir::Module, label: usize, tau0: f64) -> (f64, Vec<Vec<f64>>) {
    let out = module.populations.len() - 1;
    let n = module.populations[out].size();
    let first = run.populations[out].first_times(n, net.duration);
    let z: Vec<f64> = first.iter().map(|t| -t / tau0).collect();
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
    let loss = -(z[label] - max) + sum.ln();
    let mut dl_dt: Vec<Vec<f64>> = run.populations.iter().map(|s| vec![0.0; s.len()]).collect();
    let spikes = &run.populations[out];
    for (j, zj) in z.iter().enumerate() {
        // The first spike of neuron j, if any: dL/dt_j = -(softmax_j - [j = label]) / tau0.
        let first_k =
            (0..spikes.len()).filter(|k| spikes.neurons[*k] as usize == j).min_by(|a, b| spikes.times[*a].total_cmp(&spikes.times[*b]));
        if let Some(k) = first_k {
            let p = (zj - max).exp() / sum;
            dl_dt[out][k] = -(p - f64::from(u8::from(j == label))) / tau0;
        }
    }
    (loss, dl_dt)
}

/// EventProp's weight gradients against central finite differences of the loss computed with
/// exact spike times, for every weight of `text`'s network; returns how many are nonzero.
fn check_against_finite_differences(text: &str, features: &[f32], label: usize, seed: u64) -> usize {
    let module = common::module(text);
    let net = ExactNet::new(&module, &[]).expect("a feed-forward network of linear neurons");
    let tau0 = 5e-4;
    let params = snnc::exec::state::init_params::<f64>(&module, seed);
    let run = net.forward(&module, &params, features);
    assert!(
        run.populations.iter().all(|s| !s.is_empty()),
        "every layer spikes: {:?}",
        run.populations.iter().map(Spikes::len).collect::<Vec<_>>()
    );
    // Spike times are not on the grid.
    assert!(run.populations.last().expect("an output").times.iter().any(|t| ((t / 1e-4) - (t / 1e-4).round()).abs() > 1e-6));
    let (loss, dl_dt) = first_spike_loss(&net, &run, &module, label, tau0);
    assert!(loss.is_finite());
    let grads = net.backward(&module, &params, &run, &dl_dt);
    let mut nonzero = 0;
    for (p, w) in params.weights.iter().enumerate() {
        for (k, exact) in grads[p].iter().enumerate().take(w.len()) {
            let h = 1e-6;
            let at = |delta: f64| {
                let mut moved = params.clone();
                moved.weights[p][k] += delta;
                let run = net.forward(&module, &moved, features);
                first_spike_loss(&net, &run, &module, label, tau0).0
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            let exact = *exact;
            assert!(
                (numeric - exact).abs() <= 1e-4 * (1.0 + numeric.abs()),
                "projection {p}, weight {k}: EventProp {exact} vs finite differences {numeric}"
            );
            nonzero += usize::from(exact.abs() > 1e-6);
        }
    }
    // Memory: one event per spike.
    assert_eq!(run.events(), run.inputs.iter().chain(&run.populations).map(Spikes::len).sum::<usize>());
    nonzero
}

#[test]
fn eventprop_gradients_match_finite_differences_of_the_exact_loss() {
    let text = "import std::neurons\nimport std::encoders\nnetwork N {\n    dt = 0.1 ms\n    duration = 30 ms\n    \
                input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[6] = CubaLIF\n    population out[3] = CubaLIF\n    \
                connect xy -> h.syn : dense(init = uniform(1.5 A, 3.5 A))\n    connect h -> out.syn : dense(init = uniform(1 A, 2.5 A))\n}\n\
                train {\n    data = yin_yang()\n    method = eventprop\n    predict = argmin(first_spike(out))\n    \
                loss ce = cross_entropy(-first_spike(out) / 0.5 ms, label)\n    optimizer = adam(lr = 1e-3)\n}\n";
    let features = [0.3f32, 0.8, 0.7, 0.2, 1.0];
    let module = common::module(text);
    let run = ExactNet::new(&module, &[]).expect("net").forward(&module, &snnc::exec::state::init_params::<f64>(&module, 4), &features);
    assert_eq!(run.inputs[0].len(), 5, "every input fires once, at its exact time");
    // Pixel 0.8 fires at (1 - 0.8) x 20 ms = 4 ms (up to f32's rounding of 0.8), not rounded to the grid.
    assert!(run.inputs[0].times.iter().any(|t| (t - 0.004).abs() < 1e-9), "{:?}", run.inputs[0].times);
    let nonzero = check_against_finite_differences(text, &features, 1, 4);
    assert!(nonzero >= 6, "gradients reach both layers ({nonzero} nonzero)");
}

/// The same check through a neuron written here, not in stdlib: two synaptic currents (one
/// subtracted), a leak towards e_l and a reset above zero.
#[test]
fn a_user_written_neuron_gets_exact_gradients_too() {
    let text = format!(
        "import std::neurons\nimport std::encoders\n{TWO_CURRENTS}network N {{\n    dt = 0.1 ms\n    duration = 30 ms\n    \
         input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[6] = TwoCurrents\n    population out[3] = CubaLIF\n    \
         connect xy -> h.exc : dense(init = uniform(0.5 A, 1.5 A))\n    connect xy -> h.inh : dense(init = uniform(0 A, 0.1 A))\n    \
         connect h -> out.syn : dense(init = uniform(1 A, 2.5 A))\n}}\n\
         train {{\n    data = yin_yang()\n    method = eventprop\n    predict = argmin(first_spike(out))\n    \
         loss ce = cross_entropy(-first_spike(out) / 0.5 ms, label)\n    optimizer = adam(lr = 1e-3)\n}}\n"
    );
    let nonzero = check_against_finite_differences(&text, &[0.3, 0.8, 0.7, 0.2, 1.0], 2, 7);
    assert!(nonzero >= 6, "{nonzero} nonzero gradients");
}

/// The method through the seam: repeated steps on one batch of Yin-Yang samples bring the
/// first-spike cross-entropy down.
#[test]
fn eventprop_training_lowers_the_loss_on_a_batch() {
    use snnc::train::method::{Example, Session, method_for};
    let text = "import std::neurons\nimport std::encoders\nnetwork N {\n    dt = 0.1 ms\n    duration = 30 ms\n    \
                input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[20] = CubaLIF\n    population out[3] = CubaLIF\n    \
                connect xy -> h.syn : dense(init = uniform(1.5 A, 3.5 A))\n    connect h -> out.syn : dense(init = uniform(0.5 A, 1.5 A))\n}\n\
                train {\n    data = yin_yang(train = 32, test = 8, seed = 3)\n    method = eventprop\n    predict = argmin(first_spike(out))\n    \
                loss ce = cross_entropy(-first_spike(out) / 0.5 ms, label)\n    optimizer = adam(lr = 5e-3)\n    batch = 16\n}\n";
    let module = common::valid(common::module(text));
    let train = module.train.as_ref().expect("train block");
    let data = snnc::data::yin_yang(32, 8, 3).train;
    let features: Vec<Vec<f32>> = (0..16).map(|i| data.sample(i).into_owned()).collect();
    let batch: Vec<Example> = features
        .iter()
        .enumerate()
        .map(|(i, f)| Example { sample: snnc::exec::state::SampleRef { id: i as u64, features: f }, label: usize::from(data.labels[i]) })
        .collect();
    let engine = common::build::<f64>(snnc::exec::engine::EngineKind::Jit, &module);
    let session = Session { module: &module, train, phase: &train.phases[0], engine: engine.as_ref(), seed: 1, recording: false };
    let mut method = method_for::<f64>(&train.method).expect("eventprop is built");
    let mut params = snnc::exec::state::init_params::<f64>(&module, 2);
    method.begin_phase(&params);
    let mut net = vec![];
    let mut losses = Vec::new();
    for _ in 0..30 {
        let outcome = method.train_batch(&session, &mut params, &mut net, &batch, 5e-3).expect("trains");
        losses.push(outcome.terms[0] / batch.len() as f64);
    }
    assert!(losses[29] < 0.8 * losses[0], "the loss falls: {losses:?}");
}

/// Every loss term of seeds/002 (CE, CS, AS and the spike penalty SP over neurons that fire
/// several times) through the method's own path, `sample_gradients`, against central finite
/// differences of the same terms computed with exact spike times.
#[test]
fn the_paper_s_loss_terms_have_exact_gradients_through_the_method() {
    let text = "import std::neurons\nimport std::encoders\nnetwork N {\n    dt = 0.1 ms\n    duration = 30 ms\n    \
                input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[6] = CubaLIF\n    population out[3] = CubaLIF\n    \
                connect xy -> h.syn : dense(init = uniform(2 A, 4 A))\n    connect h -> out.syn : dense(init = uniform(1.5 A, 3 A))\n}\n\
                train {\n    data = yin_yang()\n    method = eventprop\n    predict = argmin(first_spike(out))\n    \
                loss ce = cross_entropy(-first_spike(out) / 0.5 ms, label)\n    \
                loss cs = 3.5e-3 * (exp(pick(first_spike(out), label) / 6.4 ms) - 1)\n    \
                loss as = 3.5e-3 * mean(exp(first_spike(out) / 6.4 ms) - 1)\n    \
                loss sp = 0.4 ms * (sum(spike_penalty(h)) + sum(spike_penalty(out)))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let module = common::valid(common::module(text));
    let train = module.train.as_ref().expect("train block");
    let terms: Vec<_> = train.phases[0].losses.iter().map(|t| t.value).collect();
    assert_eq!(terms.len(), 4);
    let net = ExactNet::new(&module, &[]).expect("net");
    let params = snnc::exec::state::init_params::<f64>(&module, 11);
    let features = [0.3f32, 0.8, 0.7, 0.2, 1.0];
    let label = 1;
    let gradients = |params: &snnc::exec::state::Params<f64>| {
        snnc::train::eventprop::sample_gradients(&module, &train.exprs, &net, params, &[], &features, label, &terms).expect("runs")
    };
    let (values, grads) = gradients(&params);
    // The penalty has something to differentiate: some neurons fire more than once.
    let run = net.forward(&module, &params, &features);
    let repeats = |s: &Spikes, n: usize| (0..n).filter(|j| s.neurons.iter().filter(|m| **m as usize == *j).count() > 1).count();
    assert!(repeats(&run.populations[0], 6) > 0 && repeats(&run.populations[1], 3) > 0, "neurons fire several times");
    assert!(values[3] > 0.0, "SP is positive: {values:?}");
    let total = |params: &snnc::exec::state::Params<f64>| gradients(params).0.iter().sum::<f64>();
    let nonzero: usize = matches_finite_differences(&params, &grads, &total).iter().sum();
    assert!(nonzero >= 20, "{nonzero} nonzero gradients");
}

/// A 5-6-3 network whose spiking hidden layer drives three readouts that never reach their
/// threshold, trained on their largest membrane potential (Wunderlich & Pehle's max-voltage
/// readout) plus a mean-over-time term: EventProp's gradients, with the loss's derivatives
/// entering the adjoint at the grid times it samples, against central finite differences.
#[test]
fn a_loss_on_sampled_membranes_has_exact_gradients() {
    let text = "import std::neurons\nimport std::encoders\nnetwork N {\n    dt = 0.1 ms\n    duration = 30 ms\n    \
                input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[6] = CubaLIF\n    \
                population out[3] = CubaLIF(v_th = 1000 V)\n    \
                connect xy -> h.syn : dense(init = uniform(1.5 A, 3.5 A))\n    connect h -> out.syn : dense(init = uniform(-1 A, 2 A))\n}\n\
                train {\n    data = yin_yang()\n    method = eventprop\n    predict = argmax(max_t(out.v))\n    \
                loss ce = cross_entropy(max_t(out.v) / 0.1 V, label)\n    \
                loss level = 0.5 * mean(square(mean_t(out.v) / 1 V))\n    optimizer = adam(lr = 1e-3)\n}\n";
    let module = common::valid(common::module(text));
    let train = module.train.as_ref().expect("train block");
    let terms: Vec<_> = train.phases[0].losses.iter().map(|t| t.value).collect();
    let net = ExactNet::new(&module, &[]).expect("net");
    let params = snnc::exec::state::init_params::<f64>(&module, 5);
    let features = [0.3f32, 0.8, 0.7, 0.2, 1.0];
    let gradients = |params: &snnc::exec::state::Params<f64>| {
        snnc::train::eventprop::sample_gradients(&module, &train.exprs, &net, params, &[], &features, 2, &terms).expect("runs")
    };
    let (_, grads) = gradients(&params);
    let run = net.forward(&module, &params, &features);
    assert!(!run.populations[0].is_empty() && run.populations[1].is_empty(), "the hidden layer spikes, the readout does not");
    let total = |params: &snnc::exec::state::Params<f64>| gradients(params).0.iter().sum::<f64>();
    let nonzero = matches_finite_differences(&params, &grads, &total);
    assert!(nonzero[0] >= 10 && nonzero[1] >= 10, "gradients reach both layers through the hidden spike times: {nonzero:?}");
}

/// On a readout that stays below its threshold, EventProp and surrogate BPTT differentiate the
/// same loss: the surrogate never acts, and what is left between them is the grid (BPTT
/// delivers each latency input at its step, EventProp at its exact time), which vanishes
/// with dt.
#[test]
fn eventprop_agrees_with_bptt_at_small_dt_on_a_subthreshold_readout() {
    let model = |method: &str, dt: &str| {
        format!(
            "import std::neurons\nimport std::encoders\nimport std::surrogates\nnetwork N {{\n    dt = {dt}\n    duration = 30 ms\n    \
             input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population out[3] = CubaLIF(v_th = 1000 V)\n    \
             connect xy -> out.syn : dense(init = uniform(-1 A, 2 A))\n}}\n\
             train {{\n    data = yin_yang()\n    method = {method}\n    predict = argmax(mean_t(out.v))\n    \
             loss ce = cross_entropy(mean_t(out.v) / 0.1 V, label)\n    optimizer = adam(lr = 1e-3)\n}}\n"
        )
    };
    let features = vec![0.33f32, 0.81, 0.67, 0.19, 1.0];
    let label = 1;
    let difference = |dt: &str| {
        let exact = common::valid(common::module(&model("eventprop", dt)));
        let params = snnc::exec::state::init_params::<f64>(&exact, 8);
        let train = exact.train.as_ref().expect("train block");
        let terms: Vec<_> = train.phases[0].losses.iter().map(|t| t.value).collect();
        let net = ExactNet::new(&exact, &[]).expect("net");
        let (_, eventprop) =
            snnc::train::eventprop::sample_gradients(&exact, &train.exprs, &net, &params, &[], &features, label, &terms).expect("runs");
        let bptt = common::valid(common::module(&model("bptt(surrogate = fast_sigmoid())", dt)));
        let engine = common::build::<f64>(snnc::exec::engine::EngineKind::Jit, &bptt);
        let inputs = vec![features.clone()];
        let (_, grads) = common::gradients(&bptt, engine.as_ref(), &params, &common::examples(&inputs, &[label]), 1);
        let (mut diff, mut norm) = (0.0f64, 0.0f64);
        for (a, b) in eventprop[0].iter().zip(&grads.weights[0]) {
            diff = diff.max((a - b).abs());
            norm = norm.max(a.abs());
        }
        assert!(norm > 1e-3, "the gradients are not all zero");
        diff / norm
    };
    let coarse = difference("0.1 ms");
    let fine = difference("0.01 ms");
    eprintln!("largest difference over largest gradient: {coarse:.2e} at dt = 0.1 ms, {fine:.2e} at 0.01 ms");
    assert!(fine < 2e-3, "at dt = 0.01 ms the two gradients agree to 0.2% of the largest ({fine})");
    assert!(fine < 0.3 * coarse, "and the difference shrinks with dt ({coarse} at 0.1 ms, {fine} at 0.01 ms)");
}

/// The forward pass simulates a population's neurons together (one propagator per segment of
/// the inputs' shared timeline, weight rows added to all neurons at once); it gives what the
/// one-neuron-at-a-time reference gives, to the last bit: spike times, pre-spike states and
/// sampled states, for quiet and for busy networks.
#[test]
fn the_population_simulation_equals_the_per_neuron_reference() {
    for (range_in, range_out) in [("1 A, 3 A", "0 A, 1 A"), ("2 A, 5 A", "1 A, 4 A"), ("0 A, 3 A", "-1 A, 3 A")] {
        let text = format!(
            "import std::neurons\nimport std::encoders\nnetwork N {{\n    dt = 0.1 ms\n    duration = 30 ms\n    \
             input xy[5] = latency(sample, t_min = 0 ms, t_max = 20 ms)\n    population h[17] = CubaLIF\n    population out[3] = CubaLIF\n    \
             connect xy -> h.syn : dense(init = uniform({range_in}))\n    connect h -> out.syn : dense(init = uniform({range_out}))\n}}\n\
             train {{\n    data = yin_yang()\n    method = eventprop\n    predict = argmax(max_t(out.v))\n    \
             loss ce = cross_entropy(max_t(out.v) / 0.1 V, label)\n    optimizer = adam(lr = 1e-3)\n}}\n"
        );
        let module = common::module(&text);
        let net = ExactNet::new(&module, &[]).expect("net");
        for seed in 0..4 {
            let params = snnc::exec::state::init_params::<f64>(&module, seed);
            let features = [0.1 + 0.2 * seed as f32, 0.8, 0.7 - 0.1 * seed as f32, 0.2, 1.0];
            let fast = net.forward_sampling(&module, &params, &features, &[true, true]);
            let reference = net.forward_reference(&module, &params, &features, &[true, true]);
            assert!(!fast.populations[0].is_empty(), "the hidden layer spikes ({range_in}, seed {seed})");
            assert_eq!(fast, reference, "inputs {range_in} / {range_out}, seed {seed}");
        }
    }
}

/// Every weight gradient in `grads` against central finite differences of `total` (to 1e-4
/// relative); returns how many are nonzero, per projection.
fn matches_finite_differences(
    params: &snnc::exec::state::Params<f64>,
    grads: &[Vec<f64>],
    total: &dyn Fn(&snnc::exec::state::Params<f64>) -> f64,
) -> Vec<usize> {
    let mut nonzero = vec![0; params.weights.len()];
    for (p, w) in params.weights.iter().enumerate() {
        for (k, exact) in grads[p].iter().enumerate().take(w.len()) {
            let h = 1e-6;
            let at = |delta: f64| {
                let mut moved = params.clone();
                moved.weights[p][k] += delta;
                total(&moved)
            };
            let numeric = (at(h) - at(-h)) / (2.0 * h);
            assert!(
                (numeric - exact).abs() <= 1e-4 * (1.0 + numeric.abs()),
                "projection {p}, weight {k}: EventProp {exact} vs finite differences {numeric}"
            );
            nonzero[p] += usize::from(exact.abs() > 1e-6);
        }
    }
    nonzero
}
