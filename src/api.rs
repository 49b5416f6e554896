//! snnc as a library: a thin facade over the stages for programs that build, train and probe
//! models without the command line.
//!
//! [`Model::compile`] checks a model's text and lowers it (the diagnostics of `snnc check` come
//! back in [`Error::Check`]), [`Model::train`] trains it as its `train` block says, and
//! [`Model::evaluate`], [`Model::simulate`] and [`Model::weights`] read back the test accuracy,
//! one sample's spike trains and states, and the learned weights. Every call goes through the
//! same stages as `snnc run` ([`crate::cli::driver`], [`crate::train::train_module`],
//! [`crate::exec::engine`]); values are f32.
//!
//! ```
//! use snnc::api::{Model, TrainOptions};
//!
//! let text = r#"
//! import std::neurons
//! import std::encoders
//! import std::surrogates
//!
//! network Tiny {
//!     steps = 10
//!     input xy[5] = repeat(sample)
//!     population hidden[32] = Leaky(beta = 0.9)
//!     population out[3] = LI(beta = 0.9)
//!     connect xy -> hidden.i : dense(init = uniform(-0.5, 0.5))
//!     connect hidden -> out.i : dense(init = uniform(-0.1, 0.1))
//! }
//!
//! train {
//!     data = yin_yang(train = 500, test = 100)
//!     method = bptt(surrogate = fast_sigmoid(slope = 10))
//!     loss ce = cross_entropy(max_t(out.v), label)
//!     predict = argmax(max_t(out.v))
//!     optimizer = adam(lr = 5e-3)
//!     batch = 32
//! }
//! "#;
//! let mut model = Model::compile(text)?;
//! let data = model.dataset()?;
//! let metrics = model.train(&data, &TrainOptions { epochs: Some(1), ..Default::default() })?;
//! assert_eq!(metrics.len(), 1);
//! let run = model.simulate(&data.test.sample(0))?;
//! let hidden = run.population("hidden").expect("a population of the model");
//! println!("hidden fired {} spikes", hidden.counts().iter().sum::<usize>());
//! let w = model.weights("hidden", "out")?;
//! assert_eq!(w.shape, [32, 3]);
//! # Ok::<(), snnc::api::Error>(())
//! ```

#![warn(missing_docs)]

use std::path::Path;

use crate::cli::driver::{Checked, apply_sets, check_path, check_text, load_data_for, render_all};
use crate::data::Dataset;
use crate::exec::engine::{self, Ctx, EngineError, EngineKind, Shard};
use crate::exec::state::{Params, ParamsAccess, SampleRef, init_params};
use crate::front::diag::Diagnostic;
use crate::ir::VarKind;
use crate::ir::validate::{Valid, validate};
use crate::train::method::MethodState;
use crate::train::metrics::Evaluation;
use crate::train::{EpochMetrics, Observer, Quiet, RunConfig, RunError, Snapshot, evaluate_module, run::run_seed, train_module};

/// Why a call of the facade failed. `Debug` shows what `Display` does (the rendered
/// diagnostics), so that `fn main() -> Result<(), Box<dyn std::error::Error>>` ends with a
/// readable message.
pub enum Error {
    /// The model's text has errors: the diagnostics `snnc check` prints (code, message, spans,
    /// help), warnings included. [`Error::diagnostics`] gives them; `Display` renders them.
    Check(Vec<Diagnostic>),
    /// The text checks but defines no network.
    NoNetwork,
    /// The call needs a `train` block, which the model does not have.
    NoTrainBlock,
    /// A file could not be read, or a data set loaded (MNIST's files are missing, say).
    Io(String),
    /// A setting given to [`Model::set`] was refused, or the model it made is not valid.
    Setting(String),
    /// The engine could not be built.
    Engine(EngineError),
    /// Training or evaluation stopped.
    Run(RunError),
    /// A name the model does not have: `what` is "population", "connection" or the like,
    /// `known` lists the names it does have.
    Unknown {
        /// What kind of name: "single connection" and the like.
        what: &'static str,
        /// The name asked for.
        name: String,
        /// The names of that kind the model has.
        known: Vec<String>,
    },
    /// A sample with the wrong number of values for the model's inputs.
    SampleSize {
        /// Values per sample of the model's inputs.
        expected: usize,
        /// Values given.
        got: usize,
    },
}

