//! The sandbox RUN executes in: a single-threaded helper process (a re-exec of the binary, so
//! nothing is forked from a threaded runtime) that unshares mount, pid, uts, ipc, cgroup and
//! network namespaces, mounts an overlay of the stage's root filesystem with a fresh upper
//! directory, `/proc`, `/sys`, a minimal `/dev`, `/etc/hosts` and `/etc/resolv.conf`, pivots
//! into it, drops to Docker's default capabilities, sets `no_new_privs`, installs Docker's
//! seccomp profile, becomes the step's user and execs the command. The upper directory is what
//! the command changed.
//!
//! Programs that embed `builder-core` and run builds with RUN call [`helper_main`] first thing
//! in `main`.
//!
//! Every rule, next to the runc / Docker default it matches or exceeds:
//!
//! | rule | rbuild | runc's default for Docker |
//! |---|---|---|
//! | namespaces | mount, pid, uts, ipc, cgroup, net (private, or none); user: as root `--userns auto` (default), rootless always | same; user only with userns-remap |
//! | ids | as root: RUN's 0…N are the host's 2^31… (`IdMap::DEFAULT`, or `/etc/subuid` `rbuild`); its net, uts and ipc namespaces owned by that user namespace; layers, copy root and binds id-mapped (`open_tree` + `mount_setattr(MOUNT_ATTR_IDMAP)`), so files keep their ids | userns-remap: a subordinate range, files chowned into it |
//! | mount targets | resolved inside the root ([`crate::fs`]): an image's links never reach the host | securejoin |
//! | `/proc` | masked: `acpi`, `asound`, `interrupts`, `kcore`, `keys`, `latency_stats`, `timer_list`, `timer_stats`, `sched_debug`, `scsi`; read-only: `bus`, `fs`, `irq`, `sys`, `sysrq-trigger` | same lists |
//! | `/sys` | sysfs read-only, firmware and powercap masked | same |
//! | devices | every mount `nodev` but the nodes bound into `/dev` (null, zero, full, random, urandom, tty; ptys from a new devpts); on v1 also a devices cgroup with runc's allowlist | devices cgroup with that allowlist |
//! | read-only binds | read-only recursively (`mount_setattr(AT_RECURSIVE)`) | `rbind,ro` |
//! | capabilities | bounding = permitted = effective = Docker's 14; inheritable and ambient empty | same (CVE-2022-29162) |
//! | seccomp | `seccomp.json`: Docker's allow list with its argument rules (personality, clone flags, socket families), `io_uring` refused, clone3 ENOSYS, numbers past the profile's (and x32) ENOSYS; other architectures killed | Docker's profile + runc's ENOSYS stub; i386/x32 by name |
//! | `no_new_privs` | set | set |
//! | descriptors | only 0, 1, 2 (`close_range` before exec); stdin is `/dev/null` | only 0–2 |
//! | terminal | a session of its own (`setsid`), no controlling terminal: `/dev/tty` is ENXIO, TIOCSTI reaches nothing | same (no tty for builds) |
//! | cgroup | one per RUN under the builder's own (`cgroup.rs`, [`Limits`]): `--memory` (OOM named in the error), `--pids-limit` (default [`DEFAULT_PIDS`]), `--cpus`; skipped with a warning where cgroups cannot be written | BuildKit: none of these by default |
//! | rlimits | `nofile` 1024 (BuildKit's), `--ulimit` | same |
//! | network | `Private`: its own namespace with pasta (outbound and DNS; no port forwarded, gateway not mapped to the host's loopback), `None`, or `Host` (a service must allow it) | BuildKit: its own namespace (CNI) or host |
//!
//! Not yet: a device program for pure
//! cgroup v2 hosts (the `nodev` rule holds there). A rootless build gets the private network
//! where it can open `/dev/net/tun` (Debian's default, 0666), else the user's, with a warning.
//!
//! Where namespaces cannot be made (a container with Docker's capabilities and seccomp profile),
//! [`Isolation::Chroot`] chroots into a prepared copy instead, and [`Isolation::None`] runs in
//! the builder's own root (`chroot.rs`); what each gives up is [`CHROOT_IS_WEAKER`] and
//! [`NONE_IS_WEAKER`]. [`Helper::relocated`] starts the helper from copies of its own files.
//!
//! Imports: `fs` (paths inside the root); it takes a plain [`SandboxSpec`].

