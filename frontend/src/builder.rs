//! The graph builder behind the DSL, and the `Copy` tensor handle.
//!
//! A [`Builder`] owns the graph being built. [`Tensor`] handles borrow it, so operators can
//! add nodes without threading `&mut` through user code. A shape or type error does not panic:
//! the builder records it with the op, the shapes and the caller's source line, the failed
//! handle is marked *poisoned* (ops on it add nothing and report nothing more), and
//! [`Builder::finish`] returns the first error.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::panic::Location;

use kiln_ir::{DType, Graph, Init, NodeId, Op, TensorType, VerifyErrors};
use thiserror::Error;

/// A shape, type or naming error found while building a graph, located at the user's call.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub struct BuildError {
    /// The op or DSL function that failed (`add`, `matmul`, `Linear`, ...).
    pub op: String,
    /// What is wrong, naming the shapes involved.
    pub message: String,
    /// `file:line:column` of the caller.
    pub location: String,
    /// How many further errors were recorded after this one.
    pub more: usize,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.location, self.op, self.message)?;
        if self.more > 0 {
            write!(f, " (and {} more error(s))", self.more)?;
        }
        Ok(())
    }
}

impl From<VerifyErrors> for BuildError {
    fn from(e: VerifyErrors) -> Self {
        BuildError { op: "verify".into(), message: e.to_string(), location: "<builder>".into(), more: 0 }
    }
}

/// Whether a graph is built for training or for inference; only `Dropout` differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Inference: dropout is the identity.
    Eval,
    /// Training: dropout draws a mask from the `rng_seed` input.
    Train,
}

/// Builds one IR function. Create tensors with [`Builder::input`] and [`Builder::param`],
/// combine them with operators and methods, name results with [`Builder::output`], then call
/// [`Builder::finish`].
#[derive(Debug)]
pub struct Builder {
    graph: RefCell<Graph>,
    errors: RefCell<Vec<BuildError>>,
    next_stream: Cell<u32>,
    float: DType,
    mode: Mode,
}

/// A handle to a value of the graph being built. `Copy`; operators and methods add nodes.
#[derive(Clone, Copy)]
pub struct Tensor<'b> {
    pub(crate) id: Option<NodeId>,
    pub(crate) b: &'b Builder,
}

impl fmt::Debug for Tensor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.id {
            Some(id) => write!(f, "Tensor({id}: {})", self.ty()),
            None => f.write_str("Tensor(<poisoned>)"),
        }
    }
}

impl Builder {
    /// A builder for the function `name`, with `f32` parameters, in [`Mode::Eval`].
    pub fn new(name: impl Into<String>) -> Self {
        Builder {
            graph: RefCell::new(Graph::new(name)),
            errors: RefCell::new(Vec::new()),
            next_stream: Cell::new(0),
            float: DType::F32,
            mode: Mode::Eval,
        }
    }

    /// A builder that continues an existing graph (keeping its nodes and outputs). Its float
    /// dtype is that of the graph's first parameter, or `f32`.
    pub fn from_graph(graph: Graph) -> Self {
        let float = graph.params().next().map(|(_, n)| n.ty.dtype).unwrap_or(DType::F32);
        let streams = graph
            .nodes()
            .filter_map(|(_, n)| match n.op {
                Op::Rng { stream, .. } => Some(stream + 1),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Builder {
            graph: RefCell::new(graph),
            errors: RefCell::new(Vec::new()),
            next_stream: Cell::new(streams),
            float,
            mode: Mode::Eval,
        }
    }

    /// A handle to an existing node of the graph, or a poisoned handle (with an error
    /// recorded) if there is no such node.
    #[track_caller]
    pub fn tensor(&self, id: NodeId) -> Tensor<'_> {
        if id.index() < self.graph.borrow().len() {
            self.handle(Some(id))
        } else {
            self.fail("tensor", format!("{id} is not a node of this graph"));
            self.handle(None)
        }
    }

    /// A handle to the input or parameter called `name`, if there is one.
    pub fn leaf(&self, name: &str) -> Option<Tensor<'_>> {
        let id = self.graph.borrow().leaf(name);
        id.map(|id| self.handle(Some(id)))
    }

    /// Handles to the graph's outputs, in order, with their names.
    pub fn outputs(&self) -> Vec<(String, Tensor<'_>)> {
        let g = self.graph.borrow();
        g.outputs().iter().map(|o| (o.name.clone(), self.handle(Some(o.value)))).collect()
    }

    /// Removes every output (the nodes stay), to name new ones.
    pub fn clear_outputs(&self) {
        self.graph.borrow_mut().clear_outputs();
    }

    /// Uses `dtype` (`f32` or `f64`) for parameters and float constants of layers.
    pub fn with_float(mut self, dtype: DType) -> Self {
        self.float = dtype;
        self
    }

    /// Sets training or inference mode.
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The float dtype of parameters.
    pub fn float(&self) -> DType {
        self.float
    }

    /// Training or inference.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Records an error at the caller's location.
    #[track_caller]
    pub fn fail(&self, op: &str, message: impl Into<String>) {
        let loc = Location::caller();
        self.errors.borrow_mut().push(BuildError {
            op: op.into(),
            message: message.into(),
            location: format!("{}:{}:{}", loc.file(), loc.line(), loc.column()),
            more: 0,
        });
    }

    /// True if an error has been recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// Removes and returns the errors recorded so far, so that a caller building the graph in
    /// steps (an importer, node by node) can say which step failed. Handles poisoned by them
    /// stay poisoned.
    pub fn take_errors(&self) -> Vec<BuildError> {
        std::mem::take(&mut *self.errors.borrow_mut())
    }

