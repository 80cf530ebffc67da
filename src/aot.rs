//! Compiling a model into a self-contained shared library with a C ABI (`kiln build`).
//!
//! [`build`] optimizes a graph with the default pipeline (as [`crate::compile`] does for the
//! JIT) and hands it to [`kiln_runtime::aot::build`], which writes `libNAME.so` (the fused
//! Cranelift kernels, the weights as read-only data, a generated C driver and the C runtime,
//! linked by the system C compiler) and `NAME.h`. [`build_model`] does the same for a zoo
//! model or a model file (`.kir`, or `.onnx` with its initializers) with the weights of a
//! checkpoint, of the file or of the seeded initialization.
//! The C interface is described in `docs/aot.md`.

use std::collections::HashMap;
use std::path::Path;

use kiln_ir::{Graph, Value};
pub use kiln_runtime::aot::{AotError, BuildOptions, KernelCompiler, Library, Target};

use crate::fit::checkpoint;

/// Errors from [`build`] and [`build_model`].
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The optimization pipeline failed.
    #[error(transparent)]
    Pass(#[from] kiln_passes::PassError),
    /// Compiling or linking the library failed.
    #[error(transparent)]
    Aot(#[from] AotError),
    /// The model or its weights could not be loaded.
    #[error("{0}")]
    Model(String),
}

/// Optimizes `graph` and compiles it into `options.dir/libNAME.so` and `NAME.h`, its
/// parameters embedded from `weights` (every parameter by name, of its type).
pub fn build(graph: &Graph, weights: &HashMap<String, Value>, options: &BuildOptions) -> Result<Library, BuildError> {
    build_with(graph, weights, options, kiln_passes::DEFAULT_PIPELINE)
}

/// [`build`] with another pass pipeline (any list `kiln opt --pipeline` takes).
pub fn build_with(
    graph: &Graph,
    weights: &HashMap<String, Value>,
    options: &BuildOptions,
    pipeline: &str,
) -> Result<Library, BuildError> {
    let (optimized, _) = kiln_passes::Pipeline::parse(pipeline)?.run(graph)?;
    Ok(kiln_runtime::aot::build(&optimized, weights, options)?)
}

/// Compiles the forward graph of `target` — a zoo model at `batch` examples per call, or the
/// first function of a `.kir` or `.onnx` file (symbolic dimensions pinned to `batch`) — with
/// the parameters of the checkpoint at `weights` (checked by name and type), or else those
/// the file came with, or else initialized from `seed`; optimized with `pipeline`
/// ([`kiln_passes::DEFAULT_PIPELINE`] unless measuring).
pub fn build_model(
    target: &str,
    weights: Option<&Path>,
    (batch, seed): (usize, u64),
    options: &BuildOptions,
    pipeline: &str,
) -> Result<Library, BuildError> {
    let (graph, own) = load_graph(target, batch)?;
    let params = match (weights, own) {
        (Some(path), _) => checkpoint::load(path)
            .and_then(|ck| ck.params_for(&graph, path))
            .map_err(|e| BuildError::Model(e.to_string()))?,
        (None, Some(own)) => own,
        (None, None) => kiln_ir::init::init_params(&graph, seed),
    };
    build_with(&graph, &params, options, pipeline)
}

/// The forward graph of a zoo model, or the first function of a model file (`.kir` or
/// `.onnx`) with the weights that came with it.
fn load_graph(target: &str, batch: usize) -> Result<(Graph, Option<HashMap<String, Value>>), BuildError> {
    if batch == 0 {
        return Err(BuildError::Model("--batch must be at least 1".into()));
    }
    if let Some(entry) = crate::zoo::entry(target) {
        let models = (entry.build)(batch, kiln_ir::DType::F32).map_err(|e| BuildError::Model(e.to_string()))?;
        if models.len() != 1 {
            return Err(BuildError::Model(format!(
                "{target} has {} graphs; build one of them from a .kir file (`kiln dump {target} > model.kir`)",
                models.len()
            )));
        }
        return models
            .into_iter()
            .next()
            .map(|m| (m.graph, None))
            .ok_or_else(|| BuildError::Model(format!("{target}: no graph")));
    }
    let path = Path::new(target);
    if path.extension().is_none_or(|x| x != "kir") && !crate::onnx::is_onnx(path) && !path.exists() {
        let names: Vec<&str> = crate::zoo::CATALOG.iter().map(|e| e.name).collect();
        return Err(BuildError::Model(format!(
            "`{target}` is neither a zoo model ({}) nor a .kir or .onnx file",
            names.join(", ")
        )));
    }
    let file = crate::model_file::read(path, batch).map_err(BuildError::Model)?;
    let graph = file.graphs.into_iter().next().ok_or_else(|| BuildError::Model(format!("{target}: no function")))?;
    Ok((graph, file.weights))
}
