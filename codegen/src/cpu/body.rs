//! One kernel element (or four `f32` lanes) at a loop index: strided loads, the body's
//! instructions, fused multiply-adds, stores and the vector loop, reduction combining and
//! dtype conversions.

use super::*;

/// Lanes of the vector loop: Cranelift lowers 128-bit vectors on x86-64, so four `f32`.
pub(super) const LANES: u8 = 4;

/// True if a kernel can run its innermost loop four `f32` lanes at a time: every value is
/// `f32` (but comparisons of `f32`s that only serve as `select` conditions), every op has a
/// vector form (transcendentals use the inline approximations), and every input is
/// contiguous or broadcast along the innermost axis. Reductions vectorize both along the
/// innermost axis (accumulators) and across it (the output row is read and written as
/// vectors).
pub(super) fn vectorizable(k: &Kernel) -> bool {
    let Some(&inner) = k.space.last() else { return false };
    let mask_only = |i: usize| {
        i + 1 < k.body.len()
            && k.body.iter().all(|(inst, _)| match inst {
                Inst::Select(_, x, y) => *x != i && *y != i,
                // A comparison cast to f32 becomes a blend of 1.0 and 0.0.
                Inst::Cast(_) => true,
                Inst::Unary(_, x) => *x != i,
                Inst::Binary(_, x, y) | Inst::Compare(_, x, y) => *x != i && *y != i,
                Inst::Load(_) | Inst::Const(_) => true,
            })
    };
    let out_inner = k.out_strides().last().copied();
    // Elementwise kernels may store with any innermost stride (lane by lane); reductions read
    // and write their output row as vectors.
    let out_ok = if k.reduce.is_some() { matches!(out_inner, Some(0 | 1)) } else { out_inner.is_some() };
    inner >= LANES as usize
        && k.out.dtype == DType::F32
        && k.side_outputs.iter().all(|o| o.dtype == DType::F32)
        && out_ok
        && k.inputs.iter().all(|i| i.dtype == DType::F32)
        && k.body.iter().enumerate().all(|(n, (inst, dt))| match inst {
            Inst::Compare(_, x, _) => k.body[*x].1 == DType::F32 && mask_only(n),
            _ if *dt != DType::F32 => false,
            Inst::Load(_) | Inst::Const(_) => true,
            Inst::Unary(u, _) => matches!(
                u,
                UnaryOp::Neg
                    | UnaryOp::Abs
                    | UnaryOp::Sqrt
                    | UnaryOp::Recip
                    | UnaryOp::Exp
                    | UnaryOp::Tanh
                    | UnaryOp::Log
                    | UnaryOp::Sin
                    | UnaryOp::Cos
            ),
            Inst::Binary(op, _, _) => !matches!(op, BinaryOp::Pow),
            Inst::Select(c, _, _) => matches!(k.body[*c].0, Inst::Compare(..)),
            Inst::Cast(x) => matches!(k.body[*x].0, Inst::Compare(..)),
        })
}

/// Emits one kernel element (or `lanes` adjacent elements) at a loop index.
pub(super) struct Emitter<'a> {
    pub(super) kernel: &'a Kernel,
    pub(super) refs: &'a HashMap<(&'static str, DType), cranelift_codegen::ir::FuncRef>,
    pub(super) bases: &'a [Value],
    pub(super) out_ptr: Value,
    /// The buffers of the kernel's side outputs, in order.
    pub(super) side_ptrs: &'a [Value],
    /// Use the inline `exp`/`tanh` approximations (in vectorized kernels, so every lane and
    /// the scalar tail compute the same function).
    pub(super) inline_math: bool,
    /// Evaluate the approximations' polynomials with fused multiply-adds.
    pub(super) fma: bool,
    /// Float constants made once in the entry block, by (bits, dtype, lanes): Cranelift does
    /// not hoist loop invariants, so rematerializing them in the loop would cost every trip.
    pub(super) consts: HashMap<(u64, DType, u8), Value>,
}

/// `p < q ? then : other`, lane by lane (a comparison with NaN is false).
pub(super) fn select_lt(b: &mut FunctionBuilder, p: Value, q: Value, then: Value, other: Value, lanes: u8) -> Value {
    let m = b.ins().fcmp(FloatCC::LessThan, p, q);
    blend(b, m, then, other, lanes)
}

