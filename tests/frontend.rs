//! The DSL: broadcasting, shape errors located at the caller, layers and losses checked
//! against hand computations on the interpreter, and every zoo model running end to end.

mod common;

use std::collections::HashMap;

use common::*;
use kiln::ir::{Graph, Op, interp};
use kiln::prelude::*;

fn eval(g: &Graph, feeds: &[(&str, Value)]) -> Vec<Vec<f64>> {
    let feeds: HashMap<String, Value> = feeds.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    interp::run_with_init(g, &feeds, 0).unwrap().iter().map(Value::to_f64_vec).collect()
}

#[test]
fn shape_errors_name_the_op_the_shapes_and_the_callers_line() {
    let b = Builder::new("t");
    let x = b.input("x", DType::F32, [2, 3]);
    let y = b.input("y", DType::F32, [4]);
    let line = line!() + 1;
    let z = x + y;
    // Further ops on the failed value add no errors of their own.
    let w = (z * 2.0).exp() + x;
    b.output("w", w);
    let e = b.finish().unwrap_err();
    assert_eq!(e.op, "add");
    assert_eq!(e.message, "shapes do not broadcast: f32[2,3] vs f32[4]");
    assert!(e.location.starts_with(&format!("tests/frontend.rs:{line}:")), "{}", e.location);
    assert_eq!(e.more, 0);
    assert!(e.to_string().contains("tests/frontend.rs"), "{e}");
}

#[test]
fn layer_errors_point_at_the_user_code() {
    let b = Builder::new("t");
    let x = b.input("x", DType::F32, [2, 5]);
    let fc = nn::Linear::new(&b, "fc", 4, 3);
    let line = line!() + 1;
    let y = fc.forward(x);
    b.output("y", y);
    let e = b.finish().unwrap_err();
    assert_eq!(e.op, "Linear");
    assert!(e.message.contains("[..., 4]") && e.message.contains("f32[2,5]"), "{e}");
    assert!(e.location.starts_with(&format!("tests/frontend.rs:{line}:")), "{}", e.location);
}

#[test]
fn every_independent_error_is_counted() {
    let b = Builder::new("t");
    let x = b.input("x", DType::F32, [2, 3]);
    let _ = x.matmul(x);
    let _ = x.sum(&[5]);
    let _ = b.input("x", DType::F32, [1]);
    let _ = x.cast(DType::I32) + x;
    let e = b.finish().unwrap_err();
    assert_eq!(e.op, "matmul");
    assert_eq!(e.more, 3, "{e}");
}

#[test]
fn broadcasting_is_lowered_to_explicit_broadcasts() {
    let b = Builder::new("t");
    let x = b.input("x", DType::F32, [2, 3]);
    let v = b.input("v", DType::F32, [3]);
    let c = b.input("c", DType::F32, [2, 1]);
    b.output("y", x + v);
    b.output("z", c * v - 1.0);
    b.output("r", 10.0 / x);
    let g = b.finish().unwrap();
    let bcasts: Vec<_> = g.nodes().filter(|(_, n)| matches!(n.op, Op::Broadcast { .. })).collect();
    assert!(bcasts.iter().any(|(_, n)| n.op == Op::Broadcast { dims: vec![1] }), "{g}");
    let out = eval(
        &g,
        &[
            ("x", f32v(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 10.0])),
            ("v", f32v(&[3], &[10.0, 20.0, 30.0])),
            ("c", f32v(&[2, 1], &[1.0, 2.0])),
        ],
    );
    assert_eq!(out[0], vec![11.0, 22.0, 33.0, 14.0, 25.0, 40.0]);
    assert_eq!(out[1], vec![9.0, 19.0, 29.0, 19.0, 39.0, 59.0]);
    assert_eq!(out[2], vec![10.0, 5.0, (10.0f32 / 3.0) as f64, 2.5, 2.0, 1.0]);
}

