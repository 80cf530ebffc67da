//! The e-graph optimizer: equality saturation over kiln IR with `egg`.
//!
//! A graph goes into an e-graph ([`lang`]) whose analysis ([`analysis`]) knows every class's
//! type and folds constants. Rules ([`rules`]) run in stages, each until it saturates or hits a
//! budget (iterations, e-nodes, wall time); then one node per needed class is extracted by DAG
//! cost ([`extract`], priced by [`cost`]) and the graph is rebuilt. If extraction would cost
//! more than the input (the DAG extractor is greedy), the input is kept, so the optimizer
//! never makes a graph worse by its own measure. [`EgraphReport`] says what happened.

pub mod analysis;
pub mod cost;
pub mod extract;
pub mod lang;
pub mod rules;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use egg::Id;
use kiln_ir::{Graph, GraphError, NodeId, Op};

use analysis::TypeAnalysis;
use extract::Choice;
use lang::{EGraph, ENode};
use rules::{Finder, Part, Proposal, Stage};

/// Budgets and choices of one optimizer run.
#[derive(Clone, Debug)]
pub struct EgraphConfig {
    /// Stop a stage once the e-graph holds this many e-nodes.
    pub node_limit: usize,
    /// Iterations per stage.
    pub iter_limit: usize,
    /// Wall time for all stages together.
    pub time_limit: Duration,
    /// Matches applied per rule per iteration.
    pub match_limit: usize,
    /// Use the DAG-cost extractor (true) or the tree-cost one.
    pub dag_extraction: bool,
    /// The model extraction prices nodes with (by default the one in use,
    /// [`crate::cost_model::CostModel::current`]).
    pub cost_model: crate::cost_model::CostModel,
}

impl Default for EgraphConfig {
    fn default() -> Self {
        EgraphConfig {
            node_limit: 50_000,
            iter_limit: 8,
            time_limit: Duration::from_millis(2000),
            match_limit: 5_000,
            dag_extraction: true,
            cost_model: crate::cost_model::CostModel::current().clone(),
        }
    }
}

/// Why a stage stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// No rule changed anything.
    Saturated,
    /// The stage ran its iterations.
    IterationLimit,
    /// The e-graph reached the node limit.
    NodeLimit,
    /// The run reached its time limit.
    TimeLimit,
}

/// What one stage did.
#[derive(Clone, Debug)]
pub struct StageReport {
    /// The stage.
    pub name: &'static str,
    /// Iterations run.
    pub iterations: usize,
    /// Why it stopped.
    pub stop: StopReason,
    /// E-nodes and e-classes at the end.
    pub enodes: usize,
    /// E-classes at the end.
    pub eclasses: usize,
    /// Wall time of the stage (rule search, additions, rebuilds).
    pub elapsed: Duration,
}

/// What an optimizer run did.
#[derive(Clone, Debug, Default)]
pub struct EgraphReport {
    /// Per stage.
    pub stages: Vec<StageReport>,
    /// How many unions each rule caused.
    pub fired: BTreeMap<&'static str, usize>,
    /// DAG cost of the input graph (predicted nanoseconds, every node once).
    pub cost_before: f64,
    /// DAG cost of the output graph.
    pub cost_after: f64,
    /// True if extraction was worse than the input and the input was kept.
    pub kept_input: bool,
    /// Nodes before and after (live nodes of the arena).
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// Wall time of the whole run.
    pub elapsed: Duration,
    /// Wall time of extraction (choosing nodes, improving the choice, rebuilding and pricing
    /// the graph).
    pub extraction: Duration,
}

impl fmt::Display for EgraphReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "; egraph: {} -> {} nodes, predicted cost {:.4e} -> {:.4e} ns{}, {:.1} ms",
            self.nodes_before,
            self.nodes_after,
            self.cost_before,
            self.cost_after,
            if self.kept_input { " (kept the input)" } else { "" },
            self.elapsed.as_secs_f64() * 1e3
        )?;
        for s in &self.stages {
            writeln!(
                f,
                ";   stage {}: {} iterations, stop {:?}, {} e-nodes, {} e-classes, {:.1} ms",
                s.name,
                s.iterations,
                s.stop,
                s.enodes,
                s.eclasses,
                s.elapsed.as_secs_f64() * 1e3
            )?;
        }
        writeln!(f, ";   extraction: {:.1} ms", self.extraction.as_secs_f64() * 1e3)?;
        let fired: Vec<String> = self.fired.iter().map(|(k, v)| format!("{k} x{v}")).collect();
        write!(f, ";   rules fired: {}", if fired.is_empty() { "none".into() } else { fired.join(", ") })
    }
}

