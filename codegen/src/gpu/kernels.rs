//! Fused kernels as CUDA C: elementwise grid-stride loops (four lanes a thread with vector
//! loads and stores where rows allow) and reductions (a thread per output, or a block per
//! output combining partial results as a tree), and how each is launched.

use super::*;

/// How one copy of a kernel body reads its inputs and names its values.
pub(super) struct Lane<'a> {
    /// The C expression of a load of input `i`.
    load: &'a dyn Fn(usize) -> String,
    /// Appended to every value's name (`v{i}{suffix}`): one body per lane of a vector.
    suffix: &'a str,
}

/// The offset `offset + Σ i{d}·stride` of input `i` of `k` at the index variables `i{d}`.
pub(super) fn input_index(k: &Kernel, i: usize) -> String {
    let input = &k.inputs[i];
    let mut index = input.offset.to_string();
    for (d, s) in input.strides.iter().enumerate() {
        if *s != 0 {
            let _ = write!(index, " + i{d} * {s}");
        }
    }
    index
}

/// The C expression of one body instruction (operands are the earlier values of its lane).
pub(super) fn expression(k: &Kernel, inst: &Inst, dt: DType, lane: &Lane) -> String {
    let arg = |i: &usize| format!("v{i}{}", lane.suffix);
    let arg_dt = |i: &usize| k.body[*i].1;
    let f32_ = dt == DType::F32;
    match inst {
        Inst::Load(i) => (lane.load)(*i),
        Inst::Const(c) => literal(*c, dt),
        Inst::Unary(u, x) => {
            let x = arg(x);
            let libm = |name: &str| if f32_ { format!("{name}f({x})") } else { format!("{name}({x})") };
            unary(*u, dt, &x, &literal(1.0, dt), &libm)
        }
        Inst::Binary(op, x, y) => {
            let (a, b) = (arg(x), arg(y));
            // Integer division and powers stay with the runtime (never fused).
            binary(*op, dt, c_type(dt), &a, &b).unwrap_or_else(|| format!("/* unsupported */ ({a})"))
        }
        Inst::Compare(c, x, y) => {
            let sym = match c {
                CmpOp::Lt => "<",
                CmpOp::Eq => "==",
            };
            format!("((unsigned char)({} {sym} {}))", arg(x), arg(y))
        }
        Inst::Select(c, x, y) => format!("({} ? {} : {})", arg(c), arg(x), arg(y)),
        Inst::Cast(x) => cast(&arg(x), arg_dt(x), dt),
    }
}

/// Appends the body's statements (`const T vI = …;`), each input read at the index variables
/// `i{d}` — except input `product`, read from `pv` (a product's accumulator).
pub(super) fn body(c: &mut String, k: &Kernel, indent: &str, product: Option<usize>) {
    let load = |i: usize| if Some(i) == product { "pv".to_string() } else { format!("in{i}[{}]", input_index(k, i)) };
    lane_body(c, k, indent, &Lane { load: &load, suffix: "" });
}

/// Appends the statements of one lane of the body (`const T vI{suffix} = …;`).
pub(super) fn lane_body(c: &mut String, k: &Kernel, indent: &str, lane: &Lane) {
    for (i, (inst, dt)) in k.body.iter().enumerate() {
        let _ = writeln!(c, "{indent}const {} v{i}{} = {};", c_type(*dt), lane.suffix, expression(k, inst, *dt, lane));
    }
}

