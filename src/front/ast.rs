//! The syntax tree of a `.snn` file, as written, with byte spans on every node.
//!
//! The AST is what the parser builds and what `snnc fmt` prints. It knows nothing about units,
//! names or shapes; those are checked and folded away by [`crate::lower`].

use std::fmt;

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    pub fn new(start: usize, end: usize) -> Span {
        Span { start, end }
    }
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    pub fn join(self, other: Span) -> Span {
        Span { start: self.start.min(other.start), end: self.end.max(other.end) }
    }
}

impl From<Span> for miette::SourceSpan {
    fn from(span: Span) -> miette::SourceSpan {
        (span.start, span.len()).into()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A unit as written: `mV`, `mV/ms`, `1/ms`, `nS`, `ms^-1`.
#[derive(Clone, Debug, PartialEq)]
pub struct UnitExpr {
    /// Each factor with its exponent; a divided factor carries a negative sign.
    pub factors: Vec<UnitFactor>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct UnitFactor {
    /// `1` for the dimensionless placeholder in `1/ms`.
    pub name: String,
    pub power: i32,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Or,
    And,
    Ge,
    Le,
    Eq,
    Ne,
    Gt,
    Lt,
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

impl BinaryOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Ge => ">=",
            BinaryOp::Le => "<=",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Gt => ">",
            BinaryOp::Lt => "<",
            BinaryOp::Add => "+",
            BinaryOp::Sub => "-",
            BinaryOp::Mul => "*",
            BinaryOp::Div => "/",
            BinaryOp::Pow => "^",
        }
    }

    /// Binding strength used by the formatter to decide where parentheses are needed; it
    /// mirrors the Pratt table in `parse.rs`.
    pub fn precedence(self) -> u8 {
        match self {
            BinaryOp::Or => 1,
            BinaryOp::And => 2,
            BinaryOp::Ge | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt => 3,
            BinaryOp::Add | BinaryOp::Sub => 4,
            BinaryOp::Mul | BinaryOp::Div => 5,
            BinaryOp::Pow => 7,
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(self, BinaryOp::Ge | BinaryOp::Le | BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Gt | BinaryOp::Lt)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ExprKind {
    /// A number with an optional unit written right after it: `20 ms`.
    Quantity {
        value: f64,
        text: String,
        unit: Option<UnitExpr>,
    },
    Bool(bool),
    Str(String),
    /// `v`, `soma.s`, `out.v`.
    Path(Vec<Ident>),
    Call {
        func: Ident,
        args: Vec<Arg>,
    },
    Unary {
        op: UnaryOp,
        operand: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    List(Vec<Expr>),
    /// Parentheses the user wrote; kept so that spans and `fmt` stay faithful.
    Paren(Box<Expr>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
}

impl Expr {
    /// The single name of a one-segment path.
    pub fn as_name(&self) -> Option<&Ident> {
        match &self.kind {
            ExprKind::Path(segments) if segments.len() == 1 => Some(&segments[0]),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct File {
    pub items: Vec<Item>,
    /// Items that failed to parse, by keyword and name: their names are known to exist, so
    /// that uses of them report nothing further (the syntax error is the one to fix).
    pub broken: Vec<Broken>,
}

/// An item that failed to parse: its keyword (`neuron`, `network`, ...) and, where the text
/// names it, its name.
#[derive(Clone, Debug, PartialEq)]
pub struct Broken {
    pub keyword: String,
    pub name: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    pub docs: Vec<String>,
    pub kind: ItemKind,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ItemKind {
    Import(Import),
    Neuron(Neuron),
    Synapse(Synapse),
    Surrogate(Surrogate),
    Encoder(Encoder),
    Network(Network),
    Train(Train),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Import {
    /// `std::neurons` or a quoted relative path.
    pub target: String,
    pub quoted: bool,
    pub span: Span,
}

/// `name: unit = default` in a surrogate's or encoder's parameter list.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamHead {
    pub name: Ident,
    pub unit: Option<UnitExpr>,
    pub default: Option<Expr>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Modifier {
    Trainable,
    PerNeuron,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub docs: Vec<String>,
    pub name: Ident,
    pub unit: Option<UnitExpr>,
    pub modifiers: Vec<(Modifier, Span)>,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub docs: Vec<String>,
    pub name: Ident,
    pub unit: Option<UnitExpr>,
    pub init: Option<Expr>,
    /// `persistent`: carried from one sample to the next instead of restarting.
    pub persistent: bool,
    /// `frozen in eval`: held at its value while the model is evaluated.
    pub frozen_in_eval: bool,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    pub docs: Vec<String>,
    pub name: Ident,
    pub unit: Option<UnitExpr>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Require {
    pub condition: Expr,
    /// The reason, from `else "..."`.
    pub reason: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Let {
    pub name: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Ode {
    pub var: Ident,
    pub rhs: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AssignOp {
    Set,
    Add,
    Sub,
    Mul,
}

impl AssignOp {
    pub fn symbol(self) -> &'static str {
        match self {
            AssignOp::Set => "=",
            AssignOp::Add => "+=",
            AssignOp::Sub => "-=",
            AssignOp::Mul => "*=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    Assign { target: Vec<Ident>, op: AssignOp, value: Expr, span: Span },
    Let(Let),
    Deliver { value: Expr, span: Span },
    Call { call: Expr, span: Span },
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Assign { span, .. } | Stmt::Deliver { span, .. } | Stmt::Call { span, .. } => *span,
            Stmt::Let(let_) => let_.span,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Block {
    pub stmts: Vec<Stmt>,
    pub span: Span,
}

/// `on spike { ... }`, `on syn { ... }`, `on pre { ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct OnBlock {
    pub event: Ident,
    pub body: Block,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NeuronStmt {
    Param(Param),
    State(State),
    Input(Port),
    Let(Let),
    Ode(Ode),
    Update(Block),
    UpdateAfterSpike(Block),
    SpikeWhen { condition: Expr, span: Span },
    On(OnBlock),
    Refractory { period: Expr, span: Span },
    Compartment(Compartment),
    Observable { name: Ident, value: Expr, span: Span },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Neuron {
    pub name: Ident,
    pub body: Vec<NeuronStmt>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Compartment {
    pub name: Ident,
    pub body: Vec<NeuronStmt>,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    Current,
    Conductance,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SynapseStmt {
    Param(Param),
    State(State),
    Trace { name: Ident, key: Ident, value: Expr, span: Span },
    Delivers { delivery: Delivery, span: Span },
    On(OnBlock),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Synapse {
    pub name: Ident,
    pub body: Vec<SynapseStmt>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Surrogate {
    pub name: Ident,
    pub params: Vec<ParamHead>,
    pub lets: Vec<Let>,
    pub grad: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub enum EncoderBody {
    SpikeWhen(Expr),
    SpikeAt(Expr),
    Current(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Encoder {
    pub name: Ident,
    pub params: Vec<ParamHead>,
    pub lets: Vec<Let>,
    /// `require COND else "why"`: conditions on the arguments, checked where the encoder is used.
    pub requires: Vec<Require>,
    pub body: EncoderBody,
    pub body_span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Shape {
    pub dims: Vec<usize>,
    pub span: Span,
}

/// A call or a bare name: `Leaky(beta = 0.5)` or `dense`.
#[derive(Clone, Debug, PartialEq)]
pub struct CallOrName {
    pub name: Ident,
    pub args: Option<Vec<Arg>>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct InputLayer {
    pub docs: Vec<String>,
    pub name: Ident,
    pub shape: Shape,
    pub encoder: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Population {
    pub docs: Vec<String>,
    pub name: Ident,
    pub shape: Shape,
    pub neuron: CallOrName,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConnFlag {
    Fixed(Span),
    Trainable(Span),
    Feedback(Span),
    Delay(Expr),
    Via(CallOrName),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Connect {
    pub docs: Vec<String>,
    /// The source population or input.
    pub source: Ident,
    /// `source.var`: the connection carries that state rather than spikes.
    pub source_var: Option<Ident>,
    /// `transform(source.var)`, e.g. `l2_normalize`.
    pub source_transform: Option<Ident>,
    /// `population.port`.
    pub target: Vec<Ident>,
    pub kind: CallOrName,
    pub flags: Vec<ConnFlag>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Setting {
    pub key: Ident,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NetworkStmt {
    Param(Param),
    Input(InputLayer),
    Population(Population),
    Connect(Connect),
    Setting(Setting),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub name: Ident,
    pub body: Vec<NetworkStmt>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct LossStmt {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TrainStmt {
    Setting(Setting),
    Loss(LossStmt),
    Phase {
        name: Ident,
        body: Vec<TrainStmt>,
        span: Span,
    },
    /// `every sample { ... }`.
    Hook {
        event: Ident,
        body: Block,
        span: Span,
    },
    Retry {
        condition: Expr,
        max: Option<Expr>,
        body: Block,
        span: Span,
    },
    Record {
        paths: Vec<Vec<Ident>>,
        to: Option<String>,
        span: Span,
    },
    /// `clamp p = expr` (spikes) or `clamp p.var = expr` (a state).
    Clamp {
        path: Vec<Ident>,
        value: Expr,
        span: Span,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Train {
    pub name: Option<Ident>,
    pub body: Vec<TrainStmt>,
}
