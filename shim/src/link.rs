//! The relay's broker link (`myc relay --bridge`, docs/relay.md §6): for
//! each linked relay domain, a broker publisher (uplink) and a fan-out
//! subscriber to the domain's topic (downlink), both driven per message by
//! the rollout stage of the message's `source`, followed live from the plan
//! file (a bad edit keeps the last good stages).
//!
//! Uplink, by stage: `relay` nothing; `dual_relay_primary` a shadow publish
//! (never waits, dropped and counted when the broker is away too long);
//! `dual_broker_primary` the primary publish (buffered, acknowledged, resent
//! after a reconnect); `broker` the same, and the relay does not fan it out.
//! Downlink: what the relay has not fanned out itself goes to its consumers
//! (never to producers, never back up); the rest is ignored and counted. For
//! the link's own publishes the handover record says which those are, so a
//! stage change repeats or loses nothing however far the broker lags; for
//! others' (shim producers) the stage does: `broker` only. It deliberately never changes bytes,
//! never publishes what came down, and never blocks the relay's fan-out.

use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
#[cfg(feature = "nats")]
use futures_util::{FutureExt as _, StreamExt as _};
use myc_codec::Domain;
use myc_config::{Settings, Stage};
use myc_relay_compat::{Downlink, Link, Links};
use myc_rollout::{Plan, Role, Route};
use myc_transport::AbortOnDrop;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::handover::{self, DownState, Handover};
use crate::path::{GuardedPath, ShadowLimits};
use crate::publisher::{BrokerPublisher, BrokerSide};
use crate::{Error, Publisher};

/// The links of a relay process: one per linked domain, sharing the stage
/// table and the metrics.
pub struct RelayBridge {
    /// One per domain given to [`RelayBridge::start`], in that order.
    links: Vec<(Domain, Arc<RelayLink>)>,
    metrics: Arc<LinkMetrics>,
    stages: Arc<SourceStages>,
    /// Keeps the plan file watched; the stage table follows it.
    plan: myc_config::Watched<Plan>,
    _follower: AbortOnDrop,
}

impl std::fmt::Debug for RelayBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let domains: Vec<&str> = self.links.iter().map(|(domain, _)| domain.name()).collect();
        f.debug_struct("RelayBridge").field("domains", &domains).finish_non_exhaustive()
    }
}

impl RelayBridge {
    /// Starts a link for each of `domains` with the broker backend, topics,
    /// services and rollout plan of `settings`. Broker connections are made
    /// in the background; the downlinks start when the relay does.
    ///
    /// # Errors
    /// A domain without a topic, settings the backend cannot use, or a plan
    /// that cannot be read or watched now.
    pub async fn start(settings: &Settings, domains: &[Domain], client_name: &str) -> Result<RelayBridge, Error> {
        let (stages, plan, follower) = SourceStages::follow(settings)?;
        let metrics = Arc::new(LinkMetrics::default());
        let mut links = Vec::with_capacity(domains.len());
        for &domain in domains {
            let link = RelayLink::start(settings, domain, client_name, Arc::clone(&stages), &metrics).await?;
            links.push((domain, Arc::new(link)));
        }
        Ok(RelayBridge { links, metrics, stages, plan, _follower: follower })
    }

    /// The hooks to put in the relay's settings.
    pub fn links(&self) -> Links {
        let mut links = Links::default();
        for (domain, link) in &self.links {
            links.set(*domain, Arc::clone(link) as Arc<dyn Link>);
        }
        links
    }

    /// The link of `domain`.
    pub fn link(&self, domain: Domain) -> Option<&Arc<RelayLink>> {
        self.links.iter().find(|(linked, _)| *linked == domain).map(|(_, link)| link)
    }

    /// The stage table the links follow.
    pub fn stages(&self) -> &Arc<SourceStages> {
        &self.stages
    }

    /// The link metrics.
    pub fn metrics(&self) -> &Arc<LinkMetrics> {
        &self.metrics
    }

