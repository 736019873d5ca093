//! `myc console` in a real browser: a relay, a broker and a synthetic
//! producer run as `myc` processes; headless Chromium (driven by
//! playwright-core, `cli/tests/browser/console.mjs`) loads the console,
//! sees the live stage and rates, clicks "roll back", and the stage changes
//! in the rollout file and the audit log. The service's latest verify
//! report is hostile — markup and script in its fields — and the page shows
//! it as text with no script run. The screenshot is kept in the target
//! directory. Then the same page with JavaScript disabled: a named token,
//! the scrape targets' states, advance (reason, the evidence, confirm) and
//! roll back through its plain HTML forms, audited under the token's name.
//! Skips, saying so, where Chromium, Node.js or playwright-core is missing;
//! `.ci/run` installs them.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{Processes, free_port, wait_until, workspace};

fn myc(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_myc"));
    command.arg("--config").arg(config).args(args).stdout(Stdio::null()).stderr(Stdio::null());
    command
}

/// The browser scripts' directory and Chromium, or `None` (saying so)
/// where Chromium, Node.js or playwright-core is missing.
fn browser() -> Option<(std::path::PathBuf, String)> {
    let browser_dir = workspace().join("cli/tests/browser");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    let node_ok = Command::new("node").arg("--version").output().is_ok_and(|output| output.status.success());
    if !Path::new(&chromium).exists() || !node_ok || !browser_dir.join("node_modules/playwright-core").exists() {
        eprintln!("chromium, node or playwright-core missing: skipping the browser test (.ci/run installs them)");
        return None;
    }
    Some((browser_dir, chromium))
}

/// Runs `node SCRIPT ARGS…` from the browser directory; the JSON line it
/// printed last.
fn drive(browser_dir: &Path, chromium: &str, script: &str, args: &[&str]) -> serde_json::Value {
    let output =
        Command::new("node").arg(browser_dir.join(script)).args(args).env("CHROMIUM", chromium).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn an_operator_rolls_a_service_back_from_the_console_in_a_browser() {
    let Some((browser_dir, chromium)) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (metrics_port, console_port) = (free_port(), free_port());
    let config = dir.path().join("myc.toml");
    let d = dir.path().display();
    std::fs::write(
        &config,
        format!(
            "[relay]\nmarket_data = \"{d}/md.sock\"\nsignal = \"{d}/sig.sock\"\nexecution = \"{d}/ex.sock\"\nsystem = \"{d}/sys.sock\"\n\
             [broker]\nendpoint = \"unix:{d}/broker.sock\"\n[broker.server]\nlisten = [\"unix:{d}/broker.sock\"]\n\
             [services.synth]\nsource = 99\n[console]\nscrape = [\"http://127.0.0.1:{metrics_port}/metrics\"]\n"
        ),
    )
    .unwrap();
    // A report whose fields carry markup that would run script if it were
    // ever rendered as HTML.
    let markup = "<img src=x onerror=\"window.__pwned=1\">";
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    let generated_at = humantime::format_rfc3339_micros(std::time::SystemTime::now()).to_string();
    let hostile = serde_json::json!({
        "generated_at": generated_at,
        "sources": [99],
        "reference": {"name": format!("relay:{markup}"), "messages": 10, "file": markup, "file_sha256": "<b>x</b>"},
        "candidate": {"name": "<script>window.__pwned=2</script>", "messages": 10},
        "matched": 10, "mismatched": 0, "missing": 0, "extra": 0,
        "per_source": {"99": {"matched": 10, "mismatched": 0, "missing": 0, "extra": 0}},
        "window": {"start": generated_at, "end": "<svg onload=window.__pwned=3>"},
        "skew_ns": null,
        "verdict": "identical",
        "examples": [{"kind": "<i>mismatched</i>", "key": {"relay_domain": 1, "source": 99, "sequence": 1},
                      "diff": format!("--- a\n+++ b\n@@ -1 +1 @@\n-{markup}\n+<script>window.__pwned=4</script>\n")}],
    });
    std::fs::write(dir.path().join("reports/hostile.json"), hostile.to_string()).unwrap();
    let set = myc(&config, &["rollout", "set", "synth", "dual_relay_primary", "--reason", "start"]).status().unwrap();
    assert!(set.success());
    let mut processes = Processes(Vec::new());
    processes.0.push(myc(&config, &["relay", "--domain", "market_data"]).spawn().unwrap());
    processes.0.push(myc(&config, &["broker"]).spawn().unwrap());
    for socket in ["md.sock", "broker.sock"] {
        let path = dir.path().join(socket);
        wait_until(socket, Duration::from_secs(20), || std::os::unix::net::UnixStream::connect(&path).is_ok());
    }
    let metrics = format!("127.0.0.1:{metrics_port}");
    processes.0.push(
        myc(
            &config,
            &["produce", "--feed", "synthetic", "--service", "synth", "--rate", "2000", "--metrics", &metrics],
        )
        .spawn()
        .unwrap(),
    );
    let listen = format!("127.0.0.1:{console_port}");
    processes.0.push(myc(&config, &["console", "--listen", &listen]).spawn().unwrap());
    wait_until("the console", Duration::from_secs(20), || std::net::TcpStream::connect(&listen).is_ok());

    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console.png");
    let url = format!("http://{listen}/");
    let seen = drive(&browser_dir, &chromium, "console.mjs", &[&url, "synth", screenshot.to_str().unwrap(), markup]);
    assert!(screenshot.is_file(), "the screenshot is kept at {}", screenshot.display());
    assert_eq!(seen["injected"]["pwned"], serde_json::Value::Null, "no script ran: {seen}");
    assert_eq!(
        (seen["injected"]["images"].as_u64(), seen["injected"]["scripts"].as_u64()),
        (Some(0), Some(0)),
        "{seen}"
    );
    assert_eq!(seen["dialogs"], serde_json::json!(["Why roll synth back?"]), "only the reason prompt: {seen}");
    // The gate's refusal quotes the hostile field: as text too.
    assert!(seen["gateReason"].as_str().unwrap().contains("<svg onload=window.__pwned=3>"), "{seen}");

    let status = myc(&config, &["rollout", "status", "--format", "json"]).stdout(Stdio::piped()).output().unwrap();
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["services"]["synth"]["stage"], "relay");
    let history =
        myc(&config, &["rollout", "history", "synth", "--format", "json"]).stdout(Stdio::piped()).output().unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let last = history.as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["action"].as_str(), last["reason"].as_str()), (Some("rollback"), Some("browser test")));
    assert!(last["user"].as_str().unwrap().ends_with("(console)"), "{last}");
}

