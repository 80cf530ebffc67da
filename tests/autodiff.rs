//! Every VJP rule checked against central finite differences in `f64`, composites and whole
//! expressions too, plus grad-of-grad and the errors for non-differentiable paths.
//!
//! The bound: with step `h = 1e-6`, each gradient element `a` and its central difference `n`
//! satisfy `|a − n| ≤ 1e-6 · (1 + |n|)`.

mod common;

use std::collections::HashMap;

use common::*;
use kiln::ir::{DType, Graph, Init, Literal, NodeId, Op, ReduceOp, TensorType, Value, interp, parse_graph};
use kiln::passes::autodiff::{AutodiffError, backprop, grad};
use kiln::prelude::{Builder, loss, nn};

const H: f64 = 1e-6;
const TOL: f64 = 1e-6;

/// Adds `loss = sum(y * r)` for a fixed random `r`, returning the loss node.
fn weighted_sum(g: &mut Graph, y: NodeId) -> NodeId {
    let ty = g.ty(y).clone();
    let r = g.param("fd.r", ty.clone(), Init::Normal { mean: Literal(0.0), std: Literal(1.0) }).unwrap();
    let p = g.add(Op::Binary(kiln::ir::BinaryOp::Mul), &[y, r]).unwrap();
    g.add(Op::Reduce { op: ReduceOp::Sum, axes: (0..ty.rank()).collect() }, &[p]).unwrap()
}

/// Random `f64` values for every `f64` leaf of `g` not in `fixed`; `positive` makes them > 0.
fn random_feeds(g: &Graph, fixed: &[(&str, Value)], positive: bool) -> HashMap<String, Value> {
    let mut feeds: HashMap<String, Value> = fixed.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    for (i, (_, n)) in g.leaves().enumerate() {
        let name = n.op.leaf_name().unwrap();
        if feeds.contains_key(name) || name == "fd.r" {
            continue;
        }
        assert_eq!(n.ty.dtype, DType::F64, "give `{name}` a value");
        let mut v = pseudo(n.ty.numel(), 100 + i as u64);
        if positive {
            v.iter_mut().for_each(|x| *x = 0.5 + x.abs());
        }
        feeds.insert(name.to_string(), f64v(n.ty.dims(), &v));
    }
    feeds
}

fn loss_value(g: &Graph, feeds: &HashMap<String, Value>) -> f64 {
    interp::run_with_init(g, feeds, 7).unwrap()[0].to_f64_vec()[0]
}

/// Checks d(sum(y * r))/d(leaf) for every leaf in `wrt` against central differences, where `y`
/// is the graph's first output. Leaves not in `fixed` get random values (positive if asked).
fn check(g: &Graph, wrt: &[&str], fixed: &[(&str, Value)], positive: bool) {
    let mut lossg = g.clone();
    let l = weighted_sum(&mut lossg, g.outputs()[0].value);
    lossg.clear_outputs();
    lossg.add_output("loss", l).unwrap();
    let feeds = random_feeds(&lossg, fixed, positive);
    let mut gg = lossg.clone();
    let ids: Vec<NodeId> = wrt.iter().map(|w| gg.leaf(w).unwrap_or_else(|| panic!("no leaf {w}"))).collect();
    let grads = backprop(&mut gg, l, &ids).unwrap();
    kiln::ir::verify(&gg).unwrap();
    for (i, gid) in grads.iter().enumerate() {
        gg.add_output(format!("g{i}"), *gid).unwrap();
    }
    let results = interp::run_with_init(&gg, &feeds, 7).unwrap();
    for (w, a) in wrt.iter().zip(&results[1..]) {
        let a = a.to_f64_vec();
        let base = feeds[*w].to_f64_vec();
        let dims = feeds[*w].shape().to_vec();
        for k in 0..base.len() {
            let at = |d: f64| {
                let mut v = base.clone();
                v[k] += d;
                let mut f = feeds.clone();
                f.insert(w.to_string(), f64v(&dims, &v));
                loss_value(&lossg, &f)
            };
            let num = (at(H) - at(-H)) / (2.0 * H);
            assert!(
                (a[k] - num).abs() <= TOL * (1.0 + num.abs()),
                "d/d{w}[{k}]: autodiff {} vs finite differences {num}\n{gg}",
                a[k]
            );
        }
    }
}

fn kir(body: &str) -> Graph {
    parse_graph(body).unwrap_or_else(|e| panic!("{e}\n{body}"))
}

/// A one-op function over `f64` operands.
fn one(args: &str, stmt: &str, ty: &str) -> Graph {
    kir(&op_fn(args, stmt, ty))
}

