//! `myc verify files` compares two captures (or two interfaces of one);
//! `myc verify live` taps a relay (reference) and a broker topic or NATS
//! subject (candidate) for a while, lets what was in flight settle, and
//! compares what they carried, edges trimmed (docs/capture.md). Exit 0
//! identical, 1 differs or empty, 2 error. A capture that turns corrupt
//! part-way is compared up to the bad block, the offset is reported, and the
//! exit is 2. Live taps keep what they see in memory for the duration.
//!
//! It deliberately does not judge the report (the gate does) and never
//! compares a stream with itself or with an interface the file lacks.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use myc_codec::Domain;
use myc_config::{Backend, Settings};
use myc_verify::join::{Captured, Comparison, Ignore, Options};
use myc_verify::report::Report;
use myc_verify::stream::{CaptureStream, StreamInfo, file_sha256};

use super::Outcome;
use super::capture::{Tap, Window};
use crate::args::{Format, GlobalArgs, SourceFilter, VerifyCommand, VerifyLiveArgs};
use crate::progress;

pub(crate) fn run(command: &VerifyCommand, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    match command {
        VerifyCommand::Files {
            reference,
            candidate,
            reference_if,
            candidate_if,
            ignore,
            examples,
            trim_edges,
            filter,
        } => {
            let (reference_path, candidate_path) = match candidate {
                Some(candidate) => (reference.clone(), candidate.clone()),
                None => {
                    if reference_if.is_none() || candidate_if.is_none() {
                        bail!(
                            "one capture file holds both streams: name them with --reference-if and --candidate-if \
                             (this file has: {})",
                            interface_names(reference)
                        );
                    }
                    (reference.clone(), reference.clone())
                }
            };
            let options = Options {
                ignore: parse_ignore(ignore)?,
                examples: *examples,
                trim_edges: *trim_edges,
                sources: sources(filter, || super::settings::load(global))?,
            };
            let reference = (reference_path.as_path(), reference_if.as_deref());
            let candidate = (candidate_path.as_path(), candidate_if.as_deref());
            files(reference, candidate, &options, global.format)
        }
        VerifyCommand::Live(args) => live(args, global),
    }
}

/// A capture file and, optionally, the interface of it to read.
type Stream<'a> = (&'a Path, Option<&'a str>);

fn files(reference: Stream<'_>, candidate: Stream<'_>, options: &Options, format: Format) -> anyhow::Result<Outcome> {
    let same_file = same_file(reference.0, candidate.0);
    if same_file && reference.1 == candidate.1 {
        bail!(self_comparison(reference.1.unwrap_or("its first interface"), reference.0));
    }
    let reference_stream = CaptureStream::open(reference.0, reference.1)?;
    let candidate_stream = CaptureStream::open(candidate.0, candidate.1)?;
    let (reference_info, candidate_info) = (reference_stream.info(), candidate_stream.info());
    let bar = progress::bytes_bar(reference_info.total_bytes + candidate_info.total_bytes, "verify");
    let mut seen = 0u32;
    let reference_stream = reference_stream.inspect(|_| {
        seen = seen.wrapping_add(1);
        if seen % 65_536 == 0 {
            let read = reference_info.bytes_read.load(Ordering::Relaxed);
            bar.set_position(read + candidate_info.bytes_read.load(Ordering::Relaxed));
        }
    });
    let comparison = myc_verify::join::compare_with(reference_stream, candidate_stream, options);
    bar.finish_and_clear();
    for ((path, wanted), info) in [(reference, &reference_info), (candidate, &candidate_info)] {
        let interfaces = info.interfaces();
        if let Some(wanted) = wanted
            && !interfaces.iter().any(|name| name == wanted)
        {
            bail!(
                "{} has no interface {wanted:?}; its interfaces: {}",
                path.display(),
                if interfaces.is_empty() { "none".to_owned() } else { interfaces.join(", ") }
            );
        }
    }
    let name = |info: &StreamInfo, (path, wanted): Stream<'_>| {
        info.interface().or_else(|| wanted.map(str::to_owned)).unwrap_or_else(|| path.display().to_string())
    };
    let (reference_name, candidate_name) = (name(&reference_info, reference), name(&candidate_info, candidate));
    // Unnamed interfaces resolve to the first one that carries packets:
    // the same stream again when both sides name the same file.
    if same_file && reference_name == candidate_name {
        bail!(self_comparison(&reference_name, reference.0));
    }
    let digest =
        |path: &Path| -> anyhow::Result<(String, String)> { Ok((path.display().to_string(), file_sha256(path)?)) };
    let report = Report::new(&comparison, &reference_name, &candidate_name, SystemTime::now())
        .with_files(digest(reference.0)?, digest(candidate.0)?);
    render(&report, format)?;
    for ((path, _), info) in [(reference, &reference_info), (candidate, &candidate_info)] {
        if let Some(error) = info.error() {
            bail!(
                "{}: invalid pcapng at byte {} ({}); compared what came before it",
                path.display(),
                error.offset,
                error.reason
            );
        }
    }
    Ok(outcome(&report))
}