/// Adds a proposal's nodes, returning its root, or `None` if a node would be ill-typed (the
/// rule's shape condition does not hold here).
fn instantiate(eg: &mut EGraph, class: Id, p: &Proposal) -> Option<Id> {
    let mut ids: Vec<Id> = Vec::with_capacity(p.parts.len());
    for part in &p.parts {
        let id = match part {
            Part::Class(c) => eg.find(*c),
            Part::Node { op, declared, args } => {
                let node =
                    ENode { op: op.clone(), declared: declared.clone(), args: args.iter().map(|&i| ids[i]).collect() };
                analysis::type_of(eg, &node).ok()?;
                eg.add(node)
            }
        };
        ids.push(id);
    }
    let root = *ids.last()?;
    (eg[root].data.ty == eg[class].data.ty).then_some(root)
}

/// A stage as run: a name and its rules.
struct Plan {
    name: &'static str,
    rules: Vec<&'static rules::Rule>,
}

impl From<&Stage> for Plan {
    fn from(s: &Stage) -> Self {
        Plan { name: s.name, rules: s.rules.iter().flat_map(|r| r.iter()).collect() }
    }
}

/// Runs `stages` on `eg`, recording into `report`.
fn run_stages(eg: &mut EGraph, stages: &[Plan], config: &EgraphConfig, start: Instant, report: &mut EgraphReport) {
    for stage in stages {
        let stage_start = Instant::now();
        let mut iterations = 0;
        let stop = loop {
            if iterations >= config.iter_limit {
                break StopReason::IterationLimit;
            }
            if start.elapsed() > config.time_limit {
                break StopReason::TimeLimit;
            }
            let mut found: Vec<(Id, Proposal, &'static str)> = Vec::new();
            for rule in &stage.rules {
                let before = found.len();
                match rule.find {
                    Finder::Node(f) => {
                        'search: for class in eg.classes() {
                            for n in &class.nodes {
                                for p in f(eg, class.id, n) {
                                    found.push((class.id, p, rule.name));
                                    if found.len() - before >= config.match_limit {
                                        break 'search;
                                    }
                                }
                            }
                        }
                    }
                    Finder::Global(f) => {
                        found.extend(f(eg).into_iter().take(config.match_limit).map(|(id, p)| (id, p, rule.name)));
                    }
                }
            }
            let size_before = eg.total_number_of_nodes();
            let mut unions = 0;
            for (class, p, name) in &found {
                if let Some(root) = instantiate(eg, *class, p)
                    && eg.union(*class, root)
                {
                    unions += 1;
                    *report.fired.entry(name).or_default() += 1;
                }
                if eg.total_number_of_nodes() > config.node_limit {
                    break;
                }
            }
            eg.rebuild();
            iterations += 1;
            if eg.total_number_of_nodes() > config.node_limit {
                break StopReason::NodeLimit;
            }
            if unions == 0 && eg.total_number_of_nodes() == size_before {
                break StopReason::Saturated;
            }
        };
        report.stages.push(StageReport {
            name: stage.name,
            iterations,
            stop,
            enodes: eg.total_number_of_nodes(),
            eclasses: eg.number_of_classes(),
            elapsed: stage_start.elapsed(),
        });
    }
}

/// The DAG cost of the live part of a graph, every node once, under the cost model in use.
pub fn graph_cost(graph: &Graph) -> f64 {
    graph_cost_with(crate::cost_model::CostModel::current(), graph)
}

/// The DAG cost of the live part of a graph, every node once, under `model`.
pub fn graph_cost_with(model: &crate::cost_model::CostModel, graph: &Graph) -> f64 {
    let live = graph.live_mask();
    graph
        .nodes()
        .filter(|(id, _)| live[id.index()])
        .map(|(_, n)| {
            let tys: Vec<&kiln_ir::TensorType> = n.args.iter().map(|a| graph.ty(*a)).collect();
            cost::node_cost(model, &n.op, &n.ty, &tys)
        })
        .sum()
}

