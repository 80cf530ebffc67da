//! kiln's ONNX importer: an `.onnx` model (a protobuf `ModelProto`) becomes one kiln IR
//! function, built with the frontend's DSL so that every ONNX node is a composition of kiln's
//! primitive ops, and the model's initializers become parameters carrying their values.
//!
//! ```no_run
//! let bytes = std::fs::read("model.onnx").unwrap();
//! let model = kiln_onnx::import(&bytes, &kiln_onnx::Options::default()).unwrap();
//! println!("{}", model.graph); // the text IR; model.weights holds the parameters' values
//! ```
//!
//! What the importer does, in order (`docs/onnx.md` has the op table):
//! 1. decodes the protobuf (`proto`, generated from the vendored `onnx/proto/onnx.proto`);
//! 2. refuses, in one error, every node whose op, domain or opset it does not support
//!    (`support`);
//! 3. orders the nodes by their data, refusing a cycle or a value nothing defines (`order`);
//! 4. lowers node by node (`lower`), folding at import time every node whose inputs are all
//!    known (shapes, axes, pads, slice bounds that arrive as tensors), by running its lowering
//!    through kiln's reference interpreter (`fold`), so an op has one meaning even when folded.

mod error;
mod fold;
mod lower;
mod names;
mod narrow;
mod order;
pub mod proto;
mod support;
mod tensor;

use std::collections::HashMap;

use kiln_ir::{DType, Graph, Value};

pub use error::{ImportError, Unsupported};
pub use support::{CORE_OPS, MAX_OPSET, MIN_OPSET, MORE_OPS, supports};

/// How to import a model.
#[derive(Clone, Debug)]
pub struct Options {
    /// The extent every symbolic dimension of the graph's inputs is pinned to (a dynamic
    /// batch, until kiln has symbolic shapes). Default 1.
    pub batch: usize,
    /// Graph inputs whose values are known at import time, by their ONNX name: they become
    /// constants, so that a shape, axes or pads arriving as such an input can be folded.
    pub constants: HashMap<String, Value>,
}

impl Default for Options {
    fn default() -> Self {
        Options { batch: 1, constants: HashMap::new() }
    }
}

/// An imported model.
#[derive(Clone, Debug)]
pub struct Imported {
    /// The kiln function: the ONNX graph's inputs (minus initializers and bound constants) in
    /// order, its outputs in order, both under their ONNX names made into kiln names.
    pub graph: Graph,
    /// The value of every parameter of `graph`, by parameter name: the initializers, and
    /// constants that are not one number repeated.
    pub weights: HashMap<String, Value>,
    /// What the import decided that the user should know: symbolic dimensions pinned, names
    /// changed, the opset.
    pub notes: Vec<String>,
    /// The version of the default (`ai.onnx`) operator set the model imports.
    pub opset: i64,
}

/// Imports the `.onnx` bytes of a model.
pub fn import(bytes: &[u8], options: &Options) -> Result<Imported, ImportError> {
    use prost::Message;
    if bytes.is_empty() {
        return Err(ImportError::Decode("the file is empty".into()));
    }
    let model = proto::ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    lower::import_model(&model, options)
}

/// The names of a model's graph inputs that have no initializer, in order: what a caller
/// feeds (by position, as ONNX test data does).
pub fn data_inputs(bytes: &[u8]) -> Result<Vec<String>, ImportError> {
    use prost::Message;
    let model = proto::ModelProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    let graph = model.graph.ok_or_else(|| ImportError::Invalid("the model has no graph".into()))?;
    let inits: std::collections::HashSet<&str> = graph.initializer.iter().map(|t| t.name()).collect();
    Ok(graph.input.iter().map(|i| i.name().to_string()).filter(|n| !inits.contains(n.as_str())).collect())
}

/// Imports the model in the file at `path`.
pub fn import_file(path: &std::path::Path, options: &Options) -> Result<Imported, ImportError> {
    let bytes = std::fs::read(path).map_err(|e| ImportError::Io(format!("{}: {e}", path.display())))?;
    import(&bytes, options)
}

/// Decodes a serialized `TensorProto` (the `.pb` files of ONNX test data): its name and value,
/// a narrow integer type widened to the dtype that carries it ([`dtype_of`]). A dtype kiln
/// does not have is [`ImportError::Unsupported`].
pub fn read_tensor(bytes: &[u8]) -> Result<(String, Value), ImportError> {
    use prost::Message;
    let t = proto::TensorProto::decode(bytes).map_err(|e| ImportError::Decode(e.to_string()))?;
    match tensor::to_value(&t) {
        Ok(v) => Ok((t.name().to_string(), v)),
        Err(reason) if tensor::dtype_of(t.data_type()).is_none() => Err(ImportError::Unsupported(vec![Unsupported {
            node: t.name().to_string(),
            op: "tensor".into(),
            opset: 0,
            reason,
        }])),
        Err(e) => Err(ImportError::Invalid(e)),
    }
}

/// The kiln dtype of an ONNX `TensorProto.DataType`: kiln's own, or the wider dtype that
/// carries a narrow integer type (`int8`, `uint8`, `int16`, `uint16` as `i32`; `uint32` as
/// `i64`), or `None`.
pub fn dtype_of(onnx: i32) -> Option<DType> {
    tensor::dtype_of(onnx)
}
