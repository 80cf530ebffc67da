//! Scratch directories of the integration tests: made empty for one test, removed when the
//! test passes, kept (to be read) when it fails.

use std::path::{Path, PathBuf};

/// A directory `kiln-PREFIX-PID-NAME` under the system's temporary directory, empty when
/// made; dropped, it is removed unless the thread is panicking (a failing test keeps its
/// files for whoever reads the failure).
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// A fresh, empty scratch directory for test `name` of the suite `prefix`.
    pub fn new(prefix: &str, name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("kiln-{prefix}-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("cannot make {}: {e}", path.display()));
        Scratch { path }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.path.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}
