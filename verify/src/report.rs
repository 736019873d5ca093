//! The verify report (capture spec §3): the counts, the skew, the verdict and
//! up to N examples per kind, each a unified diff (`similar`) of the two
//! messages' canonical JSON renderings, pretty-printed one field per line.
//! Rendered as JSON or for people, into any writer; this module never prints.

use std::io::{self, Write};
use std::time::SystemTime;

use serde::Serialize;

use crate::join::{Comparison, Finding, Key};

/// The report, in the spec's JSON shape and key order.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// When it was made (RFC 3339, UTC).
    pub generated_at: String,
    /// Source ids seen in either stream.
    pub sources: Vec<u8>,
    /// The reference stream.
    pub reference: StreamSummary,
    /// The candidate stream.
    pub candidate: StreamSummary,
    /// Keys with identical bytes.
    pub matched: u64,
    /// Keys with different bytes.
    pub mismatched: u64,
    /// Keys only in the reference.
    pub missing: u64,
    /// Keys only in the candidate.
    pub extra: u64,
    /// Repeats per side.
    pub duplicates: PerSide,
    /// Out-of-order arrivals per side.
    pub reordered: PerSide,
    /// Candidate − reference arrival skew, when measurable.
    pub skew_ns: Option<SkewSummary>,
    /// `identical` or `differs`.
    pub verdict: &'static str,
    /// Up to N examples per kind.
    pub examples: Vec<Example>,
}

/// One stream's name and size.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// The interface name (`relay:<path>`, `broker:<topic>`, …).
    pub name: String,
    /// Messages in it.
    pub messages: u64,
}

/// A count per side.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerSide {
    /// In the reference.
    pub reference: u64,
    /// In the candidate.
    pub candidate: u64,
}

/// Skew percentiles, ns.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SkewSummary {
    /// Median.
    pub p50: i64,
    /// 99th percentile.
    pub p99: i64,
    /// Largest.
    pub max: i64,
}

/// One example.
#[derive(Debug, Clone, Serialize)]
pub struct Example {
    /// `mismatched`, `missing` or `extra`.
    pub kind: &'static str,
    /// The key.
    pub key: ExampleKey,
    /// Unified diff of the canonical JSON renderings (reference → candidate).
    pub diff: String,
}

/// A key as the report shows it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ExampleKey {
    /// `relay_domain`.
    pub relay_domain: u8,
    /// `source`.
    pub source: u8,
    /// The sequence (or, for sequence-0 messages, their arrival index).
    pub sequence: u64,
}

impl Report {
    /// Builds the report of a comparison of the streams named so.
    pub fn new(
        comparison: &Comparison,
        reference_name: &str,
        candidate_name: &str,
        generated_at: SystemTime,
    ) -> Report {
        let counts = &comparison.counts;
        Report {
            generated_at: humantime::format_rfc3339_seconds(generated_at).to_string(),
            sources: counts.sources.iter().copied().collect(),
            reference: StreamSummary { name: reference_name.to_owned(), messages: counts.reference_messages },
            candidate: StreamSummary { name: candidate_name.to_owned(), messages: counts.candidate_messages },
            matched: counts.matched,
            mismatched: counts.mismatched,
            missing: counts.missing,
            extra: counts.extra,
            duplicates: PerSide { reference: counts.duplicates[0], candidate: counts.duplicates[1] },
            reordered: PerSide { reference: counts.reordered[0], candidate: counts.reordered[1] },
            skew_ns: comparison.skew_ns.map(|(p50, p99, max)| SkewSummary { p50, p99, max }),
            verdict: if comparison.identical() { "identical" } else { "differs" },
            examples: comparison.findings.iter().map(example).collect(),
        }
    }

    /// Whether the verdict is `identical`.
    pub fn identical(&self) -> bool {
        self.verdict == "identical"
    }

    /// Writes the report as one JSON object and a newline.
    ///
    /// # Errors
    /// When writing fails.
    pub fn render_json(&self, out: &mut impl Write) -> io::Result<()> {
        serde_json::to_writer(&mut *out, self)?;
        writeln!(out)
    }

    /// Writes the report for people.
    ///
    /// # Errors
    /// When writing fails.
    pub fn render_human(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "verify: {}", self.verdict.to_uppercase())?;
        writeln!(out, "  reference  {} ({} messages)", self.reference.name, self.reference.messages)?;
        writeln!(out, "  candidate  {} ({} messages)", self.candidate.name, self.candidate.messages)?;
        writeln!(
            out,
            "  matched {}  mismatched {}  missing {}  extra {}",
            self.matched, self.mismatched, self.missing, self.extra
        )?;
        writeln!(
            out,
            "  duplicates {}/{}  reordered {}/{} (reference/candidate)",
            self.duplicates.reference, self.duplicates.candidate, self.reordered.reference, self.reordered.candidate
        )?;
        if let Some(skew) = self.skew_ns {
            writeln!(
                out,
                "  skew (candidate - reference): p50 {} ns, p99 {} ns, max {} ns",
                skew.p50, skew.p99, skew.max
            )?;
        }
        let sources: Vec<String> = self.sources.iter().map(u8::to_string).collect();
        writeln!(out, "  sources {}", sources.join(", "))?;
        for example in &self.examples {
            let key = example.key;
            writeln!(
                out,
                "\n{} (domain {}, source {}, sequence {}):",
                example.kind, key.relay_domain, key.source, key.sequence
            )?;
            out.write_all(example.diff.as_bytes())?;
        }
        Ok(())
    }
}

fn example(finding: &Finding) -> Example {
    let (kind, key, reference, candidate) = match finding {
        Finding::Mismatched { key, reference, candidate } => ("mismatched", key, pretty(reference), pretty(candidate)),
        Finding::Missing { key, reference } => ("missing", key, pretty(reference), String::new()),
        Finding::Extra { key, candidate } => ("extra", key, String::new(), pretty(candidate)),
    };
    let diff = similar::TextDiff::from_lines(&reference, &candidate)
        .unified_diff()
        .context_radius(3)
        .header("reference", "candidate")
        .to_string();
    Example { kind, key: report_key(key), diff }
}

fn report_key(key: &Key) -> ExampleKey {
    ExampleKey { relay_domain: key.relay_domain, source: key.source, sequence: key.number }
}

/// The canonical JSON of a message, one field per line; raw hex when the
/// bytes are not a valid message.
fn pretty(bytes: &[u8]) -> String {
    let Ok(message) = myc_codec::Message::parse(bytes) else {
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        return format!("(not a valid message) {hex}\n");
    };
    let json = myc_codec::to_json_string(&message);
    match serde_json::from_str::<serde_json::Value>(&json).and_then(|value| serde_json::to_string_pretty(&value)) {
        Ok(pretty) => pretty + "\n",
        Err(_) => json + "\n",
    }
}
