//! The primitive op set: one closed enum, the single source of truth for what kiln can compute.
//!
//! Every op's exact semantics is written in `docs/ops.md`; its type rule lives in
//! [`crate::types`] and its meaning in the reference interpreter ([`crate::interp`]). The
//! simple op enums are each defined from one list (`op_enum!`: variant, doc, text name), and
//! [`Op::kind`] classifies every op once ([`OpKind`]) for the passes and backends that decide
//! by class. Code that handles ops matches without `_ =>` arms (one-variant predicates aside)
//! so that a new op breaks the build wherever it must be handled.

use std::fmt;
use std::hash::{Hash, Hasher};

/// A floating-point attribute value compared and hashed by its bits, so that ops carrying one
/// can be interned. Also used for integer and boolean constants (exact up to 2^53).
#[derive(Clone, Copy, Debug)]
pub struct Literal(pub f64);

impl PartialEq for Literal {
    fn eq(&self, other: &Self) -> bool {
        self.0.to_bits() == other.0.to_bits()
    }
}

impl Eq for Literal {}

impl PartialOrd for Literal {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A total order by bits, so ops can be ordered (e-graph languages need `Ord`).
impl Ord for Literal {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.to_bits().cmp(&other.0.to_bits())
    }
}

impl Hash for Literal {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.to_bits().hash(state);
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `{:?}` is Rust's shortest representation that parses back to the same bits.
        write!(f, "{:?}", self.0)
    }
}

/// How a parameter is initialized when no value is supplied (see `docs/ops.md`, "Parameters").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Init {
    /// All zeros.
    Zeros,
    /// All ones.
    Ones,
    /// Uniform on `[low, high)`.
    Uniform {
        /// Lower bound.
        low: Literal,
        /// Upper bound (exclusive).
        high: Literal,
    },
    /// Normal with the given mean and standard deviation.
    Normal {
        /// Mean.
        mean: Literal,
        /// Standard deviation.
        std: Literal,
    },
}

impl fmt::Display for Init {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Init::Zeros => f.write_str("zeros"),
            Init::Ones => f.write_str("ones"),
            Init::Uniform { low, high } => write!(f, "uniform({low}, {high})"),
            Init::Normal { mean, std } => write!(f, "normal({mean}, {std})"),
        }
    }
}

/// Distribution drawn by the `rng` op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Distribution {
    /// Uniform on `[0, 1)`.
    Uniform,
    /// Standard normal.
    Normal,
}

impl Distribution {
    /// Name in the text IR.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Normal => "normal",
        }
    }
}

