//! `rbuild pull`, `push`, `login`, `logout`.

use std::io::Read as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use builder_core::oci::Compression;
use builder_core::registry::{self, ManifestFormat, Options, Platform, PushOptions, Reference};
use builder_core::solve::Store;

use crate::args::PushArgs;
use crate::render;

/// How registries are reached: `--insecure-registry` and docker's config.
pub(crate) fn options(insecure: &[String], timeout_secs: u64) -> Options {
    Options {
        insecure: insecure.to_vec(),
        read_timeout: std::time::Duration::from_secs(timeout_secs.max(1)),
        ..Options::default()
    }
}

pub(crate) fn platform(raw: Option<&str>) -> anyhow::Result<Option<Platform>> {
    raw.map(|p| p.parse::<Platform>().map_err(anyhow::Error::from))
        .transpose()
}

pub(crate) fn pull(
    store: &Store,
    image: &str,
    platform_arg: Option<&str>,
    opts: &Options,
) -> anyhow::Result<ExitCode> {
    let reference: Reference = image.parse()?;
    let platform = platform(platform_arg)?.unwrap_or_else(Platform::host);
    let _lock = store.lock_shared()?;
    let pulled = registry::pull(store, &reference, &platform, opts)
        .with_context(|| format!("cannot pull `{reference}`"))?;
    render::stderr(&format!(
        "pulled {reference} ({platform}): {} layers downloaded, {} bytes\ndigest: {}\nimage ID: {}\n",
        pulled.layers_fetched,
        pulled.bytes_fetched,
        pulled.remote_digest,
        pulled.image.config_digest
    ));
    render::stdout(&format!("{reference}\n"));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn push_options(
    format: &str,
    compression: &str,
    chunk_size: u64,
) -> anyhow::Result<PushOptions> {
    Ok(PushOptions {
        format: if format == "docker" {
            ManifestFormat::Docker
        } else {
            ManifestFormat::Oci
        },
        compression: Compression::parse(compression).context("invalid --compression")?,
        chunk_size: chunk_size.max(1),
    })
}

/// Pushes the stored `image` to each destination, reporting each.
pub(crate) fn push_image(
    store: &Store,
    image: &builder_core::solve::Image,
    destinations: &[String],
    opts: &Options,
    push_opts: &PushOptions,
) -> anyhow::Result<()> {
    let mut refs = Vec::new();
    for d in destinations {
        refs.push(d.parse::<Reference>()?);
    }
    let pushed = registry::push(store, image, &refs, opts, push_opts)
        .with_context(|| format!("cannot push to `{}`", destinations.join("`, `")))?;
    for (r, p) in refs.iter().zip(&pushed) {
        render::stderr(&format!(
            "pushed {r}: digest {} ({} blobs uploaded, {} mounted, {} already there)\n",
            p.digest, p.uploaded, p.mounted, p.existing
        ));
    }
    Ok(())
}

pub(crate) fn push(
    store: &Store,
    image: &str,
    destinations: &[String],
    args: &PushArgs,
    opts: &Options,
) -> anyhow::Result<ExitCode> {
    let _lock = store.lock_shared()?;
    let dests = if destinations.is_empty() {
        vec![image.to_owned()]
    } else {
        destinations.to_vec()
    };
    let push_opts = push_options(&args.format, &args.compression, args.chunk_size)?;
    // A multi-platform image's tag names an index: every platform is pushed, then the index.
    let tagged = store.tag(&builder_core::solve::tag_name(image))?;
    if let Some(index) = tagged
        .map(|d| builder_core::oci::Index::load(store, d))
        .transpose()?
        .flatten()
    {
        let refs = dests
            .iter()
            .map(|d| d.parse::<Reference>().map_err(anyhow::Error::from))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pushed = registry::push_index(store, &index.entries, &refs, opts, &push_opts)
            .with_context(|| format!("cannot push to `{}`", dests.join("`, `")))?;
        for (r, p) in refs.iter().zip(&pushed) {
            render::stderr(&format!("pushed {r}: index {}\n", p.digest));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let local = super::images::resolve(store, image)?;
    push_image(store, &local, &dests, opts, &push_opts)?;
    Ok(ExitCode::SUCCESS)
}

/// `https://host/v1/` and the like, as a registry host.
fn registry_host(raw: Option<&str>) -> String {
    let raw = raw.unwrap_or(registry::DOCKER_HUB);
    let r = raw
        .strip_prefix("https://")
        .or_else(|| raw.strip_prefix("http://"))
        .unwrap_or(raw);
    r.split('/').next().unwrap_or(r).to_owned()
}

pub(crate) fn login(
    registry_arg: Option<&str>,
    username: &str,
    password: Option<&str>,
    password_stdin: bool,
    opts: &Options,
) -> anyhow::Result<ExitCode> {
    let host = registry_host(registry_arg);
    let password = match (password, password_stdin) {
        (Some(_), true) => bail!("--password and --password-stdin cannot be used together"),
        (Some(p), false) => p.to_owned(),
        (None, true) => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("cannot read the password from standard input")?;
            s.trim_end_matches(['\n', '\r']).to_owned()
        }
        (None, false) => bail!("give the password with --password-stdin (or --password)"),
    };
    registry::login(&host, username, &password, opts)
        .with_context(|| format!("cannot log in to `{host}`"))?;
    render::stderr(&format!(
        "Login Succeeded (saved in `{}`)\n",
        opts.docker_config.display()
    ));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn logout(registry_arg: Option<&str>, opts: &Options) -> anyhow::Result<ExitCode> {
    let host = registry_host(registry_arg);
    if registry::logout(&host, opts)? {
        render::stderr(&format!("Removing login credentials for {host}\n"));
    } else {
        render::stderr(&format!("Not logged in to {host}\n"));
    }
    Ok(ExitCode::SUCCESS)
}
