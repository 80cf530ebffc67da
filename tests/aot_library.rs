//! Model libraries (`kiln::aot::build`, `kiln build`): a C program loads `libNAME.so` with
//! `dlopen`, checks its descriptors and runs it; its outputs match the JIT's for the same
//! weights and inputs (kernels are the same code; products are summed by another GEMM, so
//! the comparison allows float rounding), on several threads at once, and bad calls return
//! error codes with messages.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{le_bytes, scratch::Scratch};
use kiln::aot::{AotError, BuildError, BuildOptions, KernelCompiler, Target};
use kiln::ir::{Graph, Value};
use kiln::prelude::*;

fn scratch(name: &str) -> Scratch {
    Scratch::new("aotlib", name)
}

fn cc(args: &[&str], dir: &Path) {
    let o = Command::new("cc").args(args).current_dir(dir).output().expect("the system C compiler `cc` runs");
    assert!(o.status.success(), "cc {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

/// A C program: `harness LIB NAME THREADS RUNS in0.bin ... -- out0.bin ...` loads LIB with
/// dlopen, prints every descriptor, checks bad calls, runs the model RUNS times on each of
/// THREADS threads (each into its own buffers), checks every thread's outputs are the same
/// bytes, and writes the first thread's.
const HARNESS: &str = r#"
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { const char *name; int32_t dtype; int32_t rank; const int64_t *shape; } desc;
typedef struct { void *data; int32_t dtype; int32_t rank; const int64_t *shape; } tensor;
static int32_t (*num_inputs)(void), (*num_outputs)(void);
static const desc *(*input_desc)(int32_t), *(*output_desc)(int32_t);
static int32_t (*run)(const void *const *, void *const *);
static int32_t (*run_checked)(const tensor *, int32_t, const tensor *, int32_t);
static const char *(*message)(int32_t), *(*last_error)(void);

static void *sym(void *lib, const char *name, const char *f) {
    char s[256];
    snprintf(s, sizeof s, "%s_%s", name, f);
    void *p = dlsym(lib, s);
    if (!p) { fprintf(stderr, "missing %s\n", s); exit(3); }
    return p;
}

static size_t bytes_of(const desc *d) {
    static const size_t size[] = {4, 8, 4, 8, 1};
    size_t n = size[d->dtype];
    for (int i = 0; i < d->rank; i++) n *= (size_t)d->shape[i];
    return n;
}

static void *slurp(const char *path, size_t want) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    void *p = malloc(want ? want : 1);
    if (fread(p, 1, want, f) != want) { fprintf(stderr, "%s: short\n", path); exit(2); }
    fclose(f);
    return p;
}

static int ni, no, runs;
static const void *ins[16];
typedef struct { void *outs[16]; int status; } job;

static void *work(void *arg) {
    job *j = arg;
    for (int r = 0; r < runs; r++) {
        for (int o = 0; o < no; o++) memset(j->outs[o], 0xff, bytes_of(output_desc(o)));
        j->status = run(ins, j->outs);
        if (j->status) return NULL;
    }
    return NULL;
}

int main(int argc, char **argv) {
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!lib) { fprintf(stderr, "%s\n", dlerror()); return 3; }
    const char *name = argv[2];
    int threads = atoi(argv[3]);
    runs = atoi(argv[4]);
    num_inputs = sym(lib, name, "num_inputs"); num_outputs = sym(lib, name, "num_outputs");
    input_desc = sym(lib, name, "input_desc"); output_desc = sym(lib, name, "output_desc");
    run = sym(lib, name, "run"); message = sym(lib, name, "error_message");
    run_checked = sym(lib, name, "run_checked"); last_error = sym(lib, name, "last_error");
    ni = num_inputs(); no = num_outputs();
    for (int i = 0; i < ni + no; i++) {
        const desc *d = i < ni ? input_desc(i) : output_desc(i - ni);
        printf("%s %s %d", i < ni ? "input" : "output", d->name, d->dtype);
        for (int k = 0; k < d->rank; k++) printf(" %lld", (long long)d->shape[k]);
        printf("\n");
    }
    printf("desc(-1) %s desc(n) %s\n", input_desc(-1) ? "set" : "NULL", output_desc(no) ? "set" : "NULL");
    int a = 5;
    for (int i = 0; i < ni; i++) ins[i] = slurp(argv[a++], bytes_of(input_desc(i)));
    a++; /* "--" */
    job jobs[8];
    for (int t = 0; t < threads; t++)
        for (int o = 0; o < no; o++) jobs[t].outs[o] = malloc(bytes_of(output_desc(o)) + 1);
    /* Bad calls. */
    int c = run(NULL, jobs[0].outs);
    printf("null inputs: %d %s\n", c, message(c));
    c = run(ins, NULL);
    printf("null outputs: %d %s\n", c, message(c));
    if (ni > 0) {
        const void *saved = ins[0];
        ins[0] = NULL;
        c = run(ins, jobs[0].outs);
        printf("null input: %d %s\n", c, message(c));
        ins[0] = saved;
    }
    printf("code 99: %s\n", message(99));
    /* Checked calls: right, then a wrong count, dtype, shape and a NULL buffer. */
    tensor ti[16], to[16];
    for (int i = 0; i < ni; i++) ti[i] = (tensor){(void *)ins[i], input_desc(i)->dtype, input_desc(i)->rank, input_desc(i)->shape};
    for (int o = 0; o < no; o++) to[o] = (tensor){jobs[0].outs[o], output_desc(o)->dtype, output_desc(o)->rank, output_desc(o)->shape};
    c = run_checked(ti, ni, to, no);
    printf("checked: %d [%s]\n", c, last_error());
    c = run_checked(ti, ni + 1, to, no);
    printf("checked count: %d %s\n", c, last_error());
    if (no > 0) {
        int64_t wrong[8] = {0};
        tensor saved = to[0];
        to[0].dtype = (to[0].dtype + 1) % 5;
        c = run_checked(ti, ni, to, no);
        printf("checked dtype: %d %s\n", c, last_error());
        to[0] = saved;
        for (int k = 0; k < to[0].rank && k < 8; k++) wrong[k] = to[0].shape[k] + (k == 0);
        to[0].shape = wrong;
        c = run_checked(ti, ni, to, no);
        printf("checked shape: %d %s\n", c, last_error());
        to[0] = saved;
        to[0].data = NULL;
        c = run_checked(ti, ni, to, no);
        printf("checked null: %d %s\n", c, last_error());
        to[0] = saved;
    }
    pthread_t tid[8];
    for (int t = 0; t < threads; t++) pthread_create(&tid[t], NULL, work, &jobs[t]);
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    for (int t = 0; t < threads; t++) {
        if (jobs[t].status) { printf("run failed: %s\n", message(jobs[t].status)); return 1; }
        for (int o = 0; o < no; o++)
            if (memcmp(jobs[t].outs[o], jobs[0].outs[o], bytes_of(output_desc(o)))) {
                printf("thread %d differs\n", t);
                return 1;
            }
    }
    for (int o = 0; o < no; o++) {
        FILE *f = fopen(argv[a + o], "wb");
        fwrite(jobs[0].outs[o], 1, bytes_of(output_desc(o)), f);
        fclose(f);
    }
    printf("ok\n");
    return 0;
}
"#;

