//! `rbuild build --host URL`: the build runs on `rbuild-server`. The context is walked here
//! (`.dockerignore` applied, as a local build reads it), streamed as a zstd tar to
//! `POST /v1/builds`, the build's events are followed over `/events` into the same progress view
//! as a local build, and the image is then loaded into the local store (or left on the service /
//! pushed with `--push`).
//!
//! Several `--host`s (or a name with several addresses) are replicas: the client orders them by
//! rendezvous hash of the context's absolute path and the Dockerfile (buildx's sticky load
//! balancing: the same context goes to the same replica, whose cache is warm), and moves to the
//! next on a `429` or a connection error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, Read, Write};
use std::net::ToSocketAddrs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use builder_core::solve::{Event, Store, tag_name};
use sha2::Digest as _;

use crate::args::BuildOptions;
use crate::progress::{Mode, Progress};
use crate::render;

/// The name the Dockerfile gets in the posted context when it lives outside it (as docker's
/// `.dockerfile.<random>`); the server removes it before the build sees the context.
const OUTSIDE_DOCKERFILE: &str = ".dockerfile.rbuild-remote";

/// One replica to try: its base URL, and the address to reach it at when its name has several.
#[derive(Debug, Clone)]
struct Replica {
    base: String,
    pin: Option<(String, std::net::SocketAddr)>,
}

impl Replica {
    fn shown(&self) -> String {
        match &self.pin {
            Some((_, addr)) => format!("{} ({addr})", self.base),
            None => self.base.clone(),
        }
    }
}

