//! The command-line grammar of `myc`: global options and the subcommand
//! tree, as clap derive types, one file per command.
//!
//! It deliberately holds no behaviour: `commands/` turns these values into
//! validated library options and runs them.

mod bench;
mod other;
mod tlv;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

pub(crate) use bench::BenchArgs;
pub(crate) use other::{
    BrokerArgs, CaptureArgs, ConfigCommand, ConsoleArgs, DemoArgs, ProduceArgs, RelayArgs, RolloutArgs, RolloutCommand,
    SourceFilter, VerifyCommand, VerifyLiveArgs,
};
pub(crate) use tlv::{TlvCommand, TlvDecodeArgs, TlvEncodeArgs};

/// The Mycelium migration toolkit: move Protocol V2 producers from the legacy
/// relays to the Mycelium broker without changing a byte.
#[derive(Debug, Parser)]
#[command(name = "myc", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options every command takes, before or after the subcommand.
#[derive(Debug, clap::Args)]
pub(crate) struct GlobalArgs {
    /// Settings file (default: ./myc.toml when present, else built-in defaults).
    #[arg(long, global = true, env = "MYC_CONFIG", value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Output form of structured results.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    pub(crate) format: Format,
    /// Log line format (logs go to stderr; level from RUST_LOG).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
}

/// Output form of structured results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Human,
    /// For programs: one JSON document.
    Json,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the whole migration on an embedded default: broker, relay, producers, rollout, verify.
    Demo(DemoArgs),
    /// Run the Mycelium broker.
    Broker(BrokerArgs),
    /// Run the compatible relay for one domain or all four.
    Relay(RelayArgs),
    /// Run a producer (Polygon, Kraken or synthetic) through the shim.
    Produce(ProduceArgs),
    /// Tap relay sockets, broker topics or NATS subjects into one pcapng file.
    Capture(CaptureArgs),
    /// Prove that two streams carry the same bytes.
    #[command(subcommand)]
    Verify(VerifyCommand),
    /// Show and change per-service rollout stages.
    Rollout(RolloutArgs),
    /// Print, check and show settings.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Decode Protocol V2 messages to canonical JSON, or encode them back.
    #[command(subcommand)]
    Tlv(TlvCommand),
    /// Run the benchmark suite.
    Bench(BenchArgs),
    /// Serve the operator's web console.
    Console(ConsoleArgs),
}
