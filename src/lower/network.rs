//! Networks: settings, network parameters, inputs with encoders, populations and projections,
//! with shape checks for every connectivity.

use std::collections::BTreeMap;

use crate::front::ast::{self, ConnFlag, NetworkStmt, Span};
use crate::front::diag::{Diagnostic, Diagnostics, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::{self, Connectivity, Exprs, Global, Init, InputId, Module, PopId, PortId, Projection, Source};
use crate::lower::expr::{Binding, Env, Lowerer};
use crate::lower::neuron::{Override, lower_init, lower_neuron};
use crate::lower::surrogate::lower_encoder_body;
use crate::lower::synapse::lower_synapse;
use crate::lower::{Program, Sink, SourceMap};

pub const NETWORK_SETTINGS: [&str; 4] = ["steps", "dt", "duration", "rest"];
pub const CONNECTIVITIES: [&str; 5] = ["dense", "one_to_one", "all_to_all_but_self", "conv2d", "conv_transpose2d"];
/// Names an encoder argument may read besides network parameters: the sample's value for the
/// input neuron.
pub const DATA_FIELDS: [&str; 2] = ["image", "sample"];

/// What the network lowering knows about each population besides the IR: port units.
pub struct NetInfo {
    pub port_units: Vec<Vec<Unit>>,
}

pub fn lower_network(program: &Program, diagnostics: &mut Diagnostics, source_map: &mut SourceMap) -> Option<Module> {
    let def = match program.networks.as_slice() {
        [] => return None,
        [first, rest @ ..] => {
            for extra in rest {
                let mut sink = Sink { diagnostics, file: program.file(extra.file), main: program.file(0), enabled: true };
                sink.push(
                    Diagnostic::error("snn::network::duplicate", "a file describes one network", extra.def.name.span, "second network")
                        .with_label(first.def.name.span, "first network")
                        .with_help("move the second network into a file of its own"),
                );
            }
            first
        }
    };
    let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: true };
    let network = &def.def;
    let mut module = Module {
        network: network.name.name.clone(),
        dt: 1e-3,
        steps: 0,
        rest_steps: 0,
        params: Vec::new(),
        inputs: Vec::new(),
        populations: Vec::new(),
        projections: Vec::new(),
        train: None,
    };
    let mut info = NetInfo { port_units: Vec::new() };
    lower_settings(network, &mut module, &mut sink);
    let mut names: BTreeMap<String, Span> = BTreeMap::new();
    let mut check_name = |sink: &mut Sink, ident: &ast::Ident| {
        if let Some(first) = names.get(&ident.name) {
            sink.push(
                Diagnostic::error(
                    "snn::names::duplicate",
                    format!("`{}` is declared twice in this network", ident.name),
                    ident.span,
                    "declared again",
                )
                .with_label(*first, "first declared here")
                .with_help("inputs, populations and network parameters share one namespace"),
            );
            return false;
        }
        names.insert(ident.name.clone(), ident.span);
        true
    };
    for stmt in &network.body {
        if let NetworkStmt::Param(param) = stmt {
            if !check_name(&mut sink, &param.name) {
                continue;
            }
            let value = match &param.default {
                Some(default) => match lower_init(default, &Env::with_builtins(false), &mut sink).0 {
                    Init::Const(value) => value,
                    _ => {
                        sink.push(
                            Diagnostic::error(
                                "snn::types::not_constant",
                                "a network parameter is a single number",
                                default.span,
                                "an initialiser",
                            )
                            .with_help("network parameters are scalars, such as `param intensity = 2`"),
                        );
                        0.0
                    }
                },
                None => {
                    sink.push(
                        Diagnostic::error(
                            "snn::network::missing_parameter",
                            format!("network parameter `{}` has no value", param.name.name),
                            param.span,
                            "no value",
                        )
                        .with_help("give it a value: `param intensity = 2`"),
                    );
                    0.0
                }
            };
            module.params.push((param.name.name.clone(), value));
        }
    }
    for stmt in &network.body {
        match stmt {
            NetworkStmt::Input(input) => {
                if check_name(&mut sink, &input.name) {
                    let lowered = lower_input(program, &module, input, &mut sink);
                    module.inputs.push(lowered);
                    source_map.inputs.push(input.span);
                }
            }
            NetworkStmt::Population(population) => {
                if check_name(&mut sink, &population.name) {
                    let (pop, units) = lower_population(program, &module, population, &mut sink);
                    module.populations.push(pop);
                    source_map.populations.push(population.span);
                    info.port_units.push(units);
                }
            }
            NetworkStmt::Param(_) | NetworkStmt::Connect(_) | NetworkStmt::Setting(_) => {}
        }
    }
    for stmt in &network.body {
        if let NetworkStmt::Connect(connect) = stmt
            && let Some(projection) = lower_connect(program, &module, &info, connect, &mut sink)
        {
            module.projections.push(projection);
            source_map.projections.push(connect.span);
        }
    }
    Some(module)
}

