//! Matrix products as CUDA C: one thread per output element, or the tiled GEMM loop
//! (shared-memory operand slices, register patches, any operand strides) with an elementwise
//! epilogue fused into its store; the forms the launch side measures.

use super::*;

/// Element strides of a matrix operand over its buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    /// Between rows.
    pub row: i64,
    /// Between columns.
    pub col: i64,
    /// Between batch entries.
    pub batch: i64,
}

/// A matrix product as the kernel `symbol(a, b, out)` reading its operands at strides
/// `a` and `b` (a transpose folded into the product reads its source in place, as the CPU's
/// GEMM does) and writing the row-major product. One thread per output element sums over the
/// contracted axis in order.
pub fn render_matmul(
    symbol: &str,
    dtype: DType,
    shape: MatmulShape,
    a: Strides,
    b: Strides,
    epilogue: Option<(&Kernel, usize)>,
) -> String {
    let t = c_type(dtype);
    let mut c = product_head(symbol, "matmul", "", dtype, shape, a, b, epilogue);
    let MatmulShape { batch, m, n, k } = shape;
    c.push_str(&grid_loop(batch * m * n));
    let _ = writeln!(c, "        const idx_t bb = t / {}, i = (t / {n}) % {m}, j = t % {n};", m * n);
    let _ = writeln!(c, "        const {t} *a = ga + bb * {} + i * {};", a.batch, a.row);
    let _ = writeln!(c, "        const {t} *w = gb + bb * {} + j * {};", b.batch, b.col);
    let _ = writeln!(c, "        {t} acc = {};", literal(0.0, dtype));
    let (ac, br) = (a.col, b.row);
    if dtype.is_float() {
        let _ = writeln!(c, "        for (idx_t p = 0; p < {k}; p++) acc += a[p * {ac}] * w[p * {br}];");
    } else {
        // Integers wrap: multiply and add in the unsigned type of their width.
        let w = wrap_type(dtype);
        let _ = writeln!(
            c,
            "        for (idx_t p = 0; p < {k}; p++) acc = ({t})(({w})acc + ({w})a[p * {ac}] * ({w})w[p * {br}]);"
        );
    }
    c.push_str(&product_store(shape, epilogue, "acc", "        "));
    c.push_str("    }\n}\n");
    c
}

/// The parameters of a product function: `ga`, `gb`, an epilogue's inputs but the product as
/// `in{i}`, then `out`.
pub(super) fn product_params(t: &str, epilogue: Option<(&Kernel, usize)>) -> Vec<String> {
    let mut params = vec![format!("const {t} *__restrict__ ga"), format!("const {t} *__restrict__ gb")];
    match epilogue {
        Some((e, product)) => {
            for (i, input) in e.inputs.iter().enumerate() {
                if i != product {
                    params.push(format!("const {} *__restrict__ in{i}", c_type(input.dtype)));
                }
            }
            params.push(format!("{} *__restrict__ out", c_type(e.out.dtype)));
        }
        None => params.push(format!("{t} *__restrict__ out")),
    }
    params
}

/// A product function's opening: a comment with its extents, `detail`, its fused epilogue and
/// its operands' strides; its signature ([`product_params`]); its index type.
#[allow(clippy::too_many_arguments)]
pub(super) fn product_head(
    symbol: &str,
    what: &str,
    detail: &str,
    dtype: DType,
    shape: MatmulShape,
    a: Strides,
    b: Strides,
    epilogue: Option<(&Kernel, usize)>,
) -> String {
    let MatmulShape { batch, m, n, k } = shape;
    let note = epilogue.map_or_else(String::new, |(e, _)| format!(", epilogue {} fused", e.name));
    let mut c = format!(
        "/* {what} [{batch}, {m}, {k}] x [{batch}, {k}, {n}]{detail}{note}; (row, column, batch) strides: A ({}, {}, {}), B ({}, {}, {}) */\n",
        a.row, a.col, a.batch, b.row, b.col, b.batch
    );
    let params = product_params(c_type(dtype), epilogue);
    let _ = writeln!(c, "extern \"C\" __global__ void {symbol}({}) {{", params.join(", "));
    let epilogue_bound = epilogue.map_or(0, |(e, _)| kernel_bound(e));
    c.push_str(&index_typedef(matmul_bound(shape, a, b).max(epilogue_bound)));
    c
}

