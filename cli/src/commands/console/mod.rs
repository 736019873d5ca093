//! `myc console`: the operator's web page — services with their stage as a
//! four-step track, live rates per path, shadow drops and breaker, the last
//! verify verdict and its age; per service the latest report (diffs side by
//! side) and the audit history; advance (enabled only when the gate would
//! pass, else the page says why) and roll back (with a reason). It reads
//! and writes the same settings, rollout plan, audit log and verify reports
//! as the CLI, through the same code. With `[guard] enabled` it runs the
//! guard (`commands::guard`) and shows each service's latest decision.
//!
//! Safety: loopback by default; any other address needs a token (compared
//! in constant time). State-changing requests are POSTs carrying the page's
//! CSRF token; every change is audited with the client's address.

#[cfg(test)]
mod guard_tests;
mod page;
pub(crate) mod scrape;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use axum::extract::{ConnectInfo, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use myc_config::{Settings, Stage};
use myc_rollout::{Actor, Rollout};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{Outcome, shutdown_signal};
use crate::args::{ConsoleArgs, GlobalArgs};

/// What every request handler shares.
pub(crate) struct Console {
    settings: Settings,
    rollout: Rollout,
    reports_dir: PathBuf,
    /// Required on every request when set.
    token: Option<String>,
    /// Required on every POST (`X-CSRF-Token`), embedded in the page.
    csrf: String,
    live: scrape::Live,
    /// The guard's latest decision per service (empty unless `[guard] enabled`).
    guard: super::guard::Latest,
}

pub(crate) fn run(args: &ConsoleArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let address: SocketAddr =
        args.listen.parse().with_context(|| format!("{:?} is not an address like 127.0.0.1:8080", args.listen))?;
    let token = args.token.clone().or_else(|| Some(settings.console.token.clone())).filter(|token| !token.is_empty());
    if !address.ip().is_loopback() && token.is_none() {
        bail!(
            "refusing to serve the console on {address} without a token: anyone who can reach it could change stages (set --token or console.token)"
        );
    }
    let mut console = Console::new(settings, token);
    let guard = if console.settings.guard.enabled {
        let guard = super::guard::Guard::new(&console.settings, console.rollout.clone(), false)?;
        console.guard = Arc::clone(&guard.latest);
        Some(guard)
    } else {
        None
    };
    let console = Arc::new(console);
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        // The guard's decisions are logged and shown on the page; its
        // counters are served on `[metrics] listen` when that is set.
        let metrics_address = Some(console.settings.metrics.listen.as_str()).filter(|address| !address.is_empty());
        let metrics_listener = match &guard {
            Some(_) => crate::metrics_http::bind(metrics_address).await?,
            None => None,
        };
        let _metrics = guard.as_ref().and_then(|guard| {
            crate::metrics_http::spawn(metrics_listener, |registry| guard.metrics.register(registry))
        });
        let _guard = guard.map(|guard| {
            myc_transport::AbortOnDrop::spawn(guard.run(|decision| {
                tracing::info!(
                    service = decision.service,
                    decision = decision.decision.name(),
                    reason = decision.reason,
                    "guard"
                );
            }))
        });
        let listener =
            tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
        tracing::info!(address = %listener.local_addr()?, "console listening");
        let _scraper = myc_transport::AbortOnDrop::spawn(scrape::run(
            console.settings.console.scrape.clone(),
            Arc::clone(&console.live),
        ));
        let app = router(Arc::clone(&console)).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        anyhow::Ok(Outcome::Success)
    })
}

