//! The broker path as the primary when the broker goes away: the breaker
//! fails publishes at once and recovers; the `overflow` spool keeps the
//! producer's pace through an outage and delivers everything in order
//! afterwards; with `always`, a producer killed with SIGKILL while the
//! broker is down loses nothing its publish returned for (this test binary
//! re-run as the child producer).
//!
//! The outage is a proxy in front of the broker that drops every
//! connection and refuses new ones: to the producer that is a dead broker,
//! while the test's subscriber stays subscribed and sees everything.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myc_config::Stage;
use myc_shim::{BrokerPublisher, Error, PrimaryOptions, Publisher, RelayPublisher, ServicePublisher, ShadowLimits};
use myc_shim::{SpoolPolicy, StageHandle};
use myc_transport::{BreakerOptions, BufferLimits, Endpoint, SpoolOptions};
use tokio::net::{UnixListener, UnixStream};

use super::{broker, message, relay_paths, sequence_of, tap_broker, topics};

/// A proxy from `front` to the broker at `back` that can be cut.
pub(super) struct Proxy {
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    _accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub(super) fn start(front: &Path, back: PathBuf) -> Proxy {
        let listener = UnixListener::bind(front).unwrap();
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let (up_flag, list) = (Arc::clone(&up), Arc::clone(&connections));
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up_flag.load(Ordering::Acquire) {
                    continue; // dropped: closed at once
                }
                let back = back.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = UnixStream::connect(&back).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                list.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { up, connections, _accept: accept }
    }

    /// The broker is gone: every connection closes, new ones are refused.
    pub(super) fn cut(&self) {
        self.up.store(false, Ordering::Release);
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    pub(super) fn restore(&self) {
        self.up.store(true, Ordering::Release);
    }
}

fn producer_client(path: &Path, buffer: BufferLimits) -> myc_broker::Client {
    let mut options = myc_broker::ClientOptions::new(Endpoint::Unix(path.to_owned()));
    options.reconnect.backoff_base = Duration::from_millis(5);
    options.reconnect.backoff_max = Duration::from_millis(50);
    options.reconnect.connect_timeout = Duration::from_millis(500);
    options.buffer = buffer;
    myc_broker::Client::start(options)
}

fn broker_stage_publisher(
    dir: &Path,
    front: &Path,
    buffer: BufferLimits,
    guard: PrimaryOptions,
) -> ServicePublisher<RelayPublisher, BrokerPublisher> {
    let mut publisher = ServicePublisher::new(
        RelayPublisher::new(relay_paths(&dir.join("no-relay.sock")), BufferLimits::default()),
        BrokerPublisher::new(producer_client(front, buffer), topics()),
        StageHandle::new(Stage::Broker),
        ShadowLimits::from_settings(&myc_config::ShadowSettings::default()),
    );
    publisher.guard_broker_primary(guard).unwrap();
    publisher
}

/// The first arrival of each sequence, in arrival order.
pub(super) fn first_arrivals(seen: &super::Seen) -> Vec<u64> {
    let mut known = std::collections::HashSet::new();
    seen.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).filter(|&seq| known.insert(seq)).collect()
}

