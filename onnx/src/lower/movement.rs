//! Movement and shape ops: `Reshape`, `Flatten`, `Transpose`, `Squeeze`, `Unsqueeze`,
//! `Expand`, `Concat`, `Split`, `Slice`, `Pad`, `Gather`, and the ops that make known values:
//! `Shape`, `Size`, `Constant`, `ConstantOfShape`, `Range`. Shapes, axes, pads and bounds
//! that arrive as inputs must be known at import time (folded, or bound by the caller).

use kiln_frontend::{Tensor, broadcast_shapes};
use kiln_ir::{DType, Value};

use super::attrs::{norm_axes, norm_axis};
use super::{Cx, Fail, Lowered, Out};

/// `Reshape`: 0 copies the input's extent (unless `allowzero`), −1 is inferred.
pub(crate) fn reshape<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let spec = if cx.opset >= 5 { cx.ints(1)? } else { cx.attr_ints("shape").unwrap_or_default() };
    let allow_zero = cx.attr_i("allowzero", 0)? != 0;
    let s = x.shape();
    let mut dims = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        dims.push(match d {
            0 if !allow_zero => {
                *s.get(i).ok_or_else(|| Fail::Bad(format!("shape {spec:?} copies axis {i} of {}", x.ty())))?
            }
            -1 if infer.is_none() => {
                infer = Some(i);
                1
            }
            d if d >= 0 => d as usize,
            _ => return Err(Fail::Bad(format!("shape {spec:?} is not a valid reshape of {}", x.ty()))),
        });
    }
    let total: usize = s.iter().product();
    if let Some(i) = infer {
        let known: usize = dims.iter().product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(Fail::Bad(format!("cannot infer axis {i} of {spec:?} for {}", x.ty())));
        }
        dims[i] = total / known;
    }
    if dims.iter().product::<usize>() != total {
        return Err(Fail::Bad(format!("cannot reshape {} to {dims:?}", x.ty())));
    }
    Ok(vec![x.reshape(&dims).into()])
}

/// `Flatten`: a matrix of the axes before `axis` by those from it.
pub(crate) fn flatten<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let s = x.shape();
    let axis = cx.attr_i("axis", 1)?;
    let a = if axis < 0 { axis + s.len() as i64 } else { axis };
    if !(0..=s.len() as i64).contains(&a) {
        return Err(Fail::Bad(format!("axis {axis} is out of range for {}", x.ty())));
    }
    let (rows, cols) = (s[..a as usize].iter().product(), s[a as usize..].iter().product());
    Ok(vec![x.reshape(&[rows, cols]).into()])
}

/// `Transpose` (`perm`, reversing the axes by default).
pub(crate) fn transpose<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let r = x.rank();
    let perm: Vec<usize> = match cx.attr_ints("perm") {
        Some(p) => {
            let mut sorted = norm_axes(&p, r)?;
            sorted.dedup();
            if p.len() != r || sorted.len() != r {
                return Err(Fail::Bad(format!("perm {p:?} is not a permutation of {r} axes")));
            }
            p.iter().map(|&a| norm_axis(a, r)).collect::<Result<_, _>>()?
        }
        None => (0..r).rev().collect(),
    };
    Ok(vec![x.permute(&perm).into()])
}

/// `Squeeze`: the given axes (each of extent 1), or every axis of extent 1.
pub(crate) fn squeeze<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let s = x.shape();
    let axes = match cx.axes_arg(1, "axes")? {
        Some(a) => norm_axes(&a, s.len())?,
        None => (0..s.len()).filter(|&i| s[i] == 1).collect(),
    };
    if let Some(&a) = axes.iter().find(|&&a| s[a] != 1) {
        return Err(Fail::Bad(format!("cannot squeeze axis {a} of {}", x.ty())));
    }
    let dims: Vec<usize> = (0..s.len()).filter(|i| !axes.contains(i)).map(|i| s[i]).collect();
    Ok(vec![x.reshape(&dims).into()])
}

/// `Unsqueeze`: new axes of extent 1 at the given positions of the result.
pub(crate) fn unsqueeze<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let s = x.shape();
    let given = cx.axes_arg(1, "axes")?.ok_or_else(|| Fail::Bad("needs axes".into()))?;
    let axes = norm_axes(&given, s.len() + given.len())?;
    let mut it = s.iter();
    let dims: Vec<usize> = (0..s.len() + axes.len())
        .map(|i| if axes.contains(&i) { 1 } else { *it.next().expect("rank adds up") })
        .collect();
    Ok(vec![x.reshape(&dims).into()])
}

