//! One build as the solver runs it ([`Job`]): what it reads, the tables its stages share,
//! where it reports, and its cancel token. Only the solver's own files (`schedule`, `stage`,
//! `inputs`) see it; the executors (`copy`, `run`, `config`) are given their op and its inputs
//! materialised as paths, never the job (`tests/architecture.rs` checks this).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::cancel::Cancel;
use crate::context::{Context, StatCache};
use crate::digest::Digest;
use crate::dockerfile::Checked;
use crate::oci::Image;
use crate::snapshot::Entry;
use crate::store::Store;

use super::env::{Images, StageState, add_layer};
use super::times::Times;
use super::{Error, Event, Result, download, inflight, remote_cache, run};

/// One build's solver state.
pub(crate) struct Job<'a> {
    pub(crate) store: &'a Store,
    pub(crate) context: &'a Context,
    /// The directory `--build-context`s, by lower-case name.
    pub(crate) named: &'a std::collections::BTreeMap<String, Context>,
    /// The Dockerfile checked, and lowered to the ops each stage runs.
    pub(crate) checked: &'a Checked,
    pub(crate) graph: &'a crate::plan::Graph,
    pub(crate) dockerfile: &'a Path,
    /// The epoch and the clamp of file times.
    pub(crate) times: Times,
    /// Which steps may be answered by the cache, and how misses are explained.
    pub(crate) policy: Policy<'a>,
    /// What every RUN's sandbox gets from the request.
    pub(crate) sandbox: run::Sandbox<'a>,
    /// The most one `ADD <url>` downloads.
    pub(crate) max_download: u64,
    /// The platform pulled for and built.
    pub(crate) platform: &'a crate::registry::Platform,
    /// Stages whose `FROM --platform` names another (`$BUILDPLATFORM`), by index.
    pub(crate) stage_platforms: &'a std::collections::BTreeMap<usize, crate::registry::Platform>,
    /// How registries are reached (the build's cancel token in them).
    pub(crate) registry: &'a crate::registry::Options,
    /// Set to stop the build: no further step starts and a running RUN is killed.
    pub(crate) cancel: &'a Cancel,
    /// Memo tables shared by the build's stages.
    pub(crate) tables: &'a Tables<'a>,
    /// Steps being run by any build of this builder.
    pub(crate) inflight: &'a inflight::Inflight,
    /// The build's scratch directory.
    pub(crate) work: &'a Path,
    pub(crate) progress: &'a Progress<'a>,
}

/// `--no-cache`, `--no-cache-filter`, `--explain-cache`.
pub(crate) struct Policy<'a> {
    pub(crate) no_cache: bool,
    pub(crate) no_cache_stages: &'a BTreeSet<usize>,
    /// Misses name every changed input, with digests.
    pub(crate) explain: bool,
    /// Keys only (`rbuild plan`): each step's key is computed and looked up, config edits
    /// applied, and nothing runs, is fetched or is recorded.
    pub(crate) dry: bool,
}

/// What the stages of one build look up once and share.
pub(crate) struct Tables<'a> {
    /// Context files' digests by stat.
    pub(crate) stat_cache: Mutex<StatCache>,
    /// Remote files fetched in this build, by URL and checksum.
    pub(crate) downloads: Mutex<HashMap<String, download::Download>>,
    /// The commit each git source's ref named when first asked, by URL.
    pub(crate) git: Mutex<HashMap<String, String>>,
    /// Images by name, each resolved once per build.
    pub(crate) images: Images<'a>,
    /// Layers an imported cache can provide, fetched when first read.
    pub(crate) lazy_layers: remote_cache::LazyLayers,
    /// (stage, key) of every step this build went through, for `--cache-to`.
    pub(crate) step_keys: Mutex<Vec<(usize, Digest)>>,
    /// Each op's step key, and whether the step cache holds it (not asked for FROM).
    pub(crate) op_keys: Mutex<std::collections::BTreeMap<usize, (Digest, Option<bool>)>>,
    /// The build's read-only views of layer stacks, detached when it ends.
    pub(crate) views: super::snapshots::Views,
    /// Per op of the graph, whether a later op reads its tree ([`crate::plan::Graph::tree_read_later`]).
    pub(crate) tree_read: std::sync::OnceLock<Vec<bool>>,
}

impl<'a> Tables<'a> {
    /// Tables with nothing looked up yet but what is given.
    pub(crate) fn new(
        stat_cache: StatCache,
        images: Images<'a>,
        lazy_layers: remote_cache::LazyLayers,
    ) -> Self {
        Self {
            stat_cache: Mutex::new(stat_cache),
            downloads: Mutex::default(),
            git: Mutex::default(),
            images,
            lazy_layers,
            step_keys: Mutex::default(),
            op_keys: Mutex::default(),
            views: super::snapshots::Views::default(),
            tree_read: std::sync::OnceLock::new(),
        }
    }
}

