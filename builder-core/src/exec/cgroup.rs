//! A cgroup per RUN: memory, pids and CPU limits, a device allowlist, and the OOM verdict.
//!
//! Written as files, on cgroup v1 (and the v1 controllers of a hybrid host, as this
//! project's machines are) and on v2. Neither `cgroups-rs` (no v2 device control, a D-Bus
//! stack, no OOM-kill count on v2) nor youki's `libcgroups` (v1 cgroups placed at the
//! hierarchy root instead of under our own, device rules it appends that cannot be removed, no
//! OOM-kill count, a C libbpf for v2 devices) fits; the files are few and stable.
//!
//! Per RUN, in each hierarchy, under the builder's own cgroup: `rbuild-<id>` holds the limits
//! and (v1) the device rules, and the step runs in its child `step`, the root of the step's
//! cgroup namespace. A v1 devices cgroup cannot widen the rules its parent has, so a step that
//! mounted cgroupfs could not lift them even with the capability to. On v2 the device
//! allowlist is the mount rule of the sandbox's root filesystem (every mount `nodev` but the nodes bound
//! into `/dev`), which holds on v1 too.
//!
//! | limit | v1 | v2 | runc / docker |
//! |---|---|---|---|
//! | `--memory` | `memory.limit_in_bytes` (+ `memsw` = same: no swap past it) | `memory.max`, `memory.swap.max` 0 | same files |
//! | `--pids-limit` | `pids.max` | `pids.max` | same (docker: unlimited by default; rbuild: [`DEFAULT_PIDS`]) |
//! | `--cpus` | `cpu.cfs_quota_us` / `cpu.cfs_period_us` | `cpu.max` | same |
//! | devices | `devices.deny a`, then runc's allowlist | (mount rule) | runc's allowlist |

use std::path::{Path, PathBuf};

/// Processes a RUN may have when the build names no `--pids-limit`: enough for `make -j` and
/// a test suite, few enough that a fork bomb stops there.
pub const DEFAULT_PIDS: u64 = 4096;

/// runc's default device rules (`libcontainer/specconv`): the character devices a container
/// may open, and `mknod` of any.
const DEVICE_ALLOW: [&str; 10] = [
    "c 1:3 rwm",   // null
    "c 1:5 rwm",   // zero
    "c 1:7 rwm",   // full
    "c 1:8 rwm",   // random
    "c 1:9 rwm",   // urandom
    "c 5:0 rwm",   // tty
    "c 5:2 rwm",   // ptmx
    "c 136:* rwm", // pts
    "c *:* m",
    "b *:* m",
];

/// The limits of one RUN.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Limits {
    /// Memory in bytes (`--memory`), swap included.
    pub memory: Option<u64>,
    /// Processes and threads (`--pids-limit`); [`DEFAULT_PIDS`] when `None`.
    pub pids: Option<u64>,
    /// CPUs (`--cpus`, fractional).
    pub cpus: Option<f64>,
}

/// A size as `docker run --memory` reads it: a number of bytes with an optional unit `b`,
/// `k`, `m`, `g`, `t` (binary multiples, any case, an optional trailing `b`: `64m`, `1GB`).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t
        .strip_suffix('b')
        .filter(|r| !r.is_empty() && r.ends_with(|c: char| c.is_ascii_alphabetic()))
        .unwrap_or(&t);
    let (num, unit) = t.split_at(t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len()));
    let shift = match unit {
        "" | "b" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (b, k, m, g, t)")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (like 512m or 2g)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("`{s}` is not a positive size"));
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let bytes = (n * (1u64 << shift) as f64) as u64;
    Ok(bytes)
}

/// The cgroup of one RUN: the directories made for it (`rbuild-<id>` in each hierarchy) and
/// the `cgroup.procs` files the helper joins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Cgroup {
    /// `rbuild-<id>` directories, one per hierarchy.
    pub dirs: Vec<PathBuf>,
    /// `…/rbuild-<id>/step/cgroup.procs` files.
    pub join: Vec<PathBuf>,
    /// Where the memory controller is (its OOM counter is read there).
    pub memory: Option<(PathBuf, bool)>,
    /// The memory limit, for the error message.
    pub memory_limit: Option<u64>,
}

