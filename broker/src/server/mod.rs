//! The broker server (behaviour in `docs/broker-protocol.md`, section 3): accepts connections on any number of
//! listeners, routes PUBLISH frames to fan-out subscriptions and round-robin
//! groups, acknowledges publishes once their deliveries are written to the
//! subscribers' sockets, and enforces limits and the slow-consumer policy.
//!
//! Each connection has a reader task (frames in, routing) and a writer task
//! (one outbound queue, written in batches). Acknowledgement bookkeeping is
//! a checkpoint list per publisher: a checkpoint records, for each subscriber
//! queue the publisher routed to, the position its copy was queued at; the
//! checkpoint is done once every such queue has written past that position
//! (or was closed). It deliberately never parses payloads.

pub mod acl;
mod connection;
pub mod hello;
mod outbound;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use myc_transport::Listener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use crate::metrics::Metrics;
use crate::protocol::{self, ErrorCode, Topic};
use outbound::Outbound;

/// What the broker does with a connection over its outbound limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SlowConsumerPolicy {
    /// ERROR `slow_consumer`, then close (the default).
    #[default]
    Disconnect,
    /// Drop deliveries while over the limit (counted).
    DropNew,
}

/// Broker settings (defaults as in `docs/broker-protocol.md`).
#[derive(Debug, Clone)]
pub struct Settings {
    /// Sent in WELCOME.
    pub server_id: String,
    /// Largest frame body accepted.
    pub max_frame: usize,
    /// Connections at once.
    pub max_connections: usize,
    /// Subscriptions per connection.
    pub max_subscriptions: usize,
    /// Topics with subscriptions, broker-wide.
    pub max_topics: usize,
    /// How often ACKs are sent while the count grows.
    pub ack_interval: Duration,
    /// How long after start PUBLISH frames are held.
    pub restart_grace: Duration,
    /// Bytes queued per connection before the slow-consumer policy applies.
    pub outbound_limit: usize,
    /// A write to a subscriber that makes no progress for this long marks it
    /// a slow consumer too: a subscriber that stops reading must not hold
    /// back its publishers' ACKs (and so their buffers) indefinitely.
    pub write_deadline: Duration,
    /// The slow-consumer policy.
    pub slow_consumer: SlowConsumerPolicy,
    /// Required HELLO token, if any.
    pub token: Option<String>,
    /// Who may publish and subscribe to what (none: everyone, everything).
    pub acl: Option<acl::Acl>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            server_id: "mycelium".to_owned(),
            max_frame: protocol::DEFAULT_MAX_FRAME,
            max_connections: 4096,
            max_subscriptions: 1024,
            max_topics: 65_536,
            ack_interval: Duration::from_millis(1),
            restart_grace: Duration::from_millis(500),
            outbound_limit: 64 * 1024 * 1024,
            write_deadline: Duration::from_secs(2),
            slow_consumer: SlowConsumerPolicy::Disconnect,
            token: None,
            acl: None,
        }
    }
}

/// A running broker: its metrics and the endpoints it listens on.
#[derive(Debug, Clone)]
pub struct ServerHandle {
    /// Live counters.
    pub metrics: Arc<Metrics>,
}

/// Runs [`serve`] as a task of this process (tests, `myc demo`, benches):
/// returns once it listens; stop it, kill it, or drop it.
pub async fn spawn(listeners: Vec<Listener>, settings: Settings) -> myc_transport::Running<ServerHandle> {
    myc_transport::Running::spawn(move |shutdown, on_start| serve(listeners, settings, shutdown, on_start)).await
}

/// Serves `listeners` until `shutdown` completes, then sends ERROR
/// `shutting_down` to every connection after flushing what is queued, and
/// returns once the connections are closed (Unix socket files are removed
/// when the listeners drop).
pub async fn serve(
    listeners: Vec<Listener>,
    settings: Settings,
    shutdown: impl Future<Output = ()>,
    on_start: impl FnOnce(ServerHandle),
) {
    let (stop, stopped) = watch::channel(false);
    let shared = Arc::new(Shared {
        stopping: stopped.clone(),
        connection_slots: Arc::new(Semaphore::new(settings.max_connections)),
        grace_ends: Instant::now() + settings.restart_grace,
        settings,
        router: RwLock::new(HashMap::new()),
        connections: Mutex::new(HashMap::new()),
        next_connection_id: AtomicU64::new(1),
        metrics: Arc::new(Metrics::default()),
    });
    on_start(ServerHandle { metrics: Arc::clone(&shared.metrics) });
    let mut acceptors = JoinSet::new();
    for listener in listeners {
        let shared = Arc::clone(&shared);
        let serve = move |stream| connection::serve_connection(Arc::clone(&shared), stream);
        acceptors.spawn(myc_transport::accept_until(listener, stopped.clone(), serve, || {}));
    }
    shutdown.await;
    let _ = stop.send(true);
    let open: Vec<Arc<Outbound>> = shared.lock_connections().values().cloned().collect();
    for outbound in open {
        outbound.send_fatal(ErrorCode::ShuttingDown, connection::SHUTTING_DOWN);
    }
    // Connections end once their queues are flushed; any still open after
    // the grace period are aborted with their acceptor.
    let _ =
        tokio::time::timeout(Duration::from_secs(5), async { while acceptors.join_next().await.is_some() {} }).await;
}

struct Shared {
    settings: Settings,
    /// True once the broker is shutting down: a connection still in its
    /// handshake, or registered after the sweep, is told so too.
    stopping: watch::Receiver<bool>,
    connection_slots: Arc<Semaphore>,
    grace_ends: Instant,
    router: RwLock<HashMap<Topic, TopicEntry>>,
    connections: Mutex<HashMap<u64, Arc<Outbound>>>,
    next_connection_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock_connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Outbound>>> {
        self.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct TopicEntry {
    fanout: Vec<Subscriber>,
    groups: Vec<Group>,
}

impl TopicEntry {
    /// Subscriptions on the topic, fan-out and group members together.
    fn subscribers(&self) -> usize {
        self.fanout.len() + self.groups.iter().map(|group| group.members.len()).sum::<usize>()
    }
}

struct Group {
    name: Bytes,
    members: Vec<Subscriber>,
    /// Round-robin position.
    next: AtomicUsize,
}

#[derive(Clone)]
struct Subscriber {
    connection_id: u64,
    sub_id: u32,
    outbound: Arc<Outbound>,
}