mod binfmt;
mod cgroup;
mod chroot;
mod rootfs;
mod rootless;
mod sandbox;
mod seccomp;
mod spec;
mod sys;
mod syscall;
mod userns;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub use binfmt::{
    BINFMT_DIR, BinfmtError, can_run as binfmt_can_run, install as install_binfmt,
    missing_help as binfmt_help,
};
pub use cgroup::{Cgroup, DEFAULT_PIDS, Limits, parse_bytes};
pub use rootless::{IDS_ENV, IN_USERNS_ENV, rootless_reexec};
pub use spec::{
    Bind, CHROOT_IS_WEAKER, DEFAULT_ULIMITS, IdMap, Isolation, NONE_IS_WEAKER, Network,
    PRIVATE_DNS, PrivateUnavailable, SandboxSpec, Ulimit, Userns,
};

/// The argument that makes the binary the sandbox helper.
pub const HELPER_ARG: &str = "__rbuild-sandbox";

/// What can go wrong starting or running a sandbox.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The helper could not be started or spoken to.
    #[error("cannot start the sandbox helper `{helper}`")]
    Spawn {
        /// The helper binary.
        helper: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The spec could not be serialized.
    #[error("invalid sandbox spec")]
    Spec(#[source] serde_json::Error),
}

/// How a sandboxed command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    /// The exit code (128 + signal for a signal).
    pub code: i32,
    /// Whether the spec's timeout ended it.
    pub timed_out: bool,
    /// Whether `cancel` ended it.
    pub cancelled: bool,
    /// Whether the OOM killer ended a process of it (past [`cgroup::Limits::memory`]).
    pub oom_killed: bool,
    /// Why the run had no cgroup (no limits, no device cgroup), if it had none.
    pub no_cgroup: Option<String>,
}

/// How the sandbox helper is started: this binary, or a copy of it run by a copy of its
/// dynamic loader (under `--isolation none`, where `/` becomes the stage's filesystem and its
/// libraries may go).
#[derive(Debug, Clone)]
pub struct Helper {
    /// The program to exec.
    pub program: PathBuf,
    /// Arguments before [`HELPER_ARG`].
    pub args: Vec<std::ffi::OsString>,
}

impl Helper {
    /// This binary (`/proc/self/exe`).
    ///
    /// # Errors
    /// The running binary cannot be named.
    pub fn this_binary() -> std::io::Result<Self> {
        Ok(Self {
            program: std::env::current_exe()?,
            args: Vec::new(),
        })
    }

