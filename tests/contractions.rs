//! Contractions on the JIT against the interpreter: every matmul shape class (plain,
//! transposed operands folded into strides, batch axes, odd sizes, 1×N and N×1, an empty
//! contracted axis, products big enough to be cut into row blocks) in `f32` and `f64`, and
//! identical results on one and two threads.

mod common;

use std::collections::HashMap;

use common::convs::{CONV_CASES, conv_graphs};
use common::*;
use kiln::ir::{DType, Graph, Value, interp, parse_graph};
use kiln::passes::fuse::GroupKind;
use kiln::runtime::jit::{Options, compile};

/// Deterministic values in [-1, 1) for every input of `g`.
fn inputs(g: &Graph) -> HashMap<String, Value> {
    g.inputs()
        .enumerate()
        .map(|(i, (_, n))| {
            let r = pseudo(n.ty.numel(), 300 + i as u64);
            let v = match n.ty.dtype {
                DType::F64 => f64v(n.ty.dims(), &r),
                _ => f32v(n.ty.dims(), &r.iter().map(|x| *x as f32).collect::<Vec<_>>()),
            };
            (n.op.leaf_name().unwrap().to_string(), v)
        })
        .collect()
}

/// `y = op(a) @ op(b)` with `op` a transpose of the last two axes where asked.
fn matmul_graph(dt: &str, batch: &[usize], m: usize, k: usize, n: usize, ta: bool, tb: bool) -> Graph {
    let dims = |r: usize, c: usize| {
        let mut d: Vec<String> = batch.iter().map(|b| b.to_string()).collect();
        d.push(r.to_string());
        d.push(c.to_string());
        format!("{dt}[{}]", d.join(","))
    };
    let rank = batch.len() + 2;
    let mut perm: Vec<String> = (0..rank - 2).map(|i| i.to_string()).collect();
    perm.push((rank - 1).to_string());
    perm.push((rank - 2).to_string());
    let perm = perm.join(",");
    let (a_ty, b_ty) = (if ta { dims(k, m) } else { dims(m, k) }, if tb { dims(n, k) } else { dims(k, n) });
    let mut body = String::new();
    let a = if ta {
        body.push_str(&format!("  %2 = permute %a {{perm=[{perm}]}} : {}\n", dims(m, k)));
        "%2"
    } else {
        "%a"
    };
    let b = if tb {
        body.push_str(&format!("  %3 = permute %b {{perm=[{perm}]}} : {}\n", dims(k, n)));
        "%3"
    } else {
        "%b"
    };
    let y = dims(m, n);
    let text = format!(
        "func @t(%a: {a_ty}, %b: {b_ty}) -> (y: {y}) {{\n{body}  %4 = matmul {a}, {b} : {y}\n  return %4\n}}\n"
    );
    parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn check(g: &Graph, k: usize) {
    let f = inputs(g);
    let want = interp::run(g, &f).unwrap()[0].to_f64_vec();
    let exe = compile(g, Options::default()).unwrap();
    let groups: Vec<_> = exe.groups().map(|(grp, _)| grp.clone()).collect();
    assert_eq!(groups.len(), 1, "transposes fold into the contraction: {groups:?}");
    assert_eq!(groups[0].kind, GroupKind::Contraction);
    let one = exe.run(&f).unwrap();
    let got = one[0].to_f64_vec();
    // Each element sums k products of values below 1 in magnitude.
    let tol = if g.ty(g.outputs()[0].value).dtype == DType::F64 { 1e-12 } else { 1e-6 } * (k as f64 + 1.0);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        assert!((a - b).abs() <= tol, "@{} [{i}]: gemm {a}, interpreter {b}", g.name());
    }
    let two = compile(g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
    assert_eq!(one, two, "one and two threads give identical results");
    // Unfused, a transpose is its own kernel and the GEMM reads its result.
    let unfused = compile(g, Options { mode: kiln::passes::fuse::Mode::Unfused, ..Default::default() }).unwrap();
    for (a, b) in unfused.run(&f).unwrap()[0].to_f64_vec().iter().zip(&want) {
        assert!((a - b).abs() <= tol, "@{} unfused: {a} vs interpreter {b}", g.name());
    }
}

#[test]
fn every_matmul_shape_class_agrees_with_the_interpreter() {
    let shapes: &[(&[usize], usize, usize, usize)] = &[
        (&[], 1, 1, 1),
        (&[], 1, 7, 5),
        (&[], 5, 7, 1),
        (&[], 1, 64, 1),
        // One row: the AVX-512 row-times-matrix path (passes of 256, 128, … columns and a
        // masked tail).
        (&[], 1, 784, 256),
        (&[], 1, 33, 17),
        (&[], 1, 3, 513),
        (&[2], 1, 9, 300),
        (&[], 3, 0, 4),
        (&[], 17, 33, 9),
        (&[], 130, 70, 65),
        (&[], 256, 129, 300),
        (&[2], 5, 6, 7),
        (&[2, 3], 9, 4, 11),
        (&[3], 128, 40, 70),
    ];
    for dt in ["f32", "f64"] {
        for &(batch, m, k, n) in shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                check(&matmul_graph(dt, batch, m, k, n, ta, tb), k);
            }
        }
    }
}

