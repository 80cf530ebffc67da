//! `kiln`: a deep-learning compiler and graph optimizer.
//!
//! This facade re-exports the crates users need — the IR ([`ir`]), the DSL ([`frontend`]),
//! the passes ([`passes`]), code generation ([`codegen`]) and the runtime ([`runtime`]) — plus
//! the model [`zoo`]. `use kiln::prelude::*` brings the everyday names into scope.
//!
//! ```
//! use kiln::prelude::*;
//!
//! let b = Builder::new("affine");
//! let x = b.input("x", DType::F32, [2, 3]);
//! let y = nn::Linear::new(&b, "fc", 3, 4).forward(x).relu();
//! b.output("y", y);
//! let graph = b.finish().unwrap();
//! println!("{graph}");
//! ```

pub use kiln_codegen as codegen;
pub use kiln_frontend as frontend;
pub use kiln_ir as ir;
pub use kiln_passes as passes;
pub use kiln_runtime as runtime;

pub mod train;
pub mod zoo;

/// The everyday names: builder, tensors, layers, losses, dtypes and graphs.
pub mod prelude {
    pub use kiln_frontend::{BuildError, Builder, Mode, Tensor, init, loss, nn};
    pub use kiln_ir::{DType, Graph, Init, TensorType, Value};
}
