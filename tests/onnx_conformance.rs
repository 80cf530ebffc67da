//! The ONNX backend conformance suite through kiln's importer and JIT: the node tests (one op
//! each, written by the ONNX project) and the light real models, from the files
//! `onnx/conformance/generate.py` writes. Run by `onnx/conformance/run` (from `.ci/run`), which
//! installs the `onnx` wheel and sets `KILN_ONNX_SUITE`; ignored by a plain `cargo test`.
//!
//! Selection, written down here and in `docs/onnx.md`: a case runs if its model imports. It is
//! *skipped*, with the importer's reason printed, when the importer refuses it as unsupported
//! (an op `kiln_onnx::supports` does not list, a dtype kiln does not have, an attribute value
//! it does not translate) or when its data is not tensors. Any other outcome — an import
//! error, a run error, a wrong dtype, shape or value — fails the suite. An operand the
//! importer needs at import time (a shape arriving as a graph input) is bound as a constant
//! from the case's own input, as a caller would with `Options::constants`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use kiln::ir::Value;
use kiln::onnx::{ImportError, Options};

/// How one case ended.
enum Outcome {
    Pass,
    Skip(String),
    Fail(String),
}

fn suite_dir() -> PathBuf {
    PathBuf::from(
        std::env::var("KILN_ONNX_SUITE").expect("KILN_ONNX_SUITE names the generated suite (onnx/conformance/run)"),
    )
}

fn read_tensor(path: &Path) -> Result<Value, Outcome> {
    let bytes = std::fs::read(path).map_err(|e| Outcome::Fail(format!("{}: {e}", path.display())))?;
    match kiln::onnx::read_tensor(&bytes) {
        Ok((_, v)) => Ok(v),
        // "tensor `x` has dtype INT8, which kiln has no dtype for" -> "dtype INT8".
        Err(ImportError::Unsupported(u)) => {
            let dtype = u[0].reason.split("dtype ").nth(1).and_then(|r| r.split(',').next()).unwrap_or("?");
            Err(Outcome::Skip(format!("dtype {dtype}")))
        }
        Err(e) => Err(Outcome::Fail(format!("{}: {e}", path.display()))),
    }
}

/// The files `input_K.pb` (or `output_K.pb`) of a case directory, in order.
fn tensors(dir: &Path, prefix: &str) -> Result<Vec<Value>, Outcome> {
    let mut out = Vec::new();
    loop {
        let p = dir.join(format!("{prefix}_{}.pb", out.len()));
        if !p.exists() {
            return Ok(out);
        }
        out.push(read_tensor(&p)?);
    }
}

/// `got` against `want` at the suite's tolerance: same dtype and shape; floats within
/// `atol + rtol·|want|` (NaN where NaN, infinities equal), everything else exact.
fn compare(got: &Value, want: &Value, rtol: f64, atol: f64) -> Result<(), String> {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Err(format!("got {}, expected {}", got.ty(), want.ty()));
    }
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let float = want.dtype().is_float();
    for (i, (&a, &e)) in g.iter().zip(&w).enumerate() {
        let ok = if !float {
            a == e
        } else if e.is_nan() || a.is_nan() {
            a.is_nan() && e.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= atol + rtol * e.abs()
        };
        if !ok {
            return Err(format!("element {i} of {}: got {a}, expected {e}", want.ty()));
        }
    }
    Ok(())
}

