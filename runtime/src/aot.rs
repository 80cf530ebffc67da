//! Compiling a graph ahead of time into a self-contained shared library.
//!
//! [`build`] partitions and plans the graph exactly as the JIT does ([`crate::jit::compile`]),
//! renders every fused kernel as C for the system C compiler at the target's full vector
//! width ([`kiln_codegen::ckernels`], the JIT's second tier; [`KernelCompiler::Cranelift`]
//! writes them with Cranelift instead), writes the weights into one object with Cranelift
//! ([`kiln_codegen::aot::ObjectKernels`]), resolves every buffer of the execution into a
//! [`Program`] (a caller's input or output, an embedded weight, or an arena offset of the
//! memory plan) and has the system C compiler link the object, the rendered driver and the C
//! runtime into `libNAME.so`, exporting only the `NAME_*` functions of `NAME.h`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

pub use kiln_codegen::aot::Target;
use kiln_codegen::aot::driver::{self, Buf, ConvShape, MatrixOperand, Program, Step};
use kiln_codegen::aot::{ObjectKernels, RUNTIME_C, header, is_c_identifier};
use kiln_codegen::cpu::CodegenError;
use kiln_codegen::kernel::LowerError;
use kiln_ir::{Graph, Movement, NodeId, Op, TensorType, Value};
use kiln_passes::fuse::{Mode, contraction_of};
use kiln_passes::plan::{ALIGN, buffer_of};
use thiserror::Error;

use crate::bytes::value_bytes;
use crate::schedule::{Buffer, Contraction, ConvKind, GemmOperand, Schedule, ScheduleError, Work, fits};

/// Errors from [`build`].
#[derive(Debug, Error)]
pub enum AotError {
    /// The library name cannot prefix C symbols.
    #[error("`{0}` cannot name a library: use a C identifier (letters, digits, `_`, not starting with a digit)")]
    BadName(String),
    /// A parameter has no weight.
    #[error("no weight for parameter `{name}` ({ty})")]
    MissingWeight {
        /// The parameter.
        name: String,
        /// Its type.
        ty: TensorType,
    },
    /// A weight has another type than its parameter.
    #[error("the weight for parameter `{name}` is {got}, the parameter is {ty}")]
    WrongWeight {
        /// The parameter.
        name: String,
        /// Its type.
        ty: TensorType,
        /// The weight's type.
        got: TensorType,
    },
    /// The graph has an op the library cannot run yet.
    #[error("{op} (node %{node}) cannot be compiled into a library yet: {why}")]
    Unsupported {
        /// The op's name.
        op: &'static str,
        /// The node's index.
        node: usize,
        /// Why.
        why: String,
    },
    /// A group could not be lowered to a kernel.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Code generation failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// The graph could not be lowered to a schedule.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A file could not be written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What failed.
        message: String,
    },
    /// The C compiler could not be run.
    #[error(
        "cannot run the C compiler `{cc}` ({message}): kiln build links libraries with the system C compiler; install gcc or clang, or set CC"
    )]
    NoCompiler {
        /// The command.
        cc: String,
        /// Why.
        message: String,
    },
    /// The C compiler failed.
    #[error("the C compiler `{cc}` failed to link {library}:\n{stderr}")]
    Link {
        /// The command.
        cc: String,
        /// The library being linked.
        library: String,
        /// Its error output.
        stderr: String,
    },
}

/// Who compiles a library's fused kernels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KernelCompiler {
    /// The system C compiler, from their C rendering ([`kiln_codegen::ckernels`]), at the
    /// target's full vector width (sixteen `f32` lanes on `x86-64-v4`).
    #[default]
    C,
    /// Cranelift, as the JIT's first tier (four `f32` lanes at most).
    Cranelift,
}

impl KernelCompiler {
    /// The one called `name` (`c`, `cranelift`).
    pub fn parse(name: &str) -> Option<KernelCompiler> {
        match name {
            "c" => Some(KernelCompiler::C),
            "cranelift" => Some(KernelCompiler::Cranelift),
            _ => None,
        }
    }
}

