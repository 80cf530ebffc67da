//! ONNX tensors and types to kiln's: `TensorProto` data (typed fields or little-endian
//! `raw_data`) to a [`Value`], `TensorProto.DataType` codes to [`DType`].

use kiln_ir::{DType, Value};

use crate::narrow::Narrow;
use crate::proto::TensorProto;
use crate::proto::tensor_proto::DataType;

/// The kiln dtype of an ONNX data type code, if kiln has one or carries it (the narrow
/// integer types, `crate::narrow`).
pub(crate) fn dtype_of(code: i32) -> Option<DType> {
    if let Some(n) = Narrow::of(code) {
        return Some(n.carrier());
    }
    match DataType::try_from(code).ok()? {
        DataType::Float => Some(DType::F32),
        DataType::Double => Some(DType::F64),
        DataType::Int32 => Some(DType::I32),
        DataType::Int64 => Some(DType::I64),
        DataType::Bool => Some(DType::Bool),
        _ => None,
    }
}

/// The ONNX name of a data type code (`FLOAT16`, `STRING`), for messages.
pub(crate) fn dtype_name(code: i32) -> String {
    match DataType::try_from(code) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("data type {code}"),
    }
}

/// The extents of `dims`, refusing negative ones.
pub(crate) fn extents(dims: &[i64], what: &str) -> Result<Vec<usize>, String> {
    dims.iter().map(|&d| usize::try_from(d).map_err(|_| format!("{what} has a negative extent in {dims:?}"))).collect()
}

/// Decodes a tensor's data into a kiln value.
pub(crate) fn to_value(t: &TensorProto) -> Result<Value, String> {
    let name = t.name();
    if t.data_location() == crate::proto::tensor_proto::DataLocation::External {
        return Err(format!("tensor `{name}` keeps its data in an external file, which kiln does not read"));
    }
    if t.segment.is_some() {
        return Err(format!("tensor `{name}` is segmented, which kiln does not read"));
    }
    let dtype = dtype_of(t.data_type()).ok_or_else(|| {
        format!("tensor `{name}` has dtype {}, which kiln has no dtype for", dtype_name(t.data_type()))
    })?;
    let dims = extents(&t.dims, &format!("tensor `{name}`"))?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("tensor `{name}` is too large"))?;
    let raw = t.raw_data.as_deref().filter(|r| !r.is_empty() || count == 0 && t.raw_data.is_some());
    let located = |e: String| format!("tensor `{name}` of shape {dims:?} {e}");
    let value = if let Some(n) = Narrow::of(t.data_type()) {
        let codes = narrow_codes(t, n, count).map_err(located)?;
        if n.float {
            Value::from_vec(&dims, codes.iter().map(|&c| narrow_float(n.onnx, c)).collect::<Vec<f32>>())
        } else {
            let v: Vec<i64> = codes.iter().map(|&c| narrow_int(n, c)).collect();
            Value::from_vec(&dims, v).map(|v| v.cast(n.carrier()))
        }
    } else {
        match dtype {
            DType::F32 => {
                Value::from_vec(&dims, elements(raw, &t.float_data, f32::from_le_bytes, count).map_err(located)?)
            }
            DType::F64 => {
                Value::from_vec(&dims, elements(raw, &t.double_data, f64::from_le_bytes, count).map_err(located)?)
            }
            DType::I32 => {
                Value::from_vec(&dims, elements(raw, &t.int32_data, i32::from_le_bytes, count).map_err(located)?)
            }
            DType::I64 => {
                Value::from_vec(&dims, elements(raw, &t.int64_data, i64::from_le_bytes, count).map_err(located)?)
            }
            DType::Bool => {
                let typed: Vec<bool> = t.int32_data.iter().map(|&b| b != 0).collect();
                Value::from_vec(&dims, elements(raw, &typed, |[b]: [u8; 1]| b != 0, count).map_err(located)?)
            }
        }
    };
    value.map_err(|e| format!("tensor `{name}`: {e}"))
}

/// `count` elements of a `W`-byte type: from little-endian `raw` data when the tensor has
/// it, else from its typed field.
fn elements<T: Copy, const W: usize>(
    raw: Option<&[u8]>,
    typed: &[T],
    from_le: fn([u8; W]) -> T,
    count: usize,
) -> Result<Vec<T>, String> {
    let v: Vec<T> = match raw {
        Some(r) if r.len() != count * W => {
            return Err(format!("has {} bytes of raw data instead of {}", r.len(), count * W));
        }
        Some(r) => r.chunks_exact(W).map(|c| from_le(c.try_into().expect("chunks of the width"))).collect(),
        None => typed.to_vec(),
    };
    if v.len() != count {
        return Err(format!("holds {} elements instead of {count}", v.len()));
    }
    Ok(v)
}

/// The elements of an integer or float value as `i64` (floats must be whole numbers).
pub(crate) fn to_i64s(v: &Value) -> Result<Vec<i64>, String> {
    match v {
        Value::I64(a) => Ok(a.iter().copied().collect()),
        Value::I32(a) => Ok(a.iter().map(|&x| x as i64).collect()),
        Value::Bool(a) => Ok(a.iter().map(|&x| x as i64).collect()),
        Value::F32(_) | Value::F64(_) => v
            .to_f64_vec()
            .into_iter()
            .map(|x| {
                if x.fract() == 0.0 && x.abs() < 9.0e15 { Ok(x as i64) } else { Err(format!("{x} is not an integer")) }
            })
            .collect(),
    }
}

