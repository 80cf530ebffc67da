//! Calibration and profiling of the measured cost model ([`kiln_passes::cost_model`]).
//!
//! [`calibrate`] compiles a fixed set of probe graphs (elementwise kernels of every arithmetic
//! kind, reductions, GEMMs by m/n/k, convolutions and their gradients, block copies) at several
//! sizes, times every step of each with [`Executable::profile`] (the median of several runs),
//! describes each step with the model's own feature function
//! ([`kiln_passes::cost_model::group_features`]) and fits each family's nanoseconds per feature
//! by non-negative least squares on relative error. `kiln calibrate` runs it in a few seconds
//! and caches the result for this CPU model.
//!
//! [`profile`] times every step of any compiled graph against the model's prediction, and
//! [`Quality`] summarizes the comparison (rank correlation, totals, largest misses): what
//! `kiln profile` prints and `docs/rewrites.md` reports for every zoo step.

use std::collections::HashMap;

use kiln_ir::{Init, Literal, Value};
use kiln_passes::cost_model::{CostModel, Family, Features, MAX_FEATURES, group_features};
use kiln_passes::fuse::GroupKind;

use crate::{CompileError, Executable, Fusion};

/// One timed step: what it is, its features, and the predicted and measured time.
#[derive(Clone, Debug)]
pub struct StepTime {
    /// The step's index among the executable's groups.
    pub index: usize,
    /// The op at the group's root and its result type, e.g. `matmul f32[32,128]`.
    pub what: String,
    /// The step's features under the cost model.
    pub features: Features,
    /// The model's prediction, in nanoseconds.
    pub predicted_ns: f64,
    /// The median measured time, in nanoseconds.
    pub measured_ns: f64,
}

/// Runs `exe` once to warm up and `runs` times profiled (one thread), and pairs each step's
/// median time with `model`'s prediction. Steps that do no work (a reshape of a buffer) are
/// left out.
pub fn profile(
    exe: &Executable,
    feeds: &HashMap<String, Value>,
    runs: usize,
    model: &CostModel,
) -> Result<Vec<StepTime>, kiln_ir::interp::InterpError> {
    exe.profile(feeds)?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(runs); exe.groups().count()];
    for _ in 0..runs.max(1) {
        for (s, t) in samples.iter_mut().zip(exe.profile(feeds)?) {
            s.push(t.as_secs_f64() * 1e9);
        }
    }
    let g = exe.graph();
    let mut steps = Vec::new();
    for (index, ((group, _), times)) in exe.groups().zip(samples).enumerate() {
        let features = group_features(g, group);
        if features.values.iter().all(|v| *v == 0.0) {
            continue;
        }
        let root = g.node(group.root());
        let what = match group.kind {
            GroupKind::Elementwise if group.members.len() > 1 => {
                format!("kernel of {} ops -> {} {}", group.members.len(), root.op.name(), root.ty)
            }
            _ => format!("{} {}", root.op.name(), root.ty),
        };
        steps.push(StepTime {
            index,
            what,
            features,
            predicted_ns: model.predict_group(g, group),
            measured_ns: median(times),
        });
    }
    Ok(steps)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// How well predictions match measurements over a set of steps.
#[derive(Clone, Debug)]
pub struct Quality {
    /// Steps compared.
    pub steps: usize,
    /// Spearman's rank correlation of predicted and measured time (1: same order).
    pub rank_correlation: f64,
    /// Sum of the predictions, in nanoseconds.
    pub predicted_ns: f64,
    /// Sum of the measurements, in nanoseconds.
    pub measured_ns: f64,
    /// The steps whose prediction is furthest off in time, largest first (at most five).
    pub misses: Vec<StepTime>,
}

impl Quality {
    /// Compares the steps' predictions with their measurements.
    pub fn of(steps: &[StepTime]) -> Self {
        let p: Vec<f64> = steps.iter().map(|s| s.predicted_ns).collect();
        let m: Vec<f64> = steps.iter().map(|s| s.measured_ns).collect();
        let mut misses = steps.to_vec();
        misses
            .sort_by(|a, b| (b.predicted_ns - b.measured_ns).abs().total_cmp(&(a.predicted_ns - a.measured_ns).abs()));
        misses.truncate(5);
        Quality {
            steps: steps.len(),
            rank_correlation: spearman(&p, &m),
            predicted_ns: p.iter().sum(),
            measured_ns: m.iter().sum(),
            misses,
        }
    }
}

/// Ranks (1-based, ties sharing their mean rank).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|a, b| v[*a].total_cmp(&v[*b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        for k in i..=j {
            r[order[k]] = (i + j) as f64 / 2.0 + 1.0;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation of two equally long series (0 when either is constant or the
/// series have fewer than two points).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    if ra.len() < 2 {
        return 0.0;
    }
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma) * (x - ma)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb) * (y - mb)).sum();
    if va == 0.0 || vb == 0.0 { 0.0 } else { cov / (va * vb).sqrt() }
}

