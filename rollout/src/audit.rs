//! The audit log: one JSON object per line, appended, never rewritten
//! (cli spec, `myc rollout history`).

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One change of one service's stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When (RFC 3339, UTC).
    pub time: String,
    /// Who.
    pub user: String,
    /// From which machine.
    pub host: String,
    /// Which service.
    pub service: String,
    /// `set`, `advance` or `rollback`.
    pub action: String,
    /// The stage before.
    pub from: String,
    /// The stage after.
    pub to: String,
    /// Why, in the operator's words.
    pub reason: String,
    /// Whether the gate was overridden.
    pub forced: bool,
    /// SHA-256 of the evidence report, when there was one.
    pub evidence_sha256: Option<String>,
}

/// Appends `entry` to the log at `path` (created when missing), as one
/// line written with one call, and flushes it to disk.
///
/// # Errors
/// When the log cannot be written.
pub fn append(path: &Path, entry: &Entry) -> Result<(), Error> {
    let mut line = serde_json::to_vec(entry).map_err(|error| Error::io(path, &std::io::Error::other(error)))?;
    line.push(b'\n');
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        file.write_all(&line)?;
        file.sync_data()
    })();
    written.map_err(|error| Error::io(path, &error))
}

/// Every entry, oldest first (a missing log is empty); `service` keeps
/// only that service's.
///
/// # Errors
/// An unreadable log, or a line that is not an entry (naming the line).
pub fn read(path: &Path, service: Option<&str>) -> Result<Vec<Entry>, Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::io(path, &error)),
    };
    let mut entries = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|error| Error::io(path, &error))?;
        if line.trim().is_empty() {
            continue;
        }
        let entry: Entry = serde_json::from_str(&line)
            .map_err(|error| Error::BadAudit(path.to_path_buf(), index + 1, error.to_string()))?;
        if service.is_none_or(|wanted| wanted == entry.service) {
            entries.push(entry);
        }
    }
    Ok(entries)
}
