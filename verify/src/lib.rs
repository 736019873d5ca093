//! Proof of byte compatibility: pcapng capture files, the join of a
//! reference and a candidate stream by `(relay_domain, source, sequence)`,
//! the counts, the unified diffs and the report.
//!
//! It deliberately stays synchronous and never imports tokio: taps that feed
//! it live elsewhere, and it renders into a writer rather than printing.
//!
//! The parts: capture files ([`pcapng`]), one stream of a file read ahead
//! on a thread ([`stream`]), the join ([`join`]) and the report
//! ([`report`]), and the settle time of live taps ([`settle`]); `myc verify`
//! and `myc capture` drive them.

pub mod join;
pub mod pcapng;
pub mod report;
pub mod settle;
pub mod stream;

/// The one error type of the verify crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A capture file that is not valid pcapng from `offset` on; everything
    /// before it was read.
    #[error("{path}: invalid pcapng at byte {offset}: {reason}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where the problem starts.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}
