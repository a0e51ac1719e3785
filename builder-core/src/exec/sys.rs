//! The only place with `unsafe` and raw system calls: namespaces, mounts, `pivot_root`,
//! capabilities and exec, run in the single-threaded sandbox helper.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
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
    let mut flags = CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWIPC;
    if spec.network == Network::None {
        flags |= CloneFlags::CLONE_NEWNET;
    }
    if let Err(e) = unshare(flags) {
        fail("unshare", e);
    }
    // SAFETY: the helper is single-threaded (it is a fresh process that has started no thread),
    // so the child may run any code after fork, not only async-signal-safe functions.
    match unsafe { fork() } {
        Err(e) => fail("fork", e),
        Ok(ForkResult::Parent { child }) => loop {
            match waitpid(child, None) {
                Ok(WaitStatus::Exited(_, code)) => return code,
                Ok(WaitStatus::Signaled(_, sig, _)) => return 128 + sig as i32,
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => fail("wait", e),
            }
        },
        Ok(ForkResult::Child) => {
            // PID 1 of the new pid namespace: when it exits, everything in it is killed; and it
            // is killed when the helper goes, so a cancelled build leaves nothing running.
            if let Err(e) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
                fail("pdeathsig", e);
            }
            child(spec)
        }
    }
}

fn touch(path: &Path) {
    if !path.exists() {
        if let Some(parent) = path.parent() {
            let _ = fs_err::create_dir_all(parent);
        }
        if let Err(e) = fs_err::File::create(path) {
            fail(&format!("create {}", path.display()), e);
        }
    }
}

fn mkdir(path: &Path) {
    if let Err(e) = fs_err::create_dir_all(path) {
        fail(&format!("mkdir {}", path.display()), e);
    }
}

fn do_mount(
    src: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) {
    if let Err(e) = mount(src, target, fstype, flags, data) {
        fail(
            &format!(
                "mount {} on {}",
                fstype.or(src).unwrap_or("?"),
                target.display()
            ),
            e,
        );
    }
}

fn bind(src: &Path, target: &Path, readonly: bool) {
    do_mount(
        Some(&src.to_string_lossy()),
        target,
        None,
        MsFlags::MS_BIND,
        None,
    );
    if readonly {
        do_mount(
            None,
            target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None,
        );
    }
}

