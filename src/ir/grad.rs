//! Gradient derivation as an IR pass: a population's whole step (input jumps, dynamics,
//! updates, threshold, reset, refractory hold, updates after the spike) is flattened into one
//! expression graph of ordinary IR nodes, and its reverse-mode adjoint is derived into the
//! same arena. Back ends compile the result like any other expression: the JIT's backward
//! kernel is the code of [`StepGraph::d_before`] and [`StepGraph::d_ports`].
//!
//! The leaves are the state before the step (`Node::Var`), the ports (`Node::Port`), the
//! refractory flag ([`Global::Refractory`]) and the adjoints coming back from later in time:
//! d loss / d state after the step ([`Global::AdjointAfter`]) and d loss / d spike
//! ([`Global::AdjointSpike`]). The threshold's derivative is the model's surrogate, evaluated
//! at `lhs - rhs` and zero while refractory; conditions (jump tests, the reset's condition,
//! comparisons) are detached, as in snnTorch.

use crate::ir::train::Surrogate;
use crate::ir::{BinaryOp, ExprId, Exprs, Func, Global, Node, Population, UnaryOp, Update};

/// Why a step or an expression cannot be flattened or differentiated.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum GradError {
    /// A value with no place in a flattened step: a random draw or the sample's data read
    /// inside a neuron.
    Unsupported { global: Global },
    /// The surrogate's argument `x` read outside a surrogate.
    SurrogateOutside,
}

impl std::fmt::Display for GradError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradError::Unsupported { global } => {
                write!(f, "the step graph does not support `{}` inside a neuron yet", crate::ir::global_name(*global))
            }
            GradError::SurrogateOutside => write!(f, "the surrogate's argument `x` read outside a surrogate"),
        }
    }
}

impl std::error::Error for GradError {}

/// One population step and its adjoint, in one arena.
#[derive(Clone, Debug, PartialEq)]
pub struct StepGraph {
    pub exprs: Exprs,
    /// The state after the step, per variable.
    pub after: Vec<ExprId>,
    /// 1 when the neuron fires in this step, else 0.
    pub spike: ExprId,
    /// d loss / d state before the step, per variable.
    pub d_before: Vec<ExprId>,
    /// d loss / d port value, per port.
    pub d_ports: Vec<ExprId>,
}

/// Builds nodes with the algebraic simplifications that keep adjoint code small (`g * 1`,
/// `x + 0`, products with 0); the forward part is built by plain [`Exprs::push`].
pub(super) struct Builder {
    pub(super) exprs: Exprs,
}

impl Builder {
    pub(super) fn konst(&mut self, value: f64) -> ExprId {
        self.exprs.push(Node::Const(value))
    }

    fn is(&self, id: ExprId, value: f64) -> bool {
        self.exprs.constant(id) == Some(value)
    }

    pub(super) fn add(&mut self, a: ExprId, b: ExprId) -> ExprId {
        if self.is(a, 0.0) {
            return b;
        }
        if self.is(b, 0.0) {
            return a;
        }
        if let Some(merged) = self.merge_selects(a, b) {
            return merged;
        }
        // a + (b + c) with a and b complementary selects: (a + b) + c.
        if let Node::Binary(BinaryOp::Add, x, y) = *self.exprs.get(b)
            && let Some(merged) = self.merge_selects(a, x)
        {
            return self.add(merged, y);
        }
        self.exprs.push(Node::Binary(BinaryOp::Add, a, b))
    }

    /// select(c, 0, g) + select(c, g, 0) = g: the adjoints of a select's two branches when
    /// both branches read the same value.
    fn merge_selects(&self, a: ExprId, b: ExprId) -> Option<ExprId> {
        let (Node::Call(Func::Select, x), Node::Call(Func::Select, y)) = (self.exprs.get(a), self.exprs.get(b)) else { return None };
        let complementary = x[0] == y[0] && x[1] == y[2] && x[2] == y[1];
        match (complementary, self.is(x[1], 0.0), self.is(x[2], 0.0)) {
            (true, true, _) => Some(x[2]),
            (true, _, true) => Some(x[1]),
            _ => None,
        }
    }

    pub(super) fn sub(&mut self, a: ExprId, b: ExprId) -> ExprId {
        if self.is(b, 0.0) {
            return a;
        }
        self.exprs.push(Node::Binary(BinaryOp::Sub, a, b))
    }

