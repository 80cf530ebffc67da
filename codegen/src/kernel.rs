//! The kernel loop IR: one fused elementwise kernel as a loop nest over its output's index
//! space and a straight-line scalar body. Backend-independent: the CPU emitter lowers it to
//! Cranelift, and a GPU emitter can render the same body.
//!
//! Every input is read at `offset + Σ index[d] · stride[d]` (in elements, stride 0 along
//! broadcast axes), so broadcasts, reshapes, slices and permutes of materialized tensors
//! cost no copy. The body computes
//! one output element; the loop nest stores it at the row-major position.

use std::fmt;

use kiln_ir::{BinaryOp, CmpOp, DType, Graph, Movement, NodeId, Op, ReduceOp, TensorType, UnaryOp};
use thiserror::Error;

/// How a kernel reads one input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelInput {
    /// The graph node whose buffer is read.
    pub node: NodeId,
    /// Its element type.
    pub dtype: DType,
    /// Stride in elements per output axis (0 where the input is broadcast).
    pub strides: Vec<i64>,
    /// Elements from the buffer's start to the element read at index 0 (a slice's start).
    pub offset: i64,
}

/// One scalar instruction of a kernel body; operands index earlier instructions.
#[derive(Clone, Debug, PartialEq)]
pub enum Inst {
    /// The current element of input `k`.
    Load(usize),
    /// A constant.
    Const(f64),
    /// Elementwise unary op.
    Unary(UnaryOp, usize),
    /// Elementwise binary op.
    Binary(BinaryOp, usize, usize),
    /// Comparison (result `bool`).
    Compare(CmpOp, usize, usize),
    /// `select(c, a, b)`.
    Select(usize, usize, usize),
    /// Conversion to the instruction's dtype.
    Cast(usize),
}

/// A value of a kernel's body stored beside its result (a multi-output kernel's side output):
/// one element per point of the iteration space, which is its shape (the result's, or a
/// reduction's operand's), row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SideOutput {
    /// The graph node whose buffer it fills.
    pub node: NodeId,
    /// The body instruction whose value is stored.
    pub value: usize,
    /// Its element type.
    pub dtype: DType,
    /// Its stride in elements per axis of the space (the space's row-major strides, permuted
    /// and merged along with the space).
    pub strides: Vec<i64>,
}

/// A fused kernel: elementwise work over an iteration space, stored elementwise or reduced.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// Name (the root node's), for dumps and symbols.
    pub name: String,
    /// The inputs, in argument order; their strides are over [`Kernel::space`].
    pub inputs: Vec<KernelInput>,
    /// The output type.
    pub out: TensorType,
    /// The iteration space: the output's extents, or a reduction's input extents.
    pub space: Vec<usize>,
    /// If set, the body's value is reduced over these axes of the space into the output
    /// (starting from the reduction's identity), instead of stored elementwise.
    pub reduce: Option<(ReduceOp, Vec<usize>)>,
    /// Strides of the row-major output over the space, in elements (0 along reduced axes).
    pub out_strides: Vec<i64>,
    /// The body, with each instruction's result dtype.
    pub body: Vec<(Inst, DType)>,
    /// Values stored beside the result, one per point of the space. A backend receives their
    /// buffers after the inputs', in this order.
    pub side_outputs: Vec<SideOutput>,
}

impl Kernel {
    /// True if disjoint ranges of the outer axis may run separately (on different threads):
    /// always for elementwise kernels; for a reduction, when the outer axis is not reduced and
    /// each outer index owns one contiguous block of the output (it initializes and writes only
    /// that block).
    pub fn splits_outer(&self) -> bool {
        let Some((_, axes)) = &self.reduce else { return true };
        let (Some(&outer), Some(&stride)) = (self.space.first(), self.out_strides.first()) else { return false };
        !axes.contains(&0) && stride > 0 && stride as usize * outer == self.out.numel()
    }

    /// Strides of the output over the iteration space, in elements (0 along reduced axes).
    pub fn out_strides(&self) -> Vec<i64> {
        self.out_strides.clone()
    }

