//! The API's OpenAPI document, served at `/openapi.json`. The paths come from the handlers'
//! `#[utoipa::path]` attributes as the router registers them (`utoipa-axum`), so a route cannot
//! be served without being documented, nor documented without being served.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};

/// What `POST /v1/build` and `POST /v1/builds` take in the query: `rbuild build`'s flags.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)] // Documentation only: the handlers read the query pair by pair.
pub(crate) struct BuildQuery {
    /// A tag (`t=app:v1`), repeated for more.
    t: Option<Vec<String>>,
    /// The Dockerfile's path in the context (default `Dockerfile`).
    f: Option<String>,
    /// A build argument, `KEY=VALUE`, repeated for more.
    buildarg: Option<Vec<String>>,
    /// A label, `KEY=VALUE`, repeated for more.
    label: Option<Vec<String>>,
    /// The stage to build.
    target: Option<String>,
    /// Build every step again.
    nocache: Option<bool>,
    /// Pull base images even when the store has them.
    pull: Option<bool>,
    /// Push the image under its tags.
    push: Option<bool>,
    /// `os/arch[/variant]`.
    platform: Option<String>,
    /// A cache to read (`type=registry,ref=…`), repeated for more.
    cachefrom: Option<Vec<String>>,
    /// A cache to write, repeated for more.
    cacheto: Option<Vec<String>>,
    /// `default` (a network of its own), `none`, or `host` (with `--allow-network-host`).
    network: Option<String>,
    /// Memory for each RUN (`512m`); at most the server's `--memory`.
    memory: Option<String>,
    /// Processes for each RUN; at most the server's `--pids-limit`.
    pidslimit: Option<u64>,
    /// CPUs for each RUN.
    cpus: Option<f64>,
    /// `NAME=SOFT[:HARD]`, repeated for more.
    ulimit: Option<Vec<String>>,
}

/// The bearer-token security scheme.
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document's frame; `app` adds the paths.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "rbuild-server",
        description = "Build Dockerfiles from posted contexts: streamed builds, build jobs with history, images. Send `Authorization: Bearer TOKEN` when the server has tokens."
    ),
    paths(crate::routes::images::inspect),
    modifiers(&Bearer),
    tags(
        (name = "builds", description = "Builds: streamed, or as jobs with records"),
        (name = "images", description = "The images in the server's store"),
        (name = "service", description = "Health and metrics"),
    )
)]
pub(crate) struct ApiDoc;
