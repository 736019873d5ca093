//! The console's API in-process (axum router, tower `oneshot`), as a
//! browser, a careless operator and a hostile page use it: listing, advance
//! refused with the gate's reason and accepted with a good report, rollback
//! with a reason, audit entries naming the client; the Host, Origin, token
//! and CSRF rules; names and services that do not exist; reports picked by
//! `generated_at` and re-read only when they change; a corrupt audit line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{Console, router};

const LISTEN: &str = "127.0.0.1:8080";

fn settings(dir: &std::path::Path) -> myc_config::Settings {
    let mut settings = myc_config::Settings::default();
    settings.rollout.file = dir.join("rollout.toml");
    settings.rollout.audit_log = dir.join("audit.jsonl");
    settings.console.reports_dir = dir.join("reports");
    settings.console.allowed_hosts = vec!["console.example.net".to_owned()];
    settings.gate.min_messages = 5;
    settings.gate.min_duration = myc_config::Span::from_secs(1);
    settings.services.insert("polygon_adapter".to_owned(), myc_config::ServiceSettings { source: Some(4) });
    settings
}

fn console(dir: &std::path::Path, token: Option<&str>) -> Arc<Console> {
    std::fs::create_dir_all(dir.join("reports")).unwrap();
    Arc::new(Console::new(settings(dir), token.map(str::to_owned), LISTEN.parse().unwrap()))
}

/// Sends `request` (with `Host: 127.0.0.1:8080` unless it names one).
async fn send(console: &Arc<Console>, mut request: Request<Body>) -> axum::response::Response {
    if !request.headers().contains_key(header::HOST) {
        request.headers_mut().insert(header::HOST, LISTEN.parse().unwrap());
    }
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    router(Arc::clone(console)).layer(MockConnectInfo(client)).oneshot(request).await.unwrap()
}

async fn call(console: &Arc<Console>, request: Request<Body>) -> (StatusCode, Value) {
    let response = send(console, request).await;
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(console: &Console, path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-csrf-token", &console.csrf)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// A verify report made `age_seconds` ago (negative: in the future), whose
/// window closed a second before and lasted 2 s; `per_source` as given.
fn report(verdict: &str, per_source: &[(u8, [u64; 4])], age_seconds: i64) -> String {
    let at = |seconds: i64| {
        let now = SystemTime::now();
        let time = if seconds >= 0 {
            now - Duration::from_secs(seconds.unsigned_abs())
        } else {
            now + Duration::from_secs(seconds.unsigned_abs())
        };
        humantime::format_rfc3339_micros(time).to_string()
    };
    let totals =
        per_source.iter().fold([0; 4], |sum, (_, c)| [sum[0] + c[0], sum[1] + c[1], sum[2] + c[2], sum[3] + c[3]]);
    let per_source: serde_json::Map<String, Value> = per_source
        .iter()
        .map(|(source, c)| {
            (source.to_string(), json!({"matched": c[0], "mismatched": c[1], "missing": c[2], "extra": c[3]}))
        })
        .collect();
    json!({
        "generated_at": at(age_seconds),
        "sources": per_source.keys().map(|key| key.parse::<u8>().unwrap()).collect::<Vec<_>>(),
        "reference": {"name": "relay:x", "messages": totals[0] + totals[1] + totals[2]},
        "candidate": {"name": "broker:market_data", "messages": totals[0] + totals[1] + totals[3]},
        "matched": totals[0], "mismatched": totals[1], "missing": totals[2], "extra": totals[3],
        "per_source": per_source,
        "duplicates": {"reference": 0, "candidate": 0},
        "reordered": {"reference": 0, "candidate": 0},
        "window": {"start": at(age_seconds + 3), "end": at(age_seconds + 1)},
        "skew_ns": null,
        "verdict": verdict,
        "examples": [],
    })
    .to_string()
}

fn write_report(dir: &std::path::Path, name: &str, text: &str) {
    std::fs::write(dir.join("reports").join(name), text).unwrap();
}

#[tokio::test]
async fn services_are_listed_with_their_stage_and_gate() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    let (status, body) = call(&console, get("/api/services")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["name"], "polygon_adapter");
    assert_eq!(body[0]["stage"], "relay");
    assert_eq!(body[0]["advance_allowed"], false);
    assert!(body[0]["gate_reason"].as_str().unwrap().contains("no verify report about source 4"), "{body}");
    let response = send(&console, get("/")).await;
    let policy = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(policy.contains("script-src 'nonce-"), "{policy}");
    let page = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        page.contains("data-service=\"polygon_adapter\"") && page.contains(&console.csrf),
        "the table is rendered server-side"
    );
    assert!(!page.contains("onclick") && !page.contains("innerHTML"), "no inline handlers, no markup from data");
}