/// `Expand`: numpy broadcasting of the input with the given shape (either may stretch).
pub(crate) fn expand<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let shape = positive(&cx.ints(1)?, "shape")?;
    let out = broadcast_shapes(&x.shape(), &shape)
        .ok_or_else(|| Fail::Bad(format!("cannot expand {} to {shape:?}", x.ty())))?;
    Ok(vec![x.broadcast_to(&out).into()])
}

/// `Concat` along `axis`.
pub(crate) fn concat<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let xs = cx.tensors()?;
    let first = xs.first().ok_or_else(|| Fail::Bad("needs at least one input".into()))?;
    let axis = norm_axis(cx.attr_i("axis", 0)?, first.rank())?;
    // Empty parts add nothing (and kiln refuses no concatenation of them).
    let parts: Vec<Tensor<'b>> = xs.iter().copied().filter(|t| t.shape().get(axis) != Some(&0)).collect();
    Ok(vec![
        match parts.len() {
            0 => *first,
            1 => parts[0],
            _ => cx.b.concat(&parts, axis as isize),
        }
        .into(),
    ])
}

/// `Split` along `axis`: sizes from the second input (opset 13), the `split` attribute
/// (before), `num_outputs` (18), or equal parts, one per output.
pub(crate) fn split<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let axis = norm_axis(cx.attr_i("axis", 0)?, x.rank())?;
    let n = x.shape()[axis];
    let parts = cx.outputs();
    let sizes = match cx.axes_arg(1, "split")? {
        Some(s) => positive(&s, "split")?,
        None => {
            let count = cx.attr_i("num_outputs", parts as i64)?.max(1) as usize;
            let each = n.div_ceil(count);
            (0..count).map(|i| each.min(n.saturating_sub(i * each))).collect()
        }
    };
    if sizes.iter().sum::<usize>() != n {
        return Err(Fail::Bad(format!("split sizes {sizes:?} do not add up to {n} along axis {axis} of {}", x.ty())));
    }
    let mut at = 0;
    let mut outs = Vec::with_capacity(sizes.len());
    for s in sizes {
        outs.push(x.slice(axis as isize, at, at + s, 1).into());
        at += s;
    }
    Ok(outs)
}

/// `Slice`: bounds from inputs (opset 10) or attributes (before), negative steps included
/// (a forward slice of the same elements, reversed by a gather).
pub(crate) fn slice<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let s = x.shape();
    let (starts, ends, axes, steps) = if cx.opset >= 10 {
        (cx.ints(1)?, cx.ints(2)?, cx.opt_ints(3)?, cx.opt_ints(4)?)
    } else {
        let a = |n: &str| cx.attr_ints(n).ok_or_else(|| Fail::Bad(format!("needs `{n}`")));
        (a("starts")?, a("ends")?, cx.attr_ints("axes"), None)
    };
    let axes: Vec<i64> = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(Fail::Bad("starts, ends, axes and steps differ in length".into()));
    }
    let (mut lo, mut hi, mut st) = (vec![0usize; s.len()], s.clone(), vec![1usize; s.len()]);
    let mut reversed = Vec::new();
    let mut seen = Vec::new();
    for k in 0..starts.len() {
        let a = norm_axis(axes[k], s.len())?;
        if seen.contains(&a) {
            return Err(Fail::Bad(format!("axis {a} is sliced twice")));
        }
        seen.push(a);
        let (dim, step) = (s[a] as i64, steps[k]);
        if step == 0 {
            return Err(Fail::Bad("a step of 0".into()));
        }
        let wrap = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        if step > 0 {
            let start = wrap(starts[k]).clamp(0, dim);
            let end = wrap(ends[k]).clamp(0, dim).max(start);
            (lo[a], hi[a], st[a]) = (start as usize, end as usize, step as usize);
        } else {
            // Elements start, start+step, ... down to (not including) end.
            let start = wrap(starts[k]).clamp(-1, dim - 1);
            let end = wrap(ends[k]).clamp(-1, dim - 1);
            let count = if start > end { (start - end + (-step) - 1) / (-step) } else { 0 };
            let first = start - (count - 1).max(0) * (-step);
            (lo[a], hi[a], st[a]) =
                if count > 0 { (first as usize, (start + 1) as usize, (-step) as usize) } else { (0, 0, 1) };
            reversed.push(a);
        }
    }
    let mut y = x.slice_all(&lo, &hi, &st);
    for a in reversed {
        y = reverse(cx.b, y, a);
    }
    Ok(vec![y.into()])
}

