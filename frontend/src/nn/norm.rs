//! Layer normalization.

use kiln_ir::Init;

use crate::builder::{Builder, Tensor};

/// Normalizes the last axis to zero mean and unit variance, then scales and shifts.
#[derive(Clone, Copy, Debug)]
pub struct LayerNorm<'b> {
    /// Scale `[dim]`, initialized to ones.
    pub gamma: Tensor<'b>,
    /// Shift `[dim]`, initialized to zeros.
    pub beta: Tensor<'b>,
    /// Added to the variance before the square root.
    pub eps: f64,
}

impl<'b> LayerNorm<'b> {
    /// A layer `name` over a last axis of extent `dim`, with `eps = 1e-5`.
    #[track_caller]
    pub fn new(b: &'b Builder, name: &str, dim: usize) -> Self {
        LayerNorm {
            gamma: b.param(&format!("{name}.gamma"), [dim], Init::Ones),
            beta: b.param(&format!("{name}.beta"), [dim], Init::Zeros),
            eps: 1e-5,
        }
    }

    /// `(x - mean) / sqrt(var + eps) * gamma + beta` over the last axis.
    #[track_caller]
    pub fn forward(&self, x: Tensor<'b>) -> Tensor<'b> {
        let centered = x - x.mean_keepdim(&[-1]);
        let var = centered.square().mean_keepdim(&[-1]);
        centered * (var + self.eps).sqrt().recip() * self.gamma + self.beta
    }
}
