//! The schedule verifier: every value a step reads is written before it, no two buffers live
//! at the same time share arena bytes, every access lies inside its buffer, and the levels
//! respect the step DAG. [`Schedule::build`] output is checked by it in debug builds and by
//! the tests; a failure names the step.

use kiln_ir::NodeId;
use thiserror::Error;

use super::dag::StepDag;
use super::{Buffer, Contraction, Schedule, Work, fits};

/// A group that cannot be lowered, or a broken invariant of a schedule, naming the step.
#[derive(Debug, Error)]
pub enum ScheduleError {
    /// A group could not be lowered to a kernel.
    #[error(transparent)]
    Lower(#[from] kiln_codegen::kernel::LowerError),
    /// A value a group stores has no place in the memory plan (a compiler bug).
    #[error("%{node} is stored by its group but has no buffer in the memory plan")]
    Unplanned {
        /// The node.
        node: usize,
    },
    /// A step reads a value no earlier step wrote (and no caller provides).
    #[error("step {step} ({work} %{node}): reads %{read} before any step writes it")]
    ReadBeforeWrite {
        /// The step.
        step: usize,
        /// What it does.
        work: &'static str,
        /// The node it writes.
        node: usize,
        /// The node it reads.
        read: usize,
    },
    /// Two buffers live at the same time share arena bytes.
    #[error(
        "step {step} ({work} %{node}): its buffer arena[{start}..{end}] overlaps %{other}'s (written by step {other_step}), which is still live"
    )]
    Overlap {
        /// The later step.
        step: usize,
        /// What it does.
        work: &'static str,
        /// The node it writes.
        node: usize,
        /// Its buffer's first byte.
        start: usize,
        /// One past its buffer's last byte.
        end: usize,
        /// The step that wrote the other buffer.
        other_step: usize,
        /// The other buffer's node.
        other: usize,
    },
    /// An access reaches outside its buffer.
    #[error("step {step} ({work} %{node}): {what}")]
    OutOfBounds {
        /// The step.
        step: usize,
        /// What it does.
        work: &'static str,
        /// The node it writes.
        node: usize,
        /// Which access, and how far.
        what: String,
    },
    /// A step's level is not above the level of a step it depends on.
    #[error("step {step} is at level {level}, but depends on step {before} at level {before_level}")]
    Level {
        /// The step.
        step: usize,
        /// Its level.
        level: usize,
        /// The step it depends on.
        before: usize,
        /// That step's level.
        before_level: usize,
    },
}

impl Schedule {
    /// Checks the invariants of the module's header.
    pub fn verify(&self) -> Result<(), ScheduleError> {
        self.check_reads()?;
        self.check_bounds()?;
        self.check_overlaps()?;
        self.check_levels()
    }

    fn step_error(&self, step: usize) -> (&'static str, usize) {
        let s = &self.steps[step];
        (s.work.name(), s.node.index())
    }

    /// Every read is of a leaf or of a value an earlier step wrote.
    fn check_reads(&self) -> Result<(), ScheduleError> {
        let g = &self.graph;
        let mut written = vec![false; g.len()];
        for (id, _) in g.leaves() {
            written[id.index()] = true;
        }
        for (si, s) in self.steps.iter().enumerate() {
            let pending = match s.work {
                Work::Alias { source } => vec![source],
                _ => s.reads.clone(),
            };
            if let Some(read) = pending.into_iter().find(|r| !written[r.index()]) {
                let (work, node) = self.step_error(si);
                return Err(ScheduleError::ReadBeforeWrite { step: si, work, node, read: read.index() });
            }
            if s.group.is_some() {
                written[s.node.index()] = true;
                for (n, _) in &s.side_outs {
                    written[n.index()] = true;
                }
            }
        }
        Ok(())
    }

    /// Elements of the buffer holding `n`'s value (its reshape source's type: the same count).
    fn elements(&self, n: NodeId) -> usize {
        self.graph.ty(n).numel()
    }

