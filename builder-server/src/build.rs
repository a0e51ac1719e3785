//! One build as the service runs it, for the streaming route (`POST /v1/build`) and for jobs
//! (`POST /v1/builds`) alike: its options read from the query ([`params`]), its context
//! received and checked ([`receive`], [`setup`]), then built ([`execute`]) with the server's
//! limits, its events handed to whoever follows it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::body::{Body, Bytes};
use builder_core::cancel::Cancel;
use builder_core::dockerfile::{self, CheckOptions};
use builder_core::exec::Network;
use builder_core::solve::{self, BuildRequest, CacheSpec, Event};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::state::AppState;

/// The build's flags, from the query string.
#[derive(Debug, Default)]
pub(crate) struct Params {
    pub(crate) tags: Vec<String>,
    pub(crate) dockerfile: Option<String>,
    pub(crate) build_args: BTreeMap<String, String>,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) target: Option<String>,
    pub(crate) no_cache: bool,
    pub(crate) pull: bool,
    pub(crate) push: bool,
    pub(crate) platform: Option<String>,
    pub(crate) cache_from: Vec<CacheSpec>,
    pub(crate) cache_to: Vec<CacheSpec>,
    pub(crate) network: Network,
    pub(crate) limits: builder_core::exec::Limits,
    pub(crate) ulimits: Vec<builder_core::exec::Ulimit>,
    /// From [`SECRETS_HEADER`], never the query (which proxies log).
    pub(crate) secrets: Secrets,
    /// One layer on top of the base (docker's `--squash`).
    pub(crate) squash: bool,
    /// The query's pairs as given (for the record).
    pub(crate) raw: Vec<(String, String)>,
}

/// A build's secret values; `Debug` shows their ids only.
#[derive(Default)]
pub(crate) struct Secrets(BTreeMap<String, Vec<u8>>);

impl Secrets {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

fn flag(v: &str) -> Result<bool, ApiError> {
    match v {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(ApiError::bad_request(format!(
            "`{v}` is not a boolean (1, 0, true, false)"
        ))),
    }
}

pub(crate) fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        p.raw.push((k.clone().into_owned(), v.clone().into_owned()));
        let pair = |what: &str| {
            v.split_once('=')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| {
                    ApiError::bad_request(format!("`{what}` wants KEY=VALUE, got `{v}`"))
                })
        };
        let cache = |what: &str| {
            CacheSpec::parse(&v).map_err(|e| ApiError::bad_request(format!("`{what}={v}`: {e}")))
        };
        match k.as_ref() {
            "t" | "tag" => p.tags.push(solve::tag_name(&v)),
            "f" | "dockerfile" => p.dockerfile = Some(v.into_owned()),
            "buildarg" | "build-arg" => {
                let (a, b) = pair("buildarg")?;
                p.build_args.insert(a, b);
            }
            "label" => {
                let (a, b) = pair("label")?;
                p.labels.insert(a, b);
            }
            "target" => p.target = Some(v.into_owned()),
            "memory" => {
                p.limits.memory = Some(
                    builder_core::exec::parse_bytes(&v)
                        .map_err(|e| ApiError::bad_request(format!("memory: {e}")))?,
                );
            }
            "pidslimit" | "pids-limit" => {
                p.limits.pids = Some(v.parse().map_err(|_| {
                    ApiError::bad_request(format!("pidslimit `{v}` is not a number"))
                })?);
            }
            "cpus" => {
                p.limits.cpus = Some(
                    v.parse()
                        .ok()
                        .filter(|c: &f64| c.is_finite() && *c > 0.0)
                        .ok_or_else(|| {
                            ApiError::bad_request(format!("cpus `{v}` is not a positive number"))
                        })?,
                );
            }
            "ulimit" => p.ulimits.push(
                v.parse()
                    .map_err(|e| ApiError::bad_request(format!("ulimit: {e}")))?,
            ),
            "nocache" | "no-cache" => p.no_cache = flag(&v)?,
            "pull" => p.pull = flag(&v)?,
            "push" => p.push = flag(&v)?,
            "platform" => p.platform = Some(v.into_owned()),
            "cachefrom" | "cache-from" => p.cache_from.push(cache("cachefrom")?),
            "cacheto" | "cache-to" => p.cache_to.push(cache("cacheto")?),
            "network" => {
                p.network = match v.as_ref() {
                    "none" => Network::None,
                    "default" => Network::Private,
                    "host" => Network::Host,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "network `{other}`: default, host or none"
                        )));
                    }
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter `{other}`"
                )));
            }
        }
    }
    if p.push && p.tags.is_empty() {
        return Err(ApiError::bad_request("push needs at least one `t`"));
    }
    Ok(p)
}

