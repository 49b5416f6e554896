//! Plasticity kernels: every `on pre` / `on post` update of a plastic synapse compiled by
//! Cranelift, one kernel per update and kind of event, from the synapse's own IR expressions.
//!
//! A presynaptic spike of neuron `i` updates weight row `i` (contiguous: `f32x4` / `f64x2`
//! lanes with a one-lane tail); a postsynaptic spike of neuron `j` updates column `j` (a
//! stride of `n_post`: one lane at a time). A variable of the event's own side (`pre <- 1` on
//! a presynaptic spike) is one value, updated once. Where each variable lives is its
//! [`Side`]; the interpreter of [`crate::exec::plasticity`] is the reference these kernels
//! are tested against, bit for bit.
//!
//! Kernel signature (`F` the float type): `fn(bases: *const *mut F, index: i64, time: F,
//! net: *const F)`, with `bases` one pointer per synapse variable (states, then traces; the
//! weight's is the projection's weights) and `index` the neuron that spiked.

use std::marker::PhantomData;

use cranelift_codegen::ir::{InstBuilder, UserFuncName, Value, types};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::JITModule;
use cranelift_module::{Linkage, Module as _};

use super::emit::{EmitError, Emitter, Scope};
use super::{JitError, entry, jit_module, signature};
use crate::exec::plasticity::Side;
use crate::exec::real::Real;
use crate::ir::{ExprId, Exprs, Node, SynapseModel, Update};

pub type UpdateKernel<F> = unsafe extern "C" fn(*const *mut F, i64, F, *const F);

/// One update to compile: which synapse, where its variables live, and for which event.
pub struct UpdateSpec<'a> {
    pub name: String,
    pub model: &'a SynapseModel,
    pub sides: &'a [Side],
    pub update: &'a Update,
    /// An `on pre` update (a row per event) or an `on post` one (a column).
    pub on_pre: bool,
    pub n_pre: usize,
    pub n_post: usize,
}

/// The compiled updates, in the order of their specs, with their CLIF text.
pub struct PlasticKernels<F> {
    _module: JITModule,
    pub kernels: Vec<UpdateKernel<F>>,
    pub clif: Vec<(String, String)>,
    precision: PhantomData<F>,
}

// SAFETY: as for `Compiled`: the finalized code is immutable and the kernels are plain
// functions of their arguments.
unsafe impl<F> Sync for PlasticKernels<F> {}
unsafe impl<F> Send for PlasticKernels<F> {}

/// Compiles every update of `specs`.
pub fn compile_plasticity<F: Real>(specs: &[UpdateSpec], dt: f64) -> Result<PlasticKernels<F>, JitError> {
    let (mut jit, host_ids) = jit_module::<F>()?;
    let scalar = Emitter::for_real::<F>();
    let mut ctx = jit.make_context();
    let mut builder_ctx = FunctionBuilderContext::new();
    let mut ids = Vec::new();
    let mut clif = Vec::new();
    for spec in specs {
        let sig = signature(&jit, 1, &[types::I64, scalar], 1);
        let id = jit
            .declare_function(&spec.name, Linkage::Local, &sig)
            .map_err(|e| JitError::Codegen { kernel: spec.name.clone(), message: e.to_string() })?;
        ctx.func.signature = sig;
        ctx.func.name = UserFuncName::user(0, id.as_u32());
        let host_refs: Vec<_> = host_ids.iter().map(|h| jit.declare_func_in_func(*h, &mut ctx.func)).collect();
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
            let mut emitter = Emitter { b: &mut b, host: &host_refs, dt, lanes: 1, scalar };
            update_kernel(&mut emitter, spec).map_err(|error| JitError::Emit { kernel: spec.name.clone(), error })?;
            b.seal_all_blocks();
            b.finalize(jit.target_config());
        }
        clif.push((spec.name.clone(), ctx.func.display().to_string()));
        jit.define_function(id, &mut ctx).map_err(|e| JitError::Codegen { kernel: spec.name.clone(), message: format!("{e:?}") })?;
        jit.clear_context(&mut ctx);
        ids.push(id);
    }
    jit.finalize_definitions().map_err(|e| JitError::Target(e.to_string()))?;
    let kernels = ids
        .iter()
        .map(|id| {
            let pointer = jit.get_finalized_function(*id);
            // SAFETY: every update kernel was compiled with the signature of `UpdateKernel<F>`.
            unsafe { std::mem::transmute::<*const u8, UpdateKernel<F>>(pointer) }
        })
        .collect();
    Ok(PlasticKernels { _module: jit, kernels, clif, precision: PhantomData })
}

