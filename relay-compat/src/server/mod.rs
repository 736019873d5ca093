//! The compatible relay server (docs/relay.md §3): one relay per domain socket,
//! all in one process if asked. Each connection's byte stream is framed by
//! `32 + payload_size` however it arrives; identification headers are
//! consumed and make the connection a producer; valid messages go, unchanged
//! and in per-sender order, to every other connection that is not a producer.
//!
//! Fan-out works on read batches: the valid messages of one read form a few
//! contiguous runs, and each consumer's queue gets shared slices of the read
//! buffer — no copy per consumer, no reference count per message. It
//! deliberately never rewrites a message and never echoes to its sender.

mod link;
mod peer;

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use myc_codec::{Domain, Header, Message};
use myc_transport::{FrameReader, Listener, Stream};
use tokio::io::AsyncRead;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::framing::ProtocolV2;
use crate::metrics::Metrics;
pub use link::{Delivered, Downlink, Link, Links, WRITES_TO_BROKER};
use peer::{Peer, Role};

/// What the relay does with a consumer over its queue bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueuePolicy {
    /// Drop the oldest queued messages (the default; legacy-like; counted).
    #[default]
    DropOldest,
    /// Close the consumer's connection.
    Disconnect,
}

/// When a relay checks checksums (protocol-v2 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumCheck {
    /// Never.
    Never,
    /// When the field is non-zero; a mismatch drops the message.
    WhenNonZero,
    /// Always: a mismatch drops the message, a zero field is reported
    /// (counted as `checksum_missing`) and the message forwarded.
    Required,
}

/// Relay settings (defaults per spec).
#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// The largest message accepted, header included.
    pub max_message: usize,
    /// Connections per relay socket at most; one more is closed at once
    /// (the legacy protocol has no way to say why) and counted.
    pub max_connections: usize,
    /// Messages queued per consumer at most.
    pub queue_messages: usize,
    /// Bytes queued per consumer at most.
    pub queue_bytes: usize,
    /// What happens over those bounds.
    pub policy: QueuePolicy,
    /// Restore the legacy echo to producers (never to the sender itself).
    pub echo_to_producers: bool,
    /// Checksum policy per domain, indexed by `relay_domain - 1`.
    pub checksum: [ChecksumCheck; 4],
    /// How long producers wait at most, at once, for a consumer over its
    /// bound to drain (and at most half their time over the long run) before
    /// that consumer counts as stuck: its policy then applies at once until
    /// it has caught up.
    pub stall_timeout: Duration,
    /// Broker links by domain (`myc relay --bridge`); none by default, and
    /// then the relay is exactly the legacy-compatible one.
    pub links: Links,
}

impl Default for RelaySettings {
    fn default() -> Self {
        RelaySettings {
            max_message: myc_codec::MAX_MESSAGE_LEN,
            max_connections: 4096,
            queue_messages: 10_000,
            queue_bytes: 64 * 1024 * 1024,
            policy: QueuePolicy::DropOldest,
            echo_to_producers: false,
            checksum: [
                ChecksumCheck::WhenNonZero,
                ChecksumCheck::WhenNonZero,
                ChecksumCheck::Required,
                ChecksumCheck::WhenNonZero,
            ],
            stall_timeout: Duration::from_millis(50),
            links: Links::default(),
        }
    }
}

/// A running relay process: its metrics.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    /// Live counters of every domain.
    pub metrics: Arc<Metrics>,
}

impl RelayHandle {
    /// Connections of `domain` the relay has accepted and not seen publish:
    /// consumers (taps among them). A consumer misses what was relayed
    /// before it was accepted, so whoever starts taps and producers together
    /// waits for this count first.
    pub fn consumers(&self, domain: Domain) -> i64 {
        Metrics::get(&self.metrics.connections, domain.name(), "consumer").get()
    }
}

/// Runs [`serve`] as a task of this process (tests, `myc demo`, benches):
/// returns once it listens; stop it, kill it, or drop it.
pub async fn spawn(relays: Vec<(Domain, Listener)>, settings: RelaySettings) -> myc_transport::Running<RelayHandle> {
    myc_transport::Running::spawn(move |shutdown, on_start| serve(relays, settings, shutdown, on_start)).await
}

