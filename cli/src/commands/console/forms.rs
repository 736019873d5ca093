//! The console without JavaScript: the page's plain HTML forms post here
//! (`POST /services/{name}/{action}`, form-encoded, the CSRF token as a
//! field). A rollback is made at once; an advance first answers with a
//! confirmation page that shows the evidence (the latest report's id,
//! SHA-256, verdict and counts, and whether the gate passes it), whose own
//! form carries that SHA-256 back, so the change is made only on the
//! evidence the operator saw. Each change ends in a 303 to the page, which
//! shows what happened.
//!
//! It deliberately adds no rule of its own: Host, Origin and token are
//! checked by the router's guard before it runs, and the change itself goes
//! through the same `apply` as the JSON API. The result shown after the
//! redirect is looked up by a random id, never read from the URL, so a
//! crafted link cannot make the page say something the console did not.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use axum::Extension;
use axum::extract::{ConnectInfo, Form, Path as UrlPath, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;

use super::page::escape;
use super::{Console, EvidenceView, Shared, access, actor, apply, csrf_matches, error, with_policy};

/// How many results are kept for the page to show after its redirect.
const KEPT: usize = 64;

/// What one form post did, shown once on the page it redirects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Whether the change was made.
    pub(crate) ok: bool,
    /// What to tell the operator.
    pub(crate) text: String,
}

/// The latest outcomes by id (random, 128 bits), oldest dropped first.
#[derive(Debug, Default)]
pub(crate) struct Results {
    /// (id, outcome), at most [`KEPT`].
    kept: Mutex<VecDeque<(String, Outcome)>>,
}

impl Results {
    /// Keeps `outcome`; its id.
    fn put(&self, outcome: Outcome) -> String {
        let id = format!("{:032x}", rand::random::<u128>());
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.len() == KEPT {
            kept.pop_front();
        }
        kept.push_back((id.clone(), outcome));
        id
    }

    /// The outcome kept under `id`.
    pub(crate) fn get(&self, id: &str) -> Option<Outcome> {
        let kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        kept.iter().find(|(kept_id, _)| access::token_matches(kept_id, id)).map(|(_, outcome)| outcome.clone())
    }
}

/// The fields the page's forms send.
#[derive(Debug, Deserialize)]
pub(crate) struct Submitted {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// Set by the confirmation page: the SHA-256 of the report it showed.
    #[serde(default)]
    evidence_sha256: Option<String>,
    /// Set by the confirmation page's button.
    #[serde(default)]
    confirm: Option<String>,
}

/// `POST /services/{name}/{action}` from a form.
pub(crate) async fn submit(
    State(console): Shared,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Extension(identity): Extension<access::Identity>,
    UrlPath((name, action)): UrlPath<(String, String)>,
    Form(form): Form<Submitted>,
) -> Response {
    if !csrf_matches(&console, &form.csrf) {
        return error(StatusCode::FORBIDDEN, "missing or wrong CSRF token: reload the page and try again");
    }
    // An advance is made only from the confirmation page, which names the
    // evidence it showed; anything less shows that page first.
    let confirmed = form.confirm.is_some() && form.evidence_sha256.is_some();
    if action == "advance" && !confirmed && !form.reason.trim().is_empty() {
        return confirmation(&console, &name, &form.reason);
    }
    let outcome =
        match apply(&console, name.clone(), &action, form.reason, form.evidence_sha256, actor(&identity, client)).await
        {
            Ok(entry) => Outcome {
                ok: true,
                text: format!(
                    "{}: {} {} → {} (audited as {}@{})",
                    entry.service, entry.action, entry.from, entry.to, entry.user, entry.host
                ),
            },
            Err((_, message)) => Outcome { ok: false, text: format!("{name}: {message}") },
        };
    let id = console.results.put(outcome);
    (StatusCode::SEE_OTHER, [(header::LOCATION, format!("/?result={id}"))]).into_response()
}

