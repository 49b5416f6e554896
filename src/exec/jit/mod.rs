//! The Cranelift JIT: per population, a forward kernel compiled from the population's
//! flattened step graph ([`crate::ir::grad::step_graph`]) and a backward kernel compiled from
//! its derived adjoint ([`crate::ir::grad::derive`]); per input, an encoder kernel. One copy of
//! the step semantics, the graph, feeds both directions (and a CUDA emitter next). Values are
//! `f32` or `f64` ([`Real`]), a full 128-bit vector of lanes per loop iteration (`f32x4`,
//! `f64x2`) with a one-lane tail; refractory counters stay per lane; transcendental functions
//! go through host calls that run the oracle's own functions, so results are bit-identical
//! to the oracle in the same precision.
//!
//! Kernel signatures (`F` the float type):
//! - forward: `fn(vars_in: *const *const F, vars_out: *const *mut F, ports: *const *const F,
//!   counters: *mut u32, spikes: *mut F, len: i64, time: F, net: *const F,
//!   refractory_steps: u32, neurons: i64, scratch: *mut F)` (the refractory period in steps,
//!   for the network parameters of the call);
//! - backward: `fn(before: *const *const F, ports: *const *const F, counters: *const u32,
//!   d_after: *const *const F, d_spike: *const F, d_before: *const *mut F,
//!   d_ports: *const *mut F, len: i64, time: F, net: *const F, neurons: i64, scratch: *mut F)`;
//!
//! `len` is the row's elements (`batch * neurons`, sample-major). Subexpressions that read only
//! parameters ([`crate::ir::hoist`]) are computed once per neuron into `scratch` (one row of
//! `neurons` values per subexpression; `Compiled`'s `forward_scratch` and `backward_scratch` say how many) before the element
//! loops, which then run sample by sample and read them back.
//! - encoder: `fn(data: *const f32, out: *mut F, len: i64, time: F, step: F, net: *const F,
//!   prefix: u64, input: u64, sample_prefix: u64)`, one call per sample and step.

mod emit;
pub mod plastic;

use std::marker::PhantomData;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Signature, UserFuncName, Value, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module as _};

use crate::exec::real::Real;
use crate::exec::state::Trace;
use crate::ir::grad::StepGraph;
use crate::ir::{self, EncoderKind, ExprId, Module, Population};
pub use emit::EmitError;
use emit::{Emitter, Scope};
pub use plastic::{PlasticKernels, UpdateKernel, compile_plasticity};

type Kernel<F> =
    unsafe extern "C" fn(*const *const F, *const *mut F, *const *const F, *mut u32, *mut F, i64, F, *const F, u32, i64, *mut F);
type BackwardKernel<F> = unsafe extern "C" fn(
    *const *const F,
    *const *const F,
    *const u32,
    *const *const F,
    *const F,
    *const *mut F,
    *const *mut F,
    i64,
    F,
    *const F,
    i64,
    *mut F,
);
type EncoderKernel<F> = unsafe extern "C" fn(*const f32, *mut F, i64, F, F, *const F, u64, u64, u64);

extern "C" fn host_log<F: Real>(x: F) -> F {
    x.ln()
}
extern "C" fn host_pow<F: Real>(x: F, y: F) -> F {
    x.powf(y)
}
extern "C" fn host_tanh<F: Real>(x: F) -> F {
    x.tanh()
}
extern "C" fn host_sin<F: Real>(x: F) -> F {
    x.sin()
}
extern "C" fn host_cos<F: Real>(x: F) -> F {
    x.cos()
}

/// The host functions, in the order of [`emit::Host`], with their arity.
fn host_functions<F: Real>() -> [(&'static str, *const u8, usize); 5] {
    [
        ("snnc_log", host_log::<F> as *const u8, 1),
        ("snnc_pow", host_pow::<F> as *const u8, 2),
        ("snnc_tanh", host_tanh::<F> as *const u8, 1),
        ("snnc_sin", host_sin::<F> as *const u8, 1),
        ("snnc_cos", host_cos::<F> as *const u8, 1),
    ]
}

/// Why a module could not be compiled.
#[derive(Clone, Debug, PartialEq)]
pub enum JitError {
    /// The host is not supported by Cranelift, or Cranelift rejected a setting.
    Target(String),
    /// A population's step cannot be flattened into a graph (`rand()` inside a neuron).
    Graph { population: String, error: crate::ir::grad::GradError },
    /// A kernel reads a value it has no source for.
    Emit { kernel: String, error: EmitError },
    /// Cranelift failed to compile a kernel.
    Codegen { kernel: String, message: String },
}

impl std::fmt::Display for JitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JitError::Target(message) => write!(f, "the JIT cannot target this machine: {message}"),
            JitError::Graph { population, error } => write!(f, "population `{population}`: {error}"),
            JitError::Emit { kernel, error: EmitError::Unsupported { global } } => {
                write!(f, "kernel `{kernel}`: the JIT does not compile `{}` there", ir::global_name(*global))
            }
            JitError::Codegen { kernel, message } => write!(f, "kernel `{kernel}`: code generation failed: {message}"),
        }
    }
}

