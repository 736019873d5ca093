//! The Mycelium wire protocol, version 1 (described in
//! `docs/broker-protocol.md`), sans-IO: every op decoded from a frame body
//! and encoded into a buffer, with typed errors; borrowed views of the hot
//! frames ([`PublishRef`], [`DeliverRef`], [`frames`]). No other module parses
//! a frame, and no encoder cuts a field to fit: a string longer than its
//! length field is an [`EncodeError`], and the hot-path encoders take a
//! [`TopicRef`], checked once.
//!
//! Payloads and topics are `Bytes` slices of the frame they came in, so the
//! broker forwards a payload to every subscriber without copying it. This
//! module deliberately does not validate topic *rules* (that is [`Topic`]'s
//! job, a non-fatal error) nor track connection state.

use bytes::{BufMut, Bytes, BytesMut};

/// Protocol version.
pub const VERSION: u16 = 1;
/// Default `max_frame`: 1 MiB + 1 KiB.
pub const DEFAULT_MAX_FRAME: usize = 1_049_600;
/// The message of the ERROR `unauthorized` that refuses a PUBLISH (the
/// client tells it from a refused SUBSCRIBE by this text, both being the
/// same code).
pub const PUBLISH_REFUSED: &str = "this client may not publish to that topic";
/// The largest configurable `max_frame`: 16 MiB.
pub const MAX_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Client → broker op codes.
pub mod op {
    /// HELLO
    pub const HELLO: u8 = 0x01;
    /// PUBLISH
    pub const PUBLISH: u8 = 0x02;
    /// SUBSCRIBE
    pub const SUBSCRIBE: u8 = 0x03;
    /// UNSUBSCRIBE
    pub const UNSUBSCRIBE: u8 = 0x04;
    /// PING
    pub const PING: u8 = 0x05;
    /// WELCOME
    pub const WELCOME: u8 = 0x81;
    /// SUBACK
    pub const SUBACK: u8 = 0x83;
    /// UNSUBACK
    pub const UNSUBACK: u8 = 0x84;
    /// PONG
    pub const PONG: u8 = 0x85;
    /// ACK
    pub const ACK: u8 = 0x86;
    /// DELIVER
    pub const DELIVER: u8 = 0x87;
    /// ERROR
    pub const ERROR: u8 = 0x88;
}

/// ERROR codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 1: malformed frame (fatal).
    Protocol,
    /// 2: frame over `max_frame` (fatal).
    FrameTooLarge,
    /// 3: topic breaks the rules (not fatal).
    BadTopic,
    /// 4: wrong or missing token (fatal).
    Unauthorized,
    /// 5: first frame was not HELLO (fatal).
    HelloRequired,
    /// 6: over the outbound limit (fatal).
    SlowConsumer,
    /// 7: the broker is stopping (fatal).
    ShuttingDown,
    /// 8: HELLO with another version (fatal).
    UnsupportedVersion,
    /// 9: over the subscriptions limit (not fatal).
    TooManySubscriptions,
    /// 10: UNSUBSCRIBE of an unknown id (not fatal).
    UnknownSubscription,
    /// A code this version does not know.
    Other(u16),
}

impl ErrorCode {
    /// The wire code.
    pub fn code(self) -> u16 {
        match self {
            ErrorCode::Protocol => 1,
            ErrorCode::FrameTooLarge => 2,
            ErrorCode::BadTopic => 3,
            ErrorCode::Unauthorized => 4,
            ErrorCode::HelloRequired => 5,
            ErrorCode::SlowConsumer => 6,
            ErrorCode::ShuttingDown => 7,
            ErrorCode::UnsupportedVersion => 8,
            ErrorCode::TooManySubscriptions => 9,
            ErrorCode::UnknownSubscription => 10,
            ErrorCode::Other(code) => code,
        }
    }

    /// The code for a wire value.
    pub fn from_code(code: u16) -> ErrorCode {
        match code {
            1 => ErrorCode::Protocol,
            2 => ErrorCode::FrameTooLarge,
            3 => ErrorCode::BadTopic,
            4 => ErrorCode::Unauthorized,
            5 => ErrorCode::HelloRequired,
            6 => ErrorCode::SlowConsumer,
            7 => ErrorCode::ShuttingDown,
            8 => ErrorCode::UnsupportedVersion,
            9 => ErrorCode::TooManySubscriptions,
            10 => ErrorCode::UnknownSubscription,
            other => ErrorCode::Other(other),
        }
    }

