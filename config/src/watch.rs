//! Hot reload: a file is watched (notify, on its directory, so editors that
//! replace the file by renaming are seen), changes are debounced, the file
//! is re-loaded and validated, and good settings are published on a
//! `tokio::sync::watch` channel. A bad edit is logged with its reason (once
//! while the problem stays the same) and counted, and the last good settings
//! stay.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher as _};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, watch};

use crate::Error;

/// How long a burst of changes is gathered before the file is re-read.
pub const DEBOUNCE: Duration = Duration::from_millis(100);

/// A value loaded from a file and kept current.
#[derive(Debug)]
pub struct Watched<T> {
    current: watch::Receiver<Arc<T>>,
    counts: Arc<ReloadCounts>,
    _watcher: notify::RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
}

/// What the reloads did (Prometheus counters, cheap atomics underneath).
#[derive(Debug, Default)]
pub struct ReloadCounts {
    /// Changes applied.
    pub applied: Counter,
    /// Edits refused (the last good value kept).
    pub rejected: Counter,
}

impl ReloadCounts {
    /// Registers `myc_reload_applied` and `myc_reload_rejected`, labelled
    /// with `file` (for example `settings` or `rollout`).
    pub fn register(&self, registry: &mut prometheus_client::registry::Registry, file: &str) {
        let registry = registry.sub_registry_with_label(("file".into(), file.to_owned().into()));
        registry.register("myc_reload_applied", "File changes applied", self.applied.clone());
        registry.register(
            "myc_reload_rejected",
            "File edits refused; the last good settings kept",
            self.rejected.clone(),
        );
    }
}

impl<T> Drop for Watched<T> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<T: Send + Sync + PartialEq + 'static> Watched<T> {
    /// Loads `path` with `load` and keeps watching it. Must be called inside
    /// a tokio runtime.
    ///
    /// # Errors
    /// The first load's error (there are no last good settings to keep), or
    /// [`Error::Watch`] when the file's directory cannot be watched.
    pub fn start<F>(path: &Path, load: F) -> Result<Watched<T>, Error>
    where
        F: Fn() -> Result<T, Error> + Send + 'static,
    {
        let first = load()?;
        let (publish, current) = watch::channel(Arc::new(first));
        let (changed, mut changes) = mpsc::unbounded_channel();
        let file_name = path.file_name().map(ToOwned::to_owned);
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                Ok(event) => event.paths.iter().any(|changed| changed.file_name() == file_name.as_deref()),
                Err(_) => true,
            };
            if relevant {
                let _ = changed.send(());
            }
        })
        .map_err(|error| Error::Watch(path.to_path_buf(), error.to_string()))?;
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|error| Error::Watch(path.to_path_buf(), error.to_string()))?;
        let counts = Arc::new(ReloadCounts::default());
        let task_counts = Arc::clone(&counts);
        let shown = path.display().to_string();
        let task = tokio::spawn(async move {
            // The last refusal logged: one burst of writes is often seen as
            // two changes, and the same problem is worth one WARN, not two.
            let mut last_refusal: Option<String> = None;
            while changes.recv().await.is_some() {
                // Debounce: gather the burst for DEBOUNCE after its first
                // event, then re-read once. (Not "wait for quiet": a file
                // edited without pause would never be re-read.)
                tokio::time::sleep(DEBOUNCE).await;
                while changes.try_recv().is_ok() {}
                match load() {
                    Ok(value) => {
                        last_refusal = None;
                        if **publish.borrow() != value {
                            task_counts.applied.inc();
                            tracing::info!(file = %shown, "settings reloaded");
                            publish.send_replace(Arc::new(value));
                        }
                    }
                    Err(error) => {
                        task_counts.rejected.inc();
                        let text = error.to_string();
                        if last_refusal.as_deref() == Some(text.as_str()) {
                            tracing::debug!(file = %shown, %error, "edit still refused");
                        } else {
                            tracing::warn!(file = %shown, %error, "edit refused; keeping the last good settings");
                        }
                        last_refusal = Some(text);
                    }
                }
            }
        });
        Ok(Watched { current, counts, _watcher: watcher, task })
    }

    /// The current value.
    pub fn current(&self) -> Arc<T> {
        Arc::clone(&self.current.borrow())
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<T>> {
        self.current.clone()
    }

    /// Applied and refused reloads so far.
    pub fn counts(&self) -> &Arc<ReloadCounts> {
        &self.counts
    }
}
