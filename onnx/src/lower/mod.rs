//! Lowering an ONNX graph node by node into a kiln [`Builder`]: the import driver
//! ([`import_model`]), the per-node context ([`Cx`]) the op translations read their operands
//! and attributes through, and the dispatch from op type to translation.
//!
//! Values are tracked by ONNX name as [`Val`]s: known at import time (initializers, constants,
//! folded nodes) or computed at run time (a kiln tensor). A known value becomes a kiln tensor
//! only when a run-time op reads it ([`Materialize`]): one number repeated becomes a `const`;
//! anything else a parameter whose value goes to [`Imported::weights`] (integers and bools as
//! an `f64` parameter cast to their dtype). Nodes whose inputs are all known are folded
//! (`crate::fold`).

mod activation;
mod attrs;
mod elementwise;
mod movement;
mod nn;
mod recurrent;
mod reduce;

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use kiln_frontend::{Builder, Tensor};
use kiln_ir::{DType, Init, TensorType, Value};

use crate::error::{ImportError, Unsupported};
use crate::names::Names;
use crate::narrow::Narrow;
use crate::proto::{GraphProto, ModelProto, NodeProto, ValueInfoProto};
use crate::support::node_label;
use crate::tensor::{dtype_name, dtype_of, splat_of, to_i64s, to_value};
use crate::{Imported, Options};

/// An ONNX value during import.
#[derive(Clone)]
pub(crate) enum Val<'b> {
    /// Known at import time.
    Known(Rc<Value>),
    /// Computed when the function runs.
    Dyn(Tensor<'b>),
    /// Produced by a node that could not be translated (already reported).
    Failed,
}

/// What a translation produces for one output.
pub(crate) enum Out<'b> {
    /// A value known at import time.
    Known(Value),
    /// A run-time tensor.
    Dyn(Tensor<'b>),
}

impl<'b> From<Tensor<'b>> for Out<'b> {
    fn from(t: Tensor<'b>) -> Self {
        Out::Dyn(t)
    }
}

/// Why a translation failed.
pub(crate) enum Fail {
    /// The node uses something kiln does not support (a dtype, an attribute value, an output).
    Unsupported(String),
    /// The node is malformed or its operands do not fit it.
    Bad(String),
    /// Operand `i` must be known at import time and is not.
    NotConstant(usize),
}

/// The result of a translation.
pub(crate) type Lowered<'b> = Result<Vec<Out<'b>>, Fail>;

/// Turns known values into kiln tensors when a run-time op reads them.
pub(crate) trait Materialize<'b> {
    /// The tensor for the known value `v`, named after the ONNX value `key`.
    fn tensor(&self, key: &str, v: &Rc<Value>) -> Tensor<'b>;
}

/// One operand of a node.
#[derive(Clone)]
pub(crate) enum Arg<'b> {
    /// An optional input left empty (or past the end of the node's inputs).
    Absent,
    /// Known at import time, with its ONNX name.
    Known(String, Rc<Value>),
    /// A run-time tensor.
    Dyn(Tensor<'b>),
}

/// What a translation sees of its node: operands, attributes, the builder.
pub(crate) struct Cx<'n, 'b> {
    /// The builder the node's ops go into.
    pub b: &'b Builder,
    /// The node.
    pub node: &'n NodeProto,
    /// The model's `ai.onnx` opset.
    pub opset: i64,
    args: Vec<Arg<'b>>,
    /// The narrow integer type of each operand carried in a wider dtype, if any.
    narrow: Vec<Option<Narrow>>,
    mat: &'n dyn Materialize<'b>,
}

