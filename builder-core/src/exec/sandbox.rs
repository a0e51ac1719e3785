//! The sandbox helper's sequence, from its namespaces to `execve`: user namespace (rootless),
//! network (pasta or loopback only), cgroup, mount/pid/cgroup/UTS/IPC namespaces, the root
//! filesystem (`rootfs.rs`), `pivot_root`, capabilities, ids, limits, seccomp, exec.

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::{ForkResult, Gid, Uid, execve};

use super::rootless::in_user_namespace;
use super::spec::{Network, PRIVATE_DNS, SandboxSpec};
use super::sys::{SETUP_FAILED, close_from_3, idmapped_tree};
use super::syscall::{Linux, Syscall};
use super::userns::{Userns, make_userns};

/// Docker's default capability set.
pub(super) const DEFAULT_CAPS: [caps::Capability; 14] = [
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

/// Ends the helper: a setup step failed.
pub(super) fn fail(what: &str, err: impl std::fmt::Display) -> ! {
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
    if !Uid::effective().is_root() {
        map_self();
    }
    let userns = run_userns(spec);
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
    match super::sys::fork_single() {
        Err(e) => fail("fork", e),
        Ok(ForkResult::Parent { child }) => {
            drop(alive_r);
            let code = exit_code(child);
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

/// The user namespace for `spec` if it asks for one and this kernel can id-map the root
/// filesystem's mount (probed with a detached, discarded copy); else why not.
fn userns_for(spec: &SandboxSpec) -> Option<Result<Userns, String>> {
    use std::os::fd::AsFd;
    let map = spec.userns?;
    if !Uid::effective().is_root() || in_user_namespace() {
        return None;
    }
    Some(make_userns(map).and_then(|ns| {
        let root = match spec.lower.first() {
            Some(lower) if !spec.copied_rootfs => lower,
            _ => &spec.merged,
        };
        idmapped_tree(root, ns.user.as_fd(), false, false)
            .map_err(|e| format!("cannot id-map a mount of {}: {e}", root.display()))?;
        Ok(ns)
    }))
}

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
    match super::sys::fork_single() {
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
            let err = std::process::Command::new(super::spec::PASTA)
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

/// BuildKit's default resource limits, then the spec's `--ulimit`s: name, soft, hard.
fn rlimits(spec: &SandboxSpec) -> Vec<(String, u64, u64)> {
    let defaults = super::spec::DEFAULT_ULIMITS
        .iter()
        .filter(|(name, ..)| !spec.ulimits.iter().any(|u| u.name == *name))
        .map(|(name, soft, hard)| ((*name).to_owned(), *soft, *hard));
    let given = spec
        .ulimits
        .iter()
        .map(|u| (u.name.clone(), u.soft, u.hard));
    defaults.chain(given).collect()
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
    let command = setup(&Linux, spec, in_user_namespace(), userns, alive)
        .unwrap_or_else(|(what, err)| fail(&what, err));
    exec(&command)
}

/// Waits for `child` to end; gives its exit code (128 + the signal that killed it).
pub(super) fn exit_code(child: nix::unistd::Pid) -> i32 {
    loop {
        match waitpid(child, None) {
            Ok(WaitStatus::Exited(_, code)) => return code,
            Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => fail("wait", e),
        }
    }
}

/// Execs `command` with no descriptor past stderr; if it cannot, exits as a shell would (127
/// for a program not found, else 126).
pub(super) fn exec(command: &Command) -> ! {
    close_from_3();
    let err = execve(&command.program, &command.argv, &command.envp).unwrap_err();
    let _ = writeln!(
        std::io::stderr(),
        "rbuild sandbox: exec {}: {err}",
        command.program.to_string_lossy()
    );
    std::process::exit(if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    });
}

/// The command as `execve` takes it.
pub(super) struct Command {
    pub(super) program: CString,
    pub(super) argv: Vec<CString>,
    pub(super) envp: Vec<CString>,
}

/// Everything from the root filesystem to seccomp, in order: mounts (`rootfs.rs`), hostname,
/// loopback, `pivot_root`, the working directory, a session of its own, into RUN's user
/// namespace, Docker's capabilities, ids, the parent-death signal, limits, `no_new_privs`,
/// seccomp. A failure says which step and why.
fn setup(
    sys: &dyn Syscall,
    spec: &SandboxSpec,
    in_user_namespace: bool,
    userns: Option<&Userns>,
    alive: &std::io::PipeReader,
) -> Result<Command, (String, String)> {
    let at = |what: &str| {
        let what = what.to_owned();
        move |err: String| (what, err)
    };
    super::rootfs::prepare(sys, spec, in_user_namespace, userns).map_err(|f| (f.what, f.err))?;
    sys.sethostname(&spec.hostname).map_err(at("sethostname"))?;
    if spec.network != Network::Host {
        // Loopback up in the namespace of its own (pasta configures only its interface).
        sys.loopback_up()
            .map_err(at("bring the loopback interface up"))?;
    }
    // Onto the new root, the old one dropped: nothing of the host stays visible.
    sys.pivot_root(&spec.merged).map_err(at("pivot_root"))?;
    finish(sys, spec, userns, &DEFAULT_CAPS, alive)
}

/// Inside the new root, to seccomp: the working directory, a session of its own, into RUN's
/// user namespace, `caps`, ids, the parent-death signal, limits, `no_new_privs`, seccomp.
pub(super) fn finish(
    sys: &dyn Syscall,
    spec: &SandboxSpec,
    userns: Option<&Userns>,
    caps: &[caps::Capability],
    alive: &std::io::PipeReader,
) -> Result<Command, (String, String)> {
    let at = |what: &str| {
        let what = what.to_owned();
        move |err: String| (what, err)
    };
    // Inside the new root `/` is the root: an absolute link in WORKDIR stays inside.
    let cwd = PathBuf::from(&spec.cwd);
    sys.make_dir(&cwd)
        .map_err(at(&format!("mkdir {}", cwd.display())))?;
    sys.chdir(&cwd)
        .map_err(at(&format!("chdir {}", spec.cwd)))?;
    // A session of its own: no controlling terminal, so /dev/tty opens nothing and TIOCSTI
    // cannot reach the terminal of whoever started the build.
    sys.setsid().map_err(at("setsid"))?;
    // Everything is mounted: into the user namespace, where this process has every
    // capability, and from here on none on the host.
    if let Some(ns) = userns {
        use std::os::fd::AsFd;
        sys.join_user_namespace(ns.user.as_fd())
            .map_err(at("join the user namespace"))?;
    }
    // Docker's capabilities in the bounding, permitted and effective sets; the inheritable and
    // ambient sets empty (CVE-2022-29162), so an exec'd file gains nothing.
    sys.limit_capabilities(caps).map_err(at("capabilities"))?;
    sys.set_ids(&spec.groups, spec.gid, spec.uid)
        .map_err(at("ids"))?;
    sys.die_with_helper(alive).map_err(at("pdeathsig"))?;
    sys.set_rlimits(&rlimits(spec)).map_err(at("ulimit"))?;
    sys.no_new_privs().map_err(at("no_new_privs"))?;
    let to_c = |s: &str| {
        CString::new(s).map_err(|_| ("argument".to_owned(), "contains a NUL byte".to_owned()))
    };
    let command = Command {
        program: to_c(&resolve_program(spec)?)?,
        argv: spec
            .args
            .iter()
            .map(|a| to_c(a))
            .collect::<Result<_, _>>()?,
        envp: spec.env.iter().map(|e| to_c(e)).collect::<Result<_, _>>()?,
    };
    sys.seccomp().map_err(at("seccomp"))?;
    Ok(command)
}

/// `args[0]` as a path: as given if it has a `/`, else looked up in the spec's `PATH`.
fn resolve_program(spec: &SandboxSpec) -> Result<String, (String, String)> {
    let Some(name) = spec.args.first() else {
        return Err(("exec".into(), "no command".into()));
    };
    if name.contains('/') {
        return Ok(name.clone());
    }
    let path = spec
        .env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':') {
        let candidate = Path::new(dir).join(name);
        if candidate.is_file() {
            return Ok(candidate.to_string_lossy().into_owned());
        }
    }
    Ok(name.clone())
}

/// A user namespace mapping this process's uid and gid to root (a single mapping, as an
/// unprivileged process may write for itself).
pub(super) fn map_self() {
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

/// As root: RUN's ids as an unprivileged range of the host's, where the kernel can id-map
/// the mounts (`--userns auto`); else none, with a warning.
fn run_userns(spec: &SandboxSpec) -> Option<Userns> {
    match userns_for(spec) {
        None => None,
        Some(Ok(ns)) => Some(ns),
        Some(Err(why)) => {
            let _ = writeln!(
                std::io::stderr(),
                "rbuild: warning: RUN runs as the host's root, without a user namespace: {why}"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::syscall::fake::Recording;

    #[test]
    fn the_sandbox_is_set_up_in_order_and_it_is_tested_without_root() {
        let dir = tempfile::tempdir().unwrap();
        let at = |p: &str| dir.path().join(p);
        fs_err::write(at("hosts"), "127.0.0.1 localhost\n").unwrap();
        fs_err::create_dir(at("cache")).unwrap();
        let spec = SandboxSpec {
            env: vec!["PATH=/bin".into()],
            cwd: "/w".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000, 27],
            hosts: Some(at("hosts")),
            binds: vec![crate::exec::Bind {
                source: at("cache"),
                target: "/root/.cache".into(),
                readonly: false,
            }],
            tmpfs: vec![("/tmp".into(), Some(1 << 20))],
            ..SandboxSpec::new(at("lower"), dir.path(), vec!["/bin/true".into()])
        };
        let sys = Recording {
            root: spec.merged.clone(),
            ..Recording::default()
        };
        let (alive, _helper) = std::io::pipe().unwrap();
        let command = setup(&sys, &spec, false, None, &alive).unwrap();
        assert_eq!(command.program.to_str().unwrap(), "/bin/true");
        let calls = sys.calls.into_inner();
        let host = dir.path().display().to_string();
        let shown = calls.join("\n").replace(&host, "<tmp>");
        insta::assert_snapshot!(shown, @r"
        mount - /
        mount overlay <root>/
        mount proc <root>/proc
        mount sysfs <root>/sys ro
        mount tmpfs <root>/dev
        mount /dev/null <root>/dev/null bind
        mount /dev/zero <root>/dev/zero bind
        mount /dev/full <root>/dev/full bind
        mount /dev/random <root>/dev/random bind
        mount /dev/urandom <root>/dev/urandom bind
        mount /dev/tty <root>/dev/tty bind
        mount devpts <root>/dev/pts
        mount tmpfs <root>/dev/shm
        mount <tmp>/hosts <root>/etc/hosts bind
        setattr <root>/etc/hosts nodev ro
        mount <tmp>/cache <root>/root/.cache bind
        setattr <root>/root/.cache nodev
        mount tmpfs <root>/tmp
        sethostname buildkitsandbox
        loopback up
        pivot_root <root>/
        mkdir /w
        chdir /w
        setsid
        capabilities 14
        ids groups=[1000, 27] gid=1000 uid=1000
        pdeathsig
        rlimits nofile
        no_new_privs
        seccomp
        ");
        // The rules the order keeps, whatever else changes: every mount before pivot_root,
        // capabilities dropped before the ids change, seccomp last.
        let at = |name: &str| calls.iter().position(|c| c.starts_with(name)).unwrap();
        let last_mount = calls.iter().rposition(|c| c.starts_with("mount")).unwrap();
        assert!(last_mount < at("pivot_root"));
        assert!(at("capabilities") < at("ids"));
        assert!(at("no_new_privs") < at("seccomp"));
        assert_eq!(calls.last().map(String::as_str), Some("seccomp"));
    }
}
