//! `rbuild bake`: the services of a Compose file, each built as `rbuild build` would build it.

use std::ffi::OsString;
use std::process::ExitCode;

use anyhow::Context;
use builder_core::compose::{self, Build, SecretSource};
use builder_core::solve::Store;
use clap::Parser;

use crate::args::{BakeArgs, BuildOnly};

pub(crate) fn run(
    store: &Store,
    args: &BakeArgs,
    registry: &builder_core::registry::Options,
) -> anyhow::Result<ExitCode> {
    let file = match &args.file {
        Some(f) => f.clone(),
        None => compose::DEFAULT_FILES
            .iter()
            .map(std::path::PathBuf::from)
            .find(|f| f.is_file())
            .with_context(|| {
                format!(
                    "no Compose file here ({}); give one with -f",
                    compose::DEFAULT_FILES.join(", ")
                )
            })?,
    };
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let project = compose::load(&file, &env)?;
    let selected = project.select(&args.services)?;
    if selected.is_empty() {
        anyhow::bail!("`{}` has no service with a build section", file.display());
    }
    if args.print {
        let mut text = serde_json::to_string_pretty(&project.print(&selected))?;
        text.push('\n');
        std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    for (name, build) in &selected {
        eprintln!("=> service {name}: {}", build.tags.join(", "));
        let inline = inline_dockerfile(store, build)?;
        let argv = command_line(args, build, inline.as_deref());
        let parsed = BuildOnly::try_parse_from(&argv)
            .with_context(|| format!("service `{name}`: invalid build definition"))?;
        let code = super::build::run(store, &parsed.options, registry, None)
            .with_context(|| format!("service `{name}`"))?;
        if code != ExitCode::SUCCESS {
            eprintln!("=> service {name} failed");
            return Ok(code);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `dockerfile_inline`, written to a temporary file for the build.
fn inline_dockerfile(store: &Store, build: &Build) -> anyhow::Result<Option<tempfile::TempPath>> {
    let Some(text) = &build.dockerfile_inline else {
        return Ok(None);
    };
    let dir = store.root().join("tmp");
    fs_err::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("Dockerfile-inline-")
        .tempfile_in(&dir)?;
    std::io::Write::write_all(&mut tmp, text.as_bytes())?;
    Ok(Some(tmp.into_temp_path()))
}

/// The `rbuild build` command line of one service's build.
fn command_line(args: &BakeArgs, build: &Build, inline: Option<&std::path::Path>) -> Vec<OsString> {
    let mut argv: Vec<OsString> = vec![
        "build".into(),
        "--progress".into(),
        args.progress.clone().into(),
    ];
    let mut flag = |name: &str, value: OsString| {
        argv.push(format!("--{name}").into());
        argv.push(value);
    };
    for t in &build.tags {
        flag("tag", t.into());
    }
    match (inline, &build.dockerfile) {
        (Some(path), _) => flag("file", path.into()),
        (None, Some(f)) => flag("file", f.into()),
        (None, None) => {}
    }
    for (k, v) in &build.args {
        flag(
            "build-arg",
            match v {
                Some(v) => format!("{k}={v}"),
                None => k.clone(),
            }
            .into(),
        );
    }
    if let Some(t) = &build.target {
        flag("target", t.into());
    }
    for (k, v) in &build.labels {
        flag("label", format!("{k}={v}").into());
    }
    for c in &build.cache_from {
        flag("cache-from", c.into());
    }
    for c in &build.cache_to {
        flag("cache-to", c.into());
    }
    // Several platforms: one index, as `rbuild build --platform a,b` makes it.
    if !build.platforms.is_empty() {
        flag("platform", build.platforms.join(",").into());
    }
    for (id, source) in &build.secrets {
        let spec = match source {
            SecretSource::File(path) => format!("id={id},src={}", path.display()),
            SecretSource::Env(var) => format!("id={id},env={var}"),
        };
        flag("secret", spec.into());
    }
    for (name, value) in &build.additional_contexts {
        flag("build-context", format!("{name}={value}").into());
    }
    if let Some(n) = &build.network {
        flag("network", n.into());
    }
    if build.no_cache || args.no_cache {
        argv.push("--no-cache".into());
    }
    if build.pull || args.pull {
        argv.push("--pull".into());
    }
    if args.push {
        argv.push("--push".into());
    }
    argv.push("--".into());
    argv.push(build.context.clone().into());
    argv
}
