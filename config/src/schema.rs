//! The settings schema: every key, its type and its default. One struct per
//! TOML table; unknown keys are refused everywhere (`deny_unknown_fields`),
//! and every table has defaults, so an empty file is a valid file.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Span;

/// Everything the toolkit can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Legacy relay sockets, one per domain.
    pub relay: RelayPaths,
    /// The compatible relay server (`myc relay`).
    pub relay_server: RelayServerSettings,
    /// The broker side: backend, endpoint, client options, and the server.
    pub broker: BrokerSettings,
    /// The NATS backend.
    pub nats: NatsSettings,
    /// Domain → topic.
    pub topics: Topics,
    /// The shadow path of dual-write stages.
    pub shadow: ShadowSettings,
    /// Where the rollout plan and its audit log live.
    pub rollout: RolloutSettings,
    /// What evidence a stage advance needs.
    pub gate: GateSettings,
    /// Prometheus metrics.
    pub metrics: MetricsSettings,
    /// Service name → what is known of it.
    pub services: BTreeMap<String, ServiceSettings>,
    /// Feed adapter → its live-connection settings (`polygon`, `kraken`).
    pub feeds: BTreeMap<String, FeedSettings>,
    /// Which broker clients may publish and subscribe to which topics.
    pub acl: AclSettings,
    /// The operator's web page (`myc console`).
    pub console: ConsoleSettings,
    /// The guard: live comparison of the paths, rollback on regression.
    pub guard: GuardSettings,
}

/// The relay socket of each domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayPaths {
    /// Domain 1.
    pub market_data: PathBuf,
    /// Domain 2.
    pub signal: PathBuf,
    /// Domain 3.
    pub execution: PathBuf,
    /// Domain 4.
    pub system: PathBuf,
}

impl Default for RelayPaths {
    fn default() -> Self {
        RelayPaths {
            market_data: "/tmp/torq/market_data.sock".into(),
            signal: "/tmp/torq/signals.sock".into(),
            execution: "/tmp/torq/execution.sock".into(),
            system: "/tmp/torq/system.sock".into(),
        }
    }
}

impl RelayPaths {
    /// The sockets of relay domains 1–4, in order.
    pub fn by_domain(&self) -> [&PathBuf; 4] {
        [&self.market_data, &self.signal, &self.execution, &self.system]
    }

    /// The socket of relay domain `domain` (1–4).
    pub fn for_domain(&self, domain: u8) -> Option<&PathBuf> {
        self.by_domain().get(usize::from(domain).checked_sub(1)?).copied()
    }
}

/// The compatible relay server's limits (relay spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayServerSettings {
    /// Largest message accepted, bytes.
    pub max_message: usize,
    /// Connections per relay socket at most; more are closed at once.
    pub max_connections: usize,
    /// Per-consumer queue, messages.
    pub queue_messages: usize,
    /// Per-consumer queue, bytes.
    pub queue_bytes: usize,
    /// A consumer whose queue is full: `drop_oldest` or `disconnect`.
    pub policy: RelayQueuePolicy,
    /// How long a producer waits for a consumer whose queue is full before
    /// it counts as stuck (its policy then applies until it catches up).
    pub stall_timeout: Span,
    /// File mode of the relay sockets, octal (never world-writable).
    pub socket_mode: String,
    /// Group id given to the relay sockets; none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<u32>,
}

impl Default for RelayServerSettings {
    fn default() -> Self {
        RelayServerSettings {
            max_message: 1024 * 1024,
            max_connections: 4096,
            queue_messages: 10_000,
            queue_bytes: 64 * 1024 * 1024,
            policy: RelayQueuePolicy::DropOldest,
            stall_timeout: Span::from_millis(50),
            socket_mode: "0660".to_owned(),
            socket_group: None,
        }
    }
}

/// What a client does with a publish when its buffer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BufferPolicy {
    /// Wait for room up to `buffer_deadline`, then fail.
    #[default]
    Block,
    /// Drop the message being published (counted).
    DropNewest,
    /// Drop the oldest message not yet sent (counted).
    DropOldest,
}

