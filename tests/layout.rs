//! Channels-last convolutions and the layout pass: every convolution configuration in the
//! channels-last layout on the JIT against the interpreter (odd sizes, strides, padding,
//! dilation, groups; one and two threads), the interpreter's channels-last meaning against the
//! channels-first op between permutes, whole zoo training steps rewritten channels-last against
//! the interpreter of the original, the fallback for channels-first-only backends, and the text
//! form.

mod common;

use std::collections::HashMap;

use common::convs::{CONV_CASES, conv_graphs};
use common::*;
use kiln::ir::{ConvLayout, DType, Graph, Op, Value, interp, parse_graph};
use kiln::passes::Pass;
use kiln::passes::layout::{Layout, channels_first, channels_first_if_needed, channels_last};
use kiln::runtime::jit::{Options, compile};

/// Deterministic values in [-1, 1) for every float input, zeros for integer ones (labels).
fn inputs(g: &Graph) -> HashMap<String, Value> {
    g.inputs()
        .enumerate()
        .map(|(i, (_, n))| {
            let r = pseudo(n.ty.numel(), 700 + i as u64);
            let v = match n.ty.dtype {
                DType::F64 => f64v(n.ty.dims(), &r),
                DType::F32 => f32v(n.ty.dims(), &r.iter().map(|x| *x as f32).collect::<Vec<_>>()),
                _ => Value::splat(&n.ty, 0.0),
            };
            (n.op.leaf_name().unwrap().to_string(), v)
        })
        .collect()
}

