//! One vector-Jacobian product rule per op. Each rule receives the adjoint `g` of the node's
//! result and emits, for every operand that needs one, the adjoint contribution as ordinary IR
//! (so the rules can themselves be differentiated). `docs/autodiff.md` lists them in one line
//! each.

use kiln_ir::{BinaryOp, DType, Node, NodeId, Op, ReduceOp, TensorType, UnaryOp};

use super::emit::{Emit, R};

/// How an operand position passes gradients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// Gradients flow through it.
    Diff,
    /// A discrete operand (mask, index, seed) or a `stop_gradient`: no gradient, by definition.
    Discrete,
    /// The operand is not float, so a gradient would have to pass through integers or booleans.
    Blocked,
}

/// How operand `i` of `node` passes gradients, given the operand's dtype.
pub fn edge(node: &Node, i: usize, arg_dtype: DType) -> Edge {
    let discrete = match node.op {
        Op::Select | Op::Rng { .. } => i == 0,
        Op::Gather { .. } | Op::ScatterAdd { .. } => i == 1,
        Op::StopGradient => true,
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const { .. }
        | Op::Iota { .. }
        | Op::Unary(_)
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Cast
        | Op::Reduce { .. }
        | Op::Reshape
        | Op::Permute { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::Matmul
        | Op::Conv2d(_)
        | Op::Conv2dGradInput(_)
        | Op::Conv2dGradWeight(_) => false,
    };
    if discrete {
        Edge::Discrete
    } else if arg_dtype.is_float() {
        Edge::Diff
    } else {
        Edge::Blocked
    }
}

/// The inverse of a permutation.
fn inverse(perm: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[p] = i;
    }
    inv
}

/// Sums `g` (of a broadcast's result type) back to the operand type `x`.
fn unbroadcast(e: &mut Emit, g: NodeId, dims: &[usize], x: &TensorType) -> R {
    let y = e.ty(g);
    let mut axes = Vec::new();
    for r in 0..y.rank() {
        match dims.iter().position(|&d| d == r) {
            None => axes.push(r),
            Some(i) if x.dims()[i] == 1 && y.dims()[r] != 1 => axes.push(r),
            Some(_) => {}
        }
    }
    let s = e.reduce(ReduceOp::Sum, g, axes)?;
    e.reshape(s, x.clone())
}

/// Places `g` (of a slice's result type) back into zeros of the operand type `x`.
fn unslice(e: &mut Emit, g: NodeId, x: &TensorType, start: &[usize], step: &[usize]) -> R {
    let mut cur = g;
    for axis in 0..x.rank() {
        let dims = e.ty(cur).dims().to_vec();
        let (n, s) = (dims[axis], step[axis]);
        if s > 1 && n > 1 {
            // [.., n, ..] -> [.., n, 1, ..] -> pad to [.., n, s, ..] -> [.., n*s, ..] -> first (n-1)*s+1.
            let mut with_one = dims[..axis].to_vec();
            with_one.extend([n, 1]);
            with_one.extend_from_slice(&dims[axis + 1..]);
            let t = e.reshape(cur, TensorType::new(x.dtype, with_one.clone()))?;
            let low = vec![0; with_one.len()];
            let mut high = low.clone();
            high[axis + 1] = s - 1;
            let t = e.pad(t, low, high)?;
            let mut spread = dims.clone();
            spread[axis] = n * s;
            let t = e.reshape(t, TensorType::new(x.dtype, spread.clone()))?;
            let mut stop = spread;
            stop[axis] = (n - 1) * s + 1;
            cur = e.slice(t, vec![0; dims.len()], stop, vec![1; dims.len()])?;
        }
    }
    let got = e.ty(cur).dims().to_vec();
    let high: Vec<usize> = (0..x.rank()).map(|i| x.dims()[i] - start[i] - got[i]).collect();
    e.pad(cur, start.to_vec(), high)
}

