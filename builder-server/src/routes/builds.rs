//! Build jobs: `POST /v1/builds` queues a posted context and answers `202` at once;
//! `GET /v1/builds[/{id}]` reads the records; `/events` follows a build (server-sent events,
//! history first, `Last-Event-ID` resumes), `/logs` is its output as text, `/image` its image as
//! an OCI or docker archive; `DELETE` cancels it. A tenant sees only its own builds: another's
//! id is a 404, as an unknown one is.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use utoipa::{IntoParams, ToSchema};

use crate::auth::Tenant;
use crate::build::{self, params, secrets};
use crate::error::{ApiError, ErrorBody};
use crate::jobs::{Queued, Refused};
use crate::records::{self, Build, Filter, Records};
use crate::state::AppState;

/// Where a build's parts are.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Links {
    #[serde(rename = "self")]
    this: String,
    events: String,
    logs: String,
    image: String,
}

impl Links {
    fn of(id: &str) -> Self {
        Self {
            this: format!("/v1/builds/{id}"),
            events: format!("/v1/builds/{id}/events"),
            logs: format!("/v1/builds/{id}/logs"),
            image: format!("/v1/builds/{id}/image"),
        }
    }
}

/// A build, as listed.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Summary {
    id: String,
    tenant: String,
    /// `queued`, `running`, `succeeded`, `failed`, `cancelled` or `interrupted`.
    state: String,
    tags: Vec<String>,
    /// RFC 3339.
    created: String,
    started: Option<String>,
    finished: Option<String>,
    /// From posted to started.
    queued_seconds: Option<f64>,
    /// From started to finished.
    duration_seconds: Option<f64>,
    /// The order builds started in on this server (1, 2, …).
    start_order: Option<i64>,
    /// How many steps the build had, and how many the cache answered (once it ended).
    step_count: Option<i64>,
    cached_count: Option<i64>,
    context_bytes: Option<i64>,
    /// The replica that ran it (in a fleet).
    replica: Option<String>,
    links: Links,
}

/// One step of a build.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Step {
    number: u64,
    stage: String,
    instruction: String,
    line: u64,
    /// The step cache had it: nothing ran.
    cached: bool,
    /// Why it missed the cache.
    miss: Option<String>,
    millis: Option<u64>,
}

/// A build in full.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Detail {
    #[serde(flatten)]
    summary: Summary,
    /// What it was posted with (secrets by id only).
    #[schema(value_type = Object)]
    options: serde_json::Value,
    steps: Vec<Step>,
    /// The last event of a build that succeeded: image id, manifest digest, size, pushed digests.
    #[schema(value_type = Option<Object>)]
    result: Option<serde_json::Value>,
    /// The last event of one that did not: the error, its causes, the Dockerfile line.
    #[schema(value_type = Option<Object>)]
    error: Option<serde_json::Value>,
}

/// A page of builds, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Page {
    builds: Vec<Summary>,
    /// The next page, when there may be one.
    next: Option<String>,
}

/// A posted build.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Accepted {
    id: String,
    state: String,
    links: Links,
}

/// `GET /v1/builds`' query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListQuery {
    /// Only builds in this state.
    state: Option<String>,
    /// Only builds with this tag (as normalised: `app` is `app:latest`).
    tag: Option<String>,
    /// Only this tenant's builds (a tenant sees only its own in any case).
    tenant: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<u32>,
    /// Builds older than this build id (the next page).
    before: Option<String>,
}

/// `/image`'s query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ImageQuery {
    /// `oci` (an OCI image layout, the default) or `docker` (what `docker load` reads).
    format: Option<String>,
}

const STATES: [&str; 6] = [
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
    "interrupted",
];

fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[allow(clippy::cast_precision_loss)] // milliseconds as seconds: far below 2^52
fn seconds(from: Option<i64>, to: Option<i64>) -> Option<f64> {
    Some((to? - from?) as f64 / 1000.0)
}

fn summary(b: Build) -> Summary {
    Summary {
        links: Links::of(&b.id),
        queued_seconds: seconds(Some(b.created), b.started),
        duration_seconds: seconds(b.started, b.finished),
        created: rfc3339(b.created),
        started: b.started.map(rfc3339),
        finished: b.finished.map(rfc3339),
        id: b.id,
        tenant: b.tenant,
        state: b.state,
        tags: b.tags,
        start_order: b.start_order,
        step_count: b.steps,
        cached_count: b.cached,
        context_bytes: b.context_bytes,
        replica: b.replica,
    }
}

