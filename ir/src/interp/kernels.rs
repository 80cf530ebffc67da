//! The interpreter's kernels: each op written once, generically over element types, as plain
//! loops or ndarray calls that are easy to check by eye. Errors are messages; the caller adds
//! the node.

use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};

use super::elem::{Elem, Num};
use crate::op::{ConvAttrs, ConvLayout, ReduceOp};

/// Result of a kernel: the array or a message.
pub type KResult<T> = Result<ArrayD<T>, String>;

fn from_vec<T: Elem>(dims: &[usize], data: Vec<T>) -> KResult<T> {
    ArrayD::from_shape_vec(IxDyn(dims), data).map_err(|e| format!("internal: {e}"))
}

/// Row-major data of `a` as a vector.
fn flat<T: Elem>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().copied().collect()),
    }
}

/// Row-major reshape.
pub fn reshape<T: Elem>(a: &ArrayD<T>, dims: &[usize]) -> KResult<T> {
    from_vec(dims, flat(a).into_owned())
}

/// Axis permutation: result axis `i` is operand axis `perm[i]`.
pub fn permute<T: Elem>(a: &ArrayD<T>, perm: &[usize]) -> KResult<T> {
    Ok(a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())
}

/// `broadcast` with operand axis `i` placed at result axis `dims[i]`.
pub fn broadcast<T: Elem>(a: &ArrayD<T>, dims: &[usize], out: &[usize]) -> KResult<T> {
    let mut expanded = vec![1; out.len()];
    for (i, &d) in dims.iter().enumerate() {
        expanded[d] = a.shape()[i];
    }
    let e = reshape(a, &expanded)?;
    let view = e.broadcast(IxDyn(out)).ok_or_else(|| format!("internal: cannot broadcast {expanded:?} to {out:?}"))?;
    Ok(view.to_owned())
}

/// Strided slice.
pub fn slice<T: Elem>(a: &ArrayD<T>, start: &[usize], stop: &[usize], step: &[usize]) -> KResult<T> {
    let v = a.slice_each_axis(|ax| {
        let i = ax.axis.index();
        Slice::new(start[i] as isize, Some(stop[i] as isize), step[i] as isize)
    });
    Ok(v.to_owned())
}

/// Constant padding.
pub fn pad<T: Elem>(a: &ArrayD<T>, low: &[usize], high: &[usize], value: T) -> KResult<T> {
    let out: Vec<usize> = (0..a.ndim()).map(|i| low[i] + a.shape()[i] + high[i]).collect();
    let mut r = ArrayD::from_elem(IxDyn(&out), value);
    r.slice_each_axis_mut(|ax| {
        let i = ax.axis.index();
        Slice::from(low[i]..low[i] + a.shape()[i])
    })
    .assign(a);
    Ok(r)
}

/// Concatenation along `axis`.
pub fn concat<T: Elem>(parts: &[&ArrayD<T>], axis: usize) -> KResult<T> {
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(axis), &views).map_err(|e| format!("internal: {e}"))
}

/// `select(cond, a, b)`.
pub fn select<T: Elem>(c: &ArrayD<bool>, a: &ArrayD<T>, b: &ArrayD<T>) -> KResult<T> {
    Ok(Zip::from(c).and(a).and(b).map_collect(|&c, &x, &y| if c { x } else { y }))
}

/// Reduction over `axes` (removed from the shape). Empty axes give the identity.
pub fn reduce<T: Num>(a: &ArrayD<T>, op: ReduceOp, axes: &[usize]) -> KResult<T> {
    let mut r = a.clone();
    for &ax in axes.iter().rev() {
        r = match op {
            ReduceOp::Sum => r.fold_axis(Axis(ax), T::ZERO, |&acc, &x| acc.add(x)),
            ReduceOp::Max => r.fold_axis(Axis(ax), T::LOWEST, |&acc, &x| Num::max(acc, x)),
        };
    }
    Ok(r)
}

/// The index along `axis` at every position of `dims`.
pub fn iota<T: Num>(dims: &[usize], axis: usize) -> KResult<T> {
    Ok(ArrayD::from_shape_fn(IxDyn(dims), |ix| T::from_index(ix[axis])))
}

