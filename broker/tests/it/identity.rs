//! Claiming a client name: a name bound to a token or to uids cannot be
//! claimed without them (ERROR `unauthorized`, the connection closed, and
//! nothing it sent published), and can be with them. The other-uid case
//! runs a child process as uid 65534: this test binary again, which plays
//! the raw client when `MYC_TEST_CLAIM_SOCKET` is set.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::time::Duration;

use bytes::Bytes;
use myc_broker::protocol::{ClientOp, ErrorCode, ServerOp};
use myc_broker::server::acl::{Acl, Identity, Permissions, Topics};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;

use super::errors::{decode_all, exchange, frame, read_through_pong};
use super::{TestBroker, fast_settings};

fn hello(name: &str, token: &str) -> Vec<u8> {
    frame(&ClientOp::Hello { version: 1, flags: 0, client_name: name.to_owned(), token: token.to_owned() })
}

fn publish(payload: &'static [u8]) -> Vec<u8> {
    frame(&ClientOp::Publish { topic: Bytes::from_static(b"market_data"), payload: Bytes::from_static(payload) })
}

/// An ACL where only `trusted_feed` may publish; it is bound to `identity`.
fn acl_binding(name: &str, identity: Identity) -> Acl {
    let feed = Permissions { publish: Topics::from_rules(&["market_data"]), subscribe: Topics::from_rules(&["*"]) };
    Acl {
        clients: [(name.to_owned(), feed)].into(),
        default: Permissions { publish: Topics::from_rules::<&str>(&[]), subscribe: Topics::from_rules(&["*"]) },
        identities: [(name.to_owned(), identity)].into(),
    }
}

fn is_unauthorized_close(ops: &[ServerOp]) -> bool {
    matches!(ops, [ServerOp::Error { code: ErrorCode::Unauthorized, .. }])
}

/// A raw subscriber to `market_data`, subscribed.
async fn subscriber(path: &std::path::Path, token: &str) -> UnixStream {
    let mut stream = UnixStream::connect(path).await.unwrap();
    let mut bytes = hello("watcher", token);
    bytes.extend(frame(&ClientOp::Subscribe {
        sub_id: 1,
        topic: Bytes::from_static(b"market_data"),
        group: Bytes::new(),
    }));
    bytes.extend(frame(&ClientOp::Ping { nonce: 1 }));
    stream.write_all(&bytes).await.unwrap();
    read_through_pong(&mut stream, 1).await;
    stream
}

fn delivered(ops: &[ServerOp]) -> Vec<Bytes> {
    ops.iter()
        .filter_map(|op| match op {
            ServerOp::Deliver { payload, .. } => Some(payload.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_bound_to_a_token_needs_that_token_and_nothing_else_gets_published() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let identity = Identity { token: Some("s3cret".to_owned()), uids: Vec::new() };
    // The broker-wide token is another one: the name's own token replaces it.
    let settings = myc_broker::Settings {
        acl: Some(acl_binding("trusted_feed", identity)),
        token: Some("broker-wide".to_owned()),
        ..fast_settings()
    };
    let broker = TestBroker::start(&path, settings).await;
    let mut watcher = subscriber(&path, "broker-wide").await;

    for (token, payload) in [("", &b"no token"[..]), ("s3creT", b"wrong token"), ("broker-wide", b"broker token")] {
        let mut bytes = hello("trusted_feed", token);
        bytes.extend(frame(&ClientOp::Publish {
            topic: Bytes::from_static(b"market_data"),
            payload: Bytes::copy_from_slice(payload),
        }));
        let ops = exchange(&path, &bytes).await;
        assert!(is_unauthorized_close(&ops), "token {token:?}: {ops:?}");
    }
    let mut feed = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello("trusted_feed", "s3cret");
    bytes.extend(publish(b"right token"));
    bytes.extend(frame(&ClientOp::Ping { nonce: 2 }));
    feed.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut feed, 2).await;
    assert!(matches!(ops.first(), Some(ServerOp::Welcome { .. })), "{ops:?}");

    // The watcher sees the one publish that came with the right token.
    watcher.write_all(&frame(&ClientOp::Ping { nonce: 9 })).await.unwrap();
    let got = read_through_pong(&mut watcher, 9).await;
    assert_eq!(delivered(&got), [Bytes::from_static(b"right token")], "{got:?}");
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_bound_to_uids_is_refused_from_another_uid_and_over_tcp() {
    let our_uid = rustix::process::geteuid().as_raw();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.sock");
    let mut acl = acl_binding("ops_tool", Identity { token: None, uids: vec![our_uid] });
    acl.identities.insert("someone_else".to_owned(), Identity { token: None, uids: vec![our_uid.wrapping_add(1)] });
    let settings = myc_broker::Settings { acl: Some(acl), ..fast_settings() };
    let broker = TestBroker::start(&path, settings.clone()).await;
    let mut watcher = subscriber(&path, "").await;

    let mut bytes = hello("someone_else", "");
    bytes.extend(publish(b"from the wrong uid"));
    let ops = exchange(&path, &bytes).await;
    assert!(is_unauthorized_close(&ops), "{ops:?}");
    if let [ServerOp::Error { message, .. }] = ops.as_slice() {
        assert!(message.contains(&format!("uid {our_uid}")), "{message}");
    }
    let mut ours = UnixStream::connect(&path).await.unwrap();
    let mut bytes = hello("ops_tool", "");
    bytes.extend(publish(b"from our uid"));
    bytes.extend(frame(&ClientOp::Ping { nonce: 2 }));
    ours.write_all(&bytes).await.unwrap();
    let ops = read_through_pong(&mut ours, 2).await;
    assert!(matches!(ops.first(), Some(ServerOp::Welcome { .. })), "{ops:?}");

    // Over TCP nothing vouches for the peer's uid: refused even for ours.
    let tcp = myc_transport::Listener::bind(
        &myc_transport::Endpoint::parse("tcp:127.0.0.1:0").unwrap(),
        myc_transport::SocketOptions::default(),
    )
    .await
    .unwrap();
    let tcp_endpoint = tcp.local_endpoint();
    let tcp_broker = myc_broker::spawn(vec![tcp], settings).await;
    let myc_transport::Endpoint::Tcp(address) = &tcp_endpoint else { unreachable!() };
    let mut stream = tokio::net::TcpStream::connect(address.as_str()).await.unwrap();
    let mut bytes = hello("ops_tool", "");
    bytes.extend(publish(b"over tcp"));
    stream.write_all(&bytes).await.unwrap();
    let mut received = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut received))
        .await
        .unwrap()
        .unwrap();
    let ops = decode_all(&received);
    assert!(is_unauthorized_close(&ops), "{ops:?}");
    drop(tcp_broker);

    watcher.write_all(&frame(&ClientOp::Ping { nonce: 9 })).await.unwrap();
    let got = read_through_pong(&mut watcher, 9).await;
    assert_eq!(delivered(&got), [Bytes::from_static(b"from our uid")], "{got:?}");
    broker.stop().await;
}

/// The child's side: connect, send HELLO naming `MYC_TEST_CLAIM_NAME` and
/// one PUBLISH, print the hex of everything the broker sends until it
/// closes (or 5 s pass).
fn claim_as_child(socket: &str) {
    let name = std::env::var("MYC_TEST_CLAIM_NAME").unwrap();
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bytes = hello(&name, "");
    bytes.extend(publish(b"from uid 65534"));
    bytes.extend(frame(&ClientOp::Ping { nonce: 3 }));
    stream.write_all(&bytes).unwrap();
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut pong = vec![0x85];
    pong.extend_from_slice(&3u64.to_le_bytes());
    while let Ok(n) = stream.read(&mut chunk) {
        if n == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..n]);
        if received.ends_with(&pong) {
            break;
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "CLAIM-RESULT {}", hex::encode(&received)).unwrap();
}

