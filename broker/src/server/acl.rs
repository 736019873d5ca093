//! Per-client permissions: which topics a client (by the name it gives in
//! HELLO) may publish and subscribe to, and what a HELLO must prove to claim
//! a name ([`Identity`]: a token, the uid of a Unix-socket peer). A refused
//! PUBLISH or SUBSCRIBE is answered with ERROR `unauthorized` and the
//! connection stays; a refused claim closes it. Rules are exact topic names
//! or `*`; a client with no rule gets the default rule.
//!
//! It deliberately does no I/O: the peer's uid comes in as a value.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;

/// Topics one may use: all of them, or these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topics {
    /// Every topic.
    All,
    /// Only these.
    Only(HashSet<Bytes>),
}

impl Topics {
    /// From rule strings: `*` means all.
    pub fn from_rules<S: AsRef<str>>(rules: &[S]) -> Topics {
        if rules.iter().any(|rule| rule.as_ref() == "*") {
            Topics::All
        } else {
            Topics::Only(rules.iter().map(|rule| Bytes::copy_from_slice(rule.as_ref().as_bytes())).collect())
        }
    }

    fn allows(&self, topic: &[u8]) -> bool {
        match self {
            Topics::All => true,
            Topics::Only(topics) => topics.contains(topic),
        }
    }
}

/// One client's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    /// Topics it may publish to.
    pub publish: Topics,
    /// Topics it may subscribe to.
    pub subscribe: Topics,
}

impl Permissions {
    /// Whether it may publish to `topic`.
    pub fn may_publish(&self, topic: &[u8]) -> bool {
        self.publish.allows(topic)
    }

    /// Whether it may subscribe to `topic`.
    pub fn may_subscribe(&self, topic: &[u8]) -> bool {
        self.subscribe.allows(topic)
    }
}

/// What a HELLO must prove to claim a client name. Both parts, when set,
/// must hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    /// The token the HELLO must carry (compared in constant time); it
    /// stands in for the broker-wide token for this name.
    pub token: Option<String>,
    /// The uids a peer may run as; when not empty, only a Unix-socket peer
    /// (whose uid the kernel reports) can claim the name.
    pub uids: Vec<u32>,
}

/// The broker's access list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// Client name → permissions.
    pub clients: HashMap<String, Permissions>,
    /// For clients not listed.
    pub default: Permissions,
    /// Client name → what claiming it takes; a name not here can be
    /// claimed by any client (as before identities existed).
    pub identities: HashMap<String, Identity>,
}

impl Default for Permissions {
    fn default() -> Self {
        Permissions { publish: Topics::All, subscribe: Topics::All }
    }
}

/// Why a HELLO may not claim the name it gives (sent in ERROR
/// `unauthorized`; it names what is missing, never the expected value).
pub type Refusal = String;

impl Acl {
    /// The permissions of `client_name`.
    pub fn permissions(&self, client_name: &str) -> Permissions {
        self.clients.get(client_name).unwrap_or(&self.default).clone()
    }

    /// What claiming `client_name` takes, if anything.
    pub fn identity(&self, client_name: &str) -> Option<&Identity> {
        self.identities.get(client_name)
    }

    /// Whether a HELLO naming `client_name` and carrying `token`, from a
    /// peer running as `peer_uid` (`None`: not a Unix socket), may claim
    /// that name; its permissions if so.
    ///
    /// # Errors
    /// The reason, when the name asks for a token or uid the HELLO lacks.
    pub fn admit(&self, client_name: &str, token: &str, peer_uid: Option<u32>) -> Result<Permissions, Refusal> {
        if let Some(identity) = self.identity(client_name) {
            identity.check(client_name, token, peer_uid)?;
        }
        Ok(self.permissions(client_name))
    }
}

impl Identity {
    /// Whether `token` and `peer_uid` prove this identity.
    ///
    /// # Errors
    /// What is missing or wrong.
    pub fn check(&self, client_name: &str, token: &str, peer_uid: Option<u32>) -> Result<(), Refusal> {
        if let Some(expected) = &self.token
            && !tokens_match(expected, token)
        {
            return Err(format!("client {client_name:?} needs its token, and the HELLO's is missing or wrong"));
        }
        if !self.uids.is_empty() {
            match peer_uid {
                None => {
                    return Err(format!("client {client_name:?} may only connect over a Unix socket"));
                }
                Some(uid) if !self.uids.contains(&uid) => {
                    return Err(format!("client {client_name:?} may not connect as uid {uid}"));
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Compares tokens in time independent of where they differ (a length
/// difference is not hidden; the length of a token is no secret worth the
/// cost).
pub fn tokens_match(expected: &str, given: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()))
}
