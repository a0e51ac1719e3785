//! The service's build records in SQLite (`rusqlite`, SQLite compiled in) at
//! `<root>/server/builds.sqlite`: each build's tenant, options, state and timings, its events
//! as they happen, and its result or error. Written as the build goes, so a restart (or a
//! `kill -9`) keeps the history; builds the last process left queued or running are marked
//! `interrupted` when the records are opened.

use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

/// What can go wrong with the records.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordsError {
    /// PostgreSQL refused.
    #[error("build records in PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    /// SQLite refused.
    #[error("build records `{path}`: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// The records in SQLite (the embedded default).
#[derive(Debug)]
pub(crate) struct Sqlite {
    db: Mutex<Connection>,
    path: String,
}

/// One build as recorded.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Build {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) state: String,
    pub(crate) tags: Vec<String>,
    pub(crate) options: serde_json::Value,
    /// Unix milliseconds.
    pub(crate) created: i64,
    pub(crate) started: Option<i64>,
    pub(crate) finished: Option<i64>,
    /// The order builds started in (1, 2, …), over the records' whole life.
    pub(crate) start_order: Option<i64>,
    pub(crate) context_bytes: Option<i64>,
    pub(crate) steps: Option<i64>,
    pub(crate) cached: Option<i64>,
    pub(crate) result: Option<serde_json::Value>,
    pub(crate) error: Option<serde_json::Value>,
    /// The replica that ran it (fleet mode).
    pub(crate) replica: Option<String>,
}

/// `GET /v1/builds`' filters.
#[derive(Debug, Default)]
pub(crate) struct Filter<'a> {
    /// Only this tenant's builds (the asker's, when the service has tokens).
    pub(crate) tenant: Option<&'a str>,
    pub(crate) state: Option<&'a str>,
    pub(crate) tag: Option<&'a str>,
    /// Older than this build (paging: the last id of the previous page).
    pub(crate) before: Option<i64>,
    pub(crate) limit: u32,
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA foreign_keys = ON;
CREATE TABLE IF NOT EXISTS builds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    state TEXT NOT NULL,
    tags TEXT NOT NULL,
    options TEXT NOT NULL,
    created INTEGER NOT NULL,
    started INTEGER,
    finished INTEGER,
    start_order INTEGER,
    context_bytes INTEGER,
    steps INTEGER,
    cached INTEGER,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS builds_tenant ON builds (tenant, seq);
CREATE INDEX IF NOT EXISTS builds_state ON builds (state);
CREATE TABLE IF NOT EXISTS events (
    build INTEGER NOT NULL REFERENCES builds (seq) ON DELETE CASCADE,
    n INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (build, n)
) WITHOUT ROWID;
";

const COLUMNS: &str = "id, tenant, state, tags, options, created, started, finished, start_order, \
                       context_bytes, steps, cached, result, error";

fn json(text: Option<String>) -> Option<serde_json::Value> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// The build whose columns ([`COLUMNS`]) start at column `at`.
fn row_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Build> {
    Ok(Build {
        id: r.get(at)?,
        tenant: r.get(at + 1)?,
        state: r.get(at + 2)?,
        tags: serde_json::from_str(&r.get::<_, String>(at + 3)?).unwrap_or_default(),
        options: json(Some(r.get(at + 4)?)).unwrap_or_default(),
        created: r.get(at + 5)?,
        started: r.get(at + 6)?,
        finished: r.get(at + 7)?,
        start_order: r.get(at + 8)?,
        context_bytes: r.get(at + 9)?,
        steps: r.get(at + 10)?,
        cached: r.get(at + 11)?,
        result: json(r.get(at + 12)?),
        error: json(r.get(at + 13)?),
        replica: None,
    })
}