/// The CUDA C of `k` as the kernel `symbol` (without the module's helpers).
pub fn render(k: &Kernel, symbol: &str) -> String {
    let vector = vector_reads(k);
    let mut c = String::new();
    let extra = if vector.is_some() { format!(", {VECTOR_LANES} elements per thread") } else { String::new() };
    c.push_str(&kernel_comment(k, &extra));
    let mut params: Vec<String> = k
        .inputs
        .iter()
        .enumerate()
        .map(|(i, input)| format!("const {} *__restrict__ in{i}", c_type(input.dtype)))
        .collect();
    params.push(format!("{} *__restrict__ out", c_type(k.out.dtype)));
    // A multi-output kernel's side outputs, after its result.
    params.extend(k.side_outputs.iter().enumerate().map(|(j, o)| format!("{} *__restrict__ side{j}", c_type(o.dtype))));
    let _ = writeln!(c, "extern \"C\" __global__ void {symbol}({}) {{", params.join(", "));
    c.push_str(&index_typedef(kernel_bound(k)));
    let all: Vec<usize> = (0..k.space.len()).collect();
    match &k.reduce {
        None if let Some(reads) = &vector => render_vectorized(&mut c, k, reads),
        None => {
            let total: usize = k.space.iter().product();
            c.push_str(&grid_loop(total));
            c.push_str(&split_dims(&k.space, "        "));
            body(&mut c, k, "        ", None);
            let last = k.body.len().saturating_sub(1);
            side_stores(&mut c, k, "        ");
            let _ = writeln!(c, "        out[{}] = v{last};", out_index(k, &all));
            c.push_str("    }\n");
        }
        Some((op, axes)) => {
            let kept: Vec<usize> = all.iter().copied().filter(|d| !axes.contains(d)).collect();
            let kept_axes: Vec<(usize, usize)> = kept.iter().map(|&d| (d, k.space[d])).collect();
            let outputs: usize = kept_axes.iter().map(|a| a.1).product();
            let t = c_type(k.out.dtype);
            let identity = match (op, k.out.dtype) {
                (ReduceOp::Sum, d) => literal(0.0, d),
                (ReduceOp::Max, DType::F32 | DType::F64) => literal(f64::NEG_INFINITY, k.out.dtype),
                (ReduceOp::Max, DType::I32) => "(-2147483647 - 1)".into(),
                (ReduceOp::Max, DType::I64) => "(-9223372036854775807LL - 1)".into(),
                (ReduceOp::Max, DType::Bool) => "((unsigned char)0)".into(),
            };
            let v = format!("v{}", k.body.len().saturating_sub(1));
            let combine = |a: &str, b: &str| combine(*op, k.out.dtype, a, b);
            if let Launch::Blocks { threads, .. } = launch_of(k) {
                // A block per output: its threads stride over the reduced elements, then
                // combine their partial results in shared memory as a tree.
                let reduced: Vec<(usize, usize)> = axes.iter().map(|&d| (d, k.space[d])).collect();
                let count: usize = reduced.iter().map(|a| a.1).product();
                let _ = writeln!(c, "    __shared__ {t} part[{threads}];");
                let _ = writeln!(c, "    for (idx_t t = blockIdx.x; t < {outputs}; t += gridDim.x) {{");
                if !kept_axes.is_empty() {
                    c.push_str(&split_index(&kept_axes, "        "));
                }
                let _ = writeln!(c, "        {t} acc = {identity};");
                let _ = writeln!(c, "        for (idx_t q = threadIdx.x; q < {count}; q += blockDim.x) {{");
                c.push_str(&split_var("q", &reduced, "            "));
                body(&mut c, k, "            ", None);
                side_stores(&mut c, k, "            ");
                let _ = writeln!(c, "            acc = {};", combine("acc", &v));
                c.push_str("        }\n");
                c.push_str(&tree_tail(&out_index(k, &kept), &combine("part[threadIdx.x]", "part[threadIdx.x + s]")));
            } else {
                // A thread per output, accumulating in row-major order.
                c.push_str(&grid_loop(outputs));
                if kept.is_empty() {
                    c.push_str("        (void)t;\n");
                } else {
                    c.push_str(&split_index(&kept_axes, "        "));
                }
                let _ = writeln!(c, "        {t} acc = {identity};");
                let mut indent = String::from("        ");
                for &d in axes {
                    let _ = writeln!(c, "{indent}for (idx_t i{d} = 0; i{d} < {}; i{d}++) {{", k.space[d]);
                    indent.push_str("    ");
                }
                body(&mut c, k, &indent, None);
                side_stores(&mut c, k, &indent);
                let _ = writeln!(c, "{indent}acc = {};", combine("acc", &v));
                for _ in axes {
                    indent.truncate(indent.len() - 4);
                    let _ = writeln!(c, "{indent}}}");
                }
                let _ = writeln!(c, "        out[{}] = acc;", out_index(k, &kept));
                c.push_str("    }\n");
            }
        }
    }
    c.push_str("}\n");
    c
}

/// Reductions over at least this many elements per output get a block of
/// [`BLOCK_THREADS`] each.
pub const BLOCK_REDUCTION_MIN: usize = 512;

/// Reductions along the contiguous (innermost) axis over at least this many elements per
/// output get a block each, of as many threads as the elements' next power of two.
pub const ROW_REDUCTION_MIN: usize = 32;

