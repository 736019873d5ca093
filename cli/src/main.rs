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
                eprintln!("error: {}", error_chain(&error));
            }
            ExitCode::from(2)
        }
    }
}

/// The error and its causes joined by `: `, each said once: a cause whose
/// text the message before it already ends with (a wrapper that prints its
/// source, as `io::Error` inside many library errors does) is not repeated.
fn error_chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|previous| previous.ends_with(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Whether the failure is only that whoever read our stdout went away
/// (`myc tlv decode big.bin | head`), which is not an error.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error
        .chain()
        .filter_map(|cause| cause.downcast_ref::<io::Error>())
        .any(|io_error| io_error.kind() == io::ErrorKind::BrokenPipe)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A library error that prints its source in its own text.
    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(formatter, "cannot open the plan: {}", self.0)
        }
    }

    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn a_cause_already_in_its_wrappers_text_is_said_once() {
        let io_error = io::Error::new(io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let error = anyhow::Error::new(Wrapper(io_error)).context("rollout.toml");
        assert_eq!(error_chain(&error), "rollout.toml: cannot open the plan: No such file or directory (os error 2)");
    }

    #[test]
    fn distinct_causes_are_all_kept() {
        let error = anyhow::anyhow!("inner").context("middle").context("outer");
        assert_eq!(error_chain(&error), "outer: middle: inner");
    }
}
