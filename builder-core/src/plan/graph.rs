//! The op graph: what a build does, as data. Each [`Op`] is a source, an exec, a file action or
//! a config edit, with every value expanded, and names the ops it reads ([`Op::inputs`]): the
//! previous op of its stage first (the root filesystem it works on), then the stages and
//! sources it copies or mounts from.

use std::fmt::Write as _;

/// An op's place in [`Graph::ops`].
pub type OpId = usize;

/// A lowered build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Graph {
    /// The stage whose image is the result.
    pub target: usize,
    /// Every needed stage, in a valid build order.
    pub stages: Vec<Stage>,
    /// Stages the target does not need (not lowered).
    pub skipped: Vec<usize>,
    /// The ops, each after every op it reads.
    pub ops: Vec<Op>,
}

/// A stage of the graph.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    /// Its index in the Dockerfile.
    pub index: usize,
    /// `AS name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Its last op: the stage's result.
    pub result: OpId,
    /// Its steps in order: FROM, the base's ONBUILD triggers, then one op per instruction.
    pub steps: Vec<OpId>,
}

/// One step of the build.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Op {
    /// The stage it belongs to.
    pub stage: usize,
    /// The Dockerfile line it comes from (an ONBUILD trigger: its FROM's line).
    pub line: usize,
    /// The instruction as written (`FROM …`, `ONBUILD …` for a trigger of the base).
    pub instruction: String,
    /// The ops it reads, the root filesystem it works on first.
    pub inputs: Vec<OpId>,
    /// The digest of its definition ([`CacheKey::form`](super::CacheKey::form)): what the
    /// step's cache key holds of the op. The key also hashes the parent step's key and the
    /// content the step reads, which are known only while solving.
    pub digest: String,
    /// The step's cache key, when the plan was solved for keys ([`Graph::ops`] of
    /// `Builder::plan`); a bare lowering has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether the store's step cache holds that key (a build would not run the step).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// What it does.
    #[serde(flatten)]
    pub kind: Kind,
}

/// What an op does.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Kind {
    /// Where a root filesystem or files come from.
    Source(Source),
    /// A command run in the sandbox (RUN).
    Exec(Exec),
    /// Files copied or added (COPY, ADD).
    File(File),
    /// A change to the image config alone (ENV, LABEL, CMD, …; WORKDIR also makes its
    /// directory).
    Config(Config),
}

/// A source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "source", rename_all = "lowercase")]
pub enum Source {
    /// The empty root filesystem.
    Scratch,
    /// An image, by the name written and the digest the resolver gave.
    Image {
        /// The reference, expanded.
        name: String,
        /// Its manifest digest.
        digest: String,
    },
    /// Another stage's result (`FROM stage`): its op is the input.
    Stage {
        /// The stage.
        stage: usize,
    },
    /// Paths of the build context.
    Context {
        /// The patterns selected, expanded.
        paths: Vec<String>,
    },
    /// A remote file (`ADD <url>`).
    Url {
        /// The address.
        url: String,
    },
}

/// RUN's network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Network {
    /// The build's default (`--network`).
    Default,
    /// Only loopback.
    None,
    /// The host's.
    Host,
}

/// A RUN.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exec {
    /// The command line, the shell included for the shell form.
    pub args: Vec<String>,
    /// The whole environment: every ARG and ENV in scope, in order, and `PATH`.
    pub env: Vec<String>,
    /// `USER`, as written after expansion (empty: root).
    pub user: String,
    /// The working directory.
    pub workdir: String,
    /// The network.
    pub network: Network,
    /// `--security`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub security: Option<String>,
    /// `--mount`s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// `RUN <<NAME` whose body starts with `#!`: run as the file `/dev/pipes/NAME` (the args
    /// name it) with this content, by its interpreter, as BuildKit does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
}

/// A heredoc RUN runs as a file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Script {
    /// The heredoc's name.
    pub name: String,
    /// Its content.
    pub content: String,
}

