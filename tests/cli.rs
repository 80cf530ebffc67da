//! The `kiln` command line, run as a user would: listing, dumping, checking and running
//! models, and one-line errors with a non-zero exit for bad input.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{scratch::Scratch, *};
use kiln::ir::{Value, interp};
use ndarray_npy::{ReadNpyExt, WriteNpyExt};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("the kiln binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> Scratch {
    Scratch::new("cli", name)
}

fn write_npy(path: &Path, v: &Value) {
    let f = std::fs::File::create(path).unwrap();
    match v {
        Value::F32(a) => a.write_npy(f).unwrap(),
        Value::F64(a) => a.write_npy(f).unwrap(),
        Value::I32(a) => a.write_npy(f).unwrap(),
        Value::I64(a) => a.write_npy(f).unwrap(),
        Value::Bool(a) => a.write_npy(f).unwrap(),
    }
}

fn read_f32(path: &Path) -> Vec<f64> {
    let a = ndarray::ArrayD::<f32>::read_npy(std::fs::File::open(path).unwrap()).unwrap();
    a.iter().map(|&x| f64::from(x)).collect()
}

/// Dumps a zoo model to `dir/name.kir` through the CLI.
fn dump_to(dir: &Path, model: &str, batch: usize) -> PathBuf {
    let o = kiln(&["dump", model, "--stage", "graph", "--batch", &batch.to_string()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let path = dir.join(format!("{model}.kir"));
    std::fs::write(&path, &o.stdout).unwrap();
    path
}

/// Asserts a failed run printed exactly one `error:` line containing `part`.
fn assert_one_line_error(o: &Output, part: &str) {
    assert!(!o.status.success(), "expected failure, got stdout {}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim_end().lines().count(), 1, "one line expected: {err}");
    assert!(err.starts_with("error: ") && err.contains(part), "{err:?} should contain {part:?}");
}

#[test]
fn models_lists_the_whole_zoo() {
    let o = kiln(&["models"]);
    assert!(o.status.success());
    let out = stdout(&o);
    for e in kiln::zoo::CATALOG {
        assert!(out.lines().any(|l| l.starts_with(e.name)), "{} missing from:\n{out}", e.name);
    }
    assert_eq!(kiln::zoo::CATALOG.len(), 7);
    assert!(out.contains("235146"), "mnist_mlp parameter count:\n{out}");
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["models", "--help"],
        vec!["dump", "--help"],
        vec!["run", "--help"],
        vec!["check", "--help"],
        vec!["train", "--help"],
        vec!["eval", "--help"],
        vec!["predict", "--help"],
    ] {
        let o = kiln(&cmd);
        assert!(o.status.success() && stdout(&o).contains("Usage"), "{cmd:?}");
    }
    // `opt --help` names every pass of the registry, with what it does.
    let help = stdout(&kiln(&["opt", "--help"]));
    for p in kiln::passes::pipeline::PASSES {
        assert!(help.contains(&format!("{}: {}", p.name, p.summary)), "{} missing from\n{help}", p.name);
    }
}

#[test]
fn dumped_zoo_models_check_and_render_as_dot() {
    let dir = scratch("dump");
    for e in kiln::zoo::CATALOG {
        let path = dump_to(&dir, e.name, 2);
        let o = kiln(&["check", path.to_str().unwrap()]);
        assert!(o.status.success(), "{}: {}", e.name, stderr(&o));
        assert!(stdout(&o).starts_with("ok: @"), "{}", stdout(&o));
        let o = kiln(&["dump", e.name, "--format", "dot"]);
        assert!(o.status.success() && stdout(&o).starts_with("digraph"), "{}", e.name);
        // A dumped file dumps back to the same text.
        let o = kiln(&["dump", path.to_str().unwrap()]);
        assert_eq!(stdout(&o), std::fs::read_to_string(&path).unwrap(), "{}", e.name);
    }
}

#[test]
fn run_of_a_dumped_model_matches_the_dsl_graph_in_process() {
    let dir = scratch("run");
    let batch = 3;
    let path = dump_to(&dir, "mnist_mlp", batch);
    let x = f32v(&[batch, 784], &(0..batch * 784).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect::<Vec<_>>());
    write_npy(&dir.join("x.npy"), &x);
    // fc3.bias given explicitly, the other parameters from the seed.
    let bias = f32v(&[10], &[0.5; 10]);
    write_npy(&dir.join("b.npy"), &bias);
    let out_dir = dir.join("out");
    let (xi, bi) = (format!("x={}", dir.join("x.npy").display()), format!("fc3.bias={}", dir.join("b.npy").display()));
    let o = kiln(&[
        "run",
        path.to_str().unwrap(),
        "--input",
        &xi,
        "--input",
        &bi,
        "--seed",
        "42",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("logits.npy"));
    let got = read_f32(&out_dir.join("logits.npy"));

    let g = kiln::zoo::mnist_mlp(batch).unwrap().graph;
    let feeds: HashMap<String, Value> = [("x".to_string(), x), ("fc3.bias".to_string(), bias)].into();
    let want = interp::run_with_init(&g, &feeds, 42).unwrap()[0].to_f64_vec();
    // The JIT's GEMM sums in another order than the interpreter: equal within rounding.
    assert_close(&got, &want, 1e-5);
    // Another seed gives other parameters, so other logits.
    let o = kiln(&["run", path.to_str().unwrap(), "--input", &xi, "--seed", "43", "--out", out_dir.to_str().unwrap()]);
    assert!(o.status.success());
    assert_ne!(read_f32(&out_dir.join("logits.npy")), want);
}

#[test]
fn run_handles_integer_inputs_and_multi_function_files() {
    let dir = scratch("run-multi");
    let path = dump_to(&dir, "gan", 2);
    let z = f32v(&[2, 64], &vec![0.25; 128]);
    write_npy(&dir.join("z.npy"), &z);
    let zi = format!("z={}", dir.join("z.npy").display());
    let o = kiln(&["run", path.to_str().unwrap(), "--input", &zi, "--out", dir.to_str().unwrap()]);
    assert_one_line_error(&o, "choose one with --func");
    let o = kiln(&[
        "run",
        path.to_str().unwrap(),
        "--func",
        "gan_generator",
        "--input",
        &zi,
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let img = read_f32(&dir.join("image.npy"));
    assert_eq!(img.len(), 2 * 784);
    assert!(img.iter().all(|v| (-1.0..=1.0).contains(v)), "tanh output range");

    let path = dump_to(&dir, "lstm_classifier", 2);
    let ids = i32v(&[2, 32], &(0..64).map(|i| i * 131 % 10000).collect::<Vec<_>>());
    write_npy(&dir.join("ids.npy"), &ids);
    let o = kiln(&[
        "run",
        path.to_str().unwrap(),
        "--input",
        &format!("x={}", dir.join("ids.npy").display()),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = kiln::zoo::lstm_classifier(2).unwrap().graph;
    let want = interp::run_with_init(&g, &[("x".to_string(), ids)].into(), 0).unwrap()[0].to_f64_vec();
    // The JIT's inline tanh and exp differ from libm in the last bits.
    assert_close(&read_f32(&dir.join("logits.npy")), &want, 1e-5);
}

/// `--cast` feeds the bundled `u8` 28x28 digit to mnist_mlp's `f32[1,784]` input (as the
/// values 0 to 255, reshaped), and refuses what a cast would change silently.
#[test]
fn run_casts_and_reshapes_inputs_when_asked() {
    let dir = scratch("run-cast");
    let path = dump_to(&dir, "mnist_mlp", 1);
    let (p, out) = (path.to_str().unwrap(), dir.join("out"));
    let digit = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aot/digit.npy");
    let xi = format!("x={}", digit.display());
    let o = kiln(&["run", p, "--input", &xi, "--out", out.to_str().unwrap()]);
    assert_one_line_error(&o, "expected a .npy array of f32, the file holds `|u1` elements");
    let o = kiln(&["run", p, "--input", &xi, "--cast", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = read_f32(&out.join("logits.npy"));
    // The same as feeding the pixels as f32 values 0..255 of shape [1, 784].
    let pixels = kiln::runtime::npy::read_pixels(&digit).unwrap().to_f64_vec();
    let x = f32v(&[1, 784], &pixels.iter().map(|p| (p * 255.0).round() as f32).collect::<Vec<_>>());
    let g = kiln::zoo::mnist_mlp(1).unwrap().graph;
    let want = interp::run_with_init(&g, &[("x".to_string(), x)].into(), 0).unwrap()[0].to_f64_vec();
    assert_close(&got, &want, 1e-4);

    // Another element count, and fractions for an integer input, are refused.
    write_npy(&dir.join("short.npy"), &f32v(&[2, 784], &vec![0.0; 2 * 784]));
    let o = kiln(&["run", p, "--cast", "--input", &format!("x={}", dir.join("short.npy").display()), "--out", "o"]);
    assert_one_line_error(&o, "holds 1568 values ([2, 784]); f32[1,784] takes 784");
    let ids = dump_to(&dir, "lstm_classifier", 1);
    write_npy(&dir.join("ids.npy"), &f64v(&[1, 32], &[[3.0; 31].as_slice(), &[2.5]].concat()));
    let o = kiln(&[
        "run",
        ids.to_str().unwrap(),
        "--cast",
        "--input",
        &format!("x={}", dir.join("ids.npy").display()),
        "--out",
        "o",
    ]);
    assert_one_line_error(&o, "element 31 is 2.5, which i32 does not hold exactly");
}

#[test]
fn bad_input_gets_a_one_line_error() {
    let dir = scratch("bad");
    let path = dump_to(&dir, "mnist_mlp", 3);
    let p = path.to_str().unwrap();
    let out = dir.join("out");
    let out = out.to_str().unwrap();

    write_npy(&dir.join("short.npy"), &f32v(&[2, 784], &vec![0.0; 2 * 784]));
    let o = kiln(&["run", p, "--input", &format!("x={}", dir.join("short.npy").display()), "--out", out]);
    assert_one_line_error(&o, "expected f32[3,784], the file holds f32[2,784]");

    write_npy(&dir.join("f64.npy"), &f64v(&[3, 784], &vec![0.0; 3 * 784]));
    let o = kiln(&["run", p, "--input", &format!("x={}", dir.join("f64.npy").display()), "--out", out]);
    assert_one_line_error(&o, "expected a .npy array of f32");

    let o = kiln(&["run", p, "--input", &format!("nope={}", dir.join("short.npy").display()), "--out", out]);
    assert_one_line_error(&o, "has no input or parameter `nope`");

    let o = kiln(&["run", p, "--out", out]);
    assert_one_line_error(&o, "missing --input x=FILE.npy");

    let o = kiln(&["run", p, "--input", "x", "--out", out]);
    assert_one_line_error(&o, "expected NAME=path.npy");

    let o = kiln(&["run", p, "--input", &format!("x={}", dir.join("absent.npy").display()), "--out", out]);
    assert_one_line_error(&o, "absent.npy");

    let bad = dir.join("bad.kir");
    std::fs::write(&bad, "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = neg %y : f32[2]\n  return %0\n}\n").unwrap();
    for cmd in ["check", "run"] {
        let o = if cmd == "check" {
            kiln(&["check", bad.to_str().unwrap()])
        } else {
            kiln(&["run", bad.to_str().unwrap(), "--out", out])
        };
        assert_one_line_error(&o, "bad.kir: line 2, column 12: `%y` is not defined");
    }

    let o = kiln(&["dump", "no_such_model"]);
    assert_one_line_error(&o, "neither a zoo model");
}

#[test]
fn dtype_of_integer_labels_is_enforced() {
    // A model input of i32 must be given i32 data.
    let dir = scratch("dtype");
    let path = dump_to(&dir, "lstm_classifier", 1);
    write_npy(&dir.join("ids.npy"), &i64v(&[1, 32], &[1; 32]));
    let o = kiln(&[
        "run",
        path.to_str().unwrap(),
        "--input",
        &format!("x={}", dir.join("ids.npy").display()),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_one_line_error(&o, "expected a .npy array of i32");
}

#[test]
fn dump_grad_and_train_step_stages_verify() {
    let dir = scratch("stages");
    for (model, args) in [
        ("mnist_mlp", vec!["--stage", "train-step", "--optimizer", "adam"]),
        ("lenet5", vec!["--stage", "grad"]),
        ("gan", vec!["--stage", "train-step", "--optimizer", "nesterov"]),
    ] {
        let mut full = vec!["dump", model];
        full.extend(args.iter().copied());
        let o = kiln(&full);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let path = dir.join(format!("{model}.kir"));
        std::fs::write(&path, &o.stdout).unwrap();
        let c = kiln(&["check", path.to_str().unwrap()]);
        assert!(c.status.success(), "{model}: {}", stderr(&c));
        let text = stdout(&o);
        if args[1] == "grad" {
            assert!(text.contains("grad.conv1.weight: f32[6,1,5,5]"), "{text}");
        } else {
            assert!(text.contains("new.") && text.contains("%lr: f32[]"), "{text}");
        }
        // A dumped step is itself a file with a `loss` output: it dumps at the grad stage too;
        // a gradient graph is differentiated already.
        let o = kiln(&["dump", path.to_str().unwrap(), "--stage", "grad"]);
        if args[1] == "grad" {
            assert_one_line_error(&o, "already has an output `grad.conv1.weight`");
        } else {
            assert!(o.status.success(), "{model}: {}", stderr(&o));
        }
    }
    let bad = dir.join("noloss.kir");
    std::fs::write(&bad, "func @f(%w: f32[2] param zeros) -> (y: f32[2]) {\n  %1 = exp %w : f32[2]\n  return %1\n}\n")
        .unwrap();
    let o = kiln(&["dump", bad.to_str().unwrap(), "--stage", "grad"]);
    assert_one_line_error(&o, "@f has no output named `loss`");
}

#[test]
fn schedule_stage_prints_every_zoo_forward_and_step() {
    for e in kiln::zoo::CATALOG {
        for step in [false, true] {
            let mut args = vec!["dump", e.name, "--stage", "schedule"];
            if step {
                args.push("--train-step");
            }
            let o = kiln(&args);
            assert!(o.status.success(), "{}: {}", e.name, stderr(&o));
            let text = stdout(&o);
            assert!(text.starts_with("schedule @") && text.contains(" levels, arena "), "{}: {text}", e.name);
            assert!(text.contains("  s0    L0 "), "{}: {text}", e.name);
        }
    }
    let o = kiln(&["dump", "lenet5", "--stage", "schedule", "--train-step", "--format", "dot"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.starts_with("digraph") && text.contains("conv") && text.contains("->"), "{text}");
    // With KILN_DUMP, lowering writes the schedule beside the passes' dumps.
    let dir = scratch("schedule-dump");
    let path = dump_to(&dir, "xor_mlp", 4);
    let x = f32v(&[4, 2], &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    write_npy(&dir.join("x.npy"), &x);
    let dumps = dir.join("dumps");
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["run", path.to_str().unwrap(), "--input", &format!("x={}", dir.join("x.npy").display())])
        .args(["--out", dir.join("out").to_str().unwrap()])
        .env("KILN_DUMP", &dumps)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(dumps.join("xor_mlp.schedule.txt")).unwrap();
    assert!(text.starts_with("schedule @xor_mlp: "), "{text}");
}

#[test]
fn optimized_stage_and_opt_print_verified_graphs_with_reports() {
    let dir = scratch("opt");
    for e in kiln::zoo::CATALOG {
        let o = kiln(&["dump", e.name, "--stage", "optimized", "--train-step", "--optimizer", "adam"]);
        assert!(o.status.success(), "{}: {}", e.name, stderr(&o));
        let text = stdout(&o);
        assert!(text.contains("; pass egraph:") && text.contains("stop Saturated"), "{}: {text}", e.name);
        // Fusion's choices on the optimized graph, with their predictions.
        if e.name == "lenet5" {
            assert!(text.contains(": side output of the kernel of %") && text.contains("µs merged"), "{text}");
        }
        let path = dir.join(format!("{}.kir", e.name));
        std::fs::write(&path, &text).unwrap();
        let c = kiln(&["check", path.to_str().unwrap()]);
        assert!(c.status.success(), "{}: {}", e.name, stderr(&c));
    }
    let path = dump_to(&dir, "transformer_block", 1);
    let dumps = dir.join("dumps");
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["opt", path.to_str().unwrap(), "--pipeline", "cse,egraph,dce"])
        .env("KILN_DUMP", &dumps)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("; pass cse:") && stdout(&o).contains("; pass dce:"));
    let mut files: Vec<String> =
        std::fs::read_dir(&dumps).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    assert!(files.contains(&"transformer_block.01.egraph.after.kir".to_string()), "{files:?}");
    let o = kiln(&["opt", path.to_str().unwrap(), "--pipeline", "egraph,frobnicate"]);
    assert_one_line_error(&o, "unknown pass `frobnicate`");
}

#[test]
fn run_backends_agree_and_kernels_dump() {
    let dir = scratch("backends");
    let path = dump_to(&dir, "lenet5", 2);
    let x = f32v(&[2, 1, 28, 28], &(0..2 * 784).map(|i| ((i % 23) as f32 - 11.0) / 11.0).collect::<Vec<_>>());
    write_npy(&dir.join("x.npy"), &x);
    let xi = format!("x={}", dir.join("x.npy").display());
    let mut outs = Vec::new();
    for backend in ["interp", "jit"] {
        let out = dir.join(backend);
        let o = kiln(&[
            "run",
            path.to_str().unwrap(),
            "--input",
            &xi,
            "--backend",
            backend,
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{backend}: {}", stderr(&o));
        outs.push(read_f32(&out.join("logits.npy")));
    }
    for (a, b) in outs[0].iter().zip(&outs[1]) {
        assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "interp {a} vs jit {b}");
    }
    let o = kiln(&["dump", "lenet5", "--stage", "kernels", "--train-step"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(
        text.contains("kernel @k")
            && text.contains("store out[i]")
            && text.contains("store side0[i]")
            && text.contains("= conv2d (members: ")
            && text.contains("im2col + GEMM"),
        "{text}"
    );
    // A matmul with its bias add as a GEMM epilogue.
    let o = kiln(&["dump", "mnist_mlp", "--stage", "kernels"]);
    let text = stdout(&o);
    assert!(o.status.success() && text.contains(" = matmul %") && text.contains(" + epilogue k"), "{text}");
    let o = kiln(&["dump", "mnist_mlp", "--stage", "clif"]);
    assert!(o.status.success() && stdout(&o).contains("function u0:0(i64, i64, i64, i64)"), "{}", stderr(&o));
    // Machine code: the vector loop of the fused bias+relu kernels uses packed instructions.
    let o = kiln(&["dump", "mnist_mlp", "--stage", "asm"]);
    let text = stdout(&o);
    assert!(o.status.success() && text.contains("; kernel @k") && text.contains("ps %xmm"), "{}{text}", stderr(&o));
}

/// `KILN_THREADS` sets the thread count where `--threads` is not given; the flag wins.
#[test]
fn kiln_threads_sets_the_default_thread_count() {
    let run = |env: Option<&str>, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
        c.args(["bench", "mnist_mlp", "--batch", "2", "--runs", "1", "--json"]).args(extra);
        match env {
            Some(v) => c.env("KILN_THREADS", v),
            None => c.env_remove("KILN_THREADS"),
        };
        let o = c.output().expect("the kiln binary runs");
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o)
    };
    assert!(run(None, &[]).contains("\"threads\": 1"));
    assert!(run(Some("2"), &[]).contains("\"threads\": 2"));
    assert!(run(Some("nonsense"), &[]).contains("\"threads\": 1"));
    assert!(run(Some("2"), &["--threads", "1"]).contains("\"threads\": 1"));
    // More than the maximum is capped, not an abort.
    assert!(run(Some("100000"), &[]).contains("\"threads\": 256"));
    // The training step with the optimizer asked for.
    let step = run(None, &["--train-step", "--optimizer", "adam"]);
    assert!(step.contains("\"model\": \"mnist_mlp_train_adam\"") && step.contains("\"optimizer\": \"adam\""), "{step}");
    assert!(run(None, &[]).contains("\"optimizer\": null"));
}

#[test]
fn train_eval_and_predict_from_the_command_line() {
    let dir = scratch("train");
    let out = dir.join("xor");
    let o = kiln(&["train", "xor_mlp", "--json", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // The last line of stdout is the JSON summary; people's lines go to stderr.
    let last = stdout(&o).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("{\"model\":\"xor_mlp\",\"epochs\":4,\"test_accuracy\":1.000000,"), "{last}");
    assert!(last.contains("\"train_seconds\":") && last.contains("\"examples_per_second\":"), "{last}");
    assert!(stderr(&o).contains("epoch 4: test accuracy 100.00%"), "{}", stderr(&o));
    let png = std::fs::read(out.join("curve.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n"), "curve.png is a PNG");
    let ck = out.join("model.safetensors");

    let o = kiln(&["eval", "xor_mlp", "--weights", ck.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("test accuracy 100.00% on 4 examples"), "{}", stdout(&o));

    let x = dir.join("x.npy");
    write_npy(&x, &Value::F32(ndarray::arr2(&[[1.0f32, 0.0], [1.0, 1.0], [0.0, 0.0]]).into_dyn()));
    let o = kiln(&["predict", "xor_mlp", "--weights", ck.to_str().unwrap(), "--input", x.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "1\n0\n0\n");

    // One example without the batch axis.
    write_npy(&x, &Value::F32(ndarray::arr1(&[0.0f32, 1.0]).into_dyn()));
    let o = kiln(&["predict", "xor_mlp", "--weights", ck.to_str().unwrap(), "--input", x.to_str().unwrap()]);
    assert_eq!(stdout(&o), "1\n", "{}", stderr(&o));

    // Wrong shapes, wrong model, missing data: one-line errors.
    write_npy(&x, &Value::F32(ndarray::arr2(&[[1.0f32, 0.0, 1.0]]).into_dyn()));
    let o = kiln(&["predict", "xor_mlp", "--weights", ck.to_str().unwrap(), "--input", x.to_str().unwrap()]);
    assert_one_line_error(&o, "takes examples of shape [2] (2 values each), got an array of shape [1, 3]");
    // A NaN or infinite input gets no class.
    write_npy(&x, &Value::F32(ndarray::arr2(&[[1.0f32, 0.0], [f32::NAN, f32::NAN]]).into_dyn()));
    let o = kiln(&["predict", "xor_mlp", "--weights", ck.to_str().unwrap(), "--input", x.to_str().unwrap()]);
    assert_one_line_error(&o, "example 1 holds a non-finite value (NaN at element 0); no class is predicted");
    assert_eq!(stdout(&o), "");
    let o = kiln(&["eval", "mnist_mlp", "--weights", ck.to_str().unwrap()]);
    assert_one_line_error(&o, "no tensor `fc1.weight`");
    let o = kiln(&["train", "lenet5", "--data", dir.to_str().unwrap()]);
    assert_one_line_error(&o, "no MNIST file `train-images-idx3-ubyte.gz` or `train-images-idx3-ubyte`");
    let o = kiln(&["train", "xor_mlp", "--optimizer", "lbfgs", "--out", out.to_str().unwrap()]);
    assert_one_line_error(&o, "unknown optimizer `lbfgs`");
    // A loss that stops being finite ends the run naming the step, and writes nothing;
    // --allow-nonfinite goes on.
    let nan = dir.join("nan");
    let o = kiln(&["train", "xor_mlp", "--lr", "1e30", "--out", nan.to_str().unwrap()]);
    assert_one_line_error(&o, "training diverged: the loss is NaN at epoch 1, step ");
    assert!(stderr(&o).contains("nothing was saved"), "{}", stderr(&o));
    assert!(!nan.join("model.safetensors").exists());
    let o = kiln(&["train", "xor_mlp", "--lr", "1e30", "--allow-nonfinite", "--out", nan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(nan.join("model.safetensors").exists());
}

#[test]
fn ctrl_c_saves_a_checkpoint_that_resumes() {
    use std::io::BufRead;
    let dir = scratch("ctrlc");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["train", "mnist_mlp", "--epochs", "50", "--out", dir.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // The first line is printed once the step is compiled and Ctrl-C is handled.
    let header = lines.next().unwrap().unwrap();
    assert!(header.starts_with("training mnist_mlp"), "{header}");
    assert!(header.contains("; 50 epochs x "), "{header}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let kill = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?}");
    let said = rest.join("\n");
    // The hint to continue keeps the run's --out.
    let hint = format!(
        "continue with `kiln train mnist_mlp --out {} --resume {}`",
        dir.display(),
        dir.join("model.safetensors").display()
    );
    assert!(said.contains("interrupted: saved") && said.contains(&hint), "{said}");
    let ck = kiln::fit::checkpoint::load(&dir.join("model.safetensors")).unwrap();
    assert_eq!(ck.metadata["model"], "mnist_mlp");
    let steps: usize = ck.metadata["steps_done"].parse().unwrap();
    // 54,000 training images (6,000 validate) in steps of 128: 421 steps an epoch.
    assert!(steps > 0 && steps < 421, "steps done before Ctrl-C: {steps}");

    // Resuming finishes the first epoch from where it stopped.
    let ckpt = dir.join("model.safetensors");
    let o = kiln(&[
        "train",
        "mnist_mlp",
        "--epochs",
        "1",
        "--resume",
        ckpt.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains(&format!("resumed at epoch 1 ({steps} steps done)")), "{}", stdout(&o));
    assert!(stdout(&o).contains("epoch 1: validation accuracy"), "{}", stdout(&o));
    let ck = kiln::fit::checkpoint::load(&ckpt).unwrap();
    assert_eq!(ck.metadata["steps_done"], "421");
}

#[test]
fn predict_reads_mnist_digits_as_bytes() {
    let dir = scratch("digits");
    let out = dir.join("mlp");
    // A short run is enough to read digits (the CI-sized learning test asks for > 90%).
    let o = kiln(&["train", "mnist_mlp", "--epochs", "1", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let test = kiln::data::mnist::load_split(&kiln::data::mnist::bundled_dir(), "t10k").unwrap();
    let Value::F32(x) = &test.x else { panic!("f32 images") };
    let bytes: ndarray::ArrayD<u8> = x.slice(ndarray::s![..20, .., ..]).mapv(|p| (p * 255.0).round() as u8).into_dyn();
    let npy = dir.join("digits.npy");
    bytes.write_npy(std::fs::File::create(&npy).unwrap()).unwrap();
    let ck = out.join("model.safetensors");
    let o = kiln(&["predict", "mnist_mlp", "--weights", ck.to_str().unwrap(), "--input", npy.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let predicted: Vec<i32> = stdout(&o).lines().map(|l| l.parse().unwrap()).collect();
    let Value::I32(labels) = &test.y else { panic!("i32 labels") };
    let right = predicted.iter().zip(labels.iter()).filter(|(p, l)| p == l).count();
    assert_eq!(predicted.len(), 20);
    assert!(right >= 17, "{right}/20 right: {predicted:?}");

    // The README's path from the checkpoint to a library called from C and from Python: all
    // three read the example digit (a 7, the first test image) the same way.
    let digit = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aot/digit.npy");
    let o = kiln(&["predict", "mnist_mlp", "--weights", ck.to_str().unwrap(), "--input", digit.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "7\n", "one 28x28 image is a batch of one");
    let build = dir.join("build");
    let o = kiln(&["build", "mnist_mlp", "--weights", ck.to_str().unwrap(), "-o", build.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("needs only libc"), "{}", stdout(&o));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aot/mnist_predict.c");
    let exe = dir.join("predict");
    let include = format!("-I{}", build.display());
    let link = format!("-L{}", build.display());
    // The README's flags: the library is found next to the program, from any directory.
    let rpath = "-Wl,-rpath,$ORIGIN/build".to_string();
    let cc = Command::new("cc")
        .args(["-O2", "-Wall", "-Werror", &include])
        .arg(&example)
        .args([&link, "-lmnist_mlp", &rpath, "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(cc.status.success(), "{}", stderr(&cc));
    let o = Command::new(&exe).arg(&digit).current_dir("/").output().unwrap();
    assert_eq!(stdout(&o), "predicted digit: 7\n", "{}", stderr(&o));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/aot/mnist_predict.py");
    let o = Command::new("python3").arg(&script).arg(build.join("libmnist_mlp.so")).arg(&digit).output().unwrap();
    assert_eq!(stdout(&o), "predicted digit: 7\n", "{}", stderr(&o));
    // A convolutional net takes the image as [1, 1, 28, 28]; one built for another batch
    // size is refused by the checked call, which says which buffer and what it expected.
    let o = kiln(&["build", "lenet5", "-o", build.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new("python3").arg(&script).arg(build.join("liblenet5.so")).arg(&digit).output().unwrap();
    assert!(o.status.success() && stdout(&o).starts_with("predicted digit: "), "{}", stderr(&o));
    let o = kiln(&["build", "lenet5", "--batch", "2", "-o", build.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = Command::new("python3").arg(&script).arg(build.join("liblenet5.so")).arg(&digit).output().unwrap();
    assert!(!o.status.success());
    assert_eq!(stderr(&o), "lenet5: input 0 (x): shape [1, 1, 28, 28], expected [2, 1, 28, 28]\n");
}

#[test]
fn build_writes_a_library_or_says_why_not() {
    let dir = scratch("build");
    let o = kiln(&["build", "lenet5", "--batch", "2", "--name", "net", "--keep-sources", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = stdout(&o);
    assert!(text.contains("net_run(x: f32[2,1,28,28]) -> (logits: f32[2,10])"), "{text}");
    for f in ["libnet.so", "net.h", "net.build/net_driver.c", "net.build/kiln_rt.c", "net.build/net_kernels.o"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // The generated driver and the C runtime are warning-free C.
    let o = Command::new("cc")
        .args(["-fsyntax-only", "-std=gnu11", "-Wall", "-Wextra", "-Werror", "net_driver.c", "kiln_rt.c"])
        .current_dir(dir.join("net.build"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let kir = dir.join("scatter.kir");
    std::fs::write(&kir, "func @s(%u: f32[3,2], %i: i32[3]) -> (y: f32[5,2]) {\n  %y = scatter_add %u, %i {axis=0} : f32[5,2]\n  return %y\n}\n").unwrap();
    let o = kiln(&["build", kir.to_str().unwrap(), "-o", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("scatter_add (node %2) cannot be compiled into a library yet"), "{}", stderr(&o));
    let o = kiln(&["build", "nosuch", "-o", dir.to_str().unwrap()]);
    assert!(stderr(&o).contains("neither a zoo model"), "{}", stderr(&o));
    let o = kiln(&["build", "mnist_mlp", "--name", "my-model", "-o", dir.to_str().unwrap()]);
    assert!(stderr(&o).contains("`my-model` cannot name a library"), "{}", stderr(&o));
    let o = kiln(&["build", "mnist_mlp", "--weights", "/nonexistent.safetensors", "-o", dir.to_str().unwrap()]);
    assert!(stderr(&o).contains("/nonexistent.safetensors"), "{}", stderr(&o));
}

#[test]
fn device_cuda_without_a_gpu_is_a_clear_error() {
    // Without the `cuda` feature the build says how to get it; with it, a machine without a
    // GPU says that no driver was found (on a GPU machine the commands simply run).
    let want = if cfg!(feature = "cuda") { "no CUDA driver" } else { "rebuild with `--features cuda`" };
    let dir = scratch("device");
    let path = dump_to(&dir, "mnist_mlp", 2);
    write_npy(&dir.join("x.npy"), &f32v(&[2, 784], &[0.5; 2 * 784]));
    let xi = format!("x={}", dir.join("x.npy").display());
    let out = dir.join("out");
    // A checkpoint for eval and predict.
    let trained = dir.join("trained");
    let o = kiln(&["train", "xor_mlp", "--epochs", "1", "--out", trained.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let weights = trained.join("model.safetensors");
    write_npy(&dir.join("pairs.npy"), &f32v(&[3, 2], &[0.0, 1.0, 1.0, 1.0, 0.0, 0.0]));
    let pairs = dir.join("pairs.npy");
    let runs: [Vec<&str>; 5] = [
        vec!["bench", "mnist_mlp", "--device", "cuda", "--runs", "1"],
        vec!["run", path.to_str().unwrap(), "--input", &xi, "--out", out.to_str().unwrap(), "--device", "cuda"],
        vec!["train", "mnist_mlp", "--device", "cuda", "--epochs", "1", "--out", out.to_str().unwrap()],
        vec!["eval", "xor_mlp", "--weights", weights.to_str().unwrap(), "--device", "cuda"],
        vec![
            "predict",
            "xor_mlp",
            "--weights",
            weights.to_str().unwrap(),
            "--input",
            pairs.to_str().unwrap(),
            "--device",
            "cuda",
        ],
    ];
    for args in runs {
        let o = kiln(&args);
        if cfg!(feature = "cuda") && o.status.success() {
            continue;
        }
        assert!(!o.status.success(), "{args:?}");
        let err = stderr(&o);
        let last = err.trim_end().lines().last().unwrap_or_default();
        assert!(last.starts_with("error: ") && last.contains(want), "{args:?}: {err}");
    }
}

/// A run killed at any moment leaves the checkpoint and curve either as they were or whole:
/// `kiln train --save-every 1` rewrites its checkpoint after every step, and is killed
/// (SIGKILL) at 50 points spread over its run; whatever is there loads. (With the checkpoint
/// written in place instead of renamed, kills land inside writes and this fails.)
#[test]
fn killed_training_runs_never_leave_torn_files() {
    let dir = scratch("kill");
    let out = dir.join("xor");
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_kiln"))
            .args(["train", "xor_mlp", "--epochs", "2", "--save-every", "1", "--out", out.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // One whole run first, so each later kill lands over an existing checkpoint; it also
    // measures how long a run takes, to spread the kills over it.
    let start = std::time::Instant::now();
    assert!(run().wait().unwrap().success());
    let span = start.elapsed().as_micros() as u64;
    let ck = out.join("model.safetensors");
    for trial in 0..50u64 {
        let mut child = run();
        std::thread::sleep(std::time::Duration::from_micros(span * (trial * 37 % 50 + 1) / 50));
        let _ = child.kill();
        let _ = child.wait();
        let loaded = kiln::fit::checkpoint::load(&ck);
        assert!(loaded.is_ok(), "trial {trial}: {:?}", loaded.err());
        let png = std::fs::read(out.join("curve.png")).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n") && png.ends_with(b"IEND\xaeB`\x82"), "trial {trial}: curve.png torn");
    }
}

/// `--pipeline` on bench, run, build and train: any pass list `kiln opt` takes, reported by
/// `bench --json`; a bad list is one clear error; the same values with or without rewriting.
#[test]
fn every_compiling_command_takes_a_pipeline() {
    let dir = scratch("pipeline");
    let bench = |p: &str| kiln(&["bench", "xor_mlp", "--batch", "4", "--runs", "2", "--json", "--pipeline", p]);
    let o = bench("cse,dce");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("\"pipeline\": \"cse,dce\""), "{}", stdout(&o));
    assert!(bench("cse,fold,egraph,dce").status.success());
    assert_one_line_error(&bench("cse,nope"), "unknown pass `nope`");

    // run: the graph optimized first, then interpreted: the written graph's values.
    let path = dump_to(&dir, "mnist_mlp", 2);
    let x = f32v(&[2, 784], &(0..2 * 784).map(|i| ((i % 13) as f32 - 6.0) / 6.0).collect::<Vec<_>>());
    write_npy(&dir.join("x.npy"), &x);
    let xi = format!("x={}", dir.join("x.npy").display());
    let run = |extra: &[&str], out: &str| {
        let out = dir.join(out);
        let mut args = vec!["run", path.to_str().unwrap(), "--input", &xi, "--backend", "interp", "--out"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        let o = kiln(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        read_f32(&out.join("logits.npy"))
    };
    let plain = run(&[], "plain");
    let optimized = run(&["--pipeline", "cse,fold,egraph,dce"], "optimized");
    assert_close(&optimized, &plain, 1e-5);

    let o = kiln(&["build", "xor_mlp", "--pipeline", "cse,dce", "-o", dir.join("lib").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o =
        kiln(&["train", "xor_mlp", "--epochs", "1", "--pipeline", "cse,dce", "--out", dir.join("t").to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// A library whose calls need more memory than this machine has still builds (it may run
/// elsewhere), with a warning naming both sizes.
#[test]
fn building_a_library_too_large_for_this_machine_warns() {
    let dir = scratch("big-library");
    let o = kiln(&["build", "mnist_mlp", "--batch", "1000000000", "-o", dir.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("warning: a call needs 2384.") && e.contains("GiB available"), "{e}");
}

/// `kiln calibrate -o FILE` writes a model that reads back (and that `KILN_COST_MODEL=FILE`
/// makes the model in use); `kiln profile` prints a row per step, the summary and the misses.
#[test]
fn calibrate_writes_a_model_and_profile_compares_it() {
    let dir = scratch("calibrate");
    let file = dir.join("model.txt");
    let o = kiln(&["calibrate", "--runs", "1", "-o", file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = std::fs::read_to_string(&file).unwrap();
    let model = kiln::passes::cost_model::CostModel::from_text(&text, "test").unwrap();
    assert!(model.row(kiln::passes::cost_model::Family::Gemm)[2] > 0.0, "{text}");
    assert!(stdout(&o).contains("rank correlation"), "{}", stdout(&o));
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["profile", "mnist_mlp", "--train-step", "--batch", "4", "--runs", "1"])
        .env("KILN_COST_MODEL", &file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains(&format!("(cost model: {})", file.display())), "{out}");
    assert!(out.contains("rank correlation") && out.contains("largest misses:"), "{out}");
    assert!(out.lines().any(|l| l.contains(" gemm ")), "{out}");
    // A malformed model is a warning naming the line; the built-in model is used.
    std::fs::write(&file, "gemm.mac fast\n").unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .args(["profile", "mnist_mlp", "--batch", "4", "--runs", "1", "--summary"])
        .env("KILN_COST_MODEL", &file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("cost model line 1: `fast` is not a number"), "{}", stderr(&o));
    assert!(stdout(&o).contains("(cost model: builtin)"), "{}", stdout(&o));
}

/// The path from a PyTorch export to answers: `kiln import` writes `.kir` + weights that
/// `kiln run` picks up; `kiln run` and `kiln build` take the `.onnx` directly; `kiln dump
/// --loss` differentiates it; a bad file is one error line.
#[test]
fn onnx_models_import_run_dump_and_build_from_the_command_line() {
    let dir = scratch("onnx");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/onnx");
    let onnx = data.join("lenet.onnx");
    let (onnx, input) = (onnx.to_str().unwrap(), data.join("lenet_input.npy"));
    let want = read_f32(&data.join("lenet_torch.npy"));
    let kir = dir.path().join("lenet.kir");
    let o = kiln(&["import", onnx, "-o", kir.to_str().unwrap(), "--batch", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("lenet.safetensors (10 parameters)"), "{}", stdout(&o));
    assert!(stderr(&o).contains("symbolic dimension `batch` (axis 0) pinned to 3"), "{}", stderr(&o));
    let x = format!("x={}", input.display());
    for model in [onnx, kir.to_str().unwrap()] {
        let out = dir.path().join(format!("out_{}", model.len()));
        let o = kiln(&["run", model, "--batch", "3", "--input", &x, "--out", out.to_str().unwrap()]);
        assert!(o.status.success(), "{model}: {}", stderr(&o));
        let got = read_f32(&out.join("logits.npy"));
        for (a, e) in got.iter().zip(&want) {
            assert!((a - e).abs() <= 1e-5 * (1.0 + e.abs()), "{model}: {a} vs PyTorch {e}");
        }
    }
    let o = kiln(&["dump", onnx, "--stage", "grad", "--loss", "cross-entropy"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let g = stdout(&o);
    assert!(g.contains("%labels: i64[1]") && g.contains("grad.conv1.weight: f32[6,1,5,5]"), "{g}");
    let lib = dir.path().join("lib");
    let o = kiln(&["build", onnx, "-o", lib.to_str().unwrap(), "--batch", "2"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("lenet_run(x: f32[2,1,28,28]) -> (logits: f32[2,10])"), "{}", stdout(&o));
    assert!(lib.join("liblenet.so").exists());

    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"not a model at all").unwrap();
    assert_one_line_error(&kiln(&["run", bad.to_str().unwrap(), "--out", "/nonexistent"]), "not a readable ONNX model");
}
