//! `myc demo`: the whole migration on an embedded default, nothing to
//! install. In a temporary directory it starts a broker and a market-data
//! relay in-process, taps both into one capture per stage, and replays the
//! bundled Polygon and Kraken samples (in a loop, at `--rate` each) through
//! each adapter's own shim publisher. It walks the rollout stages by
//! rewriting the rollout file, which the publishers follow live: `set` to
//! `dual_relay_primary`, then `advance` (gated on the verify report of the
//! stage before) to `dual_broker_primary` and `broker`. For each stage it
//! prints what each path carried; for the dual stages, the verify verdict.
//! Exit 0 only if both dual stages verified identical.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use myc_codec::{Domain, Source};
use myc_config::{Settings, Stage};
use myc_producers::{Adapter, Kraken, Outbox, Polygon, Stamper};
use myc_rollout::{Actor, Rollout};
use myc_shim::{BrokerPublisher, Publisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};
use myc_transport::{Endpoint, Listener, SocketOptions};
use myc_verify::join::Ignore;
use myc_verify::report::Report;
use myc_verify::stream::CaptureStream;
use tokio::sync::{mpsc, oneshot};

use super::{Outcome, shutdown_signal};
use crate::args::{DemoArgs, Format};

const POLYGON_SAMPLE: &str = include_str!("../../../producers/samples/polygon.jsonl");
const KRAKEN_SAMPLE: &str = include_str!("../../../producers/samples/kraken.jsonl");
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
}

pub(crate) fn run(args: &DemoArgs, format: Format) -> anyhow::Result<Outcome> {
    if !(args.stage_seconds > 0.0 && args.stage_seconds.is_finite()) || args.rate == 0 {
        bail!("--stage-seconds and --rate must be positive");
    }
    let dir = tempfile::Builder::new().prefix("myc-demo-").tempdir().context("cannot create a temporary directory")?;
    let settings = demo_settings(dir.path());
    let runtime = super::runtime()?;
    let results = runtime.block_on(walk(args, &settings, dir.path(), format));
    let kept = if args.keep { Some(dir.keep()) } else { None };
    let results = results?;
    let ok = results
        .iter()
        .filter(|stage| stage.verdict.is_some())
        .all(|stage| stage.verdict.as_deref() == Some("identical"))
        && results.len() == Stage::ALL.len();
    summarise(&results, &settings, kept.as_deref(), ok, format)?;
    Ok(if ok { Outcome::Success } else { Outcome::Negative })
}

/// The embedded default: every socket and file in `dir`.
fn demo_settings(dir: &Path) -> Settings {
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
    for (service, source) in [("polygon_adapter", 4), ("kraken_adapter", 2)] {
        settings.services.insert(service.to_owned(), myc_config::ServiceSettings { source: Some(source) });
    }
    settings
}

/// What the taps hand the capture writer.
enum Tapped {
    Message(u32, Bytes, u64),
    /// Close the current capture, start the next at this path.
    Rotate(PathBuf, oneshot::Sender<anyhow::Result<()>>),
}

struct Producer<A> {
    service: &'static str,
    adapter: A,
    frames: Vec<&'static str>,
    next: usize,
    publisher: ServicePublisher<RelayPublisher, BrokerPublisher>,
    _watch: myc_config::Watched<myc_rollout::Plan>,
}

impl<A: Adapter> Producer<A> {
    /// Publishes frames until `target` messages were built in all.
    async fn produce_until(&mut self, target: u64, out: &mut Outbox) -> anyhow::Result<()> {
        while self.adapter.built() < target {
            let frame = self.frames[self.next % self.frames.len()];
            self.next += 1;
            let _ = self.adapter.frame(frame, now_ns(), now_ns(), out);
            for message in out.messages() {
                self.publisher.publish(message).await.with_context(|| format!("{} could not publish", self.service))?;
            }
            out.clear();
        }
        Ok(())
    }

    fn stage(&self) -> Stage {
        self.publisher.stage().get()
    }
}

