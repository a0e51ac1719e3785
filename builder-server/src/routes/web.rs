//! The web page: `/` lists the builds, `/builds/{id}` shows one with its log following live.
//! One HTML shell and its script and style, compiled into the binary; the script reads the API
//! with the token it asks for once (kept in the tab's session storage).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;

const PAGE: &str = include_str!("../web/page.html");
const SCRIPT: &str = include_str!("../web/app.js");
const STYLE: &str = include_str!("../web/app.css");

/// Headers every page answer carries: no framing, no sniffing, only this origin's script.
fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; object-src 'none'; frame-ancestors 'none'",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        PAGE,
    )
}

/// The page's routes (no token: the page holds no data, the API it reads does).
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page() }))
        .route("/builds/{id}", get(|| async { page() }))
        .route(
            "/assets/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    SCRIPT,
                )
            }),
        )
        .route(
            "/assets/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }),
        )
}
