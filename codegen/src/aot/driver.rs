//! The driver of a model library: `NAME_run` and the descriptor functions, rendered as C.
//!
//! A [`Program`] is a model's execution order with every buffer resolved at build time: each
//! step reads and writes [`Buf`]s (a caller's input or output, an embedded weight, or a byte
//! offset in the per-thread arena), so the generated code is straight-line calls to the
//! Cranelift kernels of the object and to the C runtime (`kiln_rt.c`: GEMM, convolutions,
//! pad, concat). The runtime crate builds the program from a partitioned, planned graph;
//! this module only renders it.
//!
//! Each calling thread gets its own arena, allocated on its first call and freed when the
//! thread exits, so `NAME_run` is safe to call from several threads at once.

use std::fmt::Write as _;

use kiln_ir::{DType, TensorType};

use super::dtype_code;

/// Where a step's operand or result lives while `NAME_run` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Buf {
    /// The caller's input `i`.
    Input(usize),
    /// The caller's output buffer `i`.
    Output(usize),
    /// Embedded weight `i` (the data symbol [`Program::weights`] names).
    Weight(usize),
    /// The arena, at this byte offset (64-byte aligned).
    Arena(usize),
}

/// A matrix operand of a GEMM: its buffer and element strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatrixOperand {
    /// The buffer.
    pub buf: Buf,
    /// Elements between rows, between columns, and between matrices of a batch.
    pub row_stride: i64,
    /// See `row_stride`.
    pub col_stride: i64,
    /// See `row_stride`.
    pub batch_stride: i64,
}

/// Which convolution a [`Step::Conv`] computes (the operands in the op's order).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvKind {
    /// `y = conv2d(x, w)`.
    Forward,
    /// `dx = conv2d_grad_input(dy, w)`.
    GradInput,
    /// `dw = conv2d_grad_weight(x, dy)`.
    GradWeight,
}

/// The geometry of a convolution as the C runtime takes it: `x: [n, c, h, w]`,
/// `w: [o, c/groups, kh, kw]`, `y: [n, o, oh, ow]`, strides, padding, dilation, groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    /// `n c h w o kh kw oh ow sh sw ph pw dh dw groups`, in this order.
    pub dims: [usize; 16],
}

impl ConvShape {
    /// Elements of one image's im2col matrix: `c/groups·kh·kw × oh·ow`.
    pub fn columns(&self) -> usize {
        let d = &self.dims;
        d[1] / d[15].max(1) * d[5] * d[6] * d[7] * d[8]
    }
}

/// One step of a model's execution.
#[derive(Clone, Debug, PartialEq)]
pub enum Step {
    /// A fused kernel of the object, over its whole outer axis.
    Kernel {
        /// The kernel's symbol.
        symbol: String,
        /// Its inputs, in the kernel's order, then its side outputs' buffers.
        inputs: Vec<Buf>,
        /// Its output.
        out: Buf,
        /// The extent of its outer axis.
        outer: usize,
    },
    /// `c[b] = a[b] · b[b]` for every matrix of a batch; `c` is dense `[batch, m, n]`.
    Gemm {
        /// `f32` or `f64`.
        dtype: DType,
        /// Matrices in the batch.
        batch: usize,
        /// Rows of the product.
        m: usize,
        /// Columns of the product.
        n: usize,
        /// The contracted extent.
        k: usize,
        /// The left operand (`m × k`).
        a: MatrixOperand,
        /// The right operand (`k × n`).
        b: MatrixOperand,
        /// The product.
        c: Buf,
    },
    /// A convolution or one of its gradients on im2col + GEMM.
    Conv {
        /// `f32` or `f64`.
        dtype: DType,
        /// Which one.
        kind: ConvKind,
        /// Its geometry.
        shape: ConvShape,
        /// The op's first operand.
        lhs: Buf,
        /// The op's second operand.
        rhs: Buf,
        /// The result.
        out: Buf,
        /// Room for one image's im2col matrix.
        cols: Buf,
    },
    /// `out = pad(x, low, high, fill)`.
    Pad {
        /// The operand.
        x: Buf,
        /// The operand's type.
        x_ty: TensorType,
        /// The result's extents.
        out_dims: Vec<usize>,
        /// Padding before each axis.
        low: Vec<usize>,
        /// The fill value, in the operand's dtype.
        fill: f64,
        /// The result.
        out: Buf,
    },
    /// `out = concat(parts, axis)`: `outer` rows, each operand contributing a block.
    Concat {
        /// The operands.
        parts: Vec<Buf>,
        /// Bytes each operand contributes to one row.
        block_bytes: Vec<usize>,
        /// Rows (the product of the extents before the axis).
        outer: usize,
        /// The result.
        out: Buf,
    },
    /// `out = gather(x, idx, axis)`; the run fails with an index outside `0..extent`.
    Gather {
        /// The table.
        x: Buf,
        /// The indices.
        idx: Buf,
        /// Whether the indices are `i64` (else `i32`).
        idx_is_64: bool,
        /// Number of indices.
        count: usize,
        /// Blocks of `x` before the axis (the product of the extents before it).
        outer: usize,
        /// The extent of the gathered axis.
        extent: usize,
        /// Bytes of one slice (the extents after the axis, times the element size).
        slice_bytes: usize,
        /// The result.
        out: Buf,
    },
    /// A byte copy (an output that is an input, a weight, a reshape or a repeat of another).
    Copy {
        /// Source.
        from: Buf,
        /// Destination.
        to: Buf,
        /// Bytes.
        bytes: usize,
    },
}

