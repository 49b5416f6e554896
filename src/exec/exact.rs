//! Exact spike times and the EventProp backward pass (seeds/002; Wunderlich & Pehle 2021) for
//! feed-forward networks of linear neurons, from the IR: each population's dynamics, threshold,
//! reset and input jumps come from [`crate::ir::eventprop::derive`], evaluated with the
//! network parameters into numbers.
//!
//! Forward: between events a neuron's state follows `x(t + s) = e^{A s} x(t) + q(s)` exactly;
//! it is checked on the `dt` grid and at every input event, and a crossing of the threshold
//! inside an interval is found by bisection on the exact solution, so spike times are not
//! rounded to the grid. Input spikes (latency encoding) arrive at their exact times. Spikes are
//! kept as events (time, neuron, state just before the spike): memory grows with spikes, not
//! with steps. A crossing that goes up and back down inside one grid interval is missed, as on
//! any grid.
//!
//! Backward: the adjoint runs from `T` back to 0 as `λ(t) = (e^{A s})ᵀ λ(t + s)`, jumps at the
//! neuron's own spikes by the derived jump condition, and at each incoming spike adds the
//! weight's gradient `-λ · c` and hands `W λ · A c` to the sender's spike (its event term).
//! Layers are visited from the last to the first, so a spike's event term is complete when
//! its neuron's adjoint reaches it.

use crate::exec::state::Params;
use crate::ir::eventprop::{self, EventAdjoint, EventPropError};
use crate::ir::{Connectivity, EncoderKind, ExprId, Exprs, Global, Init, Module, Node, Source, VarKind};

/// Why a module cannot run with exact spike times.
#[derive(Clone, Debug, PartialEq)]
pub enum ExactError {
    Population {
        population: String,
        error: EventPropError,
    },
    /// A parameter per neuron or a trainable one: not a state, not a constant.
    NeuronParameter {
        population: String,
        parameter: String,
    },
    /// Only dense projections without delay from an input or an earlier population.
    Projection {
        projection: usize,
        why: &'static str,
    },
    /// Inputs must give spike times (`latency`).
    Input {
        input: String,
    },
}

impl std::fmt::Display for ExactError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExactError::Population { population, error } => write!(f, "population `{population}`: {error}"),
            ExactError::NeuronParameter { population, parameter } => {
                write!(
                    f,
                    "population `{population}`: parameter `{parameter}` varies per neuron or trains, which EventProp does not support yet"
                )
            }
            ExactError::Projection { projection, why } => write!(f, "connection {projection}: {why}"),
            ExactError::Input { input } => write!(f, "input `{input}` must give spike times (`latency`) for exact spike times"),
        }
    }
}

impl std::error::Error for ExactError {}

/// One population's numbers: `dx/dt = A x + b`, spike where `g·x + g0` rises through 0,
/// reset `x⁺ = R x⁻ + r0`, input `q` adds `c_q` times the weight.
pub struct Linear {
    pub dim: usize,
    a: Vec<f64>,
    b: Vec<f64>,
    g: Vec<f64>,
    g0: f64,
    r: Vec<f64>,
    r0: Vec<f64>,
    c: Vec<Vec<f64>>,
    x0: Vec<f64>,
    adjoint: EventAdjoint,
    net: Vec<f64>,
    /// `e^{A dt}` and `q(dt)`, the grid step.
    step: (Vec<f64>, Vec<f64>),
    dt: f64,
    /// `A = V Λ V⁻¹` when `A` is triangular with distinct eigenvalues (neurons whose states
    /// drive each other in a chain, as CubaLIF's current drives its membrane): then
    /// `e^{A s}` costs `d` exponentials instead of a matrix series.
    eigen: Option<Eigen>,
}

/// States up to this many variables advance without a heap allocation.
const SMALL: usize = 8;

/// A diagonalisation `A = V Λ V⁻¹`, with `V⁻¹ b`.
struct Eigen {
    values: Vec<f64>,
    vectors: Vec<f64>,
    inverse: Vec<f64>,
    drive: Vec<f64>,
}

impl Eigen {
    /// `V Λ V⁻¹` of a triangular `a` (upper or lower) with distinct diagonal entries, checked
    /// by rebuilding `a` from it; None otherwise.
    fn of(a: &[f64], d: usize, b: &[f64]) -> Option<Eigen> {
        let upper = (0..d).all(|i| (0..i).all(|j| a[i * d + j] == 0.0));
        let lower = (0..d).all(|i| (i + 1..d).all(|j| a[i * d + j] == 0.0));
        if !upper && !lower {
            return None;
        }
        let values: Vec<f64> = (0..d).map(|i| a[i * d + i]).collect();
        let scale = values.iter().map(|v| v.abs()).fold(0.0, f64::max).max(1e-300);
        for i in 0..d {
            for j in 0..i {
                if (values[i] - values[j]).abs() <= 1e-6 * scale {
                    return None;
                }
            }
        }
        // Eigenvector k by substitution along the triangle: v_k = 1.
        let mut vectors = vec![0.0; d * d];
        for k in 0..d {
            vectors[k * d + k] = 1.0;
            let order: Vec<usize> = if upper { (0..k).rev().collect() } else { (k + 1..d).collect() };
            for i in order {
                let sum: f64 = (0..d).filter(|j| *j != i).map(|j| a[i * d + j] * vectors[j * d + k]).sum();
                vectors[i * d + k] = sum / (values[k] - values[i]);
            }
        }
        let inverse = invert(&vectors, d)?;
        // The rebuilt A must be A.
        for i in 0..d {
            for j in 0..d {
                let rebuilt: f64 = (0..d).map(|k| vectors[i * d + k] * values[k] * inverse[k * d + j]).sum();
                if (rebuilt - a[i * d + j]).abs() > 1e-9 * scale {
                    return None;
                }
            }
        }
        let drive = (0..d).map(|k| (0..d).map(|j| inverse[k * d + j] * b[j]).sum()).collect();
        Some(Eigen { values, vectors, inverse, drive })
    }

    /// `e^{A s} x + q(s)` into `out`.
    fn advance_into(&self, x: &[f64], s: f64, out: &mut [f64]) {
        self.apply(x, out, &|k| {
            let lam = self.values[k];
            ((lam * s).exp(), if lam == 0.0 { s } else { (lam * s).exp_m1() / lam })
        });
    }

