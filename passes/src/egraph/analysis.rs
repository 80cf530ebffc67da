//! The e-class analysis: every e-class knows its type (dtype and shape) and, when every
//! element is the same known value, that constant. Rules read shapes from here; constants
//! fold by adding a `const` e-node to their class.

use egg::{Analysis, DidMerge, Id};
use kiln_ir::interp::{Value, eval_node};
use kiln_ir::{Literal, Node, Op, ReduceOp, TensorType};

use super::lang::{EGraph, ENode};

/// Per-class facts.
#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    /// The type every node of the class has.
    pub ty: TensorType,
    /// The value of every element, if known.
    pub constant: Option<Literal>,
}

/// The analysis. It also carries the cost model extraction prices nodes with.
#[derive(Clone, Debug)]
pub struct TypeAnalysis {
    /// The model extraction prices e-nodes with.
    pub cost: crate::cost_model::CostModel,
}

impl Default for TypeAnalysis {
    /// The analysis with the cost model in use ([`crate::cost_model::CostModel::current`]).
    fn default() -> Self {
        TypeAnalysis { cost: crate::cost_model::CostModel::current().clone() }
    }
}

/// The type of `enode` from its children's types. Rules only add well-typed nodes (checked
/// before adding), so this cannot fail for nodes in the e-graph.
pub fn type_of(eg: &EGraph, enode: &ENode) -> Result<TensorType, kiln_ir::TypeError> {
    let tys: Vec<&TensorType> = enode.args.iter().map(|a| &eg[*a].data.ty).collect();
    kiln_ir::types::infer(&enode.op, &tys, enode.declared.as_ref())
}

/// Evaluates an elementwise op on scalar constants with the interpreter's meaning.
fn fold_elementwise(enode: &ENode, arg_tys: &[TensorType], vals: &[f64], out: &TensorType) -> Option<Literal> {
    let args: Vec<Value> =
        arg_tys.iter().zip(vals).map(|(t, v)| Value::splat(&TensorType::new(t.dtype, []), *v)).collect();
    let refs: Vec<&Value> = args.iter().collect();
    let node = Node { op: enode.op.clone(), args: vec![], ty: TensorType::new(out.dtype, []) };
    eval_node(&node, &refs).ok().map(|v| Literal(v.to_f64_vec()[0]))
}

fn constant_of(eg: &EGraph, enode: &ENode, ty: &TensorType) -> Option<Literal> {
    let consts: Option<Vec<f64>> = enode.args.iter().map(|a| eg[*a].data.constant.map(|l| l.0)).collect();
    let arg_tys: Vec<TensorType> = enode.args.iter().map(|a| eg[*a].data.ty.clone()).collect();
    match &enode.op {
        Op::Const { value } => Some(*value),
        Op::Unary(_) | Op::Binary(_) | Op::Compare(_) | Op::Select | Op::Cast => {
            fold_elementwise(enode, &arg_tys, &consts?, ty)
        }
        Op::StopGradient | Op::Reshape | Op::Permute { .. } | Op::Broadcast { .. } | Op::Slice { .. } => {
            consts?.first().map(|v| Literal(*v))
        }
        Op::Pad { value, .. } => {
            let c = consts?[0];
            (c.to_bits() == value.0.to_bits()).then_some(*value)
        }
        Op::Concat { .. } => {
            let c = consts?;
            c.windows(2).all(|w| w[0].to_bits() == w[1].to_bits()).then(|| Literal(c[0]))
        }
        Op::Reduce { op, axes } => {
            let c = consts?[0];
            let count: usize = axes.iter().map(|&a| arg_tys[0].dims()[a]).product();
            match op {
                // Summing `count` copies, rounded once to the dtype.
                ReduceOp::Sum => {
                    Some(Literal(kiln_ir::Value::splat(ty, c * count as f64).to_f64_vec().first().copied()?))
                }
                ReduceOp::Max => (count > 0).then_some(Literal(c)),
            }
        }
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Iota { .. }
        | Op::Rng { .. }
        | Op::Matmul
        | Op::Conv2d(_)
        | Op::Conv2dGradInput(_)
        | Op::Conv2dGradWeight(_)
        | Op::Gather { .. }
        | Op::ScatterAdd { .. } => None,
    }
}

impl Analysis<ENode> for TypeAnalysis {
    type Data = Data;

    fn make(eg: &mut EGraph, enode: &ENode, _id: Id) -> Data {
        // Only well-typed nodes are added (rules check before adding), so the fallback is
        // never taken; it keeps a malformed rule from panicking mid-run.
        let ty = type_of(eg, enode).unwrap_or_else(|_| {
            debug_assert!(false, "ill-typed e-node {enode:?}");
            enode.declared.clone().unwrap_or_else(|| TensorType::new(kiln_ir::DType::F32, []))
        });
        let constant = if ty.numel() == 0 { None } else { constant_of(eg, enode, &ty) };
        Data { ty, constant }
    }

    fn merge(&mut self, a: &mut Data, b: Data) -> DidMerge {
        debug_assert_eq!(a.ty, b.ty, "merged e-classes of different types");
        match (a.constant, b.constant) {
            (None, Some(c)) => {
                a.constant = Some(c);
                DidMerge(true, false)
            }
            (Some(_), None) => DidMerge(false, true),
            _ => DidMerge(false, false),
        }
    }

    fn modify(eg: &mut EGraph, id: Id) {
        let data = &eg[id].data;
        if let Some(value) = data.constant {
            let has_const = eg[id].nodes.iter().any(|n| matches!(n.op, Op::Const { .. }));
            if !has_const {
                let ty = data.ty.clone();
                let c = eg.add(ENode { op: Op::Const { value }, declared: Some(ty), args: vec![] });
                eg.union(id, c);
            }
        }
    }
}
