//! The JIT backend against the interpreter: every zoo model's forward graph and training step
//! (fused and unfused), every elementwise op and cast per dtype, broadcasts, shapes of size 0
//! and 1, and non-row-major inputs. Floats agree within 1e-5 of the largest magnitude (the
//! kernels call the same scalar libm; sums may round differently), everything else exactly.

mod common;

use std::collections::HashMap;

use common::*;
use kiln::frontend::optim::Optimizer;
use kiln::ir::{DType, Graph, Value, interp, parse_graph};
use kiln::passes::fuse::Mode;
use kiln::runtime::jit::{Options, compile};

fn feeds(g: &Graph) -> HashMap<String, Value> {
    let mut f = kiln::ir::init::init_params(g, 3);
    for (i, (_, n)) in g.inputs().enumerate() {
        let r = pseudo(n.ty.numel(), 70 + i as u64);
        let v = match n.ty.dtype {
            DType::I32 => {
                let hi = if n.ty.rank() == 2 { 10000.0 } else { 2.0 };
                i32v(n.ty.dims(), &r.iter().map(|x| ((x + 1.0) / 2.0 * hi) as i32).collect::<Vec<_>>())
            }
            DType::I64 => i64v(n.ty.dims(), &r.iter().map(|x| (x * 50.0) as i64).collect::<Vec<_>>()),
            DType::Bool => boolv(n.ty.dims(), &r.iter().map(|x| *x > 0.0).collect::<Vec<_>>()),
            DType::F64 => f64v(n.ty.dims(), &r),
            DType::F32 => f32v(n.ty.dims(), &r.iter().map(|x| ((x + 1.0) / 2.0) as f32).collect::<Vec<_>>()),
        };
        f.insert(n.op.leaf_name().unwrap().to_string(), v);
    }
    f
}

fn agree(g: &Graph, f: &HashMap<String, Value>, mode: Mode) {
    let want = interp::run(g, f).unwrap();
    let exe = compile(g, Options { mode, ..Default::default() }).unwrap();
    let got = exe.run(f).unwrap();
    for ((o, w), v) in g.outputs().iter().zip(&want).zip(&got) {
        assert_eq!(w.ty(), v.ty(), "{}", o.name);
        let (wv, vv) = (w.to_f64_vec(), v.to_f64_vec());
        let scale = wv.iter().fold(1.0f64, |m, x| if x.is_finite() { m.max(x.abs()) } else { m });
        let tol = if w.dtype().is_float() { 1e-5 * scale } else { 0.0 };
        for (i, (a, b)) in wv.iter().zip(&vv).enumerate() {
            let ok = a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= tol;
            assert!(ok, "@{} {mode:?} output {} [{i}]: interpreter {a}, jit {b}", g.name(), o.name);
        }
    }
}

#[test]
fn zoo_models_forward_and_training_steps() {
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(2, DType::F32).unwrap() {
            let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph;
            for g in [&m.graph, &step] {
                let f = feeds(g);
                agree(g, &f, Mode::Fused);
                agree(g, &f, Mode::Unfused);
            }
        }
    }
}

#[test]
fn elementwise_ops_and_casts_for_every_dtype() {
    let floats = ["neg", "abs", "exp", "log", "sqrt", "recip", "sin", "cos", "tanh"];
    for dt in ["f32", "f64"] {
        for op in floats {
            let g = parse_graph(&op_fn(&format!("%x: {dt}[7]"), &format!("{op} %x"), &format!("{dt}[7]"))).unwrap();
            agree(&g, &feeds(&g), Mode::Fused);
        }
    }
    for dt in ["f32", "f64", "i32", "i64"] {
        for op in ["add", "sub", "mul", "max", "min"] {
            let g = parse_graph(&op_fn(
                &format!("%a: {dt}[3,5], %b: {dt}[3,5]"),
                &format!("{op} %a, %b"),
                &format!("{dt}[3,5]"),
            ))
            .unwrap();
            agree(&g, &feeds(&g), Mode::Fused);
        }
        for op in ["cmp_lt", "cmp_eq"] {
            let g =
                parse_graph(&op_fn(&format!("%a: {dt}[9], %b: {dt}[9]"), &format!("{op} %a, %b"), "bool[9]")).unwrap();
            agree(&g, &feeds(&g), Mode::Fused);
        }
        for to in ["f32", "f64", "i32", "i64", "bool"] {
            let g = parse_graph(&op_fn(&format!("%a: {dt}[6]"), "cast %a", &format!("{to}[6]"))).unwrap();
            agree(&g, &feeds(&g), Mode::Fused);
        }
        let g = parse_graph(&op_fn(
            &format!("%c: bool[4], %a: {dt}[4], %b: {dt}[4]"),
            "select %c, %a, %b",
            &format!("{dt}[4]"),
        ))
        .unwrap();
        agree(&g, &feeds(&g), Mode::Fused);
    }
    for dt in ["f32", "f64"] {
        for op in ["div", "pow"] {
            let g =
                parse_graph(&op_fn(&format!("%a: {dt}[5], %b: {dt}[5]"), &format!("{op} %a, %b"), &format!("{dt}[5]")))
                    .unwrap();
            agree(&g, &feeds(&g), Mode::Fused);
        }
    }
    // Casts of special values: NaN and out-of-range floats saturate like the interpreter.
    let g = parse_graph(&op_fn("%a: f32[5]", "cast %a", "i32[5]")).unwrap();
    let f = HashMap::from([("a".to_string(), f32v(&[5], &[f32::NAN, 3e10, -3e10, -1.7, 1.7]))]);
    agree(&g, &f, Mode::Fused);
    // Integer division stays with the runtime and reports division by zero.
    let g = parse_graph(&op_fn("%a: i32[2], %b: i32[2]", "div %a, %b", "i32[2]")).unwrap();
    let f = HashMap::from([("a".to_string(), i32v(&[2], &[1, 2])), ("b".to_string(), i32v(&[2], &[1, 0]))]);
    let e = compile(&g, Options::default()).unwrap().run(&f).unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
}