    /// Simplifies the loop nest without changing what it computes: axes of extent 1 are
    /// dropped, and adjacent axes that every input and the output step through as one (the
    /// outer stride is the inner stride times the inner extent, and both are reduced or both
    /// kept) merge into one. A `[64,6,14,2,14,2]` elementwise kernel over row-major buffers
    /// becomes one `[301056]` loop, which vectorizes.
    pub fn collapse(mut self) -> Kernel {
        if self.space.contains(&0) {
            return self;
        }
        let reduced = |k: &Kernel, d: usize| k.reduce.as_ref().is_some_and(|(_, axes)| axes.contains(&d));
        let mut d = 0;
        while d < self.space.len() {
            if self.space[d] == 1 {
                self.remove_axis(d);
            } else {
                d += 1;
            }
        }
        let mut d = self.space.len();
        while d >= 2 {
            let (o, i) = (d - 2, d - 1);
            let n = self.space[i] as i64;
            let steps_as_one = |s: &[i64]| s[o] == s[i] * n;
            let merge = reduced(&self, o) == reduced(&self, i)
                && steps_as_one(&self.out_strides)
                && self.inputs.iter().all(|input| steps_as_one(&input.strides))
                && self.side_outputs.iter().all(|side| steps_as_one(&side.strides));
            if merge {
                self.space[i] *= self.space[o];
                self.remove_axis(o);
            }
            d -= 1;
        }
        self
    }

    /// Moves a longer axis innermost when the innermost one is shorter than a vector (pooling
    /// windows of 2 or 3): for an elementwise kernel the one of at least `lanes` elements the
    /// output steps through most tightly, for a reduction the output's contiguous kept axis. Only the visiting order changes (a reduction's terms
    /// for one output element are then added in another order, the same on every run).
    pub fn interchange(mut self, lanes: usize) -> Kernel {
        let rank = self.space.len();
        if rank < 2 || self.space[rank - 1] >= lanes || self.space.contains(&0) {
            return self;
        }
        let candidate = match &self.reduce {
            // The long axis the output steps through most tightly (locality of the stores).
            None => (0..rank - 1).filter(|&d| self.space[d] >= lanes).min_by_key(|&d| (self.out_strides[d].abs(), d)),
            Some((_, axes)) => (0..rank - 1).find(|&d| !axes.contains(&d) && self.out_strides[d] == 1),
        };
        let Some(d) = candidate.filter(|&d| self.space[d] >= lanes) else { return self };
        let mut order: Vec<usize> = (0..rank).filter(|&a| a != d).collect();
        order.push(d);
        let permute = |v: &[i64]| order.iter().map(|&a| v[a]).collect::<Vec<i64>>();
        self.space = order.iter().map(|&a| self.space[a]).collect();
        self.out_strides = permute(&self.out_strides);
        for input in &mut self.inputs {
            input.strides = permute(&input.strides);
        }
        for side in &mut self.side_outputs {
            side.strides = permute(&side.strides);
        }
        if let Some((_, axes)) = &mut self.reduce {
            for a in axes.iter_mut() {
                // `order` is a permutation of 0..rank, so every axis has a new position.
                *a = order.iter().position(|&o| o == *a).unwrap_or(*a);
            }
            axes.sort_unstable();
        }
        self
    }

    /// For a window reduction — a reduction whose innermost axis is kept (at most
    /// [`WINDOW_ROW_MAX`] long, not `bool`) and whose axes just above it are all reduced, as
    /// pooling's max over a window or a column sum — the first of those reduced axes. Both CPU
    /// backends keep such a kernel's row of outputs in registers (or a local array) across the
    /// reduced loops instead of accumulating through memory.
    pub fn window_axes(&self) -> Option<usize> {
        let (_, axes) = self.reduce.as_ref()?;
        let inner = self.space.len().checked_sub(1)?;
        if axes.contains(&inner) || self.space[inner] > WINDOW_ROW_MAX || self.out.dtype == DType::Bool {
            return None;
        }
        let mut first = inner;
        while first > 0 && axes.contains(&(first - 1)) {
            first -= 1;
        }
        (first < inner).then_some(first)
    }

