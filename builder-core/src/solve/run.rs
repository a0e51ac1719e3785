//! RUN: the command in the sandbox on an overlay of the stage's root filesystem; what it
//! changed (the overlay's upper directory) becomes the step's layer.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::cancel::Cancel;
use crate::exec::{self, Network, SandboxSpec};
use crate::plan::Exec;
use crate::snapshot;

use super::chown::resolve_user;
use super::env::in_image;
use super::error::io_at;
use super::{Error, Result};

/// What a RUN reads, on the host: the solver materialises it before the command runs.
pub(crate) struct Inputs {
    /// The stage's root filesystem, merged and read-only (never written).
    pub(crate) rootfs: PathBuf,
    /// The same tree as the overlay's lower directories, topmost first.
    pub(crate) lowers: Vec<PathBuf>,
    /// The step's own scratch directory: the overlay's upper and work directories, the files
    /// the sandbox binds.
    pub(crate) dir: PathBuf,
    /// One per mount of the op, in order: a bind's source on the host (in the context, or in
    /// the stage or image it names); `None` for the other kinds.
    pub(crate) binds: Vec<Option<PathBuf>>,
    /// Where cache mounts' directories live (in the store).
    pub(crate) cache_root: PathBuf,
    /// The time of the files the sandbox makes (`/etc/hosts`).
    pub(crate) epoch: i64,
}

/// What the build gives every RUN's sandbox, from the request.
#[derive(Clone, Copy)]
pub(crate) struct Sandbox<'a> {
    pub(crate) secrets: &'a std::collections::BTreeMap<String, Vec<u8>>,
    /// `--ssh`: the agent socket of each id, for `RUN --mount=type=ssh`.
    pub(crate) ssh: &'a std::collections::BTreeMap<String, std::path::PathBuf>,
    /// `--run-timeout`.
    pub(crate) run_timeout: Option<std::time::Duration>,
    /// `--network`: the default network of RUN.
    pub(crate) network: crate::exec::Network,
    /// Whether RUN may use the host's network.
    pub(crate) allow_network_host: bool,
    /// `--userns`: whose ids RUN's root has.
    pub(crate) userns: crate::exec::Userns,
    /// RUN's cgroup limits.
    pub(crate) limits: &'a crate::exec::Limits,
    /// RUN's resource limits.
    pub(crate) ulimits: &'a [crate::exec::Ulimit],
    /// `--isolation`: the namespaced sandbox, chroot, or whichever this process can have.
    pub(crate) isolation: crate::exec::Isolation,
    /// What `--isolation none` must not replace in the builder's root: the store, the
    /// contexts.
    pub(crate) keep: &'a [PathBuf],
}

impl Sandbox<'_> {
    /// RUN's network: its own `--network` (expanded and checked by the plan), else the
    /// build's default.
    pub(crate) fn network_of(&self, exec: &Exec) -> Network {
        match exec.network {
            crate::plan::Network::Default => self.network,
            crate::plan::Network::None => Network::None,
            crate::plan::Network::Host => Network::Host,
        }
    }
}

/// Where a RUN reports: each line of its output, and a cancel it must stop at.
pub(crate) struct Io<'a> {
    pub(crate) cancel: &'a Cancel,
    pub(crate) log: &'a (dyn Fn(String) + Sync),
}

/// Lines of output kept to show with a failure.
const TAIL: usize = 10;

/// `env` with `HOME` added when it has none (runc's rule: the user's home directory from the
/// image's `/etc/passwd`, else `/`).
fn with_home(mut env: Vec<String>, user: &str, uid: u32, rootfs: &std::path::Path) -> Vec<String> {
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", super::chown::home_of(user, uid, rootfs)));
    }
    env
}

