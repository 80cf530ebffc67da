//! The JIT executor: a graph partitioned into groups, elementwise groups compiled to native
//! kernels with Cranelift, the other ops run by the reference implementations, executed in
//! dependency order.

use std::collections::HashMap;

use kiln_codegen::cpu::{CodegenError, CompiledKernel, CpuJit};
use kiln_codegen::kernel::{LowerError, lower_group};
use kiln_ir::interp::eval_node;
use kiln_ir::{Graph, InterpError, Value};
use kiln_passes::fuse::{Group, GroupKind, Mode, partition};
use thiserror::Error;

/// Errors from compiling a graph.
#[derive(Debug, Error)]
pub enum CompileError {
    /// A group could not be lowered to a kernel.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Code generation failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
}

/// Compilation options.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Fuse elementwise chains, or one kernel per op (the benchmark baseline).
    pub mode: Mode,
    /// Keep every kernel's machine code as assembly text (`kiln dump --stage asm`).
    pub disassemble: bool,
}

/// A compiled graph, ready to run many times. Kernel output buffers are kept between runs
/// (a first memory plan: no allocation or page faults on the second and later runs).
pub struct Executable {
    graph: Graph,
    groups: Vec<(Group, Option<CompiledKernel>)>,
    buffers: std::sync::Mutex<Vec<Option<Value>>>,
    threads: usize,
    // Owns the machine code of every kernel; must outlive them.
    _jit: CpuJit,
}

/// Compiles `graph` for the host CPU.
pub fn compile(graph: &Graph, options: Options) -> Result<Executable, CompileError> {
    let mut jit = CpuJit::new()?;
    jit.keep_disassembly(options.disassemble);
    let mut groups = Vec::new();
    for g in partition(graph, options.mode) {
        let kernel = match g.kind {
            GroupKind::Elementwise => Some(jit.compile(&lower_group(graph, &g.members)?)?),
            GroupKind::Op => None,
        };
        groups.push((g, kernel));
    }
    Ok(Executable { graph: graph.clone(), groups, buffers: std::sync::Mutex::new(Vec::new()), threads: 1, _jit: jit })
}

/// True if the value's array is row-major and contiguous.
fn is_standard(v: &Value) -> bool {
    match v {
        Value::F32(a) => a.is_standard_layout(),
        Value::F64(a) => a.is_standard_layout(),
        Value::I32(a) => a.is_standard_layout(),
        Value::I64(a) => a.is_standard_layout(),
        Value::Bool(a) => a.is_standard_layout(),
    }
}

/// The data pointer and element count of a row-major value.
fn data(v: &Value) -> (*const u8, usize) {
    match v {
        Value::F32(a) => (a.as_ptr() as *const u8, a.len()),
        Value::F64(a) => (a.as_ptr() as *const u8, a.len()),
        Value::I32(a) => (a.as_ptr() as *const u8, a.len()),
        Value::I64(a) => (a.as_ptr() as *const u8, a.len()),
        Value::Bool(a) => (a.as_ptr() as *const u8, a.len()),
    }
}

fn data_mut(v: &mut Value) -> *mut u8 {
    match v {
        Value::F32(a) => a.as_mut_ptr() as *mut u8,
        Value::F64(a) => a.as_mut_ptr() as *mut u8,
        Value::I32(a) => a.as_mut_ptr() as *mut u8,
        Value::I64(a) => a.as_mut_ptr() as *mut u8,
        Value::Bool(a) => a.as_mut_ptr() as *mut u8,
    }
}

impl std::fmt::Debug for Executable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Executable(@{}, {} groups)", self.graph.name(), self.groups.len())
    }
}

/// Kernels with fewer elements than this run on one thread (threads cost more than they save).
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;

/// Raw buffer pointers handed to the threads of one kernel call.
#[derive(Clone, Copy)]
struct KernelArgs<'a> {
    inputs: &'a [*const u8],
    out: *mut u8,
}

// SAFETY: the pointers refer to buffers borrowed for the whole scoped-thread section; kernels
// only read their inputs, and each thread writes a disjoint range of the output.
unsafe impl Send for KernelArgs<'_> {}

impl Executable {
    /// Runs big elementwise kernels on `threads` threads, splitting their outermost axis.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
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

    /// The liveness-based memory plan of this executable's buffers (a report for now: the
    /// executor keeps one buffer per kernel between runs rather than one shared arena).
    pub fn memory_plan(&self) -> kiln_passes::plan::MemoryPlan {
        let groups: Vec<Group> = self.groups.iter().map(|(g, _)| g.clone()).collect();
        kiln_passes::plan::plan(&self.graph, &groups)
    }

    /// The groups and their kernels, in execution order.
    pub fn groups(&self) -> impl Iterator<Item = (&Group, Option<&CompiledKernel>)> {
        self.groups.iter().map(|(g, k)| (g, k.as_ref()))
    }

    /// Runs the graph with a value for every leaf (by name); returns the outputs in order.
    pub fn run(&self, feeds: &HashMap<String, Value>) -> Result<Vec<Value>, InterpError> {
        let mut outputs = Vec::new();
        self.run_into(feeds, &mut outputs)?;
        Ok(outputs)
    }

