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
    myc_config::load(&sources).with_context(|| format!("settings refused ({shown})"))
}

pub(crate) fn run(command: &ConfigCommand, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let mut out = std::io::stdout().lock();
    match command {
        ConfigCommand::PrintDefault => {
            writeln!(out, "# myc.toml: every key with its default value.\n")?;
            write!(out, "{}", Settings::default().to_toml()?)?;
        }
        ConfigCommand::Check { file } => {
            myc_config::load(&Sources::file_only(file)).with_context(|| format!("{} is refused", file.display()))?;
            writeln!(out, "{}: ok", file.display())?;
        }
        ConfigCommand::Show => {
            let settings = load(global)?;
            match global.format {
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&settings)?)?,
                Format::Human => write!(out, "{}", settings.to_toml()?)?,
            }
        }
    }
    out.flush()?;
    Ok(Outcome::Success)
}