    /// Blocks a transpose: for an elementwise kernel whose output is contiguous along the
    /// innermost axis while some input steps through it at least [`BLOCK_STRIDE_MIN`]
    /// elements apart (each element a cache line of its own) over more than
    /// [`BLOCK_SPAN_MIN`] bytes, and is contiguous along another axis, both axes are cut into
    /// tiles of `b`×`b` (16 or 8, whichever divides both): the nest visits one tile at a
    /// time, so the tile's input lines, loaded for its first row, are read again from the
    /// nearest cache for the next ones. (A row whose lines span less stays in that cache
    /// unblocked, where the tiles' shorter loops only cost: a `[8,64,4,32]` head transpose ran
    /// 20 µs plain and 50 tiled.) The space becomes `[other axes…, a/b, inner/b, b, b]`.
    /// Every element is computed once, as before; only the order of the (independent)
    /// elements changes.
    pub fn block_transpose(mut self) -> Kernel {
        let rank = self.space.len();
        if self.reduce.is_some() || rank < 2 || self.out_strides[rank - 1] != 1 || self.space.contains(&0) {
            return self;
        }
        let inner = rank - 1;
        let Some(far) = self.inputs.iter().max_by_key(|i| i.strides[inner].unsigned_abs()) else { return self };
        let stride = far.strides[inner].unsigned_abs();
        let span = stride * self.space[inner] as u64 * far.dtype.size_bytes() as u64;
        if stride < BLOCK_STRIDE_MIN || span <= BLOCK_SPAN_MIN {
            return self;
        }
        let Some(a) = (0..inner).find(|&d| far.strides[d].abs() == 1) else { return self };
        let Some(b) =
            [16, 8].into_iter().find(|b| self.space[a].is_multiple_of(*b) && self.space[inner].is_multiple_of(*b))
        else {
            return self;
        };
        let kept: Vec<usize> = (0..inner).filter(|&d| d != a).collect();
        let block = |v: &[i64]| -> Vec<i64> {
            let b = b as i64;
            kept.iter().map(|&d| v[d]).chain([v[a] * b, v[inner] * b, v[a], v[inner]]).collect()
        };
        self.out_strides = block(&self.out_strides);
        for input in &mut self.inputs {
            input.strides = block(&input.strides);
        }
        for side in &mut self.side_outputs {
            side.strides = block(&side.strides);
        }
        let (na, ni) = (self.space[a], self.space[inner]);
        self.space = kept.iter().map(|&d| self.space[d]).chain([na / b, ni / b, b, b]).collect();
        self
    }

    /// Per body instruction, its operands if it is a float multiply whose only use is an
    /// addition and `fma` (the target has fused multiply-add): every CPU backend contracts
    /// such a pair into one fused multiply-add (one rounding instead of two, as C compilers do
    /// under `-ffp-contract=fast` and XLA does on CPU), and nothing else, so their results
    /// agree bit for bit. A stored value (a side output) and the result keep their own
    /// rounding.
    pub fn fma_contractions(&self, fma: bool) -> Vec<Option<(usize, usize)>> {
        let body = &self.body;
        let mut uses = vec![0usize; body.len()];
        let mut add_uses = vec![0usize; body.len()];
        for (inst, _) in body {
            match inst {
                Inst::Load(_) | Inst::Const(_) => {}
                Inst::Unary(_, x) | Inst::Cast(x) => uses[*x] += 1,
                Inst::Binary(op, x, y) => {
                    uses[*x] += 1;
                    uses[*y] += 1;
                    if *op == BinaryOp::Add {
                        add_uses[*x] += 1;
                        add_uses[*y] += 1;
                    }
                }
                Inst::Compare(_, x, y) => {
                    uses[*x] += 1;
                    uses[*y] += 1;
                }
                Inst::Select(c, x, y) => {
                    uses[*c] += 1;
                    uses[*x] += 1;
                    uses[*y] += 1;
                }
            }
        }
        for side in &self.side_outputs {
            uses[side.value] += 1;
        }
        body.iter()
            .enumerate()
            .map(|(i, (inst, dt))| match inst {
                Inst::Binary(BinaryOp::Mul, p, q)
                    if fma && dt.is_float() && uses[i] == 1 && add_uses[i] == 1 && i + 1 < body.len() =>
                {
                    Some((*p, *q))
                }
                _ => None,
            })
            .collect()
    }

