//! The cost of an e-node for extraction: predicted nanoseconds under the measured cost model
//! ([`crate::cost_model`]), aware that chains of elementwise ops fuse (their intermediates never
//! reach memory, so they pay their arithmetic only) and that a reshape is a view.

use kiln_ir::{Op, TensorType};

use crate::cost_model::{Arithmetic, CostModel, arithmetic, node_features};

/// The cost of computing one node once, given its result and operand types, under `model`.
pub fn node_cost(model: &CostModel, op: &Op, out: &TensorType, args: &[&TensorType]) -> f64 {
    let n = out.numel() as f64;
    match op {
        Op::Input { .. } | Op::Param { .. } | Op::Const { .. } | Op::Reshape | Op::StopGradient => 0.0,
        // Index arithmetic that fuses into the consumer: a little, so fewer views win ties.
        Op::Broadcast { .. } | Op::Iota { .. } => {
            0.1 * n * model.arithmetic_ns(Arithmetic { simple: 1.0, ..Default::default() })
        }
        Op::Slice { step, .. } if step.iter().all(|&s| s == 1) => {
            0.1 * n * model.arithmetic_ns(Arithmetic { simple: 1.0, ..Default::default() })
        }
        // Elementwise work fuses: pay the arithmetic, not the traffic.
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => {
            n * model.arithmetic_ns(arithmetic(op).unwrap_or_default())
        }
        // Everything else is a step of its own: its family's prediction.
        _ => model.predict(&node_features(op, out, args)),
    }
}
