//! `myc capture`: taps relay sockets and broker topics into one pcapng file
//! (one interface per stream, named `relay:<path>` / `broker:<topic>`) until
//! `--duration`, `--count` or SIGINT/SIGTERM, then closes the file cleanly.
//! A path that cannot be written is an error naming it (exit 2). After
//! `--duration` it keeps reading for `--settle`, taking only messages another
//! tap has already shown ([`myc_verify::settle::Settle`]), so what was in
//! flight is not cut off. The taps and that window live here, so
//! `myc verify live` shares them.

use std::fs::File;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use myc_transport::{AbortOnDrop, Endpoint};
use tokio::sync::mpsc;

use super::Outcome;
use super::shutdown_signal;
use crate::args::CaptureArgs;
use crate::progress;

/// One stream to tap.
#[derive(Debug, Clone)]
pub(crate) enum Tap {
    /// A relay socket.
    Relay(PathBuf),
    /// A topic on a broker, with the HELLO token (empty: none).
    Broker(Endpoint, String, String),
    /// A subject on a NATS server.
    Nats(String, String),
}

impl Tap {
    /// The interface name (docs/capture.md §1).
    pub(crate) fn name(&self) -> String {
        match self {
            Tap::Relay(path) => format!("relay:{}", path.display()),
            Tap::Broker(_, topic, _) => format!("broker:{topic}"),
            Tap::Nats(_, subject) => format!("nats:{subject}"),
        }
    }
}

/// A message from tap `index`, with its arrival time.
pub(crate) type Tapped = (usize, Bytes, u64);

pub(crate) fn run(args: &CaptureArgs) -> anyhow::Result<Outcome> {
    let taps = plan(&Streams {
        relays: &args.relays,
        brokers: &args.brokers,
        topics: &args.topics,
        nats: &args.nats,
        subjects: &args.subjects,
    })?;
    let Some(out) = &args.out else {
        bail!("say where to write the capture: --out FILE.pcapng");
    };
    let duration = args.duration.as_deref().map(humantime::parse_duration).transpose().context("bad --duration")?;
    let settle = humantime::parse_duration(&args.settle).context("bad --settle")?;
    let file = File::create(out).with_context(|| format!("cannot write the capture {}", out.display()))?;
    let mut writer =
        myc_verify::pcapng::Writer::new(file).with_context(|| format!("cannot write {}", out.display()))?;
    for tap in &taps {
        writer.interface(&tap.name()).with_context(|| format!("cannot write {}", out.display()))?;
    }
    let runtime = super::runtime()?;
    let written = runtime.block_on(async {
        let (tx, mut rx) = mpsc::channel::<Tapped>(65_536);
        let _tasks = start_taps(&taps, &tx).await?;
        drop(tx);
        let stop = async {
            match duration {
                Some(duration) => {
                    tokio::select! { () = tokio::time::sleep(duration) => {}, () = shutdown_signal() => {} }
                }
                None => shutdown_signal().await,
            }
        };
        let counter = progress::counter(&format!("capturing to {}", out.display()));
        let written = std::cell::Cell::new(0u64);
        let window =
            Window { taps: taps.len(), settle, sources: None, on_tick: || counter.set_position(written.get()) };
        window
            .run(&mut rx, stop, |index, bytes, arrival_ns| {
                let interface = u32::try_from(index).unwrap_or(u32::MAX);
                writer
                    .packet(interface, arrival_ns, &bytes)
                    .with_context(|| format!("cannot write {}", out.display()))?;
                written.set(written.get() + 1);
                Ok(args.count.is_some_and(|count| written.get() >= count))
            })
            .await?;
        counter.finish_and_clear();
        anyhow::Ok(written.get())
    })?;
    writer.finish().with_context(|| format!("cannot write {}", out.display()))?;
    tracing::info!(messages = written, file = %out.display(), "capture written");
    Ok(Outcome::Success)
}

/// A tapping window: messages until `stop`, then for at most `settle` only
/// those another tap has already shown.
pub(crate) struct Window<T> {
    /// How many taps feed the channel.
    pub(crate) taps: usize,
    /// The settle time after `stop`.
    pub(crate) settle: Duration,
    /// Only these sources are taken (`None`: all); the others are not
    /// waited for either.
    pub(crate) sources: Option<std::collections::BTreeSet<u8>>,
    /// Called a few times a second (progress).
    pub(crate) on_tick: T,
}

impl<T: FnMut()> Window<T> {
    /// Feeds every kept message to `keep` (which answers whether to stop
    /// at once) until the window and its settle time are over.
    pub(crate) async fn run(
        mut self,
        rx: &mut mpsc::Receiver<Tapped>,
        stop: impl Future<Output = ()>,
        mut keep: impl FnMut(usize, Bytes, u64) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let mut settle = myc_verify::settle::Settle::new(self.taps);
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => (self.on_tick)(),
                tapped = rx.recv() => {
                    let Some((index, bytes, arrival_ns)) = tapped else { return Ok(()) };
                    if !myc_verify::join::kept_by(self.sources.as_ref(), &bytes) {
                        continue;
                    }
                    settle.take(index, &bytes);
                    if keep(index, bytes, arrival_ns)? {
                        return Ok(());
                    }
                }
            }
        }
        let deadline = tokio::time::sleep(self.settle);
        tokio::pin!(deadline);
        while !settle.caught_up() {
            tokio::select! {
                () = &mut deadline => break,
                _ = tick.tick() => (self.on_tick)(),
                tapped = rx.recv() => {
                    let Some((index, bytes, arrival_ns)) = tapped else { break };
                    if !myc_verify::join::kept_by(self.sources.as_ref(), &bytes) {
                        continue;
                    }
                    if settle.admit(index, &bytes) && keep(index, bytes, arrival_ns)? {
                        break;
                    }
                }
            }
        }
        (self.on_tick)();
        Ok(())
    }
}

