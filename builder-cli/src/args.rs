//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// rbuild builds OCI images from Dockerfiles, without a daemon.
#[derive(Debug, Parser)]
#[command(
    name = "rbuild",
    version,
    about,
    long_about = None,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = "Examples:\n  rbuild -t app:v1 .                      build (as `docker build`)\n  rbuild build --progress plain -o type=oci,dest=app.tar .\n  rbuild images\n  rbuild push app:v1 registry.example.com/team/app:v1"
)]
pub(crate) struct Cli {
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help = "The store: images, layers and cache [env: RBUILD_ROOT; default: $XDG_DATA_HOME/rbuild, or /var/lib/rbuild as root]"
    )]
    pub(crate) root: Option<PathBuf>,
    /// A registry spoken to over plain HTTP, as `host[:port]` (loopback ones always are); may be
    /// given several times.
    #[arg(long = "insecure-registry", global = true, value_name = "HOST")]
    pub(crate) insecure_registries: Vec<String>,
    /// Seconds a registry may stay silent (no answer, or nothing more of a body) before the
    /// request fails; uploads get an hour in all.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) registry_timeout: u64,
    /// Seconds to wait for the store's lock (a prune waits for running builds, builds wait
    /// behind a prune) before failing with who holds it.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 600)]
    pub(crate) lock_timeout: u64,
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
    /// Build an image from a Dockerfile and a context directory.
    #[command(
        after_help = "Examples:\n  rbuild build -t app:v1 .\n  rbuild build -f docker/Dockerfile -o type=oci,dest=app.tar --compression zstd ."
    )]
    Build(Box<BuildOptions>),
    /// Build the services of a Compose file (`build:` sections, `image:` as the tag), as
    /// `docker compose build` and `docker buildx bake` do.
    ///
    /// Variables are interpolated from the environment, then the project's `.env`. Services
    /// are built one after another in one store, so a step two services share runs once and the
    /// other finds it in the cache.
    #[command(
        after_help = "Examples:\n  rbuild bake\n  rbuild bake -f deploy/compose.yaml web worker --push\n  rbuild bake --print"
    )]
    Bake(BakeArgs),
    /// Show or register the `binfmt_misc` handlers that let RUN execute other architectures'
    /// binaries through QEMU (Debian's qemu-user-static).
    ///
    /// Registering changes the whole machine, so rbuild never does it by itself.
    #[command(after_help = "Examples:\n  rbuild binfmt\n  rbuild binfmt --install arm64 riscv64")]
    Binfmt {
        /// Register the handlers (as root; mounts `binfmt_misc` if need be).
        #[arg(long)]
        install: bool,
        /// The architectures (default: arm64, arm, riscv64, ppc64le, s390x, 386, amd64).
        arches: Vec<String>,
    },
    /// Print the op graph of a build without building: each op (source, exec, file, config)
    /// with every value expanded, and the ops it reads.
    ///
    /// Base images are read from the store (`rbuild pull` brings one that is not there).
    #[command(
        after_help = "Examples:\n  rbuild plan .\n  rbuild plan --format dot . | dot -Tsvg > plan.svg"
    )]
    Plan {
        /// `json` or `dot` (Graphviz).
        #[arg(long = "format", value_parser = ["json", "dot"], default_value = "json")]
        format: String,
        /// The build, as `rbuild build` takes it.
        #[command(flatten)]
        build: Box<BuildOptions>,
    },
    /// List the images in the store.
    #[command(after_help = "Example:\n  rbuild images")]
    Images,
    /// Show an image's config and manifest as JSON.
    #[command(
        after_help = "Examples:\n  rbuild inspect app:v1\n  rbuild inspect app:v1 | jq .Config.config.Env"
    )]
    Inspect {
        /// The image (name:tag).
        image: String,
    },
    /// Give an image another name.
    #[command(after_help = "Example:\n  rbuild tag app:v1 registry.example.com/team/app:v1")]
    Tag {
        /// The image (name:tag).
        source: String,
        /// The new name.
        target: String,
    },
    /// Remove image names (the data goes at the next prune).
    #[command(
        after_help = "Examples:\n  rbuild rmi app:v1\n  rbuild rmi app:v1 app:v2 && rbuild prune"
    )]
    Rmi {
        /// The names.
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Write images to a tarball (OCI layout or `docker save` format).
    #[command(
        after_help = "Example:\n  rbuild save -o app.tar app:v1\n  rbuild save --format docker -o app.tar app:v1 | docker load"
    )]
    Save {
        /// The file to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Archive format.
        #[arg(long, value_parser = ["oci", "docker"], default_value = "oci")]
        format: String,
        /// Layer compression (OCI format).
        #[arg(long, value_parser = ["gzip", "zstd", "uncompressed"], default_value = "gzip")]
        compression: String,
        /// The image.
        image: String,
    },
    /// Read images from a tarball made by `rbuild save`, `docker save`, `skopeo copy` or `podman save`.
    #[command(
        after_help = "Examples:\n  rbuild load -i app.tar\n  docker save app:v1 | rbuild load"
    )]
    Load {
        /// The tarball (`-` or absent for standard input).
        #[arg(short = 'i', long = "input")]
        input: Option<PathBuf>,
    },
    /// Show an image's history.
    #[command(after_help = "Example:\n  rbuild history app:v1")]
    History {
        /// The image.
        image: String,
    },
    /// Remove what no image and no step-cache record needs; optionally old cache too.
    #[command(
        after_help = "Examples:\n  rbuild prune\n  rbuild prune --filter until=24h\n  rbuild prune --keep-storage 10GB\n  rbuild prune --all"
    )]
    Prune {
        /// Also drop the whole step cache.
        #[arg(long)]
        all: bool,
        /// `until=DURATION`: drop cache records older than this (`24h`, `30m`).
        #[arg(long)]
        filter: Option<String>,
        /// Drop the oldest cache records until the store fits in this (`10GB`, `500MB`).
        #[arg(long)]
        keep_storage: Option<String>,
    },
    /// Run an image's entrypoint and command in the RUN sandbox, to smoke-test a build; its
    /// exit status is rbuild's.
    #[command(
        after_help = "Examples:\n  rbuild run hello:v1\n  rbuild run -e DEBUG=1 -v $PWD/conf:/etc/app:ro --network none app:v1 /bin/sh -c 'app --check'"
    )]
    Run {
        /// `KEY=VALUE` (or `KEY` to take ours) added to the environment.
        #[arg(short = 'e', long = "env")]
        env: Vec<String>,
        /// `HOST:CONTAINER[:ro]` bind mount.
        #[arg(short = 'v', long = "volume")]
        volumes: Vec<String>,
        /// `host` (default) or `none`.
        #[arg(long, value_parser = ["host", "none", "default"], default_value = "host")]
        network: String,
        /// The user (a name, or `uid[:gid]`).
        #[arg(short = 'u', long)]
        user: Option<String>,
        /// The working directory.
        #[arg(short = 'w', long)]
        workdir: Option<String>,
        /// The image.
        image: String,
        /// The command (replaces the image's CMD).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Make an image from a root filesystem tarball (`-` for standard input).
    #[command(after_help = "Example:\n  tar -C rootfs -c . | rbuild import - base:latest")]
    Import {
        /// The tarball (plain, gzip or zstd).
        tarball: PathBuf,
        /// The image name.
        name: String,
    },
    /// Download an image from a registry into the store.
    #[command(
        after_help = "Examples:\n  rbuild pull alpine:3.20\n  rbuild pull --platform linux/arm64 localhost:5000/app:v1"
    )]
    Pull {
        /// The image (`[registry/]repository[:tag][@digest]`).
        image: String,
        /// Which image of a multi-platform index (default: the host's).
        #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
        platform: Option<String>,
    },
    /// Upload an image to a registry, under its own name or the names given.
    #[command(
        after_help = "Examples:\n  rbuild push localhost:5000/app:v1\n  rbuild push app:v1 registry.example.com/team/app:v1 registry.example.com/team/app:latest"
    )]
    Push {
        /// The local image.
        image: String,
        /// Where to push it (default: the image's name); may be several.
        destinations: Vec<String>,
        #[command(flatten)]
        push: PushArgs,
    },
    /// Save credentials for a registry in docker's config (shared with docker).
    #[command(
        after_help = "Examples:\n  rbuild login registry.example.com -u me --password-stdin < token.txt\n  echo \"$TOKEN\" | rbuild login -u me --password-stdin    # Docker Hub"
    )]
    Login {
        /// The registry (`host[:port]`; default Docker Hub).
        registry: Option<String>,
        /// User name.
        #[arg(short = 'u', long)]
        username: String,
        /// Password (prefer --password-stdin).
        #[arg(short = 'p', long)]
        password: Option<String>,
        /// Read the password from standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove the credentials saved for a registry.
    #[command(after_help = "Example:\n  rbuild logout registry.example.com")]
    Logout {
        /// The registry (default Docker Hub).
        registry: Option<String>,
    },
    /// Show the disk space the store uses: images, step cache, snapshots, cache mounts.
    #[command(after_help = "Example:\n  rbuild df && rbuild prune --keep-storage 10GB")]
    Df,
    /// Check the store: every blob's digest, every tag's manifest, config and layers, every
    /// step-cache record, every snapshot; exits 1 if anything is wrong and not repaired.
    #[command(after_help = "Examples:\n  rbuild fsck\n  rbuild fsck --repair")]
    Fsck {
        /// Remove what is broken (the next build recreates it); takes the exclusive lock.
        #[arg(long)]
        repair: bool,
        /// Only the cheap checks: no blob hashed, no snapshot walked.
        #[arg(long)]
        quick: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  rbuild completion bash > /etc/bash_completion.d/rbuild\n  rbuild completion zsh > \"${fpath[1]}/_rbuild\"\n  rbuild completion fish > ~/.config/fish/completions/rbuild.fish"
    )]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print version information.
    #[command(after_help = "Example:\n  rbuild version")]
    Version,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BakeArgs {
    /// The Compose file (default: compose.yaml, compose.yml, docker-compose.yaml or
    /// docker-compose.yml in the working directory).
    #[arg(short = 'f', long = "file")]
    pub(crate) file: Option<PathBuf>,
    /// The services to build (default: every service with a `build:` section).
    pub(crate) services: Vec<String>,
    /// Print the resolved build definitions as JSON (`buildx bake --print`'s shape) and build
    /// nothing.
    #[arg(long)]
    pub(crate) print: bool,
    /// Push each image to its tags' registries.
    #[arg(long)]
    pub(crate) push: bool,
    /// Run every step, whatever the cache holds.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Ask the registry for every base image.
    #[arg(long)]
    pub(crate) pull: bool,
    /// `auto`, `tty`, `plain`, `rawjson` or `quiet`.
    #[arg(long, default_value = "auto")]
    pub(crate) progress: String,
}

