//! `rbuild build`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, anyhow};
use builder_core::solve::{self, BuildRequest, Builder, Compression, Event, Output, Store};

use crate::args::BuildOptions;
use crate::progress::{Mode, Progress};
use crate::render;
use builder_core::exec::Network;
use builder_core::solve::tag_name;

/// A build error that points at a Dockerfile line gets a code frame.
fn framed(err: solve::Error, dockerfile: &std::path::Path) -> anyhow::Error {
    let shown = dockerfile.display().to_string();
    match err {
        solve::Error::Dockerfile { path, source } => {
            let src = fs_err::read_to_string(&path).unwrap_or_default();
            anyhow!(render::DockerfileError::parse(&path, src, *source))
        }
        solve::Error::Step { line, .. } => {
            let src = fs_err::read_to_string(dockerfile).unwrap_or_default();
            let span = line_span(&src, line);
            let label = std::error::Error::source(&err)
                .map(ToString::to_string)
                .unwrap_or_default();
            anyhow!(render::DockerfileError {
                error: Box::new(err),
                path: shown,
                src,
                span,
                label,
                hint: None,
            })
        }
        other => anyhow!(other),
    }
}

/// The span of the instruction at Dockerfile `line` (what a code frame points at).
pub(crate) fn line_span(src: &str, line: usize) -> builder_core::dockerfile::Span {
    builder_core::dockerfile::parse(src)
        .ok()
        .and_then(|df| {
            df.instructions
                .into_iter()
                .find(|n| n.span.line == line)
                .map(|n| n.span)
        })
        .unwrap_or_default()
}

