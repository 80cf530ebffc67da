//! Matrix multiplication on the host: the `gemm` crate's tuned microkernels (AVX-512 where
//! the CPU has it, chosen at run time; AVX2/FMA or SSE otherwise), with operands read
//! through row and column strides so transposes cost no copy.
//!
//! With several threads, each batch entry's rows are cut into one band per thread, each band
//! one `gemm` call. `gemm` blocks the contracted axis by its extent alone and sums each output
//! element in the same order whatever rows a call covers, so the result is bit-identical to
//! one call over all rows: identical across thread counts (tested on every shape class and on
//! whole training steps).

use kiln_ir::DType;

use crate::pool::Pool;

/// A strided matrix operand: its first element, the strides between rows and columns, and
/// the stride between consecutive matrices of a batch, all in elements.
#[derive(Clone, Copy, Debug)]
pub struct Operand {
    /// The first element.
    pub ptr: *const u8,
    /// Elements between rows.
    pub row_stride: isize,
    /// Elements between columns.
    pub col_stride: isize,
    /// Elements between batch entries.
    pub batch_stride: isize,
}

pub use kiln_codegen::contraction::MatmulShape;

/// The blocks `(batch entry, first row, rows)` of `shape` for `parts` threads, in a fixed
/// order: each batch entry's rows cut into `parts` bands (multiples of 16 rows), or whole
/// when the product is small.
pub fn blocks(shape: &MatmulShape, parts: usize) -> Vec<(usize, usize, usize)> {
    let split = parts > 1 && shape.m >= 32 && shape.n * shape.k >= 4096;
    let rows = if split { shape.m.div_ceil(parts).next_multiple_of(16) } else { shape.m.max(1) };
    let mut out = Vec::new();
    for b in 0..shape.batch {
        let mut r = 0;
        while r < shape.m {
            out.push((b, r, rows.min(shape.m - r)));
            r += rows;
        }
    }
    out
}

/// Products with fewer flops than this run on one thread.
pub(crate) const PARALLEL_MIN_FLOPS: usize = 1 << 21;

/// Raw pointers shared by the threads of one product.
#[derive(Clone, Copy)]
struct Shared {
    a: Operand,
    b: Operand,
    c: *mut u8,
}

// SAFETY: the operands are only read, and the threads write disjoint row blocks of `c`; the
// buffers outlive the parallel loop (see `matmul`'s contract), which joins before returning.
unsafe impl Send for Shared {}
// SAFETY: as above.
unsafe impl Sync for Shared {}

/// Computes `C[b] = A[b] · B[b]` into the row-major `c` (`batch × m × n`), its blocks spread
/// over `pool` when the product is big enough, for `f32` or `f64` (`dtype`); returns false
/// for other dtypes, leaving `c` alone. `then` runs after each row block `(batch entry,
/// first row, rows)` on the thread that computed it, while the block is in cache (fused
/// epilogues).
///
/// # Safety
/// `a` and `b` must address every element their strides reach for this shape, of `dtype`;
/// `c` must be valid for writes of `batch·m·n` elements of `dtype` and not overlap them;
/// `then` must be safe to call for each block concurrently with other blocks.
pub unsafe fn matmul(
    dtype: DType,
    shape: MatmulShape,
    a: Operand,
    b: Operand,
    c: *mut u8,
    pool: Option<&Pool>,
    then: &(dyn Fn(usize, usize, usize) + Sync),
) -> bool {
    if !matches!(dtype, DType::F32 | DType::F64) {
        return false;
    }
    let pool = pool.filter(|_| shape.flops() >= PARALLEL_MIN_FLOPS);
    let blocks = blocks(&shape, pool.map_or(1, Pool::threads));
    let shared = Shared { a, b, c };
    let run_block = |i: usize| {
        let (bi, r0, rows) = blocks[i];
        let s = shared;
        // SAFETY: forwarded from this function's contract; each block addresses rows
        // r0..r0+rows of batch entry bi, inside every operand and disjoint in `c`.
        unsafe { block(dtype, shape, s, bi, r0, rows) };
        then(bi, r0, rows);
    };
    crate::pool::for_each(pool, blocks.len(), &run_block);
    true
}

