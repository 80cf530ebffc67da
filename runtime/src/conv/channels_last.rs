//! Channels-last convolutions (`layout=nhwc`): `x: [N, H, W, C]`, `y: [N, OH, OW, O]`, the
//! weight still `[O, C/G, KH, KW]`.
//!
//! Row `(n, oy, ox)` of the columns matrix holds, per group `g`, the patch of that output
//! position in the order `(ky, kx, ci)`: `x[n, iy, ix, g·C/G + ci]` (0 in the padding). With
//! channels innermost, each `(ky, kx)` tap is a run of `C/G` contiguous inputs, and for one
//! group and no dilation a whole row of the window is one run. Then, for the whole batch at once
//! (`N·P` rows, so the products are tall even where the channels are few):
//! - the forward is `y[:, group g] = cols_g · W'_gᵀ`, written straight into `y` (row stride O),
//! - the input gradient is `cols'_g = dy[:, group g] · W'_g`, scattered back (col2im),
//! - the weight gradient is `dW'_gᵀ = cols_gᵀ · dy[:, group g]`,
//!
//! where `W'` is the weight with its taps reordered to `(ky, kx, ci)` (a copy of `O·K`
//! elements per call). The columns of the whole batch live in the thread's scratch or in the
//! kept buffer a training step shares between the forward and the weight gradient: the same
//! `K × N·P` elements as the channels-first layout, transposed.
//!
//! Images are filled in parallel and the products are split into row bands; every output
//! element is one dot product in a fixed order, so results do not depend on the thread count.

use super::{ConvGeometry, Float, Out, copy_short};
use crate::gemm::{Operand, matmul_strided};
use crate::pool::Pool;

/// Patch length of one group: `KH·KW·C/G`.
fn k(geo: &ConvGeometry) -> usize {
    geo.cg() * geo.kh * geo.kw
}

/// The weight `[O, C/G, KH, KW]` with each output channel's taps reordered to `(ky, kx, ci)`.
fn reorder_weight<T: Float>(geo: &ConvGeometry, w: &[T], out: &mut [T]) {
    let (cg, kh, kw) = (geo.cg(), geo.kh, geo.kw);
    for o in 0..geo.o {
        let (src, dst) = (&w[o * k(geo)..][..k(geo)], &mut out[o * k(geo)..][..k(geo)]);
        for ci in 0..cg {
            for t in 0..kh * kw {
                dst[t * cg + ci] = src[ci * kh * kw + t];
            }
        }
    }
}

/// The valid `kx` of output column `ox`: those whose input column lies inside `0..w`.
fn valid_taps(geo: &ConvGeometry, ox: usize) -> std::ops::Range<usize> {
    let (sw, pw, dw) = (geo.attrs.stride[1], geo.attrs.padding[1], geo.attrs.dilation[1]);
    let start = ox * sw;
    // start + kx·dw ≥ pw  ⇔  kx ≥ ceil((pw − start) / dw)
    let lo = pw.saturating_sub(start).div_ceil(dw).min(geo.kw);
    // start + kx·dw − pw < w  ⇔  kx·dw < w + pw − start
    let hi = if geo.w + pw > start { (geo.w + pw - start).div_ceil(dw).min(geo.kw) } else { 0 };
    lo..hi.max(lo)
}

/// Writes the `P` column rows of image `xn` (`[h, w, c]`) into `rows` (`P × G·K`).
fn im2col<T: Float>(geo: &ConvGeometry, xn: &[T], rows: &mut [T]) {
    let (cg, kh, kw, c) = (geo.cg(), geo.kh, geo.kw, geo.c);
    let (sh, ph, dh) = (geo.attrs.stride[0], geo.attrs.padding[0], geo.attrs.dilation[0]);
    let (sw, pw, dw) = (geo.attrs.stride[1], geo.attrs.padding[1], geo.attrs.dilation[1]);
    let row_len = geo.groups() * k(geo);
    // One group without dilation: a window row's taps are one contiguous run of the input.
    let runs = geo.groups() == 1 && dw == 1;
    for oy in 0..geo.oh {
        for ox in 0..geo.ow {
            let row = &mut rows[(oy * geo.ow + ox) * row_len..][..row_len];
            let valid = valid_taps(geo, ox);
            for g in 0..geo.groups() {
                for ky in 0..kh {
                    let dst = &mut row[(g * kh + ky) * kw * cg..][..kw * cg];
                    let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                    if iy >= geo.h || valid.is_empty() {
                        dst.fill(T::default());
                        continue;
                    }
                    dst[..valid.start * cg].fill(T::default());
                    dst[valid.end * cg..].fill(T::default());
                    let ix0 = ox * sw + valid.start * dw - pw;
                    let src = &xn[iy * geo.w * c..][..geo.w * c];
                    if runs {
                        let len = valid.len() * c;
                        copy_short(&mut dst[valid.start * c..][..len], &src[ix0 * c..][..len]);
                    } else {
                        for (j, kx) in valid.clone().enumerate() {
                            let ix = ix0 + j * dw;
                            copy_short(&mut dst[kx * cg..][..cg], &src[ix * c + g * cg..][..cg]);
                        }
                    }
                }
            }
        }
    }
}

