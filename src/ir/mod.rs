//! The IR: one validated module per model, consumed by every back end and learning method.
//!
//! Architecture invariants:
//! - The IR has no spans and no units. Every constant is in SI (seconds, volts, amperes, ...);
//!   units were checked and folded during lowering. Spans live in [`crate::lower::SourceMap`].
//! - Expressions live in per-owner arenas ([`Exprs`]); a node only refers to nodes created
//!   before it, so arena order is a valid evaluation order and reverse-mode differentiation is
//!   the same loop run backwards.
//! - Every `match` over [`Node`], [`Func`] and friends is exhaustive.
//!
//! Semantics of one time step `t` (identical on every back end):
//! 1. encoders emit input events or currents;
//! 2. projections deliver `W s_pre` to their target ports: feed-forward edges use spikes of step
//!    `t`, feedback edges spikes of step `t - 1`, an edge with a `delay` of d steps the values
//!    of step `t - d`;
//! 3. each population, in declaration order: applies input jumps (`on port`), integrates its
//!    continuous dynamics over `dt` (all right-hand sides read the state before the step),
//!    runs its `update` blocks in order, tests its threshold (not while refractory), applies its
//!    spike jumps, runs its `update after spike` blocks, counts refractory time down; while
//!    refractory, the variables its spike resets to a value are held
//!    ([`Population::held_while_refractory`]);
//! 4. readouts and records sample the state.

mod dump;
pub mod eventprop;
pub mod grad;
pub mod hoist;
pub mod train;
pub mod validate;

use std::fmt::{self, Write};

pub use crate::front::ast::{BinaryOp, UnaryOp};

/// Handle of an expression node in its owner's [`Exprs`] arena; displays as `e3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ExprId(pub u32);

/// Handle of a variable (state or parameter) of a population or synapse; displays as `x2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VarId(pub u32);

/// Handle of an input port of a population.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PopId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct InputId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProjId(pub u32);

/// Values every expression may read besides its owner's variables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Global {
    /// The step length in seconds.
    Dt,
    /// Time since the start of the sample, in seconds.
    Time,
    /// 1 if the neuron spiked in this step (after the threshold test), else 0.
    Spiked,
    /// A fresh uniform draw in [0, 1) per step and neuron, from the counter-based RNG.
    Rand,
    /// A uniform draw in [0, 1) per sample and neuron, the same at every step (noise added to
    /// an image once, seeds/004).
    SampleRand,
    /// The data value for this neuron (the sample's feature at the neuron's index).
    Data,
    /// A network parameter, by index into [`Module::params`].
    NetParam(u32),
    /// The surrogate's argument: threshold-test left side minus right side.
    SurrogateX,
    /// In a derived backward step ([`crate::ir::grad`]): 1 while the neuron is refractory.
    Refractory,
    /// In a derived backward step: d loss / d (variable after the step), by variable index.
    AdjointAfter(u32),
    /// In a derived backward step: d loss / d (spike of the step).
    AdjointSpike,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Func {
    Exp,
    Log,
    Sqrt,
    Abs,
    Sigmoid,
    Tanh,
    Sin,
    Cos,
    Min,
    Max,
    /// clip(x, lo, hi)
    Clip,
    /// select(condition, a, b)
    Select,
    /// gauss(x, mu, sigma): the normal density.
    Gauss,
    Heaviside,
    /// detach(x): the value of `x` with no derivative (a reset that does not carry gradient,
    /// as in snnTorch's `Leaky`).
    Detach,
}

impl Func {
    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Log => "log",
            Func::Sqrt => "sqrt",
            Func::Abs => "abs",
            Func::Sigmoid => "sigmoid",
            Func::Tanh => "tanh",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Min => "min",
            Func::Max => "max",
            Func::Clip => "clip",
            Func::Select => "select",
            Func::Gauss => "gauss",
            Func::Heaviside => "heaviside",
            Func::Detach => "detach",
        }
    }

    pub fn arity(self) -> usize {
        match self {
            Func::Exp
            | Func::Log
            | Func::Sqrt
            | Func::Abs
            | Func::Sigmoid
            | Func::Tanh
            | Func::Sin
            | Func::Cos
            | Func::Heaviside
            | Func::Detach => 1,
            Func::Min | Func::Max => 2,
            Func::Clip | Func::Select | Func::Gauss => 3,
        }
    }

    pub const ALL: [Func; 15] = [
        Func::Exp,
        Func::Log,
        Func::Sqrt,
        Func::Abs,
        Func::Sigmoid,
        Func::Tanh,
        Func::Sin,
        Func::Cos,
        Func::Min,
        Func::Max,
        Func::Clip,
        Func::Select,
        Func::Gauss,
        Func::Heaviside,
        Func::Detach,
    ];
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Const(f64),
    Var(VarId),
    Port(PortId),
    Global(Global),
    Unary(UnaryOp, ExprId),
    Binary(BinaryOp, ExprId, ExprId),
    Call(Func, Vec<ExprId>),
}

