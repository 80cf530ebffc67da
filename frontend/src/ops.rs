//! Operator overloading for [`Tensor`]: `+ - * /` between tensors (numpy broadcasting) and
//! with `f64` scalars (converted to the tensor's dtype), and unary `-`.

use std::ops::{Add, Div, Mul, Neg, Sub};

use kiln_ir::{BinaryOp, Op, UnaryOp};

use crate::builder::Tensor;

macro_rules! binop {
    ($trait:ident, $method:ident, $op:expr) => {
        impl<'b> $trait<Tensor<'b>> for Tensor<'b> {
            type Output = Tensor<'b>;
            #[track_caller]
            fn $method(self, rhs: Tensor<'b>) -> Tensor<'b> {
                self.binary($op, rhs)
            }
        }

        impl<'b> $trait<f64> for Tensor<'b> {
            type Output = Tensor<'b>;
            #[track_caller]
            fn $method(self, rhs: f64) -> Tensor<'b> {
                let c = self.full_like(rhs);
                self.binary($op, c)
            }
        }

        impl<'b> $trait<Tensor<'b>> for f64 {
            type Output = Tensor<'b>;
            #[track_caller]
            fn $method(self, rhs: Tensor<'b>) -> Tensor<'b> {
                let c = rhs.full_like(self);
                c.binary($op, rhs)
            }
        }
    };
}

binop!(Add, add, BinaryOp::Add);
binop!(Sub, sub, BinaryOp::Sub);
binop!(Mul, mul, BinaryOp::Mul);
binop!(Div, div, BinaryOp::Div);

impl<'b> Neg for Tensor<'b> {
    type Output = Tensor<'b>;
    #[track_caller]
    fn neg(self) -> Tensor<'b> {
        self.b.apply(Op::Unary(UnaryOp::Neg), &[self], None)
    }
}
