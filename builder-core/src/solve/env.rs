//! What every op of a build shares: the build's settings and tables ([`BuildEnv`]), a stage's
//! state as built so far ([`StageState`]), and the helpers COPY, RUN and WORKDIR all use.

use std::path::{Path, PathBuf};

use crate::context::{Context, StatCache};
use crate::digest::Digest;
use crate::dockerfile::Checked;
use crate::oci::{Image, ImageConfig};
use crate::snapshot::{self, Entry, TarOptions};
use crate::store::Store;

use super::{Error, Event, Result};

/// Everything a stage needs from the build.
pub(crate) struct BuildEnv<'a> {
    pub(crate) store: &'a Store,
    pub(crate) context: &'a Context,
    pub(crate) stat_cache: &'a std::sync::Mutex<StatCache>,
    pub(crate) checked: &'a Checked,
    /// The epoch and the clamp of file times.
    pub(crate) times: super::times::Times,
    pub(crate) no_cache: bool,
    /// What every RUN's sandbox gets from the request.
    pub(crate) sandbox: Sandbox<'a>,
    /// `--explain-cache`: misses name every changed input, with digests.
    pub(crate) explain: bool,
    pub(crate) no_cache_stages: &'a std::collections::BTreeSet<usize>,
    pub(crate) dockerfile: &'a Path,
    /// Remote files fetched in this build, by URL and checksum.
    pub(crate) downloads:
        &'a std::sync::Mutex<std::collections::HashMap<String, super::download::Download>>,
    /// The most one `ADD <url>` downloads.
    pub(crate) max_download: u64,
    /// How images are found by name, each once per build.
    pub(crate) images: &'a Images<'a>,
    /// The build lowered: each stage's steps as plan ops.
    pub(crate) graph: &'a crate::plan::Graph,
    /// The platform pulled for.
    pub(crate) platform: &'a crate::registry::Platform,
    /// How registries are reached.
    pub(crate) registry: &'a crate::registry::Options,
    /// Set to stop the build: no further step starts and a running RUN is killed.
    pub(crate) cancel: &'a std::sync::atomic::AtomicBool,
    /// Steps being run by any build of this builder.
    pub(crate) inflight: &'a super::inflight::Inflight,
    /// Layers an imported cache can provide, fetched when first read.
    pub(crate) lazy_layers: &'a super::remote_cache::LazyLayers,
    /// (stage, key) of every step this build went through, for `--cache-to`.
    pub(crate) step_keys: &'a std::sync::Mutex<Vec<(usize, Digest)>>,
    pub(crate) work: &'a Path,
    /// The step this stage is at (numbers are shared by all stages, which may run at once).
    pub(crate) step: usize,
    pub(crate) next_step: &'a std::sync::atomic::AtomicUsize,
    pub(crate) total: usize,
    pub(crate) events: &'a std::sync::Mutex<&'a mut (dyn FnMut(&Event) + Send)>,
}

/// What the build gives every RUN's sandbox, from the request.
#[derive(Clone, Copy)]
pub(crate) struct Sandbox<'a> {
    pub(crate) secrets: &'a std::collections::BTreeMap<String, Vec<u8>>,
    /// `--run-timeout`.
    pub(crate) run_timeout: Option<std::time::Duration>,
    /// `--network`: the default network of RUN.
    pub(crate) network: crate::exec::Network,
    /// Whether RUN may use the host's network.
    pub(crate) allow_network_host: bool,
    /// `--userns`: whose ids RUN's root has.
    pub(crate) userns: crate::exec::Userns,
    /// RUN's cgroup limits.
    pub(crate) limits: &'a crate::exec::Limits,
    /// RUN's resource limits.
    pub(crate) ulimits: &'a [crate::exec::Ulimit],
}

impl BuildEnv<'_> {
    /// The same build, for another stage (possibly on another thread).
    pub(crate) fn for_stage(&self) -> Self {
        Self { step: 0, ..*self }
    }

    /// Notes that stage `index` went through step `key`.
    pub(crate) fn record_key(&self, index: usize, key: Digest) {
        if let Ok(mut k) = self.step_keys.lock() {
            k.push((index, key));
        }
    }

    /// Reports an event.
    pub(crate) fn emit(&self, event: &Event) {
        let mut on_event = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        (on_event)(event);
    }

    /// Takes the next step number.
    /// Fails with [`Error::Cancelled`] once the build's cancel flag is set.
    pub(crate) fn check_cancelled(&self) -> Result<()> {
        if self.cancel.load(std::sync::atomic::Ordering::SeqCst) {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }

    pub(crate) fn next_step(&mut self) -> usize {
        self.step = self
            .next_step
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        self.step
    }

    /// A context file's digest, through the shared stat cache.
    pub(crate) fn hash(&self, path: &Path, info: &crate::context::FileInfo) -> Result<Digest> {
        let mut cache = self
            .stat_cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(crate::context::hash_file(path, info, &mut cache)?)
    }
}