#[test]
fn activations_match_their_formulas() {
    let b = Builder::new("t").with_float(DType::F64);
    let x = b.input("x", DType::F64, [2, 3]);
    b.output("relu", x.relu());
    b.output("sigmoid", x.sigmoid());
    b.output("gelu", x.gelu());
    b.output("softmax", x.softmax(-1));
    b.output("log_softmax", x.log_softmax(1));
    b.output("leaky", x.leaky_relu(0.1));
    let g = b.finish().unwrap();
    let xs = [-2.0, -0.5, 0.0, 0.5, 1.0, 3.0];
    let out = eval(&g, &[("x", f64v(&[2, 3], &xs))]);
    let map = |f: fn(f64) -> f64| xs.iter().map(|&x| f(x)).collect::<Vec<_>>();
    assert_close(&out[0], &map(|x| x.max(0.0)), 1e-15);
    assert_close(&out[1], &map(|x| 1.0 / (1.0 + (-x).exp())), 1e-15);
    assert_close(
        &out[2],
        &map(|x| 0.5 * x * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x.powi(3))).tanh())),
        1e-15,
    );
    let mut sm = Vec::new();
    for row in xs.chunks(3) {
        let z: f64 = row.iter().map(|v| v.exp()).sum();
        sm.extend(row.iter().map(|v| v.exp() / z));
    }
    assert_close(&out[3], &sm, 1e-14);
    assert_close(&out[4], &sm.iter().map(|p| p.ln()).collect::<Vec<_>>(), 1e-14);
    assert_close(&out[5], &map(|x| if x > 0.0 { x } else { 0.1 * x }), 1e-15);
}

#[test]
fn softmax_is_stable_for_large_logits() {
    let b = Builder::new("t");
    let x = b.input("x", DType::F32, [1, 3]);
    b.output("p", x.softmax(-1));
    let g = b.finish().unwrap();
    let out = eval(&g, &[("x", f32v(&[1, 3], &[1000.0, 1000.0, -1000.0]))]);
    assert_close(&out[0], &[0.5, 0.5, 0.0], 1e-7);
}

#[test]
fn linear_is_matmul_plus_bias_on_any_rank() {
    let b = Builder::new("t").with_float(DType::F64);
    let x = b.input("x", DType::F64, [2, 2, 3]);
    let fc = nn::Linear::new(&b, "fc", 3, 2);
    b.output("y", fc.forward(x));
    let g = b.finish().unwrap();
    let w = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
    let xs = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0];
    let out = eval(
        &g,
        &[("x", f64v(&[2, 2, 3], &xs)), ("fc.weight", f64v(&[3, 2], &w)), ("fc.bias", f64v(&[2], &[0.5, -0.5]))],
    );
    assert_eq!(out[0], vec![1.5, 1.5, 3.5, 3.5, 5.5, 5.5, 9.5, 11.5]);
}

/// Direct max/avg pooling by the definition, for checking both lowering paths.
fn pool_ref(
    x: &[f64],
    (n, c, h, w): (usize, usize, usize, usize),
    k: usize,
    s: usize,
    p: usize,
    max: bool,
) -> Vec<f64> {
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut out = Vec::new();
    for i in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc: f64 = if max { f64::NEG_INFINITY } else { 0.0 };
                for ky in 0..k {
                    for kx in 0..k {
                        let (y, xx) = ((oy * s + ky) as isize - p as isize, (ox * s + kx) as isize - p as isize);
                        let v = if y < 0 || xx < 0 || y >= h as isize || xx >= w as isize {
                            if max { f64::NEG_INFINITY } else { 0.0 }
                        } else {
                            x[i * h * w + y as usize * w + xx as usize]
                        };
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out.push(if max { acc } else { acc / (k * k) as f64 });
            }
        }
    }
    out
}

