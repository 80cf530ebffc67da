//! A small node emitter over a `&mut Graph`, so the VJP rules read like math.

use kiln_ir::{BinaryOp, CmpOp, Graph, GraphError, Literal, NodeId, Op, ReduceOp, TensorType, UnaryOp};

/// Appends nodes to a graph; every method returns the (possibly interned) node.
pub struct Emit<'g> {
    pub g: &'g mut Graph,
}

/// Result of emitting a node.
pub type R = Result<NodeId, GraphError>;

impl Emit<'_> {
    /// The type of `x`.
    pub fn ty(&self, x: NodeId) -> TensorType {
        self.g.ty(x).clone()
    }

    /// A constant of type `ty`.
    pub fn constant(&mut self, v: f64, ty: TensorType) -> R {
        self.g.add_typed(Op::Const { value: Literal(v) }, &[], ty)
    }

    /// A constant with the type of `like`.
    pub fn full_like(&mut self, v: f64, like: NodeId) -> R {
        let ty = self.ty(like);
        self.constant(v, ty)
    }

    /// `op x`.
    pub fn unary(&mut self, op: UnaryOp, x: NodeId) -> R {
        self.g.add(Op::Unary(op), &[x])
    }

    /// `op a, b`.
    pub fn binary(&mut self, op: BinaryOp, a: NodeId, b: NodeId) -> R {
        self.g.add(Op::Binary(op), &[a, b])
    }

    /// `a + b`.
    pub fn add(&mut self, a: NodeId, b: NodeId) -> R {
        self.binary(BinaryOp::Add, a, b)
    }

    /// `a - b`.
    pub fn sub(&mut self, a: NodeId, b: NodeId) -> R {
        self.binary(BinaryOp::Sub, a, b)
    }

    /// `a * b`.
    pub fn mul(&mut self, a: NodeId, b: NodeId) -> R {
        self.binary(BinaryOp::Mul, a, b)
    }

    /// `a / b`.
    pub fn div(&mut self, a: NodeId, b: NodeId) -> R {
        self.binary(BinaryOp::Div, a, b)
    }

    /// `-x`.
    pub fn neg(&mut self, x: NodeId) -> R {
        self.unary(UnaryOp::Neg, x)
    }

    /// `x * c` for a scalar constant `c`.
    pub fn scale(&mut self, x: NodeId, c: f64) -> R {
        let k = self.full_like(c, x)?;
        self.mul(x, k)
    }

    /// `a < b`.
    pub fn lt(&mut self, a: NodeId, b: NodeId) -> R {
        self.g.add(Op::Compare(CmpOp::Lt), &[a, b])
    }

    /// `a == b`.
    pub fn eq(&mut self, a: NodeId, b: NodeId) -> R {
        self.g.add(Op::Compare(CmpOp::Eq), &[a, b])
    }

    /// `select c, a, b`.
    pub fn select(&mut self, c: NodeId, a: NodeId, b: NodeId) -> R {
        self.g.add(Op::Select, &[c, a, b])
    }

    /// `x` where `c`, else 0.
    pub fn mask(&mut self, c: NodeId, x: NodeId) -> R {
        let z = self.full_like(0.0, x)?;
        self.select(c, x, z)
    }

    /// `x` where not `c`, else 0.
    pub fn mask_not(&mut self, c: NodeId, x: NodeId) -> R {
        let z = self.full_like(0.0, x)?;
        self.select(c, z, x)
    }

    /// Conversion to `ty` (identity when the types agree).
    pub fn cast(&mut self, x: NodeId, ty: TensorType) -> R {
        if self.ty(x) == ty { Ok(x) } else { self.g.add_typed(Op::Cast, &[x], ty) }
    }

    /// Row-major reshape (identity when the shapes agree).
    pub fn reshape(&mut self, x: NodeId, ty: TensorType) -> R {
        if self.ty(x) == ty { Ok(x) } else { self.g.add_typed(Op::Reshape, &[x], ty) }
    }

    /// Permutation (identity when `perm` is).
    pub fn permute(&mut self, x: NodeId, perm: Vec<usize>) -> R {
        if perm.iter().enumerate().all(|(i, &p)| i == p) { Ok(x) } else { self.g.add(Op::Permute { perm }, &[x]) }
    }

    /// Swaps the last two axes.
    pub fn transpose(&mut self, x: NodeId) -> R {
        let r = self.ty(x).rank();
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(x, perm)
    }

    /// `broadcast x {dims}` to `ty` (identity when nothing changes).
    pub fn broadcast(&mut self, x: NodeId, dims: Vec<usize>, ty: TensorType) -> R {
        if self.ty(x) == ty && dims.iter().enumerate().all(|(i, &d)| i == d) {
            Ok(x)
        } else {
            self.g.add_typed(Op::Broadcast { dims }, &[x], ty)
        }
    }

    /// Reduction over `axes` (identity when there are none).
    pub fn reduce(&mut self, op: ReduceOp, x: NodeId, axes: Vec<usize>) -> R {
        if axes.is_empty() { Ok(x) } else { self.g.add(Op::Reduce { op, axes }, &[x]) }
    }

    /// Constant padding.
    pub fn pad(&mut self, x: NodeId, low: Vec<usize>, high: Vec<usize>) -> R {
        if low.iter().chain(&high).all(|&p| p == 0) {
            Ok(x)
        } else {
            self.g.add(Op::Pad { low, high, value: Literal(0.0) }, &[x])
        }
    }

    /// Strided slice.
    pub fn slice(&mut self, x: NodeId, start: Vec<usize>, stop: Vec<usize>, step: Vec<usize>) -> R {
        let dims = self.ty(x).dims().to_vec();
        let whole = start.iter().all(|&s| s == 0) && stop == dims && step.iter().all(|&s| s == 1);
        if whole { Ok(x) } else { self.g.add(Op::Slice { start, stop, step }, &[x]) }
    }

    /// Matrix product.
    pub fn matmul(&mut self, a: NodeId, b: NodeId) -> R {
        self.g.add(Op::Matmul, &[a, b])
    }

    /// Any op with a declared type.
    pub fn typed(&mut self, op: Op, args: &[NodeId], ty: TensorType) -> R {
        self.g.add_typed(op, args, ty)
    }

    /// Any op with an inferred type.
    pub fn op(&mut self, op: Op, args: &[NodeId]) -> R {
        self.g.add(op, args)
    }
}
