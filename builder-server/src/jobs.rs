//! Build jobs: posted builds wait in a bounded queue per tenant, served round-robin, so a
//! tenant posting a hundred builds does not starve one posting one; `--max-builds` run at once.
//! Each job's events go to its record as they happen and wake whoever follows it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use builder_core::cancel::Cancel;
use tokio::sync::watch;

use crate::build::{self, Params, Ready};
use crate::records::{Build, Records};
use crate::state::AppState;

/// A posted build waiting for a slot.
pub(crate) struct Queued {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) params: Params,
    pub(crate) ready: Ready,
    pub(crate) posted: Instant,
}

/// A job that is queued or running, as its followers see it.
#[derive(Debug)]
pub(crate) struct Live {
    /// Cancels the job's build (`DELETE`).
    pub(crate) cancel: Cancel,
    /// How many events are recorded, and whether the job has ended; changes wake followers.
    pub(crate) progress: watch::Sender<(u64, bool)>,
}

#[derive(Default)]
struct Inner {
    queues: HashMap<String, VecDeque<Queued>>,
    /// Tenants with queued jobs, in the order they are served next.
    turn: VecDeque<String>,
    running: usize,
    /// How many jobs have started, over the records' life.
    started: i64,
    live: HashMap<String, Arc<Live>>,
    /// Shutting down: nothing more is queued or started.
    draining: bool,
}

/// The queue and the running jobs.
pub(crate) struct Jobs {
    inner: Mutex<Inner>,
    pub(crate) records: Arc<Records>,
    /// `--max-builds`.
    pub(crate) max_builds: usize,
    /// `--max-queued`: per tenant.
    pub(crate) max_queued: usize,
    /// `--keep-builds`, `--keep-days` (as milliseconds).
    pub(crate) keep_builds: u64,
    pub(crate) keep_ms: i64,
    /// `--cache-max-size`.
    pub(crate) cache_max_size: Option<u64>,
    /// Fleet mode: the replica's settings and the dispatcher's bell.
    pub(crate) fleet: Option<(crate::fleet::Settings, Arc<crate::fleet::Bell>)>,
}

impl std::fmt::Debug for Jobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jobs")
            .field("max_builds", &self.max_builds)
            .field("max_queued", &self.max_queued)
            .finish_non_exhaustive()
    }
}

/// Why a job was not queued.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Refused {
    /// The tenant's queue is full.
    Full { queued: usize },
    /// The server is shutting down.
    ShuttingDown,
}