/// `rbuild build`'s options alone, for `bake` to parse a service's build as a command line.
#[derive(Debug, clap::Parser)]
#[command(name = "build")]
pub(crate) struct BuildOnly {
    #[command(flatten)]
    pub(crate) options: BuildOptions,
}

#[derive(Debug, clap::Args)]
pub(crate) struct BuildOptions {
    /// The build context directory.
    pub(crate) context: PathBuf,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from standard input).
    #[arg(short = 'f', long = "file")]
    pub(crate) file: Option<PathBuf>,
    /// Name the image (`name:tag`); may be given several times.
    #[arg(short = 't', long = "tag")]
    pub(crate) tags: Vec<String>,
    /// A build argument, `NAME=VALUE` (or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME[=VALUE]")]
    pub(crate) build_args: Vec<String>,
    /// The stage to build (default: the last).
    #[arg(long)]
    pub(crate) target: Option<String>,
    /// Also write the result: `type=oci|docker|local|tar,dest=PATH`.
    #[arg(short = 'o', long = "output")]
    pub(crate) outputs: Vec<String>,
    /// Layer compression in exported archives.
    #[arg(long, value_parser = ["gzip", "zstd", "uncompressed"], default_value = "gzip")]
    pub(crate) compression: String,
    /// A label for the image, `KEY=VALUE`.
    #[arg(long = "label")]
    pub(crate) labels: Vec<String>,
    #[arg(
        long,
        help = "Timestamp written into the image and clamp for file times [env: SOURCE_DATE_EPOCH]"
    )]
    pub(crate) source_date_epoch: Option<i64>,
    #[arg(
        long,
        help = "Without SOURCE_DATE_EPOCH, keep the wall-clock times of the files RUN makes (and the build's time as the image's created) instead of 2000-01-01T00:00:00Z: builds are then no longer reproducible"
    )]
    pub(crate) no_reproducible: bool,
    /// Progress output: `auto` (`tty` on a terminal, else `plain`), `tty` (a live view), `plain`
    /// (CI logs), `rawjson` (one JSON event a line), `quiet`.
    #[arg(long, value_parser = ["auto", "tty", "plain", "rawjson", "quiet"], default_value = "auto")]
    pub(crate) progress: String,
    /// RUN's network when a step does not say: `default` (a network namespace of its own with
    /// user-mode networking: the internet, but not the host's loopback), `host` or `none`.
    #[arg(long, value_parser = ["default", "host", "none"], default_value = "default")]
    pub(crate) network: String,
    /// Write the image ID to this file.
    #[arg(long, value_name = "FILE")]
    pub(crate) iidfile: Option<PathBuf>,
    /// Write the build result (image ID, manifest digest, names) to this file as JSON.
    #[arg(long, value_name = "FILE")]
    pub(crate) metadata_file: Option<PathBuf>,
    /// Make the layers the build adds on top of the base image one layer.
    #[arg(long)]
    pub(crate) squash: bool,
    /// Accepted for `docker buildx build` scripts: the image is always in rbuild's store.
    #[arg(long)]
    pub(crate) load: bool,
    /// A secret for `RUN --mount=type=secret`: `id=ID,src=PATH` or `id=ID,env=VAR`.
    #[arg(long = "secret")]
    pub(crate) secrets: Vec<String>,
    /// An SSH agent for `RUN --mount=type=ssh`: `default` (the agent of `$SSH_AUTH_SOCK`),
    /// `ID` (the same agent under another id) or `ID=SOCKET`.
    #[arg(long = "ssh", value_name = "ID[=SOCKET]")]
    pub(crate) ssh: Vec<String>,
    /// An extra context, `NAME=DIR` or `NAME=docker-image://REF`: a FROM, `COPY --from` or
    /// `RUN --mount=from=` naming NAME reads it instead of the stage or image of that name.
    #[arg(long = "build-context", value_name = "NAME=VALUE")]
    pub(crate) build_contexts: Vec<String>,
    /// Run every step, whatever the cache holds.
    #[arg(long)]
    pub(crate) no_cache: bool,
    /// Say in full why each step missed the cache: every changed input, with old and new digests.
    #[arg(long)]
    pub(crate) explain_cache: bool,
    /// Print the build's op graph as JSON and stop (`rbuild plan` also draws it as DOT).
    #[arg(long)]
    pub(crate) print_plan: bool,
    /// How many independent stages may build at once (default: the number of cores).
    #[arg(long, short = 'j')]
    pub(crate) jobs: Option<usize>,
    /// Run every step of this stage, whatever the cache holds (may be given several times).
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub(crate) no_cache_filter: Vec<String>,
    /// Memory each RUN may use, swap included (`512m`, `2g`); past it the step is killed.
    #[arg(short = 'm', long, value_name = "BYTES", value_parser = builder_core::exec::parse_bytes)]
    pub(crate) memory: Option<u64>,
    /// Processes and threads each RUN may have (default 4096).
    #[arg(long, value_name = "N")]
    pub(crate) pids_limit: Option<u64>,
    /// CPUs each RUN may use (`1.5`).
    #[arg(long, value_name = "N")]
    pub(crate) cpus: Option<f64>,
    /// A resource limit for RUN, `NAME=SOFT[:HARD]` (`nofile=4096:8192`); may be repeated.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub(crate) ulimits: Vec<builder_core::exec::Ulimit>,
    /// As root, whose ids RUN's root has: `auto` (an unprivileged range of the host's, in a
    /// user namespace of its own; files keep their ids inside) or `host` (the host's root).
    #[arg(long, value_name = "auto|host", default_value = "auto")]
    pub(crate) userns: builder_core::exec::Userns,
    /// How RUN is kept apart from the builder: `auto` (the namespaced sandbox where namespaces
    /// can be made, else chroot, with a warning saying what is weaker), `namespaces` (or
    /// `oci`), `chroot` (no namespace and no mount, for containers with Docker's default
    /// capabilities and seccomp profile), or `none` (kaniko's model: RUN in rbuild's own root,
    /// made the stage's filesystem; only in a container that holds this one build).
    #[arg(
        long,
        value_name = "auto|namespaces|chroot|none",
        default_value = "auto"
    )]
    pub(crate) isolation: builder_core::exec::Isolation,
    /// Kill a RUN (and everything it started) that takes longer than this many seconds.
    #[arg(long, value_name = "SECONDS")]
    pub(crate) run_timeout: Option<f64>,
    /// Print only the image ID.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,
    /// Ask the registry for every base image, even those in the store.
    #[arg(long)]
    pub(crate) pull: bool,
    /// The most one `ADD <url>` downloads, in bytes (default 8 GiB); past it the build fails.
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_download: Option<u64>,
    /// Which image of a multi-platform base to use (default: the host's).
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    pub(crate) platform: Option<String>,
    /// Push the image under each --tag once built.
    #[arg(long)]
    pub(crate) push: bool,
    /// Import a shared step cache: `type=registry,ref=REF` or `type=local,src=DIR`.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub(crate) cache_from: Vec<String>,
    /// Export this build's step cache: `type=registry,ref=REF[,mode=min|max]` or
    /// `type=local,dest=DIR[,mode=min|max]`.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub(crate) cache_to: Vec<String>,
    /// Manifest media types for --push.
    #[arg(long = "push-format", value_parser = ["oci", "docker"], default_value = "oci")]
    pub(crate) push_format: String,
    /// Build on rbuild-server at this URL (`http://builder:8420`), then load the image here;
    /// several (or a name with several addresses) are replicas, tried in an order sticky to the
    /// context. `RBUILD_TOKEN` is sent as the bearer token.
    #[arg(
        long = "host",
        value_name = "URL",
        env = "RBUILD_HOST",
        value_delimiter = ','
    )]
    pub(crate) hosts: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct PushArgs {
    /// Manifest media types.
    #[arg(long, value_parser = ["oci", "docker"], default_value = "oci")]
    pub(crate) format: String,
    /// Layer compression.
    #[arg(long, value_parser = ["gzip", "zstd", "uncompressed"], default_value = "gzip")]
    pub(crate) compression: String,
    /// Blobs larger than this many bytes are uploaded in chunks of this size.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub(crate) chunk_size: u64,
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

/// `rbuild -t app:v1 .` is `rbuild build -t app:v1 .`, as `docker build` is typed: when the first
/// argument after the global options is not a subcommand (nor help or version), `build` goes
/// before it.
pub(crate) fn implicit_build(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let i = after_globals(&args);
    let Some(first) = args.get(i).and_then(|a| a.to_str()) else {
        return args;
    };
    let known = cmd
        .get_subcommands()
        .any(|s| s.get_name() == first || s.get_all_aliases().any(|a| a == first))
        || matches!(first, "help" | "-h" | "--help" | "-V" | "--version");
    if !known {
        args.insert(i, "build".into());
    }
    args
}

/// The index of the first argument after the global options (those taking a value are read
/// from the command's definition, so a new one cannot be forgotten here).
fn after_globals(args: &[std::ffi::OsString]) -> usize {
    let cmd = <Cli as clap::CommandFactory>::command();
    let valued: Vec<String> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set() && a.get_action().takes_values())
        .filter_map(|a| a.get_long().map(|l| format!("--{l}")))
        .collect();
    let mut i = 1;
    while let Some(a) = args.get(i).and_then(|a| a.to_str()) {
        if valued.iter().any(|v| v == a) {
            i += 2;
        } else if valued.iter().any(|v| a.starts_with(&format!("{v}="))) {
            i += 1;
        } else {
            break;
        }
    }
    i
}

