//! The MNIST loader: IDX files, gzipped or raw, checked against their magic numbers and sizes.
//!
//! A directory holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
//! `t10k-images-idx3-ubyte` and `t10k-labels-idx1-ubyte`, each either as is or with `.gz`
//! (the repository ships them gzipped in `data/mnist/`). Images load as `f32 [n, 28, 28]` in
//! `[0, 1]`, labels as `i32 [n]`.

use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_ir::Value;
use ndarray::{ArrayD, IxDyn};

use super::{DataError, Dataset};

/// The magic number of an IDX file of unsigned bytes with three dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0000_0803;
/// The magic number of an IDX file of unsigned bytes with one dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// The directory of the MNIST files bundled with the repository.
pub fn bundled_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join("mnist")
}

/// The training and test sets.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60,000 training images and labels.
    pub train: Dataset,
    /// 10,000 test images and labels.
    pub test: Dataset,
}

/// Loads the four MNIST files from `dir`.
pub fn load(dir: &Path) -> Result<Mnist, DataError> {
    Ok(Mnist { train: load_split(dir, "train")?, test: load_split(dir, "t10k")? })
}

/// Loads one split (`"train"` or `"t10k"`) from `dir`.
pub fn load_split(dir: &Path, prefix: &str) -> Result<Dataset, DataError> {
    let images = read_images(&find(dir, &format!("{prefix}-images-idx3-ubyte"))?)?;
    let labels = read_labels(&find(dir, &format!("{prefix}-labels-idx1-ubyte"))?)?;
    let (ni, nl) = (images.shape()[0], labels.shape()[0]);
    if ni != nl {
        return Err(DataError::Mismatch(format!(
            "{}: {ni} images but {nl} labels for the `{prefix}` split",
            dir.display()
        )));
    }
    Dataset::new(images, labels)
}

/// The path of `name.gz` or `name` in `dir`, whichever exists.
fn find(dir: &Path, name: &str) -> Result<PathBuf, DataError> {
    let gz = dir.join(format!("{name}.gz"));
    let raw = dir.join(name);
    if gz.is_file() {
        Ok(gz)
    } else if raw.is_file() {
        Ok(raw)
    } else {
        Err(DataError::Io {
            path: gz.display().to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no MNIST file `{name}.gz` or `{name}` in {} (point --data at the MNIST directory)",
                    dir.display()
                ),
            ),
        })
    }
}

/// Reads an IDX image file: `f32 [n, rows, cols]` scaled to `[0, 1]`.
pub fn read_images(path: &Path) -> Result<Value, DataError> {
    let (dims, bytes) = read_idx(path, IMAGES_MAGIC)?;
    let data: Vec<f32> = bytes.iter().map(|&b| f32::from(b) / 255.0).collect();
    let a = ArrayD::from_shape_vec(IxDyn(&dims), data).map_err(|e| malformed(path, e.to_string()))?;
    Ok(Value::F32(a))
}

/// Reads an IDX label file: `i32 [n]`, every label in `0..10`.
pub fn read_labels(path: &Path) -> Result<Value, DataError> {
    let (dims, bytes) = read_idx(path, LABELS_MAGIC)?;
    if let Some((i, b)) = bytes.iter().enumerate().find(|(_, b)| **b > 9) {
        return Err(malformed(path, format!("label {i} is {b}, not a digit 0-9")));
    }
    let data: Vec<i32> = bytes.iter().map(|&b| i32::from(b)).collect();
    let a = ArrayD::from_shape_vec(IxDyn(&dims), data).map_err(|e| malformed(path, e.to_string()))?;
    Ok(Value::I32(a))
}

/// Reads an IDX file of unsigned bytes (gzipped or not) whose magic number must be `magic`:
/// its dimensions and its data, whose length must be their product.
pub fn read_idx(path: &Path, magic: u32) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let io = |source| DataError::Io { path: path.display().to_string(), source };
    let raw = std::fs::read(path).map_err(io)?;
    let bytes = if raw.starts_with(&[0x1F, 0x8B]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .map_err(|e| malformed(path, format!("corrupt gzip data: {e}")))?;
        out
    } else {
        raw
    };
    let word = |i: usize| -> Result<u32, DataError> {
        bytes
            .get(4 * i..4 * i + 4)
            .map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
            .ok_or_else(|| malformed(path, format!("truncated header ({} bytes)", bytes.len())))
    };
    let found = word(0)?;
    if found != magic {
        return Err(malformed(path, format!("magic number {found:#010x}, expected {magic:#010x}")));
    }
    let rank = (magic & 0xFF) as usize;
    let dims: Vec<usize> = (1..=rank).map(|i| word(i).map(|d| d as usize)).collect::<Result<_, _>>()?;
    let header = 4 * (rank + 1);
    let expected: usize = dims.iter().product();
    let found = bytes.len() - header;
    if found != expected {
        return Err(malformed(
            path,
            format!("dimensions {dims:?} need {expected} data bytes, the file has {found} (truncated or corrupt)"),
        ));
    }
    Ok((dims, bytes[header..].to_vec()))
}

fn malformed(path: &Path, message: String) -> DataError {
    DataError::Malformed { path: path.display().to_string(), message }
}
