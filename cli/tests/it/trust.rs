//! The control plane under the load and the accidents of real operation:
//! eight workers changing one plan at once through `myc rollout` and two
//! `myc console` processes, a plan deleted and then replaced by garbage
//! under a running producer, and the gate refusing what it must with the
//! words an operator reads.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::Processes;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

/// `myc --config CONFIG ARGS…`, quiet.
pub(crate) fn myc_with(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_myc"));
    command.arg("--config").arg(config).args(args).env_remove("MYC_CONFIG").env_remove("RUST_LOG");
    command
}

/// Waits for `ready`, at most 30 s.
pub(crate) fn wait_until(what: &str, ready: impl FnMut() -> bool) {
    super::wait_until(what, Duration::from_secs(30), ready);
}

/// A long-running `myc` whose JSON log lines are collected, and the
/// address it logged for `message` (it listens on port 0).
pub(crate) struct Server {
    /// Where it listens.
    pub(crate) address: String,
    /// Every log line so far.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
}

pub(crate) fn spawn_server(processes: &mut Processes, mut command: Command, message: &str) -> Server {
    let mut child =
        command.arg("--log-format").arg("json").stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    processes.0.push(child);
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let mut address = None;
    wait_until(message, || {
        address = log.lock().unwrap().iter().find_map(|line| {
            let line: serde_json::Value = serde_json::from_str(line).ok()?;
            (line["fields"]["message"] == message).then(|| line["fields"]["address"].as_str().map(str::to_owned))?
        });
        address.is_some()
    });
    Server { address: address.unwrap(), log }
}

/// One HTTP/1.1 request to `address`: (status, body).
pub(crate) fn http(address: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, body)| body.to_owned()).unwrap_or_default();
    (status, body)
}

