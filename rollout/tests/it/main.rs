//! Rollout as operators use it, and as careless operators and hostile
//! reports try it: the route of each stage, the plan file and its lock,
//! every way the gate refuses or accepts an advance, and the audit log that
//! replays to the plan.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]

mod changes;
mod gate;
mod plan;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use myc_config::{GateSettings, ServiceSettings, Span};
use myc_rollout::{Actor, Error, Rollout, Stage};
use serde_json::json;

const NOW: u64 = 1_764_180_000; // 2025-11-26T18:00:00Z

pub(crate) fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW)
}

/// `seconds` before [`now`], as a report writes times.
pub(crate) fn ago(seconds: u64) -> String {
    humantime::format_rfc3339_micros(now() - Duration::from_secs(seconds)).to_string()
}

pub(crate) fn actor() -> Actor {
    Actor { user: "ops".to_owned(), host: "desk".to_owned() }
}

/// A rollout in `dir` that knows `polygon_adapter` (source 4),
/// `kraken_adapter` (source 2) and `sourceless`.
pub(crate) fn rollout(dir: &std::path::Path) -> Rollout {
    let mut services = BTreeMap::new();
    services.insert("polygon_adapter".to_owned(), ServiceSettings { source: Some(4) });
    services.insert("kraken_adapter".to_owned(), ServiceSettings { source: Some(2) });
    services.insert("sourceless".to_owned(), ServiceSettings { source: None });
    Rollout {
        plan_file: dir.join("rollout.toml"),
        audit_log: dir.join("rollout-audit.jsonl"),
        default_stage: Stage::Relay,
        gate: GateSettings { min_messages: 10_000, max_age: Span::from_secs(3600), min_duration: Span::from_secs(60) },
        services,
    }
}

/// A verify report as `myc verify --format json` writes it, built field by
/// field so each test can break exactly one thing.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) reference: String,
    pub(crate) candidate: String,
    /// source → [matched, mismatched, missing, extra]
    pub(crate) per_source: Vec<(u8, [u64; 4])>,
    /// Totals; `None`: the sums of `per_source`.
    pub(crate) totals: Option<[u64; 4]>,
    pub(crate) duplicates: [u64; 2],
    pub(crate) verdict: Option<String>,
    pub(crate) generated_at: String,
    pub(crate) window: (String, String),
    pub(crate) with_per_source: bool,
}

impl Report {
    /// A clean report: 20,000 of source 4 and 5,000 of source 2 matched,
    /// gathered from 40 to 30 minutes ago, made 29 minutes ago.
    pub(crate) fn good() -> Report {
        Report {
            reference: "relay:/tmp/torq/market_data.sock".to_owned(),
            candidate: "broker:market_data".to_owned(),
            per_source: vec![(4, [20_000, 0, 0, 0]), (2, [5_000, 0, 0, 0])],
            totals: None,
            duplicates: [0, 0],
            verdict: None,
            generated_at: ago(29 * 60),
            window: (ago(40 * 60), ago(30 * 60)),
            with_per_source: true,
        }
    }

    pub(crate) fn totals(&self) -> [u64; 4] {
        self.totals.unwrap_or_else(|| {
            self.per_source
                .iter()
                .fold([0; 4], |sum, (_, c)| [sum[0] + c[0], sum[1] + c[1], sum[2] + c[2], sum[3] + c[3]])
        })
    }

    pub(crate) fn json(&self) -> Vec<u8> {
        let [matched, mismatched, missing, extra] = self.totals();
        let clean = mismatched + missing + extra == 0 && self.duplicates == [0, 0];
        let verdict = self.verdict.clone().unwrap_or_else(|| {
            if matched + mismatched + missing + extra == 0 {
                "empty"
            } else if clean {
                "identical"
            } else {
                "differs"
            }
            .to_owned()
        });
        let mut report = json!({
            "generated_at": self.generated_at,
            "sources": self.per_source.iter().map(|(source, _)| source).collect::<Vec<_>>(),
            "reference": {"name": self.reference, "messages": matched + mismatched + missing,
                          "file": "md.pcapng", "file_sha256": "ab".repeat(32)},
            "candidate": {"name": self.candidate, "messages": matched + mismatched + extra,
                          "file": "md.pcapng", "file_sha256": "ab".repeat(32)},
            "matched": matched, "mismatched": mismatched, "missing": missing, "extra": extra,
            "duplicates": {"reference": self.duplicates[0], "candidate": self.duplicates[1]},
            "reordered": {"reference": 0, "candidate": 0},
            "window": {"start": self.window.0, "end": self.window.1},
            "skew_ns": null,
            "verdict": verdict,
            "examples": [],
        });
        if self.with_per_source {
            let per_source: serde_json::Map<String, serde_json::Value> = self
                .per_source
                .iter()
                .map(|(source, [matched, mismatched, missing, extra])| {
                    (
                        source.to_string(),
                        json!({"matched": matched, "mismatched": mismatched, "missing": missing, "extra": extra}),
                    )
                })
                .collect();
            report["per_source"] = serde_json::Value::Object(per_source);
        }
        serde_json::to_vec(&report).unwrap()
    }
}

/// The refusal's words, or a panic saying what happened instead.
pub(crate) fn refused(result: Result<myc_rollout::audit::Entry, Error>) -> String {
    match result {
        Err(Error::Refused(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}
