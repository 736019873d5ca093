//! Borrowed views of the hot frames — [`PublishRef`] and [`DeliverRef`] —
//! and [`Frames`], the iterator over a buffer of whole length-prefixed
//! frames. The broker's read loop and the client's read loop use these
//! instead of owned ops, so a batch of thousands of frames is parsed without
//! one allocation or reference count per frame; the owned decoders use them
//! too, so each frame layout is parsed in exactly one place.
//!
//! They deliberately check only the layout (lengths), not topic rules.

use super::{DecodeError, op};

/// A PUBLISH body (`[op][str8 topic][payload]`), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishRef<'a> {
    /// The topic's bytes (not checked against the topic rules).
    pub topic: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// Where the payload starts in the body, to slice a shared `Bytes` of it.
    pub payload_at: usize,
}

impl<'a> PublishRef<'a> {
    /// Parses a PUBLISH body.
    ///
    /// # Errors
    /// [`DecodeError`] when it is not a PUBLISH or its topic is cut short.
    pub fn parse(body: &'a [u8]) -> Result<PublishRef<'a>, DecodeError> {
        expect_op(body, op::PUBLISH)?;
        let (topic, payload_at) = str8(body, 1)?;
        Ok(PublishRef { topic, payload: &body[payload_at..], payload_at })
    }
}

/// A DELIVER body (`[op][u32 sub_id][str8 topic][payload]`), borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverRef<'a> {
    /// The subscription.
    pub sub_id: u32,
    /// The topic's bytes.
    pub topic: &'a [u8],
    /// The payload.
    pub payload: &'a [u8],
    /// Where the payload starts in the body.
    pub payload_at: usize,
}

impl<'a> DeliverRef<'a> {
    /// Parses a DELIVER body.
    ///
    /// # Errors
    /// [`DecodeError`] when it is not a DELIVER or is cut short.
    pub fn parse(body: &'a [u8]) -> Result<DeliverRef<'a>, DecodeError> {
        expect_op(body, op::DELIVER)?;
        let sub_id = body
            .get(1..5)
            .and_then(|bytes| bytes.first_chunk::<4>())
            .map(|bytes| u32::from_le_bytes(*bytes))
            .ok_or(DecodeError::Truncated { offset: 1, need: 5 - body.len().min(5) })?;
        let (topic, payload_at) = str8(body, 5)?;
        Ok(DeliverRef { sub_id, topic, payload: &body[payload_at..], payload_at })
    }
}

/// One frame of a [`Frames`] buffer: its body and where the body starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The body (the bytes after the length prefix; its first is the op).
    pub body: &'a [u8],
    /// The body's offset in the buffer.
    pub at: usize,
}

impl FrameRef<'_> {
    /// The op code (`None` for an empty body).
    pub fn op(&self) -> Option<u8> {
        self.body.first().copied()
    }
}

/// The frames of a buffer of whole length-prefixed frames (`[u32 len][body]`
/// each), as a `FrameReader` batch holds them. A buffer that ends inside a
/// frame yields a [`DecodeError::Truncated`] for it and then stops.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    bytes: &'a [u8],
    offset: usize,
}

/// The frames of `bytes`.
pub fn frames(bytes: &[u8]) -> Frames<'_> {
    Frames { bytes, offset: 0 }
}

impl<'a> Iterator for Frames<'a> {
    type Item = Result<FrameRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.bytes.get(self.offset..).filter(|rest| !rest.is_empty())?;
        let at = self.offset + 4;
        let Some(prefix) = rest.first_chunk::<4>() else {
            let error = DecodeError::Truncated { offset: self.offset, need: 4 - rest.len() };
            self.offset = self.bytes.len();
            return Some(Err(error));
        };
        let len = u32::from_le_bytes(*prefix) as usize;
        let Some(body) = rest.get(4..4 + len) else {
            self.offset = self.bytes.len();
            return Some(Err(DecodeError::Truncated { offset: at, need: 4 + len - rest.len() }));
        };
        self.offset = at + len;
        Some(Ok(FrameRef { body, at }))
    }
}

fn expect_op(body: &[u8], expected: u8) -> Result<(), DecodeError> {
    match body.first() {
        None => Err(DecodeError::Empty),
        Some(&code) if code == expected => Ok(()),
        Some(&code) => Err(DecodeError::UnknownOp(code)),
    }
}

/// The `str8` at `offset` of `body` and the offset after it.
fn str8(body: &[u8], offset: usize) -> Result<(&[u8], usize), DecodeError> {
    let Some(&len) = body.get(offset) else {
        return Err(DecodeError::Truncated { offset, need: 1 });
    };
    let end = offset + 1 + usize::from(len);
    match body.get(offset + 1..end) {
        Some(bytes) => Ok((bytes, end)),
        None => Err(DecodeError::Truncated { offset: offset + 1, need: end - body.len() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_publish_view_borrows_topic_and_payload() {
        let body = b"\x02\x02md\x01\x02\x03";
        assert_eq!(PublishRef::parse(body), Ok(PublishRef { topic: b"md", payload: b"\x01\x02\x03", payload_at: 4 }));
        assert_eq!(PublishRef::parse(b"\x02\x05md"), Err(DecodeError::Truncated { offset: 2, need: 3 }));
        assert_eq!(PublishRef::parse(b"\x02"), Err(DecodeError::Truncated { offset: 1, need: 1 }));
        assert_eq!(PublishRef::parse(b"\x87\x00"), Err(DecodeError::UnknownOp(0x87)));
        assert_eq!(PublishRef::parse(b""), Err(DecodeError::Empty));
    }

    #[test]
    fn a_deliver_view_is_cut_short_at_every_offset_with_an_error() {
        let body = b"\x87\x07\x00\x00\x00\x02mdxy";
        assert_eq!(DeliverRef::parse(body), Ok(DeliverRef { sub_id: 7, topic: b"md", payload: b"xy", payload_at: 8 }));
        // Every prefix that cuts into the header fails; none panics.
        for end in 1..8 {
            assert!(matches!(DeliverRef::parse(&body[..end]), Err(DecodeError::Truncated { .. })), "cut at {end}");
        }
    }

    #[test]
    fn frames_walk_a_buffer_and_report_a_cut_last_frame() {
        let bytes = b"\x01\x00\x00\x00\x05\x02\x00\x00\x00\x85\x01\x09\x00\x00\x00\x86";
        let walked: Vec<_> = frames(bytes).collect();
        assert_eq!(walked.len(), 3);
        assert_eq!(walked[0], Ok(FrameRef { body: b"\x05", at: 4 }));
        assert_eq!(walked[1], Ok(FrameRef { body: b"\x85\x01", at: 9 }));
        assert_eq!(walked[2], Err(DecodeError::Truncated { offset: 15, need: 8 }));
        assert_eq!(frames(b"\x01\x00").collect::<Vec<_>>(), vec![Err(DecodeError::Truncated { offset: 0, need: 2 })]);
    }
}
