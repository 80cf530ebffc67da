//! Fusion partitioning: groups the nodes of a graph into kernels.
//!
//! Chains of elementwise ops of one shape become one group, with broadcasts of materialized
//! tensors folded into how the group reads them; a `reduce_sum`/`reduce_max` roots a group
//! that computes its operand's chain and reduces it in the same loop nest. A node joins its consumers'
//! group when every consumer is in that one group and it is not a graph output. A cheap
//! producer read by several kernels is **recomputed** inside each of them instead of stored,
//! when the measured cost model ([`crate::cost_model`]) predicts that recomputing it (its
//! arithmetic, and its operands read by each kernel) costs less than storing it (one write and
//! a read per kernel); only exactly rounded ops are recomputed (no transcendental, whose inline
//! approximation could round differently), and never into a kernel with a `reduce_max` (a
//! multiply-add contracted in one kernel and not in another differs by a rounding: a softmax's
//! shift must see the bits its exponent sees). Results change by rounding at most. The decisions,
//! with both predictions, come back from [`partition_with_choices`]; so do the merges of
//! kernels into multi-output kernels ([`crate::multi_output`]), made last. Everything else roots a
//! group of its own. A floating-point
//! `matmul` roots a contraction group that absorbs the transposes of its operands (they
//! become strides of the GEMM call); convolutions are contraction groups of their own. Data
//! movement stays in single-node groups for the reference implementations. [`Mode::Unfused`] puts every node in
//! its own group: the baseline for benchmarks.

use kiln_ir::{BinaryOp, Graph, NodeId, Op};

use crate::group_dag::GroupDag;

/// Whether to fuse.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// Fuse elementwise chains.
    #[default]
    Fused,
    /// Every node its own kernel.
    Unfused,
}

/// How a group runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupKind {
    /// A generated elementwise kernel.
    Elementwise,
    /// One op run by the runtime's reference implementation.
    Op,
    /// A floating-point `matmul` or a convolution (or one of its gradients), run by the
    /// runtime's GEMM-based routines. A matmul's group also holds the transposes of its
    /// operands (a `permute` swapping the last two axes, read by nothing else): the GEMM
    /// reads the permute's operand through swapped strides; and it may end in an elementwise
    /// epilogue (bias, activation, ...) applied to each band of rows as the GEMM finishes it
    /// ([`epilogue_split`]); the group's root is then the epilogue's.
    Contraction,
    /// A `pad` or `concat`, done by the runtime with block copies.
    Movement,
}

/// A set of nodes computed together; the root is materialized, and so are the side
/// outputs of a multi-output kernel ([`crate::multi_output`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Members in arena order; the last is the root.
    pub members: Vec<NodeId>,
    /// How it runs.
    pub kind: GroupKind,
    /// Members other than the root that the group's kernel also stores (values other groups
    /// read), in arena order; empty but for merged elementwise kernels.
    pub side_outputs: Vec<NodeId>,
}

impl Group {
    /// A group of `members` (in arena order, ending with the root) storing only its root.
    pub fn new(members: Vec<NodeId>, kind: GroupKind) -> Group {
        Group { members, kind, side_outputs: Vec::new() }
    }

    /// The materialized node.
    pub fn root(&self) -> NodeId {
        *self.members.last().expect("groups are never empty")
    }

    /// Every node the group stores: its root, then its side outputs.
    pub fn stored(&self) -> impl Iterator<Item = NodeId> + '_ {
        std::iter::once(self.root()).chain(self.side_outputs.iter().copied())
    }
}

