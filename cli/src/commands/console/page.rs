//! The console's one page: static HTML, CSS and JavaScript shipped in the
//! binary (no build step, no CDN). The services table is rendered on the
//! server, so it reads without JavaScript; the script refreshes it every
//! second and adds the details, the chart and the buttons' actions.
//!
//! Everything that comes from files or requests is escaped here and set as
//! `textContent` in the script; no handler is ever written into markup (the
//! page's Content-Security-Policy would refuse it anyway).

use super::ServiceView;

const TEMPLATE: &str = include_str!("page.html");
const STAGES: [&str; 4] = ["relay", "dual_relay_primary", "dual_broker_primary", "broker"];

/// The page with `services` in its table, the CSRF token in its head, and
/// `nonce` on its script and style (the only ones the page's policy runs).
pub(crate) fn render(services: &[ServiceView], csrf: &str, nonce: &str) -> String {
    let rows: String = services.iter().map(row).collect();
    TEMPLATE.replace("{{CSRF}}", &escape(csrf)).replace("{{NONCE}}", &escape(nonce)).replace("{{ROWS}}", &rows)
}

fn row(service: &ServiceView) -> String {
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
         <td class=\"hide-narrow\"></td><td class=\"hide-narrow\"></td><td>{verify}</td><td><span class=\"why\">{why}</span></td></tr>\n",
        name = escape(&service.name),
        stage = service.stage.name(),
        source = service.source.map_or_else(String::new, |source| source.to_string()),
        relay = rate("relay"),
        broker = rate("broker"),
        why = escape(&service.gate_reason),
    )
}

/// `text` safe in HTML text and in a quoted attribute.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}
