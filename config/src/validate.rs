//! Validation: what the schema lets through but the toolkit cannot use —
//! endpoints that do not parse, empty or malformed topics, zero limits,
//! unknown policy names. Separate from parsing, so a file can be checked
//! for both kinds of problem and every problem is reported at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Backend, Error, Settings};

/// The largest `broker.server.max_frame` the broker protocol allows (the
/// broker crate's `MAX_MAX_FRAME`; this crate does not depend on it).
const MAX_BROKER_FRAME: usize = 16 * 1024 * 1024;

impl Settings {
    /// Every problem with these settings.
    ///
    /// # Errors
    /// [`Error::Invalid`] listing each problem with its key.
    pub fn validate(&self) -> Result<(), Error> {
        let mut problems = Vec::new();
        let mut problem = |key: &str, what: String| problems.push(format!("`{key}`: {what}"));

        check_endpoint(&self.broker.endpoint, "broker.endpoint", &mut problem);
        for (index, listen) in self.broker.server.listen.iter().enumerate() {
            check_endpoint(listen, &format!("broker.server.listen[{index}]"), &mut problem);
        }
        let relays = [
            ("relay.market_data", &self.relay.market_data),
            ("relay.signal", &self.relay.signal),
            ("relay.execution", &self.relay.execution),
            ("relay.system", &self.relay.system),
        ];
        let mut seen = BTreeSet::new();
        for (key, path) in relays {
            if path.as_os_str().is_empty() {
                problem(key, "a relay socket path cannot be empty".to_owned());
            } else if !seen.insert(path) {
                problem(key, format!("{} is the socket of another domain too", path.display()));
            }
        }
        let topics = [
            ("topics.market_data", &self.topics.market_data),
            ("topics.signal", &self.topics.signal),
            ("topics.execution", &self.topics.execution),
            ("topics.system", &self.topics.system),
        ];
        for (key, topic) in topics {
            if let Err(why) = check_topic(topic) {
                problem(key, why);
            }
        }
        let positive = [
            ("broker.buffer_bytes", self.broker.buffer_bytes as u64),
            ("broker.buffer_messages", self.broker.buffer_messages as u64),
            ("broker.server.max_frame", self.broker.server.max_frame as u64),
            ("broker.server.max_connections", self.broker.server.max_connections as u64),
            ("relay_server.max_message", self.relay_server.max_message as u64),
            ("relay_server.max_connections", self.relay_server.max_connections as u64),
            ("relay_server.queue_messages", self.relay_server.queue_messages as u64),
            ("relay_server.queue_bytes", self.relay_server.queue_bytes as u64),
            ("shadow.failure_threshold", u64::from(self.shadow.failure_threshold)),
            ("shadow.queue_bytes", self.shadow.queue_bytes as u64),
            ("gate.min_messages", self.gate.min_messages),
        ];
        for (key, value) in positive {
            if value == 0 {
                problem(key, "must be greater than 0".to_owned());
            }
        }
        // The broker protocol's ceiling: a frame's delivery must fit well
        // inside one subscriber's 64 MiB outbound limit, and clients read
        // frames of at most 16 MiB.
        if self.broker.server.max_frame > MAX_BROKER_FRAME {
            problem(
                "broker.server.max_frame",
                format!("{} is over the protocol's limit of {MAX_BROKER_FRAME} (16 MiB)", self.broker.server.max_frame),
            );
        }
        for (key, mode) in [
            ("broker.server.socket_mode", &self.broker.server.socket_mode),
            ("relay_server.socket_mode", &self.relay_server.socket_mode),
        ] {
            if crate::socket_mode(mode).is_none() {
                problem(
                    key,
                    format!("{mode:?} is not an octal file mode without the world-writable bit (like \"0660\")"),
                );
            }
        }
        if self.broker.spool != crate::SpoolMode::Off {
            if self.broker.spool_dir.as_os_str().is_empty() {
                problem("broker.spool_dir", "a spool needs a directory".to_owned());
            }
            // Room for at least one record of the largest message.
            if self.broker.spool_max_bytes < 1024 * 1024 {
                problem(
                    "broker.spool_max_bytes",
                    format!("{} is under the least useful spool (1 MiB)", self.broker.spool_max_bytes),
                );
            }
        }
        if self.broker.breaker_failures > 0 && self.broker.breaker_open_for.0.is_zero() {
            problem("broker.breaker_open_for", "must be longer than 0 while broker.breaker_failures is set".to_owned());
        }
        if self.broker.backoff_initial > self.broker.backoff_max {
            problem("broker.backoff_initial", "is larger than broker.backoff_max".to_owned());
        }
        if self.broker.backend == Backend::Nats && self.nats.urls.is_empty() {
            problem("nats.urls", "the nats backend needs at least one server URL".to_owned());
        }
        if !(1..=5).contains(&self.nats.replicas) {
            problem(
                "nats.replicas",
                format!(
                    "{} copies: JetStream keeps 1 to 5 copies of a stream (3 on a three-node cluster, so a node can \
                     be lost without losing stored messages)",
                    self.nats.replicas
                ),
            );
        }
        if self.nats.max_bytes > i64::MAX as u64 || self.nats.max_msgs > i64::MAX as u64 {
            problem("nats.max_bytes", "the stream limits must fit a signed 64-bit number (0: no limit)".to_owned());
        }
        for (index, url) in self.nats.urls.iter().enumerate() {
            if !(url.starts_with("nats://") || url.starts_with("tls://")) {
                problem(&format!("nats.urls[{index}]"), format!("{url:?} is not a nats:// or tls:// URL"));
            }
        }
        if !self.metrics.listen.is_empty() && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            problem("metrics.listen", format!("{:?} is not an address like 127.0.0.1:9464", self.metrics.listen));
        }
        for (index, target) in self.console.scrape.iter().enumerate() {
            if let Err(why) = check_scrape_url(target) {
                problem(&format!("console.scrape[{index}]"), why);
            }
        }
        check_console_tokens(&self.console, &mut problem);
        for (name, service) in &self.services {
            if let Err(why) = check_service_name(name) {
                problem(&format!("services.{name}"), why);
            }
            if service.source == Some(0) {
                problem(&format!("services.{name}.source"), "source 0 is not a Protocol V2 source id".to_owned());
            }
        }
        let guard = &self.guard;
        for (key, ratio) in [
            ("guard.max_failed_ratio", guard.max_failed_ratio),
            ("guard.max_error_increase", guard.max_error_increase),
            ("guard.max_shadow_dropped_ratio", guard.max_shadow_dropped_ratio),
            ("guard.max_rss_increase", guard.max_rss_increase),
        ] {
            if !ratio.get().is_finite() || ratio.get() < 0.0 {
                problem(key, format!("{ratio} is not a finite number of at least 0"));
            }
        }
        if guard.interval.get().is_zero() {
            problem("guard.interval", "must be longer than 0s".to_owned());
        }
        if guard.window < guard.interval {
            problem("guard.window", format!("{} is shorter than guard.interval ({})", guard.window, guard.interval));
        }
        if guard.verify_every.get() > std::time::Duration::ZERO && guard.verify_for.get().is_zero() {
            problem("guard.verify_for", "must be longer than 0s when guard.verify_every is on".to_owned());
        }
        for (index, target) in guard.targets.iter().enumerate() {
            if let Err(why) = check_scrape_url(target) {
                problem(&format!("guard.targets[{index}]"), why);
            }
        }
        if problems.is_empty() { Ok(()) } else { Err(Error::Invalid(problems)) }
    }
}

