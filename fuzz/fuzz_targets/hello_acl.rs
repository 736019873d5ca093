//! Fuzz target: arbitrary bytes as the first frame of a connection and the
//! peer's uid, through the broker's sans-IO HELLO check against an ACL with
//! token- and uid-bound names. Must never panic, and must never admit a
//! HELLO that claims a bound name without its token or from another uid.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use myc_broker::server::acl::{Acl, Identity};
use myc_broker::server::hello::check_hello;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Some((uid_bytes, body)) = rest.split_at_checked(4) else {
        return;
    };
    let uid = u32::from_le_bytes([uid_bytes[0], uid_bytes[1], uid_bytes[2], uid_bytes[3]]);
    let peer_uid = (selector & 1 == 1).then_some(uid % 4);
    let identities = [
        ("t".to_owned(), Identity { token: Some("secret".to_owned()), uids: Vec::new() }),
        ("u".to_owned(), Identity { token: None, uids: vec![1, 2] }),
        ("b".to_owned(), Identity { token: Some("secret".to_owned()), uids: vec![3] }),
    ];
    let settings = myc_broker::Settings {
        token: (selector & 2 == 2).then(|| "broker".to_owned()),
        acl: Some(Acl { identities: identities.into(), ..Acl::default() }),
        ..myc_broker::Settings::default()
    };
    let Ok(op) = myc_broker::ClientOp::decode(Bytes::copy_from_slice(body)) else {
        return;
    };
    if check_hello(&settings, &op, peer_uid).is_ok() {
        let myc_broker::ClientOp::Hello { client_name, token, .. } = &op else {
            panic!("admitted a first frame that is not HELLO: {op:?}");
        };
        match client_name.as_str() {
            "t" => assert_eq!(token, "secret"),
            "u" => assert!(matches!(peer_uid, Some(1 | 2))),
            "b" => assert!(token == "secret" && peer_uid == Some(3)),
            _ => {}
        }
    }
});
