//! The semantic pass: typed instructions grouped into stages, global ARGs applied to FROM lines,
//! stage references (`FROM stage`, `COPY --from`, `RUN --mount from=`) resolved and checked.

use std::collections::BTreeMap;

use super::ast::{Dockerfile, Node};
use super::directive::Directives;
use super::error::{ErrorKind, ParseError};
use super::expand::Lexer;
use super::instruction::{ArgDecl, Command, Instruction, parse_instruction};
use super::span::Span;

/// What the semantic pass needs from outside the file.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// `--build-arg NAME=VALUE`s.
    pub build_args: BTreeMap<String, String>,
    /// Automatic global ARGs (`TARGETPLATFORM`, `BUILDARCH`, …) the builder defines.
    pub automatic_args: BTreeMap<String, String>,
    /// `--build-context NAME=…`s, by lower-case name. A FROM, `--from` or `from=` naming one
    /// reads it instead of the stage or image of that name (BuildKit's rule).
    pub named_contexts: BTreeMap<String, Named>,
}

/// What a `--build-context` is, as far as the Dockerfile's references are concerned.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Named {
    /// `docker-image://REF`: the name stands for the image `REF`.
    Image(String),
    /// A directory (or what a build fetched into one): its files, as `--from` reads a stage's.
    Local,
}

impl CheckOptions {
    /// What `reference` (expanded) names if it is a named context.
    fn named(&self, reference: &str) -> Option<Source> {
        let lower = reference.to_ascii_lowercase();
        Some(match self.named_contexts.get(&lower)? {
            Named::Image(r) => Source::Image(r.clone()),
            Named::Local => Source::Context(lower),
        })
    }
}

/// A Dockerfile after the semantic pass.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Checked {
    /// The parser directives.
    pub directives: Directives,
    /// The global ARGs, before the first FROM.
    pub global_args: Vec<GlobalArg>,
    /// The stages in file order.
    pub stages: Vec<Stage>,
    /// What BuildKit accepts with a warning (a stage name used twice).
    pub warnings: Vec<super::ast::Warning>,
}

/// An ARG before the first FROM, usable in FROM lines and re-declarable inside stages.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlobalArg {
    /// The declaration.
    pub decl: ArgDecl,
    /// Its value: the build arg if given, else the default expanded; `None` when unset.
    pub value: Option<String>,
    /// Where it is declared.
    pub span: Span,
}

/// One build stage: a FROM and the instructions up to the next.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Stage {
    /// Position in the file, from 0.
    pub index: usize,
    /// `AS name`, lower case.
    pub name: Option<String>,
    /// The base as written and as resolved.
    pub base: Base,
    /// `--platform` as written.
    pub platform: Option<String>,
    /// The FROM instruction.
    pub span: Span,
    /// The instructions after FROM, in order.
    pub instructions: Vec<Instruction>,
    /// Global ARGs re-declared in this stage without a default, with the value they inherit.
    pub inherited_args: Vec<(String, Option<String>)>,
    /// Earlier stages and images this stage reads from, in order of first use.
    pub dependencies: Vec<Dependency>,
}

/// A stage's base.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Base {
    /// As written (`golang:${GO_VERSION}`).
    pub written: String,
    /// After expanding global ARGs (`golang:1.22`).
    pub expanded: String,
    /// What it names.
    pub source: Source,
}

/// What a FROM, `--from` or mount `from=` names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", content = "ref", rename_all = "lowercase")]
pub enum Source {
    /// `scratch`: an empty filesystem.
    Scratch,
    /// An earlier stage, by index.
    Stage(usize),
    /// An image reference, as written after expansion.
    Image(String),
    /// A reference that uses stage-level variables, resolved only at build time.
    Deferred(String),
    /// A directory `--build-context`, by its lower-case name.
    Context(String),
}

/// Something a stage reads from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dependency {
    /// What.
    pub source: Source,
    /// The instruction that reads it.
    pub span: Span,
}

impl Checked {
    /// The stage named `name` (case-insensitive; the last of that name, as BuildKit resolves
    /// a name used twice) or of index `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        let lower = name.to_ascii_lowercase();
        self.stages
            .iter()
            .rfind(|s| s.name.as_deref() == Some(lower.as_str()))
            .or_else(|| name.parse::<usize>().ok().and_then(|i| self.stages.get(i)))
    }
}

