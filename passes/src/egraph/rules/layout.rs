//! Layout: sink transposes through elementwise ops (so they meet and cancel, or reach a
//! matmul) and move transposes across matmuls, `(Aᵀ Bᵀ) = (B A)ᵀ`. Both directions are
//! offered; extraction keeps the cheaper.

use egg::Id;
use kiln_ir::{Op, TensorType};

use super::{Finder, Proposal, Rule, as_permute, constant, is_last_two_swap, nodes_where, ty};
use crate::egraph::lang::{EGraph, ENode};

/// The layout rules.
pub const RULES: &[Rule] = &[
    Rule {
        name: "sink-permute-unary",
        reason: "f(permute x) = permute(f x) for elementwise f",
        find: Finder::Node(sink_unary),
    },
    Rule {
        name: "sink-permute-binary",
        reason: "permute a ⊕ permute b = permute(a ⊕ b) for one permutation (constants move freely)",
        find: Finder::Node(sink_binary),
    },
    Rule {
        name: "matmul-of-transposes",
        reason: "Aᵀ Bᵀ = (B A)ᵀ: one transpose instead of two",
        find: Finder::Node(matmul_of_transposes),
    },
    Rule { name: "transpose-of-matmul", reason: "(A B)ᵀ = Bᵀ Aᵀ", find: Finder::Node(transpose_of_matmul) },
];

/// Applies the unary elementwise op of `n` to part `x` (of type `x_ty`).
fn apply_unary(p: &mut Proposal, n: &ENode, x: usize, x_ty: &TensorType, out_dtype: kiln_ir::DType) -> usize {
    match &n.op {
        Op::Cast => p.typed(Op::Cast, &[x], TensorType::new(out_dtype, x_ty.dims().to_vec())),
        op => p.node(op.clone(), &[x]),
    }
}

fn sink_unary(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    if !matches!(n.op, Op::Unary(_) | Op::Cast | Op::StopGradient) {
        return vec![];
    }
    let out_dtype = ty(eg, id).dtype;
    nodes_where(eg, n.args[0], as_permute)
        .map(|(perm, x)| {
            let mut p = Proposal::default();
            let xi = p.class(x);
            let f = apply_unary(&mut p, n, xi, ty(eg, x), out_dtype);
            p.node(Op::Permute { perm: perm.clone() }, &[f]);
            p
        })
        .collect()
}

fn sink_binary(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if !matches!(n.op, Op::Binary(_) | Op::Compare(_)) {
        return vec![];
    }
    let (a, b) = (n.args[0], n.args[1]);
    let mut out = vec![];
    // Both sides permuted the same way.
    for (pa, xa) in nodes_where(eg, a, as_permute) {
        for (pb, xb) in nodes_where(eg, b, as_permute) {
            if pa == pb {
                let mut p = Proposal::default();
                let (xa, xb) = (p.class(xa), p.class(xb));
                let f = p.node(n.op.clone(), &[xa, xb]);
                p.node(Op::Permute { perm: pa.clone() }, &[f]);
                out.push(p);
            }
        }
    }
    // One side permuted, the other a constant (which has every layout).
    for (perm_side, const_side, first) in [(a, b, true), (b, a, false)] {
        let Some(c) = constant(eg, const_side) else { continue };
        for (perm, x) in nodes_where(eg, perm_side, as_permute) {
            let mut p = Proposal::default();
            let xi = p.class(x);
            let xt = ty(eg, x);
            let k = p.constant(c, TensorType::new(ty(eg, const_side).dtype, xt.dims().to_vec()));
            let args = if first { [xi, k] } else { [k, xi] };
            let f = p.node(n.op.clone(), &args);
            p.node(Op::Permute { perm: perm.clone() }, &[f]);
            out.push(p);
        }
    }
    out
}

fn transposed(eg: &EGraph, id: Id) -> Option<Id> {
    nodes_where(eg, id, as_permute).find(|(perm, _)| is_last_two_swap(perm)).map(|(_, x)| x)
}

fn swap_perm(rank: usize) -> Vec<usize> {
    let mut perm: Vec<usize> = (0..rank).collect();
    perm.swap(rank - 2, rank - 1);
    perm
}

fn matmul_of_transposes(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Matmul {
        return vec![];
    }
    match (transposed(eg, n.args[0]), transposed(eg, n.args[1])) {
        (Some(a), Some(b)) => {
            let mut p = Proposal::default();
            let (a, b) = (p.class(a), p.class(b));
            let m = p.node(Op::Matmul, &[b, a]);
            p.node(Op::Permute { perm: swap_perm(ty(eg, id).rank()) }, &[m]);
            vec![p]
        }
        _ => vec![],
    }
}

fn transpose_of_matmul(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((perm, inner)) = as_permute(n) else { return vec![] };
    if !is_last_two_swap(perm) {
        return vec![];
    }
    nodes_where(eg, inner, |m| (m.op == Op::Matmul).then(|| (m.args[0], m.args[1])))
        .map(|(a, b)| {
            let mut p = Proposal::default();
            let (a, b) = (p.class(a), p.class(b));
            let bt = p.node(Op::Permute { perm: perm.clone() }, &[b]);
            let at = p.node(Op::Permute { perm: perm.clone() }, &[a]);
            p.node(Op::Matmul, &[bt, at]);
            p
        })
        .collect()
}