    /// A copy of this binary and of every shared library it has mapped (its dynamic loader
    /// among them) in `dir`, started through that loader with `--library-path dir`: it runs
    /// whatever `/` holds. A static binary is copied alone.
    ///
    /// # Errors
    /// A file cannot be read or copied.
    pub fn relocated(dir: &Path) -> std::io::Result<Self> {
        fs_err::create_dir_all(dir)?;
        let exe = dir.join("rbuild");
        if !exe.exists() {
            fs_err::copy(std::env::current_exe()?, &exe)?;
        }
        let maps = fs_err::read_to_string("/proc/self/maps")?;
        let mut loader = None;
        for lib in maps
            .lines()
            .filter_map(|l| l.split_whitespace().nth(5))
            .filter(|p| p.starts_with('/') && p.contains(".so"))
        {
            let Some(name) = Path::new(lib).file_name() else {
                continue;
            };
            let to = dir.join(name);
            if !to.exists() {
                fs_err::copy(lib, &to)?;
            }
            let name = name.to_string_lossy();
            if name.starts_with("ld-linux") || name.starts_with("ld-musl") || name == "ld64.so.2" {
                loader = Some(to);
            }
        }
        Ok(match loader {
            Some(loader) => Self {
                program: loader,
                args: vec!["--library-path".into(), dir.into(), exe.into()],
            },
            None => Self {
                program: exe,
                args: Vec::new(),
            },
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args);
        cmd
    }
}

/// Runs `spec` in a sandbox through `helper` (the binary that calls [`helper_main`]), passing
/// each line of its output (stdout and stderr, merged) to `on_line`.
pub fn run(
    helper: &Helper,
    spec: &SandboxSpec,
    on_line: &mut dyn FnMut(&str),
) -> Result<Exit, Error> {
    run_cancellable(helper, spec, &crate::cancel::Cancel::new(), on_line)
}

/// [`run`], killed (with everything it started) as soon as `cancel` is set.
pub fn run_cancellable(
    helper: &Helper,
    spec: &SandboxSpec,
    cancel: &crate::cancel::Cancel,
    on_line: &mut dyn FnMut(&str),
) -> Result<Exit, Error> {
    // The step's cgroup: made here, joined by the helper, read (OOM) and removed after.
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let id = format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let (cg, no_cgroup) = match cgroup::create(&spec.limits, &id) {
        Ok(cg) => (Some(cg), None),
        Err(why) => (None, Some(why)),
    };
    let mut spec = spec.clone();
    spec.cgroup.clone_from(&cg);
    let spec = &spec;
    // (Under chroot, what outlived the helper is killed inside, before it returns.)
    let result = run_in(helper, spec, cancel, on_line);
    let oom_killed = cg.as_ref().is_some_and(cgroup::oom_killed);
    if let Some(cg) = &cg {
        cgroup::remove(cg);
    }
    result.map(|exit| Exit {
        oom_killed,
        no_cgroup,
        ..exit
    })
}

fn run_in(
    helper: &Helper,
    spec: &SandboxSpec,
    cancel: &crate::cancel::Cancel,
    on_line: &mut dyn FnMut(&str),
) -> Result<Exit, Error> {
    let json = serde_json::to_vec(spec).map_err(Error::Spec)?;
    let spawn_err = |source| Error::Spawn {
        helper: helper.program.clone(),
        source,
    };
    let (reader, writer) = std::io::pipe().map_err(spawn_err)?;
    let mut child = helper
        .command()
        .arg(HELPER_ARG)
        .stdin(Stdio::piped())
        .stdout(writer.try_clone().map_err(spawn_err)?)
        .stderr(writer)
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&json).map_err(spawn_err)?;
    }
    // The watchdog sleeps in poll(2) on the cancel token's pipe and on `finished` (closed once
    // the helper is reaped), for at most the timeout. Woken by the token or the timeout, it
    // kills the helper; the namespace's init has a parent-death signal, and when it dies the
    // kernel kills everything else in the namespace. `reaped` (under its lock) keeps the
    // watchdog from signalling a pid already reused.
    let cancel_fd = cancel.fd().map_err(spawn_err)?;
    let (finished, done) = std::io::pipe().map_err(spawn_err)?;
    let reaped = std::sync::Mutex::new(false);
    let timed_out = std::sync::atomic::AtomicBool::new(false);
    let cancelled = std::sync::atomic::AtomicBool::new(false);
    let pid = child.id();
    std::thread::scope(|scope| -> Result<Exit, Error> {
        let (reaped, timed_out, cancelled) = (&reaped, &timed_out, &cancelled);
        scope.spawn(move || {
            use std::os::fd::AsFd;
            use std::sync::atomic::Ordering::SeqCst;
            let woke = sys::wait_readable(&[cancel_fd, finished.as_fd()], spec.timeout);
            let flag = match woke {
                Some(0) => cancelled,
                None => timed_out,
                _ => return,
            };
            let reaped = reaped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !*reaped {
                flag.store(true, SeqCst);
                if matches!(spec.isolation, Isolation::Chroot | Isolation::None) {
                    // No pid namespace ends them with the helper: its descendants first.
                    chroot::kill_descendants(pid);
                }
                sys::kill(pid);
            }
        });
        if spec.isolation == Isolation::Chroot {
            // Once the helper has gone, so does what it left with the copy as its root (RUN
            // may kill its helper; its children would hold the output open).
            scope.spawn(move || {
                sys::wait_exited(pid);
                chroot::kill_rooted_in(&spec.merged);
            });
        }
        read_lines(reader, on_line);
        sys::wait_exited(pid);
        let status = {
            let mut reaped = reaped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *reaped = true;
            child.wait()
        };
        drop(done);
        let status = status.map_err(spawn_err)?;
        let code = status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        });
        Ok(Exit {
            code,
            timed_out: timed_out.load(std::sync::atomic::Ordering::SeqCst),
            cancelled: cancelled.load(std::sync::atomic::Ordering::SeqCst),
            oom_killed: false,
            no_cgroup: None,
        })
    })
}

