//! Driving an adapter: frames from a JSON Lines replay file, stdin, or a
//! live `ws://`/`wss://` connection, into the adapter, and its messages into
//! a [`Sink`] (the shim, or a capture in a dry run), paced as asked.
//!
//! Replays are data: control frames in them are counted, never acted on,
//! and a replay ends at the end of its input. A live connection sends the
//! configured subscribe messages (with `${VAR}` taken from the
//! environment), reconnects with the shared jittered backoff, stops on
//! `auth_failed`, backs off longer on `max_connections`, and resubscribes a
//! Kraken book whose checksum failed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use myc_transport::backoff::Backoff;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::{Adapter, Control, Outbox};

/// Where frames come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A JSON Lines replay file.
    File(PathBuf),
    /// JSON Lines on standard input.
    Stdin,
    /// A live WebSocket (`ws://` or `wss://`).
    WebSocket(String),
}

impl Input {
    /// `-` is stdin, `ws://…`/`wss://…` a live feed, anything else a file.
    pub fn parse(text: &str) -> Input {
        if text == "-" {
            Input::Stdin
        } else if text.starts_with("ws://") || text.starts_with("wss://") {
            Input::WebSocket(text.to_owned())
        } else {
            Input::File(PathBuf::from(text))
        }
    }
}

/// How fast to replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pace {
    /// As fast as possible.
    #[default]
    Unpaced,
    /// At most this many messages a second.
    Rate(u64),
    /// As the events happened: by their exchange times.
    Realtime,
}

/// How to drive.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Replay pacing.
    pub pace: Pace,
    /// Stop after this many messages.
    pub count: Option<u64>,
    /// Take timestamps from the events (receive times are 0).
    pub deterministic: bool,
    /// Messages sent after each live connect.
    pub subscribe: Vec<String>,
    /// The message that resubscribes one Kraken book (`{symbol}` is replaced).
    pub resubscribe: Option<String>,
    /// Replay a file again and again (sequences continue) until the count or
    /// a stop: enough evidence for a gate from a small sample file.
    pub repeat: bool,
}

/// The resubscribe message for `symbol`: `template` with `{symbol}`
/// replaced by the symbol JSON-escaped (without its quotes), so that feed
/// text with quotes or backslashes cannot change the message's shape.
pub fn resubscribe_message(template: &str, symbol: &str) -> String {
    let quoted = serde_json::Value::String(symbol.to_owned()).to_string();
    let escaped = quoted.get(1..quoted.len() - 1).unwrap_or_default();
    template.replace("{symbol}", escaped)
}

/// Where messages go.
pub trait Sink {
    /// Delivers the messages of `out` (in order).
    fn deliver(&mut self, out: &Outbox) -> impl Future<Output = Result<(), String>>;
}

impl<P: myc_shim::Publisher> Sink for &P {
    async fn deliver(&mut self, out: &Outbox) -> Result<(), String> {
        for message in out.messages() {
            self.publish(message).await.map_err(|error| error.to_string())?;
        }
        Ok(())
    }
}

/// Why a feed stopped short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeedError {
    /// The input cannot be read.
    #[error("cannot read {0}: {1}")]
    Input(String, String),
    /// The server refused authentication (Polygon `auth_failed`).
    #[error("the feed refused us: {0}")]
    AuthFailed(String),
}

/// Feeds `adapter` from `input` into `sink` until the input ends, the
/// count is reached, or `stop` is set. Publish failures are logged (at most
/// once a second) and counted by the sink; they do not stop the feed.
///
/// # Errors
/// An unreadable input, or a live feed that refused authentication.
pub async fn run(
    adapter: &mut impl Adapter,
    input: &Input,
    options: &Options,
    sink: &mut impl Sink,
    stop: &Arc<AtomicBool>,
) -> Result<(), FeedError> {
    let mut driver = Driver {
        options,
        out: Outbox::default(),
        pacer: Pacer::new(options.pace),
        warnings: myc_transport::OnceASecond::default(),
    };
    match input {
        Input::File(path) => loop {
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|error| FeedError::Input(path.display().to_string(), error.to_string()))?;
            let published_before = adapter.counters().events_published;
            let step = driver.lines(adapter, BufReader::with_capacity(1 << 20, file), sink, stop).await?;
            // A pass that published nothing would make the loop spin forever.
            let published_nothing = adapter.counters().events_published == published_before;
            if !options.repeat || matches!(step, Step::Done) || published_nothing {
                return Ok(());
            }
        },
        Input::Stdin => driver.lines(adapter, BufReader::new(tokio::io::stdin()), sink, stop).await.map(drop),
        Input::WebSocket(url) => driver.live(adapter, url, sink, stop).await,
    }
}

struct Driver<'o> {
    options: &'o Options,
    out: Outbox,
    pacer: Pacer,
    warnings: myc_transport::OnceASecond,
}

/// Whether to go on: `Done` once the count is reached or a stop was asked
/// (a replay that returns `Go` has reached the end of its input).
enum Step {
    Go,
    Done,
}

