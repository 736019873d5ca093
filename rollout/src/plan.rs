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
use std::path::Path;

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
    /// `default_stage` (a fresh deployment has no plan yet). An empty file
    /// is refused: it is far more often an edit caught half-written than a
    /// wish to send every service back to the default stage.
    ///
    /// # Errors
    /// An unreadable file, an empty one, or one that is not a plan.
    pub fn read(path: &Path, default_stage: Stage) -> Result<Plan, Error> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().is_empty() => {
                Err(Error::BadPlan(path.to_path_buf(), "the file is empty (an edit in progress?)".to_owned()))
            }
            Ok(text) => Plan::parse(&text).map_err(|why| Error::BadPlan(path.to_path_buf(), why)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Plan::new(default_stage)),
            Err(error) => Err(Error::io(path, &error)),
        }
    }

    /// Parses a plan from TOML.
    ///
    /// # Errors
    /// The reason, naming the key.
    pub fn parse(text: &str) -> Result<Plan, String> {
        toml::from_str(text).map_err(|error| error.to_string().trim_end().to_owned())
    }

    /// Writes the plan atomically: a temporary file beside it, flushed to
    /// disk, renamed over the old one. Readers see the old plan or the new.
    ///
    /// # Errors
    /// When the directory cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let text =
            toml::to_string_pretty(self).map_err(|error| Error::BadPlan(path.to_path_buf(), error.to_string()))?;
        write_atomically(path, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temporary file and a rename.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().filter(|dir| !dir.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    let scratch = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&scratch)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&scratch, path)
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
    /// The route of `stage` (DESIGN.md's stage table).
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