    /// `V (grow ∘ V⁻¹ x + phi ∘ V⁻¹ b)` into `out`, with `factors(k)` = (`e^{λ_k s}`,
    /// `(e^{λ_k s} - 1) / λ_k`): [`Eigen::advance_into`] over factors given or computed.
    fn apply(&self, x: &[f64], out: &mut [f64], factors: &dyn Fn(usize) -> (f64, f64)) {
        let d = self.values.len();
        let mut stack = [0.0f64; SMALL];
        let mut heap = Vec::new();
        let z: &mut [f64] = if d <= SMALL {
            &mut stack[..d]
        } else {
            heap.resize(d, 0.0);
            &mut heap
        };
        for (k, zk) in z.iter_mut().enumerate() {
            let y: f64 = (0..d).map(|j| self.inverse[k * d + j] * x[j]).sum();
            let (grow, phi) = factors(k);
            *zk = grow * y + phi * self.drive[k];
        }
        for (i, o) in out.iter_mut().enumerate().take(d) {
            *o = (0..d).map(|k| self.vectors[i * d + k] * z[k]).sum();
        }
    }

    /// `(e^{A s})ᵀ λ = V⁻ᵀ e^{Λ s} Vᵀ λ`.
    fn back(&self, lambda: &[f64], s: f64) -> Vec<f64> {
        let d = self.values.len();
        let z: Vec<f64> =
            (0..d).map(|k| (0..d).map(|i| self.vectors[i * d + k] * lambda[i]).sum::<f64>() * (self.values[k] * s).exp()).collect();
        (0..d).map(|j| (0..d).map(|k| self.inverse[k * d + j] * z[k]).sum()).collect()
    }
}

/// The inverse of a small matrix by Gauss-Jordan elimination with partial pivoting.
fn invert(m: &[f64], d: usize) -> Option<Vec<f64>> {
    let mut a = m.to_vec();
    let mut inv: Vec<f64> = (0..d * d).map(|k| f64::from(u8::from(k / d == k % d))).collect();
    for col in 0..d {
        let pivot = (col..d).max_by(|x, y| a[x * d + col].abs().total_cmp(&a[y * d + col].abs()))?;
        if a[pivot * d + col].abs() < 1e-300 {
            return None;
        }
        for j in 0..d {
            a.swap(col * d + j, pivot * d + j);
            inv.swap(col * d + j, pivot * d + j);
        }
        let p = a[col * d + col];
        for j in 0..d {
            a[col * d + j] /= p;
            inv[col * d + j] /= p;
        }
        for i in 0..d {
            if i != col {
                let f = a[i * d + col];
                for j in 0..d {
                    a[i * d + j] -= f * a[col * d + j];
                    inv[i * d + j] -= f * inv[col * d + j];
                }
            }
        }
    }
    Some(inv)
}

/// A network ready for exact simulation.
pub struct ExactNet {
    pub populations: Vec<Linear>,
    pub dt: f64,
    /// The end of a sample, `T`.
    pub duration: f64,
}

/// The spikes of one population in one sample, in time order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Spikes {
    pub times: Vec<f64>,
    pub neurons: Vec<u32>,
    /// The state just before each spike, `dim` values per spike.
    pub states: Vec<f64>,
}

impl Spikes {
    pub fn len(&self) -> usize {
        self.times.len()
    }

    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Each neuron's first spike time, `duration` for a silent neuron.
    pub fn first_times(&self, n: usize, duration: f64) -> Vec<f64> {
        let mut first = vec![duration; n];
        for (t, k) in self.times.iter().zip(&self.neurons) {
            let slot = &mut first[*k as usize];
            if *t < *slot {
                *slot = *t;
            }
        }
        first
    }
}

/// One sample's run: the input spikes and every population's spikes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Run {
    pub inputs: Vec<Spikes>,
    pub populations: Vec<Spikes>,
    /// Per population, empty unless a loss reads its state: the state of every neuron at
    /// every grid time `(t + 1) dt`, after that time's input jumps and spikes, laid out
    /// `[(t * n + neuron) * dim + var]` like the discrete engines' `state_after(t)`.
    pub sampled: Vec<Vec<f64>>,
}

impl Run {
    /// Events kept, for memory accounting: one per spike.
    pub fn events(&self) -> usize {
        self.inputs.iter().chain(&self.populations).map(Spikes::len).sum()
    }

    /// Variable `var` of population `p` at every grid time, `[t * n + neuron]`, when the run
    /// sampled that population.
    pub fn state(&self, p: usize, var: usize, dim: usize) -> Option<Vec<f64>> {
        let sampled = self.sampled.get(p).filter(|s| !s.is_empty())?;
        Some(sampled.chunks_exact(dim).map(|x| x[var]).collect())
    }
}

