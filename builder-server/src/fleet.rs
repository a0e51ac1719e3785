//! Fleet mode (`--database postgres://…`): replicas share one queue, one history and one cache.
//!
//! - Records, events and the queue are PostgreSQL's. A posted context is checked by the replica
//!   that took the post, then stored in the registry (`--context-store REPO`, as a one-layer
//!   image) before the build is queued; any replica may run it.
//! - A replica with a free slot claims the next job with `FOR UPDATE SKIP LOCKED`. The job is
//!   the oldest of the tenant served least recently, so tenants share the fleet fairly. For a few
//!   seconds it prefers jobs whose context hashes to itself (a warm cache).
//! - A running job holds a lease its replica renews. A job whose replica stopped renewing (it
//!   died) is queued again, and another replica runs it.
//! - Every build reads and writes the step cache in the registry (`--cache-registry REF`), so a
//!   step built on one replica is CACHED on the others.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use postgres::{Client, NoTls};

use crate::records::{Build, Filter, RecordsError, now_ms};

/// The fleet's records in PostgreSQL: one connection, used from blocking threads.
pub(crate) struct Pg {
    db: Mutex<Client>,
}

impl std::fmt::Debug for Pg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pg").finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS builds (
    seq BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    state TEXT NOT NULL,
    tags TEXT NOT NULL,
    options TEXT NOT NULL,
    created BIGINT NOT NULL,
    started BIGINT,
    finished BIGINT,
    start_order BIGINT,
    context_bytes BIGINT,
    steps BIGINT,
    cached BIGINT,
    result TEXT,
    error TEXT,
    replica TEXT,
    context_ref TEXT,
    preferred TEXT,
    query TEXT,
    lease_until BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS builds_queue ON builds (state, tenant);
CREATE TABLE IF NOT EXISTS events (
    build BIGINT NOT NULL REFERENCES builds (seq) ON DELETE CASCADE,
    n BIGINT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (build, n)
);
CREATE TABLE IF NOT EXISTS replicas (name TEXT PRIMARY KEY, heartbeat BIGINT NOT NULL);
CREATE SEQUENCE IF NOT EXISTS start_order;
";

const COLUMNS: &str = "id, tenant, state, tags, options, created, started, finished, start_order, \
                       context_bytes, steps, cached, result, error, replica";

fn row(r: &postgres::Row, at: usize) -> Build {
    let json = |t: Option<String>| t.and_then(|t| serde_json::from_str(&t).ok());
    Build {
        id: r.get(at),
        tenant: r.get(at + 1),
        state: r.get(at + 2),
        tags: serde_json::from_str(&r.get::<_, String>(at + 3)).unwrap_or_default(),
        options: json(Some(r.get(at + 4))).unwrap_or_default(),
        created: r.get(at + 5),
        started: r.get(at + 6),
        finished: r.get(at + 7),
        start_order: r.get(at + 8),
        context_bytes: r.get(at + 9),
        steps: r.get(at + 10),
        cached: r.get(at + 11),
        result: json(r.get(at + 12)),
        error: json(r.get(at + 13)),
        replica: r.get(at + 14),
    }
}

/// A job a replica claimed.
#[derive(Debug)]
pub(crate) struct Claimed {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) query: String,
    pub(crate) context_ref: String,
    /// Events already recorded (by a replica that died running it).
    pub(crate) events: u64,
}

impl Pg {
    /// Connects and makes the schema (under an advisory lock: replicas start at once).
    pub(crate) fn connect(url: &str) -> Result<Self, RecordsError> {
        let mut db = Client::connect(url, NoTls)?;
        db.execute("SELECT pg_advisory_lock(7242001)", &[])?;
        let made = db.batch_execute(SCHEMA);
        db.execute("SELECT pg_advisory_unlock(7242001)", &[])?;
        made?;
        Ok(Self { db: Mutex::new(db) })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, postgres::Error>,
    ) -> Result<T, RecordsError> {
        let mut db = self.db.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(f(&mut db)?)
    }

    pub(crate) fn insert(&self, b: &Build) -> Result<(), RecordsError> {
        self.insert_job(b, None, None, None)
    }

