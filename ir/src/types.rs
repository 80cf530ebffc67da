//! Type rules: for every op, the result type as a function of the operand types and attributes.
//!
//! This is the one place that decides whether a node is well typed. The graph builder calls
//! [`infer`] when a node is added, and the verifier calls it again on every node.

use thiserror::Error;

use crate::dtype::DType;
use crate::op::{BinaryOp, CmpOp, ConvAttrs, Literal, Op, ReduceOp, UnaryOp};
use crate::shape::{Shape, TensorType};

/// A node whose operands or attributes break its op's type rule.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("`{op}`: {message}")]
pub struct TypeError {
    /// The op's text name.
    pub op: &'static str,
    /// What is wrong, naming the types involved.
    pub message: String,
}

/// The largest extent an axis may have, and the largest integer attribute (slice bounds and
/// steps, padding, convolution strides, padding, dilation and groups, axes): 2^48. Every such
/// value then fits an `i64`/`isize` with room for sums and differences, so no backend can
/// read one as negative, and no dense tensor that large could be allocated anyway.
pub const MAX_EXTENT: usize = 1 << 48;

/// The largest rank a tensor may have.
pub const MAX_RANK: usize = 16;

fn fail<T>(op: &Op, message: impl Into<String>) -> Result<T, TypeError> {
    Err(TypeError { op: op.name(), message: message.into() })
}

fn arity(op: &Op, args: &[&TensorType], n: usize) -> Result<(), TypeError> {
    if args.len() != n {
        return fail(op, format!("expects {n} operand(s), got {}", args.len()));
    }
    Ok(())
}

fn need_declared<'a>(op: &Op, declared: Option<&'a TensorType>) -> Result<&'a TensorType, TypeError> {
    declared.ok_or_else(|| TypeError { op: op.name(), message: "the result type must be declared".into() })
}

fn same_types(op: &Op, a: &TensorType, b: &TensorType) -> Result<(), TypeError> {
    if a != b {
        return fail(op, format!("operand types differ: {a} vs {b}"));
    }
    Ok(())
}

fn check_axes(op: &Op, what: &str, axes: &[usize], rank: usize) -> Result<(), TypeError> {
    for w in axes.windows(2) {
        if w[0] >= w[1] {
            return fail(op, format!("{what} {axes:?} must be strictly increasing"));
        }
    }
    if let Some(&a) = axes.iter().find(|&&a| a >= rank) {
        return fail(op, format!("{what} {axes:?}: axis {a} out of range for rank {rank}"));
    }
    Ok(())
}

/// Output extent of a convolution along one spatial axis, or `None` if the window does not fit.
pub fn conv_out_extent(input: usize, kernel: usize, stride: usize, pad: usize, dil: usize) -> Option<usize> {
    let span = dil.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let padded = input.checked_add(pad.checked_mul(2)?)?;
    if stride == 0 || padded < span {
        return None;
    }
    Some((padded - span) / stride + 1)
}

/// The result shape of `conv2d(x, w)`, checking every constraint of the op.
fn conv_shape(op: &Op, x: &TensorType, w: &TensorType, c: &ConvAttrs) -> Result<Shape, TypeError> {
    if x.rank() != 4 || w.rank() != 4 {
        let input = match c.layout {
            crate::ConvLayout::Nchw => "[N,C,H,W]",
            crate::ConvLayout::Nhwc => "[N,H,W,C]",
        };
        return fail(op, format!("expects input {input} and weight [O,C/groups,KH,KW], got {x} and {w}"));
    }
    if !x.dtype.is_float() || x.dtype != w.dtype {
        return fail(op, format!("expects float input and weight of one dtype, got {x} and {w}"));
    }
    let (xd, wd) = (c.layout.nchw(x.dims()), w.dims());
    let g = c.groups;
    if g == 0 || xd[1] % g != 0 || wd[0] % g != 0 || wd[1] * g != xd[1] {
        return fail(op, format!("channels do not match groups={g}: input {x} has {} channels, weight {w}", xd[1]));
    }
    if c.stride.contains(&0) || c.dilation.contains(&0) {
        return fail(op, "stride and dilation must be at least 1");
    }
    let mut out = [xd[0], wd[0], 0, 0];
    for i in 0..2 {
        match conv_out_extent(xd[2 + i], wd[2 + i], c.stride[i], c.padding[i], c.dilation[i]) {
            Some(e) if e > 0 => out[2 + i] = e,
            _ => {
                return fail(op, format!("kernel {w} does not fit input {x} with padding {:?}", c.padding));
            }
        }
    }
    Ok(Shape::new(c.layout.arrange(out).to_vec()))
}

