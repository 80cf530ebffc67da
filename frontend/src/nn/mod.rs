//! Neural-network layers. Each layer owns its parameter handles, created under a name prefix
//! (`fc1.weight`, `fc1.bias`), and has a `forward` that builds its computation.

mod attention;
mod conv;
mod dropout;
mod embedding;
mod linear;
mod lstm;
mod norm;
mod pool;

pub use attention::MultiHeadAttention;
pub use conv::Conv2d;
pub use dropout::Dropout;
pub use embedding::Embedding;
pub use linear::Linear;
pub use lstm::{Lstm, LstmOutput};
pub use norm::LayerNorm;
pub use pool::{AvgPool2d, MaxPool2d};
