//! The CPU backend: kernel loop IR lowered to Cranelift and JIT-compiled for the host.
//!
//! Each kernel becomes `extern "C" fn(inputs: *const *const u8, out: *mut u8)`: a loop nest
//! over the output's (static) index space that loads every input at its strided offset,
//! evaluates the body in scalar registers, and stores the element. ISA flags come from the
//! host (`cranelift_native`), so `fma` and friends use the machine's instructions.
//! Transcendentals call the runtime's scalar functions for now; inline vectorized
//! approximations replace them with the vectorized emitter.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{AbiParam, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use kiln_ir::{BinaryOp, CmpOp, DType, UnaryOp};
use thiserror::Error;

use crate::kernel::{Inst, Kernel, contiguous_strides};

/// Errors from code generation.
#[derive(Debug, Error)]
pub enum CodegenError {
    /// The host ISA could not be configured.
    #[error("cannot configure the host ISA: {0}")]
    Isa(String),
    /// Cranelift rejected a function: a bug in the emitter.
    #[error("internal codegen error in {kernel}: {message}")]
    Module {
        /// The kernel.
        kernel: String,
        /// Cranelift's message.
        message: String,
    },
}

/// A compiled kernel: its entry point and the Cranelift IR it was built from.
pub struct CompiledKernel {
    entry: unsafe extern "C" fn(*const *const u8, *mut u8),
    /// The kernel.
    pub kernel: Kernel,
    /// The Cranelift IR text, for `--stage clif`.
    pub clif: String,
}

impl CompiledKernel {
    /// Runs the kernel.
    ///
    /// # Safety
    /// `inputs` must hold one pointer per kernel input to a row-major buffer that covers every
    /// offset the input's strides reach over the output's index space, of the input's dtype;
    /// `out` must point to a writable row-major buffer of the output's type. The runtime
    /// checks this before every call.
    pub unsafe fn call(&self, inputs: &[*const u8], out: *mut u8) {
        debug_assert_eq!(inputs.len(), self.kernel.inputs.len());
        // SAFETY: the caller guarantees the buffers (see above); `entry` was produced by
        // Cranelift for exactly this signature and lives as long as the owning `CpuJit`.
        unsafe { (self.entry)(inputs.as_ptr(), out) }
    }
}

/// The scalar transcendental functions kernels call.
mod libm {
    macro_rules! unary {
        ($($name:ident: $t:ty => $f:ident),*) => {$(
            pub extern "C" fn $name(x: $t) -> $t { x.$f() }
        )*};
    }
    unary!(
        exp_f32: f32 => exp, exp_f64: f64 => exp, log_f32: f32 => ln, log_f64: f64 => ln,
        sin_f32: f32 => sin, sin_f64: f64 => sin, cos_f32: f32 => cos, cos_f64: f64 => cos,
        tanh_f32: f32 => tanh, tanh_f64: f64 => tanh
    );
    pub extern "C" fn pow_f32(x: f32, y: f32) -> f32 {
        x.powf(y)
    }
    pub extern "C" fn pow_f64(x: f64, y: f64) -> f64 {
        x.powf(y)
    }
}

/// The JIT: owns the compiled code, so kernels live as long as it does.
pub struct CpuJit {
    module: JITModule,
    ctx: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    imports: HashMap<&'static str, FuncId>,
    count: usize,
}

