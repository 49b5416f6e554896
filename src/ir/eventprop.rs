//! The EventProp adjoint (Wunderlich & Pehle 2021; seeds/002) derived as an IR pass from a
//! population's own equations: its continuous dynamics `dx/dt = f(x)` (kept in
//! [`Population::odes`]), its threshold `g(x) = 0`, its reset `x+ = r(x-)` (the `on spike`
//! block) and its additive input jumps `x += c * input`. Nothing here knows CubaLIF: seeds/002's
//! equations (4), (5) and (8) are what this derivation gives for it (tests/eventprop.rs).
//!
//! Between spikes the adjoint follows `dλ/dt = -Aᵀ λ` with `A = ∂f/∂x`, constant for the
//! linear dynamics EventProp needs, integrated from `T` back to 0 (the same exact propagators
//! as the forward pass, transposed). At a spike of the neuron at time `t_k`:
//!
//! ```text
//! λ⁻ = Rᵀ λ⁺ + ∇g / (∇g · f(x⁻)) · [ λ⁺ · f(x⁺) − (Rᵀ λ⁺) · f(x⁻) + E ]
//! ```
//!
//! with `R = ∂r/∂x⁻`, `x⁺ = r(x⁻)` and `E` the event's other terms: the loss's derivative with
//! respect to the spike time plus what the spike does to the neurons it reaches,
//! `Σ_m W_mn τ_m` with `τ_m = λ_m⁺ · A_m c_m` ([`EventAdjoint::transmit`], the receiver's
//! port term per unit weight). A weight's gradient collects `-λ⁺ · c` of the receiver at every
//! presynaptic spike ([`EventAdjoint::weight_grad`]).
//!
//! Leaves of the derived expressions: `Var(v)` is the state just before the spike (`x⁻`),
//! [`Global::AdjointAfter`]`(v)` the adjoint just after it (`λ⁺`, or `λ` in the adjoint
//! dynamics), [`Global::AdjointSpike`] the event term `E`.

use crate::ir::grad::{Builder, Env, GradError, import, sweep};
use crate::ir::{BinaryOp, ExprId, Exprs, Global, Node, Population, PortId, VarId};

/// Why a population has no EventProp adjoint.
#[derive(Clone, Debug, PartialEq)]
pub enum EventPropError {
    /// A state's dynamics are not linear: `∂f/∂x` reads the state.
    Nonlinear { var: String },
    /// The population has no threshold, or one that is not a comparison of two values.
    NoThreshold,
    /// A refractory period (the adjoint of a held state is not derived yet).
    Refractory,
    /// An `on spike` update reads a variable that an earlier one of the block wrote.
    SequentialReset { var: String },
    /// An input jump that is not `x += c * input` with `c` free of state.
    NonAdditiveJump { port: String },
    /// `update` blocks: EventProp needs the dynamics in continuous time.
    Discrete,
    /// An expression the derivation cannot import (a random draw inside the neuron).
    Graph(GradError),
}

