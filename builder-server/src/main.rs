//! `rbuild-server`: the HTTP build service. CI workers `POST /v1/build` a context tar and read
//! the build's events as they happen (newline-delimited JSON); `GET /v1/images` lists what the
//! store holds.

mod app;
mod auth;
mod build;
mod docker;
mod error;
mod fleet;
mod jobs;
mod metrics;
mod openapi;
mod records;
mod routes;
mod state;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

/// rbuild's HTTP build service.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild-server",
    version,
    about,
    after_help = "Example:\n  rbuild-server --root /var/lib/rbuild --listen 127.0.0.1:8420 &\n  tar -C app -c . | curl -sN --data-binary @- 'http://127.0.0.1:8420/v1/build?t=app:v1'"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8420")]
    listen: SocketAddr,
    /// The store builds write to (default: `$RBUILD_ROOT`, else `/var/lib/rbuild`).
    #[arg(long)]
    root: Option<PathBuf>,
    /// A registry spoken to over plain HTTP (loopback ones always are).
    #[arg(long = "insecure-registry", value_name = "HOST")]
    insecure_registries: Vec<String>,
    /// Let builds use the host's network (`network=host`, `RUN --network=host`). Without it a
    /// RUN gets a network namespace of its own, which cannot reach this server or any other
    /// service on the host's loopback.
    #[arg(long)]
    allow_network_host: bool,
    /// How RUN is kept apart: `namespaces` (the default: a build fails where they cannot be
    /// made), `chroot` (in a container that may not make namespaces; RUN then shares this
    /// server's network and pid namespace, so give the server a pod of its own), or `auto`.
    #[arg(
        long,
        value_name = "namespaces|chroot|auto",
        default_value = "namespaces"
    )]
    isolation: builder_core::exec::Isolation,
    /// Who may build: a file of `TOKEN TENANT` lines (read again on SIGHUP). Without it,
    /// `RBUILD_TOKENS` holds the same text. Clients send `Authorization: Bearer TOKEN`.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,
    /// Listen on a non-loopback address without tokens: anyone who reaches it can run any
    /// RUN. Only for a network that is itself the boundary.
    #[arg(long)]
    insecure_no_auth: bool,
    /// The most a posted build context may be, as posted (`512m`, `10g`); a larger one is
    /// refused with 413, by its `Content-Length` or while it streams.
    #[arg(long, value_name = "SIZE", default_value = "10g", value_parser = builder_core::exec::parse_bytes)]
    max_context_size: u64,
    /// On SIGTERM or Ctrl-C, how long running builds may take to finish (new connections
    /// are refused meanwhile) before they are cancelled as interrupted.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    grace: u64,
    /// How long one build may take in all (pulls, RUNs, export); past it the build is
    /// cancelled and fails saying so.
    #[arg(long, value_name = "SECONDS")]
    build_timeout: Option<u64>,
    /// The most memory any RUN may use (`512m`, `2g`); a build may ask for less.
    #[arg(long, value_name = "SIZE", value_parser = builder_core::exec::parse_bytes)]
    memory: Option<u64>,
    /// The most processes any RUN may have; a build may ask for fewer.
    #[arg(long, value_name = "N")]
    pids_limit: Option<u64>,
    /// How many posted builds (`POST /v1/builds`) run at once (default: the machine's cores).
    #[arg(long, value_name = "N")]
    max_builds: Option<usize>,
    /// How many contexts are received and unpacked at once (default: --max-builds); more
    /// uploads wait, held back by TCP, so memory does not grow with the number posted.
    #[arg(long, value_name = "N")]
    max_uploads: Option<usize>,
    /// How many builds one tenant may have waiting; past it a post gets 429 with Retry-After.
    #[arg(long, value_name = "N", default_value_t = 100)]
    max_queued: usize,
    /// Keep the records (options, events, results) of this many finished builds.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    keep_builds: u64,
    /// Remove records of builds posted more than this many days ago.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    keep_days: u64,
    /// After a build, drop the least recently used step-cache records (and the layers only they
    /// hold) until the store's blobs fit in this size (`20g`), as BuildKit's gcpolicy does.
    #[arg(long, value_name = "SIZE", value_parser = builder_core::exec::parse_bytes)]
    cache_max_size: Option<u64>,
    /// How long a request body may send nothing before it is refused with 408.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    body_timeout: u64,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Fleet mode: records, events, tenants and the queue in this PostgreSQL database
    /// (`postgres://user@host/db`), shared by every replica; SQLite under --root otherwise.
    #[arg(
        long,
        value_name = "URL",
        env = "RBUILD_DATABASE",
        requires = "context_store"
    )]
    database: Option<String>,
    /// Fleet mode: where posted contexts are kept for the replica that runs them
    /// (`registry:5000/rbuild/contexts`).
    #[arg(long, value_name = "REPO")]
    context_store: Option<String>,
    /// Fleet mode: the step cache every build reads and writes (`registry:5000/rbuild/cache:steps`).
    #[arg(long, value_name = "REF")]
    cache_registry: Option<String>,
    /// Fleet mode: this replica's name in the records (default: HOSTNAME:PORT).
    #[arg(long, value_name = "NAME")]
    replica_name: Option<String>,
    /// Fleet mode: how long a claimed build's lease lasts; a replica that stops renewing it
    /// (it died) loses the build to another after this.
    #[arg(long, value_name = "SECONDS", default_value_t = 15)]
    lease_seconds: u64,
    /// Ask the server at --listen for `/healthz` and exit 0 if it answers 200, 1 if not (for a
    /// container's health check: the image has no curl).
    #[arg(long)]
    health_check: bool,
    /// Log as JSON lines (for a log collector) instead of text.
    #[arg(long)]
    log_json: bool,
}

