//! Runs the stages of a build as soon as they can start, at most `jobs` at once: a stage
//! starts when its base is built (not when everything started beside it is), and a step that
//! reads another stage waits for that stage alone, so the steps before it run meanwhile. Keys
//! depend only on content, so the image is the same whatever the order.

use std::collections::BTreeMap;

use crate::dockerfile::Source;

use super::env::{Built, StageState};
use super::job::Job;
use super::stage::run_stage;
use super::{Error, Result};

/// The stages `stage` uses (`FROM`, `COPY --from`, `RUN --mount=from=`).
fn uses<'e>(job: &'e Job<'_>, stage: usize) -> impl Iterator<Item = usize> + 'e {
    job.checked.stages[stage]
        .dependencies
        .iter()
        .filter_map(|d| match d.source {
            Source::Stage(j) => Some(j),
            _ => None,
        })
}

/// Whether stage `i` can start: its base (a stage it is built FROM) is built, and every
/// other stage it reads has started, so the steps that read one wait only for it. (Stages
/// read only earlier stages, and each awaited one runs, so no wait can block the pool.)
fn can_start(job: &Job<'_>, i: usize, started: &[usize], built: &Built) -> bool {
    let base_built = match job.checked.stages[i].base.source {
        Source::Stage(j) => built.has(j),
        _ => true,
    };
    base_built && uses(job, i).all(|j| started.contains(&j))
}

/// Builds the stages of `order`. On a failure no new stage starts; those running finish (a
/// step waiting for the failed stage gives up), and the first error is returned.
pub(crate) fn run_stages(
    job: &Job<'_>,
    order: &[usize],
    jobs: usize,
) -> Result<BTreeMap<usize, StageState>> {
    let mut pending: Vec<usize> = order.to_vec();
    let mut started: Vec<usize> = Vec::new();
    let built = Built::new(job.cancel);
    let mut failed: Option<Error> = None;
    std::thread::scope(|scope| {
        let (done, finished) = std::sync::mpsc::channel::<(usize, Result<StageState>)>();
        let mut running = 0;
        loop {
            while failed.is_none() && running < jobs.max(1) {
                let Some(at) = pending
                    .iter()
                    .position(|&i| can_start(job, i, &started, &built))
                else {
                    break;
                };
                let i = pending.remove(at);
                started.push(i);
                let (done, built) = (done.clone(), &built);
                scope.spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_stage(job, i, built)
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
                Ok(state) => built.insert(i, state),
                Err(e) => {
                    failed.get_or_insert(e);
                    built.stop();
                }
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok(built.take_states()),
    }
}
