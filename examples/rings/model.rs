//! The model and data format shared by `own_classifier` (which trains it) and `own_library`
//! (which compiles its checkpoint into a C library): points in the plane, classed by which of
//! three rings around the origin they lie on.

use kiln::fit::{Loss, Model};
use kiln::prelude::*;

/// The number of rings (classes).
pub const CLASSES: usize = 3;

/// Where `own_classifier` writes its checkpoint and `own_library` reads it.
pub const CHECKPOINT: &str = "runs/rings/model.safetensors";

/// `x: f32[batch, 2]` → `logits: f32[batch, 3]`, trained with cross entropy against
/// `i32[batch]` ring indices.
pub fn model(batch: usize) -> Result<Model, BuildError> {
    let b = Builder::new("rings");
    let x = b.input("x", DType::F32, [batch, 2]);
    let h = nn::Linear::new(&b, "fc1", 2, 32).forward(x).relu();
    let h = nn::Linear::new(&b, "fc2", 32, 32).forward(h).relu();
    let logits = nn::Linear::new(&b, "out", 32, CLASSES).forward(h);
    b.output("logits", logits);
    Ok(Model { graph: b.finish()?, loss: Loss::CrossEntropy, labels: TensorType::new(DType::I32, [batch]) })
}