/// An expression arena.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exprs {
    pub nodes: Vec<Node>,
}

impl Exprs {
    pub fn push(&mut self, node: Node) -> ExprId {
        // Fold constants as they are built so that dumps and kernels stay small.
        let folded = match &node {
            Node::Unary(UnaryOp::Neg, a) => self.constant(*a).map(|a| -a),
            Node::Binary(op, a, b) => match (self.constant(*a), self.constant(*b)) {
                (Some(a), Some(b)) => eval_binary(*op, a, b),
                _ => None,
            },
            Node::Call(func, args) if *func != Func::Select || args.len() == 3 => {
                let values: Option<Vec<f64>> = args.iter().map(|a| self.constant(*a)).collect();
                values.and_then(|v| eval_func(*func, &v))
            }
            _ => None,
        };
        let node = folded.map_or(node, Node::Const);
        // Identical nodes are shared, except random draws: each `rand()` is its own draw.
        if !matches!(node, Node::Global(Global::Rand | Global::SampleRand))
            && let Some(existing) = self.nodes.iter().rposition(|n| *n == node)
        {
            return ExprId(existing as u32);
        }
        self.nodes.push(node);
        ExprId(self.nodes.len() as u32 - 1)
    }

    pub fn get(&self, id: ExprId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    pub fn constant(&self, id: ExprId) -> Option<f64> {
        match self.get(id) {
            Node::Const(value) => Some(*value),
            _ => None,
        }
    }

    /// The value of an expression that reads only constants, `dt` and network parameters
    /// (refractory periods, encoder settings); NaN where it reads anything else.
    pub fn eval_constant(&self, id: ExprId, dt: f64, net: &[f64]) -> f64 {
        self.eval_with(id, &|global| match global {
            Global::Dt => dt,
            Global::NetParam(index) => net.get(index as usize).copied().unwrap_or(f64::NAN),
            _ => f64::NAN,
        })
    }

    /// Evaluates an expression with the globals' values given by `global` (NaN for one that
    /// has none); variables and ports read NaN.
    pub fn eval_with(&self, id: ExprId, global: &dyn Fn(Global) -> f64) -> f64 {
        match self.get(id) {
            Node::Const(value) => *value,
            Node::Global(g) => global(*g),
            Node::Var(_) | Node::Port(_) => f64::NAN,
            Node::Unary(UnaryOp::Neg, a) => -self.eval_with(*a, global),
            Node::Unary(UnaryOp::Not, a) => f64::from(u8::from(self.eval_with(*a, global) == 0.0)),
            Node::Binary(op, a, b) => eval_binary(*op, self.eval_with(*a, global), self.eval_with(*b, global)).unwrap_or(f64::NAN),
            Node::Call(func, args) => {
                let values: Vec<f64> = args.iter().map(|a| self.eval_with(*a, global)).collect();
                eval_func(*func, &values).unwrap_or(f64::NAN)
            }
        }
    }

    /// Whether the expression reads any of the variables for which `is_state` holds.
    pub fn reads(&self, id: ExprId, is_state: &dyn Fn(VarId) -> bool) -> bool {
        match self.get(id) {
            Node::Const(_) | Node::Port(_) | Node::Global(_) => false,
            Node::Var(var) => is_state(*var),
            Node::Unary(_, a) => self.reads(*a, is_state),
            Node::Binary(_, a, b) => self.reads(*a, is_state) || self.reads(*b, is_state),
            Node::Call(_, args) => args.iter().any(|a| self.reads(*a, is_state)),
        }
    }

    /// Whether the expression calls `func` anywhere.
    pub fn calls(&self, id: ExprId, func: Func) -> bool {
        match self.get(id) {
            Node::Const(_) | Node::Var(_) | Node::Port(_) | Node::Global(_) => false,
            Node::Unary(_, a) => self.calls(*a, func),
            Node::Binary(_, a, b) => self.calls(*a, func) || self.calls(*b, func),
            Node::Call(f, args) => *f == func || args.iter().any(|a| self.calls(*a, func)),
        }
    }

    /// Whether the expression reads input port `port`.
    pub fn reads_port(&self, id: ExprId, port: PortId) -> bool {
        match self.get(id) {
            Node::Const(_) | Node::Var(_) | Node::Global(_) => false,
            Node::Port(p) => *p == port,
            Node::Unary(_, a) => self.reads_port(*a, port),
            Node::Binary(_, a, b) => self.reads_port(*a, port) || self.reads_port(*b, port),
            Node::Call(_, args) => args.iter().any(|a| self.reads_port(*a, port)),
        }
    }

    /// Whether the expression reads a global for which `pred` holds.
    pub fn reads_global(&self, id: ExprId, pred: &dyn Fn(Global) -> bool) -> bool {
        match self.get(id) {
            Node::Const(_) | Node::Var(_) | Node::Port(_) => false,
            Node::Global(global) => pred(*global),
            Node::Unary(_, a) => self.reads_global(*a, pred),
            Node::Binary(_, a, b) => self.reads_global(*a, pred) || self.reads_global(*b, pred),
            Node::Call(_, args) => args.iter().any(|a| self.reads_global(*a, pred)),
        }
    }

    /// Infix text of an expression, fully parenthesised where needed; `name` prints variables.
    pub fn display(&self, id: ExprId, names: &dyn Fn(VarId) -> String, ports: &dyn Fn(PortId) -> String) -> String {
        let mut out = String::new();
        self.write(&mut out, id, names, ports, 0);
        out
    }

    fn write(&self, out: &mut String, id: ExprId, names: &dyn Fn(VarId) -> String, ports: &dyn Fn(PortId) -> String, parent: u8) {
        match self.get(id) {
            Node::Const(value) => {
                if *value < 0.0 && parent > 0 {
                    let _ = write!(out, "({})", fmt_f64(*value));
                } else {
                    out.push_str(&fmt_f64(*value));
                }
            }
            Node::Var(var) => out.push_str(&names(*var)),
            Node::Port(port) => out.push_str(&ports(*port)),
            Node::Global(global) => out.push_str(&global_name(*global)),
            Node::Unary(op, a) => {
                out.push_str(match op {
                    UnaryOp::Neg => "-",
                    UnaryOp::Not => "not ",
                });
                self.write(out, *a, names, ports, 6);
            }
            Node::Binary(op, a, b) => {
                let precedence = op.precedence();
                let open = precedence < parent;
                if open {
                    out.push('(');
                }
                self.write(out, *a, names, ports, precedence);
                let _ = write!(out, " {} ", op.symbol());
                self.write(out, *b, names, ports, precedence + 1);
                if open {
                    out.push(')');
                }
            }
            Node::Call(func, args) => {
                out.push_str(func.name());
                out.push('(');
                for (i, arg) in args.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.write(out, *arg, names, ports, 0);
                }
                out.push(')');
            }
        }
    }
}

