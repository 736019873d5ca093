//! The one interface producers publish through, and its transports:
//! `RelayPublisher` (a relay client per domain, started on the domain's
//! first message; feature `relay`), `BrokerPublisher` (one broker client;
//! the message's `relay_domain` picks the topic from the topic map; feature
//! `broker`) and `NatsBrokerPublisher` (feature `nats`). All take the
//! producer's bytes unchanged. [`RelaySide`] and [`BrokerSide`] are the
//! paths the settings choose, or `Unavailable` where the build left the
//! transport out.

use std::future::Future;
#[cfg(any(feature = "relay", feature = "nats"))]
use std::path::PathBuf;
#[cfg(feature = "relay")]
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[cfg(feature = "broker")]
use myc_broker::{Client, ConnectionState};
#[cfg(feature = "relay")]
use myc_codec::{Domain, Source};
#[cfg(feature = "relay")]
use myc_relay_compat::{RelayClient, RelayClientOptions};
#[cfg(feature = "relay")]
use myc_transport::BufferLimits;

use crate::Error;

/// Something that carries Protocol V2 messages somewhere.
pub trait Publisher: Send + Sync {
    /// Publishes one whole message, waiting for buffer room if the path's
    /// policy says so.
    fn publish(&self, message: &[u8]) -> impl Future<Output = Result<(), Error>> + Send;

    /// Publishes without waiting: the message is buffered or refused now.
    ///
    /// # Errors
    /// Why the path refused it.
    fn try_publish(&self, message: &[u8]) -> Result<(), Error>;

    /// Publishes concatenated whole messages, in order, stopping at the
    /// first refusal.
    fn publish_batch(&self, messages: &[u8]) -> impl Future<Output = Result<(), Error>> + Send {
        async move {
            for message in split(messages)? {
                self.publish(message).await?;
            }
            Ok(())
        }
    }

    /// Publishes concatenated whole messages without waiting, in order,
    /// each judged as [`Publisher::try_publish`] would (a refused one does
    /// not stop the rest). Paths with a buffer take the run under one lock.
    fn try_publish_run(&self, messages: &[u8]) -> RunOutcome {
        RunOutcome::each(messages, |message| self.try_publish(message))
    }

    /// Waits until everything published so far is delivered (written to the
    /// relay, acknowledged by the broker), or `deadline` passes.
    fn flush(&self, deadline: Duration) -> impl Future<Output = Result<(), Error>> + Send;

    /// Whether the path is connected now.
    fn is_connected(&self) -> bool;

    /// Bytes buffered on the path now.
    fn buffered_bytes(&self) -> usize;

    /// The path this build left out, when this publisher stands in for it
    /// (it refuses every message); `None` for a real path.
    fn unavailable(&self) -> Option<Unavailable> {
        None
    }

    /// The `path` label of this publisher's metrics when it is the broker
    /// side: `broker` for the Mycelium broker, `nats` for NATS, so a
    /// dashboard tells the backends apart. (The relay side is always
    /// `relay`.)
    fn broker_label(&self) -> &'static str {
        "broker"
    }
    /// Delivery bookkeeping, for paths that learn when the far side has a
    /// message (the broker's acknowledgements): what the primary guard's
    /// spool and breaker watch. `None` for paths that never learn it.
    fn progress(&self) -> Option<Progress> {
        None
    }

    /// Messages the path accepted and has not handed over yet: not
    /// acknowledged by the broker, not written to the relay socket.
    fn undelivered(&self) -> u64 {
        self.progress().map_or(0, |progress| progress.accepted.saturating_sub(progress.acknowledged))
    }

    /// Successful connections so far (the first included).
    fn connects(&self) -> u64 {
        self.progress().map_or(0, |progress| progress.connects)
    }
}

