//! `myc bench`.

#[derive(Debug, clap::Args)]
pub(crate) struct BenchArgs {
    /// Run only this scenario (repeatable); `codec` selects the three codec scenarios.
    #[arg(long = "scenario", value_name = "NAME")]
    pub(crate) scenarios: Vec<String>,
    /// Print one JSON object with every figure instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// One short run per scenario (smoke test).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Also draw the run as an SVG: throughput relative to raw_uds and to
    /// NATS, and latency percentiles.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<std::path::PathBuf>,
    /// Runs per scenario (the report gives min, median and max).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub(crate) runs: u32,
}
