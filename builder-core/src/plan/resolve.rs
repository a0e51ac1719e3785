//! What lowering needs of an image, and who answers: the solver's resolver reads the store and
//! the registry; tests give a table.

use crate::digest::Digest;

/// The metadata of a base image that lowering reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageMeta {
    /// The manifest digest.
    pub digest: Digest,
    /// `Env`, as `KEY=value`.
    pub env: Vec<String>,
    /// `WorkingDir`.
    pub working_dir: Option<String>,
    /// `User`.
    pub user: Option<String>,
    /// `Shell`.
    pub shell: Option<Vec<String>>,
    /// `OnBuild` triggers, as written.
    pub on_build: Vec<String>,
}

/// Answers for images by name, as `FROM` and `--from` write them.
pub trait Resolve {
    /// The image `name`, or why it cannot be had.
    ///
    /// # Errors
    /// A message saying why (not found, the registry failed).
    fn resolve(&self, name: &str) -> Result<ImageMeta, String>;

    /// The image `name` for `platform` (`OS/ARCH[/VARIANT]`, a stage's `FROM --platform`); by
    /// default the same as [`Self::resolve`].
    ///
    /// # Errors
    /// As [`Self::resolve`].
    fn resolve_for(&self, name: &str, platform: &str) -> Result<ImageMeta, String> {
        let _ = platform;
        self.resolve(name)
    }
}

/// A resolver from a table, for tests and tools: every name it holds, else `not found`.
#[derive(Debug, Clone, Default)]
pub struct Table(pub std::collections::BTreeMap<String, ImageMeta>);

impl Resolve for Table {
    fn resolve(&self, name: &str) -> Result<ImageMeta, String> {
        self.0
            .get(name)
            .cloned()
            .ok_or_else(|| format!("image `{name}` not found"))
    }
}

impl<F: Fn(&str) -> Result<ImageMeta, String>> Resolve for F {
    fn resolve(&self, name: &str) -> Result<ImageMeta, String> {
        self(name)
    }
}

/// A resolver from a function of the name and the platform (`None`: the build's).
#[derive(Debug, Clone)]
pub struct ByPlatform<F>(pub F);

impl<F: Fn(&str, Option<&str>) -> Result<ImageMeta, String>> Resolve for ByPlatform<F> {
    fn resolve(&self, name: &str) -> Result<ImageMeta, String> {
        (self.0)(name, None)
    }

    fn resolve_for(&self, name: &str, platform: &str) -> Result<ImageMeta, String> {
        (self.0)(name, Some(platform))
    }
}
