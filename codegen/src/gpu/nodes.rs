//! The functions of ops that are not fused kernels: their forms, the device-side checks, and
//! the CUDA C of `matmul`, convolutions (through `convolutions`), `pad`, `concat`, `iota`,
//! `rng`, integer `div`, `gather` and `scatter_add`.

use super::*;

/// A form of the function [`render_node`] renders for a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeForm {
    /// A thread per output element, in grid-stride loops.
    Threads,
    /// A block of [`BLOCK_THREADS`] per output element (a convolution's weight gradient).
    Blocks,
    /// A convolution as an implicit GEMM — weights × the input's patches, gathered as the
    /// tiles are staged — in square output tiles of this width (32 or 64).
    Tiled(usize),
}

impl NodeForm {
    /// Its name in dumps and measurements.
    pub fn name(self) -> String {
        match self {
            NodeForm::Threads => "threads".into(),
            NodeForm::Blocks => "blocks".into(),
            NodeForm::Tiled(t) => format!("{t}x{t} tiles (implicit GEMM)"),
        }
    }

    /// A short tag for symbols.
    pub fn tag(self) -> String {
        match self {
            NodeForm::Threads => "threads".into(),
            NodeForm::Blocks => "blocks".into(),
            NodeForm::Tiled(t) => format!("t{t}"),
        }
    }
}

/// Every form [`render_node`] can render node `id` in, the default first (the others are
/// chosen among by measurement on the device): a convolution's weight gradient summing 512 or
/// more terms per weight as blocks, else threads, and the other as its alternative; a float
/// convolution or input gradient directly, a thread per output element, with implicit GEMMs
/// in 32 × 32 and 64 × 64 tiles as alternatives; every other node a thread per output
/// element.
pub fn node_forms(graph: &Graph, id: NodeId) -> Vec<NodeForm> {
    let node = graph.node(id);
    match node.op.conv().map(|(kind, _)| kind) {
        Some(ConvKind::GradWeight) => {
            let dy = graph.ty(node.args[1]).dims();
            if dy[0] * dy[2] * dy[3] >= BLOCK_REDUCTION_MIN {
                vec![NodeForm::Blocks, NodeForm::Threads]
            } else {
                vec![NodeForm::Threads, NodeForm::Blocks]
            }
        }
        Some(ConvKind::Forward | ConvKind::GradInput) if graph.ty(id).dtype.is_float() => {
            vec![NodeForm::Threads, NodeForm::Tiled(32), NodeForm::Tiled(64)]
        }
        // Integer convolutions, and every op rendered as a node, a thread per output element.
        Some(ConvKind::Forward | ConvKind::GradInput) | None => vec![NodeForm::Threads],
    }
}

/// The inverse of an index into a table of `extent` rows, for `scatter_add`: `(starts,
/// order)` where `order[starts[a] .. starts[a + 1]]` are the positions `j` with
/// `indices[j] == a`, increasing. Every index must lie in `0..extent`, and there must be
/// fewer than 2^31 of them.
pub fn inverse_index(indices: &[i64], extent: usize) -> (Vec<i32>, Vec<i32>) {
    let mut starts = vec![0i32; extent + 1];
    for &i in indices {
        starts[i as usize + 1] += 1;
    }
    for a in 0..extent {
        starts[a + 1] += starts[a];
    }
    let mut next = starts.clone();
    let mut order = vec![0i32; indices.len()];
    for (j, &i) in indices.iter().enumerate() {
        order[next[i as usize] as usize] = j as i32;
        next[i as usize] += 1;
    }
    (starts, order)
}

/// The leaf (input or parameter) whose values the index operand of `gather`/`scatter_add`
/// node `id` are, through reshapes: the host checks such indices when they are set (and
/// builds `scatter_add`'s inverse from them). `None` for indices computed on the device.
pub fn host_index(graph: &Graph, id: NodeId) -> Option<&str> {
    let mut at = graph.node(id).args[1];
    while let Op::Reshape = graph.node(at).op {
        at = graph.node(at).args[0];
    }
    graph.node(at).op.leaf_name()
}

/// Whether node `id`'s function checks its operands on the device ([`render_node`]): integer
/// division (by zero), and `gather`/`scatter_add` with indices computed on the device (out of
/// range). Such a function takes `unsigned long long *fault` (two words, zero before the
/// run) before its output: the first failing thread stores node + 1 in `fault[0]` and the
/// operand at fault (the index, or 0) in `fault[1]`, and its output element is 0.
pub fn checks_on_device(graph: &Graph, id: NodeId) -> bool {
    let op = &graph.node(id).op;
    match op.kind() {
        OpKind::Elementwise => matches!(op, Op::Binary(BinaryOp::Div)) && !graph.ty(id).dtype.is_float(),
        OpKind::Indexing => host_index(graph, id).is_none(),
        OpKind::Leaf
        | OpKind::Constant
        | OpKind::Random
        | OpKind::Reduction
        | OpKind::Movement
        | OpKind::Contraction => false,
    }
}

