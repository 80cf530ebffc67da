//! Every op on the reference interpreter: small hand-checked cases for each dtype it accepts.

mod common;

use common::*;
use kiln::ir::{DType, InterpError, Value};

fn vals(v: &Value) -> Vec<f64> {
    v.to_f64_vec()
}

#[test]
fn const_splats_every_dtype() {
    for (ty, lit, want) in [
        ("f32[2]", "1.5", vec![1.5, 1.5]),
        ("f64[2]", "-2.25", vec![-2.25, -2.25]),
        ("i32[2]", "7.0", vec![7.0, 7.0]),
        ("i64[2]", "-3.0", vec![-3.0, -3.0]),
        ("bool[2]", "1.0", vec![1.0, 1.0]),
    ] {
        let v = run1(&op_fn("", &format!("const {lit}"), ty), &[]);
        assert_eq!(vals(&v), want, "{ty}");
    }
    let inf = run1(&op_fn("", "const -inf", "f32[1]"), &[]);
    assert_eq!(vals(&inf), vec![f64::NEG_INFINITY]);
}

#[test]
fn iota_counts_along_its_axis() {
    for ty in ["f32", "f64", "i32", "i64"] {
        let v = run1(&op_fn("", "iota {axis=1}", &format!("{ty}[2,3]")), &[]);
        assert_eq!(vals(&v), vec![0.0, 1.0, 2.0, 0.0, 1.0, 2.0], "{ty}");
        let v = run1(&op_fn("", "iota {axis=0}", &format!("{ty}[2,3]")), &[]);
        assert_eq!(vals(&v), vec![0.0, 0.0, 0.0, 1.0, 1.0, 1.0], "{ty}");
    }
}

#[test]
fn rng_is_deterministic_per_seed_and_stream() {
    let seed = |s: i64| ("s", i64v(&[], &[s]));
    for ty in ["f32", "f64"] {
        let text = |stream: u32| {
            op_fn("%s: i64[]", &format!("rng %s {{dist=uniform, stream={stream}}}"), &format!("{ty}[1000]"))
        };
        let a = vals(&run1(&text(0), &[seed(7)]));
        assert_eq!(a, vals(&run1(&text(0), &[seed(7)])), "same seed and stream, same numbers");
        assert_ne!(a, vals(&run1(&text(1), &[seed(7)])), "another stream differs");
        assert_ne!(a, vals(&run1(&text(0), &[seed(8)])), "another seed differs");
        assert!(a.iter().all(|&x| (0.0..1.0).contains(&x)));
        let mean = a.iter().sum::<f64>() / a.len() as f64;
        assert!((mean - 0.5).abs() < 0.05, "uniform mean {mean}");
        let n = vals(&run1(&op_fn("%s: i64[]", "rng %s {dist=normal, stream=0}", &format!("{ty}[4000]")), &[seed(1)]));
        let m = n.iter().sum::<f64>() / n.len() as f64;
        let var = n.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n.len() as f64;
        assert!(m.abs() < 0.06 && (var - 1.0).abs() < 0.1, "normal mean {m} var {var}");
    }
}

