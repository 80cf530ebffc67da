//! Your own classifier, trained with the `Trainer`: points in the plane classed by the ring
//! they lie on, read from CSV files by a data loader written here, trained with a validation
//! split, scored on a test set, saved as a checkpoint, reloaded and used for prediction.
//!
//! Run with `cargo run --release --example own_classifier` (CI runs it too). It writes
//! `runs/rings/model.safetensors` and `runs/rings/curve.png`, and exits with an error if the
//! test accuracy is poor. `cargo run --release --example own_library` then compiles that
//! checkpoint into a C library.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use kiln::data::Dataset;
use kiln::fit::{self, Config, Defaults, Metric, Predictor, Task, Trainer};
use kiln::prelude::*;

#[path = "rings/model.rs"]
mod rings;

/// Writes `n` points as CSV lines `x,y,ring`: ring k at radius k + 1, with noise. A stand-in
/// for data that arrives as files.
fn write_points(path: &Path, n: usize, seed: u64) -> std::io::Result<()> {
    let mut text = String::from("x,y,ring\n");
    for i in 0..n as u64 {
        let u = |k: u64| kiln::ir::rng::uniform_f64(kiln::ir::rng::bits(seed, 3 * i + k));
        let ring = (u(0) * rings::CLASSES as f64) as usize;
        let (angle, radius) = (u(1) * std::f64::consts::TAU, ring as f64 + 1.0 + (u(2) - 0.5) * 0.8);
        text += &format!("{:.5},{:.5},{ring}\n", radius * angle.cos(), radius * angle.sin());
    }
    std::fs::write(path, text)
}

/// The data loader: a CSV file of `x,y,ring` lines (after a header) as a dataset of
/// `f32[n, 2]` points and `i32[n]` ring labels. A malformed line is an error naming it.
fn load_points(path: &Path) -> Result<Dataset, Box<dyn std::error::Error>> {
    let text = std::fs::read_to_string(path)?;
    let (mut points, mut labels) = (Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate().skip(1) {
        let bad = || format!("{}:{}: expected `x,y,ring`, got `{line}`", path.display(), i + 1);
        let fields: Vec<&str> = line.split(',').collect();
        let [x, y, ring] = fields[..] else { return Err(bad().into()) };
        points.push(x.trim().parse::<f32>().map_err(|_| bad())?);
        points.push(y.trim().parse::<f32>().map_err(|_| bad())?);
        labels.push(ring.trim().parse::<i32>().map_err(|_| bad())?);
    }
    let n = labels.len();
    Ok(Dataset::new(Value::from_vec(&[n, 2], points)?, Value::from_vec(&[n], labels)?)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let out = Path::new(rings::CHECKPOINT).parent().ok_or("no directory")?;
    std::fs::create_dir_all(out)?;
    write_points(&out.join("train.csv"), 3000, 1)?;
    write_points(&out.join("test.csv"), 600, 2)?;

    // The task: the model at any batch size, the data, how predictions are scored.
    let task = Task::new("rings", load_points(&out.join("train.csv"))?, Metric::Argmax, rings::model)
        .with_test(load_points(&out.join("test.csv"))?)
        .with_description("points on three rings (CSV)")
        .with_defaults(Defaults {
            epochs: 8,
            batch: 32,
            lr: 0.01,
            schedule: fit::Schedule::Cosine,
            ..Defaults::default()
        });

    // Train on the JIT: 10% of the training points are held out for validation, scored after
    // every epoch; a progress bar is drawn when stderr is a terminal.
    let mut trainer = Trainer::new(task.clone(), Config::defaults(&task))?;
    fit::progress::run(&mut trainer, &AtomicBool::new(false), &mut |line| println!("{line}"))?;
    let accuracy = trainer.test_score()?.ok_or("no test set")?;
    println!("test accuracy {}", Metric::Argmax.show(accuracy));

    // Save parameters, optimizer state and history; draw the curves.
    trainer.save(Path::new(rings::CHECKPOINT))?;
    fit::plot::curve(&out.join("curve.png"), "rings", &trainer, fit::plot::Scale::Log)?;

    // Reload the checkpoint for prediction, at another batch size.
    let mut predictor = Predictor::from_checkpoint(task, Path::new(rings::CHECKPOINT), 4, 1)?;
    let points = Value::from_vec(&[4, 2], vec![0.0f32, 1.0, -2.1, 0.0, 0.0, -2.9, 0.7, 0.7])?;
    let classes = predictor.classes(&points)?;
    println!("rings of (0, 1), (-2.1, 0), (0, -2.9), (0.7, 0.7): {classes:?}");
    if accuracy < 0.9 || classes != [0, 1, 2, 0] {
        return Err(format!("the classifier is poor: test accuracy {accuracy}, classes {classes:?}").into());
    }
    println!("saved {} and {}", rings::CHECKPOINT, out.join("curve.png").display());
    Ok(())
}
