//! Definitions: neurons (hybrid systems), synapses, surrogates and encoders.
//!
//! Each definition is checked once on its own (with its defaults) so that its problems are
//! reported once, in its own file. Networks instantiate definitions with overrides through
//! [`lower_neuron`] and friends with reporting off.

use std::collections::BTreeMap;

use crate::front::ast::{self, AssignOp, BinaryOp, ExprKind, Modifier, NeuronStmt, Span, Stmt};
use crate::front::diag::{Diagnostic, Diagnostics, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::{self, ExprId, Exprs, Func, Global, Init, InputJump, Integration, Node, PortId, Threshold, Update, Var, VarId, VarKind};
use crate::lower::affine::{Affine, affine, reads_port};
use crate::lower::expr::{Binding, Env, Lowerer};
use crate::lower::surrogate::{check_encoder, lower_surrogate};
use crate::lower::synapse::lower_synapse;
use crate::lower::{Program, Sink};

/// A parameter value given at instantiation: `Leaky(beta = 0.5)`.
#[derive(Clone, Debug)]
pub struct Override {
    pub init: Init,
    pub unit: Option<Unit>,
}

/// The step used to check a definition on its own, before a network gives it its `dt`.
pub const DEFAULT_DT: f64 = 1e-3;

pub fn check_definitions(program: &Program, diagnostics: &mut Diagnostics) {
    for def in program.neurons.values() {
        let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: true };
        lower_neuron(&def.def, &BTreeMap::new(), "", vec![1], DEFAULT_DT, &mut sink, true);
    }
    for def in program.synapses.values() {
        let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: true };
        lower_synapse(&def.def, &BTreeMap::new(), None, DEFAULT_DT, &mut sink);
    }
    for def in program.surrogates.values() {
        let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: true };
        lower_surrogate(&def.def, &BTreeMap::new(), &mut sink);
    }
    for def in program.encoders.values() {
        let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: true };
        check_encoder(&def.def, &mut sink);
    }
}

/// Lowers an initialiser: a constant expression or `uniform(a, b)`, `normal(mean, std)`,
/// `kaiming_normal()`, `xavier_uniform()`. Returns the init and its unit.
pub fn lower_init(expr: &ast::Expr, env: &Env, sink: &mut Sink) -> (Init, Option<Unit>) {
    if let ExprKind::Call { func, args } = &expr.kind {
        let two = |sink: &mut Sink, args: &[ast::Arg]| -> Option<(f64, f64, Option<Unit>)> {
            let mut exprs = Exprs::default();
            let mut lowerer = Lowerer { sink, exprs: &mut exprs };
            if !lowerer.expect_arity(func, args.len(), 2, expr.span) {
                return None;
            }
            let (a, unit_a) = lowerer.lower(env, &args[0].value);
            let (b, unit_b) = lowerer.lower(env, &args[1].value);
            let unit = lowerer.expect_same(&unit_a, &unit_b, args[0].value.span, args[1].value.span, &func.name);
            let a = constant_or_report(&mut lowerer, a, args[0].value.span)?;
            let b = constant_or_report(&mut lowerer, b, args[1].value.span)?;
            Some((a, b, unit))
        };
        match func.name.as_str() {
            "uniform" => {
                return match two(sink, args) {
                    Some((low, high, unit)) => (Init::Uniform { low, high }, unit),
                    None => (Init::Const(0.0), None),
                };
            }
            "normal" => {
                return match two(sink, args) {
                    Some((mean, std, unit)) => (Init::Normal { mean, std }, unit),
                    None => (Init::Const(0.0), None),
                };
            }
            "kaiming_normal" | "xavier_uniform" => {
                let mut exprs = Exprs::default();
                let mut lowerer = Lowerer { sink, exprs: &mut exprs };
                lowerer.expect_arity(func, args.len(), 0, expr.span);
                let init = if func.name == "kaiming_normal" { Init::KaimingNormal } else { Init::XavierUniform };
                return (init, Some(Unit::none()));
            }
            _ => {}
        }
    }
    let mut exprs = Exprs::default();
    let mut lowerer = Lowerer { sink, exprs: &mut exprs };
    let (id, unit) = lowerer.lower(env, expr);
    match constant_or_report(&mut lowerer, id, expr.span) {
        Some(value) => (Init::Const(value), unit),
        None => (Init::Const(0.0), None),
    }
}

