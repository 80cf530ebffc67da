//! Adversarial training of the zoo's GAN on MNIST: two training steps compiled once each,
//! trained in turns, each freezing the other network's parameters.
//!
//! The discriminator's step scores a batch of real images and a batch of generated ones in
//! one pass (`concat` along the batch) against constant targets 1 and 0; the generator's step
//! scores its images against target 1 (the non-saturating loss). Each step feeds the other
//! network's current parameters, so the two sessions never hold stale copies.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kiln_frontend::optim::OptimizerKind;
use kiln_frontend::{Builder, loss};
use kiln_ir::{DType, Value};
use kiln_runtime::exec::Backend;
use kiln_runtime::jit::Executable;
use kiln_runtime::train::TrainSession;
use ndarray::{ArrayD, IxDyn};

use super::{Config, FitError, Outcome, Progress, Resumed, checkpoint};
use crate::data::{self, Dataset, Rng};
use crate::zoo::{GAN_LATENT, gan_discriminator_on, gan_generator_on};

/// Images in each `samples.png`: an 8×8 grid from fixed latent vectors.
pub const SAMPLES: usize = 64;

/// Hyperparameters the GAN trains well with: 5 epochs of batch 64, Adam at 2e-4 (with
/// β1 = 0.5, see [`GanTrainer::new`]).
pub fn defaults() -> Config {
    Config {
        epochs: 5,
        batch: 64,
        optimizer: "adam".into(),
        lr: 2e-4,
        weight_decay: 0.0,
        schedule: super::Schedule::Constant,
        dropout: 0.0,
        seed: 0,
        threads: 1,
        backend: Backend::Jit,
        allow_nonfinite: false,
        save_every: None,
        // The GAN has no held-out score: every image trains.
        validation: 0.0,
        pipeline: kiln_passes::DEFAULT_PIPELINE.to_string(),
    }
}

/// MNIST training images as the GAN sees them: `f32 [n, 784]` in `[-1, 1]`.
pub fn images(mnist_dir: &Path) -> Result<Dataset, FitError> {
    let m = data::mnist::load_split(mnist_dir, "train")?;
    let n = m.len();
    let Value::F32(mut x) =
        data::reshape(m.x, &[n, 784]).ok_or_else(|| FitError::Invalid("MNIST images are not 28x28".into()))?
    else {
        return Err(FitError::Invalid("MNIST images are not f32".into()));
    };
    x.mapv_inplace(|p| 2.0 * p - 1.0);
    Ok(Dataset::new(Value::F32(x), m.y)?)
}

/// Per-epoch means of both losses.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GanHistory {
    /// The discriminator's loss at every step.
    pub d_loss: Vec<f32>,
    /// The generator's loss at every step.
    pub g_loss: Vec<f32>,
}

/// Trains the generator and discriminator against each other.
pub struct GanTrainer {
    images: Dataset,
    config: Config,
    d: TrainSession,
    g: TrainSession,
    sampler: Executable,
    fixed_z: Value,
    epoch: usize,
    step_in_epoch: usize,
    history: GanHistory,
    train_seconds: f64,
}

impl std::fmt::Debug for GanTrainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GanTrainer").field("config", &self.config).field("epoch", &self.epoch).finish_non_exhaustive()
    }
}

fn is_generator(name: &str) -> bool {
    name.starts_with("g1.") || name.starts_with("g2.")
}

fn is_discriminator(name: &str) -> bool {
    name.starts_with("d1.") || name.starts_with("d2.")
}

