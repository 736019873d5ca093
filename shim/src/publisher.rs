//! The one interface producers publish through, and its two transports:
//! [`RelayPublisher`] (a relay client per domain, started on the domain's
//! first message) and [`BrokerPublisher`] (one broker client; the message's
//! `relay_domain` picks the topic from the topic map). Both take the
//! producer's bytes unchanged.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use myc_broker::{Client, ConnectionState};
use myc_codec::{Domain, Source};
use myc_relay_compat::{RelayClient, RelayClientOptions};
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

    /// Waits until everything published so far is delivered (written to the
    /// relay, acknowledged by the broker), or `deadline` passes.
    fn flush(&self, deadline: Duration) -> impl Future<Output = Result<(), Error>> + Send;

    /// Whether the path is connected now.
    fn is_connected(&self) -> bool;

    /// Bytes buffered on the path now.
    fn buffered_bytes(&self) -> usize;

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

fn domain_of(message: &[u8]) -> Result<u8, Error> {
    message.get(4).copied().ok_or(Error::NotAMessage)
}

/// The relay path: one relay client per domain, each started on its
/// domain's first message and identified with that message's source.
#[derive(Debug)]
pub struct RelayPublisher {
    paths: [PathBuf; 4],
    buffer: BufferLimits,
    clients: [OnceLock<RelayClient>; 4],
}

impl RelayPublisher {
    /// A relay path over the sockets `paths` (domains 1–4 in order), each
    /// client buffering up to `buffer`.
    pub fn new(paths: [PathBuf; 4], buffer: BufferLimits) -> RelayPublisher {
        RelayPublisher { paths, buffer, clients: Default::default() }
    }

    /// The relay path the settings describe.
    pub fn from_settings(settings: &myc_config::Settings) -> RelayPublisher {
        RelayPublisher::new(settings.relay.by_domain().map(Clone::clone), crate::buffer_limits(&settings.broker))
    }

