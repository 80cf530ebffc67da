//! Network layers: `MatMul`, `Gemm`, `Conv`, `ConvTranspose`, pooling, the normalizations
//! and `Dropout`. Convolutions are kiln's `conv2d` (1-D ones as 2-D with a height of 1);
//! padding that is not the same on both sides becomes an explicit `pad` (or crop).

use kiln_frontend::Tensor;
use kiln_frontend::nn::{AvgPool2d, MaxPool2d};
use kiln_ir::ConvAttrs;

use super::attrs::norm_axis;
use super::{Cx, Fail, Lowered, Out};

/// `MatMul` with numpy semantics (1-D operands are a row or a column).
pub(crate) fn matmul<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let (a, b) = (cx.tensor(0)?, cx.tensor(1)?);
    if a.rank() == 0 || b.rank() == 0 {
        return Err(Fail::Bad(format!("MatMul of a scalar: {} x {}", a.ty(), b.ty())));
    }
    if a.rank() == 1 {
        let k = a.shape()[0];
        let y = a.reshape(&[1, k]).matmul(b);
        // Drop the row axis the vector became: `[1]` for two vectors, `[..., 1, n]` otherwise.
        let mut dims = y.shape();
        if b.rank() == 1 {
            dims.clear();
        } else if dims.len() >= 2 {
            dims.remove(dims.len() - 2);
        }
        return Ok(vec![y.reshape(&dims).into()]);
    }
    Ok(vec![a.matmul(b).into()])
}

/// `Gemm`: `alpha · A' B' + beta · C`, `A'` and `B'` transposed by `transA`/`transB`, `C`
/// broadcast.
pub(crate) fn gemm<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let (mut a, mut b) = (cx.tensor(0)?, cx.tensor(1)?);
    if a.rank() != 2 || b.rank() != 2 {
        return Err(Fail::Bad(format!("expects matrices, got {} and {}", a.ty(), b.ty())));
    }
    if cx.attr_i("transA", 0)? != 0 {
        a = a.transpose();
    }
    if cx.attr_i("transB", 0)? != 0 {
        b = b.transpose();
    }
    let (alpha, beta) = (cx.attr_f("alpha", 1.0)?, cx.attr_f("beta", 1.0)?);
    let mut y = a.matmul(b);
    if alpha != 1.0 {
        y = y * alpha;
    }
    if let Some(c) = cx.opt_tensor(2)? {
        y = y + if beta == 1.0 { c } else { c * beta };
    }
    Ok(vec![y.into()])
}

/// The spatial geometry shared by convolutions and pooling, per spatial axis.
struct Window {
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    /// Padding before and after.
    pad: Vec<(usize, usize)>,
}

impl Window {
    /// Reads `kernel_shape` (or `kernel` when the attribute is absent), `strides`,
    /// `dilations`, `pads` and `auto_pad`, for the spatial extents `input`. With `ceil`, the
    /// output rounds up (pooling's `ceil_mode`) and extra padding after covers the last window.
    fn read(cx: &Cx<'_, '_>, input: &[usize], kernel: Option<&[usize]>, ceil: bool) -> Result<Window, Fail> {
        let n = input.len();
        let list = |name: &str, default: usize| cx.spatial_list(name, n, default, 1);
        let kernel = match (cx.attr_ints("kernel_shape"), kernel) {
            (Some(_), _) => list("kernel_shape", 1)?,
            (None, Some(k)) => k.to_vec(),
            (None, None) => return Err(Fail::Bad("needs `kernel_shape`".into())),
        };
        let (stride, dilation) = (list("strides", 1)?, list("dilations", 1)?);
        let span: Vec<usize> = (0..n).map(|i| (kernel[i] - 1) * dilation[i] + 1).collect();
        let auto = cx.attr_s("auto_pad", "NOTSET")?;
        let mut pad = match auto.as_str() {
            "NOTSET" => match cx.attr_ints("pads") {
                Some(p) if p.len() == 2 * n && p.iter().all(|&x| x >= 0) => {
                    (0..n).map(|i| (p[i] as usize, p[i + n] as usize)).collect()
                }
                Some(p) => return Err(Fail::Bad(format!("`pads` {p:?} do not fit {n} spatial axes"))),
                None => vec![(0, 0); n],
            },
            "VALID" => vec![(0, 0); n],
            "SAME_UPPER" | "SAME_LOWER" => (0..n)
                .map(|i| {
                    let out = input[i].div_ceil(stride[i]);
                    let total = ((out.max(1) - 1) * stride[i] + span[i]).saturating_sub(input[i]);
                    let small = total / 2;
                    if auto == "SAME_UPPER" { (small, total - small) } else { (total - small, small) }
                })
                .collect(),
            other => return Err(Fail::Bad(format!("auto_pad \"{other}\""))),
        };
        for i in 0..n {
            let padded = input[i] + pad[i].0 + pad[i].1;
            if padded < span[i] {
                return Err(Fail::Bad(format!(
                    "a window of {} does not fit an extent of {padded} on axis {i}",
                    span[i]
                )));
            }
            if ceil {
                let mut out = (padded - span[i]).div_ceil(stride[i]) + 1;
                // The last window must start inside the input or its leading padding.
                if (out - 1) * stride[i] >= input[i] + pad[i].0 {
                    out -= 1;
                }
                let needed = (out - 1) * stride[i] + span[i];
                pad[i].1 += needed.saturating_sub(padded);
            }
        }
        Ok(Window { kernel, stride, dilation, pad })
    }

