//! Rollout as operators use it: the route of each stage, the plan file,
//! and every way the gate refuses or accepts an advance, with each change in
//! the audit log.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use myc_config::{GateSettings, ServiceSettings, Span};
use myc_rollout::{Actor, Error, Plan, Role, Rollout, Route, Stage, decide};

const NOW: u64 = 1_764_180_000; // 2025-11-26T18:00:00Z

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

fn actor() -> Actor {
    Actor { user: "ops".to_owned(), host: "desk".to_owned() }
}

fn rollout(dir: &std::path::Path) -> Rollout {
    let mut services = BTreeMap::new();
    services.insert("polygon_adapter".to_owned(), ServiceSettings { source: Some(4) });
    Rollout {
        plan_file: dir.join("rollout.toml"),
        audit_log: dir.join("rollout-audit.jsonl"),
        default_stage: Stage::Relay,
        gate: GateSettings { min_messages: 10_000, max_age: Span::from_secs(3600), ..GateSettings::default() },
        services,
    }
}

fn report(verdict: &str, matched: u64, generated_at: &str, sources: &[u8]) -> Vec<u8> {
    format!(
        r#"{{"generated_at":"{generated_at}","sources":{sources:?},"reference":{{"name":"relay:/x","messages":{matched}}},
        "candidate":{{"name":"broker:market_data","messages":{matched}}},"matched":{matched},"mismatched":0,
        "missing":0,"extra":0,"verdict":"{verdict}","examples":[]}}"#
    )
    .into_bytes()
}

fn refused(result: Result<myc_rollout::audit::Entry, Error>) -> String {
    match result {
        Err(Error::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn each_stage_routes_as_the_design_table_says() {
    use Role::{Primary, Shadow};
    assert_eq!(Route::of(Stage::Relay), Route { relay: Some(Primary), broker: None });
    assert_eq!(Route::of(Stage::DualRelayPrimary), Route { relay: Some(Primary), broker: Some(Shadow) });
    assert_eq!(Route::of(Stage::DualBrokerPrimary), Route { relay: Some(Shadow), broker: Some(Primary) });
    assert_eq!(Route::of(Stage::Broker), Route { relay: None, broker: Some(Primary) });
    let plan = Plan::parse("default_stage = \"dual_relay_primary\"\n[services.a]\nstage = \"broker\"\n").unwrap();
    assert_eq!(decide(&plan, "a"), Route::of(Stage::Broker));
    assert_eq!(decide(&plan, "unlisted"), Route::of(Stage::DualRelayPrimary));
}

#[test]
fn a_plan_with_an_unknown_key_or_stage_is_refused_naming_it() {
    assert!(Plan::parse("[services.a]\nstag = \"relay\"\n").unwrap_err().contains("stag"));
    assert!(Plan::parse("[services.a]\nstage = \"shadow\"\n").unwrap_err().contains("shadow"));
}

#[test]
fn the_gate_refuses_without_good_evidence_and_accepts_a_good_report() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    let service = "polygon_adapter";
    let fresh = "2025-11-26T17:30:00Z";

    assert!(refused(rollout.advance(service, None, false, "", &actor(), now())).contains("no evidence"));
    let differs = report("differs", 20_000, fresh, &[4]);
    assert!(refused(rollout.advance(service, Some(&differs), false, "", &actor(), now())).contains("differs"));
    let stale = report("identical", 20_000, "2025-11-26T16:00:00Z", &[4]);
    assert!(refused(rollout.advance(service, Some(&stale), false, "", &actor(), now())).contains("gate.max_age"));
    let few = report("identical", 9_999, fresh, &[4]);
    assert!(refused(rollout.advance(service, Some(&few), false, "", &actor(), now())).contains("gate.min_messages"));
    let other = report("identical", 20_000, fresh, &[2]);
    assert!(refused(rollout.advance(service, Some(&other), false, "", &actor(), now())).contains("source 4"));
    assert!(refused(rollout.advance(service, Some(b"{}"), false, "", &actor(), now())).contains("not a verify"));
    assert_eq!(rollout.plan().unwrap().stage_of(service), Stage::Relay, "nothing moved");
    assert!(rollout.history(None).unwrap().is_empty(), "refusals change nothing");

    let good = report("identical", 20_000, fresh, &[2, 4]);
    let entry = rollout.advance(service, Some(&good), false, "verified 20k", &actor(), now()).unwrap();
    assert_eq!((entry.from.as_str(), entry.to.as_str(), entry.forced), ("relay", "dual_relay_primary", false));
    assert_eq!(entry.evidence_sha256.as_deref().map(str::len), Some(64));
    assert_eq!(rollout.plan().unwrap().stage_of(service), Stage::DualRelayPrimary);
}

#[test]
fn force_set_and_rollback_are_audited_and_rollback_is_never_gated() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    rollout.advance("feed", None, true, "maintenance window", &actor(), now()).unwrap();
    rollout.set("feed", Stage::Broker, "skip ahead", &actor(), now()).unwrap();
    rollout.rollback("feed", None, "latency", &actor(), now()).unwrap();
    assert_eq!(rollout.plan().unwrap().stage_of("feed"), Stage::DualBrokerPrimary);
    rollout.rollback("feed", Some(Stage::Relay), "incident", &actor(), now()).unwrap();
    assert!(refused(rollout.rollback("feed", Some(Stage::Broker), "no", &actor(), now())).contains("ahead"));
    rollout.set("other", Stage::Broker, "", &actor(), now()).unwrap();
    assert!(refused(rollout.advance("other", None, true, "", &actor(), now())).contains("already at broker"));

    let history = rollout.history(Some("feed")).unwrap();
    let steps: Vec<_> =
        history.iter().map(|entry| (entry.action.as_str(), entry.from.as_str(), entry.to.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("advance", "relay", "dual_relay_primary"),
            ("set", "dual_relay_primary", "broker"),
            ("rollback", "broker", "dual_broker_primary"),
            ("rollback", "dual_broker_primary", "relay"),
        ]
    );
    assert!(history[0].forced && history[0].evidence_sha256.is_none());
    assert_eq!((history[0].user.as_str(), history[0].time.as_str()), ("ops", "2025-11-26T18:00:00.000Z"));
    assert_eq!(rollout.history(None).unwrap().len(), 5);

    // The plan on disk is whole and readable, and no scratch file is left.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let status = rollout.status().unwrap();
    assert_eq!(status.services["feed"].stage, Stage::Relay);
    assert_eq!(status.services["polygon_adapter"].source, Some(4));
}

#[test]
fn a_change_whose_audit_entry_cannot_be_written_is_undone_and_names_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut rollout = rollout(dir.path());
    rollout.set("feed", Stage::DualRelayPrimary, "first", &actor(), now()).unwrap();
    let before = std::fs::read(&rollout.plan_file).unwrap();
    // A full disk: /dev/full accepts the open and fails every write.
    rollout.audit_log = "/dev/full".into();
    let error = rollout.set("feed", Stage::Broker, "second", &actor(), now()).unwrap_err();
    assert!(error.to_string().contains("/dev/full"), "{error}");
    assert_eq!(std::fs::read(&rollout.plan_file).unwrap(), before, "the plan is as it was");
    // An unwritable directory: the same.
    rollout.audit_log = dir.path().join("missing-dir/audit.jsonl");
    assert!(rollout.rollback("feed", None, "x", &actor(), now()).unwrap_err().to_string().contains("missing-dir"));
    assert_eq!(rollout.plan().unwrap().stage_of("feed"), Stage::DualRelayPrimary);
}
