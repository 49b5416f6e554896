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

use crate::exec::jit::{PlasticKernels, compile_plasticity, plastic::UpdateSpec};
use crate::exec::kernels::bits::for_each_nonzero;
use crate::exec::real::Real;
use crate::exec::state::{At, Params, StepHook, Trace};
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
    /// The JIT could not compile an update.
    Compile(String),
}

impl std::fmt::Display for PlasticityError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlasticityError::NotDense { projection, synapse } => {
                write!(f, "the plastic synapse `{synapse}` of connection {projection} runs on dense connections only")
            }
            PlasticityError::Unsupported { synapse, what } => write!(f, "synapse `{synapse}`: {what} is not supported in an update"),
            PlasticityError::Compile(message) => write!(f, "plasticity: {message}"),
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
    /// The `on pre` and `on post` updates, each compiled to a register program.
    on_pre: Vec<Program<F>>,
    on_post: Vec<Program<F>>,
}

/// One update compiled: the expression's nodes in order (children before parents), each
/// computing a register that holds one number or one per element of the row or column the
/// event touches. Registers are reused from event to event: applying an update allocates
/// nothing once they have grown.
struct Program<F> {
    var: usize,
    ops: Vec<Op>,
    regs: Vec<Reg<F>>,
}

#[derive(Clone, Debug)]
enum Op {
    Const(f64),
    Load(usize),
    Neg(usize),
    Not(usize),
    Binary(crate::ir::BinaryOp, usize, usize),
    Call(crate::ir::Func, Vec<usize>),
    /// Something a synapse block cannot read (lowering binds none): NaN.
    Unknown,
}

/// A register: a scalar (`vector` false, value in `data[0]`) or a vector.
#[derive(Clone, Debug, Default)]
struct Reg<F> {
    vector: bool,
    data: Vec<F>,
}

