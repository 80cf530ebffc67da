//! Optimizer time per zoo model: the default pipeline (cse, fold, egraph, dce) on each model's
//! forward graph and Adam training step at batch 32, median of several runs. The target is
//! under 1 s per training step on a 2-core machine.
//!
//! Run with `cargo bench --bench optimize`.

use std::time::{Duration, Instant};

use kiln::frontend::optim::Optimizer;
use kiln::ir::DType;
use kiln::passes::egraph::{EgraphConfig, optimize};
use kiln::passes::{DEFAULT_PIPELINE, Pipeline};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let runs = 5;
    let pipeline = Pipeline::parse(DEFAULT_PIPELINE).expect("the default pipeline parses");
    println!("{:<34} {:>6} {:>6} {:>11} {:>11} {:>9}", "graph", "nodes", "after", "pipeline", "egraph", "cost");
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(32, DType::F32).expect("zoo models build") {
            let step = kiln::train::train_step(&m, &Optimizer::adam()).expect("train steps build").graph;
            for g in [m.graph, step] {
                let mut times = Vec::new();
                let mut eg_times = Vec::new();
                let mut after = 0;
                let mut ratio = 1.0;
                for _ in 0..runs {
                    let t = Instant::now();
                    let (out, _) = pipeline.run(&g).expect("optimization succeeds");
                    times.push(t.elapsed());
                    after = out.len();
                    let t = Instant::now();
                    let (_, report) = optimize(&g, &EgraphConfig::default()).expect("optimization succeeds");
                    eg_times.push(t.elapsed());
                    ratio = report.cost_after / report.cost_before;
                }
                println!(
                    "{:<34} {:>6} {:>6} {:>9.1}ms {:>9.1}ms {:>8.4}x",
                    g.name(),
                    g.len(),
                    after,
                    median(times).as_secs_f64() * 1e3,
                    median(eg_times).as_secs_f64() * 1e3,
                    ratio
                );
            }
        }
    }
}
