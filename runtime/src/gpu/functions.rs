//! The GPU functions of a schedule: what the GPU backend launches, in execution order,
//! rendered as CUDA C by [`kiln_codegen::gpu`] from the same schedule the JIT runs.
//!
//! Fused kernels (contraction epilogues included) come from the schedule's kernels; the
//! contractions and movement ops of other groups from [`kiln_codegen::gpu::render_node`].

use kiln_codegen::gpu::{Launch, Strides, fusable_epilogue, node_forms, product_forms, render_product};
use kiln_ir::{NodeId, Op};
use kiln_passes::fuse::{GroupKind, contraction_of};
use kiln_passes::plan::buffer_of;

use crate::schedule::{Contraction, GemmOperand, Schedule, Work};

/// One form of a GPU function: its code and how it is launched.
#[derive(Clone, Debug)]
pub struct Variant {
    /// What distinguishes it (`32x32 tiles`, `threads`, `blocks`; empty for a function with
    /// one form).
    pub form: String,
    /// Its symbol.
    pub symbol: String,
    /// Its CUDA C.
    pub source: String,
    /// How it is launched.
    pub launch: Launch,
}

/// One generated GPU function, in one or more interchangeable forms (same parameters, same
/// result): products and convolutions (and their gradients) have several, which the executable
/// may choose among by measurement ([`super::GpuExecutable::tune`]).
#[derive(Clone, Debug)]
pub struct GpuFunction {
    /// Its forms, the default first. The default's symbol is `kiln_kN` for a fused kernel,
    /// `kiln_nN` for node `%N`; the others' add a tag (`kiln_nN_t64`).
    pub variants: Vec<Variant>,
    /// The nodes whose row-major buffers it takes, in parameter order (reshapes resolved to
    /// the node whose bytes they share).
    pub inputs: Vec<NodeId>,
    /// The node whose buffer it writes.
    pub output: NodeId,
    /// The side outputs of a multi-output kernel, whose buffers it takes after its output's.
    pub side_outputs: Vec<NodeId>,
    /// The position of its group in the partition.
    pub group: usize,
    /// For `scatter_add`: its index node and the table's extent. The function then takes the
    /// index's inverse ([`kiln_codegen::gpu::inverse_index`]: row starts, then update
    /// positions, two `int` buffers) after its inputs.
    pub inverse: Option<(NodeId, usize)>,
    /// Whether it checks its operands on the device and takes the program's fault words
    /// before its output ([`kiln_codegen::gpu::checks_on_device`]).
    pub checked: bool,
}

impl GpuFunction {
    /// The default form's symbol.
    pub fn symbol(&self) -> &str {
        &self.variants[0].symbol
    }

    /// The default form's CUDA C.
    pub fn source(&self) -> &str {
        &self.variants[0].source
    }

    /// How the default form is launched.
    pub fn launch(&self) -> Launch {
        self.variants[0].launch
    }
}

/// A function of one form.
fn single(symbol: String, source: String, launch: Launch) -> Vec<Variant> {
    vec![Variant { form: String::new(), symbol, source, launch }]
}

