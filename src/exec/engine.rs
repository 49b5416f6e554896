//! The engine seam: one trait that every engine implements, so that the training loop and the
//! learning methods never ask which engine runs. The scalar oracle ([`Oracle`]) and the
//! compiled engine ([`Jit`]: Cranelift kernels with the schedules of [`crate::exec::schedule`])
//! implement it; a CUDA engine will be one more implementation.
//!
//! An engine runs a shard of a batch forward (optionally step by step with a [`StepHook`] after
//! every population's step) and runs the backward pass of BPTT from the loss's gradients with
//! respect to the trace to the parameters' gradients. Work that pays once per batch (products
//! of inputs constant over time) goes through [`Engine::prepare`] and [`Engine::finish_batch`].

use std::ops::Range;

use crate::exec::jit::{Compiled, JitError, compile};
use crate::exec::plasticity::{Plasticity, PlasticityError};
use crate::exec::real::Real;
use crate::exec::schedule;
pub use crate::exec::state::{At, ParamsAccess, StepHook};
use crate::exec::state::{Grads, Hoisted, HoistedRows, Params, ReadoutGrads, SampleRef, Summary, Trace};
use crate::exec::{FlushSubnormals, oracle};
use crate::ir::grad::StepGraph;
use crate::ir::validate::Valid;

/// Which engine runs a model, chosen once per run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// The scalar reference interpreter, one neuron at a time: the oracle.
    Oracle,
    /// Cranelift kernels per population and encoder, GEMM and event-driven projections.
    #[default]
    Jit,
}

/// Why an engine cannot be built or cannot do what was asked.
#[derive(Clone, Debug, PartialEq)]
pub enum EngineError {
    Jit(JitError),
    /// A population's step could not be differentiated (`rand()` inside a neuron).
    Gradient {
        population: String,
        error: crate::ir::grad::GradError,
    },
    /// Gradients were asked of a model whose method has no surrogate gradient.
    NoGradient {
        method: &'static str,
    },
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Jit(error) => write!(f, "{error}"),
            EngineError::Gradient { population, error } => write!(f, "population `{population}`: {error}"),
            EngineError::NoGradient { method } => write!(f, "the `{method}` method has no surrogate gradient to run backwards"),
        }
    }
}

impl std::error::Error for EngineError {}

/// What every call of a run reads: the validated module, the run's seed and the values of the
/// network parameters.
pub struct Ctx<'a, F> {
    pub module: &'a Valid,
    pub seed: u64,
    pub net: &'a [F],
}

/// A shard of a batch: its samples and, when the batch was prepared, where its rows start in
/// the batch-level products.
#[derive(Clone, Copy)]
pub struct Shard<'a, F> {
    pub samples: &'a [SampleRef<'a>],
    pub hoisted: Option<HoistedRows<'a, F>>,
}

pub use crate::exec::state::Stepping;

/// What a backward pass sweeps: a shard's trace, over a window of its steps.
pub struct Sweep<'a, F> {
    pub shard: Shard<'a, F>,
    pub trace: &'a Trace<F>,
    pub window: Range<usize>,
}

/// Per projection from a time-constant input: a shard's port adjoints summed over the active
/// steps, for [`Engine::finish_batch`].
pub type HoistedSums<F> = Vec<Option<Vec<F>>>;

/// An engine: runs a validated module over shards of a batch, forwards and backwards.
pub trait Engine<F: Real>: Sync {
    fn kind(&self) -> EngineKind;