impl Error {
    /// The diagnostics of a model that does not check; empty for other errors.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Error::Check(diagnostics) => diagnostics,
            _ => &[],
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Check(diagnostics) => write!(f, "{}", render_all(diagnostics, 100)),
            Error::NoNetwork => write!(f, "the model defines no network"),
            Error::NoTrainBlock => write!(f, "the model has no train block"),
            Error::Io(message) | Error::Setting(message) => write!(f, "{message}"),
            Error::Engine(error) => write!(f, "{error}"),
            Error::Run(error) => write!(f, "{error}"),
            Error::Unknown { what, name, known } => write!(f, "the model has no {what} `{name}`; it has: {}", known.join(", ")),
            Error::SampleSize { expected, got } => write!(f, "a sample of this model has {expected} values, not {got}"),
        }
    }
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {}

impl From<RunError> for Error {
    fn from(error: RunError) -> Error {
        Error::Run(error)
    }
}

impl From<EngineError> for Error {
    fn from(error: EngineError) -> Error {
        Error::Engine(error)
    }
}

/// How [`Model::train`] runs: the command line's `--epochs`, `--limit-train` and
/// `--limit-test`.
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Epochs per phase, instead of the train block's.
    pub epochs: Option<usize>,
    /// Train on the first N training samples only.
    pub limit_train: Option<usize>,
    /// Evaluate after each epoch on the first N test samples only.
    pub limit_test: Option<usize>,
}

/// A compiled model with its parameters: the weights and learned values, as drawn from the
/// model's `init`s and then as trained.
pub struct Model {
    module: Valid,
    params: Params<f32>,
    method: MethodState<f32>,
    net: Vec<f64>,
    history: Vec<EpochMetrics>,
    engine: EngineKind,
    warnings: Vec<Diagnostic>,
}

impl Model {
    /// Checks and compiles a model from its text. `import std::...` reads the embedded standard
    /// library; a quoted import is read relative to the current directory (see
    /// [`Model::compile_at`]).
    pub fn compile(text: &str) -> Result<Model, Error> {
        Model::from_checked(check_text("model.snn", text, None))
    }

    /// [`Model::compile`] with the name diagnostics show and the folder quoted imports are read
    /// from.
    pub fn compile_at(name: &str, text: &str, base_dir: Option<&Path>) -> Result<Model, Error> {
        Model::from_checked(check_text(name, text, base_dir))
    }

    /// Reads, checks and compiles a `.snn` file.
    pub fn open(path: &Path) -> Result<Model, Error> {
        Model::from_checked(check_path(path).map_err(Error::Io)?)
    }

    fn from_checked(checked: Checked) -> Result<Model, Error> {
        if checked.has_errors() {
            return Err(Error::Check(checked.diagnostics));
        }
        let module = checked.outcome.module.ok_or(Error::NoNetwork)?;
        let module = validate(module).map_err(|e| Error::Setting(format!("the model is not valid after lowering: {e}")))?;
        let params = init_params(&module, run_seed(&module, &RunConfig::default()));
        let net = module.net_values();
        Ok(Model {
            module,
            params,
            method: MethodState::default(),
            net,
            history: Vec::new(),
            engine: EngineKind::default(),
            warnings: checked.diagnostics,
        })
    }

    /// The warnings the checker gave (lints such as `snn::lint::euler`).
    pub fn warnings(&self) -> &[Diagnostic] {
        &self.warnings
    }

