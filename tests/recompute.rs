//! Fusion's recompute-or-store choice: a cheap value read by several kernels is computed inside
//! each of them when the cost model predicts that is cheaper, only for exactly rounded ops and
//! never into a `reduce_max`'s kernel, and the compiled graph gives the interpreter's results
//! to rounding on one and two threads.

mod common;

use common::*;
use kiln::Fusion;
use kiln::ir::{Value, interp, parse_graph};
use kiln::passes::fuse::{GroupKind, partition_with_choices};

const N: usize = 1031;

/// `a = x·0.5` feeds a sum of `a·x` and `exp(a) + x` (two kernels that read `x` anyway);
/// `t = tanh x` feeds two kernels too; `s = x − y` feeds a `reduce_max` and the `exp` of the
/// softmax shift.
fn graph() -> kiln::ir::Graph {
    let t = format!("f32[{N}]");
    let text = format!(
        "func @g(%x: {t}, %y: {t}) -> (sum: f32[], e: {t}, u: {t}, v: {t}, soft: {t}) {{
  %h = const 0.5 : {t}
  %a = mul %x, %h : {t}
  %p = mul %a, %x : {t}
  %sum = reduce_sum %p {{axes=[0]}} : f32[]
  %ea = exp %a : {t}
  %e = add %ea, %x : {t}
  %th = tanh %x : {t}
  %u = mul %th, %y : {t}
  %v = sub %th, %x : {t}
  %s = sub %x, %y : {t}
  %mx = reduce_max %s {{axes=[0]}} : f32[]
  %r = reshape %mx : f32[1]
  %b = broadcast %r {{dims=[0]}} : {t}
  %d = sub %s, %b : {t}
  %ex = exp %d : {t}
  %tot = reduce_sum %ex {{axes=[0]}} : f32[]
  %r2 = reshape %tot : f32[1]
  %b2 = broadcast %r2 {{dims=[0]}} : {t}
  %soft = div %ex, %b2 : {t}
  return %sum, %e, %u, %v, %soft
}}
"
    );
    parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn feeds() -> Vec<(String, Value)> {
    let x: Vec<f32> = pseudo(N, 3).iter().map(|v| (v * 4.0) as f32).collect();
    let y: Vec<f32> = pseudo(N, 4).iter().map(|v| (v * 2.0) as f32).collect();
    vec![("x".into(), f32v(&[N], &x)), ("y".into(), f32v(&[N], &y))]
}

#[test]
fn cheap_values_are_recomputed_and_transcendentals_stored() {
    let g = graph();
    let (groups, choices) = partition_with_choices(&g, Fusion::Fused);
    let choices = choices.recompute;
    let name = |c: &kiln::passes::fuse::Recompute| g.node(c.node).op.name();
    let chosen = |op: &str| choices.iter().filter(|c| name(c) == op).map(|c| c.recomputed).collect::<Vec<_>>();
    // `a` is read by two kernels that read `x` already, and cheap: recomputed.
    assert_eq!(chosen("mul"), [true], "{choices:?}");
    // tanh is read by two kernels but is never recomputed (its approximation could round
    // differently in different kernels).
    assert_eq!(chosen("tanh"), [false], "{choices:?}");
    // The softmax's `s = x − y` feeds its `reduce_max`: stored, however cheap.
    assert_eq!(chosen("sub"), [false], "{choices:?}");
    for c in &choices {
        assert!(c.recompute_ns >= 0.0 && c.store_ns > 0.0, "{c:?}");
        if c.recomputed {
            assert!(c.recompute_ns < c.store_ns, "{c:?}");
            // A recomputed value is a member of every kernel reading it and roots none.
            let holding = groups.iter().filter(|gr| gr.members.contains(&c.node)).count();
            assert_eq!(holding, c.readers, "{c:?}");
            assert!(groups.iter().all(|gr| gr.root() != c.node), "{c:?}");
            assert!(
                groups.iter().filter(|gr| gr.members.contains(&c.node)).all(|gr| gr.kind == GroupKind::Elementwise)
            );
        }
    }
    assert_eq!(kiln::passes::group_dag::GroupDag::new(&g, &groups).cycle(), None);
}

#[test]
fn recomputed_kernels_match_the_interpreter_on_one_and_two_threads() {
    let g = graph();
    let feeds: std::collections::HashMap<String, Value> = feeds().into_iter().collect();
    let want = interp::run(&g, &feeds).unwrap();
    for threads in [1, 2] {
        let exe = kiln::compile(&g, Fusion::Fused).unwrap().with_threads(threads);
        let got = exe.run(&feeds).unwrap();
        // The sum and the exact ops agree to rounding; the softmax never exceeds 1 (its shift
        // saw the same bits as its exp).
        for (w, o) in want.iter().zip(&got) {
            assert_close(&o.to_f64_vec(), &w.to_f64_vec(), 2e-5);
        }
        assert!(got[4].to_f64_vec().iter().all(|p| *p <= 1.0 && *p >= 0.0));
        // Unfused (nothing recomputed) gives the same bits as fused for the exactly rounded
        // outputs that involve no transcendental: u and v read the stored tanh.
        let unfused = kiln::compile(&g, Fusion::Unfused).unwrap().run(&feeds).unwrap();
        assert_eq!(got[2].to_f64_vec(), unfused[2].to_f64_vec());
        assert_eq!(got[3].to_f64_vec(), unfused[3].to_f64_vec());
    }
}
