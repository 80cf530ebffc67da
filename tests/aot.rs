//! Ahead-of-time kernels: fused kernels written into an object file by
//! `kiln::codegen::aot::ObjectKernels`, linked with a C program by the system `cc`, compute
//! bit for bit what the same kernels compute in the JIT (which the JIT tests check against the
//! interpreter).

mod common;

use std::path::Path;
use std::process::Command;

use common::scratch::Scratch;
use kiln::codegen::aot::ObjectKernels;
use kiln::codegen::cpu::{CpuJit, MATH_SYMBOLS};
use kiln::codegen::kernel::{Kernel, lower_group};
use kiln::ir::{Graph, Value};
use kiln::passes::fuse::{GroupKind, Mode, partition};
use kiln::prelude::*;

fn scratch(name: &str) -> Scratch {
    Scratch::new("aot", name)
}

/// The one fused kernel of `g` (its only group).
fn only_kernel(g: &Graph) -> Kernel {
    let groups = partition(g, Mode::Fused);
    let fused: Vec<_> = groups.iter().filter(|gr| gr.kind == GroupKind::Elementwise).collect();
    assert_eq!(fused.len(), 1, "expected one fused group in\n{g}");
    lower_group(g, &fused[0].members).unwrap()
}

fn bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::F32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::F64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        other => panic!("unexpected {}", other.ty()),
    }
}

/// The kernel's inputs (graph inputs by name), as standard-layout values.
fn inputs_of(g: &Graph, k: &Kernel, feeds: &std::collections::HashMap<String, Value>) -> Vec<Value> {
    k.inputs
        .iter()
        .map(|i| {
            let name = g.node(i.node).op.leaf_name().expect("kernel inputs are graph inputs here");
            feeds[name].clone()
        })
        .collect()
}

fn data_ptr(v: &Value) -> *const u8 {
    match v {
        Value::F32(a) => a.as_ptr() as *const u8,
        Value::F64(a) => a.as_ptr() as *const u8,
        other => panic!("unexpected {}", other.ty()),
    }
}

/// Runs `kernel` in the JIT on `inputs`; returns the output's bytes.
fn jit_run(kernel: &Kernel, inputs: &[Value]) -> Vec<u8> {
    let mut jit = CpuJit::new().unwrap();
    let ck = jit.compile(kernel).unwrap();
    let mut out = Value::splat(&kernel.out, 0.0);
    let ptrs: Vec<*const u8> = inputs.iter().map(data_ptr).collect();
    let out_ptr = match &mut out {
        Value::F32(a) => a.as_mut_ptr() as *mut u8,
        Value::F64(a) => a.as_mut_ptr() as *mut u8,
        other => panic!("unexpected {}", other.ty()),
    };
    // SAFETY: every input is a standard-layout buffer of the kernel input's type (graph
    // inputs read whole), and `out` is a fresh buffer of the kernel's output type.
    unsafe { ck.call(&ptrs, out_ptr) };
    bytes(&out)
}

/// A C program that loads input files, calls one kernel — over its outer axis in two ranges
/// (as two threads would) unless it is a reduction, which runs whole — and writes the output.
fn harness(symbols: &[(String, bool)]) -> String {
    let mut c = String::from(
        "#include <math.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n",
    );
    for sym in MATH_SYMBOLS {
        let (f, t) = if sym.ends_with("f32") { ("f", "float") } else { ("", "double") };
        let base = sym.trim_start_matches("kiln_").trim_end_matches("_f32").trim_end_matches("_f64");
        if base == "pow" {
            c += &format!("{t} {sym}({t} x, {t} y) {{ return pow{f}(x, y); }}\n");
        } else {
            c += &format!("{t} {sym}({t} x) {{ return {base}{f}(x); }}\n");
        }
    }
    for (s, _) in symbols {
        c += &format!("void {s}(const void *const *inputs, void *out, int64_t lo, int64_t hi);\n");
    }
    c += r#"
static void *slurp(const char *path, long *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END); *len = ftell(f); fseek(f, 0, SEEK_SET);
    void *p = malloc(*len > 0 ? *len : 1);
    if (fread(p, 1, *len, f) != (size_t)*len) { perror(path); exit(2); }
    fclose(f);
    return p;
}

