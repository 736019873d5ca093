//! Protocol V2 stream framing for the transport layer: a message is
//! `32 + payload_size` bytes, and a bad magic, version or size means framing
//! is lost. The checks themselves are the codec's.

use transport::Framing;

/// The framing error text (and metrics reason) for a wrong magic.
pub(crate) const BAD_MAGIC: &str = "bad_magic";
/// The framing error text (and metrics reason) for a wrong version.
pub(crate) const BAD_VERSION: &str = "bad_version";

/// Frames a byte stream into Protocol V2 messages (and identification
/// headers, which are messages with no TLVs).
#[derive(Debug, Clone, Copy)]
pub struct ProtocolV2 {
    /// The largest message accepted (at most 1 MiB).
    pub max_message: usize,
}

impl Framing for ProtocolV2 {
    fn frame_len(&self, buffered: &[u8]) -> Result<Option<usize>, transport::Error> {
        match codec::frame_len(buffered) {
            Ok(Some(len)) if len > self.max_message => {
                Err(transport::Error::FrameTooLarge { len: len as u64, max: self.max_message })
            }
            Ok(len) => Ok(len),
            Err(codec::Error::TooLarge { len, max }) => Err(transport::Error::FrameTooLarge { len, max }),
            Err(codec::Error::BadMagic { .. }) => Err(transport::Error::Framing(BAD_MAGIC.to_owned())),
            Err(codec::Error::BadVersion { .. }) => Err(transport::Error::Framing(BAD_VERSION.to_owned())),
            Err(error) => Err(transport::Error::Framing(error.to_string())),
        }
    }
}

/// The length of the whole message at the start of `bytes` (for buffers that
/// hold whole messages only).
pub fn message_len(bytes: &[u8]) -> usize {
    codec::peek_message_len(bytes).unwrap_or(bytes.len()).min(bytes.len())
}