impl std::fmt::Display for EventPropError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventPropError::Nonlinear { var } => write!(f, "the dynamics of `{var}` are not linear in the state"),
            EventPropError::NoThreshold => write!(f, "the neuron has no threshold to take spike times from"),
            EventPropError::Refractory => write!(f, "a refractory period is not supported by the EventProp adjoint yet"),
            EventPropError::SequentialReset { var } => {
                write!(f, "the `on spike` update of `{var}` reads a variable the same block wrote before it")
            }
            EventPropError::NonAdditiveJump { port } => write!(f, "input `{port}` does not add a multiple of itself to a state"),
            EventPropError::Discrete => write!(f, "`update` blocks have no continuous-time adjoint"),
            EventPropError::Graph(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for EventPropError {}

impl From<GradError> for EventPropError {
    fn from(error: GradError) -> EventPropError {
        EventPropError::Graph(error)
    }
}

/// A population's EventProp adjoint, in one arena (leaves: see the module documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct EventAdjoint {
    pub exprs: Exprs,
    /// `f(x)` per variable: its continuous right-hand side (0 for a variable without one).
    pub rhs: Vec<ExprId>,
    /// `dλ_v/dt = -(Aᵀ λ)_v`, per variable.
    pub adjoint_rhs: Vec<ExprId>,
    /// `A[i][j] = ∂f_i/∂x_j`: constants and parameters only.
    pub matrix: Vec<Vec<ExprId>>,
    /// `λ⁻_v` at the neuron's own spike, per variable.
    pub jump: Vec<ExprId>,
    /// `∇g · f(x⁻)`: how fast the threshold function rises at the spike (the spike time's
    /// sensitivity divides by it).
    pub crossing_rate: ExprId,
    /// Per port: `λ⁺ · A c`, the receiver's part of a presynaptic spike's event term per unit
    /// weight (`c` the port's coefficient in its jump; 0 for a port without a jump).
    pub transmit: Vec<ExprId>,
    /// Per port: `-λ⁺ · c`, a weight's gradient per presynaptic spike.
    pub weight_grad: Vec<ExprId>,
    /// `g(x)`: the neuron spikes where it rises through 0.
    pub threshold: ExprId,
    /// `∇g`, per variable.
    pub threshold_grad: Vec<ExprId>,
    /// `x⁺ = r(x⁻)`, per variable.
    pub reset: Vec<ExprId>,
    /// Per port: `c`, per variable (the jump is `x += c * input`).
    pub coefficients: Vec<Vec<ExprId>>,
}

