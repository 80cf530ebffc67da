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
    rebuild_replacing(graph, |_, _, _| Ok(None), keep, canon)
}

/// Like [`rebuild`], letting `replace(out, id, map)` emit the copy of non-leaf node `id`
/// itself (new nodes in `out` over the copies `map` gives for earlier nodes) and return it,
/// or return `None` to copy the node as it is.
pub fn rebuild_replacing(
    graph: &Graph,
    mut replace: impl FnMut(&mut Graph, NodeId, &HashMap<NodeId, NodeId>) -> Result<Option<NodeId>, GraphError>,
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
            op => match replace(&mut out, id, &map)? {
                Some(new) => new,
                None => {
                    let mut args: Vec<NodeId> = node.args.iter().map(|a| map[a]).collect();
                    canon(op, &mut args);
                    out.add_typed(op.clone(), &args, node.ty.clone())?
                }
            },
        };
        map.insert(id, new);
    }
    for o in graph.outputs() {
        out.add_output(o.name.clone(), map[&o.value])?;
    }
    Ok(out)
}