/// How [`render`] launches `k`. A reduction over [`BLOCK_REDUCTION_MIN`] or more elements per
/// output runs as blocks of [`BLOCK_THREADS`], one per output; one along the innermost axis
/// over [`ROW_REDUCTION_MIN`] or more (softmax and layer-norm rows) as smaller blocks, so
/// that a block's threads read a row together instead of one thread walking it; other
/// reductions (over outer axes: adjacent threads then read adjacent elements) and everything
/// else as grid-stride loops over the output's elements.
pub fn launch_of(k: &Kernel) -> Launch {
    match &k.reduce {
        Some((_, axes)) => {
            let count: usize = axes.iter().map(|&d| k.space[d]).product();
            let outputs: usize = k.space.iter().product::<usize>() / count.max(1);
            let along_rows = k.space.len().checked_sub(1).is_some_and(|last| axes.contains(&last));
            if count >= BLOCK_REDUCTION_MIN {
                Launch::Blocks { units: outputs, threads: BLOCK_THREADS }
            } else if along_rows && count >= ROW_REDUCTION_MIN {
                Launch::Blocks { units: outputs, threads: count.next_power_of_two().min(BLOCK_THREADS as usize) as u32 }
            } else {
                Launch::Elements(outputs)
            }
        }
        None if vector_reads(k).is_some() => Launch::Elements(k.space.iter().product::<usize>() / VECTOR_LANES),
        None => Launch::Elements(k.space.iter().product()),
    }
}

/// Elements each thread of a vectorized elementwise kernel computes per step of its loop.
pub const VECTOR_LANES: usize = 4;

/// The vector type holding [`VECTOR_LANES`] elements of dtype `d`, for those it has one.
pub(super) fn vector_type(d: DType) -> Option<&'static str> {
    match d {
        DType::F32 => Some("float4"),
        DType::I32 => Some("int4"),
        DType::Bool => Some("uchar4"),
        DType::F64 | DType::I64 => None,
    }
}

/// How a vectorized elementwise kernel reads one input for the [`VECTOR_LANES`] consecutive
/// elements (along the innermost axis) a thread computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum VectorRead {
    /// Contiguous and aligned: one vector load.
    Vector,
    /// Broadcast along the innermost axis: one scalar load for every lane.
    Broadcast,
    /// Any other innermost stride: a scalar load per lane, this many elements apart.
    Strided(i64),
}

/// How each input of `k` is read when `k` runs [`VECTOR_LANES`] elements per thread, or
/// `None` when it cannot: `k` must be elementwise with a row-major output of a dtype with a
/// vector type (so must its side outputs) and an innermost extent divisible by the lane
/// count, and every input read
/// contiguously along that axis must have a vector type and start each group of lanes on a
/// vector boundary (its offset and outer strides multiples of the lane count: buffers
/// themselves are 16-byte aligned, see `kiln_runtime::gpu::Device::alloc`).
pub(super) fn vector_reads(k: &Kernel) -> Option<Vec<VectorRead>> {
    let lanes = VECTOR_LANES as i64;
    let (&inner, outer) = k.space.split_last()?;
    let row_major = k.out_strides == contiguous_strides(&k.space);
    let vector_outputs = k.side_outputs.iter().all(|o| vector_type(o.dtype).is_some());
    if k.reduce.is_some()
        || inner % VECTOR_LANES != 0
        || vector_type(k.out.dtype).is_none()
        || !row_major
        || !vector_outputs
    {
        return None;
    }
    k.inputs
        .iter()
        .map(|input| match input.strides.last() {
            Some(0) => Some(VectorRead::Broadcast),
            Some(1) => {
                let aligned = input.offset % lanes == 0 && input.strides[..outer.len()].iter().all(|s| s % lanes == 0);
                (aligned && vector_type(input.dtype).is_some()).then_some(VectorRead::Vector)
            }
            Some(&s) => Some(VectorRead::Strided(s)),
            None => None,
        })
        .collect()
}

