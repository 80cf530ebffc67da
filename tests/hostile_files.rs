//! Files from outside — `.npy` inputs and safetensors checkpoints — mutated byte by byte:
//! reading one gives a value or one clear error, never a panic, a crash or an allocation of
//! what a lying header claims. Bounded property tests; `KILN_FUZZ_CASES=100000` for a long run
//! (`docs/reliability.md` keeps the last one's outcomes).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::scratch::Scratch;
use kiln::ir::{DType, Value};
use proptest::prelude::*;

fn cases(default: u32) -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A scratch file unique to this test process and `name`, in a directory removed when the
/// returned guard drops.
fn scratch_file(name: &str) -> (Scratch, PathBuf) {
    let dir = Scratch::new("hostile", name);
    let path = dir.join(name);
    (dir, path)
}

/// One byte-level edit.
#[derive(Clone, Debug)]
enum Edit {
    /// Set the byte at a position.
    Set(usize, u8),
    /// Delete a span.
    Delete(usize, usize),
    /// Insert bytes.
    Insert(usize, Vec<u8>),
    /// Write a little-endian integer at a position (lengths and offsets are the usual liars).
    Integer(usize, u64),
    /// Cut the file.
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let interesting =
        prop::sample::select(vec![0u64, 1, 7, 0xff, 0xffff, 0x7fff_ffff, u32::MAX as u64, u64::MAX, 1 << 40]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(a, b)| Edit::Set(a, b)),
        (any::<usize>(), 0usize..16).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), prop::collection::vec(prop::sample::select(b"[(,)]{}:'0123456789eE-. \n".to_vec()), 1..8))
            .prop_map(|(a, b)| Edit::Insert(a, b)),
        (any::<usize>(), interesting).prop_map(|(a, v)| Edit::Integer(a, v)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let len = bytes.len().max(1);
        match e {
            Edit::Set(a, b) => {
                if !bytes.is_empty() {
                    bytes[a % len] = *b;
                }
            }
            Edit::Delete(a, n) => {
                let a = (a % len).min(bytes.len());
                let b = (a + n).min(bytes.len());
                bytes.drain(a..b);
            }
            Edit::Insert(a, b) => {
                let a = (a % len).min(bytes.len());
                bytes.splice(a..a, b.iter().copied());
            }
            Edit::Integer(a, v) => {
                let a = (a % len).min(bytes.len());
                let b = (a + 8).min(bytes.len());
                bytes.splice(a..b, v.to_le_bytes());
            }
            Edit::Truncate(n) => bytes.truncate(n % len),
        }
    }
    bytes
}

/// `.npy` files kiln writes, of every dtype and a few shapes.
fn npy_seeds() -> Vec<(DType, Vec<u8>)> {
    let values = [
        Value::from_vec(&[2, 3], vec![1.0f32, -2.0, 3.5, 0.0, 1e30, -0.25]).unwrap(),
        Value::from_vec(&[4], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap(),
        Value::from_vec(&[1, 2, 2], vec![1i32, -1, 7, 0]).unwrap(),
        Value::from_vec(&[], vec![42i64]).unwrap(),
        Value::from_vec(&[3], vec![true, false, true]).unwrap(),
    ];
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let (_dir, path) = scratch_file(&format!("seed{i}.npy"));
            kiln::runtime::npy::write(&path, v).unwrap();
            (v.dtype(), std::fs::read(&path).unwrap())
        })
        .collect()
}

/// A checkpoint of every dtype, with metadata.
fn safetensors_seed() -> Vec<u8> {
    let (_dir, path) = scratch_file("seed.safetensors");
    let a = Value::from_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    let b = Value::from_vec(&[3], vec![1i64, 2, 3]).unwrap();
    let c = Value::from_vec(&[2], vec![true, false]).unwrap();
    let meta = BTreeMap::from([("format".to_string(), "kiln.checkpoint.v1".to_string())]);
    kiln::fit::checkpoint::save(&path, [("a", &a), ("b", &b), ("c", &c)], &meta).unwrap();
    std::fs::read(&path).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(2000), ..ProptestConfig::default() })]

    /// A mutated `.npy` file reads as a value of the dtype asked for, whose element count
    /// is what its data held, or as one error naming the file.
    #[test]
    fn mutated_npy_files_read_or_fail_cleanly(which in 0usize..5, asked in 0usize..5, edits in prop::collection::vec(edit(), 1..5)) {
        let seeds = npy_seeds();
        let (_, seed) = &seeds[which % seeds.len()];
        let bytes = apply(seed.clone(), &edits);
        let (_dir, path) = scratch_file(&format!("case-{which}.npy"));
        std::fs::write(&path, &bytes).unwrap();
        let dtype = DType::ALL[asked % 5];
        match kiln::runtime::npy::read_dtype(&path, dtype) {
            Ok(v) => {
                prop_assert_eq!(v.dtype(), dtype);
                prop_assert!(v.ty().size_bytes() <= bytes.len(), "a {} value from {} bytes", v.ty(), bytes.len());
            }
            Err(e) => prop_assert!(e.to_string().starts_with(&path.display().to_string()), "{}", e),
        }
        let _ = kiln::runtime::npy::read_pixels(&path);
    }

    /// A mutated checkpoint loads, or is one error naming the file.
    #[test]
    fn mutated_checkpoints_load_or_fail_cleanly(edits in prop::collection::vec(edit(), 1..5)) {
        let bytes = apply(safetensors_seed(), &edits);
        let (_dir, path) = scratch_file("case.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        match kiln::fit::checkpoint::load(&path) {
            Ok(ck) => {
                let total: usize = ck.tensors.values().map(|v| v.ty().size_bytes()).sum();
                prop_assert!(total <= bytes.len(), "{} bytes of tensors from {} bytes", total, bytes.len());
            }
            Err(e) => prop_assert!(e.to_string().contains(&path.display().to_string()), "{}", e),
        }
    }
}