/// One mounted hierarchy: its mount point, whether it is v2, its controllers (v1), and the
/// builder's own cgroup in it.
#[derive(Debug)]
struct Hierarchy {
    mount: PathBuf,
    v2: bool,
    controllers: Vec<String>,
    own: String,
}

/// The hierarchies from `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn hierarchies() -> Vec<Hierarchy> {
    let own: Vec<(String, String)> = fs_err::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            Some((f.next()?.to_owned(), f.next()?.to_owned()))
        })
        .collect();
    let mut out = Vec::new();
    for line in fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
    {
        // `id parent maj:min root mountpoint opts… - fstype source superopts`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mount = left.split(' ').nth(4).unwrap_or_default();
        let mut r = right.split(' ');
        let fstype = r.next().unwrap_or_default();
        let superopts = r.nth(1).unwrap_or_default();
        match fstype {
            "cgroup2" => {
                if let Some((_, path)) = own.iter().find(|(c, _)| c.is_empty()) {
                    out.push(Hierarchy {
                        mount: PathBuf::from(mount),
                        v2: true,
                        controllers: Vec::new(),
                        own: path.clone(),
                    });
                }
            }
            "cgroup" => {
                let controllers: Vec<String> = superopts
                    .split(',')
                    .filter(|o| ["memory", "pids", "cpu", "devices"].contains(o))
                    .map(str::to_owned)
                    .collect();
                if controllers.is_empty() {
                    continue;
                }
                let path = own.iter().find(|(c, _)| {
                    c.split(',')
                        .any(|x| controllers.iter().any(|want| want == x))
                });
                if let Some((_, path)) = path {
                    out.push(Hierarchy {
                        mount: PathBuf::from(mount),
                        v2: false,
                        controllers,
                        own: path.clone(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

fn write(path: &Path, value: &str) -> Result<(), String> {
    fs_err::write(path, value).map_err(|e| e.to_string())
}

/// Makes the cgroup of one RUN with `limits`; `Err` says why cgroups cannot be used here
/// (rootless without delegation, a read-only cgroupfs), and the RUN goes on without.
pub(super) fn create(limits: &Limits, id: &str) -> Result<Cgroup, String> {
    let hierarchies = hierarchies();
    let v1_has = |c: &str| {
        hierarchies
            .iter()
            .any(|h| !h.v2 && h.controllers.iter().any(|x| x == c))
    };
    let mut cg = Cgroup {
        dirs: Vec::new(),
        join: Vec::new(),
        memory: None,
        memory_limit: limits.memory,
    };
    let pids = limits.pids.unwrap_or(DEFAULT_PIDS).to_string();
    let result = (|| -> Result<(), String> {
        for h in &hierarchies {
            let base = h.mount.join(h.own.trim_start_matches('/'));
            // The controllers this hierarchy gives the step: a v1 one's own; on v2 those it
            // offers and v1 does not have (on a hybrid host, none).
            let controllers: Vec<&str> = if h.v2 {
                let available =
                    fs_err::read_to_string(base.join("cgroup.controllers")).unwrap_or_default();
                ["memory", "pids", "cpu"]
                    .into_iter()
                    .filter(|c| !v1_has(c) && available.split_whitespace().any(|a| a == *c))
                    .collect()
            } else {
                h.controllers.iter().map(String::as_str).collect()
            };
            if controllers.is_empty() {
                continue;
            }
            let has = |c: &str| controllers.contains(&c);
            let dir = base.join(format!("rbuild-{id}"));
            // v2 gives a child a controller only if its parent enables it for children.
            let enable: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
            let enable = enable.join(" ");
            if h.v2 {
                write(&base.join("cgroup.subtree_control"), &enable).map_err(|e| {
                    format!(
                        "cannot enable {controllers:?} under `{}`: {e}",
                        base.display()
                    )
                })?;
            }
            fs_err::create_dir(&dir).map_err(|e| format!("{e}"))?;
            cg.dirs.push(dir.clone());
            if h.v2 {
                write(&dir.join("cgroup.subtree_control"), &enable)?;
            }
            if has("devices") {
                // The rules go on the parent before the step's cgroup exists (v1 refuses a
                // deny-all once it has children; a child copies its parent's list).
                write(&dir.join("devices.deny"), "a")?;
                for rule in DEVICE_ALLOW {
                    write(&dir.join("devices.allow"), rule)?;
                }
            }
            set_limits(&dir, h.v2, &has, limits, &pids)?;
            if has("memory") {
                cg.memory = Some((dir.clone(), h.v2));
            }
            let step = dir.join("step");
            fs_err::create_dir(&step).map_err(|e| e.to_string())?;
            cg.join.push(step.join("cgroup.procs"));
        }
        Ok(())
    })();
    match result {
        Ok(()) if cg.join.is_empty() => Err("no cgroup controller is mounted".into()),
        Ok(()) => Ok(cg),
        Err(e) => {
            remove(&cg);
            Err(e)
        }
    }
}

/// The memory (swap off), pids and CPU limits in the step's cgroup `dir` of a hierarchy
/// that `has` those controllers.
fn set_limits(
    dir: &Path,
    v2: bool,
    has: &dyn Fn(&str) -> bool,
    limits: &Limits,
    pids: &str,
) -> Result<(), String> {
    if has("memory") {
        if let Some(bytes) = limits.memory {
            let b = bytes.to_string();
            if v2 {
                write(&dir.join("memory.max"), &b)?;
                let swap = dir.join("memory.swap.max");
                if swap.exists() {
                    write(&swap, "0")?;
                }
            } else {
                write(&dir.join("memory.limit_in_bytes"), &b)?;
                let memsw = dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write(&memsw, &b)?;
                }
            }
        }
    }
    if has("pids") {
        write(&dir.join("pids.max"), pids)?;
    }
    if has("cpu") {
        if let Some(cpus) = limits.cpus {
            let period = 100_000u32;
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let quota = ((cpus * f64::from(period)).round() as u64).max(1000);
            if v2 {
                write(&dir.join("cpu.max"), &format!("{quota} {period}"))?;
            } else {
                write(&dir.join("cpu.cfs_period_us"), &period.to_string())?;
                write(&dir.join("cpu.cfs_quota_us"), &quota.to_string())?;
            }
        }
    }
    Ok(())
}

/// Puts this process in the step's cgroups (the helper, before it forks the step).
pub(super) fn join(cg: &Cgroup) -> Result<(), String> {
    for procs in &cg.join {
        write(procs, &std::process::id().to_string())
            .map_err(|e| format!("join `{}`: {e}", procs.display()))?;
    }
    Ok(())
}

/// Whether the OOM killer ended a process of the step.
pub(super) fn oom_killed(cg: &Cgroup) -> bool {
    let Some((dir, v2)) = &cg.memory else {
        return false;
    };
    let file = if *v2 {
        "memory.events"
    } else {
        "memory.oom_control"
    };
    // v1 counts a kill in the victim's own cgroup (the step's), v2 in every ancestor too.
    [dir.join("step"), dir.clone()].iter().any(|d| {
        fs_err::read_to_string(d.join(file)).is_ok_and(|t| {
            t.lines().any(|l| {
                l.strip_prefix("oom_kill ")
                    .is_some_and(|n| n.trim().parse::<u64>().is_ok_and(|n| n > 0))
            })
        })
    })
}

/// Removes the step's cgroups (once every process in them is gone).
pub(super) fn remove(cg: &Cgroup) {
    for dir in &cg.dirs {
        for d in [dir.join("step"), dir.clone()] {
            // Emptied asynchronously after the last process exits: tries for half a second.
            for _ in 0..500 {
                match fs_err::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(1)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_docker_reads_them() {
        assert_eq!(parse_bytes("64m"), Ok(64 << 20));
        assert_eq!(parse_bytes("64MB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5k"), Ok(1536));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert_eq!(parse_bytes("10b"), Ok(10));
        assert!(parse_bytes("12x").is_err());
        assert!(parse_bytes("-1m").is_err());
        assert!(parse_bytes("m").is_err());
    }
}