/// Runs `f` on the records off the async threads.
async fn on_records<T: Send + 'static>(
    state: &AppState,
    f: impl FnOnce(&Records) -> Result<T, records::RecordsError> + Send + 'static,
) -> Result<T, ApiError> {
    let records = Arc::clone(&state.jobs.records);
    tokio::task::spawn_blocking(move || f(&records))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The tenant whose builds a request may see: its own, or any without tokens.
fn visible(state: &AppState, tenant: &Tenant) -> Option<String> {
    state.tokens.is_some().then(|| tenant.0.clone())
}

fn unknown(id: &str) -> ApiError {
    ApiError::not_found(format!("no build `{id}`"))
}

/// The record of build `id`, if the asker may see it.
async fn find(state: &AppState, tenant: &Tenant, id: &str) -> Result<Build, ApiError> {
    let (owner, key) = (visible(state, tenant), id.to_owned());
    on_records(state, move |r| r.get(&key, owner.as_deref()))
        .await?
        .ok_or_else(|| unknown(id))
}

/// `POST /v1/builds`.
#[utoipa::path(
    post,
    path = "/v1/builds",
    tag = "builds",
    params(crate::openapi::BuildQuery),
    request_body(content_type = "application/x-tar", description = "The build context: a tar, plain, gzip or zstd"),
    responses(
        (status = 202, description = "Queued", body = Accepted),
        (status = 400, description = "A bad context, Dockerfile or option; nothing is kept", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 408, description = "The body stalled", body = ErrorBody),
        (status = 413, description = "The context is over --max-context-size", body = ErrorBody),
        (status = 429, description = "The tenant's queue is full; see Retry-After", body = ErrorBody),
        (status = 503, description = "The server is shutting down", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn post(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    axum::Extension(tenant): axum::Extension<Tenant>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let posted = Instant::now();
    let (metrics, who) = (Arc::clone(&state.metrics), tenant.0.clone());
    let count = |e: ApiError| {
        metrics.refused(&who, e.status.as_u16());
        e
    };
    let mut params = params(query.as_deref()).map_err(count)?;
    params.secrets = secrets(&headers).map_err(count)?;
    crate::routes::build::announced_size(&state, &headers).map_err(count)?;
    // A full queue is refused before the body is read.
    let (jobs, who2) = (Arc::clone(&state.jobs), tenant.0.clone());
    tokio::task::spawn_blocking(move || jobs.room_for(&who2))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(refused)
        .map_err(count)?;
    let receiving = build::receive(&state, &tenant.0, body).await;
    let bytes = receiving.bytes();
    let st = state.clone();
    let (tenant_name, id) = (tenant.0.clone(), crate::jobs::new_id());
    let job_id = id.clone();
    let fleet = state.jobs.fleet.is_some();
    if fleet && !params.secrets.is_empty() {
        return Err(count(ApiError::bad_request(
            "secrets are never stored, so a fleet cannot queue a build with them: post it with POST /v1/build (streamed) instead",
        )));
    }
    tokio::task::spawn_blocking(move || {
        // In a fleet the context is kept whole, to be stored in the registry once checked.
        let (ready, kept) = if fleet {
            let kept = receiving.into_file(&st)?;
            let file =
                fs_err::File::open(kept.path()).map_err(|e| ApiError::internal(e.to_string()))?;
            let why = |e: builder_core::solve::Error| {
                let mut err = ApiError::from(e);
                err.status = StatusCode::BAD_REQUEST;
                err.error = format!("the build context is not a readable tar: {}", err.error);
                err
            };
            (build::setup_from(&st, &params, file, &why)?, Some(kept))
        } else {
            (build::setup(&st, &params, receiving)?, None)
        };
        let record = Build {
            id: job_id.clone(),
            tenant: tenant_name.clone(),
            state: "queued".into(),
            tags: params.tags.clone(),
            options: params.record(),
            created: records::now_ms(),
            started: None,
            finished: None,
            start_order: None,
            context_bytes: i64::try_from(bytes.load(std::sync::atomic::Ordering::SeqCst)).ok(),
            steps: None,
            cached: None,
            result: None,
            error: None,
            replica: None,
        };
        if let Some(kept) = kept {
            drop(ready);
            let mut query = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &params.raw {
                query.append_pair(k, v);
            }
            return crate::jobs::submit_to_fleet(&st, kept.path(), &record, &query.finish());
        }
        let job = Queued {
            id: job_id,
            tenant: tenant_name,
            params,
            ready,
            posted,
        };
        st.jobs.submit(&st, job, &record).map_err(refused)
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
    .map_err(count)?;
    tracing::info!(build = %id, tenant = %tenant.0, "build queued");
    let accepted = Accepted {
        links: Links::of(&id),
        state: "queued".into(),
        id,
    };
    let location = HeaderValue::from_str(&accepted.links.this)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(accepted),
    )
        .into_response())
}

fn refused(r: Refused) -> ApiError {
    match r {
        Refused::Full { queued } => {
            let mut err = ApiError::bad_request(format!(
                "this tenant has {queued} builds queued, as many as this server queues (--max-queued); retry later"
            ));
            err.status = StatusCode::TOO_MANY_REQUESTS;
            err.retry_after = Some(10);
            err
        }
        Refused::ShuttingDown => {
            let mut err = ApiError::internal("the server is shutting down; post to another");
            err.status = StatusCode::SERVICE_UNAVAILABLE;
            err
        }
    }
}

/// `GET /v1/builds`.
#[utoipa::path(
    get,
    path = "/v1/builds",
    tag = "builds",
    params(ListQuery),
    responses(
        (status = 200, description = "Builds, newest first", body = Page),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<Tenant>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Page>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    if let Some(s) = &q.state {
        if !STATES.contains(&s.as_str()) {
            return Err(ApiError::bad_request(format!(
                "state `{s}`: one of {}",
                STATES.join(", ")
            )));
        }
    }
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    // Without tokens anyone may filter by tenant; with them a tenant sees its own only.
    let owner = visible(&state, &tenant);
    if let (Some(own), Some(asked)) = (&owner, &q.tenant) {
        if own != asked {
            return Ok(Json(Page {
                builds: Vec::new(),
                next: None,
            }));
        }
    }
    let tenant_filter = owner.or_else(|| q.tenant.clone());
    let tag = q.tag.as_deref().map(builder_core::solve::tag_name);
    let (state_filter, before) = (q.state.clone(), q.before.clone());
    let rows = on_records(&state, move |r| {
        let before = match &before {
            Some(id) => Some(r.seq(id)?.unwrap_or(0)),
            None => None,
        };
        r.list(&Filter {
            tenant: tenant_filter.as_deref(),
            state: state_filter.as_deref(),
            tag: tag.as_deref(),
            before,
            limit,
        })
    })
    .await?;
    let full = rows.len() == limit as usize;
    let builds: Vec<Summary> = rows.into_iter().map(|(_, b)| summary(b)).collect();
    let next = match builds.last() {
        Some(last) if full => {
            let mut q2 = form_urlencoded::Serializer::new(String::new());
            for (k, v) in [("state", &q.state), ("tag", &q.tag), ("tenant", &q.tenant)] {
                if let Some(v) = v {
                    q2.append_pair(k, v);
                }
            }
            q2.append_pair("limit", &limit.to_string());
            q2.append_pair("before", &last.id);
            Some(format!("/v1/builds?{}", q2.finish()))
        }
        _ => None,
    };
    Ok(Json(Page { builds, next }))
}

/// The steps a build's events tell of, with their cache marks and miss explanations.
fn steps(events: &[(u64, String)]) -> Vec<Step> {
    let mut out: Vec<Step> = Vec::new();
    for (_, data) in events {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(data) else {
            continue;
        };
        let number = e["number"].as_u64().unwrap_or(0);
        match e["type"].as_str() {
            Some("step") => out.push(Step {
                number,
                stage: e["stage"].as_str().unwrap_or_default().to_owned(),
                instruction: e["instruction"].as_str().unwrap_or_default().to_owned(),
                line: e["line"].as_u64().unwrap_or(0),
                cached: false,
                miss: None,
                millis: None,
            }),
            Some("miss") => {
                if let Some(s) = out.iter_mut().rev().find(|s| s.number == number) {
                    s.miss = e["reason"].as_str().map(str::to_owned);
                }
            }
            Some("step_done") => {
                if let Some(s) = out.iter_mut().rev().find(|s| s.number == number) {
                    s.cached = e["cached"].as_bool().unwrap_or(false);
                    s.millis = e["millis"].as_u64();
                }
            }
            _ => {}
        }
    }
    out
}

/// All of a build's events but its RUN output.
fn all_events(
    r: &Records,
    id: &str,
    skip_logs: bool,
) -> Result<Vec<(u64, String)>, records::RecordsError> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = r.events_after(id, after, 1000)?;
        let Some(last) = page.last() else {
            return Ok(out);
        };
        after = last.0;
        out.extend(
            page.into_iter()
                .filter(|(_, d)| !skip_logs || !d.starts_with(r#"{"type":"log""#)),
        );
    }
}

/// `GET /v1/builds/{id}`.
#[utoipa::path(
    get,
    path = "/v1/builds/{id}",
    tag = "builds",
    params(("id" = String, Path, description = "The build's id")),
    responses(
        (status = 200, description = "The build: options, timings, steps, result or error", body = Detail),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such build (or another tenant's)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Json<Detail>, ApiError> {
    let b = find(&state, &tenant, &id).await?;
    let key = id.clone();
    let events = on_records(&state, move |r| all_events(r, &key, true)).await?;
    Ok(Json(Detail {
        options: b.options.clone(),
        steps: steps(&events),
        result: b.result.clone(),
        error: b.error.clone(),
        summary: summary(b),
    }))
}

/// Where a follower is in a build's events.
struct Follow {
    records: Arc<Records>,
    id: String,
    after: u64,
    buf: VecDeque<(u64, String)>,
    /// `None` once the job is no longer live.
    progress: Option<watch::Receiver<(u64, bool)>>,
    done: bool,
}

/// The events of build `id` after the `after`th: the recorded ones, then the new ones as they
/// are recorded, ending after the build's last.
fn follow(
    state: &AppState,
    id: &str,
    after: u64,
) -> impl Stream<Item = Result<SseEvent, Infallible>> + use<> {
    let start = Follow {
        records: Arc::clone(&state.jobs.records),
        id: id.to_owned(),
        after,
        buf: VecDeque::new(),
        progress: state.jobs.live(id).map(|l| l.progress.subscribe()),
        done: false,
    };
    futures_util::stream::unfold(start, |mut f| async move {
        loop {
            if let Some((n, data)) = f.buf.pop_front() {
                f.after = n;
                let event = SseEvent::default().id(n.to_string()).data(data);
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            // Seen before reading, so an event recorded after the read wakes the wait below.
            let ended = f
                .progress
                .as_mut()
                .is_none_or(|rx| rx.borrow_and_update().1);
            let (records, id, after) = (Arc::clone(&f.records), f.id.clone(), f.after);
            let page = tokio::task::spawn_blocking(move || records.events_after(&id, after, 500))
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            if !page.is_empty() {
                f.buf.extend(page);
                continue;
            }
            if ended && f.progress.is_none() {
                // Not running here: it may be queued or running on another replica, whose
                // events reach the shared records; they are polled until it ends.
                let (records, id) = (Arc::clone(&f.records), f.id.clone());
                let state = tokio::task::spawn_blocking(move || records.get(&id, None))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
                    .map(|b| b.state);
                if matches!(state.as_deref(), Some("queued" | "running")) {
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                    continue;
                }
                f.done = true;
                continue;
            }
            if ended {
                f.done = true;
                continue;
            }
            if let Some(rx) = f.progress.as_mut() {
                if rx.changed().await.is_err() {
                    f.progress = None;
                }
            }
        }
    })
}

/// `GET /v1/builds/{id}/events`.
#[utoipa::path(
    get,
    path = "/v1/builds/{id}/events",
    tag = "builds",
    params(
        ("id" = String, Path, description = "The build's id"),
        ("Last-Event-ID" = Option<u64>, Header, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "Server-sent events: each `data` is one event as `rbuild build --progress rawjson` prints it, `id` its number; the stream ends after the build's last (`result` or `error`)", content_type = "text/event-stream"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such build", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn events(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<Tenant>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    find(&state, &tenant, &id).await?;
    let after = match headers.get("last-event-id") {
        None => 0,
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .ok_or_else(|| ApiError::bad_request("`Last-Event-ID` is not an event number"))?,
    };
    Ok(Sse::new(follow(&state, &id, after))
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// `GET /v1/builds/{id}/logs`.
#[utoipa::path(
    get,
    path = "/v1/builds/{id}/logs",
    tag = "builds",
    params(("id" = String, Path, description = "The build's id")),
    responses(
        (status = 200, description = "The build's steps and their output as plain text, as far as it has gone", content_type = "text/plain"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such build", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn logs(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    find(&state, &tenant, &id).await?;
    let events = on_records(&state, move |r| all_events(r, &id, false)).await?;
    let mut text = String::new();
    for (_, data) in &events {
        let Ok(e) = serde_json::from_str::<serde_json::Value>(data) else {
            continue;
        };
        let s = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
        let line = match e["type"].as_str() {
            Some("step") => format!("#{} [{}] {}", e["number"], s("stage"), s("instruction")),
            Some("log") => format!("#{} {}", e["number"], s("line")),
            Some("miss") => format!("#{} cache miss: {}", e["number"], s("reason")),
            Some("step_done") if e["cached"] == true => format!("#{} CACHED", e["number"]),
            Some("step_done") => format!("#{} DONE {} ms", e["number"], e["millis"]),
            Some("warning") => format!("WARNING (line {}): {}", e["line"], s("message")),
            Some("result") => format!("built {} ({})", s("image_id"), s("manifest_digest")),
            Some("error") => format!("ERROR: {}", s("error")),
            _ => continue,
        };
        text.push_str(&line);
        text.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response())
}

/// `GET /v1/builds/{id}/image`.
#[utoipa::path(
    get,
    path = "/v1/builds/{id}/image",
    tag = "builds",
    params(("id" = String, Path, description = "The build's id"), ImageQuery),
    responses(
        (status = 200, description = "The image as a tar: an OCI image layout, or `docker load`'s format", content_type = "application/x-tar"),
        (status = 400, description = "An unknown format", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such build, or its image is gone from the store", body = ErrorBody),
        (status = 409, description = "The build has no image (yet)", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn image(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<Tenant>,
    Path(id): Path<String>,
    query: Result<Query<ImageQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let docker = match q.format.as_deref() {
        None | Some("oci") => false,
        Some("docker") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format `{other}`: oci or docker"
            )));
        }
    };
    let b = find(&state, &tenant, &id).await?;
    let digest = b
        .result
        .as_ref()
        .and_then(|r| r["manifest_digest"].as_str())
        .and_then(|d| d.parse::<builder_core::digest::Digest>().ok());
    let Some(digest) = digest else {
        let mut err =
            ApiError::bad_request(format!("build `{id}` is {}: it has no image", b.state));
        err.status = StatusCode::CONFLICT;
        return Err(err);
    };
    let store = state.store.clone();
    let image =
        tokio::task::spawn_blocking(move || builder_core::solve::Image::load(&store, digest))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .map_err(|_| {
                ApiError::not_found(format!(
                    "the image of build `{id}` is no longer in the store"
                ))
            })?;
    let store = state.store.clone();
    let tags = b.tags.clone();
    let body = crate::build::written_body(move |w| {
        let epoch = u64::try_from(builder_core::solve::DEFAULT_EPOCH).unwrap_or(0);
        let written = if docker {
            builder_core::oci::write_docker_archive(&store, &image, &tags, epoch, w).map(drop)
        } else {
            builder_core::oci::write_oci_archive(
                &store,
                &image,
                tags.first().map(String::as_str),
                builder_core::solve::Compression::Gzip,
                epoch,
                w,
            )
            .map(drop)
        };
        written.map_err(|e| e.to_string())
    });
    let name = format!("{id}-{}.tar", if docker { "docker" } else { "oci" });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-tar")
        .header(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{name}\""),
        )
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `DELETE /v1/builds/{id}`.
#[utoipa::path(
    delete,
    path = "/v1/builds/{id}",
    tag = "builds",
    params(("id" = String, Path, description = "The build's id")),
    responses(
        (status = 202, description = "Cancelling: a queued build ends at once, a running one as soon as its RUN is killed", body = Accepted),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such build", body = ErrorBody),
        (status = 409, description = "The build has already ended", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    axum::Extension(tenant): axum::Extension<Tenant>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let b = find(&state, &tenant, &id).await?;
    let jobs = Arc::clone(&state.jobs);
    let key = id.clone();
    let live = tokio::task::spawn_blocking(move || jobs.cancel(&key))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if !live {
        let mut err =
            ApiError::bad_request(format!("build `{id}` has already ended ({})", b.state));
        err.status = StatusCode::CONFLICT;
        return Err(err);
    }
    tracing::info!(build = %id, tenant = %tenant.0, "build cancelled");
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            links: Links::of(&id),
            state: "cancelling".into(),
            id,
        }),
    )
        .into_response())
}
