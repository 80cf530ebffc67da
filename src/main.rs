//! The `kiln` command line: list the zoo, dump IR, check and run `.kir` files, benchmark, and
//! train, score and use zoo models.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};
use kiln::frontend::optim::Optimizer;
use kiln::ir::{DType, Graph, Op, Value};
use kiln::zoo;

mod cli_train;

#[derive(Parser)]
#[command(name = "kiln", version, about = "kiln: a deep-learning compiler. Build, inspect and run tensor IR.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The graph `kiln bench` and `kiln profile` run: a zoo model's forward graph or training step
/// at a batch size, or a `.kir` function.
#[derive(clap::Args)]
struct GraphArgs {
    /// A zoo model name or a `.kir` or `.onnx` file (its first function).
    target: String,
    /// The training step (zoo models) instead of the forward graph.
    #[arg(long)]
    train_step: bool,
    /// Optimizer of the training step.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
    optimizer: OptimizerArg,
    /// Batch size for zoo models, and the extent of an `.onnx` model's symbolic dimensions.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// A loss on a model file's first output (input `labels`), for `--train-step`.
    #[arg(long, value_enum)]
    loss: Option<LossArg>,
}

#[derive(Subcommand)]
enum Command {
    /// List the model zoo with parameter counts.
    Models {
        /// Batch size used to build the graphs.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Print a model (zoo, `.kir` or `.onnx`) at a compiler stage.
    Dump {
        /// A zoo model name (see `kiln models`) or a path to a `.kir` or `.onnx` file.
        target: String,
        /// Which stage to print.
        #[arg(long, value_enum, default_value_t = Stage::Graph)]
        stage: Stage,
        /// Output format: the text IR or Graphviz DOT.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// Batch size for zoo models, and the extent of an `.onnx` model's symbolic dimensions.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// A loss on a model file's first output (a `labels` input added), so that the `grad`
        /// and `train-step` stages can differentiate it.
        #[arg(long, value_enum)]
        loss: Option<LossArg>,
        /// Optimizer of the `train-step` stage.
        #[arg(long, value_enum, default_value_t = OptimizerArg::Sgd)]
        optimizer: OptimizerArg,
        /// With `--stage optimized`: optimize the training step instead of the forward graph.
        #[arg(long)]
        train_step: bool,
    },
    /// Optimize a `.kir` file (or an `.onnx` model) with a pass pipeline; prints the result and
    /// each pass's report.
    Opt {
        /// The `.kir` or `.onnx` file.
        file: PathBuf,
        /// Comma-separated passes (the list is filled in from the pass registry at run time).
        #[arg(long, default_value = kiln::passes::DEFAULT_PIPELINE)]
        pipeline: String,
    },
    /// Run a `.kir` function or an `.onnx` model on `.npy` inputs and write one `.npy` per
    /// output. Parameters come from --input, else the model file's weights (an `.onnx` model's
    /// initializers, or those `kiln import` wrote beside a `.kir` file), else the seed.
    Run {
        /// The `.kir` or `.onnx` file.
        file: PathBuf,
        /// The extent of an `.onnx` model's symbolic dimensions (a dynamic batch).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// The function to run, if the file has several.
        #[arg(long)]
        func: Option<String>,
        /// An input or parameter value: `NAME=path.npy` (repeatable).
        #[arg(long = "input", value_name = "NAME=FILE")]
        inputs: Vec<String>,
        /// Seed for parameters not given with --input (and for `rng_seed` if not given).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Convert each --input file to its input's dtype (bytes, integers, floats, bools;
        /// floats become integers only when every value is a whole number in range) and
        /// reshape it to the input's shape when the element counts agree: a `u8` 28x28 image
        /// feeds an `f32[1,784]` input. Without it, files must match exactly.
        #[arg(long)]
        cast: bool,
        /// Optimize the graph with this pass pipeline first (as `kiln opt --pipeline` takes
        /// it) [default: run it as written].
        #[arg(long)]
        pipeline: Option<String>,
        /// Directory for the output files (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Where to run: the reference interpreter or the Cranelift JIT.
        #[arg(long, value_enum, default_value_t = BackendArg::Jit)]
        backend: BackendArg,
        /// Where to run: the CPU (with `--backend`) or the first NVIDIA GPU (a build with the
        /// `cuda` feature).
        #[arg(long, value_enum, default_value_t = cli_train::DeviceArg::Cpu)]
        device: cli_train::DeviceArg,
    },
    /// Time a model (forward or training step) or a `.kir` function on the JIT.
    Bench {
        #[command(flatten)]
        graph: GraphArgs,
        /// One kernel per op instead of fused kernels (the baseline).
        #[arg(long)]
        unfused: bool,
        /// Timed runs (after one warm-up run).
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// Threads for kernels, GEMMs and convolutions [default: $KILN_THREADS, else 1; at most 256].
        #[arg(long, value_parser = crate::parse_threads)]
        threads: Option<usize>,
        /// Print one JSON object instead of a table row.
        #[arg(long)]
        json: bool,
        /// The pass pipeline to optimize with, as `kiln opt --pipeline` takes it (`cse,dce`:
        /// no rewriting, to measure what the optimizer is worth).
        #[arg(long, default_value = kiln::passes::DEFAULT_PIPELINE)]
        pipeline: String,
        /// Where to run: the CPU (the JIT) or the first NVIDIA GPU (a build with the `cuda`
        /// feature; one run is the launches and the download of the first output).
        #[arg(long, value_enum, default_value_t = cli_train::DeviceArg::Cpu)]
        device: cli_train::DeviceArg,
        /// The JIT tier to time: 1 (Cranelift's kernels only) or 2 (the C compiler's, waited
        /// for before the first timed run; tier 1 if the second tier is off or fails).
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
        tier: u8,
    },
    /// Measure the optimizer's cost model on this machine (a few seconds): time probe kernels,
    /// GEMMs, convolutions and copies, fit nanoseconds per feature, and cache the model for this
    /// CPU (where `kiln` reads it unless KILN_COST_MODEL says otherwise).
    Calibrate {
        /// Profiled runs of every probe (the median counts).
        #[arg(long, default_value_t = 25)]
        runs: usize,
        /// Write the model here instead of this CPU's cache file.
        #[arg(short = 'o', long = "out")]
        out: Option<PathBuf>,
        /// Print every probe step's measured and predicted time.
        #[arg(long)]
        verbose: bool,
    },
    /// Time every step of a graph on one thread against the cost model's prediction: a table
    /// of steps, then the totals, the rank correlation and the largest misses.
    Profile {
        #[command(flatten)]
        graph: GraphArgs,
        /// Profiled runs (the median counts), after one warm-up run.
        #[arg(long, default_value_t = 20)]
        runs: usize,
        /// The pass pipeline to optimize with, as `kiln opt --pipeline` takes it.
        #[arg(long, default_value = kiln::passes::DEFAULT_PIPELINE)]
        pipeline: String,
        /// Print only the summary, not every step.
        #[arg(long)]
        summary: bool,
        /// The JIT tier to time: 1 (Cranelift's kernels, what the cost model is calibrated on)
        /// or 2 (the C compiler's, waited for first).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        tier: u8,
    },
    /// Train a zoo model on its task (MNIST or synthetic data): progress bar, held-out accuracy
    /// per epoch, then `model.safetensors` and `curve.png` in --out.
    Train(cli_train::TrainArgs),
    /// Compile a model into a shared library with a C ABI: `DIR/libNAME.so` (kernels, weights
    /// and runtime inside; needs only libc) and `DIR/NAME.h`.
    Build {
        /// A zoo model name (see `kiln models`), or a `.kir` or `.onnx` file (its first function).
        target: String,
        /// A checkpoint (`model.safetensors` from `kiln train`) [default: the weights the
        /// model file came with, else the seeded initialization].
        #[arg(long)]
        weights: Option<PathBuf>,
        /// Examples per call, for zoo models; the extent of an `.onnx` model's symbolic dimensions.
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// The library's name and the prefix of its C functions [default: the model's name].
        #[arg(long)]
        name: Option<String>,
        /// Seed of the initialization when no --weights are given.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Keep the generated C driver, the C runtime, the kernels' C and the object in
        /// DIR/NAME.build/.
        #[arg(long)]
        keep_sources: bool,
        /// Who compiles the fused kernels: `c` (the system C compiler, at the target's full
        /// vector width) or `cranelift` (as the JIT's first tier).
        #[arg(long, default_value = "c", value_parser = ["c", "cranelift"])]
        kernels: String,
        /// The CPUs to compile for: native (this machine's), x86-64-v2, x86-64-v3 or x86-64-v4.
        /// The library checks the CPU before it runs and returns an error on one without them.
        #[arg(long = "target", value_name = "CPU", default_value = "native")]
        cpu: String,
        /// The pass pipeline to optimize with, as `kiln opt --pipeline` takes it (`cse,dce`:
        /// no rewriting, to measure what the optimizer is worth).
        #[arg(long, default_value = kiln::passes::DEFAULT_PIPELINE)]
        pipeline: String,
        /// The output directory.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
    },
    /// Print a checkpoint's held-out accuracy on its model's task.
    Eval {
        /// The model (see `kiln models`).
        model: String,
        /// The checkpoint (`model.safetensors` from `kiln train`).
        #[arg(long)]
        weights: PathBuf,
        /// The MNIST directory [default: the bundled data/mnist].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Examples per run [default: the task's batch].
        #[arg(long)]
        batch: Option<usize>,
        /// Threads [default: $KILN_THREADS, else 1; at most 256].
        #[arg(long, value_parser = crate::parse_threads)]
        threads: Option<usize>,
        /// Where to run: the CPU or the first NVIDIA GPU (a build with the `cuda` feature).
        #[arg(long, value_enum, default_value_t = cli_train::DeviceArg::Cpu)]
        device: cli_train::DeviceArg,
    },
    /// Print the predicted class of every example in a `.npy` file, one per line.
    Predict {
        /// The model (see `kiln models`).
        model: String,
        /// The checkpoint (`model.safetensors` from `kiln train`).
        #[arg(long)]
        weights: PathBuf,
        /// The examples: `[n, ...]` (or one example without the batch axis) of the model's
        /// input dtype; MNIST pixels as f32 in [0, 1] or as u8 0-255.
        #[arg(long)]
        input: PathBuf,
        /// Threads [default: $KILN_THREADS, else 1; at most 256].
        #[arg(long, value_parser = crate::parse_threads)]
        threads: Option<usize>,
        /// Where to run: the CPU or the first NVIDIA GPU (a build with the `cuda` feature).
        #[arg(long, value_enum, default_value_t = cli_train::DeviceArg::Cpu)]
        device: cli_train::DeviceArg,
    },
    /// Import an `.onnx` model: its function as text IR in OUT (`.kir`) and its weights beside
    /// it (OUT with the extension `.safetensors`), which every command reading OUT picks up.
    Import {
        /// The `.onnx` file.
        file: PathBuf,
        /// The `.kir` file to write.
        #[arg(short = 'o', long = "out")]
        out: PathBuf,
        /// The extent every symbolic dimension (a dynamic batch) is pinned to.
        #[arg(long, default_value_t = 1)]
        batch: usize,
    },
    /// Parse and verify a `.kir` file, printing every error found.
    Check {
        /// The `.kir` file.
        file: PathBuf,
    },
}

/// Compiler stages that can be dumped.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Stage {
    /// The graph as built (or parsed), before any pass.
    Graph,
    /// Forward, loss and backward: the loss graph with a `grad.<param>` output per parameter.
    Grad,
    /// One whole training step: forward, loss, backward and the optimizer update.
    TrainStep,
    /// After the default pass pipeline (the forward graph, or the step with --train-step).
    Optimized,
    /// The lowered schedule every backend translates: each step with its level (steps of one
    /// level may run at the same time), what it reads and the buffer it writes, and the
    /// arena's layout (`--format dot`: the step DAG).
    Schedule,
    /// The fused groups and the kernel loop IR of every generated kernel.
    Kernels,
    /// The Cranelift IR of every generated kernel.
    Clif,
    /// The machine code of every generated kernel, as assembly.
    Asm,
    /// The CUDA C of every generated kernel: one NVRTC translation unit per graph.
    Cuda,
}