    /// The spec's name (`protocol`, `frame_too_large`, …).
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Protocol => "protocol",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::BadTopic => "bad_topic",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::TooManySubscriptions => "too_many_subscriptions",
            ErrorCode::UnknownSubscription => "unknown_subscription",
            ErrorCode::Other(_) => "unknown",
        }
    }

    /// Whether the broker closes the connection after sending it.
    pub fn is_fatal(self) -> bool {
        matches!(
            self,
            ErrorCode::Protocol
                | ErrorCode::FrameTooLarge
                | ErrorCode::Unauthorized
                | ErrorCode::HelloRequired
                | ErrorCode::SlowConsumer
                | ErrorCode::ShuttingDown
                | ErrorCode::UnsupportedVersion
        )
    }
}

/// An op that cannot be encoded: a string longer than its length field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} of {len} bytes does not fit its length field (at most {max})")]
pub struct EncodeError {
    /// The field (`topic`, `group`, `client_name`, …).
    pub field: &'static str,
    /// Its length.
    pub len: usize,
    /// The most its length field holds.
    pub max: usize,
}

/// A frame body that does not parse as its op.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The body ends early: `need` more bytes at body offset `offset`.
    #[error("truncated body: {need} more byte(s) needed at offset {offset}")]
    Truncated {
        /// Body offset where bytes are missing.
        offset: usize,
        /// How many more are needed.
        need: usize,
    },
    /// Bytes left after the last field of a fixed-shape op.
    #[error("{extra} unexpected byte(s) after the body of op 0x{op:02x}")]
    Trailing {
        /// The op.
        op: u8,
        /// How many bytes were left.
        extra: usize,
    },
    /// An op code this direction does not have.
    #[error("unknown op 0x{0:02x}")]
    UnknownOp(u8),
    /// An empty body (no op byte).
    #[error("empty frame body")]
    Empty,
    /// A string field that is not UTF-8.
    #[error("string at offset {offset} is not UTF-8")]
    BadUtf8 {
        /// Body offset of the string's bytes.
        offset: usize,
    },
}

/// Client → broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientOp {
    /// Opens the session.
    Hello {
        /// Protocol version (1).
        version: u16,
        /// Flags (0).
        flags: u16,
        /// The client's name.
        client_name: String,
        /// Token; empty for none.
        token: String,
    },
    /// Publishes `payload` on `topic`.
    Publish {
        /// Topic bytes (rules checked by [`Topic::new`]).
        topic: Bytes,
        /// The payload, unchanged.
        payload: Bytes,
    },
    /// Subscribes (`group` empty: fan-out).
    Subscribe {
        /// Client-chosen id.
        sub_id: u32,
        /// Topic.
        topic: Bytes,
        /// Group name, or empty.
        group: Bytes,
    },
    /// Ends a subscription.
    Unsubscribe {
        /// The id given at SUBSCRIBE.
        sub_id: u32,
    },
    /// A barrier: answered with PONG after every earlier frame is processed.
    Ping {
        /// Echoed in the PONG.
        nonce: u64,
    },
}

/// Broker → client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerOp {
    /// Answers HELLO.
    Welcome {
        /// Protocol version.
        version: u16,
        /// The broker's id.
        server_id: String,
        /// The broker's `max_frame`.
        max_frame: u32,
    },
    /// Confirms a SUBSCRIBE.
    SubAck {
        /// The id.
        sub_id: u32,
    },
    /// Confirms an UNSUBSCRIBE.
    UnsubAck {
        /// The id.
        sub_id: u32,
    },
    /// Answers PING.
    Pong {
        /// The PING's nonce.
        nonce: u64,
    },
    /// Cumulative count of this connection's PUBLISH frames that are done.
    Ack {
        /// Count since the connection started.
        count: u64,
    },
    /// A message for a subscription.
    Deliver {
        /// The subscription.
        sub_id: u32,
        /// Topic.
        topic: Bytes,
        /// The payload, unchanged.
        payload: Bytes,
    },
    /// An error; fatal codes close the connection.
    Error {
        /// The code.
        code: ErrorCode,
        /// Human-readable detail.
        message: String,
    },
}

