//! Convolutions on the host as GEMMs over im2col matrices.
//!
//! For image `n` and channel group `g`, `cols[(c, ky, kx), (oy, ox)]` holds the input tap
//! `x[n, g·C/G + c, oy·sh + ky·dh − ph, ox·sw + kx·dw − pw]` (0 in the padding). Then
//! - the forward is `y[n, group g] = W_g · cols` (`O/G × K` by `K × OH·OW`),
//! - the input gradient is `cols' = W_gᵀ · dy[n, group g]`, scattered back (col2im),
//! - the weight gradient is `dW_g = dy_g · colsᵀ` with the columns of every image side by
//!   side, one GEMM summing over the whole batch.
//!
//! Images are independent in the forward and the input gradient, so they are split over
//! threads; each image's arithmetic is the same whatever the thread count, and the weight
//! gradient is one GEMM over fixed blocks, so results are identical on any number of threads.
//!
//! That is the channels-first layout; [`channels_last`] owns the other.

mod channels_last;

use kiln_ir::{ConvAttrs, ConvLayout, DType};

use crate::gemm::{MatmulShape, Operand, matmul};
use crate::pool::Pool;

/// The geometry of one convolution: `x: [n, c, h, w]`, `w: [o, c/groups, kh, kw]`,
/// `y: [n, o, oh, ow]` (the activations stored in `attrs.layout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeometry {
    /// Batch.
    pub n: usize,
    /// Input channels.
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub o: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
    /// Strides, padding, dilation, groups.
    pub attrs: ConvAttrs,
}

impl ConvGeometry {
    /// The geometry from the input, weight and output extents (the activations' in the
    /// attributes' layout).
    pub fn new(x: &[usize], w: &[usize], y: &[usize], attrs: ConvAttrs) -> Self {
        let (x, y) = (attrs.layout.nchw(x), attrs.layout.nchw(y));
        ConvGeometry { n: x[0], c: x[1], h: x[2], w: x[3], o: w[0], kh: w[2], kw: w[3], oh: y[2], ow: y[3], attrs }
    }

    fn groups(&self) -> usize {
        self.attrs.groups.max(1)
    }

    /// Input channels per group.
    fn cg(&self) -> usize {
        self.c / self.groups()
    }

    /// Output channels per group.
    fn og(&self) -> usize {
        self.o / self.groups()
    }

    /// Rows of the im2col matrix: one per (channel, ky, kx) of a group.
    fn k(&self) -> usize {
        self.cg() * self.kh * self.kw
    }

    /// Output positions per image.
    fn p(&self) -> usize {
        self.oh * self.ow
    }

    /// Elements of the im2col matrix of the whole batch (one group): `K × N·P`.
    pub fn kept_columns(&self) -> usize {
        self.k() * self.n * self.p()
    }

    /// Elements of one image's im2col matrix (one group): `K × P`, what a backend that builds
    /// columns image by image needs.
    pub fn image_columns(&self) -> usize {
        self.k() * self.p()
    }

    /// Multiply-adds of the convolution, for choosing threads.
    pub(crate) fn flops(&self) -> usize {
        2 * self.n * self.o * self.p() * self.k()
    }
}

/// Element types the convolutions run on.
pub(crate) trait Float: Copy + Default + std::ops::AddAssign + Send + Sync + 'static {
    const DTYPE: DType;

    /// Runs `f` on this thread's scratch buffer of at least `len` elements, kept between
    /// calls (its contents are stale: callers overwrite what they read).
    fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
}

/// Defines a thread's reusable scratch buffer for one element type.
macro_rules! scratch_impl {
    ($t:ty, $dtype:expr) => {
        impl Float for $t {
            const DTYPE: DType = $dtype;

            fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                thread_local! {
                    static SCRATCH: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
                }
                SCRATCH.with(|s| {
                    let mut s = s.borrow_mut();
                    if s.len() < len {
                        s.resize(len, <$t>::default());
                    }
                    f(&mut s[..len])
                })
            }
        }
    };
}

scratch_impl!(f32, DType::F32);
scratch_impl!(f64, DType::F64);

/// The output columns `ox` whose input column `ox·sw + kx·dw − pw` lies inside `0..w`, as a
/// range (they are contiguous).
fn valid_columns(geo: &ConvGeometry, kx: usize) -> std::ops::Range<usize> {
    let (sw, dw, pw) = (geo.attrs.stride[1], geo.attrs.dilation[1], geo.attrs.padding[1]);
    let shift = kx * dw;
    // ox·sw + shift ≥ pw  ⇔  ox ≥ ceil((pw − shift) / sw)
    let lo = pw.saturating_sub(shift).div_ceil(sw).min(geo.ow);
    // ox·sw + shift − pw < w  ⇔  ox·sw < w + pw − shift
    let hi = if geo.w + pw > shift { (geo.w + pw - shift).div_ceil(sw).min(geo.ow) } else { 0 };
    lo..hi.max(lo)
}

