//! Who may talk to the console: the `Host` a request names (DNS
//! rebinding: a web page on a name that resolves to 127.0.0.1 must not reach
//! it), the `Origin` of a POST (another site's form or script), and the
//! token (a bearer header, or the cookie `/?token=` sets) with the identity
//! it proves (a named token's name, which the audit log records).
//!
//! It deliberately knows nothing of rollout: these are pure checks on
//! request headers, table-tested, applied by the router before any handler.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};

/// The cookie that carries the token after `/?token=…`.
pub(crate) const TOKEN_COOKIE: &str = "myc_console_token";

/// The hosts the console answers to.
#[derive(Debug, Clone)]
pub(crate) struct Hosts {
    /// The address the console listens on.
    listen: SocketAddr,
    /// `[console] allowed_hosts`, lower-cased: a name, or `name:port`.
    allowed: Vec<String>,
}

impl Hosts {
    pub(crate) fn new(listen: SocketAddr, allowed: &[String]) -> Hosts {
        Hosts { listen, allowed: allowed.iter().map(|host| host.to_ascii_lowercase()).collect() }
    }

    /// Whether `host` (a `Host` header's value) names this console: its
    /// listen address, a loopback name or address, or an allowed host.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        if host.is_empty() {
            return false;
        }
        if self.allowed.contains(&host) {
            return true;
        }
        let Some((name, port)) = split_host(&host) else { return false };
        if port.is_some_and(|port| port != self.listen.port()) {
            return false;
        }
        if self.allowed.iter().any(|allowed| *allowed == name) {
            return true;
        }
        match name.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => ip.is_loopback() || ip == self.listen.ip(),
            Err(_) => name == "localhost" || name.ends_with(".localhost"),
        }
    }
}

/// `name[:port]` or `[v6][:port]` → (name, port); `None` when the port is
/// not a number.
fn split_host(host: &str) -> Option<(&str, Option<u16>)> {
    let (name, port) = if host.starts_with('[') {
        match host.rsplit_once("]:") {
            Some((name, port)) => (&host[..=name.len()], Some(port)),
            None => (host, None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        }
    };
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    Some((name, port))
}

/// Whether a POST's `Origin`, when present, is the console itself: its
/// scheme-less part must equal the request's `Host`.
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else { return true };
    let host = headers.get(header::HOST).and_then(|host| host.to_str().ok()).unwrap_or_default();
    origin
        .to_str()
        .ok()
        .and_then(|origin| origin.strip_prefix("http://"))
        .is_some_and(|origin| !host.is_empty() && origin.eq_ignore_ascii_case(host))
}

/// The tokens the console accepts: the unnamed one (`--token` or
/// `[console] token`) and the named ones (`[console.tokens]`). Empty: the
/// console asks for none.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tokens {
    /// (name, secret); the name is `None` for the unnamed token. Secrets
    /// are non-empty (empty ones are left out here and refused by
    /// `config check`).
    entries: Vec<(Option<String>, String)>,
}

/// Who a request authenticated as: `Some(name)` with a named token, `None`
/// with the unnamed token or when the console asks for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Identity(pub(crate) Option<String>);

impl Tokens {
    pub(crate) fn new(unnamed: Option<String>, named: &BTreeMap<String, String>) -> Tokens {
        let entries = unnamed
            .into_iter()
            .map(|secret| (None, secret))
            .chain(named.iter().map(|(name, secret)| (Some(name.clone()), secret.clone())))
            .filter(|(_, secret)| !secret.is_empty())
            .collect();
        Tokens { entries }
    }

    /// Whether no token is asked for.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity `given` proves, if it is one of the tokens. Every
    /// entry is compared, each in constant time, so the time taken says
    /// nothing about which one (nearly) matched.
    pub(crate) fn identify(&self, given: &str) -> Option<Identity> {
        let mut found = None;
        for (name, secret) in &self.entries {
            if token_matches(secret, given) && found.is_none() {
                found = Some(Identity(name.clone()));
            }
        }
        found
    }

