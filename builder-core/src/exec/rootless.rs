//! Rootless builds with subordinate ids: when a non-root user has ranges in `/etc/subuid` and
//! `/etc/subgid` and `newuidmap`/`newgidmap` are installed, the whole builder re-runs itself in
//! a user namespace mapping the user to root and the ranges to ids 1..=N, as `buildah unshare`
//! and rootless podman do. Inside it, unpacking keeps owners, `USER 1000` works, and the store's
//! files (owned outside by the user or by subordinate ids) can all be read and removed. Without
//! ranges or tools, RUN falls back to a namespace mapping only the user (see `sys::enter`).

use std::path::PathBuf;

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
        super::sys::reexec_in_userns(&plan);
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