#[test]
fn pooling_matches_the_definition_on_both_paths() {
    let dims = (2, 3, 7, 6);
    let x: Vec<f64> = (0..2 * 3 * 7 * 6).map(|i| ((i * 37) % 23) as f64 - 11.0).collect();
    for (k, s, p) in [(2, 2, 0), (3, 3, 0), (3, 2, 1), (2, 1, 0), (3, 2, 0)] {
        let b = Builder::new("t").with_float(DType::F64);
        let xi = b.input("x", DType::F64, [2, 3, 7, 6]);
        b.output("max", nn::MaxPool2d::new(k, s, p).forward(xi));
        b.output("avg", nn::AvgPool2d::new(k, s, p).forward(xi));
        let g = b.finish().unwrap();
        let out = eval(&g, &[("x", f64v(&[2, 3, 7, 6], &x))]);
        assert_close(&out[0], &pool_ref(&x, dims, k, s, p, true), 1e-12);
        assert_close(&out[1], &pool_ref(&x, dims, k, s, p, false), 1e-12);
    }
}

#[test]
fn conv2d_layer_adds_a_bias_per_channel() {
    let b = Builder::new("t").with_float(DType::F64);
    let x = b.input("x", DType::F64, [1, 1, 2, 2]);
    let conv = nn::Conv2d::new(&b, "c", 1, 2, 1, 0);
    b.output("y", conv.forward(x));
    let g = b.finish().unwrap();
    let out = eval(
        &g,
        &[
            ("x", f64v(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0])),
            ("c.weight", f64v(&[2, 1, 1, 1], &[1.0, -1.0])),
            ("c.bias", f64v(&[2], &[10.0, 20.0])),
        ],
    );
    assert_eq!(out[0], vec![11.0, 12.0, 13.0, 14.0, 19.0, 18.0, 17.0, 16.0]);
}

#[test]
fn embedding_picks_rows() {
    let b = Builder::new("t");
    let ids = b.input("ids", DType::I64, [2, 2]);
    let e = nn::Embedding::new(&b, "emb", 3, 2);
    b.output("y", e.forward(ids));
    let g = b.finish().unwrap();
    let out = eval(
        &g,
        &[("ids", i64v(&[2, 2], &[2, 0, 1, 2])), ("emb.weight", f32v(&[3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]))],
    );
    assert_eq!(out[0], vec![20.0, 21.0, 0.0, 1.0, 10.0, 11.0, 20.0, 21.0]);
}

#[test]
fn lstm_follows_the_gate_equations() {
    let (batch, seq, input, hidden) = (2, 3, 2, 2);
    let b = Builder::new("t").with_float(DType::F64);
    let x = b.input("x", DType::F64, [batch, seq, input]);
    let lstm = nn::Lstm::new(&b, "l", input, hidden);
    let out = lstm.forward(x);
    b.output("h", out.stacked(&b));
    b.output("c", out.cell);
    let g = b.finish().unwrap();
    let xs = pseudo(batch * seq * input, 1);
    let (wih, whh, bias) = (pseudo(input * 4 * hidden, 2), pseudo(hidden * 4 * hidden, 3), pseudo(4 * hidden, 4));
    let got = eval(
        &g,
        &[
            ("x", f64v(&[batch, seq, input], &xs)),
            ("l.w_ih", f64v(&[input, 4 * hidden], &wih)),
            ("l.w_hh", f64v(&[hidden, 4 * hidden], &whh)),
            ("l.bias", f64v(&[4 * hidden], &bias)),
        ],
    );
    let sig = |v: f64| 1.0 / (1.0 + (-v).exp());
    let mut want_h = vec![0.0; batch * seq * hidden];
    let mut want_c = vec![0.0; batch * hidden];
    for bi in 0..batch {
        let (mut h, mut c) = (vec![0.0; hidden], vec![0.0; hidden]);
        for t in 0..seq {
            let gate = |j: usize, h: &[f64]| {
                let mut v = bias[j];
                for i in 0..input {
                    v += xs[(bi * seq + t) * input + i] * wih[i * 4 * hidden + j];
                }
                for i in 0..hidden {
                    v += h[i] * whh[i * 4 * hidden + j];
                }
                v
            };
            let mut nh = vec![0.0; hidden];
            for u in 0..hidden {
                let (i, f, gg, o) = (
                    sig(gate(u, &h)),
                    sig(gate(hidden + u, &h)),
                    gate(2 * hidden + u, &h).tanh(),
                    sig(gate(3 * hidden + u, &h)),
                );
                c[u] = f * c[u] + i * gg;
                nh[u] = o * c[u].tanh();
            }
            h = nh;
            want_h[(bi * seq + t) * hidden..(bi * seq + t + 1) * hidden].copy_from_slice(&h);
        }
        want_c[bi * hidden..(bi + 1) * hidden].copy_from_slice(&c);
    }
    assert_close(&got[0], &want_h, 1e-13);
    assert_close(&got[1], &want_c, 1e-13);
}