pub fn global_name(global: Global) -> String {
    match global {
        Global::Dt => "dt".to_string(),
        Global::Time => "t".to_string(),
        Global::Spiked => "spiked".to_string(),
        Global::Rand => "rand()".to_string(),
        Global::SampleRand => "rand_per_sample()".to_string(),
        Global::Data => "data".to_string(),
        Global::NetParam(index) => format!("net.p{index}"),
        Global::SurrogateX => "x".to_string(),
        Global::Refractory => "refractory".to_string(),
        Global::AdjointAfter(v) => format!("d_after[{v}]"),
        Global::AdjointSpike => "d_spike".to_string(),
    }
}

/// A binary operation on two values, in any float type: constant folding runs it in f64, the
/// oracle in the precision it is instantiated with. Comparisons give 1 or 0.
pub fn eval_binary<F: num_traits::Float>(op: BinaryOp, a: F, b: F) -> Option<F> {
    let truth = |c: bool| if c { F::one() } else { F::zero() };
    let zero = F::zero();
    Some(match op {
        BinaryOp::Or => truth(a != zero || b != zero),
        BinaryOp::And => truth(a != zero && b != zero),
        BinaryOp::Ge => truth(a >= b),
        BinaryOp::Le => truth(a <= b),
        BinaryOp::Eq => truth(a == b),
        BinaryOp::Ne => truth(a != b),
        BinaryOp::Gt => truth(a > b),
        BinaryOp::Lt => truth(a < b),
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        // Squares are common (surrogates, losses) and much cheaper than powf.
        BinaryOp::Pow if b == F::one() + F::one() => a * a,
        BinaryOp::Pow => a.powf(b),
    })
}

