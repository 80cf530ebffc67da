//! The step DAG: which steps of a schedule must run before which, as a `petgraph` graph.
//!
//! A step depends on an earlier step when it reads what that step wrote (data), when the two
//! touch overlapping arena bytes and one of them writes them (the memory plan reuses bytes,
//! and the scratch regions are shared), and when it reads the im2col columns that step kept
//! ([`super::SharedCols`]). A reshape depends on its source's step. Steps are listed in an
//! order every edge respects, so a step's level — the longest chain of dependencies before
//! it — is found in one pass; steps of one level never depend on each other and may run at
//! the same time.

use std::ops::Range;

use petgraph::Direction;
use petgraph::dot::{Config, Dot};
use petgraph::graph::{DiGraph, NodeIndex};

use super::{Contraction, Schedule, SharedCols, Work};

/// Why one step must run before another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    /// The later step reads the earlier one's result.
    Data,
    /// Both touch the same arena bytes and at least one writes them.
    Memory,
    /// The later convolution reads the columns the earlier one kept.
    Columns,
}

/// The dependencies between the steps of a schedule: node `i` is step `i`.
#[derive(Clone, Debug)]
pub struct StepDag {
    /// The graph: an edge `a → b` says step `a` runs before step `b`.
    pub graph: DiGraph<(), Dependency>,
}

/// The arena bytes a step touches: (range, whether it writes them); the scratch regions only
/// when `scratch` is set.
fn accesses(schedule: &Schedule, step: usize, scratch: bool) -> Vec<(Range<usize>, bool)> {
    let s = &schedule.steps[step];
    let mut out = Vec::new();
    if let Work::Alias { .. } = s.work {
        return out;
    }
    if let Some(r) = s.out.arena_range() {
        out.push((r, true));
    }
    out.extend(s.side_outs.iter().filter_map(|(_, b)| b.arena_range()).map(|r| (r, true)));
    match &s.work {
        _ if !scratch => {}
        Work::Contraction { call: Contraction::Gemm(_), epilogue: Some(_) } => {
            out.extend(schedule.scratch.product.arena_range().map(|r| (r, true)));
        }
        Work::Contraction { call: Contraction::Conv { .. }, .. } => {
            out.extend(schedule.scratch.columns.arena_range().map(|r| (r, true)));
        }
        Work::Kernel(_)
        | Work::Contraction { .. }
        | Work::Movement
        | Work::Op
        | Work::Alias { .. }
        | Work::CopyOut(_) => {}
    }
    for r in &s.reads {
        if let Some(range) = schedule.buffer(*r).and_then(|b| b.arena_range()) {
            out.push((range, false));
        }
    }
    out.retain(|(r, _)| !r.is_empty());
    out
}

fn overlaps(a: &Range<usize>, b: &Range<usize>) -> bool {
    a.start < b.end && b.start < a.end
}

impl StepDag {
    /// The dependencies of `schedule`'s steps.
    pub fn new(schedule: &Schedule) -> StepDag {
        StepDag::build(schedule, true)
    }

    /// The dependencies for a backend that gives every step scratch of its own (the JIT keeps
    /// a product buffer per GEMM and builds im2col columns in per-thread buffers): steps do
    /// not wait for each other's use of the scratch regions.
    pub fn with_private_scratch(schedule: &Schedule) -> StepDag {
        StepDag::build(schedule, false)
    }

    fn build(schedule: &Schedule, scratch: bool) -> StepDag {
        let n = schedule.steps.len();
        let mut graph = DiGraph::with_capacity(n, n * 2);
        for _ in 0..n {
            graph.add_node(());
        }
        let producer = schedule.step_of_nodes();
        let touched: Vec<Vec<(Range<usize>, bool)>> = (0..n).map(|i| accesses(schedule, i, scratch)).collect();
        let mut kept: Vec<Option<usize>> = vec![None; schedule.column_slots];
        for (si, s) in schedule.steps.iter().enumerate() {
            let mut before: Vec<(usize, Dependency)> = Vec::new();
            let sources = match s.work {
                Work::Alias { source } => vec![source],
                _ => s.reads.clone(),
            };
            for r in sources {
                if let Some(p) = producer[r.index()].filter(|&p| p < si) {
                    before.push((p, Dependency::Data));
                }
            }
            for (ti, t) in touched[..si].iter().enumerate() {
                let clash = touched[si].iter().any(|(a, aw)| t.iter().any(|(b, bw)| (*aw || *bw) && overlaps(a, b)));
                if clash && !before.iter().any(|(p, _)| *p == ti) {
                    before.push((ti, Dependency::Memory));
                }
            }
            if let Work::Contraction { call: Contraction::Conv { cols, .. }, .. } = s.work {
                match cols {
                    SharedCols::Keep(slot) => kept[slot] = Some(si),
                    SharedCols::Reuse(slot) => before.extend(kept[slot].map(|k| (k, Dependency::Columns))),
                    SharedCols::No => {}
                }
            }
            for (p, why) in before {
                graph.add_edge(NodeIndex::new(p), NodeIndex::new(si), why);
            }
        }
        StepDag { graph }
    }

    /// Each step's level: 0 without dependencies, else one more than the highest level of the
    /// steps it depends on. Every edge goes from an earlier step to a later one (as built), so
    /// one pass in step order suffices.
    pub fn levels(&self) -> Vec<usize> {
        let mut level = vec![0usize; self.graph.node_count()];
        for i in 0..level.len() {
            let node = NodeIndex::new(i);
            level[i] = self
                .graph
                .neighbors_directed(node, Direction::Incoming)
                .map(|p| level[p.index()] + 1)
                .max()
                .unwrap_or(0);
        }
        level
    }

    /// The steps that run before step `i`, with why.
    pub fn before(&self, i: usize) -> Vec<(usize, Dependency)> {
        let mut out: Vec<(usize, Dependency)> = self
            .graph
            .edges_directed(NodeIndex::new(i), Direction::Incoming)
            .map(|e| (petgraph::visit::EdgeRef::source(&e).index(), *e.weight()))
            .collect();
        out.sort_unstable_by_key(|(p, _)| *p);
        out
    }

    /// The steps grouped by level, in step order within a level: the sets that may run at
    /// the same time, in the order they must.
    pub fn ready_sets(levels: &[usize]) -> Vec<Vec<usize>> {
        let mut sets: Vec<Vec<usize>> = vec![Vec::new(); levels.iter().map(|l| l + 1).max().unwrap_or(0)];
        for (i, &l) in levels.iter().enumerate() {
            sets[l].push(i);
        }
        sets
    }
}

impl Schedule {
    /// The step DAG as Graphviz DOT: one box per step (position, level, work, node), an edge
    /// per dependency (solid for data, dashed for shared memory, dotted for kept columns).
    pub fn to_dot(&self) -> String {
        let dag = StepDag::new(self);
        let node = |_, (i, _): (NodeIndex, &())| {
            let s = &self.steps[i.index()];
            format!("label = \"s{} L{} {} %{}\", shape = box", i.index(), s.level, s.work.name(), s.node.index())
        };
        let edge = |_, e: petgraph::graph::EdgeReference<'_, Dependency>| {
            match e.weight() {
                Dependency::Data => "",
                Dependency::Memory => "style = dashed",
                Dependency::Columns => "style = dotted",
            }
            .to_string()
        };
        let config = [Config::NodeNoLabel, Config::EdgeNoLabel];
        format!("{:?}", Dot::with_attr_getters(&dag.graph, &config, &edge, &node))
    }
}
