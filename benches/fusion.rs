//! Fused vs unfused on the elementwise workload of ARCHITECTURE.md §9,
//! `gelu_tanh(x*a+b)*c+d` over 2^20 and 2^24 f32, single thread, plus the compile time of the
//! `mnist_mlp` training step. Median of several runs, buffers allocated once.
//!
//! Run with `cargo bench --bench fusion`.

use std::collections::HashMap;
use std::time::Instant;

use kiln::frontend::Builder;
use kiln::frontend::optim::Optimizer;
use kiln::ir::{DType, Graph, Init, Literal, Value};

fn gelu_graph(n: usize) -> Graph {
    let b = Builder::new("gelu");
    let [x, a, bb, c, d] = ["x", "a", "b", "c", "d"].map(|name| b.input(name, DType::F32, [n]));
    b.output("y", (x * a + bb).gelu() * c + d);
    b.finish().expect("the benchmark graph builds")
}

fn median_ms(exe: &kiln::Executable, feeds: &HashMap<String, Value>, runs: usize) -> f64 {
    // Preallocated outputs, reused run to run (the peers' numbers reuse buffers too).
    let mut outputs = Vec::new();
    exe.run_into(feeds, &mut outputs).expect("runs");
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            exe.run_into(feeds, &mut outputs).expect("runs");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    for (log2, runs) in [(20, 15), (24, 3)] {
        let n = 1usize << log2;
        let g = gelu_graph(n);
        let feeds: HashMap<String, Value> = g
            .inputs()
            .map(|(_, node)| {
                let name = node.op.leaf_name().expect("inputs are named").to_string();
                let init = Init::Uniform { low: Literal(-1.0), high: Literal(1.0) };
                let v = kiln::ir::init::materialize(init, &node.ty, &name, 0);
                (name, v)
            })
            .collect();
        let fused = kiln::compile(&g, kiln::Fusion::Fused).expect("compiles");
        let unfused = kiln::compile(&g, kiln::Fusion::Unfused).expect("compiles");
        let (f, u) = (median_ms(&fused, &feeds, runs), median_ms(&unfused, &feeds, runs));
        println!(
            "gelu_tanh(x*a+b)*c+d 2^{log2}, 1 thread: fused {f:.2} ms, unfused {u:.2} ms, fused speedup {:.2}x",
            u / f
        );
        let (fused, unfused) = (fused.with_threads(2), unfused.with_threads(2));
        let (f, u) = (median_ms(&fused, &feeds, runs), median_ms(&unfused, &feeds, runs));
        println!(
            "gelu_tanh(x*a+b)*c+d 2^{log2}, 2 threads: fused {f:.2} ms, unfused {u:.2} ms, fused speedup {:.2}x",
            u / f
        );
    }
    let m = kiln::zoo::mnist_mlp(128).expect("the zoo builds");
    let step = kiln::train::train_step(&m, &Optimizer::sgd()).expect("the step builds").graph;
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let s = Instant::now();
            kiln::compile(&step, kiln::Fusion::Fused).expect("compiles");
            s.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    t.sort_by(f64::total_cmp);
    println!("compile time, mnist_mlp training step (graph to callable): {:.1} ms", t[2]);
}
