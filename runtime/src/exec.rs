//! Running a graph: the entry point that backends plug into — the reference interpreter, the
//! Cranelift JIT, or the GPU backend ([`Backend`]).

use std::collections::HashMap;

use kiln_ir::{Graph, InterpError, Value};

/// Where a graph runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Backend {
    /// The reference interpreter (`kiln_ir::interp`).
    #[default]
    Interp,
    /// Fused elementwise kernels compiled with Cranelift ([`crate::jit`]).
    Jit,
    /// The GPU backend ([`crate::gpu`]) on a device of this kind.
    Gpu(crate::gpu::DeviceKind),
}

/// Runs `graph` on `backend` with the given named inputs. Parameters without a value are
/// initialized from `seed` by their declared initializers.
pub fn run(graph: &Graph, feeds: &HashMap<String, Value>, seed: u64, backend: Backend) -> Result<Vec<Value>, RunError> {
    match backend {
        Backend::Interp => {
            crate::memory::interpreter_fits(graph)?;
            Ok(kiln_ir::interp::run_with_init(graph, feeds, seed)?)
        }
        Backend::Jit => {
            let exe = crate::jit::compile(graph, crate::jit::Options::default())?;
            exe.fits_in_memory()?;
            let mut all = kiln_ir::init::init_params(graph, seed);
            all.retain(|k, _| !feeds.contains_key(k));
            all.extend(feeds.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(exe.run(&all)?)
        }
        Backend::Gpu(kind) => {
            let mut exe = crate::gpu::GpuExecutable::new(graph, crate::gpu::open(kind)?)?;
            let mut all = kiln_ir::init::init_params(graph, seed);
            all.extend(feeds.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(exe.run_with(&all)?)
        }
    }
}

/// Errors from running a graph.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Compiling for the JIT failed.
    #[error(transparent)]
    Compile(#[from] crate::jit::CompileError),
    /// Running failed (bad inputs, or an op's error such as integer division by zero).
    #[error(transparent)]
    Run(#[from] InterpError),
    /// The GPU backend failed (no device, an op without a GPU form, bad inputs).
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// The graph would not fit in memory.
    #[error(transparent)]
    TooLarge(#[from] crate::memory::TooLarge),
}