/// Runs the semantic pass over a parsed file.
pub fn check(df: &Dockerfile, opts: &CheckOptions) -> Result<Checked, ParseError> {
    df.directives.check_config()?;
    let lexer = Lexer::new(df.escape);
    let mut global_args: Vec<GlobalArg> = Vec::new();
    let mut meta_env: Vec<(String, String)> = opts
        .automatic_args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut stages: Vec<Stage> = Vec::new();
    let mut names: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut warnings = Vec::new();

    // Instructions are typed first, so that errors come in file order.
    let typed = df
        .instructions
        .iter()
        .map(parse_instruction)
        .collect::<Result<Vec<_>, _>>()?;

    // Stage names are known up front, to tell "defined later" from "unknown".
    let mut stage_lines = Vec::new();
    for inst in &typed {
        if let Command::From(from) = &inst.command {
            if let Some(name) = &from.name {
                // BuildKit accepts a name used twice (its DuplicateStageName check warns);
                // references resolve to the last stage of that name.
                if let Some(&(_, first_line)) = names.get(name) {
                    warnings.push(super::ast::Warning {
                        message: ErrorKind::DuplicateStageName {
                            name: name.clone(),
                            first_line,
                        }
                        .to_string(),
                        span: inst.span.clone(),
                    });
                }
                names.insert(name.clone(), (stage_lines.len(), inst.span.line));
            }
            stage_lines.push(inst.span.line);
        }
    }

    for (inst, node) in typed.into_iter().zip(&df.instructions) {
        let expand = |word: &str, env: &[(String, String)]| {
            lexer.word(word, env).map_err(|source| {
                ParseError::new(
                    ErrorKind::Expand {
                        word: word.to_owned(),
                        source,
                    },
                    inst.span.clone(),
                )
            })
        };
        match &inst.command {
            Command::Arg { args } if stages.is_empty() => {
                for decl in args {
                    let value = match opts.build_args.get(&decl.name) {
                        Some(v) => Some(v.clone()),
                        None => decl
                            .default
                            .as_deref()
                            .map(|d| expand(d, &meta_env))
                            .transpose()?,
                    };
                    if let Some(v) = &value {
                        meta_env.push((decl.name.clone(), v.clone()));
                    }
                    global_args.push(GlobalArg {
                        decl: decl.clone(),
                        value,
                        span: inst.span.clone(),
                    });
                }
            }
            Command::From(from) => {
                let expanded = expand(&from.image, &meta_env)?;
                if expanded.is_empty() {
                    return Err(ParseError::new(
                        ErrorKind::BlankBaseName {
                            base: from.image.clone(),
                        },
                        inst.span.clone(),
                    ));
                }
                let index = stages.len();
                let source = if let Some(named) = opts.named(&expanded) {
                    named
                } else if expanded.eq_ignore_ascii_case("scratch") {
                    Source::Scratch
                } else {
                    match names.get(&expanded.to_ascii_lowercase()) {
                        Some(&(i, _)) if i < index => Source::Stage(i),
                        _ => Source::Image(expanded.clone()),
                    }
                };
                let dependencies = match &source {
                    Source::Scratch => Vec::new(),
                    s => vec![Dependency {
                        source: s.clone(),
                        span: inst.span.clone(),
                    }],
                };
                stages.push(Stage {
                    index,
                    name: from.name.clone(),
                    base: Base {
                        written: from.image.clone(),
                        expanded,
                        source,
                    },
                    platform: from.platform.clone(),
                    span: inst.span.clone(),
                    instructions: Vec::new(),
                    inherited_args: Vec::new(),
                    dependencies,
                });
            }
            _ => {
                let Some(stage) = stages.last_mut() else {
                    return Err(ParseError::new(
                        ErrorKind::NoStage {
                            keyword: inst.keyword.as_str().to_owned(),
                        },
                        inst.span.clone(),
                    ));
                };
                if let Command::Arg { args } = &inst.command {
                    for decl in args.iter().filter(|d| d.default.is_none()) {
                        if let Some(g) = global_args.iter().rev().find(|g| g.decl.name == decl.name)
                        {
                            let value = opts
                                .build_args
                                .get(&decl.name)
                                .cloned()
                                .or_else(|| g.value.clone());
                            stage.inherited_args.push((decl.name.clone(), value));
                        }
                    }
                }
                for (reference, at) in stage_references(&inst, node) {
                    // A named context is read whatever a stage of the name would be.
                    let source = match opts.named(reference) {
                        Some(named) => named,
                        None => resolve_reference(
                            reference,
                            stage,
                            &names,
                            &stage_lines,
                            &meta_env,
                            lexer,
                            at,
                        )?,
                    };
                    // BuildKit expands COPY --from with global ARGs only.
                    if let (Source::Deferred(_), Command::Copy(_)) = (&source, &inst.command) {
                        return Err(ParseError::new(
                            ErrorKind::FromExpansion {
                                reference: reference.to_owned(),
                            },
                            at.clone(),
                        ));
                    }
                    if !stage.dependencies.iter().any(|d| d.source == source) {
                        stage.dependencies.push(Dependency {
                            source,
                            span: inst.span.clone(),
                        });
                    }
                }
                stage.instructions.push(inst);
            }
        }
    }
    Ok(Checked {
        directives: df.directives.clone(),
        global_args,
        stages,
        warnings,
    })
}

