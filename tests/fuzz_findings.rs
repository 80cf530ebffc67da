//! Regression tests for the defects a fuzz run found: each reproduction gives the
//! interpreter's answer or one clear error. (The widened random-graph generator that would
//! have found the first three, `common::mixed`, runs in `tests/jit.rs`, `tests/aot_library.rs`
//! and `tests/gpu.rs`; the pass size and e-graph memory bounds are in `tests/pass_limits.rs`.)

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Output};

use common::{scratch::Scratch, *};
use kiln::ir::{Value, interp, parse_graph, verify};

fn kiln(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiln")).args(args).output().expect("the kiln binary runs")
}

fn scratch(name: &str) -> Scratch {
    Scratch::new("fuzz", name)
}

/// The graph `x · y` cast to `to`, over operands of `from`.
fn product_cast(from: &str, to: &str) -> String {
    format!(
        "func @g(%x: {from}[2,2], %y: {from}[2,2]) -> (z: {to}[2,2]) {{\n  %m = matmul %x, %y : {from}[2,2]\n  %c = cast %m : {to}[2,2]\n  return %c\n}}\n"
    )
}

fn operands(from: &str) -> HashMap<String, Value> {
    let (x, y) = ([1.0, 2.0, 3.0, 4.0], [0.5, -1.0, 2.0, 0.25]);
    let v = |d: [f64; 4]| if from == "f32" { f32v(&[2, 2], &d.map(|x| x as f32)) } else { f64v(&[2, 2], &d) };
    HashMap::from([("x".to_string(), v(x)), ("y".to_string(), v(y))])
}

/// Items 1–3: an epilogue that casts a product to another dtype (f32 → f64 corrupted the heap,
/// f64 → f32 gave wrong values, f32 → i32 was an internal error) runs as the interpreter
/// does, on the JIT and in a library.
#[test]
fn a_product_cast_to_another_dtype_matches_the_interpreter() {
    for (from, to, want) in [
        ("f32", "f64", [4.5, -0.5, 9.5, -2.0]),
        ("f64", "f32", [4.5, -0.5, 9.5, -2.0]),
        ("f32", "i32", [4.0, 0.0, 9.0, -2.0]),
        ("f64", "i64", [4.0, 0.0, 9.0, -2.0]),
        ("f32", "bool", [1.0, 1.0, 1.0, 1.0]),
    ] {
        let g = parse_graph(&product_cast(from, to)).unwrap();
        verify(&g).unwrap();
        let feeds = operands(from);
        let reference = interp::run(&g, &feeds).unwrap();
        assert_eq!(reference[0].to_f64_vec(), want, "{from} -> {to}: interpreter");
        let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
        assert_eq!(exe.run(&feeds).unwrap()[0].to_f64_vec(), want, "{from} -> {to}: jit");
        let dir = scratch(&format!("cast-{from}-{to}"));
        let lib = kiln::aot::build(&g, &HashMap::new(), &kiln::aot::BuildOptions::new("g", &dir)).unwrap();
        let got = call_library(&lib.library, "g", &[&feeds["x"], &feeds["y"]], &reference[0]);
        assert_eq!(got, want, "{from} -> {to}: library");
    }
}

/// Calls `NAME_run` of the library at `path` on `inputs`; returns its one output (shaped as
/// `like`) as f64.
fn call_library(path: &Path, name: &str, inputs: &[&Value], like: &Value) -> Vec<f64> {
    call_library_outputs(path, name, inputs, &[like]).remove(0)
}

