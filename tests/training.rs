//! Training on the interpreter: optimizers against closed-form updates, whole-model gradients
//! against finite differences, and XOR learned to 100% accuracy.

mod common;

use std::collections::HashMap;

use common::*;
use kiln::frontend::optim::Optimizer;
use kiln::ir::{Value, interp};
use kiln::runtime::train::TrainSession;
use kiln::train::train_step;

fn xor_batch() -> HashMap<String, Value> {
    HashMap::from([
        ("x".to_string(), f32v(&[4, 2], &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0])),
        ("labels".to_string(), f32v(&[4, 1], &[0.0, 1.0, 1.0, 0.0])),
    ])
}

#[test]
fn xor_mlp_trains_to_full_accuracy() {
    let model = kiln::zoo::xor_mlp(4).unwrap();
    let step = train_step(&model, &Optimizer::adam()).unwrap();
    let mut session = TrainSession::new(step, 1).unwrap();
    let batch = xor_batch();
    let first = session.step(&batch, 0.1).unwrap();
    let mut last = first;
    for _ in 0..600 {
        last = session.step(&batch, 0.1).unwrap();
    }
    assert!(last < first / 10.0, "loss {first} -> {last}");
    // Evaluate the trained parameters on the forward graph.
    let mut feeds: HashMap<String, Value> = session.values().clone();
    feeds.retain(|k, _| model.graph.leaf(k).is_some());
    feeds.insert("x".into(), batch["x"].clone());
    let probs = interp::run(&model.graph, &feeds).unwrap()[0].to_f64_vec();
    let predicted: Vec<f64> = probs.iter().map(|p| if *p > 0.5 { 1.0 } else { 0.0 }).collect();
    assert_eq!(predicted, vec![0.0, 1.0, 1.0, 0.0], "probabilities {probs:?}");
}

use kiln::frontend::Builder;
use kiln::ir::{DType, Init};

/// `loss = ½‖p − c‖²` over a parameter `p` (starting at 0): its gradient is `p − c`.
fn quadratic_session(opt: &Optimizer) -> TrainSession {
    let b = Builder::new("quad").with_float(DType::F64);
    let p = b.param("p", [3], Init::Zeros);
    let c = b.input("c", DType::F64, [3]);
    b.output("loss", (p - c).square().sum_all() * 0.5);
    let g = b.finish().unwrap();
    TrainSession::new(kiln::train::train_step_for(g, opt).unwrap(), 0).unwrap()
}

const C: [f64; 3] = [1.0, -2.0, 3.0];

fn run_steps(opt: &Optimizer, lr: f64, steps: usize) -> Vec<f64> {
    let mut s = quadratic_session(opt);
    let batch = HashMap::from([("c".to_string(), f64v(&[3], &C))]);
    for _ in 0..steps {
        s.step(&batch, lr).unwrap();
    }
    s.value("p").unwrap().to_f64_vec()
}

/// The same optimizers written out directly, as in PyTorch's documentation.
fn reference(opt: &Optimizer, lr: f64, steps: usize) -> Vec<f64> {
    use kiln::frontend::optim::OptimizerKind;
    let mut p = vec![0.0f64; 3];
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    for t in 1..=steps {
        let mut g: Vec<f64> = p.iter().zip(C).map(|(p, c)| p - c).collect();
        if let Some(max) = opt.clip_grad_norm {
            let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
            let scale = (max / (norm + 1e-6)).min(1.0);
            g.iter_mut().for_each(|x| *x *= scale);
        }
        let decoupled = matches!(opt.kind, OptimizerKind::AdamW { .. });
        if !decoupled {
            for i in 0..3 {
                g[i] += opt.weight_decay * p[i];
            }
        }
        for i in 0..3 {
            let delta = match opt.kind {
                OptimizerKind::Sgd => g[i],
                OptimizerKind::Momentum { momentum, nesterov } => {
                    m[i] = momentum * m[i] + g[i];
                    if nesterov { g[i] + momentum * m[i] } else { m[i] }
                }
                OptimizerKind::Adam { beta1, beta2, eps } | OptimizerKind::AdamW { beta1, beta2, eps } => {
                    m[i] = beta1 * m[i] + (1.0 - beta1) * g[i];
                    v[i] = beta2 * v[i] + (1.0 - beta2) * g[i] * g[i];
                    let mhat = m[i] / (1.0 - beta1.powi(t as i32));
                    let vhat = v[i] / (1.0 - beta2.powi(t as i32));
                    mhat / (vhat.sqrt() + eps) + if decoupled { opt.weight_decay * p[i] } else { 0.0 }
                }
            };
            p[i] -= lr * delta;
        }
    }
    p
}

#[test]
fn one_sgd_step_is_the_closed_form() {
    // p1 = p0 − lr (p0 − c) with p0 = 0.
    let got = run_steps(&Optimizer::sgd(), 0.1, 1);
    assert_close(&got, &[0.1, -0.2, 0.3], 1e-15);
    // With L2 decay the gradient gains wd·p; from p0 = 0 the second step shows it.
    let got = run_steps(&Optimizer::sgd().with_weight_decay(0.5), 0.1, 2);
    let p1: Vec<f64> = C.iter().map(|c| 0.1 * c).collect();
    let want: Vec<f64> = p1.iter().zip(C).map(|(p, c)| p - 0.1 * ((p - c) + 0.5 * p)).collect();
    assert_close(&got, &want, 1e-15);
}

