//! Running a [`GpuProgram`] on a [`Device`]: buffers allocated once, leaves uploaded when
//! set and kept on the device until replaced, every launch of a run on one stream, outputs
//! downloaded on request. Training swaps a parameter's buffer with its update's, so
//! parameters and optimizer state never leave the device between steps. Functions of several
//! forms (products, convolutions and their gradients) run in the form [`GpuExecutable::tune`]
//! measured fastest on the device — on a GPU it runs when the executable is created — or the
//! default form until then.

use std::collections::HashMap;

use kiln_ir::{Graph, Value};

use super::program::{FAULT_BYTES, GpuProgram, GpuStep, Place, Role, program};
use super::{Device, GpuError};
use crate::bytes::{value_bytes, value_from_bytes};

/// A graph loaded on a device (see the module's header).
pub struct GpuExecutable {
    program: GpuProgram,
    device: Box<dyn Device>,
    /// Per program buffer: its device address (leaf and output buffers swap on updates).
    address: Vec<u64>,
    /// Per leaf: whether it has been given a value.
    set: Vec<bool>,
    leaf_of: HashMap<String, usize>,
    /// Per function: the device's index of its first form (the others follow).
    slots: Vec<usize>,
    /// Per function: the form it runs in.
    chosen: Vec<usize>,
    /// What the last [`GpuExecutable::tune`] measured.
    tunings: Vec<Tuning>,
}

/// What [`GpuExecutable::tune`] measured for one function of several forms.
#[derive(Clone, Debug)]
pub struct Tuning {
    /// The function's position in [`GpuProgram::functions`].
    pub function: usize,
    /// Its default form's symbol.
    pub symbol: String,
    /// Every form's name and its time per launch, in seconds, in the function's order.
    pub seconds: Vec<(String, f64)>,
    /// The form chosen: the fastest.
    pub chosen: usize,
}

/// Every symbol of `functions` as a device loads them: each function's forms in order.
pub fn symbols(functions: &[super::GpuFunction]) -> Vec<String> {
    functions.iter().flat_map(|f| f.variants.iter().map(|v| v.symbol.clone())).collect()
}

/// The device index of each function's first form, in [`symbols`]' order.
fn first_slots(functions: &[super::GpuFunction]) -> Vec<usize> {
    functions.iter().scan(0, |next, f| Some(std::mem::replace(next, *next + f.variants.len()))).collect()
}

impl std::fmt::Debug for GpuExecutable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuExecutable")
            .field("graph", &self.program.graph.name())
            .field("device", &self.device.describe())
            .field("functions", &self.program.functions.len())
            .finish()
    }
}

impl GpuExecutable {
    /// Resolves `graph` (already optimized) into a program, compiles its module on `device`
    /// and allocates every buffer. On a device that times like a GPU
    /// ([`Device::times_like_a_gpu`]), every function of several forms is then measured and
    /// runs in its fastest ([`GpuExecutable::tune`]).
    pub fn new(graph: &Graph, mut device: Box<dyn Device>) -> Result<Self, GpuError> {
        let program = program(graph)?;
        device.load(&program.module, &symbols(&program.functions))?;
        let address = program.buffers.iter().map(|b| device.alloc(b.bytes)).collect::<Result<Vec<_>, _>>()?;
        let leaf_of = program.leaves.iter().enumerate().map(|(i, l)| (l.name.clone(), i)).collect();
        let set = vec![false; program.leaves.len()];
        let slots = first_slots(&program.functions);
        let chosen = vec![0; program.functions.len()];
        let mut exe = GpuExecutable { program, device, address, set, leaf_of, slots, chosen, tunings: Vec::new() };
        if exe.device.times_like_a_gpu() {
            exe.tune()?;
        }
        Ok(exe)
    }

    /// Times every form of every function that has several, launching each alone on the
    /// executable's own buffers (whatever they hold: the work does not depend on the values),
    /// and makes each function run in its fastest form from now on. Leaves keep their values
    /// (no function writes a leaf's buffer), but the outputs of an earlier run do not: run
    /// again before reading them. Returns what it measured.
    pub fn tune(&mut self) -> Result<Vec<Tuning>, GpuError> {
        let mut out = Vec::new();
        for fi in 0..self.program.functions.len() {
            let forms = self.program.functions[fi].variants.len();
            if forms < 2 {
                continue;
            }
            let mut seconds = Vec::with_capacity(forms);
            for v in 0..forms {
                seconds.push((self.program.functions[fi].variants[v].form.clone(), self.time(fi, v)?));
            }
            let chosen = (0..forms).min_by(|&a, &b| seconds[a].1.total_cmp(&seconds[b].1)).unwrap_or(0);
            self.chosen[fi] = chosen;
            out.push(Tuning { function: fi, symbol: self.program.functions[fi].symbol().to_string(), seconds, chosen });
        }
        self.tunings = out.clone();
        Ok(out)
    }

