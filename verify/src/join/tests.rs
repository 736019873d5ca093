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
