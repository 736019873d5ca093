//! The publishing shim producers talk to: one `Publisher` interface with relay,
//! broker and dual-write implementations, and a service publisher that reads
//! its rollout stage per message and switches at a message boundary.
//!
//! It deliberately never builds or alters message bytes: it routes the bytes
//! the producer built, unchanged, to one path or both.
//!
//! Not built yet: arrives with the shim and rollout issue.
