//! An NVIDIA GPU as a [`Device`], through `cudarc` with dynamic loading: the CUDA driver
//! (`libcuda.so.1`) and NVRTC (`libnvrtc.so`) are opened at run time, so building needs no
//! CUDA toolkit and a machine without them gets an error, not a crash.
//!
//! NVRTC compiles the module to PTX for the device's compute capability; the driver loads
//! it. One stream runs every copy and launch in order. Grid-stride functions get 256 threads per
//! block and enough blocks to cover the output, cooperative ones their fixed block size and
//! a block per work unit, both capped at 32 blocks per multiprocessor (the functions stride
//! over what a smaller grid leaves). NVRTC is found on the loader's path or, first, under
//! `$KILN_NVRTC_DIR` (where `pip install --target DIR nvidia-cuda-nvrtc-cu12` put it).

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

use kiln_codegen::gpu::Launch;

use super::{Device, GpuError};

/// The first CUDA device of the machine (see the module's header).
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: Vec<CudaFunction>,
    allocations: Vec<CudaSlice<u8>>,
    name: String,
    arch: String,
    max_blocks: u32,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice").field("name", &self.name).field("arch", &self.arch).finish()
    }
}

/// Loads NVRTC from `$KILN_NVRTC_DIR` (the wheel's layout or the directory itself) globally,
/// so that the binding's later `dlopen("libnvrtc.so.12")` finds it by its soname.
fn preload_nvrtc() {
    let Ok(root) = std::env::var("KILN_NVRTC_DIR") else { return };
    let root = std::path::PathBuf::from(root);
    for dir in [root.join("nvidia/cuda_nvrtc/lib"), root] {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("libnvrtc.so") && !name.contains("builtins") && !name.contains(".alt.") {
                // SAFETY: NVRTC's initializers only set up its own state; the handle is leaked
                // on purpose so the library stays loaded for the binding.
                let lib = unsafe {
                    libloading::os::unix::Library::open(
                        Some(e.path()),
                        libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_GLOBAL,
                    )
                };
                if let Ok(lib) = lib {
                    std::mem::forget(lib);
                    return;
                }
            }
        }
    }
}

fn driver(e: cudarc::driver::DriverError) -> GpuError {
    GpuError::Driver(e.to_string())
}

impl CudaDevice {
    /// Opens GPU 0: an error when the driver or NVRTC cannot be loaded or there is no GPU.
    pub fn new() -> Result<Self, GpuError> {
        // SAFETY: only tries to open the driver library by its names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(GpuError::NoDriver(
                "libcuda.so could not be loaded (is an NVIDIA driver installed on this machine?)".into(),
            ));
        }
        preload_nvrtc();
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(GpuError::NoNvrtc);
        }
        let ctx = CudaContext::new(0).map_err(|e| GpuError::NoDriver(format!("no usable GPU: {e}")))?;
        let name = ctx.name().map_err(driver)?;
        let (major, minor) = ctx.compute_capability().map_err(driver)?;
        let sms = ctx
            .attribute(cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver)?;
        let stream = ctx.new_stream().map_err(driver)?;
        Ok(CudaDevice {
            ctx,
            stream,
            functions: Vec::new(),
            allocations: Vec::new(),
            name,
            arch: format!("compute_{major}{minor}"),
            max_blocks: (sms.max(1) as u32) * 32,
        })
    }
}

impl Device for CudaDevice {
    fn describe(&self) -> String {
        format!("{} ({})", self.name, self.arch)
    }

    fn load(&mut self, source: &str, symbols: &[String]) -> Result<(), GpuError> {
        let options = cudarc::nvrtc::CompileOptions {
            options: vec![format!("--gpu-architecture={}", self.arch), "--std=c++17".into()],
            ..Default::default()
        };
        let ptx = cudarc::nvrtc::compile_ptx_with_opts(source, options).map_err(|e| match e {
            cudarc::nvrtc::CompileError::CompileError { log, .. } => {
                GpuError::Compile(log.to_string_lossy().into_owned())
            }
            e => GpuError::Compile(e.to_string()),
        })?;
        let module = self.ctx.load_module(ptx).map_err(driver)?;
        self.functions = symbols.iter().map(|s| module.load_function(s).map_err(driver)).collect::<Result<_, _>>()?;
        Ok(())
    }

    fn alloc(&mut self, bytes: usize) -> Result<u64, GpuError> {
        let slice = self.stream.alloc_zeros::<u8>(bytes.max(1)).map_err(|_| GpuError::OutOfMemory { bytes })?;
        let (address, _sync) = slice.device_ptr(&self.stream);
        drop(_sync);
        self.allocations.push(slice);
        Ok(address)
    }

    unsafe fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), GpuError> {
        self.ctx.bind_to_thread().map_err(driver)?;
        // Earlier launches may still read the old bytes: copy in stream order, and wait, so
        // that `src` may be dropped when this returns.
        // SAFETY: the caller keeps `dst .. dst + len` inside one of our allocations.
        unsafe { cudarc::driver::result::memcpy_htod_async(dst, src, self.stream.cu_stream()) }.map_err(driver)?;
        self.stream.synchronize().map_err(driver)
    }

    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<(), GpuError> {
        self.ctx.bind_to_thread().map_err(driver)?;
        // SAFETY: the caller keeps `src .. src + len` inside one of our allocations.
        unsafe { cudarc::driver::result::memcpy_dtoh_async(dst, src, self.stream.cu_stream()) }.map_err(driver)?;
        self.stream.synchronize().map_err(driver)
    }

    unsafe fn copy(&mut self, src: u64, dst: u64, bytes: usize) -> Result<(), GpuError> {
        self.ctx.bind_to_thread().map_err(driver)?;
        // SAFETY: the caller keeps both ranges inside our allocations, not overlapping.
        unsafe { cudarc::driver::result::memcpy_dtod_async(dst, src, bytes, self.stream.cu_stream()) }.map_err(driver)
    }

    unsafe fn launch(&mut self, function: usize, args: &[u64], launch: Launch) -> Result<(), GpuError> {
        let f = self.functions.get(function).ok_or(GpuError::NoFunction(function))?;
        let (threads, blocks) = match launch {
            Launch::Elements(n) => (256u32, n.div_ceil(256)),
            Launch::Blocks { units, threads } => (threads, units),
        };
        let blocks = blocks.clamp(1, self.max_blocks as usize) as u32;
        let config = LaunchConfig { grid_dim: (blocks, 1, 1), block_dim: (threads, 1, 1), shared_mem_bytes: 0 };
        let mut launch = self.stream.launch_builder(f);
        for a in args {
            launch.arg(a);
        }
        // SAFETY: every argument is a device address the caller vouches for, passed to a
        // pointer parameter of the same position.
        unsafe { launch.launch(config) }.map_err(driver)?;
        Ok(())
    }

    fn synchronize(&mut self) -> Result<(), GpuError> {
        self.stream.synchronize().map_err(driver)
    }

    fn times_like_a_gpu(&self) -> bool {
        true
    }
}