/// A new job id: 20 random hex digits.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 10];
    // The OS's randomness failing is not something a server can go on from.
    getrandom::fill(&mut bytes).expect("the OS gives random bytes");
    bytes.iter().fold(String::with_capacity(20), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Jobs {
    /// The jobs over `records`; `started` goes on from the records' last start.
    pub(crate) fn new(records: Arc<Records>, max_builds: usize, max_queued: usize) -> Self {
        let started = records.max_start_order().unwrap_or(0);
        Self {
            inner: Mutex::new(Inner {
                started,
                ..Inner::default()
            }),
            records,
            max_builds: max_builds.max(1),
            max_queued: max_queued.max(1),
            keep_builds: 10_000,
            keep_ms: 30 * 86_400_000,
            cache_max_size: None,
            fleet: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `tenant` may queue one more job (fleet-wide in a fleet).
    pub(crate) fn room_for(&self, tenant: &str) -> Result<(), Refused> {
        if let Some(pg) = self.records.fleet() {
            let queued = pg.queued(tenant).unwrap_or(0);
            if queued >= self.max_queued {
                return Err(Refused::Full { queued });
            }
            return Ok(());
        }
        let inner = self.lock();
        let queued = inner.queues.get(tenant).map_or(0, VecDeque::len);
        if queued >= self.max_queued {
            return Err(Refused::Full { queued });
        }
        Ok(())
    }

    /// How many jobs wait, and how many run.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let inner = self.lock();
        (
            inner.queues.values().map(VecDeque::len).sum(),
            inner.running,
        )
    }

    /// The live state of job `id`, while it is queued or running.
    pub(crate) fn live(&self, id: &str) -> Option<Arc<Live>> {
        self.lock().live.get(id).cloned()
    }

    /// Records `job` and queues it (starting it if a slot is free).
    pub(crate) fn submit(
        &self,
        state: &AppState,
        job: Queued,
        record: &Build,
    ) -> Result<(), Refused> {
        {
            let mut inner = self.lock();
            if inner.draining {
                return Err(Refused::ShuttingDown);
            }
            let queue = inner.queues.entry(job.tenant.clone()).or_default();
            if queue.len() >= self.max_queued {
                return Err(Refused::Full {
                    queued: queue.len(),
                });
            }
            if let Err(e) = self.records.insert(record) {
                tracing::error!(error = %e, "cannot record a posted build");
                return Err(Refused::ShuttingDown);
            }
            let (progress, _) = watch::channel((0, false));
            inner.live.insert(
                job.id.clone(),
                Arc::new(Live {
                    cancel: Cancel::new(),
                    progress,
                }),
            );
            let tenant = job.tenant.clone();
            let queue = inner.queues.entry(tenant.clone()).or_default();
            queue.push_back(job);
            if queue.len() == 1 {
                inner.turn.push_back(tenant);
            }
        }
        self.dispatch(state);
        Ok(())
    }

    /// Starts queued jobs while slots are free: the next tenant in turn gives its oldest.
    fn dispatch(&self, state: &AppState) {
        let mut inner = self.lock();
        while inner.running < self.max_builds && !inner.draining {
            let Some(tenant) = inner.turn.pop_front() else {
                break;
            };
            let Some(queue) = inner.queues.get_mut(&tenant) else {
                continue;
            };
            let Some(job) = queue.pop_front() else {
                continue;
            };
            if queue.is_empty() {
                inner.queues.remove(&tenant);
            } else {
                inner.turn.push_back(tenant);
            }
            inner.running += 1;
            inner.started += 1;
            let order = inner.started;
            let Some(live) = inner.live.get(&job.id).cloned() else {
                inner.running -= 1;
                continue;
            };
            if let Err(e) = self.records.started(&job.id, order) {
                tracing::error!(error = %e, build = %job.id, "cannot record a build's start");
            }
            tracing::info!(build = %job.id, tenant = %job.tenant, order, waited_ms = u64::try_from(job.posted.elapsed().as_millis()).unwrap_or(u64::MAX), "build started");
            let state = state.clone();
            tokio::task::spawn_blocking(move || run(&state, job, &live));
        }
    }

    /// Cancels job `id`: a queued one ends at once, a running one has its build cancelled (its
    /// RUN killed). Gives whether the job was queued or running.
    pub(crate) fn cancel(&self, id: &str) -> bool {
        if let Some(pg) = self.records.fleet() {
            if let Some(live) = self.live(id) {
                live.cancel.cancel();
                return true;
            }
            return match pg.cancel(id) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!(error = %e, build = %id, "cannot cancel");
                    false
                }
            };
        }
        let mut inner = self.lock();
        let Some(live) = inner.live.get(id).cloned() else {
            return false;
        };
        let mut found = None;
        for (tenant, queue) in &mut inner.queues {
            if let Some(at) = queue.iter().position(|j| j.id == id) {
                found = queue.remove(at).map(|j| (tenant.clone(), j));
                break;
            }
        }
        match found {
            Some((tenant, job)) => {
                if inner.queues.get(&tenant).is_some_and(VecDeque::is_empty) {
                    inner.queues.remove(&tenant);
                    inner.turn.retain(|t| *t != tenant);
                }
                inner.live.remove(id);
                drop(inner);
                let last = build::with_type(
                    "error",
                    crate::error::ApiError::internal("cancelled before it started").body(),
                );
                self.end(&job.id, "cancelled", &last, &live, 0);
            }
            None => live.cancel.cancel(),
        }
        true
    }

    /// Shutting down: no job is queued or started from now; the queued ones end `interrupted`.
    pub(crate) fn drain(&self) {
        let queued: Vec<(Queued, Option<Arc<Live>>)> = {
            let mut inner = self.lock();
            inner.draining = true;
            inner.turn.clear();
            let jobs: Vec<Queued> = inner.queues.drain().flat_map(|(_, q)| q).collect();
            jobs.into_iter()
                .map(|j| {
                    let live = inner.live.remove(&j.id);
                    (j, live)
                })
                .collect()
        };
        for (job, live) in queued {
            let last = build::with_type(
                "error",
                crate::error::ApiError::internal(
                    "interrupted: the server shut down before the build started",
                )
                .body(),
            );
            if let Some(live) = live {
                self.end(&job.id, "interrupted", &last, &live, 0);
            }
        }
    }

    /// Records a job's end (its last event among the others) and wakes its followers.
    fn end(&self, id: &str, state: &str, last: &serde_json::Value, live: &Live, n: u64) {
        let n = n + 1;
        if let Err(e) = self.records.event(id, n, &last.to_string()) {
            tracing::error!(error = %e, build = %id, "cannot record an event");
        }
        if let Err(e) = self.records.finished(id, state, last) {
            tracing::error!(error = %e, build = %id, "cannot record a build's end");
        }
        live.progress.send_replace((n, true));
    }

    /// Old records go, and the step cache is cut to `--cache-max-size`: before a finished
    /// job is recorded as ended, so what its followers see next is the pruned store.
    fn tidy(&self, state: &AppState) {
        match self.records.prune(self.keep_builds, self.keep_ms) {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "old build records removed"),
            Err(e) => tracing::error!(error = %e, "cannot prune build records"),
        }
        if let Some(limit) = self.cache_max_size {
            prune_cache(state, limit);
        }
    }

    /// A running job ended: its slot goes to the next.
    fn finished(&self, state: &AppState, id: &str) {
        {
            let mut inner = self.lock();
            inner.running -= 1;
            inner.live.remove(id);
        }
        self.dispatch(state);
    }
}

