//! The `train` block: data, learning method, loss terms, prediction, optimiser, schedule,
//! phases, hooks, records and clamps. `method` checks that the model supports its learning
//! method, `expr` lowers training expressions (losses, predictions, conditions) and
//! `hooks` the per-sample actions and records; this file holds the block and its settings.

mod expr;
mod hooks;
mod method;

use std::collections::BTreeMap;

use crate::front::ast::{self, ExprKind, Span, TrainStmt, UnaryOp};
use crate::front::diag::{Diagnostic, Diagnostics, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::Module;
use crate::ir::train::*;
use crate::lower::{Program, Sink};
use method::lower_method;

pub const TRAIN_SETTINGS: [&str; 11] =
    ["data", "method", "predict", "reconstruction", "optimizer", "batch", "epochs", "schedule", "clip", "seed", "precision"];
pub const METHODS: [&str; 4] = ["bptt", "eventprop", "fptt", "stdp"];
pub const OPTIMIZERS: [&str; 3] = ["adam", "adamax", "sgd"];
pub const DATASETS: [&str; 4] = ["fashion_mnist", "mnist", "nmnist", "yin_yang"];

pub fn check_train_without_network(program: &Program, diagnostics: &mut Diagnostics) {
    // A network that failed to parse exists: its syntax error is the one to report.
    if program.main_has_broken("network") {
        return;
    }
    if let Some(train) = program.trains.first() {
        let mut sink = Sink { diagnostics, file: program.file(train.file), main: program.file(0), enabled: true };
        sink.push(
            Diagnostic::error(
                "snn::train::no_network",
                "a `train` block needs a `network` in the same file",
                train.span.truncate(5),
                "nothing to train",
            )
            .with_help("add a `network` block that declares the inputs and populations"),
        );
    }
}

impl Span {
    fn truncate(self, len: usize) -> Span {
        Span::new(self.start, self.end.min(self.start + len))
    }
}

/// A training expression's type: width, timing and unit.
#[derive(Clone, Debug)]
struct Typed {
    id: TExprId,
    unit: Option<Unit>,
}

struct TrainLowerer<'m, 's, 'a> {
    module: &'m Module,
    sink: &'s mut Sink<'a>,
    exprs: TExprs,
    classes: usize,
    features: usize,
    /// The data set gives events (N-MNIST): no training expression can read a sample.
    events: bool,
    /// Whether any lowered expression read `label`.
    reads_label: bool,
    /// The learning method's name, when it lowered: some readouts belong to one method.
    method: Option<&'static str>,
}

