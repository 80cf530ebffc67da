//! The CPU backend: kernel loop IR lowered to Cranelift and JIT-compiled for the host.
//!
//! Each kernel becomes `extern "C" fn(inputs: *const *const u8, out: *mut u8, lo: i64, hi: i64)`:
//! a loop nest over the (static) iteration space, the outermost axis restricted to `lo..hi`, that loads every input at its strided offset,
//! evaluates the body in scalar registers, and stores the element. ISA flags come from the
//! host (`cranelift_native`), so `fma` and friends use the machine's instructions.
//! In vectorized `f32` kernels, `exp log tanh sin cos` are inline approximations (the same
//! code on the vector lanes and the scalar tail); elsewhere they call libm.

use std::collections::HashMap;

use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{AbiParam, BlockArg, InstBuilder, MemFlagsData, Type, Value, types};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use kiln_ir::{BinaryOp, CmpOp, DType, ReduceOp, UnaryOp};
use thiserror::Error;

use crate::kernel::{Inst, Kernel};

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
    entry: unsafe extern "C" fn(*const *const u8, *mut u8, i64, i64),
    /// The kernel.
    pub kernel: Kernel,
    /// The Cranelift IR text, for `--stage clif`.
    pub clif: String,
    /// True if the innermost loop runs four `f32` lanes at a time.
    pub vectorized: bool,
    /// The machine code as assembly text, when the JIT was asked to keep it
    /// ([`CpuJit::keep_disassembly`]), for `--stage asm`.
    pub asm: Option<String>,
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
        let outer = self.kernel.space.first().copied().unwrap_or(1) as i64;
        // SAFETY: forwarded from this function's contract; the whole outer range is valid.
        unsafe { self.call_range(inputs, out, 0, outer) }
    }

    /// Runs the kernel for outer indices `lo..hi` only (the whole space along other axes):
    /// disjoint ranges write disjoint parts of the output, so they can run on different
    /// threads. A reduction may run in ranges only where [`Kernel::splits_outer`] says so
    /// (it then initializes just its range's outputs); others must run whole.
    ///
    /// # Safety
    /// As for [`CompiledKernel::call`], and `0 <= lo <= hi <=` the outer extent.
    pub unsafe fn call_range(&self, inputs: &[*const u8], out: *mut u8, lo: i64, hi: i64) {
        debug_assert_eq!(inputs.len(), self.kernel.inputs.len());
        // SAFETY: the caller guarantees the buffers and the range (see above); `entry` was
        // produced by Cranelift for exactly this signature and lives as long as the `CpuJit`.
        unsafe { (self.entry)(inputs.as_ptr(), out, lo, hi) }
    }
}

/// The JIT: owns the compiled code, so kernels live as long as it does.
pub struct CpuJit {
    emitter: KernelEmitter<JITModule>,
    count: usize,
}

/// Emits kernels into a Cranelift module: the JIT's memory ([`CpuJit`]) or an object file
/// ([`crate::aot::ObjectKernels`]). The same code either way.
pub(crate) struct KernelEmitter<M: Module> {
    pub(crate) module: M,
    /// The target has fused multiply-add (`fma` lowers to one instruction, not a libcall).
    has_fma: bool,
    ctx: cranelift_codegen::Context,
    fctx: FunctionBuilderContext,
    imports: HashMap<&'static str, FuncId>,
    disasm: bool,
}

/// A kernel defined in a module.
pub(crate) struct Defined {
    pub(crate) id: FuncId,
    pub(crate) clif: String,
    pub(crate) asm: Option<String>,
    pub(crate) vectorized: bool,
}

/// The host's ISA with the flags kernels are compiled with (`pic` for code that goes into a
/// shared library), and whether it has FMA.
pub(crate) fn host_isa(pic: bool) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, bool), CodegenError> {
    isa_for(None, pic)
}

/// Like [`host_isa`], for the host's architecture with exactly the instruction-set extensions
/// named (Cranelift's `has_*` flags) instead of the host's own; `None` for the host's.
pub(crate) fn isa_for(
    extensions: Option<&[&str]>,
    pic: bool,
) -> Result<(cranelift_codegen::isa::OwnedTargetIsa, bool), CodegenError> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| f.set(k, v).map_err(|e| CodegenError::Isa(e.to_string()));
    set(&mut flags, "opt_level", "speed")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", if pic { "true" } else { "false" })?;
    let native = cranelift_native::builder().map_err(|e| CodegenError::Isa(e.to_string()))?;
    let builder = match extensions {
        None => native,
        Some(extensions) => {
            let mut b = cranelift_codegen::isa::lookup(native.triple().clone())
                .map_err(|e| CodegenError::Isa(e.to_string()))?;
            for flag in extensions {
                b.enable(flag).map_err(|e| CodegenError::Isa(format!("{flag}: {e}")))?;
            }
            b
        }
    };
    let isa = builder.finish(settings::Flags::new(flags)).map_err(|e| CodegenError::Isa(e.to_string()))?;
    let has_fma = isa.isa_flags().iter().any(|f| f.name == "has_fma" && f.as_bool().unwrap_or(false));
    Ok((isa, has_fma))
}

