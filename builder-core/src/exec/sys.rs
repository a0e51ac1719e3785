//! The only place with `unsafe` and raw system calls: namespaces, mounts, `pivot_root`,
//! capabilities and exec, run in the single-threaded sandbox helper.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{
    ForkResult, Gid, Uid, chdir, execve, fork, pivot_root, setgid, setgroups, sethostname, setuid,
};

use super::spec::{Network, SandboxSpec};

/// Exit code for a sandbox that could not be set up (docker's 125).
const SETUP_FAILED: i32 = 125;

/// Docker's default capability set.
const DEFAULT_CAPS: [caps::Capability; 14] = [
    caps::Capability::CAP_CHOWN,
    caps::Capability::CAP_DAC_OVERRIDE,
    caps::Capability::CAP_FSETID,
    caps::Capability::CAP_FOWNER,
    caps::Capability::CAP_MKNOD,
    caps::Capability::CAP_NET_RAW,
    caps::Capability::CAP_SETGID,
    caps::Capability::CAP_SETUID,
    caps::Capability::CAP_SETFCAP,
    caps::Capability::CAP_SETPCAP,
    caps::Capability::CAP_NET_BIND_SERVICE,
    caps::Capability::CAP_SYS_CHROOT,
    caps::Capability::CAP_KILL,
    caps::Capability::CAP_AUDIT_WRITE,
];

fn fail(what: &str, err: impl std::fmt::Display) -> ! {
    let _ = writeln!(std::io::stderr(), "rbuild sandbox: {what}: {err}");
    std::process::exit(SETUP_FAILED);
}

/// Sets up the namespaces and runs the command; gives its exit code.
pub(super) fn enter(spec: &SandboxSpec) -> i32 {
    // If the builder goes (killed, cancelled), the helper goes too.
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        fail("pdeathsig", e);
    }
    // Rootless: a user namespace first, mapping our own uid and gid to root inside (a single
    // mapping, as an unprivileged process may write for itself).
    let rootless = !Uid::effective().is_root();
    if rootless {
        let (uid, gid) = (Uid::effective(), Gid::effective());
        if let Err(e) = unshare(CloneFlags::CLONE_NEWUSER) {
            fail("unshare a user namespace (rootless)", e);
        }
        for (file, content) in [
            ("/proc/self/setgroups", "deny".to_owned()),
            ("/proc/self/uid_map", format!("0 {uid} 1")),
            ("/proc/self/gid_map", format!("0 {gid} 1")),
        ] {
            if let Err(e) = fs_err::write(file, content) {
                fail("map ids (rootless)", e);
            }
        }
    }
    // As root: RUN's ids as an unprivileged range of the host's, where the kernel can id-map
    // the mounts (`--userns auto`).
    let userns = match userns_for(spec) {
        None => None,
        Some(Ok(ns)) => Some(ns),
        Some(Err(why)) => {
            let _ = writeln!(
                std::io::stderr(),
                "rbuild: warning: RUN runs as the host's root, without a user namespace: {why}"
            );
            None
        }
    };
    // The network namespace first, on its own: user-mode networking is started from the
    // host's namespace into it before the pid namespace exists (pasta must not be its PID 1).
    let pasta = match spec.network {
        Network::Host => None,
        Network::None => {
            enter_new_netns(userns.as_ref());
            None
        }
        Network::Private => Some(start_pasta(spec, userns.as_ref())),
    };
    // Into the step's cgroup (pasta stays out of it), which becomes the root of the step's
    // cgroup namespace.
    if let Some(cg) = &spec.cgroup {
        if let Err(e) = super::cgroup::join(cg) {
            fail("cgroup", e);
        }
    }
    let mut flags =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWCGROUP;
    if let Some(ns) = &userns {
        // The user namespace's own UTS and IPC namespaces.
        for (fd, kind) in [
            (&ns.uts, CloneFlags::CLONE_NEWUTS),
            (&ns.ipc, CloneFlags::CLONE_NEWIPC),
        ] {
            if let Err(e) = nix::sched::setns(fd, kind) {
                fail("join the user namespace's UTS and IPC namespaces", e);
            }
        }
    } else {
        flags |= CloneFlags::CLONE_NEWUTS | CloneFlags::CLONE_NEWIPC;
    }
    if let Err(e) = unshare(flags) {
        fail("unshare", e);
    }
    // Open while the helper lives: the child sees it hang up if the helper is gone.
    let (alive_r, alive_w) = std::io::pipe().unwrap_or_else(|e| fail("pipe", e));
    // SAFETY: the helper is single-threaded (it is a fresh process that has started no thread),
    // so the child may run any code after fork, not only async-signal-safe functions.
    match unsafe { fork() } {
        Err(e) => fail("fork", e),
        Ok(ForkResult::Parent { child }) => {
            drop(alive_r);
            let code = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => fail("wait", e),
                }
            };
            if let Some(pid) = pasta {
                // Nothing of pasta's needs saving, and SIGTERM costs it ~70 ms to wind down.
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
            }
            code
        }
        Ok(ForkResult::Child) => {
            // PID 1 of the new pid namespace: when it exits, everything in it is killed; and it
            // is killed when the helper goes, so a cancelled build leaves nothing running.
            if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
                fail("pdeathsig", e);
            }
            drop(alive_w);
            child(spec, userns.as_ref(), &alive_r)
        }
    }
}

