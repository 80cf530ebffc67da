//! A training run drawn for people: a progress bar per epoch on stderr (hidden when stderr is
//! not a terminal) with the loss and speed, and a line per epoch with the held-out score.
//! `kiln train` draws its runs with it; so can a program training its own model.

use std::sync::atomic::AtomicBool;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{FitError, Outcome, Trainer};

/// A progress bar on stderr for one epoch of `steps` steps, `epoch a/b [====>   ] k/steps
/// message` (hidden when stderr is not a terminal).
pub fn bar(steps: usize) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(steps as u64), ProgressDrawTarget::stderr());
    // The template is a constant that parses; were it not, the bar would keep its default.
    if let Ok(style) = ProgressStyle::with_template("epoch {prefix} [{bar:24}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Runs `trainer` to its last epoch (or until `stop` is raised) with a progress bar, passing
/// each epoch's line (`epoch 3: validation accuracy 97.95%  (12.3 s)`) to `say`.
pub fn run(trainer: &mut Trainer, stop: &AtomicBool, say: &mut dyn FnMut(&str)) -> Result<Outcome, FitError> {
    let bar = bar(trainer.steps_per_epoch());
    let epochs = trainer.config().epochs;
    // The first frame already names the epoch (it may be drawn before the first step).
    bar.set_prefix(format!("{}/{epochs}", trainer.epochs_done() + 1));
    let metric = trainer.task().metric;
    let held_out = trainer.held_out().map_or("held-out", |h| h.name);
    let started = Instant::now();
    let outcome = trainer.run(
        stop,
        &mut |p| {
            if p.step == 1 {
                bar.reset();
                bar.set_prefix(format!("{}/{}", p.epoch, p.epochs));
            }
            bar.set_position(p.step as u64);
            bar.set_message(format!("loss {:.4}  {:.0} ex/s", p.loss, p.examples_per_second));
        },
        &mut |epoch, score| {
            let line = if score.is_nan() {
                format!("epoch {epoch} done  ({:.1} s)", started.elapsed().as_secs_f64())
            } else {
                format!(
                    "epoch {epoch}: {held_out} {} {}  ({:.1} s)",
                    metric.name(),
                    metric.show(score),
                    started.elapsed().as_secs_f64()
                )
            };
            if bar.is_hidden() { say(&line) } else { bar.suspend(|| say(&line)) }
        },
    );
    bar.finish_and_clear();
    outcome
}
