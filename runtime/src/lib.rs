//! `kiln-runtime`: running compiled graphs and moving tensors in and out.
//!
//! Today it runs graphs on the reference interpreter ([`exec`]) and reads and writes `.npy`
//! files ([`npy`]). The executor of JIT-compiled plans, training sessions, checkpoints and
//! data loaders will live here too (ARCHITECTURE.md §1, §6).

pub mod exec;
pub mod npy;
pub mod train;
