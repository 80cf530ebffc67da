//! The JIT executor: a graph partitioned into groups, elementwise groups compiled to native
//! kernels with Cranelift, the other ops run by the reference implementations, executed in
//! dependency order over the memory plan's arena, with parameter updates optionally
//! written in place.

use std::collections::HashMap;

use kiln_codegen::cpu::{CodegenError, CompiledKernel, CpuJit};
use kiln_codegen::kernel::LowerError;
use kiln_ir::interp::eval_node;
use kiln_ir::{DType, Graph, InterpError, Movement, NodeId, Value};
use kiln_passes::fuse::{Group, GroupKind, Mode, contraction_of};
use kiln_passes::plan::{MemoryPlan, buffer_of};
use thiserror::Error;

use crate::arena::{Arena, copy_out, data, data_mut, is_standard};
use crate::conv;
use crate::gemm;
use crate::movement;
use crate::pool::Pool;
use crate::schedule::dag::StepDag;
use crate::schedule::{Buffer, Contraction, ConvKind, Schedule, ScheduleError, SharedCols, Work, fits};
use crate::tier2::{self, Tier2};

/// Errors from compiling a graph.
#[derive(Debug, Error)]
pub enum CompileError {
    /// A group could not be lowered to a kernel.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Code generation failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// The graph could not be lowered to a schedule.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
}

/// Compilation options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Fuse elementwise chains, or one kernel per op (the benchmark baseline).
    pub mode: Mode,
    /// Keep every kernel's machine code as assembly text (`kiln dump --stage asm`).
    pub disassemble: bool,
}

/// A compiled graph, ready to run many times. Intermediate kernel results live in one
/// 64-byte-aligned arena at the offsets of the liveness-based memory plan; graph outputs are
/// written into the caller's buffers ([`Executable::run_into`]), and registered parameter
/// updates into the parameters themselves ([`Executable::update_in_place`]).
///
/// An `Executable` is `Send` (move it to the thread that runs it) but not `Sync`: it owns its
/// JIT module, arena and thread pool, so sharing one between threads is refused at compile
/// time. Compile one per thread (each gives the same bytes), or put it behind a `Mutex`.
///
/// ```compile_fail
/// fn shared<T: Sync>(_: &T) {}
/// let g = kiln_ir::parse_graph("func @f(%x: f32[2]) -> (y: f32[2]) {\n  return %x\n}\n").unwrap();
/// let exe = kiln_runtime::jit::compile(&g, Default::default()).unwrap();
/// shared(&exe); // an Executable is not Sync
/// ```
pub struct Executable {
    graph: Graph,
    groups: Vec<(Group, Option<CompiledKernel>)>,
    /// Per group: the call of a contraction group.
    contractions: Vec<Option<Contraction>>,
    /// Per group: for a `reshape`, the node whose bytes it shares.
    alias: Vec<Option<NodeId>>,
    /// Per node: the position of the first graph output that returns it.
    first_output: Vec<Option<usize>>,
    /// The schedule it translates.
    schedule: Schedule,
    /// Per group: the arena offset of its result, for kernels whose result is an
    /// intermediate.
    arena_offset: Vec<Option<usize>>,
    /// Per group: the side outputs its kernel stores.
    side_outs: Vec<Vec<SideOut>>,
    /// Per group: the leaf whose buffer its kernel overwrites with the result (an update
    /// registered with [`Executable::update_in_place`]).
    in_place: Vec<Option<NodeId>>,
    arena: std::sync::Mutex<Arena>,
    /// Owned kernel results outside the arena (operands of reference ops), kept between runs
    /// by group.
    pool: std::sync::Mutex<Vec<Option<Value>>>,
    threads: usize,
    /// Worker threads when `threads > 1`.
    workers: Option<Pool>,
    /// Per group: one past the last group of the window of consecutive steps that may run at
    /// the same time starting there (the next group when none may).
    windows: Vec<usize>,
    /// The work two steps of a window need at least ([`Executable::with_overlap_min_work`]).
    overlap_min_work: usize,
    /// Per group: the product buffer of a contraction with an epilogue, kept between runs.
    scratch: std::sync::Mutex<Vec<Option<Value>>>,
    /// Im2col columns a forward convolution keeps for its weight gradient, by slot
    /// ([`SharedCols`]).
    columns: std::sync::Mutex<Vec<Option<Value>>>,
    /// The second tier: its counters and, once built, the library its kernels call (declared
    /// after `groups`, so it is unloaded after them).
    tier2: std::sync::Mutex<Tier2>,
    /// The target has fused multiply-add (the second tier contracts the same products).
    fma: bool,
    /// Per group: the least time of one call of its kernel on tier 1 and on tier 2, in ns,
    /// measured during the second tier's trial runs.
    kernel_times: Vec<[std::sync::atomic::AtomicU64; 2]>,
    /// The tier this run's kernels are timed on (0: not timed).
    timing: std::sync::atomic::AtomicU8,
    /// The second tier has nothing left to do at run boundaries, so runs skip them.
    tier2_settled: std::sync::atomic::AtomicBool,
    // Owns the machine code of every kernel; must outlive them.
    _jit: CpuJit,
}

/// Compiles `graph` for the host CPU: lowers it to a [`Schedule`] with the options' fusion
/// mode, then translates that ([`compile_schedule`]).
pub fn compile(graph: &Graph, options: Options) -> Result<Executable, CompileError> {
    compile_schedule(Schedule::build(graph, options.mode)?, options)
}