#[test]
fn unary_rules() {
    for op in ["neg", "exp", "sin", "cos", "tanh", "abs"] {
        check(&one("%x: f64[2,3]", &format!("{op} %x"), "f64[2,3]"), &["x"], &[], false);
    }
    for op in ["log", "sqrt", "recip"] {
        check(&one("%x: f64[2,3]", &format!("{op} %x"), "f64[2,3]"), &["x"], &[], true);
    }
}

#[test]
fn binary_rules() {
    for op in ["add", "sub", "mul", "max", "min"] {
        check(&one("%a: f64[2,3], %b: f64[2,3]", &format!("{op} %a, %b"), "f64[2,3]"), &["a", "b"], &[], false);
    }
    for op in ["div", "pow"] {
        check(&one("%a: f64[2,3], %b: f64[2,3]", &format!("{op} %a, %b"), "f64[2,3]"), &["a", "b"], &[], true);
    }
    // An operand used twice gets both contributions.
    check(&one("%a: f64[4]", "mul %a, %a", "f64[4]"), &["a"], &[], false);
}

#[test]
fn select_rule_routes_by_the_mask() {
    let c = boolv(&[2, 2], &[true, false, false, true]);
    check(
        &one("%c: bool[2,2], %a: f64[2,2], %b: f64[2,2]", "select %c, %a, %b", "f64[2,2]"),
        &["a", "b"],
        &[("c", c)],
        false,
    );
}

#[test]
fn reduction_rules_over_every_axis_set() {
    let sets: [&[usize]; 8] = [&[], &[0], &[1], &[2], &[0, 1], &[0, 2], &[1, 2], &[0, 1, 2]];
    for axes in sets {
        let kept: Vec<String> =
            [2, 3, 4].iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| d.to_string()).collect();
        let ty = format!("f64[{}]", kept.join(","));
        let list: Vec<String> = axes.iter().map(|a| a.to_string()).collect();
        for op in ["reduce_sum", "reduce_max"] {
            check(&one("%x: f64[2,3,4]", &format!("{op} %x {{axes=[{}]}}", list.join(",")), &ty), &["x"], &[], false);
        }
    }
}

#[test]
fn reduce_max_splits_ties_evenly() {
    let mut g = one("%x: f64[3]", "reduce_max %x {axes=[0]}", "f64[]");
    let x = g.leaf("x").unwrap();
    let y = g.outputs()[0].value;
    let d = backprop(&mut g, y, &[x]).unwrap()[0];
    g.add_output("d", d).unwrap();
    let out = interp::run(&g, &[("x".to_string(), f64v(&[3], &[1.0, 3.0, 3.0]))].into()).unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 0.5, 0.5]);
}

#[test]
fn movement_rules() {
    check(&one("%x: f64[2,6]", "reshape %x", "f64[3,2,2]"), &["x"], &[], false);
    check(&one("%x: f64[2,3,4]", "permute %x {perm=[2,0,1]}", "f64[4,2,3]"), &["x"], &[], false);
    check(&one("%x: f64[3,1]", "broadcast %x {dims=[1,2]}", "f64[2,3,4]"), &["x"], &[], false);
    check(&one("%x: f64[3]", "broadcast %x {dims=[0]}", "f64[3,2]"), &["x"], &[], false);
    check(&one("%x: f64[1]", "broadcast %x {dims=[0]}", "f64[5]"), &["x"], &[], false);
    check(&one("%x: f64[7,9]", "slice %x {start=[1,2], stop=[7,8], step=[2,3]}", "f64[3,2]"), &["x"], &[], false);
    check(&one("%x: f64[5,4]", "slice %x {start=[1,0], stop=[5,4], step=[3,1]}", "f64[2,4]"), &["x"], &[], false);
    check(&one("%x: f64[2,3]", "pad %x {low=[1,0], high=[2,3], value=5.0}", "f64[5,6]"), &["x"], &[], false);
    let text = "func @t(%a: f64[2,1], %b: f64[2,3], %c: f64[2,2]) -> (y: f64[2,6]) {\n  %r = concat %a, %b, %c {axis=1} : f64[2,6]\n  return %r\n}\n";
    check(&kir(text), &["a", "b", "c"], &[], false);
    check(&one("%x: f64[2,3]", "cast %x", "f64[2,3]"), &["x"], &[], false);
}

#[test]
fn matmul_rule_with_batch_axes() {
    check(&one("%a: f64[2,3,4], %b: f64[2,4,5]", "matmul %a, %b", "f64[2,3,5]"), &["a", "b"], &[], false);
    check(&one("%a: f64[3,4], %b: f64[4,2]", "matmul %a, %b", "f64[3,2]"), &["a", "b"], &[], false);
}

