//! `kiln`: a deep-learning compiler and graph optimizer.
//!
//! This facade re-exports the crates users need — the IR ([`ir`]), the DSL ([`frontend`]),
//! the passes ([`passes`]), code generation ([`codegen`]) and the runtime ([`runtime`]) — plus
//! the model [`zoo`]. `use kiln::prelude::*` brings the everyday names into scope.
//!
//! ```
//! use kiln::prelude::*;
//!
//! let b = Builder::new("affine");
//! let x = b.input("x", DType::F32, [2, 3]);
//! let y = nn::Linear::new(&b, "fc", 3, 4).forward(x).relu();
//! b.output("y", y);
//! let graph = b.finish().unwrap();
//! println!("{graph}");
//! ```

pub use kiln_codegen as codegen;
pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;
/// The `ndarray` version kiln's [`Value`](ir::Value)s hold, so that code building values from
/// arrays needs no matching dependency of its own.
pub use ndarray;

pub mod aot;
pub mod calibrate;
pub mod data;
pub mod fit;
pub mod gpu;
pub mod model_file;
pub mod onnx;
pub mod train;
pub mod zoo;

pub use kiln_passes::fuse::Mode as Fusion;
pub use kiln_runtime::jit::Executable;

/// Errors from [`compile`].
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// A pass of the optimization pipeline failed.
    #[error(transparent)]
    Pass(#[from] kiln_passes::PassError),
    /// Code generation failed.
    #[error(transparent)]
    Codegen(#[from] kiln_runtime::jit::CompileError),
    /// The GPU backend could not load the graph (no device, an op without a GPU form).
    #[error(transparent)]
    Gpu(#[from] kiln_runtime::gpu::GpuError),
}

/// Compiles a graph for the host CPU: the default pass pipeline
/// ([`kiln_passes::DEFAULT_PIPELINE`]), fusion (or one kernel per op with
/// [`Fusion::Unfused`]), and Cranelift code generation. Run the result with
/// [`Executable::run`], feeding every input and parameter by name. It runs on
/// `KILN_THREADS` threads (default 1; [`Executable::with_threads`] changes it).
pub fn compile(graph: &ir::Graph, fusion: Fusion) -> Result<Executable, CompileError> {
    compile_with(graph, fusion, kiln_passes::DEFAULT_PIPELINE)
}

/// [`compile`] with another pass pipeline (`"cse,dce"`: no rewriting; any list `kiln opt
/// --pipeline` takes), for measuring what the optimizer is worth.
pub fn compile_with(graph: &ir::Graph, fusion: Fusion, pipeline: &str) -> Result<Executable, CompileError> {
    let (optimized, _) = kiln_passes::Pipeline::parse(pipeline)?.run(graph)?;
    let exe =
        kiln_runtime::jit::compile(&optimized, kiln_runtime::jit::Options { mode: fusion, ..Default::default() })?;
    Ok(exe.with_threads(kiln_runtime::pool::threads_from_env()))
}

thread_local! {
    /// Executables by (hash of the optimized graph's text, fusion mode).
    static CACHE: std::cell::RefCell<std::collections::HashMap<(u64, Fusion), std::rc::Rc<Executable>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// Like [`compile`], but returns the executable compiled earlier on this thread for an equal
/// optimized graph (the optimizer is deterministic, so equal inputs hit). Code generation is
/// skipped on a hit; the optimizer still runs to compute the key.
pub fn compile_cached(graph: &ir::Graph, fusion: Fusion) -> Result<std::rc::Rc<Executable>, CompileError> {
    use std::hash::{Hash, Hasher};
    let (optimized, _) = kiln_passes::Pipeline::parse(kiln_passes::DEFAULT_PIPELINE)?.run(graph)?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    optimized.to_string().hash(&mut h);
    let key = (h.finish(), fusion);
    if let Some(hit) = CACHE.with(|c| c.borrow().get(&key).cloned()) {
        return Ok(hit);
    }
    let exe = std::rc::Rc::new(
        kiln_runtime::jit::compile(&optimized, kiln_runtime::jit::Options { mode: fusion, ..Default::default() })?
            .with_threads(kiln_runtime::pool::threads_from_env()),
    );
    CACHE.with(|c| c.borrow_mut().insert(key, exe.clone()));
    Ok(exe)
}

/// The everyday names: builder, tensors, layers, losses, dtypes and graphs.
pub mod prelude {
    pub use kiln_frontend::{BuildError, Builder, Mode, Tensor, init, loss, nn};
    pub use kiln_ir::{DType, Graph, Init, TensorType, Value};
}
