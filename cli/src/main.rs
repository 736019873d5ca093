//! `myc`, the one binary of the Mycelium migration toolkit: parses the
//! command line, sets up logging, runs the command and maps its outcome to an
//! exit code (0 success, 1 a negative answer, 2 an error; a closed stdout
//! pipe is a success).
//!
//! It deliberately holds only glue: every capability lives in a library
//! crate, and this binary is the only place that prints, exits or uses
//! `anyhow`.

mod args;
mod commands;
mod logging;
mod metrics_http;
mod progress;

use std::io;
use std::process::ExitCode;

use clap::Parser;

use crate::args::Cli;
use crate::commands::Outcome;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if matches!(cli.command, args::Command::Demo(_)) { "warn" } else { "info" };
    logging::init(cli.global.log_format, default_level);
    match commands::run(&cli) {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Negative) => ExitCode::from(1),
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            #[allow(clippy::print_stderr, reason = "the binary reports its own failure")]
            {
                eprintln!("error: {error:#}");
            }
            ExitCode::from(2)
        }
    }
}

/// Whether the failure is only that whoever read our stdout went away
/// (`myc tlv decode big.bin | head`), which is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
}
