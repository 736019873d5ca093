//! The guard's rules: a window of one service's scraped figures in, one
//! decision out — `ok`, `rollback` (naming the rule), `stale` or
//! `insufficient` — with the figures that led to it (docs/guard.md).
//!
//! It deliberately does no I/O and never reads the clock: the caller scrapes
//! the producers, passes `now`, keeps the [`Memory`] between calls (and in
//! the [`State`] file), and carries a rollback out through
//! [`crate::Rollout::rollback`]. So every decision can be replayed in a test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use myc_config::{GuardSettings, Stage};
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::plan::write_atomically;

/// The fixed headroom of rule 3 on top of `max_rss_increase` × baseline:
/// small producers double their RSS on a few buffers, which is no regression.
pub const RSS_MARGIN_BYTES: u64 = 32 * 1024 * 1024;

/// One path's counters at one scrape (`myc_shim_*_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PathCounts {
    /// Messages the path accepted.
    pub published: u64,
    /// Primary publishes refused.
    pub failed: u64,
    /// Shadow publishes dropped.
    pub shadow_dropped: u64,
}

impl PathCounts {
    /// What happened between `earlier` and `self`. A counter that went
    /// down means the producer restarted: its value now is all there is.
    fn since(self, earlier: PathCounts) -> PathCounts {
        let delta = |now: u64, before: u64| if now >= before { now - before } else { now };
        PathCounts {
            published: delta(self.published, earlier.published),
            failed: delta(self.failed, earlier.failed),
            shadow_dropped: delta(self.shadow_dropped, earlier.shadow_dropped),
        }
    }

    /// Messages offered to the path: accepted, refused or dropped.
    pub fn attempted(self) -> u64 {
        self.published.saturating_add(self.failed).saturating_add(self.shadow_dropped)
    }

    /// The share of offered messages the path did not take (0 when none
    /// were offered).
    pub fn failed_ratio(self) -> f64 {
        ratio(self.failed.saturating_add(self.shadow_dropped), self.attempted())
    }
}

/// One successful scrape of one service.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// When it was taken.
    pub at: SystemTime,
    /// The stage the producer itself reported (`myc_shim_stage`): figures
    /// only count toward the stage that produced them.
    pub stage: Stage,
    /// The relay path's counters.
    pub relay: PathCounts,
    /// The broker path's counters.
    pub broker: PathCounts,
    /// The producer process's resident memory, when exported.
    pub rss_bytes: Option<u64>,
}

/// The outcome of a live verify sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sampled {
    /// Both paths carried the same bytes.
    Identical,
    /// They did not.
    Differs,
}

/// A live verify sample of one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifySample {
    /// When it ended.
    pub at: SystemTime,
    /// The stage it was taken in.
    pub stage: Stage,
    /// What it said.
    pub verdict: Sampled,
}

/// What the guard remembers of a service between windows (kept in the
/// [`State`] file, so a restarted guard still knows the baselines).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Memory {
    /// The producer's RSS while the service was at `relay` (the highest
    /// seen over the last window there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_baseline_bytes: Option<u64>,
    /// The relay path's failed ratio the last time it was in use with
    /// enough messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relay_failed_ratio: Option<f64>,
    /// When the guard last rolled the service back (not persisted: a
    /// rollback changes the stage, and figures only count toward the stage
    /// that produced them).
    #[serde(skip)]
    pub last_rollback: Option<SystemTime>,
}

/// A rule that rolls a service back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// 1: the broker path fails more than the relay path.
    Errors,
    /// 2: the broker shadow drops messages.
    ShadowLoss,
    /// 3: the producer uses more memory than at relay.
    Memory,
    /// 4: a live verify sample differs.
    Content,
}

impl Rule {
    /// Its number in the documentation (1–4).
    pub fn number(self) -> u8 {
        match self {
            Rule::Errors => 1,
            Rule::ShadowLoss => 2,
            Rule::Memory => 3,
            Rule::Content => 4,
        }
    }

    /// Its name in metrics and decisions.
    pub fn name(self) -> &'static str {
        match self {
            Rule::Errors => "errors",
            Rule::ShadowLoss => "shadow_loss",
            Rule::Memory => "memory",
            Rule::Content => "content",
        }
    }
}

