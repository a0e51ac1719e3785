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
        let rootless =
            !nix::unistd::Uid::effective().is_root() || super::rootless::in_user_namespace();
        if rootless
            && fs_err::OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/net/tun")
                .is_err()
        {
            return Err(PrivateUnavailable::Rootless);
        }
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(PASTA).is_file()));
        if found {
            Ok(())
        } else {
            Err(PrivateUnavailable::NoPasta)
        }
    }
}

/// How RUN is kept apart from the builder (`--isolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Isolation {
    /// The namespaced sandbox where this process can make it, else [`Self::Chroot`] with a
    /// warning that says what is weaker (the default).
    #[default]
    Auto,
    /// The namespaced sandbox: mount, pid, network, UTS, IPC and cgroup namespaces, an overlay
    /// root, its own `/proc`, `/sys` and `/dev` (buildah's `oci`).
    Namespaces,
    /// `chroot(2)` into a copy of the step's root filesystem, with no namespace and no mount:
    /// for containers that may not make either (no `CAP_SYS_ADMIN`, Docker's seccomp profile).
    /// Mounts are copies laid into the root; RUN shares the builder's pid and network
    /// namespaces and has no `/proc` or `/sys`.
    Chroot,
    /// No isolation (kaniko's model): RUN runs in the builder's own root, which is made the
    /// step's root filesystem first. Only by name, only in a container that holds nothing but
    /// this build.
    None,
}

impl std::str::FromStr for Isolation {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" | "default" => Ok(Self::Auto),
            "namespaces" | "oci" => Ok(Self::Namespaces),
            "chroot" => Ok(Self::Chroot),
            "none" => Ok(Self::None),
            _ => Err(format!(
                "`{s}`: --isolation is `auto`, `namespaces` (or `oci`), `chroot` or `none`"
            )),
        }
    }
}

impl std::fmt::Display for Isolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Namespaces => "namespaces",
            Self::Chroot => "chroot",
            Self::None => "none",
        })
    }
}

/// What chroot isolation cannot give RUN, said once in the log and in the README.
pub const CHROOT_IS_WEAKER: &str = "no pid namespace (RUN sees and can signal the builder's processes), \
no network namespace (RUN shares the builder's network, loopback included; --network none cannot be had), \
no UTS or IPC namespace, no /proc or /sys, no user namespace (RUN's root is the builder's), \
mounts are copies (read-only binds are writable copies, tmpfs sizes are not enforced), \
and CAP_SYS_CHROOT, CAP_MKNOD and CAP_NET_RAW are dropped (RUN cannot leave the chroot, make \
device nodes or sniff the builder's traffic); the container's own device rules are what keep the \
image's device nodes closed, so chroot runs only inside a container";

/// What no isolation means, said once in the log and in the README.
pub const NONE_IS_WEAKER: &str = "RUN runs in the builder's own root, which is made the stage's \
root filesystem before each RUN (everything but /proc, /sys, /dev, mount points, the store, the \
context and the rbuild binary is replaced); RUN can read and change all of those and the builder \
itself: safe only in a container that holds this one build and nothing else";

/// Whose ids RUN's root has when the builder runs as root (`--userns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Userns {
    /// A user namespace mapping RUN's ids to an unprivileged range of the host's
    /// ([`IdMap::auto`]); the root filesystem and binds are id-mapped mounts, so files keep
    /// the ids they have inside and layers record them (the default). Where the kernel or
    /// the store's filesystem cannot id-map a mount, RUN runs as the host's root, with a
    /// warning.
    #[default]
    Auto,
    /// RUN's root is the host's root (`--userns host`), as under BuildKit's default.
    Host,
}

impl std::str::FromStr for Userns {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Self::Auto),
            "host" => Ok(Self::Host),
            _ => Err(format!("`{s}`: --userns is `auto` or `host`")),
        }
    }
}

/// Ids `0 .. count` inside a user namespace are `uid .. uid + count` (and `gid ..`) outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// The host uid of root inside.
    pub uid: u32,
    /// The host gid of root's group inside.
    pub gid: u32,
    /// How many ids are mapped.
    pub count: u32,
}

impl IdMap {
    /// The range a root build's RUN gets: the `rbuild` entries of `/etc/subuid` and
    /// `/etc/subgid` when the administrator made them (as Docker's `dockremap`), else
    /// [`Self::DEFAULT`].
    pub fn auto() -> Self {
        let read = |f: &str| fs_err::read_to_string(f).ok();
        Self::from_subid(
            read("/etc/subuid").as_deref(),
            read("/etc/subgid").as_deref(),
        )
    }

    /// The `rbuild` ranges of `/etc/subuid`- and `/etc/subgid`-format contents, else
    /// [`Self::DEFAULT`].
    fn from_subid(subuid: Option<&str>, subgid: Option<&str>) -> Self {
        let range =
            |c: Option<&str>| c.and_then(|c| super::rootless::parse_subid(c, "rbuild", u32::MAX));
        match (range(subuid), range(subgid)) {
            (Some(u), Some(g)) => Self {
                uid: u.start,
                gid: g.start,
                count: u.count.min(g.count),
            },
            _ => Self::DEFAULT,
        }
    }

    /// Host ids from 2^31 up, which no user, subordinate range (useradd starts at 100000)
    /// or systemd allocation uses: inside, every id up to 2^31 - 2 is mapped, so files of
    /// any real image keep their owners.
    pub const DEFAULT: Self = Self {
        uid: 1 << 31,
        gid: 1 << 31,
        count: (1 << 31) - 1,
    };