/// The plastic projections of a module with their traces and states, which persist from one
/// sample to the next, as the network does.
pub struct Plasticity<F> {
    projections: Vec<Plastic<F>>,
    /// Whether updates are applied (training) or only traces kept (nothing: evaluation runs
    /// without this hook).
    pub learning: bool,
    /// Scratch: the neurons that spiked in this step on either side.
    pre: Vec<usize>,
    post: Vec<usize>,
    /// The updates compiled by Cranelift, per projection its `on pre` kernels then its
    /// `on post` kernels; None: the register programs run (the reference).
    kernels: Option<PlasticKernels<F>>,
    /// Where each projection's kernels start in `kernels`.
    first_kernel: Vec<usize>,
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
            let on_pre = model.on_pre.iter().map(|u| compile(model, u)).collect();
            let on_post = model.on_post.iter().map(|u| compile(model, u)).collect();
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
                on_pre,
                on_post,
            });
        }
        Ok(Plasticity { projections, learning: true, pre: Vec::new(), post: Vec::new(), kernels: None, first_kernel: Vec::new() })
    }

    /// The plastic projections of `module` with their updates compiled by the JIT.
    pub fn compiled(module: &Module) -> Result<Plasticity<F>, PlasticityError> {
        let mut plasticity = Plasticity::new(module)?;
        let mut specs = Vec::new();
        for (k, plastic) in plasticity.projections.iter().enumerate() {
            plasticity.first_kernel.push(specs.len());
            for (on_pre, updates) in [(true, &plastic.model.on_pre), (false, &plastic.model.on_post)] {
                for (u, update) in updates.iter().enumerate() {
                    specs.push(UpdateSpec {
                        name: format!("{}_{k}_on_{}_{u}", plastic.model.name, if on_pre { "pre" } else { "post" }),
                        model: &plastic.model,
                        sides: &plastic.sides,
                        update,
                        on_pre,
                        n_pre: plastic.n_pre,
                        n_post: plastic.n_post,
                    });
                }
            }
        }
        let kernels = compile_plasticity::<F>(&specs, module.dt).map_err(|error| PlasticityError::Compile(error.to_string()))?;
        plasticity.kernels = Some(kernels);
        Ok(plasticity)
    }

    /// The CLIF text of the compiled updates, by kernel name (empty when interpreted).
    pub fn clif(&self) -> &[(String, String)] {
        self.kernels.as_ref().map_or(&[], |k| k.clif.as_slice())
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
        if !self.learning || (pre.is_empty() && post.is_empty()) {
            return;
        }
        if let Some(kernels) = &self.kernels {
            let bases: Vec<*mut F> = (0..plastic.sides.len())
                .map(|v| if plastic.sides[v] == Side::Weight { weights.as_mut_ptr() } else { plastic.values[v].as_mut_ptr() })
                .collect();
            let first = self.first_kernel[k];
            let (n_on_pre, n_on_post) = (plastic.on_pre.len(), plastic.on_post.len());
            let no_net = [F::zero()];
            let run = |kernel: usize, index: usize| {
                // SAFETY: `bases` has a pointer per synapse variable, each to an array of the
                // length its side gives (weights: n_pre x n_post), and `index` is a neuron of
                // the event's side: every element a kernel touches is in bounds.
                unsafe { (kernels.kernels[kernel])(bases.as_ptr(), index as i64, F::zero(), no_net.as_ptr()) }
            };
            for &i in pre {
                assert!(i < plastic.n_pre, "a presynaptic neuron");
                (0..n_on_pre).for_each(|u| run(first + u, i));
            }
            for &j in post {
                assert!(j < plastic.n_post, "a postsynaptic neuron");
                (0..n_on_post).for_each(|u| run(first + n_on_pre + u, j));
            }
            return;
        }
        let mut on_pre = std::mem::take(&mut plastic.on_pre);
        let mut on_post = std::mem::take(&mut plastic.on_post);
        for &i in pre {
            for program in &mut on_pre {
                apply(plastic, weights, program, Event::Pre(i));
            }
        }
        for &j in post {
            for program in &mut on_post {
                apply(plastic, weights, program, Event::Post(j));
            }
        }
        plastic.on_pre = on_pre;
        plastic.on_post = on_post;
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

/// Compiles one update: the nodes its value reads, in arena order (children first).
fn compile<F: Real>(model: &SynapseModel, update: &Update) -> Program<F> {
    let exprs = &model.exprs;
    let mut needed = vec![false; exprs.nodes.len()];
    let mut stack = vec![update.value];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut needed[id.0 as usize], true) {
            continue;
        }
        match exprs.get(id) {
            Node::Unary(_, a) => stack.push(*a),
            Node::Binary(_, a, b) => stack.extend([*a, *b]),
            Node::Call(_, args) => stack.extend(args.iter().copied()),
            _ => {}
        }
    }
    let order: Vec<usize> = (0..needed.len()).filter(|&k| needed[k]).collect();
    let reg = |id: &ExprId| order.binary_search(&(id.0 as usize)).expect("children are compiled before their parents");
    let ops: Vec<Op> = order
        .iter()
        .map(|&k| match exprs.get(ExprId(k as u32)) {
            Node::Const(c) => Op::Const(*c),
            Node::Var(var) => Op::Load(var.0 as usize),
            Node::Unary(crate::ir::UnaryOp::Neg, a) => Op::Neg(reg(a)),
            Node::Unary(crate::ir::UnaryOp::Not, a) => Op::Not(reg(a)),
            Node::Binary(op, a, b) => Op::Binary(*op, reg(a), reg(b)),
            Node::Call(func, args) => Op::Call(*func, args.iter().map(reg).collect()),
            Node::Global(_) | Node::Port(_) => Op::Unknown,
        })
        .collect();
    let regs = vec![Reg::default(); ops.len()];
    Program { var: update.var.0 as usize, ops, regs }
}