fn self_comparison(name: &str, path: &Path) -> String {
    format!(
        "the reference and the candidate are the same stream ({name} of {}): comparing a stream with itself proves nothing",
        path.display()
    )
}

/// Whether two paths name one file (the same file under two spellings too).
fn same_file(left: &Path, right: &Path) -> bool {
    match (std::fs::canonicalize(left), std::fs::canonicalize(right)) {
        (Ok(left), Ok(right)) => left == right,
        _ => left == right,
    }
}

fn live(args: &VerifyLiveArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let duration = humantime::parse_duration(&args.duration).context("bad --duration")?;
    let settle = humantime::parse_duration(&args.settle).context("bad --settle")?;
    let ignore = parse_ignore(&args.ignore)?;
    // The settings are read only when something is not named on the command line.
    let named = args.relay.is_some() && (args.broker.is_some() || args.nats.is_some()) && args.filter.service.is_none();
    let settings = if named { None } else { Some(super::settings::load(global)?) };
    let settings = settings.as_ref();
    let from_settings = || settings.context("settings were not loaded");
    let sources = sources(&args.filter, || from_settings().cloned())?;
    let domain = Domain::from_name(&args.domain).with_context(|| format!("unknown domain {:?}", args.domain))?;
    let relay: PathBuf = match &args.relay {
        Some(relay) => relay.clone(),
        None => from_settings()?
            .relay
            .for_domain(domain.as_u8())
            .cloned()
            .with_context(|| format!("no relay socket for {}", args.domain))?,
    };
    let candidate = match (&args.broker, &args.topic, &args.nats, &args.subject) {
        (Some(broker), Some(topic), _, _) => {
            let token = settings.map(|settings| settings.broker.token.clone()).unwrap_or_default();
            Tap::Broker(myc_transport::Endpoint::parse(broker)?, topic.clone(), token)
        }
        (_, _, Some(nats), Some(subject)) => Tap::Nats(nats.clone(), subject.clone()),
        _ => {
            let settings = from_settings()?;
            let topic = settings.topics.for_domain(domain.as_u8()).unwrap_or("market_data").to_owned();
            match settings.broker.backend {
                Backend::Nats => {
                    Tap::Nats(settings.nats.urls.join(","), format!("{}{topic}", settings.nats.subject_prefix))
                }
                Backend::Mycelium => Tap::Broker(
                    myc_transport::Endpoint::parse(&settings.broker.endpoint)
                        .with_context(|| format!("bad [broker] endpoint {:?}", settings.broker.endpoint))?,
                    topic,
                    settings.broker.token.clone(),
                ),
            }
        }
    };
    let taps = [Tap::Relay(relay), candidate];
    let names = [taps[0].name(), taps[1].name()];
    let tapped = tap_for(&taps, duration, settle, sources.as_ref())?;
    let options = Options { ignore, examples: args.examples, trim_edges: true, sources };
    let comparison: Comparison = myc_verify::join::compare_with(tapped.streams.0, tapped.streams.1, &options);
    let report =
        Report::new(&comparison, &names[0], &names[1], SystemTime::now()).with_window(tapped.start, tapped.end);
    render(&report, global.format)?;
    Ok(outcome(&report))
}

fn outcome(report: &Report) -> Outcome {
    if report.identical() { Outcome::Success } else { Outcome::Negative }
}

/// The sources `--source`/`--service` keep (`None`: all).
fn sources(
    filter: &SourceFilter,
    mut settings: impl FnMut() -> anyhow::Result<Settings>,
) -> anyhow::Result<Option<BTreeSet<u8>>> {
    let mut sources: BTreeSet<u8> = filter.sources.iter().copied().collect();
    if let Some(service) = &filter.service {
        let settings = settings()?;
        let Some(known) = settings.services.get(service) else {
            bail!("no service {service:?} in the settings (give it a source: [services.{service}] source = N)");
        };
        let Some(source) = known.source else {
            bail!("service {service:?} has no source id in the settings ([services.{service}] source = N)");
        };
        sources.insert(source);
    }
    Ok(if sources.is_empty() { None } else { Some(sources) })
}

fn render(report: &Report, format: Format) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match format {
        Format::Json => report.render_json(&mut out)?,
        Format::Human => report.render_human(&mut out)?,
    }
    out.flush()?;
    Ok(())
}

