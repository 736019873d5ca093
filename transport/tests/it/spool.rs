//! The spool against real files: reopen and replay in order, acknowledged
//! records gone, torn tails, a flipped byte in the middle, garbage in the
//! directory, a second producer, a full spool, and a writer killed with
//! SIGKILL mid-stream (this test binary re-run as a child process).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use myc_transport::spool::record::{RECORD_HEADER_LEN, SEGMENT_HEADER_LEN, encoded_len};
use myc_transport::{Error, Spool, SpoolOptions};

/// A payload that names its sequence number and varies in size.
fn payload(seq: u64) -> Vec<u8> {
    let mut bytes = seq.to_le_bytes().to_vec();
    bytes.resize(8 + (seq % 7) as usize * 13, (seq % 251) as u8);
    bytes
}

fn seq_of(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().expect("8 bytes"))
}

fn options(dir: &Path) -> SpoolOptions {
    SpoolOptions::new(dir)
}

/// Everything the spool holds, in order, read and consumed.
fn drain(spool: &mut Spool) -> Vec<u64> {
    let mut seqs = Vec::new();
    loop {
        let batch = spool.read(64 * 1024).expect("read");
        if batch.records == 0 {
            return seqs;
        }
        for bytes in batch.payloads() {
            assert_eq!(bytes, payload(seq_of(bytes)), "payload bytes intact");
            seqs.push(seq_of(bytes));
        }
        spool.consume(batch.records).expect("consume");
    }
}

fn append_range(spool: &mut Spool, range: std::ops::Range<u64>) {
    for seq in range {
        spool.append(&payload(seq)).expect("append");
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "seg"))
        .collect();
    paths.sort();
    paths
}

#[test]
fn appended_records_come_back_in_order_after_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SpoolOptions { segment_bytes: Some(64 * 1024), ..options(dir.path()) };
    {
        let (mut spool, recovery) = Spool::open(opts.clone()).expect("open");
        assert_eq!(recovery.messages, 0);
        append_range(&mut spool, 0..5_000);
        let batch: Vec<Vec<u8>> = (5_000..10_000).map(payload).collect();
        spool.append_batch(&batch).expect("append batch");
        assert_eq!(spool.stats().appended_total, 10_000);
    }
    assert!(segments(dir.path()).len() > 3, "several segments were written");
    let (mut spool, recovery) = Spool::open(opts).expect("reopen");
    assert_eq!(recovery.messages, 10_000);
    assert!(recovery.truncated.is_empty() && recovery.corrupt.is_empty(), "{recovery:?}");
    assert_eq!(drain(&mut spool), (0..10_000).collect::<Vec<_>>());
}

#[test]
fn acknowledged_records_are_not_replayed_and_their_segments_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SpoolOptions { segment_bytes: Some(16 * 1024), ..options(dir.path()) };
    {
        let (mut spool, _) = Spool::open(opts.clone()).expect("open");
        append_range(&mut spool, 0..3_000);
        let before = segments(dir.path()).len();
        let mut taken = 0;
        while taken < 2_000 {
            let batch = spool.read(4096).expect("read");
            let keep = batch.records.min(2_000 - taken);
            spool.consume(keep).expect("consume");
            taken += batch.records;
        }
        // Read but unacknowledged records stay in the spool.
        assert_eq!(spool.messages(), 1_000);
        assert!(taken > 2_000, "some were read and not acknowledged");
        assert!(segments(dir.path()).len() < before, "segments behind the acknowledged point are deleted");
    }
    let (mut spool, recovery) = Spool::open(opts).expect("reopen");
    assert_eq!(recovery.messages, 1_000);
    assert_eq!(drain(&mut spool), (2_000..3_000).collect::<Vec<_>>());
}

#[test]
fn a_torn_final_record_is_truncated_counted_and_never_replayed() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut spool, _) = Spool::open(options(dir.path())).expect("open");
        append_range(&mut spool, 0..100);
    }
    let segment = segments(dir.path()).pop().expect("a segment");
    let full = std::fs::metadata(&segment).expect("stat").len();
    let last_len = encoded_len(payload(99).len()) as u64;
    // A crash mid-write: the last record lost its final 5 bytes.
    std::fs::OpenOptions::new().write(true).open(&segment).expect("open").set_len(full - 5).expect("cut");
    {
        let (mut spool, recovery) = Spool::open(options(dir.path())).expect("reopen");
        assert_eq!(recovery.truncated.len(), 1, "{recovery:?}");
        assert_eq!(recovery.truncated[0].offset, full - last_len);
        assert_eq!(recovery.truncated[0].len, last_len - 5);
        assert_eq!(spool.stats().truncated_total, 1);
        assert_eq!(std::fs::metadata(&segment).expect("stat").len(), full - last_len, "cut at the last good record");
        // New appends follow the last good record: no garbage in between.
        append_range(&mut spool, 1_000..1_010);
    }
    let (mut spool, recovery) = Spool::open(options(dir.path())).expect("reopen again");
    assert!(recovery.truncated.is_empty() && recovery.corrupt.is_empty(), "{recovery:?}");
    let expect: Vec<u64> = (0..99).chain(1_000..1_010).collect();
    assert_eq!(drain(&mut spool), expect);
}

