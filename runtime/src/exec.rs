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
}

/// Runs `graph` on `backend` with the given named inputs. Parameters without a value are
/// initialized from `seed` by their declared initializers.
pub fn run(
    graph: &Graph,
    feeds: &HashMap<String, Value>,
    seed: u64,
    backend: Backend,
) -> Result<Vec<Value>, InterpError> {
    match backend {
        Backend::Interp => kiln_ir::interp::run_with_init(graph, feeds, seed),
    }
}