/// A path's cumulative counts since it started, in the order its messages
/// were accepted (one FIFO per path).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    /// Messages the path accepted.
    pub accepted: u64,
    /// Of those, how many the far side has (acknowledged); always the
    /// oldest ones.
    pub acknowledged: u64,
    /// Successful connections.
    pub connects: u64,
    /// Failed connection attempts.
    pub connect_failures: u64,
    /// Messages sent again after a reconnect (or a missing acknowledgement).
    pub resent: u64,
}

/// A path the build left out, and the Cargo feature of myc-shim that brings
/// it back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// The path: `relay`, `broker` or `NATS`.
    pub path: &'static str,
    /// The feature to enable.
    pub feature: &'static str,
}

impl Unavailable {
    /// The relay path, feature `relay`.
    pub const RELAY: Unavailable = Unavailable { path: "relay", feature: "relay" };
    /// The Mycelium broker path, feature `broker`.
    pub const BROKER: Unavailable = Unavailable { path: "broker", feature: "broker" };
    /// The NATS broker path, feature `nats`.
    pub const NATS: Unavailable = Unavailable { path: "NATS", feature: "nats" };

    /// The error a message sent to this path gets.
    pub fn error(self) -> Error {
        Error::PathUnavailable { path: self.path, feature: self.feature }
    }
}

/// Splits concatenated whole messages.
///
/// # Errors
/// [`Error::NotAMessage`] when the bytes do not end on a message boundary.
pub fn split(mut messages: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    while !messages.is_empty() {
        let len =
            myc_codec::peek_message_len(messages).filter(|&len| len <= messages.len()).ok_or(Error::NotAMessage)?;
        let (message, rest) = messages.split_at(len);
        out.push(message);
        messages = rest;
    }
    Ok(out)
}

#[cfg(any(feature = "relay", feature = "broker", feature = "nats"))]
/// What a path did with a run of messages ([`Publisher::try_publish_run`]).
#[derive(Debug, Default)]
pub struct RunOutcome {
    /// Messages taken.
    pub taken: usize,
    /// The index in the run of the last message taken.
    pub newest: Option<usize>,
    /// Why the first refused message was refused.
    pub refused: Option<Error>,
}

impl RunOutcome {
    /// Publishes each message of the run with `publish`, in order, each on
    /// its own: a refused one does not stop the rest.
    pub(crate) fn each(messages: &[u8], mut publish: impl FnMut(&[u8]) -> Result<(), Error>) -> RunOutcome {
        let mut outcome = RunOutcome::default();
        for (index, message) in Messages(messages).enumerate() {
            match message.and_then(&mut publish) {
                Ok(()) => {
                    outcome.taken += 1;
                    outcome.newest = Some(index);
                }
                Err(error) => {
                    outcome.refused.get_or_insert(error);
                }
            }
        }
        outcome
    }

    /// Adds what a buffer did with the messages `first..` of the run.
    #[cfg(feature = "broker")]
    fn add_pushed(&mut self, first: usize, pushed: myc_transport::RunPushed) {
        self.taken += pushed.queued;
        if let Some(newest) = pushed.newest {
            self.newest = Some(first + newest);
        }
        if let Some(refused) = pushed.refused
            && self.refused.is_none()
        {
            self.refused = Some(myc_broker::Error::Buffer(refused).into());
        }
    }
}

/// The whole messages of concatenated messages, in order; an error (and
/// the end) where what is left is not a whole message.
pub(crate) struct Messages<'a>(pub(crate) &'a [u8]);

impl<'a> Iterator for Messages<'a> {
    type Item = Result<&'a [u8], Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let Some(len) = myc_codec::peek_message_len(self.0).filter(|&len| len <= self.0.len()) else {
            self.0 = &[];
            return Some(Err(Error::NotAMessage));
        };
        let (message, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(Ok(message))
    }
}

