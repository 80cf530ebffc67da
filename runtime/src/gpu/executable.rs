//! Running a [`GpuProgram`] on a [`Device`]: buffers allocated once, leaves uploaded when
//! set and kept on the device until replaced, every launch of a run on one stream, outputs
//! downloaded on request. Training swaps a parameter's buffer with its update's, so
//! parameters and optimizer state never leave the device between steps.

use std::collections::HashMap;

use kiln_ir::{Graph, Value};

use super::program::{GpuProgram, GpuStep, Place, Role, program};
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
    /// and allocates every buffer.
    pub fn new(graph: &Graph, mut device: Box<dyn Device>) -> Result<Self, GpuError> {
        let program = program(graph)?;
        let symbols: Vec<String> = program.functions.iter().map(|f| f.symbol.clone()).collect();
        device.load(&program.module, &symbols)?;
        let address = program.buffers.iter().map(|b| device.alloc(b.bytes)).collect::<Result<Vec<_>, _>>()?;
        let leaf_of = program.leaves.iter().enumerate().map(|(i, l)| (l.name.clone(), i)).collect();
        let set = vec![false; program.leaves.len()];
        Ok(GpuExecutable { program, device, address, set, leaf_of })
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
                GpuStep::Launch { function, args, launch } => {
                    ptrs.clear();
                    ptrs.extend(args.iter().map(|p| at(&self.address, p)));
                    // SAFETY: the program places every argument inside its buffer with the
                    // room its node's type needs (buffers were allocated at the plan's sizes).
                    unsafe { self.device.launch(*function, &ptrs, *launch) }?;
                }
                GpuStep::Copy { from, to, bytes } => {
                    // SAFETY: both places hold a value of `bytes` bytes; an output's buffer is
                    // never the source of its own copy.
                    unsafe { self.device.copy(at(&self.address, from), at(&self.address, to), *bytes) }?;
                }
            }
        }
        self.device.synchronize()
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

/// The bytes of `int`s, in the host's order.
fn int_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_ne_bytes()).collect()
}

/// Runs function `index` of `functions` (rendered from `graph`, its module already loaded on
/// `device` with the functions' symbols in order) on `inputs`, the values of its input
/// nodes, and returns its output: for checking one function at a time. Each input must have
/// its node's type.
pub fn call_function(
    device: &mut dyn Device,
    graph: &Graph,
    functions: &[super::GpuFunction],
    index: usize,
    inputs: &[Value],
) -> Result<Value, GpuError> {
    let f = functions.get(index).ok_or(GpuError::NoFunction(index))?;
    if inputs.len() != f.inputs.len() {
        return Err(GpuError::Compile(format!("{} takes {} inputs, got {}", f.symbol, f.inputs.len(), inputs.len())));
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
    let out_ty = graph.ty(f.output).clone();
    let out = device.alloc(out_ty.size_bytes())?;
    args.push(out);
    // SAFETY: every input buffer holds a value of its node's type and the output buffer one of
    // the output's type: what the function was generated to read and write.
    unsafe { device.launch(index, &args, f.launch) }?;
    device.synchronize()?;
    let mut bytes = vec![0u8; out_ty.size_bytes()];
    // SAFETY: the output buffer holds exactly the output type's bytes.
    unsafe { device.download(out, &mut bytes) }?;
    Ok(value_from_bytes(&out_ty, &bytes))
}
