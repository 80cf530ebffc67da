//! Elementwise ONNX ops: arithmetic with numpy broadcasting, unary math, `Erf` and the
//! rounding functions as compositions, comparisons, logic on bools, `Where`, `Cast`.

use kiln_frontend::Tensor;
use kiln_ir::DType;

use super::{Cx, Fail, Lowered};
use crate::tensor::{dtype_name, dtype_of};

/// `Add`, `Sub`, `Mul`, `Div`, `Pow` and the variadic `Max`, `Min`, `Sum`, `Mean`.
pub(crate) fn arithmetic<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let op = cx.node.op_type();
    if op == "Pow" {
        // kiln's `pow` is on floats: integers go through `f64` (exact while the powers fit
        // 2^53) and back; the exponent may have another dtype than the base.
        let base = cx.tensor(0)?;
        let dtype = base.dtype();
        if !dtype.is_numeric() {
            return cx.unsupported(format!("Pow of {dtype}"));
        }
        let wide = if dtype.is_float() { dtype } else { DType::F64 };
        let exponent = cx.tensor(1)?.cast(wide);
        return Ok(vec![base.cast(wide).pow(exponent).cast(dtype).into()]);
    }
    // `Max`/`Min` of `uint64` compare in the signed order of the bits offset by 2^63.
    let ordered = matches!(op, "Max" | "Min") && cx.is_uint64(0);
    let xs = if ordered {
        (0..cx.node.input.len()).filter(|&i| cx.has(i)).map(|i| cx.ordered(i)).collect::<Result<Vec<_>, _>>()?
    } else {
        cx.tensors()?
    };
    let Some((&first, rest)) = xs.split_first() else {
        return Err(Fail::Bad("needs at least one input".into()));
    };
    if rest.iter().any(|t| t.dtype() != first.dtype()) {
        return Err(Fail::Bad(format!(
            "inputs have different dtypes: {}",
            xs.iter().map(|t| t.dtype().to_string()).collect::<Vec<_>>().join(", ")
        )));
    }
    let mut acc = first;
    for &x in rest {
        acc = match op {
            "Add" | "Sum" | "Mean" => acc + x,
            "Sub" => acc - x,
            "Mul" => acc * x,
            "Div" => acc / x,
            "Max" => acc.maximum(x),
            "Min" => acc.minimum(x),
            _ => unreachable!("dispatched on these op types"),
        };
    }
    if ordered {
        acc = acc + acc.full_like(UINT64_OFFSET);
    }
    if op == "Mean" {
        if !acc.dtype().is_float() {
            return cx.unsupported(format!("Mean of {}", acc.dtype()));
        }
        acc = acc * (1.0 / xs.len() as f64);
    }
    Ok(vec![acc.into()])
}

/// −2^63: added (wrapping) to `uint64` bits, it maps their unsigned order onto `i64`'s signed
/// one; added again, it maps back.
pub(crate) const UINT64_OFFSET: f64 = -9_223_372_036_854_775_808.0;

/// One-operand math.
pub(crate) fn unary<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let op = cx.node.op_type();
    let x = match op {
        "Neg" | "Abs" | "Sign" => cx.tensor(0)?,
        _ => cx.float(0)?,
    };
    let y = match op {
        "Neg" => -x,
        "Abs" => x.abs(),
        "Sqrt" => x.sqrt(),
        "Exp" => x.exp(),
        "Log" => x.log(),
        "Reciprocal" => x.recip(),
        "Sin" => x.sin(),
        "Cos" => x.cos(),
        "Tanh" => x.tanh(),
        "Floor" => floor(x),
        "Ceil" => -floor(-x),
        "Sign" => {
            let (zero, one) = (x.full_like(0.0), x.full_like(1.0));
            zero.lt(x).select(one, x.lt(zero).select(x.full_like(-1.0), zero))
        }
        _ => unreachable!("dispatched on these op types"),
    };
    Ok(vec![y.into()])
}

/// `floor(x)`: the truncation through `i64`, minus one where it rounded up; magnitudes of
/// 2^52 and more (and NaN, ±∞) are already whole and pass through.
fn floor(x: Tensor<'_>) -> Tensor<'_> {
    let t = x.cast(DType::I64).cast(x.dtype());
    let down = t - x.lt(t).cast(x.dtype());
    x.abs().lt(x.full_like(4_503_599_627_370_496.0)).select(down, x)
}

/// `Erf`.
pub(crate) fn erf_op<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    Ok(vec![erf(cx.float(0)?).into()])
}

