//! A random-graph generator over every dtype, for the differential tests of the backends.
//!
//! Each step applies one op kind — a product, a convolution, a reduction, movement (permute,
//! strided slice + pad, concat, a step at the attribute limit), an elementwise op, a constant
//! at or beyond its dtype's range, a comparison + select — to values of the pool, and then
//! casts the result to a dtype picked by the step: every kind is followed by every cast,
//! including none. Such casts right after a product are what the fuzz findings of `matmul` +
//! `cast` needed (an epilogue changing the product's dtype). Values are `[4, 4]` throughout (the ops' own intermediates aside), with
//! small integer-valued inputs so that float results are exact unless a limit constant makes
//! them huge. Graphs are written as `.kir` text, so a failing case prints as a reproduction.

use std::collections::HashMap;
use std::fmt::Write as _;

use kiln::ir::{DType, Graph, Value};

/// One generated step: the op kind, two operand picks, and the dtype/variant pick.
pub type Step = (u8, usize, usize, u8);

/// Integer and float literals at and beyond the range of every dtype.
const LIMITS: [f64; 12] = [
    2147483647.0,
    2147483648.0,
    -2147483648.0,
    -2147483649.0,
    3e9,
    -3e9,
    9.223372036854776e18,
    -9.3e18,
    1e30,
    -1e30,
    0.5,
    -7.0,
];

const DTYPES: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

/// The largest magnitude a float dtype holds every integer up to: results of float arithmetic
/// stay exact below it, whatever order a backend sums in and whether it fuses multiply-adds.
fn exact_limit(d: DType) -> f64 {
    match d {
        DType::F32 => 16_777_216.0,
        DType::F64 => 9_007_199_254_740_992.0,
        DType::I32 | DType::I64 | DType::Bool => f64::INFINITY,
    }
}

/// A bound on the magnitude of a value of dtype `d` that is at most `b` before conversion.
fn clamp_bound(b: f64, d: DType) -> f64 {
    match d {
        DType::Bool => 1.0,
        DType::I32 => b.min(2_147_483_648.0),
        DType::I64 => b.min(9.3e18),
        DType::F32 | DType::F64 => b,
    }
}

struct Text {
    body: String,
    next: usize,
    /// Name, dtype and a bound on the magnitude of every value so far.
    pool: Vec<(String, DType, f64)>,
}

impl Text {
    /// Emits `%vN = <op> : <ty>` and returns its name.
    fn emit(&mut self, op: &str, dtype: DType, dims: &str) -> String {
        let name = format!("%v{}", self.next);
        self.next += 1;
        let _ = writeln!(self.body, "  {name} = {op} : {dtype}[{dims}]");
        name
    }

    /// `v` (of dtype `from`, dims `dims`) as dtype `to`.
    fn cast(&mut self, v: &str, from: DType, to: DType, dims: &str) -> String {
        if from == to { v.to_string() } else { self.emit(&format!("cast {v}"), to, dims) }
    }

    /// The bound of pool value `i`.
    fn bound(&self, i: usize) -> f64 {
        self.pool[i % self.pool.len()].2
    }

    /// The numeric dtype pool value `i` is used as: its own, or f32 for bool.
    fn numeric_dtype(&self, i: usize) -> DType {
        let d = self.pool[i % self.pool.len()].1;
        if d.is_numeric() { d } else { DType::F32 }
    }

    /// Operands `a`, `b` for float arithmetic in dtype `d` whose result is bounded by
    /// `result(bound a, bound b)`: themselves if that stays exact in `d`, else the leaves `x`
    /// and `y` (small), so that no backend may round where the interpreter does not.
    /// (Rounding differences are allowed by the spec; a cast to an integer afterwards would
    /// turn them into a false alarm.) Integer arithmetic wraps exactly and keeps its operands.
    fn exact(&self, a: usize, b: usize, d: DType, result: impl Fn(f64, f64) -> f64) -> (usize, usize) {
        if result(self.bound(a), self.bound(b)) > exact_limit(d) { (0, 1) } else { (a, b) }
    }

    /// Pool value `i` as a numeric dtype: its own, or f32 for bool.
    fn numeric(&mut self, i: usize) -> (String, DType) {
        let (v, d, _) = self.pool[i % self.pool.len()].clone();
        if d.is_numeric() { (v, d) } else { (self.cast(&v, d, DType::F32, "4,4"), DType::F32) }
    }

    /// Pool value `i` as a float dtype: its own, or f32.
    fn float(&mut self, i: usize) -> (String, DType) {
        let (v, d, _) = self.pool[i % self.pool.len()].clone();
        if d.is_float() { (v, d) } else { (self.cast(&v, d, DType::F32, "4,4"), DType::F32) }
    }

    /// Pool value `i` as dtype `d`.
    fn as_dtype(&mut self, i: usize, d: DType) -> String {
        let (v, from, _) = self.pool[i % self.pool.len()].clone();
        self.cast(&v, from, d, "4,4")
    }
}

