//! The plan file: routes, parse errors, service names, a plan that
//! disappears, and a follower that keeps its stages when it does.

use myc_rollout::{Error, Plan, PlanFollower, Role, Route, Stage, decide};

use super::{actor, now, refused, rollout};

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
    let hostile = Plan::parse("[services.\"a');alert(1);('\"]\nstage = \"relay\"\n").unwrap_err();
    assert!(hostile.contains("is not a service name"), "{hostile}");
}

#[test]
fn hostile_service_names_are_refused_by_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    for name in ["a');alert(1);('", "", "Polygon", "-lead", "a b", "../etc", "a\"b", &"a".repeat(65), "é"] {
        let expect_bad = |result: Result<myc_rollout::audit::Entry, Error>| match result {
            Err(Error::BadServiceName(why)) => assert!(why.contains("is not a service name"), "{why}"),
            other => panic!("{name:?}: {other:?}"),
        };
        expect_bad(rollout.set(name, Stage::Broker, "", &actor(), now()));
        expect_bad(rollout.advance(name, None, true, "", &actor(), now()));
        expect_bad(rollout.rollback(name, None, "", &actor(), now()));
        assert!(matches!(rollout.history(Some(name)), Err(Error::BadServiceName(_))));
    }
    rollout.set(&"a".repeat(64), Stage::Broker, "", &actor(), now()).unwrap();
    rollout.set("0-feed_2", Stage::Broker, "", &actor(), now()).unwrap();
    assert_eq!(rollout.history(None).unwrap().entries.len(), 2, "only the good names changed anything");
}

#[test]
fn a_typo_never_creates_a_service() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    for result in [
        rollout.advance("polygon_adaptor", None, true, "", &actor(), now()),
        rollout.rollback("polygon_adaptor", None, "", &actor(), now()),
    ] {
        match result {
            Err(error @ Error::UnknownService(_)) => {
                assert!(error.to_string().contains("no service \"polygon_adaptor\""), "{error}");
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(!rollout.plan_file.exists() && !rollout.audit_log.exists(), "nothing written");
    // A service only in the plan (set by an operator) can be moved.
    rollout.set("feed", Stage::DualRelayPrimary, "", &actor(), now()).unwrap();
    rollout.rollback("feed", None, "drill", &actor(), now()).unwrap();
}

#[test]
fn a_deleted_plan_is_not_an_empty_plan_once_changes_were_made() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    assert_eq!(rollout.status().unwrap().services["polygon_adapter"].stage, Stage::Relay, "a fresh deployment");
    rollout.set("polygon_adapter", Stage::Broker, "", &actor(), now()).unwrap();
    std::fs::remove_file(&rollout.plan_file).unwrap();
    let error = rollout.status().unwrap_err();
    assert!(matches!(error, Error::PlanMissing(..)), "{error:?}");
    assert!(error.to_string().contains("records changes, so the plan existed and was deleted"), "{error}");
    // And no change writes a one-service plan over the loss.
    assert!(matches!(rollout.set("kraken_adapter", Stage::Relay, "", &actor(), now()), Err(Error::PlanMissing(..))));
    assert_eq!(rollout.history(None).unwrap().entries.len(), 1);
}

#[test]
fn a_follower_keeps_its_plan_when_the_file_disappears_and_defaults_only_when_it_never_existed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rollout.toml");
    let follower = PlanFollower::new(path.clone(), Stage::DualRelayPrimary);
    assert_eq!(follower.read().unwrap().stage_of("feed"), Stage::DualRelayPrimary, "never existed: default");
    std::fs::write(&path, "[services.feed]\nstage = \"broker\"\n").unwrap();
    assert_eq!(follower.read().unwrap().stage_of("feed"), Stage::Broker);
    std::fs::remove_file(&path).unwrap();
    let error = follower.read().unwrap_err();
    assert!(error.to_string().contains("disappeared after it was read"), "{error}");
    std::fs::write(&path, "\u{0}\u{7f}garbage[[[").unwrap();
    assert!(matches!(follower.read(), Err(Error::BadPlan(..))));
    std::fs::write(&path, "").unwrap();
    assert!(follower.read().unwrap_err().to_string().contains("empty"));
}

#[test]
fn force_set_and_rollback_are_audited_and_rollback_is_never_gated() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    rollout.set("feed", Stage::Relay, "first", &actor(), now()).unwrap();
    rollout.advance("feed", None, true, "maintenance window", &actor(), now()).unwrap();
    rollout.set("feed", Stage::Broker, "skip ahead", &actor(), now()).unwrap();
    rollout.rollback("feed", None, "latency", &actor(), now()).unwrap();
    assert_eq!(rollout.plan().unwrap().stage_of("feed"), Stage::DualBrokerPrimary);
    rollout.rollback("feed", Some(Stage::Relay), "incident", &actor(), now()).unwrap();
    assert!(refused(rollout.rollback("feed", Some(Stage::Broker), "no", &actor(), now())).contains("ahead"));
    rollout.set("other", Stage::Broker, "", &actor(), now()).unwrap();
    assert!(refused(rollout.advance("other", None, true, "", &actor(), now())).contains("already at broker"));

    let history = rollout.history(Some("feed")).unwrap().entries;
    let steps: Vec<_> =
        history.iter().map(|entry| (entry.action.as_str(), entry.from.as_str(), entry.to.as_str())).collect();
    assert_eq!(
        steps,
        [
            ("set", "relay", "relay"),
            ("advance", "relay", "dual_relay_primary"),
            ("set", "dual_relay_primary", "broker"),
            ("rollback", "broker", "dual_broker_primary"),
            ("rollback", "dual_broker_primary", "relay"),
        ]
    );
    assert!(history[1].forced && history[1].evidence_sha256.is_none());
    assert_eq!((history[0].user.as_str(), history[0].time.as_str()), ("ops", "2025-11-26T18:00:00.000000Z"));
    assert_eq!(rollout.history(None).unwrap().entries.len(), 6);

    // The plan on disk is whole and readable; only the lock file is beside
    // it, no scratch file is left.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["rollout-audit.jsonl", "rollout.toml", "rollout.toml.lock"]);
    let status = rollout.status().unwrap();
    assert_eq!(status.services["feed"].stage, Stage::Relay);
    assert_eq!(status.services["polygon_adapter"].source, Some(4));
}