/// The `/etc/resolv.conf` RUN sees: the host's with the host's network; with a private one,
/// pasta's DNS forwarder, and the host's search domains and options; none without a network.
pub(crate) fn resolv_conf(
    network: Network,
    dir: &std::path::Path,
    epoch: i64,
) -> Result<Option<std::path::PathBuf>> {
    let host = std::path::Path::new("/etc/resolv.conf");
    match network {
        Network::None => Ok(None),
        Network::Host => Ok(host.is_file().then(|| host.to_owned())),
        Network::Private => {
            let mut text = format!("nameserver {}\n", exec::PRIVATE_DNS);
            if let Ok(h) = fs_err::read_to_string(host) {
                for line in h.lines() {
                    if line.starts_with("search ") || line.starts_with("options ") {
                        text.push_str(line);
                        text.push('\n');
                    }
                }
            }
            let file = dir.join("resolv.conf");
            sandbox_file(&file, &text, epoch)?;
            Ok(Some(file))
        }
    }
}

/// Writes a file the sandbox makes for RUN (`/etc/hosts`, `/etc/resolv.conf`) with the build's
/// epoch as its time: a RUN that lists `/etc` sees the same in every build.
fn sandbox_file(file: &std::path::Path, text: &str, epoch: i64) -> Result<()> {
    let time =
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(epoch).unwrap_or(0));
    fs_err::write(file, text)
        .and_then(|()| fs_err::File::open(file))
        .and_then(|f| {
            f.file().set_times(
                std::fs::FileTimes::new()
                    .set_accessed(time)
                    .set_modified(time),
            )
        })
        .map_err(io_at(file))
}

/// Supplementary groups of `user` from the image's `/etc/group`.
fn groups(rootfs: &std::path::Path, user: &str, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    if let Some(text) = super::chown::image_file(rootfs, "etc/group") {
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == user) {
                if let Ok(g) = f[2].parse() {
                    if !out.contains(&g) {
                        out.push(g);
                    }
                }
            }
        }
    }
    out
}

/// The mounts of one RUN, ready for the sandbox; locks live as long as it.
struct Mounts {
    binds: Vec<exec::Bind>,
    tmpfs: Vec<(String, Option<u64>)>,
    env: Vec<String>,
    targets: Vec<String>,
    /// The cache mounts' directories (under chroot isolation they are moved in and back).
    caches: Vec<PathBuf>,
    /// Held for the RUN: `sharing=locked` cache mounts are one build at a time.
    #[allow(dead_code)]
    locks: Vec<fs_err::File>,
    /// The cache directories `locks` hold.
    locked: Vec<PathBuf>,
    /// Forwarding the step's ssh sockets to their agents while the RUN runs.
    #[allow(dead_code)]
    agents: Vec<super::ssh::AgentProxy>,
}

/// What RUN's mounts are on the host: binds (the context, a stage, an image, a cache
/// directory, a secret's file), tmpfs mounts, secret variables, and the locks of
/// `sharing=locked` caches, held while the RUN runs.
fn plan_mounts(
    inputs: &Inputs,
    exec: &Exec,
    sandbox: &Sandbox<'_>,
    isolation: exec::Isolation,
) -> Result<Mounts> {
    use crate::dockerfile::MountType;
    let mut out = Mounts {
        binds: Vec::new(),
        tmpfs: Vec::new(),
        env: Vec::new(),
        targets: Vec::new(),
        caches: Vec::new(),
        locks: Vec::new(),
        locked: Vec::new(),
        agents: Vec::new(),
    };
    let mut ssh_mounts = 0;
    // Under chroot (or none) every cache is locked, as `sharing=locked` ones are, in the order
    // of the mounts: a RUN with two takes one lock for all first, so two such RUNs never wait
    // on each other's.
    let exclusive = matches!(isolation, exec::Isolation::Chroot | exec::Isolation::None);
    let locking = exec
        .mounts
        .iter()
        .filter(|m| m.kind == MountType::Cache && locks_cache(m, exclusive))
        .count();
    if locking > 1 {
        let lock = lock_file(&inputs.cache_root.join("several.lock"))?;
        out.locks.push(lock);
    }
    for (i, m) in exec.mounts.iter().enumerate() {
        let target = |what: &str| {
            m.target
                .clone()
                .ok_or_else(|| Error::Internal(format!("{what} mount without target")))
        };
        match m.kind {
            MountType::Bind => {
                let target = target("bind")?;
                let source = bind_source(inputs, m, i)?;
                out.bind(source, target, m.readonly);
            }
            MountType::Cache => {
                let target = target("cache")?;
                // Under chroot the directory is moved into the root: one RUN at a time, and
                // one target.
                let held = (&mut out.locks, &mut out.locked);
                let dir = cache_dir(&inputs.cache_root, m, &target, exclusive, held)?;
                if exclusive && out.caches.contains(&dir) {
                    return Err(Error::CacheMountedTwice { target });
                }
                out.caches.push(dir.clone());
                out.bind(dir, target, m.readonly);
            }
            MountType::Tmpfs => {
                let target = target("tmpfs")?;
                out.tmpfs.push((target.clone(), m.size));
                out.targets.push(target);
            }
            MountType::Secret => secret(inputs, sandbox, m, i, &mut out)?,
            MountType::Ssh => {
                ssh(inputs, sandbox, m, (i, ssh_mounts), &mut out)?;
                ssh_mounts += 1;
            }
        }
    }
    Ok(out)
}