#[test]
fn conv2d_rules_with_stride_padding_dilation_and_groups() {
    let attrs = "{stride=[2,1], padding=[1,2], dilation=[1,2], groups=2}";
    check(
        &one("%x: f64[2,4,5,6], %w: f64[6,2,3,2]", &format!("conv2d %x, %w {attrs}"), "f64[2,6,3,8]"),
        &["x", "w"],
        &[],
        false,
    );
    let plain = "{stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}";
    check(
        &one("%x: f64[1,2,4,4], %w: f64[3,2,3,3]", &format!("conv2d %x, %w {plain}"), "f64[1,3,2,2]"),
        &["x", "w"],
        &[],
        false,
    );
    // The two gradient forms are differentiable too (grad of grad through a convolution).
    check(
        &one("%g: f64[2,6,3,8], %w: f64[6,2,3,2]", &format!("conv2d_grad_input %g, %w {attrs}"), "f64[2,4,5,6]"),
        &["g", "w"],
        &[],
        false,
    );
    check(
        &one("%x: f64[2,4,5,6], %g: f64[2,6,3,8]", &format!("conv2d_grad_weight %x, %g {attrs}"), "f64[6,2,3,2]"),
        &["x", "g"],
        &[],
        false,
    );
}

#[test]
fn gather_and_scatter_rules() {
    let idx = i32v(&[2, 2], &[2, 0, 2, 1]);
    check(
        &one("%x: f64[3,2], %i: i32[2,2]", "gather %x, %i {axis=0}", "f64[2,2,2]"),
        &["x"],
        &[("i", idx.clone())],
        false,
    );
    check(
        &one("%x: f64[2,3], %i: i32[2,2]", "gather %x, %i {axis=1}", "f64[2,2,2]"),
        &["x"],
        &[("i", idx.clone())],
        false,
    );
    check(
        &one("%u: f64[2,2,2], %i: i32[2,2]", "scatter_add %u, %i {axis=0}", "f64[3,2]"),
        &["u"],
        &[("i", idx)],
        false,
    );
}

fn built(f: impl for<'b> FnOnce(&'b Builder) -> kiln::prelude::Tensor<'b>) -> Graph {
    let b = Builder::new("t").with_float(DType::F64);
    let y = f(&b);
    b.output("y", y);
    b.finish().unwrap()
}

#[test]
fn composite_rules() {
    fn x(b: &Builder) -> kiln::prelude::Tensor<'_> {
        b.input("x", DType::F64, [3, 4])
    }
    check(&built(|b| x(b).softmax(-1)), &["x"], &[], false);
    check(&built(|b| x(b).log_softmax(0)), &["x"], &[], false);
    check(&built(|b| x(b).gelu()), &["x"], &[], false);
    check(&built(|b| x(b).sigmoid()), &["x"], &[], false);
    check(&built(|b| x(b).relu()), &["x"], &[], false);
    check(&built(|b| nn::LayerNorm::new(b, "ln", 4).forward(x(b))), &["x", "ln.gamma", "ln.beta"], &[], false);
    check(&built(|b| nn::Linear::new(b, "fc", 4, 2).forward(x(b))), &["x", "fc.weight", "fc.bias"], &[], false);
    let labels = i32v(&[3], &[1, 3, 0]);
    check(
        &built(|b| loss::cross_entropy(x(b), b.input("labels", DType::I32, [3]))),
        &["x"],
        &[("labels", labels)],
        false,
    );
    check(&built(|b| loss::cross_entropy(x(b), b.input("t", DType::F64, [3, 4]).softmax(-1))), &["x", "t"], &[], false);
    check(&built(|b| loss::mse(x(b), b.input("t", DType::F64, [3, 4]))), &["x", "t"], &[], false);
    let t = f64v(&[3, 4], &[1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.5, 0.5, 0.0, 1.0]);
    check(
        &built(|b| loss::binary_cross_entropy(x(b).sigmoid(), b.input("t", DType::F64, [3, 4]))),
        &["x"],
        &[("t", t)],
        false,
    );
}

#[test]
fn pooling_rules() {
    fn x(b: &Builder) -> kiln::prelude::Tensor<'_> {
        b.input("x", DType::F64, [1, 2, 5, 5])
    }
    check(&built(|b| nn::MaxPool2d::new(2, 2, 0).forward(x(b))), &["x"], &[], false);
    check(&built(|b| nn::MaxPool2d::new(3, 2, 1).forward(x(b))), &["x"], &[], false);
    check(&built(|b| nn::AvgPool2d::new(2, 2, 0).forward(x(b))), &["x"], &[], false);
    check(&built(|b| nn::AvgPool2d::new(3, 1, 1).forward(x(b))), &["x"], &[], false);
}

