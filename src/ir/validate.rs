//! The validator: checks the invariants every engine relies on, once, after lowering and after
//! any `--set`. An engine takes a [`Valid`] module, which only [`validate`] makes, so an
//! unchecked module cannot reach one (naga's `Validator` and `ModuleInfo` are the model).

use std::fmt;
use std::ops::Deref;

use crate::ir::train::{TExprId, TNode};
use crate::ir::{Connectivity, ExprId, Exprs, Module, Node, Source};

/// A module that passed [`validate`]. Read it through `Deref`; change it with
/// [`Valid::into_inner`] and validate again.
#[derive(Clone, Debug, PartialEq)]
pub struct Valid(Module);

impl Valid {
    pub fn into_inner(self) -> Module {
        self.0
    }
}

impl Deref for Valid {
    type Target = Module;

    fn deref(&self) -> &Module {
        &self.0
    }
}

/// An invariant the module breaks: always a compiler bug or a bad `--set`, never a user's
/// modelling mistake (those are diagnostics of the checker).
#[derive(Clone, Debug, PartialEq)]
pub enum ValidationError {
    /// `dt` must be finite and positive; a sample needs at least one step.
    Timing { dt: f64, steps: usize },
    /// A node refers to a node at or after itself, or outside its arena.
    ArenaOrder { owner: String, node: u32 },
    /// A variable, port or parameter index outside its table.
    Index { owner: String, what: &'static str, index: u32 },
    /// A projection's weights do not have the shape its connectivity needs.
    WeightShape { projection: usize, expected: usize, found: usize },
    /// A projection names a source, target or port that does not exist.
    Projection { projection: usize },
    /// The train block has no batch or no phase.
    Train { what: &'static str },
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::Timing { dt, steps } => write!(f, "invalid timing: dt = {dt} s, steps = {steps}"),
            ValidationError::ArenaOrder { owner, node } => write!(f, "{owner}: node e{node} refers forward"),
            ValidationError::Index { owner, what, index } => write!(f, "{owner}: {what} {index} does not exist"),
            ValidationError::WeightShape { projection, expected, found } => {
                write!(f, "projection {projection}: {found} weights where its connectivity needs {expected}")
            }
            ValidationError::Projection { projection } => write!(f, "projection {projection}: unknown source, target or port"),
            ValidationError::Train { what } => write!(f, "train block: {what}"),
        }
    }
}

impl std::error::Error for ValidationError {}

