//! The pass pipeline: parsing pass lists, dead-code elimination, verification after each pass.

mod common;

use common::*;
use kiln::ir::parse_graph;
use kiln::passes::{PassError, Pipeline};

#[test]
fn dce_drops_dead_nodes_keeps_the_signature_and_the_meaning() {
    let text = "func @f(%x: f32[2], %unused: f32[2]) -> (y: f32[2]) {\n  %2 = exp %x : f32[2]\n  %3 = neg %x : f32[2]\n  %4 = sin %3 : f32[2]\n  %5 = add %2, %2 : f32[2]\n  return %5\n}\n";
    let g = parse_graph(text).unwrap();
    let (out, reports) = Pipeline::parse("dce").unwrap().run(&g).unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!((reports[0].pass, reports[0].nodes_before, reports[0].nodes_after), ("dce", 6, 4));
    let want = "func @f(\n    %x: f32[2],\n    %unused: f32[2],\n) -> (y: f32[2]) {\n  %2 = exp %x : f32[2]\n  %3 = add %2, %2 : f32[2]\n  return %3\n}\n";
    assert_eq!(out.to_string(), want);
    let feeds = [("x", f32v(&[2], &[0.5, -1.0])), ("unused", f32v(&[2], &[0.0, 0.0]))];
    assert_eq!(run1(text, &feeds), run1(&out.to_string(), &feeds));
}

#[test]
fn unknown_passes_are_named() {
    let Err(e) = Pipeline::parse("dce, frobnicate") else { panic!("expected an error") };
    assert!(matches!(&e, PassError::UnknownPass { name, .. } if name == "frobnicate"), "{e}");
    assert!(e.to_string().contains("known passes: dce"));
    assert_eq!(Pipeline::parse(" dce ,, dce").unwrap().names(), vec!["dce", "dce"]);
}

/// `tile`: the gradient of three slices that tile an axis, summed as zero pads, becomes one
/// pad of a concatenation in slice order (whatever order the sum has), with the same values;
/// pads that overlap, leave a gap, or fill with another value are left alone.
#[test]
fn tile_turns_sums_of_tiling_pads_into_a_concat() {
    let text = "func @f(%a: f32[2,3], %b: f32[2,2], %c: f32[2,1]) -> (y: f32[4,6]) {\n  %3 = pad %b {low=[1,3], high=[1,1], value=0.0} : f32[4,6]\n  %4 = pad %a {low=[1,0], high=[1,3], value=0.0} : f32[4,6]\n  %5 = pad %c {low=[1,5], high=[1,0], value=0.0} : f32[4,6]\n  %6 = add %3, %4 : f32[4,6]\n  %7 = add %5, %6 : f32[4,6]\n  return %7\n}\n";
    let g = parse_graph(text).unwrap();
    let (out, _) = Pipeline::parse("tile").unwrap().run(&g).unwrap();
    let want = "func @f(\n    %a: f32[2,3],\n    %b: f32[2,2],\n    %c: f32[2,1],\n) -> (y: f32[4,6]) {\n  %3 = concat %a, %b, %c {axis=1} : f32[2,6]\n  %4 = pad %3 {low=[1,0], high=[1,0], value=0.0} : f32[4,6]\n  return %4\n}\n";
    assert_eq!(out.to_string(), want);
    let feeds = [
        ("a", f32v(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0])),
        ("b", f32v(&[2, 2], &[7.0, 8.0, 9.0, 10.0])),
        ("c", f32v(&[2, 1], &[11.0, 12.0])),
    ];
    assert_eq!(run1(text, &feeds), run1(&out.to_string(), &feeds));
    // A gap between the supports, an overlap, and a pad with a non-zero fill.
    for text in [
        "func @f(%a: f32[2], %b: f32[2]) -> (y: f32[5]) {\n  %2 = pad %a {low=[0], high=[3], value=0.0} : f32[5]\n  %3 = pad %b {low=[3], high=[0], value=0.0} : f32[5]\n  %4 = add %2, %3 : f32[5]\n  return %4\n}\n",
        "func @f(%a: f32[2], %b: f32[2]) -> (y: f32[3]) {\n  %2 = pad %a {low=[0], high=[1], value=0.0} : f32[3]\n  %3 = pad %b {low=[1], high=[0], value=0.0} : f32[3]\n  %4 = add %2, %3 : f32[3]\n  return %4\n}\n",
        "func @f(%a: f32[2], %b: f32[2]) -> (y: f32[4]) {\n  %2 = pad %a {low=[0], high=[2], value=1.0} : f32[4]\n  %3 = pad %b {low=[2], high=[0], value=0.0} : f32[4]\n  %4 = add %2, %3 : f32[4]\n  return %4\n}\n",
    ] {
        let g = parse_graph(text).unwrap();
        let (out, _) = Pipeline::parse("tile").unwrap().run(&g).unwrap();
        assert_eq!(out.to_string(), g.to_string(), "left alone");
    }
}

