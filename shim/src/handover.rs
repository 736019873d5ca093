//! Which of the link's own messages, coming back down from the broker, the
//! relay has already fanned out — so a stage change never repeats or loses
//! a message on the relay side, however far the broker path lags.
//!
//! The uplink records, per source, runs of published messages that were
//! fanned out locally or not, each closed run ending at a known message
//! (its fingerprint). The downlink reads its stream — the link's publishes
//! in the order they were made — against those runs: a message of a
//! fanned-out run is skipped, one of a broker-only run delivered. A source
//! the link never published follows its stage instead (producers that
//! publish to the broker themselves). It deliberately does no I/O and keeps
//! no clock.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

/// A closed run of published messages of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    /// Fingerprint of its last message.
    end: u64,
    /// Whether the relay fanned its messages out.
    fanned: bool,
}

/// The uplink's record, shared with the downlink.
#[derive(Debug)]
pub(crate) struct Handover {
    /// Per source: 0 never published, 1 the current run is fanned out, 2 not.
    current: [AtomicU8; 256],
    /// Per source: fingerprint of the current run's last publish (0: none yet).
    last: [AtomicU64; 256],
    /// Per source: closed runs the downlink has not passed, oldest first.
    /// Locked only when a run closes (a stage change) and by the downlink.
    closed: Mutex<Vec<VecDeque<Run>>>,
}

/// The downlink's verdict on one message of the link's topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Down {
    /// Deliver to the relay's consumers.
    Deliver,
    /// The relay fanned it out already.
    Skip,
    /// Not one of the link's own: its stage decides.
    ByStage,
}

/// What the downlink remembers between messages.
#[derive(Debug)]
pub(crate) struct DownState {
    /// Per source: fingerprint of the last message seen.
    last_seen: Vec<u64>,
}

impl Default for DownState {
    fn default() -> Self {
        DownState { last_seen: vec![0; 256] }
    }
}

impl Default for Handover {
    fn default() -> Self {
        Handover {
            current: std::array::from_fn(|_| AtomicU8::new(0)),
            last: std::array::from_fn(|_| AtomicU64::new(0)),
            closed: Mutex::new(vec![VecDeque::new(); 256]),
        }
    }
}

/// A message's identity for the handover: its header after the source
/// (sequence, timestamp, size, checksum) and its first payload bytes, mixed
/// into 64 bits; never 0.
pub(crate) fn fingerprint(message: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in message.get(8..message.len().min(64)).unwrap_or_default() {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
    }
    hash | 1
}

impl Handover {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<VecDeque<Run>>> {
        self.closed.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records, before it is published, that the message `fingerprint` of
    /// `source` is (or is not) fanned out; returns what to pass to
    /// [`Handover::not_published`] if the publish is refused.
    pub(crate) fn publishing(&self, source: u8, fingerprint: u64, fanned: bool) -> u64 {
        let index = usize::from(source);
        let state = if fanned { 1 } else { 2 };
        let current = self.current[index].load(Ordering::Acquire);
        if current != state {
            let mut closed = self.lock();
            let last = self.last[index].swap(0, Ordering::AcqRel);
            if current != 0 && last != 0 {
                closed[index].push_back(Run { end: last, fanned: current == 1 });
            }
            self.current[index].store(state, Ordering::Release);
        }
        self.last[index].swap(fingerprint, Ordering::AcqRel)
    }

    /// The publish recorded by [`Handover::publishing`] was refused: the
    /// current run ends where it did before.
    pub(crate) fn not_published(&self, source: u8, previous: u64) {
        self.last[usize::from(source)].store(previous, Ordering::Release);
    }