/// Backends for `kiln run`.
#[derive(Clone, Copy, ValueEnum)]
enum BackendArg {
    /// The reference interpreter.
    Interp,
    /// Fused native kernels compiled with Cranelift.
    Jit,
}

/// Losses `--loss` puts on a model file's first output.
#[derive(Clone, Copy, ValueEnum)]
enum LossArg {
    /// Cross entropy of logits against `i64` class labels (input `labels`).
    CrossEntropy,
    /// Mean squared error against targets of the output's type (input `labels`).
    Mse,
    /// Binary cross entropy of probabilities against float targets.
    BinaryCrossEntropy,
    /// Mean absolute error.
    Mae,
}

impl LossArg {
    fn loss(self) -> zoo::Loss {
        match self {
            LossArg::CrossEntropy => zoo::Loss::CrossEntropy,
            LossArg::Mse => zoo::Loss::Mse,
            LossArg::BinaryCrossEntropy => zoo::Loss::BinaryCrossEntropy,
            LossArg::Mae => zoo::Loss::Mae,
        }
    }
}

/// Optimizers for `--stage train-step`, with their default hyperparameters.
#[derive(Clone, Copy, ValueEnum)]
enum OptimizerArg {
    /// Plain SGD.
    Sgd,
    /// SGD with momentum 0.9.
    Momentum,
    /// SGD with Nesterov momentum 0.9.
    Nesterov,
    /// Adam (0.9, 0.999, 1e-8).
    Adam,
    /// AdamW with decoupled weight decay 0.01.
    Adamw,
}

