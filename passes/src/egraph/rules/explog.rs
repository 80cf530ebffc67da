//! Exponential and logarithm forms, including the log-softmax form of `log(softmax(x))`.

use egg::Id;
use kiln_ir::{BinaryOp, Op, UnaryOp};

use super::{Finder, Proposal, Rule, nodes_where};
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
