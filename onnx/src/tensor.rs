//! ONNX tensors and types to kiln's: `TensorProto` data (typed fields or little-endian
//! `raw_data`) to a [`Value`], `TensorProto.DataType` codes to [`DType`].

use kiln_ir::{DType, Value};

use crate::proto::TensorProto;
use crate::proto::tensor_proto::DataType;

/// The kiln dtype of an ONNX data type code, if kiln has one.
pub(crate) fn dtype_of(code: i32) -> Option<DType> {
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
    let wrong = |got: usize| format!("tensor `{name}` of shape {dims:?} holds {got} elements instead of {count}");
    macro_rules! from_raw {
        ($ty:ty, $bytes:expr) => {{
            let r = raw.expect("checked by the caller");
            if r.len() != count * $bytes {
                return Err(format!(
                    "tensor `{name}` of shape {dims:?} has {} bytes of raw data instead of {}",
                    r.len(),
                    count * $bytes
                ));
            }
            r.chunks_exact($bytes)
                .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk of the width")))
                .collect::<Vec<$ty>>()
        }};
    }
    let value = match dtype {
        DType::F32 => {
            let v = if raw.is_some() { from_raw!(f32, 4) } else { t.float_data.clone() };
            if v.len() != count {
                return Err(wrong(v.len()));
            }
            Value::from_vec(&dims, v)
        }
        DType::F64 => {
            let v = if raw.is_some() { from_raw!(f64, 8) } else { t.double_data.clone() };
            if v.len() != count {
                return Err(wrong(v.len()));
            }
            Value::from_vec(&dims, v)
        }
        DType::I32 => {
            let v = if raw.is_some() { from_raw!(i32, 4) } else { t.int32_data.clone() };
            if v.len() != count {
                return Err(wrong(v.len()));
            }
            Value::from_vec(&dims, v)
        }
        DType::I64 => {
            let v = if raw.is_some() { from_raw!(i64, 8) } else { t.int64_data.clone() };
            if v.len() != count {
                return Err(wrong(v.len()));
            }
            Value::from_vec(&dims, v)
        }
        DType::Bool => {
            let v: Vec<bool> = match raw {
                Some(r) => r.iter().map(|&b| b != 0).collect(),
                None => t.int32_data.iter().map(|&b| b != 0).collect(),
            };
            if v.len() != count {
                return Err(wrong(v.len()));
            }
            Value::from_vec(&dims, v)
        }
    };
    value.map_err(|e| format!("tensor `{name}`: {e}"))
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
