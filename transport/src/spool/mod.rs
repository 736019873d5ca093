//! The spool: a producer's messages kept on disk while the broker cannot
//! take them (the file format is described in `docs/spool.md`).
//!
//! A directory of numbered segment files of CRC-checked records, appended
//! in order and handed out in the same order; a message leaves when its
//! owner says the broker acknowledged it ([`Spool::consume`]), and the
//! position of the oldest live record is kept in the `ack` file so a
//! restarted producer replays only what was never acknowledged. Opening a
//! spool recovers it: segments are scanned, a torn tail (a crash mid-write)
//! is truncated and counted, corrupt bytes in the middle are reported with
//! their offset and skipped, and everything else is replayed. One producer
//! per directory ([`lock`]).
//!
//! Appends are written to the file before they return, so a killed process
//! loses nothing it was told was appended; `fdatasync` follows within
//! [`SpoolOptions::fsync_every`] (a background thread), or at once when
//! that is zero, for the machine crashing too.
//!
//! The format and the bookkeeping are sans-IO ([`record`], [`index`]); this
//! file does the blocking file I/O (appends are page-cache writes, quick
//! enough for the caller's thread). It deliberately knows nothing of
//! brokers or payload contents: what a record holds is the owner's business.

pub mod index;
pub mod lock;
pub mod record;

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::Error;
use index::Index;
use record::{Decoded, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, Scan, Step};

/// The file holding the oldest live record's position.
pub const ACK_FILE: &str = "ack";
/// The suffix of segment files (`00000000000000000001.seg`).
pub const SEGMENT_SUFFIX: &str = ".seg";

/// How a spool is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolOptions {
    /// The directory (created when missing); one producer's alone.
    pub dir: PathBuf,
    /// Bytes the segment files may take on disk together (`spool_max_bytes`).
    pub max_bytes: u64,
    /// Longest time between an append and its `fdatasync` (`spool_fsync`);
    /// zero syncs every append before it returns.
    pub fsync_every: Duration,
    /// Bytes at which a segment is closed and the next begun; `None` picks
    /// an eighth of `max_bytes`, between 64 KiB and 64 MiB, so a partly
    /// acknowledged oldest segment wastes little of the limit.
    pub segment_bytes: Option<u64>,
}

impl SpoolOptions {
    /// The defaults (1 GiB, 10 ms) for `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> SpoolOptions {
        SpoolOptions {
            dir: dir.into(),
            max_bytes: 1024 * 1024 * 1024,
            fsync_every: Duration::from_millis(10),
            segment_bytes: None,
        }
    }

    fn segment_bytes(&self) -> u64 {
        self.segment_bytes.unwrap_or((self.max_bytes / 8).clamp(64 * 1024, 64 * 1024 * 1024))
    }
}

/// Bytes of a segment found bad when the spool was opened or read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The segment file.
    pub path: PathBuf,
    /// Byte offset in the file where the bad bytes start.
    pub offset: u64,
    /// How many bytes were skipped or cut.
    pub len: u64,
}

/// What opening a spool found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Records waiting to be replayed.
    pub messages: u64,
    /// Their bytes (record headers included).
    pub bytes: u64,
    /// Torn tails cut off the newest segment (a crash mid-write).
    pub truncated: Vec<Damage>,
    /// Corrupt bytes in the middle, skipped; the records after them are kept.
    pub corrupt: Vec<Damage>,
}

/// A spool's counters, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Live records (not yet acknowledged).
    pub messages: u64,
    /// Bytes of the live records.
    pub bytes: u64,
    /// Bytes of the segment files on disk (what `max_bytes` bounds).
    pub disk_bytes: u64,
    /// Records appended since the spool was opened.
    pub appended_total: u64,
    /// Appends refused because the spool was full.
    pub full_total: u64,
    /// Torn tails truncated (at open).
    pub truncated_total: u64,
    /// Corrupt regions skipped (at open or when read).
    pub corrupt_total: u64,
    /// Background `fdatasync` calls that failed.
    pub sync_failures_total: u64,
}

