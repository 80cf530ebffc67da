//! The GPU backend, checked without a GPU: every group of the zoo's forward graphs and training
//! steps renders as CUDA C (`kiln::codegen::gpu`), the training steps of `mnist_mlp` and `lenet5`
//! are snapshots, every module compiles with NVRTC when it is installed (`.ci/run` installs it and
//! sets `KILN_REQUIRE_NVRTC=1`), and graphs, training steps and single functions run on the CPU
//! emulation against the interpreter — and on a GPU under the `cuda` feature (`docs/gpu.md`).

mod common;

use std::path::Path;
use std::process::Command;

use kiln::frontend::optim::Optimizer;
use kiln::gpu::Device as _;
use kiln::prelude::*;

/// The CUDA module of `graph` as the JIT would partition it, and how many functions (every form
/// of each) it holds.
fn cuda_of(graph: &Graph) -> (String, usize) {
    let exe = kiln::compile(graph, kiln::Fusion::Fused).unwrap();
    (kiln::gpu::module(&exe), kiln::gpu::symbols(&kiln::gpu::functions(&exe)).len())
}

/// The forward graph and the SGD training step of every zoo model (both GAN networks).
fn zoo_graphs() -> Vec<(String, Graph)> {
    let mut out = Vec::new();
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(2, DType::F32).unwrap() {
            let name = m.graph.name().to_string();
            let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph;
            out.push((name.clone(), m.graph));
            out.push((format!("{name}_train_sgd"), step));
        }
    }
    out
}

/// The graph of `tests/data/NAME.kir`.
fn data_graph(name: &str) -> Graph {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/{name}.kir"));
    kiln::ir::parse_module(&std::fs::read_to_string(path).unwrap()).unwrap().remove(0)
}

#[test]
fn every_zoo_kernel_renders_as_cuda() {
    for (name, g) in zoo_graphs() {
        let (source, kernels) = cuda_of(&g);
        assert!(kernels > 0, "{name}: no kernels");
        assert_eq!(source.matches("extern \"C\" __global__ void kiln_").count(), kernels, "{name}");
        // Every group has its function (reshapes alias their source).
        let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
        let written: std::collections::HashSet<_> = kiln::gpu::functions(&exe).iter().map(|f| f.output).collect();
        for (group, _) in exe.groups() {
            let op = exe.graph().node(group.root()).op.name();
            let exempt = op == "reshape";
            assert!(
                exempt || written.contains(&group.root()),
                "{name}: no GPU function for %{} {op}",
                group.root().index()
            );
        }
        assert!(!source.contains("unsupported"), "{name}: an op without a CUDA form\n{source}");
    }
}

#[test]
fn cuda_of_the_mnist_mlp_and_lenet5_training_steps() {
    for name in ["mnist_mlp", "lenet5"] {
        let m = (kiln::zoo::entry(name).unwrap().build)(2, DType::F32).unwrap().remove(0);
        let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph;
        insta::assert_snapshot!(format!("cuda_{name}_train_sgd"), cuda_of(&step).0);
    }
}

/// A graph whose buffers pass 2^31 elements (never run: rendered and compiled only), so its
/// functions index in 64 bits.
fn huge_graph() -> Graph {
    let text = "func @huge(%x: f32[3,1073741824], %a: f32[65536,65536], %b: f32[65536,32]) -> (y: f32[3], p: f32[65536,32]) {\n  %e = exp %x : f32[3,1073741824]\n  %y = reduce_sum %e {axes=[1]} : f32[3]\n  %p = matmul %a, %b : f32[65536,32]\n  return %y, %p\n}\n";
    kiln::ir::parse_module(text).unwrap().remove(0)
}

