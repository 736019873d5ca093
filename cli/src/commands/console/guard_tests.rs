//! The guard inside the console: its latest decision per service appears in
//! the API with its figures, and on the server-rendered page as text (hostile
//! text in a decision's reason is escaped, never markup).

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

use super::{Console, router};
use crate::commands::guard::Guard;

const LISTEN: &str = "127.0.0.1:8080";

#[tokio::test]
async fn each_service_shows_the_guards_decision_and_figures_as_text() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = myc_config::Settings::default();
    settings.rollout.file = dir.path().join("rollout.toml");
    settings.rollout.audit_log = dir.path().join("audit.jsonl");
    settings.console.reports_dir = dir.path().join("reports");
    let mut console = Console::new(settings.clone(), None, LISTEN.parse().unwrap());
    let actor = myc_rollout::Actor { user: "test".to_owned(), host: "here".to_owned() };
    console.rollout.set("feed", myc_config::Stage::Broker, "test", &actor, SystemTime::now()).unwrap();
    let mut guard = Guard::new(&settings, console.rollout.clone(), true).unwrap();
    console.guard = Arc::clone(&guard.latest);
    let decisions = guard.decide(SystemTime::now()).unwrap();
    assert_eq!(decisions.len(), 1);
    // A reason can carry an error's text (a path, a scrape error): whatever
    // it holds reaches the page as text.
    let hostile = "<img src=x onerror=alert(1)> {{GUARD}}";
    guard.latest.lock().unwrap_or_else(PoisonError::into_inner).get_mut("feed").unwrap().reason = hostile.to_owned();
    let console = Arc::new(console);

    let send = |path: &str| {
        let request = Request::get(path).header(header::HOST, LISTEN).body(Body::empty()).unwrap();
        let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        router(Arc::clone(&console)).layer(MockConnectInfo(client)).oneshot(request)
    };
    let response = send("/api/services").await.unwrap();
    let body: Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let guard = &body[0]["guard"];
    assert_eq!(guard["decision"], "insufficient", "{body}");
    assert_eq!(guard["reason"], hostile, "the API carries the reason as it is: JSON, not markup");
    assert_eq!(guard["figures"]["broker"]["failed"], 0);
    assert!(guard["figures"]["verify"].is_null());

    let response = send("/").await.unwrap();
    let page = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(page.contains("<td class=\"guard-insufficient\">insufficient</td>"), "rendered server-side");
    assert!(!page.contains("<img"), "a reason is text, never markup");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt; {{GUARD}}"), "escaped, and not taken for a placeholder");
    assert_eq!(page.matches("<tr data-service=\"feed\"><td>feed</td><td class=\"guard-").count(), 1);
    assert!(!page.contains("<section id=\"guard\" hidden>"), "the guard section shows once there are decisions");
}
