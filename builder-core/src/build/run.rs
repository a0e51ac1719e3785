//! RUN: the command in the sandbox on an overlay of the stage's root filesystem; what it
//! changed (the overlay's upper directory) becomes the step's layer.

use std::collections::VecDeque;

use crate::dockerfile::{CommandLine, Instruction, Run};
use crate::exec::{self, Network, SandboxSpec};
use crate::snapshot;

use super::chown::resolve_chown;
use super::error::io_at;
use super::stage::{BuildEnv, StageState, add_layer};
use super::{Error, Event, Result};

/// Lines of output kept to show with a failure.
const TAIL: usize = 10;

/// The environment a RUN sees: the image's ENV and the build's ARGs (last value wins), PATH
/// defaulted as docker does.
fn environment(state: &StageState) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::new();
    for (i, (k, v)) in state.vars.iter().enumerate() {
        seen.insert(k.clone(), (i, v.clone()));
    }
    let mut vars: Vec<(usize, String, String)> =
        seen.into_iter().map(|(k, (i, v))| (i, k, v)).collect();
    vars.sort();
    let mut env: Vec<String> = vars
        .into_iter()
        .map(|(_, k, v)| format!("{k}={v}"))
        .collect();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    env
}

/// Supplementary groups of `user` from the image's `/etc/group`.
fn groups(rootfs: &std::path::Path, user: &str, gid: u32) -> Vec<u32> {
    let mut out = vec![gid];
    if let Ok(text) = fs_err::read_to_string(rootfs.join("etc/group")) {
        for line in text.lines() {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() >= 4 && f[3].split(',').any(|m| m == user) {
                if let Ok(g) = f[2].parse() {
                    if !out.contains(&g) {
                        out.push(g);
                    }
                }
            }
        }
    }
    out
}

