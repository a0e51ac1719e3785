//! The filesystem a RUN sees, mounted in the helper's mount namespace before `pivot_root`.
//!
//! Every mount target is resolved inside the new root with [`crate::fs::Root`], so an image
//! whose `/proc`, `/etc/hosts` or a `--mount` target is a symlink to a host path gets the mount
//! at that path *inside* the root, never on the host.
//!
//! | what | rbuild | runc's default for Docker |
//! |---|---|---|
//! | root | overlay (or the copy fallback), `nodev` | rootfs, device cgroup |
//! | `/proc` | `proc`, nosuid/nodev/noexec; [`MASKED`] hidden, [`READONLY`] read-only | same lists |
//! | `/sys` | `sysfs` read-only (a recursive read-only bind of the host's where sysfs cannot mount); `/sys/firmware` and powercap masked | same |
//! | `/dev` | tmpfs nosuid/nodev with null, zero, full, random, urandom, tty bound in, devpts (`newinstance`), shm | tmpfs with the same nodes made by mknod, device cgroup |
//! | devices | only the nodes bound into `/dev` (and ptys) open: every other mount is `nodev` | device cgroup allowlist |
//! | binds | recursive, `nodev`; read-only ones read-only recursively (`mount_setattr`) | `rbind`, `ro` |
//! | `/etc/hosts`, `/etc/resolv.conf` | read-only binds | binds |

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use super::spec::SandboxSpec;
use super::syscall::Syscall;
use super::userns::Userns;
use crate::fs::{Last, Root};