/// A cursor over a frame body that slices `Bytes` without copying.
struct Body {
    bytes: Bytes,
    position: usize,
}

impl Body {
    fn take(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        let available = self.bytes.len() - self.position;
        if available < n {
            return Err(DecodeError::Truncated { offset: self.position, need: n - available });
        }
        let slice = self.bytes.slice(self.position..self.position + n);
        self.position += n;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&bytes);
        Ok(out)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        self.array().map(u64::from_le_bytes)
    }

    fn str8(&mut self) -> Result<Bytes, DecodeError> {
        let [len] = self.array::<1>()?;
        self.take(usize::from(len))
    }

    fn str16(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    fn string16(&mut self) -> Result<String, DecodeError> {
        let offset = self.position + 2;
        let bytes = self.str16()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::BadUtf8 { offset })
    }

    fn finish(&self, op: u8) -> Result<(), DecodeError> {
        match self.bytes.len() - self.position {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { op, extra }),
        }
    }
}

fn open(body: Bytes) -> Result<(u8, Body), DecodeError> {
    let Some(&op) = body.first() else {
        return Err(DecodeError::Empty);
    };
    Ok((op, Body { bytes: body, position: 1 }))
}

impl ClientOp {
    /// Decodes a frame body (the bytes after the length prefix).
    ///
    /// # Errors
    /// [`DecodeError`] when the body does not parse as its op.
    pub fn decode(body: Bytes) -> Result<ClientOp, DecodeError> {
        let (code, mut body) = open(body)?;
        let decoded = match code {
            op::HELLO => ClientOp::Hello {
                version: body.u16()?,
                flags: body.u16()?,
                client_name: body.string16()?,
                token: body.string16()?,
            },
            op::PUBLISH => {
                let view = PublishRef::parse(&body.bytes)?;
                let topic = body.bytes.slice(view.payload_at - view.topic.len()..view.payload_at);
                return Ok(ClientOp::Publish { topic, payload: body.bytes.slice(view.payload_at..) });
            }
            op::SUBSCRIBE => ClientOp::Subscribe { sub_id: body.u32()?, topic: body.str8()?, group: body.str8()? },
            op::UNSUBSCRIBE => ClientOp::Unsubscribe { sub_id: body.u32()? },
            op::PING => ClientOp::Ping { nonce: body.u64()? },
            other => return Err(DecodeError::UnknownOp(other)),
        };
        body.finish(code)?;
        Ok(decoded)
    }

    /// Appends the whole frame (length prefix included) to `dst`; on error
    /// `dst` is left as it was.
    ///
    /// # Errors
    /// [`EncodeError`] for a string longer than its length field.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = begin_frame(dst);
        let written = self.encode_body(dst);
        finish_frame(dst, start, written)
    }

    fn encode_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            ClientOp::Hello { version, flags, client_name, token } => {
                dst.put_u8(op::HELLO);
                dst.put_u16_le(*version);
                dst.put_u16_le(*flags);
                put_str16(dst, "client_name", client_name.as_bytes())?;
                put_str16(dst, "token", token.as_bytes())?;
            }
            ClientOp::Publish { topic, payload } => {
                dst.put_u8(op::PUBLISH);
                put_str8(dst, "topic", topic)?;
                dst.put_slice(payload);
            }
            ClientOp::Subscribe { sub_id, topic, group } => {
                dst.put_u8(op::SUBSCRIBE);
                dst.put_u32_le(*sub_id);
                put_str8(dst, "topic", topic)?;
                put_str8(dst, "group", group)?;
            }
            ClientOp::Unsubscribe { sub_id } => {
                dst.put_u8(op::UNSUBSCRIBE);
                dst.put_u32_le(*sub_id);
            }
            ClientOp::Ping { nonce } => {
                dst.put_u8(op::PING);
                dst.put_u64_le(*nonce);
            }
        }
        Ok(())
    }
}