impl OptimizerArg {
    fn optimizer(self) -> Optimizer {
        match self {
            OptimizerArg::Sgd => Optimizer::sgd(),
            OptimizerArg::Momentum => Optimizer::momentum(0.9, false),
            OptimizerArg::Nesterov => Optimizer::momentum(0.9, true),
            OptimizerArg::Adam => Optimizer::adam(),
            OptimizerArg::Adamw => Optimizer::adamw(0.01),
        }
    }
}

/// Dump formats.
#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// The `.kir` text IR.
    Text,
    /// Graphviz DOT.
    Dot,
}

/// `println!` to stdout that reports a write error instead of panicking; a closed pipe
/// (`kiln dump ... | head`) ends the program quietly.
macro_rules! outln {
    ($($t:tt)*) => {{
        use std::io::Write;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($t)*) {
            return Err(stdout_error(e));
        }
    }};
}

/// `print!` to stdout, like [`outln!`].
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write;
        if let Err(e) = write!(std::io::stdout().lock(), $($t)*) {
            return Err(stdout_error(e));
        }
    }};
}

fn stdout_error(e: std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0);
    }
    format!("writing to stdout: {e}")
}

fn main() -> ExitCode {
    // `kiln opt --pipeline` lists every pass of the registry, so the help cannot go stale.
    let help = format!("Comma-separated passes. {}", kiln::passes::pipeline::pass_help());
    let command = Cli::command().mut_subcommand("opt", |c| c.mut_arg("pipeline", |a| a.help(help)));
    let cli = Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
    let r = match cli.command {
        Command::Models { batch } => models(batch),
        Command::Dump { target, stage, format, batch, optimizer, train_step, loss } => {
            let src = Source { target: &target, batch, loss };
            let staging = match (stage, train_step) {
                (
                    Stage::Optimized | Stage::Schedule | Stage::Kernels | Stage::Clif | Stage::Asm | Stage::Cuda,
                    true,
                ) => Staging::OptimizedStep,
                (Stage::Graph, _) => Staging::Graph,
                (Stage::Grad, _) => Staging::Grad,
                (Stage::TrainStep, _) => Staging::TrainStep,
                (
                    Stage::Optimized | Stage::Schedule | Stage::Kernels | Stage::Clif | Stage::Asm | Stage::Cuda,
                    false,
                ) => Staging::Optimized,
            };
            match stage {
                Stage::Schedule => dump_schedule(src, staging, format, optimizer),
                Stage::Kernels | Stage::Clif | Stage::Asm | Stage::Cuda => dump_kernels(src, staging, optimizer, stage),
                _ => dump(src, staging, format, optimizer),
            }
        }
        Command::Opt { file, pipeline } => opt(&file, &pipeline),
        Command::Run { file, func, inputs, seed, cast, pipeline, out, backend, device, batch } => {
            let backend = match (device, backend) {
                (cli_train::DeviceArg::Cuda, _) => kiln::runtime::exec::Backend::Gpu(kiln::gpu::DeviceKind::Cuda),
                (_, BackendArg::Interp) => kiln::runtime::exec::Backend::Interp,
                (_, BackendArg::Jit) => kiln::runtime::exec::Backend::Jit,
            };
            run((&file, batch), func.as_deref(), (&inputs, cast, pipeline.as_deref()), seed, &out, backend)
        }
        Command::Check { file } => check(&file),
        Command::Import { file, out, batch } => import(&file, &out, batch),
        Command::Train(args) => cli_train::train(args),
        Command::Build { target, weights, batch, name, seed, keep_sources, kernels, cpu, pipeline, out } => {
            build(&target, weights.as_deref(), (batch, seed), name, (keep_sources, &kernels), (&cpu, &pipeline), &out)
        }
        Command::Eval { model, weights, data, batch, threads, device } => {
            cli_train::eval(&model, &weights, &data, batch, (threads_or_env(threads), device))
        }
        Command::Predict { model, weights, input, threads, device } => {
            cli_train::predict(&model, &weights, &input, (threads_or_env(threads), device))
        }
        Command::Calibrate { runs, out, verbose } => calibrate(runs.max(1), out.as_deref(), verbose),
        Command::Profile {
            graph: GraphArgs { target, train_step, optimizer, batch, loss },
            runs,
            pipeline,
            summary,
            tier,
        } => {
            let src = Source { target: &target, batch, loss };
            profile(src, train_step.then_some(optimizer), runs.max(1), &pipeline, (summary, tier))
        }
        Command::Bench {
            graph: GraphArgs { target, train_step, optimizer, batch, loss },
            unfused,
            runs,
            threads,
            json,
            pipeline,
            device,
            tier,
        } => {
            let threads = threads.unwrap_or_else(kiln::runtime::pool::threads_from_env).max(1);
            let step = train_step.then_some(optimizer);
            let src = Source { target: &target, batch, loss };
            bench(src, step, unfused, runs.max(1), threads, json, &pipeline, (device, tier))
        }
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build(
    target: &str,
    weights: Option<&Path>,
    (batch, seed): (usize, u64),
    name: Option<String>,
    (keep_sources, kernels): (bool, &str),
    (cpu, pipeline): (&str, &str),
    out: &Path,
) -> Result<(), String> {
    let cpu = kiln::aot::Target::parse(cpu).ok_or_else(|| {
        let names: Vec<&str> = kiln::aot::Target::ALL.iter().map(|t| t.name()).collect();
        format!("--target {cpu}: expected one of {}", names.join(", "))
    })?;
    let name = name.unwrap_or_else(|| {
        Path::new(target).file_stem().map(|s| s.to_string_lossy().replace(['-', '.'], "_")).unwrap_or_default()
    });
    let mut options = kiln::aot::BuildOptions::new(&name, out);
    options.keep_sources = keep_sources;
    options.kernels = kiln::aot::KernelCompiler::parse(kernels)
        .ok_or_else(|| format!("--kernels {kernels}: expected c or cranelift"))?;
    options.target = cpu;
    let lib = kiln::aot::build_model(target, weights, (batch, seed), &options, pipeline).map_err(|e| e.to_string())?;
    outln!("wrote {} and {}", lib.library.display(), lib.header.display());
    let describe = |items: &[(String, kiln::ir::TensorType)]| {
        items.iter().map(|(n, t)| format!("{n}: {t}")).collect::<Vec<_>>().join(", ")
    };
    outln!("  {name}_run({}) -> ({})", describe(&lib.inputs), describe(&lib.outputs));
    outln!(
        "  {} kernels, {:.1} KiB of weights, {:.1} KiB of arena per calling thread; needs {}",
        lib.kernels,
        lib.weight_bytes as f64 / 1024.0,
        lib.arena_bytes as f64 / 1024.0,
        if lib.libm.is_empty() { "only libc".to_string() } else { format!("libc and libm ({})", lib.libm.join(", ")) }
    );
    outln!("  compiled for {} (checks {} before running)", lib.target.name(), lib.cpu_features.join(", "));
    // A library may run elsewhere, so this is a warning: on this machine a call would get
    // OUT_OF_MEMORY.
    let per_call = lib.arena_bytes as u64 + lib.weight_bytes as u64;
    if let Some(available) = kiln::runtime::memory::available_bytes().filter(|a| per_call > *a) {
        eprintln!(
            "warning: a call needs {:.1} GiB (weights and one thread's arena); this machine has {:.1} GiB available, so it would fail here with OUT_OF_MEMORY",
            per_call as f64 / (1u64 << 30) as f64,
            available as f64 / (1u64 << 30) as f64
        );
    }
    if keep_sources {
        outln!("  sources in {}", out.join(format!("{name}.build")).display());
    }
    Ok(())
}

/// A `--threads` value: 1 up to [`kiln::runtime::pool::MAX_THREADS`].
pub(crate) fn parse_threads(s: &str) -> Result<usize, String> {
    let max = kiln::runtime::pool::MAX_THREADS;
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(format!("expected a thread count from 1 to {max}")),
    }
}

fn threads_or_env(threads: Option<usize>) -> usize {
    threads.unwrap_or_else(kiln::runtime::pool::threads_from_env).max(1)
}

fn build_zoo(entry: &zoo::Entry, batch: usize) -> Result<Vec<zoo::Model>, String> {
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    (entry.build)(batch, DType::F32).map_err(|e| format!("building {}: {e}", entry.name))
}

fn models(batch: usize) -> Result<(), String> {
    outln!("{:<18} {:>10}  summary", "model", "params");
    for e in zoo::CATALOG {
        let params: usize = build_zoo(e, batch)?.iter().map(|m| m.graph.param_count()).sum();
        outln!("{:<18} {:>10}  {}", e.name, params, e.summary);
    }
    Ok(())
}

/// A model file (`.kir` or `.onnx`, symbolic dimensions pinned to `batch`), its import notes
/// said on stderr.
fn read_model(path: &Path, batch: usize) -> Result<kiln::model_file::ModelFile, String> {
    let file = kiln::model_file::read(path, batch)?;
    for note in &file.notes {
        eprintln!("note: {}: {note}", path.display());
    }
    Ok(file)
}

/// What `dump` was pointed at: zoo models (which know their loss) or parsed graphs.
enum Target {
    Zoo(Vec<zoo::Model>),
    File(Vec<Graph>),
}

/// The parameter values a model file came with (an `.onnx` model's initializers).
type Weights = Option<HashMap<String, Value>>;

/// A zoo model, or a model file; `loss` puts a loss on a file's first output (zoo models have
/// their own), so that its gradient and training step can be built.
/// The model a command is pointed at: a zoo name or a file, the batch (zoo models, and the
/// symbolic dimensions of `.onnx` models), and the loss to put on a file's output.
#[derive(Clone, Copy)]
struct Source<'a> {
    target: &'a str,
    batch: usize,
    loss: Option<LossArg>,
}