    /// What the last [`GpuExecutable::tune`] measured (empty if it never ran).
    pub fn tunings(&self) -> &[Tuning] {
        &self.tunings
    }

    /// Seconds per launch of form `variant` of function `function`: one launch to warm up,
    /// then enough back-to-back launches to take about a millisecond (1 to 50).
    fn time(&mut self, function: usize, variant: usize) -> Result<f64, GpuError> {
        let args = self
            .program
            .steps
            .iter()
            .find_map(|s| match s {
                GpuStep::Launch { function: f, args } if *f == function => Some(args.clone()),
                _ => None,
            })
            .ok_or(GpuError::NoFunction(function))?;
        let ptrs: Vec<u64> = args.iter().map(|p| self.address[p.buffer] + p.offset as u64).collect();
        let launch = self.program.functions[function].variants[variant].launch;
        let slot = self.slots[function] + variant;
        let timed = |device: &mut Box<dyn Device>, times: usize| -> Result<f64, GpuError> {
            let start = std::time::Instant::now();
            for _ in 0..times {
                // SAFETY: the arguments of the function's own step: every place lies inside its
                // buffer with the room its node's type needs, as in `run`.
                unsafe { device.launch(slot, &ptrs, launch) }?;
            }
            device.synchronize()?;
            Ok(start.elapsed().as_secs_f64())
        };
        timed(&mut self.device, 1)?;
        let once = timed(&mut self.device, 1)?;
        let times = ((1e-3 / once.max(1e-9)) as usize).clamp(1, 50);
        Ok(timed(&mut self.device, times)? / times as f64)
    }

    /// Makes function `function` run in form `variant` (see [`GpuFunction::variants`]).
    ///
    /// [`GpuFunction::variants`]: super::GpuFunction::variants
    pub fn choose(&mut self, function: usize, variant: usize) -> Result<(), GpuError> {
        let f = self.program.functions.get(function).ok_or(GpuError::NoFunction(function))?;
        if variant >= f.variants.len() {
            return Err(GpuError::NoForm { symbol: f.symbol().to_string(), form: variant, forms: f.variants.len() });
        }
        self.chosen[function] = variant;
        Ok(())
    }

    /// The form each function runs in, by position in [`GpuProgram::functions`].
    pub fn chosen(&self) -> &[usize] {
        &self.chosen
    }

    /// The resolved program.
    pub fn program(&self) -> &GpuProgram {
        &self.program
    }

    /// The device, in words.
    pub fn device(&self) -> String {
        self.device.describe()
    }

    fn leaf(&self, name: &str) -> Result<usize, GpuError> {
        self.leaf_of.get(name).copied().ok_or_else(|| GpuError::UnknownName {
            graph: self.program.graph.name().to_string(),
            name: name.to_string(),
        })
    }

    /// Uploads `value` as the input or parameter `name`; it stays on the device for every run
    /// until set again. Index inputs are checked against the tables they index.
    pub fn set(&mut self, name: &str, value: &Value) -> Result<(), GpuError> {
        let i = self.leaf(name)?;
        let leaf = &self.program.leaves[i];
        if value.ty() != leaf.ty {
            return Err(GpuError::WrongType { name: name.to_string(), expected: leaf.ty.clone(), got: value.ty() });
        }
        let mut inverses = Vec::new();
        for check in self.program.index_checks.iter().filter(|c| c.leaf == name) {
            let indices = checked_indices(name, value, check.extent, check.op)?;
            if let Some((starts, order)) = check.inverse {
                let (s, o) = kiln_codegen::gpu::inverse_index(&indices, check.extent);
                inverses.push((starts, int_bytes(&s)));
                inverses.push((order, int_bytes(&o)));
            }
        }
        for (buffer, bytes) in inverses {
            // SAFETY: the inverse's buffers were sized for this index's count and table extent.
            unsafe { self.device.upload(self.address[buffer], &bytes) }?;
        }
        let bytes = value_bytes(value);
        // SAFETY: the leaf's buffer was allocated with the size of its type, which `value` has.
        unsafe { self.device.upload(self.address[leaf.buffer], &bytes) }?;
        self.set[i] = true;
        Ok(())
    }

