//! Processes the benchmarks measure: a `myc broker` child on a socket in a
//! temporary directory (so its memory is its own), and peak-RSS readings from
//! `/proc`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use myc_transport::Endpoint;

/// A `myc` server (broker or relay) running as a child process on a socket
/// in a temporary directory; killed and reaped on drop.
pub(super) struct ChildServer {
    child: Child,
    pub(super) socket: PathBuf,
    _dir: tempfile::TempDir,
}

/// The broker child, with its endpoint.
pub(super) struct ChildBroker {
    server: ChildServer,
    pub(super) endpoint: Endpoint,
    pub(super) socket: PathBuf,
}

impl ChildServer {
    /// Runs `myc <args…> <socket flag> <socket>` and waits until it accepts.
    pub(super) fn start(
        args: &[&str],
        socket_arg: impl Fn(&std::path::Path) -> Vec<String>,
    ) -> anyhow::Result<ChildServer> {
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let socket = dir.path().join("server.sock");
        let exe = std::env::current_exe().context("cannot find the myc binary")?;
        let child = Command::new(exe)
            .args(args)
            .args(socket_arg(&socket))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the server")?;
        let mut server = ChildServer { child, socket, _dir: dir };
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&server.socket).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("the server exited at start: {status}");
            }
            if started.elapsed() > Duration::from_secs(10) {
                bail!("the server did not accept connections within 10 s");
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(server)
    }

    /// The server's peak resident set size so far.
    pub(super) fn peak_rss(&self) -> Option<u64> {
        peak_rss_of_pid(self.child.id())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildBroker {
    /// Starts `myc broker` on a fresh socket and waits until it accepts and
    /// its restart grace is over.
    pub(super) fn start() -> anyhow::Result<ChildBroker> {
        let started = Instant::now();
        let server = ChildServer::start(&["broker"], |socket| {
            vec!["--listen".to_owned(), format!("unix:{}", socket.display())]
        })?;
        // A fresh broker holds publishes for its restart grace (500 ms by
        // default); measure the broker in its steady state, after it.
        std::thread::sleep(Duration::from_millis(550).saturating_sub(started.elapsed()));
        let socket = server.socket.clone();
        Ok(ChildBroker { endpoint: Endpoint::Unix(socket.clone()), socket, server })
    }

    /// The broker's peak resident set size so far.
    pub(super) fn peak_rss(&self) -> Option<u64> {
        self.server.peak_rss()
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
