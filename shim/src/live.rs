//! Settings applied while a producer runs: the difference between the last
//! good settings and a new good file, logged at INFO by key (secrets as
//! `***`), and applied at once to both paths — connection, buffer, breaker
//! and spool settings of `[broker]`, `[topics]`, the relay sockets of
//! `[relay]` and the shadow limits of `[shadow]` (`docs/spool.md` and the
//! README's connections section say what each change does).
//!
//! It deliberately does not validate the file (the settings watch hands
//! over only files that loaded and validated) and does not rebuild paths:
//! `broker.backend` and the NATS keys other than its servers (`urls`,
//! `token`, `credentials_file`) apply at the next start, and are reported
//! so. What can still fail here — a new spool
//! directory that cannot be opened — is tried first, and a failure applies
//! nothing: the last good settings stay, as for a file that does not load.

use std::sync::Arc;

use myc_config::Settings;

use crate::{Error, PrimaryOptions, Publisher, ServicePublisher, ShadowLimits};

/// A path that takes new settings while running.
pub trait Reconfigure {
    /// Applies what this path takes of `settings`; `false` when it takes
    /// nothing (the build left it out).
    ///
    /// # Errors
    /// Settings the path cannot use (nothing changes).
    fn reconfigure(&self, settings: &Settings) -> Result<bool, Error>;
}

/// `[broker]` keys applied at once.
const LIVE_BROKER: &[&str] = &[
    "endpoint",
    "token",
    "connect_timeout",
    "backoff_initial",
    "backoff_max",
    "max_reconnects",
    "buffer_bytes",
    "buffer_messages",
    "buffer_deadline",
    "buffer_policy",
    "breaker_failures",
    "breaker_open_for",
    "spool",
    "spool_dir",
    "spool_max_bytes",
    "spool_fsync",
];

/// Tables whose changes matter to a producer.
const WATCHED: &[&str] = &["broker", "nats", "relay", "topics", "shadow"];

/// `[nats]` keys applied at once.
const LIVE_NATS: &[&str] = &["urls", "token", "credentials_file"];

/// Whether a running producer applies `key` (`table.key`) at once.
pub fn is_live(key: &str) -> bool {
    match key.split_once('.') {
        Some(("relay" | "topics" | "shadow", _)) => true,
        Some(("broker", key)) => LIVE_BROKER.contains(&key),
        Some(("nats", key)) => LIVE_NATS.contains(&key),
        _ => false,
    }
}

/// The keys (`table.key`) whose values differ, with the new value as text,
/// secrets masked.
pub fn changed_keys(old: &Settings, new: &Settings) -> Vec<(String, String)> {
    let (Ok(old), Ok(new)) = (serde_json::to_value(old), serde_json::to_value(new)) else { return Vec::new() };
    let mut changed = Vec::new();
    for table in WATCHED {
        let (Some(before), Some(after)) = (old.get(table), new.get(table)) else { continue };
        let (Some(before), Some(after)) = (before.as_object(), after.as_object()) else { continue };
        for (key, value) in after {
            if before.get(key) != Some(value) {
                let secret = key.contains("token") || key.contains("credentials");
                let shown = if secret { "***".to_owned() } else { value.to_string() };
                changed.push((format!("{table}.{key}"), shown));
            }
        }
    }
    changed
}

