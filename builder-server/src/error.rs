//! `ApiError`: the one place errors become responses. Dockerfile, context and request errors are
//! 400, an unknown image 404, anything else 500; the body is
//! `{"error", "causes": [...], "location": {"line"}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use builder_core::solve;

/// An error answered to a client.
#[derive(Debug)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) error: String,
    pub(crate) causes: Vec<String>,
    pub(crate) line: Option<usize>,
    /// Seconds a `429` asks the client to wait (`Retry-After`).
    pub(crate) retry_after: Option<u64>,
}

/// The JSON body of every error answer.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    error: String,
    /// What caused it, outermost first.
    causes: Vec<String>,
    /// Where in the Dockerfile, when it is about a line.
    location: Option<Location>,
    /// The error and its causes in one line (what docker's clients print).
    message: String,
}

/// A Dockerfile line.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Location {
    line: usize,
}

impl ApiError {
    /// A request the client got wrong.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: message.into(),
            causes: Vec::new(),
            line: None,
            retry_after: None,
        }
    }

    /// An image that is not in the store.
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            error: message.into(),
            causes: Vec::new(),
            line: None,
            retry_after: None,
        }
    }

    /// Something that went wrong on our side.
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: message.into(),
            causes: Vec::new(),
            line: None,
            retry_after: None,
        }
    }

    /// The JSON body (also streamed as a build's last line when the build fails).
    pub(crate) fn body(&self) -> serde_json::Value {
        // `message` is what docker's clients read (the docker API's routes answer through this too).
        let mut message = self.error.clone();
        for c in &self.causes {
            message.push_str(": ");
            message.push_str(c);
        }
        let mut v =
            serde_json::json!({ "error": self.error, "causes": self.causes, "message": message });
        if let Some(line) = self.line {
            v["location"] = serde_json::json!({ "line": line });
        }
        v
    }
}

/// The causes under an error, outermost first.
pub(crate) fn causes(err: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = Vec::new();
    let mut next = err.source();
    while let Some(e) = next {
        out.push(e.to_string());
        next = e.source();
    }
    out
}

impl From<solve::Error> for ApiError {
    fn from(err: solve::Error) -> Self {
        let (status, line) = match &err {
            solve::Error::Dockerfile { source, .. } => {
                (StatusCode::BAD_REQUEST, Some(source.span.line))
            }
            solve::Error::Step { line, source, .. } => {
                let status = match source.as_ref() {
                    solve::Error::ImageNotFound { .. } => StatusCode::NOT_FOUND,
                    solve::Error::SourceNotFound { .. }
                    | solve::Error::Expand { .. }
                    | solve::Error::InvalidFlag { .. }
                    | solve::Error::Context(_) => StatusCode::BAD_REQUEST,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                (status, Some(*line))
            }
            solve::Error::Context(_) | solve::Error::Plan(_) | solve::Error::Apply(_) => {
                (StatusCode::BAD_REQUEST, None)
            }
            solve::Error::ImageNotFound { .. } => (StatusCode::NOT_FOUND, None),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, None),
        };
        Self {
            status,
            error: err.to_string(),
            causes: causes(&err),
            line,
            retry_after: None,
        }
    }
}

impl From<builder_core::store::Error> for ApiError {
    fn from(err: builder_core::store::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: err.to_string(),
            causes: causes(&err),
            line: None,
            retry_after: None,
        }
    }
}

impl From<builder_core::oci::Error> for ApiError {
    fn from(err: builder_core::oci::Error) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: err.to_string(),
            causes: causes(&err),
            line: None,
            retry_after: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            res.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        res
    }
}
