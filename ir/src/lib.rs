//! `kiln-ir`: the typed tensor IR at the bottom of kiln.
//!
//! It owns the element types ([`DType`]), shapes ([`Shape`], [`TensorType`]), the closed
//! primitive op set ([`Op`], specified in `docs/ops.md`), their type rules ([`types`]), the
//! graph arena with interning ([`Graph`]), the [`mod@verify`]er, the text form (`Display` and
//! [`parse`]), Graphviz output ([`dot`]) and the reference interpreter ([`interp`]) that gives
//! every op its meaning. It knows nothing about passes, code generation or IO.
//!
//! ```
//! use kiln_ir::{DType, Graph, Op, BinaryOp, TensorType};
//!
//! let mut g = Graph::new("twice");
//! let x = g.input("x", TensorType::new(DType::F32, [3])).unwrap();
//! let y = g.add(Op::Binary(BinaryOp::Add), &[x, x]).unwrap();
//! g.add_output("y", y).unwrap();
//! let text = g.to_string();
//! assert_eq!(kiln_ir::parse::parse_graph(&text).unwrap().to_string(), text);
//! ```

pub mod dot;
pub mod dtype;
pub mod graph;
pub mod init;
pub mod interp;
pub mod op;
pub mod parse;
pub mod print;
pub mod rng;
pub mod shape;
pub mod types;
pub mod verify;

pub use dtype::DType;
pub use graph::{Graph, GraphError, Node, NodeId, Output};
pub use interp::{InterpError, Value};
pub use op::{
    BinaryOp, CmpOp, ConvAttrs, ConvKind, ConvLayout, Distribution, Init, Literal, Movement, Op, OpKind, ReduceOp,
    UnaryOp,
};
pub use parse::{ParseError, parse_graph, parse_module};
pub use shape::{Shape, TensorType};
pub use types::TypeError;
pub use verify::{VerifyErrors, verify};