/// Applies `new` over `old` to `publisher`: logs every changed key at INFO,
/// applies the live ones, and says which wait for the next start. Returns
/// the changed keys.
///
/// # Errors
/// A change that cannot be applied (a spool directory that cannot be
/// opened or holds another run's messages): nothing was applied.
pub fn apply<R, B>(publisher: &ServicePublisher<R, B>, old: &Settings, new: &Settings) -> Result<Vec<String>, Error>
where
    R: Publisher + Reconfigure,
    B: Publisher + Reconfigure,
{
    let changed = changed_keys(old, new);
    if changed.is_empty() {
        return Ok(Vec::new());
    }
    let touched = |prefix: &str| changed.iter().any(|(key, _)| key.starts_with(prefix));
    let guard = publisher.broker().primary_guard();
    let mut later: Vec<&str> = changed.iter().map(|(key, _)| key.as_str()).filter(|key| !is_live(key)).collect();
    // The one change that can fail goes first: if it does, nothing changes.
    if touched("broker.spool") {
        match guard {
            Some(guard) => guard.set_spool(PrimaryOptions::from_settings(&new.broker).spool)?,
            None => {
                later.extend(changed.iter().map(|(key, _)| key.as_str()).filter(|key| key.starts_with("broker.spool")))
            }
        }
    }
    let shown: Vec<String> = changed.iter().map(|(key, value)| format!("{key} = {value}")).collect();
    tracing::info!(changed = %shown.join(", "), "settings changed");
    if touched("broker.") || touched("topics.") || touched("nats.") {
        match publisher.broker().publisher().reconfigure(new) {
            Ok(true) => {}
            Ok(false) => later.extend(
                changed
                    .iter()
                    .map(|(key, _)| key.as_str())
                    .filter(|key| key.starts_with("broker.") || key.starts_with("topics.")),
            ),
            Err(error) => tracing::warn!(%error, "broker path settings not applied"),
        }
    }
    if touched("relay.") || touched("broker.") {
        match publisher.relay().publisher().reconfigure(new) {
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "relay path settings not applied"),
        }
    }
    if touched("broker.breaker")
        && let Some(guard) = guard
    {
        guard.set_breaker(new.broker.breaker_failures, new.broker.breaker_open_for.get());
    }
    if touched("shadow.") {
        let limits = ShadowLimits::from_settings(&new.shadow);
        publisher.relay().set_shadow_limits(limits);
        publisher.broker().set_shadow_limits(limits);
    }
    if !later.is_empty() {
        later.sort_unstable();
        later.dedup();
        tracing::warn!(keys = %later.join(", "), "these settings apply at the next start");
    }
    Ok(changed.into_iter().map(|(key, _)| key).collect())
}

/// Follows `watched`, applying each new good settings file to `publisher`
/// within the watch's debounce; stops when the returned guard drops. A
/// change that cannot be applied is logged (WARN) and counted with the
/// watch's refused edits; the last good settings stay.
pub fn follow<R, B>(
    publisher: Arc<ServicePublisher<R, B>>,
    watched: &myc_config::Watched<Settings>,
) -> myc_transport::AbortOnDrop
where
    R: Publisher + Reconfigure + 'static,
    B: Publisher + Reconfigure + 'static,
{
    let mut changes = watched.subscribe();
    let mut last = watched.current();
    let counts = Arc::clone(watched.counts());
    myc_transport::AbortOnDrop::spawn(async move {
        while changes.changed().await.is_ok() {
            let new = changes.borrow_and_update().clone();
            match apply(&publisher, &last, &new) {
                Ok(_) => last = new,
                Err(error) => {
                    counts.rejected.inc();
                    tracing::warn!(%error, "settings change refused; the last good settings stay");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_keys_name_each_change_and_mask_secrets() {
        let old = Settings::default();
        let mut new = old.clone();
        new.broker.endpoint = "unix:/run/b.sock".to_owned();
        new.broker.token = "s3cret".to_owned();
        new.nats.credentials_file = "/etc/nats.creds".to_owned();
        new.topics.market_data = "md".to_owned();
        new.gate.min_messages += 1; // not a producer's concern
        let changed = changed_keys(&old, &new);
        let expect = [
            ("broker.endpoint", "\"unix:/run/b.sock\""),
            ("broker.token", "***"),
            ("nats.credentials_file", "***"),
            ("topics.market_data", "\"md\""),
        ];
        let changed: Vec<(&str, &str)> = changed.iter().map(|(key, value)| (key.as_str(), value.as_str())).collect();
        assert_eq!(changed, expect);
        assert!(changed_keys(&old, &old).is_empty());
    }

    #[test]
    fn every_producer_key_but_the_backend_and_the_nats_stream_applies_live() {
        for key in ["broker.buffer_policy", "broker.spool_dir", "relay.market_data", "topics.signal", "shadow.open_for"]
        {
            assert!(is_live(key), "{key}");
        }
        assert!(is_live("nats.urls"));
        for key in ["broker.backend", "nats.jetstream", "broker.server", "gate.min_messages"] {
            assert!(!is_live(key), "{key}");
        }
    }
}
