//! Pooling layers, composed from primitives: a reshape and a reduction when the windows tile
//! the input, otherwise one strided slice per window offset combined elementwise.

use crate::builder::Tensor;

/// The shared window walk of max and average pooling.
#[derive(Clone, Copy, Debug)]
struct Window {
    kernel: usize,
    stride: usize,
    padding: usize,
}

impl Window {
    /// Pools `x` (padded with `pad_value`): when windows tile the input (`kernel == stride`),
    /// `reduce` one reshaped view over axes 3 and 5; otherwise fold one strided slice per window
    /// offset with `combine`. `None` if `x` is poisoned or the window does not fit (recorded).
    #[track_caller]
    fn apply<'b>(
        &self,
        op: &str,
        x: Tensor<'b>,
        pad_value: f64,
        reduce: impl Fn(Tensor<'b>) -> Tensor<'b>,
        combine: impl Fn(Tensor<'b>, Tensor<'b>) -> Tensor<'b>,
    ) -> Option<Tensor<'b>> {
        let s = x.shape();
        if x.is_poisoned() {
            return None;
        }
        if s.len() != 4 || self.kernel == 0 || self.stride == 0 {
            x.b.fail(op, format!("expects [N,C,H,W] and a positive kernel and stride, got {}", x.ty()));
            return None;
        }
        let (k, st, p) = (self.kernel, self.stride, self.padding);
        let (h, w) = (s[2] + 2 * p, s[3] + 2 * p);
        if h < k || w < k {
            x.b.fail(op, format!("kernel {k} does not fit {} with padding {p}", x.ty()));
            return None;
        }
        let (oh, ow) = ((h - k) / st + 1, (w - k) / st + 1);
        let xp = x.pad(&[0, 0, p, p], &[0, 0, p, p], pad_value);
        if k == st {
            // Windows tile the input (after dropping a remainder that no window covers).
            let tiled = if oh * k == h && ow * k == w {
                xp
            } else {
                xp.slice_all(&[0, 0, 0, 0], &[s[0], s[1], oh * k, ow * k], &[1, 1, 1, 1])
            };
            return Some(reduce(tiled.reshape(&[s[0], s[1], oh, k, ow, k])));
        }
        let mut acc: Option<Tensor<'b>> = None;
        for i in 0..k {
            for j in 0..k {
                let win = xp.slice_all(
                    &[0, 0, i, j],
                    &[s[0], s[1], i + st * (oh - 1) + 1, j + st * (ow - 1) + 1],
                    &[1, 1, st, st],
                );
                acc = Some(match acc {
                    None => win,
                    Some(a) => combine(a, win),
                });
            }
        }
        acc
    }
}

/// Max pooling over `k × k` windows.
#[derive(Clone, Copy, Debug)]
pub struct MaxPool2d {
    window: Window,
}

impl MaxPool2d {
    /// Windows of `kernel` with `stride`, padded by `padding` with −∞.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        MaxPool2d { window: Window { kernel, stride, padding } }
    }

    /// Applies the pooling to `x: [N, C, H, W]`.
    #[track_caller]
    pub fn forward<'b>(&self, x: Tensor<'b>) -> Tensor<'b> {
        self.window
            .apply("MaxPool2d", x, f64::NEG_INFINITY, |t| t.max(&[3, 5]), |a, b| a.maximum(b))
            .unwrap_or_else(|| x.b.handle(None))
    }
}

/// Average pooling over `k × k` windows (padding counts as zeros in the average).
#[derive(Clone, Copy, Debug)]
pub struct AvgPool2d {
    window: Window,
}

impl AvgPool2d {
    /// Windows of `kernel` with `stride`, zero padded by `padding`.
    pub fn new(kernel: usize, stride: usize, padding: usize) -> Self {
        AvgPool2d { window: Window { kernel, stride, padding } }
    }

    /// Applies the pooling to `x: [N, C, H, W]`.
    #[track_caller]
    pub fn forward<'b>(&self, x: Tensor<'b>) -> Tensor<'b> {
        let k2 = (self.window.kernel * self.window.kernel) as f64;
        match self.window.apply("AvgPool2d", x, 0.0, |t| t.sum(&[3, 5]), |a, b| a + b) {
            Some(s) => s * (1.0 / k2),
            None => x.b.handle(None),
        }
    }
}
