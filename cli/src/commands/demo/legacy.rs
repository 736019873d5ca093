//! The demo's legacy side: an unmodified producer (a plain relay-protocol
//! writer with its own source id, never rewritten against the shim:
//! Coinbase-like, or Gemini-like when the Coinbase adapter is in the demo)
//! and a legacy relay consumer that checks it receives every message
//! of every producer exactly once while the relay's broker link walks the
//! stages with the others.
//!
//! It deliberately uses nothing of the toolkit on the wire: a Unix socket,
//! an identification header and Protocol V2 messages, as a legacy program
//! does.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Who the legacy producer is: an unported collector's source and service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Identity {
    /// Its Protocol V2 source; no shim producer of the demo has it (the
    /// relay's link and the legacy consumer tell producers apart by source).
    pub(super) source: Source,
    /// Its service name in the settings and the rollout plan.
    pub(super) service: &'static str,
}

impl Identity {
    /// Coinbase-like (source 3), as the demo always had it, unless a shim
    /// producer has that source (the Coinbase adapter, ported): then
    /// Gemini-like (source 5), a collector nobody ported.
    pub(super) fn beside(shim_sources: &[Source]) -> anyhow::Result<Identity> {
        [
            Identity { source: Source::CoinbaseCollector, service: "coinbase_legacy" },
            Identity { source: Source::GeminiCollector, service: "gemini_legacy" },
        ]
        .into_iter()
        .find(|identity| !shim_sources.contains(&identity.source))
        .context("no source left for the legacy producer")
    }
}

/// A producer nobody will rewrite: identification header, then messages.
pub(super) struct LegacyProducer {
    stream: tokio::net::UnixStream,
    /// The source of every message it writes.
    source: Source,
    /// Messages written so far (its sequence counter).
    pub(super) sent: u64,
    block: Vec<u8>,
}

impl LegacyProducer {
    pub(super) async fn connect(path: &Path, source: Source) -> anyhow::Result<LegacyProducer> {
        let mut stream = tokio::net::UnixStream::connect(path)
            .await
            .with_context(|| format!("the legacy producer cannot reach {}", path.display()))?;
        stream.write_all(&Header::identification(Domain::MarketData, source).to_bytes()).await?;
        Ok(LegacyProducer { stream, source, sent: 0, block: Vec::with_capacity(64 * 1024) })
    }

    /// Writes messages until `target` were written in all.
    pub(super) async fn produce_until(&mut self, target: u64) -> anyhow::Result<()> {
        while self.sent < target {
            self.sent += 1;
            let header = Header::new(Domain::MarketData, self.source, self.sent, super::now_ns());
            let message = MessageBuilder::new(header).tlv(TlvType::from_u8(200), &self.sent.to_le_bytes())?.build();
            self.block.extend_from_slice(&message);
            if self.block.len() >= 60 * 1024 {
                self.flush().await?;
            }
        }
        self.flush().await
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        self.stream.write_all(&self.block).await.context("the legacy producer lost the relay")?;
        self.block.clear();
        Ok(())
    }
}

/// What the legacy consumer has received.
#[derive(Default)]
struct Received {
    /// Every (source, sequence) received.
    distinct: HashSet<(u8, u64)>,
    /// Repeats received, per source.
    repeated: std::collections::HashMap<u8, u64>,
}

/// A legacy relay consumer: connects, sends nothing, reads.
pub(super) struct LegacyConsumer {
    received: Arc<Mutex<Received>>,
    _task: myc_transport::AbortOnDrop,
}

impl LegacyConsumer {
    /// Connects to the relay at `path` and waits (5 s at most) until the
    /// relay has accepted it, so it misses nothing produced from now on.
    pub(super) async fn connect(
        path: &Path,
        relay: &myc_transport::Running<myc_relay_compat::RelayHandle>,
    ) -> anyhow::Result<LegacyConsumer> {
        let consumers = relay.handle().consumers(Domain::MarketData);
        let mut stream = tokio::net::UnixStream::connect(path).await?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while relay.handle().consumers(Domain::MarketData) == consumers {
            anyhow::ensure!(Instant::now() < deadline, "the relay did not accept the legacy consumer");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let received = Arc::new(Mutex::new(Received::default()));
        let sink = Arc::clone(&received);
        let task = myc_transport::AbortOnDrop::spawn(async move {
            // Frames by 32 + payload_size, as every legacy consumer does.
            let mut buffer = Vec::with_capacity(256 * 1024);
            let mut chunk = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                buffer.extend_from_slice(&chunk[..n]);
                let mut offset = 0;
                let mut received = sink.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                while let Some(len) =
                    myc_codec::peek_message_len(&buffer[offset..]).filter(|&len| offset + len <= buffer.len())
                {
                    let message = &buffer[offset..offset + len];
                    let sequence = u64::from_le_bytes(message[8..16].try_into().unwrap_or_default());
                    if !received.distinct.insert((message[6], sequence)) {
                        *received.repeated.entry(message[6]).or_default() += 1;
                    }
                    offset += len;
                }
                drop(received);
                buffer.drain(..offset);
            }
        });
        Ok(LegacyConsumer { received, _task: task })
    }

    /// Waits until every message up to each source's last sequence in
    /// `expected` (`(source, last sequence)`) has arrived — 10 s at most for
    /// the legacy producer's (`legacy`), 2 s more for the others' — then judges each
    /// source: what is missing and what came twice. Messages produced after
    /// the snapshot may arrive meanwhile; they are neither missing nor
    /// repeats.
    pub(super) async fn judge(&self, expected: &[(u8, u64)], legacy: Source) -> Vec<SourceJudgement> {
        let missing = |sources: &mut dyn Iterator<Item = &(u8, u64)>| -> u64 {
            let received = self.received.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            sources
                .map(|&(source, last)| {
                    (1..=last).filter(|sequence| !received.distinct.contains(&(source, *sequence))).count() as u64
                })
                .sum()
        };
        let legacy_deadline = Instant::now() + Duration::from_secs(10);
        while missing(&mut expected.iter().filter(|(source, _)| *source == legacy.as_u8())) > 0
            && Instant::now() < legacy_deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        while missing(&mut expected.iter()) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        expected
            .iter()
            .map(|entry| {
                let repeated = self
                    .received
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .repeated
                    .get(&entry.0)
                    .copied()
                    .unwrap_or(0);
                SourceJudgement { source: entry.0, missing: missing(&mut std::iter::once(entry)), repeated }
            })
            .collect()
    }
}

/// What the legacy consumer received of one source's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(super) struct SourceJudgement {
    /// The Protocol V2 source.
    pub(super) source: u8,
    /// Messages it produced that never arrived.
    pub(super) missing: u64,
    /// Messages that arrived more than once (each repeat once).
    pub(super) repeated: u64,
}
