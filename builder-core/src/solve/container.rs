//! `rbuild run`: an image's entrypoint and command in the RUN sandbox, to smoke-test a build.
//! The image's root filesystem is unpacked to a scratch directory and mounted as the overlay's
//! lower layer; what the command writes is thrown away.

use std::path::PathBuf;

use crate::exec::{self, Bind, Network, SandboxSpec};
use crate::store::Store;

use super::chown::resolve_user;
use super::env::load_local;
use super::error::io_at;
use super::{Error, Result};

/// How to run an image.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The command, replacing the image's CMD when not empty.
    pub command: Vec<String>,
    /// `-e KEY=VALUE` (or `KEY`, taking ours), added to the image's environment.
    pub env: Vec<String>,
    /// `-v HOST:CONTAINER[:ro]`.
    pub volumes: Vec<(PathBuf, String, bool)>,
    /// `--network=none`.
    pub no_network: bool,
    /// `--user`.
    pub user: Option<String>,
    /// `-w`.
    pub workdir: Option<String>,
}

/// Runs image `name` and gives the command's exit status.
pub fn run_image(store: &Store, name: &str, opts: &RunOptions) -> Result<i32> {
    let image = load_local(store, name)?;
    let scratch = store.work_dir("run-")?;
    let rootfs = scratch.path().join("rootfs");
    fs_err::create_dir_all(&rootfs).map_err(io_at(&rootfs))?;
    {
        // Only while its layers are read: the run itself may last, and must not hold off prune.
        let _lock = store.lock_shared()?;
        for d in image.diff_ids() {
            crate::snapshot::apply_layer(store, d, &rootfs)?;
        }
    }
    let cfg = &image.config.config;
    let args = command(name, cfg, opts)?;
    let env = environment(cfg, opts);
    let user = opts
        .user
        .clone()
        .or_else(|| cfg.user.clone())
        .unwrap_or_default();
    let (uid, gid) = if user.is_empty() {
        (0, 0)
    } else {
        resolve_user(&user, &rootfs)?
    };
    let hosts = scratch.path().join("hosts");
    fs_err::write(&hosts, "127.0.0.1\tlocalhost\n::1\tlocalhost\n").map_err(io_at(&hosts))?;
    let network = if opts.no_network {
        Network::None
    } else {
        Network::Host
    };
    let resolv = std::path::Path::new("/etc/resolv.conf");
    let spec = SandboxSpec {
        env,
        cwd: opts
            .workdir
            .clone()
            .or_else(|| cfg.working_dir.clone())
            .unwrap_or_else(|| "/".into()),
        uid,
        gid,
        groups: vec![gid],
        hostname: "rbuild".into(),
        network,
        resolv_conf: (network == Network::Host && resolv.is_file()).then(|| resolv.to_owned()),
        hosts: Some(hosts),
        binds: opts
            .volumes
            .iter()
            .map(|(source, target, readonly)| Bind {
                source: source.clone(),
                target: target.clone(),
                readonly: *readonly,
            })
            .collect(),
        userns: crate::exec::IdMap::for_run(crate::exec::Userns::Auto),
        ..SandboxSpec::new(rootfs, scratch.path(), args)
    };
    spec.make_dirs().map_err(io_at(scratch.path()))?;
    let helper = std::env::current_exe().map_err(io_at("/proc/self/exe"))?;
    Ok(exec::run_attached(&helper, &spec)?.code)
}

/// The image's ENTRYPOINT and CMD, the command given replacing CMD.
fn command(name: &str, cfg: &crate::oci::RunConfig, opts: &RunOptions) -> Result<Vec<String>> {
    let mut args: Vec<String> = cfg.entrypoint.clone().unwrap_or_default();
    if opts.command.is_empty() {
        args.extend(cfg.cmd.clone().unwrap_or_default());
    } else {
        args.extend(opts.command.iter().cloned());
    }
    if args.is_empty() {
        return Err(Error::Unsupported {
            what: format!("running `{name}` without a command (it has no ENTRYPOINT or CMD)"),
        });
    }
    Ok(args)
}

/// The image's environment with `-e` added (`KEY` alone takes ours, if we have it).
fn environment(cfg: &crate::oci::RunConfig, opts: &RunOptions) -> Vec<String> {
    let mut env: Vec<String> = cfg.env.clone().unwrap_or_default();
    for e in &opts.env {
        let entry = if e.contains('=') {
            e.clone()
        } else {
            match std::env::var(e) {
                Ok(v) => format!("{e}={v}"),
                Err(_) => continue,
            }
        };
        let key = entry.split('=').next().unwrap_or_default().to_owned();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(entry);
    }
    env
}