/// The harness, compiled once per test directory.
fn harness(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("harness.c"), HARNESS).unwrap();
    cc(&["-O1", "-o", "harness", "harness.c", "-ldl", "-pthread"], dir);
    dir.join("harness")
}

/// `bytes` read back as values of `like`'s dtype, as f64.
fn read_f64(bytes: &[u8], like: &Value) -> Vec<f64> {
    match like {
        Value::F32(_) => bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect(),
        Value::F64(_) => bytes.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
        other => panic!("unexpected {}", other.ty()),
    }
}

/// Random values for every input of `g`: floats uniform in [-2, 2], integers (token ids) in
/// 0..100.
fn random_inputs(g: &Graph, seed: u64) -> Vec<(String, Value)> {
    g.inputs()
        .enumerate()
        .map(|(j, (_, n))| {
            let name = n.op.leaf_name().unwrap().to_string();
            if n.ty.dtype == DType::I32 {
                let k = seed as usize + j;
                let ids: Vec<i32> = (0..n.ty.numel()).map(|i| ((i * 37 + k * 11) % 100) as i32).collect();
                let v = ndarray::ArrayD::from_shape_vec(n.ty.dims().to_vec(), ids).unwrap();
                return (name, Value::I32(v));
            }
            let init = kiln::ir::Init::Uniform { low: kiln::ir::Literal(-2.0), high: kiln::ir::Literal(2.0) };
            let v = kiln::ir::init::materialize(init, &n.ty, &name, seed + j as u64);
            (name, v)
        })
        .collect()
}