/// How many bytes of `messages`, and how many messages, are whole messages
/// of the same relay domain as the first one (what one topic takes at once).
#[cfg(feature = "broker")]
fn same_domain_prefix(messages: &[u8]) -> (usize, usize) {
    let domain = messages.get(4);
    let (mut end, mut count) = (0, 0);
    for message in Messages(messages) {
        match message {
            Ok(message) if message.get(4) == domain => {
                end += message.len();
                count += 1;
            }
            _ => break,
        }
    }
    (end, count)
}

fn domain_of(message: &[u8]) -> Result<u8, Error> {
    message.get(4).copied().ok_or(Error::NotAMessage)
}

/// The topic of each domain (1–4 in order), shared by a path's clones and
/// replaced live ([`BrokerSide::reconfigure`]): a new name applies to
/// messages published after the change.
#[cfg(any(feature = "broker", feature = "nats"))]
#[derive(Debug, Clone)]
struct Topics(std::sync::Arc<std::sync::RwLock<[std::sync::Arc<str>; 4]>>);

#[cfg(any(feature = "broker", feature = "nats"))]
impl Topics {
    fn new(topics: [String; 4]) -> Topics {
        Topics(std::sync::Arc::new(std::sync::RwLock::new(topics.map(std::sync::Arc::from))))
    }

    fn set(&self, topics: [String; 4]) {
        *self.0.write().unwrap_or_else(std::sync::PoisonError::into_inner) = topics.map(std::sync::Arc::from);
    }

    /// Calls `with` on `message`'s topic, under the read lock (no copy):
    /// for a publish that does not wait.
    fn with<T>(&self, message: &[u8], with: impl FnOnce(&str) -> T) -> Result<T, Error> {
        let index = Topics::index(message)?;
        let topics = self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(with(&topics[index]))
    }

    /// `message`'s topic, to hold across a wait.
    fn get(&self, message: &[u8]) -> Result<std::sync::Arc<str>, Error> {
        let index = Topics::index(message)?;
        Ok(std::sync::Arc::clone(&self.0.read().unwrap_or_else(std::sync::PoisonError::into_inner)[index]))
    }

    fn index(message: &[u8]) -> Result<usize, Error> {
        let domain = domain_of(message)?;
        usize::from(domain).checked_sub(1).filter(|&index| index < 4).ok_or(Error::UnknownDomain(domain))
    }
}

/// The relay path: one relay client per domain, each started on its
/// domain's first message and identified with that message's source.
#[cfg(feature = "relay")]
#[derive(Debug)]
pub struct RelayPublisher {
    /// The sockets, buffer and reconnect settings in force: read when a
    /// domain's client starts, changed live by [`RelayPublisher::reconfigure`]
    /// (which holds this lock while it passes them to the started clients,
    /// so a client starting meanwhile sees the new ones).
    settings: std::sync::Mutex<RelaySettings>,
    clients: [OnceLock<RelayClient>; 4],
}

/// What a [`RelayPublisher`] starts its clients with.
#[cfg(feature = "relay")]
#[derive(Debug, Clone)]
struct RelaySettings {
    paths: [PathBuf; 4],
    buffer: BufferLimits,
    reconnect: myc_transport::ReconnectOptions,
}

#[cfg(feature = "relay")]
impl RelayPublisher {
    /// A relay path over the sockets `paths` (domains 1–4 in order), each
    /// client buffering up to `buffer`.
    pub fn new(paths: [PathBuf; 4], buffer: BufferLimits) -> RelayPublisher {
        let reconnect = myc_transport::ReconnectOptions::default();
        RelayPublisher {
            settings: std::sync::Mutex::new(RelaySettings { paths, buffer, reconnect }),
            clients: Default::default(),
        }
    }

    /// The relay path the settings describe.
    pub fn from_settings(settings: &myc_config::Settings) -> RelayPublisher {
        let publisher =
            RelayPublisher::new(settings.relay.by_domain().map(Clone::clone), crate::buffer_limits(&settings.broker));
        publisher.lock().reconnect = crate::reconnect_options(&settings.broker);
        publisher
    }

