//! Multi-output kernels: a kernel whose value several kernels read joins one of its readers as
//! a side output when the cost model predicts that cheaper; never when the value is a graph
//! output or its reader takes it through a movement op; the merged partition is acyclic and
//! ordered; and compiled graphs give the same bits as unfused ones (where no transcendental is
//! involved, the interpreter's) on one and two threads.

mod common;

use common::*;
use kiln::Fusion;
use kiln::ir::{Graph, Value, interp, parse_graph};
use kiln::passes::fuse::{GroupKind, partition, partition_with_choices};
use kiln::passes::group_dag::GroupDag;

const T: &str = "f32[7,149]";

/// An LSTM-like cell: `e = exp x` and `q = e·c` are each read by two kernels (and `exp` is
/// never recomputed, nor `q` into a kernel reading `e` from memory), so fusion stores them;
/// `h = tanh q · e` and `d = q − x` are outputs (`d` reads `q`, which `h`'s kernel stores, so
/// the two kernels merge with `d` the root).
fn cell(extra_output: bool) -> Graph {
    let outputs =
        if extra_output { "h: f32[7,149], d: f32[7,149], e: f32[7,149]" } else { "h: f32[7,149], d: f32[7,149]" };
    let ret = if extra_output { "%h, %d, %e" } else { "%h, %d" };
    let text = format!(
        "func @cell(%x: {T}, %c: {T}) -> ({outputs}) {{
  %e = exp %x : {T}
  %q = mul %e, %c : {T}
  %t = tanh %q : {T}
  %h = mul %t, %e : {T}
  %d = sub %q, %x : {T}
  return {ret}
}}
"
    );
    parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn feeds() -> std::collections::HashMap<String, Value> {
    let n = 7 * 149;
    let x: Vec<f32> = pseudo(n, 11).iter().map(|v| (v * 2.0) as f32).collect();
    let c: Vec<f32> = pseudo(n, 12).iter().map(|v| *v as f32).collect();
    [("x".to_string(), f32v(&[7, 149], &x)), ("c".to_string(), f32v(&[7, 149], &c))].into_iter().collect()
}

/// Every group follows the groups whose stored values it reads.
fn assert_ordered(g: &Graph, groups: &[kiln::passes::fuse::Group]) {
    assert_eq!(GroupDag::new(g, groups).cycle(), None);
    let mut stored_by = vec![usize::MAX; g.len()];
    for (gi, gr) in groups.iter().enumerate() {
        for n in gr.stored() {
            stored_by[n.index()] = gi;
        }
    }
    for (gi, gr) in groups.iter().enumerate() {
        for m in &gr.members {
            for a in &g.node(*m).args {
                let p = stored_by[a.index()];
                assert!(p == usize::MAX || p <= gi, "group {gi} reads %{} stored by group {p}", a.index());
            }
        }
    }
}

#[test]
fn stored_values_become_side_outputs_of_a_reader() {
    let g = cell(false);
    let (groups, choices) = partition_with_choices(&g, Fusion::Fused);
    let kernels: Vec<_> = groups.iter().filter(|gr| gr.kind == GroupKind::Elementwise).collect();
    // Four kernels apart (e, q, h, d) become one: it computes all four and stores e, q and the
    // output h (into the output's buffer) beside the output d.
    assert_eq!(kernels.len(), 1, "{groups:#?}");
    let name = |n: kiln::ir::NodeId| g.node(n).op.name();
    let merged = kernels.iter().find(|gr| !gr.side_outputs.is_empty()).expect("a multi-output kernel");
    let sides: Vec<&str> = merged.side_outputs.iter().map(|n| name(*n)).collect();
    assert_eq!(sides, ["exp", "mul", "mul"], "{merged:?}");
    assert_eq!(merged.side_outputs[2], g.outputs()[0].value);
    assert_eq!(merged.root(), g.outputs()[1].value);
    for m in &choices.merges {
        assert!(m.merged_ns < m.apart_ns, "{m:?}");
    }
    assert_eq!(choices.merges.len(), 3, "{:?}", choices.merges);
    assert_ordered(&g, &groups);
    // The schedule (of the optimized graph: other node ids) gives each side output an arena
    // buffer of its own.
    let exe = kiln::compile(&g, Fusion::Fused).unwrap();
    let step = exe.schedule().steps.iter().find(|s| !s.side_outs.is_empty()).expect("a multi-output step");
    assert_eq!(step.side_outs.len(), 3);
    assert!(step.side_outs[..2].iter().all(|(_, b)| b.arena_range().is_some_and(|r| r.len() >= 7 * 149 * 4)));
    assert_eq!(step.side_outs[2].1, kiln::runtime::schedule::Buffer::Output(0));
}

