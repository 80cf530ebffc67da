//! Training a model written with the DSL through the same `Trainer` the zoo uses: a
//! regression scored by MSE and MAE, the validation split, checkpoints and resume, prediction,
//! and clear errors for data that does not fit the model.

mod common;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use common::scratch::Scratch;
use kiln::data::Dataset;
use kiln::fit::{self, Config, Defaults, Loss, Metric, Model, Predictor, Task, Trainer};
use kiln::prelude::*;

/// `x: f32[batch, 1]` → `y: f32[batch, 1]` through 16 tanh units, trained with `loss`.
fn sine_model(batch: usize, loss: Loss) -> Result<Model, BuildError> {
    let b = Builder::new("sine");
    let x = b.input("x", DType::F32, [batch, 1]);
    let h = nn::Linear::new(&b, "fc1", 1, 16).forward(x).tanh();
    b.output("y", nn::Linear::new(&b, "fc2", 16, 1).forward(h));
    Ok(Model { graph: b.finish()?, loss, labels: TensorType::new(DType::F32, [batch, 1]) })
}

/// `n` points of `sin` on `[-3, 3]`, evenly spaced and interleaved by `offset`.
fn sine_data(n: usize, offset: f32) -> Dataset {
    let x: Vec<f32> = (0..n).map(|i| -3.0 + 6.0 * (i as f32 + offset) / n as f32).collect();
    let y: Vec<f32> = x.iter().map(|x| x.sin()).collect();
    Dataset::new(Value::from_vec(&[n, 1], x).unwrap(), Value::from_vec(&[n, 1], y).unwrap()).unwrap()
}

fn sine_task(metric: Metric) -> Task {
    let loss = if metric == Metric::Mae { Loss::Mae } else { Loss::Mse };
    Task::new("sine", sine_data(400, 0.0), metric, move |b| sine_model(b, loss))
        .with_test(sine_data(100, 0.5))
        .with_defaults(Defaults { epochs: 30, batch: 16, lr: 0.02, ..Defaults::default() })
}

fn scratch(name: &str) -> Scratch {
    Scratch::new("own-model", name)
}

fn run(t: &mut Trainer) -> Vec<f64> {
    let mut scores = Vec::new();
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, s| scores.push(s)).unwrap();
    scores
}

#[test]
fn an_own_regression_trains_with_a_validation_split_and_is_scored_by_mse() {
    let task = sine_task(Metric::Mse);
    let config = Config::defaults(&task);
    assert_eq!(config.validation, 0.1);
    let mut t = Trainer::new(task.clone(), config.clone()).unwrap();
    // 10% of the 400 training points validate; the rest train, none twice.
    let held = t.held_out().unwrap();
    assert_eq!((held.name, held.data.len(), t.train_set().len()), ("validation", 40, 360));
    let mut xs: Vec<f64> = t.train_set().x.to_f64_vec();
    xs.extend(held.data.x.to_f64_vec());
    xs.sort_by(f64::total_cmp);
    assert_eq!(xs, task.train.x.to_f64_vec());
    assert_eq!(t.steps_per_epoch(), 360 / 16);

    let scores = run(&mut t);
    assert_eq!(scores.len(), 30);
    assert_eq!(t.history().held_out.len(), 30);
    // The validation MSE falls from sin's variance (~0.5) to a close fit.
    assert!(scores[29] < 0.02 && scores[29] < scores[0] / 5.0, "validation MSE by epoch: {scores:?}");
    let test = t.test_score().unwrap().unwrap();
    assert!(test < 0.03, "test MSE {test}");
    // The score is the mean squared error of the predictions, computed here independently.
    let (_dir, checkpoint) = save(&t, "mse");
    let mut p = Predictor::from_checkpoint(task.clone(), &checkpoint, 7, 1).unwrap();
    let data = task.test.as_ref().unwrap();
    let predicted = p.predict(&data.x).unwrap();
    assert_eq!(predicted.shape(), &[100, 1]);
    let (pred, truth) = (predicted.to_f64_vec(), data.y.to_f64_vec());
    let mse = pred.iter().zip(&truth).map(|(p, t)| (p - t) * (p - t)).sum::<f64>() / 100.0;
    assert!((mse - test).abs() < 1e-6 * mse.max(1.0), "{mse} vs {test}");
    assert!((p.accuracy(data).unwrap() - test).abs() < 1e-9);
    // A regression model has no classes.
    let e = p.classes(&data.x).unwrap_err().to_string();
    assert!(e.contains("regression model (mse)"), "{e}");

    // The same seed draws the same split and trains the same; another seed another split.
    let mut again = Trainer::new(task.clone(), config.clone()).unwrap();
    assert_eq!(again.held_out().unwrap().data, t.held_out().unwrap().data);
    run(&mut again);
    assert_eq!(again.history(), t.history());
    let other = Trainer::new(task, Config { seed: 1, ..config }).unwrap();
    assert_ne!(other.held_out().unwrap().data, t.held_out().unwrap().data);
}

