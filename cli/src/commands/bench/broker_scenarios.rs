//! The transport scenarios: the raw Unix-socket ceiling, the broker with a
//! publisher alone (acknowledged), with one and four subscribers (everything
//! delivered and counted), latency at a fixed rate, and connect + HELLO.
//!
//! The broker runs as a child `myc broker` process so that its memory and CPU
//! are its own; clients run in this process on a two-worker runtime.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use myc_broker::{Client, ClientOptions};

use super::process::{ChildBroker, own_peak_rss, reset_own_peak_rss};
use super::{Fault, Latency, Rss, RunResult, Scenario, rate};

const TOPIC: &str = "bench";
/// How long a subscriber waits for the next message before calling the rest lost.
const STALL: Duration = Duration::from_secs(10);

pub(super) fn scenarios() -> Vec<Scenario> {
    let mut all = Vec::new();
    for payload_bytes in [128, 1024] {
        all.push(Scenario { name: "raw_uds", payload_bytes, run: raw_uds, n_messages: 5_000_000 });
        all.push(Scenario { name: "broker_publish", payload_bytes, run: broker_publish, n_messages: 2_000_000 });
        all.push(Scenario { name: "broker_e2e_1", payload_bytes, run: broker_e2e_1, n_messages: 2_000_000 });
        all.push(Scenario { name: "broker_e2e_4", payload_bytes, run: broker_e2e_4, n_messages: 1_000_000 });
        let n_messages = super::fault_messages(payload_bytes);
        all.push(Scenario { name: "broker_e2e_1_base", payload_bytes, run: broker_e2e_1, n_messages });
        all.push(Scenario { name: "broker_e2e_1_stuck", payload_bytes, run: broker_e2e_1_stuck, n_messages });
        all.push(Scenario { name: "broker_e2e_1_slow", payload_bytes, run: broker_e2e_1_slow, n_messages });
    }
    for payload_bytes in [128, 1024] {
        all.push(Scenario { name: "latency_raw", payload_bytes, run: latency_raw, n_messages: 30_000 });
        all.push(Scenario { name: "latency", payload_bytes, run: latency, n_messages: 30_000 });
    }
    all.push(Scenario { name: "connect", payload_bytes: 0, run: connect, n_messages: 2_000 });
    all
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().context("cannot start a runtime")
}

fn client(broker: &ChildBroker, name: &str) -> Client {
    let mut options = ClientOptions::new(broker.endpoint.clone());
    options.client_name = name.to_owned();
    Client::start(options)
}

/// A payload of `len` bytes whose first 8 hold `number` (when it fits).
fn payload(template: &mut [u8], number: u64) -> &[u8] {
    if template.len() >= 8 {
        template[..8].copy_from_slice(&number.to_le_bytes());
    }
    template
}

/// The ceiling: `n` messages of `payload_bytes` written in 64 KiB batches
/// through a Unix socket pair to a reader thread, no protocol.
fn raw_uds(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let (mut writer, mut reader) = UnixStream::pair()?;
    let total = n_messages * payload_bytes as u64;
    let per_batch = (64 * 1024 / payload_bytes).max(1);
    let batch = vec![0x5Au8; per_batch * payload_bytes];
    let started = Instant::now();
    let read_thread = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut buffer = vec![0u8; 256 * 1024];
        let mut received = 0u64;
        while received < total {
            let n = reader.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            received += n as u64;
        }
        Ok(received)
    });
    let mut sent = 0u64;
    while sent < n_messages {
        let n = (n_messages - sent).min(per_batch as u64);
        writer.write_all(&batch[..usize::try_from(n)? * payload_bytes])?;
        sent += n;
    }
    drop(writer);
    let received = read_thread.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))??;
    let elapsed = started.elapsed();
    let lost = (total - received) / payload_bytes as u64;
    Ok(RunResult { lost: Some(lost), ..RunResult::rate(rate(n_messages, elapsed)) })
}

/// One publisher, no subscriber, every publish acknowledged (flush at the end).
fn broker_publish(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let result = broker_e2e(n_messages, payload_bytes, 0)?;
    Ok(RunResult { lost: None, ..result })
}

fn broker_e2e_1(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    broker_e2e(n_messages, payload_bytes, 1)
}

fn broker_e2e_4(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    broker_e2e(n_messages, payload_bytes, 4)
}

/// `broker_e2e_1` with a second subscriber that subscribes and never reads:
/// the healthy one's rate, to set against `broker_e2e_1` (target ≥ 90 %).
fn broker_e2e_1_stuck(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    broker_e2e_with(n_messages, payload_bytes, 1, Fault::Stuck)
}

