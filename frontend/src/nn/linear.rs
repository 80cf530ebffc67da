//! Fully connected layer.

use kiln_ir::Init;

use crate::builder::{Builder, Tensor};
use crate::init::{bias_uniform, kaiming_uniform};

/// `y = x W + b` with `W: [in, out]`, applied to the last axis of any input of rank ≥ 2.
#[derive(Clone, Copy, Debug)]
pub struct Linear<'b> {
    /// Weight `[in, out]`.
    pub weight: Tensor<'b>,
    /// Bias `[out]`, if any.
    pub bias: Option<Tensor<'b>>,
    in_features: usize,
    out_features: usize,
}

impl<'b> Linear<'b> {
    /// A layer `name` with Kaiming-uniform weight and a bias.
    #[track_caller]
    pub fn new(b: &'b Builder, name: &str, in_features: usize, out_features: usize) -> Self {
        Self::with_init(b, name, in_features, out_features, kaiming_uniform(in_features), true)
    }

    /// A layer with the given weight initializer, with or without a bias.
    #[track_caller]
    pub fn with_init(
        b: &'b Builder,
        name: &str,
        in_features: usize,
        out_features: usize,
        init: Init,
        bias: bool,
    ) -> Self {
        let weight = b.param(&format!("{name}.weight"), [in_features, out_features], init);
        let bias = bias.then(|| b.param(&format!("{name}.bias"), [out_features], bias_uniform(in_features)));
        Linear { weight, bias, in_features, out_features }
    }

    /// Applies the layer to `x: [..., in]`.
    #[track_caller]
    pub fn forward(&self, x: Tensor<'b>) -> Tensor<'b> {
        let s = x.shape();
        if s.last() != Some(&self.in_features) || x.is_poisoned() {
            if !x.is_poisoned() {
                x.b.fail("Linear", format!("expects input [..., {}], got {}", self.in_features, x.ty()));
            }
            return x.b.handle(None);
        }
        let rows: usize = s[..s.len() - 1].iter().product();
        let flat = if s.len() == 2 { x } else { x.reshape(&[rows, self.in_features]) };
        let mut y = flat.matmul(self.weight);
        if let Some(b) = self.bias {
            y = y + b;
        }
        let mut out = s;
        *out.last_mut().expect("rank checked above") = self.out_features;
        y.reshape(&out)
    }
}