    /// What the plan file's reloads did (applied, and bad edits refused).
    pub fn plan_reloads(&self) -> &Arc<myc_config::ReloadCounts> {
        self.plan.counts()
    }

    /// Waits until every downlink's subscription is confirmed (so messages
    /// published from now on come down), up to `deadline`; false if not.
    pub async fn wait_ready(&self, deadline: Duration) -> bool {
        let waits = self.links.iter().map(|(_, link)| link.wait_ready(deadline));
        futures_util::future::join_all(waits).await.into_iter().all(|ready| ready)
    }

    /// Waits until every uplink publish so far is delivered to the broker
    /// (acknowledged where the backend acknowledges), up to `deadline`.
    ///
    /// # Errors
    /// The first link whose broker path did not settle in time.
    pub async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        for (_, link) in &self.links {
            link.uplink.flush(deadline).await?;
        }
        Ok(())
    }
}

/// The stage of every source id (0–255): the stage of the service whose
/// `source` it is, or the plan's default stage. One atomic load per message.
#[derive(Debug)]
pub struct SourceStages {
    /// Indexed by source id; values are [`Stage::index`].
    by_source: [AtomicU8; 256],
}

impl SourceStages {
    /// Every source at `stage`.
    pub fn new(stage: Stage) -> SourceStages {
        SourceStages { by_source: std::array::from_fn(|_| AtomicU8::new(stage.index())) }
    }

    /// The stage of `source` now.
    #[inline]
    pub fn of(&self, source: u8) -> Stage {
        Stage::from_index(self.by_source[usize::from(source)].load(Ordering::Acquire)).unwrap_or_default()
    }

    /// Sets every source from `plan`, with `services` naming the source of
    /// each service.
    pub fn apply(&self, plan: &Plan, services: &[(u8, String)]) {
        let mut table = [plan.default_stage; 256];
        // The first service naming a source decides it (BTreeMap order).
        for (source, service) in services.iter().rev() {
            table[usize::from(*source)] = plan.stage_of(service);
        }
        for (slot, stage) in self.by_source.iter().zip(table) {
            slot.store(stage.index(), Ordering::Release);
        }
    }

    /// A table kept at the plan of `settings.rollout`, re-read whenever the
    /// file changes; a bad edit keeps the last good stages.
    fn follow(settings: &Settings) -> Result<(Arc<SourceStages>, myc_config::Watched<Plan>, AbortOnDrop), Error> {
        let services: Vec<(u8, String)> =
            settings.services.iter().filter_map(|(name, service)| Some((service.source?, name.clone()))).collect();
        let watched = crate::service::watch_plan(settings.rollout.file.clone(), settings.rollout.default_stage)?;
        let stages = Arc::new(SourceStages::new(settings.rollout.default_stage));
        stages.apply(&watched.current(), &services);
        let mut changes = watched.subscribe();
        let follower = {
            let stages = Arc::clone(&stages);
            AbortOnDrop::spawn(async move {
                while changes.changed().await.is_ok() {
                    let plan = Arc::clone(&changes.borrow_and_update());
                    stages.apply(&plan, &services);
                    tracing::info!("broker link: rollout stages reloaded");
                }
            })
        };
        Ok((stages, watched, follower))
    }
}

/// Labels: a relay domain.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DomainLabel {
    /// The relay's domain.
    pub domain: &'static str,
}

/// Labels: a relay domain and a direction (`up` to the broker, `down` from it).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// The relay's domain.
    pub domain: &'static str,
    /// `up` or `down`.
    pub direction: &'static str,
}

/// Labels: a relay domain, a direction and why a message was dropped.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DropLabels {
    /// The relay's domain.
    pub domain: &'static str,
    /// `up` or `down`.
    pub direction: &'static str,
    /// `buffer_full`, `shadow`, `broker_error`, `invalid`.
    pub reason: &'static str,
}

