//! Chroot isolation: RUN where this process may make no namespace and no mount (a container
//! with Docker's default capabilities and seccomp profile, a Fargate task). The helper makes
//! `/dev`'s nodes in the step's copy of the root filesystem (the builder laid the mounts in as
//! copies), becomes a subreaper, and forks the command, which `chroot`s into the copy, drops
//! to Docker's capabilities less `CAP_SYS_CHROOT`, sets `no_new_privs`, installs the seccomp
//! profile and execs. When the command ends, whatever it left running is killed.
//!
//! What is weaker than the namespaced sandbox is [`super::CHROOT_IS_WEAKER`].
//!
//! `--isolation none` is the same without the chroot and `/dev` (`merged` is `/`, the builder's
//! own root made the stage's filesystem), with Docker's capabilities: [`super::NONE_IS_WEAKER`].

use std::io::Write;
use std::path::Path;

use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;

use super::sandbox::{Command, DEFAULT_CAPS, exec, exit_code, fail, finish};
use super::spec::SandboxSpec;
use super::syscall::{Linux, Syscall};
use crate::fs::{Last, Root};

/// The device nodes RUN gets in `/dev`: name, major, minor (runc's defaults).
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

/// Runs the command under chroot isolation (or none); gives its exit code.
pub(super) fn enter(spec: &SandboxSpec) -> i32 {
    if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        fail("pdeathsig", e);
    }
    if let Some(cg) = &spec.cgroup {
        if let Err(e) = super::cgroup::join(cg) {
            fail("cgroup", e);
        }
    }
    if spec.isolation == super::Isolation::Chroot {
        if let Err(e) = dev(&spec.merged) {
            fail("make /dev", e);
        }
    }
    // Orphans of the command become ours, so none outlives the step.
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        fail("become a subreaper", e);
    }
    let (alive_r, alive_w) = std::io::pipe().unwrap_or_else(|e| fail("pipe", e));
    match super::sys::fork_single() {
        Err(e) => fail("fork", e),
        Ok(ForkResult::Parent { child }) => {
            drop(alive_r);
            let code = exit_code(child);
            // Kill and reap what is left, until nothing is (a fork loop included).
            loop {
                kill_descendants(std::process::id());
                match waitpid(None, Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) => {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                }
            }
            drop(alive_w);
            code
        }
        Ok(ForkResult::Child) => {
            if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
                fail("pdeathsig", e);
            }
            drop(alive_w);
            let command =
                setup(&Linux, spec, &alive_r).unwrap_or_else(|(what, err)| fail(&what, err));
            exec(&command)
        }
    }
}

/// What chroot isolation takes from Docker's capabilities: `CAP_SYS_CHROOT` (root could chroot
/// again and walk out), `CAP_MKNOD` (no `nodev` mount stands between a node RUN makes and the
/// device) and `CAP_NET_RAW` (RUN shares the builder's network, and would see its traffic).
const CHROOT_DROPS: [caps::Capability; 3] = [
    caps::Capability::CAP_SYS_CHROOT,
    caps::Capability::CAP_MKNOD,
    caps::Capability::CAP_NET_RAW,
];

/// Into the root, then what the namespaced sandbox does after `pivot_root`, with Docker's
/// capabilities less [`CHROOT_DROPS`]. With no
/// isolation, no chroot and all of Docker's capabilities.
pub(super) fn setup(
    sys: &dyn Syscall,
    spec: &SandboxSpec,
    alive: &std::io::PipeReader,
) -> Result<Command, (String, String)> {
    if spec.isolation == super::Isolation::None {
        return finish(sys, spec, None, &DEFAULT_CAPS, alive);
    }
    sys.chroot(&spec.merged)
        .map_err(|e| ("chroot".to_owned(), e))?;
    let caps: Vec<caps::Capability> = DEFAULT_CAPS
        .into_iter()
        .filter(|c| !CHROOT_DROPS.contains(c))
        .collect();
    finish(sys, spec, None, &caps, alive)
}

