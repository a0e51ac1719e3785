//! What a build reports as it goes.

/// Something a build reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// Something in the Dockerfile BuildKit accepts but warns about.
    Warning {
        /// What.
        message: String,
        /// The Dockerfile line.
        line: usize,
    },
    /// A stage the target does not need.
    StageSkipped {
        /// Its index.
        stage: usize,
        /// Its name.
        name: Option<String>,
    },
    /// A step starts.
    Step {
        /// 1-based step number.
        number: usize,
        /// How many steps the build has.
        total: usize,
        /// The stage's name or index.
        stage: String,
        /// The instruction, as written.
        instruction: String,
        /// Its Dockerfile line.
        line: usize,
    },
    /// A step missed the cache, and why.
    Miss {
        /// 1-based step number.
        number: usize,
        /// The instruction as written.
        instruction: String,
        /// Its Dockerfile line.
        line: usize,
        /// What differed from the last build of this step.
        reason: String,
        /// Whether this step was never built before (nothing to compare with).
        first: bool,
    },
    /// A line of a RUN's output.
    Log {
        /// 1-based step number.
        number: usize,
        /// The line, without its newline.
        line: String,
    },
    /// A shared cache was read.
    CacheImported {
        /// Where from.
        source: String,
        /// How many step records it held.
        records: usize,
    },
    /// The step cache was exported.
    CacheExported {
        /// Where to.
        target: String,
        /// How many step records were written.
        records: usize,
    },
    /// A base image was pulled from a registry.
    Pulled {
        /// The full reference.
        reference: String,
        /// The manifest digest in the registry.
        digest: String,
        /// Layers downloaded (the others were in the store).
        layers_fetched: usize,
    },
    /// A step finished.
    StepDone {
        /// 1-based step number.
        number: usize,
        /// How long it took.
        millis: u128,
        /// Whether the step cache had its result (nothing ran).
        cached: bool,
    },
}
