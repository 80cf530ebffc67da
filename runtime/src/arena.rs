//! The executor's memory: one 64-byte-aligned arena holding every intermediate kernel buffer
//! at the offset the memory plan gave it, and raw views of values for kernels.
//!
//! Only this module and the kernel calls in `jit` touch raw pointers; everything they point
//! into is either a [`Value`] owned or borrowed for the whole run, or the arena, which is
//! borrowed mutably for the whole run.

use kiln_ir::{DType, TensorType, Value};
use ndarray::{ArrayD, IxDyn};

/// One cache line: the arena's unit, so every offset the plan gives (a multiple of
/// [`kiln_passes::plan::ALIGN`]) is 64-byte aligned in memory.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// One aligned allocation, grown to the plan's peak on first use and kept between runs.
#[derive(Default)]
pub(crate) struct Arena {
    lines: Vec<Line>,
}

impl Arena {
    /// Makes the arena at least `bytes` long (zeroed when it grows).
    pub(crate) fn reserve(&mut self, bytes: usize) {
        let lines = bytes.div_ceil(std::mem::size_of::<Line>());
        if self.lines.len() < lines {
            self.lines = vec![Line([0; 64]); lines];
        }
    }

    /// The arena's first byte.
    pub(crate) fn base(&mut self) -> *mut u8 {
        self.lines.as_mut_ptr() as *mut u8
    }
}

/// The data pointer and element count of a row-major value.
pub(crate) fn data(v: &Value) -> (*const u8, usize) {
    match v {
        Value::F32(a) => (a.as_ptr() as *const u8, a.len()),
        Value::F64(a) => (a.as_ptr() as *const u8, a.len()),
        Value::I32(a) => (a.as_ptr() as *const u8, a.len()),
        Value::I64(a) => (a.as_ptr() as *const u8, a.len()),
        Value::Bool(a) => (a.as_ptr() as *const u8, a.len()),
    }
}

/// The mutable data pointer of a row-major value.
pub(crate) fn data_mut(v: &mut Value) -> *mut u8 {
    match v {
        Value::F32(a) => a.as_mut_ptr() as *mut u8,
        Value::F64(a) => a.as_mut_ptr() as *mut u8,
        Value::I32(a) => a.as_mut_ptr() as *mut u8,
        Value::I64(a) => a.as_mut_ptr() as *mut u8,
        Value::Bool(a) => a.as_mut_ptr() as *mut u8,
    }
}

/// True if the value's array is row-major and contiguous.
pub(crate) fn is_standard(v: &Value) -> bool {
    match v {
        Value::F32(a) => a.is_standard_layout(),
        Value::F64(a) => a.is_standard_layout(),
        Value::I32(a) => a.is_standard_layout(),
        Value::I64(a) => a.is_standard_layout(),
        Value::Bool(a) => a.is_standard_layout(),
    }
}

/// A row-major copy of the `ty.numel()` elements of type `ty` at `ptr`.
///
/// # Safety
/// `ptr` must point to `ty.numel()` initialized, properly aligned elements of `ty.dtype`
/// (for `bool`, bytes that are 0 or 1), valid for reads for the duration of the call.
pub(crate) unsafe fn copy_out(ty: &TensorType, ptr: *const u8) -> Value {
    let n = ty.numel();
    let shape = IxDyn(ty.dims());
    macro_rules! copy {
        ($variant:ident, $t:ty) => {{
            // SAFETY: forwarded from this function's contract.
            let slice = unsafe { std::slice::from_raw_parts(ptr as *const $t, n) };
            // The slice has exactly `numel` elements, so the shape always fits.
            Value::$variant(ArrayD::from_shape_vec(shape, slice.to_vec()).expect("numel matches the shape"))
        }};
    }
    match ty.dtype {
        DType::F32 => copy!(F32, f32),
        DType::F64 => copy!(F64, f64),
        DType::I32 => copy!(I32, i32),
        DType::I64 => copy!(I64, i64),
        DType::Bool => copy!(Bool, bool),
    }
}
