//! The one error type of the transport crate.

use std::io;
use std::path::PathBuf;

/// What can go wrong below the protocols: parsing an endpoint, binding,
/// connecting, or a peer that breaks framing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An endpoint string that is not `unix:PATH` or `tcp:HOST:PORT`.
    #[error("invalid endpoint {text:?}: {reason}")]
    BadEndpoint {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Another live server answers on this socket path.
    #[error("{} is in use by another live server (connect succeeded); refusing to replace it", path.display())]
    SocketInUse {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path a server would bind;
    /// it is left as it is.
    #[error("{} exists and is {kind}, not a socket; refusing to replace it", path.display())]
    NotASocket {
        /// The path.
        path: PathBuf,
        /// What is there ("a regular file", "a directory", "a symlink", …).
        kind: &'static str,
    },
    /// The directory a socket would live in lets others replace it.
    #[error("refusing to serve a socket in {}: {reason}", path.display())]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// Why it is unsafe.
        reason: String,
    },
    /// A frame announced a length over the limit; nothing was buffered.
    #[error("frame of {len} bytes exceeds the limit of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The limit.
        max: usize,
    },
    /// The peer's bytes do not frame (a zero length, a bad header).
    #[error("framing lost: {0}")]
    Framing(String),
    /// The peer closed the stream in the middle of a frame.
    #[error("connection closed mid-frame ({buffered} bytes of an incomplete frame buffered)")]
    ClosedMidFrame {
        /// Bytes of the incomplete frame.
        buffered: usize,
    },
    /// Another producer holds the spool directory's lock.
    #[error("spool directory {} is in use by another producer ({holder}); each producer needs its own spool_dir", dir.display())]
    SpoolLocked {
        /// The spool directory.
        dir: PathBuf,
        /// Who holds it, as far as the lock file says (`pid N`).
        holder: String,
    },
    /// The spool holds `max_bytes` already: the message was not spooled.
    #[error("spool_full: the spool in {} holds {used} of its {max_bytes} bytes", dir.display())]
    SpoolFull {
        /// The spool directory.
        dir: PathBuf,
        /// Bytes on disk now.
        used: u64,
        /// The limit (`spool_max_bytes`).
        max_bytes: u64,
    },
    /// A message larger than a spool record may be.
    #[error("message of {len} bytes is larger than a spool record may be ({max})")]
    SpoolRecordTooLarge {
        /// The message's length.
        len: usize,
        /// The largest record payload.
        max: usize,
    },
    /// An I/O error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (names the endpoint or path).
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io { context: context.into(), source }
    }
}
