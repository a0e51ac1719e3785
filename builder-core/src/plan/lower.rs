//! Lowering a checked Dockerfile to a [`Graph`]: variables expanded in each stage's scope (ARG,
//! ENV, the base's environment, build args, the automatic platform args), `--from` decided, the
//! base's ONBUILD triggers put first, paths made absolute against WORKDIR. Image metadata comes
//! from a [`Resolve`]r, so lowering needs no store and no network.

use crate::dockerfile::{
    ArgDecl, Checked, Command, CommandLine, CopySource, Instruction, KeyValue, Lexer,
    Source as Base,
};

use super::graph::{self, Config, Exec, File, Graph, Kind, Mount, Network, Op, OpId, Source};
use super::{Error, Resolve};

/// The `PATH` of a Linux image or RUN that has none (BuildKit's and containerd's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Build args every RUN sees when given, declared by an ARG or not, and that never reach the
/// image's config or history (BuildKit's and docker's predefined args).
pub const PROXY_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// What lowering reads besides the Dockerfile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--build-arg`s.
    pub build_args: std::collections::BTreeMap<String, String>,
    /// `TARGETPLATFORM`, `BUILDARCH`, …
    pub automatic_args: std::collections::BTreeMap<String, String>,
    /// `--target` (the last stage when `None`).
    pub target: Option<String>,
}

/// A stage's scope while it is lowered.
#[derive(Debug, Clone, Default)]
struct Scope {
    /// Variables for expansion, in the order set (last wins).
    vars: Vec<(String, String)>,
    workdir: String,
    user: String,
    shell: Vec<String>,
    /// ONBUILD triggers this stage registers (run by a stage built FROM it).
    on_build: Vec<String>,
    /// The last op: what the next one works on.
    last: OpId,
}

struct Lowering<'a> {
    checked: &'a Checked,
    opts: &'a Options,
    resolver: &'a dyn Resolve,
    escape: char,
    ops: Vec<Op>,
    /// Each lowered stage's scope at its end.
    done: std::collections::BTreeMap<usize, Scope>,
}

/// Lowers `checked` (its target stage and what that needs) to an op graph.
///
/// # Errors
/// An unknown `--target`, a base image the resolver cannot answer for, or a variable that
/// cannot be expanded.
pub fn lower(checked: &Checked, opts: &Options, resolver: &dyn Resolve) -> Result<Graph, Error> {
    let plan = super::plan(checked, opts.target.as_deref())?;
    let mut l = Lowering {
        checked,
        opts,
        resolver,
        escape: checked.directives.escape_char(),
        ops: Vec::new(),
        done: std::collections::BTreeMap::new(),
    };
    let mut stages = Vec::new();
    for &index in &plan.order {
        let scope = l.stage(index)?;
        stages.push(graph::Stage {
            index,
            name: checked.stages[index].name.clone(),
            result: scope.last,
        });
        l.done.insert(index, scope);
    }
    Ok(Graph {
        target: plan.target,
        stages,
        skipped: plan.skipped,
        ops: l.ops,
    })
}