/// The adjoint contributions of `node` (result `y`, adjoint `g`) to the operands marked in
/// `want`, in operand order (`None` where not wanted).
pub fn vjp(
    e: &mut Emit,
    y: NodeId,
    node: &Node,
    g: NodeId,
    want: &[bool],
) -> Result<Vec<Option<NodeId>>, kiln_ir::GraphError> {
    let a = &node.args;
    let mut out: Vec<Option<NodeId>> = vec![None; a.len()];
    let arg_ty = |e: &Emit, i: usize| e.ty(a[i]);
    match &node.op {
        Op::Input { .. } | Op::Param { .. } | Op::Const { .. } | Op::Iota { .. } | Op::Rng { .. } | Op::Compare(_) => {}
        Op::StopGradient => {}
        Op::Unary(u) => out[0] = Some(unary_vjp(e, *u, a[0], y, g)?),
        Op::Binary(b) => binary_vjp(e, *b, (a[0], a[1]), y, g, want, &mut out)?,
        Op::Select => {
            let c = a[0];
            if want[1] {
                out[1] = Some(e.mask(c, g)?);
            }
            if want[2] {
                out[2] = Some(e.mask_not(c, g)?);
            }
        }
        Op::Cast => {
            let t = arg_ty(e, 0);
            out[0] = Some(e.cast(g, t)?);
        }
        Op::Reduce { op, axes } => {
            let x = a[0];
            let xt = arg_ty(e, 0);
            let kept: Vec<usize> = (0..xt.rank()).filter(|i| !axes.contains(i)).collect();
            match op {
                ReduceOp::Sum => out[0] = Some(e.broadcast(g, kept, xt)?),
                ReduceOp::Max => {
                    // Split the gradient evenly among the positions that attain the maximum.
                    let yb = e.broadcast(y, kept.clone(), xt.clone())?;
                    let hit = e.eq(x, yb)?;
                    let hitf = e.cast(hit, xt.clone())?;
                    let count = e.reduce(ReduceOp::Sum, hitf, axes.clone())?;
                    let share = e.div(g, count)?;
                    let shareb = e.broadcast(share, kept, xt)?;
                    out[0] = Some(e.mul(shareb, hitf)?);
                }
            }
        }
        Op::Reshape => {
            let t = arg_ty(e, 0);
            out[0] = Some(e.reshape(g, t)?);
        }
        Op::Permute { perm } => out[0] = Some(e.permute(g, inverse(perm))?),
        Op::Broadcast { dims } => {
            let t = arg_ty(e, 0);
            out[0] = Some(unbroadcast(e, g, dims, &t)?);
        }
        Op::Slice { start, step, .. } => {
            let t = arg_ty(e, 0);
            out[0] = Some(unslice(e, g, &t, start, step)?);
        }
        Op::Pad { low, .. } => {
            let t = arg_ty(e, 0);
            let stop: Vec<usize> = low.iter().zip(t.dims()).map(|(l, d)| l + d).collect();
            out[0] = Some(e.slice(g, low.clone(), stop, vec![1; t.rank()])?);
        }
        Op::Concat { axis } => {
            let gd = e.ty(g).dims().to_vec();
            let mut offset = 0;
            for (i, w) in want.iter().enumerate() {
                let len = arg_ty(e, i).dims()[*axis];
                if *w {
                    let mut start = vec![0; gd.len()];
                    let mut stop = gd.clone();
                    start[*axis] = offset;
                    stop[*axis] = offset + len;
                    out[i] = Some(e.slice(g, start, stop, vec![1; gd.len()])?);
                }
                offset += len;
            }
        }
        Op::Matmul => {
            if want[0] {
                let bt = e.transpose(a[1])?;
                out[0] = Some(e.matmul(g, bt)?);
            }
            if want[1] {
                let at = e.transpose(a[0])?;
                out[1] = Some(e.matmul(at, g)?);
            }
        }
        Op::Conv2d(c) => {
            if want[0] {
                let t = arg_ty(e, 0);
                out[0] = Some(e.typed(Op::Conv2dGradInput(*c), &[g, a[1]], t)?);
            }
            if want[1] {
                let t = arg_ty(e, 1);
                out[1] = Some(e.typed(Op::Conv2dGradWeight(*c), &[a[0], g], t)?);
            }
        }
        Op::Conv2dGradInput(c) => {
            // y = gi(gy, w) is bilinear with <conv(x, w), gy> = <x, gi(gy, w)>.
            if want[0] {
                out[0] = Some(e.op(Op::Conv2d(*c), &[g, a[1]])?);
            }
            if want[1] {
                let t = arg_ty(e, 1);
                out[1] = Some(e.typed(Op::Conv2dGradWeight(*c), &[g, a[0]], t)?);
            }
        }
        Op::Conv2dGradWeight(c) => {
            // y = gw(x, gy) with <conv(x, w), gy> = <w, gw(x, gy)>.
            if want[0] {
                let t = arg_ty(e, 0);
                out[0] = Some(e.typed(Op::Conv2dGradInput(*c), &[a[1], g], t)?);
            }
            if want[1] {
                out[1] = Some(e.op(Op::Conv2d(*c), &[a[0], g])?);
            }
        }
        Op::Gather { axis } => {
            let t = arg_ty(e, 0);
            out[0] = Some(e.typed(Op::ScatterAdd { axis: *axis }, &[g, a[1]], t)?);
        }
        Op::ScatterAdd { axis } => out[0] = Some(e.op(Op::Gather { axis: *axis }, &[g, a[1]])?),
    }
    for (o, w) in out.iter_mut().zip(want) {
        if !w {
            *o = None;
        }
    }
    Ok(out)
}