/// The constants of [`exp`] for a float of `bytes` bytes: the range in which its result is a
/// normal number (below: 0, above: infinity), the rounding shifter `1.5 * 2^m` (m the mantissa
/// bits), ln 2 in two parts (Cody & Waite: `k ln2_hi` is exact), and the Taylor coefficients
/// `1 / n!` of `e^r` on `|r| <= ln 2 / 2`, to degree 7 (f32) or 13 (f64), whose truncation error
/// is below half a unit in the last place.
pub struct ExpConstants {
    pub lo: f64,
    pub hi: f64,
    pub shifter: f64,
    /// Mantissa bits: the shift that moves `k` into the exponent field.
    pub mantissa: u8,
    pub ln2_hi: f64,
    pub ln2_lo: f64,
    pub coefficients: &'static [f64],
}

const TAYLOR: [f64; 14] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5_040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
    1.0 / 6_227_020_800.0,
];

impl ExpConstants {
    pub fn of_bytes(bytes: usize) -> ExpConstants {
        if bytes == 4 {
            ExpConstants {
                lo: -87.0,
                hi: 88.0,
                shifter: 1.5 * 8_388_608.0,
                mantissa: 23,
                ln2_hi: 0.693_359_375,
                ln2_lo: -2.121_944_400_546_905_8e-4,
                coefficients: &TAYLOR[..8],
            }
        } else {
            ExpConstants {
                lo: -708.0,
                hi: 709.0,
                shifter: 1.5 * 4_503_599_627_370_496.0,
                mantissa: 52,
                ln2_hi: 6.931_471_803_691_238e-1,
                ln2_lo: 1.908_214_929_270_587_7e-10,
                coefficients: &TAYLOR,
            }
        }
    }
}

/// `e^x` as every engine computes it: the oracle here, the JIT inline in its vector lanes, the
/// same operations in the same order (no fused multiply-add), so that the engines agree bit for
/// bit without a call per lane. `k = round(x / ln 2)` by the shifter, `r = x - k ln 2` in two
/// parts, `e^r` by Horner, times `2^k` (the JIT adds `k` to the exponent bits: the same, since
/// the result is normal on `[lo, hi]`). Within about a unit in the last place of the libm
/// value; 0 below `lo` (-87 in f32, -708 in f64, where the result would be subnormal) and
/// infinity above `hi` (88, 709), NaN for NaN.
pub fn exp<F: num_traits::Float>(x: F) -> F {
    let c = ExpConstants::of_bytes(std::mem::size_of::<F>());
    let of = |v: f64| F::from(v).unwrap_or_else(F::nan);
    if x.is_nan() {
        return x;
    }
    if x > of(c.hi) {
        return F::infinity();
    }
    if x < of(c.lo) {
        return F::zero();
    }
    let shifter = of(c.shifter);
    let t = x * of(std::f64::consts::LOG2_E) + shifter;
    let k = t - shifter;
    let r = x - k * of(c.ln2_hi) - k * of(c.ln2_lo);
    let mut p = of(c.coefficients[c.coefficients.len() - 1]);
    for coefficient in c.coefficients.iter().rev().skip(1) {
        p = p * r + of(*coefficient);
    }
    p * (F::one() + F::one()).powi(k.to_i32().unwrap_or(0))
}

/// `1 / (1 + e^-x)`: [`eval_func`]'s sigmoid, which the JIT emits with the same operations.
pub fn sigmoid<F: num_traits::Float>(x: F) -> F {
    F::one() / (F::one() + exp(-x))
}

/// The normal density with mean `mu` and standard deviation `sigma` at `x`: [`eval_func`]'s
/// `gauss`, which the JIT emits with the same operations.
pub fn gauss<F: num_traits::Float>(x: F, mu: F, sigma: F) -> F {
    let two = F::one() + F::one();
    let root_tau = F::from(std::f64::consts::TAU.sqrt()).unwrap_or_else(F::nan);
    let d = x - mu;
    exp(-(d * d) / (two * sigma * sigma)) / (sigma * root_tau)
}