/// Defines one of the simple op enums (unary, binary, comparison, reduction) from one list:
/// each variant with its doc and its name in the text IR, giving the enum, `ALL` (every
/// variant, in order), `name` and `from_name` (what the parser reads), so a new variant is
/// printed, parsed and enumerated without another list to keep.
macro_rules! op_enum {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($(#[$vdoc:meta])* $variant:ident = $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            #[doc = concat!("Every ", $what, ", in declaration order.")]
            pub const ALL: [$name; [$(stringify!($variant)),+].len()] = [$($name::$variant),+];

            /// Name in the text IR.
            pub fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            #[doc = concat!("The ", $what, " named `name` in the text IR.")]
            pub fn from_name(name: &str) -> Option<$name> {
                match name {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

op_enum! {
    /// Elementwise unary ops.
    UnaryOp, "unary op" {
        /// `-x`.
        Neg = "neg",
        /// `e^x`.
        Exp = "exp",
        /// Natural logarithm.
        Log = "log",
        /// Square root.
        Sqrt = "sqrt",
        /// `1 / x`.
        Recip = "recip",
        /// Sine.
        Sin = "sin",
        /// Cosine.
        Cos = "cos",
        /// Hyperbolic tangent.
        Tanh = "tanh",
        /// Absolute value.
        Abs = "abs",
    }
}

impl UnaryOp {
    /// The C math library function that computes the op on floats (`exp`, `log`, `sin`,
    /// `cos`, `tanh`), or `None` for ops every backend computes with its own instructions.
    /// Backends derive their math symbols from this one list.
    pub fn libm(self) -> Option<&'static str> {
        match self {
            UnaryOp::Exp => Some("exp"),
            UnaryOp::Log => Some("log"),
            UnaryOp::Sin => Some("sin"),
            UnaryOp::Cos => Some("cos"),
            UnaryOp::Tanh => Some("tanh"),
            UnaryOp::Neg | UnaryOp::Sqrt | UnaryOp::Recip | UnaryOp::Abs => None,
        }
    }

    /// True if the op is defined on signed integers too (not only on floats).
    pub fn accepts_int(self) -> bool {
        match self {
            UnaryOp::Neg | UnaryOp::Abs => true,
            UnaryOp::Exp
            | UnaryOp::Log
            | UnaryOp::Sqrt
            | UnaryOp::Recip
            | UnaryOp::Sin
            | UnaryOp::Cos
            | UnaryOp::Tanh => false,
        }
    }
}

op_enum! {
    /// Elementwise binary arithmetic ops. Operands have identical types.
    BinaryOp, "binary op" {
        /// `a + b`.
        Add = "add",
        /// `a - b`.
        Sub = "sub",
        /// `a * b`.
        Mul = "mul",
        /// `a / b` (truncating for integers).
        Div = "div",
        /// Elementwise maximum.
        Max = "max",
        /// Elementwise minimum.
        Min = "min",
        /// `a ^ b` (floats only).
        Pow = "pow",
    }
}

impl BinaryOp {
    /// The C math library function that computes the op on floats (`pow`), or `None`.
    pub fn libm(self) -> Option<&'static str> {
        match self {
            BinaryOp::Pow => Some("pow"),
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div | BinaryOp::Max | BinaryOp::Min => None,
        }
    }
}

op_enum! {
    /// Elementwise comparisons, producing `bool`.
    CmpOp, "comparison" {
        /// `a < b`.
        Lt = "cmp_lt",
        /// `a == b`.
        Eq = "cmp_eq",
    }
}

op_enum! {
    /// Reductions over a set of axes.
    ReduceOp, "reduction" {
        /// Sum.
        Sum = "reduce_sum",
        /// Maximum.
        Max = "reduce_max",
    }
}

/// Attributes shared by `conv2d` and its two gradient forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConvAttrs {
    /// Stride along (height, width).
    pub stride: [usize; 2],
    /// Zero padding added on both sides of (height, width).
    pub padding: [usize; 2],
    /// Dilation of the kernel along (height, width).
    pub dilation: [usize; 2],
    /// Number of channel groups.
    pub groups: usize,
    /// Where the channels sit in the input and output activations (the weight is always
    /// `[O, C/groups, KH, KW]`).
    pub layout: ConvLayout,
}

impl Default for ConvAttrs {
    fn default() -> Self {
        ConvAttrs { stride: [1, 1], padding: [0, 0], dilation: [1, 1], groups: 1, layout: ConvLayout::Nchw }
    }
}

/// The activation layout of a convolution: the order of the axes of its input `x`, its output
/// `y` and their gradients. The weight keeps `[O, C/groups, KH, KW]` in both, so parameters and
/// checkpoints never change layout; only the activations between layers do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ConvLayout {
    /// Channels first: `x: [N, C, H, W]`, `y: [N, O, OH, OW]` (the frontend's layout).
    #[default]
    Nchw,
    /// Channels last: `x: [N, H, W, C]`, `y: [N, OH, OW, O]`. Chosen by the `layout` pass
    /// where the cost model prices it cheaper.
    Nhwc,
}

impl ConvLayout {
    /// The name in the text form (`layout=nhwc`).
    pub fn name(self) -> &'static str {
        match self {
            ConvLayout::Nchw => "nchw",
            ConvLayout::Nhwc => "nhwc",
        }
    }

    /// The activation axes `(N, C, H, W)` as positions in this layout.
    pub fn axes(self) -> [usize; 4] {
        match self {
            ConvLayout::Nchw => [0, 1, 2, 3],
            ConvLayout::Nhwc => [0, 3, 1, 2],
        }
    }

    /// `[N, C, H, W]` extents put in this layout's order.
    pub fn arrange(self, nchw: [usize; 4]) -> [usize; 4] {
        let a = self.axes();
        let mut out = [0; 4];
        for (i, &pos) in a.iter().enumerate() {
            out[pos] = nchw[i];
        }
        out
    }

    /// Extents in this layout's order read back as `[N, C, H, W]`.
    pub fn nchw(self, dims: &[usize]) -> [usize; 4] {
        self.axes().map(|pos| dims[pos])
    }
}