/// The probe graphs, as `(name, IR text)`: every kind of step at sizes from in-cache to
/// streaming.
pub fn probes() -> Vec<(String, String)> {
    let mut p = Vec::new();
    // Elementwise kernels: one per arithmetic kind, and chains, from 4 K to 1 M elements.
    for n in [1usize << 12, 1 << 15, 1 << 18, 1 << 20] {
        let t = format!("f32[{n}]");
        let bodies: [(&str, String); 7] = [
            ("add", format!("  %z = add %x, %y : {t}\n")),
            ("fma", format!("  %m = mul %x, %y : {t}\n  %z = add %m, %x : {t}\n")),
            ("chain8", {
                let mut s = format!("  %a0 = add %x, %y : {t}\n");
                for i in 1..8 {
                    s += &format!("  %a{i} = mul %a{}, %x : {t}\n", i - 1);
                }
                s + &format!("  %z = add %a7, %y : {t}\n")
            }),
            ("div", format!("  %z = div %x, %y : {t}\n")),
            ("sqrt2", format!("  %s = sqrt %x : {t}\n  %r = recip %y : {t}\n  %z = add %s, %r : {t}\n")),
            ("exp", format!("  %z = exp %x : {t}\n")),
            ("tanh_log", format!("  %s = tanh %x : {t}\n  %l = log %y : {t}\n  %z = add %s, %l : {t}\n")),
        ];
        for (name, body) in bodies {
            p.push((
                format!("{name} {n}"),
                format!("func @probe(%x: {t}, %y: {t}) -> (z: {t}) {{\n{body}  return %z\n}}\n"),
            ));
        }
        // Reductions over the last axis and over the first.
        let (r, c) = (n / 256, 256);
        p.push((
            format!("sum rows {n}"),
            format!(
                "func @probe(%x: f32[{r},{c}]) -> (z: f32[{r}]) {{\n  %z = reduce_sum %x {{axes=[1]}} : f32[{r}]\n  return %z\n}}\n"
            ),
        ));
        p.push((
            format!("sum columns {n}"),
            format!(
                "func @probe(%x: f32[{r},{c}]) -> (z: f32[{c}]) {{\n  %z = reduce_sum %x {{axes=[0]}} : f32[{c}]\n  return %z\n}}\n"
            ),
        ));
        // Copies: a transpose and a concatenation.
        p.push((
            format!("transpose {n}"),
            format!(
                "func @probe(%x: f32[{r},{c}]) -> (z: f32[{c},{r}]) {{\n  %z = permute %x {{perm=[1,0]}} : f32[{c},{r}]\n  return %z\n}}\n"
            ),
        ));
        p.push((
            format!("concat {n}"),
            format!(
                "func @probe(%x: f32[{r},{c}], %y: f32[{r},{c}]) -> (z: f32[{},{c}]) {{\n  %z = concat %x, %y {{axis=0}} : f32[{},{c}]\n  return %z\n}}\n",
                2 * r,
                2 * r
            ),
        ));
    }
    // Zero pads that place a slice's gradient back into the whole (mostly zeros written).
    for (r, c) in [(32, 128), (256, 128), (1024, 128)] {
        let wide = 4 * c;
        p.push((
            format!("pad {r}x{c} into {r}x{wide}"),
            format!(
                "func @probe(%x: f32[{r},{c}]) -> (z: f32[{r},{wide}]) {{\n  %z = pad %x {{low=[0,{c}], high=[0,{}], value=0.0}} : f32[{r},{wide}]\n  return %z\n}}\n",
                wide - 2 * c
            ),
        ));
    }
    // Pooling: the largest element of every 2×2 window, over a 6-D view.
    for (b, c, h) in [(8, 16, 8), (32, 32, 15)] {
        let x = format!("f32[{b},{c},{h},2,{h},2]");
        p.push((
            format!("pool {b}x{c}x{}x{}", 2 * h, 2 * h),
            format!(
                "func @probe(%x: {x}) -> (z: f32[{b},{c},{h},{h}]) {{\n  %z = reduce_max %x {{axes=[3,5]}} : f32[{b},{c},{h},{h}]\n  return %z\n}}\n"
            ),
        ));
    }
    // Streaming past the caches.
    for n in [1usize << 21, 1 << 22] {
        let t = format!("f32[{n}]");
        p.push((
            format!("add {n}"),
            format!("func @probe(%x: {t}, %y: {t}) -> (z: {t}) {{\n  %z = add %x, %y : {t}\n  return %z\n}}\n"),
        ));
    }
    // Indexing: rows gathered from a table, and their gradient scattered back.
    for (rows, width, picks) in [(1000, 64, 256), (10000, 128, 1024)] {
        p.push((
            format!("gather {picks} of {rows}x{width}"),
            format!(
                "func @probe(%t: f32[{rows},{width}], %i: i32[{picks}], %u: f32[{picks},{width}]) -> (g: f32[{picks},{width}], s: f32[{rows},{width}]) {{\n  %g = gather %t, %i {{axis=0}} : f32[{picks},{width}]\n  %s = scatter_add %u, %i {{axis=0}} : f32[{rows},{width}]\n  return %g, %s\n}}\n"
            ),
        ));
    }
    // GEMMs by m, n, k.
    for (m, n, k) in [
        (8, 64, 64),
        (32, 32, 32),
        (32, 128, 64),
        (32, 512, 128),
        (64, 64, 512),
        (128, 128, 128),
        (256, 64, 256),
        (256, 256, 256),
        (512, 512, 64),
        (1024, 32, 32),
    ] {
        p.push((
            format!("matmul {m}x{n}x{k}"),
            format!(
                "func @probe(%a: f32[{m},{k}], %b: f32[{k},{n}]) -> (z: f32[{m},{n}]) {{\n  %z = matmul %a, %b : f32[{m},{n}]\n  return %z\n}}\n"
            ),
        ));
    }
    // Convolutions: forward, input gradient and weight gradient.
    for (b, c, o, h, k, pad) in [
        (8, 1, 6, 28, 5, 2),
        (8, 6, 16, 14, 5, 0),
        (8, 16, 32, 16, 3, 1),
        (4, 32, 32, 8, 3, 1),
        (32, 3, 16, 32, 3, 0),
        (32, 8, 8, 12, 5, 2),
        (32, 32, 64, 15, 3, 0),
    ] {
        let oh = h + 2 * pad - k + 1;
        // Both layouts: channels-first, and channels-last (the activations' axes reordered).
        for (layout, suffix, nhwc) in [("", "", false), (", layout=nhwc", " nhwc", true)] {
            let attrs = format!("{{stride=[1,1], padding=[{pad},{pad}], dilation=[1,1], groups=1{layout}}}");
            let act = |ch: usize, side: usize| {
                if nhwc { format!("f32[{b},{side},{side},{ch}]") } else { format!("f32[{b},{ch},{side},{side}]") }
            };
            let (x, w, y) = (act(c, h), format!("f32[{o},{c},{k},{k}]"), act(o, oh));
            p.push((
                format!("conv {b}x{c}x{h}x{h} -> {o} k{k}{suffix}"),
                format!(
                    "func @probe(%x: {x}, %w: {w}, %gy: {y}) -> (y: {y}, gx: {x}, gw: {w}) {{\n  %y = conv2d %x, %w {attrs} : {y}\n  %gx = conv2d_grad_input %gy, %w {attrs} : {x}\n  %gw = conv2d_grad_weight %x, %gy {attrs} : {w}\n  return %y, %gx, %gw\n}}\n"
                ),
            ));
        }
    }
    p
}

