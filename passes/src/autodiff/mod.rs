//! Reverse-mode automatic differentiation as a graph-to-graph transform.
//!
//! [`backprop`] appends the backward graph to the forward one: the adjoint of every value on
//! a path from the requested leaves to the loss is built with one VJP rule per op
//! ([`rules`]), contributions to a value used several times are summed, and gradients of
//! broadcast operands are summed back to the operand's shape by `broadcast`'s own rule.
//! Because the rules emit ordinary IR, the result can be differentiated again (grad of grad),
//! and the optimizer sees forward and backward together.
//!
//! Discrete operands (a `select` condition, `gather`/`scatter_add` indices, an `rng` seed) and
//! `stop_gradient` pass no gradient by definition. A gradient that would have to flow through
//! integer or boolean values (say, `cast` of a comparison back to float) is an error naming
//! the node: cut such paths with `stop_gradient`.

mod emit;
pub mod rules;

use std::collections::HashMap;

use kiln_ir::{Graph, GraphError, NodeId, Op, TensorType};
use thiserror::Error;

use emit::Emit;
use rules::Edge;

/// Errors from differentiating a graph.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum AutodiffError {
    /// The value differentiated is not a float scalar.
    #[error("the loss {node} must be a float scalar, got {ty}")]
    BadLoss {
        /// The loss node.
        node: NodeId,
        /// Its type.
        ty: TensorType,
    },
    /// A gradient was requested with respect to a non-float value.
    #[error("cannot differentiate with respect to {node} of type {ty}: only float values have gradients")]
    NotFloat {
        /// The value.
        node: NodeId,
        /// Its type.
        ty: TensorType,
    },
    /// The gradient would have to flow through integer or boolean values.
    #[error(
        "the gradient would flow through {node} (`{op}`) into its operand {arg} of type {ty}, which is not float; cut the path with stop_gradient"
    )]
    Blocked {
        /// The node whose operand blocks the gradient.
        node: NodeId,
        /// Its op.
        op: &'static str,
        /// The operand.
        arg: NodeId,
        /// The operand's type.
        ty: TensorType,
    },
    /// A name that is not an output or a leaf of the graph.
    #[error("@{func} has no {what} named `{name}`")]
    UnknownName {
        /// The function.
        func: String,
        /// `output` or `input or parameter`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// The gradient output's name is taken (the graph was differentiated already).
    #[error("@{func} already has an output `{name}`")]
    OutputExists {
        /// The function.
        func: String,
        /// The output name.
        name: String,
    },
    /// Building a backward node failed: a bug in a VJP rule.
    #[error("internal error building the backward graph: {0}")]
    Graph(#[from] GraphError),
}

/// Appends to `graph` the gradient of the scalar `loss` with respect to each of `wrt`, and
/// returns the gradient nodes in order. A value the loss does not depend on gets zeros.
pub fn backprop(graph: &mut Graph, loss: NodeId, wrt: &[NodeId]) -> Result<Vec<NodeId>, AutodiffError> {
    let lt = graph.ty(loss).clone();
    if lt.rank() != 0 || !lt.dtype.is_float() {
        return Err(AutodiffError::BadLoss { node: loss, ty: lt });
    }
    let seed = graph.add_typed(Op::Const { value: kiln_ir::Literal(1.0) }, &[], lt)?;
    vjp(graph, &[(loss, seed)], wrt)
}

/// Appends the vector-Jacobian product of `roots` (pairs of a value and its cotangent, of the
/// value's type) with respect to each of `wrt`, and returns the products in order.
pub fn vjp(graph: &mut Graph, roots: &[(NodeId, NodeId)], wrt: &[NodeId]) -> Result<Vec<NodeId>, AutodiffError> {
    for &w in wrt {
        let ty = graph.ty(w);
        if !ty.dtype.is_float() {
            return Err(AutodiffError::NotFloat { node: w, ty: ty.clone() });
        }
    }
    let n = graph.len();
    // Which values depend on a requested one through edges that can carry a gradient?
    let mut depends = vec![false; n];
    for &w in wrt {
        depends[w.index()] = true;
    }
    for (id, node) in graph.nodes() {
        if depends[id.index()] {
            continue;
        }
        depends[id.index()] = node
            .args
            .iter()
            .enumerate()
            .any(|(i, a)| depends[a.index()] && rules::edge(node, i, graph.ty(*a).dtype) != Edge::Discrete);
    }
    let mut adjoint: HashMap<NodeId, NodeId> = HashMap::new();
    let mut e = Emit { g: graph };
    for &(root, cot) in roots {
        accumulate(&mut e, &mut adjoint, root, cot)?;
    }
    let top = roots.iter().map(|r| r.0.index()).max().unwrap_or(0);
    for i in (0..=top.min(n.saturating_sub(1))).rev() {
        let id = NodeId::from_index(i);
        if !depends[i] {
            continue;
        }
        let Some(&g) = adjoint.get(&id) else { continue };
        let node = e.g.node(id).clone();
        let mut want = vec![false; node.args.len()];
        for (k, a) in node.args.iter().enumerate() {
            if !depends[a.index()] {
                continue;
            }
            match rules::edge(&node, k, e.g.ty(*a).dtype) {
                Edge::Diff => want[k] = true,
                Edge::Discrete => {}
                Edge::Blocked => {
                    return Err(AutodiffError::Blocked {
                        node: id,
                        op: node.op.name(),
                        arg: *a,
                        ty: e.g.ty(*a).clone(),
                    });
                }
            }
        }
        if !want.iter().any(|&w| w) {
            continue;
        }
        let contribs = rules::vjp(&mut e, id, &node, g, &want)?;
        for (k, c) in contribs.into_iter().enumerate() {
            if let Some(c) = c {
                accumulate(&mut e, &mut adjoint, node.args[k], c)?;
            }
        }
    }
    wrt.iter()
        .map(|w| match adjoint.get(w) {
            Some(&g) => Ok(g),
            None => Ok(e.full_like(0.0, *w)?),
        })
        .collect()
}

fn accumulate(e: &mut Emit, adjoint: &mut HashMap<NodeId, NodeId>, x: NodeId, c: NodeId) -> Result<(), AutodiffError> {
    let sum = match adjoint.get(&x) {
        Some(&prev) => e.add(prev, c)?,
        None => c,
    };
    adjoint.insert(x, sum);
    Ok(())
}

/// The gradient graph: a copy of `graph` with, for every leaf named in `wrt` (every parameter
/// if `wrt` is empty), an output `grad.<name>` holding the gradient of the output `loss`.
pub fn grad(graph: &Graph, loss: &str, wrt: &[&str]) -> Result<Graph, AutodiffError> {
    let unknown = |what: &'static str, name: &str| AutodiffError::UnknownName {
        func: graph.name().into(),
        what,
        name: name.into(),
    };
    let loss_id = graph.outputs().iter().find(|o| o.name == loss).ok_or_else(|| unknown("output", loss))?.value;
    let names: Vec<String> = if wrt.is_empty() {
        graph.params().filter_map(|(_, n)| n.op.leaf_name().map(String::from)).collect()
    } else {
        wrt.iter().map(|s| s.to_string()).collect()
    };
    let ids = names
        .iter()
        .map(|nm| graph.leaf(nm).ok_or_else(|| unknown("input or parameter", nm)))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(taken) =
        names.iter().map(|nm| format!("grad.{nm}")).find(|o| graph.outputs().iter().any(|x| &x.name == o))
    {
        return Err(AutodiffError::OutputExists { func: graph.name().into(), name: taken });
    }
    let mut g = graph.clone();
    let grads = backprop(&mut g, loss_id, &ids)?;
    for (nm, gid) in names.iter().zip(grads) {
        g.add_output(format!("grad.{nm}"), gid)?;
    }
    Ok(g)
}