/// True for nodes a generated elementwise kernel computes.
pub fn is_elementwise(graph: &Graph, id: NodeId) -> bool {
    let n = graph.node(id);
    match &n.op {
        // Integer division stays with the runtime, which reports division by zero.
        Op::Binary(BinaryOp::Div) => n.ty.dtype.is_float(),
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast | Op::StopGradient | Op::Const { .. } => {
            true
        }
        // Movement that a kernel does by reading its operand through strides.
        Op::Broadcast { .. } | Op::Slice { .. } | Op::Permute { .. } => true,
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Iota { .. }
        | Op::Rng { .. }
        | Op::Reduce { .. }
        | Op::Reshape
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::Matmul
        | Op::Conv2d(_)
        | Op::Conv2dGradInput(_)
        | Op::Conv2dGradWeight(_)
        | Op::Gather { .. }
        | Op::ScatterAdd { .. } => false,
    }
}

/// True for the ops a kernel lowers to strided loads of a materialized operand: their operand
/// cannot be computed inside the same kernel.
pub(crate) fn reads_materialized(op: &Op) -> bool {
    matches!(op, Op::Broadcast { .. } | Op::Slice { .. } | Op::Permute { .. })
}

/// If `id` is a `permute` that swaps the last two axes and keeps the others, its operand.
pub fn transpose_of(graph: &Graph, id: NodeId) -> Option<NodeId> {
    let node = graph.node(id);
    let Op::Permute { perm } = &node.op else { return None };
    let r = perm.len();
    let swaps_last_two = r >= 2
        && perm[..r - 2].iter().enumerate().all(|(i, p)| *p == i)
        && perm[r - 2] == r - 1
        && perm[r - 1] == r - 2;
    swaps_last_two.then(|| node.args[0])
}

/// True for a `matmul` the runtime's GEMM computes (floating-point operands).
pub fn is_gemm(graph: &Graph, id: NodeId) -> bool {
    matches!(graph.node(id).op, Op::Matmul) && graph.ty(id).dtype.is_float()
}

/// True for the nodes a [`GroupKind::Contraction`] group is rooted at: float matmuls and
/// convolutions with their gradients.
pub fn is_contraction(graph: &Graph, id: NodeId) -> bool {
    is_gemm(graph, id) || matches!(graph.node(id).op, Op::Conv2d(_) | Op::Conv2dGradInput(_) | Op::Conv2dGradWeight(_))
}

/// The iteration space of a kernel rooted at `root`: its extents, or for a reduction its
/// operand's.
pub(crate) fn space(graph: &Graph, root: NodeId) -> &[usize] {
    match graph.node(root).op {
        Op::Reduce { .. } => graph.ty(graph.node(root).args[0]).dims(),
        _ => graph.ty(root).dims(),
    }
}

/// A fusion choice about a value read by several kernels: recompute it in each, or store it.
#[derive(Clone, Debug, PartialEq)]
pub struct Recompute {
    /// The value.
    pub node: NodeId,
    /// How many kernels read it.
    pub readers: usize,
    /// Predicted nanoseconds of recomputing it in every reader.
    pub recompute_ns: f64,
    /// Predicted nanoseconds of storing it once and reading it in every reader.
    pub store_ns: f64,
    /// What was chosen (recomputing only when it is predicted cheaper and allowed).
    pub recomputed: bool,
}

/// Partitions the live nodes of `graph` into groups, in an order that respects dependencies
/// (increasing root id). Leaves are not grouped: callers supply them. Constants read only by
/// kernels belong to no group: kernels inline them. A recomputed producer is a member of every
/// group that reads it (never a root).
pub fn partition(graph: &Graph, mode: Mode) -> Vec<Group> {
    partition_with_choices(graph, mode).0
}

/// True if `id` may be recomputed in several kernels: exactly rounded float arithmetic over
/// float operands, or a strided read of a materialized operand. (A mask — a comparison, or a
/// cast or select of one — stays stored: kernels that compute booleans store them slowly.)
fn recomputable(graph: &Graph, id: NodeId) -> bool {
    let node = graph.node(id);
    let float = node.ty.dtype.is_float() && node.args.iter().all(|a| graph.ty(*a).dtype.is_float());
    float
        && match &node.op {
            Op::Broadcast { .. } | Op::Slice { .. } | Op::Permute { .. } | Op::Const { .. } => true,
            op => {
                crate::cost_model::arithmetic(op).is_some_and(|a| a.transcendental == 0.0)
                    && !matches!(op, Op::Reduce { .. })
            }
        }
}

