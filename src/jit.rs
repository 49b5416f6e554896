//! The Cranelift JIT: per population, a forward kernel that advances the whole batch by one
//! step, and a backward kernel compiled from the step's derived adjoint ([`crate::grad`]).
//! Values are f64, two lanes (`f64x2`) per loop iteration with a one-lane tail; refractory
//! counters stay per lane; transcendental functions go through host calls, lane by lane, so
//! that results are bit-identical to the interpreter.
//!
//! A kernel has the signature
//! `fn(vars_in: *const *const f64, vars_out: *const *mut f64, ports: *const *const f64,
//!     counters: *mut u32, spikes: *mut f64, len: i64, time: f64, net: *const f64)` (state
//! before the step in, state after it out) and performs, for every element, exactly the
//! sequence of [`crate::interp`]: input jumps, dynamics, updates, threshold, reset,
//! refractory hold, updates after the spike, counter update.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Signature, UserFuncName, Value, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module as _};

use crate::interp::{Params, SampleRef, Trace, refractory_steps};
use crate::ir::{self, BinaryOp, ExprId, Exprs, Func, Global, Module, Node, Population, UnaryOp};

type Kernel = unsafe extern "C" fn(*const *const f64, *const *mut f64, *const *const f64, *mut u32, *mut f64, i64, f64, *const f64);
type BackwardKernel = unsafe extern "C" fn(
    *const *const f64,
    *const *const f64,
    *const u32,
    *const *const f64,
    *const f64,
    *const *mut f64,
    *const *mut f64,
    i64,
    f64,
    *const f64,
);

extern "C" fn host_exp(x: f64) -> f64 {
    x.exp()
}
extern "C" fn host_log(x: f64) -> f64 {
    x.ln()
}
extern "C" fn host_pow(x: f64, y: f64) -> f64 {
    x.powf(y)
}
extern "C" fn host_tanh(x: f64) -> f64 {
    x.tanh()
}
extern "C" fn host_sin(x: f64) -> f64 {
    x.sin()
}
extern "C" fn host_cos(x: f64) -> f64 {
    x.cos()
}
extern "C" fn host_sigmoid(x: f64) -> f64 {
    ir::eval_func(Func::Sigmoid, &[x]).unwrap_or(f64::NAN)
}
extern "C" fn host_gauss(x: f64, mu: f64, sigma: f64) -> f64 {
    ir::eval_func(Func::Gauss, &[x, mu, sigma]).unwrap_or(f64::NAN)
}

const HOST: [(&str, *const u8, usize); 8] = [
    ("snnc_exp", host_exp as *const u8, 1),
    ("snnc_log", host_log as *const u8, 1),
    ("snnc_pow", host_pow as *const u8, 2),
    ("snnc_tanh", host_tanh as *const u8, 1),
    ("snnc_sin", host_sin as *const u8, 1),
    ("snnc_cos", host_cos as *const u8, 1),
    ("snnc_sigmoid", host_sigmoid as *const u8, 1),
    ("snnc_gauss", host_gauss as *const u8, 3),
];

/// The compiled kernels of a module, one per population, and their CLIF text.
pub struct Compiled {
    _module: JITModule,
    kernels: Vec<Kernel>,
    /// Backward kernels, when the module trains with a surrogate gradient.
    backward: Vec<BackwardKernel>,
    pub clif: Vec<String>,
    pub backward_clif: Vec<String>,
}