/// Serves each `(domain, listener)` until `shutdown` completes, then stops
/// accepting, lets every queue drain (up to 5 s) and returns; socket files
/// are removed as the listeners drop.
pub async fn serve(
    relays: Vec<(Domain, Listener)>,
    settings: RelaySettings,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(RelayHandle),
) {
    let metrics = Arc::new(Metrics::default());
    for (domain, _) in &relays {
        metrics.declare(domain.name());
    }
    on_start(RelayHandle { metrics: Arc::clone(&metrics) });
    let settings = Arc::new(settings);
    let (stop, stopped) = watch::channel(false);
    let mut relays_running = JoinSet::new();
    for (domain, listener) in relays {
        let relay = Arc::new(Relay {
            domain,
            settings: Arc::clone(&settings),
            metrics: Arc::clone(&metrics),
            peers: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            refusal_warnings: myc_transport::OnceASecond::default(),
            link: settings.links.get(domain).cloned(),
        });
        if let Some(link) = &relay.link {
            link.attach(Downlink::new(&relay));
        }
        let serve = {
            let relay = Arc::clone(&relay);
            move |stream| serve_connection(Arc::clone(&relay), stream)
        };
        // On stop: no more reading from anyone; writers drain their queues.
        let on_stop = move || {
            let peers: Vec<Arc<Peer>> = relay.lock_peers().values().cloned().collect();
            for peer in peers {
                peer.finish();
            }
        };
        relays_running.spawn(myc_transport::accept_until(listener, stopped.clone(), serve, on_stop));
    }
    shutdown.await;
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while relays_running.join_next().await.is_some() {} })
        .await;
}

/// One domain's relay.
struct Relay {
    domain: Domain,
    settings: Arc<RelaySettings>,
    metrics: Arc<Metrics>,
    /// Every open connection, by id.
    peers: Mutex<HashMap<u64, Arc<Peer>>>,
    next_id: AtomicU64,
    /// Refused connections are logged at most once a second.
    refusal_warnings: myc_transport::OnceASecond,
    /// The broker link, asked about every valid message of a linked producer.
    link: Option<Arc<dyn Link>>,
}

impl Relay {
    fn lock_peers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Peer>>> {
        self.peers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a connection over `max_connections` (closed by the caller),
    /// logging at most once a second.
    fn refuse(&self) {
        let domain = self.domain.name();
        Metrics::get(&self.metrics.refused, domain, "max_connections").inc();
        if self.refusal_warnings.ready() {
            tracing::warn!(
                domain,
                max_connections = self.settings.max_connections,
                "closing a connection over the limit (further ones counted, logged at most once a second)"
            );
        }
    }

    fn checksum_check(&self) -> ChecksumCheck {
        let index = usize::from(self.domain.as_u8()).saturating_sub(1);
        self.settings.checksum.get(index).copied().unwrap_or(ChecksumCheck::WhenNonZero)
    }
}

/// Registers the connection as a consumer at once — in the accept loop, so
/// a tap accepted before a producer sees all of that producer's messages —
/// and returns the future that serves it.
fn serve_connection(relay: Arc<Relay>, stream: Stream) -> impl Future<Output = ()> + Send + 'static {
    let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
    let domain = relay.domain.name();
    let admitted = {
        let mut peers = relay.lock_peers();
        (peers.len() < relay.settings.max_connections).then(|| {
            let peer = Arc::new(Peer::new(&relay.settings, &relay.metrics, domain));
            peers.insert(id, Arc::clone(&peer));
            peer
        })
    };
    if admitted.is_some() {
        Metrics::get(&relay.metrics.connections, domain, "consumer").inc();
    } else {
        relay.refuse();
    }
    async move {
        let Some(peer) = admitted else {
            drop(stream);
            return;
        };
        let (read_half, write_half) = stream.into_split();
        let mut writer = myc_transport::AbortOnDrop::spawn(peer::write_loop(Arc::clone(&peer), write_half));
        let reader = FrameReader::new(read_half, ProtocolV2 { max_message: relay.settings.max_message });
        if let Err(reason) = read_loop(&relay, &peer, reader).await {
            Metrics::get(&relay.metrics.invalid, domain, reason).inc();
            tracing::warn!(domain, reason, "closing a connection that lost framing");
        }
        // Nothing more comes from this peer; what is queued for it is still written.
        relay.lock_peers().remove(&id);
        peer.finish();
        let _ = writer.join().await;
        let role = if peer.role() == Role::Producer { "producer" } else { "consumer" };
        Metrics::get(&relay.metrics.connections, domain, role).dec();
    }
}