/// Runs this test, as uid and gid 65534, in child mode; returns what the
/// broker sent it.
fn claim_from_uid_65534(socket: &std::path::Path, name: &str) -> Vec<ServerOp> {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["identity::a_name_bound_to_uids_is_refused_from_a_child_running_as_another_uid", "--exact"])
        .args(["--nocapture", "--test-threads=1"])
        .env("MYC_TEST_CLAIM_SOCKET", socket)
        .env("MYC_TEST_CLAIM_NAME", name)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The harness prints the test's name on the same line first.
    let Some((_, rest)) = stdout.split_once("CLAIM-RESULT ") else {
        panic!("the child printed no result: {output:?}");
    };
    let result = rest.split_whitespace().next().unwrap_or_default();
    decode_all(&hex::decode(result).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_bound_to_uids_is_refused_from_a_child_running_as_another_uid() {
    if let Ok(socket) = std::env::var("MYC_TEST_CLAIM_SOCKET") {
        claim_as_child(&socket);
        return;
    }
    // Only root can start a child as another uid; CI runs as root.
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = dir.path().join("b.sock");
    let mut acl = acl_binding("root_only", Identity { token: None, uids: vec![0] });
    acl.identities.insert("nobody_tool".to_owned(), Identity { token: None, uids: vec![65534] });
    let broker = TestBroker::start(&path, myc_broker::Settings { acl: Some(acl), ..fast_settings() }).await;
    // Let the child's group reach the socket.
    std::os::unix::fs::chown(&path, None, Some(65534)).unwrap();
    let mut watcher = subscriber(&path, "").await;

    let refused = tokio::task::spawn_blocking({
        let path = path.clone();
        move || claim_from_uid_65534(&path, "root_only")
    })
    .await
    .unwrap();
    assert!(is_unauthorized_close(&refused), "{refused:?}");
    if let [ServerOp::Error { message, .. }] = refused.as_slice() {
        assert!(message.contains("uid 65534"), "{message}");
    }
    // The same child under a name bound to its uid is welcome: the refusal
    // above was the uid rule, not a socket it could not reach.
    let welcomed = tokio::task::spawn_blocking({
        let path = path.clone();
        move || claim_from_uid_65534(&path, "nobody_tool")
    })
    .await
    .unwrap();
    assert!(matches!(welcomed.first(), Some(ServerOp::Welcome { .. })), "{welcomed:?}");

    watcher.write_all(&frame(&ClientOp::Ping { nonce: 9 })).await.unwrap();
    let got = read_through_pong(&mut watcher, 9).await;
    // nobody_tool has the default rule (no publishing): nothing delivered.
    assert!(delivered(&got).is_empty(), "{got:?}");
    broker.stop().await;
}