/// `broker_e2e_1` with a second subscriber that reads at a twentieth of the
/// pace: the healthy one's rate, to set against `broker_e2e_1` (target ≥ 90 %).
fn broker_e2e_1_slow(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    broker_e2e_with(n_messages, payload_bytes, 1, Fault::Slow)
}

/// One publisher, `n_subscribers` fan-out subscribers each counting every
/// message; the rate is per subscriber, from the first publish to the last
/// delivery (with no subscriber: to the end of the acknowledging flush).
fn broker_e2e(n_messages: u64, payload_bytes: usize, n_subscribers: usize) -> anyhow::Result<RunResult> {
    broker_e2e_with(n_messages, payload_bytes, n_subscribers, Fault::None)
}

fn broker_e2e_with(
    n_messages: u64,
    payload_bytes: usize,
    n_subscribers: usize,
    fault: Fault,
) -> anyhow::Result<RunResult> {
    let broker = ChildBroker::start()?;
    reset_own_peak_rss();
    let runtime = runtime()?;
    let (elapsed, lost) = runtime.block_on(async {
        // A subscriber that never reads, or reads slowly: the broker must not
        // let it slow anyone.
        if fault != Fault::None {
            fault.occupy(raw_subscriber(&broker.socket).await?);
        }
        let mut counters = Vec::with_capacity(n_subscribers);
        let mut subscribers = Vec::with_capacity(n_subscribers);
        for index in 0..n_subscribers {
            let subscriber = client(&broker, &format!("bench-subscriber-{index}"));
            let mut subscription = subscriber.subscribe(TOPIC, "")?;
            subscription.wait_active(Duration::from_secs(10)).await?;
            subscribers.push(subscriber);
            counters.push(tokio::spawn(async move {
                let mut received = 0u64;
                let mut out_of_order = 0u64;
                while received < n_messages {
                    let Ok(Some(batch)) = tokio::time::timeout(STALL, subscription.recv_batch()).await else { break };
                    for payload in batch.payloads() {
                        if let Some(number) = payload.first_chunk::<8>() {
                            out_of_order += u64::from(u64::from_le_bytes(*number) != received);
                        }
                        received += 1;
                    }
                }
                (received, out_of_order, Instant::now())
            }));
        }
        let publisher = client(&broker, "bench-publisher");
        let mut template = vec![0x42u8; payload_bytes];
        let started = Instant::now();
        for number in 0..n_messages {
            publisher.publish(TOPIC, payload(&mut template, number)).await?;
        }
        publisher.flush(Duration::from_secs(120)).await?;
        let mut lost = 0;
        let mut finished = if n_subscribers == 0 { Instant::now() } else { started };
        for counter in counters {
            let (received, out_of_order, at) = counter.await?;
            if out_of_order > 0 {
                bail!("{out_of_order} messages arrived out of order");
            }
            lost += n_messages - received;
            finished = finished.max(at);
        }
        drop(subscribers);
        anyhow::Ok((finished - started, lost))
    })?;
    let rss = Rss { broker: broker.peak_rss(), client: own_peak_rss(), ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}

/// A raw connection that says HELLO and subscribes to the bench topic; the
/// caller decides how it reads.
async fn raw_subscriber(socket: &std::path::Path) -> anyhow::Result<tokio::net::UnixStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    let mut frames = bytes::BytesMut::new();
    myc_broker::ClientOp::Hello { version: 1, flags: 0, client_name: "bench-stuck".to_owned(), token: String::new() }
        .encode(&mut frames)?;
    myc_broker::ClientOp::Subscribe {
        sub_id: 1,
        topic: bytes::Bytes::from_static(TOPIC.as_bytes()),
        group: bytes::Bytes::new(),
    }
    .encode(&mut frames)?;
    stream.write_all(&frames).await?;
    Ok(stream)
}

/// Publisher → broker → subscriber at 10,000 msg/s; each payload carries its
/// send time, the subscriber records the difference.
fn latency(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    const INTERVAL: Duration = Duration::from_micros(100);
    let broker = ChildBroker::start()?;
    let runtime = runtime()?;
    let subscriber = runtime.block_on(async {
        let subscriber = client(&broker, "bench-latency-subscriber");
        let mut subscription = subscriber.subscribe(TOPIC, "")?;
        subscription.wait_active(Duration::from_secs(10)).await?;
        anyhow::Ok((subscriber, subscription))
    })?;
    let (_subscriber_client, mut subscription) = subscriber;
    let recorder = runtime.spawn(async move {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3).ok();
        let mut received = 0u64;
        while received < n_messages {
            let Ok(Some(delivery)) = tokio::time::timeout(STALL, subscription.recv()).await else { break };
            let sent = u64::from_le_bytes(delivery.payload[..8].try_into().unwrap_or_default());
            let delay = now_ns().saturating_sub(sent).max(1);
            if let Some(histogram) = histogram.as_mut() {
                let _ = histogram.record(delay);
            }
            received += 1;
        }
        (received, histogram)
    });
    let publisher = runtime.block_on(async { client(&broker, "bench-latency-publisher") });
    let mut template = vec![0u8; payload_bytes.max(8)];
    let started = Instant::now();
    for number in 0..n_messages {
        let due = started + INTERVAL * u32::try_from(number).unwrap_or(u32::MAX);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        template[..8].copy_from_slice(&now_ns().to_le_bytes());
        publisher.try_publish(TOPIC, &template)?;
    }
    let elapsed = started.elapsed();
    let (received, histogram) = runtime.block_on(recorder)?;
    let histogram = histogram.context("cannot create a histogram")?;
    Ok(RunResult {
        lost: Some(n_messages - received),
        latency_us: Some(percentiles(&histogram)),
        ..RunResult::rate(rate(n_messages, elapsed))
    })
}

