//! Ahead-of-time kernels: the JIT's emitter writing a relocatable object file instead of
//! executable memory, the first piece of compiling a model to a shared library.
//!
//! Every kernel becomes an exported function of the C signature
//! `void NAME(const void *const *inputs, void *out, int64_t lo, int64_t hi)`, exactly the code
//! the JIT runs (same emitter, position-independent). The scalar math functions a kernel
//! calls ([`crate::cpu::MATH_SYMBOLS`]) are left undefined, for whatever links the object to
//! define (for example `float kiln_exp_f32(float x) { return expf(x); }`). Read-only data
//! (a model's weights) is added with [`ObjectKernels::add_data`].

pub mod driver;

use cranelift_module::{DataDescription, Linkage, Module};
use cranelift_object::{ObjectBuilder, ObjectModule};

use crate::cpu::{CodegenError, KernelEmitter, isa_for};
use crate::kernel::Kernel;

/// The C runtime every model library carries (GEMM, convolutions, pad and concat), compiled
/// with the driver ([`driver::render`]) by the system C compiler.
pub const RUNTIME_C: &str = include_str!("kiln_rt.c");

/// The functions a model library exports, each prefixed by `NAME_`.
pub const FUNCTIONS: [&str; 8] =
    ["num_inputs", "num_outputs", "input_desc", "output_desc", "run", "run_checked", "last_error", "error_message"];

/// The CPUs a library is compiled for: the building machine's, or an x86-64 micro-architecture
/// level (the same names for Cranelift's presets and the C compiler's `-march`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// Every extension of the building machine (the fastest code; runs on its kind of CPU).
    #[default]
    Native,
    /// `x86-64-v2`: SSE4.2 and POPCNT (CPUs since about 2009).
    X86_64V2,
    /// `x86-64-v3`: AVX2, FMA, BMI2 (Haswell, Zen, and later).
    X86_64V3,
    /// `x86-64-v4`: AVX-512 F/BW/DQ/VL (Skylake-SP, Zen 4, and later).
    X86_64V4,
}

impl Target {
    /// Every target, in the order `--target` lists them.
    pub const ALL: [Target; 4] = [Target::Native, Target::X86_64V2, Target::X86_64V3, Target::X86_64V4];

    /// The target called `name` (`native`, `x86-64-v2`, `x86-64-v3`, `x86-64-v4`).
    pub fn parse(name: &str) -> Option<Target> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Target::Native => "native",
            Target::X86_64V2 => "x86-64-v2",
            Target::X86_64V3 => "x86-64-v3",
            Target::X86_64V4 => "x86-64-v4",
        }
    }

    /// Its extensions as Cranelift's flags (`None`: the host's own). Cranelift's own
    /// `x86-64-v3` preset leaves out `has_avx`, without which `fma` becomes a call to libm's
    /// `fmaf`, so the levels are spelled out here.
    fn cranelift_flags(self) -> Option<Vec<&'static str>> {
        const V2: [&str; 6] = ["has_sse3", "has_ssse3", "has_sse41", "has_sse42", "has_popcnt", "has_cmpxchg16b"];
        const V3: [&str; 6] = ["has_avx", "has_avx2", "has_bmi1", "has_bmi2", "has_fma", "has_lzcnt"];
        const V4: [&str; 3] = ["has_avx512f", "has_avx512dq", "has_avx512vl"];
        match self {
            Target::Native => None,
            Target::X86_64V2 => Some(V2.to_vec()),
            Target::X86_64V3 => Some([&V2[..], &V3[..]].concat()),
            Target::X86_64V4 => Some([&V2[..], &V3[..], &V4[..]].concat()),
        }
    }

    /// The C compiler's `-march` value.
    pub fn march(self) -> &'static str {
        self.name()
    }

    /// The CPU features a library for this target checks before it runs (names of GCC's
    /// `__builtin_cpu_supports`); for `Native`, those of the building machine among the levels'
    /// features.
    pub fn cpu_features(self) -> Vec<&'static str> {
        const V2: [&str; 2] = ["sse4.2", "popcnt"];
        const V3: [&str; 4] = ["avx", "avx2", "fma", "bmi2"];
        const V4: [&str; 4] = ["avx512f", "avx512bw", "avx512dq", "avx512vl"];
        match self {
            Target::X86_64V2 => V2.to_vec(),
            Target::X86_64V3 => [&V2[..], &V3[..]].concat(),
            Target::X86_64V4 => [&V2[..], &V3[..], &V4[..]].concat(),
            Target::Native => {
                let all = [&V2[..], &V3[..], &V4[..]].concat();
                all.into_iter().filter(|f| host_has(f)).collect()
            }
        }
    }
}