/// The harness's stdout after running `lib` on `inputs` with `threads` threads; the outputs
/// it wrote.
fn run_library(
    dir: &Path,
    lib: &Path,
    name: &str,
    inputs: &[(String, Value)],
    outputs: usize,
    threads: usize,
) -> (String, Vec<Vec<u8>>) {
    let exe = harness(dir);
    let mut args: Vec<String> = vec![lib.display().to_string(), name.into(), threads.to_string(), "3".into()];
    for (i, (_, v)) in inputs.iter().enumerate() {
        let p = dir.join(format!("in{i}.bin"));
        std::fs::write(&p, le_bytes(v)).unwrap();
        args.push(p.display().to_string());
    }
    args.push("--".into());
    let outs: Vec<PathBuf> = (0..outputs).map(|i| dir.join(format!("out{i}.bin"))).collect();
    args.extend(outs.iter().map(|p| p.display().to_string()));
    let o = Command::new(exe).args(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "harness failed: {stdout}\n{}", String::from_utf8_lossy(&o.stderr));
    (stdout, outs.iter().map(|p| std::fs::read(p).unwrap()).collect())
}

/// Builds `graph` into a library, runs it from C on 3 threads and checks descriptors, error
/// codes and outputs against the JIT (relative tolerance `tol`).
/// A library checked against the JIT: its directory (removed when this drops) and the libm
/// functions it needs.
struct Checked {
    dir: Scratch,
    libm: Vec<&'static str>,
}

fn check_against_jit(graph: &Graph, name: &str, tol: f64) -> Checked {
    check_target_against_jit(graph, name, tol, (Target::Native, KernelCompiler::C))
}

/// [`check_against_jit`] for a library compiled for `target`.
fn check_target_against_jit(
    graph: &Graph,
    name: &str,
    tol: f64,
    (target, kernels): (Target, KernelCompiler),
) -> Checked {
    let dir = scratch(name);
    let weights = kiln::ir::init::init_params(graph, 3);
    let mut options = BuildOptions::new(name, &dir);
    options.target = target;
    options.kernels = kernels;
    let lib = kiln::aot::build(graph, &weights, &options).unwrap();
    assert_eq!(lib.target, target);
    assert_eq!(lib.library, dir.join(format!("lib{name}.so")));
    assert!(lib.header.exists());
    let inputs = random_inputs(graph, 11);
    let (stdout, got) = run_library(&dir, &lib.library, name, &inputs, graph.outputs().len(), 3);

    // Descriptors: every input and output, by name, dtype code and shape.
    for (kind, items) in [("input", &lib.inputs), ("output", &lib.outputs)] {
        for (n, t) in items.iter() {
            let dims: String = t.dims().iter().map(|d| format!(" {d}")).collect();
            let line = format!("{kind} {n} {}{dims}", kiln::codegen::aot::dtype_code(t.dtype));
            assert!(stdout.lines().any(|l| l == line), "no `{line}` in\n{stdout}");
        }
    }
    assert!(stdout.contains("desc(-1) NULL desc(n) NULL"), "{stdout}");
    assert!(stdout.contains("null inputs: 1 the inputs array is NULL"), "{stdout}");
    assert!(stdout.contains("null outputs: 3 the outputs array is NULL"), "{stdout}");
    assert!(stdout.contains("null input: 2 an input pointer is NULL"), "{stdout}");
    assert!(stdout.contains("code 99: unknown error code"), "{stdout}");
    let out0 = &lib.outputs[0];
    let names = ["f32", "f64", "i32", "i64", "bool"];
    let code = kiln::codegen::aot::dtype_code(out0.1.dtype) as usize;
    let dims = |d: &[usize]| format!("{d:?}");
    let mut bumped = out0.1.dims().to_vec();
    bumped[0] += 1;
    for want in [
        "checked: 0 []".to_string(),
        format!("checked count: 6 {} inputs and {} outputs given", lib.inputs.len() + 1, lib.outputs.len()),
        format!("checked dtype: 7 output 0 ({}): dtype {}, expected {}", out0.0, names[(code + 1) % 5], names[code]),
        format!("checked shape: 8 output 0 ({}): shape {}, expected {}", out0.0, dims(&bumped), dims(out0.1.dims())),
        format!("checked null: 4 output 0 ({}): data is NULL", out0.0),
    ] {
        assert!(stdout.contains(&want), "no `{want}` in\n{stdout}");
    }

    let exe = kiln::compile(graph, kiln::Fusion::Fused).unwrap();
    let mut feeds: HashMap<String, Value> = weights.clone();
    feeds.extend(inputs.iter().cloned());
    let want = exe.run(&feeds).unwrap();
    for ((w, g), (oname, _)) in want.iter().zip(&got).zip(&lib.outputs) {
        let (w64, g64) = (w.to_f64_vec(), read_f64(g, w));
        assert_eq!(w64.len(), g64.len(), "{oname}");
        let scale = w64.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        for (i, (a, b)) in w64.iter().zip(&g64).enumerate() {
            assert!((a - b).abs() <= tol * scale, "{name}.{oname}[{i}]: JIT {a}, library {b}");
        }
    }
    Checked { dir, libm: lib.libm }
}