/// The result type of `op` applied to operands of types `args`.
///
/// `declared` is the type written on the node. Ops whose type is an attribute
/// ([`Op::declares_type`]) need it; for the others it is optional and, when given, must equal
/// the inferred type.
pub fn infer(op: &Op, args: &[&TensorType], declared: Option<&TensorType>) -> Result<TensorType, TypeError> {
    let ty = infer_inner(op, args, declared)?;
    check_limits(op, &ty).map_err(|e| TypeError { message: format!("the result: {}", e.message), ..e })?;
    if let Some(d) = declared
        && *d != ty
    {
        return fail(op, format!("declared type {d} but the operands give {ty}"));
    }
    Ok(ty)
}

/// Every integer attribute of `op`, named for error messages.
fn integer_attributes(op: &Op) -> Vec<(&'static str, usize)> {
    let named = |name: &'static str, xs: &[usize]| xs.iter().map(move |x| (name, *x)).collect::<Vec<_>>();
    match op {
        Op::Slice { start, stop, step } => [named("start", start), named("stop", stop), named("step", step)].concat(),
        Op::Pad { low, high, .. } => [named("low", low), named("high", high)].concat(),
        Op::Reduce { axes, .. } => named("axes", axes),
        Op::Permute { perm } => named("perm", perm),
        Op::Broadcast { dims } => named("dims", dims),
        Op::Iota { axis } | Op::Concat { axis } | Op::Gather { axis } | Op::ScatterAdd { axis } => {
            named("axis", &[*axis])
        }
        Op::Conv2d(c) | Op::Conv2dGradInput(c) | Op::Conv2dGradWeight(c) => [
            named("stride", &c.stride),
            named("padding", &c.padding),
            named("dilation", &c.dilation),
            named("groups", &[c.groups]),
        ]
        .concat(),
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const { .. }
        | Op::Rng { .. }
        | Op::Unary(_)
        | Op::StopGradient
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast
        | Op::Reshape
        | Op::Matmul => Vec::new(),
    }
}

/// Checks `ty` against [`MAX_RANK`], [`MAX_EXTENT`] and the addressable size.
fn check_limits(op: &Op, ty: &TensorType) -> Result<(), TypeError> {
    if ty.rank() > MAX_RANK {
        return fail(op, format!("{ty} has rank {}, more than the limit {MAX_RANK}", ty.rank()));
    }
    if let Some(d) = ty.dims().iter().find(|d| **d > MAX_EXTENT) {
        return fail(op, format!("{ty} has an extent {d}, more than the limit 2^48"));
    }
    if ty.size_bytes_checked().is_none() {
        return fail(op, format!("{ty} is too large to address"));
    }
    Ok(())
}

fn infer_inner(op: &Op, args: &[&TensorType], declared: Option<&TensorType>) -> Result<TensorType, TypeError> {
    if let Some(d) = declared {
        check_limits(op, d)?;
    }
    if let Some((name, v)) = integer_attributes(op).into_iter().find(|(_, v)| *v > MAX_EXTENT) {
        return fail(op, format!("attribute {name} = {v} is more than the limit 2^48"));
    }
    match op {
        Op::Input { name } | Op::Param { name, .. } => infer_leaf(op, args, declared, name),
        Op::Const { value } => infer_const(op, args, declared, value),
        Op::Iota { axis } => infer_iota(op, args, declared, axis),
        Op::Rng { .. } => infer_rng(op, args, declared),
        Op::Unary(u) => infer_unary(op, args, u),
        Op::StopGradient => {
            arity(op, args, 1)?;
            Ok(args[0].clone())
        }
        Op::Binary(b) => infer_binary(op, args, b),
        Op::Compare(c) => infer_compare(op, args, c),
        Op::Select => infer_select(op, args),
        Op::Cast => infer_cast(op, args, declared),
        Op::Reduce { op: r, axes } => infer_reduce(op, args, r, axes),
        Op::Reshape => infer_reshape(op, args, declared),
        Op::Permute { perm } => infer_permute(op, args, perm),
        Op::Broadcast { dims } => infer_broadcast(op, args, declared, dims),
        Op::Slice { start, stop, step } => infer_slice(op, args, start, stop, step),
        Op::Pad { low, high, value } => infer_pad(op, args, low, high, value),
        Op::Concat { axis } => infer_concat(op, args, axis),
        Op::Matmul => infer_matmul(op, args),
        Op::Conv2d(c) => {
            arity(op, args, 2)?;
            let shape = conv_shape(op, args[0], args[1], c)?;
            Ok(TensorType::new(args[0].dtype, shape))
        }
        Op::Conv2dGradInput(c) => infer_conv2d_grad_input(op, args, declared, c),
        Op::Conv2dGradWeight(c) => infer_conv2d_grad_weight(op, args, declared, c),
        Op::Gather { axis } => infer_gather(op, args, axis),
        Op::ScatterAdd { axis } => infer_scatter_add(op, args, declared, axis),
    }
}

