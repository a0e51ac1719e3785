//! `rbuild images`, `inspect`, `tag`, `rmi`.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context, bail};
use builder_core::solve::{Image, Store, tag_name};

use crate::render;

pub(crate) fn resolve(store: &Store, name: &str) -> anyhow::Result<Image> {
    let normalized = tag_name(name);
    let Some(digest) = store.tag(&normalized)? else {
        bail!(
            "no image `{normalized}` in the store at `{}`",
            store.root().display()
        );
    };
    Image::load_tagged(store, digest).with_context(|| format!("cannot read image `{normalized}`"))
}

pub(crate) fn human(bytes: u64) -> String {
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
        let image = Image::load_tagged(store, digest)?;
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
    let _lock = store.lock_shared()?;
    let image = resolve(store, source)?;
    store.set_tag(&tag_name(target), image.manifest_digest)?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn rmi(store: &Store, names: &[String]) -> anyhow::Result<ExitCode> {
    let _lock = store.lock_shared()?;
    for name in names {
        let n = tag_name(name);
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
        .unwrap_or(builder_core::solve::DEFAULT_EPOCH);
    let _lock = store.lock_shared()?;
    let image = if tarball.as_os_str() == "-" {
        builder_core::solve::import_rootfs(store, std::io::stdin().lock(), created)
    } else {
        let f = fs_err::File::open(tarball)?;
        builder_core::solve::import_rootfs(store, f, created)
    }
    .with_context(|| format!("cannot import `{}`", tarball.display()))?;
    let n = tag_name(name);
    store.set_tag(&n, image.manifest_digest)?;
    render::stdout(&format!("{}\n", image.config_digest));
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn save(
    store: &Store,
    output: &std::path::Path,
    format: &str,
    compression: &str,
    name: &str,
) -> anyhow::Result<ExitCode> {
    use builder_core::solve::{Compression, Output};
    let _lock = store.lock_shared()?;
    let image = resolve(store, name)?;
    let out = if format == "docker" {
        Output::Docker {
            dest: output.to_owned(),
        }
    } else {
        Output::Oci {
            dest: output.to_owned(),
        }
    };
    let compression = Compression::parse(compression).context("invalid --compression")?;
    builder_core::solve::export(store, &image, &out, &[tag_name(name)], compression, 0)
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn load(store: &Store, input: Option<&std::path::Path>) -> anyhow::Result<ExitCode> {
    // Held from the first blob to the last tag: a prune in between would take the blobs.
    let _lock = store.lock_shared()?;
    let loaded = match input.filter(|p| p.as_os_str() != "-") {
        Some(path) => builder_core::solve::load_archive(store, fs_err::File::open(path)?)
            .with_context(|| format!("cannot load `{}`", path.display()))?,
        None => builder_core::solve::load_archive(store, std::io::stdin().lock())
            .context("cannot load the archive on standard input")?,
    };
    for (image, names) in loaded {
        if names.is_empty() {
            render::stdout(&format!("Loaded image ID: {}\n", image.config_digest));
        }
        for n in names {
            let n = tag_name(&n);
            store.set_tag(&n, image.manifest_digest)?;
            render::stdout(&format!("Loaded image: {n}\n"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn history(store: &Store, name: &str) -> anyhow::Result<ExitCode> {
    let image = resolve(store, name)?;
    let mut layers = image.diff_ids().iter();
    let mut rows = Vec::new();
    for h in &image.config.history {
        let size = if h.empty_layer == Some(true) {
            0
        } else {
            layers.next().map_or(0, |d| store.blob_size(d).unwrap_or(0))
        };
        rows.push((
            h.created.clone().unwrap_or_default(),
            h.created_by.clone().unwrap_or_default(),
            size,
        ));
    }
    let mut out = format!("{:<22} {:<60} {:>10}\n", "CREATED", "CREATED BY", "SIZE");
    for (created, by, size) in rows.into_iter().rev() {
        let by: String = if by.chars().count() > 60 {
            by.chars().take(57).chain("...".chars()).collect()
        } else {
            by
        };
        let _ = writeln!(out, "{created:<22} {by:<60} {:>10}", human(size));
    }
    render::stdout(&out);
    Ok(ExitCode::SUCCESS)
}

/// `24h`, `30m`, `90s`, `2d`.
fn parse_age(s: &str) -> anyhow::Result<std::time::Duration> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .with_context(|| format!("invalid duration `{s}`"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("invalid duration `{s}` (use s, m, h or d)"),
    };
    Ok(std::time::Duration::from_secs(secs))
}

/// `10GB`, `500MB`, `1024`.
fn parse_size(s: &str) -> anyhow::Result<u64> {
    let upper = s.trim().to_ascii_uppercase();
    let (num, unit) = upper.split_at(
        upper
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(upper.len()),
    );
    let n: f64 = num.parse().with_context(|| format!("invalid size `{s}`"))?;
    let mult = match unit.trim_end_matches('B').trim_end_matches('I') {
        "" => 1.0,
        "K" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        _ => bail!("invalid size `{s}` (use KB, MB, GB)"),
    };
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Ok((n * mult) as u64)
}

pub(crate) fn prune(
    store: &Store,
    all: bool,
    filter: Option<&str>,
    keep: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let until = match filter {
        None => None,
        Some(f) => match f.split_once('=') {
            Some(("until", v)) => Some(parse_age(v)?),
            _ => bail!("unknown filter `{f}` (known: until=DURATION)"),
        },
    };
    let opts = builder_core::solve::PruneOptions {
        all,
        until,
        keep_storage: keep.map(parse_size).transpose()?,
    };
    let report = builder_core::solve::prune(store, &opts)?;
    render::stdout(&format!(
        "Deleted {} cache records, {} blobs, {} snapshots, {} stale records and {} work directories of builds that are gone\nTotal reclaimed space: {}\n",
        report.cache_records,
        report.blobs,
        report.snapshots,
        report.records,
        report.work_dirs,
        human(report.bytes)
    ));
    Ok(ExitCode::SUCCESS)
}

/// `rbuild fsck [--repair] [--quick]`.
pub(crate) fn fsck(store: &Store, repair: bool, quick: bool) -> anyhow::Result<ExitCode> {
    let opts = builder_core::solve::FsckOptions { repair, quick };
    let report = builder_core::solve::fsck(store, opts)?;
    let mut out = String::new();
    for p in &report.problems {
        let _ = writeln!(
            out,
            "{}{}",
            p.what,
            if p.repaired { " (removed)" } else { "" }
        );
    }
    let checked = format!(
        "checked {} blobs{}, {} tags, {} step-cache records, {} snapshots",
        report.blobs,
        if quick { " (not hashed: --quick)" } else { "" },
        report.tags,
        report.cache_records,
        report.snapshots
    );
    let unrepaired = report.problems.iter().filter(|p| !p.repaired).count();
    let _ = if report.problems.is_empty() {
        writeln!(out, "{checked}: no problems")
    } else if unrepaired == 0 {
        writeln!(
            out,
            "{checked}: {} problems, all removed; the next build recreates what it needs",
            report.problems.len()
        )
    } else {
        writeln!(
            out,
            "{checked}: {unrepaired} problems; `rbuild fsck --repair` removes them"
        )
    };
    render::stdout(&out);
    Ok(if unrepaired == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `rbuild df`: what the store holds, as `docker system df` shows it.
pub(crate) fn df(store: &Store) -> anyhow::Result<ExitCode> {
    let u = builder_core::solve::disk_usage(store)?;
    let mut out = format!("{:<22}{:>8}{:>12}\n", "TYPE", "COUNT", "SIZE");
    let rows = [
        ("Images", u.images.to_string(), u.image_bytes),
        ("Build cache", u.cache_records.to_string(), u.cache_bytes),
        ("Snapshots", "-".to_owned(), u.snapshot_bytes),
        ("Cache mounts", "-".to_owned(), u.cache_mount_bytes),
        ("Records", u.records.to_string(), u.record_bytes),
        ("Work directories", "-".to_owned(), u.work_bytes),
        ("Unused (prune frees)", "-".to_owned(), u.unused_bytes),
    ];
    for (name, count, bytes) in rows {
        let _ = writeln!(out, "{name:<22}{count:>8}{:>12}", human(bytes));
    }
    render::stdout(&out);
    Ok(ExitCode::SUCCESS)
}

/// `rbuild binfmt [--install] [ARCH...]`.
pub(crate) fn binfmt(install: bool, arches: &[String]) -> anyhow::Result<ExitCode> {
    use builder_core::exec::{binfmt_can_run, install_binfmt};
    let default = [
        "arm64", "arm", "riscv64", "ppc64le", "s390x", "386", "amd64",
    ];
    let arches: Vec<&str> = if arches.is_empty() {
        default.to_vec()
    } else {
        arches.iter().map(String::as_str).collect()
    };
    if install {
        let wanted: Vec<&str> = arches
            .iter()
            .copied()
            .filter(|a| !binfmt_can_run(a))
            .collect();
        for name in install_binfmt(&wanted)? {
            render::stderr(&format!("registered {name}\n"));
        }
    }
    let mut out = String::new();
    for a in &arches {
        let state = if binfmt_can_run(a) { "yes" } else { "no" };
        let _ = writeln!(out, "{a:<10} {state}");
    }
    render::stdout(&out);
    Ok(ExitCode::SUCCESS)
}
