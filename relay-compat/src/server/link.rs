//! The relay's two attachment points for a broker link (docs/relay.md §6):
//! a per-message hook for messages from linked producers ("fan out locally?
//! hand to the link?") and a [`Downlink`] through which messages coming down
//! from the link reach this relay's consumers.
//!
//! It deliberately knows nothing about brokers, topics or rollout stages:
//! the link behind [`Link`] decides; the relay only asks and delivers.

use std::ops::Range;
use std::sync::{Arc, Weak};

use bytes::Bytes;
use myc_codec::Domain;

use super::Relay;
use super::peer::{Peer, Role};
use crate::metrics::Metrics;

/// Bit of an identification header's `flags` that marks a producer writing
/// to the broker itself (the shim's relay client sets it): such a producer
/// is never linked, so its messages do not reach the broker twice.
pub const WRITES_TO_BROKER: u8 = 0x80;

/// A broker link as the relay sees it.
pub trait Link: Send + Sync + 'static {
    /// The valid messages of one read batch from a linked producer
    /// (`batch[range]` each, in order), before fan-out: hands them to the
    /// link as the link sees fit (without waiting: the relay's fan-out never
    /// waits on the link), and pushes onto `fanned`, one per message,
    /// whether the relay fans it out to its consumers too. A whole batch at
    /// once, so the link pays its bookkeeping per run of messages, not per
    /// message.
    fn uplink(&self, batch: &Bytes, messages: &[Range<usize>], fanned: &mut Vec<bool>);

    /// Called once, when the relay of the link's domain starts: messages the
    /// link brings down go to the relay's consumers through `downlink`.
    fn attach(&self, downlink: Downlink);
}

/// The links of a relay process, one per domain at most.
#[derive(Clone, Default)]
pub struct Links {
    /// Indexed by `relay_domain - 1`.
    by_domain: [Option<Arc<dyn Link>>; 4],
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let linked: Vec<usize> = (1..=4).filter(|n| self.by_domain[n - 1].is_some()).collect();
        f.debug_struct("Links").field("domains", &linked).finish()
    }
}

impl Links {
    /// Links the relay of `domain` (one of the four) to `link`.
    pub fn set(&mut self, domain: Domain, link: Arc<dyn Link>) {
        if let Some(slot) = index(domain).and_then(|index| self.by_domain.get_mut(index)) {
            *slot = Some(link);
        }
    }

    /// The link of `domain`, if any.
    pub fn get(&self, domain: Domain) -> Option<&Arc<dyn Link>> {
        index(domain).and_then(|index| self.by_domain.get(index)).and_then(Option::as_ref)
    }
}

fn index(domain: Domain) -> Option<usize> {
    usize::from(domain.as_u8()).checked_sub(1).filter(|&index| index < 4)
}

/// Delivers messages from a link to one relay's consumers.
#[derive(Clone)]
pub struct Downlink {
    /// Weak: the relay owns its link, and the link owns this.
    relay: Weak<Relay>,
    /// The downlink's budget for waiting on consumers behind, all of them
    /// together, as a producer's.
    hold: Arc<tokio::sync::Mutex<myc_transport::HoldBudget>>,
}

impl std::fmt::Debug for Downlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downlink").finish_non_exhaustive()
    }
}

/// What became of the messages handed to [`Downlink::deliver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Messages queued to the relay's consumers.
    pub delivered: u64,
    /// Messages the relay's validation refused (never delivered).
    pub rejected: u64,
}

impl Downlink {
    pub(super) fn new(relay: &Arc<Relay>) -> Downlink {
        let hold = myc_transport::HoldBudget::new(relay.settings.stall_timeout, std::time::Instant::now());
        Downlink { relay: Arc::downgrade(relay), hold: Arc::new(tokio::sync::Mutex::new(hold)) }
    }

    /// Queues `messages` (each one whole message) to every consumer of the
    /// relay — never to a producer, whatever `echo_to_producers` says — after
    /// the relay's own validation; waits while a reading consumer is behind,
    /// as a producer would. `None` once the relay has stopped.
    pub async fn deliver(&self, messages: &[Bytes]) -> Option<Delivered> {
        let relay = self.relay.upgrade()?;
        let domain = relay.domain.name();
        let check = relay.checksum_check();
        let mut outcome = Delivered::default();
        let mut runs: Vec<(Bytes, u64)> = Vec::with_capacity(messages.len());
        for message in messages {
            let well_framed = myc_codec::peek_message_len(message) == Some(message.len())
                && message.len() <= relay.settings.max_message;
            match super::judge(relay.domain, check, message) {
                super::Verdict::Forward | super::Verdict::ForwardReported(_) if well_framed => {
                    runs.push((message.clone(), 1));
                    outcome.delivered += 1;
                }
                _ => outcome.rejected += 1,
            }
        }
        if runs.is_empty() {
            return Some(outcome);
        }
        let targets: Vec<Arc<Peer>> =
            relay.lock_peers().values().filter(|peer| peer.role() == Role::Consumer).cloned().collect();
        Metrics::get(&relay.metrics.messages_in, domain, "link").inc_by(outcome.delivered);
        let mut behind = Vec::new();
        for target in targets {
            if target.push(&runs) {
                behind.push(target);
            }
        }
        // Hold on to nothing of the relay across the wait but the peers.
        drop(relay);
        Peer::wait_for_behind(behind, &mut *self.hold.lock().await).await;
        Some(outcome)
    }
}