/// Computes `C = A · B` (one matrix, `f32` or `f64`) into `c` with row and column strides
/// `c_strides` (elements): for products that write a block of a wider matrix, or its
/// transpose. The longer of the rows and the columns is cut into bands spread over `pool` as
/// in [`matmul`]; every element is one dot product in a fixed order, so the bits are the same
/// on any number of threads.
///
/// # Safety
/// As for [`matmul`], with `c` valid for writes of the `m × n` elements its strides reach.
pub(crate) unsafe fn matmul_strided(
    dtype: DType,
    (m, n, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: *mut u8,
    c_strides: (usize, usize),
    pool: Option<&Pool>,
) {
    // Bands along the columns are bands along the rows of the transposed product.
    let by_columns = n > m;
    let shape = if by_columns { MatmulShape { batch: 1, m: n, n: m, k } } else { MatmulShape { batch: 1, m, n, k } };
    let pool = pool.filter(|_| shape.flops() >= PARALLEL_MIN_FLOPS);
    let blocks = blocks(&shape, pool.map_or(1, Pool::threads));
    let shared = Shared { a, b, c };
    let (c_rows, c_cols) = (c_strides.0 as isize, c_strides.1 as isize);
    let run_block = |i: usize| {
        let (_, r0, len) = blocks[i];
        let s = shared;
        let size = dtype.size_bytes() as isize;
        // The band's shape and the offsets (elements) of A, B and C at its start.
        let (rows, cols, a_off, b_off, c_off) = if by_columns {
            (m, len, 0, r0 as isize * s.b.col_stride, r0 as isize * c_cols)
        } else {
            (len, n, r0 as isize * s.a.row_stride, 0, r0 as isize * c_rows)
        };
        // SAFETY: the band's rows of A, columns of B and block of C lie inside their buffers
        // by the caller's contract, and bands never share an element of C.
        unsafe {
            gemm_call(
                dtype,
                (rows, cols, k),
                s.a.advanced(a_off, size),
                s.b.advanced(b_off, size),
                s.c.wrapping_offset(c_off * size),
                (c_rows, c_cols),
            )
        };
    };
    crate::pool::for_each(pool, blocks.len(), &run_block);
}

/// One call of the `gemm` crate on one thread: `C = A · B` for a `rows × cols` product (the
/// operands and `c` already at its first element), C written through `(row, column)` strides;
/// nothing for non-float dtypes.
///
/// # Safety
/// A and B must address every element their strides reach for this shape, of `dtype`, and
/// `c` every element of the product through its strides, apart from both.
unsafe fn gemm_call(
    dtype: DType,
    (rows, cols, k): (usize, usize, usize),
    a: Operand,
    b: Operand,
    c: *mut u8,
    (c_rows, c_cols): (isize, isize),
) {
    macro_rules! call {
        ($t:ty) => {{
            // SAFETY: forwarded from this function's contract; `gemm` reads A and B through
            // their strides and writes C through its own.
            unsafe {
                gemm::gemm(
                    rows,
                    cols,
                    k,
                    c as *mut $t,
                    c_cols,
                    c_rows,
                    false,
                    a.ptr as *const $t,
                    a.col_stride,
                    a.row_stride,
                    b.ptr as *const $t,
                    b.col_stride,
                    b.row_stride,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        }};
    }
    match dtype {
        DType::F32 => call!(f32),
        DType::F64 => call!(f64),
        // Products run only on floats (their callers check).
        DType::I32 | DType::I64 | DType::Bool => {}
    }
}

impl Operand {
    /// This operand starting `elements` further on (of `size` bytes each).
    fn advanced(self, elements: isize, size: isize) -> Operand {
        Operand { ptr: self.ptr.wrapping_offset(elements * size), ..self }
    }
}

/// One row block: `rows` rows of batch entry `bi` starting at `r0`.
///
/// # Safety
/// As for [`matmul`], and the block lies inside the shape.
unsafe fn block(dtype: DType, shape: MatmulShape, s: Shared, bi: usize, r0: usize, rows: usize) {
    let MatmulShape { m, n, k, .. } = shape;
    let (a, b) = (s.a, s.b);
    let a_off = bi as isize * a.batch_stride + r0 as isize * a.row_stride;
    let b_off = bi as isize * b.batch_stride;
    let c_off = (bi * m * n + r0 * n) as isize;
    match dtype {
        // Only products of one row (never the last row band of a split product, which must
        // sum like the bands before it: results may not depend on the thread count).
        DType::F32 if m == 1 && b.col_stride == 1 && gemv::available() => {
            let (ap, bp, cp) = (a.ptr as *const f32, b.ptr as *const f32, s.c as *mut f32);
            // SAFETY: as for the general case below: row r0 of A (k elements at stride a.col_stride),
            // B's k rows of n contiguous elements at stride b.row_stride, and the n outputs of
            // row r0 of C, all inside their buffers by the caller's contract.
            unsafe {
                gemv::f32_row(k, n, ap.offset(a_off), a.col_stride, bp.offset(b_off), b.row_stride, cp.offset(c_off))
            }
        }
        // SAFETY: the offsets stay inside the operands and the output for this block (the
        // caller's contract); the block is rows×n of C with row stride n, column stride 1.
        _ => unsafe {
            let size = dtype.size_bytes() as isize;
            gemm_call(
                dtype,
                (rows, n, k),
                a.advanced(a_off, size),
                b.advanced(b_off, size),
                s.c.wrapping_offset(c_off * size),
                (n as isize, 1),
            )
        },
    }
}

/// One row times a matrix (`y = x · W`, batch-1 inference) with AVX-512: each pass over the
/// rows of `W` keeps up to 256 columns of `y` in sixteen registers, so `W` streams through
/// once at the cache's bandwidth. The `gemm` crate's general path ran such products at about a third
/// of that (batch-1 `mnist_mlp` spent 92% of its time there).
mod gemv {
    #[cfg(target_arch = "x86_64")]
    use std::arch::x86_64::*;

    /// Whether the host has AVX-512F.
    pub(super) fn available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// `y[j] = Σ_p x[p·xs] · w[p·ws + j]` for `j < n`, sums in order of `p`.
    ///
    /// # Safety
    /// [`available`] is true; `x` holds `k` elements at stride `xs`, `w` holds `k` rows of
    /// `n` contiguous elements at stride `ws`, and `y` holds `n` elements apart from both.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn f32_row(k: usize, n: usize, x: *const f32, xs: isize, w: *const f32, ws: isize, y: *mut f32) {
        // When every row of `w` starts at the same offset in a cache line, the passes start
        // `lead` lanes before the first column, so every load is aligned (an array from the
        // heap is only 16-byte aligned, and split loads cost about 60% more here: 5.0 vs
        // 7.9 µs for 784 × 256). The first and last vectors of a pass are masked.
        let lead = if (w as usize).is_multiple_of(4) && ws % 16 == 0 { (w as usize % 64) / 4 } else { 0 };
        let mut j = 0;
        let mut lead_here = lead;
        while j < n {
            // Lanes of this pass, counting the lead: up to 17 vectors, so a row of 256
            // columns with a lead is still one pass.
            let lanes = (n - j + lead_here).min(16 * MAX_REGS);
            let regs = lanes.div_ceil(16);
            let first = (0xffffu32 << lead_here) as __mmask16;
            let last = if lanes.is_multiple_of(16) { 0xffff } else { ((1u32 << (lanes % 16)) - 1) as __mmask16 };
            let (wj, yj) = (w.wrapping_add(j).wrapping_sub(lead_here), y.wrapping_add(j).wrapping_sub(lead_here));
            macro_rules! go {
                ($($r:literal)*) => {
                    match regs {
                        // SAFETY: the pass reads and writes only the lanes its masks enable:
                        // columns j..j + lanes - lead_here ≤ n of every row and of y.
                        $($r => unsafe { pass::<$r>(k, x, xs, wj, ws, yj, first, last) },)*
                        _ => {}
                    }
                };
            }
            go!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17);
            j += lanes - lead_here;
            lead_here = 0;
        }
    }

    /// The most vectors of `y` a pass keeps in registers.
    const MAX_REGS: usize = 17;

    /// Lanes `0..16·R` of `y = x · w` from `w` and `y` (which may start before the first
    /// column: only the lanes enabled by `first` in vector 0 and `last` in vector `R − 1` are
    /// read or written), with `R` accumulators held in registers; sums in order of `p`.
    ///
    /// # Safety
    /// As for [`f32_row`], for every enabled lane of every row and of `y`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn pass<const R: usize>(
        k: usize,
        x: *const f32,
        xs: isize,
        w: *const f32,
        ws: isize,
        y: *mut f32,
        first: __mmask16,
        last: __mmask16,
    ) {
        let mut masks = [0xffff as __mmask16; R];
        masks[0] &= first;
        masks[R - 1] &= last;
        let mut acc = [_mm512_setzero_ps(); R];
        for p in 0..k {
            // SAFETY: p < k; each load touches only its enabled lanes of row p, which lie
            // inside the row by the caller's contract (masked lanes are never accessed).
            unsafe {
                let xv = _mm512_set1_ps(*x.offset(p as isize * xs));
                let row = w.wrapping_offset(p as isize * ws);
                for (r, a) in acc.iter_mut().enumerate() {
                    let v = _mm512_maskz_loadu_ps(masks[r], row.wrapping_add(16 * r));
                    *a = _mm512_fmadd_ps(xv, v, *a);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            // SAFETY: only the enabled lanes of y are written.
            unsafe { _mm512_mask_storeu_ps(y.wrapping_add(16 * r), masks[r], *a) };
        }
    }

    /// Not reached off x86-64 ([`available`] is false there).
    ///
    /// # Safety
    /// Never to be called.
    #[cfg(not(target_arch = "x86_64"))]
    pub(super) unsafe fn f32_row(_: usize, _: usize, _: *const f32, _: isize, _: *const f32, _: isize, _: *mut f32) {}
}

#[cfg(test)]
mod tests {
    use super::gemv;

    /// The row-times-matrix kernel at every start offset within a cache line (aligned and
    /// led passes) and widths around its vector and pass boundaries: the same bits whatever
    /// the alignment, within rounding of a plain sum, and nothing written past `n`.
    #[test]
    fn one_row_products_do_not_depend_on_alignment() {
        if !gemv::available() {
            return;
        }
        let k = 37;
        for n in [1usize, 5, 15, 16, 17, 31, 100, 240, 252, 255, 256, 257, 260, 272, 273, 300, 513] {
            let ws = n.div_ceil(16) * 16 + 16;
            let x: Vec<f32> = (0..k).map(|p| ((p * 7 % 11) as f32 - 5.0) / 8.0).collect();
            let mut reference: Option<Vec<f32>> = None;
            for offset in 0..16 {
                // A 64-byte-aligned block, the matrix starting `offset` floats into it.
                let mut store = vec![0f32; ws * k + 64];
                let base = store.as_ptr().align_offset(64) + offset;
                for p in 0..k {
                    for j in 0..n {
                        store[base + p * ws + j] = ((p * 31 + j * 17) % 23) as f32 / 16.0 - 0.7;
                    }
                }
                let mut y = vec![f32::NAN; n + 16];
                // SAFETY: AVX-512F is present; x holds k values, the matrix k rows of n at
                // stride ws inside `store`, and y holds n (+16 guard) values.
                unsafe { gemv::f32_row(k, n, x.as_ptr(), 1, store.as_ptr().add(base), ws as isize, y.as_mut_ptr()) };
                assert!(y[n..].iter().all(|v| v.is_nan()), "n {n} offset {offset}: wrote past the row");
                for j in 0..n {
                    let plain: f32 = (0..k).map(|p| x[p] * store[base + p * ws + j]).sum();
                    assert!((y[j] - plain).abs() < 1e-4, "n {n} offset {offset} column {j}: {} vs {plain}", y[j]);
                }
                match &reference {
                    None => reference = Some(y[..n].to_vec()),
                    Some(r) => assert_eq!(&y[..n], &r[..], "n {n} offset {offset}: alignment changed the bits"),
                }
            }
        }
    }
}
