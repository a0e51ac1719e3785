//! Registry errors: each names the reference (or registry) and what the registry said.

use std::path::PathBuf;

use crate::digest::Digest;

/// What can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference that does not parse.
    #[error("invalid image reference `{reference}`: {reason}")]
    InvalidReference {
        /// The text given.
        reference: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A `--platform` that does not parse.
    #[error("invalid platform `{platform}`: expected `os/arch[/variant]`")]
    InvalidPlatform {
        /// The text given.
        platform: String,
    },
    /// The registry could not be reached, or the connection broke.
    #[error("cannot reach registry `{registry}` for `{reference}` ({url})")]
    Connect {
        /// The registry host.
        registry: String,
        /// The reference being worked on.
        reference: String,
        /// The URL requested.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// A layer that decompresses to more than any real layer of its size could: a
    /// decompression bomb.
    #[error(
        "`{reference}`: layer `{layer}` from `{registry}` decompresses to more than {limit} bytes ({compressed} compressed); refused"
    )]
    Bomb {
        /// The registry host.
        registry: String,
        /// The reference being worked on.
        reference: String,
        /// The layer's digest.
        layer: String,
        /// Its size in the manifest.
        compressed: u64,
        /// The bound its decompressed bytes went past.
        limit: u64,
    },
    /// The operation's cancel token was set.
    #[error("cancelled")]
    Cancelled,
    /// The connection broke while a body was being read.
    #[error("`{reference}`: the download of {what} from `{registry}` broke off")]
    Interrupted {
        /// The registry host.
        registry: String,
        /// The reference being worked on.
        reference: String,
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The registry refused the credentials, or there were none and it wants some.
    #[error("registry `{registry}` denied access to `{reference}`: {message}")]
    Unauthorized {
        /// The registry host.
        registry: String,
        /// The reference being worked on.
        reference: String,
        /// What the registry (or its token server) said.
        message: String,
    },
    /// The repository, tag, manifest or blob does not exist.
    #[error("`{reference}`: {what} not found in registry `{registry}`: {message}")]
    NotFound {
        /// The registry host.
        registry: String,
        /// The reference being worked on.
        reference: String,
        /// What was asked for (`manifest`, `blob sha256:…`).
        what: String,
        /// What the registry said.
        message: String,
    },
    /// Any other error status.
    #[error(
        "registry `{registry}` answered {status} to {method} {url} for `{reference}`: {message}"
    )]
    Status {
        /// The registry host.
        registry: String,
        /// The reference being worked on.
        reference: String,
        /// The request method.
        method: String,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What the registry said.
        message: String,
    },
    /// Content whose digest is not the one asked for; it is never stored.
    #[error("`{reference}`: digest mismatch for {what}: expected `{expected}`, got `{actual}`")]
    DigestMismatch {
        /// The reference being worked on.
        reference: String,
        /// What was fetched.
        what: String,
        /// The digest asked for.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// An index without a manifest for the wanted platform.
    #[error("`{reference}` has no image for platform `{platform}` (it has: {available})")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// The platform wanted.
        platform: String,
        /// The platforms the index lists.
        available: String,
    },
    /// A manifest or layer kind rbuild does not handle.
    #[error("`{reference}`: unsupported {what} `{media_type}`")]
    Unsupported {
        /// The reference.
        reference: String,
        /// Manifest, layer…
        what: &'static str,
        /// Its media type.
        media_type: String,
    },
    /// A manifest, config or token response that is not what the protocol says.
    #[error("`{reference}`: invalid {what} from the registry")]
    Invalid {
        /// The reference.
        reference: String,
        /// What was being read.
        what: &'static str,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A certificate or key in the certificates directory that cannot be used.
    #[error("TLS files for registry `{registry}` are unusable (`{path}`): {message}")]
    Tls {
        /// The registry.
        registry: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A credential helper failed.
    #[error("credential helper `docker-credential-{helper}` failed for `{registry}`: {message}")]
    CredentialHelper {
        /// The helper's name.
        helper: String,
        /// The registry.
        registry: String,
        /// What it printed, or why it could not run.
        message: String,
    },
    /// The docker config file cannot be read or written.
    #[error("docker config `{path}` is unusable: {message}")]
    DockerConfig {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A file operation failed.
    #[error("I/O error on `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// An image in the store could not be read or written.
    #[error(transparent)]
    Image(#[from] crate::oci::Error),
}
