//! The optimizer end to end: it preserves meaning (zoo models forward and training steps, and
//! random graphs), never raises cost, stays within budget, and its DAG extractor beats the
//! tree extractor where sharing matters. Snapshots hold the optimized graphs users inspect.

mod common;

use std::collections::HashMap;

use common::*;
use kiln::frontend::optim::Optimizer;
use kiln::ir::{DType, Graph, Value, interp};
use kiln::passes::egraph::{EgraphConfig, graph_cost, optimize};
use kiln::passes::{DEFAULT_PIPELINE, Pipeline};
use proptest::prelude::*;

/// Random inputs for a graph's inputs; parameters and state come from the seed.
fn feeds(g: &Graph) -> HashMap<String, Value> {
    let mut f = kiln::ir::init::init_params(g, 1);
    for (i, (_, n)) in g.inputs().enumerate() {
        let name = n.op.leaf_name().unwrap();
        let r = pseudo(n.ty.numel(), 40 + i as u64);
        let v = match n.ty.dtype {
            DType::I32 => {
                let hi = if n.ty.rank() == 2 { 10000.0 } else { 2.0 };
                i32v(n.ty.dims(), &r.iter().map(|x| ((x + 1.0) / 2.0 * hi) as i32).collect::<Vec<_>>())
            }
            DType::I64 => i64v(n.ty.dims(), &r.iter().map(|x| (x * 100.0) as i64).collect::<Vec<_>>()),
            DType::F64 => f64v(n.ty.dims(), &r.iter().map(|x| (x + 1.0) / 2.0).collect::<Vec<_>>()),
            // Probabilities, learning rates and step counts in a sensible range.
            _ => f32v(n.ty.dims(), &r.iter().map(|x| ((x + 1.0) / 2.0) as f32).collect::<Vec<_>>()),
        };
        f.insert(name.to_string(), v);
    }
    f
}

fn assert_same(a: &Graph, b: &Graph, tol: f64) {
    let f = feeds(a);
    let (x, y) = (interp::run(a, &f).unwrap(), interp::run(b, &f).unwrap());
    assert_eq!(x.len(), y.len());
    for ((o, x), y) in a.outputs().iter().zip(&x).zip(&y) {
        assert_eq!(x.ty(), y.ty(), "{}", o.name);
        let (xv, yv) = (x.to_f64_vec(), y.to_f64_vec());
        let scale = xv.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (i, (p, q)) in xv.iter().zip(&yv).enumerate() {
            assert!((p - q).abs() <= tol * scale, "@{} output {} [{i}]: {p} vs optimized {q}", a.name(), o.name);
        }
    }
}

fn zoo_graphs() -> Vec<Graph> {
    let mut out = Vec::new();
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(2, DType::F32).unwrap() {
            out.push(kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph);
            out.push(m.graph);
        }
    }
    out
}

#[test]
fn zoo_models_keep_their_meaning_and_never_cost_more() {
    let pipeline = Pipeline::parse(DEFAULT_PIPELINE).unwrap();
    for g in zoo_graphs() {
        let (opt, reports) = pipeline.run(&g).unwrap();
        kiln::ir::verify(&opt).unwrap();
        assert!(graph_cost(&opt) <= graph_cost(&g), "@{}: cost rose", g.name());
        assert_same(&g, &opt, 1e-4);
        // Optimizing again changes nothing: the result is a fixpoint.
        let (again, _) = pipeline.run(&opt).unwrap();
        assert_eq!(graph_cost(&again), graph_cost(&opt), "@{}\n{}", g.name(), reports.last().unwrap());
    }
}

#[test]
fn every_zoo_optimization_reports_its_stages_within_budget() {
    for g in zoo_graphs() {
        let (_, report) = optimize(&g, &EgraphConfig::default()).unwrap();
        assert_eq!(report.stages.len(), 3, "@{}", g.name());
        assert!(report.cost_after <= report.cost_before);
        let text = report.to_string();
        assert!(text.contains("stage simplify") && text.contains("stop"), "{text}");
    }
    // A tiny budget stops early and says why.
    let g = kiln::train::train_step(&kiln::zoo::transformer_block(1).unwrap(), &Optimizer::sgd()).unwrap().graph;
    let tight = EgraphConfig { iter_limit: 1, ..EgraphConfig::default() };
    let (out, report) = optimize(&g, &tight).unwrap();
    assert!(report.stages.iter().any(|s| s.stop == kiln::passes::egraph::StopReason::IterationLimit), "{report}");
    assert_same(&g, &out, 1e-4);
    let nodes = EgraphConfig { node_limit: 10, ..EgraphConfig::default() };
    let (_, report) = optimize(&g, &nodes).unwrap();
    assert_eq!(report.stages[0].stop, kiln::passes::egraph::StopReason::NodeLimit);
}

