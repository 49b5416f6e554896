//! The learning method of a train block and the checks that the model supports it.

use std::collections::BTreeMap;

use crate::front::ast::{self, ExprKind, Span};
use crate::front::diag::{Diagnostic, suggestion_help};
use crate::ir::train::*;
use crate::ir::{Integration, Module};
use crate::lower::surrogate::lower_surrogate;
use crate::lower::{Program, Sink};

use super::{METHODS, const_number, named_args};

pub(super) fn lower_method(
    program: &Program,
    module: &Module,
    source_map: &crate::lower::SourceMap,
    expr: &ast::Expr,
    sink: &mut Sink,
) -> Option<Method> {
    let (name, args) = match &expr.kind {
        ExprKind::Call { func, args } => (func, args.as_slice()),
        ExprKind::Path(p) if p.len() == 1 => (&p[0], &[][..]),
        _ => {
            sink.push(
                Diagnostic::error("snn::train::bad_method", "`method` names a learning method", expr.span, "not a method")
                    .with_help(format!("methods: {}", METHODS.join(", "))),
            );
            return None;
        }
    };
    let named = named_args(args);
    let surrogate = |sink: &mut Sink| -> Option<Surrogate> {
        let Some(expr) = named.get("surrogate") else {
            sink.push(
                Diagnostic::error(
                    "snn::method::missing_surrogate",
                    format!("`{}` needs a surrogate gradient", name.name),
                    name.span,
                    "no surrogate",
                )
                .with_help(format!("write `{}(surrogate = fast_sigmoid(slope = 25))` and import std::surrogates", name.name)),
            );
            return None;
        };
        let (sname, sargs) = match &expr.kind {
            ExprKind::Call { func, args } => (func, args.as_slice()),
            ExprKind::Path(p) if p.len() == 1 => (&p[0], &[][..]),
            _ => return None,
        };
        let Some(def) = program.surrogates.get(&sname.name) else {
            if program.is_broken("surrogate", &sname.name) {
                return None;
            }
            let help = suggestion_help(
                &sname.name,
                program.surrogates.keys().map(String::as_str),
                "import std::surrogates, or define it with `surrogate`".to_string(),
            );
            sink.push(
                Diagnostic::error(
                    "snn::names::unknown_surrogate",
                    format!("unknown surrogate `{}`", sname.name),
                    sname.span,
                    "no such surrogate",
                )
                .with_help(help),
            );
            return None;
        };
        let mut overrides = BTreeMap::new();
        for arg in sargs {
            let Some(arg_name) = &arg.name else { continue };
            if !def.def.params.iter().any(|p| p.name.name == arg_name.name) {
                let help = suggestion_help(
                    &arg_name.name,
                    def.def.params.iter().map(|p| p.name.name.as_str()),
                    "check the surrogate's parameters".to_string(),
                );
                sink.push(
                    Diagnostic::error(
                        "snn::call::unknown_argument",
                        format!("`{}` has no parameter `{}`", sname.name, arg_name.name),
                        arg_name.span,
                        "unknown parameter",
                    )
                    .with_help(help),
                );
                continue;
            }
            match const_number(&arg.value) {
                Some((value, _)) => {
                    overrides.insert(arg_name.name.clone(), value);
                }
                None => sink.push(
                    Diagnostic::error("snn::types::not_constant", "surrogate parameters are numbers", arg.value.span, "not a number")
                        .with_help("for example `fast_sigmoid(slope = 25)`"),
                ),
            }
        }
        let mut quiet = Sink { diagnostics: sink.diagnostics, file: sink.file.clone(), main: sink.main.clone(), enabled: false };
        Some(lower_surrogate(&def.def, &overrides, &mut quiet))
    };
    let number = |key: &str, default: f64| named.get(key).and_then(|e| const_number(e)).map_or(default, |v| v.0);
    if matches!(name.name.as_str(), "bptt" | "fptt") {
        check_no_plasticity(program, module, source_map, name, sink);
    }
    if matches!(name.name.as_str(), "bptt" | "fptt" | "eventprop") {
        check_no_persistent_state(program, module, source_map, name, sink);
    }
    let method = match name.name.as_str() {
        "bptt" => Method::Bptt { surrogate: surrogate(sink)? },
        "fptt" => {
            // FPTT's settings: a whole number of updates per sample, a regulariser weight that
            // is not negative, a running-mean rate in (0, 1].
            let checks: [FpttSetting; 5] = [
                (
                    "updates",
                    10.0,
                    |v| v >= 1.0 && v.fract() == 0.0,
                    "`updates` is how many windows a sample is cut into: a whole number, at least 1",
                ),
                ("alpha", 0.2, |v| v >= 0.0 && v.is_finite(), "`alpha` weighs the regulariser: 0 (none) or more"),
                ("beta", 0.5, |v| v > 0.0 && v <= 1.0, "`beta` is the running mean's rate: above 0 and at most 1 (the authors use 0.5)"),
                (
                    "rho",
                    0.5,
                    |v| (0.0..=1.0).contains(&v),
                    "`rho` sets the correction's lean `rho - 1`: from 0 to 1 (Kag & Saligrama use beta, seeds/000's code 0)",
                ),
                (
                    "truncate",
                    1.0,
                    |v| v >= 1.0 && v.fract() == 0.0,
                    "`truncate` is how many steps BPTT runs back inside a window before the state is detached: a whole number, at least 1",
                ),
            ];
            for (key, _, valid, help) in checks {
                if let Some(arg) = named.get(key)
                    && let Some((value, _)) = const_number(arg)
                    && !valid(value)
                {
                    sink.push(
                        Diagnostic::error(
                            "snn::method::fptt_setting",
                            format!("`{key} = {value}` is not a valid FPTT setting"),
                            arg.span,
                            "out of range",
                        )
                        .with_help(help),
                    );
                }
            }
            Method::Fptt {
                surrogate: surrogate(sink)?,
                updates: number("updates", checks[0].1).max(1.0) as usize,
                alpha: number("alpha", checks[1].1),
                beta: number("beta", checks[2].1),
                // Kag & Saligrama's form leans the correction by `beta - 1`.
                rho: number("rho", number("beta", checks[2].1)),
                truncate: named.get("truncate").and_then(|e| const_number(e)).map(|v| v.0.max(1.0) as usize),
            }
        }
        "eventprop" => {
            check_eventprop(module, name.span, sink);
            Method::EventProp
        }
        "stdp" => {
            if !module.projections.iter().any(|p| p.synapse.is_some()) {
                sink.push(
                    Diagnostic::error(
                        "snn::method::stdp_without_plasticity",
                        "`stdp` needs at least one plastic connection",
                        name.span,
                        "nothing to learn",
                    )
                    .with_help("attach a plastic synapse to a connection: `connect pixels -> exc.exc : dense via DiehlCookStdp`"),
                );
            }
            check_plastic_sources(program, module, source_map, sink);
            Method::Stdp
        }
        other => {
            let help = suggestion_help(other, METHODS, format!("methods: {}", METHODS.join(", ")));
            sink.push(
                Diagnostic::error("snn::names::unknown_method", format!("unknown learning method `{other}`"), name.span, "no such method")
                    .with_help(help),
            );
            return None;
        }
    };
    Some(method)
}