/// Paths runc hides under `/proc` and `/sys` (`oci.DefaultSpec`, plus Docker's
/// `/proc/interrupts`): a file gets `/dev/null` bound over it, a directory an empty read-only
/// tmpfs.
pub(super) const MASKED: [&str; 12] = [
    "proc/acpi",
    "proc/asound",
    "proc/interrupts",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Paths runc leaves read-only under `/proc`.
pub(super) const READONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

/// A setup step that failed: what, and the system's word for it.
#[derive(Debug)]
pub(super) struct Failed {
    pub(super) what: String,
    pub(super) err: String,
}

type R<T> = Result<T, Failed>;

fn failed(what: impl Into<String>, err: impl std::fmt::Display) -> Failed {
    Failed {
        what: what.into(),
        err: err.to_string(),
    }
}

fn mnt(
    sys: &dyn Syscall,
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> R<()> {
    sys.mount(src, target, fstype, flags, data).map_err(|e| {
        let what = fstype.map_or_else(
            || src.map_or_else(String::new, |s| s.display().to_string()),
            str::to_owned,
        );
        failed(format!("mount {what} on {}", target.display()), e)
    })
}

/// The directory `rel` inside `root`, made if missing, resolved inside: its path on the host.
fn dir_in(root: &Root, rel: &str) -> R<PathBuf> {
    root.create_dir_all(rel)
        .and_then(|_| root.resolve(rel, Last::Follow))
        .map(|r| root.path().join(r))
        .map_err(|e| failed(format!("mount point /{rel}"), error_chain(&e)))
}

/// The file `rel` inside `root`, made if missing, resolved inside: its path on the host.
fn file_in(root: &Root, rel: &str) -> R<PathBuf> {
    root.create_file(rel)
        .map(|r| root.path().join(r))
        .map_err(|e| failed(format!("mount point /{rel}"), error_chain(&e)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cur = c.source();
    }
    out
}

/// Binds `src` on `target` (recursively), then sets `nodev`, and read-only if asked, on the
/// whole tree it brought (`mount_setattr` with `AT_RECURSIVE`; where the kernel lacks it, a
/// remount of the top). With a user namespace the bind is id-mapped into it, so its files
/// keep their owners inside; where the source's filesystem cannot be id-mapped it is bound as
/// it is (its files show as `nobody` inside).
fn bind(
    sys: &dyn Syscall,
    src: &Path,
    target: &Path,
    readonly: bool,
    userns: Option<&Userns>,
) -> R<()> {
    use std::os::fd::AsFd;
    if let Some(ns) = userns {
        match super::sys::idmapped_tree(src, ns.user.as_fd(), true, readonly) {
            Ok(tree) => {
                return super::sys::attach(&tree, target).map_err(|e| {
                    failed(
                        format!(
                            "mount {} on {} (id-mapped)",
                            src.display(),
                            target.display()
                        ),
                        e,
                    )
                });
            }
            Err(nix::errno::Errno::EINVAL) => {}
            Err(e) => return Err(failed(format!("id-map {}", src.display()), e)),
        }
    }
    mnt(
        sys,
        Some(src),
        target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;
    match sys.set_tree_attrs(target, readonly) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::ENOSYS) => {
            let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV;
            if readonly {
                flags |= MsFlags::MS_RDONLY;
            }
            mnt(sys, None, target, None, flags, None)
        }
        Err(e) => Err(failed(format!("read-only {}", target.display()), e)),
    }
}

/// Mounts everything under `spec.merged`: the root, `/proc`, `/sys`, `/dev`, the sandbox's
/// files and the spec's binds and tmpfs mounts.
pub(super) fn prepare(
    sys: &dyn Syscall,
    spec: &SandboxSpec,
    in_user_namespace: bool,
    userns: Option<&Userns>,
) -> R<()> {
    mount_root(sys, spec, in_user_namespace, userns)?;
    let root = Root::open(&spec.merged).map_err(|e| failed("open the root", error_chain(&e)))?;
    // tmpfs mounts are owned by RUN's root.
    let owner = userns.map_or_else(String::new, |ns| {
        format!(",uid={},gid={}", ns.map.uid, ns.map.gid)
    });
    proc_and_sys(sys, &root)?;
    dev(sys, &root, &owner)?;
    extra_mounts(sys, spec, &root, userns, &owner)
}

/// The root filesystem at `spec.merged`, everything made private first: an overlay of the
/// stage's layers (id-mapped into RUN's user namespace if it has one), or the copy of the
/// fallback bound onto itself (a mount point for `pivot_root`).
fn mount_root(
    sys: &dyn Syscall,
    spec: &SandboxSpec,
    in_user_namespace: bool,
    userns: Option<&Userns>,
) -> R<()> {
    let slash = Path::new("/");
    mnt(
        sys,
        None,
        slash,
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
    )?;
    let m = &spec.merged;
    fs_err::create_dir_all(m).map_err(|e| failed(format!("mkdir {}", m.display()), e))?;
    if let (true, Some(ns)) = (spec.copied_rootfs, userns) {
        // The copy, id-mapped onto itself (a mount point for pivot_root).
        use std::os::fd::AsFd;
        super::sys::idmapped_tree(m, ns.user.as_fd(), false, false)
            .and_then(|tree| super::sys::attach(&tree, m))
            .map_err(|e| failed(format!("id-mapped mount of {}", m.display()), e))?;
    } else if spec.copied_rootfs {
        // pivot_root needs a mount point: the copy is bind-mounted onto itself.
        mnt(sys, Some(m), m, None, MsFlags::MS_BIND, None)?;
        mnt(
            sys,
            None,
            m,
            None,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NODEV,
            None,
        )?;
    } else {
        let (lower, upper, work) = match userns {
            Some(ns) => idmapped_layers(spec, ns)?,
            None => (spec.lower.clone(), spec.upper.clone(), spec.work.clone()),
        };
        let mut data = crate::fs::overlay_options(&lower, Some((&upper, &work)));
        // Unprivileged overlayfs keeps its metadata in user.* xattrs.
        if in_user_namespace {
            data.push_str(",userxattr");
        }
        mnt(
            sys,
            Some(Path::new("overlay")),
            m,
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(&data),
        )?;
    }
    Ok(())
}

/// `/proc` and `/sys` (read-only; the host's bound where sysfs cannot be mounted), with
/// runc's masked and read-only paths.
fn proc_and_sys(sys: &dyn Syscall, root: &Root) -> R<()> {
    let proc = dir_in(root, "proc")?;
    mnt(
        sys,
        Some(Path::new("proc")),
        &proc,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    )?;
    let sys_dir = dir_in(root, "sys")?;
    let sysfs = mnt(
        sys,
        Some(Path::new("sysfs")),
        &sys_dir,
        Some("sysfs"),
        MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None,
    );
    if sysfs.is_err() {
        // A user namespace that does not own the network namespace cannot mount sysfs (runc
        // binds the host's then, too).
        bind(sys, Path::new("/sys"), &sys_dir, true, None)?;
    }
    // `proc/...` and `sys/...` under where /proc and /sys were resolved to.
    let in_base = |rel: &str| {
        let (top, rest) = rel.split_once('/').unwrap_or((rel, ""));
        if top == "proc" {
            proc.join(rest)
        } else {
            sys_dir.join(rest)
        }
    };
    for rel in MASKED {
        let path = in_base(rel);
        match fs_err::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => mnt(
                sys,
                Some(Path::new("tmpfs")),
                &path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=0,mode=0555"),
            )?,
            Ok(_) => mnt(
                sys,
                Some(Path::new("/dev/null")),
                &path,
                None,
                MsFlags::MS_BIND,
                None,
            )?,
            Err(_) => {}
        }
    }
    for rel in READONLY {
        let path = in_base(rel);
        if fs_err::symlink_metadata(&path).is_ok() {
            mnt(
                sys,
                Some(&path),
                &path,
                None,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None,
            )?;
            mnt(
                sys,
                None,
                &path,
                None,
                MsFlags::MS_BIND
                    | MsFlags::MS_REMOUNT
                    | MsFlags::MS_RDONLY
                    | MsFlags::MS_NOSUID
                    | MsFlags::MS_NODEV
                    | MsFlags::MS_NOEXEC,
                None,
            )?;
        }
    }

    Ok(())
}

/// A minimal `/dev`: a tmpfs with the safe device nodes bound in, devpts, shm and the
/// standard links.
fn dev(sys: &dyn Syscall, root: &Root, owner: &str) -> R<()> {
    let dev = dir_in(root, "dev")?;
    mnt(
        sys,
        Some(Path::new("tmpfs")),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_STRICTATIME,
        Some(&format!("mode=755,size=65536k{owner}")),
    )?;
    // The device nodes a RUN may open, bound from the host's /dev (the bind mounts are not
    // `nodev`); with no controlling terminal (the command is in a session of its own) `tty`
    // opens nothing.
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(node);
        fs_err::File::create(&target).map_err(|e| failed(format!("create /dev/{node}"), e))?;
        mnt(
            sys,
            Some(&Path::new("/dev").join(node)),
            &target,
            None,
            MsFlags::MS_BIND,
            None,
        )?;
    }
    let pts = dev.join("pts");
    fs_err::create_dir(&pts).map_err(|e| failed("mkdir /dev/pts", e))?;
    mnt(
        sys,
        Some(Path::new("devpts")),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    let shm = dev.join("shm");
    fs_err::create_dir(&shm).map_err(|e| failed("mkdir /dev/shm", e))?;
    mnt(
        sys,
        Some(Path::new("shm")),
        &shm,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some(&format!("mode=1777,size=65536k{owner}")),
    )?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ] {
        let _ = std::os::unix::fs::symlink(target, dev.join(link));
    }

    Ok(())
}