/// Adds the column rows `rows` (`P × G·K`, gradients of the patches) of one image into its
/// input gradient `gxn` (`[h, w, c]`).
fn col2im<T: Float>(geo: &ConvGeometry, rows: &[T], gxn: &mut [T]) {
    let (cg, kh, kw, c) = (geo.cg(), geo.kh, geo.kw, geo.c);
    let (sh, ph, dh) = (geo.attrs.stride[0], geo.attrs.padding[0], geo.attrs.dilation[0]);
    let (sw, pw, dw) = (geo.attrs.stride[1], geo.attrs.padding[1], geo.attrs.dilation[1]);
    let row_len = geo.groups() * k(geo);
    for oy in 0..geo.oh {
        for ox in 0..geo.ow {
            let row = &rows[(oy * geo.ow + ox) * row_len..][..row_len];
            let valid = valid_taps(geo, ox);
            if valid.is_empty() {
                continue;
            }
            let ix0 = ox * sw + valid.start * dw - pw;
            for g in 0..geo.groups() {
                for ky in 0..kh {
                    let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                    if iy >= geo.h {
                        continue;
                    }
                    let src = &row[(g * kh + ky) * kw * cg..][..kw * cg];
                    for (j, kx) in valid.clone().enumerate() {
                        let ix = ix0 + j * dw;
                        let dst = &mut gxn[(iy * geo.w + ix) * c + g * cg..][..cg];
                        for (d, v) in dst.iter_mut().zip(&src[kx * cg..][..cg]) {
                            *d += *v;
                        }
                    }
                }
            }
        }
    }
}

fn operand<T>(ptr: *const T, row_stride: usize, col_stride: usize) -> Operand {
    Operand { ptr: ptr as *const u8, row_stride: row_stride as isize, col_stride: col_stride as isize, batch_stride: 0 }
}

/// How the columns matrix (`N·P` output positions × `G·K` taps) is stored: by position (a
/// row of taps per output position, whose channel runs copy in one piece when there are
/// several channels) or by tap (a row of positions per tap, whose runs along the output
/// width copy in one piece: for one or two channels, where a position's runs would be a
/// float or two).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Columns {
    /// Elements between consecutive output positions.
    position: usize,
    /// Elements between consecutive taps.
    tap: usize,
}

impl Columns {
    fn of(geo: &ConvGeometry) -> Columns {
        let (rows, taps) = (geo.n * geo.p(), geo.groups() * k(geo));
        if by_tap(geo) { Columns { position: 1, tap: rows } } else { Columns { position: taps, tap: 1 } }
    }
}

/// Whether the columns are stored by tap: channel runs shorter than a 4-lane vector.
fn by_tap(geo: &ConvGeometry) -> bool {
    geo.cg() < 4
}