/// `/dev` in the root: the nodes of [`DEVICES`] (where `CAP_MKNOD` and the container's device
/// rules allow), `pts`, `shm`, and the `fd`, `stdin`, `stdout`, `stderr` links; `/proc` and
/// `/sys` as empty directories. Everything is resolved inside the root; `/dev` is left out of
/// the layer.
fn dev(root: &Path) -> Result<(), String> {
    let root = Root::open(root).map_err(|e| e.to_string())?;
    for d in ["dev/pts", "dev/shm", "proc", "sys"] {
        root.create_dir_all(d).map_err(|e| format!("/{d}: {e}"))?;
    }
    let dev = root.path().join(
        root.resolve("dev", Last::Follow)
            .map_err(|e| format!("/dev: {e}"))?,
    );
    for (name, major, minor) in DEVICES {
        let path = dev.join(name);
        let _ = fs_err::remove_file(&path);
        match nix::sys::stat::mknod(
            &path,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(major, minor),
        ) {
            Ok(()) => {}
            // No CAP_MKNOD here (or a user namespace): RUN goes without the node.
            Err(nix::errno::Errno::EPERM) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "rbuild: warning: cannot make /dev/{name} (EPERM): RUN has none"
                );
                continue;
            }
            Err(e) => return Err(format!("mknod /dev/{name}: {e}")),
        }
        // mknod's mode went through the umask.
        fs_err::set_permissions(
            &path,
            <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o666),
        )
        .map_err(|e| e.to_string())?;
    }
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        let path = dev.join(name);
        if fs_err::symlink_metadata(&path).is_err() {
            std::os::unix::fs::symlink(target, &path).map_err(|e| format!("/dev/{name}: {e}"))?;
        }
    }
    Ok(())
}

/// SIGKILLs every descendant of `pid` (found by their parents in `/proc`), over again until
/// none is left (what forked meanwhile goes too), at most a thousand rounds.
pub(super) fn kill_descendants(pid: u32) {
    for _ in 0..1000 {
        let below = descendants(pid);
        if below.is_empty() {
            return;
        }
        for p in below {
            super::sys::kill(p);
        }
    }
}

/// SIGKILLs every process whose root is `root` (one that outlived its helper: RUN may kill
/// its own helper, and its children then leave the tree), until none is.
pub(super) fn kill_rooted_in(root: &Path) {
    let Ok(root) = fs_err::canonicalize(root) else {
        return;
    };
    for _ in 0..1000 {
        let rooted: Vec<u32> = fs_err::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|p| fs_err::read_link(format!("/proc/{p}/root")).is_ok_and(|r| r == root))
            .collect();
        if rooted.is_empty() {
            return;
        }
        for p in rooted {
            super::sys::kill(p);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The processes below `pid`, read from `/proc/*/stat`.
fn descendants(pid: u32) -> Vec<u32> {
    let Ok(dir) = fs_err::read_dir("/proc") else {
        return Vec::new();
    };
    let parents: Vec<(u32, u32)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = fs_err::read_to_string(format!("/proc/{p}/stat")).ok()?;
            // `pid (comm) state ppid …`: comm may hold spaces and parentheses.
            let after = stat.rsplit_once(')')?.1;
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((p, ppid))
        })
        .collect();
    let mut out = Vec::new();
    let mut frontier = vec![pid];
    while let Some(p) = frontier.pop() {
        for (child, _) in parents.iter().filter(|(_, pp)| *pp == p) {
            if !out.contains(child) {
                out.push(*child);
                frontier.push(*child);
            }
        }
    }
    out
}

/// Whether this process can make the namespaced sandbox's namespaces and mounts: a helper
/// tries them (`HELPER_ARG --probe`) and says why not.
pub(super) fn probe() -> i32 {
    use nix::sched::{CloneFlags, unshare};
    if !nix::unistd::Uid::effective().is_root() {
        // As the helper does for a rootless build (exits with its reason if it cannot).
        super::sandbox::map_self();
    }
    let flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWCGROUP;
    if let Err(e) = unshare(flags) {
        let _ = writeln!(std::io::stderr(), "unshare: {e}");
        return 1;
    }
    let private = nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    );
    if let Err(e) = private {
        let _ = writeln!(std::io::stderr(), "mount: {e}");
        return 1;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::syscall::fake::Recording;

    #[test]
    fn chroot_isolation_mounts_nothing_and_drops_sys_chroot() {
        let dir = tempfile::tempdir().unwrap();
        let spec = SandboxSpec {
            cwd: "/w".into(),
            uid: 1000,
            gid: 1000,
            groups: vec![1000],
            isolation: crate::exec::Isolation::Chroot,
            ..SandboxSpec::new(
                dir.path().join("lower"),
                dir.path(),
                vec!["/bin/true".into()],
            )
        };
        let sys = Recording {
            root: spec.merged.clone(),
            ..Recording::default()
        };
        let (alive, _helper) = std::io::pipe().unwrap();
        setup(&sys, &spec, &alive).unwrap();
        let calls = sys.calls.into_inner();
        insta::assert_snapshot!(calls.join("\n"), @r"
        chroot <root>/
        mkdir /w
        chdir /w
        setsid
        capabilities 11
        ids groups=[1000] gid=1000 uid=1000
        pdeathsig
        rlimits nofile
        no_new_privs
        seccomp
        ");
    }

    #[test]
    fn descendants_are_found_through_their_parents() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while descendants(pid).len() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(descendants(pid).len(), 2, "the two sleeps");
        kill_descendants(pid);
        let status = child.wait().unwrap();
        assert!(status.success(), "sh's wait returns once both are killed");
    }
}
