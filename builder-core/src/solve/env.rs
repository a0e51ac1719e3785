//! What the stages of a build share: the stages built so far ([`Built`]), a stage's state
//! ([`StageState`]), how images are found by name ([`Images`]), and the helpers COPY, RUN and
//! WORKDIR all use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use crate::cancel::Cancel;
use crate::digest::Digest;
use crate::oci::{Image, ImageConfig};
use crate::snapshot::{self, Entry, TarOptions};
use crate::store::Store;

use super::{Error, Event, Result};

/// The stages of a build as they are built, shared by the stages running: a step that reads
/// another stage (`COPY --from`, `RUN --mount=from=`) waits here until that stage is built, so
/// a stage starts once its base is built and its other inputs have started.
#[derive(Default)]
pub(crate) struct Built {
    /// The stages built, and whether the build stopped (a stage failed).
    states: std::sync::Mutex<(std::collections::BTreeMap<usize, StageState>, bool)>,
    changed: std::sync::Condvar,
}

impl crate::cancel::Wake for Built {
    fn wake(&self) {
        let _guard = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        self.changed.notify_all();
    }
}

impl Built {
    /// A table whose waiters `cancel` wakes.
    pub(crate) fn new(cancel: &Cancel) -> Arc<Self> {
        let built = Arc::new(Self::default());
        let weak: std::sync::Weak<dyn crate::cancel::Wake> = Arc::downgrade(&built) as _;
        cancel.wake_on_cancel(weak);
        built
    }