fn load_target(Source { target, batch, loss }: Source<'_>) -> Result<(Target, Weights), String> {
    if let Some(e) = zoo::entry(target) {
        if loss.is_some() {
            return Err(format!("--loss: zoo model {target} trains with its own loss"));
        }
        return Ok((Target::Zoo(build_zoo(e, batch)?), None));
    }
    let path = Path::new(target);
    if path.extension().is_some_and(|x| x == "kir") || kiln::onnx::is_onnx(path) || path.exists() {
        if batch == 0 {
            return Err("--batch must be at least 1".into());
        }
        let file = read_model(path, batch)?;
        let target = match loss {
            None => Target::File(file.graphs),
            Some(l) => Target::Zoo(
                file.graphs.into_iter().map(|g| kiln::onnx::with_loss(g, l.loss())).collect::<Result<_, _>>()?,
            ),
        };
        return Ok((target, file.weights));
    }
    let names: Vec<&str> = zoo::CATALOG.iter().map(|e| e.name).collect();
    Err(format!("`{target}` is neither a zoo model ({}) nor a .kir or .onnx file", names.join(", ")))
}

/// What `dump` prints: a stage, with `--train-step` folded in.
#[derive(Clone, Copy)]
enum Staging {
    Graph,
    Grad,
    TrainStep,
    Optimized,
    OptimizedStep,
}