pub(crate) fn constant_or_report(lowerer: &mut Lowerer, id: ExprId, span: Span) -> Option<f64> {
    if let Some(value) = lowerer.exprs.constant(id) {
        return Some(value);
    }
    lowerer.error(
        Diagnostic::error("snn::types::not_constant", "an initial value must be a constant", span, "depends on a variable")
            .with_help("use numbers, quantities, other parameters' defaults are not visible here; or uniform(a, b) / normal(mean, std)"),
    );
    None
}

pub(crate) fn declared_unit(unit: &Option<ast::UnitExpr>) -> Unit {
    unit.as_ref().map_or_else(Unit::none, units::eval)
}

/// A neuron's declarations in order, flattened over compartments (`soma.s`).
pub(crate) struct Decls<'n> {
    params: Vec<(String, &'n ast::Param)>,
    states: Vec<(String, &'n ast::State)>,
    ports: Vec<(String, &'n ast::Port)>,
}

pub(crate) fn collect_decls<'n>(
    body: &'n [NeuronStmt],
    prefix: &str,
    decls: &mut Decls<'n>,
    sink: &mut Sink,
    seen: &mut BTreeMap<String, Span>,
) {
    for stmt in body {
        let (name, span) = match stmt {
            NeuronStmt::Param(param) => (&param.name, param.name.span),
            NeuronStmt::State(state) => (&state.name, state.name.span),
            NeuronStmt::Input(port) => (&port.name, port.name.span),
            NeuronStmt::Compartment(compartment) => {
                let inner = format!("{prefix}{}.", compartment.name.name);
                collect_decls(&compartment.body, &inner, decls, sink, seen);
                continue;
            }
            _ => continue,
        };
        let qualified = format!("{prefix}{}", name.name);
        if let Some(first) = seen.get(&qualified) {
            sink.push(
                Diagnostic::error("snn::names::duplicate", format!("`{qualified}` is declared twice"), span, "declared again here")
                    .with_label(*first, "first declared here")
                    .with_help("each parameter, state and input of a neuron needs its own name"),
            );
            continue;
        }
        seen.insert(qualified.clone(), span);
        match stmt {
            NeuronStmt::Param(param) => decls.params.push((qualified, param)),
            NeuronStmt::State(state) => decls.states.push((qualified, state)),
            NeuronStmt::Input(port) => decls.ports.push((qualified, port)),
            _ => unreachable!("filtered above"),
        }
    }
}

/// Lowers a neuron definition into a population. `check` enables the lints that only make
/// sense once per definition (unused parameters).
pub fn lower_neuron(
    neuron: &ast::Neuron,
    overrides: &BTreeMap<String, Override>,
    name: &str,
    shape: Vec<usize>,
    dt: f64,
    sink: &mut Sink,
    check: bool,
) -> ir::Population {
    let mut decls = Decls { params: Vec::new(), states: Vec::new(), ports: Vec::new() };
    collect_decls(&neuron.body, "", &mut decls, sink, &mut BTreeMap::new());
    let mut pop = ir::Population {
        name: name.to_string(),
        shape,
        neuron: neuron.name.name.clone(),
        vars: Vec::new(),
        ports: Vec::new(),
        exprs: Exprs::default(),
        input_jumps: Vec::new(),
        dynamics: Vec::new(),
        updates: Vec::new(),
        threshold: None,
        on_spike: Vec::new(),
        after_spike: Vec::new(),
        refractory: None,
        observables: Vec::new(),
        odes: Vec::new(),
    };
    let mut env = Env::with_builtins(true);
    // The step is a module constant: binding it folds exact propagators into numbers.
    env.bind("dt", Binding::Const(dt), Unit::time_ms());
    env.bind("spiked", Binding::Global(Global::Spiked), Unit::none());
    let init_env = Env::with_builtins(false);
    let mut param_spans = Vec::new();
    for (qualified, param) in &decls.params {
        let unit = declared_unit(&param.unit);
        let trainable = param.modifiers.iter().any(|(m, _)| *m == Modifier::Trainable);
        let per_neuron = param.modifiers.iter().any(|(m, _)| *m == Modifier::PerNeuron);
        let value = if let Some(given) = overrides.get(qualified) {
            given.init.clone()
        } else if let Some(default) = &param.default {
            let (init, found) = lower_init(default, &init_env, sink);
            let mut exprs = Exprs::default();
            let mut lowerer = Lowerer { sink, exprs: &mut exprs };
            lowerer.expect_unit(&found, &unit, default.span, "snn::units::mismatch", &format!("default of `{qualified}`"));
            init
        } else {
            if !check {
                sink.push(
                    Diagnostic::error(
                        "snn::network::missing_parameter",
                        format!("parameter `{qualified}` of `{}` has no default and no value", neuron.name.name),
                        param.span,
                        "declared without a default",
                    )
                    .with_help(format!("pass it where the population is declared: `{}({qualified} = ...)`", neuron.name.name)),
                );
            }
            Init::Const(0.0)
        };
        let binding = match (&value, trainable || per_neuron) {
            (Init::Const(constant), false) => Binding::Const(*constant),
            _ => {
                let scale = unit.factor();
                pop.vars.push(Var { name: qualified.clone(), kind: VarKind::Param { value, trainable, per_neuron, scale } });
                Binding::Var(VarId(pop.vars.len() as u32 - 1))
            }
        };
        env.bind(qualified, binding, unit);
        param_spans.push((qualified.clone(), param.name.span));
    }
    for (qualified, state) in &decls.states {
        let unit = declared_unit(&state.unit);
        let init = match &state.init {
            Some(expr) => {
                let (init, found) = lower_init(expr, &init_env, sink);
                let mut exprs = Exprs::default();
                let mut lowerer = Lowerer { sink, exprs: &mut exprs };
                lowerer.expect_unit(&found, &unit, expr.span, "snn::units::mismatch", &format!("initial value of `{qualified}`"));
                init
            }
            None => Init::Const(0.0),
        };
        let kind = VarKind::State { init, persistent: state.persistent, frozen_in_eval: state.frozen_in_eval };
        pop.vars.push(Var { name: qualified.clone(), kind });
        env.bind(qualified, Binding::Var(VarId(pop.vars.len() as u32 - 1)), unit);
    }
    for (qualified, port) in &decls.ports {
        pop.ports.push(qualified.clone());
        env.bind(qualified, Binding::Port(PortId(pop.ports.len() as u32 - 1)), declared_unit(&port.unit));
    }
    let mut walker = NeuronWalker { pop: &mut pop, sink, odes: Vec::new(), seen_spike: None, dt };
    walker.walk(&neuron.body, "", &mut env);
    walker.discretise();
    compensate_slow_decays(&mut pop);
    if check {
        let used = env.used.borrow();
        for (qualified, span) in param_spans {
            if !used.contains(&qualified) {
                sink.push(
                    Diagnostic::warning(
                        "snn::lint::unused_parameter",
                        format!("parameter `{qualified}` is never used"),
                        span,
                        "declared here",
                    )
                    .with_help("remove it, or use it in the dynamics"),
                );
            }
        }
    }
    pop
}

/// Decays slower than a float resolves per step (Diehl & Cook's theta: a factor 1 - 5e-8 per
/// step at dt 0.5 ms) lose their rate in f32: each step's change rounds to a whole unit of the
/// last place, and theta decayed about 1.9x too fast. Such a decay `x <- x d` becomes a
/// compensated sum with a hidden state `r` holding what rounding lost (Fast2Sum, exact since
/// |x| >= |inc|): `inc = x (d - 1) + r; x <- x + inc; r <- inc - ((x + inc) - x)`. The state
/// `r` is persistent and frozen like `x`.
pub const SLOW_DECAY: f64 = 1e-6;

fn compensate_slow_decays(pop: &mut ir::Population) {
    let count = pop.dynamics.len();
    for index in 0..count {
        let (update, integration) = pop.dynamics[index].clone();
        if integration != Integration::Exact {
            continue;
        }
        let factor = match pop.exprs.get(update.value) {
            Node::Binary(BinaryOp::Mul, a, b) => match (pop.exprs.get(*a), pop.exprs.get(*b)) {
                (Node::Var(v), Node::Const(c)) | (Node::Const(c), Node::Var(v)) if *v == update.var => *c,
                _ => continue,
            },
            _ => continue,
        };
        if !(factor < 1.0 && 1.0 - factor < SLOW_DECAY) {
            continue;
        }
        let x = update.var;
        let (persistent, frozen_in_eval) = match pop.vars[x.0 as usize].kind {
            VarKind::State { persistent, frozen_in_eval, .. } => (persistent, frozen_in_eval),
            VarKind::Param { .. } => continue,
        };
        let name = format!("{}__residual", pop.vars[x.0 as usize].name);
        pop.vars.push(Var { name, kind: VarKind::State { init: Init::Const(0.0), persistent, frozen_in_eval } });
        let r = VarId(pop.vars.len() as u32 - 1);
        let e = &mut pop.exprs;
        let (xv, rv) = (e.push(Node::Var(x)), e.push(Node::Var(r)));
        let rate = e.push(Node::Const(factor - 1.0));
        let scaled = e.push(Node::Binary(BinaryOp::Mul, xv, rate));
        let inc = e.push(Node::Binary(BinaryOp::Add, scaled, rv));
        let sum = e.push(Node::Binary(BinaryOp::Add, xv, inc));
        let kept = e.push(Node::Binary(BinaryOp::Sub, sum, xv));
        let lost = e.push(Node::Binary(BinaryOp::Sub, inc, kept));
        pop.dynamics[index].0.value = sum;
        pop.dynamics.push((Update { var: r, value: lost }, Integration::Exact));
    }
}

struct NeuronWalker<'p, 's, 'a> {
    pop: &'p mut ir::Population,
    sink: &'s mut Sink<'a>,
    /// (variable, right-hand side, unit check done, span)
    odes: Vec<(VarId, ExprId, Span)>,
    seen_spike: Option<Span>,
    dt: f64,
}

