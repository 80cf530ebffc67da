//! The pass trait and the pipeline runner: parse a pass list, run, verify, time.

use std::time::{Duration, Instant};

use kiln_ir::{Graph, GraphError, VerifyErrors};
use thiserror::Error;

/// A graph-to-graph transform.
pub trait Pass {
    /// The name used in pipeline strings and reports.
    fn name(&self) -> &'static str;
    /// Produces the transformed graph.
    fn run(&self, graph: &Graph) -> Result<Graph, GraphError>;
}

/// Errors from building or running a pipeline.
#[derive(Debug, Error)]
pub enum PassError {
    /// A pipeline string names a pass that does not exist.
    #[error("unknown pass `{name}` (known passes: {known})")]
    UnknownPass {
        /// The name given.
        name: String,
        /// The passes that exist.
        known: String,
    },
    /// A pass failed to build its graph.
    #[error("pass `{pass}` failed: {source}")]
    Failed {
        /// The pass.
        pass: &'static str,
        /// Why.
        source: GraphError,
    },
    /// A pass produced a graph that breaks an IR invariant: a compiler bug.
    #[error("pass `{pass}` produced an invalid graph (compiler bug): {source}")]
    Invalid {
        /// The pass.
        pass: &'static str,
        /// What the verifier found.
        source: VerifyErrors,
    },
}

/// What one pass did: its name, time, and node counts before and after.
#[derive(Clone, Debug)]
pub struct PassReport {
    /// The pass.
    pub pass: &'static str,
    /// Wall time of the pass and its verification.
    pub elapsed: Duration,
    /// Nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
}

/// An ordered list of passes.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

/// Every pass a pipeline string can name.
pub const KNOWN_PASSES: &[&str] = &["dce"];

impl Pipeline {
    /// Parses `"dce,..."`; blank entries are ignored.
    pub fn parse(spec: &str) -> Result<Self, PassError> {
        let mut passes: Vec<Box<dyn Pass>> = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            passes.push(match name {
                "dce" => Box::new(crate::dce::Dce),
                _ => {
                    return Err(PassError::UnknownPass { name: name.into(), known: KNOWN_PASSES.join(", ") });
                }
            });
        }
        Ok(Pipeline { passes })
    }

    /// The pass names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass, verifying after each, and reports what each did.
    pub fn run(&self, graph: &Graph) -> Result<(Graph, Vec<PassReport>), PassError> {
        let mut g = graph.clone();
        let mut reports = Vec::with_capacity(self.passes.len());
        for p in &self.passes {
            let start = Instant::now();
            let before = g.len();
            let next = p.run(&g).map_err(|source| PassError::Failed { pass: p.name(), source })?;
            kiln_ir::verify(&next).map_err(|source| PassError::Invalid { pass: p.name(), source })?;
            reports.push(PassReport {
                pass: p.name(),
                elapsed: start.elapsed(),
                nodes_before: before,
                nodes_after: next.len(),
            });
            g = next;
        }
        Ok((g, reports))
    }
}