fn child(spec: &SandboxSpec) -> ! {
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    );
    let m = &spec.merged;
    mkdir(m);
    let overlay = format!(
        "lowerdir={},upperdir={},workdir={},index=off,redirect_dir=off,metacopy=off",
        spec.lower.display(),
        spec.upper.display(),
        spec.work.display()
    );
    // Unprivileged overlayfs keeps its metadata in user.* xattrs.
    let overlay = if in_user_namespace() {
        format!("{overlay},userxattr")
    } else {
        overlay
    };
    if spec.copied_rootfs {
        // pivot_root needs a mount point: the copy is bind-mounted onto itself.
        bind(m, m, false);
    } else {
        do_mount(
            Some("overlay"),
            m,
            Some("overlay"),
            MsFlags::empty(),
            Some(&overlay),
        );
    }

    mkdir(&m.join("proc"));
    do_mount(
        Some("proc"),
        &m.join("proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );

    let dev = m.join("dev");
    mkdir(&dev);
    do_mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some("mode=755,size=65536k"),
    );
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        touch(&target);
        bind(&Path::new("/dev").join(node), &target, false);
    }
    mkdir(&dev.join("pts"));
    do_mount(
        Some("devpts"),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    );
    mkdir(&dev.join("shm"));
    do_mount(
        Some("shm"),
        &dev.join("shm"),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    );
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }

    for (file, src) in [
        ("etc/hosts", &spec.hosts),
        ("etc/resolv.conf", &spec.resolv_conf),
    ] {
        if let Some(src) = src {
            let target = m.join(file);
            touch(&target);
            bind(src, &target, true);
        }
    }
    for b in &spec.binds {
        let target = m.join(b.target.trim_start_matches('/'));
        if b.source.is_dir() {
            mkdir(&target);
        } else {
            touch(&target);
        }
        do_mount(
            Some(&b.source.to_string_lossy()),
            &target,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None,
        );
        if b.readonly {
            do_mount(
                None,
                &target,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                None,
            );
        }
    }
    for (target, size) in &spec.tmpfs {
        let t = m.join(target.trim_start_matches('/'));
        mkdir(&t);
        let data = size.map(|s| format!("size={s}"));
        do_mount(
            Some("tmpfs"),
            &t,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            data.as_deref(),
        );
    }
    if let Err(e) = sethostname(&spec.hostname) {
        fail("sethostname", e);
    }
    if spec.network == Network::None {
        // Only loopback, and up. Best effort: without `ip` the namespace has no network at all.
        let _ = std::process::Command::new("ip")
            .args(["link", "set", "lo", "up"])
            .status();
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
    let cwd = PathBuf::from(&spec.cwd);
    if !cwd.is_dir() {
        mkdir(&cwd);
    }
    if let Err(e) = chdir(cwd.as_path()) {
        fail(&format!("chdir {}", spec.cwd), e);
    }

    // Capabilities: only Docker's defaults, from here on and for anything exec'd.
    let keep: caps::CapsHashSet = DEFAULT_CAPS.iter().copied().collect();
    for cap in caps::all() {
        if !keep.contains(&cap) {
            if let Err(e) = caps::drop(None, caps::CapSet::Bounding, cap) {
                fail("drop capability", e);
            }
        }
    }
    for set in [
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
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
    if let Err(e) = nix::sys::prctl::set_no_new_privs() {
        fail("no_new_privs", e);
    }
    if let Err(e) = install_seccomp() {
        fail("seccomp", e);
    }

    let program = resolve_program(spec);
    let to_c =
        |s: &str| CString::new(s).unwrap_or_else(|_| fail("argument", "contains a NUL byte"));
    let argv: Vec<CString> = spec.args.iter().map(|a| to_c(a)).collect();
    let envp: Vec<CString> = spec.env.iter().map(|e| to_c(e)).collect();
    let err = execve(&to_c(&program), &argv, &envp).unwrap_err();
    let _ = writeln!(std::io::stderr(), "rbuild sandbox: exec {program}: {err}");
    std::process::exit(if err == nix::errno::Errno::ENOENT {
        127
    } else {
        126
    });
}

/// The system calls Docker's default seccomp profile refuses a container without extra
/// capabilities: kernel modules and keyrings, mounts and namespaces, tracing other processes,
/// clocks, reboot, swap, BPF and perf, handle-based opens, userfaultfd, personality tricks.
#[rustfmt::skip]
#[allow(clippy::wildcard_imports)] // the SYS_ constants are the list
fn denied_syscalls() -> Vec<i64> {
    use nix::libc::*;
    let mut v = vec![
        SYS_acct, SYS_add_key, SYS_bpf, SYS_clock_adjtime, SYS_clock_settime, SYS_delete_module,
        SYS_finit_module, SYS_get_mempolicy, SYS_init_module, SYS_kcmp, SYS_kexec_load, SYS_keyctl,
        SYS_lookup_dcookie, SYS_mbind, SYS_mount, SYS_move_pages, SYS_name_to_handle_at,
        SYS_nfsservctl, SYS_open_by_handle_at, SYS_perf_event_open, SYS_pivot_root,
        SYS_process_vm_readv, SYS_process_vm_writev, SYS_ptrace, SYS_quotactl, SYS_reboot,
        SYS_request_key, SYS_set_mempolicy, SYS_setns, SYS_settimeofday, SYS_swapon, SYS_swapoff,
        SYS_umount2, SYS_unshare, SYS_userfaultfd, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
        SYS_move_mount, SYS_open_tree, SYS_kexec_file_load,
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        SYS_ioperm, SYS_iopl, SYS_sysfs, SYS__sysctl, SYS_uselib, SYS_ustat,
    ]);
    v
}

fn install_seccomp() -> Result<(), seccompiler::Error> {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
    let arch = if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    };
    let deny = SeccompFilter::new(
        denied_syscalls()
            .into_iter()
            .map(|n| (n, Vec::new()))
            .collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(nix::libc::EPERM).unwrap_or(1)),
        arch,
    )?;
    // clone3 answers "not implemented", so libc falls back to clone, as under Docker's profile.
    let clone3 = SeccompFilter::new(
        [(nix::libc::SYS_clone3, Vec::new())].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(u32::try_from(nix::libc::ENOSYS).unwrap_or(38)),
        arch,
    )?;
    for filter in [deny, clone3] {
        let program: BpfProgram = filter.try_into()?;
        seccompiler::apply_filter(&program)?;
    }
    Ok(())
}

/// Whether this process is in a user namespace other than the initial one (whose `uid_map`
/// maps every id to itself): a rootless build's.
fn in_user_namespace() -> bool {
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
