//! Loss functions. Each returns a scalar: the mean over the batch (axis 0).

use kiln_ir::DType;

use crate::builder::Tensor;

/// Mean squared error: `mean((pred - target)^2)` over all elements.
#[track_caller]
pub fn mse<'b>(pred: Tensor<'b>, target: Tensor<'b>) -> Tensor<'b> {
    (pred - target).square().mean_all()
}

/// Cross entropy from logits `[batch, classes]`. `labels` are either integer class indices
/// `[batch]` or float class probabilities (one-hot) `[batch, classes]`.
#[track_caller]
pub fn cross_entropy<'b>(logits: Tensor<'b>, labels: Tensor<'b>) -> Tensor<'b> {
    let logp = logits.log_softmax(-1);
    let target = if labels.dtype().is_int() {
        let classes = logits.shape().last().copied().unwrap_or(0);
        labels.one_hot(classes, logits.dtype())
    } else {
        labels
    };
    let per_example = -(target * logp).sum(&[-1]);
    per_example.mean_all()
}

/// Binary cross entropy of probabilities `p` against targets `t` in `[0, 1]`:
/// `-mean(t log p + (1 - t) log(1 - p))`, with `p` clamped to `[1e-7, 1 - 1e-7]`.
#[track_caller]
pub fn binary_cross_entropy<'b>(p: Tensor<'b>, t: Tensor<'b>) -> Tensor<'b> {
    let eps = if p.dtype() == DType::F64 { 1e-12 } else { 1e-7 };
    let p = p.maximum(p.full_like(eps)).minimum(p.full_like(1.0 - eps));
    let ll = t * p.log() + (1.0 - t) * (1.0 - p).log();
    -ll.mean_all()
}