#[tokio::test]
async fn advance_is_refused_with_the_gates_reason_then_accepted_and_rollback_needs_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    write_report(dir.path(), "old.json", &report("differs", &[(4, [10, 0, 1, 0])], 60));
    for empty in ["{}", r#"{"reason":"  "}"#] {
        let (status, body) = call(&console, post(&console, "/api/services/polygon_adapter/advance", empty)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "an advance needs a reason");
    }
    let (status, body) =
        call(&console, post(&console, "/api/services/polygon_adapter/advance", r#"{"reason":"try"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("polygon_adapter's source 4 differs"), "{body}");

    // Kraken's source 2 differing does not hold Polygon back.
    write_report(dir.path(), "new.json", &report("differs", &[(4, [10, 0, 0, 0]), (2, [0, 0, 7, 0])], 0));
    let (status, body) =
        call(&console, post(&console, "/api/services/polygon_adapter/advance", r#"{"reason":"looks good"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["from"].as_str(), body["to"].as_str()), (Some("relay"), Some("dual_relay_primary")));
    assert_eq!(body["host"], "127.0.0.1:40000", "the client's address is audited");
    // The same report cannot advance it again.
    let (status, body) =
        call(&console, post(&console, "/api/services/polygon_adapter/advance", r#"{"reason":"again"}"#)).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("already advanced polygon_adapter once"), "{body}");

    let (status, _) = call(&console, post(&console, "/api/services/polygon_adapter/rollback", "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a rollback needs a reason");
    let (status, body) =
        call(&console, post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"drill"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, detail) = call(&console, get("/api/services/polygon_adapter")).await;
    assert_eq!(detail["service"]["stage"], "relay");
    assert_eq!(detail["history"].as_array().unwrap().len(), 2);
    assert_eq!(detail["report"]["per_source"]["2"]["missing"], 7);
    let (status, report) = call(&console, get("/api/reports/new")).await;
    assert_eq!((status, report["matched"].as_u64()), (StatusCode::OK, Some(10)));
    let (status, _) = call(&console, get("/api/reports/..%2Faudit")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no way out of the reports directory");
}

#[tokio::test]
async fn a_host_that_is_not_the_console_gets_421() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    for host in ["evil.example.com", "evil.example.com:8080", "127.0.0.1.nip.io:8080", "localhost:9"] {
        let request = Request::get("/api/services").header(header::HOST, host).body(Body::empty()).unwrap();
        assert_eq!(call(&console, request).await.0, StatusCode::MISDIRECTED_REQUEST, "{host}");
        let change = Request::post("/api/services/polygon_adapter/rollback")
            .header(header::HOST, host)
            .header("x-csrf-token", &console.csrf)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"reason":"rebinding"}"#))
            .unwrap();
        assert_eq!(call(&console, change).await.0, StatusCode::MISDIRECTED_REQUEST, "{host}");
    }
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "console.example.net"] {
        let request = Request::get("/api/services").header(header::HOST, host).body(Body::empty()).unwrap();
        assert_eq!(call(&console, request).await.0, StatusCode::OK, "{host}");
    }
    assert!(!dir.path().join("audit.jsonl").exists(), "nothing changed");
}

#[tokio::test]
async fn a_post_from_another_origin_gets_403() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    std::fs::write(dir.path().join("rollout.toml"), "[services.polygon_adapter]\nstage = \"broker\"\n").unwrap();
    for origin in ["http://evil.example.com", "null", "http://127.0.0.1:8081"] {
        let mut request = post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"csrf"}"#);
        request.headers_mut().insert(header::ORIGIN, origin.parse().unwrap());
        assert_eq!(call(&console, request).await.0, StatusCode::FORBIDDEN, "{origin}");
    }
    assert!(!dir.path().join("audit.jsonl").exists(), "nothing changed");
    let mut request = post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"mine"}"#);
    request.headers_mut().insert(header::ORIGIN, "http://127.0.0.1:8080".parse().unwrap());
    assert_eq!(call(&console, request).await.0, StatusCode::OK);
}

#[tokio::test]
async fn the_token_in_the_url_becomes_an_http_only_cookie_and_leaves_the_url() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), Some("s3cret+/="));
    let response = send(&console, get("/?token=s3cret%2B%2F%3D&view=compact")).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/?view=compact");
    let cookie = response.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("myc_console_token=s3cret+/=;"), "{cookie}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} missing: {cookie}");
    }
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&body).contains("s3cret"), "the token is not in the answer");

    // The cookie opens the page, which never shows the token.
    let page = send(
        &console,
        Request::get("/").header(header::COOKIE, "myc_console_token=s3cret+/=").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(page.status(), StatusCode::OK);
    let page = page.into_body().collect().await.unwrap().to_bytes();
    assert!(!String::from_utf8_lossy(&page).contains("s3cret"));
    // A wrong token sets nothing.
    let wrong = send(&console, get("/?token=guess")).await;
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(!wrong.headers().contains_key(header::SET_COOKIE));
}

