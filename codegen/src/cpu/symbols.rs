//! The math functions kernels call, from one list: kiln's symbols, the C math library's
//! names and Rust's implementations the JIT binds them to.

use super::*;

/// A scalar math function that kernels call: the C math library's function (as
/// [`UnaryOp::libm`] / [`BinaryOp::libm`] name it) at one dtype, under kiln's symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MathFn {
    /// The C math library's name: `exp`, `log`, `sin`, `cos`, `tanh`, `pow`.
    pub name: &'static str,
    /// The dtype it computes in.
    pub dtype: DType,
    /// kiln's symbol for it (`kiln_exp_f32`): the JIT binds it to Rust's function, an object
    /// file leaves it to be defined where it is linked.
    pub symbol: &'static str,
    /// Its number of arguments.
    pub arity: usize,
}

/// Every math function kernels may call, from one list: the table ([`MATH`]), the symbols
/// ([`MATH_SYMBOLS`]) and the functions the JIT binds them to.
macro_rules! math_functions {
    ($($name:literal $dtype:ident $t:ty, $symbol:literal, |$($arg:ident),+| $body:expr;)*) => {
        /// Every math function kernels may call.
        pub const MATH: [MathFn; [$($symbol),*].len()] = [$(MathFn {
            name: $name,
            dtype: DType::$dtype,
            symbol: $symbol,
            arity: [$(stringify!($arg)),+].len(),
        }),*];

        /// The symbols of [`MATH`], in its order.
        pub const MATH_SYMBOLS: [&str; [$($symbol),*].len()] = [$($symbol),*];

        /// Rust's implementations of [`MATH`], in its order (what the JIT binds).
        pub(super) fn math_pointers() -> Vec<*const u8> {
            vec![$({
                extern "C" fn f($($arg: $t),+) -> $t { $body }
                f as *const u8
            }),*]
        }
    };
}

math_functions! {
    "exp" F32 f32, "kiln_exp_f32", |x| x.exp();
    "exp" F64 f64, "kiln_exp_f64", |x| x.exp();
    "log" F32 f32, "kiln_log_f32", |x| x.ln();
    "log" F64 f64, "kiln_log_f64", |x| x.ln();
    "sin" F32 f32, "kiln_sin_f32", |x| x.sin();
    "sin" F64 f64, "kiln_sin_f64", |x| x.sin();
    "cos" F32 f32, "kiln_cos_f32", |x| x.cos();
    "cos" F64 f64, "kiln_cos_f64", |x| x.cos();
    "tanh" F32 f32, "kiln_tanh_f32", |x| x.tanh();
    "tanh" F64 f64, "kiln_tanh_f64", |x| x.tanh();
    "pow" F32 f32, "kiln_pow_f32", |x, y| x.powf(y);
    "pow" F64 f64, "kiln_pow_f64", |x, y| x.powf(y);
}

/// The math function `name` at `dtype`, if kernels may call it.
pub fn math_fn(name: &str, dtype: DType) -> Option<&'static MathFn> {
    MATH.iter().find(|m| m.name == name && m.dtype == dtype)
}

/// The math library function a kernel instruction calls, if any.
pub(super) fn libm_of(inst: &Inst) -> Option<&'static str> {
    match inst {
        Inst::Unary(u, _) => u.libm(),
        Inst::Binary(op, _, _) => op.libm(),
        Inst::Load(_) | Inst::Const(_) | Inst::Compare(..) | Inst::Select(..) | Inst::Cast(_) => None,
    }
}