/// `t`'s checkpoint in a scratch directory (removed when the returned guard drops).
fn save(t: &Trainer, name: &str) -> (Scratch, PathBuf) {
    let dir = scratch(name);
    let path = dir.join("model.safetensors");
    t.save(&path).unwrap();
    (dir, path)
}

#[test]
fn mae_trains_and_scores_mean_absolute_error() {
    let task = sine_task(Metric::Mae);
    let mut config = Config::defaults(&task);
    config.epochs = 12;
    config.validation = 0.0;
    let mut t = Trainer::new(task.clone(), config).unwrap();
    // Without a validation split the test set is scored after every epoch.
    assert_eq!(t.held_out().unwrap().name, "test");
    let scores = run(&mut t);
    assert!(scores[11] < 0.15 && scores[11] < scores[0], "test MAE by epoch: {scores:?}");
    let data = task.test.as_ref().unwrap();
    let (_dir, checkpoint) = save(&t, "mae");
    let mut p = Predictor::from_checkpoint(task.clone(), &checkpoint, 100, 1).unwrap();
    let pred = p.predict(&data.x).unwrap().to_f64_vec();
    let mae = pred.iter().zip(data.y.to_f64_vec()).map(|(p, t)| (p - t).abs()).sum::<f64>() / 100.0;
    assert!((mae - scores[11]).abs() < 1e-6, "{mae} vs {}", scores[11]);
}

#[test]
fn an_own_model_resumes_where_it_stopped() {
    let task = sine_task(Metric::Mse);
    let mut config = Config::defaults(&task);
    config.epochs = 4;
    let mut whole = Trainer::new(task.clone(), config.clone()).unwrap();
    run(&mut whole);
    config.epochs = 2;
    let mut first = Trainer::new(task.clone(), config.clone()).unwrap();
    run(&mut first);
    let (_dir, path) = save(&first, "resume");
    config.epochs = 4;
    let mut resumed = Trainer::resume(task.clone(), config.clone(), &path).unwrap();
    run(&mut resumed);
    assert_eq!(resumed.history(), whole.history());
    // The checkpoint records the model's name and the split: another split is refused.
    config.validation = 0.2;
    let e = Trainer::resume(task, config, &path).unwrap_err().to_string();
    assert!(e.contains("validation = `0.1`"), "{e}");
    // Losses that fall to the smallest floats (or to 0) draw on a log axis too.
    let tiny = [1.0f32, 1e-30, 1e-45, 0.5, f32::MIN_POSITIVE, 1e-3];
    let png = path.with_extension("tiny.png");
    fit::plot::losses(&png, "tiny", &[("loss", &tiny)], None, fit::plot::Scale::Log).unwrap();
    fit::plot::losses(&png, "tiny", &[("loss", &tiny[..3])], None, fit::plot::Scale::Log).unwrap();
    // And a run with no finite loss yet, or none at all.
    fit::plot::losses(&png, "none", &[("loss", &[f32::NAN, f32::INFINITY])], None, fit::plot::Scale::Log).unwrap();
    fit::plot::losses(&png, "none", &[("loss", &[])], None, fit::plot::Scale::Log).unwrap();
    // Curves draw on either loss scale.
    for scale in [fit::plot::Scale::Log, fit::plot::Scale::Linear] {
        let png = path.with_extension("png");
        fit::plot::curve(&png, "sine", &resumed, scale).unwrap();
        assert!(std::fs::metadata(&png).unwrap().len() > 1000);
    }
}

