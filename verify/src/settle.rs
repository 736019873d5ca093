//! The settle time of a live capture (docs/capture.md §4): after the
//! window closes, taps keep reading for a while, but take only a message
//! whose key another tap has already shown, so what was in flight when the
//! window closed arrives without opening the window to new messages.
//!
//! Sans-IO: taps feed it each message's bytes and their index; it answers
//! whether to keep the message. It deliberately knows nothing of clocks or
//! sockets: the caller decides when the window and the settle time end.

use foldhash::HashMap;

/// How far each tap has got, per `(relay_domain, source)`.
#[derive(Debug, Default)]
pub struct Settle {
    /// Per tap: `(relay_domain, source)` → progress. Invariant: one entry per tap.
    taps: Vec<HashMap<(u8, u8), Progress>>,
}

/// One tap's progress on one `(relay_domain, source)`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Progress {
    /// Highest non-zero sequence taken.
    highest: u64,
    /// Sequence-0 messages taken (their keys are arrival indices).
    arrivals: u64,
}

impl Settle {
    /// Bookkeeping for `taps` taps.
    pub fn new(taps: usize) -> Settle {
        Settle { taps: (0..taps).map(|_| HashMap::default()).collect() }
    }

    /// Records a message tap `tap` took inside the window.
    pub fn take(&mut self, tap: usize, bytes: &[u8]) {
        if let (Some(id), Some(progress)) = (id_of(bytes), self.taps.get_mut(tap)) {
            let entry = progress.entry((id.0, id.1)).or_default();
            advance(entry, id.2);
        }
    }

    /// During the settle time: whether tap `tap` keeps this message — only
    /// when another tap has already reached its key (its sequence, or for
    /// sequence-0 messages its arrival index). A kept message is recorded.
    pub fn admit(&mut self, tap: usize, bytes: &[u8]) -> bool {
        let Some((relay_domain, source, sequence)) = id_of(bytes) else { return false };
        let id = (relay_domain, source);
        let own = self.taps.get(tap).and_then(|progress| progress.get(&id)).copied().unwrap_or_default();
        let reached = |other: &Progress| {
            if sequence == 0 { other.arrivals > own.arrivals } else { other.highest >= sequence }
        };
        let admitted = self
            .taps
            .iter()
            .enumerate()
            .any(|(index, progress)| index != tap && progress.get(&id).is_some_and(reached));
        if admitted {
            self.take(tap, bytes);
        }
        admitted
    }

    /// Whether no tap is behind another on anything seen: then nothing is
    /// in flight between them and the settle time can end early.
    pub fn caught_up(&self) -> bool {
        let Some((first, rest)) = self.taps.split_first() else { return true };
        rest.iter().all(|other| other == first)
    }
}

fn advance(progress: &mut Progress, sequence: u64) {
    if sequence == 0 {
        progress.arrivals += 1;
    } else {
        progress.highest = progress.highest.max(sequence);
    }
}

/// `(relay_domain, source, sequence)` of a message, if it has a header.
fn id_of(bytes: &[u8]) -> Option<(u8, u8, u64)> {
    let header = myc_codec::Header::decode(bytes).ok()?;
    Some((header.relay_domain.as_u8(), header.source.as_u8(), header.sequence))
}

#[cfg(test)]
mod tests {
    use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};

    use super::*;

    fn message(source: u8, sequence: u64) -> Vec<u8> {
        let header = Header::new(Domain::MarketData, Source::from_u8(source), sequence, 1);
        MessageBuilder::new(header).tlv(TlvType::from_u8(200), &[0; 4]).unwrap().build()
    }

    #[test]
    fn a_message_the_other_tap_has_shown_is_admitted_and_a_new_one_is_not() {
        let mut settle = Settle::new(2);
        for sequence in 1..=10 {
            settle.take(0, &message(4, sequence));
        }
        for sequence in 1..=8 {
            settle.take(1, &message(4, sequence));
        }
        assert!(!settle.caught_up());
        assert!(settle.admit(1, &message(4, 9)), "in flight: the reference has it");
        assert!(!settle.admit(0, &message(4, 11)), "new after the window");
        assert!(!settle.admit(1, &message(4, 11)), "new after the window");
        assert!(!settle.admit(1, &message(2, 1)), "a source the other tap never showed");
        assert!(settle.admit(1, &message(4, 10)));
        assert!(settle.caught_up());
    }

    #[test]
    fn sequence_zero_messages_settle_by_arrival_count() {
        let mut settle = Settle::new(2);
        settle.take(0, &message(4, 0));
        settle.take(0, &message(4, 0));
        settle.take(1, &message(4, 0));
        assert!(settle.admit(1, &message(4, 0)));
        assert!(!settle.admit(1, &message(4, 0)), "the third one is new");
        assert!(settle.caught_up());
    }

    #[test]
    fn an_unreadable_message_is_never_admitted() {
        let mut settle = Settle::new(2);
        settle.take(0, &message(4, 5));
        assert!(!settle.admit(1, &[1, 2, 3]));
    }
}
