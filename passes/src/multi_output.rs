//! Multi-output fusion: an elementwise kernel whose result several kernels read joins one of
//! its readers, which computes it in its own loop and stores it as a **side output** beside
//! its root.
//!
//! Fusion ([`crate::fuse`]) materializes a value read by several kernels in a kernel of its
//! own (unless recomputing it is cheaper): an LSTM cell's gates, each read by the cell's next
//! values and by the backward pass, become a dozen small kernels per time step, each paying
//! a call and a pass over memory. Here a producer group `P` merges into a reader group `C`
//! of the same iteration space when the measured cost model ([`crate::cost_model`])
//! predicts the merged kernel cheaper than the two (one call fewer, `P`'s result not read
//! back), and the merge closes no cycle (no path from `P` to `C` through a third group:
//! [`GroupDag::can_merge`]). A reduction reads over the space it reduces: it then stores the
//! value as its loop computes it (a softmax's `exp`, summed and stored in one pass), and stays
//! the merged kernel's root. Merges repeat, so a chain of such kernels becomes one kernel
//! storing every value read outside it. Every value is computed by the same instructions, and
//! a stored value is never contracted into a fused multiply-add, so elementwise results are
//! the same bits; a reduction may add its terms in another order (a rounding).
//!
//! A merged kernel holds at most [`MAX_TRANSCENDENTALS`] inline approximations (register
//! pressure, measured, not yet in the cost model).
//!
//! A side output lives in the memory plan's arena like any intermediate, or, when it is a graph
//! output, in the output's buffer (over the input it replaces, for an update computed in
//! place): an optimizer's update of a parameter and of its moments becomes one kernel that
//! reads each operand once. A producer stays apart when a reference op reads it (its operands
//! are owned arrays) or when the reader reads it through a movement op (which needs it
//! materialized first).

use kiln_ir::{Graph, NodeId, Op};

use crate::cost_model::{CostModel, group_features};
use crate::fuse::{Group, GroupKind, reads_materialized, space};
use crate::group_dag::GroupDag;

/// A producer kernel merged into a reader as a side output, with the predictions that
/// decided it.
#[derive(Clone, Debug, PartialEq)]
pub struct Merge {
    /// The producer's root: the value now stored as a side output.
    pub node: NodeId,
    /// The root of the reader it joined.
    pub into: NodeId,
    /// Predicted nanoseconds of the two kernels apart.
    pub apart_ns: f64,
    /// Predicted nanoseconds of the merged kernel.
    pub merged_ns: f64,
}

/// The most inline transcendental approximations a merged kernel may hold. Each keeps its
/// constants and temporaries live across the loop; past a few, Cranelift's register
/// allocator spills inside the vector loop and the merged kernel runs slower than its parts
/// (the LSTM's forward cell: five in one kernel took 27 µs where 3 + 2 apart took 21), a cost
/// the measured model does not price yet. Measured on the kernels of whole steps (one thread,
/// kernel time against the build without merges): with at most 3, the LSTM workload's 0.89×,
/// LeNet-5's step 0.86×, the transformer step 0.96×, the LSTM forward 1.00×; at most 2 about
/// the same; at most 4 the LSTM workload 1.04×; no limit, the LSTM forward 1.24×.
pub const MAX_TRANSCENDENTALS: usize = 3;

/// The transcendental ops among `group`'s members.
fn transcendentals(graph: &Graph, group: &Group) -> usize {
    group
        .members
        .iter()
        .filter_map(|m| crate::cost_model::arithmetic(&graph.node(*m).op))
        .map(|a| a.transcendental.ceil() as usize)
        .sum()
}

/// The iteration space of an elementwise group that is not a reduction, if it is one.
fn elementwise_space<'g>(graph: &'g Graph, group: &Group) -> Option<&'g [usize]> {
    let root = graph.node(group.root());
    (group.kind == GroupKind::Elementwise && !matches!(root.op, Op::Reduce { .. })).then(|| root.ty.dims())
}

/// The iteration space of a fused kernel's group ([`space`]), if it is one.
fn kernel_space<'g>(graph: &'g Graph, group: &Group) -> Option<&'g [usize]> {
    (group.kind == GroupKind::Elementwise).then(|| space(graph, group.root()))
}

/// Merges producers into readers as side outputs (see the module's header), then orders the
/// groups so every group follows the groups whose values it reads. Returns the merges made,
/// in the order they were made.
pub fn merge(graph: &Graph, groups: &mut Vec<Group>, users: &[Vec<NodeId>]) -> Vec<Merge> {
    let model = CostModel::current();
    let mut merges = Vec::new();
    // Built once, and again only after a merge changes the groups.
    let mut partition = Partition::new(graph, groups);
    let mut pi = 0;
    while pi < groups.len() {
        match best_reader(graph, groups, &mut partition, pi, users, model) {
            Some((ci, merged, m)) => {
                groups[ci] = merged;
                groups.remove(pi);
                merges.push(m);
                partition = Partition::new(graph, groups);
                // The group now at `pi` is the next one; a merged group is looked at again
                // when its own turn comes.
            }
            None => pi += 1,
        }
    }
    if !merges.is_empty() {
        order(graph, groups);
    }
    merges
}