/// Checks `module` and wraps it as [`Valid`].
pub fn validate(module: Module) -> Result<Valid, ValidationError> {
    if !(module.dt.is_finite() && module.dt > 0.0) || module.steps == 0 {
        return Err(ValidationError::Timing { dt: module.dt, steps: module.steps });
    }
    let n_net = module.params.len() as u32;
    for input in &module.inputs {
        check_exprs(&input.exprs, &format!("input `{}`", input.name), 0, 0, n_net)?;
        check_id(&input.exprs, input.value, &format!("input `{}`", input.name))?;
    }
    for pop in &module.populations {
        let owner = format!("population `{}`", pop.name);
        let (n_vars, n_ports) = (pop.vars.len() as u32, pop.ports.len() as u32);
        check_exprs(&pop.exprs, &owner, n_vars, n_ports, n_net)?;
        let updates = pop
            .input_jumps
            .iter()
            .flat_map(|j| &j.updates)
            .chain(pop.dynamics.iter().map(|(u, _)| u))
            .chain(&pop.updates)
            .chain(&pop.on_spike)
            .chain(&pop.after_spike);
        for update in updates {
            if update.var.0 >= n_vars {
                return Err(ValidationError::Index { owner, what: "variable", index: update.var.0 });
            }
            check_id(&pop.exprs, update.value, &owner)?;
        }
        for jump in &pop.input_jumps {
            if jump.port.0 >= n_ports {
                return Err(ValidationError::Index { owner, what: "port", index: jump.port.0 });
            }
        }
        let roots =
            pop.threshold.iter().flat_map(|t| [t.lhs, t.rhs]).chain(pop.refractory).chain(pop.observables.iter().map(|(_, id)| *id));
        for id in roots {
            check_id(&pop.exprs, id, &owner)?;
        }
    }
    for (index, proj) in module.projections.iter().enumerate() {
        let source_exists = match &proj.source {
            Source::Input(id) => (id.0 as usize) < module.inputs.len(),
            Source::Population(id) => (id.0 as usize) < module.populations.len(),
            Source::State(s) => module.populations.get(s.pop.0 as usize).is_some_and(|p| (s.var.0 as usize) < p.vars.len()),
        };
        let target = module.populations.get(proj.target.0 as usize);
        if !source_exists || target.is_none_or(|t| proj.port.0 as usize >= t.ports.len()) {
            return Err(ValidationError::Projection { projection: index });
        }
        let (n_pre, n_post) = (module.source_size(&proj.source), module.population(proj.target).size());
        let found: usize = proj.weight_shape.iter().product();
        let expected = match &proj.connectivity {
            _ if proj.shares_one_weight() && !proj.trainable => 1,
            Connectivity::Dense | Connectivity::AllToAllButSelf => n_pre * n_post,
            Connectivity::OneToOne => n_pre.min(n_post),
            Connectivity::Conv2d(_) | Connectivity::ConvTranspose2d(_) => found,
            Connectivity::Pool2d(_) => 1,
        };
        if found != expected {
            return Err(ValidationError::WeightShape { projection: index, expected, found });
        }
    }
    if let Some(train) = &module.train {
        if train.batch == 0 {
            return Err(ValidationError::Train { what: "the batch is empty" });
        }
        if train.phases.is_empty() {
            return Err(ValidationError::Train { what: "no phase" });
        }
        for (index, (node, _)) in train.exprs.nodes.iter().enumerate() {
            let children: Vec<TExprId> = match node {
                TNode::Unary(_, a) => vec![*a],
                TNode::Binary(_, a, b) => vec![*a, *b],
                TNode::Call(_, args) => args.clone(),
                TNode::NetParam(i) if *i >= n_net => {
                    return Err(ValidationError::Index { owner: "train block".to_string(), what: "network parameter", index: *i });
                }
                _ => Vec::new(),
            };
            if children.iter().any(|c| c.0 as usize >= index) {
                return Err(ValidationError::ArenaOrder { owner: "train block".to_string(), node: index as u32 });
            }
        }
    }
    Ok(Valid(module))
}

/// Every node of `exprs` refers only to earlier nodes and to existing variables, ports and
/// network parameters.
fn check_exprs(exprs: &Exprs, owner: &str, n_vars: u32, n_ports: u32, n_net: u32) -> Result<(), ValidationError> {
    for (index, node) in exprs.nodes.iter().enumerate() {
        let index_error = |what: &'static str, i: u32| ValidationError::Index { owner: owner.to_string(), what, index: i };
        let children: Vec<ExprId> = match node {
            Node::Const(_) => Vec::new(),
            Node::Var(v) if v.0 >= n_vars => return Err(index_error("variable", v.0)),
            Node::Port(p) if p.0 >= n_ports => return Err(index_error("port", p.0)),
            Node::Global(crate::ir::Global::NetParam(i)) if *i >= n_net => return Err(index_error("network parameter", *i)),
            Node::Var(_) | Node::Port(_) | Node::Global(_) => Vec::new(),
            Node::Unary(_, a) => vec![*a],
            Node::Binary(_, a, b) => vec![*a, *b],
            Node::Call(func, args) => {
                if args.len() != func.arity() {
                    return Err(index_error("argument", args.len() as u32));
                }
                args.clone()
            }
        };
        if children.iter().any(|c| c.0 as usize >= index) {
            return Err(ValidationError::ArenaOrder { owner: owner.to_string(), node: index as u32 });
        }
    }
    Ok(())
}

fn check_id(exprs: &Exprs, id: ExprId, owner: &str) -> Result<(), ValidationError> {
    if (id.0 as usize) < exprs.nodes.len() { Ok(()) } else { Err(ValidationError::ArenaOrder { owner: owner.to_string(), node: id.0 }) }
}
