//! Training for real, through the public API: the MNIST loader and its errors, the synthetic
//! tasks, a short MNIST run that must learn, checkpoints (round trip, resume, bad tensors),
//! prediction, dropout and weight decay.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use common::scratch::Scratch;
use kiln::data::{self, DataError, mnist, synthetic};
use kiln::fit::{self, Config, Outcome, Predictor, Trainer, checkpoint};
use kiln::ir::Value;

fn scratch(name: &str) -> Scratch {
    Scratch::new("fit", name)
}

fn i32s(v: &Value) -> Vec<i32> {
    match v {
        Value::I32(a) => a.iter().copied().collect(),
        other => panic!("expected i32 labels, got {}", other.ty()),
    }
}

#[test]
fn mnist_loads_with_exact_counts_and_known_pixels() {
    let m = mnist::load(&mnist::bundled_dir()).unwrap();
    assert_eq!(m.train.x.shape(), &[60_000, 28, 28]);
    assert_eq!(m.train.y.shape(), &[60_000]);
    assert_eq!(m.test.x.shape(), &[10_000, 28, 28]);
    assert_eq!(m.test.y.shape(), &[10_000]);
    // Spot checks computed from the checksummed files (data/mnist/README.md).
    assert_eq!(&i32s(&m.train.y)[..10], &[5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(&i32s(&m.test.y)[..10], &[7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    let Value::F32(x) = &m.train.x else { panic!("images are f32") };
    let first: f64 = x.iter().take(784).map(|&p| f64::from(p) * 255.0).sum();
    assert!((first - 27_525.0).abs() < 1e-2, "sum of the first image's bytes: {first}");
    assert_eq!((x[[0, 14, 14]] * 255.0).round(), 240.0);
    assert_eq!((x[[0, 5, 21]] * 255.0).round(), 255.0);
    let total: f64 = x.iter().map(|&p| f64::from(p) * 255.0).sum();
    assert!((total - 1_567_298_545.0).abs() < 1e3, "sum of every training byte: {total}");
    let counts = i32s(&m.train.y).iter().fold([0usize; 10], |mut c, &l| {
        c[l as usize] += 1;
        c
    });
    assert_eq!(counts.iter().sum::<usize>(), 60_000);
    assert_eq!(counts[1], 6742, "ones in the training set");
}

#[test]
fn raw_idx_files_load_like_gzipped_ones() {
    let dir = scratch("raw");
    let bytes = std::fs::read(mnist::bundled_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes.as_slice()), &mut raw).unwrap();
    std::fs::write(dir.join("labels"), &raw).unwrap();
    let from_raw = mnist::read_labels(&dir.join("labels")).unwrap();
    let from_gz = mnist::read_labels(&mnist::bundled_dir().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    assert_eq!(from_raw, from_gz);
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::File::create(path).unwrap().write_all(bytes).unwrap();
}

#[test]
fn bad_mnist_files_are_clear_errors() {
    let dir = scratch("bad");
    // Truncated: header says 3 labels, the file has 2.
    write(&dir.join("short"), &[0, 0, 8, 1, 0, 0, 0, 3, 1, 2]);
    let e = mnist::read_labels(&dir.join("short")).unwrap_err().to_string();
    assert!(e.contains("need 3 data bytes, the file has 2"), "{e}");
    // Wrong magic: an image file read as labels.
    write(&dir.join("magic"), &[0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 7]);
    let e = mnist::read_labels(&dir.join("magic")).unwrap_err().to_string();
    assert!(e.contains("magic number 0x00000803, expected 0x00000801"), "{e}");
    // A header cut short.
    write(&dir.join("header"), &[0, 0, 8]);
    let e = mnist::read_labels(&dir.join("header")).unwrap_err().to_string();
    assert!(e.contains("truncated header"), "{e}");
    // Not a digit.
    write(&dir.join("label"), &[0, 0, 8, 1, 0, 0, 0, 1, 12]);
    let e = mnist::read_labels(&dir.join("label")).unwrap_err().to_string();
    assert!(e.contains("label 0 is 12"), "{e}");
    // Corrupt gzip.
    write(&dir.join("gz"), &[0x1F, 0x8B, 8, 0, 1, 2, 3]);
    let e = mnist::read_labels(&dir.join("gz")).unwrap_err().to_string();
    assert!(e.contains("corrupt gzip"), "{e}");
    // A directory without the files.
    let e = mnist::load(&dir).unwrap_err();
    assert!(matches!(e, DataError::Io { .. }));
    assert!(e.to_string().contains("no MNIST file `train-images-idx3-ubyte.gz`"), "{e}");
}

#[test]
fn synthetic_tasks_are_seeded_and_balanced() {
    assert_eq!(synthetic::shapes(20, 3), synthetic::shapes(20, 3));
    assert_ne!(synthetic::shapes(20, 3), synthetic::shapes(20, 4));
    let s = synthetic::shapes(100, 1);
    assert_eq!(s.x.shape(), &[100, 3, 32, 32]);
    assert!(i32s(&s.y).iter().all(|&l| (0..10).contains(&l)));

    let o = synthetic::order(64, 32, 50, 7).unwrap();
    let (x, y) = (i32s(&o.x), i32s(&o.y));
    assert_eq!(y.iter().filter(|&&l| l == 1).count(), 32);
    for (seq, label) in x.chunks(32).zip(&y) {
        // Both markers once each: the counts are the same in both classes.
        assert_eq!(seq.iter().filter(|&&t| t == synthetic::MARKER_A).count(), 1);
        assert_eq!(seq.iter().filter(|&&t| t == synthetic::MARKER_B).count(), 1);
        let a = seq.iter().position(|&t| t == synthetic::MARKER_A).unwrap();
        let b = seq.iter().position(|&t| t == synthetic::MARKER_B).unwrap();
        assert_eq!(*label, i32::from(a < b));
    }
    assert!(synthetic::order(4, 1, 50, 0).is_err());

    let r = synthetic::reverse(3, 8, 5, 0);
    let (x, y) = (i32s(&r.x), i32s(&r.y));
    for (s, t) in x.chunks(8).zip(y.chunks(8)) {
        assert!(s.iter().rev().eq(t.iter()));
    }
}

#[test]
fn shuffles_are_permutations_fixed_by_seed_and_epoch() {
    let a = data::shuffled(1000, 5, 0);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert!(sorted.into_iter().eq(0..1000));
    assert_eq!(a, data::shuffled(1000, 5, 0));
    assert_ne!(a, data::shuffled(1000, 5, 1));
    assert_ne!(a, data::shuffled(1000, 6, 0));
}

/// mnist_mlp on the first 38,400 training images: 300 steps of 128.
fn short_mnist_task() -> fit::Task {
    let mut task = fit::task("mnist_mlp", &mnist::bundled_dir(), 0).unwrap();
    task.train = task.train.take(300 * 128);
    task
}

#[test]
fn a_short_mnist_run_learns_through_the_jit() {
    let task = short_mnist_task();
    let mut config = Config::defaults(&task);
    config.epochs = 1;
    config.validation = 0.0;
    let mut t = Trainer::new(task, config).unwrap();
    assert_eq!(t.steps_per_epoch(), 300);
    let mut steps = 0;
    let mut accuracies = Vec::new();
    let outcome = t.run(&AtomicBool::new(false), &mut |_| steps += 1, &mut |_, acc| accuracies.push(acc)).unwrap();
    assert_eq!(outcome, Outcome::Finished);
    assert_eq!(steps, 300);
    assert!(accuracies[0] > 0.90, "held-out accuracy after 300 steps: {}", accuracies[0]);
    let losses = &t.history().step_loss;
    let head: f32 = losses[..20].iter().sum::<f32>() / 20.0;
    let tail: f32 = losses[280..].iter().sum::<f32>() / 20.0;
    assert!(tail < head / 4.0, "loss {head} -> {tail}");

    // The checkpoint scores the same through a Predictor, and predicts the labels it scores.
    let dir = scratch("short");
    let ck = dir.join("model.safetensors");
    t.save(&ck).unwrap();
    let task = short_mnist_task();
    let test = task.test.as_ref().unwrap().take(1000);
    let mut p = Predictor::from_checkpoint(task, &ck, 100, 1).unwrap();
    let acc = p.accuracy(&test).unwrap();
    assert!((acc - t.evaluate(&test).unwrap()).abs() < 1e-12);
    let classes = p.classes(&test.x).unwrap();
    let right = classes.iter().zip(i32s(&test.y)).filter(|(c, l)| **c as i32 == *l).count();
    assert_eq!(right as f64 / 1000.0, acc);
}

/// Runs `t` until `n` steps have run in this call, then raises its stop flag.
fn run_steps(t: &mut Trainer, n: usize) -> Outcome {
    let stop = AtomicBool::new(false);
    let mut steps = 0;
    let mut count = |_: &fit::Progress| {
        steps += 1;
        if steps == n {
            stop.store(true, Ordering::Relaxed);
        }
    };
    t.run(&stop, &mut count, &mut |_, _| {}).unwrap()
}

/// An xor_mlp trainer with a tiny training set: fast enough to run several times.
fn xor_trainer(epochs: usize) -> Trainer {
    let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    let mut config = Config::defaults(&task);
    config.epochs = epochs;
    Trainer::new(task, config).unwrap()
}

#[test]
fn xor_reaches_every_point() {
    let mut t = xor_trainer(4);
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    assert_eq!(t.history().held_out.last(), Some(&1.0));
}

#[test]
fn checkpoints_round_trip_bit_exactly() {
    let mut t = xor_trainer(1);
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    let dir = scratch("roundtrip");
    let path = dir.join("x.safetensors");
    t.save(&path).unwrap();
    let ck = checkpoint::load(&path).unwrap();
    for (name, v) in t.values() {
        assert_eq!(ck.tensors.get(name), Some(v), "{name}");
    }
    assert_eq!(ck.metadata["model"], "xor_mlp");
    assert_eq!(ck.metadata["epoch"], "1");
    // Every dtype survives.
    let mut tensors = BTreeMap::new();
    tensors.insert("f64".to_string(), Value::F64(ndarray::arr2(&[[1.5, -2.25]]).into_dyn()));
    tensors.insert("i64".to_string(), Value::I64(ndarray::arr1(&[i64::MIN, 7]).into_dyn()));
    tensors.insert("b".to_string(), Value::Bool(ndarray::arr1(&[true, false]).into_dyn()));
    tensors.insert("nan".to_string(), Value::F32(ndarray::arr1(&[f32::NAN]).into_dyn()));
    let p2 = path.with_file_name("all.safetensors");
    checkpoint::save(&p2, tensors.iter().map(|(k, v)| (k.as_str(), v)), &BTreeMap::new()).unwrap();
    let back = checkpoint::load(&p2).unwrap();
    assert_eq!(back.tensors["f64"], tensors["f64"]);
    assert_eq!(back.tensors["i64"], tensors["i64"]);
    assert_eq!(back.tensors["b"], tensors["b"]);
    assert!(back.tensors["nan"].to_f64_vec()[0].is_nan());
}

#[test]
fn resuming_continues_the_same_loss_curve() {
    let mut whole = xor_trainer(3);
    whole.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();

    // Interrupted in the middle of the second epoch, saved, resumed in a new trainer.
    let mut first = xor_trainer(3);
    let outcome = run_steps(&mut first, 300);
    assert_eq!(outcome, Outcome::Interrupted);
    let dir = scratch("resume");
    let path = dir.join("x.safetensors");
    first.save(&path).unwrap();
    let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    let mut config = Config::defaults(&task);
    config.epochs = 3;
    let mut resumed = Trainer::resume(task, config.clone(), &path).unwrap();
    assert_eq!(resumed.history().step_loss.len(), 300);
    resumed.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    assert_eq!(resumed.history().step_loss, whole.history().step_loss);
    assert_eq!(resumed.history().held_out, whole.history().held_out);
    for (name, v) in whole.values() {
        assert_eq!(resumed.values().get(name), Some(v), "{name}");
    }

    // A different run's settings are refused, naming the setting.
    let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    config.lr = 0.5;
    let e = Trainer::resume(task, config, &path).unwrap_err().to_string();
    assert!(e.contains("lr = `0.05`"), "{e}");
}

#[test]
fn checkpoints_with_missing_or_misshapen_tensors_are_named() {
    let dir = scratch("badck");
    let task = || fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    let w = Value::F32(ndarray::Array2::<f32>::zeros((2, 2)).into_dyn());
    let path = dir.join("missing.safetensors");
    checkpoint::save(&path, [("hidden.weight", &w)], &BTreeMap::new()).unwrap();
    let e = Predictor::from_checkpoint(task(), &path, 4, 1).unwrap_err().to_string();
    assert!(e.contains("no tensor `hidden.bias`"), "{e}");

    let bad = Value::F32(ndarray::Array2::<f32>::zeros((3, 2)).into_dyn());
    let mut t = xor_trainer(1);
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    let mut values: Vec<(&str, &Value)> = t.values().iter().map(|(k, v)| (k.as_str(), v)).collect();
    values.retain(|(k, _)| *k != "hidden.weight");
    values.push(("hidden.weight", &bad));
    let path = dir.join("shape.safetensors");
    checkpoint::save(&path, values, &BTreeMap::new()).unwrap();
    let e = Predictor::from_checkpoint(task(), &path, 4, 1).unwrap_err().to_string();
    assert!(e.contains("`hidden.weight` is f32[3,2], the model needs f32[2,2]"), "{e}");

    std::fs::write(dir.join("junk.safetensors"), b"not a checkpoint").unwrap();
    let e = Predictor::from_checkpoint(task(), &dir.join("junk.safetensors"), 4, 1).unwrap_err().to_string();
    assert!(e.contains("not a safetensors file"), "{e}");
}

#[test]
fn bad_settings_are_refused() {
    let task = || fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    let mut c = Config::defaults(&task());
    c.optimizer = "rmsprop".into();
    let e = Trainer::new(task(), c).unwrap_err().to_string();
    assert!(e.contains("unknown optimizer `rmsprop`"), "{e}");
    let mut c = Config::defaults(&task());
    c.batch = 0;
    assert!(Trainer::new(task(), c).unwrap_err().to_string().contains("--batch"));
    let mut c = Config::defaults(&task());
    c.lr = f64::NAN;
    assert!(Trainer::new(task(), c).unwrap_err().to_string().contains("--lr"));
    let e = fit::task("resnet", Path::new("."), 0).unwrap_err().to_string();
    assert!(e.contains("no training task for `resnet`"), "{e}");
}

#[test]
fn weight_decay_shrinks_the_weights() {
    let run = |wd: f64| {
        let task = short_mnist_task();
        let mut config = Config::defaults(&task);
        config.epochs = 1;
        config.weight_decay = wd;
        config.optimizer = "adamw".into();
        let mut t = Trainer::new(task, config).unwrap();
        run_steps(&mut t, 50);
        let w = t.values()["fc1.weight"].to_f64_vec();
        w.iter().map(|x| x * x).sum::<f64>().sqrt()
    };
    let (light, heavy) = (run(1e-4), run(0.5));
    assert!(heavy < 0.98 * light, "‖fc1.weight‖ with decay 0.5: {heavy}, with 1e-4: {light}");
}

#[test]
fn dropout_changes_training_only() {
    use kiln::frontend::Mode;
    let task = short_mnist_task();
    // The inference graph with dropout is the zoo's graph; the training graph draws masks.
    let eval = task.model_for(8, 0.5, Mode::Eval).unwrap().graph.to_string();
    assert_eq!(eval, kiln::zoo::mnist_mlp(8).unwrap().graph.to_string());
    let train = task.model_for(8, 0.5, Mode::Train).unwrap().graph.to_string();
    assert_eq!(train.matches(" rng").count(), 2, "{train}");
    assert!(train.contains("rng_seed"));

    let run = |p: f64| {
        let mut config = Config::defaults(&task);
        config.epochs = 1;
        config.dropout = p;
        let mut t = Trainer::new(task.clone(), config).unwrap();
        run_steps(&mut t, 40);
        t
    };
    let (plain, dropped) = (run(0.0), run(0.5));
    assert_eq!(plain.history().step_loss.len(), 40);
    assert_ne!(plain.history().step_loss, dropped.history().step_loss);
    // Dropout makes training noisier and harder: the loss is higher on average.
    let mean = |t: &Trainer| t.history().step_loss[20..].iter().sum::<f32>() / 20.0;
    assert!(mean(&dropped) > mean(&plain), "{} vs {}", mean(&dropped), mean(&plain));
    // Scoring is deterministic.
    let test = task.test.as_ref().unwrap().take(500);
    assert_eq!(dropped.evaluate(&test).unwrap(), dropped.evaluate(&test).unwrap());
    // Where the model has no dropout, asking for it is an error.
    let xor = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    let mut c = Config::defaults(&xor);
    c.dropout = 0.3;
    assert!(Trainer::new(xor, c).unwrap_err().to_string().contains("--dropout"));
}

#[test]
fn the_order_task_is_learned_by_the_lstm() {
    let mut task = fit::task("lstm_classifier", Path::new("/nonexistent"), 0).unwrap();
    task.test = task.test.map(|t| t.take(256));
    let mut config = Config::defaults(&task);
    config.epochs = 1;
    config.validation = 0.0;
    let mut t = Trainer::new(task, config).unwrap();
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    let acc = t.history().held_out[0];
    assert!(acc >= 0.95, "held-out accuracy after one epoch: {acc}");
}

#[test]
fn the_gan_resumes_with_the_same_losses() {
    let images = fit::gan::images(&mnist::bundled_dir()).unwrap().take(64 * 4);
    let mut config = fit::gan::defaults();
    config.epochs = 2;
    let mut whole = fit::gan::GanTrainer::new(images.clone(), config.clone()).unwrap();
    whole.run(&AtomicBool::new(false), &mut |_, _| {}, &mut |_, _, _| {}).unwrap();
    assert_eq!(whole.history().d_loss.len(), 8);

    let mut first = fit::gan::GanTrainer::new(images.clone(), config.clone()).unwrap();
    let stop = AtomicBool::new(false);
    let mut n = 0;
    let outcome = first
        .run(
            &stop,
            &mut |_, _| {
                n += 1;
                if n == 6 {
                    stop.store(true, Ordering::Relaxed);
                }
            },
            &mut |_, _, _| {},
        )
        .unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    let dir = scratch("gan");
    let path = dir.join("gan.safetensors");
    first.save(&path).unwrap();
    let mut resumed = fit::gan::GanTrainer::resume(images.clone(), config.clone(), &path).unwrap();
    resumed.run(&AtomicBool::new(false), &mut |_, _| {}, &mut |_, _, _| {}).unwrap();
    assert_eq!(resumed.history(), whole.history());
    assert_eq!(resumed.samples().unwrap(), whole.samples().unwrap());

    config.lr = 1e-3;
    let e = fit::gan::GanTrainer::resume(images, config, &path).unwrap_err().to_string();
    assert!(e.contains("lr = `0.0002`"), "{e}");
}

#[test]
fn training_on_the_emulated_gpu_matches_the_cpu_and_resumes() {
    // The GPU training path (parameters resident on the device, swapped with their updates;
    // values copied back for scoring and checkpoints) through the real training loop.
    let gpu = kiln::runtime::exec::Backend::Gpu(kiln::gpu::DeviceKind::Emulated);
    let trainer = |backend| {
        let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
        let mut config = Config::defaults(&task);
        config.epochs = 2;
        config.backend = backend;
        Trainer::new(task, config).unwrap()
    };
    let mut cpu = trainer(kiln::runtime::exec::Backend::Jit);
    cpu.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    let mut whole = trainer(gpu);
    whole.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    let (a, b) = (&whole.history().step_loss, &cpu.history().step_loss);
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-4 * y.abs().max(1.0), "step {i}: GPU {x}, CPU {y}");
    }
    assert_eq!(whole.history().held_out, cpu.history().held_out);

    // Interrupted, saved, resumed on the GPU: the same curve as the uninterrupted GPU run.
    let mut first = trainer(gpu);
    assert_eq!(run_steps(&mut first, 150), Outcome::Interrupted);
    let dir = scratch("gpu-resume");
    let path = dir.join("x.safetensors");
    first.save(&path).unwrap();
    let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    let mut config = Config::defaults(&task);
    config.epochs = 2;
    config.backend = gpu;
    let mut resumed = Trainer::resume(task, config, &path).unwrap();
    resumed.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap();
    assert_eq!(resumed.history().step_loss, whole.history().step_loss);
    for (name, v) in whole.values() {
        assert_eq!(resumed.values().get(name), Some(v), "{name}");
    }

    // The checkpoint predicts on the emulated GPU as on the CPU (the four points in two
    // batches: the parameters are uploaded with the first, then only the examples).
    let predictor = |device| {
        let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
        Predictor::from_checkpoint_on(task, &path, 2, 1, device).unwrap()
    };
    let test = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap().test.unwrap();
    let (mut on_cpu, mut on_gpu) = (predictor(None), predictor(Some(kiln::gpu::DeviceKind::Emulated)));
    assert_eq!(on_gpu.classes(&test.x).unwrap(), on_cpu.classes(&test.x).unwrap());
    assert_eq!(on_gpu.accuracy(&test).unwrap(), on_cpu.accuracy(&test).unwrap());
}

/// `data` with label `at` replaced by `label`.
fn with_label(mut data: data::Dataset, at: usize, label: i64) -> data::Dataset {
    match &mut data.y {
        Value::I32(a) => a[[at]] = label as i32,
        Value::I64(a) => a[[at]] = label,
        other => panic!("class labels are integers, got {}", other.ty()),
    }
    data
}

/// A class label outside `0..classes` selects no class of the one-hot: training stops at the
/// batch that holds it, and scoring refuses it, naming the example, its batch position and the
/// value, instead of computing a wrong loss or accuracy.
#[test]
fn labels_outside_the_classes_are_errors() {
    let mut task = fit::task("mnist_mlp", &mnist::bundled_dir(), 0).unwrap();
    task.train = with_label(task.train.take(256), 130, 12);
    let mut config = Config::defaults(&task);
    config.epochs = 1;
    config.batch = 128;
    config.validation = 0.0;
    let test = with_label(task.test.as_ref().unwrap().take(200), 3, -1);
    let mut t = Trainer::new(task, config).unwrap();
    let e = t.run(&AtomicBool::new(false), &mut |_| {}, &mut |_, _| {}).unwrap_err().to_string();
    assert!(e.starts_with("training: label 12 of example 130 (batch position "), "{e}");
    assert!(e.ends_with("is outside the classes 0..10"), "{e}");
    let e = t.evaluate(&test).unwrap_err().to_string();
    assert_eq!(e, "scoring: label -1 of example 3 (batch position 3) is outside the classes 0..10");
}

/// Every optimizer the CLI offers trains: `--optimizer nesterov` included.
#[test]
fn every_offered_optimizer_is_a_config() {
    let task = fit::task("xor_mlp", Path::new("/nonexistent"), 0).unwrap();
    for name in ["sgd", "momentum", "nesterov", "adam", "adamw"] {
        let mut config = Config::defaults(&task);
        config.optimizer = name.to_string();
        assert_eq!(config.optimizer().unwrap().name(), name);
    }
    let mut config = Config::defaults(&task);
    config.optimizer = "lbfgs".into();
    assert!(config.optimizer().unwrap_err().to_string().contains("choose sgd, momentum, nesterov, adam or adamw"));
}

/// Checkpoints, curves and `.npy` outputs replace their files whole: while a writer is killed
/// mid-write only its hidden partial file can be torn, so the visible file always loads, and
/// the partial file of a finished write is gone.
#[test]
fn files_are_replaced_whole() {
    let dir = scratch("whole");
    let path = dir.join("v.npy");
    let small = Value::F32(ndarray::arr1(&[1.0f32, 2.0]).into_dyn());
    kiln::runtime::npy::write(&path, &small).unwrap();
    // A write that fails part way (here: the writer reports an error after writing garbage)
    // leaves the old file in place and no partial file behind.
    let failed: Result<(), std::io::Error> = kiln::runtime::files::replace(
        &path,
        |partial| {
            std::fs::write(partial, b"torn")?;
            Err(std::io::Error::other("killed"))
        },
        |e| e,
    );
    assert!(failed.is_err());
    assert_eq!(kiln::runtime::npy::read_dtype(&path, kiln::ir::DType::F32).unwrap(), small);
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["v.npy"], "no partial file is left behind");
    // The partial path keeps the extension (format-by-extension writers) and is hidden.
    let partial = kiln::runtime::files::partial_path(&dir.join("curve.png"));
    let name = partial.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(".curve.") && name.ends_with(".partial.png"), "{name}");
    // Checkpoints and curves go through the same replacement.
    let ck = dir.join("model.safetensors");
    let t = xor_trainer(1);
    t.save(&ck).unwrap();
    t.save(&ck).unwrap();
    fit::plot::curve(&dir.join("curve.png"), "xor", &t, fit::plot::Scale::Log).unwrap();
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["curve.png", "model.safetensors", "v.npy"]);
    assert!(checkpoint::load(&ck).is_ok());
}
