//! `myc produce`: runs a producer through the shim. The route comes from
//! the service's rollout stage, hot-reloaded from the rollout file; `--out`
//! is a dry run into a capture instead (no sockets). `--rate` paces, `--count`
//! stops, SIGINT/SIGTERM stop cleanly; either way everything published is
//! flushed, and `--summary-json` prints the counters as the last line.

use std::fs::File;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use codec::Source;
use producers::{FeedCounters, Paths, Summary, Synthetic};
use shim::{BrokerPublisher, Publisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};

use super::{Outcome, shutdown_signal};
use crate::args::{GlobalArgs, ProduceArgs};
use crate::progress;

/// How long the final flush may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

pub(crate) fn run(args: &ProduceArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let default_source = match args.feed.as_str() {
        "synthetic" => 99,
        "polygon" | "kraken" => bail!("the {} adapter is not built yet in this version", args.feed),
        other => bail!("unknown feed {other:?}: expected polygon, kraken or synthetic"),
    };
    if args.input.is_some() {
        bail!("the synthetic feed makes its own messages: it takes no --input");
    }
    let service = args.service.clone().unwrap_or_else(|| args.feed.clone());
    let source = settings.services.get(&service).and_then(|service| service.source).unwrap_or(default_source);
    let mut feed = Synthetic::new(Source::from_u8(source));
    let summary = match &args.out {
        Some(out) => dry_run(&mut feed, args, &service, out)?,
        None => publish(&mut feed, args, &settings, config::Sources::discover(global.config.clone()).file, &service)?,
    };
    let mut stdout = std::io::stdout().lock();
    if args.summary_json {
        writeln!(stdout, "{}", serde_json::to_string(&summary)?)?;
    } else {
        let paths = &summary.paths;
        writeln!(
            stdout,
            "{service}: {} messages; relay {} published, {} failed, {} shadow dropped; \
             broker {} published, {} failed, {} shadow dropped",
            summary.feed.events_published,
            paths.relay.published,
            paths.relay.failed,
            paths.relay.shadow_dropped,
            paths.broker.published,
            paths.broker.failed,
            paths.broker.shadow_dropped
        )?;
    }
    Ok(Outcome::Success)
}

/// Publishes through the shim until the count, or a signal.
fn publish(
    feed: &mut Synthetic,
    args: &ProduceArgs,
    settings: &config::Settings,
    settings_file: Option<std::path::PathBuf>,
    service: &str,
) -> anyhow::Result<Summary> {
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let rollout = &settings.rollout;
        let (stage, plan_watch) = StageHandle::follow(rollout.file.clone(), rollout.default_stage, service)
            .with_context(|| format!("cannot follow the rollout plan {}", rollout.file.display()))?;
        tracing::info!(service, stage = %stage.get(), plan = %rollout.file.display(), "producing");
        let publisher = ServicePublisher::new(
            RelayPublisher::from_settings(settings),
            BrokerPublisher::from_settings(settings, service)?,
            stage,
            ShadowLimits::from_settings(&settings.shadow),
        );
        let metrics_address =
            args.metrics.as_deref().or(Some(settings.metrics.listen.as_str()).filter(|address| !address.is_empty()));
        let metrics_listener = crate::metrics_http::bind(metrics_address).await?;
        // Settings are re-read on change too: a bad edit is logged and counted.
        // (Routes follow the rollout plan; connection settings take effect at
        // the next start.)
        let settings_watch = match &settings_file {
            Some(file) => {
                let sources = config::Sources::discover(Some(file.clone()));
                Some(config::Watched::start(file, move || config::load(&sources))?)
            }
            None => None,
        };
        let _metrics = crate::metrics_http::spawn(metrics_listener, |registry| {
            publisher.register(registry);
            plan_watch.counts().register(registry, "rollout");
            if let Some(watch) = &settings_watch {
                watch.counts().register(registry, "settings");
            }
        });

        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        tokio::spawn(async move {
            shutdown_signal().await;
            stopper.store(true, Ordering::Relaxed);
        });
        let counter = progress::counter(&format!("{service} publishing"));
        let pace = Pace::new(args.rate);
        let mut buf = [0u8; producers::synthetic::MESSAGE_LEN];
        let mut last_error = None::<Instant>;
        while !stop.load(Ordering::Relaxed) && args.count.is_none_or(|count| feed.built() < count) {
            let len = feed.next_into(now_ns(), &mut buf)?;
            if let Err(error) = publisher.publish(&buf[..len]).await
                && last_error.is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
            {
                // At most one line a second; the failed counter has them all.
                tracing::warn!(%error, "publish failed");
                last_error = Some(Instant::now());
            }
            if feed.built() % 1024 == 0 {
                counter.set_position(feed.built());
            }
            pace.wait(feed.built()).await;
        }
        counter.finish_and_clear();
        if let Err(error) = publisher.flush(FLUSH_DEADLINE).await {
            tracing::warn!(%error, "not everything was delivered before the flush deadline");
        }
        let shim = publisher.summary();
        let feed = FeedCounters { events_published: feed.built(), ..FeedCounters::default() };
        Ok(Summary { feed, paths: Paths { relay: shim.relay, broker: shim.broker } })
    })
}

/// Writes the messages to a capture instead of publishing them.
fn dry_run(feed: &mut Synthetic, args: &ProduceArgs, service: &str, out: &std::path::Path) -> anyhow::Result<Summary> {
    let Some(count) = args.count else {
        bail!("a synthetic dry run needs --count N");
    };
    let file = File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    let mut writer = verify::pcapng::Writer::new(file)?;
    let interface = writer.interface(&format!("produce:{service}"))?;
    let mut buf = [0u8; producers::synthetic::MESSAGE_LEN];
    while feed.built() < count {
        let now = now_ns();
        let len = feed.next_into(now, &mut buf)?;
        writer.packet(interface, now, &buf[..len])?;
    }
    writer.finish()?;
    let feed = FeedCounters { events_published: feed.built(), ..FeedCounters::default() };
    Ok(Summary { feed, paths: Paths::default() })
}

/// Paces publishing at `--rate` messages per second (or not at all).
struct Pace {
    rate: Option<u64>,
    started: tokio::time::Instant,
}

impl Pace {
    fn new(rate: Option<u64>) -> Pace {
        Pace { rate: rate.filter(|&rate| rate > 0), started: tokio::time::Instant::now() }
    }

    /// Waits until message `sent` is due.
    async fn wait(&self, sent: u64) {
        if let Some(rate) = self.rate {
            let due = self.started + Duration::from_nanos(sent.saturating_mul(1_000_000_000) / rate);
            if due > tokio::time::Instant::now() + Duration::from_micros(200) {
                tokio::time::sleep_until(due).await;
            }
        }
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