#[tokio::test]
async fn the_token_and_the_csrf_token_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), Some("s3cret"));
    assert_eq!(call(&console, get("/api/services")).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(call(&console, get("/")).await.0, StatusCode::UNAUTHORIZED);
    let with_token =
        Request::get("/api/services").header("authorization", "Bearer s3cret").body(Body::empty()).unwrap();
    assert_eq!(call(&console, with_token).await.0, StatusCode::OK);
    let wrong = Request::get("/api/services").header("authorization", "Bearer s3cref").body(Body::empty()).unwrap();
    assert_eq!(call(&console, wrong).await.0, StatusCode::UNAUTHORIZED);
    // A POST without the CSRF token is refused even with the right token.
    let no_csrf = Request::post("/api/services/polygon_adapter/rollback")
        .header("authorization", "Bearer s3cret")
        .header("content-type", "application/json")
        .body(Body::from(r#"{"reason":"x"}"#))
        .unwrap();
    assert_eq!(call(&console, no_csrf).await.0, StatusCode::FORBIDDEN);
    assert!(!dir.path().join("audit.jsonl").exists(), "nothing changed");
}

#[tokio::test]
async fn an_unknown_service_is_404_and_a_hostile_name_400() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    for action in ["advance", "rollback"] {
        let (status, body) =
            call(&console, post(&console, &format!("/api/services/polygon_adaptor/{action}"), r#"{"reason":"typo"}"#))
                .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}: {body}");
        assert!(body["error"].as_str().unwrap().contains("no service \"polygon_adaptor\""), "{body}");
    }
    assert_eq!(call(&console, get("/api/services/polygon_adaptor")).await.0, StatusCode::NOT_FOUND);
    let hostile = "a%27)%3Balert(1)%3B(%27";
    for request in [
        post(&console, &format!("/api/services/{hostile}/rollback"), r#"{"reason":"x"}"#),
        post(&console, &format!("/api/services/{hostile}/advance"), r#"{"reason":"x"}"#),
        get(&format!("/api/services/{hostile}")),
        get("/api/services/%3Cscript%3E"),
    ] {
        let (status, body) = call(&console, request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert!(body["error"].as_str().unwrap().contains("is not a service name"), "{body}");
    }
    assert!(!dir.path().join("audit.jsonl").exists() && !dir.path().join("rollout.toml").exists(), "nothing created");
}

#[tokio::test]
async fn the_latest_report_is_the_newest_generated_not_one_from_the_future() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    // File names sort the other way round from generated_at.
    write_report(dir.path(), "a-newest.json", &report("identical", &[(4, [10, 0, 0, 0])], 5));
    write_report(dir.path(), "b-older.json", &report("differs", &[(4, [10, 1, 0, 0])], 50));
    write_report(dir.path(), "c-future.json", &report("identical", &[(4, [99, 0, 0, 0])], -3600));
    write_report(dir.path(), "d-broken.json", "{\"verdict\":");
    let (_, services) = call(&console, get("/api/services")).await;
    assert_eq!(services[0]["report_id"], "a-newest");
    let (_, overview) = call(&console, get("/api/overview")).await;
    let invalid = overview["invalid_reports"].as_array().unwrap();
    assert_eq!(invalid.len(), 2, "{overview}");
    assert_eq!(invalid[0]["file"], "c-future.json");
    assert!(invalid[0]["reason"].as_str().unwrap().contains("in the future"), "{overview}");
    assert_eq!(invalid[1]["file"], "d-broken.json");
}

#[tokio::test]
async fn reports_are_read_again_only_when_their_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    write_report(dir.path(), "one.json", &report("identical", &[(4, [10, 0, 0, 0])], 5));
    write_report(dir.path(), "two.json", &report("identical", &[(4, [10, 0, 0, 0])], 6));
    for _ in 0..5 {
        assert_eq!(call(&console, get("/api/services")).await.0, StatusCode::OK);
    }
    assert_eq!(console.reports.reads(), 2, "each file read once");
    write_report(dir.path(), "two.json", &report("differs", &[(4, [10, 0, 0, 12])], 1));
    let (_, services) = call(&console, get("/api/services")).await;
    assert_eq!(services[0]["verdict"], "differs", "the changed file was read again");
    assert_eq!(console.reports.reads(), 3);
}

#[tokio::test]
async fn a_corrupt_audit_line_hides_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    std::fs::write(dir.path().join("rollout.toml"), "[services.polygon_adapter]\nstage = \"broker\"\n").unwrap();
    for reason in ["one", "two"] {
        let body = format!(r#"{{"reason":"{reason}"}}"#);
        assert_eq!(
            call(&console, post(&console, "/api/services/polygon_adapter/rollback", &body)).await.0,
            StatusCode::OK
        );
        if reason == "one" {
            let mut log = std::fs::OpenOptions::new().append(true).open(dir.path().join("audit.jsonl")).unwrap();
            std::io::Write::write_all(&mut log, b"{\"time\": <garbage>\n").unwrap();
        }
    }
    let (status, detail) = call(&console, get("/api/services/polygon_adapter")).await;
    assert_eq!(status, StatusCode::OK);
    let reasons: Vec<_> = detail["history"].as_array().unwrap().iter().map(|entry| entry["reason"].clone()).collect();
    assert_eq!(reasons, [json!("one"), json!("two")]);
    assert_eq!(detail["history_unreadable"][0]["line"], 2, "{detail}");
    let (_, overview) = call(&console, get("/api/overview")).await;
    assert_eq!(overview["audit_unreadable"].as_array().unwrap().len(), 1);
}

/// A form post as a browser without JavaScript sends it: form-encoded, the
/// CSRF token as a field, the console's own `Origin`.
fn form(path: &str, fields: &[(&str, &str)]) -> Request<Body> {
    let body: Vec<String> = fields
        .iter()
        .map(|(key, value)| format!("{key}={}", value.replace('%', "%25").replace('&', "%26").replace(' ', "+")))
        .collect();
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header(header::ORIGIN, "http://127.0.0.1:8080")
        .body(Body::from(body.join("&")))
        .unwrap()
}

async fn text_of(response: axum::response::Response) -> String {
    String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

/// The page a 303 leads to, and what it says.
async fn follow(console: &Arc<Console>, response: axum::response::Response) -> String {
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let location = response.headers()[header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.starts_with("/?result="), "{location}");
    text_of(send(console, get(&location)).await).await
}

#[tokio::test]
async fn the_page_without_script_advances_after_showing_the_evidence_and_rolls_back_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), None);
    write_report(dir.path(), "good.json", &report("identical", &[(4, [10, 0, 0, 0])], 0));
    let sha256 = myc_rollout::gate::Evidence::from_json(&std::fs::read(dir.path().join("reports/good.json")).unwrap())
        .unwrap()
        .sha256;
    let page = send(&console, get("/")).await;
    let policy = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(policy.contains("form-action 'self'"), "{policy}");
    let page = text_of(page).await;
    assert!(page.contains("<form method=\"post\" action=\"/services/polygon_adapter/advance\""), "{page}");
    assert!(page.contains(&format!("name=\"csrf\" value=\"{}\"", console.csrf)), "{page}");

    // Without a reason: nothing changes, and the page says why.
    let csrf = console.csrf.clone();
    let said = follow(
        &console,
        send(&console, form("/services/polygon_adapter/advance", &[("csrf", &csrf), ("reason", "")])).await,
    )
    .await;
    assert!(said.contains("polygon_adapter: an advance needs a reason"), "{said}");
    assert!(!dir.path().join("audit.jsonl").exists());

    // With one: first the evidence, and nothing changed yet.
    let asked = send(
        &console,
        form("/services/polygon_adapter/advance", &[("csrf", &csrf), ("reason", "all <b>identical</b>")]),
    )
    .await;
    assert_eq!(asked.status(), StatusCode::OK);
    assert!(asked.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().contains("default-src 'none'"));
    let asked = text_of(asked).await;
    for shown in [
        sha256.as_str(),
        "identical",
        "matched 10, mismatched 0, missing 0, extra 0",
        "The gate passes it",
        "all &lt;b&gt;identical&lt;/b&gt;",
    ] {
        assert!(asked.contains(shown), "{shown} not in {asked}");
    }
    assert!(!dir.path().join("audit.jsonl").exists(), "the confirmation page changes nothing");
    // "confirm" without the evidence it confirms is asked again.
    let unnamed = form("/services/polygon_adapter/advance", &[("csrf", &csrf), ("reason", "r"), ("confirm", "yes")]);
    let again = send(&console, unnamed).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert!(text_of(again).await.contains(&sha256));
    assert!(!dir.path().join("audit.jsonl").exists(), "still nothing changed");
    // Confirmed on other evidence than the latest: refused.
    let stale = form(
        "/services/polygon_adapter/advance",
        &[("csrf", &csrf), ("reason", "r"), ("evidence_sha256", &"0".repeat(64)), ("confirm", "yes")],
    );
    let said = follow(&console, send(&console, stale).await).await;
    assert!(said.contains("the evidence changed since it was confirmed"), "{said}");
    // Confirmed on what was shown: made, audited, said.
    let confirmed = form(
        "/services/polygon_adapter/advance",
        &[("csrf", &csrf), ("reason", "all identical"), ("evidence_sha256", &sha256), ("confirm", "yes")],
    );
    let said = follow(&console, send(&console, confirmed).await).await;
    assert!(said.contains("polygon_adapter: advance relay → dual_relay_primary"), "{said}");
    assert!(said.contains("class=\"ok\""), "{said}");

    let rollback = form("/services/polygon_adapter/rollback", &[("csrf", &csrf), ("reason", "drill & test")]);
    let said = follow(&console, send(&console, rollback).await).await;
    assert!(said.contains("polygon_adapter: rollback dual_relay_primary → relay"), "{said}");
    let (_, detail) = call(&console, get("/api/services/polygon_adapter")).await;
    let history = detail["history"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{detail}");
    assert_eq!(history[0]["evidence_sha256"], sha256.as_str());
    assert_eq!(
        (history[0]["reason"].as_str(), history[1]["reason"].as_str()),
        (Some("all identical"), Some("drill & test"))
    );
    assert_eq!(history[1]["host"], "127.0.0.1:40000");
}

#[tokio::test]
async fn a_form_post_keeps_every_protection() {
    let dir = tempfile::tempdir().unwrap();
    let console = console(dir.path(), Some("s3cret"));
    std::fs::write(dir.path().join("rollout.toml"), "[services.polygon_adapter]\nstage = \"broker\"\n").unwrap();
    let csrf = console.csrf.clone();
    let with_cookie = |mut request: Request<Body>| {
        request.headers_mut().insert(header::COOKIE, "myc_console_token=s3cret".parse().unwrap());
        request
    };
    let fields = [("csrf", csrf.as_str()), ("reason", "x")];
    // No token, no CSRF field, a foreign or null Origin, a foreign Host.
    assert_eq!(
        send(&console, form("/services/polygon_adapter/rollback", &fields)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let no_csrf = with_cookie(form("/services/polygon_adapter/rollback", &[("reason", "x")]));
    assert_eq!(send(&console, no_csrf).await.status(), StatusCode::FORBIDDEN);
    for origin in ["http://evil.example.com", "null"] {
        let mut request = with_cookie(form("/services/polygon_adapter/rollback", &fields));
        request.headers_mut().insert(header::ORIGIN, origin.parse().unwrap());
        assert_eq!(send(&console, request).await.status(), StatusCode::FORBIDDEN, "{origin}");
    }
    let mut rebinding = with_cookie(form("/services/polygon_adapter/rollback", &fields));
    rebinding.headers_mut().insert(header::HOST, "evil.example.com:8080".parse().unwrap());
    assert_eq!(send(&console, rebinding).await.status(), StatusCode::MISDIRECTED_REQUEST);
    assert!(!dir.path().join("audit.jsonl").exists(), "nothing changed");
    // A result id that was never given shows nothing.
    let page = text_of(send(&console, with_cookie(get("/?result=forged%20message"))).await).await;
    assert!(!page.contains("forged"), "the URL cannot write the message");
    let done = send(&console, with_cookie(form("/services/polygon_adapter/rollback", &fields))).await;
    assert_eq!(done.status(), StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_change_with_a_named_token_is_audited_under_its_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    let mut settings = settings(dir.path());
    settings.console.tokens.insert("alice".to_owned(), "alice-s3cret".to_owned());
    settings.console.tokens.insert("bob".to_owned(), "bob-s3cret".to_owned());
    let console = Arc::new(Console::new(settings, Some("shared".to_owned()), LISTEN.parse().unwrap()));
    std::fs::write(dir.path().join("rollout.toml"), "[services.polygon_adapter]\nstage = \"broker\"\n").unwrap();
    let mut users = Vec::new();
    for token in ["alice-s3cret", "bob-s3cret", "shared"] {
        let mut request = post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"drill"}"#);
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
        let (status, entry) = call(&console, request).await;
        assert_eq!(status, StatusCode::OK, "{entry}");
        assert_eq!(entry["host"], "127.0.0.1:40000");
        users.push(entry["user"].as_str().unwrap().to_owned());
    }
    assert_eq!(users[..2], ["alice (console)", "bob (console)"]);
    assert!(
        users[2].ends_with(" (console)") && !users[2].starts_with("alice"),
        "the unnamed token names no one: {users:?}"
    );
    // The cookie `/?token=` sets carries the name too.
    let traded = send(&console, get("/?token=alice-s3cret")).await;
    assert_eq!(traded.status(), StatusCode::SEE_OTHER);
    let mut request = post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"drill"}"#);
    request.headers_mut().insert(header::COOKIE, "myc_console_token=alice-s3cret".parse().unwrap());
    let (status, entry) = call(&console, request).await;
    assert_eq!((status, entry["user"].as_str()), (StatusCode::OK, Some("alice (console)")), "{entry}");
    let mut wrong = post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"drill"}"#);
    wrong.headers_mut().insert("authorization", "Bearer alice".parse().unwrap());
    assert_eq!(call(&console, wrong).await.0, StatusCode::UNAUTHORIZED, "a name is not a token");
}
