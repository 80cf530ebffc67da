//! The CPU backend: kernel loop IR lowered to Cranelift and JIT-compiled for the host.
//!
//! Each kernel becomes `extern "C" fn(inputs: *const *const u8, out: *mut u8, lo: i64, hi: i64)`
//! (the `inputs` array ends with the buffers of the kernel's side outputs, if any):
//! a loop nest over the (static) iteration space, the outermost axis restricted to `lo..hi`, that loads every input at its strided offset,
//! evaluates the body in scalar registers, and stores the element. ISA flags come from the
//! host (`cranelift_native`), so `fma` and friends use the machine's instructions.
//! In vectorized `f32` kernels, `exp log tanh sin cos` are inline approximations (the same
//! code on the vector lanes and the scalar tail); elsewhere they call libm.
//!
//! The modules: `emit` (defining a kernel: signature, loop nest, reductions' initial values),
//! `body` (one element or four lanes: loads, the body's instructions, stores, the vector loop,
//! casts), `window` (window reductions with their output row in registers), `approx` (the
//! inline transcendentals and their constants), `symbols` (the math functions kernels call),
//! `isa` (the target ISA).

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

pub(crate) mod approx;
mod body;
mod emit;
mod isa;
mod symbols;
mod window;

use approx::*;
use body::*;
pub(crate) use emit::KernelEmitter;
use emit::*;
pub(crate) use isa::{host_isa, isa_for};
use symbols::*;
pub use symbols::{MATH, MATH_SYMBOLS, MathFn, math_fn};

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
    /// The second tier's entry for the same kernel once installed
    /// ([`CompiledKernel::install_tier2`]); null until then.
    tier2: std::sync::atomic::AtomicPtr<u8>,
    /// The entry calls run: the second tier's, or null for Cranelift's
    /// ([`CompiledKernel::use_tier`]).
    active: std::sync::atomic::AtomicPtr<u8>,
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
    /// offset the input's strides reach over the output's index space, of the input's dtype,
    /// then one per side output to a writable row-major buffer of the output's shape and the
    /// side output's dtype, apart from every other buffer; `out` must point to a writable
    /// row-major buffer of the output's type. The runtime checks this before every call.
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
        debug_assert_eq!(inputs.len(), self.kernel.inputs.len() + self.kernel.side_outputs.len());
        let tier2 = self.active.load(std::sync::atomic::Ordering::Acquire);
        let entry = if tier2.is_null() {
            self.entry
        } else {
            // SAFETY: `install_tier2`'s contract: a live function of this signature computing
            // this kernel.
            unsafe { std::mem::transmute::<*mut u8, unsafe extern "C" fn(*const *const u8, *mut u8, i64, i64)>(tier2) }
        };
        // SAFETY: the caller guarantees the buffers and the range (see above); `entry` was
        // produced by Cranelift for exactly this signature and lives as long as the `CpuJit`,
        // or is the second tier's function for the same kernel (see `install_tier2`).
        unsafe { entry(inputs.as_ptr(), out, lo, hi) }
    }

    /// Makes every later call run `entry` instead of the Cranelift code: the JIT's second tier
    /// (`kiln_runtime::tier2`).
    ///
    /// # Safety
    /// `entry` must be a function of the C signature `void (const void *const *, void *,
    /// long long, long long)` computing this kernel with the contract of
    /// [`CompiledKernel::call_range`] (a [`crate::ckernels`] rendering of [`Self::kernel`]),
    /// and stay loaded as long as `self` may be called.
    pub unsafe fn install_tier2(&self, entry: *const u8) {
        self.tier2.store(entry.cast_mut(), std::sync::atomic::Ordering::Release);
        self.active.store(entry.cast_mut(), std::sync::atomic::Ordering::Release);
    }

    /// Makes later calls run tier `tier`'s code: 1 (Cranelift's) or 2 (the one installed;
    /// without one, calls stay on tier 1). Both compute the same bits, so a caller may switch
    /// between any two calls.
    pub fn use_tier(&self, tier: u8) {
        let entry =
            if tier == 2 { self.tier2.load(std::sync::atomic::Ordering::Acquire) } else { std::ptr::null_mut() };
        self.active.store(entry, std::sync::atomic::Ordering::Release);
    }

    /// True once a second tier's code is installed, whichever tier calls run.
    pub fn has_tier2(&self) -> bool {
        !self.tier2.load(std::sync::atomic::Ordering::Acquire).is_null()
    }

    /// The tier whose code runs: 1 (Cranelift) or 2 (the C compiler's).
    pub fn tier(&self) -> u8 {
        if self.active.load(std::sync::atomic::Ordering::Acquire).is_null() { 1 } else { 2 }
    }
}

/// True if this backend computes `kernel`'s `exp`, `log`, `tanh`, `sin` and `cos` with its
/// inline approximations (a kernel whose innermost loop runs four `f32` lanes, lanes and
/// tail alike) rather than by calling the math library: a second tier must do the same to
/// give the same results.
pub fn inline_math(kernel: &Kernel) -> bool {
    vectorizable(kernel)
}

/// The JIT: owns the compiled code, so kernels live as long as it does.
pub struct CpuJit {
    emitter: KernelEmitter<JITModule>,
    count: usize,
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

    /// True if the target has fused multiply-add, so kernels contract products into their
    /// sums ([`Kernel::fma_contractions`]); a second tier renders them the same way.
    pub fn has_fma(&self) -> bool {
        self.emitter.has_fma
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
        Ok(CompiledKernel {
            entry,
            tier2: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            active: std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()),
            kernel: kernel.clone(),
            clif: d.clif,
            vectorized: d.vectorized,
            asm: d.asm,
        })
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