#[test]
fn layer_norm_normalizes_the_last_axis() {
    let b = Builder::new("t").with_float(DType::F64);
    let x = b.input("x", DType::F64, [3, 8]);
    b.output("y", nn::LayerNorm::new(&b, "ln", 8).forward(x));
    let g = b.finish().unwrap();
    let out = eval(&g, &[("x", f64v(&[3, 8], &pseudo(24, 5).iter().map(|v| v * 10.0 + 3.0).collect::<Vec<_>>()))]);
    for row in out[0].chunks(8) {
        let m = row.iter().sum::<f64>() / 8.0;
        let v = row.iter().map(|x| (x - m).powi(2)).sum::<f64>() / 8.0;
        assert!(m.abs() < 1e-12 && (v - 1.0).abs() < 1e-5, "mean {m} var {v}");
    }
}

/// Self-attention without a mask is equivariant to permuting the sequence.
#[test]
fn attention_is_permutation_equivariant() {
    let (batch, seq, d) = (1, 4, 8);
    let b = Builder::new("t").with_float(DType::F64);
    let x = b.input("x", DType::F64, [batch, seq, d]);
    let mha = nn::MultiHeadAttention::new(&b, "mha", d, 2);
    b.output("y", mha.forward(x));
    let g = b.finish().unwrap();
    let xs = pseudo(seq * d, 9);
    let perm = [2, 0, 3, 1];
    let xp: Vec<f64> = perm.iter().flat_map(|&p| xs[p * d..(p + 1) * d].to_vec()).collect();
    let y = &eval(&g, &[("x", f64v(&[batch, seq, d], &xs))])[0];
    let yp = &eval(&g, &[("x", f64v(&[batch, seq, d], &xp))])[0];
    let y_then_perm: Vec<f64> = perm.iter().flat_map(|&p| y[p * d..(p + 1) * d].to_vec()).collect();
    assert_close(yp, &y_then_perm, 1e-12);
    assert!(y.iter().any(|v| v.abs() > 1e-3), "attention output should not vanish");
}

#[test]
fn losses_match_hand_computations() {
    let b = Builder::new("t").with_float(DType::F64);
    let logits = b.input("logits", DType::F64, [2, 3]);
    let labels = b.input("labels", DType::I32, [2]);
    let onehot = b.input("onehot", DType::F64, [2, 3]);
    let p = b.input("p", DType::F64, [2]);
    let t = b.input("t", DType::F64, [2]);
    b.output("ce", loss::cross_entropy(logits, labels));
    b.output("ce_onehot", loss::cross_entropy(logits, onehot));
    b.output("mse", loss::mse(p, t));
    b.output("bce", loss::binary_cross_entropy(p, t));
    let g = b.finish().unwrap();
    let l = [1.0, 2.0, 3.0, 0.5, 0.5, 0.5];
    let out = eval(
        &g,
        &[
            ("logits", f64v(&[2, 3], &l)),
            ("labels", i32v(&[2], &[2, 0])),
            ("onehot", f64v(&[2, 3], &[0.0, 0.0, 1.0, 1.0, 0.0, 0.0])),
            ("p", f64v(&[2], &[0.9, 0.2])),
            ("t", f64v(&[2], &[1.0, 0.0])),
        ],
    );
    let lse0 = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
    let ce = ((lse0 - 3.0) + 3f64.ln()) / 2.0;
    assert_close(&out[0], &[ce], 1e-14);
    assert_close(&out[1], &[ce], 1e-14);
    assert_close(&out[2], &[(0.01 + 0.04) / 2.0], 1e-15);
    assert_close(&out[3], &[-(0.9f64.ln() + 0.8f64.ln()) / 2.0], 1e-14);
}

