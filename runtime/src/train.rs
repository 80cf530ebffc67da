//! Training: a training-step graph with its update mapping, and a session that owns the
//! parameters and optimizer state and runs one step per call.
//!
//! A [`TrainStep`] graph takes the batch, the labels, the learning rate `lr`, every parameter
//! and every optimizer state value, and returns `loss`, the model's outputs, and one output per
//! parameter and state value that replaces it for the next step ([`TrainStep::updates`]).

use std::collections::HashMap;

use kiln_ir::{DType, Graph, Init, InterpError, TensorType, Value};
use thiserror::Error;

use crate::exec::Backend;

/// A training-step graph and how its outputs feed the next step.
#[derive(Clone, Debug)]
pub struct TrainStep {
    /// The step graph.
    pub graph: Graph,
    /// `(output name, input or parameter name it replaces)`, parameters first.
    pub updates: Vec<(String, String)>,
    /// Optimizer state inputs with their types and initial values.
    pub state: Vec<(String, TensorType, Init)>,
    /// The names of the data inputs the caller feeds each step (batch and labels).
    pub data_inputs: Vec<String>,
}

/// Errors from running training steps.
#[derive(Debug, Error)]
pub enum TrainError {
    /// Running the step failed.
    #[error(transparent)]
    Run(#[from] InterpError),
    /// Compiling the step failed.
    #[error(transparent)]
    Compile(#[from] crate::jit::CompileError),
    /// The step's parameters, state and buffers would not fit in memory.
    #[error(transparent)]
    TooLarge(#[from] crate::memory::TooLarge),
    /// Optimizing the step failed.
    #[error(transparent)]
    Optimize(#[from] kiln_passes::PassError),
    /// The GPU backend failed.
    #[error(transparent)]
    Gpu(#[from] crate::gpu::GpuError),
    /// The step graph has no scalar float `loss` output, or no `lr` input.
    #[error("malformed training step: {0}")]
    Malformed(String),
}

/// Where a session's step runs.
#[derive(Debug)]
enum Engine {
    Interp,
    Jit(Box<crate::jit::Executable>),
    /// Parameters and state live on the device; updates swap buffers.
    Gpu(Box<crate::gpu::GpuExecutable>),
}

/// Owns parameters and optimizer state; [`TrainSession::step`] runs one step and replaces them.
#[derive(Debug)]
pub struct TrainSession {
    step: TrainStep,
    values: HashMap<String, Value>,
    steps_done: u64,
    seed: u64,
    engine: Engine,
    /// On the GPU: the host copy of the current parameters and state, emptied by each step and
    /// downloaded when next asked for (`values` then only names them).
    mirror: std::cell::OnceCell<HashMap<String, Value>>,
    /// Last step's parameter and state buffers, handed back to the next step as its output
    /// buffers (double buffering: updates are written without allocating).
    spare: Vec<Value>,
}

impl TrainSession {
    /// A session on the JIT (native kernels, the step compiled once, here), with parameters
    /// initialized from `seed` and zeroed optimizer state.
    pub fn new(step: TrainStep, seed: u64) -> Result<Self, TrainError> {
        Self::with_backend(step, seed, Backend::Jit)
    }

    /// [`TrainSession::new`] on the reference interpreter: slow, but the oracle every backend
    /// is checked against.
    pub fn interpreted(step: TrainStep, seed: u64) -> Result<Self, TrainError> {
        Self::with_backend(step, seed, Backend::Interp)
    }

    /// A session on `backend` (the step is compiled once, here, for the JIT, to run on
    /// `KILN_THREADS` threads), optimized with the default pipeline, or the GPU's on a GPU.
    pub fn with_backend(step: TrainStep, seed: u64, backend: Backend) -> Result<Self, TrainError> {
        let pipeline = match backend {
            Backend::Gpu(_) => kiln_passes::GPU_PIPELINE,
            _ => kiln_passes::DEFAULT_PIPELINE,
        };
        Self::with_pipeline(step, seed, backend, pipeline)
    }

    /// [`TrainSession::with_backend`], the step optimized with `pipeline` (any pass list
    /// `kiln opt --pipeline` takes; `cse,dce` for no rewriting) before it is compiled.
    pub fn with_pipeline(step: TrainStep, seed: u64, backend: Backend, pipeline: &str) -> Result<Self, TrainError> {
        let g = &step.graph;
        if !g.outputs().iter().any(|o| o.name == "loss" && g.ty(o.value).rank() == 0) {
            return Err(TrainError::Malformed(format!("@{} has no scalar `loss` output", g.name())));
        }
        if g.leaf("lr").is_none() {
            return Err(TrainError::Malformed(format!("@{} has no `lr` input", g.name())));
        }
        // Parameters and state are made once the backend has checked that they fit.
        let initial = || {
            let mut values = kiln_ir::init::init_params(g, seed);
            for (name, ty, init) in &step.state {
                values.insert(name.clone(), kiln_ir::init::materialize(*init, ty, name, seed));
            }
            values
        };
        let optimized = || -> Result<Graph, TrainError> { Ok(kiln_passes::Pipeline::parse(pipeline)?.run(g)?.0) };
        let (engine, values) = match backend {
            Backend::Interp => {
                crate::memory::interpreter_fits(g)?;
                (Engine::Interp, initial())
            }
            Backend::Jit => {
                let mut exe = crate::jit::compile(&optimized()?, crate::jit::Options::default())?
                    .with_threads(crate::pool::threads_from_env());
                exe.update_in_place(&step.updates);
                exe.fits_in_memory()?;
                (Engine::Jit(Box::new(exe)), initial())
            }
            Backend::Gpu(kind) => {
                let mut exe = crate::gpu::GpuExecutable::new(&optimized()?, crate::gpu::open(kind)?)?;
                let values = initial();
                for (name, v) in &values {
                    exe.set(name, v)?;
                }
                (Engine::Gpu(Box::new(exe)), values)
            }
        };
        // On the GPU the host copy starts current; each step invalidates it.
        let mirror = match engine {
            Engine::Gpu(_) => std::cell::OnceCell::from(values.clone()),
            _ => std::cell::OnceCell::new(),
        };
        Ok(TrainSession { step, values, steps_done: 0, seed, engine, mirror, spare: Vec::new() })
    }

    /// Runs one step on `batch` (the data inputs by name) with learning rate `lr`, updates the
    /// parameters and state, and returns the loss. Parameters and state move into the step
    /// and their replacements move back: nothing is copied.
    pub fn step(&mut self, batch: &HashMap<String, Value>, lr: f64) -> Result<f64, TrainError> {
        self.step_owned(batch.clone(), lr)
    }

    /// [`TrainSession::step`] taking the batch by value, so its tensors are not copied.
    pub fn step_owned(&mut self, batch: HashMap<String, Value>, lr: f64) -> Result<f64, TrainError> {
        if let Engine::Gpu(exe) = &mut self.engine {
            // The dropout seed the CPU path draws for this step (see below).
            let rng_seed = kiln_ir::rng::mix64(self.seed ^ self.steps_done) as i64;
            let loss = Self::step_on_gpu(exe, &self.step, batch, lr, rng_seed)?;
            self.mirror = std::cell::OnceCell::new();
            self.steps_done += 1;
            return Ok(loss);
        }
        let g = &self.step.graph;
        let mut feeds = std::mem::take(&mut self.values);
        let mut extra: Vec<String> = batch.keys().cloned().collect();
        feeds.extend(batch);
        let lr_ty = g.ty(g.leaf("lr").expect("checked in new")).clone();
        feeds.insert("lr".into(), Value::splat(&lr_ty, lr));
        extra.push("lr".into());
        // A fresh dropout seed every step, derived from the session seed.
        if let Some(id) = g.leaf("rng_seed")
            && g.ty(id).dtype == DType::I64
        {
            let s = kiln_ir::rng::mix64(self.seed ^ self.steps_done) as i64;
            feeds.insert("rng_seed".into(), Value::i64_scalar(s));
            extra.push("rng_seed".into());
        }
        let result = match &self.engine {
            Engine::Jit(exe) => {
                let mut outputs = std::mem::take(&mut self.spare);
                exe.run_updating(&mut feeds, &mut outputs).map(|()| outputs).map_err(TrainError::from)
            }
            _ => kiln_ir::interp::run(g, &feeds).map_err(TrainError::from),
        };
        for k in &extra {
            feeds.remove(k);
        }
        self.values = feeds;
        let outputs = result?;
        let replaces: HashMap<&str, &str> = self.step.updates.iter().map(|(o, r)| (o.as_str(), r.as_str())).collect();
        let mut loss = f64::NAN;
        // Updates computed in place come back as the same buffers. Other replaced values
        // become next step's output buffers, position for position (double buffering); an
        // output that replaces nothing keeps its own buffer.
        let mut spare = Vec::with_capacity(outputs.len());
        for (o, v) in g.outputs().iter().zip(outputs) {
            if o.name == "loss" {
                loss = v.to_f64_vec().first().copied().unwrap_or(f64::NAN);
            }
            match replaces.get(o.name.as_str()) {
                Some(r) => match self.values.insert((*r).to_string(), v) {
                    Some(old) => spare.push(old),
                    // Updated in place: no spare buffer is needed at this position.
                    None => spare.push(Value::F32(ndarray::ArrayD::zeros(ndarray::IxDyn(&[0])))),
                },
                None => spare.push(v),
            }
        }
        if spare.len() == g.outputs().len() {
            self.spare = spare;
        }
        self.steps_done += 1;
        Ok(loss)
    }

    /// One step on the GPU: the batch and `lr` uploaded, the step run, the loss downloaded,
    /// and every update's buffer swapped with its parameter's (nothing else leaves the device).
    fn step_on_gpu(
        exe: &mut crate::gpu::GpuExecutable,
        step: &TrainStep,
        batch: HashMap<String, Value>,
        lr: f64,
        rng_seed: i64,
    ) -> Result<f64, TrainError> {
        let g = &step.graph;
        for (name, v) in &batch {
            exe.set(name, v)?;
        }
        let lr_ty = g.ty(g.leaf("lr").expect("checked in new")).clone();
        exe.set("lr", &Value::splat(&lr_ty, lr))?;
        if g.leaf("rng_seed").is_some_and(|id| g.ty(id).dtype == DType::I64) {
            exe.set("rng_seed", &Value::i64_scalar(rng_seed))?;
        }
        exe.run()?;
        let at = exe.output_position("loss").expect("checked in new");
        let loss = exe.output(at)?.to_f64_vec().first().copied().unwrap_or(f64::NAN);
        for (output, replaces) in &step.updates {
            exe.replace_with_output(replaces, output)?;
        }
        Ok(loss)
    }

    /// The current value of a parameter or state value.
    ///
    /// # Panics
    /// On the GPU, if the device fails to copy the values back ([`TrainSession::try_values`]
    /// reports that as an error).
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.values().get(name)
    }

    /// Current parameter and state values by name (on the GPU, copied back once after each
    /// step, when first asked for).
    ///
    /// # Panics
    /// On the GPU, if the device fails to copy them back ([`TrainSession::try_values`]
    /// reports that as an error).
    pub fn values(&self) -> &HashMap<String, Value> {
        match self.try_values() {
            Ok(v) => v,
            Err(e) => panic!("cannot copy the parameters back from the device: {e}"),
        }
    }

    /// The current parameters by name, without the optimizer state (what a checkpoint of the
    /// model alone, or its forward graph, needs).
    pub fn params(&self) -> HashMap<&str, &Value> {
        let state: std::collections::HashSet<&str> = self.step.state.iter().map(|(n, _, _)| n.as_str()).collect();
        self.values().iter().filter(|(k, _)| !state.contains(k.as_str())).map(|(k, v)| (k.as_str(), v)).collect()
    }

    /// The current optimizer state (moments, velocities, step counts) by name.
    pub fn optimizer_state(&self) -> HashMap<&str, &Value> {
        let values = self.values();
        self.step.state.iter().filter_map(|(n, _, _)| values.get_key_value(n)).map(|(k, v)| (k.as_str(), v)).collect()
    }

    /// Current parameter and state values by name, or the device's error copying them back.
    pub fn try_values(&self) -> Result<&HashMap<String, Value>, TrainError> {
        let Engine::Gpu(exe) = &self.engine else { return Ok(&self.values) };
        if let Some(m) = self.mirror.get() {
            return Ok(m);
        }
        let mut m = HashMap::with_capacity(self.values.len());
        for name in self.values.keys() {
            m.insert(name.clone(), exe.value(name)?);
        }
        Ok(self.mirror.get_or_init(|| m))
    }

    /// Steps run so far.
    pub fn steps_done(&self) -> u64 {
        self.steps_done
    }

    /// Runs the compiled step on `threads` threads (no effect on the interpreter).
    pub fn set_threads(&mut self, threads: usize) {
        self.engine = match std::mem::replace(&mut self.engine, Engine::Interp) {
            Engine::Jit(exe) => Engine::Jit(Box::new(exe.with_threads(threads))),
            other => other,
        };
    }

    /// Replaces the parameter or state value `name` (restoring a checkpoint). The value must
    /// have the type the step graph gives it.
    pub fn set_value(&mut self, name: &str, value: Value) -> Result<(), TrainError> {
        let expected = match self.values.get(name) {
            Some(old) => old.ty(),
            None => return Err(TrainError::Malformed(format!("the step has no parameter or state value `{name}`"))),
        };
        if value.ty() != expected {
            return Err(TrainError::Malformed(format!("`{name}` is {expected}, not {}", value.ty())));
        }
        if let Engine::Gpu(exe) = &mut self.engine {
            exe.set(name, &value)?;
            if let Some(current) = self.mirror.get_mut() {
                current.insert(name.to_string(), value.clone());
            }
        }
        self.values.insert(name.to_string(), value);
        Ok(())
    }

    /// Sets the count of steps run (restoring a checkpoint: dropout masks are drawn from the
    /// session seed and this count, so a resumed run draws the masks it would have drawn).
    pub fn set_steps_done(&mut self, steps: u64) {
        self.steps_done = steps;
    }

    /// The step being run.
    pub fn train_step(&self) -> &TrainStep {
        &self.step
    }
}