    /// The compiled module: populations, projections, the train block.
    pub fn module(&self) -> &crate::ir::Module {
        &self.module
    }

    /// Runs on the given engine from now on: the compiled kernels ([`EngineKind::Jit`], the
    /// default) or the scalar reference interpreter ([`EngineKind::Oracle`]).
    pub fn with_engine(mut self, engine: EngineKind) -> Model {
        self.engine = engine;
        self
    }

    /// Changes a setting as `snnc run --set name=value` does: `steps`, `batch`, `epochs`, `lr`,
    /// `seed` or a network parameter. Before any training, a new `seed` draws the parameters
    /// anew.
    pub fn set(&mut self, name: &str, value: f64) -> Result<(), Error> {
        let mut module = self.module.clone().into_inner();
        apply_sets(&mut module, &[(name.to_string(), value.to_string())]).map_err(Error::Setting)?;
        self.module = validate(module).map_err(|e| Error::Setting(format!("the model is not valid after `{name}`: {e}")))?;
        if let Some(index) = self.module.params.iter().position(|(n, _)| n == name) {
            self.net[index] = self.module.params[index].1;
        }
        if name == "seed" && self.history.is_empty() {
            self.params = init_params(&self.module, run_seed(&self.module, &RunConfig::default()));
        }
        Ok(())
    }

    /// The data set the train block names: Yin-Yang is generated; MNIST is read from the
    /// folder the model names (`env("SNNC_MNIST_DIR", ...)`).
    pub fn dataset(&self) -> Result<Dataset, Error> {
        self.module.train.as_ref().ok_or(Error::NoTrainBlock)?;
        load_data_for(&self.module, None).map_err(Error::Io)
    }

    /// Trains the model as its train block says (method, phases, hooks, epochs), evaluating on
    /// the test split after every epoch, and returns the epochs' metrics. It starts from the
    /// model's current parameters: a second call trains on from where the first ended, with the
    /// optimiser's state, the train block run again from its first phase and epoch (its
    /// learning-rate schedule and data order too).
    pub fn train(&mut self, data: &Dataset, options: &TrainOptions) -> Result<&[EpochMetrics], Error> {
        self.train_observed(data, options, &mut Quiet)
    }

    /// [`Model::train`] that also reports to `observer` after every batch and epoch.
    pub fn train_observed(
        &mut self,
        data: &Dataset,
        options: &TrainOptions,
        observer: &mut dyn Observer<f32>,
    ) -> Result<&[EpochMetrics], Error> {
        let config = self.config(options);
        let resume = Snapshot { params: self.params.clone(), method: self.method.clone(), epochs_done: 0, net: self.net.clone() };
        let mut keep = Keep { inner: observer, last: None };
        let (params, history) = train_module::<f32>(&self.module, data, &config, Some(resume), &mut keep)?;
        if let Some(snapshot) = keep.last {
            self.method = snapshot.method;
            self.net = snapshot.net;
        }
        self.params = params;
        let start = self.history.len();
        self.history.extend(history.into_iter().enumerate().map(|(k, mut metrics)| {
            metrics.epoch = start + k + 1;
            metrics
        }));
        Ok(&self.history[start..])
    }

    /// The metrics of every epoch trained so far, numbered on across calls of [`Model::train`].
    pub fn history(&self) -> &[EpochMetrics] {
        &self.history
    }

    /// Test accuracy, spikes per neuron and activity per population on the first `limit_test`
    /// test samples (all when None), as `snnc eval` reports them.
    pub fn evaluate(&self, data: &Dataset, limit_test: Option<usize>) -> Result<Evaluation, Error> {
        let config = self.config(&TrainOptions { limit_test, ..Default::default() });
        Ok(evaluate_module(&self.module, data, &self.params, &config)?)
    }

