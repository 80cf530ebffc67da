//! The measured cost model: predicted nanoseconds for each kind of step kiln runs.
//!
//! Every step of a lowered graph belongs to one [`Family`] (a generated elementwise or
//! reduction kernel, a GEMM, a convolution, a block copy, an op run by the reference
//! implementation) and is described by a few [`Features`]: a count of the step itself, the bytes
//! it streams, its multiply-adds, its arithmetic by kind. A [`CostModel`] holds nanoseconds per
//! feature for each family, so a prediction is one dot product. The same feature functions
//! describe the calibration's probes (`kiln calibrate`, in the `kiln` crate, times small graphs
//! and fits these coefficients) and price the e-graph's nodes ([`crate::egraph::cost`]) and the
//! partition's groups ([`group_features`]): one meaning for training and prediction.
//!
//! The model decides only what the optimizer prefers; it is never needed for correctness.
//! [`CostModel::current`] is the model in use: `KILN_COST_MODEL=builtin` (what `cargo test` and
//! `cargo run` set, so results do not depend on the machine's cache), a path to a model file,
//! or by default the cache `kiln calibrate` wrote for this CPU, falling back to
//! [`CostModel::builtin`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_ir::{BinaryOp, Graph, NodeId, Op, TensorType, UnaryOp};

use crate::fuse::{Group, GroupKind};

/// The kinds of step, each with its own coefficients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// A generated kernel: elementwise work, possibly ending in a reduction.
    Kernel,
    /// A floating-point matmul (batched or not) by the runtime's GEMM.
    Gemm,
    /// A convolution or one of its gradients (im2col columns and a GEMM).
    Conv,
    /// A materialized data movement: permute, strided slice, pad, concat, output copy.
    Copy,
    /// An op run by the reference implementation (gather, scatter, random numbers, integer
    /// division, ...).
    Reference,
}

impl Family {
    /// Every family, in the order of the model file.
    pub const ALL: [Family; 5] = [Family::Kernel, Family::Gemm, Family::Conv, Family::Copy, Family::Reference];

    /// The family's name in the model file and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Family::Kernel => "kernel",
            Family::Gemm => "gemm",
            Family::Conv => "conv",
            Family::Copy => "copy",
            Family::Reference => "reference",
        }
    }

    /// The names of the family's features, in the order of [`Features::values`].
    pub fn feature_names(self) -> &'static [&'static str] {
        match self {
            Family::Kernel => &["step", "byte", "simple", "divide", "transcendental", "strided", "spill"],
            Family::Gemm => &["step", "byte", "mac"],
            Family::Conv => &["step", "byte", "mac", "column", "input_mac", "weight_mac", "nhwc_mac", "nhwc_column"],
            Family::Copy => &["step", "byte", "spill"],
            Family::Reference => &["step", "byte"],
        }
    }
}

/// The most features a family has.
pub const MAX_FEATURES: usize = 8;

/// What a step does, in its family's features (counts; unused trailing values are zero).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Features {
    /// The step's family.
    pub family: Family,
    /// One count per name in [`Family::feature_names`].
    pub values: [f64; MAX_FEATURES],
}

impl Features {
    /// No work of `family` yet: zero steps, zero of everything.
    pub fn zero(family: Family) -> Self {
        Features { family, values: [0.0; MAX_FEATURES] }
    }

    /// Adds `amount` to the feature called `name` (which the family must have).
    fn add(&mut self, name: &str, amount: f64) {
        // An invariant of the callers in this module: they name their family's features.
        let i = self.family.feature_names().iter().position(|n| *n == name).expect("a feature of this family");
        self.values[i] += amount;
    }

    /// Sets the `spill` feature (for families that have one) from the bytes: traffic past
    /// [`CACHE_BYTES`].
    fn set_spill(&mut self) {
        if let Some(i) = self.family.feature_names().iter().position(|n| *n == "spill") {
            self.values[i] = spill(self.values[1]);
        }
    }

