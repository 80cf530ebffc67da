//! Checkpoints as safetensors files: named tensors (parameters, optimizer state, the training
//! history) and string metadata (model, optimizer, epoch, step, seed), loaded back bit-exactly.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use kiln_ir::{Graph, Value};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use thiserror::Error;

/// Errors from reading or writing checkpoints.
#[derive(Debug, Error)]
pub enum CheckpointError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    File {
        /// The checkpoint file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The file has no tensor a graph needs.
    #[error("{path}: no tensor `{name}` (the model needs it as {ty}; the file has: {has})")]
    Missing {
        /// The checkpoint file.
        path: String,
        /// The missing tensor.
        name: String,
        /// The type the model needs.
        ty: String,
        /// The tensors the file has.
        has: String,
    },
    /// A tensor has another type than the graph's parameter of the same name.
    #[error("{path}: tensor `{name}` is {found}, the model needs {expected}")]
    WrongType {
        /// The checkpoint file.
        path: String,
        /// The tensor.
        name: String,
        /// Its type in the file.
        found: String,
        /// The type the model needs.
        expected: String,
    },
}

/// A checkpoint's content.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Checkpoint {
    /// Tensors by name.
    pub tensors: BTreeMap<String, Value>,
    /// String metadata by key.
    pub metadata: BTreeMap<String, String>,
}

impl Checkpoint {
    /// The parameters of `graph` from this checkpoint, each checked against the parameter's
    /// type; `path` names the file in errors.
    pub fn params_for(&self, graph: &Graph, path: &Path) -> Result<HashMap<String, Value>, CheckpointError> {
        let mut out = HashMap::new();
        for (id, node) in graph.params() {
            let Some(name) = node.op.leaf_name() else { continue };
            let ty = graph.ty(id);
            let v = self.tensors.get(name).ok_or_else(|| CheckpointError::Missing {
                path: path.display().to_string(),
                name: name.to_string(),
                ty: ty.to_string(),
                has: self.tensors.keys().cloned().collect::<Vec<_>>().join(", "),
            })?;
            if &v.ty() != ty {
                return Err(CheckpointError::WrongType {
                    path: path.display().to_string(),
                    name: name.to_string(),
                    found: v.ty().to_string(),
                    expected: ty.to_string(),
                });
            }
            out.insert(name.to_string(), v.clone());
        }
        Ok(out)
    }
}

/// Writes `tensors` and `metadata` to `path` as safetensors (atomically: a temporary file
/// renamed over the target, so an interrupted save never leaves half a checkpoint).
pub fn save<'a>(
    path: &Path,
    tensors: impl IntoIterator<Item = (&'a str, &'a Value)>,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let name = path.display().to_string();
    let buffer = to_bytes(tensors, metadata, &name)?;
    kiln_runtime::files::write(path, &buffer).map_err(|e| CheckpointError::File { path: name, message: e.to_string() })
}

/// The bytes [`save`] writes (`name` stands for the file in errors); [`from_bytes`] reads them
/// back.
pub fn to_bytes<'a>(
    tensors: impl IntoIterator<Item = (&'a str, &'a Value)>,
    metadata: &BTreeMap<String, String>,
    name: &str,
) -> Result<Vec<u8>, CheckpointError> {
    let err = |message: String| CheckpointError::File { path: name.to_string(), message };
    let bytes: Vec<(String, Encoded)> = tensors.into_iter().map(|(n, v)| (n.to_string(), encode(v))).collect();
    let views = bytes
        .iter()
        .map(|(n, (dt, shape, data))| TensorView::new(*dt, shape.clone(), data).map(|v| (n.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    let meta: HashMap<String, String> = metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let no_tensors = views.is_empty();
    let buffer = safetensors::serialize(views, (!meta.is_empty()).then_some(meta)).map_err(|e| err(e.to_string()))?;
    // The safetensors writer made an unreadable header for empty metadata without tensors
    // (found by fuzzing: `{},"__metadata__":{}}`; empty metadata is now passed as none): never
    // give bytes whose header does not read back.
    if let Err(e) = SafeTensors::read_metadata(&buffer) {
        let why = if no_tensors { "a checkpoint without tensors" } else { "these tensors" };
        return Err(err(format!("safetensors cannot encode {why} ({e}); nothing was written")));
    }
    Ok(buffer)
}

/// Reads a checkpoint written by [`save`] (or any safetensors file of f32/f64/i32/i64/bool
/// tensors).
pub fn load(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let bytes = std::fs::read(path)
        .map_err(|e| CheckpointError::File { path: path.display().to_string(), message: e.to_string() })?;
    from_bytes(&bytes, &path.display().to_string())
}

/// [`load`] of a checkpoint's bytes in memory (`name` stands for the file in errors).
pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Checkpoint, CheckpointError> {
    let err = |message: String| CheckpointError::File { path: name.to_string(), message };
    let st = SafeTensors::deserialize(bytes).map_err(|e| err(format!("not a safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| err(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let v =
            decode(&view).ok_or_else(|| err(format!("tensor `{name}` has unsupported dtype {:?}", view.dtype())))?;
        tensors.insert(name, v);
    }
    let metadata = meta.metadata().clone().unwrap_or_default().into_iter().collect();
    Ok(Checkpoint { tensors, metadata })
}

/// A tensor as safetensors stores it: dtype, shape, little-endian bytes.
type Encoded = (Dtype, Vec<usize>, Vec<u8>);

/// The safetensors dtype, shape and little-endian bytes of a value.
fn encode(v: &Value) -> Encoded {
    fn le<T: Copy, const N: usize>(a: &ArrayD<T>, f: fn(T) -> [u8; N]) -> Vec<u8> {
        a.iter().flat_map(|x| f(*x)).collect()
    }
    let shape = v.shape().to_vec();
    match v {
        Value::F32(a) => (Dtype::F32, shape, le(a, f32::to_le_bytes)),
        Value::F64(a) => (Dtype::F64, shape, le(a, f64::to_le_bytes)),
        Value::I32(a) => (Dtype::I32, shape, le(a, i32::to_le_bytes)),
        Value::I64(a) => (Dtype::I64, shape, le(a, i64::to_le_bytes)),
        Value::Bool(a) => (Dtype::BOOL, shape, a.iter().map(|&b| u8::from(b)).collect()),
    }
}

/// The value of a tensor view, if its dtype is one of the IR's.
fn decode(t: &TensorView<'_>) -> Option<Value> {
    fn from<T, const N: usize>(t: &TensorView<'_>, f: fn([u8; N]) -> T) -> Option<ArrayD<T>> {
        let data: Vec<T> = t.data().chunks_exact(N).map(|c| f(c.try_into().expect("chunks of N bytes"))).collect();
        ArrayD::from_shape_vec(IxDyn(t.shape()), data).ok()
    }
    Some(match t.dtype() {
        Dtype::F32 => Value::F32(from(t, f32::from_le_bytes)?),
        Dtype::F64 => Value::F64(from(t, f64::from_le_bytes)?),
        Dtype::I32 => Value::I32(from(t, i32::from_le_bytes)?),
        Dtype::I64 => Value::I64(from(t, i64::from_le_bytes)?),
        Dtype::BOOL => Value::Bool(from(t, |[b]: [u8; 1]| b != 0)?),
        _ => return None,
    })
}
