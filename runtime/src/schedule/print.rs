//! The text form of a schedule (`kiln dump --stage schedule`): a header with the arena's
//! layout, then one line per step: its position and level, what it does, the node it writes
//! (with the group's other members), what it reads and where it writes.

use std::fmt;

use super::{Buffer, Contraction, ConvKind, GemmOperand, Schedule, SharedCols, Step, Work};

impl fmt::Display for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Buffer::Input(i) => write!(f, "input {i}"),
            Buffer::Param(i) => write!(f, "param {i}"),
            Buffer::Output(i) => write!(f, "output {i}"),
            Buffer::Arena { offset, bytes } => write!(f, "arena[{offset}..{}]", offset + bytes),
        }
    }
}

fn operand(o: &GemmOperand) -> String {
    format!("%{}{}", o.node.index(), if o.transposed { "ᵀ" } else { "" })
}

impl Schedule {
    /// What a step does, in a few words (the op, the call's shape).
    fn detail(&self, step: &Step) -> String {
        let g = &self.graph;
        match &step.work {
            Work::Kernel(k) => match &k.reduce {
                Some((op, axes)) => format!("{op:?} over axes {axes:?} of {:?}", k.space),
                None => format!("over {:?}", k.space),
            },
            Work::Contraction { call: Contraction::Gemm(c), epilogue } => {
                let s = c.shape;
                let e = match epilogue {
                    Some(_) => format!(", product %{} in scratch, epilogue", c.product.index()),
                    None => String::new(),
                };
                format!("{}x{}x{}x{} (batch m n k) {} · {}{e}", s.batch, s.m, s.n, s.k, operand(&c.a), operand(&c.b))
            }
            Work::Contraction { call: Contraction::Conv { kind, geometry: c, cols, .. }, .. } => {
                let kind = match kind {
                    ConvKind::Forward => "forward",
                    ConvKind::GradInput => "grad input",
                    ConvKind::GradWeight => "grad weight",
                };
                let cols = match cols {
                    SharedCols::No => String::new(),
                    SharedCols::Keep(s) => format!(", keeps columns in slot {s}"),
                    SharedCols::Reuse(s) => format!(", reads columns of slot {s}"),
                };
                format!("{kind} {}x{}x{}x{} * {}x{}x{} -> {}x{}{cols}", c.n, c.c, c.h, c.w, c.o, c.kh, c.kw, c.oh, c.ow)
            }
            Work::Movement | Work::Op => g.node(step.node).op.name().to_string(),
            Work::Alias { source } => format!("bytes of %{}", source.index()),
            Work::CopyOut(i) => format!("to output {i} ({})", g.outputs()[*i].name),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let g = &self.graph;
        writeln!(
            f,
            "schedule @{}: {} steps in {} levels, arena {} bytes (plan peak {}, naive {}; product scratch {}, columns scratch {})",
            g.name(),
            self.steps.len(),
            self.levels(),
            self.arena_bytes,
            self.plan.peak_bytes,
            self.plan.naive_bytes,
            self.scratch.product,
            self.scratch.columns,
        )?;
        for (si, s) in self.steps.iter().enumerate() {
            let members = match s.group.map(|gi| &self.groups[gi].members) {
                Some(m) if m.len() > 1 => {
                    let inner: Vec<String> = m[..m.len() - 1].iter().map(|n| format!("%{}", n.index())).collect();
                    format!(" {{{}}}", inner.join(" "))
                }
                _ => String::new(),
            };
            let reads: Vec<String> = s
                .reads
                .iter()
                .map(|r| match self.buffer(*r) {
                    Some(b) => format!("%{} ({b})", r.index()),
                    None => format!("%{} (?)", r.index()),
                })
                .collect();
            let reads = if reads.is_empty() { String::new() } else { format!(" reads {}", reads.join(", ")) };
            let sides: String = s.side_outs.iter().map(|(n, b)| format!(", %{} ({b})", n.index())).collect();
            writeln!(
                f,
                "  s{si:<4} L{:<4} {:<8} %{}{members}: {}{reads} -> {}{sides}",
                s.level,
                s.work.name(),
                s.node.index(),
                self.detail(s),
                s.out
            )?;
        }
        Ok(())
    }
}
