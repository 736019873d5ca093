//! The console's one page: static HTML, CSS and JavaScript shipped in the
//! binary (no build step, no CDN). The services table, the scrape targets'
//! states and the result of the last change are rendered on the server, so
//! the page reads — and advance and rollback work, as plain HTML forms
//! posting to `forms` — without JavaScript; the script refreshes it every
//! second and adds the details, the chart and its own dialogs.
//!
//! Everything that comes from files or requests is escaped here and set as
//! `textContent` in the script; no handler is ever written into markup (the
//! page's Content-Security-Policy would refuse it anyway).

use std::collections::BTreeMap;

use super::ServiceView;
use super::forms::Outcome;
use super::scrape::TargetStatus;

const TEMPLATE: &str = include_str!("page.html");
const STAGES: [&str; 4] = ["relay", "dual_relay_primary", "dual_broker_primary", "broker"];

/// The page with `services` in its table (each with its forms, carrying
/// `csrf`), the scrape `targets` and the `result` of the last change, the
/// CSRF token in its head, and `nonce` on its script and style (the only
/// ones the page's policy runs).
pub(crate) fn render(
    services: &[ServiceView],
    targets: &BTreeMap<String, TargetStatus>,
    csrf: &str,
    nonce: &str,
    result: Option<&Outcome>,
) -> String {
    let rows: String = services.iter().map(|service| row(service, csrf)).collect();
    let targets: String = targets
        .iter()
        .map(|(url, target)| {
            format!(
                "<li class=\"{state}\">{}: {}</li>\n",
                escape(url),
                escape(&target.describe()),
                state = target.state()
            )
        })
        .collect();
    let (message_class, message) = match result {
        Some(outcome) => (if outcome.ok { "ok" } else { "err" }, escape(&outcome.text)),
        None => ("", String::new()),
    };
    let guard: String = services.iter().filter_map(guard_row).collect();
    let hidden = if guard.is_empty() { " hidden" } else { "" };
    fill(
        TEMPLATE,
        &[
            ("{{CSRF}}", &escape(csrf)),
            ("{{NONCE}}", &escape(nonce)),
            ("{{ROWS}}", &rows),
            ("{{GUARD_HIDDEN}}", hidden),
            ("{{GUARD}}", &guard),
            ("{{TARGETS}}", &targets),
            ("{{MESSAGE_CLASS}}", message_class),
            ("{{MESSAGE}}", &message),
        ],
    )
}

/// `template` with each placeholder replaced, in one pass: text put in is
/// never searched for placeholders again (a reason that reads `{{GUARD}}`
/// stays text).
fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + values.iter().map(|(_, value)| value.len()).sum::<usize>());
    let mut rest = template;
    while let Some(at) = rest.find("{{") {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        match values.iter().find(|(key, _)| rest.starts_with(key)) {
            Some((key, value)) => {
                out.push_str(value);
                rest = &rest[key.len()..];
            }
            None => {
                out.push_str("{{");
                rest = &rest[2..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The guard's latest decision about `service`, with the figures behind it.
fn guard_row(service: &ServiceView) -> Option<String> {
    let decision = service.guard.as_ref()?;
    let figures = &decision.figures;
    let percent = |ratio: f64| format!("{:.3}%", ratio * 100.0);
    let mib = |bytes: Option<u64>| {
        bytes.map_or_else(|| "–".to_owned(), |bytes| format!("{:.1} MiB", bytes as f64 / 1_048_576.0))
    };
    let verify = match figures.verify {
        Some(myc_rollout::guard::Sampled::Identical) => "identical",
        Some(myc_rollout::guard::Sampled::Differs) => "differs",
        None => "–",
    };
    Some(format!(
        "<tr data-service=\"{name}\"><td>{name}</td><td class=\"guard-{verdict}\">{verdict}</td><td>{broker} ({failed} of {attempted})</td>\
         <td>{relay}</td><td class=\"hide-narrow\">{dropped} ({n_dropped})</td><td>{rss} / {baseline}</td><td>{verify}</td>\
         <td class=\"hide-narrow\">{why}</td></tr>\n",
        name = escape(&service.name),
        verdict = decision.decision.name(),
        broker = percent(figures.broker.failed_ratio),
        failed = figures.broker.failed,
        attempted = figures.broker.published.saturating_add(figures.broker.failed),
        relay = percent(figures.relay.failed_ratio),
        dropped = percent(figures.broker.shadow_dropped_ratio),
        n_dropped = figures.broker.shadow_dropped,
        rss = mib(figures.rss_bytes),
        baseline = mib(figures.rss_baseline_bytes),
        why = escape(&decision.reason),
    ))
}

fn row(service: &ServiceView, csrf: &str) -> String {
    let track: String = STAGES
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let class = match usize::from(service.stage_index).cmp(&index) {
                std::cmp::Ordering::Greater => "done",
                std::cmp::Ordering::Equal => "now",
                std::cmp::Ordering::Less => "",
            };
            format!("<span class=\"{class}\">{}</span>", stage.replace('_', " "))
        })
        .collect();
    let rate = |path: &str| service.paths.get(path).map_or_else(|| "–".to_owned(), |live| format!("{:.0}", live.rate));
    let verify = service.verdict.as_deref().map_or_else(
        || "<span class=\"why\">no report</span>".to_owned(),
        |verdict| format!("<span class=\"verdict\">{}</span>", escape(verdict)),
    );
    format!(
        "<tr data-service=\"{name}\"><td>{name}</td><td><div class=\"track\" data-stage=\"{stage}\">{track}</div></td>\
         <td class=\"hide-narrow\">{source}</td><td class=\"rate-relay\">{relay}</td><td class=\"rate-broker\">{broker}</td>\
         <td class=\"hide-narrow\"></td><td class=\"hide-narrow\"></td><td>{verify}</td><td>{advance}{rollback}<div class=\"why\">{why}</div></td></tr>\n",
        name = escape(&service.name),
        stage = service.stage.name(),
        source = service.source.map_or_else(String::new, |source| source.to_string()),
        relay = rate("relay"),
        broker = rate("broker"),
        why = escape(&service.gate_reason),
        advance = form(&service.name, "advance", "advance", csrf, service.advance_allowed),
        rollback = form(&service.name, "rollback", "roll back", csrf, service.stage_index > 0),
    )
}

/// A form that posts `action` for `service` with a required reason; its
/// fields disabled when the action cannot be taken now.
fn form(service: &str, action: &str, label: &str, csrf: &str, enabled: bool) -> String {
    let disabled = if enabled { "" } else { " disabled" };
    format!(
        "<form method=\"post\" action=\"/services/{name}/{action}\" class=\"{action}-form\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input name=\"reason\" required placeholder=\"reason\" aria-label=\"why {label} {name}\"{disabled}>\
         <button type=\"submit\"{disabled}>{label}</button></form>",
        name = escape(service),
        csrf = escape(csrf),
    )
}

/// `text` safe in HTML text and in a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