    /// Applies the relay sockets, buffer and reconnect settings of
    /// `settings` while running: a domain whose socket changed connects to
    /// the new one at once and writes there what the old one had not
    /// written; buffer limits apply from the next publish.
    pub fn reconfigure(&self, settings: &myc_config::Settings) {
        let mut now = self.lock();
        now.paths = settings.relay.by_domain().map(Clone::clone);
        now.buffer = crate::buffer_limits(&settings.broker);
        now.reconnect = crate::reconnect_options(&settings.broker);
        for (client, path) in self.clients.iter().zip(&now.paths) {
            if let Some(client) = client.get() {
                client.reconfigure(path, now.buffer, now.reconnect);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RelaySettings> {
        self.settings.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn client(&self, message: &[u8]) -> Result<&RelayClient, Error> {
        let domain = domain_of(message)?;
        let index =
            usize::from(domain).checked_sub(1).filter(|&index| index < 4).ok_or(Error::UnknownDomain(domain))?;
        Ok(self.clients[index].get_or_init(|| {
            let source = Source::from_u8(message.get(6).copied().unwrap_or(0));
            let settings = self.lock().clone();
            let mut options = RelayClientOptions::new(settings.paths[index].clone(), Domain::from_u8(domain), source);
            options.buffer = settings.buffer;
            options.reconnect = settings.reconnect;
            // The shim writes to the broker itself: a relay's broker link
            // must not publish these messages again.
            options.writes_to_broker = true;
            RelayClient::start(options)
        }))
    }

    fn started(&self) -> impl Iterator<Item = &RelayClient> {
        self.clients.iter().filter_map(OnceLock::get)
    }
}

#[cfg(feature = "relay")]
impl Publisher for RelayPublisher {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.client(message)?.publish(message).await?)
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.client(message)?.try_publish(message)?)
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        for client in self.started() {
            client.flush(deadline).await?;
        }
        Ok(())
    }

    fn is_connected(&self) -> bool {
        self.started().all(RelayClient::is_connected)
    }

    fn buffered_bytes(&self) -> usize {
        self.started().map(RelayClient::buffered_bytes).sum()
    }

    fn undelivered(&self) -> u64 {
        self.started()
            .map(|client| {
                client
                    .publisher_counters()
                    .published
                    .load(Ordering::Acquire)
                    .saturating_sub(client.counters().written_messages.load(Ordering::Acquire))
            })
            .sum()
    }

    fn connects(&self) -> u64 {
        self.started().map(|client| client.publisher_counters().connects.load(Ordering::Relaxed)).sum()
    }
}

/// The broker path: one broker client; each message goes to its domain's
/// topic.
#[cfg(feature = "broker")]
#[derive(Debug, Clone)]
pub struct BrokerPublisher {
    client: Client,
    topics: Topics,
}

#[cfg(feature = "broker")]
impl BrokerPublisher {
    /// A broker path over `client`, with `topics` for domains 1–4 in order.
    pub fn new(client: Client, topics: [String; 4]) -> BrokerPublisher {
        BrokerPublisher { client, topics: Topics::new(topics) }
    }

    /// The broker path the settings describe, named `client_name`.
    ///
    /// # Errors
    /// An endpoint that does not parse.
    pub fn from_settings(settings: &myc_config::Settings, client_name: &str) -> Result<BrokerPublisher, Error> {
        let options = BrokerPublisher::client_options(settings, client_name)?;
        Ok(BrokerPublisher::new(Client::start(options), settings.topics.by_domain().map(str::to_owned)))
    }

    /// The broker client options the settings describe, named `client_name`.
    ///
    /// # Errors
    /// An endpoint that does not parse.
    pub fn client_options(
        settings: &myc_config::Settings,
        client_name: &str,
    ) -> Result<myc_broker::ClientOptions, Error> {
        let broker = &settings.broker;
        let endpoint =
            myc_transport::Endpoint::parse(&broker.endpoint).map_err(|error| Error::Settings(error.to_string()))?;
        let mut options = myc_broker::ClientOptions::new(endpoint);
        client_name.clone_into(&mut options.client_name);
        broker.token.clone_into(&mut options.token);
        options.buffer = crate::buffer_limits(broker);
        options.reconnect = crate::reconnect_options(broker);
        // One deployment's settings: the broker's own limit is the one to
        // assume until its WELCOME says.
        options.broker_max_frame = broker.server.max_frame;
        Ok(options)
    }

