//! The inline approximations of `exp`, `log`, `tanh`, `sin` and `cos` for `f32` (scalar or
//! vector lanes, the same code in both), each with a tested error bound, and the constants they
//! use.

use super::*;

/// 1.5·2^23: adding it to a float of magnitude below 2^22 rounds it to an integer.
pub(crate) const MAGIC: f64 = 12_582_912.0;

/// `127 - bits(MAGIC)`: turns the bits of `n + MAGIC` into the biased exponent of `2^n`.
pub(crate) const EXP_BIAS: f64 = (127 - 0x4B40_0000) as f64;

/// `π` in three parts (Cody–Waite): `n·PI_A` is exact for the `n` the inline `sin`/`cos`
/// meet, and the parts sum to `π` within f64 precision.
pub(crate) const PI_PARTS: [f64; 3] = [3.140625, 9.675_025_939_941_406e-4, 1.509_957_990_978_376_4e-7];

/// Arguments of the inline `sin`/`cos` above this magnitude are computed by libm.
pub(crate) const TRIG_LIMIT: f64 = 8192.0;

/// Coefficients of `sin r ≈ r + r³·(c₃ + r²(c₅ + …))` on `[-π/2, π/2]` (Taylor to `r¹³`:
/// truncation below 1e-9 there), highest first.
pub(crate) const SIN_COEFFS: [f64; 6] =
    [1.0 / 6_227_020_800.0, -1.0 / 39_916_800.0, 1.0 / 362_880.0, -1.0 / 5040.0, 1.0 / 120.0, -1.0 / 6.0];

/// `ln 2` in two parts: `n·LN2_HI` is exact for the `n` the inline `exp` meets.
pub(crate) const LN2_HI: f64 = 0.693_145_751_953_125;

/// The low part of `ln 2` ([`LN2_HI`] + `LN2_LO` ≈ `ln 2`).
pub(crate) const LN2_LO: f64 = 1.428_606_765_330_187e-6;

/// Horner coefficients of the inline `exp`'s `e^r ≈ 1 + r(1 + r(1/2 + r(1/6 + …)))`,
/// highest first.
pub(crate) const EXP_COEFFS: [f64; 7] = [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0];

/// The constants of the inline `exp`/`tanh`/`ln`/`sin`/`cos`.
pub(crate) const MATH_CONSTS: [f64; 39] = [
    std::f64::consts::FRAC_1_PI,
    TRIG_LIMIT,
    -0.693_145_751_953_125,
    -1.428_606_765_330_187e-6,
    -PI_PARTS[0],
    -PI_PARTS[1],
    -PI_PARTS[2],
    SIN_COEFFS[0],
    SIN_COEFFS[1],
    SIN_COEFFS[2],
    SIN_COEFFS[3],
    SIN_COEFFS[4],
    SIN_COEFFS[5],
    -0.5,
    MAGIC,
    f32::MIN_POSITIVE as f64,
    8_388_608.0,
    std::f64::consts::SQRT_2,
    1.0 / 9.0,
    1.0 / 7.0,
    1.0 / 5.0,
    1.0 / 3.0,
    std::f64::consts::LN_2,
    f64::NEG_INFINITY,
    f64::INFINITY,
    -87.3,
    88.7,
    std::f64::consts::LOG2_E,
    0.693_145_751_953_125,
    1.428_606_765_330_187e-6,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    0.5,
    1.0,
    2.0,
    0.0,
    127.0,
];