#[test]
fn a_flipped_byte_in_the_middle_loses_only_its_record_and_is_reported_with_its_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (mut spool, _) = Spool::open(options(dir.path())).expect("open");
        append_range(&mut spool, 0..200);
    }
    let segment = segments(dir.path()).pop().expect("a segment");
    let offset_of = |seq: u64| -> u64 {
        SEGMENT_HEADER_LEN as u64 + (0..seq).map(|n| encoded_len(payload(n).len()) as u64).sum::<u64>()
    };
    let mut bytes = std::fs::read(&segment).expect("read");
    // One byte in record 50's payload, and record 120's length field.
    bytes[usize::try_from(offset_of(50)).expect("fits") + RECORD_HEADER_LEN + 3] ^= 0x01;
    bytes[usize::try_from(offset_of(120)).expect("fits") + 5] ^= 0x80;
    std::fs::write(&segment, &bytes).expect("write");

    let (mut spool, recovery) = Spool::open(options(dir.path())).expect("reopen");
    let offsets: Vec<(u64, u64)> = recovery.corrupt.iter().map(|damage| (damage.offset, damage.len)).collect();
    assert_eq!(
        offsets,
        [(offset_of(50), offset_of(51) - offset_of(50)), (offset_of(120), offset_of(121) - offset_of(120))]
    );
    assert_eq!(recovery.corrupt[0].path, segment, "the report names the file");
    assert!(recovery.truncated.is_empty());
    assert_eq!(spool.stats().corrupt_total, 2);
    let expect: Vec<u64> = (0..200).filter(|&seq| seq != 50 && seq != 120).collect();
    assert_eq!(drain(&mut spool), expect, "everything after the bad records is kept");
}

#[test]
fn a_second_producer_on_the_directory_is_refused_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, _) = Spool::open(options(dir.path())).expect("open");
    let refused = Spool::open(options(dir.path())).expect_err("a second spool on the same directory");
    assert!(matches!(refused, Error::SpoolLocked { .. }), "{refused:?}");
    let message = refused.to_string();
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    assert!(message.contains(&format!("pid {}", std::process::id())), "{message}");
    drop(first);
    Spool::open(options(dir.path())).expect("free once the first is gone");
}

#[test]
fn a_full_spool_refuses_new_records_and_keeps_the_old_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SpoolOptions { max_bytes: 64 * 1024, segment_bytes: Some(8 * 1024), ..options(dir.path()) };
    let (mut spool, _) = Spool::open(opts.clone()).expect("open");
    let mut appended = 0;
    let full = loop {
        match spool.append(&payload(appended)) {
            Ok(()) => appended += 1,
            Err(error) => break error,
        }
        assert!(appended < 10_000, "the limit never applied");
    };
    assert!(matches!(full, Error::SpoolFull { .. }), "{full:?}");
    assert!(full.to_string().starts_with("spool_full"), "{full}");
    assert!(spool.stats().disk_bytes <= 64 * 1024);
    assert!(spool.append_batch(&[payload(0), payload(1)]).is_err(), "a batch that does not fit appends nothing");
    assert_eq!(spool.stats().full_total, 2);
    assert_eq!(spool.messages(), appended);
    // Acknowledging the oldest segments makes room again.
    let batch = spool.read(32 * 1024).expect("read");
    spool.consume(batch.records).expect("consume");
    spool.append(&payload(appended)).expect("room after consuming");
    drop(spool);
    let (mut spool, _) = Spool::open(opts).expect("reopen");
    let expect: Vec<u64> = (batch.records..=appended).collect();
    assert_eq!(drain(&mut spool), expect);
}

#[test]
fn rewind_hands_out_in_flight_records_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut spool, _) = Spool::open(options(dir.path())).expect("open");
    append_range(&mut spool, 0..50);
    let first = spool.read(200).expect("read");
    spool.consume(2).expect("consume");
    spool.skip(10);
    spool.rewind();
    let again = drain(&mut spool);
    assert_eq!(again, (2..50).collect::<Vec<_>>());
    assert!(first.records >= 2);
}