#[test]
fn fused_chains_with_broadcasts_and_odd_shapes() {
    let text = "func @t(%x: f32[3,1,5], %b: f32[5], %s: f32[]) -> (y: f32[3,4,5]) {\n  %3 = broadcast %x {dims=[0,1,2]} : f32[3,4,5]\n  %4 = broadcast %b {dims=[2]} : f32[3,4,5]\n  %5 = broadcast %s {dims=[]} : f32[3,4,5]\n  %6 = mul %3, %4 : f32[3,4,5]\n  %7 = add %6, %5 : f32[3,4,5]\n  %8 = tanh %7 : f32[3,4,5]\n  %9 = const 0.5 : f32[3,4,5]\n  %10 = max %8, %9 : f32[3,4,5]\n  return %10\n}\n";
    let g = parse_graph(text).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    let kernels: Vec<_> = exe.groups().filter_map(|(_, k)| k).collect();
    assert_eq!(
        kernels.len(),
        1,
        "one fused kernel:\n{}",
        kernels.iter().map(|k| k.kernel.to_string()).collect::<String>()
    );
    assert!(kernels[0].kernel.inputs.iter().any(|i| i.strides == vec![0, 0, 1]), "{}", kernels[0].kernel);
    agree(&g, &feeds(&g), Mode::Fused);
    for dims in ["[0]", "[1]", "[1,1]", "[0,3]", "[7,1]"] {
        let g =
            parse_graph(&op_fn(&format!("%a: f32{dims}, %b: f32{dims}"), "add %a, %b", &format!("f32{dims}"))).unwrap();
        agree(&g, &feeds(&g), Mode::Fused);
    }
    let g = parse_graph("func @t(%a: f64[]) -> (y: f64[]) {\n  %1 = exp %a : f64[]\n  return %1\n}\n").unwrap();
    agree(&g, &feeds(&g), Mode::Fused);
}

/// Reductions vectorize along the innermost axis (two accumulators, then one, then the
/// scalar tail) and across it (vector read-modify-write of the output row); comparisons feed
/// vector selects. Every inner extent around the 4- and 8-lane boundaries agrees with the
/// interpreter.
#[test]
fn vectorized_reductions_and_selects() {
    for n in [4, 5, 7, 8, 9, 11, 12, 15, 16, 17, 33] {
        let cases = [
            format!("%x: f32[3,{n}]|reduce_sum %x {{axes=[1]}}|f32[3]"),
            format!("%x: f32[3,{n}]|reduce_max %x {{axes=[1]}}|f32[3]"),
            format!("%x: f32[{n}]|reduce_sum %x {{axes=[0]}}|f32[]"),
            format!("%x: f32[6,{n}]|reduce_sum %x {{axes=[0]}}|f32[{n}]"),
            format!("%x: f32[6,{n}]|reduce_max %x {{axes=[0]}}|f32[{n}]"),
        ];
        for case in &cases {
            let parts: Vec<&str> = case.split('|').collect();
            let g = parse_graph(&op_fn(parts[0], parts[1], parts[2])).unwrap();
            let exe = compile(&g, Options::default()).unwrap();
            assert!(exe.groups().filter_map(|(_, k)| k).all(|k| k.vectorized), "{case} should vectorize");
            agree(&g, &feeds(&g), Mode::Fused);
        }
        // exp(x - 0.5) summed per row, and relu's gradient mask, fused.
        let text = format!(
            "func @t(%x: f32[3,{n}], %g: f32[3,{n}]) -> (s: f32[3], m: f32[3,{n}]) {{\n  %2 = const 0.5 : f32[3,{n}]\n  %3 = sub %x, %2 : f32[3,{n}]\n  %4 = exp %3 : f32[3,{n}]\n  %5 = reduce_sum %4 {{axes=[1]}} : f32[3]\n  %6 = cmp_lt %2, %x : bool[3,{n}]\n  %7 = const 0.0 : f32[3,{n}]\n  %8 = select %6, %g, %7 : f32[3,{n}]\n  return %5, %8\n}}\n"
        );
        let g = parse_graph(&text).unwrap();
        let exe = compile(&g, Options::default()).unwrap();
        assert!(exe.groups().filter_map(|(_, k)| k).all(|k| k.vectorized), "n={n}: {exe:?}");
        agree(&g, &feeds(&g), Mode::Fused);
    }
}

/// On a host with FMA, `x*a + b` (the product used once) becomes one fused multiply-add; a
/// product used twice is not contracted. Both agree with the interpreter.
#[test]
fn multiply_adds_are_contracted_on_fma_hosts() {
    let text = "func @t(%x: f32[9], %a: f32[9], %b: f32[9]) -> (y: f32[9], z: f32[9]) {\n  %3 = mul %x, %a : f32[9]\n  %4 = add %3, %b : f32[9]\n  %5 = mul %x, %b : f32[9]\n  %6 = add %5, %5 : f32[9]\n  return %4, %6\n}\n";
    let g = parse_graph(text).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    let clif: Vec<&str> = exe.groups().filter_map(|(_, k)| k).map(|k| k.clif.as_str()).collect();
    assert_eq!(clif.len(), 2);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        assert!(clif[0].contains(" = fma "), "{}", clif[0]);
        assert!(!clif[1].contains(" = fma "), "{}", clif[1]);
    }
    agree(&g, &feeds(&g), Mode::Fused);
}