/// Calls `NAME_run` of the library at `path` on `inputs`; returns its outputs (shaped and
/// typed as `likes`) as f64.
fn call_library_outputs(path: &Path, name: &str, inputs: &[&Value], likes: &[&Value]) -> Vec<Vec<f64>> {
    let bytes: Vec<Vec<u8>> = inputs.iter().map(|v| le_bytes(v)).collect();
    let mut outs: Vec<Vec<u8>> = likes.iter().map(|l| vec![0u8; le_bytes(l).len()]).collect();
    // SAFETY: the library was just built by kiln for these input and output types; `NAME_run`
    // takes arrays of pointers to buffers of exactly those sizes, which live across the call.
    let code = unsafe {
        let lib = libloading::Library::new(path).unwrap();
        let run: libloading::Symbol<unsafe extern "C" fn(*const *const u8, *const *mut u8) -> i32> =
            lib.get(format!("{name}_run").as_bytes()).unwrap();
        let ins: Vec<*const u8> = bytes.iter().map(|b| b.as_ptr()).collect();
        let out_ptrs: Vec<*mut u8> = outs.iter_mut().map(|o| o.as_mut_ptr()).collect();
        run(ins.as_ptr(), out_ptrs.as_ptr())
    };
    assert_eq!(code, 0, "{name}_run failed");
    outs.iter()
        .zip(likes)
        .map(|(out, like)| {
            let width = like.dtype().size_bytes();
            out.chunks_exact(width)
                .map(|c| match like {
                    Value::F32(_) => f32::from_le_bytes(c.try_into().unwrap()) as f64,
                    Value::I32(_) => i32::from_le_bytes(c.try_into().unwrap()) as f64,
                    Value::F64(_) => f64::from_le_bytes(c.try_into().unwrap()),
                    Value::I64(_) => i64::from_le_bytes(c.try_into().unwrap()) as f64,
                    Value::Bool(_) => f64::from(c[0]),
                })
                .collect()
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: mixed::cases(16), ..Default::default() })]

    /// Graphs over every dtype, every op kind followed by every cast (`common::mixed`), compute
    /// in a library what the interpreter computes.
    #[test]
    fn mixed_dtype_graphs_agree_in_libraries(steps in proptest::collection::vec((0u8..8, 0usize..64, 0usize..64, proptest::prelude::any::<u8>()), 1..10)) {
        let (g, text) = mixed::mixed_graph(&steps);
        let feeds = mixed::mixed_inputs(steps.len() as u64);
        let want = interp::run(&g, &feeds).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let dir = scratch("mixed");
        let lib = match kiln::aot::build(&g, &HashMap::new(), &kiln::aot::BuildOptions::new("mixed", &dir)) {
            Ok(lib) => lib,
            // Integer products run only on the JIT and the GPU: a clear refusal, not a defect.
            Err(e) if e.to_string().contains("cannot be compiled into a library yet") => {
                proptest::prop_assume!(false, "{}", e);
                unreachable!()
            }
            Err(e) => panic!("{e}\n{text}"),
        };
        let inputs: Vec<&Value> = g.inputs().map(|(_, n)| &feeds[n.op.leaf_name().unwrap()]).collect();
        let likes: Vec<&Value> = want.iter().collect();
        let got = call_library_outputs(&lib.library, "mixed", &inputs, &likes);
        for ((name, g), w) in ["out", "mid"].iter().zip(&got).zip(&want) {
            for (k, (a, b)) in g.iter().zip(w.to_f64_vec()).enumerate() {
                let ok = *a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs().max(b.abs());
                proptest::prop_assert!(ok, "library: output {}[{}] is {}, the interpreter says {}\n{}", name, k, a, b, text);
            }
        }
    }
}

