//! `.npy` files in and out for any tensor, checked against the type the graph expects.

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

use kiln_ir::{DType, TensorType, Value};
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use thiserror::Error;

/// Errors reading or writing `.npy` files.
#[derive(Debug, Error)]
pub enum NpyError {
    /// The file could not be opened or created.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a `.npy` array of the expected dtype.
    #[error("{path}: expected a .npy array of {dtype} ({source})")]
    Read {
        /// The file.
        path: String,
        /// The dtype the graph expects.
        dtype: DType,
        /// What the reader found.
        source: ndarray_npy::ReadNpyError,
    },
    /// The file holds an array of the wrong shape.
    #[error("{path}: expected {expected}, the file holds {got}")]
    Shape {
        /// The file.
        path: String,
        /// The type the graph expects.
        expected: TensorType,
        /// The type in the file.
        got: TensorType,
    },
    /// Writing failed.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// What the writer reported.
        source: ndarray_npy::WriteNpyError,
    },
}

fn read_as<T: ndarray_npy::ReadableElement>(path: &Path, dtype: DType) -> Result<ArrayD<T>, NpyError> {
    let p = path.display().to_string();
    let f = File::open(path).map_err(|source| NpyError::Io { path: p.clone(), source })?;
    ArrayD::<T>::read_npy(f).map_err(|source| NpyError::Read { path: p, dtype, source })
}

/// Reads `path` as a value of type `expected` (dtype and shape must match exactly).
pub fn read(path: &Path, expected: &TensorType) -> Result<Value, NpyError> {
    let v = read_dtype(path, expected.dtype)?;
    if v.ty() != *expected {
        return Err(NpyError::Shape { path: path.display().to_string(), expected: expected.clone(), got: v.ty() });
    }
    Ok(v)
}

/// Reads `path` as an array of `dtype`, of any shape.
pub fn read_dtype(path: &Path, dtype: DType) -> Result<Value, NpyError> {
    Ok(match dtype {
        DType::F32 => read_as::<f32>(path, dtype)?.into(),
        DType::F64 => read_as::<f64>(path, dtype)?.into(),
        DType::I32 => read_as::<i32>(path, dtype)?.into(),
        DType::I64 => read_as::<i64>(path, dtype)?.into(),
        DType::Bool => read_as::<bool>(path, dtype)?.into(),
    })
}

/// Reads `path` as an array of bytes (`u8`, any shape) and scales it to `f32` in `[0, 1]`:
/// images as they are usually stored.
pub fn read_pixels(path: &Path) -> Result<Value, NpyError> {
    let bytes = read_as::<u8>(path, DType::F32)?;
    Ok(Value::F32(bytes.mapv(|b| f32::from(b) / 255.0)))
}

/// Writes `value` to `path` as a standard `.npy` file.
pub fn write(path: &Path, value: &Value) -> Result<(), NpyError> {
    let p = path.display().to_string();
    let f = File::create(path).map_err(|source| NpyError::Io { path: p.clone(), source })?;
    let w = BufWriter::new(f);
    let r = match value {
        Value::F32(a) => a.write_npy(w),
        Value::F64(a) => a.write_npy(w),
        Value::I32(a) => a.write_npy(w),
        Value::I64(a) => a.write_npy(w),
        Value::Bool(a) => a.write_npy(w),
    };
    r.map_err(|source| NpyError::Write { path: p, source })
}
