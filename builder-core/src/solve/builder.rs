//! The builder: a request is read, planned, and its stages run; the target becomes an image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::context::{Context, StatCache};
use crate::dockerfile::{self, CheckOptions};
use crate::plan;

use super::env::StageState;
use super::times::Times;
use super::{CacheSpec, Error, Event, Image, Result, Store};
use super::{download, env, inflight, job, remote_cache, run, schedule, squash};
use crate::store::rfc3339;
use std::sync::atomic::Ordering;

/// What a build's job comes with: the stages to build, and where the context's stat cache is
/// kept (none for a context built once).
struct Around<'a> {
    plan: &'a plan::Plan,
    stat_cache: Option<&'a Path>,
}

/// What to build.
#[derive(Debug, Clone, Default)]
pub struct BuildRequest {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile (by default `<context>/Dockerfile`).
    pub dockerfile: Option<PathBuf>,
    /// `--build-arg`s.
    pub build_args: BTreeMap<String, String>,
    /// `--target`.
    pub target: Option<String>,
    /// `--build-context NAME=…`: what a FROM, `COPY --from` or `RUN --mount=from=` naming
    /// `NAME` reads instead of the stage or image of that name.
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// `--label`s added to the image.
    pub labels: BTreeMap<String, String>,
    /// `SOURCE_DATE_EPOCH`: the time written into the image and the clamp for file times
    /// (without it, [`DEFAULT_EPOCH`](super::DEFAULT_EPOCH)).
    pub source_date_epoch: Option<i64>,
    /// `--no-reproducible`: without [`Self::source_date_epoch`], the files a RUN makes keep
    /// their wall-clock times and the image's `created` is the time of the build.
    pub wall_clock_times: bool,
    /// `--no-cache`: run every step, whatever the cache holds.
    pub no_cache: bool,
    /// `--no-cache-filter STAGE`: run every step of these stages (names or indexes).
    pub no_cache_filter: Vec<String>,
    /// `--explain-cache`: misses name every changed input, with old and new digests.
    pub explain_cache: bool,
    /// `--jobs`: how many stages may run at once (default: the number of cores).
    pub jobs: Option<usize>,
    /// Names (`name:tag`) to give the image, set while the store lock is held so a concurrent
    /// prune cannot take the image in between.
    pub tags: Vec<String>,
    /// `--secret id=ID,src=PATH` / `id=ID,env=VAR`: secret values by id, for
    /// `RUN --mount=type=secret`. Never written to a layer, the history or a cache key.
    pub secrets: BTreeMap<String, Vec<u8>>,
    /// `--ssh ID=SOCKET` / `--ssh default`: the SSH agent socket of each id, for
    /// `RUN --mount=type=ssh`. The step gets a socket forwarded to it, never the agent's own path,
    /// and nothing of it enters a layer or a key.
    pub ssh: BTreeMap<String, PathBuf>,
    /// `--run-timeout`: how long one RUN may take; past it, everything it started is killed
    /// and the build fails.
    pub run_timeout: Option<std::time::Duration>,
    /// `--pull`: ask the registry for every base image, even one in the local store.
    pub pull: bool,
    /// `--max-download`: the most one `ADD <url>` downloads (default
    /// [`DEFAULT_MAX_DOWNLOAD`](super::DEFAULT_MAX_DOWNLOAD), 8 GiB); past it the step fails.
    pub max_download: Option<u64>,
    /// `--platform`: which image of a multi-platform base to use (default: the host's).
    pub platform: Option<crate::registry::Platform>,
    /// How registries are reached (plain-HTTP hosts, docker config, retries).
    pub registry: crate::registry::Options,
    /// `--cache-from`: step caches to import before building.
    pub cache_from: Vec<CacheSpec>,
    /// `--cache-to`: where to export this build's step cache.
    pub cache_to: Vec<CacheSpec>,
    /// `--network`: the network of RUN steps without their own `--network` (default: a
    /// private namespace with user-mode networking; a rootless build that cannot open
    /// `/dev/net/tun` shares the user's).
    pub network: crate::exec::Network,
    /// `--memory`, `--pids-limit`, `--cpus`: each RUN's cgroup limits (a default pids limit
    /// applies even when none is given).
    pub limits: crate::exec::Limits,
    /// `--ulimit`: each RUN's resource limits.
    pub ulimits: Vec<crate::exec::Ulimit>,
    /// Whether `RUN --network=host` (and [`Self::network`] `Host`) may be used: the CLI allows
    /// it, a service decides per build (BuildKit's `network.host` entitlement).
    pub allow_network_host: bool,
    /// `--userns`: as root, RUN's ids are an unprivileged range of the host's (`Auto`, the
    /// default) or the host's own (`Host`).
    pub userns: crate::exec::Userns,
    /// `--isolation`: how RUN is kept apart from the builder (`Auto`, the default: the
    /// namespaced sandbox where this process can make it, else chroot with a warning).
    pub isolation: crate::exec::Isolation,
    /// `--squash`: the layers the build adds on top of the target's base become one.
    pub squash: bool,
    /// Set it ([`crate::cancel::Cancel::cancel`], from any thread) to stop the build: no
    /// further step starts, a running RUN is killed with everything it started, pulls,
    /// downloads, cache transfers and context hashing stop at their next read, and the build
    /// fails with [`Error::Cancelled`].
    pub cancel: crate::cancel::Cancel,
}

