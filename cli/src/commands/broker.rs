//! `myc broker`: binds every `--listen` endpoint (default: `[broker.server]
//! listen`, `unix:/tmp/mycelium.sock`) and serves until SIGINT or SIGTERM,
//! then shuts down gracefully (ERROR `shutting_down` to every connection,
//! socket files removed). A live broker on the same socket is refused at
//! start, and so is a non-loopback TCP listener without `broker.token`
//! (exit 2).

use anyhow::bail;
use myc_transport::{Endpoint, Listener, SocketOptions};

use super::{Outcome, shutdown_signal};
use crate::args::{BrokerArgs, GlobalArgs};

pub(crate) fn run(args: &BrokerArgs, global: &GlobalArgs) -> anyhow::Result<Outcome> {
    let settings = super::settings::load(global)?;
    let texts = if args.listen.is_empty() { &settings.broker.server.listen } else { &args.listen };
    let server = server_settings(&settings.broker, &settings.acl);
    let socket_options = SocketOptions {
        mode: myc_config::socket_mode(&settings.broker.server.socket_mode).unwrap_or(0o660),
        group: settings.broker.server.socket_group,
    };
    let endpoints = texts.iter().map(|text| Endpoint::parse(text)).collect::<Result<Vec<_>, _>>()?;
    myc_transport::check_open_file_limit("broker", server.max_connections);
    let runtime = super::runtime()?;
    runtime.block_on(async {
        let mut listeners = Vec::with_capacity(endpoints.len());
        for endpoint in &endpoints {
            let listener = Listener::bind(endpoint, socket_options).await?;
            // Judged on the address actually bound (a name may resolve to
            // anything); nothing is accepted before this check.
            if let Endpoint::Tcp(bound) = listener.local_endpoint() {
                let loopback = bound.parse::<std::net::SocketAddr>().is_ok_and(|address| address.ip().is_loopback());
                if !loopback && server.token.is_none() {
                    bail!(
                        "refusing to listen on {endpoint} (bound to {bound}, not loopback) without a token: \
                         set broker.token (MYC_BROKER__TOKEN), or listen on 127.0.0.1"
                    );
                }
            }
            listeners.push(listener);
        }
        let metrics_address =
            args.metrics.as_deref().or(Some(settings.metrics.listen.as_str()).filter(|a| !a.is_empty()));
        let metrics_listener = crate::metrics_http::bind(metrics_address).await?;
        for listener in &listeners {
            tracing::info!(endpoint = %listener.local_endpoint(), "broker listening");
        }
        let mut metrics = None;
        myc_broker::serve(listeners, server, shutdown_signal(), |handle| {
            metrics = crate::metrics_http::spawn(metrics_listener, |registry| handle.metrics.register(registry));
        })
        .await;
        drop(metrics);
        tracing::info!("broker stopped");
        Ok(Outcome::Success)
    })
}

/// The broker server the settings describe.
pub(crate) fn server_settings(
    broker: &myc_config::BrokerSettings,
    acl: &myc_config::AclSettings,
) -> myc_broker::Settings {
    use myc_broker::server::acl::{Acl, Identity, Permissions, Topics};
    let server = &broker.server;
    myc_broker::Settings {
        max_frame: server.max_frame,
        max_connections: server.max_connections,
        max_subscriptions: server.max_subscriptions,
        max_topics: server.max_topics,
        ack_interval: server.ack_interval.get(),
        write_deadline: server.write_deadline.get(),
        slow_consumer: match server.slow_consumer {
            myc_config::SlowConsumer::Disconnect => myc_broker::SlowConsumerPolicy::Disconnect,
            myc_config::SlowConsumer::DropNew => myc_broker::SlowConsumerPolicy::DropNew,
        },
        token: Some(broker.token.clone()).filter(|token| !token.is_empty()),
        acl: acl.restricts().then(|| Acl {
            clients: acl
                .clients
                .iter()
                .map(|(name, rule)| {
                    let permissions = Permissions {
                        publish: Topics::from_rules(&rule.publish),
                        subscribe: Topics::from_rules(&rule.subscribe),
                    };
                    (name.clone(), permissions)
                })
                .collect(),
            default: Permissions {
                publish: Topics::from_rules(&acl.default_publish),
                subscribe: Topics::from_rules(&acl.default_subscribe),
            },
            identities: acl
                .clients
                .iter()
                .filter(|(_, rule)| rule.is_bound())
                .map(|(name, rule)| {
                    let identity = Identity {
                        token: Some(rule.token.clone()).filter(|token| !token.is_empty()),
                        uids: rule.uids.clone(),
                    };
                    (name.clone(), identity)
                })
                .collect(),
        }),
        ..myc_broker::Settings::default()
    }
}
