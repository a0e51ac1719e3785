//! `GET /metrics`: the service's metrics in the `OpenMetrics` text format Prometheus scrapes,
//! kept with `prometheus-client` (the Prometheus project's own Rust client): builds by final
//! state and tenant, their duration, the builds running, steps run and answered by the cache,
//! context bytes received by tenant, posts refused by tenant and status, the queue's length and
//! the store's size.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Finished {
    tenant: String,
    /// `succeeded`, `failed`, `cancelled` or `interrupted`.
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ByTenant {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Refused {
    tenant: String,
    /// The HTTP status the post got.
    status: u16,
}

/// The service's metrics.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    builds: Family<Finished, Counter>,
    duration: Histogram,
    running: Gauge,
    steps_cached: Counter,
    steps_run: Counter,
    context_bytes: Family<ByTenant, Counter>,
    refused: Family<Refused, Counter>,
    queued: Gauge,
    store_bytes: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rbuild");
        let builds = Family::<Finished, Counter>::default();
        registry.register(
            "builds",
            "Builds finished, by tenant and final state",
            builds.clone(),
        );
        // 0.1 s … about 55 min.
        let duration = Histogram::new(exponential_buckets(0.1, 2.0, 16));
        registry.register(
            "build_duration_seconds",
            "How long builds took, from the context's first byte to the last event",
            duration.clone(),
        );
        let running = Gauge::default();
        registry.register("builds_running", "Builds running now", running.clone());
        let steps_cached = Counter::default();
        registry.register(
            "steps_cached",
            "Steps the step cache answered",
            steps_cached.clone(),
        );
        let steps_run = Counter::default();
        registry.register(
            "steps_run",
            "Steps that missed the cache and ran",
            steps_run.clone(),
        );
        let context_bytes = Family::<ByTenant, Counter>::default();
        registry.register(
            "context_bytes_received",
            "Bytes of build contexts received, by tenant",
            context_bytes.clone(),
        );
        let refused = Family::<Refused, Counter>::default();
        registry.register(
            "posts_refused",
            "Build posts refused before anything was built (a bad context, Dockerfile or option, a full queue), by tenant and status",
            refused.clone(),
        );
        let queued = Gauge::default();
        registry.register(
            "builds_queued",
            "Build jobs waiting for a slot",
            queued.clone(),
        );
        let store_bytes = Gauge::default();
        registry.register(
            "store_blob_bytes",
            "Bytes of the store's blobs (layers, configs, manifests)",
            store_bytes.clone(),
        );
        Self {
            registry,
            builds,
            duration,
            running,
            steps_cached,
            steps_run,
            context_bytes,
            refused,
            queued,
            store_bytes,
        }
    }
}

/// One build's place in the metrics: running while it lives, then counted in the state
/// [`Running::ended`] gave (`failed` if none: it stopped before it could say).
pub(crate) struct Running<'a> {
    metrics: &'a Metrics,
    tenant: String,
    started: std::time::Instant,
    state: &'static str,
}

impl Metrics {
    /// A build starts.
    pub(crate) fn start(&self, tenant: &str) -> Running<'_> {
        self.running.inc();
        Running {
            metrics: self,
            tenant: tenant.to_owned(),
            started: std::time::Instant::now(),
            state: "failed",
        }
    }

    /// `n` more context bytes came from `tenant`.
    pub(crate) fn received(&self, tenant: &str, n: u64) {
        self.context_bytes
            .get_or_create(&ByTenant {
                tenant: tenant.to_owned(),
            })
            .inc_by(n);
    }

    /// A post from `tenant` was refused with `status`.
    pub(crate) fn refused(&self, tenant: &str, status: u16) {
        self.refused
            .get_or_create(&Refused {
                tenant: tenant.to_owned(),
                status,
            })
            .inc();
    }

    /// The text a scrape gets.
    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Running<'_> {
    /// The build ended in `state` (`succeeded`, `failed`, `cancelled`, `interrupted`) after
    /// `steps` steps, `cached` of them from the cache.
    pub(crate) fn ended(&mut self, state: &'static str, steps: usize, cached: usize) {
        self.state = state;
        self.metrics.steps_cached.inc_by(cached as u64);
        self.metrics
            .steps_run
            .inc_by(steps.saturating_sub(cached) as u64);
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let m = self.metrics;
        m.builds
            .get_or_create(&Finished {
                tenant: self.tenant.clone(),
                state: self.state.to_owned(),
            })
            .inc();
        m.duration.observe(self.started.elapsed().as_secs_f64());
        m.running.dec();
    }
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "Prometheus' text format", content_type = "text/plain"),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let (queued, _) = state.jobs.counts();
    state
        .metrics
        .queued
        .set(i64::try_from(queued).unwrap_or(i64::MAX));
    let blobs = state.store.root().join("blobs/sha256");
    let bytes = tokio::task::spawn_blocking(move || {
        fs_err::read_dir(&blobs).map_or(0, |d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>()
        })
    })
    .await
    .unwrap_or(0);
    state
        .metrics
        .store_bytes
        .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    match state.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => crate::error::ApiError::internal(e.to_string()).into_response(),
    }
}