impl Params {
    /// What a build record keeps of the options: everything but the secrets' values.
    pub(crate) fn record(&self) -> serde_json::Value {
        // Cache specs and ulimits as they were asked for.
        let asked = |keys: &[&str]| -> Vec<&str> {
            self.raw
                .iter()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .map(|(_, v)| v.as_str())
                .collect()
        };
        serde_json::json!({
            "tags": self.tags,
            "dockerfile": self.dockerfile,
            "build_args": self.build_args,
            "labels": self.labels,
            "target": self.target,
            "no_cache": self.no_cache,
            "pull": self.pull,
            "push": self.push,
            "platform": self.platform,
            "cache_from": asked(&["cachefrom", "cache-from"]),
            "cache_to": asked(&["cacheto", "cache-to"]),
            "network": match self.network {
                Network::None => "none",
                Network::Host => "host",
                Network::Private => "default",
            },
            "memory": self.limits.memory,
            "pids_limit": self.limits.pids,
            "cpus": self.limits.cpus,
            "ulimits": asked(&["ulimit"]),
            "secrets": self.secrets.0.keys().collect::<Vec<_>>(),
        })
    }
}

/// The request body as a blocking `Read`, fed chunk by chunk from the async side.
pub(crate) struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(c)) => self.chunk = c,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        self.chunk = self.chunk.slice(n..);
        Ok(n)
    }
}