#[test]
fn mnist_mlp_library_matches_the_jit() {
    for (batch, name) in [(1, "mnist_mlp"), (13, "mnist_mlp_b13")] {
        let libm = check_against_jit(&kiln::zoo::mnist_mlp(batch).unwrap().graph, name, 1e-5).libm;
        assert!(libm.is_empty(), "{libm:?}");
    }
}

#[test]
fn lenet5_library_matches_the_jit() {
    check_against_jit(&kiln::zoo::lenet5(1).unwrap().graph, "lenet5", 1e-5);
    check_against_jit(&kiln::zoo::lenet5(5).unwrap().graph, "lenet5_b5", 1e-5);
}

/// The CIFAR CNN runs channels-last on the JIT (the `layout` pass chooses it); the library's
/// C runtime converts its convolutions back to channels-first and must agree.
#[test]
fn channels_last_cifar_cnn_library_matches_the_jit() {
    let graph = kiln::zoo::cifar_cnn(2).unwrap().graph;
    let (optimized, _) = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap().run(&graph).unwrap();
    let nhwc = optimized.nodes().filter_map(|(_, n)| n.op.conv()).all(|(_, a)| a.layout == kiln::ir::ConvLayout::Nhwc);
    assert!(nhwc, "the default pipeline runs the CIFAR CNN channels-last\n{optimized}");
    check_against_jit(&graph, "cifar_cnn", 1e-5);
}

#[test]
fn transformer_block_library_matches_the_jit() {
    let libm = check_against_jit(&kiln::zoo::transformer_block(2).unwrap().graph, "transformer_block", 1e-4).libm;
    assert!(libm.is_empty(), "{libm:?}");
}

#[test]
fn lstm_classifier_library_matches_the_jit_and_refuses_bad_ids() {
    let graph = kiln::zoo::lstm_classifier(2).unwrap().graph;
    let checked = check_against_jit(&graph, "lstm", 1e-5);
    assert!(checked.libm.is_empty(), "{:?}", checked.libm);
    // A token id outside the embedding table: an error code, not a read out of bounds.
    let dir = checked.dir.path();
    let mut ids = random_inputs(&graph, 11);
    if let Value::I32(a) = &mut ids[0].1 {
        a[[1, 5]] = 10_000;
    }
    let exe = harness(dir);
    std::fs::write(dir.join("bad.bin"), le_bytes(&ids[0].1)).unwrap();
    let o = Command::new(exe)
        .arg(dir.join("liblstm.so"))
        .args(["lstm", "1", "1"])
        .arg(dir.join("bad.bin"))
        .args(["--", "o.bin"])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("checked: 9 [an index input is out of range]"), "{text}");
    assert!(text.contains("run failed: an index input is out of range"), "{text}");
}

#[test]
fn movement_gradients_f64_and_repeated_outputs_match_the_jit() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/aot_odd.kir")).unwrap();
    let graph = kiln::ir::parse_module(&text).unwrap().remove(0);
    let libm = check_against_jit(&graph, "odd", 1e-9).libm;
    assert_eq!(libm, ["exp"], "f64 exp calls libm");
}