/// What the broker does with a subscriber over its outbound limit (or
/// stuck past the write deadline).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SlowConsumer {
    /// ERROR `slow_consumer`, then close.
    #[default]
    Disconnect,
    /// Drop deliveries while over the limit (counted).
    DropNew,
}

/// What the relay does with a consumer whose queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RelayQueuePolicy {
    /// Drop the oldest queued messages (counted).
    #[default]
    DropOldest,
    /// Close the consumer.
    Disconnect,
}

/// Which broker the broker path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The Mycelium broker.
    #[default]
    Mycelium,
    /// A NATS server or cluster.
    Nats,
}

/// When the broker path writes messages to its spool on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SpoolMode {
    /// No spool: a message the path cannot take waits or fails.
    #[default]
    Off,
    /// A message that would wait or fail (buffer full, breaker open,
    /// `max_reconnects` exceeded) is spooled instead.
    Overflow,
    /// Every message is spooled before its publish returns (a write-ahead
    /// log); it leaves the spool when the broker acknowledges it.
    Always,
}

/// The broker path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerSettings {
    /// `mycelium` or `nats`.
    pub backend: Backend,
    /// The broker's endpoint: `unix:/path` or `tcp:host:port`.
    pub endpoint: String,
    /// The shared secret for HELLO (empty: none).
    pub token: String,
    /// How long a connection attempt may take.
    pub connect_timeout: Span,
    /// Reconnect backoff: the first delay bound.
    pub backoff_initial: Span,
    /// Reconnect backoff: the largest delay bound.
    pub backoff_max: Span,
    /// Consecutive failed reconnects before giving up (0: never give up).
    pub max_reconnects: u32,
    /// Client buffer, bytes (queued plus unacknowledged).
    pub buffer_bytes: usize,
    /// Client buffer, messages.
    pub buffer_messages: usize,
    /// How long a publish waits for buffer room.
    pub buffer_deadline: Span,
    /// When the buffer is full: `block`, `drop_newest` or `drop_oldest`.
    pub buffer_policy: BufferPolicy,
    /// Consecutive failures (a failed connect, a publish past its deadline)
    /// that open the primary path's circuit breaker; 0 disables it.
    pub breaker_failures: u32,
    /// How long the breaker stays open before one probe goes through.
    pub breaker_open_for: Span,
    /// `off`, `overflow` or `always`.
    pub spool: SpoolMode,
    /// The spool directory, one producer's alone (relative: beside the
    /// settings file).
    pub spool_dir: PathBuf,
    /// Bytes the spool may take on disk; past it a message fails with
    /// `spool_full`.
    pub spool_max_bytes: u64,
    /// Longest time between a spool append and its `fdatasync`; `0ms`
    /// syncs every append.
    pub spool_fsync: Span,
    /// Seed compatibility: the broker's Unix socket (becomes `endpoint`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_path: Option<PathBuf>,
    /// Seed compatibility: `connect_timeout` in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_timeout_ms: Option<u64>,
    /// Seed compatibility: `backoff_initial` in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_backoff_ms: Option<u64>,
    /// The broker server (`myc broker`).
    pub server: BrokerServerSettings,
}

impl Default for BrokerSettings {
    fn default() -> Self {
        BrokerSettings {
            backend: Backend::Mycelium,
            endpoint: "unix:/tmp/mycelium.sock".to_owned(),
            token: String::new(),
            connect_timeout: Span::from_secs(2),
            backoff_initial: Span::from_millis(50),
            backoff_max: Span::from_secs(5),
            max_reconnects: 0,
            buffer_bytes: 64 * 1024 * 1024,
            buffer_messages: 1_000_000,
            buffer_deadline: Span::from_secs(5),
            buffer_policy: BufferPolicy::Block,
            breaker_failures: 5,
            breaker_open_for: Span::from_secs(1),
            spool: SpoolMode::Off,
            spool_dir: PathBuf::from("spool"),
            spool_max_bytes: 1024 * 1024 * 1024,
            spool_fsync: Span::from_millis(10),
            socket_path: None,
            connection_timeout_ms: None,
            retry_backoff_ms: None,
            server: BrokerServerSettings::default(),
        }
    }
}

