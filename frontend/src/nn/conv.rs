//! 2-D convolution layer.

use kiln_ir::ConvAttrs;

use crate::builder::{Builder, Tensor};
use crate::init::{bias_uniform, kaiming_uniform};

/// Convolution of an NCHW input with a square `k × k` kernel, plus a per-channel bias.
#[derive(Clone, Copy, Debug)]
pub struct Conv2d<'b> {
    /// Weight `[out, in / groups, k, k]`.
    pub weight: Tensor<'b>,
    /// Bias `[out]`.
    pub bias: Tensor<'b>,
    /// Stride, padding, dilation and groups.
    pub attrs: ConvAttrs,
}

impl<'b> Conv2d<'b> {
    /// A layer `name` with stride 1, the given zero padding and one group.
    #[track_caller]
    pub fn new(
        b: &'b Builder,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        padding: usize,
    ) -> Self {
        Self::with_attrs(
            b,
            name,
            in_channels,
            out_channels,
            kernel,
            ConvAttrs { padding: [padding; 2], ..ConvAttrs::default() },
        )
    }

    /// A layer with explicit stride, padding, dilation and groups.
    #[track_caller]
    pub fn with_attrs(
        b: &'b Builder,
        name: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        attrs: ConvAttrs,
    ) -> Self {
        let g = attrs.groups.max(1);
        let fan_in = in_channels / g * kernel * kernel;
        let weight = b.param(
            &format!("{name}.weight"),
            [out_channels, in_channels / g, kernel, kernel],
            kaiming_uniform(fan_in),
        );
        let bias = b.param(&format!("{name}.bias"), [out_channels], bias_uniform(fan_in));
        Conv2d { weight, bias, attrs }
    }

    /// Applies the layer to `x: [N, C, H, W]`.
    #[track_caller]
    pub fn forward(&self, x: Tensor<'b>) -> Tensor<'b> {
        let y = x.conv2d(self.weight, self.attrs);
        let o = self.bias.shape().first().copied().unwrap_or(0);
        y + self.bias.reshape(&[o, 1, 1])
    }
}