/// The disassembly of `lib` (binutils' objdump).
fn disassembly(lib: &Path) -> String {
    let o = Command::new("objdump").arg("-d").arg(lib).output().expect("objdump runs");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Instructions on `register` registers (`%zmm`, `%ymm`) inside a library's fused kernels
/// (its `NAME__kN` functions).
fn kernel_instructions_on(asm: &str, register: &str) -> usize {
    let mut in_kernel = false;
    let mut count = 0;
    for line in asm.lines() {
        if line.ends_with(">:") {
            in_kernel = line.split('<').nth(1).is_some_and(|f| f.contains("__k"));
        } else if in_kernel && line.contains(register) {
            count += 1;
        }
    }
    count
}

/// A library's kernels are compiled by the C compiler at the machine's full vector width by
/// default, and by Cranelift (four lanes) with `KernelCompiler::Cranelift`; both match the JIT.
#[test]
fn library_kernels_run_at_full_width_from_c_or_as_cranelift_compiles_them() {
    let wide = if std::arch::is_x86_feature_detected!("avx512f") {
        "%zmm"
    } else if std::arch::is_x86_feature_detected!("avx2") {
        "%ymm"
    } else {
        return;
    };
    let graph = kiln::zoo::lenet5(2).unwrap().graph;
    for (kernels, tag) in [(KernelCompiler::C, "c"), (KernelCompiler::Cranelift, "cranelift")] {
        let name = format!("lenet5_{tag}");
        let checked = check_target_against_jit(&graph, &name, 1e-5, (Target::Native, kernels));
        let asm = disassembly(&checked.dir.join(format!("lib{name}.so")));
        let uses = kernel_instructions_on(&asm, wide);
        match kernels {
            KernelCompiler::C => assert!(uses > 0, "{name}: no kernel instruction on {wide} registers"),
            KernelCompiler::Cranelift => assert_eq!(uses, 0, "{name}: Cranelift's kernels on {wide} registers"),
        }
    }
}

#[test]
fn libraries_for_older_cpus_match_the_jit_and_use_only_their_instructions() {
    // x86-64-v2: SSE only (the C runtime's 32-byte vectors become pairs of SSE registers);
    // x86-64-v3: AVX2 and FMA, no AVX-512.
    let cases = [(Target::X86_64V2, "%ymm"), (Target::X86_64V3, "%zmm")];
    for (target, forbidden) in cases {
        if target == Target::X86_64V3 && !std::arch::is_x86_feature_detected!("avx2") {
            continue;
        }
        let tag = target.name().replace('-', "_");
        for (graph, model) in
            [(kiln::zoo::lenet5(2).unwrap().graph, "lenet5"), (kiln::zoo::transformer_block(1).unwrap().graph, "tb")]
        {
            let name = format!("{model}_{tag}");
            let checked = check_target_against_jit(&graph, &name, 1e-4, (target, KernelCompiler::C));
            let asm = disassembly(&checked.dir.join(format!("lib{name}.so")));
            let uses = asm.lines().filter(|l| l.contains(forbidden) || l.contains("%zmm")).count();
            assert_eq!(uses, 0, "{name}: {uses} instructions on {forbidden} registers");
        }
    }
}

#[test]
fn a_library_refuses_to_run_on_a_cpu_without_its_instructions() {
    use kiln::codegen::aot::driver::{self, Buf, Program, Step};
    // No current CPU has FMA4 (AMD's pre-Zen extension): a library that claims to need it
    // must refuse every call with an error code, never execute an illegal instruction.
    if std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| c.contains(" fma4")) {
        return;
    }
    let ty = TensorType::new(DType::F32, [4]);
    let program = Program {
        name: "old".into(),
        inputs: vec![("x".into(), ty.clone())],
        outputs: vec![("y".into(), ty.clone())],
        weights: vec![],
        arena_bytes: 0,
        steps: vec![Step::Copy { from: Buf::Input(0), to: Buf::Output(0), bytes: 16 }],
        math: vec![],
        target: "imaginary",
        cpu_features: vec!["sse4.2", "fma4"],
    };
    let dir = scratch("cpu");
    std::fs::write(dir.join("old.c"), driver::render(&program)).unwrap();
    std::fs::write(dir.join("kiln_rt.c"), kiln::codegen::aot::RUNTIME_C).unwrap();
    let main = r#"
#include <stdint.h>
#include <stdio.h>
typedef struct { void *data; int32_t dtype; int32_t rank; const int64_t *shape; } kiln_tensor;
int32_t old_run(const void *const *, void *const *);
int32_t old_run_checked(const kiln_tensor *, int32_t, const kiln_tensor *, int32_t);
const char *old_error_message(int32_t), *old_last_error(void);
int main(void) {
    float x[4] = {1, 2, 3, 4}, y[4] = {0};
    const void *in[] = {x};
    void *out[] = {y};
    int64_t shape[] = {4};
    kiln_tensor ti = {x, 0, 1, shape}, to = {y, 0, 1, shape};
    int32_t c = old_run(in, out);
    printf("%d %s\n", c, old_error_message(c));
    c = old_run_checked(&ti, 1, &to, 1);
    printf("%d %s\n%g\n", c, old_last_error(), y[3]);
    return 0;
}
"#;
    std::fs::write(dir.join("main.c"), main).unwrap();
    cc(&["-O1", "-pthread", "-o", "main", "main.c", "old.c", "kiln_rt.c"], &dir);
    let o = Command::new(dir.join("main")).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "10 this CPU lacks instructions the library was compiled for\n\
         10 this CPU lacks fma4, which libold.so was compiled for (target imaginary)\n0\n"
    );
}

