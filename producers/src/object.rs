//! What the adapters whose every frame is one JSON object (Coinbase,
//! Binance) share: the stamper, counters zero-filled with every drop reason
//! and the `error` kind, the top-level shape check before serde, counting a
//! rejected frame, and counting (and rate-limiting the log of) the
//! server's error messages. The [`reject`] rule is every adapter's.
//!
//! It deliberately does not map events: which fields make a Trade or a
//! Quote is each venue's business, in its own module.

use serde::Deserialize;

use crate::fields::Drop;
use crate::{Control, FeedCounters, Stamper};

/// The `events_ignored` key of the server's error messages.
pub(crate) const ERROR_KEY: &str = "error";

/// Counts a rejected frame and returns why, as [`crate::Adapter::frame`]
/// does.
pub(crate) fn reject(counters: &mut FeedCounters, why: String) -> Result<Option<Control>, String> {
    Err(rejected(counters, why))
}

/// Counts a rejected frame; returns why.
fn rejected(counters: &mut FeedCounters, why: String) -> String {
    counters.frames_rejected += 1;
    why
}

/// The state of an object-per-frame adapter besides its mapping.
#[derive(Debug)]
pub(crate) struct ObjectFeed {
    /// The feed's name in rejection reasons (`"Coinbase"`).
    name: &'static str,
    /// Numbers and stamps every message of this adapter.
    pub(crate) stamper: Stamper,
    /// Every drop reason and [`ERROR_KEY`] are present from the start, so
    /// the summary's keys do not depend on the input.
    pub(crate) counters: FeedCounters,
    /// Limits the server's error messages in the log to one a second (each
    /// one is counted).
    warnings: myc_transport::OnceASecond,
}

impl ObjectFeed {
    pub(crate) fn new(name: &'static str, stamper: Stamper) -> ObjectFeed {
        let mut counters = FeedCounters::new(&Drop::ALL);
        counters.events_ignored.insert(ERROR_KEY.to_owned(), 0);
        ObjectFeed { name, stamper, counters, warnings: myc_transport::OnceASecond::default() }
    }

    /// Counts a frame and reads it as one JSON object of shape `T`; a frame
    /// that is not one is counted rejected, with the reason returned.
    pub(crate) fn object<'a, T: Deserialize<'a>>(&mut self, text: &'a str) -> Result<T, String> {
        self.counters.frames += 1;
        // serde would read an array as a struct, field by field.
        if !text.trim_start().starts_with('{') {
            return Err(rejected(&mut self.counters, format!("not a {} message: not a JSON object", self.name)));
        }
        serde_json::from_str(text).map_err(|error| {
            rejected(&mut self.counters, format!("not a {} message (an object of its shape): {error}", self.name))
        })
    }

    /// Counts a rejected frame and returns why.
    pub(crate) fn reject(&mut self, why: String) -> Result<Option<Control>, String> {
        reject(&mut self.counters, why)
    }

    /// Counts one error message of the server (a control frame, and the
    /// [`ERROR_KEY`] kind); returns whether to log it now.
    pub(crate) fn server_error(&mut self) -> bool {
        self.counters.frames_control += 1;
        self.counters.ignored(ERROR_KEY);
        self.warnings.ready()
    }
}