/// A `--build-context` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A directory on this machine, its `.dockerignore` applied.
    Dir(PathBuf),
    /// `docker-image://REF`: an image, from the store or a registry.
    Image(String),
    /// A git URL (`REMOTE#ref:subdir`), checked out for the build.
    Git(String),
}

impl BuildRequest {
    /// The named contexts as the Dockerfile's check and lowering see them, by lower-case name.
    fn named(&self) -> BTreeMap<String, dockerfile::Named> {
        self.named_contexts
            .iter()
            .map(|(name, c)| {
                let named = match c {
                    NamedContext::Dir(_) | NamedContext::Git(_) => dockerfile::Named::Local,
                    NamedContext::Image(r) => dockerfile::Named::Image(r.clone()),
                };
                (name.to_ascii_lowercase(), named)
            })
            .collect()
    }

    /// Each directory context opened, each git context checked out (kept while the
    /// returned checkouts live).
    fn open_named(
        &self,
        store: &Store,
    ) -> Result<(BTreeMap<String, Context>, Vec<super::RemoteContext>)> {
        let mut open = BTreeMap::new();
        let mut checkouts = Vec::new();
        for (name, c) in &self.named_contexts {
            let dir = match c {
                NamedContext::Image(_) => continue,
                NamedContext::Dir(dir) => dir.clone(),
                NamedContext::Git(url) => {
                    let max = self.max_download.unwrap_or(download::DEFAULT_MAX_DOWNLOAD);
                    let fetched = super::remote_context(store, url, max, &self.cancel)?;
                    let root = fetched.root.clone();
                    checkouts.push(fetched);
                    root
                }
            };
            let context = Context::open(&dir, None).map_err(|source| Error::NamedContext {
                name: name.clone(),
                source,
            })?;
            open.insert(name.to_ascii_lowercase(), context);
        }
        Ok((open, checkouts))
    }
}

/// A build planned without building ([`Builder::plan`]).
#[derive(Debug, Clone)]
pub struct Planned {
    /// The op graph, each op with its step key and whether the step cache holds it.
    pub graph: plan::Graph,
    /// Why the keys stop short, if they do: the step whose key needs what only a build
    /// fetches (an `ADD <url>` without `--checksum`), and every step after it.
    pub unkeyed: Option<String>,
}

