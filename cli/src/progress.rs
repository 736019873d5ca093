//! Progress on a terminal (indicatif): a byte bar for reading large files,
//! a live counter for captures and a window bar for live verifies. Both draw to stderr and stay silent when
//! stderr is not a terminal, so pipes and tests see only the output proper.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Files smaller than this are read too fast for a bar to help.
const BAR_FROM_BYTES: u64 = 32 * 1024 * 1024;

/// A bar over `total` bytes, or a hidden one for small inputs.
pub(crate) fn bytes_bar(total: u64, label: &str) -> ProgressBar {
    if total < BAR_FROM_BYTES {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let template = "{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}";
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}

/// A live message counter with its rate, redrawn a few times a second.
pub(crate) fn counter(label: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {prefix}: {human_pos} messages ({per_sec}) {elapsed}") {
        bar.set_style(style);
    }
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// A bar over a live window of `duration`: elapsed and remaining time, and
/// a message the caller keeps up to date (the running counts).
pub(crate) fn window_bar(duration: Duration, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1));
    if let Ok(style) = ProgressStyle::with_template("{prefix} [{bar:30}] {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(label.to_owned());
    bar
}