/// A context being received: the body as a blocking reader, and whether it passed the limit.
pub(crate) struct Receiving {
    pub(crate) reader: ChannelReader,
    over_limit: Arc<AtomicBool>,
    stalled: Arc<AtomicBool>,
    bytes: Arc<std::sync::atomic::AtomicU64>,
    /// The upload slot, given back when the context is unpacked.
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Receiving {
    /// How many bytes of the body have come so far.
    pub(crate) fn bytes(&self) -> Arc<std::sync::atomic::AtomicU64> {
        Arc::clone(&self.bytes)
    }
}

/// Starts reading `body` (chunk by chunk, bounded: a slow disk slows the upload), counted for
/// `tenant`: past `--max-context-size`, or silent for `--body-timeout`, the reader gets an error
/// and reading stops.
pub(crate) async fn receive(state: &AppState, tenant: &str, body: Body) -> Receiving {
    // One of `--max-uploads`, held until the context is unpacked and checked (see `setup`).
    let permit = Arc::clone(&state.uploads).acquire_owned().await.ok();
    let (tx, rx) = mpsc::channel(16);
    let over_limit = Arc::new(AtomicBool::new(false));
    let stalled = Arc::new(AtomicBool::new(false));
    let bytes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let (over, stall, count) = (
        Arc::clone(&over_limit),
        Arc::clone(&stalled),
        Arc::clone(&bytes),
    );
    let limit = state.max_context_size;
    let idle = state.body_idle;
    let metrics = Arc::clone(&state.metrics);
    let tenant = tenant.to_owned();
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut seen: u64 = 0;
        loop {
            let item = match tokio::time::timeout(idle, stream.next()).await {
                Err(_) => {
                    stall.store(true, Ordering::SeqCst);
                    Err(std::io::Error::other("the body stalled"))
                }
                Ok(None) => break,
                Ok(Some(chunk)) => chunk.map_err(std::io::Error::other).and_then(|c| {
                    seen = seen.saturating_add(c.len() as u64);
                    count.store(seen, Ordering::SeqCst);
                    metrics.received(&tenant, c.len() as u64);
                    if seen > limit {
                        over.store(true, Ordering::SeqCst);
                        return Err(std::io::Error::other("the context is too large"));
                    }
                    Ok(c)
                }),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    Receiving {
        reader: ChannelReader {
            rx,
            chunk: Bytes::new(),
        },
        over_limit,
        stalled,
        bytes,
        _permit: permit,
    }
}

/// A checked context, ready to build.
pub(crate) struct Ready {
    /// The unpacked context (removed when dropped).
    pub(crate) context: builder_core::store::WorkDir,
    pub(crate) dockerfile: KeptDockerfile,
    pub(crate) platform: Option<builder_core::registry::Platform>,
}

/// Unpacks the context and checks the Dockerfile: what is wrong here is a 4xx before anything
/// is built or queued.
pub(crate) fn setup(state: &AppState, params: &Params, body: Receiving) -> Result<Ready, ApiError> {
    let Receiving {
        reader,
        over_limit,
        stalled,
        ..
    } = body;
    let why = |e: solve::Error| body_error(state, e, &over_limit, &stalled);
    setup_from(state, params, reader, &why)
}

/// What a context that failed to arrive or unpack gets: 413 past the limit, 408 when it
/// stalled, else a 400 naming the problem.
fn body_error(
    state: &AppState,
    e: solve::Error,
    over_limit: &AtomicBool,
    stalled: &AtomicBool,
) -> ApiError {
    if over_limit.load(Ordering::SeqCst) {
        return too_large(state.max_context_size);
    }
    if stalled.load(Ordering::SeqCst) {
        let mut err = ApiError::bad_request(format!(
            "the request body sent nothing for {} s",
            state.body_idle.as_secs()
        ));
        err.status = axum::http::StatusCode::REQUEST_TIMEOUT;
        return err;
    }
    let mut err = ApiError::from(e);
    err.status = axum::http::StatusCode::BAD_REQUEST;
    err.error = format!("the build context is not a readable tar: {}", err.error);
    err
}

impl Receiving {
    /// The whole body into a file of the store's scratch space (a fleet keeps the posted
    /// context to store it in the registry), with the limits `setup` applies.
    pub(crate) fn into_file(self, state: &AppState) -> Result<tempfile::NamedTempFile, ApiError> {
        let Receiving {
            mut reader,
            over_limit,
            stalled,
            ..
        } = self;
        let mut file = tempfile::Builder::new()
            .prefix("posted-context-")
            .tempfile_in(state.store.root().join("tmp"))
            .map_err(|e| ApiError::internal(format!("cannot keep the context: {e}")))?;
        std::io::copy(&mut reader, &mut file).map_err(|e| {
            body_error(
                state,
                solve::Error::Io {
                    path: "<request body>".into(),
                    source: e,
                },
                &over_limit,
                &stalled,
            )
        })?;
        Ok(file)
    }
}

/// [`setup`] from any reader of the context (`why` says what its failure means).
pub(crate) fn setup_from(
    state: &AppState,
    params: &Params,
    reader: impl Read,
    why: &dyn Fn(solve::Error) -> ApiError,
) -> Result<Ready, ApiError> {
    if params.network == Network::Host && !state.allow_network_host {
        return Err(ApiError::bad_request(
            "network `host` is not allowed: start rbuild-server with --allow-network-host",
        ));
    }
    let platform = params
        .platform
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("platform: {e}")))?;
    let context = solve::unpack_context(&state.store, reader).map_err(why)?;
    let rel = params.dockerfile.as_deref().unwrap_or("Dockerfile");
    let cleaned = builder_core::context::clean_path(rel);
    if cleaned.starts_with("..") || cleaned.starts_with('/') {
        return Err(ApiError::bad_request(format!(
            "dockerfile `{rel}` leaves the context"
        )));
    }
    let path = context.path().join(&cleaned);
    // Read inside the context: a link out of it, a device or an endless file is refused.
    let src = builder_core::context::read_control_file(context.path(), &path).map_err(|e| {
        let mut err = ApiError::bad_request(format!("no Dockerfile `{rel}` in the context"));
        err.causes = crate::error::causes(&e);
        err
    })?;
    // A Dockerfile from outside the context, put in by the client as `.dockerfile.<random>`
    // (docker's CLI does it; so does `rbuild build --host`): read, then removed, so COPY never
    // sees it, as docker's builder removes it.
    let dockerfile = if cleaned.starts_with(".dockerfile.") && !cleaned.contains('/') {
        let keep = keep_outside(&state.store, &src)?;
        fs_err::remove_file(&path).map_err(|e| ApiError::internal(e.to_string()))?;
        keep
    } else {
        KeptDockerfile::InContext(path)
    };
    let opts = CheckOptions {
        build_args: params.build_args.clone(),
        ..CheckOptions::default()
    };
    if let Err(e) = dockerfile::parse_and_check(&src, &opts) {
        let mut err = ApiError::bad_request(format!("invalid Dockerfile `{rel}`"));
        err.causes = vec![e.to_string()];
        err.line = Some(e.span.line);
        return Err(err);
    }
    Ok(Ready {
        context,
        dockerfile,
        platform,
    })
}

/// Where a ready build's Dockerfile is.
pub(crate) enum KeptDockerfile {
    /// In the context.
    InContext(PathBuf),
    /// Taken out of the context into a file of its own (removed when dropped).
    Outside(tempfile::TempPath),
}

impl KeptDockerfile {
    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            Self::InContext(p) => p,
            Self::Outside(t) => t,
        }
    }
}

