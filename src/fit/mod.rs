//! Training any model on its data: the loop behind `kiln train`, `kiln eval` and
//! `kiln predict`, and the library's way to train a model written with the DSL.
//!
//! A [`Task`] is a model (its graph at any batch size, its loss) with its data and metric:
//! [`Task::new`] makes one for your own model, [`task`] the zoo's. A [`Trainer`] compiles the
//! model's whole training step once (forward, loss, backward and optimizer update in one
//! JIT-compiled function, parameters updated in place) and its forward graph for scoring, then
//! walks the training set in shuffled mini-batches, one epoch at a time, scoring the held-out
//! set after each: a validation split drawn from the training data ([`Config::validation`]),
//! or the test set when there is none. Everything it does follows from the seed: the initial
//! parameters, the split, each epoch's order ([`crate::data::shuffled`]) and dropout masks,
//! so a run resumed from a [`checkpoint`] continues exactly as if it had not stopped.
//! `progress` draws it on a terminal and `plot` draws its curves (features `progress` and
//! `plot`, on by default).

pub mod checkpoint;
pub mod gan;
#[cfg(feature = "plot")]
pub mod plot;
#[cfg(feature = "progress")]
pub mod progress;
pub mod task;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kiln_frontend::BuildError;
use kiln_frontend::optim::Optimizer;
use kiln_ir::{InterpError, Value};
use kiln_runtime::exec::Backend;
use kiln_runtime::jit::Executable;
use kiln_runtime::train::{TrainError, TrainSession};
use thiserror::Error;

pub use task::{Defaults, Metric, TRAINABLE, Task, task};

/// What a task's model is: its forward graph, the loss it is trained with, its label type.
pub use crate::zoo::{Loss, Model};

use crate::data::{self, DataError, Dataset};
use crate::train::TrainBuildError;
use checkpoint::{Checkpoint, CheckpointError};

/// Errors from training, scoring and predicting.
#[derive(Debug, Error)]
pub enum FitError {
    /// Loading or generating data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Building the model failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Building the training step failed.
    #[error(transparent)]
    TrainBuild(#[from] TrainBuildError),
    /// Compiling or running the training step failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Compiling the forward graph failed.
    #[error(transparent)]
    Compile(#[from] crate::CompileError),
    /// Running the forward graph failed.
    #[error(transparent)]
    Run(#[from] InterpError),
    /// Compiling or running the forward graph on a GPU failed.
    #[error(transparent)]
    Gpu(#[from] kiln_runtime::gpu::GpuError),
    /// Reading or writing a checkpoint failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The model has no training task.
    #[error("no training task for `{name}` (trainable: {known})")]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The trainable models.
        known: String,
    },
    /// A setting or an input is out of range.
    #[error("{0}")]
    Invalid(String),
    /// The loss stopped being a finite number.
    #[error(
        "training diverged: the loss is {loss} at epoch {epoch}, step {step}; nothing was saved (try a smaller --lr, or --allow-nonfinite to go on)"
    )]
    Diverged {
        /// The epoch (from 1).
        epoch: usize,
        /// The step within the epoch (from 1).
        step: usize,
        /// The loss.
        loss: f64,
    },
}

/// How to train.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Passes over the training set.
    pub epochs: usize,
    /// Examples per step.
    pub batch: usize,
    /// `sgd`, `momentum`, `adam` or `adamw`.
    pub optimizer: String,
    /// Learning rate.
    pub lr: f64,
    /// Weight decay: L2 added to the gradient for `sgd`, `momentum` and `adam`, decoupled for
    /// `adamw` (0 for none; `adamw` then uses 0.01).
    pub weight_decay: f64,
    /// How the learning rate changes over the run.
    pub schedule: Schedule,
    /// Dropout probability after hidden dense layers (MNIST models only; 0 for none).
    pub dropout: f64,
    /// Seed of the initial parameters, the shuffles, dropout and synthetic data.
    pub seed: u64,
    /// Threads for kernels, GEMMs and convolutions.
    pub threads: usize,
    /// Where the training steps run: the JIT (default) or a GPU (scoring stays on the JIT).
    pub backend: Backend,
    /// Keep training when a loss is NaN or infinite (by default the run stops with
    /// [`FitError::Diverged`], naming the epoch and step, and writes nothing).
    pub allow_nonfinite: bool,
    /// Also write a checkpoint to this path every this many steps while training (each write
    /// replaces the last one whole), so a killed run loses at most that many steps.
    pub save_every: Option<(std::path::PathBuf, usize)>,
    /// The fraction of the training examples held out as the validation set, scored after
    /// every epoch (0: none; the test set is scored after every epoch instead).
    pub validation: f64,
    /// The pass pipeline the training step and the scoring graph are optimized with
    /// ([`kiln_passes::DEFAULT_PIPELINE`]; `cse,dce` measures training without rewriting).
    pub pipeline: String,
}

