//! Every model of the zoo learns its task with its defaults, to the accuracy the README
//! promises. These are full training runs (tens of seconds each in release): they are ignored
//! by `cargo test` and run with
//! `cargo test --release --test learns -- --ignored --test-threads 1`.

mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;

use kiln::data::mnist;
use kiln::fit::{self, Config, Trainer};

fn learns(model: &str) {
    let task = fit::task(model, &mnist::bundled_dir(), 0).unwrap();
    let target = task.target.unwrap();
    let mut t = Trainer::new(task.clone(), Config::defaults(&task)).unwrap();
    t.run(&AtomicBool::new(false), &mut |_| {}, &mut |e, acc| println!("{model} epoch {e}: {acc:.4}")).unwrap();
    let acc = t.test_score().unwrap().unwrap();
    println!("{model}: {acc:.4} (target {target}) in {:.1} s of steps", t.train_seconds());
    assert!(acc >= target, "{model}: test accuracy {acc} < {target}");
}

#[test]
#[ignore = "a full training run"]
fn xor_mlp_learns() {
    learns("xor_mlp");
}

#[test]
#[ignore = "a full training run"]
fn mnist_mlp_learns() {
    learns("mnist_mlp");
}

#[test]
#[ignore = "a full training run"]
fn lenet5_learns() {
    learns("lenet5");
}

#[test]
#[ignore = "a full training run"]
fn cifar_cnn_learns() {
    learns("cifar_cnn");
}

#[test]
#[ignore = "a full training run"]
fn lstm_classifier_learns() {
    learns("lstm_classifier");
}

#[test]
#[ignore = "a full training run"]
fn transformer_block_learns() {
    learns("transformer_block");
}

#[test]
#[ignore = "a full training run"]
fn gan_losses_stay_finite_and_samples_are_drawn() {
    let images = fit::gan::images(&mnist::bundled_dir()).unwrap();
    let mut t = fit::gan::GanTrainer::new(images, fit::gan::defaults()).unwrap();
    t.run(&AtomicBool::new(false), &mut |_, _| {}, &mut |e, d, g| println!("gan epoch {e}: d {d:.4} g {g:.4}"))
        .unwrap();
    let h = t.history();
    assert!(h.d_loss.iter().chain(&h.g_loss).all(|l| l.is_finite()));
    // Not diverged: the discriminator has not won outright (its loss would go to 0 and the
    // generator's grow without bound).
    let last = |v: &[f32]| v[v.len() - 500..].iter().sum::<f32>() / 500.0;
    assert!(last(&h.d_loss) > 0.1 && last(&h.g_loss) < 5.0, "d {} g {}", last(&h.d_loss), last(&h.g_loss));
    let samples = t.samples().unwrap();
    assert_eq!(samples.len(), fit::gan::SAMPLES);
    let dir = common::scratch::Scratch::new("gan", "samples");
    fit::plot::image_grid(&dir.join("samples.png"), &samples, 28, 28, 8).unwrap();
    assert!(Path::new(&dir.join("samples.png")).exists());
}