impl<'n, 'b> Cx<'n, 'b> {
    pub(crate) fn new(
        b: &'b Builder,
        node: &'n NodeProto,
        opset: i64,
        (args, narrow): (Vec<Arg<'b>>, Vec<Option<Narrow>>),
        mat: &'n dyn Materialize<'b>,
    ) -> Self {
        Cx { b, node, opset, args, narrow, mat }
    }

    /// The carried type of an output of kiln dtype `dtype` ([`result_narrow`]).
    pub(crate) fn result_narrow(&self, dtype: DType) -> Option<Narrow> {
        result_narrow(self.node, &self.narrow, dtype)
    }

    /// True if input `i` is given.
    pub fn has(&self, i: usize) -> bool {
        !matches!(self.args.get(i), None | Some(Arg::Absent))
    }

    /// Input `i` as a run-time tensor (a known value is materialized).
    pub fn tensor(&self, i: usize) -> Result<Tensor<'b>, Fail> {
        match self.args.get(i) {
            Some(Arg::Dyn(t)) => Ok(*t),
            Some(Arg::Known(key, v)) => Ok(self.mat.tensor(key, v)),
            _ => Err(Fail::Bad(format!("input {i} is missing"))),
        }
    }

    /// Input `i` as a tensor, if given.
    pub fn opt_tensor(&self, i: usize) -> Result<Option<Tensor<'b>>, Fail> {
        if self.has(i) { self.tensor(i).map(Some) } else { Ok(None) }
    }

    /// Input `i`'s value, which must be known at import time.
    pub fn known(&self, i: usize) -> Result<&Rc<Value>, Fail> {
        match self.args.get(i) {
            Some(Arg::Known(_, v)) => Ok(v),
            Some(Arg::Dyn(_)) => Err(Fail::NotConstant(i)),
            _ => Err(Fail::Bad(format!("input {i} is missing"))),
        }
    }

    /// Input `i`'s value as integers (known at import time), if the input is given.
    pub fn opt_ints(&self, i: usize) -> Result<Option<Vec<i64>>, Fail> {
        if !self.has(i) {
            return Ok(None);
        }
        to_i64s(self.known(i)?).map(Some).map_err(|e| Fail::Bad(format!("input {i}: {e}")))
    }

    /// Input `i`'s value as integers (known at import time).
    pub fn ints(&self, i: usize) -> Result<Vec<i64>, Fail> {
        self.opt_ints(i)?.ok_or_else(|| Fail::Bad(format!("input {i} is missing")))
    }

    /// True if input `i` carries `uint64` values.
    pub fn is_uint64(&self, i: usize) -> bool {
        self.narrow.get(i).copied().flatten().is_some_and(|n| n.onnx == crate::proto::tensor_proto::DataType::Uint64)
    }

    /// Input `i` as a tensor whose signed order is the input's order: `uint64` bits offset by
    /// 2^63 (`elementwise::UINT64_OFFSET`), anything else as it is.
    pub fn ordered(&self, i: usize) -> Result<Tensor<'b>, Fail> {
        let t = self.tensor(i)?;
        Ok(if self.is_uint64(i) { t + t.full_like(elementwise::UINT64_OFFSET) } else { t })
    }

    /// The type of input `i` (known or not).
    pub fn ty(&self, i: usize) -> Result<TensorType, Fail> {
        match self.args.get(i) {
            Some(Arg::Dyn(t)) => Ok(t.ty()),
            Some(Arg::Known(_, v)) => Ok(v.ty()),
            _ => Err(Fail::Bad(format!("input {i} is missing"))),
        }
    }

    /// Input `i` as a tensor of a float dtype; other dtypes are unsupported by the op.
    pub fn float(&self, i: usize) -> Result<Tensor<'b>, Fail> {
        let ty = self.ty(i)?;
        if !ty.dtype.is_float() {
            return Err(Fail::Unsupported(format!(
                "input {i} has dtype {}; kiln runs this op on floats only",
                ty.dtype
            )));
        }
        self.tensor(i)
    }

    /// Every given input, as tensors.
    pub fn tensors(&self) -> Result<Vec<Tensor<'b>>, Fail> {
        (0..self.args.len()).filter(|&i| self.has(i)).map(|i| self.tensor(i)).collect()
    }

    /// How many outputs the node asks for (trailing empty names dropped).
    pub fn outputs(&self) -> usize {
        self.node.output.iter().rposition(|o| !o.is_empty()).map_or(0, |p| p + 1)
    }

    /// An attribute value is not supported.
    pub fn unsupported<T>(&self, what: impl Into<String>) -> Result<T, Fail> {
        Err(Fail::Unsupported(what.into()))
    }
}