/// Records read back from the spool: payloads as ranges of one buffer.
#[derive(Debug, Default, Clone)]
pub struct SpoolBatch {
    data: Bytes,
    payloads: Vec<(usize, usize)>,
    /// Records taken from the spool for this batch: the payloads, plus any
    /// found corrupt on the way (skipped, but in flight all the same, so
    /// the owner consumes them with the rest).
    pub records: u64,
}

impl SpoolBatch {
    /// The payloads, in order.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.payloads.iter().map(|&(start, end)| &self.data[start..end])
    }

    /// The payloads as shared slices.
    pub fn payload_bytes(&self) -> impl ExactSizeIterator<Item = Bytes> + '_ {
        self.payloads.iter().map(|&(start, end)| self.data.slice(start..end))
    }

    /// How many payloads.
    pub fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.payloads.is_empty()
    }
}

/// An open spool (see the module documentation).
#[derive(Debug)]
pub struct Spool {
    options: SpoolOptions,
    /// Held for the spool's life (or until [`Spool::release`]): no other
    /// producer opens the directory.
    lock: Option<lock::DirLock>,
    /// Segment files on disk and their lengths, by number; the active one
    /// is the last.
    segments: BTreeMap<u64, u64>,
    /// Sum of `segments`' lengths.
    disk_bytes: u64,
    /// The active segment, opened for appending; its length is
    /// `segments[active_id]`, which is always a record boundary.
    active: File,
    active_id: u64,
    /// Where the live records lie.
    index: Index,
    /// The `ack` file, rewritten in place with the oldest live position.
    ack: File,
    /// The position last written to `ack`, to skip rewriting the same one.
    ack_written: Option<(u64, u64)>,
    /// Encoding buffer, reused.
    scratch: Vec<u8>,
    /// The background syncer; `None` when every append syncs.
    syncer: Option<Syncer>,
    stats: SpoolStats,
}

impl Spool {
    /// Opens (or creates) the spool in `options.dir`: takes the lock,
    /// recovers the segments and says what it found.
    ///
    /// # Errors
    /// [`Error::SpoolLocked`] when another producer has the directory;
    /// [`Error::Io`] when it cannot be read or written.
    pub fn open(options: SpoolOptions) -> Result<(Spool, Recovery), Error> {
        let dir = options.dir.clone();
        fs::create_dir_all(&dir).map_err(|source| Error::io(format!("create spool dir {}", dir.display()), source))?;
        let lock = lock::DirLock::acquire(&dir)?;
        let ack_path = dir.join(ACK_FILE);
        let ack = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&ack_path)
            .map_err(|source| Error::io(format!("open {}", ack_path.display()), source))?;
        let acked = read_ack(&ack);

        let mut recovery = Recovery::default();
        let mut index = Index::default();
        let mut segments = BTreeMap::new();
        let ids = segment_ids(&dir)?;
        let newest = ids.last().copied();
        for id in ids {
            let path = segment_path(&dir, id);
            if acked.is_some_and(|(acked_id, _)| id < acked_id) {
                // Fully acknowledged before the last run ended.
                remove(&path)?;
                continue;
            }
            let len = recover_segment(&path, id, Some(id) == newest, acked, &mut index, &mut recovery)?;
            segments.insert(id, len);
        }
        recovery.messages = index.len();
        recovery.bytes = index.bytes();

