//! `kiln-runtime`: running compiled graphs and moving tensors in and out.
//!
//! [`jit`] is the executor of JIT-compiled graphs (fused kernels, GEMMs in [`gemm`],
//! convolutions in [`conv`], block copies in [`movement`], threads from [`pool`], in-place
//! updates, kernels recompiled by the system C compiler in [`tier2`]), [`train`] the training session on top of it, [`aot`] the builder of model
//! libraries (the same partition and memory plan, rendered as a C driver and linked into a
//! `.so`), [`gpu`] the GPU backend's launch side (programs of device buffers and
//! launches, the CUDA device behind the `cuda` feature), [`exec`] the entry point that runs a graph on the interpreter or the JIT, and
//! [`npy`] reads and writes `.npy` files, [`files`] writes files that are never seen half
//! written.

pub mod aot;
mod arena;
pub mod bytes;
pub mod conv;
pub mod exec;
pub mod files;
pub mod gemm;
pub mod gpu;
pub mod jit;
pub mod memory;
pub mod movement;
pub mod npy;
pub mod pool;
pub mod schedule;
pub mod tier2;
pub mod train;

/// A row-major copy of a value whose array is not row-major (a no-op clone otherwise).
pub(crate) fn map_standard(v: &kiln_ir::Value) -> kiln_ir::Value {
    kiln_ir::map_value!(v, a => if a.is_standard_layout() { a.clone() } else { a.as_standard_layout().into_owned() })
}