/// Item 4: an attribute integer beyond the limit (a slice step of 2^64 − 1, read as −1 by the
/// interpreter) is a verify error naming it, for every integer attribute.
#[test]
fn attribute_integers_beyond_the_limit_are_refused() {
    let huge = u64::MAX;
    for (op, ty) in [
        (format!("slice %x {{start=[0], stop=[4], step=[{huge}]}}"), "f32[1]"),
        (format!("slice %x {{start=[{huge}], stop=[4], step=[1]}}"), "f32[1]"),
        (format!("pad %x {{low=[{}], high=[0], value=0.0}}", 1u64 << 60), "f32[1152921504606846980]"),
        (format!("reduce_sum %x {{axes=[{huge}]}}"), "f32[]"),
        (format!("concat %x {{axis={huge}}}"), "f32[4]"),
    ] {
        let text = format!("func @g(%x: f32[4]) -> (y: {ty}) {{\n  %y = {op} : {ty}\n  return %y\n}}\n");
        let e = parse_graph(&text).map(|g| verify(&g).map(|_| ())).err().map(|e| e.to_string());
        let e = e.unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(e.contains("more than the limit 2^48") || e.contains("out of range"), "{op}: {e}");
    }
    // An extent beyond the limit, even in an empty tensor, and a rank beyond the limit.
    let e = parse_graph("func @g(%x: f32[0,300000000000000]) -> (y: f32[0,300000000000000]) {\n  return %x\n}\n")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("more than the limit 2^48"), "{e}");
    let rank17 = vec!["1"; 17].join(",");
    let e = parse_graph(&format!("func @g(%x: f32[{rank17}]) -> (y: f32[{rank17}]) {{\n  return %x\n}}\n"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("more than the limit 16"), "{e}");
}

/// Item 5: an integer constant beyond its dtype's range saturates on every backend, as the
/// interpreter and the spec's cast say.
#[test]
fn integer_constants_saturate_on_every_backend() {
    for (lit, ty, want) in [
        ("3e9", "i32", 2147483647.0),
        ("-3e9", "i32", -2147483648.0),
        ("2147483648.0", "i32", 2147483647.0),
        ("1e30", "i64", 9223372036854775807.0),
        ("-1e30", "i64", -9223372036854775808.0),
        ("-7.9", "i32", -7.0),
    ] {
        let text = format!(
            "func @g(%x: {ty}[2]) -> (y: {ty}[2]) {{\n  %c = const {lit} : {ty}[2]\n  %y = max %x, %c : {ty}[2]\n  return %y\n}}\n"
        );
        let g = parse_graph(&text).unwrap();
        let x = if ty == "i32" { i32v(&[2], &[i32::MIN, i32::MIN]) } else { i64v(&[2], &[i64::MIN, i64::MIN]) };
        let feeds = HashMap::from([("x".to_string(), x)]);
        let reference = interp::run(&g, &feeds).unwrap()[0].to_f64_vec();
        assert_eq!(reference, [want, want], "{lit}: interpreter");
        let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
        assert_eq!(exe.run(&feeds).unwrap()[0].to_f64_vec(), reference, "{lit}: jit");
    }
}