/// A built-in function of the neuron language, in any float type (see [`eval_binary`]); the
/// JIT's host calls run exactly this.
pub fn eval_func<F: num_traits::Float>(func: Func, args: &[F]) -> Option<F> {
    let arg = |i: usize| args.get(i).copied();
    let (zero, one) = (F::zero(), F::one());
    Some(match func {
        Func::Exp => exp(arg(0)?),
        Func::Log => arg(0)?.ln(),
        Func::Sqrt => arg(0)?.sqrt(),
        Func::Abs => arg(0)?.abs(),
        Func::Sigmoid => sigmoid(arg(0)?),
        Func::Tanh => arg(0)?.tanh(),
        Func::Sin => arg(0)?.sin(),
        Func::Cos => arg(0)?.cos(),
        Func::Min => arg(0)?.min(arg(1)?),
        Func::Max => arg(0)?.max(arg(1)?),
        Func::Clip => arg(0)?.max(arg(1)?).min(arg(2)?),
        Func::Select => {
            if arg(0)? != zero {
                arg(1)?
            } else {
                arg(2)?
            }
        }
        Func::Gauss => gauss(arg(0)?, arg(1)?, arg(2)?),
        Func::Heaviside => {
            if arg(0)? > zero {
                one
            } else {
                zero
            }
        }
        Func::Detach => arg(0)?,
    })
}

/// Shortest text that reads back as the same f64.
pub fn fmt_f64(value: f64) -> String {
    if value == value.trunc() && value.abs() < 1e15 {
        format!("{value:.1}").trim_end_matches(".0").to_string()
    } else {
        format!("{value:?}")
    }
}

