//! Every neuron of `stdlib/neurons.snn` against its reference equation. A tiny network drives a
//! few neurons with a constant input; the oracle and the JIT (both in f64) must reproduce, step
//! by step, the sequence written out by hand here from the equation of the neuron's source
//! (snnTorch, the seeds, Diehl & Cook 2015, Bolding 2024): states within 1e-9 relative, spikes
//! exactly, and the two engines' spike trains identical. The hand computations never call snnc;
//! they only read the values a run draws at random (per-neuron time constants, initial states).

mod common;

use std::collections::BTreeMap;

use snnc::exec::engine::{Ctx, EngineKind, ParamsAccess, Shard};
use snnc::exec::state::{Params, SampleRef, Trace, init_params, net_params};
use snnc::ir::validate::Valid;

const SEED: u64 = 7;
const RELATIVE: f64 = 1e-9;

/// A network of one constant input `x[n]` (`repeat(sample)`) driving one population `p[n]`
/// through the given connections (`"i : one_to_one(weight = 0.5)"` becomes `connect x -> p.i : ...`).
fn network(dt: &str, steps: usize, n: usize, population: &str, connections: &[&str]) -> String {
    let mut text = format!(
        "import std::neurons\nimport std::encoders\nnetwork N {{\n    dt = {dt}\n    steps = {steps}\n    input x[{n}] = repeat(sample)\n    population p[{n}] = {population}\n"
    );
    for connection in connections {
        text.push_str(&format!("    connect x -> p.{connection}\n"));
    }
    text.push_str("}\n");
    text
}