#[test]
fn a_library_needs_only_libc_and_exports_only_its_functions() {
    let dir = scratch("elf");
    let graph = kiln::zoo::lenet5(1).unwrap().graph;
    let lib =
        kiln::aot::build(&graph, &kiln::ir::init::init_params(&graph, 0), &BuildOptions::new("net", &dir)).unwrap();
    assert!(lib.libm.is_empty(), "lenet5's kernels call {:?}", lib.libm);
    let o = Command::new("readelf").args(["-d", "--dyn-syms", "-W"]).arg(&lib.library).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    let needed: Vec<&str> = text.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert_eq!(needed.len(), 1, "{needed:?}");
    assert!(needed[0].contains("[libc.so.6]"), "{needed:?}");
    // Defined, global symbols: the eight functions.
    let mut exported: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(" GLOBAL ") && !l.contains(" UND "))
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    exported.sort_unstable();
    assert_eq!(
        exported,
        [
            "net_error_message",
            "net_input_desc",
            "net_last_error",
            "net_num_inputs",
            "net_num_outputs",
            "net_output_desc",
            "net_run",
            "net_run_checked"
        ]
    );
}

#[test]
fn two_models_link_into_one_program() {
    let dir = scratch("two");
    let mlp = kiln::zoo::mnist_mlp(1).unwrap().graph;
    let lenet = kiln::zoo::lenet5(1).unwrap().graph;
    for (g, name) in [(&mlp, "mlp"), (&lenet, "lenet")] {
        kiln::aot::build(g, &kiln::ir::init::init_params(g, 1), &BuildOptions::new(name, &dir)).unwrap();
    }
    // One image through both, linked at build time (no dlopen), both headers included.
    let c = r#"
#include <stdio.h>
#include "mlp.h"
#include "lenet.h"
int main(void) {
    static float x[784], a[10], b[10];
    for (int i = 0; i < 784; i++) x[i] = (float)((i * 37) % 100) / 50.0f - 1.0f;
    const void *in[] = {x};
    void *oa[] = {a}, *ob[] = {b};
    if (mlp_run(in, oa) != 0 || lenet_run(in, ob) != 0) return 1;
    if (mlp_run(NULL, oa) != MLP_ERROR_NULL_INPUTS || lenet_run(in, NULL) != LENET_ERROR_NULL_OUTPUTS) return 3;
    if (mlp_num_inputs() != 1 || lenet_input_desc(0)->rank != 4) return 2;
    for (int i = 0; i < 10; i++) printf("%.9g %.9g\n", a[i], b[i]);
    return 0;
}
"#;
    std::fs::write(dir.join("two.c"), c).unwrap();
    cc(&["-Wall", "-Werror", "-o", "two", "two.c", "-L.", "-lmlp", "-llenet", "-Wl,-rpath,$ORIGIN"], &dir);
    let o = Command::new(dir.join("two")).output().unwrap();
    assert!(o.status.success(), "{:?} {}", o.status, String::from_utf8_lossy(&o.stderr));
    let rows: Vec<(f64, f64)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| {
            let mut it = l.split(' ').map(|v| v.parse::<f64>().unwrap());
            (it.next().unwrap(), it.next().unwrap())
        })
        .collect();
    let x: Vec<f32> = (0..784).map(|i| ((i * 37) % 100) as f32 / 50.0 - 1.0).collect();
    for (k, (g, shape)) in [(&mlp, vec![1, 784]), (&lenet, vec![1, 1, 28, 28])].into_iter().enumerate() {
        let mut feeds = kiln::ir::init::init_params(g, 1);
        feeds.insert("x".into(), Value::F32(ndarray::ArrayD::from_shape_vec(shape, x.clone()).unwrap()));
        let want = kiln::compile(g, kiln::Fusion::Fused).unwrap().run(&feeds).unwrap()[0].to_f64_vec();
        for (i, w) in want.iter().enumerate() {
            let got = if k == 0 { rows[i].0 } else { rows[i].1 };
            assert!((w - got).abs() <= 1e-5 * (1.0 + w.abs()), "model {k} logit {i}: JIT {w}, library {got}");
        }
    }
}