/// How a variable starts: per neuron (or per synapse) at the start of each sample for states,
/// once at model creation for parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Init {
    Const(f64),
    Uniform {
        low: f64,
        high: f64,
    },
    Normal {
        mean: f64,
        std: f64,
    },
    /// Kaiming normal: N(0, sqrt(2 / fan_in)).
    KaimingNormal,
    /// Xavier (Glorot) uniform: U(-a, a), a = sqrt(6 / (fan_in + fan_out)).
    XavierUniform,
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Const(value) => f.write_str(&fmt_f64(*value)),
            Init::Uniform { low, high } => write!(f, "uniform({}, {})", fmt_f64(*low), fmt_f64(*high)),
            Init::Normal { mean, std } => write!(f, "normal({}, {})", fmt_f64(*mean), fmt_f64(*std)),
            Init::KaimingNormal => f.write_str("kaiming_normal()"),
            Init::XavierUniform => f.write_str("xavier_uniform()"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum VarKind {
    /// A state: restarts at `init` for every sample unless `persistent` (then it is carried
    /// from one sample to the next, its values kept with the parameters); held at its value
    /// during evaluation when `frozen_in_eval`.
    State { init: Init, persistent: bool, frozen_in_eval: bool },
    Param {
        value: Init,
        trainable: bool,
        per_neuron: bool,
        /// The SI value of one of the declared unit (1e-3 for `ms`): a trainable parameter is
        /// optimised in that unit, so that a learning rate means the same for `tau: ms = 15 ms`
        /// as for a dimensionless 15.
        scale: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Var {
    /// Qualified by compartment: `soma.s`.
    pub name: String,
    pub kind: VarKind,
}

/// `var <- value`; all right-hand sides of one list are evaluated before any write when the
/// list is simultaneous (continuous dynamics), in order otherwise.
#[derive(Clone, Debug, PartialEq)]
pub struct Update {
    pub var: VarId,
    pub value: ExprId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Integration {
    /// A written per-step update.
    Discrete,
    /// Linear dynamics, integrated exactly (exp(-dt/tau) propagators).
    Exact,
    /// Linear dynamics coupled to states that are not pure decays: exponential Euler (the
    /// other states held over the step).
    ExponentialEuler,
    /// Non-linear dynamics, forward Euler.
    Euler,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputJump {
    pub port: PortId,
    pub updates: Vec<Update>,
    /// Every update is `x <- x + c * port` with `c` free of state: EventProp can use it.
    pub additive: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Threshold {
    pub lhs: ExprId,
    pub rhs: ExprId,
    /// `>` or `>=`.
    pub op: BinaryOp,
}

/// A population of identical neurons: a hybrid system.
#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    pub name: String,
    pub shape: Vec<usize>,
    pub neuron: String,
    pub vars: Vec<Var>,
    pub ports: Vec<String>,
    pub exprs: Exprs,
    pub input_jumps: Vec<InputJump>,
    /// Continuous dynamics, discretised; simultaneous.
    pub dynamics: Vec<(Update, Integration)>,
    /// The continuous right-hand sides the dynamics were discretised from: `d var / dt = rhs`
    /// in SI units per second, in `exprs` (EventProp's adjoint and spike-time search need them).
    pub odes: Vec<(VarId, ExprId)>,
    /// `update { }` blocks, sequential.
    pub updates: Vec<Update>,
    pub threshold: Option<Threshold>,
    pub on_spike: Vec<Update>,
    pub after_spike: Vec<Update>,
    /// Refractory period in seconds.
    pub refractory: Option<ExprId>,
    pub observables: Vec<(String, ExprId)>,
}

impl Population {
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }

    /// The variables held at their value while the neuron is refractory: those its spike
    /// resets to a value that does not read them (`v = v_reset`, `v -= threshold` reads `v` and
    /// is not a reset to a value). Increments such as an adaptive threshold's `theta +=
    /// theta_plus` keep following their dynamics (Diehl & Cook clamp only the membrane).
    pub fn held_while_refractory(&self) -> Vec<VarId> {
        self.on_spike
            .iter()
            .filter(|update| {
                let var = update.var;
                !self.exprs.reads(update.value, &|v| v == var)
            })
            .map(|update| update.var)
            .collect()
    }

    pub fn var_by_name(&self, name: &str) -> Option<VarId> {
        self.vars.iter().position(|v| v.name == name).map(|i| VarId(i as u32))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderKind {
    /// Emits a spike in every step where the condition holds.
    SpikeWhen,
    /// Emits one spike at the given time.
    SpikeAt,
    /// Drives its targets with this value as a current at every step.
    Current,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    pub name: String,
    pub shape: Vec<usize>,
    pub encoder: String,
    pub kind: EncoderKind,
    pub exprs: Exprs,
    pub value: ExprId,
    /// Reads `events`: the data value of element `i` in step `t` is the sample's feature
    /// `t * size + i` (an event sample's bin of that step), not feature `i`.
    pub per_step: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Input(InputId),
    /// The population's spikes.
    Population(PopId),
    /// A state variable the population carries (`connect out.u -> ...`), read after the
    /// source's step: the same step for a source declared before its target, `delay` steps
    /// back otherwise (feedback reads the state before the target's step).
    State(StateSource),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StateSource {
    pub pop: PopId,
    pub var: VarId,
    /// Each sample's vector divided by its Euclidean norm (`l2_normalize(p.var)`; PyTorch's
    /// `F.normalize`, with the norm floored at [`L2_NORM_FLOOR`]).
    pub l2_normalize: bool,
}

/// The smallest norm `l2_normalize` divides by (PyTorch's `eps`): a zero vector stays zero.
pub const L2_NORM_FLOOR: f64 = 1e-12;

#[derive(Clone, Debug, PartialEq)]
pub enum Connectivity {
    Dense,
    OneToOne,
    AllToAllButSelf,
    /// A 2-d convolution of `[channels, height, width]` shapes; weights
    /// `[out_channels, in_channels / groups, kernel_h, kernel_w]` (PyTorch's `Conv2d`). A 1-d
    /// convolution (`conv1d`) is the case of height 1: `[channels, length]` shapes, weights
    /// `[out_channels, in_channels / groups, kernel]` (PyTorch's `Conv1d`), the same numbers in
    /// the same order.
    Conv2d(Conv),
    /// Its transpose (the adjoint of the convolution from target to source); weights
    /// `[in_channels, out_channels / groups, kernel_h, kernel_w]` (PyTorch's
    /// `ConvTranspose2d`; `ConvTranspose1d` for `[channels, length]` shapes).
    ConvTranspose2d(Conv),
    /// Pooling over windows of each channel, times the connection's one weight (over a length
    /// for `[channels, length]` shapes).
    Pool2d(Pool),
}

/// A size per spatial axis, rows (height) first, then columns (width). A 1-d connection's
/// length is the columns, with one row: kernel `[1, k]`, padding `[0, p]`.
pub type Hw = [usize; 2];

/// What a pooling connection takes of each window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Sum,
    /// The mean over the whole window, padding included (PyTorch's default).
    Avg,
    /// The maximum; padding never wins.
    Max,
}

/// A pooling connection's settings.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub kind: PoolKind,
    pub kernel: Hw,
    pub stride: Hw,
    pub padding: Hw,
}

/// The settings of a (transposed) convolution, as PyTorch names them, per axis.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub kernel: Hw,
    pub stride: Hw,
    pub padding: Hw,
    pub dilation: Hw,
    pub groups: usize,
    /// Extra rows and columns at the far edge of a transposed convolution's output; 0 for a
    /// convolution.
    pub output_padding: Hw,
}

impl Conv {
    /// The same settings along both axes (`conv2d(kernel = 5, ...)`).
    pub fn square(kernel: usize, stride: usize, padding: usize, dilation: usize, groups: usize) -> Conv {
        Conv { kernel: [kernel; 2], stride: [stride; 2], padding: [padding; 2], dilation: [dilation; 2], groups, output_padding: [0; 2] }
    }

    /// The taps of one kernel.
    pub fn taps(&self) -> usize {
        self.kernel[0] * self.kernel[1]
    }
}

/// One number where both axes agree, `[rows, columns]` otherwise (as the IR dump shows sizes).
struct HwText(Hw);

impl fmt::Display for HwText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [a, b] if a == b => write!(f, "{a}"),
            [a, b] => write!(f, "[{a}, {b}]"),
        }
    }
}

/// Kernel, stride and padding, then the settings that differ from their defaults.
impl fmt::Debug for Conv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Conv {{ kernel: {}, stride: {}, padding: {}", HwText(self.kernel), HwText(self.stride), HwText(self.padding))?;
        if self.dilation != [1; 2] {
            write!(f, ", dilation: {}", HwText(self.dilation))?;
        }
        if self.groups != 1 {
            write!(f, ", groups: {}", self.groups)?;
        }
        if self.output_padding != [0; 2] {
            write!(f, ", output_padding: {}", HwText(self.output_padding))?;
        }
        f.write_str(" }")
    }
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Pool {{ kind: {:?}, kernel: {}, stride: {}, padding: {} }}",
            self.kind,
            HwText(self.kernel),
            HwText(self.stride),
            HwText(self.padding)
        )
    }
}

