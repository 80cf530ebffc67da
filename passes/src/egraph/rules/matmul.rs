//! Contractions: reassociate matmul chains (extraction picks the order with fewer flops) and
//! merge matmuls that share their left operand into one wider matmul, split after
//! (Tensat's parallel-GEMM merge); move a constant scaling of a product onto the smaller of
//! its operands.

use std::collections::BTreeMap;

use egg::Id;
use kiln_ir::{BinaryOp, Op, TensorType};

use super::{Finder, Proposal, Rule, constant, nodes_where, ty};
use crate::egraph::lang::{EGraph, ENode};

/// The contraction rules.
pub const RULES: &[Rule] = &[
    Rule {
        name: "matmul-assoc-left",
        reason: "(A B) C = A (B C): the cheaper order wins",
        find: Finder::Node(assoc_left),
    },
    Rule {
        name: "matmul-assoc-right",
        reason: "A (B C) = (A B) C: the cheaper order wins",
        find: Finder::Node(assoc_right),
    },
    Rule {
        name: "merge-shared-lhs",
        reason: "X W1 and X W2 = slices of X [W1 W2]: X is read once, one larger GEMM",
        find: Finder::Global(merge_shared_lhs),
    },
    Rule {
        name: "sequence-product",
        reason: "the product of one step of a sequence with a weight is that step of the whole sequence's product: T per-step products of a recurrent net's inputs become one GEMM",
        find: Finder::Node(sequence_product),
    },
    Rule {
        name: "scale-into-operand",
        reason: "(A B)·c = (A·c) B = A (B·c) for a constant c: scale the smaller tensor (attention's 1/√d on the query instead of the scores; differs by rounding)",
        find: Finder::Node(scale_into_operand),
    },
];

/// `(A B)·c` (either operand order) becomes `(A·c) B` and `A (B·c)`; extraction keeps whichever
/// scales fewer elements, or the product's own scaling. Only for a product read by nothing
/// else: one also read unscaled (Adam's `g` and `g²`) would need a second product.
fn scale_into_operand(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Binary(BinaryOp::Mul) {
        return vec![];
    }
    let mut out = Vec::new();
    for (prod, c) in [(n.args[0], n.args[1]), (n.args[1], n.args[0])] {
        let Some(v) = constant(eg, c) else { continue };
        if eg[prod].parents().count() != 1 {
            continue;
        }
        for (a, b) in matmuls(eg, prod) {
            for (scaled, first) in [(a, true), (b, false)] {
                let mut p = Proposal::default();
                let (a, b) = (p.class(a), p.class(b));
                let k = p.constant(v, ty(eg, scaled).clone());
                let s = p.node(Op::Binary(BinaryOp::Mul), &[if first { a } else { b }, k]);
                if first {
                    p.node(Op::Matmul, &[s, b]);
                } else {
                    p.node(Op::Matmul, &[a, s]);
                }
                out.push(p);
            }
        }
    }
    out
}

fn matmuls(eg: &EGraph, id: Id) -> impl Iterator<Item = (Id, Id)> + '_ {
    nodes_where(eg, id, |m| (m.op == Op::Matmul).then(|| (m.args[0], m.args[1])))
}

fn assoc_left(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Matmul {
        return vec![];
    }
    matmuls(eg, n.args[0])
        .map(|(a, b)| {
            let mut p = Proposal::default();
            let (a, b, c) = (p.class(a), p.class(b), p.class(n.args[1]));
            let bc = p.node(Op::Matmul, &[b, c]);
            p.node(Op::Matmul, &[a, bc]);
            p
        })
        .collect()
}

fn assoc_right(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Matmul {
        return vec![];
    }
    matmuls(eg, n.args[1])
        .map(|(b, c)| {
            let mut p = Proposal::default();
            let (a, b, c) = (p.class(n.args[0]), p.class(b), p.class(c));
            let ab = p.node(Op::Matmul, &[a, b]);
            p.node(Op::Matmul, &[ab, c]);
            p
        })
        .collect()
}

/// At most this many merges per left operand, to keep the search bounded.
const MAX_MERGES_PER_OPERAND: usize = 4;

