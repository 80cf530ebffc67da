//! Counter-based random numbers: the meaning of the `rng` op and of parameter initializers.
//!
//! Element `i` of a draw depends only on `(seed, stream, i)`, never on evaluation order, so
//! every backend can reproduce the interpreter bit for bit (uniform) or to rounding (normal).
//! The generator is SplitMix64 started from a key mixed from the seed and the stream.

/// The SplitMix64 increment (2^64 / golden ratio).
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output function: a bijective 64-bit mixer.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The key of a draw: mixes the seed with the stream number.
pub fn key(seed: u64, stream: u64) -> u64 {
    seed ^ mix64(stream.wrapping_add(GOLDEN))
}

/// The 64 random bits of counter `i` under `key`: `mix64(key + (i + 1) * GOLDEN)`.
pub fn bits(key: u64, i: u64) -> u64 {
    mix64(key.wrapping_add(i.wrapping_add(1).wrapping_mul(GOLDEN)))
}

/// A uniform `f32` in `[0, 1)` from the top 24 bits.
pub fn uniform_f32(bits: u64) -> f32 {
    (bits >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
}

/// A uniform `f64` in `[0, 1)` from the top 53 bits.
pub fn uniform_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A standard normal for element `i` by Box–Muller from counters `2i` and `2i + 1`, in `f64`.
pub fn normal_f64(key: u64, i: u64) -> f64 {
    let u1 = uniform_f64(bits(key, 2 * i));
    let u2 = uniform_f64(bits(key, 2 * i + 1));
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// The stream number of a named parameter: FNV-1a of its name, so initial values do not depend
/// on the order in which parameters were declared.
pub fn name_stream(name: &str) -> u64 {
    name.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3))
}