impl Config {
    /// The task's defaults, seed 0, one thread.
    pub fn defaults(task: &Task) -> Config {
        let d = task.defaults;
        Config {
            epochs: d.epochs,
            batch: d.batch,
            optimizer: d.optimizer.to_string(),
            lr: d.lr,
            weight_decay: 0.0,
            schedule: d.schedule,
            dropout: 0.0,
            seed: 0,
            threads: 1,
            backend: Backend::Jit,
            allow_nonfinite: false,
            save_every: None,
            validation: d.validation,
            pipeline: kiln_passes::DEFAULT_PIPELINE.to_string(),
        }
    }

    /// The optimizer this config names.
    pub fn optimizer(&self) -> Result<Optimizer, FitError> {
        let wd = self.weight_decay;
        if !(wd >= 0.0 && wd.is_finite()) {
            return Err(FitError::Invalid(format!("weight decay must be a finite number >= 0, got {wd}")));
        }
        let with_l2 = |o: Optimizer| if wd > 0.0 { o.with_weight_decay(wd) } else { o };
        Ok(match self.optimizer.as_str() {
            "sgd" => with_l2(Optimizer::sgd()),
            "momentum" => with_l2(Optimizer::momentum(0.9, false)),
            "nesterov" => with_l2(Optimizer::momentum(0.9, true)),
            "adam" => with_l2(Optimizer::adam()),
            "adamw" => Optimizer::adamw(if wd > 0.0 { wd } else { 0.01 }),
            other => {
                return Err(FitError::Invalid(format!(
                    "unknown optimizer `{other}` (choose sgd, momentum, nesterov, adam or adamw)"
                )));
            }
        })
    }
}

/// How the learning rate changes over a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// The same rate at every step.
    Constant,
    /// Cosine decay from the rate at the first step to zero after the last:
    /// `lr · (1 + cos(π · step / steps)) / 2`.
    Cosine,
}

impl Schedule {
    /// The rate at `step` (from 0) of `steps` for base rate `lr`.
    pub fn rate(self, lr: f64, step: usize, steps: usize) -> f64 {
        match self {
            Schedule::Constant => lr,
            Schedule::Cosine => lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / steps.max(1) as f64).cos()),
        }
    }

    /// Parses `constant` or `cosine`.
    pub fn parse(s: &str) -> Result<Self, FitError> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "cosine" => Ok(Schedule::Cosine),
            other => Err(FitError::Invalid(format!("unknown schedule `{other}` (choose constant or cosine)"))),
        }
    }

    /// The name [`Schedule::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
        }
    }
}

/// Where training is, reported after every step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// The epoch being run (from 1).
    pub epoch: usize,
    /// Epochs in the run.
    pub epochs: usize,
    /// Steps done in this epoch.
    pub step: usize,
    /// Steps per epoch.
    pub steps_per_epoch: usize,
    /// The last step's loss.
    pub loss: f64,
    /// Training examples per second so far (steps only, not scoring).
    pub examples_per_second: f64,
}

/// Losses and scores so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The loss of every step.
    pub step_loss: Vec<f32>,
    /// The held-out score (the task's metric on the validation split, or on the test set when
    /// there is none) after every epoch.
    pub held_out: Vec<f32>,
}

/// How a call to [`Trainer::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every epoch ran.
    Finished,
    /// The stop flag was raised; the trainer stopped between two steps.
    Interrupted,
}

/// The examples scored after every epoch.
#[derive(Clone, Debug)]
pub struct HeldOut {
    /// `validation` (split from the training data) or `test`.
    pub name: &'static str,
    /// The examples.
    pub data: Dataset,
}