fn lower_settings(network: &ast::Network, module: &mut Module, sink: &mut Sink) {
    let mut duration = None;
    let mut rest = None;
    let mut steps = None;
    for stmt in &network.body {
        let NetworkStmt::Setting(setting) = stmt else { continue };
        let mut exprs = Exprs::default();
        let mut lowerer = Lowerer { sink, exprs: &mut exprs };
        let (id, unit) = lowerer.lower(&Env::with_builtins(false), &setting.value);
        let value = lowerer.exprs.constant(id).unwrap_or(0.0);
        match setting.key.name.as_str() {
            "steps" => {
                lowerer.expect_dimensionless(&unit, setting.value.span, "`steps`");
                if value < 1.0 || value != value.trunc() {
                    lowerer.error(
                        Diagnostic::error(
                            "snn::network::bad_setting",
                            "`steps` must be a positive whole number",
                            setting.value.span,
                            "not a positive integer",
                        )
                        .with_help("for example `steps = 50`"),
                    );
                }
                steps = Some(value.max(1.0) as usize);
            }
            "dt" => {
                if lowerer.expect_unit(&unit, &Unit::time_ms(), setting.value.span, "snn::units::mismatch", "`dt`") {
                    if value <= 0.0 {
                        lowerer.error(
                            Diagnostic::error("snn::network::bad_setting", "`dt` must be positive", setting.value.span, "not positive")
                                .with_help("for example `dt = 0.5 ms`"),
                        );
                    } else {
                        module.dt = value;
                    }
                }
            }
            "duration" => {
                if lowerer.expect_unit(&unit, &Unit::time_ms(), setting.value.span, "snn::units::mismatch", "`duration`") {
                    duration = Some((value, setting.value.span));
                }
            }
            "rest" => {
                if lowerer.expect_unit(&unit, &Unit::time_ms(), setting.value.span, "snn::units::mismatch", "`rest`") {
                    rest = Some(value);
                }
            }
            other => {
                let help =
                    suggestion_help(other, NETWORK_SETTINGS, format!("a network takes the settings {}", NETWORK_SETTINGS.join(", ")));
                lowerer.error(
                    Diagnostic::error(
                        "snn::network::unknown_setting",
                        format!("unknown network setting `{other}`"),
                        setting.key.span,
                        "not a setting",
                    )
                    .with_help(help),
                );
            }
        }
    }
    module.steps = match (steps, duration) {
        (Some(steps), None) => steps,
        (None, Some((duration, _))) => (duration / module.dt).round().max(1.0) as usize,
        (Some(steps), Some((_, span))) => {
            sink.push(
                Diagnostic::error("snn::network::bad_setting", "give either `steps` or `duration`, not both", span, "second length")
                    .with_help("`duration` is converted to steps with `dt`"),
            );
            steps
        }
        (None, None) => {
            sink.push(
                Diagnostic::error(
                    "snn::network::missing_setting",
                    format!("network `{}` does not say how long a sample lasts", network.name.name),
                    network.name.span,
                    "no `steps` or `duration`",
                )
                .with_help("add `steps = 50` or `duration = 350 ms`"),
            );
            1
        }
    };
    module.rest_steps = rest.map_or(0, |rest| (rest / module.dt).round() as usize);
}

/// Network parameters and data fields, for encoder arguments.
fn network_env(module: &Module) -> Env {
    let mut env = Env::with_builtins(false);
    for (index, (name, _)) in module.params.iter().enumerate() {
        env.bind(name, Binding::Global(Global::NetParam(index as u32)), Unit::none());
    }
    for field in DATA_FIELDS {
        env.bind(field, Binding::Global(Global::Data), Unit::none());
    }
    env
}

