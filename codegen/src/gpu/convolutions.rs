//! Convolutions and their gradients as CUDA C: direct sums (a thread, or a block, per output
//! element) and implicit GEMMs through the tiled loop of `products`.

use super::*;

/// The product a `conv2d` node computes as an implicit GEMM: per group, its output channels ×
/// its patch size (`cg·kh·kw`) times the patch size × every output position of every image.
/// `None` for other nodes.
pub(super) fn conv_gemm_shape(graph: &Graph, id: NodeId) -> Option<MatmulShape> {
    let node = graph.node(id);
    let (kind, a) = node.op.conv()?;
    let groups = a.groups.max(1);
    let w = graph.ty(node.args[1]).dims();
    let (og, cg, taps) = (w[0] / groups, w[1], w[2] * w[3]);
    let out = graph.ty(id).dims();
    let positions = out[0] * out[2] * out[3];
    match kind {
        // y[n, g·og + i, ·] = Σ over (ci, ky, kx) of w · x's patch.
        ConvKind::Forward => Some(MatmulShape { batch: groups, m: og, n: positions, k: cg * taps }),
        // dx[n, g·cg + i, ·] = Σ over (o, ky, kx) of w · dy's transposed patch.
        ConvKind::GradInput => Some(MatmulShape { batch: groups, m: cg, n: positions, k: og * taps }),
        ConvKind::GradWeight => None,
    }
}

/// The body of `conv2d` or its input gradient (`op`) as an implicit GEMM in `tile`-wide tiles
/// (after its signature and index type), per group `g` (the batch entry `bb`):
/// - `conv2d`: `y[n, g·og + i, oy, ox] = Σ_q w[g·og + i, q] · patch[q, (n, oy, ox)]` with
///   `q = (ci, ky, kx)`; `xb` gathers each patch element from `x` (zero in the padding);
/// - the input gradient: `dx[n, g·cg + i, iy, ix] = Σ_q w[g·og + o, i, ky, kx] · dy[n, g·og
///   + o, oy, ox]` with `q = (o, ky, kx)` and `(oy, ox)` the output position whose tap reads
///   `(iy, ix)` (zero where none does); `wa` and `yb` read both operands in place.
///
/// Patches are never stored: each element is gathered as its tile is staged. `shape` is
/// [`conv_gemm_shape`]'s; `x`, `w` and `y` are the input, weight and output extents.
pub(super) fn conv_gemm(
    c: &mut String,
    kind: ConvKind,
    a: &ConvAttrs,
    shape: MatmulShape,
    dims: [&[usize]; 3],
    tile: usize,
    dtype: DType,
) {
    let [x, w, y] = dims;
    let t = c_type(dtype);
    let (ch, h, wd) = (x[1], x[2], x[3]);
    let (o, cg, kh, kw) = (w[0], w[1], w[2], w[3]);
    let (oh, ow) = (y[2], y[3]);
    let og = o / shape.batch;
    let (k, taps) = (shape.k, kh * kw);
    let ([sh, sw], [ph, pw], [dh, dw]) = (a.stride, a.padding, a.dilation);
    let zero = literal(0.0, dtype);
    let (m, n) = (shape.m, shape.n);
    let _ = writeln!(c, "    /* implicit GEMM: [{}, {m}, {k}] x [{}, {k}, {n}] */", shape.batch, shape.batch);
    let mut setup = String::new();
    // B's element (q, j): q a tap (channel, ky, kx), j an output position (image, row,
    // column) of the product, decomposed by its gather lambda `name` before `rest`.
    let patch = |setup: &mut String,
                 name: &str,
                 channel: &str,
                 (row, col, height, width): (&str, &str, usize, usize)| {
        let _ = writeln!(setup, "        auto {name} = [&](idx_t q, idx_t j) -> {t} {{");
        let _ =
            writeln!(setup, "            const idx_t {channel} = q / {taps}, ky = (q / {kw}) % {kh}, kx = q % {kw};");
        let _ = writeln!(
            setup,
            "            const idx_t nn = j / {}, {row} = (j / {width}) % {height}, {col} = j % {width};",
            height * width
        );
    };
    // The product's rows are output channels bb·m + i of `channels`, its columns positions.
    let (load_a, a_along_tile, load_b, channels, plane): (Box<ElementAt>, bool, Box<ElementAt>, usize, usize);
    if kind == ConvKind::Forward {
        let _ = writeln!(setup, "        const {t} *a = in1 + bb * {};", og * k);
        patch(&mut setup, "xb", "ci", ("oy", "ox", oh, ow));
        let _ = writeln!(
            setup,
            "            const idx_t iy = oy * {sh} + ky * {dh} - {ph}, ix = ox * {sw} + kx * {dw} - {pw};"
        );
        let _ = writeln!(
            setup,
            "            return (iy >= 0 && iy < {h} && ix >= 0 && ix < {wd}) ? in0[((nn * {ch} + bb * {cg} + ci) * {h} + iy) * {wd} + ix] : {zero};"
        );
        load_a = Box::new(move |i: &str, q: &str| format!("a[{i} * {k} + {q}]"));
        a_along_tile = k == 1;
        load_b = Box::new(|j: &str, q: &str| format!("xb({q}, {j})"));
        (channels, plane) = (o, oh * ow);
    } else {
        let _ = writeln!(setup, "        auto wa = [&](idx_t i, idx_t q) -> {t} {{");
        let _ = writeln!(setup, "            return in1[((bb * {og} + q / {taps}) * {cg} + i) * {taps} + q % {taps}];");
        setup.push_str("        };\n");
        patch(&mut setup, "yb", "oc", ("iy", "ix", h, wd));
        let _ = writeln!(setup, "            const idx_t sy = iy + {ph} - ky * {dh}, sx = ix + {pw} - kx * {dw};");
        let _ = writeln!(
            setup,
            "            if (sy < 0 || sy % {sh} != 0 || sy / {sh} >= {oh} || sx < 0 || sx % {sw} != 0 || sx / {sw} >= {ow}) return {zero};"
        );
        let _ = writeln!(
            setup,
            "            return in0[((nn * {o} + bb * {og} + oc) * {oh} + sy / {sh}) * {ow} + sx / {sw}];"
        );
        load_a = Box::new(|i: &str, q: &str| format!("wa({i}, {q})"));
        a_along_tile = false;
        load_b = Box::new(|j: &str, q: &str| format!("yb({q}, {j})"));
        (channels, plane) = (ch, h * wd);
    }
    setup.push_str("        };\n");
    let store = |value: &str, indent: &str| {
        format!("{indent}out[((j / {plane}) * {channels} + bb * {m} + i) * {plane} + j % {plane}] = {value};\n")
    };
    let io = TileIo { setup, load_a: &*load_a, a_along_tile, load_b: &*load_b, b_along_tile: true, store: &store };
    tiled_loop(c, dtype, shape, tile, &io);
}

