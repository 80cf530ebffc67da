//! `kiln-runtime`: running compiled graphs and moving tensors in and out.
//!
//! Today it runs graphs on the reference interpreter ([`exec`]) and reads and writes `.npy`
//! files ([`npy`]). The executor of JIT-compiled plans, training sessions, checkpoints and
//! data loaders will live here too (ARCHITECTURE.md §1, §6).

pub mod aot;
mod arena;
pub mod conv;
pub mod exec;
pub mod gemm;
pub mod jit;
pub mod movement;
pub mod npy;
pub mod pool;
pub mod train;

/// A row-major copy of a value whose array is not row-major (a no-op clone otherwise).
pub(crate) fn map_standard(v: &kiln_ir::Value) -> kiln_ir::Value {
    kiln_ir::map_value!(v, a => if a.is_standard_layout() { a.clone() } else { a.as_standard_layout().into_owned() })
}
