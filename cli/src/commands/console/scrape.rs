//! Live rates for the console: the producers' Prometheus endpoints
//! (`[console] scrape`) read once a second over HTTP/1 (hyper), their
//! `myc_shim_*` counters turned into per-service, per-path rates, with five
//! minutes of history for the page's chart. The guard reads the same
//! endpoints through [`fetch`] and [`parse_line`].
//!
//! Each target has its own task and a 2 s deadline for the whole request,
//! so a target that hangs is shown as stale and never delays the others.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::BodyExt;
use serde::Serialize;

/// Seconds of history kept per path.
const HISTORY: usize = 300;

/// How long one scrape may take before its target counts as stale.
pub(crate) const SCRAPE_DEADLINE: Duration = Duration::from_secs(2);

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
    /// The target these figures come from.
    pub(crate) target: String,
    /// Whether that target's last scrape failed: the figures are old.
    pub(crate) stale: bool,
    #[serde(skip)]
    last: Option<(Instant, f64)>,
}

/// How one scrape target's last scrape went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum TargetState {
    /// It answered with its metrics.
    #[default]
    Up,
    /// It did not answer within [`SCRAPE_DEADLINE`]: its figures are old.
    Stale,
    /// It answered with an error (refused, not HTTP 200, not readable).
    Error,
}

/// How one scrape target is doing.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct TargetStatus {
    /// Up, stale or error, after its last scrape.
    pub(crate) state: TargetState,
    /// Whether its last scrape failed or took longer than 2 s (the state
    /// is not up).
    pub(crate) stale: bool,
    /// Why, when it did.
    pub(crate) error: Option<String>,
    /// Scrapes that failed so far.
    pub(crate) failures: u64,
    /// Scrapes that succeeded so far.
    pub(crate) successes: u64,
}

impl TargetStatus {
    /// Its state's name: `up`, `stale` or `error`.
    pub(crate) fn state(&self) -> &'static str {
        match self.state {
            TargetState::Up => "up",
            TargetState::Stale => "stale",
            TargetState::Error => "error",
        }
    }

    /// Its state in words, with the reason when it is not up.
    pub(crate) fn describe(&self) -> String {
        match (&self.state, &self.error) {
            (TargetState::Up, _) => "up".to_owned(),
            (_, Some(error)) => format!("{} — {error}", self.state()),
            (_, None) => self.state().to_owned(),
        }
    }
}

/// A scrape that got no answer within [`SCRAPE_DEADLINE`] (as opposed to
/// one answered with an error).
#[derive(Debug)]
pub(crate) struct NoAnswer;

impl std::fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {SCRAPE_DEADLINE:?}")
    }
}

impl std::error::Error for NoAnswer {}

/// Everything scraped.
#[derive(Debug, Default)]
pub(crate) struct LiveState {
    /// service → path → live figures.
    pub(crate) services: BTreeMap<String, BTreeMap<String, PathLive>>,
    /// target URL → its status.
    pub(crate) targets: BTreeMap<String, TargetStatus>,
}

/// Shared between the scrape tasks and the request handlers.
pub(crate) type Live = Arc<Mutex<LiveState>>;

/// Scrapes each of `urls` every second into `live`, each in its own task,
/// for ever (until the returned guards are dropped).
pub(crate) fn run(urls: Vec<String>, live: &Live) -> Vec<myc_transport::AbortOnDrop> {
    urls.into_iter()
        .map(|url| {
            let live = Arc::clone(live);
            myc_transport::AbortOnDrop::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    match fetch(&url).await {
                        Ok(text) => absorb(&text, &url, &live),
                        Err(error) => {
                            tracing::debug!(url, %error, "cannot scrape");
                            let state = if error.is::<NoAnswer>() { TargetState::Stale } else { TargetState::Error };
                            mark_stale(&url, state, &format!("{error:#}"), &live);
                        }
                    }
                }
            })
        })
        .collect()
}

