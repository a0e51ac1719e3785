//! One stage: its base, then each instruction applied to the image config and the working root
//! filesystem.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::digest::Digest;
use crate::dockerfile::{Instruction, Source};
use crate::oci::{History, ImageConfig};
use crate::snapshot::Entry;

use super::env::{Built, StageState, missing_dirs, walked_prefixes};
use super::job::Job;
use super::{Error, Event, Result, copy, inputs, run};

/// What the step cache remembers of a step's result. Variables are not kept: they are
/// recomputed from the instructions, which is cheap and keeps build args out of the chain.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cached {
    config: ImageConfig,
    cmd_set: bool,
}

/// Resolves a stage's base: scratch, an earlier stage, or an image in the local store. Nothing is
/// unpacked here.
fn base(job: &Job<'_>, index: usize, built: &Built, rootfs: &Path) -> Result<StageState> {
    let stage = &job.checked.stages[index];
    let platform = job.platform_of(index);
    let (os, arch) = (&platform.os, &platform.architecture);
    let mut key = crate::digest::Hasher::default();
    key.update(b"rbuild-base-v1\0");
    // A variant only where there is one, so keys without one stay as they were.
    let variant = platform
        .variant
        .as_deref()
        .map(|v| format!("/{v}"))
        .unwrap_or_default();
    key.update(format!("{os}/{arch}{variant}\0{}\0", job.times.key_text()).as_bytes());
    // A stage built FROM another stage goes on with everything in scope there, its ARGs too
    // (BuildKit's rule, documented since moby/buildkit#5381); an image gives only its ENV.
    let mut inherited_vars: Option<Vec<(String, String)>> = None;
    let mut config = ImageConfig {
        architecture: arch.clone(),
        os: os.clone(),
        variant: platform.variant.clone(),
        ..ImageConfig::default()
    };
    match &stage.base.source {
        Source::Scratch => {
            key.update(b"scratch");
            // BuildKit's empty image has `/` as its working directory.
            config.config.working_dir = Some("/".into());
        }
        Source::Stage(i) => {
            let from = &built.wait(*i, job.cancel)?;
            config = from.config.clone();
            inherited_vars = Some(from.vars.clone());
            key.update(from.key.as_bytes());
        }
        // The plan refuses it first, with the FROM's line.
        Source::Context(name) => {
            return Err(Error::Unsupported {
                what: format!("FROM the directory context `{name}`"),
            });
        }
        Source::Image(name) | Source::Deferred(name) => {
            let image = job.image_for(name, index)?;
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

/// Runs stage `index` on top of the stages already built: FROM, the base's ONBUILD triggers
/// (run first, and not passed on; the plan lowered each), then its instructions.
pub(crate) fn run_stage(job: &Job<'_>, index: usize, built: &Built) -> Result<StageState> {
    let stage = &job.checked.stages[index];
    let graph = job.graph;
    let label = stage.name.clone().unwrap_or_else(|| index.to_string());
    let line = stage.span.line;
    let from = format!("FROM {}", stage.base.expanded);
    let mut state = step(job, &label, "FROM", line, from, |_| {
        from_step(job, index, built).map(|s| (s, true))
    })?;
    let triggers = state.config.config.on_build.take().unwrap_or_default();
    let steps = stage_steps(job, index, triggers.len())?;
    job.note_key(steps[0], state.key, None);
    for (t, text) in triggers.into_iter().enumerate() {
        let op = &graph.ops[steps[1 + t]];
        let shown = format!("ONBUILD {text}");
        step(job, &label, "ONBUILD", line, shown, |number| {
            // The plan lowered the same text already: it parses.
            let inst = crate::plan::trigger(&text)?;
            let at = At {
                index,
                position: 10_000 + number,
                number,
                op: steps[1 + t],
            };
            let cached = run_cached(job, at, &mut state, &inst, op, built)?;
            Ok(((), cached))
        })?;
    }
    let first = steps.len() - stage.instructions.len();
    for (position, inst) in stage.instructions.iter().enumerate() {
        let op = &graph.ops[steps[first + position]];
        let keyword = inst.keyword.as_str();
        step(
            job,
            &label,
            keyword,
            inst.span.line,
            inst_text(inst),
            |number| {
                let at = At {
                    index,
                    position: position + 1,
                    number,
                    op: steps[first + position],
                };
                let cached = run_cached(job, at, &mut state, inst, op, built)?;
                Ok(((), cached))
            },
        )?;
    }
    Ok(state)
}

/// One step as progress shows it: numbered, started, then done (cached or not); its error
/// names the keyword, line and instruction. Nothing starts once the build is cancelled.
fn step<T>(
    job: &Job<'_>,
    stage: &str,
    keyword: &str,
    line: usize,
    instruction: String,
    run: impl FnOnce(usize) -> Result<(T, bool)>,
) -> Result<T> {
    job.check_cancelled()?;
    let number = job.next_step();
    job.emit(&Event::Step {
        number,
        total: job.progress.total,
        stage: stage.to_owned(),
        instruction: instruction.clone(),
        line,
    });
    let started = Instant::now();
    let (out, cached) = run(number).map_err(|e| Error::Step {
        keyword: keyword.to_owned(),
        line,
        instruction,
        source: Box::new(e),
    })?;
    job.emit(&Event::StepDone {
        number,
        millis: started.elapsed().as_millis(),
        cached,
    });
    Ok(out)
}

/// FROM: the stage's base, and why it differs from last build's at this place if it does
/// (said by the next step that misses because of it).
fn from_step(job: &Job<'_>, index: usize, built: &Built) -> Result<StageState> {
    let stage = &job.checked.stages[index];
    let mut state = base(job, index, built, &job.work.join(format!("stage-{index}")))?;
    let from = super::explain::StepInputs {
        parent: None,
        instruction: format!("FROM {}", stage.base.expanded),
        inputs: vec![("base".into(), state.key)],
        ..super::explain::StepInputs::default()
    };
    let place = super::explain::place(job.dockerfile, index, 0);
    let before = super::explain::previous(job.store, &place);
    if let Some(b) = before.as_ref().filter(|b| **b != from) {
        state.parent_reason = Some(if b.instruction == from.instruction {
            format!("FROM: base `{}` changed", stage.base.expanded)
        } else {
            format!("FROM changed: `{}` → `{}`", b.instruction, from.instruction)
        });
    }
    if before.as_ref() != Some(&from) && !job.policy.dry {
        super::explain::remember(job.store, job.dockerfile, &place, &from, &from.key());
    }
    Ok(state)
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

/// Where a step is: its stage, its place in the stage (what explanations are kept by), its
/// number in the build's progress, its op in the graph.
#[derive(Clone, Copy)]
struct At {
    index: usize,
    position: usize,
    number: usize,
    op: usize,
}

/// Runs one instruction through the step cache: a hit restores the recorded result and runs
/// nothing; a miss runs it and records the result. Returns whether it was a hit.
fn run_cached(
    job: &Job<'_>,
    at: At,
    state: &mut StageState,
    inst: &Instruction,
    op: &crate::plan::Op,
    built: &Built,
) -> Result<bool> {
    let At {
        index, position, ..
    } = at;
    let now = step_inputs(job, state, inst, op, built)?;
    let key = now.key();
    let no_cache = job.policy.no_cache || job.policy.no_cache_stages.contains(&index);
    if job.policy.dry {
        return Ok(dry_step(job, at, state, op, key, no_cache));
    }
    // Held until the result is in the step cache: another build of this builder reaching the
    // same step waits, then hits.
    let mut _running = None;
    if !no_cache {
        loop {
            if let Some(cached) = lookup(job, &key) {
                take_hit(job, at, state, op, (&now, key), cached);
                return Ok(true);
            }
            match job.inflight.claim(key, job.cancel)? {
                super::inflight::Claim::Mine(r) => {
                    _running = Some(r);
                    break;
                }
                // It failed there, or its layers went: look again, then run it here.
                super::inflight::Claim::Waited => {}
            }
        }
    }
    let place = super::explain::place(job.dockerfile, index, position);
    let before = super::explain::previous(job.store, &place);
    job.emit(&Event::Miss {
        number: at.number,
        instruction: inst.original.clone(),
        line: inst.span.line,
        reason: miss_reason(job, no_cache, state, before.as_ref(), &now),
        first: before.is_none(),
    });
    super::explain::remember(job.store, job.dockerfile, &place, &now, &key);
    // Both name every file a COPY read (twice 65,000 names for a node_modules tree): gone
    // before the step runs, not held beside what it makes.
    drop((before, now));
    run_instruction(job, at, state, inst, op, built)?;
    state.key = key;
    state.parent_reason = Some(format!("an earlier step changed (line {})", inst.span.line));
    let result = Cached {
        config: state.config.clone(),
        cmd_set: state.cmd_set,
    };
    if let Ok(result) = serde_json::to_value(&result) {
        let record = crate::store::StepRecord::new(state.config.rootfs.diff_ids.clone(), result);
        job.store.set_step_record(&key, &record)?;
    }
    job.record_key(index, key);
    Ok(false)
}

/// A step of a keys-only solve: its key noted with whether the cache holds it, its config
/// edit applied (what later keys read), nothing run or recorded.
fn dry_step(
    job: &Job<'_>,
    at: At,
    state: &mut StageState,
    op: &crate::plan::Op,
    key: Digest,
    no_cache: bool,
) -> bool {
    let cached = !no_cache && lookup(job, &key).is_some();
    job.note_key(at.op, key, Some(cached));
    if let crate::plan::Kind::Config(edit) = &op.kind {
        super::config::apply(state, edit);
    }
    state.key = key;
    cached
}

/// Every input of the step's key (`plan/key.rs` has the table), in the one value the
/// explanation reads too.
fn step_inputs(
    job: &Job<'_>,
    state: &StageState,
    inst: &Instruction,
    op: &crate::plan::Op,
    built: &Built,
) -> Result<super::explain::StepInputs> {
    let mut now = super::explain::StepInputs {
        parent: Some(state.key),
        instruction: inst.original.clone(),
        // The variables the instruction names, as written (the op holds their values).
        vars: used_vars(
            &serde_json::to_string(&inst.command).unwrap_or_default(),
            &state.vars,
        )
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
        // The plan hashed the op's form once, when it lowered it.
        command: op.digest.clone(),
        ..super::explain::StepInputs::default()
    };
    match &op.kind {
        crate::plan::Kind::File(file) => {
            let (digest, read) = inputs::file_key(job, file, built)?;
            now.inputs = read;
            now.sources = Some(digest);
        }
        crate::plan::Kind::Exec(exec) => {
            // RUN sees every ARG and ENV in scope: all are its key (BuildKit's rule).
            now.vars = exec
                .env
                .iter()
                .map(|e| match e.split_once('=') {
                    Some((k, v)) => (k.to_owned(), v.to_owned()),
                    None => (e.clone(), String::new()),
                })
                .collect();
            now.inputs = inputs::exec_key(job, exec, built)?;
            let network = match job.sandbox.network_of(exec) {
                crate::exec::Network::Private => "private",
                crate::exec::Network::Host => "host",
                crate::exec::Network::None => "none",
            };
            let userns = match job.sandbox.userns {
                crate::exec::Userns::Auto => "auto",
                crate::exec::Userns::Host => "host",
            };
            now.settings = vec![
                ("network".into(), network.into()),
                ("userns".into(), userns.into()),
            ];
        }
        _ => {}
    }
    Ok(now)
}

/// Why the step missed: `--no-cache`, else what differs from last time at its place (an
/// earlier step's change, named once, when nothing of its own did).
fn miss_reason(
    job: &Job<'_>,
    no_cache: bool,
    state: &StageState,
    before: Option<&super::explain::StepInputs>,
    now: &super::explain::StepInputs,
) -> String {
    if no_cache {
        return if job.policy.no_cache {
            "--no-cache".into()
        } else {
            "--no-cache-filter".into()
        };
    }
    let reason = super::explain::explain(
        before,
        now,
        state.parent_reason.is_some(),
        job.policy.explain,
    );
    match (&state.parent_reason, before) {
        (Some(why), Some(b))
            if b.parent != now.parent
                && b.instruction == now.instruction
                && b.command == now.command
                && b.vars == now.vars
                && b.inputs == now.inputs
                && b.sources == now.sources
                && b.settings == now.settings =>
        {
            why.clone()
        }
        _ => reason,
    }
}

/// A step the cache answered (`key` is `now`'s): its result becomes the state.
fn take_hit(
    job: &Job<'_>,
    at: At,
    state: &mut StageState,
    op: &crate::plan::Op,
    (now, key): (&super::explain::StepInputs, Digest),
    cached: Cached,
) {
    // The next miss here is explained against this build, not an older one.
    let place = super::explain::place(job.dockerfile, at.index, at.position);
    if !super::explain::is_remembered(job.store, &place, now, &key) {
        super::explain::remember(job.store, job.dockerfile, &place, now, &key);
    }
    state.config = cached.config;
    state.cmd_set = cached.cmd_set;
    if let crate::plan::Kind::Config(edit) = &op.kind {
        super::config::replay_vars(state, edit);
    }
    state.key = key;
    job.record_key(at.index, state.key);
    state.parent_reason = None;
}

fn lookup(job: &Job<'_>, key: &Digest) -> Option<Cached> {
    // A record this rbuild cannot read (damaged, another version's) is a miss, rewritten after.
    let record = job.store.step_record(key).ok()??;
    let cached: Cached = serde_json::from_value(record.result).ok()?;
    // Only a result whose layers are all still there, or can be fetched from an imported cache.
    let layers = &cached.config.rootfs.diff_ids;
    let hit = super::remote_cache::available(job.store, layers, &job.tables.lazy_layers);
    if hit && !job.policy.dry {
        job.store.touch_step_record(key);
    }
    hit.then_some(cached)
}

/// Runs one instruction on the stage: RUN, COPY and ADD make a layer; every other
/// instruction is its plan op's config edit (WORKDIR also makes its directories).
fn run_instruction(
    job: &Job<'_>,
    at: At,
    state: &mut StageState,
    inst: &Instruction,
    op: &crate::plan::Op,
    built: &Built,
) -> Result<()> {
    let created_by = inst_text(inst);
    let number = at.number;
    match (&inst.command, &op.kind) {
        (_, crate::plan::Kind::Exec(exec)) => {
            // A foreign architecture's RUN needs QEMU through `binfmt_misc`; without it the
            // kernel's "exec format error" would say nothing of what to install.
            let arch = state.config.architecture.as_str();
            if !crate::exec::binfmt_can_run(arch) {
                return Err(Error::NoEmulator {
                    arch: arch.to_owned(),
                });
            }
            let inputs = inputs::exec_inputs(job, state, exec, built, number)?;
            let log = |line| job.emit(&Event::Log { number, line });
            let io = run::Io {
                cancel: job.cancel,
                log: &log,
            };
            let entries = run::run(&inputs, exec, &job.sandbox, &io)?;
            let layer = !entries.is_empty();
            if layer {
                job.add_layer(state, entries, at.op)?;
            }
            history(state, created_by, !layer);
        }
        (_, crate::plan::Kind::File(file)) => {
            let inputs = inputs::file_inputs(job, state, file, built)?;
            let entries = copy::entries(inputs, file)?;
            job.add_layer(state, entries, at.op)?;
            history(state, format!("{created_by} # rbuild"), false);
        }
        (_, crate::plan::Kind::Config(edit)) => {
            super::config::apply(state, edit);
            let layer = match edit {
                crate::plan::Config::Workdir(dir) => workdir_layer(job, state, dir, at.op)?,
                _ => false,
            };
            history(state, created_by, !layer);
        }
        _ => {
            return Err(Error::Internal(format!(
                "the plan's op for `{}` is not a config edit",
                inst.original
            )));
        }
    }
    Ok(())
}

/// WORKDIR's directories, made as `mkdir -p` walks the path as written (`a` of `/w/a/../b`
/// too), owned by the stage's user: a layer if any was missing. Gives whether it made one.
fn workdir_layer(
    job: &Job<'_>,
    state: &mut StageState,
    dir: &str,
    op: crate::plan::OpId,
) -> Result<bool> {
    job.rootfs(state)?;
    let (uid, gid) = match &state.config.config.user {
        Some(u) if !u.is_empty() => super::chown::resolve_chown(u, &state.rootfs()),
        _ => (0, 0),
    };
    let mut dirs: Vec<Entry> = Vec::new();
    let mut seen = super::env::Prefixes::default();
    for prefix in walked_prefixes(dir) {
        let attrs = (0o755, uid, gid, job.times.epoch);
        for e in missing_dirs(&state.rootfs(), &prefix, attrs, &mut seen)? {
            if !dirs.iter().any(|d| d.path == e.path) {
                dirs.push(e);
            }
        }
    }
    if dirs.is_empty() {
        return Ok(false);
    }
    job.add_layer(state, dirs, op)?;
    Ok(true)
}

/// The plan's steps of stage `index`, checked against the stage: FROM, `triggers` ONBUILD
/// triggers, one per instruction.
fn stage_steps(job: &Job<'_>, index: usize, triggers: usize) -> Result<Vec<usize>> {
    let steps = job
        .graph
        .stages
        .iter()
        .find(|s| s.index == index)
        .map(|s| s.steps.clone())
        .unwrap_or_default();
    if steps.len() != 1 + triggers + job.checked.stages[index].instructions.len() {
        return Err(Error::Internal(format!(
            "the plan of stage {index} has {} steps, the stage {triggers} triggers and {} instructions",
            steps.len(),
            job.checked.stages[index].instructions.len()
        )));
    }
    Ok(steps)
}
