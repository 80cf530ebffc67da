//! `kiln-passes`: graph-to-graph transforms and the pipeline that runs them.
//!
//! A [`Pass`] maps a graph to a new graph. A [`Pipeline`] is parsed from a comma-separated
//! string (`"dce"`), runs its passes in order, verifies the graph after each one (a failure is
//! a compiler bug and names the pass), and records how long each took. Autodiff, the e-graph
//! optimizer, fusion and the memory plan join here as passes (ARCHITECTURE.md §1).

pub mod autodiff;
pub mod dce;
pub mod pipeline;

pub use pipeline::{Pass, PassError, PassReport, Pipeline};