    /// Removes axis `d` of the space (its strides, and its place in the reduced axes).
    fn remove_axis(&mut self, d: usize) {
        self.space.remove(d);
        self.out_strides.remove(d);
        for input in &mut self.inputs {
            input.strides.remove(d);
        }
        for side in &mut self.side_outputs {
            side.strides.remove(d);
        }
        if let Some((_, axes)) = &mut self.reduce {
            axes.retain(|a| *a != d);
            for a in axes.iter_mut() {
                if *a > d {
                    *a -= 1;
                }
            }
        }
    }
}

/// The longest output row a window reduction keeps in registers ([`Kernel::window_axes`]).
pub const WINDOW_ROW_MAX: usize = 64;

/// The innermost-axis stride (elements) from which an input's reads count as a transpose's
/// for [`Kernel::block_transpose`]: sixteen `f32`, one element per 64-byte cache line.
pub const BLOCK_STRIDE_MIN: u64 = 16;

/// The bytes one output row's reads must span for [`Kernel::block_transpose`] to tile it:
/// 32 KiB, about a level-1 data cache (measured: a `[128,512]` transpose, 256 KiB a row, went
/// from 135 to 29 µs tiled; a `[8,64,4,32]` one, 32 KiB a row, from 20 to 50 µs).
pub const BLOCK_SPAN_MIN: u64 = 32 << 10;

/// Strides of the row-major `out` over `space`: its own strides along kept axes, 0 along
/// reduced ones.
fn output_strides(out: &TensorType, space: usize, reduce: &Option<(ReduceOp, Vec<usize>)>) -> Vec<i64> {
    let strides = contiguous_strides(out.dims());
    match reduce {
        None => strides,
        Some((_, axes)) => {
            let mut kept = strides.into_iter();
            (0..space).map(|d| if axes.contains(&d) { 0 } else { kept.next().unwrap_or(0) }).collect()
        }
    }
}

/// Why a group of nodes cannot become one kernel.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[error("cannot lower {node} (`{op}`) into a kernel: {why}")]
pub struct LowerError {
    /// The node.
    pub node: NodeId,
    /// Its op.
    pub op: &'static str,
    /// Why.
    pub why: String,
}

/// Row-major strides of `dims`, in elements.
pub fn contiguous_strides(dims: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; dims.len()];
    let mut acc = 1i64;
    for d in (0..dims.len()).rev() {
        s[d] = acc;
        acc *= dims[d] as i64;
    }
    s
}

/// Lowers the group `members` (in arena order, ending with its root) of `graph` to a kernel.
/// Operands that are not members are the kernel's inputs; broadcasts and reshapes among the
/// members must read non-members. A `reduce_sum`/`reduce_max` root reduces the value of its
/// operand (computed by the other members) over the operand's extents.
pub fn lower_group(graph: &Graph, members: &[NodeId]) -> Result<Kernel, LowerError> {
    lower_stored(graph, members, &[])
}

