//! A scratch directory for one test, removed with everything in it when dropped (as the test
//! ends, passed or failed). Shared by the coconut and coconut-cli test files.

use std::path::{Path, PathBuf};

pub struct ScratchDir(PathBuf);

impl ScratchDir {
    /// `coconut-{tag}-{pid}` in the system's temporary directory, not yet created (removed first
    /// if a killed run left it behind).
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("coconut-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        Self(dir)
    }
}

impl std::ops::Deref for ScratchDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<Path> for ScratchDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