        let (active_id, active) = match segments.last_key_value() {
            Some((&id, &len)) if len >= SEGMENT_HEADER_LEN as u64 && len < options.segment_bytes() => {
                (id, open_append(&segment_path(&dir, id))?)
            }
            last => {
                let id = last.map_or(1, |(&id, _)| id + 1);
                let file = create_segment(&dir, id)?;
                segments.insert(id, SEGMENT_HEADER_LEN as u64);
                (id, file)
            }
        };
        let syncer = (!options.fsync_every.is_zero())
            .then(|| Syncer::start(&active, options.fsync_every))
            .transpose()
            .map_err(|source| Error::io("start the spool's sync thread", source))?;
        let stats = SpoolStats {
            truncated_total: recovery.truncated.len() as u64,
            corrupt_total: recovery.corrupt.len() as u64,
            ..SpoolStats::default()
        };
        let disk_bytes = segments.values().sum();
        let mut spool = Spool {
            options,
            lock: Some(lock),
            segments,
            disk_bytes,
            active,
            active_id,
            index,
            ack,
            ack_written: acked,
            scratch: Vec::new(),
            syncer,
            stats,
        };
        spool.forget_consumed_segments()?;
        Ok((spool, recovery))
    }

    /// Gives the directory's lock up now, for a spool left behind empty
    /// (moved to another directory): another producer may open the
    /// directory at once, whenever this value is dropped. Nothing is to be
    /// appended after.
    pub fn release(&mut self) {
        self.lock = None;
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.options.dir
    }

    /// The options in force.
    pub fn options(&self) -> &SpoolOptions {
        &self.options
    }

    /// New `max_bytes` and `fsync_every`, in force from the next append.
    /// What is spooled stays, even above a smaller limit (appends then fail
    /// with `spool_full` until acknowledgements make room). A new
    /// `fsync_every` first syncs what was appended under the old one.
    ///
    /// # Errors
    /// The sync, or starting the sync thread, failed; `max_bytes` is
    /// applied either way, and the old sync interval stays on failure.
    pub fn set_limits(&mut self, max_bytes: u64, fsync_every: Duration) -> Result<(), Error> {
        self.options.max_bytes = max_bytes;
        if fsync_every == self.options.fsync_every {
            return Ok(());
        }
        self.sync()?;
        let syncer = (!fsync_every.is_zero())
            .then(|| Syncer::start(&self.active, fsync_every))
            .transpose()
            .map_err(|source| Error::io("start the spool's sync thread", source))?;
        if let Some(old) = std::mem::replace(&mut self.syncer, syncer) {
            self.stats.sync_failures_total += old.shared.failures.load(Ordering::Relaxed);
            old.stop();
        }
        self.options.fsync_every = fsync_every;
        Ok(())
    }

    /// Appends one record; when this returns, a killed process keeps it.
    ///
    /// # Errors
    /// [`Error::SpoolFull`] (nothing appended, counted),
    /// [`Error::SpoolRecordTooLarge`], or an I/O error (nothing appended).
    pub fn append(&mut self, payload: &[u8]) -> Result<(), Error> {
        self.append_batch(&[payload])
    }

    /// Appends records in order with as few writes as possible; all or
    /// nothing when the spool is full.
    ///
    /// # Errors
    /// As [`Spool::append`].
    pub fn append_batch<P: AsRef<[u8]>>(&mut self, payloads: &[P]) -> Result<(), Error> {
        let mut needed = 0u64;
        for payload in payloads {
            let len = payload.as_ref().len();
            if len > record::MAX_RECORD_PAYLOAD {
                return Err(Error::SpoolRecordTooLarge { len, max: record::MAX_RECORD_PAYLOAD });
            }
            needed += record::encoded_len(len) as u64;
        }
        if self.disk_bytes + needed > self.options.max_bytes {
            self.stats.full_total += 1;
            return Err(Error::SpoolFull {
                dir: self.options.dir.clone(),
                used: self.disk_bytes,
                max_bytes: self.options.max_bytes,
            });
        }
        let segment_bytes = self.options.segment_bytes();
        self.scratch.clear();
        let mut pending: Vec<u32> = Vec::with_capacity(payloads.len());
        for payload in payloads {
            let record_len = record::encoded_len(payload.as_ref().len()) as u64;
            let active_len = self.active_len() + self.scratch.len() as u64;
            if active_len > SEGMENT_HEADER_LEN as u64 && active_len + record_len > segment_bytes {
                self.write_pending(&mut pending)?;
                self.roll()?;
            }
            record::encode(&mut self.scratch, payload.as_ref());
            pending.push(u32::try_from(record_len).unwrap_or(u32::MAX));
        }
        self.write_pending(&mut pending)?;
        if self.options.fsync_every.is_zero() {
            self.active.sync_data().map_err(|source| Error::io(self.describe_active("fdatasync"), source))?;
        } else if let Some(syncer) = &self.syncer {
            syncer.shared.dirty.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Hands out the oldest unread records, at least one when there is one,
    /// up to about `max_bytes`. They stay in the spool, in flight, until
    /// [`Spool::consume`]d. A record found corrupt now (the disk changed
    /// under us) is skipped, logged and counted, but still taken.
    ///
    /// # Errors
    /// An I/O error reading a segment (nothing taken).
    pub fn read(&mut self, max_bytes: usize) -> Result<SpoolBatch, Error> {
        let extents = self.index.take(max_bytes as u64);
        let records: u64 = extents.iter().map(|extent| extent.count).sum();
        match self.read_extents(&extents) {
            Ok(data) => Ok(self.check_batch(&extents, data, records)),
            Err(error) => {
                self.index.give_back(records);
                Err(error)
            }
        }
    }

    fn read_extents(&self, extents: &[index::Extent]) -> Result<BytesMut, Error> {
        let total: u64 = extents.iter().map(index::Extent::bytes).sum();
        let mut data = BytesMut::zeroed(usize::try_from(total).unwrap_or(usize::MAX));
        let mut filled = 0usize;
        // Adjacent runs of one segment are read with one call.
        let mut start = 0;
        while start < extents.len() {
            let mut end = start + 1;
            while end < extents.len()
                && extents[end].segment == extents[start].segment
                && extents[end].offset == extents[end - 1].end()
            {
                end += 1;
            }
            let len = usize::try_from(extents[end - 1].end() - extents[start].offset).unwrap_or(usize::MAX);
            let path = segment_path(&self.options.dir, extents[start].segment);
            let file = File::open(&path).map_err(|source| Error::io(format!("open {}", path.display()), source))?;
            file.read_exact_at(&mut data[filled..filled + len], extents[start].offset)
                .map_err(|source| Error::io(format!("read {}", path.display()), source))?;
            filled += len;
            start = end;
        }
        Ok(data)
    }

    /// Checks every record of a read and keeps the good payloads.
    fn check_batch(&mut self, extents: &[index::Extent], data: BytesMut, records: u64) -> SpoolBatch {
        let total = data.len();
        let mut batch = SpoolBatch { records, payloads: Vec::with_capacity(total / 64), data: Bytes::new() };
        let mut at = 0usize;
        for extent in extents {
            for n in 0..extent.count {
                let record_len = extent.record_len as usize;
                if let Decoded::Record { len } = record::decode(&data[at..at + record_len])
                    && len == record_len
                {
                    batch.payloads.push((at + RECORD_HEADER_LEN, at + record_len));
                } else {
                    let offset = extent.offset + n * u64::from(extent.record_len);
                    let path = segment_path(&self.options.dir, extent.segment);
                    tracing::warn!(path = %path.display(), offset, "spool record corrupt when read back; skipped");
                    self.stats.corrupt_total += 1;
                }
                at += record_len;
            }
        }
        batch.data = data.freeze();
        batch
    }

    /// Marks the `n` oldest unread records in flight without reading them
    /// (their owner sent them from memory); returns how many there were.
    pub fn skip(&mut self, n: u64) -> u64 {
        self.index.skip(n)
    }

    /// Puts the `n` newest in-flight records back to be read again (taken
    /// by a read whose owner could not pass them all on).
    pub fn give_back(&mut self, n: u64) {
        self.index.give_back(n);
    }

    /// Puts every in-flight record back to be read again (the connection
    /// that took them is gone and kept no copy).
    pub fn rewind(&mut self) {
        self.index.rewind();
    }

    /// Forgets the `n` oldest in-flight records: the broker acknowledged
    /// them. Segments left with no live record are deleted.
    ///
    /// # Errors
    /// An I/O error writing the `ack` file or deleting a segment.
    pub fn consume(&mut self, n: u64) -> Result<u64, Error> {
        let consumed = self.index.consume(n);
        self.forget_consumed_segments()?;
        Ok(consumed)
    }

    /// Syncs the active segment now (at shutdown, or before saying a flush
    /// is complete).
    ///
    /// # Errors
    /// The `fdatasync` failure.
    pub fn sync(&mut self) -> Result<(), Error> {
        self.active.sync_data().map_err(|source| Error::io(self.describe_active("fdatasync"), source))
    }

    /// Live records (not yet acknowledged).
    pub fn messages(&self) -> u64 {
        self.index.len()
    }

    /// Records not yet handed out by [`Spool::read`] or [`Spool::skip`].
    pub fn unread(&self) -> u64 {
        self.index.unread()
    }

    /// Whether no record is live.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The counters now.
    pub fn stats(&self) -> SpoolStats {
        SpoolStats {
            messages: self.index.len(),
            bytes: self.index.bytes(),
            disk_bytes: self.disk_bytes,
            // Failures of sync threads replaced by `set_limits`, plus this one's.
            sync_failures_total: self.stats.sync_failures_total
                + self.syncer.as_ref().map_or(0, |syncer| syncer.shared.failures.load(Ordering::Relaxed)),
            ..self.stats
        }
    }

    fn active_len(&self) -> u64 {
        self.segments.get(&self.active_id).copied().unwrap_or(SEGMENT_HEADER_LEN as u64)
    }

    fn describe_active(&self, what: &str) -> String {
        format!("{what} {}", segment_path(&self.options.dir, self.active_id).display())
    }

    /// Writes the encoded records in `scratch` to the active segment and
    /// indexes them; on failure cuts the file back so no partial record
    /// stays behind.
    fn write_pending(&mut self, pending: &mut Vec<u32>) -> Result<(), Error> {
        if self.scratch.is_empty() {
            return Ok(());
        }
        let start = self.active_len();
        if let Err(source) = self.active.write_all(&self.scratch) {
            let _ = self.active.set_len(start);
            self.scratch.clear();
            pending.clear();
            return Err(Error::io(self.describe_active("append to"), source));
        }
        let mut offset = start;
        for &record_len in pending.iter() {
            self.index.push(self.active_id, offset, record_len);
            offset += u64::from(record_len);
        }
        let written = self.scratch.len() as u64;
        self.segments.insert(self.active_id, start + written);
        self.disk_bytes += written;
        self.stats.appended_total += pending.len() as u64;
        self.scratch.clear();
        pending.clear();
        Ok(())
    }

    /// Closes the active segment (synced, so a rolled segment is always
    /// whole on disk) and starts the next.
    fn roll(&mut self) -> Result<(), Error> {
        self.active.sync_data().map_err(|source| Error::io(self.describe_active("fdatasync"), source))?;
        let id = self.active_id + 1;
        let file = create_segment(&self.options.dir, id)?;
        if let Some(syncer) = &self.syncer {
            let clone = file.try_clone().map_err(|source| Error::io("clone the segment handle", source))?;
            *syncer.shared.file.lock().unwrap_or_else(PoisonError::into_inner) = clone;
        }
        self.active = file;
        self.active_id = id;
        self.segments.insert(id, SEGMENT_HEADER_LEN as u64);
        self.disk_bytes += SEGMENT_HEADER_LEN as u64;
        Ok(())
    }

    /// Deletes segments older than the oldest live record (never the
    /// active one) and records that position in the `ack` file.
    fn forget_consumed_segments(&mut self) -> Result<(), Error> {
        let position = self.index.oldest().unwrap_or((self.active_id, self.active_len()));
        while let Some((&id, &len)) = self.segments.first_key_value() {
            if id >= position.0 || id == self.active_id {
                break;
            }
            remove(&segment_path(&self.options.dir, id))?;
            self.segments.remove(&id);
            self.disk_bytes -= len;
        }
        if self.ack_written != Some(position) {
            write_ack(&self.ack, position)
                .map_err(|source| Error::io(format!("write {}", self.options.dir.join(ACK_FILE).display()), source))?;
            self.ack_written = Some(position);
        }
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.stop();
        }
    }
}

