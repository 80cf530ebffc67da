//! Each e-graph rule on its own: a start ⇒ goal pair (after extraction), a case where its
//! shape or value condition fails and it must not fire, and the meaning preserved on random
//! inputs either way.

mod common;

use std::collections::HashMap;

use common::*;
use kiln::ir::{DType, Graph, Value, interp, parse_graph};
use kiln::passes::egraph::rules::{all_rules, rule};
use kiln::passes::egraph::{EgraphConfig, EgraphReport, optimize_with_rules};

/// `func @t(<args>) -> (y: <ty>) { <body> return %y }`.
fn func(args: &str, body: &str, ty: &str) -> Graph {
    let text = format!("func @t({args}) -> (y: {ty}) {{\n{body}\n  return %y\n}}\n");
    parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn run_rules(names: &[&str], g: &Graph) -> (Graph, EgraphReport) {
    let rules: Vec<_> = names.iter().map(|n| rule(n).unwrap_or_else(|| panic!("no rule {n}"))).collect();
    optimize_with_rules(g, &rules, &EgraphConfig::default()).unwrap()
}

/// The graph renumbered the way extraction numbers it, so equal structures print equally.
fn canon(g: &Graph) -> String {
    optimize_with_rules(g, &[], &EgraphConfig::default()).unwrap().0.to_string()
}

fn feeds(g: &Graph) -> HashMap<String, Value> {
    g.leaves()
        .enumerate()
        .map(|(i, (_, n))| {
            let r = pseudo(n.ty.numel(), 7 + i as u64);
            let v = match n.ty.dtype {
                DType::F32 => f32v(n.ty.dims(), &r.iter().map(|&x| x as f32 + 0.5).collect::<Vec<_>>()),
                DType::F64 => f64v(n.ty.dims(), &r.iter().map(|x| x + 0.5).collect::<Vec<_>>()),
                DType::I32 => i32v(n.ty.dims(), &r.iter().map(|x| (x * 9.0) as i32 + 10).collect::<Vec<_>>()),
                DType::Bool => boolv(n.ty.dims(), &r.iter().map(|x| *x > 0.0).collect::<Vec<_>>()),
                DType::I64 => i64v(n.ty.dims(), &r.iter().map(|x| (x * 9.0) as i64).collect::<Vec<_>>()),
            };
            (n.op.leaf_name().unwrap().to_string(), v)
        })
        .collect()
}

fn same_meaning(a: &Graph, b: &Graph) {
    let f = feeds(a);
    let (x, y) = (interp::run(a, &f).unwrap(), interp::run(b, &f).unwrap());
    for (x, y) in x.iter().zip(&y) {
        assert_close(&y.to_f64_vec(), &x.to_f64_vec(), 1e-5);
    }
}

fn rewrites(names: &[&str], start: &Graph, goal: &Graph) {
    let (out, report) = run_rules(names, start);
    assert!(report.fired.get(names[0]).copied().unwrap_or(0) > 0, "{} did not fire:\n{report}", names[0]);
    assert_eq!(canon(&out), canon(goal), "{names:?}\nstart:\n{start}\nreport:\n{report}");
    same_meaning(start, &out);
}

fn does_not_fire(name: &str, start: &Graph) {
    let (out, report) = run_rules(&[name], start);
    assert_eq!(report.fired.get(name), None, "{name} fired on\n{start}\n{report}");
    same_meaning(start, &out);
}

const X: &str = "%x: f32[2,3]";

#[test]
fn every_rule_has_a_reason_and_a_unique_name() {
    let rules = all_rules();
    for r in &rules {
        assert!(!r.reason.is_empty(), "{}", r.name);
        assert_eq!(rules.iter().filter(|s| s.name == r.name).count(), 1, "{}", r.name);
    }
}

#[test]
fn identities() {
    let x = func(X, "  %y = neg %x : f32[2,3]", "f32[2,3]");
    for (rule, body) in [
        ("add-zero", "  %0 = const 0.0 : f32[2,3]\n  %n = neg %x : f32[2,3]\n  %y = add %n, %0 : f32[2,3]"),
        ("add-zero", "  %0 = const -0.0 : f32[2,3]\n  %n = neg %x : f32[2,3]\n  %y = add %0, %n : f32[2,3]"),
        ("sub-zero", "  %0 = const 0.0 : f32[2,3]\n  %n = neg %x : f32[2,3]\n  %y = sub %n, %0 : f32[2,3]"),
        ("mul-one", "  %0 = const 1.0 : f32[2,3]\n  %n = neg %x : f32[2,3]\n  %y = mul %0, %n : f32[2,3]"),
        ("div-one", "  %0 = const 1.0 : f32[2,3]\n  %n = neg %x : f32[2,3]\n  %y = div %n, %0 : f32[2,3]"),
        ("neg-neg", "  %a = neg %x : f32[2,3]\n  %b = neg %a : f32[2,3]\n  %y = neg %b : f32[2,3]"),
        ("recip-recip", "  %a = recip %x : f32[2,3]\n  %b = recip %a : f32[2,3]\n  %y = neg %b : f32[2,3]"),
        (
            "select-same",
            "  %n = neg %x : f32[2,3]\n  %c = cmp_lt %x, %n : bool[2,3]\n  %y = select %c, %n, %n : f32[2,3]",
        ),
        ("max-min-same", "  %n = neg %x : f32[2,3]\n  %y = max %n, %n : f32[2,3]"),
    ] {
        rewrites(&[rule], &func(X, body, "f32[2,3]"), &x);
    }
    // Not identities: x·0 is NaN for infinite x, and x + 1 is not x.
    does_not_fire("add-zero", &func(X, "  %0 = const 1.0 : f32[2,3]\n  %y = add %x, %0 : f32[2,3]", "f32[2,3]"));
    does_not_fire("mul-one", &func(X, "  %0 = const 2.0 : f32[2,3]\n  %y = mul %x, %0 : f32[2,3]", "f32[2,3]"));
    let times_zero = func(X, "  %0 = const 0.0 : f32[2,3]\n  %y = mul %x, %0 : f32[2,3]", "f32[2,3]");
    let (out, _) = run_rules(&all_rules().iter().map(|r| r.name).collect::<Vec<_>>(), &times_zero);
    assert!(out.to_string().contains("mul %x"), "x*0 must stay:\n{out}");
}

#[test]
fn cheaper_forms() {
    let two = "%a: f32[2,3], %b: f32[2,3]";
    let cases = [
        (
            "div-const",
            "  %c = const 4.0 : f32[2,3]\n  %y = div %a, %c : f32[2,3]",
            "  %c = const 0.25 : f32[2,3]\n  %y = mul %a, %c : f32[2,3]",
        ),
        ("mul-recip", "  %r = recip %b : f32[2,3]\n  %y = mul %a, %r : f32[2,3]", "  %y = div %a, %b : f32[2,3]"),
        (
            "neg-times-neg",
            "  %p = neg %a : f32[2,3]\n  %q = neg %b : f32[2,3]\n  %y = mul %p, %q : f32[2,3]",
            "  %y = mul %a, %b : f32[2,3]",
        ),
        ("add-neg", "  %q = neg %b : f32[2,3]\n  %y = add %a, %q : f32[2,3]", "  %y = sub %a, %b : f32[2,3]"),
        ("sub-neg", "  %q = neg %b : f32[2,3]\n  %y = sub %a, %q : f32[2,3]", "  %y = add %a, %b : f32[2,3]"),
        (
            "log-exp",
            "  %e = exp %a : f32[2,3]\n  %l = log %e : f32[2,3]\n  %y = add %l, %b : f32[2,3]",
            "  %y = add %a, %b : f32[2,3]",
        ),
        (
            "log-softmax",
            "  %e = exp %a : f32[2,3]\n  %d = div %e, %b : f32[2,3]\n  %y = log %d : f32[2,3]",
            "  %l = log %b : f32[2,3]\n  %y = sub %a, %l : f32[2,3]",
        ),
        (
            "exp-times-exp",
            "  %p = exp %a : f32[2,3]\n  %q = exp %b : f32[2,3]\n  %y = mul %p, %q : f32[2,3]",
            "  %s = add %a, %b : f32[2,3]\n  %y = exp %s : f32[2,3]",
        ),
    ];
    for (rule, start, goal) in cases {
        rewrites(&[rule], &func(two, start, "f32[2,3]"), &func(two, goal, "f32[2,3]"));
    }
    does_not_fire("div-const", &func("%a: i32[2]", "  %c = const 4.0 : i32[2]\n  %y = div %a, %c : i32[2]", "i32[2]"));
    does_not_fire("div-const", &func("%a: f32[2]", "  %c = const 0.0 : f32[2]\n  %y = div %a, %c : f32[2]", "f32[2]"));
    does_not_fire("log-softmax", &func(two, "  %d = div %a, %b : f32[2,3]\n  %y = log %d : f32[2,3]", "f32[2,3]"));
}

/// The tanh-GELU as the DSL writes it (`u·0.5·(tanh z + 1)`) and with its operands swapped
/// becomes `u − u/(exp(z·2) + 1)`; a half that is not 0.5, or a `1 − tanh`, stays.
#[test]
fn gelu_tanh_on_one_exponential() {
    let two = "%u: f32[2,3], %z: f32[2,3]";
    let goal = "  %c2 = const 2.0 : f32[2,3]\n  %c1 = const 1.0 : f32[2,3]\n  %m = mul %z, %c2 : f32[2,3]\n  %e = exp %m : f32[2,3]\n  %d = add %e, %c1 : f32[2,3]\n  %q = div %u, %d : f32[2,3]\n  %y = sub %u, %q : f32[2,3]";
    let dsl = "  %h = const 0.5 : f32[2,3]\n  %one = const 1.0 : f32[2,3]\n  %a = mul %u, %h : f32[2,3]\n  %t = tanh %z : f32[2,3]\n  %s = add %t, %one : f32[2,3]\n  %y = mul %a, %s : f32[2,3]";
    let swapped = "  %h = const 0.5 : f32[2,3]\n  %one = const 1.0 : f32[2,3]\n  %a = mul %h, %u : f32[2,3]\n  %t = tanh %z : f32[2,3]\n  %s = add %one, %t : f32[2,3]\n  %y = mul %s, %a : f32[2,3]";
    for start in [dsl, swapped] {
        rewrites(&["gelu-tanh"], &func(two, start, "f32[2,3]"), &func(two, goal, "f32[2,3]"));
    }
    let not_half = dsl.replace("const 0.5", "const 0.25");
    does_not_fire("gelu-tanh", &func(two, &not_half, "f32[2,3]"));
    let minus = dsl.replace("%s = add %t, %one", "%s = sub %one, %t");
    does_not_fire("gelu-tanh", &func(two, &minus, "f32[2,3]"));
    // Large |z| on both sides: the saturated ends agree (u and 0), no NaN.
    let g = func(two, dsl, "f32[2,3]");
    let (out, _) = run_rules(&["gelu-tanh"], &g);
    let mut f = feeds(&g);
    f.insert("z".into(), f32v(&[2, 3], &[-60.0, -9.0, -0.5, 0.5, 9.0, 60.0]));
    let (a, b) = (interp::run(&g, &f).unwrap(), interp::run(&out, &f).unwrap());
    assert_close(&b[0].to_f64_vec(), &a[0].to_f64_vec(), 1e-6);
}

#[test]
fn movement_composes_and_cancels() {
    let e = "  %y = exp %x : f32[2,3]";
    let cases = [
        (
            "reshape-reshape",
            "  %r = reshape %x : f32[6]\n  %s = reshape %r : f32[3,2]\n  %y = exp %s : f32[3,2]",
            "  %s = reshape %x : f32[3,2]\n  %y = exp %s : f32[3,2]",
            "f32[3,2]",
        ),
        (
            "reshape-reshape",
            "  %r = reshape %x : f32[6]\n  %s = reshape %r : f32[2,3]\n  %y = exp %s : f32[2,3]",
            e,
            "f32[2,3]",
        ),
        (
            "permute-permute",
            "  %p = permute %x {perm=[1,0]} : f32[3,2]\n  %q = permute %p {perm=[1,0]} : f32[2,3]\n  %y = exp %q : f32[2,3]",
            e,
            "f32[2,3]",
        ),
        (
            "broadcast-broadcast",
            "  %b = broadcast %x {dims=[1,2]} : f32[4,2,3]\n  %c = broadcast %b {dims=[0,2,3]} : f32[4,5,2,3]\n  %y = exp %c : f32[4,5,2,3]",
            "  %c = broadcast %x {dims=[2,3]} : f32[4,5,2,3]\n  %y = exp %c : f32[4,5,2,3]",
            "f32[4,5,2,3]",
        ),
        ("noop-movement", "  %p = permute %x {perm=[0,1]} : f32[2,3]\n  %y = exp %p : f32[2,3]", e, "f32[2,3]"),
        (
            "noop-movement",
            "  %p = slice %x {start=[0,0], stop=[2,3], step=[1,1]} : f32[2,3]\n  %y = exp %p : f32[2,3]",
            e,
            "f32[2,3]",
        ),
    ];
    for (rule, start, goal, ty) in cases {
        rewrites(&[rule], &func(X, start, ty), &func(X, goal, ty));
    }
    // Three permutations of rank 3 compose to one.
    let start = func(
        "%x: f32[2,3,4]",
        "  %p = permute %x {perm=[1,2,0]} : f32[3,4,2]\n  %q = permute %p {perm=[2,0,1]} : f32[2,3,4]\n  %r = permute %q {perm=[0,2,1]} : f32[2,4,3]\n  %y = exp %r : f32[2,4,3]",
        "f32[2,4,3]",
    );
    let goal = func(
        "%x: f32[2,3,4]",
        "  %r = permute %x {perm=[0,2,1]} : f32[2,4,3]\n  %y = exp %r : f32[2,4,3]",
        "f32[2,4,3]",
    );
    rewrites(&["permute-permute"], &start, &goal);
}

#[test]
fn transposes_sink_and_fold_into_matmuls() {
    // exp(xᵀ)ᵀ = exp(x): sinking brings the two transposes together, where they cancel.
    let start = func(
        X,
        "  %p = permute %x {perm=[1,0]} : f32[3,2]\n  %e = exp %p : f32[3,2]\n  %y = permute %e {perm=[1,0]} : f32[2,3]",
        "f32[2,3]",
    );
    rewrites(&["sink-permute-unary", "permute-permute"], &start, &func(X, "  %y = exp %x : f32[2,3]", "f32[2,3]"));
    let two = "%a: f32[2,3], %b: f32[2,3]";
    let start = func(
        two,
        "  %p = permute %a {perm=[1,0]} : f32[3,2]\n  %q = permute %b {perm=[1,0]} : f32[3,2]\n  %y = add %p, %q : f32[3,2]",
        "f32[3,2]",
    );
    let goal = func(two, "  %s = add %a, %b : f32[2,3]\n  %y = permute %s {perm=[1,0]} : f32[3,2]", "f32[3,2]");
    rewrites(&["sink-permute-binary"], &start, &goal);
    does_not_fire(
        "sink-permute-binary",
        &func(
            "%a: f32[2,2], %b: f32[2,2]",
            "  %p = permute %a {perm=[1,0]} : f32[2,2]\n  %y = add %p, %b : f32[2,2]",
            "f32[2,2]",
        ),
    );
    // Aᵀ Bᵀ = (B A)ᵀ.
    let ab = "%a: f32[8,2], %b: f32[4,8]";
    let start = func(
        ab,
        "  %p = permute %a {perm=[1,0]} : f32[2,8]\n  %q = permute %b {perm=[1,0]} : f32[8,4]\n  %y = matmul %p, %q : f32[2,4]",
        "f32[2,4]",
    );
    let goal = func(ab, "  %m = matmul %b, %a : f32[4,2]\n  %y = permute %m {perm=[1,0]} : f32[2,4]", "f32[2,4]");
    rewrites(&["matmul-of-transposes"], &start, &goal);
    // (A B)ᵀ = Bᵀ Aᵀ, taken when the product is larger than its operands.
    let ab = "%a: f32[64,2], %b: f32[2,64]";
    let start =
        func(ab, "  %m = matmul %a, %b : f32[64,64]\n  %y = permute %m {perm=[1,0]} : f32[64,64]", "f32[64,64]");
    let goal = func(
        ab,
        "  %q = permute %b {perm=[1,0]} : f32[64,2]\n  %p = permute %a {perm=[1,0]} : f32[2,64]\n  %y = matmul %q, %p : f32[64,64]",
        "f32[64,64]",
    );
    rewrites(&["transpose-of-matmul"], &start, &goal);
    // A permutation of batch axes is not a transpose of the matrices.
    does_not_fire(
        "matmul-of-transposes",
        &func(
            "%a: f32[2,3,4], %b: f32[3,2,4]",
            "  %p = permute %a {perm=[1,0,2]} : f32[3,2,4]\n  %q = permute %b {perm=[0,2,1]} : f32[3,4,2]\n  %y = matmul %p, %q : f32[3,2,2]",
            "f32[3,2,2]",
        ),
    );
}

#[test]
fn matmul_chains_reassociate_to_the_cheaper_order() {
    let abc = "%a: f32[8,64], %b: f32[64,64], %c: f32[64,2]";
    let left = "  %ab = matmul %a, %b : f32[8,64]\n  %y = matmul %ab, %c : f32[8,2]";
    let right = "  %bc = matmul %b, %c : f32[64,2]\n  %y = matmul %a, %bc : f32[8,2]";
    rewrites(&["matmul-assoc-left"], &func(abc, left, "f32[8,2]"), &func(abc, right, "f32[8,2]"));
    let abc = "%a: f32[2,64], %b: f32[64,64], %c: f32[64,8]";
    let left = "  %ab = matmul %a, %b : f32[2,64]\n  %y = matmul %ab, %c : f32[2,8]";
    let right = "  %bc = matmul %b, %c : f32[64,8]\n  %y = matmul %a, %bc : f32[2,8]";
    rewrites(&["matmul-assoc-right"], &func(abc, right, "f32[2,8]"), &func(abc, left, "f32[2,8]"));
}

/// Attention's scaling of the scores moves onto the query (here a quarter of the scores' size,
/// and half the keys'), in either operand order; onto the right operand when it is the
/// smaller; a scaling by a non-constant stays.
#[test]
fn constant_scalings_move_onto_the_smaller_operand() {
    let qk = "%q: f32[2,64,32], %k: f32[2,32,128]";
    let t = "f32[2,64,128]";
    let start = |c: &str| format!("  %s = matmul %q, %k : {t}\n  %c = const 0.125 : {t}\n  %y = mul {c} : {t}");
    let goal =
        "  %c = const 0.125 : f32[2,64,32]\n  %qs = mul %q, %c : f32[2,64,32]\n  %y = matmul %qs, %k : f32[2,64,128]";
    for order in ["%s, %c", "%c, %s"] {
        rewrites(&["scale-into-operand"], &func(qk, &start(order), t), &func(qk, goal, t));
    }
    // The key is the smaller one here.
    let ab = "%a: f32[64,64], %b: f32[64,2]";
    let onto_b = "  %c = const 3.0 : f32[64,2]\n  %bs = mul %b, %c : f32[64,2]\n  %y = matmul %a, %bs : f32[64,2]";
    let from = "  %p = matmul %a, %b : f32[64,2]\n  %c = const 3.0 : f32[64,2]\n  %y = mul %p, %c : f32[64,2]";
    rewrites(&["scale-into-operand"], &func(ab, from, "f32[64,2]"), &func(ab, onto_b, "f32[64,2]"));
    does_not_fire(
        "scale-into-operand",
        &func(&format!("{qk}, %w: {t}"), &format!("  %s = matmul %q, %k : {t}\n  %y = mul %s, %w : {t}"), t),
    );
    // The product is also read unscaled (Adam's `g·0.1` and `g·g`): scaling an operand would
    // need a second product.
    let both = format!(
        "  %s = matmul %q, %k : {t}\n  %c = const 0.125 : {t}\n  %m = mul %s, %c : {t}\n  %g = mul %s, %s : {t}\n  %y = add %m, %g : {t}"
    );
    does_not_fire("scale-into-operand", &func(qk, &both, t));
}

/// A recurrent net's input projections written per step, `x_t · W` for every step of `X`
/// (batch-major `[B, T, D]` and time-major `[T, B, D]`), become one product over the whole
/// sequence; with one step used, the per-step product stays (the whole would cost more); a
/// slice of two steps is not a step.
#[test]
fn per_step_products_become_one_product_over_the_sequence() {
    let matmuls =
        |g: &Graph| g.to_string().lines().filter(|l| l.contains(" = matmul ")).map(str::to_string).collect::<Vec<_>>();
    let batch_major =
        |t: usize| (format!("{{start=[0,{t},0], stop=[4,{},16], step=[1,1,1]}}", t + 1), "4,1,16".to_string());
    let time_major =
        |t: usize| (format!("{{start=[{t},0,0], stop=[{},4,16], step=[1,1,1]}}", t + 1), "1,4,16".to_string());
    for (x, slice) in
        [("f32[4,8,16]", &batch_major as &dyn Fn(usize) -> (String, String)), ("f32[8,4,16]", &time_major)]
    {
        let g = build_steps(x, slice, 8);
        let (out, report) = run_rules(&["sequence-product"], &g);
        assert!(report.fired.get("sequence-product").copied().unwrap_or(0) > 0, "{report}");
        assert_eq!(matmuls(&out).len(), 1, "{out}");
        assert!(matmuls(&out)[0].contains("f32[32,32]"), "{out}");
        same_meaning(&g, &out);
        // One step alone keeps its small product.
        let one = build_steps(x, slice, 1);
        let (out, _) = run_rules(&["sequence-product"], &one);
        assert!(matmuls(&out).iter().all(|m| m.contains("f32[4,32]")), "{out}");
    }
    let two = func(
        "%x: f32[4,8,16], %w: f32[16,32]",
        "  %s = slice %x {start=[0,0,0], stop=[4,2,16], step=[1,1,1]} : f32[4,2,16]\n  %r = reshape %s : f32[8,16]\n  %y = matmul %r, %w : f32[8,32]",
        "f32[8,32]",
    );
    does_not_fire("sequence-product", &two);
}

/// `tile-pads`: the gradient of three slices that tile an axis, summed as zero pads in any
/// order, is one pad of their concatenation in slice order. Pads that leave a gap, overlap,
/// or fill with another value are left; a sum whose other term is no pad keeps that term and
/// tiles the rest.
#[test]
fn sums_of_tiling_pads_become_one_pad() {
    let args = "%a: f32[2,3], %b: f32[2,2], %c: f32[2,1]";
    let start = func(
        args,
        "  %pb = pad %b {low=[1,3], high=[1,1], value=0.0} : f32[4,6]\n  %pa = pad %a {low=[1,0], high=[1,3], value=0.0} : f32[4,6]\n  %pc = pad %c {low=[1,5], high=[1,0], value=0.0} : f32[4,6]\n  %s = add %pb, %pa : f32[4,6]\n  %y = add %pc, %s : f32[4,6]",
        "f32[4,6]",
    );
    let goal = func(
        args,
        "  %t = concat %a, %b, %c {axis=1} : f32[2,6]\n  %y = pad %t {low=[1,0], high=[1,0], value=0.0} : f32[4,6]",
        "f32[4,6]",
    );
    rewrites(&["tile-pads"], &start, &goal);
    for (args, body, ty) in [
        (
            "%a: f32[2], %b: f32[2]",
            "  %p = pad %a {low=[0], high=[3], value=0.0} : f32[5]\n  %q = pad %b {low=[3], high=[0], value=0.0} : f32[5]\n  %y = add %p, %q : f32[5]",
            "f32[5]",
        ),
        (
            "%a: f32[2], %b: f32[2]",
            "  %p = pad %a {low=[0], high=[1], value=0.0} : f32[3]\n  %q = pad %b {low=[1], high=[0], value=0.0} : f32[3]\n  %y = add %p, %q : f32[3]",
            "f32[3]",
        ),
        (
            "%a: f32[2], %b: f32[2]",
            "  %p = pad %a {low=[0], high=[2], value=1.0} : f32[4]\n  %q = pad %b {low=[2], high=[0], value=0.0} : f32[4]\n  %y = add %p, %q : f32[4]",
            "f32[4]",
        ),
    ] {
        does_not_fire("tile-pads", &func(args, body, ty));
    }
    let args = "%a: f32[2], %b: f32[2], %x: f32[4]";
    let start = func(
        args,
        "  %p = pad %a {low=[0], high=[2], value=0.0} : f32[4]\n  %q = pad %b {low=[2], high=[0], value=0.0} : f32[4]\n  %s = add %p, %q : f32[4]\n  %y = add %s, %x : f32[4]",
        "f32[4]",
    );
    let goal = func(
        args,
        "  %t = concat %a, %b {axis=0} : f32[4]\n  %s = pad %t {low=[0], high=[0], value=0.0} : f32[4]\n  %y = add %s, %x : f32[4]",
        "f32[4]",
    );
    rewrites(&["tile-pads"], &start, &goal);
}

/// `tile-products` with `concat-of-permutes`: `x₀ᵀg₀ + x₁ᵀg₁ + x₂ᵀg₂` (a recurrent weight's
/// gradient) is one product over the concatenated contraction axis, the transpose outside the
/// concatenation so a GEMM reads it through strides. Extraction keeps the sum where the
/// concatenations cost more than they save: projections through several square weights (a
/// transformer's q, k, v input gradient would copy the weights), or a product that is needed
/// on its own anyway.
#[test]
fn sums_of_products_become_one_product() {
    let args = "%x0: f32[2,64], %x1: f32[2,64], %x2: f32[2,64], %g0: f32[2,256], %g1: f32[2,256], %g2: f32[2,256]";
    let mut body = String::new();
    for t in 0..3 {
        body += &format!(
            "  %t{t} = permute %x{t} {{perm=[1,0]}} : f32[64,2]\n  %p{t} = matmul %t{t}, %g{t} : f32[64,256]\n"
        );
    }
    body += "  %s = add %p0, %p1 : f32[64,256]\n  %y = add %s, %p2 : f32[64,256]";
    let start = func(args, &body, "f32[64,256]");
    let goal = func(
        args,
        "  %x = concat %x0, %x1, %x2 {axis=0} : f32[6,64]\n  %t = permute %x {perm=[1,0]} : f32[64,6]\n  %g = concat %g0, %g1, %g2 {axis=0} : f32[6,256]\n  %y = matmul %t, %g : f32[64,256]",
        "f32[64,256]",
    );
    rewrites(&["tile-products", "concat-of-permutes"], &start, &goal);
    let priced_out = |g: Graph| {
        let (out, report) = run_rules(&["tile-products"], &g);
        assert!(report.fired.get("tile-products").copied().unwrap_or(0) > 0, "{report}");
        assert_eq!(canon(&out), canon(&g), "priced out:\n{report}");
    };
    priced_out(func(
        "%d0: f32[8,64], %d1: f32[8,64], %w0: f32[64,64], %w1: f32[64,64]",
        "  %p = matmul %d0, %w0 : f32[8,64]\n  %q = matmul %d1, %w1 : f32[8,64]\n  %y = add %p, %q : f32[8,64]",
        "f32[8,64]",
    ));
    priced_out(parse_graph("func @f(%a: f32[2,3], %b: f32[3,2], %c: f32[2,3], %d: f32[3,2]) -> (y: f32[2,2], z: f32[2,2]) {\n  %4 = matmul %a, %b : f32[2,2]\n  %5 = matmul %c, %d : f32[2,2]\n  %6 = add %4, %5 : f32[2,2]\n  return %6, %4\n}\n").unwrap());
    does_not_fire(
        "tile-products",
        &func(
            "%a: f32[2,3], %b: f32[3,2], %c: f32[2,2]",
            "  %p = matmul %a, %b : f32[2,2]\n  %y = add %p, %c : f32[2,2]",
            "f32[2,2]",
        ),
    );
}

/// `concat-of-permutes`: parts transposed alike concatenate before one transpose; parts
/// permuted differently are left.
#[test]
fn concatenated_permutes_permute_once() {
    let args = "%a: f32[2,3,4], %b: f32[2,5,4]";
    let start = func(
        args,
        "  %p = permute %a {perm=[2,0,1]} : f32[4,2,3]\n  %q = permute %b {perm=[2,0,1]} : f32[4,2,5]\n  %y = concat %p, %q {axis=2} : f32[4,2,8]",
        "f32[4,2,8]",
    );
    let goal = func(
        args,
        "  %c = concat %a, %b {axis=1} : f32[2,8,4]\n  %y = permute %c {perm=[2,0,1]} : f32[4,2,8]",
        "f32[4,2,8]",
    );
    rewrites(&["concat-of-permutes"], &start, &goal);
    does_not_fire(
        "concat-of-permutes",
        &func(
            "%a: f32[3,2], %b: f32[2,3]",
            "  %p = permute %a {perm=[1,0]} : f32[2,3]\n  %y = concat %p, %b {axis=0} : f32[4,3]",
            "f32[4,3]",
        ),
    );
}

/// Per-step products `reshape(slice(x, t)) · w` of `count` steps, summed.
fn build_steps(x: &str, slice: &dyn Fn(usize) -> (String, String), count: usize) -> Graph {
    let mut body = String::new();
    for t in 0..count {
        let (attrs, dims) = slice(t);
        body += &format!(
            "  %s{t} = slice %x {attrs} : f32[{dims}]\n  %r{t} = reshape %s{t} : f32[4,16]\n  %p{t} = matmul %r{t}, %w : f32[4,32]\n"
        );
        body += &if t == 0 {
            "  %y0 = neg %p0 : f32[4,32]\n".to_string()
        } else {
            format!("  %y{t} = add %y{}, %p{t} : f32[4,32]\n", t - 1)
        };
    }
    body += &format!("  %y = neg %y{} : f32[4,32]", count - 1);
    func(&format!("%x: {x}, %w: f32[16,32]"), &body, "f32[4,32]")
}

#[test]
fn matmuls_sharing_an_operand_merge() {
    let args = "%x: f32[4096,64], %w1: f32[64,8], %w2: f32[64,8]";
    let start = func(
        args,
        "  %p = matmul %x, %w1 : f32[4096,8]\n  %q = matmul %x, %w2 : f32[4096,8]\n  %y = add %p, %q : f32[4096,8]",
        "f32[4096,8]",
    );
    let goal = func(
        args,
        "  %w = concat %w1, %w2 {axis=1} : f32[64,16]\n  %m = matmul %x, %w : f32[4096,16]\n  %p = slice %m {start=[0,0], stop=[4096,8], step=[1,1]} : f32[4096,8]\n  %q = slice %m {start=[0,8], stop=[4096,16], step=[1,1]} : f32[4096,8]\n  %y = add %p, %q : f32[4096,8]",
        "f32[4096,8]",
    );
    rewrites(&["merge-shared-lhs"], &start, &goal);
    // Batched matmuls are left alone.
    does_not_fire(
        "merge-shared-lhs",
        &func(
            "%x: f32[2,4,4], %w1: f32[2,4,4], %w2: f32[2,4,4]",
            "  %p = matmul %x, %w1 : f32[2,4,4]\n  %q = matmul %x, %w2 : f32[2,4,4]\n  %y = add %p, %q : f32[2,4,4]",
            "f32[2,4,4]",
        ),
    );
}

#[test]
fn reductions_of_broadcasts_and_of_reductions() {
    let start = func(
        "%x: f32[3]",
        "  %b = broadcast %x {dims=[1]} : f32[4,3]\n  %y = reduce_sum %b {axes=[0]} : f32[3]",
        "f32[3]",
    );
    let goal = func("%x: f32[3]", "  %c = const 4.0 : f32[3]\n  %y = mul %x, %c : f32[3]", "f32[3]");
    rewrites(&["reduce-of-broadcast"], &start, &goal);
    let start = func(
        "%x: f32[3]",
        "  %b = broadcast %x {dims=[1]} : f32[4,3]\n  %y = reduce_max %b {axes=[0]} : f32[3]",
        "f32[3]",
    );
    rewrites(
        &["reduce-of-broadcast"],
        &start,
        &func("%x: f32[3]", "  %y = stop_gradient %x : f32[3]", "f32[3]").clone_with_identity(),
    );
    // A stretched axis is not a copy of x: [1] broadcast to [4] summed is 4x, not x*1 of shape [1].
    does_not_fire(
        "reduce-of-broadcast",
        &func(
            "%x: f32[1,3]",
            "  %b = broadcast %x {dims=[0,1]} : f32[4,3]\n  %y = reduce_sum %b {axes=[0]} : f32[3]",
            "f32[3]",
        ),
    );
    let start = func(
        "%x: f32[2,3,4]",
        "  %r = reduce_sum %x {axes=[1]} : f32[2,4]\n  %y = reduce_sum %r {axes=[1]} : f32[2]",
        "f32[2]",
    );
    rewrites(
        &["reduce-reduce"],
        &start,
        &func("%x: f32[2,3,4]", "  %y = reduce_sum %x {axes=[1,2]} : f32[2]", "f32[2]"),
    );
    does_not_fire(
        "reduce-reduce",
        &func(
            "%x: f32[2,3,4]",
            "  %r = reduce_max %x {axes=[1]} : f32[2,4]\n  %y = reduce_sum %r {axes=[1]} : f32[2]",
            "f32[2]",
        ),
    );
}

/// Test-only: the goal graph whose output is `x` itself.
trait IdentityGoal {
    fn clone_with_identity(&self) -> Graph;
}

impl IdentityGoal for Graph {
    fn clone_with_identity(&self) -> Graph {
        let mut g = self.clone();
        let x = g.leaf("x").unwrap();
        g.clear_outputs();
        g.add_output("y", x).unwrap();
        g
    }
}

#[test]
fn every_rule_is_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/rewrites.md")).unwrap();
    for r in all_rules() {
        assert!(doc.contains(&format!("`{}`", r.name)), "docs/rewrites.md does not list `{}`", r.name);
    }
}