/// Drops the least recently used step-cache records (and what only they reach) until the
/// store's blobs fit in `limit`, as BuildKit's `gcpolicy` keeps its cache to a size.
fn prune_cache(state: &AppState, limit: u64) {
    let Ok(usage) = builder_core::solve::disk_usage(&state.store) else {
        return;
    };
    if usage.image_bytes + usage.cache_bytes + usage.unused_bytes <= limit {
        return;
    }
    let opts = builder_core::solve::PruneOptions {
        keep_storage: Some(limit),
        ..builder_core::solve::PruneOptions::default()
    };
    match builder_core::solve::prune(&state.store, &opts) {
        Ok(r) => tracing::info!(
            records = r.cache_records,
            blobs = r.blobs,
            bytes = r.bytes,
            limit,
            "step cache pruned to --cache-max-size"
        ),
        Err(e) => tracing::error!(error = %e, "cannot prune the step cache"),
    }
}

/// Runs one job to its end.
fn run(state: &AppState, job: Queued, live: &Live) {
    let jobs = &state.jobs;
    let mut n = 0u64;
    let ended = build::execute(
        state,
        &job.params,
        &job.ready,
        &live.cancel,
        &job.tenant,
        &mut |e| {
            n += 1;
            if let Err(err) = jobs.records.event(&job.id, n, &e.to_string()) {
                tracing::error!(error = %err, build = %job.id, "cannot record an event");
            }
            live.progress.send_replace((n, false));
        },
    );
    tracing::info!(build = %job.id, tenant = %job.tenant, state = ended.state, "build ended");
    drop(job.ready);
    jobs.tidy(state);
    jobs.end(&job.id, ended.state, &ended.last, live, n);
    jobs.finished(state, &job.id);
}

/// Fleet mode: stores a posted (and checked) context in the registry and queues the job in
/// PostgreSQL for whichever replica claims it.
pub(crate) fn submit_to_fleet(
    state: &AppState,
    context: &std::path::Path,
    record: &Build,
    query: &str,
) -> Result<(), crate::error::ApiError> {
    use crate::error::ApiError;
    let jobs = &state.jobs;
    let (Some(pg), Some((settings, bell))) = (jobs.records.fleet(), jobs.fleet.as_ref()) else {
        return Err(ApiError::internal("not a fleet"));
    };
    let file = fs_err::File::open(context).map_err(|e| ApiError::internal(e.to_string()))?;
    let image =
        builder_core::solve::import_rootfs(&state.store, file, crate::records::now_ms() / 1000)
            .map_err(|e| ApiError::internal(format!("cannot keep the context: {e}")))?;
    let key = image
        .diff_ids()
        .first()
        .map(ToString::to_string)
        .unwrap_or_default();
    let tag = format!("{}:ctx-{}", settings.context_store, record.id);
    let reference: builder_core::registry::Reference = tag
        .parse()
        .map_err(|e: builder_core::registry::Error| ApiError::internal(e.to_string()))?;
    let pushed = builder_core::registry::push(
        &state.store,
        &image,
        std::slice::from_ref(&reference),
        &state.registry,
        &builder_core::registry::PushOptions::default(),
    )
    .map_err(|e| ApiError::internal(format!("cannot store the context in `{tag}`: {e}")))?;
    let digest = pushed
        .first()
        .map(|p| p.digest.to_string())
        .unwrap_or_default();
    let context_ref = format!("{}@{digest}", settings.context_store);
    let live = pg
        .heartbeat(&settings.me, settings.lease * 3)
        .unwrap_or_default();
    let preferred = crate::fleet::preferred(&key, &live);
    pg.insert_job(
        record,
        Some(&context_ref),
        preferred.as_deref(),
        Some(query),
    )
    .map_err(|e| ApiError::internal(e.to_string()))?;
    bell.ring();
    Ok(())
}

