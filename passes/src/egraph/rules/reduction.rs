//! Reductions: a sum over broadcast axes is a scaled value, a max over them is the value, and
//! nested reductions of one kind merge.

use egg::Id;
use kiln_ir::{BinaryOp, Op};

use super::{Finder, Proposal, Rule, nodes_where, ty};
use crate::egraph::lang::{EGraph, ENode};

/// The reduction rules.
pub const RULES: &[Rule] = &[
    Rule {
        name: "reduce-of-broadcast",
        reason: "summing n broadcast copies is x * n; their max is x",
        find: Finder::Node(reduce_of_broadcast),
    },
    Rule {
        name: "reduce-reduce",
        reason: "two reductions of one kind are one over the union of axes",
        find: Finder::Node(reduce_reduce),
    },
];

fn reduce_of_broadcast(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    let Op::Reduce { op, axes } = &n.op else { return vec![] };
    let out = ty(eg, id).clone();
    nodes_where(eg, n.args[0], |m| match &m.op {
        Op::Broadcast { dims } => Some((dims.clone(), m.args[0])),
        _ => None,
    })
    .filter_map(|(dims, x)| {
        let (bt, xt) = (ty(eg, n.args[0]), ty(eg, x));
        // The reduced axes must be exactly the new ones, and nothing may be stretched.
        let new_axes: Vec<usize> = (0..bt.rank()).filter(|r| !dims.contains(r)).collect();
        let stretched = dims.iter().enumerate().any(|(i, &d)| xt.dims()[i] != bt.dims()[d]);
        if new_axes != *axes || stretched || *xt != out {
            return None;
        }
        let count: usize = axes.iter().map(|&a| bt.dims()[a]).product();
        Some(match op {
            kiln_ir::ReduceOp::Max if count > 0 => Proposal::same_as(x),
            kiln_ir::ReduceOp::Max => return None,
            kiln_ir::ReduceOp::Sum => {
                let mut p = Proposal::default();
                let xi = p.class(x);
                let k = p.constant(count as f64, out.clone());
                p.node(Op::Binary(BinaryOp::Mul), &[xi, k]);
                p
            }
        })
    })
    .collect()
}

fn reduce_reduce(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Op::Reduce { op, axes: outer } = &n.op else { return vec![] };
    nodes_where(eg, n.args[0], |m| match &m.op {
        Op::Reduce { op: inner_op, axes } if inner_op == op => Some((axes.clone(), m.args[0])),
        _ => None,
    })
    .map(|(inner, x)| {
        // Outer axis j is the j-th axis of x that the inner reduction kept.
        let kept: Vec<usize> = (0..ty(eg, x).rank()).filter(|a| !inner.contains(a)).collect();
        let mut axes: Vec<usize> = inner.iter().copied().chain(outer.iter().map(|&j| kept[j])).collect();
        axes.sort_unstable();
        let mut p = Proposal::default();
        let xi = p.class(x);
        p.node(Op::Reduce { op: *op, axes }, &[xi]);
        p
    })
    .collect()
}
