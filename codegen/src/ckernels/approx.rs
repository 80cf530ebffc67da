//! The CPU backend's inline approximations of `exp`, `log`, `tanh`, `sin` and `cos` for
//! `f32` as C functions: the same operations in the same order, on the same `f32`
//! constants, with fused multiply-adds exactly where the Cranelift emitter puts them
//! (`codegen/src/cpu/approx.rs`), so both tiers compute the same bits.

use std::fmt::Write as _;

use super::f32_literal;
use crate::cpu::approx as k;

/// `p·q + r`: one fused multiply-add where the target has them, else a product and a sum
/// (two roundings, as the Cranelift emitter does without FMA).
fn mul_add(fma: bool, p: &str, q: &str, r: &str) -> String {
    if fma { format!("fmaf({p}, {q}, {r})") } else { format!("({p} * {q} + {r})") }
}

/// The C text of `kiln_exp_approx`, `kiln_log_approx`, `kiln_tanh_approx`,
/// `kiln_sin_approx` and `kiln_cos_approx` (static inline, branch-free but for the trig
/// functions' libm path for arguments above the inline limit).
pub(super) fn functions(fma: bool) -> String {
    let c = |v: f64| f32_literal(v as f32);
    let ma = |p: &str, q: &str, r: &str| mul_add(fma, p, q, r);
    let mut s = String::new();

    // exp: clamp, n = round(x·log2e) by the magic constant, r = x − n·ln2 in two parts, a
    // degree-6 Horner polynomial, 2^n from the exponent bits.
    let _ = writeln!(s, "static inline float kiln_exp_approx(float x) {{");
    let _ = writeln!(s, "    x = x < {lo} ? {lo} : x;", lo = c(-87.3));
    let _ = writeln!(s, "    x = {hi} < x ? {hi} : x;", hi = c(88.7));
    let _ = writeln!(s, "    const float t = {};", ma("x", &c(std::f64::consts::LOG2_E), &c(k::MAGIC)));
    let _ = writeln!(s, "    const float n = t - {};", c(k::MAGIC));
    if fma {
        let _ = writeln!(s, "    float r = fmaf(n, {}, x);", c(-k::LN2_HI));
        let _ = writeln!(s, "    r = fmaf(n, {}, r);", c(-k::LN2_LO));
    } else {
        let _ = writeln!(s, "    float r = x - n * {};", c(k::LN2_HI));
        let _ = writeln!(s, "    r = r - n * {};", c(k::LN2_LO));
    }
    let coeffs = k::EXP_COEFFS;
    let _ = writeln!(s, "    float p = {};", c(coeffs[0]));
    for &q in &coeffs[1..] {
        let _ = writeln!(s, "    p = {};", ma("p", "r", &c(q)));
    }
    let _ = writeln!(s, "    const unsigned int e = (kiln_bits(t) + (unsigned int)({})) << 23;", k::EXP_BIAS as i32);
    s.push_str("    return p * kiln_float(e);\n}\n");

    // log: x = m·2^e with m in [√½, √2), ln m = 2 atanh(s) as an odd polynomial in s.
    s.push_str("static inline float kiln_log_approx(float x) {\n");
    let _ = writeln!(s, "    const int tiny = x < {};", c(f64::from(f32::MIN_POSITIVE)));
    let _ = writeln!(s, "    const float xs = tiny ? x * {} : x;", c(8_388_608.0));
    s.push_str("    const int bits = (int)kiln_bits(xs);\n");
    s.push_str("    int e = (bits >> 23) - 127;\n    e = e - (tiny ? 23 : 0);\n");
    s.push_str("    float m = kiln_float(((unsigned int)bits & 0x007FFFFFu) | 0x3F800000u);\n");
    let _ = writeln!(s, "    const int big = m > {};", c(std::f64::consts::SQRT_2));
    let _ = writeln!(s, "    m = big ? m * {} : m;", c(0.5));
    s.push_str("    e = e + (big ? 1 : 0);\n");
    let one = c(1.0);
    let _ = writeln!(s, "    const float s = (m - {one}) / (m + {one});");
    s.push_str("    const float s2 = s * s;\n");
    let _ = writeln!(s, "    float p = {};", c(1.0 / 9.0));
    for q in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
        let _ = writeln!(s, "    p = {};", ma("p", "s2", &c(q)));
    }
    s.push_str("    const float lnm = (s + s) * p;\n");
    let _ = writeln!(s, "    float r = {};", ma("(float)e", &c(std::f64::consts::LN_2), "lnm"));
    let (zero, inf) = (c(0.0), f32_literal(f32::INFINITY));
    let _ = writeln!(s, "    r = x == {zero} ? -{inf} : r;");
    let _ = writeln!(s, "    r = (x != x || x < {zero}) ? {} : r;", f32_literal(f32::NAN));
    let _ = writeln!(s, "    return x == {inf} ? {inf} : r;\n}}");

    // tanh on the inline exp.
    let two = c(2.0);
    let _ = writeln!(
        s,
        "static inline float kiln_tanh_approx(float x) {{\n    return {one} - {two} / (kiln_exp_approx(x * {two}) + {one});\n}}"
    );

    // sin and cos: Cody–Waite reduction by π, an odd Taylor polynomial, the sign from n's
    // parity; libm above the limit.
    for (name, cos) in [("sin", false), ("cos", true)] {
        let _ = writeln!(s, "static inline float kiln_{name}_approx(float x) {{");
        let _ = writeln!(s, "    float q = x * {};", c(std::f64::consts::FRAC_1_PI));
        if cos {
            let _ = writeln!(s, "    q = q + {};", c(-0.5));
        }
        let _ = writeln!(s, "    const float t = q + {};", c(k::MAGIC));
        let _ = writeln!(s, "    float n = t - {};", c(k::MAGIC));
        if cos {
            let _ = writeln!(s, "    n = n + {};", c(0.5));
        }
        s.push_str("    float r = x;\n");
        for part in k::PI_PARTS {
            let _ = writeln!(s, "    r = {};", ma("n", &c(-part), "r"));
        }
        s.push_str("    const float r2 = r * r;\n");
        let _ = writeln!(s, "    float p = {};", c(k::SIN_COEFFS[0]));
        for &q in &k::SIN_COEFFS[1..] {
            let _ = writeln!(s, "    p = {};", ma("p", "r2", &c(q)));
        }
        let _ = writeln!(s, "    const float v = {};", ma("(r * r2)", "p", "r"));
        let flip = if cos { " ^ 1u" } else { "" };
        let _ = writeln!(s, "    const float fast = kiln_float(kiln_bits(v) ^ ((kiln_bits(t){flip}) << 31));");
        let _ = writeln!(s, "    return fabsf(x) > {} ? {name}f(x) : fast;\n}}", c(k::TRIG_LIMIT));
    }
    s
}
