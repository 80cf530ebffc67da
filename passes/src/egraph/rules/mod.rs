//! Rewrite rules as data: each [`Rule`] has a name, a one-line reason, and a function that,
//! given an e-node of a class, proposes equivalent expressions for that class. Rules live in
//! themed files and run in stages ([`STAGES`]). Every proposal is type-checked before it is
//! added, so a rule that would break a shape condition simply does not fire.
//!
//! Policy: no rule may make code worse on its own (extraction decides among equals), no
//! blanket commutativity or associativity, and nothing that changes results beyond rounding
//! (so `x·0 → 0` and `exp(log x) → x` are absent: they are wrong for NaN, ∞ or x ≤ 0).

mod algebra;
mod explog;
mod layout;
mod matmul;
mod movement;
mod reduction;
mod tiling;

use egg::Id;
use kiln_ir::{Literal, Op, TensorType};

use super::lang::{EGraph, ENode};

/// A small expression to union with a matched class: parts refer to existing classes or to
/// earlier parts; the last part is the root.
#[derive(Clone, Debug, Default)]
pub struct Proposal {
    /// The parts, children before parents.
    pub parts: Vec<Part>,
}

/// One part of a [`Proposal`].
#[derive(Clone, Debug)]
pub enum Part {
    /// An existing e-class.
    Class(Id),
    /// A new e-node over earlier parts.
    Node {
        /// The op.
        op: Op,
        /// Its declared type, for ops that declare one.
        declared: Option<TensorType>,
        /// Indices of earlier parts.
        args: Vec<usize>,
    },
}

impl Proposal {
    /// A proposal that the class equals an existing class.
    pub fn same_as(id: Id) -> Self {
        let mut p = Proposal::default();
        p.class(id);
        p
    }

    /// Refers to an existing class.
    pub fn class(&mut self, id: Id) -> usize {
        self.parts.push(Part::Class(id));
        self.parts.len() - 1
    }

    /// A new node with an inferred type.
    pub fn node(&mut self, op: Op, args: &[usize]) -> usize {
        self.parts.push(Part::Node { op, declared: None, args: args.to_vec() });
        self.parts.len() - 1
    }

    /// A new node with a declared type (`reshape`, `broadcast`, `const`, ...).
    pub fn typed(&mut self, op: Op, args: &[usize], ty: TensorType) -> usize {
        self.parts.push(Part::Node { op, declared: Some(ty), args: args.to_vec() });
        self.parts.len() - 1
    }

    /// A constant splat of `ty`.
    pub fn constant(&mut self, v: f64, ty: TensorType) -> usize {
        self.typed(Op::Const { value: Literal(v) }, &[], ty)
    }
}

/// Proposes rewrites for one e-node of a class.
pub type FindFn = fn(&EGraph, Id, &ENode) -> Vec<Proposal>;

/// Proposes rewrites looking at the whole e-graph (multi-pattern rules).
pub type GlobalFn = fn(&EGraph) -> Vec<(Id, Proposal)>;

/// A rewrite rule.
#[derive(Clone, Copy)]
pub struct Rule {
    /// Name, used in reports and tests.
    pub name: &'static str,
    /// Why it is sound and why it helps, in one line.
    pub reason: &'static str,
    /// The rule.
    pub find: Finder,
}

/// How a rule looks for matches.
#[derive(Clone, Copy)]
pub enum Finder {
    /// Per e-node.
    Node(FindFn),
    /// Over the whole e-graph.
    Global(GlobalFn),
}

/// A named group of rules run together until saturation or budget.
#[derive(Clone, Copy)]
pub struct Stage {
    /// Name, for reports.
    pub name: &'static str,
    /// The rules.
    pub rules: &'static [&'static [Rule]],
}

/// The stages of the default optimizer: simplify, then explore layouts and contractions,
/// then simplify what that exposed.
pub const STAGES: &[Stage] = &[
    Stage {
        name: "simplify",
        rules: &[algebra::RULES, explog::RULES, movement::RULES, reduction::RULES, tiling::RULES],
    },
    Stage { name: "layout", rules: &[movement::RULES, layout::RULES, matmul::RULES] },
    Stage {
        name: "cleanup",
        rules: &[algebra::RULES, explog::RULES, movement::RULES, reduction::RULES, tiling::RULES],
    },
];

/// Every rule, once, in themed order.
pub fn all_rules() -> Vec<&'static Rule> {
    [algebra::RULES, explog::RULES, movement::RULES, layout::RULES, matmul::RULES, reduction::RULES, tiling::RULES]
        .iter()
        .flat_map(|r| r.iter())
        .collect()
}

/// The rule called `name`.
pub fn rule(name: &str) -> Option<&'static Rule> {
    all_rules().into_iter().find(|r| r.name == name)
}

/// The type of class `id`.
pub fn ty(eg: &EGraph, id: Id) -> &TensorType {
    &eg[id].data.ty
}

/// The constant every element of class `id` holds, if known.
pub fn constant(eg: &EGraph, id: Id) -> Option<f64> {
    eg[id].data.constant.map(|l| l.0)
}

/// True if class `id` is the constant `v` (`0.0` and `-0.0` compare equal).
pub fn is_const(eg: &EGraph, id: Id, v: f64) -> bool {
    constant(eg, id) == Some(v)
}

/// The most nodes [`nodes_where`] yields from one class.
///
/// A rule that pairs the nodes of two classes proposes their product; rules that create new
/// classes equal to an old one (sinking a permute through `min(a, a)` makes a new `min` class
/// each time, equal to `a` only once another rule has fired) can grow a class without bound,
/// and the product with it: one `sink-permute-binary` call on such a class once asked for
/// billions of proposals. Capping each class's matches bounds every rule's work per e-node
/// (at most this many, or its square for a pairing rule); a match beyond the cap only loses an
/// optimization, never soundness.
pub const MATCHES_PER_CLASS: usize = 16;

/// The nodes of class `id` matching `f`, with their results: at most [`MATCHES_PER_CLASS`].
pub fn nodes_where<'a, T>(
    eg: &'a EGraph,
    id: Id,
    f: impl Fn(&'a ENode) -> Option<T> + 'a,
) -> impl Iterator<Item = T> + 'a {
    eg[id].nodes.iter().filter_map(f).take(MATCHES_PER_CLASS)
}

/// The permutation of an e-node that is a `permute`.
pub fn as_permute(n: &ENode) -> Option<(&Vec<usize>, Id)> {
    match &n.op {
        Op::Permute { perm } => Some((perm, n.args[0])),
        _ => None,
    }
}

/// True if `perm` swaps the last two axes and keeps the rest.
pub fn is_last_two_swap(perm: &[usize]) -> bool {
    let r = perm.len();
    r >= 2 && perm[r - 2] == r - 1 && perm[r - 1] == r - 2 && (0..r - 2).all(|i| perm[i] == i)
}
