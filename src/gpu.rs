//! The GPU functions of a compiled graph: what the GPU backend will launch, in execution
//! order, rendered as CUDA C by [`kiln_codegen::gpu`] from the same partition the JIT runs.
//!
//! Fused kernels (contraction epilogues included) come from the kernel loop IR; the
//! contractions and movement ops of other groups from [`kiln_codegen::gpu::render_node`].
//! `kiln dump --stage cuda` prints [`module`]; `tests/gpu.rs` compiles it with NVRTC and runs
//! it on the CPU against the interpreter. See `docs/gpu.md`.

use kiln_ir::{NodeId, Op};
use kiln_passes::fuse::{GroupKind, contraction_of};
use kiln_passes::plan::buffer_of;

use crate::Executable;

/// One generated GPU function.
#[derive(Clone, Debug)]
pub struct GpuFunction {
    /// Its symbol (`kiln_kN` for a fused kernel, `kiln_nN` for node `%N`).
    pub symbol: String,
    /// Its CUDA C.
    pub source: String,
    /// The nodes whose row-major buffers it takes, in parameter order.
    pub inputs: Vec<NodeId>,
    /// The node whose buffer it writes.
    pub output: NodeId,
}

/// Every GPU function of `exe`, in execution order. Random numbers, `iota` and integer
/// products and divisions have none yet (reshapes need none: they alias their source).
pub fn functions(exe: &Executable) -> Vec<GpuFunction> {
    let g = exe.graph();
    let mut out = Vec::new();
    for (group, k) in exe.groups() {
        let node = match group.kind {
            GroupKind::Contraction => Some(contraction_of(g, group)),
            GroupKind::Movement => Some(group.root()),
            GroupKind::Op if matches!(g.node(group.root()).op, Op::Gather { .. } | Op::ScatterAdd { .. }) => {
                Some(group.root())
            }
            _ => None,
        };
        // The contraction first: an epilogue kernel reads its product.
        if let Some(node) = node {
            let symbol = format!("kiln_n{}", node.index());
            if let Some(source) = kiln_codegen::gpu::render_node(g, node, &symbol) {
                out.push(GpuFunction { symbol, source, inputs: g.node(node).args.clone(), output: node });
            }
        }
        if let Some(k) = k {
            let symbol = format!("kiln_{}", k.kernel.name);
            let source = kiln_codegen::gpu::render(&k.kernel, &symbol);
            let inputs = k.kernel.inputs.iter().map(|i| buffer_of(g, i.node)).collect();
            out.push(GpuFunction { symbol, source, inputs, output: group.root() });
        }
    }
    out
}

/// One CUDA translation unit with every GPU function of `exe` (for NVRTC).
pub fn module(exe: &Executable) -> String {
    let mut c = kiln_codegen::gpu::module(&[]);
    for f in functions(exe) {
        c.push('\n');
        c.push_str(&f.source);
    }
    c
}
