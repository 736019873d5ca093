//! The gate in front of every `advance`: a verify JSON report (the shape is
//! in `docs/capture.md`) must show that the relay and the broker carried
//! this service's messages alike, in the current stage, for long enough,
//! recently — and it may advance the service only once.
//!
//! [`check`] is a pure function of the report, the gate settings, the
//! service, what the audit log says about it, and `now`: it never reads a
//! file or the clock, so every refusal can be replayed in a table test.
//! It deliberately judges only the service's own source: other sources in
//! the same report count neither for nor against it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use myc_config::GateSettings;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::audit;

/// How far in the future a report's `generated_at` may be (clocks of two
/// machines disagree a little; a report from next week is forged or broken).
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(60);

/// What a verify report says, as far as a gate cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `identical`, `differs` or `empty`, as the report says.
    pub verdict: String,
    /// The reference stream: `relay:…` for evidence the gate accepts.
    pub reference: StreamFacts,
    /// The candidate stream: `broker:…` or `nats:…`.
    pub candidate: StreamFacts,
    /// The report's totals.
    pub totals: Counts,
    /// Repeated keys, reference and candidate (absent in a report: 0).
    pub duplicates: [u64; 2],
    /// Keys out of order, reference and candidate (absent: 0).
    pub reordered: [u64; 2],
    /// The four counts per Protocol V2 source id.
    pub per_source: BTreeMap<u8, Counts>,
    /// First arrival of a compared message.
    pub window_start: SystemTime,
    /// Last arrival of a compared message.
    pub window_end: SystemTime,
    /// When the report was made.
    pub generated_at: SystemTime,
    /// SHA-256 of the report's bytes, hex (recorded in the audit log).
    pub sha256: String,
}

/// One side of a report.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct StreamFacts {
    /// `relay:…`, `broker:…`, `nats:…` or another tap's name.
    pub name: String,
    /// Messages read from it.
    pub messages: u64,
}

/// The join's four counts, totals or per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Counts {
    /// Keys on both sides with the same bytes.
    pub matched: u64,
    /// Keys on both sides with different bytes.
    pub mismatched: u64,
    /// Keys only in the reference.
    pub missing: u64,
    /// Keys only in the candidate.
    pub extra: u64,
}

impl Counts {
    fn differences(self) -> u64 {
        self.mismatched + self.missing + self.extra
    }
}

/// What the audit log says about the service being advanced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditFacts {
    /// When its stage last changed (its newest entry), if ever.
    pub last_change: Option<SystemTime>,
    /// Digests of the reports that already moved it.
    pub used_evidence: BTreeSet<String>,
    /// Line numbers of the log that could not be read (any service's):
    /// one of them could be this service's last change.
    pub unreadable_lines: Vec<usize>,
}

impl AuditFacts {
    /// The facts about `service` in `log` (read for every service).
    pub fn of(log: &audit::Log, service: &str) -> AuditFacts {
        let mine = log.entries.iter().filter(|entry| entry.service == service);
        let mut facts = AuditFacts {
            unreadable_lines: log.unreadable.iter().map(|line| line.line).collect(),
            ..AuditFacts::default()
        };
        for entry in mine {
            // `audit::read` lists an entry whose time does not parse as
            // unreadable, so every entry here has one.
            if let Ok(time) = humantime::parse_rfc3339_weak(&entry.time) {
                facts.last_change = Some(facts.last_change.map_or(time, |last| last.max(time)));
            }
            if let Some(digest) = &entry.evidence_sha256 {
                facts.used_evidence.insert(digest.clone());
            }
        }
        facts
    }
}

/// The service being advanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceFacts<'a> {
    /// Its name.
    pub name: &'a str,
    /// Its Protocol V2 source id (`[services.NAME] source`), if configured.
    pub source: Option<u8>,
}

#[derive(Deserialize)]
struct ReportFields {
    generated_at: String,
    reference: StreamFacts,
    candidate: StreamFacts,
    matched: u64,
    mismatched: u64,
    missing: u64,
    extra: u64,
    #[serde(default)]
    duplicates: Option<PerSide>,
    #[serde(default)]
    reordered: Option<PerSide>,
    #[serde(default)]
    per_source: Option<BTreeMap<String, Counts>>,
    #[serde(default)]
    window: Option<WindowFields>,
    verdict: String,
}

#[derive(Deserialize)]
struct PerSide {
    reference: u64,
    candidate: u64,
}

#[derive(Deserialize)]
struct WindowFields {
    start: String,
    end: String,
}

fn time(field: &str, text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text).map_err(|error| format!("{field} {text:?} is not an RFC 3339 time: {error}"))
}