fn lower_input(program: &Program, module: &Module, input: &ast::InputLayer, sink: &mut Sink) -> ir::Input {
    let shape = checked_shape(&input.shape, sink);
    let mut lowered = ir::Input {
        name: input.name.name.clone(),
        shape,
        encoder: String::new(),
        kind: ir::EncoderKind::Current,
        exprs: Exprs::default(),
        value: ir::ExprId(0),
    };
    lowered.value = lowered.exprs.push(ir::Node::Const(0.0));
    let ast::ExprKind::Call { func, args } = &input.encoder.kind else {
        sink.push(
            Diagnostic::error("snn::network::not_an_encoder", "an input needs an encoder call", input.encoder.span, "not an encoder call")
                .with_help("for example `input pixels[784] = bernoulli(image)`; import std::encoders for the standard ones"),
        );
        return lowered;
    };
    let Some(encoder) = program.encoders.get(&func.name) else {
        let help = suggestion_help(
            &func.name,
            program.encoders.keys().map(String::as_str),
            "import std::encoders for repeat, threshold, bernoulli, poisson and latency".to_string(),
        );
        sink.push(
            Diagnostic::error("snn::names::unknown_encoder", format!("unknown encoder `{}`", func.name), func.span, "no such encoder")
                .with_help(help),
        );
        return lowered;
    };
    lowered.encoder = func.name.clone();
    let data_env = network_env(module);
    let mut env = Env::with_builtins(true);
    env.allow_rand = true;
    let bound = bind_arguments(&encoder.def.params, args, func, input.encoder.span, sink);
    for (head, arg) in encoder.def.params.iter().zip(bound) {
        let expected = head.unit.as_ref().map_or_else(Unit::none, units::eval);
        let value = arg.or(head.default.as_ref());
        let Some(value) = value else { continue };
        let mut lowerer = Lowerer { sink, exprs: &mut lowered.exprs };
        let (id, unit) = lowerer.lower(&data_env, value);
        lowerer.expect_unit(
            &unit,
            &expected,
            value.span,
            "snn::units::encoder_argument",
            &format!("argument `{}` of `{}`", head.name.name, func.name),
        );
        env.bind(&head.name.name, Binding::Expr(id), expected);
    }
    let mut quiet = Sink { diagnostics: sink.diagnostics, file: sink.file.clone(), main: sink.main.clone(), enabled: false };
    let (kind, value) = lower_encoder_body(&encoder.def, &mut env, &mut lowered.exprs, &mut quiet);
    lowered.kind = kind;
    lowered.value = value;
    lowered
}

/// Matches call arguments to declared parameters: positional first, then by name. Reports
/// unknown, duplicate and missing arguments. Returns one slot per parameter.
fn bind_arguments<'e>(
    params: &[ast::ParamHead],
    args: &'e [ast::Arg],
    func: &ast::Ident,
    span: Span,
    sink: &mut Sink,
) -> Vec<Option<&'e ast::Expr>> {
    let mut slots: Vec<Option<&ast::Expr>> = vec![None; params.len()];
    let mut positional = 0;
    for arg in args {
        let index = match &arg.name {
            None => {
                positional += 1;
                if positional > params.len() {
                    sink.push(
                        Diagnostic::error(
                            "snn::call::arity",
                            format!(
                                "`{}` takes {} argument{}, found {}",
                                func.name,
                                params.len(),
                                if params.len() == 1 { "" } else { "s" },
                                args.len()
                            ),
                            arg.value.span,
                            "one too many",
                        )
                        .with_help(format!("`{}` takes ({})", func.name, param_list(params))),
                    );
                    continue;
                }
                positional - 1
            }
            Some(name) => match params.iter().position(|p| p.name.name == name.name) {
                Some(index) => index,
                None => {
                    let help = suggestion_help(
                        &name.name,
                        params.iter().map(|p| p.name.name.as_str()),
                        format!("`{}` takes ({})", func.name, param_list(params)),
                    );
                    sink.push(
                        Diagnostic::error(
                            "snn::call::unknown_argument",
                            format!("`{}` has no parameter `{}`", func.name, name.name),
                            name.span,
                            "unknown argument",
                        )
                        .with_help(help),
                    );
                    continue;
                }
            },
        };
        if slots[index].is_some() {
            sink.push(
                Diagnostic::error(
                    "snn::call::duplicate_argument",
                    format!("argument `{}` is given twice", params[index].name.name),
                    arg.value.span,
                    "given again",
                )
                .with_help("pass each argument once"),
            );
            continue;
        }
        slots[index] = Some(&arg.value);
    }
    for (head, slot) in params.iter().zip(&slots) {
        if slot.is_none() && head.default.is_none() {
            sink.push(
                Diagnostic::error(
                    "snn::call::missing_argument",
                    format!("`{}` needs the argument `{}`", func.name, head.name.name),
                    span,
                    "missing argument",
                )
                .with_help(format!("`{}` takes ({})", func.name, param_list(params))),
            );
        }
    }
    slots
}