/// The error function, composed: its Maclaurin series (to x^21) where |x| < 1, and
/// Abramowitz–Stegun 7.1.26 (absolute error below 1.5e-7, relative below 2e-7 there) beyond.
/// Also what the exact `Gelu` uses.
pub(crate) fn erf(x: Tensor<'_>) -> Tensor<'_> {
    // erf x = 2/√π Σ (−1)^n x^(2n+1) / (n! (2n+1)), evaluated by Horner in x².
    let x2 = x * x;
    let mut series = x.full_like(0.0);
    for n in (0..=10).rev() {
        let fact: f64 = (1..=n).map(|k| k as f64).product();
        let c = if n % 2 == 0 { 1.0 } else { -1.0 } / (fact * (2 * n + 1) as f64);
        series = series * x2 + c;
    }
    let small = series * x * (2.0 / std::f64::consts::PI.sqrt());
    let a = x.abs();
    let t = (a * 0.3275911 + 1.0).recip();
    let poly = ((((t * 1.061405429 - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t;
    let tail = 1.0 - poly * (-x2).exp();
    let signed = x.lt(x.full_like(0.0)).select(-tail, tail);
    a.lt(a.full_like(1.0)).select(small, signed)
}

/// `Clip`: bounds from inputs (opset 11 on) or the `min`/`max` attributes (before).
pub(crate) fn clip<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let (lo, hi) = if cx.opset >= 11 {
        (cx.opt_tensor(1)?, cx.opt_tensor(2)?)
    } else {
        let lo = cx.has_attr("min").then(|| cx.attr_f("min", 0.0)).transpose()?.map(|v| x.full_like(v));
        let hi = cx.has_attr("max").then(|| cx.attr_f("max", 0.0)).transpose()?.map(|v| x.full_like(v));
        (lo, hi)
    };
    let mut y = x;
    if let Some(lo) = lo {
        y = y.maximum(lo.reshape(&[]).broadcast_to(&x.shape()));
    }
    if let Some(hi) = hi {
        y = y.minimum(hi.reshape(&[]).broadcast_to(&x.shape()));
    }
    Ok(vec![y.into()])
}

/// `Equal`, `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual` (false where either is NaN).
pub(crate) fn compare<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let (a, b) = (cx.ordered(0)?, cx.ordered(1)?);
    let y = match cx.node.op_type() {
        "Equal" => a.equal(b),
        "Less" => a.lt(b),
        "Greater" => b.lt(a),
        "LessOrEqual" => a.lt(b).select(a.lt(b), a.equal(b)),
        "GreaterOrEqual" => b.lt(a).select(b.lt(a), a.equal(b)),
        _ => unreachable!("dispatched on these op types"),
    };
    Ok(vec![y.into()])
}

/// `Not`, `And`, `Or`, `Xor` on bools.
pub(crate) fn logic<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let a = cx.tensor(0)?;
    if a.dtype() != DType::Bool {
        return Err(Fail::Bad(format!("expects bool, got {}", a.ty())));
    }
    let not = |t: Tensor<'b>| t.equal(t.full_like(0.0));
    let y = match cx.node.op_type() {
        "Not" => not(a),
        op => {
            let b = cx.tensor(1)?;
            match op {
                "And" => a.select(b, b.full_like(0.0)),
                "Or" => a.select(b.full_like(1.0), b),
                "Xor" => not(a.equal(b)),
                _ => unreachable!("dispatched on these op types"),
            }
        }
    };
    Ok(vec![y.into()])
}

/// `Where(cond, x, y)`, all three broadcast together.
pub(crate) fn where_op<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    Ok(vec![cx.tensor(0)?.select(cx.tensor(1)?, cx.tensor(2)?).into()])
}

/// `Cast` (to the `to` attribute's dtype) and `CastLike` (to the second input's).
pub(crate) fn cast<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let to = if cx.node.op_type() == "CastLike" {
        cx.ty(1)?.dtype
    } else {
        let code = cx.attr_i("to", 0)? as i32;
        match dtype_of(code) {
            Some(d) => d,
            None => return cx.unsupported(format!("cast to {}", dtype_name(code))),
        }
    };
    Ok(vec![cx.tensor(0)?.cast(to).into()])
}