    pub(super) fn mul(&mut self, a: ExprId, b: ExprId) -> ExprId {
        if self.is(a, 1.0) {
            return b;
        }
        if self.is(b, 1.0) {
            return a;
        }
        if self.is(a, 0.0) || self.is(b, 0.0) {
            return self.konst(0.0);
        }
        self.exprs.push(Node::Binary(BinaryOp::Mul, a, b))
    }

    pub(super) fn div(&mut self, a: ExprId, b: ExprId) -> ExprId {
        if self.is(a, 0.0) {
            return a;
        }
        self.exprs.push(Node::Binary(BinaryOp::Div, a, b))
    }

    fn pow(&mut self, x: ExprId, y: ExprId) -> ExprId {
        match self.exprs.constant(y) {
            Some(1.0) => x,
            Some(2.0) => self.mul(x, x),
            _ => self.exprs.push(Node::Binary(BinaryOp::Pow, x, y)),
        }
    }

    pub(super) fn neg(&mut self, a: ExprId) -> ExprId {
        if let Node::Unary(UnaryOp::Neg, inner) = self.exprs.get(a) {
            return *inner;
        }
        self.exprs.push(Node::Unary(UnaryOp::Neg, a))
    }

    fn call(&mut self, func: Func, args: Vec<ExprId>) -> ExprId {
        self.exprs.push(Node::Call(func, args))
    }

    fn select(&mut self, condition: ExprId, a: ExprId, b: ExprId) -> ExprId {
        if a == b {
            return a;
        }
        if let Some(c) = self.exprs.constant(condition) {
            return if c != 0.0 { a } else { b };
        }
        self.call(Func::Select, vec![condition, a, b])
    }

    fn compare(&mut self, op: BinaryOp, a: ExprId, b: ExprId) -> ExprId {
        self.exprs.push(Node::Binary(op, a, b))
    }
}

/// What the expressions of one update list may read while being imported.
pub(super) struct Env<'a> {
    pub(super) vars: &'a [ExprId],
    pub(super) ports: &'a [ExprId],
    pub(super) spiked: ExprId,
    pub(super) surrogate_x: Option<ExprId>,
}

/// Copies expression `id` of `source` into the graph, reading variables, ports and the spike
/// flag from `env`; `clip` becomes `min(max(...))` so that only primitive nodes need rules.
pub(super) fn import(b: &mut Builder, source: &Exprs, id: ExprId, env: &Env, memo: &mut Vec<Option<ExprId>>) -> Result<ExprId, GradError> {
    if memo.len() < source.nodes.len() {
        memo.resize(source.nodes.len(), None);
    }
    if let Some(done) = memo[id.0 as usize] {
        return Ok(done);
    }
    let out = match source.get(id) {
        Node::Const(value) => b.konst(*value),
        Node::Var(var) => env.vars[var.0 as usize],
        Node::Port(port) => env.ports[port.0 as usize],
        Node::Global(Global::Spiked) => env.spiked,
        Node::Global(Global::SurrogateX) => env.surrogate_x.ok_or(GradError::SurrogateOutside)?,
        Node::Global(global @ (Global::Rand | Global::SampleRand | Global::Data)) => {
            return Err(GradError::Unsupported { global: *global });
        }
        Node::Global(global) => b.exprs.push(Node::Global(*global)),
        Node::Unary(op, a) => {
            let a = import(b, source, *a, env, memo)?;
            b.exprs.push(Node::Unary(*op, a))
        }
        Node::Binary(op, x, y) => {
            let (x, y) = (import(b, source, *x, env, memo)?, import(b, source, *y, env, memo)?);
            b.exprs.push(Node::Binary(*op, x, y))
        }
        Node::Call(func, args) => {
            let args = args.iter().map(|a| import(b, source, *a, env, memo)).collect::<Result<Vec<_>, _>>()?;
            if *func == Func::Clip {
                let low = b.call(Func::Max, vec![args[0], args[1]]);
                b.call(Func::Min, vec![low, args[2]])
            } else {
                b.call(*func, args)
            }
        }
    };
    memo[id.0 as usize] = Some(out);
    Ok(out)
}

