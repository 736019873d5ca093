//! Porting a producer: an existing service that publishes Protocol V2
//! messages through the legacy relay client, moved onto the shim so the
//! rollout plan decides where its messages go (relay, both, broker). The
//! lines that change are marked `// ported`; everything else — building the
//! messages, the loop, the error handling — stays as it was. The whole diff:
//!
//! ```text
//! -use relay_client::RelayClient;
//! +use myc_shim::{Publisher, ServicePublisher};                                  // ported
//! -async fn publish_ticks(relay_client: &RelayClient, first: u64, count: u64) … {
//! +async fn publish_ticks(relay_client: &impl Publisher, first: u64, count: u64) … { // ported
//! -        relay_client.send_message(&msg)?;
//! +        relay_client.publish(&msg).await?;                                      // ported
//! -    let relay_client = RelayClient::connect("/var/run/relay/market_data.sock")?;
//! +    let relay_client = ServicePublisher::from_settings_file(settings, "tick_collector").await?; // ported
//! ```
//!
//! `ServicePublisher::from_settings_file` reads the toolkit's settings file,
//! follows the service's stage in the rollout plan live, and re-reads the
//! settings on change. `Publisher`'s methods are `async`, so the trait is
//! used generically (`&impl Publisher`, or `P: Publisher`), not as
//! `Box<dyn Publisher>`: a service that must choose at run time holds a
//! `ServicePublisher`, which already is that choice.
//!
//! Once the service has reached `broker` for good, its `Cargo.toml` drops
//! the relay client (and NATS, if it does not use it) — the one line it
//! changes:
//!
//! ```toml
//! myc-shim = { version = "0.1", default-features = false, features = ["broker"] }
//! ```
//!
//! A build without a path refuses to start at a stage that needs it, and
//! later refuses to move there (it stays, logs one ERROR, counts
//! `myc_shim_stage_unavailable_total`).
//!
//! Run it: `cargo run -p myc-shim --example port_a_producer -- myc.toml`.
//! It deliberately does no more than a service would: it publishes a few
//! ticks and flushes.

use std::time::Duration;

use myc_codec::{Domain, Header, MessageBuilder, Source, TlvType};
use myc_shim::{Publisher, ServicePublisher}; // ported

/// The service's name in the rollout plan.
pub(crate) const SERVICE: &str = "tick_collector";

/// The service's own message: a market-data tick numbered `sequence`.
pub(crate) fn tick(sequence: u64) -> Vec<u8> {
    let header = Header::new(Domain::MarketData, Source::TestClient, sequence, 1_764_172_800_000_000_000 + sequence);
    let payload = sequence.to_le_bytes();
    match MessageBuilder::new(header).tlv(TlvType::from_u8(200), &payload) {
        Ok(builder) => builder.build(),
        // Cannot happen: an 8-byte TLV always fits.
        Err(_) => Vec::new(),
    }
}

/// The service's publishing loop: unchanged but for its parameter's type.
pub(crate) async fn publish_ticks(
    relay_client: &impl Publisher, // ported
    first: u64,
    count: u64,
) -> Result<(), myc_shim::Error> {
    for sequence in first..first + count {
        let msg = tick(sequence);
        relay_client.publish(&msg).await?; // ported
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let settings = std::env::args().nth(1).unwrap_or_else(|| "myc.toml".to_owned());
    let relay_client = ServicePublisher::from_settings_file(settings, SERVICE).await?; // ported
    publish_ticks(&relay_client, 1, 1_000).await?;
    relay_client.flush(Duration::from_secs(5)).await?;
    Ok(())
}