/// Where and how [`build`] writes a library.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The library's name: `libNAME.so`, `NAME.h`, and the `NAME_` prefix of its functions.
    pub name: String,
    /// The directory the library and header go to (created if missing).
    pub dir: PathBuf,
    /// The C compiler; default `$CC`, else `cc`.
    pub cc: Option<String>,
    /// Keep the generated sources and the object in `DIR/NAME.build/` (for reading them).
    pub keep_sources: bool,
    /// Who compiles the fused kernels (default: the system C compiler).
    pub kernels: KernelCompiler,
    /// The CPUs the code is compiled for (default: the building machine's).
    pub target: Target,
}

impl BuildOptions {
    /// Options writing `libNAME.so` and `NAME.h` into `dir`.
    pub fn new(name: &str, dir: impl Into<PathBuf>) -> Self {
        BuildOptions {
            name: name.to_string(),
            dir: dir.into(),
            cc: None,
            keep_sources: false,
            kernels: KernelCompiler::C,
            target: Target::Native,
        }
    }
}

/// A library [`build`] wrote.
#[derive(Clone, Debug)]
pub struct Library {
    /// `DIR/libNAME.so`.
    pub library: PathBuf,
    /// `DIR/NAME.h`.
    pub header: PathBuf,
    /// Inputs of `NAME_run`, in order.
    pub inputs: Vec<(String, TensorType)>,
    /// Outputs of `NAME_run`, in order.
    pub outputs: Vec<(String, TensorType)>,
    /// Fused kernels in the library.
    pub kernels: usize,
    /// Bytes of embedded weights.
    pub weight_bytes: usize,
    /// Bytes of the arena each calling thread allocates (without the GEMM's scratch).
    pub arena_bytes: usize,
    /// The C math library functions the kernels call (`expf`, `exp`, …; empty: the library
    /// needs only libc).
    pub libm: Vec<&'static str>,
    /// The CPUs it is compiled for.
    pub target: Target,
    /// The CPU features it checks before running.
    pub cpu_features: Vec<&'static str>,
}

