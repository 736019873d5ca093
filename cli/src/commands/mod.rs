//! Runs a parsed command line: one module per command, each turning clap
//! values into library calls and rendering the result.
//!
//! It deliberately keeps protocol and server logic out: that lives in the
//! library crates, so tests and other programs get the same behaviour.

mod bench;
mod broker;
mod capture;
mod console;
mod demo;
mod guard;
mod produce;
mod relay;
mod rollout;
mod settings;
mod tlv;
mod verify;

use anyhow::Context;

use crate::args::{Cli, Command, TlvCommand};

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Exit 0.
    Success,
    /// Exit 1: a negative answer (verify found differences, a gate refused).
    Negative,
}

pub(crate) fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Tlv(TlvCommand::Decode(args)) => tlv::decode(args),
        Command::Tlv(TlvCommand::Encode(args)) => tlv::encode(args),
        Command::Bench(args) => bench::run(args, cli.global.format),
        Command::Demo(args) => demo::run(args, cli.global.format),
        Command::Broker(args) => broker::run(args, &cli.global),
        Command::Relay(args) => relay::run(args, &cli.global),
        Command::Produce(args) => produce::run(args, &cli.global),
        Command::Capture(args) => capture::run(args),
        Command::Verify(command) => verify::run(command, &cli.global),
        Command::Rollout(args) => rollout::run(args, &cli.global),
        Command::Config(command) => settings::run(command, &cli.global),
        Command::Console(args) => console::run(args, &cli.global),
    }
}

/// The runtime the long-running commands use.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = async {
            match terminate.as_mut() {
                Some(signal) => { signal.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
