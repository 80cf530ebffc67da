//! Algebraic identities that hold for every input, NaN and infinities included (or differ
//! only by rounding).

use egg::Id;
use kiln_ir::{BinaryOp, Op, UnaryOp};

use super::{Finder, Proposal, Rule, constant, is_const, nodes_where};
use crate::egraph::lang::{EGraph, ENode};

/// The algebra rules.
pub const RULES: &[Rule] = &[
    Rule { name: "add-zero", reason: "x + 0 = x", find: Finder::Node(add_zero) },
    Rule { name: "sub-zero", reason: "x - 0 = x", find: Finder::Node(sub_zero) },
    Rule { name: "mul-one", reason: "x * 1 = x", find: Finder::Node(mul_one) },
    Rule { name: "div-one", reason: "x / 1 = x", find: Finder::Node(div_one) },
    Rule {
        name: "div-const",
        reason: "x / c = x * (1/c) for a finite non-zero float c: a multiply is cheaper (differs by rounding)",
        find: Finder::Node(div_const),
    },
    Rule { name: "neg-neg", reason: "-(-x) = x", find: Finder::Node(neg_neg) },
    Rule { name: "recip-recip", reason: "1/(1/x) = x (differs by rounding)", find: Finder::Node(recip_recip) },
    Rule { name: "mul-recip", reason: "a * (1/b) = a / b: one op instead of two", find: Finder::Node(mul_recip) },
    Rule { name: "neg-times-neg", reason: "(-a) * (-b) = a * b", find: Finder::Node(neg_times_neg) },
    Rule { name: "add-neg", reason: "a + (-b) = a - b", find: Finder::Node(add_neg) },
    Rule { name: "sub-neg", reason: "a - (-b) = a + b", find: Finder::Node(sub_neg) },
    Rule { name: "select-same", reason: "select(c, x, x) = x", find: Finder::Node(select_same) },
    Rule { name: "max-min-same", reason: "max(x, x) = min(x, x) = x", find: Finder::Node(minmax_same) },
];

fn binary(n: &ENode, op: BinaryOp) -> Option<(Id, Id)> {
    (n.op == Op::Binary(op)).then(|| (n.args[0], n.args[1]))
}

fn neg_of(eg: &EGraph, id: Id) -> Option<Id> {
    nodes_where(eg, id, |m| (m.op == Op::Unary(UnaryOp::Neg)).then(|| m.args[0])).next()
}

fn add_zero(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Add) else { return vec![] };
    let mut out = vec![];
    if is_const(eg, b, 0.0) {
        out.push(Proposal::same_as(a));
    }
    if is_const(eg, a, 0.0) {
        out.push(Proposal::same_as(b));
    }
    out
}

fn sub_zero(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    match binary(n, BinaryOp::Sub) {
        Some((a, b)) if is_const(eg, b, 0.0) => vec![Proposal::same_as(a)],
        _ => vec![],
    }
}

fn mul_one(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Mul) else { return vec![] };
    let mut out = vec![];
    if is_const(eg, b, 1.0) {
        out.push(Proposal::same_as(a));
    }
    if is_const(eg, a, 1.0) {
        out.push(Proposal::same_as(b));
    }
    out
}

fn div_one(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    match binary(n, BinaryOp::Div) {
        Some((a, b)) if is_const(eg, b, 1.0) => vec![Proposal::same_as(a)],
        _ => vec![],
    }
}

fn div_const(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Div) else { return vec![] };
    let bt = &eg[b].data.ty;
    match constant(eg, b) {
        Some(c) if bt.dtype.is_float() && c.is_finite() && c != 0.0 && c != 1.0 => {
            let mut p = Proposal::default();
            let x = p.class(a);
            let k = p.constant(1.0 / c, bt.clone());
            p.node(Op::Binary(BinaryOp::Mul), &[x, k]);
            vec![p]
        }
        _ => vec![],
    }
}

fn neg_neg(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Unary(UnaryOp::Neg) {
        return vec![];
    }
    neg_of(eg, n.args[0]).map(Proposal::same_as).into_iter().collect()
}

fn recip_recip(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Unary(UnaryOp::Recip) {
        return vec![];
    }
    nodes_where(eg, n.args[0], |m| (m.op == Op::Unary(UnaryOp::Recip)).then(|| m.args[0]))
        .map(Proposal::same_as)
        .collect()
}

fn mul_recip(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Mul) else { return vec![] };
    let recip = |id| nodes_where(eg, id, |m| (m.op == Op::Unary(UnaryOp::Recip)).then(|| m.args[0])).next();
    let mut out = vec![];
    for (x, r) in [(a, b), (b, a)] {
        if let Some(d) = recip(r) {
            let mut p = Proposal::default();
            let (x, d) = (p.class(x), p.class(d));
            p.node(Op::Binary(BinaryOp::Div), &[x, d]);
            out.push(p);
        }
    }
    out
}

fn neg_times_neg(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Mul) else { return vec![] };
    match (neg_of(eg, a), neg_of(eg, b)) {
        (Some(x), Some(y)) => {
            let mut p = Proposal::default();
            let (x, y) = (p.class(x), p.class(y));
            p.node(Op::Binary(BinaryOp::Mul), &[x, y]);
            vec![p]
        }
        _ => vec![],
    }
}

fn add_neg(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Add) else { return vec![] };
    let mut out = vec![];
    for (x, y) in [(a, b), (b, a)] {
        if let Some(z) = neg_of(eg, y) {
            let mut p = Proposal::default();
            let (x, z) = (p.class(x), p.class(z));
            p.node(Op::Binary(BinaryOp::Sub), &[x, z]);
            out.push(p);
        }
    }
    out
}

fn sub_neg(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let Some((a, b)) = binary(n, BinaryOp::Sub) else { return vec![] };
    match neg_of(eg, b) {
        Some(z) => {
            let mut p = Proposal::default();
            let (x, z) = (p.class(a), p.class(z));
            p.node(Op::Binary(BinaryOp::Add), &[x, z]);
            vec![p]
        }
        None => vec![],
    }
}

fn select_same(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op == Op::Select && eg.find(n.args[1]) == eg.find(n.args[2]) {
        vec![Proposal::same_as(n.args[1])]
    } else {
        vec![]
    }
}

fn minmax_same(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    let same = matches!(n.op, Op::Binary(BinaryOp::Max | BinaryOp::Min)) && eg.find(n.args[0]) == eg.find(n.args[1]);
    if same { vec![Proposal::same_as(n.args[0])] } else { vec![] }
}
