//! `myc demo`: the whole migration on an embedded default, nothing to
//! install. In a temporary directory it starts a broker and a market-data
//! relay in-process, taps both into one capture per stage, and replays the
//! bundled Polygon and Kraken samples (`--feeds` adds Coinbase and Binance;
//! in a loop, at `--rate` each) through each adapter's own shim publisher,
//! every adapter its own service and source. The producers never pause, as on a
//! running system: it walks the rollout stages by rewriting the rollout
//! file, which the publishers follow live — `set` to `dual_relay_primary`,
//! then `advance` (gated on the verify report of the stage before) to
//! `dual_broker_primary` and `broker` — and starts each stage's capture once
//! both publishers follow it. A dual stage's capture is verified with its
//! edges trimmed (what was in flight when the capture was rotated is `edge`,
//! not a loss). For each stage it prints what each path carried; for the
//! dual stages, the verify verdict. Exit 0 only if both dual stages verified
//! identical.
//!
//! The relay runs with its broker link (`myc relay --bridge`): an unmodified
//! legacy producer (Coinbase-like, source 3; Gemini-like, source 5, when the
//! Coinbase adapter is in the demo) walks the stages with the others, and a legacy relay consumer checks it receives every message of
//! every producer exactly once at every stage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use myc_codec::{Domain, Source};
use myc_config::{Settings, Stage};
use myc_producers::{Adapter, Binance, Coinbase, Kraken, Outbox, Polygon, Stamper};
use myc_rollout::{Actor, Rollout};
use myc_shim::{BrokerPublisher, Publisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};
use myc_transport::{Endpoint, Listener, SocketOptions};
use myc_verify::join::Options;
use myc_verify::report::Report;
use myc_verify::stream::CaptureStream;
use tokio::sync::{mpsc, oneshot};

use super::produce::Feed;
use super::{Outcome, shutdown_signal};
use crate::args::{DemoArgs, Format};

mod legacy;

const POLYGON_SAMPLE: &str = include_str!("../../../producers/samples/polygon.jsonl");
const KRAKEN_SAMPLE: &str = include_str!("../../../producers/samples/kraken.jsonl");
const COINBASE_SAMPLE: &str = include_str!("../../../producers/samples/coinbase.jsonl");
const BINANCE_SAMPLE: &str = include_str!("../../../producers/samples/binance.jsonl");
const RELAY_IF: &str = "relay:market_data";
const BROKER_IF: &str = "broker:market_data";

/// One stage's outcome.
#[derive(Debug, serde::Serialize)]
struct StageResult {
    stage: Stage,
    relay_messages: u64,
    broker_messages: u64,
    produced: u64,
    msgs_per_sec: f64,
    verdict: Option<String>,
    capture: PathBuf,
    report: Option<PathBuf>,
    /// What the legacy relay consumer received of the legacy producer's
    /// messages so far (the broker link's promise): `exactly_once`, or what
    /// is missing and repeated.
    legacy_consumer: String,
    /// What it received of the shim producers' messages, which they publish
    /// to the broker themselves: at the instant of a stage change a message
    /// may come twice or not at all (the producers and the relay's link each
    /// follow the plan on their own), which these counts show.
    shim_producers: legacy::SourceJudgement,
}