/// Resolves at SIGTERM or Ctrl-C; then, past `grace`, sets `shutdown` (which cancels every
/// build still running).
async fn stopped(
    grace: std::time::Duration,
    shutdown: builder_core::cancel::Cancel,
    jobs: std::sync::Arc<jobs::Jobs>,
    handle: Option<axum_server::Handle>,
) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = term => {}
    }
    tracing::info!(
        grace_seconds = grace.as_secs(),
        "shutting down: no new connections or builds; running builds may finish within the grace"
    );
    // Queued jobs end `interrupted` now: nothing starts after a SIGTERM.
    let drained = std::sync::Arc::clone(&jobs);
    let _ = tokio::task::spawn_blocking(move || drained.drain()).await;
    if let Some(h) = handle {
        h.graceful_shutdown(None);
    }
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        tracing::warn!("grace over: cancelling the builds still running");
        shutdown.cancel();
    });
}

/// The service's tokens: `--tokens FILE` (reloaded on SIGHUP once the runtime runs), else
/// `RBUILD_TOKENS`, else none, which only a loopback address (or `--insecure-no-auth`) allows.
fn tokens(args: &Args) -> anyhow::Result<auth::Shared> {
    let tokens = match (&args.tokens, std::env::var("RBUILD_TOKENS")) {
        (Some(path), _) => Some(auth::Tokens::load(path)?),
        (None, Ok(text)) => Some(auth::Tokens::parse(&text, "RBUILD_TOKENS")?),
        (None, Err(_)) => None,
    };
    match &tokens {
        Some(t) => {
            let (n, tenants) = t.counts();
            tracing::info!("authentication: {n} tokens, {tenants} tenants");
        }
        None if args.listen.ip().is_loopback() => tracing::warn!(
            "authentication: none (no --tokens); only this machine can connect, and anyone on it can build"
        ),
        None if args.insecure_no_auth => tracing::warn!(
            "authentication: none (--insecure-no-auth); anyone who reaches {} can run any RUN",
            args.listen
        ),
        None => anyhow::bail!(
            "refusing to listen on {} without tokens: give --tokens FILE (or RBUILD_TOKENS), listen on loopback, or pass --insecure-no-auth",
            args.listen
        ),
    }
    Ok(tokens.map(|t| std::sync::Arc::new(std::sync::RwLock::new(t))))
}

