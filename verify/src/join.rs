//! The join of a reference and a candidate stream (capture spec §2):
//! messages are keyed by `(relay_domain, source, sequence)` (or by arrival
//! order for sequence 0, and for everything under `--ignore sequence`), and
//! each key ends up matched, mismatched, missing or extra; repeats and
//! out-of-order arrivals are counted per side; arrival skew is measured.
//!
//! Memory is bounded by how far the streams are apart, not by their length:
//! the two streams are consumed together in arrival order, a message waits
//! in a pending map only until its twin arrives, and duplicate detection
//! keeps one bit per sequence for the last [`DUPLICATE_WINDOW`] sequences
//! per source and side (a repeat older than that is not recognised). It deliberately knows nothing of
//! files or sockets: callers feed [`Captured`] messages.

use std::collections::{BTreeSet, VecDeque};

use foldhash::HashMap;

use hdrhistogram::Histogram;

/// Sequences remembered per `(relay_domain, source)` and side for spotting
/// repeats: a sliding window of this many sequence numbers below the highest
/// seen (one bit each). Arrival-order keys cannot repeat, so need none.
pub const DUPLICATE_WINDOW: u64 = 1 << 20;

/// One message as a tap saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    /// The exact message bytes.
    pub bytes: Vec<u8>,
    /// Arrival time, ns since the Unix epoch (0 when unknown).
    pub arrival_ns: u64,
}

/// Header fields compared as if equal (for rebuilt rather than forwarded
/// messages).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ignore {
    /// `--ignore timestamp`
    pub timestamp: bool,
    /// `--ignore checksum`
    pub checksum: bool,
    /// `--ignore sequence` (the key then uses arrival order per source).
    pub sequence: bool,
}

/// The join key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    /// The header's `relay_domain`.
    pub relay_domain: u8,
    /// The header's `source`.
    pub source: u8,
    /// The sequence, or the arrival index when `by_arrival`.
    pub number: u64,
    /// Whether `number` is an arrival index (sequence 0, or ignored).
    pub by_arrival: bool,
}

/// Which stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The reference (normally the relay).
    Reference,
    /// The candidate (normally the broker).
    Candidate,
}

/// What happened to one key or one arrival, for examples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// Different bytes: both messages.
    Mismatched {
        /// The key.
        key: Key,
        /// The reference's bytes.
        reference: Vec<u8>,
        /// The candidate's bytes.
        candidate: Vec<u8>,
    },
    /// Only in the reference.
    Missing {
        /// The key.
        key: Key,
        /// The reference's bytes.
        reference: Vec<u8>,
    },
    /// Only in the candidate.
    Extra {
        /// The key.
        key: Key,
        /// The candidate's bytes.
        candidate: Vec<u8>,
    },
}

/// The counts of a comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    /// Messages in the reference.
    pub reference_messages: u64,
    /// Messages in the candidate.
    pub candidate_messages: u64,
    /// Keys with identical bytes.
    pub matched: u64,
    /// Keys with different bytes.
    pub mismatched: u64,
    /// Keys only in the reference.
    pub missing: u64,
    /// Keys only in the candidate.
    pub extra: u64,
    /// Repeats of a key, per side.
    pub duplicates: [u64; 2],
    /// Arrivals below the highest sequence already seen from their source, per side.
    pub reordered: [u64; 2],
    /// Messages too short to hold a header (they cannot be keyed), per side.
    pub unreadable: [u64; 2],
    /// Source ids seen in either stream.
    pub sources: BTreeSet<u8>,
}

/// The outcome: counts, skew percentiles and up to `examples` findings per kind.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The counts.
    pub counts: Counts,
    /// Candidate − reference arrival skew: (p50, p99, max) in ns, when both
    /// sides had arrival times and something matched.
    pub skew_ns: Option<(i64, i64, i64)>,
    /// Examples, at most `examples` of each kind, in the order found.
    pub findings: Vec<Finding>,
}