/// Whether this process can set up the namespaced sandbox (namespaces and mounts), tried by
/// the helper at `helper`; else the system's word for why not. Asked once a process.
///
/// # Errors
/// Why the namespaces cannot be made (`unshare: EPERM` in a container with Docker's default
/// capabilities and seccomp profile).
pub fn namespaces_available(helper: &Helper) -> Result<(), String> {
    static ANSWER: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    ANSWER
        .get_or_init(|| {
            let out = helper
                .command()
                .args([HELPER_ARG, "--probe"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(|e| format!("cannot start {}: {e}", helper.program.display()))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
            }
        })
        .clone()
}

/// Passes each line `reader` gives to `on_line`, until it ends.
fn read_lines(reader: std::io::PipeReader, on_line: &mut dyn FnMut(&str)) {
    let mut lines = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => on_line(String::from_utf8_lossy(&line).trim_end_matches('\n')),
        }
    }
}

/// Runs `spec` with the helper's standard streams attached to ours (`rbuild run`).
pub fn run_attached(helper: &Path, spec: &SandboxSpec) -> Result<Exit, Error> {
    let json = serde_json::to_vec(spec).map_err(Error::Spec)?;
    let spawn_err = |source| Error::Spawn {
        helper: helper.to_owned(),
        source,
    };
    // The spec goes through the environment so the command keeps our standard input.
    let mut child = Command::new(helper)
        .arg(HELPER_ARG)
        .arg("--spec-from-env")
        .env(SPEC_ENV, String::from_utf8_lossy(&json).as_ref())
        .spawn()
        .map_err(spawn_err)?;
    let status = child.wait().map_err(spawn_err)?;
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok(Exit {
        code,
        timed_out: false,
        cancelled: false,
        oom_killed: false,
        no_cgroup: None,
    })
}

/// Where [`run_attached`] passes the spec (the command keeps standard input).
const SPEC_ENV: &str = "RBUILD_SANDBOX_SPEC";

/// If this process was started as the sandbox helper, runs the sandbox and never returns;
/// otherwise returns at once. Call it first thing in `main`, before any thread exists.
pub fn helper_main() {
    let mut args = std::env::args_os();
    let _ = args.next();
    if args.next().as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    let mut input = Vec::new();
    let mut args = args.peekable();
    if args.peek().map(std::ffi::OsString::as_os_str) == Some(std::ffi::OsStr::new("--probe")) {
        std::process::exit(chroot::probe());
    }
    let from_env = args.next().as_deref() == Some(std::ffi::OsStr::new("--spec-from-env"));
    let read = if from_env {
        std::env::var(SPEC_ENV)
            .map(|s| input = s.into_bytes())
            .map_err(|e| e.to_string())
    } else {
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let spec: SandboxSpec =
        match read.and_then(|()| serde_json::from_slice(&input).map_err(|e| e.to_string())) {
            Ok(s) => {
                if !from_env {
                    // The spec came on standard input, a pipe of the builder's: the command
                    // gets /dev/null instead.
                    sys::stdin_from_null();
                }
                s
            }
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "rbuild sandbox: bad spec: {e}");
                std::process::exit(125);
            }
        };
    std::process::exit(match spec.isolation {
        Isolation::Chroot | Isolation::None => chroot::enter(&spec),
        Isolation::Auto | Isolation::Namespaces => sandbox::enter(&spec),
    });
}
