//! The guard's loop, shared by `myc rollout guard` and `myc console` (when
//! `[guard] enabled`): every `[guard] interval` it scrapes the producers'
//! metrics endpoints, keeps each service's recent figures, asks
//! `myc_rollout::guard::evaluate` for a decision per service, and carries a
//! rollback out through `Rollout::rollback` (audited, actor `guard`). Every
//! `[guard] verify_every` it also takes a live verify sample of each service
//! in a dual stage (the taps and join of `myc verify live`). See
//! docs/guard.md.
//!
//! It deliberately holds no rule of its own: what counts as a regression is
//! decided in the rollout crate, from the figures gathered here. It never
//! advances anything.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use myc_config::{Backend, Settings, Stage};
use myc_rollout::guard::{
    Decision, Input, PathCounts, Sample, Sampled, State, Thresholds, Verdict, VerifySample, evaluate,
};
use myc_rollout::{Actor, Rollout};
use myc_verify::join::{Captured, Options};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::capture::Tap;
use super::console::scrape::{fetch, parse_line};

/// Labels of the guard's counters.
type Labels = Vec<(String, String)>;

/// The guard's Prometheus counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct GuardMetrics {
    /// `myc_guard_decisions_total{service,decision}`.
    decisions: Family<Labels, Counter>,
    /// `myc_guard_rollbacks_total{service,rule}`: rollbacks carried out.
    rollbacks: Family<Labels, Counter>,
}

impl GuardMetrics {
    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register("myc_guard_decisions", "Guard decisions per service", self.decisions.clone());
        registry.register("myc_guard_rollbacks", "Rollbacks the guard carried out", self.rollbacks.clone());
    }
}

/// The latest decision per service, for the console.
pub(crate) type Latest = Arc<Mutex<BTreeMap<String, Decision>>>;

/// The latest verify sample per service.
type Verifies = Arc<Mutex<BTreeMap<String, VerifySample>>>;

/// One guard: its settings, each service's recent scrapes, its memory.
pub(crate) struct Guard {
    settings: Settings,
    rollout: Rollout,
    thresholds: Thresholds,
    /// Metrics endpoints scraped each interval.
    targets: Vec<String>,
    /// Per service, its scrapes, oldest first, none older than two windows.
    samples: BTreeMap<String, VecDeque<Sample>>,
    verifies: Verifies,
    /// What the guard remembers (baselines), mirrored in `state_path`.
    state: State,
    state_path: PathBuf,
    started: SystemTime,
    /// Decide, report, change nothing (not even the state file).
    dry_run: bool,
    actor: Actor,
    pub(crate) metrics: GuardMetrics,
    pub(crate) latest: Latest,
}