/// A RUN mount, every value expanded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    /// `bind`, `cache`, `tmpfs`, `secret` or `ssh`.
    pub kind: crate::dockerfile::MountType,
    /// The path inside, absolute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The source path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The stage or image a bind reads (an input of the op), else the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<From>,
    /// Read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
    /// A cache's or secret's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A cache's sharing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sharing: Option<crate::dockerfile::Sharing>,
    /// The mode, owner and size given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The owner's uid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// The owner's gid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// A tmpfs's size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// A secret that must be given.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// A secret's environment variable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// Where `--from` reads: a stage's result or an image.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum From {
    /// The stage of that index (its result op is an input).
    Stage(usize),
    /// The image of that name (its source op is an input).
    Image(String),
    /// The directory `--build-context` of that (lower-case) name.
    Context(String),
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FileSource {
    /// A path or pattern, expanded (a URL for ADD).
    Path(String),
    /// A heredoc: a file of that name with that content (expanded if its marker allowed).
    Heredoc {
        /// The file name.
        name: String,
        /// The content.
        content: String,
    },
}

/// A COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct File {
    /// `copy` or `add`.
    pub action: String,
    /// The sources.
    pub sources: Vec<FileSource>,
    /// `--from`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<From>,
    /// The destination, absolute.
    pub dest: String,
    /// The destination was written as a directory (`dir/`, `dir/.`, `.`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dest_is_dir: bool,
    /// `--chown`, expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chown: Option<String>,
    /// `--chmod`, expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
    /// `--exclude` patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// `--parents`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub parents: bool,
    /// `--link`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
    /// ADD: local archives are unpacked (not `--unpack=false`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unpack: bool,
    /// ADD `--checksum`, expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checksum: Option<String>,
    /// ADD `--keep-git-dir`.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_git_dir: bool,
}

/// A config edit, every value expanded and checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "keyword", content = "value", rename_all = "UPPERCASE")]
pub enum Config {
    /// `ENV`: the pairs set, in order.
    Env(Vec<(String, String)>),
    /// `LABEL`.
    Label(Vec<(String, String)>),
    /// `ARG`: the args given a value (an ARG without one sets nothing).
    Arg(Vec<(String, String)>),
    /// `WORKDIR`: the new working directory (an absolute one as written, a relative one
    /// joined and cleaned, as BuildKit keeps them); the directories it passes through are made.
    Workdir(String),
    /// `USER`.
    User(String),
    /// `EXPOSE`: each port as docker records it (`80/tcp`), ranges expanded.
    Expose(Vec<String>),
    /// `VOLUME`.
    Volume(Vec<String>),
    /// `STOPSIGNAL`.
    Stopsignal(String),
    /// `MAINTAINER`: the image's author.
    Maintainer(String),
    /// `CMD`, the shell included for the shell form.
    Cmd(Vec<String>),
    /// `ENTRYPOINT`, the shell included for the shell form.
    Entrypoint(Vec<String>),
    /// `SHELL`.
    Shell(Vec<String>),
    /// `HEALTHCHECK`.
    Healthcheck(Health),
    /// `ONBUILD`: the trigger as written.
    Onbuild(String),
}

/// `HEALTHCHECK`, as the image config holds it (durations in nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    /// `["NONE"]`, `["CMD", …]` or `["CMD-SHELL", line]`.
    pub test: Vec<String>,
    /// `--interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<u64>,
    /// `--timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<u64>,
    /// `--start-period`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_period: Option<u64>,
    /// `--start-interval`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<u64>,
    /// `--retries`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<u64>,
}

impl Kind {
    /// A one-line summary: the op kind and its main value.
    pub fn summary(&self) -> String {
        match self {
            Self::Source(Source::Scratch) => "source scratch".into(),
            Self::Source(Source::Image { name, .. }) => format!("source image {name}"),
            Self::Source(Source::Stage { stage }) => format!("source stage {stage}"),
            Self::Source(Source::Context { paths }) => {
                format!("source context {}", paths.join(" "))
            }
            Self::Source(Source::Url { url }) => format!("source url {url}"),
            Self::Exec(e) => format!("exec {}", e.args.join(" ")),
            Self::File(f) => {
                let sources: Vec<String> = f
                    .sources
                    .iter()
                    .map(|s| match s {
                        FileSource::Path(p) => p.clone(),
                        FileSource::Heredoc { name, .. } => format!("<<{name}"),
                    })
                    .collect();
                format!("{} {} → {}", f.action, sources.join(" "), f.dest)
            }
            Self::Config(c) => format!("config {}", c.summary()),
        }
    }
}

