//! Graphviz DOT rendering of a graph, for pictures of the IR.

use std::fmt::Write;

use crate::graph::Graph;
use crate::op::{Op, OpKind};
use crate::print::{attrs, value_name};

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The graph as a DOT digraph: one box per node (name, op, attributes, type), an edge per
/// operand labelled with its position, outputs as double octagons.
pub fn to_dot(graph: &Graph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph \"{}\" {{", escape(graph.name()));
    s.push_str("  rankdir=TB;\n  node [shape=box, fontname=\"monospace\", fontsize=10];\n");
    for (id, node) in graph.nodes() {
        let mut label = format!("{} = {}", value_name(graph, id), node.op.name());
        if let Op::Const { value } = &node.op {
            let _ = write!(label, " {value}");
        }
        let a = attrs(&node.op);
        if !a.is_empty() {
            let _ = write!(label, "\\n{}", escape(&a));
        }
        let _ = write!(label, "\\n{}", node.ty);
        let style = match node.op.kind() {
            OpKind::Leaf if matches!(node.op, Op::Input { .. }) => ", style=filled, fillcolor=\"#dbeafe\"",
            OpKind::Leaf => ", style=filled, fillcolor=\"#fef3c7\"",
            OpKind::Constant
            | OpKind::Random
            | OpKind::Elementwise
            | OpKind::Reduction
            | OpKind::Movement
            | OpKind::Contraction
            | OpKind::Indexing => "",
        };
        let _ = writeln!(s, "  n{} [label=\"{}\"{style}];", id.index(), escape(&label).replace("\\\\n", "\\n"));
        for (pos, a) in node.args.iter().enumerate() {
            let _ = writeln!(s, "  n{} -> n{} [label=\"{pos}\"];", a.index(), id.index());
        }
    }
    for (i, o) in graph.outputs().iter().enumerate() {
        let _ = writeln!(s, "  out{i} [label=\"{}\", shape=doubleoctagon];", escape(&o.name));
        let _ = writeln!(s, "  n{} -> out{i};", o.value.index());
    }
    s.push_str("}\n");
    s
}