impl GanTrainer {
    /// Compiles both training steps and the sampler for `config` on `images` (`[n, 784]` in
    /// `[-1, 1]`).
    pub fn new(images: Dataset, config: Config) -> Result<Self, FitError> {
        let b = config.batch;
        if b == 0 || b > images.len() {
            return Err(FitError::Invalid(format!("--batch must be between 1 and {}, got {b}", images.len())));
        }
        if config.dropout != 0.0 {
            return Err(FitError::Invalid("the GAN has no dropout (--dropout is for mnist_mlp and lenet5)".into()));
        }
        let mut optimizer = config.optimizer()?;
        // Adam's first moment at 0.5, the usual setting for GANs: the targets of each network
        // move with the other, and a long momentum overshoots them.
        if let OptimizerKind::Adam { beta1, .. } | OptimizerKind::AdamW { beta1, .. } = &mut optimizer.kind {
            *beta1 = 0.5;
        }
        let float = DType::F32;

        // Discriminator step: real and generated images in one batch, targets 1 then 0.
        let db = Builder::new("gan_d_step");
        let real = db.input("x", float, [b, 784]);
        let z = db.input("z", float, [b, GAN_LATENT]);
        let fake = gan_generator_on(&db, z);
        let p = gan_discriminator_on(&db, db.concat(&[real, fake], 0));
        let targets = db.concat(&[db.constant(1.0, float, [b, 1]), db.constant(0.0, float, [b, 1])], 0);
        db.output("loss", loss::binary_cross_entropy(p, targets));
        let d_step = crate::train::train_step_of(db.finish()?, &optimizer, &|n| !is_generator(n))?;

        // Generator step: the discriminator should call its images real.
        let gb = Builder::new("gan_g_step");
        let z = gb.input("z", float, [b, GAN_LATENT]);
        let p = gan_discriminator_on(&gb, gan_generator_on(&gb, z));
        gb.output("loss", loss::binary_cross_entropy(p, gb.constant(1.0, float, [b, 1])));
        let g_step = crate::train::train_step_of(gb.finish()?, &optimizer, &is_generator)?;

        let mut d = TrainSession::with_pipeline(d_step, config.seed, config.backend, &config.pipeline)?;
        let mut g = TrainSession::with_pipeline(g_step, config.seed, config.backend, &config.pipeline)?;
        d.set_threads(config.threads.max(1));
        g.set_threads(config.threads.max(1));

        let sb = Builder::new("gan_sampler");
        let z = sb.input("z", float, [SAMPLES, GAN_LATENT]);
        sb.output("image", gan_generator_on(&sb, z));
        let sampler = crate::compile(&sb.finish()?, crate::Fusion::Fused)?;
        let fixed_z = latent(SAMPLES, config.seed ^ 0x5A4D_504C, u64::MAX);
        Ok(GanTrainer {
            images,
            config,
            d,
            g,
            sampler,
            fixed_z,
            epoch: 0,
            step_in_epoch: 0,
            history: GanHistory::default(),
            train_seconds: 0.0,
        })
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.images.len() / self.config.batch
    }

    /// Both losses so far.
    pub fn history(&self) -> &GanHistory {
        &self.history
    }

    /// Changes how many epochs [`GanTrainer::run`] trains up to (to stop after each epoch, e.g.
    /// to draw samples).
    pub fn set_epochs(&mut self, epochs: usize) {
        self.config.epochs = epochs;
    }

    /// Epochs finished.
    pub fn epochs_done(&self) -> usize {
        self.epoch
    }

    /// Seconds spent in training steps.
    pub fn train_seconds(&self) -> f64 {
        self.train_seconds
    }

    /// The generator's (`g*`) and discriminator's (`d*`) current parameters and Adam state.
    pub fn values(&self) -> HashMap<String, Value> {
        let mut all = self.d.values().clone();
        all.extend(self.g.values().iter().map(|(k, v)| (k.clone(), v.clone())));
        all
    }

    /// The generator's (`generator`) or the discriminator's parameters held by `session`
    /// (not the optimizer state, which is named after the optimizer).
    fn params_of(&self, session: &TrainSession, generator: bool) -> HashMap<String, Value> {
        session
            .values()
            .iter()
            .filter(|(k, _)| if generator { is_generator(k) } else { is_discriminator(k) })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Trains until `config.epochs` are done or `stop` is raised. `on_step` gets the progress
    /// (its `loss` is the discriminator's) and the generator's loss; `on_epoch` the epoch and
    /// both losses' means over it.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        on_step: &mut dyn FnMut(&Progress, f64),
        on_epoch: &mut dyn FnMut(usize, f64, f64),
    ) -> Result<Outcome, FitError> {
        let (b, steps) = (self.config.batch, self.steps_per_epoch());
        while self.epoch < self.config.epochs {
            let order = data::shuffled(self.images.len(), self.config.seed, self.epoch as u64);
            while self.step_in_epoch < steps {
                let s = self.step_in_epoch;
                if stop.load(Ordering::Relaxed) {
                    return Ok(Outcome::Interrupted);
                }
                let global = (self.epoch * steps + s) as u64;
                let start = Instant::now();
                let (x, _) = self.images.batch(&order[s * b..(s + 1) * b]);
                let mut feeds = self.params_of(&self.g, true);
                feeds.insert("x".into(), x);
                feeds.insert("z".into(), latent(b, self.config.seed, 2 * global));
                let d_loss = self.d.step_owned(feeds, self.config.lr)?;
                let mut feeds = self.params_of(&self.d, false);
                feeds.insert("z".into(), latent(b, self.config.seed, 2 * global + 1));
                let g_loss = self.g.step_owned(feeds, self.config.lr)?;
                self.train_seconds += start.elapsed().as_secs_f64();
                self.step_in_epoch += 1;
                for l in [d_loss, g_loss] {
                    if !l.is_finite() && !self.config.allow_nonfinite {
                        return Err(FitError::Diverged { epoch: self.epoch + 1, step: s + 1, loss: l });
                    }
                }
                self.history.d_loss.push(d_loss as f32);
                self.history.g_loss.push(g_loss as f32);
                let examples = ((self.epoch * steps + s + 1) * b) as f64;
                on_step(
                    &Progress {
                        epoch: self.epoch + 1,
                        epochs: self.config.epochs,
                        step: s + 1,
                        steps_per_epoch: steps,
                        loss: d_loss,
                        examples_per_second: examples / self.train_seconds.max(1e-9),
                    },
                    g_loss,
                );
            }
            let mean = |v: &[f32]| v[self.epoch * steps..].iter().map(|&l| f64::from(l)).sum::<f64>() / steps as f64;
            let (d_mean, g_mean) = (mean(&self.history.d_loss), mean(&self.history.g_loss));
            self.epoch += 1;
            self.step_in_epoch = 0;
            on_epoch(self.epoch, d_mean, g_mean);
        }
        Ok(Outcome::Finished)
    }

