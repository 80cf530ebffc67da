//! `kiln train`, `kiln eval` and `kiln predict`: training zoo models on their tasks with a
//! progress bar, checkpoints and curves, and using the checkpoints.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use kiln::fit::{self, Config, Outcome, Trainer};

/// Raised by Ctrl-C: the trainer stops between two steps and saves a checkpoint.
static STOP: AtomicBool = AtomicBool::new(false);

/// What `kiln train` was asked for (its command-line arguments).
#[derive(clap::Args)]
pub struct TrainArgs {
    /// The model (see `kiln models`).
    pub model: String,
    /// The MNIST directory [default: the bundled data/mnist].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Passes over the training set [default: the task's].
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Examples per step [default: the task's].
    #[arg(long)]
    pub batch: Option<usize>,
    /// sgd, momentum, nesterov, adam or adamw [default: the task's].
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Learning rate [default: the task's].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Weight decay (L2 for sgd/momentum/adam, decoupled for adamw).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// Learning-rate schedule: constant or cosine (decay to zero) [default: the task's].
    #[arg(long)]
    pub schedule: Option<String>,
    /// Dropout after the hidden dense layers (mnist_mlp, lenet5); scoring runs without.
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Seed of the initial parameters, the shuffles, dropout and synthetic data.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Go on when a loss is NaN or infinite (by default training stops there, naming the
    /// step, and writes nothing over the last checkpoint).
    #[arg(long)]
    pub allow_nonfinite: bool,
    /// The fraction of the training data held out as the validation set, scored after every
    /// epoch (0: score the test set instead) [default: the task's, 0.1 but for xor_mlp].
    #[arg(long)]
    pub validation: Option<f64>,
    /// Also write the checkpoint every this many steps while training (not the GAN, which
    /// saves at the end); each write replaces the last one whole.
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Threads [default: $KILN_THREADS, else 1; at most 256].
    #[arg(long, value_parser = crate::parse_threads)]
    pub threads: Option<usize>,
    /// Directory for the checkpoint and pictures [default: runs/MODEL].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run saved in this checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// The pass pipeline the training step is optimized with, as `kiln opt --pipeline` takes
    /// it (`cse,dce`: no rewriting).
    #[arg(long, default_value = kiln::passes::DEFAULT_PIPELINE)]
    pub pipeline: String,
    /// The loss axis of curve.png: log or linear.
    #[arg(long, default_value = "log")]
    pub loss_scale: String,
    /// Print one JSON line at the end (progress goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Where the training steps run: the CPU, or the first NVIDIA GPU (a build with the
    /// `cuda` feature; parameters stay on the GPU between steps).
    #[arg(long, value_enum, default_value_t = DeviceArg::Cpu)]
    pub device: DeviceArg,
}

impl TrainArgs {
    /// `--loss-scale`, parsed.
    fn loss_scale(&self) -> Result<fit::plot::Scale, String> {
        fit::plot::Scale::parse(&self.loss_scale)
    }
}

/// `--device` of `run`, `bench`, `train`, `eval` and `predict`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    /// The host CPU (the JIT).
    Cpu,
    /// The first NVIDIA GPU, through the CUDA driver (builds with `--features cuda`).
    Cuda,
}

impl DeviceArg {
    /// The GPU it names, if any.
    pub fn gpu(self) -> Option<kiln::gpu::DeviceKind> {
        match self {
            DeviceArg::Cpu => None,
            DeviceArg::Cuda => Some(kiln::gpu::DeviceKind::Cuda),
        }
    }
}

/// Prints a line for people: to stdout, or to stderr when stdout carries JSON.
fn say(json: bool, line: &str) {
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

fn install_ctrl_c() {
    // A second Ctrl-C while the checkpoint is being written ends the program at once.
    let r = ctrlc::set_handler(|| {
        if STOP.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    if let Err(e) = r {
        eprintln!("warning: Ctrl-C will not save a checkpoint ({e})");
    }
}

/// ` --out DIR` when the run was given one: resuming must write to the same place.
fn out_flag(a: &TrainArgs) -> String {
    a.out.as_ref().map_or_else(String::new, |o| format!(" --out {}", o.display()))
}

/// `defaults` with the command line's settings, and the output directory (created).
fn settings(mut config: Config, a: &TrainArgs) -> Result<(Config, PathBuf), String> {
    config.epochs = a.epochs.unwrap_or(config.epochs);
    config.batch = a.batch.unwrap_or(config.batch);
    config.optimizer = a.optimizer.clone().unwrap_or(config.optimizer);
    config.lr = a.lr.unwrap_or(config.lr);
    config.weight_decay = a.weight_decay;
    config.dropout = a.dropout;
    if let Some(s) = &a.schedule {
        config.schedule = fit::Schedule::parse(s).map_err(|e| e.to_string())?;
    }
    config.seed = a.seed;
    config.allow_nonfinite = a.allow_nonfinite;
    config.pipeline = a.pipeline.clone();
    if let Some(v) = a.validation {
        config.validation = v;
    }
    config.threads = a.threads.unwrap_or_else(kiln::runtime::pool::threads_from_env).max(1);
    if a.device == DeviceArg::Cuda {
        config.backend = kiln::runtime::exec::Backend::Gpu(kiln::gpu::DeviceKind::Cuda);
    }
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&a.model));
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    Ok((config, out))
}

fn data_dir(data: &Option<PathBuf>) -> PathBuf {
    data.clone().unwrap_or_else(kiln::data::mnist::bundled_dir)
}

pub fn train(a: TrainArgs) -> Result<(), String> {
    a.loss_scale()?;
    if a.model == "gan" {
        return train_gan(a);
    }
    let task = fit::task(&a.model, &data_dir(&a.data), a.seed).map_err(|e| e.to_string())?;
    let (mut config, out) = settings(Config::defaults(&task), &a)?;
    config.save_every = a.save_every.map(|n| (out.join("model.safetensors"), n));
    let (test_n, data) = (task.test.as_ref().map_or(0, |t| t.len()), task.data.clone());
    let compile = Instant::now();
    let mut trainer = match &a.resume {
        Some(path) => Trainer::resume(task, config.clone(), path),
        None => Trainer::new(task, config.clone()),
    }
    .map_err(|e| e.to_string())?;
    let steps = trainer.steps_per_epoch();
    let train_n = trainer.train_set().len();
    let validation = match trainer.held_out() {
        Some(h) if h.name == "validation" => format!(" ({} more for validation)", h.data.len()),
        _ => String::new(),
    };
    install_ctrl_c();
    say(
        a.json,
        &format!(
            "training {} on {data}: {train_n} examples{validation}, {test_n} for testing; {} epoch{} x {steps} steps of {}; {} lr {} ({}){}; {} thread{} (compiled in {:.0} ms)",
            a.model,
            config.epochs,
            if config.epochs == 1 { "" } else { "s" },
            config.batch,
            config.optimizer,
            config.lr,
            config.schedule.name(),
            if config.weight_decay > 0.0 { format!(" weight decay {}", config.weight_decay) } else { String::new() },
            config.threads,
            if config.threads == 1 { "" } else { "s" },
            compile.elapsed().as_secs_f64() * 1e3
        ),
    );
    if trainer.epochs_done() > 0 || a.resume.is_some() {
        say(
            a.json,
            &format!(
                "resumed at epoch {} ({} steps done)",
                trainer.epochs_done() + 1,
                trainer.history().step_loss.len()
            ),
        );
    }
    let json = a.json;
    let outcome = fit::progress::run(&mut trainer, &STOP, &mut |line| say(json, line));
    let outcome = outcome.map_err(|e| e.to_string())?;
    let ckpt = out.join("model.safetensors");
    trainer.save(&ckpt).map_err(|e| e.to_string())?;
    let curve = out.join("curve.png");
    fit::plot::curve(&curve, &a.model, &trainer, a.loss_scale()?).map_err(|e| e.to_string())?;
    if outcome == Outcome::Interrupted {
        say(
            a.json,
            &format!(
                "interrupted: saved {} and {}; continue with `kiln train {}{} --resume {}`",
                ckpt.display(),
                curve.display(),
                a.model,
                out_flag(&a),
                ckpt.display()
            ),
        );
        std::process::exit(130);
    }
    // Every zoo task has a test set, scored once, at the end.
    let acc = trainer.test_score().map_err(|e| e.to_string())?.unwrap_or(f64::NAN);
    say(a.json, &format!("test accuracy {:.2}%; saved {} and {}", acc * 100.0, ckpt.display(), curve.display()));
    if a.json {
        let validation = match (trainer.held_out(), trainer.history().held_out.last()) {
            (Some(h), Some(v)) if h.name == "validation" => format!("{v:.6}"),
            _ => "null".to_string(),
        };
        println!(
            "{{\"model\":\"{}\",\"epochs\":{},\"test_accuracy\":{acc:.6},\"validation_accuracy\":{validation},\"train_seconds\":{:.3},\"examples_per_second\":{:.1}}}",
            a.model,
            trainer.epochs_done(),
            trainer.train_seconds(),
            trainer.examples_per_second()
        );
    }
    Ok(())
}

pub fn eval(
    model: &str,
    weights: &Path,
    data: &Option<PathBuf>,
    batch: Option<usize>,
    (threads, device): (usize, DeviceArg),
) -> Result<(), String> {
    let task = fit::task(model, &data_dir(data), 0).map_err(|e| e.to_string())?;
    let batch = batch.unwrap_or(task.defaults.batch);
    let test = task.test.clone().ok_or_else(|| format!("{model} has no test set"))?;
    let mut p =
        fit::Predictor::from_checkpoint_on(task, weights, batch, threads, device.gpu()).map_err(|e| e.to_string())?;
    let acc = p.accuracy(&test).map_err(|e| e.to_string())?;
    println!("{model}: test accuracy {:.2}% on {} examples", acc * 100.0, test.len());
    Ok(())
}

pub fn predict(model: &str, weights: &Path, input: &Path, (threads, device): (usize, DeviceArg)) -> Result<(), String> {
    let task = fit::task(model, &data_dir(&None), 0).map_err(|e| e.to_string())?;
    let graph = task.model_at(1).map_err(|e| e.to_string())?.graph;
    let x_id = graph.leaf("x").ok_or("the model has no input `x`")?;
    let x_ty = graph.ty(x_id).clone();
    // Images may also come as bytes (0-255), scaled to the [0, 1] the loader gives.
    let x = match kiln::runtime::npy::read_dtype(input, x_ty.dtype) {
        Err(e) if x_ty.dtype == kiln::ir::DType::F32 => {
            kiln::runtime::npy::read_pixels(input).map_err(|_| e.to_string())?
        }
        other => other.map_err(|e| e.to_string())?,
    };
    // One example without its batch axis is a batch of one: of the example's shape, or with
    // its element count (a 28x28 image for the MLP's 784 inputs).
    let per_example: usize = x_ty.dims()[1..].iter().product();
    let numel: usize = x.shape().iter().product();
    let one = x.shape() == &x_ty.dims()[1..] || (numel == per_example && x.shape().first() != Some(&1));
    let x = if one {
        let mut dims = vec![1];
        dims.extend_from_slice(&x_ty.dims()[1..]);
        kiln::data::reshape(x, &dims).ok_or("cannot add a batch axis")?
    } else {
        x
    };
    let n = x.shape().first().copied().unwrap_or(0);
    let batch = n.clamp(1, task.defaults.batch.max(1));
    let mut p =
        fit::Predictor::from_checkpoint_on(task, weights, batch, threads, device.gpu()).map_err(|e| e.to_string())?;
    let classes = p.classes(&x).map_err(|e| format!("{}: {e}", input.display()))?;
    for c in classes {
        println!("{c}");
    }
    Ok(())
}

fn train_gan(a: TrainArgs) -> Result<(), String> {
    if a.resume.is_some() {
        return Err(
            "gan: --resume is not supported for adversarial training (checkpoints hold the weights only)".into()
        );
    }
    if a.dropout > 0.0 {
        return Err("gan: --dropout is available for mnist_mlp and lenet5".into());
    }
    let images = fit::gan::images(&data_dir(&a.data)).map_err(|e| e.to_string())?;
    if a.save_every.is_some() {
        return Err("gan: --save-every is not supported (the GAN saves at the end of its run)".into());
    }
    let (config, out) = settings(fit::gan::defaults(), &a)?;
    let n = images.len();
    let mut trainer = match &a.resume {
        Some(path) => fit::gan::GanTrainer::resume(images, config.clone(), path),
        None => fit::gan::GanTrainer::new(images, config.clone()),
    }
    .map_err(|e| e.to_string())?;
    let steps = trainer.steps_per_epoch();
    say(
        a.json,
        &format!(
            "training gan on MNIST: {n} images; {} epoch{} x {steps} steps of {}; {} lr {}; {} thread{}",
            config.epochs,
            if config.epochs == 1 { "" } else { "s" },
            config.batch,
            config.optimizer,
            config.lr,
            config.threads,
            if config.threads == 1 { "" } else { "s" }
        ),
    );
    install_ctrl_c();
    let bar = fit::progress::bar(steps);
    let json = a.json;
    let mut epoch_error = None;
    let outcome = {
        let samples_of = |t: &fit::gan::GanTrainer, epoch: usize| -> Result<(), String> {
            let images = t.samples().map_err(|e| e.to_string())?;
            let file = out.join(format!("samples-epoch-{epoch}.png"));
            fit::plot::image_grid(&file, &images, 28, 28, 8).map_err(|e| e.to_string())?;
            let latest = out.join("samples.png");
            let bytes = std::fs::read(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            kiln::runtime::files::write(&latest, &bytes).map_err(|e| format!("{}: {e}", latest.display()))?;
            Ok(())
        };
        // One epoch per `run`, so samples are drawn between epochs.
        let mut result = Ok(fit::Outcome::Finished);
        while trainer.epochs_done() < config.epochs {
            let target = trainer.epochs_done() + 1;
            trainer.set_epochs(target);
            result = trainer.run(
                &STOP,
                &mut |p, g_loss| {
                    if p.step == 1 {
                        bar.reset();
                        bar.set_prefix(format!("{}/{}", p.epoch, config.epochs));
                    }
                    bar.set_position(p.step as u64);
                    bar.set_message(format!(
                        "d_loss {:.3}  g_loss {:.3}  {:.0} images/s",
                        p.loss, g_loss, p.examples_per_second
                    ));
                },
                &mut |epoch, d, g| {
                    let line = format!("epoch {epoch}: mean d_loss {d:.4}, g_loss {g:.4}");
                    if bar.is_hidden() { say(json, &line) } else { bar.suspend(|| say(json, &line)) }
                },
            );
            if !matches!(result, Ok(fit::Outcome::Finished)) {
                break;
            }
            if let Err(e) = samples_of(&trainer, target) {
                epoch_error = Some(e);
                break;
            }
        }
        result
    };
    bar.finish_and_clear();
    let outcome = outcome.map_err(|e| e.to_string())?;
    if let Some(e) = epoch_error {
        return Err(e);
    }
    let ckpt = out.join("model.safetensors");
    trainer.save(&ckpt).map_err(|e| e.to_string())?;
    let h = trainer.history();
    let curve = out.join("curve.png");
    let series = [("discriminator", h.d_loss.as_slice()), ("generator", h.g_loss.as_slice())];
    fit::plot::losses(&curve, "gan", &series, None, a.loss_scale()?).map_err(|e| e.to_string())?;
    say(a.json, &format!("saved {}, {} and {}", ckpt.display(), curve.display(), out.join("samples.png").display()));
    if outcome == fit::Outcome::Interrupted {
        say(
            a.json,
            &format!("interrupted; continue with `kiln train gan{} --resume {}`", out_flag(&a), ckpt.display()),
        );
        std::process::exit(130);
    }
    if a.json {
        let last = |v: &[f32]| v.last().copied().unwrap_or(f32::NAN);
        println!(
            "{{\"model\":\"gan\",\"epochs\":{},\"d_loss\":{:.6},\"g_loss\":{:.6},\"train_seconds\":{:.3},\"examples_per_second\":{:.1}}}",
            trainer.epochs_done(),
            last(&h.d_loss),
            last(&h.g_loss),
            trainer.train_seconds(),
            (trainer.epochs_done() * steps * config.batch) as f64 / trainer.train_seconds().max(1e-9)
        );
    }
    Ok(())
}
