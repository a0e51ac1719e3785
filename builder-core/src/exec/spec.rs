//! The sandbox as plain data.

use std::path::PathBuf;

/// RUN's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// The host's network (the default, as docker build's).
    Host,
    /// Only a loopback interface, in a network namespace of its own.
    None,
}

/// Everything the helper needs to set up and run one command.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SandboxSpec {
    /// The read-only root filesystem (overlay lower directory).
    pub lower: PathBuf,
    /// Where the command's changes go (overlay upper directory).
    pub upper: PathBuf,
    /// Overlay's work directory (same filesystem as `upper`).
    pub work: PathBuf,
    /// Where the overlay is mounted.
    pub merged: PathBuf,
    /// The command and its arguments.
    pub args: Vec<String>,
    /// `KEY=VALUE` environment.
    pub env: Vec<String>,
    /// The working directory inside.
    pub cwd: String,
    /// The user.
    pub uid: u32,
    /// The group.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    /// The hostname inside.
    pub hostname: String,
    /// The network.
    pub network: Network,
    /// A file to bind-mount at `/etc/resolv.conf`.
    pub resolv_conf: Option<PathBuf>,
    /// A file to bind-mount at `/etc/hosts`.
    pub hosts: Option<PathBuf>,
    /// Host paths bind-mounted inside (`rbuild run -v`, `RUN --mount=type=bind|cache|secret`).
    #[serde(default)]
    pub binds: Vec<Bind>,
    /// Use `merged` as it is (a prepared copy of the root filesystem) instead of mounting an
    /// overlay: the fallback where overlayfs cannot mount.
    #[serde(default)]
    pub copied_rootfs: bool,
    /// How long the command may run; past it the helper is killed, and with it (its
    /// parent-death signal) the whole pid namespace. Enforced by [`run`](super::run), not sent.
    #[serde(skip)]
    pub timeout: Option<std::time::Duration>,
    /// tmpfs mounts inside (`RUN --mount=type=tmpfs`): target and size in bytes.
    #[serde(default)]
    pub tmpfs: Vec<(String, Option<u64>)>,
}

/// A host path mounted inside the sandbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Bind {
    /// The host path.
    pub source: PathBuf,
    /// The absolute path inside.
    pub target: String,
    /// Mounted read-only.
    pub readonly: bool,
}
