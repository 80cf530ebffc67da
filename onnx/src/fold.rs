//! Folding at import time: a node whose inputs are all known is translated into a scratch
//! function whose inputs are those values, and run by kiln's reference interpreter. The folded
//! result is what the node would compute at run time, by the one meaning of every kiln op
//! (`docs/ops.md`), never a second implementation of the ONNX op.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use kiln_frontend::{Builder, Tensor};
use kiln_ir::Value;

use crate::lower::{Arg, Cx, Fail, Lowered, Materialize, Out, lower_node};
use crate::proto::NodeProto;

/// Folding stops at inputs this large (elements, all inputs together): such a node (a
/// product of two weight matrices, say) runs faster compiled than interpreted at import.
const FOLD_MAX_ELEMENTS: usize = 1 << 22;

/// True if `node`, whose inputs are all known, should be folded now.
pub(crate) fn worth_folding(node: &NodeProto, args: &[Arg<'_>]) -> bool {
    let elements: usize = args
        .iter()
        .map(|a| match a {
            Arg::Known(_, v) => v.shape().iter().product(),
            _ => 0,
        })
        .sum();
    // A `Constant` and its kin have no inputs, and are known values already.
    !node.input.is_empty() && elements <= FOLD_MAX_ELEMENTS
}

/// Scratch-function inputs for the known operands, with the values that feed them.
struct ScratchInputs<'b> {
    b: &'b Builder,
    feeds: RefCell<HashMap<String, Value>>,
    cache: RefCell<HashMap<String, Tensor<'b>>>,
}

impl<'b> Materialize<'b> for ScratchInputs<'b> {
    fn tensor(&self, key: &str, v: &Rc<Value>) -> Tensor<'b> {
        if let Some(t) = self.cache.borrow().get(key) {
            return *t;
        }
        let name = format!("k{}", self.cache.borrow().len());
        let t = self.b.input(&name, v.dtype(), v.shape().to_vec());
        self.feeds.borrow_mut().insert(name, (**v).clone());
        self.cache.borrow_mut().insert(key.to_string(), t);
        t
    }
}

/// Folds `node` (every input known): its outputs as known values.
pub(crate) fn fold<'b>(
    node: &NodeProto,
    opset: i64,
    (args, narrow): (Vec<Arg<'b>>, Vec<Option<crate::narrow::Narrow>>),
) -> Lowered<'b> {
    let b = Builder::new("fold");
    let inputs = ScratchInputs { b: &b, feeds: RefCell::default(), cache: RefCell::default() };
    // Dropping the scratch handles before `b` is finished: only values leave this function.
    let lowered: Result<Vec<Option<Value>>, Fail> = {
        // The scratch builder lives only here; the arguments are all known, so no handle of
        // the caller's builder is among them.
        let args: Vec<Arg<'_>> = args
            .into_iter()
            .map(|a| match a {
                Arg::Known(k, v) => Arg::Known(k, v),
                _ => Arg::Absent,
            })
            .collect();
        let cx = Cx::new(&b, node, opset, (args, narrow), &inputs);
        let outs = lower_node(&cx)?;
        if let Some(e) = b.take_errors().first() {
            return Err(Fail::Bad(format!("`{}`: {}", e.op, e.message)));
        }
        let mut known = Vec::with_capacity(outs.len());
        for (i, o) in outs.into_iter().enumerate() {
            known.push(match o {
                Out::Known(v) => Some(v),
                Out::Dyn(t) => {
                    b.output(&format!("o{i}"), t);
                    None
                }
            });
        }
        Ok(known)
    };
    let mut known = lowered?;
    let feeds = inputs.feeds.into_inner();
    let graph = b.finish().map_err(|e| Fail::Bad(format!("folding at import time: {e}")))?;
    let mut computed = if graph.outputs().is_empty() {
        Vec::new()
    } else {
        kiln_ir::interp::run(&graph, &feeds).map_err(|e| Fail::Bad(format!("folding at import time: {e}")))?
    }
    .into_iter();
    for slot in known.iter_mut().filter(|k| k.is_none()) {
        *slot = computed.next();
    }
    Ok(known.into_iter().map(|v| Out::Known(v.expect("one computed value per run-time output"))).collect())
}