/// Builds the kiln function of `model`.
pub(crate) fn import_model(model: &ModelProto, options: &Options) -> Result<Imported, ImportError> {
    let graph = model.graph.as_ref().ok_or_else(|| ImportError::Invalid("the model has no graph".into()))?;
    let opset = crate::support::check(model, graph)?;
    let name = if graph.name().is_empty() { "model" } else { graph.name() };
    let mut names = Names::default();
    names.reserve("rng_seed");
    let b = Builder::new(names.kiln_name(name));
    let mut import = Import {
        graph,
        opset,
        b: &b,
        vals: HashMap::new(),
        narrow: HashMap::new(),
        deps: HashMap::new(),
        notes: vec![format!("ai.onnx opset {opset}")],
        unsupported: Vec::new(),
    };
    import.leaves(&mut names, options)?;
    let consts =
        Materializer { b: &b, names: RefCell::new(names), weights: RefCell::default(), cache: RefCell::default() };
    let defined: HashSet<String> = import.vals.keys().cloned().collect();
    for i in crate::order::topological(graph, &defined)? {
        import.node(i, &consts)?;
    }
    if !import.unsupported.is_empty() {
        return Err(ImportError::Unsupported(import.unsupported));
    }
    import.outputs(&consts)?;
    let notes = std::mem::take(&mut import.notes);
    drop(import);
    let weights = consts.weights.into_inner();
    let graph = b.finish().map_err(|e| ImportError::Invalid(format!("the imported graph does not verify: {e}")))?;
    Ok(Imported { graph, weights, notes, opset })
}

/// The state of one import: every ONNX value so far, and what is said about the model.
struct Import<'m, 'b> {
    graph: &'m GraphProto,
    opset: i64,
    b: &'b Builder,
    vals: HashMap<String, Val<'b>>,
    /// Values of a type carried in a wider dtype (`crate::narrow`), by ONNX name.
    narrow: HashMap<String, Narrow>,
    /// The graph inputs each run-time value depends on (named when one must be known).
    deps: HashMap<String, BTreeSet<String>>,
    notes: Vec<String>,
    unsupported: Vec<Unsupported>,
}

