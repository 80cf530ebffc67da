//! Embedding table lookup.

use kiln_ir::{Init, Literal};

use crate::builder::{Builder, Tensor};

/// Rows of a `[vocab, dim]` table picked by integer ids.
#[derive(Clone, Copy, Debug)]
pub struct Embedding<'b> {
    /// The table `[vocab, dim]`, initialized from a standard normal.
    pub weight: Tensor<'b>,
}

impl<'b> Embedding<'b> {
    /// A table `name.weight` of `vocab` rows of `dim` values.
    #[track_caller]
    pub fn new(b: &'b Builder, name: &str, vocab: usize, dim: usize) -> Self {
        let init = Init::Normal { mean: Literal(0.0), std: Literal(1.0) };
        Embedding { weight: b.param(&format!("{name}.weight"), [vocab, dim], init) }
    }

    /// Looks up `ids: [...]` (i32 or i64), giving `[..., dim]`.
    #[track_caller]
    pub fn forward(&self, ids: Tensor<'b>) -> Tensor<'b> {
        self.weight.gather(ids, 0)
    }
}
