//! Compiling a model into a self-contained shared library with a C ABI (`kiln build`).
//!
//! [`build`] optimizes a graph with the default pipeline (as [`crate::compile`] does for the
//! JIT) and hands it to [`kiln_runtime::aot::build`], which writes `libNAME.so` (the fused
//! Cranelift kernels, the weights as read-only data, a generated C driver and the C runtime,
//! linked by the system C compiler) and `NAME.h`. [`build_model`] does the same for a zoo
//! model or a `.kir` file with the weights of a checkpoint or of the seeded initialization.
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
/// first function of a `.kir` file — with the parameters of the checkpoint at `weights`
/// (checked by name and type), or else initialized from `seed`; optimized with `pipeline`
/// ([`kiln_passes::DEFAULT_PIPELINE`] unless measuring).
pub fn build_model(
    target: &str,
    weights: Option<&Path>,
    (batch, seed): (usize, u64),
    options: &BuildOptions,
    pipeline: &str,
) -> Result<Library, BuildError> {
    let graph = load_graph(target, batch)?;
    let params = match weights {
        Some(path) => checkpoint::load(path)
            .and_then(|ck| ck.params_for(&graph, path))
            .map_err(|e| BuildError::Model(e.to_string()))?,
        None => kiln_ir::init::init_params(&graph, seed),
    };
    build_with(&graph, &params, options, pipeline)
}

/// The forward graph of a zoo model, or the first function of a `.kir` file.
fn load_graph(target: &str, batch: usize) -> Result<Graph, BuildError> {
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
            .map(|m| m.graph)
            .ok_or_else(|| BuildError::Model(format!("{target}: no graph")));
    }
    let path = Path::new(target);
    if path.extension().is_none_or(|x| x != "kir") && !path.exists() {
        let names: Vec<&str> = crate::zoo::CATALOG.iter().map(|e| e.name).collect();
        return Err(BuildError::Model(format!(
            "`{target}` is neither a zoo model ({}) nor a .kir file",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| BuildError::Model(format!("{target}: {e}")))?;
    let graphs = kiln_ir::parse_module(&text).map_err(|e| BuildError::Model(format!("{target}: {e}")))?;
    let graph = graphs.into_iter().next().ok_or_else(|| BuildError::Model(format!("{target}: no function")))?;
    kiln_ir::verify(&graph).map_err(|e| BuildError::Model(format!("{target}: {e}")))?;
    Ok(graph)
}
