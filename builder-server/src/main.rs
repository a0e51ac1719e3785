//! `rbuild-server`: the HTTP build service. For now it answers `GET /healthz`; builds arrive with
//! the service issue.

mod app;
mod routes;

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;

/// rbuild's HTTP build service.
#[derive(Debug, Parser)]
#[command(name = "rbuild-server", version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8420")]
    listen: SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("rbuild-server listening on {}", listener.local_addr()?);
    axum::serve(listener, app::app())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