#[test]
fn channels_last_convolutions_agree_with_the_interpreter() {
    let cases = CONV_CASES;
    for dt in ["f32", "f64"] {
        for &case in cases {
            let taps = case.1[1] * case.1[2] * case.0[1] / case.5;
            for g in conv_graphs(dt, case, true) {
                let f = inputs(&g);
                let want = interp::run(&g, &f).unwrap();
                // The channels-last meaning is the channels-first op between permutes.
                let first = channels_first(&g).unwrap();
                assert!(first.nodes().all(|(_, n)| n.op.conv().is_none_or(|(_, a)| a.layout == ConvLayout::Nchw)));
                assert_eq!(interp::run(&first, &f).unwrap(), want, "{case:?}: layouts differ in the interpreter");
                let one = compile(&g, Options::default()).unwrap().run(&f).unwrap();
                let terms = (taps * case.0[0] * case.0[2] * case.0[3]) as f64;
                let tol = if dt == "f64" { 1e-12 } else { 1e-6 } * terms.sqrt().max(taps as f64);
                let name = g.node(g.outputs()[0].value).op.name();
                for (i, (a, b)) in one[0].to_f64_vec().iter().zip(&want[0].to_f64_vec()).enumerate() {
                    assert!((a - b).abs() <= tol, "{case:?} {name} [{i}]: {a} vs interpreter {b}");
                }
                let two = compile(&g, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
                assert_eq!(one, two, "{case:?} {name}: one and two threads agree exactly");
            }
        }
    }
}

/// The zoo's convolutional training steps at a small batch, as built and optimized.
fn conv_steps() -> Vec<(&'static str, Graph)> {
    use kiln::frontend::optim::Optimizer;
    ["lenet5", "cifar_cnn"]
        .into_iter()
        .map(|name| {
            let m = (kiln::zoo::entry(name).unwrap().build)(3, DType::F32).unwrap().remove(0);
            (name, kiln::train::train_step(&m, &Optimizer::sgd()).unwrap().graph)
        })
        .collect()
}

#[test]
fn zoo_steps_rewritten_channels_last_keep_their_values() {
    for (name, step) in conv_steps() {
        let last = channels_last(&step).unwrap();
        kiln::ir::verify(&last).unwrap();
        let convs: Vec<_> = last.nodes().filter_map(|(_, n)| n.op.conv()).collect();
        assert!(!convs.is_empty() && convs.iter().all(|(_, a)| a.layout == ConvLayout::Nhwc), "{name}");
        // The order is carried through pooling and the elementwise ops: the only layout
        // changes are the input image (one channel needs none), the flatten before the dense
        // layers and its gradient's way back.
        let permutes = last.nodes().filter(|(_, n)| matches!(n.op, Op::Permute { .. })).count();
        let before = step.nodes().filter(|(_, n)| matches!(n.op, Op::Permute { .. })).count();
        let input_channels = step.inputs().next().unwrap().1.ty.dims()[1];
        let changes = 2 + usize::from(input_channels > 1);
        assert_eq!(permutes, before + changes, "{name}: {permutes} permutes, {before} before the rewrite\n{last}");
        let mut f = kiln::ir::init::init_params(&step, 9);
        f.extend(inputs(&step));
        let want = interp::run(&step, &f).unwrap();
        let one = compile(&last, Options::default()).unwrap().run(&f).unwrap();
        for (k, (a, b)) in one.iter().zip(&want).enumerate() {
            assert_close(&a.to_f64_vec(), &b.to_f64_vec(), 1e-4);
            assert_eq!(a.ty(), b.ty(), "{name}: output {k}");
        }
        let two = compile(&last, Options::default()).unwrap().with_threads(2).run(&f).unwrap();
        assert_eq!(one, two, "{name}: one and two threads agree exactly");
        // Backends with channels-first kernels only get the same values back.
        let back = channels_first_if_needed(&last).unwrap().expect("the rewrite has channels-last convolutions");
        let again = interp::run(&back, &f).unwrap();
        for (a, b) in again.iter().zip(&want) {
            assert_close(&a.to_f64_vec(), &b.to_f64_vec(), 1e-4);
        }
        assert!(channels_first_if_needed(&step).unwrap().is_none());
    }
}

#[test]
fn the_layout_pass_reports_its_choice() {
    for (name, step) in conv_steps() {
        let (forced, report) = Layout { forced: Some(ConvLayout::Nhwc) }.run(&step).unwrap();
        assert!(report.contains("channels-last (forced)"), "{name}: {report}");
        assert!(forced.nodes().filter_map(|(_, n)| n.op.conv()).all(|(_, a)| a.layout == ConvLayout::Nhwc));
        let (priced, report) = Layout::default().run(&step).unwrap();
        assert!(report.contains("predicted") && report.contains("µs"), "{name}: {report}");
        let chosen = priced.nodes().filter_map(|(_, n)| n.op.conv()).map(|(_, a)| a.layout).collect::<Vec<_>>();
        let want = if report.contains("channels-last (") { ConvLayout::Nhwc } else { ConvLayout::Nchw };
        assert!(chosen.iter().all(|l| *l == want), "{name}: {report}");
    }
    let mlp = (kiln::zoo::entry("mnist_mlp").unwrap().build)(2, DType::F32).unwrap().remove(0);
    let (_, report) = Layout::default().run(&mlp.graph).unwrap();
    assert!(report.is_empty(), "no convolutions, nothing to say: {report}");
}

#[test]
fn the_layout_prints_and_parses_back() {
    let text = "func @t(%x: f32[2,5,5,3], %w: f32[4,3,3,3]) -> (y: f32[2,3,3,4]) {\n  \
                %2 = conv2d %x, %w {stride=[1,1], padding=[0,0], dilation=[1,1], groups=1, layout=nhwc} : f32[2,3,3,4]\n  \
                return %2\n}\n";
    let g = parse_graph(text).unwrap();
    assert!(g.to_string().contains("layout=nhwc"), "{g}");
    assert_eq!(parse_graph(&g.to_string()).unwrap().to_string(), g.to_string());
    // The default layout is not printed.
    let first = channels_first(&g).unwrap();
    assert!(!first.to_string().contains("layout="), "{first}");
    let bad = text.replace("layout=nhwc", "layout=hwcn");
    let e = parse_graph(&bad).unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("`layout` must be `nchw` or `nhwc`"), "{e}");
    // A channels-first shape under a channels-last attribute is a type error naming the layout.
    let wrong = text.replace("f32[2,5,5,3]", "f32[2,3,5,5]");
    let e = parse_graph(&wrong).unwrap_err().to_string();
    assert!(e.contains("conv2d"), "{e}");
}

