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

/// Every registry entry makes the pass it names, and a pipeline string of all of them parses.
#[test]
fn the_pass_registry_names_each_pass() {
    for p in kiln::passes::pipeline::PASSES {
        assert_eq!((p.make)().name(), p.name);
    }
    let all = kiln::passes::pipeline::known_passes().join(",");
    assert_eq!(Pipeline::parse(&all).unwrap().names(), kiln::passes::pipeline::known_passes());
    let e = Pipeline::parse("cse,bogus").err().unwrap().to_string();
    assert!(e.contains("unknown pass `bogus` (known passes: dce, cse, fold, egraph, layout, nhwc)"), "{e}");
}
