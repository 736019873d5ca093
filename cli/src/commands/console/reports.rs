//! The verify reports the console shows and advances with: the `*.json`
//! files of `[console] reports_dir`, each parsed once and re-read only when
//! its size or modification time changes, and "the latest report" of a
//! service picked by `generated_at` among the reports about its source.
//!
//! A report that does not parse, or claims to be made more than a minute
//! in the future, is never the latest: it is listed as invalid with the
//! reason. It deliberately does not judge evidence; the gate does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use serde_json::Value;

/// How far in the future `generated_at` may be before a report is invalid.
const MAX_AHEAD: Duration = myc_rollout::gate::MAX_CLOCK_SKEW;

/// One report file as last read.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    /// Its file name without `.json`: the id in `/api/reports/{id}`.
    pub(crate) id: String,
    /// The parsed JSON.
    pub(crate) value: Value,
    /// The file's bytes (the evidence an advance hands to the gate).
    pub(crate) bytes: Vec<u8>,
    /// Its `generated_at`.
    pub(crate) generated_at: SystemTime,
    /// The source ids it counts (`per_source` keys, else `sources`).
    pub(crate) sources: Vec<u8>,
}

/// A file in the directory that is not a usable report.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Invalid {
    /// Its file name.
    pub(crate) file: String,
    /// Why it is not used.
    pub(crate) reason: String,
}

/// What a file held when last read: a report, or why not.
#[derive(Debug, Clone)]
enum Parsed {
    Report(Box<Report>),
    Invalid(String),
}

/// A cached read: the file's length and modification time when read, and
/// what it held.
#[derive(Debug, Clone)]
struct Cached {
    len: u64,
    modified: Option<SystemTime>,
    parsed: Parsed,
}

/// The reports directory, cached by file identity.
#[derive(Debug)]
pub(crate) struct Reports {
    /// The directory.
    dir: PathBuf,
    /// path → its last read; replaced only when the file's length or
    /// modification time differ.
    cache: Mutex<BTreeMap<PathBuf, Cached>>,
    /// Files read so far (tests check that unchanged files are not re-read).
    reads: std::sync::atomic::AtomicU64,
}

impl Reports {
    pub(crate) fn new(dir: PathBuf) -> Reports {
        Reports { dir, cache: Mutex::default(), reads: std::sync::atomic::AtomicU64::new(0) }
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Files read since start.
    #[cfg(test)]
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every usable report, oldest first, and every invalid file, judged
    /// at `now`.
    pub(crate) fn scan(&self, now: SystemTime) -> (Vec<Report>, Vec<Invalid>) {
        let mut cache = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
                    .collect()
            })
            .unwrap_or_default();
        cache.retain(|path, _| paths.contains(path));
        let (mut reports, mut invalid) = (Vec::new(), Vec::new());
        for path in paths {
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if !meta.is_file() {
                continue;
            }
            let (len, modified) = (meta.len(), meta.modified().ok());
            let fresh = cache.get(&path).is_some_and(|cached| cached.len == len && cached.modified == modified);
            if !fresh {
                self.reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                cache.insert(path.clone(), Cached { len, modified, parsed: parse(&path) });
            }
            let file = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
            match &cache[&path].parsed {
                Parsed::Invalid(reason) => invalid.push(Invalid { file, reason: reason.clone() }),
                Parsed::Report(report) => match report.generated_at.duration_since(now) {
                    Ok(ahead) if ahead > MAX_AHEAD => invalid.push(Invalid {
                        file,
                        reason: format!(
                            "generated_at is {} in the future (more than a minute)",
                            humantime::format_duration(Duration::from_secs(ahead.as_secs()))
                        ),
                    }),
                    _ => reports.push((**report).clone()),
                },
            }
        }
        reports.sort_by_key(|report| report.generated_at);
        invalid.sort_by(|a, b| a.file.cmp(&b.file));
        (reports, invalid)
    }

    /// The newest usable report about `source`'s stream at `now`.
    pub(crate) fn latest(&self, source: Option<u8>, now: SystemTime) -> Option<Report> {
        let source = source?;
        self.scan(now).0.into_iter().rev().find(|report| report.sources.contains(&source))
    }

    /// The report with file name `id` (usable or not: an operator may look
    /// at a report from the future to see what is wrong with it).
    pub(crate) fn get(&self, id: &str) -> Option<Value> {
        let path = self.dir.join(format!("{id}.json"));
        if path.parent() != Some(self.dir.as_path()) {
            return None;
        }
        match parse(&path) {
            Parsed::Report(report) => Some(report.value),
            Parsed::Invalid(_) => None,
        }
    }
}

fn parse(path: &Path) -> Parsed {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) => return Parsed::Invalid(format!("cannot be read: {error}")),
    };
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(value) => value,
        Err(error) => return Parsed::Invalid(format!("not JSON: {error}")),
    };
    if !value.get("verdict").is_some_and(Value::is_string) {
        return Parsed::Invalid("not a verify report (no verdict)".to_owned());
    }
    let Some(generated_at) =
        value.get("generated_at").and_then(Value::as_str).and_then(|text| humantime::parse_rfc3339_weak(text).ok())
    else {
        return Parsed::Invalid("generated_at is missing or not an RFC 3339 time".to_owned());
    };
    let sources: Vec<u8> = match value.get("per_source").and_then(Value::as_object) {
        Some(per_source) => per_source.keys().filter_map(|key| key.parse().ok()).collect(),
        None => value
            .get("sources")
            .and_then(Value::as_array)
            .map(|sources| sources.iter().filter_map(|id| u8::try_from(id.as_u64()?).ok()).collect())
            .unwrap_or_default(),
    };
    let id = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    Parsed::Report(Box::new(Report { id, value, bytes, generated_at, sources }))
}