/// A verify report as `myc verify --format json` writes it: `per_source`
/// counts (matched only unless `differences` says otherwise), its window
/// from `start` lasting `length`, made just after.
pub(crate) fn report(per_source: &[(u8, u64, [u64; 3])], start: SystemTime, length: Duration) -> String {
    let at = |time: SystemTime| humantime::format_rfc3339_micros(time).to_string();
    let mut totals = [0u64; 4];
    let mut counts = serde_json::Map::new();
    for (source, matched, [mismatched, missing, extra]) in per_source {
        for (total, value) in totals.iter_mut().zip([*matched, *mismatched, *missing, *extra]) {
            *total += value;
        }
        counts.insert(
            source.to_string(),
            serde_json::json!({"matched": matched, "mismatched": mismatched, "missing": missing, "extra": extra}),
        );
    }
    let verdict = if totals[1] + totals[2] + totals[3] > 0 { "differs" } else { "identical" };
    serde_json::json!({
        "generated_at": at(start + length + Duration::from_millis(600)),
        "sources": per_source.iter().map(|(source, _, _)| source).collect::<Vec<_>>(),
        "reference": {"name": "relay:/run/torq/market_data.sock", "messages": totals[0] + totals[1] + totals[2]},
        "candidate": {"name": "broker:market_data", "messages": totals[0] + totals[1] + totals[3]},
        "matched": totals[0], "mismatched": totals[1], "missing": totals[2], "extra": totals[3],
        "per_source": counts,
        "duplicates": {"reference": 0, "candidate": 0},
        "reordered": {"reference": 0, "candidate": 0},
        "edge": {"reference": 0, "candidate": 0}, "edges": "trimmed",
        "window": {"start": at(start), "end": at(start + length)},
        "skew_ns": {"p50": 4000, "p99": 9000, "max": 12000},
        "verdict": verdict,
        "examples": [],
    })
    .to_string()
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("myc.toml");
    std::fs::write(
        &config,
        format!(
            "[services.alpha]\nsource = 4\n[services.beta]\nsource = 2\n[services.gamma]\nsource = 7\n\
             [console]\nreports_dir = \"{}\"\n{extra}",
            dir.join("reports").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("reports")).unwrap();
    config
}

/// How one change ended.
#[derive(Debug)]
enum Ended {
    /// Exit 0 / HTTP 200, with the reason it carried.
    Done(String),
    /// Exit 1 / HTTP 409: a gate (or the stage order) said no.
    Refused,
}

/// A small deterministic generator (xorshift), so a failure can be replayed.
struct Dice(u64);

impl Dice {
    fn roll(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn eight_workers_changing_one_plan_through_the_cli_and_two_consoles_leave_a_log_that_replays_to_it() {
    const TOKEN: &str = "t0ken-never-logged";
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "");
    let mut processes = Processes(Vec::new());
    let consoles: Vec<Server> = (0..2)
        .map(|_| {
            let command = myc_with(&config, &["console", "--listen", "127.0.0.1:0", "--token", TOKEN]);
            spawn_server(&mut processes, command, "console listening")
        })
        .collect();
    let bearer = format!("Bearer {TOKEN}");
    let csrfs: Vec<String> = consoles
        .iter()
        .map(|console| {
            let (status, page) = http(&console.address, "GET", "/", &[("Authorization", &bearer)], "");
            assert_eq!(status, 200, "{page}");
            let (_, rest) = page.split_once("<meta name=\"csrf\" content=\"").unwrap();
            rest.split('"').next().unwrap().to_owned()
        })
        .collect();
    let services = ["alpha", "beta", "gamma"];
    let stages = ["relay", "dual_relay_primary", "dual_broker_primary", "broker"];
    let outcomes: Vec<(String, Result<Ended, String>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..8u64)
            .map(|worker| {
                let (consoles, csrfs, config, bearer) = (&consoles, &csrfs, &config, &bearer);
                scope.spawn(move || {
                    let mut dice = Dice(0x9e37_79b9_7f4a_7c15 ^ ((worker + 1) * 0x1000_0001));
                    let mut outcomes = Vec::new();
                    for change in 0..25 {
                        let service = services[usize::try_from(dice.roll(3)).unwrap()];
                        let reason = format!("w{worker}-c{change}");
                        let what = dice.roll(7);
                        let console = usize::try_from(dice.roll(2)).unwrap();
                        let cli = |args: &[&str]| {
                            let output = myc_with(config, args).output().unwrap();
                            match output.status.code() {
                                Some(0) => Ok(Ended::Done(reason.clone())),
                                Some(1) => Ok(Ended::Refused),
                                _ => Err(format!("{args:?}: {}", String::from_utf8_lossy(&output.stderr))),
                            }
                        };
                        let web = |action: &str| {
                            let path = format!("/api/services/{service}/{action}");
                            let body = format!("{{\"reason\":\"{reason}\"}}");
                            let headers = [
                                ("Authorization", bearer.as_str()),
                                ("X-CSRF-Token", csrfs[console].as_str()),
                                ("Content-Type", "application/json"),
                                ("Origin", &format!("http://{}", consoles[console].address)),
                            ];
                            match http(&consoles[console].address, "POST", &path, &headers, &body) {
                                (200, _) => Ok(Ended::Done(reason.clone())),
                                (409, _) => Ok(Ended::Refused),
                                (status, body) => Err(format!("POST {path}: {status} {body}")),
                            }
                        };
                        let stage = stages[usize::try_from(dice.roll(4)).unwrap()];
                        let ended = match what {
                            0 => cli(&["rollout", "set", service, stage, "--reason", &reason]),
                            1 => cli(&["rollout", "advance", service, "--force", "--reason", &reason]),
                            2 => cli(&["rollout", "advance", service, "--reason", &reason]),
                            3 => cli(&["rollout", "rollback", service, "--reason", &reason]),
                            4 => web("rollback"),
                            5 => web("advance"),
                            _ => cli(&["rollout", "rollback", service, "--to", "relay", "--reason", &reason]),
                        };
                        outcomes.push((reason, ended));
                    }
                    outcomes
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    let failures: Vec<_> =
        outcomes.iter().filter_map(|(reason, ended)| ended.as_ref().err().map(|e| (reason, e))).collect();
    assert!(failures.is_empty(), "only a refused gate may fail a change: {failures:#?}");
    let done: Vec<&String> = outcomes
        .iter()
        .filter_map(|(_, ended)| match ended {
            Ok(Ended::Done(reason)) => Some(reason),
            _ => None,
        })
        .collect();
    let refusals = outcomes.len() - done.len();
    assert!(refusals > 0 && done.len() > 100, "{} done, {refusals} refused: the mix exercised both", done.len());

    // Every success has exactly one audit entry; no failure has one.
    let log = std::fs::read_to_string(dir.path().join("rollout-audit.jsonl")).unwrap();
    let entries: Vec<serde_json::Value> = log.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    let mut audited: Vec<&str> = entries.iter().map(|entry| entry["reason"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> = done.iter().map(|reason| reason.as_str()).collect();
    audited.sort_unstable();
    expected.sort_unstable();
    assert_eq!(audited, expected);

    // Replaying the log from the first entry gives the plan.
    let mut replayed = BTreeMap::new();
    for entry in &entries {
        let service = entry["service"].as_str().unwrap().to_owned();
        let from = replayed.get(&service).cloned().unwrap_or_else(|| "relay".to_owned());
        assert_eq!(entry["from"].as_str().unwrap(), from, "each entry starts where the last one left {service}");
        replayed.insert(service, entry["to"].as_str().unwrap().to_owned());
    }
    let status = myc_with(&config, &["rollout", "status", "--format", "json"]).output().unwrap();
    assert_eq!(status.status.code(), Some(0));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let plan: BTreeMap<String, String> = toml_stages(&dir.path().join("rollout.toml"));
    assert_eq!(plan, replayed);
    for (service, stage) in &plan {
        assert_eq!(status["services"][service]["stage"].as_str(), Some(stage.as_str()));
    }
    // No scratch file left behind, and the token never reached a log.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    for console in &consoles {
        assert!(!console.log.lock().unwrap().iter().any(|line| line.contains(TOKEN)), "the token was logged");
    }
}

/// service → stage, as the plan file says.
fn toml_stages(path: &Path) -> BTreeMap<String, String> {
    let plan: toml::Value = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    plan["services"]
        .as_table()
        .unwrap()
        .iter()
        .map(|(name, entry)| (name.clone(), entry["stage"].as_str().unwrap().to_owned()))
        .collect()
}

/// `name{labels} value` from a metrics text, for the line whose name and
/// labels start with `prefix`.
fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines().find(|line| line.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
}

#[test]
fn a_plan_deleted_then_replaced_by_garbage_under_a_running_producer_changes_nothing_and_status_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let config = write_config(
        dir.path(),
        &format!(
            "[relay]\nmarket_data = \"{d}/md.sock\"\nsignal = \"{d}/sig.sock\"\nexecution = \"{d}/ex.sock\"\nsystem = \"{d}/sys.sock\"\n\
             [broker]\nendpoint = \"unix:{d}/broker.sock\"\n[broker.server]\nlisten = [\"unix:{d}/broker.sock\"]\n"
        ),
    );
    let set =
        myc_with(&config, &["rollout", "set", "alpha", "dual_relay_primary", "--reason", "start"]).output().unwrap();
    assert!(set.status.success(), "{}", String::from_utf8_lossy(&set.stderr));
    let mut processes = Processes(Vec::new());
    processes.0.push(myc_with(&config, &["relay", "--domain", "market_data"]).stderr(Stdio::null()).spawn().unwrap());
    processes.0.push(myc_with(&config, &["broker"]).stderr(Stdio::null()).spawn().unwrap());
    for socket in ["md.sock", "broker.sock"] {
        let path = dir.path().join(socket);
        wait_until(socket, || std::os::unix::net::UnixStream::connect(&path).is_ok());
    }
    let producer = spawn_server(
        &mut processes,
        myc_with(
            &config,
            &["produce", "--feed", "synthetic", "--service", "alpha", "--rate", "500", "--metrics", "127.0.0.1:0"],
        ),
        "metrics listening",
    );
    let scrape = || http(&producer.address, "GET", "/metrics", &[], "").1;
    let stage = || metric(&scrape(), "myc_shim_stage{service=\"alpha\"}");
    let errors = || metric(&scrape(), "myc_rollout_plan_errors_total{service=\"alpha\"}");
    assert_eq!(stage(), Some(1.0), "the producer follows the plan: dual_relay_primary");
    assert_eq!(errors(), Some(0.0));
    let status = || myc_with(&config, &["rollout", "status"]).output().unwrap();

    std::fs::remove_file(dir.path().join("rollout.toml")).unwrap();
    wait_until("the deletion to be counted", || errors() == Some(1.0));
    assert_eq!(stage(), Some(1.0), "a deleted plan does not send the producer to the default stage");
    let deleted = status();
    assert_eq!(deleted.status.code(), Some(2));
    let said = String::from_utf8_lossy(&deleted.stderr).into_owned();
    assert!(said.contains("rollout plan is missing") && said.contains("was deleted"), "{said}");

    std::fs::write(dir.path().join("rollout.toml"), "<html>\u{0} not a plan [[[").unwrap();
    wait_until("the garbage to be counted", || errors() == Some(2.0));
    assert_eq!(stage(), Some(1.0), "garbage does not move the producer either");
    let garbage = status();
    assert_eq!(garbage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&garbage.stderr).contains("not a rollout plan"));

    let warnings: Vec<String> = producer
        .log
        .lock()
        .unwrap()
        .iter()
        .filter(|line| line.contains("\"WARN\"") && line.contains("rollout.toml"))
        .cloned()
        .collect();
    assert_eq!(warnings.len(), 2, "one WARN per problem: {warnings:#?}");
    assert!(warnings[0].contains("disappeared after it was read"), "{}", warnings[0]);
}

#[test]
fn the_gate_refuses_a_report_about_another_source_and_accepts_the_services_own_clean_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[gate]\nmin_messages = 100\nmin_duration = \"2s\"\n");
    let started = SystemTime::now();
    let set = myc_with(&config, &["rollout", "set", "alpha", "relay", "--reason", "start"]).output().unwrap();
    assert!(set.status.success());
    let start = SystemTime::now() + Duration::from_millis(10);
    let advance = |report: &str| {
        std::fs::write(dir.path().join("report.json"), report).unwrap();
        myc_with(&config, &["rollout", "advance", "alpha", "--evidence", "report.json"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    // Gathered before the set: refused, with the reason on stderr and exit 1.
    let early = advance(&report(&[(4, 500, [0, 0, 0])], started - Duration::from_secs(5), Duration::from_secs(3)));
    assert_eq!(early.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&early.stderr).contains("not after alpha's last stage change"));
    // Another service's source: refused.
    let other = advance(&report(&[(2, 500, [0, 0, 0])], start, Duration::from_secs(3)));
    assert_eq!(other.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("refused: the report has no messages from alpha's source 4")
    );
    // Its own source clean while beta's differs: accepted.
    let good = advance(&report(&[(4, 500, [0, 0, 0]), (2, 0, [0, 40, 0])], start, Duration::from_secs(3)));
    assert_eq!(good.status.code(), Some(0), "{}", String::from_utf8_lossy(&good.stderr));
}