/// The fleet's side of this replica's jobs.
pub(crate) struct FleetRunner {
    pub(crate) state: AppState,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl crate::fleet::Runner for FleetRunner {
    fn slots(&self) -> (usize, usize) {
        (self.state.jobs.lock().running, self.state.jobs.max_builds)
    }

    fn run(self: Arc<Self>, job: crate::fleet::Claimed) {
        let (progress, _) = watch::channel((job.events, false));
        let live = Arc::new(Live {
            cancel: Cancel::new(),
            progress,
        });
        {
            let mut inner = self.state.jobs.lock();
            inner.running += 1;
            inner.live.insert(job.id.clone(), Arc::clone(&live));
        }
        let state = self.state.clone();
        self.runtime
            .spawn_blocking(move || run_claimed(&state, &job, &live));
    }

    fn running(&self) -> Vec<String> {
        self.state.jobs.lock().live.keys().cloned().collect()
    }

    fn cancel_local(&self, id: &str) {
        if let Some(l) = self.state.jobs.live(id) {
            l.cancel.cancel();
        }
    }

    fn draining(&self) -> bool {
        self.state.jobs.lock().draining
    }
}

/// Runs a job this replica claimed: its context from the registry, its options from its query,
/// the shared step cache in and out, events into the fleet's records.
fn run_claimed(state: &AppState, job: &crate::fleet::Claimed, live: &Live) {
    let jobs = &state.jobs;
    let mut n = job.events;
    let ended = match prepare(state, job) {
        Ok((params, ready)) => {
            let ended = build::execute(
                state,
                &params,
                &ready,
                &live.cancel,
                &job.tenant,
                &mut |e| {
                    n += 1;
                    if let Err(err) = jobs.records.event(&job.id, n, &e.to_string()) {
                        tracing::error!(error = %err, build = %job.id, "cannot record an event");
                    }
                    live.progress.send_replace((n, false));
                },
            );
            (ended.state, ended.last)
        }
        Err(e) => ("failed", build::with_type("error", e.body())),
    };
    tracing::info!(build = %job.id, state = ended.0, "build ended");
    jobs.tidy(state);
    jobs.end(&job.id, ended.0, &ended.1, live, n);
    {
        let mut inner = jobs.lock();
        inner.running -= 1;
        inner.live.remove(&job.id);
    }
    if let Some((_, bell)) = &jobs.fleet {
        bell.ring();
    }
}

/// A claimed job's options and context, checked as at its post.
fn prepare(
    state: &AppState,
    job: &crate::fleet::Claimed,
) -> Result<(Params, Ready), crate::error::ApiError> {
    use crate::error::ApiError;
    let mut params = build::params(Some(&job.query))?;
    let reference: builder_core::registry::Reference = job
        .context_ref
        .parse()
        .map_err(|e: builder_core::registry::Error| ApiError::internal(e.to_string()))?;
    let platform = builder_core::registry::Platform::host();
    let pulled = builder_core::registry::pull(&state.store, &reference, &platform, &state.registry)
        .map_err(|e| {
            ApiError::internal(format!(
                "cannot fetch the context `{}`: {e}",
                job.context_ref
            ))
        })?;
    let layer = pulled
        .image
        .diff_ids()
        .first()
        .copied()
        .ok_or_else(|| ApiError::internal("the stored context has no layer"))?;
    if let Some((settings, _)) = &state.jobs.fleet {
        if let Some(cache) = &settings.cache_registry {
            let spec = |s: String| {
                builder_core::solve::CacheSpec::parse(&s)
                    .map_err(|e| ApiError::internal(format!("--cache-registry `{cache}`: {e}")))
            };
            // An export replaces what its ref held, so each context (by content) and each
            // (context, options) has a ref of its own: the same post again finds all its steps,
            // a post of the same context with other options its shared ones.
            for r in cache_refs(cache, &layer.to_string(), &job.query) {
                params
                    .cache_from
                    .push(spec(format!("type=registry,ref={r}"))?);
                params
                    .cache_to
                    .push(spec(format!("type=registry,ref={r},mode=max"))?);
            }
        }
    }
    let file = fs_err::File::open(state.store.blob_path(&layer))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let why = |e: builder_core::solve::Error| ApiError::from(e);
    let ready = build::setup_from(state, &params, file, &why)?;
    Ok((params, ready))
}

/// The step-cache refs of a fleet job under `--cache-registry REPO[:TAG]`: `REPO:TAG-C` for its
/// context and `REPO:TAG-CO` for its context and options (hashes of them).
fn cache_refs(cache: &str, context: &str, query: &str) -> [String; 2] {
    let (repo, tag) = match cache.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => (cache, "steps"),
    };
    let short = |s: &str| builder_core::digest::Digest::of(s.as_bytes()).hex()[..16].to_owned();
    [
        format!("{repo}:{tag}-{}", short(context)),
        format!("{repo}:{tag}-{}", short(&format!("{context}\n{query}"))),
    ]
}