impl Mounts {
    fn bind(&mut self, source: std::path::PathBuf, target: String, readonly: bool) {
        self.binds.push(exec::Bind {
            source,
            target: target.clone(),
            readonly,
        });
        self.targets.push(target);
    }
}

/// Bind `i`'s host path, as the solver resolved it; `rw` binds a scratch copy whose writes
/// are discarded, as in BuildKit.
fn bind_source(inputs: &Inputs, m: &crate::plan::Mount, i: usize) -> Result<std::path::PathBuf> {
    let host = inputs
        .binds
        .get(i)
        .cloned()
        .flatten()
        .ok_or_else(|| Error::Internal(format!("bind mount {i} has no source")))?;
    if m.readonly {
        return Ok(host);
    }
    let copy = inputs.dir.join(format!("bind-{i}"));
    super::snapshots::copy_tree(&host, &copy, false)?;
    Ok(copy)
}

/// A cache mount's directory in the store (by id, else target), made with the mount's mode
/// and owner the first time; `sharing=locked|private`, or `exclusive`, takes its lock into
/// `locks`.
fn cache_dir(
    root: &std::path::Path,
    m: &crate::plan::Mount,
    target: &str,
    exclusive: bool,
    (locks, locked): (&mut Vec<fs_err::File>, &mut Vec<PathBuf>),
) -> Result<std::path::PathBuf> {
    let id = m.id.clone().unwrap_or_else(|| target.to_owned());
    let dir = root.join(crate::digest::Digest::of(id.as_bytes()).hex());
    // The lock first: under chroot isolation the directory is away while another RUN has it.
    if locks_cache(m, exclusive) {
        if locked.contains(&dir) {
            // This RUN holds it already (a second open would wait on the first).
            return Ok(dir);
        }
        locks.push(lock_file(&dir.with_extension("lock"))?);
        locked.push(dir.clone());
    }
    if !dir.exists() {
        fs_err::create_dir_all(&dir).map_err(io_at(&dir))?;
        set_mode_and_owner(&dir, m, 0o755)?;
    }
    Ok(dir)
}

/// Whether the cache mount `m` is held under a lock for its RUN: `sharing=locked|private`, or
/// every one where the directory is moved into the root (`exclusive`).
fn locks_cache(m: &crate::plan::Mount, exclusive: bool) -> bool {
    use crate::dockerfile::Sharing;
    exclusive || matches!(m.sharing, Some(Sharing::Locked | Sharing::Private))
}

/// `path` (made, with its directory, if missing) locked exclusively, waiting for it.
fn lock_file(path: &std::path::Path) -> Result<fs_err::File> {
    use fs4::fs_std::FileExt;
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(io_at(dir))?;
    }
    let lock = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_at(path))?;
    FileExt::lock_exclusive(lock.file()).map_err(io_at(path))?;
    Ok(lock)
}