impl<'b> Import<'_, 'b> {
    fn unsupported(&mut self, node: String, op: &str, reason: String) {
        self.unsupported.push(Unsupported { node, op: op.to_string(), opset: self.opset, reason });
    }

    /// Initializers (known values; parameters when a run-time op reads them) and graph inputs
    /// (those with an initializer are parameters; bound ones are known). Refuses, all at
    /// once, those of types kiln cannot carry.
    fn leaves(&mut self, names: &mut Names, options: &Options) -> Result<(), ImportError> {
        let mut initializers = HashSet::new();
        for t in &self.graph.initializer {
            match to_value(t) {
                Ok(v) => {
                    self.vals.insert(t.name().to_string(), Val::Known(Rc::new(v)));
                    initializers.insert(t.name());
                    if let Some(n) = Narrow::of(t.data_type()) {
                        self.narrow.insert(t.name().to_string(), n);
                    }
                }
                Err(e) if dtype_of(t.data_type()).is_none() => {
                    self.unsupported(format!("initializer {}", t.name()), "initializer", e)
                }
                Err(e) => return Err(ImportError::Invalid(e)),
            }
        }
        if !self.graph.sparse_initializer.is_empty() {
            self.unsupported("(graph)".into(), "sparse_initializer", "sparse initializers are not supported".into());
        }
        for vi in &self.graph.input {
            let onnx_name = vi.name().to_string();
            if initializers.contains(onnx_name.as_str()) {
                continue;
            }
            if let Some(n) = declared_narrow(vi) {
                self.notes.push(format!("input `{onnx_name}` is {}, carried as {}", n.onnx.as_str_name(), n.carrier()));
                self.narrow.insert(onnx_name.clone(), n);
            }
            if let Some(v) = options.constants.get(&onnx_name) {
                self.vals.insert(onnx_name, Val::Known(Rc::new(v.clone())));
                continue;
            }
            match input_type(vi, options.batch, &mut self.notes) {
                Ok(ty) => {
                    let kname = names.kiln_name(&onnx_name);
                    if kname != onnx_name {
                        self.notes.push(format!("input `{onnx_name}` is named `{kname}`"));
                    }
                    let t = self.b.input(&kname, ty.dtype, ty.dims().to_vec());
                    self.deps.insert(onnx_name.clone(), BTreeSet::from([onnx_name.clone()]));
                    self.vals.insert(onnx_name, Val::Dyn(t));
                }
                Err(reason) => self.unsupported(format!("input {onnx_name}"), "graph input", reason),
            }
        }
        if self.unsupported.is_empty() {
            Ok(())
        } else {
            Err(ImportError::Unsupported(std::mem::take(&mut self.unsupported)))
        }
    }

    /// Translates (or folds) node `i`, recording its outputs. An unsupported node is listed
    /// and its outputs marked failed, so that the import goes on to find the others.
    fn node(&mut self, i: usize, consts: &Materializer<'b>) -> Result<(), ImportError> {
        let node = &self.graph.node[i];
        let (label, op) = (node_label(node, i), node.op_type());
        let mut args = Vec::with_capacity(node.input.len());
        for input in &node.input {
            args.push(match input.as_str() {
                "" => Arg::Absent,
                name => match self.vals.get(name) {
                    Some(Val::Known(v)) => Arg::Known(name.to_string(), v.clone()),
                    Some(Val::Dyn(t)) => Arg::Dyn(*t),
                    // Defined (the ordering checked), so its producer failed, already reported.
                    Some(Val::Failed) | None => {
                        self.fail_outputs(node);
                        return Ok(());
                    }
                },
            });
        }
        let arg_narrow: Vec<Option<Narrow>> = node.input.iter().map(|x| self.narrow.get(x).copied()).collect();
        let all_known = args.iter().all(|a| !matches!(a, Arg::Dyn(_)));
        let folded = if all_known && crate::fold::worth_folding(node, &args) {
            crate::fold::fold(node, self.opset, (args.clone(), arg_narrow.clone()))
        } else {
            None
        };
        let result = if let Some(folded) = folded {
            folded
        } else {
            let cx = Cx::new(self.b, node, self.opset, (args, arg_narrow.clone()), consts);
            let r = lower_node(&cx);
            match (r, self.b.take_errors().first()) {
                (Ok(_), Some(e)) => Err(Fail::Bad(format!("`{}`: {}", e.op, e.message))),
                (r, _) => r,
            }
        };
        let produced = match result {
            Ok(p) => p,
            Err(Fail::Unsupported(reason)) => {
                self.unsupported(label, op, reason);
                self.fail_outputs(node);
                return Ok(());
            }
            Err(Fail::Bad(message)) => return Err(ImportError::Node { node: label, op: op.to_string(), message }),
            Err(Fail::NotConstant(k)) => {
                let input = node.input[k].clone();
                let from = self.deps.get(&input).map(|d| d.iter().cloned().collect()).unwrap_or_default();
                return Err(ImportError::NotConstant { node: label, op: op.to_string(), input, from });
            }
        };
        let wanted = node.output.iter().rposition(|o| !o.is_empty()).map_or(0, |p| p + 1);
        if produced.len() < wanted {
            let reason = format!("output {} (`{}`) is not supported", produced.len(), node.output[produced.len()]);
            self.unsupported(label, op, reason);
            self.fail_outputs(node);
            return Ok(());
        }
        let node_deps: BTreeSet<String> =
            node.input.iter().filter_map(|x| self.deps.get(x)).flat_map(|d| d.iter().cloned()).collect();
        for (o, p) in node.output.iter().zip(produced).filter(|(o, _)| !o.is_empty()) {
            let (v, dtype) = match p {
                Out::Known(v) => {
                    let dtype = v.dtype();
                    (Val::Known(Rc::new(v)), dtype)
                }
                Out::Dyn(t) => {
                    self.deps.insert(o.clone(), node_deps.clone());
                    (Val::Dyn(t), t.dtype())
                }
            };
            if let Some(n) = result_narrow(node, &arg_narrow, dtype) {
                self.narrow.insert(o.clone(), n);
            }
            self.vals.insert(o.clone(), v);
        }
        Ok(())
    }

    fn fail_outputs(&mut self, node: &NodeProto) {
        for o in node.output.iter().filter(|o| !o.is_empty()) {
            self.vals.insert(o.clone(), Val::Failed);
        }
    }

    /// The graph's outputs, in order, under kiln names.
    fn outputs(&mut self, consts: &Materializer<'b>) -> Result<(), ImportError> {
        for vi in &self.graph.output {
            let onnx_name = vi.name();
            let t = match self.vals.get(onnx_name) {
                Some(Val::Dyn(t)) => *t,
                Some(Val::Known(v)) => consts.tensor(onnx_name, v),
                _ => {
                    return Err(ImportError::Invalid(format!("graph output `{onnx_name}` is not defined by any node")));
                }
            };
            let kname = consts.names.borrow_mut().kiln_name(onnx_name);
            if kname != onnx_name {
                self.notes.push(format!("output `{onnx_name}` is named `{kname}`"));
            }
            if let Some(n) = self.narrow.get(onnx_name) {
                self.notes.push(format!(
                    "output `{onnx_name}` is {}, carried as {}",
                    n.onnx.as_str_name(),
                    n.carrier()
                ));
            }
            self.b.output(&kname, t);
        }
        Ok(())
    }
}