/// Keeps `src` in a file of the store's scratch space, outside the context.
fn keep_outside(store: &solve::Store, src: &str) -> Result<KeptDockerfile, ApiError> {
    let mut tmp = tempfile::Builder::new()
        .prefix("Dockerfile-posted-")
        .tempfile_in(store.root().join("tmp"))
        .map_err(|e| ApiError::internal(format!("cannot keep the Dockerfile: {e}")))?;
    std::io::Write::write_all(&mut tmp, src.as_bytes())
        .map_err(|e| ApiError::internal(format!("cannot keep the Dockerfile: {e}")))?;
    Ok(KeptDockerfile::Outside(tmp.into_temp_path()))
}

/// How a build ended: its final state and its last event (`result` or `error`).
pub(crate) struct Ended {
    /// `succeeded`, `failed`, `cancelled` or `interrupted`.
    pub(crate) state: &'static str,
    pub(crate) last: serde_json::Value,
}

/// Builds `ready`, handing each event (as the JSON the CLI's rawjson prints, with `time`) to
/// `emit`; the last is in [`Ended`], not emitted. `cancel` stops it (a `DELETE`, a client gone);
/// so do `--build-timeout` and a shutdown past its grace, each saying so.
pub(crate) fn execute(
    state: &AppState,
    params: &Params,
    ready: &Ready,
    cancel: &Cancel,
    tenant: &str,
    emit: &mut (dyn FnMut(serde_json::Value) + Send),
) -> Ended {
    let start = Instant::now();
    let mut counted = state.metrics.start(tenant);
    // A shutdown whose grace has passed cancels the build (while `follows` is kept).
    let follows = Arc::new(cancel.clone());
    state.shutdown.wake_on_cancel(Arc::downgrade(&follows) as _);
    let req = BuildRequest {
        context: ready.context.path().to_owned(),
        dockerfile: Some(ready.dockerfile.path().to_owned()),
        build_args: params.build_args.clone(),
        target: params.target.clone(),
        labels: params.labels.clone(),
        no_cache: params.no_cache,
        tags: params.tags.clone(),
        pull: params.pull,
        platform: ready.platform.clone(),
        registry: state.registry.clone(),
        cache_from: params.cache_from.clone(),
        cache_to: params.cache_to.clone(),
        network: params.network,
        allow_network_host: state.allow_network_host,
        isolation: state.isolation,
        limits: capped(&params.limits, &state.limits),
        ulimits: params.ulimits.clone(),
        secrets: params.secrets.0.clone(),
        cancel: cancel.clone(),
        squash: params.squash,
        ..BuildRequest::default()
    };
    let mut on_event = |e: &Event| {
        if let Ok(serde_json::Value::Object(mut obj)) = serde_json::to_value(e) {
            obj.insert(
                "time".into(),
                serde_json::json!(start.elapsed().as_secs_f64()),
            );
            emit(serde_json::Value::Object(obj));
        }
    };
    // Past `--build-timeout`, the build is cancelled and says why.
    let timed_out = Arc::new(AtomicBool::new(false));
    let timer = state.build_timeout.map(|limit| {
        let (cancel, timed_out) = (cancel.clone(), Arc::clone(&timed_out));
        tokio::runtime::Handle::current().spawn(async move {
            tokio::time::sleep(limit).await;
            timed_out.store(true, Ordering::SeqCst);
            cancel.cancel();
        })
    });
    let result = state.builder.build(&req, &mut on_event);
    if let Some(t) = timer {
        t.abort();
    }
    drop(follows);
    let timed_out = timed_out.load(Ordering::SeqCst);
    let (state_name, last) = match result {
        Ok(out) => {
            let pushed = if params.push {
                push(state, &out.image, &params.tags)
            } else {
                Ok(Vec::new())
            };
            counted.ended("succeeded", out.steps, out.cached);
            match pushed {
                Ok(digests) => (
                    "succeeded",
                    serde_json::json!({
                        "type": "result",
                        "time": start.elapsed().as_secs_f64(),
                        "image_id": out.image.config_digest.to_string(),
                        "manifest_digest": out.image.manifest_digest.to_string(),
                        "size": out.image.size(&state.store).ok(),
                        "names": params.tags,
                        "steps": out.steps,
                        "cached": out.cached,
                        "misses": out.misses,
                        "pushed": digests,
                    }),
                ),
                Err(e) => (
                    "failed",
                    with_type(
                        "error",
                        ApiError::internal(format!("the image was built but not pushed: {e}"))
                            .body(),
                    ),
                ),
            }
        }
        Err(solve::Error::Cancelled) if timed_out => {
            let limit = state.build_timeout.unwrap_or_default().as_secs();
            let mut err = ApiError::bad_request(format!(
                "the build took longer than this server allows ({limit} s, --build-timeout)"
            ));
            err.status = axum::http::StatusCode::REQUEST_TIMEOUT;
            ("failed", with_type("error", err.body()))
        }
        Err(solve::Error::Cancelled) if state.shutdown.is_cancelled() => (
            "interrupted",
            with_type(
                "error",
                ApiError::internal("interrupted: the server shut down before the build finished")
                    .body(),
            ),
        ),
        Err(solve::Error::Cancelled) => (
            "cancelled",
            with_type(
                "error",
                ApiError::internal("the build was cancelled").body(),
            ),
        ),
        Err(e) => ("failed", with_type("error", ApiError::from(e).body())),
    };
    if state_name != "succeeded" {
        counted.ended(state_name, 0, 0);
    }
    Ended {
        state: state_name,
        last,
    }
}

