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
use crate::narrow::Narrow;
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

/// Folds `node` (every input known): its outputs as known values, or `None` when an output
/// would be larger than folding takes (a `ConstantOfShape` of a large shape, say), for the
/// caller to translate it for run time instead.
pub(crate) fn fold<'b>(
    node: &NodeProto,
    opset: i64,
    (args, narrow): (Vec<Arg<'b>>, Vec<Option<Narrow>>),
) -> Option<Lowered<'b>> {
    let b = Builder::new("fold");
    let inputs = ScratchInputs { b: &b, feeds: RefCell::default(), cache: RefCell::default() };
    let known = match translate(&inputs, node, opset, (args, narrow)) {
        Ok(Some(known)) => known,
        Ok(None) => return None,
        Err(e) => return Some(Err(e)),
    };
    let feeds = inputs.feeds.into_inner();
    let computed = b.finish().map_err(|e| e.to_string()).and_then(|graph| {
        if graph.outputs().is_empty() {
            Ok(Vec::new())
        } else {
            kiln_ir::interp::run(&graph, &feeds).map_err(|e| e.to_string())
        }
    });
    let mut computed = match computed {
        Ok(c) => c.into_iter(),
        Err(e) => return Some(Err(Fail::Bad(format!("folding at import time: {e}")))),
    };
    // The run-time outputs come back in the order they were named.
    let values = known.into_iter().map(|k| k.or_else(|| computed.next()));
    Some(Ok(values.map(|v| Out::Known(v.expect("one computed value per run-time output"))).collect()))
}

/// `node` translated into the scratch function of `inputs`: each output already known, or
/// `None` where the function computes it (as its next output); `Ok(None)` when an output is
/// too large to fold.
fn translate(
    inputs: &ScratchInputs<'_>,
    node: &NodeProto,
    opset: i64,
    (args, narrow): (Vec<Arg<'_>>, Vec<Option<Narrow>>),
) -> Result<Option<Vec<Option<Value>>>, Fail> {
    let b = inputs.b;
    // Only known arguments reach here, so no handle of the caller's builder is among them.
    let args: Vec<Arg<'_>> = args
        .into_iter()
        .map(|a| match a {
            Arg::Known(k, v) => Arg::Known(k, v),
            _ => Arg::Absent,
        })
        .collect();
    let cx = Cx::new(b, node, opset, (args, narrow), inputs);
    let outs = lower_node(&cx)?;
    if let Some(e) = b.take_errors().first() {
        return Err(Fail::Bad(format!("`{}`: {}", e.op, e.message)));
    }
    if outs.iter().any(|o| matches!(o, Out::Dyn(t) if t.ty().numel() > FOLD_MAX_ELEMENTS)) {
        return Ok(None);
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
    Ok(Some(known))
}
