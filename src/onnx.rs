//! ONNX models in kiln: the importer ([`kiln_onnx`], re-exported here), an import saved as a
//! `.kir` file with its weights in a safetensors file beside it (`kiln import`), and an
//! imported model given a loss, so that it can be differentiated and fine-tuned like a zoo
//! model. `docs/onnx.md` describes the importer and its conformance.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use kiln_ir::{DType, Graph, TensorType, Value};
pub use kiln_onnx::*;

use crate::fit::checkpoint;
use crate::zoo::{Loss, Model};

/// True if `path` names an `.onnx` file (by its extension).
pub fn is_onnx(path: &Path) -> bool {
    path.extension().is_some_and(|x| x.eq_ignore_ascii_case("onnx"))
}

/// Where [`save`] puts the weights of a `.kir` file: beside it, `NAME.safetensors`.
pub fn weights_path(kir: &Path) -> PathBuf {
    kir.with_extension("safetensors")
}

/// Writes an import as text IR to `kir` and its weights to [`weights_path`]`(kir)`; returns
/// the weights' path.
pub fn save(model: &Imported, kir: &Path) -> Result<PathBuf, String> {
    let text = model.graph.to_string();
    kiln_runtime::files::write(kir, text.as_bytes()).map_err(|e| format!("{}: {e}", kir.display()))?;
    let weights = weights_path(kir);
    let mut metadata = BTreeMap::new();
    metadata.insert("source".to_string(), "onnx".to_string());
    metadata.insert("opset".to_string(), model.opset.to_string());
    let tensors: BTreeMap<&str, &Value> = model.weights.iter().map(|(k, v)| (k.as_str(), v)).collect();
    checkpoint::save(&weights, tensors, &metadata).map_err(|e| e.to_string())?;
    Ok(weights)
}

/// Reads the weights [`save`] wrote for `kir`, if there is such a file (one [`save`] wrote,
/// not a training checkpoint that happens to share the name): the parameters of `graph`,
/// checked by name and type.
pub fn load_weights(kir: &Path, graph: &Graph) -> Result<Option<HashMap<String, Value>>, String> {
    let path = weights_path(kir);
    if !path.exists() {
        return Ok(None);
    }
    let ck = checkpoint::load(&path).map_err(|e| e.to_string())?;
    if ck.metadata.get("source").map(String::as_str) != Some("onnx") {
        return Ok(None);
    }
    ck.params_for(graph, &path).map(Some).map_err(|e| e.to_string())
}

/// An imported graph with a loss on its first output, as a zoo [`Model`]: `CrossEntropy`
/// takes integer class labels (`i64`, the output's shape without its last axis), the others
/// targets of the output's type.
pub fn with_loss(graph: Graph, loss: Loss) -> Result<Model, String> {
    let first = graph.outputs().first().ok_or_else(|| format!("@{} has no output to take a loss of", graph.name()))?;
    let ty = graph.ty(first.value).clone();
    let labels = match loss {
        Loss::CrossEntropy => {
            if ty.rank() == 0 {
                return Err(format!("cross entropy needs logits with a class axis; the first output is {ty}"));
            }
            TensorType::new(DType::I64, ty.dims()[..ty.rank() - 1].to_vec())
        }
        Loss::Mse | Loss::BinaryCrossEntropy | Loss::Mae => ty,
    };
    Ok(Model { graph, loss, labels })
}
