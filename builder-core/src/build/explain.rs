//! Why a step missed the cache: each step's inputs are remembered by its place in the
//! Dockerfile, and a miss is explained by comparing with what that place had last time — "a
//! file changed", "a build arg changed", "the base image changed", "an earlier step changed".

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::store::Store;

/// What went into a step's cache key, kept to explain the next miss at the same place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StepInputs {
    /// The key of the state the step started from.
    pub(crate) parent: Option<Digest>,
    /// The instruction as written.
    pub(crate) instruction: String,
    /// The variables it uses, with their values.
    pub(crate) vars: Vec<(String, String)>,
    /// What it reads: files of the context by path, or a stage, image or URL, with digests.
    pub(crate) inputs: Vec<(String, Digest)>,
}

/// Where a step stands: Dockerfile, stage and position. The same place in the next build is
/// the "closest earlier entry" a miss is compared with.
pub(crate) fn place(dockerfile: &std::path::Path, stage: usize, position: usize) -> String {
    let mut h = crate::digest::Hasher::default();
    h.update(dockerfile.as_os_str().as_encoded_bytes());
    h.update(format!("\0{stage}\0{position}").as_bytes());
    h.finish().0.hex()
}

pub(crate) fn previous(store: &Store, place: &str) -> Option<StepInputs> {
    let json = store.meta("explain", place).ok()??;
    serde_json::from_str(&json).ok()
}

pub(crate) fn remember(store: &Store, place: &str, inputs: &StepInputs) {
    // Explanations are advice: failing to keep one must not fail the build.
    if let Ok(json) = serde_json::to_string(inputs) {
        let _ = store.set_meta("explain", place, &json);
    }
}

fn list(items: &[String], detail: bool) -> String {
    let shown = if detail { usize::MAX } else { 3 };
    let mut s = items
        .iter()
        .take(shown)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if items.len() > shown {
        let _ = write!(s, " and {} more", items.len() - shown);
    }
    s
}

/// Why `now` missed, compared with `before` (the same place, last time). With `detail`
/// (`--explain-cache`), every changed input is named, with its old and new digests.
pub(crate) fn explain(
    before: Option<&StepInputs>,
    now: &StepInputs,
    parent_missed: bool,
    detail: bool,
) -> String {
    let Some(before) = before else {
        return "no earlier build of this step".into();
    };
    if before.instruction != now.instruction {
        return format!("the instruction changed (was `{}`)", before.instruction);
    }
    let mut reasons = Vec::new();
    for (k, v) in &now.vars {
        match before.vars.iter().find(|(bk, _)| bk == k) {
            Some((_, old)) if old != v => reasons.push(format!("{k} {old} → {v}")),
            None => reasons.push(format!("{k} set to {v}")),
            _ => {}
        }
    }
    for (k, _) in &before.vars {
        if !now.vars.iter().any(|(nk, _)| nk == k) {
            reasons.push(format!("{k} unset"));
        }
    }
    let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    for (name, d) in &now.inputs {
        match before.inputs.iter().find(|(n, _)| n == name) {
            Some((_, old)) if old != d && detail => {
                changed.push(format!("{name} ({} → {})", short(old), short(d)));
            }
            Some((_, old)) if old != d => changed.push(name.clone()),
            None => added.push(name.clone()),
            _ => {}
        }
    }
    for (name, _) in &before.inputs {
        if !now.inputs.iter().any(|(n, _)| n == name) {
            removed.push(name.clone());
        }
    }
    if !changed.is_empty() {
        reasons.push(format!("{} changed", list(&changed, detail)));
    }
    if !added.is_empty() {
        reasons.push(format!("{} added", list(&added, detail)));
    }
    if !removed.is_empty() {
        reasons.push(format!("{} removed", list(&removed, detail)));
    }
    if !reasons.is_empty() {
        return reasons.join("; ");
    }
    if before.parent != now.parent {
        if detail {
            let key = |p: &Option<Digest>| p.as_ref().map_or_else(|| "none".to_owned(), short);
            return format!(
                "{} (parent state {} → {})",
                if parent_missed {
                    "an earlier step changed"
                } else {
                    "the step it builds on is different"
                },
                key(&before.parent),
                key(&now.parent)
            );
        }
        return if parent_missed {
            "an earlier step changed".into()
        } else {
            "the step it builds on is different".into()
        };
    }
    "its cache record is gone (pruned, or --no-cache)".into()
}

/// The first 12 hex digits of a digest, as docker shows image IDs.
fn short(d: &Digest) -> String {
    d.hex()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(vars: &[(&str, &str)], files: &[(&str, &[u8])]) -> StepInputs {
        StepInputs {
            parent: Some(Digest::of(b"p")),
            instruction: "COPY app/ /app/".into(),
            vars: vars
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            inputs: files
                .iter()
                .map(|(n, b)| ((*n).into(), Digest::of(b)))
                .collect(),
        }
    }

    #[test]
    fn names_what_differs() {
        let before = inputs(
            &[("VERSION", "1.2")],
            &[("app/main.go", b"a"), ("app/old.go", b"o")],
        );
        let now = inputs(
            &[("VERSION", "1.3")],
            &[("app/main.go", b"b"), ("app/new.go", b"n")],
        );
        assert_eq!(
            explain(Some(&before), &now, false, false),
            "VERSION 1.2 → 1.3; app/main.go changed; app/new.go added; app/old.go removed"
        );
        assert_eq!(
            explain(None, &now, false, false),
            "no earlier build of this step"
        );
        let mut moved = now.clone();
        moved.parent = Some(Digest::of(b"q"));
        assert_eq!(
            explain(Some(&now), &moved, true, false),
            "an earlier step changed"
        );
        let many: Vec<(String, Digest)> = (0..5)
            .map(|i| (format!("f{i}"), Digest::of(b"x")))
            .collect();
        let after: Vec<(String, Digest)> = (0..5)
            .map(|i| (format!("f{i}"), Digest::of(b"y")))
            .collect();
        let b = StepInputs {
            inputs: many,
            ..now.clone()
        };
        let a = StepInputs {
            inputs: after,
            ..now
        };
        assert_eq!(
            explain(Some(&b), &a, false, false),
            "f0, f1, f2 and 2 more changed"
        );
    }
}