    /// Output extents for the spatial `input` extents (floor; `read` widened for ceil).
    fn output(&self, input: &[usize]) -> Vec<usize> {
        (0..input.len())
            .map(|i| {
                let span = (self.kernel[i] - 1) * self.dilation[i] + 1;
                (input[i] + self.pad[i].0 + self.pad[i].1 - span) / self.stride[i] + 1
            })
            .collect()
    }

    fn symmetric(&self) -> bool {
        self.pad.iter().all(|&(b, e)| b == e)
    }

    /// `x` (`[N, C, spatial...]`) padded on the spatial axes with `value`.
    fn pad_input<'b>(&self, x: Tensor<'b>, value: f64) -> Tensor<'b> {
        let (mut low, mut high) = (vec![0, 0], vec![0, 0]);
        low.extend(self.pad.iter().map(|p| p.0));
        high.extend(self.pad.iter().map(|p| p.1));
        x.pad(&low, &high, value)
    }

    /// Every window tap of the padded `xp` as a strided slice, combined with `combine`.
    fn taps<'b>(
        &self,
        xp: Tensor<'b>,
        out: &[usize],
        combine: impl Fn(Tensor<'b>, Tensor<'b>) -> Tensor<'b>,
    ) -> Tensor<'b> {
        let s = xp.shape();
        let n = self.kernel.len();
        let taps: usize = self.kernel.iter().product();
        let mut acc: Option<Tensor<'b>> = None;
        for tap in 0..taps {
            let (mut lo, mut hi, mut st) = (vec![0, 0], vec![s[0], s[1]], vec![1, 1]);
            let mut rest = tap;
            let mut offsets = vec![0; n];
            for i in (0..n).rev() {
                offsets[i] = rest % self.kernel[i];
                rest /= self.kernel[i];
            }
            for i in 0..n {
                let start = offsets[i] * self.dilation[i];
                lo.push(start);
                hi.push(start + (out[i] - 1) * self.stride[i] + 1);
                st.push(self.stride[i]);
            }
            let win = xp.slice_all(&lo, &hi, &st);
            acc = Some(match acc {
                None => win,
                Some(a) => combine(a, win),
            });
        }
        acc.expect("a window has at least one tap")
    }
}

/// `[N, C, L]` as `[N, C, 1, L]` (1-D convolutions run as 2-D ones), or `x` when 2-D.
fn as_2d<'b>(x: Tensor<'b>) -> Tensor<'b> {
    let s = x.shape();
    if s.len() == 3 { x.reshape(&[s[0], s[1], 1, s[2]]) } else { x }
}

/// The attributes of a 2-D kiln convolution for a window read from an ONNX node.
fn conv_attrs(w: &Window, groups: usize) -> ConvAttrs {
    let pad = if w.symmetric() { as_hw(&w.pad.iter().map(|p| p.0).collect::<Vec<_>>(), 0) } else { [0, 0] };
    ConvAttrs {
        stride: as_hw(&w.stride, 1),
        padding: pad,
        dilation: as_hw(&w.dilation, 1),
        groups,
        ..ConvAttrs::default()
    }
}

/// A per-axis value of a 1-D or 2-D window as kiln's (height, width): a 1-D window is a 2-D
/// one of height 1, whose value on that axis is `h` (1 for strides and dilations, 0 for
/// padding).
fn as_hw(v: &[usize], h: usize) -> [usize; 2] {
    if v.len() == 1 { [h, v[0]] } else { [v[0], v[1]] }
}

