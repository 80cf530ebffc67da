//! The fuzz targets' corpus (`fuzz/corpus/`) and every input a fuzz run found
//! (`fuzz/regressions/`), replayed through the targets' own checks (`fuzz/src/checks.rs`) in
//! the ordinary test suite: a found crash stays fixed. Seeds must also be valid inputs, so the
//! fuzzer starts from inputs that reach deep.

#[path = "../fuzz/src/checks.rs"]
mod checks;

use std::path::{Path, PathBuf};

fn files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(dir);
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .collect();
    out.sort();
    out
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let mut n = 0;
    for dir in [format!("corpus/{target}"), format!("regressions/{target}")] {
        for path in files(&dir) {
            let bytes = std::fs::read(&path).unwrap();
            let r = std::panic::catch_unwind(|| check(&bytes));
            assert!(r.is_ok(), "{}: the {target} check failed", path.display());
            n += 1;
        }
    }
    n
}

#[test]
fn kir_corpus_and_regressions_pass_the_check_and_seeds_parse() {
    assert!(replay("kir", checks::kir) >= 9);
    for path in files("corpus/kir") {
        let text = std::fs::read_to_string(&path).unwrap();
        let graphs = kiln::ir::parse_module(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for g in graphs {
            kiln::ir::verify(&g).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
}

#[test]
fn npy_corpus_and_regressions_pass_the_check_and_seeds_load() {
    assert!(replay("npy", checks::npy) >= 9);
    for path in files("corpus/npy") {
        kiln::runtime::npy::read_any(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn checkpoint_corpus_and_regressions_pass_the_check_and_seeds_load() {
    assert!(replay("checkpoint", checks::checkpoint) >= 3);
    for path in files("corpus/checkpoint") {
        kiln::fit::checkpoint::load(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}
