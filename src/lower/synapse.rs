//! Synapse definitions: plastic weights, traces, `on pre` / `on post` updates and delivery.

use std::collections::BTreeMap;

use crate::front::ast::{self, AssignOp, BinaryOp, Stmt, SynapseStmt};
use crate::front::diag::{Diagnostic, suggestion_help};
use crate::front::units::Unit;
use crate::ir::{self, Exprs, Init, Node, Update, Var, VarId, VarKind};
use crate::lower::Sink;
use crate::lower::expr::{Binding, Env, Lowerer};
use crate::lower::neuron::{Override, declared_unit, lower_init};

pub fn lower_synapse(
    synapse: &ast::Synapse,
    overrides: &BTreeMap<String, Override>,
    port_unit: Option<&Unit>,
    dt: f64,
    sink: &mut Sink,
) -> ir::SynapseModel {
    let mut model = ir::SynapseModel {
        name: synapse.name.name.clone(),
        vars: Vec::new(),
        traces: Vec::new(),
        conductance: false,
        exprs: Exprs::default(),
        on_pre: Vec::new(),
        on_post: Vec::new(),
        delivers: None,
    };
    let mut env = Env::with_builtins(true);
    env.bind("dt", Binding::Const(dt), Unit::time_ms());
    let init_env = Env::with_builtins(false);
    let mut state_units: BTreeMap<String, Unit> = BTreeMap::new();
    let mut trace_names = Vec::new();
    for stmt in &synapse.body {
        match stmt {
            SynapseStmt::Param(param) => {
                let unit = declared_unit(&param.unit);
                let value = match (overrides.get(&param.name.name), &param.default) {
                    (Some(given), _) => given.init.clone(),
                    (None, Some(default)) => {
                        let (init, found) = lower_init(default, &init_env, sink);
                        let mut exprs = Exprs::default();
                        Lowerer { sink, exprs: &mut exprs }.expect_unit(
                            &found,
                            &unit,
                            default.span,
                            "snn::units::mismatch",
                            "a parameter default",
                        );
                        init
                    }
                    (None, None) => Init::Const(0.0),
                };
                let binding = match value {
                    Init::Const(value) => Binding::Const(value),
                    _ => Binding::Const(0.0),
                };
                env.bind(&param.name.name, binding, unit);
            }
            SynapseStmt::State(state) => {
                if state.name.name == "w"
                    && let Some(init) = &state.init
                {
                    sink.push(
                        Diagnostic::warning(
                            "snn::lint::weight_init_ignored",
                            "the weight `w` starts at the connection's weights; this initial value is not used",
                            init.span,
                            "not used",
                        )
                        .with_help("write `state w` and give the initial weights with the connection's `init`"),
                    );
                }
                let unit = declared_unit(&state.unit);
                let init = state.init.as_ref().map_or(Init::Const(0.0), |e| lower_init(e, &init_env, sink).0);
                model
                    .vars
                    .push(Var { name: state.name.name.clone(), kind: VarKind::State { init, persistent: false, frozen_in_eval: false } });
                env.bind(&state.name.name, Binding::Var(VarId(model.vars.len() as u32 - 1)), unit.clone());
                state_units.insert(state.name.name.clone(), unit);
            }
            SynapseStmt::Trace { name, key, value, .. } => {
                if key.name != "tau" {
                    sink.push(
                        Diagnostic::error(
                            "snn::synapse::trace_key",
                            format!("unknown trace setting `{}`", key.name),
                            key.span,
                            "expected `tau`",
                        )
                        .with_help("write `trace pre: tau = 20 ms`"),
                    );
                }
                let mut exprs = Exprs::default();
                let mut lowerer = Lowerer { sink, exprs: &mut exprs };
                let (id, unit) = lowerer.lower(&env, value);
                lowerer.expect_unit(&unit, &Unit::time_ms(), value.span, "snn::units::mismatch", "a trace time constant");
                let tau = exprs.constant(id).unwrap_or(f64::NAN);
                if !(tau > 0.0 && tau.is_finite()) {
                    sink.push(
                        Diagnostic::error(
                            "snn::synapse::trace_tau",
                            format!("trace `{}` needs a constant time constant above zero", name.name),
                            value.span,
                            "no decay",
                        )
                        .with_help("a trace decays between spikes: write `trace pre: tau = 20 ms`"),
                    );
                }
                model.traces.push((name.name.clone(), tau));
                trace_names.push(name.name.clone());
            }
            SynapseStmt::Delivers { delivery, .. } => model.conductance = *delivery == ast::Delivery::Conductance,
            SynapseStmt::On(_) => {}
        }
    }
    // The weight: the connection's weights are the synapse's state `w` (initial values from the
    // connection's `init`; bounds are what its rule says, e.g. `clip(w, 0, w_max)`).
    let missing_weight = !model.vars.iter().any(|v| v.name == "w");
    if missing_weight {
        sink.push(
            Diagnostic::error(
                "snn::synapse::no_weight",
                format!("synapse `{}` has no weight: declare `state w`", synapse.name.name),
                synapse.name.span,
                "no `w`",
            )
            .with_help("a synapse's weight is its state `w`; the connection's `init` gives its initial values"),
        );
        // Bound quietly from here on, in the unit the port takes: `deliver w` and `w += ...`
        // report nothing more.
        model
            .vars
            .push(Var { name: "w".to_string(), kind: VarKind::State { init: Init::Const(0.0), persistent: false, frozen_in_eval: false } });
        let unit = port_unit.cloned().unwrap_or_else(Unit::none);
        env.bind("w", Binding::Var(VarId(model.vars.len() as u32 - 1)), unit.clone());
        state_units.insert("w".to_string(), unit);
    }
    for (index, name) in trace_names.iter().enumerate() {
        let id = VarId((model.vars.len() + index) as u32);
        env.bind(name, Binding::Var(id), Unit::none());
        state_units.insert(name.clone(), Unit::none());
    }
    for stmt in &synapse.body {
        let SynapseStmt::On(on) = stmt else { continue };
        let pre = match on.event.name.as_str() {
            "pre" => true,
            "post" => false,
            _ => {
                let help = suggestion_help(&on.event.name, ["pre", "post"], "a synapse reacts to `pre` and `post` spikes".to_string());
                sink.push(
                    Diagnostic::error(
                        "snn::synapse::unknown_event",
                        format!("a synapse has no event `{}`", on.event.name),
                        on.event.span,
                        "unknown event",
                    )
                    .with_help(help),
                );
                continue;
            }
        };
        for stmt in &on.body.stmts {
            let mut lowerer = Lowerer { sink, exprs: &mut model.exprs };
            match stmt {
                Stmt::Deliver { value, span } => {
                    let (id, unit) = lowerer.lower(&env, value);
                    if !pre {
                        lowerer.error(
                            Diagnostic::error("snn::synapse::deliver_on_post", "`deliver` belongs in `on pre`", *span, "in `on post`")
                                .with_help("a synapse delivers its weight when the presynaptic neuron spikes"),
                        );
                    }
                    if let (Some(port_unit), Some(unit)) = (port_unit, &unit)
                        && port_unit != unit
                    {
                        lowerer.error(
                            Diagnostic::error(
                                "snn::units::weight",
                                format!("the synapse delivers {unit} into a port in {port_unit}"),
                                value.span,
                                format!("this has unit {unit}"),
                            )
                            .with_help(format!("give the synapse's weight the unit {port_unit}")),
                        );
                    }
                    model.delivers = Some(id);
                }
                Stmt::Assign { target, op, value, .. } => {
                    let name = target.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(".");
                    let (value_id, unit) = lowerer.lower(&env, value);
                    let Some((Binding::Var(var), var_unit)) = env.names.get(&name).cloned() else {
                        let help = suggestion_help(
                            &name,
                            state_units.keys().map(String::as_str),
                            "declare it with `state` or `trace`".to_string(),
                        );
                        lowerer.error(
                            Diagnostic::error(
                                "snn::names::not_a_state",
                                format!("`{name}` is not a synapse state or trace"),
                                target[0].span,
                                "cannot assign",
                            )
                            .with_help(help),
                        );
                        continue;
                    };
                    if *op != AssignOp::Mul && !(missing_weight && name == "w") {
                        lowerer.expect_unit(&unit, &var_unit, value.span, "snn::units::assignment", &format!("assignment to `{name}`"));
                    }
                    let current = lowerer.exprs.push(Node::Var(var));
                    let new_value = match op {
                        AssignOp::Set => value_id,
                        AssignOp::Add => lowerer.exprs.push(Node::Binary(BinaryOp::Add, current, value_id)),
                        AssignOp::Sub => lowerer.exprs.push(Node::Binary(BinaryOp::Sub, current, value_id)),
                        AssignOp::Mul => lowerer.exprs.push(Node::Binary(BinaryOp::Mul, current, value_id)),
                    };
                    let update = Update { var, value: new_value };
                    if pre { model.on_pre.push(update) } else { model.on_post.push(update) }
                }
                Stmt::Let(let_) => {
                    let (id, unit) = lowerer.lower(&env, &let_.value);
                    env.bind(&let_.name.name, Binding::Expr(id), unit.unwrap_or_else(Unit::none));
                }
                Stmt::Call { span, .. } => lowerer.error(
                    Diagnostic::error("snn::types::statement_not_allowed", "a call is not a statement here", *span, "not allowed here")
                        .with_help("synapse blocks contain `deliver`, assignments and `let` bindings"),
                ),
            }
        }
    }
    // The connection delivers its weight on a presynaptic spike: a synapse says so with
    // `deliver w`; anything else would be ignored at run time, so it is an error.
    let w = model.vars.iter().position(|v| v.name == "w").map(|i| VarId(i as u32));
    let delivers_w = model.delivers.is_some_and(|id| w.is_some_and(|w| *model.exprs.get(id) == Node::Var(w)));
    // A block under an unknown event (reported) may be where the `deliver` is.
    let unknown_event =
        synapse.body.iter().any(|stmt| matches!(stmt, SynapseStmt::On(on) if !matches!(on.event.name.as_str(), "pre" | "post")));
    if !missing_weight && !delivers_w && !unknown_event {
        sink.push(
            Diagnostic::error(
                "snn::synapse::deliver_weight",
                format!("synapse `{}` must deliver its weight: `deliver w` in `on pre`", synapse.name.name),
                synapse.name.span,
                "does not deliver `w`",
            )
            .with_help("the connection adds the weight `w` to the target's port on a presynaptic spike; scale it with the connection's `init` or the neuron's jump"),
        );
    }
    model
}