/// Loop nests collapse: unit axes vanish and axes every buffer steps through as one merge,
/// so pooling-shaped kernels (`[n,c,h,2,w,2]`) become one long vectorized loop; a reduction
/// keeps its reduced and kept axes apart. Results agree with the interpreter.
#[test]
fn loop_nests_collapse() {
    let g = parse_graph(&op_fn("%a: f32[2,3,1,4,5], %b: f32[2,3,1,4,5]", "mul %a, %b", "f32[2,3,1,4,5]")).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    let k = exe.groups().find_map(|(_, k)| k).unwrap();
    assert_eq!(k.kernel.space, vec![120]);
    assert!(k.vectorized);
    agree(&g, &feeds(&g), Mode::Fused);
    let g = parse_graph(&op_fn("%a: f32[4,1,3,5]", "reduce_sum %a {axes=[2,3]}", "f32[4,1]")).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    let k = exe.groups().find_map(|(_, k)| k).unwrap();
    assert_eq!((k.kernel.space.clone(), k.kernel.reduce.clone().unwrap().1), (vec![4, 15], vec![1]));
    agree(&g, &feeds(&g), Mode::Fused);
    // A broadcast along the middle axis keeps the axes apart.
    let text = "func @t(%a: f32[3,5], %b: f32[3,4,5]) -> (y: f32[3,4,5]) {\n  %2 = broadcast %a {dims=[0,2]} : f32[3,4,5]\n  %3 = add %2, %b : f32[3,4,5]\n  return %3\n}\n";
    let g = parse_graph(text).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    assert_eq!(exe.groups().find_map(|(_, k)| k).unwrap().kernel.space, vec![3, 4, 5]);
    agree(&g, &feeds(&g), Mode::Fused);
}

/// `pad` and `concat` run as runtime block copies, for every dtype, every axis and fill
/// values that are and are not zero, exactly as the interpreter computes them; slices and
/// permutes read through strides inside kernels.
#[test]
fn movement_ops_agree_exactly() {
    for dt in ["f32", "f64", "i32", "i64", "bool"] {
        let cases = [
            format!("%x: {dt}[3,4]|pad %x {{low=[1,0], high=[2,3], value=1.0}}|{dt}[6,7]"),
            format!("%x: {dt}[2,3,4]|pad %x {{low=[0,1,2], high=[1,0,1], value=0.0}}|{dt}[3,4,7]"),
            format!("%x: {dt}[5]|pad %x {{low=[3], high=[0], value=0.0}}|{dt}[8]"),
            format!("%x: {dt}[2,3], %y: {dt}[2,1], %z: {dt}[2,4]|concat %x, %y, %z {{axis=1}}|{dt}[2,8]"),
            format!("%x: {dt}[2,3], %y: {dt}[1,3]|concat %x, %y {{axis=0}}|{dt}[3,3]"),
            format!("%x: {dt}[2,3,4]|slice %x {{start=[0,1,1], stop=[2,3,4], step=[1,1,2]}}|{dt}[2,2,2]"),
            format!("%x: {dt}[2,3,4]|permute %x {{perm=[2,0,1]}}|{dt}[4,2,3]"),
        ];
        for case in &cases {
            let parts: Vec<&str> = case.split('|').collect();
            let g = parse_graph(&op_fn(parts[0], parts[1], parts[2])).unwrap_or_else(|e| panic!("{case}: {e}"));
            let f = feeds(&g);
            let want = interp::run(&g, &f).unwrap();
            for mode in [Mode::Fused, Mode::Unfused] {
                let got = compile(&g, Options { mode, ..Default::default() }).unwrap().run(&f).unwrap();
                assert_eq!(got, want, "{case} {mode:?}");
            }
        }
    }
}

/// Pooling-shaped kernels (windows of 2 innermost) vectorize: a max-reduce over the window
/// axes moves the output's contiguous kept axis innermost (its taps read at a stride of 2: two
/// overlapping vector loads and one shuffle), and the elementwise gradient mask
/// (`cast(x == broadcast(max))`) reads the same way and writes with a stride of 2 lane by lane.
/// Both agree with the interpreter, on 1 and 2 threads.
#[test]
fn pooling_shaped_kernels_vectorize() {
    let text = "func @t(%x: f32[4,3,6,2,10,2]) -> (m: f32[4,3,6,10], g: f32[4,3,6,2,10,2]) {\n  %1 = reduce_max %x {axes=[3,5]} : f32[4,3,6,10]\n  %2 = broadcast %1 {dims=[0,1,2,4]} : f32[4,3,6,2,10,2]\n  %3 = cmp_eq %x, %2 : bool[4,3,6,2,10,2]\n  %4 = cast %3 : f32[4,3,6,2,10,2]\n  return %1, %4\n}\n";
    let g = parse_graph(text).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    let kernels: Vec<_> = exe.groups().filter_map(|(_, k)| k).collect();
    assert_eq!(kernels.len(), 2);
    for k in &kernels {
        assert!(k.vectorized, "{}", k.kernel);
        assert_eq!(k.kernel.space.last(), Some(&10), "{}", k.kernel);
    }
    let f = feeds(&g);
    agree(&g, &f, Mode::Fused);
    let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
    assert_eq!(exe.run(&f).unwrap(), two);
}