/// The synapse variables an expression reads.
fn read_vars(exprs: &Exprs, root: ExprId, n_vars: usize) -> Vec<bool> {
    let mut read = vec![false; n_vars];
    let mut stack = vec![root];
    let mut seen = vec![false; exprs.nodes.len()];
    while let Some(id) = stack.pop() {
        if std::mem::replace(&mut seen[id.0 as usize], true) {
            continue;
        }
        match exprs.get(id) {
            Node::Var(var) => {
                if let Some(r) = read.get_mut(var.0 as usize) {
                    *r = true;
                }
            }
            Node::Unary(_, a) => stack.push(*a),
            Node::Binary(_, a, b) => stack.extend([*a, *b]),
            Node::Call(_, args) => stack.extend(args.iter().copied()),
            Node::Const(_) | Node::Port(_) | Node::Global(_) => {}
        }
    }
    read
}

/// How a variable is addressed for the element at loop counter `k` of an event at `index`.
#[derive(Clone, Copy, PartialEq)]
enum Address {
    /// One value, at `index` (a variable of the event's own side).
    Own,
    /// Element `index * n_post + k` (a weight row) or `k * n_post + index` (a column).
    Matrix,
    /// Element `k` (a variable of the other side, one value per element of the loop).
    Other,
}

fn address(side: Side, on_pre: bool) -> Address {
    match (side, on_pre) {
        (Side::Weight | Side::Synapse, _) => Address::Matrix,
        (Side::Pre, true) | (Side::Post, false) => Address::Own,
        (Side::Pre, false) | (Side::Post, true) => Address::Other,
    }
}

fn update_kernel(e: &mut Emitter, spec: &UpdateSpec) -> Result<(), EmitError> {
    let params = entry(e);
    let (bases_ptr, index, time, net) = (params[0], params[1], params[2], params[3]);
    let n_vars = spec.sides.len();
    let bases = e.bases(bases_ptr, n_vars);
    let read = read_vars(&spec.model.exprs, spec.update.value, n_vars);
    let target = spec.update.var.0 as usize;
    let bytes = e.bytes();
    let (n_pre, n_post) = (spec.n_pre as i64, spec.n_post as i64);
    // The byte offset of variable `v`'s element at loop counter `k`.
    let offset = |e: &mut Emitter, v: usize, k: Value| -> Value {
        let element = match address(spec.sides[v], spec.on_pre) {
            Address::Own => index,
            Address::Other => k,
            Address::Matrix if spec.on_pre => {
                let row = e.b.ins().imul_imm_s(index, n_post);
                e.b.ins().iadd(row, k)
            }
            Address::Matrix => {
                let row = e.b.ins().imul_imm_s(k, n_post);
                e.b.ins().iadd(row, index)
            }
        };
        e.b.ins().imul_imm_s(element, bytes)
    };
    let body = |e: &mut Emitter, k: Value| -> Result<(), EmitError> {
        let mut vars = Vec::with_capacity(n_vars);
        for (v, base) in bases.iter().enumerate() {
            let value = if !read[v] {
                e.constant(0.0)
            } else if address(spec.sides[v], spec.on_pre) == Address::Own {
                // One value for every lane.
                let at = offset(e, v, k);
                let lanes = e.lanes;
                e.lanes = 1;
                let scalar = e.load_float(*base, at);
                e.lanes = lanes;
                e.widen(scalar)
            } else {
                let at = offset(e, v, k);
                e.load_float(*base, at)
            };
            vars.push(value);
        }
        let time = e.widen(time);
        let scope = Scope { vars: &vars, ..Scope::new(time, net) };
        let value = e.expr(&spec.model.exprs, spec.update.value, &scope, &mut Vec::new())?;
        let at = offset(e, target, k);
        e.store_at(value, bases[target], at);
        Ok(())
    };
    if address(spec.sides[target], spec.on_pre) == Address::Own {
        // The event's own neuron: one value, written once.
        let zero = e.b.ins().iconst(types::I64, 0);
        body(e, zero)?;
        e.b.ins().return_(&[]);
        return Ok(());
    }
    // A row is contiguous in every matrix and other-side variable; a column is strided.
    let len = e.b.ins().iconst(types::I64, if spec.on_pre { n_post } else { n_pre });
    e.loops(len, spec.on_pre, body)
}