/// How a streamed build's events are written to its client.
pub(crate) trait Render: Send + 'static {
    /// The bytes for one event (none to leave it out).
    fn event(&mut self, e: &serde_json::Value) -> Vec<Bytes>;
    /// The bytes that end the stream.
    fn end(&mut self, ended: &Ended) -> Vec<Bytes>;
}

/// Sets the build up (a 4xx before anything streams), then builds it, streaming what `render`
/// makes of its events as `content_type`. The client going away cancels the build at once,
/// even while a RUN prints nothing.
pub(crate) async fn stream(
    state: AppState,
    params: Params,
    receiving: Receiving,
    tenant: String,
    content_type: &'static str,
    mut render: impl Render,
) -> Result<axum::response::Response, ApiError> {
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let (events_tx, events_rx) = mpsc::channel::<Bytes>(256);
    tokio::task::spawn_blocking(move || {
        let ready = match setup(&state, &params, receiving) {
            Ok(r) => {
                let _ = ready_tx.send(Ok(()));
                r
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        let cancel = Cancel::new();
        let watcher = {
            let (events, cancel) = (events_tx.clone(), cancel.clone());
            tokio::runtime::Handle::current().spawn(async move {
                events.closed().await;
                cancel.cancel();
            })
        };
        let ended = execute(&state, &params, &ready, &cancel, &tenant, &mut |e| {
            for b in render.event(&e) {
                if events_tx.blocking_send(b).is_err() {
                    cancel.cancel();
                }
            }
        });
        watcher.abort();
        for b in render.end(&ended) {
            let _ = events_tx.blocking_send(b);
        }
    });
    ready_rx
        .await
        .map_err(|_| ApiError::internal("the build stopped before reading the context"))??;
    let body = futures_util::stream::unfold(events_rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
    });
    axum::response::Response::builder()
        .header(axum::http::header::CONTENT_TYPE, content_type)
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// A build's RUN limits, none above the server's: each limit is the lower of the two (the
/// server's when the build asks for none).
fn capped(
    asked: &builder_core::exec::Limits,
    most: &builder_core::exec::Limits,
) -> builder_core::exec::Limits {
    fn lower<T: PartialOrd + Copy>(a: Option<T>, b: Option<T>) -> Option<T> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if a < b { a } else { b }),
            (a, b) => a.or(b),
        }
    }
    builder_core::exec::Limits {
        memory: lower(asked.memory, most.memory),
        pids: lower(asked.pids, most.pids),
        cpus: lower(asked.cpus, most.cpus),
    }
}

