//! The graph arena: nodes named by typed `u32` handles, interned when built.
//!
//! Invariants, checked by [`crate::verify()`]:
//! - every operand of node `n` has a smaller id than `n`, so arena order is a topological order;
//! - every node's type is the one its op's type rule ([`crate::types::infer`]) gives;
//! - no two nodes are identical (same op, operands and type): building one returns the other;
//! - leaf (`input`/`param`) names are unique, and so are output names.

use std::collections::HashMap;
use std::fmt;

use thiserror::Error;

use crate::op::{Init, Op};
use crate::shape::TensorType;
use crate::types::{TypeError, infer, is_identifier};

/// Handle of a node in a [`Graph`]'s arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u32);

impl NodeId {
    /// The arena index.
    pub fn index(self) -> usize {
        self.0 as usize
    }

    /// The handle of arena index `i`.
    pub fn from_index(i: usize) -> Self {
        NodeId(u32::try_from(i).expect("graph arenas hold fewer than 2^32 nodes"))
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// One value of the graph: an op applied to earlier nodes, with its result type.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Node {
    /// The operation.
    pub op: Op,
    /// Operands, in the op's order.
    pub args: Vec<NodeId>,
    /// Result type.
    pub ty: TensorType,
}

/// A named result of the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Name (used for output files and by callers).
    pub name: String,
    /// The node returned.
    pub value: NodeId,
}

/// Errors from building a graph.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum GraphError {
    /// A node breaks its op's type rule.
    #[error(transparent)]
    Type(#[from] TypeError),
    /// Two leaves or two outputs share a name.
    #[error("the name `{0}` is already used")]
    DuplicateName(String),
    /// A name that is not a valid identifier.
    #[error("`{0}` is not a valid name (letters, digits, `_`, `.`; not starting with a digit)")]
    BadName(String),
    /// An operand handle that is not in this graph.
    #[error("{0} is not a node of this graph")]
    UnknownNode(NodeId),
}

/// A function in the tensor IR: an arena of typed nodes plus named outputs.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    name: String,
    nodes: Vec<Node>,
    interned: HashMap<Node, NodeId>,
    leaf_names: HashMap<String, NodeId>,
    outputs: Vec<Output>,
}