    /// Runs one sample forward through every step, as evaluation does (learning held, states
    /// `frozen in eval` held), and returns every population's spikes and states. `features` are
    /// the sample's values (`data.test.sample(i)`); random draws are those of sample id 0.
    pub fn simulate(&self, features: &[f32]) -> Result<Simulation, Error> {
        let expected: usize = self.module.inputs.iter().map(|i| i.shape.iter().product::<usize>()).max().unwrap_or(0);
        if self.module.inputs.iter().any(|i| i.shape.iter().product::<usize>() != features.len()) {
            return Err(Error::SampleSize { expected, got: features.len() });
        }
        let held;
        let module = if self.module.has_frozen_states() {
            held = validate(self.module.for_evaluation()).map_err(|e| Error::Setting(e.to_string()))?;
            &held
        } else {
            &self.module
        };
        let engine = engine::build::<f32>(self.engine, module)?;
        let net: Vec<f32> = self.net.iter().map(|x| *x as f32).collect();
        let ctx = Ctx { module, seed: run_seed(module, &RunConfig::default()), net: &net };
        let samples = [SampleRef { id: 0, features }];
        let trace = engine.forward(&ctx, ParamsAccess::Shared(&self.params), Shard { samples: &samples, hoisted: None }, None);
        let populations = module
            .populations
            .iter()
            .enumerate()
            .map(|(p, pop)| {
                let n = pop.size();
                let spikes = (0..trace.steps)
                    .map(|t| {
                        let row: Vec<f32> = trace.sample_spikes(t, p, 0);
                        row.iter().enumerate().filter(|(_, s)| **s != 0.0).map(|(i, _)| i).collect()
                    })
                    .collect();
                let states = pop
                    .vars
                    .iter()
                    .enumerate()
                    .filter(|(_, var)| matches!(var.kind, VarKind::State { .. }))
                    .map(|(v, var)| (var.name.clone(), (0..trace.steps).map(|t| trace.state_after(t, p, v)[..n].to_vec()).collect()))
                    .collect();
                PopulationRun { name: pop.name.clone(), size: n, spikes, states }
            })
            .collect();
        Ok(Simulation { steps: trace.steps, dt: module.dt, populations })
    }

    /// The weights of the connection from `source` (an input or a population, as the
    /// `connect` statement writes it: `pixels`, `hidden`, `out.u`) to the population `target`
    /// (`target.port` where two connections join the same pair through different ports).
    pub fn weights(&self, source: &str, target: &str) -> Result<Weights, Error> {
        let (target_pop, port) = match target.split_once('.') {
            Some((pop, port)) => (pop, Some(port)),
            None => (target, None),
        };
        let found: Vec<usize> = (0..self.module.projections.len())
            .filter(|&i| {
                let proj = &self.module.projections[i];
                let pop = self.module.population(proj.target);
                self.module.source_label(&proj.source) == source
                    && pop.name == target_pop
                    && port.is_none_or(|port| pop.ports[proj.port.0 as usize] == port)
            })
            .collect();
        match found.as_slice() {
            [index] => {
                let proj = &self.module.projections[*index];
                let pop = self.module.population(proj.target);
                Ok(Weights {
                    source: source.to_string(),
                    target: pop.name.clone(),
                    port: pop.ports[proj.port.0 as usize].clone(),
                    shape: proj.weight_shape.clone(),
                    values: self.params.weights[*index].clone(),
                })
            }
            _ => Err(Error::Unknown { what: "single connection", name: format!("{source} -> {target}"), known: self.connections() }),
        }
    }

    /// Every connection, as `source -> target.port`.
    pub fn connections(&self) -> Vec<String> {
        self.module
            .projections
            .iter()
            .map(|proj| {
                let pop = self.module.population(proj.target);
                format!("{} -> {}.{}", self.module.source_label(&proj.source), pop.name, pop.ports[proj.port.0 as usize])
            })
            .collect()
    }

    /// The parameters as they stand: weights per connection (in the order of
    /// [`Model::connections`]) and learned or persistent neuron values.
    pub fn params(&self) -> &Params<f32> {
        &self.params
    }

