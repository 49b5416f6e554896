//! The `train` block: data, learning method (with the checks that the model supports it),
//! loss terms, prediction, optimiser, schedule, phases, hooks, records and clamps.

use std::collections::BTreeMap;

use crate::front::ast::{self, BinaryOp, ExprKind, Span, Stmt, TrainStmt, UnaryOp};
use crate::front::diag::{Diagnostic, Diagnostics, suggestion_help};
use crate::front::units::{self, Unit};
use crate::ir::train::*;
use crate::ir::{Integration, Module, PopId, ProjId};
use crate::lower::neuron::lower_surrogate;
use crate::lower::{Program, Sink};

pub const TRAIN_SETTINGS: [&str; 9] = ["data", "method", "predict", "optimizer", "batch", "epochs", "schedule", "clip", "seed"];
pub const METHODS: [&str; 4] = ["bptt", "eventprop", "fptt", "stdp"];
pub const OPTIMIZERS: [&str; 3] = ["adam", "adamax", "sgd"];
pub const DATASETS: [&str; 2] = ["mnist", "yin_yang"];
const TRAIN_FUNCTIONS: [&str; 27] = [
    "assigned_class",
    "count",
    "rate",
    "first_spike",
    "spikes",
    "spike_penalty",
    "weight_l2",
    "mse",
    "cross_entropy",
    "nll",
    "log_softmax",
    "softmax",
    "one_hot",
    "pick",
    "sum",
    "mean",
    "abs",
    "exp",
    "log",
    "argmax",
    "argmin",
    "sum_t",
    "mean_t",
    "max_t",
    "last_t",
    "cumulative",
    "square",
];

pub fn check_train_without_network(program: &Program, diagnostics: &mut Diagnostics) {
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
    /// Whether any lowered expression read `label`.
    reads_label: bool,
}

