//! The text form of the IR (`.kir`): `Display` for [`Graph`].
//!
//! Leaves are printed in the signature under their names, every other node as `%N` with `N`
//! its arena index, never renumbered, so snapshot diffs stay small. [`crate::parse`] reads the
//! same text back; printing the parsed graph gives the same text.
//!
//! ```text
//! func @affine(
//!     %x: f32[2,3],
//!     %w: f32[3,4] param uniform(-0.5, 0.5),
//! ) -> (y: f32[2,4]) {
//!   %2 = matmul %x, %w : f32[2,4]
//!   return %2
//! }
//! ```

use std::fmt::{self, Write};

use crate::graph::{Graph, NodeId};
use crate::op::{ConvAttrs, Op};

/// The name a node is printed under: its leaf name, or `%N`.
pub fn value_name(graph: &Graph, id: NodeId) -> String {
    match graph.node(id).op.leaf_name() {
        Some(name) => format!("%{name}"),
        None => format!("%{}", id.index()),
    }
}

fn list(v: &[usize]) -> String {
    let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", items.join(","))
}

fn conv_attrs(c: &ConvAttrs) -> String {
    // The default layout is left out, so graphs without channels-last convolutions print as
    // they always have.
    let layout = match c.layout {
        crate::ConvLayout::Nchw => String::new(),
        l => format!(", layout={}", l.name()),
    };
    format!(
        "{{stride={}, padding={}, dilation={}, groups={}{layout}}}",
        list(&c.stride),
        list(&c.padding),
        list(&c.dilation),
        c.groups
    )
}

/// The attribute block of an op (`{axes=[1]}`), or an empty string if it has none.
pub fn attrs(op: &Op) -> String {
    match op {
        Op::Input { .. }
        | Op::Param { .. }
        | Op::Const { .. }
        | Op::Unary(_)
        | Op::StopGradient
        | Op::Binary(_)
        | Op::Compare(_)
        | Op::Select
        | Op::Cast
        | Op::Reshape
        | Op::Matmul => String::new(),
        Op::Iota { axis } | Op::Concat { axis } | Op::Gather { axis } | Op::ScatterAdd { axis } => {
            format!("{{axis={axis}}}")
        }
        Op::Rng { dist, stream } => format!("{{dist={}, stream={stream}}}", dist.name()),
        Op::Reduce { axes, .. } => format!("{{axes={}}}", list(axes)),
        Op::Permute { perm } => format!("{{perm={}}}", list(perm)),
        Op::Broadcast { dims } => format!("{{dims={}}}", list(dims)),
        Op::Slice { start, stop, step } => {
            format!("{{start={}, stop={}, step={}}}", list(start), list(stop), list(step))
        }
        Op::Pad { low, high, value } => {
            format!("{{low={}, high={}, value={value}}}", list(low), list(high))
        }
        Op::Conv2d(c) | Op::Conv2dGradInput(c) | Op::Conv2dGradWeight(c) => conv_attrs(c),
    }
}

/// One node as a statement, without indentation: `%4 = add %2, %3 : f32[2,3]`.
pub fn statement(graph: &Graph, id: NodeId) -> String {
    let node = graph.node(id);
    let mut s = format!("{} = {}", value_name(graph, id), node.op.name());
    if let Op::Const { value } = &node.op {
        let _ = write!(s, " {value}");
    }
    let args: Vec<String> = node.args.iter().map(|&a| value_name(graph, a)).collect();
    if !args.is_empty() {
        let _ = write!(s, " {}", args.join(", "));
    }
    let a = attrs(&node.op);
    if !a.is_empty() {
        let _ = write!(s, " {a}");
    }
    let _ = write!(s, " : {}", node.ty);
    s
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "func @{}(", self.name())?;
        let mut any_leaf = false;
        for (id, node) in self.leaves() {
            any_leaf = true;
            write!(f, "\n    {}: {}", value_name(self, id), node.ty)?;
            if let Op::Param { init, .. } = &node.op {
                write!(f, " param {init}")?;
            }
            f.write_str(",")?;
        }
        if any_leaf {
            f.write_str("\n")?;
        }
        f.write_str(") -> (")?;
        for (i, o) in self.outputs().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}: {}", o.name, self.ty(o.value))?;
        }
        f.write_str(") {\n")?;
        for (id, node) in self.nodes() {
            if !node.op.is_leaf() {
                writeln!(f, "  {}", statement(self, id))?;
            }
        }
        let rets: Vec<String> = self.outputs().iter().map(|o| value_name(self, o.value)).collect();
        if rets.is_empty() {
            f.write_str("  return\n")?;
        } else {
            writeln!(f, "  return {}", rets.join(", "))?;
        }
        f.write_str("}\n")
    }
}

/// Prints several functions as one `.kir` module, separated by blank lines.
pub fn module_to_string(graphs: &[Graph]) -> String {
    let texts: Vec<String> = graphs.iter().map(|g| g.to_string()).collect();
    texts.join("\n")
}