impl Guard {
    /// A guard over the services of `rollout`, with the settings' `[guard]`.
    pub(crate) fn new(settings: &Settings, rollout: Rollout, dry_run: bool) -> anyhow::Result<Guard> {
        let guard = &settings.guard;
        let targets = if guard.targets.is_empty() { settings.console.scrape.clone() } else { guard.targets.clone() };
        let state_path = State::path_for(&rollout.plan_file);
        let state = State::read(&state_path)?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned());
        Ok(Guard {
            settings: settings.clone(),
            rollout,
            thresholds: Thresholds::from_settings(guard),
            targets,
            samples: BTreeMap::new(),
            verifies: Verifies::default(),
            state,
            state_path,
            started: SystemTime::now(),
            dry_run,
            actor: Actor { user: "guard".to_owned(), host },
            metrics: GuardMetrics::default(),
            latest: Latest::default(),
        })
    }

    /// The scrape interval.
    pub(crate) fn interval(&self) -> Duration {
        self.settings.guard.interval.get()
    }

    /// Scrapes every target once; each service seen gets a sample taken `at`.
    pub(crate) async fn scrape(&mut self, at: SystemTime) {
        for url in &self.targets {
            let text = match fetch(url).await {
                Ok(text) => text,
                Err(error) => {
                    tracing::debug!(url, %error, "guard: cannot scrape");
                    continue;
                }
            };
            for (service, sample) in samples_of(&text, at) {
                self.samples.entry(service).or_default().push_back(sample);
            }
        }
        let keep_from = at.checked_sub(self.thresholds.window * 2).unwrap_or(SystemTime::UNIX_EPOCH);
        for samples in self.samples.values_mut() {
            while samples.front().is_some_and(|sample| sample.at < keep_from) {
                samples.pop_front();
            }
        }
    }

    /// Decides about every known service at `now`, and carries rollbacks
    /// out (unless a dry run).
    pub(crate) fn decide(&mut self, now: SystemTime) -> anyhow::Result<Vec<Decision>> {
        let status = self.rollout.status()?;
        let mut services: BTreeMap<String, Stage> =
            status.services.iter().map(|(name, service)| (name.clone(), service.stage)).collect();
        for name in self.samples.keys() {
            services.entry(name.clone()).or_insert(status.default_stage);
        }
        let verifies = self.verifies.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let before = self.state.clone();
        let mut decisions = Vec::with_capacity(services.len());
        for (service, stage) in services {
            let samples: Vec<Sample> =
                self.samples.get(&service).map(|s| s.iter().copied().collect()).unwrap_or_default();
            let memory = self.state.services.get(&service).copied().unwrap_or_default();
            let input = Input {
                service: &service,
                stage,
                samples: &samples,
                verify: verifies.get(&service).copied(),
                started: self.started,
                now,
            };
            let (mut decision, memory) = evaluate(&input, &memory, &self.thresholds);
            if decision.decision == Verdict::Rollback {
                self.roll_back(&mut decision, now);
            }
            self.metrics
                .decisions
                .get_or_create(&vec![
                    ("service".to_owned(), service.clone()),
                    ("decision".to_owned(), decision.decision.name().to_owned()),
                ])
                .inc();
            self.state.services.insert(service, memory);
            decisions.push(decision);
        }
        if !self.dry_run
            && self.state != before
            && let Err(error) = self.state.write(&self.state_path)
        {
            tracing::warn!(%error, "guard: cannot keep its state");
        }
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        for decision in &decisions {
            latest.insert(decision.service.clone(), decision.clone());
        }
        Ok(decisions)
    }

    /// Rolls `decision`'s service back one stage, audited; the reason names
    /// the rule and the figures.
    fn roll_back(&mut self, decision: &mut Decision, now: SystemTime) {
        let service = decision.service.clone();
        let rule = decision.rule.map_or("unknown", |rule| rule.name());
        let figures = &decision.figures;
        let reason = format!(
            "guard: {} [window {}s: relay {} published / {} failed / {} shadow dropped; broker {} published / {} failed / {} shadow dropped; rss {} bytes, baseline {}; verify {}]",
            decision.reason,
            figures.window_s,
            figures.relay.published,
            figures.relay.failed,
            figures.relay.shadow_dropped,
            figures.broker.published,
            figures.broker.failed,
            figures.broker.shadow_dropped,
            figures.rss_bytes.map_or_else(|| "unknown".to_owned(), |bytes| bytes.to_string()),
            figures.rss_baseline_bytes.map_or_else(|| "none".to_owned(), |bytes| bytes.to_string()),
            figures.verify.map_or("none", |verdict| match verdict {
                Sampled::Identical => "identical",
                Sampled::Differs => "differs",
            }),
        );
        if self.dry_run {
            decision.reason = format!("{} (dry run: nothing changed)", decision.reason);
            return;
        }
        let to = decision.stage.previous();
        match self.rollout.rollback(&service, to, &reason, &self.actor, now) {
            Ok(entry) => {
                tracing::warn!(service, rule, from = entry.from, to = entry.to, "guard rolled back");
                self.metrics
                    .rollbacks
                    .get_or_create(&vec![("service".to_owned(), service.clone()), ("rule".to_owned(), rule.to_owned())])
                    .inc();
                // What was scraped belongs to the stage left behind.
                self.samples.remove(&service);
            }
            Err(error) => {
                tracing::warn!(service, %error, "guard: the rollback did not happen");
                decision.reason = format!("{} (not applied: {error})", decision.reason);
            }
        }
    }

    /// Starts the live verify sampler when `[guard] verify_every` is on.
    pub(crate) fn start_verifier(&self) -> Option<myc_transport::AbortOnDrop> {
        let every = self.settings.guard.verify_every.get();
        if every.is_zero() {
            return None;
        }
        let (settings, rollout, verifies) = (self.settings.clone(), self.rollout.clone(), Arc::clone(&self.verifies));
        Some(myc_transport::AbortOnDrop::spawn(async move {
            let mut tick = tokio::time::interval(every);
            // A sample longer than `every` is followed by the next, not a burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                sample_all(&settings, &rollout, &verifies).await;
            }
        }))
    }

    /// Runs for ever: scrape, decide, report, every interval.
    pub(crate) async fn run(mut self, mut report: impl FnMut(&Decision)) {
        let _verifier = self.start_verifier();
        let mut tick = tokio::time::interval(self.interval());
        // A stalled machine catches up by waiting, not by a burst of scrapes
        // a few milliseconds apart: rounds stay an interval apart.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let now = SystemTime::now();
            self.scrape(now).await;
            match self.decide(now) {
                Ok(decisions) => decisions.iter().for_each(&mut report),
                Err(error) => tracing::warn!(%error, "guard: cannot decide"),
            }
        }
    }
}

