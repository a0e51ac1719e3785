//! The times a build gives files and its image.
/// The time a build gives its image, its copied files and the files its RUNs make when
/// `SOURCE_DATE_EPOCH` is not set: 2000-01-01T00:00:00Z, the "portable mtime" of Bazel's
/// `rules_pkg`. Not 0: ZIP cannot hold times before 1980 (Python's `zipfile` refuses them), so
/// a later RUN that zips files of earlier layers would fail, as BuildKit builds with
/// `SOURCE_DATE_EPOCH=0` do. RUN itself runs with the real clock; only its layer is clamped.
pub const DEFAULT_EPOCH: i64 = 946_684_800;

/// How a build sets times, decided once from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    /// The time of copied files, directories WORKDIR makes and the image's `created`.
    pub(crate) epoch: i64,
    /// Every layer's file times are clamped to at most this; `None` keeps them.
    pub(crate) clamp: Option<i64>,
}

impl Times {
    /// From `SOURCE_DATE_EPOCH`, else [`DEFAULT_EPOCH`] (and no clamp with wall-clock times).
    pub(crate) fn of(source_date_epoch: Option<i64>, wall_clock_times: bool) -> Self {
        match source_date_epoch {
            Some(e) => Self {
                epoch: e,
                clamp: Some(e),
            },
            None => Self {
                epoch: DEFAULT_EPOCH,
                clamp: (!wall_clock_times).then_some(DEFAULT_EPOCH),
            },
        }
    }

    /// The image's `created`: the epoch, or now when times are kept.
    pub(crate) fn created(self) -> i64 {
        match self.clamp {
            Some(_) => self.epoch,
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(self.epoch, |d| {
                    i64::try_from(d.as_secs()).unwrap_or(self.epoch)
                }),
        }
    }

    /// What the keys hold of it: every step's layer depends on both.
    pub(crate) fn key_text(self) -> String {
        match self.clamp {
            Some(c) => format!("epoch={} clamp={c}", self.epoch),
            None => format!("epoch={} clamp=none", self.epoch),
        }
    }
}