    /// Adds `a`'s arithmetic done `n` times (a kernel family's features).
    fn add_arithmetic(&mut self, a: Arithmetic, n: f64) {
        self.add("simple", a.simple * n);
        self.add("divide", a.divide * n);
        self.add("transcendental", a.transcendental * n);
    }
}

/// Arithmetic per element, by kind: how an elementwise op is priced inside a kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Arithmetic {
    /// Adds, multiplies, compares, selects, casts, negations, index arithmetic.
    pub simple: f64,
    /// Divisions, reciprocals and square roots.
    pub divide: f64,
    /// exp, log, sin, cos (a power is an exp and a log; a tanh is an exp, a division and
    /// three simple ops).
    pub transcendental: f64,
}

/// The arithmetic one element of `op` costs inside a generated kernel, or `None` if the op is
/// not elementwise arithmetic. Views (reshape, broadcast, unit-step slice, permute read through
/// strides) and constants cost nothing per element.
pub fn arithmetic(op: &Op) -> Option<Arithmetic> {
    let simple = |n: f64| Some(Arithmetic { simple: n, ..Arithmetic::default() });
    match op {
        Op::Unary(UnaryOp::Neg | UnaryOp::Abs) => simple(1.0),
        Op::Unary(UnaryOp::Recip | UnaryOp::Sqrt) | Op::Binary(BinaryOp::Div) => {
            Some(Arithmetic { divide: 1.0, ..Arithmetic::default() })
        }
        Op::Unary(UnaryOp::Exp | UnaryOp::Log | UnaryOp::Sin | UnaryOp::Cos) => {
            Some(Arithmetic { transcendental: 1.0, ..Arithmetic::default() })
        }
        // The generated tanh is `1 − 2/(e^{2x} + 1)` on the inline exp.
        Op::Unary(UnaryOp::Tanh) => Some(Arithmetic { simple: 3.0, divide: 1.0, transcendental: 1.0 }),
        Op::Binary(BinaryOp::Pow) => Some(Arithmetic { simple: 1.0, divide: 0.0, transcendental: 2.0 }),
        Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => simple(1.0),
        Op::Iota { .. } => simple(1.0),
        Op::Reduce { .. } => simple(1.0),
        Op::Const { .. }
        | Op::Reshape
        | Op::StopGradient
        | Op::Broadcast { .. }
        | Op::Slice { .. }
        | Op::Permute { .. } => simple(0.0),
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Rng { .. }
        | Op::Pad { .. }
        | Op::Concat { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Matmul
        | Op::Conv2d(_)
        | Op::Conv2dGradInput(_)
        | Op::Conv2dGradWeight(_) => None,
    }
}

/// Multiply-adds of a matmul with these operand types (batch dimensions included).
pub fn matmul_macs(out: &TensorType, lhs: &TensorType) -> f64 {
    let d = lhs.dims();
    out.numel() as f64 * d.last().copied().unwrap_or(1) as f64
}

/// Multiply-adds of a convolution (or one of its gradients), whichever tensor it produces.
pub fn conv_macs(op: &Op, out: &TensorType, args: &[&TensorType]) -> f64 {
    conv_work(op, out, args).0
}

/// Bytes of the im2col columns a convolution (or one of its gradients) writes and reads: one
/// row of taps per output pixel of every image.
pub fn conv_column_bytes(op: &Op, out: &TensorType, args: &[&TensorType]) -> f64 {
    conv_work(op, out, args).1
}

/// A convolution's multiply-adds and column bytes.
fn conv_work(op: &Op, out: &TensorType, args: &[&TensorType]) -> (f64, f64) {
    use kiln_ir::ConvKind;
    let Some((kind, _)) = op.conv() else { return (0.0, 0.0) };
    let (x, w, y) = match kind {
        ConvKind::Forward => (args[0], args[1], out),
        ConvKind::GradInput => (out, args[1], args[0]),
        ConvKind::GradWeight => (args[0], out, args[1]),
    };
    let wd = w.dims();
    let taps = (wd[1] * wd[2] * wd[3]) as f64;
    let Some((_, attrs)) = op.conv() else { return (0.0, 0.0) };
    let yd = attrs.layout.nchw(y.dims());
    let pixels = x.dims()[0] as f64 * (yd[2] * yd[3]) as f64;
    let groups = attrs.groups.max(1) as f64;
    (pixels * wd[0] as f64 * taps, pixels * taps * groups * x.dtype.size_bytes() as f64)
}

/// The features of one node computed on its own (a materialized step), given its type and its
/// operands' types. Elementwise ops are priced as a one-node kernel.
pub fn node_features(op: &Op, out: &TensorType, args: &[&TensorType]) -> Features {
    let bytes = (out.size_bytes() + args.iter().map(|a| a.size_bytes()).sum::<usize>()) as f64;
    let mut f = match op {
        Op::Matmul => {
            let mut f = Features::zero(Family::Gemm);
            f.add("mac", matmul_macs(out, args[0]));
            f
        }
        Op::Conv2d(_) | Op::Conv2dGradInput(_) | Op::Conv2dGradWeight(_) => {
            let mut f = Features::zero(Family::Conv);
            // Each kind runs its own loops (columns then a GEMM, a GEMM then col2im, a GEMM
            // over the columns): the gradients' multiply-adds have rates of their own.
            // Channels-last convolutions (whole-batch products, column rows gathered per
            // position) have rates of their own, whatever the kind.
            let nhwc = op.conv().is_some_and(|(_, a)| a.layout == kiln_ir::ConvLayout::Nhwc);
            let (mac, column) = match op.conv().map(|(k, _)| k) {
                _ if nhwc => ("nhwc_mac", "nhwc_column"),
                Some(kiln_ir::ConvKind::GradInput) => ("input_mac", "column"),
                Some(kiln_ir::ConvKind::GradWeight) => ("weight_mac", "column"),
                _ => ("mac", "column"),
            };
            f.add(mac, conv_macs(op, out, args));
            f.add(column, conv_column_bytes(op, out, args));
            f
        }
        // A transpose runs as a kernel reading its operand through strides.
        Op::Permute { .. } => {
            let mut f = Features::zero(Family::Kernel);
            f.add("strided", args.iter().map(|a| a.size_bytes()).sum::<usize>() as f64);
            f
        }
        Op::Slice { .. } | Op::Pad { .. } | Op::Concat { .. } => {
            let mut f = Features::zero(Family::Copy);
            // A copy reads about what it writes (a pad reads less, a strided slice more).
            f.add("byte", 2.0 * out.size_bytes() as f64);
            f.add("step", 1.0);
            f.set_spill();
            return f;
        }
        _ => match arithmetic(op) {
            Some(a) => {
                let mut f = Features::zero(Family::Kernel);
                // A reduction does its work per element of its operand.
                let n = match op {
                    Op::Reduce { .. } => args.first().map_or(out.numel(), |a| a.numel()),
                    _ => out.numel(),
                } as f64;
                f.add_arithmetic(a, n);
                if let (Op::Reduce { axes, .. }, Some(x)) = (op, args.first()) {
                    f.add("strided", strided_reduction_bytes(axes, x));
                }
                f
            }
            None => Features::zero(Family::Reference),
        },
    };
    let bytes = match op {
        // Indexing touches the rows it moves, not the whole table.
        Op::Gather { .. } => 2.0 * out.size_bytes() as f64 + args.get(1).map_or(0, |i| i.size_bytes()) as f64,
        Op::ScatterAdd { .. } => out.size_bytes() as f64 + args.iter().map(|a| a.size_bytes()).sum::<usize>() as f64,
        _ => bytes,
    };
    f.add("step", 1.0);
    f.add("byte", bytes);
    f.set_spill();
    f
}

/// The most bytes a step streams at cache speed: traffic past it is priced as `spill` too.
pub const CACHE_BYTES: f64 = 4.0 * 1024.0 * 1024.0;

/// A step's traffic beyond [`CACHE_BYTES`].
fn spill(bytes: f64) -> f64 {
    (bytes - CACHE_BYTES).max(0.0)
}

/// The operand bytes of a reduction over axes that are not the innermost ones (pooling
/// windows, column sums): read across rows, like a transpose.
fn strided_reduction_bytes(axes: &[usize], x: &TensorType) -> f64 {
    let r = x.dims().len();
    let innermost = axes.iter().all(|a| *a + axes.len() >= r);
    if innermost { 0.0 } else { x.size_bytes() as f64 }
}

/// The features of one group of the fused partition, as the runtime runs it: its family, one
/// step, the bytes it reads from outside the group and writes, and its arithmetic (a kernel
/// computes every member once per element it iterates over; a contraction's epilogue is
/// priced as kernel arithmetic by [`CostModel::predict_group`]).
pub fn group_features(graph: &Graph, group: &Group) -> Features {
    let root = group.root();
    // A reshape (or a stop-gradient) alone is its operand's buffer: no work.
    if group.members.len() == 1 && matches!(graph.node(root).op, Op::Reshape | Op::StopGradient) {
        return Features::zero(Family::Copy);
    }
    let members: HashSet<NodeId> = group.members.iter().copied().collect();
    // Bytes read: each operand from outside the group once (only the part a slice of it
    // reads, when slices are all that read it); bytes written: the root and side outputs.
    let mut outside: Vec<(NodeId, usize)> = Vec::new();
    for m in &group.members {
        let node = graph.node(*m);
        for a in &node.args {
            if members.contains(a) {
                continue;
            }
            let reads = match node.op {
                Op::Slice { .. } => node.ty.size_bytes(),
                _ => graph.ty(*a).size_bytes(),
            };
            match outside.iter_mut().find(|(b, _)| b == a) {
                Some((_, bytes)) => *bytes = (*bytes + reads).min(graph.ty(*a).size_bytes()),
                None => outside.push((*a, reads)),
            }
        }
    }
    let read: usize = outside.iter().map(|(_, bytes)| bytes).sum();
    let written: usize = group.stored().map(|n| graph.ty(n).size_bytes()).sum();
    let bytes = (read + written) as f64;
    let mut f = match group.kind {
        GroupKind::Contraction => {
            let core = group
                .members
                .iter()
                .copied()
                .find(|m| matches!(graph.node(*m).op, Op::Matmul) || graph.node(*m).op.conv().is_some())
                .unwrap_or(root);
            let n = graph.node(core);
            let tys: Vec<&TensorType> = n.args.iter().map(|a| graph.ty(*a)).collect();
            node_features(&n.op, &n.ty, &tys)
        }
        GroupKind::Movement | GroupKind::Op => {
            let n = graph.node(root);
            let tys: Vec<&TensorType> = n.args.iter().map(|a| graph.ty(*a)).collect();
            node_features(&n.op, &n.ty, &tys)
        }
        GroupKind::Elementwise => {
            let mut f = Features::zero(Family::Kernel);
            // The kernel iterates over its root's elements, or a reduction root's operand's.
            let r = graph.node(root);
            let space = match r.op {
                Op::Reduce { .. } => graph.ty(r.args[0]).numel(),
                _ => r.ty.numel(),
            } as f64;
            for m in &group.members {
                let node = graph.node(*m);
                f.add_arithmetic(arithmetic(&node.op).unwrap_or_default(), space);
                // Operands read through a transpose: strided, cache-unfriendly traffic.
                if matches!(node.op, Op::Permute { .. }) && !members.contains(&node.args[0]) {
                    f.add("strided", graph.ty(node.args[0]).size_bytes() as f64);
                }
                if let Op::Reduce { axes, .. } = &node.op {
                    f.add("strided", strided_reduction_bytes(axes, graph.ty(node.args[0])));
                }
            }
            f.add("step", 1.0);
            f
        }
    };
    // Every family's second feature is its bytes: those of the group as a whole (an indexing
    // op's, which touch part of their operands, as the op counts them).
    if !matches!(graph.node(root).op, Op::Gather { .. } | Op::ScatterAdd { .. }) {
        f.values[1] = bytes;
    }
    f.set_spill();
    f
}

/// The arithmetic of a contraction group's epilogue (every member after the product), per
/// element of its root, as kernel features without a step or bytes.
fn epilogue_features(graph: &Graph, group: &Group) -> Features {
    let mut f = Features::zero(Family::Kernel);
    let n = graph.ty(group.root()).numel() as f64;
    let core = group
        .members
        .iter()
        .position(|m| matches!(graph.node(*m).op, Op::Matmul) || graph.node(*m).op.conv().is_some());
    for m in group.members.iter().skip(core.map_or(group.members.len(), |c| c + 1)) {
        f.add_arithmetic(arithmetic(&graph.node(*m).op).unwrap_or_default(), n);
    }
    f
}

/// Nanoseconds per feature, for every family.
#[derive(Clone, Debug, PartialEq)]
pub struct CostModel {
    /// One row of coefficients per family, in the order of [`Family::ALL`].
    pub coefficients: [[f64; MAX_FEATURES]; 5],
    /// Where the coefficients came from: `builtin`, or the CPU the calibration ran on.
    pub source: String,
}

/// A model file that cannot be read: the line (1-based) and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// The file could not be read.
    #[error("cannot read cost model {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not `family.feature value` with a known family and feature and a finite,
    /// non-negative value.
    #[error("cost model line {line}: {message}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
}

