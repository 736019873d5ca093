//! The porting example (`examples/port_a_producer.rs`) under each build of
//! the shim: a build with one path refuses to start at a stage that needs
//! the other (naming the feature to enable), publishes at a stage it can
//! serve, and told by the rollout plan to move where it cannot, stays —
//! one ERROR logged, `myc_shim_stage_unavailable_total` counting it. The
//! one-path tests run when the shim is tested with that build
//! (`--no-default-features --features broker`, `--features relay`), as CI
//! does for every feature combination.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
#![allow(dead_code, unused_imports, reason = "which helpers run depends on the features built")]

#[allow(dead_code, reason = "the example's main is not called here")]
#[path = "../examples/port_a_producer.rs"]
mod example;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use myc_config::Stage;
use myc_shim::{Publisher, ServicePublisher};
use myc_transport::{Endpoint, Listener, SocketOptions};

/// A settings file and its rollout plan in a temp dir; sockets beside them.
struct Setup {
    dir: tempfile::TempDir,
    settings_file: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let settings_file = dir.path().join("myc.toml");
        let at = |name: &str| dir.path().join(name).display().to_string();
        let text = format!(
            "[relay]\nmarket_data = {:?}\n[broker]\nendpoint = \"unix:{}\"\n[rollout]\nfile = {:?}\n",
            at("market_data.sock"),
            at("mycelium.sock"),
            at("rollout.toml")
        );
        std::fs::write(&settings_file, text).unwrap();
        Setup { dir, settings_file }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Puts the example's service at `stage`, atomically (readers never see
    /// half a file).
    fn plan(&self, stage: Stage) {
        let partial = self.path("rollout.toml.partial");
        std::fs::write(&partial, format!("[services.{}]\nstage = \"{}\"\n", example::SERVICE, stage.name())).unwrap();
        std::fs::rename(partial, self.path("rollout.toml")).unwrap();
    }
}

async fn listener(path: &Path) -> Listener {
    Listener::bind(&Endpoint::Unix(path.to_owned()), SocketOptions::default()).await.unwrap()
}

/// The log lines written while it is installed (on this thread).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl Write for Log {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Log {
    fn install(&self) -> tracing::subscriber::DefaultGuard {
        let log = self.clone();
        let subscriber = tracing_subscriber::fmt().with_ansi(false).with_writer(move || log.clone()).finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn errors(&self) -> Vec<String> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines().filter(|line| line.contains("ERROR")).map(str::to_owned).collect()
    }
}

/// Waits (bounded) until the publisher's plan says `stage`.
async fn plan_reaches<R: Publisher, B: Publisher>(publisher: &ServicePublisher<R, B>, stage: Stage) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while publisher.stage().get() != stage {
        assert!(Instant::now() < deadline, "the publisher never saw the plan move to {stage}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The publisher of a one-path build: refused at `refused` naming
/// `feature`; at `served` it publishes 100 ticks; then the plan moves to
/// `refused` live and 100 more go on the same path, the move logged once
/// and counted once.
async fn one_path_build(setup: &Setup, refused: Stage, served: Stage, feature: &str) {
    setup.plan(refused);
    let error = ServicePublisher::from_settings_file(&setup.settings_file, example::SERVICE).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains(&format!("`{feature}` feature")) && text.contains(refused.name()), "{text}");
    assert!(text.contains(&format!("features = [\"{feature}\"]")), "the Cargo.toml line to change: {text}");

    setup.plan(served);
    let publisher = ServicePublisher::from_settings_file(&setup.settings_file, example::SERVICE).await.unwrap();
    example::publish_ticks(&publisher, 1, 100).await.unwrap();
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    let on_path = |summary: &myc_shim::Summary| match served {
        Stage::Relay => summary.relay.published,
        _ => summary.broker.published,
    };
    assert_eq!(on_path(&publisher.summary()), 100);

    let log = Log::default();
    let _guard = log.install();
    setup.plan(refused);
    plan_reaches(&publisher, refused).await;
    example::publish_ticks(&publisher, 101, 100).await.unwrap();
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    let summary = publisher.summary();
    assert_eq!((summary.stage, on_path(&summary)), (served, 200), "it stays where it can publish");
    assert_eq!(publisher.stage_unavailable().get(), 1);
    let errors = log.errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains(&format!("`{feature}` feature")) && errors[0].contains(refused.name()), "{errors:?}");

    let mut registry = prometheus_client::registry::Registry::default();
    publisher.register(&mut registry, example::SERVICE);
    let mut exposition = String::new();
    prometheus_client::encoding::text::encode(&mut exposition, &registry).unwrap();
    assert!(exposition.contains("myc_shim_stage_unavailable_total{service=\"tick_collector\"} 1"), "{exposition}");
}

#[cfg(all(feature = "broker", not(feature = "relay")))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_only_build_refuses_relay_stages_and_stays_at_broker() {
    let setup = Setup::new();
    let _broker =
        myc_broker::spawn(vec![listener(&setup.path("mycelium.sock")).await], myc_broker::Settings::default()).await;
    one_path_build(&setup, Stage::DualRelayPrimary, Stage::Broker, "relay").await;
    // Straight to relay as well: the same refusal, counted as a new one.
    setup.plan(Stage::Relay);
    let error = ServicePublisher::from_settings_file(&setup.settings_file, example::SERVICE).await.unwrap_err();
    assert!(error.to_string().contains("`relay` feature"), "{error}");
}

#[cfg(all(feature = "relay", not(feature = "broker"), not(feature = "nats")))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_only_build_refuses_broker_stages_and_stays_at_relay() {
    let setup = Setup::new();
    let relay_listener = listener(&setup.path("market_data.sock")).await;
    let _relay = myc_relay_compat::spawn(
        vec![(myc_codec::Domain::MarketData, relay_listener)],
        myc_relay_compat::RelaySettings::default(),
    )
    .await;
    one_path_build(&setup, Stage::DualBrokerPrimary, Stage::Relay, "broker").await;
}

#[cfg(all(feature = "relay", feature = "broker"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_build_walks_every_stage_with_nothing_refused() {
    let setup = Setup::new();
    let _broker =
        myc_broker::spawn(vec![listener(&setup.path("mycelium.sock")).await], myc_broker::Settings::default()).await;
    let relay_listener = listener(&setup.path("market_data.sock")).await;
    let _relay = myc_relay_compat::spawn(
        vec![(myc_codec::Domain::MarketData, relay_listener)],
        myc_relay_compat::RelaySettings::default(),
    )
    .await;
    setup.plan(Stage::Relay);
    let publisher = ServicePublisher::from_settings_file(&setup.settings_file, example::SERVICE).await.unwrap();
    let mut first = 1;
    for stage in Stage::ALL {
        setup.plan(stage);
        plan_reaches(&publisher, stage).await;
        example::publish_ticks(&publisher, first, 50).await.unwrap();
        first += 50;
        assert_eq!(publisher.summary().stage, stage);
    }
    publisher.flush(Duration::from_secs(10)).await.unwrap();
    let summary = publisher.summary();
    // relay: relay, dual, dual; broker: dual, dual, broker.
    assert_eq!((summary.relay.published, summary.broker.published), (150, 150));
    assert_eq!(publisher.stage_unavailable().get(), 0);
}