impl<'a> NeuronWalker<'_, '_, 'a> {
    fn lowerer(&mut self) -> Lowerer<'_, 'a> {
        Lowerer { sink: self.sink, exprs: &mut self.pop.exprs }
    }

    /// Binds a compartment's own names unqualified, for its statements.
    fn compartment_env(env: &Env, prefix: &str) -> Env {
        let mut inner = Env::default();
        for (name, (binding, unit)) in &env.names {
            inner.names.insert(name.clone(), (binding.clone(), unit.clone()));
            if let Some(local) = name.strip_prefix(prefix)
                && !local.contains('.')
            {
                inner.names.insert(local.to_string(), (binding.clone(), unit.clone()));
            }
        }
        inner.allow_rand = env.allow_rand;
        inner
    }

    fn walk(&mut self, body: &[NeuronStmt], prefix: &str, env: &mut Env) {
        for stmt in body {
            match stmt {
                NeuronStmt::Param(_) | NeuronStmt::State(_) | NeuronStmt::Input(_) => {}
                NeuronStmt::Let(let_) => {
                    let (id, unit) = self.lowerer().lower(env, &let_.value);
                    let qualified = format!("{prefix}{}", let_.name.name);
                    if env.names.contains_key(&qualified) {
                        self.sink.push(
                            Diagnostic::error(
                                "snn::names::duplicate",
                                format!("`{qualified}` is already declared"),
                                let_.name.span,
                                "declared again",
                            )
                            .with_help("give the `let` binding a name of its own"),
                        );
                    }
                    env.bind(&qualified, Binding::Expr(id), unit.unwrap_or_else(Unit::none));
                    env.used.borrow_mut().insert(qualified);
                }
                NeuronStmt::Ode(ode) => {
                    let qualified = format!("{prefix}{}", ode.var.name);
                    let Some(var) = self.state_var(env, &qualified, ode.var.span, "dynamics") else {
                        self.lowerer().lower(env, &ode.rhs);
                        continue;
                    };
                    let var_unit = env.names[&qualified].1.clone();
                    let (rhs, found) = self.lowerer().lower(env, &ode.rhs);
                    let expected = var_unit.div(&Unit::time_ms());
                    if let Some(found) = &found
                        && *found != expected
                    {
                        self.sink.push(
                            Diagnostic::error(
                                "snn::units::ode",
                                format!("the right side of `d{}/dt` must have unit {expected}, found {found}", ode.var.name),
                                ode.rhs.span,
                                format!("this has unit {found}"),
                            )
                            .with_label(ode.var.span, format!("`{}` has unit {var_unit}", ode.var.name))
                            .with_help(crate::lower::expr::unit_help(&expected, found)),
                        );
                    }
                    if let Some((_, _, first)) = self.odes.iter().find(|(v, _, _)| *v == var) {
                        self.sink.push(
                            Diagnostic::error(
                                "snn::dynamics::duplicate_ode",
                                format!("`{qualified}` has two differential equations"),
                                ode.span,
                                "second equation",
                            )
                            .with_label(*first, "first equation")
                            .with_help("combine the right-hand sides into one equation"),
                        );
                        continue;
                    }
                    self.odes.push((var, rhs, ode.span));
                }
                NeuronStmt::Update(block) => {
                    let updates = self.lower_block(block, env, "update");
                    self.pop.updates.extend(updates);
                }
                NeuronStmt::UpdateAfterSpike(block) => {
                    let updates = self.lower_block(block, env, "update after spike");
                    self.pop.after_spike.extend(updates);
                }
                NeuronStmt::SpikeWhen { condition, span } => self.lower_spike(condition, *span, env),
                NeuronStmt::On(on) => {
                    if on.event.name == "spike" {
                        let updates = self.lower_block(&on.body, env, "on spike");
                        self.pop.on_spike.extend(updates);
                        continue;
                    }
                    let qualified = format!("{prefix}{}", on.event.name);
                    let port = match env.names.get(&qualified).or_else(|| env.names.get(&on.event.name)) {
                        Some((Binding::Port(port), _)) => *port,
                        _ => {
                            let help = suggestion_help(
                                &on.event.name,
                                self.pop.ports.iter().map(String::as_str).chain(["spike"]),
                                format!("`on` takes `spike` or an input port ({})", self.pop.ports.join(", ")),
                            );
                            self.sink.push(
                                Diagnostic::error(
                                    "snn::names::unknown_port",
                                    format!("`{}` is not an input port of this neuron", on.event.name),
                                    on.event.span,
                                    "no such input",
                                )
                                .with_help(help),
                            );
                            continue;
                        }
                    };
                    env.used.borrow_mut().insert(qualified);
                    let updates = self.lower_block(&on.body, env, "input jump");
                    let additive = updates.iter().all(|u| self.is_additive(u, port));
                    self.pop.input_jumps.push(InputJump { port, updates, additive });
                }
                NeuronStmt::Refractory { period, span } => {
                    let (id, unit) = self.lowerer().lower(env, period);
                    self.lowerer().expect_unit(&unit, &Unit::time_ms(), period.span, "snn::units::mismatch", "a refractory period");
                    if self.pop.refractory.is_some() {
                        self.sink.push(
                            Diagnostic::error("snn::names::duplicate", "the refractory period is given twice", *span, "second one")
                                .with_help("keep one `refractory = ...`"),
                        );
                    }
                    self.pop.refractory = Some(id);
                }
                NeuronStmt::Compartment(compartment) => {
                    let inner_prefix = format!("{prefix}{}.", compartment.name.name);
                    let mut inner = Self::compartment_env(env, &inner_prefix);
                    self.walk(&compartment.body, &inner_prefix, &mut inner);
                    env.used.borrow_mut().extend(inner.used.borrow().iter().cloned());
                    for (name, entry) in inner.names {
                        if name.starts_with(&inner_prefix) && !env.names.contains_key(&name) {
                            env.names.insert(name, entry);
                        }
                    }
                }
                NeuronStmt::Observable { name, value, .. } => {
                    let (id, _) = self.lowerer().lower(env, value);
                    self.pop.observables.push((format!("{prefix}{}", name.name), id));
                }
            }
        }
    }