/// The grid-stride loop of a convolution (`op`) or one of its gradients over the output
/// elements, as direct sums (`x`, `w`, `y` are the input, weight and output extents); a
/// weight gradient in [`NodeForm::Blocks`] has a block per weight instead.
#[allow(clippy::too_many_arguments)]
pub(super) fn conv_body(
    kind: ConvKind,
    a: &ConvAttrs,
    x: &[usize],
    w: &[usize],
    y: &[usize],
    blocks: bool,
    t: &str,
    zero: &str,
) -> String {
    let (n, ch, h, wd) = (x[0], x[1], x[2], x[3]);
    let (o, cg, kh, kw) = (w[0], w[1], w[2], w[3]);
    let (oh, ow) = (y[2], y[3]);
    let groups = a.groups.max(1);
    let og = o / groups;
    let ([sh, sw], [ph, pw], [dh, dw]) = (a.stride, a.padding, a.dilation);
    let mut c = String::new();
    match kind {
        ConvKind::Forward => {
            c.push_str(&grid_loop(n * o * oh * ow));
            c.push_str(&split_dims(&[n, o, oh, ow], "        "));
            let _ = writeln!(c, "        const idx_t g = i1 / {og};");
            let _ = writeln!(c, "        {t} acc = {zero};");
            let _ = writeln!(c, "        for (idx_t ci = 0; ci < {cg}; ci++)");
            let _ = writeln!(c, "            for (idx_t ky = 0; ky < {kh}; ky++) {{");
            let _ = writeln!(c, "                const idx_t iy = i2 * {sh} + ky * {dh} - {ph};");
            let _ = writeln!(c, "                if (iy < 0 || iy >= {h}) continue;");
            let _ = writeln!(c, "                for (idx_t kx = 0; kx < {kw}; kx++) {{");
            let _ = writeln!(c, "                    const idx_t ix = i3 * {sw} + kx * {dw} - {pw};");
            let _ = writeln!(c, "                    if (ix < 0 || ix >= {wd}) continue;");
            let _ = writeln!(
                c,
                "                    acc += in0[((i0 * {ch} + g * {cg} + ci) * {h} + iy) * {wd} + ix] * in1[((i1 * {cg} + ci) * {kh} + ky) * {kw} + kx];"
            );
            c.push_str("                }\n            }\n        out[t] = acc;\n    }\n");
        }
        ConvKind::GradInput => {
            // dx[n, c, iy, ix] = Σ dy[n, o, oy, ox] · w[o, ci, ky, kx] over the taps that read it.
            c.push_str(&grid_loop(n * ch * h * wd));
            c.push_str(&split_dims(&[n, ch, h, wd], "        "));
            let _ = writeln!(c, "        const idx_t g = i1 / {cg}, ci = i1 % {cg};");
            let _ = writeln!(c, "        {t} acc = {zero};");
            let _ = writeln!(c, "        for (idx_t oc = g * {og}; oc < (g + 1) * {og}; oc++)");
            let _ = writeln!(c, "            for (idx_t ky = 0; ky < {kh}; ky++) {{");
            let _ = writeln!(c, "                const idx_t sy = i2 + {ph} - ky * {dh};");
            let _ = writeln!(c, "                if (sy < 0 || sy % {sh} != 0 || sy / {sh} >= {oh}) continue;");
            let _ = writeln!(c, "                for (idx_t kx = 0; kx < {kw}; kx++) {{");
            let _ = writeln!(c, "                    const idx_t sx = i3 + {pw} - kx * {dw};");
            let _ = writeln!(c, "                    if (sx < 0 || sx % {sw} != 0 || sx / {sw} >= {ow}) continue;");
            let _ = writeln!(
                c,
                "                    acc += in0[((i0 * {o} + oc) * {oh} + sy / {sh}) * {ow} + sx / {sw}] * in1[((oc * {cg} + ci) * {kh} + ky) * {kw} + kx];"
            );
            c.push_str("                }\n            }\n        out[t] = acc;\n    }\n");
        }
        ConvKind::GradWeight => {
            // dw[o, ci, ky, kx] = Σ over images and output positions of x · dy: a thread per
            // weight walking them in order, or a block per weight whose threads stride over them.
            let iy = format!("oy * {sh} + i2 * {dh} - {ph}");
            let ix = format!("ox * {sw} + i3 * {dw} - {pw}");
            let term = format!(
                "acc += in0[((b * {ch} + g * {cg} + i1) * {h} + iy) * {wd} + ix] * in1[((b * {o} + i0) * {oh} + oy) * {ow} + ox];"
            );
            if blocks {
                let _ = writeln!(c, "    __shared__ {t} part[{BLOCK_THREADS}];");
                let _ = writeln!(c, "    for (idx_t t = blockIdx.x; t < {}; t += gridDim.x) {{", o * cg * kh * kw);
            } else {
                c.push_str(&grid_loop(o * cg * kh * kw));
            }
            c.push_str(&split_dims(&[o, cg, kh, kw], "        "));
            let _ = writeln!(c, "        const idx_t g = i0 / {og};");
            let _ = writeln!(c, "        {t} acc = {zero};");
            if blocks {
                let _ = writeln!(c, "        for (idx_t q = threadIdx.x; q < {}; q += blockDim.x) {{", n * oh * ow);
                let _ =
                    writeln!(c, "            const idx_t b = q / {}, oy = (q / {ow}) % {oh}, ox = q % {ow};", oh * ow);
                let _ = writeln!(c, "            const idx_t iy = {iy};");
                let _ = writeln!(c, "            const idx_t ix = {ix};");
                let _ = writeln!(c, "            if (iy < 0 || iy >= {h} || ix < 0 || ix >= {wd}) continue;");
                let _ = writeln!(c, "            {term}");
                c.push_str("        }\n");
                c.push_str(&tree_tail("t", "part[threadIdx.x] + part[threadIdx.x + s]"));
            } else {
                let _ = writeln!(c, "        for (idx_t b = 0; b < {n}; b++)");
                let _ = writeln!(c, "            for (idx_t oy = 0; oy < {oh}; oy++) {{");
                let _ = writeln!(c, "                const idx_t iy = {iy};");
                let _ = writeln!(c, "                if (iy < 0 || iy >= {h}) continue;");
                let _ = writeln!(c, "                for (idx_t ox = 0; ox < {ow}; ox++) {{");
                let _ = writeln!(c, "                    const idx_t ix = {ix};");
                let _ = writeln!(c, "                    if (ix < 0 || ix >= {wd}) continue;");
                let _ = writeln!(c, "                    {term}");
                c.push_str("                }\n            }\n        out[t] = acc;\n    }\n");
            }
        }
    }
    c
}