/// The type rule of `const`.
fn infer_const(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    value: &Literal,
) -> Result<TensorType, TypeError> {
    arity(op, args, 0)?;
    let d = need_declared(op, declared)?;
    if !value.0.is_finite() && !d.dtype.is_float() {
        return fail(op, format!("{} cannot be stored in {}", value, d.dtype));
    }
    if d.dtype == DType::Bool && value.0 != 0.0 && value.0 != 1.0 {
        return fail(op, format!("bool constants are 0 or 1, got {value}"));
    }
    Ok(d.clone())
}

/// The type rule of `iota`.
fn infer_iota(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    axis: &usize,
) -> Result<TensorType, TypeError> {
    arity(op, args, 0)?;
    let d = need_declared(op, declared)?;
    if !d.dtype.is_numeric() || *axis >= d.rank() {
        return fail(op, format!("axis {axis} of {d}: needs a numeric type with that axis"));
    }
    Ok(d.clone())
}

/// The type rule of `rng`.
fn infer_rng(op: &Op, args: &[&TensorType], declared: Option<&TensorType>) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let seed = args[0];
    if *seed != TensorType::new(DType::I64, Shape::scalar()) {
        return fail(op, format!("the seed must be i64[], got {seed}"));
    }
    let d = need_declared(op, declared)?;
    if !d.dtype.is_float() {
        return fail(op, format!("draws floats, not {d}"));
    }
    Ok(d.clone())
}

/// The type rule of the unary ops.
fn infer_unary(op: &Op, args: &[&TensorType], u: &UnaryOp) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let a = args[0];
    let ok = a.dtype.is_float() || (u.accepts_int() && a.dtype.is_int());
    if !ok {
        return fail(op, format!("not defined on {a}"));
    }
    Ok(a.clone())
}

/// The type rule of the comparisons.
fn infer_compare(op: &Op, args: &[&TensorType], c: &CmpOp) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    same_types(op, args[0], args[1])?;
    if *c == crate::op::CmpOp::Lt && !args[0].dtype.is_numeric() {
        return fail(op, format!("not defined on {}", args[0]));
    }
    Ok(TensorType::new(DType::Bool, args[0].shape.clone()))
}

/// The type rule of `select`.
fn infer_select(op: &Op, args: &[&TensorType]) -> Result<TensorType, TypeError> {
    arity(op, args, 3)?;
    let (c, a, b) = (args[0], args[1], args[2]);
    same_types(op, a, b)?;
    if c.dtype != DType::Bool || c.shape != a.shape {
        return fail(op, format!("condition must be bool with the shape of the values, got {c} for {a}"));
    }
    Ok(a.clone())
}

/// The type rule of `cast`.
fn infer_cast(op: &Op, args: &[&TensorType], declared: Option<&TensorType>) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let d = need_declared(op, declared)?;
    if d.shape != args[0].shape {
        return fail(op, format!("changes the dtype only: {} to {d}", args[0]));
    }
    Ok(d.clone())
}

/// The type rule of the reductions.
fn infer_reduce(op: &Op, args: &[&TensorType], r: &ReduceOp, axes: &[usize]) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let a = args[0];
    if !a.dtype.is_numeric() {
        return fail(op, format!("not defined on {a}"));
    }
    let _ = r;
    check_axes(op, "axes", axes, a.rank())?;
    let dims: Vec<usize> = (0..a.rank()).filter(|i| !axes.contains(i)).map(|i| a.dims()[i]).collect();
    Ok(TensorType::new(a.dtype, dims))
}