/// Arms the parent-death signal again (a change of effective or filesystem ids clears it)
/// and ends this process if the helper has gone already: `alive` is the read end of a pipe
/// only the helper writes to, which hangs up when it exits.
fn still_die_with_helper(alive: &std::io::PipeReader) {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        fail("pdeathsig", e);
    }
    let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
        std::process::exit(SETUP_FAILED);
    }
}

/// Into a network namespace of its own: the user namespace's, or a new one.
fn enter_new_netns(userns: Option<&Userns>) {
    let r = match userns {
        Some(ns) => nix::sched::setns(&ns.net, CloneFlags::CLONE_NEWNET),
        None => unshare(CloneFlags::CLONE_NEWNET),
    };
    if let Err(e) = r {
        fail("enter a network namespace of its own", e);
    }
}

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_RECURSIVE: nix::libc::c_uint = 0x8000;
const OPEN_TREE_CLONE: nix::libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: nix::libc::c_uint = 0x4;

fn c_path(path: &Path) -> nix::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)
}

/// `mount_setattr(2)` on `dirfd`/`path` with `flags`.
fn mount_setattr(
    dirfd: std::os::fd::RawFd,
    path: &std::ffi::CStr,
    flags: nix::libc::c_uint,
    attr: &MountAttr,
) -> nix::Result<()> {
    // SAFETY: `path` is a NUL-terminated string and `attr` a `struct mount_attr` that both
    // outlive the call; the size passed is the struct's, and the kernel only reads them.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            std::ptr::from_ref(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Sets `nodev` (and read-only if `readonly`) on the mount at `target` and every mount under
/// it (`mount_setattr(2)` with `AT_RECURSIVE`, Linux 5.12). ENOSYS where the kernel lacks it.
pub(super) fn set_tree_attrs(target: &Path, readonly: bool) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NODEV | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr(nix::libc::AT_FDCWD, &c_path(target)?, AT_RECURSIVE, &attr)
}

/// A detached copy of the mount tree at `src` (`open_tree(2)` with `OPEN_TREE_CLONE`, the
/// mounts below it too if `recursive`), id-mapped through `userns`: a file owned by `n` on
/// disk shows as owned by `n` inside that user namespace, and one made there by its `n` is
/// stored as `n`. `nodev`, and read-only if asked. EINVAL where the filesystem cannot be
/// id-mapped, ENOSYS before Linux 5.12.
pub(super) fn idmapped_tree(
    src: &Path,
    userns: std::os::fd::BorrowedFd<'_>,
    recursive: bool,
    readonly: bool,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let path = c_path(src)?;
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a NUL-terminated string that outlives the call, which only reads it.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_open_tree,
            nix::libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | nix::libc::O_CLOEXEC as nix::libc::c_uint | rec,
        )
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| nix::errno::Errno::EBADF)?;
    // SAFETY: `fd` is a descriptor open_tree just returned, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP
            | MOUNT_ATTR_NODEV
            | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).map_err(|_| nix::errno::Errno::EBADF)?,
    };
    mount_setattr(
        tree.as_raw_fd(),
        c"",
        nix::libc::AT_EMPTY_PATH as nix::libc::c_uint | rec,
        &attr,
    )?;
    Ok(tree)
}