    /// Applies the connection, buffer and topic settings of `settings`
    /// while running (a new endpoint moves every unacknowledged message
    /// there; a new topic name applies to messages published after it).
    ///
    /// # Errors
    /// An endpoint that does not parse (nothing changes).
    pub fn reconfigure(&self, settings: &myc_config::Settings) -> Result<(), Error> {
        self.client.reconfigure(&BrokerPublisher::client_options(settings, "")?);
        self.topics.set(settings.topics.by_domain().map(str::to_owned));
        Ok(())
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

#[cfg(feature = "broker")]
impl Publisher for BrokerPublisher {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        // Without waiting first, so the topic is borrowed, not copied.
        match self.topics.with(message, |topic| self.client.try_publish(topic, message))? {
            Err(myc_broker::Error::Buffer(myc_transport::PushError::Full)) => {}
            done => return Ok(done?),
        }
        let topic = self.topics.get(message)?;
        Ok(self.client.publish(&topic, message).await?)
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.topics.with(message, |topic| self.client.try_publish(topic, message))??)
    }

    fn try_publish_run(&self, mut messages: &[u8]) -> RunOutcome {
        let mut outcome = RunOutcome::default();
        // Runs of one domain (one topic) go to the client's buffer at once.
        let mut first = 0;
        while !messages.is_empty() {
            let (prefix, count) = same_domain_prefix(messages);
            if prefix == 0 {
                outcome.refused.get_or_insert(Error::NotAMessage);
                break;
            }
            let (run, rest) = messages.split_at(prefix);
            let pushed =
                self.topics.with(run, |topic| self.client.try_publish_each(topic, Messages(run).map_while(Result::ok)));
            match pushed {
                Ok(Ok(pushed)) => outcome.add_pushed(first, pushed),
                Ok(Err(error)) => {
                    outcome.refused.get_or_insert(error.into());
                }
                Err(error) => {
                    outcome.refused.get_or_insert(error);
                }
            }
            first += count;
            messages = rest;
        }
        outcome
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        Ok(self.client.flush(deadline).await?)
    }

    fn is_connected(&self) -> bool {
        self.client.state() == ConnectionState::Connected
    }

    fn buffered_bytes(&self) -> usize {
        self.client.buffered_bytes()
    }

    fn progress(&self) -> Option<Progress> {
        let counters = self.client.publisher_counters();
        Some(Progress {
            accepted: counters.published.load(Ordering::Acquire),
            acknowledged: counters.settled.load(Ordering::Acquire),
            connects: counters.connects.load(Ordering::Relaxed),
            connect_failures: counters.connect_failures.load(Ordering::Relaxed),
            resent: self.client.counters().resent.load(Ordering::Relaxed),
        })
    }
}

/// The broker path on NATS: one buffered NATS publisher; each message goes
/// to its domain's topic as subject `<prefix><topic>`.
#[cfg(feature = "nats")]
#[derive(Debug, Clone)]
pub struct NatsBrokerPublisher {
    publisher: myc_broker::nats::NatsPublisher,
    topics: Topics,
}

#[cfg(feature = "nats")]
impl NatsBrokerPublisher {
    /// A NATS path over `publisher`, with `topics` for domains 1–4.
    pub fn new(publisher: myc_broker::nats::NatsPublisher, topics: [String; 4]) -> NatsBrokerPublisher {
        NatsBrokerPublisher { publisher, topics: Topics::new(topics) }
    }