/// Transposes run a tile at a time (`Kernel::block_transpose`): a permute whose input steps
/// through the output's rows 16 or more elements apart, over more than 32 KiB a row, is cut
/// into 16×16 (or 8×8) tiles when both axes divide, and stays a plain nest otherwise. Every case, with an elementwise op fused
/// and every dtype, gives the interpreter's values exactly, on 1 and 2 threads (the C tier
/// renders the same nest: `tests/tier2.rs` runs the zoo steps' transposes through it).
#[test]
fn transposes_run_in_tiles() {
    let cases = [
        ("[128,512]", "[512,128]", "[1,0]", Some(16)),
        ("[40,1000]", "[1000,40]", "[1,0]", Some(8)),
        ("[3,64,2048]", "[3,2048,64]", "[0,2,1]", Some(16)),
        ("[512,5,48]", "[48,5,512]", "[2,1,0]", Some(16)),
        ("[30,50]", "[50,30]", "[1,0]", None),
        ("[32,8]", "[8,32]", "[1,0]", None),
        ("[2,16,4,32]", "[2,4,32,16]", "[0,2,3,1]", None),
    ];
    for dt in ["f32", "f64", "i32", "bool"] {
        for (from, to, perm, tile) in cases {
            // `bool` has no unary op: the permute alone, stored.
            let (op, last) =
                if dt == "bool" { (String::new(), "%1") } else { (format!("  %2 = neg %1 : {dt}{to}\n"), "%2") };
            let text = format!(
                "func @t(%x: {dt}{from}) -> (y: {dt}{to}) {{\n  %1 = permute %x {{perm={perm}}} : {dt}{to}\n{op}  return {last}\n}}\n"
            );
            let g = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let exe = compile(&g, Options::default()).unwrap();
            let k = exe.groups().find_map(|(_, k)| k).unwrap();
            match tile {
                Some(b) => assert_eq!(&k.kernel.space[k.kernel.space.len() - 2..], &[b, b], "{text}{}", k.kernel),
                None => assert!(k.kernel.space.len() < 4, "{text}{}", k.kernel),
            }
            let f = feeds(&g);
            let want = interp::run(&g, &f).unwrap();
            assert_eq!(exe.run(&f).unwrap(), want, "{text}");
            assert_eq!(compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap(), want, "{text}");
        }
    }
}

/// Window reductions keep their row of outputs in registers across the window
/// (`Kernel::window_axes`, `codegen/src/cpu/window.rs`): max-pools with rows of 1 to 17
/// outputs (vectors and scalar tails), with NaN, ±0 and ±∞ among the inputs, give the
/// interpreter's values exactly; sums over windows and columns agree within rounding; on 1
/// and 2 threads the same bits.
#[test]
fn window_reductions_keep_their_row_in_registers() {
    for row in [1usize, 3, 4, 5, 8, 14, 17] {
        for dt in ["f32", "f64", "i32"] {
            let text = format!(
                "func @t(%x: {dt}[6,3,2,{row},2]) -> (m: {dt}[6,3,{row}], s: {dt}[{row}]) {{\n  %1 = reduce_max %x {{axes=[2,4]}} : {dt}[6,3,{row}]\n  %2 = reduce_sum %1 {{axes=[0,1]}} : {dt}[{row}]\n  return %1, %2\n}}\n"
            );
            let g = parse_graph(&text).unwrap();
            let exe = compile(&g, Options::default()).unwrap();
            let windows = exe.groups().filter_map(|(_, k)| k).filter(|k| k.kernel.window_axes().is_some()).count();
            // Rows shorter than a vector keep the window innermost (`Kernel::interchange`).
            assert!(windows >= usize::from(row >= 4), "{text}");
            let mut f = feeds(&g);
            if dt == "f32" {
                let n = 6 * 3 * 2 * row * 2;
                let special = [f32::NAN, -0.0, 0.0, f32::INFINITY, f32::NEG_INFINITY];
                let x: Vec<f32> = pseudo(n, 9)
                    .iter()
                    .enumerate()
                    .map(|(i, v)| if i % 7 == 3 { special[i % special.len()] } else { *v as f32 })
                    .collect();
                f.insert("x".into(), f32v(&[6, 3, 2, row, 2], &x));
            }
            let want = interp::run(&g, &f).unwrap();
            let got = exe.run(&f).unwrap();
            let (w, v) = (want[0].to_f64_vec(), got[0].to_f64_vec());
            for (i, (a, b)) in w.iter().zip(&v).enumerate() {
                assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{text}[{i}]: {a} vs {b}");
            }
            agree(&g, &f, Mode::Fused);
            let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
            for (a, b) in got.iter().zip(&two) {
                let same = a
                    .to_f64_vec()
                    .iter()
                    .zip(b.to_f64_vec())
                    .all(|(x, y)| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()));
                assert!(same, "{text}: 1 and 2 threads differ");
            }
        }
    }
}

