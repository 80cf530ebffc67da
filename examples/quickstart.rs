//! Quickstart: build a small classifier with the DSL, print its IR, and run it on the
//! reference interpreter.
//!
//! Run with `cargo run --release --example quickstart`.

use std::collections::HashMap;

use kiln::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A two-layer MLP over 4 features, batch 3.
    let b = Builder::new("quickstart");
    let x = b.input("x", DType::F32, [3, 4]);
    let hidden = nn::Linear::new(&b, "fc1", 4, 8).forward(x).relu();
    let logits = nn::Linear::new(&b, "fc2", 8, 2).forward(hidden);
    b.output("probs", logits.softmax(-1));
    let graph = b.finish()?;

    // The typed IR, as text (this is also the `.kir` file format).
    println!("{graph}");

    // Run it: inputs by name, parameters initialized from a seed.
    let xs: Vec<f32> = (0..12).map(|i| i as f32 / 12.0 - 0.5).collect();
    let feeds =
        HashMap::from([("x".to_string(), Value::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3, 4]), xs)?))]);
    let outputs = kiln::runtime::exec::run(&graph, &feeds, 0, kiln::runtime::exec::Backend::Interp)?;
    println!("probs = {:?}", outputs[0].to_f64_vec());
    Ok(())
}
