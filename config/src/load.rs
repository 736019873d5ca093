//! Layered loading: the embedded defaults, then the file, then
//! `POLYGON_RELAY_SOCKET`, then `MYC_*` environment variables (`__` nests:
//! `MYC_BROKER__ENDPOINT`), then command-line overrides — each layer
//! overriding the one before. Parsing and validation are separate steps:
//! [`load`] does both, in that order.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};

use crate::{Error, Settings};

/// The file consulted when none is named.
pub const DEFAULT_FILE: &str = "myc.toml";

/// Where settings come from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// The settings file, if any.
    pub file: Option<PathBuf>,
    /// Read `MYC_*` and `POLYGON_RELAY_SOCKET` from the environment.
    pub environment: bool,
    /// Command-line overrides: dotted key (`relay.market_data`) and value.
    pub overrides: Vec<(String, String)>,
}

impl Sources {
    /// The usual sources: `file` if given, else `./myc.toml` when present,
    /// else none; and the environment.
    pub fn discover(file: Option<PathBuf>) -> Sources {
        let file = file.or_else(|| Some(PathBuf::from(DEFAULT_FILE)).filter(|path| path.is_file()));
        Sources { file, environment: true, overrides: Vec::new() }
    }

    /// Only `file` (no environment, no overrides): what `myc config check` reads.
    pub fn file_only(file: &Path) -> Sources {
        Sources { file: Some(file.to_path_buf()), environment: false, overrides: Vec::new() }
    }

    /// Adds a command-line override.
    #[must_use]
    pub fn with_override(mut self, key: &str, value: impl Into<String>) -> Sources {
        self.overrides.push((key.to_owned(), value.into()));
        self
    }
}

/// Reads every layer, then validates: the effective settings, or every
/// reason they are refused. Relative rollout paths are resolved against the
/// file's directory; the seed's compatibility keys are folded into their
/// modern keys.
///
/// # Errors
/// A missing or unreadable file, a syntax error, an unknown key or a
/// mistyped value ([`Error::Parse`], naming the key and the file), or a
/// value the schema accepts but the toolkit cannot use ([`Error::Invalid`]).
pub fn load(sources: &Sources) -> Result<Settings, Error> {
    let mut settings = parse(sources)?;
    settings.fold_compatibility_keys();
    if let Some(dir) = sources.file.as_deref().and_then(Path::parent) {
        settings.rollout.file = dir.join(&settings.rollout.file);
        settings.rollout.audit_log = dir.join(&settings.rollout.audit_log);
        settings.console.reports_dir = dir.join(&settings.console.reports_dir);
        settings.broker.spool_dir = dir.join(&settings.broker.spool_dir);
    }
    settings.validate()?;
    Ok(settings)
}

/// Loads settings from TOML text alone (defaults, then the text; no
/// environment), validated — for tests, tools and fuzzing.
///
/// # Errors
/// As [`load`].
pub fn load_str(text: &str) -> Result<Settings, Error> {
    let figment = Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(text));
    let mut settings: Settings = figment.extract().map_err(|error| Error::Parse(describe(&error)))?;
    settings.fold_compatibility_keys();
    settings.validate()?;
    Ok(settings)
}

/// Reads every layer into the schema, without validating.
///
/// # Errors
/// As [`load`], but never [`Error::Invalid`].
pub fn parse(sources: &Sources) -> Result<Settings, Error> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    if let Some(file) = &sources.file {
        if !file.is_file() {
            return Err(Error::Missing(file.clone()));
        }
        figment = figment.merge(Toml::file_exact(file));
    }
    if sources.environment {
        if let Ok(path) = std::env::var("POLYGON_RELAY_SOCKET") {
            figment = figment.merge(("relay.market_data", path));
        }
        // MYC_CONFIG names the file; it is not a key.
        figment = figment.merge(Env::prefixed("MYC_").split("__").ignore(&["config"]));
    }
    for (key, value) in &sources.overrides {
        figment = figment.merge((key.as_str(), value.as_str()));
    }
    figment.extract().map_err(|error| Error::Parse(describe(&error)))
}

/// Every problem figment found, one per line, each naming the key and
/// where its value came from.
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|error| {
            let mut line = String::new();
            if !error.path.is_empty() {
                line.push_str(&format!("`{}`: ", error.path.join(".")));
            }
            line.push_str(&error.kind.to_string());
            if let Some(source) = error.metadata.as_ref().and_then(|metadata| metadata.source.as_ref()) {
                line.push_str(&format!(" (in {source})"));
            } else if let Some(metadata) = &error.metadata {
                line.push_str(&format!(" (from {})", metadata.name));
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl Settings {
    /// The seed's broker keys, rewritten as their modern equivalents:
    /// `socket_path` → `endpoint = "unix:PATH"`, `connection_timeout_ms` →
    /// `connect_timeout`, `retry_backoff_ms` → `backoff_initial`
    /// (`max_reconnects` has kept its name).
    pub fn fold_compatibility_keys(&mut self) {
        let broker = &mut self.broker;
        if let Some(path) = broker.socket_path.take() {
            broker.endpoint = format!("unix:{}", path.display());
        }
        if let Some(ms) = broker.connection_timeout_ms.take() {
            broker.connect_timeout = crate::Span::from_millis(ms);
        }
        if let Some(ms) = broker.retry_backoff_ms.take() {
            broker.backoff_initial = crate::Span::from_millis(ms);
        }
    }

    /// The settings as TOML (what `myc config print-default` and `show` print).
    ///
    /// # Errors
    /// Never for settings built by this crate.
    pub fn to_toml(&self) -> Result<String, Error> {
        toml::to_string_pretty(self).map_err(|error| Error::Parse(error.to_string()))
    }
}
