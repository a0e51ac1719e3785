//! One module per subcommand.

mod bake;
mod build;
mod images;
mod parse;
mod registry;
mod remote;

use std::process::ExitCode;

use crate::args::{Cli, Command};

pub(crate) fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let root = cli.root.clone();
    let lock_timeout = std::time::Duration::from_secs(cli.lock_timeout);
    let store = |root| store(root, lock_timeout);
    let reg = registry::options(&cli.insecure_registries, cli.registry_timeout);
    match cli.command {
        Command::Parse(args) => parse::run(&args),
        Command::Build(args) if !args.hosts.is_empty() => remote::run(&store(root)?, &args),
        Command::Build(args) => build::run(&store(root)?, &args, &reg, None),
        Command::Binfmt { install, arches } => images::binfmt(install, &arches),
        Command::Bake(args) => bake::run(&store(root)?, &args, &reg),
        Command::Plan { format, build } => build::run(&store(root)?, &build, &reg, Some(&format)),
        Command::Pull { image, platform } => {
            registry::pull(&store(root)?, &image, platform.as_deref(), &reg)
        }
        Command::Push {
            image,
            destinations,
            push,
        } => registry::push(&store(root)?, &image, &destinations, &push, &reg),
        Command::Login {
            registry: host,
            username,
            password,
            password_stdin,
        } => registry::login(
            host.as_deref(),
            &username,
            password.as_deref(),
            password_stdin,
            &reg,
        ),
        Command::Logout { registry: host } => registry::logout(host.as_deref(), &reg),
        Command::Images => images::list(&store(root)?),
        Command::Inspect { image } => images::inspect(&store(root)?, &image),
        Command::Tag { source, target } => images::tag(&store(root)?, &source, &target),
        Command::Rmi { images } => images::rmi(&store(root)?, &images),
        Command::Import { tarball, name } => images::import(&store(root)?, &tarball, &name),
        Command::Save {
            output,
            format,
            compression,
            image,
        } => images::save(&store(root)?, &output, &format, &compression, &image),
        Command::Load { input } => images::load(&store(root)?, input.as_deref()),
        Command::History { image } => images::history(&store(root)?, &image),
        Command::Run {
            env,
            volumes,
            network,
            user,
            workdir,
            image,
            command,
        } => {
            let mut binds = Vec::new();
            for v in &volumes {
                let mut parts = v.splitn(3, ':');
                let (Some(host), Some(target)) = (parts.next(), parts.next()) else {
                    anyhow::bail!("invalid --volume `{v}`: expected HOST:CONTAINER[:ro]");
                };
                let readonly = match parts.next() {
                    None | Some("rw") => false,
                    Some("ro") => true,
                    Some(o) => anyhow::bail!("invalid --volume option `{o}` (ro or rw)"),
                };
                let host = std::path::absolute(host)?;
                if !host.exists() {
                    anyhow::bail!("--volume source `{}` does not exist", host.display());
                }
                binds.push((host, target.to_owned(), readonly));
            }
            let opts = builder_core::solve::RunOptions {
                command,
                env,
                volumes: binds,
                no_network: network == "none",
                user,
                workdir,
            };
            let code = builder_core::solve::run_image(
                &store(root)?,
                &builder_core::solve::tag_name(&image),
                &opts,
            )?;
            Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
        }
        Command::Prune {
            all,
            filter,
            keep_storage,
        } => images::prune(
            &store(root)?,
            all,
            filter.as_deref(),
            keep_storage.as_deref(),
        ),
        Command::Df => images::df(&store(root)?),
        Command::Fsck { repair, quick } => images::fsck(&store(root)?, repair, quick),
        Command::Completion { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "rbuild", &mut out);
            crate::render::stdout(&String::from_utf8_lossy(&out));
            Ok(ExitCode::SUCCESS)
        }
        Command::Version => {
            crate::render::stdout(&format!("rbuild {}\n", env!("CARGO_PKG_VERSION")));
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The store: `--root`, else `RBUILD_ROOT`, else `$XDG_DATA_HOME/rbuild` (or `~/.local/share`),
/// or `/var/lib/rbuild` as root.
fn store(
    root: Option<std::path::PathBuf>,
    lock_timeout: std::time::Duration,
) -> anyhow::Result<builder_core::solve::Store> {
    use anyhow::Context;
    let root = match root.or_else(|| std::env::var_os("RBUILD_ROOT").map(Into::into)) {
        Some(r) => r,
        None => default_root(),
    };
    builder_core::solve::Store::open(&root)
        .map(|s| s.with_lock_timeout(lock_timeout))
        .with_context(|| format!("cannot open the store at `{}`", root.display()))
}

fn default_root() -> std::path::PathBuf {
    let is_root = std::env::var("USER").is_ok_and(|u| u == "root")
        || std::env::var("HOME").is_ok_and(|h| h == "/root");
    if is_root && std::env::var_os("XDG_DATA_HOME").is_none() {
        return "/var/lib/rbuild".into();
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".local/share"))
        })
        .unwrap_or_else(|| ".".into());
    data.join("rbuild")
}

/// `--build-arg NAME=VALUE`, or `NAME` alone taking the environment's value (skipped if unset), as
/// docker does.
pub(crate) fn build_args(raw: &[String]) -> std::collections::BTreeMap<String, String> {
    raw.iter()
        .filter_map(|a| match a.split_once('=') {
            Some((k, v)) => Some((k.to_owned(), v.to_owned())),
            None => std::env::var(a).ok().map(|v| (a.clone(), v)),
        })
        .collect()
}