/* argv: symbol out_path out_bytes outer input_paths... */
int main(int argc, char **argv) {
    if (argc < 5) return 2;
    const char *sym = argv[1];
    long out_bytes = atol(argv[3]);
    int64_t outer = atol(argv[4]);
    const void *inputs[16];
    for (int i = 5; i < argc && i < 21; i++) { long n; inputs[i - 5] = slurp(argv[i], &n); }
    void *out = calloc(out_bytes > 0 ? out_bytes : 1, 1);
    int64_t mid = outer / 2;
"#;
    for (s, split) in symbols {
        if *split {
            c += &format!(
                "    if (!strcmp(sym, \"{s}\")) {{ {s}(inputs, out, 0, mid); {s}(inputs, out, mid, outer); }}\n"
            );
        } else {
            c += &format!("    if (!strcmp(sym, \"{s}\")) {s}(inputs, out, 0, outer);\n");
        }
    }
    c += r#"
    FILE *f = fopen(argv[2], "wb");
    if (!f || fwrite(out, 1, out_bytes, f) != (size_t)out_bytes) { perror(argv[2]); return 2; }
    fclose(f);
    return 0;
}
"#;
    c
}

fn cc(args: &[&str], dir: &Path) {
    let o = Command::new("cc").args(args).current_dir(dir).output().expect("the system C compiler `cc` runs");
    assert!(o.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn object_kernels_called_from_c_match_the_jit() {
    // f32, vectorized with inline math, odd extents (scalar tails); f64 calling libm; a
    // reduction; a broadcast input.
    let cases: Vec<Graph> = vec![
        {
            let b = Builder::new("gelu_like");
            let x = b.input("x", DType::F32, [37, 53]);
            let y = (x * 0.5 + 1.0).tanh() * (-x).exp() + x.sin() * x.cos();
            b.output("y", y);
            b.finish().unwrap()
        },
        {
            let b = Builder::new("f64_math").with_float(DType::F64);
            let x = b.input("x", DType::F64, [9, 7]);
            let w = b.input("w", DType::F64, [7]);
            b.output("y", (x.exp() + 1.0).log() * w + x.tanh());
            b.finish().unwrap()
        },
        {
            let b = Builder::new("row_sums");
            let x = b.input("x", DType::F32, [19, 45]);
            b.output("y", (x * x).sum(&[1]));
            b.finish().unwrap()
        },
    ];
    let dir = scratch("kernels");
    let mut object = ObjectKernels::new("kiln_aot_test").unwrap();
    let mut expected = Vec::new();
    for (i, g) in cases.iter().enumerate() {
        let k = only_kernel(g);
        let feeds = kiln::ir::init::init_params(g, 0);
        let mut feeds = feeds;
        for (j, (_, n)) in g.inputs().enumerate() {
            let name = n.op.leaf_name().unwrap().to_string();
            let init = kiln::ir::Init::Uniform { low: kiln::ir::Literal(-3.0), high: kiln::ir::Literal(3.0) };
            feeds.insert(name.clone(), kiln::ir::init::materialize(init, &n.ty, &name, j as u64 + 7));
        }
        let inputs = inputs_of(g, &k, &feeds);
        let symbol = format!("kiln_test_k{i}");
        object.add(&k, &symbol).unwrap();
        expected.push((symbol, k.clone(), inputs.clone(), jit_run(&k, &inputs)));
    }
    assert!(object.add(&only_kernel(&cases[0]), "kiln_test_k0").is_err(), "a symbol defined twice is refused");
    let symbols: Vec<(String, bool)> = expected.iter().map(|(s, k, _, _)| (s.clone(), k.reduce.is_none())).collect();
    assert_eq!(object.symbols(), expected.iter().map(|e| e.0.clone()).collect::<Vec<_>>());
    std::fs::write(dir.join("kernels.o"), object.finish().unwrap()).unwrap();
    std::fs::write(dir.join("harness.c"), harness(&symbols)).unwrap();
    cc(&["-O1", "-o", "harness", "harness.c", "kernels.o", "-lm"], &dir);

    for (symbol, k, inputs, want) in &expected {
        let mut args = vec![symbol.clone(), "out.bin".into(), want.len().to_string(), k.space[0].to_string()];
        for (j, v) in inputs.iter().enumerate() {
            let p = format!("in{j}.bin");
            std::fs::write(dir.join(&p), bytes(v)).unwrap();
            args.push(p);
        }
        let o = Command::new(dir.join("harness")).args(&args).current_dir(&dir).output().unwrap();
        assert!(o.status.success(), "{symbol}: {}", String::from_utf8_lossy(&o.stderr));
        let got = std::fs::read(dir.join("out.bin")).unwrap();
        assert_eq!(&got, want, "{symbol}: the object's kernel differs from the JIT's");
    }
}

#[test]
fn object_files_export_each_kernel_once() {
    let b = Builder::new("one");
    let x = b.input("x", DType::F32, [8]);
    b.output("y", x.exp());
    let g = b.finish().unwrap();
    let mut object = ObjectKernels::new("one").unwrap();
    object.add(&only_kernel(&g), "model_k0").unwrap();
    let weights: Vec<u8> = (0..40u8).collect();
    object.add_data("model_w0", &weights, 64).unwrap();
    assert!(object.add_data("model_w0", &weights, 64).is_err(), "defined twice");
    assert!(object.add_data("model_w1", &weights, 3).is_err(), "alignment 3");
    let bytes = object.finish().unwrap();
    assert!(bytes.starts_with(b"\x7fELF"), "an ELF object");
    let dir = scratch("nm");
    std::fs::write(dir.join("k.o"), &bytes).unwrap();
    let o = Command::new("nm").arg("k.o").current_dir(&dir).output();
    if let Ok(o) = o {
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(text.lines().any(|l| l.ends_with(" T model_k0")), "{text}");
        assert!(text.lines().any(|l| l.ends_with(" R model_w0")), "{text}");
    }
    // A C program sees the data, aligned.
    let c = "#include <stdint.h>\n#include <stdio.h>\nextern const unsigned char model_w0[40];\nfloat kiln_exp_f32(float x) { return x; }\nint main(void) { if ((uintptr_t)model_w0 % 64) return 3; for (int i = 0; i < 40; i++) if (model_w0[i] != i) return 4; puts(\"ok\"); return 0; }\n";
    std::fs::write(dir.join("data.c"), c).unwrap();
    cc(&["-o", "data", "data.c", "k.o"], &dir);
    let o = Command::new(dir.join("data")).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n", "exit {:?}", o.status);
}

#[test]
fn the_header_declares_the_c_abi_and_compiles() {
    use kiln::codegen::aot::{header, is_c_identifier};
    let model = kiln::zoo::mnist_mlp(1).unwrap();
    let inputs: Vec<(String, kiln::ir::TensorType)> =
        model.graph.inputs().map(|(_, n)| (n.op.leaf_name().unwrap().to_string(), n.ty.clone())).collect();
    let outputs: Vec<(String, kiln::ir::TensorType)> =
        model.graph.outputs().iter().map(|o| (o.name.clone(), model.graph.ty(o.value).clone())).collect();
    let h = header("mnist_mlp", &inputs, &outputs).unwrap();
    insta::assert_snapshot!("aot_header_mnist_mlp", h);
    // It compiles as C (`cc -fsyntax-only -Wall -Werror`), included twice.
    let dir = scratch("header");
    std::fs::write(dir.join("mnist_mlp.h"), &h).unwrap();
    std::fs::write(dir.join("use.c"), "#include \"mnist_mlp.h\"\n#include \"mnist_mlp.h\"\nint main(void) { int32_t (*f)(void) = mnist_mlp_num_inputs; const kiln_tensor_desc *(*d)(int32_t) = mnist_mlp_input_desc; return (f == 0) + (d == 0); }\n").unwrap();
    cc(&["-fsyntax-only", "-Wall", "-Werror", "use.c"], &dir);
    assert!(header("9lives", &inputs, &outputs).is_none());
    assert!(!is_c_identifier("a-b") && !is_c_identifier("") && is_c_identifier("_m2"));
}
