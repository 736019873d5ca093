//! Rollout of the migration, one service at a time: the four stages, the
//! per-service [`Plan`] kept in `rollout.toml`, the pure [`decide`] route
//! function, the [`gate`] that demands verify evidence before a stage
//! advances, the append-only [`audit`] log, and the [`guard`]'s rules that
//! roll a service back when its broker path regresses. [`Rollout`] ties them to
//! the files the settings name, one change at a time across processes
//! (a lock beside the plan), so that replaying the audit log always gives
//! the plan.
//!
//! It deliberately never moves messages and never reads the clock on its own:
//! callers pass `now`, so every decision can be replayed in a test.

pub mod audit;
pub mod gate;
pub mod guard;
mod lock;
mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub use myc_config::Stage;
use myc_config::{GateSettings, ServiceSettings, Settings};
pub use plan::{Plan, PlanFollower, Role, Route, ServiceStage, decide};

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
    /// The plan file is gone although a plan existed: not an empty plan.
    #[error("{path}: the rollout plan is missing: {1}", path = .0.display())]
    PlanMissing(PathBuf, String),
    /// A stage name that does not exist.
    #[error("{0:?} is not a stage (relay, dual_relay_primary, dual_broker_primary, broker)")]
    UnknownStage(String),
    /// A name that cannot be a service's (the reason says the rule).
    #[error("{0}")]
    BadServiceName(String),
    /// Advance or rollback of a service neither the plan nor the settings
    /// know: a typo never creates a service.
    #[error("no service {0:?}: it is neither in the rollout plan nor in [services] (`myc rollout status` lists them)")]
    UnknownService(String),
    /// A file could not be read or written.
    #[error("{path}: {1}", path = .0.display())]
    Io(PathBuf, String),
}

impl Error {
    pub(crate) fn io(path: &Path, error: &std::io::Error) -> Error {
        Error::Io(path.to_path_buf(), error.to_string())
    }
}

