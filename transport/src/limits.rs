//! The open-file limit a server needs: every connection is a descriptor, so
//! a broker or relay that accepts thousands of clients raises its soft limit
//! to the hard one at start and says so when its connection limit cannot
//! fit under it.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors kept for everything but connections (listeners, log and
/// capture files, the metrics endpoint, the runtime).
pub const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft open-file limit to the hard limit; returns the soft
/// limit now in force (`None`: unlimited).
pub fn raise_open_file_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::debug!(%error, "cannot raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Raises the limit (see [`raise_open_file_limit`]) and warns when
/// `max_connections` (plus [`RESERVED_DESCRIPTORS`]) does not fit under it:
/// past that point accepts fail with "too many open files" instead of the
/// server's own limit answering. Returns the limit in force.
pub fn check_open_file_limit(what: &str, max_connections: usize) -> Option<u64> {
    let limit = raise_open_file_limit();
    let needed = max_connections as u64 + RESERVED_DESCRIPTORS;
    if let Some(limit) = limit.filter(|&limit| limit < needed) {
        tracing::warn!(
            limit,
            max_connections,
            "{what}: the open-file limit is under max_connections + {RESERVED_DESCRIPTORS}; raise it \
             (ulimit -n, or LimitNOFILE= in a systemd unit) or lower max_connections"
        );
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let limit = raise_open_file_limit();
        assert_eq!(limit, getrlimit(Resource::Nofile).maximum);
    }
}