impl std::error::Error for JitError {}

/// The compiled kernels of a module and their CLIF text.
pub struct Compiled<F> {
    _module: JITModule,
    forward: Vec<Kernel<F>>,
    /// Backward kernels, when the module trains with a surrogate gradient.
    backward: Vec<BackwardKernel<F>>,
    encoders: Vec<EncoderKernel<F>>,
    /// Rows of hoisted values per forward and per backward kernel.
    forward_scratch: Vec<usize>,
    backward_scratch: Vec<usize>,
    /// CLIF of every kernel, by name, in compilation order.
    pub clif: Vec<(String, String)>,
    precision: PhantomData<F>,
}

// SAFETY: after `finalize_definitions` the JIT module's code is immutable; the kernels are
// plain functions of their arguments, so calling them from several threads at once is safe.
// The module itself is only touched when `Compiled` is dropped.
unsafe impl<F> Sync for Compiled<F> {}
unsafe impl<F> Send for Compiled<F> {}

/// Which kernel a function is.
#[derive(Clone, Copy)]
enum KernelKind {
    Forward,
    Backward,
    Encoder,
}

/// Compiles every population's forward step (and backward step when `graphs` holds derived
/// adjoints) and every input's encoder.
pub fn compile<F: Real>(module: &Module, graphs: &[StepGraph]) -> Result<Compiled<F>, JitError> {
    let (mut jit, host_ids) = jit_module::<F>()?;
    let scalar = Emitter::for_real::<F>();
    let mut jobs: Vec<(KernelKind, usize, String)> = Vec::new();
    for (p, pop) in module.populations.iter().enumerate() {
        jobs.push((KernelKind::Forward, p, format!("step_{p}_{}", pop.name)));
    }
    if !graphs.is_empty() {
        for (p, pop) in module.populations.iter().enumerate() {
            jobs.push((KernelKind::Backward, p, format!("backward_{p}_{}", pop.name)));
        }
    }
    for (i, input) in module.inputs.iter().enumerate() {
        jobs.push((KernelKind::Encoder, i, format!("encode_{i}_{}", input.name)));
    }
    let pointer = jit.target_config().pointer_type();
    let mut ids = Vec::new();
    let mut clif = Vec::new();
    let mut ctx = jit.make_context();
    let mut builder_ctx = FunctionBuilderContext::new();
    let (mut forward_scratch, mut backward_scratch) = (Vec::new(), Vec::new());
    for (kind, index, name) in jobs {
        let signature = match kind {
            KernelKind::Forward => signature(&jit, 5, &[types::I64, scalar], 1).with_tail(&[types::I32, types::I64, pointer]),
            KernelKind::Backward => signature(&jit, 7, &[types::I64, scalar], 1).with_tail(&[types::I64, pointer]),
            KernelKind::Encoder => signature(&jit, 2, &[types::I64, scalar, scalar], 1).with_tail(&[types::I64, types::I64, types::I64]),
        };
        let id = jit
            .declare_function(&name, Linkage::Local, &signature)
            .map_err(|e| JitError::Codegen { kernel: name.clone(), message: e.to_string() })?;
        ctx.func.signature = signature;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let host_refs: Vec<_> = host_ids.iter().map(|h| jit.declare_func_in_func(*h, &mut ctx.func)).collect();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
            let mut emitter = Emitter { b: &mut b, host: &host_refs, dt: module.dt, lanes: 1, scalar };
            let emitted = match kind {
                KernelKind::Forward => {
                    let pop = &module.populations[index];
                    let graph =
                        crate::ir::grad::step_graph(pop).map_err(|error| JitError::Graph { population: pop.name.clone(), error })?;
                    forward_kernel(&mut emitter, pop, &graph)
                }
                KernelKind::Backward => backward_kernel(&mut emitter, &module.populations[index], &graphs[index]),
                KernelKind::Encoder => encoder_kernel::<F>(&mut emitter, module, index).map(|()| 0),
            };
            let rows = emitted.map_err(|error| JitError::Emit { kernel: name.clone(), error })?;
            match kind {
                KernelKind::Forward => forward_scratch.push(rows),
                KernelKind::Backward => backward_scratch.push(rows),
                KernelKind::Encoder => {}
            }
            b.seal_all_blocks();
            b.finalize(jit.target_config());
        }
        clif.push((name.clone(), ctx.func.display().to_string()));
        jit.define_function(id, &mut ctx).map_err(|e| JitError::Codegen { kernel: name.clone(), message: format!("{e:?}") })?;
        jit.clear_context(&mut ctx);
        ids.push((kind, id));
    }
    jit.finalize_definitions().map_err(|e| JitError::Target(e.to_string()))?;
    let pointers: Vec<(KernelKind, *const u8)> =
        ids.iter().map(|(kind, id): &(KernelKind, FuncId)| (*kind, jit.get_finalized_function(*id))).collect();
    let mut compiled = Compiled {
        _module: jit,
        forward: Vec::new(),
        backward: Vec::new(),
        encoders: Vec::new(),
        forward_scratch,
        backward_scratch,
        clif,
        precision: PhantomData,
    };
    for (kind, p) in pointers {
        // SAFETY: each function was compiled with the signature of its kind, which matches the
        // function pointer type it becomes.
        unsafe {
            match kind {
                KernelKind::Forward => compiled.forward.push(std::mem::transmute::<*const u8, Kernel<F>>(p)),
                KernelKind::Backward => compiled.backward.push(std::mem::transmute::<*const u8, BackwardKernel<F>>(p)),
                KernelKind::Encoder => compiled.encoders.push(std::mem::transmute::<*const u8, EncoderKernel<F>>(p)),
            }
        }
    }
    Ok(compiled)
}