#[test]
fn outputs_are_stored_into_their_buffers_and_values_read_through_movement_stay_apart() {
    // `e` is a graph output too: it is still a side output, written into the output's buffer,
    // with the interpreter's values.
    let g = cell(true);
    let groups = partition(&g, Fusion::Fused);
    let e = g.outputs()[2].value;
    assert!(groups.iter().any(|gr| gr.side_outputs.contains(&e)), "{groups:#?}");
    assert_ordered(&g, &groups);
    let exe = kiln::compile_with(&g, Fusion::Fused, "dce").unwrap();
    let step = exe.schedule().steps.iter().find(|s| s.side_outs.iter().any(|(n, _)| *n == e)).expect("e stored");
    assert!(step.side_outs.contains(&(e, kiln::runtime::schedule::Buffer::Output(2))), "{:?}", step.side_outs);
    let want = interp::run(&g, &feeds()).unwrap();
    for threads in [1, 2] {
        let exe = kiln::compile_with(&g, Fusion::Fused, "dce").unwrap().with_threads(threads);
        let got = exe.run(&feeds()).unwrap();
        for (w, v) in want.iter().zip(&got) {
            assert_close(&v.to_f64_vec(), &w.to_f64_vec(), 1e-5);
        }
    }

    // A reader that transposes `e` needs it materialized first: never merged with it.
    let s = "f32[33,33]";
    let text = format!(
        "func @f(%x: {s}, %c: {s}) -> (u: {s}, v: {s}) {{
  %e = exp %x : {s}
  %t = permute %e {{perm=[1,0]}} : {s}
  %u = mul %t, %c : {s}
  %v = mul %e, %t : {s}
  return %u, %v
}}
"
    );
    let g = parse_graph(&text).unwrap();
    let groups = partition(&g, Fusion::Fused);
    let e = g.node(g.outputs()[0].value).args[0];
    let e = g.node(e).args[0];
    assert_eq!(g.node(e).op.name(), "exp");
    for gr in &groups {
        let transposes = gr.members.iter().any(|m| g.node(*m).op.name() == "permute");
        assert!(!(transposes && gr.members.contains(&e)), "{gr:?}");
    }
    assert_ordered(&g, &groups);
}

#[test]
fn multi_output_kernels_match_unfused_bits_on_one_and_two_threads() {
    let g = cell(false);
    let feeds = feeds();
    let want = interp::run(&g, &feeds).unwrap();
    let unfused = kiln::compile(&g, Fusion::Unfused).unwrap().run(&feeds).unwrap();
    for threads in [1, 2] {
        let exe = kiln::compile(&g, Fusion::Fused).unwrap().with_threads(threads);
        let got = exe.run(&feeds).unwrap();
        for (w, o) in want.iter().zip(&got) {
            assert_close(&o.to_f64_vec(), &w.to_f64_vec(), 2e-5);
        }
        // Every value is computed by the same instructions as apart: the unfused bits.
        assert_eq!(got[0].to_f64_vec(), unfused[0].to_f64_vec());
        assert_eq!(got[1].to_f64_vec(), unfused[1].to_f64_vec());
        // Runs again over the same arena give the same bits.
        assert_eq!(exe.run(&feeds).unwrap()[0].to_f64_vec(), got[0].to_f64_vec());
    }
}