/// `Conv` (1-D and 2-D, groups, strides, dilations, pads, `auto_pad`), with its bias.
pub(crate) fn conv<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let (x, w) = (cx.float(0)?, cx.float(1)?);
    let (xs, ws) = (x.shape(), w.shape());
    if !(3..=4).contains(&xs.len()) || ws.len() != xs.len() {
        return cx.unsupported(format!("Conv of {} with {} (kiln convolves 1-D and 2-D)", x.ty(), w.ty()));
    }
    let groups = cx.attr_i("group", 1)?.max(1) as usize;
    let win = Window::read(cx, &xs[2..], Some(&ws[2..]), false)?;
    let attrs = conv_attrs(&win, groups);
    let input = if win.symmetric() { x } else { win.pad_input(x, 0.0) };
    let mut y = as_2d(input).conv2d(as_2d(w), attrs);
    let mut dims = vec![xs[0], ws[0]];
    dims.extend(win.output(&xs[2..]));
    y = y.reshape(&dims);
    if let Some(bias) = cx.opt_tensor(2)? {
        let mut bdims = vec![1, ws[0]];
        bdims.extend(vec![1; xs.len() - 2]);
        y = y + bias.reshape(&bdims);
    }
    Ok(vec![y.into()])
}

/// `ConvTranspose` (1-D and 2-D; `output_padding`, `output_shape`, pads, `auto_pad`): the
/// full transposed convolution, cropped (or zero-padded) to the asked-for extents.
pub(crate) fn conv_transpose<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let (x, w) = (cx.float(0)?, cx.float(1)?);
    let (xs, ws) = (x.shape(), w.shape());
    let n = xs.len().saturating_sub(2);
    if !(1..=2).contains(&n) || ws.len() != xs.len() {
        return cx.unsupported(format!("ConvTranspose of {} with {} (kiln convolves 1-D and 2-D)", x.ty(), w.ty()));
    }
    let groups = cx.attr_i("group", 1)?.max(1) as usize;
    let kernel = match cx.has_attr("kernel_shape") {
        true => cx.spatial_list("kernel_shape", n, 1, 1)?,
        false => ws[2..].to_vec(),
    };
    let (stride, dilation) = (cx.spatial_list("strides", n, 1, 1)?, cx.spatial_list("dilations", n, 1, 1)?);
    let out_pad = cx.spatial_list("output_padding", n, 0, 0)?;
    // The full result: every tap's contribution, before any padding is removed.
    let full: Vec<usize> = (0..n)
        .map(|i| stride[i] * xs[2 + i].saturating_sub(1) + out_pad[i] + (kernel[i] - 1) * dilation[i] + 1)
        .collect();
    let auto = cx.attr_s("auto_pad", "NOTSET")?;
    let wanted: Option<Vec<i64>> = match (cx.attr_ints("output_shape"), auto.as_str()) {
        (Some(o), _) => Some(o[o.len().saturating_sub(n)..].to_vec()),
        (None, "SAME_UPPER" | "SAME_LOWER") => Some((0..n).map(|i| (xs[2 + i] * stride[i]) as i64).collect()),
        _ => None,
    };
    let pads: Vec<(i64, i64)> = match wanted {
        Some(out) => (0..n)
            .map(|i| {
                // Floor division, as the ONNX reference: a negative total grows the end.
                let total = full[i] as i64 - out[i];
                let half = total.div_euclid(2);
                if auto == "SAME_UPPER" { (half, total - half) } else { (total - half, half) }
            })
            .collect(),
        None => match cx.attr_ints("pads") {
            Some(p) if p.len() == 2 * n => (0..n).map(|i| (p[i], p[i + n])).collect(),
            Some(p) => return Err(Fail::Bad(format!("`pads` {p:?} do not fit {n} spatial axes"))),
            None => vec![(0, 0); n],
        },
    };
    let attrs = ConvAttrs { stride: as_hw(&stride, 1), dilation: as_hw(&dilation, 1), groups, ..ConvAttrs::default() };
    let y = as_2d(x).conv2d_transpose(as_2d(w), attrs, as_hw(&full, 1));
    let mut dims = vec![xs[0], ws[1] * groups];
    dims.extend(&full);
    let mut y = y.reshape(&dims);
    // Remove positive padding, add zeros for negative.
    let (mut lo, mut hi) = (vec![0usize; n + 2], dims.clone());
    let (mut grow_lo, mut grow_hi) = (vec![0usize; n + 2], vec![0usize; n + 2]);
    for i in 0..n {
        let (b, e) = pads[i];
        (lo[2 + i], grow_lo[2 + i]) = (b.max(0) as usize, (-b).max(0) as usize);
        let end = full[i] as i64 - e.max(0);
        if end < b.max(0) {
            return Err(Fail::Bad(format!("pads {pads:?} remove more than the output")));
        }
        (hi[2 + i], grow_hi[2 + i]) = (end as usize, (-e).max(0) as usize);
    }
    if lo.iter().any(|&v| v > 0) || hi != dims {
        y = y.slice_all(&lo, &hi, &vec![1; n + 2]);
    }
    y = y.pad(&grow_lo, &grow_hi, 0.0);
    if let Some(bias) = cx.opt_tensor(2)? {
        let mut bdims = vec![1, ws[1] * groups];
        bdims.extend(vec![1; n]);
        y = y + bias.reshape(&bdims);
    }
    Ok(vec![y.into()])
}