/// Softmax followed by a hand-written cross-entropy (`−Σ t·log(softmax x)`) becomes the
/// stable log-softmax form through the default pipeline (`log-softmax`: log(e/s) = a − log s):
/// with logits 200 apart, the softmax's small probabilities underflow to 0 and the written form
/// gives ∞ or NaN; the optimized graph gives the finite loss of an f64 reference.
#[test]
fn softmax_then_cross_entropy_becomes_the_stable_form() {
    use kiln::prelude::Builder;
    let b = Builder::new("ce");
    let x = b.input("x", DType::F32, [2, 3]);
    let t = b.input("t", DType::F32, [2, 3]);
    let p = x.softmax(-1);
    let loss = -(t * p.log()).sum(&[-1]);
    b.output("loss", loss);
    let g = b.finish().unwrap();
    let (opt, _) = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap().run(&g).unwrap();
    let text = opt.to_string();
    assert!(!text.contains(" div "), "the division by the sum should be gone:\n{text}");
    let logits = [0.0f32, 200.0, -10.0, 1.0, 2.0, 3.0];
    let targets = [1.0f32, 0.0, 0.0, 0.0, 0.5, 0.5];
    let feeds: HashMap<String, Value> =
        [("x".to_string(), f32v(&[2, 3], &logits)), ("t".to_string(), f32v(&[2, 3], &targets))].into_iter().collect();
    let naive = interp::run(&g, &feeds).unwrap()[0].to_f64_vec();
    assert!(!naive[0].is_finite(), "the written form should overflow: {naive:?}");
    let got = kiln::compile(&g, kiln::Fusion::Fused).unwrap().run(&feeds).unwrap()[0].to_f64_vec();
    let want: Vec<f64> = (0..2)
        .map(|r| {
            let row: Vec<f64> = logits[3 * r..3 * r + 3].iter().map(|v| *v as f64).collect();
            let m = row.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            -(0..3).map(|j| targets[3 * r + j] as f64 * (row[j] - lse)).sum::<f64>()
        })
        .collect();
    assert_close(&got, &want, 1e-5);
}

