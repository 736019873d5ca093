//! Publishes the ACL refuses, seen from the publishing client: acknowledged
//! (so the buffer drains), but counted as failed, reported by `flush`, and
//! logged at most once a second however fast they come.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myc_broker::server::acl::{Acl, Permissions, Topics};

use super::{TestBroker, client, fast_settings};

/// Log lines written by the client, kept for the test to count.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn refused_publishes_count_as_failed_flush_says_so_and_the_log_is_rate_limited() {
    let captured = Captured::default();
    let writer = captured.clone();
    let dispatch =
        tracing::Dispatch::new(tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish());
    // Only this test's runtime threads log into `captured` (a global
    // subscriber would catch the other tests' clients too).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .on_thread_start(move || std::mem::forget(tracing::dispatcher::set_default(&dispatch)))
        .build()
        .unwrap();
    runtime.block_on(refused_publishes(captured));
}

async fn refused_publishes(captured: Captured) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let acl = Acl {
        default: Permissions { publish: Topics::from_rules(&["allowed"]), subscribe: Topics::from_rules(&["*"]) },
        ..Acl::default()
    };
    let broker = TestBroker::start(&path, myc_broker::Settings { acl: Some(acl), ..fast_settings() }).await;
    let publisher = client(&broker.endpoint);
    let started = Instant::now();
    for n in 0..2_000u32 {
        let topic = if n % 2 == 0 { "allowed" } else { "forbidden" };
        publisher.publish(topic, &n.to_le_bytes()).await.unwrap();
    }
    let flushed = publisher.flush(Duration::from_secs(10)).await;
    let elapsed = started.elapsed();
    assert!(
        matches!(flushed, Err(myc_broker::Error::PublishesRefused { refused: 1_000 })),
        "{flushed:?}\n{}",
        String::from_utf8_lossy(&captured.0.lock().unwrap())
    );
    assert!(flushed.unwrap_err().to_string().contains("unauthorized"));
    let counters = publisher.counters();
    assert_eq!(counters.failed_unauthorized.load(Ordering::Relaxed), 1_000);
    assert_eq!(
        publisher.publisher_counters().settled.load(Ordering::Relaxed),
        2_000,
        "refused publishes are acknowledged too"
    );
    // Reported once: the next flush, with nothing new refused, is clean.
    publisher.publish("allowed", b"after").await.unwrap();
    publisher.flush(Duration::from_secs(10)).await.unwrap();

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines = log.lines().filter(|line| line.contains("broker error")).count();
    let allowed = 1 + elapsed.as_secs() as usize;
    assert!((1..=allowed).contains(&lines), "{lines} warning lines in {elapsed:?}:\n{log}");
    assert!(log.contains("unauthorized"), "{log}");
    broker.stop().await;
}