#[test]
fn adam_first_step_moves_by_lr_times_the_sign() {
    // With bias correction, m̂ = g and v̂ = g² on step 1, so the step is lr·g/(|g|+ε).
    let got = run_steps(&Optimizer::adam(), 0.01, 1);
    assert_close(&got, &[0.01, -0.01, 0.01], 1e-7);
}

#[test]
fn every_optimizer_matches_its_reference_over_several_steps() {
    let opts = [
        Optimizer::sgd(),
        Optimizer::momentum(0.9, false),
        Optimizer::momentum(0.9, true),
        Optimizer::adam(),
        Optimizer::adam().with_weight_decay(0.1),
        Optimizer::adamw(0.1),
        Optimizer::momentum(0.5, false).with_weight_decay(0.01),
        Optimizer::sgd().with_clip_grad_norm(1.0),
        Optimizer::adam().with_clip_grad_norm(0.5),
    ];
    for opt in opts {
        let (got, want) = (run_steps(&opt, 0.05, 7), reference(&opt, 0.05, 7));
        assert_close(&got, &want, 1e-12);
        assert!(want.iter().any(|v| v.abs() > 1e-3), "{opt:?} moved nothing");
    }
}

#[test]
fn state_is_carried_between_steps() {
    let s = quadratic_session(&Optimizer::adam());
    let names: Vec<&str> = s.train_step().state.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["adam.m.p", "adam.v.p", "adam.step"]);
    let mut s = s;
    let batch = HashMap::from([("c".to_string(), f64v(&[3], &C))]);
    for _ in 0..3 {
        s.step(&batch, 0.1).unwrap();
    }
    assert_eq!(s.value("adam.step").unwrap().to_f64_vec(), vec![3.0]);
    assert_eq!(s.steps_done(), 3);
    assert_eq!(s.train_step().data_inputs, vec!["c".to_string()]);
}

/// A model with dropout trains through a session that feeds a fresh `rng_seed` every step;
/// its eval graph is the same model without the random mask.
#[test]
fn dropout_models_get_a_fresh_seed_each_step() {
    use kiln::frontend::{Mode, nn};
    let build = |mode| {
        let b = Builder::new("drop").with_mode(mode);
        let x = b.input("x", DType::F32, [4, 2]);
        let h = nn::Dropout::new(0.5).forward(nn::Linear::new(&b, "fc1", 2, 16).forward(x).relu());
        b.output("prob", nn::Linear::new(&b, "fc2", 16, 1).forward(h).sigmoid());
        b.finish().unwrap()
    };
    let (train_g, eval_g) = (build(Mode::Train), build(Mode::Eval));
    assert!(train_g.leaf("rng_seed").is_some() && eval_g.leaf("rng_seed").is_none());
    let model = kiln::zoo::Model {
        graph: train_g,
        loss: kiln::zoo::Loss::Mse,
        labels: kiln::ir::TensorType::new(DType::F32, [4, 1]),
    };
    let step = train_step(&model, &Optimizer::sgd()).unwrap();
    assert_eq!(step.data_inputs, vec!["x".to_string(), "labels".to_string()]);
    let mut s = TrainSession::new(step, 3).unwrap();
    let batch = xor_batch();
    // With lr = 0 the parameters stay put, so different losses mean different masks.
    let losses: Vec<f64> = (0..4).map(|_| s.step(&batch, 0.0).unwrap()).collect();
    assert!(losses.windows(2).any(|w| w[0] != w[1]), "{losses:?}");
}

/// The README's training-session example, as written there.
#[test]
fn the_readmes_session_example_runs() -> Result<(), Box<dyn std::error::Error>> {
    use kiln::frontend::optim::Optimizer;
    use kiln::ir::Value;
    use kiln::runtime::{exec::Backend, train::TrainSession};
    use std::collections::HashMap;

    let model = kiln::zoo::xor_mlp(4)?; // forward graph + its loss kind
    let step = kiln::train::train_step(&model, &Optimizer::adam())?; // one graph per step
    let mut session = TrainSession::with_backend(step, /* seed */ 1, Backend::Jit)?; // native kernels
    let batch = HashMap::from([
        // inputs by name: x and labels
        ("x".to_string(), Value::from_vec(&[4, 2], vec![0f32, 0., 0., 1., 1., 0., 1., 1.])?),
        ("labels".to_string(), Value::from_vec(&[4, 1], vec![0f32, 1., 1., 0.])?),
    ]);
    let loss = session.step(&batch, /* lr */ 0.1)?;
    assert!(loss.is_finite() && loss > 0.0, "{loss}");
    Ok(())
}

/// A session's values split into the parameters and the optimizer state.
#[test]
fn parameters_and_optimizer_state_are_separate_views() {
    let model = kiln::zoo::xor_mlp(4).unwrap();
    let step = kiln::train::train_step(&model, &kiln::frontend::optim::Optimizer::adam()).unwrap();
    let state_names: Vec<String> = step.state.iter().map(|(n, _, _)| n.clone()).collect();
    let s = kiln::runtime::train::TrainSession::new(step, 0).unwrap();
    let (params, state) = (s.params(), s.optimizer_state());
    let mut p: Vec<&str> = params.keys().copied().collect();
    p.sort_unstable();
    assert_eq!(p, ["hidden.bias", "hidden.weight", "out.bias", "out.weight"]);
    assert_eq!(state.len(), state_names.len());
    assert!(state_names.iter().all(|n| state.contains_key(n.as_str())));
    assert_eq!(params.len() + state.len(), s.values().len());
}