/// An ssh mount: a socket forwarded to the agent of its id (`default` unless given) at its
/// target (else `/run/buildkit/ssh_agent.N`, the Nth ssh mount), and `SSH_AUTH_SOCK` naming
/// it (the first one's); an id `--ssh` did not give is skipped unless `required`.
fn ssh(
    inputs: &Inputs,
    sandbox: &Sandbox<'_>,
    m: &crate::plan::Mount,
    (i, n): (usize, usize),
    out: &mut Mounts,
) -> Result<()> {
    let id = m.id.clone().unwrap_or_else(|| "default".into());
    let Some(agent) = sandbox.ssh.get(&id) else {
        if m.required {
            return Err(Error::Ssh {
                id,
                reason: "no agent was given for it (`--ssh ID=SOCKET`, or `--ssh default`)".into(),
            });
        }
        return Ok(());
    };
    let target = m
        .target
        .clone()
        .unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}"));
    let socket = inputs.dir.join(format!("ssh-{i}.sock"));
    out.agents
        .push(super::ssh::AgentProxy::start(&socket, agent.clone(), &id)?);
    set_mode_and_owner(&socket, m, 0o600)?;
    if !out.env.iter().any(|e| e.starts_with("SSH_AUTH_SOCK=")) {
        out.env.push(format!("SSH_AUTH_SOCK={target}"));
    }
    out.bind(socket, target, false);
    Ok(())
}

/// A secret mount: a variable (`env=`) and/or a read-only file (`target`, else
/// `/run/secrets/ID`); a missing secret is skipped unless `required`.
fn secret(
    inputs: &Inputs,
    sandbox: &Sandbox<'_>,
    m: &crate::plan::Mount,
    i: usize,
    out: &mut Mounts,
) -> Result<()> {
    let id =
        m.id.clone()
            .or_else(|| {
                m.target
                    .as_deref()
                    .and_then(|t| t.rsplit('/').next())
                    .map(str::to_owned)
            })
            .or_else(|| m.env.clone())
            .unwrap_or_default();
    let Some(value) = sandbox.secrets.get(&id) else {
        if m.required {
            return Err(Error::MissingSecret { id });
        }
        return Ok(());
    };
    if let Some(var) = &m.env {
        out.env
            .push(format!("{var}={}", String::from_utf8_lossy(value)));
    }
    if m.target.is_some() || m.env.is_none() {
        let target = m
            .target
            .clone()
            .unwrap_or_else(|| format!("/run/secrets/{id}"));
        let file = inputs.dir.join(format!("secret-{i}"));
        fs_err::write(&file, value).map_err(io_at(&file))?;
        set_mode_and_owner(&file, m, 0o400)?;
        out.bind(file, target, true);
    }
    Ok(())
}

/// `warning: WHAT` in this step's log, the first time `said` is asked (once a process).
fn warn_once(io: &Io<'_>, said: &AtomicBool, what: &str) {
    if !said.swap(true, std::sync::atomic::Ordering::SeqCst) {
        (io.log)(format!("warning: {what}"));
    }
}

/// Runs `spec`, streaming each line of output as a log event of this step and keeping the
/// last [`TAIL`] lines in `tail`.
fn run_logged(
    io: &Io<'_>,
    helper: &exec::Helper,
    spec: &exec::SandboxSpec,
    tail: &mut VecDeque<String>,
) -> Result<exec::Exit> {
    // Where cgroups cannot be written (rootless without delegation), said once.
    static SAID: AtomicBool = AtomicBool::new(false);
    let exit = exec::run_cancellable(helper, spec, io.cancel, &mut |line| {
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
        (io.log)(line.to_owned());
    })?;
    if let Some(why) = &exit.no_cgroup {
        warn_once(
            io,
            &SAID,
            &format!(
                "RUN has no cgroup here, so --memory, --pids-limit and --cpus do not apply: {why}"
            ),
        );
    }
    Ok(exit)
}

/// Gives `path` the mount's `mode` (else `default_mode`) and its `uid`/`gid` (else root).
fn set_mode_and_owner(
    path: &std::path::Path,
    m: &crate::plan::Mount,
    default_mode: u32,
) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions(
        path,
        std::fs::Permissions::from_mode(m.mode.unwrap_or(default_mode)),
    )
    .map_err(io_at(path))?;
    std::os::unix::fs::chown(path, Some(m.uid.unwrap_or(0)), Some(m.gid.unwrap_or(0)))
        .map_err(io_at(path))
}