fn apply(
    b: &mut Builder,
    pop: &Population,
    updates: &[Update],
    current: &mut [ExprId],
    ports: &[ExprId],
    spiked: ExprId,
) -> Result<(), GradError> {
    for update in updates {
        let env = Env { vars: current, ports, spiked, surrogate_x: None };
        let value = import(b, &pop.exprs, update.value, &env, &mut Vec::new())?;
        current[update.var.0 as usize] = value;
    }
    Ok(())
}

/// The forward part of a flattened step, before any adjoint is derived.
struct Flat {
    after: Vec<ExprId>,
    spike: ExprId,
    /// The threshold's argument `lhs - rhs`, when the population has a threshold.
    spike_x: Option<ExprId>,
    refractory: ExprId,
    /// Nodes below this index are the forward step.
    forward_len: usize,
}

/// Population `pop`'s step as one graph without its adjoint: what the JIT's forward kernel
/// computes (`after`, `spike`); `d_before` and `d_ports` are empty.
pub fn step_graph(pop: &Population) -> Result<StepGraph, GradError> {
    let mut b = Builder { exprs: Exprs::default() };
    let flat = flatten(&mut b, pop)?;
    Ok(StepGraph { exprs: b.exprs, after: flat.after, spike: flat.spike, d_before: Vec::new(), d_ports: Vec::new() })
}

/// Flattens population `pop`'s step into a graph and derives its adjoint with `surrogate`
/// standing in for the threshold's derivative.
pub fn derive(pop: &Population, surrogate: &Surrogate) -> Result<StepGraph, GradError> {
    let mut b = Builder { exprs: Exprs::default() };
    let Flat { after, spike, spike_x, refractory, forward_len } = flatten(&mut b, pop)?;
    let zero = b.konst(0.0);
    // Seeds: the adjoints coming back from later in time.
    let mut seeds = Vec::new();
    for (v, node) in after.iter().enumerate() {
        seeds.push((*node, b.exprs.push(Node::Global(Global::AdjointAfter(v as u32)))));
    }
    let mut spike_rule = None;
    if let (Some(x), false) = (spike_x, spike == zero) {
        seeds.push((spike, b.exprs.push(Node::Global(Global::AdjointSpike))));
        // The surrogate replaces d spike / d (lhs - rhs); nothing flows while refractory.
        let env = Env { vars: &[], ports: &[], spiked: zero, surrogate_x: Some(x) };
        let slope = import(&mut b, &surrogate.exprs, surrogate.grad, &env, &mut Vec::new())?;
        let slope = b.select(refractory, zero, slope);
        spike_rule = Some(SpikeRule { spike, x, slope });
    }
    let (d_before, d_ports) = sweep(&mut b, forward_len, &seeds, spike_rule, pop.vars.len(), pop.ports.len());
    Ok(StepGraph { exprs: b.exprs, after, spike, d_before, d_ports })
}