/// The graphs of `target` at `stage`, each with the reports of the passes that made it.
/// Files reach the grad and train-step stages through an output named `loss`.
fn staged(target: Target, stage: Staging, optimizer: OptimizerArg) -> Result<Vec<(Graph, String)>, String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let forward: Vec<Graph> = match &target {
        Target::Zoo(models) => models.iter().map(|m| m.graph.clone()).collect(),
        Target::File(graphs) => graphs.clone(),
    };
    let loss_graphs = || -> Result<Vec<Graph>, String> {
        match &target {
            Target::Zoo(models) => {
                models.iter().map(kiln::train::loss_graph).collect::<Result<_, _>>().map_err(|e| err(&e))
            }
            Target::File(graphs) => Ok(graphs.clone()),
        }
    };
    let step = |g: Graph| kiln::train::train_step_for(g, &optimizer.optimizer()).map(|s| s.graph).map_err(|e| err(&e));
    let optimized = |g: Graph| -> Result<(Graph, String), String> {
        let pipeline = kiln::passes::Pipeline::parse(kiln::passes::DEFAULT_PIPELINE).map_err(|e| err(&e))?;
        let (g, reports) = pipeline.run(&g).map_err(|e| err(&e))?;
        let mut text: Vec<String> = reports.iter().map(|r| r.to_string()).collect();
        // What fusion makes of the optimized graph, with its predictions.
        let (_, choices) = kiln::passes::fuse::partition_with_choices(&g, kiln::Fusion::Fused);
        text.extend(fusion_choices(&g, &choices));
        Ok((g, text.join("\n")))
    };
    let plain = |gs: Vec<Graph>| gs.into_iter().map(|g| (g, String::new())).collect();
    Ok(match stage {
        Staging::Graph => plain(forward),
        Staging::Grad => plain(
            loss_graphs()?
                .into_iter()
                .map(|g| kiln::passes::autodiff::grad(&g, "loss", &[]).map_err(|e| err(&e)))
                .collect::<Result<_, _>>()?,
        ),
        Staging::TrainStep => plain(loss_graphs()?.into_iter().map(step).collect::<Result<_, _>>()?),
        Staging::Optimized => forward.into_iter().map(optimized).collect::<Result<_, _>>()?,
        Staging::OptimizedStep => {
            loss_graphs()?.into_iter().map(|g| step(g).and_then(optimized)).collect::<Result<_, _>>()?
        }
    })
}

fn dump(src: Source<'_>, stage: Staging, format: Format, optimizer: OptimizerArg) -> Result<(), String> {
    let graphs = staged(load_target(src)?.0, stage, optimizer)?;
    for (g, _) in &graphs {
        kiln::ir::verify(g).map_err(|e| format!("internal error: {e}"))?;
    }
    match format {
        Format::Text => {
            let texts: Vec<String> = graphs
                .iter()
                .map(|(g, report)| if report.is_empty() { g.to_string() } else { format!("{g}{report}\n") })
                .collect();
            out!("{}", texts.join("\n"));
        }
        Format::Dot => {
            for (g, _) in &graphs {
                out!("{}", kiln::ir::dot::to_dot(g));
            }
        }
    }
    Ok(())
}

fn opt(file: &Path, pipeline: &str) -> Result<(), String> {
    let pipeline = kiln::passes::Pipeline::parse(pipeline).map_err(|e| e.to_string())?;
    let graphs = read_model(file, 1)?.graphs;
    let mut texts = Vec::new();
    for g in &graphs {
        let (out, reports) = pipeline.run(g).map_err(|e| e.to_string())?;
        let report: Vec<String> = reports.iter().map(|r| r.to_string()).collect();
        texts.push(format!("{out}{}\n", report.join("\n")));
    }
    out!("{}", texts.join("\n"));
    Ok(())
}

fn import(file: &Path, out: &Path, batch: usize) -> Result<(), String> {
    if batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let options = kiln::onnx::Options { batch, ..Default::default() };
    let model = kiln::onnx::import_file(file, &options).map_err(|e| format!("{}: {e}", file.display()))?;
    for note in &model.notes {
        eprintln!("note: {}: {note}", file.display());
    }
    let weights = kiln::onnx::save(&model, out)?;
    let g = &model.graph;
    outln!(
        "wrote {} (@{}: {} nodes, {} inputs, {} outputs) and {} ({} parameters)",
        out.display(),
        g.name(),
        g.len(),
        g.inputs().count(),
        g.outputs().len(),
        weights.display(),
        model.weights.len()
    );
    Ok(())
}