pub(crate) fn run(args: &DemoArgs, format: Format) -> anyhow::Result<Outcome> {
    if !(args.stage_seconds > 0.0 && args.stage_seconds.is_finite()) || args.rate == 0 {
        bail!("--stage-seconds and --rate must be positive");
    }
    let feeds = args.feeds.iter().map(|name| DemoFeed::parse(name)).collect::<anyhow::Result<Vec<_>>>()?;
    for (index, feed) in feeds.iter().enumerate() {
        if feeds[..index].iter().any(|earlier| earlier.service == feed.service) {
            bail!("--feeds names {} twice", feed.service.trim_end_matches("_adapter"));
        }
    }
    if feeds.is_empty() {
        bail!("--feeds needs at least one of polygon, kraken, coinbase, binance");
    }
    let sources: Vec<Source> = feeds.iter().map(|feed| feed.source).collect();
    let legacy = legacy::Identity::beside(&sources)?;
    let dir = tempfile::Builder::new().prefix("myc-demo-").tempdir().context("cannot create a temporary directory")?;
    let settings = demo_settings(dir.path(), &feeds, legacy);
    let runtime = super::runtime()?;
    let results = runtime.block_on(walk(args, feeds, legacy, &settings, dir.path(), format));
    let kept = if args.keep { Some(dir.keep()) } else { None };
    let results = results?;
    let ok = results
        .iter()
        .filter(|stage| stage.verdict.is_some())
        .all(|stage| stage.verdict.as_deref() == Some("identical"))
        && results.len() == Stage::ALL.len()
        && results.iter().all(|stage| stage.legacy_consumer == "exactly_once");
    summarise(&results, &settings, kept.as_deref(), ok, format)?;
    Ok(if ok { Outcome::Success } else { Outcome::Negative })
}

/// One feed of `--feeds`: its adapter and bundled sample, and the service
/// and source `myc produce` gives it.
struct DemoFeed {
    service: &'static str,
    source: Source,
    adapter: Box<dyn Adapter + Send>,
    sample: &'static str,
}

impl DemoFeed {
    fn parse(name: &str) -> anyhow::Result<DemoFeed> {
        let feed = Feed::parse(name.trim())?;
        let (service, source) = feed.defaults();
        let source = Source::from_u8(source);
        let stamper = Stamper::new(source, false);
        let (adapter, sample): (Box<dyn Adapter + Send>, _) = match feed {
            Feed::Polygon => (Box::new(Polygon::new(stamper)), POLYGON_SAMPLE),
            Feed::Kraken => (Box::new(Kraken::new(stamper, 10)), KRAKEN_SAMPLE),
            Feed::Coinbase => (Box::new(Coinbase::new(stamper)), COINBASE_SAMPLE),
            Feed::Binance => (Box::new(Binance::new(stamper)), BINANCE_SAMPLE),
            Feed::Synthetic => {
                bail!("the demo replays the bundled feed samples: choose from polygon, kraken, coinbase, binance")
            }
        };
        Ok(DemoFeed { service, source, adapter, sample })
    }
}

/// The embedded default: every socket and file in `dir`; a service per feed
/// and the legacy producer's.
fn demo_settings(dir: &Path, feeds: &[DemoFeed], legacy: legacy::Identity) -> Settings {
    let mut settings = Settings::default();
    settings.relay.market_data = dir.join("market_data.sock");
    settings.relay.signal = dir.join("signals.sock");
    settings.relay.execution = dir.join("execution.sock");
    settings.relay.system = dir.join("system.sock");
    settings.broker.endpoint = format!("unix:{}", dir.join("mycelium.sock").display());
    settings.rollout.file = dir.join("rollout.toml");
    settings.rollout.audit_log = dir.join("rollout-audit.jsonl");
    // Short stages on a busy machine match a few hundred messages; the gate
    // still needs some.
    settings.gate.min_messages = 100;
    // The demo's stages are seconds long; its evidence need not be a minute.
    settings.gate.min_duration = myc_config::Span::from_millis(100);
    let services = feeds.iter().map(|feed| (feed.service, feed.source)).chain([(legacy.service, legacy.source)]);
    for (service, source) in services {
        settings.services.insert(service.to_owned(), myc_config::ServiceSettings { source: Some(source.as_u8()) });
    }
    settings
}

/// What the taps hand the capture writer.
enum Tapped {
    Message(u32, Bytes, u64),
    /// Close the current capture, start the next at this path; answers
    /// what the closed capture holds per interface.
    Rotate(PathBuf, oneshot::Sender<anyhow::Result<[u64; 2]>>),
}

