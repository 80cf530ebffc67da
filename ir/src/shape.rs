//! Shapes and tensor types.
//!
//! Shapes are static for now. `Shape` keeps its dimensions private behind methods so that a
//! symbolic (batch) dimension can later be added inside it without touching its users.

use std::fmt;

use crate::dtype::DType;

/// The static shape of a tensor: one extent per axis. The empty shape is a scalar.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Shape {
    dims: Vec<usize>,
}

impl Shape {
    /// A shape from its extents.
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape { dims: dims.into() }
    }

    /// The scalar shape `[]`.
    pub fn scalar() -> Self {
        Shape { dims: Vec::new() }
    }

    /// The extents, outermost first.
    pub fn dims(&self) -> &[usize] {
        &self.dims
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Extent of `axis`.
    ///
    /// Panics if `axis >= rank`; callers check ranks first (the type rules do).
    pub fn dim(&self, axis: usize) -> usize {
        self.dims[axis]
    }

    /// Number of elements (1 for a scalar, 0 if any extent is 0), saturating at `usize::MAX`.
    pub fn numel(&self) -> usize {
        self.checked_numel().unwrap_or(usize::MAX)
    }

    /// Number of elements, or `None` if it does not fit in `usize`.
    pub fn checked_numel(&self) -> Option<usize> {
        self.dims.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
    }
}

impl From<Vec<usize>> for Shape {
    fn from(dims: Vec<usize>) -> Self {
        Shape { dims }
    }
}

impl From<&[usize]> for Shape {
    fn from(dims: &[usize]) -> Self {
        Shape { dims: dims.to_vec() }
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape { dims: dims.to_vec() }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.dims.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{d}")?;
        }
        f.write_str("]")
    }
}

/// The type of an IR value: element type and shape. Printed as `f32[32,784]`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Shape.
    pub shape: Shape,
}

impl TensorType {
    /// A tensor type from a dtype and anything that converts to a shape.
    pub fn new(dtype: DType, shape: impl Into<Shape>) -> Self {
        TensorType { dtype, shape: shape.into() }
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.shape.rank()
    }

    /// Extents.
    pub fn dims(&self) -> &[usize] {
        self.shape.dims()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.numel()
    }

    /// Size in bytes of a dense buffer of this type (saturating).
    pub fn size_bytes(&self) -> usize {
        self.size_bytes_checked().unwrap_or(usize::MAX)
    }

    /// Size in bytes of a dense buffer, or `None` if it exceeds `isize::MAX`.
    pub fn size_bytes_checked(&self) -> Option<usize> {
        let n = self.shape.checked_numel()?.checked_mul(self.dtype.size_bytes())?;
        (n <= isize::MAX as usize).then_some(n)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.dtype, self.shape)
    }
}