/// Attaches a detached mount tree at `target` (`move_mount(2)`).
pub(super) fn attach(tree: &std::os::fd::OwnedFd, target: &Path) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let to = c_path(target)?;
    // SAFETY: the empty source path and `to` are NUL-terminated strings that outlive the
    // call; `tree` is an open mount descriptor.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// A user namespace for a root build's RUN, and the network, UTS and IPC namespaces it owns
/// (so RUN's root has its capabilities there, as under runc: port 80, raw sockets), made by
/// a short-lived child and held by descriptor.
pub(super) struct Userns {
    pub(super) user: std::os::fd::OwnedFd,
    net: std::os::fd::OwnedFd,
    uts: std::os::fd::OwnedFd,
    ipc: std::os::fd::OwnedFd,
    pub(super) map: super::spec::IdMap,
}

/// Makes the [`Userns`] for `map`: a child unshares the namespaces and waits while this
/// process (root) writes its `uid_map` and `gid_map` and opens them.
fn make_userns(map: super::spec::IdMap) -> Result<Userns, String> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    let (mut made_r, mut made_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let (mut done_r, done_w) = std::io::pipe().map_err(|e| e.to_string())?;
    // SAFETY: the helper is single-threaded, so the child may run any code after fork.
    match unsafe { fork() } {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop((made_r, done_w));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let flags = CloneFlags::CLONE_NEWUSER
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC;
            if unshare(flags).is_err() {
                std::process::exit(SETUP_FAILED);
            }
            let _ = made_w.write_all(b"1");
            drop(made_w);
            // Until the parent has the namespaces open (it closes its end).
            let _ = done_r.read(&mut [0u8; 1]);
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop((made_w, done_r));
            let made = made_r.read_exact(&mut [0u8; 1]).is_ok();
            let result = (|| {
                if !made {
                    return Err("the child could not unshare a user namespace".to_owned());
                }
                let (uid_map, gid_map) = map.lines();
                for (file, content) in [("uid_map", uid_map), ("gid_map", gid_map)] {
                    fs_err::write(format!("/proc/{child}/{file}"), content)
                        .map_err(|e| e.to_string())?;
                }
                let ns = |name: &str| -> Result<OwnedFd, String> {
                    open(
                        format!("/proc/{child}/ns/{name}").as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| format!("open ns/{name}: {e}"))
                };
                Ok(Userns {
                    user: ns("user")?,
                    net: ns("net")?,
                    uts: ns("uts")?,
                    ipc: ns("ipc")?,
                    map,
                })
            })();
            drop(done_w);
            let _ = waitpid(child, None);
            result
        }
    }
}

/// The user namespace for `spec` if it asks for one and this kernel can id-map the root
/// filesystem's mount (probed with a detached, discarded copy); else why not.
fn userns_for(spec: &SandboxSpec) -> Option<Result<Userns, String>> {
    use std::os::fd::AsFd;
    let map = spec.userns?;
    if !Uid::effective().is_root() || in_user_namespace() {
        return None;
    }
    Some(make_userns(map).and_then(|ns| {
        let root = if spec.copied_rootfs {
            &spec.merged
        } else {
            &spec.lower
        };
        idmapped_tree(root, ns.user.as_fd(), false, false)
            .map_err(|e| format!("cannot id-map a mount of {}: {e}", root.display()))?;
        Ok(ns)
    }))
}

/// Sets `lo` up in this network namespace (`SIOCGIFFLAGS`/`SIOCSIFFLAGS` on a datagram
/// socket): what `ip link set lo up` does, without needing `ip` on the host.
fn loopback_up() -> nix::Result<()> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket takes no pointers; the descriptor it returns is owned by `sock` at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: `raw` is a descriptor just returned to us and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain data for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::try_from(*src).unwrap_or(0);
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which lives
    // across the call; the socket is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel filled `ifru_flags`, the union member SIOCGIFFLAGS writes.
    unsafe {
        #[allow(clippy::cast_possible_truncation)]
        let up = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags |= up;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw mut req) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// Closes every descriptor from 3 up (`close_range(2)`), so only standard input, output and