#[test]
fn garbage_in_the_directory_and_a_bad_segment_header_lose_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SpoolOptions { segment_bytes: Some(4 * 1024), ..options(dir.path()) };
    {
        let (mut spool, _) = Spool::open(opts.clone()).expect("open");
        append_range(&mut spool, 0..300);
    }
    std::fs::write(dir.path().join("notes.txt"), b"an operator's file").expect("write");
    std::fs::write(dir.path().join("x.seg"), b"not a number").expect("write");
    let first = segments(dir.path()).into_iter().find(|path| path.ends_with("00000000000000000001.seg"));
    let first = first.expect("segment 1");
    let mut bytes = std::fs::read(&first).expect("read");
    bytes[0] = b'X';
    std::fs::write(&first, &bytes).expect("write");
    let (mut spool, recovery) = Spool::open(opts).expect("reopen");
    assert_eq!(recovery.corrupt.len(), 1, "{recovery:?}");
    assert_eq!((recovery.corrupt[0].offset, recovery.corrupt[0].len), (0, SEGMENT_HEADER_LEN as u64));
    assert_eq!(drain(&mut spool), (0..300).collect::<Vec<_>>(), "records behind a bad header are kept");
    assert!(dir.path().join("notes.txt").exists(), "other files are left alone");
}

#[test]
fn every_append_is_synced_with_fsync_zero() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = SpoolOptions { fsync_every: Duration::ZERO, ..options(dir.path()) };
    let (mut spool, _) = Spool::open(opts.clone()).expect("open");
    append_range(&mut spool, 0..20);
    drop(spool);
    let (mut spool, _) = Spool::open(opts).expect("reopen");
    assert_eq!(drain(&mut spool), (0..20).collect::<Vec<_>>());
}

/// Set for the child process of the kill test: the directory to write to.
const CHILD_DIR: &str = "MYC_SPOOL_TEST_CHILD_DIR";

/// Runs only as the child of
/// `a_writer_killed_mid_stream_loses_no_record_it_was_told_was_appended`
/// (the variable is set): appends for ever, printing each sequence number
/// once its append returned. Without the variable it has nothing to do.
#[test]
fn child_writer_for_the_kill_test() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let (mut spool, _) = Spool::open(options(Path::new(&dir))).expect("child open");
    let mut out = std::io::stdout().lock();
    for seq in 0.. {
        spool.append(&payload(seq)).expect("child append");
        writeln!(out, "appended {seq}").expect("child stdout");
    }
}

#[test]
fn a_writer_killed_mid_stream_loses_no_record_it_was_told_was_appended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "spool::child_writer_for_the_kill_test", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the writer");
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last_told = None;
    while last_told.is_none_or(|seq| seq < 20_000) {
        assert!(Instant::now() < deadline, "the writer made no progress");
        let line = lines.next().expect("the writer is alive").expect("line");
        if let Some(seq) = line.strip_prefix("appended ") {
            last_told = Some(seq.parse::<u64>().expect("number"));
        }
    }
    // A second producer is refused while the writer lives.
    assert!(matches!(Spool::open(options(dir.path())), Err(Error::SpoolLocked { .. })));
    child.kill().expect("SIGKILL");
    // Lines already in the pipe were printed after their append returned.
    for line in lines.map_while(Result::ok) {
        if let Some(seq) = line.strip_prefix("appended ") {
            last_told = Some(seq.parse::<u64>().expect("number"));
        }
    }
    child.wait().expect("reaped");
    let last_told = last_told.expect("some appends");

    // The write the kill interrupted, as a crash of the machine mid-write
    // would leave it: the first half of one more record.
    let segment = segments(dir.path()).pop().expect("a segment");
    let mut torn = Vec::new();
    myc_transport::spool::record::encode(&mut torn, &payload(last_told + 1_000_000));
    let mut file = std::fs::OpenOptions::new().append(true).open(&segment).expect("open");
    file.write_all(&torn[..torn.len() / 2]).expect("torn write");
    drop(file);

    let (mut spool, recovery) = Spool::open(options(dir.path())).expect("the lock died with the writer");
    assert_eq!(recovery.truncated.len(), 1, "{recovery:?}");
    assert!(recovery.corrupt.is_empty(), "{recovery:?}");
    assert_eq!(spool.stats().truncated_total, 1);
    let seqs = drain(&mut spool);
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "in order, no gap");
    assert!(seqs.len() as u64 > last_told, "{} records kept, {last_told} reported appended", seqs.len());
}
