//! Seeded synthetic tasks for the zoo models that have no real data set in the repository.
//!
//! Each generator is a pure function of its seed, so the same seed gives the same data on every
//! machine. The tasks are built so that a shortcut does not solve them: the shapes differ only
//! in outline (colour, size, position and noise are random), the order task's label depends on
//! which of two markers comes first (both always occur: a bag of words is at chance), and the
//! reverse task needs each position to attend to its mirror position.

use kiln_ir::Value;
use ndarray::{ArrayD, IxDyn};

use super::{DataError, Dataset, Rng};

/// The four XOR points: `x: f32 [4, 2]`, targets `f32 [4, 1]`.
pub fn xor() -> Dataset {
    let x = ArrayD::from_shape_vec(IxDyn(&[4, 2]), vec![0.0f32, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    let y = ArrayD::from_shape_vec(IxDyn(&[4, 1]), vec![0.0f32, 1.0, 1.0, 0.0]);
    // The shapes match the data given.
    Dataset { x: Value::F32(x.expect("4x2")), y: Value::F32(y.expect("4x1")) }
}

/// The number of shape classes of [`shapes`].
pub const SHAPE_CLASSES: usize = 10;

/// The class names of [`shapes`], by label.
pub const SHAPE_NAMES: [&str; SHAPE_CLASSES] =
    ["disk", "square", "triangle", "plus", "cross", "hbar", "vbar", "ring", "diamond", "frame"];

/// `n` coloured shapes on `3×32×32` images with Gaussian noise: `x: f32 [n, 3, 32, 32]`,
/// labels `i32 [n]` (the shape, see [`SHAPE_NAMES`]). Colours, size, position and background
/// are random; the label is the outline alone.
pub fn shapes(n: usize, seed: u64) -> Dataset {
    const S: usize = 32;
    let mut rng = Rng::new(seed ^ 0x5348_4150);
    let mut x = vec![0f32; n * 3 * S * S];
    let mut y = vec![0i32; n];
    for (i, (img, label)) in x.chunks_exact_mut(3 * S * S).zip(&mut y).enumerate() {
        let class = i % SHAPE_CLASSES;
        *label = class as i32;
        let r = 6.0 + 4.0 * rng.uniform();
        let cx = r + 2.0 + (S as f64 - 2.0 * r - 4.0) * rng.uniform();
        let cy = r + 2.0 + (S as f64 - 2.0 * r - 4.0) * rng.uniform();
        let fg: Vec<f64> = (0..3).map(|_| 0.4 + 0.6 * rng.uniform()).collect();
        let bg: Vec<f64> = (0..3).map(|_| 0.3 * rng.uniform()).collect();
        for py in 0..S {
            for px in 0..S {
                let (dx, dy) = (px as f64 + 0.5 - cx, py as f64 + 0.5 - cy);
                let on = inside(class, dx, dy, r);
                for c in 0..3 {
                    let v = if on { fg[c] } else { bg[c] } + 0.1 * rng.normal();
                    img[c * S * S + py * S + px] = v as f32;
                }
            }
        }
    }
    let x = ArrayD::from_shape_vec(IxDyn(&[n, 3, S, S]), x).expect("n*3*32*32 values");
    let y = ArrayD::from_shape_vec(IxDyn(&[n]), y).expect("n labels");
    Dataset { x: Value::F32(x), y: Value::I32(y) }
}

/// Whether `(dx, dy)` from the centre lies on shape `class` of radius `r`.
fn inside(class: usize, dx: f64, dy: f64, r: f64) -> bool {
    let (ax, ay) = (dx.abs(), dy.abs());
    let d = (dx * dx + dy * dy).sqrt();
    let m = ax.max(ay);
    let t = r / 3.0;
    match class {
        0 => d < r,
        1 => m < r,
        2 => dy > -r && dy < r && ax < (dy + r) / 2.0,
        3 => (ax < t && ay < r) || (ay < t && ax < r),
        4 => (ax - ay).abs() < t * 0.75 && m < r,
        5 => ay < t && ax < r,
        6 => ax < t && ay < r,
        7 => d < r && d > r * 0.55,
        8 => ax + ay < r,
        _ => m < r && m > r * 0.6,
    }
}

/// The first marker token of [`order`].
pub const MARKER_A: i32 = 1;
/// The second marker token of [`order`].
pub const MARKER_B: i32 = 2;

/// `n` token sequences of length `len` (≥ 2) over the tokens `3..vocab` (`vocab ≥ 4`) with the
/// two markers placed at two random positions: `x: i32 [n, len]`, label `i32 [n]` is 1 when
/// [`MARKER_A`] comes before [`MARKER_B`], else 0. Both markers are in every sequence, so the
/// tokens' counts say nothing: only their order does.
pub fn order(n: usize, len: usize, vocab: usize, seed: u64) -> Result<Dataset, DataError> {
    if len < 2 || vocab < 4 {
        return Err(DataError::Invalid(format!("the order task needs len >= 2 and vocab >= 4, got {len} and {vocab}")));
    }
    let mut rng = Rng::new(seed ^ 0x4F52_4445);
    let mut x = vec![0i32; n * len];
    let mut y = vec![0i32; n];
    for (i, (seq, label)) in x.chunks_exact_mut(len).zip(&mut y).enumerate() {
        for t in seq.iter_mut() {
            *t = 3 + rng.below(vocab - 3) as i32;
        }
        let p = rng.below(len);
        let mut q = rng.below(len - 1);
        if q >= p {
            q += 1;
        }
        // Alternate the classes so every batch is balanced.
        let a_first = i % 2 == 0;
        let (first, second) = (p.min(q), p.max(q));
        seq[first] = if a_first { MARKER_A } else { MARKER_B };
        seq[second] = if a_first { MARKER_B } else { MARKER_A };
        *label = i32::from(a_first);
    }
    let x = ArrayD::from_shape_vec(IxDyn(&[n, len]), x).expect("n*len tokens");
    let y = ArrayD::from_shape_vec(IxDyn(&[n]), y).expect("n labels");
    Ok(Dataset { x: Value::I32(x), y: Value::I32(y) })
}

/// `n` random sequences of `len` tokens in `0..vocab` and their reversals: `x: i32 [n, len]`,
/// targets `i32 [n, len]` with `y[i][t] = x[i][len - 1 - t]`.
pub fn reverse(n: usize, len: usize, vocab: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed ^ 0x5245_5645);
    let x: Vec<i32> = (0..n * len).map(|_| rng.below(vocab) as i32).collect();
    let mut y = x.clone();
    for seq in y.chunks_exact_mut(len) {
        seq.reverse();
    }
    let x = ArrayD::from_shape_vec(IxDyn(&[n, len]), x).expect("n*len tokens");
    let y = ArrayD::from_shape_vec(IxDyn(&[n, len]), y).expect("n*len tokens");
    Dataset { x: Value::I32(x), y: Value::I32(y) }
}