impl Sqlite {
    /// Opens (or makes) the records at `path`; builds left `queued` or `running` by a process
    /// that is gone become `interrupted`. Gives how many did.
    pub(crate) fn open(path: &Path) -> Result<(Self, usize), RecordsError> {
        let shown = path.display().to_string();
        let err = |source| RecordsError::Sqlite {
            path: shown.clone(),
            source,
        };
        let db = Connection::open(path).map_err(err)?;
        db.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        let interrupted = db
            .execute(
                "UPDATE builds SET state = 'interrupted', finished = ?1, \
                 error = json_object('error', 'interrupted: the server stopped before the build finished', 'causes', json_array()) \
                 WHERE state IN ('queued', 'running')",
                params![now_ms()],
            )
            .map_err(err)?;
        Ok((
            Self {
                db: Mutex::new(db),
                path: shown,
            },
            interrupted,
        ))
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, RecordsError> {
        let db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        f(&db).map_err(|source| RecordsError::Sqlite {
            path: self.path.clone(),
            source,
        })
    }

    /// A build was posted and queued.
    pub(crate) fn insert(&self, b: &Build) -> Result<(), RecordsError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO builds (id, tenant, state, tags, options, created, context_bytes) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    b.id,
                    b.tenant,
                    b.state,
                    serde_json::to_string(&b.tags).unwrap_or_default(),
                    b.options.to_string(),
                    b.created,
                    b.context_bytes
                ],
            )
            .map(drop)
        })
    }

    /// A queued build started, the `order`th to.
    pub(crate) fn started(&self, id: &str, order: i64) -> Result<(), RecordsError> {
        self.with(|db| {
            db.execute(
                "UPDATE builds SET state = 'running', started = ?2, start_order = ?3 WHERE id = ?1",
                params![id, now_ms(), order],
            )
            .map(drop)
        })
    }

    /// The build's `n`th event.
    pub(crate) fn event(&self, id: &str, n: u64, data: &str) -> Result<(), RecordsError> {
        self.with(|db| {
            db.prepare_cached(
                "INSERT INTO events (build, n, data) SELECT seq, ?2, ?3 FROM builds WHERE id = ?1",
            )?
            .execute(params![id, n, data])
            .map(drop)
        })
    }

    /// The build ended in `state`, with its last event (a result or an error).
    pub(crate) fn finished(
        &self,
        id: &str,
        state: &str,
        last: &serde_json::Value,
    ) -> Result<(), RecordsError> {
        let ok = last["type"] == "result";
        let steps = last["steps"].as_i64();
        let cached = last["cached"].as_i64();
        self.with(|db| {
            db.execute(
                "UPDATE builds SET state = ?2, finished = ?3, result = ?4, error = ?5, steps = ?6, \
                 cached = ?7 WHERE id = ?1",
                params![
                    id,
                    state,
                    now_ms(),
                    ok.then(|| last.to_string()),
                    (!ok).then(|| last.to_string()),
                    steps,
                    cached
                ],
            )
            .map(drop)
        })
    }

    /// One build, if `tenant` (when given) owns it.
    pub(crate) fn get(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<Build>, RecordsError> {
        self.with(|db| {
            db.query_row(
                &format!(
                    "SELECT {COLUMNS} FROM builds WHERE id = ?1 AND (?2 IS NULL OR tenant = ?2)"
                ),
                params![id, tenant],
                |r| row_from(r, 0),
            )
            .optional()
        })
    }

    /// Builds matching `f`, newest first, with each one's position for paging.
    pub(crate) fn list(&self, f: &Filter<'_>) -> Result<Vec<(i64, Build)>, RecordsError> {
        self.with(|db| {
            let mut stmt = db.prepare(&format!(
                "SELECT seq, {COLUMNS} FROM builds WHERE (?1 IS NULL OR tenant = ?1) \
                 AND (?2 IS NULL OR state = ?2) \
                 AND (?3 IS NULL OR EXISTS (SELECT 1 FROM json_each(builds.tags) WHERE value = ?3)) \
                 AND (?4 IS NULL OR seq < ?4) ORDER BY seq DESC LIMIT ?5"
            ))?;
            stmt.query_map(params![f.tenant, f.state, f.tag, f.before, f.limit], |r| {
                Ok((r.get(0)?, row_from(r, 1)?))
            })?
            .collect()
        })
    }

    /// The highest start order recorded.
    pub(crate) fn max_start_order(&self) -> Result<i64, RecordsError> {
        self.with(|db| {
            db.query_row(
                "SELECT COALESCE(MAX(start_order), 0) FROM builds",
                [],
                |r| r.get(0),
            )
        })
    }

    /// The position of build `id` (for paging from it).
    pub(crate) fn seq(&self, id: &str) -> Result<Option<i64>, RecordsError> {
        self.with(|db| {
            db.query_row("SELECT seq FROM builds WHERE id = ?1", params![id], |r| {
                r.get(0)
            })
            .optional()
        })
    }

    /// Up to `limit` of the build's events after the `after`th, in order.
    pub(crate) fn events_after(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, RecordsError> {
        self.with(|db| {
            let mut stmt = db.prepare_cached(
                "SELECT e.n, e.data FROM events e JOIN builds b ON e.build = b.seq \
                 WHERE b.id = ?1 AND e.n > ?2 ORDER BY e.n LIMIT ?3",
            )?;
            stmt.query_map(params![id, after, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
    }

    /// Removes finished builds (their events with them) past the newest `keep` or older than
    /// `max_age_ms`; gives how many went.
    pub(crate) fn prune(&self, keep: u64, max_age_ms: i64) -> Result<usize, RecordsError> {
        let oldest = now_ms().saturating_sub(max_age_ms);
        self.with(|db| {
            db.execute(
                "DELETE FROM builds WHERE state NOT IN ('queued', 'running') AND (created < ?1 \
                 OR seq NOT IN (SELECT seq FROM builds ORDER BY seq DESC LIMIT ?2))",
                params![oldest, i64::try_from(keep).unwrap_or(i64::MAX)],
            )
        })
    }
}

/// The build records: SQLite on one server, PostgreSQL for a fleet (`--database`).
#[derive(Debug)]
pub(crate) enum Records {
    Sqlite(Sqlite),
    Postgres(crate::fleet::Pg),
}

macro_rules! both {
    ($self:ident, $r:ident => $e:expr) => {
        match $self {
            Records::Sqlite($r) => $e,
            Records::Postgres($r) => $e,
        }
    };
}

impl Records {
    /// The SQLite records at `path`; see [`Sqlite::open`].
    pub(crate) fn open(path: &Path) -> Result<(Self, usize), RecordsError> {
        Sqlite::open(path).map(|(s, n)| (Self::Sqlite(s), n))
    }

    /// The fleet's records, when they are PostgreSQL's.
    pub(crate) fn fleet(&self) -> Option<&crate::fleet::Pg> {
        match self {
            Self::Postgres(p) => Some(p),
            Self::Sqlite(_) => None,
        }
    }

    pub(crate) fn insert(&self, b: &Build) -> Result<(), RecordsError> {
        both!(self, r => r.insert(b))
    }

    pub(crate) fn started(&self, id: &str, order: i64) -> Result<(), RecordsError> {
        both!(self, r => r.started(id, order))
    }

    pub(crate) fn event(&self, id: &str, n: u64, data: &str) -> Result<(), RecordsError> {
        both!(self, r => r.event(id, n, data))
    }

    pub(crate) fn finished(
        &self,
        id: &str,
        state: &str,
        last: &serde_json::Value,
    ) -> Result<(), RecordsError> {
        both!(self, r => r.finished(id, state, last))
    }

    pub(crate) fn get(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<Build>, RecordsError> {
        both!(self, r => r.get(id, tenant))
    }

    pub(crate) fn list(&self, f: &Filter<'_>) -> Result<Vec<(i64, Build)>, RecordsError> {
        both!(self, r => r.list(f))
    }

    pub(crate) fn max_start_order(&self) -> Result<i64, RecordsError> {
        both!(self, r => r.max_start_order())
    }

    pub(crate) fn seq(&self, id: &str) -> Result<Option<i64>, RecordsError> {
        both!(self, r => r.seq(id))
    }

    pub(crate) fn events_after(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, RecordsError> {
        both!(self, r => r.events_after(id, after, limit))
    }

    pub(crate) fn prune(&self, keep: u64, max_age_ms: i64) -> Result<usize, RecordsError> {
        both!(self, r => r.prune(keep, max_age_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(id: &str, tenant: &str, tags: &[&str]) -> Build {
        Build {
            id: id.into(),
            tenant: tenant.into(),
            state: "queued".into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            options: serde_json::json!({}),
            created: now_ms(),
            started: None,
            finished: None,
            start_order: None,
            context_bytes: Some(10),
            steps: None,
            cached: None,
            result: None,
            error: None,
            replica: None,
        }
    }

    #[test]
    fn records_filter_page_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.sqlite");
        let (r, n) = Records::open(&path).unwrap();
        assert_eq!(n, 0);
        r.insert(&build("a1", "a", &["app:v1"])).unwrap();
        r.insert(&build("a2", "a", &["app:v2"])).unwrap();
        r.insert(&build("b1", "b", &["app:v1"])).unwrap();
        r.started("a1", 1).unwrap();
        r.event("a1", 1, r#"{"type":"step"}"#).unwrap();
        r.event("a1", 2, r#"{"type":"log"}"#).unwrap();
        r.finished(
            "a1",
            "succeeded",
            &serde_json::json!({"type": "result", "steps": 2, "cached": 1}),
        )
        .unwrap();
        r.started("a2", 2).unwrap();

        let ids = |f: Filter<'_>| -> Vec<String> {
            r.list(&Filter { limit: 10, ..f })
                .unwrap()
                .into_iter()
                .map(|(_, b)| b.id)
                .collect()
        };
        assert_eq!(ids(Filter::default()), ["b1", "a2", "a1"]);
        assert_eq!(
            ids(Filter {
                tenant: Some("a"),
                ..Filter::default()
            }),
            ["a2", "a1"]
        );
        assert_eq!(
            ids(Filter {
                tag: Some("app:v1"),
                ..Filter::default()
            }),
            ["b1", "a1"]
        );
        assert_eq!(
            ids(Filter {
                state: Some("running"),
                ..Filter::default()
            }),
            ["a2"]
        );
        let before = r.seq("a2").unwrap();
        assert_eq!(
            ids(Filter {
                before,
                ..Filter::default()
            }),
            ["a1"]
        );
        assert!(
            r.get("a1", Some("b")).unwrap().is_none(),
            "another tenant's build"
        );
        assert_eq!(r.events_after("a1", 1, 10).unwrap().len(), 1);
        drop(r);

        // Reopened as after a crash: the running and the queued are interrupted, the rest kept.
        let (r, n) = Records::open(&path).unwrap();
        assert_eq!(n, 2);
        let a1 = r.get("a1", None).unwrap().unwrap();
        assert_eq!(
            (a1.state.as_str(), a1.steps, a1.cached),
            ("succeeded", Some(2), Some(1))
        );
        assert_eq!(r.get("a2", None).unwrap().unwrap().state, "interrupted");
        assert_eq!(r.get("b1", None).unwrap().unwrap().state, "interrupted");
        assert_eq!(r.events_after("a1", 0, 10).unwrap().len(), 2);

        // Retention: keep the newest two.
        assert_eq!(r.prune(2, i64::MAX).unwrap(), 1);
        assert!(r.get("a1", None).unwrap().is_none());
        assert!(r.events_after("a1", 0, 10).unwrap().is_empty());
    }
}