/// Integer matmuls stay with the reference implementation (exact, wrapping).
#[test]
fn integer_matmul_stays_exact() {
    let g = parse_graph(&op_fn("%a: i32[3,4], %b: i32[4,2]", "matmul %a, %b", "i32[3,2]")).unwrap();
    let f = HashMap::from([
        ("a".to_string(), i32v(&[3, 4], &(0..12).map(|i| i * 1_000_000).collect::<Vec<_>>())),
        ("b".to_string(), i32v(&[4, 2], &[7, -3, 5, 2, 1, 9, -8, 4])),
    ]);
    let exe = compile(&g, Options::default()).unwrap();
    assert!(exe.groups().all(|(grp, _)| grp.kind == GroupKind::Op));
    assert_eq!(exe.run(&f).unwrap(), interp::run(&g, &f).unwrap());
}

#[test]
fn every_convolution_configuration_agrees_with_the_interpreter() {
    let cases = CONV_CASES;
    for dt in ["f32", "f64"] {
        for &case in cases {
            let taps = case.1[1] * case.1[2] * case.0[1] / case.5;
            for g in conv_graphs(dt, case, false) {
                let f = inputs(&g);
                let want = interp::run(&g, &f).unwrap()[0].to_f64_vec();
                let exe = compile(&g, Options::default()).unwrap();
                assert!(exe.groups().all(|(grp, _)| grp.kind == GroupKind::Contraction));
                let one = exe.run(&f).unwrap();
                // Each element sums at most taps · (batch or spatial) products of values below 1.
                let terms = (taps * case.0[0] * case.0[2] * case.0[3]) as f64;
                let tol = if dt == "f64" { 1e-12 } else { 1e-6 } * terms.sqrt().max(taps as f64);
                for (i, (a, b)) in one[0].to_f64_vec().iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= tol,
                        "{case:?} {} [{i}]: {a} vs interpreter {b}",
                        g.node(g.outputs()[0].value).op.name()
                    );
                }
                let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
                assert_eq!(one, two, "{case:?}: one and two threads agree exactly");
            }
        }
    }
}

/// Whole training steps give bit-identical results on one and two threads (the persistent
/// pool splits kernels, GEMM row blocks and images, never a sum).
#[test]
fn training_steps_are_identical_on_one_and_two_threads() {
    use kiln::frontend::optim::Optimizer;
    for name in ["mnist_mlp", "lenet5", "transformer_block"] {
        let m = (kiln::zoo::entry(name).unwrap().build)(128, DType::F32).unwrap().remove(0);
        let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph;
        let mut f = kiln::ir::init::init_params(&step, 5);
        f.extend(inputs(&step));
        // Labels must be valid class indices.
        for (_, n) in step.inputs() {
            if matches!(n.ty.dtype, DType::I32 | DType::I64) {
                let name = n.op.leaf_name().unwrap().to_string();
                let zeros = kiln::ir::Value::splat(&n.ty, 0.0);
                f.insert(name, zeros);
            }
        }
        let one = kiln::compile(&step, kiln::Fusion::Fused).unwrap().run(&f).unwrap();
        let two = kiln::compile(&step, kiln::Fusion::Fused).unwrap().with_threads(2).run(&f).unwrap();
        assert_eq!(one, two, "{name}");
    }
}

