//! Live rates for the console: the producers' Prometheus endpoints
//! (`[console] scrape`) read once a second over HTTP/1 (hyper), their
//! `myc_shim_*` counters turned into per-service, per-path rates, with five
//! minutes of history for the page's chart. The guard reads the same
//! endpoints through [`fetch`] and [`parse_line`].

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use serde::Serialize;

/// Seconds of history kept per path.
const HISTORY: usize = 300;

/// What is known of one service's path.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct PathLive {
    /// Messages per second over the last scrape interval.
    pub(crate) rate: f64,
    /// Published so far.
    pub(crate) published: f64,
    /// Shadow drops so far.
    pub(crate) shadow_dropped: f64,
    /// Shadow breaker: closed, open, half_open.
    pub(crate) breaker: &'static str,
    /// (unix seconds, rate) points, oldest first.
    pub(crate) history: VecDeque<(u64, f64)>,
    #[serde(skip)]
    last: Option<(Instant, f64)>,
}

/// service → path → live figures.
pub(crate) type Live = Arc<Mutex<BTreeMap<String, BTreeMap<String, PathLive>>>>;

/// Scrapes `urls` every second into `live`, for ever.
pub(crate) async fn run(urls: Vec<String>, live: Live) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        for url in &urls {
            match fetch(url).await {
                Ok(text) => absorb(&text, &live),
                Err(error) => tracing::debug!(url, %error, "cannot scrape"),
            }
        }
    }
}

/// The most of a metrics page read: a producer's is a few KiB; anything
/// far larger is not a producer.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// GETs `url` (`http://host:port/path`) and returns the body: all of it
/// within 2 s, and at most [`MAX_BODY`] bytes, so a hostile or broken
/// endpoint can neither stall the scraper nor fill its memory.
pub(crate) async fn fetch(url: &str) -> anyhow::Result<String> {
    tokio::time::timeout(Duration::from_secs(2), fetch_unbounded(url))
        .await
        .map_err(|_| anyhow::anyhow!("{url} did not answer within 2 s"))?
}

async fn fetch_unbounded(url: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow::anyhow!("no host in {url}"))?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream =
        tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect((host.as_str(), port))).await??;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request =
        hyper::Request::get(uri.path()).header("host", host).body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| anyhow::anyhow!("{url}: {error}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Folds one scrape into `live`.
fn absorb(text: &str, live: &Live) {
    let now = Instant::now();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    for line in text.lines().filter(|line| line.starts_with("myc_shim_")) {
        let Some((name, labels, value)) = parse_line(line) else { continue };
        let (Some(service), Some(path)) = (labels.get("service"), labels.get("path")) else { continue };
        let entry = live.entry(service.clone()).or_default().entry(path.clone()).or_default();
        match name {
            "myc_shim_published_total" => {
                if let Some((at, before)) = entry.last {
                    let seconds = now.duration_since(at).as_secs_f64().max(1e-3);
                    entry.rate = (value - before).max(0.0) / seconds;
                    entry.history.push_back((unix, entry.rate));
                    while entry.history.len() > HISTORY {
                        entry.history.pop_front();
                    }
                }
                entry.last = Some((now, value));
                entry.published = value;
            }
            "myc_shim_shadow_dropped_total" => entry.shadow_dropped = value,
            "myc_shim_shadow_breaker" => {
                entry.breaker = match value as i64 {
                    1 => "open",
                    2 => "half_open",
                    _ => "closed",
                };
            }
            _ => {}
        }
    }
}

/// `name{a="x",b="y"} value` → its parts.
pub(crate) fn parse_line(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let (head, value) = line.rsplit_once(' ')?;
    let value = value.parse().ok()?;
    let (name, labels) = match head.split_once('{') {
        Some((name, rest)) => (name, rest.strip_suffix('}')?),
        None => (head, ""),
    };
    let labels = labels
        .split(',')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim().to_owned(), value.trim().trim_matches('"').to_owned()))
        })
        .collect();
    Some((name, labels, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shim_counters_become_rates_per_service_and_path() {
        let live = Live::default();
        absorb("myc_shim_published_total{service=\"feed\",path=\"relay\"} 100\n", &live);
        std::thread::sleep(Duration::from_millis(20));
        absorb(
            "myc_shim_published_total{service=\"feed\",path=\"relay\"} 300\nmyc_shim_shadow_breaker{service=\"feed\",path=\"broker\"} 1\n",
            &live,
        );
        let live = live.lock().unwrap();
        let relay = &live["feed"]["relay"];
        assert_eq!(relay.published, 300.0);
        assert!(relay.rate > 1_000.0, "200 messages in about 20 ms: {}", relay.rate);
        assert_eq!(live["feed"]["broker"].breaker, "open");
    }
}
