//! `kiln-codegen`: code generation from fused graphs.
//!
//! [`kernel`] is the kernel loop IR (a loop nest over a kernel's output with strided loads and
//! a scalar or vector body), lowered from a fused group of graph nodes (elementwise chains,
//! reductions, a contraction's epilogue). [`cpu`] lowers it to Cranelift and JIT-compiles it
//! for the host; [`ckernels`] renders the same kernels as C for the system compiler (the
//! JIT's second tier, at the machine's full vector width). [`aot`] writes the same code into an object file and renders what a model
//! library needs besides: its C driver ([`aot::driver`]), its header, and the C runtime it
//! carries (GEMM, convolutions, pad, concat, gather). Matmuls and convolutions in the JIT run
//! on the runtime crate's GEMM; [`contraction`] holds the extents every backend's product
//! shares. `docs/codegen.md` describes the design. This crate depends on
//! `kiln-ir` and never on the e-graph crate.

pub mod aot;
pub mod ckernels;
pub mod contraction;
pub mod cpu;
mod ctext;
pub mod gpu;
pub mod kernel;
