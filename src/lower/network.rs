//! Networks: settings, network parameters, inputs with encoders, populations and projections,
//! with shape checks for every connectivity.

use std::collections::BTreeMap;

use crate::front::ast::{self, NetworkStmt, Span};
use crate::front::diag::{Diagnostic, Diagnostics, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::{self, Exprs, Global, Init, Module};
use crate::lower::expr::{Binding, Env, Lowerer};
use crate::lower::neuron::{Override, declared_unit, lower_init, lower_neuron};
use crate::lower::projection::lower_connect;
use crate::lower::surrogate::lower_encoder_body;
use crate::lower::{Program, Sink, SourceMap};

pub const NETWORK_SETTINGS: [&str; 4] = ["steps", "dt", "duration", "rest"];
pub const CONNECTIVITIES: [&str; 13] = [
    "dense",
    "one_to_one",
    "all_to_all_but_self",
    "conv2d",
    "conv_transpose2d",
    "sum_pool2d",
    "avg_pool2d",
    "max_pool2d",
    "conv1d",
    "conv_transpose1d",
    "sum_pool1d",
    "avg_pool1d",
    "max_pool1d",
];
/// Names an encoder argument may read besides network parameters, the sample's value for the
/// input neuron: `image` and `sample` its features (one value per input element), `events` an
/// event sample's bin of the current step.
pub const DATA_FIELDS: [&str; 3] = ["image", "sample", "events"];

/// What the network lowering knows about each population besides the IR: port units.
pub struct NetInfo {
    pub port_units: Vec<Vec<Unit>>,
    /// Each population's states with their declared units (`soma.s`), for the weights of
    /// connections that carry them.
    pub state_units: Vec<Vec<(String, Unit)>>,
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
    let mut info = NetInfo { port_units: Vec::new(), state_units: Vec::new() };
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
                    Init::Const(value) => {
                        check_finite(value, &param.name.name, default.span, &mut sink);
                        value
                    }
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
                    let states = program.neurons.get(&pop.neuron).map_or_else(Vec::new, |n| state_units(&n.def.body, ""));
                    module.populations.push(pop);
                    source_map.populations.push(population.span);
                    info.port_units.push(units);
                    info.state_units.push(states);
                }
            }
            NetworkStmt::Param(_) | NetworkStmt::Connect(_) | NetworkStmt::Setting(_) => {}
        }
    }
    let unsized_names = invalid_shapes(network);
    for stmt in &network.body {
        let NetworkStmt::Connect(connect) = stmt else { continue };
        // A connection to or from a layer of invalid shape is checked once the shape is fixed.
        let touches_unsized =
            std::iter::once(&connect.source).chain(connect.target.first()).any(|name| unsized_names.contains(&name.name.as_str()));
        sink.enabled = !touches_unsized;
        let lowered = lower_connect(program, &module, &info, connect, &mut sink);
        sink.enabled = true;
        if let Some(projection) = lowered {
            module.projections.push(projection);
            source_map.projections.push(connect.span);
        }
    }
    Some(module)
}

/// The most time steps one sample may take (`steps`, or `duration` / `dt`), and the most
/// resting steps between samples: beyond this a run would not end in any useful time, and the
/// step counts would lose precision or overflow.
pub const MAX_STEPS: f64 = 10_000_000.0;

