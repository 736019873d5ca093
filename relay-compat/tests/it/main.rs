//! The relay's one integration-test binary: a real relay in-process on a Unix
//! socket in a temp dir, legacy-style raw producers and consumers, the relay
//! client and the tap.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod client;
mod framing;
mod link;
mod slow;

use std::path::{Path, PathBuf};
use std::time::Duration;

use myc_codec::{Checksum, Domain, Header, MessageBuilder, Source, TlvType};
use myc_relay_compat::metrics::Metrics;
use myc_relay_compat::{RelayHandle, RelaySettings};
use myc_transport::{Endpoint, Listener, SocketOptions};
use tokio::sync::oneshot;

pub(crate) struct TestRelay {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub(crate) path: PathBuf,
    pub(crate) handle: RelayHandle,
}

impl TestRelay {
    pub(crate) async fn start(path: &Path, domain: Domain, settings: RelaySettings) -> TestRelay {
        let listener = bind_when_free(&Endpoint::Unix(path.to_owned())).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, handle) = oneshot::channel();
        let task = tokio::spawn(myc_relay_compat::serve(
            vec![(domain, listener)],
            settings,
            async move {
                let _ = stopped.await;
            },
            move |handle| {
                let _ = started.send(handle);
            },
        ));
        TestRelay { stop: Some(stop), task, path: path.to_owned(), handle: handle.await.unwrap() }
    }

    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = (&mut self.task).await;
    }

    pub(crate) async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub(crate) fn count(&self, family: &str, kind: &'static str) -> i64 {
        let metrics = &self.handle.metrics;
        let domain = "market_data";
        match family {
            "connections" => Metrics::get(&metrics.connections, domain, kind).get(),
            "invalid" => Metrics::get(&metrics.invalid, domain, kind).get() as i64,
            "dropped" => Metrics::get(&metrics.dropped, domain, kind).get() as i64,
            "refused" => Metrics::get(&metrics.refused, domain, kind).get() as i64,
            other => panic!("no family {other}"),
        }
    }

    /// Waits (up to 5 s) until `family{kind}` reaches `value`.
    pub(crate) async fn wait_for(&self, family: &str, kind: &'static str, value: i64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.count(family, kind) != value {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{family}{{{kind}}} = {}, not {value}",
                self.count(family, kind)
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// A market-data message from `source` with `sequence`, whose TLV payload
/// length varies with the sequence (extended TLVs included).
pub(crate) fn message(source: u8, sequence: u64) -> Vec<u8> {
    let header =
        Header::new(Domain::MarketData, Source::from_u8(source), sequence, 1_700_000_000_000_000_000 + sequence);
    let len = (sequence % 400) as usize;
    let payload: Vec<u8> = (0..len).map(|index| (index as u64 ^ sequence) as u8).collect();
    MessageBuilder::new(header).checksum(Checksum::Compute).tlv(TlvType::from_u8(200), &payload).unwrap().build()
}

pub(crate) fn identification(source: u8) -> [u8; 32] {
    Header::identification(Domain::MarketData, Source::from_u8(source)).to_bytes()
}

/// The next `n` messages `tap` delivers, each within 10 s.
pub(crate) async fn read_n(tap: &mut myc_relay_compat::RelayTap, n: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(10), tap.next()).await.unwrap().unwrap().unwrap();
        out.push(message.bytes.to_vec());
    }
    out
}

/// Binds `endpoint`, waiting (up to 5 s) while a server killed a moment ago
/// still holds it.
async fn bind_when_free(endpoint: &Endpoint) -> Listener {
    Listener::bind_when_free(endpoint, SocketOptions::default(), std::time::Duration::from_secs(5)).await.unwrap()
}