    /// Batch-level work before the batch is split into shards.
    fn prepare(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef]) -> Hoisted<F>;

    /// Runs a shard forward through every step. With a hook, step by step.
    fn forward(&self, ctx: &Ctx<F>, params: ParamsAccess<F>, shard: Shard<F>, hook: Option<&mut dyn StepHook<F>>) -> Trace<F>;

    /// Runs one sample forward step by step keeping only what a [`Summary`] holds: the pass of
    /// methods that learn online, one sample after another (STDP), whose memory must not grow
    /// with the steps. The default runs [`Engine::forward`] and summarises its trace.
    fn stream(&self, ctx: &Ctx<F>, params: ParamsAccess<F>, sample: SampleRef, hook: Option<&mut dyn StepHook<F>>) -> Summary<F> {
        let _flush = FlushSubnormals::on();
        let samples = [sample];
        let trace = self.forward(ctx, params, Shard { samples: &samples, hoisted: None }, hook);
        let summary = Summary::of(&trace, 0);
        trace.recycle();
        summary
    }

    /// The plasticity of the module's plastic synapses as this engine runs it: the reference
    /// interprets the updates, the JIT compiles them.
    fn plasticity(&self, module: &Valid) -> Result<Plasticity<F>, PlasticityError> {
        Plasticity::new(module)
    }

    /// Starts a forward pass over `samples` that [`Engine::advance`] runs a window of steps at
    /// a time, the parameters free to change between windows (FPTT), its trace holding the
    /// first `rows` steps ([`Stepping::slide`] moves it on to the next window). Nothing is
    /// hoisted: each window reads the weights as they are when it runs.
    fn begin(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef], rows: usize) -> Stepping<F>;

    /// Runs `stepping` on to step `until` (absolute: a window's trace holds its steps from its
    /// `offset`) with `params`, weights and neuron parameters alike.
    fn advance(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef], stepping: &mut Stepping<F>, until: usize);

    /// BPTT over the steps of `sweep.window`: from d loss / d trace (`readout`) to the
    /// parameters' gradients, added to `grads`. The adjoint starts at zero after the window's
    /// last step and stops at its first, so the state at the window's start is detached: the
    /// whole run for BPTT, K steps at a time for a method that learns every K steps (FPTT).
    fn backward(
        &self,
        ctx: &Ctx<F>,
        params: &Params<F>,
        sweep: Sweep<F>,
        readout: &mut ReadoutGrads<F>,
        grads: &mut Grads<F>,
    ) -> Result<HoistedSums<F>, EngineError>;

    /// Batch-level end of the backward pass: the weight gradients of hoisted projections.
    fn finish_batch(&self, ctx: &Ctx<F>, hoisted: &Hoisted<F>, sums: &[HoistedSums<F>], grads: &mut Grads<F>);
}

/// Builds the engine of `kind` for a validated module: compiles the JIT's kernels (and, for a
/// surrogate-gradient method, derives every population's adjoint) once per run.
pub fn build<F: Real>(kind: EngineKind, module: &Valid) -> Result<Box<dyn Engine<F>>, EngineError> {
    Ok(match kind {
        EngineKind::Oracle => Box::new(Oracle),
        EngineKind::Jit => Box::new(Jit { compiled: compile_module(module)? }),
    })
}

/// The JIT's kernels for a module, with backward kernels when its method has a surrogate.
pub fn compile_module<F: Real>(module: &Valid) -> Result<Compiled<F>, EngineError> {
    let graphs = derived_graphs(module)?;
    compile(module, &graphs).map_err(EngineError::Jit)
}

/// Every population's step with its derived adjoint, for a method with a surrogate gradient.
pub fn derived_graphs(module: &Valid) -> Result<Vec<StepGraph>, EngineError> {
    let Some(surrogate) = module.train.as_ref().and_then(|t| t.method.surrogate()) else { return Ok(Vec::new()) };
    module
        .populations
        .iter()
        .map(|pop| crate::ir::grad::derive(pop, surrogate).map_err(|error| EngineError::Gradient { population: pop.name.clone(), error }))
        .collect()
}

/// The error for a backward pass asked of a model whose method has no surrogate gradient.
fn no_gradient<F>(ctx: &Ctx<F>) -> EngineError {
    EngineError::NoGradient { method: ctx.module.train.as_ref().map_or("none", |t| t.method.name()) }
}

/// The scalar reference interpreter and its tape.
pub struct Oracle;

impl<F: Real> Engine<F> for Oracle {
    fn kind(&self) -> EngineKind {
        EngineKind::Oracle
    }

    fn prepare(&self, ctx: &Ctx<F>, _params: &Params<F>, _samples: &[SampleRef]) -> Hoisted<F> {
        Hoisted::none(ctx.module)
    }

    fn forward(&self, ctx: &Ctx<F>, params: ParamsAccess<F>, shard: Shard<F>, hook: Option<&mut dyn StepHook<F>>) -> Trace<F> {
        let _flush = FlushSubnormals::on();
        oracle::run(ctx.module, params, shard.samples, ctx.seed, ctx.net, hook)
    }

