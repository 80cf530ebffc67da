//! The importer's errors: every way an `.onnx` file can fail to become a kiln function.

use std::fmt;

use thiserror::Error;

/// One node the importer cannot translate, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsupported {
    /// The node's name (or `#index` when it has none).
    pub node: String,
    /// Its op type, with the domain when that is not the default one.
    pub op: String,
    /// The opset the model imports for the node's domain.
    pub opset: i64,
    /// What is missing: the op, a dtype, an attribute value.
    pub reason: String,
}

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node `{}`: {} (opset {}): {}", self.node, self.op, self.opset, self.reason)
    }
}

/// Why a model could not be imported.
#[derive(Clone, Debug, Error)]
pub enum ImportError {
    /// The file could not be read.
    #[error("{0}")]
    Io(String),
    /// The bytes are not a protobuf `ModelProto` (a truncated file, another format).
    #[error("not a readable ONNX model: {0}")]
    Decode(String),
    /// The model decodes but is not a usable ONNX graph (no graph, no opset, a bad tensor).
    #[error("invalid ONNX model: {0}")]
    Invalid(String),
    /// Nodes (or the graph's inputs) use what kiln does not support: all of them, at once.
    #[error("{} unsupported node(s):\n  {}", .0.len(), .0.iter().map(|u| u.to_string()).collect::<Vec<_>>().join("\n  "))]
    Unsupported(Vec<Unsupported>),
    /// A node reads a value that no node, input or initializer defines.
    #[error("node `{node}` ({op}) reads `{value}`, which no node, graph input or initializer defines")]
    Undefined {
        /// The reading node.
        node: String,
        /// Its op type.
        op: String,
        /// The missing value's name.
        value: String,
    },
    /// The nodes' data dependencies form a cycle.
    #[error("the graph has a cycle through the nodes {}", .0.join(", "))]
    Cycle(Vec<String>),
    /// An operand that must be known at import time (a shape, axes, pads) is computed at run
    /// time from a graph input. Binding the input (`Options::constants`) makes it known.
    #[error(
        "node `{node}` ({op}): its input `{input}` must be known at import time (it is a shape, axes or bounds), but it depends on graph inputs {}",
        .from.join(", ")
    )]
    NotConstant {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// The operand's name.
        input: String,
        /// The graph inputs it depends on (those to bind).
        from: Vec<String>,
    },
    /// A node's operands do not fit it (shapes, ranks, dtypes, attribute values).
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// What is wrong.
        message: String,
    },
}
