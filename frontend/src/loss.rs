//! Loss functions. Each returns a scalar: the mean over the batch (axis 0).
//!
//! A loss never broadcasts its prediction against its target: `mse(pred: [8, 1], target: [8])`
//! would compare every prediction with every target (an `[8, 8]` difference) and silently give
//! a wrong loss. Prediction and target must have one shape (reshape explicitly where they do
//! not); a mismatch is a build error naming the loss, both shapes and the caller's line.

use kiln_ir::DType;

use crate::builder::Tensor;

/// Records an error at the caller's line unless `pred` and `target` have one shape; returns
/// whether they do (poisoned operands already carry their own error).
#[track_caller]
fn same_shape(loss: &str, pred: Tensor<'_>, target: Tensor<'_>) -> bool {
    if pred.is_poisoned() || target.is_poisoned() {
        return false;
    }
    let (p, t) = (pred.shape(), target.shape());
    if p != t {
        pred.b.fail(
            loss,
            format!(
                "prediction {p:?} and target {t:?} differ in shape; a loss does not broadcast them \
                 (reshape one to the other's shape)"
            ),
        );
        return false;
    }
    true
}

/// Mean squared error: `mean((pred - target)^2)` over all elements. `pred` and `target` must
/// have one shape.
#[track_caller]
pub fn mse<'b>(pred: Tensor<'b>, target: Tensor<'b>) -> Tensor<'b> {
    if !same_shape("mse", pred, target) {
        return pred.b.handle(None);
    }
    (pred - target).square().mean_all()
}

/// Mean absolute error: `mean(|pred - target|)` over all elements. `pred` and `target` must
/// have one shape.
#[track_caller]
pub fn mae<'b>(pred: Tensor<'b>, target: Tensor<'b>) -> Tensor<'b> {
    if !same_shape("mae", pred, target) {
        return pred.b.handle(None);
    }
    (pred - target).abs().mean_all()
}

/// Cross entropy from logits `[batch, classes]`. `labels` are either integer class indices
/// `[batch]` or float class probabilities (one-hot) `[batch, classes]`; anything else is a
/// build error naming both shapes.
#[track_caller]
pub fn cross_entropy<'b>(logits: Tensor<'b>, labels: Tensor<'b>) -> Tensor<'b> {
    if logits.is_poisoned() || labels.is_poisoned() {
        return logits.b.handle(None);
    }
    let int_labels = labels.dtype().is_int();
    let (shape, label_shape) = (logits.shape(), labels.shape());
    let fits = if int_labels {
        label_shape.len() + 1 == shape.len() && label_shape[..] == shape[..shape.len() - 1]
    } else {
        label_shape == shape
    };
    if !fits {
        let want = if int_labels { "one class index per row of the logits" } else { "the logits' shape" };
        logits.b.fail("cross_entropy", format!("logits {shape:?} and labels {label_shape:?}: labels need {want}"));
        return logits.b.handle(None);
    }
    let logp = logits.log_softmax(-1);
    let target = if int_labels {
        let classes = shape.last().copied().unwrap_or(0);
        labels.one_hot(classes, logits.dtype())
    } else {
        labels
    };
    let per_example = -(target * logp).sum(&[-1]);
    per_example.mean_all()
}

/// Binary cross entropy of probabilities `p` against targets `t` in `[0, 1]` of the same
/// shape: `-mean(t log p + (1 - t) log(1 - p))`, with `p` clamped to `[1e-7, 1 - 1e-7]`.
#[track_caller]
pub fn binary_cross_entropy<'b>(p: Tensor<'b>, t: Tensor<'b>) -> Tensor<'b> {
    if !same_shape("binary_cross_entropy", p, t) {
        return p.b.handle(None);
    }
    let eps = if p.dtype() == DType::F64 { 1e-12 } else { 1e-7 };
    let p = p.maximum(p.full_like(eps)).minimum(p.full_like(1.0 - eps));
    let ll = t * p.log() + (1.0 - t) * (1.0 - p).log();
    -ll.mean_all()
}