fn merge_shared_lhs(eg: &EGraph) -> Vec<(Id, Proposal)> {
    let mut by_lhs: BTreeMap<Id, Vec<(Id, Id)>> = BTreeMap::new();
    for class in eg.classes() {
        for n in &class.nodes {
            // Only products of operands that are not themselves merged weights, so merges do
            // not feed on their own results.
            let merged = |id: Id| eg[id].nodes.iter().any(|m| matches!(m.op, Op::Concat { .. }));
            if n.op == Op::Matmul && ty(eg, class.id).rank() == 2 && !merged(n.args[1]) {
                let entry = by_lhs.entry(eg.find(n.args[0])).or_default();
                let w = eg.find(n.args[1]);
                if !entry.iter().any(|(_, v)| *v == w) {
                    entry.push((class.id, w));
                }
            }
        }
    }
    let mut out = Vec::new();
    for (x, uses) in by_lhs {
        for pair in uses.windows(2).take(MAX_MERGES_PER_OPERAND) {
            let ((y1, w1), (y2, w2)) = (pair[0], pair[1]);
            let (t1, t2) = (ty(eg, y1), ty(eg, y2));
            if t1.dtype != t2.dtype {
                continue;
            }
            let (m, n1, n2) = (t1.dims()[0], t1.dims()[1], t2.dims()[1]);
            for (target, lo, hi) in [(y1, 0, n1), (y2, n1, n1 + n2)] {
                let mut p = Proposal::default();
                let (xi, a, b) = (p.class(x), p.class(w1), p.class(w2));
                let w = p.node(Op::Concat { axis: 1 }, &[a, b]);
                let y = p.node(Op::Matmul, &[xi, w]);
                p.node(Op::Slice { start: vec![0, lo], stop: vec![m, hi], step: vec![1, 1] }, &[y]);
                out.push((target, p));
            }
        }
    }
    out
}

/// `reshape(slice(X)) · W`, where `X` is a sequence `[d0, d1, D]` and the slice takes one index
/// of axis 0 or 1 and all of the others, becomes that step's rows of the whole sequence's
/// product `P = reshape(X, [d0·d1, D]) · W`: a slice of `P` (contiguous rows for axis 0, every
/// d1-th row for axis 1). Every step's proposal reads the one `P` directly (hash-consing), so
/// extraction's joint moves pay it once when it is cheaper than the per-step products, and
/// keep those when only a few steps are used.
fn sequence_product(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Matmul {
        return vec![];
    }
    let (a, w) = (n.args[0], n.args[1]);
    let (wt, out) = (ty(eg, w).clone(), ty(eg, id).clone());
    if wt.rank() != 2 || out.rank() != 2 {
        return vec![];
    }
    let h = wt.dims()[1];
    let mut proposals = Vec::new();
    for s in nodes_where(eg, a, |m| (m.op == Op::Reshape).then(|| m.args[0])) {
        let slices = nodes_where(eg, s, |m| match &m.op {
            Op::Slice { start, stop, step } => Some((m.args[0], start.clone(), stop.clone(), step.clone())),
            _ => None,
        });
        for (x, start, stop, step) in slices {
            let xt = ty(eg, x);
            let d = xt.dims();
            if d.len() != 3 || d[2] != wt.dims()[0] || step.iter().any(|s| *s != 1) || start[2] != 0 || stop[2] != d[2]
            {
                continue;
            }
            let one_step = match (stop[0] - start[0], stop[1] - start[1]) {
                (1, n1) => n1 == d[1] && d[0] > 1 && out.dims()[0] == d[1],
                (n0, 1) => n0 == d[0] && d[1] > 1 && out.dims()[0] == d[0],
                _ => false,
            };
            if !one_step {
                continue;
            }
            let mut p = Proposal::default();
            let (xc, wc) = (p.class(x), p.class(w));
            let rows = p.typed(Op::Reshape, &[xc], TensorType::new(xt.dtype, vec![d[0] * d[1], d[2]]));
            let whole = p.node(Op::Matmul, &[rows, wc]);
            let (first, last, every) = if stop[0] - start[0] == 1 {
                (start[0] * d[1], (start[0] + 1) * d[1], 1)
            } else {
                (start[1], d[0] * d[1], d[1])
            };
            p.node(Op::Slice { start: vec![first, 0], stop: vec![last, h], step: vec![every, 1] }, &[whole]);
            proposals.push(p);
        }
    }
    proposals
}
