//! Every op's type rule rejects ill-typed nodes with an error naming the op, through both the
//! graph builder API and the text parser.

use kiln::ir::{BinaryOp, DType, Graph, GraphError, Op, TensorType, parse_graph};

/// `(signature arguments, statement body, declared type, op named in the error, message part)`.
const CASES: &[(&str, &str, &str, &str, &str)] = &[
    ("", "const 1.5", "bool[2]", "const", "bool constants are 0 or 1"),
    ("", "const inf", "i32[2]", "const", "cannot be stored"),
    ("", "iota {axis=2}", "f32[2,3]", "iota", "axis 2"),
    ("", "iota {axis=0}", "bool[2]", "iota", "numeric"),
    ("%s: i32[]", "rng %s {dist=uniform, stream=0}", "f32[2]", "rng", "seed must be i64[]"),
    ("%s: i64[]", "rng %s {dist=normal, stream=0}", "i32[2]", "rng", "draws floats"),
    ("%x: i32[2]", "exp %x", "i32[2]", "exp", "not defined on i32[2]"),
    ("%x: bool[2]", "neg %x", "bool[2]", "neg", "not defined on bool[2]"),
    ("%x: f32[2]", "sqrt %x", "f32[3]", "sqrt", "declared type f32[3]"),
    ("%a: f32[2], %b: f32[3]", "add %a, %b", "f32[2]", "add", "operand types differ: f32[2] vs f32[3]"),
    ("%a: f32[2], %b: f64[2]", "mul %a, %b", "f32[2]", "mul", "operand types differ"),
    ("%a: i32[2], %b: i32[2]", "pow %a, %b", "i32[2]", "pow", "not defined on i32[2]"),
    ("%a: bool[2], %b: bool[2]", "max %a, %b", "bool[2]", "max", "not defined on bool[2]"),
    ("%a: bool[2], %b: bool[2]", "cmp_lt %a, %b", "bool[2]", "cmp_lt", "not defined"),
    ("%a: f32[2], %b: f32[3]", "cmp_eq %a, %b", "bool[2]", "cmp_eq", "operand types differ"),
    ("%c: f32[2], %a: f32[2], %b: f32[2]", "select %c, %a, %b", "f32[2]", "select", "condition must be bool"),
    ("%x: f32[2]", "cast %x", "i32[3]", "cast", "changes the dtype only"),
    ("%x: f32[2,3]", "reduce_sum %x {axes=[1,0]}", "f32[]", "reduce_sum", "strictly increasing"),
    ("%x: f32[2,3]", "reduce_max %x {axes=[2]}", "f32[2,3]", "reduce_max", "out of range"),
    ("%x: bool[2]", "reduce_sum %x {axes=[0]}", "bool[]", "reduce_sum", "not defined"),
    ("%x: f32[2,3]", "reshape %x", "f32[5]", "reshape", "cannot reshape f32[2,3] to f32[5]"),
    ("%x: f32[2,3]", "permute %x {perm=[0,0]}", "f32[2,2]", "permute", "not a permutation"),
    ("%x: f32[2,3]", "broadcast %x {dims=[0,1]}", "f32[4,3]", "broadcast", "axis 0 has extent 2"),
    ("%x: f32[2,3]", "broadcast %x {dims=[1,0]}", "f32[3,2]", "broadcast", "strictly increasing"),
    ("%x: f32[4]", "slice %x {start=[2], stop=[5], step=[1]}", "f32[3]", "slice", "outside extent 4"),
    ("%x: f32[4]", "slice %x {start=[0], stop=[4], step=[0]}", "f32[0]", "slice", "outside extent"),
    ("%x: f32[4]", "pad %x {low=[1,1], high=[0,0], value=0.0}", "f32[5]", "pad", "need 1 entries"),
    ("%x: i32[4]", "pad %x {low=[1], high=[0], value=-inf}", "i32[5]", "pad", "cannot be stored"),
    ("%a: f32[2,3], %b: f32[3,3]", "concat %a, %b {axis=1}", "f32[2,6]", "concat", "must agree except along axis 1"),
    ("%a: f32[2,3]", "concat %a {axis=2}", "f32[2,3]", "concat", "axis 2 out of range"),
    ("%a: f32[2,3], %b: f32[2,3]", "matmul %a, %b", "f32[2,3]", "matmul", "[...,m,k] x [...,k,n]"),
    ("%a: f32[2,2,3], %b: f32[3,3,4]", "matmul %a, %b", "f32[2,2,4]", "matmul", "equal batch axes"),
    ("%a: bool[2,2], %b: bool[2,2]", "matmul %a, %b", "bool[2,2]", "matmul", "dtype"),
    (
        "%x: f32[1,3,8,8], %w: f32[4,2,3,3]",
        "conv2d %x, %w {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}",
        "f32[1,4,6,6]",
        "conv2d",
        "do not match groups=1",
    ),
    (
        "%x: f32[1,1,2,2], %w: f32[1,1,3,3]",
        "conv2d %x, %w {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}",
        "f32[1,1,1,1]",
        "conv2d",
        "does not fit",
    ),
    (
        "%x: i32[1,1,3,3], %w: i32[1,1,1,1]",
        "conv2d %x, %w {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}",
        "i32[1,1,3,3]",
        "conv2d",
        "float",
    ),
    (
        "%g: f32[1,1,2,2], %w: f32[1,1,2,2]",
        "conv2d_grad_input %g, %w {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}",
        "f32[1,1,4,4]",
        "conv2d_grad_input",
        "gives [1,1,3,3]",
    ),
    (
        "%x: f32[1,1,3,3], %g: f32[1,1,3,3]",
        "conv2d_grad_weight %x, %g {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1}",
        "f32[1,1,2,2]",
        "conv2d_grad_weight",
        "but the gradient is f32[1,1,3,3]",
    ),
    ("", "iota {axis=0}", "f32[4000000000000,4000000000000]", "iota", "too large to address"),
    (
        "%x: f32[4]",
        "pad %x {low=[18446744073709551615], high=[1], value=0.0}",
        "f32[1]",
        "pad",
        "low = 18446744073709551615 is more than the limit 2^48",
    ),
    ("%x: f32[3], %i: f32[2]", "gather %x, %i {axis=0}", "f32[2]", "gather", "integer indices"),
    ("%x: f32[3], %i: i32[2]", "gather %x, %i {axis=1}", "f32[2]", "gather", "axis 1"),
    ("%u: f32[3], %i: i32[2]", "scatter_add %u, %i {axis=0}", "f32[5]", "scatter_add", "updates must be f32[2]"),
];