/// The thread that runs `fdatasync` on the active segment at most
/// `interval` after an append, off the appending thread.
#[derive(Debug)]
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct SyncShared {
    /// A handle on the active segment (replaced at each roll; the rolled
    /// one was synced by the roll).
    file: Mutex<File>,
    /// Set by appends, cleared by the sync that covers them.
    dirty: AtomicBool,
    /// Set to stop the thread (after a last sync).
    stop: Mutex<bool>,
    wake: Condvar,
    failures: AtomicU64,
}

impl Syncer {
    fn start(active: &File, interval: Duration) -> std::io::Result<Syncer> {
        let shared = Arc::new(SyncShared {
            file: Mutex::new(active.try_clone()?),
            dirty: AtomicBool::new(false),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            failures: AtomicU64::new(0),
        });
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("myc-spool-sync".to_owned())
            .spawn(move || sync_loop(&thread_shared, interval))?;
        Ok(Syncer { shared, thread: Some(thread) })
    }

    fn stop(mut self) {
        *self.shared.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.shared.wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn sync_loop(shared: &SyncShared, interval: Duration) {
    loop {
        let stop = {
            let guard = shared.stop.lock().unwrap_or_else(PoisonError::into_inner);
            let (guard, _) = shared.wake.wait_timeout(guard, interval).unwrap_or_else(PoisonError::into_inner);
            *guard
        };
        if shared.dirty.swap(false, Ordering::AcqRel) {
            let file = shared.file.lock().unwrap_or_else(PoisonError::into_inner);
            if let Err(error) = file.sync_data() {
                shared.failures.fetch_add(1, Ordering::Relaxed);
                shared.dirty.store(true, Ordering::Release);
                tracing::warn!(%error, "spool fdatasync failed");
            }
        }
        if stop {
            return;
        }
    }
}

/// `dir/NNNNNNNNNNNNNNNNNNNN.seg`: twenty digits, so names sort as numbers.
fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}{SEGMENT_SUFFIX}"))
}