async fn walk(args: &DemoArgs, settings: &Settings, dir: &Path, format: Format) -> anyhow::Result<Vec<StageResult>> {
    let say = |line: String| {
        if format == Format::Human {
            #[allow(clippy::print_stdout, reason = "the demo narrates")]
            {
                println!("{line}");
            }
        }
    };
    say(format!("myc demo: broker, market-data relay, Polygon and Kraken producers in {}", dir.display()));
    let broker_path = dir.join("mycelium.sock");
    let broker_listener = Listener::bind(&Endpoint::Unix(broker_path.clone()), SocketOptions::default()).await?;
    let broker_settings = myc_broker::Settings { restart_grace: Duration::ZERO, ..myc_broker::Settings::default() };
    let _broker = myc_broker::spawn(vec![broker_listener], broker_settings).await;
    let relay_listener =
        Listener::bind(&Endpoint::Unix(settings.relay.market_data.clone()), SocketOptions::default()).await?;
    let relay_settings = myc_relay_compat::RelaySettings {
        queue_messages: 1 << 20,
        ..super::relay::server_settings(&settings.relay_server)
    };
    let relay = myc_relay_compat::spawn(vec![(Domain::MarketData, relay_listener)], relay_settings).await;

    // Taps: relay (interface 0) and broker topic (interface 1), into the
    // capture of the current stage.
    let (tx, rx) = mpsc::channel::<Tapped>(65_536);
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let first_capture = capture_path(dir, 0);
    let writer = tokio::task::spawn_blocking(move || write_captures(rx, first_capture));
    let _taps = start_taps(&relay, &settings.relay.market_data, &broker_path, &tx, &counts).await?;

    let actor = Actor { user: "myc-demo".to_owned(), host: "localhost".to_owned() };
    let rollout = Rollout::from_settings(settings);
    let polygon = producer(
        "polygon_adapter",
        Polygon::new(Stamper::new(Source::PolygonCollector, false)),
        POLYGON_SAMPLE,
        settings,
    )?;
    let kraken = producer(
        "kraken_adapter",
        Kraken::new(Stamper::new(Source::KrakenCollector, false), 10),
        KRAKEN_SAMPLE,
        settings,
    )?;
    let (mut polygon, mut kraken) = (polygon, kraken);

    let stop = Arc::new(AtomicBool::new(false));
    let stopper = Arc::clone(&stop);
    tokio::spawn(async move {
        shutdown_signal().await;
        stopper.store(true, Ordering::Relaxed);
    });

    let mut results = Vec::new();
    let mut evidence: Option<Vec<u8>> = None;
    let mut out = Outbox::default();
    let mut delivered_before = [0u64; 2];
    for (index, stage) in Stage::ALL.into_iter().enumerate() {
        // Move both services to the stage: the first step is an operator
        // `set`, later ones `advance`, gated on the previous stage's report.
        if stage != Stage::Relay {
            for service in ["polygon_adapter", "kraken_adapter"] {
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
                    return finish(results, tx, writer).await;
                }
            }
            wait_for_stage(stage, || [polygon.stage(), kraken.stage()]).await?;
        }
        let capture = capture_path(dir, index);
        // Produce for the stage's time, both feeds at --rate.
        let started = Instant::now();
        let (polygon_start, kraken_start) = (polygon.adapter.built(), kraken.adapter.built());
        let duration = Duration::from_secs_f64(args.stage_seconds);
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        while started.elapsed() < duration && !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss,
                reason = "a message count"
            )]
            let due = (started.elapsed().as_secs_f64() * args.rate as f64) as u64;
            polygon.produce_until(polygon_start + due, &mut out).await?;
            kraken.produce_until(kraken_start + due, &mut out).await?;
        }
        let elapsed = started.elapsed();
        for publisher in [&polygon.publisher, &kraken.publisher] {
            publisher.flush(Duration::from_secs(10)).await?;
        }
        let produced = polygon.adapter.built() - polygon_start + kraken.adapter.built() - kraken_start;
        // Everything the paths accepted has reached the taps before the capture closes.
        let accepted = |pick: fn(&myc_shim::Summary) -> u64| {
            pick(&polygon.publisher.summary()) + pick(&kraken.publisher.summary())
        };
        let expected = [accepted(|summary| summary.relay.published), accepted(|summary| summary.broker.published)];
        wait_for_taps(&counts, expected).await;
        let delivered = [counts[0].load(Ordering::Relaxed), counts[1].load(Ordering::Relaxed)];
        let carried = [delivered[0] - delivered_before[0], delivered[1] - delivered_before[1]];
        delivered_before = delivered;
        rotate(&tx, capture_path(dir, index + 1)).await?;
        #[allow(clippy::cast_precision_loss, reason = "a rate")]
        let msgs_per_sec = produced as f64 / elapsed.as_secs_f64().max(f64::EPSILON);
        let mut result = StageResult {
            stage,
            relay_messages: carried[0],
            broker_messages: carried[1],
            produced,
            msgs_per_sec,
            verdict: None,
            capture: capture.clone(),
            report: None,
        };
        let mut line = format!(
            "stage {} {:<20} {:>8} produced ({:>7.0}/s)  relay carried {:>8}  broker carried {:>8}",
            index + 1,
            stage.name(),
            produced,
            msgs_per_sec,
            carried[0],
            carried[1]
        );
        if matches!(stage, Stage::DualRelayPrimary | Stage::DualBrokerPrimary) {
            let (report, json) = verify_stage(&capture)?;
            let path = dir.join(format!("stage-{}-{}-report.json", index + 1, stage));
            std::fs::write(&path, &json)?;
            line.push_str(&format!("  verify: {}", if report.identical() { "IDENTICAL" } else { "DIFFERS" }));
            result.verdict = Some(if report.identical() { "identical" } else { "differs" }.to_owned());
            result.report = Some(path);
            evidence = Some(json);
        }
        say(line);
        let failed = result.verdict.as_deref() == Some("differs");
        results.push(result);
        if stop.load(Ordering::Relaxed) {
            say("interrupted: stopping cleanly".to_owned());
            break;
        }
        if failed {
            say("the dual stage differs: the walk stops here (see the report)".to_owned());
            break;
        }
    }
    finish(results, tx, writer).await
}