/// The broker server's settings (broker spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerServerSettings {
    /// Endpoints to listen on.
    pub listen: Vec<String>,
    /// Largest frame accepted, bytes.
    pub max_frame: usize,
    /// Connections at most.
    pub max_connections: usize,
    /// Subscriptions per connection at most.
    pub max_subscriptions: usize,
    /// Topics at most.
    pub max_topics: usize,
    /// Acknowledgement interval.
    pub ack_interval: Span,
    /// How long a write to a subscriber may block.
    pub write_deadline: Span,
    /// A slow subscriber: `disconnect` or `drop_new`.
    pub slow_consumer: SlowConsumer,
    /// File mode of Unix sockets, octal (never world-writable).
    pub socket_mode: String,
    /// Group id given to Unix sockets (their users' group); none when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_group: Option<u32>,
}

impl Default for BrokerServerSettings {
    fn default() -> Self {
        BrokerServerSettings {
            listen: vec!["unix:/tmp/mycelium.sock".to_owned()],
            max_frame: 1024 * 1024 + 1024,
            max_connections: 4096,
            max_subscriptions: 1024,
            max_topics: 65_536,
            ack_interval: Span::from_millis(1),
            write_deadline: Span::from_secs(2),
            slow_consumer: SlowConsumer::Disconnect,
            socket_mode: "0660".to_owned(),
            socket_group: None,
        }
    }
}

/// The NATS backend (cli spec).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    /// Server URLs.
    pub urls: Vec<String>,
    /// Prefix of every subject: `<prefix><topic>`.
    pub subject_prefix: String,
    /// Publish through JetStream (deduplicated by message id).
    pub jetstream: bool,
    /// The JetStream stream (created if missing).
    pub stream: String,
    /// JetStream's duplicate window.
    pub duplicate_window: Span,
    /// Copies of the stream the cluster keeps (1 to 5; 3 on a three-node
    /// cluster, so that losing a node loses no stored message).
    pub replicas: u32,
    /// The most the stream stores, in bytes, before the oldest messages are
    /// discarded (0: no limit beyond the server's).
    pub max_bytes: u64,
    /// How long the stream keeps a message (0s: no limit).
    pub max_age: Span,
    /// The most messages the stream keeps (0: no limit).
    pub max_msgs: u64,
    /// A `.creds` file for the servers (empty: none).
    pub credentials_file: String,
    /// A token for the servers (empty: none).
    pub token: String,
    /// Require TLS.
    pub tls_required: bool,
    /// Extra root certificates, PEM (empty: none).
    pub root_certificates: String,
}

impl Default for NatsSettings {
    fn default() -> Self {
        NatsSettings {
            urls: vec!["nats://127.0.0.1:4222".to_owned()],
            subject_prefix: "myc.".to_owned(),
            jetstream: false,
            stream: "MYC".to_owned(),
            duplicate_window: Span::from_secs(120),
            replicas: 1,
            max_bytes: 0,
            max_age: Span::from_secs(0),
            max_msgs: 0,
            credentials_file: String::new(),
            token: String::new(),
            tls_required: false,
            root_certificates: String::new(),
        }
    }
}

/// The broker topic of each domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Domain 1.
    pub market_data: String,
    /// Domain 2.
    pub signal: String,
    /// Domain 3.
    pub execution: String,
    /// Domain 4.
    pub system: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            market_data: "market_data".to_owned(),
            signal: "signals".to_owned(),
            execution: "execution".to_owned(),
            system: "system".to_owned(),
        }
    }
}

impl Topics {
    /// The topics of relay domains 1–4, in order.
    pub fn by_domain(&self) -> [&str; 4] {
        [&self.market_data, &self.signal, &self.execution, &self.system]
    }

