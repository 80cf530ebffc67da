//! The GPU functions of a partitioned graph: what the GPU backend launches, in execution
//! order, rendered as CUDA C by [`kiln_codegen::gpu`] from the same partition the JIT runs.
//!
//! Fused kernels (contraction epilogues included) come from the kernel loop IR; the
//! contractions and movement ops of other groups from [`kiln_codegen::gpu::render_node`].

use kiln_codegen::gpu::{Launch, Strides, fusable_epilogue, render_gemm, render_matmul};
use kiln_codegen::kernel::{LowerError, lower_group};
use kiln_ir::{Graph, NodeId, Op};
use kiln_passes::fuse::{Group, GroupKind, contraction_of, epilogue_split};
use kiln_passes::plan::buffer_of;

use crate::jit::Contraction;

/// One generated GPU function.
#[derive(Clone, Debug)]
pub struct GpuFunction {
    /// Its symbol (`kiln_kN` for a fused kernel, `kiln_nN` for node `%N`).
    pub symbol: String,
    /// Its CUDA C.
    pub source: String,
    /// The nodes whose row-major buffers it takes, in parameter order (reshapes resolved to
    /// the node whose bytes they share).
    pub inputs: Vec<NodeId>,
    /// The node whose buffer it writes.
    pub output: NodeId,
    /// The position of its group in the partition.
    pub group: usize,
    /// How it is launched.
    pub launch: Launch,
    /// For `scatter_add`: its index node and the table's extent. The function then takes the
    /// index's inverse ([`kiln_codegen::gpu::inverse_index`]: row starts, then update
    /// positions, two `int` buffers) after its inputs.
    pub inverse: Option<(NodeId, usize)>,
}

/// Products with fewer rows or columns than this run a thread per output element; others are
/// tiled ([`render_gemm`]).
pub const TILED_MIN: usize = 16;

/// Every GPU function of `groups` (a partition of `graph`, in execution order), in execution
/// order. Integer products and divisions have none yet (reshapes need none: they alias their
/// source).
pub fn functions(graph: &Graph, groups: &[Group]) -> Result<Vec<GpuFunction>, LowerError> {
    let g = graph;
    let mut out = Vec::new();
    for (gi, group) in groups.iter().enumerate() {
        let node = match group.kind {
            GroupKind::Contraction => Some(contraction_of(g, group)),
            GroupKind::Movement => Some(group.root()),
            GroupKind::Op
                if matches!(
                    g.node(group.root()).op,
                    Op::Gather { .. } | Op::ScatterAdd { .. } | Op::Iota { .. } | Op::Rng { .. }
                ) =>
            {
                Some(group.root())
            }
            _ => None,
        };
        // The contraction first: an epilogue kernel reads its product. A float matmul reads
        // its operands as the JIT's GEMM does, through a transpose folded into the group.
        let gemm = match group.kind {
            GroupKind::Contraction => match Contraction::new(g, group) {
                Contraction::Gemm(call) if g.ty(call.product).dtype.is_float() => Some(call),
                _ => None,
            },
            _ => None,
        };
        if let Some(call) = gemm {
            let symbol = format!("kiln_n{}", call.product.index());
            let strides = |o: &crate::jit::GemmOperand| {
                let (row, col, batch) = o.strides();
                Strides { row: row as i64, col: col as i64, batch: batch as i64 }
            };
            let shape = call.shape;
            let dtype = g.ty(call.product).dtype;
            let (a, b) = (strides(&call.a), strides(&call.b));
            let operands = vec![call.a.node, call.b.node];
            let epilogue = match epilogue_split(g, group) {
                Some(at) => Some(lower_group(g, &group.members[at..])?),
                None => None,
            };
            let dims = g.ty(call.product).dims();
            let fused = epilogue.as_ref().and_then(|e| Some((e, fusable_epilogue(e, call.product, dims)?)));
            let (source, launch) = if shape.m < TILED_MIN || shape.n < TILED_MIN {
                // A few rows or columns: a thread per output element beats idle tiles.
                let launch = Launch::Elements(g.ty(call.product).numel());
                (render_matmul(&symbol, dtype, shape, a, b, fused), launch)
            } else {
                render_gemm(&symbol, dtype, shape, a, b, fused)
            };
            let (inputs, output) = match fused {
                Some((e, p)) => {
                    let mut inputs = operands;
                    let others = e.inputs.iter().enumerate().filter(|(i, _)| *i != p);
                    inputs.extend(others.map(|(_, i)| buffer_of(g, i.node)));
                    (inputs, group.root())
                }
                None => (operands, call.product),
            };
            out.push(GpuFunction { symbol, source, inputs, output, group: gi, launch, inverse: None });
            if output == group.root() {
                // No epilogue, or it ran in the product's registers.
                continue;
            }
        } else if let Some(node) = node {
            let symbol = format!("kiln_n{}", node.index());
            if let Some(source) = kiln_codegen::gpu::render_node(g, node, &symbol) {
                let inputs = g.node(node).args.iter().map(|a| buffer_of(g, *a)).collect();
                let launch = kiln_codegen::gpu::launch_of_node(g, node);
                let inverse = match g.node(node).op {
                    Op::ScatterAdd { axis } => Some((buffer_of(g, g.node(node).args[1]), g.ty(node).dims()[axis])),
                    _ => None,
                };
                out.push(GpuFunction { symbol, source, inputs, output: node, group: gi, launch, inverse });
            }
        }
        let members = match group.kind {
            GroupKind::Elementwise => &group.members[..],
            GroupKind::Contraction => match epilogue_split(g, group) {
                Some(at) => &group.members[at..],
                None => continue,
            },
            GroupKind::Op | GroupKind::Movement => continue,
        };
        let kernel = lower_group(g, members)?;
        let symbol = format!("kiln_{}", kernel.name);
        let source = kiln_codegen::gpu::render(&kernel, &symbol);
        let inputs = kernel.inputs.iter().map(|i| buffer_of(g, i.node)).collect();
        let launch = kiln_codegen::gpu::launch_of(&kernel);
        out.push(GpuFunction { symbol, source, inputs, output: group.root(), group: gi, launch, inverse: None });
    }
    Ok(out)
}

/// One CUDA translation unit with the helpers and every function of `functions`, each
/// preceded by how it is launched.
pub fn module(functions: &[GpuFunction]) -> String {
    let mut c = kiln_codegen::gpu::module(&[]);
    for f in functions {
        let launch = match f.launch {
            Launch::Elements(n) => format!("grid-stride over {n} items"),
            Launch::Blocks { units, threads } => format!("blocks of {threads} threads over {units} units"),
        };
        c.push_str(&format!("\n/* launch: {launch} */\n"));
        c.push_str(&f.source);
    }
    c
}