/// The carried type (`crate::narrow`) of an output of `node` of kiln dtype `dtype`, given its
/// operands' (`operands`): the type `Cast` or `Constant` names, else the first carried
/// operand's when the output has its carrier dtype (`Add` of two `uint8`s; not `Equal` of
/// them, nor their `Shape`).
fn result_narrow(node: &NodeProto, operands: &[Option<Narrow>], dtype: DType) -> Option<Narrow> {
    let named = match node.op_type() {
        "Cast" => node.attribute.iter().find(|a| a.name() == "to").map(|a| a.i() as i32),
        "Constant" | "ConstantOfShape" => {
            node.attribute.iter().find(|a| a.name() == "value").and_then(|a| a.t.as_ref()).map(|t| t.data_type())
        }
        "CastLike" => return operands.get(1).copied().flatten().filter(|n| n.carrier() == dtype),
        "Shape" | "Size" => return None,
        _ => None,
    };
    let n = match named {
        Some(code) => Narrow::of(code),
        None => operands.iter().flatten().next().copied(),
    };
    n.filter(|n| n.carrier() == dtype)
}

/// The narrow integer type a graph input or output declares, if any.
fn declared_narrow(vi: &ValueInfoProto) -> Option<Narrow> {
    use crate::proto::type_proto::Value as Ty;
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Ty::TensorType(t)) => Narrow::of(t.elem_type()),
        _ => None,
    }
}

