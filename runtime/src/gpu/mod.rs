//! The GPU backend's launch side: the same partitioned graph the JIT runs, resolved into a
//! [`program()`] of device buffers, launches and copies, run by a [`GpuExecutable`] on a
//! [`Device`].
//!
//! - [`functions`]: the CUDA C function of every group ([`kiln_codegen::gpu`] renders them);
//! - [`mod@program`]: buffers (inputs, parameters and outputs each their own; intermediates in one
//!   arena at the memory plan's offsets), launches and copies, index checks;
//! - [`executable`]: uploads, runs, downloads, and swaps updates into parameters so they stay
//!   on the device across training steps;
//! - [`device`]: the [`Device`] trait; `cuda` (feature `cuda`) is an NVIDIA GPU through the
//!   dynamically loaded CUDA driver and NVRTC, [`host`] the same CUDA C run on the CPU.
//!
//! See `docs/gpu.md`.

#[cfg(feature = "cuda")]
pub mod cuda;
pub mod device;
pub mod executable;
pub mod functions;
pub mod host;
pub mod program;

pub use device::Device;
pub use executable::{GpuExecutable, Tuning, call_function, symbols};
pub use functions::{GpuFunction, Variant};
pub use host::HostDevice;
pub use program::{GpuProgram, program};

use kiln_ir::TensorType;
use thiserror::Error;

/// Which device a GPU backend runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// The first NVIDIA GPU, through the CUDA driver (feature `cuda`).
    Cuda,
    /// The CUDA C run on the CPU ([`HostDevice`]): for checking the GPU path without a GPU.
    Emulated,
}

/// Opens a device of `kind`.
pub fn open(kind: DeviceKind) -> Result<Box<dyn Device>, GpuError> {
    match kind {
        DeviceKind::Emulated => Ok(Box::new(HostDevice::new())),
        #[cfg(feature = "cuda")]
        DeviceKind::Cuda => Ok(Box::new(cuda::CudaDevice::new()?)),
        #[cfg(not(feature = "cuda"))]
        DeviceKind::Cuda => Err(GpuError::NotBuilt),
    }
}

/// Errors of the GPU backend.
#[derive(Debug, Error)]
pub enum GpuError {
    /// This build has no CUDA support.
    #[error(
        "this kiln was built without CUDA support: rebuild with `--features cuda` (needs no CUDA toolkit; running needs an NVIDIA driver)"
    )]
    NotBuilt,
    /// No CUDA driver library could be loaded.
    #[error("no CUDA driver: {0}")]
    NoDriver(String),
    /// NVRTC could not be loaded.
    #[error(
        "NVRTC (libnvrtc.so) could not be loaded: install it (e.g. `pip install --target DIR nvidia-cuda-nvrtc-cu12`) and set KILN_NVRTC_DIR=DIR or LD_LIBRARY_PATH"
    )]
    NoNvrtc,
    /// The driver reported an error.
    #[error("CUDA: {0}")]
    Driver(String),
    /// The module did not compile.
    #[error("the generated GPU module did not compile:\n{0}")]
    Compile(String),
    /// A buffer could not be allocated.
    #[error("out of device memory allocating {bytes} bytes")]
    OutOfMemory {
        /// The request.
        bytes: usize,
    },
    /// A group has no GPU form yet.
    #[error("{op} (node %{node}) cannot run on the GPU yet: {why}")]
    Unsupported {
        /// The op's name.
        op: &'static str,
        /// The node's index.
        node: usize,
        /// Why.
        why: String,
    },
    /// A kernel could not be lowered.
    #[error(transparent)]
    Lower(#[from] kiln_codegen::kernel::LowerError),
    /// The graph could not be lowered to a schedule.
    #[error(transparent)]
    Schedule(#[from] crate::schedule::ScheduleError),
    /// No such input, parameter or output.
    #[error("@{graph} has no input, parameter or output `{name}`")]
    UnknownName {
        /// The graph.
        graph: String,
        /// The name asked for.
        name: String,
    },
    /// A value of the wrong type.
    #[error("`{name}` is {expected}, got {got}")]
    WrongType {
        /// The leaf.
        name: String,
        /// Its type.
        expected: TensorType,
        /// The value's type.
        got: TensorType,
    },
    /// A leaf was never given a value.
    #[error("no value for `{name}` ({ty})")]
    MissingValue {
        /// The leaf.
        name: String,
        /// Its type.
        ty: TensorType,
    },
    /// An index outside its table.
    #[error("`{name}` holds index {index}, outside 0..{extent} of the {op} it feeds")]
    IndexOutOfRange {
        /// The index leaf.
        name: String,
        /// The bad index.
        index: i64,
        /// The table's extent.
        extent: usize,
        /// The op.
        op: &'static str,
    },
    /// A function's check on the device failed (integer division by zero, or an index
    /// computed on the device outside its table), as the interpreter would have reported.
    #[error("{op} (node %{node}) failed on the device: {what}")]
    Fault {
        /// The op's name.
        op: &'static str,
        /// The node's index.
        node: usize,
        /// What went wrong.
        what: String,
    },
    /// No output at this position.
    #[error("no output {0}")]
    NoOutput(usize),
    /// A form a function does not have.
    #[error("{symbol} has {forms} forms; there is no form {form}")]
    NoForm {
        /// The function's default symbol.
        symbol: String,
        /// The form asked for.
        form: usize,
        /// How many it has.
        forms: usize,
    },
    /// A launch named a function the module does not have.
    #[error("internal: the loaded module has no function {0}")]
    NoFunction(usize),
}
