//! Registries (the OCI distribution API): references normalised as docker does, pull (OCI and
//! Docker manifests, indexes with platform selection, layers streamed, verified and
//! decompressed into the store, several at a time), push (existence checks, cross-repository
//! mounts, monolithic and chunked uploads, OCI or Docker manifests), and logins kept in docker's
//! `config.json` (with credential helpers). Bearer-token and basic auth, plain HTTP for loopback
//! and `--insecure-registry` hosts, retries with backoff on 429, 5xx and broken connections.
//!
//! HTTP is `reqwest` (blocking, rustls) rather than `oci-client`: the builder is synchronous
//! and already links reqwest for `ADD <url>`; `oci-client` brings tokio into every pull and
//! holds whole layers in memory in its simple API, while this module streams each layer from
//! the socket through the hasher and decompressor into the store.
//!
//! Imports: `digest`, `store`, `oci` (see `tests/architecture.rs`).

mod auth;
mod client;
mod error;
mod pull;
mod push;
mod reference;

pub use auth::{Credentials, default_config_path};
pub use client::Options;
pub use error::Error;
pub use pull::{Platform, Pulled, pull};
pub use push::{ManifestFormat, PushOptions, Pushed, push};
pub use reference::{DOCKER_HUB, Reference};

/// A `Result` with this module's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks `username`/`password` against `registry` (answering its challenge as a pull would)
/// and saves them in docker's config, so docker and rbuild share the login.
pub fn login(registry: &str, username: &str, password: &str, opts: &Options) -> Result<()> {
    let reference: Reference = format!("{registry}/login-check").parse()?;
    let client = client::Client::with_credentials(
        &reference,
        opts,
        Some(Credentials::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        }),
    );
    let resp = client.send(
        &reqwest::Method::GET,
        "/v2/",
        &[],
        &reqwest::header::HeaderMap::new(),
        None,
    )?;
    client.check(resp, &reqwest::Method::GET, "API")?;
    auth::store(&opts.docker_config, &reference.registry, username, password)
}

/// Forgets the login for `registry`; says whether there was one.
pub fn logout(registry: &str, opts: &Options) -> Result<bool> {
    let reference: Reference = format!("{registry}/logout").parse()?;
    auth::erase(&opts.docker_config, &reference.registry)
}
