//! Typed instructions: each [`Node`] read into its [`Command`], flags checked and typed, as
//! BuildKit's `frontend/dockerfile/instructions` does. Values stay as written (before
//! expansion); the build expands them with the stage's variables.

use std::time::Duration;

use super::ast::{Flag, Form, Heredoc, Node};
use super::error::{ErrorKind, ParseError};
use super::keyword::Keyword;
use super::span::Span;

/// One instruction, typed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Instruction {
    /// The keyword.
    pub keyword: Keyword,
    /// The whole instruction.
    pub span: Span,
    /// The logical line as written (continuations joined), as docker records it in history and
    /// in ONBUILD triggers.
    pub original: String,
    /// What it does.
    pub command: Command,
}

/// What an instruction does, with its arguments as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Command {
    From(From),
    Run(Run),
    Cmd(CommandLine),
    Entrypoint(CommandLine),
    Shell { shell: Vec<String> },
    Label { pairs: Vec<KeyValue> },
    Env { pairs: Vec<KeyValue> },
    Arg { args: Vec<ArgDecl> },
    Maintainer { name: String },
    Expose { ports: Vec<String> },
    Copy(Copy),
    Add(Add),
    Volume { paths: Vec<String> },
    User { user: String },
    Workdir { path: String },
    Stopsignal { signal: String },
    Healthcheck(Healthcheck),
    Onbuild { trigger: Box<Instruction> },
}

/// `FROM [--platform=P] IMAGE [AS NAME]`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct From {
    /// The image (or earlier stage) as written.
    pub image: String,
    /// The stage name, lower case.
    pub name: Option<String>,
    /// `--platform`, as written.
    pub platform: Option<String>,
}

/// The command of RUN, CMD, ENTRYPOINT and HEALTHCHECK.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "form", content = "args", rename_all = "lowercase")]
pub enum CommandLine {
    /// A command line for the shell (`SHELL`, `/bin/sh -c` by default).
    Shell(String),
    /// A JSON array run as is.
    Exec(Vec<String>),
}

/// `RUN [--mount=…] [--network=…] [--security=…] COMMAND`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Run {
    /// The command.
    pub command: CommandLine,
    /// Heredoc files: the first one is the script when the command is just `<<EOF`.
    pub heredocs: Vec<Heredoc>,
    /// `--mount`s in order.
    pub mounts: Vec<Mount>,
    /// `--network`.
    pub network: Option<String>,
    /// `--security`.
    pub security: Option<String>,
}

/// The kind of a `RUN --mount`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "bind" => Self::Bind,
            "cache" => Self::Cache,
            "tmpfs" => Self::Tmpfs,
            "secret" => Self::Secret,
            "ssh" => Self::Ssh,
            _ => return None,
        })
    }
}

/// How concurrent builds share a cache mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Sharing {
    Shared,
    Private,
    Locked,
}

/// One `RUN --mount=…`, as BuildKit's `parseMount` reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    /// `type=` (default `bind`).
    pub kind: MountType,
    /// `target=` / `dst=` / `destination=`.
    pub target: Option<String>,
    /// `source=` / `src=`.
    pub source: Option<String>,
    /// `from=`: a stage or image.
    pub from: Option<String>,
    /// `ro` / `rw`; by default bind, secret and ssh mounts are read-only, cache and tmpfs not.
    pub readonly: bool,
    /// `id=`.
    pub id: Option<String>,
    /// `sharing=` (cache mounts; default shared).
    pub sharing: Option<Sharing>,
    /// `mode=` (octal).
    pub mode: Option<u32>,
    /// `uid=`.
    pub uid: Option<u32>,
    /// `gid=`.
    pub gid: Option<u32>,
    /// `size=` in bytes (tmpfs).
    pub size: Option<u64>,
    /// `required` (secret and ssh).
    pub required: bool,
    /// `env=`: expose a secret as this environment variable.
    pub env: Option<String>,
    /// Numeric options written with a variable (`uid=$UID`): `mode`, `uid`, `gid` or `size` by
    /// name, as written. They are expanded and read when the RUN runs
    /// ([`Mount::with_numbers`]), as BuildKit expands every mount option.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub deferred: std::collections::BTreeMap<String, String>,
}