#[test]
fn recurrent_and_attention_layers() {
    check(
        &built(|b| nn::Lstm::new(b, "l", 3, 2).forward(b.input("x", DType::F64, [2, 3, 3])).stacked(b)),
        &["x", "l.w_ih", "l.w_hh", "l.bias"],
        &[],
        false,
    );
    check(
        &built(|b| nn::MultiHeadAttention::new(b, "a", 4, 2).forward(b.input("x", DType::F64, [1, 3, 4]))),
        &["x", "a.q.weight", "a.k.weight", "a.out.bias"],
        &[],
        false,
    );
    let ids = i64v(&[2, 2], &[3, 0, 1, 3]);
    check(
        &built(|b| nn::Embedding::new(b, "e", 4, 3).forward(b.input("ids", DType::I64, [2, 2]))),
        &["e.weight"],
        &[("ids", ids)],
        false,
    );
}

#[test]
fn stop_gradient_and_unused_values_give_zeros() {
    let mut g = kir(
        "func @t(%x: f64[2], %z: f64[2]) -> (y: f64[]) {\n  %2 = stop_gradient %x : f64[2]\n  %3 = mul %2, %x : f64[2]\n  %4 = reduce_sum %3 {axes=[0]} : f64[]\n  return %4\n}\n",
    );
    let (x, z, y) = (g.leaf("x").unwrap(), g.leaf("z").unwrap(), g.outputs()[0].value);
    let d = backprop(&mut g, y, &[x, z]).unwrap();
    g.add_output("dx", d[0]).unwrap();
    g.add_output("dz", d[1]).unwrap();
    let out = interp::run(
        &g,
        &[("x".to_string(), f64v(&[2], &[3.0, -2.0])), ("z".to_string(), f64v(&[2], &[1.0, 1.0]))].into(),
    )
    .unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![3.0, -2.0], "only the unstopped factor contributes");
    assert_eq!(out[2].to_f64_vec(), vec![0.0, 0.0]);
}

#[test]
fn non_differentiable_paths_are_errors() {
    // A comparison cast back to float: the gradient would pass through booleans.
    let mut g = kir(
        "func @t(%x: f64[2]) -> (y: f64[]) {\n  %1 = const 0.0 : f64[2]\n  %2 = cmp_lt %1, %x : bool[2]\n  %3 = cast %2 : f64[2]\n  %4 = mul %3, %x : f64[2]\n  %5 = reduce_sum %4 {axes=[0]} : f64[]\n  return %5\n}\n",
    );
    let (x, y) = (g.leaf("x").unwrap(), g.outputs()[0].value);
    let e = backprop(&mut g, y, &[x]).unwrap_err();
    assert!(matches!(e, AutodiffError::Blocked { op: "cast", .. }), "{e}");
    assert!(e.to_string().contains("stop_gradient"));
    // The same path cut explicitly is fine: the mask is a constant.
    let mut g = kir(
        "func @t(%x: f64[2]) -> (y: f64[]) {\n  %1 = const 0.0 : f64[2]\n  %2 = stop_gradient %x : f64[2]\n  %3 = cmp_lt %1, %2 : bool[2]\n  %4 = cast %3 : f64[2]\n  %5 = mul %4, %x : f64[2]\n  %6 = reduce_sum %5 {axes=[0]} : f64[]\n  return %6\n}\n",
    );
    let (x, y) = (g.leaf("x").unwrap(), g.outputs()[0].value);
    assert!(backprop(&mut g, y, &[x]).is_ok());
    // Integer values have no gradient, and the loss must be a float scalar.
    let mut g = kir(
        "func @t(%i: i32[2], %x: f64[2]) -> (y: f64[]) {\n  %2 = reduce_sum %x {axes=[0]} : f64[]\n  return %2\n}\n",
    );
    let (i, x, y) = (g.leaf("i").unwrap(), g.leaf("x").unwrap(), g.outputs()[0].value);
    assert!(matches!(backprop(&mut g, x, &[x]), Err(AutodiffError::BadLoss { .. })));
    assert!(matches!(backprop(&mut g, y, &[i]), Err(AutodiffError::NotFloat { .. })));
    let e = grad(&g, "nope", &[]).unwrap_err();
    assert_eq!(e.to_string(), "@t has no output named `nope`");
}