#[test]
fn index_arithmetic_is_32_bit_unless_a_buffer_needs_64() {
    let (source, _) = cuda_of(&huge_graph());
    let functions = source.matches("extern \"C\" __global__").count();
    assert_eq!(source.matches("typedef long long idx_t;").count(), functions, "{source}");
    let m = (kiln::zoo::entry("mnist_mlp").unwrap().build)(2, DType::F32).unwrap().remove(0);
    let (small, n) = cuda_of(&m.graph);
    assert_eq!(small.matches("typedef int idx_t;").count(), n);
}

/// Needs NVRTC, which a fresh machine lacks: ignored by a plain `cargo test` (the summary says
/// so), run by `.ci/run` after it installs NVRTC's wheel. Run it by hand with
/// `cargo test --test gpu -- --ignored every_rendered_module` (with `KILN_NVRTC_DIR` naming the
/// wheel's directory); it fails when NVRTC cannot be loaded and `KILN_REQUIRE_NVRTC=1`.
#[test]
#[ignore = "needs NVRTC (.ci/run installs it and runs this test)"]
fn every_rendered_module_compiles_with_nvrtc() {
    let required = std::env::var("KILN_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let dir = common::scratch::Scratch::new("gpu", "nvrtc");
    let mut files = Vec::new();
    let mut graphs = zoo_graphs();
    graphs.push(("huge".into(), huge_graph()));
    graphs.extend(["gpu_tiles", "gpu_vectors", "gpu_checks"].map(|name| (name.to_string(), data_graph(name))));
    for (name, g) in graphs {
        let path = dir.join(format!("{name}.cu"));
        std::fs::write(&path, cuda_of(&g).0).unwrap();
        files.push(path);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/nvrtc_check.py");
    let o = Command::new("python3").arg(&script).args(&files).output().expect("python3 runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    if o.status.code() == Some(2) && !required {
        eprintln!("NVRTC not installed; skipping the compile check ({stderr})");
        return;
    }
    assert!(o.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains(&format!("{0} of {0} files compile", files.len())), "{stdout}");
}

/// Every node's value under the interpreter (the kernels' inputs are intermediate nodes).
fn every_value(g: &Graph, feeds: &std::collections::HashMap<String, Value>) -> Vec<Option<Value>> {
    let mut vals: Vec<Option<Value>> = vec![None; g.len()];
    let live = g.live_mask();
    for (id, node) in g.nodes() {
        if !live[id.index()] {
            continue;
        }
        vals[id.index()] = Some(match node.op.leaf_name() {
            Some(name) => feeds[name].clone(),
            None => {
                let args: Vec<&Value> = node.args.iter().map(|a| vals[a.index()].as_ref().unwrap()).collect();
                kiln::ir::interp::eval_node(node, &args).unwrap()
            }
        });
    }
    vals
}

#[test]
fn generated_cuda_computes_what_the_interpreter_does_when_run_on_the_cpu() {
    let mut graphs: Vec<(String, Graph)> = Vec::new();
    for (model, train) in [
        ("mnist_mlp", false),
        ("mnist_mlp", true),
        ("lenet5", false),
        ("lenet5", true),
        ("transformer_block", false),
        ("lstm_classifier", false),
        ("lstm_classifier", true),
    ] {
        let m = (kiln::zoo::entry(model).unwrap().build)(2, DType::F32).unwrap().remove(0);
        let graph = if train { kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph } else { m.graph };
        graphs.push((format!("{model}{}", if train { "_step" } else { "" }), graph));
    }
    graphs.push(("odd".into(), data_graph("aot_odd")));
    for (tag, graph) in graphs {
        let exe = kiln::compile(&graph, kiln::Fusion::Fused).unwrap();
        let g = exe.graph();
        // Inputs: floats in [-1, 1), integers (labels, token ids) 0 or 1, parameters seeded.
        let mut feeds = kiln::ir::init::init_params(g, 5);
        feeds.extend(data_feeds(g, None));
        let vals = every_value(g, &feeds);
        let functions = kiln::gpu::functions(&exe);
        let mut device = kiln::gpu::HostDevice::new();
        device.load(&kiln::gpu::module(&exe), &kiln::gpu::symbols(&functions)).unwrap();
        for (i, f) in functions.iter().enumerate() {
            let inputs: Vec<Value> = f.inputs.iter().map(|n| vals[n.index()].clone().unwrap()).collect();
            // Every form: products in threads and both tile sizes, weight gradients both ways.
            for (v, form) in f.variants.iter().enumerate() {
                let got = kiln::gpu::call_function(&mut device, g, &functions, (i, v), &inputs).unwrap();
                let want = vals[f.output.index()].as_ref().unwrap();
                let tol = if want.ty().dtype == DType::F64 { 1e-12 } else { 1e-5 };
                assert_close(&format!("{tag} {}", form.symbol), &got, want, tol);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The launch side: whole graphs and training steps through `GpuExecutable` and
// `TrainSession`, on the emulated device here and on a GPU under the `cuda` feature.

use kiln::gpu::DeviceKind;
use kiln::runtime::exec::Backend;
use kiln::runtime::train::TrainSession;
use std::collections::HashMap;

/// Data inputs for `g`: floats in [-1, 1), integers (labels, token ids) `j % 2`.
fn data_feeds(g: &Graph, names: Option<&[String]>) -> HashMap<String, Value> {
    let mut feeds = HashMap::new();
    for (j, (_, n)) in g.inputs().enumerate() {
        let name = n.op.leaf_name().unwrap().to_string();
        if names.is_some_and(|keep| !keep.contains(&name)) {
            continue;
        }
        let v = match n.ty.dtype {
            DType::F32 | DType::F64 => {
                let init = kiln::ir::Init::Uniform { low: kiln::ir::Literal(-1.0), high: kiln::ir::Literal(1.0) };
                kiln::ir::init::materialize(init, &n.ty, &name, 40 + j as u64)
            }
            _ => Value::splat(&n.ty, (j % 2) as f64),
        };
        feeds.insert(name, v);
    }
    feeds
}

/// Asserts `got` is `want` within `tol` of the largest magnitude of `want` (exactly for
/// integers and masks).
fn assert_close(what: &str, got: &Value, want: &Value, tol: f64) {
    assert_eq!(got.ty(), want.ty(), "{what}");
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    if !want.ty().dtype.is_float() {
        assert_eq!(g, w, "{what}");
        return;
    }
    let scale = w.iter().fold(1f64, |m, x| m.max(x.abs()));
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= tol * scale || (a.is_nan() && b.is_nan()),
            "{what} [{i}]: device {a}, interpreter {b}"
        );
    }
}

/// Every zoo model's forward graph on `kind` against the interpreter.
fn forward_matches_the_interpreter(kind: DeviceKind) {
    // Batch 3, and 32 for the MLP, whose products then run tiled with the epilogue fused.
    let mlp32 = (kiln::zoo::entry("mnist_mlp").unwrap().build)(32, DType::F32).unwrap();
    for e in kiln::zoo::CATALOG {
        let models = (e.build)(3, DType::F32).unwrap();
        let extra = if e.name == "mnist_mlp" { mlp32.clone() } else { Vec::new() };
        for m in models.into_iter().chain(extra) {
            let (g, _) = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap().run(&m.graph).unwrap();
            let feeds = data_feeds(&g, None);
            let want = kiln::runtime::exec::run(&g, &feeds, 3, Backend::Interp).unwrap();
            let got = kiln::runtime::exec::run(&g, &feeds, 3, Backend::Gpu(kind)).unwrap();
            assert_eq!(got.len(), want.len());
            for (o, (a, b)) in g.outputs().iter().zip(got.iter().zip(&want)) {
                assert_close(&format!("{} {}", g.name(), o.name), a, b, 1e-4);
            }
        }
    }
}

/// Three steps of `model`'s training step with `optimizer` on `kind` and on the interpreter,
/// each on its own batch: losses and every parameter and state value agree.
fn training_matches_the_interpreter(kind: DeviceKind, m: &kiln::zoo::Model, optimizer: Optimizer) {
    let model = m.graph.name();
    let step = kiln::train::train_step(m, &optimizer).unwrap();
    let mut device = TrainSession::with_backend(step.clone(), 7, Backend::Gpu(kind)).unwrap();
    let mut reference = TrainSession::with_backend(step.clone(), 7, Backend::Interp).unwrap();
    for s in 0..3 {
        let mut batch = data_feeds(&step.graph, Some(&step.data_inputs));
        // Another batch each step.
        for v in batch.values_mut() {
            if v.ty().dtype == DType::F32 {
                *v = kiln::ir::init::materialize(
                    kiln::ir::Init::Uniform { low: kiln::ir::Literal(-1.0), high: kiln::ir::Literal(1.0) },
                    &v.ty(),
                    "batch",
                    100 + s,
                );
            }
        }
        let (a, b) = (device.step(&batch, 0.05).unwrap(), reference.step(&batch, 0.05).unwrap());
        assert!((a - b).abs() <= 1e-4 * b.abs().max(1.0), "{model} step {s}: loss {a} on the device, {b} interpreted");
    }
    assert_eq!(device.steps_done(), 3);
    for (name, want) in reference.values() {
        assert_close(&format!("{model} {name}"), &device.values()[name], want, 1e-4);
    }
}

/// `tests/data/gpu_tiles.kir` (tiled products, fused epilogues, block reductions) on `kind`
/// against the interpreter; asserts its functions take the paths it is written for.
fn tiles_match_the_interpreter(kind: DeviceKind) {
    let g = data_graph("gpu_tiles");
    let mut exe = kiln::gpu::compile(&g, kind).unwrap();
    let sources: Vec<&str> = exe.program().functions.iter().map(|f| f.source()).collect();
    let count = |what: &str| sources.iter().filter(|s| s.contains(what)).count();
    assert_eq!(count("32x32 tiles"), 4, "{sources:#?}");
    assert_eq!(count("64x64 tiles"), 1);
    assert_eq!(count("fused;"), 1, "the bias and relu run in the product's registers");
    assert_eq!(count("__shared__ float part"), 3);
    assert_eq!(count("__shared__ int part"), 1);
    let g = exe.program().graph.clone();
    let mut feeds = kiln::ir::init::init_params(&g, 9);
    feeds.extend(data_feeds(&g, None));
    // Integers of both signs, so wrapping sums are exercised too.
    let k = g.ty(g.leaf("k").unwrap()).clone();
    let ints: Vec<i32> = (0..k.numel() as i32).map(|i| i.wrapping_mul(2_654_435_761u32 as i32) >> 3).collect();
    feeds.insert("k".into(), Value::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(k.dims()), ints).unwrap()));
    feeds.insert("seed".into(), Value::i64_scalar(-1_234_567_890_123));
    // Indices with repeats and with table rows no index names.
    let ids: Vec<i64> = [3, 0, 3, 10, 7, 3, 0, 1, 1, 9, 3, 0, 10, 2].to_vec();
    feeds.insert("ids".into(), Value::I64(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[2, 7]), ids).unwrap()));
    let want = kiln::ir::interp::run(&g, &feeds).unwrap();
    let check = |exe: &mut kiln::gpu::GpuExecutable, what: &str| {
        let got = exe.run_with(&feeds).unwrap();
        for (o, (a, b)) in g.outputs().iter().zip(got.iter().zip(&want)) {
            let tol = if b.ty().dtype == DType::F64 { 1e-12 } else { 1e-5 };
            assert_close(&format!("gpu_tiles {} ({what})", o.name), a, b, tol);
        }
    };
    check(&mut exe, "as created");
    // Every form of every function: the default, then each alternative.
    let forms: Vec<usize> = exe.program().functions.iter().map(|f| f.variants.len()).collect();
    assert_eq!(forms.iter().filter(|&&n| n == 3).count(), 7, "products and convolutions have three forms");
    assert_eq!(forms.iter().filter(|&&n| n == 2).count(), 1, "the weight gradient has two");
    for v in 0..3 {
        for (f, &n) in forms.iter().enumerate() {
            exe.choose(f, v.min(n - 1)).unwrap();
        }
        check(&mut exe, &format!("form {v}"));
    }
    // Chosen by measurement: every function of several forms timed, the fastest chosen.
    let tunings = exe.tune().unwrap();
    assert_eq!(tunings.len(), 8);
    assert_eq!(exe.tunings().len(), 8);
    for t in &tunings {
        assert_eq!(t.seconds.len(), forms[t.function], "{t:?}");
        assert!(t.seconds.iter().all(|(_, s)| *s > 0.0), "{t:?}");
        let fastest = t.seconds.iter().map(|(_, s)| *s).fold(f64::INFINITY, f64::min);
        assert_eq!(t.seconds[t.chosen].1, fastest, "{t:?}");
        assert_eq!(exe.chosen()[t.function], t.chosen);
    }
    check(&mut exe, "tuned");
    let e = exe.choose(0, 9).unwrap_err().to_string();
    assert!(e.ends_with("has 3 forms; there is no form 9"), "{e}");
}

