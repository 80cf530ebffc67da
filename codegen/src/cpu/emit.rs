//! Defining kernels in a Cranelift module: the function signature, the loop nest over the
//! iteration space (its outermost axis restricted to a range), reduction initialization, and
//! the vector loop's dispatch; one emitter for the JIT's memory and for object files.

use super::*;

/// Emits kernels into a Cranelift module: the JIT's memory ([`CpuJit`]) or an object file
/// ([`crate::aot::ObjectKernels`]). The same code either way.
pub(crate) struct KernelEmitter<M: Module> {
    pub(crate) module: M,
    /// The target has fused multiply-add (`fma` lowers to one instruction, not a libcall).
    pub(crate) has_fma: bool,
    pub(super) ctx: cranelift_codegen::Context,
    pub(super) fctx: FunctionBuilderContext,
    pub(super) imports: HashMap<&'static str, FuncId>,
    pub(super) disasm: bool,
}

/// A kernel defined in a module.
pub(crate) struct Defined {
    pub(crate) id: FuncId,
    pub(crate) clif: String,
    pub(crate) asm: Option<String>,
    pub(crate) vectorized: bool,
}

pub(super) fn cl_type(d: DType) -> Type {
    match d {
        DType::F32 => types::F32,
        DType::F64 => types::F64,
        DType::I32 => types::I32,
        DType::I64 => types::I64,
        DType::Bool => types::I8,
    }
}

impl<M: Module> KernelEmitter<M> {
    /// An emitter into `module`, for a target with (or without) FMA.
    pub(crate) fn new(module: M, has_fma: bool) -> Self {
        KernelEmitter {
            ctx: module.make_context(),
            module,
            has_fma,
            fctx: FunctionBuilderContext::new(),
            imports: HashMap::new(),
            disasm: false,
        }
    }

    /// The math functions ([`MATH_SYMBOLS`]) the kernels defined so far call, sorted.
    pub(crate) fn imported(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.imports.keys().copied().collect();
        names.sort_unstable();
        names
    }