/// The `--from` of COPY and the `from=` of RUN mounts, each with the span of its flag.
fn stage_references<'a>(inst: &'a Instruction, node: &'a Node) -> Vec<(&'a str, &'a Span)> {
    let flags = |name: &'a str| {
        node.flags
            .iter()
            .filter(move |f| f.name() == name)
            .map(|f| &f.span)
    };
    match &inst.command {
        Command::Copy(c) => c.from.as_deref().into_iter().zip(flags("from")).collect(),
        // Mounts are typed in the order of their flags.
        Command::Run(r) => r
            .mounts
            .iter()
            .zip(flags("mount"))
            .filter_map(|(m, span)| m.from.as_deref().map(|f| (f, span)))
            .collect(),
        _ => Vec::new(),
    }
}

fn resolve_reference(
    reference: &str,
    stage: &Stage,
    names: &BTreeMap<String, (usize, usize)>,
    stage_lines: &[usize],
    meta_env: &[(String, String)],
    lexer: Lexer,
    span: &Span,
) -> Result<Source, ParseError> {
    let err = |kind| ParseError::new(kind, span.clone());
    let value = if reference.contains('$') {
        match lexer.expand(reference, meta_env) {
            // A stage-level ARG or ENV is involved: the build resolves it.
            Ok(e) if !e.unmatched.is_empty() => return Ok(Source::Deferred(reference.to_owned())),
            Ok(e) => e.word,
            Err(_) => return Ok(Source::Deferred(reference.to_owned())),
        }
    } else {
        reference.to_owned()
    };
    if let Ok(index) = value.parse::<usize>() {
        if index >= stage.index {
            return Err(err(ErrorKind::StageIndexOutOfRange {
                index,
                before: stage.index,
            }));
        }
        return Ok(Source::Stage(index));
    }
    let lower = value.to_ascii_lowercase();
    if let Some(&(index, _)) = names.get(&lower) {
        if index == stage.index {
            return Err(err(ErrorKind::SelfReference { name: lower }));
        }
        if index > stage.index {
            return Err(err(ErrorKind::StageDefinedLater {
                reference: reference.to_owned(),
                name: lower,
                line: stage_lines[index],
            }));
        }
        return Ok(Source::Stage(index));
    }
    // BuildKit reads any other name as an image. A bare word a letter or two off a stage
    // name is far more likely a typo than an image of that name: say so, early.
    if !lower.contains([':', '/', '@', '.']) {
        if let Some(near) = names
            .keys()
            .map(|n| (strsim::damerau_levenshtein(n, &lower), n))
            .filter(|&(d, n)| d > 0 && d <= 2 && d < n.len())
            .min_by_key(|&(d, _)| d)
        {
            return Err(err(ErrorKind::UnknownStage {
                name: value,
                suggested: near.1.clone(),
            }));
        }
    }
    Ok(Source::Image(value))
}
