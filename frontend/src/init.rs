//! Parameter initializers as IR [`Init`] values: Kaiming (He) and Xavier (Glorot) uniform.

use kiln_ir::{Init, Literal};

/// Uniform on `[-bound, bound)`.
pub fn uniform(bound: f64) -> Init {
    Init::Uniform { low: Literal(-bound), high: Literal(bound) }
}

/// Kaiming/He uniform for ReLU layers: bound `sqrt(6 / fan_in)`.
pub fn kaiming_uniform(fan_in: usize) -> Init {
    uniform((6.0 / fan_in.max(1) as f64).sqrt())
}

/// Xavier/Glorot uniform: bound `sqrt(6 / (fan_in + fan_out))`.
pub fn xavier_uniform(fan_in: usize, fan_out: usize) -> Init {
    uniform((6.0 / (fan_in + fan_out).max(1) as f64).sqrt())
}

/// Bias init as in common frameworks: uniform with bound `1 / sqrt(fan_in)`.
pub fn bias_uniform(fan_in: usize) -> Init {
    uniform(1.0 / (fan_in.max(1) as f64).sqrt())
}