/// A random convolutional net as IR text: a convolution (stride, padding), a bias broadcast
/// over the channels, relu, 2×2 max pooling when the output's sides are even (else a second
/// elementwise op), and a loss summing the result weighted by `%t`.
fn random_net(case: (usize, usize, usize, usize, usize, usize, usize, usize)) -> Option<String> {
    let (n, c, o, k, s, p, h, w) = case;
    let (oh, ow) = ((h + 2 * p).checked_sub(k)? / s + 1, (w + 2 * p).checked_sub(k)? / s + 1);
    let pool = oh % 2 == 0 && ow % 2 == 0;
    let y = format!("f32[{n},{o},{oh},{ow}]");
    let attrs = format!("{{stride=[{s},{s}], padding=[{p},{p}], dilation=[1,1], groups=1}}");
    let (out, tail) = if pool {
        let (ph, pw) = (oh / 2, ow / 2);
        (
            format!("f32[{n},{o},{ph},{pw}]"),
            format!(
                "  %r6 = reshape %r : f32[{n},{o},{ph},2,{pw},2]\n  %q = reduce_max %r6 {{axes=[3,5]}} : f32[{n},{o},{ph},{pw}]\n"
            ),
        )
    } else {
        (y.clone(), format!("  %q = mul %r, %z : {y}\n"))
    };
    Some(format!(
        "func @net(%x: f32[{n},{c},{h},{w}], %w: f32[{o},{c},{k},{k}], %b: f32[{o}], %t: {out}) -> (loss: f32[]) {{\n  \
         %y = conv2d %x, %w {attrs} : {y}\n  %b3 = reshape %b : f32[{o},1,1]\n  \
         %bb = broadcast %b3 {{dims=[1,2,3]}} : {y}\n  %z = add %y, %bb : {y}\n  %zero = const 0.0 : {y}\n  \
         %r = max %z, %zero : {y}\n{tail}  %m = mul %q, %t : {out}\n  %loss = reduce_sum %m {{axes=[0,1,2,3]}} : f32[]\n  \
         return %loss\n}}\n"
    ))
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

    /// Random convolutional nets and their gradients keep their values when rewritten
    /// channels-last (interpreter against interpreter, and the JIT of the rewrite).
    #[test]
    fn random_nets_keep_their_values_channels_last(
        case in (1usize..3, 1usize..5, 1usize..5, 1usize..4, 1usize..3, 0usize..2, 3usize..10, 3usize..10)
    ) {
        let Some(text) = random_net(case) else { return Ok(()) };
        let forward = parse_graph(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let g = kiln::passes::autodiff::grad(&forward, "loss", &[]).unwrap();
        let last = channels_last(&g).unwrap();
        kiln::ir::verify(&last).unwrap();
        proptest::prop_assert!(last.nodes().filter_map(|(_, n)| n.op.conv()).all(|(_, a)| a.layout == ConvLayout::Nhwc));
        let f = inputs(&g);
        let want = interp::run(&g, &f).unwrap();
        let got = interp::run(&last, &f).unwrap();
        let jit = compile(&last, Options::default()).unwrap().run(&f).unwrap();
        for ((a, b), c) in got.iter().zip(&want).zip(&jit) {
            assert_close(&a.to_f64_vec(), &b.to_f64_vec(), 1e-5);
            assert_close(&c.to_f64_vec(), &b.to_f64_vec(), 1e-4);
        }
    }
}
