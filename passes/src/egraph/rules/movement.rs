//! Movement canonicalization: compose chains of reshapes, permutes and broadcasts, move a
//! permute shared by every part of a concatenation outside it, and drop movement that does
//! nothing.

use egg::Id;
use kiln_ir::{Movement, Op};

use super::{Finder, Proposal, Rule, as_permute, nodes_where, ty};
use crate::egraph::lang::{EGraph, ENode};

/// The movement rules.
pub const RULES: &[Rule] = &[
    Rule {
        name: "reshape-reshape",
        reason: "a reshape of a reshape is one reshape",
        find: Finder::Node(reshape_reshape),
    },
    Rule { name: "permute-permute", reason: "permutations compose", find: Finder::Node(permute_permute) },
    Rule { name: "broadcast-broadcast", reason: "broadcasts compose", find: Finder::Node(broadcast_broadcast) },
    Rule {
        name: "concat-of-permutes",
        reason: "a concatenation of parts permuted alike is the permute of their concatenation: one transpose (which a GEMM reads through strides) instead of one per part",
        find: Finder::Node(concat_of_permutes),
    },
    Rule {
        name: "noop-movement",
        reason: "movement to the same type along the identity is x",
        find: Finder::Node(noop),
    },
];

fn reshape_reshape(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Reshape {
        return vec![];
    }
    let out = ty(eg, id).clone();
    nodes_where(eg, n.args[0], |m| (m.op == Op::Reshape).then(|| m.args[0]))
        .map(|x| {
            if *ty(eg, x) == out {
                return Proposal::same_as(x);
            }
            let mut p = Proposal::default();
            let x = p.class(x);
            p.typed(Op::Reshape, &[x], out.clone());
            p
        })
        .collect()
}

fn permute_permute(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((q, inner)) = as_permute(n) else { return vec![] };
    nodes_where(eg, inner, as_permute)
        .map(|(p, x)| {
            // Result axis i is inner axis q[i], which is x axis p[q[i]].
            let composed: Vec<usize> = q.iter().map(|&i| p[i]).collect();
            if composed.iter().enumerate().all(|(i, &c)| i == c) {
                return Proposal::same_as(x);
            }
            let mut pr = Proposal::default();
            let x = pr.class(x);
            pr.node(Op::Permute { perm: composed }, &[x]);
            pr
        })
        .collect()
}

fn broadcast_broadcast(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    let Op::Broadcast { dims: outer } = &n.op else { return vec![] };
    let out = ty(eg, id).clone();
    nodes_where(eg, n.args[0], |m| match &m.op {
        Op::Broadcast { dims } => Some((dims.clone(), m.args[0])),
        _ => None,
    })
    .map(|(inner, x)| {
        let dims: Vec<usize> = inner.iter().map(|&d| outer[d]).collect();
        let mut p = Proposal::default();
        let x = p.class(x);
        p.typed(Op::Broadcast { dims }, &[x], out.clone());
        p
    })
    .collect()
}

/// `concat(permute(x₀, p), permute(x₁, p), …; axis) = permute(concat(x₀, x₁, …; p[axis]), p)`:
/// result axis `axis` is operand axis `p[axis]`.
fn concat_of_permutes(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Op::Concat { axis } = n.op else { return vec![] };
    let Some((perm, _)) = n.args.first().and_then(|a| nodes_where(eg, *a, as_permute).next()) else { return vec![] };
    let same = |a: Id| nodes_where(eg, a, |m| as_permute(m).filter(|(q, _)| *q == perm).map(|(_, x)| x)).next();
    let Some(sources) = n.args.iter().map(|a| same(*a)).collect::<Option<Vec<Id>>>() else { return vec![] };
    let mut p = Proposal::default();
    let parts: Vec<usize> = sources.iter().map(|x| p.class(*x)).collect();
    let cat = p.node(Op::Concat { axis: perm[axis] }, &parts);
    p.node(Op::Permute { perm: perm.clone() }, &[cat]);
    vec![p]
}

fn noop(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    let same_type = n.args.len() == 1 && ty(eg, n.args[0]) == ty(eg, id);
    let identity = match n.op.movement() {
        Some(Movement::Reshape) => true,
        Some(Movement::Permute { perm }) => perm.iter().enumerate().all(|(i, &p)| i == p),
        Some(Movement::Broadcast { dims }) => dims.iter().enumerate().all(|(i, &d)| i == d),
        Some(Movement::Slice { start, step, .. }) => start.iter().all(|&s| s == 0) && step.iter().all(|&s| s == 1),
        Some(Movement::Pad { low, high, .. }) => low.iter().chain(high).all(|&p| p == 0),
        Some(Movement::Concat { .. }) => n.args.len() == 1,
        None => false,
    };
    if same_type && identity { vec![Proposal::same_as(n.args[0])] } else { vec![] }
}
