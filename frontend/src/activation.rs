//! Activation functions, composed from primitives (the optimizer may re-discover them).

use crate::builder::Tensor;

impl<'b> Tensor<'b> {
    /// `max(x, 0)`.
    #[track_caller]
    pub fn relu(&self) -> Tensor<'b> {
        self.maximum(self.full_like(0.0))
    }

    /// `1 / (1 + e^-x)`.
    #[track_caller]
    pub fn sigmoid(&self) -> Tensor<'b> {
        (1.0 + (-*self).exp()).recip()
    }

    /// GELU, tanh approximation: `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    #[track_caller]
    pub fn gelu(&self) -> Tensor<'b> {
        let x = *self;
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let inner = (x + x * x * x * 0.044715) * c;
        x * 0.5 * (inner.tanh() + 1.0)
    }

    /// Softmax along `axis`, computed as `exp(x - max) / sum(exp(x - max))`.
    #[track_caller]
    pub fn softmax(&self, axis: isize) -> Tensor<'b> {
        let shifted = *self - self.max_keepdim(&[axis]).stop_gradient();
        let e = shifted.exp();
        e / e.sum_keepdim(&[axis])
    }

    /// Log-softmax along `axis`: `x - max - log(sum(exp(x - max)))`.
    #[track_caller]
    pub fn log_softmax(&self, axis: isize) -> Tensor<'b> {
        let shifted = *self - self.max_keepdim(&[axis]).stop_gradient();
        shifted - shifted.exp().sum_keepdim(&[axis]).log()
    }
}

impl<'b> Tensor<'b> {
    /// `max(x, slope · x)` for `0 ≤ slope ≤ 1`.
    #[track_caller]
    pub fn leaky_relu(&self, slope: f64) -> Tensor<'b> {
        self.maximum(*self * slope)
    }
}