/// Every GPU function of `schedule`'s steps, in execution order (reshapes need none: they
/// alias their source; output copies are copies).
pub fn functions(schedule: &Schedule) -> Vec<GpuFunction> {
    let g = &schedule.graph;
    let mut out = Vec::new();
    for (gi, group) in schedule.groups.iter().enumerate() {
        let step = &schedule.steps[gi];
        // The node whose function the group launches: `render_node` has one for the ops of
        // `Op` groups it renders (gather, scatter_add, iota, rng, integer div and matmul) and
        // none for the others, which the program then reports as unsupported.
        let node = match group.kind {
            GroupKind::Contraction => Some(contraction_of(g, group)),
            GroupKind::Movement | GroupKind::Op => Some(group.root()),
            GroupKind::Elementwise => None,
        };
        // The contraction first: an epilogue kernel reads its product. A float matmul reads
        // its operands as the JIT's GEMM does, through a transpose folded into the group.
        let gemm = match step.work {
            Work::Contraction { call: Contraction::Gemm(call), .. } if g.ty(call.product).dtype.is_float() => {
                Some(call)
            }
            _ => None,
        };
        if let Some(call) = gemm {
            let symbol = format!("kiln_n{}", call.product.index());
            let strides = |o: &GemmOperand| {
                let (row, col, batch) = o.strides();
                Strides { row: row as i64, col: col as i64, batch: batch as i64 }
            };
            let shape = call.shape;
            let dtype = g.ty(call.product).dtype;
            let (a, b) = (strides(&call.a), strides(&call.b));
            let operands = vec![call.a.node, call.b.node];
            let epilogue = match &step.work {
                Work::Contraction { epilogue, .. } => epilogue.as_ref(),
                _ => None,
            };
            let dims = g.ty(call.product).dims();
            let fused = epilogue.and_then(|e| Some((e, fusable_epilogue(e, call.product, dims)?)));
            let variants = product_forms(shape)
                .into_iter()
                .enumerate()
                .map(|(v, form)| {
                    let symbol = if v == 0 { symbol.clone() } else { format!("{symbol}_{}", form.tag()) };
                    let (source, launch) = render_product(&symbol, dtype, shape, (a, b), fused, form);
                    Variant { form: form.name(), symbol, source, launch }
                })
                .collect();
            let (inputs, output) = match fused {
                Some((e, p)) => {
                    let mut inputs = operands;
                    let others = e.inputs.iter().enumerate().filter(|(i, _)| *i != p);
                    inputs.extend(others.map(|(_, i)| buffer_of(g, i.node)));
                    (inputs, group.root())
                }
                None => (operands, call.product),
            };
            out.push(GpuFunction {
                variants,
                inputs,
                output,
                side_outputs: Vec::new(),
                group: gi,
                inverse: None,
                checked: false,
            });
            if output == group.root() {
                // No epilogue, or it ran in the product's registers.
                continue;
            }
        } else if let Some(node) = node {
            let base = format!("kiln_n{}", node.index());
            let forms = node_forms(g, node);
            let several = forms.len() > 1;
            let mut variants = Vec::new();
            for (v, form) in forms.into_iter().enumerate() {
                let symbol = if v == 0 { base.clone() } else { format!("{base}_{}", form.tag()) };
                if let Some((source, launch)) = kiln_codegen::gpu::render_node(g, node, &symbol, form) {
                    let form = if several { form.name() } else { String::new() };
                    variants.push(Variant { form, symbol, source, launch });
                }
            }
            if !variants.is_empty() {
                let inputs = g.node(node).args.iter().map(|a| buffer_of(g, *a)).collect();
                let checked = kiln_codegen::gpu::checks_on_device(g, node);
                let inverse = match g.node(node).op {
                    Op::ScatterAdd { axis } if !checked => {
                        Some((buffer_of(g, g.node(node).args[1]), g.ty(node).dims()[axis]))
                    }
                    _ => None,
                };
                out.push(GpuFunction {
                    variants,
                    inputs,
                    output: node,
                    side_outputs: Vec::new(),
                    group: gi,
                    inverse,
                    checked,
                });
            }
        }
        let Some(kernel) = schedule.kernel(gi) else { continue };
        let symbol = format!("kiln_{}", kernel.name);
        let source = kiln_codegen::gpu::render(kernel, &symbol);
        let inputs = kernel.inputs.iter().map(|i| buffer_of(g, i.node)).collect();
        let launch = kiln_codegen::gpu::launch_of(kernel);
        let variants = single(symbol, source, launch);
        let side_outputs = kernel.side_outputs.iter().map(|o| o.node).collect();
        out.push(GpuFunction {
            variants,
            inputs,
            output: group.root(),
            side_outputs,
            group: gi,
            inverse: None,
            checked: false,
        });
    }
    out
}

/// One CUDA translation unit with the helpers and every form of every function of
/// `functions`, each preceded by how it is launched (and, for a function of several forms,
/// which form it is).
pub fn module(functions: &[GpuFunction]) -> String {
    let mut c = kiln_codegen::gpu::module(&[]);
    for f in functions {
        for (v, variant) in f.variants.iter().enumerate() {
            let launch = match variant.launch {
                Launch::Elements(n) => format!("grid-stride over {n} items"),
                Launch::Blocks { units, threads } => format!("blocks of {threads} threads over {units} units"),
            };
            let form = match (v, f.variants.len()) {
                (_, 1) => String::new(),
                (0, n) => format!("; form 1 of {n}: {} (the default)", variant.form),
                (v, n) => format!("; form {} of {n} of {}: {}", v + 1, f.symbol(), variant.form),
            };
            c.push_str(&format!("\n/* launch: {launch}{form} */\n"));
            c.push_str(&variant.source);
        }
    }
    c
}