impl Config {
    /// The keyword and its values, as one line.
    pub fn summary(&self) -> String {
        let pairs = |p: &[(String, String)]| {
            p.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Self::Env(p) => format!("ENV {}", pairs(p)),
            Self::Label(p) => format!("LABEL {}", pairs(p)),
            Self::Arg(p) => format!("ARG {}", pairs(p)),
            Self::Workdir(v) => format!("WORKDIR {v}"),
            Self::User(v) => format!("USER {v}"),
            Self::Expose(v) => format!("EXPOSE {}", v.join(" ")),
            Self::Volume(v) => format!("VOLUME {}", v.join(" ")),
            Self::Stopsignal(v) => format!("STOPSIGNAL {v}"),
            Self::Maintainer(v) => format!("MAINTAINER {v}"),
            Self::Cmd(v) => format!("CMD {}", v.join(" ")),
            Self::Entrypoint(v) => format!("ENTRYPOINT {}", v.join(" ")),
            Self::Shell(v) => format!("SHELL {}", v.join(" ")),
            Self::Healthcheck(h) => format!("HEALTHCHECK {}", h.test.join(" ")),
            Self::Onbuild(v) => format!("ONBUILD {v}"),
        }
    }
}

/// The first 12 hex digits of a `sha256:` digest.
fn short(digest: &str) -> &str {
    digest.get(7..19).unwrap_or_default()
}

impl Graph {
    /// For each op, whether a later op reads the tree it leaves as files: a RUN, COPY, ADD or
    /// WORKDIR on it (through any config edits after it), or another stage built on it, copying
    /// or mounting from it. The last layer of the target stage is read by no step (an export
    /// reads its tar, not its tree).
    pub fn tree_read_later(&self) -> Vec<bool> {
        let mut read = vec![false; self.ops.len()];
        // Ops come after every op they read: each op's own answer is known before its inputs'.
        for (id, op) in self.ops.iter().enumerate().rev() {
            let reads = match &op.kind {
                Kind::Exec(_) | Kind::File(_) | Kind::Config(Config::Workdir(_)) => true,
                Kind::Config(_) | Kind::Source(_) => read[id],
            };
            if reads {
                for &input in &op.inputs {
                    if let Some(r) = read.get_mut(input) {
                        *r = true;
                    }
                }
            }
        }
        read
    }

    /// The graph in Graphviz's DOT language: one node per op, clustered by stage.
    pub fn dot(&self) -> String {
        let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
        let mut out = String::from("digraph build {\n  rankdir=TB;\n  node [shape=box];\n");
        for stage in &self.stages {
            let label = stage
                .name
                .clone()
                .unwrap_or_else(|| format!("stage {}", stage.index));
            let _ = writeln!(
                out,
                "  subgraph cluster_{} {{\n    label=\"{}\";",
                stage.index,
                quote(&label)
            );
            for (id, op) in self
                .ops
                .iter()
                .enumerate()
                .filter(|(_, o)| o.stage == stage.index)
            {
                let mut summary = op.kind.summary();
                if summary.chars().count() > 60 {
                    summary = summary.chars().take(57).collect::<String>() + "…";
                }
                // The step key when known (`cached` marked), else the definition's digest.
                let shown = match (&op.key, op.cached) {
                    (Some(k), Some(true)) => format!("key {} cached", short(k)),
                    (Some(k), _) => format!("key {}", short(k)),
                    (None, _) => format!("def {}", short(&op.digest)),
                };
                let _ = writeln!(
                    out,
                    "    op{id} [label=\"{id}: {}\\nline {} · {shown}\"];",
                    quote(&summary),
                    op.line,
                );
            }
            out.push_str("  }\n");
        }
        for (id, op) in self.ops.iter().enumerate() {
            for input in &op.inputs {
                let _ = writeln!(out, "  op{input} -> op{id};");
            }
        }
        out.push_str("}\n");
        out
    }
}
