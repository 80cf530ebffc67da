//! The lowered schedule: an optimized graph turned once into the steps every backend runs.
//!
//! [`Schedule::build`] partitions the graph ([`kiln_passes::fuse::partition`]), plans its
//! memory ([`kiln_passes::plan::plan`]), lowers every fused kernel
//! ([`kiln_codegen::kernel::lower_group`]), classifies every contraction ([`Contraction`]) and
//! resolves every buffer (a caller's input or output, a parameter, an arena offset, the bytes
//! of another node for a reshape). The JIT ([`crate::jit`]), the library builder
//! ([`crate::aot`]) and the GPU program ([`crate::gpu::program`]) translate this one schedule;
//! none re-derives it. [`Schedule::verify`] checks it ([`verify`]), the step DAG ([`dag`])
//! says which steps may run at the same time, and it prints as text (`kiln dump --stage
//! schedule`).

pub mod contraction;
pub mod dag;
mod print;
pub mod verify;

use kiln_codegen::kernel::{Kernel, lower_group, lower_stored};
use kiln_ir::{Graph, NodeId};
use kiln_passes::fuse::{Group, GroupKind, Mode, contraction_of, epilogue_split, partition};
use kiln_passes::plan::{ALIGN, MemoryPlan, buffer_of, plan};

pub use contraction::{Contraction, ConvKind, GemmCall, GemmOperand, SharedCols, fits};
pub use verify::ScheduleError;

/// Where a value lives while a schedule runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Buffer {
    /// The caller's input at this position of the graph's inputs.
    Input(usize),
    /// The parameter at this position of the graph's parameters.
    Param(usize),
    /// The caller's output buffer at this position of the graph's outputs.
    Output(usize),
    /// Bytes of the arena: `bytes` (a multiple of [`ALIGN`]) from `offset`.
    Arena {
        /// Byte offset from the arena's start.
        offset: usize,
        /// Length in bytes.
        bytes: usize,
    },
}

impl Buffer {
    /// The arena bytes it covers, as a half-open range, if it is in the arena.
    pub fn arena_range(&self) -> Option<std::ops::Range<usize>> {
        match *self {
            Buffer::Arena { offset, bytes } => Some(offset..offset + bytes),
            Buffer::Input(_) | Buffer::Param(_) | Buffer::Output(_) => None,
        }
    }
}

/// What a step does.
#[derive(Clone, Debug)]
pub enum Work {
    /// A fused elementwise (or reducing) kernel.
    Kernel(Kernel),
    /// A matmul on GEMM or a convolution; a GEMM with an `epilogue` writes its product to
    /// [`Scratch::product`] and the epilogue kernel reads it from there, band by band.
    Contraction {
        /// The call.
        call: Contraction,
        /// The elementwise kernel applied to the product.
        epilogue: Option<Kernel>,
    },
    /// A `pad` or `concat` done with block copies.
    Movement,
    /// One op run by a backend's own implementation of it (a reference op on the JIT).
    Op,
    /// A `reshape` of a row-major buffer: no work, its value is the bytes of `source`.
    Alias {
        /// The node whose bytes it shares (followed through chains of reshapes).
        source: NodeId,
    },
    /// Copies the value of the step's node to the graph's output at this position (outputs
    /// not computed into their buffer: leaves, reshapes, values returned twice).
    CopyOut(usize),
}

impl Work {
    /// A short name for dumps.
    pub fn name(&self) -> &'static str {
        match self {
            Work::Kernel(_) => "kernel",
            Work::Contraction { call: Contraction::Gemm(_), .. } => "gemm",
            Work::Contraction { call: Contraction::Conv { .. }, .. } => "conv",
            Work::Movement => "movement",
            Work::Op => "op",
            Work::Alias { .. } => "alias",
            Work::CopyOut(_) => "copy",
        }
    }
}

/// One step of a schedule.
#[derive(Clone, Debug)]
pub struct Step {
    /// The position of its group in [`Schedule::groups`]; `None` for output copies.
    pub group: Option<usize>,
    /// The node whose value it writes (the group's root; for an output copy, the value
    /// copied).
    pub node: NodeId,
    /// What it does.
    pub work: Work,
    /// Where it writes.
    pub out: Buffer,
    /// The side outputs its kernel stores beside its result, with their buffers (always in
    /// the arena), in the kernel's order.
    pub side_outs: Vec<(NodeId, Buffer)>,
    /// The values it reads, resolved to the nodes that own their bytes (a reshape's source),
    /// without repeats, in first-use order. An epilogue's product is not among them: it is
    /// written and read within the step.
    pub reads: Vec<NodeId>,
    /// Its level in the step DAG ([`dag`]): steps of one level may run at the same time.
    pub level: usize,
}

/// Arena regions past the memory plan's peak that steps use and release within themselves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scratch {
    /// The product of a GEMM whose epilogue runs separately (the largest such product).
    pub product: Buffer,
    /// One image's im2col columns, for backends that build them per image (the largest).
    pub columns: Buffer,
}