/// A scalar math function that kernels call: the C math library's function (as
/// [`UnaryOp::libm`] / [`BinaryOp::libm`] name it) at one dtype, under kiln's symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MathFn {
    /// The C math library's name: `exp`, `log`, `sin`, `cos`, `tanh`, `pow`.
    pub name: &'static str,
    /// The dtype it computes in.
    pub dtype: DType,
    /// kiln's symbol for it (`kiln_exp_f32`): the JIT binds it to Rust's function, an object
    /// file leaves it to be defined where it is linked.
    pub symbol: &'static str,
    /// Its number of arguments.
    pub arity: usize,
}

/// Every math function kernels may call, from one list: the table ([`MATH`]), the symbols
/// ([`MATH_SYMBOLS`]) and the functions the JIT binds them to.
macro_rules! math_functions {
    ($($name:literal $dtype:ident $t:ty, $symbol:literal, |$($arg:ident),+| $body:expr;)*) => {
        /// Every math function kernels may call.
        pub const MATH: [MathFn; [$($symbol),*].len()] = [$(MathFn {
            name: $name,
            dtype: DType::$dtype,
            symbol: $symbol,
            arity: [$(stringify!($arg)),+].len(),
        }),*];

        /// The symbols of [`MATH`], in its order.
        pub const MATH_SYMBOLS: [&str; [$($symbol),*].len()] = [$($symbol),*];

        /// Rust's implementations of [`MATH`], in its order (what the JIT binds).
        fn math_pointers() -> Vec<*const u8> {
            vec![$({
                extern "C" fn f($($arg: $t),+) -> $t { $body }
                f as *const u8
            }),*]
        }
    };
}

math_functions! {
    "exp" F32 f32, "kiln_exp_f32", |x| x.exp();
    "exp" F64 f64, "kiln_exp_f64", |x| x.exp();
    "log" F32 f32, "kiln_log_f32", |x| x.ln();
    "log" F64 f64, "kiln_log_f64", |x| x.ln();
    "sin" F32 f32, "kiln_sin_f32", |x| x.sin();
    "sin" F64 f64, "kiln_sin_f64", |x| x.sin();
    "cos" F32 f32, "kiln_cos_f32", |x| x.cos();
    "cos" F64 f64, "kiln_cos_f64", |x| x.cos();
    "tanh" F32 f32, "kiln_tanh_f32", |x| x.tanh();
    "tanh" F64 f64, "kiln_tanh_f64", |x| x.tanh();
    "pow" F32 f32, "kiln_pow_f32", |x, y| x.powf(y);
    "pow" F64 f64, "kiln_pow_f64", |x, y| x.powf(y);
}

/// The math function `name` at `dtype`, if kernels may call it.
pub fn math_fn(name: &str, dtype: DType) -> Option<&'static MathFn> {
    MATH.iter().find(|m| m.name == name && m.dtype == dtype)
}

/// The math library function a kernel instruction calls, if any.
fn libm_of(inst: &Inst) -> Option<&'static str> {
    match inst {
        Inst::Unary(u, _) => u.libm(),
        Inst::Binary(op, _, _) => op.libm(),
        Inst::Load(_) | Inst::Const(_) | Inst::Compare(..) | Inst::Select(..) | Inst::Cast(_) => None,
    }
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
        let (isa, has_fma) = host_isa(false)?;
        let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
        for (name, ptr) in MATH_SYMBOLS.iter().zip(math_pointers()) {
            jb.symbol(*name, ptr);
        }
        Ok(CpuJit { emitter: KernelEmitter::new(JITModule::new(jb), has_fma), count: 0 })
    }

    /// Keeps each kernel's machine code as assembly text ([`CompiledKernel::asm`]); off by
    /// default, since disassembling costs compile time.
    pub fn keep_disassembly(&mut self, keep: bool) {
        self.emitter.disasm = keep;
    }

    /// Compiles `kernel` to native code.
    pub fn compile(&mut self, kernel: &Kernel) -> Result<CompiledKernel, CodegenError> {
        let err = |m: String| CodegenError::Module { kernel: kernel.name.clone(), message: m };
        self.count += 1;
        let name = format!("kiln_kernel_{}_{}", self.count, kernel.name);
        let d = self.emitter.define(kernel, &name, Linkage::Local)?;
        let module = &mut self.emitter.module;
        module.finalize_definitions().map_err(|e| err(e.to_string()))?;
        let code = module.get_finalized_function(d.id);
        // SAFETY: `code` is the entry of the function just defined with the signature
        // (pointer, pointer, i64, i64) -> (), in the host's default calling convention, which is the C
        // convention for this signature; the module keeps the code alive for `self`'s life.
        let entry = unsafe {
            std::mem::transmute::<*const u8, unsafe extern "C" fn(*const *const u8, *mut u8, i64, i64)>(code)
        };
        Ok(CompiledKernel { entry, kernel: kernel.clone(), clif: d.clif, vectorized: d.vectorized, asm: d.asm })
    }
}

