//! The relay tap (docs/relay.md §5): a consumer connection that sends nothing,
//! frames the incoming stream into messages and timestamps each read on
//! arrival. `verify` and `capture` build on it.
//!
//! It deliberately does not validate TLVs: a tap records what the relay sent.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use myc_transport::{Endpoint, FrameReader};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;
use crate::framing::{ProtocolV2, message_len};

/// One message as the tap saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapMessage {
    /// The exact message bytes.
    pub bytes: Bytes,
    /// When the read that completed it returned, ns since the Unix epoch.
    pub arrival_ns: u64,
}

/// A consumer connection to one relay socket.
pub struct RelayTap {
    reader: FrameReader<Box<dyn AsyncRead + Send + Unpin>, ProtocolV2>,
    /// Kept open and unused: closing our side would tell the relay we left.
    _write_half: Box<dyn AsyncWrite + Send + Unpin>,
    /// The rest of the current read batch, and its arrival time.
    batch: Bytes,
    arrival_ns: u64,
}

impl std::fmt::Debug for RelayTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayTap").field("buffered", &self.batch.len()).finish_non_exhaustive()
    }
}

impl RelayTap {
    /// Connects to the relay at `path`.
    ///
    /// # Errors
    /// When the socket cannot be reached.
    pub async fn connect(path: &Path) -> Result<RelayTap, Error> {
        let stream = Endpoint::Unix(path.to_owned()).connect().await?;
        let (read_half, write_half) = stream.into_split();
        Ok(RelayTap {
            reader: FrameReader::new(read_half, ProtocolV2 { max_message: myc_codec::MAX_MESSAGE_LEN }),
            _write_half: write_half,
            batch: Bytes::new(),
            arrival_ns: 0,
        })
    }

    /// Every whole message that has arrived (at least one), back to back in
    /// one `Bytes`, with the arrival time of the read that completed them;
    /// `Ok(None)` when the relay closed the connection. Walk the messages
    /// with [`crate::message_len`].
    ///
    /// # Errors
    /// When the stream breaks framing or ends mid-message.
    pub async fn next_batch(&mut self) -> Result<Option<(Bytes, u64)>, Error> {
        if !self.batch.is_empty() {
            return Ok(Some((std::mem::take(&mut self.batch), self.arrival_ns)));
        }
        Ok(self.reader.read_batch().await?.map(|batch| (batch, now_ns())))
    }

    /// The next message; `Ok(None)` when the relay closed the connection.
    ///
    /// # Errors
    /// When the stream breaks framing or ends mid-message.
    pub async fn next(&mut self) -> Result<Option<TapMessage>, Error> {
        if self.batch.is_empty() {
            match self.reader.read_batch().await? {
                Some(batch) => {
                    self.batch = batch;
                    self.arrival_ns = now_ns();
                }
                None => return Ok(None),
            }
        }
        let len = message_len(&self.batch);
        let bytes = self.batch.split_to(len);
        Ok(Some(TapMessage { bytes, arrival_ns: self.arrival_ns }))
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
