//! The lowered schedule every backend translates: built, verified and printed for every zoo
//! graph (forward and training step, fused and unfused); deliberately corrupted schedules are
//! rejected with an error naming the step; independent steps share a level; the JIT, the
//! library builder and the GPU program all take the one schedule.

use kiln::frontend::optim::Optimizer;
use kiln::ir::{DType, Graph, parse_graph};
use kiln::passes::fuse::Mode;
use kiln::runtime::schedule::dag::{Dependency, StepDag};
use kiln::runtime::schedule::{Buffer, Schedule, ScheduleError, Work};

/// The optimized forward graph and SGD training step of every zoo model.
fn zoo_graphs() -> Vec<Graph> {
    let pipeline = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap();
    let mut out = Vec::new();
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(2, DType::F32).unwrap() {
            let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph;
            for g in [m.graph.clone(), step] {
                out.push(pipeline.run(&g).unwrap().0);
            }
        }
    }
    out
}

#[test]
fn every_zoo_graph_lowers_to_a_verified_schedule() {
    for g in zoo_graphs() {
        for mode in [Mode::Fused, Mode::Unfused] {
            let s = Schedule::build(&g, mode).unwrap();
            s.verify().unwrap_or_else(|e| panic!("@{}: {e}", g.name()));
            let copies = s.steps.iter().filter(|st| matches!(st.work, Work::CopyOut(_))).count();
            assert_eq!(s.steps.len(), s.groups.len() + copies, "@{}", g.name());
            assert!(s.arena_bytes >= s.plan.peak_bytes);
            let text = s.to_string();
            assert!(text.starts_with(&format!("schedule @{}: {} steps", g.name(), s.steps.len())), "{text}");
            assert_eq!(text.lines().count(), s.steps.len() + 1);
            assert!(s.levels() >= 1 && s.levels() <= s.steps.len());
            let dot = s.to_dot();
            assert!(dot.starts_with("digraph") && dot.matches("shape = box").count() == s.steps.len());
        }
    }
}

/// A training step with arena buffers, products and output copies.
fn mlp_step() -> Schedule {
    let m = kiln::zoo::mnist_mlp(4).unwrap();
    let step = kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph;
    let g = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).unwrap().run(&step).unwrap().0;
    Schedule::build(&g, Mode::Fused).unwrap()
}

/// The first pair of steps `(a, b)`, `a < b`, where `b` reads what `a` wrote in the arena.
fn producer_and_reader(s: &Schedule) -> (usize, usize) {
    for (b, step) in s.steps.iter().enumerate() {
        if step.group.is_none() {
            continue;
        }
        for r in &step.reads {
            let a = s.steps.iter().position(|p| p.group.is_some() && p.node == *r);
            if let Some(a) = a
                && matches!(s.steps[a].out, Buffer::Arena { .. })
                && matches!(s.steps[b].out, Buffer::Arena { .. })
            {
                return (a, b);
            }
        }
    }
    panic!("no arena producer and reader in\n{s}")
}

#[test]
fn a_buffer_placed_over_a_live_one_is_rejected_naming_the_step() {
    let mut s = mlp_step();
    s.verify().unwrap();
    let (a, b) = producer_and_reader(&s);
    let Buffer::Arena { offset, .. } = s.steps[a].out else { unreachable!() };
    let Buffer::Arena { bytes, .. } = s.steps[b].out else { unreachable!() };
    s.steps[b].out = Buffer::Arena { offset, bytes };
    let e = s.verify().unwrap_err();
    assert!(matches!(e, ScheduleError::Overlap { step, other_step, .. } if step == b && other_step == a), "{e}");
    let message = e.to_string();
    assert!(message.starts_with(&format!("step {b} (")) && message.contains("still live"), "{message}");
}

#[test]
fn a_read_before_its_write_is_rejected_naming_the_step() {
    let mut s = mlp_step();
    let (a, b) = producer_and_reader(&s);
    let reader = s.steps.remove(b);
    let node = s.steps[a].node.index();
    s.steps.insert(a, reader);
    let e = s.verify().unwrap_err();
    assert!(matches!(e, ScheduleError::ReadBeforeWrite { step, .. } if step == a), "{e}");
    assert!(e.to_string().contains(&format!("reads %{node} before any step writes it")), "{e}");
}

#[test]
fn accesses_outside_the_arena_and_broken_levels_are_rejected() {
    let mut s = mlp_step();
    s.arena_bytes = s.plan.peak_bytes / 2;
    assert!(matches!(s.verify().unwrap_err(), ScheduleError::OutOfBounds { .. }));

    let mut s = mlp_step();
    for step in &mut s.steps {
        step.level = 0;
    }
    let e = s.verify().unwrap_err();
    assert!(matches!(e, ScheduleError::Level { .. }), "{e}");
    assert!(e.to_string().contains("depends on step"), "{e}");
}

#[test]
fn independent_steps_share_a_level() {
    // Two products of unrelated operands: independent, so both at level 0; the sum of their
    // results comes after both.
    let g = parse_graph(
        "func @two(%a: f32[8,16], %b: f32[16,4], %c: f32[8,32], %d: f32[32,4]) -> (p: f32[8,4], q: f32[8,4], y: f32[8,4]) {
  %p = matmul %a, %b : f32[8,4]
  %q = matmul %c, %d : f32[8,4]
  %y = add %p, %q : f32[8,4]
  return %p, %q, %y
}
",
    )
    .unwrap();
    let s = Schedule::build(&g, Mode::Fused).unwrap();
    let levels: Vec<(&str, usize)> = s.steps.iter().map(|st| (st.work.name(), st.level)).collect();
    assert_eq!(levels, [("gemm", 0), ("gemm", 0), ("kernel", 1)], "{s}");
    assert_eq!(s.levels(), 2);
    let sets = StepDag::ready_sets(&s.steps.iter().map(|st| st.level).collect::<Vec<_>>());
    assert_eq!(sets, [vec![0, 1], vec![2]], "{s}");
    assert_eq!(StepDag::new(&s).before(2), [(0, Dependency::Data), (1, Dependency::Data)]);
}

#[test]
fn the_jit_and_the_gpu_program_take_the_one_schedule() {
    for g in zoo_graphs().into_iter().take(4) {
        let s = Schedule::build(&g, Mode::Fused).unwrap();
        let exe = kiln::runtime::jit::compile(&g, Default::default()).unwrap();
        assert_eq!(exe.schedule().to_string(), s.to_string());
        assert_eq!(exe.memory_plan(), &s.plan);
        let program = kiln::runtime::gpu::program::program(&g).unwrap();
        // The device's arena: the plan's buffers, then the largest separate product.
        let product = match s.scratch.product {
            Buffer::Arena { offset, .. } => offset,
            _ => unreachable!(),
        };
        assert!(program.buffers[0].bytes >= product && program.buffers[0].bytes <= s.arena_bytes);
    }
}
