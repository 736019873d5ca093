//! The socket file as a careless operator or a hostile local user would
//! meet it: a path that is already something else, a directory someone
//! else controls, a `stat` loop watching the socket appear, and another
//! process taking the path over before shutdown.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::{Endpoint, Error, Listener, SocketOptions};

async fn bind(path: &Path, options: SocketOptions) -> Result<Listener, Error> {
    Listener::bind(&Endpoint::Unix(path.to_owned()), options).await
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[tokio::test]
async fn a_regular_file_a_directory_a_symlink_and_a_fifo_are_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("important.txt");
    std::fs::write(&file, "keep me").unwrap();
    let directory = dir.path().join("a-directory");
    std::fs::create_dir(&directory).unwrap();
    std::fs::write(directory.join("inside"), "me too").unwrap();
    let symlink = dir.path().join("a-symlink");
    std::os::unix::fs::symlink(&file, &symlink).unwrap();
    // A symlink to a stale socket is still a symlink: not ours to replace.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let symlink_to_socket = dir.path().join("socket-link");
    std::os::unix::fs::symlink(&stale, &symlink_to_socket).unwrap();
    let fifo = dir.path().join("a-fifo");
    rustix::fs::mkfifoat(rustix::fs::CWD, &fifo, rustix::fs::Mode::from_raw_mode(0o600)).unwrap();

    for (path, kind) in [
        (&file, "a regular file"),
        (&directory, "a directory"),
        (&symlink, "a symlink"),
        (&symlink_to_socket, "a symlink"),
        (&fifo, "a FIFO"),
    ] {
        let before = std::fs::symlink_metadata(path).unwrap();
        let refused = bind(path, SocketOptions::default()).await.unwrap_err();
        assert!(matches!(refused, Error::NotASocket { .. }), "{}: {refused:?}", path.display());
        let message = refused.to_string();
        assert!(message.contains(&path.display().to_string()) && message.contains(kind), "{message}");
        let after = std::fs::symlink_metadata(path).unwrap();
        assert_eq!((before.ino(), before.mode(), before.len()), (after.ino(), after.mode(), after.len()));
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep me");
    assert_eq!(std::fs::read_to_string(directory.join("inside")).unwrap(), "me too");
    // No staging directory was left behind by any refusal.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".myc"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn a_missing_parent_is_created_0750_and_an_unsafe_one_refused() {
    let dir = tempfile::tempdir().unwrap();
    let nested = dir.path().join("run/mycelium");
    let listener = bind(&nested.join("broker.sock"), SocketOptions::default()).await.unwrap();
    assert_eq!(std::fs::metadata(&nested).unwrap().permissions().mode() & 0o7777, 0o750);
    drop(listener);

    let check = |name: &str, mode: u32| {
        let open = dir.path().join(name);
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(mode)).unwrap();
        open.join("broker.sock")
    };
    for (name, mode) in [("world", 0o777), ("group", 0o770), ("other", 0o702)] {
        let path = check(name, mode);
        let refused = bind(&path, SocketOptions::default()).await.unwrap_err();
        assert!(matches!(refused, Error::UnsafeDirectory { .. }), "{name}: {refused:?}");
        assert!(refused.to_string().contains(&dir.path().join(name).display().to_string()), "{refused}");
        assert!(!path.exists());
    }
    // The sticky bit (as on /tmp) keeps others from replacing our files.
    let sticky = check("sticky", 0o1777);
    assert!(bind(&sticky, SocketOptions::default()).await.is_ok());

    let real = dir.path().join("real");
    std::fs::create_dir(&real).unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let refused = bind(&link.join("broker.sock"), SocketOptions::default()).await.unwrap_err();
    assert!(refused.to_string().contains("symlink"), "{refused}");
    assert_eq!(std::fs::read_dir(&real).unwrap().count(), 0);
}

#[tokio::test]
async fn a_parent_owned_by_another_uid_is_refused() {
    // Only root can hand a directory to another uid; CI runs as root.
    if !is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let refused = bind(&theirs.join("broker.sock"), SocketOptions::default()).await.unwrap_err();
    let message = refused.to_string();
    assert!(matches!(refused, Error::UnsafeDirectory { .. }) && message.contains("uid 65534"), "{message}");
    // Root's own directories are fine (the socket lives in /run or /tmp).
    std::os::unix::fs::chown(&theirs, Some(0), Some(0)).unwrap();
    assert!(bind(&theirs.join("broker.sock"), SocketOptions::default()).await.is_ok());
}

#[tokio::test]
async fn the_socket_is_never_seen_with_a_wider_mode_than_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.sock");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (path, stop) = (path.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut seen, mut wider) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                if let Ok(metadata) = std::fs::symlink_metadata(&path) {
                    seen += 1;
                    let mode = metadata.permissions().mode() & 0o777;
                    if mode & !0o600 != 0 {
                        wider.push(mode);
                    }
                }
            }
            (seen, wider)
        })
    };
    let options = SocketOptions { mode: 0o600, group: None };
    for _ in 0..300 {
        let listener = bind(&path, options).await.unwrap();
        std::thread::yield_now();
        drop(listener);
    }
    stop.store(true, Ordering::Relaxed);
    let (seen, wider) = watcher.join().unwrap();
    let wider: Vec<String> = wider.iter().map(|mode| format!("{mode:04o}")).collect();
    assert!(wider.is_empty(), "modes wider than 0600 seen: {wider:?}");
    // The watcher did look while the socket existed (not a vacuous pass).
    assert!(seen > 0);
}

#[tokio::test]
async fn a_socket_replaced_by_another_process_is_not_removed_at_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broker.sock");
    let ours = bind(&path, SocketOptions::default()).await.unwrap();
    // Another server (an operator's mistake) takes the path over.
    std::fs::remove_file(&path).unwrap();
    let theirs = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let their_inode = std::fs::symlink_metadata(&path).unwrap().ino();
    drop(ours);
    assert_eq!(std::fs::symlink_metadata(&path).unwrap().ino(), their_inode);
    assert!(std::os::unix::net::UnixStream::connect(&path).is_ok());
    drop(theirs);

    // Our own socket, untouched, is removed.
    let path = dir.path().join("ours.sock");
    drop(bind(&path, SocketOptions::default()).await.unwrap());
    assert!(!path.exists());
}