/// `tests/data/gpu_vectors.kir` (elementwise kernels four elements per thread, and the cases
/// that stay scalar) on the emulated device against the interpreter; asserts which outputs'
/// kernels are vectorized.
#[test]
fn vectorized_elementwise_kernels_run_on_the_emulated_device() {
    let g = data_graph("gpu_vectors");
    let mut exe = kiln::gpu::compile(&g, DeviceKind::Emulated).unwrap();
    let program = exe.program();
    let g = program.graph.clone();
    for o in g.outputs() {
        // An output may be a side output of a merged kernel.
        let f = program.functions.iter().find(|f| f.output == o.value || f.side_outputs.contains(&o.value)).unwrap();
        let vectorized = f.source().contains("4 elements per thread");
        let scalar = ["misaligned", "dexp", "oddneg"].contains(&o.name.as_str());
        assert_eq!(vectorized, !scalar, "{}: {}", o.name, f.source());
        if vectorized {
            assert_eq!(f.launch(), kiln::gpu::Launch::Elements(12), "{}", o.name);
        }
    }
    let mut feeds = data_feeds(&g, None);
    let ints = |mul: i32| {
        let v: Vec<i32> = (0..48).map(|i: i32| (i - 20).wrapping_mul(mul) ^ (i << 27)).collect();
        Value::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[6, 8]), v).unwrap())
    };
    feeds.insert("i".into(), ints(7));
    feeds.insert("j".into(), ints(-1_000_003));
    // Large enough that the cast to i32 saturates at both ends for some elements.
    let t = g.ty(g.leaf("xt").unwrap()).clone();
    let v: Vec<f32> = (0..48).map(|i| ((i * 37 % 48) as f32 - 24.0) * 2.5e8).collect();
    feeds.insert("xt".into(), Value::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(t.dims()), v).unwrap()));
    let got = exe.run_with(&feeds).unwrap();
    let want = kiln::ir::interp::run(&g, &feeds).unwrap();
    for (o, (a, b)) in g.outputs().iter().zip(got.iter().zip(&want)) {
        assert_close(&format!("gpu_vectors {}", o.name), a, b, 1e-6);
    }
}