/// Gradient methods learn weights by gradient descent: a plastic synapse (`via`) would be
/// silently ignored, so it is an error at the connection.
pub(super) fn check_no_plasticity(
    program: &Program,
    module: &Module,
    source_map: &crate::lower::SourceMap,
    method: &ast::Ident,
    sink: &mut Sink,
) {
    for (index, proj) in module.projections.iter().enumerate() {
        let (Some(synapse), Some(span)) = (&proj.synapse, source_map.projections.get(index)) else { continue };
        let mut diagnostic = Diagnostic::error(
            "snn::method::plasticity_under_gradient",
            format!("`{}` learns by gradient; the plastic synapse `{}` on this connection would do nothing", method.name, synapse.name),
            *span,
            "plastic connection",
        )
        .with_help(format!("drop `via {}` to train this connection by gradient, or use `method = stdp`", synapse.name));
        diagnostic.source = Some(program.file(program.networks[0].file));
        sink.diagnostics.push(diagnostic);
    }
}

/// A plastic synapse reacts to presynaptic spikes, and runs on dense connections: a plastic
/// connection from an input that delivers a current (`repeat`, `dropout`) or with another
/// connectivity is an error at the connection.
fn check_plastic_sources(program: &Program, module: &Module, source_map: &crate::lower::SourceMap, sink: &mut Sink) {
    for (index, proj) in module.projections.iter().enumerate() {
        let (Some(synapse), Some(span)) = (&proj.synapse, source_map.projections.get(index)) else { continue };
        let problem = match &proj.source {
            crate::ir::Source::Input(id) if module.inputs[id.0 as usize].kind == crate::ir::EncoderKind::Current => Some((
                format!(
                    "the plastic synapse `{synapse}` needs presynaptic spikes, but `{}` delivers a current",
                    module.source_name(&proj.source),
                    synapse = synapse.name
                ),
                "encode the input as spikes (`poisson`, `bernoulli`, `latency`), or drop `via`".to_string(),
            )),
            crate::ir::Source::State(_) => Some((
                format!("the plastic synapse `{}` needs presynaptic spikes, but this connection carries a state", synapse.name),
                format!("connect the population's spikes (`{}`), or drop `via`", module.source_name(&proj.source)),
            )),
            _ if proj.connectivity != crate::ir::Connectivity::Dense => Some((
                format!("the plastic synapse `{}` runs on dense connections only", synapse.name),
                "connect with `dense`, or drop `via`".to_string(),
            )),
            _ => None,
        };
        if let Some((message, help)) = problem {
            let mut diagnostic =
                Diagnostic::error("snn::method::plasticity_unsupported", message, *span, "plastic connection").with_help(help);
            diagnostic.source = Some(program.file(program.networks[0].file));
            sink.diagnostics.push(diagnostic);
        }
    }
}