/// Drops directories overlay copied up only to hold something left out (a mount point): same
/// owner and mode as below, not opaque, and nothing beneath them in the layer.
fn unchanged_dirs_removed(
    lower: &std::path::Path,
    entries: Vec<snapshot::Entry>,
) -> Vec<snapshot::Entry> {
    use std::os::unix::fs::MetadataExt;
    let has_children = |dir: &str| {
        let prefix = format!("{dir}/");
        entries.iter().any(|e| {
            e.path.starts_with(&prefix) || (e.path == dir && e.kind == snapshot::EntryKind::Opaque)
        })
    };
    let keep: Vec<bool> = entries
        .iter()
        .map(|e| {
            if e.kind != snapshot::EntryKind::Dir || has_children(&e.path) {
                return true;
            }
            match fs_err::symlink_metadata(lower.join(&e.path)) {
                Ok(m) => {
                    !(m.is_dir()
                        && m.mode() & 0o7777 == e.mode
                        && m.uid() == e.uid
                        && m.gid() == e.gid)
                }
                Err(_) => true,
            }
        })
        .collect();
    entries
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// Runs the command; gives whether it changed anything (an unchanged filesystem adds no layer,
/// as in BuildKit).
pub(crate) fn run(
    env: &mut BuildEnv<'_>,
    state: &mut StageState,
    inst: &Instruction,
    run: &Run,
) -> Result<bool> {
    if !run.mounts.is_empty() {
        return Err(Error::Unsupported {
            what: "RUN --mount".into(),
        });
    }
    let shell = state
        .config
        .config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()]);
    let args = match (&run.command, run.heredocs.as_slice()) {
        (CommandLine::Exec(v), _) => v.clone(),
        (CommandLine::Shell(s), []) => shell
            .iter()
            .cloned()
            .chain(std::iter::once(s.clone()))
            .collect(),
        // `RUN <<EOF`: the heredoc is the script.
        (CommandLine::Shell(s), [h])
            if s.trim() == format!("<<{}", h.name) || s.trim() == format!("<<-{}", h.name) =>
        {
            shell
                .iter()
                .cloned()
                .chain(std::iter::once(h.content.clone()))
                .collect()
        }
        (CommandLine::Shell(_), _) => {
            return Err(Error::Unsupported {
                what: "RUN with heredocs other than a single script".into(),
            });
        }
    };
    let rootfs = state.ensure_rootfs(env.store)?.to_owned();
    let user = state.config.config.user.clone().unwrap_or_default();
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        resolve_chown(&user, &rootfs)
    };
    let name = user.split(':').next().unwrap_or_default().to_owned();
    let dir = env.work.join(format!("run-{}", env.step));
    let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
    for d in [&upper, &work, &merged] {
        fs_err::create_dir_all(d).map_err(io_at(d))?;
    }
    let hosts = dir.join("hosts");
    fs_err::write(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tbuildkitsandbox\n").map_err(io_at(&hosts))?;
    let network = match run.network.as_deref() {
        Some("none") => Network::None,
        _ => Network::Host,
    };
    let resolv = std::path::Path::new("/etc/resolv.conf");
    let spec = SandboxSpec {
        lower: rootfs.clone(),
        upper: upper.clone(),
        work,
        merged,
        args,
        env: environment(state),
        cwd: state.workdir().to_owned(),
        uid,
        gid,
        groups: if user.is_empty() {
            vec![0]
        } else {
            groups(&rootfs, &name, gid)
        },
        hostname: "buildkitsandbox".into(),
        network,
        resolv_conf: (network == Network::Host && resolv.is_file()).then(|| resolv.to_owned()),
        hosts: Some(hosts),
        binds: Vec::new(),
    };
    let helper = std::env::current_exe().map_err(io_at("/proc/self/exe"))?;
    let mut tail: VecDeque<String> = VecDeque::new();
    let number = env.step;
    let exit = exec::run(&helper, &spec, &mut |line| {
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line.to_owned());
        (env.on_event)(&Event::Log {
            number,
            line: line.to_owned(),
        });
    })?;
    if exit.code != 0 {
        return Err(Error::RunFailed {
            code: exit.code,
            last_lines: tail.into(),
        });
    }
    // Mount points the sandbox created where the image had nothing are not the command's doing.
    let skip: Vec<String> = ["proc", "dev", "etc/hosts", "etc/resolv.conf", "etc"]
        .into_iter()
        .filter(|p| fs_err::symlink_metadata(rootfs.join(p)).is_err())
        .map(str::to_owned)
        .collect();
    let mut skip = skip;
    // An `etc` the sandbox created only to hold its files goes too, unless the command wrote more there.
    if skip.iter().any(|s| s == "etc") {
        let only_ours = fs_err::read_dir(upper.join("etc")).map_or(true, |d| {
            d.filter_map(std::result::Result::ok)
                .all(|e| matches!(e.file_name().to_str(), Some("hosts" | "resolv.conf")))
        });
        // (read_dir fails when the command removed /etc: then nothing of ours is there either)
        if !only_ours {
            skip.retain(|s| s != "etc");
        }
    }
    // Existing /proc and /dev stay untouched in the layer: their mount hid whatever was written.
    for p in ["proc", "dev"] {
        if !skip.iter().any(|s| s == p) {
            skip.push(p.to_owned());
        }
    }
    for f in ["etc/hosts", "etc/resolv.conf"] {
        if !skip.iter().any(|s| s == f) && fs_err::symlink_metadata(upper.join(f)).is_ok() {
            // The bind mount hid the file; a copy-up left an unchanged copy: not a change.
            skip.push(f.to_owned());
        }
    }
    let entries = unchanged_dirs_removed(
        &rootfs,
        snapshot::upper_entries(&upper, &skip).map_err(io_at(&upper))?,
    );
    let _ = inst;
    if entries.is_empty() {
        return Ok(false);
    }
    add_layer(env, state, entries)?;
    Ok(true)
}
