//! Refusing work that cannot fit in memory, before allocating any of it: a graph asking for
//! `f32[100000,100000]` products, or a training step at `--batch 10000000`, gets an error
//! saying how much it needed and how much the machine has, instead of an allocation failure
//! that aborts the process.

use kiln_ir::Graph;

/// A graph needs more memory than the machine has available.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("@{graph} needs {} ({what}), but only {} is available", human(*needed), human(*available))]
pub struct TooLarge {
    /// The graph's name.
    pub graph: String,
    /// Bytes it needs.
    pub needed: u64,
    /// Bytes available (physical memory not in use, plus free swap).
    pub available: u64,
    /// What the bytes are for.
    pub what: &'static str,
}

/// Bytes the machine can still give this process: `MemAvailable` plus `SwapFree` from
/// `/proc/meminfo`, or `None` where that cannot be read (no check is made then).
pub fn available_bytes() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
        kib.checked_mul(1024)
    };
    Some(field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0)))
}

/// The bytes of every leaf (input and parameter) of `graph`: what the caller, or parameter
/// initialization, allocates besides the run's own buffers.
pub fn leaf_bytes(graph: &Graph) -> u64 {
    graph.leaves().map(|(_, n)| n.ty.size_bytes() as u64).fold(0, u64::saturating_add)
}

/// An error if `needed` bytes for `what` exceed what is available.
pub fn check(graph: &Graph, needed: u64, what: &'static str) -> Result<(), TooLarge> {
    match available_bytes() {
        Some(available) if needed > available => {
            Err(TooLarge { graph: graph.name().to_string(), needed, available, what })
        }
        _ => Ok(()),
    }
}

/// An error if the reference interpreter could not hold `graph`'s leaves and its largest
/// value at once (a lower bound of what it holds).
pub fn interpreter_fits(graph: &Graph) -> Result<(), TooLarge> {
    let largest = graph.nodes().map(|(_, n)| n.ty.size_bytes() as u64).max().unwrap_or(0);
    check(graph, leaf_bytes(graph).saturating_add(largest), "its inputs, parameters and largest value")
}

/// `bytes` as a short human-readable size (`1.5 GiB`).
fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes} bytes") } else { format!("{v:.1} {}", UNITS[unit]) }
}