    pub(crate) fn handle(&self, id: Option<NodeId>) -> Tensor<'_> {
        Tensor { id, b: self }
    }

    /// The type of a node.
    pub(crate) fn ty_of(&self, id: NodeId) -> TensorType {
        self.graph.borrow().ty(id).clone()
    }

    /// Adds a node; on a type error records it (at the caller) and returns a poisoned handle.
    /// Poisoned operands give a poisoned result without a new error.
    #[track_caller]
    pub(crate) fn apply(&self, op: Op, args: &[Tensor<'_>], declared: Option<TensorType>) -> Tensor<'_> {
        let mut ids = Vec::with_capacity(args.len());
        for a in args {
            match a.id {
                Some(id) => ids.push(id),
                None => return self.handle(None),
            }
        }
        let name = op.name();
        let r = {
            let mut g = self.graph.borrow_mut();
            match declared {
                Some(ty) => g.add_typed(op, &ids, ty),
                None => g.add(op, &ids),
            }
        };
        match r {
            Ok(id) => self.handle(Some(id)),
            Err(e) => {
                let msg = match e {
                    kiln_ir::GraphError::Type(t) => t.message,
                    other => other.to_string(),
                };
                self.fail(name, msg);
                self.handle(None)
            }
        }
    }

    /// A graph input of the given dtype and shape.
    #[track_caller]
    pub fn input(&self, name: &str, dtype: DType, dims: impl Into<Vec<usize>>) -> Tensor<'_> {
        let r = self.graph.borrow_mut().input(name, TensorType::new(dtype, dims.into()));
        self.new_leaf("input", r)
    }

    /// A trainable parameter of the builder's float dtype, initialized by `init`.
    #[track_caller]
    pub fn param(&self, name: &str, dims: impl Into<Vec<usize>>, init: Init) -> Tensor<'_> {
        let r = self.graph.borrow_mut().param(name, TensorType::new(self.float, dims.into()), init);
        self.new_leaf("param", r)
    }

    /// A trainable parameter of any float dtype (`f32` or `f64`), whatever the builder's own.
    #[track_caller]
    pub fn param_of(&self, name: &str, dtype: DType, dims: impl Into<Vec<usize>>, init: Init) -> Tensor<'_> {
        let r = self.graph.borrow_mut().param(name, TensorType::new(dtype, dims.into()), init);
        self.new_leaf("param", r)
    }

    #[track_caller]
    fn new_leaf(&self, what: &str, r: Result<NodeId, kiln_ir::GraphError>) -> Tensor<'_> {
        match r {
            Ok(id) => self.handle(Some(id)),
            Err(e) => {
                self.fail(what, e.to_string());
                self.handle(None)
            }
        }
    }

    /// The `i64[]` input `rng_seed` that feeds every random draw (created on first use).
    #[track_caller]
    pub fn rng_seed(&self) -> Tensor<'_> {
        let existing = self.graph.borrow().leaf("rng_seed");
        match existing {
            Some(id) => self.handle(Some(id)),
            None => self.input("rng_seed", DType::I64, []),
        }
    }

    /// A fresh stream number for a random draw.
    pub(crate) fn next_stream(&self) -> u32 {
        let s = self.next_stream.get();
        self.next_stream.set(s + 1);
        s
    }

    /// A constant of the given dtype and shape with every element `value`.
    #[track_caller]
    pub fn constant(&self, value: f64, dtype: DType, dims: impl Into<Vec<usize>>) -> Tensor<'_> {
        self.apply(Op::Const { value: kiln_ir::Literal(value) }, &[], Some(TensorType::new(dtype, dims.into())))
    }

    /// A scalar constant of the builder's float dtype.
    #[track_caller]
    pub fn scalar(&self, value: f64) -> Tensor<'_> {
        self.constant(value, self.float, [])
    }

    /// The index along `axis` at every position of a tensor of `dtype` and shape `dims`.
    #[track_caller]
    pub fn iota(&self, dtype: DType, dims: impl Into<Vec<usize>>, axis: usize) -> Tensor<'_> {
        self.apply(Op::Iota { axis }, &[], Some(TensorType::new(dtype, dims.into())))
    }

    /// Names `t` as the next output of the function.
    #[track_caller]
    pub fn output(&self, name: &str, t: Tensor<'_>) {
        if let Some(id) = t.id {
            let r = self.graph.borrow_mut().add_output(name, id);
            if let Err(e) = r {
                self.fail("output", e.to_string());
            }
        }
    }

    /// Finishes the graph: the first recorded error, or the verified graph.
    pub fn finish(self) -> Result<Graph, BuildError> {
        let mut errors = self.errors.into_inner();
        if !errors.is_empty() {
            let more = errors.len() - 1;
            let mut first = errors.swap_remove(0);
            first.more = more;
            return Err(first);
        }
        let graph = self.graph.into_inner();
        kiln_ir::verify(&graph)?;
        Ok(graph)
    }
}

impl Builder {
    /// Counter-based random numbers of `dtype` and shape `dims`, seeded by the `rng_seed` input;
    /// every call draws a fresh stream.
    #[track_caller]
    pub fn rng(&self, dist: kiln_ir::Distribution, dtype: DType, dims: impl Into<Vec<usize>>) -> Tensor<'_> {
        let seed = self.rng_seed();
        let stream = self.next_stream();
        self.apply(Op::Rng { dist, stream }, &[seed], Some(TensorType::new(dtype, dims.into())))
    }
}
