//! `POST /v1/build`: the body is the build context as a tar (plain, gzip or zstd), streamed to
//! the unpacker as it arrives; the query holds what `rbuild build` takes as flags (`t`, `f`,
//! `buildarg`, `target`, `label`, `nocache`, `pull`, `push`, `platform`, `cachefrom`, `cacheto`,
//! `network`, `memory`, `pidslimit`, `cpus`, `ulimit`). A context or Dockerfile that is wrong is
//! a 400 before anything is built; then the answer streams `application/x-ndjson`: the same
//! events as `rbuild build --progress rawjson`, and a last line that is either
//! `{"type":"result",...}` or `{"type":"error",...}`. The client going away cancels the build.

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;

use crate::build::{self, params, secrets, too_large};
use crate::error::ApiError;
use crate::state::AppState;

fn line(value: &serde_json::Value) -> Bytes {
    let mut s = value.to_string();
    s.push('\n');
    Bytes::from(s)
}

/// The `Content-Length` a request announces, refused past `--max-context-size` before any of
/// the body is read.
pub(crate) fn announced_size(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<(), ApiError> {
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > state.max_context_size) {
        return Err(too_large(state.max_context_size));
    }
    Ok(())
}

/// `POST /v1/build`.
#[utoipa::path(
    post,
    path = "/v1/build",
    tag = "builds",
    params(crate::openapi::BuildQuery),
    request_body(content_type = "application/x-tar", description = "The build context: a tar, plain, gzip or zstd"),
    responses(
        (status = 200, description = "The build's events, one JSON object per line; the last is `result` or `error`", content_type = "application/x-ndjson"),
        (status = 400, description = "A bad context, Dockerfile or option", body = crate::error::ErrorBody),
        (status = 401, description = "No valid token", body = crate::error::ErrorBody),
        (status = 413, description = "The context is over --max-context-size", body = crate::error::ErrorBody),
    ),
    security(("bearer" = []))
)]
pub(crate) async fn build(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    axum::Extension(tenant): axum::Extension<crate::auth::Tenant>,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (metrics, who) = (std::sync::Arc::clone(&state.metrics), tenant.0.clone());
    let refused = |e: ApiError| {
        metrics.refused(&who, e.status.as_u16());
        e
    };
    let mut params = params(query.as_deref()).map_err(refused)?;
    params.secrets = secrets(&headers).map_err(refused)?;
    announced_size(&state, &headers).map_err(refused)?;
    let receiving = build::receive(&state, &tenant.0, body).await;
    build::stream(
        state,
        params,
        receiving,
        tenant.0,
        "application/x-ndjson",
        Lines,
    )
    .await
    .inspect_err(|e| metrics.refused(&who, e.status.as_u16()))
}

/// The streamed form: each event a JSON line, the last one too.
struct Lines;

impl build::Render for Lines {
    fn event(&mut self, e: &serde_json::Value) -> Vec<Bytes> {
        vec![line(e)]
    }

    fn end(&mut self, ended: &build::Ended) -> Vec<Bytes> {
        vec![line(&ended.last)]
    }
}
