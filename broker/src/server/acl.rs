//! Per-client permissions: which topics a client (by the name it gives in
//! HELLO) may publish and subscribe to. A refused PUBLISH or SUBSCRIBE is
//! answered with ERROR `unauthorized` and the connection stays. Rules are
//! exact topic names or `*`; a client with no rule gets the default rule.

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

/// The broker's access list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acl {
    /// Client name → permissions.
    pub clients: HashMap<String, Permissions>,
    /// For clients not listed.
    pub default: Permissions,
}

impl Acl {
    /// The permissions of `client_name`.
    pub fn permissions(&self, client_name: &str) -> Permissions {
        self.clients.get(client_name).unwrap_or(&self.default).clone()
    }
}