    /// The NATS path the settings describe, named `client_name`.
    ///
    /// # Errors
    /// Options NATS refuses at once.
    pub async fn from_settings(
        settings: &myc_config::Settings,
        client_name: &str,
    ) -> Result<NatsBrokerPublisher, Error> {
        let nats = &settings.nats;
        let non_empty = |text: &str| Some(text.to_owned()).filter(|text| !text.is_empty());
        let mut options = myc_broker::nats::NatsOptions::new(nats.urls.clone());
        options.subject_prefix.clone_from(&nats.subject_prefix);
        options.jetstream = nats.jetstream;
        options.stream.clone_from(&nats.stream);
        options.duplicate_window = nats.duplicate_window.get();
        options.stream_limits = myc_broker::nats::StreamLimits {
            replicas: nats.replicas as usize,
            max_bytes: nats.max_bytes,
            max_age: nats.max_age.get(),
            max_messages: nats.max_msgs,
        };
        options.credentials_file = non_empty(&nats.credentials_file).map(PathBuf::from);
        options.token = non_empty(&nats.token);
        options.tls_required = nats.tls_required;
        options.root_certificates = non_empty(&nats.root_certificates).map(PathBuf::from);
        client_name.clone_into(&mut options.client_name);
        options.buffer = crate::buffer_limits(&settings.broker);
        options.backoff_base = settings.broker.backoff_initial.get();
        options.backoff_max = settings.broker.backoff_max.get();
        let publisher = myc_broker::nats::NatsPublisher::start(options).await?;
        Ok(NatsBrokerPublisher::new(publisher, settings.topics.by_domain().map(str::to_owned)))
    }

    /// Applies the buffer, topic and server settings of `settings` while
    /// running: new `[nats] urls, token, credentials_file` connect a new
    /// client in the background and move the undelivered messages there.
    ///
    /// # Errors
    /// A credentials file that cannot be read (nothing changes).
    pub fn reconfigure(&self, settings: &myc_config::Settings) -> Result<(), Error> {
        let nats = &settings.nats;
        let non_empty = |text: &str| Some(text.to_owned()).filter(|text| !text.is_empty());
        let credentials = non_empty(&nats.credentials_file).map(PathBuf::from);
        if let Some(path) = &credentials
            && let Err(error) = std::fs::metadata(path)
        {
            return Err(Error::Settings(format!("NATS credentials {}: {error}", path.display())));
        }
        self.publisher.set_buffer_limits(crate::buffer_limits(&settings.broker));
        self.topics.set(settings.topics.by_domain().map(str::to_owned));
        let (publisher, urls, token) = (self.publisher.clone(), nats.urls.clone(), non_empty(&nats.token));
        tokio::spawn(async move {
            if let Err(error) = publisher.set_servers(urls, token, credentials).await {
                tracing::warn!(%error, "the new NATS servers were not applied");
            }
        });
        Ok(())
    }

    /// The NATS publisher underneath.
    pub fn publisher(&self) -> &myc_broker::nats::NatsPublisher {
        &self.publisher
    }
}

#[cfg(feature = "nats")]
impl Publisher for NatsBrokerPublisher {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        match self.topics.with(message, |topic| self.publisher.try_publish(topic, message))? {
            Err(myc_broker::Error::Buffer(myc_transport::PushError::Full)) => {}
            done => return Ok(done?),
        }
        let topic = self.topics.get(message)?;
        Ok(self.publisher.publish(&topic, message).await?)
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.topics.with(message, |topic| self.publisher.try_publish(topic, message))??)
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        Ok(self.publisher.flush(deadline).await?)
    }

    fn is_connected(&self) -> bool {
        self.publisher.is_connected()
    }

    fn buffered_bytes(&self) -> usize {
        self.publisher.buffered_bytes()
    }

    fn broker_label(&self) -> &'static str {
        "nats"
    }

    fn progress(&self) -> Option<Progress> {
        let counters = self.publisher.publisher_counters();
        Some(Progress {
            accepted: counters.published.load(Ordering::Acquire),
            acknowledged: counters.settled.load(Ordering::Acquire),
            // NATS reconnects inside async-nats; the breaker sees refusals only.
            connects: 0,
            connect_failures: 0,
            resent: self.publisher.counters().retried.load(Ordering::Relaxed),
        })
    }
}

