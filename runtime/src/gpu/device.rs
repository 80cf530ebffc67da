//! What the GPU executor needs from a device: a module of functions, zeroed buffers, copies
//! and launches. `CudaDevice` (`cuda.rs`, feature `cuda`) is an NVIDIA GPU through the
//! CUDA driver; [`super::host::HostDevice`] runs the same CUDA C on the CPU, for checking the
//! executor and the generated code where no GPU is present.

use kiln_codegen::gpu::Launch;

use super::GpuError;

/// A device the executor runs programs on. Addresses are the device's own (`CUdeviceptr` on
/// a GPU); the executor only passes addresses inside buffers this device allocated, at
/// offsets that leave room for the bytes moved. A device may move between threads (a training
/// session does), one thread at a time.
pub trait Device: Send {
    /// The device, in words (model and driver, or "CPU emulation").
    fn describe(&self) -> String;

    /// Compiles `source` (one CUDA C translation unit) and looks up `symbols`; launches name
    /// a function by its position in `symbols`. Replaces an earlier module.
    fn load(&mut self, source: &str, symbols: &[String]) -> Result<(), GpuError>;

    /// A zeroed buffer of at least `bytes` bytes (and at least one), aligned to 256 bytes,
    /// alive as long as the device; returns its address.
    fn alloc(&mut self, bytes: usize) -> Result<u64, GpuError>;

    /// Copies `src` to device address `dst`.
    ///
    /// # Safety
    /// `dst .. dst + src.len()` lies inside one buffer from [`Device::alloc`].
    unsafe fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), GpuError>;

    /// Copies `dst.len()` bytes from device address `src` (after all launched work is done).
    ///
    /// # Safety
    /// `src .. src + dst.len()` lies inside one buffer from [`Device::alloc`].
    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<(), GpuError>;

    /// Copies `bytes` bytes from `src` to `dst` on the device, in launch order.
    ///
    /// # Safety
    /// Both ranges lie inside buffers from [`Device::alloc`] and do not overlap.
    unsafe fn copy(&mut self, src: u64, dst: u64, bytes: usize) -> Result<(), GpuError>;

    /// Launches function `function` of the loaded module with pointer arguments `args`, shaped
    /// as `launch` says (grid-stride loops over elements, or cooperative blocks of a fixed size
    /// striding over work units: any number of blocks covers either).
    ///
    /// # Safety
    /// `args` are addresses inside buffers from [`Device::alloc`], each with room for what the
    /// function reads or writes there (its parameter's type and extent).
    unsafe fn launch(&mut self, function: usize, args: &[u64], launch: Launch) -> Result<(), GpuError>;

    /// Waits until every launch and copy has finished, reporting a failure of any of them.
    fn synchronize(&mut self) -> Result<(), GpuError>;

    /// Whether timing a function on this device tells how fast it runs on a GPU: true for a
    /// GPU, whose executables then choose among a function's forms by measurement when they
    /// are created; false for the CPU emulation (its timings say nothing about a GPU).
    fn times_like_a_gpu(&self) -> bool;
}
