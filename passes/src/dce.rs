//! Dead-code elimination: drops every node no output depends on and compacts the arena.
//!
//! Leaves are kept even when unused, so the function's signature does not change.

use kiln_ir::{Graph, GraphError};

use crate::pipeline::Pass;
use crate::rebuild::rebuild;

/// The dead-code elimination pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError> {
        Ok((eliminate_dead_code(graph)?, String::new()))
    }
}

/// A copy of `graph` without the nodes no output depends on (leaves are kept).
pub fn eliminate_dead_code(graph: &Graph) -> Result<Graph, GraphError> {
    let live = graph.live_mask();
    rebuild(graph, |id| live[id.index()], |_, _| {})
}
