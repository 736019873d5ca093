//! The broker client's connection task: the one owner of the
//! [`ClientSession`]. It is the `transport::Link` that
//! `transport::reconnect` drives: HELLO/WELCOME per attempt (with the
//! endpoint and token in force), then one loop per connection that reads
//! the broker's frames into the session, takes commands from the handles,
//! and writes publish chunks from the outbox while the in-flight window has
//! room, doing what the session answers.
//!
//! It deliberately keeps no protocol state of its own: ACK counts,
//! unacknowledged chunks and subscriptions are the session's; the task holds
//! only what does I/O (sockets, channels, the outbox).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use myc_transport::{Endpoint, FrameReader, LengthPrefixed, Link};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch};

use super::session::{self, ClientSession, Received};
use super::{DeliveryBatch, Shared};
use crate::Error;
use crate::protocol::{self, ClientOp, ServerOp};

/// What a handle asks of the connection task.
pub(super) enum Command {
    /// A new subscription (topic and group checked): deliveries go to `tx`,
    /// and `on_active` fires at its first SUBACK.
    Subscribe { topic: Bytes, group: Bytes, tx: mpsc::Sender<DeliveryBatch>, on_active: oneshot::Sender<()> },
}

/// Where and as whom the client connects; handles change it through a
/// `watch` channel ([`super::Client::reconfigure`]), the task reads it at
/// each attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Peer {
    /// Where the broker is.
    pub(super) endpoint: Endpoint,
    /// Sent in HELLO.
    pub(super) token: String,
}

/// Where one subscription's deliveries go.
struct Sink {
    tx: mpsc::Sender<DeliveryBatch>,
    /// Taken at the first SUBACK.
    on_active: Option<oneshot::Sender<()>>,
}

type Reader = FrameReader<Box<dyn AsyncRead + Send + Unpin>, LengthPrefixed>;
type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// The broker side of [`myc_transport::reconnect`], owning the session.
pub(super) struct BrokerLink {
    /// The outbox publishes come from, and the counters handles read.
    shared: Arc<Shared>,
    /// Sent in HELLO.
    client_name: String,
    /// Largest frame read.
    max_frame: usize,
    /// The endpoint and token in force.
    peer: watch::Receiver<Peer>,
    /// Commands from the handles; closed once every handle is gone.
    commands: mpsc::UnboundedReceiver<Command>,
    /// Everything the protocol remembers, across connections.
    session: ClientSession,
    /// Where each subscription's deliveries go, by id.
    sinks: HashMap<u32, Sink>,
    /// What the last batch read asks for (reused).
    received: Received,
    /// Frames to write that the session produced (reused).
    out: BytesMut,
    /// Rate limit of the warnings about broker ERRORs that keep the
    /// connection (a refused publish can repeat at line rate).
    error_log: myc_transport::OnceASecond,
    /// Set once a WELCOME lowered the broker's `max_frame` under what
    /// buffered publishes were checked against: the frame length allowed
    /// now, and every chunk written or resent is filtered against it.
    filter_over: Option<usize>,
}

impl BrokerLink {
    pub(super) fn new(
        shared: Arc<Shared>,
        client_name: String,
        max_frame: usize,
        max_in_flight: usize,
        peer: watch::Receiver<Peer>,
        commands: mpsc::UnboundedReceiver<Command>,
    ) -> BrokerLink {
        BrokerLink {
            shared,
            client_name,
            max_frame,
            peer,
            commands,
            session: ClientSession::new(max_in_flight),
            sinks: HashMap::new(),
            received: Received::default(),
            out: BytesMut::new(),
            error_log: myc_transport::OnceASecond::default(),
            filter_over: None,
        }
    }

    /// Records a command; a SUBSCRIBE it makes lands in `out` while connected.
    fn command(&mut self, command: Command) {
        match command {
            Command::Subscribe { topic, group, tx, on_active } => {
                let sub_id = self.session.subscribe(topic, group, &mut self.out);
                self.sinks.insert(sub_id, Sink { tx, on_active: Some(on_active) });
            }
        }
    }

    /// Settles as failed `frames` publishes (`bytes` long) left unsent as
    /// longer than the broker now accepts, and says so.
    fn drop_too_large(&self, frames: usize, bytes: usize) {
        if frames == 0 {
            return;
        }
        self.shared.outbox.settle(frames, bytes, true);
        let total = self.shared.counters.failed_too_large.fetch_add(frames as u64, Ordering::Relaxed) + frames as u64;
        if self.error_log.ready() {
            tracing::warn!(
                dropped = frames,
                failed_too_large = total,
                max_frame = self.filter_over.unwrap_or_default().saturating_sub(4),
                "publishes longer than the broker's max_frame dropped (it lowered its limit after they were buffered)"
            );
        }
    }

