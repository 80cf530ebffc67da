//! Extraction: choosing one e-node per needed e-class.
//!
//! [`tree_extract`] is the classic bottom-up extractor: a class costs its node plus its
//! children's costs, so a subexpression used twice is paid twice. [`dag_extract`] prices the
//! whole selected DAG, counting each class once (the greedy-DAG extractor): a class's cost is
//! the sum of the node costs of every distinct class below it. Both iterate to a fixpoint and
//! skip nodes whose children have no finite choice yet (which also breaks cycles).

use std::collections::HashMap;

use egg::Id;

use super::cost::node_cost;
use super::lang::{EGraph, ENode};

/// The chosen node of every class that has one.
pub type Choice = HashMap<Id, ENode>;

fn cost_of(eg: &EGraph, class: Id, n: &ENode) -> f64 {
    let tys: Vec<&kiln_ir::TensorType> = n.args.iter().map(|a| &eg[*a].data.ty).collect();
    node_cost(&eg.analysis.cost, &n.op, &eg[class].data.ty, &tys)
}

/// Tree-cost extraction.
pub fn tree_extract(eg: &EGraph) -> Choice {
    let mut best: HashMap<Id, (f64, ENode)> = HashMap::new();
    loop {
        let mut changed = false;
        for class in eg.classes() {
            for n in &class.nodes {
                let children: Option<f64> = n.args.iter().map(|a| best.get(&eg.find(*a)).map(|b| b.0)).sum();
                let Some(children) = children else { continue };
                let c = cost_of(eg, class.id, n) + children;
                if best.get(&class.id).is_none_or(|b| c < b.0) {
                    best.insert(class.id, (c, n.clone()));
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    best.into_iter().map(|(k, v)| (k, v.1)).collect()
}

/// A set of classes as a bitset over dense class indices.
#[derive(Clone)]
struct Set(Vec<u64>);

impl Set {
    fn new(n: usize) -> Self {
        Set(vec![0; n.div_ceil(64)])
    }
    fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    fn union_with(&mut self, o: &Set) {
        for (a, b) in self.0.iter_mut().zip(&o.0) {
            *a |= b;
        }
    }
    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(w, &bits)| (0..64).filter(move |b| bits & (1 << b) != 0).map(move |b| w * 64 + b))
    }
}

/// The most e-classes [`dag_extract`] prices exactly. Exact DAG pricing keeps one set of
/// classes per class, `n²/8` bytes and as many word operations: 8 MiB at this size, but 1.2 GB
/// at 100,000 classes. Beyond it, extraction amortizes shared classes instead
/// ([`shared_cost_extract`]), which is linear. Every zoo graph's e-graph is well below it.
pub const EXACT_DAG_CLASSES: usize = 8192;

/// DAG-cost extraction: shared classes are paid once. A worklist revisits the parents of a
/// class whenever its choice improves, so long chains (an unrolled LSTM) settle in one sweep.
/// E-graphs of more than [`EXACT_DAG_CLASSES`] classes go to [`shared_cost_extract`].
pub fn dag_extract(eg: &EGraph) -> Choice {
    if eg.number_of_classes() > EXACT_DAG_CLASSES {
        return shared_cost_extract(eg);
    }
    let (ids, index) = dense_ids(eg);
    let n = ids.len();
    // Per class: (total DAG cost, own node cost, the set of classes in its DAG, the node).
    let mut best: Vec<Option<(f64, f64, Set, ENode)>> = vec![None; n];
    settle(eg, &ids, &index, |ci| {
        let class = &eg[ids[ci]];
        let mut improved = false;
        for node in &class.nodes {
            let mut set = Set::new(n);
            let mut ok = true;
            for a in &node.args {
                match &best[index[&eg.find(*a)]] {
                    Some(b) => set.union_with(&b.2),
                    None => {
                        ok = false;
                        break;
                    }
                }
            }
            if !ok || set.contains(ci) {
                continue;
            }
            let own = cost_of(eg, class.id, node);
            let total = own + set.iter().map(|i| best[i].as_ref().map_or(0.0, |b| b.1)).sum::<f64>();
            if best[ci].as_ref().is_none_or(|b| total < b.0 - 1e-9 * b.0.abs()) {
                set.insert(ci);
                best[ci] = Some((total, own, set, node.clone()));
                improved = true;
            }
        }
        improved
    });
    ids.into_iter().zip(best).filter_map(|(id, b)| b.map(|b| (id, b.3))).collect()
}

/// Every class id in a fixed order, and each one's position in it.
fn dense_ids(eg: &EGraph) -> (Vec<Id>, HashMap<Id, usize>) {
    let ids: Vec<Id> = eg.classes().map(|c| c.id).collect();
    let index = ids.iter().enumerate().map(|(i, id)| (*id, i)).collect();
    (ids, index)
}

/// Runs `visit` on every class (by dense index) and again on the parents of every class
/// whose choice it improved (`visit` returns true), until nothing improves or a budget of
/// 64 visits per class runs out: the worklist both extractors settle on.
fn settle(eg: &EGraph, ids: &[Id], index: &HashMap<Id, usize>, mut visit: impl FnMut(usize) -> bool) {
    let n = ids.len();
    let mut queue: std::collections::VecDeque<usize> = (0..n).collect();
    let mut queued = vec![true; n];
    let mut budget = 64 * n + 1024;
    while let Some(ci) = queue.pop_front() {
        queued[ci] = false;
        if budget == 0 {
            break;
        }
        budget -= 1;
        if visit(ci) {
            for p in eg[ids[ci]].parents() {
                let pi = index[&eg.find(p)];
                if !queued[pi] {
                    queued[pi] = true;
                    queue.push_back(pi);
                }
            }
        }
    }
}

/// Linear-time extraction for big e-graphs: a class costs its node plus each child's cost
/// divided by the number of e-nodes that read the child, so a value read by k nodes is paid
/// about once overall (tree cost would pay it k times, and exponentially often down a DAG).
/// A worklist revisits the parents of a class whose cost fell; at most a constant number of
/// visits per class, so cycles and slow settling cannot make it quadratic.
pub fn shared_cost_extract(eg: &EGraph) -> Choice {
    let (ids, index) = dense_ids(eg);
    let readers: Vec<f64> = ids.iter().map(|id| eg[*id].parents().count().max(1) as f64).collect();
    let mut best: Vec<Option<(f64, ENode)>> = vec![None; ids.len()];
    settle(eg, &ids, &index, |ci| {
        let class = &eg[ids[ci]];
        let mut improved = false;
        for node in &class.nodes {
            let children: Option<f64> = node
                .args
                .iter()
                .map(|a| {
                    let i = index[&eg.find(*a)];
                    best[i].as_ref().map(|b| b.0 / readers[i])
                })
                .sum();
            let Some(children) = children else { continue };
            let total = cost_of(eg, class.id, node) + children;
            if best[ci].as_ref().is_none_or(|b| total < b.0 - 1e-9 * b.0.abs()) {
                best[ci] = Some((total, node.clone()));
                improved = true;
            }
        }
        improved
    });
    ids.into_iter().zip(best).filter_map(|(id, b)| b.map(|b| (id, b.1))).collect()
}

/// The DAG cost of the expression a choice selects under `roots`: every reachable class once.
pub fn dag_cost(eg: &EGraph, choice: &Choice, roots: &[Id]) -> f64 {
    let mut seen = std::collections::HashSet::new();
    let mut stack: Vec<Id> = roots.iter().map(|r| eg.find(*r)).collect();
    let mut total = 0.0;
    while let Some(c) = stack.pop() {
        if !seen.insert(c) {
            continue;
        }
        if let Some(n) = choice.get(&c) {
            total += cost_of(eg, c, n);
            stack.extend(n.args.iter().map(|a| eg.find(*a)));
        }
    }
    total
}

/// Prices a choice's DAG — every class reachable from the roots once, `None` if the selection
/// has a cycle or misses a class — over dense arrays: each class's chosen node cost and
/// children are kept, so a move re-prices the selection with one walk and no hashing or node
/// costing (what [`improve`] does many times).
struct Pricer<'a> {
    eg: &'a EGraph,
    /// Dense index of every canonical class.
    index: HashMap<Id, usize>,
    /// Per class: its chosen node's cost and children, if it has a chosen node.
    chosen: Vec<Option<(f64, Vec<usize>)>>,
    /// Per class: `open` while on the walk's stack, `open + 1` when done (a fresh pair each
    /// walk, so nothing needs clearing).
    mark: Vec<u32>,
    open: u32,
    roots: Vec<usize>,
}

impl<'a> Pricer<'a> {
    fn new(eg: &'a EGraph, choice: &Choice, roots: &[Id]) -> Self {
        let (ids, index) = dense_ids(eg);
        let n = ids.len();
        let roots = roots.iter().map(|r| index[&eg.find(*r)]).collect();
        let mut p = Pricer { eg, index, chosen: vec![None; n], mark: vec![0; n], open: 0, roots };
        for (c, node) in choice {
            p.choose(*c, Some(node));
        }
        p
    }

    /// Makes `node` the choice of `class` (none for `None`).
    fn choose(&mut self, class: Id, node: Option<&ENode>) {
        let class = self.eg.find(class);
        let Some(&ci) = self.index.get(&class) else { return };
        self.chosen[ci] = node.map(|n| {
            let kids = n.args.iter().map(|a| self.index[&self.eg.find(*a)]).collect();
            (cost_of(self.eg, class, n), kids)
        });
    }

    /// The DAG cost of the selection under the roots, or `None` if it has a cycle or a
    /// selected class has no choice.
    fn price(&mut self) -> Option<f64> {
        self.open += 2;
        let (open, done) = (self.open, self.open + 1);
        let mut total = 0.0;
        let mut stack: Vec<(usize, bool)> = self.roots.iter().map(|&r| (r, false)).collect();
        while let Some((c, expanded)) = stack.pop() {
            if expanded {
                self.mark[c] = done;
                continue;
            }
            if self.mark[c] == done {
                continue;
            }
            if self.mark[c] == open {
                return None;
            }
            let (own, kids) = self.chosen[c].as_ref()?;
            self.mark[c] = open;
            total += own;
            stack.push((c, true));
            for &a in kids {
                if self.mark[a] == open {
                    return None;
                }
                if self.mark[a] != done {
                    stack.push((a, false));
                }
            }
        }
        Some(total)
    }
}

/// The classes reachable from `roots` under a choice, in increasing id order.
fn selected(eg: &EGraph, choice: &Choice, roots: &[Id]) -> std::collections::BTreeSet<Id> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack: Vec<Id> = roots.iter().map(|r| eg.find(*r)).collect();
    while let Some(c) = stack.pop() {
        if seen.insert(c)
            && let Some(n) = choice.get(&c)
        {
            stack.extend(n.args.iter().map(|a| eg.find(*a)));
        }
    }
    seen
}