/// Trains one model on its task.
pub struct Trainer {
    task: Task,
    config: Config,
    train: Dataset,
    held_out: Option<HeldOut>,
    session: TrainSession,
    scorer: Executable,
    x_dims: Vec<usize>,
    y_dims: Vec<usize>,
    epoch: usize,
    step_in_epoch: usize,
    history: History,
    train_seconds: f64,
    examples_trained: u64,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &self.task.model)
            .field("config", &self.config)
            .field("epoch", &self.epoch)
            .field("step_in_epoch", &self.step_in_epoch)
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// Compiles the training step and the scoring graph of `task`'s model for `config`, and
    /// splits off the validation set. Every setting and the data's types and shapes are
    /// checked against the model here, before anything trains.
    pub fn new(task: Task, config: Config) -> Result<Self, FitError> {
        let (train, validation) = task.split(config.validation, config.seed)?;
        if config.batch == 0 || config.batch > train.len() {
            return Err(FitError::Invalid(format!(
                "--batch must be between 1 and the {} training examples, got {}",
                train.len(),
                config.batch
            )));
        }
        if !(config.lr > 0.0 && config.lr.is_finite()) {
            return Err(FitError::Invalid(format!("--lr must be a finite number > 0, got {}", config.lr)));
        }
        if !(0.0..1.0).contains(&config.dropout) || (config.dropout > 0.0 && !task.has_dropout) {
            return Err(FitError::Invalid(format!(
                "--dropout must be in [0, 1) and is available for models that take it (mnist_mlp and lenet5 in the zoo), got {} for {}",
                config.dropout, task.model
            )));
        }
        let model = task.model_for(config.batch, config.dropout, kiln_frontend::Mode::Train)?;
        let step = crate::train::train_step(&model, &config.optimizer()?)?;
        let model = task.model_at(config.batch)?;
        let x_dims = input_dims(&model.graph)?;
        let y_dims = model.labels.dims().to_vec();
        let x_ty = model.graph.ty(model.graph.leaf("x").ok_or_else(|| no_x(&model.graph))?).clone();
        for data in std::iter::once(&task.train).chain(&task.test) {
            check_fits(&task, data, &x_ty, &model.labels)?;
        }
        let mut session = TrainSession::with_pipeline(step, config.seed, config.backend, &config.pipeline)?;
        session.set_threads(config.threads.max(1));
        let scorer = crate::compile_with(&model.graph, crate::Fusion::Fused, &config.pipeline)?
            .with_threads(config.threads.max(1));
        let held_out = match (validation, &task.test) {
            (Some(data), _) => Some(HeldOut { name: "validation", data }),
            (None, Some(test)) => Some(HeldOut { name: "test", data: test.clone() }),
            (None, None) => None,
        };
        Ok(Trainer {
            task,
            config,
            train,
            held_out,
            session,
            scorer,
            x_dims,
            y_dims,
            epoch: 0,
            step_in_epoch: 0,
            history: History::default(),
            train_seconds: 0.0,
            examples_trained: 0,
        })
    }

    /// Steps in one epoch (the last partial batch of each epoch is dropped).
    pub fn steps_per_epoch(&self) -> usize {
        self.train.len() / self.config.batch
    }

    /// The examples trained on (the task's, less the validation split).
    pub fn train_set(&self) -> &Dataset {
        &self.train
    }

    /// The examples scored after every epoch, if any: the validation split, or the test set
    /// when there is none.
    pub fn held_out(&self) -> Option<&HeldOut> {
        self.held_out.as_ref()
    }

    /// The task's metric on its test set with the current parameters (`None` without a test
    /// set).
    pub fn test_score(&self) -> Result<Option<f64>, FitError> {
        self.task.test.as_ref().map(|t| self.evaluate(t)).transpose()
    }

    /// Epochs finished.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    /// The losses and accuracies so far.
    pub fn history(&self) -> &History {
        &self.history
    }

    /// The task trained.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The config trained with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Seconds spent in training steps so far (gathering batches included, scoring not).
    pub fn train_seconds(&self) -> f64 {
        self.train_seconds
    }

    /// Training examples per second so far.
    pub fn examples_per_second(&self) -> f64 {
        if self.train_seconds > 0.0 { self.examples_trained as f64 / self.train_seconds } else { 0.0 }
    }

    /// The current parameter (and optimizer state) values by name.
    pub fn values(&self) -> &HashMap<String, Value> {
        self.session.values()
    }

    /// The current parameters by name (without the optimizer's state).
    pub fn params(&self) -> HashMap<&str, &Value> {
        self.session.params()
    }

    /// Trains until `config.epochs` epochs are done or `stop` is raised, calling `on_step`
    /// after every step and `on_epoch` with each epoch's held-out score (see
    /// [`Trainer::held_out`]; without a held-out set, NaN).
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(&Progress),
        on_epoch: &mut dyn FnMut(usize, f64),
    ) -> Result<Outcome, FitError> {
        let (b, steps) = (self.config.batch, self.steps_per_epoch());
        // Class labels are checked against the model's classes, its output's last extent.
        let scored = self.scorer.graph();
        let classes = self
            .task
            .metric
            .takes_class_labels()
            .then(|| scored.ty(scored.outputs()[0].value).dims().last().copied().unwrap_or(0));
        while self.epoch < self.config.epochs {
            let order = data::shuffled(self.train.len(), self.config.seed, self.epoch as u64);
            while self.step_in_epoch < steps {
                if stop.load(Ordering::Relaxed) {
                    return Ok(Outcome::Interrupted);
                }
                let s = self.step_in_epoch;
                // Timed from the batch's gathering: an epoch's time includes its data.
                let start = Instant::now();
                let (x, y) = self.train.batch(&order[s * b..(s + 1) * b]);
                if let Some(classes) = classes {
                    let labels = y.to_f64_vec();
                    let per_example = labels.len() / b;
                    if let Some((k, l)) = bad_label(&labels, classes) {
                        let position = k / per_example.max(1);
                        return Err(label_error("training", l, order[s * b + position], position, classes));
                    }
                }
                let feeds =
                    HashMap::from([("x".to_string(), self.shape_x(x)?), ("labels".to_string(), self.shape_y(y)?)]);
                let lr = self.config.schedule.rate(self.config.lr, self.epoch * steps + s, self.config.epochs * steps);
                let loss = self.session.step_owned(feeds, lr)?;
                self.train_seconds += start.elapsed().as_secs_f64();
                self.examples_trained += b as u64;
                self.step_in_epoch += 1;
                if !loss.is_finite() && !self.config.allow_nonfinite {
                    return Err(FitError::Diverged { epoch: self.epoch + 1, step: s + 1, loss });
                }
                self.history.step_loss.push(loss as f32);
                on_step(&Progress {
                    epoch: self.epoch + 1,
                    epochs: self.config.epochs,
                    step: s + 1,
                    steps_per_epoch: steps,
                    loss,
                    examples_per_second: self.examples_per_second(),
                });
                if let Some((path, every)) = &self.config.save_every
                    && *every > 0
                    && self.session.steps_done().is_multiple_of(*every as u64)
                {
                    self.save(&path.clone())?;
                }
            }
            let score = match &self.held_out {
                Some(h) => self.evaluate(&h.data)?,
                None => f64::NAN,
            };
            self.history.held_out.push(score as f32);
            self.epoch += 1;
            self.step_in_epoch = 0;
            on_epoch(self.epoch, score);
        }
        Ok(Outcome::Finished)
    }

    /// The score of the current parameters on `data`: [`Task::metric`] (accuracy, or mean
    /// error for regression).
    pub fn evaluate(&self, data: &Dataset) -> Result<f64, FitError> {
        let g = self.scorer.graph();
        let mut feeds: HashMap<String, Value> = self
            .session
            .values()
            .iter()
            .filter(|(k, _)| g.leaf(k).is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        score(&mut |f| first_output(self.scorer.run(f)?), &mut feeds, &self.task, &self.x_dims, data)
    }

    fn shape_x(&self, x: Value) -> Result<Value, FitError> {
        let x = self.task.prepare(x);
        reshaped(x, &self.x_dims, "examples")
    }

    fn shape_y(&self, y: Value) -> Result<Value, FitError> {
        reshaped(y, &self.y_dims, "labels")
    }

    /// Writes the parameters, optimizer state, history and position to `path`.
    pub fn save(&self, path: &Path) -> Result<(), FitError> {
        let loss = Value::F32(ndarray::Array1::from(self.history.step_loss.clone()).into_dyn());
        let acc = Value::F32(ndarray::Array1::from(self.history.held_out.clone()).into_dyn());
        let mut tensors: Vec<(&str, &Value)> = self.session.values().iter().map(|(k, v)| (k.as_str(), v)).collect();
        tensors.push((HISTORY_LOSS, &loss));
        tensors.push((HISTORY_HELD_OUT, &acc));
        let c = &self.config;
        let metadata = BTreeMap::from([
            ("format".to_string(), "kiln.checkpoint.v1".to_string()),
            ("model".to_string(), self.task.model.clone()),
            ("optimizer".to_string(), c.optimizer.clone()),
            ("lr".to_string(), c.lr.to_string()),
            ("weight_decay".to_string(), c.weight_decay.to_string()),
            ("schedule".to_string(), c.schedule.name().to_string()),
            ("dropout".to_string(), c.dropout.to_string()),
            ("batch".to_string(), c.batch.to_string()),
            ("seed".to_string(), c.seed.to_string()),
            ("validation".to_string(), c.validation.to_string()),
            ("epoch".to_string(), self.epoch.to_string()),
            ("step_in_epoch".to_string(), self.step_in_epoch.to_string()),
            ("steps_done".to_string(), self.session.steps_done().to_string()),
            ("train_seconds".to_string(), self.train_seconds.to_string()),
        ]);
        checkpoint::save(path, tensors, &metadata)?;
        Ok(())
    }

    /// A trainer that continues the run saved at `path`: its parameters, optimizer state,
    /// history and position. The checkpoint's model, optimizer, batch, learning rate, weight
    /// decay, seed and validation fraction must match `config` (`epochs` and `threads` may
    /// change).
    pub fn resume(task: Task, config: Config, path: &Path) -> Result<Self, FitError> {
        let expect = [
            ("model", task.model.to_string()),
            ("optimizer", config.optimizer.clone()),
            ("lr", config.lr.to_string()),
            ("weight_decay", config.weight_decay.to_string()),
            ("schedule", config.schedule.name().to_string()),
            ("dropout", config.dropout.to_string()),
            ("batch", config.batch.to_string()),
            ("seed", config.seed.to_string()),
            ("validation", config.validation.to_string()),
        ];
        let saved = Resumed::open(path, &expect)?;
        let mut t = Trainer::new(task, config)?;
        saved.restore(&mut t.session)?;
        t.epoch = saved.count("epoch")? as usize;
        t.step_in_epoch = saved.count("step_in_epoch")? as usize;
        t.session.set_steps_done(saved.count("steps_done")?);
        t.train_seconds = saved.seconds();
        t.history.step_loss = saved.series(HISTORY_LOSS);
        t.history.held_out = saved.series(HISTORY_HELD_OUT);
        Ok(t)
    }
}