impl Mount {
    /// The mount with its [`Mount::deferred`] options expanded by `expand` and read into their
    /// fields; a value that is no number then is `bad(option, value, why)`.
    pub fn with_numbers<E>(
        &self,
        mut expand: impl FnMut(&str) -> Result<String, E>,
        bad: impl Fn(&str, &str, String) -> E,
    ) -> Result<Mount, E> {
        let mut m = self.clone();
        for (key, raw) in std::mem::take(&mut m.deferred) {
            let value = expand(&raw)?;
            let bad = |why: String| bad(&key, &value, why);
            match key.as_str() {
                "mode" => m.mode = Some(mount_number(&key, &value, 8).map_err(bad)?),
                "uid" => m.uid = Some(mount_number(&key, &value, 10).map_err(bad)?),
                "gid" => m.gid = Some(mount_number(&key, &value, 10).map_err(bad)?),
                _ => {
                    m.size = Some(
                        parse_ram_size(&value)
                            .ok_or_else(|| bad(format!("invalid size `{value}`")))?,
                    );
                }
            }
        }
        Ok(m)
    }
}

fn mount_number(key: &str, v: &str, radix: u32) -> Result<u32, String> {
    u32::from_str_radix(v, radix).map_err(|_| format!("`{key}` takes a number, not `{v}`"))
}

/// A `KEY=VALUE` of ENV or LABEL, as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeyValue {
    /// The key, as written.
    pub key: String,
    /// The value, as written (quotes kept; removed when expanded).
    pub value: String,
}

/// One name of ARG.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ArgDecl {
    /// The name.
    pub name: String,
    /// The default, as written.
    pub default: Option<String>,
}

/// A COPY or ADD source.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A path or pattern (a URL or git address for ADD).
    Path {
        /// As written.
        path: String,
    },
    /// A heredoc, copied as a file of its name.
    Heredoc {
        /// The file name (the delimiter).
        name: String,
        /// The content.
        content: String,
        /// Whether variables in the content are expanded.
        expand: bool,
    },
}