/// The cheap part of `rbuild fsck` (no blob hashed, no snapshot walked), repairing what it
/// finds, so a store a crash left broken is whole before the first build: a killed build's work
/// directories went when the store was opened. A store other processes keep busy is checked
/// without repair.
fn check_store(store: &builder_core::solve::Store) {
    use builder_core::solve::{FsckOptions, fsck};
    let quick = store
        .clone()
        .with_lock_timeout(std::time::Duration::from_secs(10));
    let report = fsck(
        &quick,
        FsckOptions {
            repair: true,
            quick: true,
        },
    )
    .or_else(|_| {
        fsck(
            store,
            FsckOptions {
                repair: false,
                quick: true,
            },
        )
    });
    match report {
        Ok(r) => {
            for p in &r.problems {
                let done = if p.repaired {
                    "removed"
                } else {
                    "run `rbuild fsck --repair`"
                };
                tracing::warn!("store check: {} ({done})", p.what);
            }
            tracing::info!(
                "store check: {} tags, {} step-cache records, {} snapshots, {} problems",
                r.tags,
                r.cache_records,
                r.snapshots,
                r.problems.len()
            );
        }
        Err(e) => tracing::error!("store check failed: {e}"),
    }
}

/// Logs to stderr: text, or JSON lines with `--log-json`; `RBUILD_LOG` filters (`info` by
/// default, `rbuild_server=debug`, …).
fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RBUILD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// The build records under the store, and the jobs over them.
fn jobs(root: &std::path::Path, args: &Args) -> anyhow::Result<std::sync::Arc<jobs::Jobs>> {
    let dir = root.join("server");
    fs_err::create_dir_all(&dir)?;
    let (records, interrupted) = match &args.database {
        Some(url) => {
            let pg = fleet::Pg::connect(url).context("cannot open the fleet's database")?;
            (records::Records::Postgres(pg), 0)
        }
        None => records::Records::open(&dir.join("builds.sqlite"))?,
    };
    if interrupted > 0 {
        tracing::warn!(
            builds = interrupted,
            "builds the last run left queued or running are now interrupted"
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut jobs = jobs::Jobs::new(
        std::sync::Arc::new(records),
        args.max_builds.unwrap_or(cores),
        args.max_queued,
    );
    jobs.keep_builds = args.keep_builds;
    jobs.keep_ms = i64::try_from(args.keep_days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    jobs.cache_max_size = args.cache_max_size;
    if args.database.is_some() {
        let host = fs_err::read_to_string("/proc/sys/kernel/hostname")
            .map_or_else(|_| "replica".into(), |h| h.trim().to_owned());
        let settings = fleet::Settings {
            me: args
                .replica_name
                .clone()
                .unwrap_or_else(|| format!("{host}:{}", args.listen.port())),
            context_store: args.context_store.clone().unwrap_or_default(),
            cache_registry: args.cache_registry.clone(),
            lease: std::time::Duration::from_secs(args.lease_seconds.max(1)),
        };
        tracing::info!(replica = %settings.me, "fleet mode: records and queue in PostgreSQL");
        jobs.fleet = Some((settings, std::sync::Arc::default()));
    }
    tracing::info!(
        max_builds = jobs.max_builds,
        max_queued = jobs.max_queued,
        "build jobs: records at {}",
        dir.join("builds.sqlite").display()
    );
    Ok(std::sync::Arc::new(jobs))
}

/// Serves `app` until a shutdown has drained it, over TLS when given a certificate.
async fn serve(
    args: &Args,
    app: axum::Router,
    stop: impl Future<Output = ()> + Send + 'static,
    handle: axum_server::Handle,
) -> anyhow::Result<()> {
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
            .await
            .with_context(|| {
                format!(
                    "cannot read the TLS certificate `{}` or key `{}`",
                    cert.display(),
                    key.display()
                )
            })?;
        let listener = std::net::TcpListener::bind(args.listen)
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!(
            "rbuild-server listening on https://{}",
            listener.local_addr()?
        );
        tokio::spawn(stop);
        axum_server::from_tcp_rustls(listener, config)
            .handle(handle)
            .serve(app.into_make_service())
            .await?;
    } else {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        tracing::info!("rbuild-server listening on {}", listener.local_addr()?);
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await?;
    }
    Ok(())
}

/// `--health-check`: `GET /healthz` on `listen` (its loopback when it is a wildcard).
fn health_check(listen: SocketAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let mut addr = listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let timeout = std::time::Duration::from_secs(3);
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head)?;
    anyhow::ensure!(
        head.starts_with(b"HTTP/1.0 200") || head.starts_with(b"HTTP/1.1 200"),
        "{addr}/healthz answered {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // RUN's sandbox helper is this binary re-executed; it must start before any thread.
    builder_core::exec::helper_main();
    let args = Args::parse();
    if args.health_check {
        return health_check(args.listen);
    }
    init_logs(args.log_json);
    if args.isolation == builder_core::exec::Isolation::None {
        anyhow::bail!(
            "--isolation none hands each build the server's own root: a server runs many builds; use `namespaces` or `chroot`"
        );
    }
    let tokens = tokens(&args)?;
    let root = args
        .root
        .clone()
        .or_else(|| std::env::var_os("RBUILD_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/rbuild"));
    let store = builder_core::solve::Store::open(&root)
        .with_context(|| format!("cannot open the store at `{}`", root.display()))?;
    check_store(&store);
    let jobs = jobs(&root, &args)?;
    let state = state::AppState {
        builder: builder_core::solve::Builder::new(store.clone()),
        store,
        registry: builder_core::registry::Options {
            insecure: args.insecure_registries.clone(),
            ..builder_core::registry::Options::default()
        },
        allow_network_host: args.allow_network_host,
        isolation: args.isolation,
        tokens: tokens.clone(),
        max_context_size: args.max_context_size,
        shutdown: builder_core::cancel::Cancel::new(),
        build_timeout: args.build_timeout.map(std::time::Duration::from_secs),
        metrics: std::sync::Arc::default(),
        limits: builder_core::exec::Limits {
            memory: args.memory,
            pids: args.pids_limit,
            cpus: None,
        },
        uploads: std::sync::Arc::new(tokio::sync::Semaphore::new(
            args.max_uploads.unwrap_or(jobs.max_builds).max(1),
        )),
        jobs: std::sync::Arc::clone(&jobs),
        body_idle: std::time::Duration::from_secs(args.body_timeout.max(1)),
    };
    let shutdown = state.shutdown.clone();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            if let (Some(path), Some(shared)) = (&args.tokens, &tokens) {
                auth::reload_on_hangup(path.clone(), std::sync::Arc::clone(shared))?;
            }
            if let Some((settings, bell)) = &jobs.fleet {
                let runner = std::sync::Arc::new(jobs::FleetRunner {
                    state: state.clone(),
                    runtime: tokio::runtime::Handle::current(),
                });
                fleet::dispatch(
                    std::sync::Arc::clone(&jobs.records),
                    settings.clone(),
                    runner,
                    std::sync::Arc::clone(bell),
                );
            }
            let grace = std::time::Duration::from_secs(args.grace);
            let handle = axum_server::Handle::new();
            let tls = args.tls_cert.is_some().then(|| handle.clone());
            let stop = stopped(grace, shutdown, std::sync::Arc::clone(&jobs), tls);
            serve(&args, app::app(state), stop, handle).await?;
            // Connections are done; jobs nobody follows may still run until the grace ends.
            while jobs.counts().1 > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            tracing::info!("rbuild-server stopped");
            Ok(())
        })
}