/// What a build produced.
#[derive(Debug, Clone)]
pub struct BuildOutput {
    /// The image, in the store.
    pub image: Image,
    /// How many steps the build has.
    pub steps: usize,
    /// How many of them the step cache answered.
    pub cached: usize,
    /// Why each step that missed did: `INSTRUCTION (Dockerfile:LINE): reason`.
    pub misses: Vec<String>,
    /// How many context files had their content read (the others' digests came from the stat
    /// cache).
    pub files_read: u64,
    /// The store's shared lock, still held: nothing the build made can be pruned before the
    /// caller has exported or pushed it. Drop it (or the output) when done; do not take the
    /// lock again while holding it.
    pub lock: crate::store::Lock,
}

/// What a multi-platform build produced ([`Builder::build_platforms`]).
#[derive(Debug)]
pub struct MultiOutput {
    /// The index of the images, in the store (the tags name it).
    pub index: crate::oci::Index,
    /// Each platform's build, in the order asked.
    pub outputs: Vec<(crate::registry::Platform, BuildOutput)>,
}

/// Builds images into a store.
///
/// Clones share one table of the steps being run, so builds started at once on clones of one
/// builder run a step they share once (the service keeps one builder for all its builds).
#[derive(Debug, Clone)]
pub struct Builder {
    store: Store,
    inflight: std::sync::Arc<inflight::Inflight>,
}

