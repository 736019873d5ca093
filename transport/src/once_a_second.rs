//! A log line's rate limit: a warning about something that can repeat at
//! line rate (a refused connection, a reader found slow, a failed accept)
//! is logged at most once a second and counted the rest of the time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Says yes at most once a second.
#[derive(Debug, Default)]
pub struct OnceASecond {
    last: Mutex<Option<Instant>>,
}

impl OnceASecond {
    /// Whether a second has passed since it last said yes (always the first
    /// time); saying yes starts the next second.
    pub fn ready(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            return false;
        }
        *last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yes_the_first_time_then_not_within_the_second() {
        let limit = OnceASecond::default();
        assert!(limit.ready());
        assert!(!limit.ready());
        assert!(!limit.ready());
    }
}