impl Lowering<'_> {
    fn push(&mut self, op: Op) -> OpId {
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn expand(&self, scope: &Scope, line: usize, word: &str) -> Result<String, Error> {
        Lexer::new(self.escape)
            .word(word, &scope.vars)
            .map_err(|source| Error::Expand {
                line,
                word: word.to_owned(),
                source,
            })
    }

    /// The base of stage `index`, its ONBUILD triggers, then its instructions.
    fn stage(&mut self, index: usize) -> Result<Scope, Error> {
        let stage = &self.checked.stages[index];
        let line = stage.span.line;
        let mut scope = Scope {
            workdir: "/".into(),
            shell: vec!["/bin/sh".into(), "-c".into()],
            ..Scope::default()
        };
        let mut inputs = Vec::new();
        let mut triggers = Vec::new();
        let source =
            match &stage.base.source {
                Base::Scratch => {
                    scope.vars.push(("PATH".into(), DEFAULT_PATH.into()));
                    Source::Scratch
                }
                Base::Stage(i) => {
                    let from = self.done.get(i).ok_or(Error::Order { stage: *i })?.clone();
                    inputs.push(from.last);
                    triggers.clone_from(&from.on_build);
                    scope = Scope {
                        on_build: Vec::new(),
                        ..from
                    };
                    Source::Stage { stage: *i }
                }
                Base::Image(name) | Base::Deferred(name) => {
                    let image = self
                        .resolver
                        .resolve(name)
                        .map_err(|reason| Error::Resolve {
                            name: name.clone(),
                            reason,
                        })?;
                    if !image.env.iter().any(|e| e.starts_with("PATH=")) {
                        scope.vars.push(("PATH".into(), DEFAULT_PATH.into()));
                    }
                    scope.vars.extend(image.env.iter().filter_map(|e| {
                        e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
                    }));
                    scope.workdir = image.working_dir.unwrap_or_else(|| "/".into());
                    scope.user = image.user.unwrap_or_default();
                    if let Some(shell) = image.shell {
                        scope.shell = shell;
                    }
                    triggers = image.on_build;
                    Source::Image {
                        name: name.clone(),
                        digest: image.digest.to_string(),
                    }
                }
            };
        scope.last = self.push(Op {
            stage: index,
            line,
            instruction: format!("FROM {}", stage.base.expanded),
            inputs,
            kind: Kind::Source(source),
        });
        for text in triggers {
            let inst = trigger(&text)?;
            self.instruction(index, &mut scope, &inst, Some((line, &text)))?;
        }
        for inst in &stage.instructions {
            self.instruction(index, &mut scope, inst, None)?;
        }
        Ok(scope)
    }

    /// Lowers one instruction onto `scope` (`trigger`: the FROM line and the trigger's text).
    fn instruction(
        &mut self,
        index: usize,
        scope: &mut Scope,
        inst: &Instruction,
        trigger: Option<(usize, &str)>,
    ) -> Result<(), Error> {
        let line = trigger.map_or(inst.span.line, |(l, _)| l);
        let mut inputs = vec![scope.last];
        let kind = match &inst.command {
            Command::Run(run) => Kind::Exec(self.exec(scope, line, run, &mut inputs)?),
            Command::Copy(c) => {
                let from = self.from(c.from.as_deref(), line, &mut inputs)?;
                let flags = [(c.link, "link"), (c.parents, "parents")];
                let f = self.file(scope, line, "copy", &c.sources, &c.dest, from, &flags)?;
                Kind::File(File {
                    chown: self.maybe(scope, line, c.chown.as_deref())?,
                    chmod: self.maybe(scope, line, c.chmod.as_deref())?,
                    exclude: c.exclude.clone(),
                    ..f
                })
            }
            Command::Add(a) => {
                let flags = [(a.link, "link"), (a.keep_git_dir, "keep-git-dir")];
                let f = self.file(scope, line, "add", &a.sources, &a.dest, None, &flags)?;
                Kind::File(File {
                    chown: self.maybe(scope, line, a.chown.as_deref())?,
                    chmod: self.maybe(scope, line, a.chmod.as_deref())?,
                    exclude: a.exclude.clone(),
                    ..f
                })
            }
            other => Kind::Config(self.config(index, scope, line, other)?),
        };
        if let Kind::File(f) = &kind {
            if f.from.is_none() {
                let remote = f.sources.iter().all(|s| s.contains("://"));
                let source = if remote && f.action == "add" {
                    Source::Url {
                        url: f.sources.join(" "),
                    }
                } else {
                    Source::Context {
                        paths: f.sources.clone(),
                    }
                };
                let id = self.push(Op {
                    stage: index,
                    line,
                    instruction: inst.original.clone(),
                    inputs: Vec::new(),
                    kind: Kind::Source(source),
                });
                inputs.push(id);
            }
        }
        scope.last = self.push(Op {
            stage: index,
            line,
            instruction: trigger.map_or_else(
                || inst.original.clone(),
                |(_, text)| format!("ONBUILD {text}"),
            ),
            inputs,
            kind,
        });
        Ok(())
    }

    fn maybe(&self, scope: &Scope, line: usize, v: Option<&str>) -> Result<Option<String>, Error> {
        v.map(|v| self.expand(scope, line, v)).transpose()
    }

    /// `--from` (COPY, RUN mounts): a stage (its result becomes an input) or an image name,
    /// expanded with the global and automatic args only, as BuildKit does.
    fn from(
        &mut self,
        from: Option<&str>,
        line: usize,
        inputs: &mut Vec<OpId>,
    ) -> Result<Option<String>, Error> {
        let Some(from) = from else { return Ok(None) };
        let mut vars: Vec<(String, String)> = self
            .opts
            .automatic_args
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.extend(
            self.checked
                .global_args
                .iter()
                .filter_map(|g| Some((g.decl.name.clone(), g.value.clone()?))),
        );
        let name = Lexer::new(self.escape)
            .word(from, &vars)
            .map_err(|source| Error::Expand {
                line,
                word: from.to_owned(),
                source,
            })?;
        if let Some(stage) = self.checked.stage(&name) {
            if let Some(done) = self.done.get(&stage.index) {
                inputs.push(done.last);
                return Ok(Some(format!("stage {}", stage.index)));
            }
        }
        let id = self.push(Op {
            stage: usize::MAX,
            line,
            instruction: format!("--from={name}"),
            inputs: Vec::new(),
            kind: Kind::Source(Source::Image {
                name: name.clone(),
                digest: self
                    .resolver
                    .resolve(&name)
                    .map_err(|reason| Error::Resolve {
                        name: name.clone(),
                        reason,
                    })?
                    .digest
                    .to_string(),
            }),
        });
        inputs.push(id);
        Ok(Some(name))
    }

    #[allow(clippy::too_many_arguments)]
    fn file(
        &self,
        scope: &Scope,
        line: usize,
        action: &str,
        sources: &[CopySource],
        dest: &str,
        from: Option<String>,
        flags: &[(bool, &str)],
    ) -> Result<File, Error> {
        let sources = sources
            .iter()
            .map(|s| match s {
                CopySource::Path { path } => self.expand(scope, line, path),
                CopySource::Heredoc { name, .. } => Ok(format!("<<{name}")),
            })
            .collect::<Result<_, _>>()?;
        let written = self.expand(scope, line, dest)?;
        let mut dest = absolute(&scope.workdir, &written);
        if written.ends_with('/') && dest != "/" {
            dest.push('/');
        }
        Ok(File {
            action: action.into(),
            sources,
            from,
            dest,
            chown: None,
            chmod: None,
            flags: flags
                .iter()
                .filter(|(on, _)| *on)
                .map(|(_, f)| (*f).to_owned())
                .collect(),
            exclude: Vec::new(),
        })
    }

    fn exec(
        &mut self,
        scope: &Scope,
        line: usize,
        run: &crate::dockerfile::Run,
        inputs: &mut Vec<OpId>,
    ) -> Result<Exec, Error> {
        let args = match &run.command {
            CommandLine::Exec(v) => v.clone(),
            CommandLine::Shell(s) => {
                let mut v = scope.shell.clone();
                v.push(s.clone());
                v
            }
        };
        let network = match self.maybe(scope, line, run.network.as_deref())?.as_deref() {
            None | Some("default") => Network::Default,
            Some("none") => Network::None,
            Some("host") => Network::Host,
            Some(other) => {
                return Err(Error::Network {
                    line,
                    value: other.to_owned(),
                });
            }
        };
        let mut mounts = Vec::new();
        for m in &run.mounts {
            let from = self.from(m.from.as_deref(), line, inputs)?;
            mounts.push(Mount {
                kind: serde_json::to_value(m.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                target: self
                    .maybe(scope, line, m.target.as_deref())?
                    .map(|t| absolute(&scope.workdir, &t)),
                source: self.maybe(scope, line, m.source.as_deref())?,
                from,
                readonly: m.readonly,
            });
        }
        Ok(Exec {
            args,
            env: environment(&scope.vars, &self.opts.build_args),
            user: scope.user.clone(),
            workdir: scope.workdir.clone(),
            network,
            security: run.security.clone(),
            mounts,
            heredocs: run.heredocs.iter().map(|h| h.name.clone()).collect(),
        })
    }

    fn config(
        &self,
        index: usize,
        scope: &mut Scope,
        line: usize,
        command: &Command,
    ) -> Result<Config, Error> {
        let expand = |scope: &Scope, v: &str| self.expand(scope, line, v);
        let pairs = |scope: &Scope, pairs: &[KeyValue]| -> Result<Vec<(String, String)>, Error> {
            pairs
                .iter()
                .map(|p| Ok((expand(scope, &p.key)?, expand(scope, &p.value)?)))
                .collect()
        };
        let joined = |p: &[(String, String)]| p.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let (keyword, values): (&str, Vec<String>) = match command {
            Command::Env { pairs: p } => {
                // Every value is expanded against the scope before the instruction.
                let set = pairs(scope, p)?;
                scope.vars.extend(set.iter().cloned());
                ("ENV", joined(&set))
            }
            Command::Label { pairs: p } => ("LABEL", joined(&pairs(scope, p)?)),
            Command::Arg { args } => {
                let set = self.declare(index, scope, line, args)?;
                scope.vars.extend(set.iter().cloned());
                ("ARG", joined(&set))
            }
            Command::Workdir { path } => {
                scope.workdir = absolute(&scope.workdir, &expand(scope, path)?);
                ("WORKDIR", vec![scope.workdir.clone()])
            }
            Command::User { user } => {
                scope.user = expand(scope, user)?;
                ("USER", vec![scope.user.clone()])
            }
            Command::Shell { shell } => {
                scope.shell.clone_from(shell);
                ("SHELL", shell.clone())
            }
            Command::Expose { ports } => (
                "EXPOSE",
                ports
                    .iter()
                    .map(|p| expand(scope, p))
                    .collect::<Result<_, _>>()?,
            ),
            Command::Volume { paths } => (
                "VOLUME",
                paths
                    .iter()
                    .map(|p| expand(scope, p))
                    .collect::<Result<_, _>>()?,
            ),
            Command::Stopsignal { signal } => ("STOPSIGNAL", vec![expand(scope, signal)?]),
            Command::Maintainer { name } => ("MAINTAINER", vec![name.clone()]),
            Command::Cmd(c) => ("CMD", command_line(scope, c)),
            Command::Entrypoint(c) => ("ENTRYPOINT", command_line(scope, c)),
            Command::Healthcheck(h) => (
                "HEALTHCHECK",
                match h {
                    crate::dockerfile::Healthcheck::None => vec!["NONE".into()],
                    crate::dockerfile::Healthcheck::Cmd { command, .. } => {
                        command_line(scope, command)
                    }
                },
            ),
            Command::Onbuild { trigger } => {
                let text = trigger.original.clone();
                scope.on_build.push(text.clone());
                ("ONBUILD", vec![text])
            }
            Command::From(_) | Command::Run(_) | Command::Copy(_) | Command::Add(_) => {
                return Err(Error::Order { stage: index });
            }
        };
        Ok(Config {
            keyword: keyword.into(),
            values,
        })
    }

    /// ARG: a build arg if given, else the default, else the global value a re-declared global
    /// ARG inherits, else an automatic platform ARG.
    fn declare(
        &self,
        index: usize,
        scope: &Scope,
        line: usize,
        args: &[ArgDecl],
    ) -> Result<Vec<(String, String)>, Error> {
        let stage = &self.checked.stages[index];
        let mut out = Vec::new();
        let mut now = scope.clone();
        for a in args {
            let value = if let Some(v) = self.opts.build_args.get(&a.name) {
                Some(v.clone())
            } else if let Some(d) = &a.default {
                Some(self.expand(&now, line, d)?)
            } else if let Some((_, v)) = stage.inherited_args.iter().find(|(n, _)| *n == a.name) {
                v.clone()
            } else {
                self.opts.automatic_args.get(&a.name).cloned()
            };
            if let Some(v) = value {
                now.vars.push((a.name.clone(), v.clone()));
                out.push((a.name.clone(), v));
            }
        }
        Ok(out)
    }
}

/// RUN's environment: every variable in scope once (its last value, in the order first set),
/// the proxy build args not declared, and `PATH` if none is set.
pub fn environment(
    vars: &[(String, String)],
    build_args: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut seen = std::collections::BTreeMap::new();
    for (i, (k, v)) in vars.iter().enumerate() {
        seen.insert(k.clone(), (i, v.clone()));
    }
    let mut ordered: Vec<(usize, String, String)> =
        seen.into_iter().map(|(k, (i, v))| (i, k, v)).collect();
    ordered.sort();
    let mut env: Vec<String> = ordered
        .into_iter()
        .map(|(_, k, v)| format!("{k}={v}"))
        .collect();
    for name in PROXY_ARGS {
        if let Some(v) = build_args.get(name) {
            if !env
                .iter()
                .any(|e| e.split_once('=').is_some_and(|(k, _)| k == name))
            {
                env.push(format!("{name}={v}"));
            }
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    env
}

fn command_line(scope: &Scope, line: &CommandLine) -> Vec<String> {
    match line {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = scope.shell.clone();
            v.push(s.clone());
            v
        }
    }
}

/// `path` joined onto `workdir` and cleaned, as WORKDIR and COPY destinations are.
pub fn absolute(workdir: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("{}/{path}", workdir.trim_end_matches('/'))
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// An ONBUILD trigger stored in an image, read back into an instruction.
fn trigger(text: &str) -> Result<Instruction, Error> {
    let bad = |source| Error::Trigger {
        text: text.to_owned(),
        source: Box::new(source),
    };
    let parsed = crate::dockerfile::parse(text).map_err(bad)?;
    match parsed.instructions.first() {
        Some(node) => crate::dockerfile::parse_instruction(node).map_err(bad),
        None => Err(Error::Order { stage: usize::MAX }),
    }
}
