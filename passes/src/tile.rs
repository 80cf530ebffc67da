//! The `tile` pass: sums whose terms are pieces of one bigger computation become that
//! computation.
//!
//! - **Pads that tile an axis.** The gradient of many slices of one tensor (an LSTM's gates
//!   and time steps, heads split from one projection) is the sum of their gradients, each
//!   zero-padded back to the full tensor: `pad(g₀) + pad(g₁) + …`, which writes and reads the
//!   full tensor once per slice. When the pads' supports sit side by side along one axis and
//!   coincide on the others, the sum is `pad(concat(g₀, g₁, …))`: each element written once.
//! - **Products that share their output.** The gradient of a weight used at every step of a
//!   recurrence is `Σₜ aₜ·bₜ` (T small GEMMs and a T-way sum); it is one GEMM over the
//!   contracted axis concatenated: `concat(aₜ, axis 1) · concat(bₜ, axis 0)`. Where every
//!   `aₜ` (or `bₜ`) is a transpose, the transpose moves outside the concatenation, so the
//!   GEMM still reads it through strides.
//!
//! The pass finds maximal trees of additions (inner additions used nowhere else) whose leaves
//! are all such pads or all such products (each used only by the tree) and rewrites each in
//! one step, in linear time (an e-graph needs one iteration per summand).

use std::collections::HashMap;

use kiln_ir::{BinaryOp, Graph, GraphError, Literal, NodeId, Op, TensorType};

use crate::cost_model::CostModel;
use crate::egraph::cost;

use crate::dce::eliminate_dead_code;
use crate::pipeline::Pass;
use crate::rebuild::rebuild_replacing;

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
                format!("; tile: {merged} sums of pads or products became one pad or one product of concatenations")
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

/// A sum of 2-D matmuls with one result type: `matmul(concat(lhs, 1), concat(rhs, 0))`.
struct ProductSum {
    lhs: Vec<NodeId>,
    rhs: Vec<NodeId>,
}

/// If `leaves` are two or more float 2-D matmuls of one result type, each used only here,
/// their operands.
fn product_sum(graph: &Graph, leaves: &[NodeId], uses: &[usize]) -> Option<ProductSum> {
    let ty = graph.ty(*leaves.first()?);
    if leaves.len() < 2 || ty.rank() != 2 || !ty.dtype.is_float() {
        return None;
    }
    let mut sum = ProductSum { lhs: Vec::new(), rhs: Vec::new() };
    // In program order (the tree's shape is arbitrary).
    let mut leaves = leaves.to_vec();
    leaves.sort_unstable();
    for &l in &leaves {
        let n = graph.node(l);
        if n.op != Op::Matmul || graph.ty(l) != ty || uses[l.index()] != 1 {
            return None;
        }
        sum.lhs.push(n.args[0]);
        sum.rhs.push(n.args[1]);
    }
    // Priced with the optimizer's cost model: the T products and T − 1 additions (and the
    // transposes that die with them) against two concatenations and one product. Summing
    // projections of one activation through several weights (a transformer's q, k, v) would
    // copy the weights every step and is rejected here.
    let model = CostModel::current();
    let node_cost = |op: &Op, ty: &TensorType, args: &[&TensorType]| cost::node_cost(model, op, ty, args);
    let cost = |id: NodeId| {
        let n = graph.node(id);
        let args: Vec<&TensorType> = n.args.iter().map(|a| graph.ty(*a)).collect();
        node_cost(&n.op, &n.ty, &args)
    };
    let dying_transposes = |parts: &[NodeId]| -> f64 {
        parts.iter().filter(|p| is_transpose(graph, **p) && uses[p.index()] == 1).map(|p| cost(*p)).sum()
    };
    let before: f64 = leaves.iter().map(|l| cost(*l)).sum::<f64>()
        + (leaves.len() - 1) as f64 * node_cost(&Op::Binary(BinaryOp::Add), ty, &[ty, ty])
        + dying_transposes(&sum.lhs)
        + dying_transposes(&sum.rhs);
    let (m, n) = (ty.dims()[0], ty.dims()[1]);
    let k: usize = sum.lhs.iter().map(|a| graph.ty(*a).dims()[1]).sum();
    let a = TensorType::new(ty.dtype, vec![m, k]);
    let b = TensorType::new(ty.dtype, vec![k, n]);
    let concat = |t: &TensorType, parts: &[NodeId]| {
        let c = node_cost(&Op::Concat { axis: 0 }, t, &[]);
        // A transposed concatenation adds one transpose (folded into the GEMM, but priced).
        if parts.iter().all(|p| is_transpose(graph, *p)) {
            c + node_cost(&Op::Permute { perm: vec![1, 0] }, t, &[])
        } else {
            c
        }
    };
    let after = concat(&a, &sum.lhs) + concat(&b, &sum.rhs) + node_cost(&Op::Matmul, ty, &[&a, &b]);
    (after <= before).then_some(sum)
}