impl ExactNet {
    /// The module's populations as linear systems, with the network parameters `net`.
    pub fn new(module: &Module, net: &[f64]) -> Result<ExactNet, ExactError> {
        for (index, proj) in module.projections.iter().enumerate() {
            let why = if proj.connectivity != Connectivity::Dense {
                Some("exact spike times need dense connections")
            } else if proj.delay_steps > 0 {
                Some("delays are not supported with exact spike times yet")
            } else if matches!(proj.source, Source::State(_)) {
                Some("exact spike times need connections that carry spikes")
            } else if matches!(proj.source, Source::Population(q) if q.0 >= proj.target.0) {
                Some("exact spike times need a feed-forward network")
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ExactError::Projection { projection: index, why });
            }
        }
        for input in &module.inputs {
            // Binned events change every step: they give no one spike time per element.
            if input.kind != EncoderKind::SpikeAt || input.per_step {
                return Err(ExactError::Input { input: input.name.clone() });
            }
        }
        let mut populations = Vec::new();
        for pop in &module.populations {
            let fail = |error| ExactError::Population { population: pop.name.clone(), error };
            if let Some(var) = pop.vars.iter().find(|v| !matches!(v.kind, VarKind::State { .. })) {
                return Err(ExactError::NeuronParameter { population: pop.name.clone(), parameter: var.name.clone() });
            }
            let adjoint = eventprop::derive(pop).map_err(fail)?;
            let dim = pop.vars.len();
            let value = |id: ExprId, x: &[f64]| eventprop::eval(&adjoint.exprs, id, x, &vec![0.0; dim], 0.0, net);
            let zero = vec![0.0; dim];
            let unit = |j: usize| (0..dim).map(|k| f64::from(u8::from(k == j))).collect::<Vec<f64>>();
            let a: Vec<f64> =
                (0..dim).flat_map(|i| (0..dim).map(move |j| (i, j))).map(|(i, j)| value(adjoint.matrix[i][j], &zero)).collect();
            let b: Vec<f64> = adjoint.rhs.iter().map(|id| value(*id, &zero)).collect();
            let g: Vec<f64> = adjoint.threshold_grad.iter().map(|id| value(*id, &zero)).collect();
            let g0 = value(adjoint.threshold, &zero);
            let r0: Vec<f64> = adjoint.reset.iter().map(|id| value(*id, &zero)).collect();
            let mut r = vec![0.0; dim * dim];
            for j in 0..dim {
                let column: Vec<f64> = adjoint.reset.iter().map(|id| value(*id, &unit(j))).collect();
                for i in 0..dim {
                    r[i * dim + j] = column[i] - r0[i];
                }
            }
            let c: Vec<Vec<f64>> = adjoint.coefficients.iter().map(|cs| cs.iter().map(|id| value(*id, &zero)).collect()).collect();
            let x0: Vec<f64> = pop
                .vars
                .iter()
                .map(|v| match &v.kind {
                    VarKind::State { init: Init::Const(c), .. } => *c,
                    _ => 0.0,
                })
                .collect();
            let step = propagator(&a, &b, dim, module.dt);
            let eigen = Eigen::of(&a, dim, &b);
            populations.push(Linear { dim, a, b, g, g0, r, r0, c, x0, adjoint, net: net.to_vec(), step, dt: module.dt, eigen });
        }
        Ok(ExactNet { populations, dt: module.dt, duration: module.steps as f64 * module.dt })
    }

    /// Runs one sample forward: the inputs' spike times from `features`, then each
    /// population in order.
    pub fn forward(&self, module: &Module, params: &Params<f64>, features: &[f32]) -> Run {
        self.forward_sampling(module, params, features, &[])
    }

    /// [`ExactNet::forward`], also keeping the state at every grid time of each population
    /// `p` with `sample[p]` set (what a loss on a state variable reads).
    pub fn forward_sampling(&self, module: &Module, params: &Params<f64>, features: &[f32], sample: &[bool]) -> Run {
        self.run_forward(module, params, features, sample, false)
    }

    /// [`ExactNet::forward_sampling`] one neuron at a time: the reference that the
    /// population-at-once simulation is tested against.
    pub fn forward_reference(&self, module: &Module, params: &Params<f64>, features: &[f32], sample: &[bool]) -> Run {
        self.run_forward(module, params, features, sample, true)
    }

    fn run_forward(&self, module: &Module, params: &Params<f64>, features: &[f32], sample: &[bool], per_neuron: bool) -> Run {
        let inputs: Vec<Spikes> = module.inputs.iter().map(|input| input_spikes(input, features, module.dt, self.duration)).collect();
        let mut populations: Vec<Spikes> = Vec::with_capacity(self.populations.len());
        let mut sampled = Vec::with_capacity(self.populations.len());
        for (p, linear) in self.populations.iter().enumerate() {
            let incoming = incoming(module, p, &inputs, &populations);
            let n = module.populations[p].size();
            let keep = sample.get(p).copied().unwrap_or(false);
            let dim = linear.dim;
            let mut states = if keep { vec![0.0; module.steps * n * dim] } else { Vec::new() };
            let mut spikes: Vec<(f64, u32, Vec<f64>)> = Vec::new();
            let timeline = linear.timeline(&incoming, module.steps, self.duration);
            if per_neuron {
                for m in 0..n {
                    let mut on_grid = |t: usize, x: &[f64]| {
                        if keep && t < module.steps {
                            states[(t * n + m) * dim..(t * n + m + 1) * dim].copy_from_slice(x);
                        }
                    };
                    linear.simulate(
                        module,
                        params,
                        &incoming,
                        &timeline,
                        m,
                        &mut |t, x| spikes.push((t, m as u32, x.to_vec())),
                        &mut on_grid,
                    );
                }
            } else {
                let mut on_grid = |t: usize, xs: &[f64]| {
                    if keep && t < module.steps {
                        for m in 0..n {
                            for i in 0..dim {
                                states[(t * n + m) * dim + i] = xs[i * n + m];
                            }
                        }
                    }
                };
                linear.simulate_population(
                    module,
                    params,
                    &incoming,
                    &timeline,
                    n,
                    &mut |t, m, x| spikes.push((t, m as u32, x.to_vec())),
                    &mut on_grid,
                );
            }
            spikes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let mut out = Spikes::default();
            for (t, k, x) in spikes {
                out.times.push(t);
                out.neurons.push(k);
                out.states.extend(x);
            }
            populations.push(out);
            sampled.push(states);
        }
        Run { inputs, populations, sampled }
    }

    /// The EventProp backward pass: `dl_dt[p][k]` is the loss's derivative with respect to
    /// spike `k` of population `p`; returns d loss / d weights, per projection (row-major like
    /// the weights).
    pub fn backward(&self, module: &Module, params: &Params<f64>, run: &Run, dl_dt: &[Vec<f64>]) -> Vec<Vec<f64>> {
        self.backward_with_states(module, params, run, dl_dt, &[])
    }

    /// [`ExactNet::backward`] for a loss that also reads sampled states: `dl_dx[p]`, laid out
    /// like [`Run::sampled`] (empty where the loss reads none), is the loss's derivative with
    /// respect to each sampled state; it enters the adjoint as a jump at its grid time.
    pub fn backward_with_states(
        &self,
        module: &Module,
        params: &Params<f64>,
        run: &Run,
        dl_dt: &[Vec<f64>],
        dl_dx: &[Vec<f64>],
    ) -> Vec<Vec<f64>> {
        let mut grads: Vec<Vec<f64>> = params.weights.iter().map(|w| vec![0.0; w.len()]).collect();
        // Each population's spikes' event terms: the loss's part, then the receivers' parts.
        let mut event: Vec<Vec<f64>> = run
            .populations
            .iter()
            .enumerate()
            .map(|(p, s)| {
                let mut e = vec![0.0; s.len()];
                if let Some(d) = dl_dt.get(p) {
                    for (slot, g) in e.iter_mut().zip(d) {
                        *slot += g;
                    }
                }
                e
            })
            .collect();
        for p in (0..self.populations.len()).rev() {
            let linear = &self.populations[p];
            let incoming = incoming(module, p, &run.inputs, &run.populations);
            let n = module.populations[p].size();
            let own = &run.populations[p];
            // Spike indices of each neuron, in time order.
            let mut by_neuron: Vec<Vec<usize>> = vec![Vec::new(); n];
            for (k, m) in own.neurons.iter().enumerate() {
                by_neuron[*m as usize].push(k);
            }
            let mut transmitted: Vec<(Source, usize, f64)> = Vec::new();
            let kicks = dl_dx.get(p).filter(|k| !k.is_empty());
            let d = linear.dim;
            // A c per port, once per population.
            let a_c: Vec<Vec<f64>> =
                linear.c.iter().map(|c| (0..d).map(|i| (0..d).map(|j| linear.a[i * d + j] * c[j]).sum()).collect()).collect();
            for (m, mine) in by_neuron.iter().enumerate() {
                let own_event: Vec<f64> = mine.iter().map(|k| event[p][*k]).collect();
                let kick = kicks.map(|k| Kicks { dl_dx: k, neuron: m, n, steps: module.steps });
                linear.adjoint_sweep(
                    module,
                    params,
                    &incoming,
                    m,
                    own,
                    mine,
                    &own_event,
                    kick,
                    &a_c,
                    self.duration,
                    &mut grads,
                    &mut transmitted,
                );
            }
            for (source, k, value) in transmitted {
                if let Source::Population(q) = source {
                    event[q.0 as usize][k] += value;
                }
            }
        }
        grads
    }
}