/// `cond ? then : other` for a comparison result `cond`: a `select` on scalars, a bitwise
/// blend under the lane mask on vectors (the mask reinterpreted as `then`'s type).
pub(super) fn blend(b: &mut FunctionBuilder, cond: Value, then: Value, other: Value, lanes: u8) -> Value {
    if lanes > 1 {
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let ty = b.func.dfg.value_type(then);
        let m = b.ins().bitcast(ty, flags, cond);
        b.ins().bitselect(m, then, other)
    } else {
        b.ins().select(cond, then, other)
    }
}

/// `max(x, lo)` that keeps NaN, as `x < lo ? lo : x`: the form x86 lowers to one `maxps`
/// (Cranelift's IEEE `fmax` is a longer NaN-propagating sequence).
pub(super) fn raise_to(b: &mut FunctionBuilder, x: Value, lo: Value, lanes: u8) -> Value {
    select_lt(b, x, lo, lo, x, lanes)
}

/// `min(x, hi)` that keeps NaN, as `hi < x ? hi : x`: one `minps` on x86.
pub(super) fn lower_to(b: &mut FunctionBuilder, x: Value, hi: Value, lanes: u8) -> Value {
    select_lt(b, hi, x, hi, x, lanes)
}

/// Creates, in the current (entry) block, every float constant `kernel` will use.
pub(super) fn hoist_constants(
    b: &mut FunctionBuilder,
    kernel: &Kernel,
    inline_math: bool,
    vector: bool,
) -> HashMap<(u64, DType, u8), Value> {
    let mut want: Vec<(f64, DType)> = kernel
        .body
        .iter()
        .filter_map(|(inst, dt)| match inst {
            Inst::Const(v) if dt.is_float() => Some((*v, *dt)),
            Inst::Unary(UnaryOp::Recip, _) => Some((1.0, *dt)),
            _ => None,
        })
        .collect();
    if inline_math {
        want.extend(MATH_CONSTS.iter().map(|v| (*v, DType::F32)));
    }
    let mut out = HashMap::new();
    if inline_math {
        // The integer bias of `2^n` in `exp`.
        let s = b.ins().iconst(types::I32, EXP_BIAS as i64);
        out.insert((EXP_BIAS.to_bits(), DType::I32, 1), s);
        if vector {
            let v = b.ins().splat(types::I32X4, s);
            out.insert((EXP_BIAS.to_bits(), DType::I32, LANES), v);
        }
    }
    for (v, dt) in want {
        let lanes_list: &[u8] = if vector && dt == DType::F32 { &[1, LANES] } else { &[1] };
        for &lanes in lanes_list {
            out.entry((v.to_bits(), dt, lanes)).or_insert_with(|| {
                let s = if dt == DType::F32 { b.ins().f32const(v as f32) } else { b.ins().f64const(v) };
                if lanes > 1 { b.ins().splat(types::F32X4, s) } else { s }
            });
        }
    }
    out
}

