//! `myc produce`: runs a producer — the Polygon, Kraken, Coinbase or
//! Binance adapter on a
//! replay file, stdin or a live WebSocket, or the synthetic feed — through
//! the shim. The route comes from the service's rollout stage, re-read
//! whenever the rollout file changes; `--out` is a dry run into a capture
//! instead (no sockets). `--rate` and `--realtime` pace, `--count` stops,
//! SIGINT/SIGTERM stop cleanly; either way everything published is flushed,
//! and `--summary-json` prints the counters as the last line of stdout.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use myc_codec::Source;
use myc_producers::{
    Adapter, Binance, Coinbase, FeedCounters, Input, Kraken, Outbox, Pace, Paths, Polygon, Stamper, Summary, Synthetic,
};
use myc_shim::{BrokerSide, PrimaryOptions, Publisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};

use super::{Outcome, shutdown_signal};
use crate::args::{GlobalArgs, ProduceArgs};
use crate::progress;

/// How long the final flush may take.
const FLUSH_DEADLINE: Duration = Duration::from_secs(10);

/// The feed kinds (the demo replays the four adapters' samples).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Feed {
    Polygon,
    Kraken,
    Coinbase,
    Binance,
    Synthetic,
}

impl Feed {
    pub(super) fn parse(name: &str) -> anyhow::Result<Feed> {
        Ok(match name {
            "polygon" => Feed::Polygon,
            "kraken" => Feed::Kraken,
            "coinbase" => Feed::Coinbase,
            "binance" => Feed::Binance,
            "synthetic" => Feed::Synthetic,
            other => bail!("unknown feed {other:?}: expected polygon, kraken, coinbase, binance or synthetic"),
        })
    }

    /// The service name when `--service` is not given, and its source id
    /// when the settings do not give one.
    pub(super) fn defaults(self) -> (&'static str, u8) {
        match self {
            Feed::Polygon => ("polygon_adapter", 4),
            Feed::Kraken => ("kraken_adapter", 2),
            Feed::Coinbase => ("coinbase_adapter", 3),
            Feed::Binance => ("binance_adapter", 1),
            Feed::Synthetic => ("synthetic", 99),
        }
    }
}

pub(crate) fn run(args: &ProduceArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let feed = Feed::parse(&args.feed)?;
    let (default_service, default_source) = feed.defaults();
    let input = match (feed, &args.input) {
        (Feed::Synthetic, Some(_)) => bail!("the synthetic feed makes its own messages: it takes no --input"),
        (Feed::Synthetic, None) => None,
        (_, Some(input)) => Some(Input::parse(input)),
        (_, None) => bail!("say where the frames come from: --input FILE, - (stdin) or a ws:// / wss:// URL"),
    };
    if args.rate.is_some() && args.realtime {
        bail!("--rate and --realtime are two different paces: choose one");
    }
    if args.repeat && !matches!(input, Some(Input::File(_))) {
        bail!("--loop replays a file: give --input FILE");
    }
    if args.repeat && args.out.is_some() && args.count.is_none() {
        bail!("a looped dry run needs --count N");
    }
    if feed == Feed::Synthetic && args.out.is_some() && args.count.is_none() {
        bail!("a synthetic dry run needs --count N");
    }
    let service = args.service.clone().unwrap_or_else(|| default_service.to_owned());
    // The name reaches metric labels, the plan and the console: the same rule.
    myc_config::check_service_name(&service).map_err(anyhow::Error::msg)?;
    let source = settings.services.get(&service).and_then(|service| service.source).unwrap_or(default_source);
    let stamper = Stamper::new(Source::from_u8(source), args.deterministic);
    let feed_settings = settings.feeds.get(&args.feed).cloned().unwrap_or_default();
    let options = myc_producers::Options {
        pace: match (args.rate, args.realtime) {
            (Some(rate), _) => Pace::Rate(rate),
            (None, true) => Pace::Realtime,
            (None, false) => Pace::Unpaced,
        },
        count: args.count,
        deterministic: args.deterministic,
        subscribe: feed_settings.subscribe.clone(),
        resubscribe: Some(feed_settings.resubscribe.clone()).filter(|message| !message.is_empty()),
        repeat: args.repeat,
    };
    let runtime = super::runtime()?;
    let (summary, stage) = runtime.block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        let stopper = Arc::clone(&stop);
        tokio::spawn(async move {
            shutdown_signal().await;
            stopper.store(true, Ordering::Relaxed);
        });
        let mut sink = match &args.out {
            Some(out) => Sink::Capture(CaptureSink::create(out, &service, args.deterministic)?),
            None => Sink::Shim(Box::new(ShimSink::start(&settings, global, &service, args.metrics.as_deref()).await?)),
        };
        let counter = progress::counter(&format!("{service} producing"));
        let feed_counters = match (feed, &input) {
            (Feed::Synthetic, _) => {
                synthetic(Synthetic::new(Source::from_u8(source)), args, &mut sink, &stop, &counter).await?
            }
            (Feed::Polygon, Some(input)) => drive(Polygon::new(stamper), input, &options, &mut sink, &stop).await?,
            (Feed::Kraken, Some(input)) => {
                drive(
                    Kraken::new(stamper, feed_settings.book_depth).max_books(feed_settings.max_books),
                    input,
                    &options,
                    &mut sink,
                    &stop,
                )
                .await?
            }
            (Feed::Coinbase, Some(input)) => drive(Coinbase::new(stamper), input, &options, &mut sink, &stop).await?,
            (Feed::Binance, Some(input)) => drive(Binance::new(stamper), input, &options, &mut sink, &stop).await?,
            (_, None) => bail!("no input"),
        };
        counter.finish_and_clear();
        let (paths, stage) = sink.finish().await?;
        anyhow::Ok((Summary { feed: feed_counters, paths }, stage))
    })?;
    let mut stdout = std::io::stdout().lock();
    if args.summary_json {
        writeln!(stdout, "{}", serde_json::to_string(&summary)?)?;
    } else {
        let (feed, paths) = (&summary.feed, &summary.paths);
        writeln!(
            stdout,
            "{service}: {} frames ({} rejected, {} control), {} events published, {} dropped, {} ignored; \
             relay {} published / {} failed; broker {} published / {} failed / {} shadow dropped",
            feed.frames,
            feed.frames_rejected,
            feed.frames_control,
            feed.events_published,
            feed.events_dropped.values().sum::<u64>(),
            feed.events_ignored.values().sum::<u64>(),
            paths.relay.published,
            paths.relay.failed,
            paths.broker.published,
            paths.broker.failed,
            paths.broker.shadow_dropped + paths.relay.shadow_dropped
        )?;
    }
    let primary = match stage {
        None => None,
        Some(stage) if myc_rollout::Route::of(stage).relay == Some(myc_rollout::Role::Primary) => {
            Some(&summary.paths.relay)
        }
        Some(_) => Some(&summary.paths.broker),
    };
    if let Some(primary) = primary.filter(|primary| primary.undelivered > 0) {
        writeln!(
            std::io::stderr().lock(),
            "{service}: {} messages of the primary path were never delivered (not acknowledged, and not in a spool)",
            primary.undelivered
        )?;
        return Ok(Outcome::Negative);
    }
    Ok(Outcome::Success)
}