pub fn lower_train(
    program: &Program,
    module: &Module,
    source_map: &crate::lower::SourceMap,
    diagnostics: &mut Diagnostics,
) -> Option<Train> {
    let def = program.trains.first()?;
    // A population whose neuron is unknown or failed to parse (reported already) has no states,
    // spikes or inputs to check a train block against: the block is lowered without reports, so
    // that the error to fix is the only one printed.
    // Nor is one whose size is unknown: its shape is invalid (reported at the shape).
    let unsized_names = program.networks.first().map_or_else(Vec::new, |n| crate::lower::network::invalid_shapes(&n.def));
    let complete = module.populations.iter().all(|p| program.neurons.contains_key(&p.neuron)) && unsized_names.is_empty();
    let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: complete };
    for extra in &program.trains[1..] {
        sink.push(
            Diagnostic::error("snn::train::duplicate", "a file has one `train` block", extra.span.truncate(5), "second train block")
                .with_help("use `phase` blocks for several stages of training"),
        );
    }
    let train = &def.def;
    let mut settings: BTreeMap<&str, &ast::Setting> = BTreeMap::new();
    let mut losses = Vec::new();
    let mut phases_ast = Vec::new();
    for stmt in &train.body {
        match stmt {
            TrainStmt::Setting(setting) => {
                let key = setting.key.name.as_str();
                if !TRAIN_SETTINGS.contains(&key) {
                    let help = suggestion_help(key, TRAIN_SETTINGS, format!("a train block takes {}", TRAIN_SETTINGS.join(", ")));
                    sink.push(
                        Diagnostic::error(
                            "snn::train::unknown_setting",
                            format!("unknown train setting `{key}`"),
                            setting.key.span,
                            "not a setting",
                        )
                        .with_help(help),
                    );
                } else if let Some(first) = settings.insert(key, setting) {
                    sink.push(
                        Diagnostic::error("snn::names::duplicate", format!("`{key}` is set twice"), setting.key.span, "set again")
                            .with_label(first.key.span, "first set here")
                            .with_help("keep one of them"),
                    );
                }
            }
            TrainStmt::Loss(loss) => losses.push(loss),
            TrainStmt::Phase { .. } => phases_ast.push(stmt),
            _ => {}
        }
    }
    let header = Span::new(def.span.start, def.span.start + 5);
    let data = match settings.get("data") {
        Some(setting) => lower_data(&setting.value, module.dt, &mut sink),
        None => {
            sink.push(missing_field("data", header, "data = mnist(dir = env(\"SNNC_MNIST_DIR\", \"data/mnist\"))"));
            None
        }
    };
    let classes = match &data {
        Some(Data::YinYang { .. }) => 3,
        _ => 10,
    };
    let features = match &data {
        Some(Data::YinYang { .. }) => 5,
        Some(Data::Nmnist { .. }) => crate::data::NMNIST_ELEMENTS,
        _ => 784,
    };
    if let Some(data) = &data {
        check_event_inputs(program, module, data, header, &mut sink);
    }
    for input in &module.inputs {
        let size: usize = input.shape.iter().product();
        if size != features && data.is_some() && !unsized_names.contains(&input.name.as_str()) {
            let span = program.networks[0]
                .def
                .body
                .iter()
                .find_map(|s| match s {
                    ast::NetworkStmt::Input(i) if i.name.name == input.name => Some(i.shape.span),
                    _ => None,
                })
                .unwrap_or(header);
            let mut diagnostic = Diagnostic::error(
                "snn::shapes::input_size",
                format!("input `{}` has {size} neurons, but each sample of the data set has {features} values", input.name),
                span,
                format!("{size} neurons"),
            )
            .with_help(format!("declare `{}` with {features} neurons, e.g. [{features}]", input.name));
            diagnostic.source = Some(program.file(program.networks[0].file));
            sink.diagnostics.push(diagnostic);
        }
    }
    let method = match settings.get("method") {
        Some(setting) => lower_method(program, module, source_map, &setting.value, &mut sink),
        None => {
            sink.push(missing_field("method", header, "method = bptt(surrogate = fast_sigmoid(slope = 25))"));
            None
        }
    };
    let gradient_method = matches!(method, Some(Method::Bptt { .. } | Method::EventProp | Method::Fptt { .. }));
    let method_name = method.as_ref().map(Method::name);
    let mut lowerer = TrainLowerer {
        module,
        sink: &mut sink,
        exprs: TExprs::default(),
        classes,
        features,
        events: matches!(data, Some(Data::Nmnist { .. })),
        reads_label: false,
        method: method_name,
    };
    let terms = lowerer.lower_losses(&losses);
    let predict = settings.get("predict").and_then(|s| lowerer.lower_predict(&s.value));
    let reconstruction = settings.get("reconstruction").and_then(|s| lowerer.lower_reconstruction(&s.value));
    let optimizer = settings.get("optimizer").map(|s| lowerer.lower_optimizer(&s.value));
    let batch = settings.get("batch").map_or(Some(32), |s| lowerer.positive_int(&s.value, "batch"));
    let epochs = settings.get("epochs").map_or(Some(1), |s| lowerer.positive_int(&s.value, "epochs"));
    let seed = settings.get("seed").map_or(Some(0), |s| lowerer.positive_int(&s.value, "seed"));
    let schedule = settings.get("schedule").map_or(LrSchedule::Constant, |s| lowerer.lower_schedule(&s.value));
    let clip = settings.get("clip").and_then(|s| lowerer.number(&s.value, "clip")).filter(|&clip| {
        let ok = clip > 0.0 && clip.is_finite();
        if !ok {
            let span = settings["clip"].value.span;
            lowerer.sink.push(
                Diagnostic::error(
                    "snn::train::setting_out_of_range",
                    format!("`clip` must be greater than 0, found {}", crate::ir::fmt_f64(clip)),
                    span,
                    "out of range",
                )
                .with_help("`clip` is the largest gradient norm; for example `clip = 1.0`"),
            );
        }
        ok
    });
    let precision = settings.get("precision").and_then(|setting| match setting.value.as_name().map(|n| n.name.as_str()) {
        Some("f32") => Some(FloatType::F32),
        Some("f64") => Some(FloatType::F64),
        _ => {
            lowerer.sink.push(
                Diagnostic::error("snn::train::bad_setting", "`precision` is `f32` or `f64`", setting.value.span, "not a float type")
                    .with_help("write `precision = f64` for states that change by less than f32 resolves per step"),
            );
            None
        }
    });
    // Only when none is written: a term that failed to lower has its own diagnostic.
    if gradient_method && losses.is_empty() && phases_ast.is_empty() {
        lowerer.sink.push(missing_field("loss", header, "loss = mse(rate(out), one_hot(label, on = 0.8, off = 0.2))"));
    }
    let phases_set_optimizers = !phases_ast.is_empty()
        && phases_ast.iter().all(|p| matches!(p, TrainStmt::Phase { body, .. } if body.iter().any(|s| matches!(s, TrainStmt::Setting(x) if x.key.name == "optimizer"))));
    if gradient_method && optimizer.is_none() && !phases_set_optimizers {
        lowerer.sink.push(missing_field("optimizer", header, "optimizer = adam(lr = 5e-4)"));
    }
    if predict.is_none() && !settings.contains_key("predict") && (lowerer.reads_label || matches!(method, Some(Method::Stdp))) {
        lowerer.sink.push(missing_field("predict", header, "predict = argmax(count(out))"));
    }
    let optimizer = optimizer.unwrap_or(Optimizer {
        kind: OptimizerKind::Adam,
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        momentum: 0.0,
        weight_decay: 0.0,
    });
    let mut phases = Vec::new();
    for stmt in phases_ast {
        let TrainStmt::Phase { name, body, .. } = stmt else { continue };
        let mut phase = Phase { name: name.name.clone(), epochs: epochs.unwrap_or(1), losses: terms.clone(), optimizer: optimizer.clone() };
        let phase_losses: Vec<&ast::LossStmt> =
            body.iter().filter_map(|s| if let TrainStmt::Loss(l) = s { Some(l) } else { None }).collect();
        if !phase_losses.is_empty() {
            phase.losses = lowerer.lower_losses(&phase_losses);
        }
        for stmt in body {
            if let TrainStmt::Setting(setting) = stmt {
                match setting.key.name.as_str() {
                    "epochs" => phase.epochs = lowerer.positive_int(&setting.value, "epochs").unwrap_or(1),
                    "optimizer" => phase.optimizer = lowerer.lower_optimizer(&setting.value),
                    other => {
                        let help = suggestion_help(
                            other,
                            ["epochs", "optimizer", "loss"],
                            "a phase sets `epochs`, `optimizer` and `loss`".to_string(),
                        );
                        lowerer.sink.push(
                            Diagnostic::error(
                                "snn::train::unknown_setting",
                                format!("unknown phase setting `{other}`"),
                                setting.key.span,
                                "not a phase setting",
                            )
                            .with_help(help),
                        );
                    }
                }
            }
        }
        phases.push(phase);
    }
    if phases.is_empty() {
        phases.push(Phase { name: "main".to_string(), epochs: epochs.unwrap_or(1), losses: terms, optimizer });
    }
    let mut before_sample = Vec::new();
    let mut retry = None;
    let mut records = Vec::new();
    let mut record_to = None;
    let mut clamps = Vec::new();
    for stmt in &train.body {
        // EventProp's exact-time runtime has no retry, records or clamps yet: say so rather
        // than accept them and do nothing.
        if method == Some(Method::EventProp) {
            let unsupported = match stmt {
                TrainStmt::Retry { span, .. } => Some(("`retry`", *span)),
                TrainStmt::Record { span, .. } => Some(("`record`", *span)),
                TrainStmt::Clamp { span, .. } => Some(("`clamp`", *span)),
                _ => None,
            };
            if let Some((what, span)) = unsupported {
                lowerer.sink.push(
                    Diagnostic::error(
                        "snn::method::eventprop_unsupported",
                        format!("{what} is not supported by the `eventprop` runtime yet"),
                        span,
                        "not run by eventprop",
                    )
                    .with_help("remove it, or train with `bptt`"),
                );
                continue;
            }
        }
        // FPTT runs a batch window by window and keeps no records; a retry or a parameter
        // changed sample by sample would need its samples one after another.
        if matches!(method, Some(Method::Fptt { .. })) {
            let unsupported = match stmt {
                TrainStmt::Retry { span, .. } => Some(("`retry`", *span)),
                TrainStmt::Record { span, .. } => Some(("`record`", *span)),
                _ => None,
            };
            if let Some((what, span)) = unsupported {
                lowerer.sink.push(
                    Diagnostic::error(
                        "snn::method::fptt_unsupported",
                        format!("{what} is not supported by the `fptt` runtime yet"),
                        span,
                        "not run by fptt",
                    )
                    .with_help("remove it, or train with `bptt`"),
                );
                continue;
            }
        }
        match stmt {
            TrainStmt::Hook { event, body, span } => {
                if event.name != "sample" {
                    let help = suggestion_help(&event.name, ["sample"], "hooks run `every sample`".to_string());
                    lowerer.sink.push(
                        Diagnostic::error(
                            "snn::train::unknown_event",
                            format!("unknown hook event `{}`", event.name),
                            event.span,
                            "not an event",
                        )
                        .with_help(help),
                    );
                    continue;
                }
                let actions = lowerer.lower_actions(body);
                if matches!(method, Some(Method::Fptt { .. })) && actions.iter().any(|a| matches!(a, HookAction::AddToParam { .. })) {
                    lowerer.sink.push(
                        Diagnostic::error(
                            "snn::method::fptt_unsupported",
                            "adding to a parameter every sample is not supported by the `fptt` runtime yet",
                            *span,
                            "not run by fptt",
                        )
                        .with_help("set the parameter (`p = value`) instead, or train with `bptt`"),
                    );
                }
                before_sample.extend(actions);
            }
            TrainStmt::Retry { condition, max, body, .. } => {
                let condition = lowerer.lower_scalar(condition, "a retry condition");
                let max = max.as_ref().and_then(|m| lowerer.positive_int(m, "max")).unwrap_or(10);
                let actions = lowerer.lower_actions(body);
                if let Some(condition) = condition {
                    retry = Some(Retry { condition, max, actions });
                }
            }
            TrainStmt::Record { paths, to, .. } => {
                for path in paths {
                    if let Some(record) = lowerer.lower_record(path) {
                        records.push(record);
                    }
                }
                record_to = to.clone();
            }
            TrainStmt::Clamp { path, value, .. } => {
                let Some((pop, var)) = lowerer.lower_record(path) else { continue };
                if let Some(v) = var
                    && !matches!(module.population(pop).vars[v.0 as usize].kind, crate::ir::VarKind::State { .. })
                {
                    lowerer.sink.push(
                        Diagnostic::error(
                            "snn::train::clamp_parameter",
                            format!(
                                "`{}` is a parameter of `{}`, the same at every step",
                                module.population(pop).vars[v.0 as usize].name,
                                path[0].name
                            ),
                            path[1].span.join(path[path.len() - 1].span),
                            "a parameter",
                        )
                        .with_help("clamp a state (`clamp out.u = ...`) or the population's spikes (`clamp out = ...`)"),
                    );
                    continue;
                }
                let population = &path[0];
                let Some(typed) = lowerer.lower(value) else { continue };
                let width = lowerer.exprs.ty(typed.id).width;
                let size = module.population(pop).size();
                if width != size && width != 1 {
                    lowerer.sink.push(
                        Diagnostic::error(
                            "snn::shapes::mismatch",
                            format!("`{}` has {size} neurons, but the clamped value has {width} entries", population.name),
                            value.span,
                            format!("{width} values"),
                        )
                        .with_help("clamp a population to a value of its own size"),
                    );
                }
                clamps.push(crate::ir::train::Clamp { pop, var, value: typed.id });
            }
            TrainStmt::Setting(_) | TrainStmt::Loss(_) | TrainStmt::Phase { .. } => {}
        }
    }
    let exprs = lowerer.exprs;
    Some(Train {
        data: data?,
        method: method?,
        exprs,
        phases,
        predict,
        reconstruction,
        batch: batch?,
        schedule,
        clip_grad_norm: clip,
        seed: seed? as u64,
        precision,
        before_sample,
        retry,
        records,
        record_to,
        clamps,
    })
}

