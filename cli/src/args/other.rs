//! The grammar of the commands whose behaviour arrives with later issues.
//! Their options are fixed now (as the README documents them) so that
//! building them fills in behaviour rather than reshaping the CLI.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub(crate) struct DemoArgs {
    /// Seconds spent in each rollout stage (fractions allowed).
    #[arg(long, default_value_t = 3.0)]
    pub(crate) stage_seconds: f64,
    /// Messages per second each producer publishes.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) rate: u64,
    /// Keep the temporary directory (captures, audit log) after the demo.
    #[arg(long)]
    pub(crate) keep: bool,
    /// The adapters replayed through the shim, comma-separated: polygon,
    /// kraken, coinbase, binance (`--feeds polygon,kraken,coinbase,binance`
    /// for all four). Each is its own service and source; with coinbase the
    /// legacy producer is Gemini-like (source 5) instead of Coinbase-like.
    #[arg(long, value_delimiter = ',', default_value = "polygon,kraken", value_name = "FEED,...")]
    pub(crate) feeds: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BrokerArgs {
    /// Listen on `unix:PATH` or `tcp:HOST:PORT` (repeatable).
    #[arg(long = "listen", value_name = "ENDPOINT")]
    pub(crate) listen: Vec<String>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RelayArgs {
    /// The domain to relay (market_data, signal, execution, system).
    #[arg(long, conflicts_with = "all")]
    pub(crate) domain: Option<String>,
    /// Relay all four domains in one process.
    #[arg(long)]
    pub(crate) all: bool,
    /// Socket path for this run (overrides the configured one).
    #[arg(long)]
    pub(crate) socket: Option<PathBuf>,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
    /// Link each relay to its broker topic, driven by the rollout plan:
    /// unchanged producers migrate, relay consumers stay fed.
    #[arg(long)]
    pub(crate) bridge: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ProduceArgs {
    /// Feed kind: polygon, kraken, coinbase, binance or synthetic.
    #[arg(long)]
    pub(crate) feed: String,
    /// Replay file, `-` for stdin, or a ws:// / wss:// URL.
    #[arg(long)]
    pub(crate) input: Option<String>,
    /// Service name (its rollout stage decides the route).
    #[arg(long)]
    pub(crate) service: Option<String>,
    /// Take timestamps from the events so the same input gives the same bytes.
    #[arg(long)]
    pub(crate) deterministic: bool,
    /// Messages per second (default: as fast as possible).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Pace a replay by event time.
    #[arg(long)]
    pub(crate) realtime: bool,
    /// Stop after this many messages.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Replay the input file again and again, sequences continuing, until
    /// `--count` or Ctrl-C (enough evidence for the gate from a sample).
    #[arg(long = "loop")]
    pub(crate) repeat: bool,
    /// Dry run: write the messages to this pcapng capture instead of publishing.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// On exit, print the summary as the last line of stdout.
    #[arg(long)]
    pub(crate) summary_json: bool,
    /// Serve Prometheus metrics on this address.
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct CaptureArgs {
    /// Tap this relay socket (repeatable).
    #[arg(long = "relay", value_name = "PATH")]
    pub(crate) relays: Vec<PathBuf>,
    /// Tap this broker endpoint (with --topic; repeatable).
    #[arg(long = "broker", value_name = "ENDPOINT")]
    pub(crate) brokers: Vec<String>,
    /// Broker topic to tap (repeatable).
    #[arg(long = "topic")]
    pub(crate) topics: Vec<String>,
    /// Tap this NATS server (with --subject; repeatable).
    #[arg(long = "nats", value_name = "URL")]
    pub(crate) nats: Vec<String>,
    /// NATS subject to tap (repeatable).
    #[arg(long = "subject")]
    pub(crate) subjects: Vec<String>,
    /// Output pcapng file.
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Stop after this long (e.g. 10s).
    #[arg(long)]
    pub(crate) duration: Option<String>,
    /// Stop after this many messages.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// After --duration, keep reading this long for what was in flight
    /// (only messages another tap has already shown).
    #[arg(long, default_value = "500ms")]
    pub(crate) settle: String,
}

/// Which sources a verify keeps, on both sides.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct SourceFilter {
    /// Keep only this Protocol V2 source id (repeatable).
    #[arg(long = "source", value_name = "N")]
    pub(crate) sources: Vec<u8>,
    /// Keep only this service's source (its `[services.NAME] source`).
    #[arg(long, value_name = "NAME")]
    pub(crate) service: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum VerifyCommand {
    /// Compare two captures, or two interfaces of one capture.
    Files {
        /// Reference capture (or the one file holding both streams).
        reference: PathBuf,
        /// Candidate capture.
        candidate: Option<PathBuf>,
        /// Reference interface name inside one file.
        #[arg(long)]
        reference_if: Option<String>,
        /// Candidate interface name inside one file.
        #[arg(long)]
        candidate_if: Option<String>,
        /// Compare as if this header field were equal (timestamp, checksum, sequence; repeatable).
        #[arg(long)]
        ignore: Vec<String>,
        /// Examples per kind in the report.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        /// Compare only each source's common span: captures taken from a
        /// running system, whose first and last messages were in flight.
        #[arg(long)]
        trim_edges: bool,
        #[command(flatten)]
        filter: SourceFilter,
    },
    /// Tap both streams now for a while, then report (streams from the settings unless named).
    Live(VerifyLiveArgs),
}

/// `myc verify live`.
#[derive(Debug, clap::Args)]
pub(crate) struct VerifyLiveArgs {
    /// The reference: this relay socket (default: the `[relay]` socket of --domain).
    #[arg(long)]
    pub(crate) relay: Option<PathBuf>,
    /// The domain whose streams are tapped when not named.
    #[arg(long, default_value = "market_data", value_parser = ["market_data", "signal", "execution", "system"])]
    pub(crate) domain: String,
    /// The candidate: this broker endpoint (with --topic)…
    #[arg(long, requires = "topic", conflicts_with = "nats")]
    pub(crate) broker: Option<String>,
    /// …and topic.
    #[arg(long, requires = "broker")]
    pub(crate) topic: Option<String>,
    /// Or the candidate: this NATS server (with --subject)…
    #[arg(long, requires = "subject")]
    pub(crate) nats: Option<String>,
    /// …and subject.
    #[arg(long, requires = "nats")]
    pub(crate) subject: Option<String>,
    /// How long to tap (e.g. 10s).
    #[arg(long, default_value = "10s")]
    pub(crate) duration: String,
    /// After --duration, keep reading this long for what was in flight.
    #[arg(long, default_value = "500ms")]
    pub(crate) settle: String,
    /// Compare as if this header field were equal (timestamp, checksum, sequence; repeatable).
    #[arg(long)]
    pub(crate) ignore: Vec<String>,
    /// Examples per kind in the report.
    #[arg(long, default_value_t = 5)]
    pub(crate) examples: usize,
    #[command(flatten)]
    pub(crate) filter: SourceFilter,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RolloutArgs {
    /// The rollout plan (default: `[rollout] file` of the settings).
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) file: Option<PathBuf>,
    #[command(subcommand)]
    pub(crate) command: RolloutCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum RolloutCommand {
    /// Every service's stage.
    Status,
    /// Set a stage (operator override, audited, not gated).
    Set {
        /// Service name.
        service: String,
        /// relay, dual_relay_primary, dual_broker_primary or broker.
        stage: String,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move one stage forward, given verify evidence.
    Advance {
        /// Service name.
        service: String,
        /// A verify JSON report for this service's stream.
        #[arg(long)]
        evidence: Option<PathBuf>,
        /// Skip the gate (recorded in the audit log).
        #[arg(long)]
        force: bool,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move back toward relay (never gated).
    Rollback {
        /// Service name.
        service: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Go straight to this stage.
        #[arg(long)]
        to: Option<String>,
    },
    /// Watch the services past relay and roll back a regression (runs until
    /// SIGINT/SIGTERM; `--format json`: one decision per line).
    Guard {
        /// Evaluate one window and exit: 0 nothing to do, 1 rolled back, 2 error.
        #[arg(long)]
        once: bool,
        /// Decide and report, but change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Serve the guard's Prometheus metrics on this address.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
    },
    /// The audit log, oldest first.
    History {
        /// Only this service.
        service: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum ConfigCommand {
    /// Print the built-in default settings.
    PrintDefault,
    /// Check a settings file.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// The effective settings after every layer (secrets shown as `***`).
    Show {
        /// Print tokens and other secrets in clear.
        #[arg(long)]
        show_secrets: bool,
    },
}

#[derive(Debug, clap::Args)]
pub(crate) struct ConsoleArgs {
    /// Address to serve the console on (loopback unless a token is set).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: String,
    /// Token every request must carry (`Authorization: Bearer …`, or open
    /// the page once with `?token=…`); overrides `console.token`.
    #[arg(long)]
    pub(crate) token: Option<String>,
}