/// A checkpoint being resumed: its settings checked against the run's, then its counts,
/// history and session values read back.
pub(crate) struct Resumed<'p> {
    ck: Checkpoint,
    path: &'p Path,
}

impl<'p> Resumed<'p> {
    /// Loads `path` and checks that each `(metadata key, value)` of `expect` matches.
    pub(crate) fn open(path: &'p Path, expect: &[(&str, String)]) -> Result<Self, FitError> {
        let saved = Resumed { ck: checkpoint::load(path)?, path };
        for (k, want) in expect {
            let found = saved.meta(k);
            if found != *want {
                return Err(FitError::Invalid(format!(
                    "{}: the checkpoint was trained with {k} = `{found}`, this run has `{want}`",
                    path.display()
                )));
            }
        }
        Ok(saved)
    }

    fn meta(&self, k: &str) -> String {
        self.ck.metadata.get(k).cloned().unwrap_or_default()
    }

    /// The count saved under metadata key `k`.
    pub(crate) fn count(&self, k: &str) -> Result<u64, FitError> {
        self.meta(k)
            .parse()
            .map_err(|_| FitError::Invalid(format!("{}: metadata `{k}` is not a count", self.path.display())))
    }

    /// Seconds of training before the save (0 if not recorded).
    pub(crate) fn seconds(&self) -> f64 {
        self.meta("train_seconds").parse().unwrap_or(0.0)
    }

