//! The GPU execution of a graph, resolved before anything runs: every buffer the device
//! holds and every launch and copy, in order.
//!
//! It translates the graph's [`Schedule`], the one the JIT runs: each input, parameter and
//! output gets a buffer of its own; every other result lives in one arena at the schedule's
//! offset (a contraction's product before its epilogue in the product scratch, past the
//! plan's peak); a reshape is the bytes of its source; the schedule's output copies are
//! copies.

use kiln_ir::{Graph, NodeId, Op, TensorType};
use kiln_passes::fuse::Mode;
use kiln_passes::plan::buffer_of;

use super::GpuError;
use super::functions::{GpuFunction, functions, module};
use crate::schedule::{Buffer, Schedule, Work};

/// What a device buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Intermediate results, at the memory plan's offsets.
    Arena,
    /// The graph's input at this position of [`GpuProgram::leaves`].
    Leaf(usize),
    /// The graph's output at this position.
    Output(usize),
    /// Half of the inverse of the index checked by [`GpuProgram::index_checks`] at this
    /// position (row starts, or update positions), built on the host when the index is set.
    Inverse(usize),
    /// The two fault words of the functions that check operands on the device
    /// ([`kiln_codegen::gpu::checks_on_device`]): zero, or the failing node + 1 and the
    /// operand at fault. Read after every run and cleared.
    Faults,
}

/// A device buffer of the program.
#[derive(Clone, Debug)]
pub struct BufferSpec {
    /// Its size.
    pub bytes: usize,
    /// What it holds.
    pub role: Role,
}

/// A place in device memory: a buffer of the program and a byte offset into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Place {
    /// The buffer's position in [`GpuProgram::buffers`].
    pub buffer: usize,
    /// Bytes from its start.
    pub offset: usize,
}

/// One step of the program.
#[derive(Clone, Debug)]
pub enum GpuStep {
    /// Launch function `function` (in the form the executable chose, launched as that form
    /// says) with these arguments (its inputs, then its output).
    Launch {
        /// The position in [`GpuProgram::functions`].
        function: usize,
        /// Pointer arguments.
        args: Vec<Place>,
    },
    /// Copy `bytes` bytes on the device.
    Copy {
        /// Source.
        from: Place,
        /// Destination.
        to: Place,
        /// Length.
        bytes: usize,
    },
}

/// A leaf of the graph (an input or a parameter) with its buffer.
#[derive(Clone, Debug)]
pub struct Leaf {
    /// Its name.
    pub name: String,
    /// Its type.
    pub ty: TensorType,
    /// Its buffer.
    pub buffer: usize,
    /// Whether it is a parameter (else a data input).
    pub param: bool,
}

/// An index tensor checked on the host before it is uploaded: every element must lie in
/// `0..extent` (the interpreter reports an index out of range as an error, so the device
/// never reads or writes outside a table).
#[derive(Clone, Debug)]
pub struct IndexCheck {
    /// The leaf holding the indices.
    pub leaf: String,
    /// The extent of the indexed axis.
    pub extent: usize,
    /// The op that indexes with it.
    pub op: &'static str,
    /// For `scatter_add`: the buffers of the index's inverse (row starts, update positions),
    /// filled from the index on the host whenever it is set.
    pub inverse: Option<(usize, usize)>,
}

/// A graph resolved for a GPU: its functions and module, buffers, steps and leaves.
#[derive(Clone, Debug)]
pub struct GpuProgram {
    /// The graph it runs (optimized by the caller).
    pub graph: Graph,
    /// Every function, in the order they are first launched.
    pub functions: Vec<GpuFunction>,
    /// The CUDA C of all of them, one translation unit.
    pub module: String,
    /// Every device buffer (the arena first).
    pub buffers: Vec<BufferSpec>,
    /// The launches and copies of one run, in order.
    pub steps: Vec<GpuStep>,
    /// The graph's inputs then parameters, in the graph's order.
    pub leaves: Vec<Leaf>,
    /// The graph's outputs: name, type and buffer.
    pub outputs: Vec<(String, TensorType, usize)>,
    /// Index leaves checked before upload.
    pub index_checks: Vec<IndexCheck>,
    /// The fault words' buffer, if any function checks operands on the device.
    pub faults: Option<usize>,
}

/// Bytes of the fault words.
pub const FAULT_BYTES: usize = 16;