fn param_list(params: &[ast::ParamHead]) -> String {
    params.iter().map(|p| p.name.name.clone()).collect::<Vec<_>>().join(", ")
}

/// The shape's sizes when valid (one to three positive sizes, at most 2^31 neurons); `[1]`
/// after reporting otherwise, so later stages never see an unusable shape.
fn checked_shape(shape: &ast::Shape, sink: &mut Sink) -> Vec<usize> {
    let total = shape.dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).filter(|n| *n <= 1 << 31);
    if shape.dims.contains(&0) || shape.dims.len() > 3 || total.is_none() {
        sink.push(
            Diagnostic::error(
                "snn::shapes::invalid",
                "a shape has one to three positive sizes and at most 2^31 neurons",
                shape.span,
                "invalid shape",
            )
            .with_help("for example [784] or [1, 28, 28]"),
        );
        return vec![1];
    }
    shape.dims.clone()
}

fn lower_population(program: &Program, module: &Module, population: &ast::Population, sink: &mut Sink) -> (ir::Population, Vec<Unit>) {
    let shape = checked_shape(&population.shape, sink);
    let call = &population.neuron;
    let Some(neuron) = program.neurons.get(&call.name.name) else {
        let help = suggestion_help(
            &call.name.name,
            program.neurons.keys().map(String::as_str),
            "import std::neurons for the standard neurons, or define it with `neuron`".to_string(),
        );
        sink.push(
            Diagnostic::error(
                "snn::names::unknown_neuron",
                format!("unknown neuron `{}`", call.name.name),
                call.name.span,
                "no such neuron",
            )
            .with_help(help),
        );
        let empty = ast::Neuron { name: call.name.clone(), body: Vec::new() };
        let mut quiet = Sink { diagnostics: sink.diagnostics, file: sink.file.clone(), main: sink.main.clone(), enabled: false };
        return (lower_neuron(&empty, &BTreeMap::new(), &population.name.name, shape, module.dt, &mut quiet, false), Vec::new());
    };
    let declared = neuron_params(&neuron.def.body, "");
    let mut overrides = BTreeMap::new();
    for arg in call.args.iter().flatten() {
        let Some(name) = &arg.name else {
            sink.push(
                Diagnostic::error("snn::call::positional_argument", "neuron parameters are passed by name", arg.value.span, "no name")
                    .with_help(format!("write `{}(name = value)`", call.name.name)),
            );
            continue;
        };
        let Some((_, param)) = declared.iter().find(|(n, _)| *n == name.name) else {
            let help = suggestion_help(
                &name.name,
                declared.iter().map(|(n, _)| n.as_str()),
                format!(
                    "`{}` has the parameters {}",
                    call.name.name,
                    declared.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
                ),
            );
            sink.push(
                Diagnostic::error(
                    "snn::call::unknown_argument",
                    format!("`{}` has no parameter `{}`", call.name.name, name.name),
                    name.span,
                    "unknown parameter",
                )
                .with_help(help),
            );
            continue;
        };
        let (init, found) = lower_init(&arg.value, &Env::with_builtins(false), sink);
        let expected = param.unit.as_ref().map_or_else(Unit::none, units::eval);
        let mut exprs = Exprs::default();
        Lowerer { sink, exprs: &mut exprs }.expect_unit(
            &found,
            &expected,
            arg.value.span,
            "snn::units::parameter_override",
            &format!("parameter `{}` of `{}`", name.name, call.name.name),
        );
        overrides.insert(name.name.clone(), Override { init, unit: found });
    }
    let mut quiet = Sink { diagnostics: sink.diagnostics, file: sink.file.clone(), main: sink.main.clone(), enabled: false };
    let pop = lower_neuron(&neuron.def, &overrides, &population.name.name, shape, module.dt, &mut quiet, false);
    // Missing required parameters are reported at the population, where they must be given.
    for (name, param) in &declared {
        if param.default.is_none() && !overrides.contains_key(name) {
            sink.push(
                Diagnostic::error(
                    "snn::network::missing_parameter",
                    format!("`{}` needs a value for its parameter `{name}`", call.name.name),
                    call.span,
                    "parameter not given",
                )
                .with_help(format!("write `{}({name} = ...)`", call.name.name)),
            );
        }
    }
    let units = port_units(&neuron.def.body, "");
    (pop, units)
}