/// Checks a service name: `[a-z0-9][a-z0-9_-]{0,63}`.
///
/// # Errors
/// [`Error::BadServiceName`].
pub fn check_service_name(name: &str) -> Result<(), Error> {
    myc_config::check_service_name(name).map_err(Error::BadServiceName)
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

    /// The current plan. A missing plan file is an empty plan only while
    /// the audit log is empty too: once changes have been made, a missing
    /// plan was deleted, and acting on "every service at the default stage"
    /// would move services behind the operator's back.
    ///
    /// # Errors
    /// An unreadable or malformed plan file; [`Error::PlanMissing`].
    pub fn plan(&self) -> Result<Plan, Error> {
        // Shared: never between a change's audit entry and its plan (the
        // first change of all would look like a deleted plan).
        let _lock = lock::PlanLock::shared(&self.plan_file);
        self.plan_unlocked()
    }

    fn plan_unlocked(&self) -> Result<Plan, Error> {
        if let Some(plan) = Plan::read_existing(&self.plan_file)? {
            return Ok(plan);
        }
        match std::fs::metadata(&self.audit_log) {
            Ok(log) if log.len() > 0 => Err(Error::PlanMissing(
                self.plan_file.clone(),
                format!(
                    "the audit log {} records changes, so the plan existed and was deleted \
                     (restore it; only a plan that never existed means default_stage)",
                    self.audit_log.display()
                ),
            )),
            _ => Ok(Plan::new(self.default_stage)),
        }
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
    /// [`Error::BadServiceName`]; the plan or the log cannot be read or written.
    pub fn set(
        &self,
        service: &str,
        stage: Stage,
        reason: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        check_service_name(service)?;
        self.change(service, "set", false, |_, _| Ok((stage, None)), reason, false, actor, now)
    }

    /// Moves `service` one stage forward if `evidence` (a verify JSON
    /// report's bytes) passes the gate, or with `force` (recorded). The gate
    /// is judged under the plan lock, against the audit log as it is then,
    /// so two advances with one report cannot both pass.
    ///
    /// # Errors
    /// [`Error::Refused`] with the gate's reason (also at the last stage),
    /// [`Error::UnknownService`], [`Error::BadServiceName`], or a file error.
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
        check_service_name(service)?;
        let evidence = evidence.map(gate::Evidence::from_json).transpose();
        let evidence = match evidence {
            Ok(evidence) => evidence,
            Err(why) if !force => return Err(Error::Refused(why)),
            Err(_) => None,
        };
        let source = self.services.get(service).and_then(|service| service.source);
        let decide = |from: Stage, log: &audit::Log| {
            if !force {
                let Some(evidence) = &evidence else {
                    return Err(Error::Refused(
                        "no evidence: give --evidence REPORT.json (a verify report for this service), or --force"
                            .to_owned(),
                    ));
                };
                let facts = gate::AuditFacts::of(log, service);
                let who = gate::ServiceFacts { name: service, source };
                gate::check(evidence, &self.gate, who, &facts, now).map_err(Error::Refused)?;
            }
            let to = from.next().ok_or_else(|| Error::Refused(format!("{service} is already at broker")))?;
            Ok((to, evidence.as_ref().map(|evidence| evidence.sha256.clone())))
        };
        self.change(service, "advance", true, decide, reason, force, actor, now)
    }

    /// Moves `service` back: one stage toward relay, or straight to `to`.
    /// Never gated.
    ///
    /// # Errors
    /// [`Error::Refused`] when `to` is ahead of the current stage;
    /// [`Error::UnknownService`], [`Error::BadServiceName`]; a file error.
    pub fn rollback(
        &self,
        service: &str,
        to: Option<Stage>,
        reason: &str,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        check_service_name(service)?;
        let back = |from: Stage, _: &audit::Log| match to {
            Some(to) if to > from => Err(Error::Refused(format!("{to} is ahead of {from}: roll back, not forward"))),
            Some(to) => Ok((to, None)),
            None => Ok((from.previous().unwrap_or(Stage::Relay), None)),
        };
        self.change(service, "rollback", true, back, reason, false, actor, now)
    }

    /// The audit log, oldest first, with the lines that could not be read.
    ///
    /// # Errors
    /// An unreadable log, or a bad service name.
    pub fn history(&self, service: Option<&str>) -> Result<audit::Log, Error> {
        if let Some(service) = service {
            check_service_name(service)?;
        }
        audit::read(&self.audit_log, service)
    }

    /// One change, under the plan lock: read the plan, decide the new stage
    /// (`decide` sees the current stage and the audit log), append the audit
    /// entry, write the plan. An entry whose plan could not be written is
    /// taken back, so the log never records a change that did not happen.
    #[allow(clippy::too_many_arguments, reason = "each is one fact of the audit entry")]
    fn change(
        &self,
        service: &str,
        action: &str,
        must_exist: bool,
        decide: impl FnOnce(Stage, &audit::Log) -> Result<(Stage, Option<String>), Error>,
        reason: &str,
        forced: bool,
        actor: &Actor,
        now: SystemTime,
    ) -> Result<audit::Entry, Error> {
        let _lock = lock::PlanLock::acquire(&self.plan_file)?;
        let mut plan = self.plan_unlocked()?;
        if must_exist && !plan.services.contains_key(service) && !self.services.contains_key(service) {
            return Err(Error::UnknownService(service.to_owned()));
        }
        let log = audit::read(&self.audit_log, None)?;
        let from = plan.stage_of(service);
        let (to, evidence_sha256) = decide(from, &log)?;
        plan.services.insert(service.to_owned(), ServiceStage { stage: to });
        let entry = audit::Entry {
            time: humantime::format_rfc3339_micros(now).to_string(),
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
        let before = audit::append(&self.audit_log, &entry)?;
        if let Err(error) = plan.write(&self.plan_file) {
            // No audit entry without its change: take the entry back.
            if let Err(undo) = audit::truncate(&self.audit_log, before) {
                return Err(Error::Io(
                    self.plan_file.clone(),
                    format!("{error}; and taking the audit entry back failed: {undo}"),
                ));
            }
            return Err(error);
        }
        Ok(entry)
    }
}
