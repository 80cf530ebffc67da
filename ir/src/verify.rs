//! The verifier: checks every invariant of a [`Graph`] and reports all violations at once.
//!
//! Invariants (see also [`crate::graph`]):
//! 1. operands precede their users in the arena (topological order, no cycles);
//! 2. every node's type equals what its op's type rule gives for its operands;
//! 3. leaves have valid, unique names; outputs have valid, unique names and exist;
//! 4. no two nodes are identical (the arena is interned).
//!
//! A graph built through [`Graph`]'s methods satisfies these by construction; passes that
//! rewrite graphs are checked against them after every run, and a failure is a compiler bug.

use std::collections::{HashMap, HashSet};
use std::fmt;

use thiserror::Error;

use crate::graph::{Graph, Node, NodeId};
use crate::print::value_name;
use crate::shape::TensorType;
use crate::types::{infer, is_identifier};

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyError {
    /// The node at fault, if the error is about one node.
    pub node: Option<NodeId>,
    /// What is wrong.
    pub message: String,
}

/// Every invariant a graph breaks.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub struct VerifyErrors {
    /// The function checked.
    pub func: String,
    /// All errors found, in arena order.
    pub errors: Vec<VerifyError>,
}

impl fmt::Display for VerifyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}: {} verifier error(s)", self.func, self.errors.len())?;
        for e in &self.errors {
            match e.node {
                Some(n) => write!(f, "\n  {n}: {}", e.message)?,
                None => write!(f, "\n  {}", e.message)?,
            }
        }
        Ok(())
    }
}

/// Checks every invariant of `graph`, collecting all violations.
pub fn verify(graph: &Graph) -> Result<(), VerifyErrors> {
    let mut errors = Vec::new();
    let mut seen: HashSet<&Node> = HashSet::new();
    let mut leaf_names: HashMap<&str, NodeId> = HashMap::new();
    for (id, node) in graph.nodes() {
        let mut err = |message: String| errors.push(VerifyError { node: Some(id), message });
        if let Some(bad) = node.args.iter().find(|a| a.index() >= id.index()) {
            err(format!("operand {bad} does not precede its use"));
            continue;
        }
        let arg_types: Vec<&TensorType> = node.args.iter().map(|&a| graph.ty(a)).collect();
        if let Err(e) = infer(&node.op, &arg_types, Some(&node.ty)) {
            err(format!("{} = {e}", value_name(graph, id)));
        }
        if let Some(name) = node.op.leaf_name() {
            if !is_identifier(name) {
                err(format!("leaf name `{name}` is not a valid identifier"));
            }
            if let Some(prev) = leaf_names.insert(name, id) {
                err(format!("leaf name `{name}` is also used by {prev}"));
            }
        }
        if !seen.insert(node) {
            err("duplicates an earlier identical node".to_string());
        }
    }
    let mut out_names = HashSet::new();
    for o in graph.outputs() {
        if o.value.index() >= graph.len() {
            errors.push(VerifyError {
                node: None,
                message: format!("output `{}` names missing node {}", o.name, o.value),
            });
        }
        if !is_identifier(&o.name) || !out_names.insert(o.name.as_str()) {
            errors
                .push(VerifyError { node: None, message: format!("output name `{}` is invalid or repeated", o.name) });
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(VerifyErrors { func: graph.name().to_string(), errors }) }
}