/// Batched matrix product: `[..., m, k] x [..., k, n]`, summing over `k` in ascending order.
pub fn matmul<T: Num>(a: &ArrayD<T>, b: &ArrayD<T>) -> KResult<T> {
    let r = a.ndim();
    let (m, k, n) = (a.shape()[r - 2], a.shape()[r - 1], b.shape()[r - 1]);
    let batch: usize = a.shape()[..r - 2].iter().product();
    let (av, bv) = (flat(a), flat(b));
    let mut c = vec![T::ZERO; batch * m * n];
    for bi in 0..batch {
        let (ab, bb, cb) = (bi * m * k, bi * k * n, bi * m * n);
        for i in 0..m {
            for p in 0..k {
                let x = av[ab + i * k + p];
                for j in 0..n {
                    let cij = &mut c[cb + i * n + j];
                    *cij = cij.add(x.mul(bv[bb + p * n + j]));
                }
            }
        }
    }
    let mut dims = a.shape()[..r - 1].to_vec();
    dims.push(n);
    from_vec(&dims, c)
}

/// The geometry of one convolution, shared by the forward op and its two gradients.
struct ConvGeom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    cg: usize,
    kh: usize,
    kw: usize,
    oh: usize,
    ow: usize,
    attrs: ConvAttrs,
}