impl Comparison {
    /// Whether the streams are identical: matched only.
    pub fn identical(&self) -> bool {
        let counts = &self.counts;
        counts.mismatched == 0
            && counts.missing == 0
            && counts.extra == 0
            && counts.duplicates == [0, 0]
            && counts.reordered == [0, 0]
            && counts.unreadable == [0, 0]
    }
}

/// Compares two streams, each in arrival order.
pub fn compare(
    reference: impl IntoIterator<Item = Captured>,
    candidate: impl IntoIterator<Item = Captured>,
    ignore: Ignore,
    examples: usize,
) -> Comparison {
    let mut join = Join::new(ignore, examples);
    let mut reference = reference.into_iter().peekable();
    let mut candidate = candidate.into_iter().peekable();
    // Consume in arrival order so that twins meet soon and pending stays
    // small; when both heads carry the same key (aligned streams, the usual
    // case) they are joined at once, without a trip through the pending maps.
    loop {
        let take_reference = match (reference.peek(), candidate.peek()) {
            (Some(left), Some(right)) => {
                if join.same_next_key(left, right) {
                    if let (Some(left), Some(right)) = (reference.next(), candidate.next()) {
                        join.add_pair(left, right);
                    }
                    continue;
                }
                left.arrival_ns <= right.arrival_ns
            }
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => break,
        };
        if take_reference {
            if let Some(message) = reference.next() {
                join.add(Side::Reference, message);
            }
        } else if let Some(message) = candidate.next() {
            join.add(Side::Candidate, message);
        }
    }
    join.finish()
}

/// Per-side bookkeeping.
#[derive(Default)]
struct SideState {
    /// Messages waiting for their twin, by key.
    pending: HashMap<Key, Captured>,
    /// What is known of each `(relay_domain, source)`.
    sources: HashMap<(u8, u8), SourceState>,
}

/// Per-source bookkeeping of one side.
#[derive(Default)]
struct SourceState {
    /// Recent sequences, for spotting repeats.
    recent: SeenWindow,
    /// Highest sequence seen.
    highest: u64,
    /// Arrival counter (sequence-0 messages, or all under ignore).
    arrivals: u64,
}

struct Join {
    ignore: Ignore,
    examples: usize,
    sides: [SideState; 2],
    counts: Counts,
    skew: Skew,
    findings: Vec<Finding>,
    kinds: [usize; 3],
}

impl Join {
    fn new(ignore: Ignore, examples: usize) -> Join {
        Join {
            ignore,
            examples,
            sides: [SideState::default(), SideState::default()],
            counts: Counts::default(),
            skew: Skew::default(),
            findings: Vec::new(),
            kinds: [0; 3],
        }
    }

    /// Whether the next reference and candidate messages would get the same
    /// key (without recording anything).
    fn same_next_key(&self, reference: &Captured, candidate: &Captured) -> bool {
        let peek = |side: Side, message: &Captured| {
            let header = myc_codec::Header::decode(&message.bytes).ok()?;
            let (relay_domain, source) = (header.relay_domain.as_u8(), header.source.as_u8());
            let by_arrival = header.sequence == 0 || self.ignore.sequence;
            let number = if by_arrival {
                self.sides[side as usize].sources.get(&(relay_domain, source)).map_or(0, |state| state.arrivals) + 1
            } else {
                header.sequence
            };
            Some(Key { relay_domain, source, number, by_arrival })
        };
        peek(Side::Reference, reference).is_some_and(|key| Some(key) == peek(Side::Candidate, candidate))
    }

    /// Adds the next message of each side.
    fn add_pair(&mut self, reference: Captured, candidate: Captured) {
        match (self.key(Side::Reference, &reference), self.key(Side::Candidate, &candidate)) {
            (Some(left), Some(right)) if left == right => self.settle(left, reference, candidate),
            (left, right) => {
                if let Some(key) = left {
                    self.place(Side::Reference, key, reference);
                }
                if let Some(key) = right {
                    self.place(Side::Candidate, key, candidate);
                }
            }
        }
    }

