//! From checkpoint to C library: the `own_classifier` example's trained model compiled into
//! `librings.so` + `rings.h` (weights embedded), called from a C program that this example
//! writes, compiles with the system C compiler and runs; its classes must match kiln's own.
//!
//! Run `cargo run --release --example own_classifier` first (it writes the checkpoint), then
//! `cargo run --release --example own_library` (CI runs both).

use std::path::Path;
use std::process::Command;

use kiln::aot::BuildOptions;
use kiln::fit::checkpoint;
use kiln::prelude::*;

#[path = "rings/model.rs"]
mod rings;

/// The C program: classifies the points given as arguments (`x y x y ...`, four points) with
/// the library and prints one ring index per line.
const PROGRAM: &str = r#"#include <stdio.h>
#include <stdlib.h>
#include "rings.h"

int main(int argc, char **argv) {
    float x[8], logits[12];
    if (argc != 9) { fprintf(stderr, "usage: %s x0 y0 ... x3 y3\n", argv[0]); return 2; }
    for (int i = 0; i < 8; i++) x[i] = strtof(argv[i + 1], NULL);
    const void *inputs[] = {x};
    void *outputs[] = {logits};
    int code = rings_run(inputs, outputs);
    if (code != 0) { fprintf(stderr, "rings_run: %s\n", rings_error_message(code)); return 1; }
    for (int p = 0; p < 4; p++) {
        int best = 0;
        for (int k = 1; k < 3; k++) if (logits[p * 3 + k] > logits[p * 3 + best]) best = k;
        printf("%d\n", best);
    }
    return 0;
}
"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = Path::new(rings::CHECKPOINT);
    if !path.exists() {
        return Err(format!("{}: run `cargo run --release --example own_classifier` first", path.display()).into());
    }
    // The forward graph at 4 points per call, with the checkpoint's parameters (each checked
    // by name and type against the graph).
    let graph = rings::model(4)?.graph;
    let weights = checkpoint::load(path)?.params_for(&graph, path)?;
    let dir = Path::new("runs/rings/lib");
    let library = kiln::aot::build(&graph, &weights, &BuildOptions::new("rings", dir))?;
    println!("built {} and {}", library.library.display(), library.header.display());

    // kiln's own answer for four points, from the JIT.
    let points = [0.0f32, 1.0, -2.1, 0.0, 0.0, -2.9, 0.7, 0.7];
    let mut feeds = weights.clone();
    feeds.insert("x".into(), Value::from_vec(&[4, 2], points.to_vec())?);
    let logits = kiln::compile(&graph, kiln::Fusion::Fused)?.run(&feeds)?[0].to_vec::<f32>()?;
    let expected: Vec<usize> = logits
        .chunks(rings::CLASSES)
        .map(|row| (0..row.len()).fold(0, |best, k| if row[k] > row[best] { k } else { best }))
        .collect();

    // The C program, linked against the library (found next to the program at run time).
    let source = dir.join("classify.c");
    std::fs::write(&source, PROGRAM)?;
    let program = dir.join("classify");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(&cc)
        .args(["-O2", "-I"])
        .arg(dir)
        .arg(&source)
        .arg("-L")
        .arg(dir)
        .args(["-lrings", "-Wl,-rpath,$ORIGIN", "-o"])
        .arg(&program)
        .status()?;
    if !status.success() {
        return Err(format!("{cc} failed to compile {}", source.display()).into());
    }
    let run = Command::new(&program).args(points.iter().map(|p| p.to_string())).output()?;
    if !run.status.success() {
        return Err(format!("{} failed: {}", program.display(), String::from_utf8_lossy(&run.stderr)).into());
    }
    let from_c: Vec<usize> = String::from_utf8(run.stdout)?.lines().map(str::parse).collect::<Result<_, _>>()?;
    println!("C library: {from_c:?}; JIT: {expected:?}");
    if from_c != expected {
        return Err("the library and the JIT disagree".into());
    }
    Ok(())
}