/// Reads and fans out until the peer closes (`Ok`) or breaks framing
/// (`Err(reason)`).
async fn read_loop(
    relay: &Relay,
    peer: &Arc<Peer>,
    mut reader: FrameReader<impl AsyncRead + Unpin, ProtocolV2>,
) -> Result<(), &'static str> {
    let domain = relay.domain.name();
    let bytes_in = Metrics::get(&relay.metrics.bytes_in, domain, "all");
    let messages_in = Metrics::get(&relay.metrics.messages_in, domain, "all");
    let mut runs: Vec<(Bytes, u64)> = Vec::new();
    let mut linked = LinkedBatch::default();
    let mut targets: Vec<Arc<Peer>> = Vec::new();
    let mut behind: Vec<Arc<Peer>> = Vec::new();
    let mut producer_hold = myc_transport::HoldBudget::new(relay.settings.stall_timeout, std::time::Instant::now());
    loop {
        let batch = tokio::select! {
            batch = reader.read_batch() => batch,
            () = peer.closing() => return Ok(()),
        };
        let batch = match batch {
            Ok(Some(batch)) => batch,
            Ok(None) | Err(myc_transport::Error::Io { .. }) => return Ok(()),
            Err(myc_transport::Error::ClosedMidFrame { .. }) => return Err("truncated"),
            Err(myc_transport::Error::FrameTooLarge { .. }) => return Err("too_large"),
            Err(myc_transport::Error::Framing(reason)) if reason == crate::framing::BAD_MAGIC => {
                return Err("bad_magic");
            }
            Err(myc_transport::Error::Framing(reason)) if reason == crate::framing::BAD_VERSION => {
                return Err("bad_version");
            }
            Err(_) => return Err("framing"),
        };
        bytes_in.inc_by(batch.len() as u64);
        let n_messages = split_batch(relay, peer, &batch, &mut runs, &mut linked);
        messages_in.inc_by(n_messages);
        if runs.is_empty() {
            continue;
        }
        // Everyone else who is not a producer (or every producer but the
        // sender, with the legacy echo).
        targets.clear();
        targets.extend(
            relay
                .lock_peers()
                .values()
                .filter(|other| !Arc::ptr_eq(other, peer))
                .filter(|other| relay.settings.echo_to_producers || other.role() == Role::Consumer)
                .cloned(),
        );
        for target in &targets {
            if target.push(&runs) {
                behind.push(Arc::clone(target));
            }
        }
        runs.clear();
        // A reading consumer that fell behind gets a moment to catch up (the
        // producer waits, losing nothing) while its hold budget lasts; past
        // it, it is marked stuck and handled by its policy until it keeps up
        // again. The producer's own budget bounds the waits for all of them
        // together.
        Peer::wait_for_behind(behind.drain(..), &mut producer_hold).await;
    }
}

/// A read batch's messages as judged, kept per connection so a linked
/// relay allocates nothing per batch: what the link is asked about, and what
/// it answered.
#[derive(Default)]
struct LinkedBatch {
    /// Every message of the batch: where it is, and whether it is forwarded
    /// (`Some(linked)`) or dropped (`None`).
    judged: Vec<(Range<usize>, Option<bool>)>,
    /// The valid messages handed to the link.
    handed: Vec<Range<usize>>,
    /// Per handed message: whether the relay fans it out too.
    fanned: Vec<bool>,
}