#[test]
fn every_type_rule_rejects_bad_nodes_in_text() {
    for (args, body, ty, op, part) in CASES {
        let text = format!("func @t({args}) -> (y: {ty}) {{\n  %r = {body} : {ty}\n  return %r\n}}\n");
        let e = parse_graph(&text).expect_err(&text);
        let msg = e.to_string();
        assert!(msg.contains(&format!("`{op}`:")), "error should name `{op}`: {msg}");
        assert!(msg.contains(part), "error should say `{part}`: {msg}");
        assert_eq!((e.line, e.col), (2, 8), "error points at the op: {msg}");
    }
}

#[test]
fn type_errors_through_the_graph_api() {
    let mut g = Graph::new("t");
    let a = g.input("a", TensorType::new(DType::F32, [2])).unwrap();
    let b = g.input("b", TensorType::new(DType::F32, [3])).unwrap();
    match g.add(Op::Binary(BinaryOp::Add), &[a, b]) {
        Err(GraphError::Type(t)) => {
            assert_eq!(t.op, "add");
            assert_eq!(t.to_string(), "`add`: operand types differ: f32[2] vs f32[3]");
        }
        other => panic!("expected a type error, got {other:?}"),
    }
    assert!(
        matches!(g.add(Op::Binary(BinaryOp::Add), &[a]), Err(GraphError::Type(t)) if t.message.contains("expects 2 operand(s)"))
    );
    assert!(matches!(g.add(Op::Reshape, &[a]), Err(GraphError::Type(t)) if t.message.contains("must be declared")));
    assert!(matches!(g.input("a", TensorType::new(DType::F32, [1])), Err(GraphError::DuplicateName(n)) if n == "a"));
    assert!(matches!(g.input("1x", TensorType::new(DType::F32, [1])), Err(GraphError::Type(_))));
    assert!(matches!(g.add(Op::Input { name: "c".into() }, &[]), Err(GraphError::Type(_))));
    let p = g.param("w", TensorType::new(DType::I32, [1]), kiln::ir::Init::Zeros);
    assert!(matches!(p, Err(GraphError::Type(t)) if t.message.contains("parameters must be float")));
}

#[test]
fn identical_nodes_are_interned() {
    let mut g = Graph::new("t");
    let a = g.input("a", TensorType::new(DType::F32, [2])).unwrap();
    let x = g.add(Op::Binary(BinaryOp::Mul), &[a, a]).unwrap();
    let y = g.add(Op::Binary(BinaryOp::Mul), &[a, a]).unwrap();
    assert_eq!(x, y);
    assert_eq!(g.len(), 2);
    kiln::ir::verify(&g).unwrap();
}