/// A sum of `pieces` gradients of slices of `%x: f64[rows, cols]` along `axis`, each zero-padded
/// back, added in the order `order` picks (a random tree: each step adds two pending terms),
/// plus `%x` itself when `extra`; and a sum of `pieces` products `aₜᵀ·bₜ` (or `aₜ·bₜ`) of
/// random inner widths. Both as one graph with two outputs.
fn random_sums(rows: usize, cols: usize, axis: usize, cuts: &[usize], order: &[usize], extra: bool) -> Graph {
    let len = [rows, cols][axis];
    let mut bounds: Vec<usize> = cuts.iter().map(|c| 1 + c % (len - 1)).collect();
    bounds.extend([0, len]);
    bounds.sort_unstable();
    bounds.dedup();
    let mut body = String::new();
    let mut pending: Vec<String> = Vec::new();
    for (i, w) in bounds.windows(2).enumerate() {
        let (lo, hi) = (w[0], w[1]);
        let (start, stop, dims) = match axis {
            0 => (format!("[{lo},0]"), format!("[{hi},{cols}]"), format!("{},{cols}", hi - lo)),
            _ => (format!("[0,{lo}]"), format!("[{rows},{hi}]"), format!("{rows},{}", hi - lo)),
        };
        let (low, high) = match axis {
            0 => (format!("[{lo},0]"), format!("[{},0]", len - hi)),
            _ => (format!("[0,{lo}]"), format!("[0,{}]", len - hi)),
        };
        body += &format!(
            "  %s{i} = slice %x {{start={start}, stop={stop}, step=[1,1]}} : f64[{dims}]\n  %k{i} = const {}.0 : f64[{dims}]\n  %g{i} = mul %s{i}, %k{i} : f64[{dims}]\n  %p{i} = pad %g{i} {{low={low}, high={high}, value=0.0}} : f64[{rows},{cols}]\n",
            i + 2
        );
        pending.push(format!("%p{i}"));
    }
    if extra {
        pending.push("%x".into());
    }
    let mut products = Vec::new();
    for (t, w) in bounds.windows(2).enumerate() {
        let k = w[1] - w[0];
        if t % 2 == 0 {
            body += &format!("  %u{t} = permute %a{t} {{perm=[1,0]}} : f64[{rows},{k}]\n");
        } else {
            body += &format!("  %u{t} = mul %a{t}, %a{t} : f64[{rows},{k}]\n");
        }
        body += &format!("  %m{t} = matmul %u{t}, %b{t} : f64[{rows},3]\n");
        products.push(format!("%m{t}"));
    }
    let mut n = 0;
    let mut add = |pending: &mut Vec<String>, body: &mut String, ty: &str, pick: usize| {
        let i = pick % (pending.len() - 1);
        let (a, b) = (pending.remove(i), pending.remove(i));
        *body += &format!("  %q{n} = add {a}, {b} : f64[{ty}]\n");
        pending.insert(i, format!("%q{n}"));
        n += 1;
    };
    for pick in order.iter().cycle().take(4 * bounds.len()) {
        if pending.len() > 1 {
            add(&mut pending, &mut body, &format!("{rows},{cols}"), *pick);
        }
        if products.len() > 1 {
            add(&mut products, &mut body, &format!("{rows},3"), *pick);
        }
    }
    let mut args = vec![format!("%x: f64[{rows},{cols}]")];
    for (t, w) in bounds.windows(2).enumerate() {
        let k = w[1] - w[0];
        let a = if t % 2 == 0 { format!("{k},{rows}") } else { format!("{rows},{k}") };
        args.push(format!("%a{t}: f64[{a}], %b{t}: f64[{k},3]"));
    }
    let text = format!(
        "func @t({}) -> (y: f64[{rows},{cols}], z: f64[{rows},3]) {{\n{body}  return {}, {}\n}}\n",
        args.join(", "),
        pending[0],
        products[0]
    );
    parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Random sums of slice gradients and of products, in random tree shapes, through every
    /// stage of the optimizer: the same values as the interpreter's on the input.
    #[test]
    fn random_sums_through_the_tiling_rules_keep_their_meaning(
        rows in 2usize..7,
        cols in 2usize..9,
        axis in 0usize..2,
        cuts in proptest::collection::vec(0usize..64, 1..6),
        order in proptest::collection::vec(0usize..8, 1..8),
        extra in proptest::bool::ANY,
    ) {
        let g = random_sums(rows, cols, axis, &cuts, &order, extra);
        let (out, report) = kiln::passes::egraph::optimize(&g, &EgraphConfig::default()).unwrap();
        kiln::ir::verify(&out).unwrap();
        proptest::prop_assert!(report.cost_after <= report.cost_before);
        // Two or more pads always tile: the whole sum, or all of it but `%x`.
        let pieces = g.nodes().filter(|(_, n)| n.op.name() == "pad").count();
        proptest::prop_assert!(pieces < 2 || report.fired.contains_key("tile-pads"), "{g}\n{report}");
        same_meaning(&g, &out);
    }
}