/// [`lower_group`] for a multi-output kernel: it also stores the members `side_outputs`, each
/// of the iteration space's shape (the root's, or a reduction root's operand's).
pub fn lower_stored(graph: &Graph, members: &[NodeId], side_outputs: &[NodeId]) -> Result<Kernel, LowerError> {
    let root = *members.last().ok_or(LowerError { node: NodeId::from_index(0), op: "", why: "empty group".into() })?;
    let (space_ty, reduce, members) = match &graph.node(root).op {
        Op::Reduce { op, axes } => {
            let operand = graph.node(root).args[0];
            let mut elementwise = members[..members.len() - 1].to_vec();
            if !elementwise.contains(&operand) {
                // The reduced value is read as it is: a load (or an inlined constant).
                elementwise.push(root);
            }
            (graph.ty(operand).clone(), Some((*op, axes.clone())), elementwise)
        }
        _ => (graph.ty(root).clone(), None, members.to_vec()),
    };
    let out = space_ty.clone();
    let mut kernel = Kernel {
        name: format!("k{}", root.index()),
        inputs: Vec::new(),
        out: graph.ty(root).clone(),
        space: space_ty.dims().to_vec(),
        reduce: reduce.clone(),
        out_strides: output_strides(graph.ty(root), space_ty.rank(), &reduce),
        body: Vec::new(),
        side_outputs: Vec::new(),
    };
    let members = &members[..];
    let mut at: std::collections::HashMap<NodeId, usize> = std::collections::HashMap::new();
    let fail = |id: NodeId, why: &str| LowerError { node: id, op: graph.node(id).op.name(), why: why.into() };
    let load = |kernel: &mut Kernel, node: NodeId, strides: Vec<i64>, offset: i64| -> usize {
        let dtype = graph.ty(node).dtype;
        let k = match kernel.inputs.iter().position(|i| i.node == node && i.strides == strides && i.offset == offset) {
            Some(k) => k,
            None => {
                kernel.inputs.push(KernelInput { node, dtype, strides, offset });
                kernel.inputs.len() - 1
            }
        };
        kernel.body.push((Inst::Load(k), dtype));
        kernel.body.len() - 1
    };
    for &id in members {
        let n = graph.node(id);
        let dtype = n.ty.dtype;
        let is_reduce_root = id == root && reduce.is_some();
        if !is_reduce_root && n.ty.dims() != out.dims() {
            return Err(fail(id, "a member's shape differs from the kernel's"));
        }
        // Operands that are members are already computed; others are loaded as they are.
        let operand = |kernel: &mut Kernel, a: NodeId| -> usize {
            match (at.get(&a), &graph.node(a).op) {
                (Some(&i), _) => i,
                // Constants are inlined, not read from memory.
                (None, Op::Const { value }) => {
                    kernel.body.push((Inst::Const(value.0), graph.ty(a).dtype));
                    kernel.body.len() - 1
                }
                (None, _) => load(kernel, a, contiguous_strides(out.dims()), 0),
            }
        };
        let inst = match &n.op {
            // Movement ops read their materialized operand through strides (and an offset).
            Op::Broadcast { .. } | Op::Reshape | Op::Slice { .. } | Op::Permute { .. } => {
                let src = n.args[0];
                if at.contains_key(&src) {
                    return Err(fail(id, &format!("a {} must read a materialized tensor", n.op.name())));
                }
                let (strides, offset) = strided_read(graph, n, out.dims());
                let i = load(&mut kernel, src, strides, offset);
                at.insert(id, i);
                continue;
            }
            Op::StopGradient => {
                let i = operand(&mut kernel, n.args[0]);
                at.insert(id, i);
                continue;
            }
            Op::Const { value } => Inst::Const(value.0),
            Op::Unary(u) => Inst::Unary(*u, operand(&mut kernel, n.args[0])),
            Op::Binary(b) => {
                if *b == BinaryOp::Div && !dtype.is_float() {
                    return Err(fail(id, "integer division is checked by the runtime"));
                }
                let (a, c) = (operand(&mut kernel, n.args[0]), operand(&mut kernel, n.args[1]));
                Inst::Binary(*b, a, c)
            }
            Op::Compare(c) => {
                let (a, b) = (operand(&mut kernel, n.args[0]), operand(&mut kernel, n.args[1]));
                Inst::Compare(*c, a, b)
            }
            Op::Select => {
                let (c, a, b) =
                    (operand(&mut kernel, n.args[0]), operand(&mut kernel, n.args[1]), operand(&mut kernel, n.args[2]));
                Inst::Select(c, a, b)
            }
            Op::Cast => Inst::Cast(operand(&mut kernel, n.args[0])),
            // A reduction root whose operand is not fused: its body reads the operand.
            Op::Reduce { .. } if id == root => {
                let i = operand(&mut kernel, n.args[0]);
                at.insert(id, i);
                continue;
            }
            Op::Input { .. }
            | Op::Param { .. }
            | Op::Iota { .. }
            | Op::Rng { .. }
            | Op::Reduce { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Matmul
            | Op::Conv2d(_)
            | Op::Conv2dGradInput(_)
            | Op::Conv2dGradWeight(_)
            | Op::Gather { .. }
            | Op::ScatterAdd { .. } => {
                return Err(fail(id, "not an elementwise op"));
            }
        };
        kernel.body.push((inst, dtype));
        at.insert(id, kernel.body.len() - 1);
    }
    // The root's value (for a reduction, the reduced value) is the body's result; make it the
    // last instruction.
    let result_node = if reduce.is_some() && !at.contains_key(&root) { graph.node(root).args[0] } else { root };
    let r = at[&result_node];
    if r + 1 != kernel.body.len() {
        let (inst, dt) = kernel.body[r].clone();
        kernel.body.push((inst, dt));
    }
    for &node in side_outputs {
        if graph.ty(node).dims() != out.dims() {
            return Err(fail(node, "a side output must have the shape of the kernel's iteration space"));
        }
        let value = *at.get(&node).ok_or_else(|| fail(node, "a side output must be a member"))?;
        let strides = contiguous_strides(out.dims());
        kernel.side_outputs.push(SideOutput { node, value, dtype: graph.ty(node).dtype, strides });
    }
    Ok(kernel.collapse().interchange(4).collapse().block_transpose())
}

/// How a kernel reads the materialized operand of a movement op `n` over an output of extents
/// `out`: strides and an offset over the operand's row-major buffer.
fn strided_read(graph: &Graph, n: &kiln_ir::Node, out: &[usize]) -> (Vec<i64>, i64) {
    let src = graph.ty(n.args[0]).dims();
    let ss = contiguous_strides(src);
    match n.op.movement() {
        Some(Movement::Broadcast { dims }) => {
            let mut strides = vec![0i64; out.len()];
            for (i, &d) in dims.iter().enumerate() {
                strides[d] = if src[i] == 1 { 0 } else { ss[i] };
            }
            (strides, 0)
        }
        Some(Movement::Reshape) => (contiguous_strides(out), 0),
        Some(Movement::Slice { start, step, .. }) => {
            let strides = ss.iter().zip(step).map(|(s, k)| s * *k as i64).collect();
            let offset = ss.iter().zip(start).map(|(s, a)| s * *a as i64).sum();
            (strides, offset)
        }
        Some(Movement::Permute { perm }) => (perm.iter().map(|p| ss[*p]).collect(), 0),
        // Not read through strides: read as it is.
        Some(Movement::Pad { .. } | Movement::Concat { .. }) | None => (contiguous_strides(out), 0),
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel @{}(", self.name)?;
        for (k, i) in self.inputs.iter().enumerate() {
            if k > 0 {
                f.write_str(", ")?;
            }
            write!(f, "in{k}: %{} {} strides={:?}", i.node.index(), i.dtype, i.strides)?;
            if i.offset != 0 {
                write!(f, " offset={}", i.offset)?;
            }
        }
        writeln!(f, ") -> {} {{", self.out)?;
        writeln!(f, "  for i in {} {{", kiln_ir::Shape::new(self.space.clone()))?;
        for (j, (inst, dt)) in self.body.iter().enumerate() {
            let rhs = match inst {
                Inst::Load(k) => format!("load in{k}[i]"),
                Inst::Const(v) => format!("const {v:?}"),
                Inst::Unary(u, x) => format!("{} v{x}", u.name()),
                Inst::Binary(b, x, y) => format!("{} v{x}, v{y}", b.name()),
                Inst::Compare(c, x, y) => format!("{} v{x}, v{y}", c.name()),
                Inst::Select(c, x, y) => format!("select v{c}, v{x}, v{y}"),
                Inst::Cast(x) => format!("cast v{x}"),
            };
            writeln!(f, "    v{j} = {rhs} : {dt}")?;
        }
        let last = self.body.len().saturating_sub(1);
        for (j, side) in self.side_outputs.iter().enumerate() {
            writeln!(f, "    store side{j}[i] = v{} ; %{} {}", side.value, side.node.index(), side.dtype)?;
        }
        match &self.reduce {
            None => writeln!(f, "    store out[i] = v{last}")?,
            Some((op, axes)) => writeln!(
                f,
                "    out[i without axes {axes:?}] {}= v{last}",
                match op {
                    ReduceOp::Sum => "+",
                    ReduceOp::Max => "max",
                }
            )?,
        }
        f.write_str("  }\n}\n")
    }
}
