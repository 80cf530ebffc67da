//! The model files every command takes: `.kir` text IR (with the weights `kiln import` wrote
//! beside it, if any) or an `.onnx` model, imported on the way in.

use std::collections::HashMap;
use std::path::Path;

use kiln_ir::{Graph, Value};

/// A model read from a file.
#[derive(Clone, Debug)]
pub struct ModelFile {
    /// Its functions (an `.onnx` model has one).
    pub graphs: Vec<Graph>,
    /// Parameter values that came with it: an `.onnx` model's initializers, or the
    /// safetensors file beside a `.kir` file. `None` for a `.kir` file alone, whose parameters
    /// are initialized from a seed.
    pub weights: Option<HashMap<String, Value>>,
    /// What the import decided (symbolic dimensions pinned, names changed), for the user.
    pub notes: Vec<String>,
}

/// Reads `path`: an `.onnx` model is imported with its symbolic dimensions pinned to `batch`;
/// anything else is parsed and verified as `.kir` text.
pub fn read(path: &Path, batch: usize) -> Result<ModelFile, String> {
    if crate::onnx::is_onnx(path) {
        let options = crate::onnx::Options { batch, ..Default::default() };
        let m = crate::onnx::import_file(path, &options).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(ModelFile { graphs: vec![m.graph], weights: Some(m.weights), notes: m.notes });
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let graphs = kiln_ir::parse_module(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    for g in &graphs {
        kiln_ir::verify(g).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let weights = match graphs.first() {
        Some(g) => crate::onnx::load_weights(path, g)?,
        None => None,
    };
    Ok(ModelFile { graphs, weights, notes: Vec::new() })
}