/// The `.kir` text of a random graph of `steps`.
pub fn mixed_graph_text(steps: &[Step]) -> String {
    let mut t = Text { body: String::new(), next: 0, pool: Vec::new() };
    let leaves = [("x", DType::F32), ("y", DType::F64), ("i", DType::I32), ("j", DType::I64), ("m", DType::Bool)];
    for (n, d) in leaves {
        t.pool.push((format!("%{n}"), d, 4.0));
    }
    for &(kind, a, b, pick) in steps {
        let to = DTYPES[usize::from(pick) % 5];
        let variant = usize::from(pick / 5);
        let (v, d, bound) = match kind % 8 {
            // A product, any numeric dtype.
            0 => {
                let (a, b) = t.exact(a, b, t.numeric_dtype(a), |p, q| 4.0 * p * q);
                let bound = 4.0 * t.bound(a) * t.bound(b);
                let (x, d) = t.numeric(a);
                let y = t.as_dtype(b, d);
                (t.emit(&format!("matmul {x}, {y}"), d, "4,4"), d, bound)
            }
            // A convolution of a float, padded to keep the extent.
            1 => {
                let d = if t.numeric_dtype(a) == DType::F64 { DType::F64 } else { DType::F32 };
                let (a, b) = t.exact(a, b, d, |p, q| 9.0 * p * q);
                let bound = 9.0 * t.bound(a) * t.bound(b);
                let (x, d) = t.float(a);
                let w = t.as_dtype(b, d);
                let x4 = t.emit(&format!("reshape {x}"), d, "1,1,4,4");
                let w3 = t.emit(&format!("slice {w} {{start=[0,0], stop=[3,3], step=[1,1]}}"), d, "3,3");
                let w4 = t.emit(&format!("reshape {w3}"), d, "1,1,3,3");
                let c = t.emit(
                    &format!("conv2d {x4}, {w4} {{stride=[1,1], padding=[1,1], dilation=[1,1], groups=1}}"),
                    d,
                    "1,1,4,4",
                );
                (t.emit(&format!("reshape {c}"), d, "4,4"), d, bound)
            }
            // A reduction along one axis, cast right after it, broadcast back.
            2 => {
                let sum = variant % 2 == 0;
                let a = if sum { t.exact(a, a, t.numeric_dtype(a), |p, _| 4.0 * p).0 } else { a };
                let bound = if sum { 4.0 * t.bound(a) } else { t.bound(a) };
                let (x, d) = t.numeric(a);
                let axis = b % 2;
                let op = if sum { "reduce_sum" } else { "reduce_max" };
                let r = t.emit(&format!("{op} {x} {{axes=[{axis}]}}"), d, "4");
                let r = t.cast(&r, d, to, "4");
                let kept = 1 - axis;
                let bound = clamp_bound(clamp_bound(bound, d), to);
                (t.emit(&format!("broadcast {r} {{dims=[{kept}]}}"), to, "4,4"), to, bound)
            }
            // Movement, strides and steps at their limits included.
            3 => {
                let (x, d, bound) = t.pool[a % t.pool.len()].clone();
                let fill = LIMITS[variant % 12];
                let bound = if b % 4 == 1 { bound.max(fill.abs()) } else { bound };
                let v = match b % 4 {
                    0 => t.emit(&format!("permute {x} {{perm=[1,0]}}"), d, "4,4"),
                    // A step far past the extent, at the attribute limit: one row.
                    3 => {
                        let s = t.emit(
                            &format!("slice {x} {{start=[3,0], stop=[4,4], step=[281474976710656,1]}}"),
                            d,
                            "1,4",
                        );
                        t.emit(&format!("broadcast {s} {{dims=[0,1]}}"), d, "4,4")
                    }
                    1 => {
                        let s = t.emit(&format!("slice {x} {{start=[1,0], stop=[4,4], step=[2,1]}}"), d, "2,4");
                        t.emit(&format!("pad {s} {{low=[1,0], high=[1,0], value={fill:?}}}"), d, "4,4")
                    }
                    _ => {
                        let lo = t.emit(&format!("slice {x} {{start=[0,0], stop=[4,2], step=[1,1]}}"), d, "4,2");
                        let hi = t.emit(&format!("slice {x} {{start=[0,3], stop=[4,4], step=[1,2]}}"), d, "4,1");
                        let c = t.emit(&format!("concat {hi}, {lo}, {hi} {{axis=1}}"), d, "4,4");
                        t.emit(&format!("permute {c} {{perm=[1,0]}}"), d, "4,4")
                    }
                };
                (v, d, bound)
            }
            // Elementwise arithmetic.
            4 => {
                let op = ["add", "sub", "mul", "max", "min"][variant % 5];
                let result = |p: f64, q: f64| match op {
                    "add" | "sub" => p + q,
                    "mul" => p * q,
                    _ => p.max(q),
                };
                let (a, b) =
                    if op == "max" || op == "min" { (a, b) } else { t.exact(a, b, t.numeric_dtype(a), result) };
                let bound = result(t.bound(a), t.bound(b));
                let (x, d) = t.numeric(a);
                let y = t.as_dtype(b, d);
                (t.emit(&format!("{op} {x}, {y}"), d, "4,4"), d, bound)
            }
            // A constant at or beyond a dtype's range, of any dtype, combined with a value.
            5 => {
                let cd = DTYPES[b % 5];
                let lit = LIMITS[variant % 12];
                let lit = if cd == DType::Bool { f64::from(u8::from(lit > 0.0)) } else { lit };
                let k = t.emit(&format!("const {lit:?}"), cd, "4,4");
                if cd.is_numeric() {
                    // One rounding of a sum of exact values: the same on every backend.
                    let a = t.exact(a, a, cd, |p, _| p).0;
                    let bound = t.bound(a) + clamp_bound(lit.abs(), cd);
                    let x = t.as_dtype(a, cd);
                    (t.emit(&format!("add {x}, {k}"), cd, "4,4"), cd, bound)
                } else {
                    let (x, d, bound) = t.pool[a % t.pool.len()].clone();
                    let z = t.emit("const 0.0", d, "4,4");
                    (t.emit(&format!("select {k}, {x}, {z}"), d, "4,4"), d, bound)
                }
            }
            // A comparison choosing between two values.
            6 => {
                let bound = t.bound(a).max(t.bound(b));
                let (x, d) = t.numeric(a);
                let y = t.as_dtype(b, d);
                let c = t.emit(&format!("cmp_lt {x}, {y}"), DType::Bool, "4,4");
                (t.emit(&format!("select {c}, {y}, {x}"), d, "4,4"), d, bound)
            }
            // A unary op.
            _ => {
                let bound = t.bound(a);
                let (x, d) = t.numeric(a);
                let op = ["neg", "abs"][variant % 2];
                (t.emit(&format!("{op} {x}"), d, "4,4"), d, bound)
            }
        };
        let v = t.cast(&v, d, to, "4,4");
        t.pool.push((v, to, clamp_bound(clamp_bound(bound, d), to)));
    }
    let (last, ld, _) = t.pool[t.pool.len() - 1].clone();
    let (mid, md, _) = t.pool[t.pool.len() / 2 + 2].clone();
    let mut text =
        String::from("func @mixed(%x: f32[4,4], %y: f64[4,4], %i: i32[4,4], %j: i64[4,4], %m: bool[4,4]) -> ");
    let _ = writeln!(text, "(out: {ld}[4,4], mid: {md}[4,4]) {{");
    text.push_str(&t.body);
    let _ = writeln!(text, "  return {last}, {mid}\n}}");
    text
}

