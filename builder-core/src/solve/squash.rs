//! `--squash`: the layers a build adds on top of its target's base become one layer (as
//! `buildah bud --squash` and docker's experimental `--squash` do for the final stage). The
//! squashed layer is the difference between the base's root filesystem and the result's; the
//! history keeps every step, the squashed ones marked empty, and one entry for the new layer.

use crate::oci::History;
use crate::snapshot::{self, TarOptions};
use crate::store::Store;

use super::Result;
use super::env::{StageState, rootless_owners};
use super::snapshots::snapshot_for;

pub(crate) fn squash(
    store: &Store,
    state: &mut StageState,
    source_date_epoch: Option<i64>,
) -> Result<()> {
    let diff_ids = state.config.rootfs.diff_ids.clone();
    let base = state.base_layers.min(diff_ids.len());
    if diff_ids.len() <= base + 1 {
        return Ok(());
    }
    let below = snapshot_for(store, &diff_ids[..base])?;
    let top = snapshot_for(store, &diff_ids)?;
    let mut entries =
        snapshot::tree_diff(&below, &top, &[]).map_err(|source| super::Error::Io {
            path: top.clone(),
            source,
        })?;
    rootless_owners(&mut entries);
    let layer = snapshot::write_layer(store, &mut entries, TarOptions { source_date_epoch })?;
    state.config.rootfs.diff_ids.truncate(base);
    state.config.rootfs.diff_ids.push(layer.diff_id);
    for h in state.config.history.iter_mut().skip(state.base_history) {
        h.empty_layer = Some(true);
    }
    state.config.history.push(History {
        created_by: Some("rbuild --squash: the build's layers as one".into()),
        comment: Some("squashed".into()),
        created: state.config.created.clone(),
        ..History::default()
    });
    Ok(())
}