/// Translates a schedule for the host CPU: each step's kernel compiled with Cranelift, its
/// contraction and buffers taken as the schedule resolved them. The JIT departs from the
/// schedule's buffers in one way: results of reference ops, and the kernel results they read,
/// are owned values rather than arena bytes (the reference implementations take arrays; copying
/// them out of the arena would cost more than it saves).
pub fn compile_schedule(schedule: Schedule, options: Options) -> Result<Executable, CompileError> {
    let graph = &schedule.graph;
    let mut jit = CpuJit::new()?;
    jit.keep_disassembly(options.disassemble);
    let count = schedule.groups.len();
    let mut groups = Vec::with_capacity(count);
    for (gi, group) in schedule.groups.iter().enumerate() {
        let kernel = match schedule.kernel(gi) {
            Some(k) => Some(jit.compile(k)?),
            None => None,
        };
        groups.push((group.clone(), kernel));
    }
    // The schedule's first steps are its groups, in order.
    let steps = &schedule.steps[..count];
    let contractions: Vec<Option<Contraction>> = steps
        .iter()
        .map(|s| match s.work {
            Work::Contraction { call, .. } => Some(call),
            _ => None,
        })
        .collect();
    let alias: Vec<Option<NodeId>> = steps
        .iter()
        .map(|s| match s.work {
            Work::Alias { source } => Some(source),
            _ => None,
        })
        .collect();
    // Operands of reference ops stay owned values (see above).
    let mut arena_ok = vec![true; graph.len()];
    for s in steps {
        if let Work::Op = s.work {
            for a in &s.reads {
                arena_ok[a.index()] = false;
            }
        }
    }
    let arena_offset = steps
        .iter()
        .map(|s| match (&s.work, s.out) {
            (Work::Op, _) => None,
            (_, Buffer::Arena { offset, .. }) => arena_ok[s.node.index()].then_some(offset),
            _ => None,
        })
        .collect();
    let mut first_output = vec![None; graph.len()];
    for (i, o) in graph.outputs().iter().enumerate() {
        first_output[o.value.index()].get_or_insert(i);
    }
    // Side outputs are arena buffers or graph outputs.
    let side_outs = steps
        .iter()
        .map(|s| {
            s.side_outs
                .iter()
                .map(|(n, b)| match b {
                    Buffer::Arena { offset, .. } => Ok(SideOut { node: *n, arena: Some(*offset), in_place: None }),
                    Buffer::Output(_) => Ok(SideOut { node: *n, arena: None, in_place: None }),
                    _ => Err(ScheduleError::Unplanned { node: n.index() }),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Executable {
        side_outs,
        graph: graph.clone(),
        in_place: vec![None; groups.len()],
        groups,
        contractions,
        alias,
        first_output,
        arena_offset,
        arena: std::sync::Mutex::new(Arena::default()),
        pool: std::sync::Mutex::new(Vec::new()),
        threads: 1,
        workers: None,
        windows: (1..=count).collect(),
        overlap_min_work: CONCURRENT_MIN_WORK,
        scratch: std::sync::Mutex::new(Vec::new()),
        columns: std::sync::Mutex::new(vec![None; schedule.column_slots]),
        schedule,
        tier2: std::sync::Mutex::new(Tier2::new(crate::tier2::Options::from_env())),
        fma: jit.has_fma(),
        kernel_times: (0..count)
            .map(|_| [std::sync::atomic::AtomicU64::new(u64::MAX), std::sync::atomic::AtomicU64::new(u64::MAX)])
            .collect(),
        timing: std::sync::atomic::AtomicU8::new(0),
        tier2_settled: std::sync::atomic::AtomicBool::new(false),
        _jit: jit,
    })
}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Executable(@{}, {} groups)", self.graph.name(), self.groups.len())
    }
}

/// Kernels with fewer elements than this run on one thread (threads cost more than they save).
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Steps with less work than this (elements, or multiply-adds) are not worth a thread of their
/// own: a window of steps runs at the same time only if two of them have this much.
const CONCURRENT_MIN_WORK: usize = 1 << 12;

/// A side output of a group's kernel: where it is written.
#[derive(Clone, Debug)]
struct SideOut {
    node: NodeId,
    /// Its arena offset; `None` for a graph output (an owned buffer).
    arena: Option<usize>,
    /// The leaf it overwrites, for an update registered with [`Executable::update_in_place`].
    in_place: Option<NodeId>,
}

/// The buffers a placed step writes: its result's and its side outputs', in order.
#[derive(Clone, Debug)]
struct Placed {
    out: *mut u8,
    sides: Vec<*mut u8>,
}

/// What the threads of a window share: the executable, the slots (read only while the window
/// runs), the arena and each step's output pointers.
#[derive(Clone, Copy)]
struct Window<'s, 'a> {
    exe: &'s Executable,
    slots: &'s [Slot<'a>],
    base: *mut u8,
    outs: &'s [Option<Placed>],
}

// SAFETY: while a window runs, the slots are only read; every step reads buffers written
// before the window and writes its own output, which no other step of the window reads or
// writes (the step DAG orders every pair that shares bytes, and a window holds none). The
// executable is shared only for `Executable::compute` without workers, which reads its graph,
// groups, compiled kernels (immutable machine code) and contractions and locks its `Mutex`es;
// it never touches the JIT module or the thread pool, the parts that are not `Sync`.
unsafe impl Send for Window<'_, '_> {}
// SAFETY: as above.
unsafe impl Sync for Window<'_, '_> {}

impl<'s, 'a> Window<'s, 'a> {
    /// The executable, slots, arena base and output of step `t` (a method, so closures
    /// capture the `Sync` wrapper, not its raw fields).
    fn get(&self, t: usize) -> (&'s Executable, &'s [Slot<'a>], *mut u8, Option<&'s Placed>) {
        (self.exe, self.slots, self.base, self.outs[t].as_ref())
    }
}

/// Raw buffer pointers handed to the threads of one kernel call.
#[derive(Clone, Copy)]
struct KernelArgs<'a> {
    inputs: &'a [*const u8],
    out: *mut u8,
}

// SAFETY: the pointers refer to buffers borrowed for the whole parallel loop (which joins
// before returning); kernels only read their inputs, and each part writes a disjoint range of
// the output.
unsafe impl Send for KernelArgs<'_> {}
// SAFETY: as above.
unsafe impl Sync for KernelArgs<'_> {}

impl<'a> KernelArgs<'a> {
    /// The pointers (a method, so closures capture the `Sync` wrapper, not its raw fields).
    fn get(&self) -> (&'a [*const u8], *mut u8) {
        (self.inputs, self.out)
    }
}

/// Where a value lives during a run.
enum Slot<'a> {
    /// Not computed (yet).
    Empty,
    /// A caller's input, read where it is.
    Borrowed(&'a Value),
    /// Owned by the run: results of reference ops, graph outputs, inputs updated in place.
    Owned(Value),
    /// In the arena at this byte offset.
    Arena(usize),
    /// The bytes of another node's slot (a `reshape` of a row-major buffer).
    Same(NodeId),
}

