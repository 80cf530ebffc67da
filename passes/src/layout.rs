//! Layout assignment: whether a graph's convolutions run channels-first (`[N, C, H, W]`, the
//! frontend's layout) or channels-last (`[N, H, W, C]`), chosen for the whole graph (a training
//! step's forward and backward together) by the cost model.
//!
//! [`channels_last`] rewrites every convolution to the channels-last layout and carries the
//! new order forward: each value of the rewritten graph holds its original value with the axes
//! permuted by a per-value order (its physical layout), which passes unchanged through
//! elementwise ops, reductions (pooling's `reduce_max`), reshapes that split or merge axes
//! adjacent in that order (pooling's windows), broadcasts, pads, slices and permutes (which then
//! cost nothing, or cancel). Where a value meets an op that needs it in its original order
//! (a GEMM, a concatenation, a flatten across channels, a graph output), one `permute` puts it
//! back; one that only moves size-1 axes is a free `reshape`. Weights keep `[O, C/G, KH, KW]`,
//! so parameters and checkpoints never change layout.
//!
//! The pass ([`Layout`]) prices both graphs with the cost model over their fused kernels and
//! keeps the cheaper, reporting both predictions. [`channels_first`] undoes the choice for a
//! backend without channels-last kernels (same values: it puts a permute on each side of each
//! convolution).

use std::collections::HashMap;

use kiln_ir::{ConvLayout, Graph, GraphError, NodeId, Op, TensorType};

use crate::cost_model::CostModel;
use crate::fuse::{Mode, partition};
use crate::pipeline::Pass;

/// The physical order of a value: physical axis `i` holds original axis `order[i]`; `None`
/// is the original order.
type Order = Option<Vec<usize>>;

/// The channels-last order of a `[N, C, H, W]` activation.
const NHWC: [usize; 4] = [0, 2, 3, 1];

/// The layout pass: rewrites convolutions channels-last where the cost model prices the whole
/// graph cheaper that way (or always, or never, when forced).
#[derive(Clone, Copy, Debug, Default)]
pub struct Layout {
    /// `Some(layout)` skips the pricing and uses `layout`.
    pub forced: Option<ConvLayout>,
}

impl Pass for Layout {
    fn name(&self) -> &'static str {
        match self.forced {
            Some(ConvLayout::Nhwc) => "nhwc",
            _ => "layout",
        }
    }

    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError> {
        let convs = graph.nodes().filter(|(_, n)| n.op.conv().is_some()).count();
        if convs == 0 {
            return Ok((graph.clone(), String::new()));
        }
        // A graph that already has channels-last convolutions (this pass ran on it) is the
        // channels-last candidate as it is, so optimizing twice changes nothing.
        let (first, last) = match channels_first_if_needed(graph)? {
            Some(first) => (first, graph.clone()),
            None => {
                let last = channels_last(graph)?;
                (graph.clone(), last)
            }
        };
        let (before, after) = (predicted_us(&first), predicted_us(&last));
        let choice = self.forced.unwrap_or(if after < before { ConvLayout::Nhwc } else { ConvLayout::Nchw });
        let why = match self.forced {
            Some(_) => "forced".to_string(),
            None => format!("predicted {after:.1} µs channels-last against {before:.1} µs channels-first"),
        };
        let (out, changes) = match choice {
            ConvLayout::Nhwc => {
                let changes = layout_changes(&first, &last);
                (last, changes)
            }
            ConvLayout::Nchw => (first, 0),
        };
        let report = format!(
            "; layout: {convs} convolution(s) {} ({why}); {changes} layout change(s) added",
            match choice {
                ConvLayout::Nchw => "channels-first",
                ConvLayout::Nhwc => "channels-last",
            }
        );
        Ok((out, report))
    }
}

/// The cost model's prediction for `graph`, in µs: the sum over its fused steps.
pub fn predicted_us(graph: &Graph) -> f64 {
    let model = CostModel::current();
    partition(graph, Mode::Fused).iter().map(|g| model.predict_group(graph, g)).sum::<f64>() / 1000.0
}

/// Permutes in `after` beyond those in `before`: the layout changes the rewrite put in.
fn layout_changes(before: &Graph, after: &Graph) -> usize {
    let permutes = |g: &Graph| g.nodes().filter(|(_, n)| matches!(n.op, Op::Permute { .. })).count();
    permutes(after).saturating_sub(permutes(before))
}

