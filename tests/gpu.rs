//! The GPU backend's first piece, checked without a GPU: every fused kernel of the zoo's
//! forward graphs and training steps renders as CUDA C (`kiln::codegen::gpu`), the training
//! steps of `mnist_mlp` and `lenet5` are snapshots, and every rendered module compiles with
//! NVRTC when it is installed (`.ci/run` installs it and sets `KILN_NVRTC_DIR` and
//! `KILN_REQUIRE_NVRTC=1`, so in CI a syntax or type error in generated code fails).

use std::path::Path;
use std::process::Command;

use kiln::codegen::kernel::Kernel;
use kiln::frontend::optim::Optimizer;
use kiln::prelude::*;

/// The CUDA module of `graph`'s fused kernels, compiled as the JIT would partition it.
fn cuda_of(graph: &Graph) -> (String, usize) {
    let exe = kiln::compile(graph, kiln::Fusion::Fused).unwrap();
    let kernels: Vec<(String, Kernel)> =
        exe.groups().filter_map(|(_, k)| k.map(|k| (format!("kiln_{}", k.kernel.name), k.kernel.clone()))).collect();
    (kiln::codegen::gpu::module(&kernels), kernels.len())
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