/// Each service's sample in one scrape of a producer's metrics.
fn samples_of(text: &str, at: SystemTime) -> BTreeMap<String, Sample> {
    let mut rss = None;
    let mut services: BTreeMap<String, Sample> = BTreeMap::new();
    // A stage number no release knows makes the whole sample meaningless.
    let mut unknown_stage = std::collections::BTreeSet::new();
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, labels, value)) = parse_line(line) else { continue };
        if name == "process_resident_memory_bytes" {
            rss = Some(value as u64);
            continue;
        }
        if !name.starts_with("myc_shim_") {
            continue;
        }
        let Some(service) = labels.get("service") else { continue };
        let sample = services.entry(service.clone()).or_insert(Sample {
            at,
            stage: Stage::Relay,
            relay: PathCounts::default(),
            broker: PathCounts::default(),
            rss_bytes: None,
        });
        if name == "myc_shim_stage" {
            match Stage::from_index(value as u8).filter(|_| (0.0..=3.0).contains(&value)) {
                Some(stage) => sample.stage = stage,
                None => {
                    unknown_stage.insert(service.clone());
                }
            }
            continue;
        }
        let path = match labels.get("path").map(String::as_str) {
            Some("relay") => &mut sample.relay,
            // The broker side is labelled by its backend.
            Some("broker" | "nats") => &mut sample.broker,
            _ => continue,
        };
        match name {
            "myc_shim_published_total" => path.published = value as u64,
            "myc_shim_failed_total" => path.failed = value as u64,
            "myc_shim_shadow_dropped_total" => path.shadow_dropped = value as u64,
            _ => {}
        }
    }
    services.retain(|service, _| !unknown_stage.contains(service));
    for sample in services.values_mut() {
        sample.rss_bytes = rss;
    }
    services
}

/// Takes a live verify sample of every service in a dual stage that has a
/// source id.
async fn sample_all(settings: &Settings, rollout: &Rollout, verifies: &Verifies) {
    let Ok(status) = rollout.status() else { return };
    for (service, entry) in &status.services {
        let dual = matches!(entry.stage, Stage::DualRelayPrimary | Stage::DualBrokerPrimary);
        let Some(source) = entry.source.filter(|_| dual) else { continue };
        match sample_one(settings, source, settings.guard.verify_for.get()).await {
            Ok(Some(verdict)) => {
                tracing::info!(service, ?verdict, "guard: live verify sample");
                let sample = VerifySample { at: SystemTime::now(), stage: entry.stage, verdict };
                verifies.lock().unwrap_or_else(PoisonError::into_inner).insert(service.clone(), sample);
            }
            Ok(None) => tracing::debug!(service, "guard: nothing to compare in the verify sample"),
            Err(error) => tracing::warn!(service, %error, "guard: cannot take a live verify sample"),
        }
    }
}

/// How long a live verify sample keeps reading after its window for what
/// was in flight, as `myc verify live --settle` does by default.
const SAMPLE_SETTLE: Duration = Duration::from_millis(500);