impl Builder {
    /// A builder over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            inflight: std::sync::Arc::default(),
        }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The op graph of `req`'s build, without building: base images come from the store
    /// (they are not pulled; one that is not there is an error naming it).
    ///
    /// # Errors
    /// The Dockerfile cannot be read or is wrong, an unknown target, an image not in the store.
    pub fn plan(&self, req: &BuildRequest) -> Result<Planned> {
        let mut graph = self.lower_offline(req)?;
        let _lock = self.store.lock_shared()?;
        // Keys as a build would compute them, offline: context files are hashed, nothing runs.
        let (keys, stopped) = self.with_job(req, &mut |_| {}, true, |job, at| {
            let stopped = schedule::run_stages(job, &at.plan.order, jobs(req)).err();
            let keys = std::mem::take(
                &mut *job
                    .tables
                    .op_keys
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            );
            Ok((keys, stopped))
        })?;
        let unkeyed = match stopped {
            None => None,
            Some(e @ Error::Step { .. }) if matches!(e.root(), Error::KeyUnknown { .. }) => {
                Some(format!("{e}: {}", e.root()))
            }
            Some(other) => return Err(other),
        };
        for (id, (key, cached)) in keys {
            if let Some(op) = graph.ops.get_mut(id) {
                op.key = Some(key.to_string());
                op.cached = cached;
            }
        }
        Ok(Planned { graph, unkeyed })
    }

    /// The op graph of `req`, base images from the store only.
    fn lower_offline(&self, req: &BuildRequest) -> Result<plan::Graph> {
        let front = front(req)?;
        let opts = plan::Options {
            build_args: req.build_args.clone(),
            automatic_args: front.automatic_args.clone(),
            target: req.target.clone(),
            named_contexts: req.named(),
            stage_platforms: platform_texts(&stage_platforms(
                &front.checked,
                &front.automatic_args,
            )?),
        };
        let store = &self.store;
        let host = crate::registry::Platform::host();
        let build_platform = req.platform.as_ref().unwrap_or(&host);
        let resolver = plan::ByPlatform(
            |name: &str, platform: Option<&str>| -> std::result::Result<plan::ImageMeta, String> {
                let platform = match platform {
                    Some(p) => p
                        .parse()
                        .map_err(|e: crate::registry::Error| e.to_string())?,
                    None => build_platform.clone(),
                };
                let image =
                    super::env::load_local_on(store, name, &platform).map_err(|e| match e {
                        Error::ImageNotFound { .. } => {
                            format!("not in the store (`rbuild pull {name}` brings it)")
                        }
                        other => other.to_string(),
                    })?;
                Ok(image_meta(&image))
            },
        );
        Ok(plan::lower(&front.checked, &opts, &resolver)?)
    }

    /// Runs a build, reporting progress to `on_event`.
    pub fn build(
        &self,
        req: &BuildRequest,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<BuildOutput> {
        // Whatever a cancel interrupted (a pull, a download, a RUN), the build was cancelled.
        self.solve(req, on_event).map_err(|e| {
            if req.cancel.is_cancelled() {
                Error::Cancelled
            } else {
                e
            }
        })
    }

    /// Builds `req` once for each of `platforms` (its `platform` is ignored), then stores an
    /// index of the images (a Docker manifest list with `docker_list`) and gives `req.tags` to
    /// it. The builds share the store's step cache, so a stage every platform builds alike (a
    /// `FROM --platform=$BUILDPLATFORM` stage that does not read `TARGET*`) runs once.
    ///
    /// # Errors
    /// As [`Self::build`], for the first platform that fails.
    pub fn build_platforms(
        &self,
        req: &BuildRequest,
        platforms: &[crate::registry::Platform],
        docker_list: bool,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<MultiOutput> {
        let mut outputs = Vec::new();
        for platform in platforms {
            let one = BuildRequest {
                platform: Some(platform.clone()),
                tags: Vec::new(),
                ..req.clone()
            };
            let out = self.build(&one, on_event)?;
            outputs.push((platform.clone(), out));
        }
        let entries = outputs
            .iter()
            .map(|(p, o)| crate::oci::IndexEntry {
                os: p.os.clone(),
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
                image: o.image.clone(),
            })
            .collect();
        let index = crate::oci::Index::store(&self.store, entries, docker_list)?;
        for t in &req.tags {
            self.store.set_tag(t, index.digest)?;
        }
        Ok(MultiOutput { index, outputs })
    }

    fn solve(
        &self,
        req: &BuildRequest,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<BuildOutput> {
        let lock = self.store.lock_shared()?;
        let mut tally = Tally::default();
        let mut count = |e: &Event| {
            tally.observe(e);
            on_event(e);
        };
        let (image, steps, files_read) = self.with_job(req, &mut count, false, |job, at| {
            let mut states = schedule::run_stages(job, &at.plan.order, jobs(req))?;
            let steps = job.progress.next_step.load(Ordering::SeqCst);
            let files_read = {
                let stat_cache = job
                    .tables
                    .stat_cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if let Some(path) = at.stat_cache {
                    stat_cache.save(path, job.context.root())?;
                }
                stat_cache.stats().1
            };
            let final_state = states
                .remove(&at.plan.target)
                .ok_or_else(|| Error::Internal("target stage was not built".into()))?;
            let lazy = &job.tables.lazy_layers;
            let image = self.store_image(req, job.registry, final_state, lazy)?;
            let step_keys = job
                .tables
                .step_keys
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone();
            let emit = |e: &Event| job.emit(e);
            self.export_cache(req, job.registry, &step_keys, at.plan.target, &emit)?;
            Ok((image, steps, files_read))
        })?;
        Ok(BuildOutput {
            image,
            steps,
            cached: tally.cached,
            misses: tally.misses,
            files_read,
            lock,
        })
    }

    /// Reads, checks and lowers `req`, makes the build's [`job::Job`] and gives it to `then`.
    /// `dry`: keys only, offline (no pull, no cache import; see [`job::Policy::dry`]).
    fn with_job<R>(
        &self,
        req: &BuildRequest,
        on_event: &mut (dyn FnMut(&Event) + Send),
        dry: bool,
        then: impl FnOnce(&job::Job<'_>, Around<'_>) -> Result<R>,
    ) -> Result<R> {
        let Front {
            dockerfile_path,
            parsed,
            checked,
            automatic_args,
        } = front(req)?;
        let (plan, no_cache_stages) = announce(&parsed, &checked, req, on_event)?;
        let context = Context::open(&req.context, Some(&dockerfile_path))?;
        let (named, _checkouts) = req.open_named(&self.store)?;
        let (stat_cache_path, stat_cache) = self.stat_cache(&context);
        let work = self.store.work_dir(if dry { "plan-" } else { "build-" })?;
        let total = plan
            .order
            .iter()
            .map(|&i| checked.stages[i].instructions.len() + 1)
            .sum();
        // Every registry call of the build stops at its cancel.
        let registry = crate::registry::Options {
            cancel: req.cancel.clone(),
            ..req.registry.clone()
        };
        let lazy_layers = if dry {
            remote_cache::LazyLayers::default()
        } else {
            self.import_caches(req, &registry, on_event)?
        };
        let platform = (req.platform.clone()).unwrap_or_else(crate::registry::Platform::host);
        let progress = job::Progress {
            next_step: std::sync::atomic::AtomicUsize::new(0),
            total,
            events: std::sync::Mutex::new(on_event),
        };
        let mut images = env::Images::new(&self.store, req.pull, &platform, &registry);
        images.offline = dry;
        let stage_platforms = stage_platforms(&checked, &automatic_args)?;
        let tables = job::Tables::new(stat_cache, images, lazy_layers);
        let graph = lower(
            &checked,
            req,
            &automatic_args,
            &tables.images,
            &stage_platforms,
            &progress,
        )?;
        // What `--isolation none` must keep of `/`: the store, the contexts, and the push's
        // credentials (docker's config file).
        let keep: Vec<PathBuf> = [
            self.store.root().to_owned(),
            req.context.clone(),
            crate::registry::default_config_path(),
        ]
        .into_iter()
        .chain(req.named_contexts.values().filter_map(|c| match c {
            NamedContext::Dir(d) => Some(d.clone()),
            NamedContext::Image(_) | NamedContext::Git(_) => None,
        }))
        .collect();
        let job = job::Job {
            store: &self.store,
            context: &context,
            named: &named,
            checked: &checked,
            graph: &graph,
            dockerfile: &dockerfile_path,
            times: Times::of(req.source_date_epoch, req.wall_clock_times),
            policy: job::Policy {
                no_cache: req.no_cache,
                no_cache_stages: &no_cache_stages,
                explain: req.explain_cache,
                dry,
            },
            sandbox: sandbox(req, &keep),
            max_download: req.max_download.unwrap_or(download::DEFAULT_MAX_DOWNLOAD),
            platform: &platform,
            stage_platforms: &stage_platforms,
            registry: &registry,
            cancel: &req.cancel,
            tables: &tables,
            inflight: &self.inflight,
            work: work.path(),
            progress: &progress,
        };
        let around = Around {
            plan: &plan,
            stat_cache: stat_cache_path.as_deref(),
        };
        then(&job, around)
    }

    /// The context's stat cache, and where it is kept. A context in the store's own work
    /// directories (the service's, `build -`) is built once: its cache would never be read
    /// again, so it is not kept.
    fn stat_cache(&self, context: &Context) -> (Option<PathBuf>, StatCache) {
        let path = (!context.root().starts_with(self.store.root()))
            .then(|| stat_cache_path(&self.store, context.root()));
        let cache = path.as_deref().map(StatCache::load).unwrap_or_default();
        (path, cache)
    }

    /// `--cache-from`: the step records of each cache, their layers fetched when read.
    fn import_caches(
        &self,
        req: &BuildRequest,
        registry: &crate::registry::Options,
        on_event: &mut (dyn FnMut(&Event) + Send),
    ) -> Result<remote_cache::LazyLayers> {
        let lazy_layers = remote_cache::LazyLayers::default();
        for spec in &req.cache_from {
            let records = remote_cache::import(&self.store, spec, registry, &lazy_layers)?;
            on_event(&Event::CacheImported {
                source: cache_name(spec),
                records,
            });
        }
        Ok(lazy_layers)
    }

    /// The target's image, finished (`--label`s, times, `--squash`), stored and tagged.
    fn store_image(
        &self,
        req: &BuildRequest,
        registry: &crate::registry::Options,
        mut state: StageState,
        lazy_layers: &remote_cache::LazyLayers,
    ) -> Result<Image> {
        if !req.labels.is_empty() {
            state
                .config
                .config
                .labels
                .get_or_insert_with(BTreeMap::new)
                .extend(req.labels.clone());
        }
        let times = Times::of(req.source_date_epoch, req.wall_clock_times);
        let created = rfc3339(times.created());
        state.config.created = Some(created.clone());
        for h in &mut state.config.history {
            h.created.get_or_insert_with(|| created.clone());
        }
        remote_cache::ensure_layers(
            &self.store,
            &state.config.rootfs.diff_ids,
            lazy_layers,
            registry,
        )?;
        if req.squash {
            squash::squash(&self.store, &mut state, times.clamp)?;
        }
        let image = Image::store(&self.store, &state.config)?;
        for t in &req.tags {
            self.store.set_tag(t, image.manifest_digest)?;
        }
        Ok(image)
    }

    /// `--cache-to`: the target's steps (`mode=max`: every stage's) exported.
    fn export_cache(
        &self,
        req: &BuildRequest,
        registry: &crate::registry::Options,
        step_keys: &[(usize, crate::digest::Digest)],
        target: usize,
        on_event: &dyn Fn(&Event),
    ) -> Result<()> {
        for spec in &req.cache_to {
            let keys: Vec<crate::digest::Digest> = step_keys
                .iter()
                .filter(|(stage, _)| spec.max() || *stage == target)
                .map(|(_, k)| *k)
                .collect();
            let records = remote_cache::export(&self.store, spec, &keys, registry)?;
            on_event(&Event::CacheExported {
                target: cache_name(spec),
                records,
            });
        }
        Ok(())
    }
}

fn cache_name(spec: &CacheSpec) -> String {
    match spec {
        CacheSpec::Registry { reference, .. } => reference.to_string(),
        CacheSpec::Local { dir, .. } => dir.display().to_string(),
    }
}

fn stat_cache_path(store: &Store, context: &Path) -> PathBuf {
    let key = crate::digest::Digest::of(context.as_os_str().as_encoded_bytes());
    store
        .root()
        .join("statcache")
        .join(format!("{}.stat", key.hex()))
}

/// The front half of a build: the Dockerfile read inside the context, parsed and checked with
/// the build args and the automatic platform args.
struct Front {
    dockerfile_path: PathBuf,
    parsed: dockerfile::Dockerfile,
    checked: dockerfile::Checked,
    automatic_args: BTreeMap<String, String>,
}

fn front(req: &BuildRequest) -> Result<Front> {
    let dockerfile_path = req
        .dockerfile
        .clone()
        .unwrap_or_else(|| req.context.join("Dockerfile"));
    let src =
        crate::context::read_control_file(&req.context, &dockerfile_path).map_err(Error::from)?;
    let invalid = |source| Error::Dockerfile {
        path: dockerfile_path.clone(),
        source: Box::new(source),
    };
    let (os, arch) = crate::oci::host_platform();
    let build_platform = format!("{os}/{arch}");
    // `--platform` is the target's: TARGET* args (and scratch stages' config) follow it.
    let target = req
        .platform
        .clone()
        .unwrap_or_else(crate::registry::Platform::host);
    let mut automatic_args: BTreeMap<String, String> = [
        ("TARGETPLATFORM", target.to_string()),
        ("TARGETOS", target.os.clone()),
        ("TARGETARCH", target.architecture.clone()),
        ("BUILDPLATFORM", build_platform.clone()),
        ("BUILDOS", os.to_owned()),
        ("BUILDARCH", arch.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The variants are always defined, empty where the platform has none (BuildKit's).
    automatic_args.insert(
        "TARGETVARIANT".into(),
        target.variant.clone().unwrap_or_default(),
    );
    automatic_args.insert("BUILDVARIANT".into(), String::new());
    let opts = CheckOptions {
        build_args: req.build_args.clone(),
        automatic_args: automatic_args.clone(),
        named_contexts: req.named(),
    };
    let parsed = dockerfile::parse(&src).map_err(invalid)?;
    let checked = dockerfile::check(&parsed, &opts).map_err(invalid)?;
    Ok(Front {
        dockerfile_path,
        parsed,
        checked,
        automatic_args,
    })
}

/// Each stage's `FROM --platform=…`, expanded with the automatic and global args (BuildKit
/// expands it as it expands the image name).
fn stage_platforms(
    checked: &dockerfile::Checked,
    automatic_args: &BTreeMap<String, String>,
) -> Result<BTreeMap<usize, crate::registry::Platform>> {
    let mut vars: Vec<(String, String)> = automatic_args
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    vars.extend(
        checked
            .global_args
            .iter()
            .filter_map(|g| g.value.clone().map(|v| (g.decl.name.clone(), v))),
    );
    let lexer = dockerfile::Lexer::new(checked.directives.escape_char());
    let mut out = BTreeMap::new();
    for stage in &checked.stages {
        let Some(written) = &stage.platform else {
            continue;
        };
        let at = |source: Error| Error::Step {
            keyword: "FROM".into(),
            line: stage.span.line,
            instruction: format!("FROM --platform={written} {}", stage.base.written),
            source: Box::new(source),
        };
        let expanded = lexer.word(written, &vars).map_err(|source| {
            at(Error::Expand {
                word: written.clone(),
                source,
            })
        })?;
        let platform = expanded.parse().map_err(|_| {
            at(Error::InvalidFlag {
                flag: "--platform",
                value: expanded.clone(),
                reason: "expected OS/ARCH[/VARIANT]".into(),
            })
        })?;
        out.insert(stage.index, platform);
    }
    Ok(out)
}

/// The stages' platforms as the plan takes them (`OS/ARCH[/VARIANT]`).
fn platform_texts(
    platforms: &BTreeMap<usize, crate::registry::Platform>,
) -> BTreeMap<usize, String> {
    platforms.iter().map(|(i, p)| (*i, p.to_string())).collect()
}

/// What lowering reads of an image.
pub(crate) fn image_meta(image: &Image) -> plan::ImageMeta {
    let c = &image.config.config;
    plan::ImageMeta {
        digest: image.manifest_digest,
        env: c.env.clone().unwrap_or_default(),
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user: c.user.clone().filter(|u| !u.is_empty()),
        shell: c.shell.clone(),
        on_build: c.on_build.clone().unwrap_or_default(),
    }
}

/// Lowers the build to its op graph, base images resolved (pulled if need be) through
/// `images`; a failure is the failed step's error, as the step itself would have given it.
fn lower(
    checked: &dockerfile::Checked,
    req: &BuildRequest,
    automatic_args: &BTreeMap<String, String>,
    images: &env::Images<'_>,
    stage_platforms: &BTreeMap<usize, crate::registry::Platform>,
    progress: &job::Progress<'_>,
) -> Result<plan::Graph> {
    let opts = plan::Options {
        build_args: req.build_args.clone(),
        automatic_args: automatic_args.clone(),
        target: req.target.clone(),
        named_contexts: req.named(),
        stage_platforms: platform_texts(stage_platforms),
    };
    // The resolver answers the plan with text; the typed error is kept for the step's.
    let failed: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    let emit = |e: &Event| progress.emit(e);
    let resolver = plan::ByPlatform(
        |name: &str, platform: Option<&str>| -> std::result::Result<plan::ImageMeta, String> {
            let found = match platform.map(str::parse::<crate::registry::Platform>) {
                Some(Ok(p)) => images.resolve_on(name, &p, &emit),
                Some(Err(e)) => return Err(e.to_string()),
                None => images.resolve(name, &emit),
            };
            found.map(|image| image_meta(&image)).map_err(|e| {
                let text = e.to_string();
                if let Ok(mut f) = failed.lock() {
                    f.get_or_insert(e);
                }
                text
            })
        },
    );
    let lowered = plan::lower(checked, &opts, &resolver);
    let failed = failed
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    lowered.map_err(|e| step_error(e, failed))
}

/// A lowering error as the build reports a failed step: keyword, line, instruction, cause.
fn step_error(err: plan::Error, resolved: Option<Error>) -> Error {
    match err {
        plan::Error::Step {
            line,
            keyword,
            instruction,
            source,
        } => Error::Step {
            keyword,
            line,
            instruction,
            source: Box::new(step_error(*source, resolved)),
        },
        plan::Error::Resolve { .. } => resolved.unwrap_or_else(|| Error::Plan(err)),
        plan::Error::Expand { word, source } => Error::Expand { word, source },
        plan::Error::Invalid {
            flag,
            value,
            reason,
        } => Error::InvalidFlag {
            flag,
            value,
            reason,
        },
        plan::Error::Trigger { source, .. } => Error::Dockerfile {
            path: "<ONBUILD trigger>".into(),
            source,
        },
        plan::Error::Unsupported { what } => Error::Unsupported { what },
        other => Error::Plan(other),
    }
}

/// The build's warnings and skipped stages, reported; the plan of stages and the
/// `--no-cache-filter` stages.
fn announce(
    parsed: &dockerfile::Dockerfile,
    checked: &dockerfile::Checked,
    req: &BuildRequest,
    on_event: &mut (dyn FnMut(&Event) + Send),
) -> Result<(plan::Plan, std::collections::BTreeSet<usize>)> {
    for w in parsed.warnings.iter().chain(&checked.warnings) {
        on_event(&Event::Warning {
            message: w.message.clone(),
            line: w.span.line,
        });
    }
    let plan = plan::plan(checked, req.target.as_deref())?;
    let mut no_cache_stages = std::collections::BTreeSet::new();
    for name in &req.no_cache_filter {
        no_cache_stages.insert(plan::stage_index(checked, name)?);
    }
    for &i in &plan.skipped {
        on_event(&Event::StageSkipped {
            stage: i,
            name: checked.stages[i].name.clone(),
        });
    }
    Ok((plan, no_cache_stages))
}

/// What the build's end reports of its steps: how many were cached, why the others missed.
#[derive(Default)]
struct Tally {
    cached: usize,
    misses: Vec<String>,
}

impl Tally {
    fn observe(&mut self, e: &Event) {
        match e {
            Event::StepDone { cached: true, .. } => self.cached += 1,
            Event::Miss {
                instruction,
                line,
                reason,
                first: false,
                ..
            } => self
                .misses
                .push(format!("{instruction} (Dockerfile:{line}): {reason}")),
            _ => {}
        }
    }
}

/// `--jobs`, else the core count.
fn jobs(req: &BuildRequest) -> usize {
    req.jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .max(1)
}

/// What every RUN's sandbox gets from the request.
fn sandbox<'a>(req: &'a BuildRequest, keep: &'a [PathBuf]) -> run::Sandbox<'a> {
    run::Sandbox {
        secrets: &req.secrets,
        ssh: &req.ssh,
        run_timeout: req.run_timeout,
        network: req.network,
        allow_network_host: req.allow_network_host,
        userns: req.userns,
        isolation: req.isolation,
        keep,
        limits: &req.limits,
        ulimits: &req.ulimits,
    }
}