struct Producer {
    service: &'static str,
    /// The source of its messages (the legacy consumer's key).
    source: Source,
    adapter: Box<dyn Adapter + Send>,
    frames: Vec<&'static str>,
    next: usize,
    /// Shared with the walk, which reads its stage and summary while the
    /// producer runs.
    publisher: Arc<ServicePublisher<RelayPublisher, BrokerPublisher>>,
    /// Messages built by every producer, shared with the walk.
    produced: Arc<AtomicU64>,
    /// Messages this producer built: its last sequence, for the legacy
    /// consumer's check.
    built: Arc<AtomicU64>,
    _watch: myc_config::Watched<myc_rollout::Plan>,
}

impl Producer {
    /// Publishes the next frame's messages, when fewer than `target` were
    /// built in all; returns whether it did.
    async fn produce_toward(&mut self, target: u64, out: &mut Outbox) -> anyhow::Result<bool> {
        if self.adapter.built() >= target {
            return Ok(false);
        }
        let frame = self.frames[self.next % self.frames.len()];
        self.next += 1;
        let _ = self.adapter.frame(frame, now_ns(), now_ns(), out);
        for message in out.messages() {
            self.publisher.publish(message).await.with_context(|| format!("{} could not publish", self.service))?;
            self.produced.fetch_add(1, Ordering::Relaxed);
        }
        self.built.store(self.adapter.built(), Ordering::Relaxed);
        out.clear();
        Ok(true)
    }
}

/// Messages the legacy producer writes at most per turn (a turn is one
/// frame of each shim producer, a few to a few dozen messages).
const LEGACY_TURN: u64 = 16;

/// Every producer at `rate` each, without pause, until `stop`.
async fn produce(
    mut shims: Vec<Producer>,
    mut legacy: (legacy::LegacyProducer, Arc<AtomicU64>),
    produced: Arc<AtomicU64>,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut out = Outbox::default();
    let started = Instant::now();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a message count"
    )]
    let due = || (started.elapsed().as_secs_f64() * rate as f64) as u64;
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        // Frame by frame, in turn: a producer that fell behind on a busy
        // machine catches up without starving the others. The legacy
        // producer writes straight to the relay socket, as a legacy program
        // does (no shim, no buffer), a few messages a turn. What is due is
        // read again every turn: when the shim producers cannot keep up
        // with `rate` (a debug build, a loaded machine), a figure taken once
        // per tick leaves the legacy producer idle until they reach it, ever
        // longer as they fall further behind — whole stages without a
        // legacy message.
        let (legacy_producer, legacy_sent) = &mut legacy;
        while !stop.load(Ordering::Relaxed) {
            let due = due();
            let mut behind = false;
            for shim in &mut shims {
                behind |= shim.produce_toward(due, &mut out).await?;
            }
            let legacy_before = legacy_producer.sent;
            legacy_producer.produce_until(due.min(legacy_before + LEGACY_TURN)).await?;
            legacy_sent.store(legacy_producer.sent, Ordering::Relaxed);
            produced.fetch_add(legacy_producer.sent - legacy_before, Ordering::Relaxed);
            if !(behind || legacy_producer.sent < due) {
                break;
            }
        }
    }
    for shim in shims {
        shim.publisher.flush(Duration::from_secs(10)).await?;
    }
    Ok(())
}

