//! `GET /metrics`: the service's metrics in the `OpenMetrics` text format Prometheus scrapes,
//! kept with `prometheus-client` (the Prometheus project's own Rust client): builds by final
//! state and tenant, their duration, the builds running, steps run and answered by the cache,
//! and context bytes received by tenant.

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
        Self {
            registry,
            builds,
            duration,
            running,
            steps_cached,
            steps_run,
            context_bytes,
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
pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
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