/// Runs one update's program for one event and writes its value.
fn apply<F: Real>(plastic: &mut Plastic<F>, weights: &mut [F], program: &mut Program<F>, event: Event) {
    let (n_pre, n_post) = (plastic.n_pre, plastic.n_post);
    let width = match event {
        Event::Pre(_) => n_post,
        Event::Post(_) => n_pre,
    };
    for k in 0..program.ops.len() {
        let (done, rest) = program.regs.split_at_mut(k);
        let out = &mut rest[0];
        out.data.clear();
        match &program.ops[k] {
            Op::Const(c) => scalar(out, F::of(*c)),
            Op::Unknown => scalar(out, F::nan()),
            Op::Load(v) => {
                let values = &plastic.values[*v];
                match (plastic.sides[*v], event) {
                    (Side::Weight, Event::Pre(i)) => vector(out, weights[i * n_post..(i + 1) * n_post].iter().copied()),
                    (Side::Weight, Event::Post(j)) => vector(out, (0..n_pre).map(|i| weights[i * n_post + j])),
                    (Side::Synapse, Event::Pre(i)) => vector(out, values[i * n_post..(i + 1) * n_post].iter().copied()),
                    (Side::Synapse, Event::Post(j)) => vector(out, (0..n_pre).map(|i| values[i * n_post + j])),
                    (Side::Pre, Event::Pre(i)) => scalar(out, values[i]),
                    (Side::Post, Event::Post(j)) => scalar(out, values[j]),
                    (Side::Pre, Event::Post(_)) | (Side::Post, Event::Pre(_)) => vector(out, values.iter().copied()),
                }
            }
            Op::Neg(a) => unary(out, &done[*a], |x| -x),
            Op::Not(a) => unary(out, &done[*a], |x| if x == F::zero() { F::one() } else { F::zero() }),
            Op::Binary(op, a, b) => {
                let (a, b) = (&done[*a], &done[*b]);
                let f = |x: F, y: F| eval_binary(*op, x, y).unwrap_or_else(F::nan);
                match (a.vector, b.vector) {
                    (false, false) => scalar(out, f(a.data[0], b.data[0])),
                    (true, false) => vector(out, a.data.iter().map(|x| f(*x, b.data[0]))),
                    (false, true) => vector(out, b.data.iter().map(|y| f(a.data[0], *y))),
                    (true, true) => vector(out, a.data.iter().zip(&b.data).map(|(x, y)| f(*x, *y))),
                }
            }
            // The bounds of a rule, `clip(w + dw, 0, w_max)`: a vector clamped between scalars.
            Op::Call(crate::ir::Func::Clip, args)
                if args.len() == 3 && done[args[0]].vector && !done[args[1]].vector && !done[args[2]].vector =>
            {
                let (lo, hi) = (done[args[1]].data[0], done[args[2]].data[0]);
                vector(out, done[args[0]].data.iter().map(|x| x.max(lo).min(hi)));
            }
            Op::Call(func, args) => {
                let any_vector = args.iter().any(|a| done[*a].vector);
                let mut slots = [F::zero(); 4];
                let mut call = |k: usize| {
                    for (slot, a) in slots.iter_mut().zip(args) {
                        let r = &done[*a];
                        *slot = if r.vector { r.data[k] } else { r.data[0] };
                    }
                    eval_func(*func, &slots[..args.len().min(4)]).unwrap_or_else(F::nan)
                };
                if any_vector {
                    out.vector = true;
                    out.data.extend((0..width).map(&mut call));
                } else {
                    let value = call(0);
                    scalar(out, value);
                }
            }
        }
    }
    let value = program.regs.last().expect("an update reads at least one node");
    let v = program.var;
    let at = |k: usize| if value.vector { value.data[k] } else { value.data[0] };
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

fn scalar<F: Real>(out: &mut Reg<F>, value: F) {
    out.vector = false;
    out.data.push(value);
}

fn vector<F: Real>(out: &mut Reg<F>, values: impl Iterator<Item = F>) {
    out.vector = true;
    out.data.extend(values);
}

fn unary<F: Real>(out: &mut Reg<F>, a: &Reg<F>, f: impl Fn(F) -> F) {
    out.vector = a.vector;
    out.data.extend(a.data.iter().map(|x| f(*x)));
}

/// Runs the plasticity of every projection into the population that has just stepped, with
/// that step's spikes read from the trace (batch 1: plastic networks learn one sample at a
/// time).
impl<F: Real> StepHook<F> for Plasticity<F> {
    fn after_population(&mut self, at: At, p: usize, trace: &mut Trace<F>, params: Option<&mut Params<F>>) {
        let Some(params) = params else { return };
        let t = at.row;
        let (mut pre, mut post) = (std::mem::take(&mut self.pre), std::mem::take(&mut self.post));
        for k in 0..self.projections.len() {
            let plastic = &self.projections[k];
            if plastic.target != p {
                continue;
            }
            pre.clear();
            match &plastic.source {
                Source::Input(id) => {
                    for_each_nonzero(trace.input_at(t, id.0 as usize), |i| pre.push(i));
                }
                Source::Population(q) => {
                    let (q, n) = (q.0 as usize, plastic.n_pre);
                    trace.spikes[q].for_each_set(t * trace.row(q)..t * trace.row(q) + n, |i| pre.push(i));
                }
                // The checker refuses plastic connections that carry a state
                // (`snn::network::plastic_state_source`): no presynaptic spikes.
                Source::State(_) => {}
            }
            post.clear();
            trace.spikes[p].for_each_set(t * trace.row(p)..t * trace.row(p) + plastic.n_post, |j| post.push(j));
            let index = plastic.index;
            self.step_projection(k, &mut params.weights[index], &pre, &post);
        }
        (self.pre, self.post) = (pre, post);
    }
}