/// `graph` with every convolution channels-first: a channels-last one becomes a permute of its
/// activations to `[N, C, H, W]`, the channels-first op, and a permute back. Values do not
/// change (a permute moves elements exactly).
pub fn channels_first(graph: &Graph) -> Result<Graph, GraphError> {
    let mut out = Graph::new(graph.name());
    let mut map: HashMap<NodeId, NodeId> = HashMap::new();
    let to_first = [0, 3, 1, 2];
    for (id, node) in graph.nodes() {
        let args: Vec<NodeId> = node.args.iter().map(|a| map[a]).collect();
        let new = match (&node.op, node.op.conv()) {
            (Op::Input { name }, _) => out.input(name.clone(), node.ty.clone())?,
            (Op::Param { name, init }, _) => out.param(name.clone(), node.ty.clone(), *init)?,
            (op, Some((kind, attrs))) if attrs.layout == ConvLayout::Nhwc => {
                let attrs = kiln_ir::ConvAttrs { layout: ConvLayout::Nchw, ..attrs };
                let first = |out: &mut Graph, a: NodeId| out.add(Op::Permute { perm: to_first.to_vec() }, &[a]);
                // Which operands are activations: (x, w), (dy, w), (x, dy).
                let activations = match kind {
                    kiln_ir::ConvKind::Forward | kiln_ir::ConvKind::GradInput => [true, false],
                    kiln_ir::ConvKind::GradWeight => [true, true],
                };
                let mut a = args.clone();
                for (i, act) in activations.iter().enumerate() {
                    if *act {
                        a[i] = first(&mut out, a[i])?;
                    }
                }
                let op = match op {
                    Op::Conv2d(_) => Op::Conv2d(attrs),
                    Op::Conv2dGradInput(_) => Op::Conv2dGradInput(attrs),
                    _ => Op::Conv2dGradWeight(attrs),
                };
                match kind {
                    kiln_ir::ConvKind::GradWeight => out.add_typed(op, &a, node.ty.clone())?,
                    kiln_ir::ConvKind::Forward => {
                        let y = out.add(op, &a)?;
                        out.add(Op::Permute { perm: NHWC.to_vec() }, &[y])?
                    }
                    kiln_ir::ConvKind::GradInput => {
                        let dims = ConvLayout::Nhwc.nchw(node.ty.dims());
                        let y = out.add_typed(op, &a, TensorType::new(node.ty.dtype, dims.to_vec()))?;
                        out.add(Op::Permute { perm: NHWC.to_vec() }, &[y])?
                    }
                }
            }
            (op, _) => out.add_typed(op.clone(), &args, node.ty.clone())?,
        };
        map.insert(id, new);
    }
    for o in graph.outputs() {
        out.add_output(o.name.clone(), map[&o.value])?;
    }
    Ok(out)
}

/// [`channels_first`] of `graph` when it has a channels-last convolution, else `None` (the
/// graph as it is): for backends whose convolution kernels are channels-first only.
pub fn channels_first_if_needed(graph: &Graph) -> Result<Option<Graph>, GraphError> {
    let any = graph.nodes().any(|(_, n)| n.op.conv().is_some_and(|(_, a)| a.layout == ConvLayout::Nhwc));
    if any { channels_first(graph).map(Some) } else { Ok(None) }
}

/// `graph` (channels-first) with every convolution channels-last and the order carried as far
/// as it goes (see the module's header).
pub fn channels_last(graph: &Graph) -> Result<Graph, GraphError> {
    let mut r = Rewrite { graph, out: Graph::new(graph.name()), map: HashMap::new(), views: HashMap::new() };
    for (id, node) in graph.nodes() {
        let placed = match &node.op {
            Op::Input { name } => (r.out.input(name.clone(), node.ty.clone())?, None),
            Op::Param { name, init } => (r.out.param(name.clone(), node.ty.clone(), *init)?, None),
            _ => r.node(id)?,
        };
        r.map.insert(id, placed);
    }
    for o in graph.outputs() {
        let v = r.view(o.value, &None)?;
        r.out.add_output(o.name.clone(), v)?;
    }
    // Copies made in the original order that no op ended up reading.
    Ok(crate::dce::Dce.run(&r.out)?.0)
}