/// Big reductions that keep their outer axis (pooling, row sums) run in ranges on several
/// threads, each range initializing only its own outputs; reductions over the outer axis run
/// whole. Both agree with the interpreter and with one thread, bit for bit.
#[test]
fn reductions_keeping_the_outer_axis_split_over_threads() {
    let text = "func @t(%x: f32[64,6,14,2,14,2]) -> (m: f32[64,6,14,14], s: f32[64,6], c: f32[6]) {\n  %1 = reduce_max %x {axes=[3,5]} : f32[64,6,14,14]\n  %2 = reduce_sum %x {axes=[2,3,4,5]} : f32[64,6]\n  %3 = reduce_sum %x {axes=[0,2,3,4,5]} : f32[6]\n  return %1, %2, %3\n}\n";
    let g = parse_graph(text).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    let splits: Vec<bool> = exe.groups().filter_map(|(_, k)| k).map(|k| k.kernel.splits_outer()).collect();
    assert_eq!(splits.iter().filter(|s| **s).count(), 2, "max and row sums split, the column sum does not");
    let f = feeds(&g);
    agree(&g, &f, Mode::Fused);
    let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
    assert_eq!(exe.run(&f).unwrap(), two);
}

#[test]
fn non_row_major_inputs_are_read_correctly() {
    let g = parse_graph(&op_fn("%a: f32[3,2], %b: f32[3,2]", "sub %a, %b", "f32[3,2]")).unwrap();
    let base = ndarray::Array2::from_shape_vec((2, 3), vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    let transposed = Value::F32(base.t().to_owned().into_dyn());
    let view = Value::F32(base.reversed_axes().into_dyn());
    assert!(!matches!(&view, Value::F32(a) if a.is_standard_layout()));
    let f = HashMap::from([("a".to_string(), view), ("b".to_string(), transposed)]);
    let out = compile(&g, Options::default()).unwrap().run(&f).unwrap();
    assert_eq!(out[0].to_f64_vec(), vec![0.0; 6]);
}

#[test]
fn xor_trains_on_the_jit() {
    use kiln::runtime::exec::Backend;
    use kiln::runtime::train::TrainSession;
    let model = kiln::zoo::xor_mlp(4).unwrap();
    let step = kiln::train::train_step(&model, &Optimizer::adam()).unwrap();
    let batch = HashMap::from([
        ("x".to_string(), f32v(&[4, 2], &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])),
        ("labels".to_string(), f32v(&[4, 1], &[0.0, 1.0, 1.0, 0.0])),
    ]);
    let mut jit = TrainSession::with_backend(step.clone(), 1, Backend::Jit).unwrap();
    let mut reference = TrainSession::interpreted(step, 1).unwrap();
    for i in 0..300 {
        let (a, b) = (jit.step(&batch, 0.1).unwrap(), reference.step(&batch, 0.1).unwrap());
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "step {i}: jit loss {a}, interpreter {b}");
    }
    let mut feeds: HashMap<String, Value> = jit.values().clone();
    feeds.retain(|k, _| model.graph.leaf(k).is_some());
    feeds.insert("x".into(), batch["x"].clone());
    let probs = interp::run(&model.graph, &feeds).unwrap()[0].to_f64_vec();
    let predicted: Vec<bool> = probs.iter().map(|p| *p > 0.5).collect();
    assert_eq!(predicted, vec![false, true, true, false], "{probs:?}");
}

#[test]
fn kernel_partition_snapshots() {
    for name in ["mnist_mlp", "lenet5"] {
        let m = (kiln::zoo::entry(name).unwrap().build)(2, DType::F32).unwrap().remove(0);
        let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph;
        let exe = kiln::compile(&step, kiln::Fusion::Fused).unwrap();
        let text = common::partition::partition_text(&exe);
        insta::assert_snapshot!(format!("kernels_{name}_train_sgd"), text);
    }
}

/// The inline `exp` and `tanh` of vectorized `f32` kernels against `f64` libm: `exp` within
/// 5e-7 relative over [-87, 88], `tanh` within 5e-7 absolute over [-20, 20]; both on the
/// vector lanes and the scalar tail (an odd length has both).
#[test]
fn inline_transcendentals_are_accurate() {
    let n = 100_003;
    for (op, lo, hi) in [("exp", -87.0f64, 88.0f64), ("tanh", -20.0, 20.0)] {
        let g = parse_graph(&op_fn(&format!("%x: f32[{n}]"), &format!("{op} %x"), &format!("f32[{n}]"))).unwrap();
        let exe = compile(&g, Options::default()).unwrap();
        assert!(exe.groups().filter_map(|(_, k)| k).all(|k| k.vectorized), "{op} should vectorize");
        let xs: Vec<f32> = (0..n).map(|i| (lo + (hi - lo) * i as f64 / (n - 1) as f64) as f32).collect();
        let out = exe.run(&HashMap::from([("x".to_string(), f32v(&[n], &xs))])).unwrap()[0].to_f64_vec();
        let mut worst = 0.0f64;
        for (x, y) in xs.iter().zip(&out) {
            let x = f64::from(*x);
            let err = if op == "exp" { (y - x.exp()).abs() / x.exp() } else { (y - x.tanh()).abs() };
            worst = worst.max(err);
        }
        assert!(worst < 5e-7, "{op}: worst error {worst:e}");
    }
    // NaN propagates; huge arguments saturate instead of overflowing.
    let g = parse_graph(&op_fn("%x: f32[5]", "tanh %x", "f32[5]")).unwrap();
    let out = compile(&g, Options::default())
        .unwrap()
        .run(&HashMap::from([("x".to_string(), f32v(&[5], &[f32::NAN, 1e30, -1e30, 0.0, 1e-3]))]))
        .unwrap();
    let v = out[0].to_f64_vec();
    assert!(v[0].is_nan() && v[1] == 1.0 && v[2] == -1.0 && v[3] == 0.0 && (v[4] - 1e-3).abs() < 1e-6, "{v:?}");
}

