//! The broker's metrics, as Prometheus / OpenMetrics families: connections,
//! subscriptions, frames and bytes in and out, publishes routed, deliveries,
//! drops by reason, slow-consumer events and errors by code.
//!
//! Hot paths add to these once per read batch or write, never per message.
//! This module deliberately does not serve them: the binary exposes a
//! [`Registry`] over HTTP.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::protocol::ErrorCode;

/// A `reason` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why (e.g. `slow_consumer`).
    pub reason: &'static str,
}

/// A `code` label with the error's name (`docs/broker-protocol.md`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    /// The error's name (`protocol`, `bad_topic`, …).
    pub code: &'static str,
}

/// Every metric the broker keeps.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections open now.
    pub connections: Gauge,
    /// Subscriptions live now.
    pub subscriptions: Gauge,
    /// Frames read from clients.
    pub frames_in: Counter,
    /// Bytes read from clients.
    pub bytes_in: Counter,
    /// Frames queued to clients (deliveries and control frames).
    pub frames_out: Counter,
    /// Bytes written to clients.
    pub bytes_out: Counter,
    /// PUBLISH frames routed.
    pub publishes: Counter,
    /// DELIVER frames queued.
    pub deliveries: Counter,
    /// Deliveries dropped, by reason (under `drop_new`, control frames over
    /// the outbound limit are counted here too).
    pub dropped: Family<ReasonLabel, Counter>,
    /// Slow-consumer events (over the outbound limit, or a write stuck past
    /// the write deadline).
    pub slow_consumers: Counter,
    /// Subscribers found lagging (deliveries waited 100 ms in their queue):
    /// they stop holding back publishers that feed someone keeping up.
    pub lagging: Counter,
    /// ERROR frames sent, by code.
    pub errors: Family<CodeLabel, Counter>,
    /// Bytes queued to clients and not yet written, over every connection
    /// (frames plus a fixed cost per queued item); each connection's share
    /// stays under its outbound limit and leaves with it.
    pub queued_bytes: Gauge,
}

impl Metrics {
    /// Counts `n` deliveries dropped for `reason`.
    pub fn drop_deliveries(&self, reason: &'static str, n: u64) {
        self.dropped.get_or_create(&ReasonLabel { reason }).inc_by(n);
    }

    /// Deliveries dropped for `reason` so far.
    pub fn dropped(&self, reason: &'static str) -> u64 {
        self.dropped.get_or_create(&ReasonLabel { reason }).get()
    }

    /// ERROR frames sent with `code` so far.
    pub fn errors_sent(&self, code: ErrorCode) -> u64 {
        self.errors.get_or_create(&CodeLabel { code: code.name() }).get()
    }

    /// Counts an ERROR frame sent.
    pub fn error_sent(&self, code: ErrorCode) {
        self.errors.get_or_create(&CodeLabel { code: code.name() }).inc();
    }

    /// Adds every metric to `registry` under the `myc_broker_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("myc_broker");
        registry.register("connections", "Connections open now", self.connections.clone());
        registry.register("subscriptions", "Subscriptions live now", self.subscriptions.clone());
        registry.register("frames_in", "Frames read from clients", self.frames_in.clone());
        registry.register("bytes_in", "Bytes read from clients", self.bytes_in.clone());
        registry.register("frames_out", "Frames queued to clients", self.frames_out.clone());
        registry.register("bytes_out", "Bytes written to clients", self.bytes_out.clone());
        registry.register("publishes", "PUBLISH frames routed", self.publishes.clone());
        registry.register("deliveries", "DELIVER frames queued", self.deliveries.clone());
        registry.register("deliveries_dropped", "Deliveries dropped, by reason", self.dropped.clone());
        registry.register("slow_consumer_events", "Slow-consumer events", self.slow_consumers.clone());
        registry.register(
            "lagging_subscribers",
            "Subscribers found lagging (deliveries queued 100 ms); they no longer hold back publishers",
            self.lagging.clone(),
        );
        registry.register("errors_sent", "ERROR frames sent, by code", self.errors.clone());
        registry.register(
            "outbound_queued_bytes",
            "Bytes queued to clients and not yet written",
            self.queued_bytes.clone(),
        );
    }
}