/// What the guard decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every rule holds (or the service is at `relay`).
    Ok,
    /// Roll the service back one stage.
    Rollback,
    /// No scrape of it for a whole window: shown, never acted on.
    Stale,
    /// Too few messages at this stage in the window to judge.
    Insufficient,
}

impl Verdict {
    /// Its name in metrics and decisions.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::Rollback => "rollback",
            Verdict::Stale => "stale",
            Verdict::Insufficient => "insufficient",
        }
    }
}

/// The relay path's figures over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RelayFigures {
    /// Accepted.
    pub published: u64,
    /// Refused as the primary.
    pub failed: u64,
    /// Dropped as the shadow.
    pub shadow_dropped: u64,
    /// (failed + shadow_dropped) / offered.
    pub failed_ratio: f64,
}

/// The broker path's figures over the window.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BrokerFigures {
    /// Accepted.
    pub published: u64,
    /// Refused as the primary.
    pub failed: u64,
    /// Dropped as the shadow.
    pub shadow_dropped: u64,
    /// failed / (published + failed).
    pub failed_ratio: f64,
    /// shadow_dropped / (published + shadow_dropped).
    pub shadow_dropped_ratio: f64,
}

/// The figures a decision rests on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Figures {
    /// The window, seconds.
    pub window_s: f64,
    /// The relay path.
    pub relay: RelayFigures,
    /// The broker path.
    pub broker: BrokerFigures,
    /// The producer's RSS now.
    pub rss_bytes: Option<u64>,
    /// Its RSS recorded at `relay`.
    pub rss_baseline_bytes: Option<u64>,
    /// The live verify sample of this window, if any.
    pub verify: Option<Sampled>,
}

/// One decision about one service.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    /// The service.
    pub service: String,
    /// Its stage in the plan.
    pub stage: Stage,
    /// What to do.
    pub decision: Verdict,
    /// The rule behind a rollback.
    #[serde(skip)]
    pub rule: Option<Rule>,
    /// Why, with the figures, in words.
    pub reason: String,
    /// The figures.
    pub figures: Figures,
}

/// The thresholds, from `[guard]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// The window each decision looks back over.
    pub window: Duration,
    /// Messages offered to the primary path, at least.
    pub min_messages: u64,
    /// Rule 1, absolute.
    pub max_failed_ratio: f64,
    /// Rule 1, relative to the relay path.
    pub max_error_increase: f64,
    /// Rule 2.
    pub max_shadow_dropped_ratio: f64,
    /// Rule 3 (plus [`RSS_MARGIN_BYTES`]).
    pub max_rss_increase: f64,
}

impl Thresholds {
    /// The thresholds `guard` sets.
    pub fn from_settings(guard: &GuardSettings) -> Thresholds {
        Thresholds {
            window: guard.window.get(),
            min_messages: guard.min_messages,
            max_failed_ratio: guard.max_failed_ratio.get(),
            max_error_increase: guard.max_error_increase.get(),
            max_shadow_dropped_ratio: guard.max_shadow_dropped_ratio.get(),
            max_rss_increase: guard.max_rss_increase.get(),
        }
    }
}

/// Everything one decision looks at.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    /// The service.
    pub service: &'a str,
    /// Its stage in the plan now.
    pub stage: Stage,
    /// Its scrapes, oldest first (older ones than the window are ignored).
    pub samples: &'a [Sample],
    /// The latest live verify sample, if any.
    pub verify: Option<VerifySample>,
    /// When the guard started (a service never scraped is stale only once
    /// the guard has looked for a whole window).
    pub started: SystemTime,
    /// Now.
    pub now: SystemTime,
}