/// Writes the im2col matrix of image `xn` (`[c, h, w]`) for group `g` into `cols` (`K × P`,
/// row-major).
fn im2col<T: Float>(geo: &ConvGeometry, xn: &[T], g: usize, cols: &mut [T]) {
    let p = geo.p();
    let base = Out(cols.as_mut_ptr());
    assert!(cols.len() >= geo.k() * p, "im2col needs K x P elements");
    // SAFETY: rows r·p..(r+1)·p are disjoint, inside `cols` (checked above), and each is
    // handed out once while `cols` is borrowed mutably here.
    im2col_rows(geo, xn, g, &|r| unsafe { std::slice::from_raw_parts_mut(base.at(r * p), p) });
}

/// Writes the im2col rows of image `xn` for group `g`: row `r` (of `P` elements) into the
/// slice `row(r)` returns; each row is asked for once.
fn im2col_rows<'a, T: Float>(geo: &ConvGeometry, xn: &[T], g: usize, row: &dyn Fn(usize) -> &'a mut [T]) {
    let (sh, sw) = (geo.attrs.stride[0], geo.attrs.stride[1]);
    let (ph, pw) = (geo.attrs.padding[0], geo.attrs.padding[1]);
    let (dh, dw) = (geo.attrs.dilation[0], geo.attrs.dilation[1]);
    for ci in 0..geo.cg() {
        let plane = &xn[(g * geo.cg() + ci) * geo.h * geo.w..][..geo.h * geo.w];
        for ky in 0..geo.kh {
            for kx in 0..geo.kw {
                let dst = row((ci * geo.kh + ky) * geo.kw + kx);
                let valid = valid_columns(geo, kx);
                for oy in 0..geo.oh {
                    let out = &mut dst[oy * geo.ow..][..geo.ow];
                    let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                    if iy >= geo.h {
                        out.fill(T::default());
                        continue;
                    }
                    let src = &plane[iy * geo.w..][..geo.w];
                    for o in &mut out[..valid.start] {
                        *o = T::default();
                    }
                    for o in &mut out[valid.end..] {
                        *o = T::default();
                    }
                    if valid.is_empty() {
                        continue;
                    }
                    // Input column of the first valid output column.
                    let ix0 = valid.start * sw + kx * dw - pw;
                    if sw == 1 {
                        copy_short(&mut out[valid.clone()], &src[ix0..ix0 + valid.len()]);
                    } else {
                        for (j, o) in out[valid.clone()].iter_mut().enumerate() {
                            *o = src[ix0 + j * sw];
                        }
                    }
                }
            }
        }
    }
}

/// `dst.copy_from_slice(src)` for the short rows of im2col (a convolution's output width):
/// rows of 4 to 32 elements are two overlapping fixed-size copies, inlined as vector moves,
/// instead of a call to `memcpy` per row (which cost a quarter of LeNet-5's step).
#[inline]
fn copy_short<T: Copy>(dst: &mut [T], src: &[T]) {
    let n = dst.len();
    if n > 32 {
        dst.copy_from_slice(src);
    } else if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 16..].copy_from_slice(&src[n - 16..n]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..n]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..n]);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Adds the im2col-shaped gradient `cols` (`K × P`) of group `g` back into image `gxn`.