/// Stores product element (`bb`, `i`, `j`) held in `value`: as it is, or through `epilogue`
/// (its index variables set from the element's position, the product read from `pv`).
pub(super) fn product_store(
    shape: MatmulShape,
    epilogue: Option<(&Kernel, usize)>,
    value: &str,
    indent: &str,
) -> String {
    let MatmulShape { m, n, .. } = shape;
    let mut c = String::new();
    match epilogue {
        None => {
            let _ = writeln!(c, "{indent}out[bb * {} + i * {n} + j] = {value};", m * n);
        }
        Some((e, product)) => {
            // The epilogue's index variables: the batch axes from `bb`, then the row and column.
            let r = e.space.len();
            let batch_axes: Vec<(usize, usize)> = (0..r - 2).map(|d| (d, e.space[d])).collect();
            if !batch_axes.is_empty() {
                c.push_str(&split_var("bb", &batch_axes, indent));
            }
            let _ = writeln!(c, "{indent}const idx_t i{} = i, i{} = j;", r - 2, r - 1);
            let _ = writeln!(c, "{indent}const {} pv = {value};", c_type(e.inputs[product].dtype));
            body(&mut c, e, indent, Some(product));
            let all: Vec<usize> = (0..r).collect();
            let _ = writeln!(c, "{indent}out[{}] = v{};", out_index(e, &all), e.body.len().saturating_sub(1));
        }
    }
    c
}

/// Which input of `epilogue` is the product a GEMM can hand it in a register: the epilogue is
/// elementwise over exactly the product's extents and reads the product only at the element
/// it writes. `None` when it cannot be fused that way.
pub fn fusable_epilogue(epilogue: &Kernel, product: kiln_ir::NodeId, dims: &[usize]) -> Option<usize> {
    if epilogue.reduce.is_some() || epilogue.space != dims {
        return None;
    }
    // Axes of extent 1 may carry any stride: they are always read at index 0.
    let row_major = contiguous_strides(dims);
    let same = |s: &[i64]| s.iter().zip(&row_major).enumerate().all(|(d, (a, b))| a == b || dims[d] == 1);
    let reads: Vec<usize> = (0..epilogue.inputs.len()).filter(|&i| epilogue.inputs[i].node == product).collect();
    match reads[..] {
        [p] if epilogue.inputs[p].offset == 0 && same(&epilogue.inputs[p].strides) && same(&epilogue.out_strides) => {
            Some(p)
        }
        _ => None,
    }
}

/// Products with fewer rows or columns than this run a thread per output element by default;
/// others are tiled ([`product_forms`]).
pub const TILED_MIN: usize = 16;

/// A way of computing a float matrix product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductForm {
    /// One thread per output element ([`render_matmul`]).
    Threads,
    /// Square output tiles of this width (32 or 64) per block ([`render_gemm`]).
    Tiled(usize),
}

impl ProductForm {
    /// Its name in dumps and measurements (`threads`, `32x32 tiles`).
    pub fn name(self) -> String {
        match self {
            ProductForm::Threads => "threads".into(),
            ProductForm::Tiled(t) => format!("{t}x{t} tiles"),
        }
    }

    /// A short tag for symbols (`threads`, `t32`).
    pub fn tag(self) -> String {
        match self {
            ProductForm::Threads => "threads".into(),
            ProductForm::Tiled(t) => format!("t{t}"),
        }
    }
}

