//! The config op: a [`plan::Config`](crate::plan::Config) edit, lowered and checked by `plan`, applied to a stage's
//! image config. WORKDIR's directories are made by the stage (they are a layer).

use std::collections::BTreeMap;

use crate::oci::{Empty, HealthConfig};
use crate::plan::Config;

use super::env::StageState;

/// Applies `edit` to the stage's config (and ENV and ARG to its variables).
pub(crate) fn apply(state: &mut StageState, edit: &Config) {
    match edit {
        Config::Env(pairs) => {
            for (k, v) in pairs {
                state.set_env(k, v);
            }
        }
        Config::Arg(pairs) => state.vars.extend(pairs.iter().cloned()),
        Config::Maintainer(name) => state.config.author = Some(name.clone()),
        Config::Cmd(args) => {
            state.config.config.cmd = Some(args.clone());
            state.cmd_set = true;
        }
        Config::Entrypoint(args) => {
            state.config.config.entrypoint = Some(args.clone());
            // An ENTRYPOINT resets a CMD the stage did not set itself.
            if !state.cmd_set {
                state.config.config.cmd = None;
            }
        }
        other => runtime(&mut state.config.config, other),
    }
}

/// The edits of the runtime config alone.
#[allow(clippy::zero_sized_map_values)] // ExposedPorts and Volumes are maps to `{}`
fn runtime(c: &mut crate::oci::RunConfig, edit: &Config) {
    match edit {
        Config::Label(pairs) => {
            let labels = c.labels.get_or_insert_with(BTreeMap::new);
            for (k, v) in pairs {
                labels.insert(k.clone(), v.clone());
            }
        }
        Config::Workdir(dir) => c.working_dir = Some(dir.clone()),
        Config::User(user) => c.user = Some(user.clone()),
        Config::Expose(ports) => {
            let exposed = c.exposed_ports.get_or_insert_with(BTreeMap::new);
            for p in ports {
                exposed.insert(p.clone(), Empty {});
            }
        }
        Config::Volume(paths) => {
            let volumes = c.volumes.get_or_insert_with(BTreeMap::new);
            for p in paths {
                volumes.insert(p.clone(), Empty {});
            }
        }
        Config::Stopsignal(signal) => c.stop_signal = Some(signal.clone()),
        Config::Shell(shell) => c.shell = Some(shell.clone()),
        Config::Healthcheck(h) => {
            c.healthcheck = Some(HealthConfig {
                test: h.test.clone(),
                interval: h.interval,
                timeout: h.timeout,
                start_period: h.start_period,
                start_interval: h.start_interval,
                retries: h.retries,
            });
        }
        Config::Onbuild(trigger) => c
            .on_build
            .get_or_insert_with(Vec::new)
            .push(trigger.clone()),
        Config::Env(_)
        | Config::Arg(_)
        | Config::Maintainer(_)
        | Config::Cmd(_)
        | Config::Entrypoint(_) => {}
    }
}

/// What a cache hit replays: the variables ENV and ARG set (the config comes from the record).
pub(crate) fn replay_vars(state: &mut StageState, edit: &Config) {
    if let Config::Env(pairs) | Config::Arg(pairs) = edit {
        state.vars.extend(pairs.iter().cloned());
    }
}
