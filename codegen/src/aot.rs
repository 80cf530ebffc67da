//! Ahead-of-time kernels: the JIT's emitter writing a relocatable object file instead of
//! executable memory, the first piece of compiling a model to a shared library.
//!
//! Every kernel becomes an exported function of the C signature
//! `void NAME(const void *const *inputs, void *out, int64_t lo, int64_t hi)`, exactly the code
//! the JIT runs (same emitter, position-independent). The scalar math functions a kernel
//! calls ([`crate::cpu::MATH_SYMBOLS`]) are left undefined, for whatever links the object to
//! define (for example `float kiln_exp_f32(float x) { return expf(x); }`). Read-only data
//! (a model's weights) is added with [`ObjectKernels::add_data`].

use cranelift_module::{DataDescription, Linkage, Module};
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

    /// Adds `bytes` as the exported read-only data `symbol`, aligned to `align` bytes (a power
    /// of two): a model's weights live in the library this way.
    pub fn add_data(&mut self, symbol: &str, bytes: &[u8], align: u64) -> Result<(), CodegenError> {
        let err = |message: String| CodegenError::Module { kernel: symbol.to_string(), message };
        if self.symbols.iter().any(|s| s == symbol) {
            return Err(err(format!("symbol `{symbol}` is defined twice")));
        }
        if !align.is_power_of_two() {
            return Err(err(format!("alignment {align} is not a power of two")));
        }
        let module = &mut self.emitter.module;
        let id = module.declare_data(symbol, Linkage::Export, false, false).map_err(|e| err(e.to_string()))?;
        let mut data = DataDescription::new();
        data.define(bytes.to_vec().into_boxed_slice());
        data.set_align(align);
        module.define_data(id, &data).map_err(|e| err(e.to_string()))?;
        self.symbols.push(symbol.to_string());
        Ok(())
    }

    /// The exported symbols (kernels and data), in the order they were added.
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