/// A JIT module for the host, optimising for speed, with the host functions of precision `F`
/// declared (their ids in the order of [`emit::Host`]).
fn jit_module<F: Real>() -> Result<(JITModule, Vec<FuncId>), JitError> {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(|e| JitError::Target(e.to_string()))?;
    flags.set("is_pic", "false").map_err(|e| JitError::Target(e.to_string()))?;
    let isa = cranelift_native::builder()
        .map_err(|e| JitError::Target(e.to_string()))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| JitError::Target(e.to_string()))?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    let hosts = host_functions::<F>();
    for (name, pointer, _) in hosts {
        builder.symbol(name, pointer);
    }
    let mut jit = JITModule::new(builder);
    let scalar = Emitter::for_real::<F>();
    let mut host_ids = Vec::new();
    for (name, _, arity) in hosts {
        let mut sig = jit.make_signature();
        for _ in 0..arity {
            sig.params.push(AbiParam::new(scalar));
        }
        sig.returns.push(AbiParam::new(scalar));
        host_ids.push(jit.declare_function(name, Linkage::Import, &sig).map_err(|e| JitError::Target(e.to_string()))?);
    }
    Ok((jit, host_ids))
}

/// A signature of `pointers` pointer arguments, then `rest`, then `trailing` pointers.
fn signature(jit: &JITModule, pointers: usize, rest: &[types::Type], trailing: usize) -> Signature {
    let mut sig = jit.make_signature();
    let pointer = jit.target_config().pointer_type();
    for _ in 0..pointers {
        sig.params.push(AbiParam::new(pointer));
    }
    for ty in rest {
        sig.params.push(AbiParam::new(*ty));
    }
    for _ in 0..trailing {
        sig.params.push(AbiParam::new(pointer));
    }
    sig
}

trait SignatureExt {
    fn with_tail(self, tail: &[types::Type]) -> Signature;
}

impl SignatureExt for Signature {
    fn with_tail(mut self, tail: &[types::Type]) -> Signature {
        for ty in tail {
            self.params.push(AbiParam::new(*ty));
        }
        self
    }
}

/// The entry block's parameters.
fn entry(e: &mut Emitter) -> Vec<Value> {
    let entry = e.b.create_block();
    e.b.append_block_params_for_function_params(entry);
    e.b.switch_to_block(entry);
    e.b.block_params(entry).to_vec()
}

/// The refractory counters of this iteration's lanes: one `i32x4` beside `f32x4` lanes (the
/// comparison masks of both have the same layout), otherwise one value per lane.
enum Counters {
    Vector(Value),
    Lanes(Vec<Value>),
}

/// Whether the counters of a vector body are one `i32x4`.
fn vector_counters(e: &Emitter) -> bool {
    e.lanes == 4 && e.scalar == types::F32
}

