//! ONNX types kiln's IR does not have, carried exactly in a wider kiln dtype:
//!
//! - the narrow integers (`int8`, `uint8`, `int16`, `uint16`, and the packed `int4`, `uint4`,
//!   `int2`, `uint2`) in `i32`, `uint32` in `i64`: every value stays in its type's range, since
//!   what an op may take out of it (arithmetic, casts) is wrapped back, two's complement, as
//!   the narrow type would wrap;
//! - `uint64` in `i64` (the same bits): wrapping arithmetic and equality are exact there, and
//!   comparisons, `Max` and `Min` compare the bits offset by 2^63; division, other orderings
//!   and casts are refused;
//! - the narrow floats (`float16`, `bfloat16`, the 8- and 4-bit floats, `float8e8m0`) in
//!   `f32`, which holds each of their values exactly: ops that move, select or compare values
//!   are translated, and those that would have to round to the narrow type are refused.

use kiln_frontend::Tensor;
use kiln_ir::DType;

use crate::proto::tensor_proto::DataType;

/// A type kiln carries in a wider dtype.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Narrow {
    /// The ONNX type.
    pub onnx: DataType,
    /// Its width in bits.
    pub bits: u32,
    /// Two's complement (`int8`, `int16`, `int4`, `int2`).
    pub signed: bool,
    /// A floating-point type.
    pub float: bool,
}

impl Narrow {
    /// The carried type of an ONNX data type code, if it is one.
    pub(crate) fn of(code: i32) -> Option<Narrow> {
        let onnx = DataType::try_from(code).ok()?;
        let (bits, signed, float) = match onnx {
            DataType::Int8 => (8, true, false),
            DataType::Uint8 => (8, false, false),
            DataType::Int16 => (16, true, false),
            DataType::Uint16 => (16, false, false),
            DataType::Uint32 => (32, false, false),
            DataType::Uint64 => (64, false, false),
            DataType::Int4 => (4, true, false),
            DataType::Uint4 => (4, false, false),
            DataType::Int2 => (2, true, false),
            DataType::Uint2 => (2, false, false),
            DataType::Float16 | DataType::Bfloat16 => (16, true, true),
            DataType::Float8e4m3fn
            | DataType::Float8e4m3fnuz
            | DataType::Float8e5m2
            | DataType::Float8e5m2fnuz
            | DataType::Float8e8m0 => (8, true, true),
            DataType::Float4e2m1 => (4, true, true),
            _ => return None,
        };
        Some(Narrow { onnx, bits, signed, float })
    }

    /// The kiln dtype that carries it.
    pub(crate) fn carrier(self) -> DType {
        match (self.float, self.bits) {
            (true, _) => DType::F32,
            (false, b) if b < 32 => DType::I32,
            _ => DType::I64,
        }
    }

    /// Why `op` cannot be translated on operands of this type, if it cannot: `uint64` takes
    /// only wrapping arithmetic, comparisons, `Max`/`Min` and movement.
    pub(crate) fn refuses_operand(self, op: &str) -> Option<String> {
        // Orders compare the bits offset by 2^63 (`Cx::ordered`).
        let exact = matches!(
            op,
            "Add"
                | "Sub"
                | "Mul"
                | "Neg"
                | "Equal"
                | "Where"
                | "Identity"
                | "Less"
                | "Greater"
                | "LessOrEqual"
                | "GreaterOrEqual"
                | "Max"
                | "Min"
        ) || (!Self::op_may_overflow(op) && !Self::orders(op));
        (self.onnx == DataType::Uint64 && !exact).then(|| {
            format!("{op} on UINT64 (carried as i64: only wrapping arithmetic, comparisons and movement are exact)")
        })
    }

    /// Why `op` cannot produce a value of this type, if it cannot: a narrow float result of
    /// anything but movement and selection would have to be rounded to the narrow type.
    pub(crate) fn refuses_result(self, op: &str) -> Option<String> {
        (self.float && Self::op_may_overflow(op))
            .then(|| format!("{op} to {} (kiln carries it in f32 and does not round to it)", self.onnx.as_str_name()))
    }

    /// Ops whose result depends on the order of values.
    fn orders(op: &str) -> bool {
        matches!(op, "Max" | "Min" | "Clip" | "MaxPool" | "GlobalMaxPool" | "ReduceMax" | "ReduceMin")
    }

    /// `x` (of the carrier dtype, any value) wrapped into this type's range:
    /// `((x mod 2^bits) + 2^bits) mod 2^bits`, less `2^bits` above the signed maximum.
    pub(crate) fn wrap<'b>(self, x: Tensor<'b>) -> Tensor<'b> {
        // `i64` itself wraps modulo 2^64.
        if self.float || self.bits == 64 {
            return x;
        }
        let m = (1u64 << self.bits) as f64;
        // Integer division truncates, so the remainder has the dividend's sign.
        let r = x - (x / m) * m;
        let zero = r.full_like(0.0);
        let r = r.lt(zero).select(r + m, r);
        if self.signed {
            let half = r.full_like(m / 2.0);
            r.lt(half).select(r, r - m)
        } else {
            r
        }
    }

    /// Whether the op `op` can produce values outside its operands' range (and so needs a
    /// wrap). Movement, selection, comparison, `Max`/`Min`/`Clip` and max-pooling cannot.
    pub(crate) fn op_may_overflow(op: &str) -> bool {
        !matches!(
            op,
            "Reshape"
                | "Flatten"
                | "Transpose"
                | "Squeeze"
                | "Unsqueeze"
                | "Expand"
                | "Concat"
                | "Split"
                | "Slice"
                | "Pad"
                | "Gather"
                | "Identity"
                | "Dropout"
                | "Max"
                | "Min"
                | "Clip"
                | "Where"
                | "MaxPool"
                | "GlobalMaxPool"
                | "ReduceMax"
                | "ReduceMin"
                | "Constant"
                | "ConstantOfShape"
        )
    }
}
