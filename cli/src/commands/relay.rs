//! `myc relay`: runs the compatible relay for one domain (`--domain NAME`,
//! socket from `--socket` or the legacy default) or all four (`--all`), until
//! SIGINT or SIGTERM; then it stops accepting, drains the queues and removes
//! the socket files. A live relay on a socket is refused at start (exit 2).

use std::path::PathBuf;

use anyhow::{Context, bail};
use codec::Domain;
use transport::{Endpoint, Listener, SocketOptions};

use super::Outcome;
use super::shutdown_signal;
use crate::args::RelayArgs;

pub(crate) fn run(args: &RelayArgs) -> anyhow::Result<Outcome> {
    let relays = plan(args)?;
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let mut listeners = Vec::with_capacity(relays.len());
        for (domain, path) in relays {
            let listener = Listener::bind(&Endpoint::Unix(path.clone()), SocketOptions::default()).await?;
            tracing::info!(domain = domain.name(), socket = %path.display(), "relay listening");
            listeners.push((domain, listener));
        }
        let metrics_listener = crate::metrics_http::bind(args.metrics.as_deref()).await?;
        let mut metrics = None;
        relay_compat::serve(listeners, relay_compat::RelaySettings::default(), shutdown_signal(), |handle| {
            metrics = crate::metrics_http::spawn(metrics_listener, |registry| handle.metrics.register(registry));
        })
        .await;
        drop(metrics);
        tracing::info!("relay stopped");
        Ok(Outcome::Success)
    })
}

/// The domains to relay and their socket paths.
fn plan(args: &RelayArgs) -> anyhow::Result<Vec<(Domain, PathBuf)>> {
    let default_path = |domain: Domain| relay_compat::default_socket(domain).map(PathBuf::from);
    if args.all {
        if args.socket.is_some() {
            bail!("--socket names one socket; with --all each domain uses its own");
        }
        return Ok(Domain::ALL.into_iter().filter_map(|domain| Some((domain, default_path(domain)?))).collect());
    }
    let Some(name) = &args.domain else {
        bail!("say which relay: --domain market_data|signal|execution|system, or --all");
    };
    let Some(domain) = Domain::from_name(name) else {
        bail!("unknown domain {name:?}: expected market_data, signal, execution or system");
    };
    let path = match &args.socket {
        Some(path) => path.clone(),
        None => default_path(domain).context("no default socket for that domain")?,
    };
    Ok(vec![(domain, path)])
}
