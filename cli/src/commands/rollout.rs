//! `myc rollout`: `status`, `set`, `advance` (gated on a verify report),
//! `rollback` (never gated), `history` and `guard` (the loop lives in
//! `commands::guard`), on the plan and audit log the
//! settings name (`--file` overrides the plan). A refused gate prints its
//! reason and exits 1; a bad or unknown service name, or a plan that is
//! missing or unparsable after changes were made, is an error (exit 2).

use std::io::Write;
use std::time::SystemTime;

use anyhow::Context;
use myc_rollout::{Actor, Rollout, audit};

use super::Outcome;
use crate::args::{Format, GlobalArgs, RolloutArgs, RolloutCommand};

pub(crate) fn run(args: &RolloutArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let mut rollout = Rollout::from_settings(&settings);
    if let Some(file) = &args.file {
        rollout.plan_file.clone_from(file);
    }
    let mut out = std::io::stdout().lock();
    let actor = actor();
    let now = SystemTime::now();
    let changed = match &args.command {
        RolloutCommand::Status => {
            let status = rollout.status()?;
            match global.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&status)?)?,
                Format::Human => {
                    writeln!(out, "plan {} (default stage {})", rollout.plan_file.display(), status.default_stage)?;
                    writeln!(out, "{:<24} {:<20} source", "service", "stage")?;
                    for (name, service) in &status.services {
                        let source = service.source.map_or_else(|| "-".to_owned(), |source| source.to_string());
                        writeln!(out, "{name:<24} {:<20} {source}", service.stage.name())?;
                    }
                }
            }
            return Ok(Outcome::Success);
        }
        RolloutCommand::History { service } => {
            let log = rollout.history(service.as_deref())?;
            match global.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&log.entries)?)?,
                Format::Human => {
                    writeln!(out, "plan {} (audit log {})", rollout.plan_file.display(), rollout.audit_log.display())?;
                    for entry in &log.entries {
                        writeln!(out, "{}", describe(entry))?;
                    }
                }
            }
            // A corrupt line hides only itself; the operator is told which.
            for unreadable in &log.unreadable {
                tracing::warn!(
                    log = %rollout.audit_log.display(),
                    line = unreadable.line,
                    error = %unreadable.error,
                    "an audit log line is not an entry; skipped"
                );
            }
            return Ok(Outcome::Success);
        }
        RolloutCommand::Set { service, stage, reason } => {
            let stage = myc_rollout::parse_stage(stage)?;
            rollout.set(service, stage, reason.as_deref().unwrap_or(""), &actor, now)
        }
        RolloutCommand::Advance { service, evidence, force, reason } => {
            let report = evidence
                .as_ref()
                .map(|path| std::fs::read(path).with_context(|| format!("cannot read the evidence {}", path.display())))
                .transpose()?;
            rollout.advance(service, report.as_deref(), *force, reason.as_deref().unwrap_or(""), &actor, now)
        }
        RolloutCommand::Guard { once, dry_run, metrics } => {
            drop(out);
            return super::guard::run(&settings, rollout, *once, *dry_run, metrics.as_deref(), global.format);
        }
        RolloutCommand::Rollback { service, reason, to } => {
            let to = to.as_deref().map(myc_rollout::parse_stage).transpose()?;
            rollout.rollback(service, to, reason, &actor, now)
        }
    };
    match changed {
        Ok(entry) => {
            match global.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string(&entry)?)?,
                Format::Human => {
                    writeln!(out, "plan {}", rollout.plan_file.display())?;
                    writeln!(out, "{}", describe(&entry))?;
                }
            }
            Ok(Outcome::Success)
        }
        Err(myc_rollout::Error::Refused(reason)) => {
            #[allow(clippy::print_stderr, reason = "a refusal is the command's answer")]
            {
                eprintln!("refused: {reason}");
            }
            Ok(Outcome::Negative)
        }
        Err(error) => Err(error.into()),
    }
}

fn describe(entry: &audit::Entry) -> String {
    let forced = if entry.forced { " (forced)" } else { "" };
    let reason = if entry.reason.is_empty() { String::new() } else { format!(": {}", entry.reason) };
    // The evidence digest, shortened as git shortens commits: enough to
    // find the report (`sha256sum reports/*.json`), and the full value is in
    // the JSON history.
    let evidence = entry
        .evidence_sha256
        .as_deref()
        .map_or_else(String::new, |digest| format!(" [evidence {}]", digest.get(..12).unwrap_or(digest)));
    format!(
        "{} {}@{} {} {} {} -> {}{forced}{evidence}{reason}",
        entry.time, entry.user, entry.host, entry.action, entry.service, entry.from, entry.to
    )
}

/// Who is making the change: `$USER` (or `$LOGNAME`) on this host; where
/// neither is set (a service, a container, cron), the name `/etc/passwd`
/// gives the process's uid, or `uid N`, rather than "unknown".
fn actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(user_of_this_process);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "unknown".to_owned());
    Actor { user, host }
}

/// The passwd name of this process's uid, with the uid: `alice (uid 1001)`.
fn user_of_this_process() -> String {
    let uid = rustix::process::getuid().as_raw();
    let name = std::fs::read_to_string("/etc/passwd").ok().and_then(|passwd| {
        passwd.lines().find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            (fields.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_owned())
        })
    });
    match name {
        Some(name) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}