impl Default for Buffer {
    fn default() -> Self {
        Buffer::Arena { offset: 0, bytes: 0 }
    }
}

/// An optimized graph lowered to steps over resolved buffers (see the module's header).
#[derive(Clone, Debug)]
pub struct Schedule {
    /// The graph it runs.
    pub graph: Graph,
    /// The partition, in execution order.
    pub groups: Vec<Group>,
    /// The memory plan of the groups' results (one placement per group, in group order).
    pub plan: MemoryPlan,
    /// The steps: one per group, in group order, then the output copies.
    pub steps: Vec<Step>,
    /// Per node: its buffer, for leaves and every step's node (a reshape has its source's).
    pub buffers: Vec<Option<Buffer>>,
    /// The scratch regions past the plan's peak.
    pub scratch: Scratch,
    /// Bytes of the arena: the plan's peak, then the scratch regions.
    pub arena_bytes: usize,
    /// For convolutions that share im2col columns ([`SharedCols`]): the number of kept slots.
    pub column_slots: usize,
}

fn aligned(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

impl Schedule {
    /// Lowers `graph` (optimized by the caller) with fusion `mode`: partition, memory plan,
    /// kernels, contractions and buffers, then the step DAG's levels. Fails when a group
    /// cannot be lowered to a kernel; in debug builds (and so in every test), also when the
    /// result does not pass [`Schedule::verify`] (a compiler bug, named by step).
    pub fn build(graph: &Graph, mode: Mode) -> Result<Schedule, ScheduleError> {
        let g = graph;
        let groups = partition(g, mode);
        let memory = plan(g, &groups);
        let mut buffers: Vec<Option<Buffer>> = vec![None; g.len()];
        for (i, (id, _)) in g.inputs().enumerate() {
            buffers[id.index()] = Some(Buffer::Input(i));
        }
        for (i, (id, _)) in g.params().enumerate() {
            buffers[id.index()] = Some(Buffer::Param(i));
        }
        let mut first_output = vec![None; g.len()];
        for (i, o) in g.outputs().iter().enumerate() {
            first_output[o.value.index()].get_or_insert(i);
        }
        let mut contractions: Vec<Option<Contraction>> =
            groups.iter().map(|gr| (gr.kind == GroupKind::Contraction).then(|| Contraction::new(g, gr))).collect();
        let column_slots = contraction::share_columns(&mut contractions);

        let mut placement_of = vec![None; g.len()];
        for p in &memory.placements {
            placement_of[p.node.index()] = Some(*p);
        }
        let mut steps = Vec::with_capacity(groups.len() + g.outputs().len());
        let (mut product_bytes, mut column_bytes) = (0usize, 0usize);
        for (gi, group) in groups.iter().enumerate() {
            let root = group.root();
            let source = buffer_of(g, root);
            // The plan places every group's stored values.
            let placed = |n: NodeId| -> Result<kiln_passes::plan::Placement, ScheduleError> {
                placement_of[n.index()].ok_or(ScheduleError::Unplanned { node: n.index() })
            };
            let placement = placed(root)?;
            let work = if source != root {
                Work::Alias { source }
            } else {
                match group.kind {
                    GroupKind::Elementwise => Work::Kernel(lower_stored(g, &group.members, &group.side_outputs)?),
                    GroupKind::Contraction => {
                        // Built above for every contraction group.
                        let call = contractions[gi].unwrap_or_else(|| Contraction::new(g, group));
                        let epilogue = match epilogue_split(g, group) {
                            Some(at) => Some(lower_group(g, &group.members[at..])?),
                            None => None,
                        };
                        match call {
                            Contraction::Gemm(c) if epilogue.is_some() => {
                                product_bytes = product_bytes.max(g.ty(c.product).size_bytes());
                            }
                            Contraction::Conv { geometry, .. } => {
                                let dtype = g.ty(contraction_of(g, group)).dtype;
                                column_bytes = column_bytes.max(geometry.image_columns() * dtype.size_bytes());
                            }
                            Contraction::Gemm(_) => {}
                        }
                        Work::Contraction { call, epilogue }
                    }
                    GroupKind::Movement => Work::Movement,
                    GroupKind::Op => Work::Op,
                }
            };
            let out = match (&work, first_output[root.index()]) {
                // Resolved after the loop's reads, from the source's buffer.
                (Work::Alias { .. }, _) => buffers[source.index()].unwrap_or_default(),
                (_, Some(i)) => Buffer::Output(i),
                (_, None) => Buffer::Arena { offset: placement.offset, bytes: placement.bytes },
            };
            buffers[root.index()] = Some(out);
            let side_outs: Vec<(NodeId, Buffer)> = group
                .side_outputs
                .iter()
                .map(|n| {
                    let p = placed(*n)?;
                    let b = match first_output[n.index()] {
                        Some(i) => Buffer::Output(i),
                        None => Buffer::Arena { offset: p.offset, bytes: p.bytes },
                    };
                    buffers[n.index()] = Some(b);
                    Ok((*n, b))
                })
                .collect::<Result<_, ScheduleError>>()?;
            let reads = match &work {
                Work::Alias { .. } => Vec::new(),
                _ => reads_of(g, group, &work),
            };
            steps.push(Step { group: Some(gi), node: root, work, out, side_outs, reads, level: 0 });
        }
        for (i, o) in g.outputs().iter().enumerate() {
            let from = buffers[o.value.index()];
            if from != Some(Buffer::Output(i)) {
                let node = buffer_of(g, o.value);
                steps.push(Step {
                    group: None,
                    node: o.value,
                    work: Work::CopyOut(i),
                    out: Buffer::Output(i),
                    side_outs: Vec::new(),
                    reads: vec![node],
                    level: 0,
                });
            }
        }
        let product_at = aligned(memory.peak_bytes);
        let columns_at = product_at + aligned(product_bytes);
        let scratch = Scratch {
            product: Buffer::Arena { offset: product_at, bytes: aligned(product_bytes) },
            columns: Buffer::Arena { offset: columns_at, bytes: aligned(column_bytes) },
        };
        let mut schedule = Schedule {
            graph: g.clone(),
            groups,
            plan: memory,
            steps,
            buffers,
            scratch,
            arena_bytes: columns_at + aligned(column_bytes),
            column_slots,
        };
        let levels = dag::StepDag::new(&schedule).levels();
        for (step, level) in schedule.steps.iter_mut().zip(levels) {
            step.level = level;
        }
        if cfg!(debug_assertions) {
            schedule.verify()?;
        }
        if let Some(dir) = std::env::var_os("KILN_DUMP") {
            schedule.dump(std::path::Path::new(&dir));
        }
        Ok(schedule)
    }

    /// Writes the schedule's text to `DIR/<func>.schedule.txt` (with `KILN_DUMP=DIR`, beside
    /// the passes' dumps); a dump that cannot be written is reported on stderr and does not
    /// stop compilation.
    fn dump(&self, dir: &std::path::Path) {
        let path = dir.join(format!("{}.schedule.txt", self.graph.name()));
        let write = || -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            std::fs::write(&path, self.to_string())
        };
        if let Err(e) = write() {
            eprintln!("warning: KILN_DUMP: cannot write {}: {e}", path.display());
        }
    }

    /// The buffer holding `node`'s value (a reshape's is its source's), if it has one.
    pub fn buffer(&self, node: NodeId) -> Option<Buffer> {
        self.buffers.get(node.index()).copied().flatten()
    }

    /// The number of levels of the step DAG.
    pub fn levels(&self) -> usize {
        self.steps.iter().map(|s| s.level + 1).max().unwrap_or(0)
    }

    /// The step of each group's result, by node (`None` for leaves and inner members).
    pub(crate) fn step_of_nodes(&self) -> Vec<Option<usize>> {
        let mut by_node = vec![None; self.graph.len()];
        for (si, s) in self.steps.iter().enumerate() {
            if s.group.is_some() {
                by_node[s.node.index()] = Some(si);
                for (n, _) in &s.side_outs {
                    by_node[n.index()] = Some(si);
                }
            }
        }
        by_node
    }

    /// The kernels of a step: its fused kernel, or its contraction's epilogue.
    pub fn kernel(&self, step: usize) -> Option<&Kernel> {
        match &self.steps[step].work {
            Work::Kernel(k) | Work::Contraction { epilogue: Some(k), .. } => Some(k),
            Work::Contraction { epilogue: None, .. }
            | Work::Movement
            | Work::Op
            | Work::Alias { .. }
            | Work::CopyOut(_) => None,
        }
    }
}

/// The values `group`'s step reads: operands of its members from outside it (for a kernel,
/// its inputs), resolved through reshapes, without repeats.
fn reads_of(g: &Graph, group: &Group, work: &Work) -> Vec<NodeId> {
    let mut reads: Vec<NodeId> = Vec::new();
    let mut push = |n: NodeId| {
        let n = buffer_of(g, n);
        if !reads.contains(&n) {
            reads.push(n);
        }
    };
    match work {
        Work::Kernel(k) => k.inputs.iter().for_each(|i| push(i.node)),
        Work::Contraction { call: Contraction::Gemm(c), epilogue } => {
            push(c.a.node);
            push(c.b.node);
            for i in epilogue.iter().flat_map(|k| &k.inputs) {
                if i.node != c.product {
                    push(i.node);
                }
            }
        }
        Work::Contraction { call: Contraction::Conv { lhs, rhs, .. }, .. } => {
            push(*lhs);
            push(*rhs);
        }
        Work::Movement | Work::Op => g.node(group.root()).args.iter().for_each(|a| push(*a)),
        Work::Alias { .. } | Work::CopyOut(_) => {}
    }
    reads
}
