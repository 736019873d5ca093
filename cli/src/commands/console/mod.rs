//! `myc console`: the operator's web page — services with their stage as a
//! four-step track, live rates per path, shadow drops and breaker, the last
//! verify verdict and its age; per service the latest report (diffs side by
//! side) and the audit history; advance (enabled only when the gate would
//! pass, else the page says why) and roll back (with a reason). It reads
//! and writes the same settings, rollout plan, audit log and verify reports
//! as the CLI, through the same code (`myc_rollout::Rollout`, whose lock
//! orders the console's changes with everyone else's). With `[guard] enabled`
//! it runs the guard (`commands::guard`) and shows each service's latest
//! decision.
//!
//! Safety, applied to every request before any handler ([`guard`]): a
//! `Host` that is not this console gets 421 (DNS rebinding), a POST from
//! another `Origin` 403, a request without a token (when any is set) 401.
//! `/?token=…` trades the token for an `HttpOnly` cookie and a redirect to
//! the same URL without it. State-changing requests are POSTs carrying the
//! page's CSRF token — from the script (JSON, `X-CSRF-Token`) or from the
//! page's plain HTML forms (`forms`, for a browser without JavaScript);
//! every change needs a reason and is audited with the client's address and,
//! with a named token (`[console.tokens]`), the token's name. An advance is
//! confirmed against the evidence it was shown: the report's SHA-256 goes
//! with the request, and a newer report in between refuses the change.
//! Everything from files or requests reaches the page as text.
//!
//! It deliberately logs no URL and no header, so the token never lands in
//! a log.

mod access;
mod forms;
#[cfg(test)]
mod guard_tests;
mod page;
mod reports;
pub(crate) mod scrape;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{Context, bail};
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use myc_config::{Settings, Stage};
use myc_rollout::{Actor, Rollout, gate};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Outcome, shutdown_signal};
use crate::args::{ConsoleArgs, GlobalArgs};

/// What every request handler shares.
pub(crate) struct Console {
    settings: Settings,
    rollout: Rollout,
    reports: reports::Reports,
    /// One of them is required on every request, unless there are none.
    tokens: access::Tokens,
    /// Required on every POST (`X-CSRF-Token`), embedded in the page.
    csrf: String,
    /// The `Host` values answered.
    hosts: access::Hosts,
    live: scrape::Live,
    /// The guard's latest decision per service (empty unless `[guard] enabled`).
    guard: super::guard::Latest,
    /// What the last form posts did, shown on the page they redirect to.
    results: forms::Results,
}

pub(crate) fn run(args: &ConsoleArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let address: SocketAddr =
        args.listen.parse().with_context(|| format!("{:?} is not an address like 127.0.0.1:8080", args.listen))?;
    let token = args.token.clone().or_else(|| Some(settings.console.token.clone())).filter(|token| !token.is_empty());
    let named = settings.console.tokens.values().any(|token| !token.is_empty());
    if !address.ip().is_loopback() && token.is_none() && !named {
        bail!(
            "refusing to serve the console on {address} without a token: anyone who can reach it could change stages (set --token, console.token or [console.tokens])"
        );
    }
    let runtime = super::runtime()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(address).await.with_context(|| format!("cannot listen on {address}"))?;
        let bound = listener.local_addr()?;
        tracing::info!(address = %bound, "console listening");
        let mut console = Console::new(settings, token, bound);
        let guard = if console.settings.guard.enabled {
            let guard = super::guard::Guard::new(&console.settings, console.rollout.clone(), false)?;
            console.guard = Arc::clone(&guard.latest);
            Some(guard)
        } else {
            None
        };
        let console = Arc::new(console);
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
        let _scrapers = scrape::run(console.settings.console.scrape.clone(), &console.live);
        let app = router(Arc::clone(&console)).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app).with_graceful_shutdown(shutdown_signal()).await?;
        anyhow::Ok(Outcome::Success)
    })
}

