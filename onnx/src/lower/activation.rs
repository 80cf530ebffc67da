//! Activations and the softmax family, as compositions of kiln ops.

use super::attrs::norm_axis;
use super::elementwise::erf;
use super::{Cx, Lowered};

/// `Relu`, `LeakyRelu`, `Sigmoid`, `HardSigmoid`, `Softplus`, `Elu`, `Selu`, `Gelu`.
pub(crate) fn activation<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let op = cx.node.op_type();
    let x = if op == "Relu" { cx.tensor(0)? } else { cx.float(0)? };
    let zero = x.full_like(0.0);
    let y = match op {
        "Relu" => x.relu(),
        "LeakyRelu" => x.lt(zero).select(x * cx.attr_f("alpha", 0.01)?, x),
        "Sigmoid" => x.sigmoid(),
        "HardSigmoid" => {
            let (alpha, beta) = (cx.attr_f("alpha", 0.2)?, cx.attr_f("beta", 0.5)?);
            (x * alpha + beta).maximum(zero).minimum(x.full_like(1.0))
        }
        // log(1 + e^x) without overflow: max(x, 0) + log(1 + e^−|x|).
        "Softplus" => x.maximum(zero) + ((-x.abs()).exp() + 1.0).log(),
        "Elu" => {
            let alpha = cx.attr_f("alpha", 1.0)?;
            x.lt(zero).select((x.exp() - 1.0) * alpha, x)
        }
        "Selu" => {
            let alpha = cx.attr_f("alpha", 1.673_263_192_176_818_8)?;
            let gamma = cx.attr_f("gamma", 1.050_701_022_148_132_3)?;
            zero.lt(x).select(x, (x.exp() - 1.0) * alpha) * gamma
        }
        "Gelu" => match cx.attr_s("approximate", "none")?.as_str() {
            "none" => x * 0.5 * (erf(x * std::f64::consts::FRAC_1_SQRT_2) + 1.0),
            "tanh" => x.gelu(),
            other => return cx.unsupported(format!("Gelu approximate=\"{other}\"")),
        },
        _ => unreachable!("dispatched on these op types"),
    };
    Ok(vec![y.into()])
}

/// `Softmax` and `LogSoftmax`: along `axis` from opset 13; before, over everything from `axis`
/// on (the input read as a matrix).
pub(crate) fn softmax<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.float(0)?;
    let log = cx.node.op_type() == "LogSoftmax";
    let apply = |t: kiln_frontend::Tensor<'b>, axis: isize| if log { t.log_softmax(axis) } else { t.softmax(axis) };
    let shape = x.shape();
    if cx.opset >= 13 {
        let axis = norm_axis(cx.attr_i("axis", -1)?, shape.len())?;
        return Ok(vec![apply(x, axis as isize).into()]);
    }
    let axis = norm_axis(cx.attr_i("axis", 1)?, shape.len().max(1))?;
    let rows: usize = shape[..axis].iter().product();
    let cols: usize = shape[axis..].iter().product();
    Ok(vec![apply(x.reshape(&[rows, cols]), 1).reshape(&shape).into()])
}
