//! The lock that makes rollout changes one at a time across processes: an
//! exclusive advisory `flock` on `<plan file>.lock`, held while a change
//! reads the plan, writes its audit entry and writes the new plan; readers
//! that judge the plan against the audit log take it shared.
//!
//! It deliberately locks a separate file, not the plan: the plan is replaced
//! by a rename on every change, and a lock on a file that has been renamed
//! over would guard nothing. It never times out: a change waits its turn.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::Error;

/// An exclusive hold on a plan; released when dropped (the descriptor
/// closes), also when the process dies.
#[derive(Debug)]
pub(crate) struct PlanLock {
    /// The open lock file; the kernel lock lives as long as it does.
    _file: File,
}

impl PlanLock {
    /// Waits for, then takes, the lock of `plan`, exclusive: for a change.
    pub(crate) fn acquire(plan: &Path) -> Result<PlanLock, Error> {
        PlanLock::take(plan, FlockOperation::LockExclusive)
    }

    /// Waits for, then takes, a shared hold: for a reader that must not
    /// see a change half-made. `None` when the lock file cannot be opened
    /// (a read-only directory): the reader then reads as before, unlocked.
    pub(crate) fn shared(plan: &Path) -> Option<PlanLock> {
        PlanLock::take(plan, FlockOperation::LockShared).ok()
    }

    fn take(plan: &Path, operation: FlockOperation) -> Result<PlanLock, Error> {
        let path = lock_path(plan);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|error| Error::io(&path, &error))?;
        loop {
            match flock(&file, operation) {
                Ok(()) => return Ok(PlanLock { _file: file }),
                Err(rustix::io::Errno::INTR) => {}
                Err(errno) => return Err(Error::io(&path, &errno.into())),
            }
        }
    }
}

/// `<plan>.lock`, beside the plan.
pub(crate) fn lock_path(plan: &Path) -> PathBuf {
    let mut name = plan.file_name().map(ToOwned::to_owned).unwrap_or_default();
    name.push(".lock");
    plan.with_file_name(name)
}