/// A calibration: the fitted model and the samples it was fitted to.
#[derive(Clone, Debug)]
pub struct Calibration {
    /// The fitted model.
    pub model: CostModel,
    /// Every timed probe step (predictions under the fitted model).
    pub samples: Vec<(String, StepTime)>,
}

/// Why a calibration failed (a probe that does not compile or run is a compiler bug).
#[derive(Debug, thiserror::Error)]
pub enum CalibrationError {
    /// A probe did not parse or compile.
    #[error("probe `{probe}`: {message}")]
    Probe {
        /// The probe's name.
        probe: String,
        /// What failed.
        message: String,
    },
}

/// Inputs for a probe: every float input uniform in [0.5, 1.5] (positive, away from zero, so
/// logs, divisions and square roots take their ordinary path); integer inputs (indices) 0.
fn probe_feeds(graph: &kiln_ir::Graph) -> HashMap<String, Value> {
    let range = Init::Uniform { low: Literal(0.5), high: Literal(1.5) };
    graph
        .inputs()
        .enumerate()
        .map(|(i, (_, n))| {
            let name = n.op.leaf_name().unwrap_or_default().to_string();
            let v = if n.ty.dtype.is_float() {
                kiln_ir::init::materialize(range, &n.ty, &name, i as u64)
            } else {
                Value::splat(&n.ty, 0.0)
            };
            (name, v)
        })
        .collect()
}