/// A loss never broadcasts prediction against target: `mse([8, 1], [8])` would average an
/// `[8, 8]` difference. Each loss refuses mismatched shapes, naming them and the caller's line.
#[test]
fn losses_refuse_mismatched_shapes() {
    // A macro, not a function pointer: `#[track_caller]` reports the line of a direct call.
    macro_rules! refused {
        ($loss:ident, $pred:expr, $target_dtype:expr, $target:expr, $want:expr) => {{
            let b = Builder::new("t");
            let p = b.input("p", DType::F32, $pred);
            let t = b.input("t", $target_dtype, $target);
            let line = line!();
            let l = loss::$loss(p, t);
            b.output("loss", l * 2.0);
            let e = b.finish().unwrap_err();
            assert_eq!(e.op, stringify!($loss));
            assert!(e.message.contains($want), "{e}");
            assert!(e.location.starts_with(&format!("tests/frontend.rs:{line}:")), "{}", e.location);
            assert_eq!(e.more, 0, "one error, not one per later op: {e}");
        }};
    }
    refused!(mse, [8, 1], DType::F32, [8], "prediction [8, 1] and target [8] differ in shape");
    refused!(mae, [8], DType::F32, [1, 8], "prediction [8] and target [1, 8] differ in shape");
    refused!(binary_cross_entropy, [4, 1], DType::F32, [4], "prediction [4, 1] and target [4]");
    refused!(cross_entropy, [4, 10], DType::I32, [4, 1], "logits [4, 10] and labels [4, 1]");
    refused!(cross_entropy, [4, 10], DType::I32, [1], "logits [4, 10] and labels [1]");
    refused!(cross_entropy, [4, 10], DType::F32, [4, 1], "labels need the logits' shape");
    // Matching shapes build; mae is the mean absolute difference.
    let b = Builder::new("t").with_float(DType::F64);
    let (p, t) = (b.input("p", DType::F64, [2, 1]), b.input("t", DType::F64, [2, 1]));
    b.output("mae", loss::mae(p, t));
    let g = b.finish().unwrap();
    let out = eval(&g, &[("p", f64v(&[2, 1], &[0.5, -1.0])), ("t", f64v(&[2, 1], &[1.0, 1.0]))]);
    assert_close(&out[0], &[1.25], 1e-15);
}