/// True for a 2-D transpose.
fn is_transpose(graph: &Graph, id: NodeId) -> bool {
    matches!(&graph.node(id).op, Op::Permute { perm } if perm[..] == [1, 0])
}

/// The rewrite of one addition tree.
enum Rewrite {
    Pads(Tiling),
    Products(ProductSum),
}

/// `concat(parts, axis)` of 2-D operands; when every part is a transpose, `permute(concat of
/// their sources along the other axis)`, so the transpose stays foldable into a GEMM.
fn concat_2d(
    graph: &Graph,
    out: &mut Graph,
    map: &HashMap<NodeId, NodeId>,
    parts: &[NodeId],
    axis: usize,
) -> Result<NodeId, GraphError> {
    let transposed: Option<Vec<NodeId>> =
        parts.iter().map(|p| is_transpose(graph, *p).then(|| graph.node(*p).args[0])).collect();
    match transposed {
        Some(sources) => {
            let sources: Vec<NodeId> = sources.iter().map(|p| map[p]).collect();
            let cat = out.add(Op::Concat { axis: 1 - axis }, &sources)?;
            out.add(Op::Permute { perm: vec![1, 0] }, &[cat])
        }
        None => {
            let parts: Vec<NodeId> = parts.iter().map(|p| map[p]).collect();
            out.add(Op::Concat { axis }, &parts)
        }
    }
}

/// Rewrites every maximal sum of tiling zero pads or of products sharing their output;
/// returns the graph and how many sums changed.
pub fn tile_pad_sums(graph: &Graph) -> Result<(Graph, usize), GraphError> {
    let live = graph.live_mask();
    let uses = graph.use_counts();
    // Roots from the last node backwards, so the largest tree wins.
    let mut plan: HashMap<NodeId, Rewrite> = HashMap::new();
    let mut covered = vec![false; graph.len()];
    for i in (0..graph.len()).rev() {
        let id = NodeId::from_index(i);
        let node = graph.node(id);
        if !live[i] || covered[i] || node.op != Op::Binary(BinaryOp::Add) || !node.ty.dtype.is_float() {
            continue;
        }
        let (leaves, inner) = add_tree(graph, id, &uses);
        let rewrite = match tiling(graph, &leaves) {
            Some(t) => Some(Rewrite::Pads(t)),
            None => product_sum(graph, &leaves, &uses).map(Rewrite::Products),
        };
        if let Some(r) = rewrite {
            for n in inner {
                covered[n.index()] = true;
            }
            plan.insert(id, r);
        }
    }
    if plan.is_empty() {
        return Ok((graph.clone(), 0));
    }
    let out = rebuild_replacing(
        graph,
        |out, id, map| {
            Ok(match plan.get(&id) {
                None => None,
                Some(Rewrite::Pads(t)) => {
                    let parts: Vec<NodeId> = t.parts.iter().map(|p| map[p]).collect();
                    let cat = out.add(Op::Concat { axis: t.axis }, &parts)?;
                    Some(out.add(Op::Pad { low: t.low.clone(), high: t.high.clone(), value: Literal(0.0) }, &[cat])?)
                }
                Some(Rewrite::Products(p)) => {
                    let a = concat_2d(graph, out, map, &p.lhs, 1)?;
                    let b = concat_2d(graph, out, map, &p.rhs, 0)?;
                    Some(out.add(Op::Matmul, &[a, b])?)
                }
            })
        },
        |_| true,
        |_, _| {},
    )?;
    Ok((eliminate_dead_code(&out)?, plan.len()))
}