/// The CUDA C of a node that is not a fused kernel — `matmul` (floats), `conv2d` and its two
/// gradients, `pad`, `concat`, `iota`, `rng`, `gather`, `scatter_add` — as the kernel `symbol`
/// taking its operands (row-major buffers, in the op's order) and its output; `None` for other
/// ops. `scatter_add` with an index the host checks ([`host_index`]) also takes, before its
/// output, the inverse of its index as two `int` arrays: `starts` (one per table row, plus
/// the end) and `order` (the update positions, grouped by row, increasing within a row), as
/// [`inverse_index`] builds them. Functions that check operands on the device take `fault`
/// ([`checks_on_device`]). `form` is one of [`node_forms`]; returns the source and its launch.
pub fn render_node(graph: &Graph, id: NodeId, symbol: &str, form: NodeForm) -> Option<(String, Launch)> {
    let total = graph.ty(id).numel();
    let launch = match form {
        NodeForm::Threads => Launch::Elements(total),
        NodeForm::Blocks => Launch::Blocks { units: total, threads: BLOCK_THREADS },
        NodeForm::Tiled(tile) => tiled_launch(conv_gemm_shape(graph, id)?, tile),
    };
    Some((render_node_source(graph, id, symbol, form)?, launch))
}

/// [`render_node`]'s source.
pub(super) fn render_node_source(graph: &Graph, id: NodeId, symbol: &str, form: NodeForm) -> Option<String> {
    if let Op::Matmul = graph.node(id).op {
        let out_ty = graph.ty(id);
        if out_ty.dtype == DType::Bool {
            return None;
        }
        let dims = out_ty.dims();
        let r = dims.len();
        let (m, n) = (dims[r - 2], dims[r - 1]);
        let k = graph.ty(graph.node(id).args[0]).dims()[r - 1];
        let shape = MatmulShape { batch: out_ty.numel() / (m * n).max(1), m, n, k };
        let row_major = |rows: usize, cols: usize| Strides { row: cols as i64, col: 1, batch: (rows * cols) as i64 };
        return Some(render_matmul(symbol, out_ty.dtype, shape, row_major(m, k), row_major(k, n), None));
    }
    let node = graph.node(id);
    let out_ty = graph.ty(id);
    let t = c_type(out_ty.dtype);
    let total = out_ty.numel();
    let mut params: Vec<String> = node
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| format!("const {} *__restrict__ in{i}", c_type(graph.ty(*a).dtype)))
        .collect();
    let device_checked = checks_on_device(graph, id);
    if let Op::ScatterAdd { .. } = node.op
        && !device_checked
    {
        // The inverse of the index: where each table row's updates are (see below).
        params.push("const int *__restrict__ starts".into());
        params.push("const int *__restrict__ order".into());
    }
    if device_checked {
        params.push("unsigned long long *__restrict__ fault".into());
    }
    params.push(format!("{t} *__restrict__ out"));
    let mut c = format!("/* %{}: {} -> {} */\n", id.index(), node.op.name(), out_ty);
    let _ = writeln!(c, "extern \"C\" __global__ void {symbol}({}) {{", params.join(", "));
    let bound = node.args.iter().map(|a| graph.ty(*a).numel()).chain([total]).max().unwrap_or(0);
    c.push_str(&index_typedef(bound as u128 + 1));
    let zero = literal(0.0, out_ty.dtype);
    let cx = NodeSource { graph, id, node, out_ty, t, total, zero: zero.clone(), device_checked };
    match &node.op {
        Op::Conv2d(a) | Op::Conv2dGradInput(a) | Op::Conv2dGradWeight(a) => {
            // x: [n, c, h, w], w: [o, c/g, kh, kw], y: [n, o, oh, ow].
            let dims = |i: NodeId| graph.ty(i).dims().to_vec();
            // This arm's ops are the convolutions.
            let kind = node.op.conv().map_or(ConvKind::Forward, |(k, _)| k);
            let (x, w, y) = match kind {
                ConvKind::Forward => (dims(node.args[0]), dims(node.args[1]), out_ty.dims().to_vec()),
                ConvKind::GradInput => (out_ty.dims().to_vec(), dims(node.args[1]), dims(node.args[0])),
                ConvKind::GradWeight => (dims(node.args[0]), out_ty.dims().to_vec(), dims(node.args[1])),
            };
            match (form, conv_gemm_shape(graph, id)) {
                (NodeForm::Tiled(tile), Some(shape)) => {
                    conv_gemm(&mut c, kind, a, shape, [&x, &w, &y], tile, out_ty.dtype)
                }
                _ => c.push_str(&conv_body(kind, a, &x, &w, &y, form == NodeForm::Blocks, t, &zero)),
            }
        }
        Op::Pad { low, value, .. } => {
            pad_source(&mut c, &cx, low, value.0);
        }
        Op::Concat { axis } => {
            concat_source(&mut c, &cx, axis);
        }
        Op::Iota { axis } if out_ty.dtype != DType::Bool => {
            iota_source(&mut c, &cx, axis);
        }
        Op::Rng { dist, stream } if out_ty.dtype.is_float() => {
            rng_source(&mut c, &cx, dist, stream);
        }
        Op::Binary(BinaryOp::Div) if !out_ty.dtype.is_float() => {
            int_div_source(&mut c, &cx);
        }
        Op::Gather { axis } => {
            gather_source(&mut c, &cx, axis);
        }
        Op::ScatterAdd { axis } => {
            scatter_add_source(&mut c, &cx, axis);
        }
        // Rendered elsewhere (elementwise kernels, reductions, products) or by the guarded arms
        // above only: no node function.
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const { .. }
        | Op::Iota { .. }
        | Op::Rng { .. }
        | Op::Unary(_)
        | Op::StopGradient
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast
        | Op::Reduce { .. }
        | Op::Reshape
        | Op::Permute { .. }
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Matmul => return None,
    }
    c.push_str("}\n");
    Some(c)
}

