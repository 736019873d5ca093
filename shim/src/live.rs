//! Settings applied while a producer runs: the difference between the last
//! good settings and a new good file, logged at INFO by key (secrets as
//! `***`), and the broker path's connection and breaker settings applied
//! at once — a new endpoint moves every unacknowledged message there.
//!
//! It deliberately does not validate (the settings watch hands over only
//! files that loaded and validated; a bad edit never reaches here) and does
//! not rebuild paths: buffer sizes, the spool, topics, relay paths, NATS
//! and shadow limits are reported as applying at the next start.

use std::sync::Arc;

use myc_config::Settings;

use crate::{BrokerSide, Publisher, ServicePublisher};

/// Keys applied at once by [`apply`].
const LIVE: &[&str] = &[
    "broker.endpoint",
    "broker.token",
    "broker.connect_timeout",
    "broker.backoff_initial",
    "broker.backoff_max",
    "broker.max_reconnects",
    "broker.breaker_failures",
    "broker.breaker_open_for",
];

/// Tables whose changes matter to a producer.
const WATCHED: &[&str] = &["broker", "nats", "relay", "topics", "shadow"];

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
pub fn apply<R: Publisher>(publisher: &ServicePublisher<R, BrokerSide>, old: &Settings, new: &Settings) -> Vec<String> {
    let changed = changed_keys(old, new);
    if changed.is_empty() {
        return Vec::new();
    }
    let shown: Vec<String> = changed.iter().map(|(key, value)| format!("{key} = {value}")).collect();
    tracing::info!(changed = %shown.join(", "), "settings changed");
    let live_broker = changed.iter().any(|(key, _)| LIVE.contains(&key.as_str()));
    let mut later: Vec<&str> = changed.iter().map(|(key, _)| key.as_str()).filter(|key| !LIVE.contains(key)).collect();
    if live_broker {
        match publisher.broker().publisher().reconfigure(new) {
            Ok(true) => {}
            Ok(false) => {
                later.extend(changed.iter().map(|(key, _)| key.as_str()).filter(|key| key.starts_with("broker.")))
            }
            Err(error) => tracing::warn!(%error, "broker connection settings not applied"),
        }
        if let Some(guard) = publisher.broker().primary_guard() {
            guard.set_breaker(new.broker.breaker_failures, new.broker.breaker_open_for.get());
        }
    }
    if !later.is_empty() {
        later.sort_unstable();
        later.dedup();
        tracing::warn!(keys = %later.join(", "), "these settings apply at the next start");
    }
    changed.into_iter().map(|(key, _)| key).collect()
}

/// Follows `watched`, applying each new good settings file to `publisher`
/// within the watch's debounce; stops when the returned guard drops.
pub fn follow<R: Publisher + 'static>(
    publisher: Arc<ServicePublisher<R, BrokerSide>>,
    watched: &myc_config::Watched<Settings>,
) -> myc_transport::AbortOnDrop {
    let mut changes = watched.subscribe();
    let mut last = watched.current();
    myc_transport::AbortOnDrop::spawn(async move {
        while changes.changed().await.is_ok() {
            let new = changes.borrow_and_update().clone();
            apply(&publisher, &last, &new);
            last = new;
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
}
