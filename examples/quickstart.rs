//! Quickstart: build a small classifier with the DSL, print its IR, run it on the reference
//! interpreter, then compile it to native code and run that.
//!
//! Run with `cargo run --release --example quickstart`.

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
    let mut feeds = kiln::ir::init::init_params(&graph, 0);
    feeds.insert("x".to_string(), Value::F32(ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[3, 4]), xs)?));
    let reference = kiln::ir::interp::run(&graph, &feeds)?;
    println!("interpreter: probs = {:?}", reference[0].to_f64_vec());

    // Compile: optimize, fuse, generate code with Cranelift; then run natively.
    let exe = kiln::compile(&graph, kiln::Fusion::Fused)?;
    for (group, kernel) in exe.groups() {
        if let Some(k) = kernel {
            println!("kernel {} fuses {} ops", k.kernel.name, group.members.len());
        }
    }
    let native = exe.run(&feeds)?;
    println!("jit:         probs = {:?}", native[0].to_f64_vec());
    // Both backends compute one meaning (up to float rounding).
    let (a, b) = (reference[0].to_f64_vec(), native[0].to_f64_vec());
    if a.iter().zip(&b).any(|(a, b)| (a - b).abs() > 1e-5) {
        return Err("the JIT and the interpreter disagree".into());
    }
    Ok(())
}