/// Compiles every population's forward step. Fails with a message for constructs this first
/// version does not compile (random draws inside a neuron).
pub fn compile(module: &Module) -> Result<Compiled, String> {
    let mut flags = settings::builder();
    flags.set("opt_level", "speed").map_err(|e| e.to_string())?;
    flags.set("is_pic", "false").map_err(|e| e.to_string())?;
    let isa = cranelift_native::builder()
        .map_err(|e| format!("this machine is not supported by Cranelift: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| e.to_string())?;
    let mut builder = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    for (name, pointer, _) in HOST {
        builder.symbol(name, pointer);
    }
    let mut jit = JITModule::new(builder);
    let mut host_ids = Vec::new();
    for (name, _, arity) in HOST {
        let mut sig = jit.make_signature();
        for _ in 0..arity {
            sig.params.push(AbiParam::new(types::F64));
        }
        sig.returns.push(AbiParam::new(types::F64));
        host_ids.push(jit.declare_function(name, Linkage::Import, &sig).map_err(|e| e.to_string())?);
    }
    let surrogate = match module.train.as_ref().map(|t| &t.method) {
        Some(crate::ir_train::Method::Bptt { surrogate }) => Some(surrogate),
        _ => None,
    };
    let mut ids = Vec::new();
    let mut backward_ids = Vec::new();
    let mut clif = Vec::new();
    let mut backward_clif = Vec::new();
    let mut ctx = jit.make_context();
    let mut builder_ctx = FunctionBuilderContext::new();
    for (p, pop) in module.populations.iter().enumerate() {
        for backward in [false, true] {
            if backward && surrogate.is_none() {
                continue;
            }
            let signature = if backward { backward_signature(&jit) } else { kernel_signature(&jit) };
            let name = format!("{}_{p}_{}", if backward { "backward" } else { "step" }, pop.name);
            let id = jit.declare_function(&name, Linkage::Local, &signature).map_err(|e| e.to_string())?;
            ctx.func.signature = signature;
            ctx.func.name = UserFuncName::user(0, id.as_u32());
            let host_refs: Vec<_> = host_ids.iter().map(|h| jit.declare_func_in_func(*h, &mut ctx.func)).collect();
            {
                let mut b = FunctionBuilder::new(&mut ctx.func, &mut builder_ctx);
                let mut emitter = Emitter { b: &mut b, host: &host_refs, module, pop, lanes: 1 };
                if let (true, Some(surrogate)) = (backward, surrogate) {
                    let graph = crate::grad::derive(pop, surrogate).map_err(|e| format!("population `{}`: {e}", pop.name))?;
                    emitter.backward_kernel(&graph)?;
                } else {
                    emitter.kernel(refractory_steps(module, pop, &[]))?;
                }
                b.seal_all_blocks();
                b.finalize(jit.target_config());
            }
            let text = ctx.func.display().to_string();
            jit.define_function(id, &mut ctx).map_err(|e| format!("{e:?}"))?;
            jit.clear_context(&mut ctx);
            if backward {
                backward_clif.push(text);
                backward_ids.push(id);
            } else {
                clif.push(text);
                ids.push(id);
            }
        }
    }
    jit.finalize_definitions().map_err(|e| e.to_string())?;
    let kernels = ids
        .iter()
        .map(|id: &FuncId| {
            let pointer = jit.get_finalized_function(*id);
            // SAFETY: the function was compiled with `kernel_signature`, which matches `Kernel`.
            unsafe { std::mem::transmute::<*const u8, Kernel>(pointer) }
        })
        .collect();
    let backward = backward_ids
        .iter()
        .map(|id: &FuncId| {
            let pointer = jit.get_finalized_function(*id);
            // SAFETY: compiled with `backward_signature`, which matches `BackwardKernel`.
            unsafe { std::mem::transmute::<*const u8, BackwardKernel>(pointer) }
        })
        .collect();
    Ok(Compiled { _module: jit, kernels, backward, clif, backward_clif })
}

fn kernel_signature(jit: &JITModule) -> Signature {
    let mut sig = jit.make_signature();
    let pointer = jit.target_config().pointer_type();
    for _ in 0..5 {
        sig.params.push(AbiParam::new(pointer));
    }
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::F64));
    sig.params.push(AbiParam::new(pointer));
    sig
}

fn backward_signature(jit: &JITModule) -> Signature {
    let mut sig = jit.make_signature();
    let pointer = jit.target_config().pointer_type();
    for _ in 0..7 {
        sig.params.push(AbiParam::new(pointer));
    }
    sig.params.push(AbiParam::new(types::I64));
    sig.params.push(AbiParam::new(types::F64));
    sig.params.push(AbiParam::new(pointer));
    sig
}

struct Emitter<'b, 'f, 'm> {
    b: &'b mut FunctionBuilder<'f>,
    host: &'b [cranelift_codegen::ir::FuncRef],
    module: &'m Module,
    pop: &'m Population,
    /// 1: one element per SSA value; 2: `f64x2` values, two elements per loop iteration.
    lanes: u8,
}

/// What the shared step body produced, for the forward store or the backward sweep.
struct StepValues {
    after: Vec<Value>,
    spiked: Value,
    fired: Value,
    refractory: Value,
    /// The refractory counter of each lane.
    counters: Vec<Value>,
    counter_address: Value,
}

