//! What a producer did: frames read, rejected and control frames, events
//! published, dropped by reason and ignored by kind, book resyncs, and the
//! shim's per-path counts — the summary `myc produce --summary-json` prints
//! (cli spec).

use std::collections::BTreeMap;

use serde::Serialize;

/// Distinct ignored-event kinds counted by name; later kinds go to
/// [`OTHER_KIND`], so a feed that invents a kind per event cannot grow the
/// producer's memory.
pub const MAX_IGNORED_KINDS: usize = 64;

/// Longer kinds are counted under [`OTHER_KIND`] too.
pub const MAX_KIND_LEN: usize = 64;

/// The `events_ignored` key of kinds over the limits.
pub const OTHER_KIND: &str = "other";

/// A feed adapter's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedCounters {
    /// Frames read.
    pub frames: u64,
    /// Frames that were not valid JSON of the expected shape.
    pub frames_rejected: u64,
    /// Status and control frames (informational).
    pub frames_control: u64,
    /// Events turned into messages and handed to the shim.
    pub events_published: u64,
    /// Events dropped, by reason.
    pub events_dropped: BTreeMap<String, u64>,
    /// Events of kinds the adapter does not map, by kind: at most
    /// [`MAX_IGNORED_KINDS`] named kinds plus [`OTHER_KIND`].
    pub events_ignored: BTreeMap<String, u64>,
    /// Kraken books discarded and resubscribed.
    pub book_resyncs: u64,
}

impl FeedCounters {
    /// Counters with every drop reason of `reasons` present at zero, so the
    /// summary's keys do not depend on the input.
    pub fn new(reasons: &[crate::fields::Drop]) -> FeedCounters {
        let events_dropped = reasons.iter().map(|reason| (reason.name().to_owned(), 0)).collect();
        FeedCounters { events_dropped, ..FeedCounters::default() }
    }

    /// Counts one event dropped for `reason`.
    pub fn dropped(&mut self, reason: crate::fields::Drop) {
        *self.events_dropped.entry(reason.name().to_owned()).or_default() += 1;
    }

    /// Counts one mapped event: dropped for its reason, or `published`
    /// messages built from it.
    pub fn mapped(&mut self, result: Result<(), crate::fields::Drop>, published: usize) {
        match result {
            Ok(()) => self.events_published += published as u64,
            Err(reason) => self.dropped(reason),
        }
    }

    /// Counts one event of `kind` ignored. The kind is feed text, so the
    /// map is bounded: at most [`MAX_IGNORED_KINDS`] distinct kinds of at
    /// most [`MAX_KIND_LEN`] bytes are named, every other event is counted
    /// under [`OTHER_KIND`].
    pub fn ignored(&mut self, kind: &str) {
        if let Some(count) = self.events_ignored.get_mut(kind) {
            *count += 1;
            return;
        }
        let named = self.events_ignored.len() - usize::from(self.events_ignored.contains_key(OTHER_KIND));
        let key = if named < MAX_IGNORED_KINDS && kind.len() <= MAX_KIND_LEN { kind } else { OTHER_KIND };
        *self.events_ignored.entry(key.to_owned()).or_default() += 1;
    }
}

/// The shim's counts per path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Paths {
    /// The relay path.
    pub relay: myc_shim::PathSummary,
    /// The broker path.
    pub broker: myc_shim::PathSummary,
}

/// The whole summary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The adapter's counters.
    #[serde(flatten)]
    pub feed: FeedCounters,
    /// The shim's counters.
    pub paths: Paths,
}
