//! Rootless builds with subordinate ids: when a non-root user has ranges in `/etc/subuid` and
//! `/etc/subgid` and `newuidmap`/`newgidmap` are installed, the whole builder re-runs itself in
//! a user namespace mapping the user to root and the ranges to ids 1..=N, as `buildah unshare`
//! and rootless podman do. Inside it, unpacking keeps owners, `USER 1000` works, and the store's
//! files (owned outside by the user or by subordinate ids) can all be read and removed. Without
//! ranges or tools, RUN falls back to a namespace mapping only the user (see `sys::enter`).

use std::io::Write;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::ForkResult;

/// Set in the re-run builder: it is already in its user namespace.
pub const IN_USERNS_ENV: &str = "RBUILD_IN_USERNS";

/// `RBUILD_ROOTLESS_IDS=single` keeps rootless builds on the single mapping.
pub const IDS_ENV: &str = "RBUILD_ROOTLESS_IDS";

/// A subordinate id range: `start`, `start + 1`, … `start + count - 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdRange {
    pub(crate) start: u32,
    pub(crate) count: u32,
}

/// What the re-exec needs: our ids, the ranges, and the setuid tools that map them.
#[derive(Debug, Clone)]
pub(crate) struct MapPlan {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) subuid: IdRange,
    pub(crate) subgid: IdRange,
    pub(crate) newuidmap: PathBuf,
    pub(crate) newgidmap: PathBuf,
}

impl MapPlan {
    /// `newuidmap`'s arguments after the pid: the user as root, the range from 1.
    pub(crate) fn uid_args(&self) -> [String; 6] {
        map_args(self.uid, self.subuid)
    }

    /// `newgidmap`'s arguments after the pid.
    pub(crate) fn gid_args(&self) -> [String; 6] {
        map_args(self.gid, self.subgid)
    }
}

fn map_args(own: u32, range: IdRange) -> [String; 6] {
    [
        "0".into(),
        own.to_string(),
        "1".into(),
        "1".into(),
        range.start.to_string(),
        range.count.to_string(),
    ]
}

/// The first range of `/etc/subuid`-format `contents` for the user `name` or uid `id`.
pub(crate) fn parse_subid(contents: &str, name: &str, id: u32) -> Option<IdRange> {
    contents.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        let r = IdRange {
            start: start.parse().ok()?,
            count: count.parse().ok()?,
        };
        (r.count > 0).then_some(r)
    })
}

fn find_tool(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The plan for this process, if it should re-run itself with subordinate ids.
fn plan() -> Option<MapPlan> {
    let uid = nix::unistd::Uid::effective();
    if uid.is_root()
        || std::env::var_os(IN_USERNS_ENV).is_some()
        || std::env::var(IDS_ENV).is_ok_and(|v| v == "single")
    {
        return None;
    }
    let name = nix::unistd::User::from_uid(uid).ok()??.name;
    let read = |f: &str| fs_err::read_to_string(f).ok();
    Some(MapPlan {
        uid: uid.as_raw(),
        gid: nix::unistd::Gid::effective().as_raw(),
        subuid: parse_subid(&read("/etc/subuid")?, &name, uid.as_raw())?,
        subgid: parse_subid(&read("/etc/subgid")?, &name, uid.as_raw())?,
        newuidmap: find_tool("newuidmap")?,
        newgidmap: find_tool("newgidmap")?,
    })
}

/// For rootless builds: re-runs this program in a user namespace with the user's subordinate
/// ids, and exits with its status. Returns (doing nothing) as root, inside that namespace
/// already, without ranges or tools, or if the mapping fails — then RUN uses a single mapping.
/// Programs that embed `builder-core` call it at the start of `main`, before any thread.
pub fn rootless_reexec() {
    if let Some(plan) = plan() {
        reexec_in_userns(&plan);
    }
}

/// Whether this process is in a user namespace other than the initial one (whose `uid_map`
/// maps every id to itself): a rootless build's.
pub(super) fn in_user_namespace() -> bool {
    fs_err::read_to_string("/proc/self/uid_map")
        .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
}

/// Re-runs this program in a new user namespace whose ids `newuidmap`/`newgidmap` map from the
/// plan, and exits with its status; returns if the mapping could not be made.
fn reexec_in_userns(plan: &MapPlan) {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    let (Ok((mut ready_r, mut ready_w)), Ok((mut go_r, mut go_w))) =
        (std::io::pipe(), std::io::pipe())
    else {
        return;
    };
    match super::sys::fork_single() {
        Err(_) => {}
        Ok(ForkResult::Child) => {
            drop((ready_r, go_w));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            if unshare(CloneFlags::CLONE_NEWUSER).is_err() {
                std::process::exit(super::sys::SETUP_FAILED);
            }
            let _ = ready_w.write_all(b"u");
            drop(ready_w);
            let mut answer = [0u8; 1];
            let mapped = go_r.read_exact(&mut answer).is_ok() && answer[0] == b'1';
            if !mapped {
                std::process::exit(super::sys::SETUP_FAILED);
            }
            let args: Vec<_> = std::env::args_os().skip(1).collect();
            let err = std::process::Command::new("/proc/self/exe")
                .args(args)
                .env(IN_USERNS_ENV, "1")
                .exec();
            let _ = writeln!(
                std::io::stderr(),
                "rbuild: re-exec in the user namespace: {err}"
            );
            std::process::exit(super::sys::SETUP_FAILED);
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
                    Err(_) => break super::sys::SETUP_FAILED,
                }
            };
            if mapped {
                std::process::exit(code);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_are_found_by_name_or_uid() {
        let file = "# comment\nalice:100000:65536\n1001:200000:1000\nbob:300000:0\n";
        assert_eq!(
            parse_subid(file, "alice", 1000),
            Some(IdRange {
                start: 100_000,
                count: 65536
            })
        );
        assert_eq!(
            parse_subid(file, "carol", 1001),
            Some(IdRange {
                start: 200_000,
                count: 1000
            })
        );
        assert_eq!(parse_subid(file, "bob", 1002), None, "an empty range");
        assert_eq!(parse_subid(file, "dave", 1003), None);
        let plan = MapPlan {
            uid: 1000,
            gid: 1000,
            subuid: IdRange {
                start: 100_000,
                count: 65536,
            },
            subgid: IdRange {
                start: 100_000,
                count: 65536,
            },
            newuidmap: "/usr/bin/newuidmap".into(),
            newgidmap: "/usr/bin/newgidmap".into(),
        };
        assert_eq!(plan.uid_args(), ["0", "1000", "1", "1", "100000", "65536"]);
    }
}
