//! The byte-stream plumbing shared by every client and server: the
//! `Endpoint` (`unix:PATH` or `tcp:HOST:PORT`, parsed once), a framed
//! connection over any `AsyncRead + AsyncWrite`, the jittered backoff function
//! and the sans-IO circuit breaker.
//!
//! It deliberately knows nothing of message contents: it frames bytes and moves
//! them, and leaves Protocol V2 to `codec` and the broker ops to `broker`.
//!
//! Not built yet: arrives with the broker issue.