/// The built-in model's nanoseconds per multiply-add of a channels-last convolution.
const NHWC_MAC: f64 = 0.005;
/// The built-in model's nanoseconds per column byte of a channels-last convolution.
const NHWC_COLUMN: f64 = 0.14;

impl CostModel {
    /// The built-in model: coefficients `kiln calibrate` measured on the machine the project
    /// is developed on (an Intel Xeon VM, one thread, 128-bit vectors; rounded). Used when no
    /// calibration exists, and by the test suite.
    pub fn builtin() -> Self {
        CostModel {
            coefficients: [
                // kernel: step, byte, simple, divide, transcendental, strided, spill
                [30.0, 0.022, 0.018, 0.1, 0.9, 0.06, 0.035, 0.0],
                // gemm: step, byte, mac
                [400.0, 0.022, 0.0135, 0.0, 0.0, 0.0, 0.0, 0.0],
                // conv: step, byte, mac (forward), column, input_mac, weight_mac, nhwc_mac,
                // nhwc_column
                [0.0, 0.0, 0.033, 0.064, 0.030, 0.013, NHWC_MAC, NHWC_COLUMN],
                // copy: step, byte, spill
                [0.0, 0.03, 0.043, 0.0, 0.0, 0.0, 0.0, 0.0],
                // reference: step, byte
                [200.0, 0.04, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            ],
            source: "builtin".to_string(),
        }
    }

    /// The model in use (read once per process): see the module header.
    pub fn current() -> &'static CostModel {
        static CURRENT: OnceLock<CostModel> = OnceLock::new();
        CURRENT.get_or_init(|| {
            let chosen = std::env::var("KILN_COST_MODEL").unwrap_or_default();
            let path = match chosen.as_str() {
                "builtin" => return CostModel::builtin(),
                "" | "cache" => cache_path(),
                file => Some(PathBuf::from(file)),
            };
            match path {
                Some(p) if p.exists() => CostModel::load(&p).unwrap_or_else(|e| {
                    eprintln!("warning: {e}; using the built-in cost model");
                    CostModel::builtin()
                }),
                _ => CostModel::builtin(),
            }
        })
    }