/// An input reads `events` exactly when the data set gives events (N-MNIST): events read as
/// an image would be one step's bin at every step, an image read as events nothing after the
/// first step.
fn check_event_inputs(program: &Program, module: &Module, data: &Data, header: Span, sink: &mut Sink) {
    let events = matches!(data, Data::Nmnist { .. });
    for input in &module.inputs {
        let reads_data = input.exprs.reads_global(input.value, &|g| g == crate::ir::Global::Data);
        let (message, help) = if events && reads_data && !input.per_step {
            (
                format!("input `{}` reads the sample as an image, but N-MNIST gives events", input.name),
                "read them with `events`, one bin per step: for example `input events[2, 34, 34] = event_spikes(events)`",
            )
        } else if !events && input.per_step {
            (
                format!("input `{}` reads `events`, but this data set gives images", input.name),
                "read the sample with `image`, or train on events with `data = nmnist(dir = ...)`",
            )
        } else {
            continue;
        };
        let span = program.networks[0]
            .def
            .body
            .iter()
            .find_map(|s| match s {
                ast::NetworkStmt::Input(i) if i.name.name == input.name => Some(i.encoder.span),
                _ => None,
            })
            .unwrap_or(header);
        let mut diagnostic = Diagnostic::error("snn::train::event_data", message, span, "reads the wrong kind of data").with_help(help);
        diagnostic.source = Some(program.file(program.networks[0].file));
        sink.diagnostics.push(diagnostic);
    }
}

