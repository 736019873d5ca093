//! Reading frames from a byte stream: one buffer per connection, the frame
//! length checked against the limit before the body is buffered, complete
//! frames handed out as `Bytes` without copying.
//!
//! The framing rule is a [`Framing`] (the broker's length prefix, Protocol
//! V2's `32 + payload_size`); this module deliberately does not parse frame
//! bodies.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::Error;

/// A framing rule: how long is the frame at the start of `buffered`?
pub trait Framing {
    /// `Ok(Some(len))` once the length is known (the whole frame, length
    /// field included), `Ok(None)` while more bytes are needed to tell, or an
    /// error when framing is lost (the connection must close).
    ///
    /// # Errors
    /// [`Error::FrameTooLarge`] or [`Error::Framing`].
    fn frame_len(&self, buffered: &[u8]) -> Result<Option<usize>, Error>;
}

/// `[len u32 LE][body: len bytes]` with `1 ≤ len ≤ max_body` (`docs/broker-protocol.md`, frames).
#[derive(Debug, Clone, Copy)]
pub struct LengthPrefixed {
    /// The largest body accepted.
    pub max_body: usize,
}

impl Framing for LengthPrefixed {
    fn frame_len(&self, buffered: &[u8]) -> Result<Option<usize>, Error> {
        let Some(prefix) = buffered.first_chunk::<4>() else {
            return Ok(None);
        };
        let len = u32::from_le_bytes(*prefix);
        if len == 0 {
            return Err(Error::Framing("zero-length frame".to_owned()));
        }
        if u64::from(len) > self.max_body as u64 {
            return Err(Error::FrameTooLarge { len: u64::from(len), max: self.max_body });
        }
        Ok(Some(4 + len as usize))
    }
}

/// Reads frames from `reader` by `framing`.
#[derive(Debug)]
pub struct FrameReader<R, F> {
    reader: R,
    framing: F,
    /// Bytes read and not yet handed out as frames.
    buffer: BytesMut,
    /// How much to ask the kernel for per read.
    read_size: usize,
}

impl<R: AsyncRead + Unpin, F: Framing> FrameReader<R, F> {
    /// A reader with a 32 KiB read size. Buffers stay under the allocator's
    /// mmap threshold (128 KiB), so the memory of consumed batches is reused
    /// rather than mapped afresh (and page-faulted) for every read.
    pub fn new(reader: R, framing: F) -> FrameReader<R, F> {
        FrameReader { reader, framing, buffer: BytesMut::with_capacity(96 * 1024), read_size: 64 * 1024 }
    }

    /// The next complete frame already buffered, without reading.
    ///
    /// # Errors
    /// When framing is lost.
    pub fn try_frame(&mut self) -> Result<Option<Bytes>, Error> {
        match self.framing.frame_len(&self.buffer)? {
            Some(len) if self.buffer.len() >= len => Ok(Some(self.buffer.split_to(len).freeze())),
            _ => Ok(None),
        }
    }

    /// Every complete frame already buffered, as one `Bytes` holding whole
    /// frames back to back (split off without copying), or `None` when not
    /// even one frame is complete. Callers walk the frames with the same
    /// framing; batching this way costs one reference count per read, not
    /// per frame.
    ///
    /// # Errors
    /// When framing is lost (after the frames before the bad one are
    /// returned by an earlier call).
    pub fn try_batch(&mut self) -> Result<Option<Bytes>, Error> {
        let mut end = 0;
        loop {
            let rest = &self.buffer[end..];
            match self.framing.frame_len(rest) {
                Ok(Some(len)) if rest.len() >= len => end += len,
                Ok(_) => break,
                Err(error) if end == 0 => return Err(error),
                Err(_) => break,
            }
        }
        Ok((end > 0).then(|| self.buffer.split_to(end).freeze()))
    }

    /// The next batch of complete frames (see [`FrameReader::try_batch`]),
    /// reading as needed: `Ok(None)` on a clean end of stream.
    ///
    /// # Errors
    /// When framing is lost, the stream ends mid-frame, or reading fails.
    pub async fn read_batch(&mut self) -> Result<Option<Bytes>, Error> {
        self.read_with(Self::try_batch).await
    }