/// The refractory counters of this iteration's lanes and the refractory flag (1.0 or 0.0 per
/// lane). Populations without a refractory period keep their counters at 0 and read none.
fn refractory(e: &mut Emitter, pop: &Population, counter_address: Value) -> (Counters, Value) {
    let lanes = usize::from(e.lanes);
    if pop.refractory.is_none() {
        let zero = e.b.ins().iconst(types::I32, 0);
        let flag = e.constant(0.0);
        return (Counters::Lanes(vec![zero; lanes]), flag);
    }
    if vector_counters(e) {
        let counters = e.b.ins().load(types::I32X4, MemFlagsData::new().with_notrap(), counter_address, 0);
        let zero = e.b.ins().iconst(types::I32, 0);
        let zeros = e.b.ins().splat(types::I32X4, zero);
        let held = e.b.ins().icmp(IntCC::UnsignedGreaterThan, counters, zeros);
        let flag = e.bool_to_float(held);
        return (Counters::Vector(counters), flag);
    }
    let counters: Vec<Value> =
        (0..lanes).map(|lane| e.b.ins().load(types::I32, MemFlagsData::trusted(), counter_address, (lane * 4) as i32)).collect();
    let (one, zero) = (e.scalar_const(1.0), e.scalar_const(0.0));
    let flags: Vec<Value> = counters
        .iter()
        .map(|c| {
            let held = e.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, *c, 0);
            e.b.ins().select(held, one, zero)
        })
        .collect();
    let flag = e.vector_of(&flags);
    (Counters::Lanes(counters), flag)
}

/// What both kernels of a population load for the elements at loop counter `k`.
struct StepInputs {
    /// Byte offset of the elements in a float array.
    offset: Value,
    /// The state before the step, per variable.
    before: Vec<Value>,
    ports: Vec<Value>,
    counter_address: Value,
    /// The refractory counters of the lanes.
    counters: Counters,
    /// 1 where refractory, else 0.
    refractory: Value,
}

fn step_inputs(e: &mut Emitter, pop: &Population, k: Value, var_bases: &[Value], port_bases: &[Value], counters_ptr: Value) -> StepInputs {
    let bytes = e.bytes();
    let offset = e.b.ins().imul_imm_s(k, bytes);
    let offset4 = e.b.ins().imul_imm_s(k, 4);
    let before: Vec<Value> = var_bases.iter().map(|base| e.load_float(*base, offset)).collect();
    let ports: Vec<Value> = port_bases.iter().map(|base| e.load_float(*base, offset)).collect();
    let counter_address = e.b.ins().iadd(counters_ptr, offset4);
    let (counters, refractory) = refractory(e, pop, counter_address);
    StepInputs { offset, before, ports, counter_address, counters, refractory }
}

/// The forward kernel: the code of the step graph's `after` and `spike`, and the counters.
fn forward_kernel(e: &mut Emitter, pop: &Population, graph: &StepGraph) -> Result<usize, EmitError> {
    let params = entry(e);
    let (vars_in, vars_out, ports_ptr, counters_ptr, spikes_ptr, len, time, net, refractory_steps, neurons, scratch) =
        (params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7], params[8], params[9], params[10]);
    let var_bases = e.bases(vars_in, pop.vars.len());
    let out_bases = e.bases(vars_out, pop.vars.len());
    let port_bases = e.bases(ports_ptr, pop.ports.len());
    let roots: Vec<ExprId> = graph.after.iter().copied().chain([graph.spike]).collect();
    let hoisted = hoist(e, pop, &graph.exprs, &roots, &var_bases, neurons, scratch, time, net)?;
    element_loops(e, &graph.exprs, &hoisted, len, neurons, |e, k, mut memo| {
        let StepInputs { offset, before, ports, counter_address, counters, refractory: flag } =
            step_inputs(e, pop, k, &var_bases, &port_bases, counters_ptr);
        let time = e.widen(time);
        let scope = Scope { vars: &before, ports: &ports, refractory: Some(flag), ..Scope::new(time, net) };
        for (v, base) in out_bases.iter().enumerate() {
            let value = e.expr(&graph.exprs, graph.after[v], &scope, &mut memo)?;
            e.store_at(value, *base, offset);
        }
        let spike = e.expr(&graph.exprs, graph.spike, &scope, &mut memo)?;
        e.store_at(spike, spikes_ptr, offset);
        if let (Some(_), Counters::Vector(counters)) = (&pop.refractory, &counters) {
            // held: count down; fired: restart; else unchanged.
            let zero = e.constant(0.0);
            let fired = e.b.ins().fcmp(FloatCC::NotEqual, spike, zero);
            let (zero_i, minus_one) = (e.b.ins().iconst(types::I32, 0), e.b.ins().iconst(types::I32, -1));
            let (zeros, minus_ones) = (e.b.ins().splat(types::I32X4, zero_i), e.b.ins().splat(types::I32X4, minus_one));
            let held = e.b.ins().icmp(IntCC::UnsignedGreaterThan, *counters, zeros);
            let decremented = e.b.ins().iadd(*counters, minus_ones);
            let restart = e.b.ins().splat(types::I32X4, refractory_steps);
            let on_fire = e.b.ins().bitselect(fired, restart, *counters);
            let next = e.b.ins().bitselect(held, decremented, on_fire);
            e.b.ins().store(MemFlagsData::new().with_notrap(), next, counter_address, 0);
        }
        if let (Some(_), Counters::Lanes(counters)) = (&pop.refractory, &counters) {
            let spikes = e.lanes_of(spike);
            for (lane, (counter, spike)) in counters.iter().zip(spikes).enumerate() {
                let zero = e.scalar_const(0.0);
                let fired = e.b.ins().fcmp(FloatCC::NotEqual, spike, zero);
                let held = e.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, *counter, 0);
                let decremented = e.b.ins().iadd_imm_s(*counter, -1);
                let restart = refractory_steps;
                let on_fire = e.b.ins().select(fired, restart, *counter);
                let next = e.b.ins().select(held, decremented, on_fire);
                e.b.ins().store(MemFlagsData::trusted(), next, counter_address, (lane * 4) as i32);
            }
        }
        Ok(())
    })?;
    Ok(hoisted.nodes.len())
}

