//! Data for training: a [`Dataset`] of examples and labels, mini-batches drawn from it, the
//! MNIST loader ([`mnist`]) and seeded synthetic tasks ([`synthetic`]).
//!
//! A dataset holds its examples and labels as two [`Value`]s whose first axis counts examples.
//! [`Dataset::batch`] gathers rows by index into new values; [`shuffled`] gives one epoch's
//! order from a seed, so a run (and a resumed run) visits the same batches.

pub mod mnist;
pub mod synthetic;

use kiln_ir::Value;
use ndarray::{ArrayD, Axis};
use thiserror::Error;

/// Errors from loading data.
#[derive(Debug, Error)]
pub enum DataError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// A file is not what its name says.
    #[error("{path}: {message}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// Examples and labels disagree.
    #[error("{0}")]
    Mismatch(String),
    /// A generator was asked for data it cannot make.
    #[error("{0}")]
    Invalid(String),
}

/// Examples and their labels, both with the example count as their first axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// The examples: `[n, ...]`.
    pub x: Value,
    /// The labels: `[n]` class ids, or `[n, ...]` targets.
    pub y: Value,
}

impl Dataset {
    /// A dataset of `x` and `y`; an error if their first axes differ.
    pub fn new(x: Value, y: Value) -> Result<Self, DataError> {
        let (nx, ny) = (x.shape().first().copied(), y.shape().first().copied());
        if nx.is_none() || nx != ny {
            return Err(DataError::Mismatch(format!(
                "examples {:?} and labels {:?} must have the same (nonzero-rank) first axis",
                x.shape(),
                y.shape()
            )));
        }
        Ok(Dataset { x, y })
    }

    /// The number of examples.
    pub fn len(&self) -> usize {
        self.x.shape()[0]
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The examples and labels at `indices`, in that order.
    pub fn batch(&self, indices: &[usize]) -> (Value, Value) {
        (rows(&self.x, indices), rows(&self.y, indices))
    }

    /// The first `n` examples (all of them if there are fewer).
    pub fn take(&self, n: usize) -> Dataset {
        let idx: Vec<usize> = (0..n.min(self.len())).collect();
        let (x, y) = self.batch(&idx);
        Dataset { x, y }
    }
}

/// The rows of `v` (along its first axis) at `indices`, as a standard-layout value. Every
/// index must be below the row count.
pub fn rows(v: &Value, indices: &[usize]) -> Value {
    kiln_ir::map_value!(v, a => gather(a, indices))
}

/// Row gather: one slice copy per row for standard-layout arrays (ndarray's `select` appends
/// row by row through a generic zip, several times slower on the training loop's batches).
fn gather<T: Clone>(a: &ArrayD<T>, indices: &[usize]) -> ArrayD<T> {
    let Some(flat) = a.as_slice() else {
        return a.select(Axis(0), indices);
    };
    let mut dims = a.shape().to_vec();
    let row: usize = dims[1..].iter().product();
    dims[0] = indices.len();
    let mut out = Vec::with_capacity(indices.len() * row);
    for &i in indices {
        out.extend_from_slice(&flat[i * row..(i + 1) * row]);
    }
    // `out` holds exactly `indices.len() * row` elements, the product of `dims`.
    ArrayD::from_shape_vec(ndarray::IxDyn(&dims), out).expect("gathered rows fill the shape")
}

/// Reshapes `v` to `dims` (same element count), keeping its data.
pub fn reshape(v: Value, dims: &[usize]) -> Option<Value> {
    fn go<T: Clone>(a: ArrayD<T>, dims: &[usize]) -> Option<ArrayD<T>> {
        // A standard-layout array changes shape without copying.
        let a = if a.is_standard_layout() { a } else { a.as_standard_layout().into_owned() };
        a.into_shape_with_order(ndarray::IxDyn(dims)).ok()
    }
    Some(match v {
        Value::F32(a) => Value::F32(go(a, dims)?),
        Value::F64(a) => Value::F64(go(a, dims)?),
        Value::I32(a) => Value::I32(go(a, dims)?),
        Value::I64(a) => Value::I64(go(a, dims)?),
        Value::Bool(a) => Value::Bool(go(a, dims)?),
    })
}

/// A small sequential generator (SplitMix64) for shuffles and synthetic data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator started from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(kiln_ir::rng::mix64(seed ^ 0x6B69_6C6E))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        kiln_ir::rng::mix64(self.0)
    }

    /// A uniform number in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        kiln_ir::rng::uniform_f64(self.next_u64())
    }

    /// A uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        // Multiply-shift: unbiased enough for shuffles and data (bias < n / 2^64).
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// A standard normal number (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.uniform(), self.uniform());
        (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

/// The order in which epoch `epoch` visits `n` examples: a Fisher–Yates shuffle seeded by
/// `(seed, epoch)`, so any epoch's order can be recomputed (resuming mid-run).
pub fn shuffled(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed ^ kiln_ir::rng::mix64(epoch.wrapping_add(1)));
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}
