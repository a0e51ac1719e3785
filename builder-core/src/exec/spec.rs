//! The sandbox as plain data.

use std::path::PathBuf;

/// RUN's network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Network {
    /// A network namespace of its own with user-mode networking (pasta): outbound connections
    /// and DNS work, the host's loopback and its services do not (the default, as BuildKit's
    /// sandbox network).
    #[default]
    Private,
    /// The host's network (`--network=host`).
    Host,
    /// Only a loopback interface, in a network namespace of its own.
    None,
}

impl Network {
    /// Whether this process can give RUN a private network: `pasta` on `PATH`, and for a
    /// rootless build (in a user namespace) `/dev/net/tun` open to the user, as Debian's udev
    /// leaves it (pasta makes its tap device there).
    pub fn private_available() -> Result<(), PrivateUnavailable> {
        let rootless = !nix::unistd::Uid::effective().is_root() || super::sys::in_user_namespace();
        if rootless
            && fs_err::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .is_err()
        {
            return Err(PrivateUnavailable::Rootless);
        }
        let found = std::env::var_os("PATH").is_some_and(|p| {
            std::env::split_paths(&p).any(|d| d.join(super::sys::PASTA).is_file())
        });
        if found {
            Ok(())
        } else {
            Err(PrivateUnavailable::NoPasta)
        }
    }
}

/// Why RUN cannot have a private network here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrivateUnavailable {
    /// A rootless build that cannot open `/dev/net/tun`.
    #[error(
        "a rootless build cannot open /dev/net/tun (Debian makes it 0666), so RUN shares the user's network"
    )]
    Rootless,
    /// No `pasta` on `PATH`.
    #[error(
        "RUN's default network needs `pasta` (apt-get install passt); `--network host` shares the host's"
    )]
    NoPasta,
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
    /// Memory, pids and CPU limits: a cgroup of its own ([`run`](super::run) makes it).
    #[serde(default)]
    pub limits: super::cgroup::Limits,
    /// Resource limits (`--ulimit`): name (`nofile`, `nproc`, …), soft, hard. Unnamed ones
    /// keep BuildKit's defaults ([`super::DEFAULT_ULIMITS`]).
    #[serde(default)]
    pub ulimits: Vec<Ulimit>,
    /// The cgroup made for this run, which the helper joins. Set by [`run`](super::run).
    #[serde(default)]
    pub cgroup: Option<super::cgroup::Cgroup>,
}

/// One resource limit (`--ulimit nofile=1024:4096`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Ulimit {
    /// The name, as `docker run --ulimit` spells it (`nofile`, `nproc`, `core`, `stack`, …).
    pub name: String,
    /// The soft limit.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

impl std::str::FromStr for Ulimit {
    type Err = String;

    /// `NAME=SOFT[:HARD]`, as docker reads it (`-1` is unlimited).
    fn from_str(s: &str) -> Result<Self, String> {
        let (name, values) = s
            .split_once('=')
            .ok_or_else(|| format!("`{s}`: expected NAME=SOFT[:HARD]"))?;
        if super::sys::rlimit_resource(name).is_none() {
            return Err(format!("`{name}` is not a ulimit name"));
        }
        let num = |v: &str| -> Result<u64, String> {
            if v == "-1" || v == "unlimited" {
                Ok(u64::MAX)
            } else {
                v.parse().map_err(|_| format!("`{v}` is not a number"))
            }
        };
        let (soft, hard) = match values.split_once(':') {
            Some((a, b)) => (num(a)?, num(b)?),
            None => (num(values)?, num(values)?),
        };
        if soft > hard {
            return Err(format!("`{s}`: the soft limit is above the hard one"));
        }
        Ok(Self {
            name: name.to_owned(),
            soft,
            hard,
        })
    }
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