    fn add(&mut self, side: Side, message: Captured) {
        if let Some(key) = self.key(side, &message) {
            self.place(side, key, message);
        }
    }

    /// Counts `message` and finds its key; `None` for a message that cannot
    /// be joined (unreadable, or a repeat).
    fn key(&mut self, side: Side, message: &Captured) -> Option<Key> {
        let index = side as usize;
        match side {
            Side::Reference => self.counts.reference_messages += 1,
            Side::Candidate => self.counts.candidate_messages += 1,
        }
        let Ok(header) = myc_codec::Header::decode(&message.bytes) else {
            self.counts.unreadable[index] += 1;
            return None;
        };
        let (relay_domain, source, sequence) = (header.relay_domain.as_u8(), header.source.as_u8(), header.sequence);
        self.counts.sources.insert(source);
        let state = self.sides[index].sources.entry((relay_domain, source)).or_default();
        let by_arrival = sequence == 0 || self.ignore.sequence;
        let number = if by_arrival {
            state.arrivals += 1;
            state.arrivals
        } else {
            sequence
        };
        if !by_arrival && state.recent.seen_before(sequence) {
            self.counts.duplicates[index] += 1;
            return None;
        }
        if sequence != 0 {
            if sequence < state.highest {
                self.counts.reordered[index] += 1;
            }
            state.highest = state.highest.max(sequence);
        }
        Some(Key { relay_domain, source, number, by_arrival })
    }

    /// Joins `message` with its waiting twin, or leaves it waiting.
    fn place(&mut self, side: Side, key: Key, message: Captured) {
        let index = side as usize;
        match self.sides[1 - index].pending.remove(&key) {
            Some(twin) => {
                let (reference, candidate) = if side == Side::Reference { (message, twin) } else { (twin, message) };
                self.settle(key, reference, candidate);
            }
            None => {
                self.sides[index].pending.insert(key, message);
            }
        }
    }

    fn settle(&mut self, key: Key, reference: Captured, candidate: Captured) {
        if reference.arrival_ns != 0 && candidate.arrival_ns != 0 {
            let skew = i128::from(candidate.arrival_ns) - i128::from(reference.arrival_ns);
            self.skew.record(i64::try_from(skew).unwrap_or(i64::MAX));
        }
        if same(&reference.bytes, &candidate.bytes, self.ignore) {
            self.counts.matched += 1;
        } else {
            self.counts.mismatched += 1;
            self.example(0, Finding::Mismatched { key, reference: reference.bytes, candidate: candidate.bytes });
        }
    }

    fn example(&mut self, kind: usize, finding: Finding) {
        if self.kinds[kind] < self.examples {
            self.kinds[kind] += 1;
            self.findings.push(finding);
        }
    }

    fn finish(mut self) -> Comparison {
        let [reference, candidate] = std::mem::take(&mut self.sides);
        let mut missing: Vec<_> = reference.pending.into_iter().collect();
        let mut extra: Vec<_> = candidate.pending.into_iter().collect();
        missing.sort_by_key(|(key, _)| *key);
        extra.sort_by_key(|(key, _)| *key);
        self.counts.missing = missing.len() as u64;
        self.counts.extra = extra.len() as u64;
        for (key, message) in missing {
            self.example(1, Finding::Missing { key, reference: message.bytes });
        }
        for (key, message) in extra {
            self.example(2, Finding::Extra { key, candidate: message.bytes });
        }
        let skew_ns = self.skew.max.map(|max| (self.skew.quantile(0.5), self.skew.quantile(0.99), max));
        Comparison { counts: self.counts, skew_ns, findings: self.findings }
    }
}

