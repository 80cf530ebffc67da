//! `kiln-codegen`: code generation from fused graphs.
//!
//! [`kernel`] is the kernel loop IR (a loop nest over a kernel's output with strided loads and
//! a scalar body), lowered from a fused group of graph nodes. [`cpu`] lowers it to Cranelift
//! and JIT-compiles it for the host; [`aot`] writes the same code into an object file. Matmuls, convolutions, reductions and data movement are
//! not kernels yet: the runtime runs them with reference implementations. The design this
//! grows into (vectorized emission, GEMM calls, AOT objects, GPU source) is in
//! ARCHITECTURE.md §5. This crate depends on `kiln-ir` and never on the e-graph crate.

pub mod aot;
pub mod cpu;
pub mod kernel;
