//! Tensor methods: elementwise math with numpy-style broadcasting, reductions, movement,
//! contractions. Implicit broadcasting is lowered here to explicit IR `broadcast` nodes.

use kiln_ir::{BinaryOp, CmpOp, ConvAttrs, DType, Literal, Op, ReduceOp, TensorType, UnaryOp};

use crate::builder::{Builder, Tensor};

/// The numpy broadcast of two shapes, or `None` if they are incompatible.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let r = a.len().max(b.len());
    let mut out = vec![0; r];
    for (i, o) in out.iter_mut().enumerate() {
        let da = if i + a.len() >= r { a[i + a.len() - r] } else { 1 };
        let db = if i + b.len() >= r { b[i + b.len() - r] } else { 1 };
        *o = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

fn shape_str(dims: &[usize]) -> String {
    kiln_ir::Shape::new(dims.to_vec()).to_string()
}

impl<'b> Tensor<'b> {
    /// The IR type (`bool[]` for a poisoned handle, whose error the builder already holds).
    pub fn ty(&self) -> TensorType {
        match self.id {
            Some(id) => self.b.ty_of(id),
            None => TensorType::new(DType::Bool, []),
        }
    }

    /// The extents.
    pub fn shape(&self) -> Vec<usize> {
        self.ty().dims().to_vec()
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.ty().dtype
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.ty().rank()
    }

    /// True if building this value failed (the builder holds the error).
    pub fn is_poisoned(&self) -> bool {
        self.id.is_none()
    }

    /// The node handle, if the value was built.
    pub fn node(&self) -> Option<kiln_ir::NodeId> {
        self.id
    }

    /// Normalizes a possibly negative axis; records an error if it is out of range.
    #[track_caller]
    pub fn axis(&self, op: &str, axis: isize) -> Option<usize> {
        let r = self.rank() as isize;
        let a = if axis < 0 { axis + r } else { axis };
        if self.is_poisoned() {
            return None;
        }
        if a < 0 || a >= r {
            self.b.fail(op, format!("axis {axis} out of range for {}", self.ty()));
            return None;
        }
        Some(a as usize)
    }

    #[track_caller]
    fn axes(&self, op: &str, axes: &[isize]) -> Option<Vec<usize>> {
        let mut v = Vec::with_capacity(axes.len());
        for &a in axes {
            v.push(self.axis(op, a)?);
        }
        v.sort_unstable();
        v.dedup();
        Some(v)
    }

    /// A constant with this tensor's dtype and shape.
    #[track_caller]
    pub fn full_like(&self, value: f64) -> Tensor<'b> {
        if self.is_poisoned() {
            return *self;
        }
        self.b.apply(Op::Const { value: Literal(value) }, &[], Some(self.ty()))
    }

    /// Broadcasts to `dims` by numpy rules (leading axes added, extents of 1 stretched).
    #[track_caller]
    pub fn broadcast_to(&self, dims: &[usize]) -> Tensor<'b> {
        if self.is_poisoned() {
            return *self;
        }
        let me = self.shape();
        if me == dims {
            return *self;
        }
        if me.len() > dims.len() || broadcast_shapes(&me, dims).as_deref() != Some(dims) {
            self.b.fail("broadcast", format!("cannot broadcast {} to {}", self.ty(), shape_str(dims)));
            return self.b.handle(None);
        }
        let offset = dims.len() - me.len();
        let bdims: Vec<usize> = (0..me.len()).map(|i| i + offset).collect();
        self.b.apply(Op::Broadcast { dims: bdims }, &[*self], Some(TensorType::new(self.dtype(), dims.to_vec())))
    }

    /// Broadcasts two operands to their common shape for elementwise `op`.
    #[track_caller]
    fn broadcast_pair(&self, op: &str, other: Tensor<'b>) -> Option<(Tensor<'b>, Tensor<'b>)> {
        if self.is_poisoned() || other.is_poisoned() {
            return None;
        }
        let (a, b) = (self.ty(), other.ty());
        if a.dtype != b.dtype {
            self.b.fail(op, format!("dtypes differ: {a} vs {b} (use .cast())"));
            return None;
        }
        match broadcast_shapes(a.dims(), b.dims()) {
            Some(s) => Some((self.broadcast_to(&s), other.broadcast_to(&s))),
            None => {
                self.b.fail(op, format!("shapes do not broadcast: {a} vs {b}"));
                None
            }
        }
    }

    #[track_caller]
    pub(crate) fn binary(&self, op: BinaryOp, other: Tensor<'b>) -> Tensor<'b> {
        match self.broadcast_pair(op.name(), other) {
            Some((a, b)) => self.b.apply(Op::Binary(op), &[a, b], None),
            None => self.b.handle(None),
        }
    }

    #[track_caller]
    fn compare(&self, op: CmpOp, other: Tensor<'b>) -> Tensor<'b> {
        match self.broadcast_pair(op.name(), other) {
            Some((a, b)) => self.b.apply(Op::Compare(op), &[a, b], None),
            None => self.b.handle(None),
        }
    }

    #[track_caller]
    fn unary(&self, op: UnaryOp) -> Tensor<'b> {
        self.b.apply(Op::Unary(op), &[*self], None)
    }

    /// `e^x`.
    #[track_caller]
    pub fn exp(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Exp)
    }

    /// Natural logarithm.
    #[track_caller]
    pub fn log(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Log)
    }

    /// Square root.
    #[track_caller]
    pub fn sqrt(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Sqrt)
    }

    /// `1 / x`.
    #[track_caller]
    pub fn recip(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Recip)
    }

    /// Sine.
    #[track_caller]
    pub fn sin(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Sin)
    }

    /// Cosine.
    #[track_caller]
    pub fn cos(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Cos)
    }

    /// Hyperbolic tangent.
    #[track_caller]
    pub fn tanh(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Tanh)
    }

    /// Absolute value.
    #[track_caller]
    pub fn abs(&self) -> Tensor<'b> {
        self.unary(UnaryOp::Abs)
    }

    /// `x^2`.
    #[track_caller]
    pub fn square(&self) -> Tensor<'b> {
        *self * *self
    }

    /// Elementwise power, broadcasting.
    #[track_caller]
    pub fn pow(&self, e: Tensor<'b>) -> Tensor<'b> {
        self.binary(BinaryOp::Pow, e)
    }

    /// Elementwise maximum, broadcasting.
    #[track_caller]
    pub fn maximum(&self, o: Tensor<'b>) -> Tensor<'b> {
        self.binary(BinaryOp::Max, o)
    }

    /// Elementwise minimum, broadcasting.
    #[track_caller]
    pub fn minimum(&self, o: Tensor<'b>) -> Tensor<'b> {
        self.binary(BinaryOp::Min, o)
    }

    /// `self < o` as `bool`, broadcasting.
    #[track_caller]
    pub fn lt(&self, o: Tensor<'b>) -> Tensor<'b> {
        self.compare(CmpOp::Lt, o)
    }

    /// `self > o` as `bool`, broadcasting.
    #[track_caller]
    pub fn gt(&self, o: Tensor<'b>) -> Tensor<'b> {
        o.compare(CmpOp::Lt, *self)
    }

    /// `self == o` as `bool`, broadcasting.
    #[track_caller]
    pub fn equal(&self, o: Tensor<'b>) -> Tensor<'b> {
        self.compare(CmpOp::Eq, o)
    }

    /// `a` where `self` (a `bool` mask) holds, else `b`; all three broadcast together.
    #[track_caller]
    pub fn select(&self, a: Tensor<'b>, b: Tensor<'b>) -> Tensor<'b> {
        let Some((a, b)) = a.broadcast_pair("select", b) else {
            return self.b.handle(None);
        };
        let s = match broadcast_shapes(&self.shape(), &a.shape()) {
            Some(s) if !self.is_poisoned() => s,
            _ => {
                self.b.fail("select", format!("condition {} does not broadcast with {}", self.ty(), a.ty()));
                return self.b.handle(None);
            }
        };
        let (c, a, b) = (self.broadcast_to(&s), a.broadcast_to(&s), b.broadcast_to(&s));
        self.b.apply(Op::Select, &[c, a, b], None)
    }

    /// Conversion to `dtype`.
    #[track_caller]
    pub fn cast(&self, dtype: DType) -> Tensor<'b> {
        if self.is_poisoned() || self.dtype() == dtype {
            return *self;
        }
        self.b.apply(Op::Cast, &[*self], Some(TensorType::new(dtype, self.shape())))
    }

    /// Identity whose gradient is zero.
    #[track_caller]
    pub fn stop_gradient(&self) -> Tensor<'b> {
        self.b.apply(Op::StopGradient, &[*self], None)
    }

    #[track_caller]
    fn reduce(&self, op: ReduceOp, axes: &[isize], keepdim: bool) -> Tensor<'b> {
        let Some(ax) = self.axes(op.name(), axes) else {
            return self.b.handle(None);
        };
        let r = self.b.apply(Op::Reduce { op, axes: ax.clone() }, &[*self], None);
        if !keepdim {
            return r;
        }
        let mut dims = self.shape();
        for &a in &ax {
            dims[a] = 1;
        }
        r.reshape(&dims)
    }

    /// Sum over `axes` (negative axes count from the end), removing them.
    #[track_caller]
    pub fn sum(&self, axes: &[isize]) -> Tensor<'b> {
        self.reduce(ReduceOp::Sum, axes, false)
    }

    /// Sum over `axes`, keeping them with extent 1.
    #[track_caller]
    pub fn sum_keepdim(&self, axes: &[isize]) -> Tensor<'b> {
        self.reduce(ReduceOp::Sum, axes, true)
    }

    /// Sum of all elements, as a scalar.
    #[track_caller]
    pub fn sum_all(&self) -> Tensor<'b> {
        let axes: Vec<isize> = (0..self.rank() as isize).collect();
        self.sum(&axes)
    }

    /// Maximum over `axes`, removing them.
    #[track_caller]
    pub fn max(&self, axes: &[isize]) -> Tensor<'b> {
        self.reduce(ReduceOp::Max, axes, false)
    }

    /// Maximum over `axes`, keeping them with extent 1.
    #[track_caller]
    pub fn max_keepdim(&self, axes: &[isize]) -> Tensor<'b> {
        self.reduce(ReduceOp::Max, axes, true)
    }

    fn count(&self, axes: &[isize]) -> f64 {
        let s = self.shape();
        let r = s.len() as isize;
        axes.iter().map(|&a| s[(if a < 0 { a + r } else { a }).clamp(0, (r - 1).max(0)) as usize] as f64).product()
    }

    /// Mean over `axes`, removing them.
    #[track_caller]
    pub fn mean(&self, axes: &[isize]) -> Tensor<'b> {
        let n = self.count(axes);
        self.sum(axes) * (1.0 / n)
    }

    /// Mean over `axes`, keeping them with extent 1.
    #[track_caller]
    pub fn mean_keepdim(&self, axes: &[isize]) -> Tensor<'b> {
        let n = self.count(axes);
        self.sum_keepdim(axes) * (1.0 / n)
    }

    /// Mean of all elements, as a scalar.
    #[track_caller]
    pub fn mean_all(&self) -> Tensor<'b> {
        let axes: Vec<isize> = (0..self.rank() as isize).collect();
        self.mean(&axes)
    }

    /// Row-major reshape to `dims`.
    #[track_caller]
    pub fn reshape(&self, dims: &[usize]) -> Tensor<'b> {
        if self.is_poisoned() || self.shape() == dims {
            return *self;
        }
        self.b.apply(Op::Reshape, &[*self], Some(TensorType::new(self.dtype(), dims.to_vec())))
    }

    /// Flattens axes `start..` into one.
    #[track_caller]
    pub fn flatten(&self, start: usize) -> Tensor<'b> {
        let s = self.shape();
        if start > s.len() {
            self.b.fail("flatten", format!("start axis {start} out of range for {}", self.ty()));
            return self.b.handle(None);
        }
        let mut dims = s[..start].to_vec();
        dims.push(s[start..].iter().product());
        self.reshape(&dims)
    }

    /// Axis permutation: result axis `i` is axis `perm[i]`.
    #[track_caller]
    pub fn permute(&self, perm: &[usize]) -> Tensor<'b> {
        if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == self.rank() {
            return *self;
        }
        self.b.apply(Op::Permute { perm: perm.to_vec() }, &[*self], None)
    }

    /// Swaps the last two axes.
    #[track_caller]
    pub fn transpose(&self) -> Tensor<'b> {
        let r = self.rank();
        if r < 2 {
            self.b.fail("transpose", format!("needs at least two axes, got {}", self.ty()));
            return self.b.handle(None);
        }
        let mut perm: Vec<usize> = (0..r).collect();
        perm.swap(r - 2, r - 1);
        self.permute(&perm)
    }

    /// `[start, stop)` with `step` along one axis, everything along the others.
    #[track_caller]
    pub fn slice(&self, axis: isize, start: usize, stop: usize, step: usize) -> Tensor<'b> {
        let Some(ax) = self.axis("slice", axis) else {
            return self.b.handle(None);
        };
        let s = self.shape();
        let mut lo = vec![0; s.len()];
        let mut hi = s.clone();
        let mut st = vec![1; s.len()];
        lo[ax] = start;
        hi[ax] = stop;
        st[ax] = step;
        self.b.apply(Op::Slice { start: lo, stop: hi, step: st }, &[*self], None)
    }

    /// Strided window over every axis.
    #[track_caller]
    pub fn slice_all(&self, start: &[usize], stop: &[usize], step: &[usize]) -> Tensor<'b> {
        self.b.apply(Op::Slice { start: start.to_vec(), stop: stop.to_vec(), step: step.to_vec() }, &[*self], None)
    }

    /// Pads every axis with `low[i]` elements before and `high[i]` after, of `value`.
    #[track_caller]
    pub fn pad(&self, low: &[usize], high: &[usize], value: f64) -> Tensor<'b> {
        if low.iter().chain(high).all(|&p| p == 0) && low.len() == self.rank() && high.len() == self.rank() {
            return *self;
        }
        self.b.apply(Op::Pad { low: low.to_vec(), high: high.to_vec(), value: Literal(value) }, &[*self], None)
    }

    /// Matrix product with numpy batching: `[..., m, k] x [..., k, n]`, batch axes broadcast;
    /// a rank-1 right operand is a column vector.
    #[track_caller]
    pub fn matmul(&self, o: Tensor<'b>) -> Tensor<'b> {
        if self.is_poisoned() || o.is_poisoned() {
            return self.b.handle(None);
        }
        let (a, b) = (self.shape(), o.shape());
        if a.len() < 2 || b.is_empty() {
            self.b.fail(
                "matmul",
                format!(
                    "needs a matrix on the left and a matrix or vector on the right, got {} x {}",
                    self.ty(),
                    o.ty()
                ),
            );
            return self.b.handle(None);
        }
        if b.len() == 1 {
            let col = o.reshape(&[b[0], 1]);
            let r = self.matmul(col);
            return r.reshape(&r.shape()[..r.rank().saturating_sub(1)]);
        }
        let (ba, bb) = (&a[..a.len() - 2], &b[..b.len() - 2]);
        let Some(batch) = broadcast_shapes(ba, bb) else {
            self.b.fail("matmul", format!("batch axes do not broadcast: {} x {}", self.ty(), o.ty()));
            return self.b.handle(None);
        };
        let full = |t: &Tensor<'b>, s: &[usize]| {
            let mut d = batch.clone();
            d.extend_from_slice(&s[s.len() - 2..]);
            t.broadcast_to(&d)
        };
        let (x, y) = (full(self, &a), full(&o, &b));
        self.b.apply(Op::Matmul, &[x, y], None)
    }

    /// 2-D convolution of an NCHW input with an OIHW weight.
    #[track_caller]
    pub fn conv2d(&self, weight: Tensor<'b>, attrs: ConvAttrs) -> Tensor<'b> {
        self.b.apply(Op::Conv2d(attrs), &[*self, weight], None)
    }

    /// Transposed 2-D convolution (the adjoint of [`Tensor::conv2d`] in its input): `self` is
    /// shaped like a convolution's output `[N, O, H, W]`, `weight` is `[O, C/groups, KH, KW]`,
    /// and the result is `[N, C, out_hw[0], out_hw[1]]`, which must be a size whose
    /// convolution with these attributes has `self`'s shape (`docs/ops.md`,
    /// `conv2d_grad_input`).
    #[track_caller]
    pub fn conv2d_transpose(&self, weight: Tensor<'b>, attrs: ConvAttrs, out_hw: [usize; 2]) -> Tensor<'b> {
        if self.is_poisoned() || weight.is_poisoned() {
            return self.b.handle(None);
        }
        let (s, w) = (self.shape(), weight.shape());
        if s.len() != 4 || w.len() != 4 {
            self.b.fail(
                "conv2d_transpose",
                format!("expects [N,O,H,W] and [O,C/G,KH,KW], got {} and {}", self.ty(), weight.ty()),
            );
            return self.b.handle(None);
        }
        let ty = TensorType::new(self.dtype(), vec![s[0], w[1] * attrs.groups, out_hw[0], out_hw[1]]);
        self.b.apply(Op::Conv2dGradInput(attrs), &[*self, weight], Some(ty))
    }

    /// `take` along `axis`: rows of `self` picked by integer `indices`.
    #[track_caller]
    pub fn gather(&self, indices: Tensor<'b>, axis: isize) -> Tensor<'b> {
        let Some(ax) = self.axis("gather", axis) else {
            return self.b.handle(None);
        };
        self.b.apply(Op::Gather { axis: ax }, &[*self, indices], None)
    }

    /// One-hot encoding of integer class indices: `[...]` → `[..., classes]` of `dtype`.
    /// Checked: an index outside `0..classes` is an error when the graph runs (on every
    /// backend), never a row of zeros. The indices pass through `gather` of the class ids
    /// `0..classes`, which refuses an index out of range, before they are compared.
    #[track_caller]
    pub fn one_hot(&self, classes: usize, dtype: DType) -> Tensor<'b> {
        if self.is_poisoned() {
            return *self;
        }
        let mut dims = self.shape();
        let r = dims.len();
        dims.push(classes);
        let ids = self.b.iota(self.dtype(), [classes], 0);
        let checked = ids.gather(*self, 0);
        let iota = self.b.iota(self.dtype(), dims.clone(), r);
        let labels = checked.reshape(&[self.shape(), vec![1]].concat()).broadcast_to(&dims);
        labels.equal(iota).cast(dtype)
    }
}

impl Builder {
    /// Concatenates `parts` along `axis` (negative counts from the end).
    #[track_caller]
    pub fn concat<'b>(&'b self, parts: &[Tensor<'b>], axis: isize) -> Tensor<'b> {
        let Some(first) = parts.first() else {
            self.fail("concat", "needs at least one tensor");
            return self.handle(None);
        };
        let Some(ax) = first.axis("concat", axis) else {
            return self.handle(None);
        };
        self.apply(Op::Concat { axis: ax }, parts, None)
    }
}
