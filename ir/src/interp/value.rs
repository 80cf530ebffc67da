//! Runtime values of the reference interpreter: one dense ndarray per dtype.

use ndarray::{ArrayD, IxDyn};

use crate::dtype::DType;
use crate::shape::TensorType;

/// A dense tensor value of any dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `f32` data.
    F32(ArrayD<f32>),
    /// `f64` data.
    F64(ArrayD<f64>),
    /// `i32` data.
    I32(ArrayD<i32>),
    /// `i64` data.
    I64(ArrayD<i64>),
    /// `bool` data.
    Bool(ArrayD<bool>),
}

/// Applies one generic expression to whichever array a [`Value`] holds, giving a `Value` of the
/// same dtype.
#[macro_export]
macro_rules! map_value {
    ($v:expr, $a:ident => $body:expr) => {
        match $v {
            $crate::interp::Value::F32($a) => $crate::interp::Value::F32($body),
            $crate::interp::Value::F64($a) => $crate::interp::Value::F64($body),
            $crate::interp::Value::I32($a) => $crate::interp::Value::I32($body),
            $crate::interp::Value::I64($a) => $crate::interp::Value::I64($body),
            $crate::interp::Value::Bool($a) => $crate::interp::Value::Bool($body),
        }
    };
}

impl Value {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Value::F32(_) => DType::F32,
            Value::F64(_) => DType::F64,
            Value::I32(_) => DType::I32,
            Value::I64(_) => DType::I64,
            Value::Bool(_) => DType::Bool,
        }
    }

    /// The extents.
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(a) => a.shape(),
            Value::F64(a) => a.shape(),
            Value::I32(a) => a.shape(),
            Value::I64(a) => a.shape(),
            Value::Bool(a) => a.shape(),
        }
    }

    /// The IR type of this value.
    pub fn ty(&self) -> TensorType {
        TensorType::new(self.dtype(), self.shape().to_vec())
    }

    /// A value of `ty` with every element equal to `v` (converted as a `const` would be).
    pub fn splat(ty: &TensorType, v: f64) -> Value {
        use super::elem::Elem;
        let shape = IxDyn(ty.dims());
        match ty.dtype {
            DType::F32 => Value::F32(ArrayD::from_elem(shape, f32::from_literal(v))),
            DType::F64 => Value::F64(ArrayD::from_elem(shape, f64::from_literal(v))),
            DType::I32 => Value::I32(ArrayD::from_elem(shape, i32::from_literal(v))),
            DType::I64 => Value::I64(ArrayD::from_elem(shape, i64::from_literal(v))),
            DType::Bool => Value::Bool(ArrayD::from_elem(shape, bool::from_literal(v))),
        }
    }

    /// Every element converted to `f64` (booleans as 0/1), in row-major order: for comparing
    /// results across dtypes and backends.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            Value::F32(a) => a.iter().map(|&x| f64::from(x)).collect(),
            Value::F64(a) => a.iter().copied().collect(),
            Value::I32(a) => a.iter().map(|&x| f64::from(x)).collect(),
            Value::I64(a) => a.iter().map(|&x| x as f64).collect(),
            Value::Bool(a) => a.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// An `i64[]` scalar (the type of seeds).
    pub fn i64_scalar(v: i64) -> Value {
        Value::I64(ndarray::arr0(v).into_dyn())
    }

    /// The scalar `i64` a seed operand holds, if this is one.
    pub fn as_i64_scalar(&self) -> Option<i64> {
        match self {
            Value::I64(a) if a.ndim() == 0 => a.iter().next().copied(),
            _ => None,
        }
    }
}

macro_rules! value_from {
    ($t:ty, $v:ident) => {
        impl From<ArrayD<$t>> for Value {
            fn from(a: ArrayD<$t>) -> Self {
                Value::$v(a)
            }
        }
    };
}

value_from!(f32, F32);
value_from!(f64, F64);
value_from!(i32, I32);
value_from!(i64, I64);
value_from!(bool, Bool);
