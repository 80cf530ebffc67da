//! The GEMM choice, measured: sgemm through kiln's contraction path (the `gemm` crate with
//! AVX-512 microkernels, one row band per thread) against `matrixmultiply` (what ndarray's
//! `dot` calls), at N = 256 and 1024, on one thread; plus kiln on two threads. The
//! contraction issue's model workloads are timed by `kiln bench` (see docs/contractions.md).
//!
//! Run with `cargo bench --bench contractions`.

use std::collections::HashMap;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::ir::{DType, Init, Literal, Value, parse_graph};

fn sgemm(c: &mut Criterion) {
    let mut group = c.benchmark_group("sgemm");
    group.sample_size(20).measurement_time(Duration::from_secs(3));
    for n in [256usize, 1024] {
        group.throughput(Throughput::Elements((2 * n * n * n) as u64));
        let text = format!(
            "func @sgemm(%a: f32[{n},{n}], %b: f32[{n},{n}]) -> (y: f32[{n},{n}]) {{\n  %2 = matmul %a, %b : f32[{n},{n}]\n  return %2\n}}\n"
        );
        let g = parse_graph(&text).expect("the benchmark graph parses");
        let feeds: HashMap<String, Value> = ["a", "b"]
            .iter()
            .map(|name| {
                let ty = kiln::ir::TensorType::new(DType::F32, vec![n, n]);
                let init = Init::Uniform { low: Literal(-1.0), high: Literal(1.0) };
                (name.to_string(), kiln::ir::init::materialize(init, &ty, name, 0))
            })
            .collect();
        for threads in [1, 2] {
            let exe = kiln::compile(&g, kiln::Fusion::Fused).expect("compiles").with_threads(threads);
            let mut out = Vec::new();
            group.bench_function(BenchmarkId::new(format!("kiln gemm, {threads} thread(s)"), n), |bch| {
                bch.iter(|| exe.run_into(&feeds, &mut out).expect("runs"))
            });
        }
        let (Value::F32(a), Value::F32(b)) = (&feeds["a"], &feeds["b"]) else { unreachable!("f32 feeds") };
        let (a, b) = (
            a.view().into_dimensionality::<ndarray::Ix2>().expect("2-D"),
            b.view().into_dimensionality::<ndarray::Ix2>().expect("2-D"),
        );
        group.bench_function(BenchmarkId::new("matrixmultiply (ndarray dot), 1 thread", n), |bch| {
            bch.iter(|| a.dot(&b))
        });
    }
    group.finish();
}

criterion_group!(benches, sgemm);
criterion_main!(benches);