impl Console {
    pub(crate) fn new(settings: Settings, token: Option<String>) -> Console {
        let rollout = Rollout::from_settings(&settings);
        let reports_dir = settings.console.reports_dir.clone();
        let csrf = format!("{:032x}", rand::random::<u128>());
        Console {
            settings,
            rollout,
            reports_dir,
            token,
            csrf,
            live: scrape::Live::default(),
            guard: super::guard::Latest::default(),
        }
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.token else { return true };
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let cookie = headers
            .get(header::COOKIE)
            .and_then(|value| value.to_str().ok())
            .and_then(|cookies| cookies.split(';').find_map(|cookie| cookie.trim().strip_prefix("myc_console_token=")));
        [bearer, cookie]
            .into_iter()
            .flatten()
            .any(|given| bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes())))
    }

    /// Every verify report in the reports directory: (id, parsed JSON, raw bytes).
    fn reports(&self) -> Vec<(String, Value, Vec<u8>)> {
        let Ok(entries) = std::fs::read_dir(&self.reports_dir) else { return Vec::new() };
        let mut reports: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "json"))
            .filter_map(|path| {
                let bytes = std::fs::read(&path).ok()?;
                let value: Value = serde_json::from_slice(&bytes).ok()?;
                value.get("verdict")?;
                let id = path.file_stem()?.to_string_lossy().into_owned();
                Some((id, value, bytes))
            })
            .collect();
        reports.sort_by(|a, b| a.1["generated_at"].as_str().cmp(&b.1["generated_at"].as_str()));
        reports
    }

    /// The newest report about `source`'s stream (any report when the
    /// service has no source id).
    fn latest_report(&self, source: Option<u8>) -> Option<(String, Value, Vec<u8>)> {
        self.reports().into_iter().rev().find(|(_, value, _)| {
            source.is_none_or(|source| {
                value["sources"]
                    .as_array()
                    .is_some_and(|sources| sources.iter().any(|id| id.as_u64() == Some(u64::from(source))))
            })
        })
    }

    /// Whether an advance would pass the gate now, and why not.
    fn gate(&self, stage: Stage, source: Option<u8>, report: Option<&[u8]>) -> (bool, String) {
        if stage == Stage::Broker {
            return (false, "already at broker".to_owned());
        }
        let Some(report) = report else {
            return (false, format!("no verify report for this service in {}", self.reports_dir.display()));
        };
        match myc_rollout::gate::Evidence::from_json(report)
            .and_then(|evidence| myc_rollout::gate::check(&evidence, &self.settings.gate, source, SystemTime::now()))
        {
            Ok(()) => (true, "the latest report passes the gate".to_owned()),
            Err(why) => (false, why),
        }
    }

    fn service_view(&self, name: &str, stage: Stage, source: Option<u8>) -> ServiceView {
        let report = self.latest_report(source);
        let (advance_allowed, gate_reason) =
            self.gate(stage, source, report.as_ref().map(|(_, _, bytes)| bytes.as_slice()));
        let paths =
            self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned().unwrap_or_default();
        let age_seconds = report.as_ref().and_then(|(_, value, _)| {
            let at = humantime::parse_rfc3339_weak(value["generated_at"].as_str()?).ok()?;
            SystemTime::now().duration_since(at).ok().map(|age| age.as_secs())
        });
        ServiceView {
            name: name.to_owned(),
            stage,
            stage_index: stage.index(),
            source,
            paths,
            verdict: report.as_ref().and_then(|(_, value, _)| value["verdict"].as_str().map(str::to_owned)),
            report_id: report.map(|(id, _, _)| id),
            report_age_seconds: age_seconds,
            advance_allowed,
            gate_reason,
            guard: self.guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned(),
        }
    }

    fn services(&self) -> anyhow::Result<Vec<ServiceView>> {
        let status = self.rollout.status()?;
        Ok(status
            .services
            .iter()
            .map(|(name, service)| self.service_view(name, service.stage, service.source))
            .collect())
    }
}

/// One row of the services table.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceView {
    name: String,
    stage: Stage,
    stage_index: u8,
    source: Option<u8>,
    paths: std::collections::BTreeMap<String, scrape::PathLive>,
    verdict: Option<String>,
    report_id: Option<String>,
    report_age_seconds: Option<u64>,
    advance_allowed: bool,
    gate_reason: String,
    /// The guard's latest decision and its figures, when the guard runs.
    guard: Option<myc_rollout::guard::Decision>,
}

pub(crate) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/services", get(list))
        .route("/api/services/{name}", get(detail))
        .route("/api/services/{name}/{action}", post(change))
        .route("/api/reports/{id}", get(report))
        .with_state(console)
}

type Shared = State<Arc<Console>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    token: Option<String>,
}

