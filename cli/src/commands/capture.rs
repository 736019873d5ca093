//! `myc capture`: taps relay sockets and broker topics into one pcapng file
//! (one interface per stream, named `relay:<path>` / `broker:<topic>`) until
//! `--duration`, `--count` or SIGINT/SIGTERM, then closes the file cleanly.
//! A path that cannot be written is an error naming it (exit 2). The taps
//! themselves live here, so `myc verify live` shares them.

use std::fs::File;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use bytes::Bytes;
use tokio::sync::mpsc;
use transport::{AbortOnDrop, Endpoint};

use super::Outcome;
use super::shutdown_signal;
use crate::args::CaptureArgs;
use crate::progress;

/// One stream to tap.
#[derive(Debug, Clone)]
pub(crate) enum Tap {
    /// A relay socket.
    Relay(PathBuf),
    /// A topic on a broker.
    Broker(Endpoint, String),
}

impl Tap {
    /// The interface name (capture spec §1).
    pub(crate) fn name(&self) -> String {
        match self {
            Tap::Relay(path) => format!("relay:{}", path.display()),
            Tap::Broker(_, topic) => format!("broker:{topic}"),
        }
    }
}

/// A message from tap `index`, with its arrival time.
pub(crate) type Tapped = (usize, Bytes, u64);

pub(crate) fn run(args: &CaptureArgs) -> anyhow::Result<Outcome> {
    if !args.nats.is_empty() || !args.subjects.is_empty() {
        bail!("NATS taps are not built yet in this version");
    }
    let taps = plan(&args.relays, &args.brokers, &args.topics)?;
    let Some(out) = &args.out else {
        bail!("say where to write the capture: --out FILE.pcapng");
    };
    let duration = args.duration.as_deref().map(humantime::parse_duration).transpose().context("bad --duration")?;
    let file = File::create(out).with_context(|| format!("cannot write the capture {}", out.display()))?;
    let mut writer = verify::pcapng::Writer::new(file).with_context(|| format!("cannot write {}", out.display()))?;
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
                Some(duration) => tokio::select! { () = tokio::time::sleep(duration) => {}, () = shutdown_signal() => {} },
                None => shutdown_signal().await,
            }
        };
        tokio::pin!(stop);
        let counter = progress::counter(&format!("capturing to {}", out.display()));
        let mut written = 0u64;
        loop {
            tokio::select! {
                () = &mut stop => break,
                tapped = rx.recv() => {
                    let Some((index, bytes, arrival_ns)) = tapped else { break };
                    let interface = u32::try_from(index).unwrap_or(u32::MAX);
                    writer.packet(interface, arrival_ns, &bytes).with_context(|| format!("cannot write {}", out.display()))?;
                    written += 1;
                    if written % 1024 == 0 {
                        counter.set_position(written);
                    }
                    if args.count.is_some_and(|count| written >= count) {
                        break;
                    }
                }
            }
        }
        counter.finish_and_clear();
        anyhow::Ok(written)
    })?;
    writer.finish().with_context(|| format!("cannot write {}", out.display()))?;
    tracing::info!(messages = written, file = %out.display(), "capture written");
    Ok(Outcome::Success)
}

/// The taps the flags name: every `--relay`, and each `--topic` on its
/// `--broker` (one broker serves every topic).
pub(crate) fn plan(relays: &[PathBuf], brokers: &[String], topics: &[String]) -> anyhow::Result<Vec<Tap>> {
    let mut taps: Vec<Tap> = relays.iter().cloned().map(Tap::Relay).collect();
    match (brokers.len(), topics.len()) {
        (0, 0) => {}
        (0, _) => bail!("--topic needs a --broker ENDPOINT"),
        (_, 0) => bail!("--broker needs a --topic to tap"),
        (1, _) => {
            let endpoint = Endpoint::parse(&brokers[0])?;
            taps.extend(topics.iter().map(|topic| Tap::Broker(endpoint.clone(), topic.clone())));
        }
        (n, m) if n == m => {
            for (broker, topic) in brokers.iter().zip(topics) {
                taps.push(Tap::Broker(Endpoint::parse(broker)?, topic.clone()));
            }
        }
        _ => bail!("give one --broker for all topics, or one --broker per --topic"),
    }
    if taps.is_empty() {
        bail!("nothing to tap: give --relay PATH or --broker ENDPOINT --topic T");
    }
    Ok(taps)
}

/// Connects every tap (a broker subscription is confirmed before this
/// returns) and forwards what each sees to `tx`, tagged with its index.
pub(crate) async fn start_taps(taps: &[Tap], tx: &mpsc::Sender<Tapped>) -> anyhow::Result<Vec<AbortOnDrop>> {
    let mut tasks = Vec::with_capacity(taps.len());
    for (index, tap) in taps.iter().enumerate() {
        let tx = tx.clone();
        match tap {
            Tap::Relay(path) => {
                let mut relay = relay_compat::RelayTap::connect(path)
                    .await
                    .with_context(|| format!("cannot tap the relay at {}", path.display()))?;
                tasks.push(AbortOnDrop::spawn(async move {
                    while let Ok(Some((batch, arrival_ns))) = relay.next_batch().await {
                        let mut offset = 0;
                        while offset < batch.len() {
                            let len = relay_compat::message_len(&batch[offset..]).max(1);
                            if tx.send((index, batch.slice(offset..offset + len), arrival_ns)).await.is_err() {
                                return;
                            }
                            offset += len;
                        }
                    }
                }));
            }
            Tap::Broker(endpoint, topic) => {
                let mut options = broker::ClientOptions::new(endpoint.clone());
                options.client_name = "myc-capture".to_owned();
                let client = broker::Client::start(options);
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
        }
    }
    Ok(tasks)
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
