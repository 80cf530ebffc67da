//! What each zoo model learns: its training and held-out data, the graph trained (the zoo
//! model, with a head where the task needs one), how its predictions are scored, and the
//! hyperparameters that reach the task's target.

use std::path::Path;

use kiln_frontend::nn::{Embedding, LayerNorm, Linear};
use kiln_frontend::{BuildError, Builder, Mode, init};
use kiln_ir::{DType, Init, TensorType, Value};

use crate::data::{self, Dataset, synthetic};
use crate::zoo::{self, Loss, Model};

use super::FitError;

/// How predictions are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// The arg-max of the last axis of the logits against integer labels (one label per row;
    /// token-level when the model predicts every position).
    Argmax,
    /// Probabilities above 0.5 against 0/1 targets.
    Threshold,
}

/// Hyperparameters a task trains well with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Defaults {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch: usize,
    /// Optimizer name (`sgd`, `momentum`, `adam`, `adamw`).
    pub optimizer: &'static str,
    /// Learning rate.
    pub lr: f64,
    /// How the learning rate changes over the run.
    pub schedule: super::Schedule,
}

/// A model with its data.
#[derive(Clone, Debug)]
pub struct Task {
    /// The zoo model's name.
    pub model: &'static str,
    /// What the data is, in a few words.
    pub data: String,
    /// Training examples.
    pub train: Dataset,
    /// Held-out examples, scored after every epoch.
    pub test: Dataset,
    /// How predictions are scored.
    pub metric: Metric,
    /// Hyperparameters that reach the target.
    pub defaults: Defaults,
    /// The held-out accuracy the model is expected to reach with the defaults.
    pub target: f64,
    /// `(mean, std)` that float examples are standardized with before the model sees them
    /// (training, evaluation and prediction alike).
    pub standardize: Option<(f32, f32)>,
    /// Whether the model takes a dropout probability.
    pub has_dropout: bool,
    build: fn(usize, f64, Mode) -> Result<Model, BuildError>,
}

impl Task {
    /// The inference graph at `batch` examples per run, with its loss and label type.
    pub fn model_at(&self, batch: usize) -> Result<Model, BuildError> {
        (self.build)(batch, 0.0, Mode::Eval)
    }

    /// The graph at `batch` examples per step with dropout `p` (where the model has dropout),
    /// built for `mode`: the training and inference graphs differ only in dropout.
    pub fn model_for(&self, batch: usize, p: f64, mode: Mode) -> Result<Model, BuildError> {
        (self.build)(batch, p, mode)
    }

    /// Examples as the model sees them: standardized when the task says so.
    pub fn prepare(&self, mut x: Value) -> Value {
        if let (Some((mean, std)), Value::F32(a)) = (self.standardize, &mut x) {
            a.mapv_inplace(|p| (p - mean) / std);
        }
        x
    }
}

/// The models `kiln train` knows, in order (the GAN trains adversarially, see
/// [`super::gan`]).
pub const TRAINABLE: &[&str] =
    &["xor_mlp", "mnist_mlp", "lenet5", "cifar_cnn", "lstm_classifier", "transformer_block", "gan"];

/// MNIST's mean and standard deviation over the training pixels (scaled to `[0, 1]`).
pub const MNIST_MEAN_STD: (f32, f32) = (0.1307, 0.3081);

