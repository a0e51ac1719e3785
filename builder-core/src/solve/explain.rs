//! A step's cache key and why a step missed the cache. The key is made from one value,
//! [`StepInputs`], and a miss is explained by comparing that same value with what the step's
//! place in the Dockerfile had last time — "a file changed", "a build arg changed", "the base
//! image changed", "an earlier step changed" — so nothing can be hashed that cannot be
//! explained.
//!
//! What goes into the key, input by input ([`StepInputs::key`]):
//!
//! | input | what | for |
//! |---|---|---|
//! | version | [`KEY_VERSION`]; bumped whenever what goes in, or what a step records (its config), changes, so a key of an older rbuild is never reused for a different meaning | every step |
//! | parent | the key of the state the step starts from (for FROM: the base image's digest, the platform and the build's times, i.e. the epoch and whether layers are clamped to it; else the previous step's key), which carries every earlier ENV, ARG, USER, WORKDIR, SHELL and so on | every step |
//! | command | the instruction as parsed ([`command_form`]: its typed form as JSON, without any source position, so a comment or blank line above it changes nothing) | every step |
//! | vars | RUN: its whole environment, every ARG and ENV in scope with its value (BuildKit's rule: a changed build arg reruns every RUN after it); other steps: the variables their text names | every step |
//! | inputs | what the step reads, by name and digest: context files of COPY/ADD, a stage or image for `--from`, a URL's content, RUN's bind mount sources | COPY, ADD, RUN |
//! | sources | COPY/ADD: one digest of everything copied (names, contents, modes, links) | COPY, ADD |
//! | settings | build settings the step can observe: RUN's network after expansion (`private`, `host`, `none`) and `--userns` | RUN |
//!
//! Never in it: a span or line number, `Debug` text, timings, the store's paths.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::store::Store;

/// The key's version: part of every step key.
pub(crate) const KEY_VERSION: &[u8] = b"rbuild-step-v5\0";

/// What went into a step's cache key, kept to explain the next miss at the same place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StepInputs {
    /// The key of the state the step started from.
    pub(crate) parent: Option<Digest>,
    /// The instruction as written (shown in explanations; not hashed).
    pub(crate) instruction: String,
    /// The instruction as parsed, without source positions ([`command_form`]).
    #[serde(default)]
    pub(crate) command: String,
    /// The variables it sees, with their values.
    pub(crate) vars: Vec<(String, String)>,
    /// What it reads: files of the context by path, or a stage, image or URL, with digests.
    pub(crate) inputs: Vec<(String, Digest)>,
    /// COPY/ADD: the digest of everything copied (names, contents, modes, links).
    #[serde(default)]
    pub(crate) sources: Option<Digest>,
    /// Build settings it can observe (RUN's network, `--userns`), by name.
    #[serde(default)]
    pub(crate) settings: Vec<(String, String)>,
}

impl StepInputs {
    /// The step's cache key: every input in the module's table, each length-delimited.
    pub(crate) fn key(&self) -> Digest {
        let mut h = crate::digest::Hasher::default();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(KEY_VERSION);
        field(self.parent.as_ref().map_or(&b""[..], |p| &p.as_bytes()[..]));
        field(self.command.as_bytes());
        for list in [&self.vars, &self.settings] {
            field(&(list.len() as u64).to_le_bytes());
            for (k, v) in list {
                field(k.as_bytes());
                field(v.as_bytes());
            }
        }
        field(&(self.inputs.len() as u64).to_le_bytes());
        for (name, d) in &self.inputs {
            field(name.as_bytes());
            field(d.as_bytes());
        }
        field(
            self.sources
                .as_ref()
                .map_or(&b""[..], |d| &d.as_bytes()[..]),
        );
        h.finish().0
    }
}

/// An instruction's typed form as the key sees it: its JSON serialization with every source
/// position (`span`, `…_span`) removed. Only what the parser understood is in it, so the same
/// instruction written anywhere in any Dockerfile has the same form.
pub(crate) fn command_form(command: &crate::dockerfile::Command) -> String {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.retain(|k, _| k != "span" && !k.ends_with("_span"));
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(command).unwrap_or(serde_json::Value::Null);
    strip(&mut v);
    v.to_string()
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

pub(crate) fn remember(
    store: &Store,
    dockerfile: &std::path::Path,
    place: &str,
    inputs: &StepInputs,
) {
    // A Dockerfile in the store's work directories (the service's contexts) is never at the
    // same place again: nothing would read the record.
    if dockerfile.starts_with(store.root()) {
        return;
    }
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
    for (k, v) in &now.settings {
        match before.settings.iter().find(|(bk, _)| bk == k) {
            Some((_, old)) if old != v => reasons.push(format!("{k} {old} → {v}")),
            None => reasons.push(format!("{k} now {v}")),
            _ => {}
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
    if reasons.is_empty() && before.sources != now.sources {
        reasons.push("a source's name, mode or link changed".into());
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
            ..StepInputs::default()
        }
    }

    #[test]
    fn every_input_moves_the_key_and_the_written_text_does_not() {
        let base = inputs(&[("V", "1")], &[("a", b"a")]);
        let mut same = base.clone();
        same.instruction = "COPY   app/  /app/".into();
        assert_eq!(base.key(), same.key(), "the text as written is not hashed");
        let changes: [fn(&mut StepInputs); 7] = [
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
    fn the_command_form_has_no_source_position() {
        let form = |text: &str| {
            let parsed = crate::dockerfile::parse(text).unwrap();
            parsed
                .instructions
                .iter()
                .map(|n| command_form(&crate::dockerfile::parse_instruction(n).unwrap().command))
                .collect::<Vec<_>>()
        };
        let body = "RUN <<EOF\necho hi\nEOF\nONBUILD RUN <<X\nls\nX\n";
        let a = form(&format!("FROM busybox\n{body}"));
        let b = form(&format!("# c\n\nFROM busybox\n\n# c\n{body}"));
        assert_eq!(a, b);
        assert!(!a.concat().contains("span"), "{a:?}");
        assert!(a[1].contains("echo hi"), "{a:?}");
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
