//! Settings for every part of the toolkit: the schema ([`Settings`]),
//! layered loading ([`load`]: embedded defaults, then the file, then
//! `MYC_*` environment variables, then command-line overrides),
//! validation ([`Settings::validate`]), and hot reload onto a `watch`
//! channel ([`Watched`]), keeping the last good settings when an edit is bad.
//!
//! It deliberately does not act on settings: it never opens sockets, never
//! starts servers and never decides rollout routes. It only says what the
//! settings are, or why a file was refused.

mod duration;
mod load;
mod schema;
mod validate;
mod watch;

use std::path::PathBuf;

pub use duration::Span;
pub use load::{DEFAULT_FILE, Sources, load, load_str, parse};
pub use schema::{
    AclRule, AclSettings, Backend, BrokerServerSettings, BrokerSettings, BufferPolicy, ConsoleSettings, FeedSettings,
    GateSettings, GuardSettings, MetricsSettings, NatsSettings, Ratio, RelayPaths, RelayQueuePolicy,
    RelayServerSettings, RolloutSettings, ServiceSettings, Settings, ShadowSettings, SlowConsumer, SpoolMode, Stage,
    Topics, socket_mode,
};
pub use validate::check_service_name;
pub use watch::{DEBOUNCE, ReloadCounts, Watched};

/// The one error type of the config crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The named settings file does not exist.
    #[error("settings file {} not found", .0.display())]
    Missing(PathBuf),
    /// The layers could not be read into the schema: syntax, unknown keys,
    /// mistyped values; each line names the key and where it came from.
    #[error("{0}")]
    Parse(String),
    /// The settings parse but cannot be used; one entry per problem.
    #[error("invalid settings:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
    /// A file's directory cannot be watched.
    #[error("cannot watch {path}: {1}", path = .0.display())]
    Watch(PathBuf, String),
}
