//! The extents of a matrix product, shared by every backend that runs one: the JIT's GEMM
//! (`kiln_runtime::gemm`), convolutions lowered to products, and the GPU renderer
//! ([`crate::gpu::render_gemm`]).

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
    /// Multiply-adds in the whole product, counted twice (flops).
    pub fn flops(&self) -> usize {
        2 * self.batch * self.m * self.n * self.k
    }
}
