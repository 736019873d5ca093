//! The verify report (docs/capture.md §3): the counts, the skew, the verdict and
//! up to N examples per kind, each a unified diff (`similar`) of the two
//! messages' canonical JSON renderings, pretty-printed one field per line.
//! Rendered as JSON or for people, into any writer; this module never prints.
//! The report is evidence for the rollout gate, so it also names what was
//! compared: the files and their digests, the window, the per-source counts,
//! the filter and whether edges were trimmed (docs/capture.md §3–4).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::join::{Comparison, Finding, Key, SourceCounts};

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
    /// The four join counts per source id; they sum to the four above.
    pub per_source: BTreeMap<u8, PerSource>,
    /// Repeats per side.
    pub duplicates: PerSide,
    /// Out-of-order arrivals per side.
    pub reordered: PerSide,
    /// Messages outside the common span per side (never against `identical`).
    pub edge: PerSide,
    /// `trimmed` (only the common span compared) or `counted`.
    pub edges: &'static str,
    /// The sources kept, when `--source`/`--service` filtered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
    /// When the compared messages arrived; absent when nothing carried a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// Candidate − reference arrival skew, when measurable.
    pub skew_ns: Option<SkewSummary>,
    /// `identical`, `differs` or `empty`.
    pub verdict: &'static str,
    /// Up to N examples per kind.
    pub examples: Vec<Example>,
}

/// One stream's name and size, and the file it was read from.
#[derive(Debug, Clone, Serialize)]
pub struct StreamSummary {
    /// The interface name (`relay:<path>`, `broker:<topic>`, …).
    pub name: String,
    /// Messages in it (after the source filter).
    pub messages: u64,
    /// The capture file, as given; absent for a live tap.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// SHA-256 of the capture file, hex; present exactly when `file` is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_sha256: Option<String>,
}

/// The join counts of one source.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PerSource {
    /// Keys with identical bytes.
    pub matched: u64,
    /// Keys with different bytes.
    pub mismatched: u64,
    /// Keys only in the reference.
    pub missing: u64,
    /// Keys only in the candidate.
    pub extra: u64,
}

/// The source filter.
#[derive(Debug, Clone, Serialize)]
pub struct Filter {
    /// Source ids kept on both sides.
    pub sources: Vec<u8>,
}

/// A span of time, RFC 3339 UTC with microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Window {
    /// The first arrival (or the taps' start).
    pub start: String,
    /// The last arrival (or the taps' end).
    pub end: String,
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
        let stream =
            |name: &str, messages| StreamSummary { name: name.to_owned(), messages, file: None, file_sha256: None };
        let per_source = |counts: &SourceCounts| PerSource {
            matched: counts.matched,
            mismatched: counts.mismatched,
            missing: counts.missing,
            extra: counts.extra,
        };
        let verdict = if comparison.identical() {
            "identical"
        } else if comparison.empty() {
            "empty"
        } else {
            "differs"
        };
        Report {
            generated_at: rfc3339_micros(generated_at),
            sources: counts.sources.iter().copied().collect(),
            reference: stream(reference_name, counts.reference_messages),
            candidate: stream(candidate_name, counts.candidate_messages),
            matched: counts.matched,
            mismatched: counts.mismatched,
            missing: counts.missing,
            extra: counts.extra,
            per_source: counts.per_source.iter().map(|(source, counts)| (*source, per_source(counts))).collect(),
            duplicates: PerSide { reference: counts.duplicates[0], candidate: counts.duplicates[1] },
            reordered: PerSide { reference: counts.reordered[0], candidate: counts.reordered[1] },
            edge: PerSide { reference: counts.edge[0], candidate: counts.edge[1] },
            edges: if comparison.trimmed { "trimmed" } else { "counted" },
            filter: comparison.filter.as_ref().map(|sources| Filter { sources: sources.iter().copied().collect() }),
            window: counts.window_ns.map(|(first, last)| {
                let at = |ns: u64| UNIX_EPOCH + Duration::from_nanos(ns);
                Window::new(at(first), at(last))
            }),
            skew_ns: comparison.skew_ns.map(|(p50, p99, max)| SkewSummary { p50, p99, max }),
            verdict,
            examples: comparison.findings.iter().map(example).collect(),
        }
    }

    /// Names the capture files the streams were read from, with their digests.
    #[must_use]
    pub fn with_files(mut self, reference: (String, String), candidate: (String, String)) -> Report {
        (self.reference.file, self.reference.file_sha256) = (Some(reference.0), Some(reference.1));
        (self.candidate.file, self.candidate.file_sha256) = (Some(candidate.0), Some(candidate.1));
        self
    }

    /// Sets the window (a live verify: the taps' start and end).
    #[must_use]
    pub fn with_window(mut self, start: SystemTime, end: SystemTime) -> Report {
        self.window = Some(Window::new(start, end));
        self
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
        writeln!(
            out,
            "  edge {}/{} (reference/candidate; edges {})",
            self.edge.reference, self.edge.candidate, self.edges
        )?;
        if let Some(filter) = &self.filter {
            let sources: Vec<String> = filter.sources.iter().map(u8::to_string).collect();
            writeln!(out, "  filter: sources {}", sources.join(", "))?;
        }
        if let Some(window) = &self.window {
            writeln!(out, "  window {} .. {}", window.start, window.end)?;
        }
        if let Some(skew) = self.skew_ns {
            writeln!(
                out,
                "  skew (candidate - reference): p50 {} ns, p99 {} ns, max {} ns",
                skew.p50, skew.p99, skew.max
            )?;
        }
        let sources: Vec<String> = self.sources.iter().map(u8::to_string).collect();
        writeln!(out, "  sources {}", sources.join(", "))?;
        for (source, counts) in &self.per_source {
            writeln!(
                out,
                "    source {source}: matched {}  mismatched {}  missing {}  extra {}",
                counts.matched, counts.mismatched, counts.missing, counts.extra
            )?;
        }
        for (stream, summary) in [("reference", &self.reference), ("candidate", &self.candidate)] {
            if let (Some(file), Some(sha256)) = (&summary.file, &summary.file_sha256) {
                writeln!(out, "  {stream} file {file} (sha256 {sha256})")?;
            }
        }
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

impl Window {
    fn new(start: SystemTime, end: SystemTime) -> Window {
        Window { start: rfc3339_micros(start), end: rfc3339_micros(end) }
    }
}

/// RFC 3339 UTC with microseconds: reports made in the same second still order.
fn rfc3339_micros(at: SystemTime) -> String {
    humantime::format_rfc3339_micros(at).to_string()
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
