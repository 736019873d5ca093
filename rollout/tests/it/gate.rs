//! Every way the gate refuses an advance, one test each, with the words the
//! operator reads; and what it accepts: the service's own source clean,
//! whatever the other sources in the same report say.

use myc_rollout::Stage;

use super::{Report, actor, ago, now, refused, rollout};

const SERVICE: &str = "polygon_adapter";

/// The refusal an advance of `polygon_adapter` at relay gets with `report`;
/// asserts that nothing moved and nothing was audited.
fn refusal(report: &Report) -> String {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    let why = refused(rollout.advance(SERVICE, Some(&report.json()), false, "", &actor(), now()));
    assert_eq!(rollout.plan().unwrap().stage_of(SERVICE), Stage::Relay, "nothing moved: {why}");
    assert!(rollout.history(None).unwrap().entries.is_empty(), "a refusal is not audited: {why}");
    why
}

fn assert_says(why: &str, words: &[&str]) {
    for word in words {
        assert!(why.contains(word), "{word:?} not in the refusal: {why}");
    }
}

#[test]
fn a_good_report_advances_and_its_digest_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    let entry = rollout.advance(SERVICE, Some(&Report::good().json()), false, "verified", &actor(), now()).unwrap();
    assert_eq!((entry.from.as_str(), entry.to.as_str(), entry.forced), ("relay", "dual_relay_primary", false));
    assert_eq!(entry.evidence_sha256.as_deref().map(str::len), Some(64));
    assert_eq!(rollout.plan().unwrap().stage_of(SERVICE), Stage::DualRelayPrimary);
}

#[test]
fn another_sources_differences_do_not_count_against_this_service() {
    // Kraken (source 2) is still on the relay only: every message of its is
    // missing on the broker. Polygon's own source is clean.
    let mut report = Report::good();
    report.per_source = vec![(4, [20_000, 0, 0, 0]), (2, [0, 0, 15_004, 0])];
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    rollout.advance(SERVICE, Some(&report.json()), false, "", &actor(), now()).unwrap();
    assert_eq!(rollout.plan().unwrap().stage_of(SERVICE), Stage::DualRelayPrimary);
    // …and the same report does not clear Kraken.
    let why = refused(rollout.advance("kraken_adapter", Some(&report.json()), false, "", &actor(), now()));
    assert_says(&why, &["kraken_adapter's source 2 differs", "missing 15004"]);
}

#[test]
fn no_evidence_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let why = refused(rollout(dir.path()).advance(SERVICE, None, false, "", &actor(), now()));
    assert_says(&why, &["no evidence", "--evidence REPORT.json", "--force"]);
}

#[test]
fn something_that_is_not_a_report_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let why =
        refused(rollout(dir.path()).advance(SERVICE, Some(b"{\"verdict\":\"identical\"}"), false, "", &actor(), now()));
    assert_says(&why, &["not a verify JSON report"]);
}

#[test]
fn a_report_without_per_source_is_refused() {
    let mut report = Report::good();
    report.with_per_source = false;
    assert_says(&refusal(&report), &["no per_source", "current myc verify"]);
}

#[test]
fn a_stream_compared_with_itself_is_refused() {
    let mut report = Report::good();
    report.candidate.clone_from(&report.reference);
    assert_says(&refusal(&report), &["candidate is \"relay:/tmp/torq/market_data.sock\"", "broker: or nats:"]);
}

#[test]
fn a_reference_that_is_not_the_relay_is_refused() {
    let mut report = Report::good();
    report.reference = "broker:market_data".to_owned();
    assert_says(&refusal(&report), &["reference is \"broker:market_data\"", "relay: interface"]);
}

#[test]
fn a_candidate_that_is_not_the_broker_is_refused() {
    let mut report = Report::good();
    report.candidate = "produce:polygon_adapter".to_owned();
    assert_says(&refusal(&report), &["candidate is \"produce:polygon_adapter\""]);
    report.candidate = "nats:market_data".to_owned();
    let dir = tempfile::tempdir().unwrap();
    rollout(dir.path()).advance(SERVICE, Some(&report.json()), false, "", &actor(), now()).unwrap();
}

#[test]
fn totals_that_disagree_with_per_source_are_refused() {
    let mut report = Report::good();
    report.totals = Some([25_000, 0, 0, 0]);
    report.per_source = vec![(4, [20_000, 0, 0, 0]), (2, [4_000, 0, 1_000, 0])];
    assert_says(&refusal(&report), &["inconsistent", "per_source adds up to matched 24000", "missing 1000", "edited"]);
}

#[test]
fn a_hand_edited_verdict_is_refused() {
    let mut report = Report::good();
    report.per_source = vec![(4, [20_000, 0, 0, 0]), (2, [5_000, 0, 3, 0])];
    report.verdict = Some("identical".to_owned());
    assert_says(&refusal(&report), &["inconsistent", "verdict is \"identical\"", "missing 3"]);
    report.verdict = Some("IDENTICAL!".to_owned());
    assert_says(&refusal(&report), &["\"IDENTICAL!\" is not identical, differs or empty"]);
}

#[test]
fn the_services_own_source_with_a_difference_is_refused() {
    let mut report = Report::good();
    report.per_source = vec![(4, [19_999, 1, 0, 0]), (2, [5_000, 0, 0, 0])];
    assert_says(&refusal(&report), &["polygon_adapter's source 4 differs", "mismatched 1, missing 0, extra 0"]);
}

