//! `rbuild-server`: the HTTP build service. CI workers `POST /v1/build` a context tar and read
//! the build's events as they happen (newline-delimited JSON); `GET /v1/images` lists what the
//! store holds.

mod app;
mod auth;
mod error;
mod metrics;
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
}

/// Resolves at SIGTERM or Ctrl-C; then, past `grace`, sets `shutdown` (which cancels every
/// build still running).
async fn stopped(grace: std::time::Duration, shutdown: builder_core::cancel::Cancel) {
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
    eprintln!(
        "shutting down: no new connections; running builds have {} s to finish",
        grace.as_secs()
    );
    tokio::spawn(async move {
        tokio::time::sleep(grace).await;
        eprintln!("grace over: cancelling the builds still running");
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
            eprintln!("authentication: {n} tokens, {tenants} tenants");
        }
        None if args.listen.ip().is_loopback() => eprintln!(
            "authentication: none (no --tokens); only this machine can connect, and anyone on it can build"
        ),
        None if args.insecure_no_auth => eprintln!(
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
                eprintln!("store check: {} ({done})", p.what);
            }
            eprintln!(
                "store check: {} tags, {} step-cache records, {} snapshots, {} problems",
                r.tags,
                r.cache_records,
                r.snapshots,
                r.problems.len()
            );
        }
        Err(e) => eprintln!("store check failed: {e}"),
    }
}

fn main() -> anyhow::Result<()> {
    // RUN's sandbox helper is this binary re-executed; it must start before any thread.
    builder_core::exec::helper_main();
    let args = Args::parse();
    let tokens = tokens(&args)?;
    let root = args
        .root
        .or_else(|| std::env::var_os("RBUILD_ROOT").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("/var/lib/rbuild"));
    let store = builder_core::solve::Store::open(&root)
        .with_context(|| format!("cannot open the store at `{}`", root.display()))?;
    check_store(&store);
    let state = state::AppState {
        builder: builder_core::solve::Builder::new(store.clone()),
        store,
        registry: builder_core::registry::Options {
            insecure: args.insecure_registries,
            ..builder_core::registry::Options::default()
        },
        allow_network_host: args.allow_network_host,
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
    };
    let shutdown = state.shutdown.clone();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(async {
            if let (Some(path), Some(shared)) = (&args.tokens, &tokens) {
                auth::reload_on_hangup(path.clone(), std::sync::Arc::clone(shared))?;
            }
            let listener = tokio::net::TcpListener::bind(args.listen)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
            eprintln!("rbuild-server listening on {}", listener.local_addr()?);
            let grace = std::time::Duration::from_secs(args.grace);
            axum::serve(listener, app::app(state))
                .with_graceful_shutdown(stopped(grace, shutdown))
                .await?;
            eprintln!("rbuild-server stopped");
            Ok(())
        })
}
