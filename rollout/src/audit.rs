//! The audit log: one JSON object per line, appended, never rewritten
//! (`myc rollout history`; the format is in `docs/rollout.md`).
//!
//! Reading is forgiving line by line: a corrupt line hides only itself and
//! is reported with its number, so one bad line never hides the history.
//! It deliberately does not lock: [`crate::Rollout`] appends under the plan
//! lock, and readers need none because each entry is one `write`.

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// One change of one service's stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// When (RFC 3339, UTC, microseconds).
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

/// A line of the log that is not an entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// Its line number, from 1.
    pub line: usize,
    /// Why it is not an entry.
    pub error: String,
}

/// What a read of the log found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Log {
    /// Every readable entry (of the service asked for), oldest first.
    pub entries: Vec<Entry>,
    /// Every line that is not an entry, whichever service it was about.
    pub unreadable: Vec<Unreadable>,
}

/// Appends `entry` to the log at `path` (created when missing), as one
/// line written with one call, and flushes it to disk. Returns the log's
/// length before, so the caller can take the entry back with [`truncate`].
/// A log whose last line was torn (a crash mid-write) first gets the
/// newline it lacks, so the torn line stays one unreadable line instead of
/// swallowing this entry too.
///
/// # Errors
/// When the log cannot be written.
pub fn append(path: &Path, entry: &Entry) -> Result<u64, Error> {
    let mut line = serde_json::to_vec(entry).map_err(|error| Error::io(path, &std::io::Error::other(error)))?;
    line.push(b'\n');
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().create(true).read(true).append(true).open(path)?;
        let before = file.seek(SeekFrom::End(0))?;
        if before > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(before - 1))?;
            std::io::Read::read_exact(&mut file, &mut last)?;
            if last[0] != b'\n' {
                line.insert(0, b'\n');
            }
        }
        file.write_all(&line)?;
        file.sync_data()?;
        Ok(before)
    })();
    written.map_err(|error: std::io::Error| Error::io(path, &error))
}

/// Cuts the log at `path` back to `len` bytes: an entry whose change did
/// not happen is taken back.
///
/// # Errors
/// When the log cannot be written.
pub fn truncate(path: &Path, len: u64) -> Result<(), Error> {
    let cut = (|| {
        let file = std::fs::OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_data()
    })();
    cut.map_err(|error| Error::io(path, &error))
}

/// Every entry, oldest first (a missing log is empty); `service` keeps
/// only that service's. Lines that are not entries are listed apart.
///
/// # Errors
/// An unreadable file.
pub fn read(path: &Path, service: Option<&str>) -> Result<Log, Error> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Log::default()),
        Err(error) => return Err(Error::io(path, &error)),
    };
    // A device or a pipe could be read for ever (/dev/zero has no last line).
    if !file.metadata().map_err(|error| Error::io(path, &error))?.is_file() {
        return Err(Error::Io(path.to_path_buf(), "the audit log is not a regular file".to_owned()));
    }
    let mut log = Log::default();
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line = line.map_err(|error| Error::io(path, &error))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        // An entry whose time does not parse is as unreadable as broken JSON:
        // the gate orders changes by it.
        let entry = serde_json::from_slice::<Entry>(&line).map_err(|error| error.to_string()).and_then(|entry| {
            match humantime::parse_rfc3339_weak(&entry.time) {
                Ok(_) => Ok(entry),
                Err(error) => Err(format!("time {:?} is not an RFC 3339 time: {error}", entry.time)),
            }
        });
        match entry {
            Ok(entry) if service.is_none_or(|wanted| wanted == entry.service) => log.entries.push(entry),
            Ok(_) => {}
            Err(error) => log.unreadable.push(Unreadable { line: index + 1, error }),
        }
    }
    Ok(log)
}
