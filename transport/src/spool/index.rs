//! Where the spool's live records lie, sans-IO: runs of same-sized records
//! (a producer's messages are mostly one size, so a million records are a
//! handful of runs), split into those not yet handed out (`unread`) and
//! those handed out and not yet acknowledged (`in_flight`).
//!
//! It deliberately does no I/O: the spool reads and deletes files from the
//! positions it returns.

use std::collections::VecDeque;

/// A run of `count` records of `record_len` bytes each (header included),
/// back to back from `offset` in segment `segment`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The segment's number (its file name).
    pub segment: u64,
    /// Byte offset of the first record in the segment file.
    pub offset: u64,
    /// Bytes of each record, header included.
    pub record_len: u32,
    /// Records in the run; never 0 inside an [`Index`].
    pub count: u64,
}

impl Extent {
    /// Offset just past the run.
    #[must_use]
    pub fn end(&self) -> u64 {
        self.offset + u64::from(self.record_len) * self.count
    }

    /// Bytes of the run.
    #[must_use]
    pub fn bytes(&self) -> u64 {
        u64::from(self.record_len) * self.count
    }

    /// Splits off the first `n` records (`n < count`).
    fn split_front(&mut self, n: u64) -> Extent {
        let front = Extent { count: n, ..*self };
        self.offset += u64::from(self.record_len) * n;
        self.count -= n;
        front
    }
}

/// Appends `extent` to `runs`, merging it into the last run when it
/// continues it.
fn push_run(runs: &mut VecDeque<Extent>, extent: Extent) {
    if let Some(last) = runs.back_mut()
        && last.segment == extent.segment
        && last.record_len == extent.record_len
        && last.end() == extent.offset
    {
        last.count += extent.count;
        return;
    }
    runs.push_back(extent);
}

/// Removes up to `max` records from the front of `runs` (never more than
/// the first run); `None` when there are none or `max` is 0.
fn pop_front_run(runs: &mut VecDeque<Extent>, max: u64) -> Option<Extent> {
    let front = runs.front_mut().filter(|_| max > 0)?;
    if max < front.count {
        return Some(front.split_front(max));
    }
    runs.pop_front()
}

/// The live records of a spool, oldest first.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Records handed out by [`Index::take`] or [`Index::skip`] and not yet
    /// consumed; all older than every unread record.
    in_flight: VecDeque<Extent>,
    /// Records not yet handed out.
    unread: VecDeque<Extent>,
    /// Records in `in_flight`.
    in_flight_count: u64,
    /// Records in `unread`.
    unread_count: u64,
    /// Bytes of all live records (both queues).
    bytes: u64,
}

impl Index {
    /// Records one more record, newest, at `offset` of `segment`.
    pub fn push(&mut self, segment: u64, offset: u64, record_len: u32) {
        push_run(&mut self.unread, Extent { segment, offset, record_len, count: 1 });
        self.unread_count += 1;
        self.bytes += u64::from(record_len);
    }

    /// Live records (unread and in flight).
    #[must_use]
    pub fn len(&self) -> u64 {
        self.unread_count + self.in_flight_count
    }

    /// Whether no record is live.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records not yet handed out.
    #[must_use]
    pub fn unread(&self) -> u64 {
        self.unread_count
    }

    /// Records handed out and not yet consumed.
    #[must_use]
    pub fn in_flight(&self) -> u64 {
        self.in_flight_count
    }

    /// Bytes of the live records (headers included).
    #[must_use]
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Hands out the oldest unread records, at least one when there is one,
    /// up to `max_bytes`, as runs in order; they become in flight.
    pub fn take(&mut self, max_bytes: u64) -> Vec<Extent> {
        let mut taken = Vec::new();
        let mut budget = max_bytes;
        while let Some(front) = self.unread.front() {
            let fit = budget / u64::from(front.record_len.max(1));
            let fit = if taken.is_empty() { fit.max(1) } else { fit };
            let Some(extent) = self.unread_to_in_flight(fit) else { break };
            budget = budget.saturating_sub(extent.bytes());
            taken.push(extent);
        }
        taken
    }

    /// Marks the `n` oldest unread records in flight without handing them
    /// out (their owner already has the bytes); returns how many there were.
    pub fn skip(&mut self, n: u64) -> u64 {
        let mut left = n;
        while let Some(extent) = self.unread_to_in_flight(left) {
            left -= extent.count;
        }
        n - left
    }

    /// Moves up to `max` records of the first unread run in flight.
    fn unread_to_in_flight(&mut self, max: u64) -> Option<Extent> {
        let extent = pop_front_run(&mut self.unread, max)?;
        self.unread_count -= extent.count;
        self.in_flight_count += extent.count;
        push_run(&mut self.in_flight, extent);
        Some(extent)
    }

    /// Forgets the `n` oldest in-flight records (acknowledged); returns how
    /// many there were.
    pub fn consume(&mut self, n: u64) -> u64 {
        let mut left = n;
        while let Some(extent) = pop_front_run(&mut self.in_flight, left) {
            left -= extent.count;
            self.in_flight_count -= extent.count;
            self.bytes -= extent.bytes();
        }
        n - left
    }