impl Console {
    pub(crate) fn new(settings: Settings, token: Option<String>, listen: SocketAddr) -> Console {
        let rollout = Rollout::from_settings(&settings);
        let reports = reports::Reports::new(settings.console.reports_dir.clone());
        let csrf = format!("{:032x}", rand::random::<u128>());
        let hosts = access::Hosts::new(listen, &settings.console.allowed_hosts);
        let tokens = access::Tokens::new(token, &settings.console.tokens);
        Console {
            settings,
            rollout,
            reports,
            tokens,
            csrf,
            hosts,
            live: scrape::Live::default(),
            guard: super::guard::Latest::default(),
            results: forms::Results::default(),
        }
    }

    fn source_of(&self, service: &str) -> Option<u8> {
        self.settings.services.get(service).and_then(|service| service.source)
    }

    /// Whether an advance would pass the gate now, and why not.
    fn gate(
        &self,
        name: &str,
        stage: Stage,
        source: Option<u8>,
        report: Option<&reports::Report>,
        audit: &myc_rollout::audit::Log,
        now: SystemTime,
    ) -> (bool, String) {
        if stage == Stage::Broker {
            return (false, "already at broker".to_owned());
        }
        let Some(report) = report else {
            return (false, self.no_report(name, source));
        };
        let facts = gate::AuditFacts::of(audit, name);
        match gate::Evidence::from_json(&report.bytes).and_then(|evidence| {
            gate::check(&evidence, &self.settings.gate, gate::ServiceFacts { name, source }, &facts, now)
        }) {
            Ok(()) => (true, "the latest report passes the gate".to_owned()),
            Err(why) => (false, why),
        }
    }

    fn no_report(&self, name: &str, source: Option<u8>) -> String {
        match source {
            Some(source) => {
                format!("no verify report about source {source} in {}", self.reports.dir().display())
            }
            None => format!("{name} has no source id ([services.{name}] source = N), so no report can be about it"),
        }
    }

    fn service_view(
        &self,
        name: &str,
        stage: Stage,
        source: Option<u8>,
        audit: &myc_rollout::audit::Log,
        now: SystemTime,
    ) -> ServiceView {
        let report = self.reports.latest(source, now);
        let (advance_allowed, gate_reason) = self.gate(name, stage, source, report.as_ref(), audit, now);
        let evidence = report.as_ref().and_then(|report| EvidenceView::of(report, source));
        let paths = self
            .live
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .services
            .get(name)
            .cloned()
            .unwrap_or_default();
        ServiceView {
            name: name.to_owned(),
            stage,
            stage_index: stage.index(),
            source,
            paths,
            verdict: report.as_ref().and_then(|report| report.value["verdict"].as_str().map(str::to_owned)),
            report_age_seconds: report
                .as_ref()
                .map(|report| now.duration_since(report.generated_at).map_or(0, |age| age.as_secs())),
            report_id: report.map(|report| report.id),
            next_stage: stage.next(),
            evidence,
            advance_allowed,
            gate_reason,
            guard: self.guard.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(name).cloned(),
        }
    }