/// Gradient methods restart every state for each sample and differentiate through one
/// sample: a state carried from sample to sample (`persistent`) has no gradient there, so it
/// is an error at the population.
fn check_no_persistent_state(
    program: &Program,
    module: &Module,
    source_map: &crate::lower::SourceMap,
    method: &ast::Ident,
    sink: &mut Sink,
) {
    for (index, pop) in module.populations.iter().enumerate() {
        let persistent: Vec<&str> = pop
            .vars
            .iter()
            .filter(|v| matches!(v.kind, crate::ir::VarKind::State { persistent: true, .. }))
            .map(|v| v.name.as_str())
            .collect();
        let (Some(first), Some(span)) = (persistent.first(), source_map.populations.get(index)) else { continue };
        let mut diagnostic = Diagnostic::error(
            "snn::method::persistent_under_gradient",
            format!("`{}` restarts every state for each sample, but `{}.{first}` ({}) is persistent", method.name, pop.name, pop.neuron),
            *span,
            "persistent state",
        )
        .with_help(format!(
            "persistent state is learned by `method = stdp`; for `{}`, drop `persistent` from {} in `{}`",
            method.name,
            persistent.iter().map(|v| format!("`{v}`")).collect::<Vec<_>>().join(", "),
            pop.neuron
        ));
        diagnostic.source = Some(program.file(program.networks[0].file));
        sink.diagnostics.push(diagnostic);
    }
}

/// EventProp needs linear, exactly integrable dynamics with additive input jumps (seeds/002),
/// and its exact-time runtime a feed-forward network of dense connections without delays fed
/// by spike times.
/// An FPTT setting: its name, default, valid values and what to say when it is not.
type FpttSetting = (&'static str, f64, fn(f64) -> bool, &'static str);