/// Pushes the built image under each tag; gives the manifest digests.
fn push(state: &AppState, image: &solve::Image, tags: &[String]) -> Result<Vec<String>, String> {
    let mut refs = Vec::new();
    for t in tags {
        refs.push(
            t.parse::<builder_core::registry::Reference>()
                .map_err(|e| e.to_string())?,
        );
    }
    let pushed = builder_core::registry::push(
        &state.store,
        image,
        &refs,
        &state.registry,
        &builder_core::registry::PushOptions::default(),
    )
    .map_err(|e| e.to_string())?;
    Ok(pushed.iter().map(|p| p.digest.to_string()).collect())
}

pub(crate) fn with_type(kind: &str, mut body: serde_json::Value) -> serde_json::Value {
    body["type"] = kind.into();
    body
}

/// A context past `--max-context-size`.
pub(crate) fn too_large(limit: u64) -> ApiError {
    let mut err = ApiError::bad_request(format!(
        "the build context is larger than this server takes ({limit} bytes, --max-context-size)"
    ));
    err.status = axum::http::StatusCode::PAYLOAD_TOO_LARGE;
    err
}

/// The header that carries a build's secrets: a JSON object of id → value, a string (its
/// UTF-8 bytes) or `{"base64": "…"}`. Secrets never reach an event, a log, a record or a key.
pub(crate) const SECRETS_HEADER: &str = "x-rbuild-secrets";