    /// The next frame: `Ok(None)` on a clean end of stream.
    ///
    /// # Errors
    /// When framing is lost, the stream ends mid-frame, or reading fails.
    pub async fn read_frame(&mut self) -> Result<Option<Bytes>, Error> {
        self.read_with(Self::try_frame).await
    }

    /// Reads until `take` finds something in the buffer: `Ok(None)` on a
    /// clean end of stream, an error when it ends mid-frame.
    async fn read_with(&mut self, take: fn(&mut Self) -> Result<Option<Bytes>, Error>) -> Result<Option<Bytes>, Error> {
        loop {
            if let Some(taken) = take(self)? {
                return Ok(Some(taken));
            }
            if !self.fill().await? {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err(Error::ClosedMidFrame { buffered: self.buffer.len() })
                };
            }
        }
    }

    /// Reads once from the stream into the buffer; `false` at end of stream.
    ///
    /// # Errors
    /// When reading fails.
    pub async fn fill(&mut self) -> Result<bool, Error> {
        self.buffer.reserve(self.read_size);
        let n_read = self.reader.read_buf(&mut self.buffer).await.map_err(|source| Error::io("read", source))?;
        Ok(n_read > 0)
    }

    /// The underlying reader (buffered bytes are dropped).
    pub fn into_inner(self) -> R {
        self.reader
    }

    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::*;

    #[tokio::test]
    async fn frames_split_across_writes_come_out_whole_and_in_order() {
        let (mut client, server) = tokio::io::duplex(7);
        let writer = tokio::spawn(async move {
            let mut bytes = Vec::new();
            for body in [&b"a"[..], b"hello", &[9u8; 300]] {
                bytes.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
                bytes.extend_from_slice(body);
            }
            for chunk in bytes.chunks(3) {
                client.write_all(chunk).await.unwrap();
            }
        });
        let mut reader = FrameReader::new(server, LengthPrefixed { max_body: 1024 });
        assert_eq!(&reader.read_frame().await.unwrap().unwrap()[..], b"\x01\0\0\0a");
        assert_eq!(&reader.read_frame().await.unwrap().unwrap()[4..], b"hello");
        assert_eq!(reader.read_frame().await.unwrap().unwrap().len(), 304);
        writer.await.unwrap();
        assert!(reader.read_frame().await.unwrap().is_none());
    }

    #[tokio::test]
    async fn batches_hold_whole_frames_only_and_stop_before_a_bad_one() {
        let (mut client, server) = tokio::io::duplex(1024);
        client.write_all(b"\x01\0\0\0a\x02\0\0\0bc\x03\0\0\0d").await.unwrap();
        let mut reader = FrameReader::new(server, LengthPrefixed { max_body: 8 });
        assert_eq!(&reader.read_batch().await.unwrap().unwrap()[..], b"\x01\0\0\0a\x02\0\0\0bc");
        client.write_all(b"ef\0\0\0\0").await.unwrap();
        assert_eq!(&reader.read_batch().await.unwrap().unwrap()[..], b"\x03\0\0\0def");
        assert!(matches!(reader.read_batch().await, Err(Error::Framing(_))));
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_buffering_the_body() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&u32::MAX.to_le_bytes()).await.unwrap();
        let mut reader = FrameReader::new(server, LengthPrefixed { max_body: 1024 });
        assert!(matches!(reader.read_frame().await, Err(Error::FrameTooLarge { len: 4_294_967_295, max: 1024 })));
        assert!(reader.buffered() < 64);
    }

    #[tokio::test]
    async fn zero_length_and_mid_frame_eof_are_errors() {
        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&0u32.to_le_bytes()).await.unwrap();
        let mut reader = FrameReader::new(server, LengthPrefixed { max_body: 1024 });
        assert!(matches!(reader.read_frame().await, Err(Error::Framing(_))));

        let (mut client, server) = tokio::io::duplex(64);
        client.write_all(&[5, 0, 0, 0, 1, 2]).await.unwrap();
        drop(client);
        let mut reader = FrameReader::new(server, LengthPrefixed { max_body: 1024 });
        assert!(matches!(reader.read_frame().await, Err(Error::ClosedMidFrame { buffered: 6 })));
    }
}