async fn finish(
    results: Vec<StageResult>,
    tx: mpsc::Sender<Tapped>,
    writer: tokio::task::JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<Vec<StageResult>> {
    drop(tx);
    // The taps hold senders too; the writer ends when they are gone, but the
    // captures that matter were closed by their rotations already.
    writer.abort();
    Ok(results)
}

fn producer<A: Adapter>(
    service: &'static str,
    adapter: A,
    sample: &'static str,
    settings: &Settings,
) -> anyhow::Result<Producer<A>> {
    let (stage, watch) = StageHandle::follow(settings.rollout.file.clone(), settings.rollout.default_stage, service)?;
    let publisher = ServicePublisher::new(
        RelayPublisher::from_settings(settings),
        BrokerPublisher::from_settings(settings, service)?,
        stage,
        ShadowLimits::from_settings(&settings.shadow),
    );
    let frames = sample.lines().filter(|line| !line.trim().is_empty()).collect();
    Ok(Producer { service, adapter, frames, next: 0, publisher, _watch: watch })
}

/// Stage `index`'s capture (after the last stage: what the taps see while
/// the demo ends, normally nothing).
fn capture_path(dir: &Path, index: usize) -> PathBuf {
    match Stage::ALL.get(index) {
        Some(stage) => dir.join(format!("stage-{}-{stage}.pcapng", index + 1)),
        None => dir.join("after.pcapng"),
    }
}

/// Waits (up to 5 s) until every publisher follows the rollout file to `stage`.
async fn wait_for_stage(stage: Stage, current: impl Fn() -> [Stage; 2]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while current() != [stage, stage] {
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

async fn rotate(tx: &mpsc::Sender<Tapped>, next: PathBuf) -> anyhow::Result<()> {
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
    while let Some(tapped) = rx.blocking_recv() {
        match tapped {
            Tapped::Message(interface, bytes, arrival_ns) => writer.packet(interface, arrival_ns, &bytes)?,
            Tapped::Rotate(next, done) => {
                let rotated = writer.flush().map_err(anyhow::Error::from).and_then(|()| open(&next));
                match rotated {
                    Ok(next_writer) => {
                        let _ = std::mem::replace(&mut writer, next_writer).finish();
                        let _ = done.send(Ok(()));
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
    let comparison = myc_verify::join::compare(reference, candidate, Ignore::default(), 3);
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