/// A model library's execution: its interface, embedded weights, arena and steps.
#[derive(Clone, Debug, PartialEq)]
pub struct Program {
    /// The prefix of every exported symbol (a C identifier).
    pub name: String,
    /// Inputs `NAME_run` takes, in order.
    pub inputs: Vec<(String, TensorType)>,
    /// Outputs `NAME_run` writes, in order.
    pub outputs: Vec<(String, TensorType)>,
    /// The data symbols of the embedded weights, by [`Buf::Weight`] index.
    pub weights: Vec<String>,
    /// Bytes of arena a call needs, before the GEMM scratch the C runtime adds.
    pub arena_bytes: usize,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The scalar math functions the kernels call, which the driver defines over libm.
    pub math: Vec<&'static str>,
    /// The name of the CPUs the code is compiled for (`native`, `x86-64-v3`, …).
    pub target: &'static str,
    /// The CPU features `NAME_run` checks before its first run (`__builtin_cpu_supports`
    /// names); without them it returns `UNSUPPORTED_CPU` instead of executing instructions the
    /// CPU lacks.
    pub cpu_features: Vec<&'static str>,
}

/// Error codes of `NAME_run`, with their messages (code `i + 1` is entry `i`).
pub const ERRORS: [(&str, &str); 10] = [
    ("NULL_INPUTS", "the inputs array is NULL"),
    ("NULL_INPUT", "an input pointer is NULL"),
    ("NULL_OUTPUTS", "the outputs array is NULL"),
    ("NULL_OUTPUT", "an output pointer is NULL"),
    ("OUT_OF_MEMORY", "out of memory allocating the working arena"),
    ("WRONG_COUNT", "the number of inputs or outputs is wrong"),
    ("WRONG_DTYPE", "an input or output has the wrong dtype"),
    ("WRONG_SHAPE", "an input or output has the wrong shape"),
    ("INDEX_OUT_OF_RANGE", "an index input is out of range"),
    ("UNSUPPORTED_CPU", "this CPU lacks instructions the library was compiled for"),
];

/// The C expression of a buffer's address (`const char *` for inputs and weights, `char *`
/// for outputs and the arena).
fn addr(b: Buf) -> String {
    match b {
        Buf::Input(i) => format!("((const char *)in[{i}])"),
        Buf::Output(i) => format!("((char *)out[{i}])"),
        Buf::Weight(i) => format!("((const char *)W{i})"),
        Buf::Arena(o) => format!("(A + {o})"),
    }
}

/// A C array initializer of integers.
fn ints(xs: impl IntoIterator<Item = i64>) -> String {
    xs.into_iter().map(|x| x.to_string()).collect::<Vec<_>>().join(", ")
}

/// The C of a scalar math function over libm.
fn math_definition(symbol: &str) -> String {
    let (base, f64_) = match symbol.strip_suffix("_f64") {
        Some(b) => (b, true),
        None => (symbol.strip_suffix("_f32").unwrap_or(symbol), false),
    };
    let func = base.strip_prefix("kiln_").unwrap_or(base);
    let (t, libm) = if f64_ { ("double", func.to_string()) } else { ("float", format!("{func}f")) };
    if func == "pow" {
        format!("KILN_HIDDEN {t} {symbol}({t} x, {t} y) {{ return {libm}(x, y); }}\n")
    } else {
        format!("KILN_HIDDEN {t} {symbol}({t} x) {{ return {libm}(x); }}\n")
    }
}