/// The kiln type of a graph input, pinning symbolic extents to `batch` (noted).
fn input_type(vi: &ValueInfoProto, batch: usize, notes: &mut Vec<String>) -> Result<TensorType, String> {
    use crate::proto::tensor_shape_proto::dimension::Value as Dim;
    use crate::proto::type_proto::Value as Ty;
    let Some(Ty::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err("only tensor inputs are supported (not sequences, maps or optionals)".into());
    };
    let dtype = dtype_of(t.elem_type()).ok_or_else(|| {
        format!("dtype {} is not supported (kiln has f32, f64, i32, i64, bool)", dtype_name(t.elem_type()))
    })?;
    let shape = t.shape.as_ref().ok_or("the input has no shape (its rank is unknown)")?;
    let mut dims = Vec::with_capacity(shape.dim.len());
    for (axis, d) in shape.dim.iter().enumerate() {
        match &d.value {
            Some(Dim::DimValue(v)) if *v >= 0 => dims.push(*v as usize),
            Some(Dim::DimValue(v)) => return Err(format!("axis {axis} has extent {v}")),
            other => {
                let what = match other {
                    Some(Dim::DimParam(p)) if !p.is_empty() => format!("symbolic dimension `{p}`"),
                    _ => "unknown dimension".to_string(),
                };
                notes.push(format!("input `{}`: {what} (axis {axis}) pinned to {batch} (--batch)", vi.name()));
                dims.push(batch);
            }
        }
    }
    Ok(TensorType::new(dtype, dims))
}

/// Known values as kiln tensors in the function being built.
struct Materializer<'b> {
    b: &'b Builder,
    names: RefCell<Names>,
    weights: RefCell<HashMap<String, Value>>,
    cache: RefCell<HashMap<String, Tensor<'b>>>,
}

impl<'b> Materialize<'b> for Materializer<'b> {
    fn tensor(&self, key: &str, v: &Rc<Value>) -> Tensor<'b> {
        if let Some(t) = self.cache.borrow().get(key) {
            return *t;
        }
        let ty = v.ty();
        let floats = ty.dtype.is_float();
        let t = match splat_of(v) {
            // One number repeated: a constant (bit-exact: `const` takes an f64 literal). A
            // float parameter stays a parameter, trainable, whatever its values.
            Some(x) if !floats || ty.numel() == 1 => self.b.constant(x, ty.dtype, ty.dims().to_vec()),
            _ => {
                let name = self.names.borrow_mut().kiln_name(key);
                if floats {
                    self.weights.borrow_mut().insert(name.clone(), (**v).clone());
                    self.b.param_of(&name, ty.dtype, ty.dims().to_vec(), Init::Zeros)
                } else {
                    // Integers and bools travel as an f64 parameter (exact to 2^53) cast back.
                    self.weights.borrow_mut().insert(name.clone(), v.cast(DType::F64));
                    self.b.param_of(&name, DType::F64, ty.dims().to_vec(), Init::Zeros).stop_gradient().cast(ty.dtype)
                }
            }
        };
        self.cache.borrow_mut().insert(key.to_string(), t);
        t
    }
}

/// Runs a translation, turning a panic (a bug in the importer, which must not take the
/// caller down with it) into an error naming the node.
pub(crate) fn guarded<'b>(f: impl FnOnce() -> Lowered<'b>) -> Lowered<'b> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let what = p.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| p.downcast_ref::<String>().cloned());
        Err(Fail::Bad(format!("internal error in the importer: {}", what.unwrap_or_default())))
    })
}

