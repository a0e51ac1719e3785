//! One stage: its base, then each instruction applied to the image config and the working root
//! filesystem.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::digest::Digest;
use crate::dockerfile::{Command, CommandLine, Healthcheck, Instruction, Source};
use crate::oci::{Empty, HealthConfig, History, ImageConfig};
use crate::snapshot::Entry;

use super::env::{
    BuildEnv, StageState, abs_path, add_layer, missing_dirs, resolve_image, walked_prefixes,
};
use super::{Error, Event, Result, copy};

/// What the step cache remembers of a step's result. Variables are not kept: they are
/// recomputed from the instructions, which is cheap and keeps build args out of the chain.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    config: ImageConfig,
    cmd_set: bool,
}

/// Resolves a stage's base: scratch, an earlier stage, or an image in the local store. Nothing is
/// unpacked here.
fn base(
    env: &BuildEnv<'_>,
    index: usize,
    built: &BTreeMap<usize, StageState>,
    rootfs: &Path,
) -> Result<StageState> {
    let stage = &env.checked.stages[index];
    let (os, arch) = (&env.platform.os, &env.platform.architecture);
    let mut key = crate::digest::Hasher::default();
    key.update(b"rbuild-base-v1\0");
    key.update(format!("{os}/{arch}\0{}\0", env.times.key_text()).as_bytes());
    // A stage built FROM another stage goes on with everything in scope there, its ARGs too
    // (BuildKit's rule, documented since moby/buildkit#5381); an image gives only its ENV.
    let mut inherited_vars: Option<Vec<(String, String)>> = None;
    let mut config = ImageConfig {
        architecture: arch.clone(),
        os: os.clone(),
        variant: env.platform.variant.clone(),
        ..ImageConfig::default()
    };
    match &stage.base.source {
        Source::Scratch => {
            key.update(b"scratch");
            // BuildKit's empty image has `/` as its working directory.
            config.config.working_dir = Some("/".into());
        }
        Source::Stage(i) => {
            let from = built
                .get(i)
                .ok_or_else(|| Error::Internal(format!("stage {i} used before it was built")))?;
            config = from.config.clone();
            inherited_vars = Some(from.vars.clone());
            key.update(from.key.as_bytes());
        }
        Source::Image(name) | Source::Deferred(name) => {
            let image = resolve_image(env, name)?;
            key.update(image.manifest_digest.as_bytes());
            config = image.config;
            config.created = None;
        }
    }
    // Every Linux image has a PATH: BuildKit gives a stage whose base has none (scratch, an
    // image without one) the default, in its config too.
    let env_list = config.config.env.get_or_insert_with(Vec::new);
    if !env_list.iter().any(|e| e.starts_with("PATH=")) {
        env_list.insert(0, format!("PATH={}", crate::plan::DEFAULT_PATH));
    }
    let vars = inherited_vars.unwrap_or_else(|| {
        config
            .config
            .env
            .iter()
            .flatten()
            .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())))
            .collect()
    });
    Ok(StageState {
        base_layers: config.rootfs.diff_ids.len(),
        base_history: config.history.len(),
        config,
        rootfs: std::sync::Mutex::new(rootfs.to_owned()),
        vars,
        cmd_set: false,
        key: key.finish().0,
        parent_reason: None,
    })
}

