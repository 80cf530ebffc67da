//! `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`: axes from the second input (opset 13
//! for `ReduceSum`, 18 for the others) or the `axes` attribute, `keepdims`, and
//! `noop_with_empty_axes`.

use super::attrs::norm_axes;
use super::{Cx, Lowered};

/// The four reductions.
pub(crate) fn reduce<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let op = cx.node.op_type();
    let x = if op == "ReduceMean" { cx.float(0)? } else { cx.tensor(0)? };
    // `bool` (any / all) through `i32`.
    let dtype = x.dtype();
    let x = if dtype == kiln_ir::DType::Bool { x.cast(kiln_ir::DType::I32) } else { x };
    let rank = x.rank();
    let keep = cx.attr_i("keepdims", 1)? != 0;
    let axes = match cx.axes_arg(1, "axes")? {
        Some(a) if !a.is_empty() => norm_axes(&a, rank)?,
        _ if cx.attr_i("noop_with_empty_axes", 0)? != 0 => return Ok(vec![x.cast(dtype).into()]),
        _ => (0..rank).collect(),
    };
    let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
    let y = match (op, keep) {
        ("ReduceSum", false) => x.sum(&ax),
        ("ReduceSum", true) => x.sum_keepdim(&ax),
        ("ReduceMean", false) => x.mean(&ax),
        ("ReduceMean", true) => x.mean_keepdim(&ax),
        ("ReduceMax", false) => x.max(&ax),
        ("ReduceMax", true) => x.max_keepdim(&ax),
        // min x = −max(−x).
        ("ReduceMin", false) => -(-x).max(&ax),
        ("ReduceMin", true) => -(-x).max_keepdim(&ax),
        _ => unreachable!("dispatched on these op types"),
    };
    // Back to `bool` as "positive": the maximum of nothing is the dtype's minimum, false.
    let y = if dtype == kiln_ir::DType::Bool { y.full_like(0.0).lt(y) } else { y };
    Ok(vec![y.into()])
}
