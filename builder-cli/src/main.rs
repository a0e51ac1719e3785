//! `rbuild`: a daemonless Dockerfile image builder.

mod args;
mod commands;
mod progress;
mod render;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // The sandbox helper for RUN is this binary re-executed; it must start before any thread.
    builder_core::exec::helper_main();
    // Rootless with subordinate ids: the builder re-runs itself in a user namespace (no-op as
    // root); this too must happen before any thread.
    builder_core::exec::rootless_reexec();
    let argv = args::implicit_build(std::env::args_os().collect());
    if let Some(message) = args::docker_only_flag(&argv) {
        render::error(&anyhow::anyhow!(message));
        return ExitCode::from(2);
    }
    let cli = args::Cli::parse_from(argv);
    match commands::run(cli) {
        Ok(code) => code,
        Err(err) => {
            render::error(&err);
            ExitCode::FAILURE
        }
    }
}