#[test]
fn build_errors_name_what_is_wrong() {
    let dir = scratch("errors");
    let graph = kiln::zoo::mnist_mlp(1).unwrap().graph;
    let mut weights = kiln::ir::init::init_params(&graph, 0);
    let err = |r: Result<kiln::aot::Library, BuildError>| r.unwrap_err().to_string();

    let e = err(kiln::aot::build(&graph, &weights, &BuildOptions::new("9lives", &dir)));
    assert!(e.contains("`9lives` cannot name a library"), "{e}");

    let some = weights.keys().next().unwrap().clone();
    let saved = weights.remove(&some).unwrap();
    let e = err(kiln::aot::build(&graph, &weights, &BuildOptions::new("m", &dir)));
    assert!(e.contains(&format!("no weight for parameter `{some}`")), "{e}");
    weights.insert(some.clone(), Value::splat(&TensorType::new(DType::F32, [3]), 0.0));
    let e = err(kiln::aot::build(&graph, &weights, &BuildOptions::new("m", &dir)));
    assert!(e.contains(&format!("the weight for parameter `{some}` is f32[3]")), "{e}");
    weights.insert(some, saved);

    let mut options = BuildOptions::new("m", &dir);
    options.cc = Some("/nonexistent/cc".into());
    let r = kiln::aot::build(&graph, &weights, &options);
    assert!(matches!(r, Err(BuildError::Aot(AotError::NoCompiler { .. }))), "{r:?}");
    assert!(err(r).contains("cannot run the C compiler `/nonexistent/cc`"));

    // An op the library's runtime does not have: the gradient of an embedding lookup.
    let text = "func @s(%u: f32[3,2], %i: i32[3]) -> (y: f32[5,2]) {\n  %y = scatter_add %u, %i {axis=0} : f32[5,2]\n  return %y\n}\n";
    let g = kiln::ir::parse_module(text).unwrap().remove(0);
    let e = err(kiln::aot::build(&g, &HashMap::new(), &BuildOptions::new("s", &dir)));
    assert!(e.contains("scatter_add (node %2) cannot be compiled into a library yet"), "{e}");
}

#[test]
fn the_bench_example_times_any_library() {
    let dir = scratch("bench");
    let g = kiln::zoo::transformer_block(1).unwrap().graph;
    let lib = kiln::aot::build(&g, &kiln::ir::init::init_params(&g, 0), &BuildOptions::new("tb", &dir)).unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aot/bench.c");
    cc(&["-O2", "-Wall", "-Wextra", "-Werror", "-o", "bench", example.to_str().unwrap(), "-ldl"], &dir);
    let o = Command::new(dir.join("bench")).arg(&lib.library).args(["tb", "5"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && text.starts_with("tb: median ") && text.contains("over 5 runs"), "{text}");
    let o = Command::new(dir.join("bench")).arg(&lib.library).args(["other", "5"]).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("has no function other_num_inputs"));
}

