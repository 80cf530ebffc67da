//! `kiln-codegen`: code generation from fused graphs.
//!
//! This crate will own the kernel loop IR (loops, index arithmetic from strides, vector loads
//! and stores, reductions), its lowering to Cranelift — generic over `cranelift_module::Module`
//! so the JIT and the AOT object writer share one emitter — and the GPU source renderer
//! (ARCHITECTURE.md §5). It depends on `kiln-ir` and never on the e-graph crate.
//!
//! Nothing is generated yet: graphs run on the reference interpreter through `kiln-runtime`.
