//! Changes that fail half-way and changes made at the same time: no change
//! without its audit entry, no entry without its change, and the audit log
//! replays to the plan.

use std::collections::BTreeMap;

use myc_rollout::{Error, Plan, Rollout, Stage, audit};

use super::{actor, now, rollout};

/// The plan the audit log describes, replayed from the first entry.
pub(crate) fn replay(entries: &[audit::Entry], default_stage: Stage) -> BTreeMap<String, Stage> {
    let mut stages = BTreeMap::new();
    for entry in entries {
        let from = stages.get(&entry.service).copied().unwrap_or(default_stage);
        assert_eq!(from.name(), entry.from, "entry {entry:?} starts where the previous one ended");
        stages.insert(entry.service.clone(), Stage::from_name(&entry.to).unwrap());
    }
    stages
}

fn plan_stages(plan: &Plan) -> BTreeMap<String, Stage> {
    plan.services.iter().map(|(name, entry)| (name.clone(), entry.stage)).collect()
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
    let error = rollout.rollback("feed", None, "x", &actor(), now()).unwrap_err();
    assert!(error.to_string().contains("missing-dir"), "{error}");
    assert_eq!(rollout.plan().unwrap().stage_of("feed"), Stage::DualRelayPrimary);
}

#[test]
fn a_plan_that_cannot_be_written_takes_its_audit_entry_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut rollout = rollout(dir.path());
    // A plan whose name is legal but leaves no room for the scratch file's
    // longer name: it reads, and every write of it fails (ENAMETOOLONG).
    rollout.plan_file = dir.path().join(format!("{}.toml", "p".repeat(230)));
    std::fs::write(&rollout.plan_file, "[services.feed]\nstage = \"dual_relay_primary\"\n").unwrap();
    rollout.rollback("feed", None, "kept", &actor(), now()).unwrap_err();
    assert!(!rollout.audit_log.exists() || std::fs::read(&rollout.audit_log).unwrap().is_empty(), "entry taken back");
    // With history already in the log, only the failed change's entry goes.
    std::fs::write(&rollout.audit_log, "").unwrap();
    let mut good = rollout.clone();
    good.plan_file = dir.path().join("rollout.toml");
    good.set("feed", Stage::Broker, "first", &actor(), now()).unwrap();
    let log_before = std::fs::read(&rollout.audit_log).unwrap();
    let error = rollout.set("feed", Stage::Broker, "second", &actor(), now()).unwrap_err();
    assert!(matches!(error, Error::Io(..)), "{error:?}");
    assert_eq!(std::fs::read(&rollout.audit_log).unwrap(), log_before, "no entry for a change that did not happen");
    assert_eq!(rollout.plan().unwrap().stage_of("feed"), Stage::DualRelayPrimary);
}

#[test]
fn eight_threads_changing_one_plan_at_once_leave_a_log_that_replays_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let rollout = rollout(dir.path());
    let services = ["polygon_adapter", "kraken_adapter", "sourceless"];
    let successes: usize = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8u64)
            .map(|worker| {
                let rollout: &Rollout = &rollout;
                scope.spawn(move || {
                    let mut ok = 0;
                    for change in 0..25u64 {
                        let pick = worker * 7919 + change * 104_729;
                        let service = services[usize::try_from(pick % 3).unwrap()];
                        let reason = format!("w{worker}c{change}");
                        let result = match pick % 4 {
                            0 => rollout.set(
                                service,
                                Stage::ALL[usize::try_from(pick / 3 % 4).unwrap()],
                                &reason,
                                &super::actor(),
                                now(),
                            ),
                            1 => rollout.advance(service, None, true, &reason, &super::actor(), now()),
                            2 => rollout.advance(service, None, false, &reason, &super::actor(), now()),
                            _ => rollout.rollback(service, None, &reason, &super::actor(), now()),
                        };
                        match result {
                            Ok(entry) => {
                                assert_eq!(entry.reason, reason);
                                ok += 1;
                            }
                            Err(Error::Refused(_)) => {}
                            Err(other) => panic!("{reason}: {other}"),
                        }
                    }
                    ok
                })
            })
            .collect();
        workers.into_iter().map(|worker| worker.join().unwrap()).sum()
    });
    let log = rollout.history(None).unwrap();
    assert!(log.unreadable.is_empty(), "{:?}", log.unreadable);
    assert_eq!(log.entries.len(), successes, "one entry per success, none per failure");
    assert_eq!(replay(&log.entries, Stage::Relay), plan_stages(&rollout.plan().unwrap()));
}
