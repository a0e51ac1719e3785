//! Why a step missed the cache: the [`StepInputs`] the key was made of (`plan/key.rs`, with
//! the table of every input) compared with what the step's place in the Dockerfile had last
//! time — "a file changed", "a build arg changed", "the base image changed", "an earlier step
//! changed".

use std::fmt::Write as _;

use crate::digest::Digest;
pub(crate) use crate::plan::StepInputs;
use crate::store::Store;

/// Where a step stands: Dockerfile, stage and position. The same place in the next build is
/// the "closest earlier entry" a miss is compared with.
pub(crate) fn place(dockerfile: &std::path::Path, stage: usize, position: usize) -> String {
    let mut h = crate::digest::Hasher::default();
    h.update(dockerfile.as_os_str().as_encoded_bytes());
    h.update(format!("\0{stage}\0{position}").as_bytes());
    h.finish().0.hex()
}

/// A record is the key of its inputs on one line, then the inputs as JSON: a hit compares the
/// key and parses nothing (the inputs of a large COPY are megabytes of JSON). A record from
/// before the key line is JSON alone.
fn split_record(record: &str) -> (Option<&str>, &str) {
    match record.split_once('\n') {
        Some((key, json)) if !record.starts_with('{') => (Some(key), json),
        _ => (None, record),
    }
}

pub(crate) fn previous(store: &Store, place: &str) -> Option<StepInputs> {
    let record = store.meta("explain", place).ok()??;
    serde_json::from_str(split_record(&record).1).ok()
}

/// Whether the record at `place` is of `inputs` already (`key` is `inputs.key()`).
pub(crate) fn is_remembered(store: &Store, place: &str, inputs: &StepInputs, key: &Digest) -> bool {
    let Ok(Some(record)) = store.meta("explain", place) else {
        return false;
    };
    match split_record(&record) {
        (Some(recorded), _) => recorded == key.to_string(),
        (None, json) => serde_json::from_str::<StepInputs>(json).is_ok_and(|old| old == *inputs),
    }
}

/// Keeps `inputs` (whose key is `key`) as what the next miss at `place` is explained against.
pub(crate) fn remember(
    store: &Store,
    dockerfile: &std::path::Path,
    place: &str,
    inputs: &StepInputs,
    key: &Digest,
) {
    // A Dockerfile in the store's work directories (the service's contexts) is never at the
    // same place again: nothing would read the record.
    if dockerfile.starts_with(store.root()) {
        return;
    }
    // Explanations are advice: failing to keep one must not fail the build.
    if let Ok(json) = serde_json::to_string(inputs) {
        let _ = store.set_meta("explain", place, &format!("{key}\n{json}"));
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
    for (k, v) in &now.settings {
        match before.settings.iter().find(|(bk, _)| bk == k) {
            Some((_, old)) if old != v => reasons.push(format!("{k} {old} → {v}")),
            None => reasons.push(format!("{k} now {v}")),
            _ => {}
        }
    }
    let (mut changed, mut added, mut removed) = (Vec::new(), Vec::new(), Vec::new());
    // By name: a COPY of a node_modules tree has tens of thousands of inputs.
    let old_inputs: std::collections::HashMap<&str, &Digest> =
        before.inputs.iter().map(|(n, d)| (n.as_str(), d)).collect();
    let new_names: std::collections::HashSet<&str> =
        now.inputs.iter().map(|(n, _)| n.as_str()).collect();
    for (name, d) in &now.inputs {
        match old_inputs.get(name.as_str()).copied() {
            Some(old) if old != d && detail => {
                changed.push(format!("{name} ({} → {})", short(old), short(d)));
            }
            Some(old) if old != d => changed.push(name.clone()),
            None => added.push(name.clone()),
            _ => {}
        }
    }
    for (name, _) in &before.inputs {
        if !new_names.contains(name.as_str()) {
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
    if reasons.is_empty() && before.sources != now.sources {
        reasons.push("a source's name, mode or link changed".into());
    }
    if !reasons.is_empty() {
        return reasons.join("; ");
    }
    if before.command != now.command {
        return "what the step does changed (its values after expansion)".into();
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
            ..StepInputs::default()
        }
    }

    #[test]
    fn every_input_moves_the_key() {
        let base = inputs(&[("V", "1")], &[("a", b"a")]);
        let changes: [fn(&mut StepInputs); 8] = [
            // The history records the text as written: another text is another image.
            |s| s.instruction = "COPY   app/  /app/".into(),
            |s| s.parent = Some(Digest::of(b"q")),
            |s| s.command = "{}".into(),
            |s| s.vars[0].1 = "2".into(),
            |s| s.inputs[0].1 = Digest::of(b"b"),
            |s| s.sources = Some(Digest::of(b"s")),
            |s| s.settings = vec![("network".into(), "none".into())],
            // Fields are delimited: moving a byte from a name to its value is a change.
            |s| s.vars = vec![("V1".into(), String::new())],
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut s = base.clone();
            change(&mut s);
            assert_ne!(base.key(), s.key(), "change {i} kept the key");
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