/// Renders `p` as the C source of the library's exported functions. The source declares the
/// kernels and weights of the object and the C runtime's functions it calls.
pub fn render(p: &Program) -> String {
    let name = &p.name;
    let mut c = String::new();
    let _ = writeln!(c, "/* {name}: the driver of lib{name}.so, generated by kiln. */");
    c.push_str(
        "#include <pthread.h>\n#include <stdarg.h>\n#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n",
    );
    if !p.math.is_empty() {
        c.push_str("#include <math.h>\n");
    }
    c.push_str(concat!(
        "\n#define KILN_HIDDEN __attribute__((visibility(\"hidden\")))\n",
        "#define KILN_EXPORT __attribute__((visibility(\"default\")))\n\n",
        "typedef struct { const char *name; int32_t dtype; int32_t rank; const int64_t *shape; } kiln_tensor_desc;\n",
        "typedef struct { void *data; int32_t dtype; int32_t rank; const int64_t *shape; } kiln_tensor;\n",
        "typedef struct { int64_t n, c, h, w, o, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups; } kiln_conv;\n",
        "typedef void kiln_kernel(const void *const *inputs, void *out, int64_t lo, int64_t hi);\n\n",
        "/* The C runtime (kiln_rt.c). */\n",
        "size_t kiln_gemm_scratch_bytes(void);\n",
        "void kiln_gemm_f32(int64_t, int64_t, int64_t, const float *, int64_t, int64_t, const float *, int64_t, int64_t, float *, int64_t, int, void *);\n",
        "void kiln_gemm_f64(int64_t, int64_t, int64_t, const double *, int64_t, int64_t, const double *, int64_t, int64_t, double *, int64_t, int, void *);\n",
    ));
    for t in ["f32", "f64"] {
        let ty = if t == "f32" { "float" } else { "double" };
        for kind in ["forward", "grad_input", "grad_weight"] {
            let _ = writeln!(
                c,
                "void kiln_conv_{kind}_{t}(const kiln_conv *, const {ty} *, const {ty} *, {ty} *, {ty} *, void *);"
            );
        }
    }
    c.push_str(concat!(
        "void kiln_concat(int64_t, const void *const *, const int64_t *, int64_t, int64_t, void *);\n",
        "void kiln_pad(int64_t, const int64_t *, const int64_t *, const int64_t *, int64_t, const void *, const void *, void *);\n",
        "int kiln_gather(const void *, const void *, int, int64_t, int64_t, int64_t, int64_t, void *);\n\n",
    ));
    if !p.math.is_empty() {
        c.push_str("/* The scalar math the kernels call. */\n");
        for m in &p.math {
            c.push_str(&math_definition(m));
        }
        c.push('\n');
    }
    c.push_str("/* The kernels and weights (in the object). */\n");
    let mut declared = std::collections::BTreeSet::new();
    for s in &p.steps {
        if let Step::Kernel { symbol, .. } = s
            && declared.insert(symbol.clone())
        {
            let _ = writeln!(c, "kiln_kernel {symbol};");
        }
    }
    for (i, w) in p.weights.iter().enumerate() {
        let _ = writeln!(c, "extern const unsigned char {w}[];\n#define W{i} {w}");
    }

    // Descriptors.
    c.push('\n');
    let descs = |c: &mut String, kind: &str, items: &[(String, TensorType)]| {
        for (i, (n, t)) in items.iter().enumerate() {
            let dims: Vec<i64> = t.dims().iter().map(|d| *d as i64).collect();
            let _ = writeln!(
                c,
                "static const int64_t {kind}_shape_{i}[{}] = {{{}}};",
                dims.len().max(1),
                if dims.is_empty() { "0".into() } else { ints(dims) }
            );
            let _ = writeln!(c, "static const char {kind}_name_{i}[] = {:?};", n);
        }
        let _ = writeln!(c, "static const kiln_tensor_desc {kind}s_desc[{}] = {{", items.len().max(1));
        for (i, (_, t)) in items.iter().enumerate() {
            let _ = writeln!(c, "    {{{kind}_name_{i}, {}, {}, {kind}_shape_{i}}},", dtype_code(t.dtype), t.rank());
        }
        if items.is_empty() {
            c.push_str("    {0, 0, 0, 0},\n");
        }
        c.push_str("};\n");
    };
    descs(&mut c, "input", &p.inputs);
    descs(&mut c, "output", &p.outputs);
    let (ni, no) = (p.inputs.len(), p.outputs.len());
    let _ = write!(
        c,
        r#"
KILN_EXPORT int32_t {name}_num_inputs(void) {{ return {ni}; }}
KILN_EXPORT int32_t {name}_num_outputs(void) {{ return {no}; }}
KILN_EXPORT const kiln_tensor_desc *{name}_input_desc(int32_t i) {{ return i >= 0 && i < {ni} ? &inputs_desc[i] : NULL; }}
KILN_EXPORT const kiln_tensor_desc *{name}_output_desc(int32_t i) {{ return i >= 0 && i < {no} ? &outputs_desc[i] : NULL; }}

KILN_EXPORT const char *{name}_error_message(int32_t code) {{
    switch (code) {{
    case 0: return "success";
"#
    );
    for (i, (_, msg)) in ERRORS.iter().enumerate() {
        let _ = writeln!(c, "    case {}: return {msg:?};", i + 1);
    }
    let _ = write!(
        c,
        r#"    default: return "unknown error code";
    }}
}}

/* Each thread's arena: allocated on its first call, freed by libc when the thread exits. */
#define ARENA_BYTES ((size_t){arena}u)
static pthread_key_t arena_key;
static pthread_once_t arena_once = PTHREAD_ONCE_INIT;
static int arena_keyed;
static void make_arena_key(void) {{ arena_keyed = pthread_key_create(&arena_key, free) == 0; }}

static char *thread_arena(int *owned) {{
    size_t bytes = (ARENA_BYTES + kiln_gemm_scratch_bytes() + 63) / 64 * 64;
    char *a;
    *owned = 0;
    pthread_once(&arena_once, make_arena_key);
    if (arena_keyed && (a = pthread_getspecific(arena_key)) != NULL) return a;
    a = aligned_alloc(64, bytes);
    if (a == NULL) return NULL;
    if (!arena_keyed || pthread_setspecific(arena_key, a) != 0) *owned = 1;
    return a;
}}

/* The first CPU feature the code needs that this CPU lacks, or NULL (checked once). This file
 * is compiled for the compiler's baseline, so the check itself runs anywhere. */
static const char *cpu_missing;
static pthread_once_t cpu_once = PTHREAD_ONCE_INIT;
static void check_cpu(void) {{
    __builtin_cpu_init();
{cpu_checks}}}

/* Runs every step; 0, or the error code of a step that failed. */
static int32_t run_steps(const void *const *in, void *const *out, char *A) {{
    void *G = A + ARENA_BYTES;
    (void)in; (void)out; (void)G;
"#,
        arena = p.arena_bytes.div_ceil(64) * 64,
        cpu_checks = p
            .cpu_features
            .iter()
            .map(|f| format!("    if (cpu_missing == NULL && !__builtin_cpu_supports({f:?})) cpu_missing = {f:?};\n"))
            .collect::<String>(),
    );
    for s in &p.steps {
        render_step(&mut c, s);
    }
    let _ = write!(
        c,
        r#"    return 0;
}}

KILN_EXPORT int32_t {name}_run(const void *const *inputs, void *const *outputs) {{
    int owned;
    int32_t code;
    char *arena;
    if (inputs == NULL && {ni} > 0) return 1;
    for (int i = 0; i < {ni}; i++) if (inputs[i] == NULL) return 2;
    if (outputs == NULL && {no} > 0) return 3;
    for (int i = 0; i < {no}; i++) if (outputs[i] == NULL) return 4;
    pthread_once(&cpu_once, check_cpu);
    if (cpu_missing != NULL) return {unsupported};
    arena = thread_arena(&owned);
    if (arena == NULL) return 5;
    code = run_steps(inputs, outputs, arena);
    if (owned) free(arena);
    return code;
}}

/* The text of this thread's last failed {name}_run_checked (512 bytes per thread, freed by libc
 * when the thread exits). */
static pthread_key_t error_key;
static pthread_once_t error_once = PTHREAD_ONCE_INIT;
static int error_keyed;
static void make_error_key(void) {{ error_keyed = pthread_key_create(&error_key, free) == 0; }}

static char *error_text(int create) {{
    char *t;
    pthread_once(&error_once, make_error_key);
    if (!error_keyed) return NULL;
    t = pthread_getspecific(error_key);
    if (t == NULL && create) {{
        t = calloc(1, 512);
        if (t != NULL && pthread_setspecific(error_key, t) != 0) {{ free(t); t = NULL; }}
    }}
    return t;
}}

__attribute__((format(printf, 2, 3))) static int32_t fail(int32_t code, const char *format, ...) {{
    char *t = error_text(1);
    if (t != NULL) {{
        va_list args;
        va_start(args, format);
        vsnprintf(t, 512, format, args);
        va_end(args);
    }}
    return code;
}}

static const char *dtype_name(int32_t d) {{
    static const char *names[] = {{"f32", "f64", "i32", "i64", "bool"}};
    return d >= 0 && d < 5 ? names[d] : "an unknown dtype";
}}

static void shape_text(char *buf, size_t size, int32_t rank, const int64_t *shape) {{
    size_t at = (size_t)snprintf(buf, size, "[");
    for (int32_t i = 0; i < rank && at < size; i++)
        at += (size_t)snprintf(buf + at, size - at, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (at < size) snprintf(buf + at, size - at, "]");
}}

/* Checks one caller's tensor against its descriptor; 0 or an error code with its text. */
static int32_t check(const char *kind, int32_t i, const kiln_tensor *t, const kiln_tensor_desc *d, int32_t null_code) {{
    char got[160], want[160];
    if (t->data == NULL) return fail(null_code, "%s %d (%s): data is NULL", kind, i, d->name);
    if (t->dtype != d->dtype)
        return fail(7, "%s %d (%s): dtype %s, expected %s", kind, i, d->name, dtype_name(t->dtype), dtype_name(d->dtype));
    int same = t->rank == d->rank && (t->rank == 0 || t->shape != NULL);
    for (int32_t k = 0; same && k < t->rank; k++) same = t->shape[k] == d->shape[k];
    if (!same) {{
        if (t->rank < 0 || t->rank > 64 || (t->rank > 0 && t->shape == NULL)) snprintf(got, sizeof got, "of rank %d", t->rank);
        else shape_text(got, sizeof got, t->rank, t->shape);
        shape_text(want, sizeof want, d->rank, d->shape);
        return fail(8, "%s %d (%s): shape %s, expected %s", kind, i, d->name, got, want);
    }}
    return 0;
}}

KILN_EXPORT int32_t {name}_run_checked(const kiln_tensor *inputs, int32_t num_inputs, const kiln_tensor *outputs, int32_t num_outputs) {{
    const void *in[{ni_len}];
    void *out[{no_len}];
    int32_t code;
    char *t = error_text(0);
    if (t != NULL) t[0] = 0;
    if (inputs == NULL && num_inputs > 0) return fail(1, "the inputs array is NULL");
    if (outputs == NULL && num_outputs > 0) return fail(3, "the outputs array is NULL");
    if (num_inputs != {ni} || num_outputs != {no})
        return fail(6, "%d inputs and %d outputs given, {name} takes {ni} inputs and {no} outputs", num_inputs, num_outputs);
    for (int32_t i = 0; i < {ni}; i++) {{
        if ((code = check("input", i, &inputs[i], &inputs_desc[i], 2)) != 0) return code;
        in[i] = inputs[i].data;
    }}
    for (int32_t i = 0; i < {no}; i++) {{
        if ((code = check("output", i, &outputs[i], &outputs_desc[i], 4)) != 0) return code;
        out[i] = outputs[i].data;
    }}
    code = {name}_run(in, out);
    if (code == {unsupported})
        return fail(code, "this CPU lacks %s, which lib{name}.so was compiled for (target {target})", cpu_missing);
    return code ? fail(code, "%s", {name}_error_message(code)) : 0;
}}

KILN_EXPORT const char *{name}_last_error(void) {{
    char *t = error_text(0);
    return t != NULL ? t : "";
}}

/* When the library is unloaded (dlclose): this thread's buffers are freed and the keys are
 * deleted, so loading and unloading it many times never runs out of thread keys (other
 * threads' arenas, if any are alive, are left to them). */
__attribute__((destructor)) static void unload(void) {{
    if (arena_keyed) {{
        free(pthread_getspecific(arena_key));
        pthread_setspecific(arena_key, NULL);
        pthread_key_delete(arena_key);
    }}
    if (error_keyed) {{
        free(pthread_getspecific(error_key));
        pthread_setspecific(error_key, NULL);
        pthread_key_delete(error_key);
    }}
}}
"#,
        ni_len = ni.max(1),
        no_len = no.max(1),
        unsupported = ERRORS.iter().position(|(n, _)| *n == "UNSUPPORTED_CPU").unwrap_or(0) + 1,
        target = p.target,
    );
    c
}

/// Appends the C of one step (a block of its own, so locals never clash).
fn render_step(c: &mut String, s: &Step) {
    match s {
        Step::Kernel { symbol, inputs, out, outer } => {
            let args = if inputs.is_empty() {
                "0".to_string()
            } else {
                inputs.iter().map(|b| addr(*b)).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(
                c,
                "    {{ const void *a[{}] = {{{args}}}; {symbol}(a, {}, 0, {outer}); }}",
                inputs.len().max(1),
                addr(*out)
            );
        }
        Step::Gemm { dtype, batch, m, n, k, a, b, c: out } => {
            let (t, f) = if *dtype == DType::F64 { ("double", "f64") } else { ("float", "f32") };
            let _ = writeln!(
                c,
                "    for (int64_t b = 0; b < {batch}; b++) kiln_gemm_{f}({m}, {n}, {k}, (const {t} *){} + b * {}, {}, {}, (const {t} *){} + b * {}, {}, {}, ({t} *){} + b * {}, {n}, 0, G);",
                addr(a.buf),
                a.batch_stride,
                a.row_stride,
                a.col_stride,
                addr(b.buf),
                b.batch_stride,
                b.row_stride,
                b.col_stride,
                addr(*out),
                m * n,
            );
        }
        Step::Conv { dtype, kind, shape, lhs, rhs, out, cols } => {
            let (t, f) = if *dtype == DType::F64 { ("double", "f64") } else { ("float", "f32") };
            let k = match kind {
                ConvKind::Forward => "forward",
                ConvKind::GradInput => "grad_input",
                ConvKind::GradWeight => "grad_weight",
            };
            let _ = writeln!(
                c,
                "    {{ static const kiln_conv g = {{{}}}; kiln_conv_{k}_{f}(&g, (const {t} *){}, (const {t} *){}, ({t} *){}, ({t} *){}, G); }}",
                ints(shape.dims.iter().map(|d| *d as i64)),
                addr(*lhs),
                addr(*rhs),
                addr(*out),
                addr(*cols),
            );
        }
        Step::Pad { x, x_ty, out_dims, low, fill, out } => {
            let rank = x_ty.rank();
            let size = x_ty.dtype.size_bytes();
            let fill_bytes: Vec<i64> = match x_ty.dtype {
                DType::F32 => (*fill as f32).to_le_bytes().iter().map(|b| i64::from(*b)).collect(),
                DType::F64 => fill.to_le_bytes().iter().map(|b| i64::from(*b)).collect(),
                DType::I32 => (*fill as i32).to_le_bytes().iter().map(|b| i64::from(*b)).collect(),
                DType::I64 => (*fill as i64).to_le_bytes().iter().map(|b| i64::from(*b)).collect(),
                DType::Bool => vec![i64::from(*fill != 0.0)],
            };
            let _ = writeln!(
                c,
                "    {{ static const int64_t xd[] = {{{}}}, od[] = {{{}}}, lo[] = {{{}}}; static const unsigned char f[] = {{{}}}; kiln_pad({rank}, xd, od, lo, {size}, f, {}, {}); }}",
                ints(x_ty.dims().iter().map(|d| *d as i64)),
                ints(out_dims.iter().map(|d| *d as i64)),
                ints(low.iter().map(|d| *d as i64)),
                ints(fill_bytes),
                addr(*x),
                addr(*out),
            );
        }
        Step::Concat { parts, block_bytes, outer, out } => {
            let row: usize = block_bytes.iter().sum();
            let _ = writeln!(
                c,
                "    {{ const void *s[] = {{{}}}; static const int64_t bb[] = {{{}}}; kiln_concat({}, s, bb, {outer}, {row}, {}); }}",
                parts.iter().map(|b| addr(*b)).collect::<Vec<_>>().join(", "),
                ints(block_bytes.iter().map(|b| *b as i64)),
                parts.len(),
                addr(*out),
            );
        }
        Step::Gather { x, idx, idx_is_64, count, outer, extent, slice_bytes, out } => {
            let _ = writeln!(
                c,
                "    if (kiln_gather({}, {}, {}, {count}, {outer}, {extent}, {slice_bytes}, {})) return {};",
                addr(*x),
                addr(*idx),
                i32::from(*idx_is_64),
                addr(*out),
                ERRORS.iter().position(|(n, _)| *n == "INDEX_OUT_OF_RANGE").unwrap_or(0) + 1,
            );
        }
        Step::Copy { from, to, bytes } => {
            let _ = writeln!(c, "    memcpy({}, {}, {bytes});", addr(*to), addr(*from));
        }
    }
}