/// Times every probe (`runs` profiled runs each, the median per step) and fits the model.
/// `progress` is called with each probe's name before it runs.
pub fn calibrate(runs: usize, mut progress: impl FnMut(&str)) -> Result<Calibration, CalibrationError> {
    let builtin = CostModel::builtin();
    let mut samples = Vec::new();
    for (name, text) in probes() {
        progress(&name);
        let fail = |message: String| CalibrationError::Probe { probe: name.clone(), message };
        let graph = kiln_ir::parse_graph(&text).map_err(|e| fail(e.to_string()))?;
        // Measured on the JIT's first tier, whose code every graph runs first: a calibration
        // never waits for the C compiler, and its probes never change tier midway.
        let exe = crate::compile_with(&graph, Fusion::Fused, "cse,dce")
            .map_err(|e: CompileError| fail(e.to_string()))?
            .with_tier2(kiln_runtime::tier2::Options::from_env().off());
        let feeds = probe_feeds(exe.graph());
        for step in profile(&exe, &feeds, runs, &builtin).map_err(|e| fail(e.to_string()))? {
            samples.push((name.clone(), step));
        }
    }
    let mut model = fit(samples.iter().map(|(_, s)| (&s.features, s.measured_ns)), &builtin);
    model.source = kiln_passes::cost_model::cpu_model();
    for (_, s) in &mut samples {
        s.predicted_ns = model.predict(&s.features);
    }
    Ok(Calibration { model, samples })
}

/// Fits each family's coefficients to `(features, measured ns)` pairs by non-negative least
/// squares on relative error (each row weighted by its measured time's inverse, so a 1 µs
/// kernel counts as much as a 1 ms GEMM). Features no sample exercises, and families without
/// samples, keep `start`'s values. Deterministic: the same samples give the same model.
pub fn fit<'a>(samples: impl IntoIterator<Item = (&'a Features, f64)>, start: &CostModel) -> CostModel {
    let mut by_family: HashMap<Family, Vec<(&Features, f64)>> = HashMap::new();
    for (f, ns) in samples {
        if ns > 0.0 {
            by_family.entry(f.family).or_default().push((f, ns));
        }
    }
    let mut model = start.clone();
    for (fi, family) in Family::ALL.iter().enumerate() {
        let Some(rows) = by_family.get(family) else { continue };
        let width = family.feature_names().len();
        let mut active: Vec<usize> = (0..width).filter(|j| rows.iter().any(|(f, _)| f.values[*j] != 0.0)).collect();
        loop {
            let coef = weighted_least_squares(rows, &active);
            match coef.iter().enumerate().filter(|(_, c)| **c < 0.0).min_by(|a, b| a.1.total_cmp(b.1)) {
                Some((worst, _)) => {
                    active.remove(worst);
                }
                None => {
                    for j in 0..MAX_FEATURES {
                        if let Some(k) = active.iter().position(|a| *a == j) {
                            model.coefficients[fi][j] = coef[k];
                        } else if j < width && rows.iter().any(|(f, _)| f.values[j] != 0.0) {
                            // Exercised but fitted negative: the data says it costs nothing.
                            model.coefficients[fi][j] = 0.0;
                        }
                    }
                    break;
                }
            }
        }
    }
    model
}

/// Solves `min Σ ((f·c − t) / t)²` over the `active` features (normal equations, a tiny
/// ridge for conditioning).
fn weighted_least_squares(rows: &[(&Features, f64)], active: &[usize]) -> Vec<f64> {
    let k = active.len();
    if k == 0 {
        return Vec::new();
    }
    // Columns are scaled to unit size first: features span twelve orders of magnitude.
    let scale: Vec<f64> = active
        .iter()
        .map(|j| rows.iter().map(|(f, t)| (f.values[*j] / t).powi(2)).sum::<f64>().sqrt().max(1e-300))
        .collect();
    let mut a = vec![vec![0.0; k + 1]; k];
    for (f, t) in rows {
        let x: Vec<f64> = active.iter().zip(&scale).map(|(j, s)| f.values[*j] / t / s).collect();
        for r in 0..k {
            for c in 0..k {
                a[r][c] += x[r] * x[c];
            }
            a[r][k] += x[r];
        }
    }
    for (r, row) in a.iter_mut().enumerate() {
        row[r] += 1e-9;
    }
    // Gaussian elimination with partial pivoting.
    for col in 0..k {
        let pivot = (col..k).max_by(|x, y| a[*x][col].abs().total_cmp(&a[*y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        let p = a[col][col];
        if p.abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[col].clone();
        for (r, row) in a.iter_mut().enumerate() {
            if r != col {
                let factor = row[col] / p;
                for (x, y) in row.iter_mut().zip(&pivot_row).skip(col) {
                    *x -= factor * y;
                }
            }
        }
    }
    (0..k).map(|r| if a[r][r].abs() < 1e-300 { 0.0 } else { a[r][k] / a[r][r] / scale[r] }).collect()
}
