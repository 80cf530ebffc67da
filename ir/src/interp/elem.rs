//! Element types as Rust traits, so each interpreter kernel is written once for all dtypes.

use std::fmt::Debug;

use crate::dtype::DType;

/// A scalar widened for casting: floats as `f64`, integers and booleans as `i64`.
#[derive(Clone, Copy, Debug)]
pub enum Wide {
    /// A float value.
    Float(f64),
    /// An integer (or boolean as 0/1) value.
    Int(i64),
}

/// Any element type.
pub trait Elem: Copy + PartialEq + PartialOrd + Debug + Default + Send + Sync + 'static {
    /// The IR dtype.
    const DTYPE: DType;
    /// Widens for casting.
    fn to_wide(self) -> Wide;
    /// Narrows after casting: floats round to nearest, float to integer truncates toward zero
    /// and saturates (NaN gives 0), anything to bool is `!= 0`.
    fn from_wide(w: Wide) -> Self;
    /// Converts a literal attribute (`const`, `pad` value).
    fn from_literal(v: f64) -> Self {
        Self::from_wide(Wide::Float(v))
    }
}

/// Element types with arithmetic (all but `bool`).
pub trait Num: Elem {
    /// Additive identity.
    const ZERO: Self;
    /// Smallest value, the identity of `max` (−∞ for floats).
    const LOWEST: Self;
    /// `a + b` (wrapping for integers).
    fn add(self, o: Self) -> Self;
    /// `a - b` (wrapping for integers).
    fn sub(self, o: Self) -> Self;
    /// `a * b` (wrapping for integers).
    fn mul(self, o: Self) -> Self;
    /// `a / b`; `None` for integer division by zero.
    fn div(self, o: Self) -> Option<Self>;
    /// Maximum; NaN if either is NaN.
    fn max(self, o: Self) -> Self;
    /// Minimum; NaN if either is NaN.
    fn min(self, o: Self) -> Self;
    /// Negation (wrapping for integers).
    fn neg(self) -> Self;
    /// Absolute value (wrapping for integers).
    fn abs(self) -> Self;
    /// The value as an index, if it is a non-negative integer.
    fn to_index(self) -> Option<usize>;
    /// An index as a value.
    fn from_index(i: usize) -> Self;
}

/// Float element types.
pub trait Float: Num {
    /// Applies a transcendental or other float-only function.
    fn exp(self) -> Self;
    /// Natural log.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// `self ^ o`.
    fn powf(self, o: Self) -> Self;
    /// Conversion from `f64` (rounding to nearest).
    fn from_f64(v: f64) -> Self;
}

macro_rules! float_elem {
    ($t:ty, $d:expr) => {
        impl Elem for $t {
            const DTYPE: DType = $d;
            fn to_wide(self) -> Wide {
                Wide::Float(self as f64)
            }
            fn from_wide(w: Wide) -> Self {
                match w {
                    Wide::Float(f) => f as $t,
                    Wide::Int(i) => i as $t,
                }
            }
        }
        impl Num for $t {
            const ZERO: Self = 0.0;
            const LOWEST: Self = <$t>::NEG_INFINITY;
            fn add(self, o: Self) -> Self {
                self + o
            }
            fn sub(self, o: Self) -> Self {
                self - o
            }
            fn mul(self, o: Self) -> Self {
                self * o
            }
            fn div(self, o: Self) -> Option<Self> {
                Some(self / o)
            }
            fn max(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() { <$t>::NAN } else { <$t>::max(self, o) }
            }
            fn min(self, o: Self) -> Self {
                if self.is_nan() || o.is_nan() { <$t>::NAN } else { <$t>::min(self, o) }
            }
            fn neg(self) -> Self {
                -self
            }
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            fn to_index(self) -> Option<usize> {
                None
            }
            fn from_index(i: usize) -> Self {
                i as $t
            }
        }
        impl Float for $t {
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            fn powf(self, o: Self) -> Self {
                <$t>::powf(self, o)
            }
            fn from_f64(v: f64) -> Self {
                v as $t
            }
        }
    };
}

macro_rules! int_elem {
    ($t:ty, $d:expr) => {
        impl Elem for $t {
            const DTYPE: DType = $d;
            fn to_wide(self) -> Wide {
                Wide::Int(self as i64)
            }
            fn from_wide(w: Wide) -> Self {
                match w {
                    Wide::Float(f) => f as $t,
                    Wide::Int(i) => i as $t,
                }
            }
        }
        impl Num for $t {
            const ZERO: Self = 0;
            const LOWEST: Self = <$t>::MIN;
            fn add(self, o: Self) -> Self {
                self.wrapping_add(o)
            }
            fn sub(self, o: Self) -> Self {
                self.wrapping_sub(o)
            }
            fn mul(self, o: Self) -> Self {
                self.wrapping_mul(o)
            }
            fn div(self, o: Self) -> Option<Self> {
                if o == 0 { None } else { Some(self.wrapping_div(o)) }
            }
            fn max(self, o: Self) -> Self {
                Ord::max(self, o)
            }
            fn min(self, o: Self) -> Self {
                Ord::min(self, o)
            }
            fn neg(self) -> Self {
                self.wrapping_neg()
            }
            fn abs(self) -> Self {
                self.wrapping_abs()
            }
            fn to_index(self) -> Option<usize> {
                usize::try_from(self).ok()
            }
            fn from_index(i: usize) -> Self {
                i as $t
            }
        }
    };
}

float_elem!(f32, DType::F32);
float_elem!(f64, DType::F64);
int_elem!(i32, DType::I32);
int_elem!(i64, DType::I64);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    fn to_wide(self) -> Wide {
        Wide::Int(i64::from(self))
    }
    fn from_wide(w: Wide) -> Self {
        match w {
            Wide::Float(f) => f != 0.0,
            Wide::Int(i) => i != 0,
        }
    }
}