pub fn lower_train(
    program: &Program,
    module: &Module,
    source_map: &crate::lower::SourceMap,
    diagnostics: &mut Diagnostics,
) -> Option<Train> {
    let def = program.trains.first()?;
    let mut sink = Sink { diagnostics, file: program.file(def.file), main: program.file(0), enabled: true };
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
        Some(setting) => lower_data(&setting.value, &mut sink),
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
        _ => 784,
    };
    for input in &module.inputs {
        let size: usize = input.shape.iter().product();
        if size != features && data.is_some() {
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
    let mut lowerer = TrainLowerer { module, sink: &mut sink, exprs: TExprs::default(), classes, features, reads_label: false };
    let terms = lowerer.lower_losses(&losses);
    let predict = settings.get("predict").and_then(|s| lowerer.lower_predict(&s.value));
    let optimizer = settings.get("optimizer").map(|s| lowerer.lower_optimizer(&s.value));
    let batch = settings.get("batch").map_or(Some(32), |s| lowerer.positive_int(&s.value, "batch"));
    let epochs = settings.get("epochs").map_or(Some(1), |s| lowerer.positive_int(&s.value, "epochs"));
    let seed = settings.get("seed").map_or(Some(0), |s| lowerer.positive_int(&s.value, "seed"));
    let schedule = settings.get("schedule").map_or(LrSchedule::Constant, |s| lowerer.lower_schedule(&s.value));
    let clip = settings.get("clip").and_then(|s| lowerer.number(&s.value, "clip"));
    if gradient_method && terms.is_empty() && phases_ast.is_empty() {
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
        match stmt {
            TrainStmt::Hook { event, body, .. } => {
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
                before_sample.extend(lowerer.lower_actions(body));
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
            TrainStmt::Clamp { population, value, .. } => {
                let Some(pop) = lowerer.population(population) else { continue };
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
                clamps.push((pop, typed.id));
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
        batch: batch?,
        schedule,
        clip_grad_norm: clip,
        seed: seed? as u64,
        before_sample,
        retry,
        records,
        record_to,
        clamps,
    })
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

fn lower_data(expr: &ast::Expr, sink: &mut Sink) -> Option<Data> {
    let (name, args) = match &expr.kind {
        ExprKind::Call { func, args } => (func, args.as_slice()),
        ExprKind::Path(p) if p.len() == 1 => (&p[0], &[][..]),
        _ => {
            sink.push(
                Diagnostic::error("snn::train::bad_data", "`data` names a data set", expr.span, "not a data set")
                    .with_help("use `mnist(dir = ...)` or `yin_yang()`"),
            );
            return None;
        }
    };
    let named = named_args(args);
    match name.name.as_str() {
        "mnist" => {
            let dir = named.get("dir").and_then(|e| string_arg(e)).unwrap_or_else(|| "$SNNC_MNIST_DIR|data/mnist".to_string());
            let shift = named.get("shift").and_then(|e| const_number(e)).map_or(0.0, |v| v.0);
            let rotate = named.get("rotate").and_then(|e| const_number(e)).map_or(0.0, |v| v.0);
            Some(Data::Mnist { dir, augment_shift: shift, augment_rotate_deg: rotate })
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

fn lower_method(
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
    let method = match name.name.as_str() {
        "bptt" => Method::Bptt { surrogate: surrogate(sink)? },
        "fptt" => Method::Fptt {
            surrogate: surrogate(sink)?,
            updates: number("updates", 10.0) as usize,
            alpha: number("alpha", 0.2),
            beta: number("beta", 0.5),
        },
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
fn check_no_plasticity(program: &Program, module: &Module, source_map: &crate::lower::SourceMap, method: &ast::Ident, sink: &mut Sink) {
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

/// EventProp needs linear, exactly integrable dynamics with additive input jumps (seeds/002).
fn check_eventprop(module: &Module, span: Span, sink: &mut Sink) {
    for pop in &module.populations {
        if pop.threshold.is_none() {
            continue;
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

impl TrainLowerer<'_, '_, '_> {
    fn population(&mut self, ident: &ast::Ident) -> Option<PopId> {
        match self.module.populations.iter().position(|p| p.name == ident.name) {
            Some(index) => Some(PopId(index as u32)),
            None => {
                let help = suggestion_help(
                    &ident.name,
                    self.module.populations.iter().map(|p| p.name.as_str()),
                    "name a population of the network".to_string(),
                );
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown_population",
                        format!("unknown population `{}`", ident.name),
                        ident.span,
                        "not a population",
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    fn lower_losses(&mut self, losses: &[&ast::LossStmt]) -> Vec<LossTerm> {
        let mut terms = Vec::new();
        for loss in losses {
            let name = loss.name.as_ref().map_or_else(|| "loss".to_string(), |n| n.name.clone());
            if let Some(value) = self.lower_scalar(&loss.value, "a loss term") {
                terms.push(LossTerm { name, value });
            }
        }
        terms
    }

    /// Lowers an expression that must be one dimensionless number per sample.
    fn lower_scalar(&mut self, expr: &ast::Expr, what: &str) -> Option<TExprId> {
        let typed = self.lower(expr)?;
        let ty = self.exprs.ty(typed.id);
        if ty.per_step || ty.width != 1 {
            let shape = if ty.per_step { format!("{} values per step", ty.width) } else { format!("{} values per sample", ty.width) };
            self.sink.push(
                Diagnostic::error(
                    "snn::loss::not_scalar",
                    format!("{what} must be one number per sample, found {shape}"),
                    expr.span,
                    shape,
                )
                .with_help(
                    "reduce it with `sum(...)` or `mean(...)` over neurons and `sum_t(...)`, `mean_t(...)` or `max_t(...)` over time",
                ),
            );
            return None;
        }
        if let Some(unit) = &typed.unit
            && !unit.is_none()
        {
            self.sink.push(
                Diagnostic::error(
                    "snn::units::loss",
                    format!("{what} must be dimensionless, found {unit}"),
                    expr.span,
                    format!("this has unit {unit}"),
                )
                .with_help("divide by a reference quantity, e.g. `first_spike(out) / 0.5 ms`"),
            );
        }
        Some(typed.id)
    }

    fn lower_predict(&mut self, expr: &ast::Expr) -> Option<TExprId> {
        let typed = self.lower(expr)?;
        let ty = self.exprs.ty(typed.id);
        if ty.per_step || ty.width != 1 {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_predict",
                    "`predict` must give one class per sample",
                    expr.span,
                    "not one value per sample",
                )
                .with_help("use `argmax(count(out))` or `argmin(first_spike(out))`"),
            );
            return None;
        }
        Some(typed.id)
    }

    fn positive_int(&mut self, expr: &ast::Expr, what: &str) -> Option<usize> {
        match const_number(expr) {
            Some((value, _)) if value >= 0.0 && value == value.trunc() => Some(value as usize),
            _ => {
                self.sink.push(
                    Diagnostic::error(
                        "snn::train::bad_setting",
                        format!("`{what}` must be a whole number"),
                        expr.span,
                        "not a whole number",
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
        match name.name.as_str() {
            "constant" => LrSchedule::Constant,
            "step" => LrSchedule::Step { every: number("every", 1.0) as usize, gamma: number("gamma", 0.5) },
            "exponential" => LrSchedule::Exponential { gamma: number("gamma", 0.95) },
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

    fn lower_actions(&mut self, body: &ast::Block) -> Vec<HookAction> {
        let mut actions = Vec::new();
        for stmt in &body.stmts {
            match stmt {
                Stmt::Call { call, span } => {
                    let ExprKind::Call { func, args } = &call.kind else { continue };
                    if func.name != "normalize" {
                        let help =
                            suggestion_help(&func.name, ["normalize"], "hooks call `normalize(weights(a, b), total = 78)`".to_string());
                        self.sink.push(
                            Diagnostic::error(
                                "snn::names::unknown_function",
                                format!("unknown hook action `{}`", func.name),
                                func.span,
                                "not an action",
                            )
                            .with_help(help),
                        );
                        continue;
                    }
                    let projection = args.first().and_then(|a| self.weights_ref(&a.value));
                    let total = named_args(args).get("total").and_then(|e| const_number(e)).map(|v| v.0);
                    match (projection, total) {
                        (Some(projection), Some(total)) => actions.push(HookAction::NormalizeColumns { projection, total }),
                        (_, None) => self.sink.push(
                            Diagnostic::error("snn::call::missing_argument", "`normalize` needs `total`", *span, "no total")
                                .with_help("write `normalize(weights(pixels, exc), total = 78)`"),
                        ),
                        _ => {}
                    }
                }
                Stmt::Assign { target, op, value, span } => {
                    let name = &target[0];
                    let Some(index) = self.module.params.iter().position(|(n, _)| *n == name.name) else {
                        let help = suggestion_help(
                            &name.name,
                            self.module.params.iter().map(|(n, _)| n.as_str()),
                            "declare it in the network with `param`".to_string(),
                        );
                        self.sink.push(
                            Diagnostic::error(
                                "snn::names::unknown",
                                format!("`{}` is not a network parameter", name.name),
                                name.span,
                                "cannot assign",
                            )
                            .with_help(help),
                        );
                        continue;
                    };
                    let Some((by, _)) = const_number(value) else {
                        self.sink.push(
                            Diagnostic::error("snn::types::not_constant", "hooks assign numbers", value.span, "not a number")
                                .with_help("for example `intensity += 1`"),
                        );
                        continue;
                    };
                    let param = index as u32;
                    match op {
                        ast::AssignOp::Set => actions.push(HookAction::SetParam { param, value: by }),
                        ast::AssignOp::Add => actions.push(HookAction::AddToParam { param, by }),
                        ast::AssignOp::Sub => actions.push(HookAction::AddToParam { param, by: -by }),
                        ast::AssignOp::Mul => self.sink.push(
                            Diagnostic::error(
                                "snn::types::statement_not_allowed",
                                "hooks set (`=`) or add to (`+=`, `-=`) parameters",
                                *span,
                                "`*=` here",
                            )
                            .with_help("write `x = value` or `x += step`"),
                        ),
                    }
                }
                Stmt::Let(let_) => self.sink.push(
                    Diagnostic::error(
                        "snn::types::statement_not_allowed",
                        "`let` is not available in hooks",
                        let_.span,
                        "not allowed here",
                    )
                    .with_help("hooks contain `normalize(...)` calls and parameter assignments"),
                ),
                Stmt::Deliver { span, .. } => self.sink.push(
                    Diagnostic::error("snn::types::statement_not_allowed", "`deliver` belongs in a synapse", *span, "not allowed here")
                        .with_help("hooks contain `normalize(...)` calls and parameter assignments"),
                ),
            }
        }
        actions
    }

    /// `weights(source, target)`: the projection between two layers.
    fn weights_ref(&mut self, expr: &ast::Expr) -> Option<ProjId> {
        let ExprKind::Call { func, args } = &expr.kind else {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_weights",
                    "name the weights as `weights(source, target)`",
                    expr.span,
                    "not a weights reference",
                )
                .with_help("for example `weights(pixels, exc)`"),
            );
            return None;
        };
        let names: Vec<&ast::Ident> = args.iter().filter_map(|a| a.value.as_name()).collect();
        if func.name != "weights" || names.len() != 2 {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_weights",
                    "name the weights as `weights(source, target)`",
                    expr.span,
                    "not a weights reference",
                )
                .with_help("for example `weights(pixels, exc)`"),
            );
            return None;
        }
        let found =
            self.module.projections.iter().position(|p| {
                self.module.source_name(&p.source) == names[0].name && self.module.population(p.target).name == names[1].name
            });
        if found.is_none() {
            self.sink.push(
                Diagnostic::error(
                    "snn::train::bad_weights",
                    format!("there is no connection `{} -> {}`", names[0].name, names[1].name),
                    expr.span,
                    "no such connection",
                )
                .with_help("name the source and target of a `connect` statement"),
            );
        }
        found.map(|i| ProjId(i as u32))
    }

    fn lower_record(&mut self, path: &[ast::Ident]) -> Option<(PopId, Option<crate::ir::VarId>)> {
        let pop = self.population(&path[0])?;
        if path.len() == 1 {
            return Some((pop, None));
        }
        let name: Vec<&str> = path[1..].iter().map(|p| p.name.as_str()).collect();
        let name = name.join(".");
        let population = self.module.population(pop);
        match population.var_by_name(&name) {
            Some(var) => Some((pop, Some(var))),
            None => {
                let help =
                    suggestion_help(&name, population.vars.iter().map(|v| v.name.as_str()), "record a state of the population".to_string());
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown",
                        format!("`{}` has no state `{name}`", population.name),
                        path[1].span,
                        "no such state",
                    )
                    .with_help(help),
                );
                None
            }
        }
    }

    fn push(&mut self, node: TNode, width: usize, per_step: bool, unit: Option<Unit>) -> Option<Typed> {
        let id = self.exprs.push(node, TType { width, per_step });
        Some(Typed { id, unit })
    }

    fn lower(&mut self, expr: &ast::Expr) -> Option<Typed> {
        match &expr.kind {
            ExprKind::Quantity { .. } => {
                let (value, unit) = const_number(expr)?;
                self.push(TNode::Const(value), 1, false, unit)
            }
            ExprKind::Bool(b) => self.push(TNode::Const(f64::from(u8::from(*b))), 1, false, Some(Unit::none())),
            ExprKind::Paren(inner) => self.lower(inner),
            ExprKind::Path(segments) => self.lower_path(segments, expr.span),
            ExprKind::Unary { op, operand } => {
                let a = self.lower(operand)?;
                let ty = self.exprs.ty(a.id);
                self.push(TNode::Unary(*op, a.id), ty.width, ty.per_step, a.unit)
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let a = self.lower(lhs);
                let b = self.lower(rhs);
                let (a, b) = (a?, b?);
                let (ta, tb) = (self.exprs.ty(a.id), self.exprs.ty(b.id));
                if ta.width != tb.width && ta.width != 1 && tb.width != 1 {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::shapes::mismatch",
                            format!("`{}` combines {} values with {} values", op.symbol(), ta.width, tb.width),
                            expr.span,
                            format!("{} vs {}", ta.width, tb.width),
                        )
                        .with_label(lhs.span, format!("{} values", ta.width))
                        .with_label(rhs.span, format!("{} values", tb.width))
                        .with_help("both sides need the same number of values, or one of them a single value"),
                    );
                    return None;
                }
                let unit = match op {
                    BinaryOp::Mul => a.unit.zip(b.unit).map(|(x, y)| x.mul(&y)),
                    BinaryOp::Div => a.unit.zip(b.unit).map(|(x, y)| x.div(&y)),
                    BinaryOp::Pow => a.unit.clone().map(|u| if u.is_none() { u } else { u.powi(2) }),
                    _ => {
                        if let (Some(x), Some(y)) = (&a.unit, &b.unit)
                            && x != y
                        {
                            self.sink.push(
                                Diagnostic::error(
                                    "snn::units::mismatch",
                                    format!("units of `{}` do not match: {x} and {y}", op.symbol()),
                                    rhs.span,
                                    format!("this has unit {y}"),
                                )
                                .with_label(lhs.span, format!("this has unit {x}"))
                                .with_help("both sides need the same unit"),
                            );
                        }
                        if op.is_comparison() { Some(Unit::none()) } else { a.unit }
                    }
                };
                self.push(TNode::Binary(*op, a.id, b.id), ta.width.max(tb.width), ta.per_step || tb.per_step, unit)
            }
            ExprKind::Call { func, args } => self.lower_call(func, args, expr.span),
            ExprKind::Index { base, index } => {
                let _ = (base, index);
                self.sink.push(
                    Diagnostic::error(
                        "snn::types::unsupported_expression",
                        "indexing is not available in loss terms",
                        expr.span,
                        "indexing",
                    )
                    .with_help("use `pick(values, label)` to select the target's entry"),
                );
                None
            }
            ExprKind::Str(_) | ExprKind::List(_) => {
                self.sink.push(
                    Diagnostic::error("snn::types::unsupported_expression", "this is not a number", expr.span, "not a number")
                        .with_help("loss terms are built from readouts, label and numbers"),
                );
                None
            }
        }
    }

    fn lower_path(&mut self, segments: &[ast::Ident], span: Span) -> Option<Typed> {
        let first = &segments[0];
        if segments.len() == 1 {
            match first.name.as_str() {
                "label" => {
                    self.reads_label = true;
                    return self.push(TNode::Label, 1, false, Some(Unit::none()));
                }
                "image" | "sample" => return self.push(TNode::Sample, self.features, false, Some(Unit::none())),
                "steps" => return self.push(TNode::Steps, 1, false, Some(Unit::none())),
                "dt" => return self.push(TNode::Const(self.module.dt), 1, false, Some(Unit::time_ms())),
                _ => {}
            }
            if let Some(index) = self.module.params.iter().position(|(n, _)| *n == first.name) {
                return self.push(TNode::NetParam(index as u32), 1, false, Some(Unit::none()));
            }
            let is_pop = self.module.populations.iter().any(|p| p.name == first.name);
            let help = if is_pop {
                format!("a population is read through a readout: `count({0})`, `rate({0})`, `first_spike({0})` or `{0}.v`", first.name)
            } else {
                suggestion_help(
                    &first.name,
                    ["label", "image", "sample", "steps", "dt"].into_iter().chain(self.module.params.iter().map(|(n, _)| n.as_str())),
                    "loss terms read `label`, `steps`, network parameters and readouts of populations".to_string(),
                )
            };
            self.sink.push(
                Diagnostic::error("snn::names::unknown", format!("unknown name `{}`", first.name), span, "not found here").with_help(help),
            );
            return None;
        }
        let pop_id = self.population(first)?;
        let pop = self.module.population(pop_id);
        let name: Vec<&str> = segments[1..].iter().map(|s| s.name.as_str()).collect();
        let name = name.join(".");
        if let Some(var) = pop.var_by_name(&name) {
            return self.push(TNode::Readout(Readout::State(pop_id, var)), pop.size(), true, None);
        }
        if let Some(index) = pop.observables.iter().position(|(n, _)| *n == name) {
            return self.push(TNode::Readout(Readout::Observable(pop_id, index as u32)), pop.size(), true, None);
        }
        let candidates: Vec<&str> =
            pop.vars.iter().map(|v| v.name.as_str()).chain(pop.observables.iter().map(|(n, _)| n.as_str())).collect();
        let help = suggestion_help(&name, candidates.iter().copied(), format!("`{}` has {}", pop.name, candidates.join(", ")));
        self.sink.push(
            Diagnostic::error(
                "snn::names::unknown",
                format!("`{}` has no state or observable `{name}`", pop.name),
                segments[1].span,
                "not found",
            )
            .with_help(help),
        );
        None
    }

    fn lower_call(&mut self, func: &ast::Ident, args: &[ast::Arg], span: Span) -> Option<Typed> {
        let name = func.name.as_str();
        let readout = |this: &mut Self, make: fn(PopId) -> Readout, per_step: bool, unit: Unit| -> Option<Typed> {
            if args.len() != 1 {
                this.arity(func, args.len(), 1, span);
                return None;
            }
            let Some(ident) = args[0].value.as_name() else {
                this.sink.push(
                    Diagnostic::error(
                        "snn::train::bad_readout",
                        format!("`{name}` reads a population"),
                        args[0].value.span,
                        "not a population name",
                    )
                    .with_help(format!("write `{name}(out)`")),
                );
                return None;
            };
            let pop = this.population(ident)?;
            let width = this.module.population(pop).size();
            if this.module.population(pop).threshold.is_none() {
                this.sink.push(
                    Diagnostic::error(
                        "snn::train::no_spikes",
                        format!("`{}` never spikes, so `{name}` has nothing to read", ident.name),
                        ident.span,
                        "non-spiking population",
                    )
                    .with_help(format!("read its state instead, e.g. `{}.v`", ident.name)),
                );
            }
            this.push(TNode::Readout(make(pop)), width, per_step, Some(unit))
        };
        match name {
            "count" => return readout(self, Readout::Count, false, Unit::none()),
            "spikes" => return readout(self, Readout::Spikes, true, Unit::none()),
            "first_spike" => return readout(self, Readout::FirstSpike, false, Unit::time_ms()),
            "spike_penalty" => return readout(self, Readout::SpikePenalty, false, Unit::hz()),
            "rate" => {
                let count = readout(self, Readout::Count, false, Unit::none())?;
                let width = self.exprs.ty(count.id).width;
                let steps = self.exprs.push(TNode::Steps, TType { width: 1, per_step: false });
                return self.push(TNode::Binary(BinaryOp::Div, count.id, steps), width, false, Some(Unit::none()));
            }
            "weight_l2" => {
                let projection = (if args.len() == 2 {
                    let call = ast::Expr {
                        kind: ExprKind::Call { func: ast::Ident { name: "weights".into(), span: func.span }, args: args.to_vec() },
                        span,
                    };
                    self.weights_ref(&call)
                } else {
                    self.arity(func, args.len(), 2, span);
                    None
                })?;
                return self.push(TNode::WeightL2(projection), 1, false, Some(Unit::none()));
            }
            "one_hot" => {
                let named = named_args(args);
                let on = named.get("on").and_then(|e| const_number(e)).map_or(1.0, |v| v.0);
                let off = named.get("off").and_then(|e| const_number(e)).map_or(0.0, |v| v.0);
                let label = args.iter().find(|a| a.name.is_none()).map(|a| &a.value);
                let Some(label) = label else {
                    self.arity(func, 0, 1, span);
                    return None;
                };
                let label = self.lower(label)?;
                let on = self.exprs.push(TNode::Const(on), TType { width: 1, per_step: false });
                let off = self.exprs.push(TNode::Const(off), TType { width: 1, per_step: false });
                return self.push(TNode::Call(TFunc::OneHot, vec![label.id, on, off]), self.classes, false, Some(Unit::none()));
            }
            _ => {}
        }
        let func_kind = match name {
            "mse" => TFunc::Mse,
            "cross_entropy" => TFunc::CrossEntropy,
            "nll" => TFunc::Nll,
            "log_softmax" => TFunc::LogSoftmax,
            "softmax" => TFunc::Softmax,
            "pick" => TFunc::Pick,
            "sum" => TFunc::Sum,
            "mean" => TFunc::Mean,
            "abs" => TFunc::Abs,
            "exp" => TFunc::Exp,
            "log" => TFunc::Log,
            "argmax" => TFunc::Argmax,
            "argmin" => TFunc::Argmin,
            "sum_t" => TFunc::SumT,
            "mean_t" => TFunc::MeanT,
            "max_t" => TFunc::MaxT,
            "last_t" => TFunc::LastT,
            "cumulative" => TFunc::Cumulative,
            "assigned_class" => TFunc::AssignedClass,
            "square" => {
                if args.len() != 1 {
                    self.arity(func, args.len(), 1, span);
                    return None;
                }
                let a = self.lower(&args[0].value)?;
                let ty = self.exprs.ty(a.id);
                return self.push(TNode::Binary(BinaryOp::Mul, a.id, a.id), ty.width, ty.per_step, a.unit.map(|u| u.powi(2)));
            }
            other => {
                let help = suggestion_help(other, TRAIN_FUNCTIONS, format!("loss functions and readouts: {}", TRAIN_FUNCTIONS.join(", ")));
                self.sink.push(
                    Diagnostic::error(
                        "snn::names::unknown_function",
                        format!("unknown function `{other}`"),
                        func.span,
                        "not a function here",
                    )
                    .with_help(help),
                );
                return None;
            }
        };
        let arity = match func_kind {
            TFunc::Mse | TFunc::CrossEntropy | TFunc::Nll | TFunc::Pick | TFunc::Cumulative => 2,
            _ => 1,
        };
        let positional: Vec<&ast::Arg> = args.iter().filter(|a| a.name.is_none()).collect();
        if positional.len() != arity {
            self.arity(func, positional.len(), arity, span);
            return None;
        }
        let lowered: Vec<Option<Typed>> = positional.iter().map(|a| self.lower(&a.value)).collect();
        let lowered: Vec<Typed> = lowered.into_iter().collect::<Option<_>>()?;
        let ty0 = self.exprs.ty(lowered[0].id);
        let ids: Vec<TExprId> = lowered.iter().map(|t| t.id).collect();
        let unit0 = lowered[0].unit.clone();
        let none = Some(Unit::none());
        let (width, per_step, unit) = match func_kind {
            TFunc::Mse => {
                let ty1 = self.exprs.ty(lowered[1].id);
                if ty0.width != ty1.width && ty1.width != 1 {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::shapes::mismatch",
                            format!("`mse` compares {} values with {} values", ty0.width, ty1.width),
                            span,
                            "sizes differ",
                        )
                        .with_label(positional[0].value.span, format!("{} values", ty0.width))
                        .with_label(positional[1].value.span, format!("{} values", ty1.width))
                        .with_help("the prediction and the target need the same number of values"),
                    );
                }
                (1, ty0.per_step || ty1.per_step, unit0.map(|u| u.powi(2)))
            }
            TFunc::CrossEntropy | TFunc::Nll => {
                if ty0.width != self.classes {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::shapes::classes",
                            format!("`{name}` needs one value per class ({}), found {}", self.classes, ty0.width),
                            positional[0].value.span,
                            format!("{} values", ty0.width),
                        )
                        .with_help(format!("read an output population with {} neurons", self.classes)),
                    );
                }
                (1, ty0.per_step, none)
            }
            TFunc::Pick => (1, ty0.per_step, unit0),
            TFunc::LogSoftmax | TFunc::Softmax | TFunc::Abs => {
                (ty0.width, ty0.per_step, if func_kind == TFunc::Abs { unit0 } else { none })
            }
            TFunc::Exp | TFunc::Log => {
                if let Some(unit) = &unit0
                    && !unit.is_none()
                {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::units::function_argument",
                            format!("`{name}` takes a dimensionless argument, found {unit}"),
                            positional[0].value.span,
                            format!("this has unit {unit}"),
                        )
                        .with_help("divide by a reference quantity, e.g. `exp(first_spike(out) / 6.4 ms)`"),
                    );
                }
                (ty0.width, ty0.per_step, none)
            }
            TFunc::Sum | TFunc::Mean => (1, ty0.per_step, unit0),
            TFunc::Argmax | TFunc::Argmin | TFunc::AssignedClass => (1, ty0.per_step, none),
            TFunc::SumT | TFunc::MeanT | TFunc::MaxT | TFunc::LastT | TFunc::Cumulative => {
                if !ty0.per_step {
                    self.sink.push(
                        Diagnostic::error(
                            "snn::train::not_per_step",
                            format!("`{name}` reduces over time, but its argument is already one value per sample"),
                            positional[0].value.span,
                            "not a per-step value",
                        )
                        .with_help("time reductions take per-step readouts such as `out.v` or `spikes(out)`"),
                    );
                    return None;
                }
                (ty0.width, func_kind == TFunc::Cumulative, unit0)
            }
            TFunc::OneHot => unreachable!("handled above"),
        };
        self.push(TNode::Call(func_kind, ids), width, per_step, unit)
    }

    fn arity(&mut self, func: &ast::Ident, found: usize, expected: usize, span: Span) {
        let plural = if expected == 1 { "" } else { "s" };
        self.sink.push(
            Diagnostic::error(
                "snn::call::arity",
                format!("`{}` takes {expected} argument{plural}, found {found}", func.name),
                span,
                format!("{found} given"),
            )
            .with_help(format!("call it with {expected} argument{plural}")),
        );
    }
}