/// Taps every relay whose socket exists and its broker topic for `duration`
/// (then [`SAMPLE_SETTLE`]), keeps the messages of `source`, and compares
/// them. None when neither side carried any.
async fn sample_one(settings: &Settings, source: u8, duration: Duration) -> anyhow::Result<Option<Sampled>> {
    let mut relays = Vec::new();
    let mut brokers = Vec::new();
    for domain in 1..=4u8 {
        let (Some(path), Some(topic)) = (settings.relay.for_domain(domain), settings.topics.for_domain(domain)) else {
            continue;
        };
        if !path.exists() {
            continue;
        }
        relays.push(Tap::Relay(path.clone()));
        brokers.push(match settings.broker.backend {
            Backend::Mycelium => Tap::Broker(
                myc_transport::Endpoint::parse(&settings.broker.endpoint).context("broker.endpoint")?,
                topic.to_owned(),
                settings.broker.token.clone(),
            ),
            Backend::Nats => {
                Tap::Nats(settings.nats.urls.join(","), format!("{}{topic}", settings.nats.subject_prefix))
            }
        });
    }
    let n_relays = relays.len();
    relays.extend(brokers);
    if n_relays == 0 {
        return Ok(None);
    }
    let sources = BTreeSet::from([source]);
    let tapped =
        super::verify::tap_live(&relays, duration, SAMPLE_SETTLE, Some(&sources), |index| index < n_relays, |_, _| {})
            .await?;
    Ok(judge(tapped.streams.0, tapped.streams.1, source))
}

/// The verdict on two live streams, keeping `source`'s messages and, as
/// `myc verify live` does, only the stretch both taps saw (the taps start
/// and stop a few messages apart, which is no difference). A side that
/// carried nothing while the other carried something differs.
fn judge(reference: Vec<Captured>, candidate: Vec<Captured>, source: u8) -> Option<Sampled> {
    let options = Options { trim_edges: true, sources: Some(BTreeSet::from([source])), ..Options::default() };
    let comparison = myc_verify::join::compare_with(reference, candidate, &options);
    if comparison.empty() {
        return None;
    }
    Some(if comparison.identical() { Sampled::Identical } else { Sampled::Differs })
}

/// `myc rollout guard`: until SIGINT/SIGTERM, or with `once` one window.
pub(crate) fn run(
    settings: &Settings,
    rollout: Rollout,
    once: bool,
    dry_run: bool,
    metrics: Option<&str>,
    format: crate::args::Format,
) -> anyhow::Result<super::Outcome> {
    let mut guard = Guard::new(settings, rollout, dry_run)?;
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let address = metrics.or(Some(settings.metrics.listen.as_str()).filter(|address| !address.is_empty()));
        let listener = crate::metrics_http::bind(address).await?;
        let _metrics = crate::metrics_http::spawn(listener, |registry| guard.metrics.register(registry));
        let report = move |decision: &Decision| {
            let mut out = std::io::stdout().lock();
            let line = match format {
                crate::args::Format::Json => json_line(decision),
                crate::args::Format::Human => format!(
                    "{} {} ({}): {} — {}",
                    humantime::format_rfc3339_seconds(SystemTime::now()),
                    decision.service,
                    decision.stage,
                    decision.decision.name(),
                    decision.reason
                ),
            };
            // A closed stdout must not stop the guard.
            let _ = writeln!(out, "{line}").and_then(|()| out.flush());
        };
        if !once {
            tokio::select! {
                () = guard.run(report) => {}
                () = super::shutdown_signal() => {}
            }
            return anyhow::Ok(super::Outcome::Success);
        }
        // One window: a scrape at its start, one each interval, one at its end.
        let _verifier = guard.start_verifier();
        let interval = guard.interval();
        let rounds = guard.thresholds.window.as_nanos().div_ceil(interval.as_nanos().max(1));
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut now = SystemTime::now();
        for _ in 0..=rounds {
            tick.tick().await;
            now = SystemTime::now();
            guard.scrape(now).await;
        }
        let decisions = guard.decide(now)?;
        decisions.iter().for_each(report);
        let rolled_back = decisions.iter().any(|decision| decision.decision == Verdict::Rollback);
        anyhow::Ok(if rolled_back { super::Outcome::Negative } else { super::Outcome::Success })
    })
}