/// Drops directories overlay copied up only to hold something left out (a mount point): same
/// owner and mode as below, not opaque, and nothing beneath them in the layer.
fn unchanged_dirs_removed(
    lower: &std::path::Path,
    entries: Vec<snapshot::Entry>,
) -> Vec<snapshot::Entry> {
    use std::os::unix::fs::MetadataExt;
    let has_children = |dir: &str| {
        let prefix = format!("{dir}/");
        entries.iter().any(|e| {
            e.path.starts_with(&prefix) || (e.path == dir && e.kind == snapshot::EntryKind::Opaque)
        })
    };
    let keep: Vec<bool> = entries
        .iter()
        .map(|e| {
            if e.kind != snapshot::EntryKind::Dir || has_children(&e.path) {
                return true;
            }
            match fs_err::symlink_metadata(lower.join(&e.path)) {
                Ok(m) => {
                    !(m.is_dir()
                        && m.mode() & 0o7777 == e.mode
                        && m.uid() == e.uid
                        && m.gid() == e.gid)
                }
                Err(_) => true,
            }
        })
        .collect();
    entries
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// Runs the command; gives what it changed, the entries of its layer (none: an unchanged
/// filesystem adds no layer, as in BuildKit).
pub(crate) fn run(
    inputs: &Inputs,
    exec: &Exec,
    sandbox: &Sandbox<'_>,
    io: &Io<'_>,
) -> Result<Vec<snapshot::Entry>> {
    let dir = inputs.dir.clone();
    fs_err::create_dir_all(&dir).map_err(io_at(&dir))?;
    let isolation = isolation(sandbox, io)?;
    let _own_root = (isolation == exec::Isolation::None).then(|| {
        OWN_ROOT
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    });
    let helper = match isolation {
        // `/` is about to become the stage's: the helper runs from copies of its files.
        exec::Isolation::None => exec::Helper::relocated(&dir.with_file_name("helper"))
            .map_err(io_at(dir.with_file_name("helper")))?,
        _ => exec::Helper::this_binary().map_err(io_at("/proc/self/exe"))?,
    };
    let mounts = plan_mounts(inputs, exec, sandbox, isolation)?;
    let args = exec.args.clone();
    let rootfs = inputs.rootfs.clone();
    let user = exec.user.clone();
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        resolve_user(&user, &rootfs)?
    };
    let name = user.split(':').next().unwrap_or_default().to_owned();
    let upper = dir.join("upper");
    let mut binds = mounts.binds.clone();
    if let Some(bind) = script_bind(exec, &dir)? {
        binds.push(bind);
    }
    let hosts = dir.join("hosts");
    sandbox_file(
        &hosts,
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tbuildkitsandbox\n",
        inputs.epoch,
    )?;
    let network = sandbox_network(sandbox, io, exec, isolation)?;
    let resolv_conf = resolv_conf(network, &dir, inputs.epoch)?;
    let spec = SandboxSpec {
        env: with_home(exec.env.clone(), &user, uid, &rootfs)
            .into_iter()
            .chain(mounts.env.iter().cloned())
            .collect(),
        cwd: exec.workdir.clone(),
        uid,
        gid,
        groups: if user.is_empty() {
            vec![0]
        } else {
            groups(&rootfs, &name, gid)
        },
        network,
        resolv_conf,
        limits: sandbox.limits.clone(),
        ulimits: sandbox.ulimits.to_vec(),
        hosts: Some(hosts),
        binds,
        tmpfs: mounts.tmpfs.clone(),
        timeout: sandbox.run_timeout,
        userns: exec::IdMap::for_run(sandbox.userns),
        lower: inputs.lowers.clone(),
        ..SandboxSpec::new(rootfs.clone(), &dir, args)
    };
    spec.make_dirs().map_err(io_at(&dir))?;
    let run = Run {
        helper: &helper,
        dir: &dir,
        rootfs: &rootfs,
        isolation,
        caches: &mounts.caches,
        keep: sandbox.keep,
    };
    let copied = execute(sandbox, io, spec, &run)?;
    let mut targets = mounts.targets.clone();
    if matches!(isolation, exec::Isolation::Chroot | exec::Isolation::None) {
        // Laid in as files (or the container's), not bound: left out whether or not the
        // image had them.
        targets.extend(["/etc/hosts".to_owned(), "/etc/resolv.conf".to_owned()]);
    }
    let changes = copied
        .as_ref()
        .map_or_else(|| upper.clone(), |c| c.root.clone());
    let mut skip = left_out(&rootfs, &changes, copied.is_some(), &targets);
    let entries = match &copied {
        Some(c) => {
            skip.extend(c.skip.iter().cloned());
            snapshot::overlay_diff(&rootfs, &c.root, &c.before, &skip).map_err(io_at(&c.root))?
        }
        None => snapshot::upper_entries(&upper, &skip).map_err(io_at(&upper))?,
    };
    Ok(unchanged_dirs_removed(&rootfs, entries))
}