/// The stages of a build as they are built, shared by the stages running: a step that reads
/// another stage (`COPY --from`, `RUN --mount=from=`) waits here until that stage is built, so
/// a stage starts once its base is built and its other inputs have started.
#[derive(Default)]
pub(crate) struct Built {
    /// The stages built, and whether the build stopped (a stage failed).
    states: std::sync::Mutex<(std::collections::BTreeMap<usize, StageState>, bool)>,
    changed: std::sync::Condvar,
}

impl Built {
    /// Stage `index` once it is built; [`Error::Cancelled`] if the build stops first.
    pub(crate) fn wait(
        &self,
        index: usize,
        cancel: &std::sync::atomic::AtomicBool,
    ) -> Result<StageState> {
        let mut guard = self
            .states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            if let Some(state) = guard.0.get(&index) {
                return Ok(state.clone());
            }
            if guard.1 || cancel.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Cancelled);
            }
            // Woken when a stage is built or the build stops; a cancel is seen within 100 ms.
            guard = self
                .changed
                .wait_timeout(guard, std::time::Duration::from_millis(100))
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    /// Whether stage `index` is built.
    pub(crate) fn has(&self, index: usize) -> bool {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .contains_key(&index)
    }

    /// Stage `index` is built.
    pub(crate) fn insert(&self, index: usize, state: StageState) {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .insert(index, state);
        self.changed.notify_all();
    }

    /// The build stops: whoever waits gives up.
    pub(crate) fn stop(&self) {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1 = true;
        self.changed.notify_all();
    }

    /// Every stage built.
    pub(crate) fn into_states(self) -> std::collections::BTreeMap<usize, StageState> {
        self.states
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
    }
}

/// A stage as built so far.
#[derive(Debug)]
pub(crate) struct StageState {
    /// The image config (layers, history, runtime config).
    pub(crate) config: ImageConfig,
    /// The snapshot of the stage's root filesystem, once a step needed it.
    pub(crate) rootfs: std::sync::Mutex<std::path::PathBuf>,
    /// Variables in scope for expansion, in the order they were set (last wins).
    pub(crate) vars: Vec<(String, String)>,
    /// Whether CMD was set in this stage (ENTRYPOINT resets an inherited CMD otherwise).
    pub(crate) cmd_set: bool,
    /// The cache key of the state: everything that made it, chained step by step.
    pub(crate) key: Digest,
    /// Why the state differs from last build's at this point, if it does: said by the next
    /// step that misses because of it.
    pub(crate) parent_reason: Option<String>,
    /// How many layers and history entries came with the base image (`--squash` keeps them).
    pub(crate) base_layers: usize,
    pub(crate) base_history: usize,
}

impl Clone for StageState {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
            rootfs: std::sync::Mutex::new(self.rootfs()),
            vars: self.vars.clone(),
            cmd_set: self.cmd_set,
            key: self.key,
            parent_reason: self.parent_reason.clone(),
            base_layers: self.base_layers,
            base_history: self.base_history,
        }
    }
}

impl StageState {
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        let env = self.config.config.env.get_or_insert_with(Vec::new);
        let entry = format!("{key}={value}");
        match env
            .iter_mut()
            .find(|e| e.split_once('=').map(|(k, _)| k) == Some(key))
        {
            Some(e) => *e = entry,
            None => env.push(entry),
        }
        self.vars.push((key.to_owned(), value.to_owned()));
    }

    /// The root filesystem of the state's layers: a read-only snapshot shared by every build
    /// (made only now, so a fully cached build never unpacks anything).
    pub(crate) fn ensure_rootfs(&self, env: &BuildEnv<'_>) -> Result<std::path::PathBuf> {
        super::remote_cache::ensure_layers(
            env.store,
            &self.config.rootfs.diff_ids,
            env.lazy_layers,
            env.registry,
        )?;
        let dir = super::snapshots::snapshot_for(env.store, &self.config.rootfs.diff_ids)?;
        self.rootfs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone_from(&dir);
        Ok(dir)
    }

    /// The snapshot [`Self::ensure_rootfs`] last gave.
    pub(crate) fn rootfs(&self) -> std::path::PathBuf {
        self.rootfs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// How one build finds images by name (`FROM`, `--from`): the local store, else the registry
/// (always the registry with `--pull`). Each name is resolved once per build, so the plan and
/// every stage see the same image even if a tag moves meanwhile.
pub(crate) struct Images<'a> {
    pub(crate) store: &'a Store,
    /// `--pull`.
    pub(crate) pull: bool,
    pub(crate) platform: &'a crate::registry::Platform,
    pub(crate) registry: &'a crate::registry::Options,
    pub(crate) resolved: std::sync::Mutex<std::collections::HashMap<String, Image>>,
}

