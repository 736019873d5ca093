//! Settings edited while a producer publishes without pause: each key that
//! applies live (buffer limits and policy, the spool's mode, directory,
//! size and sync interval, topic names, relay sockets, shadow limits) takes
//! effect within 2 s through `live::follow`, and every sequence the
//! producer published is accounted for — delivered, or refused and counted.
//! A change that cannot be applied changes nothing and is counted.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use myc_config::Stage;
use myc_shim::{BrokerSide, PrimaryOptions, Publisher, RelayPublisher, ServicePublisher, ShadowLimits};
use myc_shim::{SpoolPolicy, StageHandle};

use super::connections::{Proxy, first_arrivals, replace, wait_until};
use super::{Seen, broker, broker_client, message, relay, sequence_of, tap_relay};

/// How long a live change may take to land.
const LANDS_WITHIN: Duration = Duration::from_secs(2);

type Shim = ServicePublisher<RelayPublisher, BrokerSide>;

/// A producer built from a settings file that it follows.
struct Live {
    file: PathBuf,
    watched: myc_config::Watched<myc_config::Settings>,
    publisher: Arc<Shim>,
    _follow: myc_transport::AbortOnDrop,
}

impl Live {
    async fn start(file: &Path, text: &str, stage: Stage) -> Live {
        std::fs::write(file, text).unwrap();
        let sources = myc_config::Sources::file_only(file);
        let watched = myc_config::Watched::start(file, move || myc_config::load(&sources)).unwrap();
        let settings = watched.current();
        let mut publisher = ServicePublisher::new(
            RelayPublisher::from_settings(&settings),
            BrokerSide::from_settings(&settings, "live").await.unwrap(),
            StageHandle::new(stage),
            ShadowLimits::from_settings(&settings.shadow),
        );
        publisher.guard_broker_primary(PrimaryOptions::from_settings(&settings.broker)).unwrap();
        let publisher = Arc::new(publisher);
        let follow = myc_shim::live::follow(Arc::clone(&publisher), &watched);
        Live { file: file.to_owned(), watched, publisher, _follow: follow }
    }

    /// Rewrites the settings file; returns when.
    fn edit(&self, text: &str) -> Instant {
        replace(&self.file, text);
        Instant::now()
    }
}

/// What the producer did with each sequence.
#[derive(Debug, Default)]
struct Outcomes {
    accepted: Vec<u64>,
    refused: Vec<(u64, String)>,
    /// The longest single publish.
    slowest: Duration,
}

/// A producer that publishes 20 messages (or `per_tick`) per millisecond
/// tick until stopped, never pausing for the test.
struct Producer {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
    task: tokio::task::JoinHandle<()>,
}

impl Producer {
    fn start(publisher: &Arc<Shim>) -> Producer {
        Producer::start_at(publisher, 20)
    }

    /// `per_tick` messages per millisecond.
    fn start_at(publisher: &Arc<Shim>, per_tick: u64) -> Producer {
        let (stop, outcomes) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Outcomes::default())));
        let (publisher, stopping, log) = (Arc::clone(publisher), Arc::clone(&stop), Arc::clone(&outcomes));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let mut sequence = 0u64;
            while !stopping.load(Ordering::Acquire) {
                tick.tick().await;
                for _ in 0..per_tick {
                    sequence += 1;
                    let started = Instant::now();
                    let result = publisher.publish(&message(sequence)).await;
                    let took = started.elapsed();
                    let mut log = log.lock().unwrap();
                    log.slowest = log.slowest.max(took);
                    match result {
                        Ok(()) => log.accepted.push(sequence),
                        Err(error) => log.refused.push((sequence, error.to_string())),
                    }
                }
            }
        });
        Producer { stop, outcomes, task }
    }

    fn accepted(&self) -> usize {
        self.outcomes.lock().unwrap().accepted.len()
    }

    fn refused(&self) -> usize {
        self.outcomes.lock().unwrap().refused.len()
    }

    fn last(&self) -> u64 {
        let outcomes = self.outcomes.lock().unwrap();
        outcomes.accepted.last().copied().max(outcomes.refused.last().map(|(sequence, _)| *sequence)).unwrap_or(0)
    }

    /// Waits until the producer has published past what it had now.
    async fn publishes_more(&self, n: u64) {
        let target = self.last() + n;
        wait_until("the producer keeps publishing", Duration::from_secs(10), || self.last() >= target).await;
    }

    async fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::Release);
        self.task.await.unwrap();
        std::mem::take(&mut *self.outcomes.lock().unwrap())
    }
}

