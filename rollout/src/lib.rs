//! Rollout of the migration, one service at a time: the four stages, the
//! per-service [`Plan`] kept in `rollout.toml`, the pure [`decide`] route
//! function, the [`gate`] that demands verify evidence before a stage
//! advances, the append-only [`audit`] log, and the [`guard`]'s rules that
//! roll a service back when its broker path regresses. [`Rollout`] ties them to
//! the files the settings name.
//!
//! It deliberately never moves messages and never reads the clock on its own:
//! callers pass `now`, so every decision can be replayed in a test.

pub mod audit;
pub mod gate;
pub mod guard;
mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use myc_config::Stage;
use myc_config::{GateSettings, ServiceSettings, Settings};
pub use plan::{Plan, Role, Route, ServiceStage, decide};

/// The one error type of the rollout crate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A gate (or a rule of the stage order) said no: exit 1.
    #[error("refused: {0}")]
    Refused(String),
    /// The plan file is not a plan.
    #[error("{path}: not a rollout plan: {1}", path = .0.display())]
    BadPlan(PathBuf, String),
    /// A line of the audit log is not an entry.
    #[error("{path}:{1}: not an audit entry: {2}", path = .0.display())]
    BadAudit(PathBuf, usize, String),
    /// A stage name that does not exist.
    #[error("{0:?} is not a stage (relay, dual_relay_primary, dual_broker_primary, broker)")]
    UnknownStage(String),
    /// A file could not be read or written.
    #[error("{path}: {1}", path = .0.display())]
    Io(PathBuf, String),
}

impl Error {
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Error {
        Error::Io(path.to_path_buf(), error.to_string())
    }
}

/// Parses a stage name.
///
/// # Errors
/// [`Error::UnknownStage`].
pub fn parse_stage(name: &str) -> Result<Stage, Error> {
    Stage::from_name(name).ok_or_else(|| Error::UnknownStage(name.to_owned()))
}

/// Who makes a change, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The user.
    pub user: String,
    /// The machine.
    pub host: String,
}

/// One service in a status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ServiceStatus {
    /// Its stage.
    pub stage: Stage,
    /// Its source id, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<u8>,
}

/// Every known service's stage (`myc rollout status`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The stage of unlisted services.
    pub default_stage: Stage,
    /// Services in the plan or the settings.
    pub services: BTreeMap<String, ServiceStatus>,
}

/// The rollout files and rules the settings name.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// The plan file.
    pub plan_file: PathBuf,
    /// The audit log.
    pub audit_log: PathBuf,
    /// Stage of services the plan does not list (when there is no plan yet).
    pub default_stage: Stage,
    /// The gate.
    pub gate: GateSettings,
    /// Known services (their source ids).
    pub services: BTreeMap<String, ServiceSettings>,
}

impl Rollout {
    /// The rollout of `settings`.
    pub fn from_settings(settings: &Settings) -> Rollout {
        Rollout {
            plan_file: settings.rollout.file.clone(),
            audit_log: settings.rollout.audit_log.clone(),
            default_stage: settings.rollout.default_stage,
            gate: settings.gate.clone(),
            services: settings.services.clone(),
        }
    }

    /// The current plan.
    ///
    /// # Errors
    /// An unreadable or malformed plan file.
    pub fn plan(&self) -> Result<Plan, Error> {
        Plan::read(&self.plan_file, self.default_stage)
    }

    /// Every service the plan or the settings know, with its stage.
    ///
    /// # Errors
    /// As [`Rollout::plan`].
    pub fn status(&self) -> Result<Status, Error> {
        let plan = self.plan()?;
        let mut services = BTreeMap::new();
        for name in plan.services.keys().chain(self.services.keys()) {
            let source = self.services.get(name).and_then(|service| service.source);
            services.insert(name.clone(), ServiceStatus { stage: plan.stage_of(name), source });
        }
        Ok(Status { default_stage: plan.default_stage, services })
    }

