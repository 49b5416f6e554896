//! Plastic synapses at run time: the traces and the `on pre` / `on post` updates of every
//! connection with a synapse model (`via`), applied after the target population's step.
//!
//! Nothing here knows a rule: the updates are the synapse's IR expressions, evaluated a row or
//! a column at a time. A trace that only `on pre` writes (from values of its presynaptic side)
//! belongs to the presynaptic neuron, one value per neuron, as one that only `on post` writes
//! belongs to the postsynaptic neuron; only a trace written on both sides needs a value per
//! synapse. So Diehl & Cook's rule keeps 784 + 2 x 400 trace values, not 3 x 313,600, and a
//! presynaptic spike touches one weight row, a postsynaptic spike one weight column.
//!
//! Order within a step (docs/language.md): the step's spikes are known (the target population
//! has stepped); every trace decays by exp(-dt / tau); then each presynaptic spike runs the
//! `on pre` block (in neuron order), then each postsynaptic spike the `on post` block. The
//! weights delivered in this step were read before the step, so `deliver w` sees the weight
//! before this step's updates.

use crate::exec::real::Real;
use crate::exec::state::{Params, StepHook, Trace};
use crate::ir::{Connectivity, ExprId, Module, Node, Source, SynapseModel, Update, VarId, VarKind, eval_binary, eval_func};

/// Where a synapse variable's values live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// One value per presynaptic neuron.
    Pre,
    /// One value per postsynaptic neuron.
    Post,
    /// One value per synapse (`n_pre x n_post`, row-major like the weights).
    Synapse,
    /// The weight: the projection's weights.
    Weight,
}

/// Why a synapse cannot run.
#[derive(Clone, Debug, PartialEq)]
pub enum PlasticityError {
    /// Plasticity runs on dense connections only, so far.
    NotDense { projection: usize, synapse: String },
    /// An update reads something a synapse does not have (a port, a neuron's state).
    Unsupported { synapse: String, what: String },
}

impl std::fmt::Display for PlasticityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlasticityError::NotDense { projection, synapse } => {
                write!(f, "the plastic synapse `{synapse}` of connection {projection} runs on dense connections only")
            }
            PlasticityError::Unsupported { synapse, what } => write!(f, "synapse `{synapse}`: {what} is not supported in an update"),
        }
    }
}

impl std::error::Error for PlasticityError {}

/// One plastic projection's synapse and its variables' values.
struct Plastic<F> {
    index: usize,
    source: Source,
    target: usize,
    n_pre: usize,
    n_post: usize,
    model: SynapseModel,
    /// Per variable (states, then traces): where it lives and its values (empty for the
    /// weight, which lives in the parameters).
    sides: Vec<Side>,
    values: Vec<Vec<F>>,
    /// Per variable: the decay per step of a trace (1 for states).
    decay: Vec<F>,
}

/// The plastic projections of a module with their traces and states, which persist from one
/// sample to the next, as the network does.
pub struct Plasticity<F> {
    projections: Vec<Plastic<F>>,
    /// Whether updates are applied (training) or only traces kept (nothing: evaluation runs
    /// without this hook).
    pub learning: bool,
}

/// A value while an update is evaluated: one number, or one per element of the row or column
/// the event touches.
#[derive(Clone, Debug)]
enum Val<F> {
    Scalar(F),
    Vector(Vec<F>),
}

/// The event being applied: a presynaptic spike of neuron `i` (a weight row, over `j`) or a
/// postsynaptic spike of neuron `j` (a weight column, over `i`).
#[derive(Clone, Copy)]
enum Event {
    Pre(usize),
    Post(usize),
}

impl<F: Real> Plasticity<F> {
    /// The plastic projections of `module`, their traces at zero and their states at their
    /// initial values.
    pub fn new(module: &Module) -> Result<Plasticity<F>, PlasticityError> {
        let mut projections = Vec::new();
        for (index, proj) in module.projections.iter().enumerate() {
            let Some(model) = &proj.synapse else { continue };
            if proj.connectivity != Connectivity::Dense {
                return Err(PlasticityError::NotDense { projection: index, synapse: model.name.clone() });
            }
            let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
            let sides = sides_of(model);
            let n_vars = model.vars.len() + model.traces.len();
            let mut values = Vec::with_capacity(n_vars);
            let mut decay = Vec::with_capacity(n_vars);
            for (v, side) in sides.iter().enumerate() {
                let len = match side {
                    Side::Pre => n_pre,
                    Side::Post => n_post,
                    Side::Synapse => n_pre * n_post,
                    Side::Weight => 0,
                };
                let start = match model.vars.get(v).map(|var| &var.kind) {
                    Some(VarKind::State { init: crate::ir::Init::Const(c), .. }) => F::of(*c),
                    _ => F::zero(),
                };
                values.push(vec![start; len]);
                decay.push(match v.checked_sub(model.vars.len()) {
                    Some(t) => F::of((-module.dt / model.traces[t].1).exp()),
                    None => F::one(),
                });
            }
            let target = proj.target.0 as usize;
            projections.push(Plastic {
                index,
                source: proj.source.clone(),
                target,
                n_pre,
                n_post,
                model: model.clone(),
                sides,
                values,
                decay,
            });
        }
        Ok(Plasticity { projections, learning: true })
    }