/// Decides about one service, and returns what to remember of it.
pub fn evaluate(input: &Input<'_>, memory: &Memory, thresholds: &Thresholds) -> (Decision, Memory) {
    let mut memory = *memory;
    let window_start = input.now.checked_sub(thresholds.window).unwrap_or(SystemTime::UNIX_EPOCH);
    // Figures count toward the stage that produced them, within the window.
    let in_window: Vec<&Sample> =
        input.samples.iter().filter(|sample| sample.at >= window_start && sample.stage == input.stage).collect();
    let delta = match (in_window.first(), in_window.last()) {
        (Some(first), Some(last)) => (last.relay.since(first.relay), last.broker.since(first.broker)),
        _ => (PathCounts::default(), PathCounts::default()),
    };
    let rss_bytes = input.samples.last().and_then(|sample| sample.rss_bytes);
    let verify = input
        .verify
        .filter(|sample| sample.at >= window_start && sample.stage == input.stage)
        .map(|sample| sample.verdict);
    let (relay, broker) = delta;
    let figures = Figures {
        window_s: thresholds.window.as_secs_f64(),
        relay: RelayFigures {
            published: relay.published,
            failed: relay.failed,
            shadow_dropped: relay.shadow_dropped,
            failed_ratio: relay.failed_ratio(),
        },
        broker: BrokerFigures {
            published: broker.published,
            failed: broker.failed,
            shadow_dropped: broker.shadow_dropped,
            failed_ratio: ratio(broker.failed, broker.published.saturating_add(broker.failed)),
            shadow_dropped_ratio: ratio(broker.shadow_dropped, broker.published.saturating_add(broker.shadow_dropped)),
        },
        rss_bytes,
        rss_baseline_bytes: memory.rss_baseline_bytes,
        verify,
    };
    let decide = |decision: Verdict, rule: Option<Rule>, reason: String, figures: Figures| Decision {
        service: input.service.to_owned(),
        stage: input.stage,
        decision,
        rule,
        reason,
        figures,
    };

    let newest = input.samples.last().map(|sample| sample.at);
    let stale = match newest {
        Some(at) => at < window_start,
        None => input.now.duration_since(input.started).unwrap_or(Duration::ZERO) >= thresholds.window,
    };
    if stale {
        let reason = match newest {
            Some(at) => format!("no scrape for {}", seconds(input.now.duration_since(at).unwrap_or_default())),
            None => format!("never scraped in {}", seconds(thresholds.window)),
        };
        return (decide(Verdict::Stale, None, reason, figures), memory);
    }

    let route = crate::Route::of(input.stage);
    let primary = if route.broker == Some(crate::Role::Primary) { broker } else { relay };
    let enough = in_window.len() >= 2 && primary.attempted() >= thresholds.min_messages;
    // What is learnt at each stage, whatever is decided.
    if enough && route.relay.is_some() {
        memory.relay_failed_ratio = Some(relay.failed_ratio());
    }
    if input.stage == Stage::Relay {
        let highest = in_window.iter().filter_map(|sample| sample.rss_bytes).max();
        if let Some(highest) = highest {
            memory.rss_baseline_bytes = Some(highest);
        }
        let figures = Figures { rss_baseline_bytes: memory.rss_baseline_bytes, ..figures };
        let reason = match memory.rss_baseline_bytes {
            Some(baseline) => format!("at relay: nothing to roll back; RSS baseline {}", mib(baseline)),
            None => "at relay: nothing to roll back; no RSS exported, so no baseline".to_owned(),
        };
        return (decide(Verdict::Ok, None, reason, figures), memory);
    }
    if !enough {
        let reason = format!(
            "{} messages offered to the primary path at {} in the last {}; the rules need {} (guard.min_messages)",
            primary.attempted(),
            input.stage,
            seconds(thresholds.window),
            thresholds.min_messages
        );
        return (decide(Verdict::Insufficient, None, reason, figures), memory);
    }

    let mut notes = Vec::new();
    let mut fired = None;
    // Rule 1: errors, against the relay path now or as it was last seen.
    let relay_ratio =
        if route.relay.is_some() { relay.failed_ratio() } else { memory.relay_failed_ratio.unwrap_or(0.0) };
    let broker_ratio = figures.broker.failed_ratio;
    if broker_ratio > thresholds.max_failed_ratio && broker_ratio > thresholds.max_error_increase * relay_ratio {
        fired = Some((
            Rule::Errors,
            format!(
                "rule 1 (errors): broker path failed {} of {} ({}), above guard.max_failed_ratio {} and {} × the relay path's {}",
                broker.failed,
                broker.published.saturating_add(broker.failed),
                percent(broker_ratio),
                thresholds.max_failed_ratio,
                thresholds.max_error_increase,
                percent(relay_ratio)
            ),
        ));
    }
    // Rule 2: shadow loss while the broker is the shadow.
    let dropped_ratio = figures.broker.shadow_dropped_ratio;
    if fired.is_none() && input.stage == Stage::DualRelayPrimary && dropped_ratio > thresholds.max_shadow_dropped_ratio
    {
        fired = Some((
            Rule::ShadowLoss,
            format!(
                "rule 2 (shadow loss): broker shadow dropped {} of {} ({}), above guard.max_shadow_dropped_ratio {}",
                broker.shadow_dropped,
                broker.published.saturating_add(broker.shadow_dropped),
                percent(dropped_ratio),
                thresholds.max_shadow_dropped_ratio
            ),
        ));
    }
    // Rule 3: memory against the baseline recorded at relay.
    match (memory.rss_baseline_bytes, rss_bytes) {
        (Some(baseline), Some(rss)) => {
            let limit = thresholds.max_rss_increase * baseline as f64 + RSS_MARGIN_BYTES as f64;
            if fired.is_none() && rss as f64 > limit {
                fired = Some((
                    Rule::Memory,
                    format!(
                        "rule 3 (memory): RSS {} above {} × the baseline {} recorded at relay + 32 MiB = {}",
                        mib(rss),
                        thresholds.max_rss_increase,
                        mib(baseline),
                        mib(limit as u64)
                    ),
                ));
            }
        }
        (None, _) => notes.push("rule 3 does not apply: no RSS baseline recorded at relay".to_owned()),
        (Some(_), None) => notes.push("rule 3 does not apply: the producer exports no RSS".to_owned()),
    }
    // Rule 4: a live verify sample of this window.
    if fired.is_none() && verify == Some(Sampled::Differs) {
        fired = Some((Rule::Content, "rule 4 (content): the live verify sample differs".to_owned()));
    }

    if let Some((rule, reason)) = fired {
        if let Some(at) = memory.last_rollback
            && at >= window_start
        {
            let reason = format!("{reason}; but rolled back less than a window ago (at most one rollback per window)");
            return (decide(Verdict::Insufficient, None, reason, figures), memory);
        }
        memory.last_rollback = Some(input.now);
        return (decide(Verdict::Rollback, Some(rule), reason, figures), memory);
    }
    let mut reason = format!(
        "rules hold: broker failed {}, relay {}, broker shadow dropped {}",
        percent(broker_ratio),
        percent(relay_ratio),
        percent(dropped_ratio)
    );
    for note in notes {
        reason.push_str("; ");
        reason.push_str(&note);
    }
    (decide(Verdict::Ok, None, reason, figures), memory)
}

