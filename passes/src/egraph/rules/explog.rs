//! Exponential and logarithm forms, including the log-softmax form of `log(softmax(x))` and
//! the tanh-GELU on one exponential.

use egg::Id;
use kiln_ir::{BinaryOp, Op, UnaryOp};

use super::{Finder, Proposal, Rule, is_const, nodes_where, ty};
use crate::egraph::lang::{EGraph, ENode};

/// The exp/log rules.
pub const RULES: &[Rule] = &[
    Rule { name: "log-exp", reason: "log(exp x) = x, and exact where exp would overflow", find: Finder::Node(log_exp) },
    Rule {
        name: "log-softmax",
        reason: "log(exp(a) / s) = a - log(s): the stable log-softmax form, one exp fewer",
        find: Finder::Node(log_div_exp),
    },
    Rule {
        name: "exp-times-exp",
        reason: "exp(a) * exp(b) = exp(a + b): one transcendental fewer",
        find: Finder::Node(exp_mul),
    },
    Rule {
        name: "gelu-tanh",
        reason: "0.5·u·(1 + tanh z) = u − u/(e^{2z} + 1): tanh is itself 1 − 2/(e^{2z} + 1), so three ops fewer (differs by rounding)",
        find: Finder::Node(gelu_tanh),
    },
];

fn exp_of(eg: &EGraph, id: Id) -> Option<Id> {
    nodes_where(eg, id, |m| (m.op == Op::Unary(UnaryOp::Exp)).then(|| m.args[0])).next()
}

fn log_exp(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Unary(UnaryOp::Log) {
        return vec![];
    }
    exp_of(eg, n.args[0]).map(Proposal::same_as).into_iter().collect()
}

fn log_div_exp(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Unary(UnaryOp::Log) {
        return vec![];
    }
    nodes_where(eg, n.args[0], |m| (m.op == Op::Binary(BinaryOp::Div)).then(|| (m.args[0], m.args[1])))
        .filter_map(|(num, den)| exp_of(eg, num).map(|a| (a, den)))
        .map(|(a, den)| {
            let mut p = Proposal::default();
            let (a, den) = (p.class(a), p.class(den));
            let l = p.node(Op::Unary(UnaryOp::Log), &[den]);
            p.node(Op::Binary(BinaryOp::Sub), &[a, l]);
            p
        })
        .collect()
}

fn exp_mul(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Binary(BinaryOp::Mul) {
        return vec![];
    }
    match (exp_of(eg, n.args[0]), exp_of(eg, n.args[1])) {
        (Some(a), Some(b)) => {
            let mut p = Proposal::default();
            let (a, b) = (p.class(a), p.class(b));
            let s = p.node(Op::Binary(BinaryOp::Add), &[a, b]);
            p.node(Op::Unary(UnaryOp::Exp), &[s]);
            vec![p]
        }
        _ => vec![],
    }
}

/// The operands of every `mul` in class `id` with the constant `c` on either side: the other one.
fn times_const(eg: &EGraph, id: Id, c: f64) -> impl Iterator<Item = Id> + '_ {
    nodes_where(eg, id, move |m| {
        if m.op != Op::Binary(BinaryOp::Mul) {
            return None;
        }
        let [a, b] = [m.args[0], m.args[1]];
        if is_const(eg, b, c) {
            Some(a)
        } else if is_const(eg, a, c) {
            Some(b)
        } else {
            None
        }
    })
}

/// The argument of every `1 + tanh z` (either order) in class `id`.
fn one_plus_tanh(eg: &EGraph, id: Id) -> impl Iterator<Item = Id> + '_ {
    nodes_where(eg, id, move |m| {
        if m.op != Op::Binary(BinaryOp::Add) {
            return None;
        }
        let [a, b] = [m.args[0], m.args[1]];
        let t = if is_const(eg, b, 1.0) {
            a
        } else if is_const(eg, a, 1.0) {
            b
        } else {
            return None;
        };
        nodes_where(eg, t, |k| (k.op == Op::Unary(UnaryOp::Tanh)).then(|| k.args[0])).next()
    })
}

/// `(0.5·u)·(1 + tanh z)`, in any operand order, becomes `u − u / (exp(2z) + 1)`.
fn gelu_tanh(eg: &EGraph, _: Id, n: &ENode) -> Vec<Proposal> {
    if n.op != Op::Binary(BinaryOp::Mul) {
        return vec![];
    }
    let mut out = Vec::new();
    for (half, rest) in [(n.args[0], n.args[1]), (n.args[1], n.args[0])] {
        for u in times_const(eg, half, 0.5) {
            for z in one_plus_tanh(eg, rest) {
                if ty(eg, u) != ty(eg, z) {
                    continue;
                }
                let t = ty(eg, z).clone();
                let mut p = Proposal::default();
                let (u, z) = (p.class(u), p.class(z));
                let two = p.constant(2.0, t.clone());
                let one = p.constant(1.0, t);
                let z2 = p.node(Op::Binary(BinaryOp::Mul), &[z, two]);
                let e = p.node(Op::Unary(UnaryOp::Exp), &[z2]);
                let d = p.node(Op::Binary(BinaryOp::Add), &[e, one]);
                let q = p.node(Op::Binary(BinaryOp::Div), &[u, d]);
                p.node(Op::Binary(BinaryOp::Sub), &[u, q]);
                out.push(p);
            }
        }
    }
    out
}