    fn config(&self, options: &TrainOptions) -> RunConfig {
        RunConfig { epochs: options.epochs, limit_train: options.limit_train, limit_test: options.limit_test, seed: 0, engine: self.engine }
    }
}

/// Passes everything on to the caller's observer and keeps the last epoch's snapshot (the
/// optimiser's state and the network parameters' values, for the next call of `train`).
struct Keep<'a> {
    inner: &'a mut dyn Observer<f32>,
    last: Option<Snapshot<f32>>,
}

impl Observer<f32> for Keep<'_> {
    fn batch(&mut self, done: usize, total: usize, running_loss: f64) {
        self.inner.batch(done, total, running_loss);
    }

    fn records(&mut self, records: &crate::train::hooks::RecordText) {
        self.inner.records(records);
    }

    fn epoch(&mut self, metrics: &EpochMetrics, snapshot: &Snapshot<f32>) -> Result<(), String> {
        self.last = Some(snapshot.clone());
        self.inner.epoch(metrics, snapshot)
    }

    fn showcase(&mut self, showcase: &crate::train::metrics::Showcase) -> Result<(), String> {
        self.inner.showcase(showcase)
    }
}

/// One sample run forward by [`Model::simulate`].
#[derive(Clone, Debug, PartialEq)]
pub struct Simulation {
    /// Steps run, rest steps included.
    pub steps: usize,
    /// The time step, in seconds.
    pub dt: f64,
    /// Every population, in the order the network declares them.
    pub populations: Vec<PopulationRun>,
}

impl Simulation {
    /// The population of this name.
    pub fn population(&self, name: &str) -> Option<&PopulationRun> {
        self.populations.iter().find(|p| p.name == name)
    }
}

/// What one population did over a [`Simulation`].
#[derive(Clone, Debug, PartialEq)]
pub struct PopulationRun {
    /// The population's name in the network.
    pub name: String,
    /// Neurons.
    pub size: usize,
    /// For each step, the neurons that spiked in it.
    pub spikes: Vec<Vec<usize>>,
    /// For each state variable (by name: `v`, `soma.s`), its values after each step, one per
    /// neuron, in SI units.
    pub states: Vec<(String, Vec<Vec<f32>>)>,
}

impl PopulationRun {
    /// Spikes per neuron over the sample.
    pub fn counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.size];
        self.spikes.iter().flatten().for_each(|&i| counts[i] += 1);
        counts
    }

    /// The steps at which neuron `neuron` spiked.
    pub fn spike_steps(&self, neuron: usize) -> Vec<usize> {
        self.spikes.iter().enumerate().filter(|(_, fired)| fired.contains(&neuron)).map(|(t, _)| t).collect()
    }

    /// A state variable's values after each step, one per neuron.
    pub fn state(&self, name: &str) -> Option<&[Vec<f32>]> {
        self.states.iter().find(|(n, _)| n == name).map(|(_, values)| values.as_slice())
    }
}

/// The weights of one connection ([`Model::weights`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Weights {
    /// The connection's source as written: an input, a population or a state (`out.u`).
    pub source: String,
    /// The target population.
    pub target: String,
    /// The target's input port the connection delivers into.
    pub port: String,
    /// The layout of `values`, row-major: `[pre, post]` for a dense connection, `[out, in, k,
    /// k]` for a convolution, `[1]` for one weight that every pair shares.
    pub shape: Vec<usize>,
    /// The weights, row-major in `shape`.
    pub values: Vec<f32>,
}

impl Weights {
    /// The weight from presynaptic neuron `pre` to postsynaptic neuron `post` of a dense
    /// connection.
    pub fn dense(&self, pre: usize, post: usize) -> Option<f32> {
        match self.shape.as_slice() {
            [rows, cols] if pre < *rows && post < *cols => Some(self.values[pre * cols + post]),
            _ => None,
        }
    }
}