/// The inline vectorizable transcendentals, each with a tested error bound against `f64` libm.
impl Emitter<'_> {
    /// `exp(x)` for `f32` (scalar or `F32X4`): `x = n·ln2 + r` with `|r| ≤ ln2/2`, a degree-6
    /// polynomial for `e^r`, and `2^n` built in the exponent bits. Inputs are clamped to
    /// `[-87.3, 88.7]`, so the result stays finite and normal (NaN propagates through the
    /// clamp). Relative error below 5e-7 over the whole range (tested).
    pub(super) fn exp_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8) -> Value {
        let fma = self.fma;
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let (lo, hi) = (c(b, -87.3), c(b, 88.7));
        let x = raise_to(b, x, lo, lanes);
        let x = lower_to(b, x, hi, lanes);
        // n = round(x·log2e) by the 1.5·2^23 trick: adding it rounds to an integer held in the
        // low mantissa bits, so both the float n and the integer n come without a conversion.
        let (log2e, magic) = (c(b, std::f64::consts::LOG2_E), c(b, MAGIC));
        let t = if fma {
            b.ins().fma(x, log2e, magic)
        } else {
            let t = b.ins().fmul(x, log2e);
            b.ins().fadd(t, magic)
        };
        let n = b.ins().fsub(t, magic);
        // r = x - n·ln2, with ln2 split in two parts so the product is exact.
        let (ln2_hi, ln2_lo) = (c(b, LN2_HI), c(b, LN2_LO));
        let r = if fma {
            let (neg_hi, neg_lo) = (c(b, -LN2_HI), c(b, -LN2_LO));
            let r = b.ins().fma(n, neg_hi, x);
            b.ins().fma(n, neg_lo, r)
        } else {
            let t2 = b.ins().fmul(n, ln2_hi);
            let r = b.ins().fsub(x, t2);
            let t2 = b.ins().fmul(n, ln2_lo);
            b.ins().fsub(r, t2)
        };
        // Horner: 1 + r(1 + r(1/2 + r(1/6 + r(1/24 + r(1/120 + r/720))))).
        let mut p = c(b, EXP_COEFFS[0]);
        for &k in &EXP_COEFFS[1..] {
            let k = c(b, k);
            p = if fma {
                b.ins().fma(p, r, k)
            } else {
                let t = b.ins().fmul(p, r);
                b.ins().fadd(t, k)
            };
        }
        let (ity, fty) = if lanes > 1 { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        // 2^n = ((bits(t) - bits(MAGIC)) + 127) << 23.
        let bits = b.ins().bitcast(ity, flags, t);
        let bias = match self.consts.get(&(EXP_BIAS.to_bits(), DType::I32, lanes)) {
            Some(v) => *v,
            None => {
                let s = b.ins().iconst(types::I32, EXP_BIAS as i64);
                if lanes > 1 { b.ins().splat(types::I32X4, s) } else { s }
            }
        };
        let e = b.ins().iadd(bits, bias);
        let e = b.ins().ishl_imm_s(e, 23);
        let scale = b.ins().bitcast(fty, flags, e);
        b.ins().fmul(p, scale)
    }

    /// `ln(x)` for `f32` (scalar or `F32X4`): `x = m·2^e` with `m` in `[√½, √2)` from the bits
    /// (subnormals scaled by 2^23 first), then `ln m = 2 atanh(s)`, `s = (m−1)/(m+1)`, as an odd
    /// polynomial. `ln 0 = −∞`, `ln x = NaN` for `x < 0` or NaN, `ln ∞ = ∞`. Absolute error below
    /// 3e-7 · max(1, |ln x|) over all positive floats (tested).
    pub(super) fn log_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8) -> Value {
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let vec = lanes > 1;
        let (ity, fty) = if vec { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let int = |b: &mut FunctionBuilder, v: i64| {
            let s = b.ins().iconst(types::I32, v);
            if vec { b.ins().splat(types::I32X4, s) } else { s }
        };
        // Scale subnormals into the normal range.
        let min_normal = c(b, f64::from(f32::MIN_POSITIVE));
        let tiny = b.ins().fcmp(FloatCC::LessThan, x, min_normal);
        let scaled = {
            let k = c(b, 8_388_608.0);
            b.ins().fmul(x, k)
        };
        let xs = blend(b, tiny, scaled, x, lanes);
        let bits = b.ins().bitcast(ity, flags, xs);
        let exp_bits = b.ins().sshr_imm_s(bits, 23);
        let bias = int(b, 127);
        let mut e = b.ins().isub(exp_bits, bias);
        let (twenty_three, zero) = (int(b, 23), int(b, 0));
        let sub = blend(b, tiny, twenty_three, zero, lanes);
        e = b.ins().isub(e, sub);
        let mant_mask = int(b, 0x007F_FFFF);
        let one_bits = int(b, 0x3F80_0000);
        let mb = b.ins().band(bits, mant_mask);
        let mb = b.ins().bor(mb, one_bits);
        let mut m = b.ins().bitcast(fty, flags, mb);
        // Move m into [√½, √2).
        let sqrt2 = c(b, std::f64::consts::SQRT_2);
        let big = b.ins().fcmp(FloatCC::GreaterThan, m, sqrt2);
        let half = c(b, 0.5);
        let mh = b.ins().fmul(m, half);
        m = blend(b, big, mh, m, lanes);
        let one_i = int(b, 1);
        let inc = blend(b, big, one_i, zero, lanes);
        e = b.ins().iadd(e, inc);
        // ln m = 2s(1 + s²/3 + s⁴/5 + s⁶/7 + s⁸/9), s = (m − 1)/(m + 1).
        let one = c(b, 1.0);
        let num = b.ins().fsub(m, one);
        let den = b.ins().fadd(m, one);
        let s = b.ins().fdiv(num, den);
        let s2 = b.ins().fmul(s, s);
        let mut p = c(b, 1.0 / 9.0);
        for k in [1.0 / 7.0, 1.0 / 5.0, 1.0 / 3.0, 1.0] {
            let k = c(b, k);
            p = if self.fma {
                b.ins().fma(p, s2, k)
            } else {
                let t = b.ins().fmul(p, s2);
                b.ins().fadd(t, k)
            };
        }
        let two_s = b.ins().fadd(s, s);
        let lnm = b.ins().fmul(two_s, p);
        let ef = b.ins().fcvt_from_sint(fty, e);
        let ln2 = c(b, std::f64::consts::LN_2);
        let r = if self.fma {
            b.ins().fma(ef, ln2, lnm)
        } else {
            let t = b.ins().fmul(ef, ln2);
            b.ins().fadd(t, lnm)
        };
        // Special values.
        let zero_f = c(b, 0.0);
        let is_zero = b.ins().fcmp(FloatCC::Equal, x, zero_f);
        let neg_inf = c(b, f64::NEG_INFINITY);
        let r = blend(b, is_zero, neg_inf, r, lanes);
        let bad = b.ins().fcmp(FloatCC::UnorderedOrLessThan, x, zero_f);
        let nan = c(b, f64::NAN);
        let r = blend(b, bad, nan, r, lanes);
        let inf = c(b, f64::INFINITY);
        let is_inf = b.ins().fcmp(FloatCC::Equal, x, inf);
        blend(b, is_inf, inf, r, lanes)
    }

    /// `sin(x)` or `cos(x)` for `f32` (scalar or `F32X4`): `x = nπ + r` (for `cos`,
    /// `(n + ½)π + r`) with `|r| ≤ π/2` by Cody–Waite reduction, an odd Taylor polynomial for
    /// `sin r`, and the sign of `(-1)^n` (for `cos`, `(-1)^(n+1)`) flipped into the bits.
    /// NaN and ±∞ give NaN. Where any lane's `|x|` exceeds [`TRIG_LIMIT`], libm computes the
    /// lanes that do (a branch taken only then), so large arguments keep libm's accuracy and
    /// every element's result depends on its own argument alone. Absolute error below
    /// 5e-7 over `[-8192, 8192]` (tested).
    pub(super) fn trig_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8, which: Trig) -> Value {
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let vec = lanes > 1;
        let (ity, fty) = if vec { (types::I32X4, types::F32X4) } else { (types::I32, types::F32) };
        let flags = MemFlagsData::new().with_endianness(cranelift_codegen::ir::Endianness::Little);
        let mul_add = |b: &mut FunctionBuilder, p: Value, q: Value, r: Value| {
            if self.fma {
                b.ins().fma(p, q, r)
            } else {
                let t = b.ins().fmul(p, q);
                b.ins().fadd(t, r)
            }
        };
        // n = round(x/π) (for cos, round(x/π − ½)) by the 1.5·2^23 trick; its parity sits in
        // the low bit of t's bits.
        let (inv_pi, magic) = (c(b, std::f64::consts::FRAC_1_PI), c(b, MAGIC));
        let q = b.ins().fmul(x, inv_pi);
        let q = match which {
            Trig::Sin => q,
            Trig::Cos => {
                let half = c(b, -0.5);
                b.ins().fadd(q, half)
            }
        };
        let t = b.ins().fadd(q, magic);
        let n = b.ins().fsub(t, magic);
        let n = match which {
            Trig::Sin => n,
            Trig::Cos => {
                let half = c(b, 0.5);
                b.ins().fadd(n, half)
            }
        };
        // r = x − n·π, π in three parts.
        let mut r = x;
        for part in PI_PARTS {
            let neg = c(b, -part);
            r = mul_add(b, n, neg, r);
        }
        let r2 = b.ins().fmul(r, r);
        let mut p = c(b, SIN_COEFFS[0]);
        for &k in &SIN_COEFFS[1..] {
            let k = c(b, k);
            p = mul_add(b, p, r2, k);
        }
        let r3 = b.ins().fmul(r, r2);
        let s = mul_add(b, r3, p, r);
        // Flip the sign where n is odd (for cos, even).
        let bits = b.ins().bitcast(ity, flags, t);
        let bits = match which {
            Trig::Sin => bits,
            Trig::Cos => {
                let one = b.ins().iconst(types::I32, 1);
                let one = if vec { b.ins().splat(types::I32X4, one) } else { one };
                b.ins().bxor(bits, one)
            }
        };
        let sign = b.ins().ishl_imm_s(bits, 31);
        let sb = b.ins().bitcast(ity, flags, s);
        let sb = b.ins().bxor(sb, sign);
        let fast = b.ins().bitcast(fty, flags, sb);
        // Large arguments: libm, for the lanes that have them.
        let limit = c(b, TRIG_LIMIT);
        let ax = b.ins().fabs(x);
        let big = b.ins().fcmp(FloatCC::GreaterThan, ax, limit);
        let any = if vec { b.ins().vany_true(big) } else { big };
        let (slow, join) = (b.create_block(), b.create_block());
        b.append_block_param(join, fty);
        b.ins().brif(any, slow, &[], join, &[BlockArg::Value(fast)]);
        b.switch_to_block(slow);
        let func = self.refs[&(which.name(), DType::F32)];
        let exact = if vec {
            let mut v = fast;
            for lane in 0..lanes {
                let xl = b.ins().extractlane(x, lane);
                let call = b.ins().call(func, &[xl]);
                let y = b.inst_results(call)[0];
                v = b.ins().insertlane(v, y, lane);
            }
            // Only the lanes past the limit take libm's value: every element's result depends
            // on its own argument alone, whichever lanes it shares a vector with.
            blend(b, big, v, fast, lanes)
        } else {
            let call = b.ins().call(func, &[x]);
            b.inst_results(call)[0]
        };
        b.ins().jump(join, &[BlockArg::Value(exact)]);
        b.switch_to_block(join);
        b.block_params(join)[0]
    }

    /// `tanh(x)` for `f32` as `1 - 2/(e^{2x} + 1)` on the inline `exp`: absolute error below
    /// 5e-7 (tested), exact limits ±1 for large |x|.
    pub(super) fn tanh_f32(&self, b: &mut FunctionBuilder, x: Value, lanes: u8) -> Value {
        let c = |b: &mut FunctionBuilder, v: f64| self.float_const(b, v, DType::F32, lanes);
        let two = c(b, 2.0);
        let x2 = b.ins().fmul(x, two);
        let e = self.exp_f32(b, x2, lanes);
        let one = c(b, 1.0);
        let d = b.ins().fadd(e, one);
        let q = b.ins().fdiv(two, d);
        b.ins().fsub(one, q)
    }
}

/// Which inline trigonometric function.
#[derive(Clone, Copy)]
pub(super) enum Trig {
    Sin,
    Cos,
}

impl Trig {
    /// The libm import's short name.
    pub(super) fn name(self) -> &'static str {
        match self {
            Trig::Sin => "sin",
            Trig::Cos => "cos",
        }
    }
}