/// Which of the three convolution ops a node is ([`Op::conv`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKind {
    /// `conv2d(x, w) -> y`.
    Forward,
    /// `conv2d_grad_input(dy, w) -> dx`.
    GradInput,
    /// `conv2d_grad_weight(x, dy) -> dw`.
    GradWeight,
}

/// A movement op with its attributes, borrowed ([`Op::movement`]): what the passes and
/// backends that move data match on, so only [`Op::movement`] lists the other ops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Movement<'a> {
    /// `reshape`.
    Reshape,
    /// `permute`.
    Permute {
        /// The permutation.
        perm: &'a [usize],
    },
    /// `broadcast`.
    Broadcast {
        /// The result axis of each operand axis.
        dims: &'a [usize],
    },
    /// `slice`.
    Slice {
        /// First index per axis.
        start: &'a [usize],
        /// One past the last index per axis.
        stop: &'a [usize],
        /// Step per axis.
        step: &'a [usize],
    },
    /// `pad`.
    Pad {
        /// Elements before each axis.
        low: &'a [usize],
        /// Elements after each axis.
        high: &'a [usize],
        /// The padding value.
        value: Literal,
    },
    /// `concat`.
    Concat {
        /// The axis.
        axis: usize,
    },
}

/// The class of an op: what fusion, kernel lowering, the cost model and the backends decide
/// by. Every op has exactly one ([`Op::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// Supplied by the caller: `input`, `param`.
    Leaf,
    /// Known without operands from the node alone: `const`, `iota`.
    Constant,
    /// Drawn from a seed: `rng`.
    Random,
    /// One result element from the operands' elements at the same position: unary, binary,
    /// comparisons, `select`, `cast`, `stop_gradient`.
    Elementwise,
    /// Combines elements along axes: `reduce_sum`, `reduce_max`.
    Reduction,
    /// Moves or repeats elements without arithmetic: `reshape`, `permute`, `broadcast`,
    /// `slice`, `pad`, `concat`.
    Movement,
    /// Sums of products over an inner extent: `matmul`, `conv2d` and its gradients.
    Contraction,
    /// Reads or writes at positions given by an index tensor: `gather`, `scatter_add`.
    Indexing,
}

impl OpKind {
    /// Every class, in declaration order.
    pub const ALL: [OpKind; 8] = [
        OpKind::Leaf,
        OpKind::Constant,
        OpKind::Random,
        OpKind::Elementwise,
        OpKind::Reduction,
        OpKind::Movement,
        OpKind::Contraction,
        OpKind::Indexing,
    ];

    /// A short lowercase name, for dumps.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Leaf => "leaf",
            OpKind::Constant => "constant",
            OpKind::Random => "random",
            OpKind::Elementwise => "elementwise",
            OpKind::Reduction => "reduction",
            OpKind::Movement => "movement",
            OpKind::Contraction => "contraction",
            OpKind::Indexing => "indexing",
        }
    }
}

