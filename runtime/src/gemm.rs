//! Matrix multiplication on the host: the `gemm` crate's tuned microkernels (AVX-512 where
//! the CPU has it, chosen at run time; AVX2/FMA or SSE otherwise), with operands read
//! through row and column strides so transposes cost no copy.
//!
//! Work is cut into row blocks whose size depends only on the shape, never on the thread
//! count, and each block is one `gemm` call: every output element is computed by the same
//! code with the same summation order whether one thread or several run the blocks, so
//! results are bit-identical across thread counts.

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
    /// Rows per block: the whole matrix when small, else two halves (rounded to 16 rows), so
    /// two threads share the work. A function of the shape alone. Fewer, larger blocks pack
    /// the right-hand side fewer times: measured at N=1024, 2 blocks cost 6% over 1 on one
    /// thread and 4 or 8 blocks cost more on both.
    pub fn block_rows(&self) -> usize {
        if self.m >= 128 && self.n * self.k >= 4096 { self.m.div_ceil(2).next_multiple_of(16) } else { self.m.max(1) }
    }

    /// The blocks `(batch entry, first row, rows)` in a fixed order.
    pub fn blocks(&self) -> Vec<(usize, usize, usize)> {
        let rows = self.block_rows();
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
    let blocks = shape.blocks();
    let shared = Shared { a, b, c };
    let run_block = |i: usize| {
        let (bi, r0, rows) = blocks[i];
        let s = shared;
        // SAFETY: forwarded from this function's contract; each block addresses rows
        // r0..r0+rows of batch entry bi, inside every operand and disjoint in `c`.
        unsafe { block(dtype, shape, s, bi, r0, rows) };
        then(bi, r0, rows);
    };
    let pool = pool.filter(|_| shape.flops() >= PARALLEL_MIN_FLOPS);
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
