//! The broker-link hook, with a fake link: linked producers' valid messages
//! are handed over and fanned out only when the link says so; producers
//! flagged as writing to the broker are never handed over; what comes down
//! reaches consumers only — never producers, even with the legacy echo —
//! after the relay's own validation.

use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use myc_codec::Domain;
use myc_relay_compat::{Downlink, Link, Links, RelaySettings, RelayTap, WRITES_TO_BROKER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{TestRelay, identification, message, read_n};

/// Keeps what it is handed; fans out what comes from source 2 only.
#[derive(Default)]
struct FakeLink {
    handed: Mutex<Vec<Bytes>>,
    downlink: Mutex<Option<Downlink>>,
}

impl Link for FakeLink {
    fn uplink(&self, batch: &Bytes, messages: &[Range<usize>], fanned: &mut Vec<bool>) {
        let mut handed = self.handed.lock().unwrap();
        for range in messages {
            handed.push(batch.slice(range.clone()));
            fanned.push(batch[range.start + 6] == 2);
        }
    }

    fn attach(&self, downlink: Downlink) {
        *self.downlink.lock().unwrap() = Some(downlink);
    }
}

async fn linked_relay(dir: &std::path::Path, echo_to_producers: bool) -> (TestRelay, Arc<FakeLink>) {
    let link = Arc::new(FakeLink::default());
    let mut links = Links::default();
    links.set(Domain::MarketData, Arc::clone(&link) as Arc<dyn Link>);
    let settings = RelaySettings { links, echo_to_producers, ..RelaySettings::default() };
    (TestRelay::start(&dir.join("md.sock"), Domain::MarketData, settings).await, link)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_producers_are_handed_over_and_fanned_out_as_the_link_says_and_flagged_ones_never() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, link) = linked_relay(dir.path(), false).await;
    let mut consumer = RelayTap::connect(&relay.path).await.unwrap();
    relay.wait_for("connections", "consumer", 1).await;
    // Source 2 (fanned out too), source 3 (link only), source 4 flagged.
    let mut flagged_id = identification(4);
    flagged_id[7] |= WRITES_TO_BROKER;
    let mut bad = message(3, 99);
    bad[4] = Domain::Signal.as_u8();
    let mut producers = Vec::new();
    for (id, source, extra) in [(identification(2), 2, None), (identification(3), 3, Some(bad)), (flagged_id, 4, None)]
    {
        let mut producer = UnixStream::connect(&relay.path).await.unwrap();
        let mut bytes = id.to_vec();
        bytes.extend((1..=50).flat_map(|sequence| message(source, sequence)));
        bytes.extend(extra.unwrap_or_default());
        producer.write_all(&bytes).await.unwrap();
        // Kept open until the consumer has read what it should.
        producers.push(producer);
    }
    let received = read_n(&mut consumer, 100).await;
    let sources: Vec<u8> = received.iter().map(|bytes| bytes[6]).collect();
    assert_eq!(sources.iter().filter(|&&source| source == 2).count(), 50);
    assert_eq!(sources.iter().filter(|&&source| source == 4).count(), 50, "flagged producers fan out as ever");
    assert!(!sources.contains(&3), "the link kept source 3 to itself");
    relay.wait_for("invalid", "wrong_domain", 1).await;
    let handed = link.handed.lock().unwrap().clone();
    let expected: Vec<Vec<u8>> =
        [2, 3].into_iter().flat_map(|source| (1..=50).map(move |sequence| message(source, sequence))).collect();
    let mut handed: Vec<Vec<u8>> = handed.iter().map(|bytes| bytes.to_vec()).collect();
    handed.sort_by_key(|bytes| bytes[6]);
    assert_eq!(handed, expected, "valid messages of linked producers only, byte for byte, the rejected one never");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_comes_down_reaches_consumers_only_after_validation_even_with_the_legacy_echo() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, link) = linked_relay(dir.path(), true).await;
    let mut consumer = RelayTap::connect(&relay.path).await.unwrap();
    let mut producer = UnixStream::connect(&relay.path).await.unwrap();
    producer.write_all(&identification(7)).await.unwrap();
    relay.wait_for("connections", "producer", 1).await;
    let downlink = link.downlink.lock().unwrap().clone().expect("attached when the relay started");
    let mut wrong_domain = message(5, 2);
    wrong_domain[4] = Domain::Execution.as_u8();
    let whole = message(5, 300);
    let truncated = Bytes::from(whole[..whole.len() - 1].to_vec());
    let batch = [Bytes::from(message(5, 1)), Bytes::from(wrong_domain), truncated, Bytes::from(message(5, 4))];
    let outcome = downlink.deliver(&batch).await.unwrap();
    assert_eq!((outcome.delivered, outcome.rejected), (2, 2));
    let received = read_n(&mut consumer, 2).await;
    assert_eq!(received, [message(5, 1), message(5, 4)]);
    let mut echo = [0u8; 1];
    let echoed = tokio::time::timeout(Duration::from_millis(200), producer.read(&mut echo)).await;
    assert!(echoed.is_err(), "a producer never receives what comes down");
    relay.stop().await;
    assert!(downlink.deliver(&[Bytes::from(message(5, 6))]).await.is_none(), "a stopped relay takes nothing");
}