/// Imports, runs and checks one case directory.
fn run_case(dir: &Path, rtol: f64, atol: f64) -> Outcome {
    let inputs = match tensors(dir, "input") {
        Ok(v) => v,
        Err(o) => return o,
    };
    let expected = match tensors(dir, "output") {
        Ok(v) => v,
        Err(o) => return o,
    };
    let bytes = match std::fs::read(dir.join("model.onnx")) {
        Ok(b) => b,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let onnx_inputs = match kiln::onnx::data_inputs(&bytes) {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(e.to_string()),
    };
    let by_name: HashMap<String, Value> = onnx_inputs.iter().cloned().zip(inputs.iter().cloned()).collect();
    let mut options = Options::default();
    let model = loop {
        match kiln::onnx::import(&bytes, &options) {
            Ok(m) => break m,
            Err(ImportError::Unsupported(u)) => {
                let mut reasons: Vec<String> = u.iter().map(|u| u.reason.clone()).collect();
                reasons.dedup();
                return Outcome::Skip(reasons.join("; "));
            }
            Err(ImportError::NotConstant { from, .. })
                if from.iter().all(|f| by_name.contains_key(f)) && !from.is_empty() =>
            {
                if from.iter().all(|f| options.constants.contains_key(f)) {
                    return Outcome::Fail("binding the inputs did not make the operand known".into());
                }
                for f in from {
                    options.constants.insert(f.clone(), by_name[&f].clone());
                }
            }
            Err(e) => return Outcome::Fail(format!("import: {e}")),
        }
    };
    // The kiln inputs are the ONNX inputs in order, less those bound as constants.
    let mut feeds = model.weights.clone();
    let kiln_inputs: Vec<String> =
        model.graph.inputs().filter_map(|(_, n)| n.op.leaf_name().map(String::from)).collect();
    let unbound: Vec<&String> = onnx_inputs.iter().filter(|n| !options.constants.contains_key(*n)).collect();
    if unbound.len() != kiln_inputs.len() {
        return Outcome::Fail(format!("{} ONNX inputs left, {} kiln inputs", unbound.len(), kiln_inputs.len()));
    }
    for (onnx_name, kiln_name) in unbound.iter().zip(&kiln_inputs) {
        feeds.insert(kiln_name.clone(), by_name[*onnx_name].clone());
    }
    let exe = match kiln::compile(&model.graph, kiln::Fusion::Fused) {
        Ok(e) => e,
        Err(e) => return Outcome::Fail(format!("compile: {e}")),
    };
    let got = match exe.run(&feeds) {
        Ok(v) => v,
        Err(e) => return Outcome::Fail(format!("run: {e}")),
    };
    if got.len() != expected.len() {
        return Outcome::Fail(format!("{} outputs, expected {}", got.len(), expected.len()));
    }
    for (k, (g, w)) in got.iter().zip(&expected).enumerate() {
        // ONNX has no dtype kiln lacks among the outputs here (it would have been skipped).
        if let Err(e) = compare(g, w, rtol, atol) {
            return Outcome::Fail(format!("output {k}: {e}"));
        }
    }
    Outcome::Pass
}

/// Per-op counts: selected (imported and run), passed, skipped with reasons.
#[derive(Default)]
struct Row {
    selected: usize,
    passed: usize,
    skipped: BTreeMap<String, usize>,
    failures: Vec<String>,
}

#[test]
#[ignore = "needs the generated suite: run onnx/conformance/run"]
fn onnx_backend_node_tests() {
    let root = suite_dir().join("node");
    let index = std::fs::read_to_string(root.join("index.tsv")).expect("index.tsv");
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for line in index.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, op, rtol, atol, why) =
            (f[0], f[1], f[2].parse().unwrap_or(1e-3), f[3].parse().unwrap_or(1e-7), f[4]);
        let row = rows.entry(op.to_string()).or_default();
        let outcome = if why != "-" { Outcome::Skip(why.to_string()) } else { run_case(&root.join(name), rtol, atol) };
        match outcome {
            Outcome::Pass => {
                row.selected += 1;
                row.passed += 1;
            }
            Outcome::Skip(reason) => *row.skipped.entry(reason).or_default() += 1,
            Outcome::Fail(why) => {
                row.selected += 1;
                row.failures.push(format!("{name}: {why}"));
            }
        }
    }
    report(&rows);
    let failures: Vec<&String> = rows.values().flat_map(|r| &r.failures).collect();
    assert!(
        failures.is_empty(),
        "{} selected node tests failed:\n{}",
        failures.len(),
        failures.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
    );
}

/// Prints the per-op table (and writes it to `$KILN_ONNX_REPORT` if set): the core ops, the
/// other ops the importer translates, then ops it does not translate whose tests (expanded
/// into supported ops) ran; with the selection rate over the core ops.
fn report(rows: &BTreeMap<String, Row>) {
    let class = |op: &str| {
        if kiln::onnx::CORE_OPS.contains(&op) {
            0
        } else if kiln::onnx::supports(op) {
            1
        } else {
            2
        }
    };
    let mut text = String::new();
    let (mut total, mut sel, mut pass, mut core_total, mut core_sel) = (0, 0, 0, 0, 0);
    for (k, title) in ["core ops", "other ops the importer translates", "ops it does not translate (expanded tests)"]
        .iter()
        .enumerate()
    {
        text.push_str(&format!(
            "\n**{title}**\n\n| op | tests | selected | passed | skipped (reason: count) |\n|---|---|---|---|---|\n"
        ));
        for (op, r) in rows.iter().filter(|(op, _)| class(op) == k) {
            let skipped: usize = r.skipped.values().sum();
            let n = r.selected + skipped;
            total += n;
            sel += r.selected;
            pass += r.passed;
            if k == 0 {
                core_total += n;
                core_sel += r.selected;
            }
            if k == 2 && r.selected == 0 {
                continue;
            }
            let reasons: Vec<String> = r.skipped.iter().map(|(why, c)| format!("{why}: {c}")).collect();
            text.push_str(&format!("| {op} | {n} | {} | {} | {} |\n", r.selected, r.passed, reasons.join("; ")));
        }
    }
    text.push_str(&format!(
        "\n{total} node tests; {sel} selected, {pass} passed. Core ops: {core_total} tests, {core_sel} selected ({:.1}%).\n",
        100.0 * core_sel as f64 / core_total.max(1) as f64
    ));
    println!("{text}");
    if let Ok(path) = std::env::var("KILN_ONNX_REPORT") {
        std::fs::write(path, &text).expect("writing the report");
    }
}

#[test]
#[ignore = "needs the generated suite: run onnx/conformance/run"]
fn onnx_light_models_match_their_expected_outputs() {
    let root = suite_dir().join("light");
    let index = std::fs::read_to_string(root.join("index.tsv")).expect("index.tsv");
    let mut failures = Vec::new();
    for line in index.lines().filter(|l| !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let (name, rtol, atol, why) = (f[0], f[1].parse().unwrap_or(1e-3), f[2].parse().unwrap_or(1e-7), f[3]);
        let outcome = if why != "-" { Outcome::Fail(why.to_string()) } else { run_case(&root.join(name), rtol, atol) };
        match outcome {
            Outcome::Pass => println!("{name}: ok"),
            Outcome::Skip(why) | Outcome::Fail(why) => {
                println!("{name}: FAILED: {why}");
                failures.push(format!("{name}: {why}"));
            }
        }
    }
    assert!(failures.is_empty(), "light models failed:\n{}", failures.join("\n"));
}