    /// The topic of relay domain `domain` (1–4).
    pub fn for_domain(&self, domain: u8) -> Option<&str> {
        self.by_domain().get(usize::from(domain).checked_sub(1)?).copied()
    }
}

/// The shadow path of the dual stages: its circuit breaker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShadowSettings {
    /// Consecutive shadow failures that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a probe.
    pub open_for: Span,
    /// The shadow queue: bytes held at most before shadow messages are dropped.
    pub queue_bytes: usize,
}

impl Default for ShadowSettings {
    fn default() -> Self {
        ShadowSettings { failure_threshold: 5, open_for: Span::from_secs(1), queue_bytes: 16 * 1024 * 1024 }
    }
}

/// A rollout stage (the stage table in docs/rollout.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Relay only.
    #[default]
    Relay,
    /// Both; the relay is authoritative, the broker a shadow.
    DualRelayPrimary,
    /// Both; the broker is authoritative, the relay a shadow.
    DualBrokerPrimary,
    /// Broker only.
    Broker,
}

impl Stage {
    /// Every stage, in rollout order.
    pub const ALL: [Stage; 4] = [Stage::Relay, Stage::DualRelayPrimary, Stage::DualBrokerPrimary, Stage::Broker];

    /// The name used in files and commands.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Relay => "relay",
            Stage::DualRelayPrimary => "dual_relay_primary",
            Stage::DualBrokerPrimary => "dual_broker_primary",
            Stage::Broker => "broker",
        }
    }

    /// The stage called `name`.
    pub fn from_name(name: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|stage| stage.name() == name)
    }

    /// Its position in rollout order (0–3).
    pub fn index(self) -> u8 {
        self as u8
    }

    /// The stage at position `index`.
    pub fn from_index(index: u8) -> Option<Stage> {
        Stage::ALL.get(usize::from(index)).copied()
    }

    /// The next stage forward, if any.
    pub fn next(self) -> Option<Stage> {
        Stage::from_index(self.index() + 1)
    }

    /// The previous stage, toward relay, if any.
    pub fn previous(self) -> Option<Stage> {
        self.index().checked_sub(1).and_then(Stage::from_index)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the rollout plan and the audit log live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RolloutSettings {
    /// The plan (relative paths: beside the config file).
    pub file: PathBuf,
    /// The audit log, JSON lines (relative paths: beside the config file).
    pub audit_log: PathBuf,
    /// The stage of services the plan does not list.
    pub default_stage: Stage,
}

impl Default for RolloutSettings {
    fn default() -> Self {
        RolloutSettings {
            file: "rollout.toml".into(),
            audit_log: "rollout-audit.jsonl".into(),
            default_stage: Stage::Relay,
        }
    }
}

/// What a stage advance demands of its verify report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GateSettings {
    /// The report's `matched` at least this.
    pub min_messages: u64,
    /// The report's `generated_at` at most this old.
    pub max_age: Span,
    /// The report's `window` at least this long (evidence gathered over a
    /// real stretch of traffic, not a blink).
    pub min_duration: Span,
}

impl Default for GateSettings {
    fn default() -> Self {
        GateSettings { min_messages: 10_000, max_age: Span::from_secs(3600), min_duration: Span::from_secs(60) }
    }
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSettings {
    /// Serve `/metrics` on this address (empty: off). `--metrics` overrides.
    pub listen: String,
}

/// One service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSettings {
    /// Its Protocol V2 source id (gates check reports against it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<u8>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            relay: RelayPaths::default(),
            relay_server: RelayServerSettings::default(),
            broker: BrokerSettings::default(),
            nats: NatsSettings::default(),
            topics: Topics::default(),
            shadow: ShadowSettings::default(),
            rollout: RolloutSettings::default(),
            gate: GateSettings::default(),
            metrics: MetricsSettings::default(),
            services: BTreeMap::new(),
            feeds: FeedSettings::defaults(),
            acl: AclSettings::default(),
            console: ConsoleSettings::default(),
            guard: GuardSettings::default(),
        }
    }
}

