//! Pictures of a run: the loss and accuracy curve (`curve.png`) and grids of images (the GAN's
//! `samples.png`), drawn with plotters and the bundled DejaVu Sans font.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::History;

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

/// Draws the training curve of `history` into `path` (PNG, 1000×400): every step's loss with
/// its running mean on the left, held-out accuracy per epoch on the right.
pub fn curve(path: &Path, title: &str, history: &History) -> Result<(), PlotError> {
    losses(path, title, &[("loss", &history.step_loss)], &history.test_accuracy)
}

/// Colours of the loss series, in order: (each step, running mean).
const SERIES: [(RGBColor, RGBColor); 2] =
    [(RGBColor(160, 190, 230), BLUE), (RGBColor(240, 180, 150), RGBColor(200, 80, 0))];

/// Draws loss series (each step faint, its running mean bold) and, when `accuracy` is not
/// empty, held-out accuracy per epoch beside them, into `path` (PNG, 1000×400).
pub fn losses(path: &Path, title: &str, series: &[(&str, &[f32])], accuracy: &[f32]) -> Result<(), PlotError> {
    replace(path, |partial| draw_losses(partial, title, series, accuracy))
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
fn draw_losses(path: &Path, title: &str, series: &[(&str, &[f32])], accuracy: &[f32]) -> Result<(), PlotError> {
    register_font();
    let err = |e: &dyn std::fmt::Display| PlotError { path: path.display().to_string(), message: e.to_string() };
    let root = BitMapBackend::new(path, (1000, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (left, right) = if accuracy.is_empty() {
        (root.clone(), None)
    } else {
        let (l, r) = root.split_horizontally(600);
        (l, Some(r))
    };
    let finite = series.iter().flat_map(|(_, l)| l.iter()).map(|&l| f64::from(l)).filter(|l| l.is_finite());
    let top = finite.fold(0.0, f64::max).max(1e-6) * 1.05;
    let steps = series.iter().map(|(_, l)| l.len()).max().unwrap_or(0).max(1) as f64;
    let mut chart = ChartBuilder::on(&left)
        .caption(format!("{title}: training loss"), ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(52)
        .build_cartesian_2d(0.0..steps, 0.0..top)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()
        .map_err(|e| err(&e))?;
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
        chart
            .draw_series(LineSeries::new(
                values.iter().enumerate().map(|(i, &l)| (i as f64 + 1.0, f64::from(l))),
                faint.stroke_width(1),
            ))
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(mean, bold.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(format!("{name} (mean of {window} steps)"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], bold));
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;

    if let Some(right) = right {
        let acc: Vec<(f64, f64)> =
            accuracy.iter().enumerate().map(|(i, &a)| (i as f64 + 1.0, 100.0 * f64::from(a))).collect();
        let low = acc.iter().map(|p| p.1).fold(100.0, f64::min);
        let low = (low - 2.0).clamp(0.0, 99.0).floor();
        let epochs = acc.len().max(1) as f64;
        let mut chart = ChartBuilder::on(&right)
            .caption("held-out accuracy", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(52)
            .build_cartesian_2d(0.5..epochs + 0.5, low..100.0)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("accuracy (%)")
            .x_labels(acc.len().max(1))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .draw()
            .map_err(|e| err(&e))?;
        chart.draw_series(LineSeries::new(acc.clone(), RED.stroke_width(2))).map_err(|e| err(&e))?;
        chart.draw_series(acc.iter().map(|&p| Circle::new(p, 4, RED.filled()))).map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))
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