/// A graph where a tree-cost extractor pays for a shared value twice and so picks a worse
/// form: `y = e * e` with `e` in a class that also holds a cheap-looking unshared alternative.
#[test]
fn dag_extraction_beats_tree_extraction_when_values_are_shared() {
    use kiln::passes::egraph::extract::{dag_cost, dag_extract, improve, tree_extract};
    use kiln::passes::egraph::lang::{EGraph, ENode, add_graph};
    let text = "func @t(%a: f32[64,64], %b: f32[64,64]) -> (y: f32[64,64], z: f32[64,64]) {\n  %2 = matmul %a, %b : f32[64,64]\n  %3 = exp %2 : f32[64,64]\n  %4 = tanh %a : f32[64,64]\n  %5 = add %3, %4 : f32[64,64]\n  return %2, %5\n}\n";
    let g = kiln::ir::parse_graph(text).unwrap();
    let mut eg = EGraph::new(kiln::passes::egraph::analysis::TypeAnalysis::default());
    let ids = add_graph(&mut eg, &g);
    // Claim that %5 also equals sin(sin(sin(b))) (a fiction, cheaper than a matmul on its
    // own): the tree extractor prefers it, but the matmul is paid for anyway by the output y,
    // so reusing exp(matmul) + tanh(a) is cheaper for the whole DAG.
    let mut s = ids[1];
    for _ in 0..3 {
        s = eg.add(ENode { op: kiln::ir::Op::Unary(kiln::ir::UnaryOp::Sin), declared: None, args: vec![s] });
    }
    eg.union(ids[5], s);
    eg.rebuild();
    let roots = [ids[2], ids[5]];
    let (tree, dag) = (tree_extract(&eg), improve(&eg, dag_extract(&eg), &roots, 4));
    let (tc, dc) = (dag_cost(&eg, &tree, &roots), dag_cost(&eg, &dag, &roots));
    assert!(dc < tc, "DAG extraction {dc} should beat tree extraction {tc}");
    assert_ne!(tree.get(&eg.find(ids[5])), dag.get(&eg.find(ids[5])));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_graphs_keep_their_meaning(ops in prop::collection::vec((any::<u8>(), any::<usize>(), any::<usize>()), 1..14)) {
        let g = random_graph(&ops);
        let (opt, report) = optimize(&g, &EgraphConfig::default()).unwrap();
        kiln::ir::verify(&opt).unwrap();
        prop_assert!(report.cost_after <= report.cost_before);
        // Inputs in [0.5, 1.5] keep log(exp x) and 1/(1/x) away from their edges.
        let mut f = HashMap::new();
        for (i, (_, n)) in g.inputs().enumerate() {
            let r: Vec<f64> = pseudo(n.ty.numel(), 90 + i as u64).iter().map(|x| x * 0.5 + 1.0).collect();
            f.insert(n.op.leaf_name().unwrap().to_string(), f64v(n.ty.dims(), &r));
        }
        let (a, b) = (interp::run(&g, &f).unwrap(), interp::run(&opt, &f).unwrap());
        for (x, y) in a.iter().zip(&b) {
            let (xv, yv) = (x.to_f64_vec(), y.to_f64_vec());
            for (p, q) in xv.iter().zip(&yv) {
                prop_assert!((p - q).abs() <= 1e-9 * (1.0 + p.abs()), "{p} vs {q}\n{g}\n{opt}\n{report}");
            }
        }
    }
}

macro_rules! optimized_snapshots {
    ($($name:ident),*) => {$(
        #[test]
        fn $name() {
            let entry = kiln::zoo::entry(stringify!($name)).unwrap();
            let pipeline = Pipeline::parse(DEFAULT_PIPELINE).unwrap();
            let mut text = String::new();
            for m in (entry.build)(2, DType::F32).unwrap() {
                let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph;
                for g in [m.graph, step] {
                    let (opt, _) = pipeline.run(&g).unwrap();
                    text.push_str(&opt.to_string());
                    text.push('\n');
                }
            }
            insta::assert_snapshot!(concat!("optimized_", stringify!($name)), text);
        }
    )*};
}

optimized_snapshots!(xor_mlp, mnist_mlp, lenet5, cifar_cnn, lstm_classifier, transformer_block, gan);

/// The kernel partition of every zoo model's Adam step (batch 2) after the default pipeline:
/// what fusion chose (each kernel's members, recomputed values in every kernel that computes
/// them, multi-output kernels' side outputs, epilogues of contractions).
#[test]
fn partition_snapshots_of_every_zoo_training_step() {
    for e in kiln::zoo::CATALOG {
        let mut text = String::new();
        for m in (e.build)(2, DType::F32).unwrap() {
            let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph;
            let exe = kiln::compile_with(&step, kiln::Fusion::Fused, DEFAULT_PIPELINE).unwrap();
            text.push_str(&format!("# {}\n", step.name()));
            text.push_str(&common::partition::partition_text(&exe));
        }
        insta::assert_snapshot!(format!("partition_{}", e.name), text);
    }
}

/// The optimizer is deterministic: the same graph always gives the same text (compile caches
/// and snapshots depend on it).
#[test]
fn optimization_is_deterministic() {
    for g in zoo_graphs().into_iter().filter(|g| g.name().starts_with("transformer") || g.name().starts_with("lenet5"))
    {
        let first = optimize(&g, &EgraphConfig::default()).unwrap().0.to_string();
        for _ in 0..3 {
            assert_eq!(optimize(&g, &EgraphConfig::default()).unwrap().0.to_string(), first, "@{}", g.name());
        }
    }
}