#[test]
fn zoo_training_steps_merge_and_stay_acyclic() {
    for name in ["lstm_classifier", "lenet5", "transformer_block"] {
        let m = (kiln::zoo::entry(name).unwrap().build)(2, kiln::ir::DType::F32).unwrap().remove(0);
        let step = kiln::train::train_step(&m, &kiln::frontend::optim::Optimizer::sgd()).unwrap().graph;
        let (groups, choices) = partition_with_choices(&step, Fusion::Fused);
        assert_ordered(&step, &groups);
        let sides: usize = groups.iter().map(|gr| gr.side_outputs.len()).sum();
        assert!(sides > 0 && sides >= choices.merges.len(), "{name}: {sides} side outputs");
    }
}

#[test]
fn a_reduction_stores_the_value_it_reduces() {
    // A softmax over rows: `e = exp(x − max)` is read by the row sum and by the division.
    let text = "func @softmax(%x: f32[13,67]) -> (p: f32[13,67]) {
  %m = reduce_max %x {axes=[1]} : f32[13]
  %mb = broadcast %m {dims=[0]} : f32[13,67]
  %d = sub %x, %mb : f32[13,67]
  %e = exp %d : f32[13,67]
  %s = reduce_sum %e {axes=[1]} : f32[13]
  %sb = broadcast %s {dims=[0]} : f32[13,67]
  %p = div %e, %sb : f32[13,67]
  return %p
}
";
    let g = parse_graph(text).unwrap();
    let groups = partition(&g, Fusion::Fused);
    assert_ordered(&g, &groups);
    let sum = groups.iter().find(|gr| g.node(gr.root()).op.name() == "reduce_sum").expect("the row sum's kernel");
    assert_eq!(sum.side_outputs.iter().map(|n| g.node(*n).op.name()).collect::<Vec<_>>(), ["exp"], "{groups:#?}");
    // No kernel of its own for `e`: the max, the sum (storing e) and the division.
    assert_eq!(groups.iter().filter(|gr| gr.kind == GroupKind::Elementwise).count(), 3, "{groups:#?}");
    let x: Vec<f32> = pseudo(13 * 67, 21).iter().map(|v| (v * 6.0) as f32).collect();
    let feeds: std::collections::HashMap<String, Value> =
        [("x".to_string(), f32v(&[13, 67], &x))].into_iter().collect();
    let want = interp::run(&g, &feeds).unwrap();
    let unfused = kiln::compile(&g, Fusion::Unfused).unwrap().run(&feeds).unwrap();
    for threads in [1, 2] {
        let got = kiln::compile(&g, Fusion::Fused).unwrap().with_threads(threads).run(&feeds).unwrap();
        assert_close(&got[0].to_f64_vec(), &want[0].to_f64_vec(), 1e-6);
        // The sum's loop now computes what it adds: its terms may be added in another order
        // than the unfused kernel's (a rounding apart), never more.
        assert_close(&got[0].to_f64_vec(), &unfused[0].to_f64_vec(), 1e-6);
        for row in got[0].to_f64_vec().chunks(67) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        }
    }
}

#[test]
fn merges_keep_few_transcendentals_in_one_kernel() {
    // `e = exp x` is read by a kernel with three `tanh`s already and by `d = e − x`: joining
    // the first would hold four approximations in one loop, so it joins the second.
    let text = format!(
        "func @f(%x: {T}, %c: {T}) -> (h: {T}, d: {T}) {{
  %e = exp %x : {T}
  %p = mul %e, %c : {T}
  %t1 = tanh %p : {T}
  %t2 = tanh %t1 : {T}
  %h = tanh %t2 : {T}
  %d = sub %e, %x : {T}
  return %h, %d
}}
"
    );
    let g = parse_graph(&text).unwrap();
    let groups = partition(&g, Fusion::Fused);
    let e = g.node(g.outputs()[1].value).args[0];
    let holder = groups.iter().find(|gr| gr.side_outputs.contains(&e)).expect("e is a side output");
    assert_eq!(holder.root(), g.outputs()[1].value, "{groups:#?}");
    for gr in &groups {
        let approximations = gr.members.iter().filter(|m| matches!(g.node(**m).op.name(), "exp" | "tanh")).count();
        assert!(approximations <= kiln::passes::multi_output::MAX_TRANSCENDENTALS, "{gr:?}");
    }
    assert_ordered(&g, &groups);
}
