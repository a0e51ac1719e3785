//! Build errors.

use std::path::PathBuf;

/// What can go wrong in a build.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Dockerfile (or an ONBUILD trigger read back from an image) is wrong.
    #[error("invalid Dockerfile `{path}`")]
    Dockerfile {
        /// The file, or `<ONBUILD trigger>`.
        path: PathBuf,
        /// What is wrong, and where.
        #[source]
        source: Box<crate::dockerfile::ParseError>,
    },
    /// Planning failed (an unknown `--target`).
    #[error(transparent)]
    Plan(#[from] crate::plan::Error),
    /// Reading the context failed.
    #[error(transparent)]
    Context(#[from] crate::context::Error),
    /// A directory `--build-context` cannot be opened.
    #[error("build context `{name}`")]
    NamedContext {
        /// Its name.
        name: String,
        /// Why.
        #[source]
        source: crate::context::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::Error),
    /// Assembling an image failed.
    #[error(transparent)]
    Image(#[from] crate::oci::Error),
    /// Applying a layer failed.
    #[error(transparent)]
    Apply(#[from] crate::snapshot::ApplyError),
    /// A file operation failed.
    #[error("I/O error on `{path}`")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A step failed; the cause says why.
    #[error("{keyword} failed (Dockerfile line {line}): `{instruction}`")]
    Step {
        /// The instruction's keyword.
        keyword: String,
        /// Its line.
        line: usize,
        /// The instruction as written.
        instruction: String,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// `RUN --network=host` where the build does not allow it (a service's default).
    #[error("RUN with the host's network is not allowed here")]
    NetworkHostDenied,
    /// `RUN --network=none` (or `--network none`) under chroot isolation, which has no
    /// network namespace to give.
    #[error(
        "RUN --network=none needs a network namespace, and chroot isolation cannot make one here; give the builder's container no network instead"
    )]
    NetworkNoneUnderChroot,
    /// One cache mounted at two targets of one RUN under chroot (or no) isolation, where the
    /// directory is moved into the root.
    #[error(
        "the cache mounted at `{target}` is mounted twice in this RUN; chroot isolation moves a cache into the root, so it can be at one target only"
    )]
    CacheMountedTwice {
        /// The second target.
        target: String,
    },
    /// `--isolation none` outside a container: it would make the host's root the stage's.
    #[error(
        "--isolation none runs RUN in this machine's own root, which it first makes the stage's filesystem: it runs only inside a container (/.dockerenv, /run/.containerenv or $container), one build per container"
    )]
    NoneOutsideContainer,
    /// Chroot isolation outside a container, whose device rules are what keep device nodes
    /// closed to RUN there (it has no `nodev` mount); with `auto`, why namespaces failed.
    #[error(
        "chroot isolation runs only inside a container (/.dockerenv, /run/.containerenv or $container), whose device rules stand in for the sandbox's nodev mounts{}",
        why.as_ref().map(|w| format!("; and the namespaced sandbox cannot be made here: {w}")).unwrap_or_default()
    )]
    ChrootOutsideContainer {
        /// Why the namespaces could not be made, when `auto` fell back.
        why: Option<String>,
    },
    /// Under `--isolation none`, the stage has a file where `/` must keep a directory (it
    /// holds a mount point, the store or the context).
    #[error(
        "--isolation none: the stage has no directory at `{path}`, which holds what the builder must keep (a mount point, the store or the context)"
    )]
    NoneKeeps {
        /// The path in `/`.
        path: String,
    },
    /// RUN's network could not be set up.
    #[error("RUN's network cannot be set up: {reason}")]
    Network {
        /// Why.
        reason: String,
    },
    /// A step's key needs what only a build fetches (`rbuild plan` computes keys offline).
    #[error("its key needs {what}, which only a build fetches")]
    KeyUnknown {
        /// What.
        what: String,
    },
    /// `RUN --mount=type=ssh` whose agent cannot be had.
    #[error("ssh mount `{id}`: {reason}")]
    Ssh {
        /// The mount's id.
        id: String,
        /// Why.
        reason: String,
    },
    /// RUN of a foreign architecture without a `binfmt_misc` handler for it.
    #[error("{}", crate::exec::binfmt_help(.arch))]
    NoEmulator {
        /// The architecture (OCI's name).
        arch: String,
    },
    /// Something this version cannot do yet.
    #[error("{what} is not supported yet")]
    Unsupported {
        /// What.
        what: String,
    },
    /// A base image that is not in the local store.
    #[error("image `{name}` is not in the local store")]
    ImageNotFound {
        /// The reference.
        name: String,
    },
    /// A shared cache that cannot be read or written.
    #[error("cache: {what}")]
    Cache {
        /// What went wrong.
        what: String,
    },
    /// A registry cache that cannot be read or written.
    #[error("cache `{reference}` cannot be used")]
    CacheRegistry {
        /// The cache's reference.
        reference: String,
        /// What the registry said.
        #[source]
        source: Box<crate::registry::Error>,
    },
    /// The build was cancelled (its client went away, or its caller asked).
    #[error("the build was cancelled")]
    Cancelled,
    /// A base image that could not be pulled.
    #[error(
        "cannot pull image `{name}`{}",
        if *local { " (it is not in the local store either)" } else { "" }
    )]
    Pull {
        /// The reference as written.
        name: String,
        /// Whether the local store was looked in first (not with `--pull`).
        local: bool,
        /// What the registry (or the network) said.
        #[source]
        source: Box<crate::registry::Error>,
    },
    /// A COPY or ADD source that does not exist.
    #[error("`{path}` not found in {place}")]
    SourceNotFound {
        /// The source as written.
        path: String,
        /// `the build context`, `stage build`.
        place: String,
    },
    /// Variable expansion failed.
    #[error("cannot expand `{word}`")]
    Expand {
        /// The word.
        word: String,
        /// Why.
        #[source]
        source: crate::dockerfile::ExpandError,
    },
    /// A `--chmod` or `--chown` that cannot be applied.
    #[error("invalid {flag} value `{value}`: {reason}")]
    InvalidFlag {
        /// `--chmod`.
        flag: &'static str,
        /// The value.
        value: String,
        /// Why.
        reason: String,
    },
    /// A destination whose path goes through a file of the image.
    #[error("cannot make `{path}` a directory: not a directory in the image")]
    NotADirectory {
        /// The part of the path that is a file.
        path: String,
    },
    /// A `USER` naming a user or group the image does not have.
    #[error("unable to find {what} {name}: no matching entries in the image's /etc/{}", if *what == "user" { "passwd" } else { "group" })]
    UnknownUser {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A git source that could not be fetched or checked out.
    #[error("git source `{url}`: {reason}")]
    Git {
        /// The URL as written.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A remote file that could not be fetched.
    #[error("cannot download `{url}`: {reason}")]
    Download {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A remote file whose bytes do not match `--checksum`.
    #[error("checksum mismatch for `{url}`: expected `{expected}`, got `{actual}`")]
    ChecksumMismatch {
        /// The URL.
        url: String,
        /// The `--checksum` given.
        expected: crate::digest::Digest,
        /// What the bytes hash to.
        actual: crate::digest::Digest,
    },
    /// A RUN whose command failed.
    #[error("the command exited with status {code}{}", if last_lines.is_empty() { String::new() } else { format!("; its last output:\n{}", last_lines.join("\n")) })]
    RunFailed {
        /// The exit status.
        code: i32,
        /// The last lines it printed.
        last_lines: Vec<String>,
    },
    /// A RUN whose processes went past `--memory` and were killed by the kernel.
    #[error("the command ran out of memory{} and was killed{}", limit.map(|l| format!(" (--memory {} MiB)", l >> 20)).unwrap_or_default(), if last_lines.is_empty() { String::new() } else { format!("; its last output:\n{}", last_lines.join("\n")) })]
    OutOfMemory {
        /// The limit, in bytes.
        limit: Option<u64>,
        /// The last lines it printed.
        last_lines: Vec<String>,
    },
    /// A RUN that outlived `--run-timeout`; it and everything it started were killed.
    #[error("the command ran longer than {}s and was killed{}", limit.as_secs_f64(), if last_lines.is_empty() { String::new() } else { format!("; its last output:\n{}", last_lines.join("\n")) })]
    RunTimedOut {
        /// The timeout.
        limit: std::time::Duration,
        /// The last lines it printed.
        last_lines: Vec<String>,
    },
    /// A secret that RUN requires and the build was not given.
    #[error("secret `{id}` is required but was not given (pass --secret id={id},src=FILE)")]
    MissingSecret {
        /// The secret's id.
        id: String,
    },
    /// The sandbox could not run.
    #[error(transparent)]
    Sandbox(#[from] crate::exec::Error),
    /// An archive ADD cannot extract.
    #[error("cannot extract archive `{path}`")]
    Archive {
        /// The archive.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::snapshot::ApplyError,
    },
    /// A broken invariant: a bug in rbuild.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// The cause at the bottom of a failed step ([`Error::Step`]'s), else the error itself.
    pub fn root(&self) -> &Error {
        match self {
            Self::Step { source, .. } => source.root(),
            other => other,
        }
    }
}

pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// The build's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