async fn index(State(console): Shared, headers: HeaderMap, Query(query): Query<PageQuery>) -> Response {
    // Opening the page with ?token=… once sets a cookie for the rest.
    let mut headers = headers;
    if let Some(token) = &query.token
        && let Ok(value) = format!("myc_console_token={token}").parse()
    {
        headers.insert(header::COOKIE, value);
    }
    if !console.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "a token is required");
    }
    let services = match console.services() {
        Ok(services) => services,
        Err(error_text) => return error(StatusCode::INTERNAL_SERVER_ERROR, error_text.to_string()),
    };
    let page = Html(page::render(&services, &console.csrf));
    match &query.token {
        Some(token) => {
            let cookie = format!("myc_console_token={token}; HttpOnly; SameSite=Strict; Path=/");
            ([(header::SET_COOKIE, cookie)], page).into_response()
        }
        None => page.into_response(),
    }
}

async fn list(State(console): Shared, headers: HeaderMap) -> Response {
    if !console.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "a token is required");
    }
    match console.services() {
        Ok(services) => Json(services).into_response(),
        Err(error_text) => error(StatusCode::INTERNAL_SERVER_ERROR, error_text.to_string()),
    }
}

async fn detail(State(console): Shared, headers: HeaderMap, UrlPath(name): UrlPath<String>) -> Response {
    if !console.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "a token is required");
    }
    let Ok(status) = console.rollout.status() else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "cannot read the plan");
    };
    let Some(service) = status.services.get(&name) else {
        return error(StatusCode::NOT_FOUND, format!("no service {name}"));
    };
    let view = console.service_view(&name, service.stage, service.source);
    let report = console.latest_report(service.source).map(|(_, value, _)| value);
    let history = console.rollout.history(Some(&name)).unwrap_or_default();
    Json(json!({ "service": view, "report": report, "history": history })).into_response()
}

async fn report(State(console): Shared, headers: HeaderMap, UrlPath(id): UrlPath<String>) -> Response {
    if !console.authorized(&headers) {
        return error(StatusCode::UNAUTHORIZED, "a token is required");
    }
    match console.reports().into_iter().find(|(report_id, _, _)| *report_id == id) {
        Some((_, value, _)) => Json(value).into_response(),
        None => error(StatusCode::NOT_FOUND, format!("no report {id}")),
    }
}

#[derive(Deserialize, Default)]
struct ChangeRequest {
    #[serde(default)]
    reason: String,
}

/// Checks token and CSRF for a POST; the actor to audit.
#[allow(clippy::result_large_err, reason = "the error is the response to send, built once per refused request")]
fn change_actor(console: &Console, headers: &HeaderMap, client: SocketAddr) -> Result<Actor, Response> {
    if !console.authorized(headers) {
        return Err(error(StatusCode::UNAUTHORIZED, "a token is required"));
    }
    let csrf = headers.get("x-csrf-token").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !bool::from(subtle::ConstantTimeEq::ct_eq(console.csrf.as_bytes(), csrf.as_bytes())) {
        return Err(error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token"));
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "console".to_owned());
    Ok(Actor { user: format!("{user} (console)"), host: client.to_string() })
}

fn changed(result: Result<myc_rollout::audit::Entry, myc_rollout::Error>) -> Response {
    match result {
        Ok(entry) => Json(entry).into_response(),
        Err(myc_rollout::Error::Refused(reason)) => error(StatusCode::CONFLICT, format!("refused: {reason}")),
        Err(other) => error(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// `POST /api/services/{name}/advance` (gated on the latest report about
/// the service) and `…/rollback` (needs a reason; never gated).
async fn change(
    State(console): Shared,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    UrlPath((name, action)): UrlPath<(String, String)>,
    body: Option<Json<ChangeRequest>>,
) -> Response {
    let actor = match change_actor(&console, &headers, client) {
        Ok(actor) => actor,
        Err(response) => return response,
    };
    let reason = body.map(|Json(body)| body.reason).unwrap_or_default();
    match action.as_str() {
        "advance" => {
            let source = console.settings.services.get(&name).and_then(|service| service.source);
            let evidence = console.latest_report(source).map(|(_, _, bytes)| bytes);
            changed(console.rollout.advance(&name, evidence.as_deref(), false, &reason, &actor, SystemTime::now()))
        }
        "rollback" if reason.trim().is_empty() => error(StatusCode::BAD_REQUEST, "a rollback needs a reason"),
        "rollback" => changed(console.rollout.rollback(&name, None, &reason, &actor, SystemTime::now())),
        other => error(StatusCode::NOT_FOUND, format!("no action {other:?} (advance or rollback)")),
    }
}
