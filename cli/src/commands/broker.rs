//! `myc broker`: binds every `--listen` endpoint (default
//! `unix:/tmp/mycelium.sock`) and serves until SIGINT or SIGTERM, then shuts
//! down gracefully (ERROR `shutting_down` to every connection, socket files
//! removed). A live broker on the same socket is refused at start (exit 2).

use anyhow::bail;
use transport::{Endpoint, Listener, SocketOptions};

use super::{Outcome, shutdown_signal};
use crate::args::BrokerArgs;

const DEFAULT_ENDPOINT: &str = "unix:/tmp/mycelium.sock";

pub(crate) fn run(args: &BrokerArgs) -> anyhow::Result<Outcome> {
    let texts: Vec<&str> =
        if args.listen.is_empty() { vec![DEFAULT_ENDPOINT] } else { args.listen.iter().map(String::as_str).collect() };
    let endpoints = texts.iter().map(|text| Endpoint::parse(text)).collect::<Result<Vec<_>, _>>()?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let mut listeners = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            if let Endpoint::Tcp(address) = endpoint {
                let loopback = address.starts_with("127.") || address.starts_with("localhost:") || address.starts_with("[::1]:");
                if !loopback {
                    bail!("refusing to listen on non-loopback {endpoint} without a token (token auth is not configurable yet)");
                }
            }
            listeners.push(Listener::bind(endpoint, SocketOptions::default()).await?);
        }
        let metrics_listener = crate::metrics_http::bind(args.metrics.as_deref()).await?;
        for listener in &listeners {
            tracing::info!(endpoint = %listener.local_endpoint(), "broker listening");
        }
        let mut metrics = None;
        broker::serve(listeners, broker::Settings::default(), shutdown_signal(), |handle| {
            metrics = crate::metrics_http::spawn(metrics_listener, |registry| handle.metrics.register(registry));
        })
        .await;
        drop(metrics);
        tracing::info!("broker stopped");
        Ok(Outcome::Success)
    })
}
