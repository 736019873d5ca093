//! The join of a reference and a candidate stream (docs/capture.md §2):
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
//!
//! For captures of a running system the join can keep only some sources
//! ([`Options::sources`]) and trim the edges ([`Options::trim_edges`]):
//! per `(relay_domain, source)` only the common span of the two streams is
//! compared, and what lies outside it is counted as `edge` (docs/capture.md
//! §4). Trimming needs nothing beyond the end of the streams: every message
//! outside the span is still waiting for its twin when they end.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

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

/// How to compare: ignored fields, examples, edge trimming, source filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Header fields compared as if equal.
    pub ignore: Ignore,
    /// Examples kept per kind.
    pub examples: usize,
    /// Compare only the common span of each `(relay_domain, source)`;
    /// messages outside it count as `edge`, not missing or extra.
    pub trim_edges: bool,
    /// Keep only these sources on both sides (`None`: all). Messages of
    /// other sources are skipped before anything is counted.
    pub sources: Option<BTreeSet<u8>>,
}

/// The join counts of one source.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SourceCounts {
    /// Keys with identical bytes.
    pub matched: u64,
    /// Keys with different bytes.
    pub mismatched: u64,
    /// Keys only in the reference (inside the common span when trimming).
    pub missing: u64,
    /// Keys only in the candidate (inside the common span when trimming).
    pub extra: u64,
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
    /// Messages outside the common span, per side (0 unless trimming).
    pub edge: [u64; 2],
    /// The four join counts per source id; they sum to the top-level ones.
    pub per_source: BTreeMap<u8, SourceCounts>,
    /// First and last arrival time (ns since the epoch) of a compared
    /// message in either stream; `None` when no message carried one.
    pub window_ns: Option<(u64, u64)>,
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
    /// Whether edges were trimmed ([`Options::trim_edges`]).
    pub trimmed: bool,
    /// The source filter applied ([`Options::sources`]).
    pub filter: Option<BTreeSet<u8>>,
}

impl Comparison {
    /// Whether the streams are identical: something matched, and nothing
    /// else (edges aside) was counted.
    pub fn identical(&self) -> bool {
        let counts = &self.counts;
        counts.matched >= 1
            && counts.mismatched == 0
            && counts.missing == 0
            && counts.extra == 0
            && counts.duplicates == [0, 0]
            && counts.reordered == [0, 0]
            && counts.unreadable == [0, 0]
    }

    /// Whether both streams were empty (after the source filter).
    pub fn empty(&self) -> bool {
        self.counts.reference_messages == 0 && self.counts.candidate_messages == 0
    }
}

/// Compares two streams, each in arrival order: every source, edges counted.
pub fn compare(
    reference: impl IntoIterator<Item = Captured>,
    candidate: impl IntoIterator<Item = Captured>,
    ignore: Ignore,
    examples: usize,
) -> Comparison {
    compare_with(reference, candidate, &Options { ignore, examples, ..Options::default() })
}

