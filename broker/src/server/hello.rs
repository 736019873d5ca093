//! The HELLO check: the first frame of a connection, judged on its own —
//! protocol version, the broker token, and whether the name it claims is
//! one this peer may claim ([`acl::Identity`]). Sans-IO: the frame and the
//! peer's uid in, the WELCOME to send (and the connection's permissions) or
//! the ERROR out, so tests and the fuzzer call it without sockets.
//!
//! It deliberately does not read, write or close anything.

use bytes::BytesMut;

use super::Settings;
use super::acl::{self, Permissions};
use crate::protocol::{self, ClientOp, ErrorCode, ServerOp};

/// A HELLO accepted: what to answer, and under which permissions the
/// connection runs.
#[derive(Debug)]
pub struct Admitted {
    /// The encoded WELCOME frame.
    pub welcome: BytesMut,
    /// The claimed name's permissions (`None`: the broker has no ACL and
    /// allows everything).
    pub permissions: Option<Permissions>,
}

/// Checks the first frame of a connection from a peer running as
/// `peer_uid` (`None`: not a Unix socket).
///
/// # Errors
/// The ERROR code and message to send before closing: `hello_required`,
/// `unsupported_version` or `unauthorized`.
pub fn check_hello(settings: &Settings, op: &ClientOp, peer_uid: Option<u32>) -> Result<Admitted, (ErrorCode, String)> {
    let ClientOp::Hello { version, token, client_name, .. } = op else {
        return Err((ErrorCode::HelloRequired, "the first frame must be HELLO".to_owned()));
    };
    if *version != protocol::VERSION {
        return Err((ErrorCode::UnsupportedVersion, format!("version {version} is not supported (1 is)")));
    }
    let identity = settings.acl.as_ref().and_then(|acl| acl.identity(client_name));
    // A name with its own token is proven by that token; everyone else
    // needs the broker-wide one (if set).
    let own_token = identity.is_some_and(|identity| identity.token.is_some());
    if !own_token
        && let Some(expected) = &settings.token
        && !acl::tokens_match(expected, token)
    {
        return Err((ErrorCode::Unauthorized, "wrong or missing token".to_owned()));
    }
    let permissions = match &settings.acl {
        Some(acl) => {
            Some(acl.admit(client_name, token, peer_uid).map_err(|refusal| (ErrorCode::Unauthorized, refusal))?)
        }
        None => None,
    };
    let max_frame = u32::try_from(settings.max_frame).unwrap_or(u32::MAX);
    let mut welcome = BytesMut::new();
    ServerOp::Welcome { version: protocol::VERSION, server_id: settings.server_id.clone(), max_frame }
        .encode(&mut welcome)
        .map_err(|error| (ErrorCode::Protocol, error.to_string()))?;
    Ok(Admitted { welcome, permissions })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

    use super::*;
    use crate::server::acl::{Acl, Identity};

    fn settings() -> Settings {
        let identities = [
            ("token_only".to_owned(), Identity { token: Some("t0k".to_owned()), uids: Vec::new() }),
            ("uid_only".to_owned(), Identity { token: None, uids: vec![1001, 1002] }),
            ("both".to_owned(), Identity { token: Some("t0k".to_owned()), uids: vec![1001] }),
        ];
        Settings {
            token: Some("broker".to_owned()),
            acl: Some(Acl { identities: identities.into(), ..Acl::default() }),
            ..Settings::default()
        }
    }

    /// `(name, token, peer uid)` → accepted, or the start of the refusal.
    fn check(name: &str, token: &str, peer_uid: Option<u32>, expect: Result<(), &str>) {
        let hello = ClientOp::Hello { version: 1, flags: 0, client_name: name.to_owned(), token: token.to_owned() };
        let got = check_hello(&settings(), &hello, peer_uid);
        match (got, expect) {
            (Ok(admitted), Ok(())) => assert!(admitted.permissions.is_some()),
            (Err((code, message)), Err(start)) => {
                assert_eq!(code, ErrorCode::Unauthorized, "{name} {token:?} {peer_uid:?}");
                assert!(message.starts_with(start), "{name} {token:?} {peer_uid:?}: {message}");
            }
            (got, expect) => panic!("{name} {token:?} {peer_uid:?}: got {got:?}, expected {expect:?}"),
        }
    }

    #[test]
    fn a_claimed_name_needs_what_its_identity_asks_for() {
        let wrong = "wrong or missing token";
        check("anyone", "broker", None, Ok(()));
        check("anyone", "", Some(1001), Err(wrong));
        check("anyone", "t0k", Some(1001), Err(wrong));
        check("token_only", "t0k", None, Ok(()));
        check("token_only", "broker", None, Err("client \"token_only\" needs its token"));
        check("token_only", "", Some(1001), Err("client \"token_only\" needs its token"));
        check("token_only", "t0k\0", None, Err("client \"token_only\" needs its token"));
        check("uid_only", "broker", Some(1002), Ok(()));
        check("uid_only", "broker", Some(1003), Err("client \"uid_only\" may not connect as uid 1003"));
        check("uid_only", "broker", None, Err("client \"uid_only\" may only connect over a Unix socket"));
        check("uid_only", "", Some(1001), Err(wrong));
        check("both", "t0k", Some(1001), Ok(()));
        check("both", "t0k", Some(1002), Err("client \"both\" may not connect as uid 1002"));
        check("both", "broker", Some(1001), Err("client \"both\" needs its token"));
    }

    #[test]
    fn only_a_hello_of_version_1_is_welcome() {
        let ping = ClientOp::Ping { nonce: 1 };
        assert_eq!(check_hello(&settings(), &ping, None).unwrap_err().0, ErrorCode::HelloRequired);
        let hello = ClientOp::Hello { version: 2, flags: 0, client_name: "x".to_owned(), token: "broker".to_owned() };
        assert_eq!(check_hello(&settings(), &hello, None).unwrap_err().0, ErrorCode::UnsupportedVersion);
    }
}
