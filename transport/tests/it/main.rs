//! Integration tests of the transport crate: one binary, a module per part.
//! They use temporary directories only, never fixed ports or paths.

mod spool;