    /// The saved series `k` (empty if absent).
    pub(crate) fn series(&self, k: &str) -> Vec<f32> {
        self.ck.tensors.get(k).map(|v| v.to_f64_vec().into_iter().map(|x| x as f32).collect()).unwrap_or_default()
    }

    /// Sets every parameter and state value `session` holds from the checkpoint.
    pub(crate) fn restore(&self, session: &mut TrainSession) -> Result<(), FitError> {
        let names: Vec<String> = session.values().keys().cloned().collect();
        for name in names {
            let v = self.ck.tensors.get(&name).ok_or_else(|| {
                FitError::Invalid(format!("{}: the checkpoint has no tensor `{name}`", self.path.display()))
            })?;
            session.set_value(&name, v.clone())?;
        }
        Ok(())
    }
}

/// The checkpoint tensor holding every step's loss.
pub const HISTORY_LOSS: &str = "kiln.history.step_loss";
/// The checkpoint tensor holding every epoch's held-out score.
pub const HISTORY_HELD_OUT: &str = "kiln.history.held_out";

/// Scores and predicts with trained parameters, without the training step.
pub struct Predictor {
    task: Task,
    engine: Forward,
    feeds: HashMap<String, Value>,
    x_dims: Vec<usize>,
}

/// Where a [`Predictor`] runs its forward graph.
enum Forward {
    /// The JIT.
    Cpu(Box<Executable>),
    /// A GPU: the parameters are uploaded with the first batch and stay; each later batch
    /// uploads only `x`.
    Gpu {
        /// The loaded graph.
        exe: Box<kiln_runtime::gpu::GpuExecutable>,
        /// Whether every leaf has been uploaded.
        uploaded: bool,
    },
}