/// The backward kernel: the code of a derived backward step, from the state before the step,
/// its ports and the adjoints after it to d(before) and d(ports).
fn backward_kernel(e: &mut Emitter, pop: &Population, graph: &StepGraph) -> Result<usize, EmitError> {
    let params = entry(e);
    let (before_ptr, ports_ptr, counters_ptr, d_after_ptr, d_spike_ptr, d_before_ptr, d_ports_ptr, len, time, net, neurons, scratch) = (
        params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7], params[8], params[9], params[10],
        params[11],
    );
    let var_bases = e.bases(before_ptr, pop.vars.len());
    let port_bases = e.bases(ports_ptr, pop.ports.len());
    let d_after_bases = e.bases(d_after_ptr, pop.vars.len());
    let d_before_bases = e.bases(d_before_ptr, pop.vars.len());
    let d_port_bases = e.bases(d_ports_ptr, pop.ports.len());
    let roots: Vec<ExprId> = graph.d_before.iter().chain(&graph.d_ports).copied().collect();
    let hoisted = hoist(e, pop, &graph.exprs, &roots, &var_bases, neurons, scratch, time, net)?;
    element_loops(e, &graph.exprs, &hoisted, len, neurons, |e, k, mut memo| {
        let StepInputs { offset, before, ports, refractory: flag, .. } = step_inputs(e, pop, k, &var_bases, &port_bases, counters_ptr);
        let d_after: Vec<Value> = d_after_bases.iter().map(|base| e.load_float(*base, offset)).collect();
        let d_spike = e.load_float(d_spike_ptr, offset);
        let time = e.widen(time);
        let scope = Scope {
            vars: &before,
            ports: &ports,
            refractory: Some(flag),
            d_after: &d_after,
            d_spike: Some(d_spike),
            ..Scope::new(time, net)
        };
        for (v, base) in d_before_bases.iter().enumerate() {
            let g = e.expr(&graph.exprs, graph.d_before[v], &scope, &mut memo)?;
            e.store_at(g, *base, offset);
        }
        for (q, base) in d_port_bases.iter().enumerate() {
            let g = e.expr(&graph.exprs, graph.d_ports[q], &scope, &mut memo)?;
            e.store_at(g, *base, offset);
        }
        Ok(())
    })?;
    Ok(hoisted.nodes.len())
}

/// A kernel's hoisted subexpressions and the scratch row each is computed into.
struct Hoisted {
    nodes: Vec<ExprId>,
    rows: Vec<Value>,
}

/// Computes the subexpressions of `exprs` under `roots` that read only parameters, for every
/// neuron, into rows of `scratch`: the parameters are those of the first sample in the rows of
/// `var_bases` (every sample holds the same).
#[allow(clippy::too_many_arguments)]
fn hoist(
    e: &mut Emitter,
    pop: &Population,
    exprs: &ir::Exprs,
    roots: &[ExprId],
    var_bases: &[Value],
    neurons: Value,
    scratch: Value,
    time: Value,
    net: Value,
) -> Result<Hoisted, EmitError> {
    let nodes = crate::ir::hoist::invariants(pop, exprs, roots);
    let bytes = e.bytes();
    let rows: Vec<Value> = (0..nodes.len() as i64)
        .map(|h| {
            let skip = e.b.ins().imul_imm_s(neurons, h * bytes);
            e.b.ins().iadd(scratch, skip)
        })
        .collect();
    if !nodes.is_empty() {
        e.sweep(neurons, true, |e, j| {
            let offset = e.b.ins().imul_imm_s(j, bytes);
            let vars: Vec<Value> = pop
                .vars
                .iter()
                .zip(var_bases)
                .map(
                    |(var, base)| if matches!(var.kind, ir::VarKind::Param { .. }) { e.load_float(*base, offset) } else { e.constant(0.0) },
                )
                .collect();
            let time = e.widen(time);
            let scope = Scope { vars: &vars, ..Scope::new(time, net) };
            let mut memo = Vec::new();
            for (node, row) in nodes.iter().zip(&rows) {
                let value = e.expr(exprs, *node, &scope, &mut memo)?;
                e.store_at(value, *row, offset);
            }
            Ok(())
        })?;
    }
    Ok(Hoisted { nodes, rows })
}