    /// Like [`Executable::run`], writing into `outputs` and reusing its buffers when their
    /// types fit: with kept intermediate buffers, a steady-state run allocates nothing for
    /// its kernels.
    pub fn run_into(&self, feeds: &HashMap<String, Value>, outputs: &mut Vec<Value>) -> Result<(), InterpError> {
        let g = &self.graph;
        kiln_ir::interp::check_feeds(g, feeds)?;
        // Buffers from earlier runs; a poisoned lock only means an earlier run panicked, and
        // the buffers are plain data, so they are still usable.
        let mut pool = std::mem::take(&mut *self.buffers.lock().unwrap_or_else(|e| e.into_inner()));
        pool.resize(g.len(), None);
        for (o, v) in g.outputs().iter().zip(outputs.drain(..)) {
            pool[o.value.index()] = Some(v);
        }
        // Leaves are borrowed when already row-major; computed values are owned.
        let mut vals: Vec<Option<std::borrow::Cow<'_, Value>>> = vec![None; g.len()];
        for (id, node) in g.leaves() {
            let name = node.op.leaf_name().unwrap_or_default();
            // Present and well typed: checked above.
            let v = feeds.get(name).ok_or_else(|| InterpError::MissingLeaf(name.into()))?;
            vals[id.index()] = Some(if is_standard(v) {
                std::borrow::Cow::Borrowed(v)
            } else {
                std::borrow::Cow::Owned(crate::map_standard(v))
            });
        }
        for (group, kernel) in &self.groups {
            let root = group.root();
            let node = g.node(root);
            let value = match kernel {
                Some(k) => {
                    let mut ptrs = Vec::with_capacity(k.kernel.inputs.len());
                    for input in &k.kernel.inputs {
                        let v = vals[input.node.index()].as_deref().expect("groups run after their inputs");
                        let (ptr, len) = data(v);
                        // The furthest element the strides reach must lie inside the buffer.
                        let reach: i64 =
                            input.strides.iter().zip(&k.kernel.space).map(|(s, d)| s * (*d as i64 - 1).max(0)).sum();
                        let empty = k.kernel.space.contains(&0);
                        if !empty && reach as usize >= len {
                            return Err(InterpError::Eval {
                                node: root,
                                op: node.op.name(),
                                message: "internal: kernel input too small".into(),
                            });
                        }
                        ptrs.push(ptr);
                    }
                    let mut out = match pool[root.index()].take() {
                        Some(v) if v.ty() == k.kernel.out => v,
                        _ => Value::splat(&k.kernel.out, 0.0),
                    };
                    let outer = k.kernel.space.first().copied().unwrap_or(1);
                    let numel: usize = k.kernel.space.iter().product();
                    let split = self.threads > 1
                        && k.kernel.reduce.is_none()
                        && numel >= PARALLEL_MIN_ELEMENTS
                        && outer >= self.threads;
                    if k.kernel.out.numel() > 0 && split {
                        let args = KernelArgs { inputs: &ptrs, out: data_mut(&mut out) };
                        let chunk = outer.div_ceil(self.threads);
                        std::thread::scope(|scope| {
                            for lo in (0..outer).step_by(chunk) {
                                let hi = (lo + chunk).min(outer);
                                scope.spawn(move || {
                                    let args = args;
                                    // SAFETY: as for the single-threaded call below; the
                                    // ranges lo..hi are disjoint and cover the outer axis.
                                    unsafe { k.call_range(args.inputs, args.out, lo as i64, hi as i64) }
                                });
                            }
                        });
                    } else if k.kernel.out.numel() > 0 {
                        // SAFETY: every input pointer is a row-major buffer of its kernel
                        // input's dtype whose strided reach was checked above, and `out` is a
                        // row-major buffer of the kernel's output type (checked just above).
                        unsafe { k.call(&ptrs, data_mut(&mut out)) };
                    }
                    out
                }
                None => {
                    let args: Vec<&Value> = node
                        .args
                        .iter()
                        .map(|a| vals[a.index()].as_deref().expect("groups run after their inputs"))
                        .collect();
                    let v = eval_node(node, &args).map_err(|message| InterpError::Eval {
                        node: root,
                        op: node.op.name(),
                        message,
                    })?;
                    crate::map_standard(&v)
                }
            };
            vals[root.index()] = Some(std::borrow::Cow::Owned(value));
        }
        // Outputs move to the caller (a value returned twice is copied); kernel buffers of
        // intermediates go back to the pool.
        let mut is_output = vec![false; g.len()];
        for o in g.outputs() {
            let i = o.value.index();
            let value = if is_output[i] {
                outputs[g.outputs().iter().position(|p| p.value == o.value).unwrap_or(0)].clone()
            } else {
                is_output[i] = true;
                match vals[i].take().expect("outputs are computed") {
                    std::borrow::Cow::Owned(v) => v,
                    std::borrow::Cow::Borrowed(v) => v.clone(),
                }
            };
            outputs.push(value);
        }
        for (group, kernel) in &self.groups {
            let r = group.root().index();
            if kernel.is_some()
                && !is_output[r]
                && let Some(std::borrow::Cow::Owned(v)) = vals[r].take()
            {
                pool[r] = Some(v);
            }
        }
        drop(vals);
        *self.buffers.lock().unwrap_or_else(|e| e.into_inner()) = pool;
        Ok(())
    }
}