    /// The range RUN gets under `userns`: `auto` as root (outside any user namespace) gives
    /// [`Self::auto`], read once; `host`, or a rootless build (whose namespace is made by
    /// [`super::rootless_reexec`] or the helper), none.
    pub fn for_run(userns: Userns) -> Option<Self> {
        static AUTO: std::sync::OnceLock<IdMap> = std::sync::OnceLock::new();
        (userns == Userns::Auto
            && nix::unistd::Uid::effective().is_root()
            && !super::rootless::in_user_namespace())
        .then(|| *AUTO.get_or_init(Self::auto))
    }

    /// The `uid_map` / `gid_map` lines.
    pub(super) fn lines(&self) -> (String, String) {
        (
            format!("0 {} {}", self.uid, self.count),
            format!("0 {} {}", self.gid, self.count),
        )
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
    /// The read-only root filesystem: the overlay's lower directories, topmost first.
    pub lower: Vec<PathBuf>,
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
    /// RUN's ids as a range of the host's (`--userns auto` as root): a user namespace, with
    /// the root filesystem and binds mounted id-mapped. Ignored in a rootless build, which
    /// has a user namespace already.
    #[serde(default)]
    pub userns: Option<IdMap>,
    /// How RUN is kept apart: [`Isolation::Chroot`] chroots into `merged` (a prepared copy
    /// with the mounts laid in) and makes no namespace and no mount; anything else is the
    /// namespaced sandbox.
    #[serde(default)]
    pub isolation: Isolation,
}

impl SandboxSpec {
    /// A sandbox for `args` over `lower`, its overlay's upper, work and mount directories in
    /// `dir`; as root, in `/`, with only loopback, BuildKit's hostname and nothing bound.
    /// Callers set what differs (`SandboxSpec { env, ..SandboxSpec::new(…) }`).
    pub fn new(lower: PathBuf, dir: &std::path::Path, args: Vec<String>) -> Self {
        Self {
            lower: vec![lower],
            upper: dir.join("upper"),
            work: dir.join("work"),
            merged: dir.join("merged"),
            args,
            env: Vec::new(),
            cwd: "/".into(),
            uid: 0,
            gid: 0,
            groups: vec![0],
            hostname: "buildkitsandbox".into(),
            network: Network::None,
            resolv_conf: None,
            limits: super::cgroup::Limits::default(),
            ulimits: Vec::new(),
            cgroup: None,
            hosts: None,
            binds: Vec::new(),
            tmpfs: Vec::new(),
            copied_rootfs: false,
            timeout: None,
            userns: None,
            isolation: Isolation::Namespaces,
        }
    }

    /// Makes the overlay's upper, work and mount directories.
    ///
    /// # Errors
    /// One of them cannot be made.
    pub fn make_dirs(&self) -> std::io::Result<()> {
        for d in [&self.upper, &self.work, &self.merged] {
            fs_err::create_dir_all(d)?;
        }
        Ok(())
    }
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
        if rlimit_resource(name).is_none() {
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

/// The program that gives a private network namespace its outside connection.
pub(super) const PASTA: &str = "pasta";

/// The DNS address inside a private network (pasta forwards it to the host's resolver).
pub const PRIVATE_DNS: &str = "10.0.2.3";

/// The `setrlimit` resource of a `--ulimit` name.
pub(super) fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource;
    Some(match name {
        "core" => Resource::RLIMIT_CORE,
        "cpu" => Resource::RLIMIT_CPU,
        "data" => Resource::RLIMIT_DATA,
        "fsize" => Resource::RLIMIT_FSIZE,
        "locks" => Resource::RLIMIT_LOCKS,
        "memlock" => Resource::RLIMIT_MEMLOCK,
        "msgqueue" => Resource::RLIMIT_MSGQUEUE,
        "nice" => Resource::RLIMIT_NICE,
        "nofile" => Resource::RLIMIT_NOFILE,
        "nproc" => Resource::RLIMIT_NPROC,
        "rss" => Resource::RLIMIT_RSS,
        "rtprio" => Resource::RLIMIT_RTPRIO,
        "rttime" => Resource::RLIMIT_RTTIME,
        "sigpending" => Resource::RLIMIT_SIGPENDING,
        "stack" => Resource::RLIMIT_STACK,
        _ => return None,
    })
}

/// BuildKit's default resource limits for RUN: name, soft, hard.
pub const DEFAULT_ULIMITS: [(&str, u64, u64); 1] = [("nofile", 1024, 1024)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auto_range_is_rbuilds_subordinate_one_else_from_2_31() {
        let uid = "alice:100000:65536\nrbuild:300000:70000\n";
        let gid = "rbuild:400000:65536\n";
        let map = IdMap::from_subid(Some(uid), Some(gid));
        assert_eq!(
            map,
            IdMap {
                uid: 300_000,
                gid: 400_000,
                count: 65536
            }
        );
        assert_eq!(
            map.lines(),
            ("0 300000 65536".to_owned(), "0 400000 65536".to_owned())
        );
        assert_eq!(IdMap::from_subid(Some(uid), None), IdMap::DEFAULT);
        assert_eq!(
            IdMap::from_subid(Some("alice:1:2\n"), Some(gid)),
            IdMap::DEFAULT
        );
        let (u, _) = IdMap::DEFAULT.lines();
        assert_eq!(u, "0 2147483648 2147483647", "the last host id is 2^32 - 2");
        assert_eq!("host".parse::<Userns>(), Ok(Userns::Host));
        assert!("keep-id".parse::<Userns>().is_err());
    }
}