    /// Does what a batch read asked for: counts refusals, settles, confirms
    /// subscriptions, logs, then hands deliveries over (waiting for room:
    /// a subscriber that does not keep up paces its connection).
    async fn act_on_received(&mut self) {
        let received = &mut self.received;
        if received.refused > 0 {
            // Counted before the ACK that covers the refused publish settles
            // it, so a flush that sees it settled sees the refusal too.
            self.shared.counters.failed_unauthorized.fetch_add(received.refused, Ordering::Relaxed);
        }
        if received.settled_frames > 0 {
            for chunk in received.recycle.drain(..) {
                self.shared.outbox.recycle(chunk);
            }
            self.shared.outbox.settle(received.settled_frames, received.settled_bytes, false);
        }
        for sub_id in &received.activated {
            if let Some(on_active) = self.sinks.get_mut(sub_id).and_then(|sink| sink.on_active.take()) {
                let _ = on_active.send(());
            }
        }
        if !received.errors.is_empty() && self.error_log.ready() {
            // One line for the lot: a batch of refusals is one event.
            let failed = self.shared.counters.failed_unauthorized.load(Ordering::Relaxed);
            let (code, message) = &received.errors[0];
            tracing::warn!(
                code = code.name(),
                %message,
                errors_in_batch = received.errors.len(),
                failed_unauthorized = failed,
                "broker error (logged at most once a second)"
            );
        }
        for (sub_id, batch) in received.deliveries.drain(..) {
            if let Some(sink) = self.sinks.get(&sub_id) {
                let _ = sink.tx.send(batch).await;
            }
        }
    }
}

fn write_error(source: std::io::Error) -> Error {
    Error::Transport(myc_transport::Error::Io { context: "write to broker".to_owned(), source })
}

impl Link for BrokerLink {
    type Session = (Reader, Writer);
    type Error = Error;

    const KEEP_TRYING: bool = true;

    fn peer(&self) -> String {
        self.peer.borrow().endpoint.to_string()
    }

    async fn connect(&mut self) -> Result<(Reader, Writer), Error> {
        // A session dropped by `reconnect_now` never saw its end.
        self.session.disconnected();
        self.out.clear();
        // Subscriptions made while away go out with the connection.
        while let Ok(command) = self.commands.try_recv() {
            self.command(command);
        }
        let Peer { endpoint, token } = self.peer.borrow_and_update().clone();
        let stream = endpoint.connect().await?;
        let (read_half, mut write_half) = stream.into_split();
        let mut frame = BytesMut::new();
        ClientOp::Hello { version: protocol::VERSION, flags: 0, client_name: self.client_name.clone(), token }
            .encode(&mut frame)?;
        write_half
            .write_all(&frame)
            .await
            .map_err(|source| myc_transport::Error::Io { context: "write HELLO".to_owned(), source })?;
        let mut reader = FrameReader::new(read_half, LengthPrefixed { max_body: self.max_frame });
        let Some(frame) = reader.read_frame().await? else {
            return Err(Error::Protocol("closed before WELCOME".to_owned()));
        };
        match ServerOp::decode(frame.slice(4..)).map_err(|error| Error::Protocol(error.to_string()))? {
            ServerOp::Welcome { max_frame, .. } => {
                let allowed = super::buffered_frame_limit(usize::try_from(max_frame).unwrap_or(usize::MAX));
                let before = self.shared.outbox.set_max_frame(allowed);
                if allowed < before || self.filter_over.is_some() {
                    self.filter_over = Some(allowed);
                }
                Ok((reader, write_half))
            }
            ServerOp::Error { code, message } => Err(Error::Broker { code, message }),
            other => Err(Error::Protocol(format!("expected WELCOME, got {other:?}"))),
        }
    }

    async fn run(&mut self, (mut reader, mut writer): (Reader, Writer)) -> Result<(), Error> {
        // Subscriptions first, then resend what was never acknowledged.
        self.out.clear();
        let resent = self.session.connected(&mut self.out, self.filter_over);
        self.shared.counters.resent.fetch_add(resent.frames, Ordering::Relaxed);
        self.drop_too_large(resent.dropped_frames, resent.dropped_bytes);
        writer.write_all(&self.out).await.map_err(write_error)?;
        self.out.clear();
        let shared = Arc::clone(&self.shared);
        let outbox = &shared.outbox;
        loop {
            // Each branch is cancel-safe: a read keeps what it read in the
            // reader's buffer, a chunk is taken only when ready, and a
            // command only when received.
            tokio::select! {
                batch = reader.read_batch() => {
                    let Some(batch) = batch? else {
                        return Err(Error::Protocol("broker closed the connection".to_owned()));
                    };
                    let handled = self.session.receive(&batch, &mut self.received);
                    self.act_on_received().await;
                    handled?;
                }
                Some(command) = self.commands.recv() => {
                    self.command(command);
                    if !self.out.is_empty() {
                        writer.write_all(&self.out).await.map_err(write_error)?;
                        self.out.clear();
                    }
                }
                (chunk, frames) = outbox.next_chunk(), if self.session.has_room() => {
                    let (chunk, frames) =
                        match self.filter_over.and_then(|max_len| session::without_oversized(&chunk, max_len)) {
                            Some(kept) => {
                                self.drop_too_large(kept.dropped_frames, kept.dropped_bytes);
                                (kept.chunk, kept.frames)
                            }
                            None => (chunk, frames),
                        };
                    self.session.sent(chunk.clone(), frames);
                    writer.write_all(&chunk).await.map_err(write_error)?;
                }
            }
        }
    }
}