/// A `.npy` file with `header` (padded as numpy pads it) followed by `data`.
fn npy(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.to_string();
    while !(10 + h.len() + 1).is_multiple_of(64) {
        h.push(' ');
    }
    h.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

/// Items 8 and 9: hostile `.npy` headers (deeply nested lists, a shape that claims terabytes,
/// a truncated file, unknown keys) are one clear error each, found without allocating what
/// the header claims; what numpy writes (any key order, big-endian, Fortran order) reads.
#[test]
fn hostile_npy_files_are_clear_errors() {
    let dir = scratch("npy");
    let path = dir.join("x.npy");
    let read = |bytes: Vec<u8>| {
        std::fs::write(&path, bytes).unwrap();
        kiln::runtime::npy::read_dtype(&path, kiln::ir::DType::F32)
    };
    let nested =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {}(2,){}, }}", "[".repeat(22), "]".repeat(22));
    for (bytes, want) in [
        (npy(&nested, &[0; 8]), "expected `(`"),
        (
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000, 3), }", &[0; 12]),
            "needs 12000000000000 data bytes, the file has 12",
        ),
        (
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999, 3), }", &[]),
            "an extent too large",
        ),
        (
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }", &[]),
            "too large to address",
        ),
        (
            npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }", &[0; 12]),
            "needs 16 data bytes, the file has 12",
        ),
        (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }", &[0; 8]), "unknown key `extra`"),
        (npy("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", &[0; 8]), "given twice"),
        (npy("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", &[0; 16]), "unsupported element type `<c8`"),
        (npy("{'descr': '<f4', 'shape': (2,), }", &[0; 8]), "needs `descr`, `fortran_order` and `shape`"),
        (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", &[0; 8]), "written `(n,)`"),
        (b"\x93NUMPY\x01\x00\xff\xff{".to_vec(), "a header of 65535 bytes (at most 10000)"),
        (b"\x93NUMPY\x01\x00\x40\x00{'descr'".to_vec(), "truncated header"),
        (b"PK\x03\x04".to_vec(), "shorter than the 8-byte preamble"),
        (b"\x89PNG\r\n\x1a\n\0\0".to_vec(), "no `\\x93NUMPY` magic"),
    ] {
        let e = read(bytes).unwrap_err().to_string();
        assert!(e.contains("not a valid .npy file") && e.contains(want), "want `{want}`, got: {e}");
    }
    let e = read(npy("{'descr': '<i4', 'fortran_order': False, 'shape': (2,), }", &[0; 8])).unwrap_err().to_string();
    assert!(e.contains("expected a .npy array of f32, the file holds `<i4` elements"), "{e}");

    // What numpy writes reads: any key order, big-endian, Fortran order, 0-d.
    let le: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_le_bytes()).collect();
    let be: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0].iter().flat_map(|x| x.to_be_bytes()).collect();
    let v = read(npy("{'shape': (2, 3), 'fortran_order': False, 'descr': '<f4'}", &le)).unwrap();
    assert_eq!((v.shape().to_vec(), v.to_f64_vec()), (vec![2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]));
    let v = read(npy("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", &be)).unwrap();
    assert_eq!(v.to_f64_vec(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let v = read(npy("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", &le)).unwrap();
    assert_eq!((v.shape().to_vec(), v.to_f64_vec()), (vec![2, 3], vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]));
    let v = read(npy("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &le[..4])).unwrap();
    assert_eq!((v.shape().to_vec(), v.to_f64_vec()), (vec![], vec![1.0]));
    // And what kiln writes reads back.
    let x = f32v(&[3, 1], &[0.5, -1.0, 2.0]);
    kiln::runtime::npy::write(&path, &x).unwrap();
    assert_eq!(kiln::runtime::npy::read_dtype(&path, kiln::ir::DType::F32).unwrap(), x);

    // Through the CLI: one line on stderr, exit code 1.
    std::fs::write(&path, npy(&nested, &[0; 8])).unwrap();
    let kir = dir.join("g.kir");
    std::fs::write(&kir, "func @g(%x: f32[2]) -> (y: f32[2]) {\n  %y = neg %x : f32[2]\n  return %y\n}\n").unwrap();
    let input = format!("x={}", path.display());
    let o = kiln(&["run", kir.to_str().unwrap(), "--input", &input, "--out", dir.join("o").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("not a valid .npy file") && err.trim().lines().count() == 1, "{err}");
}

/// Item 11: a thread count past the documented maximum is refused before anything starts;
/// the largest allowed count runs.
#[test]
fn thread_counts_are_bounded() {
    let o = kiln(&["bench", "xor_mlp", "--threads", "100000", "--runs", "1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("expected a thread count from 1 to 256"), "{err}");
    let o = kiln(&["bench", "xor_mlp", "--threads", "0", "--runs", "1"]);
    assert_eq!(o.status.code(), Some(2));
    let o = kiln(&["bench", "xor_mlp", "--threads", "256", "--runs", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(kiln::runtime::pool::Pool::new(100_000).threads(), kiln::runtime::pool::MAX_THREADS);
}

/// A graph whose buffers cannot fit is refused before anything is allocated, saying how much
/// it needed: a 4 TB product on the JIT and on the interpreter, through the API and the CLI.
#[test]
fn graphs_larger_than_memory_are_refused_before_allocating() {
    let text = "func @big(%x: f32[1000000,1] param uniform(-1.0, 1.0), %y: f32[1,1000000] param uniform(-1.0, 1.0)) -> (z: f32[1000000,1000000]) {\n  %z = matmul %x, %y : f32[1000000,1000000]\n  return %z\n}\n";
    let g = parse_graph(text).unwrap();
    // Compiling allocates no buffers (the GPU and library builders compile graphs larger than
    // the host); running, or making its parameters, is what is refused.
    let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
    let e = exe.fits_in_memory().unwrap_err().to_string();
    assert!(e.starts_with("@big needs 3.6 TiB (its inputs, parameters and buffers at their peak), but only "), "{e}");
    for backend in [kiln::runtime::exec::Backend::Interp, kiln::runtime::exec::Backend::Jit] {
        let e = kiln::runtime::exec::run(&g, &HashMap::new(), 0, backend).unwrap_err().to_string();
        assert!(e.starts_with("@big needs 3.6 TiB"), "{backend:?}: {e}");
    }
    let dir = scratch("big");
    let kir = dir.join("big.kir");
    std::fs::write(&kir, text).unwrap();
    let o = kiln(&["run", kir.to_str().unwrap(), "--out", dir.join("o").to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("@big needs 3.6 TiB") && err.trim().lines().count() == 1, "{err}");
    // A training step too large for the machine is refused before its parameters are made.
    let step = kiln::train::train_step_for(
        parse_graph(
            &text
                .replace("-> (z: f32[1000000,1000000])", "-> (loss: f32[])")
                .replace("  return %z", "  %loss = reduce_sum %z {axes=[0,1]} : f32[]\n  return %loss"),
        )
        .unwrap(),
        &kiln::frontend::optim::Optimizer::sgd(),
    )
    .unwrap();
    for backend in [kiln::runtime::exec::Backend::Interp, kiln::runtime::exec::Backend::Jit] {
        let e = kiln::runtime::train::TrainSession::with_backend(step.clone(), 0, backend).unwrap_err().to_string();
        assert!(e.starts_with("@big") && e.contains("TiB"), "{backend:?}: {e}");
    }
}

/// Found by the checkpoint fuzz target: the safetensors writer encodes *empty* metadata
/// without tensors as an unreadable header (`{},"__metadata__":{}}`), so an empty checkpoint
/// saved and did not load. Empty metadata is now written as none, and every save checks that
/// its header reads back before writing anything.
#[test]
fn a_checkpoint_is_never_written_unloadable() {
    use std::collections::BTreeMap;
    let dir = scratch("empty-checkpoint");
    let path = dir.join("c.safetensors");
    kiln::fit::checkpoint::save(&path, [], &BTreeMap::new()).unwrap();
    assert!(kiln::fit::checkpoint::load(&path).unwrap().tensors.is_empty());
    let meta = BTreeMap::from([("model".to_string(), "m".to_string())]);
    kiln::fit::checkpoint::save(&path, [], &meta).unwrap();
    assert_eq!(kiln::fit::checkpoint::load(&path).unwrap().metadata, meta);
    let v = Value::from_vec(&[2], vec![1.0f32, 2.0]).unwrap();
    kiln::fit::checkpoint::save(&path, [("w", &v)], &meta).unwrap();
    let back = kiln::fit::checkpoint::load(&path).unwrap();
    assert_eq!((back.tensors["w"].clone(), back.metadata), (v, meta));
}

/// Found by the `.npy` fuzz target: an empty array whose other extents multiply past `isize`
/// (`(12222222222222222222, 0, 9)`) has no data bytes, so the size check passed, and building
/// the array panicked. It is now the "too large to address" error.
#[test]
fn an_empty_npy_with_huge_extents_is_an_error() {
    let dir = scratch("npy-huge-empty");
    for shape in ["(12222222222222222222, 0, 9)", "(0, 4611686018427387904, 4)", "(9223372036854775808, 0)"] {
        let path = dir.join("x.npy");
        std::fs::write(&path, npy(&format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"), &[]))
            .unwrap();
        let e = kiln::runtime::npy::read_any(&path).unwrap_err().to_string();
        assert!(e.contains("too large to address"), "{shape}: {e}");
    }
    // Empty arrays of sensible shapes still load.
    let path = dir.join("e.npy");
    std::fs::write(&path, npy("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 3), }", &[])).unwrap();
    assert_eq!(kiln::runtime::npy::read_any(&path).unwrap().shape(), &[0, 3]);
}