/// The link's metrics, registered beside the relay's under `myc_relay_link_`.
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// Messages handed to the broker (`up`) or delivered to relay consumers
    /// (`down`).
    pub messages: Family<DirectionLabels, Counter>,
    /// Messages the link could not carry, by direction and reason.
    pub dropped: Family<DropLabels, Counter>,
    /// Broker messages of a source not at `broker` (the relay has them).
    pub ignored: Family<DomainLabel, Counter>,
    /// Whether the uplink's broker connection is up (0 or 1).
    pub connected: Family<DomainLabel, Gauge>,
}

impl LinkMetrics {
    /// Adds the link's metrics to `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("myc_relay_link");
        registry.register("messages", "Messages carried by the broker link, by direction", self.messages.clone());
        registry.register("dropped", "Messages the broker link dropped, by direction and reason", self.dropped.clone());
        registry.register("ignored", "Broker messages of a source not at stage broker", self.ignored.clone());
        registry.register("connected", "Whether the broker link is connected", self.connected.clone());
    }
}

/// One relay domain's link.
pub struct RelayLink {
    domain: Domain,
    topic: String,
    stages: Arc<SourceStages>,
    /// Which of the link's publishes the relay fanned out, for the downlink.
    handover: Arc<Handover>,
    /// The broker path, with its shadow guard (queue bound and breaker).
    uplink: GuardedPath<BrokerSide>,
    /// Where the downlink subscribes: the uplink's own NATS connection, or a
    /// Mycelium client of its own (so a slow relay consumer never holds up
    /// the uplink's acknowledgements).
    down_source: DownSource,
    counters: LinkCounters,
    /// Becomes true once the downlink's subscription is confirmed.
    ready: watch::Sender<bool>,
    /// The downlink and the connection gauge, once attached.
    tasks: Mutex<Vec<AbortOnDrop>>,
}

impl std::fmt::Debug for RelayLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayLink").field("domain", &self.domain).field("topic", &self.topic).finish_non_exhaustive()
    }
}

/// One domain's counters, fetched once from the families.
#[derive(Debug, Clone)]
struct LinkCounters {
    up: Counter,
    down: Counter,
    up_buffer_full: Counter,
    up_shadow: Counter,
    up_error: Counter,
    down_invalid: Counter,
    ignored: Counter,
    connected: Gauge,
}

impl LinkCounters {
    fn new(metrics: &LinkMetrics, domain: &'static str) -> LinkCounters {
        let messages = |direction| metrics.messages.get_or_create(&DirectionLabels { domain, direction }).clone();
        let dropped =
            |direction, reason| metrics.dropped.get_or_create(&DropLabels { domain, direction, reason }).clone();
        LinkCounters {
            up: messages("up"),
            down: messages("down"),
            up_buffer_full: dropped("up", "buffer_full"),
            up_shadow: dropped("up", "shadow"),
            up_error: dropped("up", "broker_error"),
            down_invalid: dropped("down", "invalid"),
            ignored: metrics.ignored.get_or_create(&DomainLabel { domain }).clone(),
            connected: metrics.connected.get_or_create(&DomainLabel { domain }).clone(),
        }
    }
}

#[derive(Debug)]
enum DownSource {
    Mycelium(myc_broker::Client),
    #[cfg(feature = "nats")]
    Nats(async_nats::Client, String),
}

impl RelayLink {
    async fn start(
        settings: &Settings,
        domain: Domain,
        client_name: &str,
        stages: Arc<SourceStages>,
        metrics: &LinkMetrics,
    ) -> Result<RelayLink, Error> {
        let topic = settings.topics.for_domain(domain.as_u8()).ok_or(Error::UnknownDomain(domain.as_u8()))?.to_owned();
        let uplink = BrokerSide::from_settings(settings, &format!("{client_name}-{}-up", domain.name())).await?;
        let down_source = match &uplink {
            BrokerSide::Mycelium(_) => {
                let options =
                    BrokerPublisher::client_options(settings, &format!("{client_name}-{}-down", domain.name()))?;
                DownSource::Mycelium(myc_broker::Client::start(options))
            }
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => DownSource::Nats(path.publisher().client(), path.publisher().subject(&topic)),
            BrokerSide::Unavailable(missing) => return Err(missing.error()),
        };
        let (ready, _) = watch::channel(false);
        Ok(RelayLink {
            domain,
            topic,
            stages,
            handover: Arc::default(),
            uplink: GuardedPath::new(uplink, ShadowLimits::from_settings(&settings.shadow)),
            down_source,
            counters: LinkCounters::new(metrics, domain.name()),
            ready,
            tasks: Mutex::new(Vec::new()),
        })
    }

