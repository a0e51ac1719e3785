//! Images: the config (Docker's fields kept), manifests and indexes (oci-spec types, written as
//! canonical JSON), layer compression, and the OCI-layout and `docker save` archives.
//!
//! Imports: `digest`, `store` (see `tests/architecture.rs`).

mod archive;
mod canonical;
mod compress;
mod config;
mod decompress;
mod error;
mod image;
mod index;

pub use archive::{
    OCI_LAYOUT, layout_index, write_docker_archive, write_oci_archive, write_oci_index_archive,
};
pub use canonical::to_canonical_json;
pub use compress::{Compression, compressed_layer};
pub use config::{Empty, HealthConfig, History, ImageConfig, RootFs, RunConfig, host_platform};
pub use decompress::{Format, decompressed};
pub use error::Error;
pub use image::Image;
pub use index::{
    INDEX_MEDIA_TYPE, Index, IndexEntry, MANIFEST_LIST_MEDIA_TYPE, platform_matches, tagged_images,
};
