//! What the CLI test files share: the repository root, scratch directories, running `coconut`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

#[path = "../../../coconut/tests/common/scratch.rs"]
mod scratch;
pub use scratch::ScratchDir;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// An empty scratch directory for one test, removed with everything in it when the test ends.
pub fn fresh_dir(tag: &str) -> ScratchDir {
    let dir = ScratchDir::new(tag);
    std::fs::create_dir_all(&*dir).unwrap();
    dir
}
/// Runs `coconut` and requires success, showing its stderr otherwise.
pub fn coconut_ok(args: &[&str]) -> std::process::Output {
    let out = coconut(args);
    assert!(out.status.success(), "coconut {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

pub fn coconut(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_coconut")).args(args).output().expect("run coconut")
}

/// Runs `coconut` and requires a clear refusal: exit status 1, no panic, and `expected` in stderr.
pub fn refused(args: &[&str], expected: &str) -> String {
    let out = coconut(args);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(if err.starts_with("error: invalid value") { 2 } else { 1 }), "coconut {args:?}: {err}");
    assert!(!err.contains("panicked"), "coconut {args:?} panicked: {err}");
    assert!(err.contains(expected), "coconut {args:?}: expected `{expected}` in: {err}");
    err
}