/// Runs stage `index` on top of the stages already built.
pub(crate) fn run_stage(
    env: &mut BuildEnv<'_>,
    index: usize,
    built: &BTreeMap<usize, StageState>,
) -> Result<StageState> {
    let stage = &env.checked.stages[index];
    let label = stage.name.clone().unwrap_or_else(|| index.to_string());
    let rootfs = env.work.join(format!("stage-{index}"));
    env.check_cancelled()?;
    env.next_step();
    env.emit(&Event::Step {
        number: env.step,
        total: env.total,
        stage: label.clone(),
        instruction: format!("FROM {}", stage.base.expanded),
        line: stage.span.line,
    });
    let started = Instant::now();
    let mut state = base(env, index, built, &rootfs).map_err(|e| Error::Step {
        keyword: "FROM".into(),
        line: stage.span.line,
        instruction: format!("FROM {}", stage.base.expanded),
        source: Box::new(e),
    })?;
    let from = super::explain::StepInputs {
        parent: None,
        instruction: format!("FROM {}", stage.base.expanded),
        inputs: vec![("base".into(), state.key)],
        ..super::explain::StepInputs::default()
    };
    let place = super::explain::place(env.dockerfile, index, 0);
    let before = super::explain::previous(env.store, &place);
    if before.as_ref().is_some_and(|b| *b != from) {
        state.parent_reason = Some(
            if before
                .as_ref()
                .is_some_and(|b| b.instruction != from.instruction)
            {
                format!(
                    "FROM changed: `{}` → `{}`",
                    before
                        .as_ref()
                        .map(|b| b.instruction.as_str())
                        .unwrap_or_default(),
                    from.instruction
                )
            } else {
                format!("FROM: base `{}` changed", stage.base.expanded)
            },
        );
    }
    if before.as_ref() != Some(&from) {
        super::explain::remember(env.store, env.dockerfile, &place, &from);
    }
    env.emit(&Event::StepDone {
        number: env.step,
        millis: started.elapsed().as_millis(),
        cached: true,
    });
    // The base's ONBUILD triggers run first, and are not passed on.
    if let Some(triggers) = state.config.config.on_build.take() {
        for text in triggers {
            env.check_cancelled()?;
            env.next_step();
            let instruction = format!("ONBUILD {text}");
            env.emit(&Event::Step {
                number: env.step,
                total: env.total,
                stage: label.clone(),
                instruction: instruction.clone(),
                line: stage.span.line,
            });
            let started = Instant::now();
            let position = 10_000 + env.step;
            let cached = trigger(&text)
                .and_then(|inst| run_cached(env, index, position, &mut state, &inst, built))
                .map_err(|e| Error::Step {
                    keyword: "ONBUILD".into(),
                    line: stage.span.line,
                    instruction,
                    source: Box::new(e),
                })?;
            env.emit(&Event::StepDone {
                number: env.step,
                millis: started.elapsed().as_millis(),
                cached,
            });
        }
    }
    // Global ARGs re-declared here take the global value unless a build arg overrides.
    for (position, inst) in stage.instructions.iter().enumerate() {
        env.check_cancelled()?;
        env.next_step();
        let text = inst_text(inst);
        env.emit(&Event::Step {
            number: env.step,
            total: env.total,
            stage: label.clone(),
            instruction: text.clone(),
            line: inst.span.line,
        });
        let started = Instant::now();
        let cached =
            run_cached(env, index, position + 1, &mut state, inst, built).map_err(|e| {
                Error::Step {
                    keyword: inst.keyword.as_str().to_owned(),
                    line: inst.span.line,
                    instruction: text,
                    source: Box::new(e),
                }
            })?;
        env.emit(&Event::StepDone {
            number: env.step,
            millis: started.elapsed().as_millis(),
            cached,
        });
    }
    Ok(state)
}

/// Reads a stored ONBUILD trigger back into an instruction.
fn trigger(text: &str) -> Result<Instruction> {
    let invalid = |source| Error::Dockerfile {
        path: "<ONBUILD trigger>".into(),
        source: Box::new(source),
    };
    let parsed = crate::dockerfile::parse(text).map_err(invalid)?;
    let node = parsed
        .instructions
        .first()
        .ok_or_else(|| Error::Internal(format!("empty ONBUILD trigger `{text}`")))?;
    let inst = crate::dockerfile::parse_instruction(node).map_err(invalid)?;
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

/// The instruction as docker shows it in progress and history: as written.
fn inst_text(inst: &Instruction) -> String {
    inst.original.clone()
}

fn history(state: &mut StageState, created_by: String, empty_layer: bool) {
    state.config.history.push(History {
        created_by: Some(created_by),
        comment: Some("rbuild".into()),
        empty_layer: empty_layer.then_some(true),
        ..History::default()
    });
}

/// The variables an instruction's text refers to (`$name`, `${name…}`), with their values: the
/// only ones its cache key depends on.
fn used_vars<'v>(text: &str, vars: &'v [(String, String)]) -> Vec<(&'v str, &'v str)> {
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for (k, v) in vars {
        latest.insert(k, v);
    }
    latest
        .into_iter()
        .filter(|(k, _)| text.contains(&format!("${k}")) || text.contains(&format!("${{{k}")))
        .collect()
}