/// What the body of every node function reads: the node, its result's type, C type, element
/// count and zero, and whether it checks its operands on the device.
struct NodeSource<'a> {
    graph: &'a Graph,
    id: NodeId,
    node: &'a kiln_ir::Node,
    out_ty: &'a kiln_ir::TensorType,
    t: &'static str,
    total: usize,
    zero: String,
    device_checked: bool,
}

/// `pad`: each output element is the operand's element it covers, or the padding value.
fn pad_source(c: &mut String, cx: &NodeSource, low: &[usize], value: f64) {
    let NodeSource { graph, node, out_ty, total, .. } = *cx;
    let x = graph.ty(node.args[0]).dims().to_vec();
    let od = out_ty.dims().to_vec();
    c.push_str(&grid_loop(total));
    c.push_str(&split_dims(&od, "        "));
    let mut inside = Vec::new();
    let mut src = String::from("0");
    for d in 0..od.len() {
        inside.push(format!("i{d} >= {} && i{d} < {}", low[d], low[d] + x[d]));
        let stride: usize = x[d + 1..].iter().product();
        let _ = write!(src, " + (i{d} - {}) * {stride}", low[d]);
    }
    let cond = if inside.is_empty() { "1".to_string() } else { inside.join(" && ") };
    let _ = writeln!(c, "        out[t] = ({cond}) ? in0[{src}] : {};", literal(value, out_ty.dtype));
    c.push_str("    }\n");
}

/// `concat`: each output element copied from the operand whose block along `axis` holds it.
fn concat_source(c: &mut String, cx: &NodeSource, axis: &usize) {
    let NodeSource { graph, node, out_ty, total, .. } = *cx;
    let od = out_ty.dims().to_vec();
    let inner: usize = od[axis + 1..].iter().product();
    c.push_str(&grid_loop(total));
    let _ = writeln!(
        c,
        "        const idx_t o = t / {}, a = (t / {inner}) % {}, q = t % {inner};",
        od[*axis] * inner,
        od[*axis]
    );
    let mut start = 0;
    for (i, arg) in node.args.iter().enumerate() {
        let e = graph.ty(*arg).dims()[*axis];
        let _ = writeln!(
            c,
            "        if (a >= {start} && a < {}) out[t] = in{i}[(o * {e} + (a - {start})) * {inner} + q];",
            start + e
        );
        start += e;
    }
    c.push_str("    }\n");
}

/// `iota`: each element its index along `axis`.
fn iota_source(c: &mut String, cx: &NodeSource, axis: &usize) {
    let NodeSource { out_ty, t, total, .. } = *cx;
    let od = out_ty.dims();
    let inner: usize = od[axis + 1..].iter().product();
    c.push_str(&grid_loop(total));
    let _ = writeln!(c, "        out[t] = ({t})((t / {inner}) % {});", od[*axis]);
    c.push_str("    }\n");
}

