//! Logging set-up: `tracing` to stderr, level from `RUST_LOG` (default
//! `info`; `warn` for commands that narrate on stdout themselves, such as
//! the demo), text or JSON lines. Stdout stays for command output.
//!
//! Without `RUST_LOG`, the libraries we build on (async-nats, hyper, …) log
//! at WARN only: their INFO lines (every NATS connect) would otherwise flood
//! the output of commands such as `myc bench`.

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

pub(crate) fn init(format: LogFormat, default_level: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives(default_level)));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second initialisation (in tests) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// The filter used when `RUST_LOG` is unset: our crates at `level`, every
/// other crate at WARN (or `level`, when that is quieter).
fn default_directives(level: &str) -> String {
    let ours = [
        "myc",
        "myc_broker",
        "myc_codec",
        "myc_config",
        "myc_transport",
        "myc_relay_compat",
        "myc_rollout",
        "myc_shim",
        "myc_verify",
        "myc_producers",
        "myc_cli",
    ];
    let others = if level == "error" { "error" } else { "warn" };
    let mut directives = others.to_owned();
    for target in ours {
        directives.push_str(&format!(",{target}={level}"));
    }
    directives
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_rust_log_libraries_log_warnings_only_and_ours_at_the_level() {
        let filter = EnvFilter::new(default_directives("info"));
        let shown = filter.to_string();
        assert!(shown.split(',').any(|directive| directive == "warn"), "{shown}");
        assert!(shown.contains("myc_broker=info"), "{shown}");
        assert!(!shown.contains("async_nats"), "{shown}");
    }
}