/// The SSA values one expression may read.
struct Scope<'a> {
    vars: &'a [Value],
    ports: &'a [Value],
    spiked: Value,
    time: Value,
    net: Value,
    surrogate_x: Option<Value>,
    /// The extra leaves of a derived backward step ([`crate::grad`]).
    derived: Option<&'a Derived>,
}

/// Values of the leaves only a derived backward step reads.
struct Derived {
    refractory: Value,
    d_after: Vec<Value>,
    d_spike: Value,
}

impl Emitter<'_, '_, '_> {
    fn vector(&self) -> bool {
        self.lanes == 2
    }

    /// The type of one value: `f64`, or `f64x2` in a two-lane body.
    fn float(&self) -> types::Type {
        if self.vector() { types::F64X2 } else { types::F64 }
    }

    /// A scalar as a value of the current width.
    fn widen(&mut self, scalar: Value) -> Value {
        if self.vector() { self.b.ins().splat(types::F64X2, scalar) } else { scalar }
    }

    fn f64(&mut self, value: f64) -> Value {
        let scalar = self.b.ins().f64const(value);
        self.widen(scalar)
    }

    /// A lane mask (from a vector comparison) as `f64x2` bits, for `bitselect`.
    fn mask_bits(&mut self, condition: Value) -> Value {
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        self.b.ins().bitcast(types::F64X2, flags, condition)
    }

    fn bool_to_f64(&mut self, condition: Value) -> Value {
        let (one, zero) = (self.f64(1.0), self.f64(0.0));
        self.select(condition, one, zero)
    }

    /// A host function, called once per lane.
    fn call(&mut self, host: usize, args: &[Value]) -> Value {
        if !self.vector() {
            let call = self.b.ins().call(self.host[host], args);
            return self.b.inst_results(call)[0];
        }
        let mut out = self.f64(0.0);
        for lane in 0..2u8 {
            let scalars: Vec<Value> = args.iter().map(|a| self.b.ins().extractlane(*a, lane)).collect();
            let call = self.b.ins().call(self.host[host], &scalars);
            let result = self.b.inst_results(call)[0];
            out = self.b.ins().insertlane(out, result, lane);
        }
        out
    }

    fn expr(&mut self, exprs: &Exprs, id: ExprId, scope: &Scope, memo: &mut Vec<Option<Value>>) -> Result<Value, String> {
        if memo.len() < exprs.nodes.len() {
            memo.resize(exprs.nodes.len(), None);
        }
        if let Some(value) = memo[id.0 as usize] {
            return Ok(value);
        }
        let value = match exprs.get(id) {
            Node::Const(value) => self.f64(*value),
            Node::Var(var) => scope.vars[var.0 as usize],
            Node::Port(port) => scope.ports[port.0 as usize],
            Node::Global(global) => match global {
                Global::Dt => self.f64(self.module.dt),
                Global::Time => scope.time,
                Global::Spiked => scope.spiked,
                Global::NetParam(index) => {
                    let scalar = self.b.ins().load(types::F64, MemFlagsData::trusted(), scope.net, (*index * 8) as i32);
                    self.widen(scalar)
                }
                Global::SurrogateX if scope.surrogate_x.is_some() => scope.surrogate_x.expect("checked"),
                Global::Refractory if scope.derived.is_some() => scope.derived.expect("checked").refractory,
                Global::AdjointAfter(v) if scope.derived.is_some() => scope.derived.expect("checked").d_after[*v as usize],
                Global::AdjointSpike if scope.derived.is_some() => scope.derived.expect("checked").d_spike,
                Global::Rand | Global::Data | Global::SurrogateX | Global::Refractory | Global::AdjointAfter(_) | Global::AdjointSpike => {
                    return Err(format!("the JIT does not compile {global:?} inside neuron `{}` yet", self.pop.neuron));
                }
            },
            Node::Unary(op, a) => {
                let a = self.expr(exprs, *a, scope, memo)?;
                match op {
                    UnaryOp::Neg => self.b.ins().fneg(a),
                    UnaryOp::Not => {
                        let zero = self.f64(0.0);
                        let is_zero = self.b.ins().fcmp(FloatCC::Equal, a, zero);
                        self.bool_to_f64(is_zero)
                    }
                }
            }
            Node::Binary(op, a, b) => {
                let (x, y) = (self.expr(exprs, *a, scope, memo)?, self.expr(exprs, *b, scope, memo)?);
                let compare = |this: &mut Self, cc: FloatCC| {
                    let c = this.b.ins().fcmp(cc, x, y);
                    this.bool_to_f64(c)
                };
                match op {
                    BinaryOp::Add => self.b.ins().fadd(x, y),
                    BinaryOp::Sub => self.b.ins().fsub(x, y),
                    BinaryOp::Mul => self.b.ins().fmul(x, y),
                    BinaryOp::Div => self.b.ins().fdiv(x, y),
                    BinaryOp::Pow if exprs.constant(*b) == Some(2.0) => self.b.ins().fmul(x, x),
                    BinaryOp::Pow => self.call(2, &[x, y]),
                    BinaryOp::Gt => compare(self, FloatCC::GreaterThan),
                    BinaryOp::Ge => compare(self, FloatCC::GreaterThanOrEqual),
                    BinaryOp::Lt => compare(self, FloatCC::LessThan),
                    BinaryOp::Le => compare(self, FloatCC::LessThanOrEqual),
                    BinaryOp::Eq => compare(self, FloatCC::Equal),
                    BinaryOp::Ne => compare(self, FloatCC::NotEqual),
                    BinaryOp::And | BinaryOp::Or => {
                        let zero = self.f64(0.0);
                        let a = self.b.ins().fcmp(FloatCC::NotEqual, x, zero);
                        let b = self.b.ins().fcmp(FloatCC::NotEqual, y, zero);
                        let both = if *op == BinaryOp::And { self.b.ins().band(a, b) } else { self.b.ins().bor(a, b) };
                        self.bool_to_f64(both)
                    }
                }
            }
            Node::Call(func, args) => {
                let args = args.iter().map(|a| self.expr(exprs, *a, scope, memo)).collect::<Result<Vec<_>, _>>()?;
                match func {
                    Func::Exp => self.call(0, &args),
                    Func::Log => self.call(1, &args),
                    Func::Tanh => self.call(3, &args),
                    Func::Sin => self.call(4, &args),
                    Func::Cos => self.call(5, &args),
                    Func::Sigmoid => self.call(6, &args),
                    Func::Gauss => self.call(7, &args),
                    Func::Sqrt => self.b.ins().sqrt(args[0]),
                    Func::Abs => self.b.ins().fabs(args[0]),
                    // Rust's min/max: pick the other operand when one is NaN; equal otherwise.
                    Func::Min => self.min_max(args[0], args[1], true),
                    Func::Max => self.min_max(args[0], args[1], false),
                    Func::Clip => {
                        let low = self.min_max(args[0], args[1], false);
                        self.min_max(low, args[2], true)
                    }
                    Func::Select => {
                        let zero = self.f64(0.0);
                        let c = self.b.ins().fcmp(FloatCC::NotEqual, args[0], zero);
                        self.select(c, args[1], args[2])
                    }
                    Func::Heaviside => {
                        let zero = self.f64(0.0);
                        let c = self.b.ins().fcmp(FloatCC::GreaterThan, args[0], zero);
                        self.bool_to_f64(c)
                    }
                }
            }
        };
        memo[id.0 as usize] = Some(value);
        Ok(value)
    }

    /// `a.min(b)` / `a.max(b)` with Rust's semantics for ordered values.
    fn min_max(&mut self, a: Value, b: Value, min: bool) -> Value {
        let cc = if min { FloatCC::LessThanOrEqual } else { FloatCC::GreaterThanOrEqual };
        let keep_a = self.b.ins().fcmp(cc, a, b);
        let b_nan = self.b.ins().fcmp(FloatCC::Unordered, b, b);
        let pick_a = self.b.ins().bor(keep_a, b_nan);
        self.select(pick_a, a, b)
    }

    fn select(&mut self, condition: Value, a: Value, b: Value) -> Value {
        if self.vector() {
            let mask = self.mask_bits(condition);
            self.b.ins().bitselect(mask, a, b)
        } else {
            self.b.ins().select(condition, a, b)
        }
    }

    fn updates(
        &mut self,
        updates: &[ir::Update],
        current: &mut [Value],
        ports: &[Value],
        spiked: Value,
        time: Value,
        net: Value,
    ) -> Result<(), String> {
        let pop = self.pop;
        for update in updates {
            let scope = Scope { vars: current, ports, spiked, time, net, surrogate_x: None, derived: None };
            let value = self.expr(&pop.exprs, update.value, &scope, &mut Vec::new())?;
            current[update.var.0 as usize] = value;
        }
        Ok(())
    }

    /// Emits the loop `for k in 0..len { body(k) }` and returns to the caller inside the body
    /// with `k`; `finish` closes the loop.
    fn open_loop(
        &mut self,
        start: Value,
        end: Value,
    ) -> (Value, cranelift_codegen::ir::Block, cranelift_codegen::ir::Block, cranelift_frontend::Variable) {
        let header = self.b.create_block();
        let body = self.b.create_block();
        let exit = self.b.create_block();
        let k = self.b.declare_var(types::I64);
        self.b.def_var(k, start);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let kv = self.b.use_var(k);
        // Room for a whole iteration: `lanes` elements from k.
        let last = self.b.ins().iadd_imm_s(kv, i64::from(self.lanes) - 1);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, last, end);
        self.b.ins().brif(more, body, &[], exit, &[]);
        self.b.switch_to_block(body);
        let kv = self.b.use_var(k);
        (kv, header, exit, k)
    }

    fn close_loop(
        &mut self,
        kv: Value,
        header: cranelift_codegen::ir::Block,
        exit: cranelift_codegen::ir::Block,
        k: cranelift_frontend::Variable,
    ) {
        let next = self.b.ins().iadd_imm_s(kv, i64::from(self.lanes));
        self.b.def_var(k, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
    }

    /// Emits `body` over `[0, len)`: two lanes per iteration while two elements remain (when
    /// `vectorise`), then one lane for the rest.
    fn loops(&mut self, len: Value, vectorise: bool, mut body: impl FnMut(&mut Self, Value) -> Result<(), String>) -> Result<(), String> {
        let mut start = self.b.ins().iconst(types::I64, 0);
        if vectorise {
            self.lanes = 2;
            let (kv, header, exit, k) = self.open_loop(start, len);
            body(self, kv)?;
            self.close_loop(kv, header, exit, k);
            start = self.b.use_var(k);
            self.lanes = 1;
        }
        let (kv, header, exit, k) = self.open_loop(start, len);
        body(self, kv)?;
        self.close_loop(kv, header, exit, k);
        self.b.ins().return_(&[]);
        Ok(())
    }

    fn bases(&mut self, table: Value, count: usize) -> Vec<Value> {
        (0..count).map(|i| self.b.ins().load(types::I64, MemFlagsData::trusted(), table, (i * 8) as i32)).collect()
    }

    /// Loads element `offset / 8` (and the next, in a two-lane body) of an `f64` array.
    fn load_float(&mut self, base: Value, offset: Value) -> Value {
        let address = self.b.ins().iadd(base, offset);
        // Vectors are only 8-byte aligned: an unaligned access.
        let flags = if self.vector() { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
        let ty = self.float();
        self.b.ins().load(ty, flags, address, 0)
    }

    fn store_at(&mut self, value: Value, base: Value, offset: Value) {
        let address = self.b.ins().iadd(base, offset);
        let flags = if self.vector() { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
        self.b.ins().store(flags, value, address, 0);
    }

    /// The refractory counters of this iteration's lanes and whether each is refractory: an
    /// `i8` flag in a one-lane body, an `i64x2` lane mask in a two-lane one. Populations
    /// without a refractory period keep their counters at 0 and read none.
    fn refractory(&mut self, counter_address: Value) -> (Vec<Value>, Value) {
        let lanes = usize::from(self.lanes);
        if self.pop.refractory.is_none() {
            let counters = vec![self.b.ins().iconst(types::I32, 0); lanes];
            let flag = if self.vector() {
                let zero = self.f64(0.0);
                self.b.ins().fcmp(FloatCC::NotEqual, zero, zero)
            } else {
                self.b.ins().iconst(types::I8, 0)
            };
            return (counters, flag);
        }
        let counters: Vec<Value> =
            (0..lanes).map(|lane| self.b.ins().load(types::I32, MemFlagsData::trusted(), counter_address, (lane * 4) as i32)).collect();
        let flags: Vec<Value> = counters.iter().map(|c| self.b.ins().icmp_imm_u(IntCC::UnsignedGreaterThan, *c, 0)).collect();
        if !self.vector() {
            return (counters, flags[0]);
        }
        let masks: Vec<Value> = flags.iter().map(|f| self.b.ins().bmask(types::I64, *f)).collect();
        let mut mask = self.b.ins().splat(types::I64X2, masks[0]);
        mask = self.b.ins().insertlane(mask, masks[1], 1);
        (counters, mask)
    }

    /// One element's step, exactly the sequence of [`crate::interp`].
    #[allow(clippy::too_many_arguments)]
    fn step_body(
        &mut self,
        var_bases: &[Value],
        port_bases: &[Value],
        counters_ptr: Value,
        offset8: Value,
        offset4: Value,
        time: Value,
        net: Value,
    ) -> Result<StepValues, String> {
        let pop = self.pop;
        let time = self.widen(time);
        let before: Vec<Value> = var_bases.iter().map(|base| self.load_float(*base, offset8)).collect();
        let ports: Vec<Value> = port_bases.iter().map(|base| self.load_float(*base, offset8)).collect();
        let counter_address = self.b.ins().iadd(counters_ptr, offset4);
        let zero = self.f64(0.0);
        let (counters, refractory) = self.refractory(counter_address);
        let mut current = before.clone();
        // (3a) input jumps where the port received input.
        for jump in &pop.input_jumps {
            let port = ports[jump.port.0 as usize];
            let received = self.b.ins().fcmp(FloatCC::NotEqual, port, zero);
            let mut jumped = current.clone();
            self.updates(&jump.updates, &mut jumped, &ports, zero, time, net)?;
            for update in &jump.updates {
                let v = update.var.0 as usize;
                current[v] = self.select(received, jumped[v], current[v]);
            }
        }
        // (3b) dynamics on the state before integration.
        let snapshot = current.clone();
        let mut memo = Vec::new();
        for (update, _) in &pop.dynamics {
            let scope = Scope { vars: &snapshot, ports: &ports, spiked: zero, time, net, surrogate_x: None, derived: None };
            current[update.var.0 as usize] = self.expr(&pop.exprs, update.value, &scope, &mut memo)?;
        }
        // (3c) updates in order.
        self.updates(&pop.updates, &mut current, &ports, zero, time, net)?;
        // (3d) threshold unless refractory, reset, hold.
        let mut fired = if self.vector() {
            let zero = self.f64(0.0);
            self.b.ins().fcmp(FloatCC::NotEqual, zero, zero)
        } else {
            self.b.ins().iconst(types::I8, 0)
        };
        let mut spiked = zero;
        if let Some(threshold) = &pop.threshold {
            let scope = Scope { vars: &current, ports: &ports, spiked: zero, time, net, surrogate_x: None, derived: None };
            let mut memo = Vec::new();
            let lhs = self.expr(&pop.exprs, threshold.lhs, &scope, &mut memo)?;
            let rhs = self.expr(&pop.exprs, threshold.rhs, &scope, &mut memo)?;
            let cc = if threshold.op == BinaryOp::Ge { FloatCC::GreaterThanOrEqual } else { FloatCC::GreaterThan };
            let crossed = self.b.ins().fcmp(cc, lhs, rhs);
            let not_refractory = self.b.ins().bnot(refractory);
            fired = self.b.ins().band(crossed, not_refractory);
            spiked = self.bool_to_f64(fired);
        }
        let mut reset = current.clone();
        self.updates(&pop.on_spike, &mut reset, &ports, spiked, time, net)?;
        for update in &pop.on_spike {
            let v = update.var.0 as usize;
            let after = self.select(fired, reset[v], current[v]);
            current[v] = self.select(refractory, before[v], after);
        }
        // (3e) updates after the spike test.
        self.updates(&pop.after_spike, &mut current, &ports, spiked, time, net)?;
        Ok(StepValues { after: current, spiked, fired, refractory, counters, counter_address })
    }

    fn kernel(&mut self, refractory_steps: u32) -> Result<(), String> {
        let pop = self.pop;
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let params = self.b.block_params(entry).to_vec();
        let (vars_in_ptr, vars_out_ptr, ports_ptr, counters_ptr, spikes_ptr, len, time, net) =
            (params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7]);
        let var_bases = self.bases(vars_in_ptr, pop.vars.len());
        let out_bases = self.bases(vars_out_ptr, pop.vars.len());
        let port_bases = self.bases(ports_ptr, pop.ports.len());
        self.loops(len, true, |this, kv| {
            let offset8 = this.b.ins().imul_imm_s(kv, 8);
            let offset4 = this.b.ins().imul_imm_s(kv, 4);
            let step = this.step_body(&var_bases, &port_bases, counters_ptr, offset8, offset4, time, net)?;
            for (v, base) in out_bases.iter().enumerate() {
                this.store_at(step.after[v], *base, offset8);
            }
            this.store_at(step.spiked, spikes_ptr, offset8);
            if pop.refractory.is_some() {
                for (lane, counter) in step.counters.iter().enumerate() {
                    let (fired, refractory) = if this.vector() {
                        let fired = this.b.ins().extractlane(step.fired, lane as u8);
                        let refractory = this.b.ins().extractlane(step.refractory, lane as u8);
                        (this.b.ins().icmp_imm_s(IntCC::NotEqual, fired, 0), this.b.ins().icmp_imm_s(IntCC::NotEqual, refractory, 0))
                    } else {
                        (step.fired, step.refractory)
                    };
                    let decremented = this.b.ins().iadd_imm_s(*counter, -1);
                    let restart = this.b.ins().iconst(types::I32, i64::from(refractory_steps));
                    let on_fire = this.b.ins().select(fired, restart, *counter);
                    let next_counter = this.b.ins().select(refractory, decremented, on_fire);
                    this.b.ins().store(MemFlagsData::trusted(), next_counter, step.counter_address, (lane * 4) as i32);
                }
            }
            Ok(())
        })
    }

    /// The backward kernel: the code of a derived backward step ([`crate::grad::derive`]),
    /// from the state before the step, its ports and the adjoints after it to d(before) and
    /// d(ports), one element per loop iteration.
    fn backward_kernel(&mut self, graph: &crate::grad::StepGraph) -> Result<(), String> {
        let pop = self.pop;
        let entry = self.b.create_block();
        self.b.append_block_params_for_function_params(entry);
        self.b.switch_to_block(entry);
        let params = self.b.block_params(entry).to_vec();
        let (before_ptr, ports_ptr, counters_ptr, d_after_ptr, d_spike_ptr, d_before_ptr, d_ports_ptr, len, time, net) =
            (params[0], params[1], params[2], params[3], params[4], params[5], params[6], params[7], params[8], params[9]);
        let var_bases = self.bases(before_ptr, pop.vars.len());
        let port_bases = self.bases(ports_ptr, pop.ports.len());
        let d_after_bases = self.bases(d_after_ptr, pop.vars.len());
        let d_before_bases = self.bases(d_before_ptr, pop.vars.len());
        let d_port_bases = self.bases(d_ports_ptr, pop.ports.len());
        self.loops(len, true, |this, kv| {
            let offset8 = this.b.ins().imul_imm_s(kv, 8);
            let offset4 = this.b.ins().imul_imm_s(kv, 4);
            let before: Vec<Value> = var_bases.iter().map(|base| this.load_float(*base, offset8)).collect();
            let ports: Vec<Value> = port_bases.iter().map(|base| this.load_float(*base, offset8)).collect();
            let counter_address = this.b.ins().iadd(counters_ptr, offset4);
            let (_, held) = this.refractory(counter_address);
            let refractory = this.bool_to_f64(held);
            let d_after: Vec<Value> = d_after_bases.iter().map(|base| this.load_float(*base, offset8)).collect();
            let d_spike = this.load_float(d_spike_ptr, offset8);
            let derived = Derived { refractory, d_after, d_spike };
            let zero = this.f64(0.0);
            let time = this.widen(time);
            let scope = Scope { vars: &before, ports: &ports, spiked: zero, time, net, surrogate_x: None, derived: Some(&derived) };
            let mut memo = Vec::new();
            for (v, base) in d_before_bases.iter().enumerate() {
                let g = this.expr(&graph.exprs, graph.d_before[v], &scope, &mut memo)?;
                this.store_at(g, *base, offset8);
            }
            for (q, base) in d_port_bases.iter().enumerate() {
                let g = this.expr(&graph.exprs, graph.d_ports[q], &scope, &mut memo)?;
                this.store_at(g, *base, offset8);
            }
            Ok(())
        })
    }
}

/// Forward pass over a batch with the compiled kernels; the trace has the layout of
/// [`crate::interp::run`]'s.
pub fn run(compiled: &Compiled, module: &Module, params: &Params, samples: &[SampleRef], seed: u64, net: &[f64]) -> Trace {
    crate::batched::run(module, params, samples, seed, net, crate::batched::Kernels::Jit(compiled))
}

// SAFETY: after `finalize_definitions` the JIT module's code is immutable; the kernels are
// plain functions of their arguments, so calling them from several threads at once is safe.
// The module itself is only touched when `Compiled` is dropped.
unsafe impl Sync for Compiled {}
unsafe impl Send for Compiled {}

impl Compiled {
    pub fn has_backward(&self) -> bool {
        !self.backward.is_empty()
    }

    /// Advances population `p` by step `t`: reads the trace's state row `t`, writes row `t + 1`
    /// and spike row `t`; `counters` advance.
    pub fn step(&self, module: &Module, p: usize, t: usize, trace: &mut Trace, counters: &mut [u32], net: &[f64]) {
        let r = trace.row(p);
        for var in &trace.states[p] {
            assert!(var.len() >= (t + 2) * r, "state rows t and t + 1 exist");
        }
        // Rows t and t + 1 of each variable's allocation: disjoint, both in bounds (checked).
        let bases: Vec<*mut f64> = trace.states[p].iter_mut().map(|v| v.as_mut_ptr()).collect();
        // SAFETY: offsets within the allocations, as checked above.
        let in_pointers: Vec<*const f64> = bases.iter().map(|b| unsafe { b.add(t * r) } as *const f64).collect();
        let out_pointers: Vec<*mut f64> = bases.iter().map(|b| unsafe { b.add((t + 1) * r) }).collect();
        let port_pointers: Vec<*const f64> = trace.ports[p].iter().map(|v| v[t * r..(t + 1) * r].as_ptr()).collect();
        let mut spikes = crate::batched::overwritten(r);
        let net_values: Vec<f64> = if net.is_empty() { vec![0.0] } else { net.to_vec() };
        assert_eq!(counters.len(), r, "one refractory counter per element");
        // SAFETY: every row has `r` elements, as the kernel assumes; the pointer arrays have one
        // entry per variable and port of this population, and the rows do not overlap.
        unsafe {
            (self.kernels[p])(
                in_pointers.as_ptr(),
                out_pointers.as_ptr(),
                port_pointers.as_ptr(),
                counters.as_mut_ptr(),
                spikes.as_mut_ptr(),
                r as i64,
                t as f64 * module.dt,
                net_values.as_ptr(),
            );
        }
        trace.store_spikes(t, p, &spikes);
        crate::batched::spare([spikes]);
    }

    /// The adjoint of population `p`'s step `t` over a batch: from d(state after) and d(spike)
    /// to d(state before) (written to `d_before`) and d(ports) (written to `d_ports`).
    #[allow(clippy::too_many_arguments)]
    pub fn step_adjoint(
        &self,
        module: &Module,
        p: usize,
        t: usize,
        trace: &Trace,
        d_after: &[Vec<f64>],
        d_spike: &[f64],
        d_before: &mut [Vec<f64>],
        d_ports: &mut [&mut [f64]],
        net: &[f64],
    ) {
        let r = trace.row(p);
        let pop = &module.populations[p];
        assert!(d_after.iter().chain(d_before.iter()).all(|v| v.len() == r) && d_ports.iter().all(|v| v.len() == r) && d_spike.len() == r);
        let before_pointers: Vec<*const f64> = (0..pop.vars.len()).map(|v| trace.state_before(t, p, v).as_ptr()).collect();
        let port_pointers: Vec<*const f64> = (0..pop.ports.len()).map(|q| trace.port_at(t, p, q).as_ptr()).collect();
        let d_after_pointers: Vec<*const f64> = d_after.iter().map(|v| v.as_ptr()).collect();
        let d_before_pointers: Vec<*mut f64> = d_before.iter_mut().map(|v| v.as_mut_ptr()).collect();
        let d_port_pointers: Vec<*mut f64> = d_ports.iter_mut().map(|v| v.as_mut_ptr()).collect();
        let net_values: Vec<f64> = if net.is_empty() { vec![0.0] } else { net.to_vec() };
        // SAFETY: every array has `r` elements (checked above) and one pointer per variable or
        // port, as the kernel assumes; outputs do not overlap inputs.
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
                t as f64 * module.dt,
                net_values.as_ptr(),
            );
        }
    }
}
