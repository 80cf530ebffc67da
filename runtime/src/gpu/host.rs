//! A [`Device`] that runs the generated CUDA C on the CPU: the module is compiled as C++ by
//! the system compiler (`$CXX`, else `c++`) with a small shim and loaded with `dlopen`. A
//! grid-stride function runs as one block of one thread (its loops then cover every
//! element); a cooperative one as one block of its real size whose threads are fibers taking
//! turns at every `__syncthreads` (each runs to the barrier before any passes it), with
//! `__shared__` arrays shared by the block (the block then strides over every work unit).
//! Buffers are host memory; copies are `memcpy`.
//!
//! It exists to check, where no GPU is present, everything of the GPU backend but the GPU's
//! own arithmetic and launch configuration: the program's buffers, offsets, launch order,
//! copies, parameter residency and the generated code's semantics (`tests/gpu.rs`).

use std::alloc::Layout;
use std::ffi::c_void;
use std::path::PathBuf;
use std::process::Command;

use kiln_codegen::gpu::Launch;

use super::{Device, GpuError};

/// Makes generated CUDA C valid C++ on the host (see the module's header).
pub const CPU_SHIM: &str = r#"#include <cmath>
#include <csetjmp>
#include <cstddef>
#include <cstring>
#include <ucontext.h>
#include <utility>
#include <vector>
struct kiln_dim { unsigned x; };
static const kiln_dim blockIdx = {0}, gridDim = {1};
static kiln_dim threadIdx = {0}, blockDim = {1};
/* A block's threads are fibers on one OS thread: `__syncthreads` jumps back to the scheduler,
   which runs every other thread of the block up to the same barrier before resuming it. A
   fiber starts on its own stack through `setcontext`; every later switch is a `_setjmp` /
   `_longjmp` pair (no system call). */
struct kiln_jmp { jmp_buf at; };
static jmp_buf kiln_scheduler;
static std::vector<kiln_jmp> kiln_fiber_jb;
static inline void __syncthreads() {
    if (blockDim.x > 1 && !_setjmp(kiln_fiber_jb[threadIdx.x].at)) _longjmp(kiln_scheduler, 1);
}
#define __global__
#define __device__
#define __shared__ static
#define __forceinline__ inline
#define __align__(n) __attribute__((aligned(n)))
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(4) uchar4 { unsigned char x, y, z, w; };
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) { return {x, y, z, w}; }
static inline unsigned long long atomicCAS(unsigned long long *p, unsigned long long expected, unsigned long long value) { const unsigned long long old = *p; if (old == expected) *p = value; return old; }
static inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
static inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
template <typename... P, std::size_t... I>
static void kiln_apply(void (*f)(P...), void *const *a, std::index_sequence<I...>) { f(static_cast<P>(a[I])...); }
template <typename... P>
static void kiln_invoke(void (*f)(P...), void *const *a) { kiln_apply(f, a, std::index_sequence_for<P...>{}); }
static void (*kiln_fn)(void *const *);
static void *const *kiln_args;
static std::vector<char> kiln_state; /* 0 not started, 1 at a barrier, 2 done */
static void kiln_fiber() {
    kiln_fn(kiln_args);
    kiln_state[threadIdx.x] = 2;
    _longjmp(kiln_scheduler, 1);
}
/* Runs `f` as one block of `threads` threads: round-robin, each to its next barrier or end
   (the block's threads reach the same barriers in the same order). */
extern "C" void kiln_block(void (*f)(void *const *), void *const *a, unsigned threads) {
    static std::vector<std::vector<char>> stacks;
    static std::vector<ucontext_t> start;
    const std::size_t stack_bytes = 256 * 1024;
    kiln_fn = f;
    kiln_args = a;
    kiln_fiber_jb.resize(threads);
    kiln_state.assign(threads, 0);
    stacks.resize(threads);
    start.resize(threads);
    blockDim.x = threads;
    for (bool running = true; running;) {
        running = false;
        for (unsigned i = 0; i < threads; i++) {
            if (kiln_state[i] == 2) continue;
            threadIdx.x = i;
            if (!_setjmp(kiln_scheduler)) {
                if (kiln_state[i] == 0) {
                    kiln_state[i] = 1;
                    stacks[i].resize(stack_bytes);
                    getcontext(&start[i]);
                    start[i].uc_stack.ss_sp = stacks[i].data();
                    start[i].uc_stack.ss_size = stack_bytes;
                    start[i].uc_link = nullptr;
                    makecontext(&start[i], kiln_fiber, 0);
                    setcontext(&start[i]);
                }
                _longjmp(kiln_fiber_jb[i].at, 1);
            }
            running = running || kiln_state[i] != 2;
        }
    }
    threadIdx.x = 0;
    blockDim.x = 1;
}
"#;

/// The shim's block runner: runs a trampoline as one block of this many threads.
type BlockRunner = unsafe extern "C" fn(Trampoline, *const *mut c_void, u32);

/// A launch trampoline: calls one generated function with its pointer arguments.
type Trampoline = unsafe extern "C" fn(*const *mut c_void);

/// The CPU stand-in for a GPU (see the module's header).
pub struct HostDevice {
    cxx: String,
    functions: Vec<Trampoline>,
    block: Option<BlockRunner>,
    // Owns the code `functions` point into: dropped after them (fields drop in order).
    library: Option<libloading::Library>,
    allocations: Vec<(*mut u8, Layout)>,
}