/// The element loops of a step kernel, then the return: `body(k, memo)` for every element `k`
/// of the row, `memo` holding the hoisted values of `k`'s neuron. Without hoisted values, one
/// loop over the row; with them, a loop over the neurons of each sample.
fn element_loops(
    e: &mut Emitter,
    exprs: &ir::Exprs,
    hoisted: &Hoisted,
    len: Value,
    neurons: Value,
    mut body: impl FnMut(&mut Emitter, Value, Vec<Option<Value>>) -> Result<(), EmitError>,
) -> Result<(), EmitError> {
    if hoisted.nodes.is_empty() {
        return e.loops(len, true, |e, k| body(e, k, Vec::new()));
    }
    let samples = e.b.ins().udiv(len, neurons);
    let bytes = e.bytes();
    e.repeat(samples, |e, b| {
        let first = e.b.ins().imul(b, neurons);
        e.sweep(neurons, true, |e, j| {
            let k = e.b.ins().iadd(first, j);
            let offset = e.b.ins().imul_imm_s(j, bytes);
            let mut memo = vec![None; exprs.nodes.len()];
            for (node, row) in hoisted.nodes.iter().zip(&hoisted.rows) {
                memo[node.0 as usize] = Some(e.load_float(*row, offset));
            }
            body(e, k, memo)
        })
    })?;
    e.b.ins().return_(&[]);
    Ok(())
}

/// The encoder kernel of input `index`: one sample's elements in one step, with `rand()`
/// drawn from the counter-based generator exactly as [`crate::exec::state::rand_draw`].
fn encoder_kernel<F: Real>(e: &mut Emitter, module: &Module, index: usize) -> Result<(), EmitError> {
    let input = &module.inputs[index];
    let params = entry(e);
    let (data_ptr, out_ptr, len, time, step, net, prefix, stream, sample_prefix) =
        (params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7], params[8]);
    let dt = module.dt;
    // One 64-bit mix per `rand()` (and `rand_per_sample()`, keyed by the sample alone) node for
    // the whole call (see `RandKey`), before the loops.
    let shifted = e.b.ins().ishl_imm_s(stream, 16);
    let keyed = e.b.ins().bxor(prefix, shifted);
    let sample_keyed = e.b.ins().bxor(sample_prefix, shifted);
    let bases: Vec<(ir::ExprId, Value)> = (0..input.exprs.nodes.len() as u32)
        .map(ir::ExprId)
        .filter_map(|id| match input.exprs.get(id) {
            ir::Node::Global(ir::Global::Rand) => Some((id, keyed)),
            ir::Node::Global(ir::Global::SampleRand) => Some((id, sample_keyed)),
            _ => None,
        })
        .map(|(id, keyed)| {
            let counter = e.b.ins().bxor_imm_s(keyed, i64::from(id.0));
            let bits = e.splitmix64(counter);
            (id, e.b.ins().ireduce(types::I32, bits))
        })
        .collect();
    // f32 data loads straight into f32x4 lanes; f64 encoders run one element at a time.
    let vectorise = e.scalar == types::F32;
    e.loops(len, vectorise, |e, k| {
        let bytes = e.bytes();
        let offset = e.b.ins().imul_imm_s(k, bytes);
        let offset4 = e.b.ins().imul_imm_s(k, 4);
        let address = e.b.ins().iadd(data_ptr, offset4);
        let data = if e.scalar == types::F32 {
            e.load_float(data_ptr, offset4)
        } else {
            let raw = e.b.ins().load(types::F32, MemFlagsData::trusted(), address, 0);
            e.b.ins().fpromote(types::F64, raw)
        };
        let elements = e.lane_indices(k);
        let widen_base = |e: &mut Emitter, base: Value| {
            if e.vector() { e.b.ins().splat(types::I32.by(u32::from(e.lanes)).expect("i32 lanes"), base) } else { base }
        };
        let draw = |e: &mut Emitter, id: ir::ExprId| {
            let base = bases.iter().find(|(node, _)| *node == id).map(|(_, base)| *base).expect("a base per rand() node");
            let base = widen_base(e, base);
            let mixed = e.b.ins().bxor(base, elements);
            let bits = e.lowbias32(mixed);
            e.unit::<F>(bits)
        };
        let time = e.widen(time);
        let step = e.widen(step);
        let scope = Scope { data: Some(data), rand: Some(&draw), ..Scope::new(time, net) };
        let value = e.expr(&input.exprs, input.value, &scope, &mut Vec::new())?;
        let out = match input.kind {
            EncoderKind::Current => value,
            EncoderKind::SpikeWhen => {
                let zero = e.constant(0.0);
                let on = e.b.ins().fcmp(FloatCC::NotEqual, value, zero);
                e.bool_to_float(on)
            }
            EncoderKind::SpikeAt => {
                let dt = e.constant(dt);
                let steps = e.b.ins().fdiv(value, dt);
                let whole = e.b.ins().floor(steps);
                let now = e.b.ins().fcmp(FloatCC::Equal, whole, step);
                e.bool_to_float(now)
            }
        };
        e.store_at(out, out_ptr, offset);
        Ok(())
    })
}