fn neuron_params<'n>(body: &'n [ast::NeuronStmt], prefix: &str) -> Vec<(String, &'n ast::Param)> {
    let mut out = Vec::new();
    for stmt in body {
        match stmt {
            ast::NeuronStmt::Param(param) => out.push((format!("{prefix}{}", param.name.name), param)),
            ast::NeuronStmt::Compartment(c) => out.extend(neuron_params(&c.body, &format!("{prefix}{}.", c.name.name))),
            _ => {}
        }
    }
    out
}

fn port_units(body: &[ast::NeuronStmt], prefix: &str) -> Vec<Unit> {
    let mut out = Vec::new();
    for stmt in body {
        match stmt {
            ast::NeuronStmt::Input(port) => out.push(port.unit.as_ref().map_or_else(Unit::none, units::eval)),
            ast::NeuronStmt::Compartment(c) => out.extend(port_units(&c.body, &format!("{prefix}{}.", c.name.name))),
            _ => {}
        }
    }
    out
}

fn lower_connect(program: &Program, module: &Module, info: &NetInfo, connect: &ast::Connect, sink: &mut Sink) -> Option<Projection> {
    let all_names: Vec<&str> =
        module.inputs.iter().map(|i| i.name.as_str()).chain(module.populations.iter().map(|p| p.name.as_str())).collect();
    let source = if let Some(index) = module.inputs.iter().position(|i| i.name == connect.source.name) {
        Some(Source::Input(InputId(index as u32)))
    } else if let Some(index) = module.populations.iter().position(|p| p.name == connect.source.name) {
        Some(Source::Population(PopId(index as u32)))
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
            sink.push(
                Diagnostic::error(
                    "snn::names::unknown_population",
                    format!("unknown population `{}`", target_ident.name),
                    target_ident.span,
                    "not a population",
                )
                .with_help(help),
            );
            None
        }
    };
    let target = target?;
    let pop = module.population(target);
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
    lower_projection(program, module, connect, source, target, port, &port_unit, sink)
}

