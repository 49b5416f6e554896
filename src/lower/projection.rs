//! Projections: `connect` statements with their connectivity, weights (initialisers, fixed
//! values and units), flags (feedback, delay, trainable) and plastic synapses, shape-checked.

use std::collections::BTreeMap;

use crate::front::ast::{self, ConnFlag, Span};
use crate::front::diag::{Diagnostic, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::{self, Connectivity, Exprs, Hw, Init, InputId, Module, PopId, PortId, Projection, Source};
use crate::lower::expr::{Env, Lowerer};
use crate::lower::network::{CONNECTIVITIES, NetInfo};
use crate::lower::neuron::{Override, lower_init};
use crate::lower::synapse::lower_synapse;
use crate::lower::{Program, Sink};

pub(crate) fn lower_connect(
    program: &Program,
    module: &Module,
    info: &NetInfo,
    connect: &ast::Connect,
    sink: &mut Sink,
) -> Option<Projection> {
    // A transform first: its name, then that it has a state to transform.
    if let Some(transform) = &connect.source_transform {
        if !SOURCE_TRANSFORMS.contains(&transform.name.as_str()) {
            let help = suggestion_help(
                &transform.name,
                SOURCE_TRANSFORMS.iter().copied(),
                format!("a connection may apply {}", SOURCE_TRANSFORMS.join(", ")),
            );
            sink.push(
                Diagnostic::error(
                    "snn::names::unknown_transform",
                    format!("unknown transform `{}`", transform.name),
                    transform.span,
                    "not a transform",
                )
                .with_help(help),
            );
            return None;
        }
        if module.inputs.iter().any(|i| i.name == connect.source.name) {
            sink.push(
                Diagnostic::error(
                    "snn::network::state_source",
                    format!("`{}` transforms a state, but `{}` is an input, which carries none", transform.name, connect.source.name),
                    connect.source.span,
                    "an input",
                )
                .with_help(format!("connect the input itself: `connect {} -> ...`", connect.source.name)),
            );
            return None;
        }
    }
    if let Some(transform) = &connect.source_transform
        && connect.source_var.is_none()
    {
        let state = module
            .populations
            .iter()
            .find(|p| p.name == connect.source.name)
            .and_then(|p| state_names(p).first().map(|s| s.to_string()))
            .unwrap_or_else(|| "v".to_string());
        sink.push(
            Diagnostic::error(
                "snn::network::state_source",
                format!("`{}` transforms a state, but `{}` names spikes", transform.name, connect.source.name),
                connect.source.span,
                "spikes, not a state",
            )
            .with_help(format!("name the state it carries, e.g. `{}({}.{state})`", transform.name, connect.source.name)),
        );
        return None;
    }
    let all_names: Vec<&str> =
        module.inputs.iter().map(|i| i.name.as_str()).chain(module.populations.iter().map(|p| p.name.as_str())).collect();
    let source = if let Some(index) = module.inputs.iter().position(|i| i.name == connect.source.name) {
        if let Some(var) = &connect.source_var {
            sink.push(
                Diagnostic::error(
                    "snn::network::state_source",
                    format!("`{}` is an input, which carries no state `{}`", connect.source.name, var.name),
                    var.span,
                    "not a state",
                )
                .with_help(format!("connect the input itself: `connect {} -> ...`", connect.source.name)),
            );
            None
        } else {
            Some(Source::Input(InputId(index as u32)))
        }
    } else if let Some(index) = module.populations.iter().position(|p| p.name == connect.source.name) {
        lower_population_source(program, module, connect, PopId(index as u32), sink)
    } else {
        let help =
            suggestion_help(&connect.source.name, all_names.iter().copied(), "declare it with `input` or `population` first".to_string());
        sink.push(
            Diagnostic::error(
                "snn::names::unknown_population",
                format!("unknown input or population `{}`", connect.source.name),
                connect.source.span,
                "not declared",
            )
            .with_help(help),
        );
        None
    };
    let target_ident = &connect.target[0];
    let target = match module.populations.iter().position(|p| p.name == target_ident.name) {
        Some(index) => Some(PopId(index as u32)),
        None => {
            let is_input = module.inputs.iter().any(|i| i.name == target_ident.name);
            let help = if is_input {
                "inputs only send spikes; connect into a population".to_string()
            } else {
                suggestion_help(
                    &target_ident.name,
                    module.populations.iter().map(|p| p.name.as_str()),
                    "declare it with `population` first".to_string(),
                )
            };
            let (code, message, label) = if is_input {
                (
                    "snn::network::target_is_input",
                    format!("`{}` is an input, which cannot receive a connection", target_ident.name),
                    "an input",
                )
            } else {
                ("snn::names::unknown_population", format!("unknown population `{}`", target_ident.name), "not a population")
            };
            sink.push(Diagnostic::error(code, message, target_ident.span, label).with_help(help));
            None
        }
    };
    let target = target?;
    let pop = module.population(target);
    // A population whose neuron is unknown (reported already) or failed to parse has no inputs
    // to check against.
    if !program.neurons.contains_key(&pop.neuron) {
        return None;
    }
    let port = match connect.target.len() {
        1 if pop.ports.len() == 1 => PortId(0),
        1 => {
            sink.push(
                Diagnostic::error(
                    "snn::network::missing_port",
                    format!("population `{}` has {} inputs; say which one this connection drives", pop.name, pop.ports.len()),
                    target_ident.span,
                    "which input?",
                )
                .with_help(format!("write `{}.PORT`, with PORT one of: {}", pop.name, pop.ports.join(", "))),
            );
            return None;
        }
        _ => {
            let port_name: Vec<&str> = connect.target[1..].iter().map(|t| t.name.as_str()).collect();
            let port_name = port_name.join(".");
            match pop.ports.iter().position(|p| *p == port_name) {
                Some(index) => PortId(index as u32),
                None => {
                    let span = connect.target[1].span.join(connect.target[connect.target.len() - 1].span);
                    let help = suggestion_help(
                        &port_name,
                        pop.ports.iter().map(String::as_str),
                        format!("`{}` ({}) has the inputs: {}", pop.name, pop.neuron, pop.ports.join(", ")),
                    );
                    sink.push(
                        Diagnostic::error(
                            "snn::names::unknown_port",
                            format!("`{}` has no input `{port_name}`", pop.name),
                            span,
                            "no such input",
                        )
                        .with_help(help),
                    );
                    return None;
                }
            }
        }
    };
    let source = source?;
    let port_unit = info.port_units[target.0 as usize].get(port.0 as usize).cloned().unwrap_or_else(Unit::none);
    // A spike delivers its weight; a carried state its value times the weight (a normalised
    // state is dimensionless).
    let carried = match &source {
        Source::State(s) if s.l2_normalize => Some((format!("`{}`", module.source_label(&source)), Unit::none())),
        Source::State(s) => {
            let name = &module.population(s.pop).vars[s.var.0 as usize].name;
            let unit = info.state_units[s.pop.0 as usize].iter().find(|(n, _)| n == name).map_or_else(Unit::none, |(_, u)| u.clone());
            Some((format!("`{}.{name}`", module.population(s.pop).name), unit))
        }
        _ => None,
    };
    lower_projection(program, module, connect, source, target, port, &port_unit, carried.as_ref(), sink)
}

/// The transforms a connection may apply to the state it carries.
const SOURCE_TRANSFORMS: &[&str] = &["l2_normalize"];

/// `pop` (its spikes), `pop.var` or `transform(pop.var)` (a state it carries).
fn lower_population_source(program: &Program, module: &Module, connect: &ast::Connect, pop_id: PopId, sink: &mut Sink) -> Option<Source> {
    let pop = module.population(pop_id);
    let Some(var) = &connect.source_var else {
        // A population without `spike when` never spikes: its spikes would deliver zeros.
        if pop.threshold.is_none() && program.neurons.contains_key(&pop.neuron) {
            let states: Vec<&str> = state_names(pop);
            let example = states.first().map_or_else(|| "a state".to_string(), |s| format!("`{}.{s}`", pop.name));
            sink.push(
                Diagnostic::error(
                    "snn::network::silent_source",
                    format!("`{}` ({}) never spikes: a connection from its spikes would deliver zeros", pop.name, pop.neuron),
                    connect.source.span,
                    "no `spike when`",
                )
                .with_help(format!("connect a state it carries instead, e.g. {example}")),
            );
            return None;
        }
        return Some(Source::Population(pop_id));
    };
    // `lower_connect` has checked the transform's name.
    let l2_normalize = connect.source_transform.is_some();
    let found = pop.vars.iter().position(|v| v.name == var.name);
    match found.map(|v| &pop.vars[v].kind) {
        Some(ir::VarKind::State { .. }) => {
            Some(Source::State(ir::StateSource { pop: pop_id, var: ir::VarId(found.expect("found") as u32), l2_normalize }))
        }
        kind => {
            // A neuron that failed to lower has no variables to suggest.
            if !program.neurons.contains_key(&pop.neuron) {
                return None;
            }
            let states = state_names(pop);
            let help = if kind.is_some() {
                format!("`{}` is a parameter, the same at every step; connect a state: {}", var.name, states.join(", "))
            } else if pop.observables.iter().any(|(name, _)| *name == var.name) {
                format!("`{}` is an observable; connections carry states: {}", var.name, states.join(", "))
            } else {
                suggestion_help(
                    &var.name,
                    states.iter().copied(),
                    format!("`{}` ({}) carries the states: {}", pop.name, pop.neuron, states.join(", ")),
                )
            };
            sink.push(
                Diagnostic::error(
                    "snn::network::state_source",
                    format!("`{}` has no state `{}` to connect", pop.name, var.name),
                    var.span,
                    "not a state",
                )
                .with_help(help),
            );
            None
        }
    }
}

fn state_names(pop: &ir::Population) -> Vec<&str> {
    pop.vars.iter().filter(|v| matches!(v.kind, ir::VarKind::State { .. })).map(|v| v.name.as_str()).collect()
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn lower_projection(
    program: &Program,
    module: &Module,
    connect: &ast::Connect,
    source: Source,
    target: PopId,
    port: PortId,
    port_unit: &Unit,
    carried: Option<&(String, Unit)>,
    sink: &mut Sink,
) -> Option<Projection> {
    let weight_unit = carried.map_or_else(|| port_unit.clone(), |(_, unit)| port_unit.div(unit));
    let carried_name = carried.map(|(name, unit)| (name.as_str(), unit));
    let kind = &connect.kind;
    if !CONNECTIVITIES.contains(&kind.name.name.as_str()) {
        let help = suggestion_help(&kind.name.name, CONNECTIVITIES, format!("connections are {}", CONNECTIVITIES.join(", ")));
        sink.push(
            Diagnostic::error(
                "snn::names::unknown_connectivity",
                format!("unknown connectivity `{}`", kind.name.name),
                kind.name.span,
                "not a connectivity",
            )
            .with_help(help),
        );
        return None;
    }
    let mut init = None;
    let mut weight = None;
    // Sizes per axis, rows then columns (a single number is both).
    let mut ints: BTreeMap<&str, (Hw, Span)> = BTreeMap::new();
    // Whether a size option was given but invalid (reported): no follow-on shape errors.
    let mut bad_size = false;
    let one_d = kind.name.name.ends_with("1d");
    let allowed: &[&str] = match kind.name.name.as_str() {
        "conv2d" | "conv1d" => &["init", "weight", "kernel", "stride", "padding", "dilation", "groups"],
        "conv_transpose2d" | "conv_transpose1d" => {
            &["init", "weight", "kernel", "stride", "padding", "output_padding", "dilation", "groups"]
        }
        "sum_pool2d" | "avg_pool2d" | "max_pool2d" | "sum_pool1d" | "avg_pool1d" | "max_pool1d" => {
            &["weight", "kernel", "stride", "padding"]
        }
        _ => &["init", "weight"],
    };
    for arg in kind.args.iter().flatten() {
        let Some(name) = &arg.name else {
            sink.push(
                Diagnostic::error("snn::call::positional_argument", "connection options are passed by name", arg.value.span, "no name")
                    .with_help(format!("`{}` takes {}", kind.name.name, allowed.join(", "))),
            );
            continue;
        };
        if !allowed.contains(&name.name.as_str()) {
            let help = suggestion_help(&name.name, allowed.iter().copied(), format!("`{}` takes {}", kind.name.name, allowed.join(", ")));
            sink.push(
                Diagnostic::error(
                    "snn::call::unknown_argument",
                    format!("`{}` has no option `{}`", kind.name.name, name.name),
                    name.span,
                    "unknown option",
                )
                .with_help(help),
            );
            continue;
        }
        if !matches!(name.name.as_str(), "init" | "weight") {
            let key = allowed.iter().find(|a| **a == name.name).copied().unwrap_or("kernel");
            match lower_sizes(key, &arg.value, one_d || key == "groups", sink) {
                Some(sizes) => {
                    ints.insert(key, (sizes, arg.value.span));
                }
                None => bad_size = true,
            }
            continue;
        }
        let (value, unit) = lower_init(&arg.value, &Env::with_builtins(false), sink);
        match name.name.as_str() {
            "init" => {
                if let (Some(unit), Init::Const(_) | Init::Uniform { .. } | Init::Normal { .. }) = (&unit, &value)
                    && *unit != weight_unit
                {
                    sink.push(weight_unit_error(unit, &weight_unit, carried_name, arg.value.span));
                }
                init = Some(value);
            }
            "weight" => {
                if let Some(unit) = &unit
                    && *unit != weight_unit
                {
                    sink.push(weight_unit_error(unit, &weight_unit, carried_name, arg.value.span));
                }
                weight = Some(value);
            }
            _ => {}
        }
    }
    let mut trainable = weight.is_none();
    let mut feedback = false;
    let mut delay_steps = 0;
    let mut synapse = None;
    for flag in &connect.flags {
        match flag {
            ConnFlag::Fixed(_) => trainable = false,
            ConnFlag::Trainable(_) => trainable = true,
            ConnFlag::Feedback(_) => feedback = true,
            ConnFlag::Delay(expr) => {
                let mut exprs = Exprs::default();
                let mut lowerer = Lowerer { sink, exprs: &mut exprs };
                let (id, unit) = lowerer.lower(&Env::with_builtins(false), expr);
                if lowerer.expect_unit(&unit, &Unit::time_ms(), expr.span, "snn::units::mismatch", "a delay") {
                    let seconds = exprs.constant(id);
                    let steps = seconds.map(|s| (s / module.dt).round());
                    match (seconds, steps) {
                        (Some(_), Some(steps)) if steps >= 1.0 && steps.is_finite() => delay_steps = steps as usize,
                        _ => sink.push(
                            Diagnostic::error(
                                "snn::network::bad_delay",
                                match seconds {
                                    Some(s) => format!(
                                        "a delay of {} s is {} steps of dt = {} s",
                                        ir::fmt_f64(s),
                                        steps.unwrap_or(0.0),
                                        ir::fmt_f64(module.dt)
                                    ),
                                    None => "a delay must be a constant time".to_string(),
                                },
                                expr.span,
                                "not a whole number of steps >= 1",
                            )
                            .with_help("give a constant delay of at least one step, e.g. `delay 1 ms` with dt = 1 ms"),
                        ),
                    }
                }
            }
            ConnFlag::Via(call) => {
                let Some(def) = program.synapses.get(&call.name.name) else {
                    if program.is_broken("synapse", &call.name.name) {
                        continue;
                    }
                    let help = suggestion_help(
                        &call.name.name,
                        program.synapses.keys().map(String::as_str),
                        "import std::synapses, or define it with `synapse`".to_string(),
                    );
                    sink.push(
                        Diagnostic::error(
                            "snn::names::unknown_synapse",
                            format!("unknown synapse `{}`", call.name.name),
                            call.name.span,
                            "no such synapse",
                        )
                        .with_help(help),
                    );
                    continue;
                };
                let mut overrides = BTreeMap::new();
                for arg in call.args.iter().flatten() {
                    if let Some(name) = &arg.name {
                        let (init, unit) = lower_init(&arg.value, &Env::with_builtins(false), sink);
                        overrides.insert(name.name.clone(), Override { init, unit });
                    }
                }
                let mut quiet = Sink { diagnostics: sink.diagnostics, file: sink.file.clone(), main: sink.main.clone(), enabled: false };
                let model = lower_synapse(&def.def, &overrides, None, module.dt, &mut quiet);
                let conductance_port = port_unit.is_none() || port_unit.dim == units::named("S").map(|u| u.dim).unwrap_or_default();
                if model.conductance && !conductance_port {
                    sink.push(
                        Diagnostic::error(
                            "snn::synapse::delivery_mismatch",
                            format!(
                                "synapse `{}` delivers a conductance, but the input `{}` takes {port_unit}",
                                call.name.name,
                                module.population(target).ports[port.0 as usize]
                            ),
                            call.span,
                            "conductance synapse",
                        )
                        .with_help("connect it to a conductance input (dimensionless or in siemens), or use a current synapse"),
                    );
                }
                trainable = false;
                synapse = Some(model);
            }
        }
    }
    // A connection into a population declared no later than its source closes a cycle: it is
    // recurrent and reads the previous step's spikes.
    if let Some(source_id) = Module::source_population(&source)
        && source_id.0 >= target.0
        && !feedback
    {
        feedback = true;
        sink.push(
            Diagnostic::warning(
                "snn::lint::inferred_feedback",
                format!(
                    "`{} -> {}` closes a cycle; it is treated as a feedback edge with a one-step delay",
                    module.source_name(&source),
                    module.population(target).name
                ),
                connect.span,
                "recurrent connection",
            )
            .with_help("mark it `feedback` to say so explicitly"),
        );
    }
    if feedback {
        delay_steps = delay_steps.max(1);
    }
    let source_shape: Vec<usize> = match &source {
        Source::Input(id) => module.inputs[id.0 as usize].shape.clone(),
        Source::Population(id) | Source::State(ir::StateSource { pop: id, .. }) => module.population(*id).shape.clone(),
    };
    let target_pop = module.population(target);
    let n_pre: usize = source_shape.iter().product();
    let n_post = target_pop.size();
    let (connectivity, weight_shape) = match kind.name.name.as_str() {
        "dense" => (Connectivity::Dense, vec![n_pre, n_post]),
        "one_to_one" | "all_to_all_but_self" => {
            if n_pre != n_post {
                sink.push(
                    Diagnostic::error(
                        "snn::shapes::mismatch",
                        format!(
                            "`{}` needs equal sizes, but `{}` has {n_pre} neurons and `{}` has {n_post}",
                            kind.name.name, connect.source.name, target_pop.name
                        ),
                        connect.span,
                        format!("{n_pre} -> {n_post}"),
                    )
                    .with_help("give both populations the same size, or use `dense`"),
                );
            }
            if kind.name.name == "one_to_one" {
                (Connectivity::OneToOne, vec![n_post])
            } else {
                (Connectivity::AllToAllButSelf, vec![n_pre, n_post])
            }
        }
        _ if bad_size => return None,
        conv => {
            let pooling = conv.contains("_pool");
            let Some(&(kernel, _)) = ints.get("kernel") else {
                sink.push(
                    Diagnostic::error("snn::call::missing_argument", format!("`{conv}` needs a `kernel` size"), kind.span, "no kernel")
                        .with_help(format!("write `{conv}(kernel = 5)`")),
                );
                return None;
            };
            // A 1-d connection has one row: kernel, stride and dilation 1, no padding there.
            let row = |key: &str| usize::from(!matches!(key, "padding" | "output_padding"));
            let get = |key: &str, default: Hw| -> Hw {
                let value = ints.get(key).map_or(default, |(v, _)| *v);
                if one_d { [row(key), value[1]] } else { value }
            };
            let kernel = get("kernel", kernel);
            // A pooling window moves by its size unless told otherwise.
            let stride = get("stride", if pooling { kernel } else { [1; 2] });
            let (padding, output_padding) = (get("padding", [0; 2]), get("output_padding", [0; 2]));
            let dilation = get("dilation", [1; 2]);
            let groups = ints.get("groups").map_or(1, |(v, _)| v[0]);
            let shapes = if one_d {
                match (&source_shape[..], &target_pop.shape[..]) {
                    (&[a, l], &[b, m]) => Some(([a, 1, l], [b, 1, m])),
                    _ => None,
                }
            } else {
                as_chw(&source_shape).zip(as_chw(&target_pop.shape))
            };
            let Some(([in_c, h, w], [out_c, th, tw])) = shapes else {
                let (what, example) = if one_d { ("[channels, length]", "[1, 100]") } else { ("[channels, height, width]", "[1, 28, 28]") };
                sink.push(
                    Diagnostic::error(
                        "snn::shapes::rank",
                        format!(
                            "`{conv}` connects {what} shapes, but `{}` is {} and `{}` is {}",
                            connect.source.name,
                            shape_text(&source_shape),
                            target_pop.name,
                            shape_text(&target_pop.shape)
                        ),
                        connect.span,
                        format!("needs {}-d shapes", if one_d { 2 } else { 3 }),
                    )
                    .with_help(format!("declare both sides with {} sizes, e.g. {example}", if one_d { "two" } else { "three" })),
                );
                return None;
            };
            if in_c % groups != 0 || out_c % groups != 0 {
                let span = ints.get("groups").map_or(kind.span, |(_, span)| *span);
                sink.push(
                    Diagnostic::error(
                        "snn::shapes::conv_groups",
                        format!("`{conv}` with {groups} groups needs channel counts divisible by {groups}, but it connects {in_c} to {out_c} channels"),
                        span,
                        format!("{groups} groups"),
                    )
                    .with_help("choose a number of groups that divides both channel counts"),
                );
                return None;
            }
            // The rows and columns one output reads: the kernel's taps spread by the dilation.
            let extent = |a: usize| dilation[a].saturating_mul(kernel[a].saturating_sub(1)).saturating_add(1);
            let transposed = conv.starts_with("conv_transpose");
            let out = |size: usize, a: usize| -> Option<usize> {
                if transposed {
                    (size - 1)
                        .checked_mul(stride[a])?
                        .checked_add(extent(a))?
                        .checked_add(output_padding[a])?
                        .checked_sub(padding[a].checked_mul(2)?)
                } else {
                    size.checked_add(padding[a].checked_mul(2)?)?.checked_sub(extent(a)).map(|s| s / stride[a] + 1)
                }
            };
            let sizes = |hw: Hw| sizes_text(hw, one_d);
            let (oh, ow) = match (out(h, 0), out(w, 1)) {
                (Some(oh), Some(ow)) => (oh, ow),
                _ if transposed => (0, 0),
                _ => {
                    sink.push(
                        Diagnostic::error(
                            "snn::shapes::conv_output",
                            format!("kernel {} is larger than the padded input {}", sizes(kernel), shape_text(&source_shape)),
                            kind.span,
                            "kernel too large",
                        )
                        .with_help("use a smaller kernel or more padding"),
                    );
                    return None;
                }
            };
            // Pooling keeps the channels.
            let expected_c = if pooling { in_c } else { out_c };
            if (expected_c, oh, ow) != (out_c, th, tw) {
                let expected = if one_d { shape_text(&[expected_c, ow]) } else { shape_text(&[expected_c, oh, ow]) };
                sink.push(
                    Diagnostic::error(
                        "snn::shapes::conv_output",
                        format!(
                            "`{conv}` of {} with kernel {}, stride {}, padding {}{} gives {expected}, but `{}` is {}",
                            shape_text(&source_shape),
                            sizes(kernel),
                            sizes(stride),
                            sizes(padding),
                            if dilation != [1; 2] { format!(", dilation {}", sizes(dilation)) } else { String::new() },
                            target_pop.name,
                            shape_text(&target_pop.shape)
                        ),
                        connect.span,
                        format!("produces {expected}"),
                    )
                    .with_help(format!("declare `{}` as {expected}, or change the kernel, stride or padding", target_pop.name)),
                );
            }
            // PyTorch's weight shapes: `[out, in / groups, kernel...]` for a convolution,
            // `[in, out / groups, kernel...]` for a transposed one, one kernel size per axis.
            let weight_shape = |a: usize, b: usize| if one_d { vec![a, b, kernel[1]] } else { vec![a, b, kernel[0], kernel[1]] };
            let settings = ir::Conv { kernel, stride, padding, dilation, groups, output_padding: [0; 2] };
            if pooling {
                let kind = match &conv[..3] {
                    "sum" => ir::PoolKind::Sum,
                    "avg" => ir::PoolKind::Avg,
                    _ => ir::PoolKind::Max,
                };
                (Connectivity::Pool2d(ir::Pool { kind, kernel, stride, padding }), vec![1])
            } else if transposed {
                (Connectivity::ConvTranspose2d(ir::Conv { output_padding, ..settings }), weight_shape(in_c, out_c / groups))
            } else {
                (Connectivity::Conv2d(settings), weight_shape(out_c, in_c / groups))
            }
        }
    };
    // Pooling carries one weight, 1 unless given, fixed: asking to train it is an error rather
    // than a flag quietly dropped.
    let (init, weight, trainable) = if matches!(connectivity, Connectivity::Pool2d(_)) {
        if let Some(ConnFlag::Trainable(span)) = connect.flags.iter().find(|f| matches!(f, ConnFlag::Trainable(_))) {
            sink.push(
                Diagnostic::error(
                    "snn::network::bad_setting",
                    format!("`{}` has one fixed weight and cannot be trained", kind.name.name),
                    *span,
                    "pooling is fixed",
                )
                .with_help("remove `trainable`; scale the pooled input with `weight = ...`, or use a convolution to learn the window"),
            );
        }
        (init, Some(weight.unwrap_or(Init::Const(1.0))), false)
    } else {
        (init, weight, trainable)
    };
    // A fixed connection of one constant weight stores it once.
    let weight_shape = match (&connectivity, &weight) {
        (Connectivity::OneToOne | Connectivity::AllToAllButSelf, Some(Init::Const(_))) if !trainable => vec![1],
        _ => weight_shape,
    };
    let init = weight.or(init).unwrap_or(Init::Uniform { low: -1.0 / (n_pre as f64).sqrt(), high: 1.0 / (n_pre as f64).sqrt() });
    Some(Projection { source, target, port, connectivity, init, trainable, feedback, delay_steps, synapse, weight_shape })
}

pub(crate) fn as_chw(shape: &[usize]) -> Option<[usize; 3]> {
    match shape {
        [c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

/// A connection's size option as written: one number where the axes agree (or for a 1-d
/// connection, its columns), `[rows, columns]` otherwise.
fn sizes_text(hw: Hw, one_d: bool) -> String {
    match hw {
        [_, b] if one_d => b.to_string(),
        [a, b] if a == b => a.to_string(),
        [a, b] => format!("[{a}, {b}]"),
    }
}

/// A size option (`kernel = 5`, or `kernel = [3, 5]` per axis, rows first, where `single` is
/// false): whole numbers up to 65536, at least 1 but for paddings, as a pair (a single number
/// for both axes).
fn lower_sizes(key: &str, expr: &ast::Expr, single: bool, sink: &mut Sink) -> Option<Hw> {
    let least = usize::from(!key.ends_with("padding"));
    let mut whole = |expr: &ast::Expr| {
        // Sizes past 2^16 are typos; refusing them also keeps shape arithmetic in range.
        match lower_init(expr, &Env::with_builtins(false), sink).0 {
            Init::Const(v) if (least as f64..=65536.0).contains(&v) && v == v.trunc() => Some(v as usize),
            _ => None,
        }
    };
    let sizes = match &expr.kind {
        ast::ExprKind::List(items) => match &items[..] {
            [a, b] if !single => whole(a).zip(whole(b)).map(|(a, b)| [a, b]),
            _ => None,
        },
        _ => whole(expr).map(|v| [v; 2]),
    };
    if sizes.is_none() {
        let what = format!("a whole number from {least} to 65536");
        let (what, example) = if single {
            (what, format!("for example `{key} = 5`"))
        } else {
            (format!("{what}, or two of them (rows, columns)"), format!("for example `{key} = 5`, or `{key} = [3, 5]` (rows, columns)"))
        };
        sink.push(
            Diagnostic::error("snn::network::bad_setting", format!("`{key}` must be {what}"), expr.span, "not a valid size")
                .with_help(example),
        );
    }
    sizes
}

pub fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

/// `carried`: the state a connection carries and its unit, `None` for spikes.
pub(crate) fn weight_unit_error(found: &Unit, expected: &Unit, carried: Option<(&str, &Unit)>, span: Span) -> Diagnostic {
    let help = match carried {
        None => format!("a spike delivers its weight into the input, so the weight needs the input's unit: write the values in {expected}"),
        Some((state, unit)) if unit.is_none() => {
            format!(
                "the connection delivers {state}, dimensionless, times the weight, so the weight needs the input's unit: write the values in {expected}"
            )
        }
        Some((state, unit)) => format!(
            "the connection delivers {state} ({unit}) times the weight, so the weight needs the input's unit over {unit}: write the values in {expected}"
        ),
    };
    Diagnostic::error(
        "snn::units::weight",
        format!("weights into this input must have unit {expected}, found {found}"),
        span,
        format!("this has unit {found}"),
    )
    .with_help(help)
}