    /// Nanoseconds per feature of `family`.
    pub fn row(&self, family: Family) -> &[f64; MAX_FEATURES] {
        &self.coefficients[Family::ALL.iter().position(|f| *f == family).unwrap_or(0)]
    }

    /// Predicted nanoseconds of a step with these features.
    pub fn predict(&self, f: &Features) -> f64 {
        self.row(f.family).iter().zip(&f.values).map(|(c, v)| c * v).sum()
    }

    /// Predicted nanoseconds of one group of the fused partition.
    pub fn predict_group(&self, graph: &Graph, group: &Group) -> f64 {
        let mut t = self.predict(&group_features(graph, group));
        if group.kind == GroupKind::Contraction {
            t += self.predict(&epilogue_features(graph, group));
        }
        t
    }

    /// Predicted nanoseconds of two kernels `a` and `b` run one after the other, apart. Each
    /// kernel's `spill` prices its own traffic past [`CACHE_BYTES`] as if it ran alone; two
    /// kernels in a row stream their traffic together, so when their sum is past the cache the
    /// second does not find what the first read or wrote cached either: the extra spill of
    /// the pair is priced too. What a merge into one kernel is compared against (an optimizer
    /// update of a 784×256 weight and its two moments: three kernels of 2.4, 2.4 and 4 MB
    /// measured 443 µs, one kernel of 5.6 MB 309 µs).
    pub fn predict_pair(&self, a: &Features, b: &Features) -> f64 {
        let mut t = self.predict(a) + self.predict(b);
        let spill_at = Family::Kernel.feature_names().iter().position(|n| *n == "spill");
        if let (Family::Kernel, Family::Kernel, Some(i)) = (a.family, b.family, spill_at) {
            // Feature 1 is every family's bytes ([`Features::set_spill`] reads it too).
            let extra = spill(a.values[1] + b.values[1]) - spill(a.values[1]) - spill(b.values[1]);
            t += self.row(Family::Kernel)[i] * extra;
        }
        t
    }