/// Compares two streams, each in arrival order, as `options` say.
pub fn compare_with(
    reference: impl IntoIterator<Item = Captured>,
    candidate: impl IntoIterator<Item = Captured>,
    options: &Options,
) -> Comparison {
    let mut join = Join::new(options);
    let kept = |message: &Captured| match &options.sources {
        None => true,
        // An unreadable message cannot be attributed; it is kept and counted.
        Some(sources) => {
            myc_codec::Header::decode(&message.bytes).map_or(true, |header| sources.contains(&header.source.as_u8()))
        }
    };
    let mut reference = reference.into_iter().filter(kept).peekable();
    let mut candidate = candidate.into_iter().filter(kept).peekable();
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

/// Whether a source filter keeps this message: all when there is no
/// filter, and one too short for a header (it cannot be attributed, so it is
/// kept and counted as unreadable).
pub fn kept_by(sources: Option<&BTreeSet<u8>>, bytes: &[u8]) -> bool {
    sources.is_none_or(|sources| {
        myc_codec::Header::decode(bytes).map_or(true, |header| sources.contains(&header.source.as_u8()))
    })
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
struct SourceState {
    /// Recent sequences, for spotting repeats.
    recent: SeenWindow,
    /// Highest sequence seen.
    highest: u64,
    /// Lowest non-zero sequence seen (`u64::MAX` before any).
    lowest: u64,
    /// Arrival counter (sequence-0 messages, or all under ignore).
    arrivals: u64,
}

impl Default for SourceState {
    fn default() -> Self {
        SourceState { recent: SeenWindow::default(), highest: 0, lowest: u64::MAX, arrivals: 0 }
    }
}

struct Join {
    ignore: Ignore,
    examples: usize,
    trim_edges: bool,
    filter: Option<BTreeSet<u8>>,
    sides: [SideState; 2],
    counts: Counts,
    skew: Skew,
    findings: Vec<Finding>,
    kinds: [usize; 3],
}

impl Join {
    fn new(options: &Options) -> Join {
        Join {
            ignore: options.ignore,
            examples: options.examples,
            trim_edges: options.trim_edges,
            filter: options.sources.clone(),
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
        if message.arrival_ns != 0 {
            let (first, last) = self.counts.window_ns.unwrap_or((message.arrival_ns, message.arrival_ns));
            self.counts.window_ns = Some((first.min(message.arrival_ns), last.max(message.arrival_ns)));
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
            state.lowest = state.lowest.min(sequence);
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
        let per_source = self.counts.per_source.entry(key.source).or_default();
        if same(&reference.bytes, &candidate.bytes, self.ignore) {
            self.counts.matched += 1;
            per_source.matched += 1;
        } else {
            self.counts.mismatched += 1;
            per_source.mismatched += 1;
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
        let spans = if self.trim_edges { Spans::new(&reference.sources, &candidate.sources) } else { Spans::default() };
        let mut missing: Vec<_> = reference.pending.into_iter().collect();
        let mut extra: Vec<_> = candidate.pending.into_iter().collect();
        let pending = [missing.len(), extra.len()];
        missing.retain(|(key, _)| spans.inside(key));
        extra.retain(|(key, _)| spans.inside(key));
        self.counts.edge = [(pending[0] - missing.len()) as u64, (pending[1] - extra.len()) as u64];
        missing.sort_by_key(|(key, _)| *key);
        extra.sort_by_key(|(key, _)| *key);
        self.counts.missing = missing.len() as u64;
        self.counts.extra = extra.len() as u64;
        for (key, message) in missing {
            self.counts.per_source.entry(key.source).or_default().missing += 1;
            self.example(1, Finding::Missing { key, reference: message.bytes });
        }
        for (key, message) in extra {
            self.counts.per_source.entry(key.source).or_default().extra += 1;
            self.example(2, Finding::Extra { key, candidate: message.bytes });
        }
        for source in &self.counts.sources {
            self.counts.per_source.entry(*source).or_default();
        }
        let skew_ns = self.skew.max.map(|max| {
            // Percentiles from the histogram are rounded down to a recorded
            // value's bucket floor, and never above the exact max.
            let p50 = self.skew.quantile(0.5).min(max);
            (p50, self.skew.quantile(0.99).clamp(p50, max), max)
        });
        Comparison {
            counts: self.counts,
            skew_ns,
            findings: self.findings,
            trimmed: self.trim_edges,
            filter: self.filter,
        }
    }
}

/// The common span of each `(relay_domain, source)` (docs/capture.md §4):
/// sequences between the later first and the earlier last sequence of the
/// two streams, and arrival indices up to the smaller arrival count. A
/// source seen on one side only, or whose two spans do not overlap, has no
/// entry and nothing of it is trimmed.
#[derive(Default)]
struct Spans {
    /// `(relay_domain, source)` → inclusive sequence span.
    sequences: HashMap<(u8, u8), (u64, u64)>,
    /// `(relay_domain, source)` → arrival indices `1..=n` in common.
    arrivals: HashMap<(u8, u8), u64>,
}

impl Spans {
    fn new(reference: &HashMap<(u8, u8), SourceState>, candidate: &HashMap<(u8, u8), SourceState>) -> Spans {
        let mut spans = Spans::default();
        for (id, left) in reference {
            let Some(right) = candidate.get(id) else { continue };
            let (first, last) = (left.lowest.max(right.lowest), left.highest.min(right.highest));
            if left.lowest != u64::MAX && right.lowest != u64::MAX && first <= last {
                spans.sequences.insert(*id, (first, last));
            }
            if left.arrivals > 0 && right.arrivals > 0 {
                spans.arrivals.insert(*id, left.arrivals.min(right.arrivals));
            }
        }
        spans
    }

    /// Whether `key` lies inside its common span (or nothing is trimmed).
    fn inside(&self, key: &Key) -> bool {
        let id = (key.relay_domain, key.source);
        if key.by_arrival {
            self.arrivals.get(&id).is_none_or(|common| key.number <= *common)
        } else {
            self.sequences.get(&id).is_none_or(|(first, last)| (*first..=*last).contains(&key.number))
        }
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
            // The rank-th smallest overall is among the largest negative
            // magnitudes; a bucket's top magnitude rounds the value down.
            let within = (n_negative - rank + 1) as f64 / n_negative as f64;
            -signed(self.negative.value_at_quantile(within))
        } else {
            let within = (rank - n_negative) as f64 / n_positive.max(1) as f64;
            // The histogram answers a bucket's top; its floor never exceeds
            // the value recorded, so percentiles round down.
            signed(self.positive.lowest_equivalent(self.positive.value_at_quantile(within)))
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
