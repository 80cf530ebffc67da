//! The GPU backend's first piece, checked without a GPU: every fused kernel of the zoo's
//! forward graphs and training steps renders as CUDA C (`kiln::codegen::gpu`), the training
//! steps of `mnist_mlp` and `lenet5` are snapshots, and every rendered module compiles with
//! NVRTC when it is installed (`.ci/run` installs it and sets `KILN_NVRTC_DIR` and
//! `KILN_REQUIRE_NVRTC=1`, so in CI a syntax or type error in generated code fails).

mod common;

use std::path::Path;
use std::process::Command;

use common::le_bytes;
use kiln::frontend::optim::Optimizer;
use kiln::prelude::*;

/// The CUDA module of `graph` as the JIT would partition it, and its function count.
fn cuda_of(graph: &Graph) -> (String, usize) {
    let exe = kiln::compile(graph, kiln::Fusion::Fused).unwrap();
    (kiln::gpu::module(&exe), kiln::gpu::functions(&exe).len())
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

#[test]
fn every_zoo_kernel_renders_as_cuda() {
    for (name, g) in zoo_graphs() {
        let (source, kernels) = cuda_of(&g);
        assert!(kernels > 0, "{name}: no kernels");
        assert_eq!(source.matches("extern \"C\" __global__ void kiln_").count(), kernels, "{name}");
        // Every group has its function but random numbers (reshapes alias their source).
        let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
        let written: std::collections::HashSet<_> = kiln::gpu::functions(&exe).iter().map(|f| f.output).collect();
        for (group, _) in exe.groups() {
            let op = exe.graph().node(group.root()).op.name();
            let exempt = matches!(op, "rng" | "reshape" | "iota");
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

#[test]
fn every_rendered_module_compiles_with_nvrtc() {
    let required = std::env::var("KILN_REQUIRE_NVRTC").is_ok_and(|v| v == "1");
    let dir = std::env::temp_dir().join(format!("kiln-gpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut files = Vec::new();
    for (name, g) in zoo_graphs() {
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

/// Lets generated CUDA C run on the CPU as C++: one block of one thread (the grid-stride
/// loops then cover every element), and the few CUDA intrinsics the kernels use.
const CPU_SHIM: &str = r#"#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
struct kiln_dim { unsigned x; };
static const kiln_dim blockIdx = {0}, threadIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
#define __forceinline__ inline
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
"#;

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
    let odd = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/aot_odd.kir")).unwrap();
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
    graphs.push(("odd".into(), kiln::ir::parse_module(&odd).unwrap().remove(0)));
    let dir = std::env::temp_dir().join(format!("kiln-gpu-cpu-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for (tag, graph) in graphs {
        let exe = kiln::compile(&graph, kiln::Fusion::Fused).unwrap();
        let g = exe.graph();
        // Inputs: floats in [-1, 1), integers (labels, token ids) 0 or 1, parameters seeded.
        let mut feeds = kiln::ir::init::init_params(g, 5);
        for (j, (_, n)) in g.inputs().enumerate() {
            let name = n.op.leaf_name().unwrap().to_string();
            let v = match n.ty.dtype {
                DType::F32 | DType::F64 => {
                    let init = kiln::ir::Init::Uniform { low: kiln::ir::Literal(-1.0), high: kiln::ir::Literal(1.0) };
                    kiln::ir::init::materialize(init, &n.ty, &name, 40 + j as u64)
                }
                _ => Value::splat(&n.ty, (j % 2) as f64),
            };
            feeds.insert(name, v);
        }
        let vals = every_value(g, &feeds);
        let units = kiln::gpu::functions(&exe);
        // A harness calling function argv[1] on the input files, writing the output file.
        let mut cpp = String::from(CPU_SHIM);
        cpp.push_str(&kiln::gpu::module(&exe).replace("extern \"C\" __global__", "extern \"C\""));
        cpp.push_str(
            "static void *slurp(const char *p) { FILE *f = fopen(p, \"rb\"); fseek(f, 0, SEEK_END); long n = ftell(f); \
             fseek(f, 0, SEEK_SET); void *b = malloc(n + 1); if (fread(b, 1, n, f) != (size_t)n) exit(3); fclose(f); return b; }\n\
             int main(int argc, char **argv) {\n    void *in[256] = {0};\n    for (int i = 4; i < argc; i++) in[i - 4] = slurp(argv[i]);\n\
                 void *out = calloc(atol(argv[3]) + 1, 1);\n",
        );
        for u in &units {
            let args: Vec<String> = u
                .inputs
                .iter()
                .enumerate()
                .map(|(i, n)| format!("({} *)in[{i}]", kiln::codegen::gpu::c_type(g.ty(*n).dtype)))
                .chain(std::iter::once(format!("({} *)out", kiln::codegen::gpu::c_type(g.ty(u.output).dtype))))
                .collect();
            cpp.push_str(&format!("    if (!strcmp(argv[1], \"{}\")) {}({});\n", u.symbol, u.symbol, args.join(", ")));
        }
        cpp.push_str(
            "    FILE *f = fopen(argv[2], \"wb\"); fwrite(out, 1, atol(argv[3]), f); fclose(f); return 0;\n}\n",
        );
        std::fs::write(dir.join(format!("{tag}.cpp")), &cpp).unwrap();
        let o = Command::new("c++")
            .args(["-O1", "-w", "-o", &tag, &format!("{tag}.cpp")])
            .current_dir(&dir)
            .output()
            .expect("the system C++ compiler runs");
        assert!(o.status.success(), "{tag}: {}", String::from_utf8_lossy(&o.stderr));
        for u in &units {
            let want = vals[u.output.index()].as_ref().unwrap();
            let ty = g.ty(u.output);
            let mut args = vec![u.symbol.clone(), "out.bin".into(), (ty.numel() * ty.dtype.size_bytes()).to_string()];
            for (i, n) in u.inputs.iter().enumerate() {
                let p = format!("in{i}.bin");
                std::fs::write(dir.join(&p), le_bytes(vals[n.index()].as_ref().unwrap())).unwrap();
                args.push(p);
            }
            let o = Command::new(dir.join(&tag)).args(&args).current_dir(&dir).output().unwrap();
            assert!(o.status.success(), "{tag} {}: {:?}", u.symbol, o.status);
            let got = std::fs::read(dir.join("out.bin")).unwrap();
            let as_f64 = |b: &[u8]| -> Vec<f64> {
                match ty.dtype {
                    DType::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
                    _ => b.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
                }
            };
            if ty.dtype.is_float() {
                let (gv, wv) = (as_f64(&got), as_f64(&le_bytes(want)));
                let scale = wv.iter().fold(1f64, |m, x| m.max(x.abs()));
                let tol = if ty.dtype == DType::F32 { 1e-5 } else { 1e-12 };
                for (i, (a, b)) in gv.iter().zip(&wv).enumerate() {
                    let same = (a - b).abs() <= tol * scale || (a.is_nan() && b.is_nan());
                    assert!(same, "{tag} {} [{i}]: CUDA-on-CPU {a}, interpreter {b}", u.symbol);
                }
            } else {
                assert_eq!(got, le_bytes(want), "{tag} {}", u.symbol);
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
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(3, DType::F32).unwrap() {
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
    // Dropout's random numbers have no GPU form yet: refused naming the op.
    let m = kiln::zoo::mnist_mlp_with(4, DType::F32, 0.5, kiln::frontend::Mode::Train).unwrap();
    let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap();
    let e = TrainSession::with_backend(step, 0, Backend::Gpu(DeviceKind::Emulated)).unwrap_err().to_string();
    assert!(e.starts_with("rng (node %") && e.contains("cannot run on the GPU yet"), "{e}");
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
