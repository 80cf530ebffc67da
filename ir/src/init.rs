//! Parameter initialization: the meaning of a `param`'s initializer.
//!
//! Parameter `name` of a graph initialized with seed `s` draws from the counter-based generator
//! of [`crate::rng`] with key `(s, fnv1a(name))`, so its values depend on its name, type,
//! initializer and the seed only — not on declaration order or on other parameters.

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn};

use crate::dtype::DType;
use crate::graph::Graph;
use crate::interp::Value;
use crate::op::{Init, Op};
use crate::rng;
use crate::shape::TensorType;

/// The initial value of parameter `name` of type `ty`.
pub fn materialize(init: Init, ty: &TensorType, name: &str, seed: u64) -> Value {
    let key = rng::key(seed, rng::name_stream(name));
    let n = ty.numel() as u64;
    let data: Vec<f64> = match init {
        Init::Zeros => return Value::splat(ty, 0.0),
        Init::Ones => return Value::splat(ty, 1.0),
        Init::Uniform { low, high } => {
            (0..n).map(|i| low.0 + (high.0 - low.0) * rng::uniform_f64(rng::bits(key, i))).collect()
        }
        Init::Normal { mean, std } => (0..n).map(|i| mean.0 + std.0 * rng::normal_f64(key, i)).collect(),
    };
    let shape = IxDyn(ty.dims());
    // The lengths agree by construction: `data` has one element per element of `ty`.
    match ty.dtype {
        DType::F32 => Value::F32(
            ArrayD::from_shape_vec(shape, data.iter().map(|&x| x as f32).collect()).expect("one element per position"),
        ),
        DType::F64 => Value::F64(ArrayD::from_shape_vec(shape, data).expect("one element per position")),
        DType::I32 | DType::I64 | DType::Bool => Value::splat(ty, 0.0),
    }
}

/// Initial values of every parameter of `graph`, by name.
pub fn init_params(graph: &Graph, seed: u64) -> HashMap<String, Value> {
    graph
        .params()
        .filter_map(|(_, n)| match &n.op {
            Op::Param { name, init } => Some((name.clone(), materialize(*init, &n.ty, name, seed))),
            _ => None,
        })
        .collect()
}