/// `t` with the elements along `axis` in reverse order.
fn reverse<'b>(b: &'b kiln_frontend::Builder, t: Tensor<'b>, axis: usize) -> Tensor<'b> {
    let n = t.shape()[axis];
    if n <= 1 {
        return t;
    }
    t.gather(steps(b, n, n - 1, -1), axis as isize)
}

/// The `i64` indices `start + j·step` for `j` in `0..count`, for a gather.
fn steps<'b>(b: &'b kiln_frontend::Builder, count: usize, start: usize, step: i64) -> Tensor<'b> {
    b.iota(DType::I64, [count], 0) * step as f64 + start as f64
}

/// `Pad` with a constant (opset 11 takes pads, the value and, from 18, axes as inputs);
/// negative pads crop.
pub(crate) fn pad<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let r = x.rank();
    let mode = cx.attr_s("mode", "constant")?;
    if !matches!(mode.as_str(), "constant" | "edge" | "reflect" | "wrap") {
        return Err(Fail::Bad(format!("Pad mode=\"{mode}\"")));
    }
    let (pads, value, axes) = if cx.opset >= 11 {
        let value = match cx.has(2) {
            true => cx.known(2)?.to_f64_vec().first().copied().unwrap_or(0.0),
            false => 0.0,
        };
        (cx.ints(1)?, value, cx.opt_ints(3)?)
    } else {
        (cx.attr_ints("pads").unwrap_or_default(), cx.attr_f("value", 0.0)?, None)
    };
    let axes = match axes {
        Some(a) => a.iter().map(|&x| norm_axis(x, r)).collect::<Result<Vec<_>, _>>()?,
        None => (0..r).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(Fail::Bad(format!("{} pads for {} axes", pads.len(), axes.len())));
    }
    let s = x.shape();
    let (mut low, mut high) = (vec![0usize; r], vec![0usize; r]);
    let (mut lo, mut hi) = (vec![0usize; r], s.clone());
    for (k, &a) in axes.iter().enumerate() {
        let (b, e) = (pads[k], pads[k + axes.len()]);
        let crop = |p: i64| (-p).max(0) as usize;
        if crop(b) + crop(e) > s[a] {
            return Err(Fail::Bad(format!("pads {pads:?} crop more than axis {a} of {}", x.ty())));
        }
        (low[a], high[a]) = (b.max(0) as usize, e.max(0) as usize);
        (lo[a], hi[a]) = (crop(b), s[a] - crop(e));
    }
    let cropped = if lo.iter().any(|&v| v > 0) || hi != s { x.slice_all(&lo, &hi, &vec![1; r]) } else { x };
    if mode == "constant" {
        return Ok(vec![cropped.pad(&low, &high, value).into()]);
    }
    // Edge, reflect and wrap: each axis in turn gains the elements those modes pick, gathered.
    let mut y = cropped;
    for a in 0..r {
        let n = y.shape()[a];
        let (before, after) = (low[a], high[a]);
        if before == 0 && after == 0 {
            continue;
        }
        if n == 0 || (mode == "reflect" && (before >= n || after >= n)) {
            return Err(Fail::Bad(format!("cannot {mode}-pad axis {a} of extent {n} by {before} and {after}")));
        }
        // Index j of the padding before (0..before) and after (0..after) reads:
        let (first, step_before, last, step_after) = match mode.as_str() {
            "edge" => (0, 0, n - 1, 0),
            "reflect" => (before, -1, n - 2, -1),
            // wrap: the last `before` elements, then the first `after`.
            _ => ((n - before % n) % n, 1, 0, 1),
        };
        let picks = |count: usize, start: usize, step: i64| {
            let idx = steps(cx.b, count, start, step);
            // Wrapping past the end comes back to the start.
            if mode == "wrap" { idx - (idx / n as f64) * n as f64 } else { idx }
        };
        let mut parts = Vec::with_capacity(3);
        if before > 0 {
            parts.push(y.gather(picks(before, first, step_before), a as isize));
        }
        parts.push(y);
        if after > 0 {
            parts.push(y.gather(picks(after, last, step_after), a as isize));
        }
        y = cx.b.concat(&parts, a as isize);
    }
    Ok(vec![y.into()])
}

