//! Common-subexpression elimination modulo commutativity.
//!
//! Building a graph already interns identical nodes; this pass also merges nodes that differ
//! only in the order of a commutative op's operands (`a + b` and `b + a`), by putting those
//! operands in arena order and re-interning. Dead nodes are dropped on the way.

use kiln_ir::{BinaryOp, CmpOp, Graph, GraphError, Op};

use crate::pipeline::Pass;
use crate::rebuild::rebuild;

/// The CSE pass.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cse;

/// True for ops whose two operands can be swapped.
pub fn is_commutative(op: &Op) -> bool {
    matches!(op, Op::Binary(BinaryOp::Add | BinaryOp::Mul | BinaryOp::Max | BinaryOp::Min) | Op::Compare(CmpOp::Eq))
}

impl Pass for Cse {
    fn name(&self) -> &'static str {
        "cse"
    }

    fn run(&self, graph: &Graph) -> Result<(Graph, String), GraphError> {
        let live = graph.live_mask();
        let g = rebuild(
            graph,
            |id| live[id.index()],
            |op, args| {
                if is_commutative(op) {
                    args.sort();
                }
            },
        )?;
        Ok((g, String::new()))
    }
}