async fn walk(
    args: &DemoArgs,
    feeds: Vec<DemoFeed>,
    legacy: legacy::Identity,
    settings: &Settings,
    dir: &Path,
    format: Format,
) -> anyhow::Result<Vec<StageResult>> {
    let say = |line: String| {
        if format == Format::Human {
            #[allow(clippy::print_stdout, reason = "the demo narrates")]
            {
                println!("{line}");
            }
        }
    };
    let names: Vec<&str> = feeds.iter().map(|feed| feed.service).collect();
    say(format!("myc demo: broker, market-data relay, producers {} in {}", names.join(", "), dir.display()));
    say(format!(
        "  with the relay's broker link, an unmodified legacy producer ({}, source {}) and a legacy consumer",
        legacy.service,
        legacy.source.as_u8()
    ));
    let broker_path = dir.join("mycelium.sock");
    let broker_listener = Listener::bind(&Endpoint::Unix(broker_path.clone()), SocketOptions::default()).await?;
    let broker_settings = myc_broker::Settings { restart_grace: Duration::ZERO, ..myc_broker::Settings::default() };
    let _broker = myc_broker::spawn(vec![broker_listener], broker_settings).await;
    let relay_listener =
        Listener::bind(&Endpoint::Unix(settings.relay.market_data.clone()), SocketOptions::default()).await?;
    // The relay's broker link, as `myc relay --bridge` runs it.
    let bridge = myc_shim::RelayBridge::start(settings, &[Domain::MarketData], "demo-relay").await?;
    let relay_settings = myc_relay_compat::RelaySettings {
        queue_messages: 1 << 20,
        links: bridge.links(),
        ..super::relay::server_settings(&settings.relay_server)
    };
    let relay = myc_relay_compat::spawn(vec![(Domain::MarketData, relay_listener)], relay_settings).await;
    if !bridge.wait_ready(Duration::from_secs(5)).await {
        bail!("the relay's broker link did not subscribe to the demo broker");
    }

    // Taps: relay (interface 0) and broker topic (interface 1), into the
    // capture of the current stage.
    let (tx, rx) = mpsc::channel::<Tapped>(65_536);
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let first_capture = capture_path(dir, 0);
    let writer = tokio::task::spawn_blocking(move || write_captures(rx, first_capture));
    let _taps = start_taps(&relay, &settings.relay.market_data, &broker_path, &tx, &counts).await?;

    let actor = Actor { user: "myc-demo".to_owned(), host: "localhost".to_owned() };
    let rollout = Rollout::from_settings(settings);
    let produced = Arc::new(AtomicU64::new(0));
    let shims =
        feeds.into_iter().map(|feed| producer(feed, settings, &produced)).collect::<anyhow::Result<Vec<_>>>()?;
    let publishers: Vec<_> = shims.iter().map(|shim| Arc::clone(&shim.publisher)).collect();
    let stages = || publishers.iter().map(|publisher| publisher.stage().get()).collect::<Vec<_>>();
    // What each path accepted, from every publisher.
    let accepted = || {
        let summaries: Vec<_> = publishers.iter().map(|publisher| publisher.summary()).collect();
        [
            summaries.iter().map(|summary| summary.relay.published).sum::<u64>(),
            summaries.iter().map(|summary| summary.broker.published).sum::<u64>(),
        ]
    };

    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.store(true, Ordering::Relaxed);
    });
    let producing = Arc::new(AtomicBool::new(false));
    let legacy_consumer = legacy::LegacyConsumer::connect(&settings.relay.market_data, &relay).await?;
    let legacy_producer = legacy::LegacyProducer::connect(&settings.relay.market_data, legacy.source).await?;
    let legacy_sent = Arc::new(AtomicU64::new(0));
    // Each producer's last sequence so far: what the legacy consumer must hold.
    let last_sequences = {
        let counters: Vec<(u8, Arc<AtomicU64>)> = shims
            .iter()
            .map(|shim| (shim.source.as_u8(), Arc::clone(&shim.built)))
            .chain([(legacy.source.as_u8(), Arc::clone(&legacy_sent))])
            .collect();
        move || counters.iter().map(|(source, last)| (*source, last.load(Ordering::Relaxed))).collect::<Vec<_>>()
    };
    let services: Vec<&str> = shims.iter().map(|shim| shim.service).chain([legacy.service]).collect();
    let mut producers = tokio::spawn(produce(
        shims,
        (legacy_producer, legacy_sent),
        Arc::clone(&produced),
        args.rate,
        Arc::clone(&producing),
    ));

    let mut results = Vec::new();
    let mut evidence: Option<Vec<u8>> = None;
    for (index, stage) in Stage::ALL.into_iter().enumerate() {
        // Move every service to the stage: the first step is an operator
        // `set`, later ones `advance`, gated on the previous stage's report.
        if stage != Stage::Relay {
            for &service in &services {
                let changed = match &evidence {
                    Some(report) if stage != Stage::DualRelayPrimary => rollout.advance(
                        service,
                        Some(report),
                        false,
                        "demo: verified identical",
                        &actor,
                        SystemTime::now(),
                    ),
                    _ => rollout.set(service, stage, "demo: start dual-write", &actor, SystemTime::now()),
                };
                if let Err(error) = changed {
                    say(format!("  rollout of {service} to {stage} stopped: {error}"));
                    return finish(results, tx, writer, &producing, producers).await;
                }
            }
            wait_for_stage(stage, stages).await?;
            wait_for_stage(stage, || vec![bridge.stages().of(legacy.source.as_u8())]).await?;
            // A path this stage does not use carries nothing more: what it
            // accepted before reaches its tap before the stage's capture
            // starts (the producers keep going meanwhile).
            let mut settled = [0, 0];
            for (path, used) in [stage != Stage::Broker, stage != Stage::Relay].into_iter().enumerate() {
                settled[path] = if used { 0 } else { accepted()[path] };
            }
            wait_for_taps(&counts, settled).await;
            // Closes the capture of the change itself.
            rotate(&tx, capture_path(dir, index)).await?;
        }
        let capture = capture_path(dir, index);
        let (started, produced_before) = (Instant::now(), produced.load(Ordering::Relaxed));
        let duration = Duration::from_secs_f64(args.stage_seconds);
        while started.elapsed() < duration && !stop.load(Ordering::Relaxed) && !producers.is_finished() {
            tokio::time::sleep(Duration::from_millis(10).min(duration)).await;
        }
        let elapsed = started.elapsed();
        let produced_in_stage = produced.load(Ordering::Relaxed) - produced_before;
        if stage == Stage::Broker || stop.load(Ordering::Relaxed) || producers.is_finished() {
            // The end: the producers stop and flush, and what they sent arrives.
            producing.store(true, Ordering::Relaxed);
            (&mut producers).await.context("the producers stopped")??;
            wait_for_taps(&counts, accepted()).await;
        }
        let carried = rotate(&tx, transition_path(dir, index)).await?;
        // Relay consumers receive every message of every producer (the link
        // brings down what producers at broker no longer write to the relay).
        let judged = legacy_consumer.judge(&last_sequences(), legacy.source).await;
        let (legacy_verdict, shim_producers) = {
            let (linked, shims): (Vec<_>, Vec<_>) =
                judged.iter().partition(|judgement| judgement.source == legacy.source.as_u8());
            let linked: Option<legacy::SourceJudgement> =
                linked.first().map(|judgement: &&legacy::SourceJudgement| **judgement);
            let verdict = match linked {
                Some(legacy::SourceJudgement { missing: 0, repeated: 0, .. }) | None => "exactly_once".to_owned(),
                Some(judgement) => format!("missing {}, repeated {}", judgement.missing, judgement.repeated),
            };
            let mut shim_producers = legacy::SourceJudgement { source: 0, missing: 0, repeated: 0 };
            for judgement in shims {
                shim_producers.missing += judgement.missing;
                shim_producers.repeated += judgement.repeated;
            }
            (verdict, shim_producers)
        };
        #[allow(clippy::cast_precision_loss, reason = "a rate")]
        let msgs_per_sec = produced_in_stage as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
        let mut result = StageResult {
            stage,
            relay_messages: carried[0],
            broker_messages: carried[1],
            produced: produced_in_stage,
            msgs_per_sec,
            verdict: None,
            capture: capture.clone(),
            report: None,
            legacy_consumer: legacy_verdict,
            shim_producers,
        };
        let mut line = format!(
            "stage {} {:<20} {:>8} produced ({:>7.0}/s)  relay carried {:>8}  broker carried {:>8}",
            index + 1,
            stage.name(),
            produced_in_stage,
            msgs_per_sec,
            carried[0],
            carried[1]
        );
        if matches!(stage, Stage::DualRelayPrimary | Stage::DualBrokerPrimary) {
            let (report, json) = verify_stage(&capture)?;
            let path = dir.join(format!("stage-{}-{}-report.json", index + 1, stage));
            std::fs::write(&path, &json)?;
            line.push_str(&format!(
                "  verify: {} (edge {}/{})",
                if report.identical() { "IDENTICAL" } else { "DIFFERS" },
                report.edge.reference,
                report.edge.candidate
            ));
            result.verdict = Some(report.verdict.to_owned());
            result.report = Some(path);
            evidence = Some(json);
        }
        line.push_str(&format!(
            "  legacy consumer: {}",
            if result.legacy_consumer == "exactly_once" {
                "every legacy message exactly once"
            } else {
                &result.legacy_consumer
            }
        ));
        let shims = result.shim_producers;
        if shims.missing + shims.repeated > 0 {
            line.push_str(&format!(
                " (shim producers' messages at the stage change: {} missed, {} twice)",
                shims.missing, shims.repeated
            ));
        }
        say(line);
        let failed = result.verdict.as_deref().is_some_and(|verdict| verdict != "identical");
        results.push(result);
        if stop.load(Ordering::Relaxed) {
            say("interrupted: stopping cleanly".to_owned());
            break;
        }
        if producers.is_finished() && stage != Stage::Broker {
            say("the producers stopped: the walk stops here".to_owned());
            break;
        }
        if failed {
            say("the dual stage differs: the walk stops here (see the report)".to_owned());
            break;
        }
    }
    finish(results, tx, writer, &producing, producers).await
}

