//! Tidy checks over the whole workspace: every Rust file opens with a `//!`
//! doc saying what it is for, and the pure crates never import tokio.

use std::fs;
use std::path::{Path, PathBuf};

use super::workspace;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "corpus" || name == "artifacts") {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    rust_files(&workspace(), &mut files);
    assert!(files.len() > 20, "found only {} files", files.len());
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| !fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.strip_prefix(workspace()).unwrap().display().to_string())
        .collect();
    assert!(undocumented.is_empty(), "files without a leading //! doc: {undocumented:?}");
}

#[test]
fn codec_and_verify_never_import_tokio() {
    for krate in ["codec", "verify"] {
        let manifest = fs::read_to_string(workspace().join(krate).join("Cargo.toml")).unwrap();
        assert!(!manifest.contains("tokio"), "{krate}/Cargo.toml names tokio");
        let mut files = Vec::new();
        rust_files(&workspace().join(krate), &mut files);
        for path in files {
            assert!(!fs::read_to_string(&path).unwrap().contains("tokio::"), "{} uses tokio", path.display());
        }
    }
}