/// d²/dx² tanh(x) = −2 tanh(x) (1 − tanh²(x)), by differentiating the gradient graph.
#[test]
fn second_derivative_of_tanh() {
    let mut g = kir(
        "func @t(%x: f64[5]) -> (y: f64[]) {\n  %1 = tanh %x : f64[5]\n  %2 = reduce_sum %1 {axes=[0]} : f64[]\n  return %2\n}\n",
    );
    let (x, y) = (g.leaf("x").unwrap(), g.outputs()[0].value);
    let d1 = backprop(&mut g, y, &[x]).unwrap()[0];
    let s = g.add(Op::Reduce { op: ReduceOp::Sum, axes: vec![0] }, &[d1]).unwrap();
    let d2 = backprop(&mut g, s, &[x]).unwrap()[0];
    g.add_output("d2", d2).unwrap();
    let xs = [-1.5, -0.3, 0.0, 0.7, 2.0];
    let out = interp::run(&g, &[("x".to_string(), f64v(&[5], &xs))].into()).unwrap();
    let want: Vec<f64> = xs.iter().map(|&v: &f64| -2.0 * v.tanh() * (1.0 - v.tanh().powi(2))).collect();
    assert_close(&out[1].to_f64_vec(), &want, 1e-14);
}

/// Hessian-vector product of a small MLP's loss: H v = d/dθ (∇L · v), checked against central
/// differences of the gradient along v.
#[test]
fn hessian_vector_product_of_an_mlp() {
    let b = Builder::new("mlp").with_float(DType::F64);
    let x = b.input("x", DType::F64, [4, 3]);
    let t = b.input("t", DType::F64, [4, 2]);
    let h = nn::Linear::new(&b, "fc1", 3, 5).forward(x).tanh();
    let y = nn::Linear::new(&b, "fc2", 5, 2).forward(h);
    b.output("loss", loss::mse(y, t));
    let g = b.finish().unwrap();
    let w = "fc1.weight";
    let mut hg = g.clone();
    let (wid, l) = (hg.leaf(w).unwrap(), hg.outputs()[0].value);
    let gw = backprop(&mut hg, l, &[wid]).unwrap()[0];
    let v = hg.input("v", TensorType::new(DType::F64, [3, 5])).unwrap();
    let gv = hg.add(Op::Binary(kiln::ir::BinaryOp::Mul), &[gw, v]).unwrap();
    let gdotv = hg.add(Op::Reduce { op: ReduceOp::Sum, axes: vec![0, 1] }, &[gv]).unwrap();
    let hv = backprop(&mut hg, gdotv, &[wid]).unwrap()[0];
    hg.add_output("grad", gw).unwrap();
    hg.add_output("hv", hv).unwrap();
    kiln::ir::verify(&hg).unwrap();
    let mut feeds = random_feeds(&hg, &[], false);
    let out = interp::run_with_init(&hg, &feeds, 3).unwrap();
    let hv = out[2].to_f64_vec();
    let (w0, vv) = (feeds[w].to_f64_vec(), feeds["v"].to_f64_vec());
    let grad_at = |feeds: &mut HashMap<String, Value>, s: f64| {
        let shifted: Vec<f64> = w0.iter().zip(&vv).map(|(a, b)| a + s * b).collect();
        feeds.insert(w.to_string(), f64v(&[3, 5], &shifted));
        interp::run_with_init(&hg, feeds, 3).unwrap()[1].to_f64_vec()
    };
    let (gp, gm) = (grad_at(&mut feeds, 1e-5), grad_at(&mut feeds, -1e-5));
    let num: Vec<f64> = gp.iter().zip(&gm).map(|(p, m)| (p - m) / 2e-5).collect();
    assert_close(&hv, &num, 1e-6);
    assert!(hv.iter().any(|v| v.abs() > 1e-4));
}

#[test]
fn grad_pass_names_its_outputs() {
    let m = kiln::zoo::xor_mlp(4).unwrap();
    let mut g = m.graph.clone();
    let p = g.outputs()[0].value;
    let s = g.add(Op::Reduce { op: ReduceOp::Sum, axes: vec![0, 1] }, &[p]).unwrap();
    g.add_output("s", s).unwrap();
    let gg = grad(&g, "s", &[]).unwrap();
    let names: Vec<&str> = gg.outputs().iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["prob", "s", "grad.hidden.weight", "grad.hidden.bias", "grad.out.weight", "grad.out.bias"]);
    let gx = grad(&g, "s", &["x"]).unwrap();
    assert_eq!(gx.outputs().last().unwrap().name, "grad.x");
}