    /// Nanoseconds per element of elementwise arithmetic inside a kernel.
    pub fn arithmetic_ns(&self, a: Arithmetic) -> f64 {
        let k = self.row(Family::Kernel);
        k[2] * a.simple + k[3] * a.divide + k[4] * a.transcendental
    }

    /// The model as text: `family.feature value` lines after a comment naming the source.
    pub fn to_text(&self) -> String {
        let mut s = format!("# kiln cost model: nanoseconds per feature ({})\n", self.source);
        for family in Family::ALL {
            for (i, name) in family.feature_names().iter().enumerate() {
                s.push_str(&format!("{}.{} {:e}\n", family.name(), name, self.row(family)[i]));
            }
        }
        s
    }

    /// Parses [`CostModel::to_text`]'s form; features not given keep the built-in value.
    pub fn from_text(text: &str, source: &str) -> Result<Self, ModelFileError> {
        let mut m = CostModel::builtin();
        m.source = source.to_string();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |message: String| ModelFileError::Line { line: i + 1, message };
            let (key, value) = line
                .split_once(char::is_whitespace)
                .ok_or_else(|| bad(format!("expected `family.feature value`, found `{line}`")))?;
            let (family, feature) =
                key.split_once('.').ok_or_else(|| bad(format!("`{key}` is not `family.feature`")))?;
            let fi = Family::ALL
                .iter()
                .position(|f| f.name() == family)
                .ok_or_else(|| bad(format!("unknown family `{family}`")))?;
            let xi = Family::ALL[fi]
                .feature_names()
                .iter()
                .position(|n| *n == feature)
                .ok_or_else(|| bad(format!("family `{family}` has no feature `{feature}`")))?;
            let v: f64 = value.trim().parse().map_err(|_| bad(format!("`{}` is not a number", value.trim())))?;
            if !v.is_finite() || v < 0.0 {
                return Err(bad(format!("{key} must be finite and non-negative, not {v}")));
            }
            m.coefficients[fi][xi] = v;
        }
        Ok(m)
    }

    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Self, ModelFileError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ModelFileError::Io { path: path.to_path_buf(), source })?;
        CostModel::from_text(&text, &path.display().to_string())
    }
}

/// This CPU's model name (from `/proc/cpuinfo`), or `unknown-cpu`.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown-cpu".to_string())
}

/// Where `kiln calibrate` keeps this CPU's model: `$KILN_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/kiln`, else `~/.cache/kiln`; the file is named after the CPU model.
pub fn cache_path() -> Option<PathBuf> {
    let dir = std::env::var_os("KILN_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("kiln")))
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("kiln")))?;
    let name: String =
        cpu_model().chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    Some(dir.join(format!("cost-model-{name}.txt")))
}