/// `tests/data/gpu_checks.kir` (integer product and division, indices computed on the
/// device) on the emulated device: the interpreter's values, and its errors.
#[test]
fn device_checked_ops_match_the_interpreter_and_report_faults() {
    let g = data_graph("gpu_checks");
    let mut exe = kiln::gpu::compile(&g, DeviceKind::Emulated).unwrap();
    let g = exe.program().graph.clone();
    let ints = |dims: &[usize], f: &dyn Fn(i32) -> i32| {
        let v: Vec<i32> = (0..dims.iter().product::<usize>() as i32).map(f).collect();
        Value::I32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(dims), v).unwrap())
    };
    let floats =
        |dims: &[usize], v: Vec<f32>| Value::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(dims), v).unwrap());
    let mut feeds = data_feeds(&g, None);
    // Products that overflow (wrapping), quotients of both signs, `MIN / -1`.
    feeds.insert("a".into(), ints(&[5, 7], &|i| i.wrapping_mul(1_000_003) ^ (i << 28)));
    feeds.insert("b".into(), ints(&[7, 3], &|i| (i - 10).wrapping_mul(-77_777)));
    feeds.insert("n".into(), ints(&[5, 7], &|i| if i == 3 { i32::MIN } else { (i - 17) * 1001 }));
    feeds.insert("d".into(), ints(&[5, 7], &|i| if i == 3 { -1 } else { [7, -3, 2, -1000][i as usize % 4] }));
    // Indices 0..5 (truncated), repeated, one table row unused.
    let pos = vec![0.2, 5.9, 3.0, 3.5, 1.0, 0.0, 4.99, 5.0, 3.1];
    feeds.insert("pos".into(), floats(&[9], pos.clone()));
    let want = kiln::ir::interp::run(&g, &feeds).unwrap();
    let got = exe.run_with(&feeds).unwrap();
    for (o, (a, b)) in g.outputs().iter().zip(got.iter().zip(&want)) {
        assert_close(&format!("gpu_checks {}", o.name), a, b, 1e-6);
    }
    // Division by zero: the interpreter's error, then a clean run once the divisor is fixed.
    let mut zero = feeds.clone();
    zero.insert("d".into(), ints(&[5, 7], &|i| if i == 20 { 0 } else { 3 }));
    assert!(kiln::ir::interp::run(&g, &zero).unwrap_err().to_string().contains("division by zero"));
    let e = exe.run_with(&zero).unwrap_err().to_string();
    assert!(e.starts_with("div (node %") && e.ends_with("failed on the device: integer division by zero"), "{e}");
    assert_eq!(exe.run_with(&feeds).unwrap()[1].to_f64_vec(), want[1].to_f64_vec());
    // An index computed past the table.
    let mut far = feeds.clone();
    let mut bad = pos.clone();
    bad[4] = 6.5;
    far.insert("pos".into(), floats(&[9], bad));
    assert!(kiln::ir::interp::run(&g, &far).is_err());
    let e = exe.run_with(&far).unwrap_err().to_string();
    assert!(e.contains("failed on the device: index 6 outside 0..6 (computed on the device)"), "{e}");
    bad = pos;
    bad[0] = -1.5;
    far.insert("pos".into(), floats(&[9], bad));
    let e = exe.run_with(&far).unwrap_err().to_string();
    assert!(e.contains("index -1 outside 0..6"), "{e}");
    assert_eq!(exe.run_with(&feeds).unwrap()[2].to_f64_vec(), want[2].to_f64_vec());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 12, ..Default::default() })]

    /// Random f32 graphs (the optimizer's generator, four columns wide so that elementwise
    /// kernels vectorize where their reads allow) agree between the emulated GPU and the
    /// interpreter.
    #[test]
    fn random_graphs_agree_on_the_emulated_device(ops in proptest::collection::vec((proptest::prelude::any::<u8>(), proptest::prelude::any::<usize>(), proptest::prelude::any::<usize>()), 1..14)) {
        let g = common::random_graph_of(&ops, DType::F32, 4);
        let mut feeds = HashMap::new();
        for (i, (_, n)) in g.inputs().enumerate() {
            let r: Vec<f32> = common::pseudo(n.ty.numel(), 90 + i as u64).iter().map(|x| (x * 0.5 + 1.0) as f32).collect();
            feeds.insert(n.op.leaf_name().unwrap().to_string(), common::f32v(n.ty.dims(), &r));
        }
        let mut exe = kiln::gpu::compile(&g, DeviceKind::Emulated).unwrap();
        let got = exe.run_with(&feeds).unwrap();
        let want = kiln::ir::interp::run(&g, &feeds).unwrap();
        for (o, (a, b)) in g.outputs().iter().zip(got.iter().zip(&want)) {
            assert_close(&format!("random {}", o.name), a, b, 1e-4);
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: common::mixed::cases(24), ..Default::default() })]

    /// Graphs over every dtype, every op kind followed by every cast (`common::mixed`), agree
    /// between the emulated GPU and the interpreter.
    #[test]
    fn mixed_dtype_graphs_agree_on_the_emulated_device(steps in proptest::collection::vec((0u8..8, 0usize..64, 0usize..64, proptest::prelude::any::<u8>()), 1..10)) {
        let (g, text) = common::mixed::mixed_graph(&steps);
        let feeds = common::mixed::mixed_inputs(steps.len() as u64);
        let want = kiln::ir::interp::run(&g, &feeds).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let mut exe = kiln::gpu::compile(&g, DeviceKind::Emulated).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let got = exe.run_with(&feeds).unwrap_or_else(|e| panic!("{e}\n{text}"));
        common::mixed::assert_same("emulated GPU", &text, &["out", "mid"], &got, &want);
    }
}

