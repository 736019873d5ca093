//! The publishing shim producers talk to: one [`Publisher`] interface with
//! relay ([`RelayPublisher`]), broker ([`BrokerPublisher`]) and dual-write
//! ([`DualPublisher`]) implementations, and a [`ServicePublisher`] that
//! reads its rollout stage per message and switches at a message boundary;
//! and the relay's broker link ([`RelayBridge`]), which does the same for
//! producers that write to a relay and cannot be changed.
//!
//! It deliberately never builds or alters message bytes: it routes the bytes
//! the producer built, unchanged, to one path or both.
//!
//! Cargo features choose the paths a build carries: `relay` (the relay
//! client), `broker` (the Mycelium broker client) and `nats` (the NATS
//! backend), all on by default. A path left out is a [`RelaySide`] or
//! [`BrokerSide`] that is `Unavailable`: a stage that needs it is refused at
//! construction ([`ServicePublisher::try_new`]) and, asked for later by the
//! rollout plan, kept out (the current stage stays, one ERROR is logged and
//! `myc_shim_stage_unavailable_total` counts it).

// The relay's broker link needs both paths.
#[cfg(all(feature = "relay", feature = "broker"))]
mod handover;
#[cfg(all(feature = "relay", feature = "broker"))]
mod link;
pub mod live;
mod path;
mod primary;
mod publisher;
mod service;
mod summary;

#[cfg(all(feature = "relay", feature = "broker"))]
pub use link::{DirectionLabels, DomainLabel, DropLabels, LinkMetrics, RelayBridge, RelayLink, SourceStages};
pub use path::{GuardedPath, PathCounters, ShadowLimits};
pub use primary::{GuardCounters, PrimaryGuard, PrimaryOptions, SpoolPolicy};
#[cfg(feature = "broker")]
pub use publisher::BrokerPublisher;
#[cfg(feature = "nats")]
pub use publisher::NatsBrokerPublisher;
pub use publisher::Progress;
#[cfg(feature = "relay")]
pub use publisher::RelayPublisher;
pub use publisher::{BrokerSide, Publisher, RelaySide, RunOutcome, Unavailable, split};
pub use service::{DualPublisher, ServicePublisher, StageHandle, watch_plan, watch_plan_counted};
pub use summary::{PathSummary, Summary};

/// The one error type of the shim.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The relay path refused the message.
    #[cfg(feature = "relay")]
    #[error("relay path: {0}")]
    Relay(#[from] myc_relay_compat::Error),
    /// The broker path refused the message.
    #[cfg(any(feature = "broker", feature = "nats"))]
    #[error("broker path: {0}")]
    Broker(#[from] myc_broker::Error),
    /// A path this build does not carry.
    #[error("this build has no {path} path: enable the `{feature}` feature of myc-shim")]
    PathUnavailable {
        /// The path: relay, broker or NATS.
        path: &'static str,
        /// The Cargo feature that brings it.
        feature: &'static str,
    },
    /// A starting stage that needs a path this build does not carry.
    #[error(
        "stage {stage} needs the {path} path, which this build lacks: enable the `{feature}` feature of myc-shim \
         (in Cargo.toml: myc-shim = {{ …, features = [\"{feature}\"] }})"
    )]
    StageUnavailable {
        /// The stage asked for.
        stage: myc_config::Stage,
        /// The path it needs.
        path: &'static str,
        /// The Cargo feature that brings it.
        feature: &'static str,
    },
    /// Bytes that are not whole Protocol V2 messages.
    #[error("not a whole Protocol V2 message")]
    NotAMessage,
    /// A `relay_domain` with no relay socket or topic (1–4 have both).
    #[error("relay_domain {0} has no relay socket or topic")]
    UnknownDomain(u8),
    /// The stage routes nowhere (cannot happen with the four stages).
    #[error("the stage routes to no path")]
    NoPath,
    /// The primary broker path's breaker is open: the broker failed
    /// repeatedly, and publishes fail at once until a probe succeeds.
    #[error("circuit_open: the broker path failed repeatedly; publishes fail at once until it recovers")]
    CircuitOpen,
    /// The spool refused the message (`spool_full`) or could not be used.
    #[error("spool: {0}")]
    Spool(myc_transport::Error),
    /// Settings the shim cannot use.
    #[error("settings: {0}")]
    Settings(String),
}

/// How the clients reconnect, per the broker settings (used by both paths'
/// clients; `transport::ReconnectOptions::default()` is the same values).
pub fn reconnect_options(broker: &myc_config::BrokerSettings) -> myc_transport::ReconnectOptions {
    myc_transport::ReconnectOptions {
        backoff_base: broker.backoff_initial.get(),
        backoff_max: broker.backoff_max.get(),
        max_reconnects: Some(broker.max_reconnects).filter(|&n| n > 0),
        connect_timeout: broker.connect_timeout.get(),
    }
}

/// The client buffer the broker settings describe (used by both paths).
pub fn buffer_limits(broker: &myc_config::BrokerSettings) -> myc_transport::BufferLimits {
    let policy = match broker.buffer_policy {
        myc_config::BufferPolicy::Block => myc_transport::FullPolicy::Block,
        myc_config::BufferPolicy::DropNewest => myc_transport::FullPolicy::DropNewest,
        myc_config::BufferPolicy::DropOldest => myc_transport::FullPolicy::DropOldest,
    };
    myc_transport::BufferLimits {
        max_bytes: broker.buffer_bytes,
        max_messages: broker.buffer_messages,
        deadline: broker.buffer_deadline.get(),
        policy,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clients_built_in_code_default_to_the_settings_defaults() {
        let settings = myc_config::Settings::default();
        assert_eq!(super::reconnect_options(&settings.broker), myc_transport::ReconnectOptions::default());
        assert_eq!(super::buffer_limits(&settings.broker), myc_transport::BufferLimits::default());
        // The broker client exists only in builds with a broker path.
        #[cfg(any(feature = "broker", feature = "nats"))]
        {
            let client = myc_broker::ClientOptions::new(myc_transport::Endpoint::Unix("/unused".into()));
            assert_eq!(
                (client.reconnect, client.buffer),
                (myc_transport::ReconnectOptions::default(), myc_transport::BufferLimits::default())
            );
        }
    }
}
