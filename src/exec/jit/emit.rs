//! Code generation for one kernel: expressions of an IR arena as Cranelift instructions over
//! one element or a vector of lanes (`f32x4`, `f64x2`: Cranelift's x86-64 vectors are 128
//! bits), loops with a one-lane tail, loads and stores, `exp` (with `sigmoid` and `gauss`)
//! inline in every lane as [`crate::ir::exp`] computes it, host calls for the other
//! transcendental functions (lane by lane, so that results are bit-identical to the oracle's),
//! and the counter-based random draw of encoders.

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{Block, FuncRef, InstBuilder, MemFlagsData, Value, types};
use cranelift_frontend::{FunctionBuilder, Variable};

use crate::exec::real::Real;
use crate::ir::{BinaryOp, ExprId, Exprs, Func, Global, Node, UnaryOp};

/// What went wrong while generating a kernel.
#[derive(Clone, Debug, PartialEq)]
pub enum EmitError {
    /// An expression reads a value this kind of kernel has no source for.
    Unsupported { global: Global },
}

/// The host functions a kernel may call, in this order (see [`super::HOST`]).
#[derive(Clone, Copy)]
pub(super) enum Host {
    Log,
    Pow,
    Tanh,
    Sin,
    Cos,
}

/// Emits the draw of a `rand()` node.
pub(super) type Draw<'a> = &'a dyn Fn(&mut Emitter, ExprId) -> Value;

/// Where the leaves of an expression come from in the kernel being emitted.
pub(super) struct Scope<'a> {
    pub vars: &'a [Value],
    pub ports: &'a [Value],
    pub spiked: Option<Value>,
    pub time: Value,
    pub net: Value,
    /// The population's refractory flag (1 or 0 per lane) in a step graph.
    pub refractory: Option<Value>,
    /// d loss / d (state after), per variable, in a derived backward step.
    pub d_after: &'a [Value],
    /// d loss / d spike in a derived backward step.
    pub d_spike: Option<Value>,
    /// The encoded element's data value, in an encoder.
    pub data: Option<Value>,
    /// The draw of `rand()` node `id`, in an encoder.
    pub rand: Option<Draw<'a>>,
}

impl Scope<'_> {
    pub fn new(time: Value, net: Value) -> Scope<'static> {
        Scope { vars: &[], ports: &[], spiked: None, time, net, refractory: None, d_after: &[], d_spike: None, data: None, rand: None }
    }
}

/// Emits instructions into one function for values of type `F`.
pub(super) struct Emitter<'b, 'f> {
    pub b: &'b mut FunctionBuilder<'f>,
    pub host: &'b [FuncRef],
    /// The step length in seconds.
    pub dt: f64,
    /// 1: one element per SSA value; more: a vector of that many lanes.
    pub lanes: u8,
    /// `F32` or `F64`.
    pub scalar: types::Type,
}

impl Emitter<'_, '_> {
    pub fn for_real<F: Real>() -> types::Type {
        if F::BYTES == 4 { types::F32 } else { types::F64 }
    }

    pub fn vector(&self) -> bool {
        self.lanes > 1
    }

    /// Lanes of a full vector of this scalar type.
    pub fn max_lanes(&self) -> u8 {
        (16 / self.scalar.bytes()) as u8
    }

    /// The type of one value: the scalar, or its vector in a vector body.
    pub fn float(&self) -> types::Type {
        if self.vector() { self.scalar.by(u32::from(self.lanes)).expect("a 128-bit vector") } else { self.scalar }
    }

    /// Bytes per element.
    pub fn bytes(&self) -> i64 {
        i64::from(self.scalar.bytes())
    }

    /// A scalar as a value of the current width.
    pub fn widen(&mut self, scalar: Value) -> Value {
        if self.vector() {
            let ty = self.float();
            self.b.ins().splat(ty, scalar)
        } else {
            scalar
        }
    }

    pub fn scalar_const(&mut self, value: f64) -> Value {
        if self.scalar == types::F32 { self.b.ins().f32const(value as f32) } else { self.b.ins().f64const(value) }
    }

    pub fn constant(&mut self, value: f64) -> Value {
        let scalar = self.scalar_const(value);
        self.widen(scalar)
    }

    /// A lane mask (from a vector comparison) as float bits, for `bitselect`.
    fn mask_bits(&mut self, condition: Value) -> Value {
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let ty = self.float();
        self.b.ins().bitcast(ty, flags, condition)
    }

