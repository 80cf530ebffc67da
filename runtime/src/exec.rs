//! Running a graph: the entry point that backends plug into. Today the only backend is the
//! reference interpreter; the Cranelift JIT joins it as a second [`Backend`].

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
}

/// Runs `graph` on `backend` with the given named inputs. Parameters without a value are
/// initialized from `seed` by their declared initializers.
pub fn run(graph: &Graph, feeds: &HashMap<String, Value>, seed: u64, backend: Backend) -> Result<Vec<Value>, RunError> {
    match backend {
        Backend::Interp => Ok(kiln_ir::interp::run_with_init(graph, feeds, seed)?),
        Backend::Jit => {
            let exe = crate::jit::compile(graph, crate::jit::Options::default())?;
            let mut all = kiln_ir::init::init_params(graph, seed);
            all.retain(|k, _| !feeds.contains_key(k));
            all.extend(feeds.iter().map(|(k, v)| (k.clone(), v.clone())));
            Ok(exe.run(&all)?)
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
}