    /// Every step writes inside its buffer and reads inside its operands' buffers; every arena
    /// region lies inside the arena.
    fn check_bounds(&self) -> Result<(), ScheduleError> {
        let g = &self.graph;
        for (si, s) in self.steps.iter().enumerate() {
            let fail = |what: String| {
                let (work, node) = self.step_error(si);
                ScheduleError::OutOfBounds { step: si, work, node, what }
            };
            let written = std::iter::once((s.node, s.out)).chain(s.side_outs.iter().copied());
            for (node, buffer) in written {
                if let Buffer::Arena { offset, bytes } = buffer
                    && !matches!(s.work, Work::Alias { .. })
                {
                    let need = g.ty(node).size_bytes();
                    if bytes < need || offset + bytes > self.arena_bytes {
                        return Err(fail(format!(
                            "writes {need} bytes of %{} into arena[{offset}..{}] of an arena of {} bytes",
                            node.index(),
                            offset + bytes,
                            self.arena_bytes
                        )));
                    }
                }
            }
            if let Some(k) = self.kernel(si)
                && (k.side_outputs.len() != s.side_outs.len()
                    || k.side_outputs.iter().zip(&s.side_outs).any(|(side, (n, b))| {
                        side.node != *n
                            || !matches!(b, Buffer::Arena { .. } | Buffer::Output(_))
                            || g.ty(*n).numel() != k.space.iter().product::<usize>()
                    }))
            {
                return Err(fail("its kernel's side outputs are not the step's arena or output buffers".into()));
            }
            if let Work::Contraction { call: Contraction::Gemm(c), epilogue: Some(_) } = &s.work {
                let need = g.ty(c.product).size_bytes();
                let Buffer::Arena { offset, bytes } = self.scratch.product else {
                    return Err(fail("the product scratch is not in the arena".into()));
                };
                if bytes < need || offset + bytes > self.arena_bytes {
                    return Err(fail(format!("its product of {need} bytes does not fit the product scratch")));
                }
            }
            if let Some(k) = self.kernel(si) {
                for input in &k.inputs {
                    let len = self.elements(input.node);
                    if !fits(input, &k.space, len) {
                        return Err(fail(format!(
                            "kernel input %{} (offset {}, strides {:?} over {:?}) reaches past its {len} elements",
                            input.node.index(),
                            input.offset,
                            input.strides,
                            k.space
                        )));
                    }
                }
            }
            if let Work::Contraction { call: Contraction::Gemm(c), .. } = &s.work {
                for (name, o) in [("a", &c.a), ("b", &c.b)] {
                    let (rs, cs, bs) = o.strides();
                    let (batch, len) = (c.shape.batch, self.elements(o.node));
                    let empty = batch == 0 || o.rows == 0 || o.cols == 0;
                    let reach = (batch.max(1) - 1) as isize * bs
                        + (o.rows.max(1) - 1) as isize * rs
                        + (o.cols.max(1) - 1) as isize * cs;
                    if !empty && reach as usize >= len {
                        return Err(fail(format!(
                            "GEMM operand {name} (%{}) reaches element {reach} of {len}",
                            o.node.index()
                        )));
                    }
                }
            }
        }
        for (name, b) in [("product", self.scratch.product), ("columns", self.scratch.columns)] {
            if let Some(r) = b.arena_range()
                && (r.end > self.arena_bytes || (!r.is_empty() && r.start < self.plan.peak_bytes))
            {
                let last = self.steps.len().saturating_sub(1);
                return Err(ScheduleError::OutOfBounds {
                    step: last,
                    work: "scratch",
                    node: 0,
                    what: format!("the {name} scratch arena[{}..{}] is not past the plan's buffers", r.start, r.end),
                });
            }
        }
        Ok(())
    }

    /// No two arena buffers whose lives overlap share bytes. A buffer lives from the step
    /// that writes it to the last step that reads it.
    fn check_overlaps(&self) -> Result<(), ScheduleError> {
        // The last step reading each node's buffer.
        let mut last_read: Vec<usize> = vec![0; self.graph.len()];
        for (si, s) in self.steps.iter().enumerate() {
            for r in &s.reads {
                last_read[r.index()] = last_read[r.index()].max(si);
            }
        }
        // Every arena buffer a step owns: (step, node, bytes, last step it is live).
        let owned: Vec<(usize, NodeId, std::ops::Range<usize>, usize)> = self
            .steps
            .iter()
            .enumerate()
            .filter(|(_, s)| s.group.is_some() && !matches!(s.work, Work::Alias { .. }))
            .flat_map(|(si, s)| {
                std::iter::once((s.node, s.out)).chain(s.side_outs.iter().copied()).map(move |b| (si, b))
            })
            .filter_map(|(si, (n, b))| {
                b.arena_range().filter(|r| !r.is_empty()).map(|r| (si, n, r, last_read[n.index()].max(si)))
            })
            .collect();
        for (i, (a, na, ra, la)) in owned.iter().enumerate() {
            for (b, nb, rb, lb) in &owned[i + 1..] {
                let live_together = a <= lb && b <= la;
                if live_together && ra.start < rb.end && rb.start < ra.end {
                    let (later, r, other, other_step) = if b >= a { (*b, rb, na, *a) } else { (*a, ra, nb, *b) };
                    let (work, node) = self.step_error(later);
                    return Err(ScheduleError::Overlap {
                        step: later,
                        work,
                        node,
                        start: r.start,
                        end: r.end,
                        other_step,
                        other: other.index(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Every dependency goes from a lower level to a higher one.
    fn check_levels(&self) -> Result<(), ScheduleError> {
        let dag = StepDag::new(self);
        for (si, s) in self.steps.iter().enumerate() {
            for (p, _) in dag.before(si) {
                let before_level = self.steps[p].level;
                if before_level >= s.level {
                    return Err(ScheduleError::Level { step: si, level: s.level, before: p, before_level });
                }
            }
        }
        Ok(())
    }
}