/// Subscribes to `topic` on the broker at `path`.
async fn tap_topic(path: &Path, topic: &str) -> (Seen, tokio::task::JoinHandle<()>) {
    let seen = Seen::default();
    let client = broker_client(path);
    let mut subscription = client.subscribe(topic, "").unwrap();
    subscription.wait_active(Duration::from_secs(5)).await.unwrap();
    let sink = Arc::clone(&seen);
    let task = tokio::spawn(async move {
        let _client = client;
        while let Some(batch) = subscription.recv_batch().await {
            sink.lock().unwrap().extend(batch.payloads().map(Bytes::copy_from_slice));
        }
    });
    (seen, task)
}

/// Settings for a producer on broker `endpoint` with fast backoff, plus
/// `extra` lines (whole tables after the `[broker]` lines).
fn settings(endpoint: &Path, broker_lines: &str, extra: &str) -> String {
    format!(
        "[broker]\nendpoint = \"unix:{}\"\nbackoff_initial = \"5ms\"\nbackoff_max = \"50ms\"\n{broker_lines}\n{extra}",
        endpoint.display()
    )
}

fn assert_landed(what: &str, since: Instant) {
    let took = since.elapsed();
    assert!(took < LANDS_WITHIN, "{what} took {took:?} to apply");
}

