//! The router, apart from `main` so tests can call it directly.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::routes;
use crate::state::AppState;

/// The API's routes and their OpenAPI document, from the same declarations.
pub(crate) fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .routes(routes!(routes::build::build))
        .routes(routes!(routes::builds::post, routes::builds::list))
        .routes(routes!(routes::builds::get, routes::builds::cancel))
        .routes(routes!(routes::builds::events))
        .routes(routes!(routes::builds::logs))
        .routes(routes!(routes::builds::image))
        .routes(routes!(routes::images::list))
        // An image's name may hold `/` (`host:5000/team/app:v1`): a wildcard axum route, documented
        // in `ApiDoc` as `{name}`.
        .route("/v1/images/{*name}", get(routes::images::inspect))
        .routes(routes!(crate::metrics::metrics))
        .split_for_parts()
}

/// The service's routes.
pub(crate) fn app(state: AppState) -> Router {
    let auth = axum::middleware::from_fn_with_state(state.clone(), crate::auth::require);
    let (api, doc) = api();
    let doc = std::sync::Arc::new(doc);
    let routed = api
        .merge(crate::docker::routes())
        // Every route above needs a token (when the service has tokens); health checks, the
        // document and the web page's files do not (the page asks for the token itself).
        .route_layer(auth)
        .route("/healthz", get(routes::health::healthz))
        .route(
            "/openapi.json",
            get(move || {
                let doc = std::sync::Arc::clone(&doc);
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(routes::web::routes())
        // Contexts stream to disk as they arrive: no size limit in memory to enforce.
        .layer(DefaultBodyLimit::disable())
        .with_state(state);
    // The docker API's `/v1.NN` prefix comes off before routing (an outer router whose one
    // route, the fallback, is the routed service).
    Router::new()
        .fallback_service(routed)
        .layer(axum::middleware::from_fn(crate::docker::versions))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::ServiceExt;

    use super::app;
    use crate::state::AppState;

    fn state() -> (tempfile::TempDir, AppState) {
        let dir = tempfile::tempdir().unwrap();
        let store = builder_core::solve::Store::open(dir.path()).unwrap();
        let state = AppState {
            builder: builder_core::solve::Builder::new(store.clone()),
            store,
            registry: builder_core::registry::Options::default(),
            allow_network_host: false,
            isolation: builder_core::exec::Isolation::Namespaces,
            max_context_size: u64::MAX,
            shutdown: builder_core::cancel::Cancel::default(),
            build_timeout: None,
            metrics: std::sync::Arc::default(),
            limits: builder_core::exec::Limits::default(),
            tokens: None,
            jobs: std::sync::Arc::new(crate::jobs::Jobs::new(
                std::sync::Arc::new(
                    crate::records::Records::open(&dir.path().join("builds.sqlite"))
                        .unwrap()
                        .0,
                ),
                1,
                10,
            )),
            body_idle: std::time::Duration::from_secs(60),
            uploads: std::sync::Arc::new(tokio::sync::Semaphore::new(2)),
        };
        (dir, state)
    }

    /// A context tar holding `files` (path, content).
    fn context(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, content) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_cksum();
            b.append_data(&mut h, path, content.as_bytes()).unwrap();
        }
        b.into_inner().unwrap()
    }

    async fn body_json(res: axum::response::Response) -> serde_json::Value {
        let body = res.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    async fn lines(res: axum::response::Response) -> Vec<serde_json::Value> {
        let body = res.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&body)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn post(uri: &str, body: Vec<u8>) -> Request<Body> {
        Request::post(uri).body(Body::from(body)).unwrap()
    }

    #[tokio::test]
    async fn healthz_answers_ok() {
        let (_dir, state) = state();
        let res = app(state)
            .oneshot(Request::get("/healthz").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let json = body_json(res).await;
        assert_eq!(json["status"], "ok");
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    }

    /// Issue 14, item 8: every documented path and method is served (a 404 from it is the
    /// API's JSON one, never the router's empty one), and what is served is documented.
    #[tokio::test]
    async fn the_openapi_document_matches_what_the_router_serves() {
        let (_dir, state) = state();
        let res = app(state.clone())
            .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let doc = body_json(res).await;
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                documented.insert(format!("{} {path}", method.to_uppercase()));
                let uri = path
                    .replace("{id}", "0123456789abcdef0123")
                    .replace("{name}", "nope:v1");
                let req = Request::builder()
                    .method(method.to_uppercase().as_str())
                    .uri(&uri)
                    .body(Body::empty())
                    .unwrap();
                let res = app(state.clone()).oneshot(req).await.unwrap();
                let status = res.status();
                assert_ne!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                let body = res.into_body().collect().await.unwrap().to_bytes();
                if status == StatusCode::NOT_FOUND {
                    let err: serde_json::Value =
                        serde_json::from_slice(&body).unwrap_or_else(|_| {
                            panic!("{method} {path}: the router's 404, not the API's")
                        });
                    assert!(err["error"].is_string(), "{method} {path}: {err}");
                }
            }
        }
        let served = [
            "POST /v1/build",
            "POST /v1/builds",
            "GET /v1/builds",
            "GET /v1/builds/{id}",
            "DELETE /v1/builds/{id}",
            "GET /v1/builds/{id}/events",
            "GET /v1/builds/{id}/logs",
            "GET /v1/builds/{id}/image",
            "GET /v1/images",
            "GET /v1/images/{name}",
            "GET /metrics",
        ];
        let served: std::collections::BTreeSet<String> =
            served.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(documented, served);
        // A method the document does not list is not served.
        let res = app(state)
            .oneshot(Request::put("/v1/builds").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn unknown_route_is_404() {
        let (_dir, state) = state();
        let res = app(state)
            .oneshot(Request::get("/nope").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_build_streams_its_events_and_the_image_is_listed() {
        let (_dir, state) = state();
        let ctx = context(&[
            (
                "Dockerfile",
                "FROM scratch\nARG V=1\nLABEL v=$V\nCOPY app.txt /app.txt\n",
            ),
            ("app.txt", "hello"),
        ]);
        let res = app(state.clone())
            .oneshot(post("/v1/build?t=svc:v1&buildarg=V=2", ctx.clone()))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(res.headers()["content-type"], "application/x-ndjson");
        let events = lines(res).await;
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert!(
            kinds.contains(&"step") && kinds.contains(&"step_done"),
            "{kinds:?}"
        );
        let last = events.last().unwrap();
        assert_eq!(last["type"], "result", "{last}");
        assert_eq!(last["names"][0], "svc:v1");

        let res = app(state.clone())
            .oneshot(Request::get("/v1/images").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let list = body_json(res).await;
        assert_eq!(list[0]["name"], "svc:v1");
        assert_eq!(list[0]["id"], last["image_id"]);
        let res = app(state.clone())
            .oneshot(
                Request::get("/v1/images/svc:v1")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        let image = body_json(res).await;
        assert_eq!(image["Config"]["config"]["Labels"]["v"], "2");

        // The same context again: every step cached.
        let res = app(state.clone())
            .oneshot(post("/v1/build?t=svc:v1&buildarg=V=2", ctx))
            .await
            .unwrap();
        let again = lines(res).await;
        let last = again.last().unwrap();
        assert_eq!(last["cached"], last["steps"], "{last}");
    }

    #[tokio::test]
    async fn bad_requests_are_400_with_the_line_and_unknown_images_404() {
        let (_dir, state) = state();
        let res = app(state.clone())
            .oneshot(post(
                "/v1/build",
                context(&[("Dockerfile", "FROM scratch\nRUNN echo\n")]),
            ))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let err = body_json(res).await;
        assert_eq!(err["location"]["line"], 2, "{err}");
        assert!(err["causes"][0].as_str().unwrap().contains("RUNN"), "{err}");

        let res = app(state.clone())
            .oneshot(post("/v1/build", b"not a tar at all".repeat(40)))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        let res = app(state.clone())
            .oneshot(post("/v1/build", context(&[("other", "x")])))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);
        assert!(
            body_json(res).await["error"]
                .as_str()
                .unwrap()
                .contains("no Dockerfile")
        );
        let res = app(state.clone())
            .oneshot(post("/v1/build?bogus=1", context(&[])))
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::BAD_REQUEST);

        let res = app(state.clone())
            .oneshot(
                Request::get("/v1/images/nope:v1")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        // A build whose base is missing streams an error naming it.
        let res = app(state)
            .oneshot(post(
                "/v1/build",
                context(&[(
                    "Dockerfile",
                    "FROM scratch AS a\nCOPY --from=localhost:1/nope:v1 /x /x\n",
                )]),
            ))
            .await
            .unwrap();
        let events = lines(res).await;
        let last = events.last().unwrap();
        assert_eq!(last["type"], "error", "{last}");
        assert!(
            last["error"].as_str().unwrap().contains("line 2") || last["location"]["line"] == 2,
            "{last}"
        );
    }

    #[tokio::test]
    async fn a_build_over_a_real_socket() {
        let (_dir, state) = state();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, app(state)).await });
        let ctx = context(&[("Dockerfile", "FROM scratch\nCOPY a /a\n"), ("a", "a")]);
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!(
            "POST /v1/build?t=sock:v1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            ctx.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&ctx).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        assert!(response.contains(r#""type":"result""#), "{response}");
        assert!(response.contains("sock:v1"), "{response}");
        server.abort();
    }
}
