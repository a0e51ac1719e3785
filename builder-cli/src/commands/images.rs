//! `rbuild images`, `inspect`, `tag`, `rmi`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use builder_core::build::{Image, Store};

use crate::render;

/// `name` as stored: `:latest` added when no tag is given.
pub(crate) fn normalize(name: &str) -> String {
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || name.contains('@') {
        name.to_owned()
    } else {
        format!("{name}:latest")
    }
}

fn resolve(store: &Store, name: &str) -> anyhow::Result<Image> {
    let normalized = normalize(name);
    let Some(digest) = store.tag(&normalized)? else {
        bail!(
            "no image `{normalized}` in the store at `{}`",
            store.root().display()
        );
    };
    Image::load(store, digest).with_context(|| format!("cannot read image `{normalized}`"))
}

fn human(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let b = bytes as f64;
    if b >= 1e9 {
        format!("{:.1}GB", b / 1e9)
    } else if b >= 1e6 {
        format!("{:.1}MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1}kB", b / 1e3)
    } else {
        format!("{bytes}B")
    }
}

pub(crate) fn list(store: &Store) -> anyhow::Result<ExitCode> {
    let mut out = format!(
        "{:<40} {:<20} {:<14} {:>10}\n",
        "REPOSITORY", "TAG", "IMAGE ID", "SIZE"
    );
    for (name, digest) in store.tags()? {
        let image = Image::load(store, digest)?;
        let (repo, tag) = match name.rsplit_once(':').filter(|(_, t)| !t.contains('/')) {
            Some((r, t)) => (r.to_owned(), t.to_owned()),
            None => (name.clone(), String::new()),
        };
        let id = image.config_digest.hex();
        let _ = writeln!(
            out,
            "{repo:<40} {tag:<20} {:<14} {:>10}",
            &id[..12],
            human(image.size(store)?)
        );
    }
    render::stdout(&out);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn inspect(store: &Store, name: &str) -> anyhow::Result<ExitCode> {
    let image = resolve(store, name)?;
    let value = serde_json::json!({
        "Id": image.config_digest.to_string(),
        "Digest": image.manifest_digest.to_string(),
        "Config": image.config,
        "Manifest": image.manifest,
    });
    render::stdout(&format!("{}\n", serde_json::to_string_pretty(&value)?));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn tag(store: &Store, source: &str, target: &str) -> anyhow::Result<ExitCode> {
    let image = resolve(store, source)?;
    store.set_tag(&normalize(target), image.manifest_digest)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn rmi(store: &Store, names: &[String]) -> anyhow::Result<ExitCode> {
    for name in names {
        let n = normalize(name);
        if !store.remove_tag(&n)? {
            bail!("no image `{n}` in the store");
        }
        render::stdout(&format!("Untagged: {n}\n"));
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn import(
    store: &Store,
    tarball: &std::path::Path,
    name: &str,
) -> anyhow::Result<ExitCode> {
    let created = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let image = if tarball.as_os_str() == "-" {
        builder_core::build::import_rootfs(store, std::io::stdin().lock(), created)
    } else {
        let f = fs_err::File::open(tarball)?;
        builder_core::build::import_rootfs(store, f, created)
    }
    .with_context(|| format!("cannot import `{}`", tarball.display()))?;
    let n = normalize(name);
    store.set_tag(&n, image.manifest_digest)?;
    render::stdout(&format!("{}\n", image.config_digest));
    Ok(ExitCode::SUCCESS)
}
