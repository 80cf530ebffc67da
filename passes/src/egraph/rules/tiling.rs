//! Tiling: a sum whose terms are pieces of one bigger computation is that computation.
//!
//! - **Pads that tile an axis** (`tile-pads`). The gradient of many slices of one tensor (an
//!   LSTM's gates and time steps, heads split from one projection) is the sum of their
//!   gradients, each zero-padded back to the full tensor: `pad(g₀) + pad(g₁) + …`, which
//!   writes and reads the full tensor once per slice. When the pads' supports sit side by side
//!   along one axis and coincide on the others, the sum is `pad(concat(g₀, g₁, …))`: each
//!   element written once.
//! - **Products that share their output** (`tile-products`). The gradient of a weight used at
//!   every step of a recurrence is `Σₜ aₜ·bₜ` (T small GEMMs and a T-way sum); it is one GEMM
//!   over the contracted axis concatenated: `concat(aₜ, axis 1) · concat(bₜ, axis 0)`. Where
//!   every `aₜ` is a transpose, `concat-of-permutes` (a movement rule) moves the transpose
//!   outside the concatenation, so the GEMM still reads it through strides. Whether the one
//!   product pays (it copies the operands into the concatenations) is extraction's choice:
//!   projections of one activation through several weights (a transformer's q, k, v) would
//!   copy the weights every step and are priced out.
//!
//! Both rules match an addition and walk its whole tree of additions in one step (the
//! summands in order, left to right), so a sum of T terms is rewritten in one iteration, not
//! one iteration per summand. An addition proposes the form of its subtree unless an addition
//! reading it has a tree that tiles as a whole (which then proposes for both): a sum whose
//! other terms do not tile still gets its tiling part, and a chain of T additions adds one
//! concatenation, not T of growing length. Extraction keeps the cheapest.

use egg::Id;
use kiln_ir::{BinaryOp, Literal, Op};

use super::{Finder, Proposal, Rule, nodes_where, ty};
use crate::egraph::lang::{EGraph, ENode};

/// The tiling rules.
pub const RULES: &[Rule] = &[
    Rule {
        name: "tile-pads",
        reason: "a sum of zero pads whose supports tile one axis is one pad of their concatenation: each element written once",
        find: Finder::Node(tile_pads),
    },
    Rule {
        name: "tile-products",
        reason: "a sum of products with one result type is one product over the concatenated contraction axis: one GEMM instead of T and a T-way sum",
        find: Finder::Node(tile_products),
    },
];

/// The most terms a walked sum may have; a longer walk (or one that meets an addition equal to
/// one of its own terms, `x = x + 0`) proposes nothing.
const MAX_TERMS: usize = 512;

/// The terms of the sum `n` (an addition): the operands of its additions, descending into every
/// operand class that holds an addition of the same type, left to right.
fn terms(eg: &EGraph, n: &ENode) -> Option<Vec<Id>> {
    let add = |c: Id| nodes_where(eg, c, |m| (m.op == Op::Binary(BinaryOp::Add)).then_some(m)).next();
    let mut out = Vec::new();
    let mut stack: Vec<Id> = n.args.iter().rev().map(|a| eg.find(*a)).collect();
    let mut visited = 0;
    while let Some(c) = stack.pop() {
        visited += 1;
        if visited > 2 * MAX_TERMS {
            return None;
        }
        match add(c) {
            Some(m) => stack.extend(m.args.iter().rev().map(|a| eg.find(*a))),
            None => out.push(c),
        }
    }
    Some(out)
}

/// True if an addition reading class `id` (a parent in the e-graph) gets a proposal from `rule`
/// for its own tree, which covers `id`'s.
fn covered_by_reader(eg: &EGraph, id: Id, rule: fn(&EGraph, Id, &ENode) -> Option<Proposal>) -> bool {
    let id = eg.find(id);
    eg[id].parents().any(|p| {
        let p = eg.find(p);
        eg[p].nodes.iter().any(|m| {
            m.op == Op::Binary(BinaryOp::Add) && m.args.iter().any(|a| eg.find(*a) == id) && rule(eg, p, m).is_some()
        })
    })
}

/// A float addition's terms, when there are at least two.
fn sum_terms(eg: &EGraph, id: Id, n: &ENode) -> Option<Vec<Id>> {
    if n.op != Op::Binary(BinaryOp::Add) || !ty(eg, id).dtype.is_float() {
        return None;
    }
    terms(eg, n).filter(|t| t.len() >= 2)
}

/// A zero pad of class `c`: its operand and its low and high padding.
fn zero_pad(eg: &EGraph, c: Id) -> Option<(Id, Vec<usize>, Vec<usize>)> {
    nodes_where(eg, c, |m| match &m.op {
        Op::Pad { low, high, value } if value.0 == 0.0 => Some((m.args[0], low.clone(), high.clone())),
        _ => None,
    })
    .next()
}