impl<F: Real> Compiled<F> {
    pub fn has_backward(&self) -> bool {
        !self.backward.is_empty()
    }

    /// How many subexpressions population `p`'s forward and backward kernels compute once per
    /// neuron ([`crate::ir::hoist`]).
    pub fn hoisted(&self, p: usize) -> (usize, usize) {
        (self.forward_scratch[p], self.backward_scratch.get(p).copied().unwrap_or(0))
    }

    /// Advances population `p` by step `t`: reads the trace's state row `t` and ports, writes
    /// row `t + 1` and the spikes of step `t`; `counters` advance.
    pub fn step(&self, module: &Module, p: usize, t: usize, trace: &mut Trace<F>, counters: &mut [u32], net: &[F]) {
        self.step_at(module, p, crate::exec::state::At::full(t), trace, counters, net);
    }

    /// Population `p`'s step `at.step`, reading the states of row `at.row` of `trace` and
    /// writing those of row `at.row + 1`, the ports and spikes of row `at.row`.
    pub fn step_at(&self, module: &Module, p: usize, at: crate::exec::state::At, trace: &mut Trace<F>, counters: &mut [u32], net: &[F]) {
        let (row, r) = (at.row, trace.row(p));
        for var in &trace.states[p] {
            assert!(var.len() >= (row + 2) * r, "state rows `row` and `row + 1` exist");
        }
        assert_eq!(counters.len(), r, "one refractory counter per element");
        let n_vars = trace.states[p].len();
        let n_ports = trace.ports[p].len();
        // Pointer arrays on the stack for the usual few variables and ports.
        let mut in_pointers = Pointers::<F>::new(n_vars);
        let mut out_pointers = Pointers::<F>::new(n_vars);
        for (v, var) in trace.states[p].iter_mut().enumerate() {
            let base = var.as_mut_ptr();
            // SAFETY: offsets within the allocation, as checked above.
            in_pointers.set(v, unsafe { base.add(row * r) });
            out_pointers.set(v, unsafe { base.add((row + 1) * r) });
        }
        let mut port_pointers = Pointers::<F>::new(n_ports);
        for (q, port) in trace.ports[p].iter_mut().enumerate() {
            port_pointers.set(q, port[row * r..(row + 1) * r].as_mut_ptr());
        }
        let mut spikes = crate::exec::pool::overwritten::<F>(r);
        // Kernels read network parameters through a pointer that must be valid even when there
        // are none: no copy per call.
        let no_net = [F::zero()];
        let net_values: &[F] = if net.is_empty() { &no_net } else { net };
        // The period for the network parameters of this call (a hook may change them).
        let pop = &module.populations[p];
        let refractory_steps = match pop.refractory {
            // A constant period (the usual case) needs no network parameters.
            Some(id) if pop.exprs.constant(id).is_some() => module.refractory_steps(pop, &[]),
            Some(_) => {
                let net: Vec<f64> = net.iter().map(|x| x.into_f64()).collect();
                module.refractory_steps(pop, &net)
            }
            None => 0,
        };
        let n = pop.size();
        let mut scratch = crate::exec::pool::overwritten::<F>(self.forward_scratch[p] * n);
        // SAFETY: every row has `r` elements, as the kernel assumes; the pointer arrays have one
        // entry per variable and port of this population, and the rows do not overlap; the
        // scratch has a row of `n` values per hoisted subexpression.
        unsafe {
            (self.forward[p])(
                in_pointers.as_ptr() as *const *const F,
                out_pointers.as_ptr(),
                port_pointers.as_ptr() as *const *const F,
                counters.as_mut_ptr(),
                spikes.as_mut_ptr(),
                r as i64,
                F::of(at.step as f64 * module.dt),
                net_values.as_ptr(),
                refractory_steps,
                n as i64,
                scratch.as_mut_ptr(),
            );
        }
        trace.store_spikes(row, p, &spikes);
        crate::exec::pool::spare([spikes, scratch]);
    }

