//! The Docker Engine API, as much of it as `docker build` (the classic builder,
//! `DOCKER_BUILDKIT=0`), `docker images|history|tag|rmi|save|load|push` use, so the `docker`
//! CLI builds here with `DOCKER_HOST=tcp://HOST:PORT`. API 1.41, with or without the `/v1.NN`
//! prefix; tokens come as the CLI's `HttpHeaders` from its `config.json` and are checked as on
//! every other route.
//!
//! What the CLI needs that is easy to get wrong (each found by running it against a logging
//! server): errors are `{"message"}` with a content type of exactly `application/json`; `/_ping`
//! must carry `API-Version`, or the CLI falls back to API 1.24 and refuses `--network`; an
//! in-stream failure needs `errorDetail`, whose `code` becomes the CLI's exit status; `-q` prints
//! the stream's text, so a quiet build sends only the image ID; tag answers 201; a push must not
//! answer 401 (the CLI would prompt for a login).

mod build;
mod images;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

use crate::state::AppState;

/// The API version served.
pub(crate) const API_VERSION: &str = "1.41";
const MIN_API_VERSION: (u32, u32) = (1, 12);

/// An error as docker's clients read it.
#[derive(Debug)]
pub(crate) struct DockerError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl DockerError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message.to_string())
    }
}

impl From<crate::error::ApiError> for DockerError {
    fn from(e: crate::error::ApiError) -> Self {
        let body = e.body();
        Self::new(e.status, body["message"].as_str().unwrap_or_default())
    }
}

impl IntoResponse for DockerError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "message": self.message }).to_string();
        // Exactly `application/json`: with a charset the CLI prints the raw body.
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

/// One message of docker's JSON stream (`{"stream"}`, `{"status"}`, `{"aux"}`, an error).
pub(crate) fn message(value: &serde_json::Value) -> Bytes {
    let mut s = value.to_string();
    s.push_str("\r\n");
    Bytes::from(s)
}

/// The in-stream error the CLI stops at, exiting with `code` (1 when 0).
pub(crate) fn error_message(text: &str, code: i64) -> Bytes {
    message(&serde_json::json!({
        "errorDetail": { "message": text, "code": code.max(1) },
        "error": text,
    }))
}

/// Reads `/vMAJOR.MINOR/rest` off the front of a path.
fn versioned(path: &str) -> Option<((u32, u32), &str)> {
    let rest = path.strip_prefix("/v")?;
    let (version, _) = rest.split_once('/')?;
    let (major, minor) = version.split_once('.')?;
    let v = (major.parse().ok()?, minor.parse().ok()?);
    Some((v, &path[2 + version.len()..]))
}

/// The outer middleware: strips the docker API's `/vX.Y` prefix before routing, refusing
/// versions this server does not speak as the daemon does; every answer carries the headers
/// docker's clients read.
pub(crate) async fn versions(req: Request, next: Next) -> Response {
    let has_body =
        req.method() == axum::http::Method::POST || req.method() == axum::http::Method::PUT;
    let mut res = route_version(req, next).await;
    // A refusal may come before the body was read (a full queue, a bad option): hyper then
    // drops the connection, so the client is told not to send another request on it.
    if has_body && (res.status().is_client_error() || res.status().is_server_error()) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

async fn route_version(mut req: Request, next: Next) -> Response {
    if let Some((v, rest)) = versioned(req.uri().path()) {
        let shown = format!("{}.{}", v.0, v.1);
        let max = API_VERSION
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .unwrap_or((1, 41));
        if v > max {
            return with_headers(
                DockerError::bad(format!(
                    "client version {shown} is too new. Maximum supported API version is {API_VERSION}"
                ))
                .into_response(),
            );
        }
        if v < MIN_API_VERSION {
            return with_headers(
                DockerError::bad(format!(
                    "client version {shown} is too old. Minimum supported API version is {}.{}, please upgrade your client to a newer version",
                    MIN_API_VERSION.0, MIN_API_VERSION.1
                ))
                .into_response(),
            );
        }
        let rewritten = match req.uri().query() {
            Some(q) => format!("{rest}?{q}"),
            None => rest.to_owned(),
        };
        if let Ok(uri) = rewritten.parse() {
            *req.uri_mut() = uri;
        }
    }
    with_headers(next.run(req).await)
}

fn with_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert("api-version", HeaderValue::from_static(API_VERSION));
    h.insert("ostype", HeaderValue::from_static("linux"));
    h.insert("docker-experimental", HeaderValue::from_static("true"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(concat!("rbuild-server/", env!("CARGO_PKG_VERSION"))),
    );
    res
}

/// `GET|HEAD /_ping`.
async fn ping() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache, no-store, must-revalidate"),
            (header::HeaderName::from_static("builder-version"), "1"),
        ],
        "OK",
    )
        .into_response()
}

/// `GET /version`.
async fn version() -> Response {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let version = env!("CARGO_PKG_VERSION");
    axum::Json(serde_json::json!({
        "Platform": { "Name": "rbuild-server" },
        "Components": [{
            "Name": "Engine",
            "Version": version,
            "Details": {
                "ApiVersion": API_VERSION, "MinAPIVersion": "1.12", "Os": "linux", "Arch": arch,
                "GitCommit": "", "GoVersion": "rust", "Experimental": "true",
            },
        }],
        "Version": version,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": "1.12",
        "GitCommit": "",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": arch,
        "Experimental": true,
    }))
    .into_response()
}

/// `GET /info`: what `docker push` asks first (the index server's address).
async fn info() -> Response {
    axum::Json(serde_json::json!({
        "ID": "rbuild-server",
        "Name": "rbuild-server",
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "OperatingSystem": "rbuild-server",
        "OSType": "linux",
        "Architecture": std::env::consts::ARCH,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "Containers": 0,
        "Images": 0,
    }))
    .into_response()
}

/// `GET /containers/{name}/json`: there are none. `docker inspect NAME` asks here first and
/// needs a 404 to go on to the image.
async fn no_container(axum::extract::Path(name): axum::extract::Path<String>) -> DockerError {
    DockerError::not_found(format!(
        "No such container: {}",
        name.trim_end_matches("/json")
    ))
}

/// The docker API's routes (behind the tokens, as every route is).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/_ping", get(ping).head(ping))
        .route("/version", get(version))
        .route("/info", get(info))
        .route("/build", post(build::build))
        .route("/images/json", get(images::list))
        .route("/images/get", get(images::save_many))
        .route("/images/load", post(images::load))
        .route("/images/{*rest}", any(images::dispatch))
        .route("/containers/{*name}", get(no_container))
}

#[cfg(test)]
mod tests {
    use super::versioned;

    #[test]
    fn the_version_prefix_is_read_off_the_path() {
        assert_eq!(
            versioned("/v1.41/images/json"),
            Some(((1, 41), "/images/json"))
        );
        assert_eq!(versioned("/v1.24/_ping"), Some(((1, 24), "/_ping")));
        assert_eq!(versioned("/v1/builds"), None);
        assert_eq!(versioned("/images/json"), None);
        assert_eq!(versioned("/v1.x/images"), None);
    }
}
