//! The graph of a partition's groups, as a `petgraph` graph: an edge `a → b` when group `b`
//! reads a result of group `a` (its root or a side output). Fusion asks it whether merging two groups is legal — the merged
//! group must not both feed and read a third group, which would be a cycle — and checks that
//! a finished partition has no cycle at all, naming the groups of one if it does.

use kiln_ir::Graph;
use petgraph::algo::{has_path_connecting, kosaraju_scc};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::fuse::Group;
use crate::plan::buffer_of;

/// The dependencies between the groups of a partition: node `i` is group `i`.
#[derive(Clone, Debug)]
pub struct GroupDag {
    /// An edge `a → b` when group `b` reads group `a`'s result.
    pub graph: DiGraph<(), ()>,
}

impl GroupDag {
    /// The dependencies of `groups` (a partition of `graph`): each member's operands outside
    /// its group, through reshapes to the group that computes their bytes.
    pub fn new(graph: &Graph, groups: &[Group]) -> GroupDag {
        let mut group_of = vec![usize::MAX; graph.len()];
        for (gi, g) in groups.iter().enumerate() {
            for m in &g.members {
                group_of[m.index()] = gi;
            }
        }
        let mut dag = DiGraph::with_capacity(groups.len(), groups.len() * 2);
        for _ in groups {
            dag.add_node(());
        }
        // `in_group[n] == gi` while group `gi`'s members are visited: linear, where a search of
        // the members per operand would be quadratic in a long fused chain.
        let mut in_group = vec![usize::MAX; graph.len()];
        for (gi, g) in groups.iter().enumerate() {
            for m in &g.members {
                in_group[m.index()] = gi;
            }
            for m in &g.members {
                for a in &graph.node(*m).args {
                    // A recomputed producer is a member of every group reading it.
                    if in_group[a.index()] == gi {
                        continue;
                    }
                    for from in [group_of[a.index()], group_of[buffer_of(graph, *a).index()]] {
                        if from != usize::MAX && from != gi {
                            dag.update_edge(NodeIndex::new(from), NodeIndex::new(gi), ());
                        }
                    }
                }
            }
        }
        GroupDag { graph: dag }
    }

    /// True if groups `a` and `b` may become one: no path leads from one to the other through
    /// a third group (the merged group would then both feed and read that group).
    pub fn can_merge(&self, a: usize, b: usize) -> bool {
        let through_third = |from: usize, to: usize| {
            self.graph
                .neighbors(NodeIndex::new(from))
                .filter(|x| x.index() != to)
                .any(|x| has_path_connecting(&self.graph, x, NodeIndex::new(to), None))
        };
        !through_third(a, b) && !through_third(b, a)
    }

    /// The groups whose results group `i` reads.
    pub fn sources(&self, i: usize) -> Vec<usize> {
        self.graph.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Incoming).map(NodeIndex::index).collect()
    }

    /// The groups that read group `i`'s results.
    pub fn readers(&self, i: usize) -> Vec<usize> {
        self.graph.neighbors_directed(NodeIndex::new(i), petgraph::Direction::Outgoing).map(NodeIndex::index).collect()
    }

    /// The groups of one dependency cycle, in increasing order, if there is one (a partition
    /// whose groups cannot be ordered; fusion never makes one).
    pub fn cycle(&self) -> Option<Vec<usize>> {
        kosaraju_scc(&self.graph).into_iter().find(|c| c.len() > 1).map(|c| {
            let mut c: Vec<usize> = c.into_iter().map(NodeIndex::index).collect();
            c.sort_unstable();
            c
        })
    }
}

#[cfg(test)]
mod tests {
    use kiln_ir::{NodeId, parse_graph};

    use super::*;
    use crate::fuse::{GroupKind, Mode, partition};

    fn group(members: &[usize]) -> Group {
        Group::new(members.iter().map(|&i| NodeId::from_index(i)).collect(), GroupKind::Op)
    }

    #[test]
    fn a_merge_through_a_third_group_is_refused_and_cycles_are_named() {
        // %1 = matmul(x, w), %2 = exp(%1), %3 = add(%1, %2): merging {%1} with {%3} while
        // {%2} reads %1 and feeds %3 would make {%1, %3} both feed and read {%2}.
        let g = parse_graph(
            "func @f(%x: f32[2,2], %w: f32[2,2]) -> (y: f32[2,2]) {
  %1 = matmul %x, %w : f32[2,2]
  %2 = exp %1 : f32[2,2]
  %3 = add %1, %2 : f32[2,2]
  return %3
}
",
        )
        .unwrap();
        let groups = [group(&[2]), group(&[3]), group(&[4])];
        let dag = GroupDag::new(&g, &groups);
        assert!(!dag.can_merge(0, 2), "the merge would close a cycle through group 1");
        assert!(dag.can_merge(0, 1) && dag.can_merge(1, 2));
        assert_eq!(dag.cycle(), None);
        let merged = [group(&[2, 4]), group(&[3])];
        assert_eq!(GroupDag::new(&g, &merged).cycle(), Some(vec![0, 1]));
        // The partitioner's own groups never form one.
        for mode in [Mode::Fused, Mode::Unfused] {
            assert_eq!(GroupDag::new(&g, &partition(&g, mode)).cycle(), None);
        }
    }
}