    /// The adjoint of population `p`'s step `t` over a batch: from d(state after) and d(spike)
    /// to d(state before) (written to `d_before`) and d(ports) (written to `d_ports`).
    #[allow(clippy::too_many_arguments)]
    pub fn step_adjoint(
        &self,
        module: &Module,
        p: usize,
        t: usize,
        trace: &Trace<F>,
        d_after: &[Vec<F>],
        d_spike: &[F],
        d_before: &mut [Vec<F>],
        d_ports: &mut [&mut [F]],
        net: &[F],
    ) {
        let r = trace.row(p);
        let pop = &module.populations[p];
        assert!(d_after.iter().chain(d_before.iter()).all(|v| v.len() == r) && d_ports.iter().all(|v| v.len() == r) && d_spike.len() == r);
        let before_pointers: Vec<*const F> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v).as_ptr()).collect();
        let port_pointers: Vec<*const F> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q).as_ptr()).collect();
        let d_after_pointers: Vec<*const F> = d_after.iter().map(|v| v.as_ptr()).collect();
        let d_before_pointers: Vec<*mut F> = d_before.iter_mut().map(|v| v.as_mut_ptr()).collect();
        let d_port_pointers: Vec<*mut F> = d_ports.iter_mut().map(|v| v.as_mut_ptr()).collect();
        // Kernels read network parameters through a pointer that must be valid even when there
        // are none: no copy per call.
        let no_net = [F::zero()];
        let net_values: &[F] = if net.is_empty() { &no_net } else { net };
        let n = pop.size();
        let mut scratch = crate::exec::pool::overwritten::<F>(self.backward_scratch[p] * n);
        // SAFETY: every array has `r` elements (checked above) and one pointer per variable or
        // port, as the kernel assumes; outputs do not overlap inputs; the scratch has a row of
        // `n` values per hoisted subexpression.
        unsafe {
            (self.backward[p])(
                before_pointers.as_ptr(),
                port_pointers.as_ptr(),
                trace.counters_at(t, p).as_ptr(),
                d_after_pointers.as_ptr(),
                d_spike.as_ptr(),
                d_before_pointers.as_ptr(),
                d_port_pointers.as_ptr(),
                r as i64,
                F::of((trace.offset + t) as f64 * module.dt),
                net_values.as_ptr(),
                n as i64,
                scratch.as_mut_ptr(),
            );
        }
        crate::exec::pool::spare([scratch]);
    }

    /// Encoder `index`'s output for one sample in step `t` into `out` (one value per element):
    /// `features` are the sample's data (missing elements read 0), `key` its random keys (the
    /// step's and the sample's; see [`crate::exec::state::RandKey`]).
    #[allow(clippy::too_many_arguments)]
    pub fn encode(&self, module: &Module, index: usize, features: &[f32], t: usize, key: (u64, u64), net: &[F], out: &mut [F]) {
        let n = out.len();
        // An input that reads `events` reads step `t`'s block of the sample's features.
        let features = if module.inputs[index].per_step { features.get(t * n..).unwrap_or(&[]) } else { features };
        let padded;
        let data = if features.len() >= n {
            &features[..n]
        } else {
            padded = features.iter().copied().chain(std::iter::repeat(0.0)).take(n).collect::<Vec<f32>>();
            &padded
        };
        // Kernels read network parameters through a pointer that must be valid even when there
        // are none: no copy per call.
        let no_net = [F::zero()];
        let net_values: &[F] = if net.is_empty() { &no_net } else { net };
        // SAFETY: `data` and `out` have `n` elements each, as the kernel assumes.
        unsafe {
            (self.encoders[index])(
                data.as_ptr(),
                out.as_mut_ptr(),
                n as i64,
                F::of(t as f64 * module.dt),
                F::of(t as f64),
                net_values.as_ptr(),
                key.0,
                index as u64,
                key.1,
            );
        }
    }
}

/// A kernel's array of row pointers: on the stack for up to [`Pointers::INLINE`] entries.
enum Pointers<F> {
    Inline([*mut F; 8], usize),
    Heap(Vec<*mut F>),
}

impl<F> Pointers<F> {
    const INLINE: usize = 8;

    fn new(len: usize) -> Pointers<F> {
        if len <= Self::INLINE { Pointers::Inline([std::ptr::null_mut(); 8], len) } else { Pointers::Heap(vec![std::ptr::null_mut(); len]) }
    }

    fn set(&mut self, index: usize, pointer: *mut F) {
        match self {
            Pointers::Inline(array, len) => {
                assert!(index < *len, "a pointer per entry");
                array[index] = pointer;
            }
            Pointers::Heap(vec) => vec[index] = pointer,
        }
    }

    fn as_ptr(&self) -> *const *mut F {
        match self {
            Pointers::Inline(array, _) => array.as_ptr(),
            Pointers::Heap(vec) => vec.as_ptr(),
        }
    }
}
