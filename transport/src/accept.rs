//! The accept loop every server shares: accept until told to stop, run each
//! connection as a task of one set, then wait for them to finish.
//!
//! Dropping the future (a server aborted) aborts every connection with it,
//! so no half of a connection outlives its server. It deliberately knows
//! nothing of what a connection does.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::endpoint::{Listener, Stream};

/// Accepts on `listener` and runs `serve(stream)` per connection until
/// `stopped` turns true; then drops the listener (removing its socket file),
/// calls `on_stop` (to tell the connections to finish) and waits for them.
pub async fn accept_until<Fut>(
    listener: Listener,
    mut stopped: watch::Receiver<bool>,
    serve: impl Fn(Stream) -> Fut,
    on_stop: impl FnOnce(),
) where
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut connections = JoinSet::new();
    let warnings = crate::OnceASecond::default();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    connections.spawn(serve(stream));
                }
                Err(error) => {
                    // Often transient (too many open files): back off briefly,
                    // and log at most once a second.
                    if warnings.ready() {
                        tracing::warn!(%error, "accept failed (logged at most once a second)");
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    on_stop();
    while connections.join_next().await.is_some() {}
}