    pub fn select(&mut self, condition: Value, a: Value, b: Value) -> Value {
        if self.vector() {
            let mask = self.mask_bits(condition);
            self.b.ins().bitselect(mask, a, b)
        } else {
            self.b.ins().select(condition, a, b)
        }
    }

    pub fn bool_to_float(&mut self, condition: Value) -> Value {
        let (one, zero) = (self.constant(1.0), self.constant(0.0));
        self.select(condition, one, zero)
    }

    /// A host function, called once per lane.
    fn call(&mut self, host: Host, args: &[Value]) -> Value {
        let func = self.host[host as usize];
        if !self.vector() {
            let call = self.b.ins().call(func, args);
            return self.b.inst_results(call)[0];
        }
        let mut out = self.constant(0.0);
        for lane in 0..self.lanes {
            let scalars: Vec<Value> = args.iter().map(|a| self.b.ins().extractlane(*a, lane)).collect();
            let call = self.b.ins().call(func, &scalars);
            let result = self.b.inst_results(call)[0];
            out = self.b.ins().insertlane(out, result, lane);
        }
        out
    }

    /// [`crate::ir::exp`] inline, in every lane at once: the same operations in the same order,
    /// the scaling by `2^k` as an addition to the exponent bits.
    fn exp(&mut self, x: Value) -> Value {
        let c = crate::ir::ExpConstants::of_bytes(self.scalar.bytes() as usize);
        let shifter = self.constant(c.shifter);
        let log2e = self.constant(std::f64::consts::LOG2_E);
        let scaled = self.b.ins().fmul(x, log2e);
        let t = self.b.ins().fadd(scaled, shifter);
        let k = self.b.ins().fsub(t, shifter);
        let (hi, lo) = (self.constant(c.ln2_hi), self.constant(c.ln2_lo));
        let k_hi = self.b.ins().fmul(k, hi);
        let k_lo = self.b.ins().fmul(k, lo);
        let reduced = self.b.ins().fsub(x, k_hi);
        let r = self.b.ins().fsub(reduced, k_lo);
        let mut p = self.constant(c.coefficients[c.coefficients.len() - 1]);
        for coefficient in c.coefficients.iter().rev().skip(1) {
            let term = self.constant(*coefficient);
            let product = self.b.ins().fmul(p, r);
            p = self.b.ins().fadd(product, term);
        }
        // t's low mantissa bits hold k: shifted into the exponent field and added to p's.
        let int = if self.scalar == types::F32 { types::I32 } else { types::I64 };
        let int = if self.vector() { int.by(u32::from(self.lanes)).expect("a 128-bit vector") } else { int };
        let flags = if self.vector() {
            MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little)
        } else {
            MemFlagsData::new()
        };
        let t_bits = self.b.ins().bitcast(int, flags, t);
        let exponent = self.b.ins().ishl_imm_s(t_bits, i64::from(c.mantissa));
        let p_bits = self.b.ins().bitcast(int, flags, p);
        let sum = self.b.ins().iadd(p_bits, exponent);
        let ty = self.float();
        let result = self.b.ins().bitcast(ty, flags, sum);
        // Outside [lo, hi]: infinity above, 0 below; NaN stays NaN.
        let (upper, lower) = (self.constant(c.hi), self.constant(c.lo));
        let (infinity, zero) = (self.constant(f64::INFINITY), self.constant(0.0));
        let above = self.b.ins().fcmp(FloatCC::GreaterThan, x, upper);
        let result = self.select(above, infinity, result);
        let below = self.b.ins().fcmp(FloatCC::LessThan, x, lower);
        let result = self.select(below, zero, result);
        let nan = self.b.ins().fcmp(FloatCC::Unordered, x, x);
        self.select(nan, x, result)
    }

    /// [`crate::ir::sigmoid`] inline.
    fn sigmoid(&mut self, x: Value) -> Value {
        let minus = self.b.ins().fneg(x);
        let e = self.exp(minus);
        let one = self.constant(1.0);
        let denominator = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(one, denominator)
    }

    /// [`crate::ir::gauss`] inline.
    fn gauss(&mut self, x: Value, mu: Value, sigma: Value) -> Value {
        let two = self.constant(2.0);
        let root_tau = self.constant(std::f64::consts::TAU.sqrt());
        let d = self.b.ins().fsub(x, mu);
        let square = self.b.ins().fmul(d, d);
        let minus = self.b.ins().fneg(square);
        let two_sigma = self.b.ins().fmul(two, sigma);
        let variance = self.b.ins().fmul(two_sigma, sigma);
        let exponent = self.b.ins().fdiv(minus, variance);
        let e = self.exp(exponent);
        let scale = self.b.ins().fmul(sigma, root_tau);
        self.b.ins().fdiv(e, scale)
    }

    /// `a.min(b)` / `a.max(b)` with Rust's semantics: the other operand when one is NaN.
    fn min_max(&mut self, a: Value, b: Value, min: bool) -> Value {
        let cc = if min { FloatCC::LessThanOrEqual } else { FloatCC::GreaterThanOrEqual };
        let keep_a = self.b.ins().fcmp(cc, a, b);
        let b_nan = self.b.ins().fcmp(FloatCC::Unordered, b, b);
        let pick_a = self.b.ins().bor(keep_a, b_nan);
        self.select(pick_a, a, b)
    }

    /// Expression `id` of `exprs`, each node emitted once (`memo`).
    pub fn expr(&mut self, exprs: &Exprs, id: ExprId, scope: &Scope, memo: &mut Vec<Option<Value>>) -> Result<Value, EmitError> {
        if memo.len() < exprs.nodes.len() {
            memo.resize(exprs.nodes.len(), None);
        }
        if let Some(value) = memo[id.0 as usize] {
            return Ok(value);
        }
        let value = match exprs.get(id) {
            Node::Const(value) => self.constant(*value),
            Node::Var(var) => scope.vars[var.0 as usize],
            Node::Port(port) => scope.ports[port.0 as usize],
            Node::Global(global) => {
                let missing = EmitError::Unsupported { global: *global };
                match global {
                    Global::Dt => self.constant(self.dt),
                    Global::Time => scope.time,
                    Global::NetParam(index) => {
                        let (ty, offset) = (self.scalar, (i64::from(*index) * self.bytes()) as i32);
                        let scalar = self.b.ins().load(ty, MemFlagsData::trusted(), scope.net, offset);
                        self.widen(scalar)
                    }
                    Global::Spiked => scope.spiked.ok_or(missing)?,
                    Global::Refractory => scope.refractory.ok_or(missing)?,
                    Global::AdjointAfter(v) => *scope.d_after.get(*v as usize).ok_or(missing)?,
                    Global::AdjointSpike => scope.d_spike.ok_or(missing)?,
                    Global::Data => scope.data.ok_or(missing)?,
                    Global::Rand | Global::SampleRand => {
                        let draw = scope.rand.ok_or(missing)?;
                        draw(self, id)
                    }
                    Global::SurrogateX => return Err(missing),
                }
            }
            Node::Unary(op, a) => {
                let a = self.expr(exprs, *a, scope, memo)?;
                match op {
                    UnaryOp::Neg => self.b.ins().fneg(a),
                    UnaryOp::Not => {
                        let zero = self.constant(0.0);
                        let is_zero = self.b.ins().fcmp(FloatCC::Equal, a, zero);
                        self.bool_to_float(is_zero)
                    }
                }
            }
            Node::Binary(op, a, b) => {
                let (x, y) = (self.expr(exprs, *a, scope, memo)?, self.expr(exprs, *b, scope, memo)?);
                let compare = |this: &mut Self, cc: FloatCC| {
                    let c = this.b.ins().fcmp(cc, x, y);
                    this.bool_to_float(c)
                };
                match op {
                    BinaryOp::Add => self.b.ins().fadd(x, y),
                    BinaryOp::Sub => self.b.ins().fsub(x, y),
                    BinaryOp::Mul => self.b.ins().fmul(x, y),
                    BinaryOp::Div => self.b.ins().fdiv(x, y),
                    BinaryOp::Pow if exprs.constant(*b) == Some(2.0) => self.b.ins().fmul(x, x),
                    BinaryOp::Pow => self.call(Host::Pow, &[x, y]),
                    BinaryOp::Gt => compare(self, FloatCC::GreaterThan),
                    BinaryOp::Ge => compare(self, FloatCC::GreaterThanOrEqual),
                    BinaryOp::Lt => compare(self, FloatCC::LessThan),
                    BinaryOp::Le => compare(self, FloatCC::LessThanOrEqual),
                    BinaryOp::Eq => compare(self, FloatCC::Equal),
                    BinaryOp::Ne => compare(self, FloatCC::NotEqual),
                    BinaryOp::And | BinaryOp::Or => {
                        let zero = self.constant(0.0);
                        let a = self.b.ins().fcmp(FloatCC::NotEqual, x, zero);
                        let b = self.b.ins().fcmp(FloatCC::NotEqual, y, zero);
                        let both = if *op == BinaryOp::And { self.b.ins().band(a, b) } else { self.b.ins().bor(a, b) };
                        self.bool_to_float(both)
                    }
                }
            }
            Node::Call(func, args) => {
                let args = args.iter().map(|a| self.expr(exprs, *a, scope, memo)).collect::<Result<Vec<_>, _>>()?;
                match func {
                    Func::Exp => self.exp(args[0]),
                    Func::Log => self.call(Host::Log, &args),
                    Func::Tanh => self.call(Host::Tanh, &args),
                    Func::Sin => self.call(Host::Sin, &args),
                    Func::Cos => self.call(Host::Cos, &args),
                    Func::Sigmoid => self.sigmoid(args[0]),
                    Func::Gauss => self.gauss(args[0], args[1], args[2]),
                    Func::Sqrt => self.b.ins().sqrt(args[0]),
                    Func::Abs => self.b.ins().fabs(args[0]),
                    Func::Min => self.min_max(args[0], args[1], true),
                    Func::Max => self.min_max(args[0], args[1], false),
                    Func::Clip => {
                        let low = self.min_max(args[0], args[1], false);
                        self.min_max(low, args[2], true)
                    }
                    Func::Select => {
                        let zero = self.constant(0.0);
                        let c = self.b.ins().fcmp(FloatCC::NotEqual, args[0], zero);
                        self.select(c, args[1], args[2])
                    }
                    Func::Detach => args[0],
                    Func::Heaviside => {
                        let zero = self.constant(0.0);
                        let c = self.b.ins().fcmp(FloatCC::GreaterThan, args[0], zero);
                        self.bool_to_float(c)
                    }
                }
            }
        };
        memo[id.0 as usize] = Some(value);
        Ok(value)
    }

    /// Opens the loop `for k in start..end step lanes` and returns `k` inside the body.
    fn open_loop(&mut self, start: Value, end: Value) -> (Value, Block, Block, Variable) {
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

    fn close_loop(&mut self, kv: Value, header: Block, exit: Block, k: Variable) {
        let next = self.b.ins().iadd_imm_s(kv, i64::from(self.lanes));
        self.b.def_var(k, next);
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(exit);
    }

    /// Emits `body(k)` over `[0, len)`: a full vector per iteration while one fits (when
    /// `vectorise`), then one lane for the rest; then returns from the function.
    pub fn loops(
        &mut self,
        len: Value,
        vectorise: bool,
        body: impl FnMut(&mut Self, Value) -> Result<(), EmitError>,
    ) -> Result<(), EmitError> {
        self.sweep(len, vectorise, body)?;
        self.b.ins().return_(&[]);
        Ok(())
    }

    /// Emits `body(k)` over `[0, len)` as [`Emitter::loops`] does, and goes on after it.
    pub fn sweep(
        &mut self,
        len: Value,
        vectorise: bool,
        mut body: impl FnMut(&mut Self, Value) -> Result<(), EmitError>,
    ) -> Result<(), EmitError> {
        let mut start = self.b.ins().iconst(types::I64, 0);
        if vectorise {
            self.lanes = self.max_lanes();
            let (kv, header, exit, k) = self.open_loop(start, len);
            body(self, kv)?;
            self.close_loop(kv, header, exit, k);
            start = self.b.use_var(k);
            self.lanes = 1;
        }
        let (kv, header, exit, k) = self.open_loop(start, len);
        body(self, kv)?;
        self.close_loop(kv, header, exit, k);
        Ok(())
    }

    /// Emits `body(i)` for `i` in `[0, count)`, one at a time, and goes on after it; `body`
    /// may open loops of its own.
    pub fn repeat(&mut self, count: Value, mut body: impl FnMut(&mut Self, Value) -> Result<(), EmitError>) -> Result<(), EmitError> {
        let lanes = std::mem::replace(&mut self.lanes, 1);
        let start = self.b.ins().iconst(types::I64, 0);
        let (iv, header, exit, i) = self.open_loop(start, count);
        body(self, iv)?;
        self.lanes = 1;
        self.close_loop(iv, header, exit, i);
        self.lanes = lanes;
        Ok(())
    }

    /// The `count` pointers of a pointer table.
    pub fn bases(&mut self, table: Value, count: usize) -> Vec<Value> {
        (0..count).map(|i| self.b.ins().load(types::I64, MemFlagsData::trusted(), table, (i * 8) as i32)).collect()
    }

    /// Loads the element at byte `offset` (and the next lanes in a vector body).
    pub fn load_float(&mut self, base: Value, offset: Value) -> Value {
        let address = self.b.ins().iadd(base, offset);
        // Vectors are only element-aligned: an unaligned access.
        let flags = if self.vector() { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
        let ty = self.float();
        self.b.ins().load(ty, flags, address, 0)
    }

    pub fn store_at(&mut self, value: Value, base: Value, offset: Value) {
        let address = self.b.ins().iadd(base, offset);
        let flags = if self.vector() { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
        self.b.ins().store(flags, value, address, 0);
    }

    /// A value per lane, built from scalars.
    pub fn vector_of(&mut self, scalars: &[Value]) -> Value {
        if !self.vector() {
            return scalars[0];
        }
        let mut out = self.widen(scalars[0]);
        for (lane, scalar) in scalars.iter().enumerate().skip(1) {
            out = self.b.ins().insertlane(out, *scalar, lane as u8);
        }
        out
    }

    /// The scalars of a value, lane by lane.
    pub fn lanes_of(&mut self, value: Value) -> Vec<Value> {
        if !self.vector() {
            return vec![value];
        }
        (0..self.lanes).map(|lane| self.b.ins().extractlane(value, lane)).collect()
    }

    /// splitmix64 of an `i64` value (see [`crate::data::splitmix64`]).
    pub fn splitmix64(&mut self, x: Value) -> Value {
        let b = &mut *self.b;
        let golden = b.ins().iconst(types::I64, 0x9E37_79B9_7F4A_7C15_u64 as i64);
        let mut x = b.ins().iadd(x, golden);
        for (shift, factor) in [(30, 0xBF58_476D_1CE4_E5B9_u64), (27, 0x94D0_49BB_1331_11EB_u64)] {
            let shifted = b.ins().ushr_imm_s(x, shift);
            let mixed = b.ins().bxor(x, shifted);
            let factor = b.ins().iconst(types::I64, factor as i64);
            x = b.ins().imul(mixed, factor);
        }
        let shifted = b.ins().ushr_imm_s(x, 31);
        b.ins().bxor(x, shifted)
    }

    /// An `i32` constant of the current width.
    fn int_constant(&mut self, value: u32) -> Value {
        let scalar = self.b.ins().iconst(types::I32, i64::from(value as i32));
        if self.vector() { self.b.ins().splat(types::I32.by(u32::from(self.lanes)).expect("i32 lanes"), scalar) } else { scalar }
    }

    /// [`crate::data::lowbias32`] of an `i32` value or of `i32` lanes.
    pub fn lowbias32(&mut self, x: Value) -> Value {
        let mut x = x;
        for (shift, factor) in [(16, Some(0x7feb_352d_u32)), (15, Some(0x846c_a68b_u32)), (16, None)] {
            let shifted = self.b.ins().ushr_imm_s(x, shift);
            x = self.b.ins().bxor(x, shifted);
            if let Some(factor) = factor {
                let factor = self.int_constant(factor);
                x = self.b.ins().imul(x, factor);
            }
        }
        x
    }

    /// A uniform draw in [0, 1) from 32 random bits (an `i32` value or lanes), exactly as
    /// [`Real::unit`].
    pub fn unit<F: Real>(&mut self, bits: Value) -> Value {
        let ty = self.float();
        let value = if F::BYTES == 4 {
            // 24 bits: a non-negative i32, converted exactly.
            let top = self.b.ins().ushr_imm_s(bits, i64::from(F::UNIT_SHIFT));
            self.b.ins().fcvt_from_sint(ty, top)
        } else {
            let wide = self.b.ins().uextend(types::I64, bits);
            self.b.ins().fcvt_from_sint(ty, wide)
        };
        let scale = self.constant(1.0 / (1u64 << (32 - F::UNIT_SHIFT)) as f64);
        self.b.ins().fmul(value, scale)
    }

    /// The element index of each lane from the loop counter `k`, as `i32` lanes.
    pub fn lane_indices(&mut self, k: Value) -> Value {
        let k = self.b.ins().ireduce(types::I32, k);
        if !self.vector() {
            return k;
        }
        let ty = types::I32.by(u32::from(self.lanes)).expect("i32 lanes");
        let offsets: Vec<u8> = (0..u32::from(self.lanes)).flat_map(u32::to_le_bytes).collect();
        let constant = self.b.func.dfg.constants.insert(offsets.into());
        let offsets = self.b.ins().vconst(ty, constant);
        let base = self.b.ins().splat(ty, k);
        self.b.ins().iadd(base, offsets)
    }
}