fn missing_field(field: &str, span: Span, example: &str) -> Diagnostic {
    Diagnostic::error("snn::train::missing_field", format!("the train block has no `{field}`"), span, format!("`{field}` missing"))
        .with_help(format!("add, for example, `{example}`"))
}

fn named_args(args: &[ast::Arg]) -> BTreeMap<&str, &ast::Expr> {
    args.iter().filter_map(|a| a.name.as_ref().map(|n| (n.name.as_str(), &a.value))).collect()
}

fn string_arg(expr: &ast::Expr) -> Option<String> {
    match &expr.kind {
        ExprKind::Str(text) => Some(text.clone()),
        // env("VAR", "default"): the variable when set, else the default; resolved at run time
        // by the driver, kept here as "$VAR|default".
        ExprKind::Call { func, args } if func.name == "env" && args.len() == 2 => {
            let var = string_arg(&args[0].value)?;
            let default = string_arg(&args[1].value)?;
            Some(format!("${var}|{default}"))
        }
        _ => None,
    }
}

fn const_number(expr: &ast::Expr) -> Option<(f64, Option<Unit>)> {
    match &expr.kind {
        ExprKind::Quantity { value, unit, .. } => {
            let unit = unit.as_ref().map_or_else(Unit::none, units::eval);
            Some((value * unit.factor(), Some(unit)))
        }
        ExprKind::Unary { op: UnaryOp::Neg, operand } => const_number(operand).map(|(v, u)| (-v, u)),
        ExprKind::Paren(inner) => const_number(inner),
        _ => None,
    }
}