    /// The broker path (its publisher and counters).
    pub fn broker_path(&self) -> &GuardedPath<BrokerSide> {
        &self.uplink
    }

    /// Waits until the downlink's subscription is confirmed, up to
    /// `deadline`; false if it was not.
    pub async fn wait_ready(&self, deadline: Duration) -> bool {
        let mut ready = self.ready.subscribe();
        tokio::time::timeout(deadline, ready.wait_for(|ready| *ready)).await.is_ok_and(|waited| waited.is_ok())
    }

    /// Counts `n` messages refused by the broker path for `error`.
    fn count_refusals(&self, error: &Error, n: usize) {
        match error {
            // Over the broker's max_frame: the broker's refusal, not a full buffer.
            Error::Broker(myc_broker::Error::Buffer(myc_transport::PushError::OverPeerLimit { .. })) => {
                self.counters.up_error.inc_by(n as u64)
            }
            Error::Broker(myc_broker::Error::Buffer(_)) => self.counters.up_buffer_full.inc_by(n as u64),
            _ => self.counters.up_error.inc_by(n as u64),
        };
    }
}

impl Link for RelayLink {
    fn uplink(&self, batch: &Bytes, messages: &[Range<usize>], fanned: &mut Vec<bool>) {
        let mut first = 0;
        while first < messages.len() {
            // A group: adjacent messages of one source, routed by one look
            // at its stage and published as one run.
            let source = batch[messages[first].start + 6];
            let mut end = first + 1;
            while end < messages.len()
                && messages[end].start == messages[end - 1].end
                && batch[messages[end].start + 6] == source
            {
                end += 1;
            }
            let group = &messages[first..end];
            first = end;
            let n = group.len();
            let route = Route::of(self.stages.of(source));
            let is_fanned = route.relay.is_some();
            fanned.extend(std::iter::repeat_n(is_fanned, n));
            let Some(role) = route.broker else { continue };
            let run = &batch[group[0].start..group[n - 1].end];
            // Recorded before the publish: the messages may come back down
            // before this call returns. Only a run's newest message matters.
            let newest = handover::fingerprint(&batch[group[n - 1].clone()]);
            let previous = self.handover.publishing(source, newest, is_fanned);
            let outcome = match role {
                Role::Primary => {
                    let outcome = self.uplink.try_primary_run(run, n);
                    if let Some(error) = &outcome.refused {
                        self.count_refusals(error, n - outcome.taken);
                    }
                    outcome
                }
                Role::Shadow => {
                    let outcome = self.uplink.shadow_run(run, n);
                    self.counters.up_shadow.inc_by((n - outcome.taken) as u64);
                    outcome
                }
            };
            self.counters.up.inc_by(outcome.taken as u64);
            if outcome.newest != Some(n - 1) {
                // The newest publish is the last message taken.
                let newest = match outcome.newest {
                    Some(index) => handover::fingerprint(&batch[group[index].clone()]),
                    None => previous,
                };
                self.handover.not_published(source, newest);
            }
        }
    }

