//! The cache key of a step, with one owner: [`StepInputs`] is every input of the key, and
//! the miss explanation (`solve/explain.rs`) compares that same value with what the step's
//! place had last time, so nothing is hashed that cannot be explained.
//!
//! What goes into the key, input by input ([`StepInputs::key`]):
//!
//! | input | what | for |
//! |---|---|---|
//! | version | [`KEY_VERSION`]; bumped whenever what goes in, or what a step records (its config), changes, so a key of an older rbuild is never reused for a different meaning | every step |
//! | parent | the key of the state the step starts from (for FROM: the base image's digest, the platform and the build's times, i.e. the epoch and whether layers are clamped to it; else the previous step's key), which carries every earlier ENV, ARG, USER, WORKDIR, SHELL and so on | every step |
//! | instruction | the instruction as written, which the image's history records (`created_by`): a step whose text changed gives another image even where it does the same | every step |
//! | op | the step's plan op (the digest of [`CacheKey::form`] of its [`Kind`], as the plan gives it): what it does with every value expanded — RUN's args, environment, user, working directory, network and mounts; COPY's sources, destination and flags; a config edit's values. No line, span or instruction text is in it, so a comment or blank line above a step changes nothing | every step |
//! | vars | RUN: its whole environment, every ARG and ENV in scope with its value (BuildKit's rule: a changed build arg reruns every RUN after it); other steps: the variables their instruction names (already in the op; kept to name them in an explanation) | every step |
//! | inputs | what the step reads, by name and digest: context files of COPY/ADD, a stage or image for `--from`, a URL's content, RUN's bind mount sources | COPY, ADD, RUN |
//! | sources | COPY/ADD: one digest of everything copied (names, contents, modes, links) | COPY, ADD |
//! | settings | build settings the step can observe beyond its op: RUN's network as run (`private`, `host`, `none`: the op's `default` resolved) and `--userns` | RUN |
//!
//! Never in it: a span or line number, `Debug` text, timings, the store's paths.

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

use super::Kind;

/// A value's canonical, position-free form for a cache key: the same meaning always gives the
/// same text, and any change of meaning another.
pub trait CacheKey {
    /// The form hashed into the key.
    fn form(&self) -> String;
}

impl CacheKey for Kind {
    /// Its JSON: the typed op with every value expanded (an op holds no line or span). An ARG
    /// gives only its names: a changed build arg misses only the steps that use it (BuildKit's
    /// rule), which name it or, for RUN, hold the whole environment.
    fn form(&self) -> String {
        match self {
            Self::Config(super::Config::Arg(pairs)) => {
                let names: Vec<&str> = pairs.iter().map(|(k, _)| k.as_str()).collect();
                format!("ARG {}", names.join(" "))
            }
            other => serde_json::to_string(other).unwrap_or_default(),
        }
    }
}

/// The key's version: part of every step key.
pub const KEY_VERSION: &[u8] = b"rbuild-step-v7\0";

/// What went into a step's cache key, kept to explain the next miss at the same place.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputs {
    /// The key of the state the step started from.
    pub parent: Option<Digest>,
    /// The instruction as written: hashed, as the image's history records it.
    pub instruction: String,
    /// The op's digest ([`Op::digest`](super::Op::digest), of its [`CacheKey::form`]).
    #[serde(default)]
    pub command: String,
    /// The variables it sees, with their values.
    pub vars: Vec<(String, String)>,
    /// What it reads: files of the context by path, or a stage, image or URL, with digests.
    pub inputs: Vec<(String, Digest)>,
    /// COPY/ADD: the digest of everything copied (names, contents, modes, links).
    #[serde(default)]
    pub sources: Option<Digest>,
    /// Build settings it can observe (RUN's network, `--userns`), by name.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
}

impl StepInputs {
    /// The step's cache key: every input in the module's table, each length-delimited.
    pub fn key(&self) -> Digest {
        let mut h = crate::digest::Hasher::default();
        let mut field = |bytes: &[u8]| {
            h.update(&(bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(KEY_VERSION);
        field(self.parent.as_ref().map_or(&b""[..], |p| &p.as_bytes()[..]));
        field(self.instruction.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forms(src: &str, build_args: &[(&str, &str)]) -> Vec<String> {
        let checked =
            crate::dockerfile::parse_and_check(src, &crate::dockerfile::CheckOptions::default())
                .unwrap();
        let opts = super::super::Options {
            build_args: build_args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..super::super::Options::default()
        };
        let graph = super::super::lower(&checked, &opts, &super::super::Table::default()).unwrap();
        graph.ops.iter().map(|o| o.kind.form()).collect()
    }

    #[test]
    fn an_ops_form_has_no_position_and_an_args_no_value() {
        let body = "ARG V=1\nRUN <<EOF\necho hi $V\nEOF\nCOPY a /a\n";
        let a = forms(&format!("FROM scratch\n{body}"), &[]);
        let b = forms(&format!("# c\n\nFROM scratch\n\n# c\n{body}"), &[]);
        assert_eq!(a, b, "comments and blank lines move no form");
        assert!(!a.concat().contains("line"), "{a:?}");
        assert!(a[2].contains("echo hi $V"), "{a:?}");
        // A build arg changes the ARG's value, not its form; the RUN holds it in its env.
        let c = forms(&format!("FROM scratch\n{body}"), &[("V", "2")]);
        assert_eq!(a[1], c[1]);
        assert_ne!(a[2], c[2]);
    }

    #[test]
    fn each_ops_printed_digest_is_the_digest_of_its_form() {
        let checked = crate::dockerfile::parse_and_check(
            "FROM scratch\nENV A=1\nCOPY a /a\n",
            &crate::dockerfile::CheckOptions::default(),
        )
        .unwrap();
        let graph = super::super::lower(
            &checked,
            &super::super::Options::default(),
            &super::super::Table::default(),
        )
        .unwrap();
        for op in &graph.ops {
            assert_eq!(op.digest, Digest::of(op.kind.form().as_bytes()).to_string());
        }
    }
}