/// The type rule of `reshape`.
fn infer_reshape(op: &Op, args: &[&TensorType], declared: Option<&TensorType>) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let d = need_declared(op, declared)?;
    let a = args[0];
    if d.dtype != a.dtype || d.numel() != a.numel() {
        return fail(op, format!("cannot reshape {a} to {d}"));
    }
    Ok(d.clone())
}

/// The type rule of `permute`.
fn infer_permute(op: &Op, args: &[&TensorType], perm: &[usize]) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let a = args[0];
    let mut seen = vec![false; a.rank()];
    let valid = perm.len() == a.rank() && perm.iter().all(|&p| p < a.rank() && !std::mem::replace(&mut seen[p], true));
    if !valid {
        return fail(op, format!("{perm:?} is not a permutation of the axes of {a}"));
    }
    Ok(TensorType::new(a.dtype, perm.iter().map(|&p| a.dims()[p]).collect::<Vec<_>>()))
}

/// The type rule of `conv2d_grad_input`.
fn infer_conv2d_grad_input(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    c: &ConvAttrs,
) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    let (gy, w) = (args[0], args[1]);
    let x = need_declared(op, declared)?;
    let y = conv_shape(op, x, w, c)?;
    if gy.shape != y || gy.dtype != x.dtype {
        return fail(op, format!("conv2d of {x} with {w} gives {y}, but the gradient is {gy}"));
    }
    Ok(x.clone())
}

/// The type rule of `conv2d_grad_weight`.
fn infer_conv2d_grad_weight(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    c: &ConvAttrs,
) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    let (x, gy) = (args[0], args[1]);
    let w = need_declared(op, declared)?;
    let y = conv_shape(op, x, w, c)?;
    if gy.shape != y || gy.dtype != x.dtype {
        return fail(op, format!("conv2d of {x} with {w} gives {y}, but the gradient is {gy}"));
    }
    Ok(w.clone())
}

/// The type rule of `gather`.
fn infer_gather(op: &Op, args: &[&TensorType], axis: &usize) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    let (x, idx) = (args[0], args[1]);
    if !idx.dtype.is_int() || *axis >= x.rank() {
        return fail(op, format!("expects integer indices and an axis of the data: {x} at {idx}, axis {axis}"));
    }
    let mut dims = x.dims()[..*axis].to_vec();
    dims.extend_from_slice(idx.dims());
    dims.extend_from_slice(&x.dims()[axis + 1..]);
    Ok(TensorType::new(x.dtype, dims))
}

/// The type rule of `input` and `param`.
fn infer_leaf(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    name: &str,
) -> Result<TensorType, TypeError> {
    arity(op, args, 0)?;
    if !is_identifier(name) {
        return fail(
            op,
            format!("`{name}` is not a valid name (letters, digits, `_`, `.`; not starting with a digit)"),
        );
    }
    let d = need_declared(op, declared)?;
    if matches!(op, Op::Param { .. }) && !d.dtype.is_float() {
        return fail(op, format!("parameters must be float, got {d}"));
    }
    Ok(d.clone())
}

/// The type rule of the binary ops.
fn infer_binary(op: &Op, args: &[&TensorType], b: &BinaryOp) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    same_types(op, args[0], args[1])?;
    let a = args[0];
    use crate::op::BinaryOp;
    let ok = match b {
        BinaryOp::Pow => a.dtype.is_float(),
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Max | BinaryOp::Min => {
            a.dtype.is_numeric()
        }
    };
    if !ok {
        return fail(op, format!("not defined on {a}"));
    }
    Ok(a.clone())
}

/// The type rule of `broadcast`.
fn infer_broadcast(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    dims: &[usize],
) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let d = need_declared(op, declared)?;
    let a = args[0];
    if d.dtype != a.dtype || dims.len() != a.rank() {
        return fail(op, format!("dims {dims:?} must name one result axis per operand axis: {a} to {d}"));
    }
    check_axes(op, "dims", dims, d.rank())?;
    for (i, &r) in dims.iter().enumerate() {
        let (from, to) = (a.dims()[i], d.dims()[r]);
        if from != to && from != 1 {
            return fail(
                op,
                format!("cannot broadcast {a} to {d}: axis {i} has extent {from}, result axis {r} has {to}"),
            );
        }
    }
    Ok(d.clone())
}

