//! The spool directory's lock: one producer per directory. An exclusive
//! `flock` on `LOCK` in the directory, held for the life of the spool; the
//! kernel releases it when the process dies, however it dies, so a crash
//! never leaves a stale lock behind. The file holds the owner's pid, only to
//! name it in the refusal.
//!
//! It deliberately does not wait for the lock: a second producer on the
//! same directory is a configuration mistake, refused at start.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::Path;

use crate::Error;

/// The lock file's name inside the spool directory.
pub const LOCK_FILE: &str = "LOCK";

/// A held lock; released when dropped (the file descriptor closes).
#[derive(Debug)]
pub struct DirLock {
    /// The open lock file; the `flock` lives as long as this descriptor.
    _file: File,
}

impl DirLock {
    /// Takes the lock on `dir`, or says who holds it.
    ///
    /// # Errors
    /// [`Error::SpoolLocked`] when another producer holds it, [`Error::Io`]
    /// when the lock file cannot be opened.
    pub fn acquire(dir: &Path) -> Result<DirLock, Error> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| Error::io(format!("open spool lock {}", path.display()), source))?;
        if let Err(errno) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            if errno == rustix::io::Errno::WOULDBLOCK {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = match holder.trim() {
                    "" => "owner unknown".to_owned(),
                    pid => format!("pid {pid}"),
                };
                return Err(Error::SpoolLocked { dir: dir.to_path_buf(), holder });
            }
            return Err(Error::io(format!("lock {}", path.display()), errno.into()));
        }
        // Best effort: the pid is only there to name the holder.
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        Ok(DirLock { _file: file })
    }
}
