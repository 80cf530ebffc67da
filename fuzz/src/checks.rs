//! What each fuzz target checks of one input: shared by the AFL++ targets (`fuzz/src/*.rs`)
//! and by `tests/fuzz_corpus.rs`, which replays the checked-in corpus and every input a fuzz
//! run found (`fuzz/regressions/`) through the same checks in the ordinary test suite. Each
//! function panics when kiln misbehaves on the input; a clean error is fine.

#![allow(dead_code)]

/// Graphs needing more than this for their leaves and buffers are not run.
const RUN_LIMIT: u64 = 16 << 20;

/// `.kir` text through the parser and verifier, and what verifies (when it fits in 16 MiB)
/// through the default optimizer pipeline and the JIT against the reference interpreter: the
/// same values within rounding, or an error on both.
pub fn kir(bytes: &[u8]) {
    let Ok(text) = std::str::from_utf8(bytes) else { return };
    let Ok(graphs) = kiln::ir::parse_module(text) else { return };
    for g in &graphs {
        let Ok(exe) = kiln::compile(g, kiln::Fusion::Fused) else { continue };
        let needed = kiln::runtime::memory::leaf_bytes(g) + exe.memory_plan().peak_bytes as u64;
        if needed > RUN_LIMIT {
            continue;
        }
        let mut feeds = kiln::ir::init::init_params(g, 0);
        for (_, n) in g.inputs() {
            let fill = if n.ty.dtype.is_float() { 0.5 } else { 0.0 };
            if let Some(name) = n.op.leaf_name() {
                feeds.insert(name.to_string(), kiln::ir::Value::splat(&n.ty, fill));
            }
        }
        match (kiln::ir::interp::run(g, &feeds), exe.run(&feeds)) {
            (Ok(want), Ok(got)) => {
                for (w, v) in want.iter().zip(&got) {
                    assert_eq!(w.ty(), v.ty(), "@{}: types differ", g.name());
                    let (w, v) = (w.to_f64_vec(), v.to_f64_vec());
                    let scale = w.iter().fold(1.0f64, |m, x| if x.is_finite() { m.max(x.abs()) } else { m });
                    for (a, b) in w.iter().zip(&v) {
                        let ok = a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-4 * scale;
                        assert!(ok, "@{}: interpreter {a}, JIT {b}", g.name());
                    }
                }
            }
            (Err(_), Err(_)) => {}
            (want, got) => panic!("@{}: interpreter {:?}, JIT {:?}", g.name(), want.err(), got.err()),
        }
    }
}

/// The `.npy` reader on arbitrary bytes: a value or one error; what it reads is no larger than
/// the bytes can hold.
pub fn npy(bytes: &[u8]) {
    if let Ok(v) = kiln::runtime::npy::from_bytes(bytes, "input.npy") {
        let numel: usize = v.shape().iter().product();
        assert!(numel <= bytes.len() * 8, "{numel} elements from {} bytes", bytes.len());
    }
}

/// The safetensors checkpoint loader on arbitrary bytes: a checkpoint or one error; what it
/// loads encodes and loads again to the same tensors and metadata.
pub fn checkpoint(bytes: &[u8]) {
    if let Ok(ck) = kiln::fit::checkpoint::from_bytes(bytes, "input.safetensors") {
        // Encoding may refuse (one error); what it encodes must load again, the same.
        let tensors = ck.tensors.iter().map(|(k, v)| (k.as_str(), v));
        if let Ok(encoded) = kiln::fit::checkpoint::to_bytes(tensors, &ck.metadata, "again.safetensors") {
            let again =
                kiln::fit::checkpoint::from_bytes(&encoded, "again.safetensors").expect("an encoded checkpoint loads");
            // Bit for bit (NaN is not equal to itself).
            let bits = |t: &std::collections::BTreeMap<String, kiln::ir::Value>| {
                t.iter()
                    .map(|(k, v)| (k.clone(), v.ty(), v.to_f64_vec().iter().map(|x| x.to_bits()).collect::<Vec<_>>()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(bits(&again.tensors), bits(&ck.tensors), "tensors change when encoded and loaded again");
            assert_eq!(again.metadata, ck.metadata, "metadata changes when encoded and loaded again");
        }
    }
}