/// Builds the forward step of `pop` into `b`, in the order of the step semantics.
fn flatten(b: &mut Builder, pop: &Population) -> Result<Flat, GradError> {
    let before: Vec<ExprId> = (0..pop.vars.len()).map(|v| b.exprs.push(Node::Var(crate::ir::VarId(v as u32)))).collect();
    let ports: Vec<ExprId> = (0..pop.ports.len()).map(|q| b.exprs.push(Node::Port(crate::ir::PortId(q as u32)))).collect();
    // Without a refractory period the flag is always 0 and its selects fold away.
    let refractory = if pop.refractory.is_some() { b.exprs.push(Node::Global(Global::Refractory)) } else { b.konst(0.0) };
    let zero = b.konst(0.0);
    let mut current = before.clone();
    // (3a) input jumps where the port received input; an additive jump (`x += c * input`)
    // every step: adding zero changes nothing, and its derivative with respect to the input
    // is `c` at zero input too.
    for jump in &pop.input_jumps {
        let mut jumped = current.clone();
        apply(b, pop, &jump.updates, &mut jumped, &ports, zero)?;
        if jump.additive {
            current = jumped;
            continue;
        }
        let received = b.compare(BinaryOp::Ne, ports[jump.port.0 as usize], zero);
        for update in &jump.updates {
            let v = update.var.0 as usize;
            current[v] = b.select(received, jumped[v], current[v]);
        }
    }
    // (3b) dynamics, all on the state before integration.
    let snapshot = current.clone();
    let mut memo = Vec::new();
    for (update, _) in &pop.dynamics {
        let env = Env { vars: &snapshot, ports: &ports, spiked: zero, surrogate_x: None };
        current[update.var.0 as usize] = import(b, &pop.exprs, update.value, &env, &mut memo)?;
    }
    // (3c) updates in order.
    apply(b, pop, &pop.updates, &mut current, &ports, zero)?;
    // (3d) threshold unless refractory; reset; hold while refractory.
    let mut spike = zero;
    let mut spike_x = None;
    if let Some(threshold) = &pop.threshold {
        let env = Env { vars: &current, ports: &ports, spiked: zero, surrogate_x: None };
        let mut memo = Vec::new();
        let lhs = import(b, &pop.exprs, threshold.lhs, &env, &mut memo)?;
        let rhs = import(b, &pop.exprs, threshold.rhs, &env, &mut memo)?;
        // Built before the spike so that the sweep reaches it after the spike's adjoint.
        spike_x = Some(b.sub(lhs, rhs));
        let crossed = b.compare(threshold.op, lhs, rhs);
        spike = if b.is(refractory, 0.0) {
            crossed
        } else {
            let open = b.exprs.push(Node::Unary(UnaryOp::Not, refractory));
            b.compare(BinaryOp::And, crossed, open)
        };
    }
    let mut reset = current.clone();
    apply(b, pop, &pop.on_spike, &mut reset, &ports, spike)?;
    let held = pop.held_while_refractory();
    for update in &pop.on_spike {
        let v = update.var.0 as usize;
        current[v] = b.select(spike, reset[v], current[v]);
    }
    for var in held {
        let v = var.0 as usize;
        current[v] = b.select(refractory, before[v], current[v]);
    }
    // (3e) updates after the spike test.
    apply(b, pop, &pop.after_spike, &mut current, &ports, spike)?;
    // Everything the sweep differentiates lies below this index; what follows are adjoints.
    Ok(Flat { after: current, spike, spike_x, refractory, forward_len: b.exprs.nodes.len() })
}

/// The spike's stand-in derivative: d spike = g * slope, sent to the threshold's argument.
pub(super) struct SpikeRule {
    spike: ExprId,
    x: ExprId,
    slope: ExprId,
}