/// Training sessions (parameters updated in place) give bit-identical losses and parameters on
/// one and two threads, with independent steps of the schedule running at the same time (in
/// the LSTM and the transformer; LeNet-5's Adam updates, one kernel per parameter, leave it
/// none).
#[test]
fn sessions_running_independent_steps_together_match_one_thread() {
    use kiln::frontend::optim::Optimizer;
    use kiln::runtime::train::TrainSession;
    for (name, batch) in [("lstm_classifier", 32), ("transformer_block", 8), ("lenet5", 16)] {
        let m = (kiln::zoo::entry(name).unwrap().build)(batch, DType::F32).unwrap().remove(0);
        let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap();
        let two = kiln::compile(&step.graph, kiln::Fusion::Fused).unwrap().with_threads(2);
        assert!(name == "lenet5" || !two.windows().is_empty(), "{name}: no steps run together");
        let mut feeds = inputs(&step.graph);
        feeds.retain(|k, _| step.data_inputs.contains(k));
        for (_, n) in step.graph.inputs() {
            if matches!(n.ty.dtype, DType::I32 | DType::I64) {
                feeds.insert(n.op.leaf_name().unwrap().to_string(), kiln::ir::Value::splat(&n.ty, 1.0));
            }
        }
        let mut sessions: Vec<TrainSession> = (0..2).map(|_| TrainSession::new(step.clone(), 7).unwrap()).collect();
        sessions[1].set_threads(2);
        let losses: Vec<Vec<f64>> =
            sessions.iter_mut().map(|s| (0..3).map(|_| s.step(&feeds, 0.01).unwrap()).collect()).collect();
        assert_eq!(losses[0], losses[1], "{name}");
        assert_eq!(sessions[0].values(), sessions[1].values(), "{name}");
    }
}

/// A matmul whose only reader is an elementwise kernel of its shape gets that kernel as an
/// epilogue: bias + relu over bands of rows, a collapsed `W − lr·(xᵀ·g)` update, and
/// degenerate 1-row and 1-column products. Results agree with the interpreter, and 1 and 2
/// threads agree exactly.
#[test]
fn gemm_epilogues_agree_with_the_interpreter() {
    let cases = [
        (130, 70, 65, "bias"),
        (256, 40, 300, "bias"),
        (1, 9, 33, "bias"),
        (77, 1, 5, "bias"),
        (300, 128, 96, "update"),
    ];
    for (m, k, n, kind) in cases {
        let text = match kind {
            "bias" => format!(
                "func @t(%x: f32[{m},{k}], %w: f32[{k},{n}], %b: f32[{n}]) -> (y: f32[{m},{n}]) {{\n  %3 = matmul %x, %w : f32[{m},{n}]\n  %4 = broadcast %b {{dims=[1]}} : f32[{m},{n}]\n  %5 = add %3, %4 : f32[{m},{n}]\n  %6 = const 0.0 : f32[{m},{n}]\n  %7 = max %5, %6 : f32[{m},{n}]\n  return %7\n}}\n"
            ),
            _ => format!(
                "func @t(%x: f32[{k},{m}], %g: f32[{k},{n}], %w: f32[{m},{n}]) -> (y: f32[{m},{n}]) {{\n  %3 = permute %x {{perm=[1,0]}} : f32[{m},{k}]\n  %4 = matmul %3, %g : f32[{m},{n}]\n  %5 = const 0.01 : f32[{m},{n}]\n  %6 = mul %4, %5 : f32[{m},{n}]\n  %7 = sub %w, %6 : f32[{m},{n}]\n  return %7\n}}\n"
            ),
        };
        let g = parse_graph(&text).unwrap();
        let exe = compile(&g, Options::default()).unwrap();
        let groups: Vec<_> = exe.groups().map(|(grp, k)| (grp.kind, k.is_some())).collect();
        assert_eq!(groups, vec![(GroupKind::Contraction, true)], "{kind} {m}x{k}x{n}: one GEMM with an epilogue");
        let f = inputs(&g);
        let want = interp::run(&g, &f).unwrap()[0].to_f64_vec();
        let one = exe.run(&f).unwrap();
        for (i, (a, b)) in one[0].to_f64_vec().iter().zip(&want).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (k as f64), "{kind} {m}x{k}x{n} [{i}]: {a} vs {b}");
        }
        let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
        assert_eq!(one, two, "{kind} {m}x{k}x{n}");
    }
}

/// The worker pool runs every part exactly once, resumes a part's panic on the caller, and
/// stays usable afterwards.
#[test]
fn the_worker_pool_runs_every_part_and_survives_a_panic() {
    use kiln::runtime::pool::Pool;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let pool = Pool::new(2);
    assert_eq!(pool.threads(), 2);
    let hits: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
    pool.for_each(37, &|i| {
        hits[i].fetch_add(1, Ordering::Relaxed);
    });
    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        pool.for_each(4, &|i| assert!(i != 3, "part 3 fails"));
    }));
    assert!(caught.is_err(), "the panic reaches the caller");
    let sum = AtomicUsize::new(0);
    pool.for_each(10, &|i| {
        sum.fetch_add(i, Ordering::Relaxed);
    });
    assert_eq!(sum.load(Ordering::Relaxed), 45, "the pool still works");
}
