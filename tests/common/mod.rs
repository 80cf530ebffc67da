//! Helpers shared by the integration tests: building values and running `.kir` snippets.
#![allow(dead_code)]

pub mod convs;
pub mod mixed;
pub mod partition;
pub mod scratch;

use std::collections::HashMap;

use kiln::ir::{InterpError, Value, interp, parse_graph, verify};
use ndarray::{ArrayD, IxDyn};

/// An `f32` value.
pub fn f32v(dims: &[usize], data: &[f32]) -> Value {
    Value::F32(ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).unwrap())
}

/// An `f64` value.
pub fn f64v(dims: &[usize], data: &[f64]) -> Value {
    Value::F64(ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).unwrap())
}

/// An `i32` value.
pub fn i32v(dims: &[usize], data: &[i32]) -> Value {
    Value::I32(ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).unwrap())
}

/// An `i64` value.
pub fn i64v(dims: &[usize], data: &[i64]) -> Value {
    Value::I64(ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).unwrap())
}

/// A `bool` value.
pub fn boolv(dims: &[usize], data: &[bool]) -> Value {
    Value::Bool(ArrayD::from_shape_vec(IxDyn(dims), data.to_vec()).unwrap())
}

/// Parses, verifies and runs a one-function `.kir` text.
pub fn try_run(text: &str, feeds: &[(&str, Value)]) -> Result<Vec<Value>, InterpError> {
    let g = parse_graph(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify(&g).unwrap();
    let feeds: HashMap<String, Value> = feeds.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    interp::run(&g, &feeds)
}

/// Like [`try_run`], returning the single output.
pub fn run1(text: &str, feeds: &[(&str, Value)]) -> Value {
    let mut out = try_run(text, feeds).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(out.len(), 1);
    out.remove(0)
}

/// A one-op function: `func @t(<args>) -> (y: <ty>) { %0 = <body> : <ty>; return %0 }`.
pub fn op_fn(args: &str, body: &str, ty: &str) -> String {
    format!("func @t({args}) -> (y: {ty}) {{\n  %r = {body} : {ty}\n  return %r\n}}\n")
}

/// Asserts two float vectors agree within `tol` (absolute plus relative).
pub fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "lengths differ: {got:?} vs {want:?}");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let ok = g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol * (1.0 + w.abs());
        assert!(ok, "element {i}: got {g}, want {w}\n got {got:?}\nwant {want:?}");
    }
}

/// `n` reproducible pseudo-random numbers in `[-1, 1)`, from the IR's counter-based generator.
pub fn pseudo(n: usize, salt: u64) -> Vec<f64> {
    (0..n as u64).map(|i| kiln::ir::rng::uniform_f64(kiln::ir::rng::bits(salt, i)) * 2.0 - 1.0).collect()
}

/// Random well-typed graphs over `f64[2,3]` values, built from ops the rules act on.
pub fn random_graph(ops: &[(u8, usize, usize)]) -> kiln::ir::Graph {
    random_graph_of(ops, kiln::ir::DType::F64, 3)
}

/// [`random_graph`] over `dtype[2, cols]` values.
pub fn random_graph_of(ops: &[(u8, usize, usize)], dtype: kiln::ir::DType, cols: usize) -> kiln::ir::Graph {
    let b = kiln::frontend::Builder::new("random").with_float(dtype);
    let x = b.input("x", dtype, [2, cols]);
    let y = b.input("y", dtype, [2, cols]);
    let v = b.input("v", dtype, [cols]);
    let w = b.input("w", dtype, [cols, cols]);
    let mut pool: Vec<kiln::frontend::Tensor<'_>> = vec![x, y];
    for &(op, i, j) in ops {
        let (a, c) = (pool[i % pool.len()], pool[j % pool.len()]);
        let t = match op % 16 {
            0 => a + c,
            1 => a * c,
            2 => a - c,
            3 => -(-a),
            4 => a + 0.0,
            5 => a * 1.0,
            6 => a / 4.0,
            7 => a.transpose().tanh().transpose(),
            8 => (a.transpose() + c.transpose()).transpose(),
            9 => a + v,
            10 => a.sum(&[0]).reshape(&[1, cols]) + c,
            11 => a.matmul(w),
            12 => a.reshape(&[2 * cols]).reshape(&[cols, 2]).reshape(&[2, cols]),
            13 => a.exp().log() * c,
            14 => a.maximum(c).minimum(a),
            _ => (a * 0.5).sigmoid() * c.recip().recip(),
        };
        pool.push(t);
    }
    let n = pool.len();
    b.output("out", pool[n - 1]);
    b.output("mid", pool[n / 2]);
    b.finish().unwrap()
}

/// The bytes of a value in row-major order, little-endian (`bool` as one byte): what C code
/// reading the buffer sees.
pub fn le_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::F32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::F64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::I32(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::I64(a) => a.iter().flat_map(|x| x.to_le_bytes()).collect(),
        Value::Bool(a) => a.iter().map(|b| u8::from(*b)).collect(),
    }
}