impl Evidence {
    /// Reads a verify JSON report.
    ///
    /// # Errors
    /// Why the bytes are not a verify report the gate can judge: not JSON,
    /// a field missing (`per_source` and `window` included: a report from
    /// before they existed cannot say which source it is about or when it
    /// was gathered), a time that does not parse.
    pub fn from_json(bytes: &[u8]) -> Result<Evidence, String> {
        let fields: ReportFields =
            serde_json::from_slice(bytes).map_err(|error| format!("not a verify JSON report: {error}"))?;
        let Some(per_source_fields) = fields.per_source else {
            return Err("the report has no per_source counts, so it cannot show this service's source alone: \
                        make it again with a current myc verify"
                .to_owned());
        };
        let Some(window) = fields.window else {
            return Err("the report has no window, so it cannot show when its messages arrived: \
                        make it again with a current myc verify"
                .to_owned());
        };
        let mut per_source = BTreeMap::new();
        for (key, counts) in per_source_fields {
            let source: u8 = key.parse().map_err(|_| format!("per_source key {key:?} is not a source id (1-255)"))?;
            per_source.insert(source, counts);
        }
        let per_side = |side: Option<PerSide>| side.map_or([0, 0], |side| [side.reference, side.candidate]);
        Ok(Evidence {
            verdict: fields.verdict,
            reference: fields.reference,
            candidate: fields.candidate,
            totals: Counts {
                matched: fields.matched,
                mismatched: fields.mismatched,
                missing: fields.missing,
                extra: fields.extra,
            },
            duplicates: per_side(fields.duplicates),
            reordered: per_side(fields.reordered),
            per_source,
            window_start: time("window.start", &window.start)?,
            window_end: time("window.end", &window.end)?,
            generated_at: time("generated_at", &fields.generated_at)?,
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }
}

/// Checks `evidence` for advancing `service`, given what the audit log
/// says about it, at `now`.
///
/// # Errors
/// The first reason the gate refuses, in words an operator can act on.
pub fn check(
    evidence: &Evidence,
    gate: &GateSettings,
    service: ServiceFacts<'_>,
    audit: &AuditFacts,
    now: SystemTime,
) -> Result<(), String> {
    check_streams(evidence)?;
    check_consistent(evidence)?;
    check_source(evidence, gate, service)?;
    check_window(evidence, gate, service, audit)?;
    check_time(evidence, gate, now)
}

fn check_streams(evidence: &Evidence) -> Result<(), String> {
    let (reference, candidate) = (&evidence.reference.name, &evidence.candidate.name);
    if !reference.starts_with("relay:") {
        return Err(format!(
            "the report's reference is {reference:?}: the gate needs the relay's stream (a relay: interface) as reference"
        ));
    }
    if !(candidate.starts_with("broker:") || candidate.starts_with("nats:")) {
        return Err(format!(
            "the report's candidate is {candidate:?}: the gate needs the broker's stream (a broker: or nats: interface) as candidate"
        ));
    }
    Ok(())
}

/// A report whose counts do not add up was edited or broken; its verdict
/// cannot be believed in either direction.
fn check_consistent(evidence: &Evidence) -> Result<(), String> {
    let totals = evidence.totals;
    let summed = evidence.per_source.values().fold(Counts::default(), |sum, counts| Counts {
        matched: sum.matched + counts.matched,
        mismatched: sum.mismatched + counts.mismatched,
        missing: sum.missing + counts.missing,
        extra: sum.extra + counts.extra,
    });
    if summed != totals {
        return Err(format!(
            "the report is inconsistent: per_source adds up to matched {}, mismatched {}, missing {}, extra {}, \
             but its totals say matched {}, mismatched {}, missing {}, extra {} (was it edited?)",
            summed.matched,
            summed.mismatched,
            summed.missing,
            summed.extra,
            totals.matched,
            totals.mismatched,
            totals.missing,
            totals.extra
        ));
    }
    let clean = totals.differences() == 0 && evidence.duplicates == [0, 0] && evidence.reordered == [0, 0];
    let consistent = match evidence.verdict.as_str() {
        "identical" => clean && totals.matched >= 1,
        "empty" => evidence.reference.messages == 0 && evidence.candidate.messages == 0 && totals.matched == 0,
        // Differences the report does not count (unreadable messages) can
        // make a report with clean counts differ; never the other way round.
        "differs" => true,
        other => return Err(format!("the report's verdict {other:?} is not identical, differs or empty")),
    };
    if consistent {
        Ok(())
    } else {
        Err(format!(
            "the report is inconsistent: its verdict is {:?} but it counts matched {}, mismatched {}, missing {}, \
             extra {}, duplicates {:?}, reordered {:?}, messages {} and {} (was it edited?)",
            evidence.verdict,
            totals.matched,
            totals.mismatched,
            totals.missing,
            totals.extra,
            evidence.duplicates,
            evidence.reordered,
            evidence.reference.messages,
            evidence.candidate.messages
        ))
    }
}

fn check_source(evidence: &Evidence, gate: &GateSettings, service: ServiceFacts<'_>) -> Result<(), String> {
    let name = service.name;
    if evidence.verdict == "empty" {
        return Err("the report compared two empty streams (verdict empty): nothing was verified".to_owned());
    }
    let Some(source) = service.source else {
        return Err(format!(
            "{name} has no source id ([services.{name}] source = N in the settings), \
             so the gate cannot tell which of the report's messages are its own"
        ));
    };
    let Some(counts) = evidence.per_source.get(&source) else {
        let seen: Vec<u8> = evidence.per_source.keys().copied().collect();
        return Err(format!(
            "the report has no messages from {name}'s source {source} (it counts sources {seen:?}): \
             verify {name}'s stream (--service {name})"
        ));
    };
    if counts.differences() > 0 {
        return Err(format!(
            "{name}'s source {source} differs in the report: mismatched {}, missing {}, extra {}",
            counts.mismatched, counts.missing, counts.extra
        ));
    }
    if evidence.verdict == "differs" && evidence.per_source.values().all(|counts| counts.differences() == 0) {
        // Every source is clean, so the difference is one the report does not
        // attribute to a source (duplicates, reordering, unreadable messages).
        return Err(format!(
            "the report's verdict is \"differs\" for a reason it does not count per source \
             (duplicates {:?}, reordered {:?}, or unreadable messages): it cannot clear {name}",
            evidence.duplicates, evidence.reordered
        ));
    }
    if counts.matched < gate.min_messages {
        return Err(format!(
            "{name}'s source {source} matched {} messages in the report; the gate needs at least {} (gate.min_messages)",
            counts.matched, gate.min_messages
        ));
    }
    Ok(())
}

fn check_window(
    evidence: &Evidence,
    gate: &GateSettings,
    service: ServiceFacts<'_>,
    audit: &AuditFacts,
) -> Result<(), String> {
    let name = service.name;
    if let Some(line) = audit.unreadable_lines.first() {
        return Err(format!(
            "the audit log has {} unreadable line(s) (first: line {line}), so the gate cannot tell when {name} \
             last changed stage or which reports already moved it: repair the log, or --force",
            audit.unreadable_lines.len()
        ));
    }
    // Before the window rule, which a reused report also breaks: this is
    // the reason the operator needs to read.
    if audit.used_evidence.contains(&evidence.sha256) {
        return Err(format!(
            "this report already advanced {name} once (evidence_sha256 {} is in the audit log): \
             verify again in the current stage",
            evidence.sha256
        ));
    }
    if let Some(changed) = audit.last_change
        && evidence.window_start <= changed
    {
        return Err(format!(
            "the report's window starts at {}, not after {name}'s last stage change at {}: \
             the evidence was not gathered in the current stage; verify again",
            humantime::format_rfc3339_micros(evidence.window_start),
            humantime::format_rfc3339_micros(changed)
        ));
    }
    let length = evidence.window_end.duration_since(evidence.window_start).unwrap_or(Duration::ZERO);
    if length < gate.min_duration.get() {
        return Err(format!(
            "the report's window is {} long; the gate needs at least {} (gate.min_duration)",
            humantime::format_duration(Duration::from_millis(u64::try_from(length.as_millis()).unwrap_or(u64::MAX))),
            gate.min_duration
        ));
    }
    Ok(())
}

fn check_time(evidence: &Evidence, gate: &GateSettings, now: SystemTime) -> Result<(), String> {
    if let Ok(ahead) = evidence.generated_at.duration_since(now)
        && ahead > MAX_CLOCK_SKEW
    {
        return Err(format!(
            "the report's generated_at {} is {} in the future (more than a minute): check the clock of the \
             machine that made it",
            humantime::format_rfc3339_micros(evidence.generated_at),
            humantime::format_duration(Duration::from_secs(ahead.as_secs()))
        ));
    }
    let age = now.duration_since(evidence.generated_at).unwrap_or(Duration::ZERO);
    if age > gate.max_age.get() {
        return Err(format!(
            "the report is {} old; the gate accepts at most {} (gate.max_age)",
            humantime::format_duration(Duration::from_secs(age.as_secs())),
            gate.max_age
        ));
    }
    Ok(())
}
