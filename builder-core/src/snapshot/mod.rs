//! Filesystem changes as OCI layers: the deterministic tar writer every layer goes through.
//!
//! A layer is a PAX tar whose bytes depend only on what it holds: entries in path order, numeric
//! owners and no owner names, mtimes clamped to `SOURCE_DATE_EPOCH` when set, no atime or ctime,
//! a hard link written once then as links, OCI whiteouts for deletions. The store keeps layers
//! uncompressed (their digest is the diff ID); `oci` compresses on export.
//!
//! Imports: `digest`, `store` (see `tests/architecture.rs`).

mod apply;
mod layer;
mod listing;
mod overlay;
mod treediff;

pub use apply::{ApplyError, apply_context_tar, apply_layer, apply_layer_over, apply_tar};
pub use layer::{
    Entry, EntryKind, FileSource, Layer, TarOptions, write_layer, write_layer_unpacked, write_tar,
};
pub use listing::listing_digest;
pub use overlay::upper_entries;
pub use treediff::{Inodes, inodes, overlay_diff, tree_diff};
