//! Pictures of a run: the loss and held-out score curve (`curve.png`, the loss on a log or
//! linear axis) and grids of images (the GAN's
//! `samples.png`), drawn with plotters and the bundled DejaVu Sans font.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use super::{Metric, Trainer};

/// Errors from drawing.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlotError {
    /// The picture file.
    pub path: String,
    /// What went wrong.
    pub message: String,
}

/// The font every label is drawn with (DejaVu Sans, its licence in `assets/`).
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bundled file is a valid TrueType font; were it not, labels would be skipped.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// How the loss axis is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Evenly spaced values.
    Linear,
    /// Evenly spaced powers of ten, so the late steps of a run are not squashed near zero
    /// (a run with a loss at or below zero is drawn linear instead).
    Log,
}

impl Scale {
    /// Parses `linear` or `log`.
    pub fn parse(s: &str) -> Result<Scale, String> {
        match s {
            "linear" => Ok(Scale::Linear),
            "log" => Ok(Scale::Log),
            other => Err(format!("unknown scale `{other}` (choose linear or log)")),
        }
    }
}

/// Per-epoch scores drawn beside the losses.
#[derive(Clone, Copy, Debug)]
pub struct Scores<'a> {
    /// What was scored: `validation`, `test`.
    pub set: &'a str,
    /// How (accuracy in percent, or an error).
    pub metric: Metric,
    /// One score per epoch.
    pub values: &'a [f32],
}

/// Draws the training curve of `trainer` into `path` (PNG, 1000×400): every step's loss with
/// its running mean on the left, on `scale`; the held-out score per epoch on the right.
pub fn curve(path: &Path, title: &str, trainer: &Trainer, scale: Scale) -> Result<(), PlotError> {
    let history = trainer.history();
    let scores =
        trainer.held_out().map(|h| Scores { set: h.name, metric: trainer.task().metric, values: &history.held_out });
    losses(path, title, &[("loss", &history.step_loss)], scores, scale)
}

/// Colours of the loss series, in order: (each step, running mean).
const SERIES: [(RGBColor, RGBColor); 2] =
    [(RGBColor(160, 190, 230), BLUE), (RGBColor(240, 180, 150), RGBColor(200, 80, 0))];

/// Draws loss series (each step faint, its running mean bold; named in a legend above the
/// curves) on `scale` and, when given, the held-out scores per epoch beside them, into `path`
/// (PNG, 1000×400).
pub fn losses(
    path: &Path,
    title: &str,
    series: &[(&str, &[f32])],
    scores: Option<Scores<'_>>,
    scale: Scale,
) -> Result<(), PlotError> {
    replace(path, |partial| draw_losses(partial, title, series, scores, scale))
}

/// Draws into a partial file beside `path` and renames it over `path`, so a picture is never
/// seen half drawn (`kiln_runtime::files`); errors name `path`.
fn replace(path: &Path, draw: impl FnOnce(&Path) -> Result<(), PlotError>) -> Result<(), PlotError> {
    kiln_runtime::files::replace(
        path,
        |partial| draw(partial).map_err(|e| PlotError { path: path.display().to_string(), message: e.message }),
        |e| PlotError { path: path.display().to_string(), message: e.to_string() },
    )
}

/// [`losses`] drawn straight into `path`.
fn draw_losses(
    path: &Path,
    title: &str,
    series: &[(&str, &[f32])],
    scores: Option<Scores<'_>>,
    scale: Scale,
) -> Result<(), PlotError> {
    register_font();
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), message: e.to_string() };
    let root = BitMapBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let scores = scores.filter(|s| s.values.iter().any(|v| v.is_finite()));
    let (left, right) = match scores {
        None => (root.clone(), None),
        Some(s) => {
            let (l, r) = root.split_horizontally(600);
            (l, Some((r, s)))
        }
    };
    let finite: Vec<f64> =
        series.iter().flat_map(|(_, l)| l.iter()).map(|&l| f64::from(l)).filter(|l| l.is_finite()).collect();
    let steps = series.iter().map(|(_, l)| l.len()).max().unwrap_or(0).max(1) as f64;
    let caption = format!("{title}: training loss");
    let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
    let max = finite.iter().copied().fold(0.0, f64::max).max(1e-6);
    if scale == Scale::Log && min > 0.0 && min.is_finite() {
        // The top fifth of the height is left empty for the legend, so it covers no curve.
        // At most ten decades below the largest loss (a loss that reaches 1e-30 would squash
        // the rest, and plotters' tick search does not end for a bottom that underflows).
        let bottom = (min * 0.9).max(max * 1e-10);
        let top = max * (max / bottom).max(10.0).powf(0.25);
        loss_chart(&left, &caption, steps, (bottom..top).log_scale(), "loss (log scale)", series)
            .map_err(|e| err(&e))?;
    } else {
        loss_chart(&left, &caption, steps, 0.0..max * 1.3, "loss", series).map_err(|e| err(&e))?;
    }
    if let Some((right, scores)) = right {
        draw_scores(&right, scores).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
}