/// The graph of [`mixed_graph_text`] (panics with the text if it does not parse and verify:
/// that is a generator bug).
pub fn mixed_graph(steps: &[Step]) -> (Graph, String) {
    let text = mixed_graph_text(steps);
    let g = kiln::ir::parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    kiln::ir::verify(&g).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (g, text)
}

/// Cases for a mixed-graph property test: `default`, or `KILN_FUZZ_CASES` for a longer hunt
/// (`KILN_FUZZ_CASES=5000 cargo test --test jit mixed`).
pub fn cases(default: u32) -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Small integer-valued inputs for the mixed graphs' leaves, from `seed`.
pub fn mixed_inputs(seed: u64) -> HashMap<String, Value> {
    let r = |salt: u64| -> Vec<f64> { super::pseudo(16, seed * 8 + salt).iter().map(|x| (x * 3.5).round()).collect() };
    let mut f = HashMap::new();
    f.insert("x".to_string(), super::f32v(&[4, 4], &r(0).iter().map(|v| *v as f32).collect::<Vec<_>>()));
    f.insert("y".to_string(), super::f64v(&[4, 4], &r(1)));
    f.insert("i".to_string(), super::i32v(&[4, 4], &r(2).iter().map(|v| *v as i32).collect::<Vec<_>>()));
    f.insert("j".to_string(), super::i64v(&[4, 4], &r(3).iter().map(|v| *v as i64).collect::<Vec<_>>()));
    f.insert("m".to_string(), super::boolv(&[4, 4], &r(4).iter().map(|v| *v > 0.0).collect::<Vec<_>>()));
    f
}

/// Asserts `got` equals the interpreter's `want` for the mixed graphs: NaN matches NaN, and
/// values agree within one part in 10^6 of the larger magnitude (float sums of huge values may
/// round differently; the defects this hunts are wrong by far more), `what` naming the backend.
pub fn assert_same(what: &str, text: &str, names: &[&str], got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "{what}: output count\n{text}");
    for ((name, g), w) in names.iter().zip(got).zip(want) {
        assert_eq!(g.ty(), w.ty(), "{what}: output {name} type\n{text}");
        for (k, (a, b)) in g.to_f64_vec().iter().zip(w.to_f64_vec()).enumerate() {
            let ok = *a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-6 * a.abs().max(b.abs());
            assert!(ok, "{what}: output {name}[{k}] is {a}, the interpreter says {b}\n{text}");
        }
    }
}
