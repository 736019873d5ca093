//! Proof of byte compatibility: pcapng capture files, the join of a
//! reference and a candidate stream by `(relay_domain, source, sequence)`,
//! the counts, the unified diffs and the report.
//!
//! It deliberately stays synchronous and never imports tokio: taps that feed
//! it live elsewhere, and it renders into a writer rather than printing.
//!
//! Not built yet: arrives with the verify issue.