/// True if every element of `v` is the same number (and there is at least one).
pub(crate) fn splat_of(v: &Value) -> Option<f64> {
    let all = v.to_f64_vec();
    let first = *all.first()?;
    // Integers past 2^53 do not survive `f64`: such a value is kept whole.
    if let Value::I64(a) = v
        && a.iter().any(|x| x.unsigned_abs() > 1 << 53)
    {
        return None;
    }
    all.iter().all(|x| x.to_bits() == first.to_bits()).then_some(first)
}

/// The `count` element codes (their bits, zero-extended) of a tensor of a carried type: from
/// little-endian `raw_data` (4- and 2-bit types packed, lowest bits first), else `int32_data`
/// (one element each; 4- and 2-bit types packed in its bytes) or `uint64_data` (`uint32`,
/// `uint64`).
fn narrow_codes(t: &TensorProto, n: Narrow, count: usize) -> Result<Vec<u64>, String> {
    let bits = n.bits as usize;
    let unpack = |bytes: &[u8]| -> Vec<u64> {
        if bits >= 8 {
            let w = bits / 8;
            bytes.chunks_exact(w).map(|c| c.iter().rev().fold(0u64, |a, &b| (a << 8) | b as u64)).collect()
        } else {
            let per = 8 / bits;
            let mask = (1u64 << bits) - 1;
            bytes.iter().flat_map(|&b| (0..per).map(move |k| (b as u64 >> (k * bits)) & mask)).collect()
        }
    };
    let needed = (count * bits).div_ceil(8);
    let mut codes = match t.raw_data.as_deref() {
        Some(r) if !r.is_empty() || count == 0 => {
            if r.len() != needed {
                return Err(format!("has {} bytes of raw data instead of {needed}", r.len()));
            }
            unpack(r)
        }
        _ if bits >= 32 => t.uint64_data.clone(),
        _ if bits >= 8 => t.int32_data.iter().map(|&x| x as u32 as u64 & ((1u64 << bits) - 1)).collect(),
        _ => unpack(&t.int32_data.iter().map(|&x| x as u8).collect::<Vec<u8>>()),
    };
    // Packed types may end with unused bits.
    if bits < 8 && codes.len() >= count && codes.len() - count < 8 / bits {
        codes.truncate(count);
    }
    if codes.len() != count {
        return Err(format!("holds {} elements instead of {count}", codes.len()));
    }
    Ok(codes)
}

/// An integer code of a narrow integer type, sign-extended when the type is signed.
fn narrow_int(n: Narrow, code: u64) -> i64 {
    if n.signed && n.bits < 64 && code >> (n.bits - 1) & 1 == 1 { code as i64 - (1i64 << n.bits) } else { code as i64 }
}

/// The value of a narrow float's bits (`float16`, `bfloat16`, the 8- and 4-bit floats), exact
/// in `f32`.
fn narrow_float(t: DataType, code: u64) -> f32 {
    let c = code as u32;
    // sign, then (exponent bits, mantissa bits, bias) of the formats with a sign bit.
    let (e_bits, m_bits, bias, nan_is_neg_zero, ieee_inf) = match t {
        DataType::Float16 => (5, 10, 15, false, true),
        DataType::Bfloat16 => return f32::from_bits(c << 16),
        DataType::Float8e4m3fn => (4, 3, 7, false, false),
        DataType::Float8e4m3fnuz => (4, 3, 8, true, false),
        DataType::Float8e5m2 => (5, 2, 15, false, true),
        DataType::Float8e5m2fnuz => (5, 2, 16, true, false),
        DataType::Float4e2m1 => (2, 1, 1, false, false),
        // Exponent only, no sign: 2^(c − 127), 0xFF is NaN.
        DataType::Float8e8m0 => return if c == 0xFF { f32::NAN } else { 2f32.powi(c as i32 - 127) },
        _ => return f32::NAN,
    };
    let width = 1 + e_bits + m_bits;
    let sign: f32 = if c >> (width - 1) & 1 == 1 { -1.0 } else { 1.0 };
    let e = (c >> m_bits) & ((1 << e_bits) - 1);
    let m = c & ((1 << m_bits) - 1);
    let e_max = (1 << e_bits) - 1;
    if nan_is_neg_zero && c == 1 << (width - 1) {
        return f32::NAN;
    }
    if ieee_inf && e == e_max {
        return if m == 0 { sign * f32::INFINITY } else { f32::NAN };
    }
    // float8e4m3fn: only S.1111.111 is NaN (no infinities).
    if t == DataType::Float8e4m3fn && e == e_max && m == (1 << m_bits) - 1 {
        return f32::NAN;
    }
    let frac = m as f64 / (1u32 << m_bits) as f64;
    let v = if e == 0 { frac * 2f64.powi(1 - bias) } else { (1.0 + frac) * 2f64.powi(e as i32 - bias) };
    sign * v as f32
}
