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

/// The extents of a (batched) matrix product `C[b] = A[b] · B[b]`, `A[b]: m×k`, `B[b]: k×n`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulShape {
    /// Batch entries.
    pub batch: usize,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// The contracted extent.
    pub k: usize,
}

impl MatmulShape {
    /// The blocks `(batch entry, first row, rows)` for `parts` threads, in a fixed order:
    /// each batch entry's rows cut into `parts` bands (multiples of 16 rows), or whole when
    /// the product is small.
    pub fn blocks(&self, parts: usize) -> Vec<(usize, usize, usize)> {
        let split = parts > 1 && self.m >= 32 && self.n * self.k >= 4096;
        let rows = if split { self.m.div_ceil(parts).next_multiple_of(16) } else { self.m.max(1) };
        let mut out = Vec::new();
        for b in 0..self.batch {
            let mut r = 0;
            while r < self.m {
                out.push((b, r, rows.min(self.m - r)));
                r += rows;
            }
        }
        out
    }

    /// Multiply-adds in the whole product.
    pub fn flops(&self) -> usize {
        2 * self.batch * self.m * self.n * self.k
    }
}

/// Products with fewer flops than this run on one thread.
const PARALLEL_MIN_FLOPS: usize = 1 << 21;

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
    let blocks = shape.blocks(pool.map_or(1, Pool::threads));
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
    macro_rules! call {
        ($t:ty) => {{
            let (ap, bp, cp) = (a.ptr as *const $t, b.ptr as *const $t, s.c as *mut $t);
            // SAFETY: the offsets stay inside the operands and the output for this block (the
            // caller's contract); `gemm` reads A and B through their strides and writes the
            // rows×n block of C with row stride n, column stride 1.
            unsafe {
                gemm::gemm(
                    rows,
                    n,
                    k,
                    cp.offset(c_off),
                    1,
                    n as isize,
                    false,
                    ap.offset(a_off),
                    a.col_stride,
                    a.row_stride,
                    bp.offset(b_off),
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
        // `matmul` only calls this for floats.
        DType::I32 | DType::I64 | DType::Bool => {}
    }
}
