//! The verify crate's one integration-test binary.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod golden;
mod standard_tools;