fn heaviside(x: f64) -> f64 {
    if x > 0.0 { 1.0 } else { 0.0 }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One model run on the oracle and on the JIT, and the disagreements of both with the
/// sequence computed by hand.
struct Run {
    neuron: &'static str,
    module: Valid,
    params: Params<f64>,
    engines: Vec<(&'static str, Trace<f64>)>,
    /// The first disagreement per (engine, quantity, neuron) and how many steps disagreed.
    failures: BTreeMap<(usize, String, usize), (String, usize)>,
    /// Spikes of the hand-computed sequence, per neuron.
    spikes: Vec<usize>,
}

impl Run {
    fn new(neuron: &'static str, text: &str, features: &[f32]) -> Run {
        let module = common::valid(common::module(text));
        assert_eq!(module.populations.len(), 1, "{neuron}: one population");
        assert_eq!(module.populations[0].size(), features.len(), "{neuron}: one feature per neuron");
        let params = init_params::<f64>(&module, 1);
        let net = net_params::<f64>(&module);
        let samples = [SampleRef { id: 0, features }];
        let oracle = snnc::exec::oracle::run(&module, ParamsAccess::Shared(&params), &samples, SEED, &net, None);
        let engine = common::build::<f64>(EngineKind::Jit, &module);
        let ctx = Ctx { module: &module, seed: SEED, net: &net };
        let jit = engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None);
        assert_eq!(oracle.steps, module.steps, "{neuron}: steps of the oracle");
        assert_eq!(jit.steps, module.steps, "{neuron}: steps of the JIT");
        let spikes = vec![0; features.len()];
        Run { neuron, module, params, engines: vec![("oracle", oracle), ("jit", jit)], failures: BTreeMap::new(), spikes }
    }

    fn steps(&self) -> usize {
        self.module.steps
    }

    fn var(&self, name: &str) -> usize {
        let id = self.module.populations[0].var_by_name(name).unwrap_or_else(|| panic!("{}: no variable `{name}`", self.neuron));
        id.0 as usize
    }

    /// A per-neuron parameter as the run drew it.
    fn param(&self, name: &str, k: usize) -> f64 {
        let values = &self.params.neuron_params[0][self.var(name)];
        if values.len() == 1 { values[0] } else { values[k] }
    }

    /// A state's initial value as the run drew it, the same on both engines.
    fn initial(&self, name: &str, k: usize) -> f64 {
        let v = self.var(name);
        let value = self.engines[0].1.state_before(0, 0, v)[k];
        for (engine, trace) in &self.engines {
            assert_eq!(trace.state_before(0, 0, v)[k], value, "{}: initial {name} of neuron {k} on the {engine}", self.neuron);
        }
        value
    }

    fn fail(&mut self, engine: usize, what: String, k: usize, message: String) {
        self.failures.entry((engine, what, k)).and_modify(|(_, count)| *count += 1).or_insert((message, 1));
    }

    /// Variable `name` of neuron `k` after step `t` is `expected`, within 1e-9 relative.
    fn state(&mut self, name: &str, t: usize, k: usize, expected: f64) {
        let v = self.var(name);
        for e in 0..self.engines.len() {
            let (engine, found) = (self.engines[e].0, self.engines[e].1.state_after(t, 0, v)[k]);
            let close = (found - expected).abs() <= RELATIVE * found.abs().max(expected.abs());
            if !close {
                let message =
                    format!("{}: {name} of neuron {k} after step {t} on the {engine}: expected {expected:e}, found {found:e}", self.neuron);
                self.fail(e, name.to_string(), k, message);
            }
        }
    }

    /// Neuron `k` spikes in step `t` exactly when `expected`.
    fn spike(&mut self, t: usize, k: usize, expected: bool) {
        self.spikes[k] += usize::from(expected);
        for e in 0..self.engines.len() {
            let (engine, found) = (self.engines[e].0, self.engines[e].1.spikes_at::<f64>(t, 0)[k] == 1.0);
            if found != expected {
                let message =
                    format!("{}: spike of neuron {k} in step {t} on the {engine}: expected {expected}, found {found}", self.neuron);
                self.fail(e, "spike".to_string(), k, message);
            }
        }
    }

    /// Panics with every disagreement (the first step of each); then checks that the engines'
    /// spike trains are identical and that each neuron of `spiking` spikes at least twice.
    fn finish(self, spiking: &[usize]) {
        let report: Vec<String> = self
            .failures
            .values()
            .map(|(message, count)| if *count > 1 { format!("{message} (and {} later steps)", count - 1) } else { message.clone() })
            .collect();
        assert!(report.is_empty(), "{} disagrees with its reference equation:\n{}", self.neuron, report.join("\n"));
        assert_eq!(self.engines[0].1.spikes, self.engines[1].1.spikes, "{}: the oracle's and the JIT's spike trains", self.neuron);
        for &k in spiking {
            assert!(self.spikes[k] >= 2, "{}: neuron {k} spikes {} times; the test needs at least two", self.neuron, self.spikes[k]);
        }
    }
}

/// snnTorch's `Leaky` with subtractive reset (seeds/003; REFERENCE.md A):
/// mem[t] = beta mem[t-1] + x[t] - s[t-1] threshold, s[t] = H(mem[t] - threshold) with H(0) = 0,
/// the reset being the previous step's spike; `reset` holds s[t]. Defaults beta 0.95, threshold 1.
#[test]
fn leaky_follows_snntorch_leaky() {
    let features = [0.6f32, 0.9, 1.5];
    let text = network("1 ms", 40, 3, "Leaky", &["i : one_to_one(weight = 0.5)"]);
    let mut run = Run::new("Leaky", &text, &features);
    let (beta, threshold) = (0.95, 1.0);
    for (k, feature) in features.iter().enumerate() {
        let x = f64::from(*feature) * 0.5;
        let (mut mem, mut s) = (0.0, 0.0);
        for t in 0..run.steps() {
            mem = beta * mem + x - s * threshold;
            s = heaviside(mem - threshold);
            run.state("v", t, k, mem);
            run.state("reset", t, k, s);
            run.spike(t, k, s == 1.0);
        }
    }
    run.finish(&[0, 1, 2]);
}

/// Discrete leaky integrate-and-fire with reset to zero in the step of the spike, as the stdlib
/// documents it (no seed uses it; unlike snnTorch's `reset_mechanism = "zero"`, which zeroes the
/// step after the spike, input included): v[t] = beta v[t-1] + x[t], s[t] = H(v[t] - threshold),
/// then v[t] = 0 where s[t] = 1. Defaults beta 0.95, threshold 1.
#[test]
fn leaky_zero_resets_to_zero_in_the_step_of_the_spike() {
    let features = [0.6f32, 0.9, 1.5];
    let text = network("1 ms", 40, 3, "LeakyZero", &["i : one_to_one(weight = 0.5)"]);
    let mut run = Run::new("LeakyZero", &text, &features);
    let (beta, threshold) = (0.95, 1.0);
    for (k, feature) in features.iter().enumerate() {
        let x = f64::from(*feature) * 0.5;
        let mut v = 0.0;
        for t in 0..run.steps() {
            v = beta * v + x;
            let s = v > threshold;
            if s {
                v = 0.0;
            }
            run.state("v", t, k, v);
            run.spike(t, k, s);
        }
    }
    run.finish(&[0, 1, 2]);
}

/// Current-based LIF (Wunderlich & Pehle 2021; seeds/002; REFERENCE.md C): tau_m dV/dt = -V + R I,
/// tau_s dI/dt = -I, I += w on an input event, spike when V >= 1 V, reset to 0, no refractory
/// period. Integrated exactly over each step from the state after the step's input jump:
/// V' = e^{-dt/tau_m} V + R tau_s / (tau_m - tau_s) (e^{-dt/tau_m} - e^{-dt/tau_s}) I,
/// I' = e^{-dt/tau_s} I. Defaults tau_m 20 ms, tau_s 5 ms, R 1 ohm; dt 1 ms.
#[test]
fn cuba_lif_follows_the_exact_solution_of_its_odes() {
    let features = [1.0f32, 0.7];
    let text = network("1 ms", 60, 2, "CubaLIF", &["syn : one_to_one(weight = 0.5 A)"]);
    let mut run = Run::new("CubaLIF", &text, &features);
    let (tau_m, tau_s, r, v_th, dt): (f64, f64, f64, f64, f64) = (20e-3, 5e-3, 1.0, 1.0, 1e-3);
    let (decay_m, decay_s) = ((-dt / tau_m).exp(), (-dt / tau_s).exp());
    let coupling = r * tau_s / (tau_m - tau_s) * (decay_m - decay_s);
    for (k, feature) in features.iter().enumerate() {
        let w = f64::from(*feature) * 0.5;
        let (mut v, mut i) = (0.0, 0.0);
        for t in 0..run.steps() {
            i += w;
            v = decay_m * v + coupling * i;
            i *= decay_s;
            let s = v >= v_th;
            if s {
                v = 0.0;
            }
            run.state("v", t, k, v);
            run.state("i", t, k, i);
            run.spike(t, k, s);
        }
    }
    run.finish(&[0, 1]);
}

/// Non-spiking leaky integrator readout of seeds/000 (REFERENCE.md D), in the authors' order:
/// u[t] = e^{-dt/tau} (u[t-1] + x[t]), with the per-neuron time constant starting at 5 ms; dt
/// 0.5 ms.
#[test]
fn leaky_integrator_decays_with_its_own_time_constant() {
    let features = [1.0f32, -0.4];
    let text = network("0.5 ms", 30, 2, "LeakyIntegrator", &["i : one_to_one(weight = 0.5)"]);
    let mut run = Run::new("LeakyIntegrator", &text, &features);
    let dt: f64 = 0.5e-3;
    for (k, feature) in features.iter().enumerate() {
        let tau = run.param("tau", k);
        assert!((tau - 5e-3).abs() < 1e-12, "LeakyIntegrator: tau of neuron {k} starts at 5 ms, got {tau}");
        let x = f64::from(*feature) * 0.5;
        let mut u = 0.0;
        for t in 0..run.steps() {
            // The authors' readout: `mem = (mem + x) * alpha`.
            u = (-dt / tau).exp() * (u + x);
            run.state("u", t, k, u);
            run.spike(t, k, false);
        }
    }
    run.finish(&[]);
}

/// Dimensionless leaky readout (snnTorch's `Leaky` membrane without a threshold, the readout of
/// the Yin-Yang model): v[t] = beta v[t-1] + x[t]; never spikes. Default beta 0.95.
#[test]
fn li_integrates_with_a_fixed_decay_and_never_spikes() {
    let features = [1.0f32, -0.4];
    let text = network("1 ms", 30, 2, "LI", &["i : one_to_one(weight = 0.5)"]);
    let mut run = Run::new("LI", &text, &features);
    let beta = 0.95;
    for (k, feature) in features.iter().enumerate() {
        let x = f64::from(*feature) * 0.5;
        let mut v = 0.0;
        for t in 0..run.steps() {
            v = beta * v + x;
            run.state("v", t, k, v);
            run.spike(t, k, false);
        }
    }
    run.finish(&[]);
}

/// Diehl & Cook 2015 excitatory neuron (seeds/001; REFERENCE.md B; the authors' Brian script):
/// tau_m dv/dt = (v_rest - v) + ge (e_exc - v) + gi (e_inh - v), dge/dt = -ge / tau_ge,
/// dgi/dt = -gi / tau_gi, dtheta/dt = -theta / tau_theta; ge += w and gi += w on input; spike
/// when v > theta - 20 mV + v_thresh; on a spike v = v_reset and theta += theta_plus; during the
/// refractory period v is clamped at v_reset (Brian clamps v only: ge, gi and theta evolve).
/// The IR integrates v with forward Euler (the equation is bilinear in v and ge) and ge, gi,
/// theta exactly, all from the state after the step's input jumps; the refractory period lasts
/// round(t_ref / dt) steps after the spike. Reference constants: v_rest = v_reset = -65 mV,
/// v_thresh -52 mV, e_exc 0, e_inh -100 mV, tau_m 100 ms, tau_ge 1 ms, tau_gi 2 ms, tau_theta
/// 1e7 ms, theta_plus 0.05 mV, t_ref 5 ms, v starting at -105 mV and theta at 20 mV; dt 0.5 ms.
#[test]
fn diehl_cook_exc_follows_diehl_and_cook() {
    let features = [1.0f32, 0.6];
    let text = network("0.5 ms", 200, 2, "DiehlCookExc", &["exc : one_to_one(weight = 1)", "inh : one_to_one(weight = 0.1)"]);
    let mut run = Run::new("DiehlCookExc", &text, &features);
    let (v_rest, v_reset, v_thresh, offset, e_exc, e_inh) = (-65e-3, -65e-3, -52e-3, 20e-3, 0.0, -100e-3);
    let (tau_m, tau_ge, tau_gi, tau_theta, theta_plus, t_ref): (f64, f64, f64, f64, f64, f64) = (100e-3, 1e-3, 2e-3, 1e4, 0.05e-3, 5e-3);
    let dt: f64 = 0.5e-3;
    let refractory_steps = (t_ref / dt).round() as usize;
    for (k, feature) in features.iter().enumerate() {
        let (w_exc, w_inh) = (f64::from(*feature), f64::from(*feature) * 0.1);
        let (mut v, mut ge, mut gi, mut theta) = (-105e-3, 0.0, 0.0, 20e-3);
        let mut refractory = 0;
        for t in 0..run.steps() {
            ge += w_exc;
            gi += w_inh;
            let dv = ((v_rest - v) + ge * (e_exc - v) + gi * (e_inh - v)) / tau_m;
            ge *= (-dt / tau_ge).exp();
            gi *= (-dt / tau_gi).exp();
            theta *= (-dt / tau_theta).exp();
            let mut s = false;
            if refractory > 0 {
                refractory -= 1;
            } else {
                v += dt * dv;
                if v > theta - offset + v_thresh {
                    s = true;
                    v = v_reset;
                    theta += theta_plus;
                    refractory = refractory_steps;
                }
            }
            run.state("v", t, k, v);
            run.state("ge", t, k, ge);
            run.state("gi", t, k, gi);
            run.state("theta", t, k, theta);
            run.spike(t, k, s);
        }
    }
    run.finish(&[0, 1]);
}

/// Diehl & Cook 2015 inhibitory neuron (seeds/001; REFERENCE.md B):
/// `tau_m dv/dt = (v_rest - v) + ge (e_exc - v) + gi (e_inh - v)`, dge/dt = -ge / tau_ge, dgi/dt = -gi / tau_gi; spike when
/// v > v_thresh, then v = v_reset, clamped there for the refractory period. Euler for v, exact
/// decay for ge and gi, as the IR integrates them (see `diehl_cook_exc_follows_diehl_and_cook`).
/// Reference constants: v_rest -60 mV, v_reset -45 mV, v_thresh -40 mV, e_exc 0, e_inh -85 mV,
/// tau_m 10 ms, tau_ge 1 ms, tau_gi 2 ms, t_ref 2 ms, v starting at -100 mV; dt 0.5 ms.
#[test]
fn diehl_cook_inh_follows_diehl_and_cook() {
    let features = [1.0f32, 0.6];
    let text = network("0.5 ms", 100, 2, "DiehlCookInh", &["exc : one_to_one(weight = 1)", "inh : one_to_one(weight = 0.1)"]);
    let mut run = Run::new("DiehlCookInh", &text, &features);
    let (v_rest, v_reset, v_thresh, e_exc, e_inh) = (-60e-3, -45e-3, -40e-3, 0.0, -85e-3);
    let (tau_m, tau_ge, tau_gi, t_ref): (f64, f64, f64, f64) = (10e-3, 1e-3, 2e-3, 2e-3);
    let dt: f64 = 0.5e-3;
    let refractory_steps = (t_ref / dt).round() as usize;
    for (k, feature) in features.iter().enumerate() {
        let (w_exc, w_inh) = (f64::from(*feature), f64::from(*feature) * 0.1);
        let (mut v, mut ge, mut gi) = (-100e-3, 0.0, 0.0);
        let mut refractory = 0;
        for t in 0..run.steps() {
            ge += w_exc;
            gi += w_inh;
            let dv = ((v_rest - v) + ge * (e_exc - v) + gi * (e_inh - v)) / tau_m;
            ge *= (-dt / tau_ge).exp();
            gi *= (-dt / tau_gi).exp();
            let mut s = false;
            if refractory > 0 {
                refractory -= 1;
            } else {
                v += dt * dv;
                if v > v_thresh {
                    s = true;
                    v = v_reset;
                    refractory = refractory_steps;
                }
            }
            run.state("v", t, k, v);
            run.state("ge", t, k, ge);
            run.state("gi", t, k, gi);
            run.spike(t, k, s);
        }
    }
    run.finish(&[0, 1]);
}

/// Soma + apical-tuft ALIF of Bolding 2024 (seeds/000, after Zhang, Chitic & Bohte 2024; the
/// stdlib and DESIGN.md): with eta = e^{-dt/tau_a}, alpha = e^{-dt/tau_m}, rho = e^{-dt/tau_adp},
/// a[t] = eta a[t-1] + fb[t]; b[t] = rho b[t-1] + (1 - rho) z[t-1]; theta[t] = 0.1 + 1.8 b[t];
/// s[t] = alpha s[t-1] + (sigmoid(a[t]) - 0.5) / 2 + ff[t] - theta[t] z[t-1]; z[t] = 1 when
/// s[t] - theta[t] > 0 (the authors' code: the reset waits for the next step, undecayed, with
/// the adapted threshold). The time constants are per neuron as drawn
/// (normal(15, 0.1), normal(15, 0.1), normal(20, 0.1) ms), s starts uniform in [0, 1), b at 0.1;
/// dt 0.5 ms. Feed-forward input drives the soma, feedback the apical tuft.
#[test]
fn two_compartment_alif_follows_its_equations() {
    let features = [1.0f32, 0.4];
    let text =
        network("0.5 ms", 40, 2, "TwoCompartmentALIF", &["soma.ff : one_to_one(weight = 0.1)", "apical.fb : one_to_one(weight = 0.05)"]);
    let mut run = Run::new("TwoCompartmentALIF", &text, &features);
    let dt: f64 = 0.5e-3;
    for (k, feature) in features.iter().enumerate() {
        let (tau_m, tau_a, tau_adp) = (run.param("tau_m", k), run.param("tau_a", k), run.param("tau_adp", k));
        for (name, tau, mean) in [("tau_m", tau_m, 15e-3), ("tau_a", tau_a, 15e-3), ("tau_adp", tau_adp, 20e-3)] {
            assert!((tau - mean).abs() < 1e-3, "TwoCompartmentALIF: {name} of neuron {k} drawn near {mean}, got {tau}");
        }
        let (alpha, eta, rho) = ((-dt / tau_m).exp(), (-dt / tau_a).exp(), (-dt / tau_adp).exp());
        let (ff, fb) = (f64::from(*feature) * 0.1, f64::from(*feature) * 0.05);
        let mut s = run.initial("soma.s", k);
        assert!((0.0..1.0).contains(&s), "TwoCompartmentALIF: soma.s of neuron {k} starts in [0, 1), got {s}");
        assert_eq!(run.initial("apical.a", k), 0.0, "TwoCompartmentALIF: apical.a starts at 0");
        assert_eq!(run.initial("soma.b", k), 0.1, "TwoCompartmentALIF: soma.b starts at 0.1");
        // The authors' order (spikingPC's mem_update_adp): adapt to the previous spike z,
        // then integrate with the soft reset by the new threshold, then test.
        let (mut a, mut b, mut z) = (0.0, 0.1, 0.0);
        let mut spikes = 0;
        for t in 0..run.steps() {
            a = eta * a + fb;
            b = rho * b + (1.0 - rho) * z;
            let theta = 0.1 + 1.8 * b;
            s = alpha * s + (sigmoid(a) - 0.5) / 2.0 + ff - theta * z;
            z = heaviside(s - theta);
            spikes += z as usize;
            run.state("apical.a", t, k, a);
            run.state("soma.s", t, k, s);
            run.state("soma.b", t, k, b);
            run.state("soma.z", t, k, z);
            run.spike(t, k, z == 1.0);
        }
        assert!(spikes >= 2, "TwoCompartmentALIF: neuron {k} spikes and resets ({spikes} spikes)");
    }
    run.finish(&[0, 1]);
}

/// LIF of the spiking convolutional auto-encoder (seeds/004 eqs 2-4 and 7; REFERENCE.md E):
/// u(t) = tau u'(t-1) + x(t); phi(t) = 1 if u(t) >= omega; u'(t) = 0 if u(t) >= omega, -omega if
/// u(t) < -omega, else u(t); the leaky cumulative potential U(t) = tau U(t-1) + u(t) sums the
/// potential before reset and bound. `u` holds u'(t), `cumulative` U(t). Defaults tau 0.99,
/// omega 1. Neuron 0 spikes regularly, neuron 1 reaches the threshold exactly (u = 1 at step 0),
/// neuron 2 is driven below the lower bound.
#[test]
fn bounded_lif_follows_the_spiking_auto_encoder() {
    let features = [0.3f32, 1.0, -0.3];
    let text = network("1 ms", 30, 3, "BoundedLIF", &["i : one_to_one(weight = 1)"]);
    let mut run = Run::new("BoundedLIF", &text, &features);
    let (tau, omega) = (0.99, 1.0);
    let mut bounded = false;
    for (k, feature) in features.iter().enumerate() {
        let x = f64::from(*feature);
        let (mut u_after, mut cumulative) = (0.0, 0.0);
        for t in 0..run.steps() {
            let u = tau * u_after + x;
            let phi = u >= omega;
            u_after = if phi {
                0.0
            } else if u < -omega {
                bounded = true;
                -omega
            } else {
                u
            };
            cumulative = tau * cumulative + u;
            run.state("u", t, k, u_after);
            run.state("cumulative", t, k, cumulative);
            run.spike(t, k, phi);
        }
    }
    assert!(bounded, "BoundedLIF: the test drives a neuron below the lower bound");
    run.finish(&[0, 1]);
}

/// BoundedLIFCurrent: BoundedLIF's membrane, spikes, reset and bound, with the authors'
/// cumulative potential U(t) = tau (U(t-1) + x(t)) of the input current.
#[test]
fn bounded_lif_current_sums_the_input_current() {
    let features = [0.3f32, 1.0, -0.3];
    let text = network("1 ms", 30, 3, "BoundedLIFCurrent", &["i : one_to_one(weight = 1)"]);
    let mut run = Run::new("BoundedLIFCurrent", &text, &features);
    let (tau, omega) = (0.99, 1.0);
    for (k, feature) in features.iter().enumerate() {
        let x = f64::from(*feature);
        let (mut u_after, mut cumulative) = (0.0, 0.0);
        for t in 0..run.steps() {
            let u = tau * u_after + x;
            let phi = u >= omega;
            u_after = if phi { 0.0 } else { u.max(-omega) };
            cumulative = tau * (cumulative + x);
            run.state("u", t, k, u_after);
            run.state("cumulative", t, k, cumulative);
            run.spike(t, k, phi);
        }
    }
    run.finish(&[0, 1]);
}

/// A spike condition gated with `and` and `or` (docs/language.md): the comparison counts while
/// the gate holds, and the `or` condition spikes on its own. Here a leaky neuron that may fire
/// only after more than 3 steps since its last spike (a lockout like the timer of Diehl &
/// Cook's script), and fires anyway after 20 silent steps.
#[test]
fn a_gated_spike_condition_fires_as_written() {
    let neuron = "neuron Gated {\n    state v = 0\n    state count = 0\n    input i\n    update {\n        v = 0.9 * v + i\n        \
                  count = count + 1\n    }\n    spike when v > 1 and count > 3 or count == 20\n    on spike {\n        v = 0\n        count = 0\n    }\n}\n";
    let text = network("1 ms", 45, 3, "Gated", &["i : one_to_one(weight = 0.5)"]).replacen("network N", &format!("{neuron}network N"), 1);
    let features = [0.6f32, 1.5, 0.1];
    let mut run = Run::new("Gated", &text, &features);
    for (k, feature) in features.iter().enumerate() {
        let x = f64::from(*feature) * 0.5;
        let (mut v, mut count) = (0.0, 0.0);
        for t in 0..run.steps() {
            v = 0.9 * v + x;
            count += 1.0;
            let s = (v > 1.0 && count > 3.0) || count == 20.0;
            if s {
                v = 0.0;
                count = 0.0;
            }
            run.state("v", t, k, v);
            run.state("count", t, k, count);
            run.spike(t, k, s);
        }
    }
    // Neuron 1 crosses 1 in its second step but waits for the gate; neuron 2 never crosses
    // and fires by the `or` condition alone, every 20 steps.
    run.finish(&[0, 1, 2]);
}

/// `exp` (and `sigmoid` and `gauss`, built on it) is computed inline in the JIT's vector lanes
/// by the same operations as `snnc::ir::exp` on the oracle: the engines agree bit for bit, in
/// f32 and f64, over the whole range, its ends and beyond (0 below, infinity above), in both
/// the vector body and the one-lane tail (an odd number of neurons); and `ir::exp` is within
/// two units in the last place of libm's.
#[test]
fn exp_is_the_same_on_both_engines_and_close_to_libm() {
    fn check<F: snnc::exec::real::Real>(xs: &[f32]) {
        let neuron = "neuron E {\n    state v = 0\n    state s = 0\n    state g = 0\n    input i\n    update {\n        v = exp(i)\n        \
                      s = sigmoid(i)\n        g = gauss(i, 0.5, 2)\n    }\n}\n";
        let text =
            network("1 ms", 1, xs.len(), "E", &["i : one_to_one(weight = 1)"]).replacen("network N", &format!("{neuron}network N"), 1);
        let module = common::valid(common::module(&text));
        let params = init_params::<F>(&module, 1);
        let net = net_params::<F>(&module);
        let samples = [SampleRef { id: 0, features: xs }];
        let ctx = Ctx { module: &module, seed: SEED, net: &net };
        // Through the engines, which both flush subnormal results to zero.
        let [oracle, jit] = [EngineKind::Oracle, EngineKind::Jit].map(|kind| {
            let engine = common::build::<F>(kind, &module);
            engine.forward(&ctx, ParamsAccess::Shared(&params), Shard { samples: &samples, hoisted: None }, None)
        });
        for name in ["v", "s", "g"] {
            let v = module.populations[0].var_by_name(name).expect("a state").0 as usize;
            let (a, b) = (oracle.state_after(0, 0, v), jit.state_after(0, 0, v));
            for (k, (x, y)) in a.iter().zip(b).enumerate() {
                assert!(x == y || (x.is_nan() && y.is_nan()), "{name}({}) in {} bytes: oracle {x:?}, JIT {y:?}", xs[k], F::BYTES);
            }
        }
        let v = module.populations[0].var_by_name("v").expect("v").0 as usize;
        for (k, x) in xs.iter().enumerate() {
            let (found, expected) = (oracle.state_after(0, 0, v)[k], snnc::ir::exp(F::of(f64::from(*x))));
            assert!(found == expected || (found.is_nan() && expected.is_nan()), "exp({x}): {found:?} against {expected:?}");
        }
    }
    let mut xs: Vec<f32> = (-2000..=2000).map(|i| i as f32 * 0.0457).collect();
    xs.extend([
        -87.0,
        -86.99,
        -87.01,
        88.0,
        88.01,
        87.99,
        -708.0,
        709.0,
        710.0,
        -800.0,
        0.0,
        -0.0,
        1e-30,
        f32::INFINITY,
        f32::NEG_INFINITY,
    ]);
    check::<f32>(&xs);
    check::<f64>(&xs);
    // Against libm: within 2 ulp in f32, 4e-16 relative in f64, on the range.
    let mut worst32 = 0u32;
    for i in -870_000..=880_000 {
        let x = i as f32 * 1e-4;
        let (a, b) = (snnc::ir::exp(x), x.exp());
        worst32 = worst32.max(a.to_bits().abs_diff(b.to_bits()));
    }
    assert!(worst32 <= 2, "f32 exp off by {worst32} ulp");
    for i in -70_800..70_900 {
        let x = f64::from(i) * 1e-2 + 1e-3;
        let (a, b) = (snnc::ir::exp(x), x.exp());
        assert!((a - b).abs() <= 4e-16 * b, "exp({x}) = {a}, libm {b}");
    }
    assert_eq!(snnc::ir::exp(-87.5f32), 0.0);
    assert_eq!(snnc::ir::exp(88.5f32), f32::INFINITY);
    assert!(snnc::ir::exp(f64::NAN).is_nan());
}
