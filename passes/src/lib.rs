//! `kiln-passes`: graph-to-graph transforms and the pipeline that runs them.
//!
//! A [`Pass`] maps a graph to a new graph. A [`Pipeline`] is parsed from a comma-separated
//! string (`"cse,fold,egraph,dce"`), runs its passes in order, verifies the graph after each
//! one (a failure is a compiler bug and names the pass), times each, and with `KILN_DUMP=DIR`
//! writes every pass's input and output. Passes: [`autodiff`] (called directly, as it needs a
//! loss), [`dce`], [`cse`], `fold` and `egraph` ([`egraph`]),
//! [`layout`] (channels-first or channels-last convolutions).

pub mod autodiff;
pub mod cost_model;
pub mod cse;
pub mod dce;
pub mod egraph;
pub mod fuse;
pub mod group_dag;
pub mod layout;
pub mod multi_output;
pub mod pipeline;
pub mod plan;
mod rebuild;

pub use pipeline::{DEFAULT_PIPELINE, GPU_PIPELINE, Pass, PassError, PassReport, Pipeline};
