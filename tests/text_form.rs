//! The text form: every zoo model prints, parses back to the same text and verifies; the
//! printed IR of each model is snapshot-tested; malformed text gets line and column.

use kiln::ir::{parse_graph, parse_module, print::module_to_string, verify};
use kiln::zoo;

/// The zoo's graphs at batch 2.
fn zoo_graphs() -> Vec<(String, Vec<kiln::ir::Graph>)> {
    zoo::CATALOG
        .iter()
        .map(|e| {
            let models = (e.build)(2, kiln::ir::DType::F32).unwrap_or_else(|err| panic!("{}: {err}", e.name));
            (e.name.to_string(), models.into_iter().map(|m| m.graph).collect())
        })
        .collect()
}

#[test]
fn zoo_models_round_trip_through_text() {
    for (name, graphs) in zoo_graphs() {
        let text = module_to_string(&graphs);
        let parsed = parse_module(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(parsed.len(), graphs.len());
        for g in &parsed {
            verify(g).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert_eq!(module_to_string(&parsed), text, "{name}: print -> parse -> print changed the text");
    }
}

#[test]
fn zoo_model_snapshots() {
    for (name, graphs) in zoo_graphs() {
        insta::assert_snapshot!(name.clone(), module_to_string(&graphs));
    }
}

#[test]
fn hand_written_names_are_renumbered() {
    let text = "func @f(%x: f32[2], %w: f32[2] param zeros) -> (y: f32[2]) {\n  %sum = add %x, %w : f32[2] ; a comment\n  %out = exp %sum : f32[2]\n  return %out\n}\n";
    let g = parse_graph(text).unwrap();
    let want = "func @f(\n    %x: f32[2],\n    %w: f32[2] param zeros,\n) -> (y: f32[2]) {\n  %2 = add %x, %w : f32[2]\n  %3 = exp %2 : f32[2]\n  return %3\n}\n";
    let printed = g.to_string();
    assert_eq!(printed, want);
    assert_eq!(parse_graph(&printed).unwrap().to_string(), printed);
}

#[test]
fn special_float_literals_round_trip() {
    let text = "func @f() -> (a: f32[1], b: f64[1], c: f32[1]) {\n  %0 = const -inf : f32[1]\n  %1 = const 1e-7 : f64[1]\n  %2 = const NaN : f32[1]\n  return %0, %1, %2\n}\n";
    let g = parse_graph(text).unwrap();
    assert_eq!(g.to_string(), text);
}

/// `(text, line, column, part of the message)`.
const MALFORMED: &[(&str, usize, usize, &str)] = &[
    ("", 1, 1, "expected at least one `func`"),
    ("fn @f() -> () {\n  return\n}\n", 1, 1, "expected `func`"),
    ("func f() -> () {\n  return\n}\n", 1, 6, "function name"),
    ("func @f(%x: f33[2]) -> () {\n  return\n}\n", 1, 13, "unknown dtype `f33`"),
    ("func @f(%x: f32[2) -> () {\n  return\n}\n", 1, 18, "expected `]`"),
    (
        "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = frobnicate %x : f32[2]\n  return %0\n}\n",
        2,
        8,
        "unknown op `frobnicate`",
    ),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = neg %z : f32[2]\n  return %0\n}\n", 2, 12, "`%z` is not defined"),
    (
        "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = neg %x : f32[2]\n  %0 = neg %0 : f32[2]\n  return %0\n}\n",
        3,
        3,
        "defined twice",
    ),
    (
        "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = reduce_sum %x : f32[]\n  return %0\n}\n",
        2,
        8,
        "needs the attribute `axes`",
    ),
    (
        "func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = neg %x {axis=1} : f32[2]\n  return %0\n}\n",
        2,
        16,
        "has no attribute `axis`",
    ),
    ("func @f(%x: f32[2]) -> (y: f32[3]) {\n  %0 = neg %x : f32[2]\n  return %0\n}\n", 3, 10, "declared f32[3]"),
    ("func @f(%x: f32[2]) -> (y: f32[2]) {\n  %0 = neg %x : f32[2]\n  return\n}\n", 1, 6, "declares 1 output(s)"),
    ("func @f(%x: f32[2], %x: f32[2]) -> () {\n  return\n}\n", 1, 21, "declared twice"),
    ("func @f(%x: f32[2]) -> () {\n  %0 = neg %x : f32[2]\n", 3, 1, "expected a statement"),
    ("func @f(%x: f32[2] param bogus) -> () {\n  return\n}\n", 1, 26, "unknown initializer"),
    ("func @f() -> () {\n  %0 = const 1.5x : f32[1]\n  return\n}\n", 2, 14, "not a number"),
    ("func @f() -> () {\n  return\n}\n#", 4, 1, "unexpected character `#`"),
];

#[test]
fn malformed_text_reports_line_and_column() {
    for (text, line, col, part) in MALFORMED {
        let e = parse_module(text).expect_err(text);
        assert!(e.message.contains(part), "{text:?}: message {:?} should contain {part:?}", e.message);
        assert_eq!((e.line, e.col), (*line, *col), "{text:?}: {e}");
    }
}