/// Runs one instruction through the step cache: a hit restores the recorded result and runs
/// nothing; a miss runs it and records the result. Returns whether it was a hit.
fn run_cached(
    env: &mut BuildEnv<'_>,
    index: usize,
    position: usize,
    state: &mut StageState,
    inst: &Instruction,
    built: &BTreeMap<usize, StageState>,
) -> Result<bool> {
    // Every input of the key, in the one value the explanation reads too.
    let command = super::explain::command_form(&inst.command);
    let mut now = super::explain::StepInputs {
        parent: Some(state.key),
        instruction: inst.original.clone(),
        vars: used_vars(&command, &state.vars)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        command,
        inputs: Vec::new(),
        sources: None,
        settings: Vec::new(),
    };
    if let Command::Copy(_) | Command::Add(_) = &inst.command {
        let (digest, read) = copy::sources_digest(env, state, inst, built)?;
        now.inputs = read;
        now.sources = Some(digest);
    }
    if let Command::Run(run) = &inst.command {
        // RUN sees every ARG and ENV in scope: all are its key (BuildKit's rule).
        now.vars = super::run::environment(env, state)
            .into_iter()
            .map(|e| match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e, String::new()),
            })
            .collect();
        now.inputs = super::run::mount_inputs(env, state, run, built)?;
        let network = match super::run::step_network(env, state, run)? {
            crate::exec::Network::Private => "private",
            crate::exec::Network::Host => "host",
            crate::exec::Network::None => "none",
        };
        let userns = match env.userns {
            crate::exec::Userns::Auto => "auto",
            crate::exec::Userns::Host => "host",
        };
        now.settings = vec![
            ("network".into(), network.into()),
            ("userns".into(), userns.into()),
        ];
    }
    let key = now.key();
    let no_cache = env.no_cache || env.no_cache_stages.contains(&index);
    // Held until the result is in the step cache: another build of this builder reaching the
    // same step waits, then hits.
    let mut _running = None;
    if !no_cache {
        loop {
            if let Some(cached) = lookup(env, &key) {
                take_hit(env, index, position, state, inst, &now, cached)?;
                return Ok(true);
            }
            match env.inflight.claim(key, env.cancel)? {
                super::inflight::Claim::Mine(r) => {
                    _running = Some(r);
                    break;
                }
                // It failed there, or its layers went: look again, then run it here.
                super::inflight::Claim::Waited => {}
            }
        }
    }
    let place = super::explain::place(env.dockerfile, index, position);
    let before = super::explain::previous(env.store, &place);
    let mut reason = super::explain::explain(
        before.as_ref(),
        &now,
        state.parent_reason.is_some(),
        env.explain,
    );
    if no_cache {
        reason = if env.no_cache {
            "--no-cache".into()
        } else {
            "--no-cache-filter".into()
        };
    } else if let (Some(why), Some(b)) = (&state.parent_reason, &before) {
        if b.parent != now.parent
            && b.instruction == now.instruction
            && b.vars == now.vars
            && b.inputs == now.inputs
            && b.sources == now.sources
            && b.settings == now.settings
        {
            reason.clone_from(why);
        }
    }
    env.emit(&Event::Miss {
        number: env.step,
        instruction: inst.original.clone(),
        line: inst.span.line,
        reason,
        first: before.is_none(),
    });
    super::explain::remember(env.store, env.dockerfile, &place, &now);
    run_instruction(env, index, state, inst, built)?;
    state.key = key;
    state.parent_reason = Some(format!("an earlier step changed (line {})", inst.span.line));
    let result = Cached {
        config: state.config.clone(),
        cmd_set: state.cmd_set,
    };
    if let Ok(result) = serde_json::to_value(&result) {
        let record = crate::store::StepRecord::new(state.config.rootfs.diff_ids.clone(), result);
        env.store.set_step_record(&key, &record)?;
    }
    env.record_key(index, key);
    Ok(false)
}

/// A step the cache answered: its result becomes the state.
fn take_hit(
    env: &BuildEnv<'_>,
    index: usize,
    position: usize,
    state: &mut StageState,
    inst: &Instruction,
    now: &super::explain::StepInputs,
    cached: Cached,
) -> Result<()> {
    // The next miss here is explained against this build, not an older one.
    let place = super::explain::place(env.dockerfile, index, position);
    if super::explain::previous(env.store, &place).as_ref() != Some(now) {
        super::explain::remember(env.store, env.dockerfile, &place, now);
    }
    state.config = cached.config;
    state.cmd_set = cached.cmd_set;
    apply_vars(env, index, state, inst)?;
    state.key = now.key();
    env.record_key(index, state.key);
    state.parent_reason = None;
    Ok(())
}