impl ServerOp {
    /// Decodes a frame body (the bytes after the length prefix).
    ///
    /// # Errors
    /// [`DecodeError`] when the body does not parse as its op.
    pub fn decode(body: Bytes) -> Result<ServerOp, DecodeError> {
        let (code, mut body) = open(body)?;
        let decoded = match code {
            op::WELCOME => {
                ServerOp::Welcome { version: body.u16()?, server_id: body.string16()?, max_frame: body.u32()? }
            }
            op::SUBACK => ServerOp::SubAck { sub_id: body.u32()? },
            op::UNSUBACK => ServerOp::UnsubAck { sub_id: body.u32()? },
            op::PONG => ServerOp::Pong { nonce: body.u64()? },
            op::ACK => ServerOp::Ack { count: body.u64()? },
            op::DELIVER => {
                let view = DeliverRef::parse(&body.bytes)?;
                let topic = body.bytes.slice(view.payload_at - view.topic.len()..view.payload_at);
                return Ok(ServerOp::Deliver {
                    sub_id: view.sub_id,
                    topic,
                    payload: body.bytes.slice(view.payload_at..),
                });
            }
            op::ERROR => ServerOp::Error { code: ErrorCode::from_code(body.u16()?), message: body.string16()? },
            other => return Err(DecodeError::UnknownOp(other)),
        };
        body.finish(code)?;
        Ok(decoded)
    }

    /// Appends the whole frame (length prefix included) to `dst`; on error
    /// `dst` is left as it was.
    ///
    /// # Errors
    /// [`EncodeError`] for a string longer than its length field.
    pub fn encode(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let start = begin_frame(dst);
        let written = self.encode_body(dst);
        finish_frame(dst, start, written)
    }

    fn encode_body(&self, dst: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            ServerOp::Welcome { version, server_id, max_frame } => {
                dst.put_u8(op::WELCOME);
                dst.put_u16_le(*version);
                put_str16(dst, "server_id", server_id.as_bytes())?;
                dst.put_u32_le(*max_frame);
            }
            ServerOp::SubAck { sub_id } => {
                dst.put_u8(op::SUBACK);
                dst.put_u32_le(*sub_id);
            }
            ServerOp::UnsubAck { sub_id } => {
                dst.put_u8(op::UNSUBACK);
                dst.put_u32_le(*sub_id);
            }
            ServerOp::Pong { nonce } => {
                dst.put_u8(op::PONG);
                dst.put_u64_le(*nonce);
            }
            ServerOp::Ack { count } => {
                dst.put_u8(op::ACK);
                dst.put_u64_le(*count);
            }
            ServerOp::Deliver { sub_id, topic, payload } => {
                dst.put_u8(op::DELIVER);
                dst.put_u32_le(*sub_id);
                put_str8(dst, "topic", topic)?;
                dst.put_slice(payload);
            }
            ServerOp::Error { code, message } => {
                dst.put_u8(op::ERROR);
                dst.put_u16_le(code.code());
                put_str16(dst, "message", message.as_bytes())?;
            }
        }
        Ok(())
    }
}

/// Appends a DELIVER frame without building a [`ServerOp`]: the broker's hot
/// path.
pub fn encode_deliver(dst: &mut BytesMut, sub_id: u32, topic: TopicRef<'_>, payload: &[u8]) {
    dst.reserve(4 + 1 + 4 + 1 + topic.0.len() + payload.len());
    encode_deliver_head(dst, sub_id, topic, payload.len());
    dst.put_slice(payload);
}

/// Appends the head of a DELIVER frame whose `payload_len` payload bytes
/// follow separately (the broker queues large payloads as shared slices).
pub fn encode_deliver_head(dst: &mut BytesMut, sub_id: u32, topic: TopicRef<'_>, payload_len: usize) {
    let body_len = 1 + 4 + 1 + topic.0.len() + payload_len;
    dst.put_u32_le(u32::try_from(body_len).unwrap_or(u32::MAX));
    dst.put_u8(op::DELIVER);
    dst.put_u32_le(sub_id);
    dst.put_u8(topic.len_u8());
    dst.put_slice(topic.0);
}

/// The length of a PUBLISH frame for this topic and payload.
pub fn publish_frame_len(topic: TopicRef<'_>, payload: &[u8]) -> usize {
    4 + 1 + 1 + topic.0.len() + payload.len()
}

/// The length of the length-prefixed frame at the start of `bytes`
/// (`4 + len`), for buffers of whole frames.
pub fn frame_len(bytes: &[u8]) -> usize {
    bytes.first_chunk::<4>().map_or(bytes.len(), |prefix| 4 + u32::from_le_bytes(*prefix) as usize)
}