    /// Where each variable of projection `index`'s synapse lives (states, then traces).
    pub fn sides(&self, index: usize) -> Option<&[Side]> {
        self.projections.iter().find(|p| p.index == index).map(|p| p.sides.as_slice())
    }

    /// The values of trace `name` of projection `index` (per neuron of its side).
    pub fn trace(&self, index: usize, name: &str) -> Option<&[F]> {
        let p = self.projections.iter().find(|p| p.index == index)?;
        let t = p.model.traces.iter().position(|(n, _)| n == name)?;
        Some(&p.values[p.model.vars.len() + t])
    }

    /// Applies one step of plasticity for projections into population `p`: decay, then the
    /// presynaptic spikes' updates, then the postsynaptic spikes'. `pre` and `post` are the
    /// indices of the neurons that spiked in this step.
    pub fn step_projection(&mut self, k: usize, weights: &mut [F], pre: &[usize], post: &[usize]) {
        let plastic = &mut self.projections[k];
        for (values, decay) in plastic.values.iter_mut().zip(&plastic.decay) {
            if *decay != F::one() {
                for x in values.iter_mut() {
                    *x *= *decay;
                }
            }
        }
        if !self.learning {
            return;
        }
        let on_pre = plastic.model.on_pre.clone();
        let on_post = plastic.model.on_post.clone();
        for &i in pre {
            for update in &on_pre {
                apply(plastic, weights, update, Event::Pre(i));
            }
        }
        for &j in post {
            for update in &on_post {
                apply(plastic, weights, update, Event::Post(j));
            }
        }
    }

    /// The projection indices (into this struct) whose target is population `p`.
    fn projections_into(&self, p: usize) -> impl Iterator<Item = usize> + '_ {
        self.projections.iter().enumerate().filter(move |(_, x)| x.target == p).map(|(k, _)| k)
    }
}

/// Where each synapse variable lives: the weight `w` in the parameters; a trace or state
/// written only `on pre`, from values of the presynaptic side, per presynaptic neuron; only `on
/// post`, from the postsynaptic side, per postsynaptic neuron; otherwise per synapse.
pub fn sides_of(model: &SynapseModel) -> Vec<Side> {
    let n_vars = model.vars.len() + model.traces.len();
    let writes = |updates: &[Update], v: usize| updates.iter().any(|u| u.var.0 as usize == v);
    let mut sides: Vec<Side> = (0..n_vars)
        .map(|v| {
            if model.vars.get(v).is_some_and(|var| var.name == "w") {
                Side::Weight
            } else {
                match (writes(&model.on_pre, v), writes(&model.on_post, v)) {
                    (true, false) | (false, false) => Side::Pre,
                    (false, true) => Side::Post,
                    (true, true) => Side::Synapse,
                }
            }
        })
        .collect();
    // A one-sided variable whose new values read the other side would differ per synapse.
    loop {
        let mut changed = false;
        for v in 0..n_vars {
            let (side, updates) = match sides[v] {
                Side::Pre => (Side::Pre, &model.on_pre),
                Side::Post => (Side::Post, &model.on_post),
                _ => continue,
            };
            let mixed = updates
                .iter()
                .filter(|u| u.var.0 as usize == v)
                .any(|u| model.exprs.reads(u.value, &|var: VarId| sides.get(var.0 as usize).is_some_and(|s| *s != side)));
            if mixed {
                sides[v] = Side::Synapse;
                changed = true;
            }
        }
        if !changed {
            return sides;
        }
    }
}

/// Evaluates one update for one event and writes its value.
fn apply<F: Real>(plastic: &mut Plastic<F>, weights: &mut [F], update: &Update, event: Event) {
    let value = eval(plastic, weights, update.value, event);
    let v = update.var.0 as usize;
    let (n_pre, n_post) = (plastic.n_pre, plastic.n_post);
    let at = |k: usize| match &value {
        Val::Scalar(x) => *x,
        Val::Vector(xs) => xs[k],
    };
    match (plastic.sides[v], event) {
        (Side::Weight, Event::Pre(i)) => (0..n_post).for_each(|j| weights[i * n_post + j] = at(j)),
        (Side::Weight, Event::Post(j)) => (0..n_pre).for_each(|i| weights[i * n_post + j] = at(i)),
        (Side::Synapse, Event::Pre(i)) => (0..n_post).for_each(|j| plastic.values[v][i * n_post + j] = at(j)),
        (Side::Synapse, Event::Post(j)) => (0..n_pre).for_each(|i| plastic.values[v][i * n_post + j] = at(i)),
        // Written on its own side: one value (the sides were chosen so that it is a scalar).
        (Side::Pre, Event::Pre(i)) => plastic.values[v][i] = at(0),
        (Side::Post, Event::Post(j)) => plastic.values[v][j] = at(0),
        // Never written from the other side (see `sides_of`).
        (Side::Pre, Event::Post(_)) | (Side::Post, Event::Pre(_)) => {}
    }
}