    fn client(&self, message: &[u8]) -> Result<&RelayClient, Error> {
        let domain = domain_of(message)?;
        let index =
            usize::from(domain).checked_sub(1).filter(|&index| index < 4).ok_or(Error::UnknownDomain(domain))?;
        Ok(self.clients[index].get_or_init(|| {
            let source = Source::from_u8(message.get(6).copied().unwrap_or(0));
            let mut options = RelayClientOptions::new(self.paths[index].clone(), Domain::from_u8(domain), source);
            options.buffer = self.buffer;
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
#[derive(Debug, Clone)]
pub struct BrokerPublisher {
    client: Client,
    topics: [String; 4],
}

impl BrokerPublisher {
    /// A broker path over `client`, with `topics` for domains 1–4 in order.
    pub fn new(client: Client, topics: [String; 4]) -> BrokerPublisher {
        BrokerPublisher { client, topics }
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
        Ok(options)
    }

    /// Applies the connection settings of `settings` while running (a new
    /// endpoint moves every unacknowledged message there).
    ///
    /// # Errors
    /// An endpoint that does not parse (nothing changes).
    pub fn reconfigure(&self, settings: &myc_config::Settings) -> Result<(), Error> {
        self.client.reconfigure(&BrokerPublisher::client_options(settings, "")?);
        Ok(())
    }

    /// The client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn topic(&self, message: &[u8]) -> Result<&str, Error> {
        let domain = domain_of(message)?;
        let index =
            usize::from(domain).checked_sub(1).filter(|&index| index < 4).ok_or(Error::UnknownDomain(domain))?;
        Ok(&self.topics[index])
    }
}

impl Publisher for BrokerPublisher {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.client.publish(self.topic(message)?, message).await?)
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.client.try_publish(self.topic(message)?, message)?)
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
#[derive(Debug, Clone)]
pub struct NatsBrokerPublisher {
    publisher: myc_broker::nats::NatsPublisher,
    topics: [String; 4],
}

impl NatsBrokerPublisher {
    /// A NATS path over `publisher`, with `topics` for domains 1–4.
    pub fn new(publisher: myc_broker::nats::NatsPublisher, topics: [String; 4]) -> NatsBrokerPublisher {
        NatsBrokerPublisher { publisher, topics }
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

    /// The NATS publisher underneath.
    pub fn publisher(&self) -> &myc_broker::nats::NatsPublisher {
        &self.publisher
    }

    fn topic(&self, message: &[u8]) -> Result<&str, Error> {
        let domain = domain_of(message)?;
        let index =
            usize::from(domain).checked_sub(1).filter(|&index| index < 4).ok_or(Error::UnknownDomain(domain))?;
        Ok(&self.topics[index])
    }
}

impl Publisher for NatsBrokerPublisher {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.publisher.publish(self.topic(message)?, message).await?)
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        Ok(self.publisher.try_publish(self.topic(message)?, message)?)
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

/// The broker side the settings choose (`broker.backend`): the Mycelium
/// broker or NATS.
#[derive(Debug, Clone)]
pub enum BrokerSide {
    /// The Mycelium broker.
    Mycelium(BrokerPublisher),
    /// A NATS server or cluster.
    Nats(NatsBrokerPublisher),
}

impl BrokerSide {
    /// The backend `broker.backend` names, named `client_name`.
    ///
    /// # Errors
    /// Settings the backend cannot use.
    pub async fn from_settings(settings: &myc_config::Settings, client_name: &str) -> Result<BrokerSide, Error> {
        Ok(match settings.broker.backend {
            myc_config::Backend::Mycelium => {
                BrokerSide::Mycelium(BrokerPublisher::from_settings(settings, client_name)?)
            }
            myc_config::Backend::Nats => {
                BrokerSide::Nats(NatsBrokerPublisher::from_settings(settings, client_name).await?)
            }
        })
    }
}

impl BrokerSide {
    /// Applies changed connection settings while running; `false` when
    /// this backend takes them only at the next start (NATS).
    ///
    /// # Errors
    /// Settings the backend cannot use (nothing changes).
    pub fn reconfigure(&self, settings: &myc_config::Settings) -> Result<bool, Error> {
        match self {
            BrokerSide::Mycelium(path) => path.reconfigure(settings).map(|()| true),
            BrokerSide::Nats(_) => Ok(false),
        }
    }
}

impl Publisher for BrokerSide {
    async fn publish(&self, message: &[u8]) -> Result<(), Error> {
        match self {
            BrokerSide::Mycelium(path) => path.publish(message).await,
            BrokerSide::Nats(path) => path.publish(message).await,
        }
    }

    fn try_publish(&self, message: &[u8]) -> Result<(), Error> {
        match self {
            BrokerSide::Mycelium(path) => path.try_publish(message),
            BrokerSide::Nats(path) => path.try_publish(message),
        }
    }

    async fn flush(&self, deadline: Duration) -> Result<(), Error> {
        match self {
            BrokerSide::Mycelium(path) => path.flush(deadline).await,
            BrokerSide::Nats(path) => path.flush(deadline).await,
        }
    }

    fn is_connected(&self) -> bool {
        match self {
            BrokerSide::Mycelium(path) => path.is_connected(),
            BrokerSide::Nats(path) => path.is_connected(),
        }
    }

    fn buffered_bytes(&self) -> usize {
        match self {
            BrokerSide::Mycelium(path) => path.buffered_bytes(),
            BrokerSide::Nats(path) => path.buffered_bytes(),
        }
    }
    fn progress(&self) -> Option<Progress> {
        match self {
            BrokerSide::Mycelium(path) => path.progress(),
            BrokerSide::Nats(path) => path.progress(),
        }
    }

    fn undelivered(&self) -> u64 {
        match self {
            BrokerSide::Mycelium(path) => path.undelivered(),
            BrokerSide::Nats(path) => path.undelivered(),
        }
    }

    fn connects(&self) -> u64 {
        match self {
            BrokerSide::Mycelium(path) => path.connects(),
            BrokerSide::Nats(path) => path.connects(),
        }
    }
}
