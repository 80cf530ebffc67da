//! Dead-code elimination: drops every node no output depends on and compacts the arena.
//!
//! Leaves are kept even when unused, so the function's signature does not change.

use std::collections::HashMap;

use kiln_ir::{Graph, GraphError, NodeId, Op};

use crate::pipeline::Pass;

/// The dead-code elimination pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        "dce"
    }

    fn run(&self, graph: &Graph) -> Result<Graph, GraphError> {
        let live = graph.live_mask();
        let mut out = Graph::new(graph.name());
        let mut map: HashMap<NodeId, NodeId> = HashMap::new();
        for (id, node) in graph.nodes() {
            let new = match &node.op {
                Op::Input { name } => out.input(name.clone(), node.ty.clone())?,
                Op::Param { name, init } => out.param(name.clone(), node.ty.clone(), *init)?,
                _ if !live[id.index()] => continue,
                op => {
                    let args: Vec<NodeId> = node.args.iter().map(|a| map[a]).collect();
                    out.add_typed(op.clone(), &args, node.ty.clone())?
                }
            };
            map.insert(id, new);
        }
        for o in graph.outputs() {
            out.add_output(o.name.clone(), map[&o.value])?;
        }
        Ok(out)
    }
}