    fn begin(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef], rows: usize) -> Stepping<F> {
        Stepping::begin(ctx.module, params, samples, ctx.seed, rows)
    }

    fn advance(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef], stepping: &mut Stepping<F>, until: usize) {
        let _flush = FlushSubnormals::on();
        stepping.set_params(ctx.module, params);
        oracle::advance(ctx.module, ParamsAccess::Shared(params), samples, ctx.seed, ctx.net, stepping, until, None);
    }

    fn backward(
        &self,
        ctx: &Ctx<F>,
        params: &Params<F>,
        sweep: Sweep<F>,
        readout: &mut ReadoutGrads<F>,
        grads: &mut Grads<F>,
    ) -> Result<HoistedSums<F>, EngineError> {
        let _flush = FlushSubnormals::on();
        let Sweep { shard, trace, window } = sweep;
        let surrogate = ctx.module.train.as_ref().and_then(|t| t.method.surrogate()).ok_or_else(|| no_gradient(ctx))?;
        oracle::backward::backward(ctx.module, params, trace, window, readout, grads, surrogate, shard.samples, ctx.seed, ctx.net);
        Ok(Vec::new())
    }

    fn finish_batch(&self, _ctx: &Ctx<F>, _hoisted: &Hoisted<F>, _sums: &[HoistedSums<F>], _grads: &mut Grads<F>) {}
}

/// The compiled engine: Cranelift kernels per population and encoder.
pub struct Jit<F> {
    pub compiled: Compiled<F>,
}

impl<F: Real> Engine<F> for Jit<F> {
    fn kind(&self) -> EngineKind {
        EngineKind::Jit
    }

    fn prepare(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef]) -> Hoisted<F> {
        let _flush = FlushSubnormals::on();
        schedule::hoist(&self.compiled, ctx.module, params, samples, ctx.seed, ctx.net)
    }

    fn forward(&self, ctx: &Ctx<F>, params: ParamsAccess<F>, shard: Shard<F>, hook: Option<&mut dyn StepHook<F>>) -> Trace<F> {
        let _flush = FlushSubnormals::on();
        schedule::run(&self.compiled, ctx.module, params, shard.samples, ctx.seed, ctx.net, shard.hoisted, hook)
    }

    fn begin(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef], rows: usize) -> Stepping<F> {
        let _flush = FlushSubnormals::on();
        Stepping::begin(ctx.module, params, samples, ctx.seed, rows)
    }

    fn advance(&self, ctx: &Ctx<F>, params: &Params<F>, samples: &[SampleRef], stepping: &mut Stepping<F>, until: usize) {
        let _flush = FlushSubnormals::on();
        // A time-constant input's projection is computed once per window: the weights may
        // have changed since the last.
        stepping.hoisted.iter_mut().for_each(|h| *h = None);
        stepping.set_params(ctx.module, params);
        schedule::advance(&self.compiled, ctx.module, ParamsAccess::Shared(params), stepping, until, samples, ctx.seed, ctx.net, None);
    }

    fn stream(&self, ctx: &Ctx<F>, params: ParamsAccess<F>, sample: SampleRef, hook: Option<&mut dyn StepHook<F>>) -> Summary<F> {
        let _flush = FlushSubnormals::on();
        schedule::stream(&self.compiled, ctx.module, params, sample, ctx.seed, ctx.net, hook)
    }

    fn plasticity(&self, module: &Valid) -> Result<Plasticity<F>, PlasticityError> {
        Plasticity::compiled(module)
    }

    fn backward(
        &self,
        ctx: &Ctx<F>,
        params: &Params<F>,
        sweep: Sweep<F>,
        readout: &mut ReadoutGrads<F>,
        grads: &mut Grads<F>,
    ) -> Result<HoistedSums<F>, EngineError> {
        let _flush = FlushSubnormals::on();
        let Sweep { shard, trace, window } = sweep;
        if !self.compiled.has_backward() {
            return Err(no_gradient(ctx));
        }
        let batch = shard.hoisted.map(|rows| rows.hoisted);
        Ok(schedule::backward(&self.compiled, ctx.module, params, trace, window, readout, grads, ctx.net, batch))
    }

    fn finish_batch(&self, ctx: &Ctx<F>, hoisted: &Hoisted<F>, sums: &[HoistedSums<F>], grads: &mut Grads<F>) {
        if !hoisted.is_empty() {
            schedule::hoisted_weight_grads(ctx.module, hoisted, sums, grads);
        }
    }
}
