//! Serves a Prometheus registry over HTTP (`GET /metrics`, OpenMetrics text)
//! for the long-running commands' `--metrics ADDR`.
//!
//! It deliberately serves nothing else: the console is its own command.

use std::sync::Arc;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use prometheus_client::registry::Registry;

/// Binds `--metrics ADDR` now, when given, so a bad address fails at start
/// rather than later, and logs where it listens.
pub(crate) async fn bind(address: Option<&str>) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    let Some(address) = address else {
        return Ok(None);
    };
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen for metrics on {address}"))?;
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "metrics listening");
    }
    Ok(Some(listener))
}

/// Serves what `register` adds to a fresh registry on `listener`, when there
/// is one, until the returned guard drops.
pub(crate) fn spawn(
    listener: Option<tokio::net::TcpListener>,
    register: impl FnOnce(&mut Registry),
) -> Option<myc_transport::AbortOnDrop> {
    let listener = listener?;
    let mut registry = Registry::default();
    register(&mut registry);
    Some(myc_transport::AbortOnDrop::spawn(serve(listener, registry)))
}

/// Serves `registry` on `listener` until the task is dropped.
async fn serve(listener: tokio::net::TcpListener, registry: Registry) {
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = Arc::clone(&registry);
            async move {
                let mut text = String::new();
                if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &registry) {
                    tracing::warn!(%error, "cannot encode metrics");
                }
                ([(CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text)
            }
        }),
    );
    if let Err(error) = axum::serve(listener, app).await {
        tracing::warn!(%error, "metrics server stopped");
    }
}

/// `process_resident_memory_bytes`: the process's resident memory, read from
/// `/proc/self/status` each time the metrics are scraped (the guard's
/// memory rule compares it with the figure recorded at `relay`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResidentMemory;

impl ResidentMemory {
    /// Adds the gauge to `registry`.
    pub(crate) fn register(registry: &mut Registry) {
        registry.register("process_resident_memory_bytes", "Resident memory size in bytes", ResidentMemory);
    }
}

impl prometheus_client::encoding::EncodeMetric for ResidentMemory {
    fn encode(&self, mut encoder: prometheus_client::encoding::MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let bytes = resident_bytes().map_or(0, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX));
        encoder.encode_gauge(&bytes)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }
}

/// This process's resident memory (`VmRSS`), where `/proc` tells it.
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.trim_start_matches("VmRSS:").trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
