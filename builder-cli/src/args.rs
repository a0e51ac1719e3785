//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// rbuild builds OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(name = "rbuild", version, about, long_about = None, propagate_version = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Parse a Dockerfile and print it, for editors, tooling and conformance checks.
    ///
    /// Without --check only the syntax is read, as BuildKit's parser reads it (a file with no FROM
    /// still parses). With --check the instructions are typed and the stages checked, as every
    /// build does.
    #[command(
        after_help = "Examples:\n  rbuild parse -f Dockerfile --format json\n  rbuild parse --check --build-arg GO_VERSION=1.22"
    )]
    Parse(ParseArgs),
    /// Print version information.
    Version,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ParseArgs {
    /// The Dockerfile to read (`-` for standard input).
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub(crate) file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub(crate) format: Format,
    /// Also type the instructions and check the stages (the semantic pass).
    #[arg(long)]
    pub(crate) check: bool,
    /// A build argument, `NAME=VALUE` (or `NAME` to take it from the environment), used by --check.
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub(crate) build_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// One line per instruction.
    Text,
    /// The JSON contract (see README).
    Json,
}
