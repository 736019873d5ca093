//! The guard inside the console: its latest decision per service appears in
//! the API with its figures, and on the server-rendered page as text (a
//! hostile service name is escaped, never markup).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::Request;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{Console, router};
use crate::commands::guard::Guard;

#[tokio::test]
async fn each_service_shows_the_guards_decision_and_figures_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = myc_config::Settings::default();
    settings.rollout.file = dir.path().join("rollout.toml");
    settings.rollout.audit_log = dir.path().join("audit.jsonl");
    settings.console.reports_dir = dir.path().join("reports");
    let hostile = "<img src=x onerror=alert(1)>";
    let mut console = Console::new(settings.clone(), None);
    let actor = myc_rollout::Actor { user: "test".to_owned(), host: "here".to_owned() };
    console.rollout.set(hostile, myc_config::Stage::Broker, "test", &actor, SystemTime::now()).unwrap();
    let mut guard = Guard::new(&settings, console.rollout.clone(), true).unwrap();
    console.guard = Arc::clone(&guard.latest);
    let decisions = guard.decide(SystemTime::now()).unwrap();
    assert_eq!(decisions.len(), 1);
    let console = Arc::new(console);

    let app = || router(Arc::clone(&console)).layer(MockConnectInfo("127.0.0.1:1".parse::<SocketAddr>().unwrap()));
    let response = app().oneshot(Request::get("/api/services").body(Body::empty()).unwrap()).await.unwrap();
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let guard = &body[0]["guard"];
    assert_eq!(guard["decision"], "insufficient", "{body}");
    assert_eq!(guard["figures"]["broker"]["failed"], 0);
    assert!(guard["figures"]["verify"].is_null());

    let response = app().oneshot(Request::get("/").body(Body::empty()).unwrap()).await.unwrap();
    let page = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(page.contains("<td class=\"guard-insufficient\">insufficient</td>"), "rendered server-side");
    assert!(!page.contains(hostile), "a service name is text, never markup");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.contains("<section id=\"guard\" hidden>"), "the guard section shows once there are decisions");
}