pub(super) fn check_eventprop(module: &Module, span: Span, sink: &mut Sink) {
    for input in &module.inputs {
        // Binned events change every step: no one spike time per element.
        if input.kind != crate::ir::EncoderKind::SpikeAt || input.per_step {
            sink.push(
                Diagnostic::error(
                    "snn::method::eventprop_input",
                    format!("EventProp runs with exact spike times, but input `{}` does not give a spike time per element", input.name),
                    span,
                    "exact spike times need spike-time inputs",
                )
                .with_help("encode the input with `latency(...)`, or train with `bptt`"),
            );
        }
    }
    for proj in &module.projections {
        let source = module.source_name(&proj.source).to_string();
        let target = &module.populations[proj.target.0 as usize].name;
        let why = if proj.connectivity != crate::ir::Connectivity::Dense {
            Some("is not dense")
        } else if proj.delay_steps > 0 {
            Some("has a delay")
        } else if matches!(proj.source, crate::ir::Source::State(_)) {
            Some("carries a state, not spikes")
        } else if matches!(proj.source, crate::ir::Source::Population(q) if q.0 >= proj.target.0) {
            Some("feeds back")
        } else {
            None
        };
        if let Some(why) = why {
            sink.push(
                Diagnostic::error(
                    "snn::method::eventprop_topology",
                    format!("EventProp runs feed-forward networks of dense connections, but the connection `{source} -> {target}` {why}"),
                    span,
                    "exact spike times need a feed-forward network",
                )
                .with_help("connect each population densely from inputs or earlier populations, without delays, or train with `bptt`"),
            );
        }
    }
    for pop in &module.populations {
        if pop.refractory.is_some() {
            sink.push(
                Diagnostic::error(
                    "snn::method::eventprop_refractory",
                    format!("EventProp has no adjoint for a refractory period yet, but `{}` ({}) has one", pop.name, pop.neuron),
                    span,
                    "refractory neuron",
                )
                .with_help("drop the neuron's `refractory` line, or train with `bptt`"),
            );
        }
        let Some(threshold) = &pop.threshold else {
            continue;
        };
        if pop.exprs.calls(threshold.lhs, crate::ir::Func::Select) || pop.exprs.calls(threshold.rhs, crate::ir::Func::Select) {
            sink.push(
                Diagnostic::error(
                    "snn::method::eventprop_gated_threshold",
                    format!(
                        "EventProp takes spike times from a smooth threshold crossing, but `{}` ({}) has a gated one",
                        pop.name, pop.neuron
                    ),
                    span,
                    "spike condition with `and`, `or` or `select`",
                )
                .with_help("compare the state with a threshold alone (`spike when v > threshold`), or train with `bptt`"),
            );
        }
        for (update, integration) in &pop.dynamics {
            if *integration != Integration::Exact {
                sink.push(
                    Diagnostic::error(
                        "snn::method::eventprop_nonlinear",
                        format!(
                            "EventProp needs linear dynamics, but `{}` ({}) integrates `{}` with {integration:?}",
                            pop.name, pop.neuron, pop.vars[update.var.0 as usize].name
                        ),
                        span,
                        "exact gradients need linear dynamics",
                    )
                    .with_help("use a neuron with linear dynamics such as CubaLIF, or train with `bptt`"),
                );
            }
        }
        if !pop.updates.is_empty() {
            sink.push(
                Diagnostic::error(
                    "snn::method::eventprop_discrete",
                    format!("EventProp needs continuous dynamics, but `{}` ({}) uses `update` blocks", pop.name, pop.neuron),
                    span,
                    "per-step updates",
                )
                .with_help("write the dynamics as `dv/dt = ...`, or train with `bptt`"),
            );
        }
        for (port_index, port) in pop.ports.iter().enumerate() {
            let driven = module.projections.iter().any(|p| {
                p.target.0 as usize == module.populations.iter().position(|q| q == pop).unwrap_or(usize::MAX)
                    && p.port.0 as usize == port_index
            });
            let jump = pop.input_jumps.iter().find(|j| j.port.0 as usize == port_index);
            let ok = jump.is_some_and(|j| j.additive);
            if driven && !ok {
                sink.push(
                    Diagnostic::error(
                        "snn::method::eventprop_non_additive_jump",
                        format!(
                            "EventProp needs additive input jumps, but input `{port}` of `{}` ({}) is not added to a state",
                            pop.name, pop.neuron
                        ),
                        span,
                        "the adjoint needs `on port { x += port }`",
                    )
                    .with_help(format!("give the neuron `on {port} {{ i += {port} }}`, or train with `bptt`")),
                );
            }
        }
    }
}