/// `MaxPool` and `AveragePool` over 1-, 2- or 3-D windows (`ceil_mode`, dilations, pads,
/// `count_include_pad`). Square 2-D windows with symmetric padding use the frontend's pooling
/// layers; anything else one strided slice per window tap.
pub(crate) fn pool<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let max = cx.node.op_type() == "MaxPool";
    // Max-pooling takes integers too (padded with the dtype's minimum).
    let x = if max { cx.tensor(0)? } else { cx.float(0)? };
    let s = x.shape();
    if s.len() < 3 {
        return Err(Fail::Bad(format!("expects [N, C, spatial...], got {}", x.ty())));
    }
    if cx.node.output.get(1).is_some_and(|o| !o.is_empty()) {
        return cx.unsupported("MaxPool's Indices output");
    }
    let ceil = cx.attr_i("ceil_mode", 0)? != 0;
    let win = Window::read(cx, &s[2..], None, ceil)?;
    let out = win.output(&s[2..]);
    let include_pad = cx.attr_i("count_include_pad", 0)? != 0;
    // The frontend's layers: one square 2-D window, stride and symmetric padding.
    let (k, st, p) = (win.kernel[0], win.stride[0], win.pad[0].0);
    let square = s.len() == 4
        && win.kernel.iter().all(|&v| v == k)
        && win.stride.iter().all(|&v| v == st)
        && win.pad.iter().all(|&v| v == (p, p))
        && win.dilation.iter().all(|&d| d == 1)
        && x.dtype().is_float();
    if square && (max || p == 0 || include_pad) {
        let y = if max { MaxPool2d::new(k, st, p).forward(x) } else { AvgPool2d::new(k, st, p).forward(x) };
        return Ok(vec![y.into()]);
    }
    if max {
        let lowest = match x.dtype() {
            kiln_ir::DType::I32 => i32::MIN as f64,
            kiln_ir::DType::I64 => i64::MIN as f64,
            _ => f64::NEG_INFINITY,
        };
        return Ok(vec![win.taps(win.pad_input(x, lowest), &out, |a, b| a.maximum(b)).into()]);
    }
    let sum = win.taps(win.pad_input(x, 0.0), &out, |a, b| a + b);
    // How many taps of each window count: those on the input, or also on its explicit
    // padding (never the extra padding `ceil_mode` adds).
    let explicit = Window::read(cx, &s[2..], None, false)?;
    let mut ones_dims = vec![1, 1];
    let mut lead = vec![0, 0];
    let mut trail = vec![0, 0];
    for i in 0..out.len() {
        let (b, e) = if include_pad { explicit.pad[i] } else { (0, 0) };
        ones_dims.push(s[2 + i] + b + e);
        lead.push(win.pad[i].0 - b);
        trail.push(win.pad[i].1 - e);
    }
    let ones = cx.b.constant(1.0, x.dtype(), ones_dims).pad(&lead, &trail, 0.0);
    let counts = win.taps(ones, &out, |a, b| a + b);
    Ok(vec![(sum / counts).into()])
}

/// `GlobalAveragePool` and `GlobalMaxPool`: over every spatial axis, kept with extent 1.
pub(crate) fn global_pool<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.float(0)?;
    let axes: Vec<isize> = (2..x.rank() as isize).collect();
    let y = if cx.node.op_type() == "GlobalMaxPool" { x.max_keepdim(&axes) } else { x.mean_keepdim(&axes) };
    Ok(vec![y.into()])
}

/// `[C]` as `[1, C, 1, ...]` to broadcast over an `[N, C, ...]` tensor of rank `rank`.
fn per_channel<'b>(t: Tensor<'b>, rank: usize) -> Tensor<'b> {
    let mut dims = vec![1; rank.max(2)];
    dims[1] = t.shape().iter().product();
    t.reshape(&dims)
}