/// What the taps carried, and when they were open.
pub(crate) struct Tapped {
    /// The reference's messages and the candidate's, each in arrival order.
    pub(crate) streams: (Vec<Captured>, Vec<Captured>),
    /// When every tap was connected and the window opened.
    pub(crate) start: SystemTime,
    /// When the window (and its settle time) closed.
    pub(crate) end: SystemTime,
}

/// Taps the two streams for `duration` and then `settle`; returns what each
/// saw of `sources` (all when `None`), in arrival order, with a progress bar
/// on a terminal.
fn tap_for(
    taps: &[Tap; 2],
    duration: Duration,
    settle: Duration,
    sources: Option<&BTreeSet<u8>>,
) -> anyhow::Result<Tapped> {
    let runtime = super::runtime()?;
    let bar = progress::window_bar(duration, "verify live");
    // The clock starts at the first tick, once every tap is connected.
    let started = std::cell::OnceCell::new();
    let on_tick = |reference: usize, candidate: usize| {
        let elapsed = started.get_or_init(Instant::now).elapsed();
        bar.set_position(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
        bar.set_message(format!(
            "{} elapsed, {} left  {} {reference}  {} {candidate}",
            humantime::format_duration(Duration::from_secs(elapsed.as_secs())),
            humantime::format_duration(Duration::from_secs(duration.saturating_sub(elapsed).as_secs())),
            taps[0].name(),
            taps[1].name(),
        ));
    };
    let tapped = runtime.block_on(tap_live(taps, duration, settle, sources, |index| index == 0, on_tick))?;
    bar.finish_and_clear();
    Ok(tapped)
}

/// Taps `taps` for `duration`, then for at most `settle` only what another
/// tap has already shown (the tapping [`Window`]), keeping the messages of
/// `sources` (all when `None`). What the taps for which `is_reference` holds
/// saw is the reference, the rest the candidate, each in arrival order.
/// Every tap is connected (a broker subscription confirmed) before the clock
/// starts; `on_tick` gets the two counts a few times a second. The guard's
/// live verify samples use this too.
pub(crate) async fn tap_live(
    taps: &[Tap],
    duration: Duration,
    settle: Duration,
    sources: Option<&BTreeSet<u8>>,
    is_reference: impl Fn(usize) -> bool,
    mut on_tick: impl FnMut(usize, usize),
) -> anyhow::Result<Tapped> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(65_536);
    let _tasks = super::capture::start_taps(taps, &tx).await?;
    drop(tx);
    let names: Vec<String> = taps.iter().map(Tap::name).collect();
    tracing::info!(taps = %names.join(", "), "every tap connected; the window starts");
    let start = SystemTime::now();
    // A mutex, not a cell, so the guard can run this on a spawned task; the
    // lock is never held across an await.
    let streams = std::sync::Mutex::new((Vec::new(), Vec::new()));
    let tick = || {
        let streams = streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        on_tick(streams.0.len(), streams.1.len());
    };
    let window = Window { taps: taps.len(), settle, sources: sources.cloned(), on_tick: tick };
    window
        .run(&mut rx, tokio::time::sleep(duration), |index, bytes, arrival_ns| {
            let captured = Captured { bytes: bytes.to_vec(), arrival_ns };
            let mut streams = streams.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if is_reference(index) {
                streams.0.push(captured)
            } else {
                streams.1.push(captured)
            }
            Ok(false)
        })
        .await?;
    Ok(Tapped {
        streams: streams.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner),
        start,
        end: SystemTime::now(),
    })
}

fn parse_ignore(fields: &[String]) -> anyhow::Result<Ignore> {
    let mut ignore = Ignore::default();
    for field in fields {
        match field.as_str() {
            "timestamp" => ignore.timestamp = true,
            "checksum" => ignore.checksum = true,
            "sequence" => ignore.sequence = true,
            other => bail!("--ignore takes timestamp, checksum or sequence, not {other:?}"),
        }
    }
    Ok(ignore)
}

/// The interfaces a capture declares before its first packet (where a
/// capture names its streams), for an error message: read no further, so a
/// large file costs nothing.
fn interface_names(path: &std::path::Path) -> String {
    let Ok(file) = std::fs::File::open(path) else { return "nothing readable".to_owned() };
    let mut reader = myc_verify::pcapng::Reader::new(std::io::BufReader::new(file));
    let _ = reader.next_packet();
    let names: Vec<&str> = reader.interfaces().iter().map(|interface| interface.name.as_str()).collect();
    if names.is_empty() { "no interface".to_owned() } else { names.join(", ") }
}