/// `/etc/hosts`, `/etc/resolv.conf`, the spec's binds and its tmpfs mounts.
fn extra_mounts(
    sys: &dyn Syscall,
    spec: &SandboxSpec,
    root: &Root,
    userns: Option<&Userns>,
    owner: &str,
) -> R<()> {
    for (file, src) in [
        ("etc/hosts", &spec.hosts),
        ("etc/resolv.conf", &spec.resolv_conf),
    ] {
        if let Some(src) = src {
            bind(sys, src, &file_in(root, file)?, true, userns)?;
        }
    }
    for b in &spec.binds {
        let rel = b.target.trim_start_matches('/');
        let target = if b.source.is_dir() {
            dir_in(root, rel)?
        } else {
            file_in(root, rel)?
        };
        bind(sys, &b.source, &target, b.readonly, userns)?;
    }
    for (target, size) in &spec.tmpfs {
        let t = dir_in(root, target.trim_start_matches('/'))?;
        let data = size.map_or_else(|| owner.to_owned(), |s| format!("size={s}{owner}"));
        mnt(
            sys,
            Some(Path::new("tmpfs")),
            &t,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.trim_start_matches(',')).filter(|d| !d.is_empty()),
        )?;
    }
    Ok(())
}

/// The overlay's layers as id-mapped mounts into `userns`, attached beside the upper
/// directory (in this mount namespace only): the lower directory, and the directory holding
/// upper and work (overlay wants both on one mount). Returns the paths to give overlay.
fn idmapped_layers(spec: &SandboxSpec, ns: &Userns) -> R<(Vec<PathBuf>, PathBuf, PathBuf)> {
    use std::os::fd::AsFd;
    let (Some(run), Some(upper_name), Some(work_name)) = (
        spec.upper.parent(),
        spec.upper.file_name(),
        spec.work.file_name(),
    ) else {
        return Err(failed("id-mapped layers", "upper and work need a parent"));
    };
    if spec.work.parent() != Some(run) {
        return Err(failed(
            "id-mapped layers",
            "upper and work must be in one directory",
        ));
    }
    let mut at = Vec::new();
    let sources = spec
        .lower
        .iter()
        .enumerate()
        .map(|(i, l)| (l.clone(), format!(".idmapped-lower-{i}")))
        .chain([(run.to_owned(), ".idmapped-run".to_owned())]);
    for (src, name) in sources {
        let target = run.join(name);
        fs_err::create_dir_all(&target)
            .map_err(|e| failed(format!("mkdir {}", target.display()), e))?;
        super::sys::idmapped_tree(&src, ns.user.as_fd(), false, false)
            .and_then(|tree| super::sys::attach(&tree, &target))
            .map_err(|e| failed(format!("id-mapped mount of {}", src.display()), e))?;
        at.push(target);
    }
    let Some(run_at) = at.pop() else {
        return Err(failed("id-mapped layers", "nothing mapped"));
    };
    Ok((at, run_at.join(upper_name), run_at.join(work_name)))
}