/// Whether the building machine has CPU feature `name` (a `__builtin_cpu_supports` name).
fn host_has(name: &str) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match name {
            "sse4.2" => std::arch::is_x86_feature_detected!("sse4.2"),
            "popcnt" => std::arch::is_x86_feature_detected!("popcnt"),
            "avx" => std::arch::is_x86_feature_detected!("avx"),
            "avx2" => std::arch::is_x86_feature_detected!("avx2"),
            "fma" => std::arch::is_x86_feature_detected!("fma"),
            "bmi2" => std::arch::is_x86_feature_detected!("bmi2"),
            "avx512f" => std::arch::is_x86_feature_detected!("avx512f"),
            "avx512bw" => std::arch::is_x86_feature_detected!("avx512bw"),
            "avx512dq" => std::arch::is_x86_feature_detected!("avx512dq"),
            "avx512vl" => std::arch::is_x86_feature_detected!("avx512vl"),
            _ => false,
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = name;
        false
    }
}

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
    /// An empty object called `name` (the name is recorded in the file, not in symbols) for
    /// the host's CPU.
    pub fn new(name: &str) -> Result<Self, CodegenError> {
        Self::for_target(name, Target::Native)
    }

    /// An empty object called `name` for the CPUs of `target`.
    pub fn for_target(name: &str, target: Target) -> Result<Self, CodegenError> {
        let (isa, has_fma) = isa_for(target.cranelift_flags().as_deref(), true)?;
        let builder = ObjectBuilder::new(isa, name, cranelift_module::default_libcall_names())
            .map_err(|e| CodegenError::Module { kernel: name.into(), message: e.to_string() })?;
        Ok(ObjectKernels { emitter: KernelEmitter::new(ObjectModule::new(builder), has_fma), symbols: Vec::new() })
    }

    /// True if the target has fused multiply-add (the kernels contract products into sums).
    pub fn has_fma(&self) -> bool {
        self.emitter.has_fma
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

    /// The scalar math functions ([`crate::cpu::MATH_SYMBOLS`]) the kernels call, which the
    /// object leaves undefined, sorted. Vectorized `f32` kernels compute `exp`, `log` and
    /// `tanh` inline and call none.
    pub fn math_imports(&self) -> Vec<&'static str> {
        self.emitter.imported()
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

/// Whether `name` can prefix a library's C symbols: an identifier of ASCII letters, digits
/// and `_`, not starting with a digit.
pub fn is_c_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The C ABI's dtype code of `d`: 0 f32, 1 f64, 2 i32, 3 i64, 4 bool.
pub fn dtype_code(d: kiln_ir::DType) -> i32 {
    match d {
        kiln_ir::DType::F32 => 0,
        kiln_ir::DType::F64 => 1,
        kiln_ir::DType::I32 => 2,
        kiln_ir::DType::I64 => 3,
        kiln_ir::DType::Bool => 4,
    }
}

/// The header `NAME.h` of a model library with these inputs and outputs (name and type each,
/// in the order `NAME_run` takes them): the tensor descriptor, the `NAME_*` functions, and a
/// comment giving every input's and output's dtype and shape. `None` if `name` is not a C
/// identifier.
pub fn header(
    name: &str,
    inputs: &[(String, kiln_ir::TensorType)],
    outputs: &[(String, kiln_ir::TensorType)],
) -> Option<String> {
    if !is_c_identifier(name) {
        return None;
    }
    let guard = format!("KILN_{}_H", name.to_ascii_uppercase());
    let list = |items: &[(String, kiln_ir::TensorType)]| -> String {
        items
            .iter()
            .enumerate()
            .map(|(i, (n, t))| {
                format!(" *   [{i}] {n}: {} {:?} (dtype code {})\n", t.dtype, t.dims(), dtype_code(t.dtype))
            })
            .collect()
    };
    Some(format!(
        r#"/* {name}.h: the C interface of lib{name}.so, generated by kiln. */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

#ifndef KILN_TENSOR_DESC
#define KILN_TENSOR_DESC
/* One input or output: its name, dtype (0 f32, 1 f64, 2 i32, 3 i64, 4 bool), rank and shape.
 * Buffers are dense and row-major. */
typedef struct {{
    const char *name;
    int32_t dtype;
    int32_t rank;
    const int64_t *shape;
}} kiln_tensor_desc;
#endif

#ifndef KILN_TENSOR
#define KILN_TENSOR
/* A caller's buffer with its dtype and shape, for {name}_run_checked. */
typedef struct {{
    void *data;
    int32_t dtype;
    int32_t rank;
    const int64_t *shape;
}} kiln_tensor;
#endif

/* Inputs, in the order {name}_run takes them:
{inputs} *
 * Outputs, in the order {name}_run writes them:
{outputs} */

/* The number of inputs and of outputs. */
int32_t {name}_num_inputs(void);
int32_t {name}_num_outputs(void);

/* The descriptor of input or output i, or NULL if i is out of range. */
const kiln_tensor_desc *{name}_input_desc(int32_t i);
const kiln_tensor_desc *{name}_output_desc(int32_t i);

/* Runs the model: inputs[i] points to input i, outputs[i] to a buffer for output i, each
 * dense, row-major and of the size its descriptor gives; outputs must not overlap inputs.
 * Returns 0 on success, otherwise an error code below whose text {name}_error_message gives.
 * Safe to call from several threads at once: each calling thread keeps its own working
 * arena, allocated on its first call and freed when the thread exits. */
int32_t {name}_run(const void *const *inputs, void *const *outputs);

/* Like {name}_run, but each buffer comes with its dtype and shape, checked against the
 * descriptors first: a wrong count, dtype or shape is an error code, and {name}_last_error
 * says which buffer and what was expected. */
int32_t {name}_run_checked(
    const kiln_tensor *inputs, int32_t num_inputs, const kiln_tensor *outputs, int32_t num_outputs);

/* The details of this thread's last failed {name}_run_checked, such as
 * "input 0 (x): shape [28, 28], expected [1, 784]"; "" after a successful call. */
const char *{name}_last_error(void);

/* Error codes {name}_run and {name}_run_checked return. */
{errors}
/* The text of an error code returned by {name}_run. */
const char *{name}_error_message(int32_t code);

#ifdef __cplusplus
}}
#endif

#endif /* {guard} */
"#,
        inputs = list(inputs),
        outputs = list(outputs),
        errors = driver::ERRORS
            .iter()
            .enumerate()
            .map(|(i, (code, msg))| format!(
                "#define {}_ERROR_{code} {} /* {msg} */\n",
                name.to_ascii_uppercase(),
                i + 1
            ))
            .collect::<String>(),
    ))
}