/// The points every neuron of a population passes in a sample: each grid time and each time an
/// input arrives (they share their inputs' times), in order, with the propagator from the point
/// before. Computed once per population and sample, so a neuron's exponentials are only those
/// of its own spikes.
struct Timeline {
    points: Vec<Point>,
    /// `segments[i]` carries a state from the point before `points[i]` (or 0) to it.
    segments: Vec<Segment>,
}

struct Point {
    time: f64,
    /// The incoming spikes arriving at this time.
    events: std::ops::Range<usize>,
    /// The grid sample taken here, if this is a grid time.
    grid: Option<usize>,
}

/// A propagator over one segment of a [`Timeline`].
enum Segment {
    /// No time passes.
    None,
    /// A whole grid step: the step's propagator.
    Grid,
    /// `e^{Λ s}` and `(e^{Λ s} - 1) / Λ` of the eigen-decomposition.
    Eigen { grow: Vec<f64>, phi: Vec<f64> },
    /// `e^{A s}` and `q(s)` from the series.
    Series { p: Vec<f64>, q: Vec<f64> },
}

/// A loss's derivatives with respect to one neuron's sampled states.
#[derive(Clone, Copy)]
struct Kicks<'a> {
    dl_dx: &'a [f64],
    neuron: usize,
    n: usize,
    steps: usize,
}

impl Kicks<'_> {
    fn at(&self, t: usize, dim: usize) -> &[f64] {
        let at = (t * self.n + self.neuron) * dim;
        &self.dl_dx[at..at + dim]
    }
}

/// An incoming spike: when, from which projection and presynaptic neuron, and which spike of
/// the source it is (for the source's event term).
#[derive(Clone, Copy, Debug)]
struct Incoming {
    time: f64,
    projection: usize,
    pre: usize,
    spike: usize,
}

/// Every spike arriving at population `p`, in time order.
fn incoming(module: &Module, p: usize, inputs: &[Spikes], populations: &[Spikes]) -> Vec<Incoming> {
    let mut events = Vec::new();
    for (index, proj) in module.projections.iter().enumerate() {
        if proj.target.0 as usize != p {
            continue;
        }
        let source = match &proj.source {
            Source::Input(id) => &inputs[id.0 as usize],
            Source::Population(q) => &populations[q.0 as usize],
            Source::State(_) => unreachable!("ExactNet::new refuses state-carrying connections"),
        };
        for (k, (t, pre)) in source.times.iter().zip(&source.neurons).enumerate() {
            events.push(Incoming { time: *t, projection: index, pre: *pre as usize, spike: k });
        }
    }
    events.sort_by(|a, b| a.time.total_cmp(&b.time).then(a.projection.cmp(&b.projection)).then(a.pre.cmp(&b.pre)));
    events
}

/// The spike times of an input whose encoder gives a time per element (`latency`): every
/// element whose time falls in `[0, duration)`, exactly, not rounded to the grid.
fn input_spikes(input: &crate::ir::Input, features: &[f32], dt: f64, duration: f64) -> Spikes {
    let n: usize = input.shape.iter().product();
    let mut spikes: Vec<(f64, u32)> = Vec::new();
    for i in 0..n {
        let data = f64::from(features.get(i).copied().unwrap_or(0.0));
        let t = eval_input(&input.exprs, input.value, data, dt);
        if t.is_finite() && (0.0..duration).contains(&t) {
            spikes.push((t, i as u32));
        }
    }
    spikes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Spikes { times: spikes.iter().map(|s| s.0).collect(), neurons: spikes.iter().map(|s| s.1).collect(), states: Vec::new() }
}

