//! The GPU backend: the CUDA C functions of a compiled graph and running them on a device.
//!
//! [`functions`] and [`module`] render what the GPU backend launches, in execution order,
//! from the same partition the JIT runs ([`kiln_codegen::gpu`] renders each function);
//! `kiln dump --stage cuda` prints [`module`]. [`GpuExecutable`] runs a graph on a [`Device`]
//! ([`open`] one: [`DeviceKind::Cuda`] with the `cuda` feature, or [`DeviceKind::Emulated`],
//! the same CUDA C on the CPU); training steps run through
//! [`crate::runtime::train::TrainSession`] with [`crate::runtime::exec::Backend::Gpu`].
//! See `docs/gpu.md`.

pub use kiln_codegen::gpu::Launch;
pub use kiln_runtime::gpu::{
    Device, DeviceKind, GpuError, GpuExecutable, GpuFunction, GpuProgram, HostDevice, Tuning, Variant, call_function,
    open, program, symbols,
};

use crate::{CompileError, Executable};

/// Optimizes `graph` with the GPU's pass pipeline ([`kiln_passes::GPU_PIPELINE`]: the
/// default without the host-priced `layout` pass), resolves it for a GPU and loads it on a
/// device of `kind`. Set every input and parameter with [`GpuExecutable::set`], then
/// [`GpuExecutable::run`].
pub fn compile(graph: &crate::ir::Graph, kind: DeviceKind) -> Result<GpuExecutable, CompileError> {
    compile_with(graph, kind, kiln_passes::GPU_PIPELINE)
}

/// [`compile`] with another pass pipeline.
pub fn compile_with(graph: &crate::ir::Graph, kind: DeviceKind, pipeline: &str) -> Result<GpuExecutable, CompileError> {
    let (optimized, _) = kiln_passes::Pipeline::parse(pipeline)?.run(graph)?;
    Ok(GpuExecutable::new(&optimized, open(kind)?)?)
}

/// Every GPU function of `exe`, in execution order (reshapes need none: they alias their
/// source).
pub fn functions(exe: &Executable) -> Vec<GpuFunction> {
    kiln_runtime::gpu::functions::functions(exe.schedule())
}

/// One CUDA translation unit with every GPU function of `exe` (for NVRTC).
pub fn module(exe: &Executable) -> String {
    kiln_runtime::gpu::functions::module(&functions(exe))
}
