//! A node's attributes, read by name with their ONNX defaults.

use kiln_ir::Value;

use super::{Cx, Fail};
use crate::proto::AttributeProto;
use crate::proto::attribute_proto::AttributeType;

impl Cx<'_, '_> {
    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name() == name)
    }

    /// True if the node has attribute `name`.
    pub fn has_attr(&self, name: &str) -> bool {
        self.attr(name).is_some()
    }

    /// An integer attribute, or `default`.
    pub fn attr_i(&self, name: &str, default: i64) -> Result<i64, Fail> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) if a.r#type() == AttributeType::Int || a.i.is_some() => Ok(a.i()),
            Some(_) => Err(Fail::Bad(format!("attribute `{name}` is not an integer"))),
        }
    }

    /// A float attribute, or `default`.
    pub fn attr_f(&self, name: &str, default: f64) -> Result<f64, Fail> {
        match self.attr(name) {
            None => Ok(default),
            Some(a) if a.r#type() == AttributeType::Float || a.f.is_some() => Ok(a.f() as f64),
            Some(_) => Err(Fail::Bad(format!("attribute `{name}` is not a float"))),
        }
    }

    /// A string attribute, or `default`.
    pub fn attr_s(&self, name: &str, default: &str) -> Result<String, Fail> {
        match self.attr(name) {
            None => Ok(default.to_string()),
            Some(a) => String::from_utf8(a.s().to_vec())
                .map_err(|_| Fail::Bad(format!("attribute `{name}` is not UTF-8 text"))),
        }
    }

    /// An integer-list attribute, if present.
    pub fn attr_ints(&self, name: &str) -> Option<Vec<i64>> {
        self.attr(name).map(|a| a.ints.clone())
    }

    /// A float-list attribute, if present.
    pub fn attr_floats(&self, name: &str) -> Option<Vec<f32>> {
        self.attr(name).map(|a| a.floats.clone())
    }

    /// A tensor attribute's value, if present.
    pub fn attr_tensor(&self, name: &str) -> Result<Option<Value>, Fail> {
        match self.attr(name).and_then(|a| a.t.as_ref()) {
            None => Ok(None),
            Some(t) => crate::tensor::to_value(t).map(Some).map_err(|e| {
                if crate::tensor::dtype_of(t.data_type()).is_none() { Fail::Unsupported(e) } else { Fail::Bad(e) }
            }),
        }
    }

    /// A per-spatial-axis attribute (`strides`, `dilations`, `kernel_shape`, ...): `n` values,
    /// each at least `min`, or `default` on every axis when absent.
    pub fn spatial_list(&self, name: &str, n: usize, default: usize, min: i64) -> Result<Vec<usize>, Fail> {
        match self.attr_ints(name) {
            Some(v) if v.len() == n && v.iter().all(|&x| x >= min) => Ok(v.iter().map(|&x| x as usize).collect()),
            Some(v) => Err(Fail::Bad(format!("`{name}` {v:?} does not fit {n} spatial axes"))),
            None => Ok(vec![default; n]),
        }
    }

    /// Axes from input `i` (opsets that take them as an input) or attribute `name` (older
    /// ones), if either is given.
    pub fn axes_arg(&self, i: usize, name: &str) -> Result<Option<Vec<i64>>, Fail> {
        match self.opt_ints(i)? {
            Some(a) => Ok(Some(a)),
            None => Ok(self.attr_ints(name)),
        }
    }
}

/// `axis` (negative counts from the end) as an index into `rank` axes.
pub(crate) fn norm_axis(axis: i64, rank: usize) -> Result<usize, Fail> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        Err(Fail::Bad(format!("axis {axis} is out of range for rank {rank}")))
    }
}

/// Several axes, normalized, sorted and checked distinct.
pub(crate) fn norm_axes(axes: &[i64], rank: usize) -> Result<Vec<usize>, Fail> {
    let mut v = axes.iter().map(|&a| norm_axis(a, rank)).collect::<Result<Vec<_>, _>>()?;
    v.sort_unstable();
    let n = v.len();
    v.dedup();
    if v.len() != n {
        return Err(Fail::Bad(format!("axes {axes:?} repeat an axis")));
    }
    Ok(v)
}