#[test]
fn tiled_products_and_block_reductions_run_on_the_emulated_device() {
    tiles_match_the_interpreter(DeviceKind::Emulated);
}

#[test]
fn every_zoo_forward_graph_runs_on_the_emulated_device() {
    forward_matches_the_interpreter(DeviceKind::Emulated);
}

/// Every zoo model's training step with SGD (both GAN networks), and Adam and momentum on
/// the MNIST models.
fn every_training_step_matches_the_interpreter(kind: DeviceKind) {
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(4, DType::F32).unwrap() {
            // SGD: the transformer's key bias has a true gradient of 0 (softmax ignores a shift
            // shared by a row), which Adam would turn from rounding noise into full updates.
            training_matches_the_interpreter(kind, &m, Optimizer::sgd());
        }
    }
    let model = |name: &str| (kiln::zoo::entry(name).unwrap().build)(4, DType::F32).unwrap().remove(0);
    training_matches_the_interpreter(kind, &model("mnist_mlp"), Optimizer::adam());
    training_matches_the_interpreter(kind, &model("lenet5"), Optimizer::momentum(0.9, false));
    // Dropout: the device draws the interpreter's masks (same seed per step, same counters).
    let train = kiln::frontend::Mode::Train;
    training_matches_the_interpreter(
        kind,
        &kiln::zoo::mnist_mlp_with(4, DType::F32, 0.5, train).unwrap(),
        Optimizer::sgd(),
    );
    training_matches_the_interpreter(
        kind,
        &kiln::zoo::lenet5_with(4, DType::F32, 0.3, train).unwrap(),
        Optimizer::sgd(),
    );
}