/// `docker build` flags rbuild does not take, and why (README: "docker build flags").
const DOCKER_ONLY: &[(&str, &str)] = &[
    (
        "--add-host",
        "RUN uses the host's /etc/hosts entries for localhost only",
    ),
    ("--allow", "there are no entitlements to grant"),
    ("--annotation", "not supported yet"),
    ("--attest", "attestations are not supported yet"),
    ("--builder", "rbuild is its own builder"),
    ("--call", "not supported yet"),
    ("--check", "use `rbuild parse --check`"),
    (
        "--cgroup-parent",
        "each RUN gets a cgroup under rbuild's own",
    ),
    ("--provenance", "attestations are not supported yet"),
    ("--sbom", "attestations are not supported yet"),
    ("--shm-size", "not supported yet"),
    ("--cpu-shares", "use --cpus"),
    (
        "--security-opt",
        "RUN always has Docker's default capabilities and seccomp filter",
    ),
];

/// A `docker build` flag rbuild does not take, with what to do instead.
pub(crate) fn docker_only_flag(args: &[std::ffi::OsString]) -> Option<String> {
    let i = after_globals(args);
    if args.get(i).and_then(|a| a.to_str()) != Some("build") {
        return None;
    }
    for a in args.iter().skip(i + 1).filter_map(|a| a.to_str()) {
        if a == "--" {
            break;
        }
        let name = a.split('=').next().unwrap_or(a);
        if let Some((flag, why)) = DOCKER_ONLY.iter().find(|(f, _)| *f == name) {
            return Some(format!(
                "`{flag}` is a `docker build` flag rbuild does not take: {why} (see \"docker build flags\" in the README)"
            ));
        }
    }
    None
}