/// The type rule of `slice`.
fn infer_slice(
    op: &Op,
    args: &[&TensorType],
    start: &[usize],
    stop: &[usize],
    step: &[usize],
) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let a = args[0];
    let r = a.rank();
    if start.len() != r || stop.len() != r || step.len() != r {
        return fail(op, format!("start/stop/step need {r} entries each for {a}"));
    }
    let mut out = Vec::with_capacity(r);
    for i in 0..r {
        if step[i] == 0 || start[i] > stop[i] || stop[i] > a.dims()[i] {
            return fail(
                op,
                format!("axis {i}: [{}:{}:{}] is outside extent {} of {a}", start[i], stop[i], step[i], a.dims()[i]),
            );
        }
        out.push((stop[i] - start[i]).div_ceil(step[i]));
    }
    Ok(TensorType::new(a.dtype, out))
}

/// The type rule of `pad`.
fn infer_pad(
    op: &Op,
    args: &[&TensorType],
    low: &[usize],
    high: &[usize],
    value: &Literal,
) -> Result<TensorType, TypeError> {
    arity(op, args, 1)?;
    let a = args[0];
    if low.len() != a.rank() || high.len() != a.rank() {
        return fail(op, format!("low/high need {} entries each for {a}", a.rank()));
    }
    if !value.0.is_finite() && !a.dtype.is_float() {
        return fail(op, format!("{value} cannot be stored in {}", a.dtype));
    }
    let out: Option<Vec<usize>> =
        (0..a.rank()).map(|i| low[i].checked_add(a.dims()[i])?.checked_add(high[i])).collect();
    match out {
        Some(out) => Ok(TensorType::new(a.dtype, out)),
        None => fail(op, format!("padding {low:?}/{high:?} of {a} overflows")),
    }
}

/// The type rule of `concat`.
fn infer_concat(op: &Op, args: &[&TensorType], axis: &usize) -> Result<TensorType, TypeError> {
    if args.is_empty() {
        return fail(op, "expects at least one operand");
    }
    let first = args[0];
    if *axis >= first.rank() {
        return fail(op, format!("axis {axis} out of range for {first}"));
    }
    let mut total = 0;
    for a in args {
        let same_rest = a.rank() == first.rank() && (0..a.rank()).all(|i| i == *axis || a.dims()[i] == first.dims()[i]);
        if a.dtype != first.dtype || !same_rest {
            return fail(op, format!("operands must agree except along axis {axis}: {first} vs {a}"));
        }
        total = match usize::checked_add(total, a.dims()[*axis]) {
            Some(t) => t,
            None => return fail(op, "the result extent overflows"),
        };
    }
    let mut dims = first.dims().to_vec();
    dims[*axis] = total;
    Ok(TensorType::new(first.dtype, dims))
}

/// The type rule of `matmul`.
fn infer_matmul(op: &Op, args: &[&TensorType]) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    let (a, b) = (args[0], args[1]);
    let r = a.rank();
    let ok = r >= 2
        && b.rank() == r
        && a.dtype == b.dtype
        && a.dtype.is_numeric()
        && a.dims()[..r - 2] == b.dims()[..r - 2]
        && a.dims()[r - 1] == b.dims()[r - 2];
    if !ok {
        return fail(op, format!("expects [...,m,k] x [...,k,n] with equal batch axes and dtype, got {a} x {b}"));
    }
    let mut dims = a.dims()[..r - 1].to_vec();
    dims.push(b.dims()[r - 1]);
    Ok(TensorType::new(a.dtype, dims))
}

/// The type rule of `scatter_add`.
fn infer_scatter_add(
    op: &Op,
    args: &[&TensorType],
    declared: Option<&TensorType>,
    axis: &usize,
) -> Result<TensorType, TypeError> {
    arity(op, args, 2)?;
    let (upd, idx) = (args[0], args[1]);
    let out = need_declared(op, declared)?;
    if !idx.dtype.is_int() || *axis >= out.rank() || !out.dtype.is_numeric() {
        return fail(op, format!("expects integer indices and an axis of the result: {out} at {idx}, axis {axis}"));
    }
    let mut dims = out.dims()[..*axis].to_vec();
    dims.extend_from_slice(idx.dims());
    dims.extend_from_slice(&out.dims()[axis + 1..]);
    let expected = TensorType::new(out.dtype, dims);
    if *upd != expected {
        return fail(op, format!("updates must be {expected} for result {out} and indices {idx}, got {upd}"));
    }
    Ok(out.clone())
}

/// True if `s` is a valid leaf or function name: ASCII letters, digits, `_` and `.`, not
/// starting with a digit or `.`.
pub fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
}