/// error reach the command; where the kernel lacks it, each open one by `/proc/self/fd`.
fn close_from_3() {
    // SAFETY: close_range takes no pointers; closing descriptors this process owns is safe
    // here because nothing after it (up to exec) uses one above 2.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r != 0 {
        let open: Vec<i32> = fs_err::read_dir("/proc/self/fd")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in open.into_iter().filter(|fd| *fd > 2) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Makes `/dev/null` the standard input: a RUN reads nothing, as under BuildKit (the helper's
/// own input was the builder's pipe).
pub(super) fn stdin_from_null() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = fs_err::File::open("/dev/null") {
        // SAFETY: dup2 on two descriptors this process owns; fd 0 is replaced atomically and
        // `null` is closed when dropped.
        unsafe {
            nix::libc::dup2(null.as_raw_fd(), 0);
        }
    }
}

/// The program that gives a private network namespace its outside connection.
pub(super) const PASTA: &str = "pasta";

/// The DNS address inside a private network (pasta forwards it to the host's resolver).
pub const PRIVATE_DNS: &str = "10.0.2.3";

/// Moves the helper into a new network namespace and starts `pasta` (passt's user-mode
/// networking) for it from the host's namespace: outbound TCP/UDP and DNS work, no port is
/// forwarded either way (`-t/-u/-T/-U none`), and the gateway is not mapped to the host's
/// loopback (`--no-map-gw`), so the host's `127.0.0.1` services are out of reach. No bridge,
/// NAT or firewall rule is made. Returns pasta's pid once the namespace is configured.
fn start_pasta(spec: &SandboxSpec, userns: Option<&Userns>) -> nix::unistd::Pid {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::io::Read;
    use std::os::fd::AsRawFd;
    let dir = spec.merged.parent().unwrap_or(Path::new("/tmp")).to_owned();
    let pid_file = dir.join("pasta.pid");
    let log_file = dir.join("pasta.log");
    let _ = fs_err::remove_file(&pid_file);
    let helper = nix::unistd::getpid();
    let (mut unshared_r, mut unshared_w) =
        std::io::pipe().unwrap_or_else(|e| fail("pipe for pasta", e));
    // pasta is forked while the helper is still in the host's namespace, so it stays there
    // (no setns, which a rootless build's user namespace would not allow); it joins the new
    // namespace through a descriptor it opens once the helper has made it.
    // SAFETY: the helper is single-threaded, so the child may run any code after fork.
    match unsafe { fork() } {
        Err(e) => fail("fork for pasta", e),
        Ok(ForkResult::Child) => {
            use std::os::unix::process::CommandExt;
            drop(unshared_w);
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let mut byte = [0u8; 1];
            if unshared_r.read_exact(&mut byte).is_err() {
                std::process::exit(SETUP_FAILED);
            }
            // Inherited by pasta (no CLOEXEC): it joins the namespace through it.
            let netns = open(
                format!("/proc/{helper}/ns/net").as_str(),
                OFlag::O_RDONLY,
                Mode::empty(),
            )
            .unwrap_or_else(|e| fail("open the new network namespace", e));
            let err = std::process::Command::new(PASTA)
                .args(["--foreground", "--quiet", "--runas", "0", "--config-net"])
                .args(["-t", "none", "-u", "none", "-T", "none", "-U", "none"])
                .args(["--no-map-gw", "--dns-forward", PRIVATE_DNS])
                .arg("--pid")
                .arg(&pid_file)
                .arg("-l")
                .arg(&log_file)
                .arg("--netns")
                .arg(format!("/proc/self/fd/{}", netns.as_raw_fd()))
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .exec();
            fail(
                "start pasta (Debian's `passt`: apt-get install passt; or --network host)",
                err,
            );
        }
        Ok(ForkResult::Parent { child }) => {
            drop(unshared_r);
            enter_new_netns(userns);
            if let Err(e) = std::io::Write::write_all(&mut unshared_w, b"1") {
                fail("start pasta", e);
            }
            drop(unshared_w);
            // Ready once the namespace is configured: pasta writes its pid file after that.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            loop {
                if fs_err::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty()) {
                    return child;
                }
                match nix::sys::wait::waitpid(child, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {}
                    _ => {
                        let log = fs_err::read_to_string(&log_file).unwrap_or_default();
                        fail("pasta ended before the network was up", log.trim());
                    }
                }
                if std::time::Instant::now() > deadline {
                    let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                    fail("pasta", "the network was not up within 10 s");
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
    }
}

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

/// BuildKit's default resource limits, then the spec's `--ulimit`s.
fn set_rlimits(spec: &SandboxSpec) {
    let defaults = super::DEFAULT_ULIMITS
        .iter()
        .filter(|(name, ..)| !spec.ulimits.iter().any(|u| u.name == *name))
        .map(|(name, soft, hard)| ((*name).to_owned(), *soft, *hard));
    let given = spec
        .ulimits
        .iter()
        .map(|u| (u.name.clone(), u.soft, u.hard));
    for (name, soft, hard) in defaults.chain(given) {
        let Some(resource) = rlimit_resource(&name) else {
            fail("ulimit", format!("unknown limit `{name}`"));
        };
        let inf = |v: u64| {
            if v == u64::MAX {
                nix::sys::resource::RLIM_INFINITY
            } else {
                v
            }
        };
        if let Err(e) = nix::sys::resource::setrlimit(resource, inf(soft), inf(hard)) {
            fail(&format!("ulimit {name}={soft}:{hard}"), e);
        }
    }
}

fn child(spec: &SandboxSpec, userns: Option<&Userns>, alive: &std::io::PipeReader) -> ! {
    if let Some(ns) = userns {
        // Files the setup makes in the root (mount points, the working directory) and the
        // overlay's own (its creator's) are made as the range's root, which the id-mapped
        // layers store as 0; setfsuid drops the file capabilities, so they are raised again.
        nix::unistd::setfsuid(Uid::from_raw(ns.map.uid));
        nix::unistd::setfsgid(Gid::from_raw(ns.map.gid));
        let raised = caps::read(None, caps::CapSet::Permitted)
            .and_then(|all| caps::set(None, caps::CapSet::Effective, &all));
        if let Err(e) = raised {
            fail("raise capabilities", e);
        }
    }
    if let Err(f) = super::rootfs::prepare(spec, in_user_namespace(), userns) {
        fail(&f.what, f.err);
    }
    let m = &spec.merged;
    if let Err(e) = sethostname(&spec.hostname) {
        fail("sethostname", e);
    }
    if spec.network != Network::Host {
        // Loopback up in the namespace of its own (pasta configures only its interface).
        if let Err(e) = loopback_up() {
            fail("bring the loopback interface up", e);
        }
    }

    // pivot_root onto the overlay and drop the old root: nothing of the host stays visible.
    if let Err(e) = chdir(m.as_path()) {
        fail("chdir to the new root", e);
    }
    if let Err(e) = pivot_root(".", ".") {
        fail("pivot_root", e);
    }
    if let Err(e) = umount2(".", MntFlags::MNT_DETACH) {
        fail("detach the old root", e);
    }
    if let Err(e) = chdir("/") {
        fail("chdir /", e);
    }
    // Inside the new root `/` is the root: an absolute link in WORKDIR stays inside.
    let cwd = PathBuf::from(&spec.cwd);
    if !cwd.is_dir() {
        if let Err(e) = fs_err::create_dir_all(&cwd) {
            fail(&format!("mkdir {}", cwd.display()), e);
        }
    }
    if let Err(e) = chdir(cwd.as_path()) {
        fail(&format!("chdir {}", spec.cwd), e);
    }
    // A session of its own: no controlling terminal, so /dev/tty opens nothing and TIOCSTI
    // cannot reach the terminal of whoever started the build.
    if let Err(e) = nix::unistd::setsid() {
        fail("setsid", e);
    }
    // Everything is mounted: into the user namespace, where this process has every
    // capability, and from here on none on the host.
    if let Some(ns) = userns {
        if let Err(e) = nix::sched::setns(&ns.user, CloneFlags::CLONE_NEWUSER) {
            fail("join the user namespace", e);
        }
    }

    // Capabilities: Docker's defaults in the bounding, permitted and effective sets; the
    // inheritable and ambient sets empty (CVE-2022-29162), so an exec'd file gains nothing.
    let keep: caps::CapsHashSet = DEFAULT_CAPS.iter().copied().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            if let Err(e) = caps::drop(None, caps::CapSet::Bounding, cap) {
                fail("drop capability", e);
            }
        }
    }
    if let Err(e) = caps::set(None, caps::CapSet::Inheritable, &caps::CapsHashSet::new()) {
        fail("clear inheritable capabilities", e);
    }
    if let Err(e) = caps::clear(None, caps::CapSet::Ambient) {
        fail("clear ambient capabilities", e);
    }
    for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
        if let Err(e) = caps::set(None, set, &keep) {
            fail("set capabilities", e);
        }
    }
    let groups: Vec<Gid> = spec.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    // In the single-mapping user namespace setgroups is denied, and only root is mapped.
    if !setgroups_denied() {
        if let Err(e) = setgroups(&groups) {
            fail("setgroups", e);
        }
    }
    if let Err(e) = setgid(Gid::from_raw(spec.gid)) {
        fail("setgid", e);
    }
    if let Err(e) = setuid(Uid::from_raw(spec.uid)) {
        fail("setuid", e);
    }
    still_die_with_helper(alive);
    set_rlimits(spec);
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail("no_new_privs", e);
    }

    let program = resolve_program(spec);
    let to_c =
        |s: &str| CString::new(s).unwrap_or_else(|_| fail("argument", "contains a NUL byte"));
    let argv: Vec<CString> = spec.args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = spec.env.iter().map(|e| to_c(e)).collect();
    let program_c = to_c(&program);
    if let Err(e) = super::seccomp::install() {
        fail("seccomp", e);
    }
    close_from_3();
    let err = execve(&program_c, &argv, &envp).unwrap_err();
    let _ = writeln!(std::io::stderr(), "rbuild sandbox: exec {program}: {err}");
    std::process::exit(if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    });
}

