//! The `myc` binary's one integration-test binary: each module drives the
//! built `myc` as a user would, plus the workspace tidy checks.

#![allow(
    clippy::unwrap_used,
    clippy::print_stderr,
    reason = "a failed unwrap is a failed test; a skipped test says so"
)]

mod cli;
mod console;
mod operator;
mod produce;
mod rollout;
mod tidy;
mod tlv;
mod trust;
mod verify;
mod verify_live;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `myc` with `args`, feeding `stdin`, and returns what it did.
pub(crate) fn myc(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(args)
        .env_remove("MYC_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // A command may exit before reading everything; that is its business.
    let _ = input.write_all(stdin);
    drop(input);
    child.wait_with_output().unwrap()
}

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}
