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
    /// `--mount`s, expanded: `type=… target=… [from=…] …` as data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    /// Heredoc files fed to the command, by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub heredocs: Vec<String>,
}

/// A RUN mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    /// `bind`, `cache`, `tmpfs`, `secret` or `ssh`.
    pub kind: String,
    /// The path inside, absolute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The source path or id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The stage or image it comes from (an input of the op), else the context.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// Read-only.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub readonly: bool,
}

/// A COPY or ADD.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct File {
    /// `copy` or `add`.
    pub action: String,
    /// The sources, expanded, as the instruction names them (`<<name` for a heredoc).
    pub sources: Vec<String>,
    /// `--from`: the stage index or image it reads (its op is an input).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The destination, absolute.
    pub dest: String,
    /// `--chown`, expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chown: Option<String>,
    /// `--chmod`, expanded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chmod: Option<String>,
    /// `--link`, `--parents`, `--keep-git-dir`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// `--exclude` patterns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// A config edit: the keyword and its values, expanded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Config {
    /// `ENV`, `ARG`, `LABEL`, `CMD`, `WORKDIR`, …
    pub keyword: String,
    /// The values (`key=value` pairs, arguments, a path, …).
    pub values: Vec<String>,
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
            Self::File(f) => format!("{} {} → {}", f.action, f.sources.join(" "), f.dest),
            Self::Config(c) => format!("config {} {}", c.keyword, c.values.join(" ")),
        }
    }
}

impl Graph {
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
                let _ = writeln!(
                    out,
                    "    op{id} [label=\"{id}: {}\\nline {}\"];",
                    quote(&summary),
                    op.line
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
