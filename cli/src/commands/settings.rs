//! The settings every command starts from (`--config`, `MYC_CONFIG`,
//! `./myc.toml`, the environment), and `myc config`: `print-default`,
//! `check FILE` and `show` (the effective settings after every layer).

use std::io::Write;

use anyhow::Context;
use myc_config::{Settings, Sources};

use super::Outcome;
use crate::args::{ConfigCommand, Format, GlobalArgs};

/// Loads the effective settings; a refused configuration is an error (exit 2).
pub(crate) fn load(global: &GlobalArgs) -> anyhow::Result<Settings> {
    let sources = Sources::discover(global.config.clone());
    let shown = sources.file.as_ref().map_or_else(|| "built-in defaults".to_owned(), |file| file.display().to_string());
    let settings = myc_config::load(&sources).with_context(|| format!("settings refused ({shown})"))?;
    tracing::info!(settings = %shown, "settings loaded");
    Ok(settings)
}

/// The services of the bundled producers, commented: uncomment those you
/// run so that the gate and the broker link know their source ids.
const BUNDLED_SERVICES: &str = "
# Services: each service name and the Protocol V2 source id its messages
# carry (the gate, verify --service and the relay's broker link use it).
# The bundled producers, as `myc produce --service NAME` names them:
# [services.polygon_adapter]
# source = 4        # PolygonCollector
# [services.kraken_adapter]
# source = 2        # KrakenCollector
# [services.coinbase_adapter]
# source = 3        # CoinbaseCollector
# [services.binance_adapter]
# source = 1        # BinanceCollector
";

/// Keys whose values are secrets: shown as `***` by `myc config show`.
const SECRET_KEYS: [&str; 5] = ["token", "tokens", "password", "secret", "api_key"];

/// The settings as a JSON value with every non-empty secret replaced by
/// `***` (an empty one stays empty, so "no token" still shows) and unset
/// optional keys left out.
fn masked(settings: &Settings) -> anyhow::Result<serde_json::Value> {
    fn walk(value: &mut serde_json::Value, secret: bool) {
        match value {
            serde_json::Value::Object(map) => {
                map.retain(|_, child| !child.is_null());
                for (key, child) in map.iter_mut() {
                    walk(child, secret || SECRET_KEYS.contains(&key.as_str()));
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(|item| walk(item, secret)),
            serde_json::Value::String(text) if secret && !text.is_empty() => *text = "***".to_owned(),
            _ => {}
        }
    }
    let mut value = serde_json::to_value(settings)?;
    walk(&mut value, false);
    Ok(value)
}

pub(crate) fn run(command: &ConfigCommand, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match command {
        ConfigCommand::PrintDefault => {
            writeln!(out, "# myc.toml: every key with its default value.\n")?;
            write!(out, "{}", Settings::default().to_toml()?)?;
            write!(out, "{BUNDLED_SERVICES}")?;
        }
        ConfigCommand::Check { file } => {
            let settings = myc_config::load(&Sources::file_only(file))
                .with_context(|| format!("{} is refused", file.display()))?;
            for warning in settings.warnings() {
                writeln!(out, "{}: warning: {warning}", file.display())?;
            }
            writeln!(out, "{}: ok", file.display())?;
        }
        ConfigCommand::Show { show_secrets } => {
            let settings = load(global)?;
            match (global.format, show_secrets) {
                (Format::Json, true) => writeln!(out, "{}", serde_json::to_string_pretty(&settings)?)?,
                (Format::Human, true) => write!(out, "{}", settings.to_toml()?)?,
                (Format::Json, false) => writeln!(out, "{}", serde_json::to_string_pretty(&masked(&settings)?)?)?,
                (Format::Human, false) => write!(out, "{}", toml::to_string_pretty(&masked(&settings)?)?)?,
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}