#[test]
fn the_generated_driver_of_mnist_mlp() {
    // The C a library runs, kept with --keep-sources: reviewed like the IR snapshots, so a
    // change to how buffers are bound or steps are called shows as a diff.
    let dir = scratch("driver");
    let graph = kiln::zoo::mnist_mlp(2).unwrap().graph;
    let mut options = BuildOptions::new("mnist_mlp", &dir);
    options.keep_sources = true;
    options.target = Target::X86_64V3;
    kiln::aot::build(&graph, &kiln::ir::init::init_params(&graph, 0), &options).unwrap();
    let driver = std::fs::read_to_string(dir.join("mnist_mlp.build/mnist_mlp_driver.c")).unwrap();
    insta::assert_snapshot!("aot_driver_mnist_mlp_b2", driver);
}

#[test]
fn a_library_loads_and_unloads_many_times() {
    // Each load creates two thread keys; unloading deletes them, so 1500 cycles (more than
    // the 1024 keys a process has) keep working: each run gives the same answer and a failed
    // checked call still has its per-thread message.
    let dir = scratch("reload");
    let g = kiln::zoo::mnist_mlp(1).unwrap().graph;
    let lib = kiln::aot::build(&g, &kiln::ir::init::init_params(&g, 0), &BuildOptions::new("m", &dir)).unwrap();
    let c = r#"
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    (void)argc;
    static float x[784], y[10], first[10];
    for (int i = 0; i < 784; i++) x[i] = (float)(i % 13) / 13.0f;
    for (int cycle = 0; cycle < 1500; cycle++) {
        void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
        if (!lib) { printf("dlopen: %s\n", dlerror()); return 1; }
        int32_t (*run)(const void *const *, void *const *) = (int32_t (*)(const void *const *, void *const *))dlsym(lib, "m_run");
        const char *(*last)(void) = (const char *(*)(void))dlsym(lib, "m_last_error");
        int32_t (*checked)(const void *, int32_t, const void *, int32_t) =
            (int32_t (*)(const void *, int32_t, const void *, int32_t))dlsym(lib, "m_run_checked");
        const void *in[] = {x};
        void *out[] = {y};
        int32_t code = run(in, out);
        if (code != 0) { printf("cycle %d: code %d\n", cycle, code); return 1; }
        /* A failed checked call still has its message (the per-thread text needs a key). */
        if (checked(NULL, 0, NULL, 0) != 6 || strstr(last(), "0 inputs and 0 outputs given") == NULL) {
            printf("cycle %d: no message: [%s]\n", cycle, last());
            return 1;
        }
        if (cycle == 0) memcpy(first, y, sizeof y);
        else if (memcmp(first, y, sizeof y)) { printf("cycle %d: different\n", cycle); return 1; }
        dlclose(lib);
    }
    printf("ok\n");
    return 0;
}
"#;
    std::fs::write(dir.join("reload.c"), c).unwrap();
    cc(&["-O1", "-Wall", "-Werror", "-o", "reload", "reload.c", "-ldl"], &dir);
    let o = Command::new(dir.join("reload")).arg(&lib.library).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "ok\n");
}

/// The PyTorch exports of `tests/data/onnx/` (an MLP and a LeNet, made by `export_torch.py`)
/// build into libraries whose outputs, called from C, agree with PyTorch's own.
#[test]
fn pytorch_exports_build_into_libraries_that_agree_with_pytorch() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx");
    for name in ["mlp", "lenet"] {
        let x = kiln::runtime::npy::read_any(&data.join(format!("{name}_input.npy"))).unwrap();
        let want = kiln::runtime::npy::read_any(&data.join(format!("{name}_torch.npy"))).unwrap();
        let options = kiln::onnx::Options { batch: x.shape()[0], ..Default::default() };
        let model = kiln::onnx::import_file(&data.join(format!("{name}.onnx")), &options).unwrap();
        let dir = scratch(&format!("torch_{name}"));
        let lib = kiln::aot::build(&model.graph, &model.weights, &BuildOptions::new(name, &dir)).unwrap();
        let (_, got) = run_library(&dir, &lib.library, name, &[("x".to_string(), x)], 1, 2);
        let got = read_f64(&got[0], &want);
        for (i, (a, e)) in got.iter().zip(want.to_f64_vec()).enumerate() {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{name}[{i}]: library {a}, PyTorch {e}");
        }
    }
}