/// The value of expression `id` for one event: a scalar, or a vector over the row (a
/// presynaptic event, over postsynaptic neurons) or the column (a postsynaptic event).
fn eval<F: Real>(plastic: &Plastic<F>, weights: &[F], id: ExprId, event: Event) -> Val<F> {
    let (n_pre, n_post) = (plastic.n_pre, plastic.n_post);
    match plastic.model.exprs.get(id) {
        Node::Const(c) => Val::Scalar(F::of(*c)),
        Node::Var(var) => {
            let v = var.0 as usize;
            let values = &plastic.values[v];
            match (plastic.sides[v], event) {
                (Side::Weight, Event::Pre(i)) => Val::Vector(weights[i * n_post..(i + 1) * n_post].to_vec()),
                (Side::Weight, Event::Post(j)) => Val::Vector((0..n_pre).map(|i| weights[i * n_post + j]).collect()),
                (Side::Synapse, Event::Pre(i)) => Val::Vector(values[i * n_post..(i + 1) * n_post].to_vec()),
                (Side::Synapse, Event::Post(j)) => Val::Vector((0..n_pre).map(|i| values[i * n_post + j]).collect()),
                (Side::Pre, Event::Pre(i)) => Val::Scalar(values[i]),
                (Side::Post, Event::Post(j)) => Val::Scalar(values[j]),
                (Side::Pre, Event::Post(_)) | (Side::Post, Event::Pre(_)) => Val::Vector(values.clone()),
            }
        }
        // Lowering binds `dt` and the synapse's parameters as constants; nothing else is in
        // scope of a synapse block.
        Node::Global(_) | Node::Port(_) => Val::Scalar(F::nan()),
        Node::Unary(crate::ir::UnaryOp::Neg, a) => map(eval(plastic, weights, *a, event), |x| -x),
        Node::Unary(crate::ir::UnaryOp::Not, a) => {
            map(eval(plastic, weights, *a, event), |x| if x == F::zero() { F::one() } else { F::zero() })
        }
        Node::Binary(op, a, b) => {
            let (a, b) = (eval(plastic, weights, *a, event), eval(plastic, weights, *b, event));
            let f = |x: F, y: F| eval_binary(*op, x, y).unwrap_or_else(F::nan);
            match (a, b) {
                (Val::Scalar(x), Val::Scalar(y)) => Val::Scalar(f(x, y)),
                (Val::Vector(xs), Val::Scalar(y)) => Val::Vector(xs.into_iter().map(|x| f(x, y)).collect()),
                (Val::Scalar(x), Val::Vector(ys)) => Val::Vector(ys.into_iter().map(|y| f(x, y)).collect()),
                (Val::Vector(xs), Val::Vector(ys)) => Val::Vector(xs.into_iter().zip(ys).map(|(x, y)| f(x, y)).collect()),
            }
        }
        Node::Call(func, args) => {
            let values: Vec<Val<F>> = args.iter().map(|a| eval(plastic, weights, *a, event)).collect();
            let width = values.iter().find_map(|v| if let Val::Vector(xs) = v { Some(xs.len()) } else { None });
            let arg = |v: &Val<F>, k: usize| match v {
                Val::Scalar(x) => *x,
                Val::Vector(xs) => xs[k],
            };
            let call = |k: usize| {
                let row: Vec<F> = values.iter().map(|v| arg(v, k)).collect();
                eval_func(*func, &row).unwrap_or_else(F::nan)
            };
            match width {
                None => Val::Scalar(call(0)),
                Some(n) => Val::Vector((0..n).map(call).collect()),
            }
        }
    }
}

fn map<F: Real>(value: Val<F>, f: impl Fn(F) -> F) -> Val<F> {
    match value {
        Val::Scalar(x) => Val::Scalar(f(x)),
        Val::Vector(xs) => Val::Vector(xs.into_iter().map(f).collect()),
    }
}

/// Runs the plasticity of every projection into the population that has just stepped, with
/// that step's spikes read from the trace (batch 1: plastic networks learn one sample at a
/// time).
impl<F: Real> StepHook<F> for Plasticity<F> {
    fn after_population(&mut self, t: usize, p: usize, trace: &mut Trace<F>, params: Option<&mut Params<F>>) {
        let Some(params) = params else { return };
        let ks: Vec<usize> = self.projections_into(p).collect();
        for k in ks {
            let plastic = &self.projections[k];
            let mut pre = Vec::new();
            match &plastic.source {
                Source::Input(id) => {
                    pre.extend(trace.input_at(t, id.0 as usize).iter().enumerate().filter(|(_, x)| **x != F::zero()).map(|(i, _)| i));
                }
                Source::Population(q) => {
                    let (q, n) = (q.0 as usize, plastic.n_pre);
                    trace.spikes[q].for_each_set(t * trace.row(q)..t * trace.row(q) + n, |i| pre.push(i));
                }
            }
            let mut post = Vec::new();
            trace.spikes[p].for_each_set(t * trace.row(p)..t * trace.row(p) + plastic.n_post, |j| post.push(j));
            let index = plastic.index;
            self.step_projection(k, &mut params.weights[index], &pre, &post);
        }
    }
}