impl Images<'_> {
    /// The image `name`, telling `emit` when it was pulled.
    pub(crate) fn resolve(&self, name: &str, emit: &dyn Fn(&Event)) -> Result<Image> {
        if let Some(image) = self.resolved.lock().ok().and_then(|p| p.get(name).cloned()) {
            return Ok(image);
        }
        let image = self.find(name, emit)?;
        if let Ok(mut p) = self.resolved.lock() {
            p.insert(name.to_owned(), image.clone());
        }
        Ok(image)
    }

    fn find(&self, name: &str, emit: &dyn Fn(&Event)) -> Result<Image> {
        if !self.pull {
            match load_local(self.store, name) {
                Err(Error::ImageNotFound { .. }) => {}
                other => return other,
            }
        }
        let failed = |source| Error::Pull {
            name: name.to_owned(),
            local: !self.pull,
            source: Box::new(source),
        };
        let reference: crate::registry::Reference = name.parse().map_err(failed)?;
        let pulled = crate::registry::pull(self.store, &reference, self.platform, self.registry)
            .map_err(failed)?;
        emit(&Event::Pulled {
            reference: reference.to_string(),
            digest: pulled.remote_digest.to_string(),
            layers_fetched: pulled.layers_fetched,
        });
        Ok(pulled.image)
    }
}

/// An image by name, as `FROM` finds it (see [`Images`]).
pub(crate) fn resolve_image(env: &BuildEnv<'_>, name: &str) -> Result<Image> {
    env.images.resolve(name, &|e| env.emit(e))
}

/// Finds `name` among the local tags: as written, with `:latest`, and docker's long forms.
pub(crate) fn load_local(store: &Store, name: &str) -> Result<Image> {
    if let Some((_, digest)) = name.split_once('@') {
        if let Ok(d) = digest.parse::<Digest>() {
            if store.has_blob(&d) {
                return Ok(Image::load(store, d)?);
            }
        }
    }
    let tagged = crate::store::tag_name(name);
    let mut candidates = vec![name.to_owned(), tagged.clone()];
    if let Some(short) = tagged
        .strip_prefix("docker.io/library/")
        .or_else(|| tagged.strip_prefix("docker.io/"))
    {
        candidates.push(short.to_owned());
    } else if !tagged.contains('/') {
        candidates.push(format!("docker.io/library/{tagged}"));
    }
    for c in candidates {
        if let Some(d) = store.tag(&c)? {
            return Ok(Image::load(store, d)?);
        }
    }
    Err(Error::ImageNotFound {
        name: name.to_owned(),
    })
}

/// Rootless: files the build made are owned by the user outside and by root inside; layers
/// record them as root.
pub(crate) fn rootless_owners(entries: &mut [Entry]) {
    let (uid, gid) = (nix::unistd::Uid::effective(), nix::unistd::Gid::effective());
    if uid.is_root() {
        return;
    }
    for e in entries {
        if e.uid == uid.as_raw() {
            e.uid = 0;
        }
        if e.gid == gid.as_raw() {
            e.gid = 0;
        }
    }
}

/// Adds a layer made of `entries` to the stage, written to the store.
pub(crate) fn add_layer(
    env: &BuildEnv<'_>,
    state: &mut StageState,
    mut entries: Vec<Entry>,
) -> Result<Digest> {
    rootless_owners(&mut entries);
    let layer = snapshot::write_layer(
        env.store,
        &mut entries,
        TarOptions {
            source_date_epoch: env.times.clamp,
        },
    )?;
    state.config.rootfs.diff_ids.push(layer.diff_id);
    Ok(layer.diff_id)
}

/// The directories `mkdir -p PATH` passes through, in order: each component's path, `.`
/// skipped and `..` going back up (so `/w/a/../b` passes `/w/a`).
pub(crate) fn walked_prefixes(path: &str) -> Vec<String> {
    let mut stack: Vec<&str> = Vec::new();
    let mut out = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                stack.pop();
            }
            p => {
                stack.push(p);
                out.push(format!("/{}", stack.join("/")));
            }
        }
    }
    out
}

/// Directory entries for `path` and its missing parents in `rootfs`.
pub(crate) fn missing_dirs(
    rootfs: &Path,
    path: &str,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
) -> Result<Vec<Entry>> {
    // Through the image's links, inside the image: the layer names the directories made where
    // they are (`/real/sub`), never through a link (`/w/sub`).
    let resolved = crate::fs::resolve(rootfs, path).map_err(|e| Error::Io {
        path: PathBuf::from(path),
        source: std::io::Error::other(e),
    })?;
    let mut out = Vec::new();
    let mut cur = String::new();
    for part in resolved.split('/').filter(|p| !p.is_empty()) {
        cur = if cur.is_empty() {
            part.to_owned()
        } else {
            format!("{cur}/{part}")
        };
        // A part that exists must be a directory (or a link to one, inside the image).
        if let Ok(Some((_, meta))) = crate::fs::entry(rootfs, &cur, crate::fs::Last::Follow) {
            if !meta.is_dir() {
                return Err(Error::NotADirectory {
                    path: format!("/{cur}"),
                });
            }
        }
        if !in_image(rootfs, &cur) {
            out.push(Entry::dir(cur.clone(), mode, uid, gid, mtime));
        }
    }
    Ok(out)
}

/// Whether the image at `rootfs` has `path` (its last component not followed), resolved inside
/// the image: a link in the image never makes the answer depend on the host.
pub(crate) fn in_image(rootfs: &std::path::Path, path: &str) -> bool {
    crate::fs::entry(rootfs, path, crate::fs::Last::NoFollow).is_ok_and(|e| e.is_some())
}