/// A feed adapter's live connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedSettings {
    /// Messages sent after each connect, in order (`${VAR}` is taken from
    /// the environment, so API keys stay out of this file).
    pub subscribe: Vec<String>,
    /// The message that re-requests one order book (`{symbol}` replaced);
    /// empty: none.
    pub resubscribe: String,
    /// Order-book depth kept per symbol (Kraken).
    pub book_depth: usize,
    /// Order books kept at most (Kraken); an update for a new symbol over
    /// it is dropped and counted `book_limit`.
    pub max_books: usize,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings { subscribe: Vec::new(), resubscribe: String::new(), book_depth: 10, max_books: 1024 }
    }
}

impl FeedSettings {
    /// The defaults for the four feed adapters.
    pub fn defaults() -> BTreeMap<String, FeedSettings> {
        let polygon = FeedSettings {
            subscribe: vec![
                r#"{"action":"auth","params":"${POLYGON_API_KEY}"}"#.to_owned(),
                r#"{"action":"subscribe","params":"XT.*,XQ.*"}"#.to_owned(),
            ],
            ..FeedSettings::default()
        };
        let kraken = FeedSettings {
            subscribe: vec![
                r#"{"method":"subscribe","params":{"channel":"trade","symbol":["BTC/USD","ETH/USD"]}}"#.to_owned(),
                r#"{"method":"subscribe","params":{"channel":"ticker","symbol":["BTC/USD","ETH/USD"]}}"#.to_owned(),
                r#"{"method":"subscribe","params":{"channel":"book","depth":10,"symbol":["BTC/USD","ETH/USD"]}}"#
                    .to_owned(),
            ],
            resubscribe: r#"{"method":"subscribe","params":{"channel":"book","depth":10,"symbol":["{symbol}"]}}"#
                .to_owned(),
            ..FeedSettings::default()
        };
        // Coinbase: one subscribe for the matches and ticker channels (the
        // heartbeat keeps a quiet product's connection visibly alive).
        let coinbase = FeedSettings {
            subscribe: vec![
                r#"{"type":"subscribe","product_ids":["BTC-USD","ETH-USD"],"channels":["matches","ticker","heartbeat"]}"#
                    .to_owned(),
            ],
            resubscribe: String::new(),
            book_depth: 10,
            max_books: 1024,
        };
        // Binance: the combined-stream endpoint (`wss://…/stream`) takes the
        // same SUBSCRIBE as the raw one.
        let binance = FeedSettings {
            subscribe: vec![
                r#"{"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade","btcusdt@bookTicker","ethusdt@bookTicker"],"id":1}"#
                    .to_owned(),
            ],
            resubscribe: String::new(),
            book_depth: 10,
            max_books: 1024,
        };
        BTreeMap::from([
            ("binance".to_owned(), binance),
            ("coinbase".to_owned(), coinbase),
            ("kraken".to_owned(), kraken),
            ("polygon".to_owned(), polygon),
        ])
    }
}

/// The broker's access list: topics (exact names, or `*` for all) each
/// client name may publish and subscribe to; clients not listed get the
/// defaults. The defaults allow everything, so an empty `[acl]` is no ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AclSettings {
    /// What unlisted clients may publish to.
    pub default_publish: Vec<String>,
    /// What unlisted clients may subscribe to.
    pub default_subscribe: Vec<String>,
    /// Client name → its rule.
    pub clients: BTreeMap<String, AclRule>,
}

impl Default for AclSettings {
    fn default() -> Self {
        AclSettings {
            default_publish: vec!["*".to_owned()],
            default_subscribe: vec!["*".to_owned()],
            clients: BTreeMap::new(),
        }
    }
}

impl AclSettings {
    /// Whether the ACL restricts anything.
    pub fn restricts(&self) -> bool {
        *self != AclSettings::default()
    }
}

/// One client's rule, and what proves a HELLO may claim its name: a
/// `token` the HELLO must carry, and/or the `uids` a Unix-socket peer must
/// run as. A rule with neither can be claimed by any client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AclRule {
    /// Topics it may publish to.
    pub publish: Vec<String>,
    /// Topics it may subscribe to.
    pub subscribe: Vec<String>,
    /// Token a HELLO under this name must carry (instead of `broker.token`);
    /// empty: none.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token: String,
    /// Uids a HELLO under this name must come from, over a Unix socket;
    /// empty: any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<u32>,
}