/// Resolves `graph` for a GPU (see the module's header). Fails naming the node when a group
/// has no GPU form.
pub fn program(graph: &Graph) -> Result<GpuProgram, GpuError> {
    // The CUDA convolutions are channels-first only: channels-last ones run between two
    // transposes (same values).
    let converted = kiln_passes::layout::channels_first_if_needed(graph).map_err(|e| GpuError::Unsupported {
        op: "conv2d",
        node: 0,
        why: format!("cannot convert to channels-first: {e}"),
    })?;
    let g = converted.as_ref().unwrap_or(graph);
    let unsupported = |id: NodeId, why: &str| GpuError::Unsupported {
        op: g.node(id).op.name(),
        node: id.index(),
        why: why.to_string(),
    };
    let schedule = Schedule::build(g, Mode::Fused)?;
    let funcs = functions(&schedule);

    let mut buffers = vec![BufferSpec { bytes: 0, role: Role::Arena }];
    let mut place: Vec<Option<Place>> = vec![None; g.len()];
    let mut leaves = Vec::new();
    for (id, node) in g.inputs().chain(g.params()) {
        let ty = g.ty(id).clone();
        buffers.push(BufferSpec { bytes: ty.size_bytes(), role: Role::Leaf(leaves.len()) });
        place[id.index()] = Some(Place { buffer: buffers.len() - 1, offset: 0 });
        let param = matches!(node.op, Op::Param { .. });
        leaves.push(Leaf {
            name: node.op.leaf_name().unwrap_or_default().to_string(),
            ty,
            buffer: buffers.len() - 1,
            param,
        });
    }
    let mut outputs = Vec::new();
    for (i, o) in g.outputs().iter().enumerate() {
        let ty = g.ty(o.value).clone();
        buffers.push(BufferSpec { bytes: ty.size_bytes(), role: Role::Output(i) });
        outputs.push((o.name.clone(), ty, buffers.len() - 1));
    }
    // The device's place of a schedule buffer.
    let inputs = g.inputs().count();
    let device = |b: Buffer| match b {
        Buffer::Input(i) => Place { buffer: 1 + i, offset: 0 },
        Buffer::Param(i) => Place { buffer: 1 + inputs + i, offset: 0 },
        Buffer::Output(i) => Place { buffer: outputs[i].2, offset: 0 },
        Buffer::Arena { offset, .. } => Place { buffer: 0, offset },
    };
    // A contraction's product, when a separate epilogue follows, in the product scratch (the
    // device has no im2col columns).
    let product = device(schedule.scratch.product);
    let product_bytes = funcs
        .iter()
        .filter(|f| f.output != schedule.groups[f.group].root())
        .map(|f| g.ty(f.output).size_bytes())
        .max()
        .unwrap_or(0);
    buffers[0].bytes = product.offset + product_bytes;

    let mut index_checks = Vec::new();
    let faults = funcs.iter().any(|f| f.checked).then(|| {
        buffers.push(BufferSpec { bytes: FAULT_BYTES, role: Role::Faults });
        buffers.len() - 1
    });
    let mut steps = Vec::new();
    let mut by_group: Vec<Vec<usize>> = vec![Vec::new(); schedule.groups.len()];
    for (fi, f) in funcs.iter().enumerate() {
        by_group[f.group].push(fi);
    }
    for step in &schedule.steps {
        let root = step.node;
        let gi = match step.work {
            Work::Alias { source } => {
                // A reshape: the same bytes as its source.
                place[root.index()] = place[source.index()];
                continue;
            }
            Work::CopyOut(i) => {
                let from = place[root.index()].ok_or_else(|| unsupported(root, "internal: output not computed"))?;
                let to = Place { buffer: outputs[i].2, offset: 0 };
                if from != to {
                    steps.push(GpuStep::Copy { from, to, bytes: g.ty(root).size_bytes() });
                }
                continue;
            }
            _ => step.group.unwrap_or_default(),
        };
        if by_group[gi].is_empty() {
            return Err(unsupported(root, "the GPU backend has no kernel for it yet"));
        }
        let node = g.node(root);
        if let Op::Gather { axis } | Op::ScatterAdd { axis } = node.op
            && let Some(name) = kiln_codegen::gpu::host_index(g, root)
        {
            // Indices from an input or parameter: checked (and inverted) on the host when set.
            // Others are checked on the device.
            // A gather indexes its operand; a scatter_add, its result.
            let table = if let Op::Gather { .. } = node.op { g.ty(node.args[0]) } else { g.ty(root) }.dims()[axis];
            let idx = node.args[1];
            let idx = buffer_of(g, idx);
            let inverse = matches!(node.op, Op::ScatterAdd { .. }).then(|| {
                let at = index_checks.len();
                buffers.push(BufferSpec { bytes: (table + 1) * 4, role: Role::Inverse(at) });
                buffers.push(BufferSpec { bytes: g.ty(idx).numel() * 4, role: Role::Inverse(at) });
                (buffers.len() - 2, buffers.len() - 1)
            });
            index_checks.push(IndexCheck { leaf: name.to_string(), extent: table, op: node.op.name(), inverse });
        }
        let out = device(step.out);
        for &fi in &by_group[gi] {
            let f = &funcs[fi];
            let at = if f.output == root { out } else { product };
            let mut args = Vec::with_capacity(f.inputs.len() + 1);
            for input in &f.inputs {
                args.push(place[input.index()].ok_or_else(|| unsupported(*input, "internal: operand not computed"))?);
            }
            if f.inverse.is_some() {
                // This group's scatter_add registered its index's inverse just above.
                let (starts, order) = index_checks.last().and_then(|c| c.inverse).expect("registered above");
                args.push(Place { buffer: starts, offset: 0 });
                args.push(Place { buffer: order, offset: 0 });
            }
            if let (true, Some(buffer)) = (f.checked, faults) {
                args.push(Place { buffer, offset: 0 });
            }
            args.push(at);
            place[f.output.index()] = Some(at);
            // A multi-output kernel's side outputs, after its result.
            for n in &f.side_outputs {
                let b = step.side_outs.iter().find(|(m, _)| m == n).map(|(_, b)| *b);
                let p = device(b.ok_or_else(|| unsupported(*n, "internal: side output without a buffer"))?);
                args.push(p);
                place[n.index()] = Some(p);
            }
            steps.push(GpuStep::Launch { function: fi, args });
        }
    }
    let module = module(&funcs);
    Ok(GpuProgram { graph: g.clone(), functions: funcs, module, buffers, steps, leaves, outputs, index_checks, faults })
}
