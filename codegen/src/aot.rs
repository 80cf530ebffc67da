//! Ahead-of-time kernels: the JIT's emitter writing a relocatable object file instead of
//! executable memory, the first piece of compiling a model to a shared library.
//!
//! Every kernel becomes an exported function of the C signature
//! `void NAME(const void *const *inputs, void *out, int64_t lo, int64_t hi)`, exactly the code
//! the JIT runs (same emitter, position-independent). The scalar math functions a kernel
//! calls ([`crate::cpu::MATH_SYMBOLS`]) are left undefined, for whatever links the object to
//! define (for example `float kiln_exp_f32(float x) { return expf(x); }`).

use cranelift_module::Linkage;
use cranelift_object::{ObjectBuilder, ObjectModule};

use crate::cpu::{CodegenError, KernelEmitter, host_isa};
use crate::kernel::Kernel;

/// Kernels collected into one object file for the host's architecture.
pub struct ObjectKernels {
    emitter: KernelEmitter<ObjectModule>,
    symbols: Vec<String>,
}

impl std::fmt::Debug for ObjectKernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectKernels").field("symbols", &self.symbols).finish_non_exhaustive()
    }
}

impl ObjectKernels {
    /// An empty object called `name` (the name is recorded in the file, not in symbols).
    pub fn new(name: &str) -> Result<Self, CodegenError> {
        let (isa, has_fma) = host_isa(true)?;
        let builder = ObjectBuilder::new(isa, name, cranelift_module::default_libcall_names())
            .map_err(|e| CodegenError::Module { kernel: name.into(), message: e.to_string() })?;
        Ok(ObjectKernels { emitter: KernelEmitter::new(ObjectModule::new(builder), has_fma), symbols: Vec::new() })
    }

    /// Adds `kernel` as the exported function `symbol`.
    pub fn add(&mut self, kernel: &Kernel, symbol: &str) -> Result<(), CodegenError> {
        if self.symbols.iter().any(|s| s == symbol) {
            return Err(CodegenError::Module {
                kernel: kernel.name.clone(),
                message: format!("symbol `{symbol}` is defined twice"),
            });
        }
        self.emitter.define(kernel, symbol, Linkage::Export)?;
        self.symbols.push(symbol.to_string());
        Ok(())
    }

    /// The exported symbols, in the order they were added.
    pub fn symbols(&self) -> &[String] {
        &self.symbols
    }

    /// The object file's bytes (ELF on Linux).
    pub fn finish(self) -> Result<Vec<u8>, CodegenError> {
        self.emitter
            .module
            .finish()
            .emit()
            .map_err(|e| CodegenError::Module { kernel: "<object>".into(), message: e.to_string() })
    }
}