    fn services(&self) -> anyhow::Result<Vec<ServiceView>> {
        let status = self.rollout.status()?;
        let audit = self.rollout.history(None)?;
        let now = SystemTime::now();
        Ok(status
            .services
            .iter()
            .map(|(name, service)| self.service_view(name, service.stage, service.source, &audit, now))
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
    /// Where an advance would take it (`None` at broker).
    next_stage: Option<Stage>,
    /// What an advance would be judged on: the latest report about its
    /// source, shown before the change is confirmed.
    evidence: Option<EvidenceView>,
    advance_allowed: bool,
    gate_reason: String,
    /// The guard's latest decision and its figures, when the guard runs.
    guard: Option<myc_rollout::guard::Decision>,
}

/// The evidence an advance would hand to the gate, as the operator
/// confirms it: which report (id and SHA-256, the digest the audit entry
/// records), its verdict and when it was made, and its counts for the
/// service's own source.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EvidenceView {
    report_id: String,
    /// Hex SHA-256 of the report file: sent back with the confirmed change.
    sha256: String,
    verdict: Option<String>,
    generated_at: Option<String>,
    window_start: Option<String>,
    window_end: Option<String>,
    /// `per_source[source]`: matched, mismatched, missing, extra.
    source_counts: Option<[u64; 4]>,
    /// The report's totals: matched, mismatched, missing, extra.
    total_counts: [u64; 4],
}

impl EvidenceView {
    fn of(report: &reports::Report, source: Option<u8>) -> Option<EvidenceView> {
        let evidence = gate::Evidence::from_json(&report.bytes).ok()?;
        let value = &report.value;
        let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
        let counts = |value: &serde_json::Value| {
            ["matched", "mismatched", "missing", "extra"].map(|key| value[key].as_u64().unwrap_or(0))
        };
        let source_counts = source.and_then(|source| {
            let counts_of_source = &value["per_source"][source.to_string()];
            counts_of_source.is_object().then(|| counts(counts_of_source))
        });
        Some(EvidenceView {
            report_id: report.id.clone(),
            sha256: evidence.sha256,
            verdict: text(&value["verdict"]),
            generated_at: text(&value["generated_at"]),
            window_start: text(&value["window"]["start"]),
            window_end: text(&value["window"]["end"]),
            source_counts,
            total_counts: counts(value),
        })
    }
}

pub(crate) fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/services", get(list))
        .route("/api/overview", get(overview))
        .route("/api/services/{name}", get(detail))
        .route("/api/services/{name}/{action}", post(change))
        .route("/api/reports/{id}", get(report))
        .route("/services/{name}/{action}", post(forms::submit))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&console), guard))
        .with_state(console)
}

type Shared = State<Arc<Console>>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({ "error": message.into() }))).into_response()
}

/// Host, Origin and token, for every request, before its handler; and the
/// headers every answer carries.
async fn guard(State(console): Shared, mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or_default();
    if !console.hosts.allows(host) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "this console does not answer to that Host (add it to [console] allowed_hosts if it is yours)",
        );
    }
    if request.method() == Method::POST && !access::same_origin(headers) {
        return error(StatusCode::FORBIDDEN, "a change must come from the console's own page (Origin differs)");
    }
    // `/?token=` is the one way in without the token already in hand; the
    // page handler checks it and trades it for the cookie.
    let trading = request.uri().path() == "/" && request.uri().query().is_some_and(has_token_param);
    let identity = if console.tokens.is_empty() || trading {
        access::Identity::default()
    } else {
        match console.tokens.of_request(headers) {
            Some(identity) => identity,
            None => return error(StatusCode::UNAUTHORIZED, "a token is required"),
        }
    };
    request.extensions_mut().insert(identity);
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // `same-origin`, not `no-referrer`: a form POST under `no-referrer`
    // carries `Origin: null`, which the Origin check must refuse; other
    // sites still learn nothing.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn has_token_param(query: &str) -> bool {
    query.split('&').any(|pair| pair.split('=').next() == Some("token"))
}

async fn index(State(console): Shared, request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default();
    if has_token_param(query) {
        return trade_token(&console, query);
    }
    let services = match console.services() {
        Ok(services) => services,
        Err(error_text) => return error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error_text:#}")),
    };
    let nonce = format!("{:032x}", rand::random::<u128>());
    let result = query.split('&').find_map(|pair| pair.strip_prefix("result=")).and_then(|id| console.results.get(id));
    let targets = console.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).targets.clone();
    let page = page::render(&services, &targets, &console.csrf, &nonce, result.as_ref());
    with_policy(Html(page).into_response(), &nonce)
}

