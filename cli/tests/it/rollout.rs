//! `myc config`, `myc rollout` and `myc produce --out` as an operator uses
//! them: defaults that check, every layer in `show`, keys named in errors,
//! gates that refuse with exit 1 and accept a real verify report, the audit
//! trail, and a synthetic dry run into a capture.

use std::path::Path;

use super::myc;

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(args)
        .current_dir(dir)
        .env_remove("MYC_CONFIG")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn config_print_default_checks_and_show_applies_file_then_environment() {
    let dir = tempfile::tempdir().unwrap();
    let defaults = myc(&["config", "print-default"], b"");
    assert_eq!(defaults.status.code(), Some(0));
    std::fs::write(dir.path().join("default.toml"), &defaults.stdout).unwrap();
    let check = run_in(dir.path(), &["config", "check", "default.toml"], &[]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));

    std::fs::write(
        dir.path().join("myc.toml"),
        "[broker]\nendpoint = \"unix:/from/file.sock\"\n[gate]\nmin_messages = 5\n",
    )
    .unwrap();
    let show = run_in(dir.path(), &["config", "show", "--format", "json"], &[("MYC_GATE__MIN_MESSAGES", "7")]);
    assert_eq!(show.status.code(), Some(0), "{}", text(&show.stderr));
    let settings: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(settings["broker"]["endpoint"], "unix:/from/file.sock");
    assert_eq!(settings["gate"]["min_messages"], 7);

    std::fs::write(dir.path().join("typo.toml"), "[rollout]\ndefault_stag = \"relay\"\n").unwrap();
    let typo = run_in(dir.path(), &["config", "check", "typo.toml"], &[]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(text(&typo.stderr).contains("rollout.default_stag"), "{}", text(&typo.stderr));
    let refused = run_in(dir.path(), &["--config", "typo.toml", "rollout", "status"], &[]);
    assert_eq!(refused.status.code(), Some(2), "a bad configuration is refused at start");
}

#[test]
fn rollout_gates_refuse_with_exit_1_accept_a_verify_report_and_audit_every_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("myc.toml"),
        "[gate]\nmin_messages = 5\nmin_duration = \"1s\"\n[services.polygon_adapter]\nsource = 4\n",
    )
    .unwrap();
    // A report as `myc verify` writes it, gathered over the last two seconds.
    let start = std::time::SystemTime::now() - std::time::Duration::from_secs(3);
    let report = super::trust::report(&[(4, 12, [0, 0, 0])], start, std::time::Duration::from_secs(2));
    std::fs::write(dir.path().join("report.json"), report).unwrap();

    let refused = run_in(dir.path(), &["rollout", "advance", "polygon_adapter"], &[]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("refused: no evidence"), "{}", text(&refused.stderr));
    let advanced = run_in(
        dir.path(),
        &["rollout", "advance", "polygon_adapter", "--evidence", "report.json", "--reason", "golden pair"],
        &[],
    );
    assert_eq!(advanced.status.code(), Some(0), "{}", text(&advanced.stderr));
    let again = run_in(dir.path(), &["rollout", "advance", "polygon_adapter", "--evidence", "report.json"], &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already advanced polygon_adapter once"), "{}", text(&again.stderr));
    let rollback = run_in(dir.path(), &["rollout", "rollback", "polygon_adapter", "--reason", "drill"], &[]);
    assert_eq!(rollback.status.code(), Some(0));

    let status = run_in(dir.path(), &["rollout", "status", "--format", "json"], &[]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["default_stage"], "relay");
    assert_eq!(status["services"]["polygon_adapter"]["stage"], "relay");
    assert_eq!(status["services"]["polygon_adapter"]["source"], 4);

    let history = run_in(dir.path(), &["rollout", "history", "--format", "json"], &[]);
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let entries = history.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (entries[0]["action"].as_str(), entries[0]["to"].as_str()),
        (Some("advance"), Some("dual_relay_primary"))
    );
    assert_eq!(entries[0]["evidence_sha256"].as_str().map(str::len), Some(64));
    assert_eq!((entries[1]["action"].as_str(), entries[1]["reason"].as_str()), (Some("rollback"), Some("drill")));
    assert!(dir.path().join("rollout.toml").is_file() && dir.path().join("rollout-audit.jsonl").is_file());
}

#[test]
fn unknown_services_and_bad_names_are_errors_that_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("myc.toml"), "[services.polygon_adapter]\nsource = 4\n").unwrap();
    for args in [
        &["rollout", "advance", "polygon_adaptor", "--force"][..],
        &["rollout", "rollback", "polygon_adaptor", "--reason", "typo"],
    ] {
        let output = run_in(dir.path(), args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains("no service \"polygon_adaptor\""), "{}", text(&output.stderr));
    }
    for args in [
        &["rollout", "set", "a');alert(1);('", "broker"][..],
        &["rollout", "advance", "Polygon", "--force"],
        &["rollout", "rollback", "../x", "--reason", "r"],
        &["rollout", "history", "<b>"],
    ] {
        let output = run_in(dir.path(), args, &[]);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(text(&output.stderr).contains("is not a service name"), "{}", text(&output.stderr));
    }
    assert!(!dir.path().join("rollout.toml").exists() && !dir.path().join("rollout-audit.jsonl").exists());
    let produce = run_in(
        dir.path(),
        &["produce", "--feed", "synthetic", "--service", "a\"b", "--count", "1", "--out", "x.pcapng"],
        &[],
    );
    assert_eq!(produce.status.code(), Some(2));
    assert!(text(&produce.stderr).contains("is not a service name"), "{}", text(&produce.stderr));
    std::fs::write(dir.path().join("bad.toml"), "[services.\"Bad Name\"]\nsource = 4\n").unwrap();
    let check = run_in(dir.path(), &["config", "check", "bad.toml"], &[]);
    assert_eq!(check.status.code(), Some(2));
    assert!(text(&check.stderr).contains("services.Bad Name"), "{}", text(&check.stderr));
}

#[test]
fn a_synthetic_dry_run_writes_a_capture_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("dry.pcapng");
    let output = myc(
        &[
            "produce",
            "--feed",
            "synthetic",
            "--service",
            "synth",
            "--count",
            "1000",
            "--out",
            out.to_str().unwrap(),
            "--summary-json",
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["events_published"], 1000);
    assert_eq!(summary["paths"]["relay"]["published"], 0);
    let mut reader = myc_verify::pcapng::Reader::new(std::fs::File::open(&out).unwrap());
    let mut packets = 0;
    while let Some(packet) = reader.next_packet().unwrap() {
        assert!(myc_codec::Message::parse(&packet.data).is_ok());
        packets += 1;
    }
    assert_eq!(packets, 1000);
    assert_eq!(reader.interfaces()[0].name, "produce:synth");
}
