//! Tensors as raw bytes: the row-major, host-endian layout that model libraries embed and
//! device buffers hold (`bool` as one byte, 0 or 1).

use kiln_ir::{DType, TensorType, Value};
use ndarray::{ArrayD, IxDyn};

/// The bytes of `v` in row-major order, in the host's byte order.
pub fn value_bytes(v: &Value) -> Vec<u8> {
    macro_rules! ne {
        ($a:expr) => {
            $a.iter().flat_map(|x| x.to_ne_bytes()).collect()
        };
    }
    match v {
        Value::F32(a) => ne!(a),
        Value::F64(a) => ne!(a),
        Value::I32(a) => ne!(a),
        Value::I64(a) => ne!(a),
        Value::Bool(a) => a.iter().map(|b| u8::from(*b)).collect(),
    }
}

/// The value of type `ty` whose row-major bytes are `bytes` (exactly `ty.size_bytes()` long;
/// a `bool` byte is true when it is not 0).
pub fn value_from_bytes(ty: &TensorType, bytes: &[u8]) -> Value {
    let dims = IxDyn(ty.dims());
    macro_rules! from {
        ($variant:ident, $t:ty) => {{
            let data: Vec<$t> = bytes
                .chunks_exact(std::mem::size_of::<$t>())
                // A chunk of exactly the element's size: the conversion cannot fail.
                .map(|c| <$t>::from_ne_bytes(c.try_into().expect("chunk of the element size")))
                .collect();
            Value::$variant(ArrayD::from_shape_vec(dims, data).expect("as many elements as the type"))
        }};
    }
    assert_eq!(bytes.len(), ty.size_bytes(), "{ty} needs {} bytes", ty.size_bytes());
    match ty.dtype {
        DType::F32 => from!(F32, f32),
        DType::F64 => from!(F64, f64),
        DType::I32 => from!(I32, i32),
        DType::I64 => from!(I64, i64),
        DType::Bool => {
            let data = bytes.iter().map(|b| *b != 0).collect();
            Value::Bool(ArrayD::from_shape_vec(dims, data).expect("as many elements as the type"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_round_trip_every_dtype() {
        let d = IxDyn(&[3]);
        let values = [
            Value::F32(ArrayD::from_shape_vec(d.clone(), vec![1.5, -0.0, f32::INFINITY]).unwrap()),
            Value::F64(ArrayD::from_shape_vec(d.clone(), vec![1e-300, -2.0, 3.25]).unwrap()),
            Value::I32(ArrayD::from_shape_vec(d.clone(), vec![-7, 0, i32::MAX]).unwrap()),
            Value::I64(ArrayD::from_shape_vec(d.clone(), vec![-1, 9, i64::MIN]).unwrap()),
            Value::Bool(ArrayD::from_shape_vec(d, vec![true, false, true]).unwrap()),
        ];
        for v in values {
            let ty = v.ty();
            let b = value_bytes(&v);
            assert_eq!(b.len(), ty.size_bytes());
            assert_eq!(value_from_bytes(&ty, &b), v, "{ty}");
        }
    }
}