/// The predicted cost of recomputing `id` in each of `readers` (groups, by their members so
/// far) against storing it once and reading it in each: the model's kernel coefficients for
/// its arithmetic and for the bytes of its operands that a reader does not read already.
/// Storing a value computed from a GEMM product read by nothing else costs no kernel of its
/// own (it becomes the GEMM's epilogue, and the product is never stored); recomputing it
/// stores the product instead.
fn recompute_costs(graph: &Graph, id: NodeId, readers: &[&Group], users: &[Vec<NodeId>]) -> (f64, f64) {
    let model = crate::cost_model::CostModel::current();
    let kernel = model.row(crate::cost_model::Family::Kernel);
    let node = graph.node(id);
    // A transpose's operand is read through strides, at the strided price too.
    let byte = kernel[1] + if matches!(node.op, Op::Permute { .. }) { kernel[5] } else { 0.0 };
    let n = node.ty.numel() as f64;
    let arithmetic = crate::cost_model::arithmetic(&node.op).unwrap_or_default();
    let mut recompute = 0.0;
    for g in readers {
        recompute += model.arithmetic_ns(arithmetic) * n;
        for a in &node.args {
            let read_already = g.members.contains(a) || g.members.iter().any(|m| graph.node(*m).args.contains(a));
            if !read_already && !matches!(graph.node(*a).op, Op::Const { .. }) {
                recompute += byte * graph.ty(*a).size_bytes() as f64;
            }
        }
    }
    let bytes = node.ty.size_bytes() as f64;
    let mut store = kernel[0] + kernel[1] * bytes * (1 + readers.len()) as f64;
    for a in &node.args {
        if is_gemm(graph, *a) && users[a.index()].iter().all(|u| *u == id) {
            store -= kernel[0];
            recompute += kernel[1] * graph.ty(*a).size_bytes() as f64;
        }
    }
    (recompute, store)
}

/// The fusion choices of a partition, with the predictions that made them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Choices {
    /// The recompute-or-store choice for every elementwise value read by several kernels.
    pub recompute: Vec<Recompute>,
    /// The kernels merged into a reader as side outputs ([`crate::multi_output`]).
    pub merges: Vec<crate::multi_output::Merge>,
}