impl std::fmt::Debug for HostDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostDevice").field("cxx", &self.cxx).field("functions", &self.functions.len()).finish()
    }
}

impl HostDevice {
    /// A host device compiling with `$CXX`, else `c++`.
    pub fn new() -> Self {
        HostDevice {
            cxx: std::env::var("CXX").unwrap_or_else(|_| "c++".into()),
            functions: Vec::new(),
            block: None,
            library: None,
            allocations: Vec::new(),
        }
    }
}

// SAFETY: the allocations are owned by this device alone and freed only by its drop; the
// trampolines point into the library it owns; nothing is tied to the creating thread (the
// shim's block state is reset by every launch, which runs to completion).
unsafe impl Send for HostDevice {}

impl Default for HostDevice {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for HostDevice {
    fn drop(&mut self) {
        for (ptr, layout) in self.allocations.drain(..) {
            // SAFETY: each pair is a live allocation made in `alloc` with this layout, freed once.
            unsafe { std::alloc::dealloc(ptr, layout) };
        }
    }
}

impl Device for HostDevice {
    fn describe(&self) -> String {
        format!("CPU emulation (CUDA C compiled by {})", self.cxx)
    }

    fn load(&mut self, source: &str, symbols: &[String]) -> Result<(), GpuError> {
        static MODULES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = MODULES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir: PathBuf = std::env::temp_dir().join(format!("kiln-host-gpu-{}-{n}", std::process::id()));
        let io = |e: std::io::Error| GpuError::Compile(format!("{}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(io)?;
        let mut cpp = String::from(CPU_SHIM);
        cpp.push_str(source);
        for s in symbols {
            cpp.push_str(&format!("\nextern \"C\" void call_{s}(void *const *a) {{ kiln_invoke({s}, a); }}"));
        }
        cpp.push('\n');
        let (src, lib) = (dir.join("module.cpp"), dir.join("module.so"));
        std::fs::write(&src, cpp).map_err(io)?;
        let out = Command::new(&self.cxx)
            .args(["-O2", "-w", "-shared", "-fPIC", "-std=c++17", "-U_FORTIFY_SOURCE", "-o"])
            .arg(&lib)
            .arg(&src)
            .output()
            .map_err(|e| GpuError::Compile(format!("cannot run the C++ compiler `{}`: {e}", self.cxx)))?;
        if !out.status.success() {
            return Err(GpuError::Compile(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        // SAFETY: the library is the module just compiled: its initializers are the C++
        // runtime's only.
        let library = unsafe { libloading::Library::new(&lib) }.map_err(|e| GpuError::Compile(e.to_string()))?;
        let _ = std::fs::remove_dir_all(&dir);
        self.functions.clear();
        for s in symbols {
            // SAFETY: `call_{s}` is defined above with exactly this signature.
            let f = unsafe { library.get::<Trampoline>(format!("call_{s}").as_bytes()) }
                .map_err(|e| GpuError::Compile(format!("{s}: {e}")))?;
            self.functions.push(*f);
        }
        // SAFETY: `kiln_block` is defined in the shim with exactly this signature.
        let block =
            unsafe { library.get::<BlockRunner>(b"kiln_block") }.map_err(|e| GpuError::Compile(e.to_string()))?;
        self.block = Some(*block);
        self.library = Some(library);
        Ok(())
    }

    fn alloc(&mut self, bytes: usize) -> Result<u64, GpuError> {
        let layout = Layout::from_size_align(bytes.max(1), 256).map_err(|_| GpuError::OutOfMemory { bytes })?;
        // SAFETY: the layout's size is not zero.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(GpuError::OutOfMemory { bytes });
        }
        self.allocations.push((ptr, layout));
        Ok(ptr as u64)
    }

    unsafe fn upload(&mut self, dst: u64, src: &[u8]) -> Result<(), GpuError> {
        // SAFETY: the caller keeps `dst .. dst + len` inside one of our allocations, which
        // never overlap the caller's slice.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst as *mut u8, src.len()) };
        Ok(())
    }

    unsafe fn download(&self, src: u64, dst: &mut [u8]) -> Result<(), GpuError> {
        // SAFETY: as in `upload`, the other way round.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    unsafe fn copy(&mut self, src: u64, dst: u64, bytes: usize) -> Result<(), GpuError> {
        // SAFETY: the caller keeps both ranges inside our allocations, not overlapping.
        unsafe { std::ptr::copy_nonoverlapping(src as *const u8, dst as *mut u8, bytes) };
        Ok(())
    }

    unsafe fn launch(&mut self, function: usize, args: &[u64], launch: Launch) -> Result<(), GpuError> {
        let f = *self.functions.get(function).ok_or(GpuError::NoFunction(function))?;
        let ptrs: Vec<*mut c_void> = args.iter().map(|a| *a as *mut c_void).collect();
        match (launch, self.block) {
            (Launch::Blocks { threads, .. }, Some(block)) => {
                // SAFETY: as below; the block runner runs the trampoline as `threads` fibers to
                // completion before returning, so `ptrs` outlives every call.
                unsafe { block(f, ptrs.as_ptr(), threads) };
            }
            _ => {
                // SAFETY: the trampoline passes each pointer to the generated function's
                // parameter of the same position; the caller guarantees each has room for
                // what the function touches.
                unsafe { f(ptrs.as_ptr()) };
            }
        }
        Ok(())
    }

    fn synchronize(&mut self) -> Result<(), GpuError> {
        Ok(())
    }

    fn times_like_a_gpu(&self) -> bool {
        false
    }
}