    pub(super) fn import(&mut self, name: &'static str, ty: Type, arity: usize) -> Result<FuncId, CodegenError> {
        if let Some(id) = self.imports.get(name) {
            return Ok(*id);
        }
        let mut sig = self.module.make_signature();
        for _ in 0..arity {
            sig.params.push(AbiParam::new(ty));
        }
        sig.returns.push(AbiParam::new(ty));
        let id = self
            .module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| CodegenError::Module { kernel: name.into(), message: e.to_string() })?;
        self.imports.insert(name, id);
        Ok(id)
    }

    /// Defines `kernel` as the function `name` with `linkage`.
    pub(crate) fn define(&mut self, kernel: &Kernel, name: &str, linkage: Linkage) -> Result<Defined, CodegenError> {
        let err = |m: String| CodegenError::Module { kernel: kernel.name.clone(), message: m };
        // The libm functions a body calls, declared before building. A vectorized `f32` kernel
        // computes `exp`, `log` and `tanh` inline (lanes and tail alike), so it calls none of
        // them; `sin` and `cos` keep libm for large arguments.
        let vector = vectorizable(kernel);
        let mut calls: HashMap<(&'static str, DType), FuncId> = HashMap::new();
        for (inst, dt) in &kernel.body {
            if vector && matches!(inst, Inst::Unary(UnaryOp::Exp | UnaryOp::Log | UnaryOp::Tanh, _)) {
                continue;
            }
            let Some(name) = libm_of(inst) else { continue };
            let math = math_fn(name, *dt).ok_or_else(|| CodegenError::Module {
                kernel: kernel.name.clone(),
                message: format!("no math function `{name}` for {dt}"),
            })?;
            let id = self.import(math.symbol, cl_type(*dt), math.arity)?;
            calls.insert((name, *dt), id);
        }

        let ptr = self.module.target_config().pointer_type();
        self.module.clear_context(&mut self.ctx);
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.params.push(AbiParam::new(ptr));
        self.ctx.func.signature.params.push(AbiParam::new(types::I64));
        self.ctx.func.signature.params.push(AbiParam::new(types::I64));
        let mut refs = HashMap::new();
        for (k, id) in &calls {
            refs.insert(*k, self.module.declare_func_in_func(*id, &mut self.ctx.func));
        }
        let dims = kernel.space.clone();
        let rank = dims.len();
        {
            let mut b = FunctionBuilder::new(&mut self.ctx.func, &mut self.fctx);
            let entry = b.create_block();
            b.append_block_params_for_function_params(entry);
            b.switch_to_block(entry);
            let (inputs_ptr, out_ptr) = (b.block_params(entry)[0], b.block_params(entry)[1]);
            // The outer axis runs over lo..hi (a thread's share); the others over their extent.
            let (lo, hi) = (b.block_params(entry)[2], b.block_params(entry)[3]);
            // Each input's base pointer, moved to the element its index 0 reads.
            let bases: Vec<Value> = kernel
                .inputs
                .iter()
                .enumerate()
                .map(|(k, input)| {
                    let p = b.ins().load(ptr, MemFlagsData::trusted(), inputs_ptr, (k * ptr.bytes() as usize) as i32);
                    match input.offset * input.dtype.size_bytes() as i64 {
                        0 => p,
                        bytes => b.ins().iadd_imm_s(p, bytes),
                    }
                })
                .collect();
            // Side outputs' buffers follow the inputs' in the pointer array.
            let side_ptrs: Vec<Value> = (0..kernel.side_outputs.len())
                .map(|j| {
                    let at = (kernel.inputs.len() + j) * ptr.bytes() as usize;
                    b.ins().load(ptr, MemFlagsData::trusted(), inputs_ptr, at as i32)
                })
                .collect();
            let consts = hoist_constants(&mut b, kernel, vector, vector);
            let em = Emitter {
                kernel,
                refs: &refs,
                bases: &bases,
                out_ptr,
                side_ptrs: &side_ptrs,
                inline_math: vector,
                fma: self.has_fma,
                consts,
            };
            let idx: Vec<Variable> = (0..rank).map(|_| b.declare_var(types::I64)).collect();
            let done = b.create_block();
            if let Some((op, _)) = &kernel.reduce {
                init_reduction(&mut b, kernel, *op, out_ptr, (lo, hi));
            }
            if let Some(window) = kernel.window_axes() {
                // Pooling and column sums: the output row in registers across the window.
                em.window_nest(&mut b, &idx, window, (lo, hi), vector);
                b.ins().jump(done, &[]);
            } else if rank == 0 {
                let v = em.compute(&mut b, &[], 1);
                em.store(&mut b, &[], v, 1);
                b.ins().jump(done, &[]);
            } else {
                // Outer loops step by one; the innermost runs 4 lanes at a time when it can,
                // then a scalar tail.
                let headers: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
                let bodies: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
                let exits: Vec<_> = (0..rank).map(|_| b.create_block()).collect();
                b.def_var(idx[0], lo);
                let first = if vector && rank == 1 { None } else { Some(headers[0]) };
                let vec_header = b.create_block();
                match first {
                    Some(h) => {
                        b.ins().jump(h, &[]);
                    }
                    None => {
                        b.ins().jump(vec_header, &[]);
                    }
                }
                for d in 0..rank {
                    let innermost = d + 1 == rank;
                    b.switch_to_block(headers[d]);
                    let i = b.use_var(idx[d]);
                    let more = if d == 0 {
                        b.ins().icmp(IntCC::SignedLessThan, i, hi)
                    } else {
                        b.ins().icmp_imm_s(IntCC::SignedLessThan, i, dims[d] as i64)
                    };
                    b.ins().brif(more, bodies[d], &[], exits[d], &[]);
                    b.switch_to_block(bodies[d]);
                    if innermost {
                        let index: Vec<Value> = idx.iter().map(|v| b.use_var(*v)).collect();
                        let v = em.compute(&mut b, &index, 1);
                        em.store(&mut b, &index, v, 1);
                        let i = b.use_var(idx[d]);
                        let next = b.ins().iadd_imm_s(i, 1);
                        b.def_var(idx[d], next);
                        b.ins().jump(headers[d], &[]);
                    } else {
                        let zero = b.ins().iconst(types::I64, 0);
                        b.def_var(idx[d + 1], zero);
                        let target = if vector && d + 2 == rank { vec_header } else { headers[d + 1] };
                        b.ins().jump(target, &[]);
                    }
                    b.switch_to_block(exits[d]);
                    if d == 0 {
                        b.ins().jump(done, &[]);
                    } else {
                        let i = b.use_var(idx[d - 1]);
                        let next = b.ins().iadd_imm_s(i, 1);
                        b.def_var(idx[d - 1], next);
                        b.ins().jump(headers[d - 1], &[]);
                    }
                }
                // The vector loop over the innermost axis, falling through to its scalar tail.
                let last = rank - 1;
                b.switch_to_block(vec_header);
                if vector {
                    let end = if last == 0 { hi } else { b.ins().iconst(types::I64, dims[last] as i64) };
                    em.vector_loop(&mut b, &idx, end, headers[last]);
                } else {
                    b.ins().jump(headers[last], &[]);
                }
            }
            b.switch_to_block(done);
            b.ins().return_(&[]);
            b.seal_all_blocks();
            b.finalize(self.module.target_config());
        }
        let clif = self.ctx.func.display().to_string();
        let id =
            self.module.declare_function(name, linkage, &self.ctx.func.signature).map_err(|e| err(e.to_string()))?;
        self.ctx.set_disasm(self.disasm);
        self.module.define_function(id, &mut self.ctx).map_err(|e| err(format!("{e:?}")))?;
        let asm = self.ctx.compiled_code().and_then(|c| c.vcode.clone());
        self.module.clear_context(&mut self.ctx);
        Ok(Defined { id, clif, asm, vectorized: vector })
    }
}

