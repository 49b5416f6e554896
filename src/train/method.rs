//! The learning-method seam. The training loop ([`crate::train::run`]) owns data order,
//! epochs, phases, learning-rate schedules, metrics, records and checkpoints; a method plugs in
//! with what it does with one batch: BPTT runs forward, backward through time and an
//! optimiser step; STDP will change weights inside the forward loop through a
//! [`crate::exec::engine::StepHook`]; FPTT will take a gradient every K steps; EventProp will
//! record spike times and integrate an adjoint backwards. A method sees the engine only
//! through [`crate::exec::engine::Engine`].

use crate::exec::engine::{Ctx, Engine, EngineError};
use crate::exec::real::Real;
use crate::exec::state::{Params, SampleRef};
use crate::ir::train::{Method, Phase, Train};
use crate::ir::validate::Valid;
use crate::train::hooks::RecordText;
use crate::train::loss::LossError;

/// Why a run stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum RunError {
    /// The model has no train block.
    NoTrainBlock,
    Engine(EngineError),
    Loss(LossError),
    /// A loss, a gradient or a parameter became NaN or infinite.
    NonFinite {
        what: NonFinite,
        epoch: usize,
        batch: usize,
    },
    /// A plastic synapse cannot run.
    Plasticity(crate::exec::plasticity::PlasticityError),
    /// The network cannot run with exact spike times (EventProp).
    Exact(String),
    /// The method cannot run what the train block asks for.
    Unsupported(String),
    /// The observer could not keep what the run produced (a checkpoint write failed): the run
    /// stops rather than train on without saving.
    Output(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::NoTrainBlock => write!(f, "the model has no train block"),
            RunError::Engine(error) => write!(f, "{error}"),
            RunError::Loss(error) => write!(f, "{error}"),
            RunError::NonFinite { what, epoch, batch } => write!(f, "{what} became NaN or infinite in epoch {epoch}, batch {batch}"),
            RunError::Output(message) => write!(f, "{message}"),
            RunError::Plasticity(error) => write!(f, "{error}"),
            RunError::Exact(message) => write!(f, "{message}"),
            RunError::Unsupported(message) => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for RunError {}

impl From<EngineError> for RunError {
    fn from(error: EngineError) -> RunError {
        RunError::Engine(error)
    }
}

impl From<LossError> for RunError {
    fn from(error: LossError) -> RunError {
        RunError::Loss(error)
    }
}

/// What became NaN or infinite first.
#[derive(Debug, Clone, PartialEq)]
pub enum NonFinite {
    /// A state variable of a population, at a step of a sample (None: by the end of the
    /// sample, from a streaming pass, which keeps no steps).
    State {
        population: String,
        variable: String,
        step: Option<usize>,
        sample: u64,
    },
    /// A loss term of a sample, its states all finite.
    Loss {
        term: String,
        sample: u64,
    },
    Gradient,
    Parameter,
}

impl std::fmt::Display for NonFinite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NonFinite::State { population, variable, step: Some(step), sample } => {
                write!(f, "`{population}.{variable}` at step {step} of sample {sample}")
            }
            NonFinite::State { population, variable, step: None, sample } => {
                write!(f, "`{population}.{variable}` by the end of sample {sample}")
            }
            NonFinite::Loss { term, sample } => write!(f, "loss term `{term}` of sample {sample}"),
            NonFinite::Gradient => write!(f, "a gradient"),
            NonFinite::Parameter => write!(f, "a parameter"),
        }
    }
}

/// One training example.
#[derive(Clone, Copy, Debug)]
pub struct Example<'a> {
    pub sample: SampleRef<'a>,
    pub label: usize,
}

/// What a method works with during one phase.
pub struct Session<'a, F> {
    pub module: &'a Valid,
    pub train: &'a Train,
    pub phase: &'a Phase,
    pub engine: &'a dyn Engine<F>,
    pub seed: u64,
    /// Whether the train block records anything (then traces are written as CSV).
    pub recording: bool,
}

impl<'a, F: Real> Session<'a, F> {
    /// The engine's context for the network parameters `net`.
    pub fn ctx<'n>(&self, net: &'n [F]) -> Ctx<'n, F>
    where
        'a: 'n,
    {
        Ctx { module: self.module, seed: self.seed, net }
    }
}

/// What a method reports for one batch.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Each loss term summed over the batch's samples.
    pub terms: Vec<f64>,
    /// Samples whose prediction equals the label.
    pub correct: usize,
    /// The records of the batch's samples, in sample order.
    pub records: RecordText,
}

/// What a method keeps between batches, to be saved with a checkpoint and resumed from:
/// named tensors of the parameters' layout (an optimiser's moments) and a counter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MethodState<F> {
    pub tensors: Vec<(String, Params<F>)>,
    pub counter: i64,
}

/// A learning method: learns from one batch at a time.
pub trait LearningMethod<F: Real>: Send {
    fn name(&self) -> &'static str;

    /// A new phase starts (a fresh optimiser, say).
    fn begin_phase(&mut self, params: &Params<F>);

    /// What the method keeps between batches (see [`MethodState`]).
    fn state(&self) -> MethodState<F>;

    /// Continues from a saved state, within the phase that [`LearningMethod::begin_phase`]
    /// started.
    fn restore(&mut self, state: MethodState<F>);

    /// Learns from `batch`: changes `params` (and the network parameters' values `net`, which
    /// `every sample` and `retry` actions may change) as the method says.
    fn train_batch(
        &mut self,
        session: &Session<F>,
        params: &mut Params<F>,
        net: &mut [f64],
        batch: &[Example],
        lr: f64,
    ) -> Result<BatchOutcome, RunError>;

    /// An epoch's training is over (FPTT sets its parameters to their running mean).
    fn end_epoch(&mut self, _module: &crate::ir::Module, _params: &mut Params<F>) {}

    /// Evaluation as the method defines it, where it is not the generic pass (the test split
    /// forward, `predict` read per sample): STDP's labelling pass then vote. `n_label` training
    /// samples may be used to label, `n_test` test samples are scored. None: the generic pass.
    fn evaluate(
        &mut self,
        _session: &Session<F>,
        _params: &Params<F>,
        _net: &[f64],
        _data: &crate::data::Dataset,
        _n_label: usize,
        _n_test: usize,
    ) -> Option<Result<crate::train::metrics::Evaluation, RunError>> {
        None
    }
}

/// The method a train block names, through the seam.
pub fn method_for<F: Real>(method: &Method) -> Result<Box<dyn LearningMethod<F>>, RunError> {
    match method {
        Method::Bptt { .. } => Ok(Box::new(crate::train::bptt::Bptt::default())),
        Method::Stdp => Ok(Box::new(crate::train::stdp::Stdp::default())),
        Method::EventProp => Ok(Box::new(crate::train::eventprop::EventProp::default())),
        Method::Fptt { .. } => Ok(Box::new(crate::train::fptt::Fptt::default())),
    }
}