    /// Stage `index` once it is built; [`Error::Cancelled`] if the build stops or is
    /// cancelled first (woken by either, never polling).
    pub(crate) fn wait(&self, index: usize, cancel: &Cancel) -> Result<StageState> {
        let mut guard = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(state) = guard.0.get(&index) {
                return Ok(state.clone());
            }
            if guard.1 || cancel.is_cancelled() {
                return Err(Error::Cancelled);
            }
            guard = self
                .changed
                .wait(guard)
                .unwrap_or_else(PoisonError::into_inner);
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
    pub(crate) fn take_states(&self) -> std::collections::BTreeMap<usize, StageState> {
        std::mem::take(&mut self.states.lock().unwrap_or_else(PoisonError::into_inner).0)
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

    /// The snapshot `Job::rootfs` last gave.
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
    /// Never ask a registry: the local store only (`rbuild plan`).
    pub(crate) offline: bool,
    pub(crate) platform: &'a crate::registry::Platform,
    pub(crate) registry: &'a crate::registry::Options,
    pub(crate) resolved: std::sync::Mutex<std::collections::HashMap<String, Image>>,
}

impl<'a> Images<'a> {
    /// Nothing resolved yet.
    pub(crate) fn new(
        store: &'a Store,
        pull: bool,
        platform: &'a crate::registry::Platform,
        registry: &'a crate::registry::Options,
    ) -> Self {
        Self {
            store,
            pull,
            offline: false,
            platform,
            registry,
            resolved: std::sync::Mutex::default(),
        }
    }

    /// The image `name` for the build's platform, telling `emit` when it was pulled.
    pub(crate) fn resolve(&self, name: &str, emit: &dyn Fn(&Event)) -> Result<Image> {
        self.resolve_on(name, self.platform, emit)
    }

    /// The image `name` for `platform` (a stage's `FROM --platform`).
    pub(crate) fn resolve_on(
        &self,
        name: &str,
        platform: &crate::registry::Platform,
        emit: &dyn Fn(&Event),
    ) -> Result<Image> {
        let key = format!("{name}\0{platform}");
        if let Some(image) = self.resolved.lock().ok().and_then(|p| p.get(&key).cloned()) {
            return Ok(image);
        }
        let image = self.find(name, platform, emit)?;
        if let Ok(mut p) = self.resolved.lock() {
            p.insert(key, image.clone());
        }
        Ok(image)
    }

    fn find(
        &self,
        name: &str,
        platform: &crate::registry::Platform,
        emit: &dyn Fn(&Event),
    ) -> Result<Image> {
        if self.offline {
            return load_local_on(self.store, name, platform);
        }
        if !self.pull {
            match load_local_on(self.store, name, platform) {
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
        let pulled = crate::registry::pull(self.store, &reference, platform, self.registry)
            .map_err(failed)?;
        emit(&Event::Pulled {
            reference: reference.to_string(),
            digest: pulled.remote_digest.to_string(),
            layers_fetched: pulled.layers_fetched,
        });
        Ok(pulled.image)
    }
}

/// The digest `name` has among the local tags: as written, with `:latest`, and docker's long
/// forms (or the digest it names, if the store has it).
fn local_digest(store: &Store, name: &str) -> Result<Digest> {
    if let Some((_, digest)) = name.split_once('@') {
        if let Ok(d) = digest.parse::<Digest>() {
            if store.has_blob(&d) {
                return Ok(d);
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
            return Ok(d);
        }
    }
    Err(Error::ImageNotFound {
        name: name.to_owned(),
    })
}

/// The local image `name`, for the host's platform when it is an index.
pub(crate) fn load_local(store: &Store, name: &str) -> Result<Image> {
    load_local_on(store, name, &crate::registry::Platform::host())
}

/// The local image `name`; when the tag names an index, its image for `platform`.
pub(crate) fn load_local_on(
    store: &Store,
    name: &str,
    platform: &crate::registry::Platform,
) -> Result<Image> {
    let digest = local_digest(store, name)?;
    match crate::oci::Index::load(store, digest)? {
        None => Ok(Image::load(store, digest)?),
        Some(index) => index
            .find(
                &platform.os,
                &platform.architecture,
                platform.variant.as_deref(),
            )
            .map(|e| e.image.clone())
            .ok_or_else(|| Error::ImageNotFound {
                name: format!("{name} for {platform}"),
            }),
    }
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

/// Adds a layer made of `entries` to the stage, written to the store, file times clamped to
/// `clamp`; with `parent_view` (the stage's tree so far, read-only), its layer directory too,
/// in the same pass.
pub(crate) fn add_layer(
    store: &Store,
    clamp: Option<i64>,
    state: &mut StageState,
    mut entries: Vec<Entry>,
    parent_view: Option<&std::path::Path>,
) -> Result<Digest> {
    rootless_owners(&mut entries);
    let opts = TarOptions {
        source_date_epoch: clamp,
    };
    let layer = match parent_view {
        Some(view) => super::snapshots::write_layer_with_dir(
            store,
            &state.config.rootfs.diff_ids,
            view,
            &mut entries,
            opts,
        )?,
        None => snapshot::write_layer(store, &mut entries, opts)?,
    };
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

/// What [`missing_dirs`] found of each path in one root filesystem: whether it is a
/// directory (its links followed; `None`: not there) and whether it is there at all (not
/// followed). A COPY of a deep tree asks about the same parents thousands of times.
#[derive(Default)]
pub(crate) struct Prefixes(std::collections::HashMap<String, (Option<bool>, bool)>);

impl Prefixes {
    fn look(&mut self, rootfs: &Path, path: &str) -> (Option<bool>, bool) {
        if let Some(found) = self.0.get(path) {
            return *found;
        }
        let is_dir = match crate::fs::entry(rootfs, path, crate::fs::Last::Follow) {
            Ok(Some((_, meta))) => Some(meta.is_dir()),
            _ => None,
        };
        let found = (is_dir, in_image(rootfs, path));
        self.0.insert(path.to_owned(), found);
        found
    }
}

/// Directory entries for `path` and its missing parents in `rootfs`; `seen` remembers what
/// earlier calls on the same `rootfs` looked up.
pub(crate) fn missing_dirs(
    rootfs: &Path,
    path: &str,
    (mode, uid, gid, mtime): (u32, u32, u32, i64),
    seen: &mut Prefixes,
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
        let (is_dir, there) = seen.look(rootfs, &cur);
        if is_dir == Some(false) {
            return Err(Error::NotADirectory {
                path: format!("/{cur}"),
            });
        }
        if !there {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_waiting_for_a_stage_wakes_at_the_cancel() {
        let cancel = Cancel::new();
        let built = Built::new(&cancel);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| built.wait(0, &cancel).map(|_| ()));
            std::thread::sleep(std::time::Duration::from_millis(100));
            assert!(!waiter.is_finished(), "the wait did not wait");
            cancel.cancel();
            assert!(matches!(waiter.join().unwrap(), Err(Error::Cancelled)));
        });
    }
}
