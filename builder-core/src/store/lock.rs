//! The store-wide lock: shared for builds and everything that adds to the store or reads from
//! it, exclusive for prune and `fsck --repair`.
//!
//! `flock` alone lets a steady stream of shared holders starve an exclusive waiter, so a second
//! file is a gate: an exclusive taker holds the gate from the moment it starts waiting, and a
//! shared taker must pass the gate (take it shared, for an instant) before taking the lock. New
//! builds therefore queue behind a waiting prune, which waits only for the builds already
//! running. Every wait is bounded by the store's lock timeout and ends in [`Error::Busy`]
//! naming who uses the store.
//!
//! A lock is held per open file, so threads of one process exclude each other like processes
//! do. Do not take a second lock while holding one (a prune waiting at the gate would block the
//! second for the whole timeout): pass the held [`Lock`] along instead (it is `Clone`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fs4::fs_std::FileExt;

use super::error::{Error, IoContext};
use super::{Result, Store};

/// How long taking the lock waits by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_secs(600);

/// A held lock on the store; released when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Lock {
    _held: Arc<Held>,
}

#[derive(Debug)]
struct Held {
    lock: fs_err::File,
    gate: Option<fs_err::File>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = FileExt::unlock(self.lock.file());
        if let Some(g) = &self.gate {
            let _ = FileExt::unlock(g.file());
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Shared,
    Exclusive,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Exclusive => "exclusive",
        }
    }
}

impl Store {
    fn open_lock_file(&self, name: &str) -> Result<fs_err::File> {
        let path = self.root.join(name);
        fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)
    }

    /// Tries `attempt` until it succeeds or the deadline passes.
    fn poll(
        &self,
        mode: Mode,
        start: Instant,
        mut attempt: impl FnMut() -> std::io::Result<bool>,
    ) -> Result<()> {
        let mut pause = Duration::from_millis(1);
        loop {
            if attempt().at(self.root.join("lock"))? {
                return Ok(());
            }
            let waited = start.elapsed();
            if waited >= self.lock_timeout {
                return Err(Error::Busy {
                    root: self.root.clone(),
                    mode: mode.name(),
                    waited_secs: waited.as_secs(),
                    users: self.users(),
                });
            }
            std::thread::sleep(pause.min(self.lock_timeout.saturating_sub(waited)));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    fn take(&self, mode: Mode) -> Result<Lock> {
        let start = Instant::now();
        let gate = self.open_lock_file("lock.gate")?;
        let lock = self.open_lock_file("lock")?;
        let held = match mode {
            Mode::Shared => {
                self.poll(mode, start, || {
                    Ok(try_lock(&gate, Mode::Shared)? && {
                        let got = try_lock(&lock, Mode::Shared)?;
                        let _ = FileExt::unlock(gate.file());
                        got
                    })
                })?;
                Held { lock, gate: None }
            }
            Mode::Exclusive => {
                self.poll(mode, start, || try_lock(&gate, Mode::Exclusive))?;
                // The gate closed behind us: only the builds already in are left to wait for.
                // Failing here drops `gate`, which reopens it.
                self.poll(mode, start, || try_lock(&lock, Mode::Exclusive))?;
                Held {
                    lock,
                    gate: Some(gate),
                }
            }
        };
        Ok(Lock {
            _held: Arc::new(held),
        })
    }

    /// Holds a shared lock (many builds at once), waiting at most the lock timeout.
    pub fn lock_shared(&self) -> Result<Lock> {
        self.take(Mode::Shared)
    }

    /// Holds the exclusive lock (no build runs meanwhile), waiting at most the lock timeout;
    /// builds that start meanwhile wait behind it.
    pub fn lock_exclusive(&self) -> Result<Lock> {
        self.take(Mode::Exclusive)
    }
}

fn try_lock(file: &fs_err::File, mode: Mode) -> std::io::Result<bool> {
    let got = match mode {
        Mode::Shared => FileExt::try_lock_shared(file.file()),
        Mode::Exclusive => FileExt::try_lock_exclusive(file.file()),
    };
    match got {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_waits_for_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared = store.lock_shared().unwrap();
        let also_shared = store.lock_shared().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = store.clone();
        let t = std::thread::spawn(move || {
            let _x = s2.lock_exclusive().unwrap();
            tx.send(()).unwrap();
        });
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            rx.try_recv().is_err(),
            "exclusive lock taken while shared locks were held"
        );
        drop(shared);
        drop(also_shared);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }

    #[test]
    fn a_stream_of_shared_holders_does_not_starve_exclusive() {
        // Builds overlap without a gap: one always holds the shared lock. Without the gate the
        // exclusive taker never gets in.
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let builders: Vec<_> = (0..3)
            .map(|i| {
                let (store, stop) = (store.clone(), stop.clone());
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(20 * i));
                    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                        if let Ok(_l) = store.lock_shared() {
                            std::thread::sleep(Duration::from_millis(60));
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        let prune = store.clone().with_lock_timeout(Duration::from_secs(5));
        let start = Instant::now();
        let got = prune.lock_exclusive().map(drop);
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for b in builders {
            b.join().unwrap();
        }
        assert!(got.is_ok(), "prune starved: {got:?}");
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn the_wait_is_bounded_and_names_the_users() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let _work = store.work_dir("build-").unwrap();
        let _shared = store.lock_shared().unwrap();
        let prune = store.clone().with_lock_timeout(Duration::from_millis(300));
        let start = Instant::now();
        let err = prune.lock_exclusive().unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            text.contains("busy") && text.contains("exclusive"),
            "{text}"
        );
        match err {
            Error::Busy { users, .. } => assert!(
                users
                    .iter()
                    .any(|u| u.starts_with(&format!("pid {}", std::process::id()))),
                "{users:?}"
            ),
            other => panic!("{other:?}"),
        }
        // The failed exclusive taker reopened the gate: a new build gets in at once.
        let quick = store.clone().with_lock_timeout(Duration::from_millis(100));
        assert!(quick.lock_shared().is_ok());
    }
}