    /// A posted job: its record, where its context is, the replica it prefers, its query.
    pub(crate) fn insert_job(
        &self,
        b: &Build,
        context_ref: Option<&str>,
        preferred: Option<&str>,
        query: Option<&str>,
    ) -> Result<(), RecordsError> {
        let tags = serde_json::to_string(&b.tags).unwrap_or_default();
        self.with(|db| {
            db.execute(
                "INSERT INTO builds (id, tenant, state, tags, options, created, context_bytes, \
                 context_ref, preferred, query) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &[
                    &b.id,
                    &b.tenant,
                    &b.state,
                    &tags,
                    &b.options.to_string(),
                    &b.created,
                    &b.context_bytes,
                    &context_ref,
                    &preferred,
                    &query,
                ],
            )
            .map(drop)
        })
    }

    pub(crate) fn started(&self, id: &str, order: i64) -> Result<(), RecordsError> {
        self.with(|db| {
            db.execute(
                "UPDATE builds SET state = 'running', started = $2, start_order = $3 WHERE id = $1",
                &[&id, &now_ms(), &order],
            )
            .map(drop)
        })
    }

    pub(crate) fn event(&self, id: &str, n: u64, data: &str) -> Result<(), RecordsError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.with(|db| {
            db.execute(
                "INSERT INTO events (build, n, data) SELECT seq, $2, $3 FROM builds WHERE id = $1 \
                 ON CONFLICT DO NOTHING",
                &[&id, &n, &data],
            )
            .map(drop)
        })
    }

    pub(crate) fn finished(
        &self,
        id: &str,
        state: &str,
        last: &serde_json::Value,
    ) -> Result<(), RecordsError> {
        let ok = last["type"] == "result";
        let (steps, cached) = (last["steps"].as_i64(), last["cached"].as_i64());
        let (result, error) = (
            ok.then(|| last.to_string()),
            (!ok).then(|| last.to_string()),
        );
        self.with(|db| {
            db.execute(
                "UPDATE builds SET state = $2, finished = $3, result = $4, error = $5, steps = $6, \
                 cached = $7, lease_until = NULL WHERE id = $1",
                &[&id, &state, &now_ms(), &result, &error, &steps, &cached],
            )
            .map(drop)
        })
    }

    pub(crate) fn get(
        &self,
        id: &str,
        tenant: Option<&str>,
    ) -> Result<Option<Build>, RecordsError> {
        self.with(|db| {
            db.query_opt(
                &format!("SELECT {COLUMNS} FROM builds WHERE id = $1 AND ($2::TEXT IS NULL OR tenant = $2)"),
                &[&id, &tenant],
            )
            .map(|r| r.map(|r| row(&r, 0)))
        })
    }

    pub(crate) fn list(&self, f: &Filter<'_>) -> Result<Vec<(i64, Build)>, RecordsError> {
        let limit = i64::from(f.limit);
        self.with(|db| {
            let rows = db.query(
                &format!(
                    "SELECT seq, {COLUMNS} FROM builds WHERE ($1::TEXT IS NULL OR tenant = $1) \
                     AND ($2::TEXT IS NULL OR state = $2) AND ($3::TEXT IS NULL OR tags::jsonb ? $3) \
                     AND ($4::BIGINT IS NULL OR seq < $4) ORDER BY seq DESC LIMIT $5"
                ),
                &[&f.tenant, &f.state, &f.tag, &f.before, &limit],
            )?;
            Ok(rows.iter().map(|r| (r.get(0), row(r, 1))).collect())
        })
    }

    pub(crate) fn max_start_order(&self) -> Result<i64, RecordsError> {
        self.with(|db| {
            db.query_one("SELECT COALESCE(MAX(start_order), 0) FROM builds", &[])
                .map(|r| r.get(0))
        })
    }

    pub(crate) fn seq(&self, id: &str) -> Result<Option<i64>, RecordsError> {
        self.with(|db| {
            db.query_opt("SELECT seq FROM builds WHERE id = $1", &[&id])
                .map(|r| r.map(|r| r.get(0)))
        })
    }

    pub(crate) fn events_after(
        &self,
        id: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<(u64, String)>, RecordsError> {
        let (after, limit) = (i64::try_from(after).unwrap_or(i64::MAX), i64::from(limit));
        self.with(|db| {
            let rows = db.query(
                "SELECT e.n, e.data FROM events e JOIN builds b ON e.build = b.seq \
                 WHERE b.id = $1 AND e.n > $2 ORDER BY e.n LIMIT $3",
                &[&id, &after, &limit],
            )?;
            Ok(rows
                .iter()
                .map(|r| (u64::try_from(r.get::<_, i64>(0)).unwrap_or(0), r.get(1)))
                .collect())
        })
    }

    pub(crate) fn prune(&self, keep: u64, max_age_ms: i64) -> Result<usize, RecordsError> {
        let oldest = now_ms().saturating_sub(max_age_ms);
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        self.with(|db| {
            db.execute(
                "DELETE FROM builds WHERE state NOT IN ('queued', 'running') AND (created < $1 \
                 OR seq NOT IN (SELECT seq FROM builds ORDER BY seq DESC LIMIT $2))",
                &[&oldest, &keep],
            )
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
        })
    }

    /// Builds `tenant` has waiting, fleet-wide.
    pub(crate) fn queued(&self, tenant: &str) -> Result<usize, RecordsError> {
        self.with(|db| {
            db.query_one(
                "SELECT COUNT(*) FROM builds WHERE state = 'queued' AND tenant = $1",
                &[&tenant],
            )
            .map(|r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(usize::MAX))
        })
    }

    /// `me` is alive; gives the replicas that are (a heartbeat within `within`).
    pub(crate) fn heartbeat(
        &self,
        me: &str,
        within: Duration,
    ) -> Result<Vec<String>, RecordsError> {
        let now = now_ms();
        let since = now - i64::try_from(within.as_millis()).unwrap_or(i64::MAX);
        self.with(|db| {
            db.execute(
                "INSERT INTO replicas (name, heartbeat) VALUES ($1, $2) \
                 ON CONFLICT (name) DO UPDATE SET heartbeat = $2",
                &[&me, &now],
            )?;
            let rows = db.query(
                "SELECT name FROM replicas WHERE heartbeat >= $1 ORDER BY name",
                &[&since],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Jobs whose replica stopped renewing their lease go back to the queue.
    pub(crate) fn reap(&self) -> Result<Vec<String>, RecordsError> {
        self.with(|db| {
            let rows = db.query(
                "UPDATE builds SET state = 'queued', replica = NULL, lease_until = NULL \
                 WHERE state = 'running' AND lease_until < $1 RETURNING id",
                &[&now_ms()],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Claims the next job for `me`: among the queued, the oldest of the tenant served least
    /// recently; one preferring another live replica only once `prefer_ms` have passed.
    pub(crate) fn claim(
        &self,
        me: &str,
        live: &[String],
        prefer_ms: i64,
        lease: Duration,
    ) -> Result<Option<Claimed>, RecordsError> {
        let now = now_ms();
        let patient = now - prefer_ms;
        let until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.with(|db| {
            let mut tx = db.transaction()?;
            let next = tx.query_opt(
                "SELECT b.seq FROM builds b WHERE b.state = 'queued' AND (b.preferred IS NULL \
                 OR b.preferred = $1 OR b.created < $2 OR NOT (b.preferred = ANY($3))) \
                 ORDER BY (SELECT COALESCE(MAX(r.started), 0) FROM builds r WHERE r.tenant = b.tenant), \
                 b.seq LIMIT 1 FOR UPDATE OF b SKIP LOCKED",
                &[&me, &patient, &live],
            )?;
            let Some(next) = next else {
                tx.commit()?;
                return Ok(None);
            };
            let seq: i64 = next.get(0);
            let r = tx.query_one(
                "UPDATE builds SET state = 'running', replica = $2, started = $3, \
                 start_order = nextval('start_order'), lease_until = $4 WHERE seq = $1 \
                 RETURNING id, tenant, COALESCE(query, ''), COALESCE(context_ref, ''), \
                 (SELECT COALESCE(MAX(n), 0) FROM events WHERE build = $1)",
                &[&seq, &me, &now, &until],
            )?;
            tx.commit()?;
            Ok(Some(Claimed {
                id: r.get(0),
                tenant: r.get(1),
                query: r.get(2),
                context_ref: r.get(3),
                events: u64::try_from(r.get::<_, i64>(4)).unwrap_or(0),
            }))
        })
    }

    /// Renews `me`'s leases on `ids`; gives those a client asked to cancel.
    pub(crate) fn renew(
        &self,
        me: &str,
        ids: &[String],
        lease: Duration,
    ) -> Result<Vec<String>, RecordsError> {
        let until = now_ms() + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        self.with(|db| {
            db.execute(
                "UPDATE builds SET lease_until = $2 WHERE replica = $1 AND state = 'running' AND id = ANY($3)",
                &[&me, &until, &ids],
            )?;
            let rows = db.query(
                "SELECT id FROM builds WHERE id = ANY($1) AND cancel_requested",
                &[&ids],
            )?;
            Ok(rows.iter().map(|r| r.get(0)).collect())
        })
    }

    /// Cancels job `id`: a queued one ends now; a running one is flagged for its replica, which
    /// sees it at its next renewal. Gives whether it was queued or running.
    pub(crate) fn cancel(&self, id: &str) -> Result<bool, RecordsError> {
        let last = crate::build::with_type(
            "error",
            crate::error::ApiError::internal("cancelled before it started").body(),
        );
        let queued = self.with(|db| {
            db.execute(
                "UPDATE builds SET state = 'cancelled', finished = $2, error = $3 WHERE id = $1 AND state = 'queued'",
                &[&id, &now_ms(), &last.to_string()],
            )
        })?;
        if queued > 0 {
            return Ok(true);
        }
        let running = self.with(|db| {
            db.execute(
                "UPDATE builds SET cancel_requested = TRUE WHERE id = $1 AND state = 'running'",
                &[&id],
            )
        })?;
        Ok(running > 0)
    }
}

/// The replica's settings in a fleet.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// This replica's name (`--replica-name`).
    pub(crate) me: String,
    /// Where posted contexts are kept (`--context-store HOST/REPO`).
    pub(crate) context_store: String,
    /// The shared step cache (`--cache-registry HOST/REPO:TAG`).
    pub(crate) cache_registry: Option<String>,
    /// How long a claimed job's lease lasts without renewal.
    pub(crate) lease: Duration,
}

/// Wakes the fleet's dispatcher (a job was posted here, or one ended).
#[derive(Debug, Default)]
pub(crate) struct Bell {
    rung: Mutex<bool>,
    cv: Condvar,
}

impl Bell {
    pub(crate) fn ring(&self) {
        *self.rung.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.cv.notify_all();
    }

    fn wait(&self, most: Duration) {
        let rung = self.rung.lock().unwrap_or_else(PoisonError::into_inner);
        let (mut rung, _) = self
            .cv
            .wait_timeout_while(rung, most, |r| !*r)
            .unwrap_or_else(PoisonError::into_inner);
        *rung = false;
    }
}

/// The replica that prefers a context: the highest rendezvous score over the live replicas.
pub(crate) fn preferred(key: &str, live: &[String]) -> Option<String> {
    live.iter()
        .max_by_key(|r| builder_core::digest::Digest::of(format!("{key}\n{r}").as_bytes()).hex())
        .cloned()
}

/// What the dispatcher needs of the jobs.
pub(crate) trait Runner: Send + Sync + 'static {
    /// How many jobs run here now, and at most.
    fn slots(&self) -> (usize, usize);
    /// Runs a claimed job (on a thread of its own).
    fn run(self: Arc<Self>, job: Claimed);
    /// The ids of the jobs running here.
    fn running(&self) -> Vec<String>;
    /// Cancels a job running here.
    fn cancel_local(&self, id: &str);
    /// Whether the server is shutting down (nothing more is claimed).
    fn draining(&self) -> bool;
}

/// The dispatcher: heartbeats, requeues jobs of dead replicas, claims jobs into free slots,
/// renews leases and passes on cancels. Woken by `bell`, else every half second.
pub(crate) fn dispatch(
    pg: Arc<crate::records::Records>,
    settings: Settings,
    runner: Arc<impl Runner>,
    bell: Arc<Bell>,
) {
    std::thread::spawn(move || {
        let Some(db) = pg.fleet() else {
            return;
        };
        let alive_within = settings.lease * 3;
        loop {
            let live = db.heartbeat(&settings.me, alive_within).unwrap_or_default();
            match db.reap() {
                Ok(ids) if !ids.is_empty() => {
                    tracing::warn!(builds = ?ids, "builds of a replica that stopped renewing its lease are queued again");
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot reap expired leases"),
            }
            while !runner.draining() {
                let (running, most) = runner.slots();
                if running >= most {
                    break;
                }
                match db.claim(&settings.me, &live, 3000, settings.lease) {
                    Ok(Some(job)) => {
                        tracing::info!(build = %job.id, tenant = %job.tenant, "build claimed");
                        Arc::clone(&runner).run(job);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim a build");
                        break;
                    }
                }
            }
            let mine = runner.running();
            if !mine.is_empty() {
                match db.renew(&settings.me, &mine, settings.lease) {
                    Ok(cancel) => {
                        for id in cancel {
                            runner.cancel_local(&id);
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "cannot renew leases"),
                }
            }
            bell.wait((settings.lease / 4).min(Duration::from_millis(500)));
        }
    });
}