/// The relay side the settings choose: the relay, or `Unavailable` in a
/// build without the `relay` feature.
#[allow(
    clippy::large_enum_variant,
    reason = "one per service, built once; a box would cost a pointer chase per message"
)]
#[derive(Debug)]
pub enum RelaySide {
    /// The relay.
    #[cfg(feature = "relay")]
    Relay(RelayPublisher),
    /// Left out of this build: every message is refused.
    Unavailable,
}

impl RelaySide {
    /// The relay path the settings describe (unavailable without `relay`).
    pub fn from_settings(settings: &myc_config::Settings) -> RelaySide {
        #[cfg(feature = "relay")]
        {
            RelaySide::Relay(RelayPublisher::from_settings(settings))
        }
        #[cfg(not(feature = "relay"))]
        {
            let _ = settings;
            RelaySide::Unavailable
        }
    }
}

/// The connection, buffer and topic settings; NATS takes the buffer and
/// topics (its connection applies at the next start); `false` when the
/// build has no broker path.
impl crate::live::Reconfigure for BrokerSide {
    #[cfg_attr(
        not(any(feature = "broker", feature = "nats")),
        allow(unused_variables, reason = "no broker client to reconfigure")
    )]
    fn reconfigure(&self, settings: &myc_config::Settings) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.reconfigure(settings).map(|()| true),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.reconfigure(settings).map(|()| true),
            BrokerSide::Unavailable(_) => Ok(false),
        }
    }
}

/// The relay sockets, buffer and reconnect settings; `false` when the
/// build has no relay path.
impl crate::live::Reconfigure for RelaySide {
    #[cfg_attr(not(feature = "relay"), allow(unused_variables, reason = "no relay client to reconfigure"))]
    fn reconfigure(&self, settings: &myc_config::Settings) -> Result<bool, Error> {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(path) => crate::live::Reconfigure::reconfigure(path, settings),
            RelaySide::Unavailable => Ok(false),
        }
    }
}

#[cfg(feature = "relay")]
impl crate::live::Reconfigure for RelayPublisher {
    fn reconfigure(&self, settings: &myc_config::Settings) -> Result<bool, Error> {
        RelayPublisher::reconfigure(self, settings);
        Ok(true)
    }
}

#[cfg(feature = "broker")]
impl crate::live::Reconfigure for BrokerPublisher {
    fn reconfigure(&self, settings: &myc_config::Settings) -> Result<bool, Error> {
        BrokerPublisher::reconfigure(self, settings).map(|()| true)
    }
}

#[cfg_attr(not(feature = "relay"), allow(unused_variables, reason = "no path to hand them to"))]
impl Publisher for RelaySide {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(path) => path.publish(message).await,
            RelaySide::Unavailable => Err(Unavailable::RELAY.error()),
        }
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(path) => path.try_publish(message),
            RelaySide::Unavailable => Err(Unavailable::RELAY.error()),
        }
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(path) => path.flush(deadline).await,
            RelaySide::Unavailable => Ok(()),
        }
    }

    fn is_connected(&self) -> bool {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(path) => path.is_connected(),
            RelaySide::Unavailable => false,
        }
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(path) => path.buffered_bytes(),
            RelaySide::Unavailable => 0,
        }
    }

    fn unavailable(&self) -> Option<Unavailable> {
        match self {
            #[cfg(feature = "relay")]
            RelaySide::Relay(_) => None,
            RelaySide::Unavailable => Some(Unavailable::RELAY),
        }
    }
}

