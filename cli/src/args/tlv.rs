//! `myc tlv decode` and `myc tlv encode`.

use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum TlvCommand {
    /// Binary (or hex) messages in, one canonical JSON object per line out.
    Decode(TlvDecodeArgs),
    /// Canonical JSON lines in, binary (or hex) messages out.
    Encode(TlvEncodeArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct TlvDecodeArgs {
    /// Input file of concatenated messages; `-` or nothing reads stdin.
    pub(crate) input: Option<PathBuf>,
    /// Read one message per line, in hex (blank lines and `#` comments skipped).
    #[arg(long)]
    pub(crate) hex: bool,
    /// Check non-zero checksums; a mismatch is an error.
    #[arg(long)]
    pub(crate) verify_checksum: bool,
    /// With a pcapng capture as input: decode only this interface's packets
    /// (`relay:/tmp/torq/market_data.sock`, `broker:market_data`, …); every
    /// packet of the file without it.
    #[arg(long, value_name = "NAME", conflicts_with = "hex")]
    pub(crate) interface: Option<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TlvEncodeArgs {
    /// Input file of JSON lines; `-` or nothing reads stdin.
    pub(crate) input: Option<PathBuf>,
    /// Write one message per line in hex instead of binary.
    #[arg(long)]
    pub(crate) hex: bool,
}