pub(super) async fn wait_until(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "{what}: not within {deadline:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_an_open_breaker_fails_publishes_at_once_and_closes_when_the_broker_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (seen, _tap) = tap_broker(&back).await;
    let breaker = BreakerOptions { failure_threshold: 5, open_for: Duration::from_millis(200) };
    let buffer = BufferLimits { deadline: Duration::from_secs(5), ..BufferLimits::default() };
    let publisher =
        broker_stage_publisher(dir.path(), &front, buffer, PrimaryOptions { breaker: Some(breaker), spool: None });
    let mut sequence = 0;
    while first_arrivals(&seen).len() < 100 {
        sequence += 1;
        publisher.publish(&message(sequence)).await.unwrap();
        tokio::time::sleep(Duration::from_micros(200)).await;
    }

    proxy.cut();
    // Connection attempts fail; after five the breaker opens.
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        sequence += 1;
        match publisher.publish(&message(sequence)).await {
            Err(Error::CircuitOpen) => break,
            Ok(()) => {}
            Err(other) => panic!("unexpected {other}"),
        }
        assert!(Instant::now() < until, "the breaker never opened");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let guard = publisher.broker().primary_guard().unwrap();
    let mut slowest = Duration::ZERO;
    let mut refused = 0;
    for _ in 0..2_000 {
        let started = Instant::now();
        if matches!(publisher.publish(&message(sequence + 1)).await, Err(Error::CircuitOpen)) {
            refused += 1;
        } else {
            sequence += 1;
        }
        slowest = slowest.max(started.elapsed());
    }
    assert!(refused > 1_900, "only {refused} of 2000 failed fast");
    assert!(slowest < Duration::from_millis(100), "a publish waited {slowest:?} with the breaker open");
    assert!(guard.counters().circuit_open.get() >= refused);
    assert_eq!(guard.counters().breaker_state.get(), 1, "exported as open");

    // The broker is back: a probe reconnects, the breaker closes, publishes flow.
    proxy.restore();
    let until = Instant::now() + Duration::from_secs(10);
    let recovered = loop {
        sequence += 1;
        if publisher.publish(&message(sequence)).await.is_ok() && publisher.is_connected() {
            break sequence;
        }
        sequence -= 1;
        assert!(Instant::now() < until, "never recovered");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    for _ in 0..100 {
        sequence += 1;
        publisher.publish(&message(sequence)).await.unwrap();
    }
    wait_until("deliveries after recovery", Duration::from_secs(10), || first_arrivals(&seen).contains(&recovered))
        .await;
    assert_eq!(guard.counters().breaker_state.get(), 0, "closed again");
}

/// Publishes at 20,000 msg/s (1 ms ticks of 20) for `duration`; returns
/// the rate achieved.
async fn paced(publisher: &impl Publisher, sequence: &mut u64, duration: Duration) -> f64 {
    const PER_TICK: u64 = 20;
    let began = Instant::now();
    let mut published = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    while began.elapsed() < duration {
        tick.tick().await;
        for _ in 0..PER_TICK {
            *sequence += 1;
            publisher.publish(&message(*sequence)).await.unwrap();
            published += 1;
        }
    }
    published as f64 / began.elapsed().as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_of_three_seconds_with_an_overflow_spool_keeps_the_pace_and_delivers_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (seen, _tap) = tap_broker(&back).await;
    // A small buffer, so the outage overflows into the spool within moments.
    let buffer = BufferLimits { max_bytes: 256 * 1024, ..BufferLimits::default() };
    let spool = SpoolOptions::new(dir.path().join("spool"));
    let guard =
        PrimaryOptions { breaker: Some(BreakerOptions::default()), spool: Some((SpoolPolicy::Overflow, spool)) };
    let publisher = broker_stage_publisher(dir.path(), &front, buffer, guard);

    let mut sequence = 0;
    let before = paced(&publisher, &mut sequence, Duration::from_secs(1)).await;
    proxy.cut();
    let during = paced(&publisher, &mut sequence, Duration::from_secs(3)).await;
    let guard = publisher.broker().primary_guard().unwrap();
    let spooled = guard.counters().spooled.get();
    proxy.restore();
    let after = paced(&publisher, &mut sequence, Duration::from_secs(1)).await;
    let sent = sequence;

    assert!(during >= 0.9 * before, "publish rate fell from {before:.0}/s to {during:.0}/s during the outage");
    assert!(spooled > 10_000, "the outage went to the spool: {spooled} spooled");
    wait_until("every message after the outage", Duration::from_secs(30), || {
        first_arrivals(&seen).len() as u64 >= sent
    })
    .await;
    assert_eq!(first_arrivals(&seen), (1..=sent).collect::<Vec<_>>(), "every message, in order");
    assert!(guard.counters().replayed.get() >= spooled);
    wait_until("the spool empties", Duration::from_secs(10), || guard.spooled_now() == 0).await;
    assert!(after > 0.0);
}

/// The sequence of the record torn by the simulated crash (never published).
const TORN: u64 = 999_999_999_999;

/// Set for the child producer of the SIGKILL test: its working directory.
const CHILD_DIR: &str = "MYC_SHIM_TEST_CHILD_DIR";

fn always_guard(dir: &Path) -> PrimaryOptions {
    PrimaryOptions {
        breaker: Some(BreakerOptions::default()),
        spool: Some((SpoolPolicy::Always, SpoolOptions::new(dir.join("spool")))),
    }
}

/// Runs only as the child of the SIGKILL test (the variable is set): a
/// producer with an `always` spool and no broker, printing each sequence
/// once its publish returned. Without the variable it has nothing to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_producer_for_the_kill_test() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let dir = PathBuf::from(dir);
    let publisher = broker_stage_publisher(&dir, &dir.join("broker.sock"), BufferLimits::default(), always_guard(&dir));
    let mut out = std::io::stdout().lock();
    for sequence in 1.. {
        publisher.publish(&message(sequence)).await.unwrap();
        writeln!(out, "published {sequence}").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_killed_while_the_broker_is_down_loses_nothing_it_published_with_an_always_spool() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "connections::child_producer_for_the_kill_test", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let until = Instant::now() + Duration::from_secs(60);
    let mut last_told = 0;
    while last_told < 20_000 {
        assert!(Instant::now() < until, "the child made no progress");
        let line = lines.next().expect("the child is alive").unwrap();
        if let Some(sequence) = line.strip_prefix("published ") {
            last_told = sequence.parse().unwrap();
        }
    }
    child.kill().unwrap();
    for line in lines.map_while(Result::ok) {
        if let Some(sequence) = line.strip_prefix("published ") {
            last_told = sequence.parse().unwrap();
        }
    }
    child.wait().unwrap();

    // The write the kill interrupted, as a machine crash would leave it.
    let spool_dir = dir.path().join("spool");
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&spool_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    segments.sort();
    let mut torn = Vec::new();
    myc_transport::spool::record::encode(&mut torn, &message(TORN));
    let mut file = std::fs::OpenOptions::new().append(true).open(segments.last().unwrap()).unwrap();
    file.write_all(&torn[..torn.len() / 3]).unwrap();
    drop(file);

    // The broker is back and the producer restarts on the same spool.
    let back = dir.path().join("broker.sock");
    let _broker = broker(&back).await;
    let (seen, _tap) = tap_broker(&back).await;
    let publisher = broker_stage_publisher(dir.path(), &back, BufferLimits::default(), always_guard(dir.path()));
    let guard = publisher.broker().primary_guard().unwrap();
    assert_eq!(guard.counters().spool_truncated.get(), 1, "the torn record is cut and counted");
    // Something new, published after the restart, arrives after the replay.
    let fresh = last_told + 1_000_000;
    publisher.publish(&message(fresh)).await.unwrap();
    wait_until("the replay", Duration::from_secs(30), || first_arrivals(&seen).contains(&fresh)).await;
    let arrivals = first_arrivals(&seen);
    let replayed = &arrivals[..arrivals.len() - 1];
    assert!(replayed.len() as u64 >= last_told, "{} replayed, {last_told} published", replayed.len());
    assert_eq!(replayed, (1..=replayed.len() as u64).collect::<Vec<_>>(), "in order, no gap");
    assert!(!arrivals.contains(&TORN), "the torn record is never sent");
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(guard.spooled_now(), 0, "acknowledged messages leave the spool");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_through_an_always_spool_arrive_whole_and_in_order_and_leave_the_spool() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (seen, _tap) = tap_broker(&back).await;
    let publisher = broker_stage_publisher(dir.path(), &front, BufferLimits::default(), always_guard(dir.path()));
    let mut sequence = 0;
    for round in 0..200 {
        // An outage in the middle: the batches then wait in the spool.
        if round == 50 {
            proxy.cut();
        }
        if round == 150 {
            proxy.restore();
        }
        let mut batch = Vec::new();
        for _ in 0..25 {
            sequence += 1;
            batch.extend_from_slice(&message(sequence));
        }
        publisher.publish_batch(&batch).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let guard = publisher.broker().primary_guard().unwrap();
    assert_eq!(guard.counters().spooled.get(), sequence, "every message went through the spool");
    wait_until("every batch", Duration::from_secs(30), || first_arrivals(&seen).len() as u64 >= sequence).await;
    assert_eq!(first_arrivals(&seen), (1..=sequence).collect::<Vec<_>>());
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    assert_eq!(guard.spooled_now(), 0);
    assert_eq!(publisher.summary().broker.undelivered, 0);
}

/// Replaces `file` at once (a temporary file renamed over it), as editors
/// and deploy tools do: a reader never sees it half written.
pub(super) fn replace(file: &Path, text: &str) {
    let temporary = file.with_extension("tmp");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, file).unwrap();
}

/// Settings for the `broker` stage at `endpoint`, fast backoff.
fn settings_text(endpoint: &Path) -> String {
    format!(
        "[broker]\nendpoint = \"unix:{}\"\nbackoff_initial = \"5ms\"\nbackoff_max = \"50ms\"\ntoken = \"s3cret\"\n",
        endpoint.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_changed_in_the_settings_file_under_load_moves_every_message_to_the_new_broker() {
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let (_broker_a, _broker_b) = (broker(&path_a).await, broker(&path_b).await);
    let ((seen_a, _tap_a), (seen_b, _tap_b)) = (tap_broker(&path_a).await, tap_broker(&path_b).await);
    let file = dir.path().join("myc.toml");
    std::fs::write(&file, settings_text(&path_a)).unwrap();
    let sources = myc_config::Sources::file_only(&file);
    let watched = myc_config::Watched::start(&file, move || myc_config::load(&sources)).unwrap();
    let settings = watched.current();
    let publisher = std::sync::Arc::new(ServicePublisher::new(
        RelayPublisher::from_settings(&settings),
        myc_shim::BrokerSide::from_settings(&settings, "switching").await.unwrap(),
        StageHandle::new(Stage::Broker),
        ShadowLimits::from_settings(&settings.shadow),
    ));
    let _follow = myc_shim::live::follow(std::sync::Arc::clone(&publisher), &watched);

    let mut sequence = 0;
    paced(&*publisher, &mut sequence, Duration::from_millis(500)).await;
    let changed_at = Instant::now();
    replace(&file, &settings_text(&path_b));
    let before_change = sequence;
    // Keep publishing until a message published after the change reaches B.
    while !first_arrivals(&seen_b).iter().any(|&seq| seq > before_change) {
        assert!(changed_at.elapsed() < Duration::from_secs(5), "never switched");
        paced(&*publisher, &mut sequence, Duration::from_millis(20)).await;
    }
    let switched = changed_at.elapsed();
    paced(&*publisher, &mut sequence, Duration::from_millis(300)).await;

    // A bad edit changes nothing and is counted.
    replace(&file, "[broker]\nendpoint = \"nowhere\"\n");
    wait_until("the bad edit is counted", Duration::from_secs(5), || watched.counts().rejected.get() >= 1).await;
    paced(&*publisher, &mut sequence, Duration::from_millis(200)).await;
    let flushed = publisher.flush(Duration::from_secs(10)).await;
    let myc_shim::BrokerSide::Mycelium(path) = publisher.broker().publisher() else { panic!("mycelium") };
    assert!(
        flushed.is_ok(),
        "{flushed:?}: endpoint {} state {:?} counts {:?} a={} b={}",
        path.client().endpoint(),
        path.client().state(),
        publisher.summary(),
        first_arrivals(&seen_a).len(),
        first_arrivals(&seen_b).len()
    );
    let sent = sequence;

    assert!(switched < Duration::from_secs(2), "the switch took {switched:?}");
    let last_on_b = first_arrivals(&seen_b).into_iter().max().unwrap();
    assert_eq!(last_on_b, sent, "after the bad edit messages still go to B");
    let mut union: Vec<u64> = first_arrivals(&seen_a);
    union.extend(first_arrivals(&seen_b));
    let arrivals = union.len() as u64;
    union.sort_unstable();
    union.dedup();
    assert_eq!(union, (1..=sent).collect::<Vec<_>>(), "A and B together hold every message");
    let duplicates = arrivals - sent;
    let resent = publisher.summary().broker.resent;
    assert!(duplicates <= resent, "{duplicates} duplicates, {resent} counted as resent");
    assert!(first_arrivals(&seen_b).windows(2).all(|pair| pair[0] < pair[1]), "B saw them in order");
}
