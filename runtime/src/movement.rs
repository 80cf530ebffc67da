//! Data movement the runtime does with block copies on raw buffers: `concat` (each operand's
//! rows copied into its band of the result) and `pad` (the fill value, then the operand's
//! innermost rows copied into the interior). Byte-level, so one routine serves every dtype.

use kiln_ir::{DType, TensorType};

/// The bytes of `value` converted to `dtype` (the interpreter's cast rules for literals).
fn fill_bytes(dtype: DType, value: f64) -> Vec<u8> {
    match dtype {
        DType::F32 => (value as f32).to_ne_bytes().to_vec(),
        DType::F64 => value.to_ne_bytes().to_vec(),
        DType::I32 => (value as i32).to_ne_bytes().to_vec(),
        DType::I64 => (value as i64).to_ne_bytes().to_vec(),
        DType::Bool => vec![u8::from(value != 0.0)],
    }
}

/// `out = concat(parts, axis)`: for every index of the axes before `axis`, each operand's
/// contiguous block lands after the previous operand's.
///
/// # Safety
/// Each `parts[i].0` must point to a row-major buffer of `parts[i].1`; `out` must be valid for
/// writes of `out_ty` and overlap none of them; the types must satisfy `concat`'s rule.
pub unsafe fn concat(parts: &[(*const u8, &TensorType)], axis: usize, out: *mut u8, out_ty: &TensorType) {
    let size = out_ty.dtype.size_bytes();
    let outer: usize = out_ty.dims()[..axis].iter().product();
    let inner: usize = out_ty.dims()[axis + 1..].iter().product();
    let row = out_ty.dims()[axis] * inner * size;
    let mut at = 0;
    for (ptr, ty) in parts {
        let block = ty.dims()[axis] * inner * size;
        for o in 0..outer {
            // SAFETY: block `o` of this operand lies inside it (outer·block bytes in all), and
            // its destination, at byte `at` of row `o` of the result, lies inside `out`.
            unsafe { std::ptr::copy_nonoverlapping(ptr.add(o * block), out.add(o * row + at), block) };
        }
        at += block;
    }
}

/// `out = pad(x, low, high, value)`.
///
/// # Safety
/// `x` must point to a row-major buffer of `x_ty`; `out` must be valid for writes of
/// `out_ty`, which is `x_ty` grown by `low + high` per axis, and not overlap `x`.
pub unsafe fn pad(x: *const u8, x_ty: &TensorType, low: &[usize], value: f64, out: *mut u8, out_ty: &TensorType) {
    let size = out_ty.dtype.size_bytes();
    let fill = fill_bytes(out_ty.dtype, value);
    let total = out_ty.numel();
    // SAFETY: `out` holds `total` elements of `size` bytes.
    let out_bytes = unsafe { std::slice::from_raw_parts_mut(out, total * size) };
    if fill.iter().all(|b| *b == 0) {
        out_bytes.fill(0);
    } else {
        for chunk in out_bytes.chunks_exact_mut(size) {
            chunk.copy_from_slice(&fill);
        }
    }
    let (xd, od) = (x_ty.dims(), out_ty.dims());
    let rank = xd.len();
    if x_ty.numel() == 0 || rank == 0 {
        if rank == 0 {
            // SAFETY: a scalar: one element each.
            unsafe { std::ptr::copy_nonoverlapping(x, out, size) };
        }
        return;
    }
    // Row-major strides of the result, in elements.
    let mut ostride = vec![1usize; rank];
    for d in (0..rank - 1).rev() {
        ostride[d] = ostride[d + 1] * od[d + 1];
    }
    let run = xd[rank - 1] * size;
    let rows = x_ty.numel() / xd[rank - 1];
    let mut index = vec![0usize; rank - 1];
    for r in 0..rows {
        let dst: usize = (0..rank).map(|d| (if d + 1 < rank { index[d] } else { 0 } + low[d]) * ostride[d]).sum();
        // SAFETY: row r of x is in bounds (rows · run bytes in all); its destination row,
        // shifted by `low`, lies inside the result, whose extents are x's plus the padding.
        unsafe { std::ptr::copy_nonoverlapping(x.add(r * run), out.add(dst * size), run) };
        // Next row index (odometer over the outer axes).
        for d in (0..rank - 1).rev() {
            index[d] += 1;
            if index[d] < xd[d] {
                break;
            }
            index[d] = 0;
        }
    }
}