fn lookup(env: &BuildEnv<'_>, key: &Digest) -> Option<Cached> {
    // A record this rbuild cannot read (damaged, another version's) is a miss, rewritten after.
    let record = env.store.step_record(key).ok()??;
    let cached: Cached = serde_json::from_value(record.result).ok()?;
    // Only a result whose layers are all still there, or can be fetched from an imported cache.
    super::remote_cache::available(env.store, &cached.config.rootfs.diff_ids, env.lazy_layers)
        .then_some(cached)
}

/// The variable effects of ENV and ARG, replayed on a cache hit.
fn apply_vars(
    env: &BuildEnv<'_>,
    index: usize,
    state: &mut StageState,
    inst: &Instruction,
) -> Result<()> {
    match &inst.command {
        Command::Env { pairs } => {
            for (key, value) in env_pairs(state, pairs, env.escape)? {
                state.vars.push((key, value));
            }
        }
        Command::Arg { args } => declare_args(env, index, state, args)?,
        _ => {}
    }
    Ok(())
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

/// ENV's pairs, every one expanded against the environment before the instruction, as
/// BuildKit does: in `ENV a=new b=$a`, `b` gets the old `a`.
fn env_pairs(
    state: &StageState,
    pairs: &[crate::dockerfile::KeyValue],
    escape: char,
) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| {
            Ok((
                state.expand(&p.key, escape)?,
                state.expand(&p.value, escape)?,
            ))
        })
        .collect()
}

/// ARG: a build arg if given, else the default, else the global value a re-declared global ARG
/// inherits, else an automatic platform ARG.
fn declare_args(
    env: &BuildEnv<'_>,
    index: usize,
    state: &mut StageState,
    args: &[crate::dockerfile::ArgDecl],
) -> Result<()> {
    let stage = &env.checked.stages[index];
    for a in args {
        let value = if let Some(v) = env.build_args.get(&a.name) {
            Some(v.clone())
        } else if let Some(d) = &a.default {
            Some(state.expand(d, env.escape)?)
        } else if let Some((_, inherited)) = stage.inherited_args.iter().find(|(n, _)| *n == a.name)
        {
            inherited.clone()
        } else {
            env.automatic_args.get(&a.name).cloned()
        };
        if let Some(v) = value {
            state.vars.push((a.name.clone(), v));
        }
    }
    Ok(())
}

/// The shell a shell-form command runs under.
fn shell_of(state: &StageState) -> Vec<String> {
    state
        .config
        .config
        .shell
        .clone()
        .unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into()])
}

fn command_vec(state: &StageState, line: &CommandLine) -> Vec<String> {
    match line {
        CommandLine::Exec(v) => v.clone(),
        CommandLine::Shell(s) => {
            let mut v = shell_of(state);
            v.push(s.clone());
            v
        }
    }
}

