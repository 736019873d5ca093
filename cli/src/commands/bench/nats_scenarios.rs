//! The NATS scenarios: `nats_e2e_1`, the peer — the same load as
//! `broker_e2e_1` through a local `nats-server` with the plain async-nats
//! client (core NATS, at-most-once), so the broker's figures can be read as
//! ratios; and `shim_nats`, the shim in the `broker` stage on the NATS
//! backend (its bounded buffer in front of async-nats), one subscriber
//! counting. Skipped with a note when `nats-server` is not installed.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_core::Stream;

use super::process::peak_rss_of_pid;
use super::{Rss, RunResult, Scenario, rate};

const SUBJECT: &str = "bench";
const STALL: Duration = Duration::from_secs(10);

pub(super) fn scenarios() -> Vec<Scenario> {
    let mut all: Vec<Scenario> = [128, 1024]
        .into_iter()
        .map(|payload_bytes| Scenario { name: "nats_e2e_1", payload_bytes, run: nats_e2e_1, n_messages: 2_000_000 })
        .collect();
    for payload_bytes in [128, 1024] {
        all.push(Scenario { name: "shim_nats", payload_bytes, run: shim_nats, n_messages: 1_000_000 });
    }
    all
}

/// A `nats-server` child on a free loopback port; killed on drop.
struct NatsServer {
    child: Child,
    url: String,
}

impl NatsServer {
    fn start() -> anyhow::Result<Option<NatsServer>> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error).context("cannot start nats-server"),
        };
        let mut server = NatsServer { child, url: format!("nats://127.0.0.1:{port}") };
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("nats-server exited at start: {status}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("nats-server did not accept connections within 10 s");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(Some(server))
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Subscribes to `subject` and counts up to `n` messages (or a stall);
/// the task returns the count and when the last arrived.
async fn count(
    url: &str,
    subject: &'static str,
    n: u64,
) -> anyhow::Result<(async_nats::Client, tokio::task::JoinHandle<(u64, Instant)>)> {
    let options = async_nats::ConnectOptions::new().subscription_capacity(1 << 20);
    let subscriber = options.connect(url).await.context("cannot connect to nats-server")?;
    let mut subscription = subscriber.subscribe(subject).await?;
    subscriber.flush().await?;
    let counter = tokio::spawn(async move {
        let mut received = 0u64;
        while received < n {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut subscription).poll_next(cx));
            match tokio::time::timeout(STALL, next).await {
                Ok(Some(_)) => received += 1,
                _ => break,
            }
        }
        (received, Instant::now())
    });
    Ok((subscriber, counter))
}

fn nats_e2e_1(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let Some(server) = NatsServer::start()? else {
        return Ok(RunResult { skipped: Some("nats-server is not installed".to_owned()), ..RunResult::default() });
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        let (_subscriber, counter) = count(&server.url, SUBJECT, n_messages).await?;
        let publisher = async_nats::connect(&server.url).await?;
        let payload = Bytes::from(vec![0x42u8; payload_bytes]);
        let started = Instant::now();
        for _ in 0..n_messages {
            publisher.publish(SUBJECT, payload.clone()).await?;
        }
        publisher.flush().await?;
        let (received, finished) = counter.await?;
        anyhow::Ok((finished - started, n_messages - received))
    })?;
    let rss = Rss { broker: peak_rss_of_pid(server.child.id()), client: None, ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}

/// The shim in the `broker` stage on NATS: 128-byte Protocol V2 messages
/// through `ServicePublisher` → `NatsBrokerPublisher` → `nats-server` → one
/// plain subscriber.
fn shim_nats(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    use myc_shim::{NatsBrokerPublisher, RelayPublisher, ServicePublisher, ShadowLimits, StageHandle};

    let Some(server) = NatsServer::start()? else {
        return Ok(RunResult { skipped: Some("nats-server is not installed".to_owned()), ..RunResult::default() });
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        let (_subscriber, counter) = count(&server.url, "myc.market_data", n_messages).await?;
        let nats = myc_broker::nats::NatsPublisher::start(myc_broker::nats::NatsOptions::new(vec![server.url.clone()]))
            .await?;
        let topics = ["market_data", "signals", "execution", "system"].map(str::to_owned);
        let publisher = ServicePublisher::new(
            RelayPublisher::new(Default::default(), myc_transport::BufferLimits::default()),
            NatsBrokerPublisher::new(nats, topics),
            StageHandle::new(myc_config::Stage::Broker),
            ShadowLimits { queue_bytes: 64 << 20, breaker: myc_transport::BreakerOptions::default() },
        );
        let started = super::publish_numbered(&publisher, n_messages, payload_bytes).await?;
        let (received, finished) = counter.await?;
        anyhow::Ok((finished - started, n_messages - received))
    })?;
    let rss = Rss { broker: peak_rss_of_pid(server.child.id()), client: None, ..Rss::default() };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}