/// Derives the EventProp adjoint of `pop`.
pub fn derive(pop: &Population) -> Result<EventAdjoint, EventPropError> {
    if !pop.updates.is_empty() || !pop.after_spike.is_empty() {
        return Err(EventPropError::Discrete);
    }
    if pop.refractory.is_some() {
        return Err(EventPropError::Refractory);
    }
    let threshold = pop.threshold.as_ref().ok_or(EventPropError::NoThreshold)?;
    let (n_vars, n_ports) = (pop.vars.len(), pop.ports.len());
    let mut b = Builder { exprs: Exprs::default() };
    // Leaves first, in the order `sweep` reports them: variables, then ports.
    let vars: Vec<ExprId> = (0..n_vars).map(|v| b.exprs.push(Node::Var(VarId(v as u32)))).collect();
    let ports: Vec<ExprId> = (0..n_ports).map(|q| b.exprs.push(Node::Port(PortId(q as u32)))).collect();
    let lambda: Vec<ExprId> = (0..n_vars).map(|v| b.exprs.push(Node::Global(Global::AdjointAfter(v as u32)))).collect();
    let event = b.exprs.push(Node::Global(Global::AdjointSpike));
    let zero = b.konst(0.0);

    // f at a state given by `at` (one node per variable).
    let rhs_at = |b: &mut Builder, at: &[ExprId]| -> Result<Vec<ExprId>, EventPropError> {
        let env = Env { vars: at, ports: &ports, spiked: zero, surrogate_x: None };
        let mut memo = Vec::new();
        let mut f = vec![zero; n_vars];
        for (var, rhs) in &pop.odes {
            f[var.0 as usize] = import(b, &pop.exprs, *rhs, &env, &mut memo)?;
        }
        Ok(f)
    };
    let f_minus = rhs_at(&mut b, &vars)?;

    // The reset map x⁺ = r(x⁻): each `on spike` update reads the state before the spike.
    let mut reset = vars.clone();
    let mut written = vec![false; n_vars];
    {
        let env = Env { vars: &vars, ports: &ports, spiked: zero, surrogate_x: None };
        for update in &pop.on_spike {
            if pop.exprs.reads(update.value, &|v| written[v.0 as usize]) {
                return Err(EventPropError::SequentialReset { var: pop.vars[update.var.0 as usize].name.clone() });
            }
            reset[update.var.0 as usize] = import(&mut b, &pop.exprs, update.value, &env, &mut Vec::new())?;
            written[update.var.0 as usize] = true;
        }
    }
    let f_plus = rhs_at(&mut b, &reset)?;

    // g(x) = lhs - rhs for an upward crossing (`>`, `>=`), rhs - lhs for a downward one.
    let g = {
        let env = Env { vars: &vars, ports: &ports, spiked: zero, surrogate_x: None };
        let mut memo = Vec::new();
        let lhs = import(&mut b, &pop.exprs, threshold.lhs, &env, &mut memo)?;
        let rhs = import(&mut b, &pop.exprs, threshold.rhs, &env, &mut memo)?;
        match threshold.op {
            BinaryOp::Lt | BinaryOp::Le => b.sub(rhs, lhs),
            _ => b.sub(lhs, rhs),
        }
    };

    // Aᵀ λ (from the seeds (f_i, λ_i)) and A itself, column by column from unit seeds.
    let len = b.exprs.nodes.len();
    let seeds: Vec<(ExprId, ExprId)> = f_minus.iter().zip(&lambda).map(|(f, l)| (*f, *l)).collect();
    let (at_lambda, _) = sweep(&mut b, len, &seeds, None, n_vars, n_ports);
    let mut matrix = vec![vec![zero; n_vars]; n_vars];
    for i in 0..n_vars {
        let len = b.exprs.nodes.len();
        let one = b.konst(1.0);
        let (row, _) = sweep(&mut b, len, &[(f_minus[i], one)], None, n_vars, n_ports);
        for (j, entry) in row.into_iter().enumerate() {
            if b.exprs.reads(entry, &|_| true) {
                return Err(EventPropError::Nonlinear { var: pop.vars[i].name.clone() });
            }
            matrix[i][j] = entry;
        }
    }
    let adjoint_rhs: Vec<ExprId> = at_lambda.iter().map(|x| b.neg(*x)).collect();

    // Rᵀ λ⁺ and ∇g.
    let len = b.exprs.nodes.len();
    let seeds: Vec<(ExprId, ExprId)> = reset.iter().zip(&lambda).map(|(r, l)| (*r, *l)).collect();
    let (rt_lambda, _) = sweep(&mut b, len, &seeds, None, n_vars, n_ports);
    let len = b.exprs.nodes.len();
    let one = b.konst(1.0);
    let (grad_g, _) = sweep(&mut b, len, &[(g, one)], None, n_vars, n_ports);

    let dot = |b: &mut Builder, a: &[ExprId], c: &[ExprId]| {
        a.iter().zip(c).fold(zero, |sum, (x, y)| {
            let term = b.mul(*x, *y);
            b.add(sum, term)
        })
    };
    let crossing_rate = dot(&mut b, &grad_g, &f_minus);
    let after = dot(&mut b, &lambda, &f_plus);
    let before = dot(&mut b, &rt_lambda, &f_minus);
    let bracket = b.sub(after, before);
    let bracket = b.add(bracket, event);
    let scale = b.div(bracket, crossing_rate);
    let jump: Vec<ExprId> = (0..n_vars)
        .map(|v| {
            let push = b.mul(grad_g[v], scale);
            b.add(rt_lambda[v], push)
        })
        .collect();

    // Per port: its jump's coefficients c (x⁺ = x⁻ + c input), then λ · A c and -λ · c.
    let mut transmit = vec![zero; n_ports];
    let mut weight_grad = vec![zero; n_ports];
    let mut coefficients = vec![vec![zero; n_vars]; n_ports];
    for jump_block in &pop.input_jumps {
        let q = jump_block.port.0 as usize;
        if !jump_block.additive {
            return Err(EventPropError::NonAdditiveJump { port: pop.ports[q].clone() });
        }
        let mut c = vec![zero; n_vars];
        for update in &jump_block.updates {
            let env = Env { vars: &vars, ports: &ports, spiked: zero, surrogate_x: None };
            let value = import(&mut b, &pop.exprs, update.value, &env, &mut Vec::new())?;
            let len = b.exprs.nodes.len();
            let one = b.konst(1.0);
            let (_, d_ports) = sweep(&mut b, len, &[(value, one)], None, n_vars, n_ports);
            c[update.var.0 as usize] = d_ports[q];
        }
        let a_c: Vec<ExprId> = (0..n_vars).map(|i| dot(&mut b, &matrix[i], &c)).collect();
        transmit[q] = dot(&mut b, &lambda, &a_c);
        let lc = dot(&mut b, &lambda, &c);
        weight_grad[q] = b.neg(lc);
        coefficients[q] = c;
    }

    let rhs = f_minus;
    Ok(EventAdjoint {
        exprs: b.exprs,
        rhs,
        adjoint_rhs,
        matrix,
        jump,
        crossing_rate,
        transmit,
        weight_grad,
        threshold: g,
        threshold_grad: grad_g,
        reset,
        coefficients,
    })
}