/// Every form worth measuring for a product of `shape`, the default first: a thread per
/// output element for fewer than [`TILED_MIN`] rows or columns, else 64 × 64 tiles when there
/// are at least 128 of them (enough to fill a GPU), else 32 × 32. The others follow, to be
/// chosen among by measurement on the device (`kiln_runtime::gpu::GpuExecutable::tune`).
pub fn product_forms(shape: MatmulShape) -> Vec<ProductForm> {
    let MatmulShape { batch, m, n, .. } = shape;
    let tiles = |tile: usize| batch * m.div_ceil(tile) * n.div_ceil(tile);
    let tiled = if tiles(64) >= 128 { 64 } else { 32 };
    let first = if m < TILED_MIN || n < TILED_MIN { ProductForm::Threads } else { ProductForm::Tiled(tiled) };
    let all = [ProductForm::Threads, ProductForm::Tiled(tiled), ProductForm::Tiled(96 - tiled)];
    std::iter::once(first).chain(all.into_iter().filter(|f| *f != first)).collect()
}

/// The product `shape` (operands at strides `a`, `b`, an optional fused epilogue as in
/// [`render_gemm`]) in `form`, as the function `symbol`, with its launch.
pub fn render_product(
    symbol: &str,
    dtype: DType,
    shape: MatmulShape,
    (a, b): (Strides, Strides),
    epilogue: Option<(&Kernel, usize)>,
    form: ProductForm,
) -> (String, Launch) {
    match form {
        ProductForm::Threads => {
            (render_matmul(symbol, dtype, shape, a, b, epilogue), Launch::Elements(shape.batch * shape.m * shape.n))
        }
        ProductForm::Tiled(tile) => render_gemm(symbol, dtype, shape, a, b, epilogue, tile),
    }
}

/// A tiled matrix product `[batch, m, k] × [batch, k, n]` as the cooperative kernel `symbol`:
/// each block of [`BLOCK_THREADS`] threads computes `tile` × `tile` output tiles (32 or 64),
/// staging 16-deep slices of both operands in shared memory, each thread accumulating a
/// 4 × 4 (or 2 × 2) patch in registers. Operands
/// are read at strides `a` and `b` (transposes in place). With `epilogue` (a kernel and the
/// input of it that is the product, see [`fusable_epilogue`]), each product element goes
/// through the epilogue in registers before it is stored: the function takes `ga`, `gb`, the
/// epilogue's other inputs as `in{i}`, then `out`; without, `ga`, `gb`, `out`.
pub fn render_gemm(
    symbol: &str,
    dtype: DType,
    shape: MatmulShape,
    a: Strides,
    b: Strides,
    epilogue: Option<(&Kernel, usize)>,
    tile: usize,
) -> (String, Launch) {
    let mut c = product_head(symbol, "gemm", &format!(", {tile}x{tile} tiles"), dtype, shape, a, b, epilogue);
    let t = c_type(dtype);
    let setup =
        format!("        const {t} *a = ga + bb * {};\n        const {t} *w = gb + bb * {};\n", a.batch, b.batch);
    let load_a = |i: &str, q: &str| format!("a[{i} * {} + {q} * {}]", a.row, a.col);
    let load_b = |j: &str, q: &str| format!("w[{j} * {} + {q} * {}]", b.col, b.row);
    let store = |value: &str, indent: &str| product_store(shape, epilogue, value, indent);
    let io = TileIo {
        setup,
        load_a: &load_a,
        a_along_tile: a.row == 1 || a.col != 1,
        load_b: &load_b,
        b_along_tile: b.col == 1 || b.row != 1,
        store: &store,
    };
    let launch = tiled_loop(&mut c, dtype, shape, tile, &io);
    c.push_str("}\n");
    (c, launch)
}

/// The C expression of an operand's element at the index variables named by its arguments
/// (along the tile, then along the depth).
pub(super) type ElementAt<'a> = dyn Fn(&str, &str) -> String + 'a;

