//! The training part of the IR: data, learning method, loss graph, optimiser, schedule.
//!
//! Loss terms, predictions and hook conditions are expressions over readouts in one arena
//! ([`TExprs`]); each node knows whether it is per step or per sample and its width.

use std::fmt::Write;

use crate::ir::{ExprId, Exprs, Module, PopId, ProjId, VarId, fmt_f64};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TExprId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Readout {
    /// Spikes per step (0/1).
    Spikes(PopId),
    /// Spike count over the sample.
    Count(PopId),
    /// First spike time in seconds (the sample's duration when there is none).
    FirstSpike(PopId),
    /// A state variable per step.
    State(PopId, VarId),
    /// A named observable per step.
    Observable(PopId, u32),
    /// Sum over neurons of 1/(t_p - t_1) for every spike after the first (seeds/002's SP).
    SpikePenalty(PopId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TFunc {
    Mse,
    CrossEntropy,
    Nll,
    LogSoftmax,
    Softmax,
    /// one_hot(label, on, off)
    OneHot,
    /// pick(vector, label): the label's entry.
    Pick,
    Sum,
    Mean,
    Abs,
    Exp,
    Log,
    Argmax,
    Argmin,
    SumT,
    MeanT,
    MaxT,
    /// The value at the last step.
    LastT,
    /// Leaky cumulative sum over time: U(t) = decay U(t-1) + u(t) (seeds/004).
    Cumulative,
    /// Diehl & Cook's label assignment: each neuron is assigned the class it responded to most
    /// during the assignment pass; the prediction is the class whose neurons respond most.
    AssignedClass,
}

impl TFunc {
    pub fn name(self) -> &'static str {
        match self {
            TFunc::Mse => "mse",
            TFunc::CrossEntropy => "cross_entropy",
            TFunc::Nll => "nll",
            TFunc::LogSoftmax => "log_softmax",
            TFunc::Softmax => "softmax",
            TFunc::OneHot => "one_hot",
            TFunc::Pick => "pick",
            TFunc::Sum => "sum",
            TFunc::Mean => "mean",
            TFunc::Abs => "abs",
            TFunc::Exp => "exp",
            TFunc::Log => "log",
            TFunc::Argmax => "argmax",
            TFunc::Argmin => "argmin",
            TFunc::SumT => "sum_t",
            TFunc::MeanT => "mean_t",
            TFunc::MaxT => "max_t",
            TFunc::LastT => "last_t",
            TFunc::Cumulative => "cumulative",
            TFunc::AssignedClass => "assigned_class",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum TNode {
    Const(f64),
    Label,
    /// The sample's input values (the image), in [0, 1].
    Sample,
    Readout(Readout),
    /// The number of active steps of a sample, read at run time (so that `--set steps=N`
    /// reaches `rate(p)`).
    Steps,
    /// The index of the window a loss is taken over (FPTT's update `p`, from 0), and how many
    /// windows a sample has (`K`): 0 and 1 where a loss covers the whole sample.
    Window,
    Windows,
    /// A network parameter, read at run time.
    NetParam(u32),
    /// Sum of squared weights of a projection.
    WeightL2(ProjId),
    Unary(crate::ir::UnaryOp, TExprId),
    Binary(crate::ir::BinaryOp, TExprId, TExprId),
    Call(TFunc, Vec<TExprId>),
}

/// Width and timing of a training expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TType {
    /// 1 for a scalar per sample.
    pub width: usize,
    pub per_step: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct TExprs {
    pub nodes: Vec<(TNode, TType)>,
}

impl TExprs {
    pub fn push(&mut self, node: TNode, ty: TType) -> TExprId {
        self.nodes.push((node, ty));
        TExprId(self.nodes.len() as u32 - 1)
    }

    pub fn get(&self, id: TExprId) -> &TNode {
        &self.nodes[id.0 as usize].0
    }

    pub fn ty(&self, id: TExprId) -> TType {
        self.nodes[id.0 as usize].1
    }

    pub fn display(&self, module: &Module, id: TExprId) -> String {
        let pop = |p: PopId| module.population(p).name.clone();
        match self.get(id) {
            TNode::Const(value) => fmt_f64(*value),
            TNode::Label => "label".to_string(),
            TNode::Sample => "sample".to_string(),
            TNode::Steps => "steps".to_string(),
            TNode::Window => "window".to_string(),
            TNode::Windows => "windows".to_string(),
            TNode::NetParam(index) => module.params[*index as usize].0.clone(),
            TNode::Readout(readout) => match readout {
                Readout::Spikes(p) => format!("spikes({})", pop(*p)),
                Readout::Count(p) => format!("count({})", pop(*p)),
                Readout::FirstSpike(p) => format!("first_spike({})", pop(*p)),
                Readout::SpikePenalty(p) => format!("spike_penalty({})", pop(*p)),
                Readout::State(p, v) => format!("{}.{}", pop(*p), module.population(*p).vars[v.0 as usize].name),
                Readout::Observable(p, o) => format!("{}.{}", pop(*p), module.population(*p).observables[*o as usize].0),
            },
            TNode::WeightL2(proj) => {
                let proj = &module.projections[proj.0 as usize];
                format!("weight_l2({} -> {})", module.source_name(&proj.source), module.population(proj.target).name)
            }
            TNode::Unary(op, a) => match op {
                crate::ir::UnaryOp::Neg => format!("-{}", self.display(module, *a)),
                crate::ir::UnaryOp::Not => format!("not {}", self.display(module, *a)),
            },
            TNode::Binary(op, a, b) => format!("({} {} {})", self.display(module, *a), op.symbol(), self.display(module, *b)),
            TNode::Call(func, args) => {
                let args: Vec<String> = args.iter().map(|a| self.display(module, *a)).collect();
                format!("{}({})", func.name(), args.join(", "))
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Data {
    Mnist {
        dir: String,
        augment_shift: f64,
        augment_rotate_deg: f64,
    },
    YinYang {
        train: usize,
        test: usize,
        seed: u64,
    },
    /// Fashion-MNIST: MNIST's four IDX files, ten kinds of clothing.
    FashionMnist {
        dir: String,
        augment_shift: f64,
        augment_rotate_deg: f64,
    },
    /// N-MNIST's event recordings, binned into steps of `bin` seconds.
    Nmnist {
        dir: String,
        bin: f64,
    },
}

/// A float type a train block can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FloatType {
    F32,
    F64,
}

impl Data {
    /// The number of classes of the data set.
    pub fn classes(&self) -> usize {
        match self {
            Data::Mnist { .. } | Data::FashionMnist { .. } | Data::Nmnist { .. } => 10,
            Data::YinYang { .. } => 3,
        }
    }
}

/// A surrogate gradient instance: its grad expression over [`crate::ir::Global::SurrogateX`].
#[derive(Clone, Debug, PartialEq)]
pub struct Surrogate {
    pub name: String,
    pub params: Vec<(String, f64)>,
    pub exprs: Exprs,
    pub grad: ExprId,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Method {
    Bptt {
        surrogate: Surrogate,
    },
    EventProp,
    /// FPTT: `updates` windows per sample; the regulariser's weight `alpha`, the running
    /// mean's rate `beta` and the correction's lean `rho - 1`; `truncate` steps per block of
    /// BPTT inside a window (the state detached between blocks; `None`: the whole window).
    Fptt {
        surrogate: Surrogate,
        updates: usize,
        alpha: f64,
        beta: f64,
        rho: f64,
        truncate: Option<usize>,
    },
    Stdp,
}

impl Method {
    pub fn name(&self) -> &'static str {
        match self {
            Method::Bptt { .. } => "bptt",
            Method::EventProp => "eventprop",
            Method::Fptt { .. } => "fptt",
            Method::Stdp => "stdp",
        }
    }

    /// The surrogate gradient of a method that runs BPTT through a threshold.
    pub fn surrogate(&self) -> Option<&Surrogate> {
        match self {
            Method::Bptt { surrogate } | Method::Fptt { surrogate, .. } => Some(surrogate),
            Method::EventProp | Method::Stdp => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Adam,
    Adamax,
    Sgd,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    pub kind: OptimizerKind,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub momentum: f64,
    pub weight_decay: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// lr *= gamma every `every` epochs.
    Step {
        every: usize,
        gamma: f64,
    },
    /// lr *= gamma every epoch.
    Exponential {
        gamma: f64,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct LossTerm {
    pub name: String,
    pub value: TExprId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Phase {
    pub name: String,
    pub epochs: usize,
    pub losses: Vec<LossTerm>,
    pub optimizer: Optimizer,
}

#[derive(Clone, Debug, PartialEq)]
pub enum HookAction {
    /// Scale each target neuron's incoming weights to sum to `total`.
    NormalizeColumns { projection: ProjId, total: f64 },
    /// Add `by` to a network parameter.
    AddToParam { param: u32, by: f64 },
    /// Set a network parameter.
    SetParam { param: u32, value: f64 },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Retry {
    pub condition: TExprId,
    pub max: usize,
    pub actions: Vec<HookAction>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Train {
    pub data: Data,
    pub method: Method,
    pub exprs: TExprs,
    /// The phases in order; a file without `phase` blocks has one phase named `main`.
    pub phases: Vec<Phase>,
    pub predict: Option<TExprId>,
    /// `reconstruction = ...`: an image per sample, the size of the data's samples, that a run
    /// shows beside its input after every epoch (an auto-encoder's output).
    pub reconstruction: Option<TExprId>,
    pub batch: usize,
    pub schedule: LrSchedule,
    pub clip_grad_norm: Option<f64>,
    pub seed: u64,
    /// `precision = f64`: the float type the model asks for (`--precision` overrides it).
    pub precision: Option<FloatType>,
    pub before_sample: Vec<HookAction>,
    pub retry: Option<Retry>,
    pub records: Vec<(PopId, Option<VarId>)>,
    pub record_to: Option<String>,
    pub clamps: Vec<Clamp>,
}

/// `clamp p = value` (the population's spikes, 1 where the value is nonzero) or `clamp p.var
/// = value` (a state, before every step): what `snnc generate` holds while the network runs
/// without input, `label` being the class it generates.
#[derive(Clone, Debug, PartialEq)]
pub struct Clamp {
    pub pop: PopId,
    pub var: Option<VarId>,
    pub value: TExprId,
}

pub fn write_train(out: &mut String, module: &Module, train: &Train) {
    let _ = writeln!(out, "train");
    let _ = writeln!(out, "  data {:?}", train.data);
    match &train.method {
        Method::Bptt { surrogate } => {
            let _ = writeln!(out, "  method bptt surrogate {}", surrogate_text(surrogate));
        }
        Method::Fptt { surrogate, updates, alpha, beta, rho, truncate } => {
            let truncate = truncate.map_or("window".to_string(), |n| n.to_string());
            let _ = writeln!(
                out,
                "  method fptt updates {updates} alpha {} beta {} rho {} truncate {truncate} surrogate {}",
                fmt_f64(*alpha),
                fmt_f64(*beta),
                fmt_f64(*rho),
                surrogate_text(surrogate)
            );
        }
        Method::EventProp => {
            let _ = writeln!(out, "  method eventprop");
        }
        Method::Stdp => {
            let _ = writeln!(out, "  method stdp");
        }
    }
    let _ = writeln!(out, "  batch {} seed {} schedule {:?} clip {:?}", train.batch, train.seed, train.schedule, train.clip_grad_norm);
    for phase in &train.phases {
        let o = &phase.optimizer;
        let _ = writeln!(
            out,
            "  phase {} epochs {} optimizer {:?} lr {} weight_decay {}",
            phase.name,
            phase.epochs,
            o.kind,
            fmt_f64(o.lr),
            fmt_f64(o.weight_decay)
        );
        for term in &phase.losses {
            let _ = writeln!(out, "    loss {} = {}", term.name, train.exprs.display(module, term.value));
        }
    }
    if let Some(predict) = train.predict {
        let _ = writeln!(out, "  predict {}", train.exprs.display(module, predict));
    }
    if let Some(reconstruction) = train.reconstruction {
        let _ = writeln!(out, "  reconstruction {}", train.exprs.display(module, reconstruction));
    }
    for action in &train.before_sample {
        let _ = writeln!(out, "  every sample {action:?}");
    }
    if let Some(retry) = &train.retry {
        let _ = writeln!(out, "  retry when {} max {} {:?}", train.exprs.display(module, retry.condition), retry.max, retry.actions);
    }
    for (pop, var) in &train.records {
        let population = module.population(*pop);
        match var {
            Some(var) => {
                let _ = writeln!(out, "  record {}.{}", population.name, population.vars[var.0 as usize].name);
            }
            None => {
                let _ = writeln!(out, "  record {} spikes", population.name);
            }
        }
    }
    for clamp in &train.clamps {
        let pop = module.population(clamp.pop);
        let target = match clamp.var {
            Some(v) => format!("{}.{}", pop.name, pop.vars[v.0 as usize].name),
            None => pop.name.clone(),
        };
        let _ = writeln!(out, "  clamp {target} = {}", train.exprs.display(module, clamp.value));
    }
}

fn surrogate_text(surrogate: &Surrogate) -> String {
    let params: Vec<String> = surrogate.params.iter().map(|(n, v)| format!("{n} = {}", fmt_f64(*v))).collect();
    let names = |v: VarId| format!("x{}", v.0);
    let ports = |p: crate::ir::PortId| format!("port{}", p.0);
    format!("{}({}): grad = {}", surrogate.name, params.join(", "), surrogate.exprs.display(surrogate.grad, &names, &ports))
}
