//! `POST /v1/build`: the body is the build context as a tar (plain, gzip or zstd), streamed to
//! the unpacker as it arrives; the query holds what `rbuild build` takes as flags (`t`, `f`,
//! `buildarg`, `target`, `label`, `nocache`, `pull`, `push`, `platform`, `cachefrom`, `cacheto`,
//! `network`, `memory`, `pidslimit`, `cpus`, `ulimit`). A context or Dockerfile that is wrong is
//! a 400 before anything is built; then the answer streams `application/x-ndjson`: the same
//! events as `rbuild build --progress rawjson`, and a last line that is either
//! `{"type":"result",...}` or `{"type":"error",...}`. The client going away cancels the build.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::Response;
use tokio::sync::{mpsc, oneshot};

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
    let (ready_tx, ready_rx) = oneshot::channel();
    let (events_tx, events_rx) = mpsc::channel::<Bytes>(256);
    tokio::task::spawn_blocking(move || {
        let ready = match build::setup(&state, &params, receiving) {
            Ok(r) => {
                let _ = ready_tx.send(Ok(()));
                r
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        // The client going away (its response stream dropped) cancels the build at once, even
        // while a RUN prints nothing.
        let cancel = builder_core::cancel::Cancel::new();
        let watcher = {
            let (events, cancel) = (events_tx.clone(), cancel.clone());
            tokio::runtime::Handle::current().spawn(async move {
                events.closed().await;
                cancel.cancel();
            })
        };
        let ended = build::execute(&state, &params, &ready, &cancel, &tenant.0, &mut |e| {
            if events_tx.blocking_send(line(&e)).is_err() {
                cancel.cancel();
            }
        });
        watcher.abort();
        let _ = events_tx.blocking_send(line(&ended.last));
    });
    let metrics = std::sync::Arc::clone(&metrics);
    ready_rx
        .await
        .map_err(|_| ApiError::internal("the build stopped before reading the context"))?
        .inspect_err(|e| metrics.refused(&who, e.status.as_u16()))?;
    let stream = futures_util::stream::unfold(events_rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(stream))
        .map_err(|e| ApiError::internal(e.to_string()))
}