/// The task of zoo model `model`: MNIST models read `mnist_dir`; synthetic data is drawn from
/// `seed`.
pub fn task(model: &str, mnist_dir: &Path, seed: u64) -> Result<Task, FitError> {
    let d = |epochs, batch, optimizer, lr| Defaults { epochs, batch, optimizer, lr, schedule: super::Schedule::Cosine };
    Ok(match model {
        "xor_mlp" => {
            let points = synthetic::xor();
            // An epoch visits each point 256 times, in shuffled batches of 4.
            let tiled: Vec<usize> = (0..1024).map(|i| i % 4).collect();
            let (x, y) = points.batch(&tiled);
            Task {
                model: "xor_mlp",
                data: "the four XOR points".into(),
                train: Dataset::new(x, y)?,
                test: points,
                metric: Metric::Threshold,
                defaults: d(4, 4, "adam", 0.05),
                target: 1.0,
                standardize: None,
                has_dropout: false,
                build: |b, _, _| zoo::xor_mlp(b),
            }
        }
        "mnist_mlp" | "lenet5" => {
            let m = data::mnist::load(mnist_dir)?;
            let is_mlp = model == "mnist_mlp";
            Task {
                model: if is_mlp { "mnist_mlp" } else { "lenet5" },
                data: if mnist_dir == data::mnist::bundled_dir() {
                    "MNIST (bundled, data/mnist)".to_string()
                } else {
                    format!("MNIST from {}", mnist_dir.display())
                },
                train: m.train,
                test: m.test,
                standardize: Some(MNIST_MEAN_STD),
                metric: Metric::Argmax,
                defaults: if is_mlp { d(5, 128, "adam", 2e-3) } else { d(5, 64, "adam", 1e-3) },
                target: if is_mlp { 0.98 } else { 0.988 },
                has_dropout: true,
                build: if is_mlp {
                    |b, p, m| zoo::mnist_mlp_with(b, DType::F32, p, m)
                } else {
                    |b, p, m| zoo::lenet5_with(b, DType::F32, p, m)
                },
            }
        }
        "cifar_cnn" => Task {
            model: "cifar_cnn",
            data: "synthetic coloured shapes, 10 classes, 3x32x32 with noise".into(),
            train: synthetic::shapes(10_000, seed),
            test: synthetic::shapes(2_000, seed ^ 0xFFFF_0001),
            metric: Metric::Argmax,
            defaults: d(3, 64, "adam", 1e-3),
            target: 0.90,
            standardize: None,
            has_dropout: false,
            build: |b, _, _| zoo::cifar_cnn(b),
        },
        "lstm_classifier" => Task {
            model: "lstm_classifier",
            data: "synthetic token sequences: does marker A come before marker B?".into(),
            train: synthetic::order(8_192, 32, 50, seed)?,
            test: synthetic::order(1_024, 32, 50, seed ^ 0xFFFF_0001)?,
            metric: Metric::Argmax,
            defaults: d(4, 32, "adam", 2e-3),
            target: 0.95,
            standardize: None,
            has_dropout: false,
            build: |b, _, _| zoo::lstm_classifier(b),
        },
        "transformer_block" => Task {
            model: "transformer_block",
            data: format!("synthetic sequences of {REVERSE_VOCAB} tokens to reverse"),
            train: synthetic::reverse(8_192, 64, REVERSE_VOCAB, seed),
            test: synthetic::reverse(512, 64, REVERSE_VOCAB, seed ^ 0xFFFF_0001),
            metric: Metric::Argmax,
            defaults: d(2, 16, "adam", 1e-3),
            target: 0.95,
            standardize: None,
            has_dropout: false,
            build: |b, _, _| transformer_reverser(b),
        },
        "gan" => {
            return Err(FitError::Invalid(
                "gan is trained adversarially and has no held-out accuracy: `kiln train gan` draws samples.png instead"
                    .into(),
            ));
        }
        other => {
            return Err(FitError::UnknownModel { name: other.to_string(), known: TRAINABLE.join(", ") });
        }
    })
}

/// The number of token kinds of the reverse task.
pub const REVERSE_VOCAB: usize = 16;

/// The zoo's `transformer_block` with what a sequence task needs around it: token and learned
/// position embeddings below, a linear head to the vocabulary above. `x: i32 [batch, 64]` →
/// `logits: [batch * 64, vocab]`, one row per position, trained with cross entropy.
pub fn transformer_reverser(batch: usize) -> Result<Model, BuildError> {
    let (seq, d) = (64, 128);
    let b = Builder::new("transformer_reverser");
    let ids = b.input("x", DType::I32, [batch, seq]);
    // Position embeddings at the token embeddings' scale: reversal is all about positions, and
    // at 0.02 the layer norms drown them (measured: 12% after 4 epochs, 100% after 1 at 1.0).
    let pos = b.param("pos_embed", [seq, d], Init::Normal { mean: kiln_ir::Literal(0.0), std: kiln_ir::Literal(1.0) });
    let x = Embedding::new(&b, "embed", REVERSE_VOCAB, d).forward(ids) + pos;
    let y = zoo::transformer_block_on(&b, x);
    let y = LayerNorm::new(&b, "ln_out", d).forward(y);
    let logits = Linear::with_init(&b, "head", d, REVERSE_VOCAB, init::xavier_uniform(d, REVERSE_VOCAB), true)
        .forward(y.reshape(&[batch * seq, d]));
    b.output("logits", logits);
    Ok(Model { graph: b.finish()?, loss: Loss::CrossEntropy, labels: TensorType::new(DType::I32, [batch * seq]) })
}