/// The broker side the settings choose (`broker.backend`): the Mycelium
/// broker or NATS, or `Unavailable` when the build left that backend out.
#[allow(
    clippy::large_enum_variant,
    reason = "one per service, built once; a box would cost a pointer chase per message"
)]
#[derive(Debug, Clone)]
pub enum BrokerSide {
    /// The Mycelium broker.
    #[cfg(feature = "broker")]
    Mycelium(BrokerPublisher),
    /// A NATS server or cluster.
    #[cfg(feature = "nats")]
    Nats(NatsBrokerPublisher),
    /// The backend the settings name is left out of this build: every
    /// message is refused.
    Unavailable(Unavailable),
}

impl BrokerSide {
    /// The backend `broker.backend` names, named `client_name`; unavailable
    /// when the build lacks its feature (`broker` or `nats`).
    ///
    /// # Errors
    /// Settings the backend cannot use.
    pub async fn from_settings(settings: &myc_config::Settings, client_name: &str) -> Result<BrokerSide, Error> {
        Ok(match settings.broker.backend {
            #[cfg(feature = "broker")]
            myc_config::Backend::Mycelium => {
                BrokerSide::Mycelium(BrokerPublisher::from_settings(settings, client_name)?)
            }
            #[cfg(not(feature = "broker"))]
            myc_config::Backend::Mycelium => BrokerSide::Unavailable(Unavailable::BROKER),
            #[cfg(feature = "nats")]
            myc_config::Backend::Nats => {
                BrokerSide::Nats(NatsBrokerPublisher::from_settings(settings, client_name).await?)
            }
            #[cfg(not(feature = "nats"))]
            myc_config::Backend::Nats => {
                let _ = client_name;
                BrokerSide::Unavailable(Unavailable::NATS)
            }
        })
    }
}

#[cfg_attr(not(any(feature = "broker", feature = "nats")), allow(unused_variables, reason = "no path to hand them to"))]
impl Publisher for BrokerSide {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.publish(message).await,
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.publish(message).await,
            BrokerSide::Unavailable(missing) => Err(missing.error()),
        }
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.try_publish(message),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.try_publish(message),
            BrokerSide::Unavailable(missing) => Err(missing.error()),
        }
    }

    fn try_publish_run(&self, messages: &[u8]) -> RunOutcome {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.try_publish_run(messages),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.try_publish_run(messages),
            BrokerSide::Unavailable(missing) => RunOutcome { refused: Some(missing.error()), ..RunOutcome::default() },
        }
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.flush(deadline).await,
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.flush(deadline).await,
            BrokerSide::Unavailable(_) => Ok(()),
        }
    }

    fn is_connected(&self) -> bool {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.is_connected(),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.is_connected(),
            BrokerSide::Unavailable(_) => false,
        }
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.buffered_bytes(),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.buffered_bytes(),
            BrokerSide::Unavailable(_) => 0,
        }
    }

    fn unavailable(&self) -> Option<Unavailable> {
        match self {
            BrokerSide::Unavailable(missing) => Some(*missing),
            #[allow(unreachable_patterns, reason = "every other variant is a real path; none in some builds")]
            _ => None,
        }
    }

    fn broker_label(&self) -> &'static str {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.broker_label(),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.broker_label(),
            BrokerSide::Unavailable(missing) if *missing == Unavailable::NATS => "nats",
            BrokerSide::Unavailable(_) => "broker",
        }
    }

    fn progress(&self) -> Option<Progress> {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.progress(),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.progress(),
            BrokerSide::Unavailable(_) => None,
        }
    }

    fn undelivered(&self) -> u64 {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.undelivered(),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.undelivered(),
            BrokerSide::Unavailable(_) => 0,
        }
    }

    fn connects(&self) -> u64 {
        match self {
            #[cfg(feature = "broker")]
            BrokerSide::Mycelium(path) => path.connects(),
            #[cfg(feature = "nats")]
            BrokerSide::Nats(path) => path.connects(),
            BrokerSide::Unavailable(_) => 0,
        }
    }
}