/// The state of [`channels_last`]: each original node's copy and the order it holds.
struct Rewrite<'g> {
    graph: &'g Graph,
    out: Graph,
    map: HashMap<NodeId, (NodeId, Order)>,
    /// Copies already put in another order: (original node, order) → node.
    views: HashMap<(NodeId, Order), NodeId>,
}

/// `dims` read in `order`.
fn arrange(dims: &[usize], order: &Order) -> Vec<usize> {
    match order {
        None => dims.to_vec(),
        Some(o) => o.iter().map(|&a| dims[a]).collect(),
    }
}

/// `None` for the identity.
fn normalized(order: Vec<usize>) -> Order {
    if order.iter().enumerate().all(|(i, &a)| i == a) { None } else { Some(order) }
}

/// Whether moving from order `from` to `to` keeps every axis longer than 1 in its relative
/// place (so the elements do not move, and a reshape does it).
fn only_unit_axes_move(dims: &[usize], from: &[usize], to: &[usize]) -> bool {
    let long = |o: &[usize]| o.iter().copied().filter(|&a| dims[a] != 1).collect::<Vec<_>>();
    long(from) == long(to)
}

impl Rewrite<'_> {
    /// The copy of original `id` in `order`, adding a permute (or a reshape) when it is held in
    /// another one.
    fn view(&mut self, id: NodeId, order: &Order) -> Result<NodeId, GraphError> {
        let (held, have) = self.map[&id].clone();
        if have == *order {
            return Ok(held);
        }
        if let Some(v) = self.views.get(&(id, order.clone())) {
            return Ok(*v);
        }
        let ty = self.graph.ty(id);
        let rank = ty.rank();
        let identity: Vec<usize> = (0..rank).collect();
        let (from, to) = (have.clone().unwrap_or(identity.clone()), order.clone().unwrap_or(identity));
        let target = TensorType::new(ty.dtype, arrange(ty.dims(), order));
        let g = self.graph;
        let node = g.node(id);
        let v = if let Op::Const { value } = &node.op {
            self.out.add_typed(Op::Const { value: *value }, &[], target)?
        } else if let Op::Broadcast { dims } = &node.op {
            // A broadcast is made again in the wanted order (a permute of its result would be
            // materialized): the operand's axes sorted by where they land.
            let landing: Vec<usize> = dims.iter().map(|d| to.iter().position(|a| a == d).unwrap_or(0)).collect();
            let mut operand_order: Vec<usize> = (0..dims.len()).collect();
            operand_order.sort_by_key(|&a| landing[a]);
            let new_dims = operand_order.iter().map(|&a| landing[a]).collect();
            let operand = self.view(node.args[0], &normalized(operand_order))?;
            self.out.add_typed(Op::Broadcast { dims: new_dims }, &[operand], target)?
        } else if only_unit_axes_move(ty.dims(), &from, &to) {
            // A reshape of a reshape is one reshape of the first one's operand.
            let source = match &self.out.node(held).op {
                Op::Reshape => self.out.node(held).args[0],
                _ => held,
            };
            self.out.add_typed(Op::Reshape, &[source], target)?
        } else {
            // Result axis i holds original axis to[i], which the held copy has at position
            // from⁻¹(to[i]).
            let perm = to.iter().map(|a| from.iter().position(|b| b == a).unwrap_or(0)).collect();
            self.out.add(Op::Permute { perm }, &[held])?
        };
        self.views.insert((id, order.clone()), v);
        Ok(v)
    }

    /// The order original `id` is held in.
    fn order(&self, id: NodeId) -> Order {
        self.map[&id].1.clone()
    }

    /// Rewrites one non-leaf node: its copy and the order the copy holds.
    fn node(&mut self, id: NodeId) -> Result<(NodeId, Order), GraphError> {
        let g = self.graph;
        let node = g.node(id);
        let ty = &node.ty;
        let args = &node.args;
        let nhwc = Some(NHWC.to_vec());
        if let Some((kind, attrs)) = node.op.conv() {
            let attrs = kiln_ir::ConvAttrs { layout: ConvLayout::Nhwc, ..attrs };
            return Ok(match kind {
                kiln_ir::ConvKind::Forward => {
                    let (x, w) = (self.view(args[0], &nhwc)?, self.view(args[1], &None)?);
                    (self.out.add(Op::Conv2d(attrs), &[x, w])?, nhwc)
                }
                kiln_ir::ConvKind::GradInput => {
                    let (dy, w) = (self.view(args[0], &nhwc)?, self.view(args[1], &None)?);
                    let t = TensorType::new(ty.dtype, arrange(ty.dims(), &nhwc));
                    (self.out.add_typed(Op::Conv2dGradInput(attrs), &[dy, w], t)?, nhwc)
                }
                kiln_ir::ConvKind::GradWeight => {
                    let (x, dy) = (self.view(args[0], &nhwc)?, self.view(args[1], &nhwc)?);
                    (self.out.add_typed(Op::Conv2dGradWeight(attrs), &[x, dy], ty.clone())?, None)
                }
            });
        }
        let physical = |order: &Order| TensorType::new(ty.dtype, arrange(ty.dims(), order));
        match &node.op {
            Op::Unary(_) | Op::StopGradient | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast
                if ty.rank() > 1 =>
            {
                // The first operand held in another order sets it for all, preferring one that
                // is computed over one that only moves data (a broadcast is made again in any
                // order for free; a permute's order is only a view of its operand).
                let moves = |a: &NodeId| matches!(g.node(*a).op, Op::Broadcast { .. } | Op::Permute { .. });
                let order = args
                    .iter()
                    .filter(|a| !moves(a))
                    .chain(args.iter().filter(|a| moves(a)))
                    .map(|a| self.order(*a))
                    .find(Option::is_some)
                    .flatten();
                let a = args.iter().map(|a| self.view(*a, &order)).collect::<Result<Vec<_>, _>>()?;
                Ok((self.out.add_typed(node.op.clone(), &a, physical(&order))?, order))
            }
            Op::Reduce { op, axes } => {
                let Some(order) = self.order(args[0]) else { return self.plain(id) };
                let held = self.view(args[0], &Some(order.clone()))?;
                let new_axes: Vec<usize> = (0..order.len()).filter(|&j| axes.contains(&order[j])).collect();
                let kept: Vec<usize> = order
                    .iter()
                    .filter(|a| !axes.contains(a))
                    .map(|&a| a - axes.iter().filter(|&&r| r < a).count())
                    .collect();
                let out_order = normalized(kept);
                let op = Op::Reduce { op: *op, axes: new_axes };
                Ok((self.out.add_typed(op, &[held], physical(&out_order))?, out_order))
            }
            Op::Reshape => {
                let Some(order) = self.order(args[0]) else { return self.plain(id) };
                let from = g.ty(args[0]).dims();
                let Some(out_order) = reshape_order(from, &order, ty.dims()) else { return self.plain(id) };
                let held = self.view(args[0], &Some(order))?;
                let out_order = normalized(out_order);
                Ok((self.out.add_typed(Op::Reshape, &[held], physical(&out_order))?, out_order))
            }
            Op::Permute { perm } => {
                // Result axis i is operand axis perm[i]: holding the operand's copy as it is
                // gives the result in order perm⁻¹ ∘ (operand's order), with no data moved (a
                // reader that needs another order composes one permute from there).
                let order = self.order(args[0]).unwrap_or_else(|| (0..perm.len()).collect());
                let held = self.view(args[0], &Some(order.clone()).filter(|o| normalized(o.clone()).is_some()))?;
                let inverse: Vec<usize> =
                    (0..perm.len()).map(|a| perm.iter().position(|&p| p == a).unwrap_or(0)).collect();
                Ok((held, normalized(order.iter().map(|&a| inverse[a]).collect())))
            }
            Op::Broadcast { dims } => {
                let Some(order) = self.order(args[0]) else { return self.plain(id) };
                let held = self.view(args[0], &Some(order.clone()))?;
                // The result's axes that come from the operand take the operand's order, in
                // the slots they had; the new axes stay where they were.
                let mut out_order: Vec<usize> = (0..ty.rank()).collect();
                for (slot, &a) in dims.iter().zip(&order) {
                    out_order[*slot] = dims[a];
                }
                let new_dims =
                    order.iter().map(|&a| out_order.iter().position(|&o| o == dims[a]).unwrap_or(0)).collect();
                let out_order = normalized(out_order);
                Ok((self.out.add_typed(Op::Broadcast { dims: new_dims }, &[held], physical(&out_order))?, out_order))
            }
            Op::Pad { low, high, value } => {
                let Some(order) = self.order(args[0]) else { return self.plain(id) };
                let held = self.view(args[0], &Some(order.clone()))?;
                let op = Op::Pad {
                    low: order.iter().map(|&a| low[a]).collect(),
                    high: order.iter().map(|&a| high[a]).collect(),
                    value: *value,
                };
                let order = Some(order);
                Ok((self.out.add_typed(op, &[held], physical(&order))?, order))
            }
            Op::Slice { start, stop, step } => {
                let Some(order) = self.order(args[0]) else { return self.plain(id) };
                let held = self.view(args[0], &Some(order.clone()))?;
                let pick = |v: &[usize]| order.iter().map(|&a| v[a]).collect();
                let op = Op::Slice { start: pick(start), stop: pick(stop), step: pick(step) };
                let order = Some(order);
                Ok((self.out.add_typed(op, &[held], physical(&order))?, order))
            }
            _ => self.plain(id),
        }
    }

    /// Copies `id` over its operands in their original order.
    fn plain(&mut self, id: NodeId) -> Result<(NodeId, Order), GraphError> {
        let node = self.graph.node(id);
        let a = node.args.iter().map(|a| self.view(*a, &None)).collect::<Result<Vec<_>, _>>()?;
        Ok((self.out.add_typed(node.op.clone(), &a, node.ty.clone())?, None))
    }
}