    /// Runs every launch and copy of the program and waits for them. Every input and parameter
    /// must have been set.
    pub fn run(&mut self) -> Result<(), GpuError> {
        if let Some(i) = self.set.iter().position(|s| !s) {
            let leaf = &self.program.leaves[i];
            return Err(GpuError::MissingValue { name: leaf.name.clone(), ty: leaf.ty.clone() });
        }
        let at = |address: &[u64], p: &Place| address[p.buffer] + p.offset as u64;
        // One argument list reused by every launch of the run.
        let mut ptrs: Vec<u64> = Vec::new();
        for step in &self.program.steps {
            match step {
                GpuStep::Launch { function, args } => {
                    ptrs.clear();
                    ptrs.extend(args.iter().map(|p| at(&self.address, p)));
                    let variant = self.chosen[*function];
                    let launch = self.program.functions[*function].variants[variant].launch;
                    // SAFETY: the program places every argument inside its buffer with the
                    // room its node's type needs (buffers were allocated at the plan's sizes);
                    // every form of a function takes the same arguments.
                    unsafe { self.device.launch(self.slots[*function] + variant, &ptrs, launch) }?;
                }
                GpuStep::Copy { from, to, bytes } => {
                    // SAFETY: both places hold a value of `bytes` bytes; an output's buffer is
                    // never the source of its own copy.
                    unsafe { self.device.copy(at(&self.address, from), at(&self.address, to), *bytes) }?;
                }
            }
        }
        self.device.synchronize()?;
        match self.program.faults {
            Some(buffer) => check_faults(self.device.as_mut(), &self.program.graph, self.address[buffer]),
            None => Ok(()),
        }
    }

    /// Downloads the output at position `i`.
    pub fn output(&self, i: usize) -> Result<Value, GpuError> {
        let (_, ty, buffer) = self.program.outputs.get(i).ok_or(GpuError::NoOutput(i))?;
        let mut bytes = vec![0u8; ty.size_bytes()];
        // SAFETY: the output's buffer holds exactly its type's bytes.
        unsafe { self.device.download(self.address[*buffer], &mut bytes) }?;
        Ok(value_from_bytes(ty, &bytes))
    }

    /// The position of the output `name`.
    pub fn output_position(&self, name: &str) -> Option<usize> {
        self.program.outputs.iter().position(|(n, _, _)| n == name)
    }

    /// Downloads every output, in order.
    pub fn outputs(&self) -> Result<Vec<Value>, GpuError> {
        (0..self.program.outputs.len()).map(|i| self.output(i)).collect()
    }

    /// Downloads the current value of the input or parameter `name`.
    pub fn value(&self, name: &str) -> Result<Value, GpuError> {
        let leaf = &self.program.leaves[self.leaf(name)?];
        let mut bytes = vec![0u8; leaf.ty.size_bytes()];
        // SAFETY: the leaf's buffer holds exactly its type's bytes.
        unsafe { self.device.download(self.address[leaf.buffer], &mut bytes) }?;
        Ok(value_from_bytes(&leaf.ty, &bytes))
    }

    /// Makes output `output` the new value of leaf `leaf` without copying: their buffers swap
    /// (the next run writes that output into the leaf's old buffer). The two must have one
    /// type.
    pub fn replace_with_output(&mut self, leaf: &str, output: &str) -> Result<(), GpuError> {
        let li = self.leaf(leaf)?;
        let oi = self.output_position(output).ok_or_else(|| GpuError::UnknownName {
            graph: self.program.graph.name().to_string(),
            name: output.to_string(),
        })?;
        let (l, o) = (&self.program.leaves[li], &self.program.outputs[oi]);
        if l.ty != o.1 {
            return Err(GpuError::WrongType { name: leaf.to_string(), expected: l.ty.clone(), got: o.1.clone() });
        }
        debug_assert!(matches!(self.program.buffers[o.2].role, Role::Output(_)));
        self.address.swap(l.buffer, o.2);
        self.set[li] = true;
        Ok(())
    }

    /// Sets every leaf from `feeds` (all must be there), runs, and downloads the outputs.
    pub fn run_with(&mut self, feeds: &HashMap<String, Value>) -> Result<Vec<Value>, GpuError> {
        for i in 0..self.program.leaves.len() {
            let leaf = &self.program.leaves[i];
            let name = leaf.name.clone();
            let v =
                feeds.get(&name).ok_or_else(|| GpuError::MissingValue { name: name.clone(), ty: leaf.ty.clone() })?;
            self.set(&name, v)?;
        }
        self.run()?;
        self.outputs()
    }
}

/// The integer `value` of index leaf `name` as `i64`s, each checked to lie in `0..extent`.
fn checked_indices(name: &str, value: &Value, extent: usize, op: &'static str) -> Result<Vec<i64>, GpuError> {
    let indices: Vec<i64> = value.to_f64_vec().into_iter().map(|x| x as i64).collect();
    match indices.iter().find(|&&i| i < 0 || i as u128 >= extent as u128) {
        Some(&index) => Err(GpuError::IndexOutOfRange { name: name.to_string(), index, extent, op }),
        None => Ok(indices),
    }
}