/// The numbers of the segment files in `dir`, ascending; other files are
/// left alone.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, Error> {
    let entries = fs::read_dir(dir).map_err(|source| Error::io(format!("list {}", dir.display()), source))?;
    let mut ids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::io(format!("list {}", dir.display()), source))?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|name| name.strip_suffix(SEGMENT_SUFFIX)).and_then(|n| n.parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Scans one segment into `index` from the acknowledged position, cutting
/// a torn tail off the newest segment; returns the file's length after.
fn recover_segment(
    path: &Path,
    id: u64,
    newest: bool,
    acked: Option<(u64, u64)>,
    index: &mut Index,
    recovery: &mut Recovery,
) -> Result<u64, Error> {
    let bytes = fs::read(path).map_err(|source| Error::io(format!("read {}", path.display()), source))?;
    let header_len = SEGMENT_HEADER_LEN as u64;
    if !record::is_segment_header(&bytes) {
        if newest && bytes.len() < SEGMENT_HEADER_LEN && record::segment_header().starts_with(&bytes) {
            // Created, then the crash came before its header was whole.
            recovery.truncated.push(Damage { path: path.to_path_buf(), offset: 0, len: bytes.len() as u64 });
            tracing::warn!(path = %path.display(), "spool segment with a torn header; rewritten empty");
            rewrite_header(path)?;
            return Ok(header_len);
        }
        tracing::warn!(path = %path.display(), "spool segment header corrupt; its records are scanned anyway");
        recovery.corrupt.push(Damage { path: path.to_path_buf(), offset: 0, len: header_len.min(bytes.len() as u64) });
    }
    let start = match acked {
        Some((acked_id, offset)) if acked_id == id => {
            offset.clamp(header_len, bytes.len().max(SEGMENT_HEADER_LEN) as u64)
        }
        _ => header_len,
    };
    let body = bytes.get(usize::try_from(start).unwrap_or(usize::MAX)..).unwrap_or_default();
    let mut len = bytes.len() as u64;
    for step in Scan::new(body) {
        match step {
            Step::Record(region) => {
                index.push(id, start + region.offset as u64, u32::try_from(region.len).unwrap_or(u32::MAX));
            }
            Step::Corrupt(region) => {
                let damage =
                    Damage { path: path.to_path_buf(), offset: start + region.offset as u64, len: region.len as u64 };
                tracing::warn!(path = %path.display(), offset = damage.offset, bytes = damage.len, "corrupt spool record skipped");
                recovery.corrupt.push(damage);
            }
            Step::Tail(region) if newest => {
                let offset = start + region.offset as u64;
                tracing::warn!(path = %path.display(), offset, bytes = region.len, "torn spool tail truncated");
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(|source| Error::io(format!("open {}", path.display()), source))?;
                file.set_len(offset).map_err(|source| Error::io(format!("truncate {}", path.display()), source))?;
                file.sync_all().map_err(|source| Error::io(format!("fsync {}", path.display()), source))?;
                recovery.truncated.push(Damage { path: path.to_path_buf(), offset, len: region.len as u64 });
                len = offset;
            }
            Step::Tail(region) => {
                // An older segment was whole when it was rolled: bad bytes at
                // its end are corruption, not a torn write.
                let damage =
                    Damage { path: path.to_path_buf(), offset: start + region.offset as u64, len: region.len as u64 };
                tracing::warn!(path = %path.display(), offset = damage.offset, bytes = damage.len, "corrupt spool bytes skipped");
                recovery.corrupt.push(damage);
            }
        }
    }
    Ok(len)
}

fn rewrite_header(path: &Path) -> Result<(), Error> {
    let mut file = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|source| Error::io(format!("open {}", path.display()), source))?;
    file.write_all(&record::segment_header())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(format!("write {}", path.display()), source))
}