    /// The identity the request's token proves (bearer header or cookie).
    pub(crate) fn of_request(&self, headers: &HeaderMap) -> Option<Identity> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        let cookies = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|cookies| cookies.split(';'))
            .filter_map(|cookie| cookie.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='));
        bearer.into_iter().chain(cookies).find_map(|given| self.identify(given))
    }
}

/// Constant-time comparison of a token.
pub(crate) fn token_matches(expected: &str, given: &str) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(expected.as_bytes(), given.as_bytes()))
}

/// `query` without its `token` parameter (kept in order, as written).
pub(crate) fn without_token(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some("token"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(host: &str, expect: bool) {
        let hosts = Hosts::new("127.0.0.1:8080".parse().unwrap(), &["Console.Example.net".to_owned()]);
        assert_eq!(hosts.allows(host), expect, "{host}");
    }

    #[test]
    fn only_the_console_itself_loopback_and_allowed_hosts_are_answered() {
        check("127.0.0.1:8080", true);
        check("localhost:8080", true);
        check("LOCALHOST", true);
        check("[::1]:8080", true);
        check("127.0.0.2:8080", true);
        check("console.example.net", true);
        check("console.example.net:8080", true);
        check("evil.example.com:8080", false);
        check("evil.example.com", false);
        check("127.0.0.1.nip.io:8080", false);
        check("localhost:9999", false);
        check("localhost:port", false);
        check("", false);
        let wildcard = Hosts::new("10.0.0.5:8080".parse().unwrap(), &[]);
        assert!(wildcard.allows("10.0.0.5:8080"));
        assert!(!wildcard.allows("10.0.0.6:8080"));
    }

    #[test]
    fn a_post_from_another_origin_is_told_apart() {
        let headers = |origin: Option<&str>| {
            let mut headers = HeaderMap::new();
            headers.insert(header::HOST, "127.0.0.1:8080".parse().unwrap());
            if let Some(origin) = origin {
                headers.insert(header::ORIGIN, origin.parse().unwrap());
            }
            headers
        };
        assert!(same_origin(&headers(None)));
        assert!(same_origin(&headers(Some("http://127.0.0.1:8080"))));
        assert!(!same_origin(&headers(Some("http://evil.example.com"))));
        assert!(!same_origin(&headers(Some("null"))));
        assert!(!same_origin(&headers(Some("https://127.0.0.1:8080"))));
    }

    #[test]
    fn the_token_leaves_the_query_and_nothing_else_does() {
        assert_eq!(without_token("token=s3cret"), "");
        assert_eq!(without_token("a=1&token=s3cret&b=2"), "a=1&b=2");
        assert_eq!(without_token("tokens=1"), "tokens=1");
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "other=1; myc_console_token=s3cret".parse().unwrap());
        let tokens = |secret: &str| Tokens::new(Some(secret.to_owned()), &BTreeMap::new());
        assert_eq!(tokens("s3cret").of_request(&headers), Some(Identity(None)));
        assert_eq!(tokens("s3cre").of_request(&headers), None);
    }

    #[test]
    fn a_named_token_names_who_holds_it() {
        let named = BTreeMap::from([("alice".to_owned(), "a-secret".to_owned()), ("bob".to_owned(), String::new())]);
        let tokens = Tokens::new(Some("shared".to_owned()), &named);
        assert_eq!(tokens.identify("a-secret"), Some(Identity(Some("alice".to_owned()))));
        assert_eq!(tokens.identify("shared"), Some(Identity(None)));
        assert_eq!(tokens.identify(""), None, "an empty token opens nothing");
        assert_eq!(tokens.identify("a-secre"), None);
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer a-secret".parse().unwrap());
        assert_eq!(tokens.of_request(&headers), Some(Identity(Some("alice".to_owned()))));
        assert!(Tokens::new(None, &BTreeMap::from([("bob".to_owned(), String::new())])).is_empty());
    }
}