fn eval_input(exprs: &Exprs, id: ExprId, data: f64, dt: f64) -> f64 {
    let at = |id: &ExprId| eval_input(exprs, *id, data, dt);
    match exprs.get(id) {
        Node::Const(c) => *c,
        Node::Global(Global::Data) => data,
        Node::Global(Global::Dt) => dt,
        Node::Unary(crate::ir::UnaryOp::Neg, a) => -at(a),
        Node::Binary(op, a, b) => crate::ir::eval_binary(*op, at(a), at(b)).unwrap_or(f64::NAN),
        Node::Call(func, args) => crate::ir::eval_func(*func, &args.iter().map(at).collect::<Vec<_>>()).unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

impl Linear {
    fn g(&self, x: &[f64]) -> f64 {
        self.g.iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + self.g0
    }

    /// `f_i(x)`: how fast state `i` changes.
    fn rate(&self, x: &[f64], i: usize) -> f64 {
        let d = self.dim;
        (0..d).map(|j| self.a[i * d + j] * x[j]).sum::<f64>() + self.b[i]
    }

    /// `x` advanced by `s` seconds without input.
    fn advance(&self, x: &[f64], s: f64) -> Vec<f64> {
        let mut out = vec![0.0; self.dim];
        self.advance_into(x, s, &mut out);
        out
    }

    /// [`Linear::advance`] into `out`: a grid step (up to the rounding of the grid's times)
    /// uses the step's propagator, another length the eigen-decomposition or the series.
    fn advance_into(&self, x: &[f64], s: f64, out: &mut [f64]) {
        let on_grid = (s - self.dt).abs() <= 1e-12 * self.dt;
        if let Some(eigen) = &self.eigen
            && !on_grid
        {
            return eigen.advance_into(x, s, out);
        }
        let owned;
        let (p, q) = if on_grid {
            (&self.step.0, &self.step.1)
        } else {
            owned = propagator(&self.a, &self.b, self.dim, s);
            (&owned.0, &owned.1)
        };
        let d = self.dim;
        for (i, o) in out.iter_mut().enumerate().take(d) {
            *o = (0..d).map(|j| p[i * d + j] * x[j]).sum::<f64>() + q[i];
        }
    }

    /// The points every neuron of this population passes in a sample, and the propagators
    /// between them: see [`Timeline`].
    fn timeline(&self, incoming: &[Incoming], steps: usize, end: f64) -> Timeline {
        let dt = self.dt;
        let (mut points, mut segments) = (Vec::new(), Vec::new());
        let (mut t, mut k, mut grid) = (0.0, 0, 1usize);
        loop {
            let next_event = incoming.get(k).map_or(f64::INFINITY, |e| e.time);
            let next_grid = grid as f64 * dt;
            let next = next_event.min(next_grid).min(end);
            let segment = if next > t {
                let s = next - t;
                t = next;
                if (s - dt).abs() <= 1e-12 * dt {
                    Segment::Grid
                } else if let Some(eigen) = &self.eigen {
                    let grow = eigen.values.iter().map(|lam| (lam * s).exp()).collect();
                    let phi = eigen.values.iter().map(|lam| if *lam == 0.0 { s } else { (lam * s).exp_m1() / lam }).collect();
                    Segment::Eigen { grow, phi }
                } else {
                    let (p, q) = propagator(&self.a, &self.b, self.dim, s);
                    Segment::Series { p, q }
                }
            } else {
                Segment::None
            };
            let first = k;
            if t < end {
                while incoming.get(k).is_some_and(|e| e.time <= t) {
                    k += 1;
                }
            }
            let on_grid = (next == next_grid && grid <= steps).then(|| {
                grid += 1;
                grid - 2
            });
            points.push(Point { time: t, events: first..k, grid: on_grid });
            segments.push(segment);
            if t >= end {
                break;
            }
        }
        Timeline { points, segments }
    }

    /// `segment` applied to `x`, into `out`: the same arithmetic as [`Linear::advance_into`]
    /// over the segment's length.
    fn carry(&self, segment: &Segment, x: &[f64], out: &mut [f64]) {
        let d = self.dim;
        match segment {
            Segment::None => out.copy_from_slice(x),
            Segment::Grid | Segment::Series { .. } => {
                let (p, q) = match segment {
                    Segment::Series { p, q } => (p, q),
                    _ => (&self.step.0, &self.step.1),
                };
                for (i, o) in out.iter_mut().enumerate().take(d) {
                    *o = p[i * d..(i + 1) * d].iter().zip(x).map(|(a, b)| a * b).sum::<f64>() + q[i];
                }
            }
            Segment::Eigen { grow, phi } => {
                let eigen = self.eigen.as_ref().expect("an eigen segment has its decomposition");
                eigen.apply(x, out, &|k| (grow[k], phi[k]));
            }
        }
    }

    /// Simulates neuron `m` over the sample along the population's `timeline`, calling
    /// `spike(t, x⁻)` at each spike and `on_grid(t, x)` at each grid time `(t + 1) dt`, after
    /// its input jumps and spikes.
    #[allow(clippy::too_many_arguments)]
    fn simulate(
        &self,
        module: &Module,
        params: &Params<f64>,
        incoming: &[Incoming],
        timeline: &Timeline,
        m: usize,
        spike: &mut dyn FnMut(f64, &[f64]),
        on_grid: &mut dyn FnMut(usize, &[f64]),
    ) {
        let mut x = self.x0.clone();
        let mut moved = vec![0.0; self.dim];
        let mut t = 0.0;
        let mut previous = 0.0;
        let mut points = timeline.points.iter().zip(&timeline.segments);
        'run: for (point, segment) in points.by_ref() {
            // From t to the point: the shared segment when the neuron is where the last point
            // left it, else (after a spike inside the segment) its own propagator.
            while point.time > t {
                if t == previous {
                    self.carry(segment, &x, &mut moved);
                } else {
                    self.advance_into(&x, point.time - t, &mut moved);
                }
                if self.g(&x) < 0.0 && self.g(&moved) >= 0.0 {
                    let hi = self.crossing(&x, point.time - t, t);
                    let before = self.advance(&x, hi);
                    let at = t + hi;
                    spike(at, &before);
                    x = self.reset(&before);
                    t = at;
                    if self.g(&x) >= 0.0 {
                        // A reset that leaves the neuron at its threshold would fire forever.
                        if let Some(g) = point.grid {
                            on_grid(g, &x);
                        }
                        break 'run;
                    }
                    continue;
                }
                std::mem::swap(&mut x, &mut moved);
                t = point.time;
            }
            previous = point.time;
            for e in &incoming[point.events.clone()] {
                let w = params.weights[e.projection][e.pre * module.population(module.projections[e.projection].target).size() + m];
                let port = module.projections[e.projection].port.0 as usize;
                for (xi, ci) in x.iter_mut().zip(&self.c[port]) {
                    *xi += ci * w;
                }
            }
            if !point.events.is_empty() && self.g(&x) >= 0.0 {
                // An input jumped the neuron over its threshold: it fires at once.
                spike(t, &x.clone());
                x = self.reset(&x);
                if self.g(&x) >= 0.0 {
                    if let Some(g) = point.grid {
                        on_grid(g, &x);
                    }
                    break 'run;
                }
            }
            if let Some(g) = point.grid {
                on_grid(g, &x);
            }
        }
        // A run cut short (a reset at the threshold) keeps its last state to the end.
        for (point, _) in points {
            if let Some(g) = point.grid {
                on_grid(g, &x);
            }
        }
    }

    /// Every neuron of the population along `timeline` at once, what [`Linear::simulate`]
    /// does neuron by neuron (the same arithmetic per neuron, so the same numbers): the
    /// states are kept variable-major (`xs[i * n + m]`) so that a segment's propagator and an
    /// incoming weight row apply to all neurons in one pass; a neuron whose threshold is
    /// crossed inside a segment is finished alone. Calls `spike(t, m, x⁻)` and
    /// `on_grid(t, xs)`.
    #[allow(clippy::too_many_arguments)]
    fn simulate_population(
        &self,
        module: &Module,
        params: &Params<f64>,
        incoming: &[Incoming],
        timeline: &Timeline,
        n: usize,
        spike: &mut dyn FnMut(f64, usize, &[f64]),
        on_grid: &mut dyn FnMut(usize, &[f64]),
    ) {
        let d = self.dim;
        let mut xs: Vec<f64> = (0..d).flat_map(|i| std::iter::repeat_n(self.x0[i], n)).collect();
        let mut moved = vec![0.0; d * n];
        let mut scratch = vec![0.0; d * n];
        let mut level = vec![0.0; n];
        let mut dead = vec![false; n];
        let mut any_dead = false;
        let (mut x, mut y) = (vec![0.0; d], vec![0.0; d]);
        let column = |xs: &[f64], m: usize, x: &mut [f64]| {
            for (i, xi) in x.iter_mut().enumerate() {
                *xi = xs[i * n + m];
            }
        };
        let mut previous = 0.0;
        for (point, segment) in timeline.points.iter().zip(&timeline.segments) {
            if point.time > previous {
                self.carry_all(segment, &xs, &mut moved, &mut scratch, n);
                // g(x) after the segment, every neuron; a crossing is where it is at or over 0.
                level.iter_mut().for_each(|l| *l = self.g0);
                for (i, gi) in self.g.iter().enumerate() {
                    if *gi != 0.0 {
                        for (l, v) in level.iter_mut().zip(&moved[i * n..(i + 1) * n]) {
                            *l += gi * v;
                        }
                    }
                }
                for m in 0..n {
                    if dead[m] {
                        for i in 0..d {
                            moved[i * n + m] = xs[i * n + m];
                        }
                        continue;
                    }
                    if level[m] < 0.0 {
                        continue;
                    }
                    // Crossed inside the segment: this neuron alone, as `simulate` does it.
                    column(&xs, m, &mut x);
                    let mut t = previous;
                    column(&moved, m, &mut y);
                    let mut on_timeline = true;
                    loop {
                        if !on_timeline {
                            self.advance_into(&x, point.time - t, &mut y);
                        }
                        if self.g(&x) < 0.0 && self.g(&y) >= 0.0 {
                            let hi = self.crossing(&x, point.time - t, t);
                            let before = self.advance(&x, hi);
                            let at = t + hi;
                            spike(at, m, &before);
                            x = self.reset(&before);
                            t = at;
                            on_timeline = false;
                            if self.g(&x) >= 0.0 {
                                dead[m] = true;
                                any_dead = true;
                                y.copy_from_slice(&x);
                                break;
                            }
                            if point.time > t {
                                continue;
                            }
                            y.copy_from_slice(&x);
                        }
                        break;
                    }
                    for i in 0..d {
                        moved[i * n + m] = y[i];
                    }
                }
                std::mem::swap(&mut xs, &mut moved);
            }
            previous = point.time;
            if !point.events.is_empty() {
                // A neuron that stopped keeps its state through its inputs.
                let kept: Vec<(usize, Vec<f64>)> = if any_dead {
                    (0..n).filter(|m| dead[*m]).map(|m| (m, (0..d).map(|i| xs[i * n + m]).collect())).collect()
                } else {
                    Vec::new()
                };
                for e in &incoming[point.events.clone()] {
                    let port = module.projections[e.projection].port.0 as usize;
                    let row = &params.weights[e.projection][e.pre * n..(e.pre + 1) * n];
                    for (i, ci) in self.c[port].iter().enumerate() {
                        if *ci != 0.0 {
                            for (xi, w) in xs[i * n..(i + 1) * n].iter_mut().zip(row) {
                                *xi += ci * w;
                            }
                        }
                    }
                }
                for (m, x) in kept {
                    for i in 0..d {
                        xs[i * n + m] = x[i];
                    }
                }
                for m in 0..n {
                    if dead[m] {
                        continue;
                    }
                    column(&xs, m, &mut x);
                    if self.g(&x) >= 0.0 {
                        // An input jumped the neuron over its threshold: it fires at once.
                        spike(point.time, m, &x);
                        let after = self.reset(&x);
                        if self.g(&after) >= 0.0 {
                            dead[m] = true;
                            any_dead = true;
                        }
                        for i in 0..d {
                            xs[i * n + m] = after[i];
                        }
                    }
                }
            }
            if let Some(g) = point.grid {
                on_grid(g, &xs);
            }
        }
    }

    /// [`Linear::carry`] for all `n` neurons of variable-major `xs`.
    fn carry_all(&self, segment: &Segment, xs: &[f64], out: &mut [f64], z: &mut [f64], n: usize) {
        let d = self.dim;
        match segment {
            Segment::None => out.copy_from_slice(xs),
            Segment::Grid | Segment::Series { .. } => {
                let (p, q) = match segment {
                    Segment::Series { p, q } => (p, q),
                    _ => (&self.step.0, &self.step.1),
                };
                for i in 0..d {
                    let (row, o) = (&p[i * d..(i + 1) * d], &mut out[i * n..(i + 1) * n]);
                    o.iter_mut().for_each(|v| *v = 0.0);
                    for (j, pij) in row.iter().enumerate() {
                        for (v, x) in o.iter_mut().zip(&xs[j * n..(j + 1) * n]) {
                            *v += pij * x;
                        }
                    }
                    o.iter_mut().for_each(|v| *v += q[i]);
                }
            }
            Segment::Eigen { grow, phi } => {
                let eigen = self.eigen.as_ref().expect("an eigen segment has its decomposition");
                for k in 0..d {
                    let zk = &mut z[k * n..(k + 1) * n];
                    zk.iter_mut().for_each(|v| *v = 0.0);
                    for j in 0..d {
                        let a = eigen.inverse[k * d + j];
                        for (v, x) in zk.iter_mut().zip(&xs[j * n..(j + 1) * n]) {
                            *v += a * x;
                        }
                    }
                    let (g, c) = (grow[k], phi[k] * eigen.drive[k]);
                    zk.iter_mut().for_each(|v| *v = g * *v + c);
                }
                for i in 0..d {
                    let o = &mut out[i * n..(i + 1) * n];
                    o.iter_mut().for_each(|v| *v = 0.0);
                    for k in 0..d {
                        let a = eigen.vectors[i * d + k];
                        for (v, zk) in o.iter_mut().zip(&z[k * n..(k + 1) * n]) {
                            *v += a * zk;
                        }
                    }
                }
            }
        }
    }

    /// The time of the threshold crossing inside `(0, s]` from `x` (at time `t`, below the
    /// threshold) on the exact solution: Newton's method on g(x(s)) (its slope is g · f),
    /// kept inside the bracket, bisecting when a step would leave it.
    fn crossing(&self, x: &[f64], s: f64, t: f64) -> f64 {
        let (mut lo, mut hi) = (0.0, s);
        let mut guess = s;
        for _ in 0..100 {
            let at = self.advance(x, guess);
            let value = self.g(&at);
            if value >= 0.0 {
                hi = guess;
            } else {
                lo = guess;
            }
            if hi - lo <= 1e-15 * (1.0 + t.abs()) || value == 0.0 {
                break;
            }
            let slope: f64 = (0..self.dim).map(|i| self.g[i] * self.rate(&at, i)).sum();
            let newton = guess - value / slope;
            guess = if slope > 0.0 && newton > lo && newton < hi { newton } else { 0.5 * (lo + hi) };
            if (guess - hi).abs() <= 1e-16 * (1.0 + t.abs()) {
                break;
            }
        }
        hi
    }

    fn reset(&self, x: &[f64]) -> Vec<f64> {
        let d = self.dim;
        (0..d).map(|i| (0..d).map(|j| self.r[i * d + j] * x[j]).sum::<f64>() + self.r0[i]).collect()
    }

    /// The adjoint of neuron `m` from the end back to 0: weight gradients of its incoming
    /// spikes into `grads`, their senders' event terms into `transmitted`.
    #[allow(clippy::too_many_arguments)]
    fn adjoint_sweep(
        &self,
        module: &Module,
        params: &Params<f64>,
        incoming: &[Incoming],
        m: usize,
        own: &Spikes,
        mine: &[usize],
        own_event: &[f64],
        kicks: Option<Kicks>,
        a_c: &[Vec<f64>],
        end: f64,
        grads: &mut [Vec<f64>],
        transmitted: &mut Vec<(Source, usize, f64)>,
    ) {
        let d = self.dim;
        if mine.is_empty() && kicks.is_none() {
            // No spike and no sampled state of this neuron reaches the loss: its adjoint is 0.
            return;
        }
        let mut lambda = vec![0.0; d];
        // Until the first (latest) spike or kick, λ is 0 and an input changes nothing.
        let mut zero = true;
        let mut t = end;
        let mut next_in = incoming.len();
        let mut next_own = mine.len();
        // Grid samples still to kick, the last first; `λ` is minus the sensitivity, so a
        // loss's derivative with respect to a sampled state is subtracted at its time.
        let mut next_kick = kicks.map_or(0, |k| k.steps);
        loop {
            let t_in = next_in.checked_sub(1).map(|k| incoming[k].time);
            let t_own = next_own.checked_sub(1).map(|k| own.times[mine[k]]);
            // A grid sample was taken after that time's jumps and spikes: going back, its
            // kick comes before them.
            if let Some(kick) = kicks
                && let Some(g) = next_kick.checked_sub(1)
            {
                let t_kick = (g + 1) as f64 * self.dt;
                if t_in.is_none_or(|a| t_kick >= a) && t_own.is_none_or(|b| t_kick >= b) {
                    if !zero {
                        self.back_in_place(&mut lambda, t - t_kick);
                    }
                    zero = false;
                    t = t_kick;
                    for (l, v) in lambda.iter_mut().zip(kick.at(g, d)) {
                        *l -= v;
                    }
                    next_kick = g;
                    continue;
                }
            }
            // Later events first; an own spike before an input at the same time (the input
            // arrived first going forward).
            let own_first = match (t_in, t_own) {
                (None, None) => break,
                (Some(_), None) => false,
                (None, Some(_)) => true,
                (Some(a), Some(b)) => b >= a,
            };
            let at = if own_first { t_own.unwrap_or(0.0) } else { t_in.unwrap_or(0.0) };
            if zero && !own_first {
                next_in -= 1;
                t = at;
                continue;
            }
            if !zero {
                self.back_in_place(&mut lambda, t - at);
            }
            zero = false;
            t = at;
            if own_first {
                next_own -= 1;
                let k = mine[next_own];
                let x = &own.states[k * d..(k + 1) * d];
                let e = own_event[next_own];
                lambda = self.adjoint.jump.iter().map(|id| eventprop::eval(&self.adjoint.exprs, *id, x, &lambda, e, &self.net)).collect();
            } else {
                next_in -= 1;
                let event = incoming[next_in];
                let proj = &module.projections[event.projection];
                let port = proj.port.0 as usize;
                let n_post = module.population(proj.target).size();
                let index = event.pre * n_post + m;
                let lc: f64 = lambda.iter().zip(&self.c[port]).map(|(l, c)| l * c).sum();
                grads[event.projection][index] -= lc;
                let la_c: f64 = lambda.iter().zip(&a_c[port]).map(|(l, c)| l * c).sum();
                if la_c != 0.0 {
                    transmitted.push((proj.source.clone(), event.spike, params.weights[event.projection][index] * la_c));
                }
            }
        }
    }

    /// [`Linear::back`] in place, without an allocation for small states.
    fn back_in_place(&self, lambda: &mut [f64], s: f64) {
        if s == 0.0 {
            return;
        }
        let d = self.dim;
        if let Some(eigen) = &self.eigen
            && d <= SMALL
        {
            let mut z = [0.0f64; SMALL];
            for (k, zk) in z.iter_mut().enumerate().take(d) {
                *zk = (0..d).map(|i| eigen.vectors[i * d + k] * lambda[i]).sum::<f64>() * (eigen.values[k] * s).exp();
            }
            for (j, l) in lambda.iter_mut().enumerate() {
                *l = (0..d).map(|k| eigen.inverse[k * d + j] * z[k]).sum();
            }
            return;
        }
        let back = self.back(lambda, s);
        lambda.copy_from_slice(&back);
    }

    /// `λ` carried `s` seconds back: `(e^{A s})ᵀ λ`.
    fn back(&self, lambda: &[f64], s: f64) -> Vec<f64> {
        if s == 0.0 {
            return lambda.to_vec();
        }
        if let Some(eigen) = &self.eigen {
            return eigen.back(lambda, s);
        }
        let (p, _) = propagator(&self.a, &self.b, self.dim, s);
        let d = self.dim;
        (0..d).map(|j| (0..d).map(|i| p[i * d + j] * lambda[i]).sum()).collect()
    }
}

/// `e^{A s}` and `q(s) = ∫_0^s e^{A u} b du` from the exponential of the augmented matrix
/// `[[A, b], [0, 0]] s`: scaling and squaring of a Taylor series in Horner form, with as many
/// terms as the scaled norm needs for a relative error under 1e-17. Small systems (up to 5
/// states, every neuron model so far) work in fixed arrays without allocating.
fn propagator(a: &[f64], b: &[f64], d: usize, s: f64) -> (Vec<f64>, Vec<f64>) {
    const MAX: usize = 6;
    let n = d + 1;
    if n > MAX {
        return propagator_large(a, b, d, s);
    }
    let mut m = [0.0; MAX * MAX];
    for i in 0..d {
        for j in 0..d {
            m[i * n + j] = a[i * d + j] * s;
        }
        m[i * n + d] = b[i] * s;
    }
    let norm = m[..n * n].iter().map(|x| x.abs()).fold(0.0, f64::max) * n as f64;
    let mut squarings = 0;
    let mut scale = 1.0;
    while norm * scale > 0.5 {
        scale *= 0.5;
        squarings += 1;
    }
    for x in &mut m[..n * n] {
        *x *= scale;
    }
    // Terms until norm^k / k! < 1e-17.
    let scaled = norm * scale;
    let mut terms = 1;
    let mut bound = scaled;
    while bound > 1e-17 && terms < 30 {
        terms += 1;
        bound *= scaled / terms as f64;
    }
    // Horner: I + M (I + M/2 (I + ... (I + M/terms))), between two buffers.
    let (mut acc, mut next) = ([0.0; MAX * MAX], [0.0; MAX * MAX]);
    for i in 0..n {
        acc[i * n + i] = 1.0;
    }
    let nn = n * n;
    for k in (1..=terms).rev() {
        next[..nn].fill(0.0);
        let inv = 1.0 / k as f64;
        for i in 0..n {
            for l in 0..n {
                let mil = m[i * n + l] * inv;
                if mil == 0.0 {
                    continue;
                }
                for j in 0..n {
                    next[i * n + j] += mil * acc[l * n + j];
                }
            }
            next[i * n + i] += 1.0;
        }
        std::mem::swap(&mut acc, &mut next);
    }
    for _ in 0..squarings {
        next[..nn].fill(0.0);
        for i in 0..n {
            for l in 0..n {
                let x = acc[i * n + l];
                for j in 0..n {
                    next[i * n + j] += x * acc[l * n + j];
                }
            }
        }
        std::mem::swap(&mut acc, &mut next);
    }
    let p = (0..d).flat_map(|i| (0..d).map(move |j| (i, j))).map(|(i, j)| acc[i * n + j]).collect();
    let q = (0..d).map(|i| acc[i * n + d]).collect();
    (p, q)
}

/// [`propagator`] for systems too large for its fixed arrays.
fn propagator_large(a: &[f64], b: &[f64], d: usize, s: f64) -> (Vec<f64>, Vec<f64>) {
    let n = d + 1;
    let mut m = vec![0.0; n * n];
    for i in 0..d {
        for j in 0..d {
            m[i * n + j] = a[i * d + j] * s;
        }
        m[i * n + d] = b[i] * s;
    }
    let norm = m.iter().map(|x| x.abs()).fold(0.0, f64::max) * n as f64;
    let mut squarings = 0;
    let mut scale = 1.0;
    while norm * scale > 0.5 {
        scale *= 0.5;
        squarings += 1;
    }
    let m: Vec<f64> = m.iter().map(|x| x * scale).collect();
    // Taylor: sum of m^k / k! up to k = 20.
    let mut result = vec![0.0; n * n];
    let mut term = vec![0.0; n * n];
    for i in 0..n {
        result[i * n + i] = 1.0;
        term[i * n + i] = 1.0;
    }
    for k in 1..=16 {
        term = multiply(&term, &m, n).iter().map(|x| x / k as f64).collect();
        for (r, t) in result.iter_mut().zip(&term) {
            *r += t;
        }
    }
    for _ in 0..squarings {
        result = multiply(&result, &result, n);
    }
    let p = (0..d).flat_map(|i| (0..d).map(move |j| (i, j))).map(|(i, j)| result[i * n + j]).collect();
    let q = (0..d).map(|i| result[i * n + d]).collect();
    (p, q)
}

fn multiply(x: &[f64], y: &[f64], n: usize) -> Vec<f64> {
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        for k in 0..n {
            let xik = x[i * n + k];
            if xik == 0.0 {
                continue;
            }
            for j in 0..n {
                out[i * n + j] += xik * y[k * n + j];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Eigen, propagator};

    /// The closed form through the eigenvectors and the matrix series agree, forwards and
    /// for the adjoint, on an upper and a lower triangular system; equal eigenvalues fall back.
    #[test]
    fn the_eigen_propagator_equals_the_series() {
        let upper = ([-50.0, 50.0, 10.0, 0.0, -200.0, 0.0, 0.0, 0.0, -111.0], [3.0, 0.0, -1.0]);
        let lower = ([-200.0, 0.0, 0.0, 50.0, -50.0, 0.0, 0.0, 7.0, -90.0], [0.0, 4.0, 0.5]);
        for (a, b) in [upper, lower] {
            let eigen = Eigen::of(&a, 3, &b).expect("triangular with distinct eigenvalues");
            for s in [1e-6, 3.7e-5, 1e-4, 2.5e-3, 0.02] {
                let (p, q) = propagator(&a, &b, 3, s);
                let x = [0.3, -1.2, 2.0];
                let series: Vec<f64> = (0..3).map(|i| (0..3).map(|j| p[i * 3 + j] * x[j]).sum::<f64>() + q[i]).collect();
                let mut closed = [0.0; 3];
                eigen.advance_into(&x, s, &mut closed);
                let lambda = [1.5, 0.25, -0.75];
                let series_back: Vec<f64> = (0..3).map(|j| (0..3).map(|i| p[i * 3 + j] * lambda[i]).sum()).collect();
                let closed_back = eigen.back(&lambda, s);
                for k in 0..3 {
                    assert!((series[k] - closed[k]).abs() < 1e-12 * (1.0 + series[k].abs()), "s {s}: {series:?} vs {closed:?}");
                    assert!((series_back[k] - closed_back[k]).abs() < 1e-12 * (1.0 + series_back[k].abs()));
                }
            }
        }
        assert!(Eigen::of(&[-50.0, 50.0, 0.0, -50.0], 2, &[0.0, 0.0]).is_none(), "equal time constants: the series");
    }
}