/// Reads the fault words at `at` (after the work that may set them has finished), clears
/// them, and turns a recorded fault into its error.
fn check_faults(device: &mut dyn Device, graph: &Graph, at: u64) -> Result<(), GpuError> {
    let mut bytes = [0u8; FAULT_BYTES];
    // SAFETY: the fault buffer holds exactly `FAULT_BYTES` bytes.
    unsafe { device.download(at, &mut bytes) }?;
    let word = |i: usize| u64::from_ne_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
    let (node, value) = (word(0), word(1) as i64);
    if node == 0 {
        return Ok(());
    }
    // SAFETY: as above; zeros clear the record for the next run.
    unsafe { device.upload(at, &[0u8; FAULT_BYTES]) }?;
    let index = (node - 1) as usize;
    if index >= graph.len() {
        return Err(GpuError::Driver(format!("internal: a fault record names node %{index}, not in the graph")));
    }
    let id = kiln_ir::NodeId::from_index(index);
    let op = graph.node(id).op.name();
    let node = graph.node(id);
    // The ops that check on the device (`kiln_codegen::gpu::checks_on_device`).
    let what = if let kiln_ir::Op::Gather { axis } = node.op {
        format!("index {value} outside 0..{} (computed on the device)", graph.ty(node.args[0]).dims()[axis])
    } else if let kiln_ir::Op::ScatterAdd { axis } = node.op {
        format!("index {value} outside 0..{} (computed on the device)", graph.ty(id).dims()[axis])
    } else if let kiln_ir::Op::Binary(kiln_ir::BinaryOp::Div) = node.op {
        "integer division by zero".to_string()
    } else {
        return Err(GpuError::Driver(format!("internal: a fault record names %{index}, a {op} that checks nothing")));
    };
    Err(GpuError::Fault { op, node: id.index(), what })
}

/// The bytes of `int`s, in the host's order.
fn int_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Runs form `variant` of function `index` of `functions` (rendered from `graph`, its module
/// already loaded on `device` with [`symbols`]) on `inputs`, the values of its input nodes,
/// and returns its output: for checking one function at a time. Each input must have its
/// node's type.
pub fn call_function(
    device: &mut dyn Device,
    graph: &Graph,
    functions: &[super::GpuFunction],
    (index, variant): (usize, usize),
    inputs: &[Value],
) -> Result<Value, GpuError> {
    let f = functions.get(index).ok_or(GpuError::NoFunction(index))?;
    let form = f.variants.get(variant).ok_or(GpuError::NoFunction(index))?;
    if inputs.len() != f.inputs.len() {
        return Err(GpuError::Compile(format!(
            "{} takes {} inputs, got {}",
            form.symbol,
            f.inputs.len(),
            inputs.len()
        )));
    }
    let mut args = Vec::with_capacity(inputs.len() + 1);
    for (node, v) in f.inputs.iter().zip(inputs) {
        let ty = graph.ty(*node);
        if v.ty().dtype != ty.dtype || v.ty().numel() != ty.numel() {
            return Err(GpuError::WrongType { name: format!("%{}", node.index()), expected: ty.clone(), got: v.ty() });
        }
        let bytes = value_bytes(v);
        let at = device.alloc(bytes.len())?;
        // SAFETY: `at` was just allocated with exactly these bytes' length.
        unsafe { device.upload(at, &bytes) }?;
        args.push(at);
    }
    if let Some((indices, extent)) = f.inverse {
        let at = f.inputs.iter().position(|n| *n == indices).ok_or(GpuError::NoFunction(index))?;
        let indices = checked_indices(&format!("%{}", indices.index()), &inputs[at], extent, "scatter_add")?;
        let (starts, order) = kiln_codegen::gpu::inverse_index(&indices, extent);
        for bytes in [int_bytes(&starts), int_bytes(&order)] {
            let buffer = device.alloc(bytes.len())?;
            // SAFETY: `buffer` was just allocated with exactly these bytes' length.
            unsafe { device.upload(buffer, &bytes) }?;
            args.push(buffer);
        }
    }
    let faults = if f.checked {
        let at = device.alloc(FAULT_BYTES)?;
        args.push(at);
        Some(at)
    } else {
        None
    };
    let out_ty = graph.ty(f.output).clone();
    let out = device.alloc(out_ty.size_bytes())?;
    args.push(out);
    for n in &f.side_outputs {
        args.push(device.alloc(graph.ty(*n).size_bytes())?);
    }
    // SAFETY: every input buffer holds a value of its node's type and the output buffer (and
    // each side output's) one of its type: what the function was generated to read and write.
    unsafe { device.launch(first_slots(functions)[index] + variant, &args, form.launch) }?;
    device.synchronize()?;
    if let Some(at) = faults {
        check_faults(device, graph, at)?;
    }
    let mut bytes = vec![0u8; out_ty.size_bytes()];
    // SAFETY: the output buffer holds exactly the output type's bytes.
    unsafe { device.download(out, &mut bytes) }?;
    Ok(value_from_bytes(&out_ty, &bytes))
}
