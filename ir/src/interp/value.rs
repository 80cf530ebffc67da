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

/// Building a [`Value`] from a `Vec`, or reading one back, failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// The data does not fill the shape.
    #[error("shape {shape:?} holds {expected} elements, the data has {got}")]
    Length {
        /// The requested shape.
        shape: Vec<usize>,
        /// Elements the shape holds.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// The value holds another element type than asked for.
    #[error("the value is {held}, not {asked}")]
    DType {
        /// The dtype held.
        held: DType,
        /// The dtype asked for.
        asked: DType,
    },
}

/// The element types a [`Value`] holds: `f32`, `f64`, `i32`, `i64` and `bool`.
pub trait ValueElem: super::Elem {
    /// The value holding `a`.
    fn wrap(a: ArrayD<Self>) -> Value;
    /// The array `v` holds, if it holds this type.
    fn unwrap(v: &Value) -> Option<&ArrayD<Self>>;
}

impl Value {
    /// A value of `shape` from its elements in row-major order:
    /// `Value::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0])`. The data must fill the shape
    /// exactly.
    pub fn from_vec<T: ValueElem>(shape: &[usize], data: Vec<T>) -> Result<Value, ValueError> {
        let expected: usize = shape.iter().product();
        if data.len() != expected {
            return Err(ValueError::Length { shape: shape.to_vec(), expected, got: data.len() });
        }
        // The length equals the shape's element count, checked above.
        let a = ArrayD::from_shape_vec(IxDyn(shape), data).expect("length checked against the shape");
        Ok(T::wrap(a))
    }

    /// The elements in row-major order, if this value holds `T`: `v.to_vec::<f32>()`.
    pub fn to_vec<T: ValueElem>(&self) -> Result<Vec<T>, ValueError> {
        match T::unwrap(self) {
            Some(a) => Ok(a.iter().copied().collect()),
            None => Err(ValueError::DType { held: self.dtype(), asked: T::DTYPE }),
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

        impl ValueElem for $t {
            fn wrap(a: ArrayD<Self>) -> Value {
                Value::$v(a)
            }
            fn unwrap(v: &Value) -> Option<&ArrayD<Self>> {
                match v {
                    Value::$v(a) => Some(a),
                    _ => None,
                }
            }
        }
    };
}

value_from!(f32, F32);
value_from!(f64, F64);
value_from!(i32, I32);
value_from!(i64, I64);
value_from!(bool, Bool);