impl<M: Module> KernelEmitter<M> {
    /// An emitter into `module`, for a target with (or without) FMA.
    pub(crate) fn new(module: M, has_fma: bool) -> Self {
        KernelEmitter {
            ctx: module.make_context(),
            module,
            has_fma,
            fctx: FunctionBuilderContext::new(),
            imports: HashMap::new(),
            disasm: false,
        }
    }

    /// The math functions ([`MATH_SYMBOLS`]) the kernels defined so far call, sorted.
    pub(crate) fn imported(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.imports.keys().copied().collect();
        names.sort_unstable();
        names
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

    /// Defines `kernel` as the function `name` with `linkage`.
    pub(crate) fn define(&mut self, kernel: &Kernel, name: &str, linkage: Linkage) -> Result<Defined, CodegenError> {
        let err = |m: String| CodegenError::Module { kernel: kernel.name.clone(), message: m };
        // The libm functions a body calls, declared before building. A vectorized `f32` kernel
        // computes `exp`, `log` and `tanh` inline (lanes and tail alike), so it calls none of
        // them; `sin` and `cos` keep libm for large arguments.
        let vector = vectorizable(kernel);
        let mut calls: HashMap<(&'static str, DType), FuncId> = HashMap::new();
        for (inst, dt) in &kernel.body {
            if vector && matches!(inst, Inst::Unary(UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh, _)) {
                continue;
            }
            let Some(name) = libm_of(inst) else { continue };
            let math = math_fn(name, *dt).ok_or_else(|| CodegenError::Module {
                kernel: kernel.name.clone(),
                message: format!("no math function `{name}` for {dt}"),
            })?;
            let id = self.import(math.symbol, cl_type(*dt), math.arity)?;
            calls.insert((name, *dt), id);
        }

        let ptr = self.module.target_config().pointer_type();
        self.module.clear_context(&mut self.ctx);
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.params.push(AbiParam::new(types::I64));
        self.ctx.func.signature.params.push(AbiParam::new(types::I64));
        let mut refs = HashMap::new();
        for (k, id) in &calls {
            refs.insert(*k, self.module.declare_func_in_func(*id, &mut self.ctx.func));
        }
        let dims = kernel.space.clone();
        let rank = dims.len();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let (inputs_ptr, out_ptr) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            // The outer axis runs over lo..hi (a thread's share); the others over their extent.
            let (lo, hi) = (b.block_params(entry)[2], b.block_params(entry)[3]);
            // Each input's base pointer, moved to the element its index 0 reads.
            let bases: Vec<Value> = kernel
                .inputs
                .iter()
                .enumerate()
                .map(|(k, input)| {
                    let p = b.ins().load(ptr, MemFlagsData::trusted(), inputs_ptr, (k * ptr.bytes() as usize) as i32);
                    match input.offset * input.dtype.size_bytes() as i64 {
                        0 => p,
                        bytes => b.ins().iadd_imm_s(p, bytes),
                    }
                })
                .collect();
            let consts = hoist_constants(&mut b, kernel, vector, vector);
            let em =
                Emitter { kernel, refs: &refs, bases: &bases, out_ptr, inline_math: vector, fma: self.has_fma, consts };
            let idx: Vec<Variable> = (0..rank).map(|_| b.declare_var(types::I64)).collect();
            let done = b.create_block();
            if let Some((op, _)) = &kernel.reduce {
                init_reduction(&mut b, kernel, *op, out_ptr, (lo, hi));
            }
            if rank == 0 {
                let v = em.compute(&mut b, &[], 1);
                em.store(&mut b, &[], v, 1);
                b.ins().jump(done, &[]);
            } else {
                // Outer loops step by one; the innermost runs 4 lanes at a time when it can,
                // then a scalar tail.
                let headers: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
                let bodies: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
                let exits: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
                b.def_var(idx[0], lo);
                let first = if vector && rank == 1 { None } else { Some(headers[0]) };
                let vec_header = b.create_block();
                match first {
                    Some(h) => {
                        b.ins().jump(h, &[]);
                    }
                    None => {
                        b.ins().jump(vec_header, &[]);
                    }
                }
                for d in 0..rank {
                    let innermost = d + 1 == rank;
                    b.switch_to_block(headers[d]);
                    let i = b.use_var(idx[d]);
                    let more = if d == 0 {
                        b.ins().icmp(IntCC::SignedLessThan, i, hi)
                    } else {
                        b.ins().icmp_imm_s(IntCC::SignedLessThan, i, dims[d] as i64)
                    };
                    b.ins().brif(more, bodies[d], &[], exits[d], &[]);
                    b.switch_to_block(bodies[d]);
                    if innermost {
                        let index: Vec<Value> = idx.iter().map(|v| b.use_var(*v)).collect();
                        let v = em.compute(&mut b, &index, 1);
                        em.store(&mut b, &index, v, 1);
                        let i = b.use_var(idx[d]);
                        let next = b.ins().iadd_imm_s(i, 1);
                        b.def_var(idx[d], next);
                        b.ins().jump(headers[d], &[]);
                    } else {
                        let zero = b.ins().iconst(types::I64, 0);
                        b.def_var(idx[d + 1], zero);
                        let target = if vector && d + 2 == rank { vec_header } else { headers[d + 1] };
                        b.ins().jump(target, &[]);
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
                // The vector loop over the innermost axis, falling through to its scalar tail.
                let last = rank - 1;
                b.switch_to_block(vec_header);
                if vector {
                    let end = if last == 0 { hi } else { b.ins().iconst(types::I64, dims[last] as i64) };
                    em.vector_loop(&mut b, &idx, end, headers[last]);
                } else {
                    b.ins().jump(headers[last], &[]);
                }
            }
            b.switch_to_block(done);
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(self.module.target_config());
        }
        let clif = self.ctx.func.display().to_string();
        let id =
            self.module.declare_function(name, linkage, &self.ctx.func.signature).map_err(|e| err(e.to_string()))?;
        self.ctx.set_disasm(self.disasm);
        self.module.define_function(id, &mut self.ctx).map_err(|e| err(format!("{e:?}")))?;
        let asm = self.ctx.compiled_code().and_then(|c| c.vcode.clone());
        self.module.clear_context(&mut self.ctx);
        Ok(Defined { id, clif, asm, vectorized: vector })
    }
}

/// Fills a reduction's output with the identity: 0 for sums, −∞ (or the integer minimum) for
/// maxima. A reduction that [splits over its outer axis](Kernel::splits_outer) fills only
/// the outputs of outer indices `lo..hi`, one contiguous block; others fill all of it.
fn init_reduction(b: &mut FunctionBuilder, kernel: &Kernel, op: ReduceOp, out_ptr: Value, range: (Value, Value)) {
    let n = kernel.out.numel() as i64;
    let dt = kernel.out.dtype;
    let ty = cl_type(dt);
    let identity = match (op, dt) {
        (ReduceOp::Sum, DType::F32) => b.ins().f32const(0.0),
        (ReduceOp::Sum, DType::F64) => b.ins().f64const(0.0),
        (ReduceOp::Max, DType::F32) => b.ins().f32const(f32::NEG_INFINITY),
        (ReduceOp::Max, DType::F64) => b.ins().f64const(f64::NEG_INFINITY),
        (ReduceOp::Sum, _) => b.ins().iconst(ty, 0),
        (ReduceOp::Max, DType::I32) => b.ins().iconst(ty, i64::from(i32::MIN)),
        (ReduceOp::Max, _) => b.ins().iconst(ty, i64::MIN),
    };
    let (header, body, exit) = (b.create_block(), b.create_block(), b.create_block());
    let j = b.declare_var(types::I64);
    let (start, end) = if kernel.splits_outer() {
        let block = kernel.out_strides[0];
        (b.ins().imul_imm_s(range.0, block), b.ins().imul_imm_s(range.1, block))
    } else {
        (b.ins().iconst(types::I64, 0), b.ins().iconst(types::I64, n))
    };
    b.def_var(j, start);
    b.ins().jump(header, &[]);
    b.switch_to_block(header);
    let jv = b.use_var(j);
    let more = b.ins().icmp(IntCC::SignedLessThan, jv, end);
    b.ins().brif(more, body, &[], exit, &[]);
    b.switch_to_block(body);
    let off = b.ins().imul_imm_s(jv, dt.size_bytes() as i64);
    let addr = b.ins().iadd(out_ptr, off);
    b.ins().store(MemFlagsData::trusted(), identity, addr, 0);
    let next = b.ins().iadd_imm_s(jv, 1);
    b.def_var(j, next);
    b.ins().jump(header, &[]);
    b.switch_to_block(exit);
}

/// Lanes of the vector loop: Cranelift lowers 128-bit vectors on x86-64, so four `f32`.
const LANES: u8 = 4;

/// True if a kernel can run its innermost loop four `f32` lanes at a time: every value is
/// `f32` (but comparisons of `f32`s that only serve as `select` conditions), every op has a
/// vector form (transcendentals use the inline approximations), and every input is
/// contiguous or broadcast along the innermost axis. Reductions vectorize both along the
/// innermost axis (accumulators) and across it (the output row is read and written as
/// vectors).
fn vectorizable(k: &Kernel) -> bool {
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
struct Emitter<'a> {
    kernel: &'a Kernel,
    refs: &'a HashMap<(&'static str, DType), cranelift_codegen::ir::FuncRef>,
    bases: &'a [Value],
    out_ptr: Value,
    /// Use the inline `exp`/`tanh` approximations (in vectorized kernels, so every lane and
    /// the scalar tail compute the same function).
    inline_math: bool,
    /// Evaluate the approximations' polynomials with fused multiply-adds.
    fma: bool,
    /// Float constants made once in the entry block, by (bits, dtype, lanes): Cranelift does
    /// not hoist loop invariants, so rematerializing them in the loop would cost every trip.
    consts: HashMap<(u64, DType, u8), Value>,
}

/// `p < q ? then : other`, lane by lane (a comparison with NaN is false).
fn select_lt(b: &mut FunctionBuilder, p: Value, q: Value, then: Value, other: Value, lanes: u8) -> Value {
    let m = b.ins().fcmp(FloatCC::LessThan, p, q);
    blend(b, m, then, other, lanes)
}

/// `cond ? then : other` for a comparison result `cond`: a `select` on scalars, a bitwise
/// blend under the lane mask on vectors (the mask reinterpreted as `then`'s type).
fn blend(b: &mut FunctionBuilder, cond: Value, then: Value, other: Value, lanes: u8) -> Value {
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
fn raise_to(b: &mut FunctionBuilder, x: Value, lo: Value, lanes: u8) -> Value {
    select_lt(b, x, lo, lo, x, lanes)
}

/// `min(x, hi)` that keeps NaN, as `hi < x ? hi : x`: one `minps` on x86.
fn lower_to(b: &mut FunctionBuilder, x: Value, hi: Value, lanes: u8) -> Value {
    select_lt(b, hi, x, hi, x, lanes)
}

/// 1.5·2^23: adding it to a float of magnitude below 2^22 rounds it to an integer.
const MAGIC: f64 = 12_582_912.0;

/// `127 - bits(MAGIC)`: turns the bits of `n + MAGIC` into the biased exponent of `2^n`.
const EXP_BIAS: f64 = (127 - 0x4B40_0000) as f64;

/// `π` in three parts (Cody–Waite): `n·PI_A` is exact for the `n` the inline `sin`/`cos`
/// meet, and the parts sum to `π` within f64 precision.
const PI_PARTS: [f64; 3] = [3.140625, 9.675_025_939_941_406e-4, 1.509_957_990_978_376_4e-7];

/// Arguments of the inline `sin`/`cos` above this magnitude are computed by libm.
const TRIG_LIMIT: f64 = 8192.0;

/// Coefficients of `sin r ≈ r + r³·(c₃ + r²(c₅ + …))` on `[-π/2, π/2]` (Taylor to `r¹³`:
/// truncation below 1e-9 there), highest first.
const SIN_COEFFS: [f64; 6] =
    [1.0 / 6_227_020_800.0, -1.0 / 39_916_800.0, 1.0 / 362_880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0];

/// The constants of the inline `exp`/`tanh`/`ln`/`sin`/`cos`.
const MATH_CONSTS: [f64; 39] = [
    std::f64::consts::FRAC_1_PI,
    TRIG_LIMIT,
    -0.693_145_751_953_125,
    -1.428_606_765_330_187e-6,
    -PI_PARTS[0],
    -PI_PARTS[1],
    -PI_PARTS[2],
    SIN_COEFFS[0],
    SIN_COEFFS[1],
    SIN_COEFFS[2],
    SIN_COEFFS[3],
    SIN_COEFFS[4],
    SIN_COEFFS[5],
    -0.5,
    MAGIC,
    f32::MIN_POSITIVE as f64,
    8_388_608.0,
    std::f64::consts::SQRT_2,
    1.0 / 9.0,
    1.0 / 7.0,
    1.0 / 5.0,
    1.0 / 3.0,
    std::f64::consts::LN_2,
    f64::NEG_INFINITY,
    f64::INFINITY,
    -87.3,
    88.7,
    std::f64::consts::LOG2_E,
    0.693_145_751_953_125,
    1.428_606_765_330_187e-6,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    2.0,
    0.0,
    127.0,
];

/// Creates, in the current (entry) block, every float constant `kernel` will use.
fn hoist_constants(
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
    fn offset(b: &mut FunctionBuilder, index: &[Value], strides: &[i64], size: i64) -> Value {
        let mut acc = b.ins().iconst(types::I64, 0);
        for (d, &s) in strides.iter().enumerate() {
            if s != 0 {
                let t = b.ins().imul_imm_s(index[d], s * size);
                acc = b.ins().iadd(acc, t);
            }
        }
        acc
    }

    fn float_const(&self, b: &mut FunctionBuilder, v: f64, dt: DType, lanes: u8) -> Value {
        if let Some(c) = self.consts.get(&(v.to_bits(), dt, lanes)) {
            return *c;
        }
        let s = if dt == DType::F32 { b.ins().f32const(v as f32) } else { b.ins().f64const(v) };
        if lanes > 1 { b.ins().splat(types::F32X4, s) } else { s }
    }

    /// Per body instruction, its operands if it is a float multiply whose only use is an
    /// addition: with FMA on the host the pair is contracted into one fused multiply-add
    /// (one rounding instead of two, as C compilers do under `-ffp-contract=fast` and XLA
    /// does on CPU). The unused multiply is removed by Cranelift's dead-code elimination.
    fn contractible(&self) -> Vec<Option<(usize, usize)>> {
        let body = &self.kernel.body;
        let mut uses = vec![0usize; body.len()];
        let mut add_uses = vec![0usize; body.len()];
        for (inst, _) in body {
            match inst {
                Inst::Load(_) | Inst::Const(_) => {}
                Inst::Unary(_, x) | Inst::Cast(x) => uses[*x] += 1,
                Inst::Binary(op, x, y) => {
                    uses[*x] += 1;
                    uses[*y] += 1;
                    if *op == BinaryOp::Add {
                        add_uses[*x] += 1;
                        add_uses[*y] += 1;
                    }
                }
                Inst::Compare(_, x, y) => {
                    uses[*x] += 1;
                    uses[*y] += 1;
                }
                Inst::Select(c, x, y) => {
                    uses[*c] += 1;
                    uses[*x] += 1;
                    uses[*y] += 1;
                }
            }
        }
        body.iter()
            .enumerate()
            .map(|(i, (inst, dt))| match inst {
                Inst::Binary(BinaryOp::Mul, p, q)
                    if self.fma && dt.is_float() && uses[i] == 1 && add_uses[i] == 1 && i + 1 < body.len() =>
                {
                    Some((*p, *q))
                }
                _ => None,
            })
            .collect()
    }

    /// Computes the element (or `lanes` adjacent elements) of the body at `index`.
    fn compute(&self, b: &mut FunctionBuilder, index: &[Value], lanes: u8) -> Value {
        let k = self.kernel;
        // Vector accesses are not 16-byte aligned in general.
        let vflags = MemFlagsData::new().with_notrap();
        let mut vals: Vec<Value> = Vec::with_capacity(k.body.len());
        let contract = self.contractible();
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
        }
        // The lowering never makes an empty body: every kernel loads or computes its value.
        *vals.last().expect("kernel bodies are never empty")
    }

    /// Stores `value` (or, for reductions, accumulates it) into the output element(s) at
    /// `index`.
    fn store(&self, b: &mut FunctionBuilder, index: &[Value], value: Value, lanes: u8) {
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
    fn vector_loop(&self, b: &mut FunctionBuilder, idx: &[Variable], end: Value, tail: cranelift_codegen::ir::Block) {
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

/// `acc ⊕ value` for a reduction's combining op (scalar or vector).
fn combine(b: &mut FunctionBuilder, op: ReduceOp, dt: DType, acc: Value, value: Value) -> Value {
    match (op, dt.is_float()) {
        (ReduceOp::Sum, true) => b.ins().fadd(acc, value),
        (ReduceOp::Sum, false) => b.ins().iadd(acc, value),
        (ReduceOp::Max, true) => b.ins().fmax(acc, value),
        (ReduceOp::Max, false) => b.ins().smax(acc, value),
    }
}

/// The inline vectorizable transcendentals, each with a tested error bound against `f64` libm.
impl Emitter<'_> {
    /// `exp(x)` for `f32` (scalar or `F32X4`): `x = n·ln2 + r` with `|r| ≤ ln2/2`, a degree-6
    /// polynomial for `e^r`, and `2^n` built in the exponent bits. Inputs are clamped to
    /// `[-87.3, 88.7]`, so the result stays finite and normal (NaN propagates through the
    /// clamp). Relative error below 5e-7 over the whole range (tested).
    fn exp_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8) -> Value {
        let fma = self.fma;
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let (lo, hi) = (c(b, -87.3), c(b, 88.7));
        let x = raise_to(b, x, lo, lanes);
        let x = lower_to(b, x, hi, lanes);
        // n = round(x·log2e) by the 1.5·2^23 trick: adding it rounds to an integer held in the
        // low mantissa bits, so both the float n and the integer n come without a conversion.
        let (log2e, magic) = (c(b, std::f64::consts::LOG2_E), c(b, MAGIC));
        let t = if fma {
            b.ins().fma(x, log2e, magic)
        } else {
            let t = b.ins().fmul(x, log2e);
            b.ins().fadd(t, magic)
        };
        let n = b.ins().fsub(t, magic);
        // r = x - n·ln2, with ln2 split in two parts so the product is exact.
        let (ln2_hi, ln2_lo) = (c(b, 0.693_145_751_953_125), c(b, 1.428_606_765_330_187e-6));
        let r = if fma {
            let (neg_hi, neg_lo) = (c(b, -0.693_145_751_953_125), c(b, -1.428_606_765_330_187e-6));
            let r = b.ins().fma(n, neg_hi, x);
            b.ins().fma(n, neg_lo, r)
        } else {
            let t2 = b.ins().fmul(n, ln2_hi);
            let r = b.ins().fsub(x, t2);
            let t2 = b.ins().fmul(n, ln2_lo);
            b.ins().fsub(r, t2)
        };
        // Horner: 1 + r(1 + r(1/2 + r(1/6 + r(1/24 + r(1/120 + r/720))))).
        let coeffs = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];
        let mut p = c(b, coeffs[0]);
        for &k in &coeffs[1..] {
            let k = c(b, k);
            p = if fma {
                b.ins().fma(p, r, k)
            } else {
                let t = b.ins().fmul(p, r);
                b.ins().fadd(t, k)
            };
        }
        let (ity, fty) = if lanes > 1 { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        // 2^n = ((bits(t) - bits(MAGIC)) + 127) << 23.
        let bits = b.ins().bitcast(ity, flags, t);
        let bias = match self.consts.get(&(EXP_BIAS.to_bits(), DType::I32, lanes)) {
            Some(v) => *v,
            None => {
                let s = b.ins().iconst(types::I32, EXP_BIAS as i64);
                if lanes > 1 { b.ins().splat(types::I32X4, s) } else { s }
            }
        };
        let e = b.ins().iadd(bits, bias);
        let e = b.ins().ishl_imm_s(e, 23);
        let scale = b.ins().bitcast(fty, flags, e);
        b.ins().fmul(p, scale)
    }

    /// `ln(x)` for `f32` (scalar or `F32X4`): `x = m·2^e` with `m` in `[√½, √2)` from the bits
    /// (subnormals scaled by 2^23 first), then `ln m = 2 atanh(s)`, `s = (m−1)/(m+1)`, as an odd
    /// polynomial. `ln 0 = −∞`, `ln x = NaN` for `x < 0` or NaN, `ln ∞ = ∞`. Absolute error below
    /// 3e-7 · max(1, |ln x|) over all positive floats (tested).
    fn log_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8) -> Value {
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let vec = lanes > 1;
        let (ity, fty) = if vec { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let int = |b: &mut FunctionBuilder, v: i64| {
            let s = b.ins().iconst(types::I32, v);
            if vec { b.ins().splat(types::I32X4, s) } else { s }
        };
        // Scale subnormals into the normal range.
        let min_normal = c(b, f64::from(f32::MIN_POSITIVE));
        let tiny = b.ins().fcmp(FloatCC::LessThan, x, min_normal);
        let scaled = {
            let k = c(b, 8_388_608.0);
            b.ins().fmul(x, k)
        };
        let xs = blend(b, tiny, scaled, x, lanes);
        let bits = b.ins().bitcast(ity, flags, xs);
        let exp_bits = b.ins().sshr_imm_s(bits, 23);
        let bias = int(b, 127);
        let mut e = b.ins().isub(exp_bits, bias);
        let (twenty_three, zero) = (int(b, 23), int(b, 0));
        let sub = blend(b, tiny, twenty_three, zero, lanes);
        e = b.ins().isub(e, sub);
        let mant_mask = int(b, 0x007F_FFFF);
        let one_bits = int(b, 0x3F80_0000);
        let mb = b.ins().band(bits, mant_mask);
        let mb = b.ins().bor(mb, one_bits);
        let mut m = b.ins().bitcast(fty, flags, mb);
        // Move m into [√½, √2).
        let sqrt2 = c(b, std::f64::consts::SQRT_2);
        let big = b.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
        let half = c(b, 0.5);
        let mh = b.ins().fmul(m, half);
        m = blend(b, big, mh, m, lanes);
        let one_i = int(b, 1);
        let inc = blend(b, big, one_i, zero, lanes);
        e = b.ins().iadd(e, inc);
        // ln m = 2s(1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9), s = (m − 1)/(m + 1).
        let one = c(b, 1.0);
        let num = b.ins().fsub(m, one);
        let den = b.ins().fadd(m, one);
        let s = b.ins().fdiv(num, den);
        let s2 = b.ins().fmul(s, s);
        let mut p = c(b, 1.0 / 9.0);
        for k in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
            let k = c(b, k);
            p = if self.fma {
                b.ins().fma(p, s2, k)
            } else {
                let t = b.ins().fmul(p, s2);
                b.ins().fadd(t, k)
            };
        }
        let two_s = b.ins().fadd(s, s);
        let lnm = b.ins().fmul(two_s, p);
        let ef = b.ins().fcvt_from_sint(fty, e);
        let ln2 = c(b, std::f64::consts::LN_2);
        let r = if self.fma {
            b.ins().fma(ef, ln2, lnm)
        } else {
            let t = b.ins().fmul(ef, ln2);
            b.ins().fadd(t, lnm)
        };
        // Special values.
        let zero_f = c(b, 0.0);
        let is_zero = b.ins().fcmp(FloatCC::Equal, x, zero_f);
        let neg_inf = c(b, f64::NEG_INFINITY);
        let r = blend(b, is_zero, neg_inf, r, lanes);
        let bad = b.ins().fcmp(FloatCC::UnorderedOrLessThan, x, zero_f);
        let nan = c(b, f64::NAN);
        let r = blend(b, bad, nan, r, lanes);
        let inf = c(b, f64::INFINITY);
        let is_inf = b.ins().fcmp(FloatCC::Equal, x, inf);
        blend(b, is_inf, inf, r, lanes)
    }

    /// `sin(x)` or `cos(x)` for `f32` (scalar or `F32X4`): `x = nπ + r` (for `cos`,
    /// `(n + ½)π + r`) with `|r| ≤ π/2` by Cody–Waite reduction, an odd Taylor polynomial for
    /// `sin r`, and the sign of `(-1)^n` (for `cos`, `(-1)^(n+1)`) flipped into the bits.
    /// NaN and ±∞ give NaN. Where any lane's `|x|` exceeds [`TRIG_LIMIT`], the whole vector is
    /// recomputed by libm, so large arguments keep libm's accuracy. Absolute error below
    /// 5e-7 over `[-8192, 8192]` (tested).
    fn trig_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8, which: Trig) -> Value {
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let vec = lanes > 1;
        let (ity, fty) = if vec { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let mul_add = |b: &mut FunctionBuilder, p: Value, q: Value, r: Value| {
            if self.fma {
                b.ins().fma(p, q, r)
            } else {
                let t = b.ins().fmul(p, q);
                b.ins().fadd(t, r)
            }
        };
        // n = round(x/π) (for cos, round(x/π − ½)) by the 1.5·2^23 trick; its parity sits in
        // the low bit of t's bits.
        let (inv_pi, magic) = (c(b, std::f64::consts::FRAC_1_PI), c(b, MAGIC));
        let q = b.ins().fmul(x, inv_pi);
        let q = match which {
            Trig::Sin => q,
            Trig::Cos => {
                let half = c(b, -0.5);
                b.ins().fadd(q, half)
            }
        };
        let t = b.ins().fadd(q, magic);
        let n = b.ins().fsub(t, magic);
        let n = match which {
            Trig::Sin => n,
            Trig::Cos => {
                let half = c(b, 0.5);
                b.ins().fadd(n, half)
            }
        };
        // r = x − n·π, π in three parts.
        let mut r = x;
        for part in PI_PARTS {
            let neg = c(b, -part);
            r = mul_add(b, n, neg, r);
        }
        let r2 = b.ins().fmul(r, r);
        let mut p = c(b, SIN_COEFFS[0]);
        for &k in &SIN_COEFFS[1..] {
            let k = c(b, k);
            p = mul_add(b, p, r2, k);
        }
        let r3 = b.ins().fmul(r, r2);
        let s = mul_add(b, r3, p, r);
        // Flip the sign where n is odd (for cos, even).
        let bits = b.ins().bitcast(ity, flags, t);
        let bits = match which {
            Trig::Sin => bits,
            Trig::Cos => {
                let one = b.ins().iconst(types::I32, 1);
                let one = if vec { b.ins().splat(types::I32X4, one) } else { one };
                b.ins().bxor(bits, one)
            }
        };
        let sign = b.ins().ishl_imm_s(bits, 31);
        let sb = b.ins().bitcast(ity, flags, s);
        let sb = b.ins().bxor(sb, sign);
        let fast = b.ins().bitcast(fty, flags, sb);
        // Large arguments: libm for the whole vector.
        let limit = c(b, TRIG_LIMIT);
        let ax = b.ins().fabs(x);
        let big = b.ins().fcmp(FloatCC::GreaterThan, ax, limit);
        let any = if vec { b.ins().vany_true(big) } else { big };
        let (slow, join) = (b.create_block(), b.create_block());
        b.append_block_param(join, fty);
        b.ins().brif(any, slow, &[], join, &[BlockArg::Value(fast)]);
        b.switch_to_block(slow);
        let func = self.refs[&(which.name(), DType::F32)];
        let exact = if vec {
            let mut v = fast;
            for lane in 0..lanes {
                let xl = b.ins().extractlane(x, lane);
                let call = b.ins().call(func, &[xl]);
                let y = b.inst_results(call)[0];
                v = b.ins().insertlane(v, y, lane);
            }
            v
        } else {
            let call = b.ins().call(func, &[x]);
            b.inst_results(call)[0]
        };
        b.ins().jump(join, &[BlockArg::Value(exact)]);
        b.switch_to_block(join);
        b.block_params(join)[0]
    }

    /// `tanh(x)` for `f32` as `1 - 2/(e^{2x} + 1)` on the inline `exp`: absolute error below
    /// 5e-7 (tested), exact limits ±1 for large |x|.
    fn tanh_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8) -> Value {
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let two = c(b, 2.0);
        let x2 = b.ins().fmul(x, two);
        let e = self.exp_f32(b, x2, lanes);
        let one = c(b, 1.0);
        let d = b.ins().fadd(e, one);
        let q = b.ins().fdiv(two, d);
        b.ins().fsub(one, q)
    }
}

/// Which inline trigonometric function.
#[derive(Clone, Copy)]
enum Trig {
    Sin,
    Cos,
}

impl Trig {
    /// The libm import's short name.
    fn name(self) -> &'static str {
        match self {
            Trig::Sin => "sin",
            Trig::Cos => "cos",
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ir::{BinaryOp, UnaryOp};

    /// Every op that names a math library function has it at f32 and f64 with its arity, and
    /// every function in the table is some op's: the list cannot drift from the op set.
    #[test]
    fn the_math_table_covers_exactly_the_ops_that_call_libm() {
        let mut wanted = Vec::new();
        wanted.extend(UnaryOp::ALL.iter().filter_map(|u| u.libm()).map(|n| (n, 1)));
        wanted.extend(BinaryOp::ALL.iter().filter_map(|b| b.libm()).map(|n| (n, 2)));
        for (name, arity) in &wanted {
            for dt in [DType::F32, DType::F64] {
                let m = math_fn(name, dt).unwrap_or_else(|| panic!("no {name} for {dt}"));
                assert_eq!(m.arity, *arity, "{name}");
                assert!(m.symbol.starts_with("kiln_") && m.symbol.contains(name), "{}", m.symbol);
            }
        }
        assert_eq!(MATH.len(), wanted.len() * 2);
        assert_eq!(math_pointers().len(), MATH.len());
    }
}
