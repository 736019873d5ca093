//! Protocol V2 stream framing for the transport layer: a message is
//! `32 + payload_size` bytes, and a bad magic, version or size means framing
//! is lost. The checks themselves are the codec's.

use myc_transport::Framing;

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
    fn frame_len(&self, buffered: &[u8]) -> Result<Option<usize>, myc_transport::Error> {
        match myc_codec::frame_len(buffered) {
            Ok(Some(len)) if len > self.max_message => {
                Err(myc_transport::Error::FrameTooLarge { len: len as u64, max: self.max_message })
            }
            Ok(len) => Ok(len),
            Err(myc_codec::Error::TooLarge { len, max }) => Err(myc_transport::Error::FrameTooLarge { len, max }),
            Err(myc_codec::Error::BadMagic { .. }) => Err(myc_transport::Error::Framing(BAD_MAGIC.to_owned())),
            Err(myc_codec::Error::BadVersion { .. }) => Err(myc_transport::Error::Framing(BAD_VERSION.to_owned())),
            Err(error) => Err(myc_transport::Error::Framing(error.to_string())),
        }
    }
}

/// The length of the whole message at the start of `bytes` (for buffers that
/// hold whole messages only).
pub fn message_len(bytes: &[u8]) -> usize {
    myc_codec::peek_message_len(bytes).unwrap_or(bytes.len()).min(bytes.len())
}
