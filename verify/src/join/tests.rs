//! Hand-built stream pairs, one per outcome kind, with exact counts.

use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};

use super::*;

fn message(source: u8, sequence: u64, marker: u8) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, Source::from_u8(source), sequence, 1_000 + sequence);
    MessageBuilder::new(header).tlv(TlvType::from_u8(200), &[marker; 4]).unwrap().build()
}

fn stream(messages: &[(u8, u64, u8)], first_arrival: u64) -> Vec<Captured> {
    messages
        .iter()
        .enumerate()
        .map(|(index, &(source, sequence, marker))| Captured {
            bytes: message(source, sequence, marker),
            arrival_ns: first_arrival + 10 * index as u64,
        })
        .collect()
}

fn check(reference: &[(u8, u64, u8)], candidate: &[(u8, u64, u8)], ignore: Ignore) -> Counts {
    compare(stream(reference, 100), stream(candidate, 105), ignore, 5).counts
}

#[test]
fn identical_streams_match_everything() {
    let messages = [(2, 1, 0), (2, 2, 0), (4, 1, 0), (4, 0, 0), (4, 0, 1)];
    let comparison = compare(stream(&messages, 100), stream(&messages, 150), Ignore::default(), 5);
    assert!(comparison.identical());
    assert_eq!(comparison.counts.matched, 5);
    assert_eq!(comparison.counts.sources, BTreeSet::from([2, 4]));
    assert_eq!(comparison.skew_ns, Some((50, 50, 50)));
}

#[test]
fn the_seen_window_spots_repeats_and_slides() {
    let mut window = SeenWindow::default();
    assert!(!window.seen_before(5));
    assert!(window.seen_before(5));
    assert!(!window.seen_before(70));
    assert!(!window.seen_before(3), "never seen");
    let far = 5 + DUPLICATE_WINDOW * 3;
    assert!(!window.seen_before(far));
    assert!(window.seen_before(far));
    assert!(!window.seen_before(70), "slid out of the window");
    assert!(window.words.len() <= SeenWindow::MAX_WORDS);
}

#[test]
fn skew_percentiles_are_signed() {
    let mut skew = Skew::default();
    for value in [-30, -20, -10, 10, 20, 30, 40, 50, 60, 70] {
        skew.record(value);
    }
    assert_eq!((skew.quantile(0.1), skew.quantile(0.3), skew.quantile(0.5), skew.quantile(0.99)), (-30, -10, 20, 70));
    assert_eq!(skew.max, Some(70));
}

#[test]
fn each_outcome_is_counted_exactly() {
    let counts = check(
        &[(2, 1, 0), (2, 2, 0), (2, 3, 0), (2, 4, 0)],
        &[(2, 1, 0), (2, 2, 9), (2, 5, 0), (2, 5, 0), (2, 4, 0), (2, 3, 0)],
        Ignore::default(),
    );
    assert_eq!((counts.matched, counts.mismatched, counts.missing, counts.extra), (3, 1, 0, 1));
    assert_eq!(counts.duplicates, [0, 1], "the second 5 is a repeat");
    assert_eq!(counts.reordered, [0, 2], "4 and 3 arrive after 5");
    let counts = check(&[(2, 1, 0), (2, 2, 0)], &[(2, 1, 0)], Ignore::default());
    assert_eq!((counts.matched, counts.missing, counts.extra), (1, 1, 0));
}

#[test]
fn sequence_zero_messages_join_by_arrival_order_and_are_never_reordered() {
    let counts = check(&[(4, 0, 1), (4, 0, 2), (4, 0, 3)], &[(4, 0, 1), (4, 0, 3), (4, 0, 2)], Ignore::default());
    assert_eq!((counts.matched, counts.mismatched), (1, 2));
    assert_eq!(counts.reordered, [0, 0]);
}

#[test]
fn ignore_rules_compare_as_if_the_fields_were_equal() {
    let reference = message(2, 7, 0);
    let mut candidate = reference.clone();
    candidate[16] ^= 1; // timestamp
    candidate[28] = 9; // checksum
    let pair = |ignore| {
        compare(
            [Captured { bytes: reference.clone(), arrival_ns: 1 }],
            [Captured { bytes: candidate.clone(), arrival_ns: 2 }],
            ignore,
            5,
        )
        .counts
    };
    assert_eq!(pair(Ignore::default()).mismatched, 1);
    assert_eq!(pair(Ignore { timestamp: true, ..Ignore::default() }).mismatched, 1);
    assert_eq!(pair(Ignore { timestamp: true, checksum: true, ..Ignore::default() }).matched, 1);
    // Under --ignore sequence, rebuilt messages with other sequences still join by order.
    let counts = check(
        &[(2, 1, 0), (2, 2, 0)],
        &[(2, 11, 0), (2, 12, 0)],
        Ignore { sequence: true, timestamp: true, ..Ignore::default() },
    );
    assert_eq!(counts.matched, 2);
}

#[test]
fn examples_are_bounded_per_kind_and_memory_by_the_skew() {
    let reference: Vec<_> = (1..=100).map(|sequence| (2, sequence, 0)).collect();
    let candidate: Vec<_> = (1..=100).map(|sequence| (2, sequence, 1)).collect();
    let comparison = compare(stream(&reference, 0), stream(&candidate, 5), Ignore::default(), 3);
    assert_eq!(comparison.counts.mismatched, 100);
    assert_eq!(comparison.findings.len(), 3);
}

#[test]
fn a_message_too_short_for_a_header_is_counted_not_keyed() {
    let comparison =
        compare([Captured { bytes: vec![1, 2, 3], arrival_ns: 0 }], std::iter::empty(), Ignore::default(), 5);
    assert_eq!(comparison.counts.unreadable, [1, 0]);
    assert!(!comparison.identical());
}

