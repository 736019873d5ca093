//! The golden captures in `tests/data` (written by
//! `scripts/gen_golden_captures.py`, independently of our writer): the
//! verify report on each pair is pinned, human and JSON, so a change to the
//! join, the counts, the diffs or the report's shape shows up in review.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use myc_verify::join::{Ignore, compare};
use myc_verify::report::Report;
use myc_verify::stream::{CaptureStream, file_sha256};

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(name)
}

/// Both renderings of the report on `reference` against `candidate`.
fn report(reference: (&str, Option<&str>), candidate: (&str, Option<&str>), ignore: Ignore) -> (String, String) {
    let reference_stream = CaptureStream::open(&data(reference.0), reference.1).unwrap();
    let candidate_stream = CaptureStream::open(&data(candidate.0), candidate.1).unwrap();
    let (reference_info, candidate_info) = (reference_stream.info(), candidate_stream.info());
    let comparison = compare(reference_stream, candidate_stream, ignore, 5);
    assert_eq!(reference_info.error(), None);
    assert_eq!(candidate_info.error(), None);
    let generated_at = UNIX_EPOCH + Duration::from_secs(1_764_180_000);
    let file = |name: &str| (name.to_owned(), file_sha256(&data(name)).unwrap());
    let report = Report::new(
        &comparison,
        &reference_info.interface().unwrap(),
        &candidate_info.interface().unwrap(),
        generated_at,
    )
    .with_files(file(reference.0), file(candidate.0));
    let (mut human, mut json) = (Vec::new(), Vec::new());
    report.render_human(&mut human).unwrap();
    report.render_json(&mut json).unwrap();
    // Pretty-printed for review; the compact form is the same value.
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    (String::from_utf8(human).unwrap(), serde_json::to_string_pretty(&json).unwrap())
}

#[test]
fn identical_pair() {
    let (human, json) = report(("relay.pcapng", None), ("broker-same.pcapng", None), Ignore::default());
    insta::assert_snapshot!("identical_human", human);
    insta::assert_snapshot!("identical_json", json);
}

#[test]
fn pair_with_every_kind_of_difference() {
    let (human, json) = report(("relay.pcapng", None), ("broker-differs.pcapng", None), Ignore::default());
    insta::assert_snapshot!("differs_human", human);
    insta::assert_snapshot!("differs_json", json);
}

#[test]
fn two_interfaces_of_one_file() {
    let reference = ("both.pcapng", Some("relay:/run/torq/market_data.sock"));
    let candidate = ("both.pcapng", Some("broker:market_data"));
    let (human, json) = report(reference, candidate, Ignore::default());
    let (same_human, same_json) = report(("relay.pcapng", None), ("broker-same.pcapng", None), Ignore::default());
    // The same report, but for the files it names.
    let without_files = |text: &str| -> String {
        text.lines().filter(|line| !line.contains("file")).map(|line| line.trim_end_matches(',')).collect()
    };
    assert!(json.contains("\"file\": \"both.pcapng\""), "{json}");
    assert_eq!((without_files(&human), without_files(&json)), (without_files(&same_human), without_files(&same_json)));
}