/// The guard's memory of every service, kept in a small JSON file beside
/// the rollout plan (`<plan>.guard.json`): the RSS baselines recorded at
/// relay and the relay paths' last failed ratios.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct State {
    /// Service → what the guard remembers of it.
    #[serde(default)]
    pub services: BTreeMap<String, Memory>,
}

impl State {
    /// Where the state of the plan at `plan_file` lives.
    pub fn path_for(plan_file: &Path) -> PathBuf {
        let mut name = plan_file.file_name().map(|name| name.to_os_string()).unwrap_or_default();
        name.push(".guard.json");
        plan_file.with_file_name(name)
    }

    /// Reads the state at `path`; a missing file is an empty state.
    ///
    /// # Errors
    /// An unreadable file, or one that is not a guard state.
    pub fn read(path: &Path) -> Result<State, Error> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|error| Error::BadPlan(path.to_path_buf(), format!("not a guard state: {error}"))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(error) => Err(Error::io(path, &error)),
        }
    }

    /// Writes the state atomically.
    ///
    /// # Errors
    /// When the directory cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), Error> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|error| Error::io(path, &std::io::Error::other(error)))?;
        write_atomically(path, &bytes)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

fn percent(ratio: f64) -> String {
    format!("{:.3}%", ratio * 100.0)
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn seconds(span: Duration) -> String {
    format!("{:.1}s", span.as_secs_f64())
}

#[cfg(test)]
mod tests;