/// Appends a PUBLISH frame: the client's hot path.
pub fn encode_publish(dst: &mut BytesMut, topic: TopicRef<'_>, payload: &[u8]) {
    let body_len = 1 + 1 + topic.0.len() + payload.len();
    dst.reserve(4 + body_len);
    dst.put_u32_le(u32::try_from(body_len).unwrap_or(u32::MAX));
    dst.put_u8(op::PUBLISH);
    dst.put_u8(topic.len_u8());
    dst.put_slice(topic.0);
    dst.put_slice(payload);
}

fn begin_frame(dst: &mut BytesMut) -> usize {
    let start = dst.len();
    dst.put_u32_le(0);
    start
}

/// Writes the length prefix of the frame begun at `start`, or takes the
/// frame back out of `dst` when its body could not be encoded.
fn finish_frame(dst: &mut BytesMut, start: usize, written: Result<(), EncodeError>) -> Result<(), EncodeError> {
    if let Err(error) = written {
        dst.truncate(start);
        return Err(error);
    }
    let body_len = u32::try_from(dst.len() - start - 4).unwrap_or(u32::MAX);
    dst[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    Ok(())
}

/// Writes a `str8`; a longer string is an error, never cut.
fn put_str8(dst: &mut BytesMut, field: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = u8::try_from(bytes.len()).map_err(|_| EncodeError { field, len: bytes.len(), max: 255 })?;
    dst.put_u8(len);
    dst.put_slice(bytes);
    Ok(())
}

/// Writes a `str16`; a longer string is an error, never cut.
fn put_str16(dst: &mut BytesMut, field: &'static str, bytes: &[u8]) -> Result<(), EncodeError> {
    let len = u16::try_from(bytes.len()).map_err(|_| EncodeError { field, len: bytes.len(), max: 65_535 })?;
    dst.put_u16_le(len);
    dst.put_slice(bytes);
    Ok(())
}

/// A topic checked against the rules, borrowed: what the hot-path encoders
/// take, so none of them can be handed a topic its `str8` cannot hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicRef<'a>(&'a [u8]);

impl<'a> TopicRef<'a> {
    /// Checks `bytes` against the topic rules.
    ///
    /// # Errors
    /// The rule it breaks.
    pub fn new(bytes: &'a [u8]) -> Result<TopicRef<'a>, &'static str> {
        Topic::check(bytes)?;
        Ok(TopicRef(bytes))
    }

    /// The topic's bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// The length, which the rules keep within a byte.
    fn len_u8(&self) -> u8 {
        u8::try_from(self.0.len()).unwrap_or(u8::MAX)
    }
}

/// A topic that follows the rules: 1–255 bytes of `[a-z0-9_.-]`, not starting
/// or ending with `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topic(Bytes);

impl Topic {
    /// Validates `bytes` as a topic.
    ///
    /// # Errors
    /// The rule it breaks, for the `bad_topic` message.
    pub fn new(bytes: Bytes) -> Result<Topic, &'static str> {
        Topic::check(&bytes)?;
        Ok(Topic(bytes))
    }

    /// Checks the topic rules without building a `Topic`.
    ///
    /// # Errors
    /// The rule it breaks.
    pub fn check(bytes: &[u8]) -> Result<(), &'static str> {
        if bytes.is_empty() {
            return Err("topic is empty");
        }
        if bytes.len() > 255 {
            return Err("topic is longer than 255 bytes");
        }
        if !bytes.iter().all(|&byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-')) {
            return Err("topic may hold only a-z, 0-9, '_', '.' and '-'");
        }
        if bytes.first() == Some(&b'.') || bytes.last() == Some(&b'.') {
            return Err("topic may not start or end with '.'");
        }
        Ok(())
    }

    /// The topic's bytes.
    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    /// The topic, borrowed, for the encoders.
    pub fn as_topic_ref(&self) -> TopicRef<'_> {
        TopicRef(&self.0)
    }

    /// The topic as text (always ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

/// Lets a router keyed by `Topic` be searched with the raw bytes of a frame
/// (`Bytes` hashes as its byte slice, so the two hashes agree).
impl std::borrow::Borrow<[u8]> for Topic {
    fn borrow(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for Topic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

mod views;
pub use views::{DeliverRef, FrameRef, Frames, PublishRef, frames};

#[cfg(test)]
mod tests;