/// The data pointer and element count of `n`'s buffer (following a reshape to its source).
fn view(slots: &[Slot<'_>], base: *mut u8, graph: &Graph, n: NodeId) -> Option<(*const u8, usize)> {
    match &slots[n.index()] {
        Slot::Borrowed(v) => Some(data(v)),
        Slot::Owned(v) => Some(data(v)),
        Slot::Arena(off) => Some((base.wrapping_add(*off) as *const u8, graph.ty(n).numel())),
        Slot::Same(src) => view(slots, base, graph, *src),
        Slot::Empty => None,
    }
}

/// `n`'s value as an array of its own type: borrowed where the slot holds one, else copied
/// out of the arena or out of the reshaped source.
fn value_of<'s>(slots: &'s [Slot<'_>], base: *mut u8, graph: &Graph, n: NodeId) -> Option<std::borrow::Cow<'s, Value>> {
    match &slots[n.index()] {
        Slot::Borrowed(v) => Some(std::borrow::Cow::Borrowed(*v)),
        Slot::Owned(v) => Some(std::borrow::Cow::Borrowed(v)),
        Slot::Arena(_) | Slot::Same(_) => {
            let (ptr, _) = view(slots, base, graph, n)?;
            // SAFETY: the slot (or the source it reshapes) holds a complete row-major result
            // of `n`'s element count and dtype, kept intact by the plan until its last reader
            // (this one or a later one) has run.
            Some(std::borrow::Cow::Owned(unsafe { copy_out(graph.ty(n), ptr) }))
        }
        Slot::Empty => None,
    }
}

impl Executable {
    /// Runs big kernels, GEMMs and convolutions on `threads` threads (a persistent pool
    /// started here), splitting their outer loops; results are identical to one thread's.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.clamp(1, crate::pool::MAX_THREADS);
        self.workers = (self.threads > 1).then(|| Pool::new(self.threads));
        self.windows = self.find_windows();
        self
    }

    /// Sets the work (elements of a kernel, multiply-adds of a product) that at least two steps
    /// of a window must have for the window to run its steps at the same time (default 2^12:
    /// smaller steps cost less than handing them to a thread). 0 overlaps every window of
    /// independent steps, however small — what the tests use to exercise every overlap.
    pub fn with_overlap_min_work(mut self, work: usize) -> Self {
        self.overlap_min_work = work;
        self.windows = self.find_windows();
        self
    }

    /// The number of threads big kernels use.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The graph this runs.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// An error if running this executable — its inputs and parameters plus the memory plan's
    /// peak (every group's result, outputs included, at the most bytes live at once) — would
    /// need more memory than is available. Callers that allocate the leaves or run it check this
    /// first, so a graph too large for the machine is refused before anything is allocated
    /// (compiling alone allocates no buffers: the GPU and library builders compile graphs far
    /// larger than the host's memory).
    pub fn fits_in_memory(&self) -> Result<(), crate::memory::TooLarge> {
        let needed = crate::memory::leaf_bytes(&self.graph).saturating_add(self.schedule.plan.peak_bytes as u64);
        crate::memory::check(&self.graph, needed, "its inputs, parameters and buffers at their peak")
    }

    /// The liveness-based memory plan of this executable's buffers. Kernel results that are
    /// not graph outputs live in one arena at these offsets; graph outputs go to the caller's
    /// buffers and results of reference ops are owned values (so the arena is at most
    /// `peak_bytes` long).
    pub fn memory_plan(&self) -> &MemoryPlan {
        &self.schedule.plan
    }

    /// The windows of consecutive steps a run executes at the same time (by group position),
    /// one step a thread; empty on one thread. Steps updating an input in place
    /// ([`Executable::run_updating`]) run alone even inside one.
    pub fn windows(&self) -> Vec<std::ops::Range<usize>> {
        let mut out = Vec::new();
        let mut gi = 0;
        while gi < self.groups.len() {
            let end = self.windows[gi].max(gi + 1);
            if end > gi + 1 && self.workers.is_some() {
                out.push(gi..end);
            }
            gi = end;
        }
        out
    }

    /// The schedule this executable runs.
    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    /// The groups and their kernels, in execution order.
    pub fn groups(&self) -> impl Iterator<Item = (&Group, Option<&CompiledKernel>)> {
        self.groups.iter().map(|(g, k)| (g, k.as_ref()))
    }

    /// Registers updates `(output name, input name)` to be computed in place by
    /// [`Executable::run_updating`]: the output's kernel writes into the input's buffer. An
    /// update qualifies when its output is computed by an elementwise kernel (no reduction),
    /// as its result or as a side output, that reads the input only at the element it writes
    /// (and, for a side output, before it stores it), the input has the output's type,
    /// no later group reads the input, and neither appears twice. Returns the output names
    /// that qualified; the others are written to separate buffers as usual.
    pub fn update_in_place(&mut self, pairs: &[(String, String)]) -> Vec<String> {
        let g = &self.graph;
        let mut done = Vec::new();
        // The group computing each node, and which of its side outputs it is (if it is one).
        let mut group_of = vec![(usize::MAX, None); g.len()];
        for (gi, (group, _)) in self.groups.iter().enumerate() {
            group_of[group.root().index()] = (gi, None);
            for (j, side) in self.side_outs[gi].iter().enumerate() {
                group_of[side.node.index()] = (gi, Some(j));
            }
        }
        let mut taken_inputs = std::collections::BTreeSet::new();
        for (out_name, in_name) in pairs {
            let Some(o) = g.outputs().iter().find(|o| &o.name == out_name) else { continue };
            let Some(leaf) = g.leaf(in_name) else { continue };
            let root = o.value;
            let (gi, side) = group_of[root.index()];
            let once = g.outputs().iter().filter(|p| p.value == root || p.value == leaf).count() == 1;
            if gi == usize::MAX || !once || g.ty(leaf) != g.ty(root) || !taken_inputs.insert(leaf) {
                continue;
            }
            let (group, Some(k)) = &self.groups[gi] else { continue };
            if group.kind != GroupKind::Elementwise {
                continue;
            }
            // A side output is stored as soon as the body computes it: every load of the input
            // it overwrites must come before that.
            let (out_strides, stored_at) = match side {
                None => (k.kernel.out_strides(), k.kernel.body.len()),
                Some(j) => match k.kernel.side_outputs.get(j) {
                    Some(s) => (s.strides.clone(), s.value),
                    None => continue,
                },
            };
            let reads_leaf = |i: usize| buffer_of(g, k.kernel.inputs[i].node) == leaf;
            let loaded_after = k.kernel.body.iter().enumerate().any(|(at, (inst, _))| {
                matches!(inst, kiln_codegen::kernel::Inst::Load(i) if reads_leaf(*i)) && at > stored_at
            });
            let same_index = k.kernel.reduce.is_none()
                && !loaded_after
                && k.kernel
                    .inputs
                    .iter()
                    .filter(|i| buffer_of(g, i.node) == leaf)
                    .all(|i| i.strides == out_strides && i.offset == 0);
            // Every other group reading the leaf (or a reshape of it) runs before this one.
            let read_later = self.groups.iter().skip(gi + 1).any(|(other, _)| {
                other.members.iter().any(|m| g.node(*m).args.iter().any(|a| buffer_of(g, *a) == leaf))
            });
            if same_index && !read_later {
                match side {
                    None => self.in_place[gi] = Some(leaf),
                    Some(j) => self.side_outs[gi][j].in_place = Some(leaf),
                }
                done.push(out_name.clone());
            }
        }
        done
    }

    /// Runs the graph with a value for every leaf (by name); returns the outputs in order.
    pub fn run(&self, feeds: &HashMap<String, Value>) -> Result<Vec<Value>, InterpError> {
        let mut outputs = Vec::new();
        self.run_into(feeds, &mut outputs)?;
        Ok(outputs)
    }

    /// Like [`Executable::run`], writing into `outputs` and reusing its buffers when their
    /// types fit: with intermediates in the arena, a steady-state run allocates nothing for
    /// its kernels. Updates registered for in-place computation are written to fresh
    /// buffers here (the inputs are only borrowed).
    pub fn run_into(&self, feeds: &HashMap<String, Value>, outputs: &mut Vec<Value>) -> Result<(), InterpError> {
        kiln_ir::interp::check_feeds(&self.graph, feeds)?;
        self.execute(feeds, HashMap::new(), outputs, false, &mut HashMap::new(), None)
    }

    /// Runs the graph once on one thread, timing every step: the wall time of each group
    /// (placing its result and computing it), in the order of [`Executable::groups`]. What the
    /// measured cost model is checked against (`kiln profile`).
    pub fn profile(&self, feeds: &HashMap<String, Value>) -> Result<Vec<std::time::Duration>, InterpError> {
        kiln_ir::interp::check_feeds(&self.graph, feeds)?;
        let mut times = vec![std::time::Duration::ZERO; self.groups.len()];
        self.execute(feeds, HashMap::new(), &mut Vec::new(), false, &mut HashMap::new(), Some(&mut times))?;
        Ok(times)
    }

    /// Like [`Executable::run_into`], computing the updates registered with
    /// [`Executable::update_in_place`] in place: each such input is moved out of `feeds`,
    /// overwritten by its update, and returned as that output. If the run fails, the moved
    /// inputs go back into `feeds` (those already overwritten hold their update).
    pub fn run_updating(
        &self,
        feeds: &mut HashMap<String, Value>,
        outputs: &mut Vec<Value>,
    ) -> Result<(), InterpError> {
        kiln_ir::interp::check_feeds(&self.graph, feeds)?;
        let mut moved = HashMap::new();
        let sides = self.side_outs.iter().flatten().filter_map(|s| s.in_place.as_ref());
        for leaf in self.in_place.iter().flatten().chain(sides) {
            let name = self.graph.node(*leaf).op.leaf_name().unwrap_or_default();
            if let Some(v) = feeds.remove(name) {
                let v = if is_standard(&v) { v } else { crate::map_standard(&v) };
                moved.insert(name.to_string(), v);
            }
        }
        let mut back = HashMap::new();
        let result = self.execute(feeds, moved, outputs, true, &mut back, None);
        feeds.extend(back);
        result
    }

    /// Runs every group ([`Executable::execute_groups`]) at a run boundary of the second tier:
    /// first installing a library it finished or starting its compile, then counting the run.
    fn execute(
        &self,
        feeds: &HashMap<String, Value>,
        owned: HashMap<String, Value>,
        outputs: &mut Vec<Value>,
        update: bool,
        back: &mut HashMap<String, Value>,
        times: Option<&mut [std::time::Duration]>,
    ) -> Result<(), InterpError> {
        use std::sync::atomic::Ordering;
        if self.tier2_settled.load(Ordering::Relaxed) {
            return self.execute_groups(feeds, owned, outputs, update, back, times);
        }
        let started = std::time::Instant::now();
        self.tier2_boundary(false);
        let result = self.execute_groups(feeds, owned, outputs, update, back, times);
        let mut tier2 = self.tier2.lock().unwrap_or_else(|e| e.into_inner());
        tier2.ran(started.elapsed());
        self.tier2_settled.store(tier2.settled(), Ordering::Relaxed);
        result
    }

    /// The compiled kernels, in group order (the second tier's order).
    fn kernels(&self) -> Vec<&CompiledKernel> {
        self.groups.iter().filter_map(|(_, k)| k.as_ref()).collect()
    }

    /// A run boundary of the second tier (see [`tier2`]); `now` starts its compile whatever
    /// the thresholds say. During its trial, sets the tier this run's kernels are timed on.
    fn tier2_boundary(&self, now: bool) {
        use std::sync::atomic::Ordering;
        let kernels = self.kernels();
        let times: Vec<[u64; 2]> = self
            .groups
            .iter()
            .zip(&self.kernel_times)
            .filter(|((_, k), _)| k.is_some())
            .map(|(_, t)| [t[0].load(Ordering::Relaxed), t[1].load(Ordering::Relaxed)])
            .collect();
        let tier =
            self.tier2.lock().unwrap_or_else(|e| e.into_inner()).at_boundary(&kernels, Some(&times), self.fma, now);
        self.timing.store(tier.unwrap_or(0), Ordering::Relaxed);
    }

    /// Replaces the second tier's options (by default [`tier2::Options::from_env`]); call it
    /// before the first run.
    pub fn with_tier2(mut self, options: tier2::Options) -> Self {
        self.set_tier2(options);
        self
    }

    /// [`Executable::with_tier2`] in place.
    pub fn set_tier2(&mut self, options: tier2::Options) {
        *self.tier2.get_mut().unwrap_or_else(|e| e.into_inner()) = Tier2::new(options);
        *self.tier2_settled.get_mut() = false;
    }

    /// Where the second tier stands.
    pub fn tier2_status(&self) -> tier2::Status {
        self.tier2.lock().unwrap_or_else(|e| e.into_inner()).status()
    }

    /// Starts the second tier now if it is on and has not started, and waits up to `timeout`
    /// for its library (benchmarks and tests; runs never wait). True once every kernel with a
    /// C rendering runs it.
    pub fn wait_for_tier2(&self, timeout: std::time::Duration) -> bool {
        let kernels = self.kernels();
        self.tier2.lock().unwrap_or_else(|e| e.into_inner()).wait(&kernels, self.fma, timeout)
    }

    /// Runs every group. `owned` holds the inputs moved in for in-place updates (written in
    /// place only when `update` is set); on failure they are handed back in `back`. With
    /// `times`, the groups run one at a time on this thread and each one's time is recorded.
    fn execute_groups(
        &self,
        feeds: &HashMap<String, Value>,
        mut owned: HashMap<String, Value>,
        outputs: &mut Vec<Value>,
        update: bool,
        back: &mut HashMap<String, Value>,
        times: Option<&mut [std::time::Duration]>,
    ) -> Result<(), InterpError> {
        let g = &self.graph;
        let mut slots: Vec<Slot<'_>> = (0..g.len()).map(|_| Slot::Empty).collect();
        for (id, node) in g.leaves() {
            let name = node.op.leaf_name().unwrap_or_default();
            slots[id.index()] = match (owned.remove(name), feeds.get(name)) {
                (Some(v), _) => Slot::Owned(v),
                (None, Some(v)) if is_standard(v) => Slot::Borrowed(v),
                (None, Some(v)) => Slot::Owned(crate::map_standard(v)),
                // Present and well typed: the callers checked the feeds.
                (None, None) => Slot::Empty,
            };
        }
        // A poisoned lock only means an earlier run panicked; the arena is plain bytes.
        let mut arena = self.arena.lock().unwrap_or_else(|e| e.into_inner());
        arena.reserve(self.schedule.plan.peak_bytes);
        let base = arena.base();
        let mut out_bufs: Vec<Option<Value>> = outputs.drain(..).map(Some).collect();
        let mut pool = std::mem::take(&mut *self.pool.lock().unwrap_or_else(|e| e.into_inner()));
        pool.resize(self.groups.len(), None);
        if let Err(e) = self.run_groups(&mut slots, base, &mut out_bufs, &mut pool, update, times) {
            // Hand back the inputs moved in, whether or not their update ran.
            let roots = self.in_place.iter().enumerate().filter_map(|(gi, l)| l.map(|l| (l, self.groups[gi].0.root())));
            let sides = self.side_outs.iter().flatten().filter_map(|s| s.in_place.map(|l| (l, s.node)));
            for (leaf, written) in roots.chain(sides) {
                let name = g.node(leaf).op.leaf_name().unwrap_or_default().to_string();
                for at in [leaf.index(), written.index()] {
                    if let Slot::Owned(v) = std::mem::replace(&mut slots[at], Slot::Empty) {
                        back.insert(name.clone(), v);
                        break;
                    }
                }
            }
            return Err(e);
        }
        // Outputs move to the caller (a value returned twice is copied). Outputs in the arena
        // or sharing another buffer are copied out first, before any buffer moves.
        let mut copied: Vec<Option<Value>> = g
            .outputs()
            .iter()
            .map(|o| match &slots[o.value.index()] {
                Slot::Arena(_) | Slot::Same(_) => value_of(&slots, base, g, o.value).map(|v| v.into_owned()),
                _ => None,
            })
            .collect();
        for (i, o) in g.outputs().iter().enumerate() {
            let first = self.first_output[o.value.index()].filter(|&j| j < i);
            let value = match (first, copied[i].take()) {
                (Some(j), _) => outputs[j].clone(),
                (None, Some(v)) => v,
                (None, None) => match std::mem::replace(&mut slots[o.value.index()], Slot::Empty) {
                    Slot::Owned(v) => v,
                    Slot::Borrowed(v) => v.clone(),
                    _ => return Err(internal(g, o.value, "output not computed")),
                },
            };
            outputs.push(value);
        }
        // Owned kernel results that are not outputs go back to the pool for the next run.
        for (gi, (group, kernel)) in self.groups.iter().enumerate() {
            if kernel.is_some()
                && let Slot::Owned(v) = std::mem::replace(&mut slots[group.root().index()], Slot::Empty)
            {
                pool[gi] = Some(v);
            }
        }
        *self.pool.lock().unwrap_or_else(|e| e.into_inner()) = pool;
        Ok(())
    }

    /// Runs the groups in order, filling `slots`. With several threads, each window of
    /// consecutive independent steps ([`Executable::windows`]) runs at the same time, one step
    /// a thread. With `times`, every group runs alone on this thread and is timed.
    fn run_groups<'a>(
        &self,
        slots: &mut [Slot<'a>],
        base: *mut u8,
        out_bufs: &mut [Option<Value>],
        pool: &mut [Option<Value>],
        update: bool,
        mut times: Option<&mut [std::time::Duration]>,
    ) -> Result<(), InterpError> {
        let mut gi = 0;
        while gi < self.groups.len() {
            if let Some(times) = times.as_deref_mut() {
                let start = std::time::Instant::now();
                if let Some(at) = self.place(gi, slots, base, out_bufs, pool, update)? {
                    self.compute(gi, slots, base, &at, None, update)?;
                }
                times[gi] = start.elapsed();
                gi += 1;
                continue;
            }
            let mut end = match &self.workers {
                Some(_) => self.windows[gi].max(gi + 1),
                None => gi + 1,
            };
            // A step updating an input in place runs alone (its readers ran before it).
            if update && let Some(j) = (gi..end).find(|&i| self.updates_in_place(i)) {
                end = j.max(gi + 1);
            }
            if end == gi + 1 {
                if let Some(at) = self.place(gi, slots, base, out_bufs, pool, update)? {
                    self.compute(gi, slots, base, &at, self.workers.as_ref(), update)?;
                }
                gi += 1;
                continue;
            }
            // Every output placed first; then the steps, which read only what earlier windows
            // wrote and write apart from each other, compute at the same time.
            let mut outs = Vec::with_capacity(end - gi);
            for i in gi..end {
                outs.push(self.place(i, slots, base, out_bufs, pool, update)?);
            }
            let shared: &[Slot<'a>] = slots;
            let window = Window { exe: self, slots: shared, base, outs: &outs };
            let failures: std::sync::Mutex<Vec<(usize, InterpError)>> = std::sync::Mutex::new(Vec::new());
            if let Some(workers) = &self.workers {
                workers.for_each(end - gi, &|t| {
                    let (exe, slots, base, out) = window.get(t);
                    if let Some(at) = out
                        && let Err(e) = exe.compute(gi + t, slots, base, at, None, update)
                    {
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push((t, e));
                    }
                });
            }
            let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
            if let Some((_, e)) = failures.into_iter().min_by_key(|(t, _)| *t) {
                return Err(e);
            }
            gi = end;
        }
        Ok(())
    }

    /// Sets the slot of group `gi`'s result: a reshape's source, a reference op's value (run
    /// here), or the buffer its kernel writes, whose pointer it returns.
    fn place<'a>(
        &self,
        gi: usize,
        slots: &mut [Slot<'a>],
        base: *mut u8,
        out_bufs: &mut [Option<Value>],
        pool: &mut [Option<Value>],
        update: bool,
    ) -> Result<Option<Placed>, InterpError> {
        let g = &self.graph;
        let group = &self.groups[gi].0;
        let root = group.root();
        let node = g.node(root);
        if let Some(src) = self.alias[gi] {
            // A reshape of a row-major buffer: the same bytes.
            slots[root.index()] = Slot::Same(src);
            return Ok(None);
        }
        if group.kind == GroupKind::Op {
            // A reference op: arena operands are copied out for it.
            let mut args: Vec<std::borrow::Cow<'_, Value>> = Vec::with_capacity(node.args.len());
            for a in &node.args {
                args.push(value_of(slots, base, g, *a).ok_or_else(|| internal(g, root, "operand not computed"))?);
            }
            let refs: Vec<&Value> = args.iter().map(|c| c.as_ref()).collect();
            let v = eval_node(node, &refs).map_err(|message| InterpError::Eval {
                node: root,
                op: node.op.name(),
                message,
            })?;
            slots[root.index()] = Slot::Owned(if is_standard(&v) { v } else { crate::map_standard(&v) });
            return Ok(None);
        }
        // Where the result goes: over an input updated in place, into the arena, or into
        // an owned buffer (graph outputs reuse the caller's).
        let in_place = self.in_place[gi].filter(|_| update);
        slots[root.index()] = match (in_place, self.arena_offset[gi]) {
            (Some(leaf), _) => match std::mem::replace(&mut slots[leaf.index()], Slot::Empty) {
                Slot::Owned(v) => Slot::Owned(v),
                _ => return Err(internal(g, root, "in-place input not owned")),
            },
            (None, Some(off)) => Slot::Arena(off),
            (None, None) => {
                let reuse = match self.first_output[root.index()] {
                    Some(i) => out_bufs.get_mut(i).and_then(Option::take),
                    None => pool[gi].take(),
                };
                Slot::Owned(match reuse {
                    Some(v) if &v.ty() == g.ty(root) => v,
                    _ => Value::splat(g.ty(root), 0.0),
                })
            }
        };
        // Side outputs: over the input they update in place, in the arena, or in an owned
        // buffer (the caller's, for a graph output).
        for side in &self.side_outs[gi] {
            let n = side.node;
            slots[n.index()] = match (side.in_place.filter(|_| update), side.arena) {
                (Some(leaf), _) => match std::mem::replace(&mut slots[leaf.index()], Slot::Empty) {
                    Slot::Owned(v) => Slot::Owned(v),
                    _ => return Err(internal(g, n, "in-place input not owned")),
                },
                (None, Some(off)) => Slot::Arena(off),
                (None, None) => {
                    let reuse = self.first_output[n.index()].and_then(|i| out_bufs.get_mut(i).and_then(Option::take));
                    Slot::Owned(match reuse {
                        Some(v) if &v.ty() == g.ty(n) => v,
                        _ => Value::splat(g.ty(n), 0.0),
                    })
                }
            };
        }
        let mut pointer = |n: NodeId| match &mut slots[n.index()] {
            Slot::Owned(v) => Ok(data_mut(v)),
            Slot::Arena(off) => Ok(base.wrapping_add(*off)),
            Slot::Borrowed(_) | Slot::Same(_) | Slot::Empty => Err(internal(g, n, "no output buffer")),
        };
        let out = pointer(root)?;
        let sides = self.side_outs[gi].iter().map(|s| pointer(s.node)).collect::<Result<_, _>>()?;
        Ok(Some(Placed { out, sides }))
    }

    /// True if group `gi` overwrites an input in place (its result or a side output) when
    /// updates run in place.
    fn updates_in_place(&self, gi: usize) -> bool {
        self.in_place[gi].is_some() || self.side_outs[gi].iter().any(|s| s.in_place.is_some())
    }

    /// Computes group `gi` into `out` (placed by [`Executable::place`]), reading its operands
    /// from `slots`, splitting big work over `workers` if given.
    fn compute(
        &self,
        gi: usize,
        slots: &[Slot<'_>],
        base: *mut u8,
        at: &Placed,
        workers: Option<&Pool>,
        update: bool,
    ) -> Result<(), InterpError> {
        let g = &self.graph;
        let (group, kernel) = &self.groups[gi];
        let root = group.root();
        let out = at.out;
        // The inputs overwritten in place, each with the buffer written over it and its length.
        let mut overwritten: Vec<(NodeId, *mut u8, usize)> = Vec::new();
        if update {
            if let Some(leaf) = self.in_place[gi] {
                overwritten.push((leaf, out, g.ty(root).numel()));
            }
            for (side, ptr) in self.side_outs[gi].iter().zip(&at.sides) {
                if let Some(leaf) = side.in_place {
                    overwritten.push((leaf, *ptr, g.ty(side.node).numel()));
                }
            }
        }
        let source = |n: NodeId| -> Result<*const u8, InterpError> {
            view(slots, base, g, n).map(|(p, _)| p).ok_or_else(|| internal(g, root, "operand not computed"))
        };
        if group.kind == GroupKind::Movement {
            return self.movement(root, &source, out);
        }
        if self.contractions[gi].is_some() {
            return self.contract(gi, &source, out, workers);
        }
        let Some(k) = kernel else { return Err(internal(g, root, "group without code")) };
        let mut ptrs = Vec::with_capacity(k.kernel.inputs.len());
        for input in &k.kernel.inputs {
            let leaf = buffer_of(g, input.node);
            let (ptr, len) = match overwritten.iter().find(|(l, _, _)| *l == leaf) {
                // The input being overwritten is read through the pointer written over it.
                Some((_, p, len)) => (*p as *const u8, *len),
                None => {
                    view(slots, base, g, input.node).ok_or_else(|| internal(g, root, "kernel input not computed"))?
                }
            };
            // The furthest element the strides reach must lie inside the buffer.
            if !fits(input, &k.kernel.space, len) {
                return Err(internal(g, root, "kernel input too small"));
            }
            ptrs.push(ptr);
        }
        // The side outputs' buffers follow the inputs' ([`CompiledKernel::call`]).
        ptrs.extend(at.sides.iter().map(|p| *p as *const u8));
        match self.timing.load(std::sync::atomic::Ordering::Relaxed) {
            0 => self.call(k, &ptrs, out, workers),
            tier => {
                // A trial run of the second tier: this call's time on its tier.
                let start = std::time::Instant::now();
                self.call(k, &ptrs, out, workers);
                let ns = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                self.kernel_times[gi][usize::from(tier - 1)].fetch_min(ns, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Runs a `pad` or `concat` into `out` with block copies.
    fn movement(
        &self,
        root: NodeId,
        source: &dyn Fn(NodeId) -> Result<*const u8, InterpError>,
        out: *mut u8,
    ) -> Result<(), InterpError> {
        let g = &self.graph;
        let node = g.node(root);
        match node.op.movement() {
            Some(Movement::Concat { axis }) => {
                let mut parts = Vec::with_capacity(node.args.len());
                for a in &node.args {
                    parts.push((source(*a)?, g.ty(*a)));
                }
                // SAFETY: every operand is a row-major buffer of its type (the slots hold
                // exactly that); `out` is the result's own buffer of its type, apart from
                // every live operand (the plan keeps live buffers apart); the graph verified
                // the concat's types.
                unsafe { movement::concat(&parts, axis, out, g.ty(root)) };
            }
            Some(Movement::Pad { low, value, .. }) => {
                let x = node.args[0];
                // SAFETY: as above, for the pad's operand and result.
                unsafe { movement::pad(source(x)?, g.ty(x), low, value.0, out, g.ty(root)) };
            }
            Some(
                Movement::Reshape | Movement::Permute { .. } | Movement::Broadcast { .. } | Movement::Slice { .. },
            )
            | None => {
                return Err(internal(g, root, "not a movement op"));
            }
        }
        Ok(())
    }

    /// Runs contraction group `gi` (its call, then its epilogue if any) into `out`, reading
    /// operands through `source`.
    fn contract(
        &self,
        gi: usize,
        source: &dyn Fn(NodeId) -> Result<*const u8, InterpError>,
        out: *mut u8,
        workers: Option<&Pool>,
    ) -> Result<(), InterpError> {
        let g = &self.graph;
        let (group, epilogue) = &self.groups[gi];
        let root = group.root();
        let epilogue = epilogue.as_ref();
        let Some(call) = &self.contractions[gi] else { return Err(internal(g, root, "not a contraction")) };
        // The contraction's own dtype: an epilogue after a product may cast it, so the
        // group's root can have another.
        let dtype = g.ty(contraction_of(g, &self.groups[gi].0)).dtype;
        match call {
            Contraction::Gemm(call) => {
                let (a, b) = (call.a.operand(source(call.a.node)?), call.b.operand(source(call.b.node)?));
                let Some(k) = epilogue else {
                    // SAFETY: the operands are row-major buffers of their nodes' types (slots
                    // hold exactly that), which the strides of `GemmCall::new` cover for this
                    // shape; `out` is a fresh, owned or planned buffer of the product's type
                    // that no live operand shares (the plan keeps live buffers apart).
                    let done = unsafe { gemm::matmul(dtype, call.shape, a, b, out, workers, &|_, _, _| {}) };
                    return if done { Ok(()) } else { Err(internal(g, root, "gemm on a non-float product")) };
                };
                // The product goes to a scratch buffer kept between runs; the epilogue reads
                // each band of it right after the GEMM wrote it, on the same thread.
                // Taken out of the shared list for the call, so steps running at the same time
                // do not wait for each other.
                let kept = {
                    let mut scratch_pool = self.scratch.lock().unwrap_or_else(|e| e.into_inner());
                    scratch_pool.resize(self.groups.len(), None);
                    scratch_pool[gi].take()
                };
                let product_ty = g.ty(call.product);
                let scratch = match kept {
                    Some(v) if &v.ty() == product_ty => v,
                    _ => Value::splat(product_ty, 0.0),
                };
                let mut scratch = scratch;
                let c = data_mut(&mut scratch);
                let mut ptrs = Vec::with_capacity(k.kernel.inputs.len());
                for input in &k.kernel.inputs {
                    let (ptr, len) = if input.node == call.product {
                        (c as *const u8, product_ty.numel())
                    } else {
                        let v = source(input.node)?;
                        (v, g.ty(buffer_of(g, input.node)).numel())
                    };
                    if !fits(input, &k.kernel.space, len) {
                        return Err(internal(g, root, "epilogue input too small"));
                    }
                    ptrs.push(ptr);
                }
                let (m, n) = (call.shape.m, call.shape.n);
                // The epilogue's outer axis must be the product's rows (or rows × columns
                // collapsed into one) for it to run band by band; otherwise it runs whole.
                let per_row = match k.kernel.space.first() {
                    Some(&e) if e == m && k.kernel.space.len() == 2 => Some(1),
                    Some(&e) if e == m * n && k.kernel.space.len() == 1 => Some(n),
                    _ => None,
                };
                let args = KernelArgs { inputs: &ptrs, out };
                let band = |_: usize, r0: usize, rows: usize| {
                    if let Some(unit) = per_row {
                        let (inputs, out) = args.get();
                        // SAFETY: the inputs are checked above; rows r0..r0+rows of the
                        // product were just written by this thread's GEMM call, and the band
                        // writes only its own rows of `out`, the group's result buffer.
                        unsafe { k.call_range(inputs, out, (r0 * unit) as i64, ((r0 + rows) * unit) as i64) };
                    }
                };
                // SAFETY: as above for the GEMM, with `c` the scratch buffer of the product's
                // type, apart from every operand.
                let done = unsafe { gemm::matmul(dtype, call.shape, a, b, c, workers, &band) };
                if !done {
                    return Err(internal(g, root, "gemm on a non-float product"));
                }
                if per_row.is_none() && k.kernel.out.numel() > 0 {
                    // SAFETY: as for the bands, over the whole product.
                    unsafe { k.call(&ptrs, out) };
                }
                self.scratch.lock().unwrap_or_else(|e| e.into_inner())[gi] = Some(scratch);
            }
            Contraction::Conv { kind, geometry, lhs, rhs, cols } => {
                let (l, r) = (source(*lhs)?, source(*rhs)?);
                let (nl, nr, no) = (g.ty(*lhs).numel(), g.ty(*rhs).numel(), g.ty(root).numel());
                // Locked only by convolutions that share columns, for as long as they use them.
                let mut columns =
                    (*cols != SharedCols::No).then(|| self.columns.lock().unwrap_or_else(|e| e.into_inner()));
                // The kept columns: K × N·P elements of the convolution's type.
                let kept: Option<(*mut u8, usize)> = match *cols {
                    SharedCols::No => None,
                    SharedCols::Keep(slot) | SharedCols::Reuse(slot) => {
                        let len = geometry.kept_columns();
                        let ty = kiln_ir::TensorType::new(dtype, [len]);
                        let buf = columns
                            .as_mut()
                            .and_then(|c| c.get_mut(slot))
                            .ok_or_else(|| internal(g, root, "no column slot"))?;
                        if buf.as_ref().is_none_or(|v| v.ty() != ty) {
                            *buf = Some(Value::splat(&ty, 0.0));
                        }
                        buf.as_mut().map(|v| (data_mut(v), len))
                    }
                };
                macro_rules! run {
                    ($t:ty) => {{
                        // SAFETY: each operand slot is a row-major buffer of its node's type, so it
                        // holds exactly numel elements of $t; `out` is the result's buffer of
                        // `no` elements, not shared with any live operand (see above).
                        let (l, r, o) = unsafe {
                            (
                                std::slice::from_raw_parts(l as *const $t, nl),
                                std::slice::from_raw_parts(r as *const $t, nr),
                                std::slice::from_raw_parts_mut(out as *mut $t, no),
                            )
                        };
                        // SAFETY: the kept buffer holds `len` elements of $t (made above for this
                        // type) and is locked for this call; it is no operand's or output's buffer.
                        let kept = kept.map(|(p, len)| unsafe { std::slice::from_raw_parts_mut(p as *mut $t, len) });
                        match (kind, cols) {
                            (ConvKind::Forward, _) => conv::forward(geometry, l, r, o, workers, kept),
                            (ConvKind::GradInput, _) => conv::grad_input(geometry, l, r, o, workers),
                            (ConvKind::GradWeight, SharedCols::Reuse(_)) => {
                                conv::grad_weight(geometry, l, r, o, workers, kept.map(|k| &*k))
                            }
                            (ConvKind::GradWeight, _) => conv::grad_weight(geometry, l, r, o, workers, None),
                        }
                    }};
                }
                match dtype {
                    DType::F32 => run!(f32),
                    DType::F64 => run!(f64),
                    _ => return Err(internal(g, root, "convolution of a non-float type")),
                }
            }
        }
        Ok(())
    }

    /// The work of group `gi` in rough units (elements, or multiply-adds), and whether it is
    /// big enough to split over the threads itself.
    fn size(&self, gi: usize) -> (usize, bool) {
        let threads = self.threads;
        match (&self.contractions[gi], &self.groups[gi].1) {
            (Some(Contraction::Gemm(c)), _) => (c.shape.flops(), c.shape.flops() >= gemm::PARALLEL_MIN_FLOPS),
            (Some(Contraction::Conv { geometry, .. }), _) => {
                (geometry.flops(), geometry.flops() >= conv::PARALLEL_MIN_FLOPS)
            }
            (None, Some(k)) => {
                let numel: usize = k.kernel.space.iter().product();
                let outer = k.kernel.space.first().copied().unwrap_or(1);
                (numel, k.kernel.splits_outer() && numel >= PARALLEL_MIN_ELEMENTS && outer >= threads)
            }
            (None, None) => {
                let root = self.groups[gi].0.root();
                let moves = self.groups[gi].0.kind == GroupKind::Movement;
                (if moves { self.graph.ty(root).numel() } else { 0 }, false)
            }
        }
    }

    /// The windows of steps that may run at the same time ([`Executable::windows`]): from
    /// each group, the consecutive groups that depend on no other group of the window (by the
    /// schedule's step DAG, scratch being private here), none big enough to use every thread
    /// itself, and at least two with the overlap's least work to do.
    fn find_windows(&self) -> Vec<usize> {
        let n = self.groups.len();
        if self.threads <= 1 {
            return (1..=n).collect();
        }
        let dag = StepDag::with_private_scratch(&self.schedule);
        let sizes: Vec<(usize, bool)> = (0..n).map(|gi| self.size(gi)).collect();
        (0..n)
            .map(|i| {
                let mut end = i + 1;
                while end < n
                    && !sizes[i].1
                    && !sizes[end].1
                    && !dag.before(end).iter().any(|(p, _)| (i..end).contains(p))
                {
                    end += 1;
                }
                let worth = sizes[i..end].iter().filter(|(w, _)| *w >= self.overlap_min_work).count();
                if worth >= 2 { end } else { i + 1 }
            })
            .collect()
    }

    /// Calls a kernel, splitting big elementwise ones over `workers`.
    fn call(&self, k: &CompiledKernel, ptrs: &[*const u8], out: *mut u8, workers: Option<&Pool>) {
        if k.kernel.out.numel() == 0 {
            return;
        }
        let outer = k.kernel.space.first().copied().unwrap_or(1);
        let numel: usize = k.kernel.space.iter().product();
        let split =
            self.threads > 1 && k.kernel.splits_outer() && numel >= PARALLEL_MIN_ELEMENTS && outer >= self.threads;
        if let (true, Some(pool)) = (split, workers) {
            let args = KernelArgs { inputs: ptrs, out };
            let chunk = outer.div_ceil(self.threads);
            let parts = outer.div_ceil(chunk);
            pool.for_each(parts, &|t| {
                let (inputs, out) = args.get();
                let (lo, hi) = (t * chunk, ((t + 1) * chunk).min(outer));
                // SAFETY: as for the single-threaded call below; the ranges lo..hi are
                // disjoint and cover the outer axis.
                unsafe { k.call_range(inputs, out, lo as i64, hi as i64) }
            });
        } else {
            // SAFETY: every input pointer is a row-major buffer of its kernel input's dtype
            // whose strided reach was checked by the caller; `out` is a row-major buffer of
            // the kernel's output type: an owned value of that type, the arena block the plan
            // reserved for it, or the input updated in place, which has the output's type and
            // is read only at the element being written.
            unsafe { k.call(ptrs, out) };
        }
    }
}

/// An executor invariant that failed, as an error rather than a panic.
fn internal(g: &Graph, node: NodeId, what: &str) -> InterpError {
    InterpError::Eval { node, op: g.node(node).op.name(), message: format!("internal: {what}") }
}