/// Under no isolation every RUN has the one root: one at a time, from making it the stage's to
/// reading the layer out of it.
static OWN_ROOT: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A RUN on a tree of its own rather than an overlay: the tree, its inodes before the run,
/// and what of it is not the stage's (under `--isolation none`, what `/` keeps).
struct Copied {
    root: PathBuf,
    before: snapshot::Inodes,
    skip: Vec<String>,
}

/// `--isolation none`: `/` made the stage's root filesystem around what it keeps, its inodes
/// taken; the container's `/etc/hosts` and `/etc/resolv.conf` stay (mount points).
fn in_own_root(spec: &mut SandboxSpec, run: &Run<'_>) -> Result<Copied> {
    let root = PathBuf::from("/");
    let protected = super::none::protected(run.keep);
    super::none::sync(run.rootfs, &root, &protected)?;
    let before = snapshot::inodes(&root, &protected).map_err(io_at(&root))?;
    spec.merged.clone_from(&root);
    spec.copied_rootfs = true;
    spec.isolation = exec::Isolation::None;
    spec.hosts = None;
    spec.resolv_conf = None;
    Ok(Copied {
        root,
        before,
        skip: protected,
    })
}

/// The isolation RUN gets: as asked, or under `auto` the namespaced sandbox where this
/// process can make it, else chroot; chroot and none say once what they do not give, and none
/// is refused outside a container.
fn isolation(sandbox: &Sandbox<'_>, io: &Io<'_>) -> Result<exec::Isolation> {
    static SAID: AtomicBool = AtomicBool::new(false);
    let weaker = exec::CHROOT_IS_WEAKER;
    Ok(match sandbox.isolation {
        exec::Isolation::Namespaces => exec::Isolation::Namespaces,
        exec::Isolation::None => {
            if !super::none::in_a_container() {
                return Err(Error::NoneOutsideContainer);
            }
            let what = format!("--isolation none: {}", exec::NONE_IS_WEAKER);
            warn_once(io, &SAID, &what);
            exec::Isolation::None
        }
        exec::Isolation::Chroot => {
            if !super::none::in_a_container() {
                return Err(Error::ChrootOutsideContainer { why: None });
            }
            warn_once(
                io,
                &SAID,
                &format!("RUN runs with chroot isolation (--isolation chroot): {weaker}"),
            );
            exec::Isolation::Chroot
        }
        exec::Isolation::Auto => match exec::Helper::this_binary()
            .map_err(|e| e.to_string())
            .and_then(|h| exec::namespaces_available(&h))
        {
            Ok(()) => exec::Isolation::Namespaces,
            Err(why) if !super::none::in_a_container() => {
                return Err(Error::ChrootOutsideContainer { why: Some(why) });
            }
            Err(why) => {
                warn_once(
                    io,
                    &SAID,
                    &format!(
                        "RUN runs with chroot isolation: this process cannot make namespaces \
                         ({why}); compared with the namespaced sandbox there is {weaker}"
                    ),
                );
                exec::Isolation::Chroot
            }
        },
    })
}

