//! The plan: each service's stage, kept in `rollout.toml`, and the pure
//! route decision made from it.
//!
//! ```toml
//! default_stage = "relay"          # services not listed
//! [services.polygon_adapter]
//! stage = "dual_relay_primary"
//! ```

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use myc_config::Stage;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Every service's stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The stage of services not listed.
    #[serde(default)]
    pub default_stage: Stage,
    /// Listed services.
    #[serde(default)]
    pub services: BTreeMap<String, ServiceStage>,
}

/// One service's entry in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStage {
    /// Its stage.
    pub stage: Stage,
}

impl Plan {
    /// An empty plan: every service at `default_stage`.
    pub fn new(default_stage: Stage) -> Plan {
        Plan { default_stage, services: BTreeMap::new() }
    }

    /// The stage of `service`.
    pub fn stage_of(&self, service: &str) -> Stage {
        self.services.get(service).map_or(self.default_stage, |entry| entry.stage)
    }

    /// Reads the plan at `path`; a missing file is an empty plan at
    /// `default_stage`. Only for a plan that has never existed: callers that
    /// can know better use [`Plan::read_existing`] (a follower that has read
    /// it before, a change that finds an audit log).
    ///
    /// # Errors
    /// An unreadable file, an empty one, or one that is not a plan.
    pub fn read(path: &Path, default_stage: Stage) -> Result<Plan, Error> {
        Ok(Plan::read_existing(path)?.unwrap_or_else(|| Plan::new(default_stage)))
    }

    /// Reads the plan at `path`, `None` when there is no file. An empty
    /// file is refused: it is far more often an edit caught half-written
    /// than a wish to send every service back to the default stage.
    ///
    /// # Errors
    /// An unreadable file, an empty one, or one that is not a plan.
    pub fn read_existing(path: &Path) -> Result<Option<Plan>, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => {
                Err(Error::BadPlan(path.to_path_buf(), "the file is empty (an edit in progress?)".to_owned()))
            }
            Ok(text) => Plan::parse(&text).map(Some).map_err(|why| Error::BadPlan(path.to_path_buf(), why)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(Error::io(path, &error)),
        }
    }

    /// Parses a plan from TOML.
    ///
    /// # Errors
    /// The reason, naming the key (or the service whose name breaks the
    /// service-name rule).
    pub fn parse(text: &str) -> Result<Plan, String> {
        let plan: Plan = toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())?;
        // A name no command accepts cannot be in a plan either: it would reach
        // pages, URLs and metric labels from a hand edit.
        for name in plan.services.keys() {
            myc_config::check_service_name(name).map_err(|why| format!("services.{name:?}: {why}"))?;
        }
        Ok(plan)
    }

    /// Writes the plan atomically: a temporary file beside it with a name
    /// no other change uses, flushed to disk, renamed over the old one, and
    /// the directory flushed so the rename itself survives a crash. Readers
    /// see the old plan or the new, never a mix.
    ///
    /// # Errors
    /// When the directory cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text =
            toml::to_string_pretty(self).map_err(|error| Error::BadPlan(path.to_path_buf(), error.to_string()))?;
        write_atomically(path, text.as_bytes())
    }
}

/// Keeps reading one plan file for a follower (a producer, the relay's
/// broker link): a plan that disappears after it has been read is an
/// error, not a fresh start at `default_stage`, so deleting the file by
/// mistake never moves a live service.
#[derive(Debug)]
pub struct PlanFollower {
    /// The plan file.
    path: PathBuf,
    /// The stage of every service while no plan has ever been read.
    default_stage: Stage,
    /// Set once a plan has been read; never cleared.
    seen: AtomicBool,
}

impl PlanFollower {
    /// A follower of the plan at `path`.
    pub fn new(path: PathBuf, default_stage: Stage) -> PlanFollower {
        PlanFollower { path, default_stage, seen: AtomicBool::new(false) }
    }

    /// The plan now.
    ///
    /// # Errors
    /// As [`Plan::read_existing`], and [`Error::PlanMissing`] when the file
    /// is gone after a plan was read from it.
    pub fn read(&self) -> Result<Plan, Error> {
        match Plan::read_existing(&self.path)? {
            Some(plan) => {
                self.seen.store(true, Ordering::Relaxed);
                Ok(plan)
            }
            None if self.seen.load(Ordering::Relaxed) => Err(Error::PlanMissing(
                self.path.clone(),
                "the file disappeared after it was read; keeping the last stages".to_owned(),
            )),
            None => Ok(Plan::new(self.default_stage)),
        }
    }
}

/// Tells apart the temporary files of changes made by one process.
static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` through a temporary file of its own, `fsync`,
/// a rename and an `fsync` of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    // Unique to this change: the process, a counter within it, and the time
    // (a pid reused after a crash does not meet a stale file's name).
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_nanos());
    let scratch = dir.join(format!(
        ".{name}.{}.{}.{nanos}.tmp",
        std::process::id(),
        SCRATCH_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&scratch)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&scratch, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    written.map_err(|error| {
        let _ = std::fs::remove_file(&scratch);
        Error::io(path, &error)
    })
}

/// Which part a path plays in a stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Awaited; its result is the producer's result.
    Primary,
    /// Best effort: never blocks or fails the primary.
    Shadow,
}

/// Where a service's messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The relay's role, if it carries the messages.
    pub relay: Option<Role>,
    /// The broker's role, if it carries the messages.
    pub broker: Option<Role>,
}

impl Route {
    /// The route of `stage` (the stage table in docs/rollout.md).
    pub const fn of(stage: Stage) -> Route {
        use Role::{Primary, Shadow};
        match stage {
            Stage::Relay => Route { relay: Some(Primary), broker: None },
            Stage::DualRelayPrimary => Route { relay: Some(Primary), broker: Some(Shadow) },
            Stage::DualBrokerPrimary => Route { relay: Some(Shadow), broker: Some(Primary) },
            Stage::Broker => Route { relay: None, broker: Some(Primary) },
        }
    }
}

/// The route of `service` under `plan`.
pub fn decide(plan: &Plan, service: &str) -> Route {
    Route::of(plan.stage_of(service))
}