    fn attach(&self, downlink: Downlink) {
        let mut tasks = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let down = Down {
            downlink,
            handover: Arc::clone(&self.handover),
            state: DownState::default(),
            incoming: Vec::with_capacity(DOWN_BATCH),
            verdicts: Vec::with_capacity(DOWN_BATCH),
            stages: Arc::clone(&self.stages),
            counters: self.counters.clone(),
            ready: self.ready.clone(),
        };
        let task = match &self.down_source {
            DownSource::Mycelium(client) => {
                let subscription = client.subscribe(&self.topic, "");
                AbortOnDrop::spawn(async move {
                    match subscription {
                        Ok(subscription) => down.run_mycelium(subscription).await,
                        Err(error) => tracing::error!(%error, "broker link: cannot subscribe"),
                    }
                })
            }
            #[cfg(feature = "nats")]
            DownSource::Nats(client, subject) => {
                let (client, subject) = (client.clone(), subject.clone());
                AbortOnDrop::spawn(async move { down.run_nats(client, subject).await })
            }
        };
        tasks.push(task);
        // The connection gauge, sampled a few times a second.
        let (connected, path) = (self.counters.connected.clone(), self.uplink.publisher().clone());
        tasks.push(AbortOnDrop::spawn(async move {
            loop {
                connected.set(i64::from(path.is_connected()));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }));
    }
}

/// The downlink task's state.
struct Down {
    downlink: Downlink,
    handover: Arc<Handover>,
    state: DownState,
    /// The batch read from the broker, and the handover's verdicts on it.
    incoming: Vec<Bytes>,
    verdicts: Vec<handover::Down>,
    stages: Arc<SourceStages>,
    counters: LinkCounters,
    ready: watch::Sender<bool>,
}

/// Messages delivered to the relay at once at most.
const DOWN_BATCH: usize = 1024;

impl Down {
    async fn run_mycelium(mut self, mut subscription: myc_broker::Subscription) {
        // The client re-subscribes after every reconnect by itself; the
        // first confirmation is all the readiness there is to report.
        if subscription.wait_active(Duration::from_secs(3600)).await.is_ok() {
            self.ready.send_replace(true);
        }
        while let Some(first) = subscription.recv().await {
            self.incoming.push(first.payload);
            while self.incoming.len() < DOWN_BATCH {
                let Some(next) = subscription.try_recv() else { break };
                self.incoming.push(next.payload);
            }
            if !self.deliver().await {
                return;
            }
        }
    }

    #[cfg(feature = "nats")]
    async fn run_nats(mut self, client: async_nats::Client, subject: String) {
        let mut subscriber = loop {
            match client.subscribe(subject.clone()).await {
                Ok(subscriber) => break subscriber,
                Err(error) => {
                    tracing::warn!(%error, "broker link: cannot subscribe to NATS yet; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        };
        // The SUB has reached the server once a flush round trip completes.
        while client.flush().await.is_err() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.ready.send_replace(true);
        while let Some(first) = subscriber.next().await {
            self.incoming.push(first.payload);
            while self.incoming.len() < DOWN_BATCH {
                let Some(Some(next)) = subscriber.next().now_or_never() else { break };
                self.incoming.push(next.payload);
            }
            if !self.deliver().await {
                return;
            }
        }
    }

    /// Hands the incoming messages the relay has not fanned out to its
    /// consumers, counting the others as ignored; false once the relay has
    /// stopped.
    async fn deliver(&mut self) -> bool {
        let Down { handover, state, incoming, verdicts, .. } = self;
        verdicts.clear();
        handover.judge(state, incoming.iter().map(|message| &message[..]), |verdict| verdicts.push(verdict));
        let mut batch = Vec::with_capacity(incoming.len());
        for (message, verdict) in incoming.drain(..).zip(verdicts.iter()) {
            let deliver = match verdict {
                handover::Down::Deliver => true,
                handover::Down::Skip => false,
                // Published by someone else (a shim producer): its stage
                // says whether the relay has it already.
                handover::Down::ByStage => self.stages.of(message.get(6).copied().unwrap_or(0)) == Stage::Broker,
            };
            if deliver {
                batch.push(message);
            } else {
                self.counters.ignored.inc();
            }
        }
        if batch.is_empty() {
            return true;
        }
        let Some(outcome) = self.downlink.deliver(&batch).await else { return false };
        self.counters.down.inc_by(outcome.delivered);
        self.counters.down_invalid.inc_by(outcome.rejected);
        true
    }
}