#[test]
fn a_report_without_the_services_source_is_refused() {
    let mut report = Report::good();
    report.per_source = vec![(2, [50_000, 0, 0, 0])];
    assert_says(
        &refusal(&report),
        &["no messages from polygon_adapter's source 4", "[2]", "--service polygon_adapter"],
    );
}

#[test]
fn too_few_of_the_services_own_messages_are_refused_even_when_the_total_is_large() {
    let mut report = Report::good();
    report.per_source = vec![(4, [9_999, 0, 0, 0]), (2, [90_000, 0, 0, 0])];
    assert_says(&refusal(&report), &["source 4 matched 9999", "at least 10000 (gate.min_messages)"]);
}

#[test]
fn a_service_without_a_source_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let why =
        refused(rollout(dir.path()).advance("sourceless", Some(&Report::good().json()), false, "", &actor(), now()));
    assert_says(&why, &["sourceless has no source id", "[services.sourceless] source = N"]);
}

#[test]
fn two_empty_streams_are_refused() {
    let mut report = Report::good();
    report.per_source = Vec::new();
    assert_says(&refusal(&report), &["two empty streams", "verdict empty"]);
}

#[test]
fn a_difference_not_counted_per_source_is_refused() {
    let mut report = Report::good();
    report.duplicates = [0, 3];
    assert_says(&refusal(&report), &["\"differs\" for a reason it does not count per source", "[0, 3]"]);
}

#[test]
fn evidence_gathered_before_the_last_stage_change_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    // The operator rolled back 35 minutes ago: the report's window (40 to 30
    // minutes ago) began in the previous stage.
    let rolled_back = now() - std::time::Duration::from_secs(35 * 60);
    rollout.set(SERVICE, Stage::Relay, "incident", &actor(), rolled_back).unwrap();
    let why = refused(rollout.advance(SERVICE, Some(&Report::good().json()), false, "", &actor(), now()));
    assert_says(&why, &["window starts at", "not after polygon_adapter's last stage change at", "verify again"]);
    assert_eq!(rollout.history(None).unwrap().entries.len(), 1);
}

#[test]
fn a_window_shorter_than_min_duration_is_refused() {
    let mut report = Report::good();
    report.window = (ago(31 * 60), ago(31 * 60 - 59));
    assert_says(&refusal(&report), &["window is 59s long", "at least 1m (gate.min_duration)"]);
}

#[test]
fn a_report_that_already_advanced_the_service_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    let report = Report::good().json();
    rollout.advance(SERVICE, Some(&report), false, "", &actor(), now()).unwrap();
    let why = refused(rollout.advance(SERVICE, Some(&report), false, "", &actor(), now()));
    assert_says(&why, &["already advanced polygon_adapter once", "evidence_sha256", "verify again"]);
    assert_eq!(rollout.plan().unwrap().stage_of(SERVICE), Stage::DualRelayPrimary);
}

#[test]
fn a_report_from_the_future_is_refused() {
    let mut report = Report::good();
    report.generated_at = humantime::format_rfc3339_micros(now() + std::time::Duration::from_secs(61)).to_string();
    assert_says(&refusal(&report), &["1m 1s in the future", "check the clock"]);
    // Within a minute is clock skew, not forgery.
    report.generated_at = humantime::format_rfc3339_micros(now() + std::time::Duration::from_secs(59)).to_string();
    let dir = tempfile::tempdir().unwrap();
    rollout(dir.path()).advance(SERVICE, Some(&report.json()), false, "", &actor(), now()).unwrap();
}

#[test]
fn a_stale_report_is_refused() {
    let mut report = Report::good();
    report.window = (ago(7_300), ago(7_200));
    report.generated_at = ago(7_100);
    assert_says(&refusal(&report), &["1h 58m 20s old", "at most 1h (gate.max_age)"]);
}

#[test]
fn an_unreadable_audit_line_blocks_the_gate_but_not_force() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    rollout.set("kraken_adapter", Stage::DualRelayPrimary, "", &actor(), now()).unwrap();
    // A crash tore the last line mid-write.
    let mut log = std::fs::OpenOptions::new().append(true).open(&rollout.audit_log).unwrap();
    std::io::Write::write_all(&mut log, b"{\"time\":\"2025-11-26T17:59").unwrap();
    let why = refused(rollout.advance(SERVICE, Some(&Report::good().json()), false, "", &actor(), now()));
    assert_says(&why, &["1 unreadable line(s) (first: line 2)", "repair the log, or --force"]);
    rollout.advance(SERVICE, None, true, "log repaired later", &actor(), now()).unwrap();
    let log = rollout.history(None).unwrap();
    assert_eq!((log.entries.len(), log.unreadable.len()), (2, 1), "the torn line hid only itself");
    assert_eq!(log.entries[1].service, SERVICE, "the entry after the torn line is whole");
    // A hand-edited time is as unreadable as a torn line.
    let text =
        std::fs::read_to_string(&rollout.audit_log).unwrap().replace("\"time\":\"2025", "\"time\":\"yesterday 2025");
    std::fs::write(&rollout.audit_log, text).unwrap();
    let log = rollout.history(None).unwrap();
    assert_eq!(log.unreadable.len(), 3, "{:?}", log.unreadable);
    assert!(log.unreadable[0].error.contains("is not an RFC 3339 time"), "{:?}", log.unreadable);
}