/// The floor under `latency` on this machine: the same paced publisher, two
/// hops through Unix socket pairs with a plain forwarding thread in between
/// (where the broker would be) and a reading thread at the end; blocking
/// reads and writes, no protocol, no runtime. Whatever tail this shows is
/// the machine's scheduling, which `latency` cannot beat.
fn latency_raw(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    const INTERVAL: Duration = Duration::from_micros(100);
    let message_bytes = payload_bytes.max(8);
    let (mut publisher, mut forward_in) = UnixStream::pair()?;
    let (mut forward_out, mut subscriber) = UnixStream::pair()?;
    let forwarder = std::thread::spawn(move || -> std::io::Result<()> {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let n = forward_in.read(&mut buffer)?;
            if n == 0 {
                return Ok(());
            }
            forward_out.write_all(&buffer[..n])?;
        }
    });
    let recorder = std::thread::spawn(move || -> anyhow::Result<(u64, Histogram<u64>)> {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
        let mut message = vec![0u8; message_bytes];
        let mut received = 0u64;
        while received < n_messages && subscriber.read_exact(&mut message).is_ok() {
            let sent = u64::from_le_bytes(message[..8].try_into()?);
            histogram.record(now_ns().saturating_sub(sent).max(1))?;
            received += 1;
        }
        Ok((received, histogram))
    });
    let mut template = vec![0u8; message_bytes];
    let started = Instant::now();
    for number in 0..n_messages {
        let due = started + INTERVAL * u32::try_from(number).unwrap_or(u32::MAX);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        template[..8].copy_from_slice(&now_ns().to_le_bytes());
        publisher.write_all(&template)?;
    }
    let elapsed = started.elapsed();
    drop(publisher);
    let (received, histogram) = recorder.join().map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;
    forwarder.join().map_err(|_| anyhow::anyhow!("the forwarding thread panicked"))??;
    Ok(RunResult {
        lost: Some(n_messages - received),
        latency_us: Some(percentiles(&histogram)),
        ..RunResult::rate(rate(n_messages, elapsed))
    })
}

/// p50 / p99 / p999 of a histogram of nanoseconds, in microseconds.
fn percentiles(histogram: &Histogram<u64>) -> Latency {
    #[allow(clippy::cast_precision_loss, reason = "microseconds for display")]
    let micros = |quantile: f64| histogram.value_at_quantile(quantile) as f64 / 1000.0;
    Latency { p50: micros(0.50), p99: micros(0.99), p999: micros(0.999) }
}

/// Unix socket connect + HELLO → WELCOME, one after another.
fn connect(n_messages: u64, _payload_bytes: usize) -> anyhow::Result<RunResult> {
    let broker = ChildBroker::start()?;
    let mut hello = bytes::BytesMut::new();
    myc_broker::ClientOp::Hello { version: 1, flags: 0, client_name: String::new(), token: String::new() }
        .encode(&mut hello)?;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 10_000_000_000, 3)?;
    let started = Instant::now();
    for _ in 0..n_messages {
        let began = Instant::now();
        let mut stream = UnixStream::connect(&broker.socket)?;
        stream.write_all(&hello)?;
        let mut prefix = [0u8; 4];
        stream.read_exact(&mut prefix)?;
        let mut body = vec![0u8; u32::from_le_bytes(prefix) as usize];
        stream.read_exact(&mut body)?;
        let welcome = myc_broker::ServerOp::decode(bytes::Bytes::from(body));
        if !matches!(welcome, Ok(myc_broker::ServerOp::Welcome { .. })) {
            bail!("expected WELCOME, got {welcome:?}");
        }
        histogram.record(u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX).max(1))?;
    }
    let elapsed = started.elapsed();
    Ok(RunResult { latency_us: Some(percentiles(&histogram)), ..RunResult::rate(rate(n_messages, elapsed)) })
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