/// `response` under the pages' Content-Security-Policy: only the script
/// and style carrying `nonce` run, and forms post only to the console.
fn with_policy(mut response: Response, nonce: &str) -> Response {
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
         img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    );
    if let Ok(csp) = HeaderValue::from_str(&csp) {
        response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// `/?token=…`: 303 to the same URL without the token, with the cookie when
/// the token is right. The token itself is never echoed.
fn trade_token(console: &Console, query: &str) -> Response {
    let given = query.split('&').find_map(|pair| pair.strip_prefix("token=")).map(percent_decode).unwrap_or_default();
    let rest = access::without_token(query);
    let location = if rest.is_empty() { "/".to_owned() } else { format!("/?{rest}") };
    let mut response = (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
    if console.tokens.is_empty() {
        return response;
    }
    if console.tokens.identify(&given).is_none() {
        return error(StatusCode::UNAUTHORIZED, "wrong token");
    }
    let cookie = format!("{}={given}; HttpOnly; SameSite=Strict; Path=/", access::TOKEN_COOKIE);
    match HeaderValue::from_str(&cookie) {
        Ok(cookie) => {
            response.headers_mut().insert(header::SET_COOKIE, cookie);
        }
        Err(_) => return error(StatusCode::BAD_REQUEST, "the token cannot be a cookie"),
    }
    response
}

/// `%XX` and `+` decoded; anything malformed left as written (it then
/// simply does not match the token).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                match u8::from_str_radix(std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("zz"), 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 3;
                        continue;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn list(State(console): Shared) -> Response {
    match console.services() {
        Ok(services) => Json(services).into_response(),
        Err(error_text) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("{error_text:#}")),
    }
}

/// What is not about one service: invalid reports, scrape targets, and
/// unreadable audit lines.
async fn overview(State(console): Shared) -> Response {
    let (_, invalid) = console.reports.scan(SystemTime::now());
    let targets = console.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).targets.clone();
    let audit_unreadable = console.rollout.history(None).map(|log| log.unreadable).unwrap_or_default();
    Json(json!({ "invalid_reports": invalid, "targets": targets, "audit_unreadable": audit_unreadable }))
        .into_response()
}