fn cl_type(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

impl CpuJit {
    /// A JIT for the host machine.
    pub fn new() -> Result<Self, CodegenError> {
        let mut flags = settings::builder();
        let set =
            |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| CodegenError::Isa(e.to_string()));
        set(&mut flags, "opt_level", "speed")?;
        set(&mut flags, "use_colocated_libcalls", "false")?;
        set(&mut flags, "is_pic", "false")?;
        let isa = cranelift_native::builder()
            .map_err(|e| CodegenError::Isa(e.to_string()))?
            .finish(settings::Flags::new(flags))
            .map_err(|e| CodegenError::Isa(e.to_string()))?;
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        let symbols: [(&str, *const u8); 12] = [
            ("kiln_exp_f32", libm::exp_f32 as *const u8),
            ("kiln_exp_f64", libm::exp_f64 as *const u8),
            ("kiln_log_f32", libm::log_f32 as *const u8),
            ("kiln_log_f64", libm::log_f64 as *const u8),
            ("kiln_sin_f32", libm::sin_f32 as *const u8),
            ("kiln_sin_f64", libm::sin_f64 as *const u8),
            ("kiln_cos_f32", libm::cos_f32 as *const u8),
            ("kiln_cos_f64", libm::cos_f64 as *const u8),
            ("kiln_tanh_f32", libm::tanh_f32 as *const u8),
            ("kiln_tanh_f64", libm::tanh_f64 as *const u8),
            ("kiln_pow_f32", libm::pow_f32 as *const u8),
            ("kiln_pow_f64", libm::pow_f64 as *const u8),
        ];
        for (name, ptr) in symbols {
            jb.symbol(name, ptr);
        }
        let module = JITModule::new(jb);
        Ok(CpuJit {
            ctx: module.make_context(),
            module,
            fctx: FunctionBuilderContext::new(),
            imports: HashMap::new(),
            count: 0,
        })
    }

    fn import(&mut self, name: &'static str, ty: Type, arity: usize) -> Result<FuncId, CodegenError> {
        if let Some(id) = self.imports.get(name) {
            return Ok(*id);
        }
        let mut sig = self.module.make_signature();
        for _ in 0..arity {
            sig.params.push(AbiParam::new(ty));
        }
        sig.returns.push(AbiParam::new(ty));
        let id = self
            .module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| CodegenError::Module { kernel: name.into(), message: e.to_string() })?;
        self.imports.insert(name, id);
        Ok(id)
    }

    /// Compiles `kernel` to native code.
    pub fn compile(&mut self, kernel: &Kernel) -> Result<CompiledKernel, CodegenError> {
        let err = |m: String| CodegenError::Module { kernel: kernel.name.clone(), message: m };
        // The libm functions a body needs, declared before building.
        let mut calls: HashMap<(&'static str, DType), FuncId> = HashMap::new();
        for (inst, dt) in &kernel.body {
            let name = match inst {
                Inst::Unary(UnaryOp::Exp, _) => "exp",
                Inst::Unary(UnaryOp::Log, _) => "log",
                Inst::Unary(UnaryOp::Sin, _) => "sin",
                Inst::Unary(UnaryOp::Cos, _) => "cos",
                Inst::Unary(UnaryOp::Tanh, _) => "tanh",
                Inst::Binary(BinaryOp::Pow, _, _) => "pow",
                _ => continue,
            };
            let sym: &'static str = match (name, dt) {
                ("exp", DType::F32) => "kiln_exp_f32",
                ("exp", _) => "kiln_exp_f64",
                ("log", DType::F32) => "kiln_log_f32",
                ("log", _) => "kiln_log_f64",
                ("sin", DType::F32) => "kiln_sin_f32",
                ("sin", _) => "kiln_sin_f64",
                ("cos", DType::F32) => "kiln_cos_f32",
                ("cos", _) => "kiln_cos_f64",
                ("tanh", DType::F32) => "kiln_tanh_f32",
                ("tanh", _) => "kiln_tanh_f64",
                ("pow", DType::F32) => "kiln_pow_f32",
                _ => "kiln_pow_f64",
            };
            let id = self.import(sym, cl_type(*dt), if name == "pow" { 2 } else { 1 })?;
            calls.insert((name, *dt), id);
        }

        let ptr = self.module.target_config().pointer_type();
        self.module.clear_context(&mut self.ctx);
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        let mut refs = HashMap::new();
        for (k, id) in &calls {
            refs.insert(*k, self.module.declare_func_in_func(*id, &mut self.ctx.func));
        }
        let flags = MemFlagsData::trusted();
        let dims = kernel.out.dims().to_vec();
        let rank = dims.len();
        let out_strides = contiguous_strides(&dims);
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let (inputs_ptr, out_ptr) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            let bases: Vec<Value> = (0..kernel.inputs.len())
                .map(|k| b.ins().load(ptr, flags, inputs_ptr, (k * ptr.bytes() as usize) as i32))
                .collect();
            let idx: Vec<Variable> = (0..rank).map(|_| b.declare_var(types::I64)).collect();
            let headers: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
            let bodies: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
            let exits: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
            let done = b.create_block();
            if rank > 0 {
                let zero = b.ins().iconst(types::I64, 0);
                b.def_var(idx[0], zero);
                b.ins().jump(headers[0], &[]);
                for d in 0..rank {
                    b.switch_to_block(headers[d]);
                    let i = b.use_var(idx[d]);
                    let more = b.ins().icmp_imm_s(IntCC::SignedLessThan, i, dims[d] as i64);
                    b.ins().brif(more, bodies[d], &[], exits[d], &[]);
                    if d + 1 < rank {
                        b.switch_to_block(bodies[d]);
                        let zero = b.ins().iconst(types::I64, 0);
                        b.def_var(idx[d + 1], zero);
                        b.ins().jump(headers[d + 1], &[]);
                    }
                    b.switch_to_block(exits[d]);
                    if d == 0 {
                        b.ins().jump(done, &[]);
                    } else {
                        let i = b.use_var(idx[d - 1]);
                        let next = b.ins().iadd_imm_s(i, 1);
                        b.def_var(idx[d - 1], next);
                        b.ins().jump(headers[d - 1], &[]);
                    }
                }
                b.switch_to_block(bodies[rank - 1]);
            }
            // One element: offsets from the indices, then the body.
            let index: Vec<Value> = idx.iter().map(|v| b.use_var(*v)).collect();
            let offset = |b: &mut FunctionBuilder, strides: &[i64], size: i64| -> Value {
                let mut acc = b.ins().iconst(types::I64, 0);
                for (d, &s) in strides.iter().enumerate() {
                    if s != 0 {
                        let t = b.ins().imul_imm_s(index[d], s * size);
                        acc = b.ins().iadd(acc, t);
                    }
                }
                acc
            };
            let mut vals: Vec<Value> = Vec::with_capacity(kernel.body.len());
            for (inst, dt) in &kernel.body {
                let ty = cl_type(*dt);
                let arg_dt = |i: usize| kernel.body[i].1;
                let v = match inst {
                    Inst::Load(k) => {
                        let input = &kernel.inputs[*k];
                        let off = offset(&mut b, &input.strides, input.dtype.size_bytes() as i64);
                        let addr = b.ins().iadd(bases[*k], off);
                        b.ins().load(ty, flags, addr, 0)
                    }
                    Inst::Const(c) => match dt {
                        DType::F32 => b.ins().f32const(*c as f32),
                        DType::F64 => b.ins().f64const(*c),
                        DType::I32 | DType::I64 => b.ins().iconst(ty, *c as i64),
                        DType::Bool => b.ins().iconst(types::I8, i64::from(*c != 0.0)),
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
                                let one = if *dt == DType::F32 { b.ins().f32const(1.0) } else { b.ins().f64const(1.0) };
                                b.ins().fdiv(one, x)
                            }
                            (UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tanh, _) => {
                                let name = match u {
                                    UnaryOp::Exp => "exp",
                                    UnaryOp::Log => "log",
                                    UnaryOp::Sin => "sin",
                                    UnaryOp::Cos => "cos",
                                    _ => "tanh",
                                };
                                let call = b.ins().call(refs[&(name, *dt)], &[x]);
                                b.inst_results(call)[0]
                            }
                        }
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
                                let call = b.ins().call(refs[&("pow", *dt)], &[x, y]);
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
                    Inst::Select(c, x, y) => b.ins().select(vals[*c], vals[*x], vals[*y]),
                    Inst::Cast(x) => cast(&mut b, vals[*x], arg_dt(*x), *dt),
                };
                vals.push(v);
            }
            if let Some(&result) = vals.last() {
                let off = offset(&mut b, &out_strides, kernel.out.dtype.size_bytes() as i64);
                let addr = b.ins().iadd(out_ptr, off);
                b.ins().store(flags, result, addr, 0);
            }
            if rank > 0 {
                let i = b.use_var(idx[rank - 1]);
                let next = b.ins().iadd_imm_s(i, 1);
                b.def_var(idx[rank - 1], next);
                b.ins().jump(headers[rank - 1], &[]);
            } else {
                b.ins().jump(done, &[]);
            }
            b.switch_to_block(done);
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(self.module.target_config());
        }
        let clif = self.ctx.func.display().to_string();
        self.count += 1;
        let name = format!("kiln_kernel_{}_{}", self.count, kernel.name);
        let id = self
            .module
            .declare_function(&name, Linkage::Local, &self.ctx.func.signature)
            .map_err(|e| err(e.to_string()))?;
        self.module.define_function(id, &mut self.ctx).map_err(|e| err(format!("{e:?}")))?;
        self.module.clear_context(&mut self.ctx);
        self.module.finalize_definitions().map_err(|e| err(e.to_string()))?;
        let code = self.module.get_finalized_function(id);
        // SAFETY: `code` is the entry of the function just defined with the signature
        // (pointer, pointer) -> (), in the host's default calling convention, which is the C
        // convention for this signature; the module keeps the code alive for `self`'s life.
        let entry = unsafe { std::mem::transmute::<*const u8, unsafe extern "C" fn(*const *const u8, *mut u8)>(code) };
        Ok(CompiledKernel { entry, kernel: kernel.clone(), clif })
    }
}

/// Converts `x` of dtype `from` to `to`, with the interpreter's rules: floats round to
/// nearest, float to integer truncates and saturates (NaN gives 0), integers wrap, anything
/// to bool is `!= 0`.
fn cast(b: &mut FunctionBuilder, x: Value, from: DType, to: DType) -> Value {
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