/// The inline `sin` and `cos` of vectorized `f32` kernels against `f64` libm: within 5e-7
/// absolute over [-8192, 8192] (vector lanes and scalar tail); larger arguments, mixed into a
/// vector with small ones, take libm's value; NaN and ±∞ give NaN.
#[test]
fn inline_sin_cos_are_accurate() {
    let n = 400_003;
    for op in ["sin", "cos"] {
        let g = parse_graph(&op_fn(&format!("%x: f32[{n}]"), &format!("{op} %x"), &format!("f32[{n}]"))).unwrap();
        let exe = compile(&g, Options::default()).unwrap();
        assert!(exe.groups().filter_map(|(_, k)| k).all(|k| k.vectorized), "{op} should vectorize");
        let xs: Vec<f32> = (0..n).map(|i| (-8192.0 + 16384.0 * i as f64 / (n - 1) as f64) as f32).collect();
        let out = exe.run(&HashMap::from([("x".to_string(), f32v(&[n], &xs))])).unwrap()[0].to_f64_vec();
        let f = |x: f64| if op == "sin" { x.sin() } else { x.cos() };
        let worst = xs.iter().zip(&out).map(|(x, y)| (y - f(f64::from(*x))).abs()).fold(0.0f64, f64::max);
        println!("{op}: worst error {worst:e}");
        assert!(worst < 5e-7, "{op}: worst error {worst:e}");
        let specials = [1e6, 0.5, f32::NAN, f32::INFINITY, -3e30, 0.0, -0.25];
        let g = parse_graph(&op_fn("%x: f32[7]", &format!("{op} %x"), "f32[7]")).unwrap();
        let v = compile(&g, Options::default())
            .unwrap()
            .run(&HashMap::from([("x".to_string(), f32v(&[7], &specials))]))
            .unwrap()[0]
            .to_f64_vec();
        for (x, y) in specials.iter().zip(&v) {
            let want = f(f64::from(*x));
            let ok = if want.is_nan() { y.is_nan() } else { (y - want).abs() < 5e-7 };
            assert!(ok, "{op}({x}) = {y}, want {want}");
        }
    }
}

/// The memory plan never lets two live buffers share bytes, and reuse pays on real models.
#[test]
fn memory_plans_are_valid_and_save_memory() {
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(8, DType::F32).unwrap() {
            let step = kiln::train::train_step(&m, &Optimizer::adam()).unwrap().graph;
            let exe = compile(&step, Options::default()).unwrap();
            let plan = exe.memory_plan();
            assert!(plan.is_valid(), "@{}", step.name());
            assert!(plan.placements.iter().all(|p| p.offset % kiln::passes::plan::ALIGN == 0));
            assert!(
                plan.peak_bytes < plan.naive_bytes,
                "@{}: peak {} naive {}",
                step.name(),
                plan.peak_bytes,
                plan.naive_bytes
            );
        }
    }
    let exe = compile(
        &kiln::train::train_step(&kiln::zoo::lenet5(64).unwrap(), &Optimizer::sgd()).unwrap().graph,
        Options::default(),
    )
    .unwrap();
    let plan = exe.memory_plan();
    println!("lenet5 SGD step, batch 64: peak {} bytes, naive {} bytes", plan.peak_bytes, plan.naive_bytes);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

    /// Random graphs from the optimizer's generator agree between the JIT and the interpreter.
    #[test]
    fn random_graphs_agree(ops in proptest::collection::vec((proptest::prelude::any::<u8>(), proptest::prelude::any::<usize>(), proptest::prelude::any::<usize>()), 1..14)) {
        let g = random_graph(&ops);
        let mut f = HashMap::new();
        for (i, (_, n)) in g.inputs().enumerate() {
            let r: Vec<f64> = pseudo(n.ty.numel(), 90 + i as u64).iter().map(|x| x * 0.5 + 1.0).collect();
            f.insert(n.op.leaf_name().unwrap().to_string(), f64v(n.ty.dims(), &r));
        }
        agree(&g, &f, Mode::Fused);
        agree(&g, &f, Mode::Unfused);
    }
}

fn data_ptr(v: &Value) -> usize {
    match v {
        Value::F32(a) => a.as_ptr() as usize,
        Value::F64(a) => a.as_ptr() as usize,
        Value::I32(a) => a.as_ptr() as usize,
        Value::I64(a) => a.as_ptr() as usize,
        Value::Bool(a) => a.as_ptr() as usize,
    }
}

/// Every parameter and optimizer-state update of an Adam step qualifies for in-place
/// computation, the moments' updates as side outputs of their parameter's update kernel;
/// `run_updating` writes each into its input's own buffer and returns exactly what `run`
/// computes into fresh buffers. An update whose input is read after it is refused.
#[test]
fn training_updates_run_in_place() {
    for model in [kiln::zoo::mnist_mlp(8).unwrap(), kiln::zoo::lenet5(2).unwrap()] {
        let step = kiln::train::train_step(&model, &Optimizer::adam()).unwrap();
        let g = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap().run(&step.graph).unwrap().0;
        let mut exe = compile(&g, Options::default()).unwrap();
        let qualified = exe.update_in_place(&step.updates);
        assert_eq!(qualified.len(), step.updates.len(), "@{}: only {qualified:?} qualified", g.name());
        let sides: Vec<kiln::ir::NodeId> = exe.groups().flat_map(|(gr, _)| gr.side_outputs.clone()).collect();
        assert!(g.outputs().iter().any(|o| sides.contains(&o.value)), "@{}: no update is a side output", g.name());
        let mut f = feeds(&g);
        let want = exe.run(&f).unwrap();
        let before: HashMap<String, usize> = step.updates.iter().map(|(_, i)| (i.clone(), data_ptr(&f[i]))).collect();
        let mut got = Vec::new();
        exe.run_updating(&mut f, &mut got).unwrap();
        assert_eq!(got, want, "@{}", g.name());
        for (o, i) in &step.updates {
            let pos = g.outputs().iter().position(|p| &p.name == o).unwrap();
            assert!(!f.contains_key(i), "{i} moved into the run");
            assert_eq!(data_ptr(&got[pos]), before[i], "{o} written over {i}");
        }
    }
    // y = x + 1 may not overwrite x when another output reads x after it.
    let text = "func @t(%x: f32[8]) -> (y: f32[8], z: f32[]) {\n  %1 = const 1.0 : f32[8]\n  %2 = add %x, %1 : f32[8]\n  %3 = reduce_sum %x {axes=[0]} : f32[]\n  return %2, %3\n}\n";
    let g = parse_graph(text).unwrap();
    let mut exe = compile(&g, Options::default()).unwrap();
    assert!(exe.update_in_place(&[("y".into(), "x".into())]).is_empty());
}