/// How a tiled product ([`tiled_loop`]) reads its operands and stores its elements, as C
/// fragments.
pub(super) struct TileIo<'a> {
    /// Statements run for each work unit once its batch entry `bb` is known (operand bases,
    /// helpers).
    pub(super) setup: String,
    /// Operand A's element at row `i`, depth `q` (the names of those index variables).
    pub(super) load_a: &'a ElementAt<'a>,
    /// Whether consecutive threads stage consecutive rows of A (else consecutive depths):
    /// whichever is contiguous in memory.
    pub(super) a_along_tile: bool,
    /// Operand B's element at column `j`, depth `q`.
    pub(super) load_b: &'a ElementAt<'a>,
    /// Whether consecutive threads stage consecutive columns of B (else depths).
    pub(super) b_along_tile: bool,
    /// The statements storing `value` as element (`bb`, `i`, `j`), at an indent.
    pub(super) store: &'a dyn Fn(&str, &str) -> String,
}

/// The body of a tiled product `[batch, m, k] × [batch, k, n]` (after its signature and index
/// type, up to the function's closing brace): each block of [`BLOCK_THREADS`] threads computes `tile` × `tile` output tiles,
/// staging [`SLICE_DEPTH`]-deep slices of both operands in shared memory, each thread
/// accumulating a patch in registers; `io` says how operands are read and elements stored.
pub(super) fn tiled_loop(c: &mut String, dtype: DType, shape: MatmulShape, tile: usize, io: &TileIo) -> Launch {
    assert!(tile == 32 || tile == 64, "tiles are 32 or 64 wide");
    let t = c_type(dtype);
    let MatmulShape { batch, m, n, k } = shape;
    let (mt, nt) = (m.div_ceil(tile), n.div_ceil(tile));
    let units = batch * mt * nt;
    let micro = tile / 16;
    let zero = literal(0.0, dtype);
    let _ = writeln!(c, "    __shared__ __align__(16) {t} as_[{SLICE_DEPTH}][{tile}];");
    let _ = writeln!(c, "    __shared__ __align__(16) {t} bs_[{SLICE_DEPTH}][{tile}];");
    c.push_str("    const int tr = threadIdx.x / 16, tc = threadIdx.x % 16;\n");
    let _ = writeln!(c, "    for (idx_t u = blockIdx.x; u < {units}; u += gridDim.x) {{");
    let _ = writeln!(
        c,
        "        const idx_t bb = u / {}, r0 = ((u / {nt}) % {mt}) * {tile}, c0 = (u % {nt}) * {tile};",
        mt * nt
    );
    c.push_str(&io.setup);
    let _ = writeln!(c, "        {t} acc[{micro}][{micro}];");
    let _ =
        writeln!(c, "        for (int x = 0; x < {micro}; x++) for (int y = 0; y < {micro}; y++) acc[x][y] = {zero};");
    let _ = writeln!(c, "        for (idx_t k0 = 0; k0 < {k}; k0 += {SLICE_DEPTH}) {{");
    c.push_str(&stage_slice("as_", ("x", "i", "r0", m), (io.load_a, io.a_along_tile), k, tile, &zero));
    c.push_str(&stage_slice("bs_", ("y", "j", "c0", n), (io.load_b, io.b_along_tile), k, tile, &zero));
    c.push_str("            __syncthreads();\n");
    let _ = writeln!(c, "            for (int p = 0; p < {SLICE_DEPTH}; p++) {{");
    let _ = writeln!(c, "                {t} av[{micro}], bv[{micro}];");
    // A thread's patch of each slice row is contiguous and aligned: f32 reads it with one
    // vector load (float4 or float2) instead of `micro` scalar ones.
    let vector = match (dtype, micro) {
        (DType::F32, 4) => Some(("float4", ["x", "y", "z", "w"].as_slice())),
        (DType::F32, 2) => Some(("float2", ["x", "y"].as_slice())),
        _ => None,
    };
    for (name, array, index) in [("av", "as_", "tr"), ("bv", "bs_", "tc")] {
        match vector {
            Some((v, lanes)) => {
                let _ = writeln!(
                    c,
                    "                {{ const {v} l = *reinterpret_cast<const {v} *>(&{array}[p][{index} * {micro}]); {} }}",
                    lanes
                        .iter()
                        .enumerate()
                        .map(|(i, f)| format!("{name}[{i}] = l.{f};"))
                        .collect::<Vec<_>>()
                        .join(" ")
                );
            }
            None => {
                let _ = writeln!(
                    c,
                    "                for (int x = 0; x < {micro}; x++) {name}[x] = {array}[p][{index} * {micro} + x];"
                );
            }
        }
    }
    let _ = writeln!(
        c,
        "                for (int x = 0; x < {micro}; x++) for (int y = 0; y < {micro}; y++) acc[x][y] += av[x] * bv[y];"
    );
    c.push_str("            }\n            __syncthreads();\n        }\n");
    let _ = writeln!(c, "        for (int x = 0; x < {micro}; x++) for (int y = 0; y < {micro}; y++) {{");
    let _ = writeln!(c, "            const idx_t i = r0 + tr * {micro} + x, j = c0 + tc * {micro} + y;");
    let _ = writeln!(c, "            if (i >= {m} || j >= {n}) continue;");
    c.push_str(&(io.store)("acc[x][y]", "            "));
    c.push_str("        }\n    }\n");
    tiled_launch(shape, tile)
}