impl Emitter<'_> {
    /// `Σ index[d] · strides[d] · size`, in bytes.
    pub(super) fn offset(b: &mut FunctionBuilder, index: &[Value], strides: &[i64], size: i64) -> Value {
        let mut acc = b.ins().iconst(types::I64, 0);
        for (d, &s) in strides.iter().enumerate() {
            if s != 0 {
                let t = b.ins().imul_imm_s(index[d], s * size);
                acc = b.ins().iadd(acc, t);
            }
        }
        acc
    }

    pub(super) fn float_const(&self, b: &mut FunctionBuilder, v: f64, dt: DType, lanes: u8) -> Value {
        if let Some(c) = self.consts.get(&(v.to_bits(), dt, lanes)) {
            return *c;
        }
        let s = if dt == DType::F32 { b.ins().f32const(v as f32) } else { b.ins().f64const(v) };
        if lanes > 1 { b.ins().splat(types::F32X4, s) } else { s }
    }

    /// Computes the body at `index` (or `lanes` adjacent elements) and returns the result's
    /// value. Each side output is stored as soon as its value is computed, so it does not stay
    /// live (in a register, or spilled) to the end of the body.
    pub(super) fn compute(&self, b: &mut FunctionBuilder, index: &[Value], lanes: u8) -> Value {
        let k = self.kernel;
        // Vector accesses are not 16-byte aligned in general.
        let vflags = MemFlagsData::new().with_notrap();
        let mut vals: Vec<Value> = Vec::with_capacity(k.body.len());
        let contract = k.fma_contractions(self.fma);
        for (inst, dt) in &k.body {
            let ty = cl_type(*dt);
            let arg_dt = |i: usize| k.body[i].1;
            let v = match inst {
                Inst::Load(i) => {
                    let input = &k.inputs[*i];
                    let off = Self::offset(b, index, &input.strides, input.dtype.size_bytes() as i64);
                    let addr = b.ins().iadd(self.bases[*i], off);
                    match (lanes, input.strides.last().copied()) {
                        (1, _) => b.ins().load(ty, MemFlagsData::trusted(), addr, 0),
                        (_, Some(0)) => {
                            let s = b.ins().load(ty, MemFlagsData::trusted(), addr, 0);
                            b.ins().splat(types::F32X4, s)
                        }
                        (_, Some(1)) => b.ins().load(types::F32X4, vflags, addr, 0),
                        (_, Some(2)) => load_every_other(b, addr),
                        // A strided innermost axis: the lanes one by one.
                        (_, stride) => {
                            let step = stride.unwrap_or(1) * input.dtype.size_bytes() as i64;
                            let first = b.ins().load(ty, MemFlagsData::trusted(), addr, 0);
                            let mut v = b.ins().splat(types::F32X4, first);
                            for lane in 1..lanes {
                                let x =
                                    b.ins().load(ty, MemFlagsData::trusted(), addr, (step * i64::from(lane)) as i32);
                                v = b.ins().insertlane(v, x, lane);
                            }
                            v
                        }
                    }
                }
                Inst::Const(c) => match dt {
                    DType::F32 | DType::F64 => self.float_const(b, *c, *dt, lanes),
                    DType::I32 | DType::I64 => b.ins().iconst(ty, dt.int_literal(*c)),
                    DType::Bool => b.ins().iconst(types::I8, dt.int_literal(*c)),
                },
                Inst::Unary(u, x) => {
                    let x = vals[*x];
                    match (u, dt.is_float()) {
                        (UnaryOp::Neg, true) => b.ins().fneg(x),
                        (UnaryOp::Neg, false) => b.ins().ineg(x),
                        (UnaryOp::Abs, true) => b.ins().fabs(x),
                        (UnaryOp::Abs, false) => b.ins().iabs(x),
                        (UnaryOp::Sqrt, _) => b.ins().sqrt(x),
                        (UnaryOp::Recip, _) => {
                            let one = self.float_const(b, 1.0, *dt, lanes);
                            b.ins().fdiv(one, x)
                        }
                        (UnaryOp::Exp, _) if self.inline_math => self.exp_f32(b, x, lanes),
                        (UnaryOp::Tanh, _) if self.inline_math => self.tanh_f32(b, x, lanes),
                        (UnaryOp::Log, _) if self.inline_math => self.log_f32(b, x, lanes),
                        (UnaryOp::Sin, _) if self.inline_math => self.trig_f32(b, x, lanes, Trig::Sin),
                        (UnaryOp::Cos, _) if self.inline_math => self.trig_f32(b, x, lanes, Trig::Cos),
                        (UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tanh, _) => {
                            // `define` imported every function the body's instructions call.
                            let name = u.libm().expect("these ops are math library functions");
                            let call = b.ins().call(self.refs[&(name, *dt)], &[x]);
                            b.inst_results(call)[0]
                        }
                    }
                }
                // `p·q + r` with the product used nowhere else: one fused multiply-add.
                Inst::Binary(BinaryOp::Add, x, y) if contract[*x].is_some() || contract[*y].is_some() => {
                    let ((p, q), r) = match contract[*x] {
                        Some(pq) => (pq, *y),
                        None => (contract[*y].unwrap_or_default(), *x),
                    };
                    b.ins().fma(vals[p], vals[q], vals[r])
                }
                Inst::Binary(op, x, y) => {
                    let (x, y) = (vals[*x], vals[*y]);
                    match (op, dt.is_float()) {
                        (BinaryOp::Add, true) => b.ins().fadd(x, y),
                        (BinaryOp::Add, false) => b.ins().iadd(x, y),
                        (BinaryOp::Sub, true) => b.ins().fsub(x, y),
                        (BinaryOp::Sub, false) => b.ins().isub(x, y),
                        (BinaryOp::Mul, true) => b.ins().fmul(x, y),
                        (BinaryOp::Mul, false) => b.ins().imul(x, y),
                        (BinaryOp::Div, _) => b.ins().fdiv(x, y),
                        (BinaryOp::Max, true) => b.ins().fmax(x, y),
                        (BinaryOp::Max, false) => b.ins().smax(x, y),
                        (BinaryOp::Min, true) => b.ins().fmin(x, y),
                        (BinaryOp::Min, false) => b.ins().smin(x, y),
                        (BinaryOp::Pow, _) => {
                            let call = b.ins().call(self.refs[&("pow", *dt)], &[x, y]);
                            b.inst_results(call)[0]
                        }
                    }
                }
                Inst::Compare(c, x, y) => {
                    let operand = arg_dt(*x);
                    let (x, y) = (vals[*x], vals[*y]);
                    match (c, operand.is_float()) {
                        (CmpOp::Lt, true) => b.ins().fcmp(FloatCC::LessThan, x, y),
                        (CmpOp::Eq, true) => b.ins().fcmp(FloatCC::Equal, x, y),
                        (CmpOp::Lt, false) => b.ins().icmp(IntCC::SignedLessThan, x, y),
                        (CmpOp::Eq, false) => b.ins().icmp(IntCC::Equal, x, y),
                    }
                }
                // In vector kernels the condition is a float comparison's lane mask.
                Inst::Select(c, x, y) => blend(b, vals[*c], vals[*x], vals[*y], lanes),
                Inst::Cast(x) if lanes > 1 => {
                    // A comparison's lane mask as 1.0 / 0.0 (the only vector cast).
                    let (one, zero) =
                        (self.float_const(b, 1.0, DType::F32, lanes), self.float_const(b, 0.0, DType::F32, lanes));
                    blend(b, vals[*x], one, zero, lanes)
                }
                Inst::Cast(x) => cast(b, vals[*x], arg_dt(*x), *dt),
            };
            vals.push(v);
            let at = vals.len() - 1;
            for (side, ptr) in self.kernel.side_outputs.iter().zip(self.side_ptrs) {
                if side.value == at {
                    self.store_side(b, *ptr, side, index, v, lanes);
                }
            }
        }
        // The lowering never makes an empty body: every kernel loads or computes its value.
        *vals.last().expect("kernel bodies are never empty")
    }

    /// Stores `value` (`lanes` adjacent elements) of side output `side` into its buffer at
    /// `ptr`, at its position for `index`.
    fn store_side(
        &self,
        b: &mut FunctionBuilder,
        ptr: Value,
        side: &crate::kernel::SideOutput,
        index: &[Value],
        value: Value,
        lanes: u8,
    ) {
        let strides = &side.strides;
        let size = side.dtype.size_bytes() as i64;
        let off = Self::offset(b, index, strides, size);
        let addr = b.ins().iadd(ptr, off);
        let inner = strides.last().copied().unwrap_or(1);
        if lanes > 1 && inner != 1 {
            // A strided innermost axis: the lanes one by one.
            for lane in 0..lanes {
                let x = b.ins().extractlane(value, lane);
                b.ins().store(MemFlagsData::trusted(), x, addr, (inner * size * i64::from(lane)) as i32);
            }
        } else {
            let flags = if lanes > 1 { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
            b.ins().store(flags, value, addr, 0);
        }
    }

    /// Stores `value` (or, for reductions, accumulates it) into the output element(s) at
    /// `index`.
    pub(super) fn store(&self, b: &mut FunctionBuilder, index: &[Value], value: Value, lanes: u8) {
        let k = self.kernel;
        let off = Self::offset(b, index, &k.out_strides(), k.out.dtype.size_bytes() as i64);
        let addr = b.ins().iadd(self.out_ptr, off);
        let flags = if lanes > 1 { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
        let inner = k.out_strides().last().copied().unwrap_or(1);
        if lanes > 1 && k.reduce.is_none() && inner != 1 {
            // A strided innermost axis: the lanes one by one.
            let step = inner * k.out.dtype.size_bytes() as i64;
            for lane in 0..lanes {
                let x = b.ins().extractlane(value, lane);
                b.ins().store(MemFlagsData::trusted(), x, addr, (step * i64::from(lane)) as i32);
            }
            return;
        }
        let value = match &k.reduce {
            None => value,
            Some((op, _)) => {
                // Accumulate into the output element(s) this element reduces to.
                let ty = if lanes > 1 { types::F32X4 } else { cl_type(k.out.dtype) };
                let acc = b.ins().load(ty, flags, addr, 0);
                combine(b, *op, k.out.dtype, acc, value)
            }
        };
        b.ins().store(flags, value, addr, 0);
    }

    /// The innermost loop, four lanes at a time, entered from the current block with the
    /// innermost index set; leaves to `tail` (the scalar loop) with the index at the first
    /// element it did not cover. A reduction along the innermost axis keeps two vector
    /// accumulators (two independent add chains) over a 2× unrolled loop, then a one-vector
    /// loop, and adds their lanes into the output element once per row; other kernels store
    /// each vector (a reduction over outer axes adds it into the output vector in place).
    pub(super) fn vector_loop(
        &self,
        b: &mut FunctionBuilder,
        idx: &[Variable],
        end: Value,
        tail: cranelift_codegen::ir::Block,
    ) {
        let k = self.kernel;
        let last = idx.len() - 1;
        let along = k.reduce.as_ref().filter(|_| k.out_strides()[last] == 0).map(|(op, _)| *op);
        let index = |b: &mut FunctionBuilder, extra: i64| -> Vec<Value> {
            let mut v: Vec<Value> = idx.iter().map(|x| b.use_var(*x)).collect();
            if extra != 0 {
                v[last] = b.ins().iadd_imm_s(v[last], extra);
            }
            v
        };
        let step = |b: &mut FunctionBuilder, by: i64| {
            let i = b.use_var(idx[last]);
            let next = b.ins().iadd_imm_s(i, by);
            b.def_var(idx[last], next);
        };
        let lanes = i64::from(LANES);
        let (header, body, exit) = (b.create_block(), b.create_block(), b.create_block());
        let accs = along.map(|op| {
            let identity = match op {
                ReduceOp::Sum => b.ins().f32const(0.0),
                ReduceOp::Max => b.ins().f32const(f32::NEG_INFINITY),
            };
            let identity = b.ins().splat(types::F32X4, identity);
            let accs = [b.declare_var(types::F32X4), b.declare_var(types::F32X4)];
            for a in accs {
                b.def_var(a, identity);
            }
            // Two vectors per trip while eight elements remain.
            let (h2, b2) = (b.create_block(), b.create_block());
            b.ins().jump(h2, &[]);
            b.switch_to_block(h2);
            let i = b.use_var(idx[last]);
            let limit = b.ins().iadd_imm_s(end, -2 * lanes);
            let more = b.ins().icmp(IntCC::SignedLessThanOrEqual, i, limit);
            b.ins().brif(more, b2, &[], header, &[]);
            b.switch_to_block(b2);
            for (u, acc) in accs.iter().enumerate() {
                let at = index(b, u as i64 * lanes);
                let v = self.compute(b, &at, LANES);
                let a = b.use_var(*acc);
                let a = combine(b, op, DType::F32, a, v);
                b.def_var(*acc, a);
            }
            step(b, 2 * lanes);
            b.ins().jump(h2, &[]);
            (op, accs)
        });
        if accs.is_none() {
            b.ins().jump(header, &[]);
        }
        b.switch_to_block(header);
        let i = b.use_var(idx[last]);
        let limit = b.ins().iadd_imm_s(end, -lanes);
        let more = b.ins().icmp(IntCC::SignedLessThanOrEqual, i, limit);
        b.ins().brif(more, body, &[], exit, &[]);
        b.switch_to_block(body);
        let at = index(b, 0);
        let v = self.compute(b, &at, LANES);
        match accs {
            Some((op, [acc, _])) => {
                let a = b.use_var(acc);
                let a = combine(b, op, DType::F32, a, v);
                b.def_var(acc, a);
            }
            None => self.store(b, &at, v, LANES),
        }
        step(b, lanes);
        b.ins().jump(header, &[]);
        b.switch_to_block(exit);
        if let Some((op, [a0, a1])) = accs {
            let (a0, a1) = (b.use_var(a0), b.use_var(a1));
            let v = combine(b, op, DType::F32, a0, a1);
            let l: Vec<Value> = (0..LANES).map(|l| b.ins().extractlane(v, l)).collect();
            let lo = combine(b, op, DType::F32, l[0], l[1]);
            let hi = combine(b, op, DType::F32, l[2], l[3]);
            let row = combine(b, op, DType::F32, lo, hi);
            let at = index(b, 0);
            self.store(b, &at, row, 1);
        }
        b.ins().jump(tail, &[]);
    }
}

/// Four `f32` lanes at stride 2 from `addr` (elements 0, 2, 4, 6: a 2-wide pooling window's
/// taps, read along the window's row): two overlapping vector loads of elements 0..4 and
/// 3..7, which never read past the last element wanted, and one `shufps` taking lanes 0 and
/// 2 of the first and 1 and 3 of the second. Four scalar loads and three lane inserts
/// otherwise.
fn load_every_other(b: &mut FunctionBuilder, addr: Value) -> Value {
    let vflags = MemFlagsData::new().with_notrap();
    let bytes = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
    let lo = b.ins().load(types::F32X4, vflags, addr, 0);
    let hi = b.ins().load(types::F32X4, vflags, addr, 12);
    let (lo, hi) = (b.ins().bitcast(types::I8X16, bytes, lo), b.ins().bitcast(types::I8X16, bytes, hi));
    // Bytes of lanes 0 and 2 of `lo`, then of lanes 1 and 3 of `hi` (bytes 16.. of the pair).
    let mask: [u8; 16] = [0, 1, 2, 3, 8, 9, 10, 11, 20, 21, 22, 23, 28, 29, 30, 31];
    let mask = b.func.dfg.immediates.push(cranelift_codegen::ir::ConstantData::from(&mask[..]));
    let evens = b.ins().shuffle(lo, hi, mask);
    b.ins().bitcast(types::F32X4, bytes, evens)
}

/// `acc ⊕ value` for a reduction's combining op (scalar or vector).
pub(super) fn combine(b: &mut FunctionBuilder, op: ReduceOp, dt: DType, acc: Value, value: Value) -> Value {
    match (op, dt.is_float()) {
        (ReduceOp::Sum, true) => b.ins().fadd(acc, value),
        (ReduceOp::Sum, false) => b.ins().iadd(acc, value),
        (ReduceOp::Max, true) => b.ins().fmax(acc, value),
        (ReduceOp::Max, false) => b.ins().smax(acc, value),
    }
}

/// Converts `x` of dtype `from` to `to`, with the interpreter's rules: floats round to
/// nearest, float to integer truncates and saturates (NaN gives 0), integers wrap, anything
/// to bool is `!= 0`.
pub(super) fn cast(b: &mut FunctionBuilder, x: Value, from: DType, to: DType) -> Value {
    let ty = cl_type(to);
    match (from, to) {
        _ if from == to => x,
        (DType::F32, DType::F64) => b.ins().fpromote(ty, x),
        (DType::F64, DType::F32) => b.ins().fdemote(ty, x),
        (DType::I32 | DType::I64, DType::F32 | DType::F64) => b.ins().fcvt_from_sint(ty, x),
        (DType::Bool, DType::F32 | DType::F64) => {
            let wide = b.ins().uextend(types::I32, x);
            b.ins().fcvt_from_sint(ty, wide)
        }
        (DType::F32 | DType::F64, DType::I32 | DType::I64) => b.ins().fcvt_to_sint_sat(ty, x),
        (DType::I32, DType::I64) => b.ins().sextend(ty, x),
        (DType::I64, DType::I32) => b.ins().ireduce(ty, x),
        (DType::Bool, DType::I32 | DType::I64) => b.ins().uextend(ty, x),
        (DType::F32, DType::Bool) => {
            let z = b.ins().f32const(0.0);
            b.ins().fcmp(FloatCC::NotEqual, x, z)
        }
        (DType::F64, DType::Bool) => {
            let z = b.ins().f64const(0.0);
            b.ins().fcmp(FloatCC::NotEqual, x, z)
        }
        (DType::I32 | DType::I64, DType::Bool) => b.ins().icmp_imm_s(IntCC::NotEqual, x, 0),
        // Unreachable: every pair with equal dtypes is handled by the first arm.
        (DType::F32, DType::F32)
        | (DType::F64, DType::F64)
        | (DType::I32, DType::I32)
        | (DType::I64, DType::I64)
        | (DType::Bool, DType::Bool) => x,
    }
}