/// `pad(g₀) + pad(g₁) + … + r₀ + … = pad(concat(gᵢ in order along the axis)) + r₀ + …` when the
/// zero pads among the sum's terms (at least two) touch side by side along one axis and
/// coincide on every other; the other terms `rⱼ` are added after, in their order.
fn tile_pads(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    unless_covered(eg, id, n, pad_tiling)
}

/// `rule`'s proposal for the tree of `n`, unless a reader's tree covers it.
fn unless_covered(eg: &EGraph, id: Id, n: &ENode, rule: fn(&EGraph, Id, &ENode) -> Option<Proposal>) -> Vec<Proposal> {
    match rule(eg, id, n) {
        Some(p) if !covered_by_reader(eg, id, rule) => vec![p],
        _ => vec![],
    }
}

/// The terms for which `f` gives something, with what it gives, and the other terms.
fn split_terms<T>(terms: Vec<Id>, f: impl Fn(Id) -> Option<T>) -> (Vec<T>, Vec<Id>) {
    let (mut matched, mut rest) = (Vec::new(), Vec::new());
    for t in terms {
        match f(t) {
            Some(m) => matched.push(m),
            None => rest.push(t),
        }
    }
    (matched, rest)
}

/// [`tile_pads`]'s proposal for the tree of `n`, covered or not.
fn pad_tiling(eg: &EGraph, id: Id, n: &ENode) -> Option<Proposal> {
    let (mut pads, rest) = split_terms(sum_terms(eg, id, n)?, |t| zero_pad(eg, t));
    if pads.len() < 2 {
        return None;
    }
    let rank = pads[0].1.len();
    let differs = |d: usize| pads.iter().any(|p| p.1[d] != pads[0].1[d] || p.2[d] != pads[0].2[d]);
    let axes: Vec<usize> = (0..rank).filter(|&d| differs(d)).collect();
    let [axis] = axes[..] else { return None };
    let dims = |x: Id| ty(eg, x).dims().to_vec();
    let first = dims(pads[0].0);
    if pads.iter().any(|p| (0..rank).any(|d| d != axis && dims(p.0)[d] != first[d])) {
        return None;
    }
    pads.sort_by_key(|p| p.1[axis]);
    if !pads.windows(2).all(|w| w[0].1[axis] + dims(w[0].0)[axis] == w[1].1[axis]) {
        return None;
    }
    // The first pad (lowest along the axis) gives the low padding, the last the high.
    let (low, mut high) = (pads[0].1.clone(), pads[0].2.clone());
    high[axis] = pads[pads.len() - 1].2[axis];
    let mut p = Proposal::default();
    let parts: Vec<usize> = pads.iter().map(|(x, _, _)| p.class(*x)).collect();
    let cat = p.node(Op::Concat { axis }, &parts);
    let tiled = p.node(Op::Pad { low, high, value: Literal(0.0) }, &[cat]);
    plus_rest(&mut p, tiled, &rest);
    Some(p)
}

/// Adds the classes `rest` to part `sum` of `p`, one after another.
fn plus_rest(p: &mut Proposal, mut sum: usize, rest: &[Id]) {
    for r in rest {
        let r = p.class(*r);
        sum = p.node(Op::Binary(BinaryOp::Add), &[sum, r]);
    }
}

/// `a₀·b₀ + a₁·b₁ + … + r₀ + … = concat(aᵢ, axis 1) · concat(bᵢ, axis 0) + r₀ + …` for the 2-D
/// products among the sum's terms (at least two); the other terms are added after.
fn tile_products(eg: &EGraph, id: Id, n: &ENode) -> Vec<Proposal> {
    unless_covered(eg, id, n, product_tiling)
}

/// [`tile_products`]'s proposal for the tree of `n`, covered or not.
fn product_tiling(eg: &EGraph, id: Id, n: &ENode) -> Option<Proposal> {
    if ty(eg, id).rank() != 2 {
        return None;
    }
    let product = |c: Id| nodes_where(eg, c, |m| (m.op == Op::Matmul).then(|| (m.args[0], m.args[1]))).next();
    let (products, rest) = split_terms(sum_terms(eg, id, n)?, product);
    if products.len() < 2 {
        return None;
    }
    let mut p = Proposal::default();
    let lhs: Vec<usize> = products.iter().map(|(a, _)| p.class(*a)).collect();
    let rhs: Vec<usize> = products.iter().map(|(_, b)| p.class(*b)).collect();
    let a = p.node(Op::Concat { axis: 1 }, &lhs);
    let b = p.node(Op::Concat { axis: 0 }, &rhs);
    let product = p.node(Op::Matmul, &[a, b]);
    plus_rest(&mut p, product, &rest);
    Some(p)
}