/// Step numbers (shared by all stages, which may run at once) and where events go.
pub(crate) struct Progress<'a> {
    pub(crate) next_step: std::sync::atomic::AtomicUsize,
    pub(crate) total: usize,
    pub(crate) events: Mutex<&'a mut (dyn FnMut(&Event) + Send)>,
}

impl Progress<'_> {
    /// Reports an event.
    pub(crate) fn emit(&self, event: &Event) {
        let mut on_event = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (on_event)(event);
    }
}

impl<'a> Job<'a> {
    /// Reports an event.
    pub(crate) fn emit(&self, event: &Event) {
        self.progress.emit(event);
    }

    /// Notes that stage `index` went through step `key`.
    pub(crate) fn record_key(&self, index: usize, key: Digest) {
        if let Ok(mut k) = self.tables.step_keys.lock() {
            k.push((index, key));
        }
    }

    /// Notes op `op`'s step key (and whether it was cached).
    pub(crate) fn note_key(&self, op: usize, key: Digest, cached: Option<bool>) {
        if let Ok(mut k) = self.tables.op_keys.lock() {
            k.insert(op, (key, cached));
        }
    }

    /// Fails with [`Error::Cancelled`] once the build's cancel token is set.
    pub(crate) fn check_cancelled(&self) -> Result<()> {
        self.cancel.check().map_err(|_| Error::Cancelled)
    }

    /// Takes the next step number.
    pub(crate) fn next_step(&self) -> usize {
        self.progress
            .next_step
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1
    }

    /// A context file's digest, through the shared stat cache; stops once cancelled.
    pub(crate) fn hash(&self, path: &Path, info: &crate::context::FileInfo) -> Result<Digest> {
        self.check_cancelled()?;
        let mut cache = self
            .tables
            .stat_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(crate::context::hash_file(path, info, &mut cache)?)
    }

    /// The platform stage `index` is built for: its `FROM --platform`, else the build's.
    pub(crate) fn platform_of(&self, index: usize) -> &'a crate::registry::Platform {
        self.stage_platforms.get(&index).unwrap_or(self.platform)
    }

    /// The image `name` for stage `index`'s platform.
    pub(crate) fn image_for(&self, name: &str, index: usize) -> Result<Image> {
        self.tables
            .images
            .resolve_on(name, self.platform_of(index), &|e| self.emit(e))
    }

    /// The directory context `name` (the plan only names those given).
    pub(crate) fn named(&self, name: &str) -> Result<&'a Context> {
        self.named
            .get(name)
            .ok_or_else(|| Error::Internal(format!("no build context `{name}`")))
    }

    /// An image by name, as `FROM` finds it (see [`Images`]).
    pub(crate) fn image(&self, name: &str) -> Result<Image> {
        self.tables.images.resolve(name, &|e| self.emit(e))
    }

    /// The root filesystem of `state`'s layers, read-only (see [`Job::stack`]).
    pub(crate) fn rootfs(&self, state: &StageState) -> Result<PathBuf> {
        Ok(self.stack(state)?.view)
    }

    /// The root filesystem of `state`'s layers: layer directories shared by every build and a
    /// merged view of them for this build (made only now, so a fully cached build never
    /// unpacks anything).
    pub(crate) fn stack(&self, state: &StageState) -> Result<super::snapshots::Stack> {
        let layers = &state.config.rootfs.diff_ids;
        remote_cache::ensure_layers(self.store, layers, &self.tables.lazy_layers, self.registry)?;
        self.check_cancelled()?;
        let stack = super::snapshots::stack_for(self.store, layers, &self.tables.views)?;
        state
            .rootfs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone_from(&stack.view);
        Ok(stack)
    }

    /// Adds the layer of `entries` that op `op` makes to `state`. Where a later step reads the
    /// tree and layer directories are stacked, the layer's directory is written with its tar.
    pub(crate) fn add_layer(
        &self,
        state: &mut StageState,
        entries: Vec<Entry>,
        op: crate::plan::OpId,
    ) -> Result<Digest> {
        let read = self
            .tables
            .tree_read
            .get_or_init(|| self.graph.tree_read_later())
            .get(op)
            .copied()
            .unwrap_or(false);
        let layers = super::snapshots::mode(self.store) == super::snapshots::Mode::Layers;
        // The parent's stack is there already (the step read it); asking again only looks.
        let view = if read && layers {
            Some(self.stack(state)?.view)
        } else {
            None
        };
        add_layer(
            self.store,
            self.times.clamp,
            state,
            entries,
            view.as_deref(),
        )
    }
}
