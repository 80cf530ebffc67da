//! Copying a graph node by node into a fresh arena: the shared mechanism of the plain passes.
//! The copy re-interns every node, so nodes that became identical merge.

use std::collections::HashMap;

use kiln_ir::{Graph, GraphError, NodeId, Op};

/// Copies `graph`, keeping every leaf (the signature does not change) and the non-leaf nodes
/// for which `keep` holds, after `canon` has had a chance to reorder each node's operands.
pub fn rebuild(
    graph: &Graph,
    keep: impl Fn(NodeId) -> bool,
    canon: impl Fn(&Op, &mut Vec<NodeId>),
) -> Result<Graph, GraphError> {
    let mut out = Graph::new(graph.name());
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for (id, node) in graph.nodes() {
        let new = match &node.op {
            Op::Input { name } => out.input(name.clone(), node.ty.clone())?,
            Op::Param { name, init } => out.param(name.clone(), node.ty.clone(), *init)?,
            _ if !keep(id) => continue,
            op => {
                let mut args: Vec<NodeId> = node.args.iter().map(|a| map[a]).collect();
                canon(op, &mut args);
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