/// The order of a reshape's result when its operand (extents `from`) is held in `order`: each
/// group of operand axes that becomes a group of result axes (equal products) must lie
/// adjacent and ascending in `order`; the result's groups then follow their operand groups.
/// Axes of extent 1 belong to no group and go right after the axis before them. `None` when a
/// group is split up by the order.
fn reshape_order(from: &[usize], order: &[usize], to: &[usize]) -> Option<Vec<usize>> {
    let long_from: Vec<usize> = (0..from.len()).filter(|&a| from[a] != 1).collect();
    let long_to: Vec<usize> = (0..to.len()).filter(|&a| to[a] != 1).collect();
    // Groups of (operand axes, result axes) with equal products, in original order.
    let mut groups: Vec<(Vec<usize>, Vec<usize>)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < long_from.len() && j < long_to.len() {
        let (mut gi, mut gj) = (vec![long_from[i]], vec![long_to[j]]);
        let (mut pi, mut pj) = (from[long_from[i]], to[long_to[j]]);
        i += 1;
        j += 1;
        while pi != pj {
            if pi < pj {
                gi.push(*long_from.get(i)?);
                pi *= from[long_from[i]];
                i += 1;
            } else {
                gj.push(*long_to.get(j)?);
                pj *= to[long_to[j]];
                j += 1;
            }
        }
        groups.push((gi, gj));
    }
    if i != long_from.len() || j != long_to.len() {
        return None;
    }
    // Where each long operand axis sits in the held order (unit axes skipped).
    let held: Vec<usize> = order.iter().copied().filter(|&a| from[a] != 1).collect();
    let mut placed: Vec<(usize, &Vec<usize>)> = Vec::new();
    for (gi, gj) in &groups {
        let at = held.iter().position(|&a| a == gi[0])?;
        if held.get(at..at + gi.len())? != gi.as_slice() {
            return None;
        }
        placed.push((at, gj));
    }
    placed.sort();
    let mut out: Vec<usize> = placed.into_iter().flat_map(|(_, gj)| gj.iter().copied()).collect();
    // Unit result axes right after the result axis before them (or first).
    for a in (0..to.len()).filter(|&a| to[a] == 1) {
        let at = match a.checked_sub(1) {
            Some(prev) => out.iter().position(|&b| b == prev).map_or(0, |p| p + 1),
            None => 0,
        };
        out.insert(at, a);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::reshape_order;

    #[test]
    fn pooling_windows_follow_channels_last() {
        // [N, C, 28, 28] held as N, H, W, C, split into 14×2 windows.
        let order = reshape_order(&[4, 6, 28, 28], &[0, 2, 3, 1], &[4, 6, 14, 2, 14, 2]);
        assert_eq!(order, Some(vec![0, 2, 3, 4, 5, 1]));
    }

    #[test]
    fn flatten_across_channels_needs_the_original_order() {
        assert_eq!(reshape_order(&[4, 16, 5, 5], &[0, 2, 3, 1], &[4, 400]), None);
    }

    #[test]
    fn unit_axes_ride_along() {
        let order = reshape_order(&[1, 6, 4, 4], &[0, 2, 3, 1], &[1, 6, 2, 2, 4]);
        assert_eq!(order, Some(vec![0, 2, 3, 4, 1]));
    }
}
