//! The broker's one integration-test binary: a real broker in-process on a
//! Unix socket in a temp dir, real clients, and raw sockets for the error
//! cases.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod errors;
mod flood;
mod frame_limit;
mod identity;
mod pubsub;
mod refused;
mod restart;
mod slow;

use std::path::Path;
use std::time::Duration;

use myc_broker::{Client, ClientOptions, Settings};
use myc_transport::{Endpoint, Listener, SocketOptions};
use tokio::sync::oneshot;

/// A broker running on `path` until the handle is dropped or stopped.
pub(crate) struct TestBroker {
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pub(crate) endpoint: Endpoint,
    pub(crate) handle: myc_broker::ServerHandle,
}

impl TestBroker {
    pub(crate) async fn start(path: &Path, settings: Settings) -> TestBroker {
        let endpoint = Endpoint::Unix(path.to_owned());
        let listener = bind_when_free(&endpoint).await;
        let (stop, stopped) = oneshot::channel::<()>();
        let (started, handle) = oneshot::channel();
        let task = tokio::spawn(myc_broker::serve(
            vec![listener],
            settings,
            async move {
                let _ = stopped.await;
            },
            move |handle| {
                let _ = started.send(handle);
            },
        ));
        let handle = handle.await.unwrap();
        TestBroker { stop: Some(stop), task, endpoint, handle }
    }

    /// Stops gracefully and waits.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = (&mut self.task).await;
    }

    /// Kills at once: tasks aborted, nothing flushed (a crash, as far as
    /// clients can tell).
    pub(crate) async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}

pub(crate) fn fast_settings() -> Settings {
    Settings { restart_grace: Duration::ZERO, ..Settings::default() }
}

pub(crate) fn client(endpoint: &Endpoint) -> Client {
    let mut options = ClientOptions::new(endpoint.clone());
    options.reconnect.backoff_base = Duration::from_millis(5);
    options.reconnect.backoff_max = Duration::from_millis(50);
    Client::start(options)
}
/// Binds `endpoint`, waiting (up to 5 s) while a server killed a moment ago
/// still holds it.
async fn bind_when_free(endpoint: &Endpoint) -> Listener {
    Listener::bind_when_free(endpoint, SocketOptions::default(), std::time::Duration::from_secs(5)).await.unwrap()
}
