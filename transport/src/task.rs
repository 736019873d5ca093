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