/// Publishes under load, applies `edit` (which moves the messages from the
/// first end to the second), checks it lands in time by the first message
/// at the second end, publishes more, and returns what the producer was
/// told with the first arrivals at each end once all have arrived.
async fn moved_under_load(
    live: &Live,
    edit: &str,
    what: &str,
    (on_a, on_b): (&Seen, &Seen),
) -> (Outcomes, Vec<u64>, Vec<u64>) {
    let producer = Producer::start(&live.publisher);
    producer.publishes_more(2_000).await;
    let edited = live.edit(edit);
    let first = format!("the first message after {what}");
    wait_until(&first, Duration::from_secs(10), || !on_b.lock().unwrap().is_empty()).await;
    assert_landed(what, edited);
    producer.publishes_more(2_000).await;
    let outcomes = producer.stop().await;
    live.publisher.flush(Duration::from_secs(10)).await.unwrap();

    assert!(outcomes.refused.is_empty(), "{:?}", &outcomes.refused[..1]);
    let sent = outcomes.accepted.len();
    wait_until("every message", Duration::from_secs(10), || {
        first_arrivals(on_a).len() + first_arrivals(on_b).len() >= sent
    })
    .await;
    (outcomes, first_arrivals(on_a), first_arrivals(on_b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_topic_renamed_live_applies_to_the_messages_published_after_it_and_loses_none() {
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("broker.sock");
    let _broker = broker(&back).await;
    let ((on_a, _tap_a), (on_b, _tap_b)) = (tap_topic(&back, "md_a").await, tap_topic(&back, "md_b").await);
    let live = Live::start(
        &dir.path().join("myc.toml"),
        &settings(&back, "", "[topics]\nmarket_data = \"md_a\"\n"),
        Stage::Broker,
    )
    .await;
    let edit = settings(&back, "", "[topics]\nmarket_data = \"md_b\"\n");
    let (outcomes, a, b) = moved_under_load(&live, &edit, "the topic change", (&on_a, &on_b)).await;
    let mut union = [a.clone(), b.clone()].concat();
    union.sort_unstable();
    assert_eq!(union, outcomes.accepted, "every message on exactly one topic");
    assert!(a.last() < b.first(), "the rename is a boundary: {:?} then {:?}", a.last(), b.first());
    assert!(b.windows(2).all(|pair| pair[0] < pair[1]), "in order on the new topic");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_socket_changed_live_moves_the_relay_path_and_loses_nothing_queued() {
    let dir = tempfile::tempdir().unwrap();
    let (path_a, path_b) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let (relay_a, relay_b) = (relay(&path_a).await, relay(&path_b).await);
    let ((on_a, _tap_a), (on_b, _tap_b)) = (tap_relay(&relay_a, &path_a).await, tap_relay(&relay_b, &path_b).await);
    let relay_lines = |path: &Path| format!("[relay]\nmarket_data = \"{}\"\n", path.display());
    let nowhere = dir.path().join("no-broker.sock");
    let live =
        Live::start(&dir.path().join("myc.toml"), &settings(&nowhere, "", &relay_lines(&path_a)), Stage::Relay).await;
    let edit = settings(&nowhere, "", &relay_lines(&path_b));
    let (outcomes, a, b) = moved_under_load(&live, &edit, "the relay socket change", (&on_a, &on_b)).await;
    let mut union = [a.clone(), b.clone()].concat();
    union.sort_unstable();
    union.dedup();
    assert_eq!(union, outcomes.accepted, "the two relays together hold every message");
    assert!(b.windows(2).all(|pair| pair[0] < pair[1]), "in order at the new relay");
    assert_eq!(b.last().copied(), outcomes.accepted.last().copied(), "the newest went to the new relay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_limits_and_policy_changed_live_apply_to_the_next_publish_and_account_for_every_message() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (seen, _tap) = tap_topic(&back, "market_data").await;
    let buffer = |messages: u32, policy: &str| {
        settings(
            &front,
            &format!("buffer_messages = {messages}\nbuffer_policy = \"{policy}\"\nbreaker_failures = 0\n"),
            "",
        )
    };
    let live = Live::start(&dir.path().join("myc.toml"), &buffer(1_000, "drop_newest"), Stage::Broker).await;
    let producer = Producer::start(&live.publisher);
    producer.publishes_more(500).await;
    // The broker goes away: the buffer fills, and drop_newest refuses at once.
    proxy.cut();
    wait_until("the buffer fills", Duration::from_secs(10), || producer.refused() > 1_000).await;
    let accepted_when_full = producer.accepted();
    let edited = live.edit(&buffer(5_000, "drop_newest"));
    wait_until("room for more", Duration::from_secs(10), || producer.accepted() > accepted_when_full).await;
    assert_landed("the larger buffer", edited);
    let refused_before = producer.refused();
    producer.publishes_more(8_000).await;
    assert!(producer.refused() > refused_before, "full again at the new bound");
    proxy.restore();
    producer.publishes_more(2_000).await;
    let outcomes = producer.stop().await;
    live.publisher.flush(Duration::from_secs(10)).await.unwrap();

    assert!(outcomes.slowest < Duration::from_secs(1), "a publish waited {:?}", outcomes.slowest);
    assert!(
        outcomes.refused.iter().all(|(_, error)| error.contains("drop_newest")),
        "only drops: {:?}",
        outcomes.refused.first()
    );
    let held_at_most = outcomes.accepted.len() - accepted_when_full;
    assert!(held_at_most >= 3_000, "the outage held up to the new bound: {held_at_most} more accepted");
    wait_until("every accepted message", Duration::from_secs(10), || {
        first_arrivals(&seen).len() >= outcomes.accepted.len()
    })
    .await;
    assert_eq!(first_arrivals(&seen), outcomes.accepted, "every accepted message, in order; none refused");
    let BrokerSide::Mycelium(path) = live.publisher.broker().publisher() else { panic!("mycelium") };
    assert_eq!(path.client().dropped().0, outcomes.refused.len() as u64, "each refusal counted as dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_limits_changed_live_let_the_shadow_queue_more_and_close_its_breaker() {
    let dir = tempfile::tempdir().unwrap();
    let relay_path = dir.path().join("md.sock");
    let relay = relay(&relay_path).await;
    let (on_relay, _tap) = tap_relay(&relay, &relay_path).await;
    let nowhere = dir.path().join("no-broker.sock");
    let shadow = |bytes: usize| {
        settings(
            &nowhere,
            "",
            &format!(
                "[relay]\nmarket_data = \"{}\"\n[shadow]\nqueue_bytes = {bytes}\nfailure_threshold = 1000000\n",
                relay_path.display()
            ),
        )
    };
    let live = Live::start(&dir.path().join("myc.toml"), &shadow(8 * 1024), Stage::DualRelayPrimary).await;
    let producer = Producer::start(&live.publisher);
    let broker = live.publisher.broker();
    wait_until("the small shadow queue fills", Duration::from_secs(10), || {
        broker.counters().shadow_dropped.get() > 100
    })
    .await;
    assert!(broker.publisher().buffered_bytes() <= 8 * 1024);
    let edited = live.edit(&shadow(4 << 20));
    wait_until("the shadow queues past the old bound", Duration::from_secs(10), || {
        broker.publisher().buffered_bytes() > 64 * 1024
    })
    .await;
    assert_landed("the larger shadow queue", edited);
    let outcomes = producer.stop().await;
    live.publisher.flush(Duration::from_secs(10)).await.unwrap_or(());

    assert!(outcomes.refused.is_empty(), "the relay primary never refused: {:?}", outcomes.refused.first());
    wait_until("every message at the relay", Duration::from_secs(10), || {
        on_relay.lock().unwrap().len() >= outcomes.accepted.len()
    })
    .await;
    let at_relay: Vec<u64> = on_relay.lock().unwrap().iter().map(|bytes| sequence_of(bytes)).collect();
    assert_eq!(at_relay, outcomes.accepted, "the primary has every message, in order");
    let summary = live.publisher.summary();
    assert_eq!(summary.broker.published + summary.broker.shadow_dropped, outcomes.accepted.len() as u64);
}

/// Spool lines for the settings.
fn spool_lines(mode: &str, dir: &Path, max_bytes: u64) -> String {
    format!("spool = \"{mode}\"\nspool_dir = \"{}\"\nspool_max_bytes = {max_bytes}\n", dir.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_turned_on_live_carries_an_outage_and_turned_off_drains_in_order_then_closes() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (seen, _tap) = tap_topic(&back, "market_data").await;
    let spool_dir = dir.path().join("spool");
    // A small buffer, so an outage reaches the spool at once.
    let small = "buffer_bytes = 65536\n";
    let live = Live::start(&dir.path().join("myc.toml"), &settings(&front, small, ""), Stage::Broker).await;
    let guard = live.publisher.broker().primary_guard().unwrap();
    // A drained spool closes once the broker has caught up with the
    // producer: a pace a debug build on a loaded machine keeps up with.
    let producer = Producer::start_at(&live.publisher, 5);
    producer.publishes_more(1_000).await;

    let edited = live.edit(&settings(&front, &format!("{small}{}", spool_lines("overflow", &spool_dir, 1 << 30)), ""));
    wait_until("the spool opens", Duration::from_secs(10), || guard.spool_options().is_some()).await;
    assert_landed("spool = overflow", edited);
    proxy.cut();
    wait_until("the outage goes to the spool", Duration::from_secs(10), || guard.counters().spooled.get() > 2_000)
        .await;
    // Off while it holds messages: it drains, and new ones queue behind.
    live.edit(&settings(&front, small, ""));
    wait_until("the spool drains", Duration::from_secs(10), || {
        guard.spool_options().is_some_and(|(_, policy)| policy.is_none())
    })
    .await;
    producer.publishes_more(2_000).await;
    proxy.restore();
    wait_until("the drained spool closes", Duration::from_secs(30), || guard.spool_options().is_none()).await;
    producer.publishes_more(2_000).await;
    let outcomes = producer.stop().await;
    live.publisher.flush(Duration::from_secs(10)).await.unwrap();

    assert!(outcomes.refused.is_empty(), "nothing refused: {:?}", outcomes.refused.first());
    wait_until("every message", Duration::from_secs(20), || first_arrivals(&seen).len() >= outcomes.accepted.len())
        .await;
    assert_eq!(first_arrivals(&seen), outcomes.accepted, "every message, in order");
    // The directory is free again.
    let reopened = myc_transport::Spool::open(myc_transport::SpoolOptions::new(&spool_dir));
    assert!(reopened.is_ok_and(|(spool, _)| spool.is_empty()), "closed, empty and unlocked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_moved_live_to_another_directory_keeps_every_message_and_releases_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (seen, _tap) = tap_topic(&back, "market_data").await;
    let (first, second) = (dir.path().join("spool-1"), dir.path().join("spool-2"));
    let always = |at: &Path, fsync: &str| {
        settings(&front, &format!("{}spool_fsync = \"{fsync}\"\n", spool_lines("always", at, 1 << 30)), "")
    };
    let live = Live::start(&dir.path().join("myc.toml"), &always(&first, "10ms"), Stage::Broker).await;
    let guard = live.publisher.broker().primary_guard().unwrap();
    let producer = Producer::start(&live.publisher);
    producer.publishes_more(1_000).await;
    proxy.cut();
    wait_until("the spool holds the outage", Duration::from_secs(10), || guard.spooled_now() > 5_000).await;

    let edited = live.edit(&always(&second, "0ms"));
    wait_until("the spool moves", Duration::from_secs(10), || {
        guard.spool_options().is_some_and(|(options, _)| options.dir == second)
    })
    .await;
    assert_landed("the spool move", edited);
    let (options, policy) = guard.spool_options().unwrap();
    assert_eq!((options.fsync_every, policy), (Duration::ZERO, Some(SpoolPolicy::Always)));
    let (old, _) = myc_transport::Spool::open(myc_transport::SpoolOptions::new(&first)).unwrap();
    assert!(old.is_empty(), "the old directory is emptied and released");
    drop(old);
    producer.publishes_more(2_000).await;
    proxy.restore();
    producer.publishes_more(2_000).await;
    let outcomes = producer.stop().await;
    live.publisher.flush(Duration::from_secs(20)).await.unwrap();

    assert!(outcomes.refused.is_empty(), "nothing refused: {:?}", outcomes.refused.first());
    wait_until("every message", Duration::from_secs(20), || first_arrivals(&seen).len() >= outcomes.accepted.len())
        .await;
    assert_eq!(first_arrivals(&seen), outcomes.accepted, "every message, in order");
    wait_until("the spool empties", Duration::from_secs(10), || guard.spooled_now() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spool_max_bytes_changed_live_refuses_with_spool_full_and_a_locked_directory_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (back, front) = (dir.path().join("broker.sock"), dir.path().join("front.sock"));
    let _broker = broker(&back).await;
    let proxy = Proxy::start(&front, back.clone());
    let (on_md, _tap) = tap_topic(&back, "market_data").await;
    let (on_renamed, _tap_renamed) = tap_topic(&back, "renamed").await;
    let (spool_dir, taken) = (dir.path().join("spool"), dir.path().join("taken"));
    let text =
        |at: &Path, max_bytes: u64, topics: &str| settings(&front, &spool_lines("always", at, max_bytes), topics);
    let live = Live::start(&dir.path().join("myc.toml"), &text(&spool_dir, 1 << 30, ""), Stage::Broker).await;
    let guard = live.publisher.broker().primary_guard().unwrap();
    let producer = Producer::start(&live.publisher);
    producer.publishes_more(1_000).await;

    // Another producer holds `taken`: an edit moving the spool there (and
    // renaming the topic) changes nothing and is counted.
    let (_other, _) = myc_transport::Spool::open(myc_transport::SpoolOptions::new(&taken)).unwrap();
    let refused_edits = live.watched.counts().rejected.get();
    live.edit(&text(&taken, 1 << 30, "[topics]\nmarket_data = \"renamed\"\n"));
    wait_until("the edit is refused", Duration::from_secs(10), || live.watched.counts().rejected.get() > refused_edits)
        .await;
    producer.publishes_more(2_000).await;
    assert_eq!(guard.spool_options().unwrap().0.dir, spool_dir, "the spool stays");

    // A smaller spool while the broker is away: full soon, refused and counted.
    proxy.cut();
    let edited = live.edit(&text(&spool_dir, 1 << 20, ""));
    wait_until("spool_full", Duration::from_secs(10), || guard.counters().spool_full.get() > 0).await;
    assert_landed("the smaller spool", edited);
    let refused = producer.refused();
    live.edit(&text(&spool_dir, 1 << 30, ""));
    let accepted = producer.accepted();
    wait_until("room again", Duration::from_secs(10), || producer.accepted() > accepted + 1_000).await;
    proxy.restore();
    producer.publishes_more(2_000).await;
    let outcomes = producer.stop().await;
    live.publisher.flush(Duration::from_secs(20)).await.unwrap();

    assert!(refused > 0);
    assert!(outcomes.refused.iter().all(|(_, error)| error.contains("spool_full")), "{:?}", outcomes.refused.first());
    assert_eq!(guard.counters().spool_full.get(), outcomes.refused.len() as u64, "each refusal counted");
    wait_until("every accepted message", Duration::from_secs(20), || {
        first_arrivals(&on_md).len() >= outcomes.accepted.len()
    })
    .await;
    assert_eq!(first_arrivals(&on_md), outcomes.accepted, "every accepted message, in order, on the old topic");
    assert!(on_renamed.lock().unwrap().is_empty(), "the refused edit renamed nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_built_from_a_settings_file_follows_its_edits_once_asked() {
    let dir = tempfile::tempdir().unwrap();
    let back = dir.path().join("broker.sock");
    let _broker = broker(&back).await;
    let ((on_a, _tap_a), (on_b, _tap_b)) = (tap_topic(&back, "md_a").await, tap_topic(&back, "md_b").await);
    let rollout =
        format!("[rollout]\nfile = \"{}\"\ndefault_stage = \"broker\"\n", dir.path().join("rollout.toml").display());
    let file = dir.path().join("myc.toml");
    let text = |topic: &str| settings(&back, "", &format!("{rollout}[topics]\nmarket_data = \"{topic}\"\n"));
    std::fs::write(&file, text("md_a")).unwrap();
    let publisher = Arc::new(ServicePublisher::from_settings_file(&file, "ported").await.unwrap());
    let _live = publisher.follow_settings().expect("built from a settings file");
    assert!(publisher.broker().primary_guard().is_some(), "the breaker and spool of [broker]");
    let mut sequence = 0;
    while on_a.lock().unwrap().is_empty() {
        sequence += 1;
        publisher.publish(&message(sequence)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    replace(&file, &text("md_b"));
    let edited = Instant::now();
    while on_b.lock().unwrap().is_empty() {
        assert!(edited.elapsed() < Duration::from_secs(10), "the edit was never applied");
        sequence += 1;
        publisher.publish(&message(sequence)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_landed("the topic change", edited);
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    let sent = usize::try_from(sequence).unwrap();
    wait_until("every message", Duration::from_secs(10), || {
        first_arrivals(&on_a).len() + first_arrivals(&on_b).len() >= sent
    })
    .await;
    let mut union = [first_arrivals(&on_a), first_arrivals(&on_b)].concat();
    union.sort_unstable();
    assert_eq!(union, (1..=sequence).collect::<Vec<_>>(), "every message on one topic or the other");
}