/// The `#!` heredoc RUN runs as a file: written beside the sandbox, bound at
/// `/dev/pipes/NAME`.
fn script_bind(exec: &Exec, dir: &std::path::Path) -> Result<Option<exec::Bind>> {
    let Some(script) = &exec.script else {
        return Ok(None);
    };
    let file = dir.join("script");
    fs_err::write(&file, &script.content).map_err(io_at(&file))?;
    fs_err::set_permissions(
        &file,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o755),
    )
    .map_err(io_at(&file))?;
    Ok(Some(exec::Bind {
        source: file,
        target: format!("/dev/pipes/{}", script.name),
        readonly: true,
    }))
}

/// The network RUN gets: the op's, checked against what the build allows and what this
/// process can give (rootless without a tap device: the user's network, said once; under
/// chroot isolation the builder's, and no `none`).
fn sandbox_network(
    sandbox: &Sandbox<'_>,
    io: &Io<'_>,
    exec: &Exec,
    isolation: exec::Isolation,
) -> Result<Network> {
    let network = sandbox.network_of(exec);
    if network == Network::Host && !sandbox.allow_network_host {
        return Err(Error::NetworkHostDenied);
    }
    if matches!(isolation, exec::Isolation::Chroot | exec::Isolation::None) {
        return match network {
            Network::None => Err(Error::NetworkNoneUnderChroot),
            Network::Private | Network::Host => Ok(Network::Host),
        };
    }
    Ok(match (network, Network::private_available()) {
        (Network::Private, Err(reason @ exec::PrivateUnavailable::Rootless)) => {
            static SAID: AtomicBool = AtomicBool::new(false);
            warn_once(io, &SAID, &reason.to_string());
            Network::Host
        }
        (Network::Private, Err(reason)) => {
            return Err(Error::Network {
                reason: reason.to_string(),
            });
        }
        (n, _) => n,
    })
}

/// Where and how one RUN runs, for [`execute`].
struct Run<'a> {
    /// How the sandbox helper is started.
    helper: &'a exec::Helper,
    /// The step's own directory.
    dir: &'a std::path::Path,
    /// The stage's root filesystem.
    rootfs: &'a std::path::Path,
    isolation: exec::Isolation,
    /// The cache mounts' directories.
    caches: &'a [PathBuf],
    /// What `--isolation none` keeps of `/`.
    keep: &'a [PathBuf],
}

/// Runs the sandbox on an overlay, or on a copy of the root filesystem (given back with its
/// inodes before the run, to diff) where overlayfs cannot mount or under chroot isolation, or
/// in `/` made the stage's under no isolation; a command that did not succeed is the step's
/// error.
fn execute(
    sandbox: &Sandbox<'_>,
    io: &Io<'_>,
    spec: SandboxSpec,
    run: &Run<'_>,
) -> Result<Option<Copied>> {
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut spec = spec;
    let chroot = run.isolation == exec::Isolation::Chroot;
    let force_copy = std::env::var_os("RBUILD_SNAPSHOTTER").is_some_and(|v| v == "copy");
    let mut copied = None;
    let mut exit = None;
    if run.isolation == exec::Isolation::None {
        let mut c = in_own_root(&mut spec, run)?;
        let placed = super::chroot::place(&mut spec, run.dir, run.caches)?;
        exit = Some(run_logged(io, run.helper, &spec, &mut tail)?);
        c.skip.extend(placed.targets().iter().cloned());
        drop(placed);
        copied = Some(c);
    } else if !force_copy && !chroot {
        exit = Some(run_logged(io, run.helper, &spec, &mut tail)?);
    }
    let overlay_failed = exit.as_ref().is_some_and(|e| e.code == 125)
        && tail.iter().any(|l| l.contains("mount overlay"));
    if force_copy || overlay_failed || chroot {
        if !chroot {
            (io.log)("rbuild: overlayfs is not available here; running on a copy of the root filesystem and diffing the trees".into());
        }
        tail.clear();
        let copy = run.dir.join("copy");
        super::snapshots::copy_tree(run.rootfs, &copy, false)?;
        let before = snapshot::inodes(&copy, &[]).map_err(io_at(&copy))?;
        spec.merged.clone_from(&copy);
        spec.copied_rootfs = true;
        let placed = if chroot {
            spec.isolation = exec::Isolation::Chroot;
            Some(super::chroot::place(&mut spec, run.dir, run.caches)?)
        } else {
            None
        };
        exit = Some(run_logged(io, run.helper, &spec, &mut tail)?);
        // Where the mounts went, through the image's links: left out as mount points are.
        let skip = placed
            .as_ref()
            .map(|p| p.targets().to_vec())
            .unwrap_or_default();
        drop(placed);
        copied = Some(Copied {
            root: copy,
            before,
            skip,
        });
    }
    let exit = exit.ok_or_else(|| Error::Internal("the RUN did not run".into()))?;
    if exit.cancelled {
        return Err(Error::Cancelled);
    }
    if exit.timed_out {
        return Err(Error::RunTimedOut {
            limit: sandbox.run_timeout.unwrap_or_default(),
            last_lines: tail.into(),
        });
    }
    if exit.oom_killed {
        return Err(Error::OutOfMemory {
            limit: sandbox.limits.memory,
            last_lines: tail.into(),
        });
    }
    if exit.code != 0 {
        return Err(Error::RunFailed {
            code: exit.code,
            last_lines: tail.into(),
        });
    }
    Ok(copied)
}

