//! Multi-head self-attention.

use crate::builder::{Builder, Tensor};
use crate::nn::Linear;

/// Scaled dot-product self-attention with `heads` heads over `[batch, seq, dim]`.
#[derive(Clone, Copy, Debug)]
pub struct MultiHeadAttention<'b> {
    /// Query projection.
    pub q: Linear<'b>,
    /// Key projection.
    pub k: Linear<'b>,
    /// Value projection.
    pub v: Linear<'b>,
    /// Output projection.
    pub out: Linear<'b>,
    dim: usize,
    heads: usize,
}

impl<'b> MultiHeadAttention<'b> {
    /// A layer `name` of model width `dim` split into `heads` heads.
    #[track_caller]
    pub fn new(b: &'b Builder, name: &str, dim: usize, heads: usize) -> Self {
        if heads == 0 || !dim.is_multiple_of(heads) {
            b.fail("MultiHeadAttention", format!("dim {dim} is not divisible by {heads} heads"));
        }
        let lin = |n: &str| {
            Linear::with_init(b, &format!("{name}.{n}"), dim, dim, crate::init::xavier_uniform(dim, dim), true)
        };
        MultiHeadAttention { q: lin("q"), k: lin("k"), v: lin("v"), out: lin("out"), dim, heads: heads.max(1) }
    }

    /// Self-attention of `x: [batch, seq, dim]` (no mask).
    #[track_caller]
    pub fn forward(&self, x: Tensor<'b>) -> Tensor<'b> {
        let s = x.shape();
        if x.is_poisoned() || s.len() != 3 || s[2] != self.dim {
            if !x.is_poisoned() {
                x.b.fail("MultiHeadAttention", format!("expects [batch, seq, {}], got {}", self.dim, x.ty()));
            }
            return x.b.handle(None);
        }
        let (batch, seq, hd) = (s[0], s[1], self.dim / self.heads);
        // [batch, seq, dim] -> [batch, heads, seq, head_dim]
        let split = |t: Tensor<'b>| t.reshape(&[batch, seq, self.heads, hd]).permute(&[0, 2, 1, 3]);
        let (q, k, v) = (split(self.q.forward(x)), split(self.k.forward(x)), split(self.v.forward(x)));
        let scores = q.matmul(k.transpose()) * (1.0 / (hd as f64).sqrt());
        let ctx = scores.softmax(-1).matmul(v);
        let merged = ctx.permute(&[0, 2, 1, 3]).reshape(&[batch, seq, self.dim]);
        self.out.forward(merged)
    }
}