/// Compiles `graph` (already optimized) into `libNAME.so` and `NAME.h` in `options.dir`, its
/// parameters embedded from `weights` (by name, each of its parameter's type). The library
/// runs the graph's inputs to its outputs on one thread per call.
pub fn build(graph: &Graph, weights: &HashMap<String, Value>, options: &BuildOptions) -> Result<Library, AotError> {
    let name = &options.name;
    if !is_c_identifier(name) {
        return Err(AotError::BadName(name.clone()));
    }
    let (program, object, kernels, weight_bytes, c_kernels) = lower(graph, weights, name, options)?;
    let io = |path: &Path, e: std::io::Error| AotError::Io { path: path.display().to_string(), message: e.to_string() };
    std::fs::create_dir_all(&options.dir).map_err(|e| io(&options.dir, e))?;
    let work = if options.keep_sources {
        options.dir.join(format!("{name}.build"))
    } else {
        // Unique per build, so builds of one name on several threads never share files.
        static BUILDS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = BUILDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        std::env::temp_dir().join(format!("kiln-build-{}-{n}-{name}", std::process::id()))
    };
    std::fs::create_dir_all(&work).map_err(|e| io(&work, e))?;
    let write = |file: &str, bytes: &[u8]| -> Result<PathBuf, AotError> {
        let path = work.join(file);
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        Ok(path)
    };
    let object_path = write(&format!("{name}_kernels.o"), &object)?;
    let c_source = match &c_kernels {
        Some(c) => Some(write(&format!("{name}_kernels.c"), c.source.as_bytes())?),
        None => None,
    };
    let driver_path = write(&format!("{name}_driver.c"), driver::render(&program).as_bytes())?;
    let runtime_path = write("kiln_rt.c", RUNTIME_C.as_bytes())?;
    let exported = kiln_codegen::aot::FUNCTIONS;
    let script: String = format!(
        "{{\n  global:\n{}  local: *;\n}};\n",
        exported.iter().map(|f| format!("    {name}_{f};\n")).collect::<String>()
    );
    let script_path = write(&format!("{name}.map"), script.as_bytes())?;
    let library = options.dir.join(format!("lib{name}.so"));
    let cc = options.cc.clone().or_else(|| std::env::var("CC").ok()).unwrap_or_else(|| "cc".into());
    // The driver at the compiler's baseline (it checks the CPU before any other code runs),
    // the runtime for the target, then the library.
    let march = format!("-march={}", options.target.march());
    let common = ["-fPIC", "-fvisibility=hidden", "-std=gnu11", "-pthread"];
    let driver_object = work.join(format!("{name}_driver.o"));
    let runtime_object = work.join("kiln_rt.o");
    let mut compile_driver = Command::new(&cc);
    compile_driver.args(common).args(["-O2", "-c", "-o"]).arg(&driver_object).arg(&driver_path);
    let mut compile_runtime = Command::new(&cc);
    compile_runtime.args(common).args(["-O3", &march, "-c", "-o"]).arg(&runtime_object).arg(&runtime_path);
    // The kernels' C at the target's full vector width, with the flags that keep their
    // arithmetic the JIT's (`kiln_codegen::ckernels::COMPILE_FLAGS`).
    let c_kernels_object = work.join(format!("{name}_kernels_c.o"));
    let compile_kernels = c_source.as_ref().map(|source| {
        let mut cmd = Command::new(&cc);
        cmd.args(common).args(kiln_codegen::ckernels::COMPILE_FLAGS).arg(&march);
        if matches!(options.target, Target::Native | Target::X86_64V4) {
            cmd.arg("-mprefer-vector-width=512");
        }
        cmd.args(["-c", "-o"]).arg(&c_kernels_object).arg(source);
        cmd
    });
    let run = |mut cmd: Command| -> Result<(), AotError> {
        let out = cmd.output().map_err(|e| AotError::NoCompiler { cc: cc.clone(), message: e.to_string() })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(AotError::Link {
                cc: cc.clone(),
                library: library.display().to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    };
    // Linked to a partial file renamed over the library (`files::replace`): never seen half
    // written, and a program that has the old library loaded keeps it intact.
    let result = crate::files::replace(
        &library,
        |partial| {
            let mut link = Command::new(&cc);
            link.args(["-shared", "-pthread", "-o"])
                .arg(partial)
                .arg(&driver_object)
                .arg(&runtime_object)
                .arg(&object_path)
                .arg(format!("-Wl,--version-script={}", script_path.display()))
                .arg("-Wl,-z,noexecstack");
            if compile_kernels.is_some() {
                link.arg(&c_kernels_object);
            }
            if !program.math.is_empty() || c_kernels.as_ref().is_some_and(|c| !c.math.is_empty()) {
                link.arg("-lm");
            }
            [Some(compile_driver), Some(compile_runtime), compile_kernels, Some(link)]
                .into_iter()
                .flatten()
                .try_for_each(run)
        },
        |e| io(&library, e),
    );
    if !options.keep_sources {
        let _ = std::fs::remove_dir_all(&work);
    }
    result?;
    let header_path = options.dir.join(format!("{name}.h"));
    let text = header(name, &program.inputs, &program.outputs).ok_or_else(|| AotError::BadName(name.clone()))?;
    crate::files::write(&header_path, text.as_bytes()).map_err(|e| io(&header_path, e))?;
    Ok(Library {
        library,
        header: header_path,
        inputs: program.inputs,
        outputs: program.outputs,
        kernels,
        weight_bytes,
        arena_bytes: program.arena_bytes,
        libm: match c_kernels {
            Some(c) => c.math,
            None => program.math.iter().filter_map(|symbol| c_math_name(symbol)).collect(),
        },
        target: options.target,
        cpu_features: program.cpu_features,
    })
}

/// The C math library's name of kiln's math symbol `symbol` (`kiln_exp_f32` → `expf`).
fn c_math_name(symbol: &str) -> Option<&'static str> {
    let m = kiln_codegen::cpu::MATH.iter().find(|m| m.symbol == symbol)?;
    kiln_codegen::ckernels::c_math_name(m.name, m.dtype)
}

/// What [`lower`] makes of a graph: the program, the object's bytes, the kernel count, the
/// weight bytes, and the kernels' C when the C compiler compiles them.
type Lowered = (Program, Vec<u8>, usize, usize, Option<CKernels>);

/// A library's kernels as C: the translation unit and the C math functions it calls.
struct CKernels {
    source: String,
    math: Vec<&'static str>,
}

/// The program, the object's bytes, the kernel count and the weight bytes of `graph` (and its
/// kernels' C, for [`KernelCompiler::C`]).
fn lower(
    graph: &Graph,
    weights: &HashMap<String, Value>,
    name: &str,
    options: &BuildOptions,
) -> Result<Lowered, AotError> {
    let target = options.target;
    // The C runtime has channels-first convolutions only: channels-last ones run between two
    // transposes (same values).
    let converted = kiln_passes::layout::channels_first_if_needed(graph).map_err(|e| AotError::Unsupported {
        op: "conv2d",
        node: 0,
        why: format!("cannot convert to channels-first: {e}"),
    })?;
    let g = converted.as_ref().unwrap_or(graph);
    let unsupported = |id: NodeId, why: &str| AotError::Unsupported {
        op: g.node(id).op.name(),
        node: id.index(),
        why: why.to_string(),
    };
    let mut object = ObjectKernels::for_target(name, target)?;
    // Kernels for the C compiler, by symbol; `None`: Cranelift writes them into the object.
    let mut c_kernels: Option<Vec<(String, kiln_codegen::kernel::Kernel)>> =
        (options.kernels == KernelCompiler::C).then(Vec::new);
    let mut buf: Vec<Option<Buf>> = vec![None; g.len()];
    let inputs: Vec<(String, TensorType)> = g
        .inputs()
        .enumerate()
        .map(|(i, (id, node))| {
            buf[id.index()] = Some(Buf::Input(i));
            (node.op.leaf_name().unwrap_or_default().to_string(), g.ty(id).clone())
        })
        .collect();
    let mut embedded = Embedded::default();
    for (id, node) in g.params() {
        let pname = node.op.leaf_name().unwrap_or_default();
        let ty = g.ty(id);
        let v = weights.get(pname).ok_or_else(|| AotError::MissingWeight { name: pname.into(), ty: ty.clone() })?;
        if &v.ty() != ty {
            return Err(AotError::WrongWeight { name: pname.into(), ty: ty.clone(), got: v.ty() });
        }
        buf[id.index()] = Some(embedded.add(&mut object, name, v)?);
    }
    let outputs: Vec<(String, TensorType)> =
        g.outputs().iter().map(|o| (o.name.clone(), g.ty(o.value).clone())).collect();

    let schedule = Schedule::build(g, Mode::Fused)?;
    let arena = |b: Buffer| match b {
        Buffer::Arena { offset, .. } => offset,
        Buffer::Input(_) | Buffer::Param(_) | Buffer::Output(_) => 0,
    };
    let (product_at, columns_at) = (arena(schedule.scratch.product), arena(schedule.scratch.columns));
    let arena_bytes = schedule.arena_bytes;
    // The library's place for a schedule buffer (iotas are replaced by embedded data above
    // it, in `buf`).
    let place = |b: Buffer| match b {
        Buffer::Input(i) => Buf::Input(i),
        Buffer::Param(i) => Buf::Weight(i),
        Buffer::Output(i) => Buf::Output(i),
        Buffer::Arena { offset, .. } => Buf::Arena(offset),
    };

    let mut steps = Vec::new();
    let mut kernels = 0;
    let get = |buf: &[Option<Buf>], id: NodeId| computed(g, buf, id);
    for (si, step) in schedule.steps.iter().enumerate() {
        let root = step.node;
        let out = place(step.out);
        let node = g.node(root);
        match &step.work {
            Work::Alias { source } => {
                // A reshape: the same bytes as its source.
                buf[root.index()] = Some(get(&buf, *source)?);
            }
            Work::CopyOut(i) => {
                let from = get(&buf, root)?;
                if from != Buf::Output(*i) {
                    steps.push(Step::Copy { from, to: Buf::Output(*i), bytes: g.ty(root).size_bytes() });
                }
            }
            Work::Op if matches!(node.op, Op::Iota { .. }) => {
                // An iota has no operands: its values are known now, so they are embedded like a
                // weight (an output that is one is copied out, as a weight would be).
                let v = kiln_ir::interp::eval_node(node, &[]).map_err(|e| unsupported(root, &e))?;
                let weight = embedded.add(&mut object, name, &v)?;
                buf[root.index()] = Some(weight);
                if let Buf::Output(_) = out {
                    steps.push(Step::Copy { from: weight, to: out, bytes: g.ty(root).size_bytes() });
                }
            }
            Work::Op => {
                let Op::Gather { axis } = node.op else {
                    return Err(unsupported(root, "the library's runtime has no implementation of it"));
                };
                buf[root.index()] = Some(out);
                let (x, idx) = (node.args[0], node.args[1]);
                steps.push(gather_step(g, axis, (get(&buf, x)?, x), (get(&buf, idx)?, idx), out));
            }
            Work::Kernel(kernel) => {
                buf[root.index()] = Some(out);
                let mut kernel_step = kernel_step(g, (&mut object, &mut c_kernels), kernel, &buf, out, name, si)?;
                // A multi-output kernel's side outputs: their buffers after the inputs'.
                if let Step::Kernel { inputs, .. } = &mut kernel_step {
                    for (n, b) in &step.side_outs {
                        buf[n.index()] = Some(place(*b));
                        inputs.push(place(*b));
                    }
                }
                steps.push(kernel_step);
                kernels += 1;
            }
            Work::Movement => {
                buf[root.index()] = Some(out);
                steps.push(movement_step(g, root, &buf, out)?);
            }
            Work::Contraction { call, epilogue } => {
                buf[root.index()] = Some(out);
                // The contraction's dtype, not the root's: an epilogue may cast the product.
                let group = step.group.map(|gi| &schedule.groups[gi]);
                let dtype = g.ty(group.map_or(root, |gr| contraction_of(g, gr))).dtype;
                let scratch = (Buf::Arena(product_at), Buf::Arena(columns_at));
                steps.push(contraction_step(call, dtype, &mut buf, out, scratch, root, g)?);
                if let (Some(kernel), Contraction::Gemm(_)) = (epilogue, call) {
                    steps.push(kernel_step(g, (&mut object, &mut c_kernels), kernel, &buf, out, name, si)?);
                    kernels += 1;
                }
            }
        }
    }
    let math = object.math_imports();
    let c = match c_kernels {
        None => None,
        Some(list) => {
            let refs: Vec<(String, &kiln_codegen::kernel::Kernel)> = list.iter().map(|(s, k)| (s.clone(), k)).collect();
            let source = kiln_codegen::ckernels::module(&refs, object.has_fma())
                .map_err(|e| AotError::Unsupported { op: "kernel", node: 0, why: e.to_string() })?;
            let mut math: Vec<&'static str> =
                list.iter().flat_map(|(_, k)| kiln_codegen::ckernels::math_calls(k)).collect();
            math.sort_unstable();
            math.dedup();
            Some(CKernels { source, math })
        }
    };
    let program = Program {
        name: name.to_string(),
        inputs,
        outputs,
        weights: embedded.symbols,
        arena_bytes,
        steps,
        math,
        target: target.name(),
        cpu_features: target.cpu_features(),
    };
    Ok((program, object.finish()?, kernels, embedded.bytes, c))
}

/// The data a library embeds (parameters, iotas), as symbols `NAME__wN` in its object.
#[derive(Default)]
struct Embedded {
    /// The symbols, in order (`Buf::Weight(i)` is the i-th).
    symbols: Vec<String>,
    /// Their bytes in all.
    bytes: usize,
}

impl Embedded {
    /// Embeds `v` in `object` for library `name`; returns its buffer.
    fn add(&mut self, object: &mut ObjectKernels, name: &str, v: &Value) -> Result<Buf, AotError> {
        let symbol = format!("{name}__w{}", self.symbols.len());
        let bytes = value_bytes(v);
        self.bytes += bytes.len();
        object.add_data(&symbol, &bytes, ALIGN as u64)?;
        self.symbols.push(symbol);
        Ok(Buf::Weight(self.symbols.len() - 1))
    }
}

/// The step of a `gather` along `axis` of `x` at indices `idx` (each with its buffer) into
/// `out`.
fn gather_step(g: &Graph, axis: usize, (xb, x): (Buf, NodeId), (ib, idx): (Buf, NodeId), out: Buf) -> Step {
    let (x_ty, idx_ty) = (g.ty(x), g.ty(idx));
    Step::Gather {
        x: xb,
        idx: ib,
        idx_is_64: idx_ty.dtype == kiln_ir::DType::I64,
        count: idx_ty.numel(),
        outer: x_ty.dims()[..axis].iter().product(),
        extent: x_ty.dims()[axis],
        slice_bytes: x_ty.dims()[axis + 1..].iter().product::<usize>() * x_ty.dtype.size_bytes(),
        out,
    }
}

/// The GEMM or convolution step of a contraction at `root` into `out`; a GEMM with an
/// epilogue writes its product to the product scratch (recorded in `buf` for the epilogue's
/// kernel), a convolution builds its columns in the columns scratch (`scratch`: both).
fn contraction_step(
    call: &Contraction,
    dtype: kiln_ir::DType,
    buf: &mut [Option<Buf>],
    out: Buf,
    (product, columns): (Buf, Buf),
    root: NodeId,
    g: &Graph,
) -> Result<Step, AotError> {
    let get = |buf: &[Option<Buf>], id: NodeId| computed(g, buf, id);
    Ok(match *call {
        Contraction::Gemm(call) => {
            let operand = |o: &GemmOperand| -> Result<MatrixOperand, AotError> {
                let (row_stride, col_stride, batch_stride) = o.strides();
                Ok(MatrixOperand {
                    buf: get(buf, o.node)?,
                    row_stride: row_stride as i64,
                    col_stride: col_stride as i64,
                    batch_stride: batch_stride as i64,
                })
            };
            let (a, b) = (operand(&call.a)?, operand(&call.b)?);
            // With an epilogue the group's root is the epilogue's, not the product.
            let c = if call.product != root { product } else { out };
            buf[call.product.index()] = Some(c);
            let s = call.shape;
            Step::Gemm { dtype, batch: s.batch, m: s.m, n: s.n, k: s.k, a, b, c }
        }
        Contraction::Conv { kind, geometry, lhs, rhs, .. } => {
            let kind = match kind {
                ConvKind::Forward => driver::ConvKind::Forward,
                ConvKind::GradInput => driver::ConvKind::GradInput,
                ConvKind::GradWeight => driver::ConvKind::GradWeight,
            };
            let (lhs, rhs) = (get(buf, lhs)?, get(buf, rhs)?);
            Step::Conv { dtype, kind, shape: conv_shape(&geometry), lhs, rhs, out, cols: columns }
        }
    })
}

/// The buffer of `id`, which an earlier step computed (an internal error naming it if not).
fn computed(g: &Graph, buf: &[Option<Buf>], id: NodeId) -> Result<Buf, AotError> {
    buf[id.index()].ok_or_else(|| AotError::Unsupported {
        op: g.node(id).op.name(),
        node: id.index(),
        why: "internal: operand not computed".into(),
    })
}

/// The block copies of a `pad` or `concat` at `root` into `out`.
fn movement_step(g: &Graph, root: NodeId, buf: &[Option<Buf>], out: Buf) -> Result<Step, AotError> {
    let node = g.node(root);
    let fail = |why: &str| AotError::Unsupported { op: node.op.name(), node: root.index(), why: why.to_string() };
    let get = |id: NodeId| computed(g, buf, id);
    match node.op.movement() {
        Some(Movement::Concat { axis }) => {
            let ty = g.ty(root);
            let inner: usize = ty.dims()[axis + 1..].iter().product();
            let size = ty.dtype.size_bytes();
            let parts = node.args.iter().map(|a| get(*a)).collect::<Result<Vec<_>, _>>()?;
            let block_bytes = node.args.iter().map(|a| g.ty(*a).dims()[axis] * inner * size).collect();
            let outer = ty.dims()[..axis].iter().product();
            Ok(Step::Concat { parts, block_bytes, outer, out })
        }
        Some(Movement::Pad { low, value, .. }) => {
            let x = node.args[0];
            let x_ty = g.ty(x).clone();
            if x_ty.rank() == 0 {
                Ok(Step::Copy { from: get(x)?, to: out, bytes: x_ty.size_bytes() })
            } else if x_ty.rank() > 16 {
                Err(fail("pads of more than 16 axes"))
            } else {
                Ok(Step::Pad {
                    x: get(x)?,
                    x_ty,
                    out_dims: g.ty(root).dims().to_vec(),
                    low: low.to_vec(),
                    fill: value.0,
                    out,
                })
            }
        }
        Some(Movement::Reshape | Movement::Permute { .. } | Movement::Broadcast { .. } | Movement::Slice { .. })
        | None => Err(fail("internal: not a movement op")),
    }
}

/// The step calling `kernel` (defined in the object here as `NAME__kGROUP`) into `out`.
fn kernel_step(
    g: &Graph,
    (object, c_kernels): (&mut ObjectKernels, &mut Option<Vec<(String, kiln_codegen::kernel::Kernel)>>),
    kernel: &kiln_codegen::kernel::Kernel,
    buf: &[Option<Buf>],
    out: Buf,
    name: &str,
    gi: usize,
) -> Result<Step, AotError> {
    let symbol = format!("{name}__k{gi}");
    let mut inputs = Vec::with_capacity(kernel.inputs.len());
    for input in &kernel.inputs {
        let internal = |why: &str| AotError::Unsupported {
            op: g.node(input.node).op.name(),
            node: input.node.index(),
            why: format!("internal: {why}"),
        };
        let b = buf[input.node.index()].ok_or_else(|| internal("kernel input not computed"))?;
        if !fits(input, &kernel.space, g.ty(buffer_of(g, input.node)).numel()) {
            return Err(internal("kernel input too small"));
        }
        inputs.push(b);
    }
    match c_kernels {
        Some(list) => list.push((symbol.clone(), kernel.clone())),
        None => object.add(kernel, &symbol)?,
    }
    Ok(Step::Kernel { symbol, inputs, out, outer: kernel.space.first().copied().unwrap_or(1) })
}

/// The C runtime's geometry of a convolution.
fn conv_shape(c: &crate::conv::ConvGeometry) -> ConvShape {
    let a = &c.attrs;
    ConvShape {
        dims: [
            c.n,
            c.c,
            c.h,
            c.w,
            c.o,
            c.kh,
            c.kw,
            c.oh,
            c.ow,
            a.stride[0],
            a.stride[1],
            a.padding[0],
            a.padding[1],
            a.dilation[0],
            a.dilation[1],
            a.groups.max(1),
        ],
    }
}