#[test]
fn data_that_does_not_fit_the_model_is_a_clear_error() {
    let base = sine_task(Metric::Mse);
    let with_train = |train: Dataset| {
        let mut task = base.clone();
        task.train = train;
        Trainer::new(task.clone(), Config::defaults(&task)).map(|_| ()).unwrap_err().to_string()
    };
    // f64 examples for an f32 model.
    let x64 = Value::from_vec(&[400, 1], vec![0.5f64; 400]).unwrap();
    let e = with_train(Dataset::new(x64, base.train.y.clone()).unwrap());
    assert!(e.contains("the examples are f64 [400, 1]") && e.contains("the model takes f32"), "{e}");
    // Two targets per example where the model predicts one.
    let y2 = Value::from_vec(&[400, 2], vec![0.5f32; 800]).unwrap();
    let e = with_train(Dataset::new(base.train.x.clone(), y2).unwrap());
    assert!(e.contains("the labels are f32 [400, 2] (2 per example)") && e.contains("1 per example"), "{e}");
    // A model without the input `x`.
    let no_x = Task::new("nox", base.train.clone(), Metric::Mse, |batch| {
        let b = Builder::new("nox");
        let x = b.input("features", DType::F32, [batch, 1]);
        b.output("y", nn::Linear::new(&b, "fc", 1, 1).forward(x));
        Ok(Model { graph: b.finish()?, loss: Loss::Mse, labels: TensorType::new(DType::F32, [batch, 1]) })
    });
    let e = Trainer::new(no_x.clone(), Config::defaults(&no_x)).unwrap_err().to_string();
    assert!(e.contains("has no input `x`"), "{e}");
    // A validation fraction that leaves nothing, or is not a fraction.
    for v in [1.0, -0.1, 0.999] {
        let mut c = Config::defaults(&base);
        c.validation = v;
        let e = Trainer::new(base.clone(), c).unwrap_err().to_string();
        assert!(e.contains("validation"), "{v}: {e}");
    }
    // A loss whose target shape differs from the prediction's fails when the step is built.
    let wrong = Task::new("wrong", base.train.clone(), Metric::Mse, |batch| {
        Ok(Model { labels: TensorType::new(DType::F32, [batch]), ..sine_model(batch, Loss::Mse)? })
    });
    let e = Trainer::new(wrong.clone(), Config::defaults(&wrong)).unwrap_err().to_string();
    assert!(e.contains("prediction [32, 1] and target [32] differ in shape"), "{e}");
}

#[test]
fn an_own_classifier_is_scored_by_accuracy_and_its_labels_checked() {
    // Two classes: is x above zero. Labels outside 0..2 are refused as for the zoo.
    let n = 256;
    let x: Vec<f32> = (0..n).map(|i| (i as f32 - 127.5) / 64.0).collect();
    let y: Vec<i32> = x.iter().map(|&v| i32::from(v > 0.0)).collect();
    let data = Dataset::new(Value::from_vec(&[n, 1], x).unwrap(), Value::from_vec(&[n], y).unwrap()).unwrap();
    let build = |batch: usize| -> Result<Model, BuildError> {
        let b = Builder::new("sign");
        let x = b.input("x", DType::F32, [batch, 1]);
        b.output("logits", nn::Linear::new(&b, "fc", 1, 2).forward(x));
        Ok(Model { graph: b.finish()?, loss: Loss::CrossEntropy, labels: TensorType::new(DType::I32, [batch]) })
    };
    let task = Task::new("sign", data.clone(), Metric::Argmax, build).with_defaults(Defaults {
        epochs: 5,
        batch: 16,
        lr: 0.1,
        ..Defaults::default()
    });
    let mut t = Trainer::new(task.clone(), Config::defaults(&task)).unwrap();
    let scores = run(&mut t);
    assert!(scores[4] >= 0.95, "validation accuracy by epoch: {scores:?}");
    // No test set: nothing to score at the end.
    assert_eq!(t.test_score().unwrap(), None);

    let mut bad = data;
    if let Value::I32(a) = &mut bad.y {
        a[[7]] = 2;
    }
    let mut task = task;
    task.train = bad;
    let mut c = Config::defaults(&task);
    c.validation = 0.0;
    let e = Trainer::new(task, c).unwrap().run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {});
    let e = e.unwrap_err().to_string();
    assert!(e.contains("label 2 of example 7") && e.contains("outside the classes 0..2"), "{e}");
}

/// The progress runner reports each epoch's held-out score by its set and metric.
#[test]
fn progress_lines_name_the_set_and_metric() {
    let task = sine_task(Metric::Mse);
    let mut c = Config::defaults(&task);
    c.epochs = 2;
    let mut t = Trainer::new(task, c).unwrap();
    let mut lines = Vec::new();
    fit::progress::run(&mut t, &AtomicBool::new(false), &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("epoch 1: validation mse 0."), "{lines:?}");
    assert!(lines[1].starts_with("epoch 2: validation mse"), "{lines:?}");
}
