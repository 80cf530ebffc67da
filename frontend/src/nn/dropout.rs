//! Dropout: identity in [`Mode::Eval`], a random mask drawn from `rng_seed` in [`Mode::Train`].

use kiln_ir::Distribution;

use crate::builder::{Mode, Tensor};

/// Zeroes each element with probability `p` during training and scales the rest by `1/(1-p)`.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    /// Drop probability in `[0, 1)`.
    pub p: f64,
}

impl Dropout {
    /// Dropout with drop probability `p`.
    pub fn new(p: f64) -> Self {
        Dropout { p }
    }

    /// Applies dropout to `x` according to the builder's mode.
    #[track_caller]
    pub fn forward<'b>(&self, x: Tensor<'b>) -> Tensor<'b> {
        if !(0.0..1.0).contains(&self.p) {
            x.b.fail("Dropout", format!("p must be in [0, 1), got {}", self.p));
            return x.b.handle(None);
        }
        if x.b.mode() == Mode::Eval || self.p == 0.0 || x.is_poisoned() {
            return x;
        }
        let u = x.b.rng(Distribution::Uniform, x.dtype(), x.shape());
        let dropped = u.lt(u.full_like(self.p));
        dropped.select(x.full_like(0.0), x * (1.0 / (1.0 - self.p)))
    }
}
