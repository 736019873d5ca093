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

impl Summary {
    pub(crate) fn of<R: Publisher, B: Publisher>(
        stage: myc_config::Stage,
        relay: &GuardedPath<R>,
        broker: &GuardedPath<B>,
    ) -> Summary {
        let path = |counters: &crate::PathCounters| PathSummary {
            published: counters.published.get(),
            failed: counters.failed.get(),
            shadow_dropped: counters.shadow_dropped.get(),
        };
        Summary { stage, relay: path(relay.counters()), broker: path(broker.counters()) }
    }
}

impl<R: Publisher + 'static, B: Publisher + 'static> crate::ServicePublisher<R, B> {
    /// Registers this publisher's metrics under `myc_shim_*`, labelled with
    /// `service` and `path`: published, failed, shadow dropped, shadow
    /// breaker state, the current stage (0 relay … 3 broker), failed
    /// reads of the rollout plan it follows (`myc_rollout_plan_errors_total`),
    /// and stage changes refused for a path the build left out.
    pub fn register(&self, registry: &mut Registry, service: &str) {
        let registry = registry.sub_registry_with_label(("service".into(), service.to_owned().into()));
        for (name, counters) in [("relay", self.relay().counters()), ("broker", self.broker().counters())] {
            let sub = registry.sub_registry_with_label(("path".into(), name.into()));
            sub.register("myc_shim_published", "Messages the path accepted", counters.published.clone());
            sub.register("myc_shim_failed", "Primary publishes refused", counters.failed.clone());
            sub.register("myc_shim_shadow_dropped", "Shadow publishes dropped", counters.shadow_dropped.clone());
            sub.register(
                "myc_shim_shadow_breaker",
                "Shadow breaker: 0 closed, 1 open, 2 half-open",
                counters.breaker.clone(),
            );
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