fn check(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let graphs = kiln::ir::parse_module(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut failed = Vec::new();
    for g in &graphs {
        match kiln::ir::verify(g) {
            Ok(()) => outln!(
                "ok: @{} ({} nodes, {} inputs, {} params, {} outputs)",
                g.name(),
                g.len(),
                g.inputs().count(),
                g.params().count(),
                g.outputs().len()
            ),
            Err(e) => failed.push(e.to_string()),
        }
    }
    if failed.is_empty() { Ok(()) } else { Err(format!("{}: {}", path.display(), failed.join("\n"))) }
}

fn pick_func(graphs: Vec<Graph>, func: Option<&str>) -> Result<Graph, String> {
    let names: Vec<String> = graphs.iter().map(|g| format!("@{}", g.name())).collect();
    match func {
        Some(f) => {
            let f = f.trim_start_matches('@');
            graphs
                .into_iter()
                .find(|g| g.name() == f)
                .ok_or_else(|| format!("no function @{f} (the file has {})", names.join(", ")))
        }
        None if graphs.len() == 1 => Ok(graphs.into_iter().next().expect("one graph")),
        None => Err(format!("the file has several functions ({}): choose one with --func", names.join(", "))),
    }
}

/// Inputs for a benchmark of `graph`: parameters from the model file's `weights` or else seed
/// 0, data inputs from the generator (integers 0), learning rate 0.01.
fn bench_feeds(graph: &kiln::ir::Graph, weights: &Weights) -> HashMap<String, Value> {
    let mut feeds = kiln::ir::init::init_params(graph, 0);
    if let Some(w) = weights {
        feeds.extend(w.iter().filter(|(k, _)| graph.leaf(k).is_some()).map(|(k, v)| (k.clone(), v.clone())));
    }
    for (i, (_, n)) in graph.inputs().enumerate() {
        let name = n.op.leaf_name().unwrap_or_default().to_string();
        let v = match n.ty.dtype {
            DType::I32 | DType::I64 | DType::Bool => Value::splat(&n.ty, 0.0),
            _ => kiln::ir::init::materialize(
                kiln::ir::Init::Uniform { low: kiln::ir::Literal(0.0), high: kiln::ir::Literal(1.0) },
                &n.ty,
                &name,
                i as u64,
            ),
        };
        let v = if name == "lr" { Value::splat(&n.ty, 0.01) } else { v };
        feeds.insert(name, v);
    }
    feeds
}

fn calibrate(runs: usize, out: Option<&Path>, verbose: bool) -> Result<(), String> {
    let start = std::time::Instant::now();
    let cal = kiln::calibrate::calibrate(runs, |_| {}).map_err(|e| e.to_string())?;
    if verbose {
        outln!("{:<28} {:<44} {:>12} {:>12}", "probe", "step", "measured µs", "predicted µs");
        for (probe, s) in &cal.samples {
            outln!("{probe:<28} {:<44} {:>12.2} {:>12.2}", s.what, s.measured_ns / 1e3, s.predicted_ns / 1e3);
        }
    }
    let steps: Vec<_> = cal.samples.iter().map(|(_, s)| s.clone()).collect();
    let q = kiln::calibrate::Quality::of(&steps);
    out!("{}", cal.model.to_text());
    outln!(
        "; {} probe steps in {:.1} s; on them, rank correlation {:.3}, predicted {:.0} µs against {:.0} µs measured",
        q.steps,
        start.elapsed().as_secs_f64(),
        q.rank_correlation,
        q.predicted_ns / 1e3,
        q.measured_ns / 1e3
    );
    let path = match out {
        Some(p) => p.to_path_buf(),
        None => kiln::passes::cost_model::cache_path().ok_or("no cache directory (set KILN_CACHE_DIR or HOME)")?,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, cal.model.to_text()).map_err(|e| format!("{}: {e}", path.display()))?;
    outln!("; wrote {}", path.display());
    Ok(())
}

fn profile(
    src: Source<'_>,
    train_step: Option<OptimizerArg>,
    runs: usize,
    pipeline: &str,
    (summary, tier): (bool, u8),
) -> Result<(), String> {
    let stage = if train_step.is_some() { Staging::TrainStep } else { Staging::Graph };
    let (target, weights) = load_target(src)?;
    let (graph, _) = staged(target, stage, train_step.unwrap_or(OptimizerArg::Sgd))?
        .into_iter()
        .next()
        .ok_or_else(|| format!("`{}` has no function", src.target))?;
    let mut exe = kiln::compile_with(&graph, kiln::Fusion::Fused, pipeline).map_err(|e| e.to_string())?;
    if tier == 2 {
        if !exe.wait_for_tier2(std::time::Duration::from_secs(600)) {
            return Err(format!("tier 2 did not come in: {:?}", exe.tier2_status()));
        }
    } else {
        exe.set_tier2(kiln::runtime::tier2::Options::from_env().off());
    }
    exe.fits_in_memory().map_err(|e| e.to_string())?;
    let feeds = bench_feeds(exe.graph(), &weights);
    let model = kiln::passes::cost_model::CostModel::current();
    let steps = kiln::calibrate::profile(&exe, &feeds, runs, model).map_err(|e| e.to_string())?;
    let row = |s: &kiln::calibrate::StepTime| {
        format!(
            "{:>5} {:<10} {:>12.2} {:>12.2} {:>7.2}  {}",
            s.index,
            s.features.family.name(),
            s.measured_ns / 1e3,
            s.predicted_ns / 1e3,
            s.predicted_ns / s.measured_ns.max(1.0),
            s.what
        )
    };
    let header =
        format!("{:>5} {:<10} {:>12} {:>12} {:>7}  step", "step", "family", "measured µs", "predicted µs", "ratio");
    if !summary {
        outln!("{header}");
        for s in &steps {
            outln!("{}", row(s));
        }
    }
    let q = kiln::calibrate::Quality::of(&steps);
    outln!(
        "@{}: {} steps, measured {:.1} µs, predicted {:.1} µs (cost model: {}); rank correlation {:.3}",
        exe.graph().name(),
        q.steps,
        q.measured_ns / 1e3,
        q.predicted_ns / 1e3,
        model.source,
        q.rank_correlation
    );
    outln!("largest misses:");
    outln!("{header}");
    for s in &q.misses {
        outln!("{}", row(s));
    }
    Ok(())
}

/// What `kiln bench` times: the JIT's run, or the GPU's launches and first output.
enum Bencher {
    // Boxed: an executable is kilobytes.
    Cpu { exe: Box<kiln::Executable>, feeds: HashMap<String, Value>, outputs: Vec<Value> },
    Gpu(Box<kiln::gpu::GpuExecutable>),
}

impl Bencher {
    fn run(&mut self) -> Result<(), String> {
        match self {
            Bencher::Cpu { exe, feeds, outputs } => exe.run_into(feeds, outputs).map_err(|e| e.to_string()),
            Bencher::Gpu(exe) => {
                exe.run().map_err(|e| e.to_string())?;
                exe.output(0).map(drop).map_err(|e| e.to_string())
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn bench(
    src: Source<'_>,
    train_step: Option<OptimizerArg>,
    unfused: bool,
    runs: usize,
    threads: usize,
    json: bool,
    pipeline: &str,
    (device, tier): (cli_train::DeviceArg, u8),
) -> Result<(), String> {
    let stage = if train_step.is_some() { Staging::TrainStep } else { Staging::Graph };
    let optimizer = train_step.unwrap_or(OptimizerArg::Sgd);
    let (target, weights) = load_target(src)?;
    let (graph, _) = staged(target, stage, optimizer)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("`{}` has no function", src.target))?;
    let fusion = if unfused { kiln::Fusion::Unfused } else { kiln::Fusion::Fused };
    let start = std::time::Instant::now();
    let mut bencher = match device {
        cli_train::DeviceArg::Cpu => {
            let exe = kiln::compile_with(&graph, fusion, pipeline).map_err(|e| e.to_string())?.with_threads(threads);
            exe.fits_in_memory().map_err(|e| e.to_string())?;
            let feeds = bench_feeds(exe.graph(), &weights);
            Bencher::Cpu { exe: Box::new(exe), feeds, outputs: Vec::new() }
        }
        cli_train::DeviceArg::Cuda => {
            if unfused {
                return Err("--unfused compares the CPU's kernels; the GPU always runs fused groups".into());
            }
            let mut exe =
                kiln::gpu::compile_with(&graph, kiln::gpu::DeviceKind::Cuda, pipeline).map_err(|e| e.to_string())?;
            for (name, v) in bench_feeds(&exe.program().graph, &weights) {
                exe.set(&name, &v).map_err(|e| e.to_string())?;
            }
            if !json {
                // The forms chosen by measurement when the executable was created.
                for t in exe.tunings() {
                    let forms: Vec<String> =
                        t.seconds.iter().map(|(form, s)| format!("{form} {:.1} us", s * 1e6)).collect();
                    outln!("  {}: {} (measured: {})", t.symbol, t.seconds[t.chosen].0, forms.join(", "));
                }
            }
            Bencher::Gpu(Box::new(exe))
        }
    };
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    // The tier timed, and how long the second took to come in (compiling, or loading it from
    // the cache).
    let (tier, tier2_ms) = match &mut bencher {
        Bencher::Cpu { exe, .. } if tier == 2 => {
            let t = std::time::Instant::now();
            let on = exe.wait_for_tier2(std::time::Duration::from_secs(600));
            if on { (2, Some(t.elapsed().as_secs_f64() * 1e3)) } else { (1, None) }
        }
        Bencher::Cpu { exe, .. } => {
            let off = kiln::runtime::tier2::Options::from_env().off();
            exe.set_tier2(off);
            (1, None)
        }
        Bencher::Gpu(_) => (0, None),
    };
    // Warm-up: one run, and on tier 2 its trial runs (each kernel timed on both tiers, then
    // kept on the faster).
    let warmups = if tier == 2 { 1 + kiln::runtime::tier2::TRIAL_RUNS } else { 1 };
    for _ in 0..warmups {
        bencher.run()?;
    }
    let tier2_kernels = match &bencher {
        Bencher::Cpu { exe, .. } => match exe.tier2_status() {
            kiln::runtime::tier2::Status::Active { kernels, .. } => kernels,
            _ => 0,
        },
        Bencher::Gpu(_) => 0,
    };
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = std::time::Instant::now();
        bencher.run()?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
    }
    times.sort_by(f64::total_cmp);
    let (median, min, max) = (times[times.len() / 2], times[0], times[times.len() - 1]);
    let mode = if unfused { "unfused" } else { "fused" };
    let (dev, threads_note) = match device {
        cli_train::DeviceArg::Cpu => ("cpu", format!("threads {threads}")),
        cli_train::DeviceArg::Cuda => ("cuda", "gpu".to_string()),
    };
    if json {
        outln!(
            "{{\"model\": \"{}\", \"device\": \"{dev}\", \"mode\": \"{mode}\", \"train_step\": {}, \"optimizer\": {}, \"pipeline\": \"{pipeline}\", \"threads\": {threads}, \"batch\": {}, \"median_us\": {median:.1}, \"min_us\": {min:.1}, \"max_us\": {max:.1}, \"compile_ms\": {compile_ms:.1}, \"tier\": {tier}, \"tier2_ms\": {}, \"tier2_kernels\": {tier2_kernels}, \"runs\": {runs}}}",
            graph.name(),
            train_step.is_some(),
            train_step.map_or_else(|| "null".to_string(), |o| format!("\"{}\"", o.optimizer().name())),
            src.batch,
            tier2_ms.map_or_else(|| "null".to_string(), |t| format!("{t:.1}"))
        );
    } else {
        let tier_note = match (tier, tier2_ms) {
            (0, _) => String::new(),
            (t, None) => format!("  tier {t}"),
            (t, Some(ms)) => format!("  tier {t} (in after {ms:.0} ms, {tier2_kernels} kernels)"),
        };
        outln!(
            "{:<28} {mode:<8} {threads_note}  median {median:>10.1} us  min {min:>10.1}  max {max:>10.1}  compile {compile_ms:>7.1} ms{tier_note}{}",
            graph.name(),
            if pipeline == kiln::passes::DEFAULT_PIPELINE { String::new() } else { format!("  pipeline {pipeline}") }
        );
    }
    Ok(())
}

/// Fusion's choices as `;` comment lines, with the predictions that made them: values read by
/// several kernels (recomputed in each, or stored) and kernels merged into a reader that
/// stores their value beside its own.
fn fusion_choices(g: &Graph, choices: &kiln::passes::fuse::Choices) -> Vec<String> {
    let mut lines = Vec::new();
    for c in &choices.recompute {
        let node = g.node(c.node);
        lines.push(format!(
            "; %{} = {} {}: read by {} kernels; {} (predicted {:.2} µs recomputed, {:.2} µs stored)",
            c.node.index(),
            node.op.name(),
            node.ty,
            c.readers,
            if c.recomputed { "recomputed in each" } else { "stored" },
            c.recompute_ns / 1e3,
            c.store_ns / 1e3
        ));
    }
    for m in &choices.merges {
        let node = g.node(m.node);
        lines.push(format!(
            "; %{} = {} {}: side output of the kernel of %{} (predicted {:.2} µs merged, {:.2} µs apart)",
            m.node.index(),
            node.op.name(),
            node.ty,
            m.into.index(),
            m.merged_ns / 1e3,
            m.apart_ns / 1e3
        ));
    }
    lines
}

fn dump_schedule(src: Source<'_>, staging: Staging, format: Format, optimizer: OptimizerArg) -> Result<(), String> {
    for (g, _) in staged(load_target(src)?.0, staging, optimizer)? {
        let schedule = kiln::runtime::schedule::Schedule::build(&g, Default::default()).map_err(|e| e.to_string())?;
        match format {
            Format::Text => outln!("{schedule}"),
            Format::Dot => outln!("{}", schedule.to_dot()),
        }
    }
    Ok(())
}

fn dump_kernels(src: Source<'_>, staging: Staging, optimizer: OptimizerArg, stage: Stage) -> Result<(), String> {
    let options = kiln::runtime::jit::Options { disassemble: stage == Stage::Asm, ..Default::default() };
    for (g, _) in staged(load_target(src)?.0, staging, optimizer)? {
        let exe = kiln::runtime::jit::compile(&g, options).map_err(|e| e.to_string())?;
        if stage == Stage::Cuda {
            let functions = kiln::gpu::functions(&exe);
            let forms = kiln::gpu::symbols(&functions).len();
            outln!(
                "/* @{}: {} GPU functions, {forms} forms */\n{}",
                g.name(),
                functions.len(),
                kiln::gpu::module(&exe)
            );
            continue;
        }
        let plan = exe.memory_plan();
        outln!(
            "; @{}: {} groups; memory plan: peak {} bytes vs {} bytes without reuse",
            g.name(),
            exe.groups().count(),
            plan.peak_bytes,
            plan.naive_bytes
        );
        if stage == Stage::Kernels {
            let (_, choices) = kiln::passes::fuse::partition_with_choices(exe.graph(), kiln::Fusion::Fused);
            for line in fusion_choices(exe.graph(), &choices) {
                outln!("{line}");
            }
        }
        for (group, kernel) in exe.groups() {
            match (kernel, stage) {
                (Some(k), Stage::Clif) => outln!("; kernel @{}\n{}", k.kernel.name, k.clif),
                (Some(k), Stage::Asm) => {
                    outln!("; kernel @{}\n{}", k.kernel.name, k.asm.as_deref().unwrap_or("; (no disassembly)"))
                }
                (Some(k), _) if group.kind == kiln::passes::fuse::GroupKind::Contraction => {
                    let members: Vec<String> = group.members.iter().map(|m| format!("%{}", m.index())).collect();
                    let split = kiln::passes::fuse::epilogue_split(&g, group).unwrap_or(group.members.len());
                    let product = group.members[split.saturating_sub(1)];
                    outln!(
                        "; contraction %{} = {} %{} + epilogue {} (members: {}; GEMM, the epilogue on each finished band of rows)\n{}",
                        group.root().index(),
                        g.node(product).op.name(),
                        product.index(),
                        k.kernel.name,
                        members.join(" "),
                        k.kernel
                    );
                }
                (Some(k), _) => {
                    let members: Vec<String> = group.members.iter().map(|m| format!("%{}", m.index())).collect();
                    let how = if k.vectorized { "f32x4 + scalar tail" } else { "scalar" };
                    outln!("; group {} (fused: {}; {how})\n{}", k.kernel.name, members.join(" "), k.kernel);
                }
                (None, Stage::Clif | Stage::Asm) => {}
                (None, _) => {
                    let root = group.root();
                    let members: Vec<String> = group.members.iter().map(|m| format!("%{}", m.index())).collect();
                    match group.kind {
                        kiln::passes::fuse::GroupKind::Movement => {
                            outln!("; movement %{} = {} (runtime block copies)\n", root.index(), g.node(root).op.name())
                        }
                        kiln::passes::fuse::GroupKind::Contraction => {
                            let op = g.node(root).op.name();
                            let how =
                                if op == "matmul" { "GEMM; transposes read through strides" } else { "im2col + GEMM" };
                            outln!("; contraction %{} = {op} (members: {}; {how})\n", root.index(), members.join(" "))
                        }
                        kiln::passes::fuse::GroupKind::Op | kiln::passes::fuse::GroupKind::Elementwise => {
                            outln!("; op %{} = {} (runtime reference kernel)\n", root.index(), g.node(root).op.name())
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

/// `v` converted to `ty` for `kiln run --cast`: its dtype by the IR's `cast` (refusing float
/// values an integer cannot hold exactly), then its shape when the element counts agree.
fn cast_to(v: Value, ty: &kiln::ir::TensorType) -> Result<Value, String> {
    let int_target = matches!(ty.dtype, DType::I32 | DType::I64);
    if int_target && matches!(v.dtype(), DType::F32 | DType::F64) {
        // Whole numbers within the dtype (an i64 holds every f64 whole number below 2^63).
        let holds = |x: f64| {
            x.fract() == 0.0
                && if ty.dtype == DType::I32 {
                    (-2f64.powi(31)..2f64.powi(31)).contains(&x)
                } else {
                    (-2f64.powi(63)..2f64.powi(63)).contains(&x)
                }
        };
        if let Some((i, x)) = v.to_f64_vec().into_iter().enumerate().find(|(_, x)| !holds(*x)) {
            return Err(format!("element {i} is {x}, which {} does not hold exactly", ty.dtype));
        }
    }
    let v = v.cast(ty.dtype);
    let numel: usize = v.shape().iter().product();
    if numel != ty.numel() {
        return Err(format!("holds {numel} values ({:?}); {ty} takes {}", v.shape(), ty.numel()));
    }
    kiln::data::reshape(v, ty.dims()).ok_or_else(|| format!("cannot reshape to {ty}"))
}

fn run(
    (file, batch): (&Path, usize),
    func: Option<&str>,
    (inputs, cast, pipeline): (&[String], bool, Option<&str>),
    seed: u64,
    out: &Path,
    backend: kiln::runtime::exec::Backend,
) -> Result<(), String> {
    let model = read_model(file, batch)?;
    let graph = pick_func(model.graphs, func)?;
    let graph = match pipeline {
        Some(p) => kiln::passes::Pipeline::parse(p).and_then(|p| p.run(&graph)).map_err(|e| e.to_string())?.0,
        None => graph,
    };
    // The model file's own weights, unless --input gives others.
    let mut feeds: HashMap<String, Value> = model.weights.unwrap_or_default();
    feeds.retain(|name, _| graph.leaf(name).is_some());
    for spec in inputs {
        let (name, path) = spec.split_once('=').ok_or_else(|| format!("--input `{spec}`: expected NAME=path.npy"))?;
        let Some(id) = graph.leaf(name) else {
            let known: Vec<&str> = graph.leaves().filter_map(|(_, n)| n.op.leaf_name()).collect();
            return Err(format!(
                "--input `{name}`: @{} has no input or parameter `{name}` (it has: {})",
                graph.name(),
                known.join(", ")
            ));
        };
        let ty = graph.ty(id);
        let v = if cast {
            let v = kiln::runtime::npy::read_any(Path::new(path)).map_err(|e| format!("--input `{name}`: {e}"))?;
            cast_to(v, ty).map_err(|e| format!("--input `{name}`: {path}: {e}"))?
        } else {
            kiln::runtime::npy::read(Path::new(path), ty).map_err(|e| format!("--input `{name}`: {e}"))?
        };
        feeds.insert(name.to_string(), v);
    }
    for (id, node) in graph.inputs() {
        let Op::Input { name } = &node.op else {
            continue;
        };
        if feeds.contains_key(name) {
            continue;
        }
        if name == "rng_seed" && node.ty.dtype == DType::I64 && node.ty.rank() == 0 {
            feeds.insert(name.clone(), Value::I64(ndarray::arr0(seed as i64).into_dyn()));
            continue;
        }
        return Err(format!("missing --input {name}=FILE.npy for input `{name}` of type {}", graph.ty(id)));
    }
    let outputs = kiln::runtime::exec::run(&graph, &feeds, seed, backend).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (o, v) in graph.outputs().iter().zip(&outputs) {
        let path = out.join(format!("{}.npy", o.name));
        kiln::runtime::npy::write(&path, v).map_err(|e| e.to_string())?;
        outln!("wrote {} ({})", path.display(), v.ty());
    }
    Ok(())
}
