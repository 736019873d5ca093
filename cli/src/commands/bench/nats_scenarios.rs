//! The NATS peer: the same load as `broker_e2e_1` through a local
//! `nats-server` (core NATS, at-most-once), measured the same way in the same
//! run, so the broker's figures can be read as ratios. Skipped with a note
//! when `nats-server` is not installed.

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
    [128, 1024]
        .into_iter()
        .map(|payload_bytes| Scenario { name: "nats_e2e_1", payload_bytes, run: nats_e2e_1, n_messages: 2_000_000 })
        .collect()
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

fn nats_e2e_1(n_messages: u64, payload_bytes: usize) -> anyhow::Result<RunResult> {
    let Some(server) = NatsServer::start()? else {
        return Ok(RunResult { skipped: Some("nats-server is not installed".to_owned()), ..RunResult::default() });
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let (elapsed, lost) = runtime.block_on(async {
        let options = async_nats::ConnectOptions::new().subscription_capacity(1 << 20);
        let subscriber = options.connect(&server.url).await.context("cannot connect to nats-server")?;
        let mut subscription = subscriber.subscribe(SUBJECT).await?;
        subscriber.flush().await?;
        let counter = tokio::spawn(async move {
            let mut received = 0u64;
            while received < n_messages {
                let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut subscription).poll_next(cx));
                match tokio::time::timeout(STALL, next).await {
                    Ok(Some(_)) => received += 1,
                    _ => break,
                }
            }
            (received, Instant::now())
        });
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
    let rss = Rss { broker: peak_rss_of_pid(server.child.id()), client: None };
    Ok(RunResult { lost: Some(lost), rss_bytes: Some(rss), ..RunResult::rate(rate(n_messages, elapsed)) })
}
