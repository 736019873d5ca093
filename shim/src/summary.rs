//! What the shim did, per path: the summary `myc produce --summary-json`
//! prints (cli spec) and the Prometheus metrics the binary serves.

use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::Publisher;
use crate::path::GuardedPath;

/// One path's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
pub struct PathSummary {
    /// Messages the path accepted.
    pub published: u64,
    /// Primary publishes refused.
    pub failed: u64,
    /// Shadow publishes dropped.
    pub shadow_dropped: u64,
    /// Publishes that met the open primary breaker.
    pub circuit_open: u64,
    /// Messages sent again after a reconnect.
    pub resent: u64,
    /// Messages appended to the spool.
    pub spooled: u64,
    /// Spooled messages handed to the broker.
    pub replayed: u64,
    /// Messages accepted and never handed over (acknowledged, written, or
    /// left in the spool).
    pub undelivered: u64,
}

/// Both paths' counts and the stage now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The service's stage now.
    pub stage: myc_config::Stage,
    /// The relay path.
    pub relay: PathSummary,
    /// The broker path.
    pub broker: PathSummary,
}

impl PathSummary {
    fn of<P: Publisher>(path: &GuardedPath<P>) -> PathSummary {
        let counters = path.counters();
        let guard = path.primary_guard().map(|guard| guard.counters());
        let guarded = |pick: fn(&crate::GuardCounters) -> u64| guard.map_or(0, |counters| pick(counters));
        PathSummary {
            published: counters.published.get(),
            failed: counters.failed.get(),
            shadow_dropped: counters.shadow_dropped.get(),
            circuit_open: guarded(|counters| counters.circuit_open.get()),
            resent: counters.resent.get(),
            spooled: guarded(|counters| counters.spooled.get()),
            replayed: guarded(|counters| counters.replayed.get()),
            undelivered: path.undelivered(),
        }
    }
}

impl Summary {
    pub(crate) fn of<R: Publisher, B: Publisher>(
        stage: myc_config::Stage,
        relay: &GuardedPath<R>,
        broker: &GuardedPath<B>,
    ) -> Summary {
        relay.refresh();
        broker.refresh();
        Summary { stage, relay: PathSummary::of(relay), broker: PathSummary::of(broker) }
    }
}

impl<R: Publisher + 'static, B: Publisher + 'static> crate::ServicePublisher<R, B> {
    /// Registers this publisher's metrics under `myc_shim_*` and
    /// `myc_spool_*`, labelled with `service` and `path` (`relay`, and
    /// `broker` or `nats` after the broker side's backend): published,
    /// failed, shadow dropped, shadow breaker state, reconnects, resends,
    /// connection state and bytes buffered (kept current by
    /// [`crate::ServicePublisher::refresh`]), the primary
    /// breaker and the spool, the current stage (0 relay … 3 broker), failed
    /// reads of the rollout plan it follows (`myc_rollout_plan_errors_total`),
    /// and stage changes refused for a path the build left out.
    pub fn register(&self, registry: &mut Registry, service: &str) {
        let registry = registry.sub_registry_with_label(("service".into(), service.to_owned().into()));
        // The broker side is labelled by its backend (`broker` or `nats`).
        let broker_label = self.broker().publisher().broker_label();
        let paths = [
            ("relay", self.relay().counters(), self.relay().primary_guard()),
            (broker_label, self.broker().counters(), self.broker().primary_guard()),
        ];
        for (path, counters, guard) in paths {
            let sub = registry.sub_registry_with_label(("path".into(), path.into()));
            let mut counted = vec![
                ("myc_shim_published", "Messages the path accepted", &counters.published),
                ("myc_shim_failed", "Primary publishes refused", &counters.failed),
                ("myc_shim_shadow_dropped", "Shadow publishes dropped", &counters.shadow_dropped),
                ("myc_shim_reconnects", "Connections after the first", &counters.reconnects),
                ("myc_shim_resent", "Messages sent again after a reconnect", &counters.resent),
            ];
            let mut gauged = vec![
                ("myc_shim_shadow_breaker", "Shadow breaker: 0 closed, 1 open, 2 half-open", &counters.breaker),
                ("myc_shim_connected", "1 while the path is connected, else 0", &counters.connected),
                (
                    "myc_shim_buffered_bytes",
                    "Bytes buffered on the path, waiting to be sent or acknowledged",
                    &counters.buffered_bytes,
                ),
            ];
            // The primary's breaker and spool (the broker path's alone).
            if let Some(guard) = guard {
                let guard = guard.counters();
                counted.extend([
                    ("myc_shim_circuit_open", "Publishes that met the open breaker", &guard.circuit_open),
                    ("myc_spool_appended", "Messages appended to the spool", &guard.spooled),
                    ("myc_spool_replayed", "Spooled messages handed to the broker", &guard.replayed),
                    ("myc_spool_full", "Messages refused by a full spool", &guard.spool_full),
                    ("myc_spool_truncated", "Torn spool tails truncated at start", &guard.spool_truncated),
                    ("myc_spool_corrupt", "Corrupt spool regions skipped at start", &guard.spool_corrupt),
                ]);
                gauged.extend([
                    ("myc_shim_breaker_state", "Primary breaker: 0 closed, 1 open, 2 half-open", &guard.breaker_state),
                    ("myc_spool_messages", "Messages in the spool", &guard.spool_messages),
                    ("myc_spool_bytes", "Bytes of the messages in the spool", &guard.spool_bytes),
                ]);
            }
            register_each(sub, counted);
            register_each(sub, gauged);
        }
        registry.register("myc_shim_stage", "Current rollout stage: 0 relay … 3 broker", self.stage().gauge().clone());
        registry.register(
            "myc_rollout_plan_errors",
            "Reads of the rollout plan that failed (missing after it was read, unparsable); the stage was kept",
            self.stage().plan_errors().clone(),
        );
        registry.register(
            "myc_shim_stage_unavailable",
            "Stage changes refused: the stage needs a path this build left out",
            self.stage_unavailable().clone(),
        );
    }
}

/// Registers each `(name, help, metric)` in `registry` (a clone of the
/// metric: they share the value).
fn register_each<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    metrics: Vec<(&str, &str, &M)>,
) {
    for (name, help, metric) in metrics {
        registry.register(name, help, metric.clone());
    }
}