/// [`partition`], with the choices it made: recompute or store every elementwise value read
/// by several kernels, and which producers became side outputs of a reader.
pub fn partition_with_choices(graph: &Graph, mode: Mode) -> (Vec<Group>, Choices) {
    let live = graph.live_mask();
    let n = graph.len();
    let mut users: Vec<Vec<NodeId>> = vec![Vec::new(); n];
    for (id, node) in graph.nodes() {
        if live[id.index()] {
            for a in &node.args {
                users[a.index()].push(id);
            }
        }
    }
    let mut is_output = vec![false; n];
    for o in graph.outputs() {
        is_output[o.value.index()] = true;
    }
    // Groups of every grouped node (one, or several for a recomputed producer), assigned from
    // the outputs backwards.
    let mut groups_of: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut groups: Vec<Group> = Vec::new();
    let mut choices: Vec<Recompute> = Vec::new();
    // The one group of a node, if it is in exactly one.
    let single = |groups_of: &[Vec<usize>], u: NodeId| match groups_of[u.index()].as_slice() {
        [g] => Some(*g),
        _ => None,
    };
    for i in (0..n).rev() {
        let id = NodeId::from_index(i);
        let node = graph.node(id);
        if !live[i] || node.op.is_leaf() {
            continue;
        }
        let elementwise = is_elementwise(graph, id);
        let reduction = matches!(node.op, Op::Reduce { .. });
        // A constant read only by kernels is inlined into each of them: it costs nothing to
        // recompute and needs no buffer.
        let inlined_const = matches!(node.op, Op::Const { .. })
            && mode == Mode::Fused
            && !is_output[i]
            && users[i].iter().all(|u| {
                !reads_materialized(&graph.node(*u).op)
                    && !groups_of[u.index()].is_empty()
                    && groups_of[u.index()].iter().all(|g| groups[*g].kind == GroupKind::Elementwise)
            });
        if inlined_const {
            continue;
        }
        // A transpose read only by the GEMMs of one contraction group is folded into it.
        let folded = (mode == Mode::Fused && !is_output[i] && transpose_of(graph, id).is_some())
            .then(|| {
                let first = users[i].first().and_then(|u| single(&groups_of, *u))?;
                let all = users[i].iter().all(|u| is_gemm(graph, *u) && single(&groups_of, *u) == Some(first));
                (all && groups[first].kind == GroupKind::Contraction).then_some(first)
            })
            .flatten();
        let joined: Vec<usize> = if let Some(g) = folded {
            vec![g]
        } else if mode == Mode::Fused && elementwise && !is_output[i] {
            let consumers_fuse = users[i].iter().all(|u| {
                // A broadcast reads its operand from memory, so its operand is materialized;
                // a reduction consumes its operand inside its own kernel.
                let un = &graph.node(*u).op;
                !reads_materialized(un) && (is_elementwise(graph, *u) || matches!(un, Op::Reduce { .. }))
            });
            // Every group reading the node, when each reads it elementwise over its shape.
            let mut readers: Vec<usize> = Vec::new();
            for u in &users[i] {
                for g in &groups_of[u.index()] {
                    if !readers.contains(g) {
                        readers.push(*g);
                    }
                }
            }
            let fits = consumers_fuse
                && !readers.is_empty()
                && users[i].iter().all(|u| !groups_of[u.index()].is_empty())
                && readers.iter().all(|g| {
                    groups[*g].kind == GroupKind::Elementwise && space(graph, groups[*g].root()) == node.ty.dims()
                });
            if !fits {
                vec![]
            } else if readers.len() == 1 {
                readers
            } else {
                let reading: Vec<&Group> = readers.iter().map(|g| &groups[*g]).collect();
                let (recompute_ns, store_ns) = recompute_costs(graph, id, &reading, &users);
                // Never into both a `reduce_max` and another kernel: where a multiply-add is
                // contracted in one kernel and not in the other, the two would see values a
                // rounding apart, and a softmax's shifted exponent could pass zero.
                let feeds_max = reading.iter().any(|g| {
                    g.members.iter().any(|m| matches!(graph.node(*m).op, Op::Reduce { op: kiln_ir::ReduceOp::Max, .. }))
                });
                let recomputed = recomputable(graph, id) && !feeds_max && recompute_ns < store_ns;
                choices.push(Recompute { node: id, readers: readers.len(), recompute_ns, store_ns, recomputed });
                if recomputed { readers } else { vec![] }
            }
        } else {
            vec![]
        };
        if joined.is_empty() {
            let kind = if elementwise || (reduction && mode == Mode::Fused) {
                GroupKind::Elementwise
            } else if is_contraction(graph, id) {
                GroupKind::Contraction
            } else if matches!(node.op, Op::Pad { .. } | Op::Concat { .. }) {
                GroupKind::Movement
            } else {
                GroupKind::Op
            };
            groups.push(Group::new(vec![id], kind));
            groups_of[i] = vec![groups.len() - 1];
        } else {
            for g in &joined {
                groups[*g].members.push(id);
            }
            groups_of[i] = joined;
        }
    }
    for g in &mut groups {
        g.members.reverse();
    }
    groups.reverse();
    let mut merges = Vec::new();
    if mode == Mode::Fused {
        fuse_epilogues(graph, &mut groups, &users, &is_output);
        merges = crate::multi_output::merge(graph, &mut groups, &users);
    }
    choices.reverse();
    (groups, Choices { recompute: choices, merges })
}

