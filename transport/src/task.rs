//! Task ownership: a spawned task that ends when its owner is dropped, so a
//! client handle or a server aborted mid-way leaves nothing running.

/// Aborts the task when dropped.
#[derive(Debug)]
pub struct AbortOnDrop(pub tokio::task::JoinHandle<()>);

impl AbortOnDrop {
    /// Spawns `future` owned by the returned guard.
    pub fn spawn(future: impl Future<Output = ()> + Send + 'static) -> AbortOnDrop {
        AbortOnDrop(tokio::spawn(future))
    }

    /// Waits for the task to end by itself.
    ///
    /// # Errors
    /// When the task panicked or was aborted.
    pub async fn join(&mut self) -> Result<(), tokio::task::JoinError> {
        (&mut self.0).await
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A server running as a task of this process: its handle, a graceful stop
/// and a kill. Dropping it kills the server.
#[derive(Debug)]
pub struct Running<H> {
    handle: H,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: AbortOnDrop,
}

impl<H> Running<H> {
    /// Spawns a server: `serve` gets the future that completes when
    /// [`Running::stop`] is called and the callback that hands over its
    /// handle once it is listening; this returns when it is.
    ///
    /// # Panics
    /// When the server ends before handing over its handle (a bug in it).
    pub async fn spawn<F, S>(serve: S) -> Running<H>
    where
        H: Send + 'static,
        F: Future<Output = ()> + Send + 'static,
        S: FnOnce(std::pin::Pin<Box<dyn Future<Output = ()> + Send>>, Box<dyn FnOnce(H) + Send>) -> F,
    {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (started, handle) = tokio::sync::oneshot::channel();
        let shutdown = Box::pin(async move {
            let _ = stopped.await;
        });
        let on_start = Box::new(move |handle| {
            let _ = started.send(handle);
        });
        let task = AbortOnDrop::spawn(serve(shutdown, on_start));
        let handle = handle.await.unwrap_or_else(|_| unreachable!("a server hands over its handle before it serves"));
        Running { handle, stop: Some(stop), task }
    }

    /// The server's handle (its metrics).
    pub fn handle(&self) -> &H {
        &self.handle
    }

    /// Stops gracefully and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.join().await;
    }

    /// Ends the server at once: tasks aborted, nothing flushed (a crash, as
    /// far as clients can tell).
    pub async fn kill(mut self) {
        self.task.0.abort();
        let _ = self.task.join().await;
    }
}