/// A `reshape` shares its source's bytes: read by a kernel, by a GEMM, by a reference op
/// and returned as an output (beside its source), it gives the interpreter's values; the plan
/// gives it no bytes of its own and keeps its source alive for its readers. An update whose
/// input is read later through a reshape is not done in place.
#[test]
fn reshapes_share_their_source_buffer() {
    let text = "func @t(%x: f32[4,6], %w: f32[3,5]) -> (a: f32[4,6], b: f32[2,3,4], c: f32[8,5], d: f32[3,2,4]) {\n  %2 = exp %x : f32[4,6]\n  %3 = reshape %2 : f32[2,3,4]\n  %4 = reshape %3 : f32[8,3]\n  %5 = matmul %4, %w : f32[8,5]\n  %6 = permute %3 {perm=[1,0,2]} : f32[3,2,4]\n  return %2, %3, %5, %6\n}\n";
    let g = parse_graph(text).unwrap();
    agree(&g, &feeds(&g), Mode::Fused);
    agree(&g, &feeds(&g), Mode::Unfused);
    let exe = compile(&g, Options::default()).unwrap();
    let plan = exe.memory_plan();
    assert!(plan.is_valid());
    let aliases: Vec<_> = plan.placements.iter().filter(|p| p.alias_of.is_some()).collect();
    assert_eq!(aliases.len(), 2, "{plan:?}");
    assert!(aliases.iter().all(|p| p.bytes == 0 && p.alias_of == Some(kiln::ir::NodeId::from_index(2))));
    let text = "func @t(%p: f32[2,3], %g: f32[2,3]) -> (p2: f32[2,3], s: f32[3,2]) {\n  %2 = sub %p, %g : f32[2,3]\n  %3 = reshape %p : f32[3,2]\n  %4 = exp %3 : f32[3,2]\n  return %2, %4\n}\n";
    let g = parse_graph(text).unwrap();
    let mut exe = compile(&g, Options::default()).unwrap();
    let order: Vec<String> = exe.groups().map(|(grp, _)| g.node(grp.root()).op.name().to_string()).collect();
    assert_eq!(order, ["sub", "reshape", "exp"]);
    assert!(exe.update_in_place(&[("p2".into(), "p".into())]).is_empty(), "p is read after the update");
}

/// A run that fails after an in-place update has run hands every moved input back to the
/// caller (holding its update), with the error.
#[test]
fn failed_in_place_runs_give_the_inputs_back() {
    let text = "func @t(%p: f32[4], %g: f32[4], %table: f32[3,2], %idx: i32[2]) -> (p2: f32[4], rows: f32[2,2]) {\n  %4 = sub %p, %g : f32[4]\n  %5 = gather %table, %idx {axis=0} : f32[2,2]\n  return %4, %5\n}\n";
    let g = parse_graph(text).unwrap();
    let mut exe = compile(&g, Options::default()).unwrap();
    assert_eq!(exe.update_in_place(&[("p2".into(), "p".into())]), vec!["p2".to_string()]);
    let mut f = HashMap::from([
        ("p".to_string(), f32v(&[4], &[1.0, 2.0, 3.0, 4.0])),
        ("g".to_string(), f32v(&[4], &[0.5, 0.5, 0.5, 0.5])),
        ("table".to_string(), f32v(&[3, 2], &[0.0; 6])),
        ("idx".to_string(), i32v(&[2], &[0, 7])),
    ]);
    let mut out = Vec::new();
    let err = exe.run_updating(&mut f, &mut out).unwrap_err();
    assert!(err.to_string().contains("out of range"), "{err}");
    assert!(f.contains_key("p"), "the moved parameter is back");
    assert_eq!(f["p"].to_f64_vec().len(), 4);
}

#[test]
fn compile_cache_hits_for_equal_graphs() {
    let a = kiln::zoo::mnist_mlp(4).unwrap().graph;
    let b = kiln::zoo::mnist_mlp(4).unwrap().graph;
    let c = kiln::zoo::mnist_mlp(8).unwrap().graph;
    let (ea, eb) = (
        kiln::compile_cached(&a, kiln::Fusion::Fused).unwrap(),
        kiln::compile_cached(&b, kiln::Fusion::Fused).unwrap(),
    );
    assert!(std::rc::Rc::ptr_eq(&ea, &eb), "an equal graph reuses the compiled code");
    let ec = kiln::compile_cached(&c, kiln::Fusion::Fused).unwrap();
    assert!(!std::rc::Rc::ptr_eq(&ea, &ec), "another batch size is another graph");
    let eu = kiln::compile_cached(&a, kiln::Fusion::Unfused).unwrap();
    assert!(!std::rc::Rc::ptr_eq(&ea, &eu));
}