impl ConvGeom {
    /// `x` and `y` are extents in the attributes' layout, `w` is `[O, C/G, KH, KW]`.
    fn new(x: &[usize], w: &[usize], y: &[usize], attrs: ConvAttrs) -> Self {
        let (x, y) = (attrs.layout.nchw(x), attrs.layout.nchw(y));
        ConvGeom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            cg: w[1],
            kh: w[2],
            kw: w[3],
            oh: y[2],
            ow: y[3],
            attrs,
        }
    }

    /// The flat index of activation element `(n, c, y, x)` of a `[_, channels, height, width]`
    /// tensor in the attributes' layout: every layout visits the taps in one order, so it
    /// only moves where the operands and results live, never what they hold.
    fn at(&self, [n, c, y, x]: [usize; 4], [channels, height, width]: [usize; 3]) -> usize {
        match self.attrs.layout {
            ConvLayout::Nchw => ((n * channels + c) * height + y) * width + x,
            ConvLayout::Nhwc => ((n * height + y) * width + x) * channels + c,
        }
    }

    /// Calls `f(x_index, w_index, y_index)` for every multiply-add of the convolution, in
    /// a fixed order, skipping taps that fall in the zero padding.
    fn for_each_tap(&self, mut f: impl FnMut(usize, usize, usize)) {
        let og = self.o / self.attrs.groups;
        let [sh, sw] = self.attrs.stride;
        let [ph, pw] = self.attrs.padding;
        let [dh, dw] = self.attrs.dilation;
        for n in 0..self.n {
            for o in 0..self.o {
                let g = o / og;
                for oy in 0..self.oh {
                    for ox in 0..self.ow {
                        let yi = self.at([n, o, oy, ox], [self.o, self.oh, self.ow]);
                        for ci in 0..self.cg {
                            let c = g * self.cg + ci;
                            for ky in 0..self.kh {
                                let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                                if iy >= self.h {
                                    continue;
                                }
                                for kx in 0..self.kw {
                                    let ix = (ox * sw + kx * dw).wrapping_sub(pw);
                                    if ix >= self.w {
                                        continue;
                                    }
                                    let xi = self.at([n, c, iy, ix], [self.c, self.h, self.w]);
                                    let wi = ((o * self.cg + ci) * self.kh + ky) * self.kw + kx;
                                    f(xi, wi, yi);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `conv2d(x, w)`: `y[n,o,oy,ox] = Σ x[n, g·C/G + ci, oy·s + ky·d − p, ...] · w[o, ci, ky, kx]`
/// (indices written channels-first; a channels-last op stores the same elements as `[n, oy, ox, o]`).
pub fn conv2d<T: Num>(x: &ArrayD<T>, w: &ArrayD<T>, y_dims: &[usize], attrs: ConvAttrs) -> KResult<T> {
    let geom = ConvGeom::new(x.shape(), w.shape(), y_dims, attrs);
    let (xv, wv) = (flat(x), flat(w));
    let mut y = vec![T::ZERO; y_dims.iter().product()];
    geom.for_each_tap(|xi, wi, yi| y[yi] = y[yi].add(xv[xi].mul(wv[wi])));
    from_vec(y_dims, y)
}

/// Gradient of `conv2d` with respect to its input, given the output gradient and the weight.
pub fn conv2d_grad_input<T: Num>(gy: &ArrayD<T>, w: &ArrayD<T>, x_dims: &[usize], attrs: ConvAttrs) -> KResult<T> {
    let geom = ConvGeom::new(x_dims, w.shape(), gy.shape(), attrs);
    let (gv, wv) = (flat(gy), flat(w));
    let mut gx = vec![T::ZERO; x_dims.iter().product()];
    geom.for_each_tap(|xi, wi, yi| gx[xi] = gx[xi].add(gv[yi].mul(wv[wi])));
    from_vec(x_dims, gx)
}

/// Gradient of `conv2d` with respect to its weight, given the input and the output gradient.
pub fn conv2d_grad_weight<T: Num>(x: &ArrayD<T>, gy: &ArrayD<T>, w_dims: &[usize], attrs: ConvAttrs) -> KResult<T> {
    let geom = ConvGeom::new(x.shape(), w_dims, gy.shape(), attrs);
    let (xv, gv) = (flat(x), flat(gy));
    let mut gw = vec![T::ZERO; w_dims.iter().product()];
    geom.for_each_tap(|xi, wi, yi| gw[wi] = gw[wi].add(gv[yi].mul(xv[xi])));
    from_vec(w_dims, gw)
}

/// Splits `dims` around `axis` into (outer, extent, inner) element counts.
fn split_at_axis(dims: &[usize], axis: usize) -> (usize, usize, usize) {
    (dims[..axis].iter().product(), dims[axis], dims[axis + 1..].iter().product())
}

/// `take` along `axis`: `out[pre, j..., post] = x[pre, idx[j...], post]`.
pub fn gather<T: Elem>(x: &ArrayD<T>, idx: &[usize], idx_dims: &[usize], axis: usize) -> KResult<T> {
    let (p, a, q) = split_at_axis(x.shape(), axis);
    if let Some(&bad) = idx.iter().find(|&&i| i >= a) {
        return Err(format!("index {bad} out of range for extent {a} of axis {axis}"));
    }
    let xv = flat(x);
    let mut out = Vec::with_capacity(p * idx.len() * q);
    for pi in 0..p {
        for &i in idx {
            out.extend_from_slice(&xv[(pi * a + i) * q..(pi * a + i + 1) * q]);
        }
    }
    let mut dims = x.shape()[..axis].to_vec();
    dims.extend_from_slice(idx_dims);
    dims.extend_from_slice(&x.shape()[axis + 1..]);
    from_vec(&dims, out)
}

/// `scatter_add`: a zero tensor of `out_dims` with `upd[pre, j..., post]` added at
/// `[pre, idx[j...], post]`, in increasing `j`.
pub fn scatter_add<T: Num>(upd: &ArrayD<T>, idx: &[usize], out_dims: &[usize], axis: usize) -> KResult<T> {
    let (p, a, q) = split_at_axis(out_dims, axis);
    if let Some(&bad) = idx.iter().find(|&&i| i >= a) {
        return Err(format!("index {bad} out of range for extent {a} of axis {axis}"));
    }
    let uv = flat(upd);
    let mut out = vec![T::ZERO; p * a * q];
    for pi in 0..p {
        for (j, &i) in idx.iter().enumerate() {
            for qi in 0..q {
                let o = &mut out[(pi * a + i) * q + qi];
                *o = o.add(uv[(pi * idx.len() + j) * q + qi]);
            }
        }
    }
    from_vec(out_dims, out)
}