/// Fills a reduction's output with the identity: 0 for sums, −∞ (or the integer minimum) for
/// maxima. A reduction that [splits over its outer axis](Kernel::splits_outer) fills only
/// the outputs of outer indices `lo..hi`, one contiguous block; others fill all of it.
pub(super) fn init_reduction(
    b: &mut FunctionBuilder,
    kernel: &Kernel,
    op: ReduceOp,
    out_ptr: Value,
    range: (Value, Value),
) {
    let n = kernel.out.numel() as i64;
    let dt = kernel.out.dtype;
    let ty = cl_type(dt);
    let identity = match (op, dt) {
        (ReduceOp::Sum, DType::F32) => b.ins().f32const(0.0),
        (ReduceOp::Sum, DType::F64) => b.ins().f64const(0.0),
        (ReduceOp::Max, DType::F32) => b.ins().f32const(f32::NEG_INFINITY),
        (ReduceOp::Max, DType::F64) => b.ins().f64const(f64::NEG_INFINITY),
        (ReduceOp::Sum, _) => b.ins().iconst(ty, 0),
        (ReduceOp::Max, DType::I32) => b.ins().iconst(ty, i64::from(i32::MIN)),
        (ReduceOp::Max, _) => b.ins().iconst(ty, i64::MIN),
    };
    let j = b.declare_var(types::I64);
    let (start, end) = if kernel.splits_outer() {
        let block = kernel.out_strides[0];
        (b.ins().imul_imm_s(range.0, block), b.ins().imul_imm_s(range.1, block))
    } else {
        (b.ins().iconst(types::I64, 0), b.ins().iconst(types::I64, n))
    };
    counted_loop(b, j, (start, end), &mut |b| {
        let jv = b.use_var(j);
        let off = b.ins().imul_imm_s(jv, dt.size_bytes() as i64);
        let addr = b.ins().iadd(out_ptr, off);
        b.ins().store(MemFlagsData::trusted(), identity, addr, 0);
    });
}

/// Emits `for var in from..to { body }` at the current block; the builder is left after it.
pub(super) fn counted_loop(
    b: &mut FunctionBuilder,
    var: Variable,
    (from, to): (Value, Value),
    body: &mut dyn FnMut(&mut FunctionBuilder),
) {
    let (header, block, exit) = (b.create_block(), b.create_block(), b.create_block());
    b.def_var(var, from);
    b.ins().jump(header, &[]);
    b.switch_to_block(header);
    let i = b.use_var(var);
    let more = b.ins().icmp(IntCC::SignedLessThan, i, to);
    b.ins().brif(more, block, &[], exit, &[]);
    b.switch_to_block(block);
    body(b);
    let i = b.use_var(var);
    let next = b.ins().iadd_imm_s(i, 1);
    b.def_var(var, next);
    b.ins().jump(header, &[]);
    b.switch_to_block(exit);
}
