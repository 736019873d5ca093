//! Processes the benchmarks measure: a `myc broker` child on a socket in a
//! temporary directory (so its memory is its own), and peak-RSS readings from
//! `/proc`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use transport::Endpoint;

/// A broker running as a child process; killed and reaped on drop.
pub(super) struct ChildBroker {
    child: Child,
    pub(super) endpoint: Endpoint,
    pub(super) socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl ChildBroker {
    /// Starts `myc broker` on a fresh socket and waits until it accepts.
    pub(super) fn start() -> anyhow::Result<ChildBroker> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let socket = dir.path().join("broker.sock");
        let exe = std::env::current_exe().context("cannot find the myc binary")?;
        let child = Command::new(exe)
            .args(["broker", "--listen", &format!("unix:{}", socket.display())])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the broker")?;
        let mut broker = ChildBroker { child, endpoint: Endpoint::Unix(socket.clone()), socket, _dir: dir };
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&broker.socket).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                bail!("the broker exited at start: {status}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the broker did not accept connections within 10 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        // A fresh broker holds publishes for its restart grace (500 ms by
        // default); measure the broker in its steady state, after it.
        std::thread::sleep(Duration::from_millis(550).saturating_sub(started.elapsed()));
        Ok(broker)
    }

    /// The broker's peak resident set size so far.
    pub(super) fn peak_rss(&self) -> Option<u64> {
        peak_rss_of_pid(self.child.id())
    }
}

impl Drop for ChildBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This process's peak RSS since the last [`reset_own_peak_rss`].
pub(super) fn own_peak_rss() -> Option<u64> {
    peak_rss_of("/proc/self/status")
}

/// Resets this process's peak RSS counter (Linux `clear_refs` 5), so each
/// scenario reports its own peak.
pub(super) fn reset_own_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Another process's peak RSS.
pub(super) fn peak_rss_of_pid(pid: u32) -> Option<u64> {
    peak_rss_of(&format!("/proc/{pid}/status"))
}

fn peak_rss_of(status_path: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_path).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