async fn drive(
    mut adapter: impl Adapter,
    input: &Input,
    options: &myc_producers::Options,
    sink: &mut Sink,
    stop: &Arc<AtomicBool>,
) -> anyhow::Result<FeedCounters> {
    myc_producers::run(&mut adapter, input, options, sink, stop).await?;
    Ok(adapter.counters().clone())
}

/// The synthetic feed: Trade messages until the count or a signal.
async fn synthetic(
    mut feed: Synthetic,
    args: &ProduceArgs,
    sink: &mut Sink,
    stop: &AtomicBool,
    counter: &indicatif::ProgressBar,
) -> anyhow::Result<FeedCounters> {
    let started = tokio::time::Instant::now();
    let mut out = Outbox::default();
    let mut buf = [0u8; myc_producers::synthetic::MESSAGE_LEN];
    while !stop.load(Ordering::Relaxed) && args.count.is_none_or(|count| feed.built() < count) {
        let len = feed.next_into(now_ns(), &mut buf)?;
        out.push(&buf[..len]);
        if let Err(error) = myc_producers::Sink::deliver(sink, &out).await {
            tracing::debug!(%error, "publish failed");
        }
        out.clear();
        if feed.built() % 1024 == 0 {
            counter.set_position(feed.built());
        }
        if let Some(rate) = args.rate.filter(|&rate| rate > 0) {
            let due = started + Duration::from_nanos(feed.built().saturating_mul(1_000_000_000) / rate);
            if due > tokio::time::Instant::now() + Duration::from_micros(200) {
                tokio::time::sleep_until(due).await;
            }
        }
    }
    Ok(FeedCounters { events_published: feed.built(), ..FeedCounters::default() })
}

/// Where a producer's messages go.
enum Sink {
    Shim(Box<ShimSink>),
    Capture(CaptureSink),
}

impl Sink {
    /// Flushes and returns the per-path counts and the stage at the end
    /// (`None` for a dry run).
    async fn finish(self) -> anyhow::Result<(Paths, Option<myc_config::Stage>)> {
        match self {
            Sink::Shim(shim) => {
                if let Err(error) = shim.publisher.flush(FLUSH_DEADLINE).await {
                    tracing::warn!(%error, "not everything was delivered before the flush deadline");
                }
                let summary = shim.publisher.summary();
                Ok((Paths { relay: summary.relay, broker: summary.broker }, Some(summary.stage)))
            }
            Sink::Capture(capture) => {
                capture.writer.finish()?;
                Ok((Paths::default(), None))
            }
        }
    }
}