/// The `data` setting. `nmnist`'s `bin` (the events of step `t` are those in
/// `[t * bin, (t + 1) * bin)`) defaults to the network's `dt`.
fn lower_data(expr: &ast::Expr, dt: f64, sink: &mut Sink) -> Option<Data> {
    let (name, args) = match &expr.kind {
        ExprKind::Call { func, args } => (func, args.as_slice()),
        ExprKind::Path(p) if p.len() == 1 => (&p[0], &[][..]),
        _ => {
            sink.push(
                Diagnostic::error("snn::train::bad_data", "`data` names a data set", expr.span, "not a data set")
                    .with_help("use `mnist(dir = ...)`, `fashion_mnist(dir = ...)`, `nmnist(dir = ...)` or `yin_yang()`"),
            );
            return None;
        }
    };
    let named = named_args(args);
    match name.name.as_str() {
        "mnist" | "fashion_mnist" => {
            let fashion = name.name == "fashion_mnist";
            let default = if fashion { "$SNNC_FASHION_MNIST_DIR|data/fashion_mnist" } else { "$SNNC_MNIST_DIR|data/mnist" };
            let dir = named.get("dir").and_then(|e| string_arg(e)).unwrap_or_else(|| default.to_string());
            let shift = named.get("shift").and_then(|e| const_number(e)).map_or(0.0, |v| v.0);
            let rotate = named.get("rotate").and_then(|e| const_number(e)).map_or(0.0, |v| v.0);
            Some(if fashion {
                Data::FashionMnist { dir, augment_shift: shift, augment_rotate_deg: rotate }
            } else {
                Data::Mnist { dir, augment_shift: shift, augment_rotate_deg: rotate }
            })
        }
        "nmnist" => {
            let dir = named.get("dir").and_then(|e| string_arg(e)).unwrap_or_else(|| "$SNNC_NMNIST_DIR|data/nmnist".to_string());
            let bin = match named.get("bin") {
                None => dt,
                Some(e) => match const_number(e) {
                    Some((value, Some(unit))) if unit.is_time() && value > 0.0 && value.is_finite() => value,
                    _ => {
                        sink.push(
                            Diagnostic::error("snn::train::bad_data", "`bin` is a time greater than 0", e.span, "not a positive time")
                                .with_help("the events of step t are those in [t * bin, (t + 1) * bin); for example `bin = 1 ms`"),
                        );
                        return None;
                    }
                },
            };
            Some(Data::Nmnist { dir, bin })
        }
        "yin_yang" => {
            let get = |key: &str, default: f64| named.get(key).and_then(|e| const_number(e)).map_or(default, |v| v.0);
            Some(Data::YinYang { train: get("train", 5000.0) as usize, test: get("test", 1000.0) as usize, seed: get("seed", 42.0) as u64 })
        }
        other => {
            let help = suggestion_help(other, DATASETS, format!("data sets: {}", DATASETS.join(", ")));
            sink.push(
                Diagnostic::error("snn::names::unknown_dataset", format!("unknown data set `{other}`"), name.span, "no such data set")
                    .with_help(help),
            );
            None
        }
    }
}

