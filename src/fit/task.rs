//! What a model learns: its data, the graph trained at any batch size, how predictions are
//! scored, and the hyperparameters it trains well with. [`Task::new`] makes one for any model
//! written with the DSL; [`task`] makes the zoo's.

use std::path::Path;
use std::sync::Arc;

use kiln_frontend::nn::{Embedding, LayerNorm, Linear};
use kiln_frontend::{BuildError, Builder, Mode, init};
use kiln_ir::{DType, Init, TensorType, Value};

use crate::data::{self, Dataset, synthetic};
use crate::zoo::{self, Loss, Model};

use super::FitError;

/// How predictions are scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Accuracy of the arg-max of the last axis of the logits against integer labels (one
    /// label per row; token-level when the model predicts every position).
    Argmax,
    /// Accuracy of probabilities above 0.5 against 0/1 targets.
    Threshold,
    /// Mean squared error of the output against float targets of its shape (regression).
    Mse,
    /// Mean absolute error of the output against float targets of its shape (regression).
    Mae,
}

impl Metric {
    /// What the score is called: `accuracy`, `mse` or `mae`.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Argmax | Metric::Threshold => "accuracy",
            Metric::Mse => "mse",
            Metric::Mae => "mae",
        }
    }

    /// Whether a larger score is better (accuracy) or a smaller one (errors).
    pub fn higher_is_better(self) -> bool {
        matches!(self, Metric::Argmax | Metric::Threshold)
    }

    /// A score as people read it: accuracy in percent, errors as numbers.
    pub fn show(self, score: f64) -> String {
        if self.higher_is_better() { format!("{:.2}%", score * 100.0) } else { format!("{score:.6}") }
    }

    /// Whether the metric compares predicted classes with integer labels (so labels must be
    /// class indices).
    pub fn takes_class_labels(self) -> bool {
        self == Metric::Argmax
    }
}

/// Hyperparameters a task trains well with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Defaults {
    /// The fraction of the training examples held out (in a seeded random draw) as the
    /// validation set scored after every epoch; 0 scores the test set instead.
    pub validation: f64,
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

impl Default for Defaults {
    /// 10 epochs of batches of 32 with Adam at 1e-3 (constant), 10% held out for validation.
    fn default() -> Self {
        Defaults {
            validation: 0.1,
            epochs: 10,
            batch: 32,
            optimizer: "adam",
            lr: 1e-3,
            schedule: super::Schedule::Constant,
        }
    }
}

/// Builds a model's graph at a batch size, with a dropout probability, for training or
/// inference.
type BuildModel = dyn Fn(usize, f64, Mode) -> Result<Model, BuildError> + Send + Sync;

/// A model with its data: what a [`super::Trainer`] trains.
///
/// The model's graph takes its examples as the input `x` (`[batch, ...]`) and gives its
/// prediction as its first output; training appends a `labels` input of the model's label
/// type and the loss ([`crate::train::loss_graph`]).
#[derive(Clone)]
pub struct Task {
    /// The model's name (checkpoints record it; resuming checks it).
    pub model: String,
    /// What the data is, in a few words.
    pub data: String,
    /// Training examples (the validation split, if any, is drawn from them).
    pub train: Dataset,
    /// Test examples, scored after training (and after every epoch when there is no
    /// validation split).
    pub test: Option<Dataset>,
    /// How predictions are scored.
    pub metric: Metric,
    /// Hyperparameters that train the model well.
    pub defaults: Defaults,
    /// The test score the model is expected to reach with the defaults, if one is promised.
    pub target: Option<f64>,
    /// `(mean, std)` that float examples are standardized with before the model sees them
    /// (training, evaluation and prediction alike).
    pub standardize: Option<(f32, f32)>,
    /// Whether the model takes a dropout probability.
    pub has_dropout: bool,
    build: Arc<BuildModel>,
}

impl std::fmt::Debug for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Task")
            .field("model", &self.model)
            .field("data", &self.data)
            .field("train", &self.train.len())
            .field("test", &self.test.as_ref().map(Dataset::len))
            .field("metric", &self.metric)
            .field("defaults", &self.defaults)
            .finish_non_exhaustive()
    }
}

impl Task {
    /// A task for any model: `build(batch)` gives the model's graph at `batch` examples per
    /// run (input `x`, the prediction as its first output), the loss it is trained with and
    /// its label type; `train` holds the examples and labels; `metric` scores predictions.
    /// Defaults are [`Defaults::default`], with no test set: add one with
    /// [`Task::with_test`].
    pub fn new(
        model: impl Into<String>,
        train: Dataset,
        metric: Metric,
        build: impl Fn(usize) -> Result<Model, BuildError> + Send + Sync + 'static,
    ) -> Task {
        Task::with_dropout_builder(model, train, metric, move |b, _, _| build(b), false)
    }

    /// [`Task::new`] for a model whose graph takes a dropout probability and differs between
    /// training and inference (`build(batch, p, mode)`; scoring builds it with `p = 0` in
    /// [`Mode::Eval`]).
    pub fn new_with_dropout(
        model: impl Into<String>,
        train: Dataset,
        metric: Metric,
        build: impl Fn(usize, f64, Mode) -> Result<Model, BuildError> + Send + Sync + 'static,
    ) -> Task {
        Task::with_dropout_builder(model, train, metric, build, true)
    }

    fn with_dropout_builder(
        model: impl Into<String>,
        train: Dataset,
        metric: Metric,
        build: impl Fn(usize, f64, Mode) -> Result<Model, BuildError> + Send + Sync + 'static,
        has_dropout: bool,
    ) -> Task {
        let model = model.into();
        Task {
            data: format!("{} examples", train.len()),
            model,
            train,
            test: None,
            metric,
            defaults: Defaults::default(),
            target: None,
            standardize: None,
            has_dropout,
            build: Arc::new(build),
        }
    }

