//! The memory plan: liveness-based reuse of buffers in one 64-byte-aligned arena.
//!
//! Every value a group stores (its root, and a multi-output kernel's side outputs) is a
//! buffer. It is live from the group that writes it to
//! the last group that reads it (graph outputs stay live to the end; leaves belong to the
//! caller and are not planned). A `reshape` of a row-major buffer is an alias: it has no
//! bytes of its own, and its readers keep its source alive. Groups run in order; before each,
//! buffers whose last reader has run are freed, and the new buffer takes the smallest free
//! block that fits (best fit), or grows the arena. The plan reports the arena's peak size
//! against the naive sum of every buffer.

use kiln_ir::{Graph, NodeId, Op};

use crate::fuse::Group;

/// Buffer alignment in the arena, in bytes (a cache line; enough for any vector load).
pub const ALIGN: usize = 64;

/// Where one buffer lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The node whose value it holds.
    pub node: NodeId,
    /// Byte offset in the arena (a multiple of [`ALIGN`]).
    pub offset: usize,
    /// Size in bytes, rounded up to [`ALIGN`].
    pub bytes: usize,
    /// Index of the group that writes it.
    pub first: usize,
    /// Index of the last group that reads it (the group count for outputs).
    pub last: usize,
    /// For a `reshape`, the node whose bytes it shares (then `bytes` is 0 and `offset` is the
    /// source's, or 0 when the source is a leaf).
    pub alias_of: Option<NodeId>,
}

/// A memory plan for a partitioned graph.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Every planned buffer, in group order (a group's root, then its side outputs).
    pub placements: Vec<Placement>,
    /// Size of the arena: the most bytes live at once (with fragmentation).
    pub peak_bytes: usize,
    /// The sum of every buffer: the memory of a runtime that never reuses.
    pub naive_bytes: usize,
}

fn aligned(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The node whose buffer `id` shares: its source if `id` is a single-node `reshape` group
/// (followed through chains of them), else `id` itself.
pub fn buffer_of(graph: &Graph, id: NodeId) -> NodeId {
    let mut id = id;
    while matches!(graph.node(id).op, Op::Reshape) {
        id = graph.node(id).args[0];
    }
    id
}

/// Plans the buffers of `groups` (a partition of `graph`, in execution order).
pub fn plan(graph: &Graph, groups: &[Group]) -> MemoryPlan {
    let n = graph.len();
    let mut group_of = vec![usize::MAX; n];
    for (gi, g) in groups.iter().enumerate() {
        for n in g.stored() {
            group_of[n.index()] = gi;
        }
    }
    // Last group reading each buffer: a member's operand outside its group is read by it,
    // and reading a reshape reads its source.
    let mut last = vec![0usize; n];
    for (gi, g) in groups.iter().enumerate() {
        for m in &g.members {
            for a in &graph.node(*m).args {
                let b = buffer_of(graph, *a);
                if group_of[b.index()] != usize::MAX && group_of[b.index()] != gi {
                    last[b.index()] = last[b.index()].max(gi);
                }
            }
        }
    }
    for o in graph.outputs() {
        last[buffer_of(graph, o.value).index()] = groups.len();
    }
    let mut placements: Vec<Placement> = Vec::new();
    let mut offset_of = vec![0usize; n];
    // Free blocks (offset, bytes) and buffers still live (index into placements).
    let mut free: Vec<(usize, usize)> = Vec::new();
    let mut live: Vec<usize> = Vec::new();
    let (mut top, mut naive) = (0usize, 0usize);
    for (gi, g) in groups.iter().enumerate() {
        let root = g.root();
        let source = buffer_of(graph, root);
        if source != root {
            let offset = offset_of[source.index()];
            placements.push(Placement { node: root, offset, bytes: 0, first: gi, last: gi, alias_of: Some(source) });
            continue;
        }
        // Free what no later group reads.
        live.retain(|&p| {
            let keep = placements[p].last >= gi;
            if !keep {
                free.push((placements[p].offset, placements[p].bytes));
            }
            keep
        });
        coalesce(&mut free);
        for node in g.stored() {
            let bytes = aligned(graph.ty(node).size_bytes()).max(ALIGN);
            naive += bytes;
            let offset = match free.iter().enumerate().filter(|(_, f)| f.1 >= bytes).min_by_key(|(_, f)| f.1) {
                Some((i, &(off, size))) => {
                    if size == bytes {
                        free.remove(i);
                    } else {
                        free[i] = (off + bytes, size - bytes);
                    }
                    off
                }
                None => {
                    let off = top;
                    top += bytes;
                    off
                }
            };
            offset_of[node.index()] = offset;
            placements.push(Placement {
                node,
                offset,
                bytes,
                first: gi,
                last: last[node.index()].max(gi),
                alias_of: None,
            });
            live.push(placements.len() - 1);
        }
    }
    MemoryPlan { placements, peak_bytes: top, naive_bytes: naive }
}

/// Merges adjacent free blocks.
fn coalesce(free: &mut Vec<(usize, usize)>) {
    free.sort_unstable();
    let mut out: Vec<(usize, usize)> = Vec::with_capacity(free.len());
    for &(off, size) in free.iter() {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == off => last.1 += size,
            _ => out.push((off, size)),
        }
    }
    *free = out;
}

impl MemoryPlan {
    /// True if no two buffers that are live at the same time overlap in the arena.
    pub fn is_valid(&self) -> bool {
        let own: Vec<&Placement> = self.placements.iter().filter(|p| p.alias_of.is_none()).collect();
        own.iter().enumerate().all(|(i, a)| {
            own[i + 1..].iter().all(|b| {
                let overlap_time = a.first <= b.last && b.first <= a.last;
                let overlap_space = a.offset < b.offset + b.bytes && b.offset < a.offset + a.bytes;
                !(overlap_time && overlap_space)
            })
        })
    }
}