/// Marks `url` (as `state`, because of `error`) and every figure it feeds
/// as stale.
fn mark_stale(url: &str, state: TargetState, error: &str, live: &Live) {
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    let target = live.targets.entry(url.to_owned()).or_default();
    target.state = state;
    target.stale = true;
    target.failures += 1;
    target.error = Some(error.to_owned());
    for path in live.services.values_mut().flat_map(BTreeMap::values_mut) {
        if path.target == url {
            path.stale = true;
        }
    }
}

/// The most of a metrics page read: a producer's is a few KiB; anything
/// far larger is not a producer.
const MAX_BODY: usize = 4 * 1024 * 1024;

/// GETs `url` (`http://host:port/path`) and returns the body: all of it
/// within [`SCRAPE_DEADLINE`], and at most [`MAX_BODY`] bytes, so a hostile
/// or broken endpoint can neither stall the scraper nor fill its memory.
pub(crate) async fn fetch(url: &str) -> anyhow::Result<String> {
    match tokio::time::timeout(SCRAPE_DEADLINE, fetch_unbounded(url)).await {
        Ok(result) => result,
        Err(_) => Err(NoAnswer.into()),
    }
}

async fn fetch_unbounded(url: &str) -> anyhow::Result<String> {
    let uri: hyper::Uri = url.parse()?;
    let host = uri.host().ok_or_else(|| anyhow::anyhow!("no host in {url}"))?.to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host.as_str(), port)).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request =
        hyper::Request::get(uri.path()).header("host", host).body(http_body_util::Empty::<bytes::Bytes>::new())?;
    let response = sender.send_request(request).await?;
    // A 404 (a wrong path) is an error to show, not a page without metrics.
    if !response.status().is_success() {
        anyhow::bail!("HTTP {} (is {url} a producer's --metrics endpoint?)", response.status());
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|error| anyhow::anyhow!("{url}: {error}"))?
        .to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}