/// Rebuilds a graph from chosen e-nodes: the same signature (every leaf, in order) and the
/// same named outputs. `None` if the choice has a cycle or misses a class.
fn rebuild(eg: &EGraph, choice: &Choice, original: &Graph, outputs: &[Id]) -> Result<Option<Graph>, GraphError> {
    let mut g = Graph::new(original.name());
    let mut built: HashMap<Id, NodeId> = HashMap::new();
    let mut leaf_ids: HashMap<String, NodeId> = HashMap::new();
    for (_, n) in original.leaves() {
        // `leaves` yields inputs and parameters only.
        let name = n.op.leaf_name().unwrap_or_default().to_string();
        let id = match &n.op {
            Op::Param { init, .. } => g.param(name, n.ty.clone(), *init)?,
            _ => g.input(name, n.ty.clone())?,
        };
        leaf_ids.insert(n.op.leaf_name().unwrap_or_default().to_string(), id);
    }
    // Iterative post-order; a class met again while on the stack is a cycle.
    let mut on_stack: std::collections::HashSet<Id> = std::collections::HashSet::new();
    for &root in outputs {
        let mut stack: Vec<(Id, bool)> = vec![(eg.find(root), false)];
        while let Some((c, expanded)) = stack.pop() {
            if built.contains_key(&c) {
                continue;
            }
            let Some(node) = choice.get(&c) else { return Ok(None) };
            if !expanded {
                if !on_stack.insert(c) {
                    return Ok(None);
                }
                stack.push((c, true));
                for a in node.args.iter().rev() {
                    let a = eg.find(*a);
                    if !built.contains_key(&a) {
                        if on_stack.contains(&a) {
                            return Ok(None);
                        }
                        stack.push((a, false));
                    }
                }
                continue;
            }
            on_stack.remove(&c);
            let id = match node.op.leaf_name() {
                Some(name) => match leaf_ids.get(name) {
                    Some(id) => *id,
                    None => return Ok(None),
                },
                None => {
                    let args: Option<Vec<NodeId>> =
                        node.args.iter().map(|a| built.get(&eg.find(*a)).copied()).collect();
                    let Some(args) = args else { return Ok(None) };
                    g.add_typed(node.op.clone(), &args, eg[c].data.ty.clone())?
                }
            };
            built.insert(c, id);
        }
    }
    for (o, root) in original.outputs().iter().zip(outputs) {
        g.add_output(o.name.clone(), built[&eg.find(*root)])?;
    }
    Ok(Some(g))
}

/// Optimizes `graph` with the given stages and extracts the cheapest equivalent graph.
pub fn optimize_with(
    graph: &Graph,
    stages: &[Stage],
    config: &EgraphConfig,
) -> Result<(Graph, EgraphReport), GraphError> {
    let plans: Vec<Plan> = stages.iter().map(Plan::from).collect();
    run(graph, &plans, config)
}

/// Optimizes `graph` with one stage of just `rules` (for testing a rule on its own).
pub fn optimize_with_rules(
    graph: &Graph,
    rules: &[&'static rules::Rule],
    config: &EgraphConfig,
) -> Result<(Graph, EgraphReport), GraphError> {
    run(graph, &[Plan { name: "rules", rules: rules.to_vec() }], config)
}

fn run(graph: &Graph, stages: &[Plan], config: &EgraphConfig) -> Result<(Graph, EgraphReport), GraphError> {
    let start = Instant::now();
    let mut report =
        EgraphReport { cost_before: graph_cost_with(&config.cost_model, graph), ..EgraphReport::default() };
    let live = graph.live_mask();
    report.nodes_before = live.iter().filter(|l| **l).count();
    let mut eg = EGraph::new(TypeAnalysis { cost: config.cost_model.clone() });
    let ids = lang::add_graph(&mut eg, graph);
    eg.rebuild();
    run_stages(&mut eg, stages, config, start, &mut report);
    let outputs: Vec<Id> = graph.outputs().iter().map(|o| ids[o.value.index()]).collect();
    let extraction = Instant::now();
    let choice = if config.dag_extraction {
        extract::improve(&eg, extract::dag_extract(&eg), &outputs, 4)
    } else {
        extract::tree_extract(&eg)
    };
    let candidate = rebuild(&eg, &choice, graph, &outputs)?;
    let result = match candidate {
        Some(g) if graph_cost_with(&config.cost_model, &g) <= report.cost_before => g,
        _ => {
            report.kept_input = true;
            graph.clone()
        }
    };
    report.cost_after = graph_cost_with(&config.cost_model, &result);
    report.nodes_after = result.live_mask().iter().filter(|l| **l).count();
    report.extraction = extraction.elapsed();
    report.elapsed = start.elapsed();
    Ok((result, report))
}

/// Optimizes `graph` with the default stages ([`rules::STAGES`]).
pub fn optimize(graph: &Graph, config: &EgraphConfig) -> Result<(Graph, EgraphReport), GraphError> {
    optimize_with(graph, rules::STAGES, config)
}

/// The `egraph` pass: [`optimize`] with a configuration.
#[derive(Clone, Debug, Default)]
pub struct Egraph {
    /// Budgets and extractor.
    pub config: EgraphConfig,
}

impl crate::pipeline::Pass for Egraph {
    fn name(&self) -> &'static str {
        "egraph"
    }

    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError> {
        let (g, report) = optimize(graph, &self.config)?;
        Ok((g, report.to_string()))
    }
}

/// The `fold` pass: constant folding by the e-class analysis alone (no rewrite rules), so
/// every op that the interpreter can evaluate on constants becomes a constant.
#[derive(Clone, Debug, Default)]
pub struct Fold {
    /// Budgets and extractor.
    pub config: EgraphConfig,
}

impl crate::pipeline::Pass for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }

    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError> {
        let (g, _) = optimize_with(graph, &[], &self.config)?;
        Ok((g, String::new()))
    }
}