/// Builds, or with `plan` (`json`, `dot`; `--print-plan` is `json`) prints the op graph.
pub(crate) fn run(
    store: &Store,
    args: &BuildOptions,
    registry: &builder_core::registry::Options,
    plan: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    // `-`: the context is a tar stream on standard input; `-f` then names a file inside it.
    let stdin_context = if args.context.as_os_str() == "-" {
        Some(
            solve::unpack_context(store, std::io::stdin().lock())
                .context("cannot read the build context from standard input")?,
        )
    } else {
        None
    };
    // A git URL or an http(s) tarball: fetched into the store's scratch space first.
    let remote = match args.context.to_str() {
        Some(url)
            if solve::is_git_url(url)
                || url.starts_with("https://")
                || url.starts_with("http://") =>
        {
            let max = args.max_download.unwrap_or(solve::DEFAULT_MAX_DOWNLOAD);
            let fetched =
                solve::remote_context(store, url, max, &builder_core::cancel::Cancel::new())
                    .with_context(|| format!("cannot fetch the build context `{url}`"))?;
            if let Some(commit) = &fetched.commit {
                eprintln!("context {url} at commit {commit}");
            }
            Some(fetched)
        }
        _ => None,
    };
    let context = match (&stdin_context, &remote) {
        (Some(d), _) => d.path().to_owned(),
        (None, Some(r)) => r.root.clone(),
        (None, None) => args.context.clone(),
    };
    let fetched_root = stdin_context
        .as_ref()
        .map(|d| d.path().to_owned())
        .or_else(|| remote.as_ref().map(|r| r.root.clone()));
    // `-f -`: the Dockerfile is standard input, kept in a temporary file for the build.
    let stdin_dockerfile = if args.file.as_deref() == Some(std::path::Path::new("-")) {
        if stdin_context.is_some() {
            anyhow::bail!("`-f -` and a context on standard input (`-`) cannot both read it");
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("Dockerfile-stdin-")
            .tempfile_in(store.root().join("tmp"))
            .context("cannot make a temporary file for the Dockerfile")?;
        std::io::copy(&mut std::io::stdin().lock(), &mut tmp)
            .context("cannot read the Dockerfile from standard input")?;
        Some(tmp.into_temp_path())
    } else {
        None
    };
    let dockerfile = match (&args.file, &fetched_root, &stdin_dockerfile) {
        (_, _, Some(tmp)) => tmp.to_path_buf(),
        (Some(f), Some(d), None) => d.join(f),
        (Some(f), None, None) => f.clone(),
        (None, _, None) => context.join("Dockerfile"),
    };
    let mut outputs = Vec::new();
    for o in &args.outputs {
        outputs.push(Output::parse(o).map_err(|e| anyhow!("invalid --output `{o}`: {e}"))?);
    }
    let compression = Compression::parse(&args.compression).context("invalid --compression")?;
    let source_date_epoch = match args.source_date_epoch {
        Some(e) => Some(e),
        None => match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.is_empty() => Some(
                v.parse()
                    .with_context(|| format!("invalid SOURCE_DATE_EPOCH `{v}`"))?,
            ),
            _ => None,
        },
    };
    let labels: BTreeMap<String, String> = args
        .labels
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (l.clone(), String::new()),
        })
        .collect();
    // `--platform a,b`: one build per platform, one index.
    let platforms = match args.platform.as_deref() {
        Some(list) if list.contains(',') => Some(
            list.split(',')
                .map(|p| {
                    p.trim()
                        .parse::<builder_core::registry::Platform>()
                        .map_err(|e| anyhow!("invalid --platform `{list}`: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        ),
        _ => None,
    };
    let req = BuildRequest {
        context,
        dockerfile: Some(dockerfile.clone()),
        build_args: super::build_args(&args.build_args),
        target: args.target.clone(),
        labels,
        source_date_epoch,
        wall_clock_times: args.no_reproducible,
        no_cache: args.no_cache,
        no_cache_filter: args.no_cache_filter.clone(),
        jobs: args.jobs,
        explain_cache: args.explain_cache,
        tags: args.tags.iter().map(|t| tag_name(t)).collect(),
        secrets: secrets(&args.secrets)?,
        named_contexts: named_contexts(&args.build_contexts)?,
        ssh: ssh_agents(&args.ssh)?,
        run_timeout: args
            .run_timeout
            .map(|s| {
                std::time::Duration::try_from_secs_f64(s)
                    .map_err(|_| anyhow::anyhow!("--run-timeout: `{s}` is not a number of seconds"))
            })
            .transpose()?,
        pull: args.pull,
        max_download: args.max_download,
        platform: match &platforms {
            None => super::registry::platform(args.platform.as_deref())?,
            Some(_) => None,
        },
        registry: registry.clone(),
        cache_from: cache_specs("--cache-from", &args.cache_from)?,
        cache_to: cache_specs("--cache-to", &args.cache_to)?,
        network: match args.network.as_str() {
            "none" => Network::None,
            "host" => Network::Host,
            _ => Network::Private,
        },
        // `RUN --network=host` is the user's own choice on the command line.
        allow_network_host: true,
        limits: builder_core::exec::Limits {
            memory: args.memory,
            pids: args.pids_limit,
            cpus: args.cpus,
        },
        ulimits: args.ulimits.clone(),
        userns: args.userns,
        isolation: args.isolation,
        squash: args.squash,
        cancel: builder_core::cancel::Cancel::default(),
    };
    if let Some(format) = plan.or(args.print_plan.then_some("json")) {
        let planned = Builder::new(store.clone())
            .plan(&req)
            .map_err(|e| framed(e, &dockerfile))?;
        if let Some(why) = &planned.unkeyed {
            eprintln!("warning: the steps from here on have no key yet: {why}");
        }
        let text = if format == "dot" {
            planned.graph.dot()
        } else {
            serde_json::to_string_pretty(&planned.graph)? + "\n"
        };
        std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if args.push && args.tags.is_empty() {
        anyhow::bail!("--push needs at least one --tag to push to");
    }
    let push_opts = super::registry::push_options(&args.push_format, &args.compression, 64 << 20)?;
    let mtime =
        u64::try_from(source_date_epoch.unwrap_or(builder_core::solve::DEFAULT_EPOCH)).unwrap_or(0);
    if let Some(platforms) = &platforms {
        let ends = Ends {
            outputs: &outputs,
            compression,
            mtime,
            push_opts: &push_opts,
        };
        return build_platforms(store, args, &req, platforms, &ends, registry, &dockerfile);
    }
    let mut progress = Progress::new(Mode::from_args(&args.progress, args.quiet));
    let builder = Builder::new(store.clone());
    let result = {
        let mut on_event = |e: &Event| progress.event(e);
        builder.build(&req, &mut on_event)
    };
    progress.finish();
    let out = result.map_err(|e| framed(e, &dockerfile))?;
    let names = req.tags.clone();
    for o in &outputs {
        solve::export(store, &out.image, o, &names, compression, mtime)
            .with_context(|| format!("cannot write output {o:?}"))?;
    }
    if args.push {
        super::registry::push_image(store, &out.image, &names, registry, &push_opts)?;
    }
    let id = out.image.config_digest.to_string();
    if let Some(path) = &args.iidfile {
        fs_err::write(path, &id)
            .with_context(|| format!("cannot write --iidfile `{}`", path.display()))?;
    }
    let size = out.image.size(store).unwrap_or(0);
    let metadata = serde_json::json!({
        "containerimage.config.digest": id,
        "containerimage.digest": out.image.manifest_digest.to_string(),
        "image.name": names.join(","),
        "rbuild.steps": out.steps,
        "rbuild.cached": out.cached,
        "rbuild.size": size,
    });
    if let Some(path) = &args.metadata_file {
        let text = serde_json::to_string_pretty(&metadata)?;
        fs_err::write(path, text + "\n")
            .with_context(|| format!("cannot write --metadata-file `{}`", path.display()))?;
    }
    match progress.mode() {
        Mode::Quiet => {}
        Mode::RawJson => progress.json_value(&serde_json::json!({
            "type": "result",
            "time": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "image_id": id,
            "manifest_digest": out.image.manifest_digest.to_string(),
            "names": names,
            "size": size,
            "steps": out.steps,
            "cached": out.cached,
            "misses": out.misses,
        })),
        Mode::Plain | Mode::Tty => {
            let mut summary = format!(
                "built image {id} in {:.1}s ({} steps, {} cached, {} context files read)\n  digest {}, {}\n",
                started.elapsed().as_secs_f64(),
                out.steps,
                out.cached,
                out.files_read,
                out.image.manifest_digest,
                super::images::human(size),
            );
            if !out.misses.is_empty() {
                summary.push_str("cache misses:\n");
                for m in &out.misses {
                    let _ = writeln!(summary, "  {m}");
                }
            }
            for n in &names {
                let _ = writeln!(summary, "naming to {n}");
            }
            render::stderr(&summary);
        }
    }
    if args.quiet {
        render::stdout(&format!("{id}\n"));
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a build's result goes besides the store.
struct Ends<'a> {
    outputs: &'a [Output],
    compression: Compression,
    mtime: u64,
    push_opts: &'a builder_core::registry::PushOptions,
}

/// `--platform a,b,…`: each platform built, then one index, exported and pushed.
fn build_platforms(
    store: &Store,
    args: &BuildOptions,
    req: &BuildRequest,
    platforms: &[builder_core::registry::Platform],
    ends: &Ends<'_>,
    registry: &builder_core::registry::Options,
    dockerfile: &std::path::Path,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut progress = Progress::new(Mode::from_args(&args.progress, args.quiet));
    let docker_list = args.push_format == "docker";
    let result = {
        let mut on_event = |e: &Event| progress.event(e);
        Builder::new(store.clone()).build_platforms(req, platforms, docker_list, &mut on_event)
    };
    progress.finish();
    let multi = result.map_err(|e| framed(e, dockerfile))?;
    for o in ends.outputs {
        solve::export_index(store, &multi, o, &req.tags, ends.compression, ends.mtime)
            .with_context(|| format!("cannot write output {o:?}"))?;
    }
    if args.push {
        let refs = req
            .tags
            .iter()
            .map(|t| {
                t.parse::<builder_core::registry::Reference>()
                    .map_err(anyhow::Error::from)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let pushed = builder_core::registry::push_index(
            store,
            &multi.index.entries,
            &refs,
            registry,
            ends.push_opts,
        )
        .with_context(|| format!("cannot push to `{}`", req.tags.join("`, `")))?;
        for (r, p) in refs.iter().zip(&pushed) {
            render::stderr(&format!("pushed {r}: index {}\n", p.digest));
        }
    }
    if let Some(path) = &args.iidfile {
        fs_err::write(path, multi.index.digest.to_string())
            .with_context(|| format!("cannot write --iidfile `{}`", path.display()))?;
    }
    if !matches!(progress.mode(), Mode::Quiet | Mode::RawJson) {
        let mut summary = format!(
            "built index {} of {} platforms in {:.1}s\n",
            multi.index.digest,
            multi.outputs.len(),
            started.elapsed().as_secs_f64()
        );
        for (p, o) in &multi.outputs {
            let _ = writeln!(
                summary,
                "  {p}: image {} ({} steps, {} cached)",
                o.image.manifest_digest, o.steps, o.cached
            );
        }
        for n in &req.tags {
            let _ = writeln!(summary, "naming to {n}");
        }
        render::stderr(&summary);
    }
    Ok(ExitCode::SUCCESS)
}

fn cache_specs(flag: &str, raw: &[String]) -> anyhow::Result<Vec<solve::CacheSpec>> {
    raw.iter()
        .map(|s| solve::CacheSpec::parse(s).map_err(|e| anyhow!("invalid {flag} `{s}`: {e}")))
        .collect()
}

/// `--ssh default` / `--ssh ID` (the agent of `$SSH_AUTH_SOCK`) / `--ssh ID=SOCKET`.
pub(crate) fn ssh_agents(raw: &[String]) -> anyhow::Result<BTreeMap<String, std::path::PathBuf>> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = BTreeMap::new();
    for spec in raw {
        let (id, socket) = match spec.split_once('=') {
            Some((id, path)) => (id, std::path::PathBuf::from(path)),
            None => (
                spec.as_str(),
                std::env::var_os("SSH_AUTH_SOCK")
                    .map(std::path::PathBuf::from)
                    .with_context(|| format!("--ssh `{spec}`: SSH_AUTH_SOCK is not set (start an agent, or give ID=SOCKET)"))?,
            ),
        };
        if id.is_empty() {
            anyhow::bail!("invalid --ssh `{spec}`: expected ID or ID=SOCKET");
        }
        let is_socket = fs_err::metadata(&socket).is_ok_and(|m| m.file_type().is_socket());
        if !is_socket {
            anyhow::bail!(
                "--ssh `{spec}`: `{}` is not an agent's socket (load a key file into one with ssh-add and give its socket)",
                socket.display()
            );
        }
        out.insert(id.to_owned(), socket);
    }
    Ok(out)
}

/// `--build-context NAME=DIR` / `NAME=docker-image://REF`, as buildx takes them (a relative
/// directory is the working directory's).
pub(crate) fn named_contexts(
    raw: &[String],
) -> anyhow::Result<BTreeMap<String, builder_core::solve::NamedContext>> {
    use builder_core::solve::NamedContext;
    let mut out = BTreeMap::new();
    for spec in raw {
        let (name, value) = spec
            .split_once('=')
            .filter(|(n, v)| !n.is_empty() && !v.is_empty())
            .with_context(|| format!("invalid --build-context `{spec}`: expected NAME=VALUE"))?;
        let context = if let Some(reference) = value.strip_prefix("docker-image://") {
            reference
                .parse::<builder_core::registry::Reference>()
                .with_context(|| format!("invalid --build-context `{spec}`"))?;
            NamedContext::Image(reference.to_owned())
        } else if solve::is_git_url(value) {
            solve::GitUrl::parse(value)
                .with_context(|| format!("invalid --build-context `{spec}`"))?;
            NamedContext::Git(value.to_owned())
        } else if let Some((scheme, _)) = value.split_once("://") {
            anyhow::bail!(
                "invalid --build-context `{spec}`: `{scheme}://` contexts are not supported (a directory, a git URL or docker-image://REF)"
            );
        } else {
            let dir = std::path::Path::new(value);
            if !dir.is_dir() {
                anyhow::bail!("--build-context `{spec}`: `{value}` is not a directory");
            }
            NamedContext::Dir(dir.to_owned())
        };
        if out.insert(name.to_ascii_lowercase(), context).is_some() {
            anyhow::bail!("--build-context `{name}` is given twice");
        }
    }
    Ok(out)
}

/// `--secret id=ID,src=PATH` (or `source=`) / `id=ID,env=VAR`, as docker takes them.
pub(crate) fn secrets(raw: &[String]) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for spec in raw {
        let (mut id, mut src, mut var) = (None, None, None);
        for field in spec.split(',') {
            match field.split_once('=') {
                Some(("id", v)) => id = Some(v.to_owned()),
                Some(("src" | "source", v)) => src = Some(v.to_owned()),
                Some(("env", v)) => var = Some(v.to_owned()),
                Some(("type", _)) => {}
                _ => anyhow::bail!(
                    "invalid --secret `{spec}`: expected id=ID,src=PATH or id=ID,env=VAR"
                ),
            }
        }
        let id = id
            .or_else(|| var.clone())
            .with_context(|| format!("invalid --secret `{spec}`: no id"))?;
        let value = match (src, var) {
            (Some(path), _) => fs_err::read(&path)?,
            (None, Some(v)) => std::env::var(&v)
                .with_context(|| format!("--secret `{spec}`: {v} is not set"))?
                .into_bytes(),
            (None, None) => std::env::var(&id)
                .with_context(|| format!("--secret `{spec}`: give src= or env="))?
                .into_bytes(),
        };
        out.insert(id, value);
    }
    Ok(out)
}
