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
        (
            "x".to_string(),
            f32v(&[4, 2], &[0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]),
        ),
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
    let predicted: Vec<f64> = probs
        .iter()
        .map(|p| if *p > 0.5 { 1.0 } else { 0.0 })
        .collect();
    assert_eq!(
        predicted,
        vec![0.0, 1.0, 1.0, 0.0],
        "probabilities {probs:?}"
    );
}