/// `Gather` along `axis`; negative indices count from the end.
pub(crate) fn gather<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.tensor(0)?;
    let axis = norm_axis(cx.attr_i("axis", 0)?, x.rank())?;
    let n = x.shape()[axis] as f64;
    let idx = cx.tensor(1)?;
    if !idx.dtype().is_int() {
        return Err(Fail::Bad(format!("indices must be integers, got {}", idx.ty())));
    }
    let zero = idx.full_like(0.0);
    let wrapped = idx.lt(zero).select(idx + n, idx);
    Ok(vec![x.gather(wrapped, axis as isize).into()])
}

/// `Shape` (with `start` and `end`, opset 15): known at import time.
pub(crate) fn shape<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let dims = cx.ty(0)?.dims().to_vec();
    let r = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
    let start = clamp(cx.attr_i("start", 0)?);
    let end = clamp(cx.attr_i("end", r)?).max(start);
    let v: Vec<i64> = dims[start..end].iter().map(|&d| d as i64).collect();
    Ok(vec![known(&[v.len()], v)?])
}

/// `Size`: the element count, known at import time.
pub(crate) fn size<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    Ok(vec![known(&[], vec![cx.ty(0)?.numel() as i64])?])
}

/// `Constant`, from whichever `value*` attribute it has.
pub(crate) fn constant<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    if let Some(v) = cx.attr_tensor("value")? {
        return Ok(vec![Out::Known(v)]);
    }
    let v = if cx.has_attr("value_float") {
        Value::from_vec(&[], vec![cx.attr_f("value_float", 0.0)? as f32])
    } else if let Some(f) = cx.attr_floats("value_floats") {
        Value::from_vec(&[f.len()], f)
    } else if cx.has_attr("value_int") {
        Value::from_vec(&[], vec![cx.attr_i("value_int", 0)?])
    } else if let Some(i) = cx.attr_ints("value_ints") {
        Value::from_vec(&[i.len()], i)
    } else {
        return cx.unsupported("Constant without a numeric value (sparse or string)");
    };
    Ok(vec![Out::Known(v.map_err(|e| Fail::Bad(e.to_string()))?)])
}

/// `ConstantOfShape`: the `value` attribute's one element (0.0f32 by default) in every place.
pub(crate) fn constant_of_shape<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let dims = positive(&cx.ints(0)?, "shape")?;
    let v = cx.attr_tensor("value")?.unwrap_or_else(|| Value::splat(&kiln_ir::TensorType::new(DType::F32, []), 0.0));
    let x = v.to_f64_vec().first().copied().ok_or_else(|| Fail::Bad("`value` has no element".into()))?;
    // A `const` of that value: exact for every dtype (literals are f64, integers exact to 2^53).
    Ok(vec![cx.b.constant(x, v.dtype(), dims).into()])
}

/// `Range(start, limit, delta)`: `start + i·delta` for as many `i` as stay short of `limit`;
/// the count must be known at import time.
pub(crate) fn range<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let scalar = |i: usize| -> Result<f64, Fail> {
        cx.known(i)?.to_f64_vec().first().copied().ok_or_else(|| Fail::Bad(format!("input {i} is empty")))
    };
    let (start, limit, delta) = (scalar(0)?, scalar(1)?, scalar(2)?);
    if delta == 0.0 {
        return Err(Fail::Bad("delta is 0".into()));
    }
    let n = ((limit - start) / delta).ceil().max(0.0) as usize;
    let dtype = cx.ty(0)?.dtype;
    let steps = cx.b.iota(dtype, [n], 0);
    Ok(vec![
        (steps * cx.tensor(2)?.reshape(&[]).broadcast_to(&[n]) + cx.tensor(0)?.reshape(&[]).broadcast_to(&[n])).into(),
    ])
}

/// An `i64` value known at import time.
fn known<'b>(dims: &[usize], v: Vec<i64>) -> Result<Out<'b>, Fail> {
    Value::from_vec(dims, v).map(Out::Known).map_err(|e| Fail::Bad(e.to_string()))
}

/// Extents from integers, refusing negative ones.
fn positive(v: &[i64], what: &str) -> Result<Vec<usize>, Fail> {
    v.iter()
        .map(|&d| usize::try_from(d).map_err(|_| Fail::Bad(format!("{what} {v:?} has a negative extent"))))
        .collect()
}