/// A plastic synapse model attached to a projection.
#[derive(Clone, Debug, PartialEq)]
pub struct SynapseModel {
    pub name: String,
    pub vars: Vec<Var>,
    /// Trace names with their time constants in seconds.
    pub traces: Vec<(String, f64)>,
    pub conductance: bool,
    pub exprs: Exprs,
    /// Variables are the synapse's; traces follow its vars in numbering.
    pub on_pre: Vec<Update>,
    pub on_post: Vec<Update>,
    pub delivers: Option<ExprId>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Projection {
    pub source: Source,
    pub target: PopId,
    pub port: PortId,
    pub connectivity: Connectivity,
    pub init: Init,
    pub trainable: bool,
    pub feedback: bool,
    /// Delay in whole steps (feedback edges have at least one).
    pub delay_steps: usize,
    pub synapse: Option<SynapseModel>,
    /// Weights held by the projection (dense: pre x post; conv: out_c x in_c x k x k; `[1]`
    /// for a fixed one-to-one or all-to-all-but-self connection of one constant weight, which
    /// every pair shares: see [`Projection::shares_one_weight`]).
    pub weight_shape: Vec<usize>,
}

impl Projection {
    /// Whether one stored weight serves every pair: a one-to-one or all-to-all-but-self
    /// connection with a constant `weight` that does not train. Diehl & Cook's lateral
    /// inhibition at 6,400 neurons is 41 M pairs of one value: stored dense it would be 164 MB.
    pub fn shares_one_weight(&self) -> bool {
        matches!(self.connectivity, Connectivity::OneToOne | Connectivity::AllToAllButSelf) && self.weight_shape == [1]
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub network: String,
    /// Seconds.
    pub dt: f64,
    pub steps: usize,
    /// Steps of rest with no input after each sample (Diehl & Cook).
    pub rest_steps: usize,
    pub params: Vec<(String, f64)>,
    pub inputs: Vec<Input>,
    pub populations: Vec<Population>,
    pub projections: Vec<Projection>,
    pub train: Option<crate::ir::train::Train>,
}

impl Input {
    /// A current that is the same at every step of a sample (repeat encoding): its projections
    /// can be computed once per sample.
    pub fn is_constant_over_time(&self) -> bool {
        self.kind == EncoderKind::Current
            && !self.per_step
            && !self.exprs.reads_global(self.value, &|g| matches!(g, Global::Rand | Global::Time))
    }
}

impl Module {
    /// Population `pop`'s refractory period in whole steps for the network parameters `net`.
    pub fn refractory_steps(&self, pop: &Population, net: &[f64]) -> u32 {
        pop.refractory.map_or(0, |id| (pop.exprs.eval_constant(id, self.dt, net) / self.dt).round().max(0.0) as u32)
    }

    /// The module as it runs during evaluation: states marked `frozen in eval` are held at
    /// their values (every update of them, continuous or on an event, is dropped).
    pub fn for_evaluation(&self) -> Module {
        let mut module = self.clone();
        for pop in &mut module.populations {
            let frozen: Vec<VarId> = pop
                .vars
                .iter()
                .enumerate()
                .filter(|(_, v)| matches!(v.kind, VarKind::State { frozen_in_eval: true, .. }))
                .map(|(i, _)| VarId(i as u32))
                .collect();
            if frozen.is_empty() {
                continue;
            }
            let kept = |update: &Update| !frozen.contains(&update.var);
            pop.dynamics.retain(|(update, _)| kept(update));
            pop.updates.retain(kept);
            pop.on_spike.retain(kept);
            pop.after_spike.retain(kept);
            for jump in &mut pop.input_jumps {
                jump.updates.retain(kept);
            }
        }
        module
    }

