//! `kiln-frontend`: the Rust DSL that builds kiln IR.
//!
//! [`Builder`] owns a graph; [`Tensor`] is a `Copy` handle into it with operator overloading
//! and numpy-style broadcasting (lowered to explicit `broadcast` nodes). [`nn`] has layers,
//! [`loss`] the losses, [`init`] the initializers. Shape errors never panic: they are recorded
//! with the op, the shapes and the caller's line, and [`Builder::finish`] returns the first.
//!
//! ```
//! use kiln_frontend::{Builder, nn::Linear};
//! use kiln_ir::DType;
//!
//! let b = Builder::new("mlp");
//! let x = b.input("x", DType::F32, [8, 4]);
//! let h = Linear::new(&b, "fc1", 4, 16).forward(x).relu();
//! let y = Linear::new(&b, "fc2", 16, 3).forward(h);
//! b.output("logits", y);
//! let graph = b.finish().unwrap();
//! assert_eq!(graph.outputs().len(), 1);
//! ```

mod activation;
mod builder;
pub mod init;
pub mod loss;
pub mod nn;
mod ops;
pub mod optim;
mod tensor;

pub use builder::{BuildError, Builder, Mode, Tensor};
pub use tensor::broadcast_shapes;