/// The drawing area of a chart: a caption and room for the axis labels.
fn frame<'a, 'b>(
    area: &'a DrawingArea<BitMapBackend<'b>, Shift>,
    caption: &str,
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder.caption(caption, ("sans-serif", 18)).margin(12).x_label_area_size(36).y_label_area_size(60);
    builder
}

/// The loss chart on `area`: steps across, `y` (a linear or log range) up, every series.
fn loss_chart<Y>(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    caption: &str,
    steps: f64,
    y: Y,
    y_desc: &str,
    series: &[(&str, &[f32])],
) -> Result<(), String>
where
    Y: AsRangedCoord<Value = f64>,
    Y::CoordDescType: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut chart = frame(area, caption).build_cartesian_2d(0.0..steps, y).map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    draw_series(&mut chart, series)
}

/// Every series, each step faint and its running mean bold, with the legend in the top right.
fn draw_series<'a, 'b: 'a, Y: Ranged<ValueType = f64>>(
    chart: &mut ChartContext<'a, BitMapBackend<'b>, Cartesian2d<RangedCoordf64, Y>>,
    series: &[(&str, &[f32])],
) -> Result<(), String> {
    for (k, (name, values)) in series.iter().enumerate() {
        let (faint, bold) = SERIES[k % SERIES.len()];
        let window = (values.len() / 50).max(1);
        let mut sum = 0.0;
        let mean: Vec<(f64, f64)> = (0..values.len())
            .map(|i| {
                sum += f64::from(values[i]);
                if i >= window {
                    sum -= f64::from(values[i - window]);
                }
                (i as f64 + 1.0, sum / (i + 1).min(window) as f64)
            })
            .collect();
        let finite = |p: &(f64, f64)| p.1.is_finite();
        let each: Vec<(f64, f64)> =
            values.iter().enumerate().map(|(i, &l)| (i as f64 + 1.0, f64::from(l))).filter(finite).collect();
        chart.draw_series(LineSeries::new(each, faint.stroke_width(1))).map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(mean.into_iter().filter(finite), bold.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{name} (mean of {window} steps)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], bold));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())
}

/// The held-out score per epoch: accuracy in percent, or an error on its own range.
fn draw_scores(area: &DrawingArea<BitMapBackend<'_>, Shift>, scores: Scores<'_>) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let percent = scores.metric.higher_is_better();
    let at = |i: usize, v: f32| (i as f64 + 1.0, if percent { 100.0 * f64::from(v) } else { f64::from(v) });
    let points: Vec<(f64, f64)> =
        scores.values.iter().enumerate().map(|(i, &v)| at(i, v)).filter(|p| p.1.is_finite()).collect();
    let lowest = points.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let highest = points.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let (low, high) =
        if percent { ((lowest - 2.0).clamp(0.0, 99.0).floor(), 100.0) } else { (0.0, (highest * 1.1).max(1e-9)) };
    let epochs = scores.values.len().max(1) as f64;
    let name = scores.metric.name();
    let mut chart = ChartBuilder::on(area)
        .caption(format!("{} {name}", scores.set), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..epochs + 0.5, low..high)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc(if percent { format!("{name} (%)") } else { name.to_string() })
        .x_labels(scores.values.len().max(1))
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart.draw_series(LineSeries::new(points.clone(), RED.stroke_width(2))).map_err(|e| err(&e))?;
    chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, RED.filled()))).map_err(|e| err(&e))?;
    Ok(())
}

/// Draws `images` (each `rows × cols` values in `[-1, 1]`, row-major) as a grid of
/// `per_row` tiles, scaled 3×, into `path` (PNG, grey levels).
pub fn image_grid(path: &Path, images: &[Vec<f32>], rows: usize, cols: usize, per_row: usize) -> Result<(), PlotError> {
    replace(path, |partial| draw_image_grid(partial, images, rows, cols, per_row))
}

/// [`image_grid`] drawn straight into `path`.
fn draw_image_grid(
    path: &Path,
    images: &[Vec<f32>],
    rows: usize,
    cols: usize,
    per_row: usize,
) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), message: e.to_string() };
    let (scale, gap) = (3u32, 2u32);
    let per_row = per_row.max(1);
    let grid_rows = images.len().div_ceil(per_row).max(1);
    let tile_w = cols as u32 * scale + gap;
    let tile_h = rows as u32 * scale + gap;
    let size = (per_row as u32 * tile_w + gap, grid_rows as u32 * tile_h + gap);
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&RGBColor(40, 40, 40)).map_err(|e| err(&e))?;
    for (k, img) in images.iter().enumerate() {
        let (ox, oy) = ((k % per_row) as u32 * tile_w + gap, (k / per_row) as u32 * tile_h + gap);
        for r in 0..rows {
            for c in 0..cols {
                let v = img.get(r * cols + c).copied().unwrap_or(0.0);
                let g = (((v + 1.0) * 0.5).clamp(0.0, 1.0) * 255.0).round() as u8;
                let (x, y) = ((ox + c as u32 * scale) as i32, (oy + r as u32 * scale) as i32);
                root.draw(&Rectangle::new([(x, y), (x + scale as i32, y + scale as i32)], RGBColor(g, g, g).filled()))
                    .map_err(|e| err(&e))?;
            }
        }
    }
    root.present().map_err(|e| err(&e))
}