/// Folds one scrape of `url` into `live`.
fn absorb(text: &str, url: &str, live: &Live) {
    let now = Instant::now();
    let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs());
    let mut live = live.lock().unwrap_or_else(PoisonError::into_inner);
    let target = live.targets.entry(url.to_owned()).or_default();
    target.state = TargetState::Up;
    target.stale = false;
    target.error = None;
    target.successes += 1;
    for line in text.lines().filter(|line| line.starts_with("myc_shim_")) {
        let Some((name, labels, value)) = parse_line(line) else { continue };
        let (Some(service), Some(path)) = (labels.get("service"), labels.get("path")) else { continue };
        // The broker side is labelled by its backend (`broker` or `nats`);
        // the page has one broker column for either.
        let path = if path == "nats" { "broker" } else { path.as_str() };
        let entry = live.services.entry(service.clone()).or_default().entry(path.to_owned()).or_default();
        url.clone_into(&mut entry.target);
        entry.stale = false;
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
        absorb("myc_shim_published_total{service=\"feed\",path=\"relay\"} 100\n", "t", &live);
        std::thread::sleep(Duration::from_millis(20));
        absorb(
            "myc_shim_published_total{service=\"feed\",path=\"relay\"} 300\nmyc_shim_shadow_breaker{service=\"feed\",path=\"broker\"} 1\n",
            "t",
            &live,
        );
        let live = &live.lock().unwrap().services;
        let relay = &live["feed"]["relay"];
        assert_eq!(relay.published, 300.0);
        assert!(relay.rate > 1_000.0, "200 messages in about 20 ms: {}", relay.rate);
        assert_eq!(live["feed"]["broker"].breaker, "open");
    }

    #[test]
    fn a_producer_on_nats_fills_the_broker_column() {
        let live = Live::default();
        absorb("myc_shim_published_total{service=\"feed\",path=\"nats\"} 100\n", "t", &live);
        let live = &live.lock().unwrap().services;
        assert_eq!(live["feed"]["broker"].published, 100.0);
        assert!(!live["feed"].contains_key("nats"));
    }

    /// A metrics endpoint on 127.0.0.1:0 that answers 200 (`Some(body)`) or
    /// accepts and never says a word (`None`).
    async fn target(body: Option<&'static str>) -> (String, myc_transport::AbortOnDrop) {
        answering(body.map(|body| ("200 OK", body))).await
    }

    /// As [`target`], with the status line to answer.
    async fn answering(answer: Option<(&'static str, &'static str)>) -> (String, myc_transport::AbortOnDrop) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/metrics", listener.local_addr().unwrap());
        let task = myc_transport::AbortOnDrop::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                match answer {
                    Some((status, body)) => {
                        tokio::spawn(async move {
                            use tokio::io::{AsyncReadExt, AsyncWriteExt};
                            let mut request = [0u8; 1024];
                            let _ = stream.read(&mut request).await;
                            let response = format!(
                                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = stream.write_all(response.as_bytes()).await;
                        });
                    }
                    None => held.push(stream),
                }
            }
        });
        (url, task)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_target_is_shown_stale_without_delaying_the_others() {
        let (silent, _silent_task) = target(None).await;
        let (good, _good_task) = target(Some("myc_shim_published_total{service=\"feed\",path=\"relay\"} 100\n")).await;
        let live = Live::default();
        let started = Instant::now();
        // The silent target first: a sequential scraper would wait on it.
        let _tasks = run(vec![silent.clone(), good.clone()], &live);
        let deadline = Duration::from_secs(20);
        loop {
            {
                let live = live.lock().unwrap();
                if live.targets.get(&good).is_some_and(|target| target.successes >= 1) {
                    assert!(
                        live.targets.get(&silent).is_none_or(|target| target.failures == 0),
                        "the good target was scraped only after the silent one timed out"
                    );
                    assert!(!live.services["feed"]["relay"].stale);
                    break;
                }
            }
            assert!(started.elapsed() < deadline, "the good target was never scraped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        loop {
            {
                let live = live.lock().unwrap();
                if let Some(target) = live.targets.get(&silent).filter(|target| target.stale) {
                    assert!(target.error.as_deref().unwrap().contains("no answer within 2s"), "{target:?}");
                    assert!(started.elapsed() >= SCRAPE_DEADLINE);
                    assert!(!live.targets[&good].stale);
                    break;
                }
            }
            assert!(started.elapsed() < deadline, "the silent target was never marked stale");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_target_is_shown_up_or_in_error_with_the_reason() {
        let (good, _good_task) = target(Some("myc_shim_published_total{service=\"feed\",path=\"relay\"} 1\n")).await;
        let (wrong_path, _wrong_task) = answering(Some(("404 Not Found", "no such page"))).await;
        // A port nobody listens on: bound, then released.
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/metrics", listener.local_addr().unwrap())
        };
        let live = Live::default();
        let _tasks = run(vec![good.clone(), wrong_path.clone(), closed.clone()], &live);
        let started = Instant::now();
        loop {
            {
                let live = live.lock().unwrap();
                if [&good, &wrong_path, &closed].iter().all(|url| live.targets.contains_key(*url)) {
                    let shown = |url: &str| (live.targets[url].state(), live.targets[url].describe());
                    assert_eq!(shown(&good), ("up", "up".to_owned()));
                    let (state, why) = shown(&wrong_path);
                    assert_eq!(state, "error");
                    assert!(why.contains("HTTP 404"), "{why}");
                    let (state, why) = shown(&closed);
                    assert_eq!(state, "error");
                    assert!(why.to_lowercase().contains("refused"), "{why}");
                    let json = serde_json::to_value(&live.targets[&closed]).unwrap();
                    assert_eq!(
                        (json["state"].as_str(), json["stale"].as_bool()),
                        (Some("error"), Some(true)),
                        "{json}"
                    );
                    break;
                }
            }
            assert!(started.elapsed() < Duration::from_secs(20), "not every target was scraped");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_silent_target_is_stale_not_error() {
        let (silent, _silent_task) = target(None).await;
        let live = Live::default();
        let _tasks = run(vec![silent.clone()], &live);
        let started = Instant::now();
        loop {
            if let Some(target) = live.lock().unwrap().targets.get(&silent) {
                assert_eq!(target.state(), "stale");
                assert!(target.describe().contains("no answer within 2s"), "{}", target.describe());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "the silent target was never marked");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