/// A primitive operation. Operands are the node's `args`; the result type is the node's type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// A graph input fed by the caller. No operands.
    Input {
        /// Name, unique among the graph's leaves.
        name: String,
    },
    /// A trainable parameter: fed by the caller or initialized by `init`. No operands.
    Param {
        /// Name, unique among the graph's leaves.
        name: String,
        /// Initializer used when no value is supplied.
        init: Init,
    },
    /// A constant: every element equals `value`. No operands; the type is declared.
    Const {
        /// The element value (converted to the declared dtype).
        value: Literal,
    },
    /// The index along `axis` at every position. No operands; the type is declared.
    Iota {
        /// Axis whose index is produced.
        axis: usize,
    },
    /// Counter-based random numbers. One operand: the `i64[]` seed.
    Rng {
        /// Distribution.
        dist: Distribution,
        /// Stream number, so that two draws with the same seed and type differ.
        stream: u32,
    },
    /// Elementwise unary op.
    Unary(UnaryOp),
    /// Identity whose gradient is zero.
    StopGradient,
    /// Elementwise binary op.
    Binary(BinaryOp),
    /// Elementwise comparison.
    Compare(CmpOp),
    /// `select(cond, a, b)`: `a` where `cond`, else `b`.
    Select,
    /// Conversion to the declared dtype.
    Cast,
    /// Reduction over `axes`, which are removed from the shape.
    Reduce {
        /// Which reduction.
        op: ReduceOp,
        /// Strictly increasing axes to reduce.
        axes: Vec<usize>,
    },
    /// Row-major reshape to the declared shape.
    Reshape,
    /// Axis permutation: result axis `i` is operand axis `perm[i]`.
    Permute {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Broadcast to the declared shape; operand axis `i` becomes result axis `dims[i]`.
    Broadcast {
        /// Strictly increasing result axes for the operand's axes.
        dims: Vec<usize>,
    },
    /// Strided window `[start, stop)` with `step` along every axis.
    Slice {
        /// First index per axis.
        start: Vec<usize>,
        /// One past the last index per axis.
        stop: Vec<usize>,
        /// Step per axis (at least 1).
        step: Vec<usize>,
    },
    /// Constant padding before (`low`) and after (`high`) every axis.
    Pad {
        /// Elements added before each axis.
        low: Vec<usize>,
        /// Elements added after each axis.
        high: Vec<usize>,
        /// The padding value.
        value: Literal,
    },
    /// Concatenation of all operands along `axis`.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Batched matrix product `[..., m, k] x [..., k, n] -> [..., m, n]`.
    Matmul,
    /// 2-D convolution (cross-correlation), NCHW input and OIHW weight.
    Conv2d(ConvAttrs),
    /// Gradient of `conv2d` with respect to its input: operands `(grad_out, weight)`.
    Conv2dGradInput(ConvAttrs),
    /// Gradient of `conv2d` with respect to its weight: operands `(input, grad_out)`.
    Conv2dGradWeight(ConvAttrs),
    /// `take` along `axis`: operands `(x, indices)`.
    Gather {
        /// The indexed axis of `x`.
        axis: usize,
    },
    /// Sum of `updates` into a zero tensor at `indices` along `axis`: operands `(updates, indices)`.
    ScatterAdd {
        /// The indexed axis of the result.
        axis: usize,
    },
}