/// The streams the flags name.
pub(crate) struct Streams<'a> {
    pub(crate) relays: &'a [PathBuf],
    pub(crate) brokers: &'a [String],
    pub(crate) topics: &'a [String],
    pub(crate) nats: &'a [String],
    pub(crate) subjects: &'a [String],
}

/// The taps the flags name: every `--relay`, each `--topic` on its
/// `--broker` and each `--subject` on its `--nats` server (one server for
/// all, or one per topic/subject).
pub(crate) fn plan(streams: &Streams<'_>) -> anyhow::Result<Vec<Tap>> {
    let mut taps: Vec<Tap> = streams.relays.iter().cloned().map(Tap::Relay).collect();
    for (server, name) in pairs(streams.brokers, streams.topics, "--broker", "--topic")? {
        taps.push(Tap::Broker(Endpoint::parse(server)?, name.to_owned(), String::new()));
    }
    for (server, name) in pairs(streams.nats, streams.subjects, "--nats", "--subject")? {
        taps.push(Tap::Nats(server.to_owned(), name.to_owned()));
    }
    if taps.is_empty() {
        bail!("nothing to tap: give --relay PATH, --broker ENDPOINT --topic T, or --nats URL --subject S");
    }
    Ok(taps)
}

/// Servers paired with names: one server for every name, or one each.
fn pairs<'a>(
    servers: &'a [String],
    names: &'a [String],
    server_flag: &str,
    name_flag: &str,
) -> anyhow::Result<Vec<(&'a str, &'a str)>> {
    match (servers.len(), names.len()) {
        (0, 0) => Ok(Vec::new()),
        (0, _) => bail!("{name_flag} needs a {server_flag}"),
        (_, 0) => bail!("{server_flag} needs a {name_flag} to tap"),
        (1, _) => Ok(names.iter().map(|name| (servers[0].as_str(), name.as_str())).collect()),
        (n, m) if n == m => {
            Ok(servers.iter().zip(names).map(|(server, name)| (server.as_str(), name.as_str())).collect())
        }
        _ => bail!("give one {server_flag} for all, or one {server_flag} per {name_flag}"),
    }
}

/// Connects every tap (a broker subscription is confirmed before this
/// returns) and forwards what each sees to `tx`, tagged with its index.
pub(crate) async fn start_taps(taps: &[Tap], tx: &mpsc::Sender<Tapped>) -> anyhow::Result<Vec<AbortOnDrop>> {
    let mut tasks = Vec::with_capacity(taps.len());
    for (index, tap) in taps.iter().enumerate() {
        let tx = tx.clone();
        match tap {
            Tap::Relay(path) => {
                let mut relay = myc_relay_compat::RelayTap::connect(path)
                    .await
                    .with_context(|| format!("cannot tap the relay at {}", path.display()))?;
                tasks.push(AbortOnDrop::spawn(async move {
                    while let Ok(Some((batch, arrival_ns))) = relay.next_batch().await {
                        let mut offset = 0;
                        while offset < batch.len() {
                            let len = myc_relay_compat::message_len(&batch[offset..]).max(1);
                            if tx.send((index, batch.slice(offset..offset + len), arrival_ns)).await.is_err() {
                                return;
                            }
                            offset += len;
                        }
                    }
                }));
            }
            Tap::Broker(endpoint, topic, token) => {
                let mut options = myc_broker::ClientOptions::new(endpoint.clone());
                options.client_name = "myc-capture".to_owned();
                token.clone_into(&mut options.token);
                let client = myc_broker::Client::start(options);
                let mut subscription = client.subscribe(topic, "")?;
                subscription
                    .wait_active(Duration::from_secs(10))
                    .await
                    .with_context(|| format!("cannot subscribe to {topic} on {endpoint}"))?;
                tasks.push(AbortOnDrop::spawn(async move {
                    let _client = client;
                    while let Some(batch) = subscription.recv_batch().await {
                        let arrival_ns = now_ns();
                        for payload in batch.payloads() {
                            if tx.send((index, Bytes::copy_from_slice(payload), arrival_ns)).await.is_err() {
                                return;
                            }
                        }
                    }
                }));
            }
            Tap::Nats(url, subject) => {
                let client = async_nats::ConnectOptions::new()
                    .name("myc-capture")
                    .subscription_capacity(1 << 16)
                    .connect(url.as_str())
                    .await
                    .with_context(|| format!("cannot connect to NATS at {url}"))?;
                let mut subscription = client.subscribe(subject.clone()).await?;
                // The subscription is in place once the server has answered a flush.
                client.flush().await.with_context(|| format!("cannot subscribe to {subject} on {url}"))?;
                tasks.push(AbortOnDrop::spawn(async move {
                    let _client = client;
                    while let Some(message) = futures_util::StreamExt::next(&mut subscription).await {
                        if tx.send((index, message.payload, now_ns())).await.is_err() {
                            return;
                        }
                    }
                }));
            }
        }
    }
    Ok(tasks)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
