//! Planning: which stages a build needs, in what order, and the op graph of the build
//! ([`lower()`]). Pure: it describes work and does none; image metadata comes through an injected
//! [`Resolve`]r.
//!
//! Imports: `dockerfile`, `digest` (see `tests/architecture.rs`).

mod graph;
mod key;
mod lower;
mod resolve;

use std::collections::BTreeSet;

pub use graph::{
    Config, Exec, File, FileSource, From, Graph, Health, Kind, Mount, Network, Op, OpId, Script,
    Source as OpSource,
};
pub use key::{CacheKey, KEY_VERSION, StepInputs};
pub use lower::{DEFAULT_PATH, Options, PROXY_ARGS, absolute, environment, lower, trigger};
pub use resolve::{ByPlatform, ImageMeta, Resolve, Table};

use crate::dockerfile::{Checked, Source};

/// What a build will do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The stage whose image is the result.
    pub target: usize,
    /// The stages to build, each after those it reads from.
    pub order: Vec<usize>,
    /// Stages the target does not need.
    pub skipped: Vec<usize>,
}

/// Planning errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// An instruction could not be lowered.
    #[error("line {line}: `{instruction}`")]
    Step {
        /// The Dockerfile line (an ONBUILD trigger: its FROM's).
        line: usize,
        /// The instruction's keyword (`ONBUILD` for a trigger).
        keyword: String,
        /// The instruction as written.
        instruction: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
    /// A variable in a value cannot be expanded.
    #[error("cannot expand `{word}`")]
    Expand {
        /// The value as written.
        word: String,
        /// Why.
        #[source]
        source: crate::dockerfile::ExpandError,
    },
    /// The resolver has no answer for an image.
    #[error("cannot resolve image `{name}`: {reason}")]
    Resolve {
        /// The name as written, expanded.
        name: String,
        /// The resolver's reason.
        reason: String,
    },
    /// A flag or value that is not valid once expanded (`--network`, a `--mount` number,
    /// EXPOSE, STOPSIGNAL).
    #[error("invalid {flag} `{value}`: {reason}")]
    Invalid {
        /// The flag or instruction.
        flag: &'static str,
        /// The value, expanded.
        value: String,
        /// Why.
        reason: String,
    },
    /// An ONBUILD trigger of a base image does not parse.
    #[error("invalid ONBUILD trigger `{text}`")]
    Trigger {
        /// The trigger as stored.
        text: String,
        /// What is wrong.
        #[source]
        source: Box<crate::dockerfile::ParseError>,
    },
    /// Something BuildKit refuses too (`FROM` as an ONBUILD trigger).
    #[error("{what} is not supported")]
    Unsupported {
        /// What.
        what: String,
    },
    /// A stage read before it was lowered (a bug).
    #[error("stage {stage} was lowered out of order")]
    Order {
        /// The stage.
        stage: usize,
    },
    /// `--target` names no stage.
    #[error("target stage `{name}` not found; stages: {available}")]
    UnknownTarget {
        /// The name given.
        name: String,
        /// The stage names there are.
        available: String,
    },
}

/// The index of the stage `name` (a name or an index), or an error listing the stages there are
/// (`--target`, `--no-cache-filter`).
pub fn stage_index(checked: &Checked, name: &str) -> Result<usize, Error> {
    checked
        .stage(name)
        .map(|s| s.index)
        .ok_or_else(|| Error::UnknownTarget {
            name: name.to_owned(),
            available: checked
                .stages
                .iter()
                .map(|s| s.name.clone().unwrap_or_else(|| s.index.to_string()))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Plans the build of `target` (the last stage when `None`).
pub fn plan(checked: &Checked, target: Option<&str>) -> Result<Plan, Error> {
    let target = match target {
        None => checked.stages.len().saturating_sub(1),
        Some(name) => stage_index(checked, name)?,
    };
    let mut needed = BTreeSet::new();
    let mut pending = vec![target];
    while let Some(i) = pending.pop() {
        if !needed.insert(i) {
            continue;
        }
        for d in &checked.stages[i].dependencies {
            if let Source::Stage(j) = d.source {
                pending.push(j);
            }
        }
    }
    // Stages only read earlier stages, so file order is a valid build order.
    let order: Vec<usize> = needed.iter().copied().collect();
    let skipped = (0..checked.stages.len())
        .filter(|i| !needed.contains(i))
        .collect();
    Ok(Plan {
        target,
        order,
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dockerfile::{CheckOptions, parse_and_check};

    #[test]
    fn unneeded_stages_are_skipped() {
        let src = "FROM scratch AS a\nFROM scratch AS b\nCOPY --from=a / /\nFROM scratch AS unused\nFROM b AS final\n";
        let c = parse_and_check(src, &CheckOptions::default()).unwrap();
        let p = plan(&c, None).unwrap();
        assert_eq!(
            (p.target, p.order.clone(), p.skipped.clone()),
            (3, vec![0, 1, 3], vec![2])
        );
        let p = plan(&c, Some("A")).unwrap();
        assert_eq!(p.order, [0]);
        assert!(matches!(
            plan(&c, Some("nope")),
            Err(Error::UnknownTarget { .. })
        ));
    }
}