impl TrainLowerer<'_, '_, '_> {
    /// A whole-number setting: a batch, a count of epochs or retries at least 1, a seed at
    /// least 0; never beyond what an f64 counts exactly (2^53), so that nothing wraps.
    fn positive_int(&mut self, expr: &ast::Expr, what: &str) -> Option<usize> {
        let min = if what == "seed" { 0.0 } else { 1.0 };
        let max = (1u64 << 53) as f64;
        // A literal of digits is compared exactly: 2^53 + 1 read as a float rounds to 2^53.
        let exact_too_large = match &expr.kind {
            ExprKind::Quantity { text, unit: None, .. } if text.bytes().all(|b| b.is_ascii_digit()) => {
                let digits = text.trim_start_matches('0');
                digits.len() > 38 || (digits.len() > 15 && digits.parse::<u128>().is_ok_and(|n| n > 1u128 << 53))
            }
            _ => false,
        };
        match const_number(expr).filter(|_| !exact_too_large) {
            Some((value, _)) if value >= min && value <= max && value == value.trunc() => Some(value as usize),
            _ if exact_too_large => {
                self.sink.push(
                    Diagnostic::error(
                        "snn::train::bad_setting",
                        format!("`{what}` must be a whole number from {min} to 2^53"),
                        expr.span,
                        "too large",
                    )
                    .with_help(format!("for example `{what} = 10`")),
                );
                None
            }
            found => {
                let label = match found {
                    Some((value, _)) if value == value.trunc() && value > max => "too large",
                    Some((value, _)) if value == value.trunc() => "too small",
                    _ => "not a whole number",
                };
                self.sink.push(
                    Diagnostic::error(
                        "snn::train::bad_setting",
                        format!("`{what}` must be a whole number from {min} to 2^53"),
                        expr.span,
                        label,
                    )
                    .with_help(format!("for example `{what} = 10`")),
                );
                None
            }
        }
    }

    fn number(&mut self, expr: &ast::Expr, what: &str) -> Option<f64> {
        match const_number(expr) {
            Some((value, _)) => Some(value),
            None => {
                self.sink.push(
                    Diagnostic::error("snn::train::bad_setting", format!("`{what}` must be a number"), expr.span, "not a number")
                        .with_help(format!("for example `{what} = 1.0`")),
                );
                None
            }
        }
    }

    fn lower_optimizer(&mut self, expr: &ast::Expr) -> Optimizer {
        let mut optimizer =
            Optimizer { kind: OptimizerKind::Adam, lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, momentum: 0.0, weight_decay: 0.0 };
        let ExprKind::Call { func, args } = &expr.kind else {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_setting",
                    "`optimizer` is a call such as `adam(lr = 1e-3)`",
                    expr.span,
                    "not an optimizer",
                )
                .with_help(format!("optimizers: {}", OPTIMIZERS.join(", "))),
            );
            return optimizer;
        };
        optimizer.kind = match func.name.as_str() {
            "adam" => OptimizerKind::Adam,
            "adamax" => OptimizerKind::Adamax,
            "sgd" => OptimizerKind::Sgd,
            other => {
                let help = suggestion_help(other, OPTIMIZERS, format!("optimizers: {}", OPTIMIZERS.join(", ")));
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown_optimizer",
                        format!("unknown optimizer `{other}`"),
                        func.span,
                        "no such optimizer",
                    )
                    .with_help(help),
                );
                return optimizer;
            }
        };
        const KEYS: [&str; 6] = ["lr", "beta1", "beta2", "eps", "momentum", "weight_decay"];
        for arg in args {
            let Some(name) = &arg.name else {
                self.sink.push(
                    Diagnostic::error("snn::call::positional_argument", "optimizer settings are passed by name", arg.value.span, "no name")
                        .with_help(format!("write `{}(lr = ...)`", func.name)),
                );
                continue;
            };
            let Some(value) = self.number(&arg.value, &name.name) else { continue };
            // The ranges each setting is meaningful in: a rate above 0, moment decays in [0, 1),
            // a positive epsilon, a momentum in [0, 1], a decay at least 0.
            let range = match name.name.as_str() {
                "lr" | "eps" => Some((value > 0.0, "greater than 0")),
                "beta1" | "beta2" => Some(((0.0..1.0).contains(&value), "from 0 to below 1")),
                "momentum" => Some(((0.0..=1.0).contains(&value), "from 0 to 1")),
                "weight_decay" => Some((value >= 0.0, "at least 0")),
                _ => None,
            };
            if let Some((false, allowed)) = range {
                self.sink.push(
                    Diagnostic::error(
                        "snn::train::setting_out_of_range",
                        format!("`{}` must be {allowed}, found {}", name.name, crate::ir::fmt_f64(value)),
                        arg.value.span,
                        "out of range",
                    )
                    .with_help(format!(
                        "for example `{}({} = {})`",
                        func.name,
                        name.name,
                        if name.name == "lr" { "1e-3" } else { "0.9" }
                    )),
                );
                continue;
            }
            match name.name.as_str() {
                "lr" => optimizer.lr = value,
                "beta1" => optimizer.beta1 = value,
                "beta2" => optimizer.beta2 = value,
                "eps" => optimizer.eps = value,
                "momentum" => optimizer.momentum = value,
                "weight_decay" => optimizer.weight_decay = value,
                other => {
                    let help = suggestion_help(other, KEYS, format!("optimizer settings: {}", KEYS.join(", ")));
                    self.sink.push(
                        Diagnostic::error(
                            "snn::call::unknown_argument",
                            format!("`{}` has no setting `{other}`", func.name),
                            name.span,
                            "unknown setting",
                        )
                        .with_help(help),
                    );
                }
            }
        }
        optimizer
    }

    fn lower_schedule(&mut self, expr: &ast::Expr) -> LrSchedule {
        let (name, args) = match &expr.kind {
            ExprKind::Call { func, args } => (func, args.as_slice()),
            ExprKind::Path(p) if p.len() == 1 => (&p[0], &[][..]),
            _ => return LrSchedule::Constant,
        };
        let named = named_args(args);
        let number = |key: &str, default: f64| named.get(key).and_then(|e| const_number(e)).map_or(default, |v| v.0);
        // The factor the rate is multiplied by is in (0, 1]; `every` is a whole number of epochs.
        let gamma = |this: &mut Self, default: f64| {
            let gamma = number("gamma", default);
            if !(gamma > 0.0 && gamma <= 1.0) {
                this.sink.push(
                    Diagnostic::error(
                        "snn::train::setting_out_of_range",
                        format!("`gamma` must be greater than 0 and at most 1, found {}", crate::ir::fmt_f64(gamma)),
                        named.get("gamma").map_or(expr.span, |e| e.span),
                        "out of range",
                    )
                    .with_help(format!("the learning rate is multiplied by `gamma`; for example `{}(gamma = {default})`", name.name)),
                );
                return default;
            }
            gamma
        };
        match name.name.as_str() {
            "constant" => LrSchedule::Constant,
            "step" => {
                let every = match named.get("every") {
                    Some(e) => self.positive_int(e, "every").unwrap_or(1),
                    None => 1,
                };
                LrSchedule::Step { every, gamma: gamma(self, 0.5) }
            }
            "exponential" => LrSchedule::Exponential { gamma: gamma(self, 0.95) },
            other => {
                let help = suggestion_help(
                    other,
                    ["constant", "step", "exponential"],
                    "schedules: constant, step(every, gamma), exponential(gamma)".to_string(),
                );
                self.sink.push(
                    Diagnostic::error("snn::names::unknown_schedule", format!("unknown schedule `{other}`"), name.span, "no such schedule")
                        .with_help(help),
                );
                LrSchedule::Constant
            }
        }
    }
}