/// One bit per sequence number in a window that slides up with the highest
/// sequence seen; a sequence below the window is assumed new.
#[derive(Default)]
struct SeenWindow {
    /// The sequence of bit 0 of `words[0]`.
    base: u64,
    words: VecDeque<u64>,
}

impl SeenWindow {
    const MAX_WORDS: usize = (DUPLICATE_WINDOW / 64) as usize;

    /// Marks `sequence` seen; returns whether it had been seen already.
    fn seen_before(&mut self, sequence: u64) -> bool {
        if self.words.is_empty() {
            self.base = sequence - sequence % 64;
        }
        if sequence < self.base {
            return false;
        }
        let word = usize::try_from((sequence - self.base) / 64).unwrap_or(usize::MAX);
        if word >= self.words.len() {
            let needed = word + 1;
            if needed > Self::MAX_WORDS + self.words.len() {
                // A jump far ahead: start the window afresh there.
                self.words.clear();
                self.base = sequence - sequence % 64;
                return self.seen_before(sequence);
            }
            self.words.resize(needed, 0);
            while self.words.len() > Self::MAX_WORDS {
                self.words.pop_front();
                self.base += 64;
            }
        }
        let word = usize::try_from((sequence - self.base) / 64).unwrap_or(0);
        let bit = 1u64 << ((sequence - self.base) % 64);
        let seen = self.words[word] & bit != 0;
        self.words[word] |= bit;
        seen
    }
}

/// Signed skews: magnitudes of negative and non-negative ones in two
/// histograms (3 significant digits each), read together by rank.
struct Skew {
    negative: Histogram<u64>,
    positive: Histogram<u64>,
    max: Option<i64>,
}

impl Default for Skew {
    fn default() -> Self {
        let histogram = || Histogram::new(3).unwrap_or_else(|_| unreachable!("3 significant digits is valid"));
        Skew { negative: histogram(), positive: histogram(), max: None }
    }
}

impl Skew {
    fn record(&mut self, skew: i64) {
        self.max = Some(self.max.map_or(skew, |max| max.max(skew)));
        let _ = if skew < 0 {
            self.negative.record(skew.unsigned_abs())
        } else {
            self.positive.record(skew.unsigned_abs())
        };
    }

    /// The skew at quantile `q` of all recorded skews.
    fn quantile(&self, q: f64) -> i64 {
        let (n_negative, n_positive) = (self.negative.len(), self.positive.len());
        let total = n_negative + n_positive;
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "ranks"
        )]
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total.max(1));
        let signed = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        #[allow(clippy::cast_precision_loss, reason = "quantiles")]
        if rank <= n_negative {
            // The rank-th smallest overall is among the largest negative magnitudes.
            let within = (n_negative - rank + 1) as f64 / n_negative as f64;
            -signed(self.negative.value_at_quantile(within))
        } else {
            let within = (rank - n_negative) as f64 / n_positive.max(1) as f64;
            signed(self.positive.value_at_quantile(within))
        }
    }
}

/// Byte equality, with ignored header fields treated as equal.
fn same(reference: &[u8], candidate: &[u8], ignore: Ignore) -> bool {
    if reference.len() != candidate.len() {
        return false;
    }
    if !(ignore.sequence || ignore.timestamp || ignore.checksum) || reference.len() < myc_codec::HEADER_LEN {
        return reference == candidate;
    }
    let (reference_header, reference_rest) = reference.split_at(myc_codec::HEADER_LEN);
    let (candidate_header, candidate_rest) = candidate.split_at(myc_codec::HEADER_LEN);
    let masked = |header: &[u8]| {
        let mut copy = [0u8; myc_codec::HEADER_LEN];
        copy.copy_from_slice(header);
        for (field, on) in [(8..16, ignore.sequence), (16..24, ignore.timestamp), (28..32, ignore.checksum)] {
            if on {
                copy[field].fill(0);
            }
        }
        copy
    };
    reference_rest == candidate_rest && masked(reference_header) == masked(candidate_header)
}

#[cfg(test)]
mod tests;