/// Writes the columns stored by tap: row `t` (tap `(g, ky, kx, ci)`) holds, at position
/// `(n, oy, ox)`, `x[n, iy, ix, g·C/G + ci]`. Images in parallel (each its own positions).
fn im2col_by_tap<T: Float>(geo: &ConvGeometry, x: &[T], cols: &mut [T], pool: Option<&Pool>) {
    let (cg, kh, kw, c, p) = (geo.cg(), geo.kh, geo.kw, geo.c, geo.p());
    let rows = geo.n * p;
    let (sh, ph, dh) = (geo.attrs.stride[0], geo.attrs.padding[0], geo.attrs.dilation[0]);
    let (sw, pw, dw) = (geo.attrs.stride[1], geo.attrs.padding[1], geo.attrs.dilation[1]);
    let image = geo.h * geo.w * c;
    assert!(cols.len() >= rows * geo.groups() * k(geo), "the columns need N·P × G·K elements");
    let base = Out(cols.as_mut_ptr());
    crate::pool::for_each(pool, geo.n, &|n| {
        let xn = &x[n * image..][..image];
        for g in 0..geo.groups() {
            for ky in 0..kh {
                for kx in 0..kw {
                    let valid = super::valid_columns(geo, kx);
                    for ci in 0..cg {
                        let t = ((g * kh + ky) * kw + kx) * cg + ci;
                        // SAFETY: image n writes only positions n·P..(n+1)·P of each tap row,
                        // inside `cols` (checked above); images never share positions.
                        let dst = unsafe { std::slice::from_raw_parts_mut(base.at(t * rows + n * p), p) };
                        for oy in 0..geo.oh {
                            let out = &mut dst[oy * geo.ow..][..geo.ow];
                            let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                            if iy >= geo.h || valid.is_empty() {
                                out.fill(T::default());
                                continue;
                            }
                            out[..valid.start].fill(T::default());
                            out[valid.end..].fill(T::default());
                            let ix0 = valid.start * sw + kx * dw - pw;
                            let src = &xn[iy * geo.w * c + g * cg + ci..];
                            if sw * c == 1 {
                                copy_short(&mut out[valid.clone()], &src[ix0..ix0 + valid.len()]);
                            } else {
                                for (j, o) in out[valid.clone()].iter_mut().enumerate() {
                                    *o = src[(ix0 + j * sw) * c];
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Adds the column gradients stored by tap into the input gradient `dx` (`[n, h, w, c]`),
/// images in parallel.
fn col2im_by_tap<T: Float>(geo: &ConvGeometry, cols: &[T], dx: &mut [T], pool: Option<&Pool>) {
    let (cg, kh, kw, c, p) = (geo.cg(), geo.kh, geo.kw, geo.c, geo.p());
    let rows = geo.n * p;
    let (sh, ph, dh) = (geo.attrs.stride[0], geo.attrs.padding[0], geo.attrs.dilation[0]);
    let (sw, pw, dw) = (geo.attrs.stride[1], geo.attrs.padding[1], geo.attrs.dilation[1]);
    let image = geo.h * geo.w * c;
    let dxp = Out(dx.as_mut_ptr());
    crate::pool::for_each(pool, geo.n, &|n| {
        // SAFETY: image n's slice of `dx` is written only by the thread running image n.
        let dxn = unsafe { std::slice::from_raw_parts_mut(dxp.at(n * image), image) };
        for g in 0..geo.groups() {
            for ky in 0..kh {
                for kx in 0..kw {
                    let valid = super::valid_columns(geo, kx);
                    if valid.is_empty() {
                        continue;
                    }
                    let ix0 = valid.start * sw + kx * dw - pw;
                    for ci in 0..cg {
                        let t = ((g * kh + ky) * kw + kx) * cg + ci;
                        let src = &cols[t * rows + n * p..][..p];
                        for oy in 0..geo.oh {
                            let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                            if iy >= geo.h {
                                continue;
                            }
                            let dst = &mut dxn[iy * geo.w * c + g * cg + ci..];
                            for (j, v) in src[oy * geo.ow..][valid.clone()].iter().enumerate() {
                                dst[(ix0 + j * sw) * c] += *v;
                            }
                        }
                    }
                }
            }
        }
    });
}

/// Fills the columns of every image into `cols` in `Columns::of(geo)`'s order, images in
/// parallel.
fn fill_columns<T: Float>(geo: &ConvGeometry, x: &[T], cols: &mut [T], pool: Option<&Pool>) {
    if by_tap(geo) {
        return im2col_by_tap(geo, x, cols, pool);
    }
    let image_rows = geo.p() * geo.groups() * k(geo);
    let image = geo.h * geo.w * geo.c;
    assert!(cols.len() >= geo.n * image_rows, "the columns need N·P × G·K elements");
    let base = Out(cols.as_mut_ptr());
    crate::pool::for_each(pool, geo.n, &|n| {
        // SAFETY: image n writes only its own P rows of the columns, inside `cols` (checked
        // above); no two images' rows overlap.
        let rows = unsafe { std::slice::from_raw_parts_mut(base.at(n * image_rows), image_rows) };
        im2col(geo, &x[n * image..][..image], rows);
    });
}

/// `y = conv2d(x, w)` channels-last, as `yᵀ = W' · colsᵀ` per group (the output channels are
/// the product's rows: a group's few channels would be narrower than the GEMM's
/// microkernel as its columns). With `keep` (`N·P × K` elements, one group) the columns are
/// written there for [`grad_weight`] to reuse.
pub(crate) fn forward<T: Float>(
    geo: &ConvGeometry,
    x: &[T],
    w: &[T],
    y: &mut [T],
    pool: Option<&Pool>,
    keep: Option<&mut [T]>,
) {
    let (kg, og, g_all) = (k(geo), geo.og(), geo.groups());
    let (rows, all) = (geo.n * geo.p(), g_all * kg);
    let at = Columns::of(geo);
    let keep = keep.filter(|c| g_all == 1 && c.len() >= rows * all);
    let own = if keep.is_some() { 0 } else { rows * all };
    T::with_scratch(own + geo.o * kg, |scratch| {
        let (own, wt) = scratch.split_at_mut(own);
        reorder_weight(geo, w, wt);
        let cols: &mut [T] = match keep {
            Some(k) => k,
            None => own,
        };
        fill_columns(geo, x, cols, pool);
        for g in 0..g_all {
            // SAFETY: W'_g is og × kg row-major in `wt`; group g's columns, read as kg × rows
            // through their strides, lie inside `cols`; the transposed output block (og ×
            // rows, column stride O) lies inside `y`.
            unsafe {
                matmul_strided(
                    T::DTYPE,
                    (og, rows, kg),
                    operand(wt[g * og * kg..].as_ptr(), kg, 1),
                    operand(cols[g * kg * at.tap..].as_ptr(), at.tap, at.position),
                    y[g * og..].as_mut_ptr() as *mut u8,
                    (1, geo.o),
                    pool,
                )
            };
        }
    });
}

/// `dx = conv2d_grad_input(dy, w)` channels-last: `cols'_g = dy_g · W'_g`, then col2im.
pub(crate) fn grad_input<T: Float>(geo: &ConvGeometry, dy: &[T], w: &[T], dx: &mut [T], pool: Option<&Pool>) {
    let (kg, og, g_all) = (k(geo), geo.og(), geo.groups());
    let (rows, all) = (geo.n * geo.p(), g_all * kg);
    let at = Columns::of(geo);
    dx.fill(T::default());
    T::with_scratch(rows * all + geo.o * kg, |scratch| {
        let (cols, wt) = scratch.split_at_mut(rows * all);
        reorder_weight(geo, w, wt);
        for g in 0..g_all {
            // SAFETY: dy's group block is rows × og at row stride O, W'_g is og × kg
            // row-major, and group g's block of `cols` (rows × kg through its strides) lies
            // inside the scratch of rows × G·K elements.
            unsafe {
                matmul_strided(
                    T::DTYPE,
                    (rows, kg, og),
                    operand(dy[g * og..].as_ptr(), geo.o, 1),
                    operand(wt[g * og * kg..].as_ptr(), kg, 1),
                    cols[g * kg * at.tap..].as_mut_ptr() as *mut u8,
                    (at.position, at.tap),
                    pool,
                )
            };
        }
        let cols: &[T] = cols;
        if by_tap(geo) {
            return col2im_by_tap(geo, cols, dx, pool);
        }
        let image = geo.h * geo.w * geo.c;
        let image_rows = geo.p() * all;
        let dxp = Out(dx.as_mut_ptr());
        crate::pool::for_each(pool, geo.n, &|n| {
            // SAFETY: image n's slice of `dx` is written only by the thread running image n.
            let dxn = unsafe { std::slice::from_raw_parts_mut(dxp.at(n * image), image) };
            col2im(geo, &cols[n * image_rows..][..image_rows], dxn);
        });
    });
}

/// `dw = conv2d_grad_weight(x, dy)` channels-last, as `dW'_gᵀ = cols_gᵀ · dy_g`; with
/// `ready`, the columns [`forward`] kept for the same input are used as they are.
pub(crate) fn grad_weight<T: Float>(
    geo: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    pool: Option<&Pool>,
    ready: Option<&[T]>,
) {
    let (kg, og, g_all) = (k(geo), geo.og(), geo.groups());
    let (rows, all) = (geo.n * geo.p(), g_all * kg);
    let at = Columns::of(geo);
    let ready = ready.filter(|c| g_all == 1 && c.len() >= rows * all);
    let own = if ready.is_some() { 0 } else { rows * all };
    T::with_scratch(own + kg * og, |scratch| {
        let (own, dwt) = scratch.split_at_mut(own);
        let cols: &[T] = match ready {
            Some(c) => c,
            None => {
                fill_columns(geo, x, own, pool);
                own
            }
        };
        let (cg, taps) = (geo.cg(), geo.kh * geo.kw);
        for g in 0..g_all {
            // SAFETY: group g's columns read as kg × rows through their strides lie inside
            // `cols`, dy's group block is rows × og at row stride O, and `dwt` holds kg × og.
            unsafe {
                matmul_strided(
                    T::DTYPE,
                    (kg, og, rows),
                    operand(cols[g * kg * at.tap..].as_ptr(), at.tap, at.position),
                    operand(dy[g * og..].as_ptr(), geo.o, 1),
                    dwt.as_mut_ptr() as *mut u8,
                    (og, 1),
                    pool,
                )
            };
            // dwt[(t, ci), o] → dw[g·og + o, ci, t]
            for o in 0..og {
                let dst = &mut dw[(g * og + o) * kg..][..kg];
                for t in 0..taps {
                    for ci in 0..cg {
                        dst[ci * taps + t] = dwt[(t * cg + ci) * og + o];
                    }
                }
            }
        }
    });
}