#[test]
fn dropout_is_identity_in_eval_and_a_scaled_mask_in_training() {
    let build = |mode| {
        let b = Builder::new("t").with_mode(mode);
        let x = b.input("x", DType::F32, [4000]);
        b.output("y", nn::Dropout::new(0.25).forward(x));
        b.finish().unwrap()
    };
    let x = f32v(&[4000], &[2.0; 4000]);
    let eval_g = build(Mode::Eval);
    assert!(eval_g.leaf("rng_seed").is_none());
    assert_eq!(eval(&eval_g, &[("x", x.clone())])[0], vec![2.0; 4000]);
    let train = build(Mode::Train);
    let y = &eval(&train, &[("x", x.clone()), ("rng_seed", i64v(&[], &[1]))])[0];
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / 4000.0;
    assert!((dropped - 0.25).abs() < 0.03, "dropped fraction {dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 2.0 / 0.75).abs() < 1e-6));
    let y2 = &eval(&train, &[("x", x), ("rng_seed", i64v(&[], &[2]))])[0];
    assert_ne!(y, y2, "another seed draws another mask");
}

#[test]
fn every_zoo_model_runs_on_the_interpreter() {
    for e in kiln::zoo::CATALOG {
        for m in (e.build)(2, DType::F32).unwrap() {
            let g = &m.graph;
            let feeds: HashMap<String, Value> = g
                .inputs()
                .map(|(_, n)| {
                    let name = n.op.leaf_name().unwrap().to_string();
                    let r = pseudo(n.ty.numel(), 11);
                    let v = match n.ty.dtype {
                        DType::I32 => {
                            i32v(n.ty.dims(), &r.iter().map(|x| ((x + 1.0) * 4999.0) as i32).collect::<Vec<_>>())
                        }
                        _ => f32v(n.ty.dims(), &r.iter().map(|&x| x as f32).collect::<Vec<_>>()),
                    };
                    (name, v)
                })
                .collect();
            let out = interp::run_with_init(g, &feeds, 1).unwrap_or_else(|err| panic!("{}: {err}", g.name()));
            assert_eq!(out.len(), 1);
            assert_eq!(&out[0].ty(), g.ty(g.outputs()[0].value));
            let v = out[0].to_f64_vec();
            assert!(v.iter().all(|x| x.is_finite()), "{}: non-finite output", g.name());
            assert!(v.iter().any(|&x| x != v[0]), "{}: constant output {v:?}", g.name());
        }
    }
}

/// Cross entropy's one-hot is checked: a label outside `0..classes` is an error on every
/// backend (the interpreter, the optimized JIT, the GPU backend's emulation), never a row of
/// zeros that silently lowers the loss; labels in range give the loss as before.
#[test]
fn cross_entropy_refuses_labels_outside_the_classes_on_every_backend() {
    let b = Builder::new("ce");
    let logits = b.input("logits", DType::F32, [4, 10]);
    let labels = b.input("labels", DType::I32, [4]);
    b.output("loss", loss::cross_entropy(logits, labels));
    let g = b.finish().unwrap();
    let logits = Value::from_vec(&[4, 10], (0..40).map(|i| (i % 7) as f32 * 0.3).collect::<Vec<_>>()).unwrap();
    let feeds = |l: [i32; 4]| {
        HashMap::from([
            ("logits".to_string(), logits.clone()),
            ("labels".to_string(), Value::from_vec(&[4], l.to_vec()).unwrap()),
        ])
    };
    let good = feeds([3, 0, 9, 3]);
    let want = interp::run(&g, &good).unwrap()[0].to_f64_vec()[0];
    // The loss by hand: mean of logsumexp(row) - row[label].
    let rows: Vec<Vec<f64>> = logits.to_f64_vec().chunks(10).map(<[f64]>::to_vec).collect();
    let by_hand =
        [3, 0, 9, 3].iter().zip(&rows).map(|(&l, r)| r.iter().map(|v| v.exp()).sum::<f64>().ln() - r[l]).sum::<f64>()
            / 4.0;
    assert!((want - by_hand).abs() < 1e-5, "{want} vs {by_hand}");
    let exe = kiln::compile(&g, kiln::Fusion::Fused).unwrap();
    assert!((exe.run(&good).unwrap()[0].to_f64_vec()[0] - want).abs() < 1e-5);
    use kiln::runtime::exec::{Backend, run};
    let gpu = Backend::Gpu(kiln::gpu::DeviceKind::Emulated);
    for bad in [[12, -1, 3, 3], [3, 0, 10, 3], [0, 0, 0, -7]] {
        let e = interp::run(&g, &feeds(bad)).unwrap_err().to_string();
        assert!(e.contains("gather") && e.contains("index"), "interpreter, {bad:?}: {e}");
        assert!(exe.run(&feeds(bad)).is_err(), "optimized JIT accepted labels {bad:?}");
        for backend in [Backend::Jit, gpu] {
            let e = run(&g, &feeds(bad), 0, backend).unwrap_err().to_string();
            assert!(e.contains("index"), "{backend:?}, {bad:?}: {e}");
        }
    }
}
