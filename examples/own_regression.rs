//! Your own model, end to end: a 1 → 32 → 1 tanh network written with the DSL, trained on
//! the JIT to fit `sin(x)` on `[-π, π]`, its parameters saved by name to a safetensors file,
//! loaded back and used for prediction by a separately compiled forward graph.
//!
//! Run with `cargo run --release --example own_regression` (CI runs it too). It prints the
//! loss as it falls and exits with an error if the fit is poor.

use std::collections::{BTreeMap, HashMap};

use kiln::frontend::optim::Optimizer;
use kiln::prelude::*;
use kiln::runtime::train::TrainSession;

const BATCH: usize = 64;

/// The model: `x: [n, 1]` → `y: [n, 1]`. With `with_loss`, also the mean squared error
/// against `target`, as the output named `loss` that training minimizes.
fn model(n: usize, with_loss: bool) -> Result<Graph, BuildError> {
    let b = Builder::new("sine");
    let x = b.input("x", DType::F32, [n, 1]);
    let hidden = nn::Linear::new(&b, "fc1", 1, 32).forward(x).tanh();
    let y = nn::Linear::new(&b, "fc2", 32, 1).forward(hidden);
    b.output("y", y);
    if with_loss {
        // Prediction and target must have one shape: `[n, 1]`, not `[n]`.
        let target = b.input("target", DType::F32, [n, 1]);
        b.output("loss", loss::mse(y, target));
    }
    b.finish()
}

/// A batch of `x` uniform in `[-π, π]` (a fixed pseudo-random sequence) and `sin(x)`.
fn batch(step: u64) -> Result<HashMap<String, Value>, Box<dyn std::error::Error>> {
    let xs: Vec<f32> = (0..BATCH as u64)
        .map(|i| {
            let u = kiln::ir::rng::uniform_f64(kiln::ir::rng::bits(step, i));
            ((u * 2.0 - 1.0) * std::f64::consts::PI) as f32
        })
        .collect();
    let ys: Vec<f32> = xs.iter().map(|x| x.sin()).collect();
    Ok(HashMap::from([
        ("x".to_string(), Value::from_vec(&[BATCH, 1], xs)?),
        ("target".to_string(), Value::from_vec(&[BATCH, 1], ys)?),
    ]))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Train: one compiled step (forward, loss, backward, Adam) per call, on native kernels.
    let step = kiln::train::train_step_for(model(BATCH, true)?, &Optimizer::adam())?;
    let mut session = TrainSession::new(step, /* seed */ 0)?;
    for s in 0..3000u64 {
        let loss = session.step_owned(batch(s)?, 0.01)?;
        if s % 500 == 0 {
            println!("step {s:>4}: loss {loss:.5}");
        }
    }

    // Save the parameters (not the optimizer state) by name.
    let dir = std::env::temp_dir().join(format!("kiln-own-regression-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("sine.safetensors");
    kiln::fit::checkpoint::save(&path, session.params(), &BTreeMap::new())?;

    // Load them into a forward graph of another batch size and predict on a grid.
    let forward = model(9, false)?;
    let checkpoint = kiln::fit::checkpoint::load(&path)?;
    let mut feeds: HashMap<String, Value> = checkpoint.tensors.into_iter().collect();
    let grid: Vec<f32> = (0..9).map(|i| (i as f32 - 4.0) * 0.7).collect();
    feeds.insert("x".to_string(), Value::from_vec(&[9, 1], grid.clone())?);
    let exe = kiln::compile(&forward, kiln::Fusion::Fused)?;
    let predicted = exe.run(&feeds)?[0].to_vec::<f32>()?;
    let mut worst = 0.0f32;
    for (x, y) in grid.iter().zip(&predicted) {
        println!("sin({x:+.2}) = {:+.4}, predicted {y:+.4}", x.sin());
        worst = worst.max((x.sin() - y).abs());
    }
    std::fs::remove_dir_all(&dir)?;
    if worst > 0.1 {
        return Err(format!("the fit is poor: an error of {worst} on the grid").into());
    }
    println!("largest error on the grid: {worst:.4}");
    Ok(())
}