/// Creates segment `id` with its header, synced along with the directory
/// entry so the file survives a machine crash.
fn create_segment(dir: &Path, id: u64) -> Result<File, Error> {
    let path = segment_path(dir, id);
    let mut file = OpenOptions::new()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|source| Error::io(format!("create {}", path.display()), source))?;
    file.write_all(&record::segment_header())
        .and_then(|()| file.sync_all())
        .map_err(|source| Error::io(format!("write {}", path.display()), source))?;
    if let Ok(dir_handle) = File::open(dir) {
        let _ = dir_handle.sync_all();
    }
    Ok(file)
}

fn open_append(path: &Path) -> Result<File, Error> {
    OpenOptions::new().append(true).open(path).map_err(|source| Error::io(format!("open {}", path.display()), source))
}

fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("delete {}", path.display()), source))
        }
        _ => Ok(()),
    }
}

/// The `ack` file: segment number (u64 LE), offset (u64 LE), CRC-32 of the
/// sixteen bytes before it (u32 LE).
fn write_ack(file: &File, (segment, offset): (u64, u64)) -> std::io::Result<()> {
    let mut bytes = [0u8; 20];
    bytes[..8].copy_from_slice(&segment.to_le_bytes());
    bytes[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..16]);
    bytes[16..].copy_from_slice(&crc.to_le_bytes());
    file.write_all_at(&bytes, 0)
}

/// The position in the `ack` file; `None` when missing or torn (then
/// everything on disk is replayed: duplicates rather than loss).
fn read_ack(file: &File) -> Option<(u64, u64)> {
    let mut bytes = [0u8; 20];
    file.read_exact_at(&mut bytes, 0).ok()?;
    let crc = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
    if crc32fast::hash(&bytes[..16]) != crc {
        return None;
    }
    let segment = u64::from_le_bytes(bytes[..8].try_into().ok()?);
    let offset = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    Some((segment, offset))
}