/// Reverse mode over the first `forward_len` nodes of the arena from the `(node, adjoint)`
/// seeds: nodes only refer to earlier ones, so one backward sweep visits every node after all
/// of its uses. Returns the adjoints of the variable and port leaves.
pub(super) fn sweep(
    b: &mut Builder,
    forward_len: usize,
    seeds: &[(ExprId, ExprId)],
    spike_rule: Option<SpikeRule>,
    n_vars: usize,
    n_ports: usize,
) -> (Vec<ExprId>, Vec<ExprId>) {
    let zero = b.konst(0.0);
    let mut adjoint: Vec<Option<ExprId>> = vec![None; forward_len];
    let seed = |b: &mut Builder, adjoint: &mut Vec<Option<ExprId>>, node: ExprId, g: ExprId| {
        let slot = &mut adjoint[node.0 as usize];
        *slot = Some(match *slot {
            Some(existing) => b.add(existing, g),
            None => g,
        });
    };
    for (node, g) in seeds {
        seed(b, &mut adjoint, *node, *g);
    }
    let mut d_vars = vec![None; n_vars];
    let mut d_ports = vec![None; n_ports];
    for index in (0..forward_len).rev() {
        let Some(g) = adjoint[index] else { continue };
        let node = ExprId(index as u32);
        if let Some(rule) = spike_rule.as_ref().filter(|r| r.spike == node) {
            let gx = b.mul(g, rule.slope);
            seed(b, &mut adjoint, rule.x, gx);
            continue;
        }
        match b.exprs.get(node).clone() {
            Node::Var(var) => d_vars[var.0 as usize] = Some(g),
            Node::Port(port) => d_ports[port.0 as usize] = Some(g),
            Node::Const(_) | Node::Global(_) => {}
            Node::Unary(UnaryOp::Neg, a) => {
                let ga = b.neg(g);
                seed(b, &mut adjoint, a, ga);
            }
            Node::Unary(UnaryOp::Not, _) => {}
            Node::Binary(op, x, y) => {
                let (gx, gy) = match op {
                    BinaryOp::Add => (g, g),
                    BinaryOp::Sub => (g, b.neg(g)),
                    BinaryOp::Mul => (b.mul(g, y), b.mul(g, x)),
                    BinaryOp::Div => {
                        let gx = b.div(g, y);
                        let q = b.div(node, y);
                        let gq = b.mul(g, q);
                        (gx, b.neg(gq))
                    }
                    BinaryOp::Pow => {
                        // d/dx x^y = y x^(y-1) (0 where y = 0); d/dy = x^y ln x (0 unless x > 0).
                        let one = b.konst(1.0);
                        let y1 = b.sub(y, one);
                        let power = b.pow(x, y1);
                        let dx = b.mul(y, power);
                        let y_zero = b.compare(BinaryOp::Eq, y, zero);
                        let dx = b.select(y_zero, zero, dx);
                        let ln = b.call(Func::Log, vec![x]);
                        let dy = b.mul(node, ln);
                        let positive = b.compare(BinaryOp::Gt, x, zero);
                        let dy = b.select(positive, dy, zero);
                        (b.mul(g, dx), b.mul(g, dy))
                    }
                    _ => continue,
                };
                seed(b, &mut adjoint, x, gx);
                seed(b, &mut adjoint, y, gy);
            }
            Node::Call(func, args) => {
                if let Some(d) = local_derivative(b, func, node, args[0], zero) {
                    let ga = b.mul(g, d);
                    seed(b, &mut adjoint, args[0], ga);
                    continue;
                }
                match func {
                    Func::Min | Func::Max => {
                        // Rust's min/max: the first operand when it wins or the second is NaN.
                        let op = if func == Func::Min { BinaryOp::Le } else { BinaryOp::Ge };
                        let wins = b.compare(op, args[0], args[1]);
                        let nan = b.compare(BinaryOp::Ne, args[1], args[1]);
                        let first = b.compare(BinaryOp::Or, wins, nan);
                        let (ga, gb) = (b.select(first, g, zero), b.select(first, zero, g));
                        seed(b, &mut adjoint, args[0], ga);
                        seed(b, &mut adjoint, args[1], gb);
                    }
                    Func::Select => {
                        let (ga, gb) = (b.select(args[0], g, zero), b.select(args[0], zero, g));
                        seed(b, &mut adjoint, args[1], ga);
                        seed(b, &mut adjoint, args[2], gb);
                    }
                    Func::Gauss => {
                        let (x, mu, sigma) = (args[0], args[1], args[2]);
                        let d = b.sub(x, mu);
                        let s2 = b.mul(sigma, sigma);
                        let ratio = b.div(d, s2);
                        let slope = b.mul(ratio, node);
                        let gx = b.mul(g, slope);
                        let gx = b.neg(gx);
                        let gmu = b.neg(gx);
                        let d2 = b.mul(d, d);
                        let s3 = b.mul(s2, sigma);
                        let a1 = b.div(d2, s3);
                        let one = b.konst(1.0);
                        let a2 = b.div(one, sigma);
                        let inner = b.sub(a1, a2);
                        let ds = b.mul(node, inner);
                        let gs = b.mul(g, ds);
                        seed(b, &mut adjoint, x, gx);
                        seed(b, &mut adjoint, mu, gmu);
                        seed(b, &mut adjoint, sigma, gs);
                    }
                    // Heaviside is a comparison and detach blocks the gradient; the rest were
                    // handled above or expanded.
                    _ => {}
                }
            }
        }
    }
    (d_vars.into_iter().map(|g| g.unwrap_or(zero)).collect(), d_ports.into_iter().map(|g| g.unwrap_or(zero)).collect())
}

/// d f(a) / d a of the one-argument functions, in terms of `a` and the node's value `out`.
fn local_derivative(b: &mut Builder, func: Func, out: ExprId, a: ExprId, zero: ExprId) -> Option<ExprId> {
    Some(match func {
        Func::Exp => out,
        Func::Log => {
            let one = b.konst(1.0);
            b.div(one, a)
        }
        Func::Sqrt => {
            let half = b.konst(0.5);
            b.div(half, out)
        }
        Func::Abs => {
            let (one, minus) = (b.konst(1.0), b.konst(-1.0));
            let positive = b.compare(BinaryOp::Gt, a, zero);
            let negative = b.compare(BinaryOp::Lt, a, zero);
            let sign = b.select(negative, minus, zero);
            b.select(positive, one, sign)
        }
        Func::Sigmoid => {
            let one = b.konst(1.0);
            let rest = b.sub(one, out);
            b.mul(out, rest)
        }
        Func::Tanh => {
            let one = b.konst(1.0);
            let square = b.mul(out, out);
            b.sub(one, square)
        }
        Func::Sin => b.call(Func::Cos, vec![a]),
        Func::Cos => {
            let sin = b.call(Func::Sin, vec![a]);
            b.neg(sin)
        }
        _ => return None,
    })
}

