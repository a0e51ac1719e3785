//! Lowering a checked Dockerfile to a [`Graph`]: variables expanded in each stage's scope (ARG,
//! ENV, the base's environment, build args, the automatic platform args), `--from` decided, the
//! base's ONBUILD triggers put first, paths made absolute against WORKDIR. Image metadata comes
//! from a [`Resolve`]r, so lowering needs no store and no network.

use crate::dockerfile::{
    ArgDecl, Checked, Command, CommandLine, CopySource, Instruction, KeyValue, Lexer,
    Source as Base,
};

use super::graph::{
    self, Config, Exec, File, FileSource, From, Graph, Health, Kind, Mount, Network, Op, OpId,
    Script, Source,
};
use super::{CacheKey, Error, Resolve};
use crate::digest::Digest;

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
    /// `--build-context`s, by lower-case name (as the check pass was given them).
    pub named_contexts: std::collections::BTreeMap<String, crate::dockerfile::Named>,
    /// Each stage's `FROM --platform`, expanded (`OS/ARCH[/VARIANT]`), by stage index: its
    /// base is resolved for that platform.
    pub stage_platforms: std::collections::BTreeMap<usize, String>,
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
    /// The stage's steps so far: FROM, the base's triggers, its instructions.
    steps: Vec<OpId>,
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
            steps: scope.steps.clone(),
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
    fn push(&mut self, mut op: Op) -> OpId {
        op.digest = Digest::of(op.kind.form().as_bytes()).to_string();
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn expand(&self, scope: &Scope, word: &str) -> Result<String, Error> {
        Lexer::new(self.escape)
            .word(word, &scope.vars)
            .map_err(|source| Error::Expand {
                word: word.to_owned(),
                source,
            })
    }

    /// What stage `index` starts from: `scope` and `triggers` set from its base (a stage's
    /// scope at its end, an image's config), the ops it reads put in `inputs`.
    fn base(
        &mut self,
        index: usize,
        scope: &mut Scope,
        inputs: &mut Vec<OpId>,
        triggers: &mut Vec<String>,
    ) -> Result<Source, Error> {
        let stage = &self.checked.stages[index];
        let line = stage.span.line;
        Ok(match &stage.base.source {
            Base::Scratch => {
                scope.vars.push(("PATH".into(), DEFAULT_PATH.into()));
                Source::Scratch
            }
            Base::Stage(i) => {
                let from = self.done.get(i).ok_or(Error::Order { stage: *i })?.clone();
                inputs.push(from.last);
                triggers.clone_from(&from.on_build);
                *scope = Scope {
                    on_build: Vec::new(),
                    ..from
                };
                Source::Stage { stage: *i }
            }
            Base::Context(name) => {
                return Err(Error::Step {
                    line,
                    keyword: "FROM".into(),
                    instruction: format!("FROM {}", stage.base.expanded),
                    source: Box::new(Error::Unsupported {
                        what: format!(
                            "FROM the directory context `{name}` (`COPY --from={name}` reads it)"
                        ),
                    }),
                });
            }
            Base::Image(name) | Base::Deferred(name) => {
                let resolved = match self.opts.stage_platforms.get(&index) {
                    Some(platform) => self.resolver.resolve_for(name, platform),
                    None => self.resolver.resolve(name),
                };
                let image = resolved.map_err(|reason| Error::Step {
                    line,
                    keyword: "FROM".into(),
                    instruction: format!("FROM {}", stage.base.expanded),
                    source: Box::new(Error::Resolve {
                        name: name.clone(),
                        reason,
                    }),
                })?;
                if !image.env.iter().any(|e| e.starts_with("PATH=")) {
                    scope.vars.push(("PATH".into(), DEFAULT_PATH.into()));
                }
                scope.vars.extend(
                    image.env.iter().filter_map(|e| {
                        e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned()))
                    }),
                );
                scope.workdir = image.working_dir.unwrap_or_else(|| "/".into());
                scope.user = image.user.unwrap_or_default();
                if let Some(shell) = image.shell {
                    scope.shell = shell;
                }
                *triggers = image.on_build;
                Source::Image {
                    name: name.clone(),
                    digest: image.digest.to_string(),
                }
            }
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
        let source = self.base(index, &mut scope, &mut inputs, &mut triggers)?;
        scope.last = self.push(Op {
            digest: String::new(),
            key: None,
            cached: None,
            stage: index,
            line,
            instruction: format!("FROM {}", stage.base.expanded),
            inputs,
            kind: Kind::Source(source),
        });
        scope.steps = vec![scope.last];
        for text in triggers {
            let at = |e| Error::Step {
                line,
                keyword: "ONBUILD".into(),
                instruction: format!("ONBUILD {text}"),
                source: Box::new(e),
            };
            let inst = trigger(&text).map_err(at)?;
            self.instruction(index, &mut scope, &inst, Some((line, &text)))
                .map_err(at)?;
        }
        for inst in &stage.instructions {
            self.instruction(index, &mut scope, inst, None)
                .map_err(|e| Error::Step {
                    line: inst.span.line,
                    keyword: inst.keyword.as_str().to_owned(),
                    instruction: inst.original.clone(),
                    source: Box::new(e),
                })?;
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
                let from = match c.from.as_deref() {
                    Some(f) => Some(self.from(&self.copy_from(f)?, line, &mut inputs)?),
                    None => None,
                };
                let f = self.file(scope, "copy", &c.sources, &c.dest)?;
                Kind::File(File {
                    from,
                    chown: self.maybe(scope, c.chown.as_deref())?,
                    chmod: self.maybe(scope, c.chmod.as_deref())?,
                    exclude: c.exclude.clone(),
                    parents: c.parents,
                    link: c.link,
                    ..f
                })
            }
            Command::Add(a) => {
                let f = self.file(scope, "add", &a.sources, &a.dest)?;
                Kind::File(File {
                    chown: self.maybe(scope, a.chown.as_deref())?,
                    chmod: self.maybe(scope, a.chmod.as_deref())?,
                    exclude: a.exclude.clone(),
                    link: a.link,
                    unpack: a.unpack != Some(false),
                    checksum: self.maybe(scope, a.checksum.as_deref())?,
                    keep_git_dir: a.keep_git_dir,
                    ..f
                })
            }
            other => Kind::Config(self.config(index, scope, other)?),
        };
        if let Kind::File(f) = &kind {
            let paths: Vec<String> = f
                .sources
                .iter()
                .filter_map(|s| match s {
                    FileSource::Path(p) => Some(p.clone()),
                    FileSource::Heredoc { .. } => None,
                })
                .collect();
            if f.from.is_none() && !paths.is_empty() {
                let remote = paths.iter().all(|s| s.contains("://"));
                let source = if remote && f.action == "add" {
                    Source::Url {
                        url: paths.join(" "),
                    }
                } else {
                    Source::Context { paths }
                };
                let id = self.push(Op {
                    digest: String::new(),
                    key: None,
                    cached: None,
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
            digest: String::new(),
            key: None,
            cached: None,
            stage: index,
            line,
            instruction: trigger.map_or_else(
                || inst.original.clone(),
                |(_, text)| format!("ONBUILD {text}"),
            ),
            inputs,
            kind,
        });
        scope.steps.push(scope.last);
        Ok(())
    }

    fn maybe(&self, scope: &Scope, v: Option<&str>) -> Result<Option<String>, Error> {
        v.map(|v| self.expand(scope, v)).transpose()
    }

    /// `COPY --from`, expanded with the global and automatic args only, as BuildKit does.
    fn copy_from(&self, from: &str) -> Result<String, Error> {
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
        Lexer::new(self.escape)
            .word(from, &vars)
            .map_err(|source| Error::Expand {
                word: from.to_owned(),
                source,
            })
    }

    /// What `--from=name` reads: a stage (its result becomes an input) or an image (a source
    /// op, the resolver's answer, becomes one).
    fn from(&mut self, name: &str, line: usize, inputs: &mut Vec<OpId>) -> Result<From, Error> {
        let lower = name.to_ascii_lowercase();
        // A named context is read whatever a stage of the name would be.
        let name = match self.opts.named_contexts.get(&lower) {
            Some(crate::dockerfile::Named::Local) => return Ok(From::Context(lower)),
            Some(crate::dockerfile::Named::Image(reference)) => reference.as_str(),
            None => match self.checked.stage(name) {
                Some(stage) => {
                    let done = self
                        .done
                        .get(&stage.index)
                        .ok_or(Error::Order { stage: stage.index })?;
                    inputs.push(done.last);
                    return Ok(From::Stage(stage.index));
                }
                None => name,
            },
        };
        let image = self
            .resolver
            .resolve(name)
            .map_err(|reason| Error::Resolve {
                name: name.to_owned(),
                reason,
            })?;
        let id = self.push(Op {
            digest: String::new(),
            key: None,
            cached: None,
            stage: usize::MAX,
            line,
            instruction: format!("--from={name}"),
            inputs: Vec::new(),
            kind: Kind::Source(Source::Image {
                name: name.to_owned(),
                digest: image.digest.to_string(),
            }),
        });
        inputs.push(id);
        Ok(From::Image(name.to_owned()))
    }

    /// A COPY's or ADD's sources and destination; the caller adds its flags.
    fn file(
        &self,
        scope: &Scope,
        action: &str,
        sources: &[CopySource],
        dest: &str,
    ) -> Result<File, Error> {
        let sources = sources
            .iter()
            .map(|s| match s {
                CopySource::Path { path } => Ok(FileSource::Path(self.expand(scope, path)?)),
                CopySource::Heredoc {
                    name,
                    content,
                    expand,
                } => {
                    let content = if *expand {
                        let mut lex = Lexer::new(self.escape);
                        lex.skip_process_quotes = true;
                        lex.word(content, &scope.vars)
                            .map_err(|source| Error::Expand {
                                word: name.clone(),
                                source,
                            })?
                    } else {
                        content.clone()
                    };
                    Ok(FileSource::Heredoc {
                        name: name.clone(),
                        content,
                    })
                }
            })
            .collect::<Result<_, Error>>()?;
        let written = self.expand(scope, dest)?;
        Ok(File {
            action: action.into(),
            sources,
            from: None,
            dest: absolute(&scope.workdir, &written),
            dest_is_dir: written.ends_with('/') || written.ends_with("/.") || written == ".",
            chown: None,
            chmod: None,
            exclude: Vec::new(),
            parents: false,
            link: false,
            unpack: false,
            checksum: None,
            keep_git_dir: false,
        })
    }

    fn exec(
        &mut self,
        scope: &Scope,
        line: usize,
        run: &crate::dockerfile::Run,
        inputs: &mut Vec<OpId>,
    ) -> Result<Exec, Error> {
        let (args, script) = run_args(&scope.shell, run);
        let network = match self.maybe(scope, run.network.as_deref())?.as_deref() {
            None | Some("default") => Network::Default,
            Some("none") => Network::None,
            Some("host") => Network::Host,
            Some(other) => {
                return Err(Error::Invalid {
                    flag: "--network",
                    value: other.to_owned(),
                    reason: "expected `default`, `none` or `host`".into(),
                });
            }
        };
        let mut mounts = Vec::new();
        for m in &run.mounts {
            mounts.push(self.mount(scope, line, m, inputs)?);
        }
        Ok(Exec {
            args,
            env: environment(&scope.vars, &self.opts.build_args),
            user: scope.user.clone(),
            workdir: scope.workdir.clone(),
            network,
            security: run.security.clone(),
            mounts,
            script,
        })
    }

    /// A RUN mount with every value expanded in the stage's scope (`from` too, unlike
    /// `COPY --from`), its target made absolute.
    fn mount(
        &mut self,
        scope: &Scope,
        line: usize,
        m: &crate::dockerfile::Mount,
        inputs: &mut Vec<OpId>,
    ) -> Result<Mount, Error> {
        let m = m.with_numbers(
            |raw| self.expand(scope, raw),
            |key, value, reason| Error::Invalid {
                flag: "--mount",
                value: format!("{key}={value}"),
                reason,
            },
        )?;
        let from = match self.maybe(scope, m.from.as_deref())? {
            Some(name) => Some(self.from(&name, line, inputs)?),
            None => None,
        };
        Ok(Mount {
            kind: m.kind,
            target: self
                .maybe(scope, m.target.as_deref())?
                .map(|t| absolute(&scope.workdir, &t)),
            source: self.maybe(scope, m.source.as_deref())?,
            from,
            readonly: m.readonly,
            id: self.maybe(scope, m.id.as_deref())?,
            sharing: m.sharing,
            mode: m.mode,
            uid: m.uid,
            gid: m.gid,
            size: m.size,
            required: m.required,
            env: m.env.clone(),
        })
    }

    fn config(&self, index: usize, scope: &mut Scope, command: &Command) -> Result<Config, Error> {
        let expand = |scope: &Scope, v: &str| self.expand(scope, v);
        let all = |scope: &Scope, v: &[String]| -> Result<Vec<String>, Error> {
            v.iter().map(|x| expand(scope, x)).collect()
        };
        let pairs = |scope: &Scope, pairs: &[KeyValue]| -> Result<Vec<(String, String)>, Error> {
            pairs
                .iter()
                .map(|p| Ok((expand(scope, &p.key)?, expand(scope, &p.value)?)))
                .collect()
        };
        let invalid = |flag: &'static str, value: String, reason: String| Error::Invalid {
            flag,
            value,
            reason,
        };
        Ok(match command {
            Command::Env { pairs: p } => {
                // Every value is expanded against the scope before the instruction.
                let set = pairs(scope, p)?;
                scope.vars.extend(set.iter().cloned());
                Config::Env(set)
            }
            Command::Label { pairs: p } => Config::Label(pairs(scope, p)?),
            Command::Arg { args } => {
                let set = self.declare(index, scope, args)?;
                scope.vars.extend(set.iter().cloned());
                Config::Arg(set)
            }
            Command::Workdir { path } => {
                // BuildKit keeps an absolute WORKDIR as written (`/w/./a/../b/`) and joins, so
                // cleans, a relative one.
                let expanded = expand(scope, path)?;
                scope.workdir = if expanded.starts_with('/') {
                    expanded
                } else {
                    absolute(&scope.workdir, &expanded)
                };
                Config::Workdir(scope.workdir.clone())
            }
            Command::User { user } => {
                scope.user = expand(scope, user)?;
                Config::User(scope.user.clone())
            }
            Command::Shell { shell } => {
                scope.shell.clone_from(shell);
                Config::Shell(shell.clone())
            }
            Command::Expose { ports } => {
                let mut out = Vec::new();
                // A word that expands to nothing is no port (BuildKit splits the words).
                for p in all(scope, ports)?.into_iter().filter(|p| !p.is_empty()) {
                    out.extend(expand_ports(&p).map_err(|reason| invalid("EXPOSE", p, reason))?);
                }
                Config::Expose(out)
            }
            Command::Volume { paths } => Config::Volume(all(scope, paths)?),
            Command::Stopsignal { signal } => {
                let signal = expand(scope, signal)?;
                if !is_signal(&signal) {
                    return Err(invalid(
                        "STOPSIGNAL",
                        signal,
                        "not a signal (a number, or a name such as SIGTERM or SIGRTMIN+3)".into(),
                    ));
                }
                Config::Stopsignal(signal)
            }
            Command::Maintainer { name } => Config::Maintainer(name.clone()),
            Command::Cmd(c) => Config::Cmd(command_line(scope, c)),
            Command::Entrypoint(c) => Config::Entrypoint(command_line(scope, c)),
            Command::Healthcheck(h) => Config::Healthcheck(health(h)),
            Command::Onbuild { trigger } => {
                scope.on_build.push(trigger.original.clone());
                Config::Onbuild(trigger.original.clone())
            }
            Command::From(_) | Command::Run(_) | Command::Copy(_) | Command::Add(_) => {
                return Err(Error::Order { stage: index });
            }
        })
    }

    /// ARG: a build arg if given, else the default, else the global value a re-declared global
    /// ARG inherits, else an automatic platform ARG.
    fn declare(
        &self,
        index: usize,
        scope: &Scope,
        args: &[ArgDecl],
    ) -> Result<Vec<(String, String)>, Error> {
        let stage = &self.checked.stages[index];
        let mut out = Vec::new();
        let mut now = scope.clone();
        for a in args {
            let value = if let Some(v) = self.opts.build_args.get(&a.name) {
                Some(v.clone())
            } else if let Some(d) = &a.default {
                Some(self.expand(&now, d)?)
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

/// RUN's command line: the exec form as written; the shell form under the stage's shell, with
/// heredocs as BuildKit passes them. `RUN <<EOF` alone runs the heredoc (a `#!` one as the
/// file `/dev/pipes/EOF`); heredocs inside a line (`python3 <<EOF`) follow it, each body and
/// its delimiter, for the shell to read.
fn run_args(shell: &[String], run: &crate::dockerfile::Run) -> (Vec<String>, Option<Script>) {
    let with_shell = |line: String| -> Vec<String> {
        shell.iter().cloned().chain(std::iter::once(line)).collect()
    };
    match (&run.command, run.heredocs.as_slice()) {
        (CommandLine::Exec(v), _) => (v.clone(), None),
        (CommandLine::Shell(s), []) => (with_shell(s.clone()), None),
        (CommandLine::Shell(s), [h]) if is_only_heredoc(s, &h.name) => {
            if h.content.starts_with("#!") {
                let script = Script {
                    name: h.name.clone(),
                    content: h.content.clone(),
                };
                (vec![format!("/dev/pipes/{}", h.name)], Some(script))
            } else {
                (with_shell(h.content.clone()), None)
            }
        }
        (CommandLine::Shell(s), docs) => {
            let mut line = s.clone();
            for h in docs {
                line.push('\n');
                line.push_str(&h.content);
                line.push_str(&h.name);
            }
            (with_shell(line), None)
        }
    }
}

/// Whether a RUN's shell line is nothing but the heredoc `name` (`<<EOF`, `<<-"EOF"`…).
fn is_only_heredoc(line: &str, name: &str) -> bool {
    let rest = line.trim().strip_prefix("<<").unwrap_or_default();
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let unquoted = rest
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .or_else(|| rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')))
        .unwrap_or(rest);
    !name.is_empty() && unquoted == name
}

/// HEALTHCHECK as the image config holds it.
fn health(h: &crate::dockerfile::Healthcheck) -> Health {
    use crate::dockerfile::Healthcheck;
    match h {
        Healthcheck::None => Health {
            test: vec!["NONE".into()],
            interval: None,
            timeout: None,
            start_period: None,
            start_interval: None,
            retries: None,
        },
        Healthcheck::Cmd {
            command,
            interval,
            timeout,
            start_period,
            start_interval,
            retries,
        } => {
            let test = match command {
                CommandLine::Shell(s) => vec!["CMD-SHELL".into(), s.clone()],
                CommandLine::Exec(v) => std::iter::once("CMD".to_owned())
                    .chain(v.iter().cloned())
                    .collect(),
            };
            let ns = |d: &Option<std::time::Duration>| {
                d.map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            };
            Health {
                test,
                interval: ns(interval),
                timeout: ns(timeout),
                start_period: ns(start_period),
                start_interval: ns(start_interval),
                retries: retries.map(u64::from),
            }
        }
    }
}

/// `80`, `53/UDP`, `9000-9002/tcp` → `80/tcp`, `53/udp`, `9000/tcp`… as docker records them.
fn expand_ports(spec: &str) -> Result<Vec<String>, String> {
    let (range, proto) = match spec.split_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_owned()),
    };
    let parse = |s: &str| {
        s.parse::<u16>()
            .map_err(|_| format!("`{s}` is not a port number"))
    };
    let (lo, hi) = match range.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(range)?;
            (p, p)
        }
    };
    if hi < lo {
        return Err("the range ends before it starts".into());
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// Whether `s` names a Linux signal as docker's `signal.ParseSignal` reads it: a number from
/// 1 to 64, or a name with or without `SIG` (any case), `RTMIN+n` and `RTMAX-n` included.
fn is_signal(s: &str) -> bool {
    const NAMES: [&str; 33] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT", "KILL",
        "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM", "TRAP",
        "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    if let Ok(n) = s.parse::<u32>() {
        return (1..=64).contains(&n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    let offset = |rest: &str| rest.is_empty() || rest.parse::<u32>().is_ok_and(|n| n <= 30);
    NAMES.contains(&name)
        || name
            .strip_prefix("RTMIN")
            .is_some_and(|r| offset(r.strip_prefix('+').unwrap_or(r)))
        || name
            .strip_prefix("RTMAX")
            .is_some_and(|r| offset(r.strip_prefix('-').unwrap_or(r)))
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

/// An ONBUILD trigger stored in an image, read back into an instruction (`FROM`, `ONBUILD`
/// and `MAINTAINER` refused, as BuildKit refuses them).
///
/// # Errors
/// The trigger does not parse, is empty, or is one of those refused.
pub fn trigger(text: &str) -> Result<Instruction, Error> {
    let bad = |source| Error::Trigger {
        text: text.to_owned(),
        source: Box::new(source),
    };
    let parsed = crate::dockerfile::parse(text).map_err(bad)?;
    let node = parsed
        .instructions
        .first()
        .ok_or_else(|| Error::Unsupported {
            what: "an empty ONBUILD trigger".into(),
        })?;
    let inst = crate::dockerfile::parse_instruction(node).map_err(bad)?;
    if matches!(
        inst.command,
        Command::From(_) | Command::Onbuild { .. } | Command::Maintainer { .. }
    ) {
        return Err(Error::Unsupported {
            what: format!("`{}` as an ONBUILD trigger", inst.keyword),
        });
    }
    Ok(inst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_signals_are_read_as_docker_reads_them() {
        for ok in [
            "SIGTERM",
            "term",
            "9",
            "SIGRTMIN+3",
            "RTMAX-2",
            "SIGRTMIN",
            "SIGWINCH",
            "64",
        ] {
            assert!(is_signal(ok), "{ok}");
        }
        for bad in ["SIGBOGUS", "0", "65", "", "SIG", "RTMIN+99", "-1"] {
            assert!(!is_signal(bad), "{bad}");
        }
    }

    #[test]
    fn ports_expand_like_docker() {
        assert_eq!(expand_ports("80").unwrap(), ["80/tcp"]);
        assert_eq!(expand_ports("53/UDP").unwrap(), ["53/udp"]);
        assert_eq!(
            expand_ports("9000-9002/tcp").unwrap(),
            ["9000/tcp", "9001/tcp", "9002/tcp"]
        );
        assert!(expand_ports("x").is_err());
    }

    #[test]
    fn paths_join_the_workdir() {
        assert_eq!(absolute("/app", "src"), "/app/src");
        assert_eq!(absolute("/app", "/etc"), "/etc");
        assert_eq!(absolute("/", "."), "/");
        assert_eq!(absolute("/a/b", "../c/"), "/a/c");
        assert_eq!(absolute("/", "../../x"), "/x");
    }

    #[test]
    fn a_heredoc_alone_is_the_script_and_a_shebang_one_runs_as_a_file() {
        let run = |src: &str| {
            let c = crate::dockerfile::parse_and_check(
                src,
                &crate::dockerfile::CheckOptions::default(),
            )
            .unwrap();
            match &c.stages[0].instructions[0].command {
                Command::Run(r) => run_args(&["/bin/sh".into(), "-c".into()], r),
                _ => unreachable!(),
            }
        };
        let (args, script) = run("FROM s\nRUN <<EOF\necho hi\nEOF\n");
        assert_eq!(args, ["/bin/sh", "-c", "echo hi\n"]);
        assert!(script.is_none());
        let (args, script) = run("FROM s\nRUN <<EOF\n#!/usr/bin/env python3\nprint(1)\nEOF\n");
        assert_eq!(args, ["/dev/pipes/EOF"]);
        assert_eq!(
            script.unwrap().content,
            "#!/usr/bin/env python3\nprint(1)\n"
        );
        let (args, _) = run("FROM s\nRUN python3 <<EOF\nprint(1)\nEOF\n");
        assert_eq!(args, ["/bin/sh", "-c", "python3 <<EOF\nprint(1)\nEOF"]);
    }
}
