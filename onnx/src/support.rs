//! What the importer supports, checked before anything is lowered so that a model that cannot
//! be imported gets one error listing every unsupported node.

use std::collections::HashMap;

use crate::error::{ImportError, Unsupported};
use crate::proto::{GraphProto, ModelProto, NodeProto};

/// The lowest `ai.onnx` opset the importer reads. Opsets before 13 are read with their older
/// forms (attributes where later opsets take inputs); the conformance suite's node tests use
/// each op's own opset, from 1 on (`docs/onnx.md`).
pub const MIN_OPSET: i64 = 1;

/// The highest `ai.onnx` opset the importer knows (that of `onnx` 1.23).
pub const MAX_OPSET: i64 = 28;

/// The `ai.onnx` ops the importer commits to (`docs/onnx.md`): the conformance suite reports
/// the share of their node tests it runs.
pub const CORE_OPS: &[&str] = &[
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Neg",
    "Abs",
    "Sqrt",
    "Exp",
    "Log",
    "Reciprocal",
    "Sin",
    "Cos",
    "Relu",
    "LeakyRelu",
    "Sigmoid",
    "Tanh",
    "Gelu",
    "Erf",
    "Softmax",
    "LogSoftmax",
    "MatMul",
    "Gemm",
    "Conv",
    "ConvTranspose",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "BatchNormalization",
    "LayerNormalization",
    "Dropout",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Expand",
    "Concat",
    "Split",
    "Slice",
    "Pad",
    "Gather",
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "Equal",
    "Less",
    "Greater",
    "Where",
    "Cast",
    "Max",
    "Min",
    "Clip",
    "Constant",
    "ConstantOfShape",
    "Identity",
    "Shape",
    "LSTM",
];

/// The other `ai.onnx` ops the importer translates.
pub const MORE_OPS: &[&str] = &[
    "Tanh",
    "Floor",
    "Ceil",
    "Sign",
    "Sum",
    "Mean",
    "HardSigmoid",
    "Softplus",
    "Elu",
    "Selu",
    "LessOrEqual",
    "GreaterOrEqual",
    "Not",
    "And",
    "Or",
    "Xor",
    "GlobalMaxPool",
    "LRN",
    "ReduceMin",
    "Size",
    "CastLike",
    "Range",
];

/// True if the importer translates the `ai.onnx` op `op`.
pub fn supports(op: &str) -> bool {
    CORE_OPS.contains(&op) || MORE_OPS.contains(&op)
}

/// The model's `ai.onnx` opset, or every reason the model cannot be imported: unsupported
/// ops, other domains, an opset out of range.
pub(crate) fn check(model: &ModelProto, graph: &GraphProto) -> Result<i64, ImportError> {
    let mut opsets: HashMap<&str, i64> = HashMap::new();
    for o in &model.opset_import {
        let domain = if o.domain() == "ai.onnx" { "" } else { o.domain() };
        opsets.insert(domain, o.version());
    }
    let uses_default = graph.node.iter().any(|n| matches!(n.domain(), "" | "ai.onnx"));
    let opset = match opsets.get("") {
        Some(&v) => v,
        // A graph of other domains' nodes only: each is reported below.
        None if !uses_default => 0,
        None => {
            return Err(ImportError::Invalid("the model's nodes use ai.onnx but it imports no ai.onnx opset".into()));
        }
    };
    let mut bad = Vec::new();
    if uses_default && !(MIN_OPSET..=MAX_OPSET).contains(&opset) {
        bad.push(Unsupported {
            node: "(model)".into(),
            op: "opset_import".into(),
            opset,
            reason: format!("ai.onnx opset {opset} is outside the supported {MIN_OPSET}..={MAX_OPSET}"),
        });
    }
    for (i, node) in graph.node.iter().enumerate() {
        let domain = if node.domain() == "ai.onnx" { "" } else { node.domain() };
        let node_opset = opsets.get(domain).copied().unwrap_or(0);
        let reason = if !domain.is_empty() {
            Some(format!("domain `{domain}` is not supported (only ai.onnx)"))
        } else if !supports(node.op_type()) {
            Some("op not supported".to_string())
        } else {
            None
        };
        if let Some(reason) = reason {
            let op =
                if domain.is_empty() { node.op_type().to_string() } else { format!("{domain}.{}", node.op_type()) };
            bad.push(Unsupported { node: node_label(node, i), op, opset: node_opset, reason });
        }
    }
    if bad.is_empty() { Ok(opset) } else { Err(ImportError::Unsupported(bad)) }
}

/// A node's name for messages: its own, or `#index (first output)` when it has none.
pub(crate) fn node_label(node: &NodeProto, index: usize) -> String {
    if !node.name().is_empty() {
        node.name().to_string()
    } else {
        match node.output.first() {
            Some(o) if !o.is_empty() => format!("#{index} (output {o})"),
            _ => format!("#{index}"),
        }
    }
}