/// The matmul of a contraction group with an epilogue: the group's members up to and
/// including it (the rest are the epilogue's), or `None` for a plain contraction.
pub fn epilogue_split(graph: &Graph, group: &Group) -> Option<usize> {
    if group.kind != GroupKind::Contraction {
        return None;
    }
    let at = group.members.iter().position(|m| matches!(graph.node(*m).op, Op::Matmul))?;
    (at + 1 < group.members.len()).then_some(at + 1)
}

/// The contraction a [`GroupKind::Contraction`] group computes: its matmul when an epilogue
/// follows it, else its root (a matmul or a convolution).
pub fn contraction_of(graph: &Graph, group: &Group) -> NodeId {
    match epilogue_split(graph, group) {
        Some(at) => group.members[at - 1],
        None => group.root(),
    }
}

/// Merges each 2-D float matmul into the elementwise group that is its only reader, when
/// that group reads it elementwise at the same index (not through a broadcast, slice or
/// permute) and has its shape: the GEMM then hands each finished band of rows to the
/// epilogue kernel while the band is in cache, and the product itself is never a buffer of
/// the plan. The merged group takes the epilogue's place in the order (after everything the
/// epilogue reads).
fn fuse_epilogues(graph: &Graph, groups: &mut Vec<Group>, users: &[Vec<NodeId>], is_output: &[bool]) {
    // The group of every node in exactly one (a recomputed node, in several, has none here:
    // a product it reads must stay a buffer).
    let mut group_of = vec![usize::MAX; graph.len()];
    let mut seen = vec![false; graph.len()];
    for (gi, g) in groups.iter().enumerate() {
        for m in &g.members {
            group_of[m.index()] = if seen[m.index()] { usize::MAX } else { gi };
            seen[m.index()] = true;
        }
    }
    let mut merged_into: Vec<Option<usize>> = vec![None; groups.len()];
    let dag = GroupDag::new(graph, groups);
    for (ci, c) in groups.iter().enumerate() {
        let r = c.root();
        if c.kind != GroupKind::Contraction || !is_gemm(graph, r) || graph.ty(r).rank() != 2 || is_output[r.index()] {
            continue;
        }
        let Some(&first) = users[r.index()].first() else { continue };
        let ei = group_of[first.index()];
        if ei == usize::MAX || users[r.index()].iter().any(|u| group_of[u.index()] != ei) {
            continue;
        }
        let e = &groups[ei];
        let elementwise_reader = users[r.index()].iter().all(|u| !reads_materialized(&graph.node(*u).op));
        let fits = e.kind == GroupKind::Elementwise
            && space(graph, e.root()) == graph.ty(r).dims()
            && !matches!(graph.node(e.root()).op, Op::Reduce { .. });
        // The epilogue is the product's only reader, so no third group lies between them; the
        // step DAG says so too, or the merge is skipped.
        if fits && elementwise_reader && merged_into[ei].is_none() && dag.can_merge(ci, ei) {
            merged_into[ci] = Some(ei);
            merged_into[ei] = Some(ei);
        }
    }
    let mut out: Vec<Group> = Vec::with_capacity(groups.len());
    let contraction_of: std::collections::HashMap<usize, usize> =
        merged_into.iter().enumerate().filter_map(|(ci, e)| e.filter(|e| *e != ci).map(|e| (e, ci))).collect();
    for (gi, g) in groups.iter().enumerate() {
        match (merged_into[gi], contraction_of.get(&gi)) {
            // A contraction that moves to its epilogue's place.
            (Some(e), _) if e != gi => {}
            (_, Some(&ci)) => {
                let mut members = groups[ci].members.clone();
                members.extend(&g.members);
                out.push(Group::new(members, GroupKind::Contraction));
            }
            _ => out.push(g.clone()),
        }
    }
    *groups = out;
}