/// The body of an elementwise kernel that [`vector_reads`] accepts: each thread computes
/// [`VECTOR_LANES`] consecutive elements of a row per step — one vector load per contiguous
/// input, one scalar load per broadcast one, the body once per lane, one vector store per
/// output (the result and each side output).
pub(super) fn render_vectorized(c: &mut String, k: &Kernel, reads: &[VectorRead]) {
    const FIELDS: [&str; VECTOR_LANES] = ["x", "y", "z", "w"];
    let total: usize = k.space.iter().product();
    c.push_str(&grid_loop(total / VECTOR_LANES));
    c.push_str(&split_var(
        &format!("t * {VECTOR_LANES}"),
        &k.space.iter().copied().enumerate().collect::<Vec<_>>(),
        "        ",
    ));
    for (i, read) in reads.iter().enumerate() {
        let index = input_index(k, i);
        match read {
            VectorRead::Vector => {
                let v = vector_type(k.inputs[i].dtype).expect("checked by vector_reads");
                let _ = writeln!(c, "        const {v} w{i} = *(const {v} *)(in{i} + {index});");
            }
            VectorRead::Broadcast => {
                let _ = writeln!(c, "        const {} w{i} = in{i}[{index}];", c_type(k.inputs[i].dtype));
            }
            VectorRead::Strided(_) => {}
        }
    }
    let last = k.body.len().saturating_sub(1);
    let mut lanes = Vec::new();
    for (l, field) in FIELDS.iter().enumerate() {
        let load = |i: usize| match reads[i] {
            VectorRead::Vector => format!("w{i}.{field}"),
            VectorRead::Broadcast => format!("w{i}"),
            VectorRead::Strided(s) => format!("in{i}[{} + {}]", input_index(k, i), l as i64 * s),
        };
        let suffix = format!("_{l}");
        lane_body(c, k, "        ", &Lane { load: &load, suffix: &suffix });
        lanes.push(format!("v{last}{suffix}"));
    }
    let all: Vec<usize> = (0..k.space.len()).collect();
    let at = out_index(k, &all);
    for (j, side) in k.side_outputs.iter().enumerate() {
        let v = vector_type(side.dtype).expect("checked by vector_reads");
        let lanes: Vec<String> = (0..VECTOR_LANES).map(|l| format!("v{}_{l}", side.value)).collect();
        let _ = writeln!(c, "        *({v} *)(side{j} + {}) = make_{v}({});", side_index(side), lanes.join(", "));
    }
    let v = vector_type(k.out.dtype).expect("checked by vector_reads");
    let _ = writeln!(c, "        *({v} *)(out + {at}) = make_{v}({});", lanes.join(", "));
    c.push_str("    }\n");
}

/// The end of a block reduction's unit: every thread's `acc` into `part`, combined as a tree
/// with `combine` (of `part[threadIdx.x]` and `part[threadIdx.x + s]`), thread 0 storing the
/// result at `out[index]`; closes the unit loop.
pub(super) fn tree_tail(index: &str, combine: &str) -> String {
    let mut c = String::from("        part[threadIdx.x] = acc;\n        __syncthreads();\n");
    c.push_str("        for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {\n");
    let _ = writeln!(c, "            if (threadIdx.x < s) part[threadIdx.x] = {combine};");
    c.push_str("            __syncthreads();\n        }\n");
    let _ = writeln!(c, "        if (threadIdx.x == 0) out[{index}] = part[0];");
    c.push_str("        __syncthreads();\n    }\n");
    c
}

/// The C expression combining two partial results `a` and `b` of a reduction.
pub(super) fn combine(op: ReduceOp, d: DType, a: &str, b: &str) -> String {
    let t = c_type(d);
    match (op, d) {
        (ReduceOp::Sum, DType::I32 | DType::I64) => format!("({t})(({w}){a} + ({w}){b})", w = wrap_type(d)),
        (ReduceOp::Sum, _) => format!("{a} + {b}"),
        (ReduceOp::Max, DType::F32) => format!("kiln_maxf({a}, {b})"),
        (ReduceOp::Max, DType::F64) => format!("kiln_max({a}, {b})"),
        (ReduceOp::Max, _) => format!("({b} > {a} ? {b} : {a})"),
    }
}

/// The offset of a side output at the index variables `i{d}` of every axis.
fn side_index(side: &crate::kernel::SideOutput) -> String {
    let mut s = String::from("0");
    for (d, &st) in side.strides.iter().enumerate() {
        if st != 0 {
            let _ = write!(s, " + i{d} * {st}");
        }
    }
    s
}

/// Stores every side output of `k` at the current point of its space (every `i{d}` set).
fn side_stores(c: &mut String, k: &Kernel, indent: &str) {
    for (j, side) in k.side_outputs.iter().enumerate() {
        let _ = writeln!(c, "{indent}side{j}[{}] = v{};", side_index(side), side.value);
    }
}

/// The output offset of kernel `k` at the index variables `i{d}` of axes `axes`.
pub(super) fn out_index(k: &Kernel, axes: &[usize]) -> String {
    let mut s = String::from("0");
    for &d in axes {
        let st = k.out_strides[d];
        if st != 0 {
            let _ = write!(s, " + i{d} * {st}");
        }
    }
    s
}
