//! Fused vs unfused on the peers' elementwise workload (`docs/codegen.md`),
//! `gelu_tanh(x*a+b)*c+d` over 2^20 and 2^24 f32, on one and two threads, plus the compile
//! time of the `mnist_mlp` training step (graph to callable). Criterion measures each; output
//! buffers are allocated once and reused, as the peers' numbers do.
//!
//! Run with `cargo bench --bench fusion` (a filter narrows it: `cargo bench --bench fusion -- 2^20`).

use std::collections::HashMap;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kiln::frontend::Builder;
use kiln::frontend::optim::Optimizer;
use kiln::ir::{DType, Graph, Init, Literal, Value};

fn gelu_graph(n: usize) -> Graph {
    let b = Builder::new("gelu");
    let [x, a, bb, c, d] = ["x", "a", "b", "c", "d"].map(|name| b.input(name, DType::F32, [n]));
    b.output("y", (x * a + bb).gelu() * c + d);
    b.finish().expect("the benchmark graph builds")
}

fn uniform_feeds(g: &Graph) -> HashMap<String, Value> {
    g.inputs()
        .map(|(_, node)| {
            let name = node.op.leaf_name().expect("inputs are named").to_string();
            let init = Init::Uniform { low: Literal(-1.0), high: Literal(1.0) };
            let v = kiln::ir::init::materialize(init, &node.ty, &name, 0);
            (name, v)
        })
        .collect()
}

fn gelu(c: &mut Criterion) {
    for log2 in [20, 24] {
        let n = 1usize << log2;
        let g = gelu_graph(n);
        let feeds = uniform_feeds(&g);
        let mut group = c.benchmark_group(format!("gelu_tanh 2^{log2}"));
        if log2 >= 24 {
            group.sample_size(10).measurement_time(Duration::from_secs(4));
        }
        for (mode, fusion) in [("fused", kiln::Fusion::Fused), ("unfused", kiln::Fusion::Unfused)] {
            for threads in [1, 2] {
                let exe = kiln::compile(&g, fusion).expect("compiles").with_threads(threads);
                let mut outputs = Vec::new();
                group.bench_function(BenchmarkId::new(mode, format!("{threads} thread(s)")), |b| {
                    b.iter(|| exe.run_into(&feeds, &mut outputs).expect("runs"))
                });
            }
        }
        group.finish();
    }
}

fn compile_time(c: &mut Criterion) {
    let m = kiln::zoo::mnist_mlp(128).expect("the zoo builds");
    let step = kiln::train::train_step(&m, &Optimizer::sgd()).expect("the step builds").graph;
    c.bench_function("compile mnist_mlp training step", |b| {
        b.iter(|| kiln::compile(&step, kiln::Fusion::Fused).expect("compiles"))
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = gelu, compile_time
}
criterion_main!(benches);
