//! The one interface producers publish through, and its two transports:
//! [`RelayPublisher`] (a relay client per domain, started on the domain's
//! first message) and [`BrokerPublisher`] (one broker client; the message's
//! `relay_domain` picks the topic from the topic map). Both take the
//! producer's bytes unchanged.

use std::future::Future;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use broker::{Client, ConnectionState};
use codec::{Domain, Source};
use relay_compat::{RelayClient, RelayClientOptions};
use transport::BufferLimits;

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
}

/// Splits concatenated whole messages.
///
/// # Errors
/// [`Error::NotAMessage`] when the bytes do not end on a message boundary.
pub fn split(mut messages: &[u8]) -> Result<Vec<&[u8]>, Error> {
    let mut out = Vec::new();
    while !messages.is_empty() {
        let len = codec::peek_message_len(messages).filter(|&len| len <= messages.len()).ok_or(Error::NotAMessage)?;
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
    pub fn from_settings(settings: &config::Settings) -> RelayPublisher {
        let relay = &settings.relay;
        let paths = [&relay.market_data, &relay.signal, &relay.execution, &relay.system].map(Clone::clone);
        RelayPublisher::new(paths, crate::buffer_limits(&settings.broker))
    }

    fn client(&self, message: &[u8]) -> Result<&RelayClient, Error> {
        let domain = domain_of(message)?;
        let index =
            usize::from(domain).checked_sub(1).filter(|&index| index < 4).ok_or(Error::UnknownDomain(domain))?;
        Ok(self.clients[index].get_or_init(|| {
            let source = Source::from_u8(message.get(6).copied().unwrap_or(0));
            let mut options = RelayClientOptions::new(self.paths[index].clone(), Domain::from_u8(domain), source);
            options.buffer = self.buffer;
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
    pub fn from_settings(settings: &config::Settings, client_name: &str) -> Result<BrokerPublisher, Error> {
        let broker = &settings.broker;
        let endpoint =
            transport::Endpoint::parse(&broker.endpoint).map_err(|error| Error::Settings(error.to_string()))?;
        let mut options = broker::ClientOptions::new(endpoint);
        client_name.clone_into(&mut options.client_name);
        broker.token.clone_into(&mut options.token);
        options.buffer = crate::buffer_limits(broker);
        options.backoff_base = broker.backoff_initial.get();
        options.backoff_max = broker.backoff_max.get();
        options.max_reconnects = Some(broker.max_reconnects).filter(|&n| n > 0);
        options.connect_timeout = broker.connect_timeout.get();
        let topics = &settings.topics;
        let topics = [&topics.market_data, &topics.signal, &topics.execution, &topics.system].map(Clone::clone);
        Ok(BrokerPublisher::new(Client::start(options), topics))
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
}