/// `COPY [flags] SRC… DEST`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Copy {
    /// The sources.
    pub sources: Vec<Source>,
    /// The destination.
    pub dest: String,
    /// `--from`: a stage name or index, or an image.
    pub from: Option<String>,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--parents`.
    pub parents: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
}

/// `ADD [flags] SRC… DEST`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Add {
    /// The sources.
    pub sources: Vec<Source>,
    /// The destination.
    pub dest: String,
    /// `--chown`.
    pub chown: Option<String>,
    /// `--chmod`.
    pub chmod: Option<String>,
    /// `--link`.
    pub link: bool,
    /// `--exclude` patterns.
    pub exclude: Vec<String>,
    /// `--checksum` of a remote source.
    pub checksum: Option<String>,
    /// `--keep-git-dir` for git sources.
    pub keep_git_dir: bool,
    /// `--unpack`: `Some(false)` keeps a local archive as a file.
    pub unpack: Option<bool>,
}

/// `HEALTHCHECK`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Healthcheck {
    /// `HEALTHCHECK NONE`: turn off the base image's check.
    None,
    /// `HEALTHCHECK [options] CMD …`.
    Cmd {
        /// The command (shell form becomes `CMD-SHELL`).
        command: CommandLine,
        /// `--interval`.
        interval: Option<Duration>,
        /// `--timeout`.
        timeout: Option<Duration>,
        /// `--start-period`.
        start_period: Option<Duration>,
        /// `--start-interval`.
        start_interval: Option<Duration>,
        /// `--retries`.
        retries: Option<u32>,
    },
}

#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    Bool,
    String,
    Strings,
}

/// The flags of one instruction, checked against what it takes.
struct Flags<'a> {
    values: Vec<(&'static str, &'a Flag, Option<&'a str>)>,
}

impl<'a> Flags<'a> {
    fn parse(
        node: &'a Node,
        keyword: Keyword,
        spec: &[(&'static str, FlagKind)],
    ) -> Result<Self, ParseError> {
        let mut values: Vec<(&'static str, &'a Flag, Option<&'a str>)> = Vec::new();
        for flag in &node.flags {
            let err = |kind| ParseError::new(kind, flag.span.clone());
            if !flag.text.starts_with("--") {
                return Err(err(ErrorKind::MalformedFlag {
                    flag: flag.text.clone(),
                }));
            }
            let name = flag.name();
            let value = flag.value();
            let Some(&(known, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let suggested = spec
                    .iter()
                    .map(|(n, _)| (strsim::levenshtein(n, name), *n))
                    .filter(|&(d, n)| d <= 2.max(n.len() / 3))
                    .min_by_key(|&(d, _)| d)
                    .map(|(_, n)| n.to_owned());
                return Err(err(ErrorKind::UnknownFlag {
                    keyword: keyword.as_str().to_owned(),
                    flag: name.to_owned(),
                    suggested,
                }));
            };
            if kind != FlagKind::Strings && values.iter().any(|(n, ..)| *n == known) {
                return Err(err(ErrorKind::DuplicateFlag {
                    flag: name.to_owned(),
                }));
            }
            match kind {
                FlagKind::Bool => {
                    if value == Some("") {
                        return Err(err(ErrorKind::MissingFlagValue {
                            flag: name.to_owned(),
                        }));
                    }
                    if let Some(v) = value {
                        if !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false") {
                            return Err(err(ErrorKind::InvalidFlagValue {
                                flag: name.to_owned(),
                                value: v.to_owned(),
                                reason: "expected `true` or `false`".into(),
                            }));
                        }
                    }
                }
                FlagKind::String | FlagKind::Strings => {
                    if value.is_none() {
                        return Err(err(ErrorKind::MissingFlagValue {
                            flag: name.to_owned(),
                        }));
                    }
                }
            }
            values.push((known, flag, value));
        }
        Ok(Self { values })
    }

    fn string(&self, name: &str) -> Option<String> {
        self.values
            .iter()
            .find(|(n, ..)| *n == name)
            .and_then(|(_, _, v)| v.map(str::to_owned))
    }

    fn strings(&self, name: &str) -> Vec<(String, &'a Flag)> {
        self.values
            .iter()
            .filter(|(n, ..)| *n == name)
            .filter_map(|(_, f, v)| v.map(|v| (v.to_owned(), *f)))
            .collect()
    }

    fn opt_bool(&self, name: &str) -> Option<bool> {
        self.values
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, _, v)| v.is_none_or(|v| v.eq_ignore_ascii_case("true")))
    }

    fn bool(&self, name: &str) -> bool {
        self.opt_bool(name).unwrap_or(false)
    }

    fn span(&self, name: &str) -> Option<Span> {
        self.values
            .iter()
            .find(|(n, ..)| *n == name)
            .map(|(_, f, _)| f.span.clone())
    }
}

use FlagKind::{Bool, String as Str, Strings};

fn arguments(node: &Node, keyword: Keyword, expected: &str) -> ParseError {
    ParseError::new(
        ErrorKind::Arguments {
            keyword: keyword.as_str().to_owned(),
            expected: expected.to_owned(),
        },
        node.span.clone(),
    )
}

fn exactly_one(node: &Node, keyword: Keyword) -> Result<String, ParseError> {
    match node.args.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(arguments(node, keyword, "requires exactly one argument")),
    }
}

fn at_least_one(node: &Node, keyword: Keyword) -> Result<(), ParseError> {
    if node.args.is_empty() {
        return Err(arguments(node, keyword, "requires at least one argument"));
    }
    Ok(())
}

fn command_line(node: &Node, args: &[String]) -> CommandLine {
    match node.form {
        Form::Exec => CommandLine::Exec(args.to_vec()),
        Form::Shell => CommandLine::Shell(args.join(" ")),
    }
}

/// Reads one node into a typed instruction.
pub fn parse_instruction(node: &Node) -> Result<Instruction, ParseError> {
    let Some(keyword) = Keyword::from_word(&node.keyword) else {
        return Err(ParseError::new(
            ErrorKind::UnknownInstruction {
                keyword: node.keyword_span_text(),
                suggested: Keyword::suggest(&node.keyword).map(|k| k.as_str().to_owned()),
            },
            node.keyword_span.clone(),
        ));
    };
    let no_flags = |node| Flags::parse(node, keyword, &[]).map(|_| ());
    let command = match keyword {
        Keyword::From => {
            let flags = Flags::parse(node, keyword, &[("platform", Str)])?;
            let name = match node.args.as_slice() {
                [_] => None,
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => {
                    let lower = name.to_ascii_lowercase();
                    if !is_valid_stage_name(&lower) {
                        return Err(ParseError::new(
                            ErrorKind::InvalidStageName { name: name.clone() },
                            node.args_span.clone(),
                        ));
                    }
                    Some(lower)
                }
                _ => {
                    return Err(arguments(
                        node,
                        keyword,
                        "requires either one or three arguments (`FROM image [AS name]`)",
                    ));
                }
            };
            Command::From(From {
                image: node.args[0].clone(),
                name,
                platform: flags.string("platform"),
            })
        }
        Keyword::Run => {
            let flags = Flags::parse(
                node,
                keyword,
                &[("mount", Strings), ("network", Str), ("security", Str)],
            )?;
            if node.args.is_empty() {
                return Err(arguments(node, keyword, "requires at least one argument"));
            }
            let mounts = flags
                .strings("mount")
                .into_iter()
                .map(|(spec, flag)| {
                    parse_mount(&spec).map_err(|reason| {
                        ParseError::new(ErrorKind::InvalidMount { spec, reason }, flag.span.clone())
                    })
                })
                .collect::<Result<_, _>>()?;
            let network = flags.string("network");
            if let Some(n) = network.as_deref().filter(|n| !n.contains('$')) {
                if !matches!(n, "default" | "none" | "host") {
                    return Err(invalid_value(
                        &flags,
                        "network",
                        n,
                        "expected `default`, `none` or `host`",
                    ));
                }
            }
            let security = flags.string("security");
            if let Some(s) = security.as_deref().filter(|s| !s.contains('$')) {
                if !matches!(s, "sandbox" | "insecure") {
                    return Err(invalid_value(
                        &flags,
                        "security",
                        s,
                        "expected `sandbox` or `insecure`",
                    ));
                }
            }
            Command::Run(Run {
                command: command_line(node, &node.args),
                heredocs: node.heredocs.clone(),
                mounts,
                network,
                security,
            })
        }
        Keyword::Cmd => {
            no_flags(node)?;
            Command::Cmd(command_line(node, &node.args))
        }
        Keyword::Entrypoint => {
            no_flags(node)?;
            Command::Entrypoint(command_line(node, &node.args))
        }
        Keyword::Shell => {
            no_flags(node)?;
            at_least_one(node, keyword)?;
            if node.form != Form::Exec {
                return Err(ParseError::new(ErrorKind::ShellNotJson, node.span.clone()));
            }
            Command::Shell {
                shell: node.args.clone(),
            }
        }
        Keyword::Label | Keyword::Env => {
            no_flags(node)?;
            let pairs = key_values(node, keyword)?;
            if keyword == Keyword::Env {
                Command::Env { pairs }
            } else {
                Command::Label { pairs }
            }
        }
        Keyword::Arg => {
            no_flags(node)?;
            at_least_one(node, keyword)?;
            let args = node
                .pairs
                .iter()
                .flatten()
                .map(|(name, default)| {
                    if name.is_empty() {
                        return Err(arguments(node, keyword, "names can not be blank"));
                    }
                    Ok(ArgDecl {
                        name: name.clone(),
                        default: default.clone(),
                    })
                })
                .collect::<Result<_, _>>()?;
            Command::Arg { args }
        }
        Keyword::Maintainer => {
            no_flags(node)?;
            Command::Maintainer {
                name: exactly_one(node, keyword)?,
            }
        }
        Keyword::Expose => {
            no_flags(node)?;
            at_least_one(node, keyword)?;
            Command::Expose {
                ports: node.args.clone(),
            }
        }
        Keyword::Copy => {
            let flags = Flags::parse(
                node,
                keyword,
                &[
                    ("from", Str),
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("parents", Bool),
                    ("exclude", Strings),
                ],
            )?;
            let (sources, dest) = sources_and_dest(node, keyword)?;
            check_chmod(&flags)?;
            Command::Copy(Copy {
                sources,
                dest,
                from: flags.string("from"),
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                parents: flags.bool("parents"),
                exclude: flags
                    .strings("exclude")
                    .into_iter()
                    .map(|(v, _)| v)
                    .collect(),
            })
        }
        Keyword::Add => {
            let flags = Flags::parse(
                node,
                keyword,
                &[
                    ("chown", Str),
                    ("chmod", Str),
                    ("link", Bool),
                    ("exclude", Strings),
                    ("checksum", Str),
                    ("keep-git-dir", Bool),
                    ("unpack", Bool),
                ],
            )?;
            let (sources, dest) = sources_and_dest(node, keyword)?;
            check_chmod(&flags)?;
            Command::Add(Add {
                sources,
                dest,
                chown: flags.string("chown"),
                chmod: flags.string("chmod"),
                link: flags.bool("link"),
                exclude: flags
                    .strings("exclude")
                    .into_iter()
                    .map(|(v, _)| v)
                    .collect(),
                checksum: flags.string("checksum"),
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.opt_bool("unpack"),
            })
        }
        Keyword::Volume => {
            no_flags(node)?;
            at_least_one(node, keyword)?;
            if node.args.iter().any(|v| v.trim().is_empty()) {
                return Err(arguments(
                    node,
                    keyword,
                    "specified can not be an empty string",
                ));
            }
            Command::Volume {
                paths: node.args.iter().map(|v| v.trim().to_owned()).collect(),
            }
        }
        Keyword::User => {
            no_flags(node)?;
            Command::User {
                user: exactly_one(node, keyword)?,
            }
        }
        Keyword::Workdir => {
            no_flags(node)?;
            Command::Workdir {
                path: exactly_one(node, keyword)?,
            }
        }
        Keyword::Stopsignal => {
            no_flags(node)?;
            Command::Stopsignal {
                signal: exactly_one(node, keyword)?,
            }
        }
        Keyword::Healthcheck => Command::Healthcheck(parse_healthcheck(node)?),
        Keyword::Onbuild => {
            no_flags(node)?;
            let Some(trigger) = &node.trigger else {
                return Err(arguments(node, keyword, "requires at least one argument"));
            };
            let upper = trigger.keyword.as_str();
            if matches!(upper, "ONBUILD" | "FROM" | "MAINTAINER") {
                let kind = if upper == "ONBUILD" {
                    ErrorKind::Arguments {
                        keyword: "ONBUILD".into(),
                        expected: "cannot be chained: `ONBUILD ONBUILD` isn't allowed".into(),
                    }
                } else {
                    ErrorKind::InvalidTrigger {
                        trigger: upper.to_owned(),
                    }
                };
                return Err(ParseError::new(kind, trigger.keyword_span.clone()));
            }
            Command::Onbuild {
                trigger: Box::new(parse_instruction(trigger)?),
            }
        }
    };
    Ok(Instruction {
        keyword,
        span: node.span.clone(),
        original: node.original.clone(),
        command,
    })
}

impl Node {
    fn keyword_span_text(&self) -> String {
        self.original
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap_or(&self.keyword)
            .to_owned()
    }
}

fn invalid_value(flags: &Flags<'_>, flag: &str, value: &str, reason: &str) -> ParseError {
    ParseError::new(
        ErrorKind::InvalidFlagValue {
            flag: flag.to_owned(),
            value: value.to_owned(),
            reason: reason.to_owned(),
        },
        flags.span(flag).unwrap_or_default(),
    )
}

fn key_values(node: &Node, keyword: Keyword) -> Result<Vec<KeyValue>, ParseError> {
    let pairs: Vec<KeyValue> = node
        .pairs
        .iter()
        .flatten()
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: v.clone().unwrap_or_default(),
        })
        .collect();
    if pairs.is_empty() {
        return Err(arguments(node, keyword, "requires at least one argument"));
    }
    if pairs.iter().any(|p| p.key.is_empty()) {
        return Err(arguments(node, keyword, "names can not be blank"));
    }
    Ok(pairs)
}

fn is_valid_stage_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'))
}

fn sources_and_dest(node: &Node, keyword: Keyword) -> Result<(Vec<Source>, String), ParseError> {
    let Some((dest, srcs)) = node.args.split_last().filter(|(_, s)| !s.is_empty()) else {
        return Err(arguments(
            node,
            keyword,
            "requires at least two arguments, but only one was provided. Destination could not be determined",
        ));
    };
    let mut heredocs = node.heredocs.iter();
    let is_heredoc = |w: &str| node.form == Form::Shell && is_heredoc_word(w);
    if is_heredoc(dest) {
        return Err(arguments(
            node,
            keyword,
            "cannot accept a heredoc as a destination",
        ));
    }
    let mut sources = Vec::with_capacity(srcs.len());
    for src in srcs {
        if is_heredoc(src) {
            if let Some(h) = heredocs.next() {
                sources.push(Source::Heredoc {
                    name: h.name.clone(),
                    content: h.content.clone(),
                    expand: h.expand,
                });
                continue;
            }
        }
        sources.push(Source::Path { path: src.clone() });
    }
    Ok((sources, dest.clone()))
}

fn is_heredoc_word(w: &str) -> bool {
    let digits = w.trim_start_matches(|c: char| c.is_ascii_digit());
    digits
        .strip_prefix("<<")
        .map(|r| r.strip_prefix('-').unwrap_or(r))
        .is_some_and(|r| !r.is_empty() && !r.contains('<'))
}

fn check_chmod(flags: &Flags<'_>) -> Result<(), ParseError> {
    let Some(mode) = flags.string("chmod") else {
        return Ok(());
    };
    if mode.contains('$') || is_valid_chmod(&mode) {
        return Ok(());
    }
    Err(invalid_value(
        flags,
        "chmod",
        &mode,
        "expected an octal mode up to 7777 (`0755`) or a symbolic one (`u=rwX,go=rX`)",
    ))
}

/// An octal mode up to `7777`, or a symbolic mode as chmod(1) takes it.
pub(crate) fn is_valid_chmod(mode: &str) -> bool {
    if mode.chars().all(|c| c.is_ascii_digit()) {
        return u32::from_str_radix(mode, 8).is_ok_and(|m| m <= 0o7777);
    }
    mode.split(',').all(|clause| {
        let rest = clause.trim_start_matches(['u', 'g', 'o', 'a']);
        let mut chars = rest.chars().peekable();
        let mut any = false;
        while let Some(op) = chars.next() {
            if !matches!(op, '+' | '-' | '=') {
                return false;
            }
            any = true;
            while chars.peek().is_some_and(|c| "rwxXstugo".contains(*c)) {
                chars.next();
            }
        }
        any
    })
}

fn parse_healthcheck(node: &Node) -> Result<Healthcheck, ParseError> {
    let keyword = Keyword::Healthcheck;
    let Some((typ, rest)) = node.args.split_first() else {
        return Err(arguments(node, keyword, "requires at least one argument"));
    };
    match typ.to_ascii_uppercase().as_str() {
        "NONE" => {
            if !rest.is_empty() {
                return Err(arguments(node, keyword, "NONE takes no arguments"));
            }
            Ok(Healthcheck::None)
        }
        "CMD" => {
            let flags = Flags::parse(
                node,
                keyword,
                &[
                    ("interval", Str),
                    ("timeout", Str),
                    ("start-period", Str),
                    ("start-interval", Str),
                    ("retries", Str),
                ],
            )?;
            if rest.is_empty() {
                return Err(arguments(node, keyword, "CMD is missing its command"));
            }
            let duration = |name: &str| -> Result<Option<Duration>, ParseError> {
                let Some(v) = flags.string(name) else {
                    return Ok(None);
                };
                match parse_go_duration(&v) {
                    Ok(d) if d.is_zero() || d >= Duration::from_millis(1) => Ok(Some(d)),
                    Ok(_) => Err(invalid_value(&flags, name, &v, "cannot be less than 1ms")),
                    Err(reason) => Err(invalid_value(&flags, name, &v, &reason)),
                }
            };
            let retries = match flags.string("retries") {
                None => None,
                Some(v) => Some(v.parse::<u32>().map_err(|_| {
                    invalid_value(&flags, "retries", &v, "expected a whole number, 0 or more")
                })?),
            };
            Ok(Healthcheck::Cmd {
                command: command_line(node, rest),
                interval: duration("interval")?,
                timeout: duration("timeout")?,
                start_period: duration("start-period")?,
                start_interval: duration("start-interval")?,
                retries,
            })
        }
        _ => Err(ParseError::new(
            ErrorKind::HealthcheckType { kind: typ.clone() },
            node.args_span.clone(),
        )),
    }
}

/// Go's `time.ParseDuration` for the non-negative durations HEALTHCHECK takes: `1h30m`, `1.5s`,
/// `500ms`, `0`.
pub(crate) fn parse_go_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let number: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("invalid duration `{s}`"))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => {
                return Err(format!(
                    "missing unit in duration `{s}` (use `s`, `m`, `h`, `ms`)"
                ));
            }
            u => return Err(format!("unknown unit `{u}` in duration `{s}`")),
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

/// Go's `encoding/csv` for one record: fields split on `,`, `"…"` quoting with `""` for a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = s.chars().peekable();
    let mut at_start = true;
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if at_start => quoted = true,
            ',' => {
                fields.push(std::mem::take(&mut field));
                at_start = true;
                continue;
            }
            c => field.push(c),
        }
        at_start = false;
    }
    if quoted {
        return Err("unterminated quote".into());
    }
    fields.push(field);
    Ok(fields)
}

/// docker's `units.RAMInBytes`: `64m`, `1g`, `512kb`, `100` (binary multiples).
pub(crate) fn parse_ram_size(s: &str) -> Option<u64> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower.strip_suffix('b').unwrap_or(&lower);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last()? {
        'k' => (&t[..t.len() - 1], 1u64 << 10),
        'm' => (&t[..t.len() - 1], 1 << 20),
        'g' => (&t[..t.len() - 1], 1 << 30),
        't' => (&t[..t.len() - 1], 1 << 40),
        'p' => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num.trim().parse().ok()?;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    (n >= 0.0).then_some((n * mult as f64) as u64)
}

/// BuildKit's `parseMount`.
fn parse_mount(spec: &str) -> Result<Mount, String> {
    let mut m = Mount {
        kind: MountType::Bind,
        target: None,
        source: None,
        from: None,
        readonly: false,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
        deferred: std::collections::BTreeMap::new(),
    };
    let mut ro: Option<bool> = None;
    let parse_bool = |key: &str, v: &str| match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" => Ok(true),
        "0" | "f" | "false" => Ok(false),
        _ => Err(format!("`{key}` takes true or false, not `{v}`")),
    };
    for field in csv_fields(spec)? {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v.to_owned())),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => ro = Some(true),
                "readwrite" | "rw" => ro = Some(false),
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(
                        format!("`required` is not an option of {:?} mounts", m.kind)
                            .to_lowercase(),
                    );
                }
                _ => return Err(format!("`{field}` must be a key=value pair")),
            }
            continue;
        };
        if matches!(key.as_str(), "mode" | "uid" | "gid" | "size") && value.contains('$') {
            m.deferred.insert(key, value);
            continue;
        }
        match key.as_str() {
            "type" => {
                m.kind = MountType::parse(&value).ok_or_else(|| {
                    format!("unsupported mount type `{value}` (expected bind, cache, tmpfs, secret or ssh)")
                })?;
            }
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => ro = Some(parse_bool(&key, &value)?),
            "readwrite" | "rw" => ro = Some(!parse_bool(&key, &value)?),
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err("`required` is only for secret and ssh mounts".into());
                }
                m.required = parse_bool(&key, &value)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err("`size` is only for tmpfs mounts".into());
                }
                m.size =
                    Some(parse_ram_size(&value).ok_or_else(|| format!("invalid size `{value}`"))?);
            }
            "id" => m.id = Some(value),
            "sharing" => {
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(format!(
                            "unsupported sharing value `{value}` (expected shared, private or locked)"
                        ));
                    }
                });
            }
            "mode" => m.mode = Some(mount_number(&key, &value, 8)?),
            "uid" => m.uid = Some(mount_number(&key, &value, 10)?),
            "gid" => m.gid = Some(mount_number(&key, &value, 10)?),
            "env" => m.env = Some(value),
            _ => return Err(format!("unexpected key `{key}` in `{field}`")),
        }
    }
    let kind = format!("{:?}", m.kind).to_lowercase();
    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (set, name) in [
            (m.mode.is_some() || m.deferred.contains_key("mode"), "mode"),
            (m.uid.is_some() || m.deferred.contains_key("uid"), "uid"),
            (m.gid.is_some() || m.deferred.contains_key("gid"), "gid"),
        ] {
            if set {
                return Err(format!("`{name}` is not allowed for {kind} mounts"));
            }
        }
    }
    if m.deferred.contains_key("size") && m.kind != MountType::Tmpfs {
        return Err("`size` is only for tmpfs mounts".into());
    }
    m.readonly = ro.unwrap_or(!matches!(m.kind, MountType::Cache | MountType::Tmpfs));
    if m.sharing.is_some() && m.kind != MountType::Cache {
        return Err(format!("`sharing` is not allowed for {kind} mounts"));
    }
    match m.kind {
        MountType::Secret => {
            if m.from.is_some() {
                return Err("a secret mount cannot have `from`".into());
            }
            if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
                return Err("a secret mount needs one of `id`, `source`, `target` or `env`".into());
            }
            if m.source.is_some() && m.id.is_some() {
                return Err("a secret mount cannot have both `source` and `id`".into());
            }
        }
        MountType::Cache => {
            m.sharing.get_or_insert(Sharing::Shared);
        }
        MountType::Ssh | MountType::Bind | MountType::Tmpfs => {}
    }
    if matches!(
        m.kind,
        MountType::Bind | MountType::Cache | MountType::Tmpfs
    ) && m.target.is_none()
    {
        return Err(format!("a {kind} mount needs `target`"));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_read_like_buildkit() {
        let m =
            parse_mount("type=cache,target=/root/.cache,id=go,sharing=locked,mode=0755,uid=1000")
                .unwrap();
        assert_eq!(m.kind, MountType::Cache);
        assert_eq!(m.sharing, Some(Sharing::Locked));
        assert_eq!(m.mode, Some(0o755));
        assert!(!m.readonly);
        let m = parse_mount("target=/src,from=build,source=/out,rw").unwrap();
        assert_eq!(m.kind, MountType::Bind);
        assert!(!m.readonly);
        let m = parse_mount("type=bind,dst=/x").unwrap();
        assert!(m.readonly);
        let m = parse_mount("type=secret,id=tok,env=TOKEN,required").unwrap();
        assert!(m.required && m.readonly);
        let m = parse_mount("type=tmpfs,target=/t,size=64m").unwrap();
        assert_eq!(m.size, Some(64 << 20));
        let m = parse_mount(r#"type=bind,"target=/a,b""#).unwrap();
        assert_eq!(m.target.as_deref(), Some("/a,b"));
        let err = parse_mount("type=bind,target=/a,foo").unwrap_err();
        assert!(err.contains("key=value"), "{err}");
    }

    #[test]
    fn numbers_with_variables_wait_for_the_build() {
        let m = parse_mount("type=cache,target=/x,uid=$U,mode=0700,gid=${G:-5}").unwrap();
        assert_eq!((m.uid, m.gid, m.mode), (None, None, Some(0o700)));
        let bad = |k: &str, v: &str, _: String| (k.to_owned(), v.to_owned());
        let vars = |v: &str| Ok(v.replace("$U", "7").replace("${G:-5}", "5"));
        let done = m.with_numbers(vars, bad).unwrap();
        assert_eq!(
            (done.uid, done.gid, done.mode),
            (Some(7), Some(5), Some(0o700))
        );
        assert!(done.deferred.is_empty());
        let err = m.with_numbers(|_| Ok("x".into()), bad).unwrap_err();
        assert_eq!((err.0.as_str(), err.1.as_str()), ("gid", "x"));
    }

    #[test]
    fn bad_mounts_say_why() {
        for (spec, needle) in [
            ("type=nfs,target=/x", "unsupported mount type"),
            ("type=cache", "needs `target`"),
            ("type=bind,target=/x,mode=0600", "not allowed"),
            ("type=bind,target=/x,sharing=locked", "sharing"),
            ("type=secret,id=a,source=b", "both"),
            ("type=cache,target=/x,bogus=1", "unexpected key"),
            ("type=cache,target=/x,uid=abc", "takes a number"),
            ("type=bind,target=/x,required", "required"),
            ("type=bind,target=/x,mode=$M", "not allowed"),
            ("target=/x,size=$S,type=cache", "only for tmpfs"),
        ] {
            let err = parse_mount(spec).unwrap_err();
            assert!(err.contains(needle), "{spec}: {err}");
        }
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_go_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(
            parse_go_duration("1.5h").unwrap(),
            Duration::from_secs(5400)
        );
        assert_eq!(
            parse_go_duration("250ms").unwrap(),
            Duration::from_millis(250)
        );
        assert!(parse_go_duration("10").is_err());
        assert!(parse_go_duration("5d").is_err());
    }

    #[test]
    fn chmod_forms() {
        for ok in ["755", "0644", "7777", "u=rwX,go=rX", "a+x", "g-w", "+x"] {
            assert!(is_valid_chmod(ok), "{ok}");
        }
        for bad in ["8888", "17777", "u", "x+", "rw"] {
            assert!(!is_valid_chmod(bad), "{bad}");
        }
    }

    #[test]
    fn csv_quotes() {
        assert_eq!(csv_fields(r#"a,"b,c",d"#).unwrap(), ["a", "b,c", "d"]);
        assert_eq!(csv_fields(r#""say ""hi""""#).unwrap(), [r#"say "hi""#]);
    }
}
