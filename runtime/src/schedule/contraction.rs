//! How a contraction group runs: a GEMM call (its shape, each operand as strides over a
//! row-major buffer, looking through a transpose folded into the group) or a convolution (its
//! geometry, and whether it shares im2col columns with another convolution of the step).
//! Every backend translates these; none re-derives them.

use kiln_codegen::kernel::KernelInput;
pub use kiln_ir::ConvKind;
use kiln_ir::{Graph, NodeId};
use kiln_passes::fuse::{Group, contraction_of, epilogue_split, transpose_of};

use crate::conv::ConvGeometry;
use crate::gemm::{self, MatmulShape};

/// One operand of a GEMM call: the buffer it reads and whether it reads it transposed.
#[derive(Clone, Copy, Debug)]
pub struct GemmOperand {
    /// The buffer it reads.
    pub node: NodeId,
    /// Whether the product reads `node` transposed (a `permute` folded into the group).
    pub transposed: bool,
    /// Rows of the operand as the product sees it.
    pub rows: usize,
    /// Columns of the operand as the product sees it.
    pub cols: usize,
}

impl GemmOperand {
    /// The operand `id` of a matmul in `group`, looking through a transpose folded into the
    /// group (a transpose outside it is a materialized buffer like any other).
    fn new(graph: &Graph, group: &Group, id: NodeId) -> Self {
        let dims = graph.ty(id).dims();
        let (rows, cols) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        match transpose_of(graph, id).filter(|_| group.members.contains(&id)) {
            Some(src) => GemmOperand { node: src, transposed: true, rows, cols },
            None => GemmOperand { node: id, transposed: false, rows, cols },
        }
    }

    /// Element strides between rows, columns and batch entries over the operand's row-major
    /// buffer.
    pub fn strides(&self) -> (isize, isize, isize) {
        let (r, c) = (self.rows as isize, self.cols as isize);
        let (row_stride, col_stride) = if self.transposed { (1, r) } else { (c, 1) };
        (row_stride, col_stride, r * c)
    }

    /// Strides over the row-major buffer at `ptr`.
    pub(crate) fn operand(&self, ptr: *const u8) -> gemm::Operand {
        let (row_stride, col_stride, batch_stride) = self.strides();
        gemm::Operand { ptr, row_stride, col_stride, batch_stride }
    }
}

/// A matmul run by GEMM.
#[derive(Clone, Copy, Debug)]
pub struct GemmCall {
    /// Batch, rows, columns and inner extent.
    pub shape: MatmulShape,
    /// The left operand.
    pub a: GemmOperand,
    /// The right operand.
    pub b: GemmOperand,
    /// The matmul node (the group's root, unless an epilogue follows it).
    pub product: NodeId,
}

impl GemmCall {
    /// The GEMM of `group`: its matmul is the root, or the last member before the epilogue.
    fn new(graph: &Graph, group: &Group) -> Self {
        let product = contraction_of(graph, group);
        let node = graph.node(product);
        let (a, b) = (GemmOperand::new(graph, group, node.args[0]), GemmOperand::new(graph, group, node.args[1]));
        let dims = graph.ty(product).dims();
        let r = dims.len();
        let batch = dims[..r - 2].iter().product();
        GemmCall { shape: MatmulShape { batch, m: dims[r - 2], n: dims[r - 1], k: a.cols }, a, b, product }
    }
}

/// How a contraction group runs.
#[derive(Clone, Copy, Debug)]
pub enum Contraction {
    /// A matmul on GEMM.
    Gemm(GemmCall),
    /// A convolution (`lhs`, `rhs` are its operands in op order) on im2col + GEMM.
    Conv {
        /// Which convolution.
        kind: ConvKind,
        /// Its geometry (of the forward convolution it belongs to).
        geometry: ConvGeometry,
        /// The first operand.
        lhs: NodeId,
        /// The second operand.
        rhs: NodeId,
        /// Whether it shares im2col columns.
        cols: SharedCols,
    },
}

/// Whether a convolution shares its im2col columns: a forward convolution and the weight
/// gradient of the same input and geometry (every training step has both) build the same
/// `K × N·P` matrix, so the forward keeps it in a buffer and the gradient reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SharedCols {
    /// Columns are built for this call alone.
    No,
    /// The forward writes its columns into kept buffer `slot`.
    Keep(usize),
    /// The weight gradient reads the columns in kept buffer `slot`.
    Reuse(usize),
}

/// Pairs each weight gradient with an earlier forward convolution of the same input and
/// geometry (one group), giving both a kept-columns slot; returns the number of slots.
pub(crate) fn share_columns(contractions: &mut [Option<Contraction>]) -> usize {
    let mut slots = 0;
    let mut forwards: Vec<(usize, NodeId, ConvGeometry)> = Vec::new();
    for i in 0..contractions.len() {
        let Some(Contraction::Conv { kind, geometry, lhs, .. }) = contractions[i] else { continue };
        if geometry.attrs.groups > 1 {
            continue;
        }
        match kind {
            ConvKind::Forward => forwards.push((i, lhs, geometry)),
            ConvKind::GradWeight => {
                let Some(&(f, _, _)) = forwards.iter().find(|(_, x, g)| *x == lhs && *g == geometry) else { continue };
                let slot = match contractions[f] {
                    Some(Contraction::Conv { cols: SharedCols::Keep(s), .. }) => s,
                    _ => {
                        slots += 1;
                        slots - 1
                    }
                };
                if let Some(Contraction::Conv { cols, .. }) = &mut contractions[f] {
                    *cols = SharedCols::Keep(slot);
                }
                if let Some(Contraction::Conv { cols, .. }) = &mut contractions[i] {
                    *cols = SharedCols::Reuse(slot);
                }
            }
            ConvKind::GradInput => {}
        }
    }
    slots
}

impl Contraction {
    /// How `group` (a contraction group of `graph`) runs.
    pub fn new(graph: &Graph, group: &Group) -> Self {
        if epilogue_split(graph, group).is_some() {
            return Contraction::Gemm(GemmCall::new(graph, group));
        }
        let root = group.root();
        let node = graph.node(root);
        let (lhs, rhs) = (node.args[0], node.args[1]);
        let dims = |id: NodeId| graph.ty(id).dims();
        let Some((kind, attrs)) = node.op.conv() else { return Contraction::Gemm(GemmCall::new(graph, group)) };
        let geometry = match kind {
            // conv2d(x, w) -> y
            ConvKind::Forward => ConvGeometry::new(dims(lhs), dims(rhs), dims(root), attrs),
            // conv2d_grad_input(dy, w) -> dx
            ConvKind::GradInput => ConvGeometry::new(dims(root), dims(rhs), dims(lhs), attrs),
            // conv2d_grad_weight(x, dy) -> dw
            ConvKind::GradWeight => ConvGeometry::new(dims(lhs), dims(root), dims(rhs), attrs),
        };
        Contraction::Conv { kind, geometry, lhs, rhs, cols: SharedCols::No }
    }
}

/// True if every element a kernel input's offset and strides reach over `space` lies inside
/// a buffer of `len` elements (always, for an empty space).
pub fn fits(input: &KernelInput, space: &[usize], len: usize) -> bool {
    let reach: i64 =
        input.offset + input.strides.iter().zip(space).map(|(s, d)| s * (*d as i64 - 1).max(0)).sum::<i64>();
    space.contains(&0) || (input.offset >= 0 && (reach as usize) < len)
}