/// Validates every message of `batch`: consumes identification headers
/// (the peer becomes a producer), drops and counts invalid ones, hands the
/// valid ones of a linked producer to the broker link, and appends what is
/// fanned out here to `runs` as contiguous slices with their message counts.
/// Returns how many valid messages there are.
fn split_batch(
    relay: &Relay,
    peer: &Peer,
    batch: &Bytes,
    runs: &mut Vec<(Bytes, u64)>,
    linked: &mut LinkedBatch,
) -> u64 {
    let domain = relay.domain.name();
    let check = relay.checksum_check();
    let link = relay.link.as_deref();
    let mut offset = 0;
    let mut run_start = 0;
    let mut run_count = 0;
    let mut n_valid = 0;
    while offset < batch.len() {
        let len = crate::framing::message_len(&batch[offset..]);
        let bytes = &batch[offset..offset + len];
        let forward = match judge(relay.domain, check, bytes) {
            Verdict::Forward => true,
            Verdict::ForwardReported(reason) => {
                Metrics::get(&relay.metrics.invalid, domain, reason).inc();
                true
            }
            Verdict::Identification(header) => {
                peer.become_producer(header.source, header.flags & WRITES_TO_BROKER == 0, &relay.metrics, domain);
                false
            }
            Verdict::Drop(reason) => {
                Metrics::get(&relay.metrics.invalid, domain, reason).inc();
                false
            }
        };
        n_valid += u64::from(forward);
        if link.is_some() {
            // Only what the relay accepts reaches the link, and only from
            // linked producers (the flag may arrive in this very batch).
            let handed = forward && peer.linked();
            if handed {
                linked.handed.push(offset..offset + len);
            }
            linked.judged.push((offset..offset + len, forward.then_some(handed)));
        } else if forward {
            run_count += 1;
        } else {
            if run_count > 0 {
                runs.push((batch.slice(run_start..offset), std::mem::take(&mut run_count)));
            }
            run_start = offset + len;
        }
        offset += len;
    }
    if let Some(link) = link {
        // The link says which of its messages are fanned out here too.
        if !linked.handed.is_empty() {
            link.uplink(batch, &linked.handed, &mut linked.fanned);
        }
        let mut fanned = linked.fanned.iter();
        for (range, judged) in linked.judged.drain(..) {
            let fan_out = match judged {
                Some(true) => fanned.next().copied().unwrap_or(true),
                Some(false) => true,
                None => false,
            };
            if fan_out {
                run_count += 1;
            } else {
                if run_count > 0 {
                    runs.push((batch.slice(run_start..range.start), std::mem::take(&mut run_count)));
                }
                run_start = range.end;
            }
        }
        linked.handed.clear();
        linked.fanned.clear();
    }
    if run_count > 0 {
        runs.push((batch.slice(run_start..offset), run_count));
    }
    n_valid
}

/// What to do with one framed message.
enum Verdict {
    Forward,
    /// Forward, and count it under this reason.
    ForwardReported(&'static str),
    Identification(Header),
    Drop(&'static str),
}

fn judge(relay_domain: Domain, check: ChecksumCheck, bytes: &[u8]) -> Verdict {
    let message = match Message::parse(bytes) {
        Ok(message) => message,
        Err(_) => return Verdict::Drop("malformed_tlv"),
    };
    let header = *message.header();
    if header.is_identification() {
        return Verdict::Identification(header);
    }
    if header.relay_domain != relay_domain {
        return Verdict::Drop("wrong_domain");
    }
    match check {
        ChecksumCheck::Never => Verdict::Forward,
        ChecksumCheck::WhenNonZero | ChecksumCheck::Required if header.checksum != 0 => {
            if message.verify_checksum().is_ok() { Verdict::Forward } else { Verdict::Drop("bad_checksum") }
        }
        ChecksumCheck::Required => Verdict::ForwardReported("checksum_missing"),
        ChecksumCheck::WhenNonZero => Verdict::Forward,
    }
}