impl Settings {
    /// What these settings allow that an operator probably did not mean:
    /// not errors (the toolkit runs), but worth a line in `myc config check`.
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (name, rule) in &self.acl.clients {
            if !rule.is_bound() {
                warnings.push(format!(
                    "`acl.clients.{name}`: has neither `token` nor `uids`, so any client that says it is \
                     {name:?} in its HELLO gets these permissions"
                ));
            }
        }
        warnings
    }
}

fn check_endpoint(text: &str, key: &str, problem: &mut impl FnMut(&str, String)) {
    let valid = match text.split_once(':') {
        Some(("unix", path)) => !path.is_empty(),
        Some(("tcp", address)) => {
            address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        }
        _ => false,
    };
    if !valid {
        problem(key, format!("{text:?} is not an endpoint like unix:/path or tcp:host:port"));
    }
}

/// Service names as the rollout plan, the audit log, the console's URLs and
/// metric labels carry them: `[a-z0-9][a-z0-9_-]{0,63}`. Nothing that could
/// be markup, a path, a quote or a label separator.
///
/// # Errors
/// Why `name` is not a service name, in an operator's words.
pub fn check_service_name(name: &str) -> Result<(), String> {
    let rule = "a service name is 1 to 64 characters of a-z, 0-9, '_' and '-', starting with a letter or digit";
    let first_ok = name.bytes().next().is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit());
    let rest_ok =
        name.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_' || byte == b'-');
    if first_ok && rest_ok && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!("{name:?} is not a service name ({rule})"))
    }
}

