//! Table tests of the guard's rules with a fake clock: each case is a
//! service's scrapes (counters at 1-second steps), and the decision expected.

use std::time::{Duration, SystemTime};

use myc_config::Stage;

use super::*;

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn at(seconds: u64) -> SystemTime {
    T0 + Duration::from_secs(1_000_000 + seconds)
}

fn thresholds() -> Thresholds {
    Thresholds::from_settings(&GuardSettings { window: myc_config::Span::from_secs(10), ..GuardSettings::default() })
}

fn counts(published: u64, failed: u64, shadow_dropped: u64) -> PathCounts {
    PathCounts { published, failed, shadow_dropped }
}

/// Samples at seconds 0..=10 at `stage`, counters growing by `relay` and
/// `broker` each second, with `rss` throughout.
fn steady(stage: Stage, relay: PathCounts, broker: PathCounts, rss: Option<u64>) -> Vec<Sample> {
    (0..=10)
        .map(|step| Sample {
            at: at(step),
            stage,
            relay: counts(relay.published * step, relay.failed * step, relay.shadow_dropped * step),
            broker: counts(broker.published * step, broker.failed * step, broker.shadow_dropped * step),
            rss_bytes: rss,
        })
        .collect()
}

fn check(
    stage: Stage,
    samples: &[Sample],
    memory: Memory,
    verify: Option<Sampled>,
    expect: (Verdict, Option<Rule>),
) -> (Decision, Memory) {
    let input = Input {
        service: "feed",
        stage,
        samples,
        verify: verify.map(|verdict| VerifySample { at: at(9), stage, verdict }),
        started: at(0),
        now: at(10),
    };
    let (decision, memory) = evaluate(&input, &memory, &thresholds());
    assert_eq!((decision.decision, decision.rule), expect, "{}", decision.reason);
    (decision, memory)
}

const MIB: u64 = 1024 * 1024;

#[test]
fn a_broker_primary_that_fails_more_than_the_relay_did_is_rolled_back_by_rule_1() {
    let samples = steady(Stage::DualBrokerPrimary, counts(200, 0, 0), counts(190, 10, 0), None);
    let (decision, _) =
        check(Stage::DualBrokerPrimary, &samples, Memory::default(), None, (Verdict::Rollback, Some(Rule::Errors)));
    assert!(
        decision.reason.starts_with("rule 1 (errors): broker path failed 100 of 2000 (5.000%)"),
        "{}",
        decision.reason
    );
    assert_eq!((decision.figures.broker.failed, decision.figures.broker.published), (100, 1900));
}

#[test]
fn rule_1_needs_both_the_absolute_and_the_relative_threshold() {
    // 0.05% failed: under max_failed_ratio 0.1%.
    let samples = steady(Stage::Broker, counts(0, 0, 0), counts(1999, 1, 0), None);
    check(Stage::Broker, &samples, Memory::default(), None, (Verdict::Ok, None));
    // 5% failed, but the relay path failed 4% when it was last in use: not
    // more than twice as bad.
    let samples = steady(Stage::Broker, counts(0, 0, 0), counts(190, 10, 0), None);
    let memory = Memory { relay_failed_ratio: Some(0.04), ..Memory::default() };
    check(Stage::Broker, &samples, memory, None, (Verdict::Ok, None));
    let memory = Memory { relay_failed_ratio: Some(0.02), ..Memory::default() };
    check(Stage::Broker, &samples, memory, None, (Verdict::Rollback, Some(Rule::Errors)));
}

#[test]
fn a_lossy_broker_shadow_is_rolled_back_by_rule_2_only_in_dual_relay_primary() {
    let samples = steady(Stage::DualRelayPrimary, counts(200, 0, 0), counts(190, 0, 10), None);
    let (decision, _) =
        check(Stage::DualRelayPrimary, &samples, Memory::default(), None, (Verdict::Rollback, Some(Rule::ShadowLoss)));
    assert!(decision.reason.contains("dropped 100 of 2000 (5.000%)"), "{}", decision.reason);
    let samples = steady(Stage::DualRelayPrimary, counts(200, 0, 0), counts(199, 0, 1), None);
    check(Stage::DualRelayPrimary, &samples, Memory::default(), None, (Verdict::Ok, None));
}

#[test]
fn memory_is_judged_against_the_baseline_recorded_at_relay() {
    let at_relay = steady(Stage::Relay, counts(200, 0, 0), counts(0, 0, 0), Some(40 * MIB));
    let (decision, memory) = check(Stage::Relay, &at_relay, Memory::default(), None, (Verdict::Ok, None));
    assert_eq!(memory.rss_baseline_bytes, Some(40 * MIB), "{}", decision.reason);
    // 1.5 × 40 MiB + 32 MiB = 92 MiB.
    let fine = steady(Stage::Broker, counts(0, 0, 0), counts(200, 0, 0), Some(92 * MIB));
    check(Stage::Broker, &fine, memory, None, (Verdict::Ok, None));
    let grown = steady(Stage::Broker, counts(0, 0, 0), counts(200, 0, 0), Some(93 * MIB));
    let (decision, _) = check(Stage::Broker, &grown, memory, None, (Verdict::Rollback, Some(Rule::Memory)));
    assert!(decision.reason.contains("RSS 93.0 MiB above 1.5 × the baseline 40.0 MiB"), "{}", decision.reason);
    // Without a baseline the rule does not apply, and the decision says so.
    let (decision, _) = check(Stage::Broker, &grown, Memory::default(), None, (Verdict::Ok, None));
    assert!(decision.reason.contains("no RSS baseline recorded at relay"), "{}", decision.reason);
}

