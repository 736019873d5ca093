//! Logging set-up: `tracing` to stderr, level from `RUST_LOG` (default
//! `info`; `warn` for commands that narrate on stdout themselves, such as
//! the demo), text or JSON lines. Stdout stays for command output.

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

pub(crate) fn init(format: LogFormat, default_level: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second initialisation (in tests) is harmless, so its error is ignored.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