impl Forward {
    /// The first output of the forward graph on `feeds` (every leaf; `x` changes per batch).
    fn run(&mut self, feeds: &HashMap<String, Value>) -> Result<Value, FitError> {
        match self {
            Forward::Cpu(exe) => first_output(exe.run(feeds)?),
            Forward::Gpu { exe, uploaded } => {
                if *uploaded {
                    let x = feeds.get("x").ok_or_else(|| FitError::Invalid("no input `x` to run on".into()))?;
                    exe.set("x", x)?;
                    exe.run()?;
                } else {
                    exe.run_with(feeds)?;
                    *uploaded = true;
                }
                Ok(exe.output(0)?)
            }
        }
    }
}

/// Runs a forward graph on feeds (every leaf by name), returning its first output.
type RunForward<'a> = dyn FnMut(&HashMap<String, Value>) -> Result<Value, FitError> + 'a;

/// The first of a graph's outputs.
fn first_output(out: Vec<Value>) -> Result<Value, FitError> {
    out.into_iter().next().ok_or_else(|| FitError::Invalid("the model has no output".into()))
}

impl std::fmt::Debug for Predictor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Predictor").field("model", &self.task.model).field("x_dims", &self.x_dims).finish()
    }
}

impl Predictor {
    /// The forward graph of `task`'s model at `batch` examples per run with the parameters of
    /// the checkpoint at `path` (each checked by name and type).
    pub fn from_checkpoint(task: Task, path: &Path, batch: usize, threads: usize) -> Result<Self, FitError> {
        Self::from_checkpoint_on(task, path, batch, threads, None)
    }

    /// [`Predictor::from_checkpoint`] on a GPU of `device` (`None`: the CPU's JIT on
    /// `threads` threads). On a GPU the parameters are uploaded once, with the first batch.
    pub fn from_checkpoint_on(
        task: Task,
        path: &Path,
        batch: usize,
        threads: usize,
        device: Option<kiln_runtime::gpu::DeviceKind>,
    ) -> Result<Self, FitError> {
        if batch == 0 {
            return Err(FitError::Invalid("--batch must be at least 1".into()));
        }
        let model = task.model_at(batch)?;
        let ck: Checkpoint = checkpoint::load(path)?;
        let feeds = ck.params_for(&model.graph, path)?;
        let engine = match device {
            None => {
                Forward::Cpu(Box::new(crate::compile(&model.graph, crate::Fusion::Fused)?.with_threads(threads.max(1))))
            }
            Some(kind) => Forward::Gpu { exe: Box::new(crate::gpu::compile(&model.graph, kind)?), uploaded: false },
        };
        let x_dims = input_dims(&model.graph)?;
        Ok(Predictor { task, engine, feeds, x_dims })
    }

    /// The score on `data` (the task's metric: accuracy, or mean error for regression).
    pub fn accuracy(&mut self, data: &Dataset) -> Result<f64, FitError> {
        let engine = &mut self.engine;
        score(&mut |f| engine.run(f), &mut self.feeds, &self.task, &self.x_dims, data)
    }

    /// The predicted class of every example of `x` (`[n, ...]`, each example with as many
    /// elements as the model's input has per example): the arg-max of the logits, or 0/1 for a
    /// model that outputs probabilities. Token-level models give one class per position.
    pub fn classes(&mut self, x: &Value) -> Result<Vec<usize>, FitError> {
        if !self.task.metric.higher_is_better() {
            return Err(FitError::Invalid(format!(
                "{} is a regression model ({}): it predicts values, not classes (use Predictor::predict)",
                self.task.model,
                self.task.metric.name()
            )));
        }
        self.check_examples(x)?;
        let mut classes = Vec::new();
        let metric = self.task.metric;
        let engine = &mut self.engine;
        for_batches(&mut |f| engine.run(f), &mut self.feeds, &self.task, &self.x_dims, x, &mut |valid, out, _| {
            let (rows, per_row) = rows_of(out, valid, self.x_dims[0]);
            let v = out.to_f64_vec();
            for r in 0..rows {
                let row = &v[r * per_row..(r + 1) * per_row];
                classes.push(match metric {
                    Metric::Threshold => usize::from(row[0] > 0.5),
                    _ => argmax(row),
                });
            }
        })?;
        Ok(classes)
    }