/// The replicas behind `hosts`: each URL, or one per address when its name resolves to several.
fn replicas(hosts: &[String]) -> anyhow::Result<Vec<Replica>> {
    let mut out = Vec::new();
    for h in hosts {
        let base = if h.contains("://") {
            h.trim_end_matches('/').to_owned()
        } else {
            format!("http://{}", h.trim_end_matches('/'))
        };
        let url =
            reqwest::Url::parse(&base).with_context(|| format!("--host `{h}` is not a URL"))?;
        let name = url.host_str().unwrap_or_default().to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        let addrs: Vec<std::net::SocketAddr> = (name.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .unwrap_or_default();
        if addrs.len() > 1 {
            for a in addrs {
                out.push(Replica {
                    base: base.clone(),
                    pin: Some((name.clone(), a)),
                });
            }
        } else {
            out.push(Replica { base, pin: None });
        }
    }
    Ok(out)
}

/// `replicas` in the order this context tries them: highest rendezvous score first, the score
/// being the hash of the context's key and the replica.
fn ordered(mut replicas: Vec<Replica>, key: &str) -> Vec<Replica> {
    replicas.sort_by_cached_key(|r| {
        let score: [u8; 32] = sha2::Sha256::digest(format!("{key}\n{}", r.shown())).into();
        std::cmp::Reverse(score)
    });
    replicas
}

/// A blocking reader of what a writer thread sends (the tar, as it is made).
struct Pipe {
    rx: std::sync::mpsc::Receiver<std::io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    at: usize,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(c)) => {
                    self.chunk = c;
                    self.at = 0;
                }
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

struct PipeWriter(std::sync::mpsc::SyncSender<std::io::Result<Vec<u8>>>);

impl Write for PipeWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0
            .send(Ok(data.to_vec()))
            .map_err(|_| std::io::Error::other("the upload stopped"))?;
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What goes into the posted context.
struct Upload {
    context: PathBuf,
    /// The Dockerfile, when it is outside the context (sent as [`OUTSIDE_DOCKERFILE`]).
    outside: Option<PathBuf>,
    /// The Dockerfile's path in the context (`f=`).
    name: String,
}

/// Streams the context as a zstd tar: what `.dockerignore` leaves, plus the Dockerfile and the
/// ignore file themselves (the server reads them), written on a thread as it is read.
fn context_stream(up: &Upload, dockerfile: &Path) -> anyhow::Result<Pipe> {
    let ctx = builder_core::context::Context::open(&up.context, Some(dockerfile))
        .with_context(|| format!("cannot read the build context `{}`", up.context.display()))?;
    let entries = ctx.walk("").context("cannot walk the build context")?;
    let root = ctx.root().to_owned();
    let mut always: Vec<String> = vec![".dockerignore".into()];
    if up.outside.is_none() {
        always.push(up.name.clone());
    }
    let outside = up.outside.clone();
    let (tx, rx) = std::sync::mpsc::sync_channel(16);
    std::thread::spawn(move || {
        let fail = tx.clone();
        let write = move || -> std::io::Result<()> {
            let zstd = zstd::Encoder::new(PipeWriter(tx), 3)?.auto_finish();
            let mut tar = tar::Builder::new(std::io::BufWriter::with_capacity(1 << 20, zstd));
            tar.follow_symlinks(false);
            let mut sent = std::collections::BTreeSet::new();
            for e in entries.iter().filter(|e| !e.rel.is_empty()) {
                tar.append_path_with_name(&e.path, &e.rel)?;
                sent.insert(e.rel.clone());
            }
            for rel in always {
                let path = root.join(&rel);
                if !sent.contains(&rel) && path.is_file() {
                    tar.append_path_with_name(&path, &rel)?;
                }
            }
            if let Some(path) = outside {
                tar.append_path_with_name(&path, OUTSIDE_DOCKERFILE)?;
            }
            tar.into_inner()?.flush()
        };
        if let Err(e) = write() {
            let _ = fail.send(Err(e));
        }
    });
    Ok(Pipe {
        rx,
        chunk: Vec::new(),
        at: 0,
    })
}

/// The build's options as the service's query.
fn query(args: &BuildOptions, dockerfile_name: &str) -> anyhow::Result<String> {
    if !args.ulimits.is_empty() {
        bail!("--ulimit is not sent to a remote build yet; leave it out with --host");
    }
    let mut q = form_urlencoded::Serializer::new(String::new());
    for t in &args.tags {
        q.append_pair("t", &tag_name(t));
    }
    q.append_pair("f", dockerfile_name);
    for (k, v) in super::build_args(&args.build_args) {
        q.append_pair("buildarg", &format!("{k}={v}"));
    }
    for l in &args.labels {
        let label = if l.contains('=') {
            l.clone()
        } else {
            format!("{l}=")
        };
        q.append_pair("label", &label);
    }
    if let Some(t) = &args.target {
        q.append_pair("target", t);
    }
    for (flag, on) in [
        ("nocache", args.no_cache),
        ("pull", args.pull),
        ("push", args.push),
    ] {
        if on {
            q.append_pair(flag, "1");
        }
    }
    if let Some(p) = &args.platform {
        q.append_pair("platform", p);
    }
    for c in &args.cache_from {
        q.append_pair("cachefrom", c);
    }
    for c in &args.cache_to {
        q.append_pair("cacheto", c);
    }
    q.append_pair("network", &args.network);
    if let Some(m) = args.memory {
        q.append_pair("memory", &m.to_string());
    }
    if let Some(p) = args.pids_limit {
        q.append_pair("pidslimit", &p.to_string());
    }
    if let Some(c) = args.cpus {
        q.append_pair("cpus", &c.to_string());
    }
    Ok(q.finish())
}

/// The `X-Rbuild-Secrets` header of `--secret`s (values as base64, never in the query).
fn secrets_header(raw: &[String]) -> anyhow::Result<Option<String>> {
    use base64::Engine as _;
    let secrets = super::build::secrets(raw)?;
    if secrets.is_empty() {
        return Ok(None);
    }
    let map: BTreeMap<String, serde_json::Value> = secrets
        .into_iter()
        .map(|(id, v)| {
            let b64 = base64::engine::general_purpose::STANDARD.encode(v);
            (id, serde_json::json!({ "base64": b64 }))
        })
        .collect();
    Ok(Some(serde_json::to_string(&map)?))
}

/// A remote error, as the service's JSON says it.
#[derive(Debug)]
struct RemoteError(serde_json::Value);

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            self.0["error"]
                .as_str()
                .unwrap_or("the remote build failed"),
        )?;
        if let Some(causes) = self.0["causes"].as_array() {
            for c in causes.iter().filter_map(|c| c.as_str()) {
                write!(f, ": {c}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for RemoteError {}

/// The error `body` says, with a code frame when it names a line of the local Dockerfile.
fn remote_error(body: serde_json::Value, dockerfile: &Path) -> anyhow::Error {
    let Some(line) = body["location"]["line"].as_u64() else {
        return anyhow!(RemoteError(body));
    };
    let src = fs_err::read_to_string(dockerfile).unwrap_or_default();
    let line = usize::try_from(line).unwrap_or(0);
    let span = super::build::line_span(&src, line);
    let label = body["causes"][0].as_str().unwrap_or_default().to_owned();
    anyhow!(render::DockerfileError {
        error: Box::new(RemoteError(body)),
        path: dockerfile.display().to_string(),
        src,
        span,
        label,
        hint: None,
    })
}

fn client(r: &Replica) -> anyhow::Result<reqwest::blocking::Client> {
    let mut b = reqwest::blocking::Client::builder().timeout(None);
    if let Some((name, addr)) = &r.pin {
        b = b.resolve(name, *addr);
    }
    Ok(b.build()?)
}

fn with_token(
    req: reqwest::blocking::RequestBuilder,
    token: Option<&str>,
) -> reqwest::blocking::RequestBuilder {
    match token {
        Some(t) => req.bearer_auth(t),
        None => req,
    }
}

/// Posts the context to the first replica that takes it: the replica, its client, the build id.
fn post(
    args: &BuildOptions,
    up: &Upload,
    dockerfile: &Path,
    token: Option<&str>,
) -> anyhow::Result<(Replica, reqwest::blocking::Client, String)> {
    let abs = std::path::absolute(&up.context).unwrap_or_else(|_| up.context.clone());
    let key = format!("{}\n{}", abs.display(), up.name);
    let query = query(args, &up.name)?;
    let secrets = secrets_header(&args.secrets)?;
    let mut tried = Vec::new();
    for r in ordered(replicas(&args.hosts)?, &key) {
        let http = client(&r)?;
        // Asked first, cheaply: whether the replica is up and takes the token (a refusal of the
        // post itself comes before the body is read, which the upload may see only as a reset).
        match with_token(http.get(format!("{}/v1/builds?limit=1", r.base)), token).send() {
            Ok(res) if res.status() == reqwest::StatusCode::UNAUTHORIZED => {
                let body: serde_json::Value = res.json().unwrap_or_default();
                return Err(anyhow!(RemoteError(body)).context(format!(
                    "{} refused the token (set RBUILD_TOKEN to one of its tokens)",
                    r.shown()
                )));
            }
            Ok(_) => {}
            Err(e) => {
                tried.push(format!("{}: {e}", r.shown()));
                continue;
            }
        }
        let body = reqwest::blocking::Body::new(context_stream(up, dockerfile)?);
        let mut req = with_token(http.post(format!("{}/v1/builds?{query}", r.base)), token)
            .header("Content-Type", "application/x-tar")
            .body(body);
        if let Some(s) = &secrets {
            req = req.header("X-Rbuild-Secrets", s);
        }
        match req.send() {
            Ok(res) if res.status() == reqwest::StatusCode::ACCEPTED => {
                let v: serde_json::Value = res.json().context("the service's answer")?;
                let id = v["id"]
                    .as_str()
                    .context("the service gave no build id")?
                    .to_owned();
                return Ok((r, http, id));
            }
            Ok(res) if res.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                tried.push(format!("{}: busy (429)", r.shown()));
            }
            Ok(res) => {
                let status = res.status();
                let body: serde_json::Value = res
                    .json()
                    .unwrap_or_else(|_| serde_json::json!({ "error": format!("HTTP {status}") }));
                return Err(remote_error(body, dockerfile));
            }
            Err(e) => tried.push(format!("{}: {e}", r.shown())),
        }
    }
    bail!("no replica took the build:\n  {}", tried.join("\n  "))
}

/// Follows the build's events into `progress`; gives its last event (`result` or `error`).
fn follow(
    http: &reqwest::blocking::Client,
    r: &Replica,
    id: &str,
    token: Option<&str>,
    progress: &mut Progress,
) -> anyhow::Result<serde_json::Value> {
    let mut after = 0u64;
    // A dropped connection resumes after the last event seen (`Last-Event-ID`).
    for _ in 0..5 {
        let res = with_token(http.get(format!("{}/v1/builds/{id}/events", r.base)), token)
            .header("Last-Event-ID", after.to_string())
            .send()
            .and_then(reqwest::blocking::Response::error_for_status)
            .with_context(|| format!("cannot follow build {id} on {}", r.shown()))?;
        let mut reader = std::io::BufReader::new(res);
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let line = line.trim_end();
            if let Some(n) = line.strip_prefix("id:") {
                after = n.trim().parse().unwrap_or(after);
            } else if let Some(data) = line.strip_prefix("data:") {
                let v: serde_json::Value = serde_json::from_str(data.trim())?;
                match v["type"].as_str() {
                    Some("result" | "error") => return Ok(v),
                    _ => {
                        if let Ok(e) = serde_json::from_value::<Event>(v) {
                            progress.event(&e);
                        }
                    }
                }
            }
        }
    }
    bail!("the events of build {id} ended without a result")
}

/// `rbuild build --host …`.
pub(crate) fn run(store: &Store, args: &BuildOptions) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    if args.context.as_os_str() == "-" || args.file.as_deref() == Some(Path::new("-")) {
        bail!("--host builds a context directory; `-` (standard input) is for local builds");
    }
    if !args.outputs.is_empty() {
        bail!("--output is for local builds; with --host the image is loaded into the local store");
    }
    let token = std::env::var("RBUILD_TOKEN").ok();
    let dockerfile = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let context = fs_err::canonicalize(&args.context)
        .with_context(|| format!("cannot read the build context `{}`", args.context.display()))?;
    let df_abs = fs_err::canonicalize(&dockerfile)
        .with_context(|| format!("cannot read the Dockerfile `{}`", dockerfile.display()))?;
    let up = match df_abs.strip_prefix(&context) {
        Ok(rel) => Upload {
            context: context.clone(),
            outside: None,
            name: rel.to_string_lossy().replace('\\', "/"),
        },
        Err(_) => Upload {
            context: context.clone(),
            outside: Some(df_abs.clone()),
            name: OUTSIDE_DOCKERFILE.to_owned(),
        },
    };
    let (replica, http, id) = post(args, &up, &df_abs, token.as_deref())?;
    let mut progress = Progress::new(Mode::from_args(&args.progress, args.quiet));
    if progress.mode() != Mode::Quiet && progress.mode() != Mode::RawJson {
        render::stderr(&format!("building on {} (build {id})\n", replica.shown()));
    }
    let last = follow(&http, &replica, &id, token.as_deref(), &mut progress);
    progress.finish();
    let last = last?;
    if last["type"] != "result" {
        return Err(remote_error(last, &dockerfile));
    }
    let image_id = last["image_id"].as_str().unwrap_or_default().to_owned();
    let names: Vec<String> = args.tags.iter().map(|t| tag_name(t)).collect();
    if !args.push {
        // Into the local store: the same config, so the same image ID as a local build.
        let res = with_token(
            http.get(format!("{}/v1/builds/{id}/image?format=oci", replica.base)),
            token.as_deref(),
        )
        .send()
        .and_then(reqwest::blocking::Response::error_for_status)
        .context("cannot download the image")?;
        // Held from the first blob to the last tag: a prune in between would take the blobs.
        let _lock = store.lock_shared()?;
        let loaded = builder_core::solve::load_archive(store, res)
            .context("cannot load the built image into the local store")?;
        let (image, _) = loaded
            .into_iter()
            .next()
            .context("the service's archive held no image")?;
        anyhow::ensure!(
            image.config_digest.to_string() == image_id,
            "the downloaded image is {}, the service built {image_id}",
            image.config_digest
        );
        for n in &names {
            store.set_tag(n, image.manifest_digest)?;
        }
    }
    match progress.mode() {
        Mode::Quiet => {}
        Mode::RawJson => progress.json_value(&last),
        Mode::Plain | Mode::Tty => {
            let mut s = format!(
                "built image {image_id} remotely in {:.1}s ({} steps, {} cached)\n",
                started.elapsed().as_secs_f64(),
                last["steps"],
                last["cached"]
            );
            for n in &names {
                let what = if args.push { "pushed" } else { "naming to" };
                let _ = writeln!(s, "{what} {n}");
            }
            render::stderr(&s);
        }
    }
    if args.quiet {
        render::stdout(&format!("{image_id}\n"));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str) -> Replica {
        Replica {
            base: base.into(),
            pin: None,
        }
    }

    #[test]
    fn a_context_goes_to_the_same_replica_and_contexts_spread() {
        let all = vec![r("http://a:1"), r("http://b:1"), r("http://c:1")];
        let first = |key: &str| ordered(all.clone(), key)[0].base.clone();
        assert_eq!(first("/src/app\nDockerfile"), first("/src/app\nDockerfile"));
        let picked: std::collections::BTreeSet<String> = (0..30)
            .map(|i| first(&format!("/src/app{i}\nDockerfile")))
            .collect();
        assert_eq!(picked.len(), 3, "30 contexts over 3 replicas use them all");
        // Removing a replica moves only the contexts that were on it.
        let two = vec![r("http://a:1"), r("http://b:1")];
        for i in 0..30 {
            let key = format!("/src/app{i}\nDockerfile");
            let before = first(&key);
            let after = ordered(two.clone(), &key)[0].base.clone();
            if before != "http://c:1" {
                assert_eq!(before, after, "{key}");
            }
        }
    }
}