impl Graph {
    /// An empty graph called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Graph { name: name.into(), ..Graph::default() }
    }

    /// The function name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Renames the function.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }

    /// Number of nodes in the arena.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// True if the arena is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The node behind `id`.
    ///
    /// Panics if `id` is not from this graph; handles are only made by this graph.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.index()]
    }

    /// The result type of `id`.
    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.node(id).ty
    }

    /// All nodes in arena (topological) order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (NodeId, &Node)> {
        self.nodes.iter().enumerate().map(|(i, n)| (NodeId::from_index(i), n))
    }

    /// The leaves (`input` and `param` nodes) in arena order: the function's signature.
    pub fn leaves(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes().filter(|(_, n)| n.op.is_leaf())
    }

    /// The `input` leaves in arena order.
    pub fn inputs(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes().filter(|(_, n)| matches!(n.op, Op::Input { .. }))
    }

    /// The `param` leaves in arena order.
    pub fn params(&self) -> impl Iterator<Item = (NodeId, &Node)> {
        self.nodes().filter(|(_, n)| matches!(n.op, Op::Param { .. }))
    }

    /// The leaf called `name`, if any.
    pub fn leaf(&self, name: &str) -> Option<NodeId> {
        self.leaf_names.get(name).copied()
    }

    /// The named outputs, in order.
    pub fn outputs(&self) -> &[Output] {
        &self.outputs
    }

    /// Total number of parameter elements.
    pub fn param_count(&self) -> usize {
        self.params().fold(0usize, |n, (_, p)| n.saturating_add(p.ty.numel()))
    }

    /// Adds a graph input.
    pub fn input(&mut self, name: impl Into<String>, ty: TensorType) -> Result<NodeId, GraphError> {
        self.add_leaf(Op::Input { name: name.into() }, ty)
    }

    /// Adds a trainable parameter initialized by `init` when no value is supplied.
    pub fn param(&mut self, name: impl Into<String>, ty: TensorType, init: Init) -> Result<NodeId, GraphError> {
        self.add_leaf(Op::Param { name: name.into(), init }, ty)
    }

    fn add_leaf(&mut self, op: Op, ty: TensorType) -> Result<NodeId, GraphError> {
        let name = op.leaf_name().unwrap_or_default().to_string();
        if self.leaf_names.contains_key(&name) {
            return Err(GraphError::DuplicateName(name));
        }
        let id = self.push(op, &[], Some(ty))?;
        self.leaf_names.insert(name, id);
        Ok(id)
    }

    /// Adds `op` applied to `args`, inferring the result type. Returns the existing node if an
    /// identical one is already in the graph. Leaves are added with [`Graph::input`] and
    /// [`Graph::param`], which also keep their names unique.
    pub fn add(&mut self, op: Op, args: &[NodeId]) -> Result<NodeId, GraphError> {
        self.reject_leaf(&op)?;
        self.push(op, args, None)
    }

    /// Adds `op` applied to `args` with a declared result type, which ops such as `reshape`,
    /// `broadcast`, `cast` and `const` need; for the others it must equal the inferred type.
    pub fn add_typed(&mut self, op: Op, args: &[NodeId], ty: TensorType) -> Result<NodeId, GraphError> {
        self.reject_leaf(&op)?;
        self.push(op, args, Some(ty))
    }

    fn reject_leaf(&self, op: &Op) -> Result<(), GraphError> {
        match op.leaf_name() {
            Some(name) => Err(TypeError {
                op: op.name(),
                message: format!("leaf `{name}` must be added with Graph::input or Graph::param"),
            }
            .into()),
            None => Ok(()),
        }
    }

    fn push(&mut self, op: Op, args: &[NodeId], declared: Option<TensorType>) -> Result<NodeId, GraphError> {
        if let Some(&bad) = args.iter().find(|a| a.index() >= self.nodes.len()) {
            return Err(GraphError::UnknownNode(bad));
        }
        let arg_types: Vec<&TensorType> = args.iter().map(|&a| self.ty(a)).collect();
        let ty = infer(&op, &arg_types, declared.as_ref())?;
        let node = Node { op, args: args.to_vec(), ty };
        if let Some(&id) = self.interned.get(&node) {
            return Ok(id);
        }
        let id = NodeId::from_index(self.nodes.len());
        self.interned.insert(node.clone(), id);
        self.nodes.push(node);
        Ok(id)
    }

    /// Appends a named output.
    pub fn add_output(&mut self, name: impl Into<String>, value: NodeId) -> Result<(), GraphError> {
        let name = name.into();
        if !is_identifier(&name) {
            return Err(GraphError::BadName(name));
        }
        if value.index() >= self.nodes.len() {
            return Err(GraphError::UnknownNode(value));
        }
        if self.outputs.iter().any(|o| o.name == name) {
            return Err(GraphError::DuplicateName(name));
        }
        self.outputs.push(Output { name, value });
        Ok(())
    }

    /// Removes every output (the nodes stay), so a pass can name new ones.
    pub fn clear_outputs(&mut self) {
        self.outputs.clear();
    }

    /// The ids of every node that some output depends on, as a mask indexed by arena index.
    pub fn live_mask(&self) -> Vec<bool> {
        let mut live = vec![false; self.nodes.len()];
        for o in &self.outputs {
            live[o.value.index()] = true;
        }
        for i in (0..self.nodes.len()).rev() {
            if live[i] {
                for a in &self.nodes[i].args {
                    live[a.index()] = true;
                }
            }
        }
        live
    }

    /// How many times each node's value is used, by arena index: once per operand slot of a
    /// live node, plus once per output that returns it.
    pub fn use_counts(&self) -> Vec<usize> {
        let live = self.live_mask();
        let mut uses = vec![0usize; self.nodes.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            if live[i] {
                for a in &node.args {
                    uses[a.index()] += 1;
                }
            }
        }
        for o in &self.outputs {
            uses[o.value.index()] += 1;
        }
        uses
    }
}