#[test]
fn training_steps_on_the_emulated_device_match_the_interpreter() {
    every_training_step_matches_the_interpreter(DeviceKind::Emulated);
}

/// Whether the GPU tests can run: a build with `cuda` on a machine with a GPU. Elsewhere they
/// say why they were skipped, or fail when `KILN_REQUIRE_GPU=1` (set it on a GPU machine).
#[cfg(feature = "cuda")]
fn gpu_present() -> bool {
    match kiln::gpu::open(DeviceKind::Cuda) {
        Ok(device) => {
            eprintln!("running on {}", device.describe());
            true
        }
        Err(e) => {
            assert!(std::env::var("KILN_REQUIRE_GPU").map_or(true, |v| v != "1"), "KILN_REQUIRE_GPU=1: {e}");
            eprintln!("no GPU, skipped: {e}");
            false
        }
    }
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_forward_graphs_match_the_interpreter() {
    if gpu_present() {
        forward_matches_the_interpreter(DeviceKind::Cuda);
    }
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_tiled_products_and_block_reductions_match_the_interpreter() {
    if gpu_present() {
        tiles_match_the_interpreter(DeviceKind::Cuda);
    }
}

#[cfg(feature = "cuda")]
#[test]
fn gpu_training_steps_match_the_interpreter() {
    if gpu_present() {
        every_training_step_matches_the_interpreter(DeviceKind::Cuda);
    }
}

#[test]
fn bad_input_to_a_gpu_executable_is_an_error_naming_it() {
    let lstm = (kiln::zoo::entry("lstm_classifier").unwrap().build)(2, DType::F32).unwrap().remove(0);
    let mut exe = kiln::gpu::compile(&lstm.graph, DeviceKind::Emulated).unwrap();
    let ids = exe.program().leaves.iter().find(|l| !l.param).unwrap().clone();
    // Running before every value is set.
    let e = exe.run().unwrap_err().to_string();
    assert!(e.starts_with("no value for `"), "{e}");
    // An index outside the embedding table is refused before it reaches the device.
    let e = exe.set(&ids.name, &Value::splat(&ids.ty, 10_000.0)).unwrap_err().to_string();
    assert!(e.contains("index 10000, outside 0..10000 of the gather"), "{e}");
    let e = exe.set(&ids.name, &Value::splat(&ids.ty, -1.0)).unwrap_err().to_string();
    assert!(e.contains("index -1"), "{e}");
    // A value of another type, and a name the graph does not have.
    let wrong = Value::splat(&TensorType::new(DType::F32, [3usize]), 0.0);
    let e = exe.set(&ids.name, &wrong).unwrap_err().to_string();
    assert!(e.contains(&format!("`{}` is {}, got f32[3]", ids.name, ids.ty)), "{e}");
    let e = exe.set("nope", &wrong).unwrap_err().to_string();
    assert!(e.contains("has no input, parameter or output `nope`"), "{e}");
}

#[test]
fn the_cuda_device_needs_the_feature_or_a_driver() {
    match kiln::gpu::open(DeviceKind::Cuda) {
        Ok(device) => eprintln!("a GPU is present: {}", device.describe()),
        Err(e) if cfg!(feature = "cuda") => {
            assert!(e.to_string().starts_with("no CUDA driver") || e.to_string().contains("NVRTC"), "{e}")
        }
        Err(e) => assert!(e.to_string().contains("rebuild with `--features cuda`"), "{e}"),
    }
}

#[test]
fn gpu_sessions_move_between_threads() {
    // A training session on a device is Send, like one on the CPU: sessions on two threads
    // at once, each with its own device.
    let step = || {
        let m = (kiln::zoo::entry("xor_mlp").unwrap().build)(4, DType::F32).unwrap().remove(0);
        kiln::train::train_step(&m, &Optimizer::sgd()).unwrap()
    };
    let sessions: Vec<TrainSession> = (0..2)
        .map(|seed| TrainSession::with_backend(step(), seed, Backend::Gpu(DeviceKind::Emulated)).unwrap())
        .collect();
    let batch = data_feeds(&step().graph, Some(&step().data_inputs));
    let handles: Vec<_> = sessions
        .into_iter()
        .map(|mut s| {
            let batch = batch.clone();
            std::thread::spawn(move || (s.step(&batch, 0.1).unwrap(), s.step(&batch, 0.1).unwrap()))
        })
        .collect();
    for h in handles {
        let (first, second) = h.join().unwrap();
        assert!(first.is_finite() && second.is_finite() && second < first, "{first} {second}");
    }
}