#[test]
fn float_unary_ops_match_libm() {
    let xs = [0.25f64, 0.5, 1.0, 2.0];
    type Case = (&'static str, fn(f64) -> f64);
    let cases: [Case; 9] = [
        ("neg", |x| -x),
        ("exp", f64::exp),
        ("log", f64::ln),
        ("sqrt", f64::sqrt),
        ("recip", |x| 1.0 / x),
        ("sin", f64::sin),
        ("cos", f64::cos),
        ("tanh", f64::tanh),
        ("abs", f64::abs),
    ];
    for (op, f) in cases {
        let want: Vec<f64> = xs.iter().map(|&x| f(x)).collect();
        let v = run1(&op_fn("%x: f64[4]", &format!("{op} %x"), "f64[4]"), &[("x", f64v(&[4], &xs))]);
        assert_close(&vals(&v), &want, 1e-15);
        let xs32: Vec<f32> = xs.iter().map(|&x| x as f32).collect();
        let v = run1(&op_fn("%x: f32[4]", &format!("{op} %x"), "f32[4]"), &[("x", f32v(&[4], &xs32))]);
        assert_close(&vals(&v), &want, 1e-6);
    }
}

#[test]
fn integer_neg_and_abs_wrap() {
    let v = run1(&op_fn("%x: i32[3]", "neg %x", "i32[3]"), &[("x", i32v(&[3], &[1, -2, i32::MIN]))]);
    assert_eq!(v, i32v(&[3], &[-1, 2, i32::MIN]));
    let v = run1(&op_fn("%x: i64[3]", "abs %x", "i64[3]"), &[("x", i64v(&[3], &[1, -2, 0]))]);
    assert_eq!(v, i64v(&[3], &[1, 2, 0]));
}

#[test]
fn binary_ops_on_every_numeric_dtype() {
    let a = [6.0, -7.0, 3.0, 0.0];
    let b = [4.0, 2.0, -3.0, 5.0];
    let cases: [(&str, [f64; 4]); 6] = [
        ("add", [10.0, -5.0, 0.0, 5.0]),
        ("sub", [2.0, -9.0, 6.0, -5.0]),
        ("mul", [24.0, -14.0, -9.0, 0.0]),
        ("max", [6.0, 2.0, 3.0, 5.0]),
        ("min", [4.0, -7.0, -3.0, 0.0]),
        ("div", [1.5, -3.5, -1.0, 0.0]),
    ];
    for dt in [DType::F32, DType::F64, DType::I32, DType::I64] {
        let mk = |x: &[f64]| -> Value {
            match dt {
                DType::F32 => f32v(&[4], &x.iter().map(|&v| v as f32).collect::<Vec<_>>()),
                DType::F64 => f64v(&[4], x),
                DType::I32 => i32v(&[4], &x.iter().map(|&v| v as i32).collect::<Vec<_>>()),
                _ => i64v(&[4], &x.iter().map(|&v| v as i64).collect::<Vec<_>>()),
            }
        };
        for (op, want) in cases {
            let text = op_fn(&format!("%a: {dt}[4], %b: {dt}[4]"), &format!("{op} %a, %b"), &format!("{dt}[4]"));
            let v = run1(&text, &[("a", mk(&a)), ("b", mk(&b))]);
            // Integer division truncates toward zero.
            let want: Vec<f64> = if dt.is_int() { want.iter().map(|w| w.trunc()).collect() } else { want.to_vec() };
            assert_eq!(vals(&v), want, "{op} on {dt}");
        }
    }
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let text = op_fn("%a: i32[2], %b: i32[2]", "div %a, %b", "i32[2]");
    let e = try_run(&text, &[("a", i32v(&[2], &[1, 2])), ("b", i32v(&[2], &[1, 0]))]).unwrap_err();
    assert!(matches!(e, InterpError::Eval { op: "div", .. }), "{e}");
    assert!(e.to_string().contains("division by zero"));
}

#[test]
fn integer_arithmetic_wraps() {
    let text = op_fn("%a: i32[1], %b: i32[1]", "add %a, %b", "i32[1]");
    assert_eq!(run1(&text, &[("a", i32v(&[1], &[i32::MAX])), ("b", i32v(&[1], &[1]))]), i32v(&[1], &[i32::MIN]));
}

#[test]
fn float_max_and_min_propagate_nan_and_pow_works() {
    let text = op_fn("%a: f32[2], %b: f32[2]", "max %a, %b", "f32[2]");
    let v = run1(&text, &[("a", f32v(&[2], &[f32::NAN, 1.0])), ("b", f32v(&[2], &[0.0, 2.0]))]);
    assert!(vals(&v)[0].is_nan());
    assert_eq!(vals(&v)[1], 2.0);
    let text = op_fn("%a: f64[3], %b: f64[3]", "pow %a, %b", "f64[3]");
    let v = run1(&text, &[("a", f64v(&[3], &[2.0, 9.0, 4.0])), ("b", f64v(&[3], &[3.0, 0.5, -1.0]))]);
    assert_eq!(vals(&v), vec![8.0, 3.0, 0.25]);
}

#[test]
fn comparisons_give_bool() {
    for dt in ["f32", "f64", "i32", "i64"] {
        let mk = |x: [f64; 3]| match dt {
            "f32" => f32v(&[3], &x.map(|v| v as f32)),
            "f64" => f64v(&[3], &x),
            "i32" => i32v(&[3], &x.map(|v| v as i32)),
            _ => i64v(&[3], &x.map(|v| v as i64)),
        };
        let (a, b) = (mk([1.0, 2.0, 3.0]), mk([2.0, 2.0, 2.0]));
        let lt = run1(
            &op_fn(&format!("%a: {dt}[3], %b: {dt}[3]"), "cmp_lt %a, %b", "bool[3]"),
            &[("a", a.clone()), ("b", b.clone())],
        );
        assert_eq!(lt, boolv(&[3], &[true, false, false]), "{dt}");
        let eq = run1(&op_fn(&format!("%a: {dt}[3], %b: {dt}[3]"), "cmp_eq %a, %b", "bool[3]"), &[("a", a), ("b", b)]);
        assert_eq!(eq, boolv(&[3], &[false, true, false]), "{dt}");
    }
    let eq = run1(
        &op_fn("%a: bool[2], %b: bool[2]", "cmp_eq %a, %b", "bool[2]"),
        &[("a", boolv(&[2], &[true, false])), ("b", boolv(&[2], &[true, true]))],
    );
    assert_eq!(eq, boolv(&[2], &[true, false]));
}

#[test]
fn select_picks_by_mask_for_every_dtype() {
    let c = boolv(&[3], &[true, false, true]);
    let cases = [
        ("f32", f32v(&[3], &[1.0, 2.0, 3.0]), f32v(&[3], &[-1.0, -2.0, -3.0]), vec![1.0, -2.0, 3.0]),
        ("f64", f64v(&[3], &[1.0, 2.0, 3.0]), f64v(&[3], &[-1.0, -2.0, -3.0]), vec![1.0, -2.0, 3.0]),
        ("i32", i32v(&[3], &[1, 2, 3]), i32v(&[3], &[-1, -2, -3]), vec![1.0, -2.0, 3.0]),
        ("i64", i64v(&[3], &[1, 2, 3]), i64v(&[3], &[-1, -2, -3]), vec![1.0, -2.0, 3.0]),
        ("bool", boolv(&[3], &[true, true, true]), boolv(&[3], &[false, false, false]), vec![1.0, 0.0, 1.0]),
    ];
    for (dt, a, b, want) in cases {
        let text = op_fn(&format!("%c: bool[3], %a: {dt}[3], %b: {dt}[3]"), "select %c, %a, %b", &format!("{dt}[3]"));
        let v = run1(&text, &[("c", c.clone()), ("a", a), ("b", b)]);
        assert_eq!(vals(&v), want, "{dt}");
    }
}

#[test]
fn cast_between_dtypes() {
    let x = f32v(&[5], &[1.7, -1.7, 3e10, f32::NAN, 0.0]);
    let v = run1(&op_fn("%x: f32[5]", "cast %x", "i32[5]"), &[("x", x.clone())]);
    assert_eq!(v, i32v(&[5], &[1, -1, i32::MAX, 0, 0]), "truncates toward zero, saturates, NaN is 0");
    let v = run1(&op_fn("%x: f32[5]", "cast %x", "bool[5]"), &[("x", x)]);
    assert_eq!(v, boolv(&[5], &[true, true, true, true, false]));
    let v = run1(&op_fn("%x: bool[2]", "cast %x", "f64[2]"), &[("x", boolv(&[2], &[true, false]))]);
    assert_eq!(v, f64v(&[2], &[1.0, 0.0]));
    let v = run1(&op_fn("%x: i64[2]", "cast %x", "f32[2]"), &[("x", i64v(&[2], &[3, -4]))]);
    assert_eq!(v, f32v(&[2], &[3.0, -4.0]));
    let v = run1(&op_fn("%x: i64[1]", "cast %x", "i32[1]"), &[("x", i64v(&[1], &[(1i64 << 32) + 5]))]);
    assert_eq!(v, i32v(&[1], &[5]), "integer narrowing wraps");
}

#[test]
fn reductions_over_axes() {
    let x = [1.0, 5.0, 3.0, 4.0, 2.0, 6.0];
    for dt in ["f32", "f64", "i32", "i64"] {
        let feed = match dt {
            "f32" => f32v(&[2, 3], &x.map(|v| v as f32)),
            "f64" => f64v(&[2, 3], &x),
            "i32" => i32v(&[2, 3], &x.map(|v| v as i32)),
            _ => i64v(&[2, 3], &x.map(|v| v as i64)),
        };
        let arg = format!("%x: {dt}[2,3]");
        let r = |body: &str, ty: &str| vals(&run1(&op_fn(&arg, body, &format!("{dt}{ty}")), &[("x", feed.clone())]));
        assert_eq!(r("reduce_sum %x {axes=[1]}", "[2]"), vec![9.0, 12.0], "{dt}");
        assert_eq!(r("reduce_sum %x {axes=[0]}", "[3]"), vec![5.0, 7.0, 9.0], "{dt}");
        assert_eq!(r("reduce_sum %x {axes=[0,1]}", "[]"), vec![21.0], "{dt}");
        assert_eq!(r("reduce_max %x {axes=[1]}", "[2]"), vec![5.0, 6.0], "{dt}");
        assert_eq!(r("reduce_max %x {axes=[0,1]}", "[]"), vec![6.0], "{dt}");
        assert_eq!(r("reduce_sum %x {axes=[]}", "[2,3]"), x.to_vec(), "{dt}");
    }
    let empty = run1(&op_fn("%x: f32[0,2]", "reduce_max %x {axes=[0]}", "f32[2]"), &[("x", f32v(&[0, 2], &[]))]);
    assert_eq!(vals(&empty), vec![f64::NEG_INFINITY; 2], "max over nothing is -inf");
}

#[test]
fn movement_ops() {
    let x = f32v(&[2, 3], &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    let r = |body: &str, ty: &str| vals(&run1(&op_fn("%x: f32[2,3]", body, ty), &[("x", x.clone())]));
    assert_eq!(r("reshape %x", "f32[3,2]"), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    assert_eq!(r("permute %x {perm=[1,0]}", "f32[3,2]"), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
    assert_eq!(r("broadcast %x {dims=[1,2]}", "f32[2,2,3]"), [0.0, 1.0, 2.0, 3.0, 4.0, 5.0].repeat(2));
    assert_eq!(
        r("broadcast %x {dims=[0,1]}", "f32[2,3,2]"),
        vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0, 5.0, 5.0]
    );
    assert_eq!(r("slice %x {start=[0,0], stop=[2,3], step=[1,2]}", "f32[2,2]"), vec![0.0, 2.0, 3.0, 5.0]);
    assert_eq!(r("slice %x {start=[1,1], stop=[2,3], step=[1,1]}", "f32[1,2]"), vec![4.0, 5.0]);
    assert_eq!(
        r("pad %x {low=[0,1], high=[1,0], value=9.0}", "f32[3,4]"),
        vec![9.0, 0.0, 1.0, 2.0, 9.0, 3.0, 4.0, 5.0, 9.0, 9.0, 9.0, 9.0]
    );
    assert_eq!(r("stop_gradient %x", "f32[2,3]"), vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
    // Stretching an extent of 1.
    let v = run1(&op_fn("%x: i32[2,1]", "broadcast %x {dims=[0,1]}", "i32[2,3]"), &[("x", i32v(&[2, 1], &[7, 8]))]);
    assert_eq!(v, i32v(&[2, 3], &[7, 7, 7, 8, 8, 8]));
    // Movement works on bool and integer data too.
    let v = run1(
        &op_fn("%x: bool[2,2]", "permute %x {perm=[1,0]}", "bool[2,2]"),
        &[("x", boolv(&[2, 2], &[true, false, false, false]))],
    );
    assert_eq!(v, boolv(&[2, 2], &[true, false, false, false]));
}

#[test]
fn concat_along_an_axis() {
    let text = "func @t(%a: i64[2,1], %b: i64[2,2]) -> (y: i64[2,3]) {\n  %r = concat %a, %b {axis=1} : i64[2,3]\n  return %r\n}\n";
    let v = run1(text, &[("a", i64v(&[2, 1], &[1, 2])), ("b", i64v(&[2, 2], &[3, 4, 5, 6]))]);
    assert_eq!(v, i64v(&[2, 3], &[1, 3, 4, 2, 5, 6]));
}

#[test]
fn matmul_batched_for_float_and_int() {
    let a = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0];
    let b = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    // Batch 0: [[1,2,3],[4,5,6]] x [[1,0],[0,1],[1,1]]; batch 1: [[1,0,0],[1,1,1]] x [[2,3],[4,5],[6,7]].
    let want = vec![4.0, 5.0, 10.0, 11.0, 2.0, 3.0, 12.0, 15.0];
    for dt in ["f32", "f64", "i32", "i64"] {
        let mk = |x: &[f64]| match dt {
            "f32" => f32v(&[2, 2, 3], &x.iter().map(|&v| v as f32).collect::<Vec<_>>()),
            "f64" => f64v(&[2, 2, 3], x),
            "i32" => i32v(&[2, 2, 3], &x.iter().map(|&v| v as i32).collect::<Vec<_>>()),
            _ => i64v(&[2, 2, 3], &x.iter().map(|&v| v as i64).collect::<Vec<_>>()),
        };
        let bt = match mk(&b) {
            Value::F32(x) => Value::F32(x.into_shape_with_order(ndarray::IxDyn(&[2, 3, 2])).unwrap()),
            Value::F64(x) => Value::F64(x.into_shape_with_order(ndarray::IxDyn(&[2, 3, 2])).unwrap()),
            Value::I32(x) => Value::I32(x.into_shape_with_order(ndarray::IxDyn(&[2, 3, 2])).unwrap()),
            Value::I64(x) => Value::I64(x.into_shape_with_order(ndarray::IxDyn(&[2, 3, 2])).unwrap()),
            Value::Bool(_) => unreachable!(),
        };
        let text = op_fn(&format!("%a: {dt}[2,2,3], %b: {dt}[2,3,2]"), "matmul %a, %b", &format!("{dt}[2,2,2]"));
        assert_eq!(vals(&run1(&text, &[("a", mk(&a)), ("b", bt)])), want, "{dt}");
    }
}

#[test]
fn conv2d_hand_checked() {
    // 1x1x3x3 input, 1x1x2x2 kernel of ones: each output is the sum of a 2x2 window.
    let x = f32v(&[1, 1, 3, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    let w = f32v(&[1, 1, 2, 2], &[1.0, 1.0, 1.0, 1.0]);
    let args = "%x: f32[1,1,3,3], %w: f32[1,1,2,2]";
    let r = |attrs: &str, ty: &str| {
        vals(&run1(&op_fn(args, &format!("conv2d %x, %w {attrs}"), ty), &[("x", x.clone()), ("w", w.clone())]))
    };
    assert_eq!(
        r("{stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}", "f32[1,1,2,2]"),
        vec![12.0, 16.0, 24.0, 28.0]
    );
    assert_eq!(
        r("{stride=[2,2], padding=[1,1], dilation=[1,1], groups=1}", "f32[1,1,2,2]"),
        vec![1.0, 5.0, 11.0, 28.0]
    );
    assert_eq!(r("{stride=[1,1], padding=[0,0], dilation=[2,2], groups=1}", "f32[1,1,1,1]"), vec![20.0]);
    // Two groups: each output channel sees only its own input channel.
    let x2 = f64v(&[1, 2, 1, 1], &[3.0, 5.0]);
    let w2 = f64v(&[2, 1, 1, 1], &[2.0, 10.0]);
    let text = op_fn(
        "%x: f64[1,2,1,1], %w: f64[2,1,1,1]",
        "conv2d %x, %w {stride=[1,1], padding=[0,0], dilation=[1,1], groups=2}",
        "f64[1,2,1,1]",
    );
    assert_eq!(vals(&run1(&text, &[("x", x2), ("w", w2)])), vec![6.0, 50.0]);
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The two gradient forms are the adjoints of the convolution:
/// `<conv(x, w), g> = <x, grad_input(g, w)> = <w, grad_weight(x, g)>`.
#[test]
fn conv2d_gradients_are_adjoints() {
    let attrs = "{stride=[2,1], padding=[1,2], dilation=[1,2], groups=2}";
    let (xs, ws, ys) = ([2, 4, 5, 6], [6, 2, 3, 2], [2, 6, 3, 8]);
    let ty = |d: [usize; 4]| format!("f64[{},{},{},{}]", d[0], d[1], d[2], d[3]);
    let (x, w, g) = (pseudo(240, 1), pseudo(72, 2), pseudo(288, 3));
    let (xv, wv, gv) = (f64v(&xs, &x), f64v(&ws, &w), f64v(&ys, &g));
    let y = run1(
        &op_fn(&format!("%x: {}, %w: {}", ty(xs), ty(ws)), &format!("conv2d %x, %w {attrs}"), &ty(ys)),
        &[("x", xv.clone()), ("w", wv.clone())],
    );
    let gx = run1(
        &op_fn(&format!("%g: {}, %w: {}", ty(ys), ty(ws)), &format!("conv2d_grad_input %g, %w {attrs}"), &ty(xs)),
        &[("g", gv.clone()), ("w", wv)],
    );
    let gw = run1(
        &op_fn(&format!("%x: {}, %g: {}", ty(xs), ty(ys)), &format!("conv2d_grad_weight %x, %g {attrs}"), &ty(ws)),
        &[("x", xv), ("g", gv)],
    );
    let lhs = dot(&vals(&y), &g);
    assert_close(&[dot(&x, &vals(&gx))], &[lhs], 1e-12);
    assert_close(&[dot(&w, &vals(&gw))], &[lhs], 1e-12);
}

#[test]
fn gather_and_scatter_add() {
    let x = f32v(&[3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
    let idx = i32v(&[2, 2], &[2, 0, 1, 1]);
    let v = run1(
        &op_fn("%x: f32[3,2], %i: i32[2,2]", "gather %x, %i {axis=0}", "f32[2,2,2]"),
        &[("x", x.clone()), ("i", idx.clone())],
    );
    assert_eq!(vals(&v), vec![20.0, 21.0, 0.0, 1.0, 10.0, 11.0, 10.0, 11.0]);
    let v = run1(
        &op_fn("%x: f32[3,2], %i: i64[1]", "gather %x, %i {axis=1}", "f32[3,1]"),
        &[("x", x), ("i", i64v(&[1], &[1]))],
    );
    assert_eq!(vals(&v), vec![1.0, 11.0, 21.0]);
    let upd = f32v(&[2, 2, 2], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
    let v = run1(
        &op_fn("%u: f32[2,2,2], %i: i32[2,2]", "scatter_add %u, %i {axis=0}", "f32[3,2]"),
        &[("u", upd), ("i", idx)],
    );
    assert_eq!(vals(&v), vec![3.0, 4.0, 12.0, 14.0, 1.0, 2.0]);
    let v = run1(
        &op_fn("%u: i64[2], %i: i32[2]", "scatter_add %u, %i {axis=0}", "i64[3]"),
        &[("u", i64v(&[2], &[5, 6])), ("i", i32v(&[2], &[2, 2]))],
    );
    assert_eq!(v, i64v(&[3], &[0, 0, 11]));
}

#[test]
fn out_of_range_indices_are_errors() {
    let text = op_fn("%x: f32[3], %i: i32[2]", "gather %x, %i {axis=0}", "f32[2]");
    for bad in [3, -1] {
        let e = try_run(&text, &[("x", f32v(&[3], &[1.0, 2.0, 3.0])), ("i", i32v(&[2], &[0, bad]))]).unwrap_err();
        assert!(matches!(e, InterpError::Eval { op: "gather", .. }), "{e}");
    }
}

#[test]
fn feeds_are_checked() {
    let text = op_fn("%x: f32[2]", "neg %x", "f32[2]");
    assert!(matches!(try_run(&text, &[]).unwrap_err(), InterpError::MissingLeaf(n) if n == "x"));
    let e = try_run(&text, &[("x", f32v(&[3], &[1.0, 2.0, 3.0]))]).unwrap_err();
    assert_eq!(e.to_string(), "`x` must be f32[2], got f32[3]");
    let e = try_run(&text, &[("x", f32v(&[2], &[1.0, 2.0])), ("nope", f32v(&[1], &[0.0]))]).unwrap_err();
    assert!(matches!(e, InterpError::UnknownLeaf { .. }), "{e}");
}

#[test]
fn params_initialize_from_seed_by_name() {
    let text = "func @t(%w: f32[1000] param uniform(-0.5, 0.5), %z: f64[3] param zeros, %o: f32[2] param ones, %n: f64[2000] param normal(1.0, 2.0)) -> (w: f32[1000], z: f64[3], o: f32[2], n: f64[2000]) {\n  return %w, %z, %o, %n\n}\n";
    let g = kiln::ir::parse_graph(text).unwrap();
    let a = kiln::ir::interp::run_with_init(&g, &Default::default(), 3).unwrap();
    let b = kiln::ir::interp::run_with_init(&g, &Default::default(), 3).unwrap();
    let c = kiln::ir::interp::run_with_init(&g, &Default::default(), 4).unwrap();
    assert_eq!(a, b);
    assert_ne!(a[0], c[0]);
    assert!(vals(&a[0]).iter().all(|x| (-0.5..0.5).contains(x)));
    assert_eq!(vals(&a[1]), vec![0.0; 3]);
    assert_eq!(vals(&a[2]), vec![1.0; 2]);
    let n = vals(&a[3]);
    let m = n.iter().sum::<f64>() / n.len() as f64;
    assert!((m - 1.0).abs() < 0.15, "normal(1, 2) mean {m}");
}

/// Values from a `Vec` and back: the shape must be filled exactly, and `to_vec` checks the
/// dtype; `kiln::ndarray` is the array crate the values hold.
#[test]
fn values_from_vecs_and_back() {
    let v = Value::from_vec(&[2, 3], vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
    assert_eq!(v.ty().to_string(), "f32[2,3]");
    assert_eq!(v.to_vec::<f32>().unwrap(), [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    assert_eq!(v, Value::F32(kiln::ndarray::arr2(&[[1.0f32, 2.0, 3.0], [4.0, 5.0, 6.0]]).into_dyn()));
    let e = v.to_vec::<i64>().unwrap_err().to_string();
    assert_eq!(e, "the value is f32, not i64");
    let e = Value::from_vec(&[2, 3], vec![1i32; 5]).unwrap_err().to_string();
    assert_eq!(e, "shape [2, 3] holds 6 elements, the data has 5");
    let s = Value::from_vec::<bool>(&[], vec![true]).unwrap();
    assert_eq!((s.ty().to_string(), s.to_vec::<bool>().unwrap()), ("bool[]".to_string(), vec![true]));
}
