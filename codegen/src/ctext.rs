//! C text both C backends share: the C type of each dtype, the unsigned type integer
//! arithmetic wraps in, and conversions with the interpreter's rules. A translation unit that
//! uses [`cast`] defines `kiln_d2i` and `kiln_d2ll` (saturating float-to-integer conversions,
//! NaN → 0) in its prelude.

use kiln_ir::{BinaryOp, DType, UnaryOp};

/// The C type a dtype is stored as in generated kernels (`bool` as one byte).
pub fn c_type(d: DType) -> &'static str {
    match d {
        DType::F32 => "float",
        DType::F64 => "double",
        DType::I32 => "int",
        DType::I64 => "long long",
        DType::Bool => "unsigned char",
    }
}

/// The unsigned type integer arithmetic wraps in.
pub(crate) fn wrap_type(d: DType) -> &'static str {
    if d == DType::I64 { "unsigned long long" } else { "unsigned int" }
}

/// The C expression converting `x` of dtype `from` to `to` with the interpreter's rules.
pub(crate) fn cast(x: &str, from: DType, to: DType) -> String {
    match (from, to) {
        _ if from == to => x.to_string(),
        (_, DType::Bool) => format!("((unsigned char)({x} != 0))"),
        (DType::F32 | DType::F64, DType::I32) => format!("kiln_d2i((double){x})"),
        (DType::F32 | DType::F64, DType::I64) => format!("kiln_d2ll((double){x})"),
        // Integers wrap: through the unsigned type of the target width.
        (DType::I64, DType::I32) => format!("((int)(unsigned int)(unsigned long long){x})"),
        (_, t) => format!("(({}){x})", c_type(t)),
    }
}

/// The C expression of `a op b` in dtype `d`, held in C type `t`, with the interpreter's
/// rules: float `max`/`min` through the dialect's NaN-propagating `kiln_maxf`/`kiln_max`
/// helpers, integer arithmetic wrapping through the unsigned type. `None` for integer division
/// and powers, which are never fused (they stay with the runtime).
pub(crate) fn binary(op: BinaryOp, d: DType, t: &str, a: &str, b: &str) -> Option<String> {
    let f32_ = d == DType::F32;
    Some(if d.is_float() {
        match op {
            BinaryOp::Add => format!("({a} + {b})"),
            BinaryOp::Sub => format!("({a} - {b})"),
            BinaryOp::Mul => format!("({a} * {b})"),
            BinaryOp::Div => format!("({a} / {b})"),
            BinaryOp::Max => format!("{}({a}, {b})", if f32_ { "kiln_maxf" } else { "kiln_max" }),
            BinaryOp::Min => format!("{}({a}, {b})", if f32_ { "kiln_minf" } else { "kiln_min" }),
            BinaryOp::Pow => format!("{}({a}, {b})", if f32_ { "powf" } else { "pow" }),
        }
    } else {
        let w = wrap_type(d);
        let wrap = |sym: &str| format!("(({t})(({w}){a} {sym} ({w}){b}))");
        match op {
            BinaryOp::Add => wrap("+"),
            BinaryOp::Sub => wrap("-"),
            BinaryOp::Mul => wrap("*"),
            BinaryOp::Max => format!("({a} > {b} ? {a} : {b})"),
            BinaryOp::Min => format!("({a} < {b} ? {a} : {b})"),
            BinaryOp::Div | BinaryOp::Pow => return None,
        }
    })
}

/// The C expression of unary op `u` on `x` in dtype `d`, with the interpreter's rules
/// (integer negation and absolute value wrap); `one` is the literal 1 of `d` (for `recip`),
/// and `transcendental(name)` renders `exp`, `log`, `tanh`, `sin` and `cos` (the math
/// library's, or a dialect's own approximation).
pub(crate) fn unary(u: UnaryOp, d: DType, x: &str, one: &str, transcendental: &dyn Fn(&str) -> String) -> String {
    let libm = |name: &str| if d == DType::F32 { format!("{name}f({x})") } else { format!("{name}({x})") };
    match (u, d.is_float()) {
        (UnaryOp::Neg, true) => format!("(-{x})"),
        (UnaryOp::Neg, false) => format!("(({})(0 - ({})({x})))", c_type(d), wrap_type(d)),
        (UnaryOp::Abs, true) => libm("fabs"),
        (UnaryOp::Abs, false) => {
            format!("(({t})({x} < 0 ? 0 - ({w})({x}) : ({w})({x})))", t = c_type(d), w = wrap_type(d))
        }
        (UnaryOp::Sqrt, _) => libm("sqrt"),
        (UnaryOp::Recip, _) => format!("({one} / {x})"),
        (UnaryOp::Exp, _) => transcendental("exp"),
        (UnaryOp::Log, _) => transcendental("log"),
        (UnaryOp::Sin, _) => transcendental("sin"),
        (UnaryOp::Cos, _) => transcendental("cos"),
        (UnaryOp::Tanh, _) => transcendental("tanh"),
    }
}

/// The C literal of an integer value `v` of dtype `d` (`i32` or `i64`; the most negative value
/// written as a difference, since its magnitude alone is no literal of the type). `None` for
/// other dtypes.
pub(crate) fn int_literal(v: f64, d: DType) -> Option<String> {
    Some(match d {
        DType::I32 => match d.int_literal(v) {
            x if x == i64::from(i32::MIN) => "(-2147483647 - 1)".to_string(),
            x => format!("({x})"),
        },
        DType::I64 => match d.int_literal(v) {
            i64::MIN => "(-9223372036854775807LL - 1)".to_string(),
            x => format!("({x}LL)"),
        },
        DType::F32 | DType::F64 | DType::Bool => return None,
    })
}

/// The comment line heading a rendered kernel: its name, result type and iteration space, and
/// what it reduces (or `extra`).
pub(crate) fn kernel_comment(k: &crate::kernel::Kernel, extra: &str) -> String {
    let what = match &k.reduce {
        Some((op, axes)) => {
            format!(", {} over axes {axes:?}", if *op == kiln_ir::ReduceOp::Sum { "sum" } else { "max" })
        }
        None => extra.to_string(),
    };
    format!("/* {}: {} over {:?}{what} */\n", k.name, k.out, k.space)
}