    /// This task with a test set.
    pub fn with_test(mut self, test: Dataset) -> Task {
        self.test = Some(test);
        self
    }

    /// This task with other default hyperparameters.
    pub fn with_defaults(mut self, defaults: Defaults) -> Task {
        self.defaults = defaults;
        self
    }

    /// This task with its data described (progress lines show it).
    pub fn with_description(mut self, data: impl Into<String>) -> Task {
        self.data = data.into();
        self
    }

    /// This task with the test score its defaults are expected to reach.
    pub fn with_target(mut self, target: f64) -> Task {
        self.target = Some(target);
        self
    }

    /// This task with float examples standardized as `(x - mean) / std` before the model sees
    /// them.
    pub fn with_standardize(mut self, mean: f32, std: f32) -> Task {
        self.standardize = Some((mean, std));
        self
    }

    /// The training examples split into what trains and what validates: the last
    /// `round(fraction · n)` of a permutation drawn from `seed` validate (`None` when that is
    /// no example). An error when nothing would be left to train on.
    pub fn split(&self, fraction: f64, seed: u64) -> Result<(Dataset, Option<Dataset>), FitError> {
        if !(0.0..1.0).contains(&fraction) {
            return Err(FitError::Invalid(format!("--validation must be in [0, 1), got {fraction}")));
        }
        let n = self.train.len();
        let held = (fraction * n as f64).round() as usize;
        if held == 0 {
            return Ok((self.train.clone(), None));
        }
        if held >= n {
            return Err(FitError::Invalid(format!(
                "a validation fraction of {fraction} leaves none of the {n} training examples to train on"
            )));
        }
        // Not the epochs' shuffles: those are drawn from (seed, epoch).
        let order = data::shuffled(n, seed ^ 0x5eed_5a11_7a11_da7a, u64::MAX);
        let (keep, held) = order.split_at(n - held);
        let part = |idx: &[usize]| {
            let (x, y) = self.train.batch(idx);
            Dataset { x, y }
        };
        Ok((part(keep), Some(part(held))))
    }

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
    let d = |epochs, batch, optimizer, lr| Defaults {
        validation: 0.1,
        epochs,
        batch,
        optimizer,
        lr,
        schedule: super::Schedule::Cosine,
    };
    Ok(match model {
        "xor_mlp" => {
            let points = synthetic::xor();
            // An epoch visits each point 256 times, in shuffled batches of 4.
            let tiled: Vec<usize> = (0..1024).map(|i| i % 4).collect();
            let (x, y) = points.batch(&tiled);
            // The four points are all there is: no validation split, the test set is them.
            let defaults = Defaults { validation: 0.0, ..d(4, 4, "adam", 0.05) };
            Task::new("xor_mlp", Dataset::new(x, y)?, Metric::Threshold, zoo::xor_mlp)
                .with_test(points)
                .with_description("the four XOR points")
                .with_defaults(defaults)
                .with_target(1.0)
        }
        "mnist_mlp" | "lenet5" => {
            let m = data::mnist::load(mnist_dir)?;
            let is_mlp = model == "mnist_mlp";
            let (mean, std) = MNIST_MEAN_STD;
            let task = if is_mlp {
                Task::new_with_dropout("mnist_mlp", m.train, Metric::Argmax, |b, p, m| {
                    zoo::mnist_mlp_with(b, DType::F32, p, m)
                })
            } else {
                Task::new_with_dropout("lenet5", m.train, Metric::Argmax, |b, p, m| {
                    zoo::lenet5_with(b, DType::F32, p, m)
                })
            };
            task.with_test(m.test)
                .with_description(if mnist_dir == data::mnist::bundled_dir() {
                    "MNIST (bundled, data/mnist)".to_string()
                } else {
                    format!("MNIST from {}", mnist_dir.display())
                })
                .with_standardize(mean, std)
                .with_defaults(if is_mlp { d(5, 128, "adam", 2e-3) } else { d(5, 64, "adam", 1e-3) })
                .with_target(if is_mlp { 0.98 } else { 0.988 })
        }
        "cifar_cnn" => Task::new("cifar_cnn", synthetic::shapes(10_000, seed), Metric::Argmax, zoo::cifar_cnn)
            .with_test(synthetic::shapes(2_000, seed ^ 0xFFFF_0001))
            .with_description("synthetic coloured shapes, 10 classes, 3x32x32 with noise")
            .with_defaults(d(3, 64, "adam", 1e-3))
            .with_target(0.90),
        "lstm_classifier" => {
            Task::new("lstm_classifier", synthetic::order(8_192, 32, 50, seed)?, Metric::Argmax, zoo::lstm_classifier)
                .with_test(synthetic::order(1_024, 32, 50, seed ^ 0xFFFF_0001)?)
                .with_description("synthetic token sequences: does marker A come before marker B?")
                .with_defaults(d(4, 32, "adam", 2e-3))
                .with_target(0.95)
        }
        "transformer_block" => Task::new(
            "transformer_block",
            synthetic::reverse(8_192, 64, REVERSE_VOCAB, seed),
            Metric::Argmax,
            transformer_reverser,
        )
        .with_test(synthetic::reverse(512, 64, REVERSE_VOCAB, seed ^ 0xFFFF_0001))
        .with_description(format!("synthetic sequences of {REVERSE_VOCAB} tokens to reverse"))
        .with_defaults(d(2, 16, "adam", 1e-3))
        .with_target(0.95),
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
