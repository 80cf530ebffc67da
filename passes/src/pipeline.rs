//! The pass trait and the pipeline runner: parse a pass list, run, verify, time.

use std::time::{Duration, Instant};

use kiln_ir::{Graph, GraphError, VerifyErrors};
use thiserror::Error;

/// A graph-to-graph transform.
pub trait Pass {
    /// The name used in pipeline strings and reports.
    fn name(&self) -> &'static str;
    /// Produces the transformed graph and a report (empty if there is nothing to say).
    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError>;
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
    /// Arena nodes before.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
    /// What the pass itself reported (the e-graph's stages and stop reasons, say).
    pub detail: String,
}

impl std::fmt::Display for PassReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "; pass {}: {} -> {} nodes, {:.2} ms",
            self.pass,
            self.nodes_before,
            self.nodes_after,
            self.elapsed.as_secs_f64() * 1e3
        )?;
        if !self.detail.is_empty() {
            write!(f, "\n{}", self.detail)?;
        }
        Ok(())
    }
}

/// An ordered list of passes.
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

/// A pass a pipeline string can name: the registry entry [`Pipeline::parse`] builds it from.
pub struct PassInfo {
    /// The name in a pipeline string (and the pass's [`Pass::name`]).
    pub name: &'static str,
    /// What the pass does, in one line (for `--help` and docs).
    pub summary: &'static str,
    /// A fresh instance with default settings.
    pub make: fn() -> Box<dyn Pass>,
}

/// Every pass a pipeline string can name: the one list `Pipeline::parse`, error messages and
/// the CLI's help are made from.
pub const PASSES: &[PassInfo] = &[
    PassInfo { name: "dce", summary: "removes nodes no output needs", make: || Box::new(crate::dce::Dce) },
    PassInfo { name: "cse", summary: "merges identical nodes", make: || Box::new(crate::cse::Cse) },
    PassInfo {
        name: "fold",
        summary: "folds constants (the e-graph's analysis, no rules)",
        make: || Box::new(crate::egraph::Fold::default()),
    },
    PassInfo {
        name: "egraph",
        summary: "rewrites with the staged e-graph rules, then extracts by cost",
        make: || Box::new(crate::egraph::Egraph::default()),
    },
    PassInfo {
        name: "layout",
        summary: "runs convolutions channels-last where the cost model prices the graph cheaper",
        make: || Box::new(crate::layout::Layout::default()),
    },
    PassInfo {
        name: "nhwc",
        summary: "runs every convolution channels-last (the layout pass, forced)",
        make: || Box::new(crate::layout::Layout { forced: Some(kiln_ir::ConvLayout::Nhwc) }),
    },
];

/// The name of every pass a pipeline string can name, in [`PASSES`] order.
pub fn known_passes() -> Vec<&'static str> {
    PASSES.iter().map(|p| p.name).collect()
}

/// One line per pass (`name: summary`), for help texts.
pub fn pass_help() -> String {
    PASSES.iter().map(|p| format!("{}: {}", p.name, p.summary)).collect::<Vec<_>>().join("; ")
}

/// The default optimization pipeline.
pub const DEFAULT_PIPELINE: &str = "cse,fold,egraph,layout,dce";

/// The GPU's pipeline: the default without `layout`, which prices the host's kernels (the
/// CUDA convolutions are channels-first; a channels-last graph still runs there, converted).
pub const GPU_PIPELINE: &str = "cse,fold,egraph,dce";

impl Pipeline {
    /// Parses `"dce,..."`; blank entries are ignored.
    pub fn parse(spec: &str) -> Result<Self, PassError> {
        let mut passes: Vec<Box<dyn Pass>> = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match PASSES.iter().find(|p| p.name == name) {
                Some(p) => passes.push((p.make)()),
                None => return Err(PassError::UnknownPass { name: name.into(), known: known_passes().join(", ") }),
            }
        }
        Ok(Pipeline { passes })
    }

    /// The pass names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs every pass, verifying after each, and reports what each did. With the environment
    /// variable `KILN_DUMP=DIR`, each pass's input and output text and report are written to
    /// `DIR/<func>.<NN>.<pass>.{before,after}.kir`.
    pub fn run(&self, graph: &Graph) -> Result<(Graph, Vec<PassReport>), PassError> {
        let dump = std::env::var_os("KILN_DUMP").map(std::path::PathBuf::from);
        let mut g = graph.clone();
        let mut reports = Vec::with_capacity(self.passes.len());
        for (i, p) in self.passes.iter().enumerate() {
            let start = Instant::now();
            let before = g.len();
            let (next, detail) = p.run(&g).map_err(|source| PassError::Failed { pass: p.name(), source })?;
            kiln_ir::verify(&next).map_err(|source| PassError::Invalid { pass: p.name(), source })?;
            let after = next.len();
            let report = PassReport {
                pass: p.name(),
                elapsed: start.elapsed(),
                nodes_before: before,
                nodes_after: after,
                detail,
            };
            if let Some(dir) = &dump {
                write_dump(dir, &g, &next, i, &report);
            }
            reports.push(report);
            g = next;
        }
        Ok((g, reports))
    }
}

/// Writes one pass's before/after text; a dump that cannot be written is reported on stderr
/// and does not stop compilation.
fn write_dump(dir: &std::path::Path, before: &Graph, after: &Graph, index: usize, report: &PassReport) {
    let stem = format!("{}.{index:02}.{}", before.name(), report.pass);
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join(format!("{stem}.before.kir")), before.to_string())?;
        std::fs::write(dir.join(format!("{stem}.after.kir")), format!("{after}{report}\n"))
    };
    if let Err(e) = write() {
        eprintln!("warning: KILN_DUMP: cannot write {}: {e}", dir.join(stem).display());
    }
}