#[allow(clippy::too_many_arguments)]
fn lower_projection(
    program: &Program,
    module: &Module,
    connect: &ast::Connect,
    source: Source,
    target: PopId,
    port: PortId,
    port_unit: &Unit,
    sink: &mut Sink,
) -> Option<Projection> {
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
    let mut ints: BTreeMap<&str, (usize, Span)> = BTreeMap::new();
    let allowed: &[&str] = match kind.name.name.as_str() {
        "conv2d" => &["init", "weight", "kernel", "stride", "padding"],
        "conv_transpose2d" => &["init", "weight", "kernel", "stride", "padding", "output_padding"],
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
        let (value, unit) = lower_init(&arg.value, &Env::with_builtins(false), sink);
        match name.name.as_str() {
            "init" => {
                if let (Some(unit), Init::Const(_) | Init::Uniform { .. } | Init::Normal { .. }) = (&unit, &value)
                    && unit != port_unit
                {
                    sink.push(weight_unit_error(unit, port_unit, arg.value.span));
                }
                init = Some(value);
            }
            "weight" => {
                if let Some(unit) = &unit
                    && unit != port_unit
                {
                    sink.push(weight_unit_error(unit, port_unit, arg.value.span));
                }
                weight = Some(value);
            }
            key => {
                // Sizes past 2^16 are typos; refusing them also keeps shape arithmetic in range.
                let number = match value {
                    Init::Const(v) if (0.0..=65536.0).contains(&v) && v == v.trunc() => v as usize,
                    _ => {
                        sink.push(
                            Diagnostic::error(
                                "snn::network::bad_setting",
                                format!("`{key}` must be a whole number from 0 to 65536"),
                                arg.value.span,
                                "not a valid size",
                            )
                            .with_help(format!("for example `{key} = 5`")),
                        );
                        0
                    }
                };
                ints.insert(allowed.iter().find(|a| **a == key).copied().unwrap_or("kernel"), (number, arg.value.span));
            }
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
    if let Source::Population(source_id) = &source
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
        Source::Population(id) => module.population(*id).shape.clone(),
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
        conv => {
            let get = |key: &str, default: usize| ints.get(key).map_or(default, |(v, _)| *v);
            let Some(&(kernel, _)) = ints.get("kernel") else {
                sink.push(
                    Diagnostic::error("snn::call::missing_argument", format!("`{conv}` needs a `kernel` size"), kind.span, "no kernel")
                        .with_help(format!("write `{conv}(kernel = 5)`")),
                );
                return None;
            };
            let (stride, padding, output_padding) = (get("stride", 1).max(1), get("padding", 0), get("output_padding", 0));
            let (Some([in_c, h, w]), Some([out_c, th, tw])) = (as_chw(&source_shape), as_chw(&target_pop.shape)) else {
                sink.push(
                    Diagnostic::error(
                        "snn::shapes::rank",
                        format!(
                            "`{conv}` connects [channels, height, width] shapes, but `{}` is {} and `{}` is {}",
                            connect.source.name,
                            shape_text(&source_shape),
                            target_pop.name,
                            shape_text(&target_pop.shape)
                        ),
                        connect.span,
                        "needs 3-d shapes",
                    )
                    .with_help("declare both sides with three sizes, e.g. [1, 28, 28]"),
                );
                return None;
            };
            let (oh, ow) = if conv == "conv2d" {
                let out = |size: usize| size.checked_add(padding.checked_mul(2)?)?.checked_sub(kernel).map(|s| s / stride + 1);
                match (out(h), out(w)) {
                    (Some(oh), Some(ow)) => (oh, ow),
                    _ => {
                        sink.push(
                            Diagnostic::error(
                                "snn::shapes::conv_output",
                                format!("kernel {kernel} is larger than the padded input {}", shape_text(&source_shape)),
                                kind.span,
                                "kernel too large",
                            )
                            .with_help("use a smaller kernel or more padding"),
                        );
                        return None;
                    }
                }
            } else {
                let out = |size: usize| {
                    (size - 1).checked_mul(stride)?.checked_add(kernel)?.checked_add(output_padding)?.checked_sub(padding.checked_mul(2)?)
                };
                (out(h).unwrap_or(0), out(w).unwrap_or(0))
            };
            if (oh, ow) != (th, tw) {
                let expected = shape_text(&[out_c, oh, ow]);
                sink.push(
                    Diagnostic::error(
                        "snn::shapes::conv_output",
                        format!(
                            "`{conv}` of {} with kernel {kernel}, stride {stride}, padding {padding} gives {expected}, but `{}` is {}",
                            shape_text(&source_shape),
                            target_pop.name,
                            shape_text(&target_pop.shape)
                        ),
                        connect.span,
                        format!("produces {expected}"),
                    )
                    .with_help(format!("declare `{}` as {expected}, or change the kernel, stride or padding", target_pop.name)),
                );
            }
            let connectivity = if conv == "conv2d" {
                Connectivity::Conv2d { kernel, stride, padding }
            } else {
                Connectivity::ConvTranspose2d { kernel, stride, padding, output_padding }
            };
            (connectivity, vec![out_c, in_c, kernel, kernel])
        }
    };
    let init = weight.or(init).unwrap_or(Init::Uniform { low: -1.0 / (n_pre as f64).sqrt(), high: 1.0 / (n_pre as f64).sqrt() });
    Some(Projection { source, target, port, connectivity, init, trainable, feedback, delay_steps, synapse, weight_shape })
}

fn as_chw(shape: &[usize]) -> Option<[usize; 3]> {
    match shape {
        [c, h, w] => Some([*c, *h, *w]),
        _ => None,
    }
}

pub fn shape_text(shape: &[usize]) -> String {
    format!("[{}]", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", "))
}

fn weight_unit_error(found: &Unit, expected: &Unit, span: Span) -> Diagnostic {
    Diagnostic::error(
        "snn::units::weight",
        format!("weights into this input must have unit {expected}, found {found}"),
        span,
        format!("this has unit {found}"),
    )
    .with_help(format!("a spike delivers its weight into the input, so the weight needs the input's unit: write the values in {expected}"))
}
