//! The relay's metrics: connections by role, messages and bytes in and out,
//! drops by reason and invalid messages by reason, as prometheus-client
//! families. Counted per read batch or write, never per message.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels: the relay's domain and a role or reason.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Labels {
    /// The relay's domain (`market_data`, …).
    pub domain: &'static str,
    /// `producer` / `consumer`, or why a message was dropped.
    pub kind: &'static str,
}

/// Every metric the relays keep.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Connections open now, by role.
    pub connections: Family<Labels, Gauge>,
    /// Messages received from producers (identification headers excluded).
    pub messages_in: Family<Labels, Counter>,
    /// Message copies queued to consumers.
    pub messages_out: Family<Labels, Counter>,
    /// Bytes read.
    pub bytes_in: Family<Labels, Counter>,
    /// Bytes written.
    pub bytes_out: Family<Labels, Counter>,
    /// Message copies dropped, by reason (`slow_consumer`).
    pub dropped: Family<Labels, Counter>,
    /// Invalid messages, by reason (`bad_magic`, `wrong_domain`, …).
    pub invalid: Family<Labels, Counter>,
    /// Connections closed at once, by reason (`max_connections`).
    pub refused: Family<Labels, Counter>,
}

/// Why a message can be counted invalid (the `kind` of `myc_relay_invalid`).
pub const INVALID_REASONS: [&str; 9] = [
    "truncated",
    "too_large",
    "bad_magic",
    "bad_version",
    "framing",
    "malformed_tlv",
    "wrong_domain",
    "bad_checksum",
    "checksum_missing",
];

impl Metrics {
    /// Creates every series of `domain` at zero, so that `/metrics` lists
    /// them from the start rather than only once traffic has touched them
    /// (a dashboard or alert on `rate(...)` needs the series to exist).
    pub fn declare(&self, domain: &'static str) {
        for role in ["producer", "consumer"] {
            Metrics::get(&self.connections, domain, role);
        }
        for family in [&self.messages_in, &self.messages_out, &self.bytes_in, &self.bytes_out] {
            Metrics::get(family, domain, "all");
        }
        Metrics::get(&self.dropped, domain, "slow_consumer");
        Metrics::get(&self.refused, domain, "max_connections");
        for reason in INVALID_REASONS {
            Metrics::get(&self.invalid, domain, reason);
        }
    }

    /// A counter or gauge of `family` for `domain` and `kind`.
    pub fn get<M: Clone + Default>(family: &Family<Labels, M>, domain: &'static str, kind: &'static str) -> M {
        family.get_or_create(&Labels { domain, kind }).clone()
    }

    /// Adds every metric to `registry` under the `myc_relay_` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("myc_relay");
        registry.register("connections", "Connections open now, by role", self.connections.clone());
        registry.register("messages_in", "Messages received from producers", self.messages_in.clone());
        registry.register("messages_out", "Message copies queued to consumers", self.messages_out.clone());
        registry.register("bytes_in", "Bytes read", self.bytes_in.clone());
        registry.register("bytes_out", "Bytes written", self.bytes_out.clone());
        registry.register("dropped", "Message copies dropped, by reason", self.dropped.clone());
        registry.register("invalid", "Invalid messages, by reason", self.invalid.clone());
        registry.register("refused", "Connections closed at once, by reason", self.refused.clone());
    }
}
