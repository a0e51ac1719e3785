//! `POST /v1/build`: the body is the build context as a tar (plain, gzip or zstd), streamed to
//! the unpacker as it arrives; the query holds what `rbuild build` takes as flags (`t`, `f`,
//! `buildarg`, `target`, `label`, `nocache`, `pull`, `push`, `platform`, `cachefrom`, `cacheto`,
//! `network`, `memory`, `pidslimit`, `cpus`, `ulimit`). A context or Dockerfile that is wrong is a 400 before anything is built; then the
//! answer streams `application/x-ndjson`: the same events as `rbuild build --progress rawjson`,
//! and a last line that is either `{"type":"result",...}` or `{"type":"error",...}`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Read;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use builder_core::dockerfile::{self, CheckOptions};
use builder_core::exec::Network;
use builder_core::solve::{self, BuildRequest, CacheSpec, Event};
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::error::ApiError;
use crate::state::AppState;

/// The build's flags, from the query string.
#[derive(Debug, Default)]
struct Params {
    tags: Vec<String>,
    dockerfile: Option<String>,
    build_args: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    target: Option<String>,
    no_cache: bool,
    pull: bool,
    push: bool,
    platform: Option<String>,
    cache_from: Vec<CacheSpec>,
    cache_to: Vec<CacheSpec>,
    network: Network,
    limits: builder_core::exec::Limits,
    ulimits: Vec<builder_core::exec::Ulimit>,
    /// From [`SECRETS_HEADER`], never the query (which proxies log).
    secrets: Secrets,
}

/// A build's secret values; `Debug` shows their ids only.
#[derive(Default)]
struct Secrets(BTreeMap<String, Vec<u8>>);

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

