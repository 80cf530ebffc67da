//! Window reductions (pooling's max over a window, a column sum: [`Kernel::window_axes`]) with
//! the row of outputs in registers: for each index of the kept outer axes, the row is read
//! once (it starts at the reduction's identity, or holds what earlier outer indices added),
//! combined with every term of the reduced loops in their order, and written once. Each output
//! element combines the same terms in the same order as the plain nest, which accumulates
//! through memory, so the results are the same bits.

use super::*;

/// Loops over `axes` (outermost first) around `body`: axis 0 over `lo..hi`, the others over
/// their extent.
fn nest(
    b: &mut FunctionBuilder,
    kernel: &Kernel,
    idx: &[Variable],
    axes: &[usize],
    (lo, hi): (Value, Value),
    body: &mut dyn FnMut(&mut FunctionBuilder),
) {
    let Some((&d, rest)) = axes.split_first() else {
        body(b);
        return;
    };
    let bounds = if d == 0 {
        (lo, hi)
    } else {
        (b.ins().iconst(types::I64, 0), b.ins().iconst(types::I64, kernel.space[d] as i64))
    };
    counted_loop(b, idx[d], bounds, &mut |b| nest(b, kernel, idx, rest, (lo, hi), body));
}

impl Emitter<'_> {
    /// The whole loop nest of a window reduction whose reduced axes start at `window` (the
    /// output already holds the identity). A vectorized kernel keeps the row as vectors of
    /// [`LANES`] and its last elements as scalars; others keep every element a scalar.
    pub(super) fn window_nest(
        &self,
        b: &mut FunctionBuilder,
        idx: &[Variable],
        window: usize,
        range: (Value, Value),
        vector: bool,
    ) {
        let k = self.kernel;
        let Some((op, _)) = &k.reduce else { return };
        let inner = k.space.len() - 1;
        let row = k.space[inner];
        let lanes = if vector { usize::from(LANES) } else { 1 };
        // (first element, lanes) of each piece of the row.
        let pieces: Vec<(usize, u8)> = (0..row / lanes)
            .map(|v| (v * lanes, lanes as u8))
            .chain((row / lanes * lanes..row).map(|e| (e, 1)))
            .collect();
        let dt = k.out.dtype;
        let size = dt.size_bytes() as i64;
        let ty = |n: u8| if n > 1 { types::F32X4 } else { cl_type(dt) };
        let outer: Vec<usize> = (0..window).collect();
        let reduced: Vec<usize> = (window..inner).collect();
        nest(b, k, idx, &outer, range, &mut |b| {
            // The reduced axes' indices do not move the output (their strides are 0); they are
            // defined before the loops define them, since every index is read for an offset.
            let zero = b.ins().iconst(types::I64, 0);
            for &d in &reduced {
                b.def_var(idx[d], zero);
            }
            let accs: Vec<(Variable, usize, u8)> = pieces
                .iter()
                .map(|&(at, n)| {
                    let acc = b.declare_var(ty(n));
                    let first = b.ins().iconst(types::I64, at as i64);
                    b.def_var(idx[inner], first);
                    let index: Vec<Value> = idx.iter().map(|v| b.use_var(*v)).collect();
                    let off = Self::offset(b, &index, &k.out_strides, size);
                    let addr = b.ins().iadd(self.out_ptr, off);
                    let v = b.ins().load(ty(n), MemFlagsData::new().with_notrap(), addr, 0);
                    b.def_var(acc, v);
                    (acc, at, n)
                })
                .collect();
            nest(b, k, idx, &reduced, range, &mut |b| {
                for &(acc, at, n) in &accs {
                    let first = b.ins().iconst(types::I64, at as i64);
                    b.def_var(idx[inner], first);
                    let index: Vec<Value> = idx.iter().map(|v| b.use_var(*v)).collect();
                    let value = self.compute(b, &index, n);
                    let sum = b.use_var(acc);
                    let next = combine(b, *op, dt, sum, value);
                    b.def_var(acc, next);
                }
            });
            for &(acc, at, n) in &accs {
                let first = b.ins().iconst(types::I64, at as i64);
                b.def_var(idx[inner], first);
                let index: Vec<Value> = idx.iter().map(|v| b.use_var(*v)).collect();
                let off = Self::offset(b, &index, &k.out_strides, size);
                let addr = b.ins().iadd(self.out_ptr, off);
                let v = b.use_var(acc);
                let flags = if n > 1 { MemFlagsData::new().with_notrap() } else { MemFlagsData::trusted() };
                b.ins().store(flags, v, addr, 0);
            }
        });
    }
}