impl myc_producers::Sink for Sink {
    async fn deliver(&mut self, out: &Outbox) -> Result<(), String> {
        match self {
            Sink::Shim(shim) => (&*shim.publisher).deliver(out).await,
            Sink::Capture(capture) => capture.write(out).map_err(|error| error.to_string()),
        }
    }
}

/// The shim, routed by the service's rollout stage, and what keeps it
/// current: the rollout plan and settings watches, the metrics server.
struct ShimSink {
    publisher: Arc<ServicePublisher<RelayPublisher, BrokerSide>>,
    /// Keeps the exported reconnect and resend counts current.
    _refresh: myc_transport::AbortOnDrop,
    /// Applies good settings edits to the publisher.
    _follow: Option<myc_transport::AbortOnDrop>,
    _plan_watch: myc_config::Watched<myc_rollout::Plan>,
    _settings_watch: Option<myc_config::Watched<myc_config::Settings>>,
    _metrics: Option<myc_transport::AbortOnDrop>,
}

impl ShimSink {
    async fn start(
        settings: &myc_config::Settings,
        global: &GlobalArgs,
        service: &str,
        metrics: Option<&str>,
    ) -> anyhow::Result<ShimSink> {
        let rollout = &settings.rollout;
        let (stage, plan_watch) = StageHandle::follow(rollout.file.clone(), rollout.default_stage, service)
            .with_context(|| format!("cannot follow the rollout plan {}", rollout.file.display()))?;
        tracing::info!(service, stage = %stage.get(), plan = %rollout.file.display(), "producing");
        let mut publisher = ServicePublisher::new(
            RelayPublisher::from_settings(settings),
            BrokerSide::from_settings(settings, service).await?,
            stage,
            ShadowLimits::from_settings(&settings.shadow),
        );
        // The broker path's breaker and spool; a spool left by an earlier
        // run is sent before anything new.
        publisher.guard_broker_primary(PrimaryOptions::from_settings(&settings.broker))?;
        let publisher = Arc::new(publisher);
        let refreshed = Arc::clone(&publisher);
        let refresh = myc_transport::AbortOnDrop::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                refreshed.refresh();
            }
        });
        // Settings are re-read on change too: a bad edit is logged and
        // counted, a good one applied (the broker path's connection and
        // breaker settings at once; see `myc_shim::live`).
        let settings_watch = match myc_config::Sources::discover(global.config.clone()).file {
            Some(file) => {
                let sources = myc_config::Sources::discover(Some(file.clone()));
                Some(myc_config::Watched::start(&file, move || myc_config::load(&sources))?)
            }
            None => None,
        };
        let follow = settings_watch.as_ref().map(|watch| myc_shim::live::follow(Arc::clone(&publisher), watch));
        let address = metrics.or(Some(settings.metrics.listen.as_str()).filter(|address| !address.is_empty()));
        let listener = crate::metrics_http::bind(address).await?;
        let metrics = crate::metrics_http::spawn(listener, |registry| {
            publisher.register(registry, service);
            crate::metrics_http::ResidentMemory::register(registry);
            plan_watch.counts().register(registry, "rollout");
            if let Some(watch) = &settings_watch {
                watch.counts().register(registry, "settings");
                registry.register(
                    "myc_config_reload_failures",
                    "Settings edits that did not load or validate (the last good settings kept)",
                    watch.counts().rejected.clone(),
                );
            }
        });
        Ok(ShimSink {
            publisher,
            _refresh: refresh,
            _follow: follow,
            _plan_watch: plan_watch,
            _settings_watch: settings_watch,
            _metrics: metrics,
        })
    }
}

/// A dry run: messages into a capture, one interface `produce:<service>`.
struct CaptureSink {
    writer: myc_verify::pcapng::Writer<File>,
    interface: u32,
    deterministic: bool,
    path: PathBuf,
}

impl CaptureSink {
    fn create(path: &Path, service: &str, deterministic: bool) -> anyhow::Result<CaptureSink> {
        let file = File::create(path).with_context(|| format!("cannot write {}", path.display()))?;
        let mut writer = myc_verify::pcapng::Writer::new(file)?;
        let interface = writer.interface(&format!("produce:{service}"))?;
        Ok(CaptureSink { writer, interface, deterministic, path: path.to_owned() })
    }

    /// Writes each message; its arrival time is now, or in a deterministic
    /// run its header's timestamp (so the capture is reproducible too).
    fn write(&mut self, out: &Outbox) -> anyhow::Result<()> {
        let now = now_ns();
        for message in out.messages() {
            let at = if self.deterministic {
                message.get(16..24).and_then(|bytes| bytes.try_into().ok()).map_or(0, u64::from_le_bytes)
            } else {
                now
            };
            self.writer
                .packet(self.interface, at, message)
                .with_context(|| format!("cannot write {}", self.path.display()))?;
        }
        Ok(())
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
