//! Files that are never seen half written: each is written to a partial file beside its
//! target and renamed over it, so a reader — or a run killed at any moment — finds either the
//! old file or the complete new one. Checkpoints, curves, `.npy` outputs, model libraries and
//! their headers are written this way. (A rename within one directory is atomic on POSIX
//! file systems; a loaded `.so` keeps its old inode, so replacing it never crashes a program
//! that has it open.)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh partial path beside `path`: hidden, unique to this process and call, and ending in
/// `path`'s extension (writers that pick a format by extension still pick the right one).
pub fn partial_path(path: &Path) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let stem = path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let ext = path.extension().map_or_else(String::new, |e| format!(".{}", e.to_string_lossy()));
    path.with_file_name(format!(".{stem}.{}-{n}.partial{ext}", std::process::id()))
}

/// Runs `write` on a partial path beside `path`, then renames the result over `path`. If
/// `write` or the rename fails, the partial file is removed and `path` is left as it was.
pub fn replace<E>(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), E>,
    rename_failed: impl FnOnce(std::io::Error) -> E,
) -> Result<(), E> {
    let partial = partial_path(path);
    let result = write(&partial).and_then(|()| std::fs::rename(&partial, path).map_err(rename_failed));
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Writes `bytes` to `path` through a partial file and a rename ([`replace`]).
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    replace(path, |p| std::fs::write(p, bytes), |e| e)
}