/// What the merges ask of the current groups: the groups of each node, and their DAG (built
/// when first needed).
struct Partition {
    /// The groups each node is a member of (several for a recomputed value).
    of: Vec<Vec<usize>>,
    dag: Option<GroupDag>,
}

impl Partition {
    fn new(graph: &Graph, groups: &[Group]) -> Partition {
        let mut of = vec![Vec::new(); graph.len()];
        for (gi, g) in groups.iter().enumerate() {
            for m in &g.members {
                of[m.index()].push(gi);
            }
        }
        Partition { of, dag: None }
    }
}

/// The reader of group `pi`'s root that `pi` merges into with the largest predicted gain, the
/// merged group and its record; `None` when `pi` stays apart.
fn best_reader(
    graph: &Graph,
    groups: &[Group],
    partition: &mut Partition,
    pi: usize,
    users: &[Vec<NodeId>],
    model: &CostModel,
) -> Option<(usize, Group, Merge)> {
    let p = &groups[pi];
    let r = p.root();
    let space = elementwise_space(graph, p)?;
    let node = graph.node(r);
    if matches!(node.op, Op::Const { .. }) || !node.ty.dtype.is_float() {
        return None;
    }
    let of = &partition.of;
    if !read_by_kernels(graph, groups, of, r, users) {
        return None;
    }
    let stored: Vec<NodeId> = p.stored().collect();
    let mut readers: Vec<usize> =
        stored.iter().flat_map(|s| &users[s.index()]).flat_map(|u| &of[u.index()]).copied().collect();
    readers.sort_unstable();
    readers.dedup();
    let mut best: Option<(usize, Group, Merge)> = None;
    for ci in readers {
        let c = &groups[ci];
        if ci == pi || kernel_space(graph, c) != Some(space) {
            continue;
        }
        // A movement op reads a materialized buffer: it cannot read a value of its own loop.
        let reads_stored = |m: &NodeId| graph.node(*m).args.iter().any(|a| stored.contains(a));
        if c.members.iter().any(|m| reads_stored(m) && reads_materialized(&graph.node(*m).op)) {
            continue;
        }
        let merged = merged_group(p, c);
        if transcendentals(graph, &merged) > MAX_TRANSCENDENTALS {
            continue;
        }
        // A reduction stays the root: what it reduces is computed and stored on the way.
        if merged.root() != c.root() && matches!(graph.node(c.root()).op, Op::Reduce { .. }) {
            continue;
        }
        let apart_ns = model.predict_pair(&group_features(graph, p), &group_features(graph, c));
        let merged_ns = model.predict_group(graph, &merged);
        let gain = apart_ns - merged_ns;
        if gain <= 0.0 || best.as_ref().is_some_and(|(_, _, b)| b.apart_ns - b.merged_ns >= gain) {
            continue;
        }
        let dag = partition.dag.get_or_insert_with(|| GroupDag::new(graph, groups));
        if dag.can_merge(pi, ci) {
            best = Some((ci, merged, Merge { node: r, into: c.root(), apart_ns, merged_ns }));
        }
    }
    best
}

/// True if `r`'s value may be a side output: no reference op reads it (or a reshape of it).
fn read_by_kernels(graph: &Graph, groups: &[Group], of: &[Vec<usize>], r: NodeId, users: &[Vec<NodeId>]) -> bool {
    users[r.index()].iter().all(|u| match graph.node(*u).op {
        Op::Reshape => read_by_kernels(graph, groups, of, *u, users),
        _ => of[u.index()].iter().all(|g| groups[*g].kind != GroupKind::Op),
    })
}

/// `p` merged into `c`: the union of their members in arena order, rooted at the last, and
/// storing every other value either group stored.
fn merged_group(p: &Group, c: &Group) -> Group {
    let mut members: Vec<NodeId> = c.members.iter().chain(&p.members).copied().collect();
    members.sort_unstable();
    members.dedup();
    let root = *members.last().expect("groups are never empty");
    let mut side_outputs: Vec<NodeId> = c.stored().chain(p.stored()).filter(|n| *n != root).collect();
    side_outputs.sort_unstable();
    side_outputs.dedup();
    Group { members, kind: GroupKind::Elementwise, side_outputs }
}

/// Orders `groups` so that each follows every group it reads (a merged group may store a
/// value that groups placed before it read), keeping the order by root otherwise.
fn order(graph: &Graph, groups: &mut Vec<Group>) {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;
    let dag = GroupDag::new(graph, groups);
    let n = groups.len();
    let mut waiting: Vec<usize> = (0..n).map(|i| dag.sources(i).len()).collect();
    let mut ready: BinaryHeap<Reverse<(NodeId, usize)>> =
        (0..n).filter(|&i| waiting[i] == 0).map(|i| Reverse((groups[i].root(), i))).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse((_, i))) = ready.pop() {
        order.push(i);
        for j in dag.readers(i) {
            waiting[j] -= 1;
            if waiting[j] == 0 {
                ready.push(Reverse((groups[j].root(), j)));
            }
        }
    }
    // The merges closed no cycle (each was checked), so every group is ordered.
    debug_assert_eq!(order.len(), n, "a cycle among merged groups");
    if order.len() == n {
        let mut taken: Vec<Option<Group>> = std::mem::take(groups).into_iter().map(Some).collect();
        *groups = order.into_iter().filter_map(|i| taken[i].take()).collect();
    }
}