/// What of the upper directory is the sandbox's, not the command's: mount points it made
/// where the image had nothing (and directories made only to hold them), `/proc`, `/sys`,
/// `/dev`, and the `/etc/hosts` and `/etc/resolv.conf` it bound.
fn left_out(
    rootfs: &std::path::Path,
    changes: &std::path::Path,
    copied: bool,
    targets: &[String],
) -> Vec<String> {
    // Mount points the sandbox created where the image had nothing are not the command's doing.
    let skip: Vec<String> = ["proc", "sys", "dev", "etc/hosts", "etc/resolv.conf", "etc"]
        .into_iter()
        .filter(|p| !in_image(rootfs, p))
        .map(str::to_owned)
        .collect();
    let mut skip = skip;
    // An `etc` the sandbox created only to hold its files goes too, unless the command wrote more there.
    if skip.iter().any(|s| s == "etc") {
        let only_ours = fs_err::read_dir(changes.join("etc")).map_or(true, |d| {
            d.filter_map(std::result::Result::ok)
                .all(|e| matches!(e.file_name().to_str(), Some("hosts" | "resolv.conf")))
        });
        // (read_dir fails when the command removed /etc: then nothing of ours is there either)
        if !only_ours {
            skip.retain(|s| s != "etc");
        }
    }
    // Existing /proc, /sys and /dev stay untouched in the layer: their mount hid whatever was
    // written.
    for p in ["proc", "sys", "dev"] {
        if !skip.iter().any(|s| s == p) {
            skip.push(p.to_owned());
        }
    }
    for f in ["etc/hosts", "etc/resolv.conf"] {
        if !skip.iter().any(|s| s == f)
            && fs_err::symlink_metadata(changes.join(f)).is_ok()
            && (!copied || !in_image(rootfs, f))
        {
            // The bind mount hid the file; a copy-up left an unchanged copy: not a change.
            skip.push(f.to_owned());
        }
    }
    // Mount targets the sandbox had to create, and directories created only to hold them, are
    // not the command's doing.
    for target in targets {
        let rel = target.trim_start_matches('/').to_owned();
        if rel.is_empty() {
            continue;
        }
        let existed = in_image(rootfs, &rel);
        skip.push(rel.clone());
        if existed {
            continue;
        }
        let mut parent = std::path::Path::new(&rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            let p_str = p.to_string_lossy().into_owned();
            if in_image(rootfs, &p.to_string_lossy()) {
                break;
            }
            let only_skipped = fs_err::read_dir(changes.join(p)).map_or(true, |d| {
                d.filter_map(std::result::Result::ok)
                    .all(|e| skip.contains(&format!("{p_str}/{}", e.file_name().to_string_lossy())))
            });
            if !only_skipped {
                break;
            }
            skip.push(p_str);
            parent = p.parent();
        }
    }
    skip
}