/// Whether this process is in a user namespace other than the initial one (whose `uid_map`
/// maps every id to itself): a rootless build's.
pub(super) fn in_user_namespace() -> bool {
    fs_err::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// Whether `/proc/self/setgroups` says `deny` (the single-mapping user namespace `enter` makes).
fn setgroups_denied() -> bool {
    fs_err::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny")
}

/// Re-runs this program in a new user namespace whose ids `newuidmap`/`newgidmap` map from the
/// plan, and exits with its status; returns if the mapping could not be made.
pub(super) fn reexec_in_userns(plan: &super::rootless::MapPlan) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let (Ok((mut ready_r, mut ready_w)), Ok((mut go_r, mut go_w))) =
        (std::io::pipe(), std::io::pipe())
    else {
        return;
    };
    // SAFETY: called at the start of `main`, before any thread exists, so the child may run
    // any code after fork.
    match unsafe { fork() } {
        Err(_) => {}
        Ok(ForkResult::Child) => {
            drop((ready_r, go_w));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if unshare(CloneFlags::CLONE_NEWUSER).is_err() {
                std::process::exit(SETUP_FAILED);
            }
            let _ = ready_w.write_all(b"u");
            drop(ready_w);
            let mut answer = [0u8; 1];
            let mapped = go_r.read_exact(&mut answer).is_ok() && answer[0] == b'1';
            if !mapped {
                std::process::exit(SETUP_FAILED);
            }
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            let err = std::process::Command::new("/proc/self/exe")
                .args(args)
                .env(super::rootless::IN_USERNS_ENV, "1")
                .exec();
            fail("re-exec in the user namespace", err);
        }
        Ok(ForkResult::Parent { child }) => {
            drop((ready_w, go_r));
            let mut byte = [0u8; 1];
            let unshared = ready_r.read_exact(&mut byte).is_ok();
            let pid = child.as_raw().to_string();
            let map = |tool: &Path, args: &[String]| {
                std::process::Command::new(tool)
                    .arg(&pid)
                    .args(args)
                    .stdout(std::process::Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            };
            let mapped = unshared
                && map(&plan.newuidmap, &plan.uid_args())
                && map(&plan.newgidmap, &plan.gid_args());
            let _ = go_w.write_all(if mapped { b"1" } else { b"0" });
            drop(go_w);
            let code = loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => break code,
                    Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break SETUP_FAILED,
                }
            };
            if mapped {
                std::process::exit(code);
            }
        }
    }
}

/// `args[0]` as a path: as given if it has a `/`, else looked up in the spec's `PATH`.
fn resolve_program(spec: &SandboxSpec) -> String {
    let Some(name) = spec.args.first() else {
        fail("exec", "no command");
    };
    if name.contains('/') {
        return name.clone();
    }
    let path = spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return candidate.to_string_lossy().into_owned();
        }
    }
    name.clone()
}

/// Sends SIGKILL to `pid` (the helper, past a RUN's timeout). The caller makes sure the
/// process is not reaped yet, so the pid cannot belong to another.
pub(super) fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Waits until the child `pid` has exited, without reaping it (`waitid` with `WNOWAIT`).
pub(super) fn wait_exited(pid: u32) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let Ok(pid) = i32::try_from(pid) else { return };
    let pid = nix::unistd::Pid::from_raw(pid);
    while let Err(nix::errno::Errno::EINTR) =
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    {}
}