    /// Whether any state is marked `frozen in eval`.
    pub fn has_frozen_states(&self) -> bool {
        self.populations.iter().flat_map(|p| &p.vars).any(|v| matches!(v.kind, VarKind::State { frozen_in_eval: true, .. }))
    }

    /// Whether any state is `persistent`: samples then run one after another, each starting
    /// where the previous one ended.
    pub fn has_persistent_states(&self) -> bool {
        self.populations.iter().flat_map(|p| &p.vars).any(|v| matches!(v.kind, VarKind::State { persistent: true, .. }))
    }

    /// The network parameters' values as the module states them.
    pub fn net_values(&self) -> Vec<f64> {
        self.params.iter().map(|(_, v)| *v).collect()
    }

    pub fn population(&self, id: PopId) -> &Population {
        &self.populations[id.0 as usize]
    }

    pub fn source_name(&self, source: &Source) -> &str {
        match source {
            Source::Input(id) => &self.inputs[id.0 as usize].name,
            Source::Population(id) | Source::State(StateSource { pop: id, .. }) => &self.populations[id.0 as usize].name,
        }
    }

    /// The source as a connection writes it: `pixels`, `out.u` or `l2_normalize(out.u)`.
    pub fn source_label(&self, source: &Source) -> String {
        match source {
            Source::State(s) => {
                let pop = self.population(s.pop);
                let state = format!("{}.{}", pop.name, pop.vars[s.var.0 as usize].name);
                if s.l2_normalize { format!("l2_normalize({state})") } else { state }
            }
            _ => self.source_name(source).to_string(),
        }
    }

    /// The population a projection reads spikes or a state of.
    pub fn source_population(source: &Source) -> Option<PopId> {
        match source {
            Source::Input(_) => None,
            Source::Population(q) | Source::State(StateSource { pop: q, .. }) => Some(*q),
        }
    }

    /// Whether every projection reads a population declared before its target (delays
    /// allowed). Such a network runs population by population over all steps, so that each
    /// projection becomes one GEMM over every step's rows.
    pub fn is_feed_forward(&self) -> bool {
        self.projections.iter().all(|proj| Module::source_population(&proj.source).is_none_or(|q| q.0 < proj.target.0))
    }

    /// How many steps back projection `proj` reads its source: its delay for inputs and
    /// feed-forward edges (usually 0), at least 1 for feedback (a source not declared before
    /// its target).
    pub fn source_delay(&self, proj: &Projection) -> usize {
        match Module::source_population(&proj.source) {
            None => proj.delay_steps,
            Some(q) if proj.delay_steps == 0 && q.0 < proj.target.0 => 0,
            Some(_) => proj.delay_steps.max(1),
        }
    }

    /// The most steps back any projection reads its source: what a pass that keeps only recent
    /// steps must keep besides the current one.
    pub fn longest_delay(&self) -> usize {
        self.projections.iter().map(|proj| self.source_delay(proj)).max().unwrap_or(0)
    }

    /// The trace row of states that projection `proj` (a state source) reads at `step`: the
    /// state after step `step - delay`, row 0 being the initial state. `None` before it exists.
    pub fn state_source_row(&self, proj: &Projection, step: usize) -> Option<usize> {
        (step + 1).checked_sub(self.source_delay(proj))
    }

    /// Whether the source of `proj` only ever emits 0 or 1 (spikes), so that it can be
    /// accumulated event by event.
    pub fn source_is_binary(&self, proj: &Projection) -> bool {
        match &proj.source {
            Source::Population(_) => true,
            Source::State(_) => false,
            Source::Input(id) => self.inputs[id.0 as usize].kind != EncoderKind::Current,
        }
    }

    pub fn source_shape(&self, source: &Source) -> &[usize] {
        match source {
            Source::Input(id) => &self.inputs[id.0 as usize].shape,
            Source::Population(id) | Source::State(StateSource { pop: id, .. }) => &self.populations[id.0 as usize].shape,
        }
    }

    pub fn source_size(&self, source: &Source) -> usize {
        match source {
            Source::Input(id) => self.inputs[id.0 as usize].shape.iter().product(),
            Source::Population(id) | Source::State(StateSource { pop: id, .. }) => self.populations[id.0 as usize].size(),
        }
    }
}
