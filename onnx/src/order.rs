//! The order nodes are lowered in: by their data dependencies (ONNX files are usually sorted,
//! but need not be), refusing a value nothing defines and a cycle.

use std::collections::{HashMap, HashSet};

use crate::error::ImportError;
use crate::proto::GraphProto;
use crate::support::node_label;

/// The indices of `graph.node` in an order where every node comes after the nodes defining
/// its inputs. `defined` holds the names defined before any node runs (graph inputs and
/// initializers).
pub(crate) fn topological(graph: &GraphProto, defined: &HashSet<String>) -> Result<Vec<usize>, ImportError> {
    let mut producer: HashMap<&str, usize> = HashMap::new();
    for (i, n) in graph.node.iter().enumerate() {
        for o in n.output.iter().filter(|o| !o.is_empty()) {
            if defined.contains(o) || producer.insert(o, i).is_some() {
                return Err(ImportError::Invalid(format!(
                    "value `{o}` is defined twice (node {} and an earlier definition)",
                    node_label(n, i)
                )));
            }
        }
    }
    // Readers of each node, and how many of each node's producers are still pending.
    let mut pending = vec![0usize; graph.node.len()];
    let mut readers: Vec<Vec<usize>> = vec![Vec::new(); graph.node.len()];
    for (i, n) in graph.node.iter().enumerate() {
        for input in n.input.iter().filter(|x| !x.is_empty()) {
            match producer.get(input.as_str()) {
                Some(&p) => {
                    pending[i] += 1;
                    readers[p].push(i);
                }
                None if defined.contains(input) => {}
                None => {
                    return Err(ImportError::Undefined {
                        node: node_label(n, i),
                        op: n.op_type().to_string(),
                        value: input.clone(),
                    });
                }
            }
        }
    }
    // Kahn's algorithm, taking ready nodes in file order.
    let mut ready: std::collections::BTreeSet<usize> = (0..graph.node.len()).filter(|&i| pending[i] == 0).collect();
    let mut order = Vec::with_capacity(graph.node.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &r in &readers[i] {
            pending[r] -= 1;
            if pending[r] == 0 {
                ready.insert(r);
            }
        }
    }
    if order.len() < graph.node.len() {
        let stuck: Vec<String> =
            (0..graph.node.len()).filter(|&i| pending[i] > 0).map(|i| node_label(&graph.node[i], i)).collect();
        return Err(ImportError::Cycle(stuck));
    }
    Ok(order)
}