#[allow(clippy::zero_sized_map_values)] // ExposedPorts and Volumes are maps to `{}`
fn run_instruction(
    env: &mut BuildEnv<'_>,
    index: usize,
    state: &mut StageState,
    inst: &Instruction,
    built: &BTreeMap<usize, StageState>,
) -> Result<()> {
    let escape = env.escape;
    let created_by = inst_text(inst);
    match &inst.command {
        Command::From(_) => return Err(Error::Internal("FROM inside a stage".into())),
        Command::Run(run) => {
            let layer = super::run::run(env, state, inst, run, built)?;
            history(state, created_by, !layer);
        }
        Command::Env { pairs } => {
            for (key, value) in env_pairs(state, pairs, escape)? {
                state.set_env(&key, &value);
            }
            history(state, created_by, true);
        }
        Command::Label { pairs } => {
            for p in pairs {
                let key = state.expand(&p.key, escape)?;
                let value = state.expand(&p.value, escape)?;
                state
                    .config
                    .config
                    .labels
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key, value);
            }
            history(state, created_by, true);
        }
        Command::Arg { args } => {
            declare_args(env, index, state, args)?;
            history(state, created_by, true);
        }
        Command::Workdir { path } => {
            let expanded = state.expand(path, escape)?;
            // BuildKit keeps an absolute WORKDIR as written (`/w/./a/../b/`) and joins, so
            // cleans, a relative one.
            let abs = if expanded.starts_with('/') {
                expanded
            } else {
                abs_path(state.workdir(), &expanded)
            };
            state.config.config.working_dir = Some(abs.clone());
            state.ensure_rootfs(env)?;
            let (uid, gid) = match &state.config.config.user {
                Some(u) if !u.is_empty() => super::chown::resolve_chown(u, &state.rootfs()),
                _ => (0, 0),
            };
            // Made as `mkdir -p` walks the path as written: `a` of `/w/a/../b` is made too.
            let mut dirs: Vec<Entry> = Vec::new();
            for prefix in walked_prefixes(&abs) {
                for e in missing_dirs(&state.rootfs(), &prefix, 0o755, uid, gid, env.times.epoch)? {
                    if !dirs.iter().any(|d| d.path == e.path) {
                        dirs.push(e);
                    }
                }
            }
            if dirs.is_empty() {
                history(state, created_by, true);
            } else {
                add_layer(env, state, dirs)?;
                history(state, created_by, false);
            }
        }
        Command::User { user } => {
            state.config.config.user = Some(state.expand(user, escape)?);
            history(state, created_by, true);
        }
        Command::Expose { ports } => {
            for p in ports {
                let p = state.expand(p, escape)?;
                for port in expand_ports(&p).map_err(|reason| Error::InvalidFlag {
                    flag: "EXPOSE",
                    value: p.clone(),
                    reason,
                })? {
                    state
                        .config
                        .config
                        .exposed_ports
                        .get_or_insert_with(BTreeMap::new)
                        .insert(port, Empty {});
                }
            }
            history(state, created_by, true);
        }
        Command::Volume { paths } => {
            for p in paths {
                let p = state.expand(p, escape)?;
                state
                    .config
                    .config
                    .volumes
                    .get_or_insert_with(BTreeMap::new)
                    .insert(p, Empty {});
            }
            history(state, created_by, true);
        }
        Command::Stopsignal { signal } => {
            let signal = state.expand(signal, escape)?;
            if !is_signal(&signal) {
                return Err(Error::InvalidFlag {
                    flag: "STOPSIGNAL",
                    value: signal,
                    reason: "not a signal (a number, or a name such as SIGTERM or SIGRTMIN+3)"
                        .into(),
                });
            }
            state.config.config.stop_signal = Some(signal);
            history(state, created_by, true);
        }
        Command::Maintainer { name } => {
            state.config.author = Some(name.clone());
            history(state, created_by, true);
        }
        Command::Cmd(line) => {
            state.config.config.cmd = Some(command_vec(state, line));
            state.cmd_set = true;
            history(state, created_by, true);
        }
        Command::Entrypoint(line) => {
            state.config.config.entrypoint = Some(command_vec(state, line));
            if !state.cmd_set {
                state.config.config.cmd = None;
            }
            history(state, created_by, true);
        }
        Command::Shell { shell } => {
            state.config.config.shell = Some(shell.clone());
            history(state, created_by, true);
        }
        Command::Healthcheck(h) => {
            state.config.config.healthcheck = Some(match h {
                Healthcheck::None => HealthConfig {
                    test: vec!["NONE".into()],
                    ..HealthConfig::default()
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
                    HealthConfig {
                        test,
                        interval: ns(interval),
                        timeout: ns(timeout),
                        start_period: ns(start_period),
                        start_interval: ns(start_interval),
                        retries: retries.map(u64::from),
                    }
                }
            });
            history(state, created_by, true);
        }
        Command::Onbuild { trigger } => {
            let text = trigger.original.clone();
            state
                .config
                .config
                .on_build
                .get_or_insert_with(Vec::new)
                .push(text);
            history(state, created_by, true);
        }
        Command::Copy(_) | Command::Add(_) => {
            state.ensure_rootfs(env)?;
            let entries = copy::entries(env, state, inst, built)?;
            add_layer(env, state, entries)?;
            history(state, format!("{created_by} # rbuild"), false);
        }
    }
    Ok(())
}

/// `80`, `53/UDP`, `9000-9002/tcp` → `80/tcp`, `53/udp`, `9000/tcp`… as docker records them.
fn expand_ports(spec: &str) -> std::result::Result<Vec<String>, String> {
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
        assert_eq!(abs_path("/app", "src"), "/app/src");
        assert_eq!(abs_path("/app", "/etc"), "/etc");
        assert_eq!(abs_path("/", "."), "/");
        assert_eq!(abs_path("/a/b", "../c/"), "/a/c");
    }
}