/// The secrets of [`SECRETS_HEADER`].
pub(crate) fn secrets(headers: &axum::http::HeaderMap) -> Result<Secrets, ApiError> {
    use base64::Engine as _;
    let Some(value) = headers.get(SECRETS_HEADER) else {
        return Ok(Secrets::default());
    };
    let bad = |why: &str| ApiError::bad_request(format!("header `{SECRETS_HEADER}`: {why}"));
    let map: BTreeMap<String, serde_json::Value> = serde_json::from_slice(value.as_bytes())
        .map_err(|_| bad("not a JSON object of id → value"))?;
    let mut out = BTreeMap::new();
    for (id, v) in map {
        let bytes = match &v {
            serde_json::Value::String(s) => s.clone().into_bytes(),
            serde_json::Value::Object(o) => match o.get("base64").and_then(|b| b.as_str()) {
                Some(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|_| bad(&format!("secret `{id}`: not base64")))?,
                None => {
                    return Err(bad(&format!(
                        "secret `{id}`: a string or {{\"base64\": …}}"
                    )));
                }
            },
            _ => {
                return Err(bad(&format!(
                    "secret `{id}`: a string or {{\"base64\": …}}"
                )));
            }
        };
        out.insert(id, bytes);
    }
    Ok(Secrets(out))
}

/// A blocking `Write` into a response body, 64 KiB at a time (never the whole of it held).
pub(crate) struct BodyWriter {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for BodyWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 64 << 10 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

/// A response body that `write` fills on a blocking thread (an image archive): streamed as it is
/// written; an error ends the body with an error, so the client sees it cut short.
pub(crate) fn written_body(
    write: impl FnOnce(&mut BodyWriter) -> Result<(), String> + Send + 'static,
) -> Body {
    let (tx, rx) = mpsc::channel(8);
    tokio::task::spawn_blocking(move || {
        let mut w = BodyWriter {
            tx: tx.clone(),
            buf: Vec::new(),
        };
        let done = write(&mut w)
            .map_err(std::io::Error::other)
            .and_then(|()| std::io::Write::flush(&mut w));
        if let Err(e) = done {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (b, rx))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_builds_limits_never_pass_the_servers() {
        use builder_core::exec::Limits;
        let most = Limits {
            memory: Some(256 << 20),
            pids: Some(100),
            cpus: None,
        };
        let asked = Limits {
            memory: Some(1 << 30),
            pids: Some(10),
            cpus: Some(1.5),
        };
        let got = capped(&asked, &most);
        assert_eq!(
            (got.memory, got.pids, got.cpus),
            (Some(256 << 20), Some(10), Some(1.5))
        );
        let got = capped(&Limits::default(), &most);
        assert_eq!((got.memory, got.pids), (Some(256 << 20), Some(100)));
    }

    #[test]
    fn query_parameters_read_as_flags() {
        let p = params(Some(
            "t=app:v1&t=app&buildarg=A%3D1&buildarg=B=x%20y&target=build&nocache=1&pull=true&network=none&label=k=v",
        ))
        .unwrap();
        assert_eq!(p.tags, ["app:v1", "app:latest"]);
        assert_eq!(p.build_args["A"], "1");
        assert_eq!(p.build_args["B"], "x y");
        assert_eq!(p.target.as_deref(), Some("build"));
        assert!(p.no_cache && p.pull && p.network == Network::None && !p.push);
        assert_eq!(p.labels["k"], "v");
        for (q, says) in [
            ("buildarg=A", "KEY=VALUE"),
            ("nocache=maybe", "boolean"),
            ("frobnicate=1", "unknown parameter"),
            ("push=1", "needs at least one"),
            ("cacheto=type=gha", "unsupported cache type"),
        ] {
            let e = params(Some(q)).unwrap_err();
            assert!(e.error.contains(says), "{q}: {}", e.error);
        }
    }
}