/// The page that shows an advance's evidence before it is made.
fn confirmation(console: &Arc<Console>, name: &str, reason: &str) -> Response {
    let view = match myc_rollout::check_service_name(name).map_err(|bad| super::refusal(&bad)).and_then(|()| {
        let status = console.rollout.status().map_err(|failure| super::refusal(&failure))?;
        let audit = console.rollout.history(None).map_err(|failure| super::refusal(&failure))?;
        let service = status
            .services
            .get(name)
            .ok_or_else(|| super::refusal(&myc_rollout::Error::UnknownService(name.to_owned())))?;
        Ok(console.service_view(name, service.stage, service.source, &audit, SystemTime::now()))
    }) {
        Ok(view) => view,
        Err((status, message)) => return error(status, message),
    };
    let nonce = format!("{:032x}", rand::random::<u128>());
    let evidence = view.evidence.as_ref().map_or_else(
        || "<p>No verify report about this service: nothing to advance on.</p>".to_owned(),
        |evidence| evidence_table(evidence, view.source),
    );
    let next = view.next_stage.map_or("–", |stage| stage.name());
    let gate = if view.advance_allowed {
        format!("<p class=\"ok\" id=\"gate\">The gate passes it: {}.</p>", escape(&view.gate_reason))
    } else {
        format!("<p class=\"refused\" id=\"gate\">The gate refuses it: {}.</p>", escape(&view.gate_reason))
    };
    let form = match (&view.evidence, view.advance_allowed) {
        (Some(evidence), true) => format!(
            "<form method=\"post\" action=\"/services/{name}/advance\" class=\"confirm-form\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"reason\" value=\"{reason}\">\
             <input type=\"hidden\" name=\"evidence_sha256\" value=\"{sha256}\">\
             <input type=\"hidden\" name=\"confirm\" value=\"yes\">\
             <button type=\"submit\" class=\"confirm\">confirm: advance {name} to {next}</button></form>",
            name = escape(name),
            csrf = escape(&console.csrf),
            reason = escape(reason),
            sha256 = escape(&evidence.sha256),
            next = escape(next),
        ),
        _ => String::new(),
    };
    let page = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>advance {name}? — myc console</title>\
         <style nonce=\"{nonce}\">body {{ font: 14px/1.4 system-ui, sans-serif; margin: 16px; }} \
         table {{ border-collapse: collapse; }} th, td {{ text-align: left; padding: 4px 8px; border-bottom: 1px solid #d0d7de; }} \
         .ok {{ color: #1a7f37; }} .refused {{ color: #cf222e; font-weight: bold; }} button {{ font: inherit; padding: 4px 10px; }}</style>\
         </head><body><h1>Advance {name} from {from} to {next}?</h1>\
         <p>Reason: <q id=\"reason\">{reason}</q></p><h2>Evidence</h2>{evidence}{gate}{form}\
         <p><a href=\"/\">cancel</a></p></body></html>\n",
        name = escape(name),
        from = view.stage.name(),
        next = escape(next),
        reason = escape(reason),
    );
    with_policy(Html(page).into_response(), &nonce)
}

/// The evidence as a table: which report, its verdict and its counts.
fn evidence_table(evidence: &EvidenceView, source: Option<u8>) -> String {
    let text = |value: &Option<String>| escape(value.as_deref().unwrap_or("–"));
    let counts = |counts: [u64; 4]| {
        format!("matched {}, mismatched {}, missing {}, extra {}", counts[0], counts[1], counts[2], counts[3])
    };
    let source_row = match (source, evidence.source_counts) {
        (Some(source), Some(source_counts)) => {
            format!("<tr><th>source {source}</th><td id=\"source-counts\">{}</td></tr>", counts(source_counts))
        }
        (Some(source), None) => format!("<tr><th>source {source}</th><td>not counted by this report</td></tr>"),
        (None, _) => String::new(),
    };
    format!(
        "<table id=\"evidence\"><tr><th>report</th><td>{id}</td></tr>\
         <tr><th>SHA-256</th><td id=\"sha256\">{sha256}</td></tr>\
         <tr><th>verdict</th><td id=\"verdict\">{verdict}</td></tr>\
         <tr><th>made</th><td>{generated}</td></tr>\
         <tr><th>window</th><td>{start} to {end}</td></tr>\
         {source_row}<tr><th>all sources</th><td>{totals}</td></tr></table>",
        id = escape(&evidence.report_id),
        sha256 = escape(&evidence.sha256),
        verdict = text(&evidence.verdict),
        generated = text(&evidence.generated_at),
        start = text(&evidence.window_start),
        end = text(&evidence.window_end),
        totals = counts(evidence.total_counts),
    )
}