impl Driver<'_> {
    async fn lines(
        &mut self,
        adapter: &mut impl Adapter,
        mut reader: impl AsyncBufReadExt + Unpin,
        sink: &mut impl Sink,
        stop: &Arc<AtomicBool>,
    ) -> Result<Step, FeedError> {
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line).await {
                Ok(0) => return Ok(Step::Go),
                Ok(_) => {}
                Err(error) => return Err(FeedError::Input("the replay".to_owned(), error.to_string())),
            }
            let frame = line.trim_end_matches(['\n', '\r']);
            if frame.trim().is_empty() {
                continue;
            }
            // Replays are data: control is counted by the adapter, not acted on.
            let _ = self.frame(adapter, frame);
            if let Step::Done = self.flush(adapter, sink, stop).await {
                return Ok(Step::Done);
            }
        }
    }

    async fn live(
        &mut self,
        adapter: &mut impl Adapter,
        url: &str,
        sink: &mut impl Sink,
        stop: &Arc<AtomicBool>,
    ) -> Result<(), FeedError> {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let connection = match tokio_tungstenite::connect_async(url).await {
                Ok((connection, _)) => connection,
                Err(error) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(url, %error, ?delay, "cannot connect to the feed; retrying");
                    tokio::time::sleep(delay).await;
                    continue;
                }
            };
            tracing::info!(url, "feed connected");
            let (mut writer, mut reader) = connection.split();
            let mut sent_ok = true;
            for message in &self.options.subscribe {
                sent_ok &= writer.send(WsMessage::text(expand(message))).await.is_ok();
            }
            let mut delay = None;
            while sent_ok {
                let next = tokio::select! {
                    next = reader.next() => next,
                    () = wait_for(stop) => return Ok(()),
                };
                let text = match next {
                    Some(Ok(WsMessage::Text(text))) => text,
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Binary(_) | WsMessage::Frame(_))) => {
                        continue;
                    }
                    Some(Ok(WsMessage::Close(_))) | None => break,
                    Some(Err(error)) => {
                        tracing::warn!(url, %error, "feed connection failed");
                        break;
                    }
                };
                backoff.reset();
                match self.frame(adapter, text.as_str()) {
                    Some(Control::Stop(message)) => return Err(FeedError::AuthFailed(message)),
                    Some(Control::Reconnect(message)) => {
                        tracing::warn!(url, message, "the feed asks us to reconnect");
                        break;
                    }
                    Some(Control::BackOff(message)) => {
                        tracing::warn!(url, message, "too many connections; backing off");
                        delay = Some(Duration::from_secs(30));
                        break;
                    }
                    Some(Control::Resubscribe(symbol)) => {
                        if let Some(template) = &self.options.resubscribe {
                            let message = resubscribe_message(template, &symbol);
                            sent_ok = writer.send(WsMessage::text(message)).await.is_ok();
                        }
                    }
                    None => {}
                }
                if let Step::Done = self.flush(adapter, sink, stop).await {
                    return Ok(());
                }
            }
            let delay = delay.unwrap_or_else(|| backoff.next_delay());
            tracing::info!(url, ?delay, "feed disconnected; reconnecting");
            tokio::time::sleep(delay).await;
        }
    }

    /// Hands one frame to the adapter; logs a rejected one at most once a second.
    fn frame(&mut self, adapter: &mut impl Adapter, text: &str) -> Option<Control> {
        let (received, now) = if self.options.deterministic { (0, 0) } else { (now_ns(), now_ns()) };
        match adapter.frame(text, received, now, &mut self.out) {
            Ok(control) => control,
            Err(reason) => {
                self.warn(&format!("frame rejected: {reason}"));
                None
            }
        }
    }

    /// Paces, delivers what the last frame built, and says whether to stop.
    async fn flush(&mut self, adapter: &impl Adapter, sink: &mut impl Sink, stop: &AtomicBool) -> Step {
        if !self.out.is_empty() {
            self.pacer.wait(&self.out, adapter.built()).await;
            if let Err(error) = sink.deliver(&self.out).await {
                self.warn(&format!("publish failed: {error}"));
            }
            self.out.clear();
        }
        let counted_out = self.options.count.is_some_and(|count| adapter.built() >= count);
        if counted_out || stop.load(Ordering::Relaxed) { Step::Done } else { Step::Go }
    }

    fn warn(&self, what: &str) {
        if self.warnings.ready() {
            tracing::warn!("{what} (further ones counted, logged at most once a second)");
        }
    }
}

/// Replay pacing.
struct Pacer {
    pace: Pace,
    started: tokio::time::Instant,
    first_event_ns: Option<u64>,
}

impl Pacer {
    fn new(pace: Pace) -> Pacer {
        Pacer { pace, started: tokio::time::Instant::now(), first_event_ns: None }
    }

    async fn wait(&mut self, out: &Outbox, built: u64) {
        let due = match self.pace {
            Pace::Unpaced => return,
            Pace::Rate(0) => return,
            Pace::Rate(rate) => self.started + Duration::from_nanos(built.saturating_mul(1_000_000_000) / rate),
            Pace::Realtime => {
                let Some(event_ns) = out.messages().find_map(event_time) else { return };
                let first = *self.first_event_ns.get_or_insert(event_ns);
                self.started + Duration::from_nanos(event_ns.saturating_sub(first))
            }
        };
        if due > tokio::time::Instant::now() {
            tokio::time::sleep_until(due).await;
        }
    }
}

/// The exchange time a Trade or Quote carries.
fn event_time(message: &[u8]) -> Option<u64> {
    let tlv = message.get(myc_codec::HEADER_LEN..)?;
    let offset = match tlv.first()? {
        1 => 2 + 24,
        2 => 2 + 40,
        _ => return None,
    };
    let bytes = tlv.get(offset..offset + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?)).filter(|&ns| ns != 0)
}

async fn wait_for(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `${NAME}` → the environment variable's value (empty when unset), so
/// secrets such as API keys stay out of settings files.
pub fn expand(template: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find('}') {
            Some(end) => {
                out.push_str(&std::env::var(&rest[start + 2..start + 2 + end]).unwrap_or_default());
                rest = &rest[start + 3 + end..];
            }
            None => {
                out.push_str(&rest[start..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}