/// `rng`: the interpreter's counter-based draws.
fn rng_source(c: &mut String, cx: &NodeSource, dist: &kiln_ir::Distribution, stream: &u32) {
    let NodeSource { out_ty, total, .. } = *cx;
    // The interpreter's counter-based draw (`kiln_ir::rng`): element t from
    // (seed, stream, t) alone, uniform bit for bit, normal by Box-Muller in f64.
    let key = format!("((unsigned long long)in0[0] ^ kiln_mix64({}ULL + 0x9E3779B97F4A7C15ULL))", stream);
    c.push_str(&grid_loop(total));
    let _ = writeln!(c, "        const unsigned long long key = {key};");
    let v = match (dist, out_ty.dtype) {
        (kiln_ir::Distribution::Uniform, DType::F32) => {
            "(float)(kiln_bits(key, t) >> 40) * (1.0f / 16777216.0f)".to_string()
        }
        (kiln_ir::Distribution::Uniform, _) => "kiln_uniform_f64(kiln_bits(key, t))".to_string(),
        (kiln_ir::Distribution::Normal, d) => {
            let _ = writeln!(c, "        const double u1 = kiln_uniform_f64(kiln_bits(key, 2ULL * t));");
            let _ = writeln!(c, "        const double u2 = kiln_uniform_f64(kiln_bits(key, 2ULL * t + 1ULL));");
            let z = "sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2)";
            if d == DType::F32 { format!("(float)({z})") } else { z.to_string() }
        }
    };
    let _ = writeln!(c, "        out[t] = {v};");
    c.push_str("    }\n");
}

/// Integer `div`, faulting on division by zero.
fn int_div_source(c: &mut String, cx: &NodeSource) {
    let NodeSource { id, out_ty, t, total, .. } = *cx;
    // Truncating toward zero; `MIN / -1` wraps (as a negation), division by zero faults.
    let w = wrap_type(out_ty.dtype);
    c.push_str(&grid_loop(total));
    let _ = writeln!(c, "        const {t} a = in0[t], b = in1[t];");
    let _ = writeln!(
        c,
        "        if (b == 0) {{ kiln_fault(fault, {}, 0); out[t] = 0; }} else out[t] = b == -1 ? ({t})(0 - ({w})a) : a / b;",
        id.index()
    );
    c.push_str("    }\n");
}

/// `gather`: one thread per output element, indices checked.
fn gather_source(c: &mut String, cx: &NodeSource, axis: &usize) {
    let NodeSource { graph, id, node, total, ref zero, device_checked, .. } = *cx;
    // y[p, j, q] = x[p, idx[j], q]. The host checks indices it is given before the run;
    // indices computed on the device are checked here: one outside the table reads 0
    // and faults.
    let x = graph.ty(node.args[0]).dims().to_vec();
    let count = graph.ty(node.args[1]).numel();
    let inner: usize = x[axis + 1..].iter().product();
    let extent = x[*axis];
    c.push_str(&grid_loop(total));
    let _ = writeln!(c, "        const idx_t p = t / {}, j = (t / {inner}) % {count}, q = t % {inner};", count * inner);
    let _ = writeln!(c, "        const long long i = (long long)in1[j];");
    if device_checked {
        let _ = writeln!(c, "        if (i < 0 || i >= {extent}) kiln_fault(fault, {}, i);", id.index());
    }
    let _ = writeln!(
        c,
        "        out[t] = (i >= 0 && i < {extent}) ? in0[(p * {extent} + (idx_t)i) * {inner} + q] : {zero};"
    );
    c.push_str("    }\n");
}

/// `scatter_add`: one thread per output element summing its updates in index order.
fn scatter_add_source(c: &mut String, cx: &NodeSource, axis: &usize) {
    let NodeSource { graph, id, node, out_ty, t, total, ref zero, device_checked } = *cx;
    // out[p, a, q] = Σ over j in increasing order with idx[j] = a of u[p, j, q]: one
    // thread per output element, so no atomics and a fixed order. With an index the
    // host checked, `order[starts[a] .. starts[a + 1]]` are those j in increasing order
    // (built on the host): each thread reads only its own updates. With indices
    // computed on the device, each thread scans every index in order (the same sums in
    // the same order), checking each.
    let od = out_ty.dims().to_vec();
    let count = graph.ty(node.args[1]).numel();
    let inner: usize = od[axis + 1..].iter().product();
    let extent = od[*axis];
    c.push_str(&grid_loop(total));
    let _ =
        writeln!(c, "        const idx_t p = t / {}, a = (t / {inner}) % {extent}, q = t % {inner};", extent * inner);
    let _ = writeln!(c, "        {t} acc = {zero};");
    if device_checked {
        let _ = writeln!(c, "        for (idx_t j = 0; j < {count}; j++) {{");
        let _ = writeln!(c, "            const long long i = (long long)in1[j];");
        let _ = writeln!(c, "            if (i < 0 || i >= {extent}) kiln_fault(fault, {}, i);", id.index());
        let _ = writeln!(c, "            if (i == a) acc += in0[(p * {count} + j) * {inner} + q];");
        c.push_str("        }\n");
    } else {
        let _ = writeln!(c, "        for (idx_t r = starts[a]; r < starts[a + 1]; r++)");
        let _ = writeln!(c, "            acc += in0[(p * {count} + order[r]) * {inner} + q];");
    }
    c.push_str("        out[t] = acc;\n    }\n");
}