impl AclRule {
    /// Whether a HELLO must prove something to claim this name.
    pub fn is_bound(&self) -> bool {
        !self.token.is_empty() || !self.uids.is_empty()
    }
}

/// The rollout console.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleSettings {
    /// Where verify JSON reports are kept (relative: beside the config file).
    pub reports_dir: PathBuf,
    /// Prometheus endpoints of producers to read live rates from
    /// (`http://127.0.0.1:9466/metrics`).
    pub scrape: Vec<String>,
    /// Token required on every request (`Authorization: Bearer …`); needed
    /// for a non-loopback listener. Empty: none.
    pub token: String,
    /// Named tokens (`alice = "…"`): each is accepted like `token`, and a
    /// change made with one is audited under its name. Names are 1 to 64
    /// characters of `A-Za-z0-9_.-`; values are non-empty and distinct
    /// (from each other and from `token`).
    pub tokens: BTreeMap<String, String>,
    /// Host names (or `name:port`) the console answers to besides its
    /// listen address and loopback; any other `Host` gets 421, so a web
    /// page cannot reach the console through DNS rebinding.
    pub allowed_hosts: Vec<String>,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        ConsoleSettings {
            reports_dir: "reports".into(),
            scrape: Vec::new(),
            token: String::new(),
            tokens: BTreeMap::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

/// The guard (`myc rollout guard`, and inside `myc console` when enabled):
/// every `interval` it scrapes the producers' metrics and, over the last
/// `window`, rolls back a service whose broker path does worse than its
/// relay path (docs/guard.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuardSettings {
    /// Run the guard inside `myc console`.
    pub enabled: bool,
    /// Producers' metrics endpoints; empty: `[console] scrape`.
    pub targets: Vec<String>,
    /// How often the targets are scraped and the rules evaluated.
    pub interval: Span,
    /// The stretch of time each decision looks back over.
    pub window: Span,
    /// Messages attempted on the primary path in a window below which no
    /// rule applies (`insufficient`).
    pub min_messages: u64,
    /// Rule 1: the broker path's failed ratio must exceed this…
    pub max_failed_ratio: Ratio,
    /// …and this many times the relay path's failed ratio.
    pub max_error_increase: Ratio,
    /// Rule 2: the broker shadow's dropped ratio above this rolls back.
    pub max_shadow_dropped_ratio: Ratio,
    /// Rule 3: RSS above this many times the baseline (plus 32 MiB).
    pub max_rss_increase: Ratio,
    /// Rule 4: how often to take a live verify sample ("0s": never).
    pub verify_every: Span,
    /// Rule 4: how long each verify sample taps both paths.
    pub verify_for: Span,
}

impl Default for GuardSettings {
    fn default() -> Self {
        GuardSettings {
            enabled: false,
            targets: Vec::new(),
            interval: Span::from_secs(5),
            window: Span::from_secs(30),
            min_messages: 1000,
            max_failed_ratio: Ratio(0.001),
            max_error_increase: Ratio(2.0),
            max_shadow_dropped_ratio: Ratio(0.01),
            max_rss_increase: Ratio(1.5),
            verify_every: Span::from_secs(0),
            verify_for: Span::from_secs(10),
        }
    }
}

/// A ratio or factor in settings: a plain number, finite and not negative
/// (validation refuses the rest, which is what makes `Eq` honest here).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Ratio(pub f64);

impl Eq for Ratio {}

impl Ratio {
    /// The number.
    pub const fn get(self) -> f64 {
        self.0
    }
}

impl fmt::Display for Ratio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A socket mode written in octal (`"0660"`), if it is one and is not
/// world-writable.
pub fn socket_mode(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim_start_matches("0o"), 8).ok().filter(|mode| *mode <= 0o777 && mode & 0o002 == 0)
}
