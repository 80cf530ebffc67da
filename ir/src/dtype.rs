//! Element types of tensors.
//!
//! The set is deliberately small: `f32` is the working type, `f64` exists for gradient checks,
//! the integers carry indices and labels, and `bool` carries masks and comparison results.

use std::fmt;
use std::str::FromStr;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// 32-bit IEEE float.
    F32,
    /// 64-bit IEEE float.
    F64,
    /// 32-bit signed integer.
    I32,
    /// 64-bit signed integer.
    I64,
    /// Boolean (masks, comparison results).
    Bool,
}

impl DType {
    /// Every dtype, in a fixed order.
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::I32, DType::I64, DType::Bool];

    /// The name used in the text IR (`f32`, `i64`, `bool`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I32 => "i32",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }

    /// True for `f32` and `f64`.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// True for `i32` and `i64`.
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64)
    }

    /// True for every dtype that supports arithmetic (all but `bool`).
    pub fn is_numeric(self) -> bool {
        self != DType::Bool
    }

    /// The integer a literal attribute (`const`, `pad` value) `v` stores as in this dtype, as
    /// the interpreter's casts define it: truncated toward zero and saturated to the dtype's
    /// range, NaN giving 0; `bool` is `v != 0`. Meant for the integer dtypes and `bool`; for
    /// the floats it is the `i64` conversion of `v`.
    pub fn int_literal(self, v: f64) -> i64 {
        match self {
            DType::I32 => i64::from(v as i32),
            DType::Bool => i64::from(v != 0.0),
            DType::F32 | DType::F64 | DType::I64 => v as i64,
        }
    }

    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| format!("unknown dtype `{s}` (expected one of f32, f64, i32, i64, bool)"))
    }
}