fn col2im<T: Float>(geo: &ConvGeometry, cols: &[T], g: usize, gxn: &mut [T]) {
    let (sh, sw) = (geo.attrs.stride[0], geo.attrs.stride[1]);
    let (ph, pw) = (geo.attrs.padding[0], geo.attrs.padding[1]);
    let (dh, dw) = (geo.attrs.dilation[0], geo.attrs.dilation[1]);
    for ci in 0..geo.cg() {
        let plane = &mut gxn[(g * geo.cg() + ci) * geo.h * geo.w..][..geo.h * geo.w];
        for ky in 0..geo.kh {
            for kx in 0..geo.kw {
                let row = (ci * geo.kh + ky) * geo.kw + kx;
                let src = &cols[row * geo.p()..][..geo.p()];
                let valid = valid_columns(geo, kx);
                if valid.is_empty() {
                    continue;
                }
                let ix0 = valid.start * sw + kx * dw - pw;
                for oy in 0..geo.oh {
                    let iy = (oy * sh + ky * dh).wrapping_sub(ph);
                    if iy >= geo.h {
                        continue;
                    }
                    let dst = &mut plane[iy * geo.w..][..geo.w];
                    let from = &src[oy * geo.ow..][valid.clone()];
                    if sw == 1 {
                        for (d, v) in dst[ix0..ix0 + from.len()].iter_mut().zip(from) {
                            *d += *v;
                        }
                    } else {
                        for (j, v) in from.iter().enumerate() {
                            dst[ix0 + j * sw] += *v;
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

/// `C = A·B` for one matrix, single-threaded (the callers split work themselves).
///
/// # Safety
/// As for [`matmul`].
unsafe fn gemm1<T: Float>(m: usize, n: usize, k: usize, a: Operand, b: Operand, c: *mut T) {
    let shape = MatmulShape { batch: 1, m, n, k };
    // SAFETY: forwarded from this function's contract.
    unsafe { matmul(T::DTYPE, shape, a, b, c as *mut u8, None, &|_, _, _| {}) };
}

/// Runs `f(image, scratch)` for every image, spread over `pool`, each call with the running
/// thread's `scratch` of `scratch_len` elements (stale contents: `f` overwrites what it reads).
fn per_image<T: Float>(n: usize, pool: Option<&Pool>, scratch_len: usize, f: &(dyn Fn(usize, &mut [T]) + Sync)) {
    match pool {
        Some(p) if n > 1 => p.for_each(n, &|i| T::with_scratch(scratch_len, |scratch| f(i, scratch))),
        _ => T::with_scratch(scratch_len, |scratch| {
            for i in 0..n {
                f(i, scratch);
            }
        }),
    }
}

/// Convolutions below this many flops run on one thread.
pub(crate) const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// A raw output pointer shared by threads writing disjoint images.
#[derive(Clone, Copy)]
struct Out<T>(*mut T);

// SAFETY: each thread writes only the images assigned to it (disjoint ranges of the buffer).
unsafe impl<T> Send for Out<T> {}
// SAFETY: as above; the pointer itself is only copied.
unsafe impl<T> Sync for Out<T> {}

impl<T> Out<T> {
    /// The pointer (a method, so closures capture the `Sync` wrapper, not the raw field).
    fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }
}

/// `y = conv2d(x, w)`. With `keep` (`K × N·P` elements, one group), the columns of every image
/// are written there, image `n` at columns `n·P..`, for [`grad_weight`] to reuse; otherwise
/// each image's columns live in the thread's scratch only while its GEMM runs.
pub(crate) fn forward<T: Float>(
    geo: &ConvGeometry,
    x: &[T],
    w: &[T],
    y: &mut [T],
    pool: Option<&Pool>,
    keep: Option<&mut [T]>,
) {
    let pool = pool.filter(|_| geo.flops() >= PARALLEL_MIN_FLOPS);
    if geo.attrs.layout == ConvLayout::Nhwc {
        return channels_last::forward(geo, x, w, y, pool, keep);
    }
    let (k, p, og) = (geo.k(), geo.p(), geo.og());
    let np = geo.n * p;
    let yp = Out(y.as_mut_ptr());
    let keep = keep.filter(|c| geo.groups() == 1 && c.len() >= k * np).map(|c| Out(c.as_mut_ptr()));
    let scratch_len = if keep.is_some() { 0 } else { k * p };
    per_image::<T>(geo.n, pool, scratch_len, &|n, cols| {
        let xn = &x[n * geo.c * geo.h * geo.w..][..geo.c * geo.h * geo.w];
        for g in 0..geo.groups() {
            let (cols_ptr, stride) = match keep {
                Some(all) => {
                    // SAFETY: image n writes only columns n·p..(n+1)·p of each of the k rows of
                    // the kept buffer (checked to hold k×np); images never share columns.
                    let row = |r: usize| unsafe { std::slice::from_raw_parts_mut(all.at(r * np + n * p), p) };
                    im2col_rows(geo, xn, g, &row);
                    (all.at(n * p) as *const T, np)
                }
                None => {
                    im2col(geo, xn, g, cols);
                    (cols.as_ptr(), p)
                }
            };
            let wg = w[g * og * k..].as_ptr();
            let dst = yp.at((n * geo.o + g * og) * p);
            // SAFETY: W_g is og×k row-major inside `w`, the columns are k×p with row stride
            // `stride`, and the destination is the og×p block of image n, group g inside `y`,
            // written only by this image's thread.
            unsafe { gemm1::<T>(og, p, k, operand(wg, k, 1), operand(cols_ptr, stride, 1), dst) };
        }
    });
}

/// `dx = conv2d_grad_input(dy, w)`.
pub(crate) fn grad_input<T: Float>(geo: &ConvGeometry, dy: &[T], w: &[T], dx: &mut [T], pool: Option<&Pool>) {
    let (k, p, og) = (geo.k(), geo.p(), geo.og());
    let pool = pool.filter(|_| geo.flops() >= PARALLEL_MIN_FLOPS);
    if geo.attrs.layout == ConvLayout::Nhwc {
        return channels_last::grad_input(geo, dy, w, dx, pool);
    }
    dx.fill(T::default());
    let dxp = Out(dx.as_mut_ptr());
    let image = geo.c * geo.h * geo.w;
    per_image::<T>(geo.n, pool, k * p, &|n, cols| {
        // SAFETY: image n's slice of `dx` is written only by the thread running image n.
        let dxn = unsafe { std::slice::from_raw_parts_mut(dxp.at(n * image), image) };
        for g in 0..geo.groups() {
            let wg = w[g * og * k..].as_ptr();
            let dyg = dy[(n * geo.o + g * og) * p..].as_ptr();
            // SAFETY: W_gᵀ reads the og×k block of `w` with swapped strides, dy's block of image
            // n, group g is og×p, and `cols` holds k×p elements.
            unsafe { gemm1::<T>(k, p, og, operand(wg, 1, k), operand(dyg, p, 1), cols.as_mut_ptr()) };
            col2im(geo, cols, g, dxn);
        }
    });
}

/// `dw = conv2d_grad_weight(x, dy)`: one GEMM per group over the columns of every image.
///
/// The product is taken transposed, `dW_gᵀ = cols · dy_gᵀ` (`K × O/G`), so the long,
/// many-rowed `cols` is the GEMM's left operand and `dy_g` (only `O/G` rows, 6 or 16 in
/// LeNet) the narrow right one: packed the other way round, the few rows of `dy_g` are padded to
/// the microkernel's height across the whole `N·P` contraction. The columns of the images are
/// filled in parallel (each image its own columns), the GEMM is split into row bands; every
/// element is still one dot product in a fixed order, so the result does not depend on threads.
///
/// With `ready`, the columns [`forward`] kept for the same input (one group) are used as they
/// are: no im2col at all.
pub(crate) fn grad_weight<T: Float>(
    geo: &ConvGeometry,
    x: &[T],
    dy: &[T],
    dw: &mut [T],
    pool: Option<&Pool>,
    ready: Option<&[T]>,
) {
    let (k, p, og) = (geo.k(), geo.p(), geo.og());
    let np = geo.n * p;
    let image = geo.c * geo.h * geo.w;
    let pool = pool.filter(|_| geo.flops() >= PARALLEL_MIN_FLOPS);
    if geo.attrs.layout == ConvLayout::Nhwc {
        return channels_last::grad_weight(geo, x, dy, dw, pool, ready);
    }
    // One scratch holds the columns of every image (k×np), dy of the group (og×np) and the
    // transposed product (k×og).
    let ready = ready.filter(|c| geo.groups() == 1 && c.len() >= k * np);
    let own_cols = if ready.is_some() { 0 } else { k * np };
    T::with_scratch(own_cols + og * np + k * og, |scratch| {
        let (own, rest) = scratch.split_at_mut(own_cols);
        let (dyg, dwt) = rest.split_at_mut(og * np);
        let (colsp, dygp) = (Out(own.as_mut_ptr()), Out(dyg.as_mut_ptr()));
        let cols: &[T] = ready.unwrap_or(own);
        for g in 0..geo.groups() {
            let fill = |n: usize| {
                if ready.is_none() {
                    // SAFETY: image n writes only columns n·p..(n+1)·p of each row of the own
                    // columns; no two images' slices overlap, and the buffer outlives the loop.
                    let row = |r: usize| unsafe { std::slice::from_raw_parts_mut(colsp.at(r * np + n * p), p) };
                    im2col_rows(geo, &x[n * image..][..image], g, &row);
                }
                for o in 0..og {
                    let src = &dy[(n * geo.o + g * og + o) * p..][..p];
                    // SAFETY: image n writes only columns n·p..(n+1)·p of row o of `dyg`.
                    unsafe { std::slice::from_raw_parts_mut(dygp.at(o * np + n * p), p) }.copy_from_slice(src);
                }
            };
            crate::pool::for_each(pool, geo.n, &fill);
            let shape = MatmulShape { batch: 1, m: k, n: og, k: np };
            // SAFETY: cols is k×np row-major, dy_gᵀ reads the og×np matrix with swapped
            // strides, and `dwt` holds k×og elements.
            unsafe {
                matmul(
                    T::DTYPE,
                    shape,
                    operand(cols.as_ptr(), np, 1),
                    operand(dyg.as_ptr(), 1, np),
                    dwt.as_mut_ptr() as *mut u8,
                    pool,
                    &|_, _, _| {},
                )
            };
            let dst = &mut dw[g * og * k..][..og * k];
            for r in 0..k {
                for o in 0..og {
                    dst[o * k + r] = dwt[r * og + o];
                }
            }
        }
    });
}
