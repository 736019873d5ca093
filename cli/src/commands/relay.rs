//! `myc relay`: runs the compatible relay for one domain (`--domain NAME`,
//! socket from `--socket` or `[relay]` of the settings) or all four (`--all`), until
//! SIGINT or SIGTERM; then it stops accepting, drains the queues and removes
//! the socket files. A live relay on a socket is refused at start (exit 2).
//! With `--bridge`, each relay is linked to its broker topic by the rollout
//! plan (docs/relay.md §6): the link lives in the shim; this only wires it.

use std::path::PathBuf;

use anyhow::{Context, bail};
use myc_codec::Domain;
use myc_transport::{Endpoint, Listener, SocketOptions};

use super::Outcome;
use super::shutdown_signal;
use crate::args::{GlobalArgs, RelayArgs};

pub(crate) fn run(args: &RelayArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let relays = plan(args, &settings.relay)?;
    let socket_options = SocketOptions {
        mode: myc_config::socket_mode(&settings.relay_server.socket_mode).unwrap_or(0o660),
        group: settings.relay_server.socket_group,
    };
    myc_transport::check_open_file_limit("relay", settings.relay_server.max_connections * relays.len());
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let mut listeners = Vec::with_capacity(relays.len());
        for (domain, path) in relays {
            let listener = Listener::bind(&Endpoint::Unix(path.clone()), socket_options).await?;
            tracing::info!(domain = domain.name(), socket = %path.display(), "relay listening");
            listeners.push((domain, listener));
        }
        let metrics_address =
            args.metrics.as_deref().or(Some(settings.metrics.listen.as_str()).filter(|a| !a.is_empty()));
        let metrics_listener = crate::metrics_http::bind(metrics_address).await?;
        let mut server = server_settings(&settings.relay_server);
        let bridge = if args.bridge {
            let domains: Vec<Domain> = listeners.iter().map(|(domain, _)| *domain).collect();
            let bridge = myc_shim::RelayBridge::start(&settings, &domains, "relay-link")
                .await
                .context("starting the broker link")?;
            server.links = bridge.links();
            tracing::info!(backend = ?settings.broker.backend, "broker link on");
            Some(bridge)
        } else {
            None
        };
        let mut metrics = None;
        myc_relay_compat::serve(listeners, server, shutdown_signal(), |handle| {
            metrics = crate::metrics_http::spawn(metrics_listener, |registry| {
                handle.metrics.register(registry);
                if let Some(bridge) = &bridge {
                    bridge.metrics().register(registry);
                }
            });
        })
        .await;
        if let Some(bridge) = &bridge {
            // What the relay accepted before it stopped reaches the broker.
            if let Err(error) = bridge.flush(std::time::Duration::from_secs(5)).await {
                tracing::warn!(%error, "broker link: not every message reached the broker before exit");
            }
        }
        drop(metrics);
        tracing::info!("relay stopped");
        Ok(Outcome::Success)
    })
}

/// The domains to relay and their socket paths.
fn plan(args: &RelayArgs, paths: &myc_config::RelayPaths) -> anyhow::Result<Vec<(Domain, PathBuf)>> {
    let default_path = |domain: Domain| paths.for_domain(domain.as_u8()).cloned();
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

/// The relay server the settings describe.
pub(crate) fn server_settings(relay: &myc_config::RelayServerSettings) -> myc_relay_compat::RelaySettings {
    myc_relay_compat::RelaySettings {
        max_message: relay.max_message,
        max_connections: relay.max_connections,
        queue_messages: relay.queue_messages,
        queue_bytes: relay.queue_bytes,
        policy: match relay.policy {
            myc_config::RelayQueuePolicy::DropOldest => myc_relay_compat::QueuePolicy::DropOldest,
            myc_config::RelayQueuePolicy::Disconnect => myc_relay_compat::QueuePolicy::Disconnect,
        },
        stall_timeout: relay.stall_timeout.get(),
        ..myc_relay_compat::RelaySettings::default()
    }
}