    fn state_var(&mut self, env: &Env, qualified: &str, span: Span, what: &str) -> Option<VarId> {
        match env.names.get(qualified) {
            Some((Binding::Var(var), _)) if matches!(self.pop.vars[var.0 as usize].kind, VarKind::State { .. }) => Some(*var),
            Some(_) => {
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::not_a_state",
                        format!("`{qualified}` is not a state variable"),
                        span,
                        format!("{what} can only change a `state`"),
                    )
                    .with_help(format!("declare it with `state {qualified} = ...`; parameters and inputs are read-only")),
                );
                None
            }
            None => {
                let states: Vec<&str> =
                    self.pop.vars.iter().filter(|v| matches!(v.kind, VarKind::State { .. })).map(|v| v.name.as_str()).collect();
                let help = suggestion_help(qualified, states.iter().copied(), format!("declare it with `state {qualified} = ...`"));
                self.sink.push(
                    Diagnostic::error("snn::names::unknown", format!("unknown name `{qualified}`"), span, "not found in this scope")
                        .with_help(help),
                );
                None
            }
        }
    }

    fn lower_block(&mut self, block: &ast::Block, env: &mut Env, what: &str) -> Vec<Update> {
        let mut updates = Vec::new();
        for stmt in &block.stmts {
            match stmt {
                Stmt::Assign { target, op, value, span } => {
                    let qualified = target.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(".");
                    let target_span = target[0].span.join(target[target.len() - 1].span);
                    let (value_id, value_unit) = self.lowerer().lower(env, value);
                    let Some(var) = self.state_var(env, &qualified, target_span, what) else { continue };
                    env.used.borrow_mut().insert(qualified.clone());
                    let var_unit = env.names[&qualified].1.clone();
                    let current = self.pop.exprs.push(Node::Var(var));
                    let new_value = match op {
                        AssignOp::Set => value_id,
                        AssignOp::Add => self.pop.exprs.push(Node::Binary(BinaryOp::Add, current, value_id)),
                        AssignOp::Sub => self.pop.exprs.push(Node::Binary(BinaryOp::Sub, current, value_id)),
                        AssignOp::Mul => self.pop.exprs.push(Node::Binary(BinaryOp::Mul, current, value_id)),
                    };
                    let expected = if *op == AssignOp::Mul { Unit::none() } else { var_unit.clone() };
                    if let Some(found) = &value_unit
                        && *found != expected
                    {
                        self.sink.push(
                            Diagnostic::error(
                                "snn::units::assignment",
                                format!("`{qualified} {}` expects {expected}, found {found}", op.symbol()),
                                value.span,
                                format!("this has unit {found}"),
                            )
                            .with_label(target_span, format!("`{qualified}` has unit {var_unit}"))
                            .with_help(crate::lower::expr::unit_help(&expected, found)),
                        );
                    }
                    let _ = span;
                    updates.push(Update { var, value: new_value });
                }
                Stmt::Let(let_) => {
                    let (id, unit) = self.lowerer().lower(env, &let_.value);
                    env.bind(&let_.name.name, Binding::Expr(id), unit.unwrap_or_else(Unit::none));
                    env.used.borrow_mut().insert(let_.name.name.clone());
                }
                Stmt::Deliver { span, .. } | Stmt::Call { span, .. } => {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::types::statement_not_allowed",
                            format!("this statement is not allowed in {what}"),
                            *span,
                            "not allowed here",
                        )
                        .with_help("neuron blocks contain assignments (`x = ...`, `x += ...`) and `let` bindings"),
                    );
                }
            }
        }
        updates
    }

    fn lower_spike(&mut self, condition: &ast::Expr, span: Span, env: &Env) {
        if let Some(first) = self.seen_spike {
            self.sink.push(
                Diagnostic::error("snn::names::duplicate", "the spike condition is given twice", span, "second condition")
                    .with_label(first, "first condition")
                    .with_help("combine them with `or` into one `spike when`"),
            );
            return;
        }
        self.seen_spike = Some(span);
        match self.lower_threshold(condition, env) {
            Some(threshold) => self.pop.threshold = Some(threshold),
            None => {
                // A condition that was written but not understood: the population still has
                // one, so that no later check adds "never spikes" errors to the one reported.
                let zero = self.pop.exprs.push(Node::Const(0.0));
                self.pop.threshold = Some(Threshold { lhs: zero, rhs: zero, op: BinaryOp::Gt });
            }
        }
    }

    /// A spike condition: one comparison, whose difference the surrogate gradient is taken
    /// of, optionally gated by conditions joined with `and` (the comparison counts only while
    /// they hold: its threshold is +infinity otherwise) or `or` (a spike whenever they hold:
    /// the threshold is -infinity then). `and` and `or` bind left to right as written, so
    /// `v > th and timer > t_ref or forced` spikes when `(v > th and timer > t_ref) or
    /// forced`.
    fn lower_threshold(&mut self, condition: &ast::Expr, env: &Env) -> Option<Threshold> {
        let mut inner = condition;
        while let ExprKind::Paren(e) = &inner.kind {
            inner = e;
        }
        let ExprKind::Binary { op, lhs, rhs } = &inner.kind else {
            self.report_spike_shape(condition.span);
            return None;
        };
        let (op, lhs, rhs) = match op {
            BinaryOp::Gt | BinaryOp::Ge => (*op, lhs, rhs),
            BinaryOp::Lt => (BinaryOp::Gt, rhs, lhs),
            BinaryOp::Le => (BinaryOp::Ge, rhs, lhs),
            BinaryOp::And | BinaryOp::Or => {
                let gated = self.lower_threshold(lhs, env)?;
                let (gate, gate_unit) = self.lowerer().lower(env, rhs);
                if gate_unit.as_ref().is_some_and(|u| !u.is_none()) {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::spike::gate",
                            format!("`{}` in a spike condition joins a condition, but this is a quantity", op.symbol()),
                            rhs.span,
                            "not a condition",
                        )
                        .with_help("gate the comparison with another comparison, e.g. `spike when v > th and timer > t_ref`"),
                    );
                    return None;
                }
                // Closed gate under `and`: a threshold nothing crosses; open gate under `or`:
                // one everything crosses.
                let bound = self.pop.exprs.push(Node::Const(if *op == BinaryOp::And { f64::INFINITY } else { f64::NEG_INFINITY }));
                let args = if *op == BinaryOp::And { vec![gate, gated.rhs, bound] } else { vec![gate, bound, gated.rhs] };
                let rhs = self.pop.exprs.push(Node::Call(Func::Select, args));
                return Some(Threshold { rhs, ..gated });
            }
            _ => {
                self.report_spike_shape(condition.span);
                return None;
            }
        };
        let (lhs_id, lhs_unit) = self.lowerer().lower(env, lhs);
        let (rhs_id, rhs_unit) = self.lowerer().lower(env, rhs);
        if let (Some(a), Some(b)) = (&lhs_unit, &rhs_unit)
            && a != b
        {
            self.sink.push(
                Diagnostic::error(
                    "snn::units::threshold",
                    format!("the spike condition compares {a} with {b}"),
                    rhs.span,
                    format!("this has unit {b}"),
                )
                .with_label(lhs.span, format!("this has unit {a}"))
                .with_help("a threshold must have the unit of the quantity it is compared with"),
            );
        }
        Some(Threshold { lhs: lhs_id, rhs: rhs_id, op })
    }

    fn report_spike_shape(&mut self, span: Span) {
        self.sink.push(
            Diagnostic::error(
                "snn::spike::not_a_comparison",
                "a spike condition must compare two values with `>`, `>=`, `<` or `<=`",
                span,
                "not a comparison",
            )
            .with_help(
                "write it as `spike when v > threshold`, the surrogate gradient taken of the difference, gated if need be with \
                 `and` or `or` and further conditions: `spike when v > threshold and timer > t_ref`",
            ),
        );
    }

    /// `x <- x + c * port` (or `x - c * port`) where `c` reads no state.
    fn is_additive(&self, update: &Update, port: PortId) -> bool {
        let exprs = &self.pop.exprs;
        let is_state = |v: VarId| matches!(self.pop.vars[v.0 as usize].kind, VarKind::State { .. });
        match exprs.get(update.value) {
            Node::Binary(BinaryOp::Add | BinaryOp::Sub, a, b) => {
                *exprs.get(*a) == Node::Var(update.var) && !exprs.reads(*b, &is_state) && reads_port(exprs, *b, port)
            }
            _ => false,
        }
    }

    /// Turns the collected differential equations into per-step updates.
    fn discretise(&mut self) {
        let odes = std::mem::take(&mut self.odes);
        self.pop.odes = odes.iter().map(|(var, rhs, _)| (*var, *rhs)).collect();
        let ode_vars: Vec<VarId> = odes.iter().map(|(v, _, _)| *v).collect();
        let forms: Vec<Option<Affine>> = odes.iter().map(|(_, rhs, _)| affine(&mut self.pop.exprs, *rhs, &ode_vars)).collect();
        let dt = self.pop.exprs.push(Node::Const(self.dt));
        for (index, (var, rhs, span)) in odes.iter().enumerate() {
            let exprs = &mut self.pop.exprs;
            let x = exprs.push(Node::Var(*var));
            let (value, integration) = match &forms[index] {
                Some(form) => {
                    // x' = a x + sum_y k_y y + b
                    let a = form.coeff(*var).unwrap_or_else(|| exprs.push(Node::Const(0.0)));
                    let others: Vec<(VarId, ExprId)> = form.terms.iter().filter(|(v, _)| v != var).cloned().collect();
                    // Exact when every other state this one reads decays on its own (y' = c y).
                    let decays: Option<Vec<(VarId, ExprId, ExprId)>> = others
                        .iter()
                        .map(|(y, k)| {
                            let position = ode_vars.iter().position(|v| v == y)?;
                            let other = forms[position].as_ref()?;
                            let pure = other.terms.len() == 1 && other.terms[0].0 == *y && exprs.constant(other.constant) == Some(0.0);
                            pure.then(|| (*y, *k, other.terms[0].1))
                        })
                        .collect();
                    let a_dt = exprs.push(Node::Binary(BinaryOp::Mul, a, dt));
                    let decay = exprs.push(Node::Call(ir::Func::Exp, vec![a_dt]));
                    let mut value = exprs.push(Node::Binary(BinaryOp::Mul, x, decay));
                    let exact = decays.is_some() || others.is_empty();
                    // Constant drive b: b (e^{a dt} - 1) / a, or b dt when a = 0.
                    let mut drive = form.constant;
                    if !exact {
                        for (y, k) in &others {
                            let y_node = exprs.push(Node::Var(*y));
                            let term = exprs.push(Node::Binary(BinaryOp::Mul, *k, y_node));
                            drive = exprs.push(Node::Binary(BinaryOp::Add, drive, term));
                        }
                    }
                    if exprs.constant(drive) != Some(0.0) {
                        let term = if exprs.constant(a) == Some(0.0) {
                            exprs.push(Node::Binary(BinaryOp::Mul, drive, dt))
                        } else {
                            let one = exprs.push(Node::Const(1.0));
                            let grow = exprs.push(Node::Binary(BinaryOp::Sub, decay, one));
                            let scaled = exprs.push(Node::Binary(BinaryOp::Div, grow, a));
                            exprs.push(Node::Binary(BinaryOp::Mul, drive, scaled))
                        };
                        value = exprs.push(Node::Binary(BinaryOp::Add, value, term));
                    }
                    if let Some(decays) = decays {
                        // k y (e^{c dt} - e^{a dt}) / (c - a)
                        for (y, k, c) in decays {
                            let y_node = exprs.push(Node::Var(y));
                            let c_dt = exprs.push(Node::Binary(BinaryOp::Mul, c, dt));
                            let decay_y = exprs.push(Node::Call(ir::Func::Exp, vec![c_dt]));
                            let diff = exprs.push(Node::Binary(BinaryOp::Sub, decay_y, decay));
                            let gap = exprs.push(Node::Binary(BinaryOp::Sub, c, a));
                            let ratio = exprs.push(Node::Binary(BinaryOp::Div, diff, gap));
                            let ky = exprs.push(Node::Binary(BinaryOp::Mul, k, y_node));
                            let term = exprs.push(Node::Binary(BinaryOp::Mul, ky, ratio));
                            value = exprs.push(Node::Binary(BinaryOp::Add, value, term));
                        }
                    }
                    (value, if exact { Integration::Exact } else { Integration::ExponentialEuler })
                }
                None => {
                    let step = exprs.push(Node::Binary(BinaryOp::Mul, *rhs, dt));
                    let value = exprs.push(Node::Binary(BinaryOp::Add, x, step));
                    let name = self.pop.vars[var.0 as usize].name.clone();
                    self.sink.push(
                        Diagnostic::warning(
                            "snn::lint::euler",
                            format!("the dynamics of `{name}` are not linear; they are integrated with forward Euler"),
                            *span,
                            "non-linear right-hand side",
                        )
                        .with_help("keep dt well below the fastest time constant, or rewrite the dynamics in linear form"),
                    );
                    (value, Integration::Euler)
                }
            };
            self.pop.dynamics.push((Update { var: *var, value }, integration));
        }
    }
}