fn lower_settings(network: &ast::Network, module: &mut Module, sink: &mut Sink) {
    let mut duration = None;
    let mut rest = None;
    let mut steps = None;
    let mut dt_span = None;
    let bad = |message: String, span: Span, label: &str, help: &str| {
        Diagnostic::error("snn::network::bad_setting", message, span, label.to_string()).with_help(help.to_string())
    };
    for stmt in &network.body {
        let NetworkStmt::Setting(setting) = stmt else { continue };
        let mut exprs = Exprs::default();
        let mut lowerer = Lowerer { sink, exprs: &mut exprs };
        let (id, unit) = lowerer.lower(&Env::with_builtins(false), &setting.value);
        let value = lowerer.exprs.constant(id).unwrap_or(0.0);
        let span = setting.value.span;
        match setting.key.name.as_str() {
            "steps" => {
                lowerer.expect_dimensionless(&unit, span, "`steps`");
                if !(1.0..=MAX_STEPS).contains(&value) || value != value.trunc() {
                    let label = if value != value.trunc() || value.is_nan() {
                        "not a whole number"
                    } else if value > MAX_STEPS {
                        "too large"
                    } else {
                        "too small"
                    };
                    lowerer.error(bad(
                        "`steps` must be a whole number from 1 to 10000000".to_string(),
                        span,
                        label,
                        "for example `steps = 50`",
                    ));
                    steps = Some(1);
                } else {
                    steps = Some(value as usize);
                }
            }
            "dt" => {
                if lowerer.expect_unit(&unit, &Unit::time_ms(), span, "snn::units::mismatch", "`dt`") {
                    if !(value > 0.0 && value.is_finite()) {
                        let label = if value.is_finite() { "not positive" } else { "not a finite number" };
                        lowerer.error(bad(
                            "`dt` must be a positive number of milliseconds".to_string(),
                            span,
                            label,
                            "for example `dt = 0.5 ms`",
                        ));
                    } else {
                        module.dt = value;
                        dt_span = Some(span);
                    }
                }
            }
            "duration" => {
                if lowerer.expect_unit(&unit, &Unit::time_ms(), span, "snn::units::mismatch", "`duration`") {
                    if !(value > 0.0 && value.is_finite()) {
                        let label = if value.is_finite() { "not positive" } else { "not a finite number" };
                        lowerer.error(bad(
                            "`duration` must be a positive number of milliseconds".to_string(),
                            span,
                            label,
                            "for example `duration = 350 ms`",
                        ));
                        duration = Some((None, span));
                    } else {
                        duration = Some((Some(value), span));
                    }
                }
            }
            "rest" => {
                if lowerer.expect_unit(&unit, &Unit::time_ms(), span, "snn::units::mismatch", "`rest`") {
                    if !(value >= 0.0 && value.is_finite()) {
                        let label = if value.is_finite() { "negative" } else { "not a finite number" };
                        lowerer.error(bad(
                            "`rest` must be a number of milliseconds, at least 0".to_string(),
                            span,
                            label,
                            "for example `rest = 150 ms`",
                        ));
                    } else {
                        rest = Some((value, span));
                    }
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
    // A time converted to steps with `dt`: at most MAX_STEPS of them, and a sample's duration
    // at least one.
    let to_steps = |sink: &mut Sink, what: &str, value: f64, span: Span| -> usize {
        let count = (value / module.dt).round();
        let (message, label, help) = if count > MAX_STEPS || !count.is_finite() {
            (format!("`{what}` / `dt` is more than 10000000 time steps"), "too many steps", "use a larger `dt` or a shorter time")
        } else if what == "duration" && count < 1.0 {
            (format!("`{what}` is shorter than one time step `dt`"), "less than one step", "use a smaller `dt` or a longer time")
        } else {
            return count as usize;
        };
        let mut diagnostic = bad(message, span, label, help);
        if let Some(dt) = dt_span {
            diagnostic = diagnostic.with_label(dt, "`dt`");
        }
        sink.push(diagnostic);
        1
    };
    module.steps = match (steps, duration) {
        (Some(steps), None) => steps,
        (None, Some((duration, span))) => duration.map_or(1, |duration| to_steps(sink, "duration", duration, span)),
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
    module.rest_steps = rest.map_or(0, |(rest, span)| to_steps(sink, "rest", rest, span));
}

/// A constant that overflowed to infinity (`1e308 * 10`) or is not a number (`0 / 0`) is no
/// value a model can compute with.
pub(crate) fn check_finite(value: f64, name: &str, span: Span, sink: &mut Sink) {
    if !value.is_finite() {
        sink.push(
            Diagnostic::error(
                "snn::value::not_finite",
                format!("`{name}` is {}, not a finite number", if value.is_nan() { "not a number (NaN)" } else { "infinite" }),
                span,
                if value.is_nan() { "not a number" } else { "overflows to infinity" },
            )
            .with_help("numbers are 64-bit floats: keep every constant and result between about -1e308 and 1e308"),
        );
    }
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
        per_step: false,
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
        if program.is_broken("encoder", &func.name) {
            return lowered;
        }
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
        lowered.per_step |= mentions(value, "events");
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
    let body = lower_encoder_body(&encoder.def, &mut env, &mut lowered.exprs, &mut quiet);
    lowered.kind = body.kind;
    lowered.value = body.value;
    let failures: Vec<_> = body
        .requires
        .into_iter()
        .filter_map(|(require, conjunct, id)| {
            failed_requirement(module, &env, &mut lowered.exprs, conjunct, id, &mut quiet).map(|failure| (require, conjunct, failure))
        })
        .collect();
    for (require, conjunct, failure) in failures {
        {
            let reason = require.reason.as_ref().map_or_else(String::new, |why| format!("{why}; "));
            sink.push(
                Diagnostic::error(
                    "snn::value::requirement",
                    format!("`{}` requires `{}`, which fails here{failure}", func.name, crate::front::fmt::expr(conjunct)),
                    input.encoder.span,
                    format!("breaks a requirement of `{}`", func.name),
                )
                .with_help(format!(
                    "{reason}the requirement is in the definition of `{}` ({})",
                    func.name,
                    program.file(encoder.file).name
                )),
            );
        }
    }
    lowered
}

/// Whether `expr` reads the name `name` (a one-part path).
fn mentions(expr: &ast::Expr, name: &str) -> bool {
    use ast::ExprKind;
    match &expr.kind {
        ExprKind::Path(parts) => parts.len() == 1 && parts[0].name == name,
        ExprKind::Call { args, .. } => args.iter().any(|a| mentions(&a.value, name)),
        ExprKind::Unary { operand, .. } => mentions(operand, name),
        ExprKind::Binary { lhs, rhs, .. } => mentions(lhs, name) || mentions(rhs, name),
        ExprKind::Index { base, index } => mentions(base, name) || mentions(index, name),
        ExprKind::List(items) => items.iter().any(|e| mentions(e, name)),
        ExprKind::Paren(inner) => mentions(inner, name),
        ExprKind::Quantity { .. } | ExprKind::Bool(_) | ExprKind::Str(_) => false,
    }
}

/// Checks one requirement of an encoder's use. Data values range over [0, 1] (both data sets
/// are scaled so), network parameters take their initial values; the requirement fails when it
/// is false at either end of the data range (arguments are monotone in the data in practice,
/// so the ends are where it fails first). Returns the failure's description, None when it
/// holds or cannot be decided (it reads the time or a random draw).
fn failed_requirement(
    module: &Module,
    env: &Env,
    exprs: &mut Exprs,
    conjunct: &ast::Expr,
    id: ir::ExprId,
    sink: &mut Sink,
) -> Option<String> {
    let reads_data = exprs.reads_global(id, &|g| g == Global::Data);
    let at = |exprs: &Exprs, id: ir::ExprId, data: f64| {
        exprs.eval_with(id, &|global| match global {
            Global::Dt => module.dt,
            Global::Data => data,
            Global::NetParam(index) => module.params.get(index as usize).map_or(f64::NAN, |(_, value)| *value),
            _ => f64::NAN,
        })
    };
    let data = [0.0, 1.0].into_iter().find(|&data| at(exprs, id, data) == 0.0)?;
    let mut failure = String::new();
    // Show the left side's value where it is a plain number: `rate * dt = 2.5`.
    if let ast::ExprKind::Binary { op, lhs, .. } = &conjunct.kind
        && matches!(
            op,
            ast::BinaryOp::Le | ast::BinaryOp::Lt | ast::BinaryOp::Ge | ast::BinaryOp::Gt | ast::BinaryOp::Eq | ast::BinaryOp::Ne
        )
    {
        let mut lowerer = Lowerer { sink, exprs };
        let (lhs_id, unit) = lowerer.lower(env, lhs);
        let value = at(exprs, lhs_id, data);
        if unit.is_none_or(|u| u.is_none()) && value.is_finite() {
            failure = format!(": `{}` = {value}", crate::front::fmt::expr(lhs));
        }
    }
    if reads_data {
        failure.push_str(&format!(" for a data value of {data}"));
    }
    Some(failure)
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
/// Whether a shape has one to three positive sizes and at most 2^31 neurons.
pub(crate) fn shape_is_valid(shape: &ast::Shape) -> bool {
    let total = shape.dims.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d)).filter(|n| *n <= 1 << 31);
    !shape.dims.contains(&0) && shape.dims.len() <= 3 && total.is_some()
}

/// The names of the inputs and populations whose shape is invalid (reported at the shape): their
/// size is unknown, so nothing is checked against it.
pub(crate) fn invalid_shapes(network: &ast::Network) -> Vec<&str> {
    network
        .body
        .iter()
        .filter_map(|stmt| match stmt {
            NetworkStmt::Input(input) if !shape_is_valid(&input.shape) => Some(input.name.name.as_str()),
            NetworkStmt::Population(population) if !shape_is_valid(&population.shape) => Some(population.name.name.as_str()),
            _ => None,
        })
        .collect()
}

fn checked_shape(shape: &ast::Shape, sink: &mut Sink) -> Vec<usize> {
    if !shape_is_valid(shape) {
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
        let empty = ast::Neuron { name: call.name.clone(), body: Vec::new() };
        let mut quiet = Sink { diagnostics: sink.diagnostics, file: sink.file.clone(), main: sink.main.clone(), enabled: false };
        let lowered = lower_neuron(&empty, &BTreeMap::new(), &population.name.name, shape, module.dt, &mut quiet, false);
        if program.is_broken("neuron", &call.name.name) {
            return (lowered, Vec::new());
        }
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
        return (lowered, Vec::new());
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
        if let Init::Const(value) = init {
            check_finite(value, &name.name, arg.value.span, sink);
        }
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

fn state_units(body: &[ast::NeuronStmt], prefix: &str) -> Vec<(String, Unit)> {
    let mut out = Vec::new();
    for stmt in body {
        match stmt {
            ast::NeuronStmt::State(state) => out.push((format!("{prefix}{}", state.name.name), declared_unit(&state.unit))),
            ast::NeuronStmt::Compartment(c) => out.extend(state_units(&c.body, &format!("{prefix}{}.", c.name.name))),
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