    /// Sets `service` to `stage`: an operator override, not gated, audited.
    ///
    /// # Errors
    /// The plan or the log cannot be read or written.
    pub fn set(
        &self,
        service: &str,
        stage: Stage,
        reason: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        self.change(service, "set", |_| Ok(stage), reason, false, None, actor, now)
    }

    /// Moves `service` one stage forward if `evidence` (a verify JSON
    /// report's bytes) passes the gate, or with `force` (recorded).
    ///
    /// # Errors
    /// [`Error::Refused`] with the gate's reason (also at the last stage),
    /// or a file error.
    #[allow(clippy::too_many_arguments, reason = "each is one fact of the audit entry")]
    pub fn advance(
        &self,
        service: &str,
        evidence: Option<&[u8]>,
        force: bool,
        reason: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        let evidence = evidence.map(gate::Evidence::from_json).transpose();
        let evidence = match evidence {
            Ok(evidence) => evidence,
            Err(why) if !force => return Err(Error::Refused(why)),
            Err(_) => None,
        };
        if !force {
            let Some(evidence) = &evidence else {
                return Err(Error::Refused(
                    "no evidence: give --evidence REPORT.json (a verify report for this service), or --force"
                        .to_owned(),
                ));
            };
            let source = self.services.get(service).and_then(|service| service.source);
            gate::check(evidence, &self.gate, source, now).map_err(Error::Refused)?;
        }
        let digest = evidence.map(|evidence| evidence.sha256);
        let next = |from: Stage| from.next().ok_or_else(|| Error::Refused(format!("{service} is already at broker")));
        self.change(service, "advance", next, reason, force, digest, actor, now)
    }

    /// Moves `service` back: one stage toward relay, or straight to `to`.
    /// Never gated.
    ///
    /// # Errors
    /// [`Error::Refused`] when `to` is ahead of the current stage; a file error.
    pub fn rollback(
        &self,
        service: &str,
        to: Option<Stage>,
        reason: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        let back = |from: Stage| match to {
            Some(to) if to > from => Err(Error::Refused(format!("{to} is ahead of {from}: roll back, not forward"))),
            Some(to) => Ok(to),
            None => Ok(from.previous().unwrap_or(Stage::Relay)),
        };
        self.change(service, "rollback", back, reason, false, None, actor, now)
    }

    /// The audit log, oldest first.
    ///
    /// # Errors
    /// An unreadable log.
    pub fn history(&self, service: Option<&str>) -> Result<Vec<audit::Entry>, Error> {
        audit::read(&self.audit_log, service)
    }

    #[allow(clippy::too_many_arguments, reason = "each is one fact of the audit entry")]
    fn change(
        &self,
        service: &str,
        action: &str,
        to: impl FnOnce(Stage) -> Result<Stage, Error>,
        reason: &str,
        forced: bool,
        evidence_sha256: Option<String>,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        let mut plan = self.plan()?;
        let from = plan.stage_of(service);
        let to = to(from)?;
        let previous = std::fs::read(&self.plan_file).ok();
        plan.services.insert(service.to_owned(), ServiceStage { stage: to });
        plan.write(&self.plan_file)?;
        let entry = audit::Entry {
            time: humantime::format_rfc3339_millis(now).to_string(),
            user: actor.user.clone(),
            host: actor.host.clone(),
            service: service.to_owned(),
            action: action.to_owned(),
            from: from.name().to_owned(),
            to: to.name().to_owned(),
            reason: reason.to_owned(),
            forced,
            evidence_sha256,
        };
        if let Err(error) = audit::append(&self.audit_log, &entry) {
            // No change without its audit entry: put the plan back as it was.
            let restored = match &previous {
                Some(bytes) => plan::write_atomically(&self.plan_file, bytes),
                None => std::fs::remove_file(&self.plan_file).map_err(|error| Error::io(&self.plan_file, &error)),
            };
            if let Err(restore) = restored {
                return Err(Error::Io(
                    self.plan_file.clone(),
                    format!("{error}; and restoring the plan failed: {restore}"),
                ));
            }
            return Err(error);
        }
        Ok(entry)
    }
}