/// A rollout error as an HTTP status and message: refused 409, unknown
/// service 404, bad name 400, anything else 500.
fn refusal(failure: &myc_rollout::Error) -> (StatusCode, String) {
    match failure {
        myc_rollout::Error::Refused(reason) => (StatusCode::CONFLICT, format!("refused: {reason}")),
        myc_rollout::Error::UnknownService(_) => (StatusCode::NOT_FOUND, failure.to_string()),
        myc_rollout::Error::BadServiceName(_) => (StatusCode::BAD_REQUEST, failure.to_string()),
        other => (StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

/// A rollout error as a JSON answer.
fn rollout_error(failure: &myc_rollout::Error) -> Response {
    let (status, message) = refusal(failure);
    error(status, message)
}

async fn detail(State(console): Shared, UrlPath(name): UrlPath<String>) -> Response {
    if let Err(bad) = myc_rollout::check_service_name(&name) {
        return rollout_error(&bad);
    }
    let status = match console.rollout.status() {
        Ok(status) => status,
        Err(failure) => return rollout_error(&failure),
    };
    let Some(service) = status.services.get(&name) else {
        return rollout_error(&myc_rollout::Error::UnknownService(name));
    };
    let audit = match console.rollout.history(None) {
        Ok(audit) => audit,
        Err(failure) => return rollout_error(&failure),
    };
    let now = SystemTime::now();
    let view = console.service_view(&name, service.stage, service.source, &audit, now);
    let report = console.reports.latest(service.source, now).map(|report| report.value);
    let history: Vec<_> = audit.entries.iter().filter(|entry| entry.service == name).collect();
    Json(json!({
        "service": view,
        "report": report,
        "history": history,
        "history_unreadable": audit.unreadable,
    }))
    .into_response()
}

async fn report(State(console): Shared, UrlPath(id): UrlPath<String>) -> Response {
    match console.reports.get(&id) {
        Some(value) => Json(value).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such report"),
    }
}

#[derive(Deserialize, Default)]
struct ChangeRequest {
    #[serde(default)]
    reason: String,
    /// The SHA-256 of the report the operator confirmed (advance): the
    /// change is refused if the latest report is another one by then.
    #[serde(default)]
    evidence_sha256: Option<String>,
}

/// Whether `given` is the page's CSRF token (constant time).
fn csrf_matches(console: &Console, given: &str) -> bool {
    access::token_matches(&console.csrf, given)
}

/// The actor to audit: a named token's name, else the console's user, and
/// the client's address; both marked as coming from the console.
fn actor(identity: &access::Identity, client: SocketAddr) -> Actor {
    let user = match &identity.0 {
        Some(name) => name.clone(),
        None => std::env::var("USER").unwrap_or_else(|_| "console".to_owned()),
    };
    Actor { user: format!("{user} (console)"), host: client.to_string() }
}

/// One change asked for, checked and applied: the action must be advance
/// or rollback, both need a reason, an advance is gated on the latest
/// report about the service (and, when `confirmed` names one, on that
/// report still being the latest).
async fn apply(
    console: &Arc<Console>,
    name: String,
    action: &str,
    reason: String,
    confirmed: Option<String>,
    actor: Actor,
) -> Result<myc_rollout::audit::Entry, (StatusCode, String)> {
    if let Err(bad) = myc_rollout::check_service_name(&name) {
        return Err(refusal(&bad));
    }
    let rollback = match action {
        "advance" => false,
        "rollback" => true,
        _ => return Err((StatusCode::NOT_FOUND, "no such action (advance or rollback)".to_owned())),
    };
    if reason.trim().is_empty() {
        return Err((StatusCode::BAD_REQUEST, format!("a{} {action} needs a reason", if rollback { "" } else { "n" })));
    }
    // The change waits for the plan lock: off the async workers.
    let worker = Arc::clone(console);
    let changed = tokio::task::spawn_blocking(move || {
        let now = SystemTime::now();
        if rollback {
            return worker.rollout.rollback(&name, None, &reason, &actor, now);
        }
        let source = worker.source_of(&name);
        match worker.reports.latest(source, now) {
            Some(report) => {
                if let Some(confirmed) = &confirmed {
                    let latest = gate::Evidence::from_json(&report.bytes).map(|evidence| evidence.sha256);
                    if latest.as_ref() != Ok(confirmed) {
                        return Err(myc_rollout::Error::Refused(format!(
                            "the evidence changed since it was confirmed (the latest report about {name} is now {}): look again",
                            report.id
                        )));
                    }
                }
                worker.rollout.advance(&name, Some(&report.bytes), false, &reason, &actor, now)
            }
            None => {
                // An unknown service is a 404 before it is a missing report.
                let known = worker.rollout.status()?.services.contains_key(&name);
                if known {
                    Err(myc_rollout::Error::Refused(worker.no_report(&name, source)))
                } else {
                    Err(myc_rollout::Error::UnknownService(name))
                }
            }
        }
    })
    .await;
    match changed {
        Ok(Ok(entry)) => Ok(entry),
        Ok(Err(failure)) => Err(refusal(&failure)),
        Err(_) => Err((StatusCode::INTERNAL_SERVER_ERROR, "the change did not complete".to_owned())),
    }
}

/// `POST /api/services/{name}/advance` (gated on the latest report about
/// the service) and `…/rollback` (never gated); both need a reason.
async fn change(
    State(console): Shared,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Extension(identity): Extension<access::Identity>,
    headers: HeaderMap,
    UrlPath((name, action)): UrlPath<(String, String)>,
    body: Option<Json<ChangeRequest>>,
) -> Response {
    let csrf = headers.get("x-csrf-token").and_then(|value| value.to_str().ok()).unwrap_or_default();
    if !csrf_matches(&console, csrf) {
        return error(StatusCode::FORBIDDEN, "missing or wrong X-CSRF-Token");
    }
    let request = body.map(|Json(body)| body).unwrap_or_default();
    match apply(&console, name, &action, request.reason, request.evidence_sha256, actor(&identity, client)).await {
        Ok(entry) => Json(entry).into_response(),
        Err((status, message)) => error(status, message),
    }
}
