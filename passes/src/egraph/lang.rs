//! The e-graph language: one e-node per IR op, carrying the op's attributes (and the declared
//! type of ops whose type is an attribute), so every IR node has exactly one e-node form.
//! Conversion from a [`Graph`] into an e-graph lives here too.

use std::fmt;

use egg::{Id, Language};
use kiln_ir::{Graph, NodeId, Op, TensorType};

/// An e-node: an IR op applied to e-classes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ENode {
    /// The op with its attributes.
    pub op: Op,
    /// The declared result type, for ops whose type is an attribute ([`Op::declares_type`]).
    pub declared: Option<TensorType>,
    /// Operand e-classes.
    pub args: Vec<Id>,
}

impl ENode {
    /// An e-node for `op` over `args`, keeping `ty` only if the op declares its type.
    pub fn new(op: Op, args: Vec<Id>, ty: &TensorType) -> Self {
        let declared = op.declares_type().then(|| ty.clone());
        ENode { op, declared, args }
    }
}

impl Language for ENode {
    type Discriminant = (Op, Option<TensorType>, usize);

    fn discriminant(&self) -> Self::Discriminant {
        (self.op.clone(), self.declared.clone(), self.args.len())
    }

    fn matches(&self, other: &Self) -> bool {
        self.op == other.op && self.declared == other.declared && self.args.len() == other.args.len()
    }

    fn children(&self) -> &[Id] {
        &self.args
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.args
    }
}

impl fmt::Display for ENode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.op.name())
    }
}

/// The e-graph of kiln IR with its type/constant analysis.
pub type EGraph = egg::EGraph<ENode, super::analysis::TypeAnalysis>;

/// Adds every node of `graph` to `eg`, returning the e-class of each arena node.
pub fn add_graph(eg: &mut EGraph, graph: &Graph) -> Vec<Id> {
    let mut ids: Vec<Id> = Vec::with_capacity(graph.len());
    for (_, node) in graph.nodes() {
        let args = node.args.iter().map(|a: &NodeId| ids[a.index()]).collect();
        ids.push(eg.add(ENode::new(node.op.clone(), args, &node.ty)));
    }
    ids
}