    /// Puts every in-flight record back in front of the unread ones, to be
    /// handed out again (their reader lost them).
    pub fn rewind(&mut self) {
        self.give_back(self.in_flight_count);
    }

    /// Puts the `n` newest in-flight records back in front of the unread
    /// ones (a read that failed hands back what it took).
    pub fn give_back(&mut self, n: u64) {
        let mut left = n;
        while left > 0 {
            let Some(back) = self.in_flight.back_mut() else { break };
            let extent = if left < back.count {
                let keep = back.count - left;
                let tail = Extent { offset: back.offset + u64::from(back.record_len) * keep, count: left, ..*back };
                back.count = keep;
                tail
            } else {
                let whole = *back;
                self.in_flight.pop_back();
                whole
            };
            left -= extent.count;
            self.in_flight_count -= extent.count;
            self.unread_count += extent.count;
            self.unread_front(extent);
        }
    }

    fn unread_front(&mut self, extent: Extent) {
        match self.unread.front_mut() {
            Some(front)
                if front.segment == extent.segment
                    && front.record_len == extent.record_len
                    && extent.end() == front.offset =>
            {
                front.offset = extent.offset;
                front.count += extent.count;
            }
            _ => self.unread.push_front(extent),
        }
    }

    /// Where the oldest live record lies: `(segment, offset)`.
    #[must_use]
    pub fn oldest(&self) -> Option<(u64, u64)> {
        self.in_flight.front().or_else(|| self.unread.front()).map(|extent| (extent.segment, extent.offset))
    }

    /// Runs of the live records, oldest first (for tests and diagnostics).
    pub fn runs(&self) -> impl Iterator<Item = &Extent> + '_ {
        self.in_flight.iter().chain(self.unread.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extent(segment: u64, offset: u64, record_len: u32, count: u64) -> Extent {
        Extent { segment, offset, record_len, count }
    }

    #[test]
    fn same_sized_neighbours_merge_into_one_run() {
        let mut index = Index::default();
        for n in 0..1000 {
            index.push(1, 16 + n * 140, 140);
        }
        index.push(1, 16 + 1000 * 140, 60);
        index.push(2, 16, 60);
        let runs: Vec<Extent> = index.runs().copied().collect();
        assert_eq!(runs, [extent(1, 16, 140, 1000), extent(1, 140_016, 60, 1), extent(2, 16, 60, 1)]);
        assert_eq!(index.len(), 1002);
        assert_eq!(index.bytes(), 140_000 + 120);
    }

    #[test]
    fn a_gap_splits_runs() {
        let mut index = Index::default();
        index.push(1, 16, 100);
        index.push(1, 216, 100); // 100 corrupt bytes skipped in between
        assert_eq!(index.runs().count(), 2);
    }

    #[test]
    fn take_hands_out_up_to_the_budget_and_at_least_one() {
        let mut index = Index::default();
        for n in 0..10 {
            index.push(1, 16 + n * 100, 100);
        }
        assert_eq!(index.take(350), [extent(1, 16, 100, 3)]);
        assert_eq!(index.take(10), [extent(1, 316, 100, 1)], "one record even over the budget");
        assert_eq!((index.unread(), index.in_flight()), (6, 4));
        assert_eq!(index.take(u64::MAX), [extent(1, 416, 100, 6)]);
        assert!(index.take(u64::MAX).is_empty());
        assert_eq!(index.runs().count(), 1, "in-flight pieces merged back into one run");
    }

    #[test]
    fn consume_forgets_oldest_first_and_reports_the_oldest_live_record() {
        let mut index = Index::default();
        for n in 0..4 {
            index.push(1, 16 + n * 10, 10);
        }
        index.push(2, 16, 10);
        assert_eq!(index.skip(3), 3);
        assert_eq!(index.consume(2), 2);
        assert_eq!(index.oldest(), Some((1, 36)));
        assert_eq!(index.consume(5), 1, "only in-flight records can be consumed");
        assert_eq!(index.oldest(), Some((1, 46)));
        index.take(u64::MAX);
        assert_eq!(index.consume(2), 2);
        assert_eq!(index.oldest(), None);
        assert!(index.is_empty());
        assert_eq!(index.bytes(), 0);
    }

    #[test]
    fn rewind_puts_in_flight_records_back_in_order() {
        let mut index = Index::default();
        for n in 0..6 {
            index.push(1, 16 + n * 10, 10);
        }
        index.take(20);
        index.take(20);
        index.consume(1);
        index.rewind();
        assert_eq!((index.unread(), index.in_flight()), (5, 0));
        assert_eq!(index.take(u64::MAX), [extent(1, 26, 10, 5)]);
    }

    #[test]
    fn give_back_returns_only_the_newest_in_flight_records() {
        let mut index = Index::default();
        for n in 0..6 {
            index.push(1, 16 + n * 10, 10);
        }
        index.take(20);
        index.take(30);
        index.give_back(2);
        assert_eq!((index.unread(), index.in_flight()), (3, 3));
        assert_eq!(index.take(10), [extent(1, 46, 10, 1)]);
        assert_eq!(index.consume(4), 4);
        assert_eq!(index.oldest(), Some((1, 56)));
    }
}