#[test]
fn a_differing_verify_sample_is_rolled_back_by_rule_4() {
    let samples = steady(Stage::DualRelayPrimary, counts(200, 0, 0), counts(200, 0, 0), None);
    check(
        Stage::DualRelayPrimary,
        &samples,
        Memory::default(),
        Some(Sampled::Differs),
        (Verdict::Rollback, Some(Rule::Content)),
    );
    check(Stage::DualRelayPrimary, &samples, Memory::default(), Some(Sampled::Identical), (Verdict::Ok, None));
}

#[test]
fn too_few_messages_are_insufficient_even_when_all_fail() {
    let samples = steady(Stage::Broker, counts(0, 0, 0), counts(0, 99, 0), None);
    check(Stage::Broker, &samples, Memory::default(), None, (Verdict::Insufficient, None));
    // All refused but enough offered: that is rule 1, not "insufficient".
    let samples = steady(Stage::Broker, counts(0, 0, 0), counts(0, 100, 0), None);
    check(Stage::Broker, &samples, Memory::default(), None, (Verdict::Rollback, Some(Rule::Errors)));
}

#[test]
fn figures_of_another_stage_do_not_count() {
    // The producer still reports dual_broker_primary failures after the plan
    // moved it back: they say nothing about dual_relay_primary.
    let samples = steady(Stage::DualBrokerPrimary, counts(200, 0, 0), counts(0, 200, 0), None);
    check(Stage::DualRelayPrimary, &samples, Memory::default(), None, (Verdict::Insufficient, None));
}

#[test]
fn a_service_not_scraped_for_a_window_is_stale() {
    let mut samples = steady(Stage::Broker, counts(0, 0, 0), counts(0, 200, 0), None);
    samples.truncate(1);
    samples[0].at = at(0) - Duration::from_secs(1);
    let (decision, _) = check(Stage::Broker, &samples, Memory::default(), None, (Verdict::Stale, None));
    assert_eq!(decision.reason, "no scrape for 11.0s");
    check(Stage::Broker, &[], Memory::default(), None, (Verdict::Stale, None));
}

#[test]
fn at_most_one_rollback_per_window() {
    let samples = steady(Stage::Broker, counts(0, 0, 0), counts(0, 200, 0), None);
    let memory = Memory { last_rollback: Some(at(5)), ..Memory::default() };
    check(Stage::Broker, &samples, memory, None, (Verdict::Insufficient, None));
    let memory = Memory { last_rollback: Some(at(0) - Duration::from_secs(1)), ..Memory::default() };
    let (_, memory) = check(Stage::Broker, &samples, memory, None, (Verdict::Rollback, Some(Rule::Errors)));
    assert_eq!(memory.last_rollback, Some(at(10)));
}

#[test]
fn counters_that_restart_count_from_zero() {
    let mut samples = steady(Stage::Broker, counts(0, 0, 0), counts(200, 0, 0), None);
    // The producer restarted at second 6: its counters began again.
    for (step, sample) in samples.iter_mut().enumerate().skip(6) {
        sample.broker = counts(200 * (step as u64 - 6), 50 * (step as u64 - 6), 0);
    }
    let (decision, _) =
        check(Stage::Broker, &samples, Memory::default(), None, (Verdict::Rollback, Some(Rule::Errors)));
    assert_eq!(decision.figures.broker.failed, 200);
}

#[test]
fn the_state_file_keeps_baselines_and_a_missing_one_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let path = State::path_for(&dir.path().join("rollout.toml"));
    assert_eq!(path, dir.path().join("rollout.toml.guard.json"));
    assert_eq!(State::read(&path).unwrap(), State::default());
    let mut state = State::default();
    state.services.insert(
        "feed".to_owned(),
        Memory { rss_baseline_bytes: Some(7), relay_failed_ratio: Some(0.5), last_rollback: Some(at(1)) },
    );
    state.write(&path).unwrap();
    let read = State::read(&path).unwrap();
    assert_eq!(read.services["feed"].rss_baseline_bytes, Some(7));
    assert_eq!(read.services["feed"].last_rollback, None, "not persisted");
    std::fs::write(&path, "{not json").unwrap();
    assert!(State::read(&path).is_err());
}

#[test]
fn absurd_counters_from_a_broken_target_decide_without_overflowing() {
    let mut samples = steady(Stage::Broker, counts(0, 0, 0), counts(1, 1, 1), None);
    samples[10].broker = counts(u64::MAX, u64::MAX, u64::MAX);
    samples[10].rss_bytes = Some(u64::MAX);
    let (decision, _) =
        check(Stage::Broker, &samples, Memory::default(), None, (Verdict::Rollback, Some(Rule::Errors)));
    assert_eq!(decision.figures.broker.published, u64::MAX);
}