/// One expression of a population and its derivatives with respect to the population's
/// variables and ports, as IR (for observables read by a loss).
#[derive(Clone, Debug, PartialEq)]
pub struct ExprGradient {
    pub exprs: Exprs,
    pub value: ExprId,
    pub d_vars: Vec<ExprId>,
    pub d_ports: Vec<ExprId>,
}

/// Derives expression `id` of `pop`'s arena with respect to its variables and ports.
pub fn derive_expr(pop: &Population, id: ExprId) -> Result<ExprGradient, GradError> {
    let mut b = Builder { exprs: Exprs::default() };
    let vars: Vec<ExprId> = (0..pop.vars.len()).map(|v| b.exprs.push(Node::Var(crate::ir::VarId(v as u32)))).collect();
    let ports: Vec<ExprId> = (0..pop.ports.len()).map(|q| b.exprs.push(Node::Port(crate::ir::PortId(q as u32)))).collect();
    let zero = b.konst(0.0);
    let env = Env { vars: &vars, ports: &ports, spiked: zero, surrogate_x: None };
    let value = import(&mut b, &pop.exprs, id, &env, &mut Vec::new())?;
    let one = b.konst(1.0);
    let (d_vars, d_ports) = sweep(&mut b, value.0 as usize + 1, &[(value, one)], None, pop.vars.len(), pop.ports.len());
    Ok(ExprGradient { exprs: b.exprs, value, d_vars, d_ports })
}

impl StepGraph {
    /// The derived step as text: the state after the step, the spike, and the adjoints.
    pub fn text(&self, pop: &Population) -> String {
        let names = |v: crate::ir::VarId| pop.vars[v.0 as usize].name.clone();
        let ports = |q: crate::ir::PortId| format!("in.{}", pop.ports[q.0 as usize]);
        let show = |id: ExprId| self.exprs.display(id, &names, &ports);
        let mut out = String::new();
        for (v, id) in self.after.iter().enumerate() {
            out.push_str(&format!("  {}' = {}\n", pop.vars[v].name, show(*id)));
        }
        out.push_str(&format!("  spike = {}\n", show(self.spike)));
        for (v, id) in self.d_before.iter().enumerate() {
            out.push_str(&format!("  d {} = {}\n", pop.vars[v].name, show(*id)));
        }
        for (q, id) in self.d_ports.iter().enumerate() {
            out.push_str(&format!("  d in.{} = {}\n", pop.ports[q], show(*id)));
        }
        out
    }
}

/// Whether population `pop`'s derived backward step reads the adjoint of its spike only where
/// the neuron spiked: the surrogate is `select(x >= 0, .., 0)` or `select(x > 0, .., 0)`
/// (`straight_through_above`) and the threshold fires wherever it is not zero, so elsewhere the
/// adjoint is multiplied by zero (every path from a spike's adjoint into the state goes through
/// the threshold's derivative). Gradients into such a population's spikes need only be
/// computed at its spikes.
pub fn spike_gated(pop: &Population, surrogate: &Surrogate) -> bool {
    let Some(threshold) = &pop.threshold else { return false };
    let exprs = &surrogate.exprs;
    let Node::Call(Func::Select, args) = exprs.get(surrogate.grad) else { return false };
    let [condition, _, otherwise] = args[..] else { return false };
    let Node::Binary(op, a, b) = exprs.get(condition) else { return false };
    let reads_x = *exprs.get(*a) == Node::Global(Global::SurrogateX) && exprs.constant(*b) == Some(0.0);
    let fires_there = *op == BinaryOp::Gt || (*op == BinaryOp::Ge && threshold.op == BinaryOp::Ge);
    exprs.constant(otherwise) == Some(0.0) && reads_x && fires_there
}
