//! A server's Unix socket file, from bind to removal, without ever touching
//! a file that is not its own:
//!
//! * the parent directory is created (mode `0750`) when missing, and refused
//!   when it is a symlink, owned by a uid other than ours or root, or
//!   writable by group or others without the sticky bit — anyone who can
//!   write there could swap the socket under our clients;
//! * an existing path is removed only when it is a socket nobody answers on;
//!   a live socket is [`Error::SocketInUse`], anything else (regular file,
//!   directory, symlink, FIFO, device) is [`Error::NotASocket`], left as is;
//! * the socket is bound inside a fresh private directory (`0700`) beside
//!   the final path, given its mode and group there, and only then linked
//!   into place (a hard link, which fails rather than replace a file that
//!   appeared meanwhile): no one ever sees it at the path with the umask's
//!   wider mode, and no process-wide umask is changed under other threads;
//! * at drop, the path is removed only if it still holds the socket we
//!   created (same device and inode).
//!
//! It deliberately does not accept connections or know about framing.

use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::Error;

/// How a listener's Unix socket file is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOptions {
    /// File mode of the socket (default `0o660`; world-writable bits are
    /// always removed).
    pub mode: u32,
    /// Group id to give the socket (its users' group), if any.
    pub group: Option<u32>,
}

impl Default for SocketOptions {
    fn default() -> Self {
        SocketOptions { mode: 0o660, group: None }
    }
}

/// The `(device, inode)` of the file at `path` itself (a symlink is not
/// followed).
pub(crate) type FileIdentity = (u64, u64);

/// The identity of the file at `path`, if there is one.
pub(crate) fn file_identity(path: &Path) -> Option<FileIdentity> {
    std::fs::symlink_metadata(path).ok().map(|metadata| (metadata.dev(), metadata.ino()))
}

/// Creates `path`'s parent directory when missing and checks that only we
/// (or root) can change what is in it.
///
/// # Errors
/// [`Error::UnsafeDirectory`] naming the directory and why, or
/// [`Error::Io`] when it cannot be created or inspected.
pub(crate) fn prepare_parent(path: &Path) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let metadata = match std::fs::symlink_metadata(parent) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o750)
                .create(parent)
                .map_err(|source| Error::io(format!("cannot create the directory {}", parent.display()), source))?;
            std::fs::symlink_metadata(parent)
        }
        found => found,
    }
    .map_err(|source| Error::io(format!("cannot inspect the directory {}", parent.display()), source))?;
    let unsafe_directory = |reason: String| Err(Error::UnsafeDirectory { path: parent.to_owned(), reason });
    if metadata.file_type().is_symlink() {
        return unsafe_directory("it is a symlink (give the real directory)".to_owned());
    }
    if !metadata.is_dir() {
        return unsafe_directory("it is not a directory".to_owned());
    }
    let ours = rustix::process::geteuid().as_raw();
    if metadata.uid() != ours && metadata.uid() != 0 {
        return unsafe_directory(format!("it is owned by uid {}, neither ours ({ours}) nor root", metadata.uid()));
    }
    let mode = metadata.permissions().mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return unsafe_directory(format!(
            "it is writable by group or others (mode {:04o}) without the sticky bit",
            mode & 0o7777
        ));
    }
    Ok(())
}

/// What is at `path` before binding.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Nothing.
    Nothing,
    /// A socket file (live or stale: the caller connects to find out).
    Socket(FileIdentity),
}

/// Looks at `path` without following a symlink.
///
/// # Errors
/// [`Error::NotASocket`] when something other than a socket is there.
pub(crate) fn existing(path: &Path) -> Result<Existing, Error> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Existing::Nothing),
        Err(source) => return Err(Error::io(format!("cannot inspect {}", path.display()), source)),
    };
    let file_type = metadata.file_type();
    let kind = if file_type.is_socket() {
        return Ok(Existing::Socket((metadata.dev(), metadata.ino())));
    } else if file_type.is_symlink() {
        "a symlink"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_file() {
        "a regular file"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else {
        "a device"
    };
    Err(Error::NotASocket { path: path.to_owned(), kind })
}

/// Removes the stale socket `identity` at `path`, unless the path has
/// changed since it was looked at.
///
/// # Errors
/// [`Error::Io`] naming the path.
pub(crate) fn remove_stale(path: &Path, identity: FileIdentity) -> Result<(), Error> {
    if file_identity(path) != Some(identity) {
        // Replaced meanwhile: look again rather than remove the newcomer.
        return match existing(path)? {
            Existing::Nothing => Ok(()),
            Existing::Socket(_) => Err(Error::SocketInUse { path: path.to_owned() }),
        };
    }
    match std::fs::remove_file(path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("cannot remove the stale socket {}", path.display()), source))
        }
        _ => Ok(()),
    }
}

/// Binds a socket at `path` (which must be free) that appears there only
/// with `options`' mode and group already set.
///
/// # Errors
/// [`Error::SocketInUse`] when a file appeared at `path` meanwhile,
/// [`Error::Io`] naming the path otherwise.
pub(crate) fn bind_private(
    path: &Path,
    options: SocketOptions,
) -> Result<(std::os::unix::net::UnixListener, FileIdentity), Error> {
    let context = |what: &str| format!("cannot {what} {}", path.display());
    let staging =
        Staging::create(path).map_err(|source| Error::io(context("make a private directory beside"), source))?;
    let staged = staging.dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&staged).map_err(|source| {
        Error::io(format!("cannot bind {} (through {})", path.display(), staged.display()), source)
    })?;
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(options.mode & 0o775))
        .map_err(|source| Error::io(context("set the mode of"), source))?;
    if let Some(group) = options.group {
        std::os::unix::fs::chown(&staged, None, Some(group))
            .map_err(|source| Error::io(context("set the group of"), source))?;
    }
    match std::fs::hard_link(&staged, path) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::SocketInUse { path: path.to_owned() });
        }
        Err(source) => return Err(Error::io(context("link the socket into"), source)),
    }
    let identity = file_identity(path).unwrap_or_default();
    Ok((listener, identity))
}

/// A private directory beside the socket path, removed with what is in it
/// when dropped.
struct Staging {
    /// `PARENT/.mycNNNNNNNN`, mode `0700`, created by us.
    dir: PathBuf,
}

impl Staging {
    fn create(path: &Path) -> io::Result<Staging> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let parent = path.parent().filter(|parent| !parent.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let mut attempt = 0;
        loop {
            // Short (the whole socket path must fit in 108 bytes) and
            // unlikely to collide; a collision just tries another name.
            let tag = rand::random::<u32>() ^ (NEXT.fetch_add(1, Ordering::Relaxed) as u32);
            let dir = parent.join(format!(".myc{tag:08x}"));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(Staging { dir }),
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(error) => return Err(error),
            }
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.dir.join("s"));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests;