    /// The model's first output for every example of `x` (`[n, ...]`, as for
    /// [`Predictor::classes`]): `[n, ...]` logits, probabilities or regression values, in the
    /// output's dtype as f64.
    pub fn predict(&mut self, x: &Value) -> Result<Value, FitError> {
        self.check_examples(x)?;
        let n = x.shape()[0];
        let mut values = Vec::new();
        let mut example_dims = Vec::new();
        let engine = &mut self.engine;
        let batch = self.x_dims[0];
        for_batches(&mut |f| engine.run(f), &mut self.feeds, &self.task, &self.x_dims, x, &mut |valid, out, _| {
            let v = out.to_f64_vec();
            let per = v.len() / batch.max(1);
            values.extend_from_slice(&v[..valid * per]);
            example_dims = if out.shape().first() == Some(&batch) { out.shape()[1..].to_vec() } else { vec![per] };
        })?;
        let mut dims = vec![n];
        dims.extend(example_dims);
        Value::from_vec(&dims, values).map_err(|e| FitError::Invalid(e.to_string()))
    }

    /// Checks that `x` is a non-empty batch of finite examples of the model's shape.
    fn check_examples(&self, x: &Value) -> Result<(), FitError> {
        let per_example: usize = self.x_dims[1..].iter().product();
        let n = x.shape().first().copied().unwrap_or(0);
        if x.shape().is_empty() || x.shape()[1..].iter().product::<usize>() != per_example || n == 0 {
            return Err(FitError::Invalid(format!(
                "{} takes examples of shape {:?} ({per_example} values each), got an array of shape {:?}",
                self.task.model,
                &self.x_dims[1..],
                x.shape()
            )));
        }
        // A NaN or infinite input has no class: report it rather than print whatever the
        // argmax of the resulting NaNs happens to be.
        let values = x.to_f64_vec();
        if let Some((at, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(FitError::Invalid(format!(
                "example {} holds a non-finite value ({v} at element {}); no class is predicted",
                at / per_example,
                at % per_example
            )));
        }
        Ok(())
    }
}

/// The dims of the graph's `x` input.
fn input_dims(g: &kiln_ir::Graph) -> Result<Vec<usize>, FitError> {
    let id = g.leaf("x").ok_or_else(|| no_x(g))?;
    Ok(g.ty(id).dims().to_vec())
}

/// The error for a model graph without the input `x` a trainer feeds examples to.
fn no_x(g: &kiln_ir::Graph) -> FitError {
    FitError::Invalid(format!("@{} has no input `x` (a task's model takes its examples as the input `x`)", g.name()))
}

/// Checks that the examples and labels of `data` have the dtypes and per-example sizes of the
/// model's input `x: x_ty` and labels `labels` (both at the training batch size).
fn check_fits(
    task: &Task,
    data: &Dataset,
    x_ty: &kiln_ir::TensorType,
    labels: &kiln_ir::TensorType,
) -> Result<(), FitError> {
    let batch = x_ty.dims().first().copied().unwrap_or(1).max(1);
    let per = |v: &Value| v.shape()[1..].iter().product::<usize>();
    let (x_per, y_per) = (x_ty.numel() / batch, labels.numel() / batch);
    let what = [("examples", &data.x, x_ty.dtype, x_per), ("labels", &data.y, labels.dtype, y_per)];
    for (what, v, dtype, want) in what {
        if v.dtype() != dtype || per(v) != want {
            return Err(FitError::Invalid(format!(
                "{}: the {what} are {} {:?} ({} per example); the model takes {dtype} with {want} per example (at batch {batch}: {})",
                task.model,
                v.dtype(),
                v.shape(),
                per(v),
                if what == "examples" { x_ty.to_string() } else { labels.to_string() },
            )));
        }
    }
    Ok(())
}

/// `v` with the dims `dims` (same number of elements).
fn reshaped(v: Value, dims: &[usize], what: &str) -> Result<Value, FitError> {
    let shape = v.shape().to_vec();
    data::reshape(v, dims)
        .ok_or_else(|| FitError::Invalid(format!("{what} of shape {shape:?} do not fit the model's {dims:?}")))
}

/// Runs the forward graph (`run`) over `x` in batches of the graph's batch size (the last one padded by repeating
/// the last example), calling `each(valid examples, first output, first example index)`.
fn for_batches(
    run: &mut RunForward,
    feeds: &mut HashMap<String, Value>,
    task: &Task,
    x_dims: &[usize],
    x: &Value,
    each: &mut dyn FnMut(usize, &Value, usize),
) -> Result<(), FitError> {
    let n = x.shape().first().copied().unwrap_or(0);
    let b = x_dims[0];
    for start in (0..n).step_by(b) {
        let idx: Vec<usize> = (start..start + b).map(|i| i.min(n - 1)).collect();
        let xb = reshaped(task.prepare(data::rows(x, &idx)), x_dims, "examples")?;
        feeds.insert("x".to_string(), xb);
        let first = run(feeds)?;
        each((n - start).min(b), &first, start);
    }
    Ok(())
}

/// `(rows, values per row)` of the first `valid` examples of a `[rows, per_row]`-shaped output
/// computed for `batch` examples (token-level outputs have several rows per example).
fn rows_of(out: &Value, valid: usize, batch: usize) -> (usize, usize) {
    let shape = out.shape();
    let per_row = shape.last().copied().unwrap_or(1).max(1);
    let total_rows = shape.iter().product::<usize>() / per_row;
    let rows_per_example = (total_rows / batch).max(1);
    (valid * rows_per_example, per_row)
}

/// The score of the forward graph (`run`) on `data` as `task.metric` scores it (NaN for no
/// examples).
fn score(
    run: &mut RunForward,
    feeds: &mut HashMap<String, Value>,
    task: &Task,
    x_dims: &[usize],
    data: &Dataset,
) -> Result<f64, FitError> {
    let labels = data.y.to_f64_vec();
    let per_example = labels.len() / data.len().max(1);
    let (mut correct, mut total, mut error) = (0usize, 0usize, 0.0f64);
    let mut first_bad: Option<FitError> = None;
    for_batches(run, feeds, task, x_dims, &data.x, &mut |valid, out, start| {
        let (rows, per_row) = rows_of(out, valid, x_dims[0]);
        let v = out.to_f64_vec();
        for r in 0..rows {
            let row = &v[r * per_row..(r + 1) * per_row];
            match task.metric {
                Metric::Argmax => {
                    // Rows are the valid examples' positions in order: one per label.
                    let at = start * per_example + r;
                    let label = labels[at];
                    if first_bad.is_none() && bad_label(&[label], per_row).is_some() {
                        let example = at / per_example.max(1);
                        first_bad = Some(label_error("scoring", label, example, example - start, per_row));
                    }
                    correct += usize::from(argmax(row) as f64 == label);
                    total += 1;
                }
                Metric::Threshold => {
                    for (j, p) in row.iter().enumerate() {
                        let t = labels[(start + r) * per_row + j];
                        correct += usize::from((*p > 0.5) == (t > 0.5));
                        total += 1;
                    }
                }
                Metric::Mse | Metric::Mae => {
                    // Outputs and targets hold the same values per example (checked when
                    // the trainer was made): row r of the output is row r of the targets.
                    for (j, p) in row.iter().enumerate() {
                        let Some(t) = labels.get((start * per_example) + r * per_row + j) else { continue };
                        let d = p - t;
                        error += if task.metric == Metric::Mse { d * d } else { d.abs() };
                        total += 1;
                    }
                }
            }
        }
    })?;
    if let Some(e) = first_bad {
        return Err(e);
    }
    Ok(match (total, task.metric.higher_is_better()) {
        (0, _) => f64::NAN,
        (_, true) => correct as f64 / total as f64,
        (_, false) => error / total as f64,
    })
}

/// The first of `labels` that is not a class index in `0..classes`, with its position: such a
/// label would select no class of the one-hot and silently give a wrong loss.
fn bad_label(labels: &[f64], classes: usize) -> Option<(usize, f64)> {
    labels.iter().copied().enumerate().find(|(_, l)| !(l.fract() == 0.0 && *l >= 0.0 && *l < classes as f64))
}

/// The error for a bad label found while `what` (training, scoring): its value, the example
/// it belongs to and its position in the batch.
fn label_error(what: &str, label: f64, example: usize, position: usize, classes: usize) -> FitError {
    FitError::Invalid(format!(
        "{what}: label {label} of example {example} (batch position {position}) is outside the classes 0..{classes}"
    ))
}

/// The index of the largest value (the first on ties; NaN never wins).
fn argmax(row: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in row.iter().enumerate() {
        if *v > row[best] {
            best = i;
        }
    }
    best
}