/// A decision as one JSON line: `{"time", "service", "stage", "decision",
/// "reason", "figures"}`.
pub(crate) fn json_line(decision: &Decision) -> String {
    let mut value = serde_json::json!({ "time": humantime::format_rfc3339_millis(SystemTime::now()).to_string() });
    if let (Some(object), Ok(serde_json::Value::Object(fields))) =
        (value.as_object_mut(), serde_json::to_value(decision))
    {
        object.extend(fields);
    }
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producers_metrics_become_one_sample_per_service() {
        let text = "# TYPE myc_shim_published counter\n\
            myc_shim_published_total{service=\"feed\",path=\"relay\"} 10\n\
            myc_shim_published_total{service=\"feed\",path=\"broker\"} 7\n\
            myc_shim_failed_total{service=\"feed\",path=\"broker\"} 3\n\
            myc_shim_shadow_dropped_total{service=\"feed\",path=\"relay\"} 2\n\
            myc_shim_stage{service=\"feed\"} 2\n\
            process_resident_memory_bytes 123456\n# EOF\n";
        let samples = samples_of(text, SystemTime::UNIX_EPOCH);
        let feed = &samples["feed"];
        assert_eq!(feed.stage, Stage::DualBrokerPrimary);
        assert_eq!(feed.relay, PathCounts { published: 10, failed: 0, shadow_dropped: 2 });
        assert_eq!(feed.broker, PathCounts { published: 7, failed: 3, shadow_dropped: 0 });
        assert_eq!(feed.rss_bytes, Some(123_456));
    }

    #[test]
    fn a_producer_on_nats_is_judged_on_its_broker_side() {
        let text = "myc_shim_published_total{service=\"feed\",path=\"nats\"} 7\n\
            myc_shim_failed_total{service=\"feed\",path=\"nats\"} 3\n\
            myc_shim_stage{service=\"feed\"} 3\n";
        let samples = samples_of(text, SystemTime::UNIX_EPOCH);
        assert_eq!(samples["feed"].broker, PathCounts { published: 7, failed: 3, shadow_dropped: 0 });
    }

    #[test]
    fn garbage_from_a_target_is_no_sample_and_no_panic() {
        let text = "myc_shim_published_total{service=\"feed\",path=\"relay\"} NaN\n\
            myc_shim_failed_total{service=\"feed\",path=\"broker\"} -5\n\
            myc_shim_published_total{service=\"feed\",path=\"broker\"} 1e300\n\
            myc_shim_stage{service=\"odd\"} 7\n\
            myc_shim_published_total{service=\"odd\",path=\"relay\"} 1\n\
            myc_shim_published_total{service=\"x\" 1\n{}}} \n\u{0}\u{fffd}\n";
        let samples = samples_of(text, SystemTime::UNIX_EPOCH);
        assert!(!samples.contains_key("odd"), "a stage no release knows: no sample");
        let feed = &samples["feed"];
        assert_eq!((feed.relay.published, feed.broker.failed, feed.broker.published), (0, 0, u64::MAX));
    }

    fn message(source: u8, sequence: u64, last: u8) -> Captured {
        // A Protocol V2 header (market data, checksum not computed) and one
        // 6-byte TLV.
        let mut bytes = vec![0u8; 40];
        bytes[..4].copy_from_slice(&0xDEAD_BEEF_u32.to_le_bytes());
        (bytes[4], bytes[5], bytes[6]) = (1, 1, source);
        bytes[24..28].copy_from_slice(&8u32.to_le_bytes());
        (bytes[32], bytes[33]) = (1, 6);
        bytes[8..16].copy_from_slice(&sequence.to_le_bytes());
        bytes[39] = last;
        Captured { bytes, arrival_ns: sequence }
    }

    #[test]
    fn a_live_sample_ignores_its_edges_and_other_sources_but_not_a_changed_byte() {
        let reference: Vec<_> = (1..=100).map(|sequence| message(4, sequence, 0)).collect();
        // The candidate tap started late and stopped early, and sees
        // another producer's messages too.
        let mut candidate: Vec<_> = (5..=97).map(|sequence| message(4, sequence, 0)).collect();
        candidate.push(message(9, 50, 1));
        assert_eq!(judge(reference.clone(), candidate.clone(), 4), Some(Sampled::Identical));
        candidate[10] = message(4, 15, 1);
        assert_eq!(judge(reference.clone(), candidate.clone(), 4), Some(Sampled::Differs));
        candidate.remove(10);
        assert_eq!(judge(reference.clone(), candidate, 4), Some(Sampled::Differs), "one missing in the middle");
        assert_eq!(judge(reference, Vec::new(), 4), Some(Sampled::Differs), "the broker carried nothing");
        assert_eq!(judge(Vec::new(), Vec::new(), 4), None);
    }
}
