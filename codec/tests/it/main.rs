//! The codec's one integration-test binary: the golden vectors under
//! `tests/data` (written from the spec by `scripts/gen_codec_vectors.py`,
//! independently of this crate's encoder) and the property tests.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod props;
mod vectors;