/// How a tiled product of `shape` in `tile`-wide tiles is launched: a block of
/// [`BLOCK_THREADS`] per output tile (blocks stride over the tiles).
pub(super) fn tiled_launch(shape: MatmulShape, tile: usize) -> Launch {
    let units = shape.batch * shape.m.div_ceil(tile) * shape.n.div_ceil(tile);
    Launch::Blocks { units, threads: BLOCK_THREADS }
}

/// The loop staging one 16-deep slice of a product operand in shared memory: `array[p][x] =
/// load(origin + x, k0 + p)`, zero past the operand's edge. `tile` is `(x, its global name,
/// origin, extent)` along the tile; consecutive threads take consecutive elements along the
/// tile axis when `along_tile`, else along the depth (whichever is contiguous in memory).
pub(super) fn stage_slice(
    array: &str,
    tile_axis: (&str, &str, &str, usize),
    (load, along_tile): (&ElementAt<'_>, bool),
    k: usize,
    tile: usize,
    zero: &str,
) -> String {
    let (x, i, origin, extent) = tile_axis;
    let (fx, fp) = if along_tile {
        (format!("e % {tile}"), format!("e / {tile}"))
    } else {
        (format!("e / {SLICE_DEPTH}"), format!("e % {SLICE_DEPTH}"))
    };
    let mut c = format!("            for (int e = threadIdx.x; e < {}; e += blockDim.x) {{\n", tile * SLICE_DEPTH);
    let _ = writeln!(c, "                const int {x} = {fx}, p = {fp};");
    let _ = writeln!(c, "                const idx_t {i} = {origin} + {x}, q = k0 + p;");
    let _ = writeln!(c, "                {array}[p][{x}] = ({i} < {extent} && q < {k}) ? {} : {zero};", load(i, "q"));
    c.push_str("            }\n");
    c
}

/// The furthest index a product computes with: both operands' strided reach and the output.
pub(super) fn matmul_bound(s: MatmulShape, a: Strides, b: Strides) -> u128 {
    let a_reach = reach(0, &[s.batch, s.m, s.k], &[a.batch, a.row, a.col]);
    let b_reach = reach(0, &[s.batch, s.k, s.n], &[b.batch, b.row, b.col]);
    a_reach.max(b_reach).max((s.batch * s.m * s.n) as u128 + 1)
}
