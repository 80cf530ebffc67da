//! The reference interpreter: the one meaning of every op, written with ndarray.
//!
//! It is slow and meant to be obviously right; every transform and backend is checked
//! against it. Integer arithmetic wraps; integer division by zero and out-of-range indices
//! are errors, not undefined behaviour.

mod elem;
mod kernels;
mod value;

use std::collections::HashMap;

use ndarray::{ArrayD, IxDyn, Zip};
use thiserror::Error;

pub use elem::{Elem, Float, Num, Wide};
pub use value::{Value, ValueElem, ValueError};

use crate::dtype::DType;
use crate::graph::{Graph, Node, NodeId};
use crate::op::{BinaryOp, CmpOp, Distribution, Op, UnaryOp};
use crate::rng;
use crate::shape::TensorType;

/// Errors from running a graph on the interpreter.
#[derive(Clone, Debug, PartialEq, Error)]
pub enum InterpError {
    /// An input or parameter with no value.
    #[error("no value given for `{0}`")]
    MissingLeaf(String),
    /// A value for a name that is not an input or parameter.
    #[error("`{name}` is not an input or parameter of @{func} (it has: {known})")]
    UnknownLeaf {
        /// The name given.
        name: String,
        /// The function.
        func: String,
        /// The names it has.
        known: String,
    },
    /// A value of the wrong dtype or shape.
    #[error("`{name}` must be {expected}, got {got}")]
    WrongType {
        /// The leaf.
        name: String,
        /// Its declared type.
        expected: TensorType,
        /// The type given.
        got: TensorType,
    },
    /// An op failed on its values (integer division by zero, index out of range).
    #[error("{node} (`{op}`): {message}")]
    Eval {
        /// The node.
        node: NodeId,
        /// Its op.
        op: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// Checks that `feeds` names only leaves of `graph`, gives every leaf a value, and gives each
/// the leaf's exact type: the contract of every backend's `run`.
pub fn check_feeds(graph: &Graph, feeds: &HashMap<String, Value>) -> Result<(), InterpError> {
    for name in feeds.keys() {
        if graph.leaf(name).is_none() {
            let known: Vec<&str> = graph.leaves().filter_map(|(_, n)| n.op.leaf_name()).collect();
            return Err(InterpError::UnknownLeaf {
                name: name.clone(),
                func: graph.name().into(),
                known: known.join(", "),
            });
        }
    }
    for (_, node) in graph.leaves() {
        let name = node.op.leaf_name().unwrap_or_default();
        let v = feeds.get(name).ok_or_else(|| InterpError::MissingLeaf(name.into()))?;
        if v.ty() != node.ty {
            return Err(InterpError::WrongType { name: name.into(), expected: node.ty.clone(), got: v.ty() });
        }
    }
    Ok(())
}

/// Runs `graph` with values for all its leaves (by name) and returns its outputs in order.
pub fn run(graph: &Graph, feeds: &HashMap<String, Value>) -> Result<Vec<Value>, InterpError> {
    check_feeds(graph, feeds)?;
    let live = graph.live_mask();
    let mut uses = graph.use_counts();
    let mut vals: Vec<Option<Value>> = vec![None; graph.len()];
    for (id, node) in graph.nodes() {
        if let Some(name) = node.op.leaf_name() {
            let v = feeds.get(name).ok_or_else(|| InterpError::MissingLeaf(name.into()))?;
            if live[id.index()] {
                vals[id.index()] = Some(v.clone());
            }
            continue;
        }
        if !live[id.index()] {
            continue;
        }
        let args: Vec<&Value> = node
            .args
            .iter()
            .map(|a| vals[a.index()].as_ref().expect("operands are evaluated first and kept until their last use"))
            .collect();
        let v =
            eval_node(node, &args).map_err(|message| InterpError::Eval { node: id, op: node.op.name(), message })?;
        debug_assert_eq!(v.ty(), node.ty, "interpreter result type for {id}");
        vals[id.index()] = Some(v);
        for a in &node.args {
            uses[a.index()] -= 1;
            if uses[a.index()] == 0 {
                vals[a.index()] = None;
            }
        }
    }
    Ok(graph.outputs().iter().map(|o| vals[o.value.index()].clone().expect("outputs are live")).collect())
}

fn dtype_error(node: &Node, args: &[&Value]) -> String {
    let tys: Vec<String> = args.iter().map(|a| a.ty().to_string()).collect();
    format!("internal: operand types ({}) do not fit `{}`", tys.join(", "), node.op.name())
}

/// Matches the numeric variants of one value; `bool` is a type error.
macro_rules! num1 {
    ($v:expr, $err:expr, $a:ident => $body:expr) => {
        match $v {
            Value::F32($a) => Value::F32($body),
            Value::F64($a) => Value::F64($body),
            Value::I32($a) => Value::I32($body),
            Value::I64($a) => Value::I64($body),
            Value::Bool(_) => return Err($err),
        }
    };
}

/// Matches the float variants of one value.
macro_rules! float1 {
    ($v:expr, $err:expr, $a:ident => $body:expr) => {
        match $v {
            Value::F32($a) => Value::F32($body),
            Value::F64($a) => Value::F64($body),
            _ => return Err($err),
        }
    };
}

/// Matches two values of the same numeric variant.
macro_rules! num2 {
    ($v:expr, $w:expr, $err:expr, ($a:ident, $b:ident) => $body:expr) => {
        match ($v, $w) {
            (Value::F32($a), Value::F32($b)) => Value::F32($body),
            (Value::F64($a), Value::F64($b)) => Value::F64($body),
            (Value::I32($a), Value::I32($b)) => Value::I32($body),
            (Value::I64($a), Value::I64($b)) => Value::I64($body),
            _ => return Err($err),
        }
    };
}

/// Matches two values of the same variant, any dtype, producing a value of that variant.
macro_rules! any2 {
    ($v:expr, $w:expr, $err:expr, ($a:ident, $b:ident) => $body:expr) => {
        match ($v, $w) {
            (Value::F32($a), Value::F32($b)) => Value::F32($body),
            (Value::F64($a), Value::F64($b)) => Value::F64($body),
            (Value::I32($a), Value::I32($b)) => Value::I32($body),
            (Value::I64($a), Value::I64($b)) => Value::I64($body),
            (Value::Bool($a), Value::Bool($b)) => Value::Bool($body),
            _ => return Err($err),
        }
    };
}

/// Matches two values of the same variant, any dtype, producing a bool array.
macro_rules! eq2 {
    ($v:expr, $w:expr, $err:expr) => {
        Value::Bool(match ($v, $w) {
            (Value::F32(a), Value::F32(b)) => zip2(a, b, |x, y| x == y),
            (Value::F64(a), Value::F64(b)) => zip2(a, b, |x, y| x == y),
            (Value::I32(a), Value::I32(b)) => zip2(a, b, |x, y| x == y),
            (Value::I64(a), Value::I64(b)) => zip2(a, b, |x, y| x == y),
            (Value::Bool(a), Value::Bool(b)) => zip2(a, b, |x, y| x == y),
            _ => return Err($err),
        })
    };
}

fn div_checked<T: Num>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>, String> {
    let mut by_zero = false;
    let r = Zip::from(a).and(b).map_collect(|&x, &y| {
        x.div(y).unwrap_or_else(|| {
            by_zero = true;
            T::ZERO
        })
    });
    if by_zero { Err("integer division by zero".into()) } else { Ok(r) }
}

fn zip2<T: Elem, U: Elem>(a: &ArrayD<T>, b: &ArrayD<T>, f: impl Fn(T, T) -> U) -> ArrayD<U> {
    Zip::from(a).and(b).map_collect(|&x, &y| f(x, y))
}

fn cast_array<S: Elem, D: Elem>(a: &ArrayD<S>) -> ArrayD<D> {
    a.mapv(|v| D::from_wide(v.to_wide()))
}

impl Value {
    /// This value converted to `to` element by element, as the IR's `cast` op converts
    /// (floats to integers truncate toward zero and saturate, NaN gives 0; nonzero is `true`).
    pub fn cast(&self, to: DType) -> Value {
        cast(self, to)
    }
}

fn cast(v: &Value, to: DType) -> Value {
    fn to_dtype<S: Elem>(a: &ArrayD<S>, to: DType) -> Value {
        match to {
            DType::F32 => Value::F32(cast_array(a)),
            DType::F64 => Value::F64(cast_array(a)),
            DType::I32 => Value::I32(cast_array(a)),
            DType::I64 => Value::I64(cast_array(a)),
            DType::Bool => Value::Bool(cast_array(a)),
        }
    }
    match v {
        Value::F32(a) => to_dtype(a, to),
        Value::F64(a) => to_dtype(a, to),
        Value::I32(a) => to_dtype(a, to),
        Value::I64(a) => to_dtype(a, to),
        Value::Bool(a) => to_dtype(a, to),
    }
}

/// The indices held by an integer value, checked non-negative.
fn indices(v: &Value) -> Result<Vec<usize>, String> {
    let as_index = |x: i64| usize::try_from(x).map_err(|_| format!("negative index {x}"));
    match v {
        Value::I32(a) => a.iter().map(|&x| as_index(i64::from(x))).collect(),
        Value::I64(a) => a.iter().map(|&x| as_index(x)).collect(),
        _ => Err(format!("internal: indices must be integers, got {}", v.ty())),
    }
}

fn concat(args: &[&Value], axis: usize, err: String) -> Result<Value, String> {
    macro_rules! parts {
        ($variant:ident) => {{
            let mut parts = Vec::with_capacity(args.len());
            for a in args {
                match a {
                    Value::$variant(x) => parts.push(x),
                    _ => return Err(err),
                }
            }
            Value::$variant(kernels::concat(&parts, axis)?)
        }};
    }
    Ok(match args[0] {
        Value::F32(_) => parts!(F32),
        Value::F64(_) => parts!(F64),
        Value::I32(_) => parts!(I32),
        Value::I64(_) => parts!(I64),
        Value::Bool(_) => parts!(Bool),
    })
}

fn rng_value(ty: &TensorType, seed: i64, dist: Distribution, stream: u32) -> Result<Value, String> {
    let key = rng::key(seed as u64, u64::from(stream));
    let n = ty.numel();
    let shape = IxDyn(ty.dims());
    let f64s = |f: &dyn Fn(u64) -> f64| -> Vec<f64> { (0..n as u64).map(f).collect() };
    Ok(match (ty.dtype, dist) {
        (DType::F32, Distribution::Uniform) => Value::F32(
            ArrayD::from_shape_vec(shape, (0..n as u64).map(|i| rng::uniform_f32(rng::bits(key, i))).collect())
                .map_err(|e| e.to_string())?,
        ),
        (DType::F64, Distribution::Uniform) => Value::F64(
            ArrayD::from_shape_vec(shape, f64s(&|i| rng::uniform_f64(rng::bits(key, i)))).map_err(|e| e.to_string())?,
        ),
        (DType::F32, Distribution::Normal) => Value::F32(
            ArrayD::from_shape_vec(shape, f64s(&|i| rng::normal_f64(key, i)).into_iter().map(|x| x as f32).collect())
                .map_err(|e| e.to_string())?,
        ),
        (DType::F64, Distribution::Normal) => {
            Value::F64(ArrayD::from_shape_vec(shape, f64s(&|i| rng::normal_f64(key, i))).map_err(|e| e.to_string())?)
        }
        (d, _) => return Err(format!("internal: rng cannot draw {d}")),
    })
}

/// Evaluates one non-leaf node on its operand values: the meaning of `node.op`. The operand
/// values must have the types the node's type rule accepts (the graph verifier guarantees it);
/// errors are messages such as integer division by zero.
pub fn eval_node(node: &Node, args: &[&Value]) -> Result<Value, String> {
    let err = || dtype_error(node, args);
    let dims = node.ty.dims();
    let v = match &node.op {
        Op::Input { .. } | Op::Param { .. } => {
            return Err("internal: leaves are fed, not evaluated".into());
        }
        Op::Const { value } => Value::splat(&node.ty, value.0),
        Op::Iota { axis } => match node.ty.dtype {
            DType::F32 => Value::F32(kernels::iota(dims, *axis)?),
            DType::F64 => Value::F64(kernels::iota(dims, *axis)?),
            DType::I32 => Value::I32(kernels::iota(dims, *axis)?),
            DType::I64 => Value::I64(kernels::iota(dims, *axis)?),
            DType::Bool => return Err(err()),
        },
        Op::Rng { dist, stream } => {
            let seed = args[0].as_i64_scalar().ok_or_else(err)?;
            rng_value(&node.ty, seed, *dist, *stream)?
        }
        Op::Unary(u) => match u {
            UnaryOp::Neg => num1!(args[0], err(), a => a.mapv(Num::neg)),
            UnaryOp::Abs => num1!(args[0], err(), a => a.mapv(Num::abs)),
            UnaryOp::Exp => float1!(args[0], err(), a => a.mapv(Float::exp)),
            UnaryOp::Log => float1!(args[0], err(), a => a.mapv(Float::ln)),
            UnaryOp::Sqrt => float1!(args[0], err(), a => a.mapv(Float::sqrt)),
            UnaryOp::Recip => float1!(args[0], err(), a => a.mapv(|x| 1.0 / x)),
            UnaryOp::Sin => float1!(args[0], err(), a => a.mapv(Float::sin)),
            UnaryOp::Cos => float1!(args[0], err(), a => a.mapv(Float::cos)),
            UnaryOp::Tanh => float1!(args[0], err(), a => a.mapv(Float::tanh)),
        },
        Op::StopGradient => args[0].clone(),
        Op::Binary(b) => match b {
            BinaryOp::Add => num2!(args[0], args[1], err(), (a, b) => zip2(a, b, Num::add)),
            BinaryOp::Sub => num2!(args[0], args[1], err(), (a, b) => zip2(a, b, Num::sub)),
            BinaryOp::Mul => num2!(args[0], args[1], err(), (a, b) => zip2(a, b, Num::mul)),
            BinaryOp::Div => num2!(args[0], args[1], err(), (a, b) => div_checked(a, b)?),
            BinaryOp::Max => num2!(args[0], args[1], err(), (a, b) => zip2(a, b, Num::max)),
            BinaryOp::Min => num2!(args[0], args[1], err(), (a, b) => zip2(a, b, Num::min)),
            BinaryOp::Pow => match (args[0], args[1]) {
                (Value::F32(a), Value::F32(b)) => Value::F32(zip2(a, b, Float::powf)),
                (Value::F64(a), Value::F64(b)) => Value::F64(zip2(a, b, Float::powf)),
                _ => return Err(err()),
            },
        },
        Op::Compare(c) => match c {
            CmpOp::Lt => Value::Bool(match (args[0], args[1]) {
                (Value::F32(a), Value::F32(b)) => zip2(a, b, |x, y| x < y),
                (Value::F64(a), Value::F64(b)) => zip2(a, b, |x, y| x < y),
                (Value::I32(a), Value::I32(b)) => zip2(a, b, |x, y| x < y),
                (Value::I64(a), Value::I64(b)) => zip2(a, b, |x, y| x < y),
                _ => return Err(err()),
            }),
            CmpOp::Eq => eq2!(args[0], args[1], err()),
        },
        Op::Select => {
            let Value::Bool(c) = args[0] else {
                return Err(err());
            };
            any2!(args[1], args[2], err(), (a, b) => kernels::select(c, a, b)?)
        }
        Op::Cast => cast(args[0], node.ty.dtype),
        Op::Reduce { op, axes } => num1!(args[0], err(), a => kernels::reduce(a, *op, axes)?),
        Op::Reshape => crate::map_value!(args[0], a => kernels::reshape(a, dims)?),
        Op::Permute { perm } => crate::map_value!(args[0], a => kernels::permute(a, perm)?),
        Op::Broadcast { dims: bd } => {
            crate::map_value!(args[0], a => kernels::broadcast(a, bd, dims)?)
        }
        Op::Slice { start, stop, step } => {
            crate::map_value!(args[0], a => kernels::slice(a, start, stop, step)?)
        }
        Op::Pad { low, high, value } => {
            crate::map_value!(args[0], a => kernels::pad(a, low, high, Elem::from_literal(value.0))?)
        }
        Op::Concat { axis } => concat(args, *axis, err())?,
        Op::Matmul => num2!(args[0], args[1], err(), (a, b) => kernels::matmul(a, b)?),
        Op::Conv2d(c) => num2!(args[0], args[1], err(), (x, w) => kernels::conv2d(x, w, dims, *c)?),
        Op::Conv2dGradInput(c) => {
            num2!(args[0], args[1], err(), (gy, w) => kernels::conv2d_grad_input(gy, w, dims, *c)?)
        }
        Op::Conv2dGradWeight(c) => {
            num2!(args[0], args[1], err(), (x, gy) => kernels::conv2d_grad_weight(x, gy, dims, *c)?)
        }
        Op::Gather { axis } => {
            let idx = indices(args[1])?;
            let idx_dims = args[1].shape();
            crate::map_value!(args[0], a => kernels::gather(a, &idx, idx_dims, *axis)?)
        }
        Op::ScatterAdd { axis } => {
            let idx = indices(args[1])?;
            num1!(args[0], err(), a => kernels::scatter_add(a, &idx, dims, *axis)?)
        }
    };
    Ok(v)
}

/// Runs `graph` with the given inputs, initializing every parameter not in `feeds` from `seed`
/// (see [`crate::init`]). A convenience over [`run`].
pub fn run_with_init(graph: &Graph, feeds: &HashMap<String, Value>, seed: u64) -> Result<Vec<Value>, InterpError> {
    let mut all = crate::init::init_params(graph, seed);
    all.retain(|k, _| !feeds.contains_key(k));
    all.extend(feeds.iter().map(|(k, v)| (k.clone(), v.clone())));
    run(graph, &all)
}
