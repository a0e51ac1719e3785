//! Runs the stages of a build as soon as the stages they use are built, at most `jobs` at once:
//! a stage that needs only A starts when A is done, not when everything started beside A is.
//! Keys depend only on content, so the image is the same whatever the order.

use std::collections::BTreeMap;

use crate::dockerfile::Source;

use super::env::{BuildEnv, StageState};
use super::stage::run_stage;
use super::{Error, Result};

/// The stages `stage` uses (`FROM`, `COPY --from`, `RUN --mount=from=`).
fn uses<'e>(env: &'e BuildEnv<'_>, stage: usize) -> impl Iterator<Item = usize> + 'e {
    env.checked.stages[stage]
        .dependencies
        .iter()
        .filter_map(|d| match d.source {
            Source::Stage(j) => Some(j),
            _ => None,
        })
}

/// Builds the stages of `order`. On a failure no new stage starts; those running finish, and the
/// first error is returned.
pub(crate) fn run_stages(
    env: &BuildEnv<'_>,
    order: &[usize],
    jobs: usize,
) -> Result<BTreeMap<usize, StageState>> {
    let mut pending: Vec<usize> = order.to_vec();
    let mut states: BTreeMap<usize, StageState> = BTreeMap::new();
    let mut failed: Option<Error> = None;
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel::<(usize, Result<StageState>)>();
        let mut running = 0;
        loop {
            while failed.is_none() && running < jobs.max(1) {
                let Some(at) = pending
                    .iter()
                    .position(|&i| uses(env, i).all(|j| states.contains_key(&j)))
                else {
                    break;
                };
                let i = pending.remove(at);
                // What it may read of the stages built so far (configs and snapshot paths).
                let built: BTreeMap<usize, StageState> =
                    states.iter().map(|(&j, s)| (j, s.clone())).collect();
                let mut stage_env = env.for_stage();
                let done = done.clone();
                scope.spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_stage(&mut stage_env, i, &built)
                    }))
                    .unwrap_or_else(|_| Err(Error::Internal(format!("stage {i} panicked"))));
                    let _ = done.send((i, result));
                });
                running += 1;
            }
            if running == 0 {
                if failed.is_none() && !pending.is_empty() {
                    failed = Some(Error::Internal(
                        "no stage can run: a dependency cycle".into(),
                    ));
                }
                break;
            }
            let Ok((i, result)) = finished.recv() else {
                failed.get_or_insert(Error::Internal("a stage stopped without a result".into()));
                break;
            };
            running -= 1;
            match result {
                Ok(state) => {
                    states.insert(i, state);
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(states),
    }
}