/// The value of `id` with the state `x` (`x⁻`), the adjoint `lambda` (`λ⁺`), the event term
/// `e` and the network parameters `net`. A port reads as 0.
pub fn eval(exprs: &Exprs, id: ExprId, x: &[f64], lambda: &[f64], e: f64, net: &[f64]) -> f64 {
    let at = |id: &ExprId| eval(exprs, *id, x, lambda, e, net);
    match exprs.get(id) {
        Node::Const(c) => *c,
        Node::Var(v) => x[v.0 as usize],
        Node::Port(_) => 0.0,
        Node::Global(Global::AdjointAfter(v)) => lambda[*v as usize],
        Node::Global(Global::AdjointSpike) => e,
        Node::Global(Global::NetParam(k)) => net.get(*k as usize).copied().unwrap_or(f64::NAN),
        Node::Global(_) => f64::NAN,
        Node::Unary(crate::ir::UnaryOp::Neg, a) => -at(a),
        Node::Unary(crate::ir::UnaryOp::Not, a) => f64::from(u8::from(at(a) == 0.0)),
        Node::Binary(op, a, b) => crate::ir::eval_binary(*op, at(a), at(b)).unwrap_or(f64::NAN),
        Node::Call(func, args) => crate::ir::eval_func(*func, &args.iter().map(at).collect::<Vec<_>>()).unwrap_or(f64::NAN),
    }
}

impl EventAdjoint {
    /// The derivation as text, for `snnc emit grad`: `λ'` of each state, the jump at a spike,
    /// the transmission and weight-gradient terms of each input.
    pub fn text(&self, pop: &Population) -> String {
        let names = |v: VarId| pop.vars[v.0 as usize].name.clone();
        let ports = |q: PortId| format!("in.{}", pop.ports[q.0 as usize]);
        // The adjoint leaves by name: λ_v for the adjoint after the spike, E for the event term.
        let show = |id: ExprId| {
            let mut text = self.exprs.display(id, &names, &ports);
            for (v, var) in pop.vars.iter().enumerate() {
                text = text.replace(&format!("d_after[{v}]"), &format!("λ_{}", var.name));
            }
            text.replace("d_spike", "E")
        };
        let mut out = String::new();
        for (v, id) in self.rhs.iter().enumerate() {
            out.push_str(&format!("  d{}/dt = {}\n", pop.vars[v].name, show(*id)));
        }
        for (v, id) in self.adjoint_rhs.iter().enumerate() {
            out.push_str(&format!("  dλ_{}/dt = {}\n", pop.vars[v].name, show(*id)));
        }
        out.push_str(&format!("  at a spike, from λ after it and the event term E (threshold rising at {}):\n", show(self.crossing_rate)));
        for (v, id) in self.jump.iter().enumerate() {
            out.push_str(&format!("    λ_{} = {}\n", pop.vars[v].name, show(*id)));
        }
        for (q, port) in pop.ports.iter().enumerate() {
            out.push_str(&format!(
                "  input {port}: per unit weight {}; weight gradient per presynaptic spike {}\n",
                show(self.transmit[q]),
                show(self.weight_grad[q])
            ));
        }
        out
    }
}
