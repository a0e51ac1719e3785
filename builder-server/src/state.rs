//! What every request shares: the store builds write to and how registries are reached.

use builder_core::registry;
use builder_core::solve::{Builder, Store};

/// The service's state.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    /// One builder for every build, so builds posted at once run a step they share once.
    pub(crate) builder: Builder,
    pub(crate) registry: registry::Options,
    /// `--allow-network-host`: builds may use the host's network (`network=host`,
    /// `RUN --network=host`); without it they get a private one or none.
    pub(crate) allow_network_host: bool,
    /// `--isolation`: how RUN is kept apart from the server.
    pub(crate) isolation: builder_core::exec::Isolation,
    /// `--max-context-size`: the most bytes a posted context may have (as posted).
    pub(crate) max_context_size: u64,
    /// `--build-timeout`: how long one build may take, its pulls and RUNs included.
    pub(crate) build_timeout: Option<std::time::Duration>,
    /// `--memory`, `--pids-limit`, `--cpus`: the most any RUN of any build gets; a build's own
    /// query may ask for less, never more.
    pub(crate) limits: builder_core::exec::Limits,
    /// Set when a shutdown's grace has passed: every running build follows it.
    pub(crate) shutdown: builder_core::cancel::Cancel,
    /// What `/metrics` shows.
    pub(crate) metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Who may build (`None`: no authentication, loopback only).
    pub(crate) tokens: crate::auth::Shared,
    /// The posted build jobs: queue, running, records.
    pub(crate) jobs: std::sync::Arc<crate::jobs::Jobs>,
    /// How long a request body may send nothing (a slow or stuck upload).
    pub(crate) body_idle: std::time::Duration,
    /// Contexts being received and unpacked at once (`--max-uploads`): each holds buffers, so
    /// the server's memory follows this, not the number of builds posted. Others wait, their
    /// bodies held back by TCP.
    pub(crate) uploads: std::sync::Arc<tokio::sync::Semaphore>,
}
