//! The system calls the sandbox's setup makes, behind one trait (youki's `Syscall` model):
//! [`Linux`] makes them; the tests' `Recording` writes each down instead, so the sequence of
//! mounts, `pivot_root`, ids, capabilities and seccomp is unit-tested without root. The raw,
//! `unsafe` calls under [`Linux`] stay in `sys.rs`.

use std::path::Path;

use nix::mount::MsFlags;

/// What a setup call that failed says.
pub(super) type Outcome = Result<(), String>;

/// The calls the sandbox's setup makes, in the order it makes them.
pub(super) trait Syscall {
    /// `mount(2)`.
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()>;
    /// `nodev` (and read-only if asked) on the whole tree at `target` (`mount_setattr`).
    fn set_tree_attrs(&self, target: &Path, readonly: bool) -> nix::Result<()>;
    /// `sethostname(2)`.
    fn sethostname(&self, name: &str) -> Outcome;
    /// The loopback interface up in this network namespace.
    fn loopback_up(&self) -> Outcome;
    /// Makes `root` the root: `pivot_root` onto it and the old root detached.
    fn pivot_root(&self, root: &Path) -> Outcome;
    /// `chroot(2)` into `root`, then `chdir /` (chroot isolation).
    fn chroot(&self, root: &Path) -> Outcome;
    /// `chdir(2)`.
    fn chdir(&self, dir: &Path) -> Outcome;
    /// `mkdir -p`, where it is missing.
    fn make_dir(&self, dir: &Path) -> Outcome;
    /// Into the user namespace `ns` (`setns`).
    fn join_user_namespace(&self, ns: std::os::fd::BorrowedFd<'_>) -> Outcome;
    /// A session of its own: no controlling terminal.
    fn setsid(&self) -> Outcome;
    /// Keeps only `keep` in the bounding, permitted and effective sets; empties the
    /// inheritable and ambient ones.
    fn limit_capabilities(&self, keep: &[caps::Capability]) -> Outcome;
    /// Supplementary groups (unless `setgroups` is denied here), gid, then uid.
    fn set_ids(&self, groups: &[u32], gid: u32, uid: u32) -> Outcome;
    /// The parent-death signal armed again, and an end here if the helper is gone (`alive`
    /// hangs up when it exits).
    fn die_with_helper(&self, alive: &std::io::PipeReader) -> Outcome;
    /// Resource limits: name, soft, hard.
    fn set_rlimits(&self, limits: &[(String, u64, u64)]) -> Outcome;
    /// `PR_SET_NO_NEW_PRIVS`.
    fn no_new_privs(&self) -> Outcome;
    /// Docker's seccomp profile.
    fn seccomp(&self) -> Outcome;
}

/// The real calls.
pub(super) struct Linux;

impl Syscall for Linux {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> nix::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data)
    }

    fn set_tree_attrs(&self, target: &Path, readonly: bool) -> nix::Result<()> {
        super::sys::set_tree_attrs(target, readonly)
    }

    fn sethostname(&self, name: &str) -> Outcome {
        nix::unistd::sethostname(name).map_err(|e| e.to_string())
    }

    fn loopback_up(&self) -> Outcome {
        super::sys::loopback_up().map_err(|e| e.to_string())
    }

    fn pivot_root(&self, root: &Path) -> Outcome {
        use nix::mount::{MntFlags, umount2};
        nix::unistd::chdir(root).map_err(|e| format!("chdir to the new root: {e}"))?;
        nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the old root: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
    }

    fn chroot(&self, root: &Path) -> Outcome {
        nix::unistd::chroot(root).map_err(|e| format!("chroot: {e}"))?;
        nix::unistd::chdir("/").map_err(|e| format!("chdir /: {e}"))
    }

    fn chdir(&self, dir: &Path) -> Outcome {
        nix::unistd::chdir(dir).map_err(|e| e.to_string())
    }

    fn make_dir(&self, dir: &Path) -> Outcome {
        if dir.is_dir() {
            return Ok(());
        }
        fs_err::create_dir_all(dir).map_err(|e| e.to_string())
    }

    fn join_user_namespace(&self, ns: std::os::fd::BorrowedFd<'_>) -> Outcome {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWUSER).map_err(|e| e.to_string())
    }

    fn setsid(&self) -> Outcome {
        nix::unistd::setsid().map(drop).map_err(|e| e.to_string())
    }

    fn limit_capabilities(&self, keep: &[caps::Capability]) -> Outcome {
        // Only what this process has: a container may have given it fewer than Docker's.
        let permitted = caps::read(None, caps::CapSet::Permitted).map_err(|e| e.to_string())?;
        let keep: caps::CapsHashSet = keep
            .iter()
            .copied()
            .filter(|c| permitted.contains(c))
            .collect();
        for cap in caps::all() {
            if !keep.contains(&cap) {
                caps::drop(None, caps::CapSet::Bounding, cap).map_err(|e| e.to_string())?;
            }
        }
        caps::set(None, caps::CapSet::Inheritable, &caps::CapsHashSet::new())
            .map_err(|e| format!("clear inheritable capabilities: {e}"))?;
        caps::clear(None, caps::CapSet::Ambient)
            .map_err(|e| format!("clear ambient capabilities: {e}"))?;
        for set in [caps::CapSet::Effective, caps::CapSet::Permitted] {
            caps::set(None, set, &keep).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn set_ids(&self, groups: &[u32], gid: u32, uid: u32) -> Outcome {
        use nix::unistd::{Gid, Uid};
        // In the single-mapping user namespace setgroups is denied, and only root is mapped.
        let denied =
            fs_err::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
        if !denied {
            let groups: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
            nix::unistd::setgroups(&groups).map_err(|e| format!("setgroups: {e}"))?;
        }
        nix::unistd::setgid(Gid::from_raw(gid)).map_err(|e| format!("setgid: {e}"))?;
        nix::unistd::setuid(Uid::from_raw(uid)).map_err(|e| format!("setuid: {e}"))
    }

    fn die_with_helper(&self, alive: &std::io::PipeReader) -> Outcome {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        use std::os::fd::AsFd;
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| format!("pdeathsig: {e}"))?;
        let mut fds = [PollFd::new(alive.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0) {
            std::process::exit(super::sys::SETUP_FAILED);
        }
        Ok(())
    }

    fn set_rlimits(&self, limits: &[(String, u64, u64)]) -> Outcome {
        for (name, soft, hard) in limits {
            let resource = super::spec::rlimit_resource(name)
                .ok_or_else(|| format!("unknown limit `{name}`"))?;
            let inf = |v: u64| {
                if v == u64::MAX {
                    nix::sys::resource::RLIM_INFINITY
                } else {
                    v
                }
            };
            nix::sys::resource::setrlimit(resource, inf(*soft), inf(*hard))
                .map_err(|e| format!("ulimit {name}={soft}:{hard}: {e}"))?;
        }
        Ok(())
    }

    fn no_new_privs(&self) -> Outcome {
        nix::sys::prctl::set_no_new_privs().map_err(|e| e.to_string())
    }

    fn seccomp(&self) -> Outcome {
        super::seccomp::install().map_err(|e| e.to_string())
    }
}

#[cfg(test)]
pub(super) mod fake {
    //! A [`Syscall`] that records each call as a line and makes none.

    use super::{Outcome, Syscall};
    use nix::mount::MsFlags;
    use std::path::Path;

    /// Every call made, as `name args`, paths relative to `root`.
    #[derive(Default)]
    pub(in crate::exec) struct Recording {
        pub(in crate::exec) root: std::path::PathBuf,
        pub(in crate::exec) calls: std::cell::RefCell<Vec<String>>,
    }

    impl Recording {
        #[allow(clippy::unnecessary_wraps)] // the shape of every call it records
        fn note(&self, line: String) -> Outcome {
            self.calls.borrow_mut().push(line);
            Ok(())
        }

        fn shown(&self, p: &Path) -> String {
            match p.strip_prefix(&self.root) {
                Ok(rel) => format!("<root>/{}", rel.display()),
                Err(_) => p.display().to_string(),
            }
        }
    }

    impl Syscall for Recording {
        fn mount(
            &self,
            source: Option<&Path>,
            target: &Path,
            fstype: Option<&str>,
            flags: MsFlags,
            _data: Option<&str>,
        ) -> nix::Result<()> {
            let what = fstype.map_or_else(
                || source.map_or_else(|| "-".to_owned(), |s| self.shown(s)),
                str::to_owned,
            );
            let ro = if flags.contains(MsFlags::MS_RDONLY) {
                " ro"
            } else {
                ""
            };
            let bind = if flags.contains(MsFlags::MS_BIND) {
                " bind"
            } else {
                ""
            };
            let _ = self.note(format!("mount {what} {}{bind}{ro}", self.shown(target)));
            Ok(())
        }

        fn set_tree_attrs(&self, target: &Path, readonly: bool) -> nix::Result<()> {
            let ro = if readonly { " ro" } else { "" };
            let _ = self.note(format!("setattr {} nodev{ro}", self.shown(target)));
            Ok(())
        }

        fn sethostname(&self, name: &str) -> Outcome {
            self.note(format!("sethostname {name}"))
        }

        fn loopback_up(&self) -> Outcome {
            self.note("loopback up".into())
        }

        fn make_dir(&self, dir: &Path) -> Outcome {
            self.note(format!("mkdir {}", dir.display()))
        }

        fn join_user_namespace(&self, _ns: std::os::fd::BorrowedFd<'_>) -> Outcome {
            self.note("setns user".into())
        }

        fn die_with_helper(&self, _alive: &std::io::PipeReader) -> Outcome {
            self.note("pdeathsig".into())
        }

        fn set_rlimits(&self, limits: &[(String, u64, u64)]) -> Outcome {
            let names: Vec<&str> = limits.iter().map(|l| l.0.as_str()).collect();
            self.note(format!("rlimits {}", names.join(",")))
        }

        fn pivot_root(&self, root: &Path) -> Outcome {
            self.note(format!("pivot_root {}", self.shown(root)))
        }

        fn chdir(&self, dir: &Path) -> Outcome {
            self.note(format!("chdir {}", dir.display()))
        }

        fn chroot(&self, root: &Path) -> Outcome {
            self.note(format!("chroot {}", self.shown(root)))
        }

        fn setsid(&self) -> Outcome {
            self.note("setsid".into())
        }

        fn limit_capabilities(&self, keep: &[caps::Capability]) -> Outcome {
            self.note(format!("capabilities {}", keep.len()))
        }

        fn set_ids(&self, groups: &[u32], gid: u32, uid: u32) -> Outcome {
            self.note(format!("ids groups={groups:?} gid={gid} uid={uid}"))
        }

        fn no_new_privs(&self) -> Outcome {
            self.note("no_new_privs".into())
        }

        fn seccomp(&self) -> Outcome {
            self.note("seccomp".into())
        }
    }
}
