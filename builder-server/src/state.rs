//! What every request shares: the store builds write to and how registries are reached.

use builder_core::build::Store;
use builder_core::registry;

/// The service's state.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) registry: registry::Options,
    /// `--allow-network-host`: builds may use the host's network (`network=host`,
    /// `RUN --network=host`); without it they get a private one or none.
    pub(crate) allow_network_host: bool,
}