async fn finish(
    results: Vec<StageResult>,
    tx: mpsc::Sender<Tapped>,
    writer: tokio::task::JoinHandle<anyhow::Result<()>>,
    producing: &AtomicBool,
    producers: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<Vec<StageResult>> {
    producing.store(true, Ordering::Relaxed);
    if !producers.is_finished() {
        producers.abort();
    }
    drop(tx);
    // The taps hold senders too; the writer ends when they are gone, but the
    // captures that matter were closed by their rotations already.
    writer.abort();
    Ok(results)
}

fn producer(feed: DemoFeed, settings: &Settings, produced: &Arc<AtomicU64>) -> anyhow::Result<Producer> {
    let DemoFeed { service, source, adapter, sample } = feed;
    let produced = Arc::clone(produced);
    let (stage, watch) = StageHandle::follow(settings.rollout.file.clone(), settings.rollout.default_stage, service)?;
    let publisher = Arc::new(ServicePublisher::new(
        RelayPublisher::from_settings(settings),
        BrokerPublisher::from_settings(settings, service)?,
        stage,
        ShadowLimits::from_settings(&settings.shadow),
    ));
    let frames = sample.lines().filter(|line| !line.trim().is_empty()).collect();
    Ok(Producer {
        service,
        source,
        adapter,
        frames,
        next: 0,
        publisher,
        produced,
        built: Arc::default(),
        _watch: watch,
    })
}

/// Stage `index`'s capture.
fn capture_path(dir: &Path, index: usize) -> PathBuf {
    let stage = Stage::ALL.get(index).map_or("after", |stage| stage.name());
    dir.join(format!("stage-{}-{stage}.pcapng", index + 1))
}

/// What the taps see after stage `index` while the next stage is put in
/// place (after the last stage: while the demo ends, normally nothing).
fn transition_path(dir: &Path, index: usize) -> PathBuf {
    match Stage::ALL.get(index + 1) {
        Some(next) => dir.join(format!("stage-{}-to-{next}.pcapng", index + 1)),
        None => dir.join("after.pcapng"),
    }
}

/// Waits (up to 5 s) until every publisher follows the rollout file to `stage`.
async fn wait_for_stage(stage: Stage, current: impl Fn() -> Vec<Stage>) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while current().iter().any(|&now| now != stage) {
        if Instant::now() > deadline {
            bail!("the producers did not follow the rollout file to {stage} within 5 s");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Waits (up to 10 s) until the taps have seen `expected` messages.
async fn wait_for_taps(counts: &[AtomicU64; 2], expected: [u64; 2]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while (counts[0].load(Ordering::Relaxed) < expected[0] || counts[1].load(Ordering::Relaxed) < expected[1])
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Closes the current capture and starts `next`; returns what the closed
/// one holds per interface.
async fn rotate(tx: &mpsc::Sender<Tapped>, next: PathBuf) -> anyhow::Result<[u64; 2]> {
    let (done, rotated) = oneshot::channel();
    tx.send(Tapped::Rotate(next, done)).await.context("the capture writer stopped")?;
    rotated.await.context("the capture writer stopped")?
}

/// Writes tapped messages into the current capture, rotating on command.
fn write_captures(mut rx: mpsc::Receiver<Tapped>, first: PathBuf) -> anyhow::Result<()> {
    let open = |path: &Path| -> anyhow::Result<myc_verify::pcapng::Writer<std::fs::File>> {
        let mut writer = myc_verify::pcapng::Writer::new(std::fs::File::create(path)?)?;
        writer.interface(RELAY_IF)?;
        writer.interface(BROKER_IF)?;
        Ok(writer)
    };
    let mut writer = open(&first)?;
    let mut written = [0u64; 2];
    // When the current capture began. A tap stamps a message when it reads
    // it and queues it after; on a busy machine one stamped just before a
    // rotation can be queued just after it. It belongs to the new capture,
    // whose window must not start before the stage change that opened it
    // (the gate refuses evidence from before a service's last change).
    let mut opened_ns = 0;
    while let Some(tapped) = rx.blocking_recv() {
        match tapped {
            Tapped::Message(interface, bytes, arrival_ns) => {
                writer.packet(interface, arrival_ns.max(opened_ns), &bytes)?;
                if let Some(count) = written.get_mut(interface as usize) {
                    *count += 1;
                }
            }
            Tapped::Rotate(next, done) => {
                let rotated = writer.flush().map_err(anyhow::Error::from).and_then(|()| open(&next));
                match rotated {
                    Ok(next_writer) => {
                        opened_ns = now_ns();
                        let _ = std::mem::replace(&mut writer, next_writer).finish();
                        let _ = done.send(Ok(std::mem::take(&mut written)));
                    }
                    Err(error) => {
                        let _ = done.send(Err(error));
                    }
                }
            }
        }
    }
    writer.finish()?;
    Ok(())
}

/// Taps the relay and the broker topic; counts what each delivered.
async fn start_taps(
    relay: &myc_transport::Running<myc_relay_compat::RelayHandle>,
    relay_path: &Path,
    broker_path: &Path,
    tx: &mpsc::Sender<Tapped>,
    counts: &Arc<[AtomicU64; 2]>,
) -> anyhow::Result<Vec<myc_transport::AbortOnDrop>> {
    let mut tap = myc_relay_compat::RelayTap::connect(relay_path).await?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while relay.handle().consumers(Domain::MarketData) < 1 {
        if Instant::now() > deadline {
            bail!("the relay did not accept the tap");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (relay_tx, relay_counts) = (tx.clone(), Arc::clone(counts));
    let relay_task = myc_transport::AbortOnDrop::spawn(async move {
        while let Ok(Some(message)) = tap.next().await {
            if relay_tx.send(Tapped::Message(0, message.bytes, message.arrival_ns)).await.is_err() {
                return;
            }
            relay_counts[0].fetch_add(1, Ordering::Relaxed);
        }
    });
    let client = myc_broker::Client::start(myc_broker::ClientOptions::new(Endpoint::Unix(broker_path.to_owned())));
    let mut subscription = client.subscribe("market_data", "")?;
    subscription.wait_active(Duration::from_secs(5)).await.context("cannot subscribe to the demo broker")?;
    let (broker_tx, broker_counts) = (tx.clone(), Arc::clone(counts));
    let broker_task = myc_transport::AbortOnDrop::spawn(async move {
        let _client = client;
        while let Some(batch) = subscription.recv_batch().await {
            let arrival_ns = now_ns();
            for payload in batch.payloads() {
                if broker_tx.send(Tapped::Message(1, Bytes::copy_from_slice(payload), arrival_ns)).await.is_err() {
                    return;
                }
                broker_counts[1].fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    Ok(vec![relay_task, broker_task])
}

/// Verifies a dual stage's capture: relay (reference) against broker.
fn verify_stage(capture: &Path) -> anyhow::Result<(Report, Vec<u8>)> {
    let reference = CaptureStream::open(capture, Some(RELAY_IF))?;
    let candidate = CaptureStream::open(capture, Some(BROKER_IF))?;
    let (reference_info, candidate_info) = (reference.info(), candidate.info());
    // The capture was rotated while messages were in flight: its edges are trimmed.
    let options = Options { examples: 3, trim_edges: true, ..Options::default() };
    let comparison = myc_verify::join::compare_with(reference, candidate, &options);
    if let Some(error) = reference_info.error().or_else(|| candidate_info.error()) {
        bail!("{}: {error}", capture.display());
    }
    let report = Report::new(&comparison, RELAY_IF, BROKER_IF, SystemTime::now());
    let mut json = Vec::new();
    report.render_json(&mut json)?;
    Ok((report, json))
}

fn summarise(
    results: &[StageResult],
    settings: &Settings,
    kept: Option<&Path>,
    ok: bool,
    format: Format,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if format == Format::Json {
        let summary = serde_json::json!({
            "ok": ok,
            "stages": results,
            // Which services walked, by source (the legacy producer's too).
            "services": settings.services.iter().map(|(name, service)| (name, service.source)).collect::<std::collections::BTreeMap<_, _>>(),
            "audit_log": settings.rollout.audit_log,
            "kept": kept,
        });
        writeln!(out, "{summary}")?;
        return Ok(());
    }
    let produced: u64 = results.iter().map(|stage| stage.produced).sum();
    let relay: u64 = results.iter().map(|stage| stage.relay_messages).sum();
    let broker: u64 = results.iter().map(|stage| stage.broker_messages).sum();
    writeln!(out)?;
    writeln!(out, "summary: {produced} messages produced; the relay carried {relay}, the broker {broker}")?;
    for stage in results.iter().filter(|stage| stage.verdict.is_some()) {
        writeln!(out, "  {:<20} verify {}", stage.stage.name(), stage.verdict.as_deref().unwrap_or("-"))?;
    }
    match kept {
        Some(dir) => {
            writeln!(out, "  captures, verify reports and the rollout plan: {}", dir.display())?;
            writeln!(out, "  audit log: {}", settings.rollout.audit_log.display())?;
        }
        None => writeln!(out, "  (captures and the audit log were in a temporary directory; --keep keeps them)")?,
    }
    writeln!(
        out,
        "{}",
        if ok {
            "result: both dual stages verified identical — the broker carries the relay's bytes"
        } else {
            "result: FAILED"
        }
    )?;
    Ok(())
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
