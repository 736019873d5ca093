//! The gate in front of every `advance`: a verify JSON report (capture spec
//! §3) about the service's stream, `identical`, with at least
//! `gate.min_messages` matched, made within `gate.max_age`.

use std::time::{Duration, SystemTime};

use myc_config::GateSettings;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a verify report says, as far as a gate cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evidence {
    /// `identical` or `differs`.
    pub verdict: String,
    /// Keys matched.
    pub matched: u64,
    /// When the report was made.
    pub generated_at: SystemTime,
    /// Source ids seen in either stream.
    pub sources: Vec<u8>,
    /// SHA-256 of the report's bytes, hex (recorded in the audit log).
    pub sha256: String,
}

#[derive(Deserialize)]
struct ReportFields {
    verdict: String,
    matched: u64,
    generated_at: String,
    #[serde(default)]
    sources: Vec<u8>,
}

impl Evidence {
    /// Reads a verify JSON report.
    ///
    /// # Errors
    /// Why the bytes are not a verify report.
    pub fn from_json(bytes: &[u8]) -> Result<Evidence, String> {
        let fields: ReportFields =
            serde_json::from_slice(bytes).map_err(|error| format!("not a verify JSON report: {error}"))?;
        let generated_at = humantime::parse_rfc3339_weak(&fields.generated_at)
            .map_err(|error| format!("generated_at {:?} is not an RFC 3339 time: {error}", fields.generated_at))?;
        Ok(Evidence {
            verdict: fields.verdict,
            matched: fields.matched,
            generated_at,
            sources: fields.sources,
            sha256: hex::encode(Sha256::digest(bytes)),
        })
    }
}

/// Checks `evidence` for a service whose source id is `source` (when
/// known), at `now`.
///
/// # Errors
/// The first reason the gate refuses, in words an operator can act on.
pub fn check(evidence: &Evidence, gate: &GateSettings, source: Option<u8>, now: SystemTime) -> Result<(), String> {
    if evidence.verdict != "identical" {
        return Err(format!("the report's verdict is {:?}, not \"identical\"", evidence.verdict));
    }
    if evidence.matched < gate.min_messages {
        return Err(format!(
            "the report matched {} messages; the gate needs at least {} (gate.min_messages)",
            evidence.matched, gate.min_messages
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
    if let Some(source) = source
        && !evidence.sources.contains(&source)
    {
        return Err(format!("the report is about sources {:?}, not this service's source {source}", evidence.sources));
    }
    Ok(())
}