/// Translates one node, wrapping every output of a narrow integer type back into its range
/// where the op may have left it (`crate::narrow`).
pub(crate) fn lower_node<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    let op = cx.node.op_type();
    if let Some(why) = cx.narrow.iter().flatten().find_map(|n| n.refuses_operand(op)) {
        return Err(Fail::Unsupported(why));
    }
    let outs = guarded(|| lower(cx))?;
    let mut wrapped = Vec::with_capacity(outs.len());
    for o in outs {
        let dtype = match &o {
            Out::Known(v) => v.dtype(),
            Out::Dyn(t) => t.dtype(),
        };
        let Some(n) = cx.result_narrow(dtype) else {
            wrapped.push(o);
            continue;
        };
        if let Some(why) = n.refuses_result(op) {
            return Err(Fail::Unsupported(why));
        }
        // ONNX rounds (half to even) and saturates floats cast to the 4- and 2-bit integers;
        // kiln's cast truncates, and wrapping that is not their meaning.
        let from_float = cx.ty(0).is_ok_and(|t| t.dtype.is_float());
        if matches!(op, "Cast" | "CastLike") && !n.float && n.bits < 8 && from_float {
            return Err(Fail::Unsupported(format!(
                "{op} from a float to {} (rounds and saturates)",
                n.onnx.as_str_name()
            )));
        }
        wrapped.push(match o {
            Out::Dyn(t) if Narrow::op_may_overflow(op) => Out::Dyn(n.wrap(t)),
            other => other,
        });
    }
    Ok(wrapped)
}

/// Translates one node.
pub(crate) fn lower<'b>(cx: &Cx<'_, 'b>) -> Lowered<'b> {
    match cx.node.op_type() {
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" => elementwise::arithmetic(cx),
        "Neg" | "Abs" | "Sqrt" | "Exp" | "Log" | "Reciprocal" | "Sin" | "Cos" | "Tanh" | "Floor" | "Ceil" | "Sign" => {
            elementwise::unary(cx)
        }
        "Erf" => elementwise::erf_op(cx),
        "Clip" => elementwise::clip(cx),
        "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" => elementwise::compare(cx),
        "Not" | "And" | "Or" | "Xor" => elementwise::logic(cx),
        "Where" => elementwise::where_op(cx),
        "Cast" | "CastLike" => elementwise::cast(cx),
        "Relu" | "LeakyRelu" | "Sigmoid" | "HardSigmoid" | "Softplus" | "Elu" | "Selu" | "Gelu" => {
            activation::activation(cx)
        }
        "Softmax" | "LogSoftmax" => activation::softmax(cx),
        "MatMul" => nn::matmul(cx),
        "Gemm" => nn::gemm(cx),
        "Conv" => nn::conv(cx),
        "ConvTranspose" => nn::conv_transpose(cx),
        "MaxPool" | "AveragePool" => nn::pool(cx),
        "GlobalAveragePool" | "GlobalMaxPool" => nn::global_pool(cx),
        "BatchNormalization" => nn::batch_norm(cx),
        "LayerNormalization" => nn::layer_norm(cx),
        "Dropout" => nn::dropout(cx),
        "LRN" => nn::lrn(cx),
        "LSTM" => recurrent::lstm(cx),
        "ReduceSum" | "ReduceMean" | "ReduceMax" | "ReduceMin" => reduce::reduce(cx),
        "Reshape" => movement::reshape(cx),
        "Flatten" => movement::flatten(cx),
        "Transpose" => movement::transpose(cx),
        "Squeeze" => movement::squeeze(cx),
        "Unsqueeze" => movement::unsqueeze(cx),
        "Expand" => movement::expand(cx),
        "Concat" => movement::concat(cx),
        "Split" => movement::split(cx),
        "Slice" => movement::slice(cx),
        "Pad" => movement::pad(cx),
        "Gather" => movement::gather(cx),
        "Shape" => movement::shape(cx),
        "Size" => movement::size(cx),
        "Identity" => Ok(vec![identity(cx)?]),
        "Constant" => movement::constant(cx),
        "ConstantOfShape" => movement::constant_of_shape(cx),
        "Range" => movement::range(cx),
        other => Err(Fail::Unsupported(format!("op {other} not supported"))),
    }
}

/// `Identity`: its input, known or not.
fn identity<'b>(cx: &Cx<'_, 'b>) -> Result<Out<'b>, Fail> {
    match cx.args.first() {
        Some(Arg::Known(_, v)) => Ok(Out::Known((**v).clone())),
        _ => Ok(Out::Dyn(cx.tensor(0)?)),
    }
}