fn params(query: Option<&str>) -> Result<Params, ApiError> {
    let mut p = Params::default();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
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

/// The request body as a blocking `Read`, fed chunk by chunk from the async side.
struct ChannelReader {
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

fn line(value: &serde_json::Value) -> Bytes {
    let mut s = value.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Runs the build: unpack and check (answered on `ready`), then build, streaming events.
fn run(
    state: &AppState,
    params: &Params,
    body: ChannelReader,
    over_limit: &std::sync::atomic::AtomicBool,
    ready: oneshot::Sender<Result<(), ApiError>>,
    events: &mpsc::Sender<Bytes>,
    tenant: &str,
) {
    let start = Instant::now();
    let mut counted = state.metrics.start(tenant);
    let setup = (|| -> Result<(builder_core::store::WorkDir, std::path::PathBuf), ApiError> {
        if params.network == Network::Host && !state.allow_network_host {
            return Err(ApiError::bad_request(
                "network `host` is not allowed: start rbuild-server with --allow-network-host"
                    .to_owned(),
            ));
        }
        let context = solve::unpack_context(&state.store, body).map_err(|e| {
            if over_limit.load(std::sync::atomic::Ordering::SeqCst) {
                return too_large(state.max_context_size);
            }
            let mut err = ApiError::from(e);
            err.status = axum::http::StatusCode::BAD_REQUEST;
            err.error = format!("the build context is not a readable tar: {}", err.error);
            err
        })?;
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
        Ok((context, path))
    })();
    let (context, dockerfile) = match setup {
        Ok(x) => {
            let _ = ready.send(Ok(()));
            x
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let platform = match params.platform.as_deref().map(str::parse).transpose() {
        Ok(p) => p,
        Err(e) => {
            let err = ApiError::bad_request(format!("{e}"));
            let _ = events.blocking_send(line(&with_type("error", err.body())));
            return;
        }
    };
    // The client going away (its response stream dropped) cancels the build, and so does a
    // shutdown whose grace has passed (while `follows` is kept).
    let cancel = builder_core::cancel::Cancel::new();
    let follows = std::sync::Arc::new(cancel.clone());
    state
        .shutdown
        .wake_on_cancel(std::sync::Arc::downgrade(&follows) as _);
    let req = BuildRequest {
        context: context.path().to_owned(),
        dockerfile: Some(dockerfile),
        build_args: params.build_args.clone(),
        target: params.target.clone(),
        labels: params.labels.clone(),
        no_cache: params.no_cache,
        tags: params.tags.clone(),
        pull: params.pull,
        platform,
        registry: state.registry.clone(),
        cache_from: params.cache_from.clone(),
        cache_to: params.cache_to.clone(),
        network: params.network,
        allow_network_host: state.allow_network_host,
        limits: capped(&params.limits, &state.limits),
        ulimits: params.ulimits.clone(),
        secrets: params.secrets.0.clone(),
        cancel: cancel.clone(),
        ..BuildRequest::default()
    };
    let mut on_event = |e: &Event| {
        if let Ok(serde_json::Value::Object(mut obj)) = serde_json::to_value(e) {
            obj.insert(
                "time".into(),
                serde_json::json!(start.elapsed().as_secs_f64()),
            );
            if events
                .blocking_send(line(&serde_json::Value::Object(obj)))
                .is_err()
            {
                cancel.cancel();
            }
        }
    };
    // A RUN may print nothing for a long time: the client going away meanwhile (the stream's
    // receiver dropped) cancels the build at once.
    let watcher = {
        let (events, cancel) = (events.clone(), cancel.clone());
        tokio::runtime::Handle::current().spawn(async move {
            events.closed().await;
            cancel.cancel();
        })
    };
    // Past `--build-timeout`, the build is cancelled and says why.
    let timed_out = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let timer = state.build_timeout.map(|limit| {
        let (cancel, timed_out) = (cancel.clone(), std::sync::Arc::clone(&timed_out));
        tokio::runtime::Handle::current().spawn(async move {
            tokio::time::sleep(limit).await;
            timed_out.store(true, std::sync::atomic::Ordering::SeqCst);
            cancel.cancel();
        })
    });
    let result = state.builder.build(&req, &mut on_event);
    watcher.abort();
    if let Some(t) = timer {
        t.abort();
    }
    drop(follows);
    let cancelled = |e: &solve::Error| matches!(e, solve::Error::Cancelled);
    match &result {
        Ok(out) => counted.ended("succeeded", out.steps, out.cached),
        Err(e) if cancelled(e) && state.shutdown.is_cancelled() => {
            counted.ended("interrupted", 0, 0);
        }
        Err(e) if cancelled(e) && !timed_out.load(std::sync::atomic::Ordering::SeqCst) => {
            counted.ended("cancelled", 0, 0);
        }
        Err(_) => counted.ended("failed", 0, 0),
    }
    let last = match result {
        Ok(out) => {
            let pushed = if params.push {
                push(state, &out.image, &params.tags)
            } else {
                Ok(Vec::new())
            };
            match pushed {
                Ok(digests) => serde_json::json!({
                    "type": "result",
                    "time": start.elapsed().as_secs_f64(),
                    "image_id": out.image.config_digest.to_string(),
                    "manifest_digest": out.image.manifest_digest.to_string(),
                    "names": params.tags,
                    "steps": out.steps,
                    "cached": out.cached,
                    "misses": out.misses,
                    "pushed": digests,
                }),
                Err(e) => with_type(
                    "error",
                    ApiError::internal(format!("the image was built but not pushed: {e}")).body(),
                ),
            }
        }
        Err(solve::Error::Cancelled) if timed_out.load(std::sync::atomic::Ordering::SeqCst) => {
            let limit = state.build_timeout.unwrap_or_default().as_secs();
            let mut err = ApiError::bad_request(format!(
                "the build took longer than this server allows ({limit} s, --build-timeout)"
            ));
            err.status = axum::http::StatusCode::REQUEST_TIMEOUT;
            with_type("error", err.body())
        }
        Err(solve::Error::Cancelled) if state.shutdown.is_cancelled() => with_type(
            "error",
            ApiError::internal("interrupted: the server shut down before the build finished")
                .body(),
        ),
        Err(e) => with_type("error", ApiError::from(e).body()),
    };
    let _ = events.blocking_send(line(&last));
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

fn with_type(kind: &str, mut body: serde_json::Value) -> serde_json::Value {
    body["type"] = kind.into();
    body
}

/// A context past `--max-context-size`.
fn too_large(limit: u64) -> ApiError {
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
fn secrets(headers: &axum::http::HeaderMap) -> Result<Secrets, ApiError> {
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

/// `POST /v1/build`.
pub(crate) async fn build(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    axum::Extension(tenant): axum::Extension<crate::auth::Tenant>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let mut params = params(query.as_deref())?;
    params.secrets = secrets(&headers)?;
    let limit = state.max_context_size;
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let (chunks_tx, chunks_rx) = mpsc::channel(16);
    let (ready_tx, ready_rx) = oneshot::channel();
    let (events_tx, events_rx) = mpsc::channel::<Bytes>(256);
    let over_limit = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The body, chunk by chunk, to the unpacker (bounded: a slow disk slows the upload),
    // counted: past the limit the unpacker gets an error and reading stops.
    let over = std::sync::Arc::clone(&over_limit);
    let metrics = std::sync::Arc::clone(&state.metrics);
    let sender = tenant.0.clone();
    tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut seen: u64 = 0;
        while let Some(chunk) = stream.next().await {
            let item = chunk.map_err(std::io::Error::other).and_then(|c| {
                seen = seen.saturating_add(c.len() as u64);
                metrics.received(&sender, c.len() as u64);
                if seen > limit {
                    over.store(true, std::sync::atomic::Ordering::SeqCst);
                    return Err(std::io::Error::other("the context is too large"));
                }
                Ok(c)
            });
            let stop = item.is_err();
            if chunks_tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let reader = ChannelReader {
        rx: chunks_rx,
        chunk: Bytes::new(),
    };
    tokio::task::spawn_blocking(move || {
        run(
            &state,
            &params,
            reader,
            &over_limit,
            ready_tx,
            &events_tx,
            &tenant.0,
        );
    });
    ready_rx
        .await
        .map_err(|_| ApiError::internal("the build stopped before reading the context"))??;
    let stream = futures_util::stream::unfold(events_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
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