/// `tile` on products: `xᵀ₀·g₀ + xᵀ₁·g₁ + xᵀ₂·g₂` (a recurrent weight's gradient) becomes one
/// product over the concatenated contraction axis, the transpose kept outside the concat so a
/// GEMM reads it through strides; the values agree. A sum the cost model prices higher after
/// the rewrite, and a product also used elsewhere, are left.
#[test]
fn tile_turns_sums_of_products_into_one_product() {
    let text = "func @f(%x0: f32[2,64], %x1: f32[2,64], %x2: f32[2,64], %g0: f32[2,256], %g1: f32[2,256], %g2: f32[2,256]) -> (y: f32[64,256]) {\n  %6 = permute %x0 {perm=[1,0]} : f32[64,2]\n  %7 = matmul %6, %g0 : f32[64,256]\n  %8 = permute %x1 {perm=[1,0]} : f32[64,2]\n  %9 = matmul %8, %g1 : f32[64,256]\n  %10 = permute %x2 {perm=[1,0]} : f32[64,2]\n  %11 = matmul %10, %g2 : f32[64,256]\n  %12 = add %7, %9 : f32[64,256]\n  %13 = add %12, %11 : f32[64,256]\n  return %13\n}\n";
    let g = parse_graph(text).unwrap();
    let (out, _) = Pipeline::parse("tile").unwrap().run(&g).unwrap();
    let printed = out.to_string();
    assert!(
        printed.contains("concat %x0, %x1, %x2 {axis=0} : f32[6,64]")
            && printed.contains("permute %6 {perm=[1,0]} : f32[64,6]")
            && printed.contains("concat %g0, %g1, %g2 {axis=0} : f32[6,256]")
            && printed.matches("matmul").count() == 1,
        "{printed}"
    );
    let r = |i: usize| pseudo(128, 40 + i as u64).iter().map(|v| *v as f32).collect::<Vec<_>>();
    let g4 = |i: usize| pseudo(512, 50 + i as u64).iter().map(|v| *v as f32).collect::<Vec<_>>();
    let feeds = [
        ("x0", f32v(&[2, 64], &r(0))),
        ("x1", f32v(&[2, 64], &r(1))),
        ("x2", f32v(&[2, 64], &r(2))),
        ("g0", f32v(&[2, 256], &g4(0))),
        ("g1", f32v(&[2, 256], &g4(1))),
        ("g2", f32v(&[2, 256], &g4(2))),
    ];
    assert_close(&run1(text, &feeds).to_f64_vec(), &run1(&printed, &feeds).to_f64_vec(), 1e-6);
    // Priced out: projections of one activation through several square weights would copy
    // the weights (a transformer's q, k, v gradient) for nothing.
    let qkv = "func @f(%d0: f32[8,64], %d1: f32[8,64], %w0: f32[64,64], %w1: f32[64,64]) -> (y: f32[8,64]) {\n  %4 = matmul %d0, %w0 : f32[8,64]\n  %5 = matmul %d1, %w1 : f32[8,64]\n  %6 = add %4, %5 : f32[8,64]\n  return %6\n}\n";
    let g = parse_graph(qkv).unwrap();
    let (out, _) = Pipeline::parse("tile").unwrap().run(&g).unwrap();
    assert_eq!(out.to_string(), g.to_string(), "priced out");
    // A product also used elsewhere is left.
    let shared = "func @f(%a: f32[2,3], %b: f32[3,2], %c: f32[2,3], %d: f32[3,2]) -> (y: f32[2,2], z: f32[2,2]) {\n  %4 = matmul %a, %b : f32[2,2]\n  %5 = matmul %c, %d : f32[2,2]\n  %6 = add %4, %5 : f32[2,2]\n  return %6, %4\n}\n";
    let g = parse_graph(shared).unwrap();
    let (out, _) = Pipeline::parse("tile").unwrap().run(&g).unwrap();
    assert_eq!(out.to_string(), g.to_string(), "left alone");
}

/// Every registry entry makes the pass it names, and a pipeline string of all of them parses.
#[test]
fn the_pass_registry_names_each_pass() {
    for p in kiln::passes::pipeline::PASSES {
        assert_eq!((p.make)().name(), p.name);
    }
    let all = kiln::passes::pipeline::known_passes().join(",");
    assert_eq!(Pipeline::parse(&all).unwrap().names(), kiln::passes::pipeline::known_passes());
    let e = Pipeline::parse("cse,bogus").err().unwrap().to_string();
    assert!(e.contains("unknown pass `bogus` (known passes: dce, cse, fold, tile, egraph, layout, nhwc)"), "{e}");
}
