//! What a new operator trips over, each checked as they would meet it: a
//! capture given to `myc tlv decode`, secrets in `myc config show`, which
//! settings file was loaded, and error messages that say each cause once.

use super::{myc, workspace};

/// A deterministic capture of the bundled Kraken sample, made by `myc produce`.
fn kraken_capture(dir: &std::path::Path) -> std::path::PathBuf {
    let out = dir.join("kraken.pcapng");
    let input = workspace().join("producers/samples/kraken.jsonl");
    let produced = myc(
        &[
            "produce",
            "--feed",
            "kraken",
            "--input",
            input.to_str().unwrap(),
            "--service",
            "kraken_adapter",
            "--deterministic",
            "--out",
            out.to_str().unwrap(),
        ],
        b"",
    );
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    out
}

#[test]
fn tlv_decode_reads_a_pcapng_capture_packet_by_packet() {
    let dir = tempfile::tempdir().unwrap();
    let capture = kraken_capture(dir.path());
    let all = myc(&["tlv", "decode", capture.to_str().unwrap()], b"");
    assert!(all.status.success(), "{}", String::from_utf8_lossy(&all.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8(all.stdout).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(!lines.is_empty());
    assert!(lines.iter().all(|message| message["header"]["source_name"] == "KrakenCollector"));
    // The same through stdin, and picking the one interface by name.
    let bytes = std::fs::read(&capture).unwrap();
    let picked = myc(&["tlv", "decode", "--interface", "produce:kraken_adapter"], &bytes);
    assert!(picked.status.success(), "{}", String::from_utf8_lossy(&picked.stderr));
    assert_eq!(String::from_utf8(picked.stdout).unwrap().lines().count(), lines.len());
}

#[test]
fn tlv_decode_names_the_interfaces_a_capture_has_when_the_one_asked_for_is_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let capture = kraken_capture(dir.path());
    let output = myc(&["tlv", "decode", capture.to_str().unwrap(), "--interface", "relay:typo"], b"");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no interface \"relay:typo\"") && stderr.contains("produce:kraken_adapter"), "{stderr}");
    let not_a_capture = myc(&["tlv", "decode", "--interface", "x"], b"");
    assert_eq!(not_a_capture.status.code(), Some(2));
}

#[test]
fn config_show_masks_secrets_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    std::fs::write(
        &file,
        "[broker]\ntoken = \"broker-sekrit\"\n[console]\ntoken = \"console-sekrit\"\n\
         [console.tokens]\nalice = \"alice-sekrit\"\n",
    )
    .unwrap();
    for format in ["human", "json"] {
        let shown = myc(&["--config", file.to_str().unwrap(), "--format", format, "config", "show"], b"");
        assert!(shown.status.success());
        let text = String::from_utf8(shown.stdout).unwrap();
        assert!(!text.contains("sekrit"), "{format}: {text}");
        assert!(text.contains("***"), "{format}: {text}");
        // A named token keeps its name: only the secret is hidden.
        assert!(text.contains("alice"), "{format}: {text}");
    }
    let clear = myc(&["--config", file.to_str().unwrap(), "config", "show", "--show-secrets"], b"");
    let text = String::from_utf8(clear.stdout).unwrap();
    assert!(
        text.contains("broker-sekrit") && text.contains("console-sekrit") && text.contains("alice-sekrit"),
        "{text}"
    );
}

#[test]
fn every_command_says_which_settings_it_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    std::fs::write(&file, "").unwrap();
    let output = myc(&["--config", file.to_str().unwrap(), "config", "show"], b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("settings loaded") && stderr.contains(file.to_str().unwrap()), "{stderr}");
}

#[test]
fn an_error_says_each_cause_once() {
    // `verify files` wraps the I/O error in its own, which prints its cause.
    for args in [
        &["tlv", "decode", "/nonexistent/input.bin"][..],
        &["verify", "files", "/nonexistent/a.pcapng", "/nonexistent/b.pcapng"],
    ] {
        let output = myc(args, b"");
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.matches("No such file or directory").count(), 1, "{args:?}: {stderr}");
    }
}

#[test]
fn print_default_shows_the_bundled_services_and_still_loads() {
    let output = myc(&["config", "print-default"], b"");
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for line in ["# [services.polygon_adapter]", "# source = 4", "# [services.kraken_adapter]", "# source = 2"] {
        assert!(text.contains(line), "{line} missing");
    }
    // Uncommented, the same text is a valid settings file with those services.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("myc.toml");
    let uncommented = text.replace("# [services.", "[services.").replace("# source = ", "source = ");
    std::fs::write(&file, uncommented).unwrap();
    let checked = myc(&["config", "check", file.to_str().unwrap()], b"");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stderr));
}

#[test]
fn produce_loop_replays_a_sample_until_the_count_with_sequences_continuing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("looped.pcapng");
    let input = workspace().join("producers/samples/kraken.jsonl");
    let (input, out_text) = (input.to_str().unwrap(), out.to_str().unwrap());
    let common = ["produce", "--feed", "kraken", "--input", input, "--deterministic", "--out", out_text];
    let produced = myc(&[&common[..], &["--loop", "--count", "100"]].concat(), b"");
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));
    let decoded = myc(&["tlv", "decode", out_text], b"");
    let sequences: Vec<u64> = String::from_utf8(decoded.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["header"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(sequences, (1..=100).collect::<Vec<u64>>(), "the sample (7 events) replayed until 100");
    // A looped dry run without a count would never end; stdin cannot be replayed.
    assert_eq!(myc(&[&common[..], &["--loop"]].concat(), b"").status.code(), Some(2));
    let stdin = myc(&["produce", "--feed", "kraken", "--input", "-", "--loop", "--out", out_text, "--count", "1"], b"");
    assert_eq!(stdin.status.code(), Some(2));
}

#[test]
fn verify_files_of_one_capture_without_interface_names_lists_the_names_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let capture = kraken_capture(dir.path());
    let output = myc(&["verify", "files", capture.to_str().unwrap()], b"");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--reference-if") && stderr.contains("this file has: produce:kraken_adapter"), "{stderr}");
}

#[test]
fn rollout_names_its_plan_and_an_unset_user_is_resolved_from_the_uid() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("rollout.toml");
    let config = dir.path().join("myc.toml");
    std::fs::write(&config, "").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_myc"))
        .args(["--config", config.to_str().unwrap(), "rollout", "--file", plan.to_str().unwrap()])
        .args(["set", "polygon_adapter", "dual_relay_primary", "--reason", "start"])
        .env_remove("USER")
        .env_remove("LOGNAME")
        .env_remove("MYC_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains(&format!("plan {}", plan.display())), "{stdout}");
    let uid = rustix::process::getuid().as_raw();
    assert!(stdout.contains(&format!("uid {uid})")) || stdout.contains(&format!("uid {uid}@")), "{stdout}");
    assert!(!stdout.contains("unknown@"), "{stdout}");
    let history =
        myc(&["--config", config.to_str().unwrap(), "rollout", "--file", plan.to_str().unwrap(), "history"], b"");
    let text = String::from_utf8(history.stdout).unwrap();
    assert!(text.starts_with(&format!("plan {}", plan.display())), "{text}");
}