/// The gradient of a unary op's operand `x`, from the result `y` and its gradient `g`.
fn unary_vjp(e: &mut Emit, u: UnaryOp, x: NodeId, y: NodeId, g: NodeId) -> Result<NodeId, kiln_ir::GraphError> {
    Ok(match u {
        UnaryOp::Neg => e.neg(g)?,
        UnaryOp::Exp => e.mul(g, y)?,
        UnaryOp::Log => e.div(g, x)?,
        UnaryOp::Sqrt => {
            let two_y = e.scale(y, 2.0)?;
            e.div(g, two_y)?
        }
        UnaryOp::Recip => {
            let yy = e.mul(y, y)?;
            let t = e.mul(g, yy)?;
            e.neg(t)?
        }
        UnaryOp::Sin => {
            let c = e.unary(UnaryOp::Cos, x)?;
            e.mul(g, c)?
        }
        UnaryOp::Cos => {
            let s = e.unary(UnaryOp::Sin, x)?;
            let t = e.mul(g, s)?;
            e.neg(t)?
        }
        UnaryOp::Tanh => {
            let yy = e.mul(y, y)?;
            let one = e.full_like(1.0, y)?;
            let d = e.sub(one, yy)?;
            e.mul(g, d)?
        }
        UnaryOp::Abs => {
            // d|x|/dx = sign(x), taken as 0 at 0.
            let zero = e.full_like(0.0, x)?;
            let pos = e.lt(zero, x)?;
            let neg = e.lt(x, zero)?;
            let gp = e.mask(pos, g)?;
            let gn = e.mask(neg, g)?;
            e.sub(gp, gn)?
        }
    })
}

/// The gradients of a binary op's operands `(x0, x1)` that are wanted, into `out`, from the
/// result `y` and its gradient `g`.
fn binary_vjp(
    e: &mut Emit,
    b: BinaryOp,
    (x0, x1): (NodeId, NodeId),
    y: NodeId,
    g: NodeId,
    want: &[bool],
    out: &mut [Option<NodeId>],
) -> Result<(), kiln_ir::GraphError> {
    match b {
        BinaryOp::Add => {
            out[0] = Some(g);
            out[1] = Some(g);
        }
        BinaryOp::Sub => {
            out[0] = Some(g);
            if want[1] {
                out[1] = Some(e.neg(g)?);
            }
        }
        BinaryOp::Mul => {
            if want[0] {
                out[0] = Some(e.mul(g, x1)?);
            }
            if want[1] {
                out[1] = Some(e.mul(g, x0)?);
            }
        }
        BinaryOp::Div => {
            if want[0] {
                out[0] = Some(e.div(g, x1)?);
            }
            if want[1] {
                // d(a/b)/db = -y/b.
                let t = e.mul(g, y)?;
                let t = e.div(t, x1)?;
                out[1] = Some(e.neg(t)?);
            }
        }
        BinaryOp::Max | BinaryOp::Min => {
            // The first operand wins strictly (b < a for max, a < b for min); ties go to
            // the second, so relu = max(x, 0) has gradient 0 at 0.
            let first_wins = if b == BinaryOp::Max { e.lt(x1, x0)? } else { e.lt(x0, x1)? };
            if want[0] {
                out[0] = Some(e.mask(first_wins, g)?);
            }
            if want[1] {
                out[1] = Some(e.mask_not(first_wins, g)?);
            }
        }
        BinaryOp::Pow => {
            if want[0] {
                // b * a^(b-1)
                let one = e.full_like(1.0, x1)?;
                let bm1 = e.sub(x1, one)?;
                let p = e.binary(BinaryOp::Pow, x0, bm1)?;
                let d = e.mul(x1, p)?;
                out[0] = Some(e.mul(g, d)?);
            }
            if want[1] {
                // y * ln a
                let l = e.unary(UnaryOp::Log, x0)?;
                let d = e.mul(y, l)?;
                out[1] = Some(e.mul(g, d)?);
            }
        }
    }
    Ok(())
}
