//! The console's API in-process (axum router, tower `oneshot`): listing,
//! advance refused with the gate's reason and accepted with a good report,
//! rollback with a reason, audit entries naming the client, and token and
//! CSRF enforcement.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{Console, router};

fn settings(dir: &std::path::Path) -> myc_config::Settings {
    let mut settings = myc_config::Settings::default();
    settings.rollout.file = dir.join("rollout.toml");
    settings.rollout.audit_log = dir.join("audit.jsonl");
    settings.console.reports_dir = dir.join("reports");
    settings.gate.min_messages = 5;
    settings.services.insert("polygon_adapter".to_owned(), myc_config::ServiceSettings { source: Some(4) });
    settings
}

async fn call(console: &Arc<Console>, request: Request<Body>) -> (StatusCode, Value) {
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let response = router(Arc::clone(console)).layer(MockConnectInfo(client)).oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn post(console: &Console, path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .header("x-csrf-token", &console.csrf)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

/// A verify report made `age_seconds` ago.
fn report(verdict: &str, sources: &[u8], age_seconds: u64) -> String {
    let now =
        humantime::format_rfc3339_seconds(std::time::SystemTime::now() - std::time::Duration::from_secs(age_seconds));
    format!(
        r#"{{"generated_at":"{now}","sources":{sources:?},"reference":{{"name":"relay:x","messages":10}},"candidate":{{"name":"broker:market_data","messages":10}},"matched":10,"mismatched":0,"missing":0,"extra":0,"duplicates":{{"reference":0,"candidate":0}},"reordered":{{"reference":0,"candidate":0}},"skew_ns":null,"verdict":"{verdict}","examples":[]}}"#
    )
}

#[tokio::test]
async fn services_are_listed_with_their_stage_and_gate() {
    let dir = tempfile::tempdir().unwrap();
    let console = Arc::new(Console::new(settings(dir.path()), None));
    let (status, body) = call(&console, Request::get("/api/services").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body[0]["name"], "polygon_adapter");
    assert_eq!(body[0]["stage"], "relay");
    assert_eq!(body[0]["advance_allowed"], false);
    assert!(body[0]["gate_reason"].as_str().unwrap().contains("no verify report"));
    let response = router(Arc::clone(&console))
        .layer(MockConnectInfo("127.0.0.1:1".parse::<SocketAddr>().unwrap()))
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let page = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        page.contains("data-service=\"polygon_adapter\"") && page.contains(&console.csrf),
        "the table is rendered server-side"
    );
}

#[tokio::test]
async fn advance_is_refused_with_the_gates_reason_then_accepted_and_rollback_needs_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let console = Arc::new(Console::new(settings(dir.path()), None));
    std::fs::create_dir_all(dir.path().join("reports")).unwrap();
    std::fs::write(dir.path().join("reports/old.json"), report("differs", &[4], 60)).unwrap();
    let (status, body) = call(&console, post(&console, "/api/services/polygon_adapter/advance", "{}")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["error"].as_str().unwrap().contains("differs"), "{body}");

    std::fs::write(dir.path().join("reports/new.json"), report("identical", &[2, 4], 0)).unwrap();
    let (status, body) =
        call(&console, post(&console, "/api/services/polygon_adapter/advance", r#"{"reason":"looks good"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!((body["from"].as_str(), body["to"].as_str()), (Some("relay"), Some("dual_relay_primary")));
    assert_eq!(body["host"], "127.0.0.1:40000", "the client's address is audited");

    let (status, _) = call(&console, post(&console, "/api/services/polygon_adapter/rollback", "{}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a rollback needs a reason");
    let (status, body) =
        call(&console, post(&console, "/api/services/polygon_adapter/rollback", r#"{"reason":"drill"}"#)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, detail) = call(&console, Request::get("/api/services/polygon_adapter").body(Body::empty()).unwrap()).await;
    assert_eq!(detail["service"]["stage"], "relay");
    assert_eq!(detail["history"].as_array().unwrap().len(), 2);
    assert_eq!(detail["report"]["verdict"], "identical");
    let (status, report) = call(&console, Request::get("/api/reports/new").body(Body::empty()).unwrap()).await;
    assert_eq!((status, report["matched"].as_u64()), (StatusCode::OK, Some(10)));
}

#[tokio::test]
async fn the_token_and_the_csrf_token_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let console = Arc::new(Console::new(settings(dir.path()), Some("s3cret".to_owned())));
    let (status, _) = call(&console, Request::get("/api/services").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
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
