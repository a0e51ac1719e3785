//! What every request shares: the store builds write to and how registries are reached.

use builder_core::build::Store;
use builder_core::registry;

/// The service's state.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) store: Store,
    pub(crate) registry: registry::Options,
}