    /// [`SAMPLES`] images from the generator for fixed latent vectors, each `784` values in
    /// `[-1, 1]`.
    pub fn samples(&self) -> Result<Vec<Vec<f32>>, FitError> {
        let mut feeds = self.params_of(&self.g, true);
        feeds.insert("z".into(), self.fixed_z.clone());
        let out = self.sampler.run(&feeds)?;
        let v = out.first().map(Value::to_f64_vec).unwrap_or_default();
        Ok(v.chunks(784).map(|c| c.iter().map(|&p| p as f32).collect()).collect())
    }

    /// Writes both networks' parameters and optimizer state, both loss histories and the
    /// run's position to `path`. (Both steps count their updates in a state tensor of the same
    /// name, `adam.step` for Adam; they step together, so the one value stands for both.)
    pub fn save(&self, path: &Path) -> Result<(), FitError> {
        let mut values = self.values();
        let series = |v: &[f32]| Value::F32(ndarray::Array1::from(v.to_vec()).into_dyn());
        values.insert(HISTORY_D.into(), series(&self.history.d_loss));
        values.insert(HISTORY_G.into(), series(&self.history.g_loss));
        let c = &self.config;
        let meta = BTreeMap::from([
            ("format".to_string(), "kiln.checkpoint.v1".to_string()),
            ("model".to_string(), "gan".to_string()),
            ("optimizer".to_string(), c.optimizer.clone()),
            ("lr".to_string(), c.lr.to_string()),
            ("batch".to_string(), c.batch.to_string()),
            ("seed".to_string(), c.seed.to_string()),
            ("epoch".to_string(), self.epoch.to_string()),
            ("step_in_epoch".to_string(), self.step_in_epoch.to_string()),
            ("train_seconds".to_string(), self.train_seconds.to_string()),
        ]);
        checkpoint::save(path, values.iter().map(|(k, v)| (k.as_str(), v)), &meta)?;
        Ok(())
    }

    /// A trainer that continues the run saved at `path` (same optimizer, rate, batch and seed;
    /// `epochs` and `threads` may change): it goes on with exactly the losses the run would
    /// have had.
    pub fn resume(images: Dataset, config: Config, path: &Path) -> Result<Self, FitError> {
        let expect = [
            ("model", "gan".to_string()),
            ("optimizer", config.optimizer.clone()),
            ("lr", config.lr.to_string()),
            ("batch", config.batch.to_string()),
            ("seed", config.seed.to_string()),
        ];
        let saved = Resumed::open(path, &expect)?;
        let mut t = GanTrainer::new(images, config)?;
        saved.restore(&mut t.d)?;
        saved.restore(&mut t.g)?;
        t.epoch = saved.count("epoch")? as usize;
        t.step_in_epoch = saved.count("step_in_epoch")? as usize;
        let steps = (t.epoch * t.steps_per_epoch() + t.step_in_epoch) as u64;
        t.d.set_steps_done(steps);
        t.g.set_steps_done(steps);
        t.train_seconds = saved.seconds();
        t.history = GanHistory { d_loss: saved.series(HISTORY_D), g_loss: saved.series(HISTORY_G) };
        Ok(t)
    }
}

/// The checkpoint tensor holding the discriminator's loss at every step.
pub const HISTORY_D: &str = "kiln.history.d_loss";
/// The checkpoint tensor holding the generator's loss at every step.
pub const HISTORY_G: &str = "kiln.history.g_loss";

/// Standard normal latent vectors `f32 [n, 64]` for step `counter` of a run seeded `seed`.
fn latent(n: usize, seed: u64, counter: u64) -> Value {
    let mut rng = Rng::new(seed ^ kiln_ir::rng::mix64(counter ^ 0x4C41_5445));
    let v: Vec<f32> = (0..n * GAN_LATENT).map(|_| rng.normal() as f32).collect();
    // n * GAN_LATENT values for an [n, GAN_LATENT] array.
    Value::F32(ArrayD::from_shape_vec(IxDyn(&[n, GAN_LATENT]), v).expect("n x latent values"))
}
