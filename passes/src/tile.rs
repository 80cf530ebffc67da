//! The `tile` pass: a sum of zero pads that tile one axis becomes one pad of a concatenation.
//!
//! The gradient of many slices of one tensor (an LSTM's gates and time steps, heads split
//! from one projection) is the sum of their gradients, each zero-padded back to the full
//! tensor: `pad(g₀) + pad(g₁) + …`. That writes and reads the full tensor once per slice.
//! When the pads' supports sit side by side along one axis and coincide on the others, the
//! sum is `pad(concat(g₀, g₁, …))`: each element is written once. The pass finds maximal
//! trees of additions (inner additions used nowhere else) whose leaves are such pads and
//! rewrites each in one step, in linear time (an e-graph needs one iteration per summand).

use std::collections::HashMap;

use kiln_ir::{BinaryOp, Graph, GraphError, Literal, NodeId, Op};

use crate::dce::eliminate_dead_code;
use crate::pipeline::Pass;

/// The `tile` pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tile;

impl Pass for Tile {
    fn name(&self) -> &'static str {
        "tile"
    }

    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError> {
        let (g, merged) = tile_pad_sums(graph)?;
        Ok((
            g,
            if merged > 0 {
                format!("; tile: {merged} sums of pads became pads of concatenations")
            } else {
                String::new()
            },
        ))
    }
}

/// A zero pad as the pass sees it: its operand and its low and high padding.
struct ZeroPad<'a> {
    x: NodeId,
    low: &'a [usize],
    high: &'a [usize],
}

fn as_zero_pad(graph: &Graph, id: NodeId) -> Option<ZeroPad<'_>> {
    match &graph.node(id).op {
        Op::Pad { low, high, value } if value.0 == 0.0 => Some(ZeroPad { x: graph.node(id).args[0], low, high }),
        _ => None,
    }
}

/// The leaves of the addition tree rooted at `root`: operands of additions, descending into
/// additions used only by the tree. Returns the leaves and the inner additions.
fn add_tree(graph: &Graph, root: NodeId, uses: &[usize]) -> (Vec<NodeId>, Vec<NodeId>) {
    let (mut leaves, mut inner, mut stack) = (Vec::new(), vec![root], vec![root]);
    while let Some(n) = stack.pop() {
        for &a in graph.node(n).args.iter().rev() {
            if graph.node(a).op == Op::Binary(BinaryOp::Add) && uses[a.index()] == 1 {
                inner.push(a);
                stack.push(a);
            } else {
                leaves.push(a);
            }
        }
    }
    (leaves, inner)
}

/// A sum of pads that tile `axis`: `pad(concat(parts, axis), low, high)`.
struct Tiling {
    axis: usize,
    parts: Vec<NodeId>,
    low: Vec<usize>,
    high: Vec<usize>,
}

/// If the zero pads `leaves` tile one axis side by side (equal placement on every other
/// axis), that axis and the leaves' operands in order along it, with the combined padding.
fn tiling(graph: &Graph, leaves: &[NodeId]) -> Option<Tiling> {
    let pads: Vec<ZeroPad<'_>> = leaves.iter().map(|l| as_zero_pad(graph, *l)).collect::<Option<_>>()?;
    let first = pads.first()?;
    let rank = first.low.len();
    let dims = |p: &ZeroPad<'_>| graph.ty(p.x).dims().to_vec();
    let differs = |d: usize| pads.iter().any(|p| p.low[d] != first.low[d] || p.high[d] != first.high[d]);
    let axes: Vec<usize> = (0..rank).filter(|&d| differs(d)).collect();
    let [axis] = axes[..] else { return None };
    if pads.iter().any(|p| (0..rank).any(|d| d != axis && dims(p)[d] != dims(first)[d])) {
        return None;
    }
    let mut order: Vec<&ZeroPad<'_>> = pads.iter().collect();
    order.sort_by_key(|p| p.low[axis]);
    let touching = order.windows(2).all(|w| w[0].low[axis] + dims(w[0])[axis] == w[1].low[axis]);
    if !touching {
        return None;
    }
    let mut low = first.low.to_vec();
    let mut high = first.high.to_vec();
    low[axis] = order[0].low[axis];
    high[axis] = order[order.len() - 1].high[axis];
    Some(Tiling { axis, parts: order.iter().map(|p| p.x).collect(), low, high })
}

/// Rewrites every maximal sum of tiling zero pads; returns the graph and how many sums changed.
pub fn tile_pad_sums(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let live = graph.live_mask();
    let uses = graph.use_counts();
    // Roots from the last node backwards, so the largest tree wins.
    let mut plan: HashMap<NodeId, Tiling> = HashMap::new();
    let mut covered = vec![false; graph.len()];
    for i in (0..graph.len()).rev() {
        let id = NodeId::from_index(i);
        let node = graph.node(id);
        if !live[i] || covered[i] || node.op != Op::Binary(BinaryOp::Add) || !node.ty.dtype.is_float() {
            continue;
        }
        let (leaves, inner) = add_tree(graph, id, &uses);
        if let Some(t) = tiling(graph, &leaves) {
            for n in inner {
                covered[n.index()] = true;
            }
            plan.insert(id, t);
        }
    }
    if plan.is_empty() {
        return Ok((graph.clone(), 0));
    }
    let mut out = Graph::new(graph.name());
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    for (id, node) in graph.nodes() {
        let new = match (&node.op, plan.get(&id)) {
            (Op::Input { name }, _) => out.input(name.clone(), node.ty.clone())?,
            (Op::Param { name, init }, _) => out.param(name.clone(), node.ty.clone(), *init)?,
            (_, Some(t)) => {
                let parts: Vec<NodeId> = t.parts.iter().map(|p| map[p]).collect();
                let cat = out.add(Op::Concat { axis: t.axis }, &parts)?;
                out.add(Op::Pad { low: t.low.clone(), high: t.high.clone(), value: Literal(0.0) }, &[cat])?
            }
            (op, None) => {
                let args: Vec<NodeId> = node.args.iter().map(|a| map[a]).collect();
                out.add_typed(op.clone(), &args, node.ty.clone())?
            }
        };
        map.insert(id, new);
    }
    for o in graph.outputs() {
        out.add_output(o.name.clone(), map[&o.value])?;
    }
    Ok((eliminate_dead_code(&out)?, plan.len()))
}
