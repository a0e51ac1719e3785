//! Running a build: the Dockerfile is parsed, checked and lowered to its op graph (`plan`),
//! then each stage's ops run as soon as their inputs are ready; layers go to the store, and the
//! target stage becomes an image there.
//!
//! The solver (`builder`, `schedule`, `stage`, `inputs`) owns the build's state (`job::Job`):
//! it computes each op's key, asks the step cache, materialises what a missed op reads as
//! paths, and hands those to an executor: `copy` (COPY/ADD), `run` (RUN in the sandbox),
//! `config` (the config edits). Executors never see the job.
//!
//! This is the only module that uses all the others (see `tests/architecture.rs`).

mod builder;
mod chown;
mod chroot;
mod config;
mod container;
mod copy;
mod download;
mod env;
mod error;
mod explain;
mod export;
mod fsck;
mod git;
mod import;
mod inflight;
mod inputs;
mod job;
mod load;
mod none;
mod progress;
mod prune;
mod remote_cache;
mod run;
mod schedule;
mod snapshots;
mod squash;
mod ssh;
mod stage;
mod stdin_context;
mod times;
mod tree_copy;

pub use crate::oci::{Compression, Image};
pub use crate::store::{Store, tag_name};
pub use builder::{BuildOutput, BuildRequest, Builder, MultiOutput, NamedContext, Planned};
pub use container::{RunOptions, run_image};
pub use download::DEFAULT_MAX_DOWNLOAD;
pub use error::{Error, Result};
pub use export::{Output, export, export_index};
pub use fsck::{FsckOptions, FsckReport, Problem, fsck};
pub use git::{
    GIT_TIMEOUT, GitUrl, Limits as GitLimits, checkout as git_checkout, is_git_url,
    resolve as git_resolve,
};
pub use import::import_rootfs;
pub use load::load_archive;
pub use progress::Event;
pub use prune::{DiskUsage, PruneOptions, PruneReport, disk_usage, prune};
pub use remote_cache::{CONFIG_MEDIA_TYPE as CACHE_CONFIG_MEDIA_TYPE, CacheSpec};
pub use stdin_context::{RemoteContext, remote_context, unpack_context};
pub use times::DEFAULT_EPOCH;