/// Hill-climbs a choice by moves that lower the DAG cost of the whole selection and keep it
/// acyclic. A move switches one class to another of its nodes, together with every other
/// selected class that has a node over the same newly needed child: that is how a shared new
/// value (the wide matmul of a merge, say) becomes worth paying for, which no single switch
/// shows. This fixes the greedy extractor's blind spots.
///
/// Each tried move prices the whole selection, so the moves tried are bounded by a budget of
/// class visits linear in the selection's size (a few dozen full pricings, or more on small
/// graphs): on a big graph it tries the first moves and stops, never going quadratic.
pub fn improve(eg: &EGraph, mut choice: Choice, roots: &[Id], rounds: usize) -> Choice {
    let mut pricer = Pricer::new(eg, &choice, roots);
    let Some(mut best) = pricer.price() else { return choice };
    let mut visits_left = 32 * selected(eg, &choice, roots).len() + 2_000_000;
    'rounds: for _ in 0..rounds {
        let mut improved = false;
        let sel = selected(eg, &choice, roots);
        let classes: Vec<Id> = sel.iter().copied().filter(|c| eg[*c].nodes.len() > 1).collect();
        // For every class not selected yet: the selected classes with a node over it.
        let mut users: std::collections::BTreeMap<Id, Vec<(Id, ENode)>> = std::collections::BTreeMap::new();
        for &c in &classes {
            for n in &eg[c].nodes {
                for a in &n.args {
                    let a = eg.find(*a);
                    if !sel.contains(&a) {
                        users.entry(a).or_default().push((c, n.clone()));
                    }
                }
            }
        }
        for &c in &classes {
            for n in &eg[c].nodes {
                if choice.get(&c) == Some(n) || n.args.iter().any(|a| !choice.contains_key(&eg.find(*a))) {
                    continue;
                }
                let mut group: Vec<(Id, ENode)> = vec![(c, n.clone())];
                for a in &n.args {
                    for (c2, n2) in users.get(&eg.find(*a)).into_iter().flatten() {
                        if *c2 != c && !group.iter().any(|(g, _)| g == c2) {
                            group.push((*c2, n2.clone()));
                        }
                    }
                }
                let Some(left) = visits_left.checked_sub(sel.len()) else { break 'rounds };
                visits_left = left;
                let old: Vec<(Id, Option<ENode>)> =
                    group.iter().map(|(g, m)| (*g, choice.insert(*g, m.clone()))).collect();
                for (g, m) in &group {
                    pricer.choose(*g, Some(m));
                }
                match pricer.price() {
                    Some(cost) if cost < best - 1e-9 * best.abs() => {
                        best = cost;
                        improved = true;
                    }
                    _ => {
                        for (g, o) in old.into_iter().rev() {
                            pricer.choose(g, o.as_ref());
                            match o {
                                Some(o) => choice.insert(g, o),
                                None => choice.remove(&g),
                            };
                        }
                    }
                }
            }
        }
        if !improved {
            break;
        }
    }
    choice
}