/// The inline `ln` of vectorized `f32` kernels against `f64` libm over every magnitude of
/// positive float, subnormals included: absolute error within 3e-7 · max(1, |ln x|).
#[test]
fn inline_log_is_accurate() {
    let n = 200_001;
    let g = parse_graph(&op_fn(&format!("%x: f32[{n}]"), "log %x", &format!("f32[{n}]"))).unwrap();
    let exe = compile(&g, Options::default()).unwrap();
    assert!(exe.groups().filter_map(|(_, k)| k).all(|k| k.vectorized));
    // Log-spaced from 1e-44 (subnormal) to 3e38, plus values near 1.
    let mut xs: Vec<f32> =
        (0..n - 1000).map(|i| (10f64.powf(-44.0 + 82.4 * i as f64 / (n - 1001) as f64)) as f32).collect();
    xs.extend((0..1000).map(|i| 0.999 + 0.002 * i as f32 / 1000.0));
    let out = exe.run(&HashMap::from([("x".to_string(), f32v(&[n], &xs))])).unwrap()[0].to_f64_vec();
    let mut worst = 0.0f64;
    for (x, y) in xs.iter().zip(&out) {
        let want = f64::from(*x).ln();
        worst = worst.max((y - want).abs() / want.abs().max(1.0));
    }
    assert!(worst < 3e-7, "log: worst scaled error {worst:e}");
    let g = parse_graph(&op_fn("%x: f32[6]", "log %x", "f32[6]")).unwrap();
    let specials = [0.0, -1.0, f32::INFINITY, f32::NAN, 1.0, -0.0];
    let v = compile(&g, Options::default())
        .unwrap()
        .run(&HashMap::from([("x".to_string(), f32v(&[6], &specials))]))
        .unwrap()[0]
        .to_f64_vec();
    assert!(
        v[0] == f64::NEG_INFINITY
            && v[1].is_nan()
            && v[2] == f64::INFINITY
            && v[3].is_nan()
            && v[4] == 0.0
            && v[5] == f64::NEG_INFINITY,
        "{v:?}"
    );
}

/// Splitting big kernels over threads gives bit-identical results (every element runs the
/// same code), for even and uneven splits of the outer axis.
#[test]
fn threaded_kernels_match_single_threaded() {
    for dims in ["[131075]", "[3,50001]", "[70000,2]"] {
        let text = format!(
            "func @t(%a: f32{dims}, %b: f32{dims}) -> (y: f32{dims}) {{\n  %2 = mul %a, %b : f32{dims}\n  %3 = tanh %2 : f32{dims}\n  %4 = add %3, %a : f32{dims}\n  return %4\n}}\n"
        );
        let g = parse_graph(&text).unwrap();
        let f = feeds(&g);
        let one = compile(&g, Options::default()).unwrap().run(&f).unwrap();
        let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
        let three = compile(&g, Options::default()).unwrap().with_threads(3).run(&f).unwrap();
        assert_eq!(one, two, "{dims}");
        assert_eq!(one, three, "{dims}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: mixed::cases(96), ..Default::default() })]

    /// Graphs over every dtype, with every op kind followed by every cast (`common::mixed`),
    /// agree between the JIT, fused and unfused, and the interpreter.
    #[test]
    fn mixed_dtype_graphs_agree(steps in proptest::collection::vec((0u8..8, 0usize..64, 0usize..64, proptest::prelude::any::<u8>()), 1..10)) {
        let (g, text) = mixed::mixed_graph(&steps);
        let feeds = mixed::mixed_inputs(steps.len() as u64);
        let want = interp::run(&g, &feeds).unwrap_or_else(|e| panic!("{e}\n{text}"));
        for mode in [Mode::Fused, Mode::Unfused] {
            let exe = compile(&g, Options { mode, ..Default::default() }).unwrap_or_else(|e| panic!("{e}\n{text}"));
            let got = exe.run(&feeds).unwrap_or_else(|e| panic!("{mode:?}: {e}\n{text}"));
            mixed::assert_same(&format!("jit {mode:?}"), &text, &["out", "mid"], &got, &want);
        }
    }

    /// The same graphs on two threads with every window of independent steps running at the
    /// same time, however small its steps: the same bytes as one thread.
    #[test]
    fn overlapping_steps_give_one_threads_bytes(steps in proptest::collection::vec((0u8..8, 0usize..64, 0usize..64, proptest::prelude::any::<u8>()), 1..10)) {
        let (g, text) = mixed::mixed_graph(&steps);
        let feeds = mixed::mixed_inputs(steps.len() as u64);
        for mode in [Mode::Fused, Mode::Unfused] {
            let options = Options { mode, ..Default::default() };
            let one = compile(&g, options).unwrap().run(&feeds);
            let two = compile(&g, options).unwrap().with_threads(2).with_overlap_min_work(0);
            let got = two.run(&feeds);
            match (one, got) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b, "{:?}\n{}", mode, text),
                (Err(a), Err(b)) => proptest::prop_assert_eq!(a.to_string(), b.to_string(), "{}", text),
                (a, b) => proptest::prop_assert!(false, "one thread {:?}, two {:?}\n{}", a.is_ok(), b.is_ok(), text),
            }
        }
    }
}