impl Op {
    /// The op's name in the text IR.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Param { .. } => "param",
            Op::Const { .. } => "const",
            Op::Iota { .. } => "iota",
            Op::Rng { .. } => "rng",
            Op::Unary(u) => u.name(),
            Op::StopGradient => "stop_gradient",
            Op::Binary(b) => b.name(),
            Op::Compare(c) => c.name(),
            Op::Select => "select",
            Op::Cast => "cast",
            Op::Reduce { op, .. } => op.name(),
            Op::Reshape => "reshape",
            Op::Permute { .. } => "permute",
            Op::Broadcast { .. } => "broadcast",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Concat { .. } => "concat",
            Op::Matmul => "matmul",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dGradInput(_) => "conv2d_grad_input",
            Op::Conv2dGradWeight(_) => "conv2d_grad_weight",
            Op::Gather { .. } => "gather",
            Op::ScatterAdd { .. } => "scatter_add",
        }
    }

    /// The op's class ([`OpKind`]).
    pub fn kind(&self) -> OpKind {
        match self {
            Op::Input { .. } | Op::Param { .. } => OpKind::Leaf,
            Op::Const { .. } | Op::Iota { .. } => OpKind::Constant,
            Op::Rng { .. } => OpKind::Random,
            Op::Unary(_) | Op::StopGradient | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => {
                OpKind::Elementwise
            }
            Op::Reduce { .. } => OpKind::Reduction,
            Op::Reshape
            | Op::Permute { .. }
            | Op::Broadcast { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. } => OpKind::Movement,
            Op::Matmul | Op::Conv2d(_) | Op::Conv2dGradInput(_) | Op::Conv2dGradWeight(_) => OpKind::Contraction,
            Op::Gather { .. } | Op::ScatterAdd { .. } => OpKind::Indexing,
        }
    }

    /// For `conv2d` and its two gradients: which one, and its attributes.
    pub fn conv(&self) -> Option<(ConvKind, ConvAttrs)> {
        match self {
            Op::Conv2d(a) => Some((ConvKind::Forward, *a)),
            Op::Conv2dGradInput(a) => Some((ConvKind::GradInput, *a)),
            Op::Conv2dGradWeight(a) => Some((ConvKind::GradWeight, *a)),
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
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Matmul
            | Op::Gather { .. }
            | Op::ScatterAdd { .. } => None,
        }
    }

    /// For the movement ops ([`OpKind::Movement`]): which one, with its attributes.
    pub fn movement(&self) -> Option<Movement<'_>> {
        match self {
            Op::Reshape => Some(Movement::Reshape),
            Op::Permute { perm } => Some(Movement::Permute { perm }),
            Op::Broadcast { dims } => Some(Movement::Broadcast { dims }),
            Op::Slice { start, stop, step } => Some(Movement::Slice { start, stop, step }),
            Op::Pad { low, high, value } => Some(Movement::Pad { low, high, value: *value }),
            Op::Concat { axis } => Some(Movement::Concat { axis: *axis }),
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
            | Op::Matmul
            | Op::Conv2d(_)
            | Op::Conv2dGradInput(_)
            | Op::Conv2dGradWeight(_)
            | Op::Gather { .. }
            | Op::ScatterAdd { .. } => None,
        }
    }

    /// True for `input` and `param`, the values a caller supplies.
    pub fn is_leaf(&self) -> bool {
        matches!(self, Op::Input { .. } | Op::Param { .. })
    }

    /// The leaf name of an `input` or `param`.
    pub fn leaf_name(&self) -> Option<&str> {
        match self {
            Op::Input { name } | Op::Param { name, .. } => Some(name),
            _ => None,
        }
    }

    /// True if the result type is an attribute of the node (declared) rather than inferred
    /// from the operands. Such ops print their type and need it to be built.
    pub fn declares_type(&self) -> bool {
        match self {
            Op::Input { .. }
            | Op::Param { .. }
            | Op::Const { .. }
            | Op::Iota { .. }
            | Op::Rng { .. }
            | Op::Cast
            | Op::Reshape
            | Op::Broadcast { .. }
            | Op::Conv2dGradInput(_)
            | Op::Conv2dGradWeight(_)
            | Op::ScatterAdd { .. } => true,
            Op::Unary(_)
            | Op::StopGradient
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Select
            | Op::Reduce { .. }
            | Op::Permute { .. }
            | Op::Slice { .. }
            | Op::Pad { .. }
            | Op::Concat { .. }
            | Op::Matmul
            | Op::Conv2d(_)
            | Op::Gather { .. } => false,
        }
    }
}