/// A metrics endpoint to scrape: `http://host:port/path`. Anything else
/// (a bare `host:port`, https, no port) would pass as a string and then never
/// answer, leaving the console without rates and nobody told why.
fn check_scrape_url(target: &str) -> Result<(), String> {
    let example = "like http://127.0.0.1:9466/metrics";
    let Some(rest) = target.strip_prefix("http://") else {
        return Err(format!("{target:?} is not an http:// URL ({example})"));
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|port| port != 0));
    if !port_ok {
        return Err(format!("{target:?} has no host:port ({example})"));
    }
    if path.is_empty() {
        return Err(format!("{target:?} has no path ({example})"));
    }
    Ok(())
}

/// `[console] tokens`: names that can stand in an audit entry, values that
/// are not empty (an empty token would let anyone in under that name) and
/// distinct (two names with one token could not be told apart).
fn check_console_tokens(console: &crate::ConsoleSettings, problem: &mut impl FnMut(&str, String)) {
    let mut owners: BTreeMap<&str, String> = BTreeMap::new();
    if !console.token.is_empty() {
        owners.insert(console.token.as_str(), "console.token".to_owned());
    }
    for (name, token) in &console.tokens {
        let key = format!("console.tokens.{name}");
        let name_ok = (1..=64).contains(&name.len())
            && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
        if !name_ok {
            problem(&key, "a token's name is 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'".to_owned());
        }
        if token.is_empty() {
            problem(&key, "the token is empty: set a secret (e.g. `openssl rand -hex 32`) or remove it".to_owned());
            continue;
        }
        // The secret itself is never quoted back.
        match owners.get(token.as_str()) {
            Some(owner) => problem(&key, format!("has the same token as `{owner}`: each name needs its own")),
            None => {
                owners.insert(token.as_str(), key);
            }
        }
    }
}

/// Topics as the broker spec allows them: 1–255 bytes of `[a-z0-9_.-]`,
/// not starting or ending with `.`.
fn check_topic(topic: &str) -> Result<(), String> {
    if topic.is_empty() || topic.len() > 255 {
        return Err(format!("{topic:?}: a topic is 1 to 255 bytes"));
    }
    if let Some(bad) = topic.chars().find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '-')) {
        return Err(format!("{topic:?}: {bad:?} is not allowed in a topic (a-z, 0-9, '.', '_', '-')"));
    }
    if topic.starts_with('.') || topic.ends_with('.') {
        return Err(format!("{topic:?}: a topic cannot start or end with '.'"));
    }
    Ok(())
}