    /// Judges a batch of messages from the link's topic, in order.
    pub(crate) fn judge<'a>(
        &self,
        state: &mut DownState,
        messages: impl IntoIterator<Item = &'a [u8]>,
        mut verdict: impl FnMut(Down),
    ) {
        let mut closed = self.lock();
        for message in messages {
            let source = usize::from(message.get(6).copied().unwrap_or(0));
            let print = fingerprint(message);
            let runs = &mut closed[source];
            // A run that ended at a message already seen (its record came
            // after the message did) is passed.
            while runs.front().is_some_and(|run| run.end == state.last_seen[source]) {
                runs.pop_front();
            }
            // The newest publish seen: every closed run is behind us.
            if self.last[source].load(Ordering::Acquire) == print {
                runs.clear();
            }
            let fanned = match runs.front() {
                Some(run) => Some(run.fanned),
                None => match self.current[source].load(Ordering::Acquire) {
                    1 => Some(true),
                    2 => Some(false),
                    _ => None,
                },
            };
            if let Some(position) = runs.iter().position(|run| run.end == print) {
                // The end of a run: it (and any earlier one whose end was
                // lost) is passed; this message belongs to it.
                let run = runs[position];
                runs.drain(..=position);
                verdict(if run.fanned { Down::Skip } else { Down::Deliver });
            } else {
                verdict(match fanned {
                    Some(true) => Down::Skip,
                    Some(false) => Down::Deliver,
                    None => Down::ByStage,
                });
            }
            state.last_seen[source] = print;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(source: u8, sequence: u64) -> Vec<u8> {
        let mut bytes = vec![0; 40];
        bytes[6] = source;
        bytes[8..16].copy_from_slice(&sequence.to_le_bytes());
        bytes
    }

    /// Publishes `fanned` per sequence (in order), then the downlink reads
    /// the stream from `from` on; returns the verdicts.
    fn check(fanned: &[bool], reads: &[u64]) -> Vec<Down> {
        let handover = Handover::default();
        for (index, fanned) in fanned.iter().enumerate() {
            handover.publishing(3, fingerprint(&message(3, index as u64 + 1)), *fanned);
        }
        let mut state = DownState::default();
        let mut verdicts = Vec::new();
        let messages: Vec<Vec<u8>> = reads.iter().map(|&sequence| message(3, sequence)).collect();
        handover.judge(&mut state, messages.iter().map(Vec::as_slice), |verdict| verdicts.push(verdict));
        verdicts
    }

    #[test]
    fn a_switch_to_broker_skips_what_was_fanned_out_however_late_it_comes_down() {
        use Down::{Deliver, Skip};
        assert_eq!(check(&[true, true, false, false], &[1, 2, 3, 4]), [Skip, Skip, Deliver, Deliver]);
        // Back from broker: the broker-only messages still come down.
        assert_eq!(check(&[false, false, true, true], &[1, 2, 3, 4]), [Deliver, Deliver, Skip, Skip]);
        // Back and forth within the lag.
        assert_eq!(
            check(&[true, false, true, false, false], &[1, 2, 3, 4, 5]),
            [Skip, Deliver, Skip, Deliver, Deliver]
        );
    }

    #[test]
    fn a_lost_run_end_is_passed_at_the_next_known_end() {
        use Down::{Deliver, Skip};
        // Message 2 (end of the fanned run) never comes down (a broker
        // restart mid-handover): message 3 is judged with the run before it,
        // and from the next run end on all is known again.
        assert_eq!(check(&[true, true, false, false, true], &[1, 3, 4, 5]), [Skip, Skip, Deliver, Skip]);
    }

    #[test]
    fn a_message_read_before_its_run_closed_still_closes_it() {
        let handover = Handover::default();
        let mut state = DownState::default();
        let mut verdicts = Vec::new();
        let (first, second) = (message(3, 1), message(3, 2));
        handover.publishing(3, fingerprint(&first), true);
        handover.judge(&mut state, [first.as_slice()], |verdict| verdicts.push(verdict));
        handover.publishing(3, fingerprint(&second), false);
        handover.judge(&mut state, [second.as_slice()], |verdict| verdicts.push(verdict));
        assert_eq!(verdicts, [Down::Skip, Down::Deliver]);
    }

    #[test]
    fn a_refused_publish_leaves_the_run_end_where_it_was() {
        let handover = Handover::default();
        handover.publishing(3, fingerprint(&message(3, 1)), true);
        let previous = handover.publishing(3, fingerprint(&message(3, 2)), true);
        handover.not_published(3, previous);
        handover.publishing(3, fingerprint(&message(3, 3)), false);
        let mut state = DownState::default();
        let mut verdicts = Vec::new();
        let messages = [message(3, 1), message(3, 3)];
        handover.judge(&mut state, messages.iter().map(Vec::as_slice), |verdict| verdicts.push(verdict));
        assert_eq!(verdicts, [Down::Skip, Down::Deliver]);
    }

    #[test]
    fn a_source_the_link_never_published_follows_its_stage() {
        let handover = Handover::default();
        let mut verdicts = Vec::new();
        handover.judge(&mut DownState::default(), [message(9, 1).as_slice()], |verdict| verdicts.push(verdict));
        assert_eq!(verdicts, [Down::ByStage]);
    }
}