#[test]
fn an_operator_advances_and_rolls_back_without_javascript_under_a_named_token() {
    let Some((browser_dir, chromium)) = browser() else { return };
    let dir = tempfile::tempdir().unwrap();
    let console_port = free_port();
    // A scrape target nobody answers on: shown as an error with the reason.
    let closed_port = free_port();
    let config = dir.path().join("myc.toml");
    std::fs::write(
        &config,
        format!(
            "[services.synth]\nsource = 99\n[gate]\nmin_messages = 5\nmin_duration = \"1s\"\n\
             [console]\nscrape = [\"http://127.0.0.1:{closed_port}/metrics\"]\n[console.tokens]\nalice = \"alice-s3cret\"\n"
        ),
    )
    .unwrap();
    let check = myc(&config, &["config", "check", config.to_str().unwrap()]).status().unwrap();
    assert!(check.success(), "the settings are valid");
    // A report that passes the gate for source 99.
    let at = |ago: u64| {
        humantime::format_rfc3339_micros(std::time::SystemTime::now() - Duration::from_secs(ago)).to_string()
    };
    let report = serde_json::json!({
        "generated_at": at(0),
        "sources": [99],
        "reference": {"name": "relay:x", "messages": 10},
        "candidate": {"name": "broker:market_data", "messages": 10},
        "matched": 10, "mismatched": 0, "missing": 0, "extra": 0,
        "per_source": {"99": {"matched": 10, "mismatched": 0, "missing": 0, "extra": 0}},
        "duplicates": {"reference": 0, "candidate": 0},
        "reordered": {"reference": 0, "candidate": 0},
        "window": {"start": at(3), "end": at(1)},
        "skew_ns": null,
        "verdict": "identical",
        "examples": [],
    })
    .to_string();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    std::fs::write(dir.path().join("reports/good.json"), &report).unwrap();
    let sha256 = myc_rollout::gate::Evidence::from_json(report.as_bytes()).unwrap().sha256;

    let listen = format!("127.0.0.1:{console_port}");
    let mut processes = Processes(Vec::new());
    processes.0.push(myc(&config, &["console", "--listen", &listen]).spawn().unwrap());
    wait_until("the console", Duration::from_secs(20), || std::net::TcpStream::connect(&listen).is_ok());
    let url = format!("http://{listen}/");
    let seen = drive(&browser_dir, &chromium, "console-noscript.mjs", &[&url, "synth", "alice-s3cret"]);

    assert_eq!(seen["stages"], serde_json::json!(["relay", "dual_relay_primary", "relay"]), "{seen}");
    assert_eq!(seen["changedBeforeConfirm"], "relay", "the confirmation page changes nothing: {seen}");
    assert_eq!(seen["scriptButtons"], 0, "no script ran: {seen}");
    let targets = seen["targets"].as_str().unwrap();
    assert!(targets.contains(&format!("http://127.0.0.1:{closed_port}/metrics: error — ")), "{seen}");
    assert!(targets.to_lowercase().contains("refused"), "the reason is shown: {seen}");
    assert_eq!(seen["dialogs"], serde_json::json!([]), "{seen}");
    assert_eq!(seen["evidence"]["sha256"], sha256.as_str(), "{seen}");
    assert_eq!(seen["evidence"]["verdict"], "identical", "{seen}");
    assert_eq!(seen["evidence"]["sourceCounts"], "matched 10, mismatched 0, missing 0, extra 0", "{seen}");
    let advanced = seen["advanced"].as_str().unwrap();
    assert!(
        advanced.contains("synth: advance relay → dual_relay_primary (audited as alice (console)@127.0.0.1:"),
        "{seen}"
    );
    assert_eq!(seen["advancedOk"], 1, "{seen}");
    assert!(seen["rolledBack"].as_str().unwrap().contains("synth: rollback dual_relay_primary → relay"), "{seen}");

    let history =
        myc(&config, &["rollout", "history", "synth", "--format", "json"]).stdout(Stdio::piped()).output().unwrap();
    let history: serde_json::Value = serde_json::from_slice(&history.stdout).unwrap();
    let history = history.as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:?}");
    for (entry, (action, reason)) in
        history.iter().zip([("advance", "evidence checked without script"), ("rollback", "drill without script")])
    {
        assert_eq!((entry["action"].as_str(), entry["reason"].as_str()), (Some(action), Some(reason)), "{entry}");
        assert_eq!(entry["user"], "alice (console)", "{entry}");
        assert!(entry["host"].as_str().unwrap().starts_with("127.0.0.1:"), "{entry}");
    }
    assert_eq!(history[0]["evidence_sha256"], sha256.as_str());
}