/// `BatchNormalization`: `(x − mean) / √(var + ε) · scale + B` per channel, with the running
/// statistics in inference mode, the batch's in training mode (`training_mode`, opset 14),
/// which also outputs the updated running statistics.
pub(crate) fn batch_norm<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.float(0)?;
    let r = x.rank();
    let [scale, bias, mean, var] = [1, 2, 3, 4].map(|i| cx.tensor(i).map(|t| per_channel(t, r)));
    let (scale, bias, mean, var) = (scale?, bias?, mean?, var?);
    let eps = cx.attr_f("epsilon", 1e-5)?;
    let normalize = |mean: Tensor<'b>, var: Tensor<'b>| (x - mean) / (var + eps).sqrt() * scale + bias;
    if cx.attr_i("training_mode", 0)? == 0 {
        return Ok(vec![normalize(mean, var).into()]);
    }
    // Training mode: normalized by the batch's own statistics (over every axis but the
    // channels; the population variance), with the running statistics updated by `momentum`.
    let axes: Vec<isize> = (0..r as isize).filter(|&a| a != 1).collect();
    let batch_mean = x.mean_keepdim(&axes);
    let centered = x - batch_mean;
    let batch_var = (centered * centered).mean_keepdim(&axes);
    let momentum = cx.attr_f("momentum", 0.9)?;
    let channels = [x.shape()[1]];
    let running = |old: Tensor<'b>, now: Tensor<'b>| (old * momentum + now * (1.0 - momentum)).reshape(&channels);
    Ok(vec![normalize(batch_mean, batch_var).into(), running(mean, batch_mean).into(), running(var, batch_var).into()])
}

/// `LayerNormalization` over the axes from `axis` on, with its optional `Mean` and
/// `InvStdDev` outputs.
pub(crate) fn layer_norm<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.float(0)?;
    let r = x.rank();
    let axis = norm_axis(cx.attr_i("axis", -1)?, r)?;
    let axes: Vec<isize> = (axis as isize..r as isize).collect();
    let eps = cx.attr_f("epsilon", 1e-5)?;
    let mean = x.mean_keepdim(&axes);
    let centered = x - mean;
    let inv = ((centered * centered).mean_keepdim(&axes) + eps).sqrt().recip();
    let mut y = centered * inv * cx.tensor(1)?;
    if let Some(b) = cx.opt_tensor(2)? {
        y = y + b;
    }
    Ok(vec![y.into(), mean.into(), inv.into()])
}

/// `LRN`: each element over `(bias + alpha/size · Σ x²)^beta`, the sum over `size` neighbouring
/// channels (`⌊(size−1)/2⌋` before, `⌈(size−1)/2⌉` after, zeros past the ends).
pub(crate) fn lrn<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let x = cx.float(0)?;
    let s = x.shape();
    let size = cx.attr_i("size", 0)?;
    if s.len() < 3 || size < 1 {
        return Err(Fail::Bad(format!("expects [N, C, ...] and a positive size, got {} and {size}", x.ty())));
    }
    let (alpha, beta, bias) = (cx.attr_f("alpha", 1e-4)?, cx.attr_f("beta", 0.75)?, cx.attr_f("bias", 1.0)?);
    let size = size as usize;
    let (before, after) = ((size - 1) / 2, size / 2);
    let (mut low, mut high) = (vec![0; s.len()], vec![0; s.len()]);
    (low[1], high[1]) = (before, after);
    let squares = (x * x).pad(&low, &high, 0.0);
    let mut sum = squares.slice(1, 0, s[1], 1);
    for k in 1..size {
        sum = sum + squares.slice(1, k, k + s[1], 1);
    }
    let scale = (sum * (alpha / size as f64) + bias).pow(x.full_like(beta));
    Ok(vec![(x / scale).into()])
}

/// `Dropout` at inference (or training with a ratio of 0): the identity, and a mask of all
/// `true`.
pub(crate) fn dropout<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let training = cx.opt_ints(2)?.is_some_and(|v| v.iter().any(|&b| b != 0));
    // Training with a ratio of 0 drops nothing; any other ratio draws a mask, which kiln
    // imports for inference only.
    let ratio = if cx.has(1) { cx.known(1)?.to_f64_vec().first().copied().unwrap_or(0.5) } else { 0.5 };
    if (training && ratio != 0.0) || (cx.opset < 7 && cx.attr_i("is_test", 0)? == 0) {
        return cx.unsupported("Dropout in training mode (kiln imports it for inference)");
    }
    let x = cx.tensor(0)?;
    let mask = cx.b.constant(1.0, kiln_ir::DType::Bool, x.shape());
    Ok(vec![Out::Dyn(x), Out::Dyn(mask)])
}