fn trimmed(reference: &[(u8, u64, u8)], candidate: &[(u8, u64, u8)]) -> Comparison {
    let options = Options { examples: 5, trim_edges: true, ..Options::default() };
    compare_with(stream(reference, 100), stream(candidate, 105), &options)
}

fn sequences(source: u8, range: std::ops::RangeInclusive<u64>) -> Vec<(u8, u64, u8)> {
    range.map(|sequence| (source, sequence, 0)).collect()
}

#[test]
fn trimming_counts_what_lies_outside_the_common_span_as_edge() {
    // The candidate's tap connected late (lost 1–3) and closed early (4 still in flight).
    let comparison = trimmed(&sequences(2, 1..=10), &sequences(2, 4..=9));
    assert_eq!((comparison.counts.matched, comparison.counts.missing, comparison.counts.extra), (6, 0, 0));
    assert_eq!(comparison.counts.edge, [4, 0]);
    assert!(comparison.identical() && comparison.trimmed);
    assert!(comparison.findings.is_empty(), "an edge is not an example");
    // Without trimming the same streams differ.
    let counted = compare(stream(&sequences(2, 1..=10), 100), stream(&sequences(2, 4..=9), 105), Ignore::default(), 5);
    assert_eq!((counted.counts.missing, counted.counts.edge), (4, [0, 0]));
    assert!(!counted.identical());
}

#[test]
fn a_loss_inside_the_span_is_still_missing_and_a_repeat_still_counted() {
    let mut candidate = sequences(2, 3..=12);
    candidate.retain(|(_, sequence, _)| *sequence != 7);
    candidate.insert(4, (2, 5, 0));
    let comparison = trimmed(&sequences(2, 1..=10), &candidate);
    assert_eq!((comparison.counts.missing, comparison.counts.extra), (1, 0));
    assert_eq!(comparison.counts.duplicates, [0, 1]);
    assert_eq!(comparison.counts.edge, [2, 2]);
    assert!(matches!(comparison.findings[..], [Finding::Missing { key: Key { number: 7, .. }, .. }]));
    assert!(!comparison.identical());
}

#[test]
fn spans_that_do_not_overlap_trim_nothing() {
    let comparison = trimmed(&sequences(2, 1..=5), &sequences(2, 6..=9));
    assert_eq!((comparison.counts.missing, comparison.counts.extra, comparison.counts.edge), (5, 4, [0, 0]));
    // A source on one side only is never trimmed either.
    let mut reference = sequences(2, 1..=5);
    reference.extend(sequences(4, 1..=3));
    let comparison = trimmed(&reference, &sequences(2, 1..=5));
    assert_eq!((comparison.counts.missing, comparison.counts.per_source[&4].missing), (3, 3));
}

#[test]
fn sequence_zero_messages_are_trimmed_by_arrival_count() {
    let comparison = trimmed(&[(4, 0, 1), (4, 0, 2), (4, 0, 3)], &[(4, 0, 1), (4, 0, 2)]);
    assert_eq!((comparison.counts.matched, comparison.counts.missing, comparison.counts.edge), (2, 0, [1, 0]));
}

#[test]
fn a_source_filter_keeps_only_those_sources_on_both_sides() {
    let mut reference = sequences(2, 1..=5);
    reference.extend(sequences(4, 1..=5));
    let options = Options { examples: 5, sources: Some(BTreeSet::from([4])), ..Options::default() };
    let comparison = compare_with(stream(&reference, 100), stream(&sequences(4, 1..=5), 105), &options);
    assert_eq!((comparison.counts.matched, comparison.counts.missing), (5, 0));
    assert_eq!(comparison.counts.reference_messages, 5);
    assert_eq!(comparison.counts.per_source.keys().copied().collect::<Vec<_>>(), [4]);
    assert!(comparison.identical());
}

#[test]
fn per_source_counts_sum_to_the_totals() {
    let comparison = compare(
        stream(&[(2, 1, 0), (2, 2, 0), (4, 1, 0), (4, 2, 0)], 100),
        stream(&[(2, 1, 0), (4, 1, 9), (4, 3, 0)], 105),
        Ignore::default(),
        5,
    );
    let per_source = &comparison.counts.per_source;
    assert_eq!(per_source[&2], SourceCounts { matched: 1, mismatched: 0, missing: 1, extra: 0 });
    assert_eq!(per_source[&4], SourceCounts { matched: 0, mismatched: 1, missing: 1, extra: 1 });
    let total: u64 = per_source.values().map(|counts| counts.matched + counts.mismatched + counts.missing).sum();
    assert_eq!(total, comparison.counts.matched + comparison.counts.mismatched + comparison.counts.missing);
}

#[test]
fn nothing_compared_is_never_identical() {
    let comparison = compare(std::iter::empty(), std::iter::empty(), Ignore::default(), 5);
    assert!(!comparison.identical() && comparison.empty());
    assert_eq!(comparison.counts.window_ns, None);
}

#[test]
fn skew_percentiles_never_exceed_the_max() {
    // Values whose histogram bucket tops lie above them (a report once said p50 5003 > max 5000).
    for value in [5_000, 90_000, 1_040_001, 123_456_789] {
        let reference = stream(&[(2, 1, 0), (2, 2, 0)], 0);
        let candidate: Vec<_> = reference
            .iter()
            .map(|message| Captured { bytes: message.bytes.clone(), arrival_ns: message.arrival_ns + value })
            .collect();
        let (p50, p99, max) = compare(reference, candidate, Ignore::default(), 5).skew_ns.unwrap();
        assert!(p50 <= p99 && p99 <= max && max == i64::try_from(value).unwrap(), "{p50} {p99} {max}");
    }
}
